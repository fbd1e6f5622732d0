// Blast radius: which segments of the customer base an incident hits, from aggregates.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Verdict of the blast-radius test for one segment (mirrors `liaison.correlation.v1.Verdict`).
public enum SegmentVerdict: String, Sendable, Hashable {
    /// Reporters are significantly over-represented (adjusted p-value below alpha, lift at least
    /// the minimum lift, at least the minimum number of reporters).
    case affected
    /// A large segment with significantly fewer reporters than the base rate predicts and a tight
    /// upper bound on its lift: the incident is clearly not there.
    case notAffected
    /// Neither.
    case inconclusive
}

/// Knobs of ``BlastRadiusEngine``. The defaults are general-purpose, not tuned to any fixture.
public struct BlastRadiusOptions: Sendable, Hashable {
    /// Significance level for verdicts, after the correction. Default 0.01: a false "the incident
    /// is in segment X" sends responders the wrong way, so the default is stricter than 0.05.
    public var alpha: Double = 0.01
    /// Multiple-testing correction over all tested segments.
    public var correction: Correction = .benjaminiHochberg
    /// Minimum distinct reporters in a segment before it can be AFFECTED, and the support a 1-D
    /// segment needs before its 2-D children are explored.
    public var minObserved: Int = 3
    /// Minimum customers in a segment before it is tested at all.
    public var minPopulation: Int = 20
    /// Minimum lift (observed / expected) for AFFECTED: practical, not only statistical,
    /// significance.
    public var minLift: Double = 1.2
    /// Two-sided confidence of the lift interval.
    public var confidence: Double = 0.95
    /// Whether 2-D combinations are searched (needs 2-D keys in the counts).
    public var searchCombinations: Bool = true
    /// A 1-D segment is "large" (eligible for NOT_AFFECTED) when it holds at least this share of
    /// the population...
    public var largeSegmentMinShare: Double = 0.02
    /// ...and at least this many reporters would be expected in it at the base rate (otherwise a
    /// shortfall cannot be told from chance).
    public var largeSegmentMinExpected: Double = 5
    /// NOT_AFFECTED also needs the upper confidence bound of the lift at or below this value.
    public var unaffectedMaxLiftUpper: Double = 0.75
    /// Significance level of the explanation tests (child vs parent rate, segment vs the rest).
    /// `nil`: alpha divided by the size of the tested family (Bonferroni over every comparison
    /// that could have been made: the children that reach this step were selected for being
    /// high, so a weaker level lets chance interactions through).
    public var explanationAlpha: Double? = nil
    /// Cap on the `combinations` list of the result (AFFECTED combinations, explained or not,
    /// by adjusted p-value).
    public var maxCombinationsReported: Int = 200

    public init() {}
}

/// Observed versus expected reporting customers in one segment (mirrors `BlastRadiusEntry`).
public struct BlastRadiusEntry: Sendable, Hashable {
    /// The segment.
    public var segment: SegmentKey
    /// Number of conditions (1 or 2).
    public var depth: Int { segment.depth }
    /// Distinct reporting customers in the segment.
    public var observed: Int
    /// Reporters expected at the base rate: population × R / N.
    public var expected: Double
    /// Customers in the segment.
    public var population: Int
    /// observed / expected.
    public var lift: Double
    /// Lower bound of the lift's confidence interval (Wilson interval of observed / population,
    /// divided by the base rate).
    public var liftLower: Double
    /// Upper bound of the lift's confidence interval.
    public var liftUpper: Double
    /// One-sided exact binomial p-value of observing at least `observed`: P(X ≥ k), X ~ Bin(n, R/N).
    public var pValueAbove: Double
    /// `pValueAbove` after the multiple-testing correction over all tested segments (under
    /// Benjamini-Hochberg, a combination neither of whose parents passes gets the larger of its BH
    /// and Holm adjustments: see the BlastRadius article).
    public var adjustedPValueAbove: Double
    /// One-sided p-value of observing at most `observed` (only for large 1-D segments).
    public var pValueBelow: Double?
    /// `pValueBelow` after the correction over the large 1-D segments.
    public var adjustedPValueBelow: Double?
    /// The verdict.
    public var verdict: SegmentVerdict
    /// A segment that explains this one (see the BlastRadius article); `nil` when it stands alone.
    public var explainedBy: SegmentKey?
    /// observed / total reporting customers.
    public var shareOfReports: Double

