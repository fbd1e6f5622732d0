// The automatic link score lives in the domain (`LinkScorer`); this maps the repository's rows to
// its value types and its reasons to the API's.
import CorrelationDomain
import Foundation
import LiaisonAPI

enum Scorer {
    static func reason(_ kind: String, _ weight: Double, _ detail: String) -> Liaison_Correlation_V1_Link.Reason {
        proto(ScoreReason(kind, weight, detail))
    }

    static func proto(_ r: ScoreReason) -> Liaison_Correlation_V1_Link.Reason {
        var out = Liaison_Correlation_V1_Link.Reason()
        out.kind = r.kind
        out.weight = r.weight
        out.detail = r.detail
        return out
    }

    static func score(report: Store.Report, incident: Store.IncidentRow, catalogue: Store.Catalogue)
        -> (Double, [Liaison_Correlation_V1_Link.Reason]) {
        let (score, reasons) = LinkScorer.score(
            ScoredReport(serviceHint: report.serviceHint, text: report.text, receiveTime: report.receiveTime, keys: report.keys),
            ScoredIncident(services: incident.incident.services.map { String($0.dropFirst(9)) },
                           impactStart: incident.incident.impactStartTime.date, affectedKeys: incident.affectedKeys),
            catalogue: catalogue.services)
        return (score, reasons.map(proto))
    }
}
