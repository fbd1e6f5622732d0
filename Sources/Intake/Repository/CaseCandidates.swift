import IntakeDomain
import Foundation
import Logging
import Metrics
import LiaisonRuntime
import LiaisonStorage

/// What the duplicate matcher needs of a case's most recent reports, stored on the case row
/// (`cases.candidates`, migration 0005), so that the candidate read of a new report is one row
/// per open case instead of an index descent and a heap fetch per report.
///
/// The bytes are the ones the migration's `intake_case_candidates(case_id)` computes from the
/// reports table: at most `IntakeRepository.maxCandidatesPerCase` entries, newest first
/// (receive time, then id in byte order, both descending), each an `Entry` encoded as
/// `intake_candidate_entry` does. The repository writes them with the case when a report opens
/// or joins it, and has PostgreSQL recompute them when reports move between cases.
struct CaseCandidates: Equatable {
    /// One report, with the columns of `reports` the matcher reads.
    struct Entry: Equatable {
        var id: String
        /// `receive_time` in whole microseconds since 1970-01-01 UTC (as PostgreSQL stores it).
        var receiveMicros: Int64
        /// `fingerprint` as stored (`ReportFingerprint.encode`).
        var fingerprint: [UInt8]
        var symptom: String
        var serviceHint: String
        var ticketSystem: String?
        var ticketID: String?
        var symptomInferred: Bool

        /// The receive time as the timestamptz decoder builds it.
        var receiveTime: Date { Date(postgresMicros: receiveMicros) }

        /// Newest first: receive time, then id in byte order, both descending.
        static func newerFirst(_ a: Entry, _ b: Entry) -> Bool {
            a.receiveMicros != b.receiveMicros
                ? a.receiveMicros > b.receiveMicros : b.id.utf8.lexicographicallyPrecedes(a.id.utf8)
        }
    }

    /// Newest first.
    private(set) var entries: [Entry]

    init(_ entries: [Entry] = []) {
        self.entries = entries.sorted(by: Entry.newerFirst)
        if self.entries.count > IntakeRepository.maxCandidatesPerCase {
            self.entries.removeLast(self.entries.count - IntakeRepository.maxCandidatesPerCase)
        }
    }

    /// The case's candidates after `entry` joins it: the newest `maxCandidatesPerCase` of both.
    func adding(_ entry: Entry) -> CaseCandidates { CaseCandidates(entries + [entry]) }

    /// The window in microseconds, as the SQL computes it: the bound time (rounded to whole
    /// microseconds) plus or minus `make_interval(secs => window)` (rounded likewise).
    static func bounds(around time: Date, seconds window: Double) -> (from: Int64, to: Int64) {
        let t = time.postgresMicros
        let w = Int64((window * 1_000_000).rounded())
        return (t - w, t + w)
    }

    // MARK: - Reading for the matcher

    /// A stored report's fingerprint; nil when its bytes do not decode, which is logged and
    /// counted (`liaison_intake_corrupt_fingerprints_total`): the report then takes part in
    /// duplicate matching by its other signals only.
    static func storedFingerprint<Bytes: Collection<UInt8>>(_ bytes: Bytes, report: String) -> ReportFingerprint? {
        do {
            return try ReportFingerprint(decoding: ArraySlice(bytes))
        } catch {
            Counter(label: "liaison_intake_corrupt_fingerprints_total").increment()
            Logger(label: "intake").error("stored fingerprint does not decode", metadata: ["report": "\(report)", "error": "\(error)"])
            return nil
        }
    }

    /// The reports of stored candidates `bytes` received within `window` seconds of `time`, as
    /// the matcher takes them (`inWindow`, each entry made into a `CandidateReport`); nil when
    /// the list cannot answer for that window.
    static func matcherReports(_ bytes: [UInt8], around time: Date, seconds window: Double) throws -> [CandidateReport]? {
        var reports: [CandidateReport] = []
        let answered = try inWindow(bytes, around: time, seconds: window) { entry in
            reports.append(CandidateReport(
                name: entry.reportName, text: nil, fingerprint: storedFingerprint(entry.fingerprint, report: entry.reportName),
                symptom: entry.symptom, serviceHint: entry.serviceHint, receiveTime: entry.receiveTime,
                externalTicket: entry.externalTicket, symptomInferred: entry.symptomInferred))
        }
        return answered ? reports : nil
    }

    /// One stored entry, its fields read from the stored bytes on demand.
    struct StoredEntry {
        let bytes: [UInt8]
        let raw: Reader.RawEntry

        var receiveTime: Date { Date(postgresMicros: raw.micros) }
        /// `reports/{id}`, built in one allocation.
        var reportName: String {
            let prefix = "reports/".utf8
            return String(unsafeUninitializedCapacity: prefix.count + raw.id.count) { out in
                var i = 0
                for b in prefix { out[i] = b; i += 1 }
                for b in bytes[raw.id] { out[i] = b; i += 1 }
                return i
            }
        }
        var fingerprint: ArraySlice<UInt8> { bytes[raw.fingerprint] }
        var symptom: SymptomKind { CaseCandidates.symptomKind(bytes[raw.symptom]) }
        /// The service hint (short hints stay inline in the String: no allocation).
        var serviceHint: String { String(decoding: bytes[raw.serviceHint], as: UTF8.self) }
        var externalTicket: ExternalReference? {
            guard let s = raw.ticketSystem, let t = raw.ticketID else { return nil }
            return ExternalReference(system: String(decoding: bytes[s], as: UTF8.self), id: String(decoding: bytes[t], as: UTF8.self))
        }
        var symptomInferred: Bool { raw.symptomInferred }
    }

