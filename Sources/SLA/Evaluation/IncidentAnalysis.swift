import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import SLADomain

/// The use cases behind an incident's SLA picture: who breaches first if it goes on (the at-risk
/// list, recomputed when the incident's lines change), what to restore first, and what severity
/// the customer impact calls for.
enum IncidentAnalysis {
    /// Recomputes an open incident's at-risk list (a closed incident has none) and publishes
    /// SeverityRecommended when the advice changes.
    static func refresh(_ c: PostgresConnection, _ id: UUID, now: Int64, settings: SLASettings) throws {
        guard let incident = try Store.incident(c, id) else { return }
        guard incident.open else {
            try Store.replaceAtRisk(c, incident: id, [])
            return
        }
        let hit = try Store.incidentCustomers(c, id)
        let ids = hit.map(\.0)
        let reported = Set(hit.filter(\.1).map(\.0))
        let ctx = try Evaluator.load(c, ids, now: now)
        var rows: [Store.AtRiskRow] = []
        rows.reserveCapacity(ids.count)
        for customer in ids {
            guard let (k, candidates) = Evaluator.governing(ctx, customer, at: now) else { continue }
            let impacts = ctx.impacts[customer] ?? []
            let services = Set(impacts.filter { $0.incident == id && !$0.excluded }.map(\.service))
            var best: Store.AtRiskRow? = nil
            func consider(_ r: Store.AtRiskRow) {
                if best == nil || (r.breachTime, r.service) < (best!.breachTime, best!.service) { best = r }
            }
            let attrs = ctx.customers[customer]
            let base = Store.AtRiskRow(
                customer: customer, service: "", kind: 1, breachTime: 0, remainingMs: 0, exposureMinor: 0, currency: k.currency,
                evidence: reported.contains(customer) ? ImpactSource.reported.rawValue : ImpactSource.blastRadius.rawValue,
                contract: k.id, tier: attrs?.tier ?? 0, whiteGlove: attrs?.whiteGlove ?? false,
                attrs: (try? Store.deterministic(attrs?.attributes ?? .init())) ?? ByteA([]))
            for o in k.availability where services.contains(where: { k.measures(o, $0) }) {
                let b = BudgetCalculator.budget(k, o, impacts: impacts, period: k.calendar.period(o.period, containing: now),
                                                candidates: candidates, around: now, now: now)
                guard let t = BudgetCalculator.projectedBreach(b, now: now) else { continue }
                let already = ctx.credited(customer, contract: k.id, window: b.window)
                var r = base
                r.service = o.service.isEmpty ? services.sorted().first { k.measures(o, $0) } ?? "" : o.service
                r.kind = 1
                r.breachTime = t
                r.remainingMs = b.figures.remainingMs
                r.exposureMinor = b.figures.breached ? 0 : BudgetCalculator.exposure(b, alreadyCredited: already)
                consider(r)
            }
            for check in BudgetCalculator.restoreChecks(k, impacts: impacts, now: now) where check.incident == id && check.open {
                guard let deadline = check.deadline else { continue }
                var r = base
                r.service = check.service
                r.kind = 2
                r.breachTime = deadline
                r.remainingMs = check.objective.limitMs - check.elapsedMs
                r.exposureMinor = check.breached || k.feeMinor == 0 ? 0
                    : Credits.amount(feeMinor: k.feeMinor, percentE2: check.objective.creditPercentE2, capPercentE2: k.capPercentE2,
                                     alreadyCreditedMinor: 0)
                consider(r)
            }
            if let best { rows.append(best) }
        }
        try Store.replaceAtRisk(c, incident: id, rows)
        try recommend(c, incident, hit: hit, ctx: ctx, atRisk: rows, now: now, settings: settings)
    }

    // MARK: Severity

    static func inputs(_ c: PostgresConnection, _ incident: IncidentRow, hit: [(String, Bool)], customers: [String: CustomerRow],
                       atRisk: [Store.AtRiskRow], now: Int64) throws -> SeverityInputs {
        var i = SeverityInputs(declared: incident.severity, customersHit: Int64(hit.count), customerBase: try Store.customerCount(c),
                               reportingCustomers: Int64(hit.filter(\.1).count), enterpriseHit: 0, whiteGloveHit: 0,
                               slasAtRisk: 0, slasBreached: 0, creditExposureMinor: 0, currency: atRisk.first?.currency ?? "",
                               trend: .stable)
        for (id, _) in hit {
            if customers[id]?.tier == 4 { i.enterpriseHit += 1 }
            if customers[id]?.whiteGlove == true { i.whiteGloveHit += 1 }
        }
        for r in atRisk {
            if r.breachTime <= now { i.slasBreached += 1 } else if r.breachTime - now <= 24 * 3_600_000 { i.slasAtRisk += 1 }
            if r.currency == i.currency { i.creditExposureMinor += r.exposureMinor }
        }
        // Trend: new customers with lines in the last 30 minutes against the 30 before.
        let r = try c.query("""
            SELECT count(DISTINCT customer_id) FILTER (WHERE create_time > $2::timestamptz - interval '30 minutes'),
                   count(DISTINCT customer_id) FILTER (WHERE create_time <= $2::timestamptz - interval '30 minutes' AND create_time > $2::timestamptz - interval '60 minutes')
            FROM impacts WHERE incident_id = $1 AND NOT excluded
            """, [incident.id, Store.date(now)]).first!
        let recent = try r.decode(Int64.self, 0), before = try r.decode(Int64.self, 1)
        i.trend = recent >= 3 && recent * 2 > before * 3 ? .rising : (before >= 3 && recent * 2 < before ? .falling : .stable)
        return i
    }

    static func recommend(_ c: PostgresConnection, _ incident: IncidentRow, hit: [(String, Bool)], ctx: Evaluator.Context,
                          atRisk: [Store.AtRiskRow], now: Int64, settings: SLASettings) throws {
        let advice = SeverityPolicy.advise(try inputs(c, incident, hit: hit, customers: ctx.customers, atRisk: atRisk, now: now))
        let key = "\(advice.recommended):\(advice.direction)"
        guard key != incident.recommended else { return }
        try c.query("UPDATE incidents SET recommended = $2 WHERE id = $1", [incident.id, key])
        try Store.publish(c, settings, { h in
            var e = Liaison_Sla_V1_SeverityRecommended()
            e.header = h
            e.incident = incident.name
            e.currentSeverity = Liaison_Common_V1_Severity(rawValue: incident.severity) ?? .unspecified
            e.recommendedSeverity = Liaison_Common_V1_Severity(rawValue: advice.recommended) ?? .unspecified
            e.reasons = advice.reasons.map(reason)
            e.computeTime = Store.timestamp(now)
            return e
        }, aggregate: incident.name + "/severityRecommendation", version: now)
    }

    static func reason(_ r: SeverityReasonOut) -> Liaison_Sla_V1_SeverityReason {
        var out = Liaison_Sla_V1_SeverityReason()
        out.kind = r.kind
        out.detail = r.detail
        out.weight = r.weight
        return out
    }
}
