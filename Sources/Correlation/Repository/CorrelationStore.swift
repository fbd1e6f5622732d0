import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf
import Synchronization

/// Settings of the correlation service (environment variables `LIAISON_CORRELATION_*`).
public struct CorrelationSettings: Sendable {
    /// Destinations of the service's events (`LIAISON_CORRELATION_EVENT_DESTINATIONS`, comma
    /// separated, `none` for none). Default: intake, which applies links and incident changes.
    public var destinations: [String] = ["intake"]
    /// Score at or above which an automatic link is CONFIRMED.
    public var autoLinkThreshold: Double = 0.6
    /// Score at or above which an automatic link is SUGGESTED.
    public var suggestThreshold: Double = 0.3
    /// Region adjacency for spread (`LIAISON_REGION_NEIGHBOURS="eu-south:eu-central,eu-central:eu-south|eu-north"`).
    public var neighbours: [String: [String]] = [:]
    /// Emerging issues: sliding window, baseline period before it, detector period, lease.
    public var emergingWindow: TimeInterval = 1800
    public var emergingBaseline: TimeInterval = 24 * 3600
    public var detectorInterval: Duration = .seconds(30)
    public var emergingOptions = EmergingOptions()
    /// Quiet period after which an OPEN emerging issue whose cluster is no longer significant
    /// becomes EXPIRED (`LIAISON_CORRELATION_EMERGING_EXPIRE_AFTER_SECONDS`); nil: twice the window.
    public var emergingExpireAfter: TimeInterval? = nil
    /// The quiet period in effect.
    public var emergingQuietPeriod: TimeInterval { emergingExpireAfter ?? 2 * emergingWindow }
    /// Key signing page tokens (`LIAISON_CORRELATION_PAGE_TOKEN_KEY`, at least 16 bytes); all
    /// replicas must share it. Required in production; see `ServiceConfiguration.pageTokenKey`.
    public var pageTokenKey: [UInt8] = ServiceConfiguration.derivedPageTokenKey(service: "correlation", databaseURL: "")
    /// How long a page token is accepted.
    public var pageTokenLifetime: TimeInterval = 24 * 3600
    /// How often the replica's one revision feed reads the watched incidents' change counters.
    public var watchPoll: Duration = .milliseconds(500)
    /// Most WatchIncident streams one replica serves at once
    /// (`LIAISON_CORRELATION_MAX_WATCHERS`, default 1000); one more is RESOURCE_EXHAUSTED.
    public var maxWatchers = 1000
    /// Replica identity (lease owner).
    public var replicaID: String = RandomUUID.make().uuidString

    public init() {}

    public static func from(_ env: Environment, configuration: ServiceConfiguration, logger: Logger) throws -> CorrelationSettings {
        var s = CorrelationSettings()
        s.replicaID = configuration.replicaID
        s.pageTokenKey = try configuration.pageTokenKey("CORRELATION_PAGE_TOKEN_KEY", environment: env, service: "correlation", logger: logger)
        s.destinations = env.destinations("CORRELATION_EVENT_DESTINATIONS", default: s.destinations)
        s.maxWatchers = try env.int("CORRELATION_MAX_WATCHERS", default: s.maxWatchers, range: 1...100_000)
        s.autoLinkThreshold = try env.double("CORRELATION_AUTO_LINK_THRESHOLD", default: 0.6, range: 0...1)
        s.suggestThreshold = try env.double("CORRELATION_SUGGEST_THRESHOLD", default: 0.3, range: 0...1)
        s.neighbours = parseNeighbours(env.string("REGION_NEIGHBOURS") ?? "")
        s.emergingWindow = Double(try env.int("CORRELATION_EMERGING_WINDOW_SECONDS", default: 1800, range: 60...86400))
        s.emergingBaseline = Double(try env.int("CORRELATION_EMERGING_BASELINE_SECONDS", default: 86400, range: 600...30 * 86400))
        s.detectorInterval = .seconds(try env.int("CORRELATION_DETECTOR_INTERVAL_SECONDS", default: 30, range: 1...3600))
        if env.string("CORRELATION_EMERGING_EXPIRE_AFTER_SECONDS") != nil {
            s.emergingExpireAfter = Double(try env.int("CORRELATION_EMERGING_EXPIRE_AFTER_SECONDS", default: 3600, range: 60...30 * 86400))
        }
        return s
    }


