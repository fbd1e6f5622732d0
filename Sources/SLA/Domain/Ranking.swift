import Foundation

/// What is at stake on one service while it is impaired.
public struct ServiceExposure: Hashable, Sendable {
    public var service: String
    public var customersAtRisk: Int64
    public var enterpriseAtRisk: Int64
    public var whiteGloveAtRisk: Int64
    /// Credit exposure in minor units of `currency`.
    public var exposureMinor: Int64
    public var currency: String
    /// The earliest SLA breach instant among the service's contracts, if any.
    public var earliestBreach: Int64?
    public var now: Int64

    public init(service: String, customersAtRisk: Int64 = 0, enterpriseAtRisk: Int64 = 0, whiteGloveAtRisk: Int64 = 0,
                exposureMinor: Int64 = 0, currency: String = "EUR", earliestBreach: Int64? = nil, now: Int64) {
        self.service = service
        self.customersAtRisk = customersAtRisk
        self.enterpriseAtRisk = enterpriseAtRisk
        self.whiteGloveAtRisk = whiteGloveAtRisk
        self.exposureMinor = exposureMinor
        self.currency = currency
        self.earliestBreach = earliestBreach
        self.now = now
    }
}

/// A service in restoration order.
public struct RankedService: Hashable, Sendable {
    /// 1-based.
    public var rank: Int
    public var exposure: ServiceExposure
    public var score: Double
    public var reasons: [String]
}

/// Which impaired service to restore first.
///
/// score = (exposure in major units + 50 × white-glove + 20 × enterprise + 5 × customers at risk) × urgency,
/// urgency = 1 + 24h / max(earliestBreach − now, 5 min), or 1 without a breach instant (a breach already due
/// counts as 5 min). Exposure is converted with the currency's exponent and NOT FX-converted.
/// Order: score descending, ties by service name ascending.
public enum RestorationRanking {
    static let minLead: Int64 = 300_000
    static let day: Double = 86_400_000

    /// The score described above.
    public static func score(_ e: ServiceExposure) -> Double {
        let major = Double(Swift.max(0, e.exposureMinor)) / Double(Currency.pow10(Currency.minorUnitExponent(e.currency)))
        let base = major + 50 * Double(Swift.max(0, e.whiteGloveAtRisk)) + 20 * Double(Swift.max(0, e.enterpriseAtRisk))
            + 5 * Double(Swift.max(0, e.customersAtRisk))
        guard let b = e.earliestBreach else { return base }
        let lead = Swift.max(b - e.now, minLead)
        return base * (1 + day / Double(lead))
    }

    /// Readable reasons, e.g. "3 white-glove customers at risk", "first breach in 40m", "credit exposure 1,200.00 EUR".
    public static func reasons(_ e: ServiceExposure) -> [String] {
        func count(_ n: Int64, _ what: String) -> String {
            "\(Currency.groupDigits(n.magnitude)) \(what) customer\(n == 1 ? "" : "s") at risk"
        }
        var out: [String] = []
        if e.whiteGloveAtRisk > 0 { out.append(count(e.whiteGloveAtRisk, "white-glove")) }
        if e.enterpriseAtRisk > 0 { out.append(count(e.enterpriseAtRisk, "enterprise")) }
        if e.customersAtRisk > 0 {
            out.append("\(Currency.groupDigits(e.customersAtRisk.magnitude)) customer\(e.customersAtRisk == 1 ? "" : "s") at risk")
        }
        if let b = e.earliestBreach {
            out.append(b <= e.now ? "SLA breach already due" : "first breach in \(DurationText.format(ms: b - e.now))")
        }
        if e.exposureMinor > 0 {
            out.append("credit exposure \(Currency.format(minor: e.exposureMinor, code: e.currency))")
        }
        return out
    }

    /// Services in restoration order (score descending, then name).
    public static func rank(_ s: [ServiceExposure]) -> [RankedService] {
        let scored = s.map { ($0, score($0)) }.sorted { a, b in
            a.1 != b.1 ? a.1 > b.1 : a.0.service < b.0.service
        }
        return scored.enumerated().map { idx, p in
            RankedService(rank: idx + 1, exposure: p.0, score: p.1, reasons: reasons(p.0))
        }
    }
}
