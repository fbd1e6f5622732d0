import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import SLADomain
import SwiftProtobuf

/// Budgets and the incident analyses: GetBudgetStatus, ListBudgetStatuses, ListAtRiskCustomers,
/// RankRestorationPriorities, RecommendSeverity.
extension SLAHandler {
    var horizonMs: Int64 { Int64(settings.warningHorizon * 1000) }

    public func getBudgetStatus(request: Liaison_Sla_V1_GetBudgetStatusRequest, context: ServerContext) async throws -> Liaison_Sla_V1_BudgetStatus {
        let customer = try Self.customerID(request.customer, field: "customer")
        let horizon = horizonMs
        return try await read { c in
            let now = Store.ms(try Store.now(c))
            let t = request.hasTime ? Store.ms(request.time) : now
            if t > now { throw APIError.invalidArgument(domain: domain, field: "time", "must not be in the future") }
            if t < now - 366 * 86_400_000 { throw APIError.invalidArgument(domain: domain, field: "time", "must be within the last 366 days") }
            let ctx = try Evaluator.load(c, [customer], now: now)
            guard let (k, budgets) = Evaluator.budgets(ctx, customer, at: t, now: now) else {
                throw APIError.notFound(domain: domain, resourceType: "liaison.sla.v1.Contract", name: "contract of \(request.customer)")
            }
            return Evaluator.status(customer: customer, contract: k, budgets, now: now, horizonMs: horizon)
        }
    }

    public func listBudgetStatuses(request: Liaison_Sla_V1_ListBudgetStatusesRequest, context: ServerContext) async throws -> Liaison_Sla_V1_ListBudgetStatusesResponse {
        let q = try ListQuery(
            collection: "budgetStatuses", pageSize: request.pageSize, defaultSize: 100, maxSize: 1000, filter: request.filter,
            parser: Self.budgetFilter, orderBy: request.orderBy, orderings: Self.budgetOrderings, pageToken: request.pageToken,
            codec: codec, domain: domain)
        let (codec, lifetime) = (self.codec, settings.pageTokenLifetime)
        return try await read { c in
            let page = try q.page(c, table: "budget_status", columns: "id, body", codec: codec, lifetime: lifetime)
            var out = Liaison_Sla_V1_ListBudgetStatusesResponse()
            out.budgetStatuses = try page.rows.map { try Liaison_Sla_V1_BudgetStatus(serializedBytes: try $0.decode(ByteA.self, 1).bytes) }
            out.nextPageToken = page.next
            return out
        }
    }

    static func horizon(_ d: Google_Protobuf_Duration, has: Bool) throws -> Int64 {
        guard has else { return 24 * 3_600_000 }
        let ms = Self.ms(d)
        guard ms > 0, ms <= 366 * 86_400_000 else {
            throw APIError.invalidArgument(domain: domain, field: "horizon", "must be positive and at most 366 days")
        }
        return ms
    }

    static func requireIncident(_ c: PostgresConnection, _ id: UUID, name: String) throws -> IncidentRow {
        guard let i = try Store.incident(c, id) else { throw notFound("Incident", name) }
        return i
    }

    static func money(_ minor: Int64, _ currency: String) -> Liaison_Common_V1_Money {
        var m = Liaison_Common_V1_Money()
        guard !currency.isEmpty else { return m }
        let (u, n) = Currency.money(minor: minor, code: currency)
        m.currencyCode = currency
        m.units = u
        m.nanos = n
        return m
    }

    public func listAtRiskCustomers(request: Liaison_Sla_V1_ListAtRiskCustomersRequest, context: ServerContext) async throws -> Liaison_Sla_V1_ListAtRiskCustomersResponse {
        let id = try Self.incidentID(request.incident, field: "incident")
        let horizon = try Self.horizon(request.horizon, has: request.hasHorizon)
        let q = try ListQuery(
            collection: "atRisk", parent: request.incident + "|\(horizon)|\(request.includeInferred)", pageSize: request.pageSize,
            defaultSize: 100, maxSize: 1000, filter: "", parser: Self.noFilter, orderBy: "", orderings: Self.atRiskOrderings,
            pageToken: request.pageToken, codec: codec, domain: domain)
        let (codec, lifetime) = (self.codec, settings.pageTokenLifetime)
        return try await read { c in
            _ = try Self.requireIncident(c, id, name: request.incident)
            let now = try Store.now(c)
            var conditions: [(String, any PostgresBindable)] = [("incident_id = $?", id), ("breach_time <= $?", now.addingTimeInterval(Double(horizon) / 1000))]
            if !request.includeInferred { conditions.append(("evidence = $?", ImpactSource.reported.rawValue)) }
            let page = try q.page(c, table: "at_risk", columns: "id, service, objective_kind, breach_time, remaining_ms, exposure_minor, currency, evidence, contract_id, attrs",
                                  conditions: conditions, codec: codec, lifetime: lifetime)
            var out = Liaison_Sla_V1_ListAtRiskCustomersResponse()
            let nowMs = Store.ms(now)
            out.customers = try page.rows.map { r in
                var a = Liaison_Sla_V1_AtRiskCustomer()
                a.customer = "customers/" + (try r.decode(String.self, 0))
                a.service = try r.decode(String.self, 1)
                a.objectiveKind = Liaison_Sla_V1_ObjectiveKind(rawValue: Int(try r.decode(Int64.self, 2))) ?? .unspecified
                let breach = Store.ms(try r.decode(Date.self, 3))
                a.breachTime = Store.timestamp(breach)
                a.timeToBreach = Store.duration(max(0, breach - nowMs))
                a.remainingBudget = Store.duration(try r.decode(Int64.self, 4))
                a.creditExposure = Self.money(try r.decode(Int64.self, 5), try r.decode(String.self, 6))
                a.evidence = Liaison_Sla_V1_Impact.Source(rawValue: Int(try r.decode(Int64.self, 7))) ?? .unspecified
                a.contract = "contracts/" + (try r.decode(String.self, 8))
                a.attributes = try Liaison_Common_V1_CustomerAttributes(serializedBytes: try r.decode(ByteA.self, 9).bytes)
                return a
            }
            out.nextPageToken = page.next
            // Totals over all pages; the exposure sums the most common currency.
            var sql = "SELECT count(*), currency, coalesce(sum(exposure_minor), 0)::bigint FROM at_risk WHERE incident_id = $1 AND breach_time <= $2"
            var ps: [any PostgresBindable] = [id, now.addingTimeInterval(Double(horizon) / 1000)]
            if !request.includeInferred { sql += " AND evidence = 1" }
            sql += " GROUP BY currency ORDER BY count(*) DESC, currency"
            ps = ps + []
            let totals = try c.query(sql, ps).rows
            out.totalSize = try totals.reduce(0) { $0 + (try $1.decode(Int64.self, 0)) }
            if let top = totals.first { out.totalCreditExposure = Self.money(try top.decode(Int64.self, 2), try top.decode(String.self, 1)) }
            return out
        }
    }

