// CorrelationService: emerging issues.
import CorrelationDomain
import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf

extension CorrelationHandler {
    // MARK: Emerging issues

    public func getEmergingIssue(request: Liaison_Correlation_V1_GetEmergingIssueRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_EmergingIssue {
        let id = try Store.issueID(request.name)
        return try await read { c in try EmergingStore.issue(c, id).issue }
    }

    public func listEmergingIssues(request: Liaison_Correlation_V1_ListEmergingIssuesRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_ListEmergingIssuesResponse {
        let q = try ListQuery(
            collection: "emergingIssues", pageSize: request.pageSize, defaultSize: 50, maxSize: 500, filter: request.filter,
            parser: Self.issueFilter, orderBy: request.orderBy, orderings: Self.issueOrderings,
            pageToken: request.pageToken, codec: codec, domain: domain)
        let (codec, lifetime) = (self.codec, settings.pageTokenLifetime)
        return try await read { c in
            let page = try q.page(c, table: "emerging_issues", columns: "id, body, version", codec: codec, lifetime: lifetime)
            var out = Liaison_Correlation_V1_ListEmergingIssuesResponse()
            out.emergingIssues = try page.rows.map { try EmergingStore.issueRow($0).issue }
            out.nextPageToken = page.next
            return out
        }
    }

    public func promoteEmergingIssue(request: Liaison_Correlation_V1_PromoteEmergingIssueRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_PromoteEmergingIssueResponse {
        let id = try Store.issueID(request.name)
        var v: [APIError.FieldViolation] = []
        if request.title.trimmingCharacters(in: .whitespaces).isEmpty { v.append(.init("title", "is required")) }
        if request.severity == .unspecified { v.append(.init("severity", "is required")) }
        if !v.isEmpty { throw APIError.invalidArgument(domain: domain, v) }
        let settings = self.settings
        return try await mutate("PromoteEmergingIssue", request.requestID, request) { c in
            var issue = try EmergingStore.issue(c, id, forUpdate: true)
            try Store.checkEtag(request.etag, issue.version, name: issue.issue.name)
            guard issue.issue.state == .open else {
                throw APIError.failedPrecondition(domain: domain, subject: issue.issue.name, "emerging issue is \(issue.issue.state), not OPEN")
            }
            let services = request.services.isEmpty ? (issue.issue.service.isEmpty ? [] : [issue.issue.service]) : request.services
            if services.isEmpty {
                throw APIError.invalidArgument(domain: domain, field: "services", "the issue names no service: give at least one")
            }
            var body = Liaison_Correlation_V1_Incident()
            body.title = request.title
            body.severity = request.severity
            body.services = try Store.validateServices(c, services, field: "services")
            body.source = .emergingIssue
            body.emergingIssue = issue.issue.name
            body.commander = request.actor
            body.impactStartTime = issue.issue.firstReportTime
            let now = try Store.now(c)
            let row = try Store.insertIncident(c, body, id: RandomUUID.make(), now: now)
            let agent = request.actor.isEmpty ? "correlation" : request.actor
            for r in try c.query("SELECT \(Store.reportColumns) FROM reports WHERE emerging_issue = $1 ORDER BY receive_time", [id]).rows {
                _ = try Store.createLink(c, incident: row, report: try Store.reportRow(r), origin: .automatic, state: .confirmed, score: 1,
                                         reasons: [Scorer.reason("emerging_issue", 1, "report of \(issue.issue.name)")],
                                         agent: agent, note: "promoted from \(issue.issue.name)", settings: settings)
            }
            try Store.linkRecentReports(c, incident: try Store.incident(c, row.id), settings: settings)
            let incident = try Store.incident(c, row.id).incident
            issue.issue.state = .promoted
            issue.issue.incident = incident.name
            issue = try EmergingStore.save(c, issue, now: now)
            let i = incident
            try Store.publish(c, settings, { h in
                var ev = Liaison_Correlation_V1_IncidentDeclared()
                ev.header = h
                ev.incident = i
                return ev
            }, aggregate: i.name, version: 1)
            try EmergingStore.publishStatusChanged(c, issue, settings: settings)
            var out = Liaison_Correlation_V1_PromoteEmergingIssueResponse()
            out.emergingIssue = issue.issue
            out.incident = incident
            return out
        }
    }

    public func dismissEmergingIssue(request: Liaison_Correlation_V1_DismissEmergingIssueRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_EmergingIssue {
        let id = try Store.issueID(request.name)
        if request.reason.trimmingCharacters(in: .whitespaces).isEmpty {
            throw APIError.invalidArgument(domain: domain, field: "reason", "is required")
        }
        let settings = self.settings
        return try await mutate("DismissEmergingIssue", request.requestID, request) { c in
            var issue = try EmergingStore.issue(c, id, forUpdate: true)
            try Store.checkEtag(request.etag, issue.version, name: issue.issue.name)
            guard issue.issue.state == .open else {
                throw APIError.failedPrecondition(domain: domain, subject: issue.issue.name, "emerging issue is \(issue.issue.state), not OPEN")
            }
            issue.issue.state = .dismissed
            issue.issue.dismissReason = request.reason
            issue = try EmergingStore.save(c, issue, now: try Store.now(c))
            try EmergingStore.publishStatusChanged(c, issue, settings: settings)
            return issue.issue
        }
    }
}
