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
    /// One request's identity: its scope (the method), its request_id, and the fingerprint of its
    /// content (hex SHA-256 of the canonical request bytes, computed once here and used by both
    /// the lookup and the record).
    public struct Key: Sendable {
        public let scope: String
        public let requestID: String
        public let fingerprint: String

        /// `request` is the canonical (deterministically serialized) request with its
        /// request_id; only its SHA-256 is kept.
        public init(scope: String, requestID: String, request: [UInt8]) {
            self.scope = scope
            self.requestID = requestID
            self.fingerprint = hexString(SHA256.hash(request))
        }

        /// The text whose hash is the request's advisory lock.
        public var lockKey: String { scope + "\u{1f}" + requestID }
    }

    /// The stored response for a replay, or nil for a first request. One round trip: the lock
    /// and the lookup go in one pipeline.
    public static func begin(_ c: PostgresConnection, _ key: Key) throws -> [UInt8]? {
        try replay(try c.pipeline(beginStatements(key))[1].first, key)
    }

    /// `begin` as its two statements (the advisory lock, then the lookup), to send in a pipeline
    /// with other reads; pass the lookup's row (of the second) to `replay`. They must stay two
    /// statements: under READ COMMITTED the lookup's snapshot is taken after the lock is held.
    public static func beginStatements(_ key: Key) -> [(sql: String, parameters: [any PostgresBindable])] {
        [
            ("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", [key.lockKey]),
            ("""
             SELECT response, fingerprint = $3
             FROM idempotency_keys WHERE scope = $1 AND request_id = $2
             """, [key.scope, key.requestID, key.fingerprint]),
        ]
    }

    /// The stored response from one lookup row (`response`, whether the request matches), nil for
    /// a first request (no row).
    public static func replay(_ row: PostgresRow?, _ key: Key) throws -> [UInt8]? {
        guard let row else { return nil }
        guard try row.decode(Bool.self, 1) else { throw IdempotencyError.reused(scope: key.scope, requestID: key.requestID) }
        return try row.decode(ByteA.self, 0).bytes
    }

    // MARK: Many requests at once (batches)

    /// Takes the advisory locks of several requests in one statement; $1 is a text array of their
    /// `Key.lockKey`s. The locks are taken in hash order, so two transactions locking overlapping
    /// sets cannot deadlock on them.
    public static let lockAllSQL = """
        SELECT count(pg_advisory_xact_lock(h)) FROM (
            SELECT DISTINCT hashtextextended(k, 7) AS h FROM unnest($1::text[]) AS k ORDER BY 1 OFFSET 0) locks
        """

    /// Looks several requests up in one statement, after `lockAllSQL` (same transaction, a later
    /// statement, so under READ COMMITTED it sees what the lock holders committed). $1 scope,
    /// $2 request ids, $3 their `Key.fingerprint`s. Rows: response, whether the request matches,
    /// and the request's 1-based position in the arrays (int8); none for first requests.
    ///
    /// One primary-key probe per request, whatever the statistics: the `LIMIT 1` keeps the
    /// lateral subquery from being flattened into a join. As a plain join, the generic plan a
    /// connection caches for this prepared statement while the table is small is a hash join that
    /// reads every key of the scope, and it stays cached until the table is next analyzed; the
    /// intake benchmark measured it at 3.8 ms per 100-entry lookup against 0.4 ms for the probes.
    ///
    /// The positions come from `generate_subscripts`, not `unnest ... WITH ORDINALITY`: the
    /// planner sizes `unnest` of a known array exactly (custom plans) but guesses 10 elements for
    /// a parameter (the generic plan), so for the usual handful of ids the generic plan always
    /// looked dearer and PostgreSQL planned the statement again at every call (pg_stat_statements
    /// in the intake benchmark: 73 µs of planning per call, about 10 µs per batched report).
    /// `generate_subscripts` gets the same estimate either way, so the cached generic plan (the
    /// same probes) is used.
    public static let lookupAllSQL = """
        SELECT ik.response, ik.fingerprint = ($3::text[])[q.i], q.i::int8
        FROM generate_subscripts($2::text[], 1) AS q(i)
        CROSS JOIN LATERAL (
            SELECT response, fingerprint FROM idempotency_keys
            WHERE scope = $1 AND request_id = ($2::text[])[q.i] LIMIT 1) ik
        """

    /// Stores the response of a first request (same transaction as its effects).
    public static func record(_ c: some SQLWriter, _ key: Key, response: [UInt8]) throws {
        try c.write("""
            INSERT INTO idempotency_keys (scope, request_id, fingerprint, response)
            VALUES ($1, $2, $3, $4)
            """, [key.scope, key.requestID, key.fingerprint, ByteA(response)])
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
