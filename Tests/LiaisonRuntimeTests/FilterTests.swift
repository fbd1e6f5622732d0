// The shared AIP-160-subset filter parser (moved from intake): SQL and parameters it produces,
// and the INVALID_ARGUMENT (field `filter`) it answers for anything it does not understand.
import Foundation
import GRPCProtobuf
import LiaisonRuntime
import LiaisonStorage
import XCTest

final class FilterTests: XCTestCase {
    static let symptoms = FilterEnum(prefix: "SYMPTOM_KIND_", ["UNSPECIFIED": 0, "SLOW": 1, "ERRORS": 2, "UNAVAILABLE": 3],
                                     storesNumber: false)
    /// Intake's report filter, as intake declares it.
    let reports = FilterParser(domain: "test.v1", fields: [
        "customer": .resource("customer_id", "customers"), "case": .resource("case_id", "cases"),
        "symptom": .enumeration("symptom", symptoms), "agent": .text("agent"),
        "incidents": .has("incidents"), "duplicate_assessment.duplicate": .bool("duplicate"),
        "receive_time": .time("receive_time"),
    ])
    /// Fields of the kinds correlation adds: enum numbers, numbers, whole names, maps, folded has.
    let incidents = FilterParser(domain: "test.v1", fields: [
        "state": .enumeration("state", FilterEnum(prefix: "INCIDENT_STATE_", ["DECLARED": 1, "RESOLVED": 4])),
        "score": .number("score"), "case": .name("case_name", "cases"), "labels": .map("labels"),
        "aliases": .has("aliases", lowercased: true),
    ])

    func violations(_ parser: FilterParser, _ filter: String) -> [String]? {
        do {
            _ = try parser.parse(filter, firstParameter: 1)
            return nil
        } catch {
            XCTAssertEqual(error.status.code, .invalidArgument)
            XCTAssertEqual(error.status.details.compactMap { $0.errorInfo?.domain }, ["test.v1"])
            return error.status.details.flatMap { $0.badRequest?.violations.map(\.field) ?? [] }
        }
    }

    func testComparisonsBecomeParameterisedSQL() throws {
        let f = try reports.parse(#"customer = "customers/acme" AND symptom = "ERRORS" AND incidents:"incidents/i-1" AND receive_time >= "2026-11-28T10:00:00Z""#,
                                  firstParameter: 3)
        XCTAssertEqual(f.conditions, ["customer_id = $3", "symptom = $4", "$5 = ANY(incidents)", "receive_time >= $6::timestamptz"])
        XCTAssertEqual(f.parameters.compactMap { $0.postgresText }.prefix(3), ["acme", "SYMPTOM_KIND_ERRORS", "incidents/i-1"])
        XCTAssertEqual(try reports.parse("", firstParameter: 1).conditions, [])
        XCTAssertEqual(try reports.parse("symptom != SYMPTOM_KIND_SLOW", firstParameter: 1).conditions, ["symptom <> $1"])
    }

