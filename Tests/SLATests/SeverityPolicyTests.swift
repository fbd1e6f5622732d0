import XCTest
@testable import SLADomain

final class SeverityPolicyTests: XCTestCase {
    func testWhiteGloveRaisesDeclaredSEV3ToSEV2() {
        // 2 white-glove >= 1 -> SEV2; share 10/10,000 = 0.1% (no share rule); 10 hit >= 5 -> SEV4 weight
        let a = SeverityPolicy.advise(SeverityInputs(declared: 3, customersHit: 10, customerBase: 10_000, whiteGloveHit: 2))
        XCTAssertEqual(a.recommended, 2)
        XCTAssertEqual(a.direction, .raise)
        XCTAssertEqual(a.confidence, 0.75, accuracy: 1e-12)  // 0.5 + 0.25 × log2(2 / 1)
        XCTAssertEqual(a.reasons.map(\.kind), ["white_glove_affected", "affected_customers"])
        XCTAssertEqual(a.reasons[0].detail, "2 white-glove customers hit")
        XCTAssertEqual(a.reasons[1].detail, "10 of 10,000 customers hit (0.10%)")
    }

    func testFallingTrendLowers() {
        // 600 / 10,000 = 6% >= 5% -> SEV2; falling, no SLA at risk -> SEV3; declared 2 -> lower
        let a = SeverityPolicy.advise(SeverityInputs(declared: 2, customersHit: 600, customerBase: 10_000, trend: .falling))
        XCTAssertEqual(a.recommended, 3)
        XCTAssertEqual(a.direction, .lower)
        // 0.5 + 0.25 × log2(6/5) = 0.566, − 0.1 for the trend, floored at 0.5
        XCTAssertEqual(a.confidence, 0.5, accuracy: 1e-12)
        XCTAssertEqual(a.reasons.map(\.kind), ["affected_customers", "trend_improving"])
        XCTAssertEqual(a.reasons[1].weight, -0.3)
        // Same but 1 SLA at risk: no lowering -> keep SEV2
        let b = SeverityPolicy.advise(SeverityInputs(declared: 2, customersHit: 600, customerBase: 10_000, slasAtRisk: 1,
                                                     trend: .falling))
        XCTAssertEqual(b.recommended, 2)
        XCTAssertEqual(b.direction, .keep)
    }

    func testRisingTrendRaisesButNotAboveSEV1() {
        let a = SeverityPolicy.advise(SeverityInputs(declared: 2, customersHit: 600, customerBase: 10_000, trend: .rising))
        XCTAssertEqual(a.recommended, 1)
        XCTAssertEqual(a.direction, .raise)
        XCTAssertEqual(a.reasons.last?.kind, "trend_worsening")
        let b = SeverityPolicy.advise(SeverityInputs(declared: 1, whiteGloveHit: 3, trend: .rising))
        XCTAssertEqual(b.recommended, 1)
        XCTAssertEqual(b.direction, .keep)
        XCTAssertEqual(b.confidence, 0.5, accuracy: 1e-12)  // 3/3 -> exactly at the threshold
    }

    func testShareBoundaryAndDetails() {
        // 2,500 / 10,000 = 25% -> SEV1; 2,499 -> 24.99% -> SEV2
        XCTAssertEqual(SeverityPolicy.advise(SeverityInputs(customersHit: 2500, customerBase: 10_000)).recommended, 1)
        XCTAssertEqual(SeverityPolicy.advise(SeverityInputs(customersHit: 2499, customerBase: 10_000)).recommended, 2)
        // 412 / 10,000 = 4.12% -> SEV3 (>= 1%); ratio 4.12 -> confidence min(1, 0.5 + 0.25 × 2.04) = 1
        let a = SeverityPolicy.advise(SeverityInputs(declared: 3, customersHit: 412, customerBase: 10_000,
                                                     reportingCustomers: 37))
        XCTAssertEqual(a.recommended, 3)
        XCTAssertEqual(a.direction, .keep)
        XCTAssertEqual(a.confidence, 1.0)
        XCTAssertEqual(a.reasons, [SeverityReasonOut(kind: "affected_customers",
                                                     detail: "412 of 10,000 customers hit (4.12%), 37 reporting",
                                                     weight: 0.5)])
    }

    func testUnspecifiedAndQuiet() {
        let a = SeverityPolicy.advise(SeverityInputs())
        XCTAssertEqual(a.recommended, 5)
        XCTAssertEqual(a.direction, .raise)  // declared 0 -> raise to the recommendation
        XCTAssertEqual(a.confidence, 1.0)  // 0.5 + 0.5 × (1 − 0/5)
        XCTAssertEqual(a.reasons, [])
        // 3 hit, no base: SEV5, confidence 0.5 + 0.5 × (1 − 3/5) = 0.7; declared 4 -> lower
        let b = SeverityPolicy.advise(SeverityInputs(declared: 4, customersHit: 3))
        XCTAssertEqual(b.recommended, 5)
        XCTAssertEqual(b.direction, .lower)
        XCTAssertEqual(b.confidence, 0.7, accuracy: 1e-12)
        XCTAssertEqual(b.reasons.first?.detail, "3 customers hit")
    }

    func testReasonOrderingAndExposure() {
        // enterprise 10 -> SEV1 (1.0); slasBreached 1 and whiteGlove 2 tie at 0.75 -> by kind; exposure 0.2
        let a = SeverityPolicy.advise(SeverityInputs(declared: 2, enterpriseHit: 10, whiteGloveHit: 2, slasBreached: 1,
                                                     creditExposureMinor: 120_000, currency: "EUR"))
        XCTAssertEqual(a.recommended, 1)
        XCTAssertEqual(a.direction, .raise)
        XCTAssertEqual(a.reasons.map(\.kind),
                       ["enterprise_affected", "sla_breached", "white_glove_affected", "credit_exposure"])
        XCTAssertEqual(a.reasons.map(\.detail), ["10 enterprise customers hit", "1 SLA breached",
                                                 "2 white-glove customers hit", "credit exposure 1,200.00 EUR"])
        // SLAs at risk 10 -> SEV2
        let b = SeverityPolicy.advise(SeverityInputs(declared: 2, slasAtRisk: 10))
        XCTAssertEqual(b.recommended, 2)
        XCTAssertEqual(b.reasons.first?.detail, "10 SLAs at risk of breach")
    }
}
