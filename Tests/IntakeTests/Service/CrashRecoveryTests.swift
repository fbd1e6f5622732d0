// kill -9 of the real `intake` executable during concurrent submissions, then a restart: every
// acknowledged report is stored exactly once and its ReportAccepted event reaches correlation's
// event sink (an in-process EventSink here) exactly once.
import Foundation
import GRPCCore
import GRPCProtobuf
import Intake
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import LiaisonStorage
import LiaisonTestSupport
import Logging
import SwiftProtobuf
import XCTest

final class CrashRecoveryTests: XCTestCase {
    /// A free TCP port on 127.0.0.1 (bound and released).
    func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    func startIntake(databaseURL: String, port: Int, sinkPort: Int, log: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestPostgres.repositoryRoot + "/.build/debug/intake")
        p.arguments = ["serve"]
        var env = ProcessInfo.processInfo.environment
        env["LIAISON_DATABASE_URL"] = databaseURL
        env["LIAISON_LISTEN_ADDRESS"] = "127.0.0.1:\(port)"
        env["LIAISON_ADMIN_ADDRESS"] = "127.0.0.1:0"
        env["LIAISON_MIGRATIONS_DIR"] = TestPostgres.repositoryRoot + "/services/intake/migrations"
        env["LIAISON_CORRELATION_TARGET"] = "ipv4:127.0.0.1:\(sinkPort)"
        env["LIAISON_INTAKE_CUSTOMER_EVENT_DESTINATIONS"] = "correlation"
        env["LIAISON_LOG_LEVEL"] = "warning"
        env["LIAISON_SHUTDOWN_GRACE_SECONDS"] = "1"
        p.environment = env
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    /// Calls GetCustomer until the server answers (NOT_FOUND counts as up).
    func waitUntilServing(_ client: IntakeClient) async throws {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < .seconds(30) {
            var req = Liaison_Intake_V1_GetCustomerRequest()
            req.name = "customers/probe"
            var options = CallOptions.defaults
            options.timeout = .seconds(1)
            do {
                _ = try await client.getCustomer(req, options: options)
                return
            } catch let e as RPCError where e.code == .notFound {
                return
            } catch {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        XCTFail("intake did not start")
    }

    func testKillDuringBatchSubmitThenRestartLosesAndDuplicatesNothing() async throws {
        let binary = TestPostgres.repositoryRoot + "/.build/debug/intake"
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw XCTSkip("build the intake executable first (swift build)")
        }
        let logger = Logger(label: "sink")
        let (intakeURL, intakePool) = try await makeIntakeDatabase()
        let sinkPool = PostgresPool(.init(url: try TestPostgres.shared.createDatabase("sink"), maxConnections: 4))
        try await Migrator(pool: sinkPool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
        try await sinkPool.query("CREATE TABLE applied (event_id text PRIMARY KEY, topic text, aggregate text)")

        // Correlation's side: an EventSink recording each applied event (inbox: at most once).
        func record(_ topic: String) -> EventSink.Applier {
            { c, payload, envelope in
                let aggregate: String
                if topic == "ReportAccepted" {
                    aggregate = try Liaison_Intake_V1_ReportAccepted(serializedBytes: payload).header.aggregate
                } else {
                    aggregate = try Liaison_Intake_V1_CustomerUpserted(serializedBytes: payload).header.aggregate
                }
                try c.query("INSERT INTO applied VALUES ($1, $2, $3)", [envelope.eventID, topic, aggregate])
            }
        }
        let sink = EventSink(pool: sinkPool, consumer: "correlation", appliers: [
            Liaison_Intake_V1_ReportAccepted.protoMessageName: record("ReportAccepted"),
            Liaison_Intake_V1_CustomerUpserted.protoMessageName: record("CustomerUpserted"),
        ], logger: logger)
        let sinkTransport = ShimServerTransport(config: .init(listenAddress: "127.0.0.1:0"))
        let sinkServer = GRPCServer(transport: sinkTransport, services: [sink])
        let sinkServing = Task { try await sinkServer.serve() }
        let sinkPort = try await sinkTransport.listeningPort
        sinkTransport.health.setServingStatus(service: "liaison.events.v1.EventSinkService", serving: true)

        let log = NSTemporaryDirectory() + "intake-crash-\(getpid()).log"
        let port1 = try freePort()
        var process = try startIntake(databaseURL: intakeURL, port: port1, sinkPort: sinkPort, log: log)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        // 400 distinct reports of 40 customers, each with its own request_id.
        let total = 400
        let requests: [Liaison_Intake_V1_SubmitReportRequest] = (0..<total).map { i in
            submitRequest(makeReport(customer: "k\(i % 40)", agent: "agents/a\(i % 7)",
                                     text: "report \(i): problem \(i * 7919 % 1013) in area \(i % 13)",
                                     receive: Date().addingTimeInterval(-Double(i))))
        }
        let acknowledged = Shared<[Int: Liaison_Intake_V1_SubmitReportResponse]>([:])

        // Phase 1: concurrent submissions, SIGKILL mid-way.
        let transport1 = try ShimClientTransport(target: "ipv4:127.0.0.1:\(port1)")
        try await withGRPCClient(transport: transport1) { grpc in
            let client = IntakeClient(wrapping: grpc)
            try await waitUntilServing(client)
            _ = try await client.upsert((0..<40).map { makeCustomer("k\($0)") })
            let next = Shared(0)
            let pid = process.processIdentifier
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        var options = CallOptions.defaults
                        options.timeout = .seconds(5)
                        // Half the workers send BatchSubmitReports of 5 entries, half single reports.
                        let chunk = worker % 2 == 0 ? 1 : 5
                        while true {
                            let first = next.with { n -> Int in defer { n += chunk }; return n }
                            guard first < total else { return }
                            let indices = Array(first..<min(first + chunk, total))
                            do {
                                if chunk == 1 {
                                    let r = try await client.submitReport(requests[first], options: options)
                                    acknowledged.with { $0[first] = r }
                                } else {
                                    var batch = Liaison_Intake_V1_BatchSubmitReportsRequest()
                                    batch.requests = indices.map { requests[$0] }
                                    let r = try await client.batchSubmitReports(batch, options: options)
                                    acknowledged.with { acked in
                                        for result in r.results where result.status.code == 0 {
                                            acked[indices[Int(result.index)]] = result.response
                                        }
                                    }
                                }
                            } catch {
                                return  // the server is gone: these stay unacknowledged
                            }
                        }
                    }
                }
                group.addTask {
                    while acknowledged.current.count < total / 4 { try? await Task.sleep(for: .milliseconds(5)) }
                    kill(pid, SIGKILL)
                }
            }
        }
        process.waitUntilExit()
        let ackedBeforeCrash = acknowledged.current
        XCTAssertGreaterThanOrEqual(ackedBeforeCrash.count, total / 4)
        XCTAssertLessThan(ackedBeforeCrash.count, total, "the kill must interrupt the submissions")
        let storedAtCrash = try await count(intakePool, "reports")
        XCTAssertGreaterThanOrEqual(storedAtCrash, ackedBeforeCrash.count, "acknowledged means durable")

