import CLibPQ
import Foundation
import Synchronization

/// One libpq connection, used from one thread at a time (the pool's worker thread).
///
/// All methods block; never call them from Swift's cooperative thread pool — go through
/// `PostgresPool`, which runs them on threads of their own. Only `cancelCurrentStatement` may be
/// called from another thread.
public final class PostgresConnection {
    private var conn: OpaquePointer?
    private var statementNames: [String: String] = [:]
    /// The BEGIN of the transaction `inTransaction` opened, not sent yet: it goes out in one
    /// pipeline with the transaction's first statement (a round trip less per transaction).
    private var pendingBegin: String?
    /// Inside `inTransaction`: whether the body already ended the transaction with
    /// `commit(with:)` (nil outside a transaction body).
    private var committedEarly: Bool?
    private var nextStatementID = 0
    private let cancelState: CancelState

    /// Cross-thread cancellation: a PGcancel plus what the current operation is.
    final class CancelState: @unchecked Sendable {
        // Guarded by `lock`: the PGcancel object and the operation it may cancel.
        private let lock = NSLock()
        private var cancel: OpaquePointer?
        private var currentOperation: UInt64 = 0
        private var reason: PostgresError.Kind?

        init(cancel: OpaquePointer?) { self.cancel = cancel }

        func begin(_ op: UInt64) {
            lock.lock()
            currentOperation = op
            reason = nil
            lock.unlock()
        }

        /// Ends the operation and returns why it was cancelled, if it was.
        func end() -> PostgresError.Kind? {
            lock.lock()
            defer { lock.unlock() }
            currentOperation = 0
            let r = reason
            reason = nil
            return r
        }

        /// Sends a cancel request for `op` if it is still running. Blocks briefly (one round trip).
        func cancel(_ op: UInt64, reason: PostgresError.Kind) {
            lock.lock()
            defer { lock.unlock() }
            guard op != 0, op == currentOperation, let cancel else { return }
            self.reason = reason
            var buf = [CChar](repeating: 0, count: 256)
            _ = PQcancel(cancel, &buf, 256)
        }

        func close() {
            lock.lock()
            if let cancel { PQfreeCancel(cancel) }
            cancel = nil
            currentOperation = 0
            lock.unlock()
        }
    }

