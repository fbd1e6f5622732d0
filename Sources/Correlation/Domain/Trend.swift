// How reports move over time: trend verdicts, mitigation effects and spread to new segments.

import Foundation

/// Reports in one time bucket, overall and per segment.
///
/// Counting *first reports of distinct customers* per bucket (each reporting customer counted in
/// the bucket of their first report for the incident) keeps sums over buckets exact distinct
/// counts, which ``SpreadDetector/firstSignificantTimes(buckets:bucketWidth:population:populationTotal:options:)``
/// relies on; the trend and mitigation tests work with either reports or customers.
public struct TimeBucketCounts: Sendable, Hashable {
    /// Start of the bucket; the bucket covers `[start, start + bucketWidth)`.
    public var start: Date
    /// Reports (or reporting customers) in the bucket, all segments together.
    public var total: Int
    /// Per segment (typically 1-D keys of one breakdown dimension).
    public var segments: [SegmentKey: Int]

    public init(start: Date, total: Int, segments: [SegmentKey: Int] = [:]) {
        self.start = start
        self.total = total
        self.segments = segments
    }
}

/// Direction of the report rate (mirrors `TrendVerdict`).
public enum TrendVerdict: String, Sendable, Hashable {
    case worsening, stable, improving, insufficientData
}

/// Trend of a report-rate series (mirrors `Trend`, plus the evidence behind the verdict).
public struct Trend: Sendable, Hashable {
    /// The verdict.
    public var verdict: TrendVerdict
    /// Least-squares slope of the rate (reports per hour) over the considered buckets, per hour.
    public var slopePerHour: Double
    /// Two-sided p-value of the score test for a log-linear trend over the considered buckets.
    public var pValue: Double
    /// `pValue` after the correction across series (per-segment trends); equals `pValue` for the
    /// overall trend.
    public var adjustedPValue: Double
    /// Buckets the verdict is based on (the most recent ones).
    public var bucketsConsidered: Int
    /// Reports per hour in the recent window.
    public var recentRatePerHour: Double
    /// Reports per hour in the window before it.
    public var previousRatePerHour: Double
    /// recent / previous (`.infinity` when previous is 0 and recent is not).
    public var rateRatio: Double
}

/// Trend of one segment.
public struct SegmentTrend: Sendable, Hashable {
    public var segment: SegmentKey
    public var trend: Trend
}

/// Verdict on a mitigation (mirrors `MitigationEffect.Verdict`).
public enum MitigationVerdict: String, Sendable, Hashable {
    /// The rate after is significantly lower.
    case effective
    /// No significant change.
    case noEffect
    /// The rate after is significantly higher.
    case worsened
    /// Less than ``TrendOptions/minObservationAfterMitigation`` has passed, or there is no
    /// complete bucket before the mitigation to compare with.
    case tooEarly
}

/// Effect of one mitigation on the report rate (mirrors `MitigationEffect`).
public struct MitigationEffect: Sendable, Hashable {
    /// When the mitigation took effect.
    public var mitigationTime: Date
    /// Reports per hour in the comparison window before the mitigation.
    public var rateBefore: Double
    /// Reports per hour in the comparison window after the mitigation.
    public var rateAfter: Double
    /// rateAfter / rateBefore.
    public var rateRatio: Double
    /// One-sided p-value in the direction of the change (rate-ratio test); 1 when too early.
    public var pValue: Double
    /// The verdict.
    public var verdict: MitigationVerdict
    /// Length of the before window compared (the after window is as long, or what has elapsed).
    public var comparisonWindow: TimeInterval
    /// Reports counted before / after.
    public var reportsBefore: Int
    public var reportsAfter: Int
}

/// Knobs of ``TrendAnalyzer``.
public struct TrendOptions: Sendable, Hashable {
    /// Number of most recent buckets the trend is judged on.
    public var windowBuckets: Int = 6
    /// Fewer reports than this in those buckets: INSUFFICIENT_DATA.
    public var minReports: Int = 10
    /// Significance level of the trend and mitigation tests.
    public var alpha: Double = 0.05
    /// Correction across per-segment trends.
    public var correction: Correction = .benjaminiHochberg
    /// Longest window compared on each side of a mitigation.
    public var mitigationWindow: TimeInterval = 3600
    /// Minimum time after a mitigation before a verdict other than TOO_EARLY.
    public var minObservationAfterMitigation: TimeInterval = 900

    public init() {}
}

/// Everything ``TrendAnalyzer`` says about a timeline.
public struct TrendResult: Sendable, Hashable {
    /// Overall trend.
    public var overall: Trend
    /// Per-segment trends, by segment.
    public var segments: [SegmentTrend]
    /// Effect of each mitigation, in time order.
    public var mitigations: [MitigationEffect]
    /// Bucket width used.
    public var bucketWidth: TimeInterval
}

