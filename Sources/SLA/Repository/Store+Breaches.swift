import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import SLADomain
import SwiftProtobuf

/// Credit states (`Credit.State`).
enum CreditState: Int, Sendable {
    case owed = 1, issued = 2, waived = 3
}

extension Store {
    static func deterministic(_ m: some SwiftProtobuf.Message) throws -> ByteA {
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        return ByteA(try m.serializedBytes(options: options))
    }

    // MARK: Breaches

    static let breachColumns = "id::text, body, credit_id::text, create_time"

    static func breach(_ r: PostgresRow) throws -> Liaison_Sla_V1_Breach {
        var b = try Liaison_Sla_V1_Breach(serializedBytes: try r.decode(ByteA.self, 1).bytes)
        b.name = "breaches/" + (try r.decode(String.self, 0))
        b.createTime = timestamp(try r.decode(Date.self, 3))
        return b
    }

    static func breach(_ c: PostgresConnection, _ id: UUID) throws -> Liaison_Sla_V1_Breach? {
        try c.query("SELECT id::text, body, NULL::text, create_time FROM breaches WHERE id = $1", [id]).first.map(breach)
    }

    /// Records a breach once per (customer, contract, objective, window start); nil when it was
    /// already recorded (its id is returned instead in `existing`).
    static func insertBreach(_ c: PostgresConnection, _ b: Liaison_Sla_V1_Breach, customer: String, contract: String,
                             objective: String, kind: Int, window: Interval, occur: Int64) throws -> (id: UUID, new: Bool) {
        let id = RandomUUID.make()
        var stored = b
        stored.name = ""
        if let r = try c.query("""
            INSERT INTO breaches (id, customer_id, contract_id, service, objective_kind, objective, window_start, window_end, occur_time,
                                  incidents, body)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text[], $11)
            ON CONFLICT (customer_id, contract_id, objective, window_start) DO NOTHING RETURNING id
            """, [id, customer, contract, b.service, kind, objective, date(window.start), date(window.end), date(occur),
                  TextArray(b.incidents), try deterministic(stored)]).first {
            _ = r
            return (id, true)
        }
        let existing = try c.query("""
            SELECT id::text FROM breaches WHERE customer_id = $1 AND contract_id = $2 AND objective = $3 AND window_start = $4
            """, [customer, contract, objective, date(window.start)]).first!.decode(String.self, 0)
        return (UUID(uuidString: existing)!, false)
    }

    /// Updates a recorded breach's figures (actual, window end, incidents) as the period goes on.
    static func updateBreachFigures(_ c: PostgresConnection, _ id: UUID, actual: String, incidents: [String]) throws {
        guard let r = try c.query("SELECT body FROM breaches WHERE id = $1 FOR UPDATE", [id]).first else { return }
        var b = try Liaison_Sla_V1_Breach(serializedBytes: try r.decode(ByteA.self, 0).bytes)
        let merged = Array(Set(b.incidents).union(incidents)).sorted()
        guard b.actual != actual || b.incidents != merged else { return }
        b.actual = actual
        b.incidents = merged
        try c.query("UPDATE breaches SET body = $2, incidents = $3::text[] WHERE id = $1", [id, try deterministic(b), TextArray(merged)])
    }

    static func setBreachCredit(_ c: PostgresConnection, _ breach: UUID, credit: UUID) throws {
        guard let r = try c.query("SELECT body FROM breaches WHERE id = $1 FOR UPDATE", [breach]).first else { return }
        var b = try Liaison_Sla_V1_Breach(serializedBytes: try r.decode(ByteA.self, 0).bytes)
        guard b.credit.isEmpty else { return }
        b.credit = "credits/" + credit.lowercasedString
        try c.query("UPDATE breaches SET body = $2 WHERE id = $1", [breach, try deterministic(b)])
    }

    // MARK: Credits

    static let creditColumns = "id::text, body, state, version, create_time, update_time"

    static func credit(_ r: PostgresRow) throws -> Liaison_Sla_V1_Credit {
        var k = try Liaison_Sla_V1_Credit(serializedBytes: try r.decode(ByteA.self, 1).bytes)
        k.name = "credits/" + (try r.decode(String.self, 0))
        k.state = Liaison_Sla_V1_Credit.State(rawValue: Int(try r.decode(Int64.self, 2))) ?? .unspecified
        k.etag = etag(try r.decode(Int64.self, 3))
        k.createTime = timestamp(try r.decode(Date.self, 4))
        k.updateTime = timestamp(try r.decode(Date.self, 5))
        return k
    }

