import XCTest
@testable import SLADomain

final class DowntimeTests: XCTestCase {
    private typealias F = SLADomainFixtures
    private let jan = Interval(F.utc(2026, 1, 1), F.utc(2026, 2, 1))

    private func t(_ h: Int, _ m: Int = 0) -> Int64 { F.utc(2026, 1, 10, h, m) }

    func testOverlappingIncidentsCountOnce() {
        // [10:00, 11:00) ∪ [10:30, 12:00) = [10:00, 12:00) = 2 h = 7_200_000 (not 2.5 h)
        let e = [WeightedInterval(Interval(t(10), t(11))), WeightedInterval(Interval(t(10, 30), t(12)))]
        XCTAssertEqual(Downtime.consumed(e, exclusions: [], within: jan), 7_200_000)
    }

    func testHighestWeightWins() {
        // SLOW 50% [10:00, 12:00) overlapped by FULL 100% [10:30, 11:00):
        // 1.5 h × 50% + 0.5 h × 100% = 2_700_000 + 1_800_000 = 4_500_000 (75 min)
        let e = [WeightedInterval(Interval(t(10), t(12)), weightPercent: 50),
                 WeightedInterval(Interval(t(10, 30), t(11)), weightPercent: 100)]
        XCTAssertEqual(Downtime.consumed(e, exclusions: [], within: jan), 4_500_000)
        // FULL outside, SLOW inside: the inner 50% never lowers the 100% -> 2 h
        let nested = [WeightedInterval(Interval(t(10), t(12)), weightPercent: 100),
                      WeightedInterval(Interval(t(10, 30), t(11)), weightPercent: 50)]
        XCTAssertEqual(Downtime.consumed(nested, exclusions: [], within: jan), 7_200_000)
        // Excluded lines and 0% lines count nothing.
        let ignored = [WeightedInterval(Interval(t(10), t(12)), excluded: true),
                       WeightedInterval(Interval(t(13), t(14)), weightPercent: 0)]
        XCTAssertEqual(Downtime.consumed(ignored, exclusions: [], within: jan), 0)
        // Floor: 3 ms × 50 / 100 = 1.5 -> 1; 1 ms × 50 / 100 -> 0
        XCTAssertEqual(Downtime.consumed([WeightedInterval(Interval(t(10), t(10) + 3), weightPercent: 50)],
                                         exclusions: [], within: jan), 1)
        XCTAssertEqual(Downtime.consumed([WeightedInterval(Interval(t(10), t(10) + 1), weightPercent: 50)],
                                         exclusions: [], within: jan), 0)
    }

    func testImpactAcrossMonthEdge() {
        // Impact 31 Jan 22:30Z .. 1 Feb 01:00Z = 2h30m
        let e = [WeightedInterval(Interval(F.utc(2026, 1, 31, 22, 30), F.utc(2026, 2, 1, 1)))]
        let utc = F.calendar("UTC")
        let janU = utc.period(.month, containing: F.utc(2026, 1, 15))
        let febU = utc.period(.month, containing: F.utc(2026, 2, 15))
        XCTAssertEqual(Downtime.consumed(e, exclusions: [], within: janU), 5_400_000)  // 22:30..24:00 = 1h30m
        XCTAssertEqual(Downtime.consumed(e, exclusions: [], within: febU), 3_600_000)  // 00:00..01:00 = 1h
        // Europe/Berlin (CET, +1): February starts 31 Jan 23:00Z
        let berlin = F.calendar("Europe/Berlin")
        let janB = berlin.period(.month, containing: F.utc(2026, 1, 15))
        let febB = berlin.period(.month, containing: F.utc(2026, 2, 15))
        XCTAssertEqual(febB.start, F.utc(2026, 1, 31, 23))
        XCTAssertEqual(Downtime.consumed(e, exclusions: [], within: janB), 1_800_000)  // 22:30Z..23:00Z = 30m
        XCTAssertEqual(Downtime.consumed(e, exclusions: [], within: febB), 7_200_000)  // 23:00Z..01:00Z = 2h
    }

    func testUnion() {
        let u = Downtime.union([Interval(8, 9), Interval(1, 3), Interval(2, 5), Interval(5, 6), Interval(7, 7)])
        XCTAssertEqual(u, [Interval(1, 6), Interval(8, 9)])
        XCTAssertEqual(Downtime.union([]), [])
        XCTAssertEqual(Interval(5, 3), Interval(5, 5))  // end clamped to start
        XCTAssertNil(Interval(0, 5).intersection(Interval(5, 9)))
        XCTAssertEqual(Interval(0, 5).intersection(Interval(3, 9)), Interval(3, 5))
    }

