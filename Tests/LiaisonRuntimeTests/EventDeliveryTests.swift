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
}
