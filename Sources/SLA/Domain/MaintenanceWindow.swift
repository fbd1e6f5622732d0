import Foundation

/// Maintenance window, one-off or recurring at the same LOCAL wall-clock time in the contract's zone.
///
/// Occurrence k starts at `first.start` + k days (daily) or + 7k days (weekly) and ends at `first.end` +
/// the same number of days, both added in LOCAL wall-clock terms (Foundation `date(byAdding: .day)` from
/// the first occurrence, never cumulatively, so there is no drift). Consequences across DST:
/// - a weekly Sunday 02:00–04:00 Europe/Berlin window stays 02:00–04:00 local (01:00Z in winter, 00:00Z in summer);
/// - on the spring-forward day, a wall-clock time that does not exist (02:00–02:59) is moved forward by the
///   gap, as Foundation does (02:00 → 03:00 CEST), while 04:00 stays 04:00: that occurrence lasts 1 real hour;
/// - on the fall-back day, an ambiguous start (02:00 exists twice) resolves to the first (summer-time) instant,
///   so that occurrence may last one real hour longer.
public struct MaintenanceWindow: Hashable, Sendable {
    /// How the window repeats.
    public enum Recurrence: String, Hashable, Sendable {
        case none, daily, weekly
    }

    /// The first occurrence.
    public var first: Interval
    public var recurrence: Recurrence
    /// No occurrence starts at or after `until` (nil = forever).
    public var until: Int64?
    /// Services the window applies to; empty = all services.
    public var services: [String]

    /// At most this many occurrences are returned by `occurrences(in:calendar:)`.
    public static let maxOccurrences = 5000

    public init(first: Interval, recurrence: Recurrence = .none, until: Int64? = nil, services: [String] = []) {
        self.first = first
        self.recurrence = recurrence
        self.until = until
        self.services = services
    }

    /// True when `services` is empty or contains `s`.
    public func applies(toService s: String) -> Bool {
        services.isEmpty || services.contains(s)
    }

    /// Full (unclipped) occurrences that share at least one instant with `window`, oldest first (max 5000).
    public func occurrences(in window: Interval, calendar: ContractCalendar) -> [Interval] {
        guard !window.isEmpty, !first.isEmpty else { return [] }
        let limit = until ?? Int64.max
        let stepDays: Int
        switch recurrence {
        case .none:
            return (first.start < limit && first.intersection(window) != nil) ? [first] : []
        case .daily: stepDays = 1
        case .weekly: stepDays = 7
        }
        let stepMs = Int64(stepDays) * 86_400_000
        // Skip occurrences that certainly end before the window (DST shifts are far below one step).
        var k = Swift.max(0, (window.start - first.end) / stepMs - 1)
        let cal = calendar.calendar
        let s0 = ContractCalendar.date(first.start)
        let e0 = ContractCalendar.date(first.end)
        var out: [Interval] = []
        var iterations = 0
        while out.count < Self.maxOccurrences && iterations < Self.maxOccurrences * 2 + 4 {
            iterations += 1
            let days = Int(k) * stepDays
            guard let sd = cal.date(byAdding: .day, value: days, to: s0),
                  let ed = cal.date(byAdding: .day, value: days, to: e0) else { break }
            let occ = Interval(ContractCalendar.ms(sd), ContractCalendar.ms(ed))
            if occ.start >= limit || occ.start >= window.end { break }
            if occ.intersection(window) != nil { out.append(occ) }
            k += 1
        }
        return out
    }
}
