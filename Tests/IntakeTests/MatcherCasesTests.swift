import Foundation
import LiaisonRuntime
import XCTest
@testable import Intake
@testable import IntakeDomain

/// `IntakeRepository.matcherCases` ranks every stored report from its bytes and hands the matcher
/// only the case that decides: the decision (action, assessment with its signals, case, reason)
/// must be exactly the one the matcher makes over every open case built in full.
final class MatcherCasesTests: XCTestCase {
    let config = DuplicateConfig()
    let texts = [
        "checkout fails with error 500 at payment",
        "payment at checkout fails with error 500",
        "checkout page error 500 when paying",
        "search results are slow since this morning",
        "mobile app crashes on start after update",
        "invoices download as empty files",
    ]

    /// The fast path against the matcher over all cases, on random open cases: times around the
    /// window's edges, equal fingerprints and equal times (ties down to the report name), tickets,
    /// vetoing and inferred symptoms, service hints differing in case, full lists that cannot
    /// answer (their reports come from the fallback, as from `reports`), and cases without any
    /// report in the window.
    func testDecidesExactlyAsTheMatcherOverEveryCase() throws {
        var rng = SystemRandomNumberGenerator()
        // Not a whole microsecond: entries on the window's edges meet the matcher's own rounding.
        let now = Date(timeIntervalSince1970: 1_790_000_000.123_456_7)
        let fingerprints = texts.map { ReportFingerprint(text: $0, config: config.similarity).encode() }
        let symptoms: [SymptomKind] = [.unspecified, .errors, .slow, SymptomKind.known.last!]
        let services = ["", "checkout", "Checkout", "search"]
        var decisions = (join: 0, open: 0, none: 0, fallback: 0)
        for round in 0..<1500 {
            let text = texts.randomElement(using: &rng)!
            let candidate = NewReport(
                customer: "customers/c", agent: "agents/a", text: text,
                symptom: symptoms.randomElement(using: &rng)!, serviceHint: services.randomElement(using: &rng)!,
                receiveTime: now,
                externalTicket: Int.random(in: 0..<6, using: &rng) == 0 ? ExternalReference(system: "zendesk", id: "T-1") : nil,
                customerOwningAgent: "agents/owner", symptomInferred: Bool.random(using: &rng))
            let shingles = config.similarity.shingles(text)
            let fingerprint = ReportFingerprint(shingles: shingles, config: config.similarity)
            let window = Int64(config.window)
            var stored: [[UInt8]] = []
            var fallback: [[CandidateReport]] = []
            for k in 0..<Int.random(in: 0...8, using: &rng) {
                let busy = Int.random(in: 0..<5, using: &rng) == 0
                let count = busy ? 25 : Int.random(in: 1...4, using: &rng)
                let entries = (0..<count).map { j -> CaseCandidates.Entry in
                    // Seconds from now: mostly inside the window, some on or beyond its edges, some equal.
                    let offset: Int64 = [0, -60, -3600, -window, window, -window - 1, window + 1, 2 * window, -2 * window]
                        .randomElement(using: &rng)!
                    let fp = Int.random(in: 0..<12, using: &rng) == 0 ? [3, 0, 1] : fingerprints.randomElement(using: &rng)!
                    let ticket = Int.random(in: 0..<8, using: &rng) == 0
                    return CaseCandidates.Entry(
                        id: "r\(round)-\(k)-\(Int.random(in: 0..<3, using: &rng))\(j)",
                        receiveMicros: now.postgresMicros + offset * 1_000_000 + Int64.random(in: -1...1, using: &rng),
                        fingerprint: fp, symptom: symptoms.randomElement(using: &rng)!.protoName,
                        serviceHint: services.randomElement(using: &rng)!,
                        ticketSystem: ticket ? "zendesk" : nil, ticketID: ticket ? ["T-1", "T-2"].randomElement(using: &rng)! : nil,
                        symptomInferred: Bool.random(using: &rng))
                }
                let list = CaseCandidates(entries)
                stored.append(list.encoded())
                // What the fallback reads from `reports`: the case's newest 20 in the window.
                let inWindow = CaseCandidates(entries.filter { e in
                    let (from, to) = CaseCandidates.bounds(around: now, seconds: config.window)
                    return e.receiveMicros >= from && e.receiveMicros <= to
                })
                fallback.append(inWindow.entries.map { e in
                    CandidateReport(name: "reports/" + e.id, text: nil, fingerprint: try? ReportFingerprint(decoding: e.fingerprint),
                                    symptom: CaseCandidates.symptomKind(Array(e.symptom.utf8)[...]), serviceHint: e.serviceHint,
                                    receiveTime: e.receiveTime,
                                    externalTicket: e.ticketSystem.map { ExternalReference(system: $0, id: e.ticketID!) },
                                    symptomInferred: e.symptomInferred)
                })
            }
            var builds = 0
            func build(_ i: Int) throws -> CaseCandidate {
                builds += 1
                let reports = try CaseCandidates.matcherReports(stored[i], around: now, seconds: config.window)
                if reports == nil { decisions.fallback += 1 }
                return CaseCandidate(name: "cases/k\(i)", customer: "customers/c", owner: "agents/o\(i)",
                                     reports: reports ?? fallback[i])
            }
            let all = try stored.indices.map(build)
            builds = 0
            let expected = DuplicateMatcher.match(candidate: candidate, openCases: all, config: config,
                                                  candidateShingles: shingles, candidateFingerprint: fingerprint)
            let given = try IntakeRepository.matcherCases(stored: stored, candidate: candidate, shingles: shingles,
                                                          fingerprint: fingerprint, config: config, build: build)
            let actual = DuplicateMatcher.match(candidate: candidate, openCases: given, config: config,
                                                candidateShingles: shingles, candidateFingerprint: fingerprint)
            XCTAssertEqual(actual, expected, "round \(round)")
            if expected.bestCase.isEmpty {
                decisions.none += 1
            } else {
                XCTAssertEqual(given.count, 1, "only the deciding case is built in full")
                if case .joinCase = expected.action { decisions.join += 1 } else { decisions.open += 1 }
            }
        }
        // The rounds covered every outcome.
        XCTAssertGreaterThan(decisions.join, 100)
        XCTAssertGreaterThan(decisions.open, 100)
        XCTAssertGreaterThan(decisions.none, 50)
        XCTAssertGreaterThan(decisions.fallback, 50)
    }

