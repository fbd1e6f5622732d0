import Foundation

/// One ledger line for the arithmetic: an impact interval (open ones are closed at "now" by the caller),
/// its weight in percent (0...100; 100 = full downtime) and whether it is excluded.
public struct WeightedInterval: Hashable, Sendable {
    public var interval: Interval
    /// 0...100; values outside are clamped when computing.
    public var weightPercent: Int
    /// Excluded lines (e.g. customer-caused) never count.
    public var excluded: Bool

    public init(_ interval: Interval, weightPercent: Int = 100, excluded: Bool = false) {
        self.interval = interval
        self.weightPercent = weightPercent
        self.excluded = excluded
    }

    public init(interval: Interval, weightPercent: Int = 100, excluded: Bool = false) {
        self.init(interval, weightPercent: weightPercent, excluded: excluded)
    }
}

/// Downtime arithmetic: a sweep line over interval boundaries, O(n log n).
public enum Downtime {
    /// Weighted downtime in ms inside `window`: the union of the non-excluded intervals (overlaps count ONCE,
    /// at the highest weight covering that instant), minus the `exclusions` (maintenance windows),
    /// floor of sum(len_ms × weight) / 100.
    public static func consumed(_ entries: [WeightedInterval], exclusions: [Interval], within window: Interval) -> Int64 {
        guard !window.isEmpty else { return 0 }
        // Events: (time, delta) where weight index 0...100 for entries, 101 for exclusions.
        var events: [(t: Int64, w: Int, d: Int)] = []
        events.reserveCapacity(entries.count * 2 + exclusions.count * 2)
        for e in entries where !e.excluded {
            let w = Swift.min(100, Swift.max(0, e.weightPercent))
            guard w > 0, let c = e.interval.intersection(window) else { continue }
            events.append((c.start, w, 1))
            events.append((c.end, w, -1))
        }
        guard !events.isEmpty else { return 0 }
        for x in exclusions {
            guard let c = x.intersection(window) else { continue }
            events.append((c.start, 101, 1))
            events.append((c.end, 101, -1))
        }
        events.sort { $0.t < $1.t }

        var counts = [Int](repeating: 0, count: 102)
        var maxW = 0
        var sum: Int64 = 0  // ms × percent; <= window length × 100
        var prev = events[0].t
        var i = 0
        while i < events.count {
            let t = events[i].t
            if t > prev, maxW > 0, counts[101] == 0 {
                sum += (t - prev) * Int64(maxW)
            }
            while i < events.count && events[i].t == t {
                let ev = events[i]
                counts[ev.w] += ev.d
                if ev.w <= 100 {
                    if ev.d > 0 {
                        if ev.w > maxW { maxW = ev.w }
                    } else if ev.w == maxW && counts[ev.w] == 0 {
                        var m = maxW - 1
                        while m > 0 && counts[m] == 0 { m -= 1 }
                        maxW = m
                    }
                }
                i += 1
            }
            prev = t
        }
        return sum / 100
    }

    /// The parts of the union of the counting `entries` (not excluded, weight > 0) inside `window` that
    /// `exclusions` removed (for display), merged and sorted.
    public static func excludedParts(_ entries: [WeightedInterval], exclusions: [Interval], within window: Interval) -> [Interval] {
        let a = union(entries.compactMap { e in
            (e.excluded || e.weightPercent <= 0) ? nil : e.interval.intersection(window)
        })
        let b = union(exclusions.compactMap { $0.intersection(window) })
        return intersect(a, b)
    }

    /// Union of intervals, merged (overlapping or touching) and sorted; empty intervals are dropped.
    public static func union(_ intervals: [Interval]) -> [Interval] {
        let sorted = intervals.filter { !$0.isEmpty }.sorted { $0.start < $1.start }
        var out: [Interval] = []
        out.reserveCapacity(sorted.count)
        for iv in sorted {
            if let last = out.last, iv.start <= last.end {
                if iv.end > last.end { out[out.count - 1].end = iv.end }
            } else {
                out.append(iv)
            }
        }
        return out
    }

    /// Intersection of two merged, sorted interval lists.
    public static func intersect(_ a: [Interval], _ b: [Interval]) -> [Interval] {
        var out: [Interval] = []
        var i = 0, j = 0
        while i < a.count && j < b.count {
            if let c = a[i].intersection(b[j]) { out.append(c) }
            if a[i].end < b[j].end { i += 1 } else { j += 1 }
        }
        return out
    }

    /// Total length of a merged interval list.
    public static func totalLength(_ intervals: [Interval]) -> Int64 {
        union(intervals).reduce(0) { $0 + $1.length }
    }
}