    /// `"a:b|c,b:a"` -> `["a": ["b", "c"], "b": ["a"]]`.
    public static func parseNeighbours(_ text: String) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for entry in text.split(separator: ",") {
            let parts = entry.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            out[parts[0].trimmingCharacters(in: .whitespaces)] =
                parts[1].split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        return out
    }
}

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
        guard !settings.destinations.isEmpty else { return }
        let (h, id) = Events.header(producer: "correlation", aggregate: aggregate, version: version)
        try Events.publish(c, make(h), eventID: id, to: settings.destinations)
    }

    // MARK: Services catalogue

    struct Catalogue {
        var aliases: [String: String] = [:]  // lower-case alias or id -> id
        var names: [String: [String]] = [:]  // id -> lower-case id and aliases
        var dependencies: [String: [String]] = [:]
        /// The transaction's `now()` (constant within it), read in the same round trip.
        var now: Date? = nil

        func resolve(_ hint: String) -> String? {
            let h = hint.trimmingCharacters(in: .whitespaces).lowercased()
            if h.isEmpty { return nil }
            if let id = aliases[h] { return id }
            if h.hasPrefix("services/") { return aliases[String(h.dropFirst(9))] }
            return nil
        }
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
            cat.aliases[alias] = id
            cat.names[id, default: []].append(alias)
        }
        for row in results[1].rows {
            let svc = try Liaison_Correlation_V1_TechnicalService(serializedBytes: try row.decode(ByteA.self, 1).bytes)
            cat.dependencies[try row.decode(String.self, 0)] = svc.dependencies.map { String($0.dropFirst(9)) }
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

    // MARK: Population baseline

    /// Applies a CustomerUpserted event: subtracts the customer's old keys, adds the new ones.
    /// Events older than the stored version (aggregate_version or update time) change nothing.
    static func applyCustomer(_ c: PostgresConnection, _ event: Liaison_Intake_V1_CustomerUpserted) throws {
        let customer = event.customer
        let id = customer.name.hasPrefix("customers/") ? String(customer.name.dropFirst(10)) : customer.name
        guard !id.isEmpty else { return }
        let active = customer.state != .closed
        let keys = active ? Convert.keys(customer.attributes) : []
        let updateTime = customer.hasUpdateTime ? customer.updateTime.date : event.header.occurTime.date
        let version = event.header.aggregateVersion
        let old = try c.query("SELECT keys, active, aggregate_version, update_time FROM customers WHERE id = $1 FOR UPDATE", [id]).first
        var oldKeys: [String] = []
        if let old {
            let oldVersion = try old.decode(Int64.self, 2)
            let oldTime = try old.decode(Date.self, 3)
            if version > 0 && oldVersion > 0 ? version <= oldVersion : updateTime < oldTime { return }
            if try old.decode(Bool.self, 1) { oldKeys = try old.decode(TextArray.self, 0).values + [""] }
        }
        try c.query("""
            INSERT INTO customers (id, keys, active, update_time, aggregate_version) VALUES ($1, $2::text[], $3, $4, $5)
            ON CONFLICT (id) DO UPDATE SET keys = EXCLUDED.keys, active = EXCLUDED.active,
                update_time = EXCLUDED.update_time, aggregate_version = EXCLUDED.aggregate_version
            """, [id, TextArray(keys), active, updateTime, version])
        let newKeys = active ? keys + [""] : []
        let oldSet = Set(oldKeys), newSet = Set(newKeys)
        let removed = oldSet.subtracting(newSet).sorted(), added = newSet.subtracting(oldSet).sorted()
        let shard = Convert.shard(id)
        if !removed.isEmpty { try addPopulation(c, removed, shard: shard, delta: -1) }
        if !added.isEmpty { try addPopulation(c, added, shard: shard, delta: 1) }
    }

    /// Every change of the population counters goes through here: it bumps the shard's version in
    /// the same statement, so a cached baseline (``population(_:)``) is never stale.
    static func addPopulation(_ c: PostgresConnection, _ keys: [String], shard: Int, delta: Int) throws {
        try c.query("""
            WITH v AS (
                INSERT INTO population_versions (shard, version) VALUES ($2, 1)
                ON CONFLICT (shard) DO UPDATE SET version = population_versions.version + 1
            )
            INSERT INTO population (key, shard, count) SELECT k, $2, $3 FROM unnest($1::text[]) k
            ON CONFLICT (key, shard) DO UPDATE SET count = population.count + EXCLUDED.count
            """, [TextArray(keys), shard, delta])
    }

    /// The population baseline, decoded, with a map from key text to key (for decoding reporter
    /// rows without parsing).
    final class Population: Sendable {
        let counts: SegmentCounts
        let total: Int
        let keys: [String: SegmentKey]
        init(counts: SegmentCounts, total: Int, keys: [String: SegmentKey]) {
            self.counts = counts
            self.total = total
            self.keys = keys
        }
    }

    /// Per-replica cache of decoded baselines by version token (a few, for processes that talk
    /// to several databases, like the tests).
    static let populationCache = Mutex<[String: Population]>([:])

    /// The version token of the population: the epoch and every shard's version.
    static let populationVersionSQL = "SELECT string_agg(shard || ':' || version, ',' ORDER BY shard) FROM population_versions"

    static func population(_ c: PostgresConnection) throws -> (SegmentCounts, Int) {
        let p = try cachedPopulation(c)
        return (p.counts, p.total)
    }

    /// The population baseline: from the replica's cache when the version token read now equals
    /// the cached one, else read (token and rows in one statement, one snapshot) and cached.
    static func cachedPopulation(_ c: PostgresConnection) throws -> Population {
        let token = try c.query(populationVersionSQL).first?.decode(String?.self, 0) ?? nil
        if let token, let hit = populationCache.withLock({ $0[token] }) { return hit }
        let rows = try c.query("""
            SELECT key, sum(count)::bigint, (\(populationVersionSQL)) FROM population GROUP BY key HAVING sum(count) > 0
            """)
        var keys: [String: SegmentKey] = [:]
        keys.reserveCapacity(rows.count)
        var counts: SegmentCounts = [:]
        counts.reserveCapacity(rows.count)
        var total = 0
        var rowToken: String?
        for row in rows.rows {
            let text = try row.decode(String.self, 0), n = try row.decode(Int.self, 1)
            if rowToken == nil { rowToken = try row.decode(String?.self, 2) }
            if text.isEmpty { total = n } else if let key = SegmentKey(parsing: text) {
                counts[key] = n
                keys[text] = key
            }
        }
        let p = Population(counts: counts, total: total, keys: keys)
        if let rowToken {
            populationCache.withLock { cache in
                if cache.count >= 8 { cache.removeAll() }
                cache[rowToken] = p
            }
        }
        return p
    }

    /// Rows of (key text, count): counts per key (looked up in `keys`, parsed when missing), and
    /// the '' row as the total.
    static func decodeCounts(_ result: PostgresResult, keys: [String: SegmentKey] = [:]) throws -> (SegmentCounts, Int) {
        var counts: SegmentCounts = [:]
        counts.reserveCapacity(result.count)
        var total = 0
        for i in 0..<result.count {
            let row = result[i]
            let text = try row.decode(String.self, 0), n = try row.decode(Int.self, 1)
            if text.isEmpty { total = n } else if let key = keys[text] ?? SegmentKey(parsing: text) { counts[key] = n }
        }
        return (counts, total)
    }

    // MARK: Reports and linking

    struct Report {
        var id: String
        var customerID: String
        var caseName: String
        var receiveTime: Date
        var symptom: Int
        var serviceHint: String
        var text: String
        var snapshot: Liaison_Common_V1_CustomerAttributes
        var keys: [String]
        var confirmedLinks: Int
    }

    static let reportColumns = "id, customer_id, case_name, receive_time, symptom, service_hint, text, snapshot, keys, confirmed_links"

    static func reportRow(_ row: PostgresRow) throws -> Report {
        Report(id: try row.decode(String.self, 0), customerID: try row.decode(String.self, 1),
               caseName: try row.decode(String.self, 2), receiveTime: try row.decode(Date.self, 3),
               symptom: try row.decode(Int.self, 4), serviceHint: try row.decode(String.self, 5),
               text: try row.decode(String.self, 6),
               snapshot: try Liaison_Common_V1_CustomerAttributes(serializedBytes: try row.decode(ByteA.self, 7).bytes),
               keys: try row.decode(TextArray.self, 8).values, confirmedLinks: try row.decode(Int.self, 9))
    }

    static func report(_ c: PostgresConnection, _ id: String, forUpdate: Bool = false) throws -> Report? {
        try c.query("SELECT \(reportColumns) FROM reports WHERE id = $1" + (forUpdate ? " FOR UPDATE" : ""), [id]).first.map(reportRow)
    }

    /// Stores a ReportAccepted event's report and links it to open incidents it matches.
    static func applyReport(_ c: PostgresConnection, _ event: Liaison_Intake_V1_ReportAccepted, settings: CorrelationSettings) throws {
        let r = event.report
        let id = r.name.hasPrefix("reports/") ? String(r.name.dropFirst(8)) : r.name
        guard !id.isEmpty else { return }
        let snapshot = event.hasCustomerSnapshot ? event.customerSnapshot : r.customerSnapshot
        let keys = Convert.keys(snapshot)
        let catalogue = try catalogue(c)
        var keys1 = keys.filter { !$0.contains("&") }
        if let svc = catalogue.resolve(r.serviceHint) { keys1.append("service=" + svc) }
        let customer = r.customer.hasPrefix("customers/") ? String(r.customer.dropFirst(10)) : r.customer
        let receive = r.hasReceiveTime ? r.receiveTime.date : Date()
        let inserted = try c.query("""
            INSERT INTO reports (id, customer_id, case_name, receive_time, symptom, service_hint, text, snapshot, keys, keys1)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text[], $10::text[])
            ON CONFLICT (id) DO UPDATE SET case_name = EXCLUDED.case_name WHERE reports.case_name = ''
            RETURNING (xmax = 0)
            """, [id, customer, r.case, receive, r.symptom.rawValue, r.serviceHint, r.text,
                  ByteA(try Convert.bytes(snapshot)), TextArray(keys), TextArray(keys1)]).first
        guard let inserted, try inserted.decode(Bool.self, 0) else { return }
        let report = Report(id: id, customerID: customer, caseName: r.case, receiveTime: receive, symptom: r.symptom.rawValue,
                            serviceHint: r.serviceHint, text: r.text, snapshot: snapshot, keys: keys, confirmedLinks: 0)
        let open = try c.query("SELECT \(incidentColumns) FROM incidents WHERE state <> 4 ORDER BY create_time").rows.map(incidentRow)
        for incident in open {
            try matchAndLink(c, report: report, incident: incident, catalogue: catalogue, settings: settings)
        }
    }

    /// Scores a report against an incident; links (CONFIRMED or SUGGESTED) when above the thresholds.
    @discardableResult
    static func matchAndLink(_ c: PostgresConnection, report: Report, incident: IncidentRow, catalogue: Catalogue,
                             settings: CorrelationSettings) throws -> Bool {
        let (score, reasons) = Scorer.score(report: report, incident: incident, catalogue: catalogue)
        guard score >= settings.suggestThreshold else { return false }
        let state: Liaison_Correlation_V1_Link.State = score >= settings.autoLinkThreshold ? .confirmed : .suggested
        return try createLink(c, incident: incident, report: report, origin: .automatic, state: state, score: score,
                              reasons: reasons, agent: "", note: "", settings: settings, now: catalogue.now) != nil
    }

    struct LinkRow {
        var link: Liaison_Correlation_V1_Link
        var id: UUID
        var incidentID: UUID
        var reportID: String
        var version: Int64
    }

    static func linkRow(_ row: PostgresRow) throws -> LinkRow {
        var l = try Liaison_Correlation_V1_Link(serializedBytes: try row.decode(ByteA.self, 1).bytes)
        let version = try row.decode(Int64.self, 4)
        l.etag = etag(version)
        return LinkRow(link: l, id: try row.decode(UUID.self, 0), incidentID: try row.decode(UUID.self, 2),
                       reportID: try row.decode(String.self, 3), version: version)
    }

    static let linkColumns = "id, body, incident_id, report_id, version"

    static func link(_ c: PostgresConnection, incident: UUID, report: String, forUpdate: Bool = false) throws -> LinkRow? {
        try c.query("SELECT \(linkColumns) FROM links WHERE incident_id = $1 AND report_id = $2" + (forUpdate ? " FOR UPDATE" : ""),
                    [incident, report]).first.map(linkRow)
    }

    static func link(_ c: PostgresConnection, _ name: String, forUpdate: Bool = false) throws -> LinkRow {
        let (i, l) = try linkIDs(name)
        guard let row = try c.query("SELECT \(linkColumns) FROM links WHERE id = $1 AND incident_id = $2" + (forUpdate ? " FOR UPDATE" : ""),
                                    [l, i]).first else {
            throw APIError.notFound(domain: domain, resourceType: "liaison.correlation.v1.Link", name: name)
        }
        return try linkRow(row)
    }

    /// Creates a link; returns nil when the incident already has a link for the report.
    static func createLink(
        _ c: PostgresConnection, incident: IncidentRow, report: Report, origin: Liaison_Correlation_V1_Link.Origin,
        state: Liaison_Correlation_V1_Link.State, score: Double, reasons: [Liaison_Correlation_V1_Link.Reason],
        agent: String, note: String, settings: CorrelationSettings, now given: Date? = nil
    ) throws -> LinkRow? {
        let id = RandomUUID.make()
        let now = try given ?? now(c)
        var l = Liaison_Correlation_V1_Link()
        l.name = linkName(incident.id, id)
        l.report = "reports/" + report.id
        l.case = report.caseName
        l.customer = "customers/" + report.customerID
        l.customerSnapshot = report.snapshot
        l.symptom = Liaison_Common_V1_SymptomKind(rawValue: report.symptom) ?? .unspecified
        l.reportReceiveTime = Convert.timestamp(report.receiveTime)
        l.origin = origin
        l.state = state
        l.score = score
        l.reasons = reasons
        l.agent = agent
        l.note = note
        l.createTime = Convert.timestamp(now)
        l.updateTime = l.createTime
        l.etag = etag(1)
        let inserted = try c.query("""
            INSERT INTO links (id, incident_id, report_id, state, score, body, \(linkFilterColumns.joined(separator: ", ")))
            VALUES ($1, $2, $3, $4, $5, $6, \((7..<7 + linkFilterColumns.count).map { "$\($0)" }.joined(separator: ", ")))
            ON CONFLICT (incident_id, report_id) DO NOTHING
            """, [id, incident.id, report.id, state.rawValue, score, ByteA(try Convert.bytes({ var b = l; b.etag = ""; return b }()))]
                + linkFilterValues(l)).affectedRows
        guard inserted == 1 else { return nil }
        if state == .confirmed { try confirmed(c, incident: incident, report: report, link: l, version: 1, settings: settings) }
        return LinkRow(link: l, id: id, incidentID: incident.id, reportID: report.id, version: 1)
    }

    /// The filter columns of a link, written with its body (see `linkFilterValues`).
    static let linkFilterColumns = [
        "origin", "case_name", "customer", "symptom", "report_receive_time", "snapshot_region", "snapshot_country",
        "snapshot_tier", "snapshot_partition", "snapshot_account", "snapshot_white_glove", "snapshot_features",
    ]

    static func linkFilterValues(_ l: Liaison_Correlation_V1_Link) -> [any PostgresBindable] {
        let s = l.customerSnapshot
        return [l.origin.rawValue, l.case, l.customer, l.symptom.rawValue, l.reportReceiveTime.date, s.region, s.country,
                s.tier.rawValue, s.accountPartition, s.accountNumber, s.whiteGlove, TextArray(s.features)]
    }

    /// `origin = $n, case_name = $n+1, ...` for an UPDATE.
    static func linkFilterAssignments(from n: Int) -> String {
        linkFilterColumns.enumerated().map { "\($0.element) = $\(n + $0.offset)" }.joined(separator: ", ")
    }

    static func saveLink(_ c: PostgresConnection, _ row: LinkRow, now: Date) throws -> LinkRow {
        var l = row.link
        l.updateTime = Convert.timestamp(now)
        l.etag = ""
        try c.query("UPDATE links SET body = $2, state = $3, score = $4, \(linkFilterAssignments(from: 5)), version = version + 1 WHERE id = $1",
                    [row.id, ByteA(try Convert.bytes(l)), l.state.rawValue, l.score] + linkFilterValues(l))
        var out = row
        out.version += 1
        l.etag = etag(out.version)
        out.link = l
        return out
    }

    /// A link became CONFIRMED: live aggregates, counters, event (aggregate: the link, at `version`).
    static func confirmed(_ c: PostgresConnection, incident: IncidentRow, report: Report,
                          link: Liaison_Correlation_V1_Link, version: Int64, settings: CorrelationSettings) throws {
        let counted = try adjustAggregates(c, incidentID: incident.id, report: report, delta: 1, then: [
            (sql: "UPDATE reports SET confirmed_links = confirmed_links + 1 WHERE id = $1 RETURNING emerging_issue", parameters: [report.id]),
        ])
        let issue = try counted[0].first?.decode(UUID?.self, 0)
        if let issue { try EmergingStore.explain(c, issue, by: incident, settings: settings) }
        try publish(c, settings, { h in
            var e = Liaison_Correlation_V1_ReportLinked()
            e.header = h
            e.link = link
            e.services = incident.incident.services
            return e
        }, aggregate: link.name, version: version)
    }

    /// A CONFIRMED link was removed (event aggregate: the link, at `version`).
    static func unconfirmed(_ c: PostgresConnection, incidentID: UUID, report: Report,
                            link: Liaison_Correlation_V1_Link, version: Int64, settings: CorrelationSettings) throws {
        try adjustAggregates(c, incidentID: incidentID, report: report, delta: -1, then: [
            (sql: "UPDATE reports SET confirmed_links = confirmed_links - 1 WHERE id = $1", parameters: [report.id]),
        ])
        try publish(c, settings, { h in
            var e = Liaison_Correlation_V1_ReportUnlinked()
            e.header = h
            e.link = link
            return e
        }, aggregate: link.name, version: version)
    }

    /// Maintains the per-incident aggregates for one confirmed report (+1) or a removed one (-1):
    /// distinct reporting customers per segment key (a customer counts while it has a confirmed
    /// link; its keys and bucket are those of its first linked report), reports and first-report
    /// customers per minute and 1-D key, and the incident's counters and change counter.
    /// `then`: statements sent in the same round trip after the aggregates; returns their results.
    @discardableResult
    static func adjustAggregates(_ c: PostgresConnection, incidentID: UUID, report: Report, delta: Int,
                                 then: [(sql: String, parameters: [any PostgresBindable])] = []) throws -> [PostgresResult] {
        // The hot rows of an incident (counters, segment counts, buckets) are split over shards and
        // a transaction touches only one shard, whose counter row it locks first: the first free
        // one (SKIP LOCKED, starting at a place given by the backend pid), remembered for the rest
        // of the transaction in a transaction-local setting (a delivery links many reports; one
        // shard per transaction keeps the lock order free of cycles). Concurrent linkers of one
        // incident take different shards; when all are taken they queue on a counter row instead
        // of deadlocking on the rest. Readers sum the shards. Two pipelines (one round trip each):
        // counters + the customer's row, then the aggregates.
        let customerSQL = delta > 0 ? """
            INSERT INTO incident_customers (incident_id, customer_id, links, first_time, keys)
            VALUES ($1, $2, 1, $3, $4::text[])
            ON CONFLICT (incident_id, customer_id) DO UPDATE SET links = incident_customers.links + 1
            RETURNING links, first_time, keys
            """ : """
            UPDATE incident_customers SET links = links - 1
            WHERE incident_id = $1 AND customer_id = $2 AND $3::timestamptz IS NOT NULL AND $4::text[] IS NOT NULL
            RETURNING links, first_time, keys
            """
        let first = try c.pipeline([
            (sql: """
                WITH pick AS (
                    SELECT set_config('liaison.link_shard', coalesce(
                        nullif(current_setting('liaison.link_shard', true), ''),
                        (SELECT shard::text FROM incident_counters WHERE incident_id = $1
                         ORDER BY (shard + pg_backend_pid()) % $3 LIMIT 1 FOR UPDATE SKIP LOCKED),
                        (pg_backend_pid() % $3)::text), true)::smallint AS shard
                )
                INSERT INTO incident_counters (incident_id, shard, linked_reports, revision) SELECT $1, shard, $2, 1 FROM pick
                ON CONFLICT (incident_id, shard) DO UPDATE
                SET linked_reports = incident_counters.linked_reports + EXCLUDED.linked_reports, revision = incident_counters.revision + 1
                RETURNING shard
                """, parameters: [incidentID, delta, shards]),
            (sql: customerSQL, parameters: [incidentID, report.customerID, report.receiveTime, TextArray(report.keys)]),
        ])
        let shard = try first[0].first!.decode(Int.self, 0)
        let oneD = [""] + report.keys.filter { !$0.contains("&") }
        var customerDelta = 0
        var customerKeys: [String] = []
        var customerTime = report.receiveTime
        var statements: [(sql: String, parameters: [any PostgresBindable])] = []
        if let row = first[1].first {
            let links = try row.decode(Int.self, 0)
            if delta > 0 && links == 1 {
                customerDelta = 1
                customerKeys = report.keys
            } else if delta < 0 && links <= 0 {
                customerDelta = -1
                customerTime = try row.decode(Date.self, 1)
                customerKeys = try row.decode(TextArray.self, 2).values
                statements.append((sql: "DELETE FROM incident_customers WHERE incident_id = $1 AND customer_id = $2",
                                   parameters: [incidentID, report.customerID]))
            }
        }
        if customerDelta != 0 {
            statements.append((sql: """
                INSERT INTO incident_segments (incident_id, key, shard, count) SELECT $1, k, $3, $4 FROM unnest($2::text[]) k
                ON CONFLICT (incident_id, key, shard) DO UPDATE SET count = incident_segments.count + EXCLUDED.count
                """, parameters: [incidentID, TextArray([""] + customerKeys), shard, customerDelta]))
            statements.append((sql: """
                UPDATE incident_counters SET affected_customers = affected_customers + $3 WHERE incident_id = $1 AND shard = $2
                """, parameters: [incidentID, shard, customerDelta]))
        }
        let customerOneD = [""] + customerKeys.filter { !$0.contains("&") }
        let sameMinute = floor(customerTime.timeIntervalSince1970 / 60) == floor(report.receiveTime.timeIntervalSince1970 / 60)
        if customerDelta != 0 && sameMinute && Set(customerOneD) == Set(oneD) {
            statements.append(bucket(incidentID, shard, report.receiveTime, oneD, reports: delta, customers: customerDelta))
        } else {
            statements.append(bucket(incidentID, shard, report.receiveTime, oneD, reports: delta, customers: 0))
            if customerDelta != 0 { statements.append(bucket(incidentID, shard, customerTime, customerOneD, reports: 0, customers: customerDelta)) }
        }
        let results = try c.pipeline(statements + then)
        return Array(results.suffix(then.count))
    }

    /// Shards of an incident's hot aggregate rows.
    static let shards = 8

    static func bucket(_ incidentID: UUID, _ shard: Int, _ time: Date, _ keys: [String], reports: Int, customers: Int)
        -> (sql: String, parameters: [any PostgresBindable]) {
        (sql: """
            INSERT INTO incident_buckets (incident_id, minute, key, shard, reports, customers)
            SELECT $1, date_trunc('minute', $2::timestamptz), k, $6, $4, $5 FROM unnest($3::text[]) k
            ON CONFLICT (incident_id, minute, key, shard) DO UPDATE SET reports = incident_buckets.reports + EXCLUDED.reports,
                customers = incident_buckets.customers + EXCLUDED.customers
            """, parameters: [incidentID, time, TextArray(keys), reports, customers, shard])
    }

    /// Reporting customers per segment key of an incident, from the live aggregates.
    static func reporters(_ c: PostgresConnection, _ incidentID: UUID, keys: [String: SegmentKey] = [:]) throws -> (SegmentCounts, Int) {
        try decodeCounts(reporterRows(c, incidentID), keys: keys)
    }

    static func reporterRows(_ c: PostgresConnection, _ incidentID: UUID) throws -> PostgresResult {
        try c.query("""
            SELECT key, sum(count)::bigint FROM incident_segments WHERE incident_id = $1 GROUP BY key HAVING sum(count) > 0
            """, [incidentID])
    }

    /// Reporting customers per key whose first linked report lies in a window (custom windows).
    static func reporters(_ c: PostgresConnection, _ incidentID: UUID, from: Date, to: Date, keys: [String: SegmentKey] = [:]) throws -> (SegmentCounts, Int) {
        var counts: SegmentCounts = [:]
        var total = 0
        for row in try c.query("""
            SELECT keys FROM incident_customers WHERE incident_id = $1 AND first_time >= $2 AND first_time < $3
            """, [incidentID, from, to]).rows {
            total += 1
            for text in try row.decode(TextArray.self, 0).values {
                if let key = keys[text] ?? SegmentKey(parsing: text) { counts[key, default: 0] += 1 }
            }
        }
        return (counts, total)
    }

    /// CasesMerged: the reports (and their links) of the merged cases now belong to `target`.
    static func mergeCases(_ c: PostgresConnection, into target: String, from merged: [String]) throws {
        let sources = merged.filter { $0 != target }
        guard !target.isEmpty, !sources.isEmpty else { return }
        let ids = try c.query("UPDATE reports SET case_name = $1 WHERE case_name = ANY($2::text[]) RETURNING id",
                              [target, TextArray(sources)]).rows.map { try $0.decode(String.self, 0) }
        guard !ids.isEmpty else { return }
        for row in try c.query("SELECT \(linkColumns) FROM links WHERE report_id = ANY($1::text[]) FOR UPDATE", [TextArray(ids)]).rows {
            var link = try linkRow(row)
            link.link.case = target
            link.link.etag = ""
            try c.query("UPDATE links SET body = $2, \(linkFilterAssignments(from: 3)), version = version + 1 WHERE id = $1",
                        [link.id, ByteA(try Convert.bytes(link.link))] + linkFilterValues(link.link))
        }
    }

    /// Scans open reports received around an incident's start and links those that match (on
    /// declaration and when an incident is promoted).
    static func linkRecentReports(_ c: PostgresConnection, incident: IncidentRow, settings: CorrelationSettings) throws {
        let catalogue = try catalogue(c)
        let start = incident.incident.impactStartTime.date.addingTimeInterval(-3600)
        let rows = try c.query("""
            SELECT \(reportColumns) FROM reports WHERE receive_time >= $1 AND confirmed_links = 0
            ORDER BY receive_time LIMIT 5000
            """, [start]).rows
        for row in rows {
            try matchAndLink(c, report: try reportRow(row), incident: incident, catalogue: catalogue, settings: settings)
        }
    }
}

