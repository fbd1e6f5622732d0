import Foundation
import XCTest
@testable import Intake
@testable import IntakeDomain

final class SymptomClassifierTests: XCTestCase {
    let classifier = SymptomClassifier()

    func testInfersSymptomsAcrossLanguages() {
        let cases: [(String, SymptomKind)] = [
            ("The whole site is down, total outage", .unavailable),
            ("Website unreachable since 9:00 (503)", .unavailable),
            ("Die Seite ist komplett ausgefallen, Ausfall seit heute", .unavailable),
            ("Checkout keeps failing with errors", .errors),
            ("Zahlung fehlgeschlagen, Fehler 500", .errors),
            ("Échec du paiement, erreur inconnue", .errors),
            ("My invoices are missing and the totals are wrong", .data),
            ("Dashboard is very slow, lots of timeouts", .slow),
            ("La aplicación va muy lenta", .slow),
            ("How do I change my billing address?", .unspecified),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(classifier.infer(text).symptom, expected, text)
        }
        XCTAssertEqual(classifier.infer("Checkout keeps failing with errors").matched, ["fail", "error"])
    }

    func testTiesGoToTheMoreSevereSymptom() {
        XCTAssertEqual(classifier.infer("slow then down").symptom, .unavailable)
    }

    func testResolveKeepsAGivenSymptom() {
        XCTAssertEqual(classifier.resolve(.data, text: "site down"), .data)
        XCTAssertEqual(classifier.resolve(.unspecified, text: "site down"), .unavailable)
    }

    func testDominantSymptom() {
        XCTAssertEqual(SymptomClassifier.dominant([]), .unspecified)
        XCTAssertEqual(SymptomClassifier.dominant([.unspecified]), .unspecified)
        XCTAssertEqual(SymptomClassifier.dominant([.slow, .errors, .errors, .unspecified]), .errors)
        XCTAssertEqual(SymptomClassifier.dominant([.errors, .slow]), .slow, "ties go to the latest")
    }
}

final class CustomerRulesTests: XCTestCase {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func customer(features: [String] = ["a", "b"], time: Date?, tier: Tier = .business) -> CustomerUpsert {
        CustomerUpsert(name: "customers/acme", displayName: "ACME",
                       attributes: CustomerAttributes(accountNumber: "1", region: "eu-south", country: "IT", tier: tier,
                                                      features: features),
                       sourceUpdateTime: time)
    }

    func testUpsertOutcomes() {
        XCTAssertEqual(CustomerRules.upsertOutcome(existing: nil, incoming: customer(time: t0)), .created)
        XCTAssertEqual(CustomerRules.upsertOutcome(existing: customer(time: t0),
                                                   incoming: customer(time: t0.addingTimeInterval(-1), tier: .free)),
                       .skippedStale)
        XCTAssertEqual(CustomerRules.upsertOutcome(existing: customer(time: t0),
                                                   incoming: customer(time: t0.addingTimeInterval(1), tier: .free)),
                       .updated)
        XCTAssertEqual(CustomerRules.upsertOutcome(existing: customer(time: t0),
                                                   incoming: customer(features: ["b", "a", "a"],
                                                                      time: t0.addingTimeInterval(60))),
                       .unchanged, "feature order and a newer source time alone change nothing")
        XCTAssertEqual(CustomerRules.upsertOutcome(existing: customer(time: t0),
                                                   incoming: customer(time: nil, tier: .enterprise)),
                       .updated)
        var explicitActive = customer(time: t0)
        explicitActive.state = .active
        XCTAssertEqual(CustomerRules.upsertOutcome(existing: customer(time: t0), incoming: explicitActive), .unchanged)
    }

    func testBatchUpsertLimits() {
        XCTAssertEqual(CustomerRules.batchUpsertViolations(names: []).map(\.field), ["customers"])
        XCTAssertEqual(CustomerRules.batchUpsertViolations(names: Array(repeating: "customers/x", count: 1001))
            .map(\.field), ["customers"])
        XCTAssertEqual(CustomerRules.batchUpsertViolations(names: ["customers/a", "customers/b", "customers/a",
                                                                   "customers/a"]).map(\.field),
                       ["customers[2].name", "customers[3].name"])
        XCTAssertEqual(CustomerRules.batchUpsertViolations(names: (0 ..< 1000).map { "customers/c\($0)" }), [])
    }

    func testBatchSubmitLimitsAndRequestIds() {
        XCTAssertEqual(CustomerRules.batchSubmitViolations(count: 0).map(\.field), ["requests"])
        XCTAssertEqual(CustomerRules.batchSubmitViolations(count: 501).map(\.field), ["requests"])
        XCTAssertEqual(CustomerRules.batchSubmitViolations(count: 500), [])
        XCTAssertNil(CustomerRules.requestIdViolation("123e4567-e89b-12d3-a456-426614174000"))
        XCTAssertNil(CustomerRules.requestIdViolation("123E4567-E89B-12D3-A456-426614174000"))
        XCTAssertEqual(CustomerRules.requestIdViolation("")?.field, "request_id")
        XCTAssertEqual(CustomerRules.requestIdViolation("not-a-uuid", field: "requests[1].request_id")?.field,
                       "requests[1].request_id")
        XCTAssertNotNil(CustomerRules.requestIdViolation("123e4567e89b12d3a456426614174000"))
        XCTAssertNotNil(CustomerRules.requestIdViolation("123e4567-e89b-12d3-a456-42661417400g"))
    }
}

final class BatchWaveTests: XCTestCase {
    /// Entries that share a customer or a request id never share a wave, keep their order, and
    /// everything else shares the first wave.
    func testWavesSeparateSharedCustomersAndRequestIDs() {
        let waves = IntakeRepository.waves([
            ("a", "r1"), ("b", "r2"), ("a", "r3"), ("c", "r2"), ("d", "r4"), ("a", "r5"), ("e", "r6"),
        ])
        XCTAssertEqual(waves, [[0, 1, 4, 6], [2, 3], [5]])
        XCTAssertEqual(IntakeRepository.waves([]), [])
        let independent = IntakeRepository.waves((0..<100).map { ("c\($0)", "r\($0)") })
        XCTAssertEqual(independent, [Array(0..<100)])
    }
}
