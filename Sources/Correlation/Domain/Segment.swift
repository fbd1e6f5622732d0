// Segments of the customer base: the unit of blast-radius analysis.
//
// Plain Swift mirrors of `liaison.common.v1.Dimension` / `DimensionValue` / `Segment`; the handler
// layer maps them to and from the generated protobuf types.

/// A dimension along which the customer base can be split (mirrors `liaison.common.v1.Dimension`;
/// the raw values are the proto enum numbers).
public enum SegmentDimension: Int, Sendable, Hashable, Comparable, CaseIterable, CustomStringConvertible {
    case region = 1
    case country = 2
    case accountPartition = 3
    case platform = 4
    case clientVersion = 5
    case clientVersionMinor = 6
    case feature = 7
    case tier = 8
    case service = 9

    /// Canonical lower-case name without prefix, as used in the text form of a segment
    /// (e.g. `"account_partition"`).
    public var name: String {
        switch self {
        case .region: "region"
        case .country: "country"
        case .accountPartition: "account_partition"
        case .platform: "platform"
        case .clientVersion: "client_version"
        case .clientVersionMinor: "client_version_minor"
        case .feature: "feature"
        case .tier: "tier"
        case .service: "service"
        }
    }

    /// Parses a canonical name (see ``name``).
    public init?(name: String) {
        guard let match = SegmentDimension.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }

    /// Whether one customer can hold several values of this dimension at once (several features,
    /// several platforms and client versions, several services). Segments of a multi-valued
    /// dimension overlap; segments of a single-valued dimension are disjoint.
    public var isMultiValued: Bool {
        switch self {
        case .platform, .clientVersion, .clientVersionMinor, .feature, .service: true
        case .region, .country, .accountPartition, .tier: false
        }
    }

    public var description: String { name }

    public static func < (lhs: SegmentDimension, rhs: SegmentDimension) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One condition of a segment: a dimension equal to a value (mirrors `DimensionValue`).
public struct SegmentCondition: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The dimension.
    public var dimension: SegmentDimension
    /// The value in the canonical form documented on ``SegmentDimension`` (e.g. `"eu-south"`, `"5.1"`).
    public var value: String

    public init(_ dimension: SegmentDimension, _ value: String) {
        self.dimension = dimension
        self.value = value
    }

    /// `"dimension=value"`.
    public var description: String { "\(dimension.name)=\(value)" }

    /// Sorted by dimension, then value (the server order of `Segment.conditions`).
    public static func < (lhs: SegmentCondition, rhs: SegmentCondition) -> Bool {
        lhs.dimension != rhs.dimension ? lhs.dimension < rhs.dimension : lhs.value < rhs.value
    }
}

/// A segment of depth 1 or 2: the conjunction of one or two conditions, kept sorted, hashable and
/// cheap to hash (the conditions are stored inline, no array allocation).
///
/// Depth is capped at 2 because the service keeps live per-incident counts for every 1-D and 2-D
/// key; deeper interactions are out of scope for the aggregate-based engine.
public struct SegmentKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The first condition in sort order.
    public let first: SegmentCondition
    /// The second condition for a 2-D segment, `nil` for a 1-D segment.
    public let second: SegmentCondition?

    /// A 1-D segment.
    public init(_ condition: SegmentCondition) {
        first = condition
        second = nil
    }

    /// A 1-D segment from a dimension and value.
    public init(_ dimension: SegmentDimension, _ value: String) {
        self.init(SegmentCondition(dimension, value))
    }

    /// A 2-D segment; the conditions are sorted. Two equal conditions collapse to a 1-D segment.
    public init(_ a: SegmentCondition, _ b: SegmentCondition) {
        if a == b {
            first = a
            second = nil
        } else if a < b {
            first = a
            second = b
        } else {
            first = b
            second = a
        }
    }

    /// A segment from 1 or 2 conditions in any order; `nil` for 0 or more than 2.
    public init?(conditions: [SegmentCondition]) {
        switch conditions.count {
        case 1: self.init(conditions[0])
        case 2: self.init(conditions[0], conditions[1])
        default: return nil
        }
    }

    /// Parses the canonical text form, e.g. `"region=eu-south&platform=android"`.
    public init?(parsing text: String) {
        var conditions: [SegmentCondition] = []
        for part in text.split(separator: "&") {
            guard let eq = part.firstIndex(of: "=") else { return nil }
            guard let dimension = SegmentDimension(name: String(part[..<eq])) else { return nil }
            let value = String(part[part.index(after: eq)...])
            guard !value.isEmpty else { return nil }
            conditions.append(SegmentCondition(dimension, value))
        }
        self.init(conditions: conditions)
    }

    /// The conditions, sorted by dimension then value.
    public var conditions: [SegmentCondition] {
        if let second { [first, second] } else { [first] }
    }

    /// Number of conditions (1 or 2).
    public var depth: Int { second == nil ? 1 : 2 }

    /// For a 2-D segment, its two 1-D parents; empty for a 1-D segment.
    public var parents: [SegmentKey] {
        guard let second else { return [] }
        return [SegmentKey(first), SegmentKey(second)]
    }

    /// Canonical text form: conditions joined by `&`, e.g. `"region=eu-south&platform=android"`.
    public var description: String {
        if let second { "\(first)&\(second)" } else { first.description }
    }

    /// Depth first, then conditions.
    public static func < (lhs: SegmentKey, rhs: SegmentKey) -> Bool {
        if lhs.depth != rhs.depth { return lhs.depth < rhs.depth }
        if lhs.first != rhs.first { return lhs.first < rhs.first }
        guard let l = lhs.second, let r = rhs.second else { return false }
        return l < r
    }
}

/// Counts per segment: customers of the population baseline, or distinct reporting customers.
public typealias SegmentCounts = [SegmentKey: Int]
