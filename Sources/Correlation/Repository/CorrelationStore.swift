import CorrelationDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf
import Synchronization

let domain = "liaison.correlation.v1"

/// SQL of the correlation service. Every function runs inside the caller's transaction.
enum Store {
    // MARK: Names

    static func incidentID(_ name: String, field: String = "name") throws -> UUID {
        guard name.hasPrefix("incidents/"), let id = UUID(uuidString: String(name.dropFirst(10))) else {
            throw APIError.invalidArgument(domain: domain, field: field, "must be incidents/{uuid}")
        }
        return id
    }

    static func incidentName(_ id: UUID) -> String { "incidents/" + id.lowercasedString }
    static func linkName(_ incident: UUID, _ link: UUID) -> String {
        incidentName(incident) + "/links/" + link.lowercasedString
    }
    static func issueName(_ id: UUID) -> String { "emergingIssues/" + id.lowercasedString }

    static func linkIDs(_ name: String, field: String = "name") throws -> (UUID, UUID) {
        let parts = name.split(separator: "/")
        guard parts.count == 4, parts[0] == "incidents", parts[2] == "links",
              let i = UUID(uuidString: String(parts[1])), let l = UUID(uuidString: String(parts[3])) else {
            throw APIError.invalidArgument(domain: domain, field: field, "must be incidents/{uuid}/links/{uuid}")
        }
        return (i, l)
    }

    static func issueID(_ name: String, field: String = "name") throws -> UUID {
        guard name.hasPrefix("emergingIssues/"), let id = UUID(uuidString: String(name.dropFirst(15))) else {
            throw APIError.invalidArgument(domain: domain, field: field, "must be emergingIssues/{uuid}")
        }
        return id
    }

    static func reportID(_ name: String, field: String) throws -> String {
        guard name.hasPrefix("reports/"), name.count > 8 else {
            throw APIError.invalidArgument(domain: domain, field: field, "must be reports/{report}")
        }
        return String(name.dropFirst(8))
    }

    static func etag(_ version: Int64) -> String { Etag.make(version) }

    static func checkEtag(_ given: String, _ version: Int64, name: String) throws {
        try Etag.check(given, version: version, name: name, domain: domain)
    }

    static func now(_ c: PostgresConnection) throws -> Date {
        try c.query("SELECT now()").first!.decode(Date.self, 0)
    }

    static func publish<E: SwiftProtobuf.Message>(
        _ c: PostgresConnection, _ settings: CorrelationSettings, _ make: (Liaison_Common_V1_EventHeader) -> E,
        aggregate: String, version: Int64
    ) throws {
        try Events.publish(c, producer: "correlation", to: settings.destinations, aggregate: aggregate, version: version, make)
    }

    // MARK: Services catalogue

    /// The catalogue as the domain reads it, and the transaction's `now()` (constant within it),
    /// read in the same round trip.
    struct Catalogue {
        var services = ServiceCatalogue()
        var now: Date? = nil

        func resolve(_ hint: String) -> String? { services.resolve(hint) }
    }

    static func catalogue(_ c: PostgresConnection) throws -> Catalogue {
        var cat = Catalogue()
        let results = try c.pipeline([
            (sql: "SELECT alias, service_id FROM service_aliases", parameters: []),
            (sql: "SELECT id, body FROM services", parameters: []),
            (sql: "SELECT now()", parameters: []),
        ])
        cat.now = try results[2].first?.decode(Date.self, 0)
        for row in results[0].rows {
            let alias = try row.decode(String.self, 0), id = try row.decode(String.self, 1)
            cat.services.aliases[alias] = id
            cat.services.names[id, default: []].append(alias)
        }
        for row in results[1].rows {
            let svc = try Liaison_Correlation_V1_TechnicalService(serializedBytes: try row.decode(ByteA.self, 1).bytes)
            cat.services.dependencies[try row.decode(String.self, 0)] = svc.dependencies.map { String($0.dropFirst(9)) }
        }
        return cat
    }

