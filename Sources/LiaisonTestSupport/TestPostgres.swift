import Foundation
import LiaisonStorage

/// The throwaway PostgreSQL cluster of a test run.
///
/// `make test` starts one cluster (scripts/pg.sh, loopback, free port, fsync off) and passes it as
/// `LIAISON_TEST_PG_DIR`; a bare `swift test` starts its own on first use and destroys it when the
/// process exits. Each test suite gets fresh databases from `createDatabase`.
public final class TestPostgres: @unchecked Sendable {
    /// The cluster for this process (started on first use).
    public static let shared: TestPostgres = {
        do { return try TestPostgres() } catch { fatalError("cannot start test PostgreSQL: \(error)") }
    }()

    /// Data folder of the cluster (holds `data/`, `port`, `server.log`).
    public let directory: String
    /// URL of the `postgres` maintenance database.
    public let adminURL: String
    private let owned: Bool
    private let lock = NSLock()
    private var counter = 0

    private init() throws {
        if let dir = ProcessInfo.processInfo.environment["LIAISON_TEST_PG_DIR"], !dir.isEmpty {
            directory = dir
            owned = false
            adminURL = try Self.script(["url", dir]).trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            Self.removeClustersOfDeadRuns()
            directory = NSTemporaryDirectory() + "liaison-test-pg-\(getpid())"
            owned = true
            adminURL = try Self.script(["start", directory, "0", "fast"]).trimmingCharacters(in: .whitespacesAndNewlines)
            let dir = directory
            ownedDirectory = dir
            atexit { if let d = ownedDirectory { _ = try? TestPostgres.script(["destroy", d]) } }
        }
    }

    /// A test process that was killed never ran its exit handler: stop and delete the clusters
    /// whose owning process no longer exists.
    static func removeClustersOfDeadRuns() {
        let tmp = NSTemporaryDirectory()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? []
        where name.hasPrefix("liaison-test-pg-") {
            guard let pid = Int32(name.dropFirst("liaison-test-pg-".count)), kill(pid, 0) != 0, errno == ESRCH else { continue }
            _ = try? script(["destroy", tmp + name])
        }
    }

    /// Creates an empty database and returns its URL.
    public func createDatabase(_ prefix: String = "t") throws -> String {
        lock.lock()
        counter += 1
        let name = "\(prefix.lowercased().filter { $0.isLetter || $0.isNumber || $0 == "_" })_\(getpid())_\(counter)"
        lock.unlock()
        _ = try Self.script(["createdb", directory, name])
        return String(adminURL[..<adminURL.lastIndex(of: "/")!]) + "/" + name
    }

    /// Restarts the server (fast shutdown: every connection is terminated).
    public func restart() throws { _ = try Self.script(["restart", directory]) }

    /// The port the server listens on.
    public var port: Int { Int(adminURL.split(separator: ":").last!.split(separator: "/").first!)! }

    /// Runs scripts/pg.sh with `arguments` and returns its standard output.
    @discardableResult
    public static func script(_ arguments: [String]) throws -> String {
        let (status, output) = try runCommand(["/bin/bash", repositoryRoot + "/scripts/pg.sh"] + arguments)
        guard status == 0 else {
            throw PostgresError(.client, message: "scripts/pg.sh \(arguments.joined(separator: " ")) failed (\(status))")
        }
        return output
    }

    /// The repository's top folder (found from this file's path).
    public static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.path + "/Package.swift") { return url.path }
        }
        return FileManager.default.currentDirectoryPath
    }()
}

nonisolated(unsafe) private var ownedDirectory: String?

/// Runs a program, waits for it, and returns its exit status and standard output. Uses
/// posix_spawn and waitpid directly (Foundation's Process needs a run loop that test threads
/// may not be running).
public func runCommand(_ argv: [String]) throws -> (status: Int32, output: String) {
    let outPath = NSTemporaryDirectory() + "liaison-cmd-\(getpid())-\(UUID().uuidString)"
    defer { unlink(outPath) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    var pid: pid_t = 0
    let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    defer { for a in cArgs { free(a) } }
    let rc = posix_spawn(&pid, argv[0], &actions, nil, cArgs, environ)
    guard rc == 0 else { throw PostgresError(.client, message: "cannot start \(argv[0]): \(rc)") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let exited = status & 0x7f == 0
    return (exited ? (status >> 8) & 0xff : 128 + (status & 0x7f), output)
}

/// A value shared between test tasks (a lock-protected box).
public final class Shared<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    public init(_ value: Value) { self.value = value }
    /// Reads or changes the value under the lock.
    @discardableResult
    public func with<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
    public var current: Value { with { $0 } }
}
