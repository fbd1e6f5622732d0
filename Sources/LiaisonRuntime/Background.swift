import ServiceLifecycle

/// Sleeps for `duration`, or less if graceful shutdown begins meanwhile (or the task is
/// cancelled). Background loops pause with this between passes, so that SIGTERM stops them at once
/// instead of after their whole poll interval.
public func sleepUntilShutdown(for duration: Duration) async {
    try? await cancelWhenGracefulShutdown {
        try await Task.sleep(for: duration)
    }
}
