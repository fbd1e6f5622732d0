import Foundation

/// Facts about an incident that drive the severity advice.
public struct SeverityInputs: Hashable, Sendable {
    /// Direction of the impact over the recent past.
    public enum Trend: String, Hashable, Sendable {
        case rising, stable, falling
    }

    /// 1 (SEV1, worst) ... 5; 0 = unspecified.
    public var declared: Int
    public var customersHit: Int64
    /// Share = customersHit / customerBase (0 when the base is 0).
    public var customerBase: Int64
    public var reportingCustomers: Int64
    public var enterpriseHit: Int64
    public var whiteGloveHit: Int64
    public var slasAtRisk: Int64
    public var slasBreached: Int64
    public var creditExposureMinor: Int64
    public var currency: String
    public var trend: Trend

    public init(declared: Int = 0, customersHit: Int64 = 0, customerBase: Int64 = 0, reportingCustomers: Int64 = 0,
                enterpriseHit: Int64 = 0, whiteGloveHit: Int64 = 0, slasAtRisk: Int64 = 0, slasBreached: Int64 = 0,
                creditExposureMinor: Int64 = 0, currency: String = "EUR", trend: Trend = .stable) {
        self.declared = declared
        self.customersHit = customersHit
        self.customerBase = customerBase
        self.reportingCustomers = reportingCustomers
        self.enterpriseHit = enterpriseHit
        self.whiteGloveHit = whiteGloveHit
        self.slasAtRisk = slasAtRisk
        self.slasBreached = slasBreached
        self.creditExposureMinor = creditExposureMinor
        self.currency = currency
        self.trend = trend
    }
}

/// One reason behind an advice; positive weights push towards a more severe level.
public struct SeverityReasonOut: Hashable, Sendable {
    /// "affected_customers", "enterprise_affected", "white_glove_affected", "sla_breach_imminent",
    /// "sla_breached", "credit_exposure", "trend_worsening", "trend_improving".
    public var kind: String
    public var detail: String
    public var weight: Double

    public init(kind: String, detail: String, weight: Double) {
        self.kind = kind
        self.detail = detail
        self.weight = weight
    }
}

/// The recommended severity and how it relates to the declared one.
public struct SeverityAdvice: Hashable, Sendable {
    public enum Direction: String, Hashable, Sendable {
        case raise, keep, lower
    }

    /// 1 (SEV1, worst) ... 5.
    public var recommended: Int
    public var direction: Direction
    /// In [0.5, 1].
    public var confidence: Double
    /// Strongest |weight| first, ties by kind.
    public var reasons: [SeverityReasonOut]
}

/// Deterministic severity policy.
///
/// 1. Base level: the most severe level whose rule matches (share = customersHit / customerBase):
///
///    | level | any of                                                                               |
///    |-------|--------------------------------------------------------------------------------------|
///    | SEV1  | share >= 25%, whiteGloveHit >= 3, slasBreached >= 10, enterpriseHit >= 10             |
///    | SEV2  | share >= 5%, whiteGloveHit >= 1, slasAtRisk >= 10, enterpriseHit >= 3, slasBreached >= 1 |
///    | SEV3  | share >= 1%, customersHit >= 50, slasAtRisk >= 1                                      |
///    | SEV4  | customersHit >= 5                                                                     |
///    | SEV5  | otherwise                                                                             |
///
/// 2. Trend: `.rising` raises one level (not above SEV1); `.falling` lowers one level (not below SEV5)
///    only when slasAtRisk == 0 and slasBreached == 0.
/// 3. Direction vs declared: declared 0 (unspecified) -> raise; recommended < declared -> raise;
///    equal -> keep; otherwise lower.
/// 4. Confidence: r = (value / threshold) of the strongest matching rule of the base level (max over its rules),
///    confidence = min(1, 0.5 + 0.25 × log2(r)) (at the threshold 0.5, 2× -> 0.75, 4× -> 1).
///    For SEV5: 0.5 + 0.5 × (1 − customersHit / 5). A trend adjustment subtracts 0.1 (never below 0.5).
/// 5. Reasons (only for non-zero figures), weight = the level the figure alone reaches:
///    SEV1 1.0, SEV2 0.75, SEV3 0.5, SEV4 0.25, below 0.1; credit_exposure 0.2 (informational, no level);
///    trend_worsening +0.3, trend_improving −0.3. Reporting customers appear in the affected_customers detail.
public enum SeverityPolicy {
    struct Rule {
        let level: Int
        let value: Double
        let threshold: Double
        var matches: Bool { value >= threshold }
    }

