// Input validation for reports and customer upserts. Validators never stop at the first problem:
// they return every violation, by proto field path, so that the handler can answer one
// INVALID_ARGUMENT with a google.rpc.BadRequest listing them all.
import Foundation

/// One invalid field: `google.rpc.BadRequest.FieldViolation`.
public struct FieldViolation: Hashable, Sendable, CustomStringConvertible {
    /// Proto field path, e.g. "report.receive_time" or "customers[2].contacts[0].email".
    public var field: String
    /// What is wrong, for humans. Never contains the offending value for PII fields.
    public var description: String

    /// Creates the value from its fields.
    public init(field: String, description: String) {
        self.field = field
        self.description = description
    }
}

extension FieldViolation: Error {}

/// A request failed validation; carries every violation (INVALID_ARGUMENT, reason INVALID_FIELD).
public struct ValidationError: Error, Hashable, Sendable {
    /// All violations, in field order of the message.
    public var violations: [FieldViolation]

    /// Creates the value from its fields.
    public init(violations: [FieldViolation]) {
        self.violations = violations
    }

    /// The field paths that failed, in order.
    public var fields: [String] { violations.map(\.field) }
}

// MARK: - Resource names

/// Parsing of `collection/{id}` resource names.
public enum ResourceName {
    /// Maximum id length for customers, reports, cases and agents.
    public static let maxIdLength = 63

    /// Whether `id` is 1-63 characters of `[a-z0-9-_.]` (customer, report and case ids).
    public static func isValidId(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        guard !bytes.isEmpty, bytes.count <= maxIdLength else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b == 0x2d || b == 0x5f || b == 0x2e
        }
    }

    /// Whether `id` is 1-63 characters of `[A-Za-z0-9-_.]` (agent ids come from help desks and may
    /// keep their case).
    public static func isValidAgentId(_ id: String) -> Bool {
        isValidId(id.lowercased()) && id.utf8.count <= maxIdLength
    }

    /// The id of `name` if it is `"\(collection)/{id}"` with a valid id, else `nil`.
    public static func id(of name: String, collection: String) -> String? {
        let prefix = collection + "/"
        guard name.hasPrefix(prefix) else { return nil }
        let id = String(name.dropFirst(prefix.count))
        let ok = collection == "agents" ? isValidAgentId(id) : isValidId(id)
        return ok ? id : nil
    }

    /// The id of a `customers/{id}` name, or `nil`.
    public static func customerId(_ name: String) -> String? { id(of: name, collection: "customers") }
    /// The id of an `agents/{id}` name, or `nil`.
    public static func agentId(_ name: String) -> String? { id(of: name, collection: "agents") }
    /// The id of a `cases/{id}` name, or `nil`.
    public static func caseId(_ name: String) -> String? { id(of: name, collection: "cases") }
    /// The id of a `reports/{id}` name, or `nil`.
    public static func reportId(_ name: String) -> String? { id(of: name, collection: "reports") }
}

// MARK: - Syntax checks shared by validators

/// Small syntax predicates used by the validators, public so that handlers and filters agree.
public enum Syntax {
    /// lower-kebab-case: `[a-z0-9]+(-[a-z0-9]+)*`, at most `maxLength` bytes.
    public static func isLowerKebab(_ s: String, maxLength: Int = 63) -> Bool {
        let bytes = Array(s.utf8)
        guard !bytes.isEmpty, bytes.count <= maxLength, bytes.first != 0x2d, bytes.last != 0x2d else { return false }
        var previousHyphen = false
        for b in bytes {
            if b == 0x2d {
                if previousHyphen { return false }
                previousHyphen = true
            } else if (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) {
                previousHyphen = false
            } else {
                return false
            }
        }
        return true
    }

