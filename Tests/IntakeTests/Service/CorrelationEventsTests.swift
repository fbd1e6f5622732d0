// Correlation's events applied by intake (CorrelationEvents) through the real EventSinkService
// over the real transport, on a real PostgreSQL: Report.incidents and Case.incidents, replays,
// out-of-order delivery, the incidents filters, and resolution -> AWAITING_CUSTOMER_NOTICE.
import Foundation
import GRPCCore
import Intake
import LiaisonAPI
import LiaisonRPC
import LiaisonStorage
import LiaisonTestSupport
import SwiftProtobuf
import XCTest

/// Builds correlation's events as correlation publishes them.
struct CorrelationEventFactory {
    /// `incidents/{uuid}`.
    static func newIncident() -> String { "incidents/" + UUID().uuidString.lowercased() }

    /// A link of `report` to `incident`; `version` is correlation's row version (etag `W/"n"`,
    /// empty for a link created by the same call, i.e. version 1).
    static func link(_ incident: String, report: String, linkID: String, version: Int64, state: Liaison_Correlation_V1_Link.State,
                     updateTime: Date = Date()) -> Liaison_Correlation_V1_Link {
        var l = Liaison_Correlation_V1_Link()
        l.name = "\(incident)/links/\(linkID)"
        l.report = report
        l.state = state
        l.origin = .manual
        l.score = 1
        l.updateTime = Google_Protobuf_Timestamp(date: updateTime)
        l.etag = version == 1 ? "" : "W/\"\(version)\""
        return l
    }

    static func header(aggregate: String, version: Int64) -> Liaison_Common_V1_EventHeader {
        var h = Liaison_Common_V1_EventHeader()
        h.eventID = UUID().uuidString.lowercased()
        h.occurTime = Google_Protobuf_Timestamp(date: Date())
        h.aggregate = aggregate
        h.aggregateVersion = version
        h.producer = "correlation"
        return h
    }

    static func envelope<M: SwiftProtobuf.Message>(_ message: M, id: UUID = UUID()) throws -> Liaison_Events_V1_EventEnvelope {
        var e = Liaison_Events_V1_EventEnvelope()
        e.eventID = id.uuidString.lowercased()
        e.producer = "correlation"
        e.payload = try Google_Protobuf_Any(message: message)
        return e
    }

    static func linked(_ link: Liaison_Correlation_V1_Link, id: UUID = UUID()) throws -> Liaison_Events_V1_EventEnvelope {
        var e = Liaison_Correlation_V1_ReportLinked()
        e.header = header(aggregate: String(link.name.split(separator: "/").prefix(2).joined(separator: "/")), version: 0)
        e.link = link
        e.services = ["services/checkout"]
        return try envelope(e, id: id)
    }

    static func unlinked(_ link: Liaison_Correlation_V1_Link, id: UUID = UUID()) throws -> Liaison_Events_V1_EventEnvelope {
        var e = Liaison_Correlation_V1_ReportUnlinked()
        e.header = header(aggregate: String(link.name.split(separator: "/").prefix(2).joined(separator: "/")), version: 0)
        e.link = link
        return try envelope(e, id: id)
    }

    static func statusChanged(_ incident: String, to state: Liaison_Correlation_V1_IncidentState,
                              from previous: Liaison_Correlation_V1_IncidentState, version: Int64,
                              updateTime: Date = Date()) throws -> Liaison_Events_V1_EventEnvelope {
        var e = Liaison_Correlation_V1_IncidentStatusChanged()
        e.header = header(aggregate: incident, version: version)
        e.incident.name = incident
        e.incident.title = "Checkout errors"
        e.incident.state = state
        e.incident.updateTime = Google_Protobuf_Timestamp(date: updateTime)
        if state == .resolved { e.incident.resolveTime = e.incident.updateTime }
        e.previousState = previous
        return try envelope(e)
    }
}

