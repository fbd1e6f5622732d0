import LiaisonStorage
import Logging
import Metrics
import ServiceLifecycle

/// Sleeps for `duration`, or less if graceful shutdown begins meanwhile (or the task is
/// cancelled). Background loops pause with this between passes, so that SIGTERM stops them at once
/// instead of after their whole poll interval.
public func sleepUntilShutdown(for duration: Duration) async {
    try? await cancelWhenGracefulShutdown {
        try await Task.sleep(for: duration)
    }
}

/// Platform housekeeping that every service runs (registered once by `ServiceMain`): forgets
/// request ids past `idempotencyRetention` and applied event ids past `inboxRetention`, every
/// `interval`, in bounded deletes so that a large backlog never holds one long transaction.
/// Each statement carries a statement and lock timeout, so a stuck table cannot stall the loop.
public struct PlatformHousekeeping: Service {
    let pool: PostgresPool
    let idempotencyRetention: Duration
    let inboxRetention: Duration
    let interval: Duration
    let logger: Logger

    public init(pool: PostgresPool, idempotencyRetention: Duration, inboxRetention: Duration,
                interval: Duration = .seconds(3600), logger: Logger) {
        self.pool = pool
        self.idempotencyRetention = idempotencyRetention
        self.inboxRetention = inboxRetention
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let (keys, events) = try await runOnce()
                if keys + events > 0 {
                    logger.info("housekeeping", metadata: ["expired_request_ids": "\(keys)", "purged_inbox_events": "\(events)"])
                }
            } catch {
                logger.warning("housekeeping failed", metadata: ["error": "\(error)"])
            }
            await sleepUntilShutdown(for: interval)
        }
    }

    /// One pass; returns (request ids expired, inbox rows purged).
    @discardableResult
    public func runOnce(batch: Int = 5000) async throws -> (Int, Int) {
        func purge(_ sql: String, _ age: Duration) async throws -> Int {
            var total = 0
            while !Task.isCancelled {
                let n = try await pool.transaction { c -> Int in
                    try c.execute(script: "SET LOCAL statement_timeout = '30s'; SET LOCAL lock_timeout = '5s'")
                    return try c.query(sql, [Double(age.components.seconds), batch]).affectedRows
                }
                total += n
                if n < batch { break }
            }
            return total
        }
        let keys = try await purge("""
            DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1) LIMIT $2))
            """, idempotencyRetention)
        let events = try await purge("""
            DELETE FROM inbox WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM inbox WHERE applied_at < now() - make_interval(secs => $1) LIMIT $2))
            """, inboxRetention)
        Counter(label: "liaison_housekeeping_deleted_total", dimensions: [("table", "idempotency_keys")]).increment(by: keys)
        Counter(label: "liaison_housekeeping_deleted_total", dimensions: [("table", "inbox")]).increment(by: events)
        return (keys, events)
    }
}