    func testNumbersEnumNumbersNamesMapsAndFoldedHas() throws {
        let f = try incidents.parse(#"state != "RESOLVED" AND score >= 0.5 AND case = "cases/c-1" AND labels.env = "prod" AND labels.team != "x" AND aliases:"PAY""#,
                                    firstParameter: 1)
        XCTAssertEqual(f.conditions, ["state <> $1", "score >= $2::float8", "case_name = $3", "labels @> $4::jsonb",
                                      "NOT (labels @> $5::jsonb)", "$6 = ANY(aliases)"])
        XCTAssertEqual(f.parameters.compactMap { $0.postgresText }, ["4", "0.5", "cases/c-1", #"{"env":"prod"}"#, #"{"team":"x"}"#, "pay"])
        XCTAssertEqual(try incidents.parse("state = INCIDENT_STATE_DECLARED", firstParameter: 1).parameters.first?.postgresText, "1")
    }

    func testEveryProblemIsAViolationOnFilter() {
        for bad in ["text = \"x\"", "symptom = \"NOPE\"", "customer = \"acme\"", "a", "symptom \"ERRORS\"",
                    "symptom = \"ERRORS\" OR agent = \"a\"", "receive_time >= \"yesterday\"", "incidents = \"x\"",
                    "symptom = \"ERRORS", "duplicate_assessment.duplicate = maybe", "symptom > \"ERRORS\"",
                    "symptom = \"ERRORS\" AND", "agent = ", "! agent = \"a\"", "agent ~ \"a\"", "labels = \"x\""] {
            XCTAssertEqual(violations(reports, bad), ["filter"], bad)
        }
        for bad in ["score >= high", "score : 1", "case = \"c-1\"", "labels = \"x\"", "labels. = \"x\"", "labels.env > \"a\"",
                    "state = \"OPEN\"", "aliases = \"x\""] {
            XCTAssertEqual(violations(incidents, bad), ["filter"], bad)
        }
    }

    /// Issue 20: a hostile filter is refused before it costs anything: too long, or too many
    /// comparisons (32 are fine).
    func testFiltersAreBoundedInLengthAndComparisons() throws {
        let one = "agent = \"a\""
        let many = Array(repeating: one, count: FilterParser.maxComparisons).joined(separator: " AND ")
        XCTAssertEqual(try reports.parse(many, firstParameter: 1).parameters.count, FilterParser.maxComparisons)
        XCTAssertEqual(violations(reports, many + " AND " + one), ["filter"])
        XCTAssertEqual(violations(reports, "agent = \"" + String(repeating: "x", count: 5000) + "\""), ["filter"])
        XCTAssertEqual(violations(reports, String(repeating: "(", count: 1000)), ["filter"])
    }

    /// Found by the fuzz suite: filter times outside years 1-9999 reached storage and answered
    /// INTERNAL; they are INVALID_ARGUMENT on `filter` now.
    func testFilterTimesOutsideTheAPIRangeAreRefused() throws {
        for bad in ["0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "-0001-01-01T00:00:00Z", "99999999-12-31T00:00:00Z",
                    "292277026596-12-04T15:30:07Z", "10000-01-01T00:00:00Z"] {
            XCTAssertEqual(violations(reports, "receive_time > \"\(bad)\""), ["filter"], bad)
        }
        XCTAssertEqual(try reports.parse("receive_time > \"0002-01-01T00:00:00Z\"", firstParameter: 1).parameters.count, 1)
        XCTAssertEqual(try reports.parse("receive_time < \"9999-12-31T23:59:59Z\"", firstParameter: 1).parameters.count, 1)
    }

    /// Found by the fuzz suite: answers echoed client input in full (a 10 KB name gave a 41 KB
    /// trailer, above gRPC's default 8 KiB metadata limit). Echoes are clipped and violations
    /// capped.
    func testErrorsEchoClientInputAtBoundedSize() {
        let huge = String(repeating: "x", count: 10_000)
        let notFound = APIError.notFound(domain: "test.v1", resourceType: "T", name: "things/" + huge)
        XCTAssertLessThan(notFound.status.message.utf8.count, 400)
        func size(_ e: APIError) -> Int {
            e.rpcErrorMetadata.reduce(0) { n, entry in
                switch entry.value {
                case .string(let v): n + entry.key.utf8.count + v.utf8.count
                case .binary(let b): n + entry.key.utf8.count + (b.count + 2) / 3 * 4  // base64 on the wire
                }
            } + e.status.message.utf8.count
        }
        XCTAssertLessThan(size(notFound), 2048)
        let many = (0..<500).map { APIError.FieldViolation("customers[\($0)].name" + huge, huge) }
        let invalid = APIError.invalidArgument(domain: "test.v1", many)
        XCTAssertEqual(invalid.status.details.compactMap(\.badRequest).first?.violations.count, APIError.maxViolations)
        XCTAssertLessThan(size(invalid), 8192, "under gRPC's default metadata limit")
        XCTAssertEqual(violations(reports, huge + " = \"a\"")?.count, 1)
    }

    /// A text sort key and the id travel together in a page token (moved from intake with the
    /// list engine).
    func testPageKeySplit() {
        XCTAssertEqual(ListOrdering.splitKey(ListOrdering.joinKey("A|b c", "id-1"))?.0, "A|b c")
        XCTAssertEqual(ListOrdering.splitKey(ListOrdering.joinKey("A|b c", "id-1"))?.1, "id-1")
        XCTAssertNil(ListOrdering.splitKey("99|short"))
        XCTAssertNil(ListOrdering.splitKey("no bar"))
    }

    func testMessagesNameTheProblem() {
        func message(_ filter: String) -> String {
            do {
                _ = try incidents.parse(filter, firstParameter: 1)
                return ""
            } catch {
                return error.status.message
            }
        }
        XCTAssertTrue(message("colour = \"red\"").contains("unknown field \"colour\""))
        XCTAssertTrue(message("state = \"OPEN\"").contains("unknown value \"OPEN\""))
        XCTAssertTrue(message("state > \"OPEN\"").contains("supports = and != only"))
    }
}
