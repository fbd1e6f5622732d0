import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
@testable import SLA
import SwiftProtobuf
import XCTest

/// The sla service over a real PostgreSQL and real gRPC: contracts, the ledger, budgets, breaches,
/// credits, and the events it consumes.
final class SLAServiceTests: XCTestCase {
    var stack: SLAStack!

    override func setUp() async throws { stack = try await SLAStack() }
    override func tearDown() async throws { await stack.shutdown() }

    // MARK: Contracts

    func testContractLifecycleValidationAndEffectiveContract() async throws {
        let sla = stack.sla
        // Validation names each field and writes nothing.
        var bad = Liaison_Sla_V1_CreateContractRequest()
        bad.contractID = "Bad_ID"
        bad.contract.availabilityObjectives = [{ var o = Liaison_Sla_V1_AvailabilityObjective(); o.targetPercent = 100; return o }()]
        bad.contract.timeZone = "Mars/Olympus"
        bad.requestID = SLAStack.rid()
        let fields = await violatedFields { _ = try await sla.createContract(bad) }
        for field in ["contract_id", "contract.display_name", "contract.scope", "contract.availability_objectives[0].target_percent",
                      "contract.availability_objectives[0].period", "contract.time_zone"] {
            XCTAssertTrue(fields.contains(field), "\(field) not named in \(fields)")
        }
        let v1 = try await sla.listContracts(.init()).contracts.count
        XCTAssertEqual(v1, 0)

        let start = monthStartUTC()
        let tierContract = try await stack.create("enterprise-2026", SLAStack.contract(tier: .enterprise, target: 99.9, start: start))
        XCTAssertEqual(tierContract.state, .active)
        XCTAssertEqual(tierContract.etag, "W/\"2\"")
        // A customer's own contract overrides its tier's.
        _ = try await stack.deliver([SLAStack.customer("acme", region: "eu-south"), SLAStack.customer("globex", region: "us-east")])
        let own = try await stack.create("acme-gold", SLAStack.contract(customer: "acme", target: 99.99, start: start))
        var eff = Liaison_Sla_V1_GetEffectiveContractRequest()
        eff.customer = "customers/acme"
        let v2 = try await sla.getEffectiveContract(eff).name
        XCTAssertEqual(v2, own.name)
        eff.customer = "customers/globex"
        let v3 = try await sla.getEffectiveContract(eff).name
        XCTAssertEqual(v3, tierContract.name)
        eff.customer = "customers/nobody"
        let code = await rpcCode { _ = try await sla.getEffectiveContract(eff) }
        XCTAssertEqual(code, .notFound)

        // An ACTIVE contract changes only name, document, end and future maintenance.
        var u = Liaison_Sla_V1_UpdateContractRequest()
        u.contract = own
        u.contract.availabilityObjectives[0].targetPercent = 95
        u.updateMask.paths = ["availability_objectives"]
        u.requestID = SLAStack.rid()
        var c2 = await rpcCode { _ = try await sla.updateContract(u) }
        XCTAssertEqual(c2, .failedPrecondition)
        u.contract.displayName = "Acme gold"
        u.updateMask.paths = ["display_name"]
        u.etag = "W/\"1\""
        u.requestID = SLAStack.rid()
        c2 = await rpcCode { _ = try await sla.updateContract(u) }
        XCTAssertEqual(c2, .aborted, "stale etag")
        u.etag = own.etag
        let renamed = try await sla.updateContract(u)
        XCTAssertEqual(renamed.displayName, "Acme gold")
        // A replay of the same request returns the stored answer; the etag does not move twice.
        let v4 = try await sla.updateContract(u).etag
        XCTAssertEqual(v4, renamed.etag)

        // Only DRAFT contracts are deleted; a start in a closed period is refused.
        var del = Liaison_Sla_V1_DeleteContractRequest()
        del.name = own.name
        del.requestID = SLAStack.rid()
        c2 = await rpcCode { _ = try await sla.deleteContract(del) }
        XCTAssertEqual(c2, .failedPrecondition)
        let old = try await stack.create("old", SLAStack.contract(customer: "globex", start: start.addingTimeInterval(-40 * 86400)), activate: false)
        var act = Liaison_Sla_V1_ActivateContractRequest()
        act.name = old.name
        act.requestID = SLAStack.rid()
        c2 = await rpcCode { _ = try await sla.activateContract(act) }
        XCTAssertEqual(c2, .failedPrecondition, "would rewrite a closed period")
        del.name = old.name
        del.requestID = SLAStack.rid()
        _ = try await sla.deleteContract(del)

        // Retire ends the window now; the contract keeps its past.
        var ret = Liaison_Sla_V1_RetireContractRequest()
        ret.name = own.name
        ret.requestID = SLAStack.rid()
        let retired = try await sla.retireContract(ret)
        XCTAssertEqual(retired.state, .retired)
        XCTAssertTrue(retired.effectiveWindow.hasEndTime)
        var list = Liaison_Sla_V1_ListContractsRequest()
        list.filter = "state = ACTIVE"
        let v5 = try await sla.listContracts(list).contracts.map(\.name)
        XCTAssertEqual(v5, [tierContract.name])
    }

