// From one customer's attributes to the segment keys the customer belongs to.

/// One platform a customer uses and the client version on it.
public struct PlatformUsage: Sendable, Hashable {
    /// Canonical platform name, lower case (e.g. `"android"`, `"ios"`, `"web"`).
    public var platform: String
    /// Client version, e.g. `"5.1.3"`; empty when unknown.
    public var clientVersion: String

    public init(platform: String, clientVersion: String) {
        self.platform = platform
        self.clientVersion = clientVersion
    }
}

/// The attributes of one customer that the blast radius splits on (a plain mirror of
/// `liaison.common.v1.CustomerAttributes`).
public struct CustomerAttributes: Sendable, Hashable {
    /// Account number, e.g. `"1048576"`.
    public var accountNumber: String
    /// Explicit account partition; when empty the extractor derives it from ``accountNumber``.
    public var accountPartition: String
    /// Region, e.g. `"eu-south"`.
    public var region: String
    /// Country, ISO 3166-1 alpha-2, e.g. `"IT"`.
    public var country: String
    /// Tier name, lower case (e.g. `"enterprise"`).
    public var tier: String
    /// White-glove service (not a blast-radius dimension; carried for the callers' convenience).
    public var whiteGlove: Bool
    /// Enabled features, e.g. `["teapot-customization"]`.
    public var features: [String]
    /// Platforms used, with their client versions.
    public var platforms: [PlatformUsage]

    public init(
        accountNumber: String = "", accountPartition: String = "", region: String = "",
        country: String = "", tier: String = "", whiteGlove: Bool = false,
        features: [String] = [], platforms: [PlatformUsage] = []
    ) {
        self.accountNumber = accountNumber
        self.accountPartition = accountPartition
        self.region = region
        self.country = country
        self.tier = tier
        self.whiteGlove = whiteGlove
        self.features = features
        self.platforms = platforms
    }
}

/// Turns a customer's attributes into the 1-D and 2-D segment keys the customer belongs to, so the
/// population baseline and the per-incident reporter counts can be kept as aggregates.
///
/// Rules (they must be the same for the population and for reporters, so both sides should use
/// this type):
/// - empty attribute values produce no condition;
/// - account partition: ``CustomerAttributes/accountPartition`` if set, else the leading
///   `partitionDigits` digits of the account number (non-digits are skipped), e.g. `"1"`;
/// - client version minor: the first two dot-separated components, `"5.1"` from `"5.1.3"`;
/// - multi-valued dimensions (features, platforms, versions) yield one condition per distinct
///   value, capped at `maxValuesPerDimension` values (lowest in sort order kept) so one customer
///   cannot explode the key space;
/// - 2-D keys pair conditions of *different* dimensions only (set semantics: a customer with
///   `ios 5.1.3` and `android 5.0.2` is in `platform=android & client_version_minor=5.1`). Pairs of
///   the same dimension (feature x feature) are skipped.
public enum SegmentExtractor {
    /// Default number of leading digits of the account number that form its partition.
    public static let defaultPartitionDigits = 1
    /// Default cap on the values of one multi-valued dimension per customer.
    public static let defaultMaxValuesPerDimension = 16

    /// The distinct conditions (depth-1 segments) of one customer, sorted.
    public static func conditions(
        for attributes: CustomerAttributes,
        partitionDigits: Int = defaultPartitionDigits,
        maxValuesPerDimension: Int = defaultMaxValuesPerDimension
    ) -> [SegmentCondition] {
        var result: [SegmentCondition] = []
        if !attributes.region.isEmpty { result.append(.init(.region, attributes.region)) }
        if !attributes.country.isEmpty { result.append(.init(.country, attributes.country)) }
        let partition = attributes.accountPartition.isEmpty
            ? accountPartition(of: attributes.accountNumber, digits: partitionDigits)
            : attributes.accountPartition
        if !partition.isEmpty { result.append(.init(.accountPartition, partition)) }
        if !attributes.tier.isEmpty { result.append(.init(.tier, attributes.tier)) }

        func capped(_ values: [String]) -> [String] {
            let distinct = Array(Set(values.filter { !$0.isEmpty })).sorted()
            return Array(distinct.prefix(max(0, maxValuesPerDimension)))
        }
        for feature in capped(attributes.features) { result.append(.init(.feature, feature)) }
        for platform in capped(attributes.platforms.map(\.platform)) {
            result.append(.init(.platform, platform))
        }
        let versions = capped(attributes.platforms.map(\.clientVersion))
        for version in versions { result.append(.init(.clientVersion, version)) }
        for minor in capped(versions.map { minorVersion(of: $0) }) {
            result.append(.init(.clientVersionMinor, minor))
        }
        return result.sorted()
    }

    /// All 1-D and (when `maxDepth >= 2`) 2-D keys one customer belongs to.
    public static func keys(
        for attributes: CustomerAttributes,
        maxDepth: Int = 2,
        partitionDigits: Int = defaultPartitionDigits,
        maxValuesPerDimension: Int = defaultMaxValuesPerDimension
    ) -> [SegmentKey] {
        let conds = conditions(
            for: attributes, partitionDigits: partitionDigits,
            maxValuesPerDimension: maxValuesPerDimension)
        var keys = conds.map { SegmentKey($0) }
        guard maxDepth >= 2 else { return keys }
        keys.reserveCapacity(conds.count * (conds.count + 1) / 2)
        for i in conds.indices {
            for j in conds.index(after: i)..<conds.endIndex where conds[i].dimension != conds[j].dimension {
                keys.append(SegmentKey(conds[i], conds[j]))
            }
        }
        return keys
    }

    /// Adds one customer's keys to `counts` (the way a population baseline or a per-incident
    /// reporter aggregate is maintained).
    public static func add(
        _ attributes: CustomerAttributes, to counts: inout SegmentCounts, maxDepth: Int = 2
    ) {
        for key in keys(for: attributes, maxDepth: maxDepth) { counts[key, default: 0] += 1 }
    }

    /// Leading `digits` digits of an account number (`"1"` for `"1048576"`); empty if it has none.
    public static func accountPartition(of accountNumber: String, digits: Int = defaultPartitionDigits) -> String {
        String(accountNumber.filter(\.isASCIIDigit).prefix(max(1, digits)))
    }

    /// Major.minor of a version: `"5.1"` from `"5.1.3"`; a version with fewer components is
    /// returned unchanged.
    public static func minorVersion(of version: String) -> String {
        let parts = version.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count > 2 else { return version }
        return parts[0] + "." + parts[1]
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
