import Foundation
@testable import Intake
import LiaisonAPI
import LiaisonStorage
import LiaisonTestSupport
import XCTest

/// Issue 22: a customer's report is never refused for the state of their case. The duplicate's
/// case was OPEN when the report was matched to it and left OPEN before the report could join it
/// (its incident resolved): the report opens a new case instead of FAILED_PRECONDITION.
final class CaseStateRaceTests: XCTestCase {
    func testAReportWhoseCaseLeftOpenWhileItWasMatchedOpensANewCase() async throws {
        try await withIntake { client, pool in
            try await client.upsert([makeCustomer("acme")])
            let first = try await client.submitReport(submitRequest(makeReport(customer: "acme", text: "Checkout fails with an error at payment")))
            let caseID = String(first.report.case.dropFirst("cases/".count))
            // Another transaction moves the case out of OPEN and holds it until the report waits for it.
            let database = try await pool.query("SELECT current_database()").first!.decode(String.self, 0)
            let admin = TestPostgres.shared.adminURL
            let connection = try PostgresConnection(url: String(admin[..<admin.lastIndex(of: "/")!]) + "/" + database)
            try connection.query("BEGIN")
            try connection.query("UPDATE cases SET state = 'AWAITING_CUSTOMER_NOTICE' WHERE id = $1", [caseID])
            let second = Task { try await client.submitReport(submitRequest(makeReport(customer: "acme", agent: "agents/a2",
                                                                                       text: "Checkout fails with an error at payment"))) }
            var waited = false
            for _ in 0..<500 {
                if try await pool.query("SELECT count(*) FROM pg_locks WHERE NOT granted").first!.decode(Int.self, 0) > 0 { waited = true; break }
                try await Task.sleep(for: .milliseconds(10))
            }
            XCTAssertTrue(waited, "the second report waits for the case's lock")
            try connection.query("COMMIT")
            let answer = try await second.value
            XCTAssertTrue(answer.report.duplicateAssessment.duplicate, "still recognised as a duplicate of the first report")
            XCTAssertNotEqual(answer.report.case, first.report.case, "the case left OPEN: the report opens a new case")
            let open = try await pool.query("SELECT count(*) FROM cases WHERE customer_id = 'acme' AND state = 'OPEN'").first!.decode(Int.self, 0)
            XCTAssertEqual(open, 1)
        }
    }
}