    static func service(_ c: PostgresConnection, _ idOrAlias: String, forUpdate: Bool = false) throws -> (Liaison_Correlation_V1_TechnicalService, Int64)? {
        let sql = """
            SELECT s.body, s.version FROM services s
            WHERE s.id = (SELECT service_id FROM service_aliases WHERE alias = lower($1))
            """ + (forUpdate ? " FOR UPDATE" : "")
        guard let row = try c.query(sql, [idOrAlias]).first else { return nil }
        var svc = try Liaison_Correlation_V1_TechnicalService(serializedBytes: try row.decode(ByteA.self, 0).bytes)
        let version = try row.decode(Int64.self, 1)
        svc.etag = etag(version)
        return (svc, version)
    }

    /// Writes the aliases of a service (its id is always one); ALREADY_EXISTS if one is taken.
    static func writeAliases(_ c: PostgresConnection, id: String, aliases: [String]) throws {
        try c.query("DELETE FROM service_aliases WHERE service_id = $1", [id])
        for alias in Set([id] + aliases.map { $0.lowercased() }) {
            let inserted = try c.query(
                "INSERT INTO service_aliases (alias, service_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                [alias, id]).affectedRows
            if inserted == 0 {
                let owner = try c.query("SELECT service_id FROM service_aliases WHERE alias = $1", [alias]).first?.decode(String.self, 0) ?? ""
                throw APIError.alreadyExists(domain: domain, resourceType: "liaison.correlation.v1.TechnicalService",
                                             name: "services/" + owner, "alias \"\(alias)\" is taken by services/\(owner)")
            }
        }
    }

    // MARK: Incidents

    struct IncidentRow {
        var incident: Liaison_Correlation_V1_Incident
        var id: UUID
        var version: Int64
        var revision: Int64
        var affectedKeys: [String]
        var blastRevision: Int64
    }

    /// The counters are the incident's columns plus its counter shards (see `adjustAggregates`).
    /// No commas inside an expression: list pages count the columns by splitting on commas.
    static let incidentColumns = """
        id, body, version, revision + incident_shard_revisions(id), linked_reports + incident_linked_reports(id), \
        affected_customers + incident_affected_customers(id), affected_keys, blast_revision
        """

    static func incidentRow(_ row: PostgresRow) throws -> IncidentRow {
        var i = try Liaison_Correlation_V1_Incident(serializedBytes: try row.decode(ByteA.self, 1).bytes)
        let version = try row.decode(Int64.self, 2)
        i.etag = etag(version)
        i.linkedReportCount = try row.decode(Int64.self, 4)
        i.affectedCustomerCount = try row.decode(Int64.self, 5)
        return IncidentRow(incident: i, id: try row.decode(UUID.self, 0), version: version,
                           revision: try row.decode(Int64.self, 3),
                           affectedKeys: try row.decode(TextArray.self, 6).values,
                           blastRevision: try row.decode(Int64.self, 7))
    }

    static func incident(_ c: PostgresConnection, _ id: UUID, forUpdate: Bool = false) throws -> IncidentRow {
        let sql = "SELECT \(incidentColumns) FROM incidents WHERE id = $1" + (forUpdate ? " FOR UPDATE" : "")
        guard let row = try c.query(sql, [id]).first else {
            throw APIError.notFound(domain: domain, resourceType: "liaison.correlation.v1.Incident", name: incidentName(id))
        }
        return try incidentRow(row)
    }

    static func insertIncident(_ c: PostgresConnection, _ incident: Liaison_Correlation_V1_Incident, id: UUID, now: Date) throws -> IncidentRow {
        var body = incident
        body.name = incidentName(id)
        body.createTime = Convert.timestamp(now)
        body.updateTime = body.createTime
        body.state = .declared
        if !body.hasImpactStartTime { body.impactStartTime = body.createTime }
        let ext = body.hasExternalReference && !body.externalReference.id.isEmpty
        do {
            try c.query("SAVEPOINT declare")
            try c.query("""
                INSERT INTO incidents (id, body, state, services, ext_system, ext_id, impact_start, create_time,
                                       severity, source, resolve_time, update_time, labels)
                VALUES ($1, $2, $3, $4::text[], $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb)
                """, [id, ByteA(try Convert.bytes(body)), body.state.rawValue, TextArray(body.services),
                      ext ? body.externalReference.system : nil, ext ? body.externalReference.id : nil,
                      body.impactStartTime.date, now, body.severity.rawValue, body.source.rawValue,
                      body.hasResolveTime ? body.resolveTime.date : nil, now, labelsJSON(body.labels)])
            try c.query("INSERT INTO incident_counters (incident_id, shard) SELECT $1, generate_series(0, $2 - 1)", [id, shards])
            try c.query("RELEASE SAVEPOINT declare")
        } catch let e as PostgresError where e.sqlState == SQLState.uniqueViolation {
            try c.query("ROLLBACK TO SAVEPOINT declare")
            let existing = try c.query("SELECT id FROM incidents WHERE ext_system = $1 AND ext_id = $2",
                                       [body.externalReference.system, body.externalReference.id]).first?.decode(UUID.self, 0)
            let name = existing.map(incidentName) ?? ""
            throw APIError.alreadyExists(domain: domain, resourceType: "liaison.correlation.v1.Incident", name: name,
                                         "external reference \(body.externalReference.system)/\(body.externalReference.id) is already declared as \(name)")
        }
        return try Store.incident(c, id)
    }

    /// Stores a changed incident body; bumps version and revision.
    static func saveIncident(_ c: PostgresConnection, _ row: IncidentRow, now: Date) throws -> IncidentRow {
        var body = row.incident
        body.updateTime = Convert.timestamp(now)
        body.etag = ""
        body.linkedReportCount = 0
        body.affectedCustomerCount = 0
        try c.query("""
            UPDATE incidents SET body = $2, state = $3, services = $4::text[], impact_start = $5,
                   severity = $6, source = $7, resolve_time = $8, update_time = $9, labels = $10::jsonb,
                   version = version + 1, revision = revision + 1 WHERE id = $1
            """, [row.id, ByteA(try Convert.bytes(body)), body.state.rawValue, TextArray(body.services), body.impactStartTime.date,
                  body.severity.rawValue, body.source.rawValue, body.hasResolveTime ? body.resolveTime.date : nil, now,
                  labelsJSON(body.labels)])
        return try Store.incident(c, row.id)
    }

    /// An incident's labels as a jsonb object (the `labels` column).
    static func labelsJSON(_ labels: [String: String]) -> String {
        let data = try? JSONSerialization.data(withJSONObject: labels, options: [.sortedKeys])
        return String(decoding: data ?? Data("{}".utf8), as: UTF8.self)
    }

    /// The filter columns of a service, written with its body: public, owner_team, aliases
    /// (lower case), dependencies.
    static func serviceColumns(_ s: Liaison_Correlation_V1_TechnicalService) -> [any PostgresBindable] {
        [s.public, s.ownerTeam, TextArray(s.aliases.map { $0.lowercased() }), TextArray(s.dependencies)]
    }

    static func validateServices(_ c: PostgresConnection, _ services: [String], field: String) throws -> [String] {
        var ids: [String] = []
        for (i, s) in services.enumerated() {
            guard s.hasPrefix("services/"), s.count > 9 else {
                throw APIError.invalidArgument(domain: domain, field: "\(field)[\(i)]", "must be services/{service}")
            }
            guard let (svc, _) = try service(c, String(s.dropFirst(9))) else {
                throw APIError.notFound(domain: domain, resourceType: "liaison.correlation.v1.TechnicalService", name: s)
            }
            ids.append(svc.name)
        }
        return ids
    }
}
