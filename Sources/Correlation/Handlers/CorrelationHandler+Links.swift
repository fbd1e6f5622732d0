// CorrelationService: links between reports and incidents.
import CorrelationDomain
import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf

extension CorrelationHandler {
    // MARK: Links

    public func getLink(request: Liaison_Correlation_V1_GetLinkRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_Link {
        _ = try Store.linkIDs(request.name)
        return try await read { c in try Store.link(c, request.name).link }
    }

    public func listLinks(request: Liaison_Correlation_V1_ListLinksRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_ListLinksResponse {
        let all = request.parent == "incidents/-"
        let incident = all ? nil : try Store.incidentID(request.parent, field: "parent")
        let q = try ListQuery(
            collection: "links", parent: request.parent, pageSize: request.pageSize, defaultSize: 100, maxSize: 1000,
            filter: request.filter, parser: Self.linkFilter, orderBy: request.orderBy, orderings: Self.linkOrderings,
            pageToken: request.pageToken, codec: codec, domain: domain)
        let (codec, lifetime) = (self.codec, settings.pageTokenLifetime)
        return try await read { c in
            if let incident { _ = try Store.incident(c, incident) }
            let page = try q.page(c, table: "links", columns: Store.linkColumns,
                                  conditions: incident.map { [("incident_id = $?::uuid", $0)] } ?? [], codec: codec, lifetime: lifetime)
            var out = Liaison_Correlation_V1_ListLinksResponse()
            out.links = try page.rows.map { try Store.linkRow($0).link }
            out.nextPageToken = page.next
            return out
        }
    }

    static func reportList(_ reports: [String], max: Int = 500) throws -> [String] {
        guard (1...max).contains(reports.count) else {
            throw APIError.invalidArgument(domain: domain, field: "reports", "must hold between 1 and \(max) reports")
        }
        return try reports.enumerated().map { try Store.reportID($0.element, field: "reports[\($0.offset)]") }
    }

    public func linkReports(request: Liaison_Correlation_V1_LinkReportsRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_LinkReportsResponse {
        let id = try Store.incidentID(request.incident, field: "incident")
        let reports = try Self.reportList(request.reports)
        if request.agent.isEmpty { throw APIError.invalidArgument(domain: domain, field: "agent", "is required") }
        let settings = self.settings
        return try await mutate("LinkReports", request.requestID, request) { c in
            let incident = try Store.incident(c, id, forUpdate: true)
            var out = Liaison_Correlation_V1_LinkReportsResponse()
            for (i, rid) in reports.enumerated() {
                guard let report = try Store.report(c, rid, forUpdate: true) else {
                    throw APIError.notFound(domain: domain, resourceType: "liaison.intake.v1.Report", name: request.reports[i])
                }
                let now = try Store.now(c)
                if var existing = try Store.link(c, incident: id, report: rid, forUpdate: true) {
                    if existing.link.state != .confirmed {
                        existing.link.state = .confirmed
                        existing.link.origin = .manual
                        existing.link.score = 1
                        existing.link.agent = request.agent
                        existing.link.note = request.note
                        existing = try Store.saveLink(c, existing, now: now)
                        try Store.confirmed(c, incident: incident, report: report, link: existing.link, version: existing.version, settings: settings)
                    }
                    out.links.append(existing.link)
                } else {
                    let row = try Store.createLink(
                        c, incident: incident, report: report, origin: .manual, state: .confirmed, score: 1,
                        reasons: [Scorer.reason("manual", 1, "linked by \(request.agent)")],
                        agent: request.agent, note: request.note, settings: settings)!
                    out.links.append(row.link)
                }
            }
            return out
        }
    }

    public func unlinkReports(request: Liaison_Correlation_V1_UnlinkReportsRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_UnlinkReportsResponse {
        let id = try Store.incidentID(request.incident, field: "incident")
        let reports = try Self.reportList(request.reports)
        if request.agent.isEmpty { throw APIError.invalidArgument(domain: domain, field: "agent", "is required") }
        let settings = self.settings
        return try await mutate("UnlinkReports", request.requestID, request) { c in
            _ = try Store.incident(c, id, forUpdate: true)
            var out = Liaison_Correlation_V1_UnlinkReportsResponse()
            for rid in reports {
                guard var link = try Store.link(c, incident: id, report: rid, forUpdate: true),
                      link.link.state == .confirmed || link.link.state == .suggested,
                      let report = try Store.report(c, rid, forUpdate: true) else { continue }
                let wasConfirmed = link.link.state == .confirmed
                link.link.state = .unlinked
                link.link.agent = request.agent
                link.link.note = request.note
                link = try Store.saveLink(c, link, now: try Store.now(c))
                if wasConfirmed { try Store.unconfirmed(c, incidentID: id, report: report, link: link.link, version: link.version, settings: settings) }
                out.links.append(link.link)
            }
            return out
        }
    }

    func decide(scope: String, name: String, etag: String, agent: String, note: String, requestID: String,
                request: some SwiftProtobuf.Message, confirm: Bool) async throws -> Liaison_Correlation_V1_Link {
        let (incidentID, _) = try Store.linkIDs(name)
        if agent.isEmpty { throw APIError.invalidArgument(domain: domain, field: "agent", "is required") }
        let settings = self.settings
        return try await mutate(scope, requestID, request) { c in
            let incident = try Store.incident(c, incidentID, forUpdate: true)
            var link = try Store.link(c, name, forUpdate: true)
            try Store.checkEtag(etag, link.version, name: name)
            guard link.link.state == .suggested else {
                throw APIError.failedPrecondition(domain: domain, subject: name, "link is \(link.link.state), not SUGGESTED")
            }
            link.link.state = confirm ? .confirmed : .rejected
            link.link.agent = agent
            link.link.note = note
            link = try Store.saveLink(c, link, now: try Store.now(c))
            if confirm, let report = try Store.report(c, link.reportID, forUpdate: true) {
                try Store.confirmed(c, incident: incident, report: report, link: link.link, version: link.version, settings: settings)
            }
            return link.link
        }
    }

    public func confirmLink(request: Liaison_Correlation_V1_ConfirmLinkRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_Link {
        try await decide(scope: "ConfirmLink", name: request.name, etag: request.etag, agent: request.agent, note: "",
                         requestID: request.requestID, request: request, confirm: true)
    }

    public func rejectLink(request: Liaison_Correlation_V1_RejectLinkRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_Link {
        try await decide(scope: "RejectLink", name: request.name, etag: request.etag, agent: request.agent, note: request.note,
                         requestID: request.requestID, request: request, confirm: false)
    }
}