extension EventSinkClient {
    /// Delivers envelopes in one call; returns (applied, duplicates).
    @discardableResult
    func deliver(_ envelopes: [Liaison_Events_V1_EventEnvelope]) async throws -> (Int, Int) {
        var request = Liaison_Events_V1_DeliverEventsRequest()
        request.events = envelopes
        let r = try await deliverEvents(request)
        return (Int(r.applied), Int(r.duplicates))
    }
}

extension IntakeClient {
    func report(_ name: String) async throws -> Liaison_Intake_V1_Report {
        var r = Liaison_Intake_V1_GetReportRequest()
        r.name = name
        return try await getReport(r)
    }

    func caseNamed(_ name: String) async throws -> Liaison_Intake_V1_Case {
        var r = Liaison_Intake_V1_GetCaseRequest()
        r.name = name
        return try await getCase(r)
    }

    func reports(filter: String) async throws -> [String] {
        var r = Liaison_Intake_V1_ListReportsRequest()
        r.filter = filter
        r.pageSize = 100
        return try await listReports(r).reports.map(\.name)
    }

    func cases(filter: String) async throws -> [String] {
        var r = Liaison_Intake_V1_ListCasesRequest()
        r.filter = filter
        r.pageSize = 100
        return try await listCases(r).cases.map(\.name)
    }

    func history(_ name: String) async throws -> [Liaison_Intake_V1_CaseHistoryEntry] {
        var r = Liaison_Intake_V1_ListCaseHistoryRequest()
        r.name = name
        r.pageSize = 100
        return try await listCaseHistory(r).entries
    }
}

/// XCTAssertEqual for an async actual value.
func assertEqual<T: Equatable>(_ actual: @autoclosure () async throws -> T, _ expected: T, _ message: String = "",
                               file: StaticString = #filePath, line: UInt = #line) async throws {
    let value = try await actual()
    XCTAssertEqual(value, expected, message, file: file, line: line)
}

final class CorrelationEventsTests: XCTestCase {
    typealias F = CorrelationEventFactory

    /// Two reports of one case (same help-desk ticket) and one report of another customer.
    func seed(_ client: IntakeClient) async throws
        -> (r1: Liaison_Intake_V1_Report, r2: Liaison_Intake_V1_Report, case: String, other: Liaison_Intake_V1_SubmitReportResponse)
    {
        try await client.upsert([makeCustomer("acme"), makeCustomer("globex")])
        let a = try await client.submitReport(submitRequest(makeReport(customer: "acme", ticket: "T-1")))
        let b = try await client.submitReport(submitRequest(makeReport(
            customer: "acme", agent: "agents/a2", text: "Still cannot pay at checkout", ticket: "T-1")))
        XCTAssertEqual(a.case.name, b.case.name, "same ticket, same case")
        let other = try await client.submitReport(submitRequest(makeReport(customer: "globex")))
        return (a.report, b.report, a.case.name, other)
    }

