import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import SLADomain

/// The use cases behind budgets: evaluate customers (statuses, warnings, breaches, credits, next
/// checks) and incidents (at-risk lists, severity advice). Each runs inside one transaction the
/// caller opens; everything it writes and publishes commits together.
enum Evaluator {
    /// How far back the ledger is read: a year period plus slack.
    static let lookbackMs: Int64 = 400 * 86_400_000

    struct Context {
        var customers: [String: CustomerRow]
        var candidates: [ContractTerms]
        var impacts: [String: [ImpactRow]]
        /// Credits per breach window, and recorded breaches, as of the load (for reads; a pass that
        /// records breaches or credits asks the database again).
        var credits: [String: [(contract: String, window: Interval, amount: Int64)]]
        var breaches: [String: UUID]

        /// What `customer` was credited under `contract` for windows overlapping `w`.
        func credited(_ customer: String, contract: String, window w: Interval) -> Int64 {
            (credits[customer] ?? []).filter { $0.contract == contract && $0.window.start < w.end && $0.window.end > w.start }
                .reduce(0) { $0 + $1.amount }
        }
    }

    static func load(_ c: PostgresConnection, _ ids: [String], now: Int64) throws -> Context {
        let customers = try Store.customers(c, ids)
        let tiers = Array(Set(customers.values.map(\.tier)))
        let candidates = try Store.governingCandidates(c, customers: ids, tiers: tiers, from: Store.date(now - lookbackMs))
        let impacts = try Store.impacts(c, customers: ids, from: now - lookbackMs)
        return Context(customers: customers, candidates: candidates, impacts: impacts,
                       credits: try Store.creditWindows(c, customers: ids), breaches: try Store.breachKeys(c, customers: ids))
    }

    /// The governing contract of a customer at `t`, with the candidates it was chosen from.
    static func governing(_ ctx: Context, _ customer: String, at t: Int64) -> (ContractTerms, [ContractTerms])? {
        let tier = ctx.customers[customer]?.tier ?? 0
        let candidates = Governing.candidates(ctx.candidates, customer: customer, tier: tier)
        return Governing.at(t, candidates).map { ($0, candidates) }
    }

    /// Budgets of every availability objective of the contract governing `customer` at `t`.
    static func budgets(_ ctx: Context, _ customer: String, at t: Int64, now: Int64) -> (ContractTerms, [ObjectiveBudget])? {
        guard let (k, candidates) = governing(ctx, customer, at: t) else { return nil }
        let impacts = ctx.impacts[customer] ?? []
        return (k, k.availability.map { o in
            BudgetCalculator.budget(k, o, impacts: impacts, period: k.calendar.period(o.period, containing: t), candidates: candidates,
                                    around: t, now: now)
        })
    }

    static func status(customer: String, contract: ContractTerms, _ budgets: [ObjectiveBudget], now: Int64, horizonMs: Int64)
        -> Liaison_Sla_V1_BudgetStatus {
        var s = Liaison_Sla_V1_BudgetStatus()
        s.customer = "customers/" + customer
        s.contract = contract.name
        s.budgets = budgets.map { BudgetCalculator.serviceBudget($0, now: now, horizonMs: horizonMs) }
        s.state = s.budgets.map(\.state).max { $0.rawValue < $1.rawValue } ?? .healthy
        s.computeTime = Store.timestamp(now)
        return s
    }

    // MARK: Customers

