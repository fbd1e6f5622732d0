internal import CLiaisonGRPC
public import GRPCCore
import Foundation
import Synchronization

/// A `GRPCCore.ClientTransport` over a grpc++ channel (through the `CLiaisonGRPC` shim).
///
/// Use it with `GRPCClient(transport:)`. grpc++ resolves the target, balances load, keeps
/// connections alive and reconnects; GRPCCore does interceptors, retries and hedging (so grpc
/// core runs no retry policy unless ``Config/enableCoreRetries`` is set). grpc core's transparent
/// retries stay on: a call that never reached the server application (refused by a GOAWAY, such
/// as the one `max_connection_age` sends, or never sent) is replayed instead of failing.
public final class ShimClientTransport: ClientTransport, Sendable {
    public typealias Bytes = [UInt8]

    /// Channel settings.
    public struct Config: Sendable {
        /// Method configs (timeouts, retry and hedging policies, used by GRPCCore) and the
        /// load-balancing config (handed to grpc core, e.g. `.roundRobin()`).
        public var serviceConfig: ServiceConfig
        /// Raw service-config JSON for grpc core; overrides the load-balancing part derived
        /// from `serviceConfig` when set.
        public var coreServiceConfigJSON: String?
        /// Allow retry and hedging policies in `coreServiceConfigJSON`, for grpc core to run.
        /// Off by default: GRPCCore retries per `serviceConfig`, and a core config with such a
        /// policy is refused. Transparent retries are on either way.
        public var enableCoreRetries: Bool
        /// Largest response message accepted (RESOURCE_EXHAUSTED beyond it).
        public var maxReceiveMessageBytes: Int
        /// Largest request message sent; `nil` is unlimited.
        public var maxSendMessageBytes: Int?
        /// Keepalive ping interval; `nil` is off.
        public var keepaliveTime: Duration?
        /// How long to wait for a keepalive ack.
        public var keepaliveTimeout: Duration?
        /// TLS / mTLS; `nil` is plaintext.
        public var tls: ShimTLS?

        public init(
            serviceConfig: ServiceConfig = ServiceConfig(),
            coreServiceConfigJSON: String? = nil,
            enableCoreRetries: Bool = false,
            maxReceiveMessageBytes: Int = 4 * 1024 * 1024,
            maxSendMessageBytes: Int? = nil,
            keepaliveTime: Duration? = nil,
            keepaliveTimeout: Duration? = nil,
            tls: ShimTLS? = nil
        ) {
            self.serviceConfig = serviceConfig
            self.coreServiceConfigJSON = coreServiceConfigJSON
            self.enableCoreRetries = enableCoreRetries
            self.maxReceiveMessageBytes = maxReceiveMessageBytes
            self.maxSendMessageBytes = maxSendMessageBytes
            self.keepaliveTime = keepaliveTime
            self.keepaliveTimeout = keepaliveTimeout
            self.tls = tls
        }
    }

    public let retryThrottle: RetryThrottle?
    /// The target this channel connects to.
    public let target: String
    private let config: Config
    private let channel: ChannelHandle

    private struct State {
        var nextID = 0
        var open: [Int: ClientCallBox] = [:]
        var closing = false
        var connectWaiter: UnsafeContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    /// Creates the channel (it connects lazily). `target` is a grpc target such as
    /// "ipv4:127.0.0.1:5001,127.0.0.1:5002", "dns:///name:port" or "host:port".
    public init(target: String, config: Config = Config()) throws {
        self.target = target
        self.config = config
        self.retryThrottle = config.serviceConfig.retryThrottling.map { RetryThrottle(policy: $0) }

        var coreJSON = config.coreServiceConfigJSON
        if coreJSON == nil, !config.serviceConfig.loadBalancingConfig.isEmpty {
            let lbOnly = ServiceConfig(methodConfig: [], loadBalancingConfig: config.serviceConfig.loadBalancingConfig)
            if let data = try? JSONEncoder().encode(lbOnly) {
                coreJSON = String(decoding: data, as: UTF8.self)
            }
        }
        if !config.enableCoreRetries, let json = coreJSON, json.contains("retryPolicy") || json.contains("hedgingPolicy") {
            throw RPCError(code: .invalidArgument, message:
                "coreServiceConfigJSON has a retry or hedging policy: set enableCoreRetries, or give the policy to GRPCCore in serviceConfig")
        }
        let strings = CStrings()
        var c = lgrpc_channel_config()
        c.service_config_json = strings.dup(coreJSON)
        // grpc core's retry filter: without it not even transparent retries run, and a call that
        // races a GOAWAY fails with UNAVAILABLE. With no policy in `coreJSON` it retries nothing else.
        c.enable_core_retries = 1
        c.max_receive_message_bytes = Int32(clamping: config.maxReceiveMessageBytes)
        c.max_send_message_bytes = Int32(clamping: config.maxSendMessageBytes ?? -1)
        c.keepalive_time_ms = config.keepaliveTime?.milliseconds ?? 0
        c.keepalive_timeout_ms = config.keepaliveTimeout?.milliseconds ?? 0
        var status = lgrpc_status()
        let created: OpaquePointer? = withExtendedLifetime(strings) {
            if let tls = config.tls {
                return tls.withC { tlsPtr in
                    c.tls = tlsPtr
                    return lgrpc_channel_create(target, &c, &status)
                }
            }
            return lgrpc_channel_create(target, &c, &status)
        }
        guard let created else {
            let message = withUnsafeBytes(of: status.message) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            throw RPCError(code: .invalidArgument, message: "Could not create channel to \(target): \(message)")
        }
        self.channel = ChannelHandle(created)
    }