    // MARK: Budgets, breaches and credits

    func testManualImpactsGiveExactBudgetsAndOneBreachWithItsCreditAndAdjustments() async throws {
        let sla = stack.sla
        let now = Date()
        let start = monthStartUTC(now)
        let len = monthLengthMs(now)
        _ = try await stack.create("acme", SLAStack.contract(customer: "acme", target: 99.99, start: start))
        // Two overlapping lines: [t0, t0+10m) and [t0+5m, t0+12m) count 12 minutes, once.
        let t0 = max(start, now.addingTimeInterval(-3 * 3600))
        let first = try await stack.impact("acme", from: t0, to: t0.addingTimeInterval(600))
        _ = try await stack.impact("acme", from: t0.addingTimeInterval(300), to: t0.addingTimeInterval(720))
        var get = Liaison_Sla_V1_GetBudgetStatusRequest()
        get.customer = "customers/acme"
        let status = try await sla.getBudgetStatus(get)
        XCTAssertEqual(status.budgets.count, 1)
        let b = status.budgets[0]
        XCTAssertEqual(ms(b.consumedDowntime), 720_000)
        XCTAssertEqual(ms(b.allowedDowntime), len / 10_000, "99.99% of the month")
        XCTAssertEqual(ms(b.remaining), len / 10_000 - 720_000)
        XCTAssertEqual(b.state, .breached)
        XCTAssertEqual(status.state, .breached)

        // The evaluator records the breach once and its credit to the cent.
        try await stack.evaluate()
        try await stack.evaluate()
        var breaches = try await sla.listBreaches(.init()).breaches
        XCTAssertEqual(breaches.count, 1)
        XCTAssertEqual(breaches[0].objectiveKind, .availability)
        XCTAssertEqual(breaches[0].target, "99.99%")
        // Breach instant: the allowance (len/10000 ms) is used up at t0 + allowance + 1 ms.
        XCTAssertEqual(Store.ms(breaches[0].occurTime), Store.ms(t0) + len / 10_000 + 1)
        var credits = try await sla.listCredits(.init()).credits
        XCTAssertEqual(credits.count, 1)
        // 12 minutes in a month is above 99.9% and below 99.99%: 10% of 2,000.00 EUR.
        XCTAssertEqual(credits[0].amount.units, 200)
        XCTAssertEqual(credits[0].amount.nanos, 0)
        XCTAssertEqual(credits[0].state, .owed)
        XCTAssertEqual(breaches[0].credit, credits[0].name)
        let v6 = try await stack.outbox("BreachOccurred")
        XCTAssertEqual(v6, 1)
        let v7 = try await stack.outbox("CreditOwed")
        XCTAssertEqual(v7, 1)
        let v8 = try await stack.outbox("BudgetWarning") >= 3
        XCTAssertEqual(v8, true, "50, 75 and 90% lines crossed")
        let warnings = try await stack.outbox("BudgetWarning")

        // A correction after the breach: the first line really lasted 8 hours (under 99%: 25%).
        var u = Liaison_Sla_V1_UpdateImpactRequest()
        u.impact.name = first.name
        u.impact.interval.startTime = SLAStack.ts(t0.addingTimeInterval(-5 * 3600))
        u.impact.interval.endTime = SLAStack.ts(t0.addingTimeInterval(3 * 3600))
        u.impact.author = "bob"
        u.impact.note = "monitoring shows the outage began 5 hours earlier"
        u.updateMask.paths = ["interval"]
        u.etag = first.etag
        u.requestID = SLAStack.rid()
        if Store.ms(t0) - 5 * 3_600_000 < Store.ms(start) {
            u.impact.interval.startTime = SLAStack.ts(start)
            u.impact.interval.endTime = SLAStack.ts(start.addingTimeInterval(8 * 3600))
        }
        let corrected = try await sla.updateImpact(u)
        XCTAssertEqual(corrected.author, "bob")
        try await stack.evaluate()
        credits = try await sla.listCredits({ var r = Liaison_Sla_V1_ListCreditsRequest(); r.orderBy = "create_time"; return r }()).credits
        XCTAssertEqual(credits.count, 2, "an adjustment entry, never an edit")
        XCTAssertEqual(credits[0].amount.units, 200, "the original is unchanged")
        XCTAssertEqual(credits[1].adjusts, credits[0].name)
        XCTAssertFalse(credits[1].reason.isEmpty)
        let total = credits.reduce(Int64(0)) { $0 + $1.amount.units }
        let consumed = ms(try await sla.getBudgetStatus(get).budgets[0].consumedDowntime)
        // 25% when availability < 99%, i.e. consumed > 1% of the month; else 10%.
        XCTAssertEqual(total, consumed * 100 > len ? 500 : 200)
        breaches = try await sla.listBreaches(.init()).breaches
        XCTAssertEqual(breaches.count, 1, "still one breach")
        let v9 = try await stack.outbox("BudgetWarning")
        XCTAssertEqual(v9, warnings, "warnings once per line and period")

        // Issue the original once; a second time is refused; waiving needs a note.
        var issue = Liaison_Sla_V1_IssueCreditRequest()
        issue.name = credits[0].name
        issue.billingReference.system = "stripe"
        issue.billingReference.id = "cn_123"
        issue.requestID = SLAStack.rid()
        let issued = try await sla.issueCredit(issue)
        XCTAssertEqual(issued.state, .issued)
        XCTAssertTrue(issued.hasSettleTime)
        issue.requestID = SLAStack.rid()
        var code = await rpcCode { _ = try await sla.issueCredit(issue) }
        XCTAssertEqual(code, .failedPrecondition)
        var waive = Liaison_Sla_V1_WaiveCreditRequest()
        waive.name = credits[1].name
        waive.requestID = SLAStack.rid()
        code = await rpcCode { _ = try await sla.waiveCredit(waive) }
        XCTAssertEqual(code, .invalidArgument)
        let v10 = try await stack.outbox("CreditSettled")
        XCTAssertEqual(v10, 1)
    }