    static func credit(_ c: PostgresConnection, _ id: UUID, forUpdate: Bool = false) throws -> (Liaison_Sla_V1_Credit, Int64)? {
        guard let r = try c.query("SELECT \(creditColumns) FROM credits WHERE id = $1\(forUpdate ? " FOR UPDATE" : "")", [id]).first
        else { return nil }
        return (try credit(r), try r.decode(Int64.self, 3))
    }

    /// The credit entries of a breach: (id, amount) in creation order, the first being the original.
    static func creditEntries(_ c: PostgresConnection, breach: UUID) throws -> [(UUID, Int64)] {
        try c.query("SELECT id::text, amount_minor FROM credits WHERE breach_id = $1 ORDER BY create_time, id", [breach]).rows.map {
            (UUID(uuidString: try $0.decode(String.self, 0))!, try $0.decode(Int64.self, 1))
        }
    }

    /// What a customer was credited under a contract for breaches whose window overlaps `w`,
    /// except `breach` (for the cap).
    static func creditedInWindow(_ c: PostgresConnection, customer: String, contract: String, window w: Interval, except breach: UUID?) throws -> Int64 {
        try c.query("""
            SELECT coalesce(sum(k.amount_minor), 0)::bigint FROM credits k JOIN breaches b ON b.id = k.breach_id
            WHERE b.customer_id = $1 AND b.contract_id = $2 AND b.window_start < $4 AND b.window_end > $3
              AND ($5::uuid IS NULL OR b.id <> $5)
            """, [customer, contract, date(w.start), date(w.end), breach]).first!.decode(Int64.self, 0)
    }

    /// Credit totals per breach window of `customers`: (customer, contract, window) -> amount, for
    /// caps computed in memory over many customers at once.
    static func creditWindows(_ c: PostgresConnection, customers: [String]) throws -> [String: [(contract: String, window: Interval, amount: Int64)]] {
        guard !customers.isEmpty else { return [:] }
        var out: [String: [(contract: String, window: Interval, amount: Int64)]] = [:]
        for r in try c.query("""
            SELECT b.customer_id, b.contract_id, b.window_start, b.window_end, sum(k.amount_minor)::bigint
            FROM credits k JOIN breaches b ON b.id = k.breach_id WHERE b.customer_id = ANY($1::text[])
            GROUP BY b.customer_id, b.contract_id, b.window_start, b.window_end
            """, [TextArray(customers)]).rows {
            out[try r.decode(String.self, 0), default: []].append(
                (try r.decode(String.self, 1), Interval(ms(try r.decode(Date.self, 2)), ms(try r.decode(Date.self, 3))), try r.decode(Int64.self, 4)))
        }
        return out
    }

    /// Breaches recorded for `customers`, by "customer|contract|objective|window start".
    static func breachKeys(_ c: PostgresConnection, customers: [String]) throws -> [String: UUID] {
        guard !customers.isEmpty else { return [:] }
        var out: [String: UUID] = [:]
        for r in try c.query("""
            SELECT customer_id, contract_id, objective, window_start, id::text FROM breaches WHERE customer_id = ANY($1::text[])
            """, [TextArray(customers)]).rows {
            let key = "\(try r.decode(String.self, 0))|\(try r.decode(String.self, 1))|\(try r.decode(String.self, 2))|\(ms(try r.decode(Date.self, 3)))"
            out[key] = UUID(uuidString: try r.decode(String.self, 4))
        }
        return out
    }

    static func insertCredit(_ c: PostgresConnection, id: UUID, _ k: Liaison_Sla_V1_Credit, breach: UUID, customer: String,
                             adjusts: UUID?, amount: Int64, currency: String) throws -> Liaison_Sla_V1_Credit {
        var stored = k
        stored.name = ""
        let r = try c.query("""
            INSERT INTO credits (id, customer_id, breach_id, adjusts, amount_minor, currency, state, body)
            VALUES ($1, $2, $3, $4, $5, $6, 1, $7) RETURNING \(creditColumns)
            """, [id, customer, breach, adjusts, amount, currency, try deterministic(stored)]).first!
        return try credit(r)
    }

    static func settleCredit(_ c: PostgresConnection, _ id: UUID, _ k: Liaison_Sla_V1_Credit, state: CreditState) throws -> Liaison_Sla_V1_Credit {
        var stored = k
        stored.name = ""
        stored.etag = ""
        let r = try c.query("""
            UPDATE credits SET body = $2, state = $3, version = version + 1, update_time = now() WHERE id = $1 RETURNING \(creditColumns)
            """, [id, try deterministic(stored), state.rawValue]).first!
        return try credit(r)
    }

    // MARK: Warnings

