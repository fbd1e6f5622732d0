import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import SwiftProtobuf
import XCTest

@testable import Correlation
@testable import CorrelationDomain

/// The correlation service over real PostgreSQL and real gRPC (127.0.0.1).
final class ServiceTests: XCTestCase {
    func testIncidentLifecycleStateMachineEtagsAndRequestIDs() async throws {
        let stack = try await CorrelationStack()
        let api = stack.correlation
        _ = try await stack.createService("checkout", aliases: ["payments", "Pay"])
        // Aliases are unique across the catalogue.
        await XCTAssertRPCError(.alreadyExists, try await stack.createService("billing", aliases: ["PAYMENTS"]))
        var get = Liaison_Correlation_V1_GetServiceRequest()
        get.name = "services/pay"
        do { let v = try await api.getService(get).name; XCTAssertEqual(v, "services/checkout") }

        // Validation and unknown services.
        await XCTAssertRPCError(.invalidArgument, try await stack.declare("", services: ["services/checkout"]))
        await XCTAssertRPCError(.notFound, try await stack.declare("x", services: ["services/nope"]))

        // Declare; a retry with the same request_id returns the same incident; the same external
        // reference under another request_id is ALREADY_EXISTS naming the incident.
        let requestID = UUID().uuidString
        let incident = try await stack.declare("Checkout errors", services: ["services/checkout"], external: "P-1", requestID: requestID)
        XCTAssertEqual(incident.state, .declared)
        let replay = try await stack.declare("Checkout errors", services: ["services/checkout"], external: "P-1", requestID: requestID)
        XCTAssertEqual(replay.name, incident.name)
        let dup = await XCTAssertRPCError(.alreadyExists, try await stack.declare("again", services: ["services/checkout"], external: "P-1"))
        XCTAssertTrue(dup?.message.contains(incident.name) ?? false)

        // Acknowledge with a stale etag -> ABORTED; then for real; twice -> FAILED_PRECONDITION.
        var ack = Liaison_Correlation_V1_AcknowledgeIncidentRequest()
        ack.name = incident.name
        ack.etag = "W/\"99\""
        ack.requestID = UUID().uuidString
        await XCTAssertRPCError(.aborted, try await api.acknowledgeIncident(ack))
        ack.etag = incident.etag
        ack.requestID = UUID().uuidString
        let acked = try await api.acknowledgeIncident(ack)
        let ackRequestID = ack.requestID
        XCTAssertEqual(acked.state, .acknowledged)
        XCTAssertNotEqual(acked.etag, incident.etag)
        ack.etag = ""
        ack.requestID = UUID().uuidString
        await XCTAssertRPCError(.failedPrecondition, try await api.acknowledgeIncident(ack))

        // Postmortem before resolution -> FAILED_PRECONDITION; reopen an open incident -> FAILED_PRECONDITION.
        var pm = Liaison_Correlation_V1_AttachPostmortemRequest()
        pm.name = incident.name
        pm.postmortem.uri = "https://wiki/pm/1"
        pm.postmortem.summary = "a bad deploy"
        pm.requestID = UUID().uuidString
        await XCTAssertRPCError(.failedPrecondition, try await api.attachPostmortem(pm))
        var reopen = Liaison_Correlation_V1_ReopenIncidentRequest()
        reopen.name = incident.name
        reopen.reason = "again"
        reopen.requestID = UUID().uuidString
        await XCTAssertRPCError(.failedPrecondition, try await api.reopenIncident(reopen))

        // Mitigate, resolve, resolve again (FAILED_PRECONDITION), postmortem, reopen.
        var mitigate = Liaison_Correlation_V1_MitigateIncidentRequest()
        mitigate.name = incident.name
        mitigate.requestID = UUID().uuidString
        await XCTAssertRPCError(.invalidArgument, try await api.mitigateIncident(mitigate))
        mitigate.mitigation.description_p = "failover eu-south to eu-central"
        let mitigated = try await api.mitigateIncident(mitigate)
        XCTAssertEqual(mitigated.state, .mitigated)
        XCTAssertEqual(mitigated.mitigations.count, 1)
        var resolve = Liaison_Correlation_V1_ResolveIncidentRequest()
        resolve.name = incident.name
        resolve.requestID = UUID().uuidString
        let resolved = try await api.resolveIncident(resolve)
        XCTAssertEqual(resolved.state, .resolved)
        XCTAssertTrue(resolved.hasResolveTime)
        // The same request_id replays the stored answer; a new one fails.
        do { let v = try await api.resolveIncident(resolve).etag; XCTAssertEqual(v, resolved.etag) }
        resolve.requestID = UUID().uuidString
        await XCTAssertRPCError(.failedPrecondition, try await api.resolveIncident(resolve))
        pm.requestID = UUID().uuidString
        do { let v = try await api.attachPostmortem(pm).postmortem.summary; XCTAssertEqual(v, "a bad deploy") }
        reopen.requestID = UUID().uuidString
        let reopened = try await api.reopenIncident(reopen)
        XCTAssertEqual(reopened.state, .acknowledged)
        XCTAssertFalse(reopened.hasResolveTime)

        // A request_id reused for a different request (same method) is refused.
        var other = Liaison_Correlation_V1_AcknowledgeIncidentRequest()
        other.name = incident.name
        other.actor = "someone else"
        other.requestID = ackRequestID
        await XCTAssertRPCError(.alreadyExists, try await api.acknowledgeIncident(other))

        // Lists: newest first, keyset paging, state filter.
        _ = try await stack.declare("Second", services: ["services/checkout"])
        var list = Liaison_Correlation_V1_ListIncidentsRequest()
        list.pageSize = 1
        let page1 = try await api.listIncidents(list)
        XCTAssertEqual(page1.incidents.map(\.title), ["Second"])
        list.pageToken = page1.nextPageToken
        let page2 = try await api.listIncidents(list)
        XCTAssertEqual(page2.incidents.map(\.title), ["Checkout errors"])
        XCTAssertEqual(page2.nextPageToken, "")
        list = .init()
        list.filter = #"state = "DECLARED""#
        do { let v = try await api.listIncidents(list).incidents.map(\.title); XCTAssertEqual(v, ["Second"]) }

        // Deleting a service referenced by an unresolved incident is refused.
        var del = Liaison_Correlation_V1_DeleteServiceRequest()
        del.name = "services/checkout"
        del.requestID = UUID().uuidString
        await XCTAssertRPCError(.failedPrecondition, try await api.deleteService(del))
        await stack.shutdown()
    }

