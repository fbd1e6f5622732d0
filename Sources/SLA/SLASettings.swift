// Settings of the sla service, read from LIAISON_SLA_* variables.
import Foundation
import LiaisonRuntime
import Logging

/// Settings of the sla service (environment variables `LIAISON_SLA_*`).
public struct SLASettings: Sendable {
    /// Destinations of the service's events (`LIAISON_SLA_EVENT_DESTINATIONS`, comma separated,
    /// `none` for none). Default: none yet: communications (stakeholder warnings) and followup
    /// (breach responses) consume them once their sinks land; events wait in the outbox for no
    /// one until then, so the default routes nowhere.
    public var destinations: [String] = []
    /// Key signing page tokens (`LIAISON_SLA_PAGE_TOKEN_KEY`); all replicas must share it.
    public var pageTokenKey: [UInt8] = ServiceConfiguration.derivedPageTokenKey(service: "sla", databaseURL: "")
    /// How long a page token is accepted.
    public var pageTokenLifetime: TimeInterval = 24 * 3600
    /// How often the evaluator looks for work (`LIAISON_SLA_EVALUATE_INTERVAL_MS`, default 500).
    public var evaluateInterval: Duration = .milliseconds(500)
    /// Projected exhaustion within this horizon raises EXHAUSTION_PROJECTED and AT_RISK
    /// (`LIAISON_SLA_WARNING_HORIZON_SECONDS`, default 3600).
    public var warningHorizon: TimeInterval = 3600
    /// Default consumption thresholds when a contract names none.
    public var defaultThresholds: [Int] = [50, 75, 90]
    /// Most customers one evaluator pass takes (bounds a transaction).
    public var evaluateBatch = 2000
    /// Replica identity.
    public var replicaID: String = RandomUUID.make().uuidString

    public init() {}

    public static func from(_ env: Environment, configuration: ServiceConfiguration, logger: Logger) throws -> SLASettings {
        var s = SLASettings()
        s.replicaID = configuration.replicaID
        s.pageTokenKey = try configuration.pageTokenKey("SLA_PAGE_TOKEN_KEY", environment: env, service: "sla", logger: logger)
        s.destinations = env.destinations("SLA_EVENT_DESTINATIONS", default: s.destinations)
        s.evaluateInterval = .milliseconds(try env.int("SLA_EVALUATE_INTERVAL_MS", default: 500, range: 50...600_000))
        s.warningHorizon = Double(try env.int("SLA_WARNING_HORIZON_SECONDS", default: 3600, range: 60...30 * 86400))
        s.evaluateBatch = try env.int("SLA_EVALUATE_BATCH", default: 2000, range: 1...100_000)
        return s
    }
}
