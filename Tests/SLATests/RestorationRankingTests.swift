import XCTest
@testable import SLADomain

final class RestorationRankingTests: XCTestCase {
    func testOrderScoresReasonsAndTieBreak() {
        let now = SLADomainFixtures.utc(2026, 4, 10, 12)
        let m = SLADomainFixtures.minute
        let services = [
            // 0 × 5 + 20 × 2 = 40, no breach -> 40
            ServiceExposure(service: "billing", enterpriseAtRisk: 2, now: now),
            // 5 × 100 = 500
            ServiceExposure(service: "search", customersAtRisk: 100, now: now),
            // (1,200 + 50 × 3 + 5 × 10) × (1 + 1440 m / 40 m) = 1,400 × 37 = 51,800
            ServiceExposure(service: "checkout", customersAtRisk: 10, whiteGloveAtRisk: 3, exposureMinor: 120_000,
                            currency: "EUR", earliestBreach: now + 40 * m, now: now),
            // identical to billing -> tie broken by name: auth first
            ServiceExposure(service: "auth", enterpriseAtRisk: 2, now: now),
            // breach already due -> lead 5 m: 5 × (1 + 1440 / 5) = 5 × 289 = 1,445
            ServiceExposure(service: "api", customersAtRisk: 1, earliestBreach: now - m, now: now),
        ]
        let r = RestorationRanking.rank(services)
        XCTAssertEqual(r.map(\.exposure.service), ["checkout", "api", "search", "auth", "billing"])
        XCTAssertEqual(r.map(\.rank), [1, 2, 3, 4, 5])
        XCTAssertEqual(r[0].score, 51_800, accuracy: 1e-9)
        XCTAssertEqual(r[1].score, 1_445, accuracy: 1e-9)
        XCTAssertEqual(r[2].score, 500, accuracy: 1e-9)
        XCTAssertEqual(r[3].score, 40, accuracy: 1e-9)
        XCTAssertEqual(r[0].reasons, ["3 white-glove customers at risk", "10 customers at risk", "first breach in 40m",
                                      "credit exposure 1,200.00 EUR"])
        XCTAssertEqual(r[1].reasons, ["1 customer at risk", "SLA breach already due"])
        XCTAssertEqual(r[3].reasons, ["2 enterprise customers at risk"])
        // JPY exposure counts in major units (exponent 0): 150 JPY -> 150
        let jpy = RestorationRanking.score(ServiceExposure(service: "x", exposureMinor: 150, currency: "JPY", now: now))
        XCTAssertEqual(jpy, 150, accuracy: 1e-9)
        XCTAssertEqual(RestorationRanking.rank([]), [])
    }
}
