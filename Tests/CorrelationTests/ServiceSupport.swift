import Correlation
import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import Logging
import SwiftProtobuf
import XCTest

/// One database, `replicas` correlation servers (each with its own pool) on 127.0.0.1, and one
/// client channel balancing over all of them (round robin).
final class CorrelationStack: @unchecked Sendable {
    struct Replica {
        let pool: PostgresPool
        let server: ServerAssembly
        let port: Int
        let settings: CorrelationSettings
        let calls: Shared<[String: Int]>
        var detector: EmergingIssueDetectorService
        var refresher: BlastRadiusRefresher
    }

    let url: String
    var replicas: [Replica] = []
    var serving: [Task<Void, any Error>] = []
    let client: GRPCClient<ShimClientTransport>
    let connections: Task<Void, any Error>
    let logger = Logger(label: "correlation-test")

    var correlation: Liaison_Correlation_V1_CorrelationService.Client<ShimClientTransport> { .init(wrapping: client) }
    var sink: Liaison_Events_V1_EventSinkService.Client<ShimClientTransport> { .init(wrapping: client) }
    var pool: PostgresPool { replicas[0].pool }

    init(replicas count: Int = 1, configure: (inout CorrelationSettings) -> Void = { _ in }) async throws {
        url = try TestPostgres.shared.createDatabase("corr")
        let migrations = try Migrator.load(directory: TestPostgres.repositoryRoot + "/services/correlation/migrations")
        var ports: [Int] = []
        for i in 0..<count {
            let pool = PostgresPool(.init(url: url, maxConnections: 4))
            if i == 0 {
                try await Migrator(pool: pool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
                try await Migrator(pool: pool).migrate(namespace: "correlation", migrations)
            }
            var settings = CorrelationSettings()
            settings.replicaID = "replica-\(i)"
            settings.detectorInterval = .seconds(1)
            settings.watchPoll = .milliseconds(200)
            settings.neighbours = CorrelationSettings.parseNeighbours("eu-south:eu-central,eu-central:eu-south|eu-north")
            configure(&settings)
            // Assembled as `CorrelationService` is served (direct unary path included); the
            // observer counts the calls each replica answered.
            let calls = Shared<[String: Int]>([:])
            let server = try ServerAssembly(
                services: [CorrelationHandler(pool: pool, settings: settings, logger: logger).served,
                           IntakeEvents.sink(pool: pool, settings: settings, logger: logger).served],
                config: .init(listenAddress: "127.0.0.1:0"),
                observer: { method, _, _ in calls.with { $0[method.method, default: 0] += 1 } })
            serving.append(Task { try await server.serve() })
            let port = try await server.port
            ports.append(port)
            replicas.append(Replica(pool: pool, server: server, port: port, settings: settings, calls: calls,
                                    detector: EmergingIssueDetectorService(pool: pool, settings: settings, logger: logger),
                                    refresher: BlastRadiusRefresher(pool: pool, settings: settings, logger: logger)))
        }
        let target = "ipv4:" + ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")
        let transport = try ShimClientTransport(target: target, config: .init(
            coreServiceConfigJSON: #"{"loadBalancingConfig":[{"round_robin":{}}]}"#))
        client = GRPCClient(transport: transport)
        let c = client
        connections = Task { try await c.runConnections() }
    }

    func shutdown() async {
        client.beginGracefulShutdown()
        _ = try? await connections.value
        for r in replicas { r.server.shutdown() }
        for t in serving { _ = try? await t.value }
        for r in replicas { await r.pool.close() }
    }

    // MARK: Events from intake

    static func header(_ id: UUID, aggregate: String, version: Int64 = 0) -> Liaison_Common_V1_EventHeader {
        var h = Liaison_Common_V1_EventHeader()
        h.eventID = id.uuidString.lowercased()
        h.occurTime = Google_Protobuf_Timestamp(date: Date())
        h.aggregate = aggregate
        h.aggregateVersion = version
        h.producer = "intake"
        return h
    }

    static func envelope<M: SwiftProtobuf.Message>(_ message: M, id: UUID) throws -> Liaison_Events_V1_EventEnvelope {
        var e = Liaison_Events_V1_EventEnvelope()
        e.eventID = id.uuidString.lowercased()
        e.producer = "intake"
        e.payload = try Google_Protobuf_Any(message: message)
        return e
    }

    /// Delivers envelopes through the EventSink in batches of 500; returns (applied, duplicates).
    @discardableResult
    func deliver(_ envelopes: [Liaison_Events_V1_EventEnvelope]) async throws -> (Int, Int) {
        var applied = 0, duplicates = 0
        var i = 0
        while i < envelopes.count {
            var request = Liaison_Events_V1_DeliverEventsRequest()
            request.events = Array(envelopes[i..<min(i + 500, envelopes.count)])
            let r = try await sink.deliverEvents(request)
            applied += Int(r.applied)
            duplicates += Int(r.duplicates)
            i += 500
        }
        return (applied, duplicates)
    }

    static func customerEvent(_ id: String, _ attributes: Liaison_Common_V1_CustomerAttributes, version: Int64,
                              closed: Bool = false, eventID: UUID = UUID()) throws -> Liaison_Events_V1_EventEnvelope {
        var e = Liaison_Intake_V1_CustomerUpserted()
        e.header = header(eventID, aggregate: "customers/\(id)", version: version)
        e.customer.name = "customers/\(id)"
        e.customer.attributes = attributes
        e.customer.state = closed ? .closed : .active
        e.customer.updateTime = Google_Protobuf_Timestamp(date: Date())
        return try envelope(e, id: eventID)
    }

    static func reportEvent(_ id: String, customer: String, _ attributes: Liaison_Common_V1_CustomerAttributes,
                            hint: String = "", text: String = "it does not work", at time: Date = Date(),
                            eventID: UUID = UUID()) throws -> Liaison_Events_V1_EventEnvelope {
        var e = Liaison_Intake_V1_ReportAccepted()
        e.header = header(eventID, aggregate: "reports/\(id)")
        e.report.name = "reports/\(id)"
        e.report.customer = "customers/\(customer)"
        e.report.case = "cases/case-\(id)"
        e.report.text = text
        e.report.symptom = .errors
        e.report.serviceHint = hint
        e.report.receiveTime = Google_Protobuf_Timestamp(date: time)
        e.report.customerSnapshot = attributes
        e.customerSnapshot = attributes
        return try envelope(e, id: eventID)
    }

    // MARK: A synthetic customer base

    /// Background for the emerging-issue detector: six old reports (3-18 h ago) and three recent
    /// ones spread over other regions.
    static func backgroundNoise() throws -> [Liaison_Events_V1_EventEnvelope] {
        var events: [Liaison_Events_V1_EventEnvelope] = []
        for i in 0..<6 {
            events.append(try reportEvent("old\(i)", customer: "c\(1000 + i)", attributes(1000 + i),
                                          at: Date().addingTimeInterval(-Double(3 + i * 3) * 3600)))
        }
        for i in [1, 2, 4] {
            events.append(try reportEvent("noise\(i)", customer: "c\(i)", attributes(i)))
        }
        return events
    }

    static let regions = ["eu-south", "eu-central", "eu-north"]
    static let countries = ["eu-south": ["IT", "ES", "GR"], "eu-central": ["DE", "AT", "CH"], "eu-north": ["SE", "FI", "NO"]]

    static func attributes(_ i: Int, region: String? = nil) -> Liaison_Common_V1_CustomerAttributes {
        var a = Liaison_Common_V1_CustomerAttributes()
        a.region = region ?? regions[i % 3]
        a.country = countries[a.region]![(i / 3) % 3]
        a.accountNumber = "\(1 + (i / 7) % 9)\(100_000 + i)"
        a.tier = [.free, .standard, .business, .enterprise][(i / 2) % 4]
        var p = Liaison_Common_V1_PlatformUsage()
        p.platform = [.android, .ios, .web][(i / 5) % 3]
        p.clientVersion = "5.\((i / 11) % 3).\(i % 2)"
        a.platforms = [p]
        if i % 10 == 0 { a.features = ["teapot-customization"] }
        return a
    }

    /// Delivers `count` customers c0..c{count-1}.
    func seedCustomers(_ count: Int) async throws {
        let events = try (0..<count).map { try Self.customerEvent("c\($0)", Self.attributes($0), version: 1) }
        try await deliver(events)
    }

    // MARK: API helpers

    func createService(_ id: String, aliases: [String] = [], dependencies: [String] = []) async throws -> Liaison_Correlation_V1_TechnicalService {
        var r = Liaison_Correlation_V1_CreateServiceRequest()
        r.serviceID = id
        r.service.displayName = id.capitalized
        r.service.aliases = aliases
        r.service.dependencies = dependencies
        r.requestID = UUID().uuidString
        return try await correlation.createService(r)
    }

    func declare(_ title: String, services: [String], external: String? = nil, requestID: String = UUID().uuidString,
                 impactStart: Date? = nil) async throws -> Liaison_Correlation_V1_Incident {
        var r = Liaison_Correlation_V1_DeclareIncidentRequest()
        r.incident.title = title
        r.incident.services = services
        r.incident.severity = .sev2
        if let external {
            r.incident.externalReference.system = "pager"
            r.incident.externalReference.id = external
        }
        if let impactStart { r.incident.impactStartTime = Google_Protobuf_Timestamp(date: impactStart) }
        r.source = .monitoring
        r.requestID = requestID
        return try await correlation.declareIncident(r)
    }

    /// Links `reports` (ids) to `incident` by hand, as agent a1.
    @discardableResult
    func link(_ incident: String, _ reports: [String]) async throws -> Liaison_Correlation_V1_LinkReportsResponse {
        var link = Liaison_Correlation_V1_LinkReportsRequest()
        link.incident = incident
        link.reports = reports.map { "reports/\($0)" }
        link.agent = "agents/a1"
        link.requestID = UUID().uuidString
        return try await correlation.linkReports(link)
    }

    /// GetBlastRadius after the refresher's pass (what a client sees a moment after the change:
    /// reads compute, the refresher records the revision).
    func blastRadius(_ incident: String) async throws -> Liaison_Correlation_V1_BlastRadius {
        try await replicas[0].refresher.runOnce()
        var r = Liaison_Correlation_V1_GetBlastRadiusRequest()
        r.incident = incident
        return try await correlation.getBlastRadius(r)
    }
}

func segmentText(_ s: Liaison_Common_V1_Segment) -> String {
    s.conditions.map { c in
        let name = ["", "region", "country", "account_partition", "platform", "client_version", "client_version_minor",
                    "feature", "tier", "service"][c.dimension.rawValue]
        return "\(name)=\(c.value)"
    }.joined(separator: "&")
}

@discardableResult
func XCTAssertRPCError<T>(_ code: RPCError.Code, _ body: @autoclosure () async throws -> T,
                          file: StaticString = #filePath, line: UInt = #line) async -> RPCError? {
    do {
        _ = try await body()
        XCTFail("expected \(code)", file: file, line: line)
        return nil
    } catch let e as RPCError {
        XCTAssertEqual(e.code, code, "\(e.message)", file: file, line: line)
        return e
    } catch {
        XCTFail("unexpected \(error)", file: file, line: line)
        return nil
    }
}
