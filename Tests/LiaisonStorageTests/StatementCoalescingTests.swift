import Foundation
import LiaisonStorage
import LiaisonTestSupport
import XCTest

/// `StatementBatch.coalesce`: independent units' single-row inserts merged into multi-row inserts,
/// checked against PostgreSQL: the same rows as running every statement alone, in an order the
/// foreign keys accept.
final class StatementCoalescingTests: XCTestCase {
    var pool: PostgresPool!

    override func setUp() async throws {
        let url = try TestPostgres.shared.createDatabase("coalesce")
        pool = PostgresPool(.init(url: url, maxConnections: 2))
        try await pool.withConnection { c in
            try c.execute(script: """
                CREATE TABLE parent (id text PRIMARY KEY, n bigint NOT NULL, note text NOT NULL);
                CREATE TABLE child (id text PRIMARY KEY, parent text NOT NULL REFERENCES parent (id), body bytea NOT NULL,
                                    tag text NOT NULL, doubled bigint NOT NULL);
                CREATE TABLE log (seq bigserial PRIMARY KEY, unit int NOT NULL, what text NOT NULL);
                """)
        }
    }

    override func tearDown() async throws {
        await pool.close()
    }

    static let insertParent = "INSERT INTO parent (id, n, note) VALUES ($1, $2, '$9 stays text')"
    static let insertChild = """
        INSERT INTO child (id, parent, body, tag, doubled)
        VALUES ($1, $2, $3, upper($4), $5 * 2)
        """
    static let insertLog = "INSERT INTO log (unit, what) VALUES ($1, $2)"

    /// Unit k: either opens a parent and adds a child to it, or (odd k) updates an existing parent
    /// and adds a child; then two log rows.
    func units(_ count: Int, start: Int = 0) -> [[StatementBatch.Statement]] {
        (start..<start + count).map { k in
            var unit: [StatementBatch.Statement] = []
            let parent = k % 2 == 1 ? "p-seed" : "p\(k)"
            if k % 2 == 1 {
                unit.append(("UPDATE parent SET n = n + $2 WHERE id = $1", [parent, Int64(1)]))
            } else {
                unit.append((Self.insertParent, [parent, Int64(k)]))
            }
            unit.append((Self.insertChild, ["c\(k)", parent, ByteA([UInt8(k & 0xff), 0, 39, 36]), "t'\(k)", Int64(k)]))
            unit.append((Self.insertLog, [Int64(k), "parent"]))
            unit.append((Self.insertLog, [Int64(k), "child"]))
            return unit
        }
    }

    static func snapshot(_ c: PostgresConnection) throws -> [String] {
        var out: [String] = []
        for row in try c.query("SELECT id, n, note FROM parent ORDER BY id").rows {
            out.append("parent \(try row.decode(String.self, 0)) \(try row.decode(Int64.self, 1)) \(try row.decode(String.self, 2))")
        }
        for row in try c.query("SELECT id, parent, encode(body, 'hex'), tag, doubled FROM child ORDER BY id").rows {
            out.append("child \(try row.decode(String.self, 0)) \(try row.decode(String.self, 1)) \(try row.decode(String.self, 2)) \(try row.decode(String.self, 3)) \(try row.decode(Int64.self, 4))")
        }
        // Log rows: each unit's own rows stay in its order.
        for row in try c.query("SELECT unit, string_agg(what, ',' ORDER BY seq) FROM log GROUP BY unit ORDER BY unit").rows {
            out.append("log \(try row.decode(Int64.self, 0)) \(try row.decode(String.self, 1))")
        }
        return out
    }

    static func reset(_ c: PostgresConnection) throws {
        try c.execute(script: "TRUNCATE child, parent, log; INSERT INTO parent VALUES ('p-seed', 0, 'seed')")
    }

