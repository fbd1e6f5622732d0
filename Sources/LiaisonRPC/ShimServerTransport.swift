internal import CLiaisonGRPC
public import GRPCCore
import Foundation
import GRPCProtobuf
import Synchronization

/// A `GRPCCore.ServerTransport` over grpc++ (through the `CLiaisonGRPC` shim).
///
/// Serve it with `GRPCServer(transport:services:)`. grpc++ owns sockets, HTTP/2, TLS,
/// keepalive and flow control; this type turns each inbound call into an `RPCStream`.
/// `grpc.health.v1` is answered by grpc++ itself and driven through ``health``.
public final class ShimServerTransport: ServerTransport, Sendable {
    public typealias Bytes = [UInt8]

    /// Server settings.
    public struct Config: Sendable {
        /// "host:port" to listen on; port 0 picks a free port (see ``listeningPort``).
        public var listenAddress: String
        /// Largest message accepted; bigger ones fail the call with RESOURCE_EXHAUSTED.
        public var maxReceiveMessageBytes: Int
        /// Largest message sent; `nil` is unlimited.
        public var maxSendMessageBytes: Int?
        /// HTTP/2 keepalive ping interval; `nil` keeps grpc's default (2 hours).
        public var keepaliveTime: Duration?
        /// How long to wait for a keepalive ack before closing the connection.
        public var keepaliveTimeout: Duration?
        /// Connections older than this are sent GOAWAY so clients re-resolve and spread to
        /// new replicas. `nil` is unlimited.
        public var maxConnectionAge: Duration?
        /// How long calls on an aged connection may still run.
        public var maxConnectionAgeGrace: Duration?
        /// After ``ShimServerTransport/beginGracefulShutdown()``, how long in-flight calls may
        /// finish before they are cancelled.
        public var shutdownGracePeriod: Duration
        /// Serve `grpc.health.v1` (grpc++'s default health service).
        public var enableHealthService: Bool
        /// TLS / mTLS; `nil` is plaintext.
        public var tls: ShimTLS?
        /// Most calls served at once (all connections); one more is answered at once with
        /// RESOURCE_EXHAUSTED and a RetryInfo, before any of its work (health checks, served by
        /// grpc++ itself, still answer). `nil`: no bound.
        public var maxActiveCalls: Int?
        /// Most concurrent streams one connection may open (HTTP/2 setting); `nil`: grpc's default.
        public var maxConcurrentStreamsPerConnection: Int?
        /// Memory grpc++ may use for the server's connections and calls; `nil`: unlimited.
        public var memoryQuotaBytes: Int?
        /// Where handlers run between suspension points: on the gRPC thread that delivered the
        /// event (`true`, the default: no thread hop per event, as grpc++ callback handlers
        /// run) or always on Swift's cooperative pool. Either way nothing blocks a gRPC thread:
        /// work resumed by anything but a gRPC event runs on the pool.
        public var runHandlersOnCallbackThreads: Bool

        public init(
            listenAddress: String,
            maxReceiveMessageBytes: Int = 4 * 1024 * 1024,
            maxSendMessageBytes: Int? = nil,
            keepaliveTime: Duration? = nil,
            keepaliveTimeout: Duration? = nil,
            maxConnectionAge: Duration? = nil,
            maxConnectionAgeGrace: Duration? = nil,
            shutdownGracePeriod: Duration = .seconds(10),
            enableHealthService: Bool = true,
            tls: ShimTLS? = nil,
            runHandlersOnCallbackThreads: Bool = true
        ) {
            self.runHandlersOnCallbackThreads = runHandlersOnCallbackThreads
            self.listenAddress = listenAddress
            self.maxReceiveMessageBytes = maxReceiveMessageBytes
            self.maxSendMessageBytes = maxSendMessageBytes
            self.keepaliveTime = keepaliveTime
            self.keepaliveTimeout = keepaliveTimeout
            self.maxConnectionAge = maxConnectionAge
            self.maxConnectionAgeGrace = maxConnectionAgeGrace
            self.shutdownGracePeriod = shutdownGracePeriod
            self.enableHealthService = enableHealthService
            self.tls = tls
        }
    }

    /// Controls the `grpc.health.v1` status of each service.
    public final class Health: Sendable {
        private struct State {
            var server: ServerCore?
            var statuses: [String: Bool] = [:]
        }
        private let state = Mutex(State())

