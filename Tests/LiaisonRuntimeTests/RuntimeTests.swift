import Foundation
import GRPCCore
import GRPCProtobuf
import LiaisonRuntime
import LiaisonStorage
import Logging
import Prometheus
import XCTest

final class ConfigurationTests: XCTestCase {
    func testDefaultsAndRequiredVariables() throws {
        let env = Environment(["LIAISON_DATABASE_URL": "postgresql://u@127.0.0.1:5432/intake"])
        let c = try ServiceConfiguration(service: "intake", defaultPort: 50051, defaultAdminPort: 9101, environment: env)
        XCTAssertEqual(c.listenAddress, "0.0.0.0:50051")
        XCTAssertEqual(c.adminAddress, "0.0.0.0:9101")
        XCTAssertEqual(c.migrationsDirectory, "services/intake/migrations")
        XCTAssertEqual(c.logLevel, .info)
        XCTAssertEqual(c.databasePoolSize, 8)
    }

    func testEachBadVariableIsNamed() {
        func problem(_ vars: [String: String]) -> String? {
            var all = ["LIAISON_DATABASE_URL": "postgresql://u@h/db"]
            all.merge(vars) { $1 }
            do {
                _ = try ServiceConfiguration(service: "x", defaultPort: 1, defaultAdminPort: 2, environment: Environment(all))
                return nil
            } catch let e as ConfigurationError { return e.variable } catch { return "?" }
        }
        XCTAssertEqual(problem(["LIAISON_DATABASE_URL": ""]), "LIAISON_DATABASE_URL")
        XCTAssertEqual(problem(["LIAISON_DATABASE_URL": "mysql://x"]), "LIAISON_DATABASE_URL")
        XCTAssertEqual(problem(["LIAISON_LISTEN_ADDRESS": "nope"]), "LIAISON_LISTEN_ADDRESS")
        XCTAssertEqual(problem(["LIAISON_ADMIN_ADDRESS": "h:99999"]), "LIAISON_ADMIN_ADDRESS")
        XCTAssertEqual(problem(["LIAISON_DATABASE_POOL_SIZE": "0"]), "LIAISON_DATABASE_POOL_SIZE")
        XCTAssertEqual(problem(["LIAISON_LOG_LEVEL": "loud"]), "LIAISON_LOG_LEVEL")
        XCTAssertEqual(problem(["LIAISON_MIGRATE_ON_START": "maybe"]), "LIAISON_MIGRATE_ON_START")
        XCTAssertNil(problem(["LIAISON_LOG_LEVEL": "debug"]))
    }
}

final class JSONLogHandlerTests: XCTestCase {
    func testOneJSONObjectPerLineWithEscapedFields() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        var handler = JSONLogHandler(label: "intake", level: .info, sink: .init(fd: fds[1]))
        handler[metadataKey: "replica"] = "r1"
        let logger = Logger(label: "intake") { _ in handler }
        logger.info("report \"accepted\"\nsecond line", metadata: ["report": "reports/1", "n": "3"])
        logger.debug("not shown")
        close(fds[1])
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = read(fds[0], &bytes, 4096)
        close(fds[0])
        let text = String(decoding: bytes[0..<n], as: UTF8.self)
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.count, 1)
        let object = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: String]
        XCTAssertEqual(object["message"], "report \"accepted\"\nsecond line")
        XCTAssertEqual(object["level"], "info")
        XCTAssertEqual(object["logger"], "intake")
        XCTAssertEqual(object["report"], "reports/1")
        XCTAssertEqual(object["replica"], "r1")
        XCTAssertNotNil(object["time"])
    }
}

final class AdminServerTests: XCTestCase {
    func get(_ port: Int, _ path: String) throws -> (Int, String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(rc, 0)
        let request = Array("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        let text = String(decoding: out, as: UTF8.self)
        let status = Int(text.split(separator: " ")[1])!
        let body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined()
        return (status, body)
    }

    func testMetricsLivenessAndReadiness() async throws {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(name: "liaison_test_total").increment(by: Int64(3))
        let admin = try AdminServer(address: "127.0.0.1:0", registry: registry, logger: Logger(label: "t"))
        let task = Task { await admin.run() }
        XCTAssertEqual(try get(admin.port, "/healthz").0, 200)
        XCTAssertEqual(try get(admin.port, "/readyz").0, 503)
        admin.setReady(true)
        XCTAssertEqual(try get(admin.port, "/readyz").0, 200)
        let (status, body) = try get(admin.port, "/metrics")
        XCTAssertEqual(status, 200)
        XCTAssertTrue(body.contains("liaison_test_total 3"), body)
        XCTAssertEqual(try get(admin.port, "/nope").0, 404)
        admin.stop()
        await task.value
    }

    /// Direct unary calls and GRPCServer's interceptor label codes alike: "OK" or GRPCCore's name.
    func testMetricsCodeLabels() {
        XCTAssertEqual(MetricsInterceptor.label(.ok), "OK")
        XCTAssertEqual(MetricsInterceptor.label(.notFound), "\(RPCError.Code.notFound)")
        XCTAssertEqual(MetricsInterceptor.label(.invalidArgument), "invalidArgument")
    }

    func testBadAddressFailsStartUpNamingTheVariable() {
        XCTAssertThrowsError(try AdminServer(address: "not-an-ip:1", registry: .init(), logger: Logger(label: "t"))) {
            XCTAssertEqual(($0 as? ConfigurationError)?.variable, "LIAISON_ADMIN_ADDRESS")
        }
    }
}

final class APIErrorTests: XCTestCase {
    func testInvalidArgumentCarriesEveryFieldViolationInTheTrailer() throws {
        let error = APIError.invalidArgument(domain: "liaison.intake.v1", [
            .init("report.text", "must not be empty"), .init("report.channel", "must be set"),
        ])
        let rpc = RPCError(error)
        XCTAssertEqual(rpc.code, .invalidArgument)
        XCTAssertTrue(rpc.message.contains("report.text"))
        let status = try XCTUnwrap(try rpc.unpackGoogleRPCStatus())
        let bad = try XCTUnwrap(status.details.compactMap { $0.badRequest }.first)
        XCTAssertEqual(bad.violations.map { $0.field }, ["report.text", "report.channel"])
        XCTAssertEqual(status.details.compactMap { $0.errorInfo }.first?.reason, "INVALID_FIELD")
    }

    func testStorageErrorsMapToTheDocumentedCodes() {
        XCTAssertEqual(APIError.from(PostgresError(.connection, message: "x"), domain: "d").rpcErrorCode, .unavailable)
        XCTAssertEqual(APIError.from(PostgresError(.server, sqlState: "23505", message: "x"), domain: "d").rpcErrorCode, .alreadyExists)
        XCTAssertEqual(APIError.from(PostgresError(.server, sqlState: "40001", message: "x"), domain: "d").rpcErrorCode, .aborted)
        XCTAssertEqual(APIError.from(PostgresError(.server, sqlState: "XX000", message: "secret detail"), domain: "d").rpcErrorMessage, "internal error")
        XCTAssertEqual(APIError.notFound(domain: "d", resourceType: "Customer", name: "customers/x").rpcErrorCode, .notFound)
    }
}
