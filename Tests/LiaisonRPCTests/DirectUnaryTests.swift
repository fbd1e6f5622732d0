import Foundation
import GRPCCore
import GRPCProtobuf
import LiaisonRPC
import SwiftProtobuf
import Synchronization
import XCTest

/// The transport's direct unary path (`UnaryMethod`): what GRPCServer would do for a unary
/// call, done by the transport, over real sockets.
final class DirectUnaryTests: XCTestCase {
    enum Direct {
        static func method(_ name: String) -> MethodDescriptor {
            MethodDescriptor(fullyQualifiedService: "test.Direct", method: name)
        }
        static let echo = method("Echo")
        static let fail = method("Fail")
        static let details = method("Details")
        static let plain = method("Plain")
        static let typed = method("Length")
        static let hang = method("Hang")
        static let slow = method("Slow")
        static let deadline = method("Deadline")
    }

    struct PlainError: Error {}

    /// Records what the observer saw. The observer reports a call after its status went out, so
    /// the client may already have started (and the server reported) its next call: compare the
    /// reports once they are all in, in any order.
    final class Seen: Sendable {
        private let calls = Mutex<[String]>([])
        func add(_ method: MethodDescriptor, _ code: Status.Code) {
            calls.withLock { $0.append("\(method.method):\(code)") }
        }
        var all: [String] { calls.withLock { $0 } }

        /// The reports, sorted, once there are `count` of them (or after 10 s).
        func settled(_ count: Int) async -> [String] {
            let deadline = ContinuousClock.now + .seconds(10)
            while all.count < count, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
            return all.sorted()
        }
    }

    static func methods(probe: Probe) -> [UnaryMethod] {
        [
            UnaryMethod(Direct.echo) { request, context in
                XCTAssertEqual(context.descriptor, Direct.echo)
                XCTAssertTrue(context.remotePeer.contains("127.0.0.1"), context.remotePeer)
                return request
            },
            UnaryMethod(Direct.fail) { _, _ in
                throw RPCError(
                    code: .failedPrecondition, message: "precondition failed: ☺",
                    metadata: ["x-why": "because", "x-blob-bin": .binary([0, 1, 2, 255])])
            },
            UnaryMethod(Direct.details) { _, _ in
                throw GoogleRPCStatus(
                    code: .resourceExhausted, message: "quota",
                    details: [.errorInfo(reason: "TOO_MANY", domain: "liaison.test", metadata: ["limit": "1"])])
            },
            UnaryMethod(Direct.plain) { _, _ in throw PlainError() },
            UnaryMethod(Direct.typed) { (request: Google_Protobuf_StringValue, _) -> Google_Protobuf_Int64Value in
                Google_Protobuf_Int64Value(Int64(request.value.utf8.count))
            },
            UnaryMethod(Direct.hang) { _, _ in
                probe.bump("hang.started")
                do {
                    try await Task.sleep(for: .seconds(120))
                } catch {
                    probe.bump("hang.cancelled")
                    throw error
                }
                return []
            },
            // Seconds left of the call's deadline as the handler sees it (ServerCallDeadline), or
            // empty when the client set none.
            UnaryMethod(Direct.deadline) { _, _ in
                guard let d = ServerCallDeadline.current else { return [] }
                return Array(String(ContinuousClock.now.duration(to: d).components.seconds).utf8)
            },
            UnaryMethod(Direct.slow) { request, _ in
                probe.bump("slow.started")
                try await Task.sleep(for: .milliseconds(300))
                return request
            },
        ]
    }

    func testMessagesErrorsAndDetailsInline() async throws {
        try await messagesErrorsAndDetails(inline: true)
    }

    func testMessagesErrorsAndDetailsOnTheCooperativePool() async throws {
        try await messagesErrorsAndDetails(inline: false)
    }

    func messagesErrorsAndDetails(inline: Bool) async throws {
        let seen = Seen()
        let config = ShimServerTransport.Config(
            listenAddress: "127.0.0.1:0", shutdownGracePeriod: .seconds(5), runHandlersOnCallbackThreads: inline)
        try await withServerAndClient(
            services: [EchoService(probe: Probe())],
            unaryMethods: Self.methods(probe: Probe()),
            observer: { method, code, _ in seen.add(method, code) },
            serverConfig: config
        ) { client, _, _ in
            let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0) }
            let big = try await client.get(payload, method: Direct.echo)
            XCTAssertEqual(try big.message, payload)
            let empty = try await client.get([], method: Direct.echo)
            XCTAssertEqual(try empty.message, [])

