import Foundation

/// The technical-service catalogue as the link scorer reads it.
public struct ServiceCatalogue: Sendable {
    /// Lower-case alias or id -> service id.
    public var aliases: [String: String] = [:]
    /// Service id -> its lower-case id and aliases.
    public var names: [String: [String]] = [:]
    /// Service id -> the ids it depends on.
    public var dependencies: [String: [String]] = [:]

    public init() {}

    /// The service a hint names: an alias, an id, or `services/{id}` (case-insensitive).
    public func resolve(_ hint: String) -> String? {
        let h = hint.trimmingCharacters(in: .whitespaces).lowercased()
        if h.isEmpty { return nil }
        if let id = aliases[h] { return id }
        if h.hasPrefix("services/") { return aliases[String(h.dropFirst(9))] }
        return nil
    }
}

/// What the scorer knows of a report.
public struct ScoredReport: Sendable {
    public var serviceHint: String
    public var text: String
    public var receiveTime: Date
    /// The customer's segment keys.
    public var keys: [String]

    public init(serviceHint: String, text: String, receiveTime: Date, keys: [String]) {
        self.serviceHint = serviceHint
        self.text = text
        self.receiveTime = receiveTime
        self.keys = keys
    }
}

/// What the scorer knows of an incident.
public struct ScoredIncident: Sendable {
    /// Service ids (without `services/`).
    public var services: [String]
    public var impactStart: Date
    /// The AFFECTED segment keys of its last recorded blast radius.
    public var affectedKeys: [String]

    public init(services: [String], impactStart: Date, affectedKeys: [String]) {
        self.services = services
        self.impactStart = impactStart
        self.affectedKeys = affectedKeys
    }
}

/// One reason behind a link score.
public struct ScoreReason: Hashable, Sendable {
    public var kind: String
    /// Rounded to 0.001.
    public var weight: Double
    public var detail: String

    public init(_ kind: String, _ weight: Double, _ detail: String) {
        self.kind = kind
        self.weight = (weight * 1000).rounded() / 1000
        self.detail = detail
    }
}

/// The automatic link score of a report against an incident, in [0, 1]: the service named (hint
/// 0.5, a dependency 0.25, or a mention in the text 0.35), time proximity to the impact start (up
/// to 0.25, decaying over 2 h; 0.1 up to an hour before), and the customer in an AFFECTED segment
/// (0.25). Each contribution comes with its reason.
public enum LinkScorer {
    public static func score(_ report: ScoredReport, _ incident: ScoredIncident, catalogue: ServiceCatalogue) -> (Double, [ScoreReason]) {
        var reasons: [ScoreReason] = []
        let services = incident.services
        var serviceScore = 0.0
        if let hinted = catalogue.resolve(report.serviceHint) {
            if services.contains(hinted) {
                serviceScore = 0.5
                reasons.append(ScoreReason("service_match", 0.5, "service hint '\(report.serviceHint)' names services/\(hinted)"))
            } else if services.contains(where: { catalogue.dependencies[$0]?.contains(hinted) == true
                || catalogue.dependencies[hinted]?.contains($0) == true }) {
                serviceScore = 0.25
                reasons.append(ScoreReason("dependency_match", 0.25, "services/\(hinted) is a dependency of the incident's services"))
            }
        }
        if serviceScore == 0, !report.text.isEmpty {
            let text = " " + report.text.lowercased().map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : " " } + " "
            outer: for s in services {
                for alias in catalogue.names[s] ?? [s] where text.contains(" \(alias) ") {
                    serviceScore = 0.35
                    reasons.append(ScoreReason("text_mention", 0.35, "the text mentions '\(alias)' (services/\(s))"))
                    break outer
                }
            }
        }
        let dt = report.receiveTime.timeIntervalSince(incident.impactStart)
        var timeScore = 0.0
        if dt >= -900 {
            timeScore = 0.25 * exp(-max(0, dt) / 7200)
        } else if dt >= -3600 {
            timeScore = 0.1
        }
        if timeScore > 0.005 {
            let minutes = Int((dt / 60).rounded())
            reasons.append(ScoreReason("time_proximity", timeScore,
                                       minutes >= 0 ? "reported \(minutes) min after impact start" : "reported \(-minutes) min before impact start"))
        }
        var segmentScore = 0.0
        if !incident.affectedKeys.isEmpty {
            let overlap = Set(report.keys).intersection(incident.affectedKeys)
            if !overlap.isEmpty {
                segmentScore = 0.25
                reasons.append(ScoreReason("segment_in_blast_radius", 0.25, "customer is in \(overlap.sorted().prefix(3).joined(separator: ", "))"))
            }
        }
        return (min(1, serviceScore + timeScore + segmentScore), reasons)
    }
}
