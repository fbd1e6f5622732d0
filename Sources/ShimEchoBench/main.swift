// Swift echo server over the shim transport, for Benchmarks/transport/run.sh.
//   ShimEchoBench PORT
// Serves "/bench.Echo/Echo" (unary: echoes the request bytes) through GRPCServer and
// ShimServerTransport, the way the services will.
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
let transport = ShimServerTransport(config: .init(listenAddress: "127.0.0.1:\(port)", enableHealthService: false))
let server = GRPCServer(transport: transport, services: [EchoService()])
try await withThrowingDiscardingTaskGroup { group in
    group.addTask { try await server.serve() }
    let port = try await transport.listeningPort
    FileHandle.standardOutput.write(Data("listening on \(port)\n".utf8))
}
