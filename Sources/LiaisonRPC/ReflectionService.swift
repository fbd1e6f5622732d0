public import Foundation
public import GRPCCore
import GRPCProtobuf
import SwiftProtobuf

/// `grpc.reflection.v1` and `grpc.reflection.v1alpha` served from a `FileDescriptorSet`.
///
/// grpc++'s own reflection cannot see services served through the generic API, so this
/// service answers from descriptors handed to it at start-up (e.g. `protoc
/// --include_imports --descriptor_set_out=...`). Register it with the server like any other
/// service. It lists every service of the set and resolves files by name, by symbol
/// (service, method, message, enum, field-less nested types) and answers extension queries
/// from the extensions declared in the set.
public struct ReflectionService: RegistrableRPCService {
    var index: DescriptorIndex

    /// - Parameter fileDescriptorSet: the serialized bytes of a `google.protobuf.FileDescriptorSet`.
    public init(fileDescriptorSet: Data) throws {
        let set = try Google_Protobuf_FileDescriptorSet(serializedBytes: fileDescriptorSet)
        self.index = try DescriptorIndex(files: set.file)
    }

    /// - Parameter fileDescriptorSet: the serialized bytes of a `google.protobuf.FileDescriptorSet`.
    public init(fileDescriptorSet: [UInt8]) throws {
        try self.init(fileDescriptorSet: Data(fileDescriptorSet))
    }

    /// Describes only the services in `served` (by fully-qualified name): the other services of
    /// the set are neither listed nor resolved as symbols, while their files (and the messages
    /// the served services share with them) stay resolvable.
    public init(fileDescriptorSet: [UInt8], serving served: Set<String>) throws {
        try self.init(fileDescriptorSet: Data(fileDescriptorSet))
        index.restrict(toServices: served)
    }

    /// - Parameter fileDescriptors: serialized `google.protobuf.FileDescriptorProto`s.
    public init(fileDescriptors: [Data]) throws {
        let files = try fileDescriptors.map { try Google_Protobuf_FileDescriptorProto(serializedBytes: $0) }
        self.index = try DescriptorIndex(files: files)
    }

    /// Names of the services the set describes.
    public var serviceNames: [String] { index.services }

    public func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        V1(index: index).registerMethods(with: &router)
        V1Alpha(index: index).registerMethods(with: &router)
    }

    struct V1: Grpc_Reflection_V1_ServerReflection.StreamingServiceProtocol {
        let index: DescriptorIndex

        func serverReflectionInfo(
            request: StreamingServerRequest<Grpc_Reflection_V1_ServerReflectionRequest>,
            context: ServerContext
        ) async throws -> StreamingServerResponse<Grpc_Reflection_V1_ServerReflectionResponse> {
            StreamingServerResponse { writer in
                for try await message in request.messages {
                    try await writer.write(index.answer(message))
                }
                return [:]
            }
        }
    }

    struct V1Alpha: Grpc_Reflection_V1alpha_ServerReflection.StreamingServiceProtocol {
        let index: DescriptorIndex

        func serverReflectionInfo(
            request: StreamingServerRequest<Grpc_Reflection_V1alpha_ServerReflectionRequest>,
            context: ServerContext
        ) async throws -> StreamingServerResponse<Grpc_Reflection_V1alpha_ServerReflectionResponse> {
            StreamingServerResponse { writer in
                for try await message in request.messages {
                    // v1alpha and v1 messages are wire-identical.
                    let v1 = try Grpc_Reflection_V1_ServerReflectionRequest(serializedBytes: message.serializedBytes() as [UInt8])
                    let answer = index.answer(v1)
                    try await writer.write(
                        Grpc_Reflection_V1alpha_ServerReflectionResponse(serializedBytes: answer.serializedBytes() as [UInt8])
                    )
                }
                return [:]
            }
        }
    }
}

/// Lookup tables over a set of file descriptors.
struct DescriptorIndex: Sendable {
    private(set) var files: [String: Google_Protobuf_FileDescriptorProto] = [:]
    private(set) var serialized: [String: Data] = [:]
    private(set) var symbols: [String: String] = [:]  // fully-qualified symbol -> file name
    private(set) var extensions: [String: [Int32: String]] = [:]  // extendee -> number -> file
    private(set) var services: [String] = []

