import XCTest
@testable import SLADomain

final class BudgetTests: XCTestCase {
    private typealias F = SLADomainFixtures
    private let april = Interval(SLADomainFixtures.utc(2026, 4, 1), SLADomainFixtures.utc(2026, 5, 1))  // 30 d

    func testPercentE4() {
        XCTAssertEqual(PercentE4(99.9).value, 999_000)
        XCTAssertEqual(PercentE4(99.99).value, 999_900)
        XCTAssertEqual(PercentE4(99.95).value, 999_500)
        XCTAssertEqual(PercentE4(99.9).description, "99.9%")
        XCTAssertEqual(PercentE4(100).description, "100%")
        XCTAssertEqual(PercentE4(raw: 999_666).description, "99.9666%")
        XCTAssertEqual(PercentE4(raw: 1).description, "0.0001%")
        XCTAssertEqual(PercentE4(raw: 10_500).description, "1.05%")
        XCTAssertEqual(PercentE4(.nan).value, 0)
        XCTAssertLessThan(PercentE4(99.9), PercentE4(99.99))
    }

    func testBreachExactAtBoundaryForA9999Year() {
        let year = F.calendar("UTC").period(.year, containing: F.utc(2026, 6, 1))
        // 365 × 86_400_000 = 31_536_000_000; × 100 / 1_000_000 = 3_153_600 ms (52m33.6s)
        XCTAssertEqual(year.length, 31_536_000_000)
        let t = PercentE4(99.99)
        let atLimit = Budget.evaluate(target: t, window: year, now: year.end, consumedMs: 3_153_600,
                                      consumedLastHourMs: 0, accruing: false)
        XCTAssertEqual(atLimit.allowedMs, 3_153_600)
        XCTAssertEqual(atLimit.remainingMs, 0)
        XCTAssertFalse(atLimit.breached)
        XCTAssertEqual(atLimit.periodAvailabilityE4, PercentE4(99.99))  // 1 − 3_153_600/31_536_000_000 = 99.99% exactly
        let over = Budget.evaluate(target: t, window: year, now: year.end, consumedMs: 3_153_601,
                                   consumedLastHourMs: 0, accruing: false)
        XCTAssertTrue(over.breached)
        XCTAssertEqual(over.remainingMs, -1)
        XCTAssertEqual(over.periodAvailabilityE4.value, 999_899)  // just below 99.99% -> floored
        // Leap 2028: 366 d = 31_622_400_000 -> 3_162_240 ms
        let leap = F.calendar("UTC").period(.year, containing: F.utc(2028, 6, 1))
        XCTAssertEqual(Budget.allowedMs(target: t, windowMs: leap.length), 3_162_240)
        XCTAssertFalse(Budget.isBreached(target: t, windowMs: leap.length, consumedMs: 3_162_240))
        XCTAssertTrue(Budget.isBreached(target: t, windowMs: leap.length, consumedMs: 3_162_241))
        // Fractional budget: 1_000_001 ms × 0.1% = 1000.001 -> allowed 1000; 1000 ok, 1001 breached
        XCTAssertEqual(Budget.allowedMs(target: PercentE4(99.9), windowMs: 1_000_001), 1000)
        XCTAssertFalse(Budget.isBreached(target: PercentE4(99.9), windowMs: 1_000_001, consumedMs: 1000))
        XCTAssertTrue(Budget.isBreached(target: PercentE4(99.9), windowMs: 1_000_001, consumedMs: 1001))
        // No overflow for huge windows: 1000 years at 99.999%
        XCTAssertEqual(Budget.allowedMs(target: PercentE4(99.999), windowMs: 31_536_000_000_000), 315_360_000)
    }