/// Trend verdicts and mitigation effects from report counts per time bucket.
///
/// Method: buckets are laid on a regular grid from the first bucket to `now` (missing buckets are
/// zero); the current bucket counts with its elapsed exposure only. The trend is the score test for
/// a log-linear (Poisson regression) slope over the most recent buckets, two-sided; WORSENING or
/// IMPROVING when significant, STABLE otherwise. The reported slope is a least-squares fit of the
/// per-bucket rate over those buckets. A mitigation compares the rate after it with the rate
/// before it over equal windows with an exact conditional rate-ratio test (given the total, the
/// count after is Binomial(total, exposure share) under an unchanged rate); buckets straddling the
/// mitigation are left out.
public enum TrendAnalyzer {
    /// Analyzes a timeline with at most one mitigation.
    public static func analyze(
        buckets: [TimeBucketCounts], bucketWidth: TimeInterval, mitigationTime: Date?, now: Date,
        options: TrendOptions = TrendOptions()
    ) -> TrendResult {
        analyze(buckets: buckets, bucketWidth: bucketWidth,
                mitigationTimes: mitigationTime.map { [$0] } ?? [], now: now, options: options)
    }

    /// Analyzes a timeline with any number of mitigations.
    public static func analyze(
        buckets: [TimeBucketCounts], bucketWidth: TimeInterval, mitigationTimes: [Date], now: Date,
        options: TrendOptions = TrendOptions()
    ) -> TrendResult {
        precondition(bucketWidth > 0, "bucketWidth must be positive")
        let grid = Grid(buckets: buckets, width: bucketWidth, now: now)
        let overall = trend(counts: grid.totals, exposures: grid.exposures, width: bucketWidth, options: options)

        var keys = Set<SegmentKey>()
        for b in buckets { keys.formUnion(b.segments.keys) }
        var segmentTrends = keys.sorted().map { key in
            SegmentTrend(segment: key, trend: trend(
                counts: grid.series(for: key), exposures: grid.exposures, width: bucketWidth, options: options))
        }
        let tested = segmentTrends.indices.filter { segmentTrends[$0].trend.verdict != .insufficientData }
        let adjusted = Stats.adjust(tested.map { segmentTrends[$0].trend.pValue }, correction: options.correction)
        for (j, i) in tested.enumerated() {
            segmentTrends[i].trend.adjustedPValue = adjusted[j]
            if adjusted[j] >= options.alpha { segmentTrends[i].trend.verdict = .stable }
        }

        let mitigations = mitigationTimes.sorted().map {
            mitigationEffect(grid: grid, at: $0, now: now, options: options)
        }
        return TrendResult(overall: overall, segments: segmentTrends, mitigations: mitigations, bucketWidth: bucketWidth)
    }

    /// Trend of one series of counts with per-bucket exposures in seconds (oldest first).
    ///
    /// The verdict comes from the score test for a log-linear trend in Poisson counts over the
    /// last ``TrendOptions/windowBuckets`` buckets: U = Σ xᵢ (tᵢ − t̄), Var U = λ̂ Σ eᵢ (tᵢ − t̄)²
    /// with t̄ the exposure-weighted mean time and λ̂ the pooled rate; z = U / √Var, two-sided.
    /// The recent and previous rates (last half versus first half of the window) are evidence.
    public static func trend(counts: [Int], exposures: [Double], width: TimeInterval, options: TrendOptions) -> Trend {
        let usable = zip(counts, exposures).filter { $0.1 > 0 }
        let window = Array(usable.suffix(max(2, options.windowBuckets)))
        let total = window.reduce(0) { $0 + $1.0 }
        guard window.count >= 2, total >= options.minReports else {
            return Trend(verdict: .insufficientData, slopePerHour: 0, pValue: 1, adjustedPValue: 1,
                         bucketsConsidered: window.count, recentRatePerHour: 0, previousRatePerHour: 0, rateRatio: 1)
        }
        let hours = window.map { $0.1 / 3600 }
        let exposure = hours.reduce(0, +)
        let lambda = Double(total) / exposure
        var tbar = 0.0
        for (i, e) in hours.enumerated() { tbar += e * Double(i) }
        tbar /= exposure
        var u = 0.0, v = 0.0
        for (i, (x, _)) in window.enumerated() {
            let d = Double(i) - tbar
            u += Double(x) * d
            v += lambda * hours[i] * d * d
        }
        let z = v > 0 ? u / v.squareRoot() : 0
        let p = min(1, erfc(abs(z) / 2.0.squareRoot()))
        let verdict: TrendVerdict = p >= options.alpha ? .stable : (z > 0 ? .worsening : .improving)

        let half = window.count / 2
        let previous = window.prefix(half), recent = window.suffix(half)
        let kp = previous.reduce(0) { $0 + $1.0 }, kr = recent.reduce(0) { $0 + $1.0 }
        let ep = previous.reduce(0) { $0 + $1.1 } / 3600, er = recent.reduce(0) { $0 + $1.1 } / 3600
        let rr = Double(kr) / er, rp = Double(kp) / ep
        // Least-squares slope of the rate against bucket index, converted to per hour per hour.
        let rates = window.map { Double($0.0) / ($0.1 / 3600) }
        let n = Double(rates.count)
        let meanX = (n - 1) / 2, meanY = rates.reduce(0, +) / n
        var sxy = 0.0, sxx = 0.0
        for (i, y) in rates.enumerated() {
            sxy += (Double(i) - meanX) * (y - meanY)
            sxx += (Double(i) - meanX) * (Double(i) - meanX)
        }
        let slope = sxx > 0 ? sxy / sxx / (width / 3600) : 0
        return Trend(verdict: verdict, slopePerHour: slope, pValue: p, adjustedPValue: p,
                     bucketsConsidered: window.count, recentRatePerHour: rr, previousRatePerHour: rp,
                     rateRatio: rp > 0 ? rr / rp : (rr > 0 ? .infinity : 1))
    }

