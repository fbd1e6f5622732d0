import LiaisonRuntime
import XCTest
@testable import Correlation
@testable import CorrelationDomain

final class BlastRadiusTests: XCTestCase {
    let world = SyntheticPopulation.shared

    private func report(_ name: String, _ result: BlastRadiusResult) {
        print("[\(name)] R=\(result.reportingCustomers) N=\(result.population) tested=\(result.testedSegments)")
        print("[\(name)] summary: \(result.summary)")
        for e in result.affected {
            print("[\(name)]   affected \(e.segment) obs=\(e.observed) exp=\(String(format: "%.1f", e.expected)) lift=\(String(format: "%.2f", e.lift)) [\(String(format: "%.2f", e.liftLower)), \(String(format: "%.2f", e.liftUpper))] adjP=\(e.adjustedPValueAbove)")
        }
    }

    /// (1) Geography: eu-central and eu-south hit, eu-north not.
    func testGeographyCentralAndSouthButNotNorth() {
        let r = world.reporters(seed: 1) { $0.region == "eu-central" || $0.region == "eu-south" }
        let result = world.blastRadius(r)
        report("geography", result)
        XCTAssertEqual(result.affectedKeys, ["region=eu-central", "region=eu-south"])
        XCTAssertTrue(result.unaffectedKeys.contains("region=eu-north"), "\(result.unaffectedKeys)")
        // Countries are reported through their region, not on their own.
        let italy = result.entry("country=IT")
        XCTAssertEqual(italy?.verdict, .affected)
        XCTAssertEqual(italy?.explainedBy, SegmentKey(.region, "eu-south"))
        // Countries of eu-north are folded into the region in the NOT_AFFECTED list.
        XCTAssertFalse(result.unaffectedKeys.contains("country=SE"))
        let south = result.affected.first { $0.segment == SegmentKey(.region, "eu-south") }!
        XCTAssertGreaterThan(south.lift, 1.5)
        XCTAssertLessThan(south.liftLower, south.lift)
        XCTAssertGreaterThan(south.liftUpper, south.lift)
        XCTAssertEqual(south.expected, Double(south.population) * result.baseRate, accuracy: 1e-9)
        XCTAssertTrue(result.summary.contains("region=eu-central, eu-south"), result.summary)
        XCTAssertTrue(result.summary.contains("not region=") && result.summary.contains("eu-north"), result.summary)
    }

    /// (2) Data partition: accounts starting with 1-4.
    func testAccountPartitionOneToFour() {
        let r = world.reporters(seed: 2) { "1234".contains($0.accountNumber.first!) }
        let result = world.blastRadius(r)
        report("partition", result)
        XCTAssertEqual(result.affectedKeys, Set((1...4).map { "account_partition=\($0)" }))
        for digit in 5...9 {
            XCTAssertEqual(result.entry("account_partition=\(digit)")?.verdict, .notAffected)
        }
    }

    /// (3a) Client version 5.1 (any patch), explained at the major.minor level.
    func testClientVersionMinor() {
        let r = world.reporters(seed: 3) { c in
            c.platforms.contains { SegmentExtractor.minorVersion(of: $0.clientVersion) == "5.1" }
        }
        let result = world.blastRadius(r)
        report("version", result)
        XCTAssertEqual(result.affectedKeys, ["client_version_minor=5.1"])
        XCTAssertEqual(result.entry("client_version=5.1.2")?.explainedBy, SegmentKey(.clientVersionMinor, "5.1"))
    }

    /// (3b) Android, not iOS.
    func testAndroidNotIOS() {
        let r = world.reporters(seed: 4) { c in c.platforms.contains { $0.platform == "android" } }
        let result = world.blastRadius(r)
        report("android", result)
        XCTAssertEqual(result.affectedKeys, ["platform=android"])
        XCTAssertTrue(result.unaffectedKeys.contains("platform=ios"), "\(result.unaffectedKeys)")
    }

