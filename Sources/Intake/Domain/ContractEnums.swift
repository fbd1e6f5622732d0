// Plain Swift mirrors of the contract's enums (protos/liaison/intake/v1, protos/liaison/common/v1).
// Each enum's raw value is the proto number, so mapping is `Domain(rawValue: proto.rawValue)`.
// Numbers the domain does not know map to `.unrecognized(n)` (like SwiftProtobuf's UNRECOGNIZED),
// so that validation can reject them with a field violation instead of crashing or guessing.

/// Shared behaviour of the contract enum mirrors.
public protocol ContractEnum: RawRepresentable, Hashable, Sendable, CustomStringConvertible where RawValue == Int {
    /// Every known value, including `unspecified`.
    static var known: [Self] { get }
    /// The proto value name, e.g. "REPORT_CHANNEL_PHONE"; "UNRECOGNIZED(n)" for unknown numbers.
    var protoName: String { get }
    /// Builds the value for a proto number; unknown numbers become `.unrecognized(n)`.
    init(rawValue: Int)
}

extension ContractEnum {
    /// Whether the number is one the contract defines (`unspecified` included).
    public var isKnown: Bool { Self.known.contains(self) }
    /// Whether the value is defined and not the zero value.
    public var isSpecified: Bool { isKnown && rawValue != 0 }
    public var description: String { protoName }
}

/// Channel through which a customer reported an issue (`liaison.intake.v1.ReportChannel`).
public enum ReportChannel: ContractEnum {
    case unspecified, phone, email, chat, social, webForm, inApp, api
    case unrecognized(Int)

    public static let known: [ReportChannel] = [.unspecified, .phone, .email, .chat, .social, .webForm, .inApp, .api]
    public init(rawValue: Int) {
        self = rawValue >= 0 && rawValue < Self.known.count ? Self.known[rawValue] : .unrecognized(rawValue)
    }
    public var rawValue: Int {
        switch self {
        case .unspecified: 0
        case .phone: 1
        case .email: 2
        case .chat: 3
        case .social: 4
        case .webForm: 5
        case .inApp: 6
        case .api: 7
        case .unrecognized(let n): n
        }
    }
    public var protoName: String {
        let names = ["REPORT_CHANNEL_UNSPECIFIED", "REPORT_CHANNEL_PHONE", "REPORT_CHANNEL_EMAIL", "REPORT_CHANNEL_CHAT",
                     "REPORT_CHANNEL_SOCIAL", "REPORT_CHANNEL_WEB_FORM", "REPORT_CHANNEL_IN_APP", "REPORT_CHANNEL_API"]
        return isKnown ? names[rawValue] : "UNRECOGNIZED(\(rawValue))"
    }
}

/// What a customer experiences (`liaison.common.v1.SymptomKind`).
public enum SymptomKind: ContractEnum {
    case unspecified, slow, errors, unavailable, data, other
    case unrecognized(Int)

    public static let known: [SymptomKind] = [.unspecified, .slow, .errors, .unavailable, .data, .other]
    public init(rawValue: Int) {
        self = rawValue >= 0 && rawValue < Self.known.count ? Self.known[rawValue] : .unrecognized(rawValue)
    }
    public var rawValue: Int {
        switch self {
        case .unspecified: 0
        case .slow: 1
        case .errors: 2
        case .unavailable: 3
        case .data: 4
        case .other: 5
        case .unrecognized(let n): n
        }
    }
    public var protoName: String {
        let names = ["SYMPTOM_KIND_UNSPECIFIED", "SYMPTOM_KIND_SLOW", "SYMPTOM_KIND_ERRORS", "SYMPTOM_KIND_UNAVAILABLE",
                     "SYMPTOM_KIND_DATA", "SYMPTOM_KIND_OTHER"]
        return isKnown ? names[rawValue] : "UNRECOGNIZED(\(rawValue))"
    }
}

/// Commercial service tier (`liaison.common.v1.Tier`).
public enum Tier: ContractEnum {
    case unspecified, free, standard, business, enterprise
    case unrecognized(Int)

