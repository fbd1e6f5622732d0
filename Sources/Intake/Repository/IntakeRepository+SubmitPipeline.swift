// IntakeRepository: the SubmitReport pipeline's stages (duplicate candidates, reads, the
// duplicate decision, writes), shared by single reports and batches.
import IntakeDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf

extension IntakeRepository {
    /// The duplicate candidates of a new report: the customer's open cases (the 100 most recently
    /// updated), each with `cases.candidates`, its newest `maxCandidatesPerCase` reports as the
    /// matcher needs them (`CaseCandidates`). One row per case and no read of `reports`: reading
    /// each case's reports in the window through `reports_case` (an index descent and a heap fetch
    /// per report) was 70% of PostgreSQL's time per submission; the stored list is about three
    /// times cheaper per case. The matcher keeps the entries in the window around the new
    /// report; when a full list may hide older reports in that window (a report received long
    /// before a busy case's latest ones), `caseWindowSQL` reads that case's reports instead.
    /// $1 customer, $2 receive time ($3, the window, is `caseWindowSQL`'s).
    static let maxCandidatesPerCase = 20
    static let candidatesSQL = """
        SELECT id, owner, candidates FROM cases WHERE customer_id = $1 AND state = 'OPEN'
        ORDER BY update_time DESC LIMIT 100
        """

    /// `candidatesSQL` for several submissions at once: $1 their customers (an array, in entry
    /// order). Each row ends with the entry's 1-based position (rows are not sorted).
    static let candidatesAllSQL = """
        SELECT oc.id, oc.owner, oc.candidates, q.i
        FROM unnest($1::text[]) WITH ORDINALITY AS q(customer_id, i)
        CROSS JOIN LATERAL (
            SELECT id, owner, candidates FROM cases WHERE customer_id = q.customer_id AND state = 'OPEN'
            ORDER BY update_time DESC LIMIT 100) oc
        """

    /// One case's candidate reports read from `reports` (when its stored list cannot answer): its
    /// most recent `maxCandidatesPerCase` reports received within $3 seconds of $2; $1 the case id.
    ///
    /// The window is written as row comparisons on `(case_id, receive_time)`, which only
    /// `reports_case` can use. As a plain `receive_time BETWEEN`, `reports_receive_time` could
    /// serve the same ordered, limited scan with the case as a filter; on a small, never analyzed
    /// table both paths cost exactly the same, and a connection that cached its generic plan at
    /// that moment kept walking the whole window of every customer's reports (measured: 105 ms
    /// instead of 4 ms per 25-entry batch read, in about half the benchmark runs, when every
    /// candidate read went this way). Now that index has nothing to bound its scan.
    static let caseWindowSQL = """
        SELECT id, fingerprint, symptom, service_hint, receive_time, ticket_system, ticket_id, symptom_inferred
        FROM reports
        WHERE case_id = $1
          AND (case_id, receive_time) >= ($1, $2::timestamptz - make_interval(secs => $3))
          AND (case_id, receive_time) <= ($1, $2::timestamptz + make_interval(secs => $3))
        ORDER BY receive_time DESC, id DESC LIMIT \(maxCandidatesPerCase)
        """

    static let ticketSQL = """
        SELECT r.id, r.case_id, cs.state, cs.merged_into FROM reports r JOIN cases cs ON cs.id = r.case_id
        WHERE r.customer_id = $1 AND r.ticket_system = $2 AND r.ticket_id = $3
        ORDER BY r.create_time, r.id LIMIT 1
        """

    /// One report, inside the caller's transaction, in three round trips: (1) the idempotency
    /// lock and lookup, the customer row (locked), the help-desk ticket and the duplicate
    /// candidates, in one pipeline; (2) for a duplicate, the case it joins (locked) with its
    /// reports and their symptoms, and the length of its history, in one pipeline; (3) every
    /// write (report, case, history, events, idempotency record) in one pipeline. Nothing is
    /// written before (3), so a refusal
    /// (unknown customer, reused request id, missing agent) leaves the transaction clean. With
    /// `commit`, the writes and the COMMIT go in that last pipeline, ending the transaction.
    static func submit(_ c: PostgresConnection, _ input: Liaison_Intake_V1_Report, requestID: String,
                       requestBytes: [UInt8], settings: IntakeSettings, commit: Bool = false)
        throws -> Liaison_Intake_V1_SubmitReportResponse {
        let results = try submitWave(c, [(input, requestID, requestBytes)], settings: settings, commit: commit)
        return try results[0].get().response
    }