    /// (4) Only accounts with the Teapot Customization feature.
    func testTeapotFeatureOnly() {
        let r = world.reporters(seed: 5) { $0.features.contains("teapot-customization") }
        let result = world.blastRadius(r)
        report("teapot", result)
        XCTAssertEqual(result.affectedKeys, ["feature=teapot-customization"])
        XCTAssertGreaterThan(result.affected[0].lift, 4)
        // Its significant combinations are listed, each explained by the feature.
        XCTAssertFalse(result.combinations.isEmpty)
        for combo in result.combinations {
            XCTAssertEqual(combo.explainedBy, SegmentKey(.feature, "teapot-customization"), "\(combo.segment)")
        }
        // Entries carry the figures of the test that decided them.
        for e in result.perDimension {
            XCTAssertEqual(e.pValue, e.verdict == .notAffected ? e.pValueBelow! : e.pValueAbove)
            XCTAssertEqual(e.shareOfReports, Double(e.observed) / Double(result.reportingCustomers), accuracy: 1e-12)
        }
    }

    /// (5) Interaction: only Android in eu-south. The pair is reported; the two 1-D parents are
    /// explained by it.
    func testRegionPlatformInteraction() {
        let r = world.reporters(seed: 6, elevated: 0.04) { c in
            c.region == "eu-south" && c.platforms.contains { $0.platform == "android" }
        }
        let result = world.blastRadius(r)
        report("pair", result)
        let pair = SegmentKey(SegmentCondition(.region, "eu-south"), SegmentCondition(.platform, "android"))
        XCTAssertEqual(result.affectedKeys, [pair.description])
        XCTAssertEqual(result.entry("region=eu-south")?.explainedBy, pair)
        XCTAssertEqual(result.entry("platform=android")?.explainedBy, pair)
        XCTAssertTrue(result.combinations.contains { $0.segment == pair })
    }

    /// Planted geography under Holm as well (FWER control is stricter but the signal is strong).
    func testHolmCorrectionFindsTheSameRegions() {
        let r = world.reporters(seed: 1) { $0.region == "eu-central" || $0.region == "eu-south" }
        var options = BlastRadiusOptions()
        options.correction = .holm
        let result = world.blastRadius(r, options: options)
        XCTAssertEqual(result.affectedKeys, ["region=eu-central", "region=eu-south"])
        XCTAssertEqual(result.correction, .holm)
    }

    /// (8) Pure noise: reporters drawn uniformly at random. No segment may come out AFFECTED,
    /// across 20 seeds and several report volumes.
    func testPureNoiseYieldsNothing() {
        var unaffectedSeen = 0
        for seed in UInt64(1)...20 {
            let r = world.uniformReporters(seed: 1000 + seed, r: [50, 200, 800, 2000][Int(seed) % 4])
            let result = world.blastRadius(r)
            XCTAssertEqual(result.affected.count, 0, "seed \(seed): \(result.summary)")
            XCTAssertTrue(result.combinations.isEmpty, "seed \(seed)")
            XCTAssertFalse(result.perDimension.contains { $0.verdict == .affected }, "seed \(seed)")
            unaffectedSeen += result.unaffectedLargeSegments.count
        }
        print("[noise] NOT_AFFECTED segments over 20 seeds: \(unaffectedSeen)")
        XCTAssertEqual(unaffectedSeen, 0)
    }

    func testDegenerateInputs() {
        let empty = BlastRadiusEngine.compute(population: [:], populationTotal: 0, reporters: [:], reportersTotal: 0)
        XCTAssertTrue(empty.affected.isEmpty)
        let none = world.blastRadius(([:], 0))
        XCTAssertEqual(none.summary, "no reporting customers")
        // Reporters in a segment missing from the population and more reporters than customers: clamped.
        let key = SegmentKey(.region, "x")
        let odd = BlastRadiusEngine.compute(
            population: [key: 30], populationTotal: 100, reporters: [key: 50, SegmentKey(.region, "ghost"): 5],
            reportersTotal: 60)
        XCTAssertEqual(odd.perDimension.first?.observed, 30)
    }

