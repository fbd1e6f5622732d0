import Foundation
@testable import CorrelationDomain
import XCTest

/// The link score as a pure function (no database): each contribution and its reason.
final class LinkScorerTests: XCTestCase {
    let start = Date(timeIntervalSince1970: 1_800_000_000)
    var catalogue: ServiceCatalogue {
        var c = ServiceCatalogue()
        c.aliases = ["checkout": "checkout", "payments": "checkout", "auth": "auth"]
        c.names = ["checkout": ["checkout", "payments"], "auth": ["auth"]]
        c.dependencies = ["checkout": ["auth"]]
        return c
    }

    func testHintTimeAndSegmentAddUpAndAreExplained() {
        let incident = ScoredIncident(services: ["checkout"], impactStart: start, affectedKeys: ["region=eu-south"])
        // Hint names the service (0.5), reported at the impact start (0.25), customer in the segment (0.25).
        let (s, reasons) = LinkScorer.score(
            ScoredReport(serviceHint: "Payments", text: "", receiveTime: start, keys: ["region=eu-south", "tier=enterprise"]),
            incident, catalogue: catalogue)
        XCTAssertEqual(s, 1.0, accuracy: 1e-9)
        XCTAssertEqual(reasons.map(\.kind), ["service_match", "time_proximity", "segment_in_blast_radius"])
        // A dependency (0.25) two hours later (0.25 e^-1 = 0.092), outside the segment.
        let (d, dr) = LinkScorer.score(
            ScoredReport(serviceHint: "auth", text: "", receiveTime: start.addingTimeInterval(7200), keys: ["region=us-east"]),
            incident, catalogue: catalogue)
        XCTAssertEqual(d, 0.25 + 0.25 * exp(-1), accuracy: 1e-9)
        XCTAssertEqual(dr.map(\.kind), ["dependency_match", "time_proximity"])
        XCTAssertEqual(dr[1].weight, 0.092)
        // No hint: a mention in the text (0.35); 30 minutes before the start: 0.1.
        let (t, tr) = LinkScorer.score(
            ScoredReport(serviceHint: "", text: "Payments fail at the last step", receiveTime: start.addingTimeInterval(-1800), keys: []),
            incident, catalogue: catalogue)
        XCTAssertEqual(t, 0.45, accuracy: 1e-9)
        XCTAssertEqual(tr.first?.detail, "the text mentions 'payments' (services/checkout)")
    }
}
