// Mapping between the generated protobuf messages and the domain's plain value types.
import IntakeDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import SwiftProtobuf

extension Google_Protobuf_Timestamp {
    /// The timestamp of `date`, rounded to the microsecond (PostgreSQL precision); dates beyond
    /// what storage holds are clamped to its range rather than trapped on.
    init(micros date: Date) {
        let us = date.postgresMicros
        var (seconds, fraction) = us.quotientAndRemainder(dividingBy: 1_000_000)
        if fraction < 0 {
            seconds -= 1
            fraction += 1_000_000
        }
        self.init(seconds: seconds, nanos: Int32(fraction * 1000))
    }
}

/// Deterministic serialization (stable bytes for idempotency fingerprints and storage).
func deterministicBytes(_ message: some SwiftProtobuf.Message) throws -> [UInt8] {
    var options = BinaryEncodingOptions()
    options.useDeterministicOrdering = true
    return try message.serializedBytes(options: options)
}

/// `deterministicBytes(message)` followed by one more embedded-message field, `number`, whose
/// encoding is already at hand (`field`): a submission's report is encoded once and carried by its
/// row, its ReportAccepted event and its stored response. `message` must leave that field unset.
/// Parsers accept fields in any order (and this one is not repeated), so the bytes decode to
/// `message` with the field set; they are not compared byte for byte anywhere.
func deterministicBytes(_ message: some SwiftProtobuf.Message, appendingField number: Int, _ field: [UInt8]) throws
    -> [UInt8]
{
    var out = try deterministicBytes(message)
    appendEmbeddedField(number, field, to: &out)
    return out
}

/// Appends embedded-message (length-delimited) field `number` with its encoded value `field`.
func appendEmbeddedField(_ number: Int, _ field: [UInt8], to out: inout [UInt8]) {
    func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }
    out.reserveCapacity(out.count + field.count + 12)
    varint(UInt64(number) << 3 | 2)  // wire type 2: length-delimited
    varint(UInt64(field.count))
    out.append(contentsOf: field)
}

/// Sets embedded-message field `number` of `message` from its value already encoded (`field`),
/// without decoding and encoding it again: the field travels among the message's unknown fields,
/// which SwiftProtobuf writes out as they are, so a receiver decodes the field as set. In this
/// process the field reads as unset: only for a message about to be sent, whose own field
/// `number` is unset. BatchSubmitReports sends each entry's answer this way, from the bytes
/// recorded for its request_id (encoding a batch's 100 answers again cost 5% of intake's CPU).
func setEncodedField(_ number: Int, _ field: [UInt8], in message: inout some SwiftProtobuf.Message) throws {
    var unknown = [UInt8](message.unknownFields.data)
    appendEmbeddedField(number, field, to: &unknown)
    // An empty message keeps every field as unknown: a carrier that copies the bytes once.
    message.unknownFields = try Google_Protobuf_Empty(serializedBytes: unknown).unknownFields
}

/// Proto <-> domain conversions. Enums convert by number, so unknown numbers reach the domain as
/// `.unrecognized(n)` and validation rejects them with a field violation.
enum Mapping {
    // MARK: Common types

    static func platformUsage(_ p: Liaison_Common_V1_PlatformUsage) -> PlatformUsage {
        PlatformUsage(platform: Platform(rawValue: p.platform.rawValue), platformName: p.platformName,
                      clientVersion: p.clientVersion)
    }

    static func proto(_ p: PlatformUsage) -> Liaison_Common_V1_PlatformUsage {
        var out = Liaison_Common_V1_PlatformUsage()
        out.platform = Liaison_Common_V1_Platform(rawValue: p.platform.rawValue) ?? .unspecified
        out.platformName = p.platformName
        out.clientVersion = p.clientVersion
        return out
    }

    static func attributes(_ a: Liaison_Common_V1_CustomerAttributes) -> CustomerAttributes {
        CustomerAttributes(accountNumber: a.accountNumber, region: a.region, country: a.country,
                           tier: Tier(rawValue: a.tier.rawValue), whiteGlove: a.whiteGlove, features: a.features,
                           platforms: a.platforms.map(platformUsage))
    }

    static func proto(_ a: CustomerAttributes) -> Liaison_Common_V1_CustomerAttributes {
        var out = Liaison_Common_V1_CustomerAttributes()
        out.accountNumber = a.accountNumber
        out.region = a.region
        out.country = a.country
        out.tier = Liaison_Common_V1_Tier(rawValue: a.tier.rawValue) ?? .unspecified
        out.whiteGlove = a.whiteGlove
        out.features = a.features
        out.platforms = a.platforms.map(proto)
        out.accountPartition = a.accountPartition
        return out
    }

    static func reference(_ r: Liaison_Common_V1_ExternalReference) -> ExternalReference {
        ExternalReference(system: r.system, id: r.id, uri: r.uri)
    }

    static func contact(_ c: Liaison_Common_V1_Contact) -> Contact {
        Contact(contactId: c.contactID, displayName: c.displayName, email: c.email, phone: c.phone, role: c.role,
                primary: c.primary, preferredChannel: ContactChannel(rawValue: c.preferredChannel.rawValue),
                locale: c.locale)
    }

