internal import CLiaisonGRPC
public import GRPCCore
public import SwiftProtobuf
import Synchronization

/// A unary method that ``ShimServerTransport`` serves directly, without `GRPCServer`.
///
/// `GRPCServer` runs every call through a task group, async sequences for both directions,
/// interceptors and a metadata round trip; for a unary call that work cost more than the
/// transport itself (see the Transport article). The direct path reads the one request message,
/// runs the handler in one task and sends message, headers and status in one grpc++ operation,
/// the way grpc++'s own unary handlers do. The tables are generated from the protos
/// (`protoc-gen-liaison-unary`: each service's `served` property), so handlers stay the
/// grpc-swift-2 `SimpleServiceProtocol` implementations they are.
///
/// Semantics on the direct path, as in grpc++'s unary handlers: the first request message is the
/// request (a client that sends more is not read further); a request stream that ends without
/// a message fails with INTERNAL. The handler's `ServerContext` is cancelled when the client
/// goes away, the deadline passes or shutdown's grace ends. Errors become statuses as in
/// GRPCCore: `RPCError` as is (its metadata, including `grpc-status-details-bin`, as trailers),
/// `RPCErrorConvertible` converted, anything else UNKNOWN.
public struct UnaryMethod: Sendable {
    /// Checks a decoded request before its handler runs; a thrown error is the call's status.
    public typealias RequestCheck = @Sendable (_ request: any SwiftProtobuf.Message, _ method: MethodDescriptor) throws -> Void

    /// The method, e.g. `liaison.intake.v1.IntakeService/SubmitReport`.
    public let descriptor: MethodDescriptor
    private let run: @Sendable (_ request: [UInt8], _ context: ServerContext, _ check: RequestCheck?) async throws -> [UInt8]
    private var check: RequestCheck? = nil

    /// A method over serialized bytes (no request check applies).
    public init(
        _ descriptor: MethodDescriptor,
        bytes handler: @escaping @Sendable (_ request: [UInt8], _ context: ServerContext) async throws -> [UInt8]
    ) {
        self.descriptor = descriptor
        self.run = { request, context, _ in try await handler(request, context) }
    }

    /// The same method, whose decoded protobuf requests pass `check` before the handler sees them.
    public func checking(_ check: RequestCheck?) -> UnaryMethod {
        var m = self
        m.check = check
        return m
    }

    /// Runs the method on one serialized request.
    func handle(_ request: [UInt8], _ context: ServerContext) async throws -> [UInt8] {
        try await run(request, context, check)
    }

    /// A method over protobuf messages (what the generated tables use).
    public init<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message>(
        _ descriptor: MethodDescriptor,
        handler: @escaping @Sendable (_ request: Input, _ context: ServerContext) async throws -> Output
    ) {
        self.init(descriptor, encodedResponse: { (request: Input, context) in
            let response = try await handler(request, context)
            do {
                return try response.serializedBytes()
            } catch {
                throw RPCError(code: .internalError, message: "Can't serialize message of type \(Output.self).", cause: error)
            }
        })
    }

    /// A method over a protobuf request whose handler answers with its response already encoded
    /// (for example the bytes recorded for replaying a request id), so it is not encoded twice.
    public init<Input: SwiftProtobuf.Message>(
        _ descriptor: MethodDescriptor,
        encodedResponse handler: @escaping @Sendable (_ request: Input, _ context: ServerContext) async throws -> [UInt8]
    ) {
        self.descriptor = descriptor
        self.run = { bytes, context, check in
            let request: Input
            do {
                request = try Input(serializedBytes: bytes)
            } catch {
                // GRPCProtobuf's deserializer says the same.
                throw RPCError(code: .invalidArgument, message: "Can't deserialize to message of type \(Input.self).", cause: error)
            }
            try check?(request, descriptor)
            return try await handler(request, context)
        }
    }
}