    /// Independent reports (distinct customers and request ids, so none can see another's effects;
    /// SubmitReport sends one) through the three stages together: one pipeline for all their
    /// reads, one for all the cases they join, one for all their writes. A refused entry (unknown
    /// customer, reused request id, ...) gets its error in its result and writes nothing; a
    /// database error is thrown. With `commit`, the writes end the transaction
    /// (`PostgresConnection.commit(with:)`). Batches take `streamWave` instead.
    static func submitWave(_ c: PostgresConnection,
                           _ entries: [(report: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8])],
                           settings: IntakeSettings, commit: Bool = false)
        throws -> [Result<SubmitAnswer, any Error>] {
        let staged = entries.map { StagedSubmission(input: $0.report, requestID: $0.requestID, requestBytes: $0.requestBytes) }

        // (1) Reads that depend only on the requests.
        try decideAll(staged, try singleReads(c, staged, settings: settings), c, settings: settings)

        // (2) The cases they join.
        let (statements, joinRanges) = joinStatements(staged)
        let joined = statements.isEmpty ? [] : try c.pipeline(statements)

        // (3) Every write, in one pipeline.
        let writes = try writeUnits(staged, joined: joined, joinRanges: joinRanges, settings: settings)
        if commit {
            try c.commit(with: writes)
        } else if !writes.isEmpty {
            _ = try c.pipeline(writes)
        }
        return staged.map { $0.outcome! }
    }

    /// What stage (1) read for one submission.
    struct SubmissionReads {
        /// The idempotency lookup's row (stored response, request matches), if the id is known.
        var stored: PostgresRow?
        /// The customer's `data, owning_agent` (locked), nil if there is no such customer.
        var customer: PostgresRow?
        /// The customer's open cases (`candidatesSQL`'s columns), in no particular order.
        var candidates: [PostgresRow] = []
        /// The first report with the same help-desk ticket (`ticketSQL`'s columns).
        var ticket: PostgresRow?
    }

    /// Stage (1) for one report (or a wave of a few): each submission's own statements, all in one
    /// pipeline. This is the SQL the benchmark's pgbench transaction runs.
    static func singleReads(_ c: PostgresConnection, _ staged: [StagedSubmission], settings: IntakeSettings) throws
        -> [SubmissionReads] {
        var statements: [StatementBatch.Statement] = []
        var ranges: [Range<Int>] = []
        for s in staged {
            let reads = readStatements(s, settings: settings)
            ranges.append(statements.count..<statements.count + reads.count)
            statements.append(contentsOf: reads)
        }
        // Binary results: the candidates' fingerprints (144 bytes each) arrive as bytes, not hex.
        let read = try c.pipeline(statements, binaryResults: Set(statements.indices))
        return staged.indices.map { i in
            let r = Array(read[ranges[i]])
            return SubmissionReads(stored: r[1].first, customer: r[2].first, candidates: r[3].rows,
                                   ticket: r.count > 4 ? r[4].first : nil)
        }
    }

    /// Chunks a batch wave is cut into (see `streamWave`).
    static let waveChunks = 8

    /// A wave of a batch, on the batch's stream: the same three stages as `submitWave`, cut into
    /// `waveChunks` chunks so that the database and intake work at the same time. All the
    /// chunks' reads go out first (one lock statement for the wave's request ids, then per chunk
    /// one statement each for the idempotency lookups and the duplicate candidates, plus the
    /// ticket lookups); then chunk by chunk intake decides, reads the cases its entries join, and
    /// sends the chunk's writes (one insert per table) without waiting for them. The entries of a
    /// wave are independent, so no chunk's reads can see another chunk's writes.
    /// `customers` gives the batch's locked customer rows by id (waiting for them the first time).
    static func streamWave(_ p: PipelineStream,
                           _ entries: [(report: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8])],
                           settings: IntakeSettings, customers: () throws -> [String: PostgresRow])
        throws -> [Result<SubmitAnswer, any Error>] {
        let staged = entries.map { StagedSubmission(input: $0.report, requestID: $0.requestID, requestBytes: $0.requestBytes) }
        // The wave's idempotency locks in one statement, in hash order (no deadlock between
        // batches), before any lookup.
        try p.send([(Idempotency.lockAllSQL, [TextArray(staged.map(\.key.lockKey))])])
        let size = max(8, (staged.count + waveChunks - 1) / waveChunks)
        let chunks = stride(from: 0, to: staged.count, by: size).map { Array(staged[$0..<min($0 + size, staged.count)]) }
        var sent: [(range: Range<Int>, ticketAt: [Int: Int])] = []
        for chunk in chunks {
            let (statements, ticketAt) = batchReadStatements(chunk, settings: settings)
            sent.append((try p.send(statements, binaryResults: true), ticketAt))
        }
        for (chunk, read) in zip(chunks, sent) {
            let results = try read.range.map { try p.result($0) }
            try decideAll(chunk, try batchReads(results, chunk, customers: try customers(), ticketAt: read.ticketAt), p,
                          settings: settings)
            // The cases the chunk's entries join (a round trip, only if some do).
            let (statements, joinRanges) = joinStatements(chunk)
            let joined = statements.isEmpty ? [] : try p.send(statements).map { try p.result($0) }
            // The chunk's writes, sent without waiting: the next chunk is decided meanwhile.
            try p.send(try writeUnits(chunk, joined: joined, joinRanges: joinRanges, settings: settings))
        }
        return staged.map { $0.outcome! }
    }

    /// Stage (1) decisions for each entry from its reads; an entry the rules refuse gets its
    /// error as its outcome, a database error is thrown.
    static func decideAll(_ staged: [StagedSubmission], _ reads: [SubmissionReads], _ c: some SQLQuerier,
                          settings: IntakeSettings) throws {
        for (i, s) in staged.enumerated() {
            do {
                try decide(s, reads[i], c, settings: settings)
            } catch let e as PostgresError {
                throw e
            } catch {
                s.outcome = .failure(error)
            }
        }
    }

    /// Stage (2) statements: the cases the entries join, locked, each with its reports (a join
    /// only appends to the history: it is counted, not read). `ranges`: entry -> its statements.
    static func joinStatements(_ staged: [StagedSubmission])
        -> (statements: [StatementBatch.Statement], ranges: [Int: Range<Int>]) {
        var statements: [StatementBatch.Statement] = []
        var ranges: [Int: Range<Int>] = [:]
        for (i, s) in staged.enumerated() where s.outcome == nil {
            guard let joinCase = s.joinCase else { continue }
            // The case (locked, with its stored candidates).
            let reads = loadCaseStatements(id: joinCase, lock: true, history: false, candidates: true)
            ranges[i] = statements.count..<statements.count + reads.count
            statements.append(contentsOf: reads)
        }
        return (statements, ranges)
    }

    /// Stage (3) for independent entries: each entry's writes (into its own batch, so that an
    /// entry refused halfway adds nothing), coalesced into one insert per table.
    static func writeUnits(_ staged: [StagedSubmission], joined: [PostgresResult], joinRanges: [Int: Range<Int>],
                           settings: IntakeSettings) throws -> [StatementBatch.Statement] {
        var units: [[StatementBatch.Statement]] = []
        for (i, s) in staged.enumerated() where s.outcome == nil {
            let own = StatementBatch()
            do {
                let response = try write(s, joined: joinRanges[i].map { Array(joined[$0]) }, into: own, settings: settings)
                units.append(own.statements)
                s.outcome = .success(response)
            } catch let e as PostgresError {
                throw e
            } catch {
                s.outcome = .failure(error)
            }
        }
        return StatementBatch.coalesce(units)
    }

    /// Stage (1) statements for a chunk of a batch wave whose customers are already locked: the
    /// idempotency lookups and the duplicate candidates as one statement each over arrays, plus a
    /// ticket lookup per entry that names a ticket (`ticketAt`: entry -> statement offset).
    static func batchReadStatements(_ staged: [StagedSubmission], settings: IntakeSettings)
        -> (statements: [StatementBatch.Statement], ticketAt: [Int: Int]) {
        var statements: [StatementBatch.Statement] = [
            (Idempotency.lookupAllSQL, [submitScope, TextArray(staged.map(\.requestID)),
                                        TextArray(staged.map(\.key.fingerprint))]),
            (candidatesAllSQL, [TextArray(staged.map(\.customerID))]),
        ]
        var ticketAt: [Int: Int] = [:]
        for (i, s) in staged.enumerated() {
            guard let t = s.submission.externalTicket else { continue }
            ticketAt[i] = statements.count
            statements.append((ticketSQL, [s.customerID, t.system, t.id]))
        }
        return (statements, ticketAt)
    }

    /// What `batchReadStatements` read, per entry; `customers` are the locked rows by id.
    static func batchReads(_ read: [PostgresResult], _ staged: [StagedSubmission], customers: [String: PostgresRow],
                           ticketAt: [Int: Int]) throws -> [SubmissionReads] {
        var reads = staged.map { SubmissionReads(customer: customers[$0.customerID]) }
        // The lookup and candidate rows end with the entry's 1-based position in the arrays.
        for row in read[0].rows { reads[Int(try row.decode(Int64.self, 2)) - 1].stored = row }
        for row in read[1].rows { reads[Int(try row.decode(Int64.self, 3)) - 1].candidates.append(row) }
        for (i, at) in ticketAt { reads[i].ticket = read[at].first }
        return reads
    }

    /// One submission between the stages of `submitWave`.
    final class StagedSubmission {
        let input: Liaison_Intake_V1_Report
        let requestID: String
        /// The request's idempotency key (its fingerprint is computed once, for lookup and record).
        let key: Idempotency.Key
        let now = Date()
        let submission: ReportSubmission
        let customerID: String
        /// Set when the submission is done: replayed, refused, or written.
        var outcome: Result<SubmitAnswer, any Error>?
        // Decided in stage (1):
        var customer = Liaison_Intake_V1_Customer()
        var candidate: NewReport?
        /// The new report's MinHash fingerprint (matched against candidates, then stored).
        var fingerprint: ReportFingerprint?
        var reportID = ""
        var reportName: String { "reports/" + reportID }
        /// Who the case history names: the submitting agent, else the service.
        var actor: String { submission.agent.isEmpty ? "services/intake" : submission.agent }
        var assessment: DuplicateAssessment?
        var joinCase: String?  // case id
        var newOwner = ""
        var report = Liaison_Intake_V1_Report()

        init(input: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8]) {
            self.input = input
            self.requestID = requestID
            self.key = Idempotency.Key(scope: IntakeRepository.submitScope, requestID: requestID, request: requestBytes)
            self.submission = Mapping.submission(input)
            self.customerID = ResourceName.customerId(submission.customer)!
        }
    }

    static let submitScope = "intake.SubmitReport"

    /// Stage (1) statements: idempotency lock and lookup, customer (locked), candidates, ticket.
    static func readStatements(_ s: StagedSubmission, settings: IntakeSettings) -> [(sql: String, parameters: [any PostgresBindable])] {
        var reads = Idempotency.beginStatements(s.key)
        reads.append(("SELECT data, owning_agent FROM customers WHERE id = $1 FOR UPDATE", [s.customerID]))
        reads.append((candidatesSQL, [s.customerID]))
        if let t = s.submission.externalTicket { reads.append((ticketSQL, [s.customerID, t.system, t.id])) }
        return reads
    }

    /// Stage (1) decisions from the reads: replay, refusal, or the duplicate decision (which case
    /// to join, or a new one and its owner) and the report as accepted.
    static func decide(_ s: StagedSubmission, _ read: SubmissionReads, _ c: some SQLQuerier, settings: IntakeSettings) throws {
        let submission = s.submission
        let now = s.now
        if let stored = try Idempotency.replay(read.stored, s.key) {
            s.outcome = .success(SubmitAnswer(response: try Liaison_Intake_V1_SubmitReportResponse(serializedBytes: stored),
                                              encoded: stored))
            return
        }
        guard let customerRow = read.customer
        else { throw RepositoryError.notFound(type: "liaison.intake.v1.Customer", name: submission.customer) }
        let customer = try Liaison_Intake_V1_Customer(serializedBytes: try customerRow.decode(ByteA.self, 0).bytes)
        let owningAgent = try customerRow.decode(String.self, 1)
        if submission.agent.isEmpty && owningAgent.isEmpty {
            throw RepositoryError.invalid([FieldViolation(
                field: "report.agent",
                description: "required: \(submission.customer) has no owning agent, so the report must name its agent")])
        }
        // The text is split once when the classifier and the similarity split it alike (the default).
        let similarity = settings.duplicate.similarity
        let tokens = similarity.normalizer == classifier.normalizer ? similarity.normalizer.tokens(submission.text) : nil
        let candidate = NewReport(submission, customerOwningAgent: owningAgent, classifier: classifier, tokens: tokens, now: now)
        // Shingles and fingerprint once: the matcher uses them, the report row stores the fingerprint.
        let shingles = tokens.map { similarity.shingles(tokens: $0) } ?? similarity.shingles(candidate.text)
        let fingerprint = ReportFingerprint(shingles: shingles, config: similarity)
        let reportID = RandomUUID.make().lowercasedString
        let reportName = "reports/" + reportID
        let input = s.input
        // Duplicate detection: a known help-desk ticket first, then the matcher over the open cases.
        var assessment: DuplicateAssessment
        var joinCase: String?  // case id
        var newOwner = candidate.agent.isEmpty ? owningAgent : candidate.agent
        var ticketMatch: (report: String, caseID: String, state: String)?
        if submission.externalTicket != nil, let row = read.ticket {
            var caseID = try row.decode(String.self, 1)
            var state = try row.decode(String.self, 2)
            var mergedInto = try row.decode(String.self, 3)
            var hops = 0
            while state == CaseState.merged.protoName, let next = ResourceName.caseId(mergedInto), hops < 16 {
                guard let r = try c.query("SELECT state, merged_into FROM cases WHERE id = $1", [next]).first else { break }
                caseID = next
                state = try r.decode(String.self, 0)
                mergedInto = try r.decode(String.self, 1)
                hops += 1
            }
            ticketMatch = ("reports/" + (try row.decode(String.self, 0)), caseID, state)
        }
        if let m = ticketMatch {
            assessment = DuplicateAssessment(
                duplicate: true, matchedReport: m.report, similarity: 1, threshold: settings.duplicate.threshold,
                signals: [
                    DuplicateSignal(name: "same_customer", score: 1, weight: 0, detail: "both from \(submission.customer)"),
                    DuplicateSignal(name: "same_external_ticket", score: 1, weight: 0,
                                    detail: "same \(submission.externalTicket!.system) ticket"),
                ])
            if m.state == CaseState.open.protoName { joinCase = m.caseID }
        } else {
            let openCases = try matcherCases(read.candidates, candidate: candidate, shingles: shingles,
                                             fingerprint: fingerprint, c, settings: settings)
            let decision = DuplicateMatcher.match(candidate: candidate, openCases: openCases,
                                                  config: settings.duplicate, candidateShingles: shingles,
                                                  candidateFingerprint: fingerprint)
            assessment = decision.assessment
            switch decision.action {
            case .joinCase(let name): joinCase = ResourceName.caseId(name)
            case .openCase(let owner): newOwner = owner
            }
        }

        // The report as accepted.
        var report = input
        report.name = reportName
        report.symptom = Liaison_Common_V1_SymptomKind(rawValue: candidate.symptom.rawValue) ?? .unspecified
        report.customerSnapshot = Mapping.snapshot(customer.attributes)
        report.duplicateAssessment = Mapping.proto(assessment)
        report.createTime = .init(micros: now)
        report.updateTime = .init(micros: now)
        report.incidents = []

        s.customer = customer
        s.candidate = candidate
        s.fingerprint = fingerprint
        s.reportID = reportID
        s.assessment = assessment
        s.joinCase = joinCase
        s.newOwner = newOwner
        s.report = report
    }

    /// The open cases (`candidatesSQL` rows) the matcher must be given to decide exactly as it
    /// would over all of them, built without materializing every stored report.
    ///
    /// Every report in the window is ranked here as `DuplicateMatcher.match` ranks it (the same
    /// `rawScore`, case window and `ranksBefore`), straight from the stored bytes: no report
    /// name, no decoded fingerprint (`estimatedJaccard(withEncoded:)`). Only the case holding the
    /// best-ranked report is then built in full, and the matcher, given that case, picks the
    /// same report and explains it. When no case has a report in the window, every case is
    /// built (none has reports to decode), so that the matcher says why. Building every stored
    /// report of every open case was a third of intake's CPU per batched report.
    static func matcherCases(_ rows: [PostgresRow], candidate: NewReport, shingles: Set<String>,
                             fingerprint: ReportFingerprint, _ c: some SQLQuerier,
                             settings: IntakeSettings) throws -> [CaseCandidate] {
        let stored = try rows.map { try $0.decode(ByteA.self, 2).bytes }
        return try matcherCases(stored: stored, candidate: candidate, shingles: shingles,
                                fingerprint: fingerprint, config: settings.duplicate) { i in
            try caseCandidate(rows[i], stored: stored[i], around: candidate.receiveTime, customer: candidate.customer,
                              c, settings: settings)
        }
    }

    /// `matcherCases` over each case's stored candidates; `build(i)` builds case `i` in full
    /// (`caseCandidate`: from the stored list, or from `reports` when it cannot answer).
    static func matcherCases(stored: [[UInt8]], candidate: NewReport, shingles: Set<String>,
                             fingerprint: ReportFingerprint, config: DuplicateConfig,
                             build: (Int) throws -> CaseCandidate) throws -> [CaseCandidate] {
        var best: (row: Int, report: RankedReport)?
        var built: [Int: CaseCandidate] = [:]
        for (i, bytes) in stored.enumerated() {
            var caseBest: RankedReport?
            var first = Date.distantFuture, last = Date.distantPast
            func consider(_ r: RankedReport) {
                if r.time < first { first = r.time }
                if r.time > last { last = r.time }
                if caseBest.map({ r.before($0) }) ?? true { caseBest = r }
            }
            let answered = try CaseCandidates.inWindow(bytes, around: candidate.receiveTime, seconds: config.window) { e in
                let earlier = CandidateReport(name: "", text: nil, symptom: e.symptom, serviceHint: e.serviceHint,
                                              receiveTime: e.receiveTime, externalTicket: e.externalTicket,
                                              symptomInferred: e.symptomInferred)
                let text = fingerprint.estimatedJaccard(withEncoded: e.fingerprint)
                    .map { DuplicateMatcher.TextComparison(score: $0, basis: .fingerprint) } ?? .none
                consider(RankedReport(pair: DuplicateMatcher.rawScore(candidate: candidate, against: earlier, text: text, config: config),
                                      time: earlier.receiveTime, stored: e))
            }
            if !answered {
                // The stored list cannot answer: the case's reports in the window, read from `reports`.
                caseBest = nil
                first = .distantFuture
                last = .distantPast
                let full = try build(i)
                built[i] = full
                for r in full.reports {
                    consider(RankedReport(pair: DuplicateMatcher.rawScore(candidate: candidate, candidateShingles: shingles,
                                                                    candidateFingerprint: fingerprint, against: r, config: config),
                                          time: r.receiveTime, report: r))
                }
            }
            guard let caseBest, DuplicateMatcher.caseInWindow(candidate: candidate, first: first, last: last, config: config)
            else { continue }
            if best.map({ caseBest.before($0.report) }) ?? true { best = (i, caseBest) }
        }
        func full(_ i: Int) throws -> CaseCandidate { try built[i] ?? build(i) }
        guard let best else { return try stored.indices.map(full) }
        return [try full(best.row)]
    }

    /// A report ranked by `matcherCases`: its pair score, receive time and, for exact ties only,
    /// its name (built then from the stored entry).
    struct RankedReport {
        var pair: DuplicateMatcher.RawScore
        var time: Date
        var stored: CaseCandidates.StoredEntry?
        var report: CandidateReport?
        var name: String { report?.name ?? stored!.reportName }
        func before(_ other: RankedReport) -> Bool {
            DuplicateMatcher.ranksBefore(pair, receivedAt: time, other.pair, receivedAt: other.time)
                ?? (name < other.name)
        }
    }

    /// One open case of `candidatesSQL` as the matcher sees it: its reports within the window
    /// around `time`, from the stored list (`stored`, the row's `candidates`), or from `reports`
    /// when the list cannot tell (`CaseCandidates.matcherReports` returns nil).
    static func caseCandidate(_ row: PostgresRow, stored: [UInt8], around time: Date, customer: String,
                              _ c: some SQLQuerier, settings: IntakeSettings) throws -> CaseCandidate {
        let id = try row.decode(String.self, 0)
        let window = settings.duplicate.window
        let reports: [CandidateReport]
        if let stored = try CaseCandidates.matcherReports(stored, around: time, seconds: window) {
            reports = stored
        } else {
            reports = try c.query(caseWindowSQL, [id, time, window], binaryResults: true).rows.map { r in
                let system = try r.decode(String?.self, 5)
                let ticketID = try r.decode(String?.self, 6)
                return CandidateReport(
                    name: "reports/" + (try r.decode(String.self, 0)), text: nil,
                    fingerprint: CaseCandidates.storedFingerprint(try r.decode(ByteA.self, 1).bytes, report: try r.decode(String.self, 0)),
                    symptom: symptom(named: try r.decode(String.self, 2)), serviceHint: try r.decode(String.self, 3),
                    receiveTime: try r.decode(Date.self, 4),
                    externalTicket: system.flatMap { s in ticketID.map { ExternalReference(system: s, id: $0) } },
                    symptomInferred: try r.decode(Bool.self, 7))
            }
        }
        return CaseCandidate(name: "cases/" + id, customer: customer, owner: try row.decode(String.self, 1), reports: reports)
    }

    /// Stage (3): the writes of one decided submission; `joined` holds the stage (2) results of
    /// the case it joins.
    static func write(_ s: StagedSubmission, joined joinedResults: [PostgresResult]?, into writes: StatementBatch,
                      settings: IntakeSettings) throws -> SubmitAnswer {
        let submission = s.submission
        let now = s.now
        let requestID = s.requestID
        let candidate = s.candidate!
        let assessment = s.assessment!
        let joinCase = s.joinCase
        let reportID = s.reportID
        let reportName = s.reportName
        let actor = s.actor
        let newOwner = s.newOwner
        var report = s.report
        var joined: (record: CaseRecord, version: Int64, symptoms: [SymptomKind], candidates: CaseCandidates)?
        if let results = joinedResults, let (current, version) = try caseFrom(results, history: false) {
            joined = (current, version, try results[1].rows.map { symptom(named: try $0.decode(String.self, 2)) },
                      try CaseCandidates(decoding: try results[0].first!.decode(ByteA.self, caseColumnCount).bytes))
        }
        // The new report as an entry of its case's stored candidates.
        let entry = CaseCandidates.Entry(
            id: reportID, receiveMicros: candidate.receiveTime.postgresMicros,
            fingerprint: s.fingerprint!.encode(), symptom: candidate.symptom.protoName, serviceHint: report.serviceHint,
            ticketSystem: report.hasExternalTicket ? report.externalTicket.system : nil,
            ticketID: report.hasExternalTicket ? report.externalTicket.id : nil, symptomInferred: candidate.symptomInferred)

        let ref = ReportRef(name: reportName, receiveTime: candidate.receiveTime)
        var caseCreated = false
        var caseVersion: Int64
        let reportBytes: [UInt8]
        var record: CaseRecord
        var events: [(any SwiftProtobuf.Message, UUID, [String])] = []
        // A report joins its duplicate's case only while that case is OPEN. The case was OPEN when
        // the duplicate was found; if it changed meanwhile (its incident resolved: AWAITING_CUSTOMER_NOTICE;
        // closed; merged), the report opens a new case instead: a customer's report is never refused
        // for the state of their case, whatever the timing (issue 22).
        if let joinCase, let (current, version, symptoms, candidates) = joined, current.state == .open {
            report.case = current.name
            var next = try CaseRules.addReport(current, report: ref, actor: actor, at: now)
            next.symptom = SymptomClassifier.dominant(symptoms + [candidate.symptom])
            caseVersion = version + 1
            // Case, history, report: the order of a new case's writes, so that a wave's joins and
            // new cases coalesce into one insert per table (`StatementBatch.coalesce`).
            try saveCase(writes, old: current, new: next, version: caseVersion, moveReports: false,
                         candidates: candidates.adding(entry))
            reportBytes = try insertReport(writes, id: reportID, caseID: joinCase, report: report, candidate: candidate, fingerprint: s.fingerprint!,
                             duplicate: assessment.duplicate, settings: settings)
            record = next
        } else {
            let caseID = RandomUUID.make().lowercasedString
            record = CaseRules.open(name: "cases/" + caseID, customer: submission.customer, firstReport: ref,
                                    firstReportText: submission.text, owner: newOwner, symptom: candidate.symptom,
                                    actor: actor, at: now)
            caseVersion = 1
            try saveCase(writes, old: nil, new: record, version: 1, moveReports: false, candidates: CaseCandidates([entry]))
            report.case = record.name
            reportBytes = try insertReport(writes, id: reportID, caseID: caseID, report: report, candidate: candidate, fingerprint: s.fingerprint!,
                             duplicate: assessment.duplicate, settings: settings)
            caseCreated = true
        }
        let caseProto = Mapping.proto(record, version: caseVersion)

        // The report is encoded once, for its row, its event and the stored response.
        var accepted = Liaison_Intake_V1_ReportAccepted()
        let (h1, id1) = header(aggregate: reportName, version: 1, requestID: requestID, at: now)
        accepted.header = h1
        accepted.customerSnapshot = report.customerSnapshot
        accepted.duplicate = assessment.duplicate
        if !settings.directoryEventDestinations.isEmpty {
            try Outbox.enqueue(writes, eventID: id1, topic: Liaison_Intake_V1_ReportAccepted.protoMessageName,
                               payload: try deterministicBytes(accepted, appendingField: 2, reportBytes),
                               destinations: settings.directoryEventDestinations)
        }
        if caseCreated {
            var opened = Liaison_Intake_V1_CaseOpened()
            let (h2, id2) = header(aggregate: record.name, version: caseVersion, requestID: requestID, at: now)
            opened.header = h2
            opened.case = caseProto
            opened.firstReport = reportName
            events.append((opened, id2, settings.caseEventDestinations))
        }
        for (event, id, destinations) in events { try publish(writes, event, id, destinations) }

        var response = Liaison_Intake_V1_SubmitReportResponse()
        response.case = caseProto
        response.caseCreated = caseCreated
        response.duplicate = assessment.duplicate
        let encoded = try deterministicBytes(response, appendingField: 1, reportBytes)
        try Idempotency.record(writes, s.key, response: encoded)
        response.report = report
        return SubmitAnswer(response: response, encoded: encoded)
    }

    static func publish(_ c: some SQLWriter, _ event: any SwiftProtobuf.Message, _ id: UUID, _ destinations: [String]) throws {
        func open<E: SwiftProtobuf.Message>(_ e: E) throws { try Events.publish(c, e, eventID: id, to: destinations) }
        try open(event)
    }

    /// Inserts the report row; returns the report's encoding (its `data`).
    @discardableResult
    static func insertReport(_ c: some SQLWriter, id: String, caseID: String, report: Liaison_Intake_V1_Report,
                             candidate: NewReport, fingerprint: ReportFingerprint, duplicate: Bool,
                             settings: IntakeSettings) throws -> [UInt8] {
        let snap = report.customerSnapshot
        let data = try deterministicBytes(report)
        try c.write("""
            INSERT INTO reports (id, customer_id, case_id, channel, symptom, agent, service_hint, ticket_system,
                ticket_id, duplicate, fingerprint, snapshot_region, snapshot_country, snapshot_tier,
                snapshot_partition, snapshot_white_glove, data, receive_time, create_time, update_time,
                symptom_inferred)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19, $20)
            """, [
                id, ResourceName.customerId(report.customer)!, caseID,
                ReportChannel(rawValue: report.channel.rawValue).protoName, candidate.symptom.protoName, report.agent,
                report.serviceHint, report.hasExternalTicket ? report.externalTicket.system : nil as String?,
                report.hasExternalTicket ? report.externalTicket.id : nil as String?, duplicate,
                ByteA(fingerprint.encode()), snap.region, snap.country, Tier(rawValue: snap.tier.rawValue).protoName,
                snap.accountPartition, snap.whiteGlove, ByteA(data), candidate.receiveTime,
                report.createTime.date, candidate.symptomInferred,
            ])
        return data
    }
}