    static func levelWeight(_ level: Int) -> Double {
        switch level {
        case 1: return 1.0
        case 2: return 0.75
        case 3: return 0.5
        case 4: return 0.25
        default: return 0.1
        }
    }

    /// The advice for `i`, exactly as in the policy table above.
    public static func advise(_ i: SeverityInputs) -> SeverityAdvice {
        let base = i.customerBase > 0 ? i.customerBase : 0
        // share in percent, for ratios only; the threshold tests are exact integer comparisons below.
        let sharePct = base > 0 ? Double(i.customersHit) * 100 / Double(base) : 0
        func shareAtLeast(_ pct: Int64) -> Bool {
            base > 0 && SLAWideMath.compareProducts(i.customersHit, 100, base, pct) >= 0
        }
        func rules(_ level: Int) -> [(Rule, Bool)] {
            switch level {
            case 1:
                return [(Rule(level: 1, value: sharePct, threshold: 25), shareAtLeast(25)),
                        (Rule(level: 1, value: Double(i.whiteGloveHit), threshold: 3), i.whiteGloveHit >= 3),
                        (Rule(level: 1, value: Double(i.slasBreached), threshold: 10), i.slasBreached >= 10),
                        (Rule(level: 1, value: Double(i.enterpriseHit), threshold: 10), i.enterpriseHit >= 10)]
            case 2:
                return [(Rule(level: 2, value: sharePct, threshold: 5), shareAtLeast(5)),
                        (Rule(level: 2, value: Double(i.whiteGloveHit), threshold: 1), i.whiteGloveHit >= 1),
                        (Rule(level: 2, value: Double(i.slasAtRisk), threshold: 10), i.slasAtRisk >= 10),
                        (Rule(level: 2, value: Double(i.enterpriseHit), threshold: 3), i.enterpriseHit >= 3),
                        (Rule(level: 2, value: Double(i.slasBreached), threshold: 1), i.slasBreached >= 1)]
            case 3:
                return [(Rule(level: 3, value: sharePct, threshold: 1), shareAtLeast(1)),
                        (Rule(level: 3, value: Double(i.customersHit), threshold: 50), i.customersHit >= 50),
                        (Rule(level: 3, value: Double(i.slasAtRisk), threshold: 1), i.slasAtRisk >= 1)]
            case 4:
                return [(Rule(level: 4, value: Double(i.customersHit), threshold: 5), i.customersHit >= 5)]
            default:
                return []
            }
        }

        var level = 5
        var confidence = 0.5 + 0.5 * (1 - Swift.min(1, Swift.max(0, Double(i.customersHit)) / 5))
        for l in 1...4 {
            let matched = rules(l).filter { $0.1 }.map { $0.0 }
            if !matched.isEmpty {
                level = l
                let r = matched.map { $0.value / $0.threshold }.max() ?? 1
                confidence = Swift.min(1, 0.5 + 0.25 * log2(Swift.max(1, r)))
                break
            }
        }

        var recommended = level
        if i.trend == .rising && level > 1 {
            recommended = level - 1
        } else if i.trend == .falling && i.slasAtRisk == 0 && i.slasBreached == 0 && level < 5 {
            recommended = level + 1
        }
        if recommended != level { confidence = Swift.max(0.5, confidence - 0.1) }

        let direction: SeverityAdvice.Direction
        if i.declared <= 0 || recommended < i.declared {
            direction = .raise
        } else if recommended == i.declared {
            direction = .keep
        } else {
            direction = .lower
        }

        return SeverityAdvice(recommended: recommended, direction: direction, confidence: confidence,
                              reasons: reasons(i, shareAtLeast: shareAtLeast))
    }

