// Emerging issues: clusters of unexplained reports against the background rate.

import Foundation

/// What an emerging-issue watch is keyed by: a segment, a service, a symptom, or a combination.
public struct EmergingKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The segment (`nil`: all customers).
    public var segment: SegmentKey?
    /// A technical service id or service hint (`nil`: any).
    public var service: String?
    /// A symptom kind name (`nil`: any).
    public var symptom: String?

    public init(segment: SegmentKey? = nil, service: String? = nil, symptom: String? = nil) {
        self.segment = segment
        self.service = service
        self.symptom = symptom
    }

    public var description: String {
        var parts: [String] = []
        if let segment { parts.append(segment.description) }
        if let service { parts.append("service=\(service)") }
        if let symptom { parts.append("symptom=\(symptom)") }
        return parts.isEmpty ? "all" : parts.joined(separator: "&")
    }

    public static func < (lhs: EmergingKey, rhs: EmergingKey) -> Bool { lhs.description < rhs.description }
}

/// Unexplained reports for one key in the current sliding window, with the key's background rate.
public struct EmergingWindowCount: Sendable, Hashable {
    public var key: EmergingKey
    /// Unexplained reports in the window.
    public var observed: Int
    /// Background reports per hour for this key (from a long baseline period).
    public var backgroundRatePerHour: Double

    public init(key: EmergingKey, observed: Int, backgroundRatePerHour: Double) {
        self.key = key
        self.observed = observed
        self.backgroundRatePerHour = backgroundRatePerHour
    }
}

/// A significant cluster (mirrors the statistics of `EmergingIssue`).
public struct EmergingCluster: Sendable, Hashable {
    public var key: EmergingKey
    /// Reports in the window.
    public var observed: Int
    /// Reports expected in the window at the background rate.
    public var expected: Double
    /// observed / expected.
    public var lift: Double
    /// Poisson upper tail P(X ≥ observed | expected).
    public var pValue: Double
    /// After the correction across all watched keys.
    public var adjustedPValue: Double
}

/// Knobs of ``EmergingIssueDetector``.
public struct EmergingOptions: Sendable, Hashable {
    /// Significance level after the correction.
    public var alpha: Double = 0.01
    /// Correction across watched keys.
    public var correction: Correction = .benjaminiHochberg
    /// Minimum reports in the window for a cluster.
    public var minCount: Int = 5
    /// Minimum lift for a cluster.
    public var minLift: Double = 2
    /// Floor on the background rate (reports per hour), so a key never seen before does not make
    /// its first few reports infinitely surprising.
    public var minimumBackgroundRatePerHour: Double = 0.01

    public init() {}
}

/// Detects clusters of reports that no open incident explains.
///
/// For every watched key, the unexplained reports in the sliding window are tested against the
/// key's background rate: X ~ Poisson(rate × window), one-sided upper tail. The p-values are
/// corrected across all watched keys (a key with no reports still counts in the family when
/// `familySize` says so); a cluster needs the adjusted p-value below alpha, at least `minCount`
/// reports and a lift of at least `minLift`.
public enum EmergingIssueDetector {
    /// The significant clusters, most significant first.
    public static func detect(
        windowCounts: [EmergingWindowCount], windowLength: TimeInterval, familySize: Int? = nil,
        options: EmergingOptions = EmergingOptions()
    ) -> [EmergingCluster] {
        let hours = windowLength / 3600
        guard hours > 0, !windowCounts.isEmpty else { return [] }
        let candidates = windowCounts.map { w -> EmergingCluster in
            let expected = max(w.backgroundRatePerHour, options.minimumBackgroundRatePerHour) * hours
            return EmergingCluster(
                key: w.key, observed: w.observed, expected: expected,
                lift: expected > 0 ? Double(w.observed) / expected : .infinity,
                pValue: Stats.poissonUpperTail(w.observed, expected), adjustedPValue: 1)
        }
        let adjusted = Stats.adjust(candidates.map(\.pValue), familySize: familySize, correction: options.correction)
        var clusters: [EmergingCluster] = []
        for (i, var c) in candidates.enumerated() {
            c.adjustedPValue = adjusted[i]
            if c.adjustedPValue < options.alpha, c.observed >= options.minCount, c.lift >= options.minLift {
                clusters.append(c)
            }
        }
        return clusters.sorted {
            $0.adjustedPValue != $1.adjustedPValue ? $0.adjustedPValue < $1.adjustedPValue : $0.key < $1.key
        }
    }

    /// Background rate per hour from a baseline period, with a half-count prior so that a key
    /// with no baseline reports gets a small positive rate.
    public static func backgroundRate(count: Int, over duration: TimeInterval, priorCount: Double = 0.5) -> Double {
        guard duration > 0 else { return 0 }
        return (Double(count) + priorCount) / (duration / 3600)
    }
}