    /// Opens a connection. `url` is a libpq connection URI or keyword string.
    public init(url: String, applicationName: String = "liaison") throws {
        let keys = ["dbname", "application_name", "options", "connect_timeout", "keepalives",
                    "keepalives_idle", "keepalives_interval", "keepalives_count"]
        // The URL's own `options` (e.g. `-c statement_timeout=5s`) are kept: ours follow them, so
        // only the settings this layer depends on win.
        let ours = "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 -c client_min_messages=warning"
        let options = Self.urlOptions(url).map { $0 + " " + ours } ?? ours
        let values = [url, applicationName, options, "5", "1", "10", "5", "3"]
        let c = withCStrings(keys) { k in
            withCStrings(values) { v in PQconnectdbParams(k, v, 1) }
        }
        guard let c, PQstatus(c) == CONNECTION_OK else {
            let message = c.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            if let c { PQfinish(c) }
            throw PostgresError(.connection, message: "cannot connect: \(message.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        conn = c
        cancelState = CancelState(cancel: PQgetCancel(c))
    }

    deinit { close() }

    /// The `options` a libpq URL or keyword string carries, nil when none (or it does not parse).
    static func urlOptions(_ url: String) -> String? {
        guard let parsed = PQconninfoParse(url, nil) else { return nil }
        defer { PQconninfoFree(parsed) }
        var p = parsed
        while let keyword = p.pointee.keyword {
            if String(cString: keyword) == "options", let v = p.pointee.val {
                let value = String(cString: v).trimmingCharacters(in: .whitespaces)
                return value.isEmpty ? nil : value
            }
            p += 1
        }
        return nil
    }

    /// Closes the connection. Idempotent.
    public func close() {
        cancelState.close()
        if let conn { PQfinish(conn) }
        conn = nil
    }

    /// Whether the connection is usable. Checks the socket without blocking: a server restart
    /// (which sends a FATAL message and closes) is noticed here, before a statement is sent.
    public var isHealthy: Bool {
        guard let conn, PQstatus(conn) == CONNECTION_OK else { return false }
        guard PQtransactionStatus(conn) == PQTRANS_IDLE else { return false }
        var pfd = pollfd(fd: PQsocket(conn), events: Int16(POLLIN), revents: 0)
        let ready = poll(&pfd, 1, 0)
        if ready > 0 {
            // Something arrived while idle: a notice, a notification, or the server going away.
            if PQconsumeInput(conn) == 0 { return false }
            return PQstatus(conn) == CONNECTION_OK
        }
        return ready == 0
    }

    /// The server's process ID for this connection (useful in tests that terminate backends).
    public var backendPID: Int32 { conn.map { PQbackendPID($0) } ?? 0 }

    // MARK: Statements

    /// Runs one parameterised statement through a cached prepared statement. With
    /// `binaryResults`, values come back in PostgreSQL's binary format: no text to parse and
    /// `bytea` without hex, for reads of many or large values (every column's type must decode
    /// from binary; see `PostgresDecodable.init(postgresBinary:)`).
    @discardableResult
    public func query(_ sql: String, _ parameters: [any PostgresBindable] = [], binaryResults: Bool = false) throws
        -> PostgresResult {
        try ensureOpenTransaction()
        if pendingBegin != nil { return try pipeline([(sql, parameters)], binaryResults: binaryResults ? [0] : [])[0] }
        let conn = try live()
        let name = try prepared(sql, conn: conn)
        let result = try withParameters(parameters) { values, lengths, formats in
            PQexecPrepared(conn, name, Int32(values.count), values, lengths, formats, binaryResults ? 1 : 0)
        }
        return try check(result, conn: conn)
    }

    /// Runs one parameterised statement planned for this execution (libpq's unnamed statement),
    /// not through a cached prepared statement. For statements over tables whose size swings,
    /// such as the outbox: a prepared statement's generic plan, cached while the table was small,
    /// keeps a sequential scan after the table has grown to thousands of rows (until the next
    /// ANALYZE invalidates it), while a fresh plan sees the table's current size. Costs a plan
    /// per call (a fraction of a millisecond).
    @discardableResult
    public func queryPlanningEachTime(_ sql: String, _ parameters: [any PostgresBindable] = []) throws -> PostgresResult {
        try ensureOpenTransaction()
        try sendPendingBegin()
        let conn = try live()
        let result = try withParameters(parameters) { values, lengths, formats in
            PQexecParams(conn, sql, Int32(values.count), nil, values, lengths, formats, 0)
        }
        return try check(result, conn: conn)
    }

    /// Runs SQL text without parameters; may contain several statements (migrations, DDL).
    public func execute(script sql: String) throws {
        try ensureOpenTransaction()
        try sendPendingBegin()
        let conn = try live()
        _ = try check(PQexec(conn, sql), conn: conn)
    }

    /// Runs `statements` in one pipeline (libpq pipeline mode): all are sent before any result is
    /// read, so the batch costs one round trip. Stops at the first error, which is thrown; the
    /// statements after it are not executed. Wrap in a transaction for all-or-nothing. The
    /// statements at the indices in `binaryResults` return their values in binary format (as
    /// `query(_:_:binaryResults:)`).
    public func pipeline(_ statements: [(sql: String, parameters: [any PostgresBindable])], binaryResults: Set<Int> = [])
        throws -> [PostgresResult]
    {
        try ensureOpenTransaction()
        let first = pendingBegin != nil
        if statements.isEmpty && !first { return [] }  // nothing to send: no round trip
        do {
            return try streaming { p in
                for (i, s) in statements.enumerated() { try p.send([s], binaryResults: binaryResults.contains(i)) }
                // The sync goes with the statements: one round trip for the whole pipeline.
                try p.sendSync()
                return try (0..<statements.count).map { try p.result($0) }
            }
        } catch var e as PostgresError where first && e.kind == .connection {
            // The transaction's first round trip: nothing of it can have committed.
            e.safeToRetry = true
            throw e
        }
    }

    /// Sends a pending BEGIN by itself (before statements that cannot join a pipeline).
    private func sendPendingBegin() throws {
        if pendingBegin != nil { _ = try pipeline([]) }
    }

    /// Streams rows into the server with `COPY ... FROM STDIN` (text format). `copySQL` is the
    /// COPY statement; `rows` are the column values (nil for NULL). Returns the rows copied.
    @discardableResult
    public func copyIn(_ copySQL: String, rows: [[String?]]) throws -> Int {
        try sendPendingBegin()
        let conn = try live()
        let start = PQexec(conn, copySQL)
        guard PQresultStatus(start) == PGRES_COPY_IN else { _ = try check(start, conn: conn); return 0 }
        PQclear(start)
        var buffer = [UInt8]()
        buffer.reserveCapacity(1 << 16)
        func send() throws {
            let rc = buffer.withUnsafeBufferPointer { p in
                p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) {
                    PQputCopyData(conn, $0, Int32(p.count))
                }
            }
            guard rc == 1 else { throw lastError(conn, "COPY data") }
            buffer.removeAll(keepingCapacity: true)
        }
        for row in rows {
            for (i, value) in row.enumerated() {
                if i > 0 { buffer.append(9) }
                if let value { Self.appendCopyEscaped(value, to: &buffer) } else {
                    buffer.append(UInt8(ascii: "\\"))
                    buffer.append(UInt8(ascii: "N"))
                }
            }
            buffer.append(10)
            if buffer.count >= 1 << 16 { try send() }
        }
        if !buffer.isEmpty { try send() }
        guard PQputCopyEnd(conn, nil) == 1 else { throw lastError(conn, "COPY end") }
        var copied = 0
        var failure: PostgresError?
        while let r = PQgetResult(conn) {
            if PQresultStatus(r) == PGRES_COMMAND_OK {
                copied = Int(String(cString: PQcmdTuples(r))) ?? rows.count
            } else if failure == nil {
                failure = error(from: r, conn: conn)
            }
            PQclear(r)
        }
        if let failure { throw failure }
        return copied
    }

    static func appendCopyEscaped(_ value: String, to buffer: inout [UInt8]) {
        for b in value.utf8 {
            switch b {
            case UInt8(ascii: "\\"): buffer.append(92); buffer.append(92)
            case 9: buffer.append(92); buffer.append(UInt8(ascii: "t"))
            case 10: buffer.append(92); buffer.append(UInt8(ascii: "n"))
            case 13: buffer.append(92); buffer.append(UInt8(ascii: "r"))
            default: buffer.append(b)
            }
        }
    }

    // MARK: Transactions

    /// Isolation levels for `transaction`.
    public enum IsolationLevel: String, Sendable {
        case readCommitted = "READ COMMITTED"
        case repeatableRead = "REPEATABLE READ"
        case serializable = "SERIALIZABLE"
    }

    /// Runs `body` inside BEGIN/COMMIT, rolling back on any error. BEGIN travels with the body's
    /// first statement; a connection failure in that first round trip is marked safe to retry
    /// (nothing of the transaction can have committed).
    public func inTransaction<T>(_ isolation: IsolationLevel = .readCommitted, _ body: (PostgresConnection) throws -> T) throws -> T {
        // BEGIN goes out with the body's first statement (see `pendingBegin`); a connection
        // failure in that round trip is safe to retry.
        pendingBegin = isolation == .readCommitted ? "BEGIN" : "BEGIN ISOLATION LEVEL \(isolation.rawValue)"
        committedEarly = false
        // A BEGIN still pending afterwards means the body ran no statement: nothing to end.
        defer {
            pendingBegin = nil
            committedEarly = nil
        }
        do {
            let value = try body(self)
            if pendingBegin == nil, committedEarly == false { try query("COMMIT") }
            return value
        } catch {
            if pendingBegin == nil, let conn, PQstatus(conn) == CONNECTION_OK, PQtransactionStatus(conn) != PQTRANS_IDLE {
                _ = try? execute(script: "ROLLBACK")
            }
            throw error
        }
    }

    /// Ends the transaction of the enclosing `inTransaction` body: sends `statements` and COMMIT
    /// in one pipeline, so the last writes and the commit share one round trip. The body must run
    /// nothing after it (that throws a `.client` error). If a statement fails, the transaction is
    /// rolled back and the error thrown, as from `pipeline`. A connection failure leaves the
    /// outcome unknown, as for any COMMIT.
    public func commit(with statements: [(sql: String, parameters: [any PostgresBindable])]) throws {
        try ensureOpenTransaction()
        try checkCanCommit()
        if pendingBegin != nil, statements.isEmpty {
            // Nothing ran and nothing to write: there is no transaction to commit.
            committedEarly = true
            return
        }
        // After a failed statement the pipeline skips the rest, COMMIT included: the transaction
        // is left aborted, and inTransaction's error path rolls it back.
        do {
            _ = try pipeline(statements + [("COMMIT", [])])
        } catch var e as PostgresError where e.kind == .connection {
            // Even as the transaction's first round trip (BEGIN included) the COMMIT went with
            // it: the outcome is unknown, never safe to retry blindly.
            e.safeToRetry = false
            throw e
        }
        committedEarly = true
    }

    private func ensureOpenTransaction() throws {
        if streamOpen {
            throw PostgresError(.client, message: "the connection is in use by a pipeline stream; use the stream")
        }
        if committedEarly == true {
            throw PostgresError(.client, message: "statement after commit(with:) in the same transaction body")
        }
    }

    // MARK: Pipeline streams

    /// Runs `body` with a `PipelineStream` on this connection: statements go out as the body sends
    /// them and their results are read when it asks (see `PipelineStream`). Inside
    /// `inTransaction`, the stream's statements run in the transaction (a pending BEGIN goes
    /// first), and `PipelineStream.commit()` ends it. When the body returns, the remaining results
    /// are read and the first failure, if any, is thrown.
    public func streaming<T>(_ body: (PipelineStream) throws -> T) throws -> T {
        try ensureOpenTransaction()
        let conn = try live()
        guard PQenterPipelineMode(conn) == 1 else { throw lastError(conn, "enter pipeline mode") }
        PQsetnonblocking(conn, 1)
        streamOpen = true
        defer {
            streamOpen = false
            PQsetnonblocking(conn, 0)
            if PQpipelineStatus(conn) != PQ_PIPELINE_OFF, PQexitPipelineMode(conn) == 0 {
                while let r = PQgetResult(conn) { PQclear(r) }
                _ = PQexitPipelineMode(conn)
            }
        }
        let stream = PipelineStream(connection: self, conn: conn)
        let value: T
        do {
            if let begin = pendingBegin {
                pendingBegin = nil
                try stream.sendHidden(begin)
            }
            value = try body(stream)
            try stream.finish()
        } catch {
            stream.abandon()
            throw error
        }
        if stream.commitIndex != nil { committedEarly = true }
        return value
    }

    /// Whether a pipeline stream is open on the connection.
    private var streamOpen = false

    func preparedName(_ sql: String) -> String? { statementNames[sql] }

    func newStatementName() -> String {
        nextStatementID += 1
        return "lq\(nextStatementID)"
    }

    func registerPrepared(_ sql: String, name: String) { statementNames[sql] = name }

    func failure(_ conn: OpaquePointer, _ what: String) -> PostgresError { lastError(conn, what) }

    func failure(from result: OpaquePointer, conn: OpaquePointer) -> PostgresError { error(from: result, conn: conn) }

    /// Throws unless a COMMIT may end the enclosing `inTransaction` body now.
    func checkCanCommit() throws {
        guard committedEarly == false else {
            throw PostgresError(.client, message: "commit is only valid once, inside an inTransaction body")
        }
    }

    // MARK: Cancellation

    func beginOperation(_ op: UInt64) { cancelState.begin(op) }
    func endOperation() -> PostgresError.Kind? { cancelState.end() }
    var canceller: CancelState { cancelState }

    // MARK: Internals

    private func live() throws -> OpaquePointer {
        guard let conn else { throw PostgresError(.connection, message: "connection is closed") }
        guard PQstatus(conn) == CONNECTION_OK else {
            throw PostgresError(.connection, message: "connection is broken")
        }
        return conn
    }

    private func prepared(_ sql: String, conn: OpaquePointer) throws -> String {
        if let name = statementNames[sql] { return name }
        let name = newStatementName()
        _ = try check(PQprepare(conn, name, sql, 0, nil), conn: conn)
        statementNames[sql] = name
        return name
    }

    private func check(_ result: OpaquePointer?, conn: OpaquePointer) throws -> PostgresResult {
        guard let result else { throw lastError(conn, "statement") }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return PostgresResult(result)
        default:
            let e = error(from: result, conn: conn)
            PQclear(result)
            throw e
        }
    }

