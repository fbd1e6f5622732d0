import Foundation
import LiaisonAPI
import SLADomain

/// A contract in the domain's terms: exact percentages, minor units, a calendar in its time
/// zone, maintenance windows and business hours. Built once per stored contract.
struct ContractTerms: Sendable {
    struct Availability: Sendable {
        /// `services/{service}`, or "" for every covered service.
        var service: String
        var target: PercentE4
        var period: PeriodKind
        var proto: Liaison_Sla_V1_AvailabilityObjective
        /// The key of the objective in warnings and breaches.
        var key: String { "availability:\(service.isEmpty ? "*" : service):\(period)" }
    }

    struct Restore: Sendable {
        var severity: Int
        var limitMs: Int64
        var businessHoursOnly: Bool
        var creditPercentE2: Int64
    }

    var id: String
    var contract: Liaison_Sla_V1_Contract
    var customer: String?
    var tier: Int?
    var services: [String]
    var availability: [Availability]
    var restore: [Restore]
    var steps: [CreditStep]
    var feeMinor: Int64
    var currency: String
    var capPercentE2: Int64
    var start: Int64
    var end: Int64?
    var calendar: ContractCalendar
    var maintenance: [(window: MaintenanceWindow, reason: String)]
    var thresholds: [Int]
    var businessHours: BusinessHours?
    /// Weights by "severity:symptom" (0 for either: any).
    var weights: [String: Int]

    var name: String { "contracts/" + id }
    var window: Interval { Interval(start, end ?? Int64.max / 4) }

    /// nil for a contract that was never activated (no start) or whose zone is unknown.
    init?(_ k: Liaison_Sla_V1_Contract) {
        guard k.effectiveWindow.hasStartTime, let calendar = ContractCalendar(timeZone: k.timeZone.isEmpty ? "UTC" : k.timeZone) else { return nil }
        contract = k
        id = String(k.name.dropFirst("contracts/".count))
        switch k.scope {
        case .customer(let n)?: customer = Store.id(n, "customers"); tier = nil
        case .tier(let t)?: customer = nil; tier = t.rawValue
        case nil: customer = nil; tier = nil
        }
        services = k.services
        availability = k.availabilityObjectives.map { o in
            Availability(service: o.service, target: PercentE4(o.targetPercent),
                         period: o.period == .quarter ? .quarter : o.period == .year ? .year : .month, proto: o)
        }
        restore = k.restoreObjectives.map { r in
            Restore(severity: r.severity.rawValue, limitMs: r.timeToRestore.seconds * 1000 + Int64(r.timeToRestore.nanos / 1_000_000),
                    businessHoursOnly: r.businessHoursOnly, creditPercentE2: Int64((r.creditPercent * 100).rounded()))
        }
        steps = k.creditSchedule.map { CreditStep(availabilityBelowPercent: $0.availabilityBelowPercent, creditPercent: $0.creditPercent) }
        currency = k.periodFee.currencyCode
        feeMinor = Currency.minorUnits(units: k.periodFee.units, nanos: k.periodFee.nanos, code: k.periodFee.currencyCode) ?? 0
        capPercentE2 = k.creditCapPercent == 0 ? 10_000 : Int64((k.creditCapPercent * 100).rounded())
        start = Store.ms(k.effectiveWindow.startTime)
        end = k.effectiveWindow.hasEndTime ? Store.ms(k.effectiveWindow.endTime) : nil
        self.calendar = calendar
        maintenance = k.maintenanceWindows.map { m in
            (MaintenanceWindow(first: Interval(Store.ms(m.window.startTime), Store.ms(m.window.endTime)),
                               recurrence: m.recurrence == .daily ? .daily : m.recurrence == .weekly ? .weekly : .none,
                               until: m.hasUntil ? Store.ms(m.until) : nil, services: m.services), m.reason)
        }
        thresholds = k.warningThresholdsPercent.isEmpty ? [50, 75, 90] : k.warningThresholdsPercent.map(Int.init).sorted()
        if k.hasBusinessHours {
            var spans: [Int: [Range<Int>]] = [:]
            for d in k.businessHours.days { spans[Int(d.weekday), default: []].append(Int(d.startMinute)..<Int(d.endMinute)) }
            businessHours = BusinessHours(spans: spans, holidays: Set(k.businessHours.holidays))
        } else {
            businessHours = nil
        }
        weights = Dictionary(k.impactWeights.map { ("\($0.severity.rawValue):\($0.symptom.rawValue)", Int($0.weightPercent)) },
                             uniquingKeysWith: { a, _ in a })
    }

    /// Whether the contract covers `service` (an empty list covers all).
    func covers(_ service: String) -> Bool { services.isEmpty || services.contains(service) }

    /// Whether an availability objective measures `service`.
    func measures(_ o: Availability, _ service: String) -> Bool {
        o.service.isEmpty ? covers(service) : o.service == service
    }

    /// The most specific weight: severity and symptom, then symptom, then severity; else 100.
    func weight(severity: Int, symptom: Int) -> Int {
        guard !weights.isEmpty else { return 100 }
        if symptom > 0, severity > 0, let w = weights["\(severity):\(symptom)"] { return w }
        if symptom > 0, let w = weights["0:\(symptom)"] { return w }
        if severity > 0, let w = weights["\(severity):0"] { return w }
        return 100
    }

    /// Maintenance occurrences inside `window` for `service`, with their reasons.
    func maintenance(in window: Interval, service: String) -> [(Interval, String)] {
        maintenance.flatMap { m in
            m.window.applies(toService: service) ? m.window.occurrences(in: window, calendar: calendar).map { ($0, m.reason) } : []
        }
    }

    /// The restore objective for a severity.
    func restoreObjective(_ severity: Int) -> Restore? { restore.first { $0.severity == severity } }
}

/// Which contract governs a customer when: its own beats its tier's, a later start beats an
/// earlier one.
enum Governing {
    static func candidates(_ all: [ContractTerms], customer: String, tier: Int) -> [ContractTerms] {
        all.filter { $0.customer == customer || ($0.customer == nil && $0.tier == tier) }
    }

    static func at(_ t: Int64, _ candidates: [ContractTerms]) -> ContractTerms? {
        candidates.filter { $0.start <= t && ($0.end.map { t < $0 } ?? true) }
            .max { a, b in
                let ka = (a.customer != nil ? 1 : 0, a.start, a.id), kb = (b.customer != nil ? 1 : 0, b.start, b.id)
                return ka < kb
            }
    }

    /// The contiguous span around `t`, within `period`, that `contract` governs.
    static func span(of contract: ContractTerms, around t: Int64, in period: Interval, _ candidates: [ContractTerms]) -> Interval {
        // Boundaries where the governing contract may change.
        var edges = Set<Int64>([period.start, period.end])
        for k in candidates {
            if k.start > period.start && k.start < period.end { edges.insert(k.start) }
            if let e = k.end, e > period.start && e < period.end { edges.insert(e) }
        }
        let sorted = edges.sorted()
        var pieces: [Interval] = []
        for (a, b) in zip(sorted, sorted.dropFirst()) where at(a, candidates)?.id == contract.id { pieces.append(Interval(a, b)) }
        // Merge adjacent pieces and take the one holding t (or the last before it).
        var merged: [Interval] = []
        for p in pieces {
            if let last = merged.last, last.end == p.start { merged[merged.count - 1] = Interval(last.start, p.end) } else { merged.append(p) }
        }
        return merged.first { $0.start <= t && t < $0.end } ?? merged.last { $0.start <= t } ?? period
    }
}
