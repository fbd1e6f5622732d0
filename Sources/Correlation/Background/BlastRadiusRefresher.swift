import CorrelationDomain
import Foundation
import LiaisonRuntime
import LiaisonStorage
import Logging
import ServiceLifecycle

/// Keeps every open incident's default blast radius current without anyone reading it: when an
/// open incident's revision moved (links, state), the refresher recomputes its blast radius in a
/// transaction, which records the AFFECTED segments and publishes BlastRadiusChanged when they
/// change (sla and communications act on it). Rows are claimed with SKIP LOCKED, so replicas
/// share the work.
public struct BlastRadiusRefresher: ServiceLifecycle.Service {
    let pool: PostgresPool
    let settings: CorrelationSettings
    let logger: Logger

    public init(pool: PostgresPool, settings: CorrelationSettings, logger: Logger) {
        self.pool = pool
        self.settings = settings
        self.logger = logger
    }

    /// Refreshes every incident due; returns how many were computed.
    @discardableResult
    public func runOnce() async throws -> Int {
        let settings = self.settings
        var done = 0
        while true {
            let refreshed = try await pool.transaction { c -> Bool in
                guard let row = try c.query("""
                    SELECT id, revision + incident_shard_revisions(id) FROM incidents
                    WHERE state IN (1, 2) AND revision + incident_shard_revisions(id) <> blast_checked_revision
                    LIMIT 1 FOR UPDATE SKIP LOCKED
                    """).first else { return false }
                let id = try row.decode(UUID.self, 0)
                let incident = try Store.incident(c, id)
                _ = try Analytics.blastRadius(c, incident: incident, options: Analytics.BlastOptions(), settings: settings, requireData: false,
                                         persist: true)
                try c.query("UPDATE incidents SET blast_checked_revision = $2 WHERE id = $1", [id, try row.decode(Int64.self, 1)])
                return true
            }
            if !refreshed { return done }
            done += 1
        }
    }

    public func run() async throws {
        try await BackgroundLoop("blast-radius refresher", every: settings.blastRefreshInterval, logger: logger) {
            _ = try await runOnce()
        }.run()
    }
}