    /// Evaluates `ids` at `now`: budget statuses, warnings once per line and period, breaches once,
    /// credits reconciled (adjustments, never edits), and when to look again.
    static func evaluateCustomers(_ c: PostgresConnection, _ ids: [String], now: Int64, settings: SLASettings) throws {
        guard !ids.isEmpty else { return }
        let ctx = try load(c, ids, now: now)
        let horizon = Int64(settings.warningHorizon * 1000)
        let known = try Store.warningKeys(c, customers: ids, from: now - lookbackMs)
        var pending: [PendingWarning] = []
        var statuses: [(customer: String, contract: String, state: Int, services: [String], body: ByteA)] = []
        var noContract: [String] = []
        var checks: [(String, Int64)] = []
        var clear: [String] = []
        for id in ids {
            guard let (k, candidates) = governing(ctx, id, at: now) else {
                noContract.append(id)
                clear.append(id)
                continue
            }
            let impacts = ctx.impacts[id] ?? []
            var current: [ObjectiveBudget] = []
            var next: Int64? = nil
            func check(_ t: Int64?) { if let t, t > now { next = min(next ?? t, t) } }
            for o in k.availability {
                let period = k.calendar.period(o.period, containing: now)
                let b = BudgetCalculator.budget(k, o, impacts: impacts, period: period, candidates: candidates, around: now, now: now)
                current.append(b)
                warn(&pending, known: known, customer: id, b, now: now, horizonMs: horizon)
                if b.accruingWeight > 0 {
                    let w = Int64(b.accruingWeight)
                    for t in k.thresholds {
                        let line = (b.figures.allowedMs * Int64(t) + 99) / 100
                        if b.figures.consumedMs < line { check(now + ((line - b.figures.consumedMs) * 100 + w - 1) / w) }
                    }
                    if let p = BudgetCalculator.projectedBreach(b, now: now) { check(p - horizon); check(p) }
                    check(now + 15 * 60_000)  // the stored status stays fresh while downtime accrues
                    check(b.window.end)
                }
            }
            // Every period (of every contract that governed) with counted lines: breaches and credits,
            // including past periods a correction changed.
            try settlePeriods(c, customer: id, ctx: ctx, candidates: candidates, impacts: impacts, now: now, settings: settings)
            for r in BudgetCalculator.restoreChecks(k, impacts: impacts, now: now) {
                if r.breached { try recordRestoreBreach(c, customer: id, k, r, now: now, settings: settings) }
                if r.open && !r.breached { check(r.deadline) }
            }
            let st = status(customer: id, contract: k, current, now: now, horizonMs: horizon)
            statuses.append((id, k.id, st.state.rawValue, current.map(\.objective.service).filter { !$0.isEmpty }, try Store.deterministic(st)))
            if let next { checks.append((id, next)) } else { clear.append(id) }
        }
        try sendWarnings(c, pending, settings: settings)
        try Store.upsertBudgetStatuses(c, statuses, now: Store.date(now))
        try Store.deleteBudgetStatuses(c, noContract)
        try Store.setNextChecks(c, checks, clear: clear)
    }

    /// Breaches and credits of every period with counted lines in the lookback.
    static func settlePeriods(_ c: PostgresConnection, customer: String, ctx: Context, candidates: [ContractTerms], impacts: [ImpactRow],
                              now: Int64, settings: SLASettings) throws {
        let counted = impacts.filter { $0.start < now }  // excluded lines too: a correction may have emptied a breached window
        guard !counted.isEmpty else { return }
        var seen = Set<String>()
        for i in counted {
            let span = Interval(max(i.start, now - lookbackMs), min(i.end ?? now, now))
            guard span.end > span.start || i.end == nil else { continue }
            for k in candidates {
                guard k.window.intersection(span) != nil || (span.start == span.end && k.window.start <= span.start) else { continue }
                for o in k.availability where k.measures(o, i.service) {
                    for p in k.calendar.periods(o.period, overlapping: Interval(span.start, max(span.end, span.start + 1))) {
                        let probe = max(p.start, k.start, span.start)
                        guard Governing.at(probe, candidates)?.id == k.id else { continue }
                        let key = "\(k.id)|\(o.key)|\(p.start)|\(probe)"
                        guard seen.insert(key).inserted else { continue }
                        let b = BudgetCalculator.budget(k, o, impacts: impacts, period: p, candidates: candidates, around: probe, now: now)
                        if b.figures.breached {
                            try recordAvailabilityBreach(c, customer: customer, b, now: now, settings: settings)
                        } else if let id = ctx.breaches["\(customer)|\(k.id)|\(o.key)|\(b.window.start)"] {
                            // A correction took the window back under its objective: the breach stays on
                            // record, its credits are adjusted to nothing.
                            try Store.updateBreachFigures(c, id, actual: b.figures.periodAvailabilityE4.description, incidents: [])
                            try reconcileCredit(c, breach: id, customer: customer, currency: k.currency, amount: 0,
                                                calculation: "availability \(b.figures.periodAvailabilityE4.description) >= \(o.target.description) after correction",
                                                reason: "ledger corrected: availability \(b.figures.periodAvailabilityE4.description) meets the objective", settings: settings)
                        }
                    }
                }
            }
        }
    }

    // MARK: Warnings

    /// A warning not yet known to be sent, with its event.
    struct PendingWarning {
        var customer: String
        var contract: String
        var objective: String
        var periodStart: Int64
        var kind: Int
        var threshold: Int
        var event: Liaison_Sla_V1_BudgetWarning
        var eventID: UUID
    }

