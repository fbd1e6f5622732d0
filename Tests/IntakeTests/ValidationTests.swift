import Foundation
import XCTest
@testable import Intake
@testable import IntakeDomain

final class ReportValidationTests: XCTestCase {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func validReport() -> ReportSubmission {
        ReportSubmission(
            customer: "customers/acme-corp", contactId: "crm-881", channel: .phone, agent: "agents/alice",
            externalTicket: ExternalReference(system: "zendesk", id: "ZD-10231", uri: "https://acme.zendesk.com/10231"),
            text: "Checkout fails with error 500 since 10:00", symptom: .errors, serviceHint: "checkout",
            reportedPlatform: PlatformUsage(platform: .android, platformName: "Pixel 8", clientVersion: "5.1.3"),
            receiveTime: now.addingTimeInterval(-120))
    }

    func fields(_ r: ReportSubmission, config: ReportValidationConfig = .init()) -> [String] {
        ReportValidator.violations(of: r, now: now, config: config).map(\.field)
    }

    func testValidReportHasNoViolations() throws {
        XCTAssertEqual(fields(validReport()), [])
        XCTAssertNoThrow(try ReportValidator.validate(validReport(), now: now))
    }

    func testMinimalReportIsValid() {
        let r = ReportSubmission(customer: "customers/c1", channel: .email, agent: "agents/bob", text: "down",
                                 receiveTime: now)
        XCTAssertEqual(fields(r), [])
    }

    func testEmptyAndWhitespaceText() {
        for text in ["", "   ", "\n\t ", "\u{00A0}\u{2003}"] {
            var r = validReport()
            r.text = text
            XCTAssertEqual(fields(r), ["report.text"], "text \(text.debugDescription)")
        }
    }

    func testTextTooLongCountsUTF8Bytes() {
        var r = validReport()
        r.text = String(repeating: "a", count: 16 * 1024)
        XCTAssertEqual(fields(r), [])
        r.text += "a"
        XCTAssertEqual(fields(r), ["report.text"])
        // 6000 "é" are 12,000 bytes: fine; 9000 are 18,000 bytes: too long though only 9000 characters.
        r.text = String(repeating: "é", count: 6000)
        XCTAssertEqual(fields(r), [])
        r.text = String(repeating: "é", count: 9000)
        XCTAssertEqual(fields(r), ["report.text"])
        var config = ReportValidationConfig()
        config.maxTextBytes = 10
        r.text = "eleven byte"
        XCTAssertEqual(fields(r, config: config), ["report.text"])
    }

    func testTextWithNULIsRejected() {
        var r = validReport()
        r.text = "broken\u{0}text"
        XCTAssertEqual(fields(r), ["report.text"])
    }

    func testReceiveTimeRequiredFutureAndTooOld() {
        var r = validReport()
        r.receiveTime = nil
        XCTAssertEqual(fields(r), ["report.receive_time"])
        r.receiveTime = now.addingTimeInterval(4 * 60)  // within 5 min skew
        XCTAssertEqual(fields(r), [])
        r.receiveTime = now.addingTimeInterval(5 * 60 + 1)
        XCTAssertEqual(fields(r), ["report.receive_time"])
        r.receiveTime = now.addingTimeInterval(-29 * 86400)
        XCTAssertEqual(fields(r), [])
        r.receiveTime = now.addingTimeInterval(-31 * 86400)
        XCTAssertEqual(fields(r), ["report.receive_time"])

        var config = ReportValidationConfig()
        config.clockSkewAllowance = 0
        config.maxReportAge = 3600
        r.receiveTime = now.addingTimeInterval(1)
        XCTAssertEqual(fields(r, config: config), ["report.receive_time"])
        r.receiveTime = now.addingTimeInterval(-3601)
        XCTAssertEqual(fields(r, config: config), ["report.receive_time"])
    }

    func testChannelUnspecifiedAndUnknown() {
        var r = validReport()
        r.channel = .unspecified
        XCTAssertEqual(fields(r), ["report.channel"])
        r.channel = ReportChannel(rawValue: 42)
        XCTAssertEqual(r.channel, .unrecognized(42))
        XCTAssertEqual(fields(r), ["report.channel"])
    }

