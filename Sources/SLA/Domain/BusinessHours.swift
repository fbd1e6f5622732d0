import Foundation

/// Business hours for time-to-restore objectives, on the local wall clock of a contract calendar.
public struct BusinessHours: Hashable, Sendable {
    /// Per ISO weekday (1 = Monday ... 7 = Sunday), spans of local minutes [start, end) within the day,
    /// e.g. 9*60..<17*60. Spans are clamped to 0...1440 and merged when they overlap.
    public var spans: [Int: [Range<Int>]]
    /// Local dates "yyyy-MM-dd" without business time.
    public var holidays: Set<String>

    /// Search horizon of `instant(after:businessMs:calendar:)`.
    public static let horizonDays = 3660

    public init(spans: [Int: [Range<Int>]], holidays: Set<String> = []) {
        self.spans = spans
        self.holidays = holidays
    }

    /// Monday to Friday with the same span, e.g. `.weekdays(9 * 60..<17 * 60)`.
    public static func weekdays(_ span: Range<Int>, holidays: Set<String> = []) -> BusinessHours {
        BusinessHours(spans: Dictionary(uniqueKeysWithValues: (1...5).map { ($0, [span]) }), holidays: holidays)
    }

    /// Merged, clamped minute spans of an ISO weekday.
    func minuteSpans(_ isoWeekday: Int) -> [Range<Int>] {
        let raw = (spans[isoWeekday] ?? []).compactMap { r -> Range<Int>? in
            let lo = Swift.max(0, r.lowerBound), hi = Swift.min(24 * 60, r.upperBound)
            return lo < hi ? lo..<hi : nil
        }.sorted { $0.lowerBound < $1.lowerBound }
        var out: [Range<Int>] = []
        for r in raw {
            if let last = out.last, r.lowerBound <= last.upperBound {
                out[out.count - 1] = last.lowerBound..<Swift.max(last.upperBound, r.upperBound)
            } else {
                out.append(r)
            }
        }
        return out
    }

    var hasSpans: Bool { (1...7).contains { !minuteSpans($0).isEmpty } }

    /// Business intervals (absolute) of the local day starting at `dayStart`; empty on holidays.
    /// Wall-clock times skipped by DST resolve as Foundation does (moved forward by the gap).
    func businessIntervals(dayStart: Int64, calendar: ContractCalendar) -> [Interval] {
        if !holidays.isEmpty && holidays.contains(calendar.localDateString(dayStart)) { return [] }
        return minuteSpans(calendar.isoWeekday(dayStart)).compactMap { r in
            let iv = Interval(calendar.instant(dayStart: dayStart, minute: r.lowerBound),
                              calendar.instant(dayStart: dayStart, minute: r.upperBound))
            return iv.isEmpty ? nil : iv
        }
    }

    /// Business time in ms inside `interval` (local wall clock in the calendar's zone; DST-correct).
    public func duration(_ interval: Interval, calendar: ContractCalendar) -> Int64 {
        guard !interval.isEmpty, hasSpans else { return 0 }
        var total: Int64 = 0
        var day = calendar.localDayStart(containing: interval.start)
        while day < interval.end {
            for b in businessIntervals(dayStart: day, calendar: calendar) {
                if let c = b.intersection(interval) { total += c.length }
            }
            let next = calendar.nextLocalDayStart(after: day)
            guard next > day else { break }
            day = next
        }
        return total
    }

    /// The instant at which business time counted from `start` reaches `businessMs` (`start` itself when
    /// `businessMs <= 0`); nil if not within 10 years or if there are no spans.
    public func instant(after start: Int64, businessMs: Int64, calendar: ContractCalendar) -> Int64? {
        guard hasSpans else { return nil }
        if businessMs <= 0 { return start }
        var remaining = businessMs
        var day = calendar.localDayStart(containing: start)
        for _ in 0..<Self.horizonDays {
            for b in businessIntervals(dayStart: day, calendar: calendar) {
                guard let c = b.intersection(Interval(start, Int64.max)) else { continue }
                if remaining <= c.length { return c.start + remaining }
                remaining -= c.length
            }
            let next = calendar.nextLocalDayStart(after: day)
            guard next > day else { return nil }
            day = next
        }
        return nil
    }
}

/// Time-to-restore clocks.
public enum RestoreClock {
    /// Elapsed restore time of [start, end): wall clock, or business time when `hours` is given.
    public static func elapsed(_ i: Interval, hours: BusinessHours?, calendar: ContractCalendar) -> Int64 {
        guard let h = hours else { return i.length }
        return h.duration(i, calendar: calendar)
    }

    /// When the objective `limitMs` is exceeded for an impact that started at `start` and is still open:
    /// `start + limit` on the wall clock, or the business-time instant; nil when business time never gets there.
    public static func deadline(start: Int64, limitMs: Int64, hours: BusinessHours?, calendar: ContractCalendar) -> Int64? {
        guard let h = hours else {
            let (t, o) = start.addingReportingOverflow(Swift.max(0, limitMs))
            return o ? nil : t
        }
        return h.instant(after: start, businessMs: limitMs, calendar: calendar)
    }
}

/// Compact durations for humans.
public enum DurationText {
    /// The largest non-zero unit of d/h/m/s and the next unit if non-zero; sub-second parts are truncated:
    /// "5h12m", "45m", "2d3h", "1m30s", "30s", "0s"; negative values get a leading "-".
    public static func format(ms: Int64) -> String {
        let neg = ms < 0
        var s = ms.magnitude / 1000
        let units: [(UInt64, String)] = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")]
        var parts: [UInt64] = []
        for (size, _) in units {
            parts.append(s / size)
            s %= size
        }
        guard let first = parts.firstIndex(where: { $0 > 0 }) else { return "0s" }
        var out = "\(parts[first])\(units[first].1)"
        if first + 1 < units.count && parts[first + 1] > 0 {
            out += "\(parts[first + 1])\(units[first + 1].1)"
        }
        return (neg ? "-" : "") + out
    }
}