    func testLinkAndUnlinkMaintainReportAndCaseIncidentsOnceAndTheFiltersFindThem() async throws {
        try await withIntakeAndSink { client, sink, pool in
            let (r1, r2, caseName, other) = try await seed(client)
            let incident = F.newIncident(), unrelated = F.newIncident()
            let caseBefore = try await client.caseNamed(caseName)

            // ReportLinked: the report and its case gain the incident; times and etag move.
            let l1 = F.link(incident, report: r1.name, linkID: UUID().uuidString.lowercased(), version: 1, state: .confirmed)
            let linkedID = UUID()
            let linked = try F.linked(l1, id: linkedID)
            var (applied, duplicates) = try await sink.deliver([linked])
            XCTAssertEqual(applied, 1)
            XCTAssertEqual(duplicates, 0)
            let report1 = try await client.report(r1.name)
            XCTAssertEqual(report1.incidents, [incident])
            XCTAssertGreaterThan(report1.updateTime.date, r1.updateTime.date)
            let caseLinked = try await client.caseNamed(caseName)
            XCTAssertEqual(caseLinked.incidents, [incident])
            XCTAssertNotEqual(caseLinked.etag, caseBefore.etag)
            XCTAssertGreaterThan(caseLinked.updateTime.date, caseBefore.updateTime.date)
            XCTAssertEqual(caseLinked.state, .open)
            try await assertEqual(await client.report(r2.name).incidents, [], "only the linked report")

            // The same event again is a duplicate; the same link under a new event id changes nothing.
            (applied, duplicates) = try await sink.deliver([linked])
            XCTAssertEqual(applied, 0)
            XCTAssertEqual(duplicates, 1)
            (applied, _) = try await sink.deliver([try F.linked(l1)])
            XCTAssertEqual(applied, 1)
            let replayedReport = try await client.report(r1.name)
            XCTAssertEqual(replayedReport, report1)
            let replayedCase = try await client.caseNamed(caseName)
            XCTAssertEqual(replayedCase, caseLinked)
            let linkedHistory = try await client.history(caseName)
            XCTAssertEqual(linkedHistory.map(\.action), [.opened, .reportAdded])

            // The filters.
            var found = try await client.reports(filter: "incidents:\"\(incident)\"")
            XCTAssertEqual(found, [r1.name])
            found = try await client.reports(filter: "incidents:\"\(unrelated)\"")
            XCTAssertEqual(found, [])
            found = try await client.reports(filter: "incidents:\"\(incident)\" AND customer = \"customers/acme\"")
            XCTAssertEqual(found, [r1.name])
            found = try await client.cases(filter: "incidents:\"\(incident)\"")
            XCTAssertEqual(found, [caseName])
            found = try await client.cases(filter: "incidents:\"\(incident)\" AND state=\"OPEN\"")
            XCTAssertEqual(found, [caseName])
            found = try await client.cases(filter: "incidents:\"\(incident)\" AND state=\"CLOSED\"")
            XCTAssertEqual(found, [])
            found = try await client.cases(filter: "incidents:\"\(unrelated)\"")
            XCTAssertEqual(found, [])

            // The second report of the case is linked too.
            let l2 = F.link(incident, report: r2.name, linkID: UUID().uuidString.lowercased(), version: 1, state: .confirmed)
            try await sink.deliver([try F.linked(l2)])
            found = try await client.reports(filter: "incidents:\"\(incident)\"")
            XCTAssertEqual(Set(found), [r1.name, r2.name])
            let caseBothLinked = try await client.caseNamed(caseName)
            XCTAssertEqual(caseBothLinked, caseLinked, "the case already had the incident")

            // Unlinking one of the two reports: the report loses it, the case keeps it.
            var u1 = l1
            u1.state = .unlinked
            u1.etag = "W/\"2\""
            u1.updateTime = Google_Protobuf_Timestamp(date: Date())
            try await sink.deliver([try F.unlinked(u1)])
            try await assertEqual(await client.report(r1.name).incidents, [])
            let caseStill = try await client.caseNamed(caseName)
            XCTAssertEqual(caseStill.incidents, [incident])
            XCTAssertEqual(caseStill, caseBothLinked, "case unchanged")
            found = try await client.reports(filter: "incidents:\"\(incident)\"")
            XCTAssertEqual(found, [r2.name])
            found = try await client.cases(filter: "incidents:\"\(incident)\"")
            XCTAssertEqual(found, [caseName])

            // Unlinking the last one: the case loses it too.
            var u2 = l2
            u2.state = .unlinked
            u2.etag = "W/\"2\""
            try await sink.deliver([try F.unlinked(u2)])
            try await assertEqual(await client.report(r2.name).incidents, [])
            let caseUnlinked = try await client.caseNamed(caseName)
            XCTAssertEqual(caseUnlinked.incidents, [])
            XCTAssertNotEqual(caseUnlinked.etag, caseStill.etag)
            found = try await client.cases(filter: "incidents:\"\(incident)\"")
            XCTAssertEqual(found, [])
            found = try await client.reports(filter: "incidents:\"\(incident)\"")
            XCTAssertEqual(found, [])

            // No status-history entry for link changes (the contract has no such action).
            try await assertEqual(await client.history(caseName).count, linkedHistory.count)
            try await assertEqual(await count(pool, "report_links"), 2)
        }
    }