    /// The p-value of the test that decided the verdict: the lower tail for NOT_AFFECTED, the
    /// upper tail otherwise. This is what the `p_value` proto field carries.
    public var pValue: Double { verdict == .notAffected ? (pValueBelow ?? 1) : pValueAbove }
    /// Adjusted counterpart of ``pValue`` (the `adjusted_p_value` proto field).
    public var adjustedPValue: Double {
        verdict == .notAffected ? (adjustedPValueBelow ?? 1) : adjustedPValueAbove
    }
}

/// The blast radius of an incident (mirrors `liaison.correlation.v1.BlastRadius` without the
/// incident name, window, compute time and revision, which the service layer owns).
public struct BlastRadiusResult: Sendable, Hashable {
    /// Distinct reporting customers (R).
    public var reportingCustomers: Int
    /// Customers in the baseline (N).
    public var population: Int
    /// R / N.
    public var baseRate: Double
    /// Significance level used.
    public var alpha: Double
    /// Correction applied.
    public var correction: Correction
    /// Size of the tested family (the correction's m): every 1-D segment with enough population,
    /// and every 2-D segment with enough population whose two parents have support.
    public var testedSegments: Int
    /// AFFECTED segments no other AFFECTED segment explains, by adjusted p-value: "who is hit".
    public var affected: [BlastRadiusEntry]
    /// All tested 1-D segments, by dimension then value.
    public var perDimension: [BlastRadiusEntry]
    /// AFFECTED 2-D segments (explained ones included, with `explainedBy`), by adjusted p-value,
    /// capped at ``BlastRadiusOptions/maxCombinationsReported``.
    public var combinations: [BlastRadiusEntry]
    /// Large NOT_AFFECTED 1-D segments not nested in another listed one, largest first.
    public var unaffectedLargeSegments: [BlastRadiusEntry]
    /// One line for humans.
    public var summary: String
}

