// Test harness of the intake service: a fresh database on the throwaway PostgreSQL cluster, the
// real handler behind a real gRPC server (shim transport on 127.0.0.1), and a real client.
import Foundation
import GRPCCore
import GRPCProtobuf
import Intake
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import Logging
import SwiftProtobuf
import XCTest

typealias IntakeClient = Liaison_Intake_V1_IntakeService.Client<ShimClientTransport>

/// Creates and migrates a fresh intake database; returns its URL and a pool.
func makeIntakeDatabase() async throws -> (String, PostgresPool) {
    let url = try TestPostgres.shared.createDatabase("intake")
    let pool = PostgresPool(.init(url: url, maxConnections: 8))
    let migrator = Migrator(pool: pool)
    try await migrator.migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
    try await migrator.migrate(
        namespace: "intake", try Migrator.load(directory: TestPostgres.repositoryRoot + "/services/intake/migrations"))
    return (url, pool)
}

typealias EventSinkClient = Liaison_Events_V1_EventSinkService.Client<ShimClientTransport>

/// Runs `body` with a client of an intake server over a fresh database.
func withIntake<R: Sendable>(
    settings: ((inout IntakeSettings) -> Void)? = nil,
    _ body: (IntakeClient, PostgresPool) async throws -> R
) async throws -> R {
    try await withIntakeAndSink(settings: settings) { client, _, pool in try await body(client, pool) }
}

/// Runs `body` with clients of an intake server over a fresh database: the intake API and the
/// event sink of correlation's events (`CorrelationEvents`), as `IntakeService` serves them.
func withIntakeAndSink<R: Sendable>(
    settings: ((inout IntakeSettings) -> Void)? = nil,
    _ body: (IntakeClient, EventSinkClient, PostgresPool) async throws -> R
) async throws -> R {
    let (_, pool) = try await makeIntakeDatabase()
    var s = IntakeSettings(pageTokenKey: Array("test-page-token-key-0123456789".utf8))
    settings?(&s)
    let logger = Logger(label: "intake-test")
    let handler = IntakeHandler(pool: pool, settings: s, logger: logger)
    let sink = CorrelationEvents.sink(pool: pool, settings: s, logger: logger)
    // Assembled as `IntakeService` is served (the runtime's one builder, on port 0).
    let server = try ServerAssembly(services: [handler.servedDirect, sink.served], config: .init(listenAddress: "127.0.0.1:0"))
    let result: R = try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.serve() }
        let port = try await server.port
        let clientTransport = try ShimClientTransport(target: "ipv4:127.0.0.1:\(port)")
        do {
            let r = try await withGRPCClient(transport: clientTransport) { client in
                try await body(IntakeClient(wrapping: client), EventSinkClient(wrapping: client), pool)
            }
            server.shutdown()
            try await group.waitForAll()
            return r
        } catch {
            server.shutdown()
            try? await group.waitForAll()
            throw error
        }
    }
    await pool.close()
    return result
}

/// A new request id.
func rid() -> String { UUID().uuidString.lowercased() }

/// A valid customer.
func makeCustomer(_ id: String, region: String = "eu-south", tier: Liaison_Common_V1_Tier = .enterprise,
                  owningAgent: String = "agents/owner-1", features: [String] = ["teapot-customization"])
    -> Liaison_Intake_V1_Customer
{
    var c = Liaison_Intake_V1_Customer()
    c.name = "customers/\(id)"
    c.displayName = "Customer \(id)"
    c.attributes.accountNumber = "1048-\(abs(id.hashValue) % 10000)"
    c.attributes.region = region
    c.attributes.country = "IT"
    c.attributes.tier = tier
    c.attributes.features = features
    var p = Liaison_Common_V1_PlatformUsage()
    p.platform = .android
    p.clientVersion = "5.1.3"
    c.attributes.platforms = [p]
    c.owningAgent = owningAgent
    var contact = Liaison_Common_V1_Contact()
    contact.contactID = "ct-1"
    contact.displayName = "Ada"
    contact.email = "ada@example.com"
    contact.primary = true
    c.contacts = [contact]
    return c
}

/// A valid report.
func makeReport(customer: String, agent: String = "agents/a1",
                text: String = "Checkout page shows error 503 since this morning, cannot pay",
                receive: Date = Date().addingTimeInterval(-60), ticket: String? = nil) -> Liaison_Intake_V1_Report
{
    var r = Liaison_Intake_V1_Report()
    r.customer = "customers/\(customer)"
    r.channel = .phone
    r.agent = agent
    r.text = text
    r.serviceHint = "checkout"
    r.receiveTime = .init(date: receive)
    if let ticket {
        r.externalTicket.system = "zendesk"
        r.externalTicket.id = ticket
    }
    return r
}

func submitRequest(_ report: Liaison_Intake_V1_Report, id: String = rid()) -> Liaison_Intake_V1_SubmitReportRequest {
    var req = Liaison_Intake_V1_SubmitReportRequest()
    req.report = report
    req.requestID = id
    return req
}

extension IntakeClient {
    /// Upserts customers (one call).
    @discardableResult
    func upsert(_ customers: [Liaison_Intake_V1_Customer]) async throws -> Liaison_Intake_V1_BatchUpsertCustomersResponse {
        var req = Liaison_Intake_V1_BatchUpsertCustomersRequest()
        req.customers = customers
        req.requestID = rid()
        return try await batchUpsertCustomers(req)
    }
}

/// Counts rows of a table.
func count(_ pool: PostgresPool, _ table: String) async throws -> Int {
    try await pool.query("SELECT count(*) FROM \(table)").first!.decode(Int.self, 0)
}

/// Expects `body` to fail with `code`; returns the google.rpc status details.
func expectStatus<T>(_ code: RPCError.Code, file: StaticString = #filePath, line: UInt = #line,
                     _ body: () async throws -> T) async -> GoogleRPCStatus? {
    do {
        _ = try await body()
        XCTFail("expected \(code)", file: file, line: line)
        return nil
    } catch let error as RPCError {
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
        let status = try? error.unpackGoogleRPCStatus()
        XCTAssertNotNil(status, "no google.rpc.Status details", file: file, line: line)
        return status
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
        return nil
    }
}

extension GoogleRPCStatus {
    /// Field paths of the BadRequest details.
    var violatedFields: [String] {
        details.flatMap { d -> [String] in d.badRequest?.violations.map(\.field) ?? [] }
    }
    /// The ErrorInfo reason.
    var reason: String? { details.compactMap { $0.errorInfo?.reason }.first }
}

/// Every case's stored duplicate candidates (`cases.candidates`, written by intake in Swift)
/// equal, byte for byte, what PostgreSQL computes from its reports (`intake_case_candidates`);
/// `cases`, when given, is how many cases there must be.
func assertStoredCandidatesMatchReports(_ pool: PostgresPool, cases: Int? = nil,
                                        file: StaticString = #filePath, line: UInt = #line) async throws {
    let r = try await pool.query("""
        SELECT count(*), count(*) FILTER (WHERE candidates <> intake_case_candidates(id)),
               coalesce(string_agg(id, ', ') FILTER (WHERE candidates <> intake_case_candidates(id)), '')
        FROM cases
        """).first!
    if let cases { XCTAssertEqual(try r.decode(Int.self, 0), cases, "cases", file: file, line: line) }
    let differing = try r.decode(String.self, 2)
    XCTAssertEqual(try r.decode(Int.self, 1), 0, "cases whose stored candidates differ: \(differing)", file: file, line: line)
}

