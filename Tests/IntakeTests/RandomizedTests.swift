import Foundation
import LiaisonRuntime
import XCTest
@testable import Intake
@testable import IntakeDomain

/// Seeded randomized checks: no input crashes the text pipeline, and random sequences of case
/// operations keep the case invariants.
final class RandomizedTests: XCTestCase {
    func testArbitraryUnicodeNeverBreaksNormalisationOrFingerprints() throws {
        var rng = SeededGenerator(seed: 7)
        let ranges: [ClosedRange<UInt32>] = [0x20 ... 0x7e, 0xa0 ... 0x24f, 0x300 ... 0x36f, 0x400 ... 0x4ff,
                                             0x4e00 ... 0x4fff, 0x1f600 ... 0x1f64f, 0x0 ... 0x1f, 0x200b ... 0x200f]
        for _ in 0 ..< 300 {
            var scalars = String.UnicodeScalarView()
            for _ in 0 ..< Int.random(in: 0 ... 200, using: &rng) {
                let range = ranges.randomElement(using: &rng)!
                if let s = Unicode.Scalar(UInt32.random(in: range, using: &rng)) { scalars.append(s) }
            }
            let text = String(scalars)
            let tokens = TextNormalizer.standard.tokens(text)
            XCTAssertTrue(tokens.allSatisfy { !$0.isEmpty })
            let fp = ReportFingerprint(text: text)
            XCTAssertEqual(try ReportFingerprint(decoding: fp.encode()), fp)
            let s = Similarity.score(text, text)
            XCTAssertTrue(s == 0 || s == 1)
            XCTAssertEqual(s == 1, !tokens.isEmpty)
        }
    }

    /// The candidate read returns its rows in no particular order: the matcher's decision must
    /// not depend on the order of the open cases or of a case's reports. Random candidates from
    /// a small vocabulary (so that scores tie), fingerprints or texts, mixed symptoms, services,
    /// tickets and times, each matched in five random orders.
    func testMatchDecisionDoesNotDependOnCandidateOrder() {
        var rng = SeededGenerator(seed: 11)
        let words = ["checkout", "fails", "error", "503", "login", "slow", "timeout", "payment", "page", "blank"]
        func text() -> String { (0 ..< Int.random(in: 2 ... 5, using: &rng)).map { _ in words.randomElement(using: &rng)! }.joined(separator: " ") }
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let symptoms: [SymptomKind] = [.unspecified, .errors, .slow]
        for round in 0 ..< 200 {
            let newReport = NewReport(customer: "customers/acme", agent: "agents/a", text: text(),
                                      symptom: symptoms.randomElement(using: &rng)!,
                                      serviceHint: ["", "checkout"].randomElement(using: &rng)!,
                                      receiveTime: t0, externalTicket: Bool.random(using: &rng) ? ExternalReference(system: "zd", id: "7") : nil,
                                      symptomInferred: Bool.random(using: &rng))
            var cases: [CaseCandidate] = []
            for c in 0 ..< Int.random(in: 1 ... 6, using: &rng) {
                let reports = (0 ..< Int.random(in: 1 ... 4, using: &rng)).map { r -> CandidateReport in
                    let body = text()
                    let useText = Bool.random(using: &rng)
                    return CandidateReport(
                        name: "reports/r\(round)-\(c)-\(r)", text: useText ? body : nil,
                        fingerprint: useText ? nil : ReportFingerprint(text: body),
                        symptom: symptoms.randomElement(using: &rng)!, serviceHint: ["", "checkout", "login"].randomElement(using: &rng)!,
                        receiveTime: t0.addingTimeInterval(-Double(Int.random(in: 0 ... 3, using: &rng)) * 600),
                        externalTicket: Int.random(in: 0 ... 9, using: &rng) == 0 ? ExternalReference(system: "zd", id: "7") : nil,
                        symptomInferred: Bool.random(using: &rng))
                }
                cases.append(CaseCandidate(name: "cases/c\(c)", customer: "customers/acme", owner: "agents/o", reports: reports))
            }
            let expected = DuplicateMatcher.match(candidate: newReport, openCases: cases)
            for _ in 0 ..< 5 {
                var shuffled = cases.shuffled(using: &rng)
                for i in shuffled.indices { shuffled[i].reports.shuffle(using: &rng) }
                XCTAssertEqual(DuplicateMatcher.match(candidate: newReport, openCases: shuffled), expected, "round \(round)")
            }
        }
    }