    func testPopulationBaselineFollowsCustomerEventsAppliedOnce() async throws {
        let stack = try await CorrelationStack()
        var a = CorrelationStack.attributes(0, region: "eu-south")
        a.country = "IT"
        let first = UUID()
        let e1 = try CorrelationStack.customerEvent("c1", a, version: 1, eventID: first)
        let (applied, _) = try await stack.deliver([e1, try CorrelationStack.customerEvent("c2", a, version: 1)])
        XCTAssertEqual(applied, 2)
        func count(_ key: String) async throws -> Int {
            try await stack.pool.query("SELECT coalesce(sum(count), 0)::bigint FROM population WHERE key = $1", [key]).first!.decode(Int.self, 0)
        }
        var total = try await count("")
        XCTAssertEqual(total, 2)
        do { let v = try await count("region=eu-south"); XCTAssertEqual(v, 2) }
        do { let v = try await count("region=eu-south&country=IT"); XCTAssertEqual(v, 2) }

        // c1 moves to eu-north: old keys subtracted, new ones added.
        var moved = a
        moved.region = "eu-north"
        moved.country = "SE"
        try await stack.deliver([try CorrelationStack.customerEvent("c1", moved, version: 2)])
        do { let v = try await count("region=eu-south"); XCTAssertEqual(v, 1) }
        do { let v = try await count("region=eu-north"); XCTAssertEqual(v, 1) }
        do { let v = try await count("country=SE"); XCTAssertEqual(v, 1) }
        total = try await count("")
        XCTAssertEqual(total, 2)

        // Redelivery of the first event is a duplicate; an older version is ignored.
        let (again, duplicates) = try await stack.deliver([e1])
        XCTAssertEqual(again, 0)
        XCTAssertEqual(duplicates, 1)
        try await stack.deliver([try CorrelationStack.customerEvent("c1", a, version: 1)])
        do { let v = try await count("region=eu-south"); XCTAssertEqual(v, 1) }
        do { let v = try await count("region=eu-north"); XCTAssertEqual(v, 1) }

        // Closing a customer removes it from the baseline.
        try await stack.deliver([try CorrelationStack.customerEvent("c2", a, version: 2, closed: true)])
        do { let v = try await count("region=eu-south"); XCTAssertEqual(v, 0) }
        do { let v = try await count(""); XCTAssertEqual(v, 1) }
        await stack.shutdown()
    }

