// Settings of the correlation service, read from LIAISON_CORRELATION_* variables.
import CorrelationDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf
import Synchronization

/// Settings of the correlation service (environment variables `LIAISON_CORRELATION_*`).
public struct CorrelationSettings: Sendable {
    /// Destinations of the service's events (`LIAISON_CORRELATION_EVENT_DESTINATIONS`, comma
    /// separated, `none` for none). Default: intake, which applies links and incident changes, and
    /// sla, which builds its impact ledger from incidents, links and blast radius.
    public var destinations: [String] = ["intake", "sla"]
    /// Score at or above which an automatic link is CONFIRMED.
    public var autoLinkThreshold: Double = 0.6
    /// Score at or above which an automatic link is SUGGESTED.
    public var suggestThreshold: Double = 0.3
    /// Region adjacency for spread (`LIAISON_REGION_NEIGHBOURS="eu-south:eu-central,eu-central:eu-south|eu-north"`).
    public var neighbours: [String: [String]] = [:]
    /// Emerging issues: sliding window, baseline period before it, detector period, lease.
    public var emergingWindow: TimeInterval = 1800
    public var emergingBaseline: TimeInterval = 24 * 3600
    public var detectorInterval: Duration = .seconds(30)
    /// How often open incidents whose links changed get their blast radius recomputed and
    /// published (`LIAISON_CORRELATION_BLAST_REFRESH_MS`, default 1000).
    public var blastRefreshInterval: Duration = .milliseconds(1000)
    public var emergingOptions = EmergingOptions()
    /// Quiet period after which an OPEN emerging issue whose cluster is no longer significant
    /// becomes EXPIRED (`LIAISON_CORRELATION_EMERGING_EXPIRE_AFTER_SECONDS`); nil: twice the window.
    public var emergingExpireAfter: TimeInterval? = nil
    /// The quiet period in effect.
    public var emergingQuietPeriod: TimeInterval { emergingExpireAfter ?? 2 * emergingWindow }
    /// Key signing page tokens (`LIAISON_CORRELATION_PAGE_TOKEN_KEY`, at least 16 bytes); all
    /// replicas must share it. Required in production; see `ServiceConfiguration.pageTokenKey`.
    public var pageTokenKey: [UInt8] = ServiceConfiguration.derivedPageTokenKey(service: "correlation", databaseURL: "")
    /// How long a page token is accepted.
    public var pageTokenLifetime: TimeInterval = 24 * 3600
    /// How often the replica's one revision feed reads the watched incidents' change counters.
    public var watchPoll: Duration = .milliseconds(500)
    /// Most WatchIncident streams one replica serves at once
    /// (`LIAISON_CORRELATION_MAX_WATCHERS`, default 1000); one more is RESOURCE_EXHAUSTED.
    public var maxWatchers = 1000
    /// Replica identity (lease owner).
    public var replicaID: String = RandomUUID.make().uuidString

    public init() {}

    public static func from(_ env: Environment, configuration: ServiceConfiguration, logger: Logger) throws -> CorrelationSettings {
        var s = CorrelationSettings()
        s.replicaID = configuration.replicaID
        s.pageTokenKey = try configuration.pageTokenKey("CORRELATION_PAGE_TOKEN_KEY", environment: env, service: "correlation", logger: logger)
        s.destinations = env.destinations("CORRELATION_EVENT_DESTINATIONS", default: s.destinations)
        s.maxWatchers = try env.int("CORRELATION_MAX_WATCHERS", default: s.maxWatchers, range: 1...100_000)
        s.autoLinkThreshold = try env.double("CORRELATION_AUTO_LINK_THRESHOLD", default: 0.6, range: 0...1)
        s.suggestThreshold = try env.double("CORRELATION_SUGGEST_THRESHOLD", default: 0.3, range: 0...1)
        s.neighbours = parseNeighbours(env.string("REGION_NEIGHBOURS") ?? "")
        s.emergingWindow = Double(try env.int("CORRELATION_EMERGING_WINDOW_SECONDS", default: 1800, range: 60...86400))
        s.emergingBaseline = Double(try env.int("CORRELATION_EMERGING_BASELINE_SECONDS", default: 86400, range: 600...30 * 86400))
        s.blastRefreshInterval = .milliseconds(try env.int("CORRELATION_BLAST_REFRESH_MS", default: 1000, range: 50...3_600_000))
        s.detectorInterval = .seconds(try env.int("CORRELATION_DETECTOR_INTERVAL_SECONDS", default: 30, range: 1...3600))
        if env.string("CORRELATION_EMERGING_EXPIRE_AFTER_SECONDS") != nil {
            s.emergingExpireAfter = Double(try env.int("CORRELATION_EMERGING_EXPIRE_AFTER_SECONDS", default: 3600, range: 60...30 * 86400))
        }
        return s
    }


    /// `"a:b|c,b:a"` -> `["a": ["b", "c"], "b": ["a"]]`.
    public static func parseNeighbours(_ text: String) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for entry in text.split(separator: ",") {
            let parts = entry.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            out[parts[0].trimmingCharacters(in: .whitespaces)] =
                parts[1].split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        return out
    }
}
