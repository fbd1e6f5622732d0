import Foundation
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import XCTest

/// The real service executables, started, probed, and stopped with SIGTERM.
final class ServiceProcessTests: XCTestCase {
    func binary(_ name: String) throws -> String {
        let path = debugBinDirectory + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else { throw XCTSkip("\(path) not built (run swift build first)") }
        return path
    }

    // Each service has different background work (outbox relays, the emerging-issue detector, the
    // request-id expiry); SIGTERM must stop all of it promptly, whatever its poll interval.
    func testSLAServesHealthMetricsAndDrainsOnSIGTERMWithExitZero() async throws {
        try await servesAndDrains("sla", grpcService: "liaison.sla.v1.SlaService")
    }

    func testIntakeDrainsOnSIGTERMWithExitZero() async throws {
        try await servesAndDrains("intake", grpcService: "liaison.intake.v1.IntakeService",
                                  environment: ["LIAISON_CORRELATION_TARGET": "ipv4:127.0.0.1:\(freePort())",
                                                "LIAISON_SLA_TARGET": "ipv4:127.0.0.1:\(freePort())"])
    }

    func testCorrelationDrainsOnSIGTERMWithExitZero() async throws {
        // The detector's default interval (30 s) is longer than the bound below: it must not be
        // waited out.
        try await servesAndDrains("correlation", grpcService: "liaison.correlation.v1.CorrelationService",
                                  environment: ["LIAISON_INTAKE_TARGET": "ipv4:127.0.0.1:\(freePort())",
                                                "LIAISON_SLA_TARGET": "ipv4:127.0.0.1:\(freePort())"])
    }

    func testCommunicationsAndFollowupDrainOnSIGTERMWithExitZero() async throws {
        try await servesAndDrains("communications", grpcService: "liaison.communications.v1.CommunicationsService", hasHandlers: false)
        try await servesAndDrains("followup", grpcService: "liaison.followup.v1.FollowupService", hasHandlers: false)
    }

    /// Starts `service`, waits for SERVING, checks readiness and migrations, sends SIGTERM and
    /// checks the drain: NOT_SERVING and 503 during the shutdown delay, exit 0 within a bound well
    /// under compose's 20 s stop grace period, JSON logs throughout.
    /// `hasHandlers`: whether the service registers handlers for `grpcService` (issue 20: until it
    /// does, health must not call that API SERVING).
    func servesAndDrains(_ service: String, grpcService: String, hasHandlers: Bool = true, environment extra: [String: String] = [:],
                         file: StaticString = #filePath, line: UInt = #line) async throws {
        let bin = try binary(service)
        let url = try TestPostgres.shared.createDatabase(service)
        let port = freePort(), admin = freePort()
        let child = try ChildProcess([bin, "serve"], environment: [
            "LIAISON_DATABASE_URL": url,
            "LIAISON_LISTEN_ADDRESS": "127.0.0.1:\(port)",
            "LIAISON_ADMIN_ADDRESS": "127.0.0.1:\(admin)",
            "LIAISON_MIGRATIONS_DIR": TestPostgres.repositoryRoot + "/services/\(service)/migrations",
            "LIAISON_SHUTDOWN_GRACE_SECONDS": "2",
            "LIAISON_SHUTDOWN_DELAY_SECONDS": "2",
        ].merging(extra) { $1 })
        var serving = false
        for _ in 0..<150 {
            if (try? await HealthProbe.check(target: "127.0.0.1:\(port)", service: "", timeout: .seconds(1))) == true {
                serving = true
                break
            }
            if child.wait(timeout: .zero) != nil { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTAssertTrue(serving, "\(service) never became SERVING:\n\(child.output)", file: file, line: line)
        let named = try? await HealthProbe.check(target: "127.0.0.1:\(port)", service: grpcService, timeout: .seconds(1))
        XCTAssertEqual(named == true, hasHandlers, "health of \(grpcService)", file: file, line: line)
        let (status, _) = try runCommand(["/usr/bin/curl", "-sf", "http://127.0.0.1:\(admin)/readyz"])
        XCTAssertEqual(status, 0, file: file, line: line)

        // Migrations ran: the platform tables exist.
        let pool = PostgresPool(.init(url: url, maxConnections: 1))
        let tables = try await pool.query("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('outbox', 'idempotency_keys', 'inbox')").first!.decode(Int.self, 0)
        XCTAssertEqual(tables, 3, file: file, line: line)
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
        XCTAssertTrue(notServing, "\(service): health never said NOT_SERVING after SIGTERM:\n\(child.output)", file: file, line: line)
        let notReady = try runCommand(["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(admin)/readyz"])
        XCTAssertEqual(notReady.1.trimmingCharacters(in: .whitespacesAndNewlines), "503", "readiness after SIGTERM", file: file, line: line)
        let code = child.wait(timeout: .seconds(15))
        XCTAssertEqual(code, 0, "\(service) did not exit 0 within the bound after SIGTERM:\n\(child.output)", file: file, line: line)
        let lines = child.output.split(separator: "\n").filter { $0.hasPrefix("{") }
        XCTAssertTrue(lines.contains { $0.contains("\"message\":\"draining\"") }, child.output, file: file, line: line)
        XCTAssertTrue(lines.contains { $0.contains("\"message\":\"stopped\"") }, child.output, file: file, line: line)
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