    /// The decoded baseline is cached per replica by version token: every customer change bumps
    /// the token in its transaction, so a read after it never sees the cached, older baseline.
    func testCachedPopulationFollowsEveryCustomerChange() async throws {
        let stack = try await CorrelationStack()
        func baseline() async throws -> (Int, Int, String?) {
            try await stack.pool.transaction { c in
                let p = try Store.cachedPopulation(c)
                let token = try c.query(Store.populationVersionSQL).first!.decode(String?.self, 0)
                return (p.total, p.counts[SegmentKey(.region, "eu-south")] ?? 0, token)
            }
        }
        let a = CorrelationStack.attributes(0, region: "eu-south")
        try await stack.deliver([try CorrelationStack.customerEvent("c1", a, version: 1)])
        let (t1, n1, v1) = try await baseline()
        XCTAssertEqual(t1, 1)
        XCTAssertEqual(n1, 1)
        do { let (t, n, v) = try await baseline(); XCTAssertEqual([t, n], [1, 1]); XCTAssertEqual(v, v1) }
        try await stack.deliver([try CorrelationStack.customerEvent("c2", a, version: 1)])
        let (t2, n2, v2) = try await baseline()
        XCTAssertEqual([t2, n2], [2, 2])
        XCTAssertNotEqual(v2, v1)
        var moved = a
        moved.region = "eu-north"
        try await stack.deliver([try CorrelationStack.customerEvent("c1", moved, version: 2)])
        do { let (t, n, _) = try await baseline(); XCTAssertEqual([t, n], [2, 1]) }
        // Same answer as reading the table directly.
        let direct = try await stack.pool.query("""
            SELECT coalesce(sum(count), 0)::bigint FROM population WHERE key = 'region=eu-south'
            """).first!.decode(Int.self, 0)
        XCTAssertEqual(direct, 1)
        await stack.shutdown()
    }