    public func connect() async throws {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (cont: UnsafeContinuation<Void, Never>) in
                let resumeNow = state.withLock { st in
                    if st.closing && st.open.isEmpty { return true }
                    st.connectWaiter = cont
                    return false
                }
                if resumeNow { cont.resume() }
            }
        } onCancel: {
            let (waiter, calls) = state.withLock { st in
                st.closing = true
                defer { st.connectWaiter = nil }
                return (st.connectWaiter, Array(st.open.values))
            }
            for call in calls { call.cancel() }
            waiter?.resume()
        }
    }

    public func beginGracefulShutdown() {
        let waiter = state.withLock { st in
            st.closing = true
            if st.open.isEmpty {
                defer { st.connectWaiter = nil }
                return st.connectWaiter
            }
            return nil
        }
        waiter?.resume()
    }

    public func withStream<T: Sendable>(
        descriptor: MethodDescriptor,
        options: CallOptions,
        _ closure: (_ stream: RPCStream<Inbound, Outbound>, _ context: ClientContext) async throws -> T
    ) async throws -> T {
        let timeoutUS: Int64 = options.timeout.map { max($0.microseconds, 0) } ?? -1
        let box = try ClientCallBox(channel: channel, path: "/\(descriptor.fullyQualifiedMethod)", timeoutUS: timeoutUS)
        let id: Int? = state.withLock { st in
            if st.closing { return nil }
            let id = st.nextID
            st.nextID += 1
            st.open[id] = box
            return id
        }
        guard let id else {
            box.cancel()
            throw RPCError(code: .failedPrecondition, message: "The client transport is closed.")
        }
        defer {
            // Ends a call the closure left running (or never started) and frees the slot.
            box.cancel()
            box.release()
            let waiter = state.withLock { st in
                st.open.removeValue(forKey: id)
                if st.closing && st.open.isEmpty {
                    defer { st.connectWaiter = nil }
                    return st.connectWaiter
                }
                return nil
            }
            waiter?.resume()
        }
        let stream = RPCStream<Inbound, Outbound>(
            descriptor: descriptor,
            inbound: RPCAsyncSequence(wrapping: ClientInbound(call: box)),
            outbound: RPCWriter.Closable(wrapping: ClientOutbound(call: box))
        )
        let context = ClientContext(descriptor: descriptor, remotePeer: target, localPeer: "")
        return try await closure(stream, context)
    }

    public func config(forMethod descriptor: MethodDescriptor) -> MethodConfig? {
        // Most specific first: service+method, then service, then the default.
        let configs = config.serviceConfig.methodConfig
        let exact = MethodConfig.Name(service: descriptor.service.fullyQualifiedService, method: descriptor.method)
        let service = MethodConfig.Name(service: descriptor.service.fullyQualifiedService, method: "")
        let any = MethodConfig.Name(service: "", method: "")
        for name in [exact, service, any] {
            if let c = configs.first(where: { $0.names.contains(name) }) { return c }
        }
        return nil
    }
}

/// Owns the C channel; destroyed when the last transport / call lets go of it.
final class ChannelHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ p: OpaquePointer) { pointer = p }
    deinit { lgrpc_channel_destroy(pointer) }
}

// MARK: - Per-call state

final class ClientCallBox: @unchecked Sendable {
    /// Set once in init, never changed.
    private var call: OpaquePointer!
    private let channel: ChannelHandle

