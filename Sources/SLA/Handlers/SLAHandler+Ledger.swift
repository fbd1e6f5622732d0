import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import SLADomain
import SwiftProtobuf

/// The impact ledger: ListImpacts, CreateImpact, UpdateImpact.
extension SLAHandler {
    /// A ledger line as the API shows it, with the parts that do not count and why: the line's own
    /// exclusion, or the maintenance windows of the contract governing it.
    static func impact(_ r: ImpactRow, ctx: Evaluator.Context?, now: Int64) -> Liaison_Sla_V1_Impact {
        var m = Liaison_Sla_V1_Impact()
        m.name = "customers/\(r.customer)/impacts/\(r.id.lowercasedString)"
        m.service = r.service
        if let i = r.incident { m.incident = "incidents/" + i.lowercasedString }
        m.interval.startTime = Store.timestamp(r.start)
        if let e = r.end { m.interval.endTime = Store.timestamp(e) }
        m.severity = Liaison_Common_V1_Severity(rawValue: r.severity) ?? .unspecified
        m.symptom = Liaison_Common_V1_SymptomKind(rawValue: r.symptom) ?? .unspecified
        m.source = Liaison_Sla_V1_Impact.Source(rawValue: r.source.rawValue) ?? .unspecified
        m.excluded = r.excluded
        m.exclusionReason = r.exclusionReason
        m.author = r.author
        m.note = r.note
        m.createTime = Store.timestamp(r.createTime)
        m.updateTime = Store.timestamp(r.updateTime)
        m.etag = Store.etag(r.version)
        let span = Interval(r.start, max(r.start, r.end ?? now))
        if r.excluded {
            var x = Liaison_Sla_V1_Exclusion()
            x.window = Store.window(span)
            x.reason = r.exclusionReason
            m.exclusions = [x]
        } else if let ctx, let (k, _) = Evaluator.governing(ctx, r.customer, at: r.start) {
            m.exclusions = k.maintenance(in: span, service: r.service).compactMap { (w, reason) in
                guard let part = w.intersection(span), part.length > 0 else { return nil }
                var x = Liaison_Sla_V1_Exclusion()
                x.window = Store.window(part)
                x.reason = "maintenance: " + reason
                return x
            }
        }
        return m
    }

    public func listImpacts(request: Liaison_Sla_V1_ListImpactsRequest, context: ServerContext) async throws -> Liaison_Sla_V1_ListImpactsResponse {
        let customer: String? = request.parent == "customers/-" ? nil : try Self.customerID(request.parent, field: "parent")
        let q = try ListQuery(
            collection: "impacts", parent: request.parent, pageSize: request.pageSize, defaultSize: 100, maxSize: 1000,
            filter: request.filter, parser: Self.impactFilter, orderBy: request.orderBy, orderings: Self.impactOrderings,
            pageToken: request.pageToken, codec: codec, domain: domain)
        let (codec, lifetime) = (self.codec, settings.pageTokenLifetime)
        return try await read { c in
            let page = try q.page(c, table: "impacts", columns: ImpactRow.columns, conditions: customer.map { [("customer_id = $?", $0)] } ?? [],
                                  codec: codec, lifetime: lifetime)
            let rows = try page.rows.map(ImpactRow.init)
            let now = Store.ms(try Store.now(c))
            let ctx = try Evaluator.load(c, Array(Set(rows.map(\.customer))), now: now)
            var out = Liaison_Sla_V1_ListImpactsResponse()
            out.impacts = rows.map { Self.impact($0, ctx: ctx, now: now) }
            out.nextPageToken = page.next
            return out
        }
    }

    /// The checks shared by CreateImpact and UpdateImpact on the line's new values.
    static func impactViolations(_ m: Liaison_Sla_V1_Impact, now: Int64, creating: Bool) -> [APIError.FieldViolation] {
        var v: [APIError.FieldViolation] = []
        if creating && !validServiceName(m.service) { v.append(.init("impact.service", "must be services/{service}")) }
        if !m.interval.hasStartTime { v.append(.init("impact.interval.start_time", "is required")) }
        else if Store.ms(m.interval.startTime) > now { v.append(.init("impact.interval.start_time", "must not be in the future")) }
        if m.interval.hasStartTime && m.interval.hasEndTime && Store.ms(m.interval.endTime) < Store.ms(m.interval.startTime) {
            v.append(.init("impact.interval.end_time", "must not be before start_time"))
        }
        if creating && !m.incident.isEmpty && Store.uuid(m.incident, "incidents") == nil {
            v.append(.init("impact.incident", "must be incidents/{uuid}"))
        }
        if m.severity.rawValue < 0 || m.severity.rawValue > 5 { v.append(.init("impact.severity", "unknown severity")) }
        if m.symptom.rawValue < 0 || m.symptom.rawValue > 5 { v.append(.init("impact.symptom", "unknown symptom")) }
        if m.excluded && m.exclusionReason.trimmingCharacters(in: .whitespaces).isEmpty {
            v.append(.init("impact.exclusion_reason", "is required when excluded"))
        }
        if m.author.trimmingCharacters(in: .whitespaces).isEmpty { v.append(.init("impact.author", "is required (who records or corrects the line)")) }
        if m.note.trimmingCharacters(in: .whitespaces).isEmpty { v.append(.init("impact.note", "is required (why)")) }
        v += RequestFields.lengthViolations([("impact.author", m.author, 256), ("impact.note", m.note, 2000),
                                             ("impact.exclusion_reason", m.exclusionReason, 1000)])
        return v
    }

