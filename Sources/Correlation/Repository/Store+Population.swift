// Store: the population baseline (segment counts of the customer base).
import CorrelationDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf
import Synchronization

extension Store {
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
}
