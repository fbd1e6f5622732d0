// Store: reports from intake, and linking them to incidents (automatic and manual).
import CorrelationDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf
import Synchronization

extension Store {
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
