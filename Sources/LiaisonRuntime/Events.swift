import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonStorage
import Logging
import SwiftProtobuf
import ServiceLifecycle
import Metrics
import Synchronization

/// Producing events: serialize a generated event message into the outbox, inside the
/// transaction of the change it describes.
public enum Events {
    /// A new event header (fresh event id) for a change of `aggregate` to `version`, made by
    /// `producer` at `time` for `requestID`; returns it with its id for ``publish(_:_:eventID:to:)``.
    public static func header(producer: String, aggregate: String, version: Int64, requestID: String = "",
                              at time: Date = Date()) -> (Liaison_Common_V1_EventHeader, UUID) {
        let id = RandomUUID.make()
        var h = Liaison_Common_V1_EventHeader()
        h.eventID = id.lowercasedString
        let micros = time.postgresMicros  // PostgreSQL's precision, as stored
        var (seconds, fraction) = micros.quotientAndRemainder(dividingBy: 1_000_000)
        if fraction < 0 {
            seconds -= 1
            fraction += 1_000_000
        }
        h.occurTime = Google_Protobuf_Timestamp(seconds: seconds, nanos: Int32(fraction * 1000))
        h.aggregate = aggregate
        h.aggregateVersion = version
        h.producer = producer
        h.requestID = requestID
        return (h, id)
    }

    /// Makes the event with a fresh header (`make` receives it) and queues it for `destinations`;
    /// nothing at all when there are none. The one way a service publishes a change.
    public static func publish<E: SwiftProtobuf.Message>(
        _ c: some SQLWriter, producer: String, to destinations: [String], aggregate: String, version: Int64,
        _ make: (Liaison_Common_V1_EventHeader) -> E
    ) throws {
        guard !destinations.isEmpty else { return }
        let (h, id) = header(producer: producer, aggregate: aggregate, version: version)
        try publish(c, make(h), eventID: id, to: destinations)
    }

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
///
/// Every event gets its own outcome: APPLIED, DUPLICATE, or REJECTED with a reason (no id, no
/// payload, a type this sink does not consume, a payload that does not decode, or an applier
/// that refuses it for good: a decoding or validation error, a value storage cannot hold, a
/// data or integrity error of PostgreSQL). A rejected event changes nothing and is dead-lettered
/// alone by the producer; the rest of its batch is applied. Transient failures (the database
/// unreachable, a conflict, cancellation) fail the whole call, and the relay retries the batch.
/// A batch runs without savepoints; only when one of its events is refused does the transaction
/// run again with a savepoint around each event, so clean batches pay nothing for the isolation.
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

    /// One event of a batch, checked before any database work.
    enum Plan: Sendable {
        case apply(UUID, Applier, Liaison_Events_V1_EventEnvelope)
        case reject(String)
    }

    /// Whether an applier's error refuses the event for good (it would fail the same way every
    /// time), rather than a passing failure of the database or the call.
    public static func isRejection(_ error: any Error) -> Bool {
        switch error {
        case let e as PostgresError:
            switch e.kind {
            case .client, .decoding: return true
            case .server: return e.sqlStateClass == "22" || e.sqlStateClass == "23"
            case .connection, .cancelled, .deadlineExceeded, .overloaded: return false
            }
        case is CancellationError, is DeadlineExceeded: return false
        default: return true  // decoding, validation, an APIError of the applier
        }
    }