        init() {}

        /// Sets `service`'s status ("" is the whole server). Services start NOT_SERVING and
        /// turn NOT_SERVING again when shutdown begins. Safe to call before `listen`.
        public func setServingStatus(service: String, serving: Bool) {
            let server: ServerCore? = state.withLock { st in
                st.statuses[service] = serving
                return st.server
            }
            server?.setServing(service, serving)
        }

        fileprivate func attach(_ server: ServerCore) {
            let statuses = state.withLock { st in
                st.server = server
                return st.statuses
            }
            for (service, serving) in statuses { server.setServing(service, serving) }
        }
    }

    /// Reports each finished direct unary call: method, the status code the client was sent
    /// (CANCELLED when it went away first) and the handler's duration. Calls served through
    /// `GRPCServer` are seen by its interceptors instead.
    public typealias CallObserver = @Sendable (_ method: MethodDescriptor, _ code: Status.Code, _ duration: Duration) -> Void

    /// The transport's settings.
    public let config: Config
    /// Unary methods served directly (see ``UnaryMethod``), by path "/service/method".
    let unaryMethods: UnaryMethodTable
    let observer: CallObserver?
    /// Health status control (`grpc.health.v1`).
    public let health = Health()

    private enum Lifecycle {
        case idle
        case running(ServerCore)
        case shutdownRequested
        case stopped
    }
    private let lifecycle = Mutex(Lifecycle.idle)
    private let port = Promise<Result<Int, RPCError>>()

    /// Creates a transport; nothing is bound until `listen` runs.
    ///
    /// Calls to `unaryMethods` are served by the transport itself (the direct path, see
    /// ``UnaryMethod``); every other call goes to the stream handler `listen` is given (normally
    /// `GRPCServer`). A method listed twice keeps its first entry.
    public init(config: Config, unaryMethods: [UnaryMethod] = [], observer: CallObserver? = nil) {
        self.config = config
        self.unaryMethods = UnaryMethodTable(unaryMethods)
        self.observer = observer
    }

    /// The bound port, once `listen` has started (waits for it).
    public var listeningPort: Int {
        get async throws { try await port.wait().get() }
    }

    public func listen(
        streamHandler: @escaping @Sendable (
            _ stream: RPCStream<Inbound, Outbound>,
            _ context: ServerContext
        ) async -> Void
    ) async throws {
        let core = ServerCore(
            handler: streamHandler, unaryMethods: unaryMethods, observer: observer,
            inline: config.runHandlersOnCallbackThreads, maxActiveCalls: config.maxActiveCalls)
        let proceed: Bool = lifecycle.withLock { st in
            guard case .idle = st else { return false }
            st = .running(core)
            return true
        }
        guard proceed else {
            let error = RPCError(code: .failedPrecondition, message: "Transport already used or shut down.")
            port.fulfil(.failure(error))
            if case .shutdownRequested = lifecycle.withLock({ $0 }) { return }
            throw error
        }

        do {
            try core.start(config: config)
        } catch {
            lifecycle.withLock { $0 = .stopped }
            port.fulfil(.failure(error as? RPCError ?? RPCError(code: .unavailable, message: "\(error)")))
            throw error
        }
        health.attach(core)
        port.fulfil(.success(core.port))

        await withTaskCancellationHandler {
            await core.waitUntilStopped()
        } onCancel: {
            core.shutdown(graceMilliseconds: 0)
        }
        lifecycle.withLock { $0 = .stopped }
        core.destroy()
    }

    public func beginGracefulShutdown() {
        let core: ServerCore? = lifecycle.withLock { st in
            switch st {
            case .idle:
                st = .shutdownRequested
                return nil
            case .running(let core):
                return core
            case .shutdownRequested, .stopped:
                return nil
            }
        }
        core?.shutdown(graceMilliseconds: config.shutdownGracePeriod.milliseconds)
    }

    static func serve(
        _ call: ServerCallBox,
        streamHandler: @Sendable (RPCStream<Inbound, Outbound>, ServerContext) async -> Void
    ) async {
        await withServerContextRPCCancellationHandle { handle in
            call.attach(handle)
            let stream = RPCStream<Inbound, Outbound>(
                descriptor: call.descriptor,
                inbound: RPCAsyncSequence(wrapping: ServerInbound(call: call)),
                outbound: RPCWriter.Closable(wrapping: ServerOutbound(call: call))
            )
            let context = ServerContext(
                descriptor: call.descriptor,
                remotePeer: call.peer,
                localPeer: call.localPeer,
                cancellation: handle
            )
            await streamHandler(stream, context)
            // A handler always ends with a status; this only covers a handler that did not.
            call.finish(status: Status(code: .internalError, message: "Handler ended without a status."), trailers: [:])
        }
    }
}

