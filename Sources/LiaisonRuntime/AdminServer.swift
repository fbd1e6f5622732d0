import Foundation
import LiaisonRPC
import Logging
import Prometheus
import Synchronization

/// A small HTTP/1.1 server for operators: `GET /metrics` (Prometheus text format),
/// `GET /healthz` (liveness: the process runs) and `GET /readyz` (readiness: migrations applied,
/// database reachable, gRPC serving; 503 before that and again while draining).
///
/// It runs on one thread of its own with blocking sockets and serves one short request per
/// connection, which is all scrapers and probes need; it pulls in no HTTP framework.
public final class AdminServer: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let ready = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private let listenFD: Int32
    /// The port bound (useful when 0 was asked for).
    public let port: Int
    private let logger: Logger

    /// Binds `address` (`host:port`) now, so that a bad address fails start-up.
    public init(address: String, registry: PrometheusCollectorRegistry, logger: Logger) throws {
        self.registry = registry
        self.logger = logger
        let (fd, port) = try Self.bind(address)
        self.listenFD = fd
        self.port = port
    }

    /// Marks the service ready (or not) for `/readyz`.
    public func setReady(_ value: Bool) { ready.store(value, ordering: .relaxed) }
    public var isReady: Bool { ready.load(ordering: .relaxed) }

    /// Serves until `stop()`; returns when the accept loop has ended.
    public func run() async {
        logger.info("admin http listening", metadata: ["port": "\(port)"])
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let thread = Thread { [self] in
                self.acceptLoop()
                c.resume()
            }
            thread.name = "admin-http"
            thread.start()
        }
    }

    /// Stops accepting and closes the socket (the loop notices within 200 ms).
    public func stop() { stopping.store(true, ordering: .relaxed) }

    private func acceptLoop() {
        defer { close(listenFD) }
        while !stopping.load(ordering: .relaxed) {
            var pfd = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 200) > 0 else { continue }
            let client = accept(listenFD, nil, nil)
            guard client >= 0 else { continue }
            handle(client)
            close(client)
        }
    }

    private func handle(_ fd: Int32) {
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 2048)
        while request.count < 8192 {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            request.append(contentsOf: chunk[0..<n])
            if request.count >= 4, request.suffix(4) == [13, 10, 13, 10] { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        let (status, contentType, body) = respond(method: parts.first.map(String.init) ?? "",
                                                  path: parts.count > 1 ? String(parts[1]) : "")
        var out = Array("HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8)
        out.append(contentsOf: body)
        out.withUnsafeBytes { p in
            var off = 0
            while off < p.count {
                let n = write(fd, p.baseAddress! + off, p.count - off)
                if n <= 0 { break }
                off += n
            }
        }
    }

    func respond(method: String, path: String) -> (String, String, [UInt8]) {
        guard method == "GET" || method == "HEAD" else { return ("405 Method Not Allowed", "text/plain", Array("GET only\n".utf8)) }
        switch path.split(separator: "?").first.map(String.init) ?? path {
        case "/metrics":
            // Counted in the C shim, read at scrape time.
            registry.makeGauge(name: "liaison_grpc_callback_exceptions_total").set(Double(ShimDiagnostics.callbackExceptions))
            return ("200 OK", "text/plain; version=0.0.4", registry.emitToBuffer())
        case "/healthz":
            return ("200 OK", "text/plain", Array("ok\n".utf8))
        case "/readyz":
            return isReady ? ("200 OK", "text/plain", Array("ready\n".utf8))
                : ("503 Service Unavailable", "text/plain", Array("not ready\n".utf8))
        default:
            return ("404 Not Found", "text/plain", Array("try /metrics, /healthz or /readyz\n".utf8))
        }
    }

    static func bind(_ address: String) throws -> (Int32, Int) {
        let colon = address.lastIndex(of: ":")!
        var host = String(address[..<colon])
        let port = UInt16(address[address.index(after: colon)...])!
        if host.isEmpty || host == "*" { host = "0.0.0.0" }
        if host == "localhost" { host = "127.0.0.1" }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ConfigurationError(variable: "LIAISON_ADMIN_ADDRESS", problem: "socket() failed") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            close(fd)
            throw ConfigurationError(variable: "LIAISON_ADMIN_ADDRESS", problem: "'\(host)' is not an IPv4 address")
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Foundation.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, listen(fd, 64) == 0 else {
            let e = errno
            close(fd)
            throw ConfigurationError(variable: "LIAISON_ADMIN_ADDRESS", problem: "cannot listen on \(address): \(String(cString: strerror(e)))")
        }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return (fd, Int(UInt16(bigEndian: bound.sin_port)))
    }
}
