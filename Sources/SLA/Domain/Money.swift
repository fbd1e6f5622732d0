import Foundation

/// ISO 4217 minor units and integer money conversions.
public enum Currency {
    private static let zeroDecimal: Set<String> = [
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
        "XAF", "XOF", "XPF",
    ]
    private static let threeDecimal: Set<String> = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"]
    private static let fourDecimal: Set<String> = ["CLF", "UYW"]

    /// ISO 4217 exponent: 0 for JPY, KRW, VND, CLP, ISK, UGX, ...; 3 for BHD, KWD, OMR, JOD, TND, IQD, LYD;
    /// 4 for CLF, UYW; 2 otherwise. Case-insensitive.
    public static func minorUnitExponent(_ code: String) -> Int {
        let c = code.uppercased()
        if zeroDecimal.contains(c) { return 0 }
        if threeDecimal.contains(c) { return 3 }
        if fourDecimal.contains(c) { return 4 }
        return 2
    }

    static func pow10(_ e: Int) -> Int64 {
        var p: Int64 = 1
        for _ in 0..<e { p *= 10 }
        return p
    }

    /// Money (units, nanos; google.type.Money semantics) -> minor units; nil if not an exact number of minor
    /// units, if units and nanos have opposite signs, |nanos| >= 1e9, or out of the Int64 range.
    public static func minorUnits(units: Int64, nanos: Int32, code: String) -> Int64? {
        guard abs(Int64(nanos)) < 1_000_000_000 else { return nil }
        if (units > 0 && nanos < 0) || (units < 0 && nanos > 0) { return nil }
        let e = minorUnitExponent(code)
        let nanosPerMinor = pow10(9 - e)
        guard Int64(nanos) % nanosPerMinor == 0 else { return nil }
        let (u, o1) = units.multipliedReportingOverflow(by: pow10(e))
        guard !o1 else { return nil }
        let (r, o2) = u.addingReportingOverflow(Int64(nanos) / nanosPerMinor)
        return o2 ? nil : r
    }

    /// Minor units -> Money (units, nanos), both with the sign of `minor`.
    public static func money(minor: Int64, code: String) -> (units: Int64, nanos: Int32) {
        let e = minorUnitExponent(code)
        let p = pow10(e)
        return (minor / p, Int32((minor % p) * pow10(9 - e)))
    }

    /// 1234567 -> "1,234,567".
    static func groupDigits(_ v: UInt64) -> String {
        let whole = String(v)
        var grouped = ""
        for (i, ch) in whole.enumerated() {
            if i > 0 && (whole.count - i) % 3 == 0 { grouped.append(",") }
            grouped.append(ch)
        }
        return grouped
    }

    /// "2,000.00 EUR", "150 JPY", "-12.34 USD", "1.234 BHD".
    public static func format(minor: Int64, code: String) -> String {
        let e = minorUnitExponent(code)
        let p = UInt64(pow10(e))
        let mag = minor.magnitude
        var s = (minor < 0 ? "-" : "") + groupDigits(mag / p)
        if e > 0 {
            let f = String(mag % p)
            s += "." + String(repeating: "0", count: e - f.count) + f
        }
        return s + " " + code.uppercased()
    }
}

/// One step of a credit schedule: availability strictly below `availabilityBelow` earns `creditPercentE2`.
public struct CreditStep: Hashable, Sendable {
    public var availabilityBelow: PercentE4
    /// Credit percent × 100: 10% -> 1000.
    public var creditPercentE2: Int64

    public init(availabilityBelow: PercentE4, creditPercentE2: Int64) {
        self.availabilityBelow = availabilityBelow
        self.creditPercentE2 = creditPercentE2
    }

    /// Both rounded once from the Doubles (to e4 and e2).
    public init(availabilityBelowPercent: Double, creditPercent: Double) {
        let c = (creditPercent * 100).rounded()
        self.init(availabilityBelow: PercentE4(availabilityBelowPercent),
                  creditPercentE2: c.isFinite ? Int64(Swift.min(Swift.max(c, -1e15), 1e15)) : 0)
    }
}

