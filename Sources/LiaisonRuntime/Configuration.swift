import Foundation
import Logging

/// A configuration problem found at start-up; names the variable and what is wrong with it.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public var variable: String
    public var problem: String
    public init(variable: String, problem: String) {
        self.variable = variable
        self.problem = problem
    }
    public var description: String { "\(variable): \(problem)" }
}

/// Reads `LIAISON_*` environment variables with validation. Every service is configured through
/// the environment only (12-factor); `LIAISON_` is the one documented prefix.
public struct Environment: Sendable {
    public static let prefix = "LIAISON_"
    public let values: [String: String]

    public init(_ values: [String: String] = ProcessInfo.processInfo.environment) {
        self.values = values
    }

    /// The raw value of `LIAISON_<name>`, nil when unset or empty.
    public func string(_ name: String) -> String? {
        guard let v = values[Self.prefix + name]?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
        return v
    }

    /// Event destinations from `LIAISON_<name>` (service names, comma separated): `default`
    /// when unset, none for `none`. Each service's default routes every event it produces to
    /// every service that has an applier for it, so a shipped deployment needs no setting.
    public func destinations(_ name: String, default value: [String]) -> [String] {
        guard let raw = string(name) else { return value }
        if raw.lowercased() == "none" { return [] }
        return raw.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    public func required(_ name: String) throws -> String {
        guard let v = string(name) else {
            throw ConfigurationError(variable: Self.prefix + name, problem: "is required but not set")
        }
        return v
    }

    public func int(_ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let raw = string(name) else { return value }
        guard let v = Int(raw), range.contains(v) else {
            throw ConfigurationError(
                variable: Self.prefix + name,
                problem: "must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(raw)'")
        }
        return v
    }

    public func double(_ name: String, default value: Double, range: ClosedRange<Double>) throws -> Double {
        guard let raw = string(name) else { return value }
        guard let v = Double(raw), range.contains(v) else {
            throw ConfigurationError(
                variable: Self.prefix + name,
                problem: "must be a number in \(range.lowerBound)...\(range.upperBound), got '\(raw)'")
        }
        return v
    }

    public func bool(_ name: String, default value: Bool) throws -> Bool {
        guard let raw = string(name)?.lowercased() else { return value }
        switch raw {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ConfigurationError(variable: Self.prefix + name, problem: "must be true or false, got '\(raw)'")
        }
    }

    /// A `host:port` listen address.
    public func address(_ name: String, default value: String) throws -> String {
        let raw = string(name) ?? value
        guard let colon = raw.lastIndex(of: ":"), let port = Int(raw[raw.index(after: colon)...]),
            (0...65535).contains(port), colon > raw.startIndex
        else {
            throw ConfigurationError(variable: Self.prefix + name, problem: "must be host:port, got '\(raw)'")
        }
        return raw
    }

    /// A file's contents (PEM material for TLS), nil when the variable is unset.
    public func fileContents(_ name: String) throws -> String? {
        guard let path = string(name) else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigurationError(variable: Self.prefix + name, problem: "cannot read file '\(path)'")
        }
        return text
    }
}

/// The settings every service shares. Service-specific settings are read by the service itself
/// from the same `Environment`.
public struct ServiceConfiguration: Sendable {
    /// gRPC listen address (`LIAISON_LISTEN_ADDRESS`).
    public var listenAddress: String
    /// Admin HTTP address for /metrics, /healthz, /readyz (`LIAISON_ADMIN_ADDRESS`).
    public var adminAddress: String
    /// libpq URL of the service's own database (`LIAISON_DATABASE_URL`). Never logged.
    public var databaseURL: String
    /// Connections in the pool (`LIAISON_DATABASE_POOL_SIZE`).
    public var databasePoolSize: Int
    /// Folder of the service's SQL migrations (`LIAISON_MIGRATIONS_DIR`).
    public var migrationsDirectory: String
    /// Apply migrations when serving starts (`LIAISON_MIGRATE_ON_START`, default true).
    public var migrateOnStart: Bool
    /// `trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical` (`LIAISON_LOG_LEVEL`).
    public var logLevel: Logger.Level
    /// How long in-flight calls may drain after SIGTERM (`LIAISON_SHUTDOWN_GRACE_SECONDS`).
    public var shutdownGrace: Duration
    /// How long the server keeps serving after SIGTERM while health and readiness already say
    /// NOT_SERVING, so that balancers and health-checking clients move away before the listener
    /// closes (`LIAISON_SHUTDOWN_DELAY_SECONDS`, default 0).
    public var shutdownDelay: Duration
    /// Largest request message (`LIAISON_MAX_MESSAGE_BYTES`).
    public var maxMessageBytes: Int
    /// Connections are recycled after this many seconds so clients spread to new replicas
    /// (`LIAISON_MAX_CONNECTION_AGE_SECONDS`, 0 = never).
    public var maxConnectionAgeSeconds: Int
    /// Identity of this replica in leases and logs (`LIAISON_REPLICA_ID`, default host name + pid).
    public var replicaID: String
    /// Most calls served at once (`LIAISON_MAX_ACTIVE_CALLS`, default 2048); one more is
    /// refused with RESOURCE_EXHAUSTED and a retry hint before any work.
    public var maxActiveCalls: Int
    /// Most concurrent streams per client connection (`LIAISON_MAX_STREAMS_PER_CONNECTION`,
    /// default 256).
    public var maxStreamsPerConnection: Int
    /// Memory grpc++ may use for connections and calls (`LIAISON_GRPC_MEMORY_BYTES`, default
    /// 512 MiB).
    public var grpcMemoryBytes: Int
    /// Most callers waiting for a database connection (`LIAISON_DATABASE_MAX_WAITERS`, default
    /// 1024); one more is RESOURCE_EXHAUSTED.
    public var databaseMaxWaiters: Int
    /// `LIAISON_ENVIRONMENT=production` (default `development`): secrets must be configured,
    /// nothing is derived or generated for convenience.
    public var production: Bool
    /// How long request ids are remembered for replays (`LIAISON_IDEMPOTENCY_RETENTION_SECONDS`,
    /// default 8 days). A retry after that is a new request.
    public var idempotencyRetention: Duration
    /// How long applied event ids are remembered (`LIAISON_INBOX_RETENTION_SECONDS`, default 30
    /// days): a redelivery after that would apply again, so keep it longer than any outage and
    /// requeue dead letters within it.
    public var inboxRetention: Duration