    /// Client version as dotted numbers: 1 to 4 components of 1-9 digits, e.g. "5", "5.1", "5.1.3".
    public static func isClientVersion(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard (1 ... 4).contains(parts.count) else { return false }
        return parts.allSatisfy { p in (1 ... 9).contains(p.utf8.count) && p.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
    }

    /// Account number: ASCII letters and digits in groups joined by single '-' or ' ' separators,
    /// 1-32 characters, e.g. "1048-2211" or "AC9931".
    public static func isAccountNumber(_ s: String) -> Bool {
        let bytes = Array(s.utf8)
        guard !bytes.isEmpty, bytes.count <= 32 else { return false }
        func alnum(_ b: UInt8) -> Bool { (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) }
        guard alnum(bytes.first!), alnum(bytes.last!) else { return false }
        var previousSeparator = false
        for b in bytes {
            if b == 0x2d || b == 0x20 {
                if previousSeparator { return false }
                previousSeparator = true
            } else if alnum(b) {
                previousSeparator = false
            } else {
                return false
            }
        }
        return true
    }

    /// E.164 phone number: "+" then 2-15 digits, the first not 0.
    public static func isE164(_ s: String) -> Bool {
        let bytes = Array(s.utf8)
        guard bytes.count >= 3, bytes.count <= 16, bytes[0] == 0x2b, bytes[1] != 0x30 else { return false }
        return bytes.dropFirst().allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    /// Email address, the dot-atom subset of RFC 5322 addr-spec: `local@domain`, local part 1-64
    /// characters of atext and non-adjacent dots, domain of at least two DNS labels (IDNs in
    /// punycode), 254 characters at most. Quoted local parts and address literals are refused.
    public static func isEmail(_ s: String) -> Bool {
        let bytes = Array(s.utf8)
        guard bytes.count <= 254, let at = bytes.lastIndex(of: 0x40) else { return false }
        let local = bytes[..<at]
        let domain = bytes[(at + 1)...]
        guard (1 ... 64).contains(local.count), local.first != 0x2e, local.last != 0x2e else { return false }
        let atextSymbols = Set("!#$%&'*+-/=?^_`{|}~".utf8)
        var previousDot = false
        for b in local {
            if b == 0x2e {
                if previousDot { return false }
                previousDot = true
                continue
            }
            previousDot = false
            let ok = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || atextSymbols.contains(b)
            if !ok { return false }
        }
        guard (1 ... 253).contains(domain.count) else { return false }
        let labels = domain.split(separator: 0x2e, omittingEmptySubsequences: false)
        guard labels.count >= 2 else { return false }
        for label in labels {
            guard (1 ... 63).contains(label.count), label.first != 0x2d, label.last != 0x2d else { return false }
            let ok = label.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x2d
            }
            if !ok { return false }
        }
        // The top-level domain is not all digits (that would be an IP address).
        return !labels.last!.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    /// A BCP 47 language tag in its common shape: subtags of 1-8 ASCII letters/digits joined by
    /// '-', the first being 2-3 letters (e.g. "de", "de-CH", "zh-Hant-TW").
    public static func isLanguageTag(_ s: String) -> Bool {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        guard let first = parts.first, (2 ... 3).contains(first.utf8.count),
              first.utf8.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) }) else { return false }
        return parts.dropFirst().allSatisfy { p in
            (1 ... 8).contains(p.utf8.count)
                && p.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) }
        }
    }

    /// ISO 3166-1 alpha-2 officially assigned codes (249), plus "XK" (Kosovo, user-assigned but used
    /// by CRMs and the EU). Upper case only.
    public static let iso3166Alpha2: Set<String> = Set("""
        AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
        CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR
        GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT
        JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY
        MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM
        PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
        SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ
        UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW XK
        """.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))

    /// Whether `s` is blank: empty or only Unicode whitespace.
    public static func isBlank(_ s: String) -> Bool {
        s.unicodeScalars.allSatisfy { $0.properties.isWhitespace }
    }
}

// MARK: - Reports

