import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonStorage
import Logging
import SwiftProtobuf
import ServiceLifecycle

/// Producing events: serialize a generated event message into the outbox, inside the
/// transaction of the change it describes.
public enum Events {
    /// Queues `event` (its `header.event_id` must be set) for each destination service.
    public static func publish<E: SwiftProtobuf.Message>(
        _ c: some SQLWriter, _ event: E, eventID: UUID, to destinations: [String]
    ) throws {
        guard !destinations.isEmpty else { return }
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        let payload: [UInt8] = try event.serializedBytes(options: options)
        try Outbox.enqueue(c, eventID: eventID, topic: E.protoMessageName, payload: payload, destinations: destinations)
    }
}

/// The consuming side: `liaison.events.v1.EventSinkService` over a table of appliers keyed by event
/// type. Each batch is applied in one transaction; each event's id is recorded in `inbox` in that
/// transaction, so a redelivered event is acknowledged and changes nothing.
public struct EventSink: Liaison_Events_V1_EventSinkService.SimpleServiceProtocol {
    /// Applies one event inside the batch's transaction. Must touch only the database.
    public typealias Applier = @Sendable (_ c: PostgresConnection, _ payload: [UInt8], _ envelope: Liaison_Events_V1_EventEnvelope) throws -> Void

    let pool: PostgresPool
    let consumer: String
    let appliers: [String: Applier]
    let logger: Logger

    /// `appliers` maps full protobuf type names (`liaison.intake.v1.ReportAccepted`) to appliers.
    public init(pool: PostgresPool, consumer: String, appliers: [String: Applier], logger: Logger) {
        self.pool = pool
        self.consumer = consumer
        self.appliers = appliers
        self.logger = logger
    }

    public func deliverEvents(
        request: Liaison_Events_V1_DeliverEventsRequest, context: ServerContext
    ) async throws -> Liaison_Events_V1_DeliverEventsResponse {
        let domain = "liaison.events.v1"
        guard (1...500).contains(request.events.count) else {
            throw APIError.invalidArgument(domain: domain, field: "events", "must hold between 1 and 500 events")
        }
        var work: [(UUID, String, Applier, Liaison_Events_V1_EventEnvelope)] = []
        var violations: [APIError.FieldViolation] = []
        for (i, e) in request.events.enumerated() {
            guard let id = UUID(uuidString: e.eventID) else {
                violations.append(.init("events[\(i)].event_id", "must be a UUID"))
                continue
            }
            guard e.hasPayload, let slash = e.payload.typeURL.lastIndex(of: "/") else {
                violations.append(.init("events[\(i)].payload", "must be a packed event message"))
                continue
            }
            let type = String(e.payload.typeURL[e.payload.typeURL.index(after: slash)...])
            guard let applier = appliers[type] else {
                throw APIError.failedPrecondition(
                    domain: domain, type: "EVENT_TYPE", subject: type, "\(consumer) does not consume \(type)")
            }
            work.append((id, type, applier, e))
        }
        if !violations.isEmpty { throw APIError.invalidArgument(domain: domain, violations) }
        let consumer = self.consumer
        let batch = work
        do {
            let (applied, duplicates) = try await pool.transaction { c -> (Int, Int) in
                var applied = 0, duplicates = 0
                for (id, _, applier, envelope) in batch {
                    if try Inbox.claim(c, consumer: consumer, eventID: id) {
                        try applier(c, Array(envelope.payload.value), envelope)
                        applied += 1
                    } else {
                        duplicates += 1
                    }
                }
                return (applied, duplicates)
            }
            var response = Liaison_Events_V1_DeliverEventsResponse()
            response.applied = Int32(applied)
            response.duplicates = Int32(duplicates)
            return response
        } catch let e as PostgresError {
            logger.error("applying events failed", metadata: ["error": "\(e)"])
            throw APIError.from(e, domain: domain)
        } catch let e as SwiftProtobuf.BinaryDecodingError {
            throw APIError.invalidArgument(domain: domain, field: "events.payload", "cannot decode: \(e)")
        }
    }
}

