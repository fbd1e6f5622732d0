// SubmitReport's group commit (`SubmitCoalescer`) against PostgreSQL: submissions queued behind a
// running one share a transaction and each gets exactly its own answer (joins, replays, refusals
// included), and a queued submission that is cancelled writes nothing.
import Foundation
import GRPCProtobuf
@testable import Intake
@testable import IntakeDomain
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import Logging
import XCTest

final class SubmitCoalescerTests: XCTestCase {
    /// A repository whose SubmitReport runs one transaction at a time, over a fresh database with
    /// customers acme, globex and initech.
    func makeRepository(maxQueued: Int = 2000) async throws -> (IntakeRepository, PostgresPool, String) {
        let (url, pool) = try await makeIntakeDatabase()
        var settings = IntakeSettings(pageTokenKey: Array("test-page-token-key-0123456789".utf8))
        settings.submitTransactions = 1
        settings.maxQueuedSubmissions = maxQueued
        let repo = IntakeRepository(pool: pool, settings: settings)
        _ = try await repo.batchUpsert(
            entries: ["acme", "globex", "initech"].enumerated().map {
                .init(index: $0.offset, id: $0.element, customer: Mapping.storedCustomer(makeCustomer($0.element)))
            }, failed: [], requestID: rid(), requestBytes: Array(rid().utf8))
        return (repo, pool, url)
    }

    /// A repository (`makeRepository`) whose only slot is taken: an acme submission (`leader`)
    /// waits for acme's row lock, held by `lock` until released.
    func startWithBusySlot(maxQueued: Int = 2000) async throws
        -> (IntakeRepository, PostgresPool, CustomerLock, Task<Liaison_Intake_V1_SubmitReportResponse, any Error>) {
        let (repo, pool, url) = try await makeRepository(maxQueued: maxQueued)
        let lock = try CustomerLock(url: url, customer: "acme")
        let leader = Self.spawn(repo, submitRequest(makeReport(customer: "acme")))
        try await eventually("the leader to wait for acme's lock") {
            try await pool.query("SELECT count(*) FROM pg_locks WHERE NOT granted").first!.decode(Int.self, 0) > 0
        }
        return (repo, pool, lock, leader)
    }

    /// Holds customer `id`'s row lock on a connection of its own until `release()`.
    final class CustomerLock: @unchecked Sendable {
        let connection: PostgresConnection
        init(url: String, customer id: String) throws {
            connection = try PostgresConnection(url: url)
            try connection.query("BEGIN")
            try connection.query("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE", [id])
        }
        func release() throws { try connection.query("ROLLBACK") }
    }

