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

/// A service's periodic background work (detectors, refreshers, evaluators): `pass` runs every
/// `interval` until shutdown, its statements bounded by `passDeadline` (a stuck lock cannot stall
/// the loop); a failed pass is logged and the next one tries again; SIGTERM interrupts the pause.
public struct BackgroundLoop: Service {
    let name: String
    let interval: Duration
    let passDeadline: Duration
    let logger: Logger
    let pass: @Sendable () async throws -> Void

    public init(_ name: String, every interval: Duration, passDeadline: Duration = .seconds(60), logger: Logger,
                _ pass: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.interval = interval
        self.passDeadline = passDeadline
        self.logger = logger
        self.pass = pass
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await PostgresPool.$deadline.withValue(ContinuousClock.now + passDeadline) { try await pass() }
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
                logger.warning("\(name) pass failed", metadata: ["error": "\(error)"])
            }
            await sleepUntilShutdown(for: interval)
        }
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

/// The outbox's backlog as metrics, for every service (registered once by `ServiceMain`):
/// `liaison_outbox_pending` and `liaison_outbox_dead` per destination, read every `interval`
/// through the outbox's partial indexes (delivered rows are never scanned). A growing pending
/// count is a consumer outage; any dead letter wants an operator (`<service> outbox-requeue`).
public struct OutboxGauges: Service {
    let pool: PostgresPool
    let interval: Duration
    let logger: Logger

    public init(pool: PostgresPool, interval: Duration = .seconds(15), logger: Logger) {
        self.pool = pool
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        var known: Set<String> = []
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let counts = try await PostgresPool.$deadline.withValue(ContinuousClock.now + .seconds(10)) { try await runOnce() }
                // Destinations that emptied report 0 rather than their last value.
                for destination in known.union(counts.keys) {
                    let c = counts[destination] ?? (0, 0)
                    Gauge(label: "liaison_outbox_pending", dimensions: [("destination", destination)]).record(c.pending)
                    Gauge(label: "liaison_outbox_dead", dimensions: [("destination", destination)]).record(c.dead)
                }
                known.formUnion(counts.keys)
            } catch {
                logger.warning("outbox gauges failed", metadata: ["error": "\(error)"])
            }
            await sleepUntilShutdown(for: interval)
        }
    }

    /// Pending and dead rows per destination, now.
    public func runOnce() async throws -> [String: (pending: Int, dead: Int)] {
        let rows = try await pool.query("""
            SELECT destination, count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'dead')
            FROM outbox WHERE state IN ('pending', 'dead') GROUP BY destination
            """).rows
        var out: [String: (pending: Int, dead: Int)] = [:]
        for r in rows { out[try r.decode(String.self, 0)] = (try r.decode(Int.self, 1), try r.decode(Int.self, 2)) }
        return out
    }
}