    func testSymptomUnknownRejectedUnspecifiedAllowed() {
        var r = validReport()
        r.symptom = .unspecified  // intake infers it
        XCTAssertEqual(fields(r), [])
        r.symptom = SymptomKind(rawValue: 9)
        XCTAssertEqual(fields(r), ["report.symptom"])
    }

    func testCustomerName() {
        for bad in ["", "acme", "customers/", "customers/Acme", "customers/a b", "customers/a/b", "cases/acme",
                    "customers/" + String(repeating: "a", count: 64)] {
            var r = validReport()
            r.customer = bad
            XCTAssertEqual(fields(r), ["report.customer"], bad)
        }
        for good in ["customers/a", "customers/acme-corp_2.eu", "customers/" + String(repeating: "a", count: 63)] {
            var r = validReport()
            r.customer = good
            XCTAssertEqual(fields(r), [], good)
        }
    }

    func testAgentRequiredAndFormat() {
        var r = validReport()
        r.agent = ""
        XCTAssertEqual(fields(r), ["report.agent"])
        var optional = ReportValidationConfig()
        optional.requireAgent = false
        XCTAssertEqual(fields(r, config: optional), [])
        r.agent = "alice"
        XCTAssertEqual(fields(r), ["report.agent"])
        r.agent = "agents/Alice.Smith"
        XCTAssertEqual(fields(r), [])
    }

    func testExternalTicket() {
        var r = validReport()
        r.externalTicket = ExternalReference(system: "", id: "")
        XCTAssertEqual(fields(r), ["report.external_ticket.system", "report.external_ticket.id"])
        r.externalTicket = ExternalReference(system: "Zen Desk", id: String(repeating: "9", count: 257))
        XCTAssertEqual(fields(r), ["report.external_ticket.system", "report.external_ticket.id"])
        r.externalTicket = ExternalReference(system: "zendesk", id: String(repeating: "9", count: 256),
                                             uri: String(repeating: "u", count: 2049))
        XCTAssertEqual(fields(r), ["report.external_ticket.uri"])
    }

    func testClientVersionAndPlatform() {
        for bad in ["5.1.3-beta", "v5", "5..1", ".5", "5.1.3.4.5", "five"] {
            var r = validReport()
            r.reportedPlatform?.clientVersion = bad
            XCTAssertEqual(fields(r), ["report.reported_platform.client_version"], bad)
        }
        for good in ["5", "5.1", "5.1.3", "10.0.22631.1"] {
            var r = validReport()
            r.reportedPlatform?.clientVersion = good
            XCTAssertEqual(fields(r), [], good)
        }
        var r = validReport()
        r.reportedPlatform = PlatformUsage(platform: .unspecified)
        XCTAssertEqual(fields(r), ["report.reported_platform.platform"])
        r.reportedPlatform = PlatformUsage(platform: Platform(rawValue: 99))
        XCTAssertEqual(fields(r), ["report.reported_platform.platform"])
        r.reportedPlatform = PlatformUsage(platform: .other)
        XCTAssertEqual(fields(r), ["report.reported_platform.platform_name"])
        r.reportedPlatform = PlatformUsage(platform: .other, platformName: "Smart fridge")
        XCTAssertEqual(fields(r), [])
    }

    func testServiceHintAndContactId() {
        var r = validReport()
        r.serviceHint = "Check Out!"
        r.contactId = String(repeating: "c", count: 129)
        XCTAssertEqual(fields(r), ["report.contact_id", "report.service_hint"])
    }

    func testAllViolationsAtOnceInFieldOrder() {
        let r = ReportSubmission(
            customer: "acme", contactId: String(repeating: "x", count: 200), channel: .unspecified, agent: "",
            externalTicket: ExternalReference(system: "", id: ""), text: "  ", symptom: .unrecognized(77),
            serviceHint: "NOT KEBAB", reportedPlatform: PlatformUsage(platform: .unspecified, clientVersion: "x"),
            receiveTime: now.addingTimeInterval(3600))
        XCTAssertEqual(fields(r), [
            "report.customer", "report.contact_id", "report.channel", "report.agent",
            "report.external_ticket.system", "report.external_ticket.id", "report.text", "report.symptom",
            "report.service_hint", "report.reported_platform.platform", "report.reported_platform.client_version",
            "report.receive_time",
        ])
        do {
            try ReportValidator.validate(r, now: now)
            XCTFail("expected a ValidationError")
        } catch {
            XCTAssertEqual(error.violations.count, 12)
            XCTAssertTrue(error.violations.allSatisfy { !$0.description.isEmpty })
        }
    }

