import Foundation
import XCTest
@testable import Intake
@testable import IntakeDomain

final class DuplicateMatcherTests: XCTestCase {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let acme = "customers/acme"
    let globex = "customers/globex"

    /// Simulates the service: each report is matched against the open cases, then joins or opens one.
    struct Desk {
        var cases: [CaseCandidate] = []
        var decisions: [MatchDecision] = []
        var nextId = 1
        var config = DuplicateConfig()

        mutating func submit(_ r: NewReport, symptom: SymptomKind? = nil) -> MatchDecision {
            let decision = DuplicateMatcher.match(candidate: r, openCases: cases, config: config)
            let ref = CandidateReport(name: "reports/r\(nextId)", text: r.text, symptom: r.symptom,
                                      serviceHint: r.serviceHint, receiveTime: r.receiveTime,
                                      externalTicket: r.externalTicket, symptomInferred: r.symptomInferred)
            nextId += 1
            switch decision.action {
            case .joinCase(let name):
                let i = cases.firstIndex { $0.name == name }!
                cases[i].reports.append(ref)
            case .openCase(let owner):
                cases.append(CaseCandidate(name: "cases/c\(cases.count + 1)", customer: r.customer, owner: owner,
                                           reports: [ref]))
            }
            decisions.append(decision)
            return decision
        }
    }

    func report(_ customer: String, _ agent: String, _ text: String, minutes: Double, symptom: SymptomKind = .errors,
                service: String = "checkout") -> NewReport {
        NewReport(customer: customer, agent: agent, text: text, symptom: symptom, serviceHint: service,
                  receiveTime: t0.addingTimeInterval(minutes * 60))
    }

    func testFiveAgentsSameOutageSameCustomerMakeOneCase() {
        var desk = Desk()
        let texts = [
            "The checkout page keeps failing with error 500 when I try to pay",
            "Payment fails at checkout, getting a 500 error",
            "checkout broken - error 500 every time I pay",
            "Customer cannot pay: checkout returns error 500",
            "Getting HTTP 500 errors at checkout when paying",
        ]
        for (i, text) in texts.enumerated() {
            _ = desk.submit(report(acme, "agents/agent-\(i + 1)", text, minutes: Double(i * 7)))
        }
        XCTAssertEqual(desk.cases.count, 1)
        XCTAssertEqual(desk.cases[0].reports.count, 5)
        XCTAssertEqual(desk.cases[0].owner, "agents/agent-1", "full-case ownership: the first agent owns the case")
        XCTAssertEqual(desk.decisions[0].action, .openCase(owner: "agents/agent-1"))
        XCTAssertFalse(desk.decisions[0].isDuplicate)
        for d in desk.decisions.dropFirst() {
            XCTAssertEqual(d.action, .joinCase("cases/c1"), d.reason)
            XCTAssertTrue(d.isDuplicate)
            XCTAssertGreaterThanOrEqual(d.assessment.similarity, d.assessment.threshold)
            XCTAssertTrue(d.assessment.matchedReport.hasPrefix("reports/r"))
            XCTAssertEqual(Set(d.assessment.signals.map(\.name)),
                           ["same_customer", "text_similarity", "same_symptom", "same_service", "time_proximity"])
            XCTAssertEqual(d.assessment.signal("same_symptom")?.score, 1)
            XCTAssertEqual(d.assessment.signal("same_service")?.score, 1)
            XCTAssertGreaterThan(d.assessment.signal("text_similarity")!.score, 0)
            XCTAssertTrue(d.reason.contains("cases/c1"), d.reason)
        }
    }

    /// The same two texts as `testDifferentSymptomOpensANewCase`, but the second symptom was only
    /// inferred from the text: the conflict scores 0 and the text decides (no veto).
    func testAnInferredSymptomNeverVetoes() {
        var desk = Desk()
        _ = desk.submit(report(acme, "agents/a", "Checkout is very slow, pages take a minute to load", minutes: 0,
                               symptom: .slow))
        var second = report(acme, "agents/b", "Checkout is very slow, pages take a minute to load again", minutes: 10,
                            symptom: .data)
        second.symptomInferred = true
        let d = desk.submit(second)
        XCTAssertTrue(d.isDuplicate, d.reason)
        XCTAssertEqual(d.action, .joinCase("cases/c1"))
        XCTAssertEqual(d.assessment.signal("same_symptom")?.score, 0)
        XCTAssertTrue(d.assessment.signal("same_symptom")?.detail.contains("inferred") == true)

        // Given on both sides, the same conflict vetoes.
        var strict = Desk()
        _ = strict.submit(report(acme, "agents/a", "Checkout is very slow, pages take a minute to load", minutes: 0,
                                 symptom: .slow))
        let vetoed = strict.submit(report(acme, "agents/b", "Checkout is very slow, pages take a minute to load again",
                                          minutes: 10, symptom: .data))
        XCTAssertFalse(vetoed.isDuplicate)
    }

