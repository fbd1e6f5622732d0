import Foundation
import LiaisonStorage
import LiaisonTestSupport
import Synchronization
import XCTest

final class PostgresClientTests: XCTestCase {
    var pool: PostgresPool!

    override func setUp() async throws {
        let url = try TestPostgres.shared.createDatabase("storage")
        pool = PostgresPool(.init(url: url, maxConnections: 4))
    }

    override func tearDown() async throws {
        await pool.close()
    }

    /// `lowercasedString` is Foundation's `uuidString.lowercased()`, written directly.
    func testUUIDLowercasedStringIsTheCanonicalForm() {
        var uuids = [UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
                     UUID(uuid: (255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255))]
        uuids += (0..<1000).map { _ in UUID() }
        for u in uuids { XCTAssertEqual(u.lowercasedString, u.uuidString.lowercased()) }
    }

    func testValuesRoundTripThroughParametersAndRows() async throws {
        let date = Date(timeIntervalSince1970: 1_764_373_938.123456)
        let id = UUID()
        let row = try await pool.query(
            "SELECT $1::text, $2::bigint, $3::float8, $4::bool, $5::timestamptz, $6::uuid, $7::bytea, $8::text[], $9::text",
            ["tab\there 'quote' \"dq\" é", Int64.max, 3.25, true, date, id, ByteA([0, 1, 254, 255]),
             TextArray(["a", "b,c", "d\"e", "", "f\\g", "é☃ {x}"]), String?.none]
        ).first!
        XCTAssertEqual(try row.decode(String.self, 0), "tab\there 'quote' \"dq\" é")
        XCTAssertEqual(try row.decode(Int64.self, 1), Int64.max)
        XCTAssertEqual(try row.decode(Double.self, 2), 3.25)
        XCTAssertEqual(try row.decode(Bool.self, 3), true)
        XCTAssertEqual(try row.decode(Date.self, 4).timeIntervalSince1970, date.timeIntervalSince1970, accuracy: 0.000001)
        XCTAssertEqual(try row.decode(UUID.self, 5), id)
        XCTAssertEqual(try row.decode(ByteA.self, 6), ByteA([0, 1, 254, 255]))
        XCTAssertEqual(try row.decode(TextArray.self, 7).values, ["a", "b,c", "d\"e", "", "f\\g", "é☃ {x}"])
        XCTAssertNil(try row.decode(String?.self, 8))
        XCTAssertTrue(row.isNull(8))
        XCTAssertThrowsError(try row.decode(String.self, 8))  // NULL into non-optional
        XCTAssertThrowsError(try row.decode(Int.self, 0))  // wrong type
    }

