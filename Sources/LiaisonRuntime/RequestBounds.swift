import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRPC
import SwiftProtobuf

/// Bounds every `google.protobuf.Timestamp` and `google.protobuf.Duration` of a request, at any
/// depth, before a handler sees it: one check at the API edge of every service, so that no
/// handler has to remember it and no extreme time reaches date arithmetic or storage.
///
/// - Timestamps: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z, nanos in
///   0...999,999,999 (google.protobuf.Timestamp's documented range).
/// - Durations: at most 10,000 years either way (315,576,000,000 s, google.protobuf.Duration's
///   documented range), nanos within ±999,999,999 and of the same sign as the seconds.
///
/// - Strings: no NUL character (PostgreSQL's text cannot hold one, and a C string would end
///   there, so two different request ids could collide).
///
/// A request outside them gets INVALID_ARGUMENT with a BadRequest naming each field by its
/// path (`window.start_time`, `events[2].occur_time`). `Any` payloads are not opened here:
/// event sinks decode them and reject an out-of-range event on its own.
public enum RequestBounds {
    /// 0001-01-01T00:00:00Z.
    public static let minTimestampSeconds: Int64 = -62_135_596_800
    /// 9999-12-31T23:59:59Z.
    public static let maxTimestampSeconds: Int64 = 253_402_300_799
    /// 10,000 years of 365.25 days.
    public static let maxDurationSeconds: Int64 = 315_576_000_000

    /// The violations in `message` (empty when every time is in range).
    public static func violations(in message: any SwiftProtobuf.Message) -> [APIError.FieldViolation] {
        var visitor = BoundsVisitor(path: "", messageName: type(of: message).protoMessageName)
        try? message.traverse(visitor: &visitor)
        return visitor.violations
    }

    /// Throws INVALID_ARGUMENT (domain: the method's package, e.g. `liaison.intake.v1`) when a
    /// time of `message` is out of range. Installed on every served method by the runtime.
    public static func check(_ message: any SwiftProtobuf.Message, method: MethodDescriptor) throws {
        let found = violations(in: message)
        guard !found.isEmpty else { return }
        let service = method.service.fullyQualifiedService
        let domain = service.split(separator: ".").dropLast().joined(separator: ".")
        throw APIError.invalidArgument(domain: domain.isEmpty ? service : domain, found)
    }

    /// Why `t` is out of range, or nil.
    public static func problem(_ t: Google_Protobuf_Timestamp) -> String? {
        if !(0...999_999_999).contains(t.nanos) { return "nanos must be in 0..999999999" }
        if t.seconds < minTimestampSeconds || t.seconds > maxTimestampSeconds {
            return "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
        }
        return nil
    }

    /// Why `d` is out of range, or nil.
    public static func problem(_ d: Google_Protobuf_Duration) -> String? {
        if !(-999_999_999...999_999_999).contains(d.nanos) { return "nanos must be within ±999999999" }
        if (d.seconds > 0 && d.nanos < 0) || (d.seconds < 0 && d.nanos > 0) {
            return "seconds and nanos must have the same sign"
        }
        if d.seconds < -maxDurationSeconds || d.seconds > maxDurationSeconds {
            return "must be within ±315576000000 s (10,000 years)"
        }
        return nil
    }

    /// Field names by message and field number, from the contract's descriptors.
    static let fieldNames: [String: [Int: String]] = {
        guard let set = try? Google_Protobuf_FileDescriptorSet(serializedBytes: LiaisonDescriptors.fileDescriptorSet) else { return [:] }
        var names: [String: [Int: String]] = [:]
        func index(_ m: Google_Protobuf_DescriptorProto, prefix: String) {
            let full = prefix + m.name
            names[full] = Dictionary(m.field.map { (Int($0.number), $0.name) }, uniquingKeysWith: { a, _ in a })
            for nested in m.nestedType { index(nested, prefix: full + ".") }
        }
        for file in set.file {
            for m in file.messageType { index(m, prefix: file.package.isEmpty ? "" : file.package + ".") }
        }
        return names
    }()
}

/// A middleware of `GRPCServer` that applies ``RequestBounds`` to every request message of the
/// calls it serves (streaming methods; direct unary calls are checked by the transport).
public struct RequestBoundsInterceptor: ServerInterceptor {
    public init() {}

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let method = context.descriptor
        var checked = request
        checked.messages = RPCAsyncSequence(wrapping: request.messages.map { message in
            if let m = message as? any SwiftProtobuf.Message { try RequestBounds.check(m, method: method) }
            return message
        })
        return try await next(checked, context)
    }
}

/// Walks a message's set fields, checking every Timestamp and Duration.
private struct BoundsVisitor: SwiftProtobuf.Visitor {
    let path: String
    let messageName: String
    var violations: [APIError.FieldViolation] = []

    init(path: String, messageName: String) {
        self.path = path
        self.messageName = messageName
    }

    func name(_ number: Int) -> String {
        path + (RequestBounds.fieldNames[messageName]?[number] ?? "#\(number)")
    }

