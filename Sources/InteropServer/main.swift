// InteropServer: grpc.testing.TestService over LiaisonRPC's shim transport.
//
//   InteropServer [--port N] [--descriptor-set FILE]
//       Serves TestService, grpc.health.v1 and (with a descriptor set) server reflection on
//       127.0.0.1:N (0 = any free port) and prints "listening on <port>" once serving.
//   InteropServer --hold-client PORT
//       Test helper: opens a FullDuplexCall to 127.0.0.1:PORT through the shim client,
//       sends one message, prints "ready" and waits forever (the test SIGKILLs it).
import Foundation
import GRPCCore
import LiaisonRPC
import SwiftProtobuf

struct TestService: Grpc_Testing_TestService.ServiceProtocol {
    static func echoMetadata(_ metadata: Metadata) -> (initial: Metadata, trailing: Metadata) {
        var initial = Metadata()
        var trailing = Metadata()
        for value in metadata["x-grpc-test-echo-initial"] {
            switch value {
            case .string(let s): initial.addString(s, forKey: "x-grpc-test-echo-initial")
            case .binary(let b): initial.addBinary(b, forKey: "x-grpc-test-echo-initial")
            }
        }
        for value in metadata["x-grpc-test-echo-trailing-bin"] {
            switch value {
            case .string(let s): trailing.addString(s, forKey: "x-grpc-test-echo-trailing-bin")
            case .binary(let b): trailing.addBinary(b, forKey: "x-grpc-test-echo-trailing-bin")
            }
        }
        return (initial, trailing)
    }

    static func check(_ status: Grpc_Testing_EchoStatus, present: Bool, trailing: Metadata) throws {
        guard present, status.code != 0 else { return }
        let code = RPCError.Code(Status.Code(rawValue: Int(status.code)) ?? .unknown) ?? .unknown
        throw RPCError(code: code, message: status.message, metadata: trailing)
    }

    static func payload(_ size: Int32) -> Grpc_Testing_Payload {
        var p = Grpc_Testing_Payload()
        p.body = Data(count: Int(max(size, 0)))
        return p
    }

    func emptyCall(
        request: ServerRequest<Grpc_Testing_Empty>,
        context: ServerContext
    ) async throws -> ServerResponse<Grpc_Testing_Empty> {
        let (initial, trailing) = Self.echoMetadata(request.metadata)
        return ServerResponse(message: Grpc_Testing_Empty(), metadata: initial, trailingMetadata: trailing)
    }

