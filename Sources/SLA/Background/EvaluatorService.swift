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
            let done = try await pool.transaction { c -> Bool in
                guard let id = try Store.takeDirtyIncident(c) else { return false }
                try IncidentAnalysis.refresh(c, id, now: Store.ms(Date()), settings: settings)
                return true
            }
            if !done { break }
            incidents += 1
        }
        while true {
            let n = try await pool.transaction { c -> Int in
                var ids = try Store.takeDirtyCustomers(c, limit: settings.evaluateBatch)
                if ids.count < settings.evaluateBatch {
                    ids += try Store.takeDueCustomers(c, now: Date(), limit: settings.evaluateBatch - ids.count)
                }
                let unique = Array(Set(ids)).sorted()
                try Evaluator.evaluateCustomers(c, unique, now: Store.ms(Date()), settings: settings)
                return unique.count
            }
            customers += n
            if n == 0 { break }
        }
        return (incidents, customers)
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
