import Foundation
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import Logging
import XCTest

/// Issue 20: every service forgets request ids and applied event ids past their retention
/// (before, only intake expired request ids, and no service ever purged its inbox).
final class HousekeepingTests: XCTestCase {
    func testOldRequestIdsAndInboxRowsAreDeletedInBatchesAndYoungOnesKept() async throws {
        let pool = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("housekeeping"), maxConnections: 2))
        try await Migrator(pool: pool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
        try await pool.query("""
            INSERT INTO idempotency_keys (scope, request_id, fingerprint, response, created_at)
            SELECT 's', 'old-' || i, 'f', '\\x00'::bytea, now() - interval '9 days' FROM generate_series(1, 120) i
            UNION ALL SELECT 's', 'young-' || i, 'f', '\\x00'::bytea, now() - interval '1 day' FROM generate_series(1, 7) i
            """)
        try await pool.query("""
            INSERT INTO inbox (consumer, event_id, applied_at)
            SELECT 'c', gen_random_uuid(), now() - interval '31 days' FROM generate_series(1, 50)
            UNION ALL SELECT 'c', gen_random_uuid(), now() - interval '29 days' FROM generate_series(1, 3)
            """)
        let housekeeping = PlatformHousekeeping(
            pool: pool, idempotencyRetention: .seconds(8 * 86_400), inboxRetention: .seconds(30 * 86_400),
            logger: Logger(label: "test"))
        let (keys, events) = try await housekeeping.runOnce(batch: 25)
        XCTAssertEqual(keys, 120)
        XCTAssertEqual(events, 50)
        let left = try await pool.query("SELECT (SELECT count(*) FROM idempotency_keys), (SELECT count(*) FROM inbox)").first!
        XCTAssertEqual(try left.decode(Int.self, 0), 7)
        XCTAssertEqual(try left.decode(Int.self, 1), 3)
        let again = try await housekeeping.runOnce()
        XCTAssertEqual(again.0 + again.1, 0)
        await pool.close()
    }

    func testProductionRequiresAPageTokenKey() throws {
        let base = ["LIAISON_DATABASE_URL": "postgresql://u@127.0.0.1:1/db"]
        let logger = Logger(label: "test")
        let production = Environment(base.merging(["LIAISON_ENVIRONMENT": "production"]) { $1 })
        let config = try ServiceConfiguration(service: "intake", defaultPort: 1, defaultAdminPort: 2, environment: production)
        XCTAssertThrowsError(try config.pageTokenKey("INTAKE_PAGE_TOKEN_KEY", environment: production, service: "intake", logger: logger)) {
            XCTAssertEqual(($0 as? ConfigurationError)?.variable, "LIAISON_INTAKE_PAGE_TOKEN_KEY")
        }
        let withKey = Environment(production.values.merging(["LIAISON_INTAKE_PAGE_TOKEN_KEY": "0123456789abcdef-secret"]) { $1 })
        XCTAssertEqual(try config.pageTokenKey("INTAKE_PAGE_TOKEN_KEY", environment: withKey, service: "intake", logger: logger),
                       Array("0123456789abcdef-secret".utf8))
        let development = Environment(base)
        let dev = try ServiceConfiguration(service: "intake", defaultPort: 1, defaultAdminPort: 2, environment: development)
        XCTAssertFalse(dev.production)
        XCTAssertEqual(try dev.pageTokenKey("INTAKE_PAGE_TOKEN_KEY", environment: development, service: "intake", logger: logger).count, 32)
        XCTAssertThrowsError(try ServiceConfiguration(service: "intake", defaultPort: 1, defaultAdminPort: 2,
                                                      environment: Environment(base.merging(["LIAISON_ENVIRONMENT": "prod"]) { $1 })))
    }

    func testEventDestinationsDefaultToEveryConsumerAndNoneMeansNone() {
        XCTAssertEqual(Environment([:]).destinations("INTAKE_CASE_EVENT_DESTINATIONS", default: ["correlation"]), ["correlation"])
        XCTAssertEqual(Environment(["LIAISON_X": "none"]).destinations("X", default: ["correlation"]), [])
        XCTAssertEqual(Environment(["LIAISON_X": " a, b ,"]).destinations("X", default: []), ["a", "b"])
    }

    /// Issue 21: every service reports its outbox backlog (pending and dead per destination).
    func testOutboxGaugesCountPendingAndDeadPerDestination() async throws {
        let pool = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("gauges"), maxConnections: 2))
        try await Migrator(pool: pool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
        try await pool.transaction { c in
            for _ in 0..<3 { try Outbox.enqueue(c, eventID: UUID(), topic: "t", payload: [1], destinations: ["a", "b"]) }
        }
        try await pool.query("UPDATE outbox SET state = 'dead' WHERE id IN (SELECT id FROM outbox WHERE destination = 'b' LIMIT 1)")
        try await pool.query("UPDATE outbox SET state = 'delivered', delivered_at = now() WHERE id IN (SELECT id FROM outbox WHERE destination = 'a' LIMIT 1)")
        let counts = try await OutboxGauges(pool: pool, logger: Logger(label: "test")).runOnce()
        XCTAssertEqual(counts["a"]?.pending, 2)
        XCTAssertEqual(counts["a"]?.dead, 0)
        XCTAssertEqual(counts["b"]?.pending, 2)
        XCTAssertEqual(counts["b"]?.dead, 1)
        await pool.close()
    }
}
