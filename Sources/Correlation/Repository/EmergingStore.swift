import CorrelationDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import ServiceLifecycle
import SwiftProtobuf

/// Emerging issues: clusters of unlinked reports per segment (and resolved service) in a sliding
/// window, tested against the key's background rate from the baseline period before the window.
enum EmergingStore {
    struct IssueRow {
        var issue: Liaison_Correlation_V1_EmergingIssue
        var id: UUID
        var version: Int64
    }

    static func issueRow(_ row: PostgresRow) throws -> IssueRow {
        var i = try Liaison_Correlation_V1_EmergingIssue(serializedBytes: try row.decode(ByteA.self, 1).bytes)
        let version = try row.decode(Int64.self, 2)
        i.etag = Store.etag(version)
        return IssueRow(issue: i, id: try row.decode(UUID.self, 0), version: version)
    }

    static func issue(_ c: PostgresConnection, _ id: UUID, forUpdate: Bool = false) throws -> IssueRow {
        guard let row = try c.query("SELECT id, body, version FROM emerging_issues WHERE id = $1" + (forUpdate ? " FOR UPDATE" : ""), [id]).first else {
            throw APIError.notFound(domain: domain, resourceType: "liaison.correlation.v1.EmergingIssue", name: Store.issueName(id))
        }
        return try issueRow(row)
    }

    static func save(_ c: PostgresConnection, _ row: IssueRow, now: Date) throws -> IssueRow {
        var i = row.issue
        i.updateTime = Convert.timestamp(now)
        i.etag = ""
        try c.query("""
            UPDATE emerging_issues SET body = $2, state = $3, symptom = $4, service = $5, lift = $6, customer_count = $7,
                   version = version + 1 WHERE id = $1
            """, [row.id, ByteA(try Convert.bytes(i)), i.state.rawValue, i.symptom.rawValue, i.service, i.lift, i.customerCount])
        return try issue(c, row.id)
    }

    /// An OPEN issue whose report got linked to an incident declared independently becomes
    /// EXPLAINED by that incident (promotion sets PROMOTED afterwards in its own transaction).
    static func explain(_ c: PostgresConnection, _ id: UUID, by incident: Store.IncidentRow, settings: CorrelationSettings) throws {
        guard let row = try c.query("SELECT id, body, version FROM emerging_issues WHERE id = $1 AND state = 1 FOR UPDATE", [id]).first,
              incident.incident.emergingIssue != issueNameOf(id) else { return }
        var issue = try issueRow(row)
        issue.issue.state = .explained
        issue.issue.incident = incident.incident.name
        issue = try save(c, issue, now: try Store.now(c))
        try publishStatusChanged(c, issue, settings: settings)
    }

    /// Publishes EmergingIssueStatusChanged for `issue` as saved (aggregate: the issue, at its version).
    static func publishStatusChanged(_ c: PostgresConnection, _ issue: IssueRow, settings: CorrelationSettings) throws {
        let snapshot = issue.issue
        try Store.publish(c, settings, { h in
            var e = Liaison_Correlation_V1_EmergingIssueStatusChanged()
            e.header = h
            e.emergingIssue = snapshot
            return e
        }, aggregate: snapshot.name, version: issue.version)
    }

    static func issueNameOf(_ id: UUID) -> String { Store.issueName(id) }

    /// Tries to take the detector lease; returns true when this replica holds it until `lease`
    /// from now. The lease row makes the detector run on one replica at a time; the transaction
    /// advisory lock guards the scan itself.
    static func acquireLease(_ c: PostgresConnection, owner: String, lease: TimeInterval) throws -> Bool {
        guard try c.query("SELECT pg_try_advisory_xact_lock(hashtext('liaison.correlation.emerging'))").first!.decode(Bool.self, 0) else {
            return false
        }
        return try c.query("""
            INSERT INTO job_leases (name, owner, lease_until, runs) VALUES ('emerging', $1, now() + make_interval(secs => $2), 1)
            ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until, runs = job_leases.runs + 1
            WHERE job_leases.lease_until < now() OR job_leases.owner = EXCLUDED.owner
            RETURNING runs
            """, [owner, lease]).count == 1
    }

    /// The `cluster_key` of an emerging key (a 1-D segment key, or "service=<id>").
    static func keyText(_ key: EmergingKey) -> String {
        key.segment?.description ?? "service=" + (key.service ?? "")
    }

    /// What one detector pass did.
    struct Pass {
        var raised: [IssueRow] = []
        var expired: [IssueRow] = []
    }