    public func deliverEvents(
        request: Liaison_Events_V1_DeliverEventsRequest, context: ServerContext
    ) async throws -> Liaison_Events_V1_DeliverEventsResponse {
        let domain = "liaison.events.v1"
        guard (1...500).contains(request.events.count) else {
            throw APIError.invalidArgument(domain: domain, field: "events", "must hold between 1 and 500 events")
        }
        let consumer = self.consumer
        let plans: [Plan] = request.events.map { e in
            guard let id = UUID(uuidString: e.eventID) else { return .reject("event_id '\(e.eventID.prefix(64))' is not a UUID") }
            guard e.hasPayload, let slash = e.payload.typeURL.lastIndex(of: "/") else {
                return .reject("payload is not a packed event message")
            }
            let type = String(e.payload.typeURL[e.payload.typeURL.index(after: slash)...])
            guard let applier = appliers[type] else { return .reject("\(consumer) does not consume \(type.prefix(200))") }
            return .apply(id, applier, e)
        }
        // Events refused by an applier on an earlier run of the transaction (its index, why).
        let refused = Mutex<[Int: String]>([:])
        struct Refused: Error {}
        do {
            var isolate = false
            var kinds: [Liaison_Events_V1_EventOutcome.Kind] = []
            while true {
                let isolated = isolate
                let known = refused.withLock { $0 }
                do {
                    kinds = try await pool.transaction { c -> [Liaison_Events_V1_EventOutcome.Kind] in
                        var kinds: [Liaison_Events_V1_EventOutcome.Kind] = []
                        kinds.reserveCapacity(plans.count)
                        for (i, plan) in plans.enumerated() {
                            guard case .apply(let id, let applier, let envelope) = plan, known[i] == nil else {
                                kinds.append(.rejected)
                                continue
                            }
                            if isolated { try c.execute(script: "SAVEPOINT liaison_event") }
                            do {
                                if try Inbox.claim(c, consumer: consumer, eventID: id) {
                                    try applier(c, Array(envelope.payload.value), envelope)
                                    kinds.append(.applied)
                                } else {
                                    kinds.append(.duplicate)
                                }
                                if isolated { try c.execute(script: "RELEASE SAVEPOINT liaison_event") }
                            } catch where Self.isRejection(error) {
                                refused.withLock { $0[i] = "\(error)" }
                                guard isolated else { throw Refused() }
                                try c.execute(script: "ROLLBACK TO SAVEPOINT liaison_event; RELEASE SAVEPOINT liaison_event")
                                kinds.append(.rejected)
                            }
                        }
                        return kinds
                    }
                    break
                } catch is Refused {
                    isolate = true  // run again, each event behind a savepoint
                }
            }
            var response = Liaison_Events_V1_DeliverEventsResponse()
            let reasons = refused.withLock { $0 }
            for (i, (plan, kind)) in zip(plans, kinds).enumerated() {
                var outcome = Liaison_Events_V1_EventOutcome()
                outcome.eventID = request.events[i].eventID
                outcome.kind = kind
                if kind == .rejected {
                    if case .reject(let why) = plan { outcome.reason = why } else { outcome.reason = reasons[i] ?? "refused" }
                    logger.warning("event rejected", metadata: [
                        "event_id": "\(outcome.eventID.prefix(64))", "producer": "\(request.events[i].producer.prefix(64))",
                        "reason": "\(outcome.reason)",
                    ])
                }
                response.outcomes.append(outcome)
            }
            response.applied = Int32(kinds.count { $0 == .applied })
            response.duplicates = Int32(kinds.count { $0 == .duplicate })
            response.rejected = Int32(kinds.count { $0 == .rejected })
            if response.rejected > 0 {
                Counter(label: "liaison_events_rejected_total", dimensions: [("consumer", consumer)]).increment(by: Int(response.rejected))
            }
            return response
        } catch let e as PostgresError {
            logger.error("applying events failed", metadata: ["error": "\(e)"])
            throw APIError.from(e, domain: domain)
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

    /// The relay's delivery function: the events the destination rejected for good, with its
    /// reasons (a sink that gives no outcomes applied them all).
    public func deliver(destination: String, messages: [OutboxMessage]) async throws -> OutboxRelay.DeliveryReport {
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
        let response = try await Liaison_Events_V1_EventSinkService.Client(wrapping: client).deliverEvents(request, options: options)
        var report = OutboxRelay.DeliveryReport()
        guard response.outcomes.count == messages.count else { return report }
        for (m, o) in zip(messages, response.outcomes) where o.kind == .rejected {
            report.rejected[m.id] = o.reason.isEmpty ? "rejected by \(destination)" : o.reason
        }
        return report
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
            pool: context.pool, owner: context.configuration.replicaID, settings: settings, logger: context.logger,
            deliverReporting: { destination, messages in
            try await delivery.deliver(destination: destination, messages: messages)
        })
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
