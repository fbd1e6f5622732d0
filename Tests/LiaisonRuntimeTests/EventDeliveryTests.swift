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

/// Producer outbox -> relay -> gRPC (shim transport, real socket) -> consumer EventSink -> inbox.
final class EventDeliveryTests: XCTestCase {
    static let sinkService = "liaison.events.v1.EventSinkService"

    func testEventsCrossServicesOverGRPCAndApplyOnceWhenRedelivered() async throws {
        let logger = Logger(label: "test")
        let producerPool = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("producer"), maxConnections: 4))
        let consumerPool = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("consumer"), maxConnections: 4))
        for pool in [producerPool, consumerPool] {
            try await Migrator(pool: pool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
        }
        try await consumerPool.query("CREATE TABLE seen (event_id text, aggregate text)")

        // The consumer: an EventSink that records each header it applies.
        let sink = EventSink(pool: consumerPool, consumer: "consumer", appliers: [
            Liaison_Events_V1_DeliverEventsResponse.protoMessageName: { c, payload, envelope in
                _ = try Liaison_Events_V1_DeliverEventsResponse(serializedBytes: payload)
                try c.query("INSERT INTO seen VALUES ($1, $2)", [envelope.eventID, envelope.producer])
            },
        ], logger: logger)
        let transport = ShimServerTransport(config: .init(listenAddress: "127.0.0.1:0"))
        let server = GRPCServer(transport: transport, services: [sink])
        let serving = Task { try await server.serve() }
        let port = try await transport.listeningPort
        // As a service does once it is ready: delivery skips replicas whose sink is not SERVING.
        transport.health.setServingStatus(service: Self.sinkService, serving: true)

        // The producer: 20 events in its outbox (any message type works as a payload).
        var ids: [UUID] = []
        for i in 0..<20 {
            let id = UUID()
            ids.append(id)
            var event = Liaison_Events_V1_DeliverEventsResponse()
            event.applied = Int32(i)
            let payload = event
            try await producerPool.transaction { c in
                try Events.publish(c, payload, eventID: id, to: ["consumer"])
            }
        }
        let delivery = try EventDelivery(producer: "producer", destinations: ["consumer": "ipv4:127.0.0.1:\(port)"])
        let connections = Task { try await delivery.run() }
        let relay = OutboxRelay(pool: producerPool, owner: "p1", logger: logger) { destination, messages in
            try await delivery.deliver(destination: destination, messages: messages)
        }
        while try await relay.runOnce() > 0 {}

        // Redeliver everything (as after a relay crash): nothing is applied twice.
        try await producerPool.query("UPDATE outbox SET state = 'pending', next_attempt_at = now()")
        while try await relay.runOnce() > 0 {}

        let row = try await consumerPool.query("SELECT count(*), count(DISTINCT event_id) FROM seen").first!
        XCTAssertEqual(try row.decode(Int.self, 0), 20)
        XCTAssertEqual(try row.decode(Int.self, 1), 20)
        let producers = try await consumerPool.query("SELECT DISTINCT aggregate FROM seen").rows.map { try $0.decode(String.self, 0) }
        XCTAssertEqual(producers, ["producer"])
        let undelivered = try await producerPool.query("SELECT count(*) FROM outbox WHERE state <> 'delivered'").first!.decode(Int.self, 0)
        XCTAssertEqual(undelivered, 0)

        // An event type the sink does not consume is refused with FAILED_PRECONDITION.
        try await producerPool.transaction { c in
            try Events.publish(c, Liaison_Events_V1_EventEnvelope(), eventID: UUID(), to: ["consumer"])
        }
        do {
            let messages = try await producerPool.query("SELECT id, event_id, topic, payload FROM outbox WHERE state = 'pending'").rows.map {
                OutboxMessage(id: try $0.decode(Int64.self, 0), eventID: try $0.decode(UUID.self, 1), destination: "consumer",
                              topic: try $0.decode(String.self, 2), payload: try $0.decode(ByteA.self, 3).bytes, attempts: 1)
            }
            try await delivery.deliver(destination: "consumer", messages: messages)
            XCTFail("expected FAILED_PRECONDITION")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .failedPrecondition)
        }

        delivery.shutdown()
        _ = try? await connections.value
        server.beginGracefulShutdown()
        _ = try? await serving.value
        await producerPool.close()
        await consumerPool.close()
    }

    /// Two sink replicas behind one target: deliveries spread over both, leave a replica whose
    /// health says NOT_SERVING (as one does during its shutdown delay) and come back when it
    /// serves again.
    func testDeliverySkipsASinkReplicaThatIsNotServing() async throws {
        let logger = Logger(label: "test")
        let consumerPool = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("consumer"), maxConnections: 4))
        try await Migrator(pool: consumerPool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
        try await consumerPool.query("CREATE TABLE seen (event_id text PRIMARY KEY, replica text)")

        var transports: [ShimServerTransport] = [], servers: [GRPCServer<ShimServerTransport>] = [], serving: [Task<Void, Error>] = []
        var ports: [Int] = []
        for replica in ["a", "b"] {
            let sink = EventSink(pool: consumerPool, consumer: "consumer", appliers: [
                Liaison_Events_V1_DeliverEventsResponse.protoMessageName: { c, _, envelope in
                    try c.query("INSERT INTO seen VALUES ($1, $2)", [envelope.eventID, replica])
                },
            ], logger: logger)
            let transport = ShimServerTransport(config: .init(listenAddress: "127.0.0.1:0"))
            let server = GRPCServer(transport: transport, services: [sink])
            serving.append(Task { try await server.serve() })
            ports.append(try await transport.listeningPort)
            transport.health.setServingStatus(service: Self.sinkService, serving: true)
            transports.append(transport)
            servers.append(server)
        }
        let delivery = try EventDelivery(producer: "producer", destinations: ["consumer": "ipv4:" + ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")])
        let connections = Task { try await delivery.run() }

        var next: Int64 = 0
        /// Delivers `n` events one call each; returns the replica that applied each.
        func deliver(_ n: Int) async throws -> [String] {
            var replicas: [String] = []
            for _ in 0..<n {
                next += 1
                let id = UUID()
                try await delivery.deliver(destination: "consumer", messages: [OutboxMessage(
                    id: next, eventID: id, destination: "consumer", topic: Liaison_Events_V1_DeliverEventsResponse.protoMessageName,
                    payload: try Liaison_Events_V1_DeliverEventsResponse().serializedBytes(), attempts: 1)])
                replicas.append(try await consumerPool.query("SELECT replica FROM seen WHERE event_id = $1", [id.uuidString.lowercased()]).first!.decode(String.self, 0))
            }
            return replicas
        }
        /// Delivers pairs of events until `done` holds for 5 pairs in a row: the client learns of
        /// a health change one stream message later, not at once.
        func settle(_ what: String, _ done: ([String]) -> Bool) async throws {
            var streak = 0
            for _ in 0..<250 where streak < 5 {
                streak = done(try await deliver(2)) ? streak + 1 : 0
            }
            XCTAssertEqual(streak, 5, "delivery never settled: \(what)")
        }

        let both = try await deliver(20)
        XCTAssertEqual(Set(both), ["a", "b"], "round_robin uses both replicas")

        transports[0].health.setServingStatus(service: Self.sinkService, serving: false)
        try await settle("replica a skipped") { !$0.contains("a") }
        let whileDraining = try await deliver(20)
        XCTAssertEqual(Set(whileDraining), ["b"], "no delivery goes to the replica that is not serving")

        transports[0].health.setServingStatus(service: Self.sinkService, serving: true)
        try await settle("both replicas used") { Set($0).count == 2 }
        let again = try await deliver(20)
        XCTAssertEqual(Set(again), ["a", "b"], "the replica takes deliveries again once it serves")

        let applied = try await consumerPool.query("SELECT count(*) FROM seen").first!.decode(Int.self, 0)
        XCTAssertEqual(applied, Int(next))

        delivery.shutdown()
        _ = try? await connections.value
        for server in servers { server.beginGracefulShutdown() }
        for task in serving { _ = try? await task.value }
        await consumerPool.close()
    }
}