// MARK: - Server core (owns the C server)

/// Owns one `lgrpc_server`; the C side holds an unretained pointer to it for the server's
/// lifetime (the transport keeps it alive until after shutdown completed).
final class ServerCore: Sendable {
    /// The C server; `nil` before start and after destroy. The lock also orders
    /// set_serving against destroy.
    private let handle = Mutex<CServerPointer?>(nil)
    /// A shutdown requested before the server existed, applied right after start.
    private let pendingShutdownGrace = Mutex<Int64?>(nil)
    private let boundPort = Atomic<Int>(0)
    private let shutdownStarted = Atomic<Bool>(false)
    let localPeer = ""
    let handler: @Sendable (RPCStream<ShimServerTransport.Inbound, ShimServerTransport.Outbound>, ServerContext) async -> Void
    let unaryMethods: UnaryMethodTable
    let observer: ShimServerTransport.CallObserver?
    let maxActiveCalls: Int?

    /// Calls being served now.
    var activeCalls: Int { tracking.withLock { $0.active } }

    private struct Tracking {
        var active = 0
        var shutdownDone = false
        var waiter: UnsafeContinuation<Void, Never>?
    }
    private let tracking = Mutex(Tracking())

    let inline: Bool

    init(handler: @escaping @Sendable (RPCStream<ShimServerTransport.Inbound, ShimServerTransport.Outbound>, ServerContext) async -> Void,
         unaryMethods: UnaryMethodTable,
         observer: ShimServerTransport.CallObserver?,
         inline: Bool,
         maxActiveCalls: Int? = nil) {
        self.handler = handler
        self.unaryMethods = unaryMethods
        self.observer = observer
        self.inline = inline
        self.maxActiveCalls = maxActiveCalls
    }

    /// Runs one call in its own task (so a cancelled call can cancel the handler's task).
    /// Called on a gRPC thread; never blocks.
    func accept(_ box: ServerCallBox) {
        callStarted()
        let handler = self.handler
        let body: @Sendable () async -> Void = {
            await ShimServerTransport.serve(box, streamHandler: handler)
            self.callEnded()
        }
        let task = inline ? Task(executorPreference: CallbackThreadExecutor.shared, operation: body) : Task(operation: body)
        box.setTask(task)
    }

    /// A call's task started; `listen` does not return before the matching ``callEnded()``.
    func callStarted() {
        tracking.withLock { $0.active += 1 }
    }

    func callEnded() {
        let waiter: UnsafeContinuation<Void, Never>? = tracking.withLock { t in
            t.active -= 1
            if t.active == 0 && t.shutdownDone {
                defer { t.waiter = nil }
                return t.waiter
            }
            return nil
        }
        waiter?.resume()
    }

    /// Returns once shutdown completed and every call's task has ended.
    func waitUntilStopped() async {
        await withUnsafeContinuation { (cont: UnsafeContinuation<Void, Never>) in
            let now: Bool = tracking.withLock { t in
                if t.shutdownDone && t.active == 0 { return true }
                t.waiter = cont
                return false
            }
            if now { cont.resume() }
        }
    }

    var port: Int { boundPort.load(ordering: .acquiring) }

