import Foundation
import GRPCCore
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import Logging
import XCTest

final class OutboxTests: XCTestCase {
    var pool: PostgresPool!
    let logger = Logger(label: "test")

    override func setUp() async throws {
        pool = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("outbox"), maxConnections: 8))
        try await Migrator(pool: pool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
        try await pool.query("CREATE TABLE things (id int PRIMARY KEY)")
    }

    override func tearDown() async throws { await pool.close() }

    /// Enqueues `n` events, each with a change in the same transaction.
    func produce(_ n: Int, destinations: [String] = ["consumer"]) async throws -> [UUID] {
        var ids: [UUID] = []
        for i in 0..<n {
            let id = UUID()
            ids.append(id)
            try await pool.transaction { c in
                try c.query("INSERT INTO things VALUES ($1)", [i])
                try Outbox.enqueue(c, eventID: id, topic: "test.v1.Thing", payload: Array("thing \(i)".utf8), destinations: destinations)
            }
        }
        return ids
    }

    func testEventExistsOnlyIfTheChangeCommitted() async throws {
        do {
            try await pool.transaction { c in
                try Outbox.enqueue(c, eventID: UUID(), topic: "test.v1.Thing", payload: [1], destinations: ["consumer"])
                try c.query("INSERT INTO things VALUES (1)")
                try c.query("INSERT INTO things VALUES (1)")  // fails: the event must vanish too
            }
        } catch {}
        let n = try await pool.query("SELECT count(*) FROM outbox").first!.decode(Int.self, 0)
        XCTAssertEqual(n, 0)
    }

    func testRelayDeliversEveryEventInOrderAndMarksIt() async throws {
        let ids = try await produce(25, destinations: ["a", "b"])
        let received = Shared<[String: [UUID]]>([:])
        let relay = OutboxRelay(pool: pool, owner: "r1", logger: logger) { destination, messages in
            received.with { $0[destination, default: []] += messages.map(\.eventID) }
        }
        while try await relay.runOnce() > 0 {}
        XCTAssertEqual(received.current["a"], ids)
        XCTAssertEqual(received.current["b"], ids)
        let pending = try await pool.query("SELECT count(*) FROM outbox WHERE state <> 'delivered'").first!.decode(Int.self, 0)
        XCTAssertEqual(pending, 0)
    }

    /// The relay's claims and marks follow the outbox's growth. A prepared statement used while
    /// the table held a few rows caches a generic plan that scans the whole table (claim and mark
    /// alike); after 50,000 rows arrive that plan would read all of them on every call until an
    /// ANALYZE. The relay plans each call instead: on one connection, after more than the five
    /// executions that make PostgreSQL cache a generic plan, the second phase scans the outbox
    /// sequentially not once, and no relay statement is prepared on the connection.
    func testClaimsAndMarksStayOnIndexesAfterTheOutboxGrows() async throws {
        await pool.close()
        pool = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("outbox"), maxConnections: 1))
        try await Migrator(pool: pool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
        try await pool.query("CREATE TABLE things (id int PRIMARY KEY)")
        var settings = OutboxRelay.Settings()
        settings.batchSize = 2
        settings.destinations = ["consumer"]
        let relay = OutboxRelay(pool: pool, owner: "r1", settings: settings, logger: logger) { _, _ in }
        _ = try await produce(16)
        while try await relay.runOnce() > 0 {}  // 8 claims and 8 marks while the table is small
        try await pool.query("""
            INSERT INTO outbox (event_id, destination, topic, payload, state, delivered_at)
            SELECT gen_random_uuid(), 'consumer', 'test.v1.Thing', '\\x00', 'delivered', now()
            FROM generate_series(1, 50000)
            """)
        try await pool.query("DELETE FROM things")
        _ = try await produce(6)
        func sequentialScans() async throws -> Int {
            // Flush this backend's counters, then read them in a fresh snapshot.
            try await pool.query("SELECT pg_stat_force_next_flush()")
            try await pool.query("SELECT pg_stat_clear_snapshot()")
            return try await pool.query("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'outbox'")
                .first!.decode(Int.self, 0)
        }
        let before = try await sequentialScans()
        var delivered = 0
        while true {
            let n = try await relay.runOnce()
            if n == 0 { break }
            delivered += n
        }
        XCTAssertEqual(delivered, 6)
        let after = try await sequentialScans()
        XCTAssertEqual(after, before, "no claim or mark scanned the whole outbox")
        let prepared = try await pool.query("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'UPDATE outbox%'")
            .first!.decode(Int.self, 0)
        XCTAssertEqual(prepared, 0)
    }

    /// After an outage a destination's backlog waits for its retry times. A claim reads only the
    /// rows that are due, earliest due first (one range of `outbox_pending_destination_due`), not
    /// the rows that are backing off: in id order it had to walk past all of them first.
    func testAClaimReadsOnlyDueRowsEarliestDueFirst() async throws {
        // 3,000 rows that failed and wait an hour, written before everything below.
        try await pool.query("""
            INSERT INTO outbox (event_id, destination, topic, payload, attempts, next_attempt_at)
            SELECT gen_random_uuid(), 'consumer', 'test.v1.Thing', '\\x00', 1, now() + interval '1 hour'
            FROM generate_series(1, 3000)
            """)
        let fresh = try await produce(3)
        // The last row written failed once and is due again since a minute: the earliest due.
        try await pool.query("DELETE FROM things")
        let retried = try await produce(1)[0]
        try await pool.query("UPDATE outbox SET attempts = 1, next_attempt_at = now() - interval '1 minute' WHERE event_id = $1",
                             [retried])
        var settings = OutboxRelay.Settings()
        settings.batchSize = 2
        settings.destinations = ["consumer"]
        let received = Shared<[[UUID]]>([])
        let relay = OutboxRelay(pool: pool, owner: "r1", settings: settings, logger: logger) { _, messages in
            received.with { $0.append(messages.map(\.eventID)) }
        }
        func rowsRead() async throws -> Int {
            try await pool.query("SELECT pg_stat_force_next_flush()")
            try await pool.query("SELECT pg_stat_clear_snapshot()")
            return try await pool.query("""
                SELECT coalesce(sum(i.idx_tup_read), 0)::int8 + max(t.seq_tup_read)
                FROM pg_stat_user_tables t LEFT JOIN pg_stat_user_indexes i ON i.relid = t.relid
                WHERE t.relname = 'outbox'
                """).first!.decode(Int.self, 0)
        }
        let before = try await rowsRead()
        while try await relay.runOnce() > 0 {}
        let read = try await rowsRead() - before
        XCTAssertEqual(received.current.map(Set.init), [[retried, fresh[0]], [fresh[1], fresh[2]]],
                       "two claims of two, the earliest due first")
        // Each delivered row is read about twice (claim, mark); the 3,000 waiting rows not at all.
        XCTAssertLessThan(read, 50, "a claim read rows that were not due")
        let waiting = try await pool.query("SELECT count(*) FROM outbox WHERE state = 'pending' AND attempts = 1")
            .first!.decode(Int.self, 0)
        XCTAssertEqual(waiting, 3000)
    }

    /// The relay dies after the consumer applied a batch but before marking it delivered: the
    /// lease expires, another relay delivers again, and the consumer (with its inbox) applies once.
    func testRelayKilledBetweenSendAndMarkRedeliversAndConsumerAppliesOnce() async throws {
        let consumerPool = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("consumer"), maxConnections: 2))
        try await Migrator(pool: consumerPool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
        try await consumerPool.query("CREATE TABLE applied (event_id uuid, n int)")
        @Sendable func consume(_ messages: [OutboxMessage]) async throws {
            try await consumerPool.transaction { c in
                for m in messages where try Inbox.claim(c, consumer: "test", eventID: m.eventID) {
                    try c.query("INSERT INTO applied VALUES ($1, 1)", [m.eventID])
                }
            }
        }
        let ids = try await produce(10)
        var settings = OutboxRelay.Settings()
        settings.lease = .seconds(1)

        // First relay: delivers, then "dies" (throws past the point of no return, never marks).
        struct Killed: Error {}
        let dying = OutboxRelay(pool: pool, owner: "dying", settings: settings, logger: logger) { _, messages in
            try await consume(messages)
            throw Killed()  // stands for kill -9 after the consumer committed
        }
        // Simulate the crash precisely: claim and deliver without marking anything.
        _ = try? await dying.runOnceWithoutMarking()
        let leased = try await pool.query("SELECT count(*) FROM outbox WHERE lease_owner = 'dying'").first!.decode(Int.self, 0)
        XCTAssertEqual(leased, 10)

        // While the lease holds, nobody else takes the rows.
        let other = OutboxRelay(pool: pool, owner: "survivor", settings: settings, logger: logger) { _, messages in
            try await consume(messages)
        }
        let early = try await other.runOnce()
        XCTAssertEqual(early, 0)

        try await Task.sleep(for: .milliseconds(1200))
        let redelivered = try await other.runOnce()
        XCTAssertEqual(redelivered, 10)
        let applied = try await consumerPool.query("SELECT count(*), count(DISTINCT event_id) FROM applied").first!
        XCTAssertEqual(try applied.decode(Int.self, 0), 10, "consumer applied an event twice")
        XCTAssertEqual(try applied.decode(Int.self, 1), ids.count)
        let delivered = try await pool.query("SELECT count(*) FROM outbox WHERE state = 'delivered'").first!.decode(Int.self, 0)
        XCTAssertEqual(delivered, 10)
        await consumerPool.close()
    }

    func testTwoRelaysNeverDeliverTheSameRowConcurrently() async throws {
        _ = try await produce(300)
        let inFlight = Shared<Set<UUID>>([])
        let deliveries = Shared<[UUID: Int]>([:])
        let overlaps = Shared(0)
        func relay(_ name: String) -> OutboxRelay {
            var settings = OutboxRelay.Settings()
            settings.batchSize = 7
            return OutboxRelay(pool: pool, owner: name, settings: settings, logger: logger) { _, messages in
                inFlight.with { set in
                    for m in messages where !set.insert(m.eventID).inserted { overlaps.with { $0 += 1 } }
                }
                try await Task.sleep(for: .milliseconds(2))
                inFlight.with { set in for m in messages { set.remove(m.eventID) } }
                deliveries.with { d in for m in messages { d[m.eventID, default: 0] += 1 } }
            }
        }
        let r1 = relay("r1"), r2 = relay("r2")
        async let a: Void = { while try await r1.runOnce() > 0 {} }()
        async let b: Void = { while try await r2.runOnce() > 0 {} }()
        _ = try await (a, b)
        XCTAssertEqual(overlaps.current, 0)
        XCTAssertEqual(deliveries.current.count, 300)
        XCTAssertTrue(deliveries.current.values.allSatisfy { $0 == 1 })
    }

    func testFailuresBackOffAndEndInTheDeadLetterState() async throws {
        _ = try await produce(1)
        var settings = OutboxRelay.Settings()
        settings.maxAttempts = 3
        settings.baseBackoff = .milliseconds(1)
        struct Refused: Error {}
        let relay = OutboxRelay(pool: pool, owner: "r", settings: settings, logger: logger) { _, _ in throw Refused() }
        for _ in 0..<3 {
            try await pool.query("UPDATE outbox SET next_attempt_at = now()")
            let claimed = try await relay.runOnce()
            XCTAssertEqual(claimed, 1)
        }
        let row = try await pool.query("SELECT state, attempts, last_error FROM outbox").first!
        XCTAssertEqual(try row.decode(String.self, 0), "dead")
        XCTAssertEqual(try row.decode(Int.self, 1), 3)
        XCTAssertTrue(try row.decode(String.self, 2).contains("Refused"))
        try await pool.query("UPDATE outbox SET next_attempt_at = now()")
        let again = try await relay.runOnce()
        XCTAssertEqual(again, 0, "a dead-lettered row was retried")
    }

    func testAnOutageOfTheDestinationNeverDeadLettersAndRequeueSendsDeadRowsAgain() async throws {
        _ = try await produce(2, destinations: ["down", "refusing"])
        var settings = OutboxRelay.Settings()
        settings.maxAttempts = 2
        settings.baseBackoff = .milliseconds(1)
        struct Refused: Error {}
        let relay = OutboxRelay(pool: pool, owner: "r", settings: settings, logger: logger) { destination, _ in
            if destination == "down" { throw RPCError(code: .unavailable, message: "connection refused") }
            throw RPCError(code: .invalidArgument, message: "cannot decode")
        }
        for _ in 0..<5 {
            try await Task.sleep(for: .milliseconds(40))  // past the destination's pause (1-16 ms)
            try await pool.query("UPDATE outbox SET next_attempt_at = now()")
            try await relay.runOnce()
        }
        let states = try await pool.query("SELECT destination, state, attempts FROM outbox ORDER BY destination, id").rows
            .map { "\(try $0.decode(String.self, 0)) \(try $0.decode(String.self, 1)) \(try $0.decode(Int.self, 2))" }
        XCTAssertEqual(states, ["down pending 5", "down pending 5", "refusing dead 2", "refusing dead 2"],
                       "an unreachable destination is retried past maxAttempts; a refusing one is dead-lettered")
        XCTAssertTrue(OutboxRelay.isTransient(DeadlineExceeded(timeout: .seconds(1))))
        XCTAssertFalse(OutboxRelay.isTransient(Refused()))

        let requeued = try await Outbox.requeueDead(pool, destination: "refusing")
        XCTAssertEqual(requeued, 2)
        let again = try await Outbox.requeueDead(pool)
        XCTAssertEqual(again, 0, "nothing else was dead")
        let fixed = OutboxRelay(pool: pool, owner: "r2", settings: settings, logger: logger) { _, _ in }
        try await pool.query("UPDATE outbox SET next_attempt_at = now()")
        try await fixed.runOnce()
        let delivered = try await pool.query("SELECT count(*) FROM outbox WHERE state = 'delivered'").first!.decode(Int.self, 0)
        XCTAssertEqual(delivered, 4)
    }

    func testAnUnreachableDestinationIsPausedAsAWholeWhileOthersFlow() async throws {
        _ = try await produce(250, destinations: ["down", "up"])
        var settings = OutboxRelay.Settings()
        settings.batchSize = 50
        settings.baseBackoff = .seconds(30)
        settings.destinations = ["down", "up"]  // the per-destination claims
        let attempts = Shared<[String: Int]>([:])
        let relay = OutboxRelay(pool: pool, owner: "r", settings: settings, logger: logger) { destination, _ in
            attempts.with { $0[destination, default: 0] += 1 }
            if destination == "down" { throw RPCError(code: .unavailable, message: "connection refused") }
        }
        for _ in 0..<20 {
            try await pool.query("UPDATE outbox SET next_attempt_at = now()")
            try await relay.runOnce()
        }
        XCTAssertEqual(attempts.current["down"], 1, "one attempt, then the destination is paused")
        let delivered = try await pool.query(
            "SELECT count(*) FROM outbox WHERE destination = 'up' AND state = 'delivered'").first!.decode(Int.self, 0)
        XCTAssertEqual(delivered, 250, "the reachable destination kept flowing")
        let pending = try await pool.query(
            "SELECT count(*) FROM outbox WHERE destination = 'down' AND state = 'pending'").first!.decode(Int.self, 0)
        XCTAssertEqual(pending, 250, "nothing of the paused destination was lost or dead-lettered")
    }
}