    func testOutOfOrderLinkEventsKeepTheNewestLinkState() async throws {
        try await withIntakeAndSink { client, sink, pool in
            let (r1, _, caseName, _) = try await seed(client)
            let incident = F.newIncident()
            let linkID = UUID().uuidString.lowercased()
            let t0 = Date().addingTimeInterval(-10)
            let v1 = F.link(incident, report: r1.name, linkID: linkID, version: 1, state: .confirmed, updateTime: t0)
            let v2 = F.link(incident, report: r1.name, linkID: linkID, version: 2, state: .unlinked,
                            updateTime: t0.addingTimeInterval(1))
            let v3 = F.link(incident, report: r1.name, linkID: linkID, version: 3, state: .confirmed,
                            updateTime: t0.addingTimeInterval(2))
            let before = try await client.caseNamed(caseName)

            // The unlink (v2) arrives before the link (v1): the late link changes nothing.
            try await sink.deliver([try F.unlinked(v2)])
            try await assertEqual(await client.report(r1.name).incidents, [])
            try await sink.deliver([try F.linked(v1)])
            try await assertEqual(await client.report(r1.name).incidents, [])
            try await assertEqual(await client.caseNamed(caseName), before, "case untouched")

            // A relink (v3) applies; a late copy of the unlink (v2, new event id) does not undo it.
            try await sink.deliver([try F.linked(v3)])
            try await assertEqual(await client.report(r1.name).incidents, [incident])
            try await assertEqual(await client.caseNamed(caseName).incidents, [incident])
            try await sink.deliver([try F.unlinked(v2), try F.linked(v1)])
            try await assertEqual(await client.report(r1.name).incidents, [incident])
            try await assertEqual(await client.caseNamed(caseName).incidents, [incident])

            // Without a parseable version the update time orders the events.
            var timed = v3
            timed.etag = "opaque"
            timed.state = .unlinked
            timed.updateTime = Google_Protobuf_Timestamp(date: t0.addingTimeInterval(1.5))
            let storedVersion = try await pool.query(
                "SELECT link_version FROM report_links WHERE incident = $1", [incident]).first!.decode(Int64.self, 0)
            XCTAssertEqual(storedVersion, 3)
            try await sink.deliver([try F.unlinked(timed)])
            try await assertEqual(await client.report(r1.name).incidents, [incident], "older by update time")
            timed.updateTime = Google_Protobuf_Timestamp(date: t0.addingTimeInterval(5))
            try await sink.deliver([try F.unlinked(timed)])
            try await assertEqual(await client.report(r1.name).incidents, [])
            try await assertEqual(await client.caseNamed(caseName).incidents, [])

            // A link for a report intake does not have is recorded and acknowledged, not refused.
            let ghost = F.link(incident, report: "reports/\(UUID().uuidString.lowercased())", linkID: UUID().uuidString.lowercased(),
                               version: 1, state: .confirmed)
            let (applied, _) = try await sink.deliver([try F.linked(ghost)])
            XCTAssertEqual(applied, 1)
        }
    }

