import Foundation
import LiaisonStorage
import LiaisonTestSupport
import XCTest

/// `PostgresConnection.streaming`: statements sent while the caller works, results read on demand,
/// against a real server.
final class PipelineStreamTests: XCTestCase {
    var pool: PostgresPool!

    override func setUp() async throws {
        let url = try TestPostgres.shared.createDatabase("stream")
        pool = PostgresPool(.init(url: url, maxConnections: 2))
        try await pool.query("CREATE TABLE s (id int PRIMARY KEY, body text NOT NULL, blob bytea)")
    }

    override func tearDown() async throws {
        await pool.close()
    }

    func count(_ sql: String = "SELECT count(*) FROM s") async throws -> Int {
        try await pool.query(sql).first!.decode(Int.self, 0)
    }

    /// Reads, then writes that depend on what was read, then COMMIT, in one stream and one
    /// transaction; results asked for in any order.
    func testWritesDependingOnReadsCommitInOneStream() async throws {
        try await pool.query("INSERT INTO s (id, body) SELECT i, 'seed ' || i FROM generate_series(1, 10) i")
        let bodies: [String] = try await pool.transaction { c in
            try c.streaming { p in
                let reads = try p.send((1...10).map { ("SELECT body FROM s WHERE id = $1", [$0]) })
                // The last read first: the earlier ones are kept until asked for.
                XCTAssertEqual(try p.result(reads.upperBound - 1).first!.decode(String.self, 0), "seed 10")
                var out: [String] = []
                for (k, i) in reads.enumerated() {
                    let body = try p.result(i).first!.decode(String.self, 0)
                    out.append(body)
                    // Written while later reads are still being read: they ran before it.
                    try p.send([("INSERT INTO s (id, body) VALUES ($1, $2)", [101 + k, body.uppercased()])])
                }
                XCTAssertEqual(try p.query("SELECT count(*) FROM s").first!.decode(Int.self, 0), 20)
                try p.commit()
                return out
            }
        }
        XCTAssertEqual(bodies, (1...10).map { "seed \($0)" })
        let copied = try await count("SELECT count(*) FROM s WHERE id > 100 AND body LIKE 'SEED %'")
        XCTAssertEqual(copied, 10)
    }

    /// A failed statement: it and every later statement throw the server's error, the stream's end
    /// throws it, and the transaction writes nothing. The connection is usable afterwards.
    func testAFailureSkipsTheRestAndRollsBack() async throws {
        try await assertStreamFailsAndWritesNothing(sqlState: "23505") { p in
            let sent = try p.send([("INSERT INTO s (id, body) VALUES ($1, 'a')", [1]),
                                   ("INSERT INTO s (id, body) VALUES ($1, 'b')", [1]),
                                   ("INSERT INTO s (id, body) VALUES ($1, 'c')", [2])])
            XCTAssertNoThrow(try p.result(sent.lowerBound))
            for i in sent.dropFirst() {
                XCTAssertThrowsError(try p.result(i)) { error in
                    XCTAssertEqual((error as? PostgresError)?.sqlState, "23505")
                }
            }
            try p.commit()
        }
    }

    /// A failure the body never asked about is thrown when the stream ends.
    func testAFailureNotAskedAboutIsThrownAtTheEnd() async throws {
        try await assertStreamFailsAndWritesNothing(sqlState: "22012") { p in
            try p.send([("INSERT INTO s (id, body) VALUES ($1, 'a')", [1]), ("SELECT 1 / $1", [0])])
        }
    }

    /// Runs `body` on a stream in a transaction: the transaction must fail with `sqlState` and
    /// leave the table empty.
    func assertStreamFailsAndWritesNothing(sqlState: String, file: StaticString = #filePath, line: UInt = #line,
                                           _ body: @escaping @Sendable (PipelineStream) throws -> Void) async throws {
        do {
            try await pool.transaction { c in try c.streaming(body) }
            XCTFail("expected SQLSTATE \(sqlState)", file: file, line: line)
        } catch let e as PostgresError {
            XCTAssertEqual(e.sqlState, sqlState, file: file, line: line)
        }
        let n = try await count()
        XCTAssertEqual(n, 0, file: file, line: line)
    }

