import CorrelationDomain
import Foundation
import LiaisonRuntime
import LiaisonAPI
import SwiftProtobuf

/// Conversions between the API messages and the domain types.
enum Convert {
    /// The start of an open window ("since the beginning"): the first instant the API and
    /// storage both hold (Foundation's `distantPast` is not storable).
    static let openStart = Date(timeIntervalSince1970: Double(RequestBounds.minTimestampSeconds))

    static func tierName(_ tier: Liaison_Common_V1_Tier) -> String {
        switch tier {
        case .free: "free"
        case .standard: "standard"
        case .business: "business"
        case .enterprise: "enterprise"
        default: ""
        }
    }

    /// The domain attributes of an API snapshot.
    static func attributes(_ a: Liaison_Common_V1_CustomerAttributes) -> CustomerAttributes {
        CustomerAttributes(
            accountNumber: a.accountNumber, accountPartition: a.accountPartition, region: a.region,
            country: a.country, tier: tierName(a.tier), whiteGlove: a.whiteGlove, features: a.features,
            platforms: a.platforms.map { PlatformUsage(platform: $0.canonicalPlatform, clientVersion: $0.clientVersion) })
    }

    /// Sorted text keys (1-D and 2-D) of an API snapshot.
    static func keys(_ a: Liaison_Common_V1_CustomerAttributes, maxDepth: Int = 2) -> [String] {
        SegmentExtractor.keys(for: attributes(a), maxDepth: maxDepth).map(\.description).sorted()
    }

    static func segment(_ key: SegmentKey) -> Liaison_Common_V1_Segment {
        var s = Liaison_Common_V1_Segment()
        s.conditions = key.conditions.map { c in
            var d = Liaison_Common_V1_DimensionValue()
            d.dimension = Liaison_Common_V1_Dimension(rawValue: c.dimension.rawValue) ?? .unspecified
            d.value = c.value
            return d
        }
        return s
    }

    static func timestamp(_ d: Date) -> Google_Protobuf_Timestamp { Google_Protobuf_Timestamp(date: d) }

    static func verdict(_ v: SegmentVerdict) -> Liaison_Correlation_V1_Verdict {
        switch v {
        case .affected: .affected
        case .notAffected: .notAffected
        case .inconclusive: .inconclusive
        }
    }

    static func entry(_ e: BlastRadiusEntry) -> Liaison_Correlation_V1_BlastRadiusEntry {
        var out = Liaison_Correlation_V1_BlastRadiusEntry()
        out.segment = segment(e.segment)
        out.depth = Int32(e.depth)
        out.observed = Int64(e.observed)
        out.expected = e.expected
        out.population = Int64(e.population)
        out.lift = e.lift.isFinite ? e.lift : 0
        out.liftLower = e.liftLower
        out.liftUpper = e.liftUpper.isFinite ? e.liftUpper : 0
        out.pValue = e.pValue
        out.adjustedPValue = e.adjustedPValue
        out.verdict = verdict(e.verdict)
        if let by = e.explainedBy { out.explainedBy = segment(by) }
        out.shareOfReports = e.shareOfReports
        return out
    }

    static func trend(_ t: Trend) -> Liaison_Correlation_V1_Trend {
        var out = Liaison_Correlation_V1_Trend()
        switch t.verdict {
        case .worsening: out.verdict = .worsening
        case .improving: out.verdict = .improving
        case .stable: out.verdict = .stable
        case .insufficientData: out.verdict = .insufficientData
        }
        out.slopePerHour = t.slopePerHour.isFinite ? t.slopePerHour : 0
        out.pValue = t.pValue
        out.bucketsConsidered = Int32(t.bucketsConsidered)
        return out
    }

    static func correction(_ c: Liaison_Correlation_V1_Correction) -> Correction {
        switch c {
        case .holm: .holm
        case .none: .none
        default: .benjaminiHochberg
        }
    }

    static func correction(_ c: Correction) -> Liaison_Correlation_V1_Correction {
        switch c {
        case .holm: .holm
        case .none: .none
        default: .benjaminiHochberg
        }
    }

    static func bytes<M: SwiftProtobuf.Message>(_ m: M) throws -> [UInt8] {
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        return try m.serializedBytes(options: options)
    }

    /// Stable shard of a customer for the sharded counters.
    static func shard(_ customer: String, shards: Int = 8) -> Int {
        var h: UInt32 = 2_166_136_261
        for b in customer.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return Int(h % UInt32(shards))
    }
}
