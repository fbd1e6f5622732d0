// CorrelationService: incidents (declare, get, list, update, lifecycle, postmortem).
import CorrelationDomain
import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf

extension CorrelationHandler {
    // MARK: Incidents

    public func declareIncident(request: Liaison_Correlation_V1_DeclareIncidentRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_Incident {
        var v: [APIError.FieldViolation] = []
        let i = request.incident
        if i.title.trimmingCharacters(in: .whitespaces).isEmpty { v.append(.init("incident.title", "is required")) }
        if i.services.isEmpty { v.append(.init("incident.services", "at least one service is required")) }
        if i.severity == .unspecified { v.append(.init("incident.severity", "is required")) }
        if request.source != .monitoring && request.source != .manual {
            v.append(.init("source", "must be INCIDENT_SOURCE_MONITORING or INCIDENT_SOURCE_MANUAL"))
        }
        v += Self.incidentTextViolations(i)
        if !v.isEmpty { throw APIError.invalidArgument(domain: domain, v) }
        let settings = self.settings
        return try await mutate("DeclareIncident", request.requestID, request) { c in
            var body = i
            body.services = try Store.validateServices(c, i.services, field: "incident.services")
            body.source = request.source
            body.emergingIssue = ""
            body.mitigations = []
            body.clearPostmortem()
            body.clearAcknowledgeTime(); body.clearMitigateTime(); body.clearResolveTime()
            return try declare(c, body, settings: settings)
        }
    }

    /// Inserts an incident, links matching open reports and publishes IncidentDeclared.
    func declare(_ c: PostgresConnection, _ body: Liaison_Correlation_V1_Incident, settings: CorrelationSettings) throws -> Liaison_Correlation_V1_Incident {
        let row = try Store.insertIncident(c, body, id: RandomUUID.make(), now: try Store.now(c))
        try Store.linkRecentReports(c, incident: row, settings: settings)
        let out = try Store.incident(c, row.id)
        let snapshot = out.incident
        try Store.publish(c, settings, { h in
            var e = Liaison_Correlation_V1_IncidentDeclared()
            e.header = h
            e.incident = snapshot
            return e
        }, aggregate: snapshot.name, version: out.version)
        return out.incident
    }

    public func getIncident(request: Liaison_Correlation_V1_GetIncidentRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_Incident {
        let id = try Store.incidentID(request.name)
        return try await read { c in try Store.incident(c, id).incident }
    }

    public func listIncidents(request: Liaison_Correlation_V1_ListIncidentsRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_ListIncidentsResponse {
        let q = try ListQuery(
            collection: "incidents", pageSize: request.pageSize, defaultSize: 50, maxSize: 500, filter: request.filter,
            parser: Self.incidentFilter, orderBy: request.orderBy, orderings: Self.incidentOrderings,
            pageToken: request.pageToken, codec: codec, domain: domain)
        let (codec, lifetime) = (self.codec, settings.pageTokenLifetime)
        return try await read { c in
            let page = try q.page(c, table: "incidents", columns: Store.incidentColumns, codec: codec, lifetime: lifetime)
            var out = Liaison_Correlation_V1_ListIncidentsResponse()
            out.incidents = try page.rows.map { try Store.incidentRow($0).incident }
            out.nextPageToken = page.next
            return out
        }
    }

    public func updateIncident(request: Liaison_Correlation_V1_UpdateIncidentRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_Incident {
        let id = try Store.incidentID(request.incident.name, field: "incident.name")
        let allowed: Set<String> = ["title", "description", "services", "severity", "commander", "labels", "impact_start_time"]
        if request.updateMask.paths.isEmpty { throw APIError.invalidArgument(domain: domain, field: "update_mask", "is required") }
        for p in request.updateMask.paths where !allowed.contains(p) {
            throw APIError.invalidArgument(domain: domain, field: "update_mask", "unknown or output-only path \"\(p)\"")
        }
        let n = request.incident
        let paths = Set(request.updateMask.paths)
        if paths.contains("title") && n.title.isEmpty { throw APIError.invalidArgument(domain: domain, field: "incident.title", "is required") }
        if paths.contains("services") && n.services.isEmpty { throw APIError.invalidArgument(domain: domain, field: "incident.services", "is required") }
        if paths.contains("severity") && n.severity == .unspecified { throw APIError.invalidArgument(domain: domain, field: "incident.severity", "is required") }
        let tooLong = Self.incidentTextViolations(n)
        if !tooLong.isEmpty { throw APIError.invalidArgument(domain: domain, tooLong) }
        let settings = self.settings
        return try await mutate("UpdateIncident", request.requestID, request) { c in
            var row = try Store.incident(c, id, forUpdate: true)
            try Store.checkEtag(request.etag, row.version, name: row.incident.name)
            let previousSeverity = row.incident.severity
            if paths.contains("title") { row.incident.title = n.title }
            if paths.contains("description") { row.incident.description_p = n.description_p }
            if paths.contains("services") { row.incident.services = try Store.validateServices(c, n.services, field: "incident.services") }
            if paths.contains("severity") { row.incident.severity = n.severity }
            if paths.contains("commander") { row.incident.commander = n.commander }
            if paths.contains("labels") { row.incident.labels = n.labels }
            if paths.contains("impact_start_time") {
                row.incident.impactStartTime = n.hasImpactStartTime ? n.impactStartTime : row.incident.createTime
            }
            let saved = try Store.saveIncident(c, row, now: try Store.now(c))
            let snapshot = saved.incident
            try Store.publish(c, settings, { h in
                var e = Liaison_Correlation_V1_IncidentUpdated()
                e.header = h
                e.incident = snapshot
                e.previousSeverity = previousSeverity
                e.changedFields = request.updateMask.paths
                return e
            }, aggregate: snapshot.name, version: saved.version)
            return saved.incident
        }
    }

    /// A state transition: loads for update, checks etag and allowed states, applies, saves, publishes.
    func transition(
        scope: String, name: String, etag: String, requestID: String, request: some SwiftProtobuf.Message,
        allowed: Set<Liaison_Correlation_V1_IncidentState>, describe: String,
        mitigation: Liaison_Correlation_V1_Mitigation? = nil,
        _ apply: @escaping @Sendable (inout Liaison_Correlation_V1_Incident, Date) -> Void
    ) async throws -> Liaison_Correlation_V1_Incident {
        let id = try Store.incidentID(name)
        let settings = self.settings
        return try await mutate(scope, requestID, request) { c in
            var row = try Store.incident(c, id, forUpdate: true)
            try Store.checkEtag(etag, row.version, name: row.incident.name)
            let previous = row.incident.state
            guard allowed.contains(previous) else {
                throw APIError.failedPrecondition(domain: domain, subject: row.incident.name,
                                                  "incident is \(previous) and \(describe)")
            }
            let now = try Store.now(c)
            apply(&row.incident, now)
            let saved = try Store.saveIncident(c, row, now: now)
            let snapshot = saved.incident
            if previous != snapshot.state || mitigation != nil {
                try Store.publish(c, settings, { h in
                    var e = Liaison_Correlation_V1_IncidentStatusChanged()
                    e.header = h
                    e.incident = snapshot
                    e.previousState = previous
                    if let mitigation { e.mitigation = mitigation }
                    return e
                }, aggregate: snapshot.name, version: saved.version)
            }
            return saved.incident
        }
    }

    public func acknowledgeIncident(request: Liaison_Correlation_V1_AcknowledgeIncidentRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_Incident {
        try await transition(scope: "AcknowledgeIncident", name: request.name, etag: request.etag, requestID: request.requestID,
                             request: request, allowed: [.declared], describe: "only a DECLARED incident can be acknowledged") { i, now in
            i.state = .acknowledged
            i.acknowledgeTime = Convert.timestamp(now)
            if i.commander.isEmpty && !request.actor.isEmpty { i.commander = request.actor }
        }
    }

    public func mitigateIncident(request: Liaison_Correlation_V1_MitigateIncidentRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_Incident {
        if request.mitigation.description_p.trimmingCharacters(in: .whitespaces).isEmpty {
            throw APIError.invalidArgument(domain: domain, field: "mitigation.description", "is required")
        }
        let m = request.mitigation
        return try await transition(scope: "MitigateIncident", name: request.name, etag: request.etag, requestID: request.requestID,
                                    request: request, allowed: [.declared, .acknowledged, .mitigated],
                                    describe: "a RESOLVED incident cannot be mitigated", mitigation: m) { i, now in
            var applied = m
            if !applied.hasApplyTime { applied.applyTime = Convert.timestamp(now) }
            i.state = .mitigated
            i.mitigations.append(applied)
            i.mitigateTime = applied.applyTime
        }
    }

    public func resolveIncident(request: Liaison_Correlation_V1_ResolveIncidentRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_Incident {
        try await transition(scope: "ResolveIncident", name: request.name, etag: request.etag, requestID: request.requestID,
                             request: request, allowed: [.declared, .acknowledged, .mitigated],
                             describe: "it is already resolved") { i, now in
            i.state = .resolved
            i.resolveTime = request.hasResolveTime ? request.resolveTime : Convert.timestamp(now)
        }
    }

    public func reopenIncident(request: Liaison_Correlation_V1_ReopenIncidentRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_Incident {
        if request.reason.trimmingCharacters(in: .whitespaces).isEmpty {
            throw APIError.invalidArgument(domain: domain, field: "reason", "is required")
        }
        return try await transition(scope: "ReopenIncident", name: request.name, etag: request.etag, requestID: request.requestID,
                                    request: request, allowed: [.resolved], describe: "only a RESOLVED incident can be reopened") { i, _ in
            i.state = .acknowledged
            i.clearResolveTime()
        }
    }

    public func attachPostmortem(request: Liaison_Correlation_V1_AttachPostmortemRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_Incident {
        var v: [APIError.FieldViolation] = []
        if request.postmortem.uri.isEmpty { v.append(.init("postmortem.uri", "is required")) }
        if request.postmortem.summary.isEmpty { v.append(.init("postmortem.summary", "is required")) }
        if !v.isEmpty { throw APIError.invalidArgument(domain: domain, v) }
        let id = try Store.incidentID(request.name)
        let settings = self.settings
        return try await mutate("AttachPostmortem", request.requestID, request) { c in
            var row = try Store.incident(c, id, forUpdate: true)
            try Store.checkEtag(request.etag, row.version, name: row.incident.name)
            guard row.incident.state == .resolved else {
                throw APIError.failedPrecondition(domain: domain, subject: row.incident.name, "a postmortem can only be attached to a RESOLVED incident")
            }
            let now = try Store.now(c)
            row.incident.postmortem = request.postmortem
            if !request.postmortem.hasPublishTime { row.incident.postmortem.publishTime = Convert.timestamp(now) }
            let saved = try Store.saveIncident(c, row, now: now)
            let snapshot = saved.incident
            try Store.publish(c, settings, { h in
                var e = Liaison_Correlation_V1_PostmortemAttached()
                e.header = h
                e.incident = snapshot
                return e
            }, aggregate: snapshot.name, version: saved.version)
            return saved.incident
        }
    }
}