    /// One detector pass (inside the caller's transaction): raises issues for new significant
    /// clusters, then expires the OPEN issues whose cluster went quiet and fell below significance.
    static func detect(_ c: PostgresConnection, settings: CorrelationSettings, now: Date) throws -> Pass {
        let windowStart = now.addingTimeInterval(-settings.emergingWindow)
        let baselineStart = windowStart.addingTimeInterval(-settings.emergingBaseline)
        // Per 1-D key: unclaimed reports in the window (what may raise a new issue), reports in
        // the baseline period, and the window's reports counting those its own OPEN issue holds
        // (what keeps that issue significant).
        let rows = try c.query("""
            SELECT k, count(*) FILTER (WHERE r.receive_time >= $1 AND r.emerging_issue IS NULL),
                      count(*) FILTER (WHERE r.receive_time < $1),
                      count(*) FILTER (WHERE r.receive_time >= $1
                                         AND (r.emerging_issue IS NULL OR (e.state = 1 AND e.cluster_key = k)))
            FROM reports r LEFT JOIN emerging_issues e ON e.id = r.emerging_issue
                 CROSS JOIN LATERAL unnest(r.keys1) k
            WHERE r.receive_time >= $2 AND r.receive_time <= $3 AND r.confirmed_links = 0
            GROUP BY k
            """, [windowStart, baselineStart, now]).rows
        var counts: [EmergingWindowCount] = []
        var held: [String: Int] = [:]
        for row in rows {
            let text = try row.decode(String.self, 0)
            guard let key = SegmentKey(parsing: text) else { continue }
            let emerging = key.first.dimension == .service
                ? EmergingKey(service: key.first.value) : EmergingKey(segment: key)
            counts.append(EmergingWindowCount(
                key: emerging, observed: try row.decode(Int.self, 1),
                backgroundRatePerHour: EmergingIssueDetector.backgroundRate(count: try row.decode(Int.self, 2), over: settings.emergingBaseline)))
            held[keyText(emerging)] = try row.decode(Int.self, 3)
        }
        // Raise first: it locks reports, expiry then locks issue rows, the order in which the
        // linking transactions take them (report, then its issue in `explain`), so the two never
        // deadlock. An issue raised now is significant, so expiry leaves it alone.
        var pass = Pass()
        pass.raised = try raise(c, counts: counts, settings: settings, now: now, windowStart: windowStart)
        pass.expired = try expire(c, counts: counts, held: held, settings: settings, now: now)
        return pass
    }

    /// OPEN issues whose cluster is no longer significant over the current window (the raising
    /// test, counting the reports the issue holds) and had no unlinked report for the quiet
    /// period become EXPIRED (EmergingIssueStatusChanged). An issue another transaction holds
    /// (being promoted, dismissed or explained) is skipped until the next pass.
    static func expire(_ c: PostgresConnection, counts: [EmergingWindowCount], held: [String: Int],
                       settings: CorrelationSettings, now: Date) throws -> [IssueRow] {
        let open = try c.query("SELECT id, body, version, cluster_key FROM emerging_issues WHERE state = 1 ORDER BY id FOR UPDATE SKIP LOCKED").rows
        guard !open.isEmpty else { return [] }
        let openKeys = Set(try open.map { try $0.decode(String.self, 3) })
        let current = counts.map { w in
            var w = w
            let key = keyText(w.key)
            if openKeys.contains(key) { w.observed = held[key] ?? w.observed }
            return w
        }
        let significant = Set(EmergingIssueDetector.detect(
            windowCounts: current, windowLength: settings.emergingWindow, familySize: current.count, options: settings.emergingOptions
        ).map { keyText($0.key) })
        let quietSince = now.addingTimeInterval(-settings.emergingQuietPeriod)
        var expired: [IssueRow] = []
        for row in open {
            let key = try row.decode(String.self, 3)
            if significant.contains(key) { continue }
            let recent = try c.query("""
                SELECT 1 FROM reports WHERE receive_time > $1 AND receive_time <= $2 AND confirmed_links = 0 AND $3 = ANY(keys1) LIMIT 1
                """, [quietSince, now, key]).count
            if recent > 0 { continue }
            var issue = try issueRow(row)
            issue.issue.state = .expired
            issue = try save(c, issue, now: now)
            try publishStatusChanged(c, issue, settings: settings)
            expired.append(issue)
        }
        return expired
    }