    func start(config: ShimServerTransport.Config) throws {
        let strings = CStrings()
        var c = lgrpc_server_config()
        c.listen_address = strings.dup(config.listenAddress)
        c.max_receive_message_bytes = Int32(clamping: config.maxReceiveMessageBytes)
        c.max_send_message_bytes = Int32(clamping: config.maxSendMessageBytes ?? -1)
        c.keepalive_time_ms = config.keepaliveTime?.milliseconds ?? 0
        c.keepalive_timeout_ms = config.keepaliveTimeout?.milliseconds ?? 0
        c.max_connection_age_ms = config.maxConnectionAge?.milliseconds ?? 0
        c.max_connection_age_grace_ms = config.maxConnectionAgeGrace?.milliseconds ?? 0
        c.enable_health = config.enableHealthService ? 1 : 0
        c.max_concurrent_streams = Int32(clamping: config.maxConcurrentStreamsPerConnection ?? 0)
        c.memory_quota_bytes = Int64(config.memoryQuotaBytes ?? 0)
        c.on_new_call = shimServerOnNewCall
        c.on_event = shimServerOnEvent
        c.server_ctx = Unmanaged.passUnretained(self).toOpaque()
        var status = lgrpc_status()
        let created: OpaquePointer? = withExtendedLifetime(strings) {
            if let tls = config.tls {
                return tls.withC { tlsPtr in
                    c.tls = tlsPtr
                    return lgrpc_server_create(&c, &status)
                }
            }
            return lgrpc_server_create(&c, &status)
        }
        guard let created else {
            let message = withUnsafeBytes(of: status.message) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            throw RPCError(code: .unavailable, message: "Could not start server on \(config.listenAddress): \(message)")
        }
        boundPort.store(Int(lgrpc_server_port(created)), ordering: .releasing)
        let server = CServerPointer(pointer: created)
        handle.withLock { $0 = server }
        if let grace = pendingShutdownGrace.withLock({ $0 }) {
            shutdown(graceMilliseconds: grace)
        }
    }

    func setServing(_ service: String, _ serving: Bool) {
        handle.withLock { server in
            guard let server = server?.pointer, !shutdownStarted.load(ordering: .acquiring) else { return }
            _ = lgrpc_server_set_serving(server, service, serving ? 1 : 0, nil)
        }
    }

    /// Non-blocking: grpc++'s Shutdown+Wait runs on the shim's own thread; when every call is
    /// done and every handler task ended, `listen` returns.
    func shutdown(graceMilliseconds: Int64) {
        handle.withLock { server in
            guard let server = server?.pointer else {
                pendingShutdownGrace.withLock { $0 = graceMilliseconds }
                return
            }
            guard shutdownStarted.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
                return
            }
            let ctx = Unmanaged.passRetained(self).toOpaque()
            let rc = lgrpc_server_shutdown(server, max(graceMilliseconds, 0), shimServerShutdownDone, ctx, nil)
            if rc != 0 {
                Unmanaged<ServerCore>.fromOpaque(ctx).release()
                shutdownCompleted()
            }
        }
    }

    fileprivate func shutdownCompleted() {
        let waiter: UnsafeContinuation<Void, Never>? = tracking.withLock { t in
            t.shutdownDone = true
            if t.active == 0 {
                defer { t.waiter = nil }
                return t.waiter
            }
            return nil
        }
        waiter?.resume()
    }

    /// Frees the C server. Only after shutdown completed, so the join
    /// inside lgrpc_server_destroy is immediate.
    func destroy() {
        let server: CServerPointer? = handle.withLock { h in
            defer { h = nil }
            return h
        }
        if let server { lgrpc_server_destroy(server.pointer) }
    }
}

/// The C server pointer; only used under ServerCore's lock.
struct CServerPointer: @unchecked Sendable {
    let pointer: OpaquePointer
}

private func shimServerShutdownDone(_ ctx: UnsafeMutableRawPointer?) {
    guard let ctx else { return }
    let core = Unmanaged<ServerCore>.fromOpaque(ctx).takeRetainedValue()
    core.shutdownCompleted()
}