    /// The warnings already sent to `customers` for periods starting at or after `from`, as
    /// ``warningKey(customer:contract:objective:periodStart:kind:threshold:)`` keys.
    static func warningKeys(_ c: PostgresConnection, customers: [String], from: Int64) throws -> Set<String> {
        guard !customers.isEmpty else { return [] }
        var out = Set<String>()
        for r in try c.query("""
            SELECT customer_id, contract_id, objective, period_start, kind, threshold FROM warnings
            WHERE customer_id = ANY($1::text[]) AND period_start >= $2
            """, [TextArray(customers), date(from)]).rows {
            out.insert(warningKey(customer: try r.decode(String.self, 0), contract: try r.decode(String.self, 1),
                                  objective: try r.decode(String.self, 2), periodStart: ms(try r.decode(Date.self, 3)),
                                  kind: Int(try r.decode(Int64.self, 4)), threshold: Int(try r.decode(Int64.self, 5))))
        }
        return out
    }

    static func warningKey(customer: String, contract: String, objective: String, periodStart: Int64, kind: Int, threshold: Int) -> String {
        "\(customer)|\(contract)|\(objective)|\(periodStart)|\(kind)|\(threshold)"
    }

    /// Records warnings in one statement; returns the keys it inserted (those already recorded,
    /// by this or a concurrent transaction, are not).
    static func recordWarnings(_ c: PostgresConnection, _ rows: [(String, String, String, Int64, Int, Int)]) throws -> Set<String> {
        var out = Set<String>()
        for r in try c.query("""
            INSERT INTO warnings (customer_id, contract_id, objective, period_start, kind, threshold)
            SELECT u.c, u.k, u.o, 'epoch'::timestamptz + u.p * interval '1 millisecond', u.kind, u.t
            FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::int[], $6::int[]) AS u(c, k, o, p, kind, t)
            ON CONFLICT DO NOTHING RETURNING customer_id, contract_id, objective, period_start, kind, threshold
            """, [TextArray(rows.map(\.0)), TextArray(rows.map(\.1)), TextArray(rows.map(\.2)), TextArray(rows.map { String($0.3) }),
                  TextArray(rows.map { String($0.4) }), TextArray(rows.map { String($0.5) })]).rows {
            out.insert(warningKey(customer: try r.decode(String.self, 0), contract: try r.decode(String.self, 1),
                                  objective: try r.decode(String.self, 2), periodStart: ms(try r.decode(Date.self, 3)),
                                  kind: Int(try r.decode(Int64.self, 4)), threshold: Int(try r.decode(Int64.self, 5))))
        }
        return out
    }

    // MARK: Budget statuses and at-risk lists

    static func upsertBudgetStatuses(_ c: PostgresConnection, _ rows: [(customer: String, contract: String, state: Int, services: [String], body: ByteA)], now: Date) throws {
        guard !rows.isEmpty else { return }
        try c.query("""
            INSERT INTO budget_status (id, contract_id, state, services, body, compute_time)
            SELECT u.c, u.k, u.s, string_to_array(u.v, ' '), decode(u.b, 'base64'), $6
            FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[]) AS u(c, k, s, v, b)
            ON CONFLICT (id) DO UPDATE SET contract_id = EXCLUDED.contract_id, state = EXCLUDED.state,
                services = EXCLUDED.services, body = EXCLUDED.body, compute_time = EXCLUDED.compute_time
            """, [TextArray(rows.map(\.customer)), TextArray(rows.map(\.contract)), TextArray(rows.map { String($0.state) }),
                  TextArray(rows.map { $0.services.joined(separator: " ") }),
                  TextArray(rows.map { Data($0.body.bytes).base64EncodedString() }), now])
    }

    static func deleteBudgetStatuses(_ c: PostgresConnection, _ customers: [String]) throws {
        guard !customers.isEmpty else { return }
        try c.query("DELETE FROM budget_status WHERE id = ANY($1::text[])", [TextArray(customers)])
    }

    struct AtRiskRow: Sendable {
        var customer: String
        var service: String
        var kind: Int
        var breachTime: Int64
        var remainingMs: Int64
        var exposureMinor: Int64
        var currency: String
        var evidence: Int
        var contract: String
        var tier: Int
        var whiteGlove: Bool
        var attrs: ByteA
    }