    func testDifferentCustomersGetDifferentCases() {
        var desk = Desk()
        let text = "The checkout page keeps failing with error 500 when I try to pay"
        _ = desk.submit(report(acme, "agents/a", text, minutes: 0))
        let d = desk.submit(report(globex, "agents/b", text, minutes: 1))
        XCTAssertEqual(d.action, .openCase(owner: "agents/b"))
        XCTAssertEqual(d.assessment.matchedReport, "", "another customer's reports are never candidates")
        XCTAssertEqual(desk.cases.map(\.customer), [acme, globex])
    }

    func testOutsideTheWindowOpensANewCase() {
        var desk = Desk()
        let text = "The checkout page keeps failing with error 500 when I try to pay"
        _ = desk.submit(report(acme, "agents/a", text, minutes: 0))
        _ = desk.submit(report(acme, "agents/b", text, minutes: 5 * 60))  // joins: within 6h of the last report
        XCTAssertEqual(desk.cases.count, 1)
        // 6h + 1 minute after the case's last report (at 5h): too late.
        let late = desk.submit(report(acme, "agents/c", text, minutes: 11 * 60 + 1))
        XCTAssertEqual(late.action, .openCase(owner: "agents/c"))
        XCTAssertTrue(late.reason.contains("within"), late.reason)
        XCTAssertEqual(desk.cases.count, 2)
        // The window is configurable.
        var config = DuplicateConfig()
        config.window = 60
        let d = DuplicateMatcher.match(candidate: report(acme, "agents/d", text, minutes: 11 * 60 + 3),
                                       openCases: [desk.cases[1]], config: config)
        XCTAssertEqual(d.action, .openCase(owner: "agents/d"))
    }

    func testBackfilledReportJustBeforeTheCaseJoins() {
        var desk = Desk()
        let text = "The checkout page keeps failing with error 500 when I try to pay"
        _ = desk.submit(report(acme, "agents/a", text, minutes: 600))
        let d = desk.submit(report(acme, "agents/b", text, minutes: 590))
        XCTAssertEqual(d.action, .joinCase("cases/c1"))
        let old = desk.submit(report(acme, "agents/b", text, minutes: 0))
        XCTAssertEqual(old.action, .openCase(owner: "agents/b"))
    }

    func testDifferentSymptomOpensANewCase() {
        var desk = Desk()
        _ = desk.submit(report(acme, "agents/a", "Checkout is very slow, pages take a minute to load", minutes: 0,
                               symptom: .slow))
        let d = desk.submit(report(acme, "agents/b", "Checkout is very slow and orders are missing", minutes: 10,
                                   symptom: .data))
        XCTAssertEqual(d.action, .openCase(owner: "agents/b"))
        XCTAssertFalse(d.isDuplicate)
        XCTAssertEqual(d.assessment.matchedReport, "reports/r1", "the nearest report is still named")
        XCTAssertEqual(d.assessment.signal("same_symptom")?.score, 0)
        XCTAssertTrue(d.reason.contains("different symptom"), d.reason)
        XCTAssertEqual(desk.cases.count, 2)
    }

    func testDifferentProblemSameCustomerOpensANewCase() {
        var desk = Desk()
        _ = desk.submit(report(acme, "agents/a", "The checkout page keeps failing with error 500 when I try to pay",
                               minutes: 0))
        let d = desk.submit(report(acme, "agents/b", "Invoice for October shows the wrong amount, charged twice",
                                   minutes: 3, service: "billing"))
        XCTAssertEqual(d.action, .openCase(owner: "agents/b"))
        XCTAssertLessThan(d.assessment.similarity, d.assessment.threshold)
        XCTAssertTrue(d.reason.contains("scored"), d.reason)
    }

