import Foundation
import GRPCCore
import GRPCProtobuf
import Intake
import LiaisonAPI
import LiaisonRuntime
import SwiftProtobuf
import XCTest

/// Issue 20: out-of-range times and NUL characters from a client are refused at the API edge
/// with INVALID_ARGUMENT naming the field, write nothing, and leave the service serving. Before,
/// `source_update_time` and `customer_notify_time` of ±9.3e12 s trapped in the storage
/// conversion and took the process down.
final class HardeningTests: XCTestCase {
    func testExtremeTimesAndNULsAreRefusedAtTheEdgeAndWriteNothing() async throws {
        try await withIntake { client, pool in
            try await client.upsert([makeCustomer("acme")])
            let tables = ["reports", "cases", "case_history", "outbox", "idempotency_keys", "customers"]
            var before: [Int] = []
            for t in tables { before.append(try await count(pool, t)) }

            for seconds: Int64 in [9_300_000_000_000, -9_300_000_000_000, .max, .min, 253_402_300_800, -62_135_596_801] {
                var customer = makeCustomer("acme")
                customer.sourceUpdateTime = Google_Protobuf_Timestamp(seconds: seconds, nanos: 0)
                var batch = Liaison_Intake_V1_BatchUpsertCustomersRequest()
                batch.requestID = rid()
                batch.customers = [customer]
                let upsert = await expectStatus(.invalidArgument) { try await client.batchUpsertCustomers(batch) }
                XCTAssertEqual(upsert?.violatedFields, ["customers[0].source_update_time"], "\(seconds)")

                var report = makeReport(customer: "acme")
                report.receiveTime = Google_Protobuf_Timestamp(seconds: seconds, nanos: 0)
                let submit = await expectStatus(.invalidArgument) { try await client.submitReport(submitRequest(report)) }
                XCTAssertEqual(submit?.violatedFields, ["report.receive_time"], "\(seconds)")

                var close = Liaison_Intake_V1_CloseCaseRequest()
                close.name = "cases/whatever"
                close.outcome = .resolvedDirectly
                close.requestID = rid()
                close.customerNotifyTime = Google_Protobuf_Timestamp(seconds: seconds, nanos: 0)
                let closed = await expectStatus(.invalidArgument) { try await client.closeCase(close) }
                XCTAssertEqual(closed?.violatedFields, ["customer_notify_time"], "\(seconds)")
            }
            // Nanos out of range, and text with a NUL (which libpq would have cut short).
            var report = makeReport(customer: "acme")
            report.receiveTime = Google_Protobuf_Timestamp(seconds: Int64(Date().timeIntervalSince1970), nanos: -1)
            let nanos = await expectStatus(.invalidArgument) { try await client.submitReport(submitRequest(report)) }
            XCTAssertEqual(nanos?.violatedFields, ["report.receive_time"])
            report = makeReport(customer: "acme")
            report.text = "login fails\u{0}DROP"
            let nul = await expectStatus(.invalidArgument) { try await client.submitReport(submitRequest(report)) }
            XCTAssertEqual(nul?.violatedFields, ["report.text"])
            let nulID = await expectStatus(.invalidArgument) {
                try await client.submitReport(submitRequest(makeReport(customer: "acme"), id: "\u{0}"))
            }
            XCTAssertEqual(nulID?.violatedFields, ["request_id"])

            var after: [Int] = []
            for t in tables { after.append(try await count(pool, t)) }
            XCTAssertEqual(before, after, "a refused call changes nothing (\(tables))")
            // Still serving.
            _ = try await client.submitReport(submitRequest(makeReport(customer: "acme")))
        }
    }

    func testRequestBoundsNameNestedAndRepeatedFields() {
        var m = Liaison_Intake_V1_BatchUpsertCustomersRequest()
        var ok = makeCustomer("a")
        ok.sourceUpdateTime = Google_Protobuf_Timestamp(seconds: 1_800_000_000, nanos: 999_999_999)
        var bad = makeCustomer("b")
        bad.sourceUpdateTime = Google_Protobuf_Timestamp(seconds: 0, nanos: 1_000_000_000)
        bad.labels = ["k": "v\u{0}"]
        m.customers = [ok, bad]
        XCTAssertEqual(RequestBounds.violations(in: m).map(\.field), ["customers[1].source_update_time", "customers[1].labels[k]"])
        XCTAssertNil(RequestBounds.problem(Google_Protobuf_Duration(seconds: -5, nanos: -1)))
        XCTAssertNotNil(RequestBounds.problem(Google_Protobuf_Duration(seconds: 5, nanos: -1)))
        XCTAssertNotNil(RequestBounds.problem(Google_Protobuf_Duration(seconds: .max, nanos: 0)))
        XCTAssertNil(RequestBounds.problem(Google_Protobuf_Timestamp(seconds: RequestBounds.maxTimestampSeconds, nanos: 999_999_999)))
    }
}

/// Issue 20: GetCase and ListCases read a bounded number of reports per case (the first 1000, with
/// `report_count` the total) and GetCase no history, however large the case; before, both read
/// every report of the case (and GetCase its whole history) on every call.
final class CaseReadBoundTests: XCTestCase {
    func testLargeCasesListTheirFirstThousandReportsWithTheTotal() async throws {
        try await withIntake { client, pool in
            try await client.upsert([makeCustomer("acme")])
            let first = try await client.submitReport(submitRequest(makeReport(customer: "acme")))
            // 1,004 more reports of the same case, written directly (the API would take minutes).
            try await pool.query("""
                INSERT INTO reports
                SELECT (jsonb_populate_record(r, jsonb_build_object('id', r.id || '-' || g,
                        'receive_time', r.receive_time + g * interval '1 millisecond'))).*
                FROM reports r, generate_series(1, 1004) g
                """)
            var get = Liaison_Intake_V1_GetCaseRequest()
            get.name = first.report.case
            let got = try await client.getCase(get)
            XCTAssertEqual(got.reportCount, 1005)
            XCTAssertEqual(got.reports.count, 1000)
            XCTAssertEqual(got.reports.first, first.report.name, "oldest first")
            var list = Liaison_Intake_V1_ListCasesRequest()
            list.filter = "customer = \"customers/acme\""
            let listed = try await client.listCases(list).cases
            XCTAssertEqual(listed.map(\.reportCount), [1005])
            XCTAssertEqual(listed.first?.reports.count, 1000)
            // A small case lists all of its reports.
            try await client.upsert([makeCustomer("globex")])
            let small = try await client.submitReport(submitRequest(makeReport(customer: "globex")))
            get.name = small.report.case
            let one = try await client.getCase(get)
            XCTAssertEqual(one.reportCount, 1)
            XCTAssertEqual(one.reports, [small.report.name])
        }
    }
}
