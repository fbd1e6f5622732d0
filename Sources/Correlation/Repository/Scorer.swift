// The automatic link score. It reads the repository's row types (Store.Report, IncidentRow,
// Catalogue); moving it into Domain/ needs plain value types for them first (issue 21).
import CorrelationDomain
import Foundation
import LiaisonAPI
/// Scores a report against an incident: service named (hint or text, through catalogue aliases),
/// time proximity to the impact start, segment overlap with the incident's blast radius.
enum Scorer {
    static func reason(_ kind: String, _ weight: Double, _ detail: String) -> Liaison_Correlation_V1_Link.Reason {
        var r = Liaison_Correlation_V1_Link.Reason()
        r.kind = kind
        r.weight = (weight * 1000).rounded() / 1000
        r.detail = detail
        return r
    }

    static func score(report: Store.Report, incident: Store.IncidentRow, catalogue: Store.Catalogue)
        -> (Double, [Liaison_Correlation_V1_Link.Reason]) {
        var reasons: [Liaison_Correlation_V1_Link.Reason] = []
        let services = incident.incident.services.map { String($0.dropFirst(9)) }
        var serviceScore = 0.0
        if let hinted = catalogue.resolve(report.serviceHint) {
            if services.contains(hinted) {
                serviceScore = 0.5
                reasons.append(reason("service_match", 0.5, "service hint '\(report.serviceHint)' names services/\(hinted)"))
            } else if services.contains(where: { catalogue.dependencies[$0]?.contains(hinted) == true
                || catalogue.dependencies[hinted]?.contains($0) == true }) {
                serviceScore = 0.25
                reasons.append(reason("dependency_match", 0.25, "services/\(hinted) is a dependency of the incident's services"))
            }
        }
        if serviceScore == 0, !report.text.isEmpty {
            let text = " " + report.text.lowercased().map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : " " } + " "
            outer: for s in services {
                for alias in catalogue.names[s] ?? [s] where text.contains(" \(alias) ") {
                    serviceScore = 0.35
                    reasons.append(reason("text_mention", 0.35, "the text mentions '\(alias)' (services/\(s))"))
                    break outer
                }
            }
        }
        let dt = report.receiveTime.timeIntervalSince(incident.incident.impactStartTime.date)
        var timeScore = 0.0
        if dt >= -900 {
            timeScore = 0.25 * exp(-max(0, dt) / 7200)
        } else if dt >= -3600 {
            timeScore = 0.1
        }
        if timeScore > 0.005 {
            let minutes = Int((dt / 60).rounded())
            reasons.append(reason("time_proximity", timeScore,
                                  minutes >= 0 ? "reported \(minutes) min after impact start" : "reported \(-minutes) min before impact start"))
        }
        var segmentScore = 0.0
        if !incident.affectedKeys.isEmpty {
            let overlap = Set(report.keys).intersection(incident.affectedKeys)
            if !overlap.isEmpty {
                segmentScore = 0.25
                reasons.append(reason("segment_in_blast_radius", 0.25, "customer is in \(overlap.sorted().prefix(3).joined(separator: ", "))"))
            }
        }
        return (min(1, serviceScore + timeScore + segmentScore), reasons)
    }
}