    func testResolvedIncidentMakesLinkedOpenCasesWaitForCustomerNotice() async throws {
        try await withIntakeAndSink(settings: { $0.caseEventDestinations = ["followup"] }) { client, sink, pool in
            let (r1, _, caseName, other) = try await seed(client)
            let incident = F.newIncident()
            try await sink.deliver([
                try F.linked(F.link(incident, report: r1.name, linkID: UUID().uuidString.lowercased(), version: 1, state: .confirmed)),
                try F.statusChanged(incident, to: .acknowledged, from: .declared, version: 2),
            ])
            try await assertEqual(await client.caseNamed(caseName).state, .open, "not resolved yet")
            let open = try await client.caseNamed(caseName)

            // Resolution: the OPEN linked case waits for the customer notice, with history and event.
            let resolvedAt = Date()
            try await sink.deliver([try F.statusChanged(incident, to: .resolved, from: .acknowledged, version: 3, updateTime: resolvedAt)])
            let waiting = try await client.caseNamed(caseName)
            XCTAssertEqual(waiting.state, .awaitingCustomerNotice)
            XCTAssertNotEqual(waiting.etag, open.etag)
            let last = try await client.history(caseName).last!
            XCTAssertEqual(last.action, .awaitingCustomerNotice)
            XCTAssertEqual(last.related, [incident])
            XCTAssertEqual(last.actor, "services/correlation")
            let queued = try await pool.query(
                "SELECT payload FROM outbox WHERE topic = $1 AND destination = 'followup'",
                [Liaison_Intake_V1_CaseAwaitingCustomerNotice.protoMessageName]).rows
            XCTAssertEqual(queued.count, 1)
            let event = try Liaison_Intake_V1_CaseAwaitingCustomerNotice(serializedBytes: try queued[0].decode(ByteA.self, 0).bytes)
            XCTAssertEqual(event.incident, incident)
            XCTAssertEqual(event.case.name, caseName)
            try await assertEqual(await client.caseNamed(other.case.name).state, .open, "unlinked cases are untouched")

            // A late, older status change and a repeated resolution change nothing.
            try await sink.deliver([
                try F.statusChanged(incident, to: .acknowledged, from: .declared, version: 2),
                try F.statusChanged(incident, to: .resolved, from: .acknowledged, version: 3, updateTime: resolvedAt),
            ])
            try await assertEqual(await client.caseNamed(caseName), waiting)
            let storedState = try await pool.query(
                "SELECT state FROM incident_states WHERE incident = $1", [incident]).first!.decode(Int.self, 0)
            XCTAssertEqual(storedState, Liaison_Correlation_V1_IncidentState.resolved.rawValue)

            // CloseCase without a customer notice keeps waiting (outcome recorded); with one it closes.
            var close = Liaison_Intake_V1_CloseCaseRequest()
            close.name = caseName
            close.outcome = .resolvedByIncident
            close.requestID = rid()
            let stillWaiting = try await client.closeCase(close)
            XCTAssertEqual(stillWaiting.state, .awaitingCustomerNotice)
            XCTAssertEqual(stillWaiting.outcome, .resolvedByIncident)
            close.requestID = rid()
            close.customerNotifyTime = Google_Protobuf_Timestamp(date: Date())
            let closed = try await client.closeCase(close)
            XCTAssertEqual(closed.state, .closed)

            // The resolution reached intake before the link (out of order): the link makes the
            // OPEN case wait as well.
            let earlier = F.newIncident()
            try await sink.deliver([try F.statusChanged(earlier, to: .resolved, from: .mitigated, version: 4)])
            try await sink.deliver([
                try F.linked(F.link(earlier, report: other.report.name, linkID: UUID().uuidString.lowercased(), version: 1,
                                    state: .confirmed)),
            ])
            let otherCase = try await client.caseNamed(other.case.name)
            XCTAssertEqual(otherCase.state, .awaitingCustomerNotice)
            XCTAssertEqual(otherCase.incidents, [earlier])

            // A case linked to an unresolved incident closes directly.
            let globex2 = try await client.submitReport(submitRequest(makeReport(
                customer: "globex", text: "Invoices PDF export is blank", ticket: "T-9")))
            let open2 = F.newIncident()
            try await sink.deliver([
                try F.linked(F.link(open2, report: globex2.report.name, linkID: UUID().uuidString.lowercased(), version: 1,
                                    state: .confirmed)),
            ])
            var close2 = Liaison_Intake_V1_CloseCaseRequest()
            close2.name = globex2.case.name
            close2.outcome = .resolvedDirectly
            close2.requestID = rid()
            try await assertEqual(await client.closeCase(close2).state, .closed)
        }
    }

