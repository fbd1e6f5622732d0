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

/// EXPIRED emerging issues, and the backfill of migration 0002. Time is driven by report receive
/// times in the past and by the detector's window and quiet period, never by sleeping.
final class EmergingExpiryTests: XCTestCase {
    typealias Issue = Liaison_Correlation_V1_EmergingIssue

    /// A detector over the stack's database with its own window and quiet period.
    func detector(_ stack: CorrelationStack, window: TimeInterval, expireAfter: TimeInterval? = nil) -> EmergingIssueDetectorService {
        var s = stack.replicas[0].settings
        s.emergingWindow = window
        s.emergingExpireAfter = expireAfter
        return EmergingIssueDetectorService(pool: stack.pool, settings: s, logger: stack.logger)
    }

    /// 12 reports from customers of one region (i % 3 == `region`), 20 to 25 minutes ago.
    func burst(_ prefix: String, region: Int, hint: String = "", text: String = "it does not work") throws -> [Liaison_Events_V1_EventEnvelope] {
        try (0..<300).filter { $0 % 3 == region }.prefix(12).enumerated().map { n, i in
            try CorrelationStack.reportEvent("\(prefix)\(i)", customer: "c\(i)", CorrelationStack.attributes(i), hint: hint, text: text,
                                             at: Date().addingTimeInterval(-20 * 60 - Double(n) * 25))
        }
    }

    func issue(_ stack: CorrelationStack, _ name: String) async throws -> Issue {
        var r = Liaison_Correlation_V1_GetEmergingIssueRequest()
        r.name = name
        return try await stack.correlation.getEmergingIssue(r)
    }

    func openIssues(_ stack: CorrelationStack) async throws -> [Issue] {
        var r = Liaison_Correlation_V1_ListEmergingIssuesRequest()
        r.filter = "state = OPEN"
        return try await stack.correlation.listEmergingIssues(r).emergingIssues
    }

    /// EmergingIssueStatusChanged events in the outbox, per issue name.
    func statusEvents(_ stack: CorrelationStack) async throws -> [(String, Issue.State)] {
        try await stack.pool.query("""
            SELECT payload FROM outbox WHERE topic = 'liaison.correlation.v1.EmergingIssueStatusChanged' AND destination = 'intake'
            ORDER BY id
            """).rows.map { row in
            let e = try Liaison_Correlation_V1_EmergingIssueStatusChanged(serializedBytes: try row.decode(ByteA.self, 0).bytes)
            return (e.emergingIssue.name, e.emergingIssue.state)
        }
    }

