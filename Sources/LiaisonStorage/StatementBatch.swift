/// Runs statements whose results the caller does not need: a `PostgresConnection` runs each at
/// once (a round trip each), a `StatementBatch` collects them to send in one pipeline. Code that
/// only writes (outbox rows, idempotency records, a repository's inserts) takes `some SQLWriter`
/// so that its caller decides.
public protocol SQLWriter {
    func write(_ sql: String, _ parameters: [any PostgresBindable]) throws
}

extension PostgresConnection: SQLWriter {
    public func write(_ sql: String, _ parameters: [any PostgresBindable]) throws {
        try query(sql, parameters)
    }
}

/// Write statements collected in order and sent together with `flush(on:)`: one round trip for
/// all of them (libpq pipeline mode) instead of one each. The first failing statement throws and
/// the ones after it are not executed, so flush inside a transaction for all-or-nothing. Not
/// thread-safe: one batch belongs to one transaction's code.
public final class StatementBatch: SQLWriter {
    public private(set) var statements: [(sql: String, parameters: [any PostgresBindable])] = []

    public init() {}

    public var isEmpty: Bool { statements.isEmpty }

    public func write(_ sql: String, _ parameters: [any PostgresBindable]) throws {
        statements.append((sql, parameters))
    }

    /// Appends another batch's statements (after this batch's own).
    public func append(contentsOf other: StatementBatch) {
        statements.append(contentsOf: other.statements)
    }

    /// Sends every collected statement in one pipeline and empties the batch.
    @discardableResult
    public func flush(on connection: PostgresConnection) throws -> [PostgresResult] {
        let pending = statements
        statements = []
        return try connection.pipeline(pending)
    }
}
