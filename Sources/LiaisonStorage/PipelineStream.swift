import CLibPQ
import Foundation

/// Statements sent on one connection while the caller keeps working: each `send` goes out at
/// once (libpq pipeline mode, nothing waits), and `result(_:)` waits only for the statement it
/// names. The server executes what was sent while the caller computes what to send next, so a
/// long transaction built in steps (read, decide, write) costs the larger of the two sides'
/// times rather than their sum.
///
/// Statements run in the order they were sent, in the enclosing transaction (if any). After a
/// statement fails, the server skips every later one: `result(_:)` throws the first failure for
/// the failed statement and for every later one. Whatever the body does not ask for is still
/// checked when the stream ends: the first failure is thrown then.
///
/// Made by `PostgresConnection.streaming(_:)`; valid only inside its body, on the connection's
/// thread. The connection itself cannot be used while the stream is open (its methods throw).
public final class PipelineStream: SQLQuerier {
    private let connection: PostgresConnection
    private let conn: OpaquePointer

    /// What each result the server will send belongs to, in order.
    private enum Slot {
        case statement(Int)
        case prepare(sql: String, name: String)
        /// A statement the stream sent for the connection (the transaction's BEGIN).
        case hidden
    }
    private var slots: [Slot] = []
    /// The slot whose results are being read.
    private var nextSlot = 0
    /// Per statement: its slot, and its result once read (nil before, or if it failed).
    private var slotOfStatement: [Int] = []
    private var results: [PostgresResult?] = []
    /// The current slot's result, until the NULL that ends it.
    private var current: OpaquePointer?
    private var firstError: PostgresError?
    /// Slots before this one are covered by a flush request or the sync: their results are on
    /// their way without the server waiting for more input.
    private var flushedThrough = 0
    /// Statements prepared by this stream (name by SQL), registered with the connection once
    /// their prepare succeeded.
    private var preparing: [String: String] = [:]
    private var synced = false
    private var done = false
    /// The index of the COMMIT sent by `commit()`, if any.
    private(set) var commitIndex: Int?

    init(connection: PostgresConnection, conn: OpaquePointer) {
        self.connection = connection
        self.conn = conn
    }

    /// Number of statements sent so far.
    public var count: Int { slotOfStatement.count }

    /// Sends `statements` without waiting; returns their indices for `result(_:)`. With
    /// `binaryResults`, their values come back in binary format (as `PostgresConnection.query`).
    @discardableResult
    public func send(_ statements: [StatementBatch.Statement], binaryResults: Bool = false) throws -> Range<Int> {
        let first = count
        for s in statements {
            try sendOne(s, binaryResults: binaryResults, slot: .statement(results.count))
            slotOfStatement.append(slots.count - 1)
            results.append(nil)
        }
        return first..<count
    }

    /// Sends a statement whose result nobody reads (a failure still counts).
    func sendHidden(_ sql: String) throws {
        try sendOne((sql, []), binaryResults: false, slot: .hidden)
    }

    /// Sends the sync now, without waiting: everything sent is executed and answered without a
    /// flush request, and nothing more may be sent. (`finish` sends it otherwise.)
    func sendSync() throws {
        guard !synced else { return }
        guard PQpipelineSync(conn) == 1 else { throw connection.failure(conn, "pipeline sync") }
        synced = true
        flushedThrough = slots.count
    }

    private func sendOne(_ s: StatementBatch.Statement, binaryResults: Bool, slot: Slot) throws {
        precondition(!synced, "statement sent after the stream's sync")
        let name: String
        if let known = connection.preparedName(s.sql) ?? preparing[s.sql] {
            name = known
        } else {
            name = connection.newStatementName()
            guard PQsendPrepare(conn, name, s.sql, 0, nil) == 1 else { throw connection.failure(conn, "send prepare") }
            preparing[s.sql] = name
            slots.append(.prepare(sql: s.sql, name: name))
        }
        let ok = try withParameters(s.parameters) { values, lengths, formats in
            PQsendQueryPrepared(conn, name, Int32(values.count), values, lengths, formats, binaryResults ? 1 : 0)
        }
        guard ok == 1 else { throw connection.failure(conn, "send pipeline statement") }
        slots.append(slot)
        // Keep the socket moving both ways so that neither side's buffers fill up.
        if slots.count % 64 == 0 {
            guard PQflush(conn) >= 0 else { throw connection.failure(conn, "flush pipeline") }
            try readAvailable()
        }
    }