    func testImpactValidation() async throws {
        var r = Liaison_Sla_V1_CreateImpactRequest()
        r.parent = "customers/acme"
        r.impact.service = "checkout"
        r.impact.interval.startTime = SLAStack.ts(Date().addingTimeInterval(3600))
        r.requestID = SLAStack.rid()
        let sla = stack.sla
        let fields = await violatedFields { _ = try await sla.createImpact(r) }
        for f in ["impact.service", "impact.interval.start_time", "impact.author", "impact.note"] {
            XCTAssertTrue(fields.contains(f), "\(f) not named: \(fields)")
        }
        var list = Liaison_Sla_V1_ListImpactsRequest()
        list.parent = "customers/-"
        let v11 = try await stack.sla.listImpacts(list).impacts.count
        XCTAssertEqual(v11, 0)
    }

    // MARK: Events: incidents, blast radius, links

    func testBlastRadiusPutsSegmentCustomersOnTheAtRiskListOnceWhateverIsReplayedOrReordered() async throws {
        let sla = stack.sla
        let now = Date()
        let start = monthStartUTC(now)
        _ = try await stack.deliver([
            SLAStack.customer("a1", region: "eu-south"), SLAStack.customer("a2", region: "eu-south", whiteGlove: true),
            SLAStack.customer("b1", region: "us-east"), SLAStack.customer("f1", region: "eu-south", tier: .free),
        ])
        _ = try await stack.create("enterprise", SLAStack.contract(tier: .enterprise, target: 99.9, start: start))
        let id = UUID()
        let name = "incidents/" + id.uuidString.lowercased()
        let began = max(start, now.addingTimeInterval(-20 * 60))
        // The blast radius arrives before the incident itself: it waits for it.
        var r = try await stack.deliver([SLAStack.blast(name, regions: ["eu-south"], revision: 1, start: began)])
        XCTAssertEqual(r.applied, 1)
        r = try await stack.deliver([SLAStack.declared(SLAStack.incident(id, start: began, version: 1))])
        XCTAssertEqual(r.applied, 1)
        try await stack.evaluate()
        var req = Liaison_Sla_V1_ListAtRiskCustomersRequest()
        req.incident = name
        req.includeInferred = true
        req.horizon = .init(seconds: 31 * 86400)
        var page = try await sla.listAtRiskCustomers(req)
        // a1 and a2 (enterprise, eu-south) have a contract; f1 (free) has none; b1 is not in the segment.
        XCTAssertEqual(Set(page.customers.map(\.customer)), ["customers/a1", "customers/a2"])
        XCTAssertEqual(page.totalSize, 2)
        XCTAssertTrue(page.customers.allSatisfy { $0.evidence == .blastRadius && $0.objectiveKind == .availability })
        // Breach when the 99.9% budget (len/1000) is used up, counting from the incident start.
        let len = monthLengthMs(now)
        let expected = Store.ms(began) + len / 1000 + 1
        XCTAssertEqual(Store.ms(page.customers[0].breachTime), expected)
        XCTAssertEqual(page.customers[0].creditExposure.units, 200, "first step: 10% of 2,000.00 EUR")
        XCTAssertEqual(page.totalCreditExposure.units, 400)
        var impacts = Liaison_Sla_V1_ListImpactsRequest()
        impacts.parent = "customers/-"
        let v12 = try await sla.listImpacts(impacts).impacts.count
        XCTAssertEqual(v12, 3, "a1, a2, f1 on checkout")

        // Replays (new event ids, same versions) and an older revision change nothing.
        _ = try await stack.deliver([SLAStack.blast(name, regions: ["eu-south"], revision: 1, start: began),
                                     SLAStack.declared(SLAStack.incident(id, start: began, version: 1)),
                                     SLAStack.blast(name, regions: ["us-east"], revision: 0, start: began)])
        try await stack.evaluate()
        let v13 = try await sla.listImpacts(impacts).impacts.count
        XCTAssertEqual(v13, 3)
        let v14 = try await sla.listAtRiskCustomers(req).totalSize
        XCTAssertEqual(v14, 2)

        // Without inferred customers only reporters count; a report link makes a1 REPORTED.
        req.includeInferred = false
        let v15 = try await sla.listAtRiskCustomers(req).totalSize
        XCTAssertEqual(v15, 0)
        _ = try await stack.deliver([SLAStack.linked(name, customer: "a1", at: began.addingTimeInterval(60))])
        try await stack.evaluate()
        page = try await sla.listAtRiskCustomers(req)
        XCTAssertEqual(page.customers.map(\.customer), ["customers/a1"])
        XCTAssertEqual(page.customers[0].evidence, .reported)

        // Ranking and severity read the same picture.
        var rank = Liaison_Sla_V1_RankRestorationPrioritiesRequest()
        rank.incident = name
        rank.horizon = .init(seconds: 31 * 86400)
        let ranked = try await sla.rankRestorationPriorities(rank)
        XCTAssertEqual(ranked.priorities.map(\.service), ["services/checkout"])
        XCTAssertEqual(ranked.priorities[0].customersAtRisk, 2)
        XCTAssertEqual(ranked.priorities[0].whiteGloveAtRisk, 1)
        var sev = Liaison_Sla_V1_RecommendSeverityRequest()
        sev.incident = name
        let advice = try await sla.recommendSeverity(sev)
        XCTAssertEqual(advice.currentSeverity, .sev2)
        XCTAssertFalse(advice.reasons.isEmpty)
        let v16 = try await stack.outbox("SeverityRecommended")
        XCTAssertGreaterThan(v16, 0)

        // A newer revision drops eu-south: its lines are excluded with the reason, not deleted.
        _ = try await stack.deliver([SLAStack.blast(name, regions: ["us-east"], revision: 2, start: began)])
        try await stack.evaluate()
        let lines = try await sla.listImpacts(impacts).impacts
        XCTAssertEqual(lines.filter { $0.source == .blastRadius && $0.excluded }.count, 3)
        XCTAssertTrue(lines.filter { $0.source == .blastRadius && $0.excluded }.allSatisfy { $0.exclusionReason.contains("revision 2") })
        req.includeInferred = true
        let afterRevision2 = try await sla.listAtRiskCustomers(req).customers.map(\.customer)
        XCTAssertEqual(Set(afterRevision2), ["customers/a1", "customers/b1"])

        // Mitigation closes the lines at the mitigation time and empties the at-risk list.
        let mitigated = now.addingTimeInterval(-60)
        var changed = Liaison_Correlation_V1_IncidentStatusChanged()
        changed.incident = SLAStack.incident(id, start: began, state: .mitigated, version: 2, mitigated: mitigated)
        changed.header = SLAStack.header(aggregate: name, version: 2, producer: "correlation")
        _ = try await stack.deliver([changed])
        try await stack.evaluate()
        let v17 = try await sla.listAtRiskCustomers(req).totalSize
        XCTAssertEqual(v17, 0)
        let closed = try await sla.listImpacts(impacts).impacts.filter { !$0.excluded }
        XCTAssertFalse(closed.isEmpty)
        XCTAssertTrue(closed.allSatisfy { Store.ms($0.interval.endTime) == Store.ms(mitigated) })
        // The unknown incident is NOT_FOUND.
        req.incident = "incidents/" + UUID().uuidString.lowercased()
        let code = await rpcCode { _ = try await sla.listAtRiskCustomers(req) }
        XCTAssertEqual(code, .notFound)
    }
}