    func testBatchPrefix() {
        var r = validReport()
        r.text = ""
        let v = ReportValidator.violations(of: r, now: now, prefix: "requests[3].report")
        XCTAssertEqual(v.map(\.field), ["requests[3].report.text"])
    }
}

final class CustomerValidationTests: XCTestCase {
    func validCustomer() -> CustomerUpsert {
        CustomerUpsert(
            name: "customers/acme-corp", displayName: "ACME Corp",
            attributes: CustomerAttributes(accountNumber: "1048-2211", region: "eu-south", country: "IT",
                                           tier: .enterprise, whiteGlove: true,
                                           features: ["teapot-customization", "sso"],
                                           platforms: [PlatformUsage(platform: .android, clientVersion: "5.1.3"),
                                                       PlatformUsage(platform: .web)]),
            contacts: [
                Contact(contactId: "c-1", displayName: "Ada", email: "ada.lovelace+ops@acme.example.com",
                        phone: "+390612345678", role: "technical", primary: true, preferredChannel: .email,
                        locale: "it-IT"),
                Contact(contactId: "c-2", email: "billing@acme.example"),
            ],
            preferredChannel: .email, owningAgent: "agents/alice",
            crmReference: ExternalReference(system: "salesforce", id: "0015g00000XyZ"),
            labels: ["segment": "retail"], state: .active)
    }

    func fields(_ c: CustomerUpsert, config: CustomerValidationConfig = .init()) -> [String] {
        CustomerValidator.violations(of: c, config: config).map(\.field)
    }

    func testValidCustomer() {
        XCTAssertEqual(fields(validCustomer()), [])
        XCTAssertEqual(validCustomer().attributes?.accountPartition, "1")
    }

    func testNameAndDisplayName() {
        var c = validCustomer()
        c.name = "customers/ACME"
        c.displayName = " "
        XCTAssertEqual(fields(c), ["customer.name", "customer.display_name"])
    }

    func testAttributesRequired() {
        var c = validCustomer()
        c.attributes = nil
        XCTAssertEqual(fields(c), ["customer.attributes"])
    }

    func testAccountNumber() {
        for bad in ["", "-1048", "1048--2211", "1048_2211", String(repeating: "1", count: 33), "10 48 ", "Ä1"] {
            var c = validCustomer()
            c.attributes?.accountNumber = bad
            XCTAssertEqual(fields(c), ["customer.attributes.account_number"], bad)
        }
        for good in ["1", "AC9931", "1048-2211", "1048 2211", String(repeating: "1", count: 32)] {
            var c = validCustomer()
            c.attributes?.accountNumber = good
            XCTAssertEqual(fields(c), [], good)
        }
    }

    func testRegionAndCountry() {
        var c = validCustomer()
        c.attributes?.region = ""
        c.attributes?.country = "it"
        XCTAssertEqual(fields(c), ["customer.attributes.region", "customer.attributes.country"])
        c.attributes?.region = "EU South"
        c.attributes?.country = "ZZ"
        XCTAssertEqual(fields(c), ["customer.attributes.region", "customer.attributes.country"])
        c.attributes?.region = "us-east"
        for code in ["US", "DE", "CH", "XK", "JP", "BR"] {
            c.attributes?.country = code
            XCTAssertEqual(fields(c), [], code)
        }
        for code in ["UK", "EU", "USA", "D", ""] {
            c.attributes?.country = code
            XCTAssertEqual(fields(c), ["customer.attributes.country"], code)
        }
        XCTAssertEqual(Syntax.iso3166Alpha2.count, 250)  // 249 assigned + XK
    }

