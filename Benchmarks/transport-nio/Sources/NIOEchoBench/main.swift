// Swift echo server over grpc-swift-nio-transport, for Benchmarks/transport/run.sh.
//   NIOEchoBench PORT
// Serves "/bench.Echo/Echo" (unary: echoes the request bytes) through GRPCServer, exactly as
// Sources/ShimEchoBench does over the shim transport; prints "listening on PORT".
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix

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

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 0 : 0
let transport = HTTP2ServerTransport.Posix(
    address: .ipv4(host: "127.0.0.1", port: port), transportSecurity: .plaintext)
let server = GRPCServer(transport: transport, services: [EchoService()])
try await withThrowingDiscardingTaskGroup { group in
    group.addTask { try await server.serve() }
    guard let address = try await transport.listeningAddress.ipv4 else { fatalError("no IPv4 address") }
    FileHandle.standardOutput.write(Data("listening on \(address.port)\n".utf8))
}