extension SLAServiceTests {
    /// A customer's contract replaced mid-period: each version measures its own part of the month
    /// (allowance prorated), the old one keeps its past, and a tier contract never applies while the
    /// customer has its own.
    func testAContractVersionSwitchingMidPeriodMeasuresItsOwnPart() async throws {
        let sla = stack.sla
        let now = Date()
        let start = monthStartUTC(now)
        let switchAt = Date(timeIntervalSince1970: Double(Int(max(start.addingTimeInterval(600), now.addingTimeInterval(-7200)).timeIntervalSince1970)))
        let monthEnd = start.addingTimeInterval(Double(monthLengthMs(now)) / 1000)
        _ = try await stack.create("tier", SLAStack.contract(tier: .enterprise, target: 90, start: start))
        _ = try await stack.deliver([SLAStack.customer("acme", region: "eu-south")])
        let v1 = try await stack.create("acme-v1", SLAStack.contract(customer: "acme", target: 99.9, start: start))
        // 5 minutes under v1, 20 minutes under v2.
        _ = try await stack.impact("acme", from: switchAt.addingTimeInterval(-600), to: switchAt.addingTimeInterval(-300))
        _ = try await stack.impact("acme", from: switchAt.addingTimeInterval(60), to: switchAt.addingTimeInterval(1260))
        let v2 = try await stack.create("acme-v2", SLAStack.contract(customer: "acme", target: 99.5, start: switchAt))
        var getV1 = Liaison_Sla_V1_GetContractRequest()
        getV1.name = v1.name
        let retired = try await sla.getContract(getV1)
        XCTAssertEqual(retired.state, .retired, "the overlapping version ends where the new one starts")
        XCTAssertEqual(Store.ms(retired.effectiveWindow.endTime), Store.ms(switchAt))

        var get = Liaison_Sla_V1_GetBudgetStatusRequest()
        get.customer = "customers/acme"
        let current = try await sla.getBudgetStatus(get)
        XCTAssertEqual(current.contract, v2.name)
        let b = current.budgets[0]
        // v2 measures [switch, month end): allowance 0.5% of that span, and only its 20 minutes.
        let span = Store.ms(monthEnd) - Store.ms(switchAt)
        XCTAssertEqual(Store.ms(b.periodWindow.startTime), Store.ms(switchAt))
        XCTAssertEqual(Store.ms(b.periodWindow.endTime), Store.ms(monthEnd))
        XCTAssertEqual(ms(b.allowedDowntime), span * 5_000 / 1_000_000)
        XCTAssertEqual(ms(b.consumedDowntime), 1_200_000)
        // Asked about a moment before the switch, v1 answers for its own part with its 5 minutes.
        get.time = SLAStack.ts(switchAt.addingTimeInterval(-60))
        let before = try await sla.getBudgetStatus(get)
        XCTAssertEqual(before.contract, v1.name)
        XCTAssertEqual(Store.ms(before.budgets[0].periodWindow.endTime), Store.ms(switchAt))
        XCTAssertEqual(ms(before.budgets[0].consumedDowntime), 300_000)
        XCTAssertEqual(ms(before.budgets[0].allowedDowntime), (Store.ms(switchAt) - Store.ms(start)) / 1000)
    }
}