    func testEvaluateFigures() {
        // April 2026: 2_592_000_000 ms; 99.9% -> allowed 2_592_000 (43m12s). now = 11 Apr -> elapsed 10 d.
        let now = F.utc(2026, 4, 11)
        let f = Budget.evaluate(target: PercentE4(99.9), window: april, now: now, consumedMs: 864_000,
                                consumedLastHourMs: 3_600, accruing: true)
        XCTAssertEqual(f.windowMs, 2_592_000_000)
        XCTAssertEqual(f.allowedMs, 2_592_000)
        XCTAssertEqual(f.elapsedMs, 864_000_000)
        XCTAssertEqual(f.remainingMs, 1_728_000)  // 2_592_000 − 864_000
        // so far: 1 − 864_000 / 864_000_000 = 99.9%
        XCTAssertEqual(f.availabilitySoFarE4.value, 999_000)
        // period: 1 − 864_000 / 2_592_000_000 = 1 − 1/3000 = 99.96666..% -> floor 99.9666%
        XCTAssertEqual(f.periodAvailabilityE4.value, 999_666)
        XCTAssertFalse(f.breached)
        // burn: 3_600 / (2_592_000 / 2_592_000_000 × 3_600_000) = 3_600 / 3_600 = 1
        XCTAssertEqual(f.burnRate, 1.0, accuracy: 1e-12)
        XCTAssertEqual(f.consumedFraction, 1.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(f.projectedExhaustion, now + 1_728_000)  // 28m48s from now
        XCTAssertNil(Budget.evaluate(target: PercentE4(99.9), window: april, now: now, consumedMs: 864_000,
                                     consumedLastHourMs: 0, accruing: false).projectedExhaustion)
        // 10 minutes before the end, 28m48s of budget left -> never exhausted this period
        XCTAssertNil(Budget.evaluate(target: PercentE4(99.9), window: april, now: april.end - 10 * F.minute,
                                     consumedMs: 864_000, consumedLastHourMs: 0, accruing: true).projectedExhaustion)
        // Before the window: nothing elapsed -> 100% so far
        let before = Budget.evaluate(target: PercentE4(99.9), window: april, now: april.start - 1, consumedMs: 0,
                                     consumedLastHourMs: 0, accruing: false)
        XCTAssertEqual(before.elapsedMs, 0)
        XCTAssertEqual(before.availabilitySoFarE4, .hundred)
    }

    func testZeroBudget() {
        let none = Budget.evaluate(target: .hundred, window: april, now: april.end, consumedMs: 0,
                                   consumedLastHourMs: 0, accruing: false)
        XCTAssertEqual(none.allowedMs, 0)
        XCTAssertEqual(none.consumedFraction, 0)
        XCTAssertEqual(none.burnRate, 0)
        XCTAssertFalse(none.breached)
        let some = Budget.evaluate(target: .hundred, window: april, now: april.end, consumedMs: 1,
                                   consumedLastHourMs: 1, accruing: true)
        XCTAssertTrue(some.breached)
        XCTAssertEqual(some.consumedFraction, 1e6)
        XCTAssertEqual(some.burnRate, 1e6)
        XCTAssertNil(some.projectedExhaustion)
    }

    func testThresholdsAndBreachTime() {
        // allowed 2_592_000: 50% = 1_296_000, 75% = 1_944_000, 90% = 2_332_800
        let th = [90, 50, 75]
        XCTAssertEqual(Budget.crossedThresholds(th, consumedMs: 1_295_999, allowedMs: 2_592_000), [])
        XCTAssertEqual(Budget.crossedThresholds(th, consumedMs: 1_296_000, allowedMs: 2_592_000), [50])
        XCTAssertEqual(Budget.crossedThresholds(th, consumedMs: 1_943_999, allowedMs: 2_592_000), [50])
        XCTAssertEqual(Budget.crossedThresholds(th, consumedMs: 1_944_000, allowedMs: 2_592_000), [50, 75])
        XCTAssertEqual(Budget.crossedThresholds(th, consumedMs: 2_332_800, allowedMs: 2_592_000), [50, 75, 90])
        XCTAssertEqual(Budget.crossedThresholds(th, consumedMs: 0, allowedMs: 0), [])

        let w = Interval(0, 10_000)
        XCTAssertEqual(Budget.breachTime(allowedMs: 1000, consumedMs: 400, now: 100, window: w), 700)
        XCTAssertEqual(Budget.breachTime(allowedMs: 1000, consumedMs: 1000, now: 100, window: w), 100)
        XCTAssertNil(Budget.breachTime(allowedMs: 1000, consumedMs: 1001, now: 100, window: w))
        XCTAssertNil(Budget.breachTime(allowedMs: 1000, consumedMs: 400, now: 9_500, window: w))  // 10_100 >= end
        XCTAssertEqual(Budget.breachTime(target: PercentE4(99.9), window: april, now: F.utc(2026, 4, 11),
                                         consumedMs: 864_000), F.utc(2026, 4, 11) + 1_728_000)
    }

    func testBurnRateRules() {
        // 99.9%: 1 h budget = 3_600 ms; 14.4× -> 51_840 ms in the last hour. 5 m budget = 300 ms.
        let now = F.utc(2026, 4, 10, 12)
        let t = PercentE4(99.9)
        let fast = [WeightedInterval(Interval(now - 51_840, now))]
        XCTAssertEqual(BurnRate.rate(fast, exclusions: [], now: now, window: F.hour, target: t), 14.4)
        XCTAssertEqual(BurnRate.rate(fast, exclusions: [], now: now, window: 5 * F.minute, target: t), 172.8,
                       accuracy: 1e-9)  // 51_840 / 300
        // 6 h: 51_840 / 21_600 = 2.4 < 6 -> only the 1 h rule fires
        XCTAssertEqual(BurnRate.firing(BurnRateRule.workbook, entries: fast, exclusions: [], now: now, target: t),
                       [BurnRateRule.workbook[0]])
        // 51_839 ms -> 14.3997 < 14.4: nothing fires
        let slower = [WeightedInterval(Interval(now - 51_839, now))]
        XCTAssertEqual(BurnRate.firing(BurnRateRule.workbook, entries: slower, exclusions: [], now: now, target: t), [])
        // 60 s at the start of the hour: 1 h rate 60_000 / 3_600 = 16.7 but 5 m rate 0 -> no fire
        let old = [WeightedInterval(Interval(now - F.hour, now - F.hour + 60_000))]
        XCTAssertEqual(BurnRate.firing(BurnRateRule.workbook, entries: old, exclusions: [], now: now, target: t), [])
        // 129_600 ms ending now: 6 h rate 129_600 / 21_600 = 6.0, 30 m rate 72 -> both rules fire
        let slowBurn = [WeightedInterval(Interval(now - 129_600, now))]
        XCTAssertEqual(BurnRate.rate(slowBurn, exclusions: [], now: now, window: 6 * F.hour, target: t), 6.0)
        XCTAssertEqual(BurnRate.firing(BurnRateRule.workbook, entries: slowBurn, exclusions: [], now: now, target: t),
                       BurnRateRule.workbook)
        // A maintenance window over the whole last hour silences it
        XCTAssertEqual(BurnRate.firing(BurnRateRule.workbook, entries: fast, exclusions: [Interval(now - F.hour, now)],
                                       now: now, target: t), [])
    }
}