/// Limits for report validation. Defaults follow the contract.
public struct ReportValidationConfig: Sendable, Hashable {
    /// Maximum `text` size in UTF-8 bytes (16 KiB).
    public var maxTextBytes: Int = 16 * 1024
    /// How far in the future `receive_time` may be, to allow for clock skew (5 minutes).
    public var clockSkewAllowance: TimeInterval = 5 * 60
    /// How old `receive_time` may be, for back-filled reports (30 days).
    public var maxReportAge: TimeInterval = 30 * 24 * 3600
    /// Whether `agent` is required. The contract marks it optional (the case owner then falls back
    /// to the customer's owning agent); intake requires it by default so every case has an owner.
    public var requireAgent: Bool = true
    /// Maximum length of `external_ticket.id` in bytes.
    public var maxExternalTicketIdBytes: Int = 256
    /// Maximum length of `external_ticket.uri` in bytes.
    public var maxExternalTicketUriBytes: Int = 2048
    /// Maximum length of `contact_id` in bytes.
    public var maxContactIdBytes: Int = 128
    /// Maximum length of `service_hint` (lower-kebab-case) in bytes.
    public var maxServiceHintBytes: Int = 63
    /// Maximum length of `reported_platform.platform_name` in bytes.
    public var maxPlatformNameBytes: Int = 64

    /// The defaults.
    public init() {}
}

/// Validation of submitted reports (SubmitReport / BatchSubmitReports entries).
public enum ReportValidator {
    /// Every violation of `report`, judged at `now`. Field paths start with `prefix`
    /// ("report" for SubmitReport, e.g. "requests[3].report" inside a batch).
    public static func violations(of report: ReportSubmission, now: Date, config: ReportValidationConfig = .init(),
                                  prefix: String = "report") -> [FieldViolation] {
        var out: [FieldViolation] = []
        func add(_ field: String, _ description: String) {
            out.append(FieldViolation(field: "\(prefix).\(field)", description: description))
        }

        // customer (2)
        if report.customer.isEmpty {
            add("customer", "required: the reporting customer as customers/{customer_id}")
        } else if ResourceName.customerId(report.customer) == nil {
            add("customer", "must be customers/{customer_id} with an id of 1-63 characters of [a-z0-9-_.]")
        }
        // contact_id (3)
        if report.contactId.utf8.count > config.maxContactIdBytes {
            add("contact_id", "must be at most \(config.maxContactIdBytes) bytes")
        }
        // channel (4)
        switch report.channel {
        case .unspecified: add("channel", "required: the channel the report arrived on")
        case .unrecognized(let n): add("channel", "unknown ReportChannel value \(n)")
        default: break
        }
        // agent (5)
        if report.agent.isEmpty {
            if config.requireAgent { add("agent", "required: the agent who took the report as agents/{agent_id}") }
        } else if ResourceName.agentId(report.agent) == nil {
            add("agent", "must be agents/{agent_id} with an id of 1-63 characters of [A-Za-z0-9-_.]")
        }
        // external_ticket (6)
        if let ticket = report.externalTicket {
            if ticket.system.isEmpty {
                add("external_ticket.system", "required: the help desk system, lower-kebab-case, e.g. \"zendesk\"")
            } else if !Syntax.isLowerKebab(ticket.system) {
                add("external_ticket.system", "must be lower-kebab-case, at most 63 characters")
            }
            if ticket.id.isEmpty || Syntax.isBlank(ticket.id) {
                add("external_ticket.id", "required: the ticket id in the help desk")
            } else if ticket.id.utf8.count > config.maxExternalTicketIdBytes {
                add("external_ticket.id", "must be at most \(config.maxExternalTicketIdBytes) bytes")
            }
            if ticket.uri.utf8.count > config.maxExternalTicketUriBytes {
                add("external_ticket.uri", "must be at most \(config.maxExternalTicketUriBytes) bytes")
            }
        }
        // text (7)
        if Syntax.isBlank(report.text) {
            add("text", "required: what the customer said (empty or only whitespace)")
        } else if report.text.utf8.count > config.maxTextBytes {
            add("text", "must be at most \(config.maxTextBytes) bytes of UTF-8 (got \(report.text.utf8.count))")
        } else if report.text.utf8.contains(0) {
            add("text", "must not contain NUL characters")
        }
        // symptom (8): unspecified is allowed (intake infers it), unknown numbers are not.
        if case .unrecognized(let n) = report.symptom {
            add("symptom", "unknown SymptomKind value \(n)")
        }
        // service_hint (9)
        if !report.serviceHint.isEmpty && !Syntax.isLowerKebab(report.serviceHint, maxLength: config.maxServiceHintBytes) {
            add("service_hint", "must be a catalogue id, lower-kebab-case, at most \(config.maxServiceHintBytes) characters")
        }
        // reported_platform (10)
        if let platform = report.reportedPlatform {
            out += PlatformUsageValidator.violations(of: platform, prefix: "\(prefix).reported_platform",
                                                     maxNameBytes: config.maxPlatformNameBytes)
        }
        // receive_time (11)
        if let receiveTime = report.receiveTime {
            if receiveTime.timeIntervalSince(now) > config.clockSkewAllowance {
                add("receive_time", "must not be in the future (more than \(Int(config.clockSkewAllowance)) s after server time)")
            } else if now.timeIntervalSince(receiveTime) > config.maxReportAge {
                add("receive_time", "is too old: at most \(Int(config.maxReportAge / 86400)) days before server time")
            }
        } else {
            add("receive_time", "required: when the customer contacted support")
        }
        return out
    }