private func shimServerOnNewCall(
    _ serverCtx: UnsafeMutableRawPointer?,
    _ call: OpaquePointer?,
    _ info: UnsafePointer<lgrpc_call_info>?
) -> UnsafeMutableRawPointer? {
    guard let serverCtx, let call, let info else { return nil }
    let core = Unmanaged<ServerCore>.fromOpaque(serverCtx).takeUnretainedValue()
    let i = info.pointee
    if let limit = core.maxActiveCalls, core.activeCalls >= limit {
        // Admission control: refused before any of its work, so overload cannot grow the
        // process; the client backs off as RetryInfo says.
        let refused = ServerCallBase(call: call)
        let ctx = Unmanaged.passRetained(refused).toOpaque()
        let (status, trailers) = statusAndTrailers(for: GoogleRPCStatus(
            code: .resourceExhausted, message: "server busy (\(limit) calls in flight); retry after the delay given",
            details: [.retryInfo(delay: .milliseconds(250))]))
        ServerStatusSender.send(call, status, trailers: trailers)
        let path = String(decoding: UnsafeRawBufferPointer(start: i.method, count: i.method_len), as: UTF8.self)
        core.observer?(MethodDescriptor(path: path), .resourceExhausted, .zero)
        return ctx
    }
    let peer = PeerNames.name(UnsafeRawBufferPointer(start: i.peer, count: i.peer_len))
    if let method = core.unaryMethods.method(at: UnsafeRawBufferPointer(start: i.method, count: i.method_len)) {
        // The direct path: no metadata conversion (unary handlers do not see it; grpc++
        // enforces the deadline by cancelling the call).
        let deadline = i.deadline_remaining_us >= 0 ? ContinuousClock.now + .microseconds(i.deadline_remaining_us) : nil
        let direct = DirectUnaryCall(call: call, method: method, peer: peer, core: core, deadline: deadline)
        let ctx = Unmanaged.passRetained(direct as ServerCallBase).toOpaque()
        direct.start()
        return ctx
    }
    let path = String(decoding: UnsafeRawBufferPointer(start: i.method, count: i.method_len), as: UTF8.self)
    var metadata = MetadataBridge.fromC(i.metadata, i.metadata_count)
    if i.deadline_remaining_us >= 0 {
        metadata.replaceOrAddString(GRPCTimeout.encode(microseconds: i.deadline_remaining_us), forKey: "grpc-timeout")
    }
    let box = ServerCallBox(
        call: call,
        descriptor: MethodDescriptor(path: path),
        peer: peer,
        localPeer: core.localPeer,
        metadata: metadata
    )
    // Retained until the DONE event.
    let ctx = Unmanaged.passRetained(box as ServerCallBase).toOpaque()
    box.prime()
    CallbackThreadExecutor.drain { core.accept(box) }
    return ctx
}

/// The peer of a call as a `String`, made once per connection and gRPC thread: calls on one
/// connection share the peer, so the last name made on this thread is reused when the bytes match.
enum PeerNames {
    private final class Last {
        var bytes: [UInt8] = []
        var name = ""
    }
    private static let last = PerThread { Last() }

    static func name(_ bytes: UnsafeRawBufferPointer) -> String {
        let cache = last.value
        if cache.bytes.count == bytes.count, cache.bytes.withUnsafeBytes({ $0.elementsEqual(bytes) }) {
            return cache.name
        }
        cache.bytes = Array(bytes)
        cache.name = String(decoding: bytes, as: UTF8.self)
        return cache.name
    }
}

private func shimServerOnEvent(_ ctx: UnsafeMutableRawPointer?, _ event: UnsafePointer<lgrpc_event>?) {
    guard let ctx, let event else { return }
    let ev = event.pointee
    let unmanaged = Unmanaged<ServerCallBase>.fromOpaque(ctx)
    let call = unmanaged.takeUnretainedValue()
    CallbackThreadExecutor.drain { call.deliver(ev) }
    // The C side's reference ends with DONE.
    if ev.kind == LGRPC_EVENT_DONE { unmanaged.release() }
}

// MARK: - Per-call state

/// One inbound call served as an `RPCStream` (the base class owns the C call).
final class ServerCallBox: ServerCallBase, @unchecked Sendable {
    // Immutable after init.
    let descriptor: MethodDescriptor
    let peer: String
    let localPeer: String
    let metadata: Metadata

    /// Reads run ahead of the consumer by at most `readAheadLimit` messages (held here or in
    /// flight): the first read starts as soon as the call arrives, so a unary request and its
    /// end-of-stream are usually in hand before the handler asks. Writes are started without
    /// waiting for their completion; the next write (or the shim, for finish) waits for it.
    /// Both directions stay bounded, so flow control still holds.
    private enum Held {
        case message([UInt8])
        case end
    }
    private static let readAheadLimit = 2

    private struct State {
        var held: [Held] = []
        var heldHead = 0
        var readInFlight = false
        var readWaiter: UnsafeContinuation<[UInt8]?, Never>?
        var writeInFlight = false
        var lastWriteOK = true
        var writeWaiter: UnsafeContinuation<Bool, Never>?
        var handle: ServerContext.RPCCancellationHandle?
        var task: Task<Void, Never>?
        var cancelled = false
        var finished = false
        var done = false

