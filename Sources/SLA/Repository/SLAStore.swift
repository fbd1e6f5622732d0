import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import SLADomain
import SwiftProtobuf

let domain = "liaison.sla.v1"

/// SQL of the sla database: rows, names, times and the outbox. No API errors are made here
/// except NOT_FOUND / ABORTED for the rows a call names (the kit's `APIError`).
enum Store {
    // MARK: Names and times

    static func etag(_ version: Int64) -> String { Etag.make(version) }

    static func checkEtag(_ given: String, _ version: Int64, name: String) throws {
        try Etag.check(given, version: version, name: name, domain: domain)
    }

    /// Epoch milliseconds of a date (the domain's unit), rounded down.
    static func ms(_ d: Date) -> Int64 { Int64((d.timeIntervalSince1970 * 1000).rounded(.down)) }
    static func ms(_ t: Google_Protobuf_Timestamp) -> Int64 { t.seconds * 1000 + Int64(t.nanos / 1_000_000) }
    static func date(_ ms: Int64) -> Date { Date(timeIntervalSince1970: Double(ms) / 1000) }
    static func timestamp(_ ms: Int64) -> Google_Protobuf_Timestamp {
        let (s, r) = ms.quotientAndRemainder(dividingBy: 1000)
        return r < 0 ? Google_Protobuf_Timestamp(seconds: s - 1, nanos: Int32((r + 1000) * 1_000_000))
            : Google_Protobuf_Timestamp(seconds: s, nanos: Int32(r * 1_000_000))
    }
    static func timestamp(_ d: Date) -> Google_Protobuf_Timestamp { Google_Protobuf_Timestamp(date: d) }
    static func duration(_ ms: Int64) -> Google_Protobuf_Duration {
        var d = Google_Protobuf_Duration()
        d.seconds = ms / 1000
        d.nanos = Int32((ms % 1000) * 1_000_000)
        return d
    }
    static func window(_ i: Interval, open: Bool = false) -> Liaison_Common_V1_TimeWindow {
        var w = Liaison_Common_V1_TimeWindow()
        w.startTime = timestamp(i.start)
        if !open { w.endTime = timestamp(i.end) }
        return w
    }

    static func now(_ c: PostgresConnection) throws -> Date {
        try c.query("SELECT now()").first!.decode(Date.self, 0)
    }

    /// `<collection>/<id>` -> id, or nil.
    static func id(_ name: String, _ collection: String) -> String? {
        let prefix = collection + "/"
        guard name.hasPrefix(prefix) else { return nil }
        let id = String(name.dropFirst(prefix.count))
        return id.isEmpty || id.contains("/") ? nil : id
    }

    static func uuid(_ name: String, _ collection: String) -> UUID? {
        id(name, collection).flatMap(UUID.init(uuidString:))
    }

    // MARK: Events out

    static func publish<E: SwiftProtobuf.Message>(
        _ c: PostgresConnection, _ settings: SLASettings, _ make: (Liaison_Common_V1_EventHeader) -> E,
        aggregate: String, version: Int64
    ) throws {
        try Events.publish(c, producer: "sla", to: settings.destinations, aggregate: aggregate, version: version, make)
    }

    // MARK: Work for the evaluator

    static func markCustomersDirty(_ c: PostgresConnection, _ ids: [String]) throws {
        guard !ids.isEmpty else { return }
        try c.query("INSERT INTO dirty_customers SELECT DISTINCT unnest($1::text[]) ON CONFLICT DO NOTHING", [TextArray(ids)])
    }

    static func markIncidentCustomersDirty(_ c: PostgresConnection, _ incident: UUID) throws {
        try c.query("""
            INSERT INTO dirty_customers SELECT DISTINCT customer_id FROM impacts WHERE incident_id = $1
            ON CONFLICT DO NOTHING
            """, [incident])
        try markIncidentDirty(c, incident)
    }

