import Foundation
import LiaisonStorage
import LiaisonTestSupport
import XCTest

final class MigratorTests: XCTestCase {
    let migrations = [
        Migration(version: 1, name: "create", sql: "CREATE TABLE things (id int PRIMARY KEY); INSERT INTO things VALUES (1);"),
        Migration(version: 2, name: "add", sql: "ALTER TABLE things ADD COLUMN label text; INSERT INTO things VALUES (2, 'two');"),
    ]

    func testTwoConcurrentMigratorsApplyEachMigrationOnce() async throws {
        let url = try TestPostgres.shared.createDatabase("migrate")
        let a = PostgresPool(.init(url: url, maxConnections: 1))
        let b = PostgresPool(.init(url: url, maxConnections: 1))
        let migrations = self.migrations
        async let ra = Migrator(pool: a).migrate(namespace: "svc", migrations)
        async let rb = Migrator(pool: b).migrate(namespace: "svc", migrations)
        let (applied1, applied2) = try await (ra, rb)
        XCTAssertEqual((applied1 + applied2).sorted(), [1, 2])
        let value1 = try await a.query("SELECT count(*) FROM things").first!.decode(Int.self, 0)
        XCTAssertEqual(value1, 2)
        let value2 = try await a.query("SELECT count(*) FROM schema_migrations").first!.decode(Int.self, 0)
        XCTAssertEqual(value2, 2)
        // Running again applies nothing.
        let value3 = try await Migrator(pool: a).migrate(namespace: "svc", migrations)
        XCTAssertEqual(value3, [])
        await a.close()
        await b.close()
    }

    func testEditedMigrationIsRefused() async throws {
        let url = try TestPostgres.shared.createDatabase("migrate")
        let pool = PostgresPool(.init(url: url, maxConnections: 1))
        try await Migrator(pool: pool).migrate(namespace: "svc", migrations)
        var edited = migrations
        edited[0].sql += " -- tweak"
        do {
            try await Migrator(pool: pool).migrate(namespace: "svc", edited)
            XCTFail("expected refusal")
        } catch let e as MigrationError {
            XCTAssertEqual(e, .editedAfterApply(namespace: "svc", version: 1, name: "create"))
            XCTAssertTrue(e.description.contains("0001_create"))
        }
        await pool.close()
    }

    func testFailedMigrationLeavesNothingBehind() async throws {
        let url = try TestPostgres.shared.createDatabase("migrate")
        let pool = PostgresPool(.init(url: url, maxConnections: 1))
        let bad = [Migration(version: 1, name: "bad", sql: "CREATE TABLE half (id int); SELECT nope;")]
        do {
            try await Migrator(pool: pool).migrate(namespace: "svc", bad)
            XCTFail("expected failure")
        } catch let e as MigrationError {
            guard case .failed(_, 1, "bad", _) = e else { return XCTFail("\(e)") }
        }
        let exists = try await pool.query("SELECT to_regclass('half') IS NOT NULL").first!.decode(Bool.self, 0)
        XCTAssertFalse(exists)
        await pool.close()
    }

    func testLoadsFilesInOrderAndRejectsBadNames() throws {
        let dir = NSTemporaryDirectory() + "mig-\(UUID())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "SELECT 2;".write(toFile: dir + "/0002_second.sql", atomically: true, encoding: .utf8)
        try "SELECT 1;".write(toFile: dir + "/0001_first.sql", atomically: true, encoding: .utf8)
        try "notes".write(toFile: dir + "/README.md", atomically: true, encoding: .utf8)
        let loaded = try Migrator.load(directory: dir)
        XCTAssertEqual(loaded.map(\.version), [1, 2])
        XCTAssertEqual(loaded.map(\.name), ["first", "second"])
        try "SELECT 3;".write(toFile: dir + "/3_bad.sql", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Migrator.load(directory: dir)) { XCTAssertEqual($0 as? MigrationError, .badFileName("3_bad.sql")) }
    }
}
