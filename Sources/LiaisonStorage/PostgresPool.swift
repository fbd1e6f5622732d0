import Foundation
import Logging
import Synchronization

/// A pool of PostgreSQL connections with an async API.
///
/// Each connection lives on a thread of its own (a `ConnectionWorker`), so blocking libpq calls
/// never run on Swift's cooperative thread pool. A caller borrows a connection, runs a synchronous
/// closure on its thread, and gets the result back asynchronously. Cancelling the calling task
/// sends a cancel request for the running statement.
public final class PostgresPool: Sendable {
    /// Pool settings.
    public struct Configuration: Sendable {
        /// libpq connection URI, e.g. `postgresql://liaison@127.0.0.1:5432/intake`.
        public var url: String
        /// Most connections open at once.
        public var maxConnections: Int
        /// `application_name` reported to the server.
        public var applicationName: String
        /// How many times a transaction is attempted on serialization failures or deadlocks.
        public var maxTransactionAttempts: Int
        /// Wraps the resumption of a caller whose database work just finished, on the connection's
        /// worker thread. The services pass `ShimServerTransport.runResumedHandlers`, so that a
        /// direct unary handler continues on this thread instead of waking another one.
        public var resumeScope: (@Sendable (() -> Void) -> Void)?
        /// The deadline of the work the calling task does, when neither the call nor
        /// `PostgresPool.deadline` gives one. The services pass the RPC layer's deadline of the
        /// call being served, so a client's deadline cancels the statements run for it.
        public var deadlineProvider: (@Sendable () -> ContinuousClock.Instant?)?
        /// Most callers waiting for a connection at once; one more fails at once with
        /// `.overloaded` (RESOURCE_EXHAUSTED with a retry hint) instead of growing the queue.
        public var maxWaiters = 1024

        public init(url: String, maxConnections: Int = 8, applicationName: String = "liaison",
                    maxTransactionAttempts: Int = 8, resumeScope: (@Sendable (() -> Void) -> Void)? = nil,
                    deadlineProvider: (@Sendable () -> ContinuousClock.Instant?)? = nil) {
            self.url = url
            self.maxConnections = max(1, maxConnections)
            self.applicationName = applicationName
            self.maxTransactionAttempts = max(1, maxTransactionAttempts)
            self.resumeScope = resumeScope
            self.deadlineProvider = deadlineProvider
        }
    }

    private struct State {
        var idle: [ConnectionWorker] = []
        var total = 0
        var waiters: [(id: UInt64, continuation: CheckedContinuation<ConnectionWorker, any Error>)] = []
        var closed = false
        var nextWaiter: UInt64 = 0
    }

    public let configuration: Configuration
    private let state = Mutex(State())
    private let operationCounter = Atomic<UInt64>(0)
    private let logger: Logger