    /// Results requested in binary format decode to the same values as the text format, for every
    /// type with a binary decoder (extremes, negatives, pre-2000 and far-future instants, NULLs);
    /// a type without one (text[]) is refused with a decoding error, not misread.
    func testBinaryResultsDecodeAsTheTextFormatDoes() async throws {
        let sql = """
            SELECT v.s, v.b, v.t, v.i2, v.i4, v.i8, v.f, v.u, v.ts, v.n, v.arr FROM (VALUES
              ('plain', '\\x00ff5c78'::bytea, true, (-32768)::int2, (-2147483648)::int4, 9223372036854775807::int8,
               -1.5::float8, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, '1969-07-20 20:17:40.000001+00'::timestamptz,
               NULL::text, ARRAY['x']),
              ('é \u{1F600}', ''::bytea, false, 7::int2, 0::int4, (-1)::int8, 'Infinity'::float8,
               '00000000-0000-0000-0000-000000000000'::uuid, '2000-01-01 00:00:00+00'::timestamptz, 'n', ARRAY['y']),
              ('', decode(repeat('a5', 1040), 'hex'), true, 0::int2, 42::int4, (-9223372036854775808)::int8, 0::float8,
               'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid, '9999-12-31 23:59:59.999999+00'::timestamptz, NULL, ARRAY['z']),
              ('t', '\\x01'::bytea, false, 1::int2, 1::int4, 1::int8, 1e-300::float8,
               'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, '1999-12-31 23:59:59.5+00'::timestamptz, NULL, ARRAY['w'])
            ) AS v(s, b, t, i2, i4, i8, f, u, ts, n, arr)
            """
        let (text, binary, piped) = try await pool.withConnection { c in
            (try c.query(sql), try c.query(sql, binaryResults: true),
             try c.pipeline([("SELECT 1", []), (sql, [])], binaryResults: [1])[1])
        }
        XCTAssertEqual(text.count, 4)
        for result in [binary, piped] {
            for (a, b) in zip(text.rows, result.rows) {
                XCTAssertEqual(try a.decode(String.self, 0), try b.decode(String.self, 0))
                XCTAssertEqual(try a.decode(ByteA.self, 1), try b.decode(ByteA.self, 1))
                XCTAssertEqual(try a.decode(Bool.self, 2), try b.decode(Bool.self, 2))
                XCTAssertEqual(try a.decode(Int16.self, 3), try b.decode(Int16.self, 3))
                XCTAssertEqual(try a.decode(Int32.self, 4), try b.decode(Int32.self, 4))
                XCTAssertEqual(try a.decode(Int64.self, 5), try b.decode(Int64.self, 5))
                XCTAssertEqual(try a.decode(Int.self, 3), try b.decode(Int.self, 3))
                XCTAssertEqual(try a.decode(Double.self, 6), try b.decode(Double.self, 6))
                XCTAssertEqual(try a.decode(UUID.self, 7), try b.decode(UUID.self, 7))
                XCTAssertEqual(try a.decode(Date.self, 8), try b.decode(Date.self, 8))
                XCTAssertEqual(try a.decode(String?.self, 9), try b.decode(String?.self, 9))
                XCTAssertEqual(try a.decode(TextArray.self, 10).values.count, 1)
                XCTAssertThrowsError(try b.decode(TextArray.self, 10))
                // Narrowing is checked: int8 extremes do not fit an Int16.
                XCTAssertEqual((try? a.decode(Int16.self, 5)) == nil, (try? b.decode(Int16.self, 5)) == nil)
            }
        }
    }

    /// bytea parameters travel in binary format: every byte value, the empty value and NULL
    /// arrive exactly, alone and in a pipeline, mixed with text parameters.
    func testByteaParametersInBinaryFormat() async throws {
        let all = ByteA((0...255).map { UInt8($0) } + [0, 0, 92, 120])
        let row = try await pool.query(
            "SELECT $1::bytea, encode($1::bytea, 'hex'), length($2::bytea), $3::bytea IS NULL, $4::text, encode(sha256($1::bytea), 'hex')",
            [all, ByteA([]), ByteA?.none, "after"]
        ).first!
        XCTAssertEqual(try row.decode(ByteA.self, 0), all)
        XCTAssertEqual(try row.decode(String.self, 1), all.bytes.map { String(format: "%02x", $0) }.joined())
        XCTAssertEqual(try row.decode(Int.self, 2), 0)
        XCTAssertEqual(try row.decode(Bool.self, 3), true)
        XCTAssertEqual(try row.decode(String.self, 4), "after")
        XCTAssertEqual(try row.decode(String.self, 5).count, 64)
        let piped = try await pool.withConnection { c in
            try c.pipeline([("SELECT $1::bytea", [ByteA([1, 2, 3])]), ("SELECT length($1::bytea)", [ByteA([UInt8](repeating: 7, count: 100_000))])])
        }
        XCTAssertEqual(try piped[0].first!.decode(ByteA.self, 0), ByteA([1, 2, 3]))
        XCTAssertEqual(try piped[1].first!.decode(Int.self, 0), 100_000)
        // The hex decoder: upper and lower case; anything else refused.
        XCTAssertEqual(try ByteA(postgresText: "\\x00aBfF"), ByteA([0, 0xAB, 0xFF]))
        XCTAssertEqual(try ByteA(postgresText: "\\x"), ByteA([]))
        for bad in ["\\xzz", "\\x0", "x00", "", "\\x0g"] {
            XCTAssertThrowsError(try ByteA(postgresText: bad), bad)
        }
    }

    func testInjectionAttemptIsJustAValue() async throws {
        try await pool.query("CREATE TABLE t (v text)")
        try await pool.query("INSERT INTO t VALUES ($1)", ["x'); DROP TABLE t; --"])
        let n = try await pool.query("SELECT count(*) FROM t").first!.decode(Int.self, 0)
        XCTAssertEqual(n, 1)
    }

