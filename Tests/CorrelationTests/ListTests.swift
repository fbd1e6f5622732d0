import Foundation
import GRPCCore
import GRPCProtobuf
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import SwiftProtobuf
import XCTest

@testable import Correlation
@testable import CorrelationDomain

/// The List methods' filters, orderings and page tokens over real PostgreSQL and real gRPC.
final class ListTests: XCTestCase {
    typealias Incident = Liaison_Correlation_V1_Incident

    /// Expects INVALID_ARGUMENT whose BadRequest names `field`.
    func expectInvalid<T>(_ field: String, _ what: String, file: StaticString = #filePath, line: UInt = #line,
                          _ body: () async throws -> T) async {
        do {
            _ = try await body()
            XCTFail("expected INVALID_ARGUMENT for \(what)", file: file, line: line)
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .invalidArgument, "\(what): \(error)", file: file, line: line)
            let status = try? error.unpackGoogleRPCStatus()
            let fields = status?.details.flatMap { $0.badRequest?.violations.map(\.field) ?? [] } ?? []
            XCTAssertEqual(fields, [field], "\(what): \(error.message)", file: file, line: line)
        } catch {
            XCTFail("\(what): unexpected \(error)", file: file, line: line)
        }
    }

    func declare(_ stack: CorrelationStack, _ title: String, services: [String], severity: Liaison_Common_V1_Severity,
                 source: Liaison_Correlation_V1_IncidentSource = .monitoring, external: String? = nil,
                 labels: [String: String] = [:]) async throws -> Incident {
        var r = Liaison_Correlation_V1_DeclareIncidentRequest()
        r.incident.title = title
        r.incident.services = services
        r.incident.severity = severity
        r.incident.labels = labels
        if let external {
            r.incident.externalReference.system = "pager"
            r.incident.externalReference.id = external
        }
        r.source = source
        r.requestID = UUID().uuidString
        return try await stack.correlation.declareIncident(r)
    }

    /// Every incident of a listing, following the page tokens; `between` runs before each next page.
    func allIncidents(_ stack: CorrelationStack, filter: String = "", orderBy: String = "", pageSize: Int32 = 0,
                      between: () async throws -> Void = {}) async throws -> [Incident] {
        var r = Liaison_Correlation_V1_ListIncidentsRequest()
        r.filter = filter
        r.orderBy = orderBy
        r.pageSize = pageSize
        var out: [Incident] = []
        repeat {
            let page = try await stack.correlation.listIncidents(r)
            out += page.incidents
            r.pageToken = page.nextPageToken
            if !r.pageToken.isEmpty { try await between() }
        } while !r.pageToken.isEmpty
        return out
    }

    func testListIncidentsFiltersOrderingsPagingAndBadRequests() async throws {
        let stack = try await CorrelationStack()
        let api = stack.correlation
        for s in ["checkout", "login", "billing"] { _ = try await stack.createService(s) }
        let specs: [(String, [String], Liaison_Common_V1_Severity, Liaison_Correlation_V1_IncidentSource, String?, [String: String])] = [
            ("A", ["services/checkout"], .sev1, .monitoring, "P-1", ["env": "prod", "team": "payments"]),
            ("B", ["services/login"], .sev3, .manual, nil, ["env": "staging"]),
            ("C", ["services/checkout", "services/billing"], .sev2, .monitoring, "P-2", [:]),
            ("D", ["services/billing"], .sev1, .manual, nil, ["env": "prod"]),
            ("E", ["services/login", "services/checkout"], .sev4, .monitoring, "P-3", ["env": "prod"]),
            ("F", ["services/checkout"], .sev2, .manual, nil, [:]),
        ]
        var incidents: [String: Incident] = [:]
        for (title, services, severity, source, external, labels) in specs {
            incidents[title] = try await declare(stack, title, services: services, severity: severity, source: source,
                                                 external: external, labels: labels)
        }
        // Resolve C and E (resolve_time), acknowledge B (update_time moves).
        let beforeResolve = Date()
        for title in ["C", "E"] {
            var r = Liaison_Correlation_V1_ResolveIncidentRequest()
            r.name = incidents[title]!.name
            r.requestID = UUID().uuidString
            incidents[title] = try await api.resolveIncident(r)
        }
        var ack = Liaison_Correlation_V1_AcknowledgeIncidentRequest()
        ack.name = incidents["B"]!.name
        ack.requestID = UUID().uuidString
        incidents["B"] = try await api.acknowledgeIncident(ack)

        func titles(_ filter: String, _ orderBy: String = "", pageSize: Int32 = 0) async throws -> [String] {
            try await allIncidents(stack, filter: filter, orderBy: orderBy, pageSize: pageSize).map(\.title)
        }
        // Default order: newest first.
        do { let v = try await titles(""); XCTAssertEqual(v, ["F", "E", "D", "C", "B", "A"]) }
        do { let v = try await titles(#"state != "RESOLVED" AND services:"services/checkout""#); XCTAssertEqual(v, ["F", "A"]) }
        do { let v = try await titles("severity = SEV1"); XCTAssertEqual(v, ["D", "A"]) }
        do { let v = try await titles(#"severity = "SEVERITY_SEV2" AND source = "INCIDENT_SOURCE_MANUAL""#); XCTAssertEqual(v, ["F"]) }
        do { let v = try await titles("source = MONITORING"); XCTAssertEqual(v, ["E", "C", "A"]) }
        do { let v = try await titles("state = ACKNOWLEDGED"); XCTAssertEqual(v, ["B"]) }
        do { let v = try await titles(#"external_reference.system = "pager" AND external_reference.id = "P-2""#); XCTAssertEqual(v, ["C"]) }
        do { let v = try await titles(#"external_reference.id != "P-2""#); XCTAssertEqual(v, ["F", "E", "D", "B", "A"]) }
        do { let v = try await titles(#"labels.env = "prod""#); XCTAssertEqual(v, ["E", "D", "A"]) }
        do { let v = try await titles(#"labels.env = "prod" AND labels.team = "payments""#); XCTAssertEqual(v, ["A"]) }
        do { let v = try await titles(#"labels.env != "prod""#); XCTAssertEqual(v, ["F", "C", "B"]) }
        let t = ISO8601DateFormatter().string(from: beforeResolve.addingTimeInterval(-1))
        do { let v = try await titles("resolve_time >= \"\(t)\""); XCTAssertEqual(v, ["E", "C"]) }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let betweenBC = Date(timeIntervalSince1970: (incidents["B"]!.createTime.date.timeIntervalSince1970
                                                     + incidents["C"]!.createTime.date.timeIntervalSince1970) / 2)
        do { let v = try await titles("create_time > \"\(f.string(from: betweenBC))\""); XCTAssertEqual(v, ["F", "E", "D", "C"]) }
        do { let v = try await titles("create_time <= \"\(f.string(from: betweenBC))\""); XCTAssertEqual(v, ["B", "A"]) }
        do { let v = try await titles(#"services:"services/billing" AND severity != SEV1"#); XCTAssertEqual(v, ["C"]) }

        // Orderings, with and without paging (page size 1 and 4 give the same sequence).
        let bySeverity = ["D", "A", "F", "C", "B", "E"]  // severity, then newest first
        do { let v = try await titles("", "severity"); XCTAssertEqual(v, bySeverity) }
        do { let v = try await titles("", "severity", pageSize: 1); XCTAssertEqual(v, bySeverity) }
        do { let v = try await titles("", " severity ", pageSize: 4); XCTAssertEqual(v, bySeverity) }
        do { let v = try await titles("", "update_time desc"); XCTAssertEqual(v, ["B", "E", "C", "F", "D", "A"]) }
        do { let v = try await titles("", "update_time desc", pageSize: 2); XCTAssertEqual(v, ["B", "E", "C", "F", "D", "A"]) }
        do { let v = try await titles("", "create_time desc", pageSize: 5); XCTAssertEqual(v, ["F", "E", "D", "C", "B", "A"]) }
        do { let v = try await titles(#"state != "RESOLVED""#, "severity", pageSize: 1); XCTAssertEqual(v, ["D", "A", "F", "B"]) }

        // Paging a filtered, ordered list while incidents are declared between pages: every row
        // that existed before is returned exactly once, in order.
        var added = 0
        let paged = try await allIncidents(stack, filter: #"services:"services/checkout""#, orderBy: "severity", pageSize: 1) {
            added += 1
            _ = try await self.declare(stack, "new\(added)", services: ["services/checkout"], severity: [.sev1, .sev2, .sev5][added % 3])
        }
        let original = paged.map(\.title).filter { !$0.hasPrefix("new") }
        XCTAssertEqual(original, ["A", "F", "C", "E"])
        XCTAssertEqual(Set(paged.map(\.name)).count, paged.count, "no incident twice")
        let severities = paged.map { ($0.severity.rawValue, -$0.createTime.date.timeIntervalSince1970) }
        XCTAssertEqual(severities.map(\.0), severities.map(\.0).sorted(), "ordered by severity")
        XCTAssertGreaterThan(added, 2)
        let newest = try await allIncidents(stack, pageSize: 2) {
            _ = try await self.declare(stack, "late", services: ["services/login"], severity: .sev3)
        }
        XCTAssertEqual(Set(newest.map(\.name)).count, newest.count)
        XCTAssertFalse(newest.contains { $0.title == "late" }, "rows newer than the cursor do not appear in a newest-first listing")

        // Bad filters, orderings and tokens: INVALID_ARGUMENT on the field, nothing changes.
        let before = try await stack.pool.query("SELECT count(*), sum(version) FROM incidents").first!
        let (count, versions) = (try before.decode(Int.self, 0), try before.decode(Int.self, 1))
        var bad = Liaison_Correlation_V1_ListIncidentsRequest()
        for filter in ["colour = \"red\"", "severity = SEV9", "severity > SEV1", "services = \"services/checkout\"",
                       "state = \"OPEN\"", "create_time > \"yesterday\"", "labels = \"x\"", "labels.env > \"a\"",
                       "state = DECLARED OR state = RESOLVED", "(state = DECLARED)", "title = \"A\"",
                       #"labels.env = "x'); DROP TABLE incidents; --""#] {
            bad.filter = filter
            if filter.contains("DROP") {
                do { let v = try await api.listIncidents(bad).incidents.count; XCTAssertEqual(v, 0) }  // a value, never SQL
                continue
            }
            await expectInvalid("filter", filter) { try await api.listIncidents(bad) }
        }
        bad = .init()
        bad.orderBy = "title"
        await expectInvalid("order_by", "order_by title") { try await api.listIncidents(bad) }
        bad = .init()
        bad.pageSize = 1
        bad.filter = "severity = SEV1"
        let token = try await api.listIncidents(bad).nextPageToken
        XCTAssertFalse(token.isEmpty)
        bad.filter = "severity = SEV2"
        bad.pageToken = token
        await expectInvalid("page_token", "token of another filter") { try await api.listIncidents(bad) }
        bad.filter = "severity = SEV1"
        bad.orderBy = "severity"
        await expectInvalid("page_token", "token of another order") { try await api.listIncidents(bad) }
        bad.orderBy = "create_time desc"  // the default, named: same query
        do { let v = try await api.listIncidents(bad).incidents.count; XCTAssertEqual(v, 1) }
        bad.pageToken = "bm90LWEtdG9rZW4"
        await expectInvalid("page_token", "garbage token") { try await api.listIncidents(bad) }
        var links = Liaison_Correlation_V1_ListLinksRequest()
        links.parent = "incidents/-"
        links.pageToken = token
        await expectInvalid("page_token", "token of another list") { try await api.listLinks(links) }
        let after = try await stack.pool.query("SELECT count(*), sum(version) FROM incidents").first!
        XCTAssertEqual(try after.decode(Int.self, 0), count)
        XCTAssertEqual(try after.decode(Int.self, 1), versions)
        await stack.shutdown()
    }

    func testListLinksFiltersOrderingsAndPaging() async throws {
        let stack = try await CorrelationStack()
        let api = stack.correlation
        _ = try await stack.createService("checkout", aliases: ["payments"])
        _ = try await stack.createService("login")
        try await stack.seedCustomers(60)
        let now = Date()
        let checkout = try await stack.declare("Checkout errors", services: ["services/checkout"], impactStart: now.addingTimeInterval(-7200))
        let login = try await stack.declare("Login errors", services: ["services/login"], impactStart: now.addingTimeInterval(-7200))
        // 12 reports naming checkout (auto-confirmed), received a minute apart, newest last; 4
        // that only mention it in the text (suggested); 3 for login.
        var events: [Liaison_Events_V1_EventEnvelope] = []
        for i in 0..<12 {
            events.append(try CorrelationStack.reportEvent("r\(i)", customer: "c\(i)", CorrelationStack.attributes(i), hint: "payments",
                                                           at: now.addingTimeInterval(-Double(60 - i) * 60)))
        }
        for i in 12..<16 {
            events.append(try CorrelationStack.reportEvent("r\(i)", customer: "c\(i)", CorrelationStack.attributes(i),
                                                           text: "the checkout page hangs", at: now.addingTimeInterval(-Double(100 - i) * 60)))
        }
        for i in 16..<19 {
            events.append(try CorrelationStack.reportEvent("r\(i)", customer: "c\(i)", CorrelationStack.attributes(i), hint: "login",
                                                           at: now.addingTimeInterval(-Double(30 - i) * 60)))
        }
        try await stack.deliver(events)
        // A manual link of r19 (no hint, no mention) and a rejected suggestion.
        try await stack.deliver([try CorrelationStack.reportEvent("r19", customer: "c19", CorrelationStack.attributes(19), text: "hm",
                                                                  at: now.addingTimeInterval(-30 * 60))])
        try await stack.link(checkout.name, ["r19"])

        func list(_ parent: String, _ filter: String = "", _ orderBy: String = "", pageSize: Int32 = 0,
                  between: () async throws -> Void = {}) async throws -> [Liaison_Correlation_V1_Link] {
            var r = Liaison_Correlation_V1_ListLinksRequest()
            r.parent = parent
            r.filter = filter
            r.orderBy = orderBy
            r.pageSize = pageSize
            var out: [Liaison_Correlation_V1_Link] = []
            repeat {
                let page = try await api.listLinks(r)
                out += page.links
                r.pageToken = page.nextPageToken
                if !r.pageToken.isEmpty { try await between() }
            } while !r.pageToken.isEmpty
            return out
        }
        func reports(_ links: [Liaison_Correlation_V1_Link]) -> [String] { links.map { String($0.report.dropFirst(8)) } }

        let all = try await list(checkout.name)
        XCTAssertEqual(all.count, 17, "\(reports(all))")
        let suggested = try await list(checkout.name, #"state = "SUGGESTED""#)
        XCTAssertEqual(Set(reports(suggested)), ["r12", "r13", "r14", "r15"])
        var reject = Liaison_Correlation_V1_RejectLinkRequest()
        reject.name = suggested[0].name
        reject.agent = "agents/a1"
        reject.requestID = UUID().uuidString
        _ = try await api.rejectLink(reject)
        do { let v = reports(try await list(checkout.name, "state = REJECTED")); XCTAssertEqual(v, [reports([suggested[0]])[0]]) }
        do { let v = reports(try await list(checkout.name, "origin = MANUAL")); XCTAssertEqual(v, ["r19"]) }
        do { let v = reports(try await list(checkout.name, "origin = MANUAL AND score >= 1")); XCTAssertEqual(v, ["r19"]) }
        do { let v = Set(reports(try await list(checkout.name, "score < 0.6"))); XCTAssertEqual(v, ["r12", "r13", "r14", "r15"]) }
        do { let v = reports(try await list("incidents/-", #"report = "reports/r17""#)); XCTAssertEqual(v, ["r17"]) }
        do { let v = reports(try await list("incidents/-", #"customer = "customers/c3""#)); XCTAssertEqual(v, ["r3"]) }
        do { let v = reports(try await list("incidents/-", #"case = "cases/case-r4""#)); XCTAssertEqual(v, ["r4"]) }
        do { let v = try await list("incidents/-", "symptom = ERRORS").count; XCTAssertEqual(v, 20) }
        do { let v = try await list("incidents/-", "symptom = SLOW").count; XCTAssertEqual(v, 0) }
        let south = try await list("incidents/-", #"customer_snapshot.region = "eu-south""#)
        XCTAssertEqual(Set(reports(south)), Set((0..<20).filter { $0 % 3 == 0 }.map { "r\($0)" }))
        XCTAssertTrue(south.allSatisfy { $0.customerSnapshot.region == "eu-south" })
        let enterprise = try await list(checkout.name, "customer_snapshot.tier = ENTERPRISE AND state = CONFIRMED")
        XCTAssertEqual(Set(reports(enterprise)), ["r6", "r7"])  // tier ENTERPRISE: customers 6, 7, 14, 15 (14, 15 only suggested)
        do { let v = reports(try await list("incidents/-", #"customer_snapshot.features:"teapot-customization" AND report_receive_time >= "2000-01-01T00:00:00Z""#)).sorted(); XCTAssertEqual(v,
                       ["r0", "r10"]) }
        let cutoff = ISO8601DateFormatter().string(from: now.addingTimeInterval(-13 * 60 - 30))
        do { let v = Set(reports(try await list(login.name, "report_receive_time > \"\(cutoff)\""))); XCTAssertEqual(v, ["r17", "r18"]) }

        // Orderings.
        let byScore = try await list(checkout.name, "", "score desc", pageSize: 3)
        XCTAssertEqual(byScore.count, 17)
        XCTAssertEqual(byScore.map(\.score), byScore.map(\.score).sorted(by: >))
        XCTAssertEqual(byScore.first.map { reports([$0]) }, ["r19"])
        let byReceive = try await list("incidents/-", "", "report_receive_time", pageSize: 4)
        XCTAssertEqual(byReceive.count, 20)
        let times = byReceive.map { $0.reportReceiveTime.date }
        XCTAssertEqual(times, times.sorted())
        let byCreate = try await list(checkout.name, "", "create_time", pageSize: 5)
        XCTAssertEqual(Set(byCreate.map(\.name)), Set(all.map(\.name)))
        XCTAssertEqual(byCreate.map(\.name), all.map(\.name))

        // Paging "score desc" while new links arrive: each existing link exactly once, in order.
        var n = 100
        let paged = try await list(checkout.name, "state = CONFIRMED", "score desc", pageSize: 2) {
            n += 1
            try await stack.deliver([try CorrelationStack.reportEvent("r\(n)", customer: "c\(n - 80)", CorrelationStack.attributes(n - 80),
                                                                      hint: "payments", at: now.addingTimeInterval(-3600))])
        }
        XCTAssertEqual(Set(paged.map(\.name)).count, paged.count, "no link twice")
        XCTAssertEqual(paged.map(\.score), paged.map(\.score).sorted(by: >))
        let confirmedBefore = Set(all.filter { $0.state == .confirmed }.map(\.name))
        XCTAssertTrue(confirmedBefore.isSubset(of: Set(paged.map(\.name))))
        XCTAssertGreaterThan(n, 105)

        // A token is bound to its parent; bad filters and orders are refused.
        var r = Liaison_Correlation_V1_ListLinksRequest()
        r.parent = checkout.name
        r.pageSize = 1
        r.pageToken = try await api.listLinks(r).nextPageToken
        r.parent = login.name
        await expectInvalid("page_token", "token of another parent") { try await api.listLinks(r) }
        r = .init()
        r.parent = "incidents/-"
        for filter in ["score >= high", "score : 1", #"case = "case-r4""#, "origin = ROBOT", "customer_snapshot.planet = \"x\"",
                       "customer_snapshot.white_glove = maybe", "report_receive_time < 5", #"report = "r1""#] {
            r.filter = filter
            await expectInvalid("filter", filter) { try await api.listLinks(r) }
        }
        r.filter = ""
        r.orderBy = "score"
        await expectInvalid("order_by", "score ascending") { try await api.listLinks(r) }
        await stack.shutdown()
    }

    func testListServicesFilters() async throws {
        let stack = try await CorrelationStack()
        let api = stack.correlation
        func create(_ id: String, aliases: [String] = [], dependencies: [String] = [], owner: String = "", isPublic: Bool = false) async throws {
            var r = Liaison_Correlation_V1_CreateServiceRequest()
            r.serviceID = id
            r.service.displayName = id.capitalized
            r.service.aliases = aliases
            r.service.dependencies = dependencies
            r.service.ownerTeam = owner
            r.service.public = isPublic
            r.requestID = UUID().uuidString
            _ = try await api.createService(r)
        }
        try await create("db", owner: "platform")
        try await create("auth", dependencies: ["services/db"], owner: "identity")
        try await create("checkout", aliases: ["Payments", "pay"], dependencies: ["services/db", "services/auth"], owner: "payments", isPublic: true)
        try await create("login", aliases: ["sign-in"], dependencies: ["services/auth"], owner: "identity", isPublic: true)
        try await create("search", owner: "discovery")
        func ids(_ filter: String, pageSize: Int32 = 0) async throws -> [String] {
            var r = Liaison_Correlation_V1_ListServicesRequest()
            r.filter = filter
            r.pageSize = pageSize
            var out: [String] = []
            repeat {
                let page = try await api.listServices(r)
                out += page.services.map { String($0.name.dropFirst(9)) }
                r.pageToken = page.nextPageToken
            } while !r.pageToken.isEmpty
            return out
        }
        do { let v = try await ids(""); XCTAssertEqual(v, ["auth", "checkout", "db", "login", "search"]) }
        do { let v = try await ids("", pageSize: 2); XCTAssertEqual(v, ["auth", "checkout", "db", "login", "search"]) }
        do { let v = try await ids("public = true"); XCTAssertEqual(v, ["checkout", "login"]) }
        do { let v = try await ids("public = false", pageSize: 1); XCTAssertEqual(v, ["auth", "db", "search"]) }
        do { let v = try await ids(#"owner_team = "identity""#); XCTAssertEqual(v, ["auth", "login"]) }
        do { let v = try await ids(#"aliases:"PAYMENTS""#); XCTAssertEqual(v, ["checkout"]) }
        do { let v = try await ids(#"dependencies:"services/auth""#); XCTAssertEqual(v, ["checkout", "login"]) }
        do { let v = try await ids(#"dependencies:"services/db" AND public = true"#); XCTAssertEqual(v, ["checkout"]) }
        // An update rewrites the columns with the body.
        var update = Liaison_Correlation_V1_UpdateServiceRequest()
        update.service.name = "services/search"
        update.service.public = true
        update.service.aliases = ["Find"]
        update.updateMask.paths = ["public", "aliases"]
        update.requestID = UUID().uuidString
        _ = try await api.updateService(update)
        do { let v = try await ids("public = true"); XCTAssertEqual(v, ["checkout", "login", "search"]) }
        do { let v = try await ids(#"aliases:"find""#); XCTAssertEqual(v, ["search"]) }
        // DeleteService still refuses a service others depend on.
        var del = Liaison_Correlation_V1_DeleteServiceRequest()
        del.name = "services/auth"
        del.requestID = UUID().uuidString
        await XCTAssertRPCError(.failedPrecondition, try await api.deleteService(del))
        var r = Liaison_Correlation_V1_ListServicesRequest()
        for filter in ["public = yes", "aliases = \"pay\"", "owner = \"x\"", "owner_team > \"a\""] {
            r.filter = filter
            await expectInvalid("filter", filter) { try await api.listServices(r) }
        }
        await stack.shutdown()
    }

    func testListEmergingIssuesFiltersOrderingsAndPaging() async throws {
        let stack = try await CorrelationStack()
        let api = stack.correlation
        // Issues written as the detector writes them (body and filter columns in one statement).
        let base = Date().addingTimeInterval(-3600)
        let specs: [(Int, Liaison_Common_V1_SymptomKind, String, Double, Double, Int64)] = [
            // state, symptom, service, lift, adjusted p, customers
            (1, .errors, "services/login", 5.5, 1e-6, 12),
            (1, .slow, "services/checkout", 2.5, 1e-3, 30),
            (3, .errors, "", 8.0, 1e-9, 7),
            (5, .unavailable, "services/login", 3.0, 5e-4, 20),
            (2, .errors, "services/checkout", 12.0, 1e-12, 40),
            (1, .errors, "services/checkout", 4.0, 1e-3, 9),
        ]
        var names: [String] = []
        for (i, (state, symptom, service, lift, p, customers)) in specs.enumerated() {
            let id = UUID()
            var issue = Liaison_Correlation_V1_EmergingIssue()
            issue.name = Store.issueName(id)
            issue.state = Liaison_Correlation_V1_EmergingIssue.State(rawValue: state)!
            issue.symptom = symptom
            issue.service = service
            issue.lift = lift
            issue.adjustedPValue = p
            issue.customerCount = customers
            issue.createTime = Google_Protobuf_Timestamp(date: base.addingTimeInterval(Double(i) * 60))
            try await stack.pool.query("""
                INSERT INTO emerging_issues (id, cluster_key, state, body, adjusted_p, symptom, service, lift, customer_count, create_time)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                """, [id, "k\(i)", state, ByteA(try Convert.bytes(issue)), p, symptom.rawValue, service, lift, customers,
                      issue.createTime.date])
            names.append(issue.name)
        }
        func list(_ filter: String, _ orderBy: String = "", pageSize: Int32 = 0) async throws -> [Int] {
            var r = Liaison_Correlation_V1_ListEmergingIssuesRequest()
            r.filter = filter
            r.orderBy = orderBy
            r.pageSize = pageSize
            var out: [Int] = []
            repeat {
                let page = try await api.listEmergingIssues(r)
                out += page.emergingIssues.map { names.firstIndex(of: $0.name)! }
                r.pageToken = page.nextPageToken
            } while !r.pageToken.isEmpty
            return out
        }
        do { let v = try await list(""); XCTAssertEqual(v, Array(0..<6).sorted { (specs[$0].4, names[$0]) < (specs[$1].4, names[$1]) }) }
        do { let v = try await list("", pageSize: 1), w = try await list(""); XCTAssertEqual(v, w) }
        do { let v = try await list("state = OPEN"); XCTAssertEqual(v, [0, 1, 5].sorted { (specs[$0].4, names[$0]) < (specs[$1].4, names[$1]) }) }
        do { let v = try await list("state = EXPIRED"); XCTAssertEqual(v, [3]) }
        do { let v = try await list("state != OPEN AND symptom = ERRORS", "create_time desc"); XCTAssertEqual(v, [4, 2]) }
        do { let v = try await list(#"service = "services/checkout""#, "customer_count desc"); XCTAssertEqual(v, [4, 1, 5]) }
        do { let v = try await list("lift >= 4 AND lift < 10", "create_time desc", pageSize: 1); XCTAssertEqual(v, [5, 2, 0]) }
        do { let v = try await list("adjusted_p_value < 0.0001"); XCTAssertEqual(v, [4, 2, 0]) }
        do { let v = try await list("symptom = SYMPTOM_KIND_SLOW"); XCTAssertEqual(v, [1]) }
        let created = ISO8601DateFormatter().string(from: base.addingTimeInterval(150))
        do { let v = try await list("create_time > \"\(created)\"", "create_time desc"); XCTAssertEqual(v, [5, 4, 3]) }
        do { let v = try await list("", "customer_count desc", pageSize: 2); XCTAssertEqual(v, [4, 1, 3, 0, 5, 2]) }
        var r = Liaison_Correlation_V1_ListEmergingIssuesRequest()
        for filter in ["state = CLOSED", "lift ~ 2", "adjusted_p = 0.1", "customer_count > 3", "service : \"x\""] {
            r.filter = filter
            await expectInvalid("filter", filter) { try await api.listEmergingIssues(r) }
        }
        r.filter = ""
        r.orderBy = "lift desc"
        await expectInvalid("order_by", "lift desc") { try await api.listEmergingIssues(r) }
        await stack.shutdown()
    }
}