    func testMergedInsertsWriteTheSameRowsAsOneStatementEach() async throws {
        let units = self.units(40)
        let coalesced = StatementBatch.coalesce(units)
        // One UPDATE per odd unit, then one insert per table (log's two rows per unit merge too).
        XCTAssertEqual(coalesced.count, 20 + 3, coalesced.map(\.sql).joined(separator: "\n"))
        XCTAssertEqual(coalesced.filter { $0.sql.hasPrefix("INSERT INTO child") }.count, 1)
        // The merged text is built once per template and row count; the second time comes from
        // the cache, the same text.
        XCTAssertEqual(StatementBatch.coalesce(units).map(\.sql), coalesced.map(\.sql))
        try await pool.withConnection { c in
            try Self.reset(c)
            _ = try c.pipeline(units.flatMap { $0 })
            let expected = try Self.snapshot(c)
            try Self.reset(c)
            _ = try c.inTransaction { try $0.pipeline(coalesced) }
            XCTAssertEqual(try Self.snapshot(c), expected)
            XCTAssertTrue(expected.contains("parent p-seed 20 seed"))
            XCTAssertTrue(expected.contains("parent p0 0 $9 stays text"))
            XCTAssertTrue(expected.contains("child c3 p-seed 03002724 T'3 6"))
        }
    }

    func testGroupsLargerThanTheParameterLimitAreSplit() async throws {
        let units = self.units(30)
        // 5 parameters per child row: at most 3 rows per statement.
        let coalesced = StatementBatch.coalesce(units, maxParameters: 15)
        XCTAssertEqual(coalesced.filter { $0.sql.hasPrefix("INSERT INTO child") }.count, 10)
        XCTAssertTrue(coalesced.allSatisfy { $0.parameters.count <= 15 })
        try await pool.withConnection { c in
            try Self.reset(c)
            _ = try c.pipeline(units.flatMap { $0 })
            let expected = try Self.snapshot(c)
            try Self.reset(c)
            _ = try c.pipeline(coalesced)
            XCTAssertEqual(try Self.snapshot(c), expected)
        }
    }

    func testConflictingOrdersAndNonTemplatesAreLeftAlone() {
        let a: StatementBatch.Statement = ("INSERT INTO a (x) VALUES ($1)", [Int64(1)])
        let b: StatementBatch.Statement = ("INSERT INTO b (x) VALUES ($1)", [Int64(2)])
        // Unit 1 writes a then b, unit 2 b then a: no order serves both, so nothing merges.
        let cycle = StatementBatch.coalesce([[a, b], [b, a]])
        XCTAssertEqual(cycle.map(\.sql), [a.sql, b.sql, b.sql, a.sql])
        // ON CONFLICT, RETURNING, INSERT ... SELECT and placeholders beyond the parameters are
        // not single-row templates.
        for sql in ["INSERT INTO a (x) VALUES ($1) ON CONFLICT (x) DO NOTHING",
                    "INSERT INTO a (x) VALUES ($1) RETURNING x",
                    "INSERT INTO a (x) SELECT $1",
                    "INSERT INTO a (x, y) VALUES ($1, $2)"] {
            let merged = StatementBatch.coalesce([[(sql, [Int64(1)])], [(sql, [Int64(2)])]])
            XCTAssertEqual(merged.count, 2, sql)
        }
        // A unit that comes back to a table after another one is a cycle too.
        XCTAssertEqual(StatementBatch.coalesce([[a, b, a], [a, b, a]]).map(\.sql), [a.sql, b.sql, a.sql, a.sql, b.sql, a.sql])
        // Consecutive rows of one unit into one table merge, in order.
        let merged = StatementBatch.coalesce([[a, a, b], [a, b]])
        XCTAssertEqual(merged.map(\.sql), ["INSERT INTO a (x) VALUES ($1), ($2), ($3)", b.sql.replacingOccurrences(of: "($1)", with: "($1), ($2)")])
        XCTAssertEqual(merged[0].parameters.compactMap { $0 as? Int64 }, [1, 1, 1])
    }
}