    func testServerErrorsAreClassifiedAndMappedToStatusCodes() async throws {
        try await pool.query("CREATE TABLE u (id int PRIMARY KEY, n int CHECK (n > 0), p int REFERENCES u(id))")
        try await pool.query("INSERT INTO u VALUES (1, 1, NULL)")
        func code(_ sql: String, _ params: [any PostgresBindable]) async -> StatusCodeMapping.Code? {
            do { try await pool.query(sql, params); return nil } catch let e as PostgresError {
                return StatusCodeMapping.code(for: e)
            } catch { return nil }
        }
        let dup = await code("INSERT INTO u VALUES ($1, 1, NULL)", [1])
        XCTAssertEqual(dup, .alreadyExists)
        let check = await code("INSERT INTO u VALUES ($1, -1, NULL)", [2])
        XCTAssertEqual(check, .invalidArgument)
        let fk = await code("INSERT INTO u VALUES ($1, 1, 99)", [3])
        XCTAssertEqual(fk, .failedPrecondition)
        do {
            try await pool.query("INSERT INTO u VALUES ($1, 1, NULL)", [1])
            XCTFail("expected unique violation")
        } catch let e as PostgresError {
            XCTAssertEqual(e.kind, .server)
            XCTAssertEqual(e.sqlState, SQLState.uniqueViolation)
            XCTAssertEqual(e.constraint, "u_pkey")
        }
        // The failed statements changed nothing.
        let value1 = try await pool.query("SELECT count(*) FROM u").first!.decode(Int.self, 0)
        XCTAssertEqual(value1, 1)
    }

    func testPoolUnderConcurrentLoadNeitherDeadlocksNorLeaks() async throws {
        try await pool.query("CREATE TABLE load (id serial PRIMARY KEY, worker int)")
        let pool = self.pool!
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<64 {
                group.addTask {
                    for _ in 0..<25 {
                        try await pool.query("INSERT INTO load (worker) VALUES ($1)", [worker])
                        _ = try await pool.transaction { c in
                            try c.query("SELECT count(*) FROM load WHERE worker = $1", [worker]).first!.decode(Int.self, 0)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let value2 = try await pool.query("SELECT count(*) FROM load").first!.decode(Int.self, 0)
        XCTAssertEqual(value2, 64 * 25)
        XCTAssertLessThanOrEqual(pool.openConnections, 4)
        let db = try await pool.query("SELECT current_database()").first!.decode(String.self, 0)
        let backends = try await pool.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", [db]).first!.decode(Int.self, 0)
        XCTAssertLessThanOrEqual(backends, 4)
    }

    func testSerializationFailuresAreRetriedUntilEveryIncrementLands() async throws {
        try await pool.query("CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)")
        try await pool.query("INSERT INTO counter VALUES (1, 0)")
        let attempts = Shared(0)
        let pool = self.pool!
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    try await pool.transaction(.serializable) { c in
                        attempts.with { $0 += 1 }
                        let n = try c.query("SELECT n FROM counter WHERE id = 1").first!.decode(Int.self, 0)
                        // Widen the race window so that concurrent transactions really conflict.
                        try c.query("SELECT pg_sleep(0.01)")
                        try c.query("UPDATE counter SET n = $1 WHERE id = 1", [n + 1])
                    }
                }
            }
            try await group.waitForAll()
        }
        let value3 = try await pool.query("SELECT n FROM counter").first!.decode(Int.self, 0)
        XCTAssertEqual(value3, 16)
        XCTAssertGreaterThan(attempts.current, 16, "no serialization failure was provoked")
    }

    /// Timestamps and integers are encoded and parsed without libc or intermediate strings: they
    /// must agree with PostgreSQL's own calendar and arithmetic. Dates go in as parameters, come
    /// back as PostgreSQL prints them, and must be the same instant (to the microsecond); the
    /// server also checks our text against the epoch plus the same number of microseconds.
    func testTimestampsAndIntegersAgreeWithPostgreSQL() async throws {
        var dates: [Date] = [
            Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: -0.000001), Date(timeIntervalSince1970: -86_400.5),
            Date(timeIntervalSince1970: 951_782_400.123456),  // 2000-02-29
            Date(timeIntervalSince1970: -2_203_891_200),  // 1900-03-01
            Date(timeIntervalSince1970: 4_107_456_000.999999),  // 2100-02-28
            Date(timeIntervalSince1970: 253_402_300_799.5),  // 9999-12-31 23:59:59.5
            Date(timeIntervalSince1970: 253_402_300_800),  // 10000-01-01: PostgreSQL prints five digits
            Date(timeIntervalSince1970: -62_135_596_800),  // 0001-01-01
        ]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            // 1900...2100: beyond 2106 a Date (Double seconds) no longer holds every microsecond.
            let micros = Int64.random(in: -2_208_988_800_000_000...4_102_444_800_000_000, using: &generator)
            dates.append(Date(timeIntervalSince1970: Double(micros) / 1_000_000))
        }
        let statements: [(sql: String, parameters: [any PostgresBindable])] = dates.map {
            ("""
             SELECT $1::timestamptz::text, $1::timestamptz = 'epoch'::timestamptz + $2::bigint * interval '1 microsecond',
                    extract(epoch FROM $1::timestamptz)::numeric(20,6)::text
             """, [$0, Int64(($0.timeIntervalSince1970 * 1_000_000).rounded())])
        }
        let results = try await pool.transaction { c in try c.pipeline(statements) }
        for (date, result) in zip(dates, results) {
            let row = result.first!
            let back = try row.decode(Date.self, 0)
            let expected = (date.timeIntervalSince1970 * 1_000_000).rounded()
            let printed = try row.decode(String.self, 0)
            XCTAssertEqual((back.timeIntervalSince1970 * 1_000_000).rounded(), expected, "\(date.postgresText!) came back as \(printed)")
            XCTAssertTrue(try row.decode(Bool.self, 1))
            let epoch = try row.decode(String.self, 2)
            XCTAssertEqual(Double(epoch).map { ($0 * 1_000_000).rounded() }, expected, "epoch of \(date.postgresText!)")
        }
        // Date parsing accepts what PostgreSQL may print: fewer fraction digits, offsets with minutes.
        XCTAssertEqual(try Date(postgresText: "2026-11-29 08:00:00.5+00").timeIntervalSince1970, 1_795_939_200.5)
        XCTAssertEqual(try Date(postgresText: "2026-11-29 09:30:00+01:30").timeIntervalSince1970, 1_795_939_200)
        XCTAssertThrowsError(try Date(postgresText: "2026-11-29T08:00"))

