import Foundation
import GRPCCore
import GRPCProtobuf
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import Logging
@testable import SLA
import SwiftProtobuf
import XCTest

/// One sla server on 127.0.0.1:0 over a fresh database, assembled as `SLAService` is served
/// (direct unary path included), with a client and the evaluator run by hand (`evaluate()`), so
/// tests decide when the background work happens.
final class SLAStack: @unchecked Sendable {
    let url: String
    let pool: PostgresPool
    let server: ServerAssembly
    let serving: Task<Void, any Error>
    let client: GRPCClient<ShimClientTransport>
    let connections: Task<Void, any Error>
    let evaluator: EvaluatorService
    let settings: SLASettings
    let logger = Logger(label: "sla-test")

    var sla: Liaison_Sla_V1_SlaService.Client<ShimClientTransport> { .init(wrapping: client) }
    var sink: Liaison_Events_V1_EventSinkService.Client<ShimClientTransport> { .init(wrapping: client) }

    init() async throws {
        url = try TestPostgres.shared.createDatabase("sla")
        pool = PostgresPool(.init(url: url, maxConnections: 4))
        let migrations = try Migrator.load(directory: TestPostgres.repositoryRoot + "/services/sla/migrations")
        try await Migrator(pool: pool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
        try await Migrator(pool: pool).migrate(namespace: "sla", migrations)
        var s = SLASettings()
        s.destinations = ["followup"]  // events are queued in the outbox (no relay runs here)
        settings = s
        server = try ServerAssembly(
            services: [SLAHandler(pool: pool, settings: s, logger: logger).served, InboundEvents.sink(pool: pool, logger: logger).served],
            config: .init(listenAddress: "127.0.0.1:0"))
        let server = self.server
        serving = Task { try await server.serve() }
        let port = try await server.port
        client = GRPCClient(transport: try ShimClientTransport(target: "ipv4:127.0.0.1:\(port)"))
        let c = client
        connections = Task { try await c.runConnections() }
        evaluator = EvaluatorService(pool: pool, settings: s, logger: logger)
    }

    func shutdown() async {
        client.beginGracefulShutdown()
        _ = try? await connections.value
        server.shutdown()
        _ = try? await serving.value
        await pool.close()
    }

    @discardableResult
    func evaluate() async throws -> (incidents: Int, customers: Int) { try await evaluator.drain() }

    /// Count of outbox rows of an event type.
    func outbox(_ type: String) async throws -> Int64 {
        try await pool.query("SELECT count(*) FROM outbox WHERE topic = $1", ["liaison.sla.v1." + type]).first!.decode(Int64.self, 0)
    }

    // MARK: Builders

    static func rid() -> String { UUID().uuidString.lowercased() }

    static func ts(_ d: Date) -> Google_Protobuf_Timestamp { Google_Protobuf_Timestamp(date: d) }

    static func money(_ units: Int64, _ nanos: Int32 = 0, _ code: String = "EUR") -> Liaison_Common_V1_Money {
        var m = Liaison_Common_V1_Money()
        m.currencyCode = code
        m.units = units
        m.nanos = nanos
        return m
    }

    /// A contract: `target` per month, the cloud-provider credit schedule, a fee.
    static func contract(customer: String? = nil, tier: Liaison_Common_V1_Tier? = nil, target: Double = 99.9,
                         start: Date, zone: String = "UTC", fee: Int64 = 2000) -> Liaison_Sla_V1_Contract {
        var k = Liaison_Sla_V1_Contract()
        k.displayName = "Test SLA"
        if let customer { k.customer = "customers/" + customer }
        if let tier { k.tier = tier }
        var o = Liaison_Sla_V1_AvailabilityObjective()
        o.targetPercent = target
        o.period = .month
        k.availabilityObjectives = [o]
        k.creditSchedule = [(99.99, 10.0), (99.0, 25.0), (95.0, 100.0)].map { below, credit in
            var s = Liaison_Sla_V1_CreditStep()
            s.availabilityBelowPercent = below
            s.creditPercent = credit
            return s
        }
        k.periodFee = money(fee)
        k.timeZone = zone
        k.effectiveWindow.startTime = ts(start)
        return k
    }

    func create(_ id: String, _ k: Liaison_Sla_V1_Contract, activate: Bool = true) async throws -> Liaison_Sla_V1_Contract {
        var r = Liaison_Sla_V1_CreateContractRequest()
        r.contractID = id
        r.contract = k
        r.requestID = Self.rid()
        let created = try await sla.createContract(r)
        guard activate else { return created }
        var a = Liaison_Sla_V1_ActivateContractRequest()
        a.name = created.name
        a.requestID = Self.rid()
        return try await sla.activateContract(a)
    }

    func impact(_ customer: String, service: String = "services/checkout", from: Date, to: Date?, incident: String = "") async throws -> Liaison_Sla_V1_Impact {
        var r = Liaison_Sla_V1_CreateImpactRequest()
        r.parent = "customers/" + customer
        r.impact.service = service
        r.impact.interval.startTime = Self.ts(from)
        if let to { r.impact.interval.endTime = Self.ts(to) }
        r.impact.incident = incident
        r.impact.author = "alice"
        r.impact.note = "outage seen in the support queue"
        r.requestID = Self.rid()
        return try await sla.createImpact(r)
    }

    // MARK: Events in

    static func header(aggregate: String, version: Int64, producer: String) -> Liaison_Common_V1_EventHeader {
        var h = Liaison_Common_V1_EventHeader()
        h.eventID = rid()
        h.occurTime = ts(Date())
        h.aggregate = aggregate
        h.aggregateVersion = version
        h.producer = producer
        return h
    }

    func deliver(_ messages: [any SwiftProtobuf.Message]) async throws -> Liaison_Events_V1_DeliverEventsResponse {
        var r = Liaison_Events_V1_DeliverEventsRequest()
        r.events = try messages.map { m in
            var e = Liaison_Events_V1_EventEnvelope()
            e.eventID = Self.rid()
            e.producer = "test"
            e.payload = try Google_Protobuf_Any(message: m)
            return e
        }
        return try await sink.deliverEvents(r)
    }

    static func customer(_ id: String, region: String, tier: Liaison_Common_V1_Tier = .enterprise, whiteGlove: Bool = false,
                         version: Int64 = 1) -> Liaison_Intake_V1_CustomerUpserted {
        var e = Liaison_Intake_V1_CustomerUpserted()
        e.header = header(aggregate: "customers/" + id, version: version, producer: "intake")
        e.customer.name = "customers/" + id
        e.customer.attributes.region = region
        e.customer.attributes.tier = tier
        e.customer.attributes.whiteGlove = whiteGlove
        e.customer.attributes.accountNumber = "1000" + id
        return e
    }

    static func incident(_ id: UUID, start: Date, state: Liaison_Correlation_V1_IncidentState = .declared, severity: Liaison_Common_V1_Severity = .sev2,
                         services: [String] = ["services/checkout"], version: Int64, mitigated: Date? = nil) -> Liaison_Correlation_V1_Incident {
        var i = Liaison_Correlation_V1_Incident()
        i.name = "incidents/" + id.uuidString.lowercased()
        i.title = "checkout down"
        i.services = services
        i.severity = severity
        i.state = state
        i.impactStartTime = ts(start)
        i.createTime = ts(start)
        i.updateTime = ts(Date())
        if let mitigated { i.mitigateTime = ts(mitigated) }
        return i
    }

    static func declared(_ i: Liaison_Correlation_V1_Incident, version: Int64 = 1) -> Liaison_Correlation_V1_IncidentDeclared {
        var e = Liaison_Correlation_V1_IncidentDeclared()
        e.header = header(aggregate: i.name, version: version, producer: "correlation")
        e.incident = i
        return e
    }

    static func blast(_ incident: String, regions: [String], revision: Int64, start: Date) -> Liaison_Correlation_V1_BlastRadiusChanged {
        var e = Liaison_Correlation_V1_BlastRadiusChanged()
        e.header = header(aggregate: incident, version: revision, producer: "correlation")
        e.incident = incident
        e.blastRadius.incident = incident
        e.blastRadius.revision = revision
        e.blastRadius.window.startTime = ts(start)
        e.blastRadius.affected = regions.map { r in
            var entry = Liaison_Correlation_V1_BlastRadiusEntry()
            var d = Liaison_Common_V1_DimensionValue()
            d.dimension = .region
            d.value = r
            entry.segment.conditions = [d]
            return entry
        }
        return e
    }

    static func linked(_ incident: String, customer: String, at: Date, version: Int64 = 2) -> Liaison_Correlation_V1_ReportLinked {
        var e = Liaison_Correlation_V1_ReportLinked()
        e.link.name = incident + "/links/" + rid()
        e.header = header(aggregate: e.link.name, version: version, producer: "correlation")
        e.link.customer = "customers/" + customer
        e.link.report = "reports/" + rid()
        e.link.state = .confirmed
        e.link.reportReceiveTime = ts(at)
        e.services = ["services/checkout"]
        return e
    }
}

/// Start of the current month in UTC.
func monthStartUTC(_ now: Date = Date()) -> Date {
    var cal = Calendar(identifier: .gregorian)
    cal.timeZone = TimeZone(identifier: "UTC")!
    return cal.dateInterval(of: .month, for: now)!.start
}

func monthLengthMs(_ now: Date = Date()) -> Int64 {
    var cal = Calendar(identifier: .gregorian)
    cal.timeZone = TimeZone(identifier: "UTC")!
    return Int64(cal.dateInterval(of: .month, for: now)!.duration * 1000)
}

func ms(_ d: Google_Protobuf_Duration) -> Int64 { d.seconds * 1000 + Int64(d.nanos / 1_000_000) }

func rpcCode(_ body: () async throws -> Void) async -> RPCError.Code? {
    do { try await body(); return nil } catch let e as RPCError { return e.code } catch { return .unknown }
}

/// The field paths of an INVALID_ARGUMENT's google.rpc.BadRequest (empty for other errors).
func violatedFields(_ body: () async throws -> Void) async -> [String] {
    do {
        try await body()
        return []
    } catch let e as RPCError {
        guard e.code == .invalidArgument, let status = try? e.unpackGoogleRPCStatus() else { return [] }
        return status.details.flatMap { d -> [String] in d.badRequest?.violations.map(\.field) ?? [] }
    } catch {
        return []
    }
}