    /// Raises an issue for each significant cluster without an OPEN issue; it takes the
    /// cluster's unclaimed reports, so one burst raises one issue.
    static func raise(_ c: PostgresConnection, counts: [EmergingWindowCount], settings: CorrelationSettings, now: Date,
                      windowStart: Date) throws -> [IssueRow] {
        let clusters = EmergingIssueDetector.detect(
            windowCounts: counts, windowLength: settings.emergingWindow, familySize: counts.count, options: settings.emergingOptions)
            .sorted { ($0.adjustedPValue, -$0.observed, $0.key) < ($1.adjustedPValue, -$1.observed, $1.key) }
        let catalogue = try Store.catalogue(c)
        var raised: [IssueRow] = []
        for cluster in clusters {
            let keyText = Self.keyText(cluster.key)
            if try c.query("SELECT 1 FROM emerging_issues WHERE cluster_key = $1 AND state = 1", [keyText]).count > 0 { continue }
            // Reports of the cluster not yet explained by an issue raised in this pass or before.
            let reports = try c.query("""
                SELECT id, customer_id, receive_time, symptom, service_hint FROM reports
                WHERE receive_time >= $1 AND receive_time <= $2 AND confirmed_links = 0 AND emerging_issue IS NULL
                  AND $3 = ANY(keys1)
                ORDER BY receive_time, id
                """, [windowStart, now, keyText]).rows
            guard reports.count >= settings.emergingOptions.minCount else { continue }
            var symptoms: [Int: Int] = [:], hints: [String: Int] = [:], customers = Set<String>()
            var ids: [String] = [], times: [Date] = []
            for r in reports {
                ids.append(try r.decode(String.self, 0))
                customers.insert(try r.decode(String.self, 1))
                times.append(try r.decode(Date.self, 2))
                symptoms[try r.decode(Int.self, 3), default: 0] += 1
                if let s = catalogue.resolve(try r.decode(String.self, 4)) { hints[s, default: 0] += 1 }
            }
            let id = RandomUUID.make()
            var issue = Liaison_Correlation_V1_EmergingIssue()
            issue.name = Store.issueName(id)
            issue.state = .open
            if let seg = cluster.key.segment { issue.segment = Convert.segment(seg) }
            issue.symptom = Liaison_Common_V1_SymptomKind(rawValue: symptoms.max { ($0.value, -$0.key) < ($1.value, -$1.key) }?.key ?? 0) ?? .unspecified
            if let svc = cluster.key.service ?? hints.max(by: { ($0.value, $1.key) < ($1.value, $0.key) })?.key {
                issue.service = "services/" + svc
            }
            issue.reportCount = Int64(ids.count)
            issue.customerCount = Int64(customers.count)
            issue.expected = cluster.expected
            issue.lift = cluster.lift.isFinite ? cluster.lift : 0
            issue.adjustedPValue = cluster.adjustedPValue
            issue.sampleReports = ids.prefix(20).map { "reports/" + $0 }
            issue.firstReportTime = Convert.timestamp(times.min()!)
            issue.lastReportTime = Convert.timestamp(times.max()!)
            issue.createTime = Convert.timestamp(now)
            issue.updateTime = issue.createTime
            let inserted = try c.query("""
                INSERT INTO emerging_issues (id, cluster_key, state, body, adjusted_p, symptom, service, lift, customer_count, create_time)
                VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, $9)
                ON CONFLICT (cluster_key) WHERE state = 1 DO NOTHING
                """, [id, keyText, ByteA(try Convert.bytes(issue)), cluster.adjustedPValue, issue.symptom.rawValue, issue.service,
                      issue.lift, issue.customerCount, now]).affectedRows
            guard inserted == 1 else { continue }
            try c.query("UPDATE reports SET emerging_issue = $1 WHERE id = ANY($2::text[])", [id, TextArray(ids)])
            let row = try self.issue(c, id)
            let snapshot = row.issue
            try Store.publish(c, settings, { h in
                var e = Liaison_Correlation_V1_EmergingIssueRaised()
                e.header = h
                e.emergingIssue = snapshot
                return e
            }, aggregate: snapshot.name, version: 1)
            raised.append(row)
        }
        return raised
    }
}

/// The background detector loop: every replica runs it, the lease lets one of them work.
public struct EmergingIssueDetectorService: ServiceLifecycle.Service {
    let pool: PostgresPool
    let settings: CorrelationSettings
    let logger: Logger

    public init(pool: PostgresPool, settings: CorrelationSettings, logger: Logger) {
        self.pool = pool
        self.settings = settings
        self.logger = logger
    }

    /// One pass: expires quiet issues, raises new ones; returns the number raised, or nil when
    /// another replica holds the lease.
    @discardableResult
    public func runOnce() async throws -> Int? {
        let settings = self.settings
        let lease = Double(settings.detectorInterval.components.seconds) * 3 + 1
        return try await pool.transaction { c -> Int? in
            guard try EmergingStore.acquireLease(c, owner: settings.replicaID, lease: lease) else { return nil }
            let pass = try EmergingStore.detect(c, settings: settings, now: try Store.now(c))
            if !pass.expired.isEmpty {
                logger.info("emerging issues expired", metadata: ["issues": "\(pass.expired.map(\.issue.name))"])
            }
            return pass.raised.count
        }
    }

    public func run() async throws {
        let logger = self.logger
        try await BackgroundLoop("emerging-issue detector", every: settings.detectorInterval, logger: logger) {
            if let n = try await runOnce(), n > 0 { logger.info("emerging issues raised", metadata: ["count": "\(n)"]) }
        }.run()
    }
}