    mutating func inspect<M: SwiftProtobuf.Message>(_ value: M, field: String) {
        if let t = value as? Google_Protobuf_Timestamp {
            if let p = RequestBounds.problem(t) { violations.append(.init(field, p)) }
        } else if let d = value as? Google_Protobuf_Duration {
            if let p = RequestBounds.problem(d) { violations.append(.init(field, p)) }
        } else if !(value is Google_Protobuf_Any) {
            var nested = BoundsVisitor(path: field + ".", messageName: M.protoMessageName)
            try? value.traverse(visitor: &nested)
            violations += nested.violations
        }
    }

    mutating func visitSingularMessageField<M: SwiftProtobuf.Message>(value: M, fieldNumber: Int) throws {
        inspect(value, field: name(fieldNumber))
    }

    mutating func visitRepeatedMessageField<M: SwiftProtobuf.Message>(value: [M], fieldNumber: Int) throws {
        let field = name(fieldNumber)
        for (i, v) in value.enumerated() { inspect(v, field: "\(field)[\(i)]") }
    }

    mutating func visitMapField<KeyType, ValueType>(
        fieldType: _ProtobufMessageMap<KeyType, ValueType>.Type,
        value: _ProtobufMessageMap<KeyType, ValueType>.BaseType,
        fieldNumber: Int
    ) throws {
        let field = name(fieldNumber)
        for (k, v) in value { inspect(v, field: "\(field)[\(k)]") }
    }

    // Other scalars, enums and unknown fields hold neither times nor text.
    mutating func visitSingularDoubleField(value: Double, fieldNumber: Int) throws {}
    mutating func visitSingularInt64Field(value: Int64, fieldNumber: Int) throws {}
    mutating func visitSingularUInt64Field(value: UInt64, fieldNumber: Int) throws {}
    mutating func visitSingularBoolField(value: Bool, fieldNumber: Int) throws {}
    mutating func visitSingularStringField(value: String, fieldNumber: Int) throws {
        if value.utf8.contains(0) { violations.append(.init(name(fieldNumber), "must not contain NUL characters")) }
    }
    mutating func visitRepeatedStringField(value: [String], fieldNumber: Int) throws {
        for (i, v) in value.enumerated() where v.utf8.contains(0) {
            violations.append(.init("\(name(fieldNumber))[\(i)]", "must not contain NUL characters"))
        }
    }
    mutating func visitSingularBytesField(value: Data, fieldNumber: Int) throws {}
    mutating func visitSingularEnumField<E: SwiftProtobuf.Enum>(value: E, fieldNumber: Int) throws {}
    mutating func visitMapField<KeyType, ValueType: MapValueType>(
        fieldType: _ProtobufMap<KeyType, ValueType>.Type,
        value: _ProtobufMap<KeyType, ValueType>.BaseType,
        fieldNumber: Int
    ) throws {
        for (k, v) in value {
            let key = "\(k)", text = v as? String
            if key.utf8.contains(0) || text?.utf8.contains(0) == true {
                violations.append(.init("\(name(fieldNumber))[\(key.replacingOccurrences(of: "\u{0}", with: "\\0"))]", "must not contain NUL characters"))
            }
        }
    }
    mutating func visitMapField<KeyType, ValueType>(
        fieldType: _ProtobufEnumMap<KeyType, ValueType>.Type,
        value: _ProtobufEnumMap<KeyType, ValueType>.BaseType,
        fieldNumber: Int
    ) throws where ValueType.RawValue == Int {}
    mutating func visitUnknown(bytes: Data) throws {}
}

/// A middleware of `GRPCServer` that makes the client's deadline (`grpc-timeout`) the
/// ``ServerCallDeadline`` of the handler, as the direct unary path does, so that statements run
/// for a streaming call are cancelled with it.
public struct DeadlineInterceptor: ServerInterceptor {
    public init() {}

    /// `grpc-timeout` as a duration: digits and one unit of H, M, S, m, u, n.
    public static func parse(_ value: String) -> Duration? {
        guard let unit = value.last, let amount = Int64(value.dropLast()), amount >= 0, value.count <= 9 else { return nil }
        switch unit {
        case "H": return .seconds(amount * 3600)
        case "M": return .seconds(amount * 60)
        case "S": return .seconds(amount)
        case "m": return .milliseconds(amount)
        case "u": return .microseconds(amount)
        case "n": return .nanoseconds(amount)
        default: return nil
        }
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        guard let raw = request.metadata["grpc-timeout"].first(where: { _ in true }),
              case .string(let text) = raw, let timeout = Self.parse(text) else {
            return try await next(request, context)
        }
        let deadline = ContinuousClock.now + timeout
        var response = try await ServerCallDeadline.$current.withValue(deadline) { try await next(request, context) }
        if case .success(var contents) = response.accepted {
            let producer = contents.producer
            contents.producer = { writer in
                try await ServerCallDeadline.$current.withValue(deadline) { try await producer(writer) }
            }
            response = StreamingServerResponse(accepted: .success(contents))
        }
        return response
    }
}