    enum Headers: Sendable {
        case metadata(Metadata)
        case none
    }

    private struct State {
        var headers: Headers?
        var headersWaiter: UnsafeContinuation<Headers, Never>?
        var final: (Status, Metadata)?
        var finalWaiter: UnsafeContinuation<(Status, Metadata), Never>?
        var readWaiter: UnsafeContinuation<[UInt8]?, Never>?
        var writeWaiter: UnsafeContinuation<Bool, Never>?
    }
    private let state = Mutex(State())

    init(channel: ChannelHandle, path: String, timeoutUS: Int64) throws {
        self.channel = channel
        var status = lgrpc_status()
        // The context is retained from here until DONE (which release/cancel guarantee).
        let unmanaged = Unmanaged<ClientCallBox>.passUnretained(self)
        guard let c = lgrpc_client_call_create(channel.pointer, path, timeoutUS, shimClientOnEvent, unmanaged.toOpaque(), &status) else {
            throw RPCError(code: .internalError, message: "Could not create call.")
        }
        self.call = c
        _ = unmanaged.retain()
    }

    /// Guards cancel against release: the caller's reference to the C call is dropped once.
    private let released = Mutex(false)

    deinit {
        release()
    }

    /// Drops the caller's reference (the end of `withStream`): the C call then ends on its own
    /// and delivers DONE, which frees this box. Only cancel may race with it.
    func release() {
        let first = released.withLock { r in
            defer { r = true }
            return !r
        }
        if first { lgrpc_client_call_release(call) }
    }

    // Events (gRPC threads).

    func headersArrived(_ h: Headers) {
        let w = state.withLock { st in
            st.headers = h
            defer { st.headersWaiter = nil }
            return st.headersWaiter
        }
        w?.resume(returning: h)
    }

    func readCompleted(_ bytes: [UInt8]?) {
        let w = state.withLock { st in
            defer { st.readWaiter = nil }
            return st.readWaiter
        }
        w?.resume(returning: bytes)
    }

    func writeCompleted(ok: Bool) {
        let w = state.withLock { st in
            defer { st.writeWaiter = nil }
            return st.writeWaiter
        }
        w?.resume(returning: ok)
    }

    func done(_ status: Status, _ trailers: Metadata) {
        let (f, h, r, w) = state.withLock { st in
            st.final = (status, trailers)
            if st.headers == nil { st.headers = Headers.none }
            defer {
                st.finalWaiter = nil
                st.headersWaiter = nil
                st.readWaiter = nil
                st.writeWaiter = nil
            }
            return (st.finalWaiter, st.headersWaiter, st.readWaiter, st.writeWaiter)
        }
        f?.resume(returning: (status, trailers))
        h?.resume(returning: .none)
        r?.resume(returning: nil)
        w?.resume(returning: false)
    }

    // Operations.

    func cancel() {
        released.withLock { r in
            if !r { lgrpc_client_call_cancel(call) }
        }
    }

    /// Runs `body` with the C call unless the caller's reference was already released (then
    /// the C object may be gone): GRPCCore can still finish a writer after `withStream`
    /// returned. Event handlers never take this lock, so holding it across the C call is safe.
    private func withLiveCall(_ closed: Int32, _ body: (OpaquePointer) -> Int32) -> Int32 {
        released.withLock { r in r ? closed : body(call) }
    }

    func start(_ metadata: Metadata) throws {
        var status = lgrpc_status()
        let rc = withLiveCall(-1) { call in
            MetadataBridge.withC(metadata) { md, n in lgrpc_client_call_start(call, md, n, &status) }
        }
        if rc != 0 {
            if status.code == Int32(LGRPC_ERR_INVALID_ARGUMENT) {
                cancel()
                throw RPCError(code: .internalError, message: "Illegal request metadata.")
            }
            throw RPCError(code: .unavailable, message: "The call is closed.")
        }
    }