    /// Throws a `ValidationError` listing every violation, if any.
    public static func validate(_ report: ReportSubmission, now: Date, config: ReportValidationConfig = .init(),
                                prefix: String = "report") throws(ValidationError) {
        let v = violations(of: report, now: now, config: config, prefix: prefix)
        if !v.isEmpty { throw ValidationError(violations: v) }
    }
}

/// Validation of a `PlatformUsage`, shared by reports and customer attributes.
public enum PlatformUsageValidator {
    /// Violations of `usage`, with paths under `prefix` (e.g. "report.reported_platform").
    public static func violations(of usage: PlatformUsage, prefix: String, maxNameBytes: Int = 64) -> [FieldViolation] {
        var out: [FieldViolation] = []
        switch usage.platform {
        case .unspecified: out.append(.init(field: "\(prefix).platform", description: "required: the platform"))
        case .unrecognized(let n): out.append(.init(field: "\(prefix).platform", description: "unknown Platform value \(n)"))
        case .other where Syntax.isBlank(usage.platformName):
            out.append(.init(field: "\(prefix).platform_name", description: "required when platform is PLATFORM_OTHER"))
        default: break
        }
        if usage.platformName.utf8.count > maxNameBytes {
            out.append(.init(field: "\(prefix).platform_name", description: "must be at most \(maxNameBytes) bytes"))
        }
        if !usage.clientVersion.isEmpty && !Syntax.isClientVersion(usage.clientVersion) {
            out.append(.init(field: "\(prefix).client_version",
                             description: "must be dotted numbers such as \"5.1.3\" (1-4 components)"))
        }
        return out
    }
}

// MARK: - Customers

/// Limits for customer validation.
public struct CustomerValidationConfig: Sendable, Hashable {
    /// Maximum `display_name` size in bytes.
    public var maxDisplayNameBytes: Int = 256
    /// Maximum number of `attributes.features`.
    public var maxFeatures: Int = 64
    /// Maximum number of `attributes.platforms`.
    public var maxPlatforms: Int = 16
    /// Maximum number of `contacts`.
    public var maxContacts: Int = 100
    /// Maximum number of `labels`.
    public var maxLabels: Int = 64
    /// Maximum size of a contact id, name or role in bytes.
    public var maxContactFieldBytes: Int = 256

    /// The defaults.
    public init() {}
}

