import CorrelationDomain
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
}