    func headers() async -> Headers {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { cont in
                let h: Headers? = state.withLock { st in
                    if let h = st.headers { return h }
                    st.headersWaiter = cont
                    return nil
                }
                if let h { cont.resume(returning: h) }
            }
        } onCancel: {
            self.cancel()
        }
    }

    func finalStatus() async -> (Status, Metadata) {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { cont in
                let f: (Status, Metadata)? = state.withLock { st in
                    if let f = st.final { return f }
                    st.finalWaiter = cont
                    return nil
                }
                if let f { cont.resume(returning: f) }
            }
        } onCancel: {
            self.cancel()
        }
    }

    func read() async -> [UInt8]? {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { cont in
                let proceed = state.withLock { st in
                    if st.final != nil { return false }
                    st.readWaiter = cont
                    return true
                }
                guard proceed else { return cont.resume(returning: nil) }
                if withLiveCall(-1, { lgrpc_client_call_read($0, nil) }) != 0 {
                    let w = state.withLock { st in
                        defer { st.readWaiter = nil }
                        return st.readWaiter
                    }
                    w?.resume(returning: nil)
                }
            }
        } onCancel: {
            self.cancel()
        }
    }

    func write(_ bytes: [UInt8]) async -> Bool {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { cont in
                let proceed = state.withLock { st in
                    if st.final != nil { return false }
                    st.writeWaiter = cont
                    return true
                }
                guard proceed else { return cont.resume(returning: false) }
                let rc = withLiveCall(-1) { call in
                    bytes.withUnsafeBufferPointer { lgrpc_client_call_write(call, $0.baseAddress, $0.count, nil) }
                }
                if rc != 0 {
                    let w = state.withLock { st in
                        defer { st.writeWaiter = nil }
                        return st.writeWaiter
                    }
                    w?.resume(returning: false)
                }
            }
        } onCancel: {
            self.cancel()
        }
    }

    func writesDone() {
        _ = withLiveCall(-1) { lgrpc_client_call_writes_done($0, nil) }
    }
}

private func shimClientOnEvent(_ ctx: UnsafeMutableRawPointer?, _ event: UnsafePointer<lgrpc_event>?) {
    guard let ctx, let event else { return }
    let ev = event.pointee
    let unmanaged = Unmanaged<ClientCallBox>.fromOpaque(ctx)
    let box = unmanaged.takeUnretainedValue()
    switch ev.kind {
    case LGRPC_EVENT_INITIAL_METADATA:
        box.headersArrived(ev.ok != 0 ? .metadata(MetadataBridge.fromC(ev.metadata, ev.metadata_count)) : .none)
    case LGRPC_EVENT_READ:
        box.readCompleted(ev.ok != 0 ? Array(UnsafeBufferPointer(start: ev.data, count: ev.len)) : nil)
    case LGRPC_EVENT_WRITE_DONE:
        box.writeCompleted(ok: ev.ok != 0)
    case LGRPC_EVENT_DONE:
        let code = Status.Code(rawValue: Int(ev.status_code)) ?? .unknown
        let message: String
        if let m = ev.status_message, ev.status_message_len > 0 {
            message = String(decoding: UnsafeRawBufferPointer(start: m, count: ev.status_message_len), as: UTF8.self)
        } else {
            message = ""
        }
        box.done(Status(code: code, message: message), MetadataBridge.fromC(ev.metadata, ev.metadata_count))
        unmanaged.release()
    default:
        break
    }
}

struct ClientInbound: AsyncSequence, Sendable {
    typealias Element = RPCResponsePart<[UInt8]>
    let call: ClientCallBox

    struct AsyncIterator: AsyncIteratorProtocol {
        enum Phase { case headers, messages, status, finished }
        let call: ClientCallBox
        var phase = Phase.headers

        mutating func next() async throws -> RPCResponsePart<[UInt8]>? {
            while true {
                switch phase {
                case .headers:
                    switch await call.headers() {
                    case .metadata(let md):
                        phase = .messages
                        return .metadata(md)
                    case .none:
                        // Trailers-only: the read below ends at once.
                        phase = .messages
                    }
                case .messages:
                    if let bytes = await call.read() { return .message(bytes) }
                    phase = .status
                case .status:
                    let (status, trailers) = await call.finalStatus()
                    phase = .finished
                    return .status(status, trailers)
                case .finished:
                    return nil
                }
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(call: call) }
}

struct ClientOutbound: ClosableRPCWriterProtocol {
    typealias Element = RPCRequestPart<[UInt8]>
    let call: ClientCallBox

    func write(_ element: RPCRequestPart<[UInt8]>) async throws {
        switch element {
        case .metadata(let md):
            try call.start(md)
        case .message(let bytes):
            if !(await call.write(bytes)) {
                throw RPCError(code: .unavailable, message: "The stream is closed.")
            }
        }
    }

    func write(contentsOf elements: some Sequence<RPCRequestPart<[UInt8]>>) async throws {
        for e in elements { try await write(e) }
    }

    func finish() async {
        call.writesDone()
    }

    func finish(throwing error: any Error) async {
        call.cancel()
    }
}