    func testRandomCaseOperationSequencesKeepInvariants() {
        var rng = SeededGenerator(seed: 42)
        let agents = ["agents/a", "agents/b", "agents/c"]
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        var cases: [String: CaseRecord] = [:]
        var nextCase = 0
        var nextReport = 0
        var clock = 0.0
        func now() -> Date {
            clock += 1
            return t0.addingTimeInterval(clock)
        }
        var refusals = 0
        var successes = 0
        for _ in 0 ..< 2000 {
            let names = cases.keys.sorted()
            let pick = names.randomElement(using: &rng)
            let agent = agents.randomElement(using: &rng)!
            do {
                switch Int.random(in: 0 ... 8, using: &rng) {
                case 0 where cases.count < 12, 1 where pick == nil:
                    nextCase += 1
                    nextReport += 1
                    let c = CaseRules.open(name: "cases/c\(nextCase)", customer: "customers/acme",
                                           firstReport: ReportRef(name: "reports/r\(nextReport)", receiveTime: now()),
                                           owner: agent, actor: agent, at: now())
                    cases[c.name] = c
                case 1:
                    cases[pick!] = try CaseRules.addReport(cases[pick!]!, report: ReportRef(name: "reports/r\(nextReport + 1)",
                                                                                        receiveTime: now()),
                                                           actor: agent, at: now())
                    nextReport += 1
                case 2:
                    cases[pick!] = try CaseRules.assign(cases[pick!]!, to: agent, actor: agent, at: now())
                case 3:
                    guard let other = names.randomElement(using: &rng) else { continue }
                    let r = try CaseRules.merge(survivor: cases[pick!]!, sources: [cases[other]!], actor: agent, at: now())
                    cases[r.survivor.name] = r.survivor
                    for m in r.merged { cases[m.name] = m }
                case 4:
                    let c = cases[pick!]!
                    let chosen = c.reports.filter { _ in Bool.random(using: &rng) }.map(\.name)
                    nextCase += 1
                    let r = try CaseRules.split(c, reports: chosen, newCaseName: "cases/c\(nextCase)", actor: agent,
                                                at: now())
                    cases[r.original.name] = r.original
                    cases[r.newCase.name] = r.newCase
                case 5:
                    let outcome = CaseOutcome(rawValue: Int.random(in: 0 ... 6, using: &rng))
                    cases[pick!] = try CaseRules.close(cases[pick!]!, outcome: outcome,
                                                       pendingCustomerNotice: Bool.random(using: &rng), actor: agent,
                                                       at: now())
                case 6:
                    cases[pick!] = try CaseRules.reopen(cases[pick!]!, actor: agent, at: now())
                case 7:
                    cases[pick!] = try CaseRules.awaitCustomerNotice(cases[pick!]!, incident: "incidents/i1",
                                                                     actor: "services/correlation", at: now())
                default:
                    cases[pick!] = try CaseRules.customerNotified(cases[pick!]!, notifyTime: now(),
                                                                  actor: "services/followup", at: now())
                }
                successes += 1
            } catch {
                refusals += 1
            }

            // Invariants over every case.
            var owners: [String: String] = [:]
            for c in cases.values {
                XCTAssertFalse(c.owner.isEmpty)
                XCTAssertEqual(c.history.last?.state, c.state, "history ends in the current state")
                XCTAssertEqual(c.reports, c.reports.sorted { ($0.receiveTime, $0.name) < ($1.receiveTime, $1.name) })
                switch c.state {
                case .merged:
                    XCTAssertTrue(c.reports.isEmpty)
                    XCTAssertFalse(c.mergedInto.isEmpty)
                    XCTAssertNotEqual(c.mergedInto, c.name)
                case .closed:
                    XCTAssertFalse(c.reports.isEmpty)
                    XCTAssertTrue(c.outcome.isSpecified)
                    XCTAssertNotNil(c.closeTime)
                default:
                    XCTAssertFalse(c.reports.isEmpty)
                    XCTAssertNil(c.closeTime)
                }
                for r in c.reports {
                    XCTAssertNil(owners[r.name], "\(r.name) in two cases")
                    owners[r.name] = c.name
                }
                XCTAssertEqual(c.history.map(\.time), c.history.map(\.time).sorted())
            }
            XCTAssertEqual(owners.count, nextReport, "no report is lost")
        }
        XCTAssertGreaterThan(successes, 300)
        XCTAssertGreaterThan(refusals, 100)
    }
}
