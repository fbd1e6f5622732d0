import Foundation
import LiaisonAPI
import SwiftProtobuf
import XCTest
@testable import Intake
@testable import IntakeDomain

final class MappingTests: XCTestCase {
    /// A message encoded with an already-encoded field appended decodes to the message with that
    /// field set, for the two messages intake builds this way, with fields before and after it
    /// and a field long enough for a multi-byte length.
    /// A batch result whose answer is set from its recorded bytes reaches the client as the
    /// result with `response` set (field 2), its other fields and unknown fields intact.
    func testSettingAnEncodedFieldSendsTheFieldSet() throws {
        var answer = Liaison_Intake_V1_SubmitReportResponse()
        answer.report.name = "reports/r1"
        answer.report.text = String(repeating: "checkout fails with 503 ", count: 40)
        answer.case.name = "cases/k1"
        answer.caseCreated = true
        var result = Liaison_Intake_V1_SubmitReportResult()
        result.index = 7
        result.status.code = 0
        result.status.message = "ok"
        try setEncodedField(2, try answer.serializedBytes(), in: &result)
        XCTAssertFalse(result.hasResponse, "unset in this process")
        var batch = Liaison_Intake_V1_BatchSubmitReportsResponse()
        batch.results = [result, result]
        let received = try Liaison_Intake_V1_BatchSubmitReportsResponse(serializedBytes: try batch.serializedBytes() as [UInt8])
        XCTAssertEqual(received.results.count, 2)
        for r in received.results {
            XCTAssertEqual(r.response, answer)
            XCTAssertEqual(r.index, 7)
            XCTAssertEqual(r.status.message, "ok")
            XCTAssertTrue(r.unknownFields.data.isEmpty)
        }
        // Unknown fields already on the message stay.
        var withUnknown = try Liaison_Intake_V1_SubmitReportResult(serializedBytes: [0xF8, 0x07, 0x01] as [UInt8])  // field 127
        try setEncodedField(2, try answer.serializedBytes(), in: &withUnknown)
        let decoded = try Liaison_Intake_V1_SubmitReportResult(serializedBytes: try withUnknown.serializedBytes() as [UInt8])
        XCTAssertEqual(decoded.response, answer)
        XCTAssertEqual([UInt8](decoded.unknownFields.data), [0xF8, 0x07, 0x01])
    }

    func testAppendingAnEncodedFieldDecodesAsTheFieldSet() throws {
        var report = Liaison_Intake_V1_Report()
        report.name = "reports/r1"
        report.customer = "customers/acme"
        report.text = String(repeating: "checkout fails with 503 ", count: 40)
        report.customerSnapshot.region = "eu-south"
        report.duplicateAssessment.similarity = 0.87
        let reportBytes = try deterministicBytes(report)
        XCTAssertGreaterThan(reportBytes.count, 128)

        var accepted = Liaison_Intake_V1_ReportAccepted()
        accepted.header.eventID = "e1"
        accepted.customerSnapshot = report.customerSnapshot
        accepted.duplicate = true
        var expectedEvent = accepted
        expectedEvent.report = report
        XCTAssertEqual(try Liaison_Intake_V1_ReportAccepted(serializedBytes: try deterministicBytes(accepted, appendingField: 2, reportBytes)),
                       expectedEvent)

        var response = Liaison_Intake_V1_SubmitReportResponse()
        response.case.name = "cases/c1"
        response.caseCreated = true
        var expectedResponse = response
        expectedResponse.report = report
        XCTAssertEqual(try Liaison_Intake_V1_SubmitReportResponse(
            serializedBytes: try deterministicBytes(response, appendingField: 1, reportBytes)), expectedResponse)
        // An empty field still appears (as an empty message), as a set field would.
        XCTAssertTrue(try Liaison_Intake_V1_SubmitReportResponse(
            serializedBytes: try deterministicBytes(response, appendingField: 1, [])).hasReport)
    }
}