/// The deadline of the server call the current task serves, when its client set one: set on
/// the direct unary path (and by the runtime's interceptor for calls through `GRPCServer`), read
/// by the storage layer so that the statements run for a call are cancelled with it.
public enum ServerCallDeadline {
    @TaskLocal public static var current: ContinuousClock.Instant?
}

/// A service as a server hosts it: the `RegistrableRPCService` for `GRPCServer` (streaming
/// methods, and every method when the direct path is off) plus its unary methods for the direct
/// path of ``ShimServerTransport``. Generated services provide it as `served`.
public struct ServedRPCService: Sendable {
    /// The service for `GRPCServer`.
    public let registrable: any RegistrableRPCService
    /// The unary methods served directly by the transport.
    public let unaryMethods: [UnaryMethod]

    public init(_ registrable: any RegistrableRPCService, unaryMethods: [UnaryMethod] = []) {
        self.registrable = registrable
        self.unaryMethods = unaryMethods
    }

    /// Fully-qualified names of the gRPC services that have handlers here (for health and
    /// reflection: a service with no handler is neither SERVING nor listed).
    public var serviceNames: Set<String> {
        var router = RPCRouter<ShimServerTransport>()
        registrable.registerMethods(with: &router)
        return Set(router.methods.map(\.service.fullyQualifiedService) + unaryMethods.map(\.descriptor.service.fullyQualifiedService))
    }
}

// MARK: - Per-call state of a direct unary call

/// What the C side's call context points at: either kind of server call. Owns the caller's
/// reference to the C call (released in deinit); the C side keeps the object alive (retained
/// context) until DONE.
class ServerCallBase: @unchecked Sendable {
    let call: OpaquePointer

    init(call: OpaquePointer) {
        self.call = call
    }

    deinit {
        lgrpc_server_call_release(call)
    }

    /// Handles one event; called on a gRPC thread inside `CallbackThreadExecutor.drain`.
    func deliver(_ ev: lgrpc_event) {}
}

extension lgrpc_event {
    /// A READ event's message (copied out of the shim's buffer), nil when the read side ended.
    var message: [UInt8]? {
        ok != 0 ? Array(UnsafeBufferPointer(start: data, count: len)) : nil
    }
}

/// One call of a ``UnaryMethod``: the read that the call's arrival started, one task for the
/// handler, and one write-and-finish.
final class DirectUnaryCall: ServerCallBase, @unchecked Sendable {
    private let method: UnaryMethod
    private let peer: String
    private let core: ServerCore

    private struct State {
        var task: Task<Void, Never>?
        var handle: ServerContext.RPCCancellationHandle?
        var cancelled = false
        var finished = false
    }
    private let state = Mutex(State())

    private let deadline: ContinuousClock.Instant?

    init(call: OpaquePointer, method: UnaryMethod, peer: String, core: ServerCore, deadline: ContinuousClock.Instant? = nil) {
        self.method = method
        self.peer = peer
        self.core = core
        self.deadline = deadline
        super.init(call: call)
    }

    /// Starts reading the request (on the gRPC thread that announced the call).
    func start() {
        if lgrpc_server_call_read(call, nil) != 0 {
            // Already torn down: DONE follows; nothing to run.
            state.withLock { $0.finished = true }
        }
    }

    override func deliver(_ ev: lgrpc_event) {
        switch ev.kind {
        case LGRPC_EVENT_READ:
            if let request = ev.message {
                run(request)
            } else {
                // The stream ended without a message (or the call is already cancelled, in
                // which case this status goes nowhere).
                finish(Status(code: .internalError, message: "Empty stream."), trailers: [:])
            }
        case LGRPC_EVENT_CANCELLED:
            let (handle, task) = state.withLock { st in
                st.cancelled = true
                return (st.handle, st.task)
            }
            handle?.cancel()
            task?.cancel()
        case LGRPC_EVENT_DONE:
            state.withLock { st in
                st.finished = true
                st.task = nil
            }
        default:
            break
        }
    }

