import Foundation

/// Runs a call's Swift work on the gRPC thread that delivered the call's event, while that thread
/// is inside the shim's callback, instead of handing every event to Swift's cooperative pool.
///
/// Each server call's task prefers this executor (`Task(executorPreference:)`). A job enqueued
/// while the current thread is inside ``drain(_:)`` (the shim's new-call and event callbacks) is
/// queued on that thread and run before the callback returns: a unary call whose request is
/// already in hand runs from arrival to its last write without leaving the gRPC thread, as a
/// grpc++ callback handler does. A job enqueued anywhere else (a database reply, a timer, another
/// task) goes to Swift's global executor, so nothing waits for a gRPC thread and nothing blocks
/// one: handlers never block (storage work runs on its own threads and is awaited), and between
/// two suspension points a handler runs the same code it would run on the cooperative pool.
final class CallbackThreadExecutor: TaskExecutor, @unchecked Sendable {
    static let shared = CallbackThreadExecutor()

    /// Jobs queued on one thread during a drain. One per gRPC thread, reused by every drain on
    /// it (a drain runs per shim callback, several per call: no allocation per drain).
    private final class Queue {
        var jobs: [UnownedJob] = []
        var head = 0
        var draining = false
    }

    private static let queues = PerThread { Queue() }

    /// This thread's queue if a drain is running on it.
    private static var currentQueue: Queue? {
        guard let queue = queues.existing, queue.draining else { return nil }
        return queue
    }

    func enqueue(_ job: consuming ExecutorJob) {
        if let queue = Self.currentQueue {
            queue.jobs.append(UnownedJob(job))
        } else {
            globalConcurrentExecutor.enqueue(job)
        }
    }

    /// Runs `body` (which may enqueue jobs) and then every job queued on this thread, including
    /// the ones those jobs queue, before returning. Nested drains leave the draining to the
    /// outermost one.
    static func drain(_ body: () -> Void) {
        let queue = queues.value
        if queue.draining {
            body()
            return
        }
        queue.draining = true
        body()
        let executor = shared.asUnownedTaskExecutor()
        while queue.head < queue.jobs.count {
            let job = queue.jobs[queue.head]
            queue.head += 1
            job.runSynchronously(on: executor)
        }
        queue.jobs.removeAll(keepingCapacity: true)
        queue.head = 0
        queue.draining = false
    }
}

extension ShimServerTransport {
    /// Runs `body`, then runs on this thread the handler code of direct unary calls that `body`
    /// resumed (a continuation resumed by `body`), until each suspends again or finishes, instead
    /// of handing it to Swift's global executor (one thread wake-up less per resumption). For
    /// threads that complete work for handlers and would otherwise idle, such as a database
    /// pool's worker threads. Other tasks resumed by `body` go to their executors as usual.
    public static func runResumedHandlers(_ body: () -> Void) {
        CallbackThreadExecutor.drain(body)
    }
}
