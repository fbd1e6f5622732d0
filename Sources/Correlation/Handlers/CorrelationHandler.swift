import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf

/// liaison.correlation.v1.CorrelationService over the correlation database. Stateless: any
/// replica answers any call (state lives in PostgreSQL).
public struct CorrelationHandler: Liaison_Correlation_V1_CorrelationService.SimpleServiceProtocol {
    let pool: PostgresPool
    let settings: CorrelationSettings
    let logger: Logger
    let codec: PageTokenCodec
    /// The replica's one feed of incident revisions for WatchIncident.
    let feed: IncidentRevisionFeed

    public init(pool: PostgresPool, settings: CorrelationSettings, logger: Logger) {
        self.pool = pool
        self.settings = settings
        self.logger = logger
        self.codec = PageTokenCodec(key: settings.pageTokenKey)
        self.feed = IncidentRevisionFeed(pool: pool, interval: settings.watchPoll, maxWatchers: settings.maxWatchers, logger: logger)
    }

    // MARK: Plumbing

    static func requireRequestID(_ id: String) throws {
        try RequestFields.requestID(id, domain: domain)
    }

    /// Runs a mutation once per request_id: replays return the stored response.
    func mutate<Req: SwiftProtobuf.Message, Resp: SwiftProtobuf.Message>(
        _ scope: String, _ requestID: String, _ request: Req,
        _ body: @escaping @Sendable (PostgresConnection) throws -> Resp
    ) async throws -> Resp {
        try Self.requireRequestID(requestID)
        let bytes = try Convert.bytes(request)
        return try await run {
            try await Mutation.once(pool, scope: scope, requestID: requestID, requestBytes: bytes, body)
        }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await run { try await pool.transaction(.repeatableRead, body) }
    }

    /// Maps every error the way every service does (the kit's `ErrorMapper`).
    func run<T>(_ method: String = #function, _ body: () async throws -> T) async throws -> T {
        try await ErrorMapper(domain: domain, logger: logger).run(method, body)
    }

    static func pageSize(_ n: Int32, default d: Int, max m: Int) throws -> Int {
        try RequestFields.pageSize(n, default: d, max: m, domain: domain)
    }

    // MARK: Services catalogue

    /// Length limits of an incident's texts (a stored text must fit its indexes).
    static func incidentTextViolations(_ i: Liaison_Correlation_V1_Incident, prefix: String = "incident.") -> [APIError.FieldViolation] {
        var texts: [(String, String, Int)] = [
            (prefix + "title", i.title, 500), (prefix + "description", i.description_p, 20_000),
            (prefix + "commander", i.commander, 256),
            (prefix + "external_reference.system", i.externalReference.system, 64),
            (prefix + "external_reference.id", i.externalReference.id, 256),
            (prefix + "external_reference.uri", i.externalReference.uri, 2048),
        ]
        for (k, v) in i.labels { texts += [(prefix + "labels", k, 63), (prefix + "labels[\(k.prefix(63))]", v, 256)] }
        for (n, s) in i.services.enumerated() { texts.append((prefix + "services[\(n)]", s, 200)) }
        return RequestFields.lengthViolations(texts)
    }

    /// Length limits of a technical service's texts.
    static func serviceTextViolations(_ s: Liaison_Correlation_V1_TechnicalService) -> [APIError.FieldViolation] {
        var texts: [(String, String, Int)] = [
            ("service.display_name", s.displayName, 200), ("service.owner_team", s.ownerTeam, 200),
            ("service.public_display_name", s.publicDisplayName, 200),
        ]
        for (n, a) in s.aliases.enumerated() { texts.append(("service.aliases[\(n)]", a, 100)) }
        for (n, d) in s.dependencies.enumerated() { texts.append(("service.dependencies[\(n)]", d, 200)) }
        return RequestFields.lengthViolations(texts)
    }