    static func mitigationEffect(grid: Grid, at time: Date, now: Date, options: TrendOptions) -> MitigationEffect {
        let elapsed = now.timeIntervalSince(time)
        let window = min(options.mitigationWindow, max(0, elapsed))
        var kb = 0, ka = 0, eb = 0.0, ea = 0.0
        for i in grid.totals.indices {
            let start = grid.start.addingTimeInterval(Double(i) * grid.width)
            let end = start.addingTimeInterval(grid.width)
            if end <= time, start >= time.addingTimeInterval(-options.mitigationWindow) {
                kb += grid.totals[i]
                eb += grid.exposures[i]
            } else if start >= time, start < time.addingTimeInterval(options.mitigationWindow) {
                ka += grid.totals[i]
                ea += grid.exposures[i]
            }
        }
        let rateBefore = eb > 0 ? Double(kb) / (eb / 3600) : 0
        let rateAfter = ea > 0 ? Double(ka) / (ea / 3600) : 0
        let ratio = rateBefore > 0 ? rateAfter / rateBefore : (rateAfter > 0 ? .infinity : 1)
        var effect = MitigationEffect(
            mitigationTime: time, rateBefore: rateBefore, rateAfter: rateAfter, rateRatio: ratio,
            pValue: 1, verdict: .tooEarly, comparisonWindow: window, reportsBefore: kb, reportsAfter: ka)
        guard elapsed >= options.minObservationAfterMitigation, ea > 0, eb > 0 else { return effect }
        let down = Stats.rateRatioLowerP(ka, ea, kb, eb)
        let up = Stats.rateRatioUpperP(ka, ea, kb, eb)
        effect.pValue = min(down, up)
        effect.verdict = down < options.alpha ? .effective : (up < options.alpha ? .worsened : .noEffect)
        return effect
    }

    /// Buckets on a regular grid up to `now`.
    struct Grid {
        /// The longest series kept (about 69 days of minutes, 1.6 MB).
        static let maxBuckets = 100_000
        let start: Date
        let width: TimeInterval
        var totals: [Int] = []
        var exposures: [Double] = []
        private var index: [Int: Int] = [:]
        private let buckets: [TimeBucketCounts]

        init(buckets: [TimeBucketCounts], width: TimeInterval, now: Date) {
            self.width = width
            self.buckets = buckets
            // At most `maxBuckets` buckets back from now: a bucket older than that (a stored time
            // from long ago) must not make the series allocate one entry per width since then.
            start = max(buckets.map(\.start).min() ?? now, now.addingTimeInterval(-width * Double(Self.maxBuckets)))
            let span = (now.timeIntervalSince(start) / width).rounded(.up)
            let count = span.isFinite ? Int(min(max(span, 0), Double(Self.maxBuckets))) : 0
            totals = [Int](repeating: 0, count: count)
            exposures = (0..<count).map { i in
                let s = Double(i) * width
                return max(0, min(width, now.timeIntervalSince(start) - s))
            }
            for (j, b) in buckets.enumerated() {
                let i = Int((b.start.timeIntervalSince(start) / width).rounded(.down))
                guard i >= 0, i < count else { continue }
                totals[i] += b.total
                index[j] = i
            }
        }

        func series(for key: SegmentKey) -> [Int] {
            var out = [Int](repeating: 0, count: totals.count)
            for (j, b) in buckets.enumerated() {
                if let i = index[j], let c = b.segments[key] { out[i] += c }
            }
            return out
        }
    }
}