    public func rankRestorationPriorities(request: Liaison_Sla_V1_RankRestorationPrioritiesRequest, context: ServerContext) async throws -> Liaison_Sla_V1_RankRestorationPrioritiesResponse {
        let id = try Self.incidentID(request.incident, field: "incident")
        let horizon = try Self.horizon(request.horizon, has: request.hasHorizon)
        return try await read { c in
            _ = try Self.requireIncident(c, id, name: request.incident)
            let now = try Store.now(c)
            let rows = try c.query("""
                SELECT service, count(*), count(*) FILTER (WHERE tier = 4), count(*) FILTER (WHERE white_glove),
                       coalesce(sum(exposure_minor), 0)::bigint, min(currency), min(breach_time)
                FROM at_risk WHERE incident_id = $1 AND breach_time <= $2 GROUP BY service
                """, [id, now.addingTimeInterval(Double(horizon) / 1000)]).rows
            let exposures = try rows.map { r in
                ServiceExposure(service: try r.decode(String.self, 0), customersAtRisk: try r.decode(Int64.self, 1),
                                enterpriseAtRisk: try r.decode(Int64.self, 2), whiteGloveAtRisk: try r.decode(Int64.self, 3),
                                exposureMinor: try r.decode(Int64.self, 4), currency: try r.decode(String.self, 5),
                                earliestBreach: Store.ms(try r.decode(Date.self, 6)), now: Store.ms(now))
            }
            var out = Liaison_Sla_V1_RankRestorationPrioritiesResponse()
            out.priorities = RestorationRanking.rank(exposures).map { r in
                var p = Liaison_Sla_V1_RestorationPriority()
                p.rank = Int32(r.rank)
                p.service = r.exposure.service
                p.score = r.score
                p.customersAtRisk = r.exposure.customersAtRisk
                p.whiteGloveAtRisk = r.exposure.whiteGloveAtRisk
                p.creditExposure = Self.money(r.exposure.exposureMinor, r.exposure.currency)
                if let t = r.exposure.earliestBreach { p.earliestBreachTime = Store.timestamp(t) }
                p.reasons = r.reasons
                return p
            }
            out.computeTime = Store.timestamp(now)
            return out
        }
    }

    public func recommendSeverity(request: Liaison_Sla_V1_RecommendSeverityRequest, context: ServerContext) async throws -> Liaison_Sla_V1_RecommendSeverityResponse {
        let id = try Self.incidentID(request.incident, field: "incident")
        return try await read { c in
            let incident = try Self.requireIncident(c, id, name: request.incident)
            let now = Store.ms(try Store.now(c))
            let hit = try Store.incidentCustomers(c, id)
            let customers = try Store.customers(c, hit.map(\.0))
            let atRisk = try c.query("SELECT breach_time, exposure_minor, currency FROM at_risk WHERE incident_id = $1", [id]).rows.map { r in
                Store.AtRiskRow(customer: "", service: "", kind: 0, breachTime: Store.ms(try r.decode(Date.self, 0)), remainingMs: 0,
                                exposureMinor: try r.decode(Int64.self, 1), currency: try r.decode(String.self, 2), evidence: 0,
                                contract: "", tier: 0, whiteGlove: false, attrs: ByteA([]))
            }
            let advice = SeverityPolicy.advise(try IncidentAnalysis.inputs(c, incident, hit: hit, customers: customers, atRisk: atRisk, now: now))
            var out = Liaison_Sla_V1_RecommendSeverityResponse()
            out.incident = incident.name
            out.currentSeverity = Liaison_Common_V1_Severity(rawValue: incident.severity) ?? .unspecified
            out.recommendedSeverity = Liaison_Common_V1_Severity(rawValue: advice.recommended) ?? .unspecified
            out.direction = switch advice.direction { case .raise: .raise; case .keep: .keep; case .lower: .lower }
            out.confidence = advice.confidence
            out.reasons = advice.reasons.map(IncidentAnalysis.reason)
            out.computeTime = Store.timestamp(now)
            return out
        }
    }
}
