import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import SLADomain
import SwiftProtobuf

/// Impact sources (`Impact.Source`).
enum ImpactSource: Int, Sendable {
    case reported = 1, blastRadius = 2, manual = 3
}

/// One line of the impact ledger.
struct ImpactRow: Sendable {
    var id: UUID
    var customer: String
    var service: String
    var incident: UUID?
    var start: Int64
    var end: Int64?
    var severity: Int
    var symptom: Int = 0
    var source: ImpactSource
    var excluded: Bool
    var exclusionReason: String
    var author: String
    var note: String
    var createTime: Date
    var updateTime: Date
    var version: Int64

    static let columns = """
        id::text, customer_id, service, incident_id::text, start_time, end_time, severity, source, excluded, exclusion_reason,
        author, note, create_time, update_time, version, symptom
        """
}

extension ImpactRow {
    init(_ r: PostgresRow) throws {
        id = UUID(uuidString: try r.decode(String.self, 0))!
        customer = try r.decode(String.self, 1)
        service = try r.decode(String.self, 2)
        incident = try r.decode(String?.self, 3).flatMap(UUID.init(uuidString:))
        start = Store.ms(try r.decode(Date.self, 4))
        end = try r.decode(Date?.self, 5).map(Store.ms)
        severity = Int(try r.decode(Int64.self, 6))
        source = ImpactSource(rawValue: Int(try r.decode(Int64.self, 7))) ?? .manual
        excluded = try r.decode(Bool.self, 8)
        exclusionReason = try r.decode(String.self, 9)
        author = try r.decode(String.self, 10)
        note = try r.decode(String.self, 11)
        createTime = try r.decode(Date.self, 12)
        updateTime = try r.decode(Date.self, 13)
        version = try r.decode(Int64.self, 14)
        symptom = Int(try r.decode(Int64.self, 15))
    }
}

/// An incident as correlation last described it.
struct IncidentRow: Sendable {
    var id: UUID
    var severity: Int
    var state: Int
    var services: [String]
    var impactStart: Int64
    var end: Int64?
    var segments: [Liaison_Common_V1_Segment]
    var blastRevision: Int64
    var recommended: String

    var name: String { "incidents/" + id.lowercasedString }
    var open: Bool { end == nil }
}

extension Store {
    // MARK: Incidents (correlation's events)

    static func incident(_ c: PostgresConnection, _ id: UUID) throws -> IncidentRow? {
        guard let r = try c.query("""
            SELECT severity, state, services, impact_start, end_time, segments, blast_revision, recommended FROM incidents WHERE id = $1
            """, [id]).first else { return nil }
        return IncidentRow(
            id: id, severity: Int(try r.decode(Int64.self, 0)), state: Int(try r.decode(Int64.self, 1)),
            services: try r.decode(TextArray.self, 2).values, impactStart: ms(try r.decode(Date.self, 3)),
            end: try r.decode(Date?.self, 4).map(ms),
            segments: try r.decode(TextArray.self, 5).values.map { try Liaison_Common_V1_Segment(jsonString: $0) },
            blastRevision: try r.decode(Int64.self, 6), recommended: try r.decode(String.self, 7))
    }

