import Foundation
import LiaisonAPI
import SwiftProtobuf
import XCTest
@testable import Intake

final class MappingTests: XCTestCase {
    /// A message encoded with an already-encoded field appended decodes to the message with that
    /// field set, for the two messages intake builds this way, with fields before and after it
    /// and a field long enough for a multi-byte length.
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