    func testOpenIssueExpiresOnlyWhenBelowSignificanceAndQuietForTheQuietPeriod() async throws {
        let stack = try await CorrelationStack { $0.destinations = ["intake"] }
        _ = try await stack.createService("login", aliases: ["sign-in"])
        try await stack.deliver(try CorrelationStack.backgroundNoise() + burst("s", region: 0, hint: "sign-in"))
        // Raised over a one-hour window.
        do { let v = try await detector(stack, window: 3600).runOnce(); XCTAssertEqual(v, 1) }
        let opened = try await openIssues(stack)
        let raised = try XCTUnwrap(opened.first)
        XCTAssertEqual(raised.reportCount, 12)

        // Quiet for 20 minutes (longer than a 10-minute quiet period) but still significant over
        // the one-hour window, counting the reports it holds: stays OPEN, untouched.
        do { let v = try await detector(stack, window: 3600, expireAfter: 600).runOnce(); XCTAssertEqual(v, 0) }
        do { let v = try await issue(stack, raised.name); XCTAssertEqual(v.state, .open); XCTAssertEqual(v.etag, raised.etag) }

        // A new report of the cluster a minute ago: over a 10-minute window the cluster is no
        // longer significant (1 report), but the quiet period has not passed: stays OPEN.
        try await stack.deliver([try CorrelationStack.reportEvent("fresh", customer: "c300", CorrelationStack.attributes(300), hint: "sign-in",
                                                                  at: Date().addingTimeInterval(-60))])
        do { let v = try await detector(stack, window: 600, expireAfter: 600).runOnce(); XCTAssertEqual(v, 0) }
        do { let v = try await issue(stack, raised.name); XCTAssertEqual(v.state, .open); XCTAssertEqual(v.etag, raised.etag) }
        do { let v = try await statusEvents(stack); XCTAssertTrue(v.isEmpty, "\(v)") }

        // Below significance and nothing for 30 s: EXPIRED, etag and update_time bumped, one event.
        do { let v = try await detector(stack, window: 600, expireAfter: 30).runOnce(); XCTAssertEqual(v, 0) }
        let expired = try await issue(stack, raised.name)
        XCTAssertEqual(expired.state, .expired)
        XCTAssertNotEqual(expired.etag, raised.etag)
        XCTAssertEqual(expired.etag, "W/\"2\"")
        XCTAssertGreaterThan(expired.updateTime.date, raised.updateTime.date)
        XCTAssertEqual(expired.reportCount, raised.reportCount)
        do {
            let v = try await statusEvents(stack)
            XCTAssertEqual(v.map(\.0), [raised.name])
            XCTAssertEqual(v.map(\.1), [.expired])
        }
        let header = try await stack.pool.query(
            "SELECT payload FROM outbox WHERE topic = 'liaison.correlation.v1.EmergingIssueStatusChanged'").first!
        let event = try Liaison_Correlation_V1_EmergingIssueStatusChanged(serializedBytes: try header.decode(ByteA.self, 0).bytes)
        XCTAssertEqual(event.header.aggregate, raised.name)
        XCTAssertEqual(event.header.aggregateVersion, 2)

        // Further passes change nothing; the filters see the new state.
        do { let v = try await detector(stack, window: 600, expireAfter: 30).runOnce(); XCTAssertEqual(v, 0) }
        do { let v = try await issue(stack, raised.name); XCTAssertEqual(v.etag, expired.etag) }
        do { let v = try await statusEvents(stack); XCTAssertEqual(v.count, 1) }
        do { let v = try await openIssues(stack); XCTAssertEqual(v.count, 0) }
        var list = Liaison_Correlation_V1_ListEmergingIssuesRequest()
        list.filter = "state = EXPIRED AND lift > 2 AND symptom = ERRORS"
        do { let v = try await stack.correlation.listEmergingIssues(list).emergingIssues.map(\.name); XCTAssertEqual(v, [raised.name]) }
        await stack.shutdown()
    }

    func testPromotedAndDismissedIssuesNeverExpire() async throws {
        let stack = try await CorrelationStack { $0.destinations = ["intake"] }
        _ = try await stack.createService("login", aliases: ["sign-in"])
        try await stack.deliver(try CorrelationStack.backgroundNoise() + burst("s", region: 0, hint: "sign-in"))
        do { let v = try await detector(stack, window: 3600).runOnce(); XCTAssertEqual(v, 1) }
        let openedFirst = try await openIssues(stack)
        let first = try XCTUnwrap(openedFirst.first)
        var dismiss = Liaison_Correlation_V1_DismissEmergingIssueRequest()
        dismiss.name = first.name
        dismiss.reason = "known maintenance"
        dismiss.requestID = UUID().uuidString
        let dismissed = try await stack.correlation.dismissEmergingIssue(dismiss)
        XCTAssertEqual(dismissed.state, .dismissed)

        try await stack.deliver(try burst("n", region: 2, text: "cannot log in"))
        do { let v = try await detector(stack, window: 3600).runOnce(); XCTAssertEqual(v, 1) }
        let openedSecond = try await openIssues(stack)
        let second = try XCTUnwrap(openedSecond.first)
        XCTAssertNotEqual(second.name, first.name)
        var promote = Liaison_Correlation_V1_PromoteEmergingIssueRequest()
        promote.name = second.name
        promote.title = "Login failures in the north"
        promote.severity = .sev3
        promote.services = ["services/login"]
        promote.requestID = UUID().uuidString
        let promoted = try await stack.correlation.promoteEmergingIssue(promote).emergingIssue
        XCTAssertEqual(promoted.state, .promoted)

        let events = try await statusEvents(stack)
        XCTAssertEqual(events.map(\.1), [.dismissed, .promoted])
        // Long quiet, far below significance: neither changes.
        for _ in 0..<2 {
            do { let v = try await detector(stack, window: 60, expireAfter: 1).runOnce(); XCTAssertEqual(v, 0) }
        }
        do { let v = try await issue(stack, first.name); XCTAssertEqual(v.state, .dismissed); XCTAssertEqual(v.etag, dismissed.etag) }
        do { let v = try await issue(stack, second.name); XCTAssertEqual(v.state, .promoted); XCTAssertEqual(v.etag, promoted.etag) }
        do { let v = try await statusEvents(stack); XCTAssertEqual(v.count, events.count) }
        await stack.shutdown()
    }