    public static let known: [Tier] = [.unspecified, .free, .standard, .business, .enterprise]
    public init(rawValue: Int) {
        self = rawValue >= 0 && rawValue < Self.known.count ? Self.known[rawValue] : .unrecognized(rawValue)
    }
    public var rawValue: Int {
        switch self {
        case .unspecified: 0
        case .free: 1
        case .standard: 2
        case .business: 3
        case .enterprise: 4
        case .unrecognized(let n): n
        }
    }
    public var protoName: String {
        let names = ["TIER_UNSPECIFIED", "TIER_FREE", "TIER_STANDARD", "TIER_BUSINESS", "TIER_ENTERPRISE"]
        return isKnown ? names[rawValue] : "UNRECOGNIZED(\(rawValue))"
    }
}

/// Client platform (`liaison.common.v1.Platform`).
public enum Platform: ContractEnum {
    case unspecified, web, ios, android, windows, macos, linux, api, other
    case unrecognized(Int)

    public static let known: [Platform] = [.unspecified, .web, .ios, .android, .windows, .macos, .linux, .api, .other]
    public init(rawValue: Int) {
        self = rawValue >= 0 && rawValue < Self.known.count ? Self.known[rawValue] : .unrecognized(rawValue)
    }
    public var rawValue: Int {
        switch self {
        case .unspecified: 0
        case .web: 1
        case .ios: 2
        case .android: 3
        case .windows: 4
        case .macos: 5
        case .linux: 6
        case .api: 7
        case .other: 8
        case .unrecognized(let n): n
        }
    }
    public var protoName: String {
        let names = ["PLATFORM_UNSPECIFIED", "PLATFORM_WEB", "PLATFORM_IOS", "PLATFORM_ANDROID", "PLATFORM_WINDOWS",
                     "PLATFORM_MACOS", "PLATFORM_LINUX", "PLATFORM_API", "PLATFORM_OTHER"]
        return isKnown ? names[rawValue] : "UNRECOGNIZED(\(rawValue))"
    }
}

/// Preferred contact channel (`liaison.common.v1.ContactChannel`).
public enum ContactChannel: ContractEnum {
    case unspecified, email, phone, sms, chat, inApp, webhook
    case unrecognized(Int)

    public static let known: [ContactChannel] = [.unspecified, .email, .phone, .sms, .chat, .inApp, .webhook]
    public init(rawValue: Int) {
        self = rawValue >= 0 && rawValue < Self.known.count ? Self.known[rawValue] : .unrecognized(rawValue)
    }
    public var rawValue: Int {
        switch self {
        case .unspecified: 0
        case .email: 1
        case .phone: 2
        case .sms: 3
        case .chat: 4
        case .inApp: 5
        case .webhook: 6
        case .unrecognized(let n): n
        }
    }
    public var protoName: String {
        let names = ["CONTACT_CHANNEL_UNSPECIFIED", "CONTACT_CHANNEL_EMAIL", "CONTACT_CHANNEL_PHONE", "CONTACT_CHANNEL_SMS",
                     "CONTACT_CHANNEL_CHAT", "CONTACT_CHANNEL_IN_APP", "CONTACT_CHANNEL_WEBHOOK"]
        return isKnown ? names[rawValue] : "UNRECOGNIZED(\(rawValue))"
    }
}

/// Lifecycle state of a customer account (`liaison.intake.v1.Customer.State`).
public enum CustomerState: ContractEnum {
    case unspecified, active, closed
    case unrecognized(Int)

    public static let known: [CustomerState] = [.unspecified, .active, .closed]
    public init(rawValue: Int) {
        self = rawValue >= 0 && rawValue < Self.known.count ? Self.known[rawValue] : .unrecognized(rawValue)
    }
    public var rawValue: Int {
        switch self {
        case .unspecified: 0
        case .active: 1
        case .closed: 2
        case .unrecognized(let n): n
        }
    }
    public var protoName: String {
        let names = ["STATE_UNSPECIFIED", "ACTIVE", "CLOSED"]
        return isKnown ? names[rawValue] : "UNRECOGNIZED(\(rawValue))"
    }
}