/// A segment that became affected after the first ones (mirrors `SegmentSpread`).
public struct SegmentSpread: Sendable, Hashable {
    /// The newly affected segment.
    public var segment: SegmentKey
    /// Its first report, when known.
    public var firstReportTime: Date?
    /// When its verdict became AFFECTED.
    public var affectedTime: Date
    /// The closest previously affected segment by the configured adjacency, if any: a failure
    /// moving to the next-closest region.
    public var adjacentTo: SegmentKey?
}

/// Spread of an incident to new segments over time.
public enum SpreadDetector {
    /// Segments affected later than the first affected ones, in time order.
    ///
    /// - Parameters:
    ///   - firstSignificant: when each segment first became AFFECTED.
    ///   - firstReport: first report per segment (optional, copied to the output).
    ///   - neighbours: adjacency of values of `adjacencyDimension`, closest first, e.g.
    ///     `["eu-south": ["eu-central", "eu-north"]]`; used in both directions.
    ///   - adjacencyDimension: the dimension the adjacency applies to (region by default).
    ///   - minDelay: a segment counts as spread only when affected more than this after the
    ///     first affected segment (e.g. one bucket, so simultaneous onsets are not "spread").
    public static func detect(
        firstSignificant: [SegmentKey: Date], firstReport: [SegmentKey: Date] = [:],
        neighbours: [String: [String]] = [:], adjacencyDimension: SegmentDimension = .region,
        minDelay: TimeInterval = 0
    ) -> [SegmentSpread] {
        guard let first = firstSignificant.values.min() else { return [] }
        let ordered = firstSignificant.sorted { $0.value != $1.value ? $0.value < $1.value : $0.key < $1.key }
        func distance(_ a: String, _ b: String) -> Int? {
            let ab = neighbours[a]?.firstIndex(of: b)
            let ba = neighbours[b]?.firstIndex(of: a)
            switch (ab, ba) {
            case let (x?, y?): return min(x, y)
            case let (x?, nil): return x
            case let (nil, y?): return y
            default: return nil
            }
        }
        var spread: [SegmentSpread] = []
        for (key, time) in ordered where time.timeIntervalSince(first) > minDelay {
            var adjacent: SegmentKey?
            if key.depth == 1, key.first.dimension == adjacencyDimension {
                var best: (Int, Date)?
                for (other, otherTime) in ordered where otherTime < time && other.depth == 1
                    && other.first.dimension == adjacencyDimension {
                    guard let d = distance(other.first.value, key.first.value) else { continue }
                    if best == nil || (d, otherTime) < best! {
                        best = (d, otherTime)
                        adjacent = other
                    }
                }
            }
            spread.append(SegmentSpread(segment: key, firstReportTime: firstReport[key], affectedTime: time, adjacentTo: adjacent))
        }
        return spread
    }

    /// When each 1-D segment first became AFFECTED, by re-running the blast-radius test at the
    /// end of every bucket on the counts so far (`windowBuckets == nil`) or on the counts of the
    /// last `windowBuckets` buckets (a sliding window: a segment joining late stands out sooner,
    /// as it is not diluted by the early reports of the first segments). The `segments` of the
    /// buckets should be first reports of distinct customers, so sums are distinct counts; pass
    /// the keys of the dimension whose spread matters (typically region).
    public static func firstSignificantTimes(
        buckets: [TimeBucketCounts], bucketWidth: TimeInterval, population: SegmentCounts,
        populationTotal: Int, windowBuckets: Int? = nil,
        options: BlastRadiusOptions = BlastRadiusOptions()
    ) -> [SegmentKey: Date] {
        var opts = options
        opts.searchCombinations = false
        let onePopulation = population.filter { $0.key.depth == 1 }
        let ordered = buckets.sorted(by: { $0.start < $1.start })
        var cumulative: SegmentCounts = [:]
        var total = 0
        var result: [SegmentKey: Date] = [:]
        for (index, bucket) in ordered.enumerated() {
            total += bucket.total
            for (key, count) in bucket.segments where key.depth == 1 { cumulative[key, default: 0] += count }
            if let w = windowBuckets, w > 0, index >= w {
                let old = ordered[index - w]
                total -= old.total
                for (key, count) in old.segments where key.depth == 1 { cumulative[key, default: 0] -= count }
            }
            let radius = BlastRadiusEngine.compute(
                population: onePopulation, populationTotal: populationTotal,
                reporters: cumulative, reportersTotal: total, options: opts)
            let end = bucket.start.addingTimeInterval(bucketWidth)
            for entry in radius.perDimension where entry.verdict == .affected && result[entry.segment] == nil {
                result[entry.segment] = end
            }
        }
        return result
    }
}
