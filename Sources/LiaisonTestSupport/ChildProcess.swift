import Foundation

/// A program started by a test (a service executable, a client), with its output in a file.
/// Spawned with posix_spawn so that tests can SIGKILL or SIGTERM it at any moment.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    /// Standard output and error, combined.
    public let logPath: String
    private var exitStatus: Int32?

    /// Starts `argv` with the current environment plus `environment`.
    public init(_ argv: [String], environment: [String: String] = [:]) throws {
        logPath = NSTemporaryDirectory() + "liaison-child-\(getpid())-\(UUID().uuidString).log"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        let cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer {
            for p in cEnv { free(p) }
            for p in cArgs { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cArgs, cEnv)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EINVAL) }
        self.pid = pid
    }

    /// Sends `signal` (SIGTERM, SIGKILL, ...).
    public func send(_ signal: Int32) { kill(pid, signal) }

    /// Waits up to `timeout` for the process to end; returns its exit code (128+signal when
    /// killed), or nil if it is still running.
    public func wait(timeout: Duration) -> Int32? {
        if let exitStatus { return exitStatus }
        let end = ContinuousClock.now + timeout
        while true {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
                exitStatus = code
                return code
            }
            if ContinuousClock.now >= end { return nil }
            usleep(20_000)
        }
    }

    /// Everything the process printed so far.
    public var output: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        unlink(logPath)
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for tests on loopback).
public func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// The folder holding the debug build's executables.
public var debugBinDirectory: String { TestPostgres.repositoryRoot + "/.build/debug" }