        // Phase 2: restart; retry every unacknowledged request with its request_id; replay some
        // acknowledged ones.
        let port2 = try freePort()
        process = try startIntake(databaseURL: intakeURL, port: port2, sinkPort: sinkPort, log: log)
        let transport2 = try ShimClientTransport(target: "ipv4:127.0.0.1:\(port2)")
        try await withGRPCClient(transport: transport2) { grpc in
            let client = IntakeClient(wrapping: grpc)
            try await waitUntilServing(client)
            for i in 0..<total where ackedBeforeCrash[i] == nil {
                let r = try await client.submitReport(requests[i])
                acknowledged.with { $0[i] = r }
            }
            for (i, first) in ackedBeforeCrash.prefix(20) {
                let again = try await client.submitReport(requests[i])
                XCTAssertEqual(again, first, "a replay returns the original answer")
            }
        }

        // Every report is stored exactly once.
        let all = acknowledged.current
        XCTAssertEqual(all.count, total)
        let stored = try await intakePool.query("SELECT id FROM reports").rows.map { "reports/" + (try $0.decode(String.self, 0)) }
        XCTAssertEqual(stored.count, total)
        XCTAssertEqual(Set(stored), Set(all.values.map(\.report.name)))

        // Every ReportAccepted reaches the sink exactly once.
        let start = ContinuousClock.now
        while ContinuousClock.now - start < .seconds(60) {
            let pending = try await intakePool.query("SELECT count(*) FROM outbox WHERE state <> 'delivered'").first!.decode(Int.self, 0)
            if pending == 0 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let applied = try await sinkPool.query(
            "SELECT aggregate, count(*) FROM applied WHERE topic = 'ReportAccepted' GROUP BY aggregate").rows
        var perReport: [String: Int] = [:]
        for row in applied { perReport[try row.decode(String.self, 0)] = try row.decode(Int.self, 1) }
        XCTAssertEqual(perReport.count, total, "every report's event arrived")
        XCTAssertTrue(perReport.values.allSatisfy { $0 == 1 }, "no report has two events")
        XCTAssertEqual(Set(perReport.keys), Set(stored))
        let outboxEvents = try await intakePool.query(
            "SELECT count(DISTINCT event_id) FROM outbox WHERE topic = 'liaison.intake.v1.ReportAccepted'").first!.decode(Int.self, 0)
        XCTAssertEqual(outboxEvents, total)
        print("crash test: \(ackedBeforeCrash.count) of \(total) acknowledged before SIGKILL, \(storedAtCrash) committed; all \(total) stored once, events applied once")

        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        sinkServer.beginGracefulShutdown()
        _ = try? await sinkServing.value
        await intakePool.close()
        await sinkPool.close()
    }
}