    static func validServiceID(_ id: String) -> Bool {
        (1...63).contains(id.utf8.count) && id.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }
    }

    public func createService(request: Liaison_Correlation_V1_CreateServiceRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_TechnicalService {
        var v: [APIError.FieldViolation] = []
        if !Self.validServiceID(request.serviceID) { v.append(.init("service_id", "must be 1-63 characters of [a-z0-9-]")) }
        if request.service.displayName.trimmingCharacters(in: .whitespaces).isEmpty { v.append(.init("service.display_name", "is required")) }
        for (i, a) in request.service.aliases.enumerated() where a.trimmingCharacters(in: .whitespaces).isEmpty {
            v.append(.init("service.aliases[\(i)]", "must not be empty"))
        }
        v += Self.serviceTextViolations(request.service)
        if !v.isEmpty { throw APIError.invalidArgument(domain: domain, v) }
        let settings = self.settings
        return try await mutate("CreateService", request.requestID, request) { c in
            let now = try Store.now(c)
            var svc = request.service
            svc.name = "services/" + request.serviceID
            svc.createTime = Convert.timestamp(now)
            svc.updateTime = svc.createTime
            svc.etag = ""
            _ = try Store.validateServices(c, svc.dependencies, field: "service.dependencies")
            let inserted = try c.query("""
                INSERT INTO services (id, body, public, owner_team, aliases, dependencies) VALUES ($1, $2, $3, $4, $5::text[], $6::text[])
                ON CONFLICT DO NOTHING
                """, [request.serviceID, ByteA(try Convert.bytes(svc))] + Store.serviceColumns(svc)).affectedRows
            if inserted == 0 {
                throw APIError.alreadyExists(domain: domain, resourceType: "liaison.correlation.v1.TechnicalService", name: svc.name)
            }
            try Store.writeAliases(c, id: request.serviceID, aliases: svc.aliases)
            svc.etag = Store.etag(1)
            let out = svc
            try Store.publish(c, settings, { h in
                var e = Liaison_Correlation_V1_ServiceUpserted()
                e.header = h
                e.service = out
                return e
            }, aggregate: svc.name, version: 1)
            return svc
        }
    }

    static func serviceName(_ name: String, field: String = "name") throws -> String {
        guard name.hasPrefix("services/"), name.count > 9 else {
            throw APIError.invalidArgument(domain: domain, field: field, "must be services/{service}")
        }
        return String(name.dropFirst(9))
    }

    public func getService(request: Liaison_Correlation_V1_GetServiceRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_TechnicalService {
        let id = try Self.serviceName(request.name)
        return try await read { c in
            guard let (svc, _) = try Store.service(c, id) else {
                throw APIError.notFound(domain: domain, resourceType: "liaison.correlation.v1.TechnicalService", name: request.name)
            }
            return svc
        }
    }

    public func listServices(request: Liaison_Correlation_V1_ListServicesRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_ListServicesResponse {
        let size = try Self.pageSize(request.pageSize, default: 100, max: 1000)
        let filter = try Self.serviceFilter.parse(request.filter, firstParameter: 1)
        let query = QueryFingerprint(collection: "services", filter: request.filter, orderBy: "")
        let after = try position(request.pageToken, query)
        let (codec, lifetime) = (self.codec, settings.pageTokenLifetime)
        return try await read { c in
            let page = try KeysetPage.page(c, table: "services", columns: "id, body, version", filter: filter,
                                     ordering: ListOrdering(column: "id", key: .idOnly, descending: false, idType: "text"),
                                     after: after, size: size, query: query, codec: codec, lifetime: lifetime)
            var out = Liaison_Correlation_V1_ListServicesResponse()
            for row in page.rows {
                var svc = try Liaison_Correlation_V1_TechnicalService(serializedBytes: try row.decode(ByteA.self, 1).bytes)
                svc.etag = Store.etag(try row.decode(Int64.self, 2))
                out.services.append(svc)
            }
            out.nextPageToken = page.next
            return out
        }
    }

    public func updateService(request: Liaison_Correlation_V1_UpdateServiceRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_TechnicalService {
        let id = try Self.serviceName(request.service.name, field: "service.name")
        let allowed: Set<String> = ["display_name", "aliases", "dependencies", "owner_team", "public", "public_display_name"]
        if request.updateMask.paths.isEmpty { throw APIError.invalidArgument(domain: domain, field: "update_mask", "is required") }
        for p in request.updateMask.paths where !allowed.contains(p) {
            throw APIError.invalidArgument(domain: domain, field: "update_mask", "unknown or output-only path \"\(p)\"")
        }
        if request.updateMask.paths.contains("display_name") && request.service.displayName.isEmpty {
            throw APIError.invalidArgument(domain: domain, field: "service.display_name", "is required")
        }
        let tooLong = Self.serviceTextViolations(request.service)
        if !tooLong.isEmpty { throw APIError.invalidArgument(domain: domain, tooLong) }
        let settings = self.settings
        return try await mutate("UpdateService", request.requestID, request) { c in
            guard let (current, version) = try Store.service(c, id, forUpdate: true), current.name == request.service.name else {
                throw APIError.notFound(domain: domain, resourceType: "liaison.correlation.v1.TechnicalService", name: request.service.name)
            }
            try Store.checkEtag(request.etag, version, name: current.name)
            var svc = current
            let n = request.service
            for p in request.updateMask.paths {
                switch p {
                case "display_name": svc.displayName = n.displayName
                case "aliases": svc.aliases = n.aliases
                case "dependencies": svc.dependencies = n.dependencies
                case "owner_team": svc.ownerTeam = n.ownerTeam
                case "public": svc.public = n.public
                default: svc.publicDisplayName = n.publicDisplayName
                }
            }
            if request.updateMask.paths.contains("dependencies") {
                _ = try Store.validateServices(c, svc.dependencies, field: "service.dependencies")
            }
            svc.updateTime = Convert.timestamp(try Store.now(c))
            svc.etag = ""
            try c.query("""
                UPDATE services SET body = $2, public = $3, owner_team = $4, aliases = $5::text[], dependencies = $6::text[],
                       version = version + 1 WHERE id = $1
                """, [id, ByteA(try Convert.bytes(svc))] + Store.serviceColumns(svc))
            if request.updateMask.paths.contains("aliases") { try Store.writeAliases(c, id: id, aliases: svc.aliases) }
            svc.etag = Store.etag(version + 1)
            let out = svc
            try Store.publish(c, settings, { h in
                var e = Liaison_Correlation_V1_ServiceUpserted()
                e.header = h
                e.service = out
                return e
            }, aggregate: svc.name, version: version + 1)
            return svc
        }
    }

    public func deleteService(request: Liaison_Correlation_V1_DeleteServiceRequest, context: ServerContext) async throws -> Google_Protobuf_Empty {
        let id = try Self.serviceName(request.name)
        let settings = self.settings
        return try await mutate("DeleteService", request.requestID, request) { c in
            guard let (svc, version) = try Store.service(c, id, forUpdate: true), svc.name == request.name else {
                throw APIError.notFound(domain: domain, resourceType: "liaison.correlation.v1.TechnicalService", name: request.name)
            }
            try Store.checkEtag(request.etag, version, name: request.name)
            if try c.query("SELECT 1 FROM incidents WHERE state <> 4 AND $1 = ANY(services) LIMIT 1", [request.name]).count > 0 {
                throw APIError.failedPrecondition(domain: domain, type: "REFERENCED", subject: request.name, "referenced by an unresolved incident")
            }
            if let other = try c.query("SELECT id FROM services WHERE id <> $1 AND $2 = ANY(dependencies) ORDER BY id LIMIT 1",
                                       [id, request.name]).first?.decode(String.self, 0) {
                throw APIError.failedPrecondition(domain: domain, type: "REFERENCED", subject: request.name, "a dependency of services/\(other)")
            }
            try c.query("DELETE FROM services WHERE id = $1", [id])
            try Store.publish(c, settings, { h in
                var e = Liaison_Correlation_V1_ServiceDeleted()
                e.header = h
                e.service = request.name
                return e
            }, aggregate: request.name, version: version + 1)
            return Google_Protobuf_Empty()
        }
    }

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
        let size = try Self.pageSize(request.pageSize, default: 50, max: 500)
        let filter = try Self.incidentFilter.parse(request.filter, firstParameter: 1)
        let (orderBy, ordering) = try Self.ordering(request.orderBy, Self.incidentOrderings)
        let query = QueryFingerprint(collection: "incidents", filter: request.filter, orderBy: orderBy)
        let after = try position(request.pageToken, query)
        let (codec, lifetime) = (self.codec, settings.pageTokenLifetime)
        return try await read { c in
            let page = try KeysetPage.page(c, table: "incidents", columns: Store.incidentColumns, filter: filter, ordering: ordering,
                                     after: after, size: size, query: query, codec: codec, lifetime: lifetime)
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

    // MARK: Links

    public func getLink(request: Liaison_Correlation_V1_GetLinkRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_Link {
        _ = try Store.linkIDs(request.name)
        return try await read { c in try Store.link(c, request.name).link }
    }

    public func listLinks(request: Liaison_Correlation_V1_ListLinksRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_ListLinksResponse {
        let all = request.parent == "incidents/-"
        let incident = all ? nil : try Store.incidentID(request.parent, field: "parent")
        let size = try Self.pageSize(request.pageSize, default: 100, max: 1000)
        let filter = try Self.linkFilter.parse(request.filter, firstParameter: 1)
        let (orderBy, ordering) = try Self.ordering(request.orderBy, Self.linkOrderings)
        let query = QueryFingerprint(collection: "links", parent: request.parent, filter: request.filter, orderBy: orderBy)
        let after = try position(request.pageToken, query)
        let (codec, lifetime) = (self.codec, settings.pageTokenLifetime)
        return try await read { c in
            if let incident { _ = try Store.incident(c, incident) }
            let page = try KeysetPage.page(c, table: "links", columns: Store.linkColumns, filter: filter,
                                     conditions: incident.map { [("incident_id = $?::uuid", $0)] } ?? [], ordering: ordering,
                                     after: after, size: size, query: query, codec: codec, lifetime: lifetime)
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

    // MARK: Blast radius, timeline, watch

    public func getBlastRadius(request: Liaison_Correlation_V1_GetBlastRadiusRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_BlastRadius {
        let id = try Store.incidentID(request.incident, field: "incident")
        let options = try Analytics.blastOptions(request)
        let settings = self.settings
        return try await run {
            try await pool.transaction { c in
                let incident = try Store.incident(c, id)
                return try Analytics.blastRadius(c, incident: incident, options: options, settings: settings, requireData: true)
            }
        }
    }

    public func getIncidentTimeline(request: Liaison_Correlation_V1_GetIncidentTimelineRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_IncidentTimeline {
        let id = try Store.incidentID(request.incident, field: "incident")
        var width: TimeInterval = 300
        if request.hasBucketWidth {
            width = Double(request.bucketWidth.seconds) + Double(request.bucketWidth.nanos) / 1e9
            if width < 60 { throw APIError.invalidArgument(domain: domain, field: "bucket_width", "must be at least 1 minute") }
        }
        var window: (Date, Date)? = nil
        if request.hasWindow {
            let start = request.window.hasStartTime ? request.window.startTime.date : Convert.openStart
            let end = request.window.hasEndTime ? request.window.endTime.date : Date()
            window = (start, end)
        }
        var breakdown = SegmentDimension.region
        if request.breakdown != .unspecified {
            guard let d = SegmentDimension(rawValue: request.breakdown.rawValue) else {
                throw APIError.invalidArgument(domain: domain, field: "breakdown", "unknown dimension")
            }
            breakdown = d
        }
        let settings = self.settings
        let w = window, b = breakdown, bw = width
        return try await read { c in
            let incident = try Store.incident(c, id)
            var win = w
            if let x = win, x.0 == Convert.openStart { win = (incident.incident.impactStartTime.date, x.1) }
            return try Analytics.timeline(c, incident: incident, width: bw, window: win, breakdown: b, settings: settings)
        }
    }

    public func watchIncident(
        request: Liaison_Correlation_V1_WatchIncidentRequest,
        response: RPCWriter<Liaison_Correlation_V1_WatchIncidentResponse>, context: ServerContext
    ) async throws {
        let id = try Store.incidentID(request.incident, field: "incident")
        var minInterval: Duration = .seconds(10)
        if request.hasMinInterval {
            let s = Double(request.minInterval.seconds) + Double(request.minInterval.nanos) / 1e9
            if s < 1 { throw APIError.invalidArgument(domain: domain, field: "min_interval", "must be at least 1 s") }
            minInterval = .milliseconds(Int64(s * 1000))
        }
        var width: TimeInterval = 300
        if request.hasBucketWidth {
            width = Double(request.bucketWidth.seconds)
            if width < 60 { throw APIError.invalidArgument(domain: domain, field: "bucket_width", "must be at least 1 minute") }
        }
        let options = try Analytics.blastOptions(request.blastRadiusOptions, field: "blast_radius_options.")
        let settings = self.settings
        var lastSequence = request.resumeAfterSequence
        var lastSent: ContinuousClock.Instant? = nil
        var previous: Liaison_Correlation_V1_WatchIncidentResponse? = nil
        let bw = width
        // The first look reads the incident (NOT_FOUND for an unknown one); after it, the
        // replica's shared feed wakes this stream when the revision moves.
        _ = try await read { c in try Store.incident(c, id) }
        do {
            try await feed.watching(id) {
                var first = true
                while true {
                    try Task.checkCancellation()
                    let revision: Int64
                    if first {
                        revision = try await read { c in try Store.incident(c, id).revision }
                        first = false
                    } else {
                        revision = try await feed.revision(of: id, after: lastSequence)
                        if revision == Int64.min { _ = try await read { c in try Store.incident(c, id) } }  // deleted: NOT_FOUND
                    }
                    if revision <= lastSequence {
                        // Resumed with nothing new: the client already has this snapshot.
                        let state = try await read { c in try Store.incident(c, id).incident.state }
                        if state == .resolved { return }
                        continue
                    }
                    if let lastSent, ContinuousClock.now - lastSent < minInterval {
                        try await Task.sleep(until: lastSent + minInterval, clock: .continuous)
                    }
                    let snap = try await run {
                        try await pool.transaction { c -> Liaison_Correlation_V1_WatchIncidentResponse in
                            let incident = try Store.incident(c, id)
                            var s = Liaison_Correlation_V1_WatchIncidentResponse()
                            s.sequence = incident.revision
                            s.incident = incident.incident
                            s.snapshotTime = Convert.timestamp(try Store.now(c))
                            if incident.incident.linkedReportCount > 0 {
                                s.blastRadius = try Analytics.blastRadius(c, incident: incident, options: options, settings: settings, requireData: false)
                            }
                            let timeline = try Analytics.timeline(c, incident: incident, width: bw, window: nil, breakdown: .region, settings: settings)
                            s.trend = timeline.trend
                            return s
                        }
                    }
                    var s = snap
                    if let p = previous {
                        let oldAffected = Set(p.blastRadius.affected.map { try! $0.segment.serializedBytes() as [UInt8] })
                        let newAffected = s.blastRadius.affected.filter { !oldAffected.contains(try! $0.segment.serializedBytes() as [UInt8]) }
                        if p.incident.state != s.incident.state || p.incident.severity != s.incident.severity || p.incident.etag != s.incident.etag {
                            s.changes.append(.incident)
                        }
                        if p.blastRadius.affected != s.blastRadius.affected || p.blastRadius.reportingCustomers != s.blastRadius.reportingCustomers {
                            s.changes.append(.blastRadius)
                        }
                        if p.trend.verdict != s.trend.verdict { s.changes.append(.trend) }
                        if !newAffected.isEmpty {
                            s.changes.append(.spread)
                            s.newSpread = newAffected.map { e in
                                var x = Liaison_Correlation_V1_SegmentSpread()
                                x.segment = e.segment
                                x.affectedTime = s.snapshotTime
                                return x
                            }
                        }
                    } else {
                        s.changes = [.initial]
                    }
                    try await response.write(s)
                    previous = s
                    lastSequence = s.sequence
                    lastSent = .now
                    if s.incident.state == .resolved { return }
                }
            }
        } catch is IncidentRevisionFeed.Full {
            throw APIError.overloaded(domain: domain, "too many WatchIncident streams on this replica; retry later", retryAfter: .seconds(5))
        }
    }

    // MARK: Emerging issues

    public func getEmergingIssue(request: Liaison_Correlation_V1_GetEmergingIssueRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_EmergingIssue {
        let id = try Store.issueID(request.name)
        return try await read { c in try EmergingStore.issue(c, id).issue }
    }

    public func listEmergingIssues(request: Liaison_Correlation_V1_ListEmergingIssuesRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_ListEmergingIssuesResponse {
        let size = try Self.pageSize(request.pageSize, default: 50, max: 500)
        let filter = try Self.issueFilter.parse(request.filter, firstParameter: 1)
        let (orderBy, ordering) = try Self.ordering(request.orderBy, Self.issueOrderings)
        let query = QueryFingerprint(collection: "emergingIssues", filter: request.filter, orderBy: orderBy)
        let after = try position(request.pageToken, query)
        let (codec, lifetime) = (self.codec, settings.pageTokenLifetime)
        return try await read { c in
            let page = try KeysetPage.page(c, table: "emerging_issues", columns: "id, body, version", filter: filter, ordering: ordering,
                                     after: after, size: size, query: query, codec: codec, lifetime: lifetime)
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