    private func error(from result: OpaquePointer, conn: OpaquePointer) -> PostgresError {
        func field(_ code: Character) -> String? {
            guard let p = PQresultErrorField(result, Int32(code.asciiValue!)) else { return nil }
            return String(cString: p)
        }
        let state = field("C")
        let message = field("M") ?? String(cString: PQresultErrorMessage(result))
        if PQstatus(conn) != CONNECTION_OK, state == nil || state!.hasPrefix("08") || state!.hasPrefix("57P") {
            return PostgresError(.connection, sqlState: state, message: message)
        }
        return PostgresError(
            .server, sqlState: state, message: message, detail: field("D"),
            constraint: field("n"), table: field("t"), column: field("c"))
    }

    private func lastError(_ conn: OpaquePointer, _ what: String) -> PostgresError {
        let message = String(cString: PQerrorMessage(conn)).trimmingCharacters(in: .whitespacesAndNewlines)
        let kind: PostgresError.Kind = PQstatus(conn) == CONNECTION_OK ? .client : .connection
        return PostgresError(kind, message: "\(what): \(message)")
    }
}

/// Calls `body` with a C array of C strings (NULL entries for nil), valid only during the call.
/// Statement parameters as libpq takes them: values (NULL for SQL NULL), lengths (binary values
/// only) and formats (0 text, 1 binary). The memory lives until `body` returns.
/// Throws, before anything is sent, when a parameter has no PostgreSQL representation.
func withParameters<R>(
    _ parameters: [any PostgresBindable],
    _ body: (_ values: [UnsafePointer<CChar>?], _ lengths: [Int32], _ formats: [Int32]) -> R
) throws -> R {
    for parameter in parameters { try parameter.checkPostgresRepresentable() }
    // Every value goes into one buffer (text values NUL-terminated), one allocation per
    // statement instead of one per parameter (a batch's merged insert has thousands).
    var arena: [UInt8] = []
    var offsets: [Int] = []  // -1 for NULL
    var lengths: [Int32] = []
    var formats: [Int32] = []
    offsets.reserveCapacity(parameters.count)
    lengths.reserveCapacity(parameters.count)
    formats.reserveCapacity(parameters.count)
    arena.reserveCapacity(parameters.count * 16)
    for parameter in parameters {
        if let binary = parameter.postgresBinary {
            offsets.append(arena.count)
            arena.append(contentsOf: binary)
            lengths.append(Int32(binary.count))
            formats.append(1)
        } else if let text = parameter.postgresText {
            offsets.append(arena.count)
            arena.append(contentsOf: text.utf8)
            arena.append(0)
            lengths.append(0)
            formats.append(0)
        } else {
            offsets.append(-1)
            lengths.append(0)
            formats.append(0)
        }
    }
    if arena.isEmpty { arena.append(0) }  // a valid base address for empty binary values
    return arena.withUnsafeBufferPointer { buffer in
        let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
        let values: [UnsafePointer<CChar>?] = offsets.map { $0 < 0 ? nil : base + $0 }
        return body(values, lengths, formats)
    }
}

func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) } + [nil]
    defer { for p in pointers { free(p) } }
    return body(pointers.map { $0.map { UnsafePointer($0) } })
}
