import Foundation
import LiaisonRuntime
import XCTest
@testable import Correlation
@testable import CorrelationDomain

final class TrendTests: XCTestCase {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let width: TimeInterval = 600 // 10 minutes

    /// Buckets with Poisson counts from a per-bucket mean.
    private func series(seed: UInt64, count: Int, mean: (Int) -> Double) -> [TimeBucketCounts] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { i in
            TimeBucketCounts(start: t0.addingTimeInterval(Double(i) * width), total: rng.poisson(mean(i)))
        }
    }

    func testWorseningImprovingStable() {
        let now = t0.addingTimeInterval(12 * width)
        let worsening = TrendAnalyzer.analyze(
            buckets: series(seed: 1, count: 12) { 5 + 3 * Double($0) }, bucketWidth: width, mitigationTime: nil, now: now)
        XCTAssertEqual(worsening.overall.verdict, .worsening)
        XCTAssertGreaterThan(worsening.overall.slopePerHour, 0)
        XCTAssertLessThan(worsening.overall.pValue, 0.05)
        XCTAssertEqual(worsening.overall.bucketsConsidered, 6)

        let improving = TrendAnalyzer.analyze(
            buckets: series(seed: 2, count: 12) { 60 - 4.5 * Double($0) }, bucketWidth: width, mitigationTime: nil, now: now)
        XCTAssertEqual(improving.overall.verdict, .improving)
        XCTAssertLessThan(improving.overall.slopePerHour, 0)

        for seed in UInt64(3)...12 {
            let stable = TrendAnalyzer.analyze(
                buckets: series(seed: seed, count: 12) { _ in 20 }, bucketWidth: width, mitigationTime: nil, now: now)
            XCTAssertNotEqual(stable.overall.verdict, .worsening, "seed \(seed)")
            XCTAssertNotEqual(stable.overall.verdict, .improving, "seed \(seed) p=\(stable.overall.pValue)")
        }

        let sparse = TrendAnalyzer.analyze(
            buckets: [TimeBucketCounts(start: t0, total: 2)], bucketWidth: width, mitigationTime: nil, now: t0.addingTimeInterval(width))
        XCTAssertEqual(sparse.overall.verdict, .insufficientData)
    }

    /// A partial current bucket counts with its elapsed exposure, and gaps count as zero.
    func testPartialBucketAndGaps() {
        // 30 per bucket for 6 buckets, then the 7th bucket is half elapsed with 15: still stable.
        var buckets = (0..<6).map { TimeBucketCounts(start: t0.addingTimeInterval(Double($0) * width), total: 30) }
        buckets.append(TimeBucketCounts(start: t0.addingTimeInterval(6 * width), total: 15))
        let result = TrendAnalyzer.analyze(
            buckets: buckets, bucketWidth: width, mitigationTime: nil, now: t0.addingTimeInterval(6.5 * width))
        XCTAssertEqual(result.overall.verdict, .stable)
        XCTAssertEqual(result.overall.recentRatePerHour, 180, accuracy: 1e-9)
        // Reports stopped: the trailing buckets are missing (zero), the trend is improving.
        let stopped = TrendAnalyzer.analyze(
            buckets: Array(buckets.prefix(4)), bucketWidth: width, mitigationTime: nil, now: t0.addingTimeInterval(8 * width))
        XCTAssertEqual(stopped.overall.verdict, .improving)
    }

    /// (7) A mitigation that works, one that does not, one too recent to judge.
    func testMitigationEffects() {
        let mitigation = t0.addingTimeInterval(6 * width)
        let now = t0.addingTimeInterval(12 * width)
        let works = TrendAnalyzer.analyze(
            buckets: series(seed: 20, count: 12) { $0 < 6 ? 30 : 4 }, bucketWidth: width, mitigationTime: mitigation, now: now)
        XCTAssertEqual(works.mitigations.first?.verdict, .effective)
        XCTAssertLessThan(works.mitigations[0].rateRatio, 0.3)
        XCTAssertLessThan(works.mitigations[0].pValue, 1e-6)
        XCTAssertEqual(works.mitigations[0].comparisonWindow, 3600)

        let doesNot = TrendAnalyzer.analyze(
            buckets: series(seed: 21, count: 12) { _ in 30 }, bucketWidth: width, mitigationTime: mitigation, now: now)
        XCTAssertEqual(doesNot.mitigations.first?.verdict, .noEffect)

        let worse = TrendAnalyzer.analyze(
            buckets: series(seed: 22, count: 12) { $0 < 6 ? 10 : 40 }, bucketWidth: width, mitigationTime: mitigation, now: now)
        XCTAssertEqual(worse.mitigations.first?.verdict, .worsened)

        let early = TrendAnalyzer.analyze(
            buckets: series(seed: 23, count: 7) { $0 < 6 ? 30 : 0 }, bucketWidth: width,
            mitigationTime: mitigation, now: mitigation.addingTimeInterval(300))
        XCTAssertEqual(early.mitigations.first?.verdict, .tooEarly)
    }

    func testPerSegmentTrends() {
        var rng = SplitMix64(seed: 30)
        let a = SegmentKey(.region, "eu-south"), b = SegmentKey(.region, "eu-central")
        let buckets = (0..<12).map { i -> TimeBucketCounts in
            let ka = rng.poisson(25), kb = rng.poisson(2 + 6 * Double(i))
            return TimeBucketCounts(start: t0.addingTimeInterval(Double(i) * width), total: ka + kb, segments: [a: ka, b: kb])
        }
        let result = TrendAnalyzer.analyze(buckets: buckets, bucketWidth: width, mitigationTime: nil, now: t0.addingTimeInterval(12 * width))
        let byKey = Dictionary(uniqueKeysWithValues: result.segments.map { ($0.segment, $0.trend) })
        XCTAssertEqual(byKey[a]?.verdict, .stable)
        XCTAssertEqual(byKey[b]?.verdict, .worsening, "\(String(describing: byKey[b]))")
    }

    /// (6) Cascade: eu-south fails first, then the neighbouring eu-central an hour later.
    func testCascadeToNeighbourRegionIsFlagged() {
        let world = SyntheticPopulation.shared
        var rng = SplitMix64(seed: 40)
        var reported = Set<Int>()
        var buckets: [TimeBucketCounts] = []
        for i in 0..<18 {
            var total = 0
            var segs: [SegmentKey: Int] = [:]
            for (index, c) in world.customers.enumerated() where !reported.contains(index) {
                var p = 0.00005 // background per bucket
                if c.region == "eu-south" { p += 0.002 }
                if c.region == "eu-central", i >= 6 { p += 0.002 }
                guard rng.chance(p) else { continue }
                reported.insert(index)
                total += 1
                segs[SegmentKey(.region, c.region), default: 0] += 1
            }
            buckets.append(TimeBucketCounts(start: t0.addingTimeInterval(Double(i) * width), total: total, segments: segs))
        }
        let times = SpreadDetector.firstSignificantTimes(
            buckets: buckets, bucketWidth: width, population: world.counts, populationTotal: world.customers.count)
        let south = SegmentKey(.region, "eu-south"), central = SegmentKey(.region, "eu-central")
        XCTAssertNotNil(times[south])
        XCTAssertNotNil(times[central])
        XCTAssertLessThan(times[south]!, times[central]!)
        XCTAssertGreaterThanOrEqual(times[central]!, t0.addingTimeInterval(6 * width))
        let neighbours = ["eu-south": ["eu-central", "eu-north"], "eu-central": ["eu-north", "eu-south"]]
        let spread = SpreadDetector.detect(firstSignificant: times, neighbours: neighbours, minDelay: width)
        print("[cascade] first significant: \(times.map { "\($0.key)@\(Int($0.value.timeIntervalSince(t0) / 60))min" }.sorted())")
        XCTAssertEqual(spread.map(\.segment), [central])
        XCTAssertEqual(spread.first?.adjacentTo, south)
        // Nothing else spread, and the unaffected regions never became significant.
        XCTAssertNil(times[SegmentKey(.region, "eu-north")])

        // A sliding window of 3 buckets sees eu-central join sooner than the cumulative counts.
        let windowed = SpreadDetector.firstSignificantTimes(
            buckets: buckets, bucketWidth: width, population: world.counts, populationTotal: world.customers.count,
            windowBuckets: 3)
        print("[cascade] sliding window: \(windowed.map { "\($0.key)@\(Int($0.value.timeIntervalSince(t0) / 60))min" }.sorted())")
        XCTAssertNotNil(windowed[central])
        XCTAssertLessThanOrEqual(windowed[central]!, times[central]!)
        XCTAssertGreaterThanOrEqual(windowed[central]!, t0.addingTimeInterval(6 * width))
        let windowedSpread = SpreadDetector.detect(firstSignificant: windowed, neighbours: neighbours, minDelay: width)
        XCTAssertEqual(windowedSpread.map(\.segment), [central])
        XCTAssertEqual(windowedSpread.first?.adjacentTo, south)
    }

    func testSpreadWithoutAdjacencyAndSimultaneousOnset() {
        let a = SegmentKey(.region, "a"), b = SegmentKey(.region, "b"), c = SegmentKey(.region, "c")
        let f = SegmentKey(.feature, "x")
        let times = [a: t0, b: t0.addingTimeInterval(60), c: t0.addingTimeInterval(3600), f: t0.addingTimeInterval(7200)]
        let spread = SpreadDetector.detect(firstSignificant: times, neighbours: ["c": ["b", "a"]], minDelay: 600)
        XCTAssertEqual(spread.map(\.segment), [c, f]) // b is simultaneous with a (within minDelay)
        XCTAssertEqual(spread[0].adjacentTo, b)       // b is c's closest neighbour
        XCTAssertNil(spread[1].adjacentTo)
    }

    func testEmergingIssues() {
        let window: TimeInterval = 1800
        var counts: [EmergingWindowCount] = []
        var rng = SplitMix64(seed: 50)
        // 200 keys at their background rates (noise) ...
        for i in 0..<200 {
            let rate = 0.5 + Double(i % 10)
            counts.append(.init(key: EmergingKey(segment: SegmentKey(.country, "C\(i)")),
                                observed: rng.poisson(rate * 0.5), backgroundRatePerHour: rate))
        }
        // ... and one service/symptom with a burst.
        let burst = EmergingKey(service: "checkout", symptom: "errors")
        counts.append(.init(key: burst, observed: 25, backgroundRatePerHour: 4))
        let clusters = EmergingIssueDetector.detect(windowCounts: counts, windowLength: window)
        XCTAssertEqual(clusters.map(\.key), [burst])
        XCTAssertEqual(clusters[0].expected, 2, accuracy: 1e-12)
        XCTAssertEqual(clusters[0].lift, 12.5, accuracy: 1e-12)
        XCTAssertEqual(clusters[0].key.description, "service=checkout&symptom=errors")

        // Below the minimum count: never a cluster, however unlikely.
        let tiny = EmergingIssueDetector.detect(
            windowCounts: [.init(key: EmergingKey(symptom: "login"), observed: 3, backgroundRatePerHour: 0)], windowLength: window)
        XCTAssertTrue(tiny.isEmpty)
        // Noise alone over many seeds: nothing.
        for seed in UInt64(60)..<80 {
            var r = SplitMix64(seed: seed)
            let noise = (0..<300).map { i in
                EmergingWindowCount(key: EmergingKey(segment: SegmentKey(.region, "r\(i)")),
                                    observed: r.poisson(3), backgroundRatePerHour: 6)
            }
            XCTAssertTrue(EmergingIssueDetector.detect(windowCounts: noise, windowLength: window).isEmpty, "seed \(seed)")
        }
        XCTAssertEqual(EmergingIssueDetector.backgroundRate(count: 0, over: 7 * 24 * 3600), 0.5 / 168, accuracy: 1e-12)
    }
}