    /// 2,000 customers; reports naming the service (through an alias) only from eu-south are
    /// auto-linked; the blast radius finds eu-south and says eu-north is not affected; manual
    /// unlink / link move it; the timeline has the reports.
    func testReportsAutoLinkedAndBlastRadiusFindsThePlantedSegment() async throws {
        let stack = try await CorrelationStack()
        let api = stack.correlation
        _ = try await stack.createService("checkout", aliases: ["payments"])
        _ = try await stack.createService("search")
        try await stack.seedCustomers(2000)
        let incident = try await stack.declare("Checkout errors", services: ["services/checkout"])

        // 90 reports from eu-south customers naming "payments"; 5 from eu-central about search
        // (not linked); 3 from eu-north mentioning checkout only in the text (suggested).
        let south = (0..<2000).filter { $0 % 3 == 0 }.prefix(90)
        var events = try south.map { i in
            try CorrelationStack.reportEvent("r\(i)", customer: "c\(i)", CorrelationStack.attributes(i), hint: "payments")
        }
        events += try [1, 4, 7, 10, 13].map { i in
            try CorrelationStack.reportEvent("r\(i)", customer: "c\(i)", CorrelationStack.attributes(i), hint: "search")
        }
        events += try [2, 5, 8].map { i in
            try CorrelationStack.reportEvent("r\(i)", customer: "c\(i)", CorrelationStack.attributes(i), text: "the checkout page fails")
        }
        let (applied, _) = try await stack.deliver(events)
        XCTAssertEqual(applied, 98)

        var get = Liaison_Correlation_V1_GetIncidentRequest()
        get.name = incident.name
        let linked = try await api.getIncident(get)
        XCTAssertEqual(linked.linkedReportCount, 90)
        XCTAssertEqual(linked.affectedCustomerCount, 90)

        var links = Liaison_Correlation_V1_ListLinksRequest()
        links.parent = incident.name
        links.filter = #"state = "SUGGESTED""#
        let suggested = try await api.listLinks(links).links
        XCTAssertEqual(Set(suggested.map(\.report)), ["reports/r2", "reports/r5", "reports/r8"])
        XCTAssertTrue(suggested.allSatisfy { $0.reasons.contains { $0.kind == "text_mention" } })

        let radius = try await stack.blastRadius(incident.name)
        XCTAssertEqual(radius.reportingCustomers, 90)
        XCTAssertEqual(radius.population, 2000)
        let affected = radius.affected.map { segmentText($0.segment) }
        XCTAssertTrue(affected.contains("region=eu-south"), "\(affected)")
        XCTAssertFalse(affected.contains { $0.contains("eu-north") || $0.contains("eu-central") }, "\(affected)")
        let unaffected = radius.unaffectedLargeSegments.map { segmentText($0.segment) }
        XCTAssertTrue(unaffected.contains("region=eu-north"), "\(unaffected)")
        XCTAssertTrue(unaffected.contains("region=eu-central"), "\(unaffected)")
        XCTAssertEqual(radius.revision, 1)

        // The live aggregates equal a recount over the raw rows.
        let recount = try await stack.pool.query("""
            SELECT count(DISTINCT r.customer_id) FROM links l JOIN reports r ON r.id = l.report_id
            WHERE l.incident_id = $1 AND l.state = 2 AND 'region=eu-south' = ANY(r.keys)
            """, [try Store.incidentID(incident.name)]).first!.decode(Int.self, 0)
        XCTAssertEqual(radius.perDimension.first { segmentText($0.segment) == "region=eu-south" }?.observed, Int64(recount))

        // Bad options.
        var bad = Liaison_Correlation_V1_GetBlastRadiusRequest()
        bad.incident = incident.name
        bad.alpha = 0.7
        await XCTAssertRPCError(.invalidArgument, try await api.getBlastRadius(bad))

        // Unlink 60 eu-south reports and link 60 eu-north ones by hand: eu-north becomes affected.
        var unlink = Liaison_Correlation_V1_UnlinkReportsRequest()
        unlink.incident = incident.name
        unlink.reports = south.prefix(60).map { "reports/r\($0)" }
        unlink.agent = "agents/a1"
        unlink.requestID = UUID().uuidString
        do {
            let v = try await api.unlinkReports(unlink).links
            XCTAssertEqual(v.count, 60)
            XCTAssertTrue(v.allSatisfy { $0.etag == #"W/"2""# }, "an automatic link's second version: \(v.first?.etag ?? "")")
        }
        let north = (0..<2000).filter { $0 % 3 == 2 }.dropFirst(10).prefix(60)
        try await stack.deliver(try north.map { i in
            try CorrelationStack.reportEvent("r\(i)", customer: "c\(i)", CorrelationStack.attributes(i))
        })
        var link = Liaison_Correlation_V1_LinkReportsRequest()
        link.incident = incident.name
        link.reports = north.map { "reports/r\($0)" }
        link.agent = "agents/a1"
        link.requestID = UUID().uuidString
        let made = try await api.linkReports(link).links
        XCTAssertEqual(made.count, 60)
        XCTAssertTrue(made.allSatisfy { $0.state == .confirmed && $0.origin == .manual })
        XCTAssertTrue(made.allSatisfy { $0.etag == #"W/"1""# }, "a new link carries its first version: \(made.first?.etag ?? "")")
        let moved = try await stack.blastRadius(incident.name)
        XCTAssertEqual(moved.reportingCustomers, 90)
        let movedAffected = moved.affected.map { segmentText($0.segment) }
        XCTAssertTrue(movedAffected.contains("region=eu-north"), "\(movedAffected)")
        XCTAssertFalse(movedAffected.contains("region=eu-south"), "\(movedAffected)")
        XCTAssertEqual(moved.revision, 2)

        // Confirm a suggestion; reject another (then it cannot be confirmed).
        var confirm = Liaison_Correlation_V1_ConfirmLinkRequest()
        confirm.name = suggested[0].name
        confirm.agent = "agents/a1"
        confirm.requestID = UUID().uuidString
        do { let v = try await api.confirmLink(confirm).state; XCTAssertEqual(v, .confirmed) }
        var reject = Liaison_Correlation_V1_RejectLinkRequest()
        reject.name = suggested[1].name
        reject.agent = "agents/a1"
        reject.requestID = UUID().uuidString
        do { let v = try await api.rejectLink(reject).state; XCTAssertEqual(v, .rejected) }
        confirm.name = suggested[1].name
        confirm.requestID = UUID().uuidString
        await XCTAssertRPCError(.failedPrecondition, try await api.confirmLink(confirm))
        do { let v = try await api.getIncident(get).linkedReportCount; XCTAssertEqual(v, 91) }

        // A case merge moves the link to the surviving case.
        var merged = Liaison_Intake_V1_CasesMerged()
        merged.header = CorrelationStack.header(UUID(), aggregate: "cases/keep")
        merged.case.name = "cases/keep"
        merged.mergedCases = ["cases/case-r\(south[south.startIndex + 70])"]
        try await stack.deliver([try CorrelationStack.envelope(merged, id: UUID())])
        var opened = Liaison_Intake_V1_CaseOpened()
        opened.header = CorrelationStack.header(UUID(), aggregate: "cases/x")
        try await stack.deliver([try CorrelationStack.envelope(opened, id: UUID())])  // accepted, ignored
        links = .init()
        links.parent = incident.name
        links.pageSize = 1000
        let all = try await api.listLinks(links).links
        XCTAssertEqual(all.first { $0.report == "reports/r\(south[south.startIndex + 70])" }?.case, "cases/keep")

        // Timeline from the per-minute buckets.
        var tl = Liaison_Correlation_V1_GetIncidentTimelineRequest()
        tl.incident = incident.name
        tl.bucketWidth = Google_Protobuf_Duration(seconds: 60, nanos: 0)
        let timeline = try await api.getIncidentTimeline(tl)
        XCTAssertEqual(timeline.buckets.map(\.total.reports).reduce(0, +), 91)
        XCTAssertEqual(timeline.buckets.map(\.total.customers).reduce(0, +), 91)
        XCTAssertNotEqual(timeline.trend.verdict, .unspecified)
        tl.bucketWidth = Google_Protobuf_Duration(seconds: 10, nanos: 0)
        await XCTAssertRPCError(.invalidArgument, try await api.getIncidentTimeline(tl))
        await stack.shutdown()
    }

    /// Unlinked reports clustered in one segment raise one emerging issue; promoting it declares
    /// an incident with the reports linked.
    func testEmergingIssueRaisedFromUnlinkedClusterAndPromoted() async throws {
        let stack = try await CorrelationStack()
        _ = try await stack.createService("login", aliases: ["sign-in"])
        // Background noise over the last day, then a burst from eu-south in the window.
        var events = try CorrelationStack.backgroundNoise()
        let south = (0..<200).filter { $0 % 3 == 0 }.prefix(12)
        for i in south {
            events.append(try CorrelationStack.reportEvent("s\(i)", customer: "c\(i)", CorrelationStack.attributes(i), hint: "sign-in",
                                                           at: Date().addingTimeInterval(-Double(i) * 10)))
        }
        try await stack.deliver(events)
        let raised = try await stack.replicas[0].detector.runOnce()
        XCTAssertEqual(raised, 1)
        do { let v = try await stack.replicas[0].detector.runOnce(); XCTAssertEqual(v, 0) }

        var list = Liaison_Correlation_V1_ListEmergingIssuesRequest()
        list.filter = #"state = "OPEN""#
        let issues = try await stack.correlation.listEmergingIssues(list).emergingIssues
        XCTAssertEqual(issues.count, 1)
        let issue = try XCTUnwrap(issues.first)
        XCTAssertEqual(issue.reportCount, 12)
        XCTAssertEqual(issue.service, "services/login")
        XCTAssertTrue(["region=eu-south", ""].contains(segmentText(issue.segment)), segmentText(issue.segment))
        XCTAssertGreaterThan(issue.lift, 2)

        var promote = Liaison_Correlation_V1_PromoteEmergingIssueRequest()
        promote.name = issue.name
        promote.requestID = UUID().uuidString
        await XCTAssertRPCError(.invalidArgument, try await stack.correlation.promoteEmergingIssue(promote))
        promote.title = "Login failures in southern Europe"
        promote.severity = .sev2
        promote.actor = "agents/lead"
        let promoted = try await stack.correlation.promoteEmergingIssue(promote)
        XCTAssertEqual(promoted.emergingIssue.state, .promoted)
        XCTAssertEqual(promoted.incident.source, .emergingIssue)
        XCTAssertEqual(promoted.incident.emergingIssue, issue.name)
        XCTAssertEqual(promoted.incident.services, ["services/login"])
        XCTAssertGreaterThanOrEqual(promoted.incident.linkedReportCount, 12)
        promote.requestID = UUID().uuidString
        await XCTAssertRPCError(.failedPrecondition, try await stack.correlation.promoteEmergingIssue(promote))
        await stack.shutdown()
    }

    /// WatchIncident sends a first snapshot, then another after new reports are linked.
    func testWatchIncidentPushesAnUpdateAfterNewLinks() async throws {
        let stack = try await CorrelationStack()
        _ = try await stack.createService("checkout")
        try await stack.seedCustomers(600)
        let incident = try await stack.declare("Checkout down", services: ["services/checkout"])
        let south = (0..<600).filter { $0 % 3 == 0 }
        try await stack.deliver(try south.prefix(40).map { i in
            try CorrelationStack.reportEvent("r\(i)", customer: "c\(i)", CorrelationStack.attributes(i))
        })
        var watch = Liaison_Correlation_V1_WatchIncidentRequest()
        watch.incident = incident.name
        watch.minInterval = Google_Protobuf_Duration(seconds: 1, nanos: 0)
        let api = stack.correlation
        let received = try await api.watchIncident(watch) { response -> [Liaison_Correlation_V1_WatchIncidentResponse] in
            var out: [Liaison_Correlation_V1_WatchIncidentResponse] = []
            for try await snapshot in response.messages {
                out.append(snapshot)
                if out.count == 1 {
                    XCTAssertEqual(snapshot.changes, [.initial])
                    XCTAssertFalse(snapshot.hasBlastRadius)
                    var link = Liaison_Correlation_V1_LinkReportsRequest()
                    link.incident = incident.name
                    link.reports = south.prefix(40).map { "reports/r\($0)" }
                    link.agent = "agents/a1"
                    link.requestID = UUID().uuidString
                    _ = try await api.linkReports(link)
                } else if snapshot.incident.linkedReportCount == 40 {
                    break
                }
            }
            return out
        }
        XCTAssertGreaterThanOrEqual(received.count, 2)
        let last = try XCTUnwrap(received.last)
        XCTAssertGreaterThan(last.sequence, received[0].sequence)
        XCTAssertTrue(last.changes.contains(.blastRadius))
        XCTAssertEqual(last.blastRadius.reportingCustomers, 40)
        XCTAssertTrue(last.blastRadius.affected.contains { segmentText($0.segment) == "region=eu-south" })
        await stack.shutdown()
    }

    /// Two replicas (two servers, two pools, one database) behind one round-robin channel: the
    /// same answers from both, and the emerging-issue detector works on one at a time.
    /// Linking from concurrent deliveries through two replicas (sharded counters, no incident-row
    /// lock): every count stays exact, each customer's reports arriving in different batches.
    func testConcurrentLinkingThroughTwoReplicasKeepsTheAggregatesExact() async throws {
        let stack = try await CorrelationStack(replicas: 2)
        _ = try await stack.createService("checkout", aliases: ["payments"])
        try await stack.seedCustomers(300)
        let incident = try await stack.declare("Checkout errors", services: ["services/checkout"])
        // 120 customers report twice each; batches of 10, interleaved so both reports of a
        // customer are in flight in different batches at once.
        let events = try (0..<240).map { j in
            let i = (j % 120) * 2
            return try CorrelationStack.reportEvent("r\(j)", customer: "c\(i)", CorrelationStack.attributes(i), hint: "payments")
        }
        let batches = stride(from: 0, to: events.count, by: 10).map { Array(events[$0..<min($0 + 10, events.count)]) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in 0..<6 {
                group.addTask {
                    for b in stride(from: t, to: batches.count, by: 6) { try await stack.deliver(batches[b]) }
                }
            }
            try await group.waitForAll()
        }
        var get = Liaison_Correlation_V1_GetIncidentRequest()
        get.name = incident.name
        let got = try await stack.correlation.getIncident(get)
        XCTAssertEqual(got.linkedReportCount, 240)
        XCTAssertEqual(got.affectedCustomerCount, 120)
        let radius = try await stack.blastRadius(incident.name)
        XCTAssertEqual(radius.reportingCustomers, 120)
        let id = try Store.incidentID(incident.name)
        // The sharded segment counts equal a recount from the customers' rows.
        let mismatches = try await stack.pool.query("""
            WITH live AS (SELECT key, sum(count)::bigint AS n FROM incident_segments WHERE incident_id = $1 GROUP BY key),
                 recount AS (SELECT k AS key, count(*)::bigint AS n FROM incident_customers, unnest(keys || ''::text) k
                             WHERE incident_id = $1 GROUP BY k)
            SELECT count(*) FROM live FULL JOIN recount USING (key) WHERE live.n IS DISTINCT FROM recount.n
            """, [id]).first!.decode(Int.self, 0)
        XCTAssertEqual(mismatches, 0)
        let totals = try await stack.pool.query("""
            SELECT sum(reports)::bigint, sum(customers)::bigint FROM incident_buckets WHERE incident_id = $1 AND key = ''
            """, [id]).first!
        XCTAssertEqual(try totals.decode(Int.self, 0), 240)
        XCTAssertEqual(try totals.decode(Int.self, 1), 120)
        await stack.shutdown()
    }

    func testTwoReplicasShareStateAndRunTheDetectorOnce() async throws {
        let stack = try await CorrelationStack(replicas: 2)
        _ = try await stack.createService("checkout", aliases: ["payments"])
        try await stack.seedCustomers(900)
        let incident = try await stack.declare("Checkout errors", services: ["services/checkout"])
        try await stack.deliver(try (0..<900).filter { $0 % 3 == 0 }.prefix(50).map { i in
            try CorrelationStack.reportEvent("r\(i)", customer: "c\(i)", CorrelationStack.attributes(i), hint: "payments")
        })
        var answers: [Liaison_Correlation_V1_BlastRadius] = []
        for _ in 0..<6 { answers.append(try await stack.blastRadius(incident.name)) }
        for a in answers {
            XCTAssertEqual(a.affected.map { segmentText($0.segment) }, answers[0].affected.map { segmentText($0.segment) })
            XCTAssertEqual(a.reportingCustomers, 50)
            XCTAssertEqual(a.revision, answers[0].revision)
        }
        XCTAssertTrue(answers[0].affected.contains { segmentText($0.segment) == "region=eu-south" })
        for r in stack.replicas { XCTAssertGreaterThan(r.calls.current["GetBlastRadius"] ?? 0, 0, "both replicas answer") }

        // Unlinked cluster; both detectors race, several passes each.
        try await stack.deliver(try (0..<900).filter { $0 % 3 == 1 }.prefix(15).map { i in
            try CorrelationStack.reportEvent("u\(i)", customer: "c\(i)", CorrelationStack.attributes(i), text: "cannot log in")
        })
        let detectors = stack.replicas.map(\.detector)
        let results = try await withThrowingTaskGroup(of: (Int, Int?).self) { group in
            for (i, d) in detectors.enumerated() {
                group.addTask {
                    var got: Int? = nil
                    for _ in 0..<4 {
                        if let n = try await d.runOnce() { got = (got ?? 0) + n }
                    }
                    return (i, got)
                }
            }
            var out: [Int: Int?] = [:]
            for try await (i, n) in group { out[i] = n }
            return out
        }
        let ran = results.filter { $0.value != nil }
        XCTAssertEqual(ran.count, 1, "the detector ran on exactly one replica: \(results)")
        let issues = try await stack.pool.query("SELECT cluster_key FROM emerging_issues").rows.map { try $0.decode(String.self, 0) }
        XCTAssertEqual(issues.count, 1, "\(issues)")
        XCTAssertEqual(issues.first, "region=eu-central")

        // An incident declared independently whose matcher links the cluster's reports (the
        // text names the service) explains the issue.
        _ = try await stack.createService("login", aliases: ["log"])
        let login = try await stack.declare("Login broken", services: ["services/login"])
        XCTAssertEqual(login.linkedReportCount, 15)
        let state = try await stack.pool.query("SELECT state FROM emerging_issues").first!.decode(Int.self, 0)
        XCTAssertEqual(state, 4)  // EXPLAINED
        await stack.shutdown()
    }
}
