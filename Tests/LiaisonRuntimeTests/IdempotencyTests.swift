import Foundation
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import XCTest

final class IdempotencyTests: XCTestCase {
    var pool: PostgresPool!

    override func setUp() async throws {
        pool = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("idem"), maxConnections: 8))
        try await Migrator(pool: pool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
        try await pool.query("CREATE TABLE orders (id serial PRIMARY KEY, body text)")
    }

    override func tearDown() async throws { await pool.close() }

    /// The pattern every mutating handler follows.
    func create(_ requestID: String, _ body: String) async throws -> [UInt8] {
        try await Self.create(pool, requestID, body)
    }

    static func create(_ pool: PostgresPool, _ requestID: String, _ body: String) async throws -> [UInt8] {
        let request = Array("\(requestID)|\(body)".utf8)
        return try await pool.transaction { c in
            let key = Idempotency.Key(scope: "CreateOrder", requestID: requestID, request: request)
            if let replay = try Idempotency.begin(c, key) {
                return replay
            }
            let id = try c.query("INSERT INTO orders (body) VALUES ($1) RETURNING id", [body]).first!.decode(Int.self, 0)
            let response = Array("order \(id)".utf8)
            try Idempotency.record(c, key, response: response)
            return response
        }
    }

    func testReplayReturnsTheStoredResponseAndWritesNothing() async throws {
        let first = try await create("req-1", "tea")
        let second = try await create("req-1", "tea")
        XCTAssertEqual(first, second)
        let n = try await pool.query("SELECT count(*) FROM orders").first!.decode(Int.self, 0)
        XCTAssertEqual(n, 1)
        // The fingerprint computed in Swift is the one PostgreSQL computes (keys stored when the
        // server computed it keep matching).
        let same = try await pool.query(
            "SELECT fingerprint = encode(sha256($1::bytea), 'hex') FROM idempotency_keys WHERE request_id = 'req-1'",
            [ByteA(Array("req-1|tea".utf8))]).first!.decode(Bool.self, 0)
        XCTAssertTrue(same)
    }

    func testSameIDWithDifferentRequestIsRefused() async throws {
        _ = try await create("req-1", "tea")
        do {
            _ = try await create("req-1", "coffee")
            XCTFail("expected refusal")
        } catch let e as IdempotencyError {
            XCTAssertEqual(e, .reused(scope: "CreateOrder", requestID: "req-1"))
        }
        let n = try await pool.query("SELECT count(*) FROM orders").first!.decode(Int.self, 0)
        XCTAssertEqual(n, 1)
    }

    func testConcurrentRetriesOfOneRequestDoTheWorkOnce() async throws {
        let pool = self.pool!
        let responses = try await withThrowingTaskGroup(of: [UInt8].self) { group in
            for _ in 0..<16 { group.addTask { try await Self.create(pool, "req-storm", "tea") } }
            return try await group.reduce(into: [[UInt8]]()) { $0.append($1) }
        }
        XCTAssertEqual(Set(responses).count, 1)
        let n = try await pool.query("SELECT count(*) FROM orders").first!.decode(Int.self, 0)
        XCTAssertEqual(n, 1)
    }

    func testAFailedRequestDoesNotUseUpItsID() async throws {
        do {
            _ = try await pool.transaction { c in
                _ = try Idempotency.begin(c, Idempotency.Key(scope: "CreateOrder", requestID: "req-x", request: [1]))
                try c.query("SELECT 1/0")
            }
        } catch {}
        let response = try await create("req-x", "tea")
        XCTAssertEqual(String(decoding: response, as: UTF8.self).hasPrefix("order "), true)
    }

    /// The batch lookup stays one index probe per request in the generic plan a connection caches
    /// while the table is small, after the table has grown without being analyzed (as a plain
    /// join, that cached plan was a hash join over every key of the scope).
    func testBatchLookupCachedPlanProbesTheKeyAfterTheTableGrew() async throws {
        let scope = "CreateOrder"
        let (ids, fingerprints, execute) = Self.lookupRequests(scope: scope, count: 100, statement: "lookup_all")
        let plan: String = try await pool.withConnection { c in
            // Planned and cached while the table holds 50 keys of the scope.
            try c.execute(script: """
                INSERT INTO idempotency_keys (scope, request_id, fingerprint, response)
                SELECT '\(scope)', 'small-' || i, 'f', '\\x00'::bytea FROM generate_series(1, 50) i;
                SET plan_cache_mode = force_generic_plan;
                PREPARE lookup_all(text, text[], text[]) AS \(Idempotency.lookupAllSQL);
                \(execute);
                INSERT INTO idempotency_keys (scope, request_id, fingerprint, response)
                SELECT '\(scope)', 'big-' || i, 'f', '\\x00'::bytea FROM generate_series(1, 20000) i;
                INSERT INTO idempotency_keys (scope, request_id, fingerprint, response)
                VALUES ('\(scope)', 'req-7', '\(fingerprints[7])', '\\x01');
                """)
            let rows = try c.query(Idempotency.lookupAllSQL, [scope, TextArray(ids), TextArray(fingerprints)])
            XCTAssertEqual(rows.count, 1)
            XCTAssertEqual(try rows.first!.decode(Bool.self, 1), true)
            XCTAssertEqual(try rows.first!.decode(Int.self, 2), 8)
            let lines = try c.query("EXPLAIN (COSTS OFF) \(execute)").rows.map { try $0.decode(String.self, 0) }
            try c.execute(script: "DEALLOCATE lookup_all; RESET plan_cache_mode")
            return lines.joined(separator: "\n")
        }
        XCTAssertTrue(plan.contains("Index Scan using idempotency_keys_pkey"), plan)
        XCTAssertFalse(plan.contains("Hash Join"), plan)
        XCTAssertFalse(plan.contains("Seq Scan"), plan)
    }

    /// Under the default plan_cache_mode, the batch lookup settles on its cached generic plan
    /// (an index probe per request) instead of being planned again at every call: with
    /// `unnest ... WITH ORDINALITY` the planner sized a known array exactly and guessed 10
    /// elements for the parameter, so for a few ids the generic plan always looked dearer.
    func testBatchLookupUsesItsCachedGenericPlan() async throws {
        let scope = "CreateOrder"
        let (_, _, execute) = Self.lookupRequests(scope: scope, count: 6, statement: "lookup_few")
        let (generic, custom, plan): (Int, Int, String) = try await pool.withConnection { c in
            try c.execute(script: """
                RESET plan_cache_mode;
                INSERT INTO idempotency_keys (scope, request_id, fingerprint, response)
                SELECT '\(scope)', 'few-' || i, 'f', '\\x00'::bytea FROM generate_series(1, 2000) i;
                ANALYZE idempotency_keys;
                PREPARE lookup_few(text, text[], text[]) AS \(Idempotency.lookupAllSQL);
                """)
            for _ in 0..<10 { try c.execute(script: execute) }
            let counts = try c.query(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'lookup_few'").first!
            let lines = try c.query("EXPLAIN (COSTS OFF) \(execute)").rows.map { try $0.decode(String.self, 0) }
            try c.execute(script: "DEALLOCATE lookup_few")
            return (try counts.decode(Int.self, 0), try counts.decode(Int.self, 1), lines.joined(separator: "\n"))
        }
        // PostgreSQL plans the first five executions for their values, then compares.
        XCTAssertEqual(custom, 5, "planned again at every call")
        XCTAssertGreaterThanOrEqual(generic, 5)
        XCTAssertTrue(plan.contains("Index Scan using idempotency_keys_pkey"), plan)
        XCTAssertFalse(plan.contains("Hash Join"), plan)
    }

    /// `count` request ids with their fingerprints, and an EXECUTE of the prepared batch lookup
    /// `statement` over them (array literals).
    static func lookupRequests(scope: String, count: Int, statement: String)
        -> (ids: [String], fingerprints: [String], execute: String) {
        let ids = (0..<count).map { "req-\($0)" }
        let fingerprints = ids.map { Idempotency.Key(scope: scope, requestID: $0, request: Array($0.utf8)).fingerprint }
        func literal(_ xs: [String]) -> String { "'{" + xs.joined(separator: ",") + "}'" }
        return (ids, fingerprints, "EXECUTE \(statement)('\(scope)', \(literal(ids)), \(literal(fingerprints)))")
    }
}