/// Scores a report against an incident: service named (hint or text, through catalogue aliases),
/// time proximity to the impact start, segment overlap with the incident's blast radius.
enum Scorer {
    static func reason(_ kind: String, _ weight: Double, _ detail: String) -> Liaison_Correlation_V1_Link.Reason {
        var r = Liaison_Correlation_V1_Link.Reason()
        r.kind = kind
        r.weight = (weight * 1000).rounded() / 1000
        r.detail = detail
        return r
    }

    static func score(report: Store.Report, incident: Store.IncidentRow, catalogue: Store.Catalogue)
        -> (Double, [Liaison_Correlation_V1_Link.Reason]) {
        var reasons: [Liaison_Correlation_V1_Link.Reason] = []
        let services = incident.incident.services.map { String($0.dropFirst(9)) }
        var serviceScore = 0.0
        if let hinted = catalogue.resolve(report.serviceHint) {
            if services.contains(hinted) {
                serviceScore = 0.5
                reasons.append(reason("service_match", 0.5, "service hint '\(report.serviceHint)' names services/\(hinted)"))
            } else if services.contains(where: { catalogue.dependencies[$0]?.contains(hinted) == true
                || catalogue.dependencies[hinted]?.contains($0) == true }) {
                serviceScore = 0.25
                reasons.append(reason("dependency_match", 0.25, "services/\(hinted) is a dependency of the incident's services"))
            }
        }
        if serviceScore == 0, !report.text.isEmpty {
            let text = " " + report.text.lowercased().map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : " " } + " "
            outer: for s in services {
                for alias in catalogue.names[s] ?? [s] where text.contains(" \(alias) ") {
                    serviceScore = 0.35
                    reasons.append(reason("text_mention", 0.35, "the text mentions '\(alias)' (services/\(s))"))
                    break outer
                }
            }
        }
        let dt = report.receiveTime.timeIntervalSince(incident.incident.impactStartTime.date)
        var timeScore = 0.0
        if dt >= -900 {
            timeScore = 0.25 * exp(-max(0, dt) / 7200)
        } else if dt >= -3600 {
            timeScore = 0.1
        }
        if timeScore > 0.005 {
            let minutes = Int((dt / 60).rounded())
            reasons.append(reason("time_proximity", timeScore,
                                  minutes >= 0 ? "reported \(minutes) min after impact start" : "reported \(-minutes) min before impact start"))
        }
        var segmentScore = 0.0
        if !incident.affectedKeys.isEmpty {
            let overlap = Set(report.keys).intersection(incident.affectedKeys)
            if !overlap.isEmpty {
                segmentScore = 0.25
                reasons.append(reason("segment_in_blast_radius", 0.25, "customer is in \(overlap.sorted().prefix(3).joined(separator: ", "))"))
            }
        }
        return (min(1, serviceScore + timeScore + segmentScore), reasons)
    }
}