    /// Performance harness (prints, never asserts on time): 8 dimensions x 200 values with every
    /// 2-D pair present (~1.1M keys), one planted segment.
    func testPerformanceHarnessEightDimensionsAllPairs() {
        let dims: [SegmentDimension] = [.region, .country, .accountPartition, .platform, .clientVersion,
                                 .clientVersionMinor, .feature, .tier]
        let valuesPerDim = 200
        let bigN = 10_000_000
        var rng = SplitMix64(seed: 42)
        // Zipf-like shares per value.
        var weights: [Double] = (1...valuesPerDim).map { 1 / Double($0) }
        let total = weights.reduce(0, +)
        weights = weights.map { $0 / total }
        let p0 = 0.1 // 1M reporters out of 10M
        var population: SegmentCounts = [:]
        var reporters: SegmentCounts = [:]
        population.reserveCapacity(1_200_000)
        reporters.reserveCapacity(1_200_000)
        func planted(_ d: SegmentDimension, _ v: Int) -> Bool { d == .feature && v == 7 }
        for d in dims {
            for v in 0..<valuesPerDim {
                let key = SegmentKey(d, "v\(v)")
                let n = Int(Double(bigN) * weights[v])
                population[key] = n
                reporters[key] = rng.poisson(Double(n) * p0 * (planted(d, v) ? 1.5 : 1))
            }
        }
        for i in dims.indices {
            for j in dims.indices where j > i {
                for v in 0..<valuesPerDim {
                    for w in 0..<valuesPerDim {
                        let key = SegmentKey(SegmentCondition(dims[i], "v\(v)"), SegmentCondition(dims[j], "v\(w)"))
                        let n = Int(Double(bigN) * weights[v] * weights[w])
                        guard n > 0 else { continue }
                        population[key] = n
                        let boost = planted(dims[i], v) || planted(dims[j], w) ? 1.5 : 1
                        reporters[key] = rng.poisson(Double(n) * p0 * boost)
                    }
                }
            }
        }
        let bigR = 1_000_000
        var timings: [Double] = []
        var result: BlastRadiusResult?
        for _ in 0..<3 {
            let start = ContinuousClock.now
            result = BlastRadiusEngine.compute(
                population: population, populationTotal: bigN, reporters: reporters, reportersTotal: bigR)
            let elapsed = ContinuousClock.now - start
            timings.append(Double(elapsed.components.seconds) * 1e3 + Double(elapsed.components.attoseconds) / 1e15)
        }
        #if DEBUG
        let mode = "debug"
        #else
        let mode = "release"
        #endif
        // Reference floor: one pass over the population with one reporter lookup per key, the
        // least any engine over these dictionaries must do.
        var floor: [Double] = []
        for _ in 0..<3 {
            let start = ContinuousClock.now
            var sum = 0
            for (key, n) in population where n >= 20 { sum &+= reporters[key] ?? 0 }
            let elapsed = ContinuousClock.now - start
            floor.append(Double(elapsed.components.seconds) * 1e3 + Double(elapsed.components.attoseconds) / 1e15)
            XCTAssertGreaterThan(sum, 0)
        }
        print("[perf] \(mode) build: reference (iterate + 1 lookup per key) ms=\(floor.map { String(format: "%.1f", $0) })")
        print("[perf] \(mode) build: keys population=\(population.count) reporters=\(reporters.count) tested=\(result!.testedSegments) affected=\(result!.affected.map(\.segment.description)) compute ms=\(timings.map { String(format: "%.1f", $0) })")
        XCTAssertTrue(result!.affectedKeys.contains("feature=v7"))

        // The realistic shape: the 40k-customer synthetic base (all its 1-D and 2-D keys).
        let r = world.reporters(seed: 1) { $0.region == "eu-central" || $0.region == "eu-south" }
        var small: [Double] = []
        for _ in 0..<5 {
            let start = ContinuousClock.now
            _ = world.blastRadius(r)
            let elapsed = ContinuousClock.now - start
            small.append(Double(elapsed.components.seconds) * 1e3 + Double(elapsed.components.attoseconds) / 1e15)
        }
        print("[perf] \(mode) build: synthetic base keys population=\(world.counts.count) reporters=\(r.counts.count) compute ms=\(small.map { String(format: "%.2f", $0) })")
    }
}
