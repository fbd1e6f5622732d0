// The repository directly against PostgreSQL (no gRPC): per-customer serialization of concurrent
// submissions, case persistence round trips, and the page-token key split.
import Foundation
@testable import Intake
@testable import IntakeDomain
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import XCTest

final class IntakeRepositoryTests: XCTestCase {
    func makeRepository() async throws -> (IntakeRepository, PostgresPool) {
        let (_, pool) = try await makeIntakeDatabase()
        var settings = IntakeSettings(pageTokenKey: Array("test-page-token-key-0123456789".utf8))
        settings.caseEventDestinations = ["followup"]
        return (IntakeRepository(pool: pool, settings: settings), pool)
    }

    func upsert(_ repo: IntakeRepository, _ customers: [Liaison_Intake_V1_Customer]) async throws {
        _ = try await repo.batchUpsert(
            entries: customers.enumerated().map {
                .init(index: $0.offset, id: ResourceName.customerId($0.element.name)!, customer: Mapping.storedCustomer($0.element))
            }, failed: [], requestID: rid(), requestBytes: Array(rid().utf8))
    }

    /// 24 concurrent submissions of one problem for one customer (8 pool connections): the
    /// customer row lock serializes them, so exactly one case opens and 23 reports join it.
    func testConcurrentSubmissionsForOneCustomerOpenOneCase() async throws {
        let (repo, pool) = try await makeRepository()
        try await upsert(repo, [makeCustomer("acme"), makeCustomer("globex")])
        let responses = try await withThrowingTaskGroup(of: Liaison_Intake_V1_SubmitReportResponse.self) { group in
            for i in 0..<24 {
                group.addTask {
                    var r = makeReport(customer: i % 6 == 5 ? "globex" : "acme", agent: "agents/agent-\(i % 5)",
                                       text: "Checkout returns error 503 for every payment attempt (\(i % 3))")
                    r.symptom = .errors
                    let request = submitRequest(r)
                    return try await repo.submit(request.report, requestID: request.requestID,
                                                 requestBytes: try deterministicBytes(request))
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let acme = responses.filter { $0.report.customer == "customers/acme" }
        XCTAssertEqual(Set(acme.map(\.case.name)).count, 1)
        XCTAssertEqual(acme.filter(\.caseCreated).count, 1)
        XCTAssertEqual(acme.filter(\.duplicate).count, acme.count - 1)
        let globex = responses.filter { $0.report.customer == "customers/globex" }
        XCTAssertEqual(Set(globex.map(\.case.name)).count, 1)

        // The stored case lists every report, oldest first, with one history entry per report.
        let caseID = ResourceName.caseId(acme[0].case.name)!
        let stored = try await repo.getCase(id: caseID)!
        XCTAssertEqual(stored.reports.count, acme.count)
        let history = try await repo.caseHistory(id: caseID)!
        XCTAssertEqual(history.first?.action, .opened)
        XCTAssertEqual(history.filter { $0.action == .reportAdded }.count, acme.count - 1)
        // Joins append without reading the history: positions stay 0..<n, one per report added.
        let seqs = try await pool.query("SELECT seq FROM case_history WHERE case_id = $1 ORDER BY seq", [caseID])
            .rows.map { try $0.decode(Int.self, 0) }
        XCTAssertEqual(seqs, Array(0..<acme.count))
        XCTAssertEqual(Set(history.filter { $0.action == .reportAdded }.flatMap(\.related)),
                       Set(acme.filter { !$0.caseCreated }.map(\.report.name)))
        // Case events go to the configured destinations; report events to correlation.
        let opened = try await pool.query(
            "SELECT count(*) FROM outbox WHERE topic = 'liaison.intake.v1.CaseOpened' AND destination = 'followup'")
        XCTAssertEqual(try opened.first!.decode(Int.self, 0), 2)
        let accepted = try await pool.query(
            "SELECT count(*) FROM outbox WHERE topic = 'liaison.intake.v1.ReportAccepted' AND destination = 'correlation'")
        XCTAssertEqual(try accepted.first!.decode(Int.self, 0), 24)
    }

    /// The snapshot is taken at report time: a later customer change does not alter it.
    func testSnapshotIsFrozenAtReportTime() async throws {
        let (repo, _) = try await makeRepository()
        try await upsert(repo, [makeCustomer("acme", region: "eu-south")])
        let request = submitRequest(makeReport(customer: "acme"))
        let first = try await repo.submit(request.report, requestID: request.requestID,
                                          requestBytes: try deterministicBytes(request))
        var moved = makeCustomer("acme", region: "eu-north")
        moved.sourceUpdateTime = .init(date: Date())
        try await upsert(repo, [moved])
        let report = try await repo.getReport(id: ResourceName.reportId(first.report.name)!)!
        XCTAssertEqual(report.customerSnapshot.region, "eu-south")
        XCTAssertEqual(report.case, first.case.name)
    }

    /// The duplicate-candidate reads (one submission, and a batch over arrays) read one row per
    /// open case and never touch `reports`. The per-case fallback read (`caseWindowSQL`) scans the
    /// case's reports through `reports_case` in the generic plan a connection caches while the
    /// tables are empty, and no other index can serve that ordered, limited scan: with
    /// `reports_case` gone, the planner must not fall back to walking `reports_receive_time` (the
    /// time index an old `receive_time BETWEEN` window let it use, at exactly the same estimated
    /// cost on a small table, so some connections cached it and scanned every report in the window).
    func testCandidateReadsStayOnTheirIndexes() async throws {
        let (_, pool) = try await makeRepository()
        let window = 86_400.0
        let one = "EXECUTE cand_one('acme')"
        let all = "EXECUTE cand_all('{acme,globex}')"
        let fallback = "EXECUTE cand_case('k1', '2026-11-29 12:00:00+00', \(window))"
        let plans: [String] = try await pool.withConnection { c in
            try c.execute(script: """
                SET plan_cache_mode = force_generic_plan;
                PREPARE cand_one(text) AS \(IntakeRepository.candidatesSQL);
                PREPARE cand_all(text[]) AS \(IntakeRepository.candidatesAllSQL);
                PREPARE cand_case(text, timestamptz, float8) AS \(IntakeRepository.caseWindowSQL);
                """)
            func explain(_ execute: String) throws -> String {
                try c.query("EXPLAIN (COSTS OFF) \(execute)").rows.map { try $0.decode(String.self, 0) }
                    .joined(separator: "\n")
            }
            var plans = [try explain(one), try explain(all), try explain(fallback)]
            try c.execute(script: "BEGIN; DROP INDEX reports_case")
            plans += [try explain(fallback)]
            try c.execute(script: "ROLLBACK; DEALLOCATE ALL; RESET plan_cache_mode")
            return plans
        }
        for plan in plans[0..<2] {
            // In update_time order from the index: the read stops at 100 cases and sorts nothing.
            XCTAssertTrue(plan.contains("Index Scan using cases_customer_open_recent on cases"), plan)
            XCTAssertFalse(plan.contains("Sort"), plan)
            XCTAssertFalse(plan.contains("reports"), plan)
        }
        XCTAssertTrue(plans[2].contains("Index Scan Backward using reports_case on reports"), plans[2])
        XCTAssertFalse(plans[3].contains("reports_receive_time"), plans[3])
    }

    /// A report received long before a busy case's latest reports: the case's stored candidates
    /// (its 20 newest reports, all after the window around the new report) cannot answer, so the
    /// repository reads that case's reports in the window, and the report joins the case through
    /// its older reports, as it did when every candidate read went to `reports`.
    func testBackdatedReportStillFindsOlderReportsOfABusyCase() async throws {
        let (repo, pool) = try await makeRepository()
        try await upsert(repo, [makeCustomer("acme")])
        let now = Date()
        let text = "Checkout returns error 503 for every payment attempt since the deploy"
        func submit(_ receive: Date, ticket: String? = nil) async throws -> Liaison_Intake_V1_SubmitReportResponse {
            var r = makeReport(customer: "acme", text: text, receive: receive, ticket: ticket)
            r.symptom = .errors
            let request = submitRequest(r)
            return try await repo.submit(request.report, requestID: request.requestID, requestBytes: try deterministicBytes(request))
        }
        let first = try await submit(now.addingTimeInterval(-8 * 3600), ticket: "T-1")
        let second = try await submit(now.addingTimeInterval(-4 * 3600))
        XCTAssertEqual(second.case.name, first.case.name)
        for i in 0..<21 {
            let r = try await submit(now.addingTimeInterval(-Double(i)))
            XCTAssertEqual(r.case.name, first.case.name)
        }
        // 7 hours back: the window reaches the reports at -8 h and -4 h, not the 21 recent ones.
        let late = try await submit(now.addingTimeInterval(-7 * 3600))
        XCTAssertTrue(late.duplicate)
        XCTAssertEqual(late.case.name, first.case.name)
        XCTAssertTrue([first.report.name, second.report.name].contains(late.report.duplicateAssessment.matchedReport),
                      late.report.duplicateAssessment.matchedReport)
        try await assertStoredCandidatesMatchReports(pool, cases: 1)
        // The stored list holds the 20 newest, newest first; the ticket survives the round trip.
        let stored = try await pool.query("SELECT candidates FROM cases").first!.decode(ByteA.self, 0).bytes
        let entries = try CaseCandidates(decoding: stored).entries
        XCTAssertEqual(entries.count, 20)
        XCTAssertEqual(entries.map(\.receiveMicros), entries.map(\.receiveMicros).sorted(by: >))
        let all = try CaseCandidates(decoding: try await pool.query(
            "SELECT string_agg(intake_candidate_entry(id, receive_time, fingerprint, symptom, service_hint, ticket_system, ticket_id, symptom_inferred), ''::bytea) FROM reports WHERE ticket_id IS NOT NULL"
        ).first!.decode(ByteA.self, 0).bytes).entries
        XCTAssertEqual(all.map(\.ticketID), ["T-1"])
        XCTAssertEqual(all.first?.symptom, "SYMPTOM_KIND_ERRORS")
        XCTAssertEqual(all.first.map { Int64($0.receiveTime.timeIntervalSince1970) }, Int64(now.addingTimeInterval(-8 * 3600).timeIntervalSince1970))
    }
}