    /// Rows written before migration 0002 get their filter columns from their protobuf bodies.
    func testMigrationBackfillsFilterColumnsFromBodies() async throws {
        let url = try TestPostgres.shared.createDatabase("corrmig")
        let pool = PostgresPool(.init(url: url, maxConnections: 2))
        let all = try Migrator.load(directory: TestPostgres.repositoryRoot + "/services/correlation/migrations")
        try await Migrator(pool: pool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
        try await Migrator(pool: pool).migrate(namespace: "correlation", all.filter { $0.version == 1 })

        var svc = Liaison_Correlation_V1_TechnicalService()
        svc.name = "services/checkout"
        svc.aliases = ["Payments", "pay"]
        svc.dependencies = ["services/db"]
        svc.ownerTeam = "payments"
        svc.public = true
        try await pool.query("INSERT INTO services (id, body) VALUES ('checkout', $1)", [ByteA(try Convert.bytes(svc))])

        let incidentID = UUID()
        var incident = Liaison_Correlation_V1_Incident()
        incident.name = Store.incidentName(incidentID)
        incident.severity = .sev2
        incident.source = .manual
        incident.state = .resolved
        incident.labels = ["env": "prod", "team": "sre \"core\""]
        let resolved = Date(timeIntervalSince1970: 1_800_000_000.123456)
        incident.resolveTime = Google_Protobuf_Timestamp(date: resolved)
        incident.updateTime = Google_Protobuf_Timestamp(date: resolved.addingTimeInterval(5))
        try await pool.query("""
            INSERT INTO incidents (id, body, state, services, impact_start, create_time) VALUES ($1, $2, 4, '{services/checkout}', now(), now())
            """, [incidentID, ByteA(try Convert.bytes(incident))])

        var snapshot = CorrelationStack.attributes(6)
        snapshot.whiteGlove = true
        snapshot.accountPartition = "p-7"
        snapshot.features = ["teapot-customization"]
        try await pool.query("""
            INSERT INTO reports (id, customer_id, receive_time, symptom, snapshot, keys, keys1) VALUES ('r1', 'c6', now(), 2, $1, '{}', '{}')
            """, [ByteA(try Convert.bytes(snapshot))])
        var link = Liaison_Correlation_V1_Link()
        link.name = Store.linkName(incidentID, UUID())
        link.report = "reports/r1"
        link.case = "cases/k1"
        link.customer = "customers/c6"
        link.customerSnapshot = snapshot
        link.symptom = .unavailable
        link.origin = .manual
        let received = Date(timeIntervalSince1970: 1_800_000_100.5)
        link.reportReceiveTime = Google_Protobuf_Timestamp(date: received)
        try await pool.query("INSERT INTO links (id, incident_id, report_id, state, score, body) VALUES ($1, $2, 'r1', 2, 1, $3)",
                             [UUID(), incidentID, ByteA(try Convert.bytes(link))])

        var issue = Liaison_Correlation_V1_EmergingIssue()
        issue.state = .open
        issue.symptom = .slow
        issue.service = "services/checkout"
        issue.customerCount = 17
        issue.lift = 7.123456789012345
        try await pool.query("INSERT INTO emerging_issues (id, cluster_key, state, body, adjusted_p) VALUES ($1, 'k', 1, $2, 0.001)",
                             [UUID(), ByteA(try Convert.bytes(issue))])

        try await Migrator(pool: pool).migrate(namespace: "correlation", all)

        let s = try await pool.query("SELECT public, owner_team, aliases, dependencies FROM services").first!
        XCTAssertEqual(try s.decode(Bool.self, 0), true)
        XCTAssertEqual(try s.decode(String.self, 1), "payments")
        XCTAssertEqual(try s.decode(TextArray.self, 2).values, ["payments", "pay"])
        XCTAssertEqual(try s.decode(TextArray.self, 3).values, ["services/db"])
        let i = try await pool.query("""
            SELECT severity, source, resolve_time, update_time, labels->>'env', labels->>'team' FROM incidents
            """).first!
        XCTAssertEqual(try i.decode(Int.self, 0), 2)
        XCTAssertEqual(try i.decode(Int.self, 1), 2)
        XCTAssertEqual(try i.decode(Date.self, 2).timeIntervalSince1970, resolved.timeIntervalSince1970, accuracy: 1e-6)
        XCTAssertEqual(try i.decode(Date.self, 3).timeIntervalSince1970, resolved.timeIntervalSince1970 + 5, accuracy: 1e-6)
        XCTAssertEqual(try i.decode(String.self, 4), "prod")
        XCTAssertEqual(try i.decode(String.self, 5), "sre \"core\"")
        let l = try await pool.query("""
            SELECT origin, case_name, customer, symptom, report_receive_time, snapshot_region, snapshot_country, snapshot_tier,
                   snapshot_partition, snapshot_account, snapshot_white_glove, snapshot_features FROM links
            """).first!
        XCTAssertEqual(try l.decode(Int.self, 0), 2)
        XCTAssertEqual(try l.decode(String.self, 1), "cases/k1")
        XCTAssertEqual(try l.decode(String.self, 2), "customers/c6")
        XCTAssertEqual(try l.decode(Int.self, 3), 3)
        XCTAssertEqual(try l.decode(Date.self, 4).timeIntervalSince1970, received.timeIntervalSince1970, accuracy: 1e-6)
        XCTAssertEqual(try l.decode(String.self, 5), snapshot.region)
        XCTAssertEqual(try l.decode(String.self, 6), snapshot.country)
        XCTAssertEqual(try l.decode(Int.self, 7), snapshot.tier.rawValue)
        XCTAssertEqual(try l.decode(String.self, 8), "p-7")
        XCTAssertEqual(try l.decode(String.self, 9), snapshot.accountNumber)
        XCTAssertEqual(try l.decode(Bool.self, 10), true)
        XCTAssertEqual(try l.decode(TextArray.self, 11).values, ["teapot-customization"])
        let e = try await pool.query("SELECT symptom, service, lift, customer_count FROM emerging_issues").first!
        XCTAssertEqual(try e.decode(Int.self, 0), 1)
        XCTAssertEqual(try e.decode(String.self, 1), "services/checkout")
        XCTAssertEqual(try e.decode(Double.self, 2), 7.123456789012345)
        XCTAssertEqual(try e.decode(Int.self, 3), 17)
        // The temporary protobuf readers are gone.
        let helpers = try await pool.query("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pb\\_%'").first!.decode(Int.self, 0)
        XCTAssertEqual(helpers, 0)
        await pool.close()
    }
}
