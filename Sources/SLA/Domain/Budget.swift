import Foundation

/// A percentage as an exact integer: percent × 10_000 (99.9 -> 999_000; 99.99 -> 999_900; 100 -> 1_000_000).
/// Rounded from the Double once, at the edge.
public struct PercentE4: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// percent × 10_000.
    public var value: Int64

    /// 100%.
    public static let hundred = PercentE4(raw: 1_000_000)
    /// 0%.
    public static let zero = PercentE4(raw: 0)

    /// Rounds `percent × 10_000` to the nearest integer (half away from zero); non-finite input gives 0.
    public init(_ percent: Double) {
        let v = (percent * 10_000).rounded()
        self.value = v.isFinite ? Int64(Swift.min(Swift.max(v, -1e15), 1e15)) : 0
    }

    /// From an already scaled value (percent × 10_000).
    public init(raw: Int64) { self.value = raw }

    /// The percentage as a Double (display only).
    public var percent: Double { Double(value) / 10_000 }

    /// "99.9%", "100%", "99.9999%": minimal digits.
    public var description: String { Self.format(value, scale: 4) + "%" }

    public static func < (a: PercentE4, b: PercentE4) -> Bool { a.value < b.value }

    /// Formats `v / 10^scale` with minimal fraction digits (no trailing zeros).
    static func format(_ v: Int64, scale: Int) -> String {
        var p: UInt64 = 1
        for _ in 0..<scale { p *= 10 }
        let mag = v.magnitude
        let ip = mag / p
        var frac = mag % p
        var s = (v < 0 ? "-" : "") + String(ip)
        if frac > 0 {
            var digits = scale
            while frac % 10 == 0 { frac /= 10; digits -= 1 }
            let f = String(frac)
            s += "." + String(repeating: "0", count: digits - f.count) + f
        }
        return s
    }
}

/// Error-budget figures of one SLA period.
public struct BudgetFigures: Hashable, Sendable {
    /// Measured window length (period ∩ contract effective window).
    public var windowMs: Int64
    /// floor(window × (100% − target)).
    public var allowedMs: Int64
    public var consumedMs: Int64
    /// allowed − consumed (negative when breached).
    public var remainingMs: Int64
    /// min(now, window.end) − window.start, >= 0.
    public var elapsedMs: Int64
    /// 100% × (1 − consumed/elapsed), floored to e4 (never below 0%); 100% when elapsed == 0.
    public var availabilitySoFarE4: PercentE4
    /// 100% × (1 − consumed/window), floored to e4 (never below 0%); 100% when the window is empty.
    public var periodAvailabilityE4: PercentE4
    /// Exact: consumed × 1_000_000 > window × (1_000_000 − target).
    public var breached: Bool
    /// Downtime in the last hour / (allowed/window × 1h); 0 when nothing was consumed in the last hour; capped at 1e6.
    public var burnRate: Double
    /// now + remaining, when `accruing`, not breached and that instant is before window.end (see `Budget.breachTime`).
    public var projectedExhaustion: Int64?
    /// consumed / allowed; 0 when both are 0; 1e6 when allowed == 0 < consumed.
    public var consumedFraction: Double
}

/// Error-budget arithmetic (integer ms, exact comparisons).
public enum Budget {
    /// Cap applied to burn rates and fractions instead of infinity.
    public static let cap: Double = 1e6

    /// floor(windowMs × (100% − target)); target is clamped to 0...100%.
    public static func allowedMs(target: PercentE4, windowMs: Int64) -> Int64 {
        let t = Swift.min(Swift.max(target.value, 0), 1_000_000)
        return SLAWideMath.mulDivFloor(Swift.max(0, windowMs), 1_000_000 - t, 1_000_000)
    }

    /// Exact: consumed × 1_000_000 > window × (1_000_000 − target).
    public static func isBreached(target: PercentE4, windowMs: Int64, consumedMs: Int64) -> Bool {
        let t = Swift.min(Swift.max(target.value, 0), 1_000_000)
        return SLAWideMath.compareProducts(consumedMs, 1_000_000, Swift.max(0, windowMs), 1_000_000 - t) > 0
    }

    /// 100% × (1 − consumed/over), floored to e4 and clamped to 0...100%; 100% when `over` <= 0.
    public static func availability(consumedMs: Int64, over ms: Int64) -> PercentE4 {
        guard ms > 0 else { return .hundred }
        let c = Swift.min(Swift.max(consumedMs, 0), ms)
        // floor(1e6 − 1e6·c/ms) = 1e6 − ceil(1e6·c/ms)
        return PercentE4(raw: 1_000_000 - SLAWideMath.mulDivCeil(c, 1_000_000, ms))
    }