    func testTier() {
        var c = validCustomer()
        c.attributes?.tier = .unspecified
        XCTAssertEqual(fields(c), ["customer.attributes.tier"])
        c.attributes?.tier = Tier(rawValue: 12)
        XCTAssertEqual(fields(c), ["customer.attributes.tier"])
    }

    func testFeatureAndPlatformLists() {
        var config = CustomerValidationConfig()
        config.maxFeatures = 2
        config.maxPlatforms = 1
        var c = validCustomer()
        c.attributes?.features = ["a", "b", "Bad Feature", "a"]
        XCTAssertEqual(fields(c, config: config), [
            "customer.attributes.features", "customer.attributes.features[2]", "customer.attributes.features[3]",
            "customer.attributes.platforms",
        ])
        c = validCustomer()
        c.attributes?.platforms = [PlatformUsage(platform: .ios, clientVersion: "5.x")]
        XCTAssertEqual(fields(c), ["customer.attributes.platforms[0].client_version"])
    }

    func testContactsArePIIAndNeverEchoed() {
        var c = validCustomer()
        c.contacts = [
            Contact(contactId: "c-1", email: "not-an-email", phone: "0049 30 123"),
            Contact(contactId: "c-1", email: "a@b", phone: "+0123"),
            Contact(contactId: "", email: "x..y@example.com", locale: "toolonglanguage"),
            Contact(contactId: "c-4", email: "ok@example.com", phone: "+4930123456", primary: true),
            Contact(contactId: "c-5", phone: "+15551234567", primary: true, preferredChannel: .unrecognized(40)),
        ]
        let v = CustomerValidator.violations(of: c)
        XCTAssertEqual(v.map(\.field), [
            "customer.contacts[0].email", "customer.contacts[0].phone",
            "customer.contacts[1].contact_id", "customer.contacts[1].email", "customer.contacts[1].phone",
            "customer.contacts[2].contact_id", "customer.contacts[2].email", "customer.contacts[2].locale",
            "customer.contacts[4].preferred_channel",
            "customer.contacts",
        ])
        for violation in v {
            for secret in ["not-an-email", "0049 30 123", "a@b", "+0123", "x..y@example.com", "+15551234567"] {
                XCTAssertFalse(violation.description.contains(secret), "\(violation) leaks \(secret)")
            }
        }
    }

    func testEmailSyntax() {
        for good in ["a@example.com", "first.last+tag@sub.example.co.uk", "o'brien@example.ie", "x@xn--bcher-kva.de"] {
            XCTAssertTrue(Syntax.isEmail(good), good)
        }
        for bad in ["", "plain", "@example.com", "a@", "a@example", "a..b@example.com", ".a@example.com",
                    "a.@example.com", "a@-example.com", "a@example..com", "a b@example.com", "a@example.123",
                    "\"quoted\"@example.com", "ä@example.com", String(repeating: "a", count: 65) + "@example.com"] {
            XCTAssertFalse(Syntax.isEmail(bad), bad)
        }
    }

    func testE164() {
        XCTAssertTrue(Syntax.isE164("+4930123456"))
        XCTAssertTrue(Syntax.isE164("+12"))
        XCTAssertTrue(Syntax.isE164("+" + String(repeating: "9", count: 15)))
        for bad in ["4930123456", "+0493012", "+", "+1", "+49 30 123", "+" + String(repeating: "9", count: 16), "+49-30"] {
            XCTAssertFalse(Syntax.isE164(bad), bad)
        }
    }

    func testContactCountLabelsOwnerCRMAndState() {
        var config = CustomerValidationConfig()
        config.maxContacts = 1
        var c = validCustomer()
        c.owningAgent = "alice"
        c.crmReference = ExternalReference(system: "", id: " ")
        c.labels = ["k": String(repeating: "v", count: 64)]
        c.state = .unrecognized(5)
        c.preferredChannel = .unrecognized(9)
        XCTAssertEqual(fields(c, config: config), [
            "customer.contacts", "customer.preferred_channel", "customer.owning_agent", "customer.crm_reference.system",
            "customer.crm_reference.id", "customer.labels[k]", "customer.state",
        ])
    }

