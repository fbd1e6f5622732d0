import Foundation
import LiaisonStorage
import XCTest
@testable import Intake
@testable import IntakeDomain

/// The reference model of `CaseCandidates.matcherReports`, written plainly over decoded entries.
extension CaseCandidates {
    /// Whether every report of the case in `window` seconds around `time` that would be among its
    /// newest `maxCandidatesPerCase` there is in `entries`.
    func coversWindow(around time: Date, seconds window: Double) -> Bool {
        guard entries.count == IntakeRepository.maxCandidatesPerCase, let oldest = entries.last else { return true }
        let (from, to) = Self.bounds(around: time, seconds: window)
        if oldest.receiveMicros < from { return true }  // everything beyond the list is older still
        return entries.allSatisfy { $0.receiveMicros <= to }  // all in the window: the newest 20 there
    }

    /// The entries received within `window` seconds of `time` (bounds included, as the SQL window).
    func inWindow(around time: Date, seconds window: Double) -> [Entry] {
        let (from, to) = Self.bounds(around: time, seconds: window)
        return entries.filter { $0.receiveMicros >= from && $0.receiveMicros <= to }
    }
}

/// The stored duplicate candidates of a case (`cases.candidates`): encoding, order and trimming,
/// and when the stored list can answer for a window. Byte equality with PostgreSQL's own
/// encoding is checked against the real database (`assertStoredCandidatesMatchReports`).
final class CaseCandidatesTests: XCTestCase {
    func entry(_ id: String, _ seconds: Int64, ticket: (String, String)? = nil, inferred: Bool = false) -> CaseCandidates.Entry {
        .init(id: id, receiveMicros: seconds * 1_000_000 + 123, fingerprint: Array(0..<144).map { UInt8($0) },
              symptom: "SYMPTOM_KIND_ERRORS", serviceHint: "checkout-é", ticketSystem: ticket?.0, ticketID: ticket?.1,
              symptomInferred: inferred)
    }

    func testRoundTripKeepsEveryFieldIncludingNulls() throws {
        let list = CaseCandidates([entry("a", 10, ticket: ("zendesk", "Z-1"), inferred: true), entry("b", 20),
                                   entry("c", -5)])
        let decoded = try CaseCandidates(decoding: list.encoded())
        XCTAssertEqual(decoded, list)
        XCTAssertEqual(decoded.entries.map(\.id), ["b", "a", "c"])
        XCTAssertEqual(decoded.entries[1].ticketSystem, "zendesk")
        XCTAssertNil(decoded.entries[0].ticketID)
        XCTAssertTrue(decoded.entries[1].symptomInferred)
        XCTAssertEqual(try CaseCandidates(decoding: []), CaseCandidates())
        // A time before 1970 decodes as the binary timestamptz decoder would build it.
        XCTAssertEqual(decoded.entries[2].receiveTime.timeIntervalSince1970, -5 + 0.000123, accuracy: 1e-6)
    }

