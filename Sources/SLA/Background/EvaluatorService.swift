import Foundation
import LiaisonRuntime
import LiaisonStorage
import Logging
import ServiceLifecycle

/// The loop behind budgets and at-risk lists: takes the incidents and customers that events,
/// calls or the clock made due, and evaluates them (``Evaluator``, ``IncidentAnalysis``). Work
/// items are claimed with SKIP LOCKED, so replicas share the queue; each item commits with what
/// it wrote and published.
public struct EvaluatorService: ServiceLifecycle.Service {
    let pool: PostgresPool
    let settings: SLASettings
    let logger: Logger

    public init(pool: PostgresPool, settings: SLASettings, logger: Logger) {
        self.pool = pool
        self.settings = settings
        self.logger = logger
    }

    /// Runs until no work is due; returns the number of incidents and customers evaluated.
    @discardableResult
    public func drain() async throws -> (incidents: Int, customers: Int) {
        var incidents = 0, customers = 0
        let settings = self.settings
        while true {
            let logger = self.logger
            let done = try await pool.transaction { c -> Bool in
                guard let id = try Store.takeDirtyIncident(c) else { return false }
                try Self.isolating(c, [id], what: "incident", logger: logger) { ids in
                    try IncidentAnalysis.refresh(c, ids[0], now: Store.ms(Date()), settings: settings)
                }
                return true
            }
            if !done { break }
            incidents += 1
        }
        while true {
            let logger = self.logger
            let n = try await pool.transaction { c -> Int in
                var ids = try Store.takeDirtyCustomers(c, limit: settings.evaluateBatch)
                if ids.count < settings.evaluateBatch {
                    ids += try Store.takeDueCustomers(c, now: Date(), limit: settings.evaluateBatch - ids.count)
                }
                let unique = Array(Set(ids)).sorted()
                try Self.isolating(c, unique, what: "customer", logger: logger) { ids in
                    try Evaluator.evaluateCustomers(c, ids, now: Store.ms(Date()), settings: settings)
                }
                return unique.count
            }
            customers += n
            if n == 0 { break }
        }
        return (incidents, customers)
    }

    /// Runs `body` over the batch under a savepoint. If it fails for good (not a lost connection,
    /// a deadline, a conflict), each item runs alone, and an item that fails alone is logged and
    /// left out (it is evaluated again when it next changes): one bad row never stalls the queue
    /// behind it.
    static func isolating<T>(_ c: PostgresConnection, _ items: [T], what: String, logger: Logger,
                             _ body: ([T]) throws -> Void) throws {
        try c.query("SAVEPOINT evaluate_batch")
        do {
            try body(items)
            try c.query("RELEASE SAVEPOINT evaluate_batch")
            return
        } catch where !isTransient(error) {
            try c.query("ROLLBACK TO SAVEPOINT evaluate_batch")
        }
        for item in items {
            try c.query("SAVEPOINT evaluate_one")
            do {
                try body([item])
                try c.query("RELEASE SAVEPOINT evaluate_one")
            } catch where !isTransient(error) {
                try c.query("ROLLBACK TO SAVEPOINT evaluate_one")
                logger.error("sla cannot evaluate this \(what); left out until it changes",
                             metadata: [what: "\(item)", "error": "\(error)"])
            }
        }
    }

    /// Failures worth retrying the whole pass for: the connection, cancellation, deadlines,
    /// overload, conflicts (SQLSTATE 40), resources (53), operator intervention (57).
    static func isTransient(_ error: any Error) -> Bool {
        guard let p = error as? PostgresError else { return error is CancellationError }
        switch p.kind {
        case .connection, .cancelled, .deadlineExceeded, .overloaded: return true
        case .server:
            let state = p.sqlState ?? ""
            return state.hasPrefix("40") || state.hasPrefix("53") || state.hasPrefix("57") || state.hasPrefix("08")
        case .decoding, .client: return false
        }
    }

    public func run() async throws {
        let logger = self.logger
        try await BackgroundLoop("sla evaluator", every: settings.evaluateInterval, passDeadline: .seconds(120), logger: logger) {
            let n = try await drain()
            if n.incidents + n.customers > 0 {
                logger.debug("evaluated", metadata: ["incidents": "\(n.incidents)", "customers": "\(n.customers)"])
            }
        }.run()
    }
}