    func testBatchPrefix() {
        var c = validCustomer()
        c.attributes?.country = "XX"
        let v = CustomerValidator.violations(of: c, prefix: "customers[7]")
        XCTAssertEqual(v.map(\.field), ["customers[7].attributes.country"])
        XCTAssertThrowsError(try CustomerValidator.validate(c, prefix: "customers[7]"))
    }
}

final class ContractEnumTests: XCTestCase {
    func testRawValuesMatchProtoNumbers() {
        XCTAssertEqual(ReportChannel.webForm.rawValue, 5)
        XCTAssertEqual(ReportChannel(rawValue: 7), .api)
        XCTAssertEqual(SymptomKind.unavailable.rawValue, 3)
        XCTAssertEqual(Tier(rawValue: 4), .enterprise)
        XCTAssertEqual(Platform.other.rawValue, 8)
        XCTAssertEqual(CaseState.merged.rawValue, 4)
        XCTAssertEqual(CaseOutcome.withdrawn.rawValue, 5)
        XCTAssertEqual(CaseHistoryAction.reopened.rawValue, 11)
        XCTAssertEqual(ContactChannel.webhook.rawValue, 6)
        XCTAssertEqual(CustomerState.closed.rawValue, 2)
    }

    func testRoundTripAndNames() {
        for v in ReportChannel.known { XCTAssertEqual(ReportChannel(rawValue: v.rawValue), v) }
        for v in CaseHistoryAction.known { XCTAssertEqual(CaseHistoryAction(rawValue: v.rawValue), v) }
        for v in CaseOutcome.known { XCTAssertEqual(CaseOutcome(rawValue: v.rawValue), v) }
        XCTAssertEqual(ReportChannel.webForm.protoName, "REPORT_CHANNEL_WEB_FORM")
        XCTAssertEqual(CaseState.awaitingCustomerNotice.protoName, "AWAITING_CUSTOMER_NOTICE")
        XCTAssertEqual(SymptomKind(rawValue: -3).protoName, "UNRECOGNIZED(-3)")
        XCTAssertFalse(SymptomKind.unspecified.isSpecified)
        XCTAssertTrue(SymptomKind.unspecified.isKnown)
        XCTAssertFalse(SymptomKind.unrecognized(8).isKnown)
    }
}

final class UpdateMaskValidationTests: XCTestCase {
    func customer() -> CustomerUpsert {
        CustomerUpsert(name: "customers/acme", displayName: "",
                       attributes: CustomerAttributes(accountNumber: "1", region: "eu-south", country: "XX", tier: .free),
                       contacts: [Contact(contactId: "c1", email: "bad")])
    }

    func fields(_ mask: [String]) -> [String] {
        CustomerValidator.updateViolations(of: customer(), updateMask: mask).map(\.field)
    }

    func testOnlyMaskedFieldsAreValidated() {
        XCTAssertEqual(fields(["attributes.tier"]), [])
        XCTAssertEqual(fields(["attributes.country"]), ["customer.attributes.country"])
        XCTAssertEqual(fields(["attributes"]), ["customer.attributes.country"])
        XCTAssertEqual(fields(["contacts"]), ["customer.contacts[0].email"])
        XCTAssertEqual(fields(["*"]), ["customer.display_name", "customer.attributes.country", "customer.contacts[0].email"])
    }

    func testUnknownAndOutputOnlyPathsAndEmptyMask() {
        XCTAssertEqual(fields([]), ["update_mask"])
        XCTAssertEqual(fields(["etag", "create_time", "attributes.account_partition", "name", "nope"]),
                       Array(repeating: "update_mask", count: 5))
    }

    func testNameIsAlwaysChecked() {
        var c = customer()
        c.name = "acme"
        XCTAssertEqual(CustomerValidator.updateViolations(of: c, updateMask: ["state"]).map(\.field), ["customer.name"])
    }

    func testMissingAttributesWithSubfieldMask() {
        var c = customer()
        c.attributes = nil
        XCTAssertEqual(CustomerValidator.updateViolations(of: c, updateMask: ["attributes.tier"]).map(\.field),
                       ["customer.attributes"])
    }
}
