import Foundation
import LiaisonStorage
import LiaisonTestSupport
import XCTest

/// Values PostgreSQL cannot hold become errors of their statement, never a trap (issue 20: a
/// Date beyond ±9.2e12 s used to trap in `Int64((t * 1e6).rounded())` and take the process down).
final class OutOfRangeValueTests: XCTestCase {
    var pool: PostgresPool!

    override func setUp() async throws {
        pool = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("outofrange"), maxConnections: 2))
        try await pool.query("CREATE TABLE t (at timestamptz, s text)")
    }

    override func tearDown() async throws {
        await pool.close()
    }

    func testDatesBeyondStorageThrowInsteadOfTrapping() async throws {
        let extremes: [Date] = [
            Date(timeIntervalSince1970: 9.3e12), Date(timeIntervalSince1970: -9.3e12),
            Date(timeIntervalSince1970: 1e300), Date(timeIntervalSince1970: -.infinity),
            Date(timeIntervalSince1970: .nan), Date(timeIntervalSince1970: -62_135_596_801),  // 0000-12-31
            Date.distantFuture.addingTimeInterval(1e13),
        ]
        for d in extremes {
            do {
                try await pool.query("INSERT INTO t (at) VALUES ($1)", [d])
                XCTFail("\(d.timeIntervalSince1970) was stored")
            } catch let e as PostgresError {
                XCTAssertEqual(e.kind, .client, "\(e)")
            }
            // The in-process conversions clamp instead of trapping.
            XCTAssertTrue(Date.postgresMicrosRange.contains(d.postgresMicros))
            XCTAssertNil(d.exactPostgresMicros)
            _ = d.postgresText
        }
        let stored = try await pool.query("SELECT count(*) FROM t").first!.decode(Int.self, 0)
        XCTAssertEqual(stored, 0)
    }

    func testTheEndsOfTheRangeRoundTrip() async throws {
        let first = Date(timeIntervalSince1970: -62_135_596_800)  // 0001-01-01T00:00:00Z
        let late = Date(timeIntervalSince1970: 253_402_300_799)   // 9999-12-31T23:59:59Z
        for d in [first, late] {
            let back = try await pool.query("SELECT $1::timestamptz", [d]).first!.decode(Date.self, 0)
            XCTAssertEqual(back.timeIntervalSince1970, d.timeIntervalSince1970, accuracy: 1e-6)
            let binary = try await pool.withConnection { c in
                try c.query("SELECT $1::timestamptz", [d], binaryResults: true).first!.decode(Date.self, 0)
            }
            XCTAssertEqual(binary.timeIntervalSince1970, d.timeIntervalSince1970, accuracy: 1e-6)
        }
    }

    func testInfiniteTimestampsDecodeAsErrors() async throws {
        for binary in [false, true] {
            let failures = try await pool.withConnection { c -> Int in
                let row = try c.query("SELECT 'infinity'::timestamptz, '-infinity'::timestamptz", binaryResults: binary).first!
                return [0, 1].filter { (try? row.decode(Date.self, $0)) == nil }.count
            }
            XCTAssertEqual(failures, 2, "binary: \(binary)")
        }
    }

    func testTextWithNULIsRefusedNotTruncated() async throws {
        do {
            try await pool.query("INSERT INTO t (s) VALUES ($1)", ["abc\u{0}def"])
            XCTFail("stored")
        } catch let e as PostgresError {
            XCTAssertEqual(e.kind, .client)
        }
        do {
            try await pool.query("SELECT $1::text[]", [TextArray(["ok", "x\u{0}"])])
            XCTFail("accepted")
        } catch let e as PostgresError {
            XCTAssertEqual(e.kind, .client)
        }
        let stored = try await pool.query("SELECT count(*) FROM t").first!.decode(Int.self, 0)
        XCTAssertEqual(stored, 0)
    }
}

/// Issue 20: the pool's queue of waiting callers is bounded, and a caller's deadline bounds its
/// wait for a connection (before, waiters queued without limit and waited past their deadline).
final class PoolBoundTests: XCTestCase {
    func testWaitersBeyondTheBoundAreRefusedAndDeadlinesEndAWait() async throws {
        var config = PostgresPool.Configuration(url: try TestPostgres.shared.createDatabase("poolbound"), maxConnections: 1)
        config.maxWaiters = 1
        let pool = PostgresPool(config)
        // The only connection is busy for a while.
        let holder = Task { try await pool.query("SELECT pg_sleep(1.5)") }
        try await Task.sleep(for: .milliseconds(300))
        let waiter = Task { try await pool.query("SELECT 1") }
        try await Task.sleep(for: .milliseconds(100))
        do {
            try await pool.query("SELECT 2")
            XCTFail("a second waiter was queued")
        } catch let e as PostgresError {
            XCTAssertEqual(e.kind, .overloaded)
        }
        _ = try await holder.value
        _ = try await waiter.value
        // A waiter whose deadline passes leaves the queue with deadlineExceeded.
        let freed = Shared(false)
        let busy = Task {
            try await pool.query("SELECT pg_sleep(1.5)")
            freed.with { $0 = true }
        }
        try await Task.sleep(for: .milliseconds(300))
        do {
            try await PostgresPool.$deadline.withValue(ContinuousClock.now + .milliseconds(200)) {
                try await pool.query("SELECT 3")
            }
            XCTFail("the wait outlived its deadline")
        } catch let e as PostgresError {
            XCTAssertEqual(e.kind, .deadlineExceeded)
            XCTAssertFalse(freed.current, "left the queue at its deadline, not when the connection freed")
        }
        _ = try await busy.value
        await pool.close()
    }
}