    func testLayoutIsTheDocumentedOne() {
        let bytes = CaseCandidates([entry("x", 1)]).encoded()
        // int8 micros, then int4 length + bytes per field, NULLs as -1, then one byte.
        XCTAssertEqual(Array(bytes[0..<8]), [0, 0, 0, 0, 0, 0x0f, 0x42, 0xbb])  // 1,000,123
        XCTAssertEqual(Array(bytes[8..<13]), [0, 0, 0, 1, UInt8(ascii: "x")])
        XCTAssertEqual(Array(bytes[13..<17]), [0, 0, 0, 144])
        XCTAssertEqual(bytes.count, 8 + 5 + 148 + 4 + 19 + 4 + 11 + 4 + 4 + 1)
        XCTAssertEqual(Array(bytes[bytes.count - 9..<bytes.count]), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0])
    }

    func testTruncatedOrCorruptBytesAreRefused() {
        let bytes = CaseCandidates([entry("x", 1)]).encoded()
        for cut in [1, 7, 12, 100, bytes.count - 1] {
            XCTAssertThrowsError(try CaseCandidates(decoding: Array(bytes[0..<cut])), "cut at \(cut)")
        }
        var nullID = bytes
        nullID.replaceSubrange(8..<13, with: [0xff, 0xff, 0xff, 0xff])
        XCTAssertThrowsError(try CaseCandidates(decoding: nullID))
    }

    func testKeepsTheNewestTwentyNewestFirstWithIdsBreakingTies() {
        var list = CaseCandidates()
        for i in (0..<25).shuffled() { list = list.adding(entry(String(format: "r%02d", i), Int64(i / 2))) }
        XCTAssertEqual(list.entries.count, IntakeRepository.maxCandidatesPerCase)
        // Newest first; within one time, the larger id first (byte order).
        XCTAssertEqual(list.entries.map(\.id), (5..<25).reversed().map { String(format: "r%02d", $0) })
        // An entry older than all twenty is not kept.
        XCTAssertEqual(list.adding(entry("old", -100)), list)
    }

    func testWindowFiltersInclusivelyAndSaysWhenTheListCannotAnswer() {
        let time = Date(timeIntervalSince1970: 1_000)
        // Not full: the list is every report there is. Both bounds are included.
        func at(_ id: String, _ micros: Int64) -> CaseCandidates.Entry {
            var e = entry(id, 0)
            e.receiveMicros = micros
            return e
        }
        let few = CaseCandidates([at("a", 940_000_000), at("b", 1_060_000_000), at("c", 1_060_000_001),
                                  at("d", 939_999_999)])
        XCTAssertTrue(few.coversWindow(around: time, seconds: 60))
        XCTAssertEqual(few.inWindow(around: time, seconds: 60).map(\.id), ["b", "a"])

        func full(from start: Int64) -> CaseCandidates {
            CaseCandidates((0..<20).map { entry("r\($0)", start + Int64($0)) })
        }
        // Full, oldest before the window: nothing older can be in it.
        XCTAssertTrue(full(from: 0).coversWindow(around: time, seconds: 100))
        // Full and all inside: they are the newest twenty in the window.
        XCTAssertTrue(full(from: 990).coversWindow(around: time, seconds: 100))
        // Full, oldest inside, newest after the window: older reports may be in the window.
        XCTAssertFalse(full(from: 1_050).coversWindow(around: time, seconds: 60))
        // Full and all after the window: older reports may be in it.
        XCTAssertFalse(full(from: 2_000).coversWindow(around: time, seconds: 900))
        XCTAssertTrue(full(from: 2_000).coversWindow(around: time, seconds: 1_500))
    }

    func testBoundsAreWholeMicrosecondsAsPostgreSQLComputesThem() {
        let time = Date(timeIntervalSince1970: 1_764_430_000.1234565)
        let (from, to) = CaseCandidates.bounds(around: time, seconds: 21_600)
        let t = time.postgresMicros
        XCTAssertEqual(to - t, 21_600_000_000)
        XCTAssertEqual(t - from, 21_600_000_000)
    }

    /// The one-pass reader the repository uses agrees with the reference model on random lists,
    /// times and windows: same answer on whether the list covers the window, same reports.
    func testMatcherReportsAgreeWithTheReferenceModel() throws {
        var rng = SeededGenerator(seed: 8)
        let fingerprint = ReportFingerprint(shingles: SimilarityConfig.standard.shingles("checkout fails with error 503"), config: .standard).encode()
        for round in 0..<2_000 {
            let n = Int.random(in: 0...25, using: &rng)
            let list = CaseCandidates((0..<n).map { i in
                CaseCandidates.Entry(
                    id: "r\(round)-\(i)", receiveMicros: Int64.random(in: 0...10_000, using: &rng) * 1_000_000,
                    fingerprint: fingerprint, symptom: SymptomKind.known.randomElement(using: &rng)!.protoName,
                    serviceHint: i % 3 == 0 ? "" : "svc-\(i)", ticketSystem: i % 4 == 0 ? "zendesk" : nil,
                    ticketID: i % 4 == 0 ? "Z-\(i)" : nil, symptomInferred: i % 2 == 0)
            })
            let time = Date(timeIntervalSince1970: Double.random(in: 0...10_000, using: &rng))
            let window = Double(Int.random(in: 0...3_000, using: &rng))
            let fast = try CaseCandidates.matcherReports(list.encoded(), around: time, seconds: window)
            XCTAssertEqual(fast == nil, !list.coversWindow(around: time, seconds: window), "round \(round)")
            guard let fast else { continue }
            let expected = list.inWindow(around: time, seconds: window).map { e in
                CandidateReport(name: "reports/" + e.id, text: nil, fingerprint: try? ReportFingerprint(decoding: e.fingerprint),
                                symptom: IntakeRepository.symptom(named: e.symptom), serviceHint: e.serviceHint,
                                receiveTime: e.receiveTime,
                                externalTicket: e.ticketSystem.map { ExternalReference(system: $0, id: e.ticketID!) },
                                symptomInferred: e.symptomInferred)
            }
            XCTAssertEqual(fast, expected, "round \(round)")
        }
    }
}
