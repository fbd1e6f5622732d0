import Foundation
import GRPCCore
import LiaisonRPC
import Synchronization
import XCTest

/// Messages are raw bytes: the transport is what is under test.
struct BytesSerializer: MessageSerializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
}

struct BytesDeserializer: MessageDeserializer {
    func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> [UInt8] {
        bytes.withUnsafeBytes { Array($0) }
    }
}

/// Counters shared between a test and the service it runs.
final class Probe: Sendable {
    private let counters = Mutex<[String: Int]>([:])

    func bump(_ key: String) {
        counters.withLock { $0[key, default: 0] += 1 }
    }

    func count(_ key: String) -> Int { counters.withLock { $0[key, default: 0] } }

    /// Waits (bounded) until `key` reaches `value`; false if it never did.
    func wait(_ key: String, atLeast value: Int, seconds: Double = 30) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if count(key) >= value { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return count(key) >= value
    }
}

enum Echo {
    static let service = "test.Echo"
    static func method(_ name: String) -> MethodDescriptor {
        MethodDescriptor(fullyQualifiedService: service, method: name)
    }
    static let get = method("Get")
    static let collect = method("Collect")
    static let expand = method("Expand")
    static let chat = method("Chat")
    static let hang = method("Hang")
    static let flood = method("Flood")
    static let flaky = method("Flaky")
    static let deadline = method("Deadline")
    static let fail = method("Fail")
}

/// A byte-level service exercising every RPC kind and the transport's edge cases.
struct EchoService: RegistrableRPCService {
    let probe: Probe

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let probe = self.probe
        func register(
            _ descriptor: MethodDescriptor,
            _ handler: @escaping @Sendable (StreamingServerRequest<[UInt8]>, ServerContext) async throws
                -> StreamingServerResponse<[UInt8]>
        ) {
            router.registerHandler(
                forMethod: descriptor,
                deserializer: BytesDeserializer(),
                serializer: BytesSerializer(),
                handler: handler
            )
        }

        // Unary echo. Request metadata "x-echo*" comes back as initial metadata and
        // "x-trailer-bin" as trailing metadata.
        register(Echo.get) { request, _ in
            probe.bump("get")
            var initial = Metadata()
            var trailing = Metadata()
            for (key, value) in request.metadata where key.hasPrefix("x-echo") {
                initial.addValue(value, forKey: key)
            }
            for (key, value) in request.metadata where key == "x-trailer-bin" {
                trailing.addValue(value, forKey: key)
            }
            var body: [UInt8] = []
            for try await m in request.messages { body += m }
            let reply = body
            let trailers = trailing
            return StreamingServerResponse(metadata: initial) { writer in
                try await writer.write(reply)
                return trailers
            }
        }

        register(Echo.collect) { request, _ in
            var all: [UInt8] = []
            for try await m in request.messages { all += m }
            let reply = all
            return StreamingServerResponse { writer in
                try await writer.write(reply)
                return [:]
            }
        }

        // Request [n, size]: n messages of `size` bytes.
        register(Echo.expand) { request, _ in
            var params: [UInt8] = []
            for try await m in request.messages { params = m }
            let (n, size) = (Int(params.first ?? 0), Int(params.dropFirst().first ?? 0))
            return StreamingServerResponse { writer in
                for i in 0..<n { try await writer.write([UInt8](repeating: UInt8(i & 0xff), count: size)) }
                return [:]
            }
        }

        register(Echo.chat) { request, _ in
            StreamingServerResponse { writer in
                var echoed = 0
                for try await m in request.messages {
                    try await writer.write(m)
                    echoed += 1
                }
                probe.bump("chat.done.\(echoed)")
                return [:]
            }
        }

        // Replies once to the first message, then waits to be cancelled.
        register(Echo.hang) { request, _ in
            StreamingServerResponse { writer in
                probe.bump("hang.started")
                do {
                    var it = request.messages.makeAsyncIterator()
                    if try await it.next() != nil { try await writer.write([]) }
                    try await Task.sleep(for: .seconds(120))
                } catch {
                    probe.bump("hang.cancelled")
                    throw error
                }
                return [:]
            }
        }