    /// Replaces an incident's at-risk list.
    static func replaceAtRisk(_ c: PostgresConnection, incident: UUID, _ rows: [AtRiskRow]) throws {
        try c.query("DELETE FROM at_risk WHERE incident_id = $1", [incident])
        var start = 0
        while start < rows.count {
            let chunk = rows[start..<min(rows.count, start + 5000)]
            start += chunk.count
            try c.query("""
                INSERT INTO at_risk (incident_id, id, service, objective_kind, breach_time, remaining_ms, exposure_minor, currency, evidence,
                                     contract_id, tier, white_glove, attrs)
                SELECT $1, u.id, u.s, u.k, 'epoch'::timestamptz + u.t * interval '1 millisecond', u.r, u.x, u.cur, u.e, u.con, u.tier, u.wg,
                       decode(u.a, 'base64')
                FROM unnest($2::text[], $3::text[], $4::int[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::int[], $10::text[],
                            $11::int[], $12::bool[], $13::text[]) AS u(id, s, k, t, r, x, cur, e, con, tier, wg, a)
                """, [incident, TextArray(chunk.map(\.customer)), TextArray(chunk.map(\.service)), TextArray(chunk.map { String($0.kind) }),
                      TextArray(chunk.map { String($0.breachTime) }), TextArray(chunk.map { String($0.remainingMs) }),
                      TextArray(chunk.map { String($0.exposureMinor) }), TextArray(chunk.map(\.currency)),
                      TextArray(chunk.map { String($0.evidence) }), TextArray(chunk.map(\.contract)),
                      TextArray(chunk.map { String($0.tier) }), TextArray(chunk.map { $0.whiteGlove ? "t" : "f" }),
                      TextArray(chunk.map { Data($0.attrs.bytes).base64EncodedString() })])
        }
    }

    // MARK: Evaluator work queue

    /// The queue tables are probed by key only. Freshly filled (30,000 rows in one event) they have
    /// no statistics yet, and the planner's sequential scan with `= ANY(array)` cost O(rows x
    /// batch): 1.3 s per 2,000 claims. The claims run with sequential scans off.
    static func byKey<T>(_ c: PostgresConnection, _ body: () throws -> T) throws -> T {
        try c.query("SET LOCAL enable_seqscan = off")
        let out = try body()
        try c.query("SET LOCAL enable_seqscan = on")
        return out
    }

    static func takeDirtyCustomers(_ c: PostgresConnection, limit: Int) throws -> [String] {
        try byKey(c) { try c.query("""
            DELETE FROM dirty_customers WHERE customer_id = ANY(ARRAY(
                SELECT customer_id FROM dirty_customers ORDER BY customer_id LIMIT \(limit) FOR UPDATE SKIP LOCKED))
            RETURNING customer_id
            """).rows.map { try $0.decode(String.self, 0) } }
    }

    static func takeDueCustomers(_ c: PostgresConnection, now: Date, limit: Int) throws -> [String] {
        try byKey(c) { try c.query("""
            DELETE FROM next_checks WHERE customer_id = ANY(ARRAY(
                SELECT customer_id FROM next_checks WHERE at <= $1 ORDER BY at LIMIT \(limit) FOR UPDATE SKIP LOCKED))
            RETURNING customer_id
            """, [now]).rows.map { try $0.decode(String.self, 0) } }
    }

    static func takeDirtyIncident(_ c: PostgresConnection) throws -> UUID? {
        try c.query("""
            DELETE FROM dirty_incidents WHERE incident_id = ANY(ARRAY(
                SELECT incident_id FROM dirty_incidents LIMIT 1 FOR UPDATE SKIP LOCKED)) RETURNING incident_id::text
            """).first.flatMap { UUID(uuidString: try $0.decode(String.self, 0)) }
    }

    static func setNextChecks(_ c: PostgresConnection, _ checks: [(String, Int64)], clear: [String]) throws {
        if !clear.isEmpty { try c.query("DELETE FROM next_checks WHERE customer_id = ANY($1::text[])", [TextArray(clear)]) }
        guard !checks.isEmpty else { return }
        try c.query("""
            INSERT INTO next_checks (customer_id, at)
            SELECT u.c, 'epoch'::timestamptz + u.t * interval '1 millisecond' FROM unnest($1::text[], $2::bigint[]) AS u(c, t)
            ON CONFLICT (customer_id) DO UPDATE SET at = EXCLUDED.at
            """, [TextArray(checks.map(\.0)), TextArray(checks.map { String($0.1) })])
    }

    /// Customers with a line of `incident` that counts, and whether one of them is REPORTED.
    static func incidentCustomers(_ c: PostgresConnection, _ incident: UUID) throws -> [(String, Bool)] {
        try c.query("""
            SELECT customer_id, bool_or(source = 1) FROM impacts WHERE incident_id = $1 AND NOT excluded GROUP BY customer_id
            """, [incident]).rows.map { (try $0.decode(String.self, 0), try $0.decode(Bool.self, 1)) }
    }
}
