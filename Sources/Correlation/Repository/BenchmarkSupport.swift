import CorrelationDomain
import Foundation
import LiaisonAPI
import LiaisonStorage

/// Entry points for Benchmarks/correlation (the same code paths the handlers use).
public enum CorrelationQueries {
    /// GetBlastRadius with default options from the live aggregates and the population baseline.
    public static func blastRadius(pool: PostgresPool, incident: String, settings: CorrelationSettings = .init()) async throws
        -> Liaison_Correlation_V1_BlastRadius {
        let id = try Store.incidentID(incident)
        return try await pool.transaction { c in
            let row = try Store.incident(c, id)
            var o = Analytics.BlastOptions()
            o.isDefault = false
            return try Analytics.blastRadius(c, incident: row, options: o, settings: settings, requireData: false)
        }
    }

    /// Blast radius from reporter counts computed elsewhere (the reference path), with the same
    /// population baseline and engine.
    public static func blastRadius(pool: PostgresPool, reporters: [String: Int], reportersTotal: Int) async throws -> (affected: [String], tested: Int) {
        let (population, total) = try await pool.transaction { c in try Store.population(c) }
        var counts: SegmentCounts = [:]
        for (k, n) in reporters { if let key = SegmentKey(parsing: k) { counts[key] = n } }
        let r = BlastRadiusEngine.compute(population: population, populationTotal: total, reporters: counts, reportersTotal: reportersTotal)
        return (r.affected.map(\.segment.description), r.testedSegments)
    }

    /// Times each part of GetBlastRadius (default options, no write-back) on one connection, in
    /// milliseconds: the phases in order, each as (name, ms). Same functions as the handler.
    public static func blastRadiusPhases(pool: PostgresPool, incident: String) async throws -> [(String, Double)] {
        let id = try Store.incidentID(incident)
        return try await pool.withConnection { c in
            let clock = ContinuousClock()
            var out: [(String, Double)] = []
            func time<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
                var value: T?
                let d = try clock.measure { value = try body() }
                out.append((name, Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15))
                return value!
            }
            try time("BEGIN") { try c.query("BEGIN") }
            let row = try time("incident row") { try Store.incident(c, id) }
            let baseline = try time("population (version token; cached)") { try Store.cachedPopulation(c) }
            let (population, populationTotal) = (baseline.counts, baseline.total)
            let repRows = try time("reporters SQL") { try Store.reporterRows(c, id) }
            let (reporters, reportersTotal) = try time("reporters decode (\(repRows.count) rows)") {
                try Store.decodeCounts(repRows, keys: baseline.keys)
            }
            let now = try time("now()") { try Store.now(c) }
            let result = time("engine") {
                BlastRadiusEngine.compute(population: population, populationTotal: populationTotal,
                                          reporters: reporters, reportersTotal: reportersTotal)
            }
            _ = time("protobuf") { Analytics.message(result, incident: row, window: nil, now: now, revision: row.blastRevision) }
            try time("COMMIT") { try c.query("COMMIT") }
            return out
        }
    }
}