extension SLAServiceTests {
    /// Weights: a SLOW line counts at 50%, and where it overlaps a full outage the outage counts
    /// (the highest weight at each instant), never both.
    func testImpactWeightsBySymptomAndSeverity() async throws {
        let now = Date()
        let start = monthStartUTC(now)
        var k = SLAStack.contract(customer: "acme", target: 99.9, start: start)
        var slow = Liaison_Sla_V1_ImpactWeight()
        slow.symptom = .slow
        slow.weightPercent = 50
        var sev4 = Liaison_Sla_V1_ImpactWeight()
        sev4.severity = .sev4
        sev4.weightPercent = 0
        k.impactWeights = [slow, sev4]
        _ = try await stack.create("acme", k)
        let t0 = max(start, now.addingTimeInterval(-4 * 3600))
        // [t0, t0+40m) SLOW at 50%; [t0+30m, t0+50m) full; [t0+60m, t0+90m) SEV4 at 0%.
        var r = Liaison_Sla_V1_CreateImpactRequest()
        r.parent = "customers/acme"
        r.impact.service = "services/checkout"
        r.impact.interval.startTime = SLAStack.ts(t0)
        r.impact.interval.endTime = SLAStack.ts(t0.addingTimeInterval(2400))
        r.impact.symptom = .slow
        r.impact.author = "alice"
        r.impact.note = "slow checkout"
        r.requestID = SLAStack.rid()
        let line = try await stack.sla.createImpact(r)
        XCTAssertEqual(line.symptom, .slow)
        _ = try await stack.impact("acme", from: t0.addingTimeInterval(1800), to: t0.addingTimeInterval(3000))
        r.impact.symptom = .unspecified
        r.impact.severity = .sev4
        r.impact.interval.startTime = SLAStack.ts(t0.addingTimeInterval(3600))
        r.impact.interval.endTime = SLAStack.ts(t0.addingTimeInterval(5400))
        r.requestID = SLAStack.rid()
        _ = try await stack.sla.createImpact(r)
        var get = Liaison_Sla_V1_GetBudgetStatusRequest()
        get.customer = "customers/acme"
        let b = try await stack.sla.getBudgetStatus(get).budgets[0]
        // 30 min at 50% (15) + 20 min full (20) + 30 min at 0% = 35 minutes.
        XCTAssertEqual(ms(b.consumedDowntime), 35 * 60_000)
        // A weight needs a severity or a symptom, once each.
        var bad = SLAStack.contract(customer: "x", start: start)
        var none = Liaison_Sla_V1_ImpactWeight()
        none.weightPercent = 10
        bad.impactWeights = [none, slow, slow]
        var create = Liaison_Sla_V1_CreateContractRequest()
        create.contractID = "bad"
        create.contract = bad
        create.requestID = SLAStack.rid()
        let sla = stack.sla
        let fields = await violatedFields { _ = try await sla.createContract(create) }
        XCTAssertTrue(fields.contains("contract.impact_weights[0]"), "\(fields)")
        XCTAssertTrue(fields.contains("contract.impact_weights[2]"), "\(fields)")
    }
}