    func testSplitAndMergeKeepEachCaseToTheIncidentsOfItsReports() async throws {
        try await withIntakeAndSink { client, sink, _ in
            let (r1, r2, caseName, _) = try await seed(client)
            let i1 = F.newIncident(), i2 = F.newIncident()
            try await sink.deliver([
                try F.linked(F.link(i1, report: r1.name, linkID: UUID().uuidString.lowercased(), version: 1, state: .confirmed)),
                try F.linked(F.link(i2, report: r2.name, linkID: UUID().uuidString.lowercased(), version: 1, state: .confirmed)),
            ])
            try await assertEqual(await client.caseNamed(caseName).incidents, [i1, i2])

            // r2 moves to a new case, with its incident; the original keeps only r1's.
            var split = Liaison_Intake_V1_SplitCaseRequest()
            split.name = caseName
            split.reports = [r2.name]
            split.requestID = rid()
            let parts = try await client.splitCase(split)
            XCTAssertEqual(parts.originalCase.incidents, [i1])
            XCTAssertEqual(parts.newCase.incidents, [i2])
            var found = try await client.cases(filter: "incidents:\"\(i2)\"")
            XCTAssertEqual(found, [parts.newCase.name])

            // Unlinking r2 now empties the new case, not the original.
            var u2 = F.link(i2, report: r2.name, linkID: "x", version: 2, state: .unlinked)
            u2.name = "\(i2)/links/\(UUID().uuidString.lowercased())"
            try await sink.deliver([try F.unlinked(u2)])
            try await assertEqual(await client.caseNamed(parts.newCase.name).incidents, [])
            try await assertEqual(await client.caseNamed(caseName).incidents, [i1])

            // Merging back unions the incidents.
            try await sink.deliver([
                try F.linked(F.link(i2, report: r2.name, linkID: "y", version: 3, state: .confirmed)),
            ])
            var merge = Liaison_Intake_V1_MergeCasesRequest()
            merge.name = caseName
            merge.sourceCases = [parts.newCase.name]
            merge.requestID = rid()
            let merged = try await client.mergeCases(merge)
            XCTAssertEqual(merged.incidents, [i1, i2])
            // (The MERGED case keeps the incidents it had, as CaseRules.merge leaves them.)
            found = try await client.cases(filter: "incidents:\"\(i2)\" AND state=\"OPEN\"")
            XCTAssertEqual(found, [caseName])
        }
    }

    func testEventsIntakeDoesNotKeepAreAcknowledgedAndUnknownTypesRefused() async throws {
        try await withIntakeAndSink { _, sink, pool in
            var upserted = Liaison_Correlation_V1_ServiceUpserted()
            upserted.header = F.header(aggregate: "services/checkout", version: 1)
            upserted.service.name = "services/checkout"
            var blast = Liaison_Correlation_V1_BlastRadiusChanged()
            blast.header = F.header(aggregate: "incidents/x", version: 1)
            blast.incident = F.newIncident()
            var raised = Liaison_Correlation_V1_EmergingIssueRaised()
            raised.header = F.header(aggregate: "emergingIssues/x", version: 1)
            let (applied, _) = try await sink.deliver([try F.envelope(upserted), try F.envelope(blast), try F.envelope(raised)])
            XCTAssertEqual(applied, 3)
            try await assertEqual(await count(pool, "inbox"), 3)
            // A type intake has no applier for is rejected on its own, with its reason, as the
            // EventSink does for any consumer (the producer dead-letters it), and changes nothing.
            var customer = Liaison_Intake_V1_CustomerUpserted()
            customer.header = F.header(aggregate: "customers/acme", version: 1)
            var request = Liaison_Events_V1_DeliverEventsRequest()
            request.events = [try F.envelope(customer)]
            let response = try await sink.deliverEvents(request)
            XCTAssertEqual(response.outcomes.map(\.kind), [.rejected])
            XCTAssertEqual(response.outcomes.first?.reason, "intake does not consume liaison.intake.v1.CustomerUpserted")
            try await assertEqual(await count(pool, "inbox"), 3)
        }
    }
}