    /// SQL the connection has not prepared yet is prepared inside the stream; a statement that does
    /// not parse fails like any other, and is prepared again next time.
    func testNewStatementsArePreparedInTheStreamAndBadOnesReported() async throws {
        try await pool.withConnection { c in
            try c.streaming { p in
                for k in 1...3 {
                    // A new text each time (a different number of rows).
                    let values = (0..<k).map { "($\($0 * 2 + 1), $\($0 * 2 + 2))" }.joined(separator: ", ")
                    let parameters: [any PostgresBindable] = (0..<k).flatMap { [k * 10 + $0, "row"] as [any PostgresBindable] }
                    try p.send([("INSERT INTO s (id, body) VALUES \(values)", parameters)])
                }
            }
            XCTAssertThrowsError(try c.streaming { p in try p.query("SELEKT 1") }) { error in
                XCTAssertEqual((error as? PostgresError)?.sqlState, "42601")
            }
            XCTAssertThrowsError(try c.streaming { p in try p.query("SELEKT 1") })
            XCTAssertEqual(try c.query("SELECT count(*) FROM s").first!.decode(Int.self, 0), 6)
        }
    }

    /// A statement is prepared once per connection, whichever way it is sent: running the same
    /// pipelines and streams again prepares nothing new.
    func testStatementsArePreparedOncePerConnection() async throws {
        try await pool.withConnection { c in
            func prepared() throws -> Int { try c.query("SELECT count(*) FROM pg_prepared_statements").first!.decode(Int.self, 0) }
            func run(_ k: Int) throws {
                _ = try c.pipeline([("SELECT $1::int + 1", [k]), ("SELECT $1::text || 'x'", ["a"])])
                try c.inTransaction { c in
                    _ = try c.pipeline([("SELECT $1::int + 2", [k])])
                    try c.streaming { p in _ = try p.query("SELECT $1::int + 3", [k]) }
                }
            }
            try run(0)
            let after = try prepared()
            for k in 1...10 { try run(k) }
            XCTAssertEqual(try prepared(), after)
        }
    }

    /// While a stream is open, the connection's own methods refuse to run.
    func testTheConnectionRefusesStatementsWhileAStreamIsOpen() async throws {
        try await pool.withConnection { c in
            try c.streaming { p in
                XCTAssertThrowsError(try c.query("SELECT 1")) { error in
                    XCTAssertEqual((error as? PostgresError)?.kind, .client)
                }
                XCTAssertEqual(try p.query("SELECT 2").first!.decode(Int.self, 0), 2)
            }
            XCTAssertEqual(try c.query("SELECT 3").first!.decode(Int.self, 0), 3)
        }
    }

    /// A deadline cancels the statement the stream is waiting on: the call fails with
    /// DEADLINE_EXCEEDED, the transaction writes nothing, and the connection goes back usable.
    func testADeadlineCancelsTheStreamAndRollsBack() async throws {
        let start = ContinuousClock.now
        do {
            _ = try await pool.withConnection(deadline: .now + .milliseconds(300)) { c in
                try c.inTransaction { c in
                    try c.streaming { p in
                        try p.send([("INSERT INTO s (id, body) VALUES ($1, 'a')", [1])])
                        try p.query("SELECT pg_sleep(30)")
                        try p.commit()
                    }
                }
            }
            XCTFail("expected deadline exceeded")
        } catch let e as PostgresError {
            XCTAssertEqual(e.kind, .deadlineExceeded)
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(20))
        let n = try await count()
        XCTAssertEqual(n, 0)
        let one = try await pool.transaction { c in try c.streaming { p in try p.query("SELECT 1").first!.decode(Int.self, 0) } }
        XCTAssertEqual(one, 1)
    }

    /// Megabytes both ways at once: large rows written while large results are still unread.
    /// Neither side's buffers may fill up and stall the other.
    func testLargeTrafficBothWaysDoesNotStall() async throws {
        let blob = ByteA([UInt8](repeating: 0xA5, count: 64 * 1024))
        let total: Int = try await pool.transaction { c in
            try c.streaming { p in
                var reads: [Int] = []
                for i in 0..<64 {
                    try p.send([("INSERT INTO s (id, body, blob) VALUES ($1, 'big', $2)", [i, blob])])
                    // Each read returns everything written so far (up to 4 MB per result).
                    reads.append(try p.send([("SELECT blob FROM s", [])], binaryResults: true).lowerBound)
                }
                var rows = 0
                for r in reads { rows += try p.result(r).count }
                try p.commit()
                return rows
            }
        }
        XCTAssertEqual(total, (1...64).reduce(0, +))
        let n = try await count()
        XCTAssertEqual(n, 64)
    }
}