/// Computes the blast radius from aggregates (population and reporter counts per 1-D and 2-D
/// segment). See the BlastRadius article for the statistics.
public enum BlastRadiusEngine {
    /// Computes the blast radius.
    ///
    /// - Parameters:
    ///   - population: customers per segment key (1-D keys, and 2-D keys for the combination
    ///     search), as produced by ``SegmentExtractor``.
    ///   - populationTotal: N, the customers in the baseline.
    ///   - reporters: distinct reporting customers per segment key (same key scheme).
    ///   - reportersTotal: R, distinct reporting customers.
    ///   - options: knobs; the defaults suit production.
    /// - Returns: the verdicts, the minimal explanation and a summary. Inconsistent input (a
    ///   segment with more reporters than customers, reporters in a segment missing from the
    ///   population) is clamped, never trapped on.
    public static func compute(
        population: SegmentCounts, populationTotal: Int,
        reporters: SegmentCounts, reportersTotal: Int,
        options: BlastRadiusOptions = BlastRadiusOptions()
    ) -> BlastRadiusResult {
        let bigN = populationTotal
        let bigR = min(reportersTotal, populationTotal)
        guard bigN > 0, bigR > 0 else {
            return BlastRadiusResult(
                reportingCustomers: max(0, bigR), population: max(0, bigN), baseRate: 0,
                alpha: options.alpha, correction: options.correction, testedSegments: 0,
                affected: [], perDimension: [], combinations: [], unaffectedLargeSegments: [],
                summary: bigR <= 0 ? "no reporting customers" : "no population baseline")
        }
        let p0 = Double(bigR) / Double(bigN)

        // 1-D support (reporters per condition).
        func reportersOf(_ key: SegmentKey) -> Int { reporters[key] ?? 0 }
        let minObserved = max(1, options.minObserved)
        var familySize = 0
        var oneD: [Cell] = []
        var twoD: [Cell] = []
        // 1-D population of the supported conditions: one lookup per parent in the 2-D pass.
        var supported: [SegmentCondition: Int] = [:]
        for (key, k) in reporters where key.second == nil && k >= minObserved {
            supported[key.first] = population[key] ?? 0
        }
        for (key, rawN) in population {
            let n = min(rawN, bigN)
            guard n >= options.minPopulation else { continue }
            if let second = key.second {
                guard options.searchCombinations,
                      let nFirst = supported[key.first], let nSecond = supported[second],
                      // A combination equal to one of its parents (country=FI & region=eu-north
                      // when FI lies in eu-north) is that parent again: not a new hypothesis.
                      nFirst != rawN, nSecond != rawN
                else { continue }
                familySize += 1
                let k = min(reportersOf(key), n)
                // Only over-represented combinations with support can be AFFECTED; the others
                // count in the family with p treated as 1 (their true p is >= ~0.5).
                // A Chernoff bound P(X >= k) <= exp(-n KL(k/n || p0)) above alpha means the
                // combination cannot pass any correction: it stays in the family, untested.
                if k >= minObserved, Double(k) > Double(n) * p0,
                   chernoffLogBound(k: k, n: n, p: p0) <= log(options.alpha) {
                    twoD.append(Cell(key: key, n: n, k: k))
                }
            } else {
                familySize += 1
                oneD.append(Cell(key: key, n: n, k: min(reportersOf(key), n)))
            }
        }

        func makeEntry(_ cell: Cell) -> BlastRadiusEntry {
            let expected = Double(cell.n) * p0
            let ci = Stats.wilsonInterval(cell.k, cell.n, confidence: options.confidence)
            return BlastRadiusEntry(
                segment: cell.key, observed: cell.k, expected: expected, population: cell.n,
                lift: Double(cell.k) / expected, liftLower: ci.lower / p0, liftUpper: ci.upper / p0,
                pValueAbove: Stats.binomialUpperTail(cell.k, cell.n, p0), adjustedPValueAbove: 1,
                pValueBelow: nil, adjustedPValueBelow: nil, verdict: .inconclusive,
                explainedBy: nil, shareOfReports: Double(cell.k) / Double(bigR))
        }
        var entries = oneD.map(makeEntry) + twoD.map(makeEntry)

        // Upper tail: one family over everything tested.
        let adjustedAbove = Stats.adjust(
            entries.map(\.pValueAbove), familySize: familySize, correction: options.correction)
        for i in entries.indices { entries[i].adjustedPValueAbove = adjustedAbove[i] }
        // Gatekeeping for "pure" combinations: a 2-D segment neither of whose parents passes the
        // correction gets no credit from the step-up of the Benjamini-Hochberg procedure (whose
        // leniency comes from discoveries elsewhere in the lattice): it must pass Holm, i.e.
        // family-wise control, on its own.
        if options.correction == .benjaminiHochberg, entries.contains(where: { $0.depth == 2 }) {
            let holm = Stats.adjust(
                entries.map(\.pValueAbove), familySize: familySize, correction: .holm)
            var passing = Set<SegmentKey>()
            for e in entries where e.depth == 1 && e.adjustedPValueAbove < options.alpha {
                passing.insert(e.segment)
            }
            for i in entries.indices where entries[i].depth == 2 {
                if !entries[i].segment.parents.contains(where: passing.contains) {
                    entries[i].adjustedPValueAbove = max(entries[i].adjustedPValueAbove, holm[i])
                }
            }
        }

        // Lower tail: a second family over the large 1-D segments.
        let minLarge = max(Double(options.minPopulation), options.largeSegmentMinShare * Double(bigN))
        let largeIndices = entries.indices.filter {
            entries[$0].depth == 1 && Double(entries[$0].population) >= minLarge
                && entries[$0].expected >= options.largeSegmentMinExpected
        }
        let below = largeIndices.map {
            Stats.binomialLowerTail(entries[$0].observed, entries[$0].population, p0)
        }
        let adjustedBelow = Stats.adjust(below, correction: options.correction)
        for (j, i) in largeIndices.enumerated() {
            entries[i].pValueBelow = below[j]
            entries[i].adjustedPValueBelow = adjustedBelow[j]
        }

        for i in entries.indices {
            let e = entries[i]
            if e.observed >= minObserved, e.adjustedPValueAbove < options.alpha, e.lift >= options.minLift {
                entries[i].verdict = .affected
            } else if let adj = e.adjustedPValueBelow, adj < options.alpha,
                      e.liftUpper <= options.unaffectedMaxLiftUpper {
                entries[i].verdict = .notAffected
            }
        }

        // Minimal explanation.
        let context = ExplanationContext(
            population: population, reporters: reporters, bigN: bigN, bigR: bigR)
        var candidates = entries.indices.filter { entries[$0].verdict == .affected }
        candidates.sort { a, b in
            let x = entries[a], y = entries[b]
            if x.depth != y.depth { return x.depth < y.depth }
            if x.population != y.population { return x.population > y.population }
            if x.adjustedPValueAbove != y.adjustedPValueAbove { return x.adjustedPValueAbove < y.adjustedPValueAbove }
            return x.segment < y.segment
        }
        let level = options.explanationAlpha ?? options.alpha / Double(max(1, familySize))
        func explains(_ x: Int, by y: Int) -> Bool {
            context.isExplained(entries[x], by: entries[y], level: level)
        }
        var byKey: [SegmentKey: Int] = [:]
        for i in candidates { byKey[entries[i].segment] = i }
        // Pass 1, general to specific: a candidate is explained by an already reported one, or
        // (for a combination) by an AFFECTED parent that is itself explained (country=FI &
        // tier=free by country=FI, which platform=android explains).
        var reported: [Int] = []
        for x in candidates {
            if let y = reported.first(where: { explains(x, by: $0) }) {
                entries[x].explainedBy = entries[y].segment
            } else if let y = entries[x].segment.parents.lazy.compactMap({ byKey[$0] })
                .first(where: { entries[$0].explainedBy != nil && explains(x, by: $0) }) {
                entries[x].explainedBy = entries[y].segment
            } else {
                reported.append(x)
            }
        }
        // Pass 2: a reported segment whose whole excess sits in a more specific reported one
        // (e.g. region=eu-south when only region=eu-south & platform=android is hit) is
        // explained by it, unless the explanation also runs the other way.
        // One sweep suffices: whether x is explained by y depends on x and y only, and the set
        // of possible explainers only shrinks, so a segment kept once stays kept.
        for x in reported {
            if let y = reported.first(where: { $0 != x && explains(x, by: $0) && !explains($0, by: x) }) {
                entries[x].explainedBy = entries[y].segment
                reported.removeAll { $0 == x }
            }
        }
        // Explained entries point at a reported root when their explainer was later explained.
        let reportedSet = Set(reported.map { entries[$0].segment })
        for i in candidates {
            var hops = 0
            while let e = entries[i].explainedBy, !reportedSet.contains(e), let j = byKey[e],
                  let next = entries[j].explainedBy, hops < 8 {
                entries[i].explainedBy = next
                hops += 1
            }
        }

        // NOT_AFFECTED: drop segments nested in a larger NOT_AFFECTED one.
        var unaffected = entries.filter { $0.verdict == .notAffected }
            .sorted { $0.population != $1.population ? $0.population > $1.population : $0.segment < $1.segment }
        var keptUnaffected: [BlastRadiusEntry] = []
        for var u in unaffected {
            if let parent = keptUnaffected.first(where: { context.isSubset(u.segment, of: $0.segment) }) {
                u.explainedBy = parent.segment
                if let i = entries.firstIndex(where: { $0.segment == u.segment }) {
                    entries[i].explainedBy = parent.segment
                }
            } else {
                keptUnaffected.append(u)
            }
        }
        unaffected = keptUnaffected

        let byP: (BlastRadiusEntry, BlastRadiusEntry) -> Bool = {
            $0.adjustedPValueAbove != $1.adjustedPValueAbove
                ? $0.adjustedPValueAbove < $1.adjustedPValueAbove : $0.segment < $1.segment
        }
        let affected = reported.map { entries[$0] }.sorted(by: byP)
        let perDimension = entries.filter { $0.depth == 1 }.sorted { $0.segment < $1.segment }
        let combinations = Array(
            entries.filter { $0.depth == 2 && $0.verdict == .affected }.sorted(by: byP)
                .prefix(max(0, options.maxCombinationsReported)))

        return BlastRadiusResult(
            reportingCustomers: bigR, population: bigN, baseRate: p0, alpha: options.alpha,
            correction: options.correction, testedSegments: familySize, affected: affected,
            perDimension: perDimension, combinations: combinations,
            unaffectedLargeSegments: unaffected,
            summary: summarize(affected: affected, unaffected: unaffected, reporters: bigR))
    }