    /// All figures of a period at `now`.
    public static func evaluate(target: PercentE4, window: Interval, now: Int64, consumedMs: Int64,
                                consumedLastHourMs: Int64, accruing: Bool) -> BudgetFigures {
        let w = window.length
        let allowed = allowedMs(target: target, windowMs: w)
        let elapsed = Swift.max(0, Swift.min(now, window.end) - window.start)
        let breached = isBreached(target: target, windowMs: w, consumedMs: consumedMs)
        let burn: Double
        if consumedLastHourMs <= 0 {
            burn = 0
        } else if allowed <= 0 {
            burn = cap
        } else {
            burn = Swift.min(cap, Double(consumedLastHourMs) * Double(w) / (Double(allowed) * 3_600_000))
        }
        let fraction: Double
        if allowed <= 0 {
            fraction = consumedMs <= 0 ? 0 : cap
        } else {
            fraction = Swift.min(cap, Double(consumedMs) / Double(allowed))
        }
        let exhaustion = (accruing && !breached)
            ? breachTime(allowedMs: allowed, consumedMs: consumedMs, now: now, window: window) : nil
        return BudgetFigures(
            windowMs: w,
            allowedMs: allowed,
            consumedMs: consumedMs,
            remainingMs: allowed - consumedMs,
            elapsedMs: elapsed,
            availabilitySoFarE4: availability(consumedMs: consumedMs, over: elapsed),
            periodAvailabilityE4: availability(consumedMs: consumedMs, over: w),
            breached: breached,
            burnRate: burn,
            projectedExhaustion: exhaustion,
            consumedFraction: fraction)
    }

    /// Thresholds (percent of budget, e.g. [50, 75, 90]) crossed, ascending:
    /// exact `consumed × 100 >= allowed × threshold`. Nothing is crossed while consumed is 0.
    public static func crossedThresholds(_ thresholds: [Int], consumedMs: Int64, allowedMs: Int64) -> [Int] {
        guard consumedMs > 0 else { return [] }
        return Array(Set(thresholds)).sorted().filter {
            SLAWideMath.compareProducts(consumedMs, 100, allowedMs, Int64($0)) >= 0
        }
    }

    /// When consumption reaches the allowed budget if downtime accrues at full rate from `now`
    /// (or from window.start if later), having already consumed `consumedMs`:
    /// `max(now, window.start) + (allowed − consumed)`. nil if it is already exceeded
    /// (consumed > allowed) or the instant is not before window.end.
    public static func breachTime(allowedMs: Int64, consumedMs: Int64, now: Int64, window: Interval) -> Int64? {
        guard consumedMs <= allowedMs else { return nil }
        let from = Swift.max(now, window.start)
        let (t, overflow) = from.addingReportingOverflow(allowedMs - consumedMs)
        guard !overflow, t < window.end else { return nil }
        return t
    }

    /// `breachTime` with the budget derived from `target` and `window`.
    public static func breachTime(target: PercentE4, window: Interval, now: Int64, consumedMs: Int64) -> Int64? {
        breachTime(allowedMs: allowedMs(target: target, windowMs: window.length), consumedMs: consumedMs,
                   now: now, window: window)
    }
}

/// An SRE-workbook multiwindow burn-rate alert rule: fires when the burn rate over both the `long`
/// and the `short` window (ms, ending now) is at or above `factor`.
public struct BurnRateRule: Hashable, Sendable {
    public var long: Int64
    public var short: Int64
    public var factor: Double

    public init(long: Int64, short: Int64, factor: Double) {
        self.long = long
        self.short = short
        self.factor = factor
    }

    /// (1h, 5m, 14.4) and (6h, 30m, 6).
    public static let workbook: [BurnRateRule] = [
        BurnRateRule(long: 3_600_000, short: 300_000, factor: 14.4),
        BurnRateRule(long: 21_600_000, short: 1_800_000, factor: 6),
    ]
}

/// Burn rates over trailing windows.
public enum BurnRate {
    /// Burn rate over [now − w, now) = weighted downtime in that window / (w × (1 − target)).
    /// 0 when nothing was consumed; capped at 1e6 (also when the budget is 0).
    public static func rate(_ entries: [WeightedInterval], exclusions: [Interval], now: Int64, window w: Int64,
                            target: PercentE4) -> Double {
        guard w > 0 else { return 0 }
        let consumed = Downtime.consumed(entries, exclusions: exclusions, within: Interval(now - w, now))
        guard consumed > 0 else { return 0 }
        let t = Swift.min(Swift.max(target.value, 0), 1_000_000)
        let denom = Double(w) * Double(1_000_000 - t)
        guard denom > 0 else { return Budget.cap }
        return Swift.min(Budget.cap, Double(consumed) * 1_000_000 / denom)
    }

    /// The rules that fire: both long and short windows at or above the factor.
    public static func firing(_ rules: [BurnRateRule], entries: [WeightedInterval], exclusions: [Interval],
                              now: Int64, target: PercentE4) -> [BurnRateRule] {
        rules.filter { r in
            rate(entries, exclusions: exclusions, now: now, window: r.long, target: target) >= r.factor
                && rate(entries, exclusions: exclusions, now: now, window: r.short, target: target) >= r.factor
        }
    }
}