    public init(_ configuration: Configuration, logger: Logger = Logger(label: "liaison.storage")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs `body` with a connection on the connection's own thread. The connection is healthy
    /// when handed over (a broken one is replaced first). Do not keep it beyond the closure.
    public func withConnection<T: Sendable>(
        deadline: ContinuousClock.Instant? = nil,
        _ body: @escaping @Sendable (PostgresConnection) throws -> T
    ) async throws -> T {
        let deadline = deadline ?? Self.deadline ?? configuration.deadlineProvider?()
        if let deadline, deadline <= .now {
            throw PostgresError(.deadlineExceeded, message: "deadline passed before the statement was sent")
        }
        let worker = try await acquire(deadline: deadline)
        let op = operationCounter.add(1, ordering: .relaxed).newValue
        var timer: DispatchWorkItem?
        if let deadline {
            let item = DispatchWorkItem { worker.cancel(operation: op, reason: .deadlineExceeded) }
            let remaining = ContinuousClock.now.duration(to: deadline)
            let nanos = max(0, remaining.components.seconds * 1_000_000_000 + remaining.components.attoseconds / 1_000_000_000)
            DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(nanos)), execute: item)
            timer = item
        }
        defer { timer?.cancel() }
        do {
            let value = try await withTaskCancellationHandler {
                try await worker.run(operation: op, body)
            } onCancel: {
                worker.cancel(operation: op, reason: .cancelled)
            }
            release(worker)
            return value
        } catch {
            release(worker)
            throw error
        }
    }

    /// A deadline for every statement run by this task (set by the RPC layer from the caller's
    /// deadline); a statement still running when it passes is cancelled.
    @TaskLocal public static var deadline: ContinuousClock.Instant?

    /// Runs one statement and returns its rows.
    @discardableResult
    public func query(_ sql: String, _ parameters: [any PostgresBindable] = []) async throws -> PostgresResult {
        try await withConnection { try $0.query(sql, parameters) }
    }

    /// Runs one statement planned for this execution (`PostgresConnection.queryPlanningEachTime`).
    @discardableResult
    public func queryPlanningEachTime(_ sql: String, _ parameters: [any PostgresBindable] = []) async throws -> PostgresResult {
        try await withConnection { try $0.queryPlanningEachTime(sql, parameters) }
    }

    /// Runs `body` in a transaction. Serialization failures and deadlocks (40001, 40P01) and
    /// connection failures before BEGIN completed retry the whole closure with jittered backoff,
    /// so `body` must only touch the database (no side effects elsewhere).
    public func transaction<T: Sendable>(
        _ isolation: PostgresConnection.IsolationLevel = .readCommitted,
        _ body: @escaping @Sendable (PostgresConnection) throws -> T
    ) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await withConnection { try $0.inTransaction(isolation, body) }
            } catch let error as PostgresError
                where (error.isRetryableTransactionConflict || error.safeToRetry)
                && attempt < configuration.maxTransactionAttempts
            {
                logger.debug("retrying transaction", metadata: ["attempt": "\(attempt)", "sqlstate": "\(error.sqlState ?? "-")"])
                let base = min(200, 2 << min(attempt, 7))  // ms
                try await Task.sleep(for: .milliseconds(Int.random(in: base / 2...base)))
            }
        }
    }

    /// Closes every connection. Borrowed connections close when returned; waiters fail.
    public func close() async {
        let (idle, waiters) = state.withLock { s -> ([ConnectionWorker], [CheckedContinuation<ConnectionWorker, any Error>]) in
            s.closed = true
            let i = s.idle
            s.idle = []
            s.total -= i.count
            let w = s.waiters.map(\.continuation)
            s.waiters = []
            return (i, w)
        }
        for w in waiters { w.resume(throwing: PostgresError(.client, message: "pool is closed")) }
        for worker in idle { await worker.shutdown() }
    }

    /// Connections currently open (idle or borrowed).
    public var openConnections: Int { state.withLock { $0.total } }

    /// Connections a caller could borrow right now without waiting: the idle ones plus those the
    /// pool may still open. A hint for splitting work over several connections (it may change
    /// before the caller borrows).
    public var availableConnections: Int {
        state.withLock { s in
            s.closed || !s.waiters.isEmpty ? 0 : s.idle.count + configuration.maxConnections - s.total
        }
    }

    // MARK: Borrowing

    private enum Acquire {
        case worker(ConnectionWorker)
        case create
        case wait
        case closed
    }

    private func acquire(deadline: ContinuousClock.Instant? = nil) async throws -> ConnectionWorker {
        let decision = state.withLock { s -> Acquire in
            if s.closed { return .closed }
            if let w = s.idle.popLast() { return .worker(w) }
            if s.total < configuration.maxConnections {
                s.total += 1
                return .create
            }
            return .wait
        }
        switch decision {
        case .closed: throw PostgresError(.client, message: "pool is closed")
        case .worker(let w): return w
        case .create: return ConnectionWorker(configuration: configuration)
        case .wait:
            let id = state.withLock { s -> UInt64? in
                guard s.waiters.count < configuration.maxWaiters else { return nil }
                s.nextWaiter += 1
                return s.nextWaiter
            }
            guard let id else {
                throw PostgresError(.overloaded, message: "\(configuration.maxWaiters) callers already wait for a connection")
            }
            // A caller whose deadline passes while it waits leaves the queue.
            var timer: DispatchWorkItem?
            if let deadline {
                let item = DispatchWorkItem { [self] in
                    let waiter = state.withLock { s -> CheckedContinuation<ConnectionWorker, any Error>? in
                        guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                        return s.waiters.remove(at: i).continuation
                    }
                    waiter?.resume(throwing: PostgresError(.deadlineExceeded, message: "deadline passed while waiting for a connection"))
                }
                let remaining = ContinuousClock.now.duration(to: deadline)
                let nanos = max(0, remaining.components.seconds * 1_000_000_000 + remaining.components.attoseconds / 1_000_000_000)
                DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(min(nanos, Int64(Int.max / 2)))), execute: item)
                timer = item
            }
            defer { timer?.cancel() }
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    let immediate = state.withLock { s -> Acquire in
                        if s.closed { return .closed }
                        if let w = s.idle.popLast() { return .worker(w) }
                        if Task.isCancelled { return .wait }
                        s.waiters.append((id, continuation))
                        return .create  // meaning: enqueued
                    }
                    switch immediate {
                    case .closed: continuation.resume(throwing: PostgresError(.client, message: "pool is closed"))
                    case .worker(let w): continuation.resume(returning: w)
                    case .wait: continuation.resume(throwing: PostgresError(.cancelled, message: "cancelled while waiting for a connection"))
                    case .create: break
                    }
                }
            } onCancel: {
                let waiter = state.withLock { s -> CheckedContinuation<ConnectionWorker, any Error>? in
                    guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return s.waiters.remove(at: i).continuation
                }
                waiter?.resume(throwing: PostgresError(.cancelled, message: "cancelled while waiting for a connection"))
            }
        }
    }

    private func release(_ worker: ConnectionWorker) {
        let action = state.withLock { s -> (CheckedContinuation<ConnectionWorker, any Error>?, Bool) in
            if s.closed {
                s.total -= 1
                return (nil, true)
            }
            if !s.waiters.isEmpty { return (s.waiters.removeFirst().continuation, false) }
            s.idle.append(worker)
            return (nil, false)
        }
        if let waiter = action.0 { waiter.resume(returning: worker) }
        if action.1 { Task { await worker.shutdown() } }
    }
}