            let failed = try await client.get([], method: Direct.fail)
            XCTAssertThrowsError(try failed.message) { error in
                guard let error = error as? RPCError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.code, .failedPrecondition)
                XCTAssertEqual(error.message, "precondition failed: ☺")
                XCTAssertEqual(Array(error.metadata[stringValues: "x-why"]), ["because"])
                XCTAssertEqual(Array(error.metadata[binaryValues: "x-blob-bin"]), [[0, 1, 2, 255]])
            }

            let detailed = try await client.get([], method: Direct.details)
            XCTAssertThrowsError(try detailed.message) { error in
                guard let error = error as? RPCError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.code, .resourceExhausted)
                let status = try? error.unpackGoogleRPCStatus()
                XCTAssertEqual(status?.message, "quota")
                XCTAssertEqual(status?.details.first?.errorInfo?.reason, "TOO_MANY")
            }

            let plain = try await client.get([], method: Direct.plain)
            XCTAssertThrowsError(try plain.message) { error in
                XCTAssertEqual((error as? RPCError)?.code, .unknown)
                XCTAssertEqual((error as? RPCError)?.message, "Service method threw an unknown error.")
            }

            // Protobuf in and out; bytes that are not the request type are INVALID_ARGUMENT.
            let typed = try await client.unary(
                request: ClientRequest(message: Google_Protobuf_StringValue("héllo")),
                descriptor: Direct.typed,
                serializer: ProtobufSerializer<Google_Protobuf_StringValue>(),
                deserializer: ProtobufDeserializer<Google_Protobuf_Int64Value>(),
                options: .defaults
            ) { try $0.message }
            XCTAssertEqual(typed.value, 6)
            let garbage = try await client.get([0xFF, 0xFF, 0xFF], method: Direct.typed)
            XCTAssertThrowsError(try garbage.message) { error in
                XCTAssertEqual((error as? RPCError)?.code, .invalidArgument)
            }

            // A request stream that ends without a message: INTERNAL, as in GRPCCore.
            do {
                _ = try await client.clientStreaming(
                    request: StreamingClientRequest(of: [UInt8].self) { _ in },
                    descriptor: Direct.echo,
                    serializer: BytesSerializer(),
                    deserializer: BytesDeserializer(),
                    options: .defaults
                ) { try $0.message }
                XCTFail("expected INTERNAL")
            } catch let error as RPCError {
                XCTAssertEqual(error.code, .internalError)
                XCTAssertEqual(error.message, "Empty stream.")
            }

            // GRPCServer still serves everything else on the same port.
            let streamed = try await client.get([7])
            XCTAssertEqual(try streamed.message, [7])
            let unknown = try await client.get([], method: Direct.method("Nope"))
            XCTAssertThrowsError(try unknown.message) { XCTAssertEqual(($0 as? RPCError)?.code, .unimplemented) }
        }
        let reports = await seen.settled(7)
        XCTAssertEqual(reports, [
            "Echo:ok", "Echo:ok", "Fail:failedPrecondition", "Details:resourceExhausted",
            "Plain:unknown", "Length:ok", "Length:invalidArgument",
        ].sorted())
    }

    func testDeadlineAndClientCancellationCancelTheHandler() async throws {
        let probe = Probe()
        let seen = Seen()
        try await withServerAndClient(
            services: [], unaryMethods: Self.methods(probe: probe), observer: { method, code, _ in seen.add(method, code) }
        ) { client, _, _ in
            var options = CallOptions.defaults
            options.timeout = .milliseconds(300)
            do {
                _ = try await client.get([1], method: Direct.hang, options: options).message
                XCTFail("expected DEADLINE_EXCEEDED")
            } catch let error as RPCError {
                XCTAssertEqual(error.code, .deadlineExceeded)
            }
            let sawDeadline = await probe.wait("hang.cancelled", atLeast: 1)
            XCTAssertTrue(sawDeadline, "handler not cancelled at the deadline")

            let task = Task { try await client.get([1], method: Direct.hang).message }
            let started = await probe.wait("hang.started", atLeast: 2)
            XCTAssertTrue(started)
            task.cancel()
            do {
                _ = try await task.value
                XCTFail("expected an error")
            } catch let error as RPCError {
                XCTAssertEqual(error.code, .cancelled)
            } catch is CancellationError {}
            let sawCancel = await probe.wait("hang.cancelled", atLeast: 2)
            XCTAssertTrue(sawCancel, "handler not cancelled when the client went away")
        }
        let reports = await seen.settled(2)
        XCTAssertEqual(reports, ["Hang:cancelled", "Hang:cancelled"])
    }

    /// Serves `methods(probe:)` on the direct path with `grace`, runs `body` with a client and the
    /// server, then waits until `serve()` returned.
    func withDirectServer(
        grace: Duration, probe: Probe,
        _ body: (GRPCClient<ShimClientTransport>, GRPCServer<ShimServerTransport>) async throws -> Void
    ) async throws {
        let transport = ShimServerTransport(
            config: .init(listenAddress: "127.0.0.1:0", shutdownGracePeriod: grace),
            unaryMethods: Self.methods(probe: probe))
        let server = GRPCServer(transport: transport, services: [])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.serve() }
            let port = try await transport.listeningPort
            let clientTransport = try ShimClientTransport(target: "ipv4:127.0.0.1:\(port)")
            try await withGRPCClient(transport: clientTransport) { client in
                try await body(client, server)
            }
            try await group.waitForAll()
        }
    }

    func testGracefulShutdownDrainsDirectCallsThenRefuses() async throws {
        let probe = Probe()
        try await withDirectServer(grace: .seconds(30), probe: probe) { client, server in
            let calls = 200
            let replies = try await withThrowingTaskGroup(of: [UInt8].self) { tasks in
                for i in 0..<calls {
                    tasks.addTask { try await client.get([UInt8(i % 256)], method: Direct.slow).message }
                }
                _ = await probe.wait("slow.started", atLeast: calls)
                server.beginGracefulShutdown()
                return try await tasks.reduce(into: [[UInt8]]()) { $0.append($1) }
            }
            XCTAssertEqual(replies.count, calls, "every in-flight direct call completed")
            let late = try await client.get([1], method: Direct.echo)
            XCTAssertThrowsError(try late.message) { XCTAssertEqual(($0 as? RPCError)?.code, .unavailable) }
        }
    }

    func testShutdownGraceExpiryCancelsDirectHandlers() async throws {
        let probe = Probe()
        var start = ContinuousClock.now
        try await withDirectServer(grace: .milliseconds(200), probe: probe) { client, server in
            let pending = Task { try await client.get([1], method: Direct.hang).message }
            _ = await probe.wait("hang.started", atLeast: 1)
            start = ContinuousClock.now
            server.beginGracefulShutdown()
            do {
                _ = try await pending.value
                XCTFail("expected an error")
            } catch let error as RPCError {
                XCTAssertTrue([.cancelled, .unavailable].contains(error.code), "\(error)")
            }
            let cancelled = await probe.wait("hang.cancelled", atLeast: 1)
            XCTAssertTrue(cancelled, "handler not cancelled when the grace expired")
        }
        // serve() returned (once the handler's task ended) well before the 30 s test budget.
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(20))
    }

    /// A direct handler that awaits work completed on another thread continues on that thread
    /// when the completion runs inside `runResumedHandlers` (a database worker does this), and on
    /// some other thread when it does not. The handler returns the name of the thread it
    /// continued on.
    func testRunResumedHandlersContinuesTheHandlerOnTheCompletingThread() async throws {
        func completing(inline: Bool) -> UnaryMethod {
            UnaryMethod(Direct.method(inline ? "Inline" : "Handoff")) { _, _ in
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let thread = Thread {
                        // Resumed before the handler suspends, it would just go on where it was.
                        usleep(50_000)
                        // Named from inside: a thread keeps its creator's name otherwise.
                        Thread.current.name = "completer"
                        if inline {
                            ShimServerTransport.runResumedHandlers { continuation.resume() }
                        } else {
                            continuation.resume()
                        }
                    }
                    thread.start()
                }
                return Array(currentThreadName().utf8)
            }
        }
        try await withServerAndClient(services: [], unaryMethods: [completing(inline: true), completing(inline: false)]) { client, _, _ in
            for _ in 0..<20 {
                let inline = try await client.get([], method: Direct.method("Inline"))
                XCTAssertEqual(String(decoding: try inline.message, as: UTF8.self), "completer")
                let handoff = try await client.get([], method: Direct.method("Handoff"))
                XCTAssertNotEqual(String(decoding: try handoff.message, as: UTF8.self), "completer")
            }
        }
    }

    /// Issue 20: a client's deadline reaches the handler as `ServerCallDeadline` (which the
    /// services' pools read, so that statements run for a call are cancelled with it).
    func testTheClientsDeadlineIsTheHandlersServerCallDeadline() async throws {
        try await withServerAndClient(services: [], unaryMethods: Self.methods(probe: Probe())) { client, _, _ in
            var options = CallOptions.defaults
            options.timeout = .seconds(30)
            let left = try await client.get([], method: Direct.deadline, options: options).message
            let seconds = Int(String(decoding: left, as: UTF8.self)) ?? -1
            XCTAssertTrue((1...30).contains(seconds), "\(seconds) s left")
            let none = try await client.get([], method: Direct.deadline).message
            XCTAssertEqual(none, [])
        }
    }

    /// Issue 20: admission control. With `maxActiveCalls` calls in flight, one more is refused at
    /// once with RESOURCE_EXHAUSTED and a RetryInfo (counted by the observer), the health service
    /// still answers, and once a slot frees calls are served again.
    func testCallsBeyondTheActiveLimitAreRefusedWithRetryInfo() async throws {
        let probe = Probe()
        let seen = Seen()
        var config = ShimServerTransport.Config(listenAddress: "127.0.0.1:0", shutdownGracePeriod: .seconds(5))
        config.maxActiveCalls = 2
        config.maxConcurrentStreamsPerConnection = 8
        config.memoryQuotaBytes = 64 << 20
        try await withServerAndClient(
            services: [], unaryMethods: Self.methods(probe: probe), observer: { method, code, _ in seen.add(method, code) },
            serverConfig: config
        ) { client, transport, port in
            transport.health.setServingStatus(service: "", serving: true)
            let hanging = (0..<2).map { _ in Task { try await client.get([1], method: Direct.hang).message } }
            let started = await probe.wait("hang.started", atLeast: 2)
            XCTAssertTrue(started)
            do {
                _ = try await client.get([7], method: Direct.echo).message
                XCTFail("a call beyond the limit was served")
            } catch let error as RPCError {
                XCTAssertEqual(error.code, .resourceExhausted)
                let status = try error.unpackGoogleRPCStatus()
                XCTAssertNotNil(status?.details.compactMap(\.retryInfo).first, "no RetryInfo: \(error)")
            }
            // Health is grpc++'s own service: it answers while the calls are full.
            let healthy = try await HealthCheck.serving(port: port)
            XCTAssertTrue(healthy)
            for t in hanging { t.cancel() }
            _ = await probe.wait("hang.cancelled", atLeast: 2)
            var served = false
            for _ in 0..<100 where !served {
                served = (try? await client.get([7], method: Direct.echo).message) == [7]
                if !served { try await Task.sleep(for: .milliseconds(20)) }
            }
            XCTAssertTrue(served, "calls are served again once slots free")
        }
        let reports = await seen.settled(4)
        XCTAssertTrue(reports.contains("Echo:resourceExhausted"), "\(reports)")
    }
}

/// The Foundation name of the calling thread (a plain function: `Thread.current` is not
/// available in async code).
func currentThreadName() -> String { Thread.current.name ?? "" }

/// grpc.health.v1 Check over raw bytes (SERVING is `08 01`).
enum HealthCheck {
    static func serving(port: Int) async throws -> Bool {
        let transport = try ShimClientTransport(target: "ipv4:127.0.0.1:\(port)")
        return try await withGRPCClient(transport: transport) { client in
            let answer = try await client.unary(
                request: ClientRequest(message: [UInt8]()),
                descriptor: MethodDescriptor(fullyQualifiedService: "grpc.health.v1.Health", method: "Check"),
                serializer: BytesSerializer(), deserializer: BytesDeserializer(), options: .defaults
            ) { try $0.message }
            return answer == [0x08, 0x01]
        }
    }
}