        let ints: [Int64] = [0, 1, -1, 42, Int64.max, Int64.min, 1_000_000_007, -987_654_321]
        let echoed = try await pool.transaction { c in try c.pipeline(ints.map { ("SELECT $1::bigint, ($1::bigint)::text", [$0]) }) }
        for (value, result) in zip(ints, echoed) {
            XCTAssertEqual(try result.first!.decode(Int64.self, 0), value)
            XCTAssertEqual(try Int64(postgresText: try result.first!.decode(String.self, 1)), value)
        }
        XCTAssertThrowsError(try Int64(postgresText: "9223372036854775808"))
        XCTAssertThrowsError(try Int32(postgresText: "2147483648"))
        XCTAssertEqual(try Int32(postgresText: "-2147483648"), Int32.min)
        XCTAssertThrowsError(try Int(postgresText: ""))
        XCTAssertThrowsError(try Int(postgresText: "-"))
        XCTAssertThrowsError(try Int(postgresText: "12a"))
    }

    func testNonRetryableErrorRollsBackTheWholeTransaction() async throws {
        try await pool.query("CREATE TABLE r (id int PRIMARY KEY)")
        do {
            try await pool.transaction { c in
                try c.query("INSERT INTO r VALUES (1)")
                try c.query("INSERT INTO r VALUES (1)")
            }
            XCTFail("expected unique violation")
        } catch let e as PostgresError {
            XCTAssertEqual(e.sqlState, SQLState.uniqueViolation)
        }
        let value4 = try await pool.query("SELECT count(*) FROM r").first!.decode(Int.self, 0)
        XCTAssertEqual(value4, 0)
    }

    /// BEGIN travels with the body's first statement: that statement is inside the transaction
    /// (same transaction time as the later ones, rolled back with them), and a body that runs no
    /// statement opens none.
    func testBeginTravelsWithTheFirstStatement() async throws {
        try await pool.query("CREATE TABLE b (id int)")
        struct Refused: Error {}
        do {
            try await pool.transaction { c in
                try c.query("INSERT INTO b VALUES (1)")
                throw Refused()
            }
            XCTFail("expected the body's error")
        } catch is Refused {}
        let rows = try await pool.query("SELECT count(*) FROM b").first!.decode(Int.self, 0)
        XCTAssertEqual(rows, 0, "the first statement was rolled back with the transaction")

        let sameTransaction = try await pool.transaction { c -> Bool in
            let first = try c.query("SELECT now()::text, txid_current()").first!
            _ = try c.query("SELECT pg_sleep(0.02)")
            let second = try c.pipeline([("SELECT now()::text, txid_current()", [])])[0].first!
            return try first.decode(String.self, 0) == second.decode(String.self, 0)
                && first.decode(Int64.self, 1) == second.decode(Int64.self, 1)
        }
        XCTAssertTrue(sameTransaction)

        let nothing = try await pool.transaction { _ in 42 }
        XCTAssertEqual(nothing, 42)
        let fresh = try await pool.withConnection { c -> Bool in
            // In a transaction left open, now() would stand still between statements.
            let a = try c.query("SELECT now()::text").first!.decode(String.self, 0)
            _ = try c.query("SELECT pg_sleep(0.02)")
            return try a != c.query("SELECT now()::text").first!.decode(String.self, 0)
        }
        XCTAssertTrue(fresh, "no transaction left open by an empty body")
    }

    /// `commit(with:)` sends the last writes and COMMIT in one round trip: they are durable, the
    /// transaction does not commit twice, a statement after it is refused, and a failing write
    /// rolls everything back and leaves the (only) connection usable.
    func testCommitWithTheLastWritesInOneRoundTrip() async throws {
        let single = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("storage"), maxConnections: 1))
        defer { Task { await single.close() } }
        try await single.query("CREATE TABLE cw (id int PRIMARY KEY)")
        let backend = try await single.withConnection { $0.backendPID }

        // Reads, then the writes with the commit.
        let xid = try await single.transaction { c -> Int64 in
            let xid = try c.query("SELECT txid_current()").first!.decode(Int64.self, 0)
            try c.commit(with: [("INSERT INTO cw VALUES ($1)", [1]), ("INSERT INTO cw VALUES ($1)", [2])])
            return xid
        }
        var rows = try await single.query("SELECT count(*) FROM cw").first!.decode(Int.self, 0)
        XCTAssertEqual(rows, 2)
        let status = try await single.query("SELECT txid_status($1)", [xid]).first!.decode(String.self, 0)
        XCTAssertEqual(status, "committed")

        // As the transaction's only round trip: BEGIN, writes and COMMIT together.
        try await single.transaction { c in try c.commit(with: [("INSERT INTO cw VALUES ($1)", [3])]) }
        rows = try await single.query("SELECT count(*) FROM cw").first!.decode(Int.self, 0)
        XCTAssertEqual(rows, 3)

        // Nothing may run after it in the same body.
        do {
            try await single.transaction { c in
                try c.commit(with: [("INSERT INTO cw VALUES ($1)", [4])])
                try c.query("INSERT INTO cw VALUES (5)")
            }
            XCTFail("expected a client error")
        } catch let e as PostgresError {
            XCTAssertEqual(e.kind, .client)
        }
        rows = try await single.query("SELECT count(*) FROM cw WHERE id IN (4, 5)").first!.decode(Int.self, 0)
        XCTAssertEqual(rows, 1, "4 was committed, 5 never ran")

        // A failing write: nothing of the transaction stays, the COMMIT was skipped.
        do {
            try await single.transaction { c in
                try c.query("INSERT INTO cw VALUES (10)")
                try c.commit(with: [("INSERT INTO cw VALUES ($1)", [11]), ("INSERT INTO cw VALUES ($1)", [1])])
            }
            XCTFail("expected unique violation")
        } catch let e as PostgresError {
            XCTAssertEqual(e.sqlState, SQLState.uniqueViolation)
        }
        rows = try await single.query("SELECT count(*) FROM cw WHERE id >= 10").first!.decode(Int.self, 0)
        XCTAssertEqual(rows, 0)
        // The same connection, idle and usable.
        let (again, open) = try await single.withConnection { c in
            (c.backendPID, try c.query("SELECT count(*) FROM cw").first!.decode(Int.self, 0))
        }
        XCTAssertEqual(again, backend)
        XCTAssertEqual(open, 4)

        // Outside a transaction body it is refused.
        do {
            try await single.withConnection { c in try c.commit(with: []) }
            XCTFail("expected a client error")
        } catch let e as PostgresError {
            XCTAssertEqual(e.kind, .client)
        }
    }

    func testPipelineBatchOfTenThousandRows() async throws {
        try await pool.query("CREATE TABLE p (id int PRIMARY KEY, body text)")
        let statements: [(sql: String, parameters: [any PostgresBindable])] = (0..<10_000).map {
            ("INSERT INTO p (id, body) VALUES ($1, $2) RETURNING id", [$0, "row \($0)"])
        }
        let results = try await pool.transaction { c in try c.pipeline(statements) }
        XCTAssertEqual(results.count, 10_000)
        XCTAssertEqual(try results[9_999].first!.decode(Int.self, 0), 9_999)
        let value5 = try await pool.query("SELECT count(*) FROM p").first!.decode(Int.self, 0)
        XCTAssertEqual(value5, 10_000)
    }

    func testPipelineErrorStopsTheBatchAndLeavesTheConnectionUsable() async throws {
        try await pool.query("CREATE TABLE pe (id int PRIMARY KEY)")
        let statements: [(sql: String, parameters: [any PostgresBindable])] =
            [1, 2, 2, 3].map { ("INSERT INTO pe VALUES ($1)", [$0]) }
        do {
            _ = try await pool.transaction { c in try c.pipeline(statements) }
            XCTFail("expected unique violation")
        } catch let e as PostgresError {
            XCTAssertEqual(e.sqlState, SQLState.uniqueViolation)
        }
        let value6 = try await pool.query("SELECT count(*) FROM pe").first!.decode(Int.self, 0)
        XCTAssertEqual(value6, 0)
        // Every connection still works.
        for _ in 0..<8 {
            let one = try await pool.query("SELECT 1").first!.decode(Int.self, 0)
            XCTAssertEqual(one, 1)
        }
    }

    func testCopyInWithSpecialCharactersAndNulls() async throws {
        try await pool.query("CREATE TABLE c (id int, body text, note text)")
        var rowsBuilder: [[String?]] = (0..<10_000).map { [String($0), "line\t\(String($0))\nnext \\ end", nil] }
        rowsBuilder.append(["-1", "", "not null"])
        let rows = rowsBuilder
        let copied = try await pool.withConnection { c in try c.copyIn("COPY c (id, body, note) FROM STDIN", rows: rows) }
        XCTAssertEqual(copied, 10_001)
        let r = try await pool.query("SELECT body, note FROM c WHERE id = 42").first!
        XCTAssertEqual(try r.decode(String.self, 0), "line\t42\nnext \\ end")
        XCTAssertNil(try r.decode(String?.self, 1))
        let value7 = try await pool.query("SELECT count(*) FROM c WHERE note IS NULL").first!.decode(Int.self, 0)
        XCTAssertEqual(value7, 10_000)
        let value8 = try await pool.query("SELECT body FROM c WHERE id = -1").first!.decode(String.self, 0)
        XCTAssertEqual(value8, "")
    }

    func testCancellingTheTaskCancelsTheRunningStatement() async throws {
        let pool = self.pool!
        let start = ContinuousClock.now
        let task = Task { try await pool.query("SELECT pg_sleep(30)") }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        do {
            _ = try await task.value
            XCTFail("expected cancellation")
        } catch let e as PostgresError {
            XCTAssertEqual(e.kind, .cancelled)
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(20))
        let value9 = try await pool.query("SELECT 1").first!.decode(Int.self, 0)
        XCTAssertEqual(value9, 1)
    }

    func testDeadlineCancelsTheStatementWithDeadlineExceeded() async throws {
        do {
            _ = try await pool.withConnection(deadline: .now + .milliseconds(300)) { c in
                try c.query("SELECT pg_sleep(30)")
            }
            XCTFail("expected deadline exceeded")
        } catch let e as PostgresError {
            XCTAssertEqual(e.kind, .deadlineExceeded)
            XCTAssertEqual(StatusCodeMapping.code(for: e), .deadlineExceeded)
        }
        let late = try await PostgresPool.$deadline.withValue(.now - .seconds(1)) {
            do { try await pool.query("SELECT 1"); return false } catch let e as PostgresError { return e.kind == .deadlineExceeded }
        }
        XCTAssertTrue(late)
    }
}
