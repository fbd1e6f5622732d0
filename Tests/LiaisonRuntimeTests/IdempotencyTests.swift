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
            if let replay = try Idempotency.begin(c, scope: "CreateOrder", requestID: requestID, request: request) {
                return replay
            }
            let id = try c.query("INSERT INTO orders (body) VALUES ($1) RETURNING id", [body]).first!.decode(Int.self, 0)
            let response = Array("order \(id)".utf8)
            try Idempotency.record(c, scope: "CreateOrder", requestID: requestID, request: request, response: response)
            return response
        }
    }

    func testReplayReturnsTheStoredResponseAndWritesNothing() async throws {
        let first = try await create("req-1", "tea")
        let second = try await create("req-1", "tea")
        XCTAssertEqual(first, second)
        let n = try await pool.query("SELECT count(*) FROM orders").first!.decode(Int.self, 0)
        XCTAssertEqual(n, 1)
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
                _ = try Idempotency.begin(c, scope: "CreateOrder", requestID: "req-x", request: [1])
                try c.query("SELECT 1/0")
            }
        } catch {}
        let response = try await create("req-x", "tea")
        XCTAssertEqual(String(decoding: response, as: UTF8.self).hasPrefix("order "), true)
    }
}
