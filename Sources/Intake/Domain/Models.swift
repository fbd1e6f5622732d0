// Plain value types mirroring the intake contract's messages. The handler layer maps protos to
// and from these; field names follow the proto fields (in lowerCamelCase).
import Foundation

/// A reference to a record outside Liaison (`liaison.common.v1.ExternalReference`).
public struct ExternalReference: Hashable, Sendable {
    /// The external system, lower-kebab-case, e.g. "zendesk".
    public var system: String
    /// The record's identifier in that system.
    public var id: String
    /// Optional link for humans ("" when absent).
    public var uri: String

    /// Creates the value from its fields.
    public init(system: String, id: String, uri: String = "") {
        self.system = system
        self.id = id
        self.uri = uri
    }
}

/// One platform and client version (`liaison.common.v1.PlatformUsage`).
public struct PlatformUsage: Hashable, Sendable {
    /// The platform.
    public var platform: Platform
    /// Free-form platform name; required for `.other`.
    public var platformName: String
    /// Dotted client version, e.g. "5.1.3" ("" when absent).
    public var clientVersion: String

    /// Creates the value from its fields.
    public init(platform: Platform, platformName: String = "", clientVersion: String = "") {
        self.platform = platform
        self.platformName = platformName
        self.clientVersion = clientVersion
    }
}

/// A person at the customer who can be contacted (`liaison.common.v1.Contact`). PII: never echo
/// these values in errors or logs.
public struct Contact: Hashable, Sendable {
    /// Required. Stable id of the contact in the source system (recipient key).
    public var contactId: String
    /// Name for humans.
    public var displayName: String
    /// RFC 5322 addr-spec ("" when absent).
    public var email: String
    /// E.164, e.g. "+4930123456" ("" when absent).
    public var phone: String
    /// Role at the customer, e.g. "technical".
    public var role: String
    /// Whether this is the primary contact (at most one per customer).
    public var primary: Bool
    /// Preferred contact channel.
    public var preferredChannel: ContactChannel
    /// BCP 47 tag, e.g. "de-CH" ("" when absent).
    public var locale: String

    /// Creates the value from its fields.
    public init(contactId: String, displayName: String = "", email: String = "", phone: String = "", role: String = "",
                primary: Bool = false, preferredChannel: ContactChannel = .unspecified, locale: String = "") {
        self.contactId = contactId
        self.displayName = displayName
        self.email = email
        self.phone = phone
        self.role = role
        self.primary = primary
        self.preferredChannel = preferredChannel
        self.locale = locale
    }
}

/// The customer attributes that drive blast radius, SLA and audiences
/// (`liaison.common.v1.CustomerAttributes`). Reports carry a snapshot of it.
public struct CustomerAttributes: Hashable, Sendable {
    /// Account number as printed on invoices, e.g. "1048-2211".
    public var accountNumber: String
    /// Region code, lower-kebab-case, e.g. "eu-south".
    public var region: String
    /// ISO 3166-1 alpha-2, upper case, e.g. "IT".
    public var country: String
    /// Commercial tier.
    public var tier: Tier
    /// Whether the customer gets priority / white-glove outreach.
    public var whiteGlove: Bool
    /// Enabled features, lower-kebab-case.
    public var features: [String]
    /// Platforms and client versions in use.
    public var platforms: [PlatformUsage]

    /// Creates the value from its fields.
    public init(accountNumber: String, region: String, country: String, tier: Tier, whiteGlove: Bool = false,
                features: [String] = [], platforms: [PlatformUsage] = []) {
        self.accountNumber = accountNumber
        self.region = region
        self.country = country
        self.tier = tier
        self.whiteGlove = whiteGlove
        self.features = features
        self.platforms = platforms
    }

    /// Output-only `account_partition`: the first digit of the account number ("" if it has none).
    public var accountPartition: String {
        accountNumber.first(where: { $0.isASCII && $0.isNumber }).map(String.init) ?? ""
    }
}

/// A customer as submitted by a CRM sync or update (`liaison.intake.v1.Customer`, input fields).
public struct CustomerUpsert: Hashable, Sendable {
    /// `customers/{customer_id}`.
    public var name: String
    /// Name for humans.
    public var displayName: String
    /// `nil` when the message field is absent.
    public var attributes: CustomerAttributes?
    /// People to contact (PII).
    public var contacts: [Contact]
    /// Preferred contact channel.
    public var preferredChannel: ContactChannel
    /// `agents/{agent_id}` or "".
    public var owningAgent: String
    /// The account's CRM record.
    public var crmReference: ExternalReference?
    /// When the CRM last changed the record (orders upserts).
    public var sourceUpdateTime: Date?
    /// Free-form labels (keys and values up to 63 bytes).
    public var labels: [String: String]
    /// Lifecycle state; unspecified means ACTIVE.
    public var state: CustomerState

    /// Creates the value from its fields.
    public init(name: String, displayName: String, attributes: CustomerAttributes?, contacts: [Contact] = [],
                preferredChannel: ContactChannel = .unspecified, owningAgent: String = "",
                crmReference: ExternalReference? = nil, sourceUpdateTime: Date? = nil, labels: [String: String] = [:],
                state: CustomerState = .unspecified) {
        self.name = name
        self.displayName = displayName
        self.attributes = attributes
        self.contacts = contacts
        self.preferredChannel = preferredChannel
        self.owningAgent = owningAgent
        self.crmReference = crmReference
        self.sourceUpdateTime = sourceUpdateTime
        self.labels = labels
        self.state = state
    }
}

/// A report as submitted (`liaison.intake.v1.Report`, input fields only).
public struct ReportSubmission: Hashable, Sendable {
    /// `customers/{customer_id}`.
    public var customer: String
    /// `Contact.contact_id` of the reporter, or "".
    public var contactId: String
    /// Channel the report arrived on.
    public var channel: ReportChannel
    /// `agents/{agent_id}`, or "".
    public var agent: String
    /// The help-desk ticket the report came from, if any.
    public var externalTicket: ExternalReference?
    /// What the customer said (up to 16 KiB).
    public var text: String
    /// Kind of symptom; unspecified means "infer from text".
    public var symptom: SymptomKind
    /// Catalogue id or alias of the suspected service, e.g. "checkout", or "".
    public var serviceHint: String
    /// Platform and client version reported from, if any.
    public var reportedPlatform: PlatformUsage?
    /// When the customer contacted support; `nil` when the field is absent.
    public var receiveTime: Date?

    /// Creates the value from its fields.
    public init(customer: String, contactId: String = "", channel: ReportChannel, agent: String = "",
                externalTicket: ExternalReference? = nil, text: String, symptom: SymptomKind = .unspecified,
                serviceHint: String = "", reportedPlatform: PlatformUsage? = nil, receiveTime: Date?) {
        self.customer = customer
        self.contactId = contactId
        self.channel = channel
        self.agent = agent
        self.externalTicket = externalTicket
        self.text = text
        self.symptom = symptom
        self.serviceHint = serviceHint
        self.reportedPlatform = reportedPlatform
        self.receiveTime = receiveTime
    }
}