        var heldCount: Int { held.count - heldHead }
        var ended: Bool {
            if case .end? = held.last { return true }
            return false
        }

        mutating func append(_ h: Held) { held.append(h) }

        mutating func take() -> Held? {
            guard heldHead < held.count else { return nil }
            let h = held[heldHead]
            if case .end = h { return h }  // end is sticky
            heldHead += 1
            if heldHead == held.count {
                held.removeAll(keepingCapacity: true)
                heldHead = 0
            }
            return h
        }

        /// Marks a read as started if the read-ahead budget allows one.
        mutating func claimReadAhead() -> Bool {
            if readInFlight || done || ended || heldCount + 1 > ServerCallBox.readAheadLimit { return false }
            readInFlight = true
            return true
        }
    }
    private let state = Mutex(State())

    init(call: OpaquePointer, descriptor: MethodDescriptor, peer: String, localPeer: String, metadata: Metadata) {
        self.descriptor = descriptor
        self.peer = peer
        self.localPeer = localPeer
        self.metadata = metadata
        super.init(call: call)
    }

    override func deliver(_ ev: lgrpc_event) {
        switch ev.kind {
        case LGRPC_EVENT_READ:
            readCompleted(ev.message)
        case LGRPC_EVENT_WRITE_DONE:
            writeCompleted(ok: ev.ok != 0)
        case LGRPC_EVENT_CANCELLED:
            cancelledByPeer()
        case LGRPC_EVENT_DONE:
            done()
        default:
            break
        }
    }

    func attach(_ handle: ServerContext.RPCCancellationHandle) {
        let cancelled = state.withLock { st in
            st.handle = handle
            return st.cancelled
        }
        if cancelled { handle.cancel() }
    }

    // Events (gRPC threads; never block).

    func readCompleted(_ bytes: [UInt8]?) {
        let (w, more): (UnsafeContinuation<[UInt8]?, Never>?, Bool) = state.withLock { st in
            st.readInFlight = false
            if let w = st.readWaiter {
                st.readWaiter = nil
                if bytes == nil { st.append(.end) }
                return (w, false)
            }
            st.append(bytes.map { .message($0) } ?? .end)
            return (nil, st.claimReadAhead())
        }
        w?.resume(returning: bytes)
        if more { startRead() }
    }

    func writeCompleted(ok: Bool) {
        let w: UnsafeContinuation<Bool, Never>? = state.withLock { st in
            st.writeInFlight = false
            if !ok { st.lastWriteOK = false }
            defer { st.writeWaiter = nil }
            return st.writeWaiter
        }
        w?.resume(returning: ok)
    }

    func setTask(_ task: Task<Void, Never>) {
        let cancelled = state.withLock { st in
            st.task = task
            return st.cancelled
        }
        if cancelled { task.cancel() }
    }

    /// The client went away, the deadline passed or shutdown's grace expired: cancel the
    /// RPC (GRPCCore's handle) and the handler's task.
    func cancelledByPeer() {
        let (handle, task) = state.withLock { st in
            st.cancelled = true
            return (st.handle, st.task)
        }
        handle?.cancel()
        task?.cancel()
    }

    func done() {
        let (r, w) = state.withLock { st in
            st.done = true
            st.finished = true
            st.task = nil
            st.readInFlight = false
            st.writeInFlight = false
            st.lastWriteOK = false
            if !st.ended { st.append(.end) }
            defer {
                st.readWaiter = nil
                st.writeWaiter = nil
            }
            return (st.readWaiter, st.writeWaiter)
        }
        r?.resume(returning: nil)
        w?.resume(returning: false)
    }

    // Operations (called sequentially by the reader / the writer).

    /// Starts the first read at once (on the gRPC thread that announced the call).
    func prime() {
        if state.withLock({ $0.claimReadAhead() }) { startRead() }
    }

    private func startRead() {
        if lgrpc_server_call_read(call, nil) != 0 { readCompleted(nil) }
    }

    private func readAhead() {
        if state.withLock({ $0.claimReadAhead() }) { startRead() }
    }

