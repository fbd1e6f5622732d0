import Foundation
import LiaisonAPI
import SLADomain

/// The budget of one availability objective over one measured window.
struct ObjectiveBudget: Sendable {
    var contract: ContractTerms
    var objective: ContractTerms.Availability
    /// The calendar period (in the contract's zone).
    var period: Interval
    /// The part of the period the contract governs (the measured window).
    var window: Interval
    var figures: BudgetFigures
    /// Downtime is accruing now (an open, counted line) at this weight (percent).
    var accruingWeight: Int
    /// The counted lines (after maintenance is cut out), for burn rates and the breach instant.
    var entries: [WeightedInterval]
    /// Incidents with counted lines in the window.
    var incidents: [UUID]
}

/// The time-to-restore clock of one incident on one service for a customer.
struct RestoreCheck: Sendable {
    var incident: UUID
    var service: String
    var severity: Int
    var interval: Interval
    var open: Bool
    var objective: ContractTerms.Restore
    var elapsedMs: Int64
    var deadline: Int64?
    var breached: Bool { elapsedMs > objective.limitMs }
}

/// Budget arithmetic over the ledger, in the domain's exact terms (use case layer: rows in,
/// figures out, no SQL).
enum BudgetCalculator {
    /// `a` minus `cuts`, as sorted pieces.
    static func subtract(_ a: Interval, _ cuts: [Interval]) -> [Interval] {
        var pieces = [a]
        for cut in cuts {
            pieces = pieces.flatMap { p -> [Interval] in
                guard cut.start < p.end && cut.end > p.start else { return [p] }
                var out: [Interval] = []
                if cut.start > p.start { out.append(Interval(p.start, cut.start)) }
                if cut.end < p.end { out.append(Interval(cut.end, p.end)) }
                return out
            }
        }
        return pieces
    }

    /// The lines of `impacts` an objective counts, closed at `now`, with the contract's maintenance
    /// cut out per service and the contract's weights.
    static func entries(_ k: ContractTerms, _ o: ContractTerms.Availability, _ impacts: [ImpactRow], within w: Interval, now: Int64)
        -> (entries: [WeightedInterval], accruingWeight: Int, incidents: [UUID]) {
        var out: [WeightedInterval] = []
        var accruing = 0
        var incidents = Set<UUID>()
        let upTo = min(now, w.end)
        var maintenanceByService: [String: [Interval]] = [:]
        for i in impacts where k.measures(o, i.service) && !i.excluded {
            let end = min(i.end ?? upTo, upTo)
            guard end > w.start, i.start < upTo, end > i.start else { continue }
            let clipped = Interval(max(i.start, w.start), end)
            let cuts = maintenanceByService[i.service] ?? {
                let m = k.maintenance(in: w, service: i.service).map(\.0)
                maintenanceByService[i.service] = m
                return m
            }()
            let weight = k.weight(severity: i.severity, symptom: i.symptom)
            for p in subtract(clipped, cuts) { out.append(WeightedInterval(interval: p, weightPercent: weight, excluded: false)) }
            if i.end == nil || i.end! > now, now < w.end, weight > 0,
               !cuts.contains(where: { $0.start <= now && now < $0.end }) {
                accruing = max(accruing, weight)
            }
            if let id = i.incident { incidents.insert(id) }
        }
        return (out, accruing, incidents.sorted { $0.uuidString < $1.uuidString })
    }

    /// The budget of `o` for the period containing `t` (`now` bounds what has happened).
    static func budget(_ k: ContractTerms, _ o: ContractTerms.Availability, impacts: [ImpactRow], period p: Interval,
                       candidates: [ContractTerms], around t: Int64, now: Int64) -> ObjectiveBudget {
        let w = Governing.span(of: k, around: t, in: p, candidates)
        let (entries, accruing, incidents) = Self.entries(k, o, impacts, within: w, now: now)
        let consumed = Downtime.consumed(entries, exclusions: [], within: w)
        let lastHour = Downtime.consumed(entries, exclusions: [], within: Interval(max(w.start, now - 3_600_000), max(w.start, now)))
        let figures = Budget.evaluate(target: o.target, window: w, now: now, consumedMs: consumed, consumedLastHourMs: lastHour,
                                      accruing: accruing > 0)
        return ObjectiveBudget(contract: k, objective: o, period: p, window: w, figures: figures, accruingWeight: accruing,
                               entries: entries, incidents: incidents)
    }