    /// Reads and validates the shared settings for `service` with its default ports.
    public init(service: String, defaultPort: Int, defaultAdminPort: Int, environment env: Environment = Environment()) throws {
        listenAddress = try env.address("LISTEN_ADDRESS", default: "0.0.0.0:\(defaultPort)")
        adminAddress = try env.address("ADMIN_ADDRESS", default: "0.0.0.0:\(defaultAdminPort)")
        databaseURL = try env.required("DATABASE_URL")
        guard databaseURL.hasPrefix("postgres://") || databaseURL.hasPrefix("postgresql://") || databaseURL.contains("=") else {
            throw ConfigurationError(
                variable: "LIAISON_DATABASE_URL",
                problem: "must be a libpq URL (postgresql://user@host:port/db) or keyword string")
        }
        databasePoolSize = try env.int("DATABASE_POOL_SIZE", default: 8, range: 1...256)
        migrationsDirectory = env.string("MIGRATIONS_DIR") ?? "services/\(service)/migrations"
        migrateOnStart = try env.bool("MIGRATE_ON_START", default: true)
        let level = env.string("LOG_LEVEL")?.lowercased() ?? "info"
        guard let parsed = Logger.Level(rawValue: level) else {
            throw ConfigurationError(
                variable: "LIAISON_LOG_LEVEL",
                problem: "must be one of trace, debug, info, notice, warning, error, critical; got '\(level)'")
        }
        logLevel = parsed
        shutdownGrace = .seconds(try env.int("SHUTDOWN_GRACE_SECONDS", default: 10, range: 0...600))
        shutdownDelay = .seconds(try env.int("SHUTDOWN_DELAY_SECONDS", default: 0, range: 0...120))
        maxMessageBytes = try env.int("MAX_MESSAGE_BYTES", default: 4 << 20, range: 1024...(256 << 20))
        maxConnectionAgeSeconds = try env.int("MAX_CONNECTION_AGE_SECONDS", default: 300, range: 0...86_400)
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, 255)
        replicaID = env.string("REPLICA_ID") ?? "\(String(cString: host))-\(getpid())"
        switch env.string("ENVIRONMENT")?.lowercased() ?? "development" {
        case "production": production = true
        case "development": production = false
        case let other:
            throw ConfigurationError(variable: "LIAISON_ENVIRONMENT", problem: "must be production or development, got '\(other)'")
        }
        maxActiveCalls = try env.int("MAX_ACTIVE_CALLS", default: 2048, range: 1...1_000_000)
        maxStreamsPerConnection = try env.int("MAX_STREAMS_PER_CONNECTION", default: 256, range: 1...100_000)
        grpcMemoryBytes = try env.int("GRPC_MEMORY_BYTES", default: 512 << 20, range: (16 << 20)...(64 << 30))
        databaseMaxWaiters = try env.int("DATABASE_MAX_WAITERS", default: 1024, range: 1...1_000_000)
        idempotencyRetention = .seconds(try env.int("IDEMPOTENCY_RETENTION_SECONDS", default: 8 * 86_400, range: 3600...366 * 86_400))
        inboxRetention = .seconds(try env.int("INBOX_RETENTION_SECONDS", default: 30 * 86_400, range: 86_400...3660 * 86_400))
    }

    /// The key signing page tokens: `LIAISON_<variable>` (at least 16 bytes, shared by the
    /// service's replicas). Without it, production refuses to start; development derives one
    /// from the database URL (replicas of one database agree) and says so in the log, since such
    /// a key is guessable when the URL carries no password.
    public func pageTokenKey(_ variable: String, environment env: Environment, service: String, logger: Logger) throws -> [UInt8] {
        if let k = env.string(variable) {
            guard k.utf8.count >= 16 else {
                throw ConfigurationError(variable: Environment.prefix + variable, problem: "must be at least 16 bytes")
            }
            return Array(k.utf8)
        }
        guard !production else {
            throw ConfigurationError(
                variable: Environment.prefix + variable,
                problem: "is required with LIAISON_ENVIRONMENT=production (a secret of at least 16 bytes, the same for every replica)")
        }
        logger.warning("page-token key derived from the database URL (development only; set \(Environment.prefix + variable) in production)")
        return Self.derivedPageTokenKey(service: service, databaseURL: databaseURL)
    }

    /// A page-token key derived from the database URL, so replicas sharing a database share it.
    public static func derivedPageTokenKey(service: String, databaseURL: String) -> [UInt8] {
        var h = SHA256()
        h.update(Array("liaison-\(service)-page-token:\(databaseURL)".utf8))
        return h.finalize()
    }
}