    /// "region=eu-central, eu-south (lift 2.1-2.3); platform=android & region=eu-south (lift 9.0);
    /// not region=eu-north".
    static func summarize(affected: [BlastRadiusEntry], unaffected: [BlastRadiusEntry], reporters: Int) -> String {
        func fmt(_ x: Double) -> String {
            let r = (x * 10).rounded() / 10
            return String(r)
        }
        var parts: [String] = []
        var oneDByDimension: [SegmentDimension: [BlastRadiusEntry]] = [:]
        for e in affected where e.depth == 1 { oneDByDimension[e.segment.first.dimension, default: []].append(e) }
        for dimension in oneDByDimension.keys.sorted() {
            let group = oneDByDimension[dimension]!.sorted { $0.segment.first.value < $1.segment.first.value }
            let lifts = group.map(\.lift)
            let liftText = lifts.count == 1 || fmt(lifts.min()!) == fmt(lifts.max()!)
                ? fmt(lifts[0]) : "\(fmt(lifts.min()!))-\(fmt(lifts.max()!))"
            parts.append("\(dimension.name)=\(group.map(\.segment.first.value).joined(separator: ", ")) (lift \(liftText))")
        }
        for e in affected where e.depth == 2 {
            parts.append("\(e.segment) (lift \(fmt(e.lift)))")
        }
        if parts.isEmpty { parts.append("no segment stands out among \(reporters) reporting customers") }
        var unaffectedByDimension: [SegmentDimension: [String]] = [:]
        for e in unaffected { unaffectedByDimension[e.segment.first.dimension, default: []].append(e.segment.first.value) }
        for dimension in unaffectedByDimension.keys.sorted() {
            parts.append("not \(dimension.name)=\(unaffectedByDimension[dimension]!.sorted().joined(separator: ", "))")
        }
        return parts.joined(separator: "; ")
    }
}