    static func markIncidentDirty(_ c: PostgresConnection, _ incident: UUID) throws {
        try c.query("INSERT INTO dirty_incidents VALUES ($1) ON CONFLICT DO NOTHING", [incident])
    }

    /// Marks dirty the open incidents a customer has impact lines in (their at-risk lists move).
    static func markIncidentsOfCustomerDirty(_ c: PostgresConnection, _ customer: String) throws {
        try c.query("""
            INSERT INTO dirty_incidents
            SELECT DISTINCT i.incident_id FROM impacts i JOIN incidents n ON n.id = i.incident_id
            WHERE i.customer_id = $1 AND n.end_time IS NULL
            ON CONFLICT DO NOTHING
            """, [customer])
    }
}

// MARK: - Customers

/// A customer as sla keeps it: attributes and the canonical segment values.
struct CustomerRow: Sendable {
    var id: String
    var attributes: Liaison_Common_V1_CustomerAttributes
    var tier: Int
    var whiteGlove: Bool
}

extension Store {
    static func minorVersion(_ v: String) -> String {
        let parts = v.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count > 2 ? parts[0] + "." + parts[1] : v
    }

    /// Applies intake's CustomerUpserted (newer aggregate versions only).
    static func applyCustomer(_ c: PostgresConnection, _ e: Liaison_Intake_V1_CustomerUpserted) throws {
        guard let id = id(e.customer.name, "customers") else { return }
        let a = e.customer.attributes
        let partition = a.accountPartition.isEmpty ? String(a.accountNumber.filter { $0.isASCII && $0.isNumber }.prefix(1)) : a.accountPartition
        let versions = Array(Set(a.platforms.map(\.clientVersion).filter { !$0.isEmpty })).sorted()
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        let changed = try c.query("""
            INSERT INTO customers (id, attrs, tier, white_glove, region, country, partition, platforms, versions, minors, features, version)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text[], $9::text[], $10::text[], $11::text[], $12)
            ON CONFLICT (id) DO UPDATE SET attrs = EXCLUDED.attrs, tier = EXCLUDED.tier, white_glove = EXCLUDED.white_glove,
                region = EXCLUDED.region, country = EXCLUDED.country, partition = EXCLUDED.partition,
                platforms = EXCLUDED.platforms, versions = EXCLUDED.versions, minors = EXCLUDED.minors,
                features = EXCLUDED.features, version = EXCLUDED.version
            WHERE customers.version < EXCLUDED.version
            """, [id, ByteA(try a.serializedBytes(options: options)), a.tier.rawValue, a.whiteGlove, a.region, a.country, partition,
                  TextArray(Array(Set(a.platforms.map(\.canonicalPlatform).filter { !$0.isEmpty })).sorted()),
                  TextArray(versions), TextArray(Array(Set(versions.map(minorVersion))).sorted()),
                  TextArray(Array(Set(a.features)).sorted()), e.header.aggregateVersion]).affectedRows
        // A tier change can change the governing contract.
        if changed > 0 { try markCustomersDirty(c, [id]) }
    }

    static func customers(_ c: PostgresConnection, _ ids: [String]) throws -> [String: CustomerRow] {
        guard !ids.isEmpty else { return [:] }
        var out: [String: CustomerRow] = [:]
        for row in try c.query("SELECT id, attrs, tier, white_glove FROM customers WHERE id = ANY($1::text[])", [TextArray(ids)]).rows {
            let id = try row.decode(String.self, 0)
            out[id] = CustomerRow(id: id, attributes: try Liaison_Common_V1_CustomerAttributes(serializedBytes: try row.decode(ByteA.self, 1).bytes),
                                  tier: Int(try row.decode(Int64.self, 2)), whiteGlove: try row.decode(Bool.self, 3))
        }
        return out
    }

    static func customerCount(_ c: PostgresConnection) throws -> Int64 {
        try c.query("SELECT count(*) FROM customers").first!.decode(Int64.self, 0)
    }
}