    /// Applies any event carrying the whole incident (declared, status changed, updated), newer
    /// aggregate versions only; moves the event-driven impact lines of the incident with it.
    static func applyIncident(_ c: PostgresConnection, _ i: Liaison_Correlation_V1_Incident, version: Int64) throws {
        guard let id = uuid(i.name, "incidents") else { return }
        let start = i.hasImpactStartTime ? i.impactStartTime.date : i.createTime.date
        let endTime: Date? = i.hasMitigateTime ? i.mitigateTime.date : (i.hasResolveTime ? i.resolveTime.date : nil)
        let open = i.state != .mitigated && i.state != .resolved
        let end = open ? nil : endTime ?? i.updateTime.date
        let services = i.services
        let before = try incident(c, id)
        let changed = try c.query("""
            INSERT INTO incidents (id, severity, state, services, impact_start, end_time, declare_time, version)
            VALUES ($1, $2, $3, $4::text[], $5, $6, $7, $8)
            ON CONFLICT (id) DO UPDATE SET severity = EXCLUDED.severity, state = EXCLUDED.state, services = EXCLUDED.services,
                impact_start = EXCLUDED.impact_start, end_time = EXCLUDED.end_time, version = EXCLUDED.version
            WHERE incidents.version < EXCLUDED.version
            """, [id, i.severity.rawValue, i.state.rawValue, TextArray(services), start, end,
                  i.hasCreateTime ? i.createTime.date : start, version]).affectedRows
        guard changed > 0 else { return }
        // Event-driven lines follow the incident: blast-radius lines span its impact; reported
        // lines keep their own start. Lines a person corrected stay as they are.
        try c.query("""
            UPDATE impacts SET
                start_time = CASE WHEN source = 2 THEN $2 ELSE start_time END,
                end_time = CASE WHEN $3::timestamptz IS NULL THEN NULL ELSE greatest($3::timestamptz, CASE WHEN source = 2 THEN $2 ELSE start_time END) END,
                severity = $4, version = version + 1, update_time = now()
            WHERE incident_id = $1 AND source IN (1, 2) AND NOT corrected
              AND (start_time IS DISTINCT FROM CASE WHEN source = 2 THEN $2 ELSE start_time END
                   OR end_time IS DISTINCT FROM $3::timestamptz OR severity <> $4)
            """, [id, start, end, i.severity.rawValue])
        if let before, before.services.sorted() != services.sorted() || before.impactStart != ms(start), !before.segments.isEmpty {
            try applySegments(c, id)
        }
        try markIncidentCustomersDirty(c, id)
    }

    /// Applies BlastRadiusChanged: the incident's AFFECTED segments at a newer revision.
    static func applyBlastRadius(_ c: PostgresConnection, _ e: Liaison_Correlation_V1_BlastRadiusChanged) throws {
        guard let id = uuid(e.incident, "incidents") else { return }
        let revision = e.blastRadius.revision > 0 ? e.blastRadius.revision : e.header.aggregateVersion
        let segments = try e.blastRadius.affected.map { try $0.segment.jsonString() }
        // An event ahead of the incident itself makes a placeholder that IncidentDeclared fills.
        let start = e.blastRadius.window.hasStartTime ? e.blastRadius.window.startTime.date : e.header.occurTime.date
        try c.query("""
            INSERT INTO incidents (id, severity, state, services, impact_start, declare_time, version)
            VALUES ($1, 0, 1, '{}', $2, $2, 0) ON CONFLICT DO NOTHING
            """, [id, start])
        let changed = try c.query("""
            UPDATE incidents SET segments = $2::text[], blast_revision = $3 WHERE id = $1 AND blast_revision < $3
            """, [id, TextArray(segments), revision]).affectedRows
        guard changed > 0 else { return }
        try applySegments(c, id)
        try markIncidentCustomersDirty(c, id)
    }

    /// The SQL condition "customer c is in `segment`" (its service condition, if any, is returned
    /// apart); nil when the segment names a dimension sla cannot match.
    static func condition(_ s: Liaison_Common_V1_Segment, parameters: inout [any PostgresBindable]) -> (sql: String, service: String?)? {
        var parts: [String] = []
        var service: String? = nil
        func p(_ v: any PostgresBindable) -> String {
            parameters.append(v)
            return "$\(parameters.count)"
        }
        for cond in s.conditions {
            let v = cond.value
            switch cond.dimension {
            case .region: parts.append("c.region = \(p(v))")
            case .country: parts.append("c.country = \(p(v))")
            case .accountPartition: parts.append("c.partition = \(p(v))")
            case .platform: parts.append("\(p(v))::text = ANY(c.platforms)")
            case .clientVersion: parts.append("\(p(v))::text = ANY(c.versions)")
            case .clientVersionMinor: parts.append("\(p(v))::text = ANY(c.minors)")
            case .feature: parts.append("\(p(v))::text = ANY(c.features)")
            case .tier:
                let tier: Int = switch v { case "free": 1; case "standard": 2; case "business": 3; case "enterprise": 4; default: -1 }
                parts.append("c.tier = \(p(tier))")
            case .service: service = v.hasPrefix("services/") ? v : "services/" + v
            default: return nil
            }
        }
        return (parts.isEmpty ? "true" : parts.joined(separator: " AND "), service)
    }