/// Validation of customers from CRM upserts and updates. Contacts are PII: their violations name
/// the field and the rule, never the value.
public enum CustomerValidator {
    /// Every violation of `customer`. Field paths start with `prefix` ("customer" for
    /// UpdateCustomer, "customers[i]" inside BatchUpsertCustomers).
    public static func violations(of customer: CustomerUpsert, config: CustomerValidationConfig = .init(),
                                  prefix: String = "customer") -> [FieldViolation] {
        var out: [FieldViolation] = []
        func add(_ field: String, _ description: String) {
            out.append(FieldViolation(field: "\(prefix).\(field)", description: description))
        }

        if customer.name.isEmpty {
            add("name", "required: customers/{customer_id}")
        } else if ResourceName.customerId(customer.name) == nil {
            add("name", "must be customers/{customer_id} with an id of 1-63 characters of [a-z0-9-_.]")
        }
        if Syntax.isBlank(customer.displayName) {
            add("display_name", "required: the account name for humans")
        } else if customer.displayName.utf8.count > config.maxDisplayNameBytes {
            add("display_name", "must be at most \(config.maxDisplayNameBytes) bytes")
        }

        if let a = customer.attributes {
            if a.accountNumber.isEmpty {
                add("attributes.account_number", "required: the account number as printed on invoices")
            } else if !Syntax.isAccountNumber(a.accountNumber) {
                add("attributes.account_number",
                    "must be 1-32 letters and digits, optionally grouped by single '-' or ' ' separators")
            }
            if a.region.isEmpty || Syntax.isBlank(a.region) {
                add("attributes.region", "required: the region code, e.g. \"eu-south\"")
            } else if !Syntax.isLowerKebab(a.region) {
                add("attributes.region", "must be lower-kebab-case, at most 63 characters, e.g. \"eu-south\"")
            }
            if a.country.isEmpty {
                add("attributes.country", "required: ISO 3166-1 alpha-2 country code, e.g. \"IT\"")
            } else if !Syntax.iso3166Alpha2.contains(a.country) {
                add("attributes.country", "must be an ISO 3166-1 alpha-2 code in upper case, e.g. \"IT\"")
            }
            switch a.tier {
            case .unspecified: add("attributes.tier", "required: the commercial tier")
            case .unrecognized(let n): add("attributes.tier", "unknown Tier value \(n)")
            default: break
            }
            if a.features.count > config.maxFeatures {
                add("attributes.features", "at most \(config.maxFeatures) features (got \(a.features.count))")
            }
            var seenFeatures = Set<String>()
            for (i, f) in a.features.enumerated() {
                if !Syntax.isLowerKebab(f) {
                    add("attributes.features[\(i)]", "must be lower-kebab-case, at most 63 characters")
                } else if !seenFeatures.insert(f).inserted {
                    add("attributes.features[\(i)]", "duplicate feature")
                }
            }
            if a.platforms.count > config.maxPlatforms {
                add("attributes.platforms", "at most \(config.maxPlatforms) platforms (got \(a.platforms.count))")
            }
            for (i, p) in a.platforms.enumerated() {
                out += PlatformUsageValidator.violations(of: p, prefix: "\(prefix).attributes.platforms[\(i)]")
            }
        } else {
            add("attributes", "required: account number, region, country and tier")
        }

        if customer.contacts.count > config.maxContacts {
            add("contacts", "at most \(config.maxContacts) contacts (got \(customer.contacts.count))")
        }
        var seenContacts = Set<String>()
        var primaries = 0
        for (i, c) in customer.contacts.enumerated() {
            let p = "contacts[\(i)]"
            if Syntax.isBlank(c.contactId) {
                add("\(p).contact_id", "required: the contact's id in the source system")
            } else if c.contactId.utf8.count > config.maxContactFieldBytes {
                add("\(p).contact_id", "must be at most \(config.maxContactFieldBytes) bytes")
            } else if !seenContacts.insert(c.contactId).inserted {
                add("\(p).contact_id", "duplicate contact_id within the customer")
            }
            if c.displayName.utf8.count > config.maxContactFieldBytes {
                add("\(p).display_name", "must be at most \(config.maxContactFieldBytes) bytes")
            }
            if !c.email.isEmpty && !Syntax.isEmail(c.email) {
                add("\(p).email", "must be an email address (local@domain)")
            }
            if !c.phone.isEmpty && !Syntax.isE164(c.phone) {
                add("\(p).phone", "must be E.164: '+' then 2-15 digits, e.g. +4930123456")
            }
            if c.role.utf8.count > config.maxContactFieldBytes {
                add("\(p).role", "must be at most \(config.maxContactFieldBytes) bytes")
            }
            if c.primary { primaries += 1 }
            if case .unrecognized(let n) = c.preferredChannel {
                add("\(p).preferred_channel", "unknown ContactChannel value \(n)")
            }
            if !c.locale.isEmpty && !Syntax.isLanguageTag(c.locale) {
                add("\(p).locale", "must be a BCP 47 language tag, e.g. \"de-CH\"")
            }
        }
        if primaries > 1 {
            add("contacts", "at most one contact may be primary (got \(primaries))")
        }
        if case .unrecognized(let n) = customer.preferredChannel {
            add("preferred_channel", "unknown ContactChannel value \(n)")
        }
        if !customer.owningAgent.isEmpty && ResourceName.agentId(customer.owningAgent) == nil {
            add("owning_agent", "must be agents/{agent_id} with an id of 1-63 characters of [A-Za-z0-9-_.]")
        }
        if let crm = customer.crmReference {
            if !Syntax.isLowerKebab(crm.system) {
                add("crm_reference.system", "required, lower-kebab-case, e.g. \"salesforce\"")
            }
            if Syntax.isBlank(crm.id) {
                add("crm_reference.id", "required: the record id in the CRM")
            } else if crm.id.utf8.count > 256 {
                add("crm_reference.id", "must be at most 256 bytes")
            }
        }
        if customer.labels.count > config.maxLabels {
            add("labels", "at most \(config.maxLabels) labels (got \(customer.labels.count))")
        }
        for key in customer.labels.keys.sorted() {
            let value = customer.labels[key]!
            if key.isEmpty || key.utf8.count > 63 {
                add("labels", "label keys must be 1-63 bytes")
            } else if value.utf8.count > 63 {
                add("labels[\(key)]", "label values must be at most 63 bytes")
            }
        }
        if case .unrecognized(let n) = customer.state {
            add("state", "unknown Customer.State value \(n)")
        }
        return out
    }