    private func run(_ request: [UInt8]) {
        core.callStarted()
        let body: @Sendable () async -> Void = { [self] in
            let observer = core.observer
            let start = observer == nil ? nil : ContinuousClock.now
            let code: Status.Code = await withServerContextRPCCancellationHandle { handle in
                let cancelled = state.withLock { st in
                    st.handle = handle
                    return st.cancelled
                }
                if cancelled { handle.cancel() }
                let context = ServerContext(
                    descriptor: method.descriptor, remotePeer: peer, localPeer: core.localPeer, cancellation: handle)
                do {
                    let response = try await ServerCallDeadline.$current.withValue(deadline) {
                        try await method.handle(request, context)
                    }
                    return finish(message: response)
                } catch {
                    let (status, trailers) = statusAndTrailers(for: error)
                    return finish(status, trailers: trailers)
                }
            }
            if let observer, let start { observer(method.descriptor, code, .now - start) }
            core.callEnded()
        }
        let task = core.inline ? Task(executorPreference: CallbackThreadExecutor.shared, operation: body) : Task(operation: body)
        let cancelled = state.withLock { st in
            if !st.finished { st.task = task }
            return st.cancelled
        }
        if cancelled { task.cancel() }
    }

    /// Claims the right to send the status: nil if it was sent or the call is over, else
    /// whether the call was already cancelled (the status then goes nowhere).
    private func claimFinish() -> Bool? {
        state.withLock { st in
            if st.finished { return nil }
            st.finished = true
            return st.cancelled
        }
    }

    /// Sends the response and OK. Returns the code the client sees (CANCELLED if it went away
    /// or its deadline passed before).
    private func finish(message: [UInt8]) -> Status.Code {
        guard let wasCancelled = claimFinish() else { return .cancelled }
        let rc = message.withUnsafeBufferPointer { m in
            lgrpc_server_call_write_and_finish(call, m.baseAddress, m.count, 0, nil, 0, nil, 0, nil)
        }
        if wasCancelled || rc == Int32(LGRPC_ERR_CLOSED) { return .cancelled }
        if rc == 0 { return .ok }
        ServerStatusSender.send(call, Status(code: .internalError, message: "Could not send the response."), trailers: [:])
        return .internalError
    }

    @discardableResult
    private func finish(_ status: Status, trailers: Metadata) -> Status.Code {
        guard let wasCancelled = claimFinish() else { return .cancelled }
        ServerStatusSender.send(call, status, trailers: trailers)
        return wasCancelled ? .cancelled : status.code
    }
}

/// The status GRPCCore's server executor would send for an error a handler threw.
func statusAndTrailers(for error: any Error) -> (Status, Metadata) {
    let rpc: RPCError
    if let e = error as? RPCError {
        rpc = e
    } else if let e = error as? any RPCErrorConvertible {
        rpc = RPCError(e)
    } else {
        rpc = RPCError(code: .unknown, message: "Service method threw an unknown error.", cause: error)
    }
    return (Status(code: Status.Code(rpc.code), message: rpc.message), rpc.metadata)
}

/// Sends a status with trailers on a server call (both call kinds share it).
enum ServerStatusSender {
    static func send(_ call: OpaquePointer, _ status: Status, trailers: Metadata) {
        var utf8 = Array(status.message.utf8)
        let rc = utf8.withUnsafeBufferPointer { msg in
            MetadataBridge.withC(trailers) { md, n in
                msg.withMemoryRebound(to: CChar.self) { m in
                    lgrpc_server_call_finish(call, Int32(status.code.rawValue), m.baseAddress, m.count, md, n, nil)
                }
            }
        }
        if rc == Int32(LGRPC_ERR_INVALID_ARGUMENT) {
            // Illegal trailers: still end the call, without them.
            utf8 = Array("Illegal trailing metadata.".utf8)
            _ = utf8.withUnsafeBufferPointer { msg in
                msg.withMemoryRebound(to: CChar.self) { m in
                    lgrpc_server_call_finish(call, Int32(Status.Code.internalError.rawValue), m.baseAddress, m.count, nil, 0, nil)
                }
            }
        }
    }
}