    /// Records the new warnings of a batch in one statement and publishes those it inserted (a
    /// warning another transaction recorded first is skipped by the insert, so it is never
    /// published twice), coalesced into multi-row outbox inserts in one pipeline.
    static func sendWarnings(_ c: PostgresConnection, _ pending: [PendingWarning], settings: SLASettings) throws {
        guard !pending.isEmpty else { return }
        let inserted = try Store.recordWarnings(c, pending.map { ($0.customer, $0.contract, $0.objective, $0.periodStart, $0.kind, $0.threshold) })
        let units: [[StatementBatch.Statement]] = try pending.compactMap { w in
            guard inserted.contains(Store.warningKey(customer: w.customer, contract: w.contract, objective: w.objective,
                                                     periodStart: w.periodStart, kind: w.kind, threshold: w.threshold)) else { return nil }
            let batch = StatementBatch()
            try Events.publish(batch, w.event, eventID: w.eventID, to: settings.destinations)
            return batch.statements
        }
        let statements = StatementBatch.coalesce(units)
        if !statements.isEmpty { _ = try c.pipeline(statements) }
    }

    /// The budget's warnings not in `known`, appended to `pending` (sent by ``sendWarnings(_:_:settings:)``).
    static func warn(_ pending: inout [PendingWarning], known: Set<String>, customer: String, _ b: ObjectiveBudget, now: Int64,
                     horizonMs: Int64) {
        let incident = b.incidents.last.map { "incidents/" + $0.lowercasedString } ?? ""
        var budget: Liaison_Sla_V1_ServiceBudget? = nil
        func send(_ kind: Liaison_Sla_V1_BudgetWarning.Kind, _ threshold: Int, _ detail: String) {
            let key = Store.warningKey(customer: customer, contract: b.contract.id, objective: b.objective.key,
                                       periodStart: b.period.start, kind: kind.rawValue, threshold: threshold)
            guard !known.contains(key) else { return }
            if budget == nil { budget = BudgetCalculator.serviceBudget(b, now: now, horizonMs: horizonMs) }
            let (h, id) = Events.header(producer: "sla", aggregate: "customers/\(customer)/budget", version: now)
            var e = Liaison_Sla_V1_BudgetWarning()
            e.header = h
            e.customer = "customers/" + customer
            e.contract = b.contract.name
            e.kind = kind
            e.thresholdPercent = Int32(threshold)
            e.budget = budget!
            e.incident = incident
            e.detail = detail
            pending.append(PendingWarning(customer: customer, contract: b.contract.id, objective: b.objective.key,
                                          periodStart: b.period.start, kind: kind.rawValue, threshold: threshold, event: e, eventID: id))
        }
        let allowed = DurationText.format(ms: b.figures.allowedMs)
        for t in Budget.crossedThresholds(b.contract.thresholds, consumedMs: b.figures.consumedMs, allowedMs: b.figures.allowedMs) {
            send(.consumption, t, "\(t)% of the \(allowed) \(b.objective.target.description) budget used (\(DurationText.format(ms: b.figures.consumedMs)))")
        }
        if !b.figures.breached, let p = BudgetCalculator.projectedBreach(b, now: now), p - now <= horizonMs {
            send(.exhaustionProjected, 0, "budget exhausted in \(DurationText.format(ms: p - now)) if the impact continues")
        }
        // Multiwindow burn-rate alerts for tier-level objectives (SRE workbook defaults).
        if b.contract.tier != nil {
            for rule in BurnRate.firing(BurnRateRule.workbook, entries: b.entries, exclusions: [], now: now, target: b.objective.target) {
                send(.burnRate, Int(rule.factor), "burn rate at or above \(rule.factor)x over \(DurationText.format(ms: rule.long)) and \(DurationText.format(ms: rule.short))")
            }
        }
    }

    // MARK: Breaches and credits

    static func recordAvailabilityBreach(_ c: PostgresConnection, customer: String, _ b: ObjectiveBudget, now: Int64, settings: SLASettings) throws {
        let occur = BudgetCalculator.breachInstant(b)
        var breach = Liaison_Sla_V1_Breach()
        breach.customer = "customers/" + customer
        breach.contract = b.contract.name
        breach.service = b.objective.service
        breach.objectiveKind = .availability
        breach.window = Store.window(b.window)
        breach.target = b.objective.target.description
        breach.actual = b.figures.periodAvailabilityE4.description
        breach.incidents = b.incidents.map { "incidents/" + $0.lowercasedString }
        breach.occurTime = Store.timestamp(occur)
        let id = try record(c, breach, customer: customer, contract: b.contract.id, objective: b.objective.key, kind: 1,
                            window: b.window, occur: occur, now: now, settings: settings)
        let already = try Store.creditedInWindow(c, customer: customer, contract: b.contract.id, window: b.window, except: id)
        let (_, amount, text) = BudgetCalculator.availabilityCredit(b, consumedMs: b.figures.consumedMs, alreadyCredited: already)
        try reconcileCredit(c, breach: id, customer: customer, currency: b.contract.currency, amount: amount, calculation: text,
                            reason: "availability now \(b.figures.periodAvailabilityE4.description) in the window", settings: settings)
    }