    // MARK: Customers

    /// The domain view of a customer message (input fields only).
    static func customerUpsert(_ c: Liaison_Intake_V1_Customer) -> CustomerUpsert {
        CustomerUpsert(
            name: c.name, displayName: c.displayName, attributes: c.hasAttributes ? attributes(c.attributes) : nil,
            contacts: c.contacts.map(contact), preferredChannel: ContactChannel(rawValue: c.preferredChannel.rawValue),
            owningAgent: c.owningAgent, crmReference: c.hasCrmReference ? reference(c.crmReference) : nil,
            sourceUpdateTime: c.hasSourceUpdateTime ? c.sourceUpdateTime.date : nil, labels: c.labels,
            state: CustomerState(rawValue: c.state.rawValue))
    }

    /// The customer message as stored: input fields only, output-only fields cleared, features
    /// sorted and de-duplicated, state ACTIVE when unspecified, `account_partition` derived.
    static func storedCustomer(_ c: Liaison_Intake_V1_Customer) -> Liaison_Intake_V1_Customer {
        var out = c
        out.clearCreateTime()
        out.clearUpdateTime()
        out.etag = ""
        if out.state == .unspecified { out.state = .active }
        if out.hasAttributes {
            out.attributes.features = Array(Set(out.attributes.features)).sorted()
            out.attributes.accountPartition = attributes(out.attributes).accountPartition
        }
        return out
    }

    /// The attributes message with its output-only `account_partition` filled.
    static func snapshot(_ a: Liaison_Common_V1_CustomerAttributes) -> Liaison_Common_V1_CustomerAttributes {
        var out = a
        out.accountPartition = attributes(a).accountPartition
        return out
    }

    // MARK: Reports

    static func submission(_ r: Liaison_Intake_V1_Report) -> ReportSubmission {
        ReportSubmission(
            customer: r.customer, contactId: r.contactID, channel: ReportChannel(rawValue: r.channel.rawValue),
            agent: r.agent, externalTicket: r.hasExternalTicket ? reference(r.externalTicket) : nil, text: r.text,
            symptom: SymptomKind(rawValue: r.symptom.rawValue), serviceHint: r.serviceHint,
            reportedPlatform: r.hasReportedPlatform ? platformUsage(r.reportedPlatform) : nil,
            receiveTime: r.hasReceiveTime ? r.receiveTime.date : nil)
    }

    static func proto(_ a: DuplicateAssessment) -> Liaison_Intake_V1_DuplicateAssessment {
        var out = Liaison_Intake_V1_DuplicateAssessment()
        out.duplicate = a.duplicate
        out.matchedReport = a.matchedReport
        out.similarity = a.similarity
        out.threshold = a.threshold
        out.signals = a.signals.map { s in
            var p = Liaison_Intake_V1_DuplicateAssessment.Signal()
            p.name = s.name
            p.score = s.score
            p.weight = s.weight
            p.detail = s.detail
            return p
        }
        return out
    }

    // MARK: Cases

    /// Most report names a Case lists (`report_count` gives the total).
    static let maxListedReports = 1000

    /// The Case resource of `c`; `reportCount` is the total when `c.reports` holds only the first
    /// `maxListedReports` of them.
    static func proto(_ c: CaseRecord, version: Int64, reportCount: Int? = nil) -> Liaison_Intake_V1_Case {
        var out = Liaison_Intake_V1_Case()
        out.name = c.name
        out.customer = c.customer
        out.title = c.title
        out.state = Liaison_Intake_V1_Case.State(rawValue: c.state.rawValue) ?? .unspecified
        out.owner = c.owner
        let names = c.reportNames
        out.reports = names.count > maxListedReports ? Array(names.prefix(maxListedReports)) : names
        out.reportCount = Int32(clamping: reportCount ?? names.count)
        out.incidents = c.incidents
        out.symptom = Liaison_Common_V1_SymptomKind(rawValue: c.symptom.rawValue) ?? .unspecified
        out.outcome = Liaison_Intake_V1_CaseOutcome(rawValue: c.outcome.rawValue) ?? .unspecified
        out.outcomeNote = c.outcomeNote
        out.mergedInto = c.mergedInto
        if let t = c.customerNotifyTime { out.customerNotifyTime = .init(micros: t) }
        out.createTime = .init(micros: c.createTime)
        out.updateTime = .init(micros: c.updateTime)
        if let t = c.closeTime { out.closeTime = .init(micros: t) }
        out.etag = Etag.make(version)
        return out
    }

    static func proto(_ h: CaseHistoryEntry) -> Liaison_Intake_V1_CaseHistoryEntry {
        var out = Liaison_Intake_V1_CaseHistoryEntry()
        out.action = Liaison_Intake_V1_CaseHistoryEntry.Action(rawValue: h.action.rawValue) ?? .unspecified
        out.state = Liaison_Intake_V1_Case.State(rawValue: h.state.rawValue) ?? .unspecified
        out.actor = h.actor
        out.time = .init(micros: h.time)
        out.related = h.related
        out.note = h.note
        return out
    }
}
