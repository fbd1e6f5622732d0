// The intake service over real gRPC (shim transport, 127.0.0.1) and a real PostgreSQL database.
import Foundation
import GRPCCore
import GRPCProtobuf
import Intake
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import SwiftProtobuf
import XCTest

final class IntakeRPCTests: XCTestCase {
    /// Five agents report the same outage of one customer at once: one case, four duplicates,
    /// each answer naming the report it matched and the score. Another customer gets its own case.
    func testFiveAgentsSameOutageJoinOneCase() async throws {
        try await withIntake { client, pool in
            try await client.upsert([makeCustomer("acme"), makeCustomer("globex")])
            let texts = [
                "Checkout fails with error 503, the customer cannot pay",
                "Customer cannot pay: checkout fails with error 503",
                "checkout error 503 every time they try to pay",
                "Payments fail at checkout, error 503 shown",
                "Cannot pay, checkout page says error 503",
            ]
            let responses = try await withThrowingTaskGroup(of: Liaison_Intake_V1_SubmitReportResponse.self) { group in
                for (i, text) in texts.enumerated() {
                    group.addTask {
                        // The agents classify the symptom in their help desk; inferred symptoms of
                        // ambiguous texts ("cannot pay" vs "error 503") would veto each other.
                        var report = makeReport(customer: "acme", agent: "agents/agent-\(i)", text: text)
                        report.symptom = .errors
                        return try await client.submitReport(submitRequest(report))
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            XCTAssertEqual(Set(responses.map(\.case.name)).count, 1, "one case for one outage")
            XCTAssertEqual(responses.filter(\.caseCreated).count, 1)
            let duplicates = responses.filter(\.duplicate)
            XCTAssertEqual(duplicates.count, 4)
            let reportNames = Set(responses.map(\.report.name))
            for d in duplicates {
                let a = d.report.duplicateAssessment
                XCTAssertTrue(reportNames.contains(a.matchedReport), "names the matched report")
                XCTAssertNotEqual(a.matchedReport, d.report.name)
                XCTAssertGreaterThanOrEqual(a.similarity, a.threshold)
                XCTAssertTrue(a.signals.contains { $0.name == "text_similarity" })
            }
            // The case is owned by the first reporter's agent; it lists all five reports.
            let creator = responses.first(where: \.caseCreated)!
            var get = Liaison_Intake_V1_GetCaseRequest()
            get.name = creator.case.name
            let theCase = try await client.getCase(get)
            XCTAssertEqual(theCase.reports.count, 5)
            XCTAssertEqual(theCase.owner, creator.report.agent)
            XCTAssertEqual(theCase.state, .open)
            XCTAssertEqual(theCase.symptom, creator.report.symptom)

            let other = try await client.submitReport(submitRequest(makeReport(customer: "globex", text: texts[0])))
            XCTAssertTrue(other.caseCreated)
            XCTAssertFalse(other.duplicate)
            let awaited1 = try await count(pool, "cases")
            XCTAssertEqual(awaited1, 2)

            // A different problem of the same customer opens a new case.
            let slow = try await client.submitReport(submitRequest(makeReport(
                customer: "acme", text: "The reporting dashboard is very slow to load, takes minutes")))
            XCTAssertTrue(slow.caseCreated)

            // Snapshot and events: every accepted report has its ReportAccepted in the outbox.
            XCTAssertEqual(creator.report.customerSnapshot.region, "eu-south")
            XCTAssertEqual(creator.report.customerSnapshot.accountPartition, "1")
            let accepted = try await pool.query(
                "SELECT count(*) FROM outbox WHERE topic = 'liaison.intake.v1.ReportAccepted' AND destination = 'correlation'")
            XCTAssertEqual(try accepted.first!.decode(Int.self, 0), 7)
            try await assertStoredCandidatesMatchReports(pool)
        }
    }

    /// A repeated help-desk ticket is answered as a duplicate of the first report.
    func testSameExternalTicketIsDuplicate() async throws {
        try await withIntake { client, _ in
            try await client.upsert([makeCustomer("acme")])
            let first = try await client.submitReport(submitRequest(makeReport(customer: "acme", ticket: "T-1")))
            let again = try await client.submitReport(submitRequest(makeReport(
                customer: "acme", agent: "agents/a2", text: "Totally different words about invoices", ticket: "T-1")))
            XCTAssertTrue(again.duplicate)
            XCTAssertEqual(again.case.name, first.case.name)
            XCTAssertEqual(again.report.duplicateAssessment.matchedReport, first.report.name)
            XCTAssertTrue(again.report.duplicateAssessment.signals.contains { $0.name == "same_external_ticket" })
        }
    }

    /// request_id: a replay returns the first answer and writes nothing; the same id with another
    /// report is ALREADY_EXISTS (REQUEST_ID_REUSED).
    func testRequestIDReplayAndReuse() async throws {
        try await withIntake { client, pool in
            try await client.upsert([makeCustomer("acme")])
            let id = rid()
            let report = makeReport(customer: "acme")
            let first = try await client.submitReport(submitRequest(report, id: id))
            let replay = try await client.submitReport(submitRequest(report, id: id))
            XCTAssertEqual(first, replay)
            let awaited2 = try await count(pool, "reports")
            XCTAssertEqual(awaited2, 1)
            let awaited3 = try await count(pool, "outbox")
            // CustomerUpserted (to correlation and sla) + ReportAccepted + CaseOpened (to correlation)
            XCTAssertEqual(awaited3, 4)

            var other = report
            other.text = "Something else entirely"
            let status = await expectStatus(.alreadyExists) {
                try await client.submitReport(submitRequest(other, id: id))
            }
            XCTAssertEqual(status?.reason, "REQUEST_ID_REUSED")
            let awaited4 = try await count(pool, "reports")
            XCTAssertEqual(awaited4, 1)

            // Batch upserts replay too.
            var batch = Liaison_Intake_V1_BatchUpsertCustomersRequest()
            batch.customers = [makeCustomer("initech")]
            batch.requestID = rid()
            let b1 = try await client.batchUpsertCustomers(batch)
            let b2 = try await client.batchUpsertCustomers(batch)
            XCTAssertEqual(b1, b2)
            XCTAssertEqual(b1.results.first?.outcome, .created)
        }
    }

    /// Bad inputs: documented code, google.rpc details, and nothing written.
    func testBadInputsReturnDocumentedCodesAndWriteNothing() async throws {
        try await withIntake { client, pool in
            try await client.upsert([makeCustomer("acme"), makeCustomer("orphan", owningAgent: "")])
            let tables = ["reports", "cases", "case_history", "outbox", "idempotency_keys", "customers"]
            var before: [Int] = []
            for t in tables { before.append(try await count(pool, t)) }

            // Unknown customer: NOT_FOUND naming it.
            let missing = await expectStatus(.notFound) {
                try await client.submitReport(submitRequest(makeReport(customer: "nobody")))
            }
            XCTAssertEqual(missing?.details.compactMap(\.resourceInfo).first?.name, "customers/nobody")

            var cases: [(String, Liaison_Intake_V1_Report, String)] = []
            var r = makeReport(customer: "acme"); r.text = "   "
            cases.append(("empty text", r, "report.text"))
            r = makeReport(customer: "acme"); r.text = String(repeating: "x", count: 16 * 1024 + 1)
            cases.append(("oversized text", r, "report.text"))
            r = makeReport(customer: "acme", receive: Date().addingTimeInterval(3600))
            cases.append(("future receive time", r, "report.receive_time"))
            r = makeReport(customer: "acme"); r.channel = .UNRECOGNIZED(42)
            cases.append(("unknown channel", r, "report.channel"))
            r = makeReport(customer: "acme"); r.symptom = .UNRECOGNIZED(99)
            cases.append(("unknown symptom", r, "report.symptom"))
            r = makeReport(customer: "acme"); r.clearReceiveTime()
            cases.append(("missing receive time", r, "report.receive_time"))
            r = makeReport(customer: "orphan", agent: "")
            cases.append(("no agent and no owning agent", r, "report.agent"))
            for (what, report, field) in cases {
                let status = await expectStatus(.invalidArgument) { try await client.submitReport(submitRequest(report)) }
                XCTAssertTrue(status?.violatedFields.contains(field) ?? false, "\(what): \(status?.violatedFields ?? [])")
            }
            // Bad request id.
            let badID = await expectStatus(.invalidArgument) {
                try await client.submitReport(submitRequest(makeReport(customer: "acme"), id: "not-a-uuid"))
            }
            XCTAssertEqual(badID?.violatedFields, ["request_id"])
            // Bad filter, order_by and page token.
            var list = Liaison_Intake_V1_ListReportsRequest()
            list.filter = "text = \"x\""
            _ = await expectStatus(.invalidArgument) { try await client.listReports(list) }
            list.filter = "symptom = \"UNAVAILABLE\" OR channel = \"PHONE\""
            let orFilter = await expectStatus(.invalidArgument) { try await client.listReports(list) }
            XCTAssertEqual(orFilter?.violatedFields, ["filter"])
            list.filter = ""
            list.pageToken = "garbage"
            let token = await expectStatus(.invalidArgument) { try await client.listReports(list) }
            XCTAssertEqual(token?.reason, "INVALID_PAGE_TOKEN")
            // Customer batch: request-level errors; an invalid entry fails alone.
            var batch = Liaison_Intake_V1_BatchUpsertCustomersRequest()
            batch.requestID = rid()
            _ = await expectStatus(.invalidArgument) { try await client.batchUpsertCustomers(batch) }
            batch.customers = [makeCustomer("dup"), makeCustomer("dup")]
            _ = await expectStatus(.invalidArgument) { try await client.batchUpsertCustomers(batch) }
            // Case operations on unknown cases.
            var close = Liaison_Intake_V1_CloseCaseRequest()
            close.name = "cases/nope"
            close.outcome = .resolvedDirectly
            close.requestID = rid()
            _ = await expectStatus(.notFound) { try await client.closeCase(close) }
            close.outcome = .unspecified
            let outcome = await expectStatus(.invalidArgument) { try await client.closeCase(close) }
            XCTAssertEqual(outcome?.violatedFields, ["outcome"])

            var after: [Int] = []
            for t in tables { after.append(try await count(pool, t)) }
            XCTAssertEqual(before, after, "a failed call changes nothing (\(tables))")

            var mixed = Liaison_Intake_V1_BatchUpsertCustomersRequest()
            mixed.requestID = rid()
            var bad = makeCustomer("bad")
            bad.attributes.country = "Italy"
            bad.contacts[0].email = "not-an-email"
            mixed.customers = [makeCustomer("good"), bad]
            let result = try await client.batchUpsertCustomers(mixed)
            XCTAssertEqual(result.results.map(\.outcome), [.created, .failed])
            XCTAssertEqual(result.results[1].status.code, Int32(RPCError.Code.invalidArgument.rawValue))
            XCTAssertFalse("\(result.results[1].status)".contains("not-an-email"), "PII never echoed")
        }
    }

    /// A batch commits its good entries together: an entry refused by the rules and an entry the
    /// database refuses (a trigger stands in for any failing statement) are reported in their
    /// results, write nothing, and cost the others nothing; duplicates inside the batch join the
    /// case an earlier entry of the same batch opened.
    func testBatchWithRefusedEntriesCommitsTheRestAndJoinsCasesWithinTheBatch() async throws {
        try await withIntake { client, pool in
            try await client.upsert((0..<3).map { makeCustomer("c\($0)") })
            try await pool.query("""
                CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN IF NEW.agent = 'agents/poison' THEN RAISE EXCEPTION 'poisoned report'; END IF; RETURN NEW; END $$
                """)
            try await pool.query("CREATE TRIGGER refuse_poison BEFORE INSERT ON reports FOR EACH ROW EXECUTE FUNCTION refuse_poison()")
            var batch = Liaison_Intake_V1_BatchSubmitReportsRequest()
            batch.requests = [
                submitRequest(makeReport(customer: "c0", text: "checkout fails with error 500 at payment")),
                submitRequest(makeReport(customer: "nobody", text: "unknown customer")),
                submitRequest(makeReport(customer: "c0", agent: "agents/a2", text: "payment at checkout fails with error 500")),
                submitRequest(makeReport(customer: "c1", agent: "agents/poison", text: "this one the database refuses")),
                submitRequest(makeReport(customer: "c2", text: "search is slow")),
            ]
            let r = try await client.batchSubmitReports(batch)
            XCTAssertEqual(r.results.map(\.status.code), [0, Int32(RPCError.Code.notFound.rawValue), 0,
                                                          Int32(RPCError.Code.internalError.rawValue), 0])
            XCTAssertTrue(r.results[0].response.caseCreated)
            XCTAssertTrue(r.results[2].response.duplicate, "joins the case opened earlier in the same batch")
            XCTAssertEqual(r.results[2].response.case.name, r.results[0].response.case.name)
            XCTAssertEqual(r.results[2].response.case.reports.count, 2)
            let stored = try await pool.query("SELECT count(*) FROM reports").first!.decode(Int.self, 0)
            XCTAssertEqual(stored, 3)
            let events = try await pool.query("SELECT count(*) FROM outbox WHERE topic = 'liaison.intake.v1.ReportAccepted'")
                .first!.decode(Int.self, 0)
            XCTAssertEqual(events, 3, "one event per accepted report, none for the refused ones")
            // A replay of the whole batch answers the same and writes nothing more.
            let again = try await client.batchSubmitReports(batch)
            XCTAssertEqual(again.results.map(\.response.report.name), r.results.map(\.response.report.name))
            let after = try await pool.query("SELECT count(*) FROM reports").first!.decode(Int.self, 0)
            XCTAssertEqual(after, 3)
        }
    }

    /// One wave mixing joins (by text and by help-desk ticket), new cases and a replay: the
    /// entries' inserts go out as one multi-row insert per table, in an order the foreign keys
    /// accept, and every entry gets what it would get alone.
    func testOneWaveMixingJoinsNewCasesAndReplays() async throws {
        try await withIntake { client, pool in
            try await client.upsert((0..<6).map { makeCustomer("c\($0)") })
            let replayed = submitRequest(makeReport(customer: "c4", text: "invoices download as empty files"))
            var first = Liaison_Intake_V1_BatchSubmitReportsRequest()
            first.requests = [
                submitRequest(makeReport(customer: "c0", text: "checkout fails with error 500 at payment")),
                submitRequest(makeReport(customer: "c1", text: "mobile app crashes on start", ticket: "T-1")),
                replayed,
            ]
            let opened = try await client.batchSubmitReports(first)
            XCTAssertEqual(opened.results.map(\.status.code), [0, 0, 0])

            var mixed = Liaison_Intake_V1_BatchSubmitReportsRequest()
            mixed.requests = [
                submitRequest(makeReport(customer: "c0", agent: "agents/a2", text: "payment at checkout fails with error 500")),
                submitRequest(makeReport(customer: "c2", text: "search results are slow")),
                submitRequest(makeReport(customer: "c1", agent: "agents/a3", text: "something else entirely", ticket: "T-1")),
                replayed,
                submitRequest(makeReport(customer: "c3", text: "password reset mail never arrives")),
            ]
            let r = try await client.batchSubmitReports(mixed)
            XCTAssertEqual(r.results.map(\.status.code), [0, 0, 0, 0, 0])
            XCTAssertEqual(r.results.map(\.response.caseCreated), [false, true, false, true, true], "a replay answers as the first time")
            XCTAssertEqual(r.results[0].response.case.name, opened.results[0].response.case.name)
            XCTAssertEqual(r.results[0].response.case.reports.count, 2)
            XCTAssertEqual(r.results[2].response.case.name, opened.results[1].response.case.name, "same ticket")
            XCTAssertEqual(r.results[3].response.report.name, opened.results[2].response.report.name, "replayed")
            let counts = try await pool.query("""
                SELECT (SELECT count(*) FROM reports), (SELECT count(*) FROM cases), (SELECT count(*) FROM case_history),
                       (SELECT count(*) FROM outbox WHERE topic = 'liaison.intake.v1.ReportAccepted'),
                       (SELECT count(*) FROM idempotency_keys WHERE scope = 'intake.SubmitReport')
                """).first!
            XCTAssertEqual(try (0..<5).map { try counts.decode(Int.self, $0) }, [7, 5, 7, 7, 7])
            try await assertStoredCandidatesMatchReports(pool)
            // Each stored row reads back as the response said.
            for result in r.results {
                var get = Liaison_Intake_V1_GetReportRequest()
                get.name = result.response.report.name
                let stored = try await client.getReport(get)
                XCTAssertEqual(stored.case, result.response.case.name)
            }
        }
    }

    /// A batch large enough for several chunks per wave (see `IntakeRepository.streamWave`), and
    /// two waves: joins of earlier cases by text, new cases, replays of an earlier batch, and a
    /// second wave joining cases the first wave opened. Every answer is what the entry would get
    /// alone, and matches what was stored.
    func testLargeBatchAcrossChunksAndWaves() async throws {
        try await withIntake { client, pool in
            try await client.upsert((0..<40).map { makeCustomer("c\($0)") })
            func outage(_ k: Int) -> String { "order export \(k) fails with timeout on warehouse sync step \(k * 7)" }
            func other(_ k: Int) -> String { "profile picture upload \(k) rejected as too large after resize \(k * 3)" }
            var first = Liaison_Intake_V1_BatchSubmitReportsRequest()
            first.requests = (0..<40).map { submitRequest(makeReport(customer: "c\($0)", text: outage($0))) }
            let opened = try await client.batchSubmitReports(first)
            XCTAssertEqual(Set(opened.results.map(\.status.code)), [0])

            var batch = Liaison_Intake_V1_BatchSubmitReportsRequest()
            // 0..<40: even customers report the same outage again (join), odd ones something new.
            batch.requests = (0..<40).map { k in
                submitRequest(makeReport(customer: "c\(k)", agent: "agents/b\(k)", text: k % 2 == 0 ? outage(k) : other(k)))
            }
            // 40..<50: replays of the first batch.
            batch.requests += (0..<10).map { first.requests[$0 * 4] }
            // 50..<60: odd customers again, same text as their new case above (second wave, join).
            batch.requests += (0..<10).map { i in
                submitRequest(makeReport(customer: "c\(2 * i + 1)", agent: "agents/w2", text: other(2 * i + 1)))
            }
            let r = try await client.batchSubmitReports(batch)
            XCTAssertEqual(r.results.map(\.status.code), [Int32](repeating: 0, count: 60))
            for k in 0..<40 {
                let answer = r.results[k].response
                if k % 2 == 0 {
                    XCTAssertTrue(answer.duplicate, "entry \(k)")
                    XCTAssertEqual(answer.case.name, opened.results[k].response.case.name, "entry \(k)")
                } else {
                    XCTAssertTrue(answer.caseCreated, "entry \(k)")
                }
            }
            for i in 0..<10 {
                XCTAssertEqual(r.results[40 + i].response.report.name, opened.results[i * 4].response.report.name, "replay \(i)")
                let join = r.results[50 + i].response
                XCTAssertTrue(join.duplicate, "second wave \(i)")
                XCTAssertEqual(join.case.name, r.results[2 * i + 1].response.case.name, "second wave \(i)")
                XCTAssertEqual(join.case.reports.count, 2)
            }
            let counts = try await pool.query("""
                SELECT (SELECT count(*) FROM reports), (SELECT count(*) FROM cases),
                       (SELECT count(*) FROM outbox WHERE topic = 'liaison.intake.v1.ReportAccepted'),
                       (SELECT count(*) FROM idempotency_keys WHERE scope = 'intake.SubmitReport')
                """).first!
            // Reports: 40 + 40 + 10; cases: 40 + 20 new.
            XCTAssertEqual(try (0..<4).map { try counts.decode(Int.self, $0) }, [90, 60, 90, 90])
            try await assertStoredCandidatesMatchReports(pool)
            for result in r.results {
                var get = Liaison_Intake_V1_GetReportRequest()
                get.name = result.response.report.name
                let stored = try await client.getReport(get)
                XCTAssertEqual(stored.case, result.response.case.name)
            }
        }
    }

    /// A request id repeated inside one batch: the later entry runs in a later wave and replays
    /// the earlier one's response, so the report is written once.
    func testRequestIDRepeatedWithinABatchIsWrittenOnce() async throws {
        try await withIntake { client, pool in
            try await client.upsert((0..<2).map { makeCustomer("c\($0)") })
            let report = makeReport(customer: "c0", text: "login page returns 502")
            let id = rid()
            var batch = Liaison_Intake_V1_BatchSubmitReportsRequest()
            batch.requests = [
                submitRequest(report, id: id),
                submitRequest(makeReport(customer: "c1", text: "exports are empty")),
                submitRequest(report, id: id),
            ]
            let r = try await client.batchSubmitReports(batch)
            XCTAssertEqual(r.results.map(\.status.code), [0, 0, 0])
            XCTAssertEqual(r.results[2].response.report.name, r.results[0].response.report.name)
            let stored = try await pool.query("SELECT count(*) FROM reports").first!.decode(Int.self, 0)
            XCTAssertEqual(stored, 2)
        }
    }

    /// A batch split over two transactions (`IntakeSettings.batchParallelism`) answers exactly as
    /// one transaction does: joins of earlier cases, new cases, later entries of a customer
    /// joining the case an earlier entry opened, replays, and a request id reused by two customers
    /// (which links their entries into one transaction). The split is real: the batch's new rows
    /// carry two transaction ids, against one with parallelism 1.
    func testSplitBatchAnswersAsOneTransaction() async throws {
        func outage(_ k: Int) -> String { "order export \(k) fails with timeout on warehouse sync step \(k * 7)" }
        func other(_ k: Int) -> String { "profile picture upload \(k) rejected as too large after resize \(k * 3)" }
        let shared = rid()
        let firstIDs = (0..<30).map { _ in rid() }
        let secondIDs = (0..<64).map { _ in rid() }
        /// Runs the scenario; returns each entry's answer with names replaced by the index of the
        /// first entry (first batch 0..<30, then the second batch 30...) that got the same name,
        /// and how many transactions wrote the second batch's reports.
        func scenario(parallelism: Int) async throws -> (answers: [String], transactions: Int) {
            try await withIntake(settings: { $0.batchParallelism = parallelism }) { client, pool in
                try await client.upsert((0..<60).map { makeCustomer("c\($0)") })
                var first = Liaison_Intake_V1_BatchSubmitReportsRequest()
                first.requests = (0..<30).map { submitRequest(makeReport(customer: "c\($0)", text: outage($0)), id: firstIDs[$0]) }
                let opened = try await client.batchSubmitReports(first)
                XCTAssertEqual(Set(opened.results.map(\.status.code)), [0])

                var batch = Liaison_Intake_V1_BatchSubmitReportsRequest()
                var requests: [Liaison_Intake_V1_SubmitReportRequest] = []
                // Even customers report the outage again (join), odd ones something new.
                requests += (0..<30).map { k in
                    submitRequest(makeReport(customer: "c\(k)", agent: "agents/b\(k)", text: k % 2 == 0 ? outage(k) : other(k)))
                }
                // Odd customers again with their new problem: joins the case opened just above.
                requests += (0..<10).map { i in
                    submitRequest(makeReport(customer: "c\(2 * i + 1)", agent: "agents/w2", text: other(2 * i + 1)))
                }
                // Replays of the first batch.
                requests += (0..<4).map { first.requests[$0 * 7] }
                // One request id, two customers, two contents: the second is refused.
                requests.append(submitRequest(makeReport(customer: "c40", text: "invoices are empty"), id: shared))
                requests.append(submitRequest(makeReport(customer: "c41", text: "search is slow"), id: shared))
                // New customers, new problems.
                requests += (42..<60).map { submitRequest(makeReport(customer: "c\($0)", text: other($0))) }
                for (i, id) in secondIDs.enumerated() where requests[i].requestID != shared && !(40..<44).contains(i) {
                    requests[i].requestID = id
                }
                batch.requests = requests
                XCTAssertEqual(batch.requests.count, 64)
                let r = try await client.batchSubmitReports(batch)

                var firstIndex: [String: Int] = [:]
                func index(_ name: String, _ i: Int) -> Int {
                    if let known = firstIndex[name] { return known }
                    firstIndex[name] = i
                    return i
                }
                for (i, result) in opened.results.enumerated() {
                    _ = index(result.response.case.name, i)
                    _ = index(result.response.report.name, i)
                }
                let answers = r.results.enumerated().map { i, result -> String in
                    let a = result.response
                    guard result.status.code == 0 else { return "status \(result.status.code)" }
                    return "dup \(a.duplicate) created \(a.caseCreated) case \(index(a.case.name, 30 + i)) "
                        + "report \(index(a.report.name, 30 + i)) reports \(a.case.reports.count)"
                }
                try await assertStoredCandidatesMatchReports(pool)
                let names = r.results.filter { $0.status.code == 0 }.map { String($0.response.report.name.dropFirst("reports/".count)) }
                let transactions = try await pool.query(
                    "SELECT count(DISTINCT xmin::text) FROM reports WHERE id = ANY($1::text[]) AND id <> ALL($2::text[])",
                    [TextArray(names), TextArray(opened.results.map { String($0.response.report.name.dropFirst("reports/".count)) })]
                ).first!.decode(Int.self, 0)
                return (answers, transactions)
            }
        }
        let one = try await scenario(parallelism: 1)
        let two = try await scenario(parallelism: 2)
        XCTAssertEqual(one.transactions, 1)
        XCTAssertEqual(two.transactions, 2, "the batch was split")
        XCTAssertEqual(two.answers, one.answers)
        // And the answers are the expected ones.
        for k in 0..<30 {
            XCTAssertTrue(one.answers[k].hasPrefix(k % 2 == 0 ? "dup true created false case \(k) " : "dup false created true"), "entry \(k): \(one.answers[k])")
        }
        for i in 0..<10 {
            XCTAssertTrue(one.answers[30 + i].hasPrefix("dup true created false case \(30 + 2 * i + 1) "), one.answers[30 + i])
        }
        for i in 0..<4 { XCTAssertTrue(one.answers[40 + i].contains("report \(i * 7) "), one.answers[40 + i]) }
        XCTAssertTrue(one.answers[44].hasPrefix("dup false created true"))
        XCTAssertTrue(one.answers[45].hasPrefix("status "), "the reused request id is refused: \(one.answers[45])")
    }

    /// Keyset paging returns every existing row exactly once while new rows are inserted.
    func testPagingIsStableWhileRowsAreInserted() async throws {
        try await withIntake { client, pool in
            try await client.upsert((0..<20).map { makeCustomer("c\($0)") })
            // 200 reports spread over customers and times (each with its own text: new cases).
            var batch = Liaison_Intake_V1_BatchSubmitReportsRequest()
            for i in 0..<200 {
                batch.requests.append(submitRequest(makeReport(
                    customer: "c\(i % 20)", text: "problem number \(i) with feature \(i * 7919 % 1000)",
                    receive: Date().addingTimeInterval(-Double(3600 + i * 30)))))
            }
            let submitted = try await client.batchSubmitReports(batch)
            XCTAssertTrue(submitted.results.allSatisfy { $0.status.code == 0 })
            let existing = Set(submitted.results.map(\.response.report.name))

            let writer = Task {
                for i in 0..<60 {
                    _ = try await client.submitReport(submitRequest(makeReport(
                        customer: "c\(i % 20)", text: "concurrent report \(i)",
                        receive: Date().addingTimeInterval(-Double.random(in: 0...20000)))))
                }
            }
            for order in ["", "receive_time", "create_time"] {
                var seen: [String] = []
                var request = Liaison_Intake_V1_ListReportsRequest()
                request.pageSize = 17
                request.orderBy = order
                repeat {
                    let page = try await client.listReports(request)
                    seen += page.reports.map(\.name)
                    request.pageToken = page.nextPageToken
                } while !request.pageToken.isEmpty
                XCTAssertEqual(seen.count, Set(seen).count, "no row twice (\(order))")
                XCTAssertTrue(existing.isSubset(of: Set(seen)), "no existing row skipped (\(order))")
            }
            try await writer.value

            // Filters and a filtered listing of one customer.
            var request = Liaison_Intake_V1_ListReportsRequest()
            request.filter = "customer = \"customers/c3\" AND channel = \"PHONE\" AND customer_snapshot.region = \"eu-south\""
            request.pageSize = 1000
            let c3 = try await client.listReports(request)
            let expected = try await pool.query("SELECT count(*) FROM reports WHERE customer_id = 'c3'").first!.decode(Int.self, 0)
            XCTAssertEqual(c3.reports.count, expected)
            XCTAssertTrue(c3.reports.allSatisfy { $0.customer == "customers/c3" })
            let caseName = c3.reports[0].case
            request.filter = "case = \"\(caseName)\""
            let awaited5 = try await client.listReports(request).reports.map(\.case)
            XCTAssertFalse(awaited5.isEmpty)
            XCTAssertTrue(awaited5.allSatisfy { $0 == caseName })
            let inCase = try await pool.query(
                "SELECT count(*) FROM reports WHERE case_id = $1", [String(caseName.dropFirst("cases/".count))])
            XCTAssertEqual(awaited5.count, try inCase.first!.decode(Int.self, 0))
            request.filter = "receive_time >= \"\(ISO8601DateFormatter().string(from: Date().addingTimeInterval(-3600 - 300)))\""
            let recent = try await client.listReports(request)
            XCTAssertTrue(recent.reports.count >= 10)
            // A token is bound to its query.
            request.filter = ""
            request.pageSize = 5
            let first = try await client.listReports(request)
            request.filter = "symptom = \"ERRORS\""
            request.pageToken = first.nextPageToken
            _ = await expectStatus(.invalidArgument) { try await client.listReports(request) }

            // Cases by customer, state and owner, paged.
            var cases = Liaison_Intake_V1_ListCasesRequest()
            cases.filter = "state = \"OPEN\" AND owner = \"agents/a1\""
            cases.pageSize = 7
            var caseNames: [String] = []
            repeat {
                let page = try await client.listCases(cases)
                caseNames += page.cases.map(\.name)
                cases.pageToken = page.nextPageToken
            } while !cases.pageToken.isEmpty
            XCTAssertEqual(caseNames.count, Set(caseNames).count)
            let awaited6 = try await count(pool, "cases")
            XCTAssertEqual(caseNames.count, awaited6)
        }
    }

    /// Merge, split, assign, close and reopen over RPC, with etags and history.
    func testCaseLifecycleWithEtags() async throws {
        try await withIntake { client, pool in
            try await client.upsert([makeCustomer("acme"), makeCustomer("globex")])
            let a = try await client.submitReport(submitRequest(makeReport(customer: "acme", text: "Login fails with error 500")))
            let b = try await client.submitReport(submitRequest(makeReport(
                customer: "acme", agent: "agents/a2", text: "Dashboard is slow, charts take minutes to render")))
            let other = try await client.submitReport(submitRequest(makeReport(customer: "globex")))
            XCTAssertNotEqual(a.case.name, b.case.name)

            // Merge b into a (stale etag first).
            var merge = Liaison_Intake_V1_MergeCasesRequest()
            merge.name = a.case.name
            merge.sourceCases = [b.case.name]
            merge.etag = "v999"
            merge.requestID = rid()
            let stale = await expectStatus(.aborted) { try await client.mergeCases(merge) }
            XCTAssertEqual(stale?.reason, "ETAG_MISMATCH")
            merge.etag = a.case.etag
            merge.requestID = rid()
            let merged = try await client.mergeCases(merge)
            // The survivor's stored duplicate candidates now list both reports; the merged case's none.
            try await assertStoredCandidatesMatchReports(pool, cases: 3)
            XCTAssertEqual(merged.reports.count, 2)
            XCTAssertNotEqual(merged.etag, a.case.etag)
            var get = Liaison_Intake_V1_GetCaseRequest()
            get.name = b.case.name
            let gone = try await client.getCase(get)
            XCTAssertEqual(gone.state, .merged)
            XCTAssertEqual(gone.mergedInto, a.case.name)
            var getReport = Liaison_Intake_V1_GetReportRequest()
            getReport.name = b.report.name
            let awaited7 = try await client.getReport(getReport).case
            XCTAssertEqual(awaited7, a.case.name)
            // Different customers and merged cases are refused.
            merge.sourceCases = [other.case.name]
            merge.etag = ""
            merge.requestID = rid()
            let mismatch = await expectStatus(.invalidArgument) { try await client.mergeCases(merge) }
            XCTAssertEqual(mismatch?.violatedFields, ["source_cases"])
            merge.sourceCases = [b.case.name]
            merge.requestID = rid()
            _ = await expectStatus(.failedPrecondition) { try await client.mergeCases(merge) }

            // Split b's report back out, to a new owner.
            var split = Liaison_Intake_V1_SplitCaseRequest()
            split.name = a.case.name
            split.reports = [b.report.name]
            split.newOwner = "agents/a2"
            split.etag = merged.etag
            split.requestID = rid()
            let parts = try await client.splitCase(split)
            XCTAssertEqual(parts.originalCase.reports, [a.report.name])
            XCTAssertEqual(parts.newCase.reports, [b.report.name])
            XCTAssertEqual(parts.newCase.owner, "agents/a2")
            try await assertStoredCandidatesMatchReports(pool, cases: 4)
            getReport.name = b.report.name
            let awaited8 = try await client.getReport(getReport).case
            XCTAssertEqual(awaited8, parts.newCase.name)
            split.reports = [a.report.name]
            split.etag = ""
            split.requestID = rid()
            let emptying = await expectStatus(.invalidArgument) { try await client.splitCase(split) }
            XCTAssertEqual(emptying?.violatedFields, ["reports"])

            // Assign, close (outcome required), reopen.
            var assign = Liaison_Intake_V1_AssignCaseRequest()
            assign.name = parts.newCase.name
            assign.owner = "agents/a3"
            assign.etag = parts.newCase.etag
            assign.requestID = rid()
            let assigned = try await client.assignCase(assign)
            XCTAssertEqual(assigned.owner, "agents/a3")
            let replay = try await client.assignCase(assign)
            XCTAssertEqual(replay, assigned)

            var close = Liaison_Intake_V1_CloseCaseRequest()
            close.name = assigned.name
            close.outcome = .resolvedDirectly
            close.note = "cleared the cache"
            close.etag = assigned.etag
            close.requestID = rid()
            let closed = try await client.closeCase(close)
            XCTAssertEqual(closed.state, .closed)
            XCTAssertEqual(closed.outcome, .resolvedDirectly)
            XCTAssertTrue(closed.hasCloseTime)
            close.requestID = rid()
            close.etag = ""
            _ = await expectStatus(.failedPrecondition) { try await client.closeCase(close) }
            assign.requestID = rid()
            assign.etag = ""
            _ = await expectStatus(.failedPrecondition) { try await client.assignCase(assign) }

            var reopen = Liaison_Intake_V1_ReopenCaseRequest()
            reopen.name = closed.name
            reopen.note = "problem is back"
            reopen.etag = closed.etag
            reopen.requestID = rid()
            let reopened = try await client.reopenCase(reopen)
            XCTAssertEqual(reopened.state, .open)
            XCTAssertEqual(reopened.outcome, .unspecified)
            reopen.requestID = rid()
            reopen.etag = ""
            _ = await expectStatus(.failedPrecondition) { try await client.reopenCase(reopen) }

            var history = Liaison_Intake_V1_ListCaseHistoryRequest()
            history.name = reopened.name
            history.pageSize = 2
            var actions: [Liaison_Intake_V1_CaseHistoryEntry.Action] = []
            repeat {
                let page = try await client.listCaseHistory(history)
                actions += page.entries.map(\.action)
                history.pageToken = page.nextPageToken
            } while !history.pageToken.isEmpty
            XCTAssertEqual(actions, [.splitFrom, .assigned, .closed, .reopened])
            history.name = a.case.name
            history.pageSize = 100
            history.pageToken = ""
            let awaited9 = try await client.listCaseHistory(history).entries.map(\.action)
            XCTAssertEqual(awaited9, [.opened, .mergedIn, .splitOff])
        }
    }

    /// A CRM sync of 5,000 customers in batches of 1,000; replays, stale and unchanged entries;
    /// listing with filters; contacts only with CUSTOMER_VIEW_FULL; UpdateCustomer with etags.
    func testBatchUpsertOf5000Customers() async throws {
        try await withIntake { client, pool in
            let regions = ["eu-south", "eu-north", "eu-central", "us-east"]
            let all = (0..<5000).map { i in
                var c = makeCustomer(String(format: "crm-%05d", i), region: regions[i % 4],
                                     tier: i % 10 == 0 ? .enterprise : .standard)
                c.sourceUpdateTime = .init(date: Date(timeIntervalSince1970: 1_700_000_000))
                return c
            }
            let start = ContinuousClock.now
            for chunk in stride(from: 0, to: all.count, by: 1000) {
                let response = try await client.upsert(Array(all[chunk..<chunk + 1000]))
                XCTAssertEqual(response.results.count, 1000)
                XCTAssertTrue(response.results.allSatisfy { $0.outcome == .created })
                XCTAssertTrue(response.results.allSatisfy { $0.customer.contacts.isEmpty }, "no PII in results")
            }
            print("batch upsert of 5000 customers: \(ContinuousClock.now - start)")
            let awaited10 = try await count(pool, "customers")
            XCTAssertEqual(awaited10, 5000)
            let events = try await pool.query("SELECT count(DISTINCT event_id) FROM outbox WHERE topic = 'liaison.intake.v1.CustomerUpserted'")
            XCTAssertEqual(try events.first!.decode(Int.self, 0), 5000)

            // Same data again: UNCHANGED; older source time: SKIPPED_STALE; newer and changed: UPDATED.
            var again = Array(all[0..<3])
            again[1].sourceUpdateTime = .init(date: Date(timeIntervalSince1970: 1_600_000_000))
            again[1].displayName = "stale name"
            again[2].sourceUpdateTime = .init(date: Date(timeIntervalSince1970: 1_800_000_000))
            again[2].attributes.tier = .business
            let outcomes = try await client.upsert(again).results.map(\.outcome)
            XCTAssertEqual(outcomes, [.unchanged, .skippedStale, .updated])

            // List: filter, paging by name, contacts only on request.
            var list = Liaison_Intake_V1_ListCustomersRequest()
            list.filter = "region = \"eu-south\" AND tier = \"ENTERPRISE\" AND features:\"teapot-customization\""
            list.pageSize = 37
            var names: [String] = []
            repeat {
                let page = try await client.listCustomers(list)
                XCTAssertTrue(page.customers.allSatisfy { $0.contacts.isEmpty })
                names += page.customers.map(\.name)
                list.pageToken = page.nextPageToken
            } while !list.pageToken.isEmpty
            XCTAssertEqual(names, names.sorted())
            XCTAssertEqual(names.count, all.filter { $0.attributes.region == "eu-south" && $0.attributes.tier == .enterprise }.count)
            list.filter = "platform:\"ANDROID\" AND client_version:\"5.1.3\" AND white_glove = false"
            list.orderBy = "display_name"
            list.pageSize = 1000
            list.view = .full
            let full = try await client.listCustomers(list)
            XCTAssertEqual(full.customers.count, 1000)
            XCTAssertEqual(full.customers.first?.contacts.first?.email, "ada@example.com")
            XCTAssertFalse(full.nextPageToken.isEmpty)

            // UpdateCustomer with update_mask and etag.
            var get = Liaison_Intake_V1_GetCustomerRequest()
            get.name = "customers/crm-00007"
            let current = try await client.getCustomer(get)
            XCTAssertTrue(current.contacts.isEmpty)
            var update = Liaison_Intake_V1_UpdateCustomerRequest()
            update.customer.name = current.name
            update.customer.attributes.tier = .enterprise
            update.updateMask.paths = ["attributes.tier"]
            update.etag = current.etag
            update.requestID = rid()
            let updated = try await client.updateCustomer(update)
            XCTAssertEqual(updated.attributes.tier, .enterprise)
            XCTAssertEqual(updated.attributes.region, current.attributes.region)
            XCTAssertNotEqual(updated.etag, current.etag)
            update.requestID = rid()
            let stale = await expectStatus(.aborted) { try await client.updateCustomer(update) }
            XCTAssertEqual(stale?.reason, "ETAG_MISMATCH")
            update.updateMask.paths = ["create_time"]
            update.requestID = rid()
            let mask = await expectStatus(.invalidArgument) { try await client.updateCustomer(update) }
            XCTAssertEqual(mask?.violatedFields, ["update_mask"])
            get.name = "customers/nope"
            _ = await expectStatus(.notFound) { try await client.getCustomer(get) }
        }
    }
}