/// Service-credit arithmetic in integer minor units.
public enum Credits {
    /// The step that applies: the highest credit among steps whose threshold the period availability is below,
    /// EXACT: consumed × 1_000_000 > window × (1_000_000 − below.value). Ties: the lower threshold.
    public static func applicableStep(consumedMs: Int64, windowMs: Int64, steps: [CreditStep]) -> CreditStep? {
        guard windowMs > 0, consumedMs > 0 else { return nil }
        var best: CreditStep?
        for s in steps where Budget.isBreached(target: s.availabilityBelow, windowMs: windowMs, consumedMs: consumedMs) {
            if let b = best {
                if s.creditPercentE2 > b.creditPercentE2
                    || (s.creditPercentE2 == b.creditPercentE2 && s.availabilityBelow < b.availabilityBelow) {
                    best = s
                }
            } else {
                best = s
            }
        }
        return best
    }

    /// The highest credit (percent × 100) among steps whose threshold the period availability is below. 0 when none.
    public static func percentE2(consumedMs: Int64, windowMs: Int64, steps: [CreditStep]) -> Int64 {
        Swift.max(0, applicableStep(consumedMs: consumedMs, windowMs: windowMs, steps: steps)?.creditPercentE2 ?? 0)
    }

    /// fee × percentE2 / 10_000, rounded half up to the minor unit, then capped so that
    /// alreadyCredited + amount <= floor(fee × capE2 / 10_000); never negative.
    public static func amount(feeMinor: Int64, percentE2: Int64, capPercentE2: Int64, alreadyCreditedMinor: Int64) -> Int64 {
        guard feeMinor > 0, percentE2 > 0 else { return 0 }
        let raw = SLAWideMath.mulDivHalfUp(feeMinor, percentE2, 10_000)
        let cap = SLAWideMath.mulDivFloor(feeMinor, Swift.max(0, capPercentE2), 10_000)
        let room = Swift.max(0, cap - Swift.max(0, alreadyCreditedMinor))
        return Swift.max(0, Swift.min(raw, room))
    }

    /// The fee of a partial period (contract in force for only part of it): fee × measured / period, half up.
    /// `measured` is clamped to 0...period; 0 when the period is empty.
    public static func proratedFee(feeMinor: Int64, measuredMs: Int64, periodMs: Int64) -> Int64 {
        guard periodMs > 0 else { return 0 }
        return SLAWideMath.mulDivHalfUp(feeMinor, Swift.min(Swift.max(measuredMs, 0), periodMs), periodMs)
    }

    /// Human text, e.g. "availability 99.62% < 99.9% -> 10% of 2,000.00 EUR = 200.00 EUR (cap 100%)".
    /// Availability is shown floored to 0.01% (so it never looks better than it is); when the cap cuts the
    /// amount: "... = 100.00 EUR, capped to 50.00 EUR (cap 30%, 250.00 EUR already credited)";
    /// without credit: "availability 99.95% >= 99.9% -> no credit".
    public static func calculation(consumedMs: Int64, windowMs: Int64, steps: [CreditStep], feeMinor: Int64,
                                   currency: String, capPercentE2: Int64 = 10_000,
                                   alreadyCreditedMinor: Int64 = 0) -> String {
        let avail = Budget.availability(consumedMs: consumedMs, over: windowMs).value / 100  // e2, floored
        let availText = "availability " + PercentE4.format(avail, scale: 2) + "%"
        guard let step = applicableStep(consumedMs: consumedMs, windowMs: windowMs, steps: steps),
              step.creditPercentE2 > 0 else {
            if let lowest = steps.map(\.availabilityBelow).max() {
                return "\(availText) >= \(lowest) -> no credit"
            }
            return "\(availText) -> no credit"
        }
        let pct = PercentE4.format(step.creditPercentE2, scale: 2) + "%"
        let raw = SLAWideMath.mulDivHalfUp(Swift.max(0, feeMinor), step.creditPercentE2, 10_000)
        let final = amount(feeMinor: feeMinor, percentE2: step.creditPercentE2, capPercentE2: capPercentE2,
                           alreadyCreditedMinor: alreadyCreditedMinor)
        let capText = PercentE4.format(capPercentE2, scale: 2) + "%"
        var s = "\(availText) < \(step.availabilityBelow) -> \(pct) of \(Currency.format(minor: feeMinor, code: currency))"
            + " = \(Currency.format(minor: raw, code: currency))"
        if final < raw {
            s += ", capped to \(Currency.format(minor: final, code: currency)) (cap \(capText)"
            if alreadyCreditedMinor > 0 {
                s += ", \(Currency.format(minor: alreadyCreditedMinor, code: currency)) already credited"
            }
            s += ")"
        } else {
            s += " (cap \(capText))"
        }
        return s
    }
}