extension SLAServiceTests {
    /// One customer whose contract cannot be read (a corrupt row) does not stall the evaluator:
    /// the rest of the batch is evaluated, the bad one is left out and the queue drains.
    func testABadRowIsLeftOutAndTheQueueDrains() async throws {
        let start = monthStartUTC()
        _ = try await stack.create("good", SLAStack.contract(customer: "good", start: start))
        _ = try await stack.create("bad", SLAStack.contract(customer: "bad", start: start))
        try await stack.evaluate()
        _ = try await stack.pool.query("UPDATE contracts SET body = '\\xffffffff'::bytea WHERE id = 'bad'")
        _ = try await stack.pool.query("DELETE FROM budget_status")
        _ = try await stack.pool.query("INSERT INTO dirty_customers VALUES ('good'), ('bad')")
        let n = try await stack.evaluate()
        XCTAssertEqual(n.customers, 2)
        let statuses = try await stack.pool.query("SELECT id FROM budget_status").rows.map { try $0.decode(String.self, 0) }
        XCTAssertEqual(statuses, ["good"])
        let left = try await stack.pool.query("SELECT count(*) FROM dirty_customers").first!.decode(Int.self, 0)
        XCTAssertEqual(left, 0)
        // A fee beyond any real contract is refused at the edge.
        var huge = SLAStack.contract(customer: "x", start: start)
        huge.periodFee = SLAStack.money(Int64.max / 10)
        var r = Liaison_Sla_V1_CreateContractRequest()
        r.contractID = "huge"
        r.contract = huge
        r.requestID = SLAStack.rid()
        let sla = stack.sla
        let fields = await violatedFields { _ = try await sla.createContract(r) }
        XCTAssertTrue(fields.contains("contract.period_fee"), "\(fields)")
    }
}