    /// The first instant at which the window's consumption exceeded its allowance (exact to the ms).
    static func breachInstant(_ b: ObjectiveBudget) -> Int64 {
        var lo = b.window.start, hi = min(b.figures.elapsedMs + b.window.start, b.window.end)
        func breached(_ t: Int64) -> Bool {
            let consumed = Downtime.consumed(b.entries, exclusions: [], within: Interval(b.window.start, t))
            return Budget.evaluate(target: b.objective.target, window: b.window, now: t, consumedMs: consumed, consumedLastHourMs: 0,
                                   accruing: false).breached
        }
        guard breached(hi) else { return hi }
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            if breached(mid) { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    /// When the budget is exhausted if the current accrual continues (nil: not accruing, or not
    /// before the window ends); already breached: the breach instant.
    static func projectedBreach(_ b: ObjectiveBudget, now: Int64) -> Int64? {
        if b.figures.breached { return breachInstant(b) }
        guard b.accruingWeight > 0 else { return nil }
        let remaining = b.figures.remainingMs + 1  // one ms past the allowance breaches
        let wall = (remaining * 100 + Int64(b.accruingWeight) - 1) / Int64(b.accruingWeight)
        let t = now + wall
        return t < b.window.end ? t : nil
    }

    /// Time-to-restore clocks of the customer's incidents covered by the contract.
    static func restoreChecks(_ k: ContractTerms, impacts: [ImpactRow], now: Int64) -> [RestoreCheck] {
        struct Key: Hashable { var incident: UUID; var service: String }
        var groups: [Key: (start: Int64, end: Int64?, open: Bool, severity: Int)] = [:]
        for i in impacts where !i.excluded && k.covers(i.service) {
            guard let inc = i.incident else { continue }
            let key = Key(incident: inc, service: i.service)
            let open = i.end == nil
            if var g = groups[key] {
                g.start = min(g.start, i.start)
                g.open = g.open || open
                g.end = g.open ? nil : max(g.end ?? i.end!, i.end!)
                if i.severity > 0 && (g.severity == 0 || i.severity < g.severity) { g.severity = i.severity }
                groups[key] = g
            } else {
                groups[key] = (i.start, i.end, open, i.severity)
            }
        }
        var out: [RestoreCheck] = []
        for (key, g) in groups {
            guard let o = k.restoreObjective(g.severity) else { continue }
            let hours = o.businessHoursOnly ? k.businessHours : nil
            let end = g.open ? max(now, g.start) : g.end!
            let interval = Interval(g.start, end)
            let elapsed = RestoreClock.elapsed(interval, hours: hours, calendar: k.calendar)
            let deadline = RestoreClock.deadline(start: g.start, limitMs: o.limitMs, hours: hours, calendar: k.calendar)
            out.append(RestoreCheck(incident: key.incident, service: key.service, severity: g.severity, interval: interval,
                                    open: g.open, objective: o, elapsedMs: elapsed, deadline: deadline))
        }
        return out.sorted { ($0.interval.start, $0.service) < ($1.interval.start, $1.service) }
    }

    // MARK: Credits

    /// The fee of the measured window (prorated when the contract governs part of the period).
    static func fee(_ b: ObjectiveBudget) -> Int64 {
        b.window == b.period ? b.contract.feeMinor
            : Credits.proratedFee(feeMinor: b.contract.feeMinor, measuredMs: b.window.length, periodMs: b.period.length)
    }

    /// The schedule's credit for the window's availability, capped, and how it was computed.
    static func availabilityCredit(_ b: ObjectiveBudget, consumedMs: Int64, alreadyCredited: Int64) -> (Int64, Int64, String) {
        let percent = Credits.percentE2(consumedMs: consumedMs, windowMs: b.window.length, steps: b.contract.steps)
        let fee = fee(b)
        let amount = Credits.amount(feeMinor: fee, percentE2: percent, capPercentE2: b.contract.capPercentE2,
                                    alreadyCreditedMinor: alreadyCredited)
        let text = Credits.calculation(consumedMs: consumedMs, windowMs: b.window.length, steps: b.contract.steps, feeMinor: fee,
                                       currency: b.contract.currency, capPercentE2: b.contract.capPercentE2, alreadyCreditedMinor: alreadyCredited)
        return (percent, amount, text)
    }

    /// The credit a breach would cost when it happens: the first schedule step crossed.
    static func exposure(_ b: ObjectiveBudget, alreadyCredited: Int64) -> Int64 {
        availabilityCredit(b, consumedMs: b.figures.allowedMs + 1, alreadyCredited: alreadyCredited).1
    }

    // MARK: Messages

    static func serviceBudget(_ b: ObjectiveBudget, now: Int64, horizonMs: Int64) -> Liaison_Sla_V1_ServiceBudget {
        var s = Liaison_Sla_V1_ServiceBudget()
        s.service = b.objective.service
        s.objective = b.objective.proto
        s.periodWindow = Store.window(b.window)
        s.allowedDowntime = Store.duration(b.figures.allowedMs)
        s.consumedDowntime = Store.duration(b.figures.consumedMs)
        s.remaining = Store.duration(b.figures.remainingMs)
        s.availabilityPercent = Double(b.figures.availabilitySoFarE4.value) / 10_000
        s.burnRate = b.figures.burnRate
        if let t = b.figures.projectedExhaustion ?? projectedBreach(b, now: now).flatMap({ b.figures.breached ? nil : $0 }) {
            s.projectedExhaustTime = Store.timestamp(t)
        }
        s.state = state(b, now: now, horizonMs: horizonMs)
        return s
    }

    /// BREACHED when consumption exceeds the allowance; AT_RISK when exhaustion is projected
    /// within the horizon or consumption reached the contract's highest warning threshold.
    static func state(_ b: ObjectiveBudget, now: Int64, horizonMs: Int64) -> Liaison_Sla_V1_BudgetState {
        if b.figures.breached { return .breached }
        if let t = projectedBreach(b, now: now), t - now <= horizonMs { return .atRisk }
        if let top = b.contract.thresholds.last,
           !Budget.crossedThresholds([top], consumedMs: b.figures.consumedMs, allowedMs: b.figures.allowedMs).isEmpty {
            return .atRisk
        }
        return .healthy
    }
}
