import Foundation

/// The kind of calendar-aligned SLA period.
public enum PeriodKind: String, Hashable, Sendable, CaseIterable {
    case month, quarter, year
}

/// Calendar-aligned periods in a contract's IANA time zone.
///
/// Periods start at local midnight of the 1st of the month / quarter (Jan, Apr, Jul, Oct) / year and
/// end at the next one, so a month containing a DST change is 1 hour shorter or longer than its
/// number of days × 24 h. In the (rare) zones where local midnight itself is skipped by a DST change,
/// the period starts at the first instant of that local day, as Foundation resolves it.
public struct ContractCalendar: Sendable, Hashable {
    /// The IANA identifier the calendar was created with, e.g. "Europe/Berlin".
    public let timeZoneIdentifier: String
    let calendar: Calendar

    /// Years outside 1...9999 are clamped to keep Foundation conversions in range.
    static let minMs: Int64 = -62_135_596_800_000  // 0001-01-01T00:00Z
    static let maxMs: Int64 = 253_402_300_799_999  // 9999-12-31T23:59:59.999Z

    /// nil for an unknown IANA name ("UTC" is valid).
    public init?(timeZone identifier: String) {
        guard let tz = TimeZone(identifier: identifier) else { return nil }
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = tz
        cal.firstWeekday = 2
        self.calendar = cal
        self.timeZoneIdentifier = identifier
    }

    public static func == (a: ContractCalendar, b: ContractCalendar) -> Bool {
        a.timeZoneIdentifier == b.timeZoneIdentifier
    }

    public func hash(into h: inout Hasher) { h.combine(timeZoneIdentifier) }

    // MARK: conversions

    static func date(_ ms: Int64) -> Date {
        let c = Swift.min(Swift.max(ms, minMs), maxMs)
        return Date(timeIntervalSince1970: Double(c) / 1000)
    }

    static func ms(_ d: Date) -> Int64 {
        let v = (d.timeIntervalSince1970 * 1000).rounded()
        guard v.isFinite else { return 0 }
        return Int64(Swift.min(Swift.max(v, Double(minMs)), Double(maxMs)))
    }

    /// Local (year, month, day) of `t`.
    func ymd(_ t: Int64) -> (year: Int, month: Int, day: Int) {
        let c = calendar.dateComponents([.year, .month, .day], from: Self.date(t))
        return (c.year ?? 1970, c.month ?? 1, c.day ?? 1)
    }

    /// The first instant of the local day year-month-day (month and day may overflow; they are normalised).
    func startOfLocalDay(year: Int, month: Int, day: Int) -> Int64 {
        let m0 = month - 1
        let y = year + (m0 >= 0 ? m0 / 12 : (m0 - 11) / 12)
        let m = ((m0 % 12) + 12) % 12 + 1
        var dc = DateComponents()
        dc.year = y
        dc.month = m
        dc.day = 1
        guard let first = calendar.date(from: dc) else { return 0 }
        let target = day == 1 ? first : (calendar.date(byAdding: .day, value: day - 1, to: first) ?? first)
        return Self.ms(calendar.startOfDay(for: target))
    }

    /// The instant of local wall-clock `minute` (0...1440) on the local day starting at `dayStart`.
    /// A wall-clock time skipped by DST resolves as Foundation does (moved forward by the gap).
    func instant(dayStart: Int64, minute: Int) -> Int64 {
        if minute <= 0 { return dayStart }
        if minute >= 24 * 60 { return nextLocalDayStart(after: dayStart) }
        let d = Self.date(dayStart)
        var dc = calendar.dateComponents([.year, .month, .day], from: d)
        dc.hour = minute / 60
        dc.minute = minute % 60
        guard let r = calendar.date(from: dc) else { return dayStart + Int64(minute) * 60_000 }
        return Self.ms(r)
    }

    /// The start of the local day following the one that starts at (or contains) `dayStart`.
    func nextLocalDayStart(after dayStart: Int64) -> Int64 {
        let (y, m, d) = ymd(dayStart)
        return startOfLocalDay(year: y, month: m, day: d + 1)
    }

    /// ISO weekday of the local day containing `t`: 1 = Monday ... 7 = Sunday.
    func isoWeekday(_ t: Int64) -> Int {
        let wd = calendar.component(.weekday, from: Self.date(t))  // 1 = Sunday
        return ((wd + 5) % 7) + 1
    }

    // MARK: public API

    /// The period of `kind` containing `t`: [local midnight of its 1st day, local midnight of the next period's 1st day).
    public func period(_ kind: PeriodKind, containing t: Int64) -> Interval {
        let (y, m, _) = ymd(t)
        let startMonth: Int
        let months: Int
        switch kind {
        case .month: startMonth = m; months = 1
        case .quarter: startMonth = ((m - 1) / 3) * 3 + 1; months = 3
        case .year: startMonth = 1; months = 12
        }
        let s = startOfLocalDay(year: y, month: startMonth, day: 1)
        let e = startOfLocalDay(year: y, month: startMonth + months, day: 1)
        return Interval(s, e)
    }

    /// The consecutive periods of `kind` that share at least one instant with `w`, oldest first (at most 1200).
    public func periods(_ kind: PeriodKind, overlapping w: Interval) -> [Interval] {
        guard !w.isEmpty else { return [] }
        var out: [Interval] = []
        var p = period(kind, containing: w.start)
        while p.start < w.end && out.count < 1200 {
            out.append(p)
            guard p.end > p.start else { break }
            p = period(kind, containing: p.end)
        }
        return out
    }

    /// The first instant of the local day containing `t`.
    public func localDayStart(containing t: Int64) -> Int64 {
        Self.ms(calendar.startOfDay(for: Self.date(t)))
    }

    /// The local date of `t` as "yyyy-MM-dd".
    public func localDateString(_ t: Int64) -> String {
        let (y, m, d) = ymd(t)
        func pad(_ v: Int, _ n: Int) -> String {
            let s = String(v)
            return s.count >= n ? s : String(repeating: "0", count: n - s.count) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))"
    }
}