    func read() async -> [UInt8]? {
        let now: Held? = state.withLock { $0.take() }
        switch now {
        case .message(let m)?:
            readAhead()
            return m
        case .end?:
            return nil
        case nil:
            break
        }
        let result: [UInt8]? = await withUnsafeContinuation { cont in
            enum Then { case resume([UInt8]?), startAndWait, wait }
            let then: Then = state.withLock { st in
                switch st.take() {
                case .message(let m)?:
                    return .resume(m)
                case .end?:
                    return .resume(nil)
                case nil:
                    st.readWaiter = cont
                    if st.readInFlight { return .wait }
                    st.readInFlight = true
                    return .startAndWait
                }
            }
            switch then {
            case .resume(let r): cont.resume(returning: r)
            case .startAndWait: startRead()
            case .wait: break
            }
        }
        if result != nil { readAhead() }
        return result
    }

    /// Starts writing `bytes` once the previous write completed; does not wait for this one.
    /// Returns false if the stream can no longer be written.
    func write(_ bytes: [UInt8]) async -> Bool {
        // Wait for the previous write.
        let previousOK: Bool = await withUnsafeContinuation { cont in
            let now: Bool? = state.withLock { st in
                if st.done || st.finished { return false }
                if !st.writeInFlight { return st.lastWriteOK }
                st.writeWaiter = cont
                return nil
            }
            if let now { cont.resume(returning: now) }
        }
        guard previousOK else { return false }
        let proceed: Bool = state.withLock { st in
            if st.done || st.finished || st.writeInFlight { return false }
            st.writeInFlight = true
            return true
        }
        guard proceed else { return false }
        let rc = bytes.withUnsafeBufferPointer { lgrpc_server_call_write(call, $0.baseAddress, $0.count, nil) }
        if rc != 0 {
            state.withLock { st in
                st.writeInFlight = false
                st.lastWriteOK = false
            }
            return false
        }
        return true
    }

    func sendInitialMetadata(_ metadata: Metadata) throws {
        var status = lgrpc_status()
        let rc = MetadataBridge.withC(metadata) { md, n in
            lgrpc_server_call_send_initial_metadata(call, md, n, &status)
        }
        if rc != 0 && status.code == Int32(LGRPC_ERR_INVALID_ARGUMENT) {
            throw RPCError(code: .internalError, message: "Illegal response metadata.")
        }
    }

    /// Sends the status once; later calls do nothing.
    func finish(status: Status, trailers: Metadata) {
        let first = state.withLock { st in
            if st.finished { return false }
            st.finished = true
            return true
        }
        guard first else { return }
        ServerStatusSender.send(call, status, trailers: trailers)
    }
}

struct ServerInbound: AsyncSequence, Sendable {
    typealias Element = RPCRequestPart<[UInt8]>
    let call: ServerCallBox

    struct AsyncIterator: AsyncIteratorProtocol {
        let call: ServerCallBox
        var sentMetadata = false
        var ended = false

        mutating func next() async throws -> RPCRequestPart<[UInt8]>? {
            if !sentMetadata {
                sentMetadata = true
                return .metadata(call.metadata)
            }
            if ended { return nil }
            if let bytes = await call.read() {
                return .message(bytes)
            }
            ended = true
            return nil
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(call: call) }
}

struct ServerOutbound: ClosableRPCWriterProtocol {
    typealias Element = RPCResponsePart<[UInt8]>
    let call: ServerCallBox

    func write(_ element: RPCResponsePart<[UInt8]>) async throws {
        switch element {
        case .metadata(let md):
            try call.sendInitialMetadata(md)
        case .message(let bytes):
            if !(await call.write(bytes)) {
                throw RPCError(code: .unavailable, message: "The stream is closed.")
            }
        case .status(let status, let trailers):
            call.finish(status: status, trailers: trailers)
        }
    }

    func write(contentsOf elements: some Sequence<RPCResponsePart<[UInt8]>>) async throws {
        for e in elements { try await write(e) }
    }

    func finish() async {
        call.finish(status: Status(code: .internalError, message: "Stream closed without a status."), trailers: [:])
    }

    func finish(throwing error: any Error) async {
        if let rpc = error as? RPCError {
            call.finish(status: Status(code: Status.Code(rpc.code), message: rpc.message), trailers: rpc.metadata)
        } else {
            call.finish(status: Status(code: .unknown, message: "\(error)"), trailers: [:])
        }
    }
}

/// Counters the C shim keeps.
public enum ShimDiagnostics {
    /// Exceptions caught inside grpc++'s callbacks since start (each ended its operation with a
    /// failure instead of leaving a call waiting).
    public static var callbackExceptions: Int64 { lgrpc_exception_count() }
}