    static func reasons(_ i: SeverityInputs, shareAtLeast: (Int64) -> Bool) -> [SeverityReasonOut] {
        var out: [SeverityReasonOut] = []
        if i.customersHit > 0 {
            var detail = "\(grouped(i.customersHit)) "
            if i.customerBase > 0 {
                let shareE2 = SLAWideMath.mulDivFloor(i.customersHit, 10_000, i.customerBase)
                detail += "of \(grouped(i.customerBase)) customers hit (\(fixed2(shareE2))%)"
            } else {
                detail += i.customersHit == 1 ? "customer hit" : "customers hit"
            }
            if i.reportingCustomers > 0 { detail += ", \(grouped(i.reportingCustomers)) reporting" }
            let l = shareAtLeast(25) ? 1 : shareAtLeast(5) ? 2 : (shareAtLeast(1) || i.customersHit >= 50) ? 3
                : i.customersHit >= 5 ? 4 : 5
            out.append(.init(kind: "affected_customers", detail: detail, weight: levelWeight(l)))
        }
        if i.enterpriseHit > 0 {
            let l = i.enterpriseHit >= 10 ? 1 : i.enterpriseHit >= 3 ? 2 : 5
            out.append(.init(kind: "enterprise_affected",
                             detail: "\(grouped(i.enterpriseHit)) enterprise customer\(i.enterpriseHit == 1 ? "" : "s") hit",
                             weight: levelWeight(l)))
        }
        if i.whiteGloveHit > 0 {
            let l = i.whiteGloveHit >= 3 ? 1 : 2
            out.append(.init(kind: "white_glove_affected",
                             detail: "\(grouped(i.whiteGloveHit)) white-glove customer\(i.whiteGloveHit == 1 ? "" : "s") hit",
                             weight: levelWeight(l)))
        }
        if i.slasAtRisk > 0 {
            let l = i.slasAtRisk >= 10 ? 2 : 3
            out.append(.init(kind: "sla_breach_imminent",
                             detail: "\(grouped(i.slasAtRisk)) SLA\(i.slasAtRisk == 1 ? "" : "s") at risk of breach",
                             weight: levelWeight(l)))
        }
        if i.slasBreached > 0 {
            let l = i.slasBreached >= 10 ? 1 : 2
            out.append(.init(kind: "sla_breached",
                             detail: "\(grouped(i.slasBreached)) SLA\(i.slasBreached == 1 ? "" : "s") breached",
                             weight: levelWeight(l)))
        }
        if i.creditExposureMinor > 0 {
            out.append(.init(kind: "credit_exposure",
                             detail: "credit exposure \(Currency.format(minor: i.creditExposureMinor, code: i.currency))",
                             weight: 0.2))
        }
        switch i.trend {
        case .rising: out.append(.init(kind: "trend_worsening", detail: "impact is rising", weight: 0.3))
        case .falling: out.append(.init(kind: "trend_improving", detail: "impact is falling", weight: -0.3))
        case .stable: break
        }
        return out.sorted { a, b in
            abs(a.weight) != abs(b.weight) ? abs(a.weight) > abs(b.weight) : a.kind < b.kind
        }
    }

    /// 10000 -> "10,000".
    static func grouped(_ v: Int64) -> String {
        (v < 0 ? "-" : "") + Currency.groupDigits(v.magnitude)
    }

    /// 412 -> "4.12".
    static func fixed2(_ e2: Int64) -> String {
        let f = String(e2 % 100)
        return "\(e2 / 100)." + (f.count < 2 ? "0" + f : f)
    }
}