/// Delivers outbox batches to peers' `EventSinkService` over gRPC. One client per destination,
/// created from `LIAISON_<DESTINATION>_TARGET` (e.g. `dns:///correlation:50052`).
public final class EventDelivery: Sendable {
    private let clients: [String: GRPCClient<ShimClientTransport>]
    private let producer: String

    /// Every replica of a destination takes calls (round_robin), except those whose health says
    /// the sink is NOT_SERVING: a replica reports that for its shutdown delay before it stops
    /// accepting, so deliveries leave it before grpc's shutdown could refuse them.
    static let coreServiceConfigJSON = #"""
        {"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":"liaison.events.v1.EventSinkService"}}
        """#

    /// `destinations` maps destination names to gRPC targets.
    public init(producer: String, destinations: [String: String]) throws {
        self.producer = producer
        var clients: [String: GRPCClient<ShimClientTransport>] = [:]
        for (name, target) in destinations {
            let transport = try ShimClientTransport(target: target, config: .init(
                coreServiceConfigJSON: Self.coreServiceConfigJSON,
                keepaliveTime: .seconds(30), keepaliveTimeout: .seconds(10)))
            clients[name] = GRPCClient(transport: transport)
        }
        self.clients = clients
    }

    /// Reads `LIAISON_<NAME>_TARGET` for each destination; a missing one is a configuration error.
    public convenience init(producer: String, destinations names: [String], environment: Environment) throws {
        var targets: [String: String] = [:]
        for name in names { targets[name] = try environment.required("\(name.uppercased())_TARGET") }
        try self.init(producer: producer, destinations: targets)
    }

    /// Runs the clients' connection management until cancelled (a ServiceLifecycle service).
    public func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for client in clients.values { group.addTask { try await client.runConnections() } }
        }
    }

    /// Stops the clients.
    public func shutdown() { for c in clients.values { c.beginGracefulShutdown() } }

    /// The relay's delivery function.
    public func deliver(destination: String, messages: [OutboxMessage]) async throws {
        guard let client = clients[destination] else {
            throw ConfigurationError(variable: "LIAISON_\(destination.uppercased())_TARGET", problem: "no target for destination \(destination)")
        }
        var request = Liaison_Events_V1_DeliverEventsRequest()
        request.events = messages.map { m in
            var e = Liaison_Events_V1_EventEnvelope()
            e.eventID = m.eventID.lowercasedString
            e.producer = producer
            e.payload = Google_Protobuf_Any()
            e.payload.typeURL = "type.googleapis.com/" + m.topic
            e.payload.value = Data(m.payload)
            return e
        }
        var options = CallOptions.defaults
        options.timeout = .seconds(8)
        _ = try await Liaison_Events_V1_EventSinkService.Client(wrapping: client).deliverEvents(request, options: options)
    }
}

/// Background service of a producing service: relays its outbox to the peers' event sinks until
/// graceful shutdown.
public struct EventRelayService: ServiceLifecycle.Service {
    let delivery: EventDelivery
    let relay: OutboxRelay

    /// Destinations are service names; their targets come from `LIAISON_<NAME>_TARGET`.
    public init(context: ServiceContext, producer: String, destinations: [String],
                settings: OutboxRelay.Settings = .init()) throws {
        let delivery = try EventDelivery(producer: producer, destinations: destinations, environment: context.environment)
        self.delivery = delivery
        var settings = settings
        if settings.destinations.isEmpty { settings.destinations = destinations }
        self.relay = OutboxRelay(
            pool: context.pool, owner: context.configuration.replicaID, settings: settings, logger: context.logger
        ) { destination, messages in
            try await delivery.deliver(destination: destination, messages: messages)
        }
    }

    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await delivery.run() }
            try await relay.run()
            delivery.shutdown()
            try await group.waitForAll()
        }
    }
}
