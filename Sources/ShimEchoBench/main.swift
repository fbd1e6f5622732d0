// Swift echo server over the shim transport, for Benchmarks/transport/run.sh.
//   ShimEchoBench PORT [--grpcserver | --transport-only]
// Serves "/bench.Echo/Echo" (unary: echoes the request bytes). By default the way the services
// serve unary methods: ShimServerTransport's direct path (a UnaryMethod), with GRPCServer
// behind it for everything else.
import Foundation
import GRPCCore
import LiaisonRPC

struct Bytes: MessageSerializer, MessageDeserializer {
    func serialize<B: GRPCContiguousBytes>(_ message: [UInt8]) throws -> B { B(message) }
    func deserialize<B: GRPCContiguousBytes>(_ bytes: B) throws -> [UInt8] { bytes.withUnsafeBytes { Array($0) } }
}

struct EchoService: RegistrableRPCService {
    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: MethodDescriptor(fullyQualifiedService: "bench.Echo", method: "Echo"),
            deserializer: Bytes(),
            serializer: Bytes()
        ) { (request: StreamingServerRequest<[UInt8]>, _) in
            var body: [UInt8] = []
            for try await m in request.messages { body = m }
            let reply = body
            return StreamingServerResponse { writer in
                try await writer.write(reply)
                return [:]
            }
        }
    }
}

let port = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "0"
// "--transport-only": echo straight on the transport's streams, without GRPCServer, to
// separate the transport's cost from GRPCCore's.
let transportOnly = CommandLine.arguments.contains("--transport-only")
// "--grpcserver": every call through GRPCServer (the path streaming methods take).
let viaGRPCServer = CommandLine.arguments.contains("--grpcserver")
let echo = UnaryMethod(MethodDescriptor(fullyQualifiedService: "bench.Echo", method: "Echo")) { request, _ in request }
let transport = ShimServerTransport(
    config: .init(listenAddress: "127.0.0.1:\(port)", enableHealthService: false),
    unaryMethods: transportOnly || viaGRPCServer ? [] : [echo])
let server = GRPCServer(transport: transport, services: [EchoService()])
try await withThrowingDiscardingTaskGroup { group in
    if transportOnly {
        group.addTask {
            try await transport.listen { stream, _ in
                var body: [UInt8] = []
                do {
                    for try await part in stream.inbound {
                        if case .message(let m) = part { body = m }
                    }
                    try await stream.outbound.write(.metadata([:]))
                    try await stream.outbound.write(.message(body))
                    try await stream.outbound.write(.status(Status(code: .ok, message: ""), [:]))
                } catch {}
                await stream.outbound.finish()
            }
        }
    } else {
        group.addTask { try await server.serve() }
    }
    let port = try await transport.listeningPort
    FileHandle.standardOutput.write(Data("listening on \(port)\n".utf8))
}