    /// Records a breach once (publishing BreachOccurred the first time); later, its figures move.
    static func record(_ c: PostgresConnection, _ breach: Liaison_Sla_V1_Breach, customer: String, contract: String, objective: String,
                       kind: Int, window: Interval, occur: Int64, now: Int64, settings: SLASettings) throws -> UUID {
        let (id, new) = try Store.insertBreach(c, breach, customer: customer, contract: contract, objective: objective, kind: kind,
                                               window: window, occur: occur)
        guard new else {
            try Store.updateBreachFigures(c, id, actual: breach.actual, incidents: breach.incidents)
            return id
        }
        var event = breach
        event.name = "breaches/" + id.lowercasedString
        event.createTime = Store.timestamp(now)
        let recorded = event
        try Store.publish(c, settings, { h in
            var e = Liaison_Sla_V1_BreachOccurred()
            e.header = h
            e.breach = recorded
            return e
        }, aggregate: recorded.name, version: 1)
        return id
    }

    static func recordRestoreBreach(_ c: PostgresConnection, customer: String, _ k: ContractTerms, _ r: RestoreCheck, now: Int64,
                                    settings: SLASettings) throws {
        let occur = r.deadline ?? now
        var breach = Liaison_Sla_V1_Breach()
        breach.customer = "customers/" + customer
        breach.contract = k.name
        breach.service = r.service
        breach.objectiveKind = .timeToRestore
        breach.window = Store.window(r.interval, open: r.open)
        breach.target = DurationText.format(ms: r.objective.limitMs) + (r.objective.businessHoursOnly ? " (business hours)" : "")
        breach.actual = DurationText.format(ms: r.elapsedMs) + (r.open ? " and counting" : "")
        breach.incidents = ["incidents/" + r.incident.lowercasedString]
        breach.occurTime = Store.timestamp(occur)
        let objective = "restore:\(r.incident.lowercasedString):\(r.service)"
        let id = try record(c, breach, customer: customer, contract: k.id, objective: objective, kind: 2,
                            window: Interval(r.interval.start, r.interval.start), occur: occur, now: now, settings: settings)
        guard r.objective.creditPercentE2 > 0, k.feeMinor > 0 else { return }
        // The fee period: that of the contract's first availability objective (monthly by default).
        let period = k.calendar.period(k.availability.first?.period ?? .month, containing: occur)
        let already = try Store.creditedInWindow(c, customer: customer, contract: k.id, window: period, except: id)
        let amount = Credits.amount(feeMinor: k.feeMinor, percentE2: r.objective.creditPercentE2, capPercentE2: k.capPercentE2,
                                    alreadyCreditedMinor: already)
        let text = "time to restore \(breach.actual) > \(breach.target) -> \(Double(r.objective.creditPercentE2) / 100)% of "
            + "\(Currency.format(minor: k.feeMinor, code: k.currency)) = \(Currency.format(minor: amount, code: k.currency))"
        try reconcileCredit(c, breach: id, customer: customer, currency: k.currency, amount: amount, calculation: text,
                            reason: "restore objective", settings: settings)
    }

    /// Brings the credits of a breach to `amount`: the first entry is the credit; later changes are
    /// adjustment entries for the difference, with their reason. Never edits an entry.
    static func reconcileCredit(_ c: PostgresConnection, breach: UUID, customer: String, currency: String, amount: Int64,
                                calculation: String, reason: String, settings: SLASettings) throws {
        let entries = try Store.creditEntries(c, breach: breach)
        let total = entries.reduce(0) { $0 + $1.1 }
        guard amount != total, !(entries.isEmpty && amount == 0) else { return }
        let id = RandomUUID.make()
        var k = Liaison_Sla_V1_Credit()
        k.customer = "customers/" + customer
        k.breach = "breaches/" + breach.lowercasedString
        let (units, nanos) = Currency.money(minor: amount - total, code: currency)
        k.amount.currencyCode = currency
        k.amount.units = units
        k.amount.nanos = nanos
        k.calculation = calculation
        k.state = .owed
        if let original = entries.first?.0 {
            k.adjusts = "credits/" + original.lowercasedString
            k.reason = "\(reason): total \(Currency.format(minor: total, code: currency)) -> \(Currency.format(minor: amount, code: currency))"
        }
        let stored = try Store.insertCredit(c, id: id, k, breach: breach, customer: customer,
                                            adjusts: entries.first?.0, amount: amount - total, currency: currency)
        if entries.isEmpty { try Store.setBreachCredit(c, breach, credit: id) }
        try Store.publish(c, settings, { h in
            var e = Liaison_Sla_V1_CreditOwed()
            e.header = h
            e.credit = stored
            return e
        }, aggregate: stored.name, version: 1)
    }
}
