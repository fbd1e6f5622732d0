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

    /// A producer and a consumer database (platform tables migrated; the consumer also gets
    /// `table`), and the consumer's EventSink with `applier` for DeliverEventsResponse payloads,
    /// served over the shim transport and SERVING, as a service does once it is ready.
    struct Pair {
        let producer: PostgresPool
        let consumer: PostgresPool
        let server: GRPCServer<ShimServerTransport>
        let serving: Task<Void, any Error>
        let port: Int
    }

    func makePair(table: String, applier: @escaping EventSink.Applier) async throws -> Pair {
        let producerPool = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("producer"), maxConnections: 4))
        let consumerPool = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("consumer"), maxConnections: 4))
        for pool in [producerPool, consumerPool] {
            try await Migrator(pool: pool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
        }
        try await consumerPool.query(table)
        let sink = EventSink(pool: consumerPool, consumer: "consumer", appliers: [
            Liaison_Events_V1_DeliverEventsResponse.protoMessageName: applier,
        ], logger: Logger(label: "test"))
        let transport = ShimServerTransport(config: .init(listenAddress: "127.0.0.1:0"))
        let server = GRPCServer(transport: transport, services: [sink])
        let serving = Task { try await server.serve() }
        let port = try await transport.listeningPort
        // Delivery skips replicas whose sink is not SERVING.
        transport.health.setServingStatus(service: Self.sinkService, serving: true)
        return Pair(producer: producerPool, consumer: consumerPool, server: server, serving: serving, port: port)
    }

    func testEventsCrossServicesOverGRPCAndApplyOnceWhenRedelivered() async throws {
        let logger = Logger(label: "test")
        // The consumer: an EventSink that records each header it applies.
        let pair = try await makePair(table: "CREATE TABLE seen (event_id text, aggregate text)") { c, payload, envelope in
            _ = try Liaison_Events_V1_DeliverEventsResponse(serializedBytes: payload)
            try c.query("INSERT INTO seen VALUES ($1, $2)", [envelope.eventID, envelope.producer])
        }
        let (producerPool, consumerPool, server, serving, port) = (pair.producer, pair.consumer, pair.server, pair.serving, pair.port)

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

        // An event type the sink does not consume is rejected on its own, with a reason.
        try await producerPool.transaction { c in
            try Events.publish(c, Liaison_Events_V1_EventEnvelope(), eventID: UUID(), to: ["consumer"])
        }
        let messages = try await producerPool.query("SELECT id, event_id, topic, payload FROM outbox WHERE state = 'pending'").rows.map {
            OutboxMessage(id: try $0.decode(Int64.self, 0), eventID: try $0.decode(UUID.self, 1), destination: "consumer",
                          topic: try $0.decode(String.self, 2), payload: try $0.decode(ByteA.self, 3).bytes, attempts: 1)
        }
        let report = try await delivery.deliver(destination: "consumer", messages: messages)
        XCTAssertEqual(report.rejected, [messages[0].id: "consumer does not consume liaison.events.v1.EventEnvelope"])

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

    /// Issue 20: one poison event in a batch of 100 (a payload its applier cannot decode) is
    /// dead-lettered alone with a readable reason; the other 99 are applied once; requeueing the
    /// dead letter rejects it again and changes nothing; redelivering the 99 applies nothing.
    func testAPoisonEventIsDeadLetteredAloneAndTheRestOfItsBatchApplied() async throws {
        let logger = Logger(label: "test")
        let pair = try await makePair(table: "CREATE TABLE seen (event_id text PRIMARY KEY, applied int)") { c, payload, envelope in
            let event = try Liaison_Events_V1_DeliverEventsResponse(serializedBytes: payload)
            try c.query("INSERT INTO seen VALUES ($1, $2)", [envelope.eventID, Int(event.applied)])
        }
        let (producerPool, consumerPool, server, serving, port) = (pair.producer, pair.consumer, pair.server, pair.serving, pair.port)

        let poisonID = UUID()
        try await producerPool.transaction { c in
            for i in 0..<100 {
                if i == 50 {
                    // Not a DeliverEventsResponse: field 1 as a length-delimited field of 200 bytes
                    // with 1 byte present.
                    try Outbox.enqueue(c, eventID: poisonID, topic: Liaison_Events_V1_DeliverEventsResponse.protoMessageName,
                                       payload: [0x0A, 0xC8, 0x01, 0x00], destinations: ["consumer"])
                } else {
                    var event = Liaison_Events_V1_DeliverEventsResponse()
                    event.applied = Int32(i)
                    try Events.publish(c, event, eventID: UUID(), to: ["consumer"])
                }
            }
        }
        let delivery = try EventDelivery(producer: "producer", destinations: ["consumer": "ipv4:127.0.0.1:\(port)"])
        let connections = Task { try await delivery.run() }
        let relay = OutboxRelay(pool: producerPool, owner: "p1", logger: logger, deliverReporting: { destination, messages in
            try await delivery.deliver(destination: destination, messages: messages)
        })
        var claimed = try await relay.runOnce()
        XCTAssertEqual(claimed, 100, "one batch")
        claimed = try await relay.runOnce()
        XCTAssertEqual(claimed, 0)

        func counts() async throws -> (seen: Int, distinct: Int, inbox: Int) {
            let row = try await consumerPool.query("SELECT count(*), count(DISTINCT event_id), (SELECT count(*) FROM inbox) FROM seen").first!
            return (try row.decode(Int.self, 0), try row.decode(Int.self, 1), try row.decode(Int.self, 2))
        }
        var c = try await counts()
        XCTAssertEqual([c.seen, c.distinct, c.inbox], [99, 99, 99], "99 applied once; the poison left no inbox row")
        let dead = try await producerPool.query("SELECT event_id, last_error FROM outbox WHERE state = 'dead'").rows
        XCTAssertEqual(dead.count, 1)
        XCTAssertEqual(try dead[0].decode(UUID.self, 0), poisonID)
        let reason = try dead[0].decode(String.self, 1)
        XCTAssertTrue(reason.lowercased().contains("truncated") || reason.lowercased().contains("decod"), reason)
        let delivered = try await producerPool.query("SELECT count(*) FROM outbox WHERE state = 'delivered'").first!.decode(Int.self, 0)
        XCTAssertEqual(delivered, 99)

        // Requeue: the poison is rejected again, alone; nothing else changes.
        let requeued = try await Outbox.requeueDead(producerPool)
        XCTAssertEqual(requeued, 1)
        claimed = try await relay.runOnce()
        XCTAssertEqual(claimed, 1)
        let deadAgain = try await producerPool.query("SELECT count(*) FROM outbox WHERE state = 'dead'").first!.decode(Int.self, 0)
        XCTAssertEqual(deadAgain, 1)
        // Redelivering the 99 applied events is a no-op.
        try await producerPool.query("UPDATE outbox SET state = 'pending', next_attempt_at = now() WHERE state = 'delivered'")
        claimed = try await relay.runOnce()
        XCTAssertEqual(claimed, 99)
        c = try await counts()
        XCTAssertEqual([c.seen, c.distinct, c.inbox], [99, 99, 99])

        delivery.shutdown()
        _ = try? await connections.value
        server.beginGracefulShutdown()
        _ = try? await serving.value
        await producerPool.close()
        await consumerPool.close()
    }
}