/// Lifecycle state of a case (`liaison.intake.v1.Case.State`).
public enum CaseState: ContractEnum {
    case unspecified, open, awaitingCustomerNotice, closed, merged
    case unrecognized(Int)

    public static let known: [CaseState] = [.unspecified, .open, .awaitingCustomerNotice, .closed, .merged]
    public init(rawValue: Int) {
        self = rawValue >= 0 && rawValue < Self.known.count ? Self.known[rawValue] : .unrecognized(rawValue)
    }
    public var rawValue: Int {
        switch self {
        case .unspecified: 0
        case .open: 1
        case .awaitingCustomerNotice: 2
        case .closed: 3
        case .merged: 4
        case .unrecognized(let n): n
        }
    }
    public var protoName: String {
        let names = ["STATE_UNSPECIFIED", "OPEN", "AWAITING_CUSTOMER_NOTICE", "CLOSED", "MERGED"]
        return isKnown ? names[rawValue] : "UNRECOGNIZED(\(rawValue))"
    }
}

/// Outcome of a closed case (`liaison.intake.v1.CaseOutcome`).
public enum CaseOutcome: ContractEnum {
    case unspecified, resolvedByIncident, resolvedDirectly, notReproducible, customerSide, withdrawn
    case unrecognized(Int)

    public static let known: [CaseOutcome] = [.unspecified, .resolvedByIncident, .resolvedDirectly, .notReproducible,
                                               .customerSide, .withdrawn]
    public init(rawValue: Int) {
        self = rawValue >= 0 && rawValue < Self.known.count ? Self.known[rawValue] : .unrecognized(rawValue)
    }
    public var rawValue: Int {
        switch self {
        case .unspecified: 0
        case .resolvedByIncident: 1
        case .resolvedDirectly: 2
        case .notReproducible: 3
        case .customerSide: 4
        case .withdrawn: 5
        case .unrecognized(let n): n
        }
    }
    public var protoName: String {
        let names = ["CASE_OUTCOME_UNSPECIFIED", "CASE_OUTCOME_RESOLVED_BY_INCIDENT", "CASE_OUTCOME_RESOLVED_DIRECTLY",
                     "CASE_OUTCOME_NOT_REPRODUCIBLE", "CASE_OUTCOME_CUSTOMER_SIDE", "CASE_OUTCOME_WITHDRAWN"]
        return isKnown ? names[rawValue] : "UNRECOGNIZED(\(rawValue))"
    }
}

/// What happened to a case in one history entry (`liaison.intake.v1.CaseHistoryEntry.Action`).
public enum CaseHistoryAction: ContractEnum {
    case unspecified, opened, reportAdded, assigned, mergedIn, mergedAway, splitOff, splitFrom
    case awaitingCustomerNotice, customerNotified, closed, reopened
    case unrecognized(Int)

    public static let known: [CaseHistoryAction] = [.unspecified, .opened, .reportAdded, .assigned, .mergedIn, .mergedAway,
                                                     .splitOff, .splitFrom, .awaitingCustomerNotice, .customerNotified,
                                                     .closed, .reopened]
    public init(rawValue: Int) {
        self = rawValue >= 0 && rawValue < Self.known.count ? Self.known[rawValue] : .unrecognized(rawValue)
    }
    public var rawValue: Int {
        switch self {
        case .unspecified: 0
        case .opened: 1
        case .reportAdded: 2
        case .assigned: 3
        case .mergedIn: 4
        case .mergedAway: 5
        case .splitOff: 6
        case .splitFrom: 7
        case .awaitingCustomerNotice: 8
        case .customerNotified: 9
        case .closed: 10
        case .reopened: 11
        case .unrecognized(let n): n
        }
    }
    public var protoName: String {
        let names = ["ACTION_UNSPECIFIED", "OPENED", "REPORT_ADDED", "ASSIGNED", "MERGED_IN", "MERGED_AWAY", "SPLIT_OFF",
                     "SPLIT_FROM", "AWAITING_CUSTOMER_NOTICE", "CUSTOMER_NOTIFIED", "CLOSED", "REOPENED"]
        return isKnown ? names[rawValue] : "UNRECOGNIZED(\(rawValue))"
    }
}