    public func createImpact(request: Liaison_Sla_V1_CreateImpactRequest, context: ServerContext) async throws -> Liaison_Sla_V1_Impact {
        let customer = try Self.customerID(request.parent, field: "parent")
        let now = Store.ms(Date())
        try Self.invalid(Self.impactViolations(request.impact, now: now + 5_000, creating: true))
        let m = request.impact
        return try await mutate("CreateImpact", request.requestID, request) { c in
            let created = try Store.now(c)
            let row = ImpactRow(
                id: RandomUUID.make(), customer: customer, service: m.service, incident: Store.uuid(m.incident, "incidents"),
                start: Store.ms(m.interval.startTime), end: m.interval.hasEndTime ? Store.ms(m.interval.endTime) : nil,
                severity: m.severity.rawValue, symptom: m.symptom.rawValue, source: .manual, excluded: m.excluded, exclusionReason: m.exclusionReason,
                author: m.author, note: m.note, createTime: created, updateTime: created, version: 1)
            try Store.insertImpact(c, row)
            try Store.markCustomersDirty(c, [customer])
            if let i = row.incident { try Store.markIncidentDirty(c, i) }
            let ctx = try Evaluator.load(c, [customer], now: Store.ms(created))
            return Self.impact(row, ctx: ctx, now: Store.ms(created))
        }
    }

    public func updateImpact(request: Liaison_Sla_V1_UpdateImpactRequest, context: ServerContext) async throws -> Liaison_Sla_V1_Impact {
        let parts = request.impact.name.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "customers", parts[2] == "impacts", !parts[1].isEmpty, let id = UUID(uuidString: String(parts[3])) else {
            throw APIError.invalidArgument(domain: domain, field: "impact.name", "must be customers/{customer_id}/impacts/{uuid}")
        }
        let customer = String(parts[1])
        let allowed: Set<String> = ["interval", "interval.start_time", "interval.end_time", "excluded", "exclusion_reason", "severity", "note", "author"]
        let paths = request.updateMask.paths
        if paths.isEmpty { throw APIError.invalidArgument(domain: domain, field: "update_mask", "is required") }
        for p in paths where !allowed.contains(p) {
            throw APIError.invalidArgument(domain: domain, field: "update_mask", "unknown or output-only path \"\(p.prefix(100))\"")
        }
        let given = request.impact
        return try await mutate("UpdateImpact", request.requestID, request) { c in
            guard let current = try Store.impact(c, customer: customer, id: id, forUpdate: true) else {
                throw Self.notFound("Impact", request.impact.name)
            }
            try Store.checkEtag(request.etag, current.version, name: request.impact.name)
            let now = try Store.now(c)
            var m = Self.impact(current, ctx: nil, now: Store.ms(now))
            for p in paths {
                switch p {
                case "interval": m.interval = given.interval
                case "interval.start_time": m.interval.startTime = given.interval.startTime
                case "interval.end_time":
                    if given.interval.hasEndTime { m.interval.endTime = given.interval.endTime } else { m.interval.clearEndTime() }
                case "excluded": m.excluded = given.excluded
                case "exclusion_reason": m.exclusionReason = given.exclusionReason
                case "severity": m.severity = given.severity
                default: break
                }
            }
            // Every correction says who and why (the ledger keeps the last; credits move by adjustment).
            m.author = given.author
            m.note = given.note
            if !m.excluded { m.exclusionReason = "" }
            try Self.invalid(Self.impactViolations(m, now: Store.ms(now) + 5_000, creating: false))
            var row = current
            row.start = Store.ms(m.interval.startTime)
            row.end = m.interval.hasEndTime ? Store.ms(m.interval.endTime) : nil
            row.excluded = m.excluded
            row.exclusionReason = m.exclusionReason
            row.severity = m.severity.rawValue
            row.author = m.author
            row.note = m.note
            let stored = try Store.correctImpact(c, row)
            try Store.markCustomersDirty(c, [customer])
            if let i = stored.incident { try Store.markIncidentDirty(c, i) }
            let ctx = try Evaluator.load(c, [customer], now: Store.ms(now))
            return Self.impact(stored, ctx: ctx, now: Store.ms(now))
        }
    }
}