    /// The encoded comparison equals the decoded one for the current format, older formats,
    /// other seeds and sizes, and bytes that do not decode.
    func testEstimatedJaccardWithEncodedEqualsDecoded() {
        let mine = ReportFingerprint(text: texts[0], config: config.similarity)
        var others: [[UInt8]] = texts.map { ReportFingerprint(text: $0, config: config.similarity).encode() }
        var otherSeed = config.similarity
        otherSeed.seed ^= 1
        others.append(ReportFingerprint(text: texts[1], config: otherSeed).encode())
        let empty = ReportFingerprint(text: "", config: config.similarity)
        others.append(empty.encode())
        // Format 2 (32 bits per position): version 2, then 4 bytes per position.
        var v2: [UInt8] = [2, UInt8(config.similarity.shingleSize)]
        v2.appendBigEndian(UInt16(mine.minHashes.count))
        v2.appendBigEndian(config.similarity.seed)
        v2.appendBigEndian(UInt32(mine.shingleCount))
        for h in mine.minHashes { v2.appendBigEndian(h | 0xAB00) }
        others.append(v2)
        others += [[], [3], Array(others[0].dropLast()), [9] + others[0].dropFirst()]
        var shorter = others[0]
        shorter[3] = shorter[3] - 1  // 127 permutations announced, 128 present
        others.append(shorter)
        for (i, bytes) in others.enumerated() {
            let decoded = (try? ReportFingerprint(decoding: bytes)).map { mine.estimatedJaccard(with: $0) }
            let direct = mine.estimatedJaccard(withEncoded: ([0xFF] + bytes)[1...])
            XCTAssertEqual(direct?.bitPattern, decoded?.bitPattern, "fingerprint \(i)")
        }
        XCTAssertEqual(mine.estimatedJaccard(withEncoded: mine.encode()[...]), 1)
    }
}