    /// Makes the BLAST_RADIUS lines of an incident match its segments: customers in an AFFECTED
    /// segment get a line per service (the segment's service, else the incident's services);
    /// lines of customers no longer in any segment are excluded with the reason, and included
    /// again if a later revision brings them back.
    static func applySegments(_ c: PostgresConnection, _ id: UUID) throws {
        guard let inc = try incident(c, id) else { return }
        var matchParameters: [any PostgresBindable] = [id]
        var matches: [String] = []
        var inserts: [(String, [any PostgresBindable])] = []
        for s in inc.segments {
            var ps: [any PostgresBindable] = []
            guard let (cond, service) = condition(s, parameters: &ps) else { continue }
            let services = service.map { [$0] } ?? inc.services
            for svc in services {
                // INSERT for this segment and service: $1 incident, $2 service, $3 start, $4 end, $5 severity, then the segment's.
                let shifted = cond.replacingOccurrences(of: "$", with: "$#")
                var sql = shifted
                for n in stride(from: ps.count, through: 1, by: -1) { sql = sql.replacingOccurrences(of: "$#\(n)", with: "$\(n + 5)") }
                inserts.append(("""
                    INSERT INTO impacts (id, customer_id, service, incident_id, start_time, end_time, severity, source, author, note)
                    SELECT gen_random_uuid(), c.id, $2, $1, $3, $4, $5, 2, 'sla', 'customer in an AFFECTED segment of the blast radius'
                    FROM customers c WHERE \(sql)
                    ON CONFLICT (customer_id, service, incident_id, source) WHERE source <> 3 DO NOTHING
                    """, [id, svc, date(inc.impactStart), inc.end.map(date), inc.severity] + ps))
                var mps = ps
                var msql = shifted
                for n in stride(from: mps.count, through: 1, by: -1) {
                    msql = msql.replacingOccurrences(of: "$#\(n)", with: "$\(matchParameters.count + n)")
                }
                matchParameters += mps
                mps = []
                matchParameters.append(svc)
                matches.append("(\(msql) AND i2.service = $\(matchParameters.count))")
            }
        }
        let match = matches.isEmpty ? "false" : matches.joined(separator: " OR ")
        matchParameters.append("no longer in an AFFECTED segment (blast radius revision \(inc.blastRevision))")
        try c.query("""
            UPDATE impacts i SET excluded = NOT m.match,
                exclusion_reason = CASE WHEN m.match THEN '' ELSE $\(matchParameters.count) END,
                version = i.version + 1, update_time = now()
            FROM (SELECT i2.id, coalesce(\(match), false) AS match FROM impacts i2 LEFT JOIN customers c ON c.id = i2.customer_id
                  WHERE i2.incident_id = $1 AND i2.source = 2 AND NOT i2.corrected) m
            WHERE i.id = m.id AND i.excluded = m.match
            """, matchParameters)
        for (sql, ps) in inserts { try c.query(sql, ps) }
    }

    // MARK: Report links

    /// Applies ReportLinked: a REPORTED line per service from the report's receive time.
    static func applyLinked(_ c: PostgresConnection, _ e: Liaison_Correlation_V1_ReportLinked) throws {
        let link = e.link
        guard let customer = id(link.customer, "customers"),
              let incidentID = link.name.split(separator: "/").dropFirst().first.flatMap({ UUID(uuidString: String($0)) })
        else { return }
        guard try newerLink(c, link.name, version: e.header.aggregateVersion, state: 2) else { return }
        let inc = try incident(c, incidentID)
        let start = link.hasReportReceiveTime ? link.reportReceiveTime.date : e.header.occurTime.date
        let end = inc?.end.map(date).map { max($0, start) }
        let services = e.services.isEmpty ? (inc?.services ?? []) : e.services
        for svc in services {
            try c.query("""
                INSERT INTO impacts (id, customer_id, service, incident_id, start_time, end_time, severity, source, author, note, symptom)
                VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, 1, 'sla', $7, $8)
                ON CONFLICT (customer_id, service, incident_id, source) WHERE source <> 3 DO UPDATE
                SET excluded = false, exclusion_reason = '', version = impacts.version + 1, update_time = now()
                WHERE impacts.excluded AND NOT impacts.corrected
                """, [customer, svc, incidentID, start, end, inc?.severity ?? 0, "report \(link.report) linked to the incident",
                      link.symptom.rawValue])
        }
        try markCustomersDirty(c, [customer])
        try markIncidentDirty(c, incidentID)
    }

