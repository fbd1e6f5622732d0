import Foundation
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import XCTest

/// A real service executable (the `sla` binary: it has no domain handlers yet, so it shows the
/// runtime alone) started, probed, and stopped with SIGTERM.
final class ServiceProcessTests: XCTestCase {
    func binary(_ name: String) throws -> String {
        let path = debugBinDirectory + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else { throw XCTSkip("\(path) not built (run swift build first)") }
        return path
    }

    func testServesHealthMetricsAndDrainsOnSIGTERMWithExitZero() async throws {
        let bin = try binary("sla")
        let url = try TestPostgres.shared.createDatabase("sla")
        let port = freePort(), admin = freePort()
        let child = try ChildProcess([bin, "serve"], environment: [
            "LIAISON_DATABASE_URL": url,
            "LIAISON_LISTEN_ADDRESS": "127.0.0.1:\(port)",
            "LIAISON_ADMIN_ADDRESS": "127.0.0.1:\(admin)",
            "LIAISON_MIGRATIONS_DIR": TestPostgres.repositoryRoot + "/services/sla/migrations",
            "LIAISON_SHUTDOWN_GRACE_SECONDS": "2",
            "LIAISON_SHUTDOWN_DELAY_SECONDS": "2",
        ])
        var serving = false
        for _ in 0..<150 {
            if (try? await HealthProbe.check(target: "127.0.0.1:\(port)", service: "", timeout: .seconds(1))) == true {
                serving = true
                break
            }
            if child.wait(timeout: .zero) != nil { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTAssertTrue(serving, "never became SERVING:\n\(child.output)")
        let named = try await HealthProbe.check(target: "127.0.0.1:\(port)", service: "liaison.sla.v1.SlaService", timeout: .seconds(1))
        XCTAssertTrue(named)
        let (status, _) = try runCommand(["/usr/bin/curl", "-sf", "http://127.0.0.1:\(admin)/readyz"])
        XCTAssertEqual(status, 0)

        // Migrations ran: the platform tables exist.
        let pool = PostgresPool(.init(url: url, maxConnections: 1))
        let tables = try await pool.query("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('outbox', 'idempotency_keys', 'inbox')").first!.decode(Int.self, 0)
        XCTAssertEqual(tables, 3)
        await pool.close()

        child.send(SIGTERM)
        // During the shutdown delay the server still answers, and health says NOT_SERVING.
        var notServing = false
        for _ in 0..<15 {
            if (try? await HealthProbe.check(target: "127.0.0.1:\(port)", service: "", timeout: .seconds(1))) == false {
                notServing = true
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTAssertTrue(notServing, "health never said NOT_SERVING after SIGTERM:\n\(child.output)")
        let notReady = try runCommand(["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(admin)/readyz"])
        XCTAssertEqual(notReady.1.trimmingCharacters(in: .whitespacesAndNewlines), "503", "readiness after SIGTERM")
        let code = child.wait(timeout: .seconds(15))
        XCTAssertEqual(code, 0, "did not exit 0 within the bound after SIGTERM:\n\(child.output)")
        let lines = child.output.split(separator: "\n").filter { $0.hasPrefix("{") }
        XCTAssertTrue(lines.contains { $0.contains("\"message\":\"draining\"") }, child.output)
        XCTAssertTrue(lines.contains { $0.contains("\"message\":\"stopped\"") }, child.output)
        for line in lines {
            XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(line.utf8)), "not one JSON object: \(line)")
        }
    }

    func testBadConfigurationStopsStartUpNamingTheVariable() throws {
        let bin = try binary("intake")
        let child = try ChildProcess([bin, "serve"], environment: [
            "LIAISON_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x",
            "LIAISON_DATABASE_POOL_SIZE": "lots",
        ])
        XCTAssertEqual(child.wait(timeout: .seconds(10)), 78)
        XCTAssertTrue(child.output.contains("LIAISON_DATABASE_POOL_SIZE"), child.output)
    }

    func testEditedMigrationStopsStartUp() async throws {
        let bin = try binary("followup")
        let url = try TestPostgres.shared.createDatabase("followup")
        let dir = NSTemporaryDirectory() + "mig-\(UUID())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "CREATE TABLE t (id int);".write(toFile: dir + "/0001_t.sql", atomically: true, encoding: .utf8)
        let env = ["LIAISON_DATABASE_URL": url, "LIAISON_MIGRATIONS_DIR": dir]
        let migrate = try ChildProcess([bin, "migrate"], environment: env)
        XCTAssertEqual(migrate.wait(timeout: .seconds(30)), 0, migrate.output)
        try "CREATE TABLE t (id bigint);".write(toFile: dir + "/0001_t.sql", atomically: true, encoding: .utf8)
        let again = try ChildProcess([bin, "migrate"], environment: env)
        XCTAssertEqual(again.wait(timeout: .seconds(30)), 1)
        XCTAssertTrue(again.output.contains("0001_t was edited after it was applied"), again.output)
    }
}