    init(files list: [Google_Protobuf_FileDescriptorProto]) throws {
        for file in list {
            files[file.name] = file
            serialized[file.name] = try file.serializedBytes()
            let prefix = file.package.isEmpty ? "" : file.package + "."
            for service in file.service {
                let name = prefix + service.name
                services.append(name)
                symbols[name] = file.name
                for method in service.method { symbols[name + "." + method.name] = file.name }
            }
            for message in file.messageType { index(message: message, prefix: prefix, file: file.name) }
            for e in file.enumType { symbols[prefix + e.name] = file.name }
            for ext in file.extension {
                symbols[prefix + ext.name] = file.name
                extensions[Self.trim(ext.extendee), default: [:]][ext.number] = file.name
            }
        }
        services.sort()
    }

    /// Drops the services not in `served`, and their methods, from the listing and the symbols.
    mutating func restrict(toServices served: Set<String>) {
        for name in services where !served.contains(name) {
            symbols = symbols.filter { $0.key != name && !$0.key.hasPrefix(name + ".") }
        }
        services = services.filter(served.contains)
    }

    private static func trim(_ name: String) -> String {
        name.hasPrefix(".") ? String(name.dropFirst()) : name
    }

    private mutating func index(message: Google_Protobuf_DescriptorProto, prefix: String, file: String) {
        let name = prefix + message.name
        symbols[name] = file
        for nested in message.nestedType { index(message: nested, prefix: name + ".", file: file) }
        for e in message.enumType { symbols[name + "." + e.name] = file }
        for ext in message.extension {
            symbols[name + "." + ext.name] = file
            extensions[Self.trim(ext.extendee), default: [:]][ext.number] = file
        }
    }

    /// The file and, transitively, every dependency that is in the set.
    private func closure(of name: String) -> [Data] {
        var out: [Data] = []
        var seen: Set<String> = []
        var stack = [name]
        while let next = stack.popLast() {
            guard !seen.contains(next), let file = files[next], let bytes = serialized[next] else { continue }
            seen.insert(next)
            out.append(bytes)
            stack.append(contentsOf: file.dependency.reversed())
        }
        return out
    }

    func answer(_ request: Grpc_Reflection_V1_ServerReflectionRequest) -> Grpc_Reflection_V1_ServerReflectionResponse {
        var response = Grpc_Reflection_V1_ServerReflectionResponse()
        response.validHost = request.host
        response.originalRequest = request

        func notFound(_ message: String) {
            var error = Grpc_Reflection_V1_ErrorResponse()
            error.errorCode = Int32(Status.Code.notFound.rawValue)
            error.errorMessage = message
            response.errorResponse = error
        }
        func files(_ name: String) {
            var fd = Grpc_Reflection_V1_FileDescriptorResponse()
            fd.fileDescriptorProto = closure(of: name)
            response.fileDescriptorResponse = fd
        }

        switch request.messageRequest {
        case .listServices:
            var list = Grpc_Reflection_V1_ListServiceResponse()
            list.service = services.map { name in
                var s = Grpc_Reflection_V1_ServiceResponse()
                s.name = name
                return s
            }
            response.listServicesResponse = list
        case .fileByFilename(let name):
            if self.files[name] != nil { files(name) } else { notFound("File not found: \(name)") }
        case .fileContainingSymbol(let symbol):
            if let file = symbols[Self.trim(symbol)] { files(file) } else { notFound("Symbol not found: \(symbol)") }
        case .fileContainingExtension(let ext):
            if let file = extensions[Self.trim(ext.containingType)]?[ext.extensionNumber] {
                files(file)
            } else {
                notFound("Extension not found: \(ext.containingType) \(ext.extensionNumber)")
            }
        case .allExtensionNumbersOfType(let type):
            let name = Self.trim(type)
            if symbols[name] != nil {
                var numbers = Grpc_Reflection_V1_ExtensionNumberResponse()
                numbers.baseTypeName = name
                numbers.extensionNumber = (extensions[name].map { Array($0.keys) } ?? []).sorted()
                response.allExtensionNumbersResponse = numbers
            } else {
                notFound("Type not found: \(type)")
            }
        case nil:
            var error = Grpc_Reflection_V1_ErrorResponse()
            error.errorCode = Int32(Status.Code.invalidArgument.rawValue)
            error.errorMessage = "Empty request."
            response.errorResponse = error
        }
        return response
    }
}