    /// Applies ReportUnlinked: the customer's REPORTED lines of the incident are excluded.
    static func applyUnlinked(_ c: PostgresConnection, _ e: Liaison_Correlation_V1_ReportUnlinked) throws {
        let link = e.link
        guard let customer = id(link.customer, "customers"),
              let incidentID = link.name.split(separator: "/").dropFirst().first.flatMap({ UUID(uuidString: String($0)) })
        else { return }
        guard try newerLink(c, link.name, version: e.header.aggregateVersion, state: 4) else { return }
        try c.query("""
            UPDATE impacts SET excluded = true, exclusion_reason = 'report unlinked from the incident',
                version = version + 1, update_time = now()
            WHERE customer_id = $1 AND incident_id = $2 AND source = 1 AND NOT corrected AND NOT excluded
            """, [customer, incidentID])
        try markCustomersDirty(c, [customer])
        try markIncidentDirty(c, incidentID)
    }

    /// Records a link's version; false when an equal or newer one was already applied.
    static func newerLink(_ c: PostgresConnection, _ name: String, version: Int64, state: Int) throws -> Bool {
        try c.query("""
            INSERT INTO links (id, version, state) VALUES ($1, $2, $3)
            ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state WHERE links.version < EXCLUDED.version
            """, [name, version, state]).affectedRows > 0
    }

    // MARK: Ledger reads

    static func impact(_ c: PostgresConnection, customer: String, id: UUID, forUpdate: Bool = false) throws -> ImpactRow? {
        try c.query("SELECT \(ImpactRow.columns) FROM impacts WHERE id = $1 AND customer_id = $2\(forUpdate ? " FOR UPDATE" : "")",
                    [id, customer]).first.map(ImpactRow.init)
    }

    /// The lines of `customers` that overlap [from, ∞).
    static func impacts(_ c: PostgresConnection, customers: [String], from: Int64) throws -> [String: [ImpactRow]] {
        guard !customers.isEmpty else { return [:] }
        var out: [String: [ImpactRow]] = [:]
        for r in try c.query("""
            SELECT \(ImpactRow.columns) FROM impacts
            WHERE customer_id = ANY($1::text[]) AND (end_time IS NULL OR end_time > $2)
            """, [TextArray(customers), date(from)]).rows {
            let row = try ImpactRow(r)
            out[row.customer, default: []].append(row)
        }
        return out
    }

    static func insertImpact(_ c: PostgresConnection, _ row: ImpactRow) throws {
        try c.query("""
            INSERT INTO impacts (id, customer_id, service, incident_id, start_time, end_time, severity, source, excluded,
                                 exclusion_reason, author, note, corrected, create_time, update_time, symptom)
            VALUES ($1, $2, $3, $4, $5, $6, $7, 3, $8, $9, $10, $11, true, $12, $12, $13)
            """, [row.id, row.customer, row.service, row.incident, date(row.start), row.end.map(date), row.severity,
                  row.excluded, row.exclusionReason, row.author, row.note, row.createTime, row.symptom])
    }

    /// Stores a person's correction of a line; from now on events leave the line alone.
    static func correctImpact(_ c: PostgresConnection, _ row: ImpactRow) throws -> ImpactRow {
        let r = try c.query("""
            UPDATE impacts SET start_time = $3, end_time = $4, excluded = $5, exclusion_reason = $6, author = $7, note = $8,
                severity = $9, corrected = true, version = version + 1, update_time = now()
            WHERE id = $1 AND customer_id = $2 RETURNING \(ImpactRow.columns)
            """, [row.id, row.customer, date(row.start), row.end.map(date), row.excluded, row.exclusionReason, row.author, row.note,
                  row.severity]).first!
        return try ImpactRow(r)
    }
}