    func testOneOffMaintenanceExclusion() {
        // Incident [10:00, 11:00), maintenance [10:15, 10:45): 60m − 30m = 30m = 1_800_000
        let e = [WeightedInterval(Interval(t(10), t(11)))]
        let x = [Interval(t(10, 15), t(10, 45))]
        XCTAssertEqual(Downtime.consumed(e, exclusions: x, within: jan), 1_800_000)
        XCTAssertEqual(Downtime.excludedParts(e, exclusions: x, within: jan), [Interval(t(10, 15), t(10, 45))])
        // Two incidents [09:00,10:00) and [10:30,12:00); maintenance [09:30,11:00) and [11:30,13:00):
        // excluded = [09:30,10:00) + [10:30,11:00) + [11:30,12:00); consumed = 30m + 30m = 3_600_000
        let e2 = [WeightedInterval(Interval(t(9), t(10))), WeightedInterval(Interval(t(10, 30), t(12)))]
        let x2 = [Interval(t(11, 30), t(13)), Interval(t(9, 30), t(11))]
        XCTAssertEqual(Downtime.consumed(e2, exclusions: x2, within: jan), 3_600_000)
        XCTAssertEqual(Downtime.excludedParts(e2, exclusions: x2, within: jan),
                       [Interval(t(9, 30), t(10)), Interval(t(10, 30), t(11)), Interval(t(11, 30), t(12))])
        // Clipped to the window [09:45, 10:45): incident parts [09:45,10:00) + [10:30,10:45), all excluded
        XCTAssertEqual(Downtime.consumed(e2, exclusions: x2, within: Interval(t(9, 45), t(10, 45))), 0)
        XCTAssertEqual(Downtime.excludedParts(e2, exclusions: x2, within: Interval(t(9, 45), t(10, 45))),
                       [Interval(t(9, 45), t(10)), Interval(t(10, 30), t(10, 45))])
    }

    /// Brute force per second over random small intervals (deterministic seed).
    func testRandomizedAgainstBruteForce() {
        var rng = SLASplitMix64(state: 0x5EED_2026)
        let weights = [0, 25, 33, 50, 100, 100]
        for _ in 0..<300 {
            var entries: [WeightedInterval] = []
            for _ in 0..<(1 + rng.int(8)) {
                let s = rng.int(120), len = rng.int(40)
                entries.append(WeightedInterval(Interval(Int64(s) * 1000, Int64(s + len) * 1000),
                                                weightPercent: weights[rng.int(weights.count)],
                                                excluded: rng.int(5) == 0))
            }
            var exclusions: [Interval] = []
            for _ in 0..<rng.int(4) {
                let s = rng.int(140)
                exclusions.append(Interval(Int64(s) * 1000, Int64(s + rng.int(30)) * 1000))
            }
            let ws = rng.int(100), we = ws + rng.int(80)
            let window = Interval(Int64(ws) * 1000, Int64(we) * 1000)

            var weightSum: Int64 = 0
            var excludedSeconds: Int64 = 0
            for sec in ws..<max(ws, we) {
                let ms = Int64(sec) * 1000
                let w = entries.filter { !$0.excluded && $0.interval.contains(ms) }.map(\.weightPercent).max() ?? 0
                if exclusions.contains(where: { $0.contains(ms) }) {
                    if w > 0 { excludedSeconds += 1 }
                } else {
                    weightSum += Int64(w)
                }
            }
            // each second contributes 1000 ms × w / 100 = 10 × w
            XCTAssertEqual(Downtime.consumed(entries, exclusions: exclusions, within: window), weightSum * 10)
            let parts = Downtime.excludedParts(entries, exclusions: exclusions, within: window)
            XCTAssertEqual(parts.reduce(0) { $0 + $1.length }, excludedSeconds * 1000)
            XCTAssertEqual(parts, Downtime.union(parts))
        }
    }

    /// Performance sanity (no timing assertion): 100,000 random intervals.
    func testHundredThousandEntries() {
        var rng = SLASplitMix64(state: 42)
        let base = F.utc(2026, 1, 1)
        let entries = (0..<100_000).map { _ -> WeightedInterval in
            let s = base + Int64(rng.int(30 * 86_400)) * 1000
            return WeightedInterval(Interval(s, s + Int64(rng.int(3600)) * 1000),
                                    weightPercent: [50, 100][rng.int(2)])
        }
        let exclusions = (0..<1000).map { _ -> Interval in
            let s = base + Int64(rng.int(30 * 86_400)) * 1000
            return Interval(s, s + 600_000)
        }
        let c = Downtime.consumed(entries, exclusions: exclusions, within: jan)
        XCTAssertGreaterThan(c, 0)
        XCTAssertLessThanOrEqual(c, jan.length)
        XCTAssertFalse(Downtime.excludedParts(entries, exclusions: exclusions, within: jan).isEmpty)
    }
}