    /// Waits (up to 10 s) until `condition` holds.
    func eventually(_ what: String, _ condition: () async throws -> Bool) async throws {
        for _ in 0..<1000 {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        XCTFail("timed out waiting for \(what)")
    }

    /// Submits `request` in a task of its own.
    static func spawn(_ repo: IntakeRepository, _ request: Liaison_Intake_V1_SubmitReportRequest)
        -> Task<Liaison_Intake_V1_SubmitReportResponse, any Error> {
        Task { try await submit(repo, request) }
    }

    static func submit(_ repo: IntakeRepository, _ request: Liaison_Intake_V1_SubmitReportRequest) async throws
        -> Liaison_Intake_V1_SubmitReportResponse {
        try await repo.submit(request.report, requestID: request.requestID, requestBytes: try deterministicBytes(request))
    }

    /// The first submission holds the only slot (waiting for a customer lock held elsewhere);
    /// eight more queue behind it and then run as ONE transaction. Each gets what it would have
    /// got alone: the three globex reports of one problem share one case, the unknown customer is
    /// NOT_FOUND, a retried request replays its answer, a request id reused for other content is
    /// refused, and only the accepted reports are stored, each with its event.
    func testQueuedSubmissionsShareOneTransactionAndEachGetsItsOwnAnswer() async throws {
        let (repo, pool, lock, leader) = try await startWithBusySlot()

        var globex = makeReport(customer: "globex", text: "Checkout returns error 503 for every payment attempt")
        globex.symptom = .errors
        let retried = submitRequest(makeReport(customer: "initech", text: "Exports to CSV are empty since the update"))
        var reused = retried
        reused.report.text = "Something else entirely: the login page is slow"
        let requests: [Liaison_Intake_V1_SubmitReportRequest] = [
            submitRequest(globex), submitRequest(globex), submitRequest(globex),
            submitRequest(makeReport(customer: "nobody")),
            retried, retried, reused,
            submitRequest(makeReport(customer: "initech", agent: "agents/a2",
                                     text: "The mobile app crashes when opening an invoice")),
        ]
        var queued: [Task<Liaison_Intake_V1_SubmitReportResponse, any Error>] = []
        for (i, request) in requests.enumerated() {
            queued.append(Self.spawn(repo, request))
            // One at a time, so the queue keeps this order.
            try await eventually("entry \(i) to queue") { repo.submissions.load.queued == i + 1 }
        }
        XCTAssertEqual(repo.submissions.load.running, 1)
        try lock.release()

        let first = try await leader.value
        XCTAssertTrue(first.caseCreated)
        var results: [Result<Liaison_Intake_V1_SubmitReportResponse, any Error>] = []
        for t in queued { results.append(await t.result) }
        let shared = repo.submissions.sharedTransactions
        XCTAssertEqual(shared.transactions, 1)
        XCTAssertEqual(shared.submissions, requests.count)

        // globex: one case opened by the first, joined by the two others.
        let g = try results[0..<3].map { try $0.get() }
        XCTAssertEqual(Set(g.map(\.case.name)).count, 1)
        XCTAssertEqual(g.map(\.caseCreated), [true, false, false])
        XCTAssertEqual(g.map(\.duplicate), [false, true, true])
        XCTAssertEqual(g[1].report.duplicateAssessment.matchedReport, g[0].report.name)
        // The unknown customer, refused by name.
        guard case .failure(RepositoryError.notFound(_, let name)) = results[3] else {
            return XCTFail("expected NOT_FOUND, got \(results[3])")
        }
        XCTAssertEqual(name, "customers/nobody")
        // The retry replays the first answer; the reused id with other content is refused.
        let original = try results[4].get(), replay = try results[5].get()
        XCTAssertEqual(replay, original)
        guard case .failure(let reusedError) = results[6], reusedError is IdempotencyError else {
            return XCTFail("expected the reused request id to be refused, got \(results[6])")
        }
        let last = try results[7].get()
        XCTAssertEqual(last.report.customer, "customers/initech")

        // Stored: the leader's report, three globex reports, two initech reports; one event each.
        let accepted = [first] + g + [original, last]
        let stored = try await pool.query("SELECT id FROM reports ORDER BY id").rows.map { "reports/" + (try $0.decode(String.self, 0)) }
        XCTAssertEqual(stored, accepted.map(\.report.name).sorted())
        let events = try await pool.query(
            "SELECT count(*) FROM outbox WHERE topic = 'liaison.intake.v1.ReportAccepted'").first!.decode(Int.self, 0)
        XCTAssertEqual(events, accepted.count)
        // Each stored answer is the one its caller got (a later retry replays it).
        for response in accepted + [replay] {
            let stored = try await repo.getReport(id: ResourceName.reportId(response.report.name)!)
            XCTAssertEqual(stored?.name, response.report.name)
        }
        let again = try await Self.submit(repo, retried)
        XCTAssertEqual(again, original)
        await pool.close()
    }

    /// A submission cancelled while it waits in the queue leaves it with CancellationError and
    /// writes nothing; the one queued after it still runs.
    func testACancelledQueuedSubmissionWritesNothing() async throws {
        let (repo, pool, lock, leader) = try await startWithBusySlot()
        let cancelledRequest = submitRequest(makeReport(customer: "globex"))
        let cancelled = Self.spawn(repo, cancelledRequest)
        try await eventually("the submission to queue") { repo.submissions.load.queued == 1 }
        let kept = Self.spawn(repo, submitRequest(makeReport(customer: "initech")))
        try await eventually("the second submission to queue") { repo.submissions.load.queued == 2 }

        cancelled.cancel()
        let outcome = await cancelled.result
        guard case .failure(let error) = outcome, error is CancellationError else {
            return XCTFail("expected CancellationError, got \(outcome)")
        }
        // The handler answers it as CANCELLED (not as an internal error).
        XCTAssertEqual(IntakeHandler.apiError(error, logger: Logger(label: "test"), method: "SubmitReport").rpcErrorCode,
                       .cancelled)
        XCTAssertEqual(repo.submissions.load.queued, 1)
        try lock.release()
        _ = try await leader.value
        let k = try await kept.value
        XCTAssertEqual(k.report.customer, "customers/initech")

        let customers = try await pool.query("SELECT customer_id FROM reports ORDER BY customer_id").rows
            .map { try $0.decode(String.self, 0) }
        XCTAssertEqual(customers, ["acme", "initech"])
        // Nothing remembers the cancelled request id: submitting it now writes it once.
        let late = try await Self.submit(repo, cancelledRequest)
        XCTAssertTrue(late.caseCreated)
        XCTAssertEqual(repo.submissions.load.running, 0)
        await pool.close()
    }

    /// Issue 20: the queue is bounded. Past `maxQueuedSubmissions` a submission is refused at
    /// once with RESOURCE_EXHAUSTED and a retry hint, writes nothing, and the queued ones still
    /// commit.
    func testAFullQueueRefusesWithResourceExhaustedAndWritesNothing() async throws {
        let (repo, pool, lock, leader) = try await startWithBusySlot(maxQueued: 2)
        let queued = [Self.spawn(repo, submitRequest(makeReport(customer: "globex"))),
                      Self.spawn(repo, submitRequest(makeReport(customer: "initech")))]
        try await eventually("two submissions to queue") { repo.submissions.load.queued == 2 }
        let refusedRequest = submitRequest(makeReport(customer: "globex", text: "another problem entirely"))
        do {
            _ = try await Self.submit(repo, refusedRequest)
            XCTFail("a third queued submission was accepted")
        } catch {
            let status = IntakeHandler.apiError(error, logger: Logger(label: "test"), method: "SubmitReport")
            XCTAssertEqual(status.rpcErrorCode, .resourceExhausted)
            XCTAssertTrue(status.status.details.contains { $0.retryInfo != nil }, "\(status)")
        }
        try lock.release()
        _ = try await leader.value
        for q in queued { _ = try await q.value }
        let stored = try await pool.query("SELECT count(*) FROM reports").first!.decode(Int.self, 0)
        XCTAssertEqual(stored, 3, "the leader and the two queued; the refused one wrote nothing")
        let late = try await Self.submit(repo, refusedRequest)
        XCTAssertEqual(late.report.customer, "customers/globex")
        await pool.close()
    }
}