/// A thread that owns one connection and runs closures on it, one at a time.
final class ConnectionWorker: @unchecked Sendable {
    // `connection` is touched only on `thread`; `jobs` is guarded by `condition`.
    private let configuration: PostgresPool.Configuration
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var stopping = false
    private var connection: PostgresConnection?
    private let currentCanceller = Mutex<PostgresConnection.CancelState?>(nil)

    init(configuration: PostgresPool.Configuration) {
        self.configuration = configuration
        let thread = Thread { [self] in self.loop() }
        thread.name = "pg-worker"
        thread.stackSize = 1 << 20
        thread.start()
    }

    private func loop() {
        // Named from inside: a thread otherwise keeps its creator's name (often a gRPC thread's),
        // which hides the database work in `top -H` and profiles.
        Thread.current.name = "pg-worker"
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty && stopping {
                condition.unlock()
                connection?.close()
                connection = nil
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }

    private func submit(_ job: @escaping () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// A healthy connection, reconnecting when the old one broke (e.g. the server restarted).
    private func healthyConnection() throws -> PostgresConnection {
        if let c = connection, c.isHealthy { return c }
        connection?.close()
        connection = nil
        let c = try PostgresConnection(url: configuration.url, applicationName: configuration.applicationName)
        connection = c
        return c
    }

    func run<T: Sendable>(operation: UInt64, _ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            submit { [self] in
                let result: Result<T, any Error>
                do {
                    let c: PostgresConnection
                    do {
                        c = try healthyConnection()
                    } catch var e as PostgresError {
                        e.safeToRetry = true
                        throw e
                    }
                    c.beginOperation(operation)
                    currentCanceller.withLock { $0 = c.canceller }
                    defer { currentCanceller.withLock { $0 = nil } }
                    do {
                        let v = try body(c)
                        _ = c.endOperation()
                        result = .success(v)
                    } catch let e as PostgresError {
                        let reason = c.endOperation()
                        if let reason, e.sqlState == SQLState.queryCanceled {
                            result = .failure(PostgresError(reason, sqlState: e.sqlState, message: e.message))
                        } else {
                            result = .failure(e)
                        }
                    }
                } catch {
                    result = .failure(error)
                }
                if let scope = configuration.resumeScope {
                    scope { continuation.resume(with: result) }
                } else {
                    continuation.resume(with: result)
                }
            }
        }
    }

    /// Cancels `operation` if it is the one running (called from any thread; does not block the
    /// caller: the cancel request is sent from a global queue).
    func cancel(operation: UInt64, reason: PostgresError.Kind) {
        guard let canceller = currentCanceller.withLock({ $0 }) else { return }
        DispatchQueue.global().async { canceller.cancel(operation, reason: reason) }
    }

    func shutdown() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            stopping = true
            jobs.append { [self] in
                connection?.close()
                connection = nil
                continuation.resume()
            }
            condition.signal()
            condition.unlock()
        }
    }
}
