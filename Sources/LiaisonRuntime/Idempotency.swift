import Foundation
import LiaisonStorage

/// `request_id` handling for mutating RPCs: call `begin` first inside the handler's transaction,
/// and `record` with the response before it commits.
///
/// - A first request finds nothing, does its work, and records its response.
/// - A replay (same scope, id and request fingerprint) gets the stored response back and changes
///   nothing.
/// - The same id with a different request is refused (`IdempotencyError.reused`).
/// Requests with the same id are serialized by a transaction-scoped advisory lock, so concurrent
/// retries cannot both do the work.
public enum Idempotency {
    /// The stored response for a replay, or nil for a first request. `request` is the canonical
    /// (deterministically serialized) request with its request_id; only its SHA-256 is kept.
    public static func begin(_ c: PostgresConnection, scope: String, requestID: String, request: [UInt8]) throws -> [UInt8]? {
        let statements = beginStatements(scope: scope, requestID: requestID, request: request)
        try c.query(statements[0].sql, statements[0].parameters)
        return try replay(try c.query(statements[1].sql, statements[1].parameters), scope: scope, requestID: requestID)
    }

    /// `begin` as its two statements (the advisory lock, then the lookup), to send in a pipeline
    /// with other reads; pass the lookup's result (the second) to `replay`. They must stay two
    /// statements: under READ COMMITTED the lookup's snapshot is taken after the lock is held.
    public static func beginStatements(scope: String, requestID: String, request: [UInt8])
        -> [(sql: String, parameters: [any PostgresBindable])]
    {
        [
            ("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", [scope + "\u{1f}" + requestID]),
            ("""
             SELECT response, fingerprint = encode(sha256($3::bytea), 'hex')
             FROM idempotency_keys WHERE scope = $1 AND request_id = $2
             """, [scope, requestID, ByteA(request)]),
        ]
    }

    /// The stored response from the lookup of `beginStatements`, nil for a first request.
    public static func replay(_ lookup: PostgresResult, scope: String, requestID: String) throws -> [UInt8]? {
        guard let row = lookup.first else { return nil }
        guard try row.decode(Bool.self, 1) else { throw IdempotencyError.reused(scope: scope, requestID: requestID) }
        return try row.decode(ByteA.self, 0).bytes
    }

    /// Stores the response of a first request (same transaction as its effects).
    public static func record(_ c: some SQLWriter, scope: String, requestID: String, request: [UInt8], response: [UInt8]) throws {
        try c.write("""
            INSERT INTO idempotency_keys (scope, request_id, fingerprint, response)
            VALUES ($1, $2, encode(sha256($3::bytea), 'hex'), $4)
            """, [scope, requestID, ByteA(request), ByteA(response)])
    }

    /// Deletes keys older than `age` (run periodically; the API promises at least 7 days).
    public static func expire(_ c: PostgresConnection, olderThan age: Duration) throws -> Int {
        try c.query(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
            [Double(age.components.seconds)]
        ).affectedRows
    }
}

/// A request id was reused for a different request.
public enum IdempotencyError: Error, Equatable {
    case reused(scope: String, requestID: String)
}