    func testUnknownSymptomAndServiceAreNeutral() {
        var desk = Desk()
        _ = desk.submit(report(acme, "agents/a", "Checkout page fails with error 500", minutes: 0,
                               symptom: .unspecified, service: ""))
        let d = desk.submit(report(acme, "agents/b", "error 500 on checkout page", minutes: 2,
                                   symptom: .errors, service: "checkout"))
        XCTAssertEqual(d.action, .joinCase("cases/c1"), d.reason)
        XCTAssertEqual(d.assessment.signal("same_symptom")?.score, 0.5)
        XCTAssertEqual(d.assessment.signal("same_service")?.score, 0.5)
    }

    func testOnlyOpenCasesAreCandidates() {
        let text = "The checkout page keeps failing with error 500 when I try to pay"
        for state in [CaseState.closed, .merged, .awaitingCustomerNotice] {
            let c = CaseCandidate(name: "cases/old", customer: acme, state: state, owner: "agents/a",
                                  reports: [CandidateReport(name: "reports/r1", text: text, symptom: .errors,
                                                            serviceHint: "checkout", receiveTime: t0)])
            let d = DuplicateMatcher.match(candidate: report(acme, "agents/b", text, minutes: 1), openCases: [c])
            XCTAssertEqual(d.action, .openCase(owner: "agents/b"), "\(state)")
        }
    }

    func testSameExternalTicketIsAlwaysADuplicate() {
        let ticket = ExternalReference(system: "zendesk", id: "ZD-1")
        let c = CaseCandidate(name: "cases/c1", customer: acme, owner: "agents/a",
                              reports: [CandidateReport(name: "reports/r1", text: "Checkout is down", symptom: .unavailable,
                                                        receiveTime: t0, externalTicket: ticket)])
        var r = report(acme, "agents/b", "Totally different words here", minutes: 1, symptom: .slow)
        r.externalTicket = ticket
        let d = DuplicateMatcher.match(candidate: r, openCases: [c])
        XCTAssertEqual(d.action, .joinCase("cases/c1"))
        XCTAssertEqual(d.assessment.similarity, 1)
        XCTAssertNotNil(d.assessment.signal("same_external_ticket"))
        XCTAssertTrue(d.reason.contains("same external ticket"), d.reason)
    }

    func testPicksTheBestCaseAndExplains() {
        let cases = [
            CaseCandidate(name: "cases/billing", customer: acme, owner: "agents/a", reports: [
                CandidateReport(name: "reports/b1", text: "Invoice shows the wrong amount", symptom: .data,
                                serviceHint: "billing", receiveTime: t0),
            ]),
            CaseCandidate(name: "cases/checkout", customer: acme, owner: "agents/c", reports: [
                CandidateReport(name: "reports/c1", text: "Login is slow", symptom: .slow, receiveTime: t0),
                CandidateReport(name: "reports/c2", text: "Checkout fails with error 500", symptom: .errors,
                                serviceHint: "checkout", receiveTime: t0.addingTimeInterval(60)),
            ]),
        ]
        let d = DuplicateMatcher.match(candidate: report(acme, "agents/z", "error 500 at checkout", minutes: 5),
                                       openCases: cases)
        XCTAssertEqual(d.action, .joinCase("cases/checkout"))
        XCTAssertEqual(d.assessment.matchedReport, "reports/c2")
        XCTAssertEqual(d.bestCase, "cases/checkout")
        let text = d.assessment.signal("text_similarity")!
        XCTAssertEqual(text.weight, 0.6)
        XCTAssertTrue(text.detail.contains("500"), text.detail)
        XCTAssertEqual(d.assessment.signal("time_proximity")?.detail, "reported 4 minutes apart")
        let expected = (0.6 * text.score + 0.25 * 1 + 0.15 * 1) / 1.0
        XCTAssertEqual(d.assessment.similarity, expected, accuracy: 1e-12)
    }

    func testThresholdAndWeightsAreConfigurable() {
        let c = CaseCandidate(name: "cases/c1", customer: acme, owner: "agents/a", reports: [
            CandidateReport(name: "reports/r1", text: "Checkout fails with error 500", symptom: .errors,
                            serviceHint: "checkout", receiveTime: t0),
        ])
        let r = report(acme, "agents/b", "error 500 at checkout", minutes: 1)
        var strict = DuplicateConfig()
        strict.threshold = 0.99
        XCTAssertEqual(DuplicateMatcher.match(candidate: r, openCases: [c], config: strict).action,
                       .openCase(owner: "agents/b"))
        var textOnly = DuplicateConfig()
        textOnly.symptomWeight = 0
        textOnly.serviceWeight = 0
        let d = DuplicateMatcher.match(candidate: r, openCases: [c], config: textOnly)
        XCTAssertEqual(d.assessment.similarity, Similarity.score(r.text, "Checkout fails with error 500"), accuracy: 1e-12)
    }