    /// Calls `body` with each entry of stored candidates `bytes` received within `window`
    /// seconds of `time`, in one pass and without decoding what lies outside the window. Returns
    /// false when the list cannot answer for that window (the entries given to `body` are then
    /// not all there are): when it is full, its oldest entry lies in or after the window and its
    /// newest after it, older reports beyond it may lie in the window (when it is full and all
    /// inside, those are the newest there; when its oldest is before the window, everything
    /// beyond is older still). This runs for every open case of the customer on every
    /// submission.
    static func inWindow(_ bytes: [UInt8], around time: Date, seconds window: Double,
                         _ body: (StoredEntry) throws -> Void) throws -> Bool {
        let (from, to) = bounds(around: time, seconds: window)
        var count = 0
        var oldest = Int64.max
        var allBeforeEnd = true
        var reader = Reader(bytes: bytes)
        while let e = try reader.next() {
            count += 1
            oldest = e.micros
            if e.micros > to { allBeforeEnd = false }
            guard e.micros >= from && e.micros <= to else { continue }
            try body(StoredEntry(bytes: bytes, raw: e))
        }
        return !(count == IntakeRepository.maxCandidatesPerCase && oldest >= from && !allBeforeEnd)
    }

    /// The symptom named by stored UTF-8 bytes (`symptom(named:)` without making a String).
    private static let symptomNames: [(name: [UInt8], kind: SymptomKind)] = SymptomKind.known.map { (Array($0.protoName.utf8), $0) }
    static func symptomKind(_ name: ArraySlice<UInt8>) -> SymptomKind {
        symptomNames.first { $0.name.elementsEqual(name) }?.kind ?? .unspecified
    }

    // MARK: - Encoding

    /// Decoding failures name what was wrong; the bytes come from our own column.
    struct FormatError: Error, CustomStringConvertible {
        var description: String
    }

    init(decoding bytes: [UInt8]) throws {
        var entries: [Entry] = []
        var reader = Reader(bytes: bytes)
        func text(_ r: Range<Int>) -> String { String(decoding: bytes[r], as: UTF8.self) }
        while let e = try reader.next() {
            entries.append(Entry(id: text(e.id), receiveMicros: e.micros, fingerprint: Array(bytes[e.fingerprint]),
                                 symptom: text(e.symptom), serviceHint: text(e.serviceHint),
                                 ticketSystem: e.ticketSystem.map(text), ticketID: e.ticketID.map(text),
                                 symptomInferred: e.symptomInferred))
        }
        self.entries = entries
    }

    /// Walks the encoded entries, giving each one's fields as ranges of the bytes (nothing copied).
    struct Reader {
        struct RawEntry {
            var micros: Int64
            var id: Range<Int>, fingerprint: Range<Int>, symptom: Range<Int>, serviceHint: Range<Int>
            var ticketSystem: Range<Int>?, ticketID: Range<Int>?
            var symptomInferred: Bool
        }

        private var reader: ByteReader

        init(bytes: [UInt8]) { reader = ByteReader(bytes: bytes) }

        /// The next entry, nil at the end; throws on truncated or malformed bytes.
        mutating func next() throws -> RawEntry? {
            guard reader.remaining > 0 else { return nil }
            guard let micros = reader.u64() else { throw truncated() }
            let id = try field(), fingerprint = try field(), symptom = try field(), serviceHint = try field()
            let ticketSystem = try field(), ticketID = try field()
            guard let inferred = reader.u8() else { throw truncated() }
            guard let id, let fingerprint, let symptom, let serviceHint
            else { throw FormatError(description: "cases.candidates: a required field is NULL before byte \(reader.offset)") }
            return RawEntry(micros: Int64(bitPattern: micros), id: id, fingerprint: fingerprint, symptom: symptom,
                            serviceHint: serviceHint, ticketSystem: ticketSystem, ticketID: ticketID,
                            symptomInferred: inferred != 0)
        }

        private func truncated() -> FormatError {
            FormatError(description: "cases.candidates: truncated at byte \(reader.offset)")
        }

        /// The next field's bytes: an int4 length (-1 for NULL, nil returned), then the bytes.
        private mutating func field() throws -> Range<Int>? {
            guard let length = reader.u32() else { throw truncated() }
            let n = Int(Int32(bitPattern: length))
            if n == -1 { return nil }
            guard let range = reader.range(n)
            else { throw FormatError(description: "cases.candidates: bad field length \(n) at byte \(reader.offset - 4)") }
            return range
        }
    }

    /// The column value (what `intake_case_candidates` computes).
    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(entries.count * 240)
        func int(_ v: Int64, _ width: Int) {
            for i in stride(from: width - 1, through: 0, by: -1) { out.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
        }
        func field<C: Collection>(_ bytes: C?) where C.Element == UInt8 {
            guard let bytes else { return int(-1, 4) }
            int(Int64(bytes.count), 4)
            out.append(contentsOf: bytes)
        }
        for e in entries {
            int(e.receiveMicros, 8)
            field(e.id.utf8)
            field(e.fingerprint)
            field(e.symptom.utf8)
            field(e.serviceHint.utf8)
            field(e.ticketSystem?.utf8)
            field(e.ticketID?.utf8)
            out.append(e.symptomInferred ? 1 : 0)
        }
        return out
    }
}
