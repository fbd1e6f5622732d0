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
}
