import Correlation
import LiaisonRuntime

/// Draws for the fixtures.
extension SplitMix64 {
    mutating func chance(_ p: Double) -> Bool { uniform() < p }
    mutating func pick<T>(_ weighted: [(T, Double)]) -> T {
        let total = weighted.reduce(0) { $0 + $1.1 }
        var u = uniform() * total
        for (value, w) in weighted {
            if u < w { return value }
            u -= w
        }
        return weighted[weighted.count - 1].0
    }
    /// Poisson draw (inversion for small means, normal approximation for large ones).
    mutating func poisson(_ mean: Double) -> Int {
        if mean <= 0 { return 0 }
        if mean > 50 {
            let u1 = max(uniform(), 1e-300), u2 = uniform()
            let g = (-2 * Foundation_log(u1)).squareRoot() * Foundation_cos(2 * Double.pi * u2)
            return max(0, Int((mean + g * mean.squareRoot()).rounded()))
        }
        let l = Foundation_exp(-mean)
        var k = 0, p = 1.0
        repeat { k += 1; p *= uniform() } while p > l
        return k - 1
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@inline(__always) func Foundation_log(_ x: Double) -> Double { log(x) }
@inline(__always) func Foundation_exp(_ x: Double) -> Double { exp(x) }
@inline(__always) func Foundation_cos(_ x: Double) -> Double { cos(x) }

/// A synthetic customer base with realistic, partly correlated attribute distributions.
struct SyntheticPopulation: Sendable {
    let customers: [CustomerAttributes]
    let counts: SegmentCounts

    static let regions: [(String, Double, [(String, Double)])] = [
        ("eu-north", 0.18, [("SE", 0.35), ("NO", 0.2), ("FI", 0.2), ("DK", 0.25)]),
        ("eu-central", 0.25, [("DE", 0.45), ("FR", 0.3), ("NL", 0.1), ("AT", 0.08), ("CH", 0.07)]),
        ("eu-south", 0.17, [("IT", 0.45), ("ES", 0.35), ("PT", 0.1), ("GR", 0.1)]),
        // A country split across two regions: country is *not* nested in region here.
        ("us-east", 0.15, [("US", 0.85), ("CA", 0.15)]),
        ("us-west", 0.10, [("US", 0.8), ("MX", 0.2)]),
        ("apac", 0.15, [("JP", 0.35), ("AU", 0.25), ("SG", 0.15), ("IN", 0.25)]),
    ]
    static let features: [(String, Double)] = [
        ("teapot-customization", 0.08), ("dark-mode", 0.4), ("export-csv", 0.25), ("sso", 0.15),
        ("webhooks", 0.1), ("api-v2", 0.2), ("audit-log", 0.12), ("multi-currency", 0.06),
        ("beta-dashboard", 0.05), ("ai-assist", 0.18), ("offline-sync", 0.09), ("custom-domains", 0.07),
    ]
    static let minors: [(String, Double)] = [("4.9", 0.1), ("5.0", 0.35), ("5.1", 0.3), ("5.2", 0.25)]

    static func generate(count: Int, seed: UInt64) -> SyntheticPopulation {
        var rng = SplitMix64(seed: seed)
        var customers: [CustomerAttributes] = []
        customers.reserveCapacity(count)
        for _ in 0..<count {
            let region = rng.pick(regions.map { (($0.0, $0.2), $0.1) })
            let country = rng.pick(region.1)
            var account = String(Int(rng.next() % 9) + 1)
            for _ in 0..<7 { account += String(Int(rng.next() % 10)) }
            // Enterprise customers are a bit more common in eu-central (a mild correlation).
            let tier = rng.pick([("free", 0.5), ("standard", 0.3), ("business", 0.15),
                                 ("enterprise", region.0 == "eu-central" ? 0.08 : 0.05)])
            let features = Self.features.filter { rng.chance($0.1) }.map(\.0)
            var platforms: [PlatformUsage] = []
            func version() -> String { "\(rng.pick(minors)).\(rng.next() % 4)" }
            if rng.chance(0.6) { platforms.append(.init(platform: "web", clientVersion: version())) }
            // One mobile platform at most: iOS or Android users, not both.
            let mobile = rng.pick([("ios", 0.35), ("android", 0.4), ("", 0.25)])
            if !mobile.isEmpty { platforms.append(.init(platform: mobile, clientVersion: version())) }
            if rng.chance(0.15) { platforms.append(.init(platform: "windows", clientVersion: version())) }
            if platforms.isEmpty { platforms.append(.init(platform: "web", clientVersion: version())) }
            customers.append(CustomerAttributes(
                accountNumber: account, region: region.0, country: country, tier: tier,
                whiteGlove: tier == "enterprise" && rng.chance(0.5), features: features,
                platforms: platforms))
        }
        var counts: SegmentCounts = [:]
        for c in customers { SegmentExtractor.add(c, to: &counts) }
        return SyntheticPopulation(customers: customers, counts: counts)
    }

    /// The shared 40k-customer base (generated once).
    static let shared = generate(count: 40_000, seed: 0xC0FFEE)

    /// Reporters: each customer reports with probability `background`, plus `elevated` when
    /// `isAffected` holds.
    func reporters(seed: UInt64, background: Double = 0.002, elevated: Double = 0.02,
                   isAffected: (CustomerAttributes) -> Bool) -> (counts: SegmentCounts, total: Int) {
        var rng = SplitMix64(seed: seed)
        var counts: SegmentCounts = [:]
        var total = 0
        for c in customers where rng.chance(background + (isAffected(c) ? elevated : 0)) {
            SegmentExtractor.add(c, to: &counts)
            total += 1
        }
        return (counts, total)
    }

    /// `r` distinct reporters drawn uniformly at random (pure noise).
    func uniformReporters(seed: UInt64, r: Int) -> (counts: SegmentCounts, total: Int) {
        var rng = SplitMix64(seed: seed)
        var indices = Array(customers.indices)
        for i in 0..<r {
            let j = i + Int(rng.next() % UInt64(indices.count - i))
            indices.swapAt(i, j)
        }
        var counts: SegmentCounts = [:]
        for i in indices.prefix(r) { SegmentExtractor.add(customers[i], to: &counts) }
        return (counts, r)
    }

    func blastRadius(_ reporters: (counts: SegmentCounts, total: Int),
                     options: BlastRadiusOptions = BlastRadiusOptions()) -> BlastRadiusResult {
        BlastRadiusEngine.compute(
            population: counts, populationTotal: customers.count,
            reporters: reporters.counts, reportersTotal: reporters.total, options: options)
    }
}

extension BlastRadiusResult {
    var affectedKeys: Set<String> { Set(affected.map(\.segment.description)) }
    var unaffectedKeys: Set<String> { Set(unaffectedLargeSegments.map(\.segment.description)) }
    func entry(_ text: String) -> BlastRadiusEntry? {
        (perDimension + combinations).first { $0.segment.description == text }
    }
}