    func unaryCall(
        request: ServerRequest<Grpc_Testing_SimpleRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Grpc_Testing_SimpleResponse> {
        let (initial, trailing) = Self.echoMetadata(request.metadata)
        let m = request.message
        try Self.check(m.responseStatus, present: m.hasResponseStatus, trailing: trailing)
        var response = Grpc_Testing_SimpleResponse()
        response.payload = Self.payload(m.responseSize)
        return ServerResponse(message: response, metadata: initial, trailingMetadata: trailing)
    }

    func cacheableUnaryCall(
        request: ServerRequest<Grpc_Testing_SimpleRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Grpc_Testing_SimpleResponse> {
        try await unaryCall(request: request, context: context)
    }

    func streamingOutputCall(
        request: ServerRequest<Grpc_Testing_StreamingOutputCallRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Grpc_Testing_StreamingOutputCallResponse> {
        let (initial, trailing) = Self.echoMetadata(request.metadata)
        let m = request.message
        return StreamingServerResponse(metadata: initial) { writer in
            for p in m.responseParameters {
                if p.intervalUs > 0 { try await Task.sleep(for: .microseconds(Int(p.intervalUs))) }
                var r = Grpc_Testing_StreamingOutputCallResponse()
                r.payload = Self.payload(p.size)
                try await writer.write(r)
            }
            try Self.check(m.responseStatus, present: m.hasResponseStatus, trailing: trailing)
            return trailing
        }
    }

    func streamingInputCall(
        request: StreamingServerRequest<Grpc_Testing_StreamingInputCallRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Grpc_Testing_StreamingInputCallResponse> {
        let (initial, trailing) = Self.echoMetadata(request.metadata)
        var total = 0
        for try await m in request.messages { total += m.payload.body.count }
        var r = Grpc_Testing_StreamingInputCallResponse()
        r.aggregatedPayloadSize = Int32(total)
        return ServerResponse(message: r, metadata: initial, trailingMetadata: trailing)
    }

    func fullDuplexCall(
        request: StreamingServerRequest<Grpc_Testing_StreamingOutputCallRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Grpc_Testing_StreamingOutputCallResponse> {
        let (initial, trailing) = Self.echoMetadata(request.metadata)
        return StreamingServerResponse(metadata: initial) { writer in
            for try await m in request.messages {
                try Self.check(m.responseStatus, present: m.hasResponseStatus, trailing: trailing)
                for p in m.responseParameters {
                    if p.intervalUs > 0 { try await Task.sleep(for: .microseconds(Int(p.intervalUs))) }
                    var r = Grpc_Testing_StreamingOutputCallResponse()
                    r.payload = Self.payload(p.size)
                    try await writer.write(r)
                }
            }
            return trailing
        }
    }

    func halfDuplexCall(
        request: StreamingServerRequest<Grpc_Testing_StreamingOutputCallRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Grpc_Testing_StreamingOutputCallResponse> {
        var all: [Grpc_Testing_StreamingOutputCallRequest] = []
        for try await m in request.messages { all.append(m) }
        let collected = all
        return StreamingServerResponse { writer in
            for m in collected {
                for p in m.responseParameters {
                    var r = Grpc_Testing_StreamingOutputCallResponse()
                    r.payload = Self.payload(p.size)
                    try await writer.write(r)
                }
            }
            return [:]
        }
    }

    func unimplementedCall(
        request: ServerRequest<Grpc_Testing_Empty>,
        context: ServerContext
    ) async throws -> ServerResponse<Grpc_Testing_Empty> {
        throw RPCError(code: .unimplemented, message: "UnimplementedCall is not implemented.")
    }
}

func argument(_ name: String) -> String? {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

if let portString = argument("--hold-client"), let port = Int(portString) {
    let transport = try ShimClientTransport(target: "ipv4:127.0.0.1:\(port)")
    try await withGRPCClient(transport: transport) { client in
        let stub = Grpc_Testing_TestService.Client(wrapping: client)
        try await stub.fullDuplexCall(
            requestProducer: { writer in
                var r = Grpc_Testing_StreamingOutputCallRequest()
                var p = Grpc_Testing_ResponseParameters()
                p.size = 1
                r.responseParameters = [p]
                try await writer.write(r)
                try await Task.sleep(for: .seconds(3600))
            },
            onResponse: { response in
                for try await _ in response.messages {
                    say("ready")
                }
            }
        )
    }
    exit(0)
}

let port = Int(argument("--port") ?? "0") ?? 0
let transport = ShimServerTransport(config: .init(listenAddress: "127.0.0.1:\(port)", shutdownGracePeriod: .seconds(2)))
var services: [any RegistrableRPCService] = [TestService()]
if let path = argument("--descriptor-set") {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    services.append(try ReflectionService(fileDescriptorSet: data))
}
let server = GRPCServer(transport: transport, services: services)

// SIGTERM/SIGINT: graceful shutdown.
signal(SIGTERM, SIG_IGN)
signal(SIGINT, SIG_IGN)
let signals = [SIGTERM, SIGINT].map { sig in
    let source = DispatchSource.makeSignalSource(signal: sig)
    source.setEventHandler { server.beginGracefulShutdown() }
    source.resume()
    return source
}

try await withThrowingDiscardingTaskGroup { group in
    group.addTask { try await server.serve() }
    let bound = try await transport.listeningPort
    transport.health.setServingStatus(service: "", serving: true)
    transport.health.setServingStatus(service: "grpc.testing.TestService", serving: true)
    say("listening on \(bound)")
}
_ = signals