/// ln of the Chernoff bound on P(X ≥ k), X ~ Bin(n, p), for k/n > p: −n·KL(k/n ‖ p).
func chernoffLogBound(k: Int, n: Int, p: Double) -> Double {
    let q = Double(k) / Double(n)
    guard q > p else { return 0 }
    var kl = q * log(q / p)
    if q < 1 { kl += (1 - q) * log((1 - q) / (1 - p)) }
    return -Double(n) * kl
}

/// A tested segment before it becomes an entry.
struct Cell {
    var key: SegmentKey
    var n: Int
    var k: Int
}

/// Set algebra and tests on aggregates for the explanation rule.
struct ExplanationContext {
    let population: SegmentCounts
    let reporters: SegmentCounts
    let bigN: Int
    let bigR: Int

    private func n(_ key: SegmentKey) -> Int { population[key] ?? 0 }
    private func k(_ key: SegmentKey) -> Int { reporters[key] ?? 0 }

    /// Condition `c` implies condition `d`: equal, or every customer with `c` also has `d`
    /// (learnt from the population: n(c & d) == n(c), e.g. country=IT implies region=eu-south).
    func implies(_ c: SegmentCondition, _ d: SegmentCondition) -> Bool {
        if c == d { return true }
        guard c.dimension != d.dimension else { return false }
        let nc = n(SegmentKey(c))
        return nc > 0 && n(SegmentKey(c, d)) == nc
    }

    /// Every customer of `x` is in `y`.
    func isSubset(_ x: SegmentKey, of y: SegmentKey) -> Bool {
        y.conditions.allSatisfy { d in x.conditions.contains { c in implies(c, d) } }
    }

    /// Customers and reporters in x ∩ y, when the aggregates determine them.
    func intersection(_ x: BlastRadiusEntry, _ y: BlastRadiusEntry) -> (n: Int, k: Int)? {
        if isSubset(x.segment, of: y.segment) { return (x.population, x.observed) }
        if isSubset(y.segment, of: x.segment) { return (y.population, y.observed) }
        guard x.depth == 1, y.depth == 1 else { return nil }
        let c = x.segment.first, d = y.segment.first
        if c.dimension == d.dimension { return c.dimension.isMultiValued ? nil : (0, 0) }
        let key = SegmentKey(c, d)
        return (n(key), k(key))
    }

    /// `x` is explained by `y` when `y` holds most of x's reporters, x is not more affected than
    /// the rest of y inside y, and x shows no excess outside y (against everything outside both).
    func isExplained(_ x: BlastRadiusEntry, by y: BlastRadiusEntry, level: Double) -> Bool {
        guard x.segment != y.segment, let (ni, ki) = intersection(x, y) else { return false }
        guard 2 * ki >= x.observed, ki > 0 else { return false }
        // Inside y: x ∩ y versus y \ x.
        let nyOnly = y.population - ni, kyOnly = max(0, y.observed - ki)
        if ni > 0, nyOnly > 0,
           Stats.rateRatioUpperP(ki, Double(ni), kyOnly, Double(nyOnly)) < level { return false }
        // Outside y: x \ y versus neither.
        let nxOnly = x.population - ni, kxOnly = max(0, x.observed - ki)
        let nRest = bigN - x.population - y.population + ni
        let kRest = max(0, bigR - x.observed - y.observed + ki)
        if nxOnly > 0, nRest > 0,
           Stats.rateRatioUpperP(kxOnly, Double(nxOnly), kRest, Double(nRest)) < level { return false }
        return true
    }
}