    /// The result of statement `index`, waiting for it. Throws the stream's first failure if that
    /// statement failed or was skipped after an earlier failure.
    public func result(_ index: Int) throws -> PostgresResult {
        precondition(index >= 0 && index < count, "no statement \(index) in this stream")
        let slot = slotOfStatement[index]
        if slot >= flushedThrough, !synced {
            // The server holds its output until a flush request or a sync.
            guard PQsendFlushRequest(conn) == 1 else { throw connection.failure(conn, "send flush request") }
            flushedThrough = slots.count
        }
        try pump { self.nextSlot > slot }
        if let r = results[index] { return r }
        throw firstError ?? PostgresError(.server, message: "statement skipped after an earlier failure in the pipeline")
    }

    /// Sends one statement and waits for its result.
    @discardableResult
    public func query(_ sql: String, _ parameters: [any PostgresBindable] = [], binaryResults: Bool = false) throws
        -> PostgresResult {
        try result(send([(sql, parameters)], binaryResults: binaryResults).lowerBound)
    }

    /// Sends COMMIT, ending the transaction of the enclosing `inTransaction` body when the stream
    /// ends without a failure (as `PostgresConnection.commit(with:)`: nothing may follow it). If
    /// an earlier statement failed, the COMMIT is skipped and the failure thrown.
    public func commit() throws {
        try connection.checkCanCommit()
        precondition(commitIndex == nil, "commit() sent twice")
        commitIndex = try send([("COMMIT", [])]).lowerBound
    }

    // MARK: Ending

    /// Sends the sync and reads every remaining result. Throws the first failure.
    func finish() throws {
        try sync()
        if let firstError { throw firstError }
    }

    /// Ends the stream after the body threw: the pipeline is drained if the connection still
    /// works, so that it can roll back.
    func abandon() {
        try? sync()
    }

    private func sync() throws {
        try sendSync()
        try pump { self.done }
    }

    // MARK: Reading

    /// Flushes and reads until `condition` holds.
    private func pump(until condition: () -> Bool) throws {
        try readAvailable()
        while !condition() {
            let flush = PQflush(conn)
            if flush < 0 { throw connection.failure(conn, "flush pipeline") }
            var pfd = pollfd(fd: PQsocket(conn), events: Int16(POLLIN) | (flush == 1 ? Int16(POLLOUT) : 0), revents: 0)
            let n = poll(&pfd, 1, 1000)
            if n < 0, errno != EINTR { throw PostgresError(.connection, message: "poll failed: \(errno)") }
            if PQstatus(conn) != CONNECTION_OK { throw connection.failure(conn, "pipeline") }
            if n > 0, pfd.revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 { try readAvailable() }
        }
    }

    /// Reads the results that have arrived, without blocking.
    private func readAvailable() throws {
        guard PQconsumeInput(conn) == 1 else { throw connection.failure(conn, "read pipeline results") }
        // PQgetResult returns NULL at the end of each slot's results, and also when nothing more
        // is expected: read only while a slot (or the sync) is outstanding.
        while !done, nextSlot < slots.count || synced, PQisBusy(conn) == 0 {
            guard let r = PQgetResult(conn) else {
                if nextSlot < slots.count { endSlot() }
                continue
            }
            switch PQresultStatus(r) {
            case PGRES_PIPELINE_SYNC:
                PQclear(r)
                done = true
            case PGRES_PIPELINE_ABORTED:
                PQclear(r)
            case PGRES_COMMAND_OK, PGRES_TUPLES_OK:
                if let c = current { PQclear(c) }
                current = r
            default:
                if firstError == nil { firstError = connection.failure(from: r, conn: conn) }
                PQclear(r)
                if case .prepare(let sql, _) = slots[nextSlot] { preparing[sql] = nil }
            }
        }
    }

    private func endSlot() {
        switch slots[nextSlot] {
        case .statement(let index):
            if let c = current { results[index] = PostgresResult(c) }
        case .prepare(let sql, let name):
            if let c = current {
                PQclear(c)
                connection.registerPrepared(sql, name: name)
            }
        case .hidden:
            if let c = current { PQclear(c) }
        }
        current = nil
        nextSlot += 1
    }

    deinit {
        if let current { PQclear(current) }
    }
}

/// Runs a statement and returns its rows: a connection, or a pipeline stream (which waits for
/// that statement's result only).
public protocol SQLQuerier {
    @discardableResult
    func query(_ sql: String, _ parameters: [any PostgresBindable], binaryResults: Bool) throws -> PostgresResult
}

extension SQLQuerier {
    @discardableResult
    public func query(_ sql: String, _ parameters: [any PostgresBindable] = []) throws -> PostgresResult {
        try query(sql, parameters, binaryResults: false)
    }
}

extension PostgresConnection: SQLQuerier {}