        // Writes 16 KiB messages until the call ends; counts the writes that completed.
        register(Echo.flood) { _, _ in
            StreamingServerResponse { writer in
                let chunk = [UInt8](repeating: 7, count: 16 * 1024)
                while !Task.isCancelled {
                    try await writer.write(chunk)
                    probe.bump("flood.written")
                }
                return [:]
            }
        }

        // Fails with UNAVAILABLE until called three times per key (the request body).
        register(Echo.flaky) { request, _ in
            var body: [UInt8] = []
            for try await m in request.messages { body += m }
            let key = "flaky." + String(decoding: body, as: UTF8.self)
            probe.bump(key)
            if probe.count(key) < 3 {
                throw RPCError(code: .unavailable, message: "try again")
            }
            let reply = body
            return StreamingServerResponse { writer in
                try await writer.write(reply)
                return [:]
            }
        }

        // Replies with the grpc-timeout the server saw (the remaining time).
        register(Echo.deadline) { request, _ in
            let timeout = request.metadata[stringValues: "grpc-timeout"].first(where: { _ in true }) ?? ""
            for try await _ in request.messages {}
            return StreamingServerResponse { writer in
                try await writer.write(Array(timeout.utf8))
                return [:]
            }
        }

        // Throws a google.rpc.Status with details, plus a custom trailer.
        register(Echo.fail) { request, _ in
            for try await _ in request.messages {}
            throw RPCError(
                code: .failedPrecondition,
                message: "precondition failed: ☺",
                metadata: ["x-why": "because", "x-blob-bin": .binary([0, 1, 2, 255])]
            )
        }
    }
}

extension Metadata {
    mutating func addValue(_ value: Metadata.Value, forKey key: String) {
        switch value {
        case .string(let s): addString(s, forKey: key)
        case .binary(let b): addBinary(b, forKey: key)
        }
    }
}

/// Runs a server with `services` and a client connected to it; shuts both down afterwards.
/// `unaryMethods` are served on the transport's direct path, `services` through GRPCServer.
func withServerAndClient<R: Sendable>(
    services: [any RegistrableRPCService],
    unaryMethods: [UnaryMethod] = [],
    observer: ShimServerTransport.CallObserver? = nil,
    serverConfig: ShimServerTransport.Config = .init(listenAddress: "127.0.0.1:0", shutdownGracePeriod: .seconds(5)),
    clientConfig: ShimClientTransport.Config = .init(),
    _ body: (GRPCClient<ShimClientTransport>, ShimServerTransport, Int) async throws -> R
) async throws -> R {
    let transport = ShimServerTransport(config: serverConfig, unaryMethods: unaryMethods, observer: observer)
    let server = GRPCServer(transport: transport, services: services)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.serve() }
        let port = try await transport.listeningPort
        let clientTransport = try ShimClientTransport(target: "ipv4:127.0.0.1:\(port)", config: clientConfig)
        do {
            let result = try await withGRPCClient(transport: clientTransport) { client in
                try await body(client, transport, port)
            }
            server.beginGracefulShutdown()
            try await group.waitForAll()
            return result
        } catch {
            server.beginGracefulShutdown()
            try? await group.waitForAll()
            throw error
        }
    }
}

extension GRPCClient {
    func get(
        _ body: [UInt8],
        metadata: Metadata = [:],
        method: MethodDescriptor = Echo.get,
        options: CallOptions = .defaults
    ) async throws -> ClientResponse<[UInt8]> {
        try await unary(
            request: ClientRequest(message: body, metadata: metadata),
            descriptor: method,
            serializer: BytesSerializer(),
            deserializer: BytesDeserializer(),
            options: options
        ) { $0 }
    }

    /// `Echo.chat` (bidirectional, raw bytes): `produce` writes the requests, `handle` reads the
    /// responses.
    func chat<Result: Sendable>(
        _ produce: @escaping @Sendable (RPCWriter<[UInt8]>) async throws -> Void,
        onResponse handle: @escaping @Sendable (StreamingClientResponse<[UInt8]>) async throws -> Result
    ) async throws -> Result {
        try await bidirectionalStreaming(
            request: StreamingClientRequest(of: [UInt8].self, producer: produce),
            descriptor: Echo.chat,
            serializer: BytesSerializer(),
            deserializer: BytesDeserializer(),
            options: .defaults,
            onResponse: handle
        )
    }
}

func openFileDescriptors() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

func threadCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1
}