    /// Throws a `ValidationError` listing every violation, if any.
    public static func validate(_ customer: CustomerUpsert, config: CustomerValidationConfig = .init(),
                                prefix: String = "customer") throws(ValidationError) {
        let v = violations(of: customer, config: config, prefix: prefix)
        if !v.isEmpty { throw ValidationError(violations: v) }
    }
}

// MARK: - Update masks

extension CustomerValidator {
    /// Field paths UpdateCustomer may name in `update_mask` ("*" replaces all of them).
    public static let updatablePaths: Set<String> = [
        "display_name", "attributes", "attributes.account_number", "attributes.region", "attributes.country",
        "attributes.tier", "attributes.white_glove", "attributes.features", "attributes.platforms", "contacts",
        "preferred_channel", "owning_agent", "crm_reference", "source_update_time", "labels", "state",
    ]

    /// Violations of an UpdateCustomer request: unknown or output-only `update_mask` paths (field
    /// "update_mask"), `customer.name`, and the violations of the fields the mask names (a path
    /// covers its sub-fields and list entries). An empty mask is refused.
    public static func updateViolations(of customer: CustomerUpsert, updateMask: [String],
                                        config: CustomerValidationConfig = .init()) -> [FieldViolation] {
        var out: [FieldViolation] = []
        if updateMask.isEmpty {
            out.append(FieldViolation(field: "update_mask", description: "required: the fields to update, or \"*\""))
        }
        for path in updateMask where path != "*" && !updatablePaths.contains(path) {
            out.append(FieldViolation(field: "update_mask",
                                      description: "\"\(path)\" is not an updatable field of Customer"))
        }
        let all = violations(of: customer, config: config, prefix: "customer")
        let replaceAll = updateMask.contains("*")
        out += all.filter { v in
            let field = String(v.field.dropFirst("customer.".count))
            if field == "name" || replaceAll { return true }
            return updateMask.contains { path in
                field == path || field.hasPrefix(path + ".") || field.hasPrefix(path + "[")
                    // "attributes" itself missing is a violation only when the mask names it whole.
                    || (field == "attributes" && path.hasPrefix("attributes."))
            }
        }
        return out
    }
}