    func testFingerprintOnlyCandidatesUseTheMinHashEstimate() {
        let text = "The checkout page keeps failing with error 500 when I try to pay"
        let c = CaseCandidate(name: "cases/c1", customer: acme, owner: "agents/a", reports: [
            CandidateReport(name: "reports/r1", text: nil, fingerprint: ReportFingerprint(text: text), symptom: .errors,
                            serviceHint: "checkout", receiveTime: t0),
        ])
        let d = DuplicateMatcher.match(candidate: report(acme, "agents/b", text, minutes: 1), openCases: [c])
        XCTAssertEqual(d.action, .joinCase("cases/c1"))
        XCTAssertEqual(d.assessment.signal("text_similarity")?.score, 1)
        XCTAssertTrue(d.assessment.signal("text_similarity")!.detail.contains("estimated"))
    }

    func testOwnerFallsBackToCustomersOwningAgent() {
        var r = report(acme, "", "Checkout is down", minutes: 0)
        r.customerOwningAgent = "agents/account-manager"
        XCTAssertEqual(DuplicateMatcher.match(candidate: r, openCases: []).action,
                       .openCase(owner: "agents/account-manager"))
    }

    func testNewReportFromSubmissionInfersTheSymptom() {
        let submission = ReportSubmission(customer: acme, channel: .chat, agent: "agents/a",
                                          text: "Checkout keeps failing with error 500", receiveTime: t0)
        let r = NewReport(submission, customerOwningAgent: "agents/am", now: t0)
        XCTAssertEqual(r.symptom, .errors)
        XCTAssertEqual(r.receiveTime, t0)
        XCTAssertEqual(r.customerOwningAgent, "agents/am")
        var given = submission
        given.symptom = .slow
        XCTAssertEqual(NewReport(given, now: t0).symptom, .slow)
    }

    func testParaphrasesWithoutAnySymptomOrServiceNeedMoreText() {
        // Documented behaviour of the default weights: text alone must reach Jaccard 0.5.
        let c = CaseCandidate(name: "cases/c1", customer: acme, owner: "agents/a", reports: [
            CandidateReport(name: "reports/r1", text: "The checkout page keeps failing with error 500 when I try to pay",
                            receiveTime: t0),
        ])
        let weak = NewReport(customer: acme, agent: "agents/b", text: "checkout broken - error 500 every time I pay",
                             receiveTime: t0)
        let d = DuplicateMatcher.match(candidate: weak, openCases: [c])
        XCTAssertEqual(d.assessment.similarity, 0.6 * 0.4 + 0.25 * 0.5 + 0.15 * 0.5, accuracy: 1e-9)
        XCTAssertFalse(d.isDuplicate)
        let strong = NewReport(customer: acme, agent: "agents/b", text: "Payment fails at checkout, getting a 500 error",
                               receiveTime: t0)
        XCTAssertTrue(DuplicateMatcher.match(candidate: strong, openCases: [c]).isDuplicate)
    }

    /// Service hints compare without regard to case, as `lowercased()` would, ASCII or not; the
    /// deciding pair's signals still explain the hints as given (lowercased).
    func testServiceHintsCompareIgnoringCase() {
        let pairs: [(String, String, Bool)] = [
            ("Checkout", "checkout", true), ("CHECKOUT-2", "checkout-2", true), ("checkout", "checkouts", false),
            ("Straße", "STRASSE", "Straße".lowercased() == "STRASSE".lowercased()), ("Évian", "évian", true),
            ("a[b", "A{B", false), ("@", "`", false),
        ]
        for (a, b, equal) in pairs {
            XCTAssertEqual(a.caseInsensitiveEquals(b), equal, "\(a) vs \(b)")
            XCTAssertEqual(a.caseInsensitiveEquals(b), a.lowercased() == b.lowercased(), "\(a) vs \(b)")
        }
        let earlier = CandidateReport(name: "reports/1", text: "checkout fails with error 500", symptom: .errors,
                                      serviceHint: "CheckOut", receiveTime: t0)
        let pair = DuplicateMatcher.score(candidate: report("customers/a", "agents/x", "checkout fails with error 500", minutes: 1),
                                          against: earlier)
        XCTAssertEqual(pair.signals.first { $0.name == "same_service" }?.score, 1)
        XCTAssertEqual(pair.signals.first { $0.name == "same_service" }?.detail, "both \"checkout\"")
    }
}
