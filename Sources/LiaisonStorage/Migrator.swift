import Foundation
import Logging

/// One schema migration: plain SQL, applied once, in version order.
public struct Migration: Sendable, Equatable {
    public var version: Int
    public var name: String
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

/// Why migrating failed.
public enum MigrationError: Error, CustomStringConvertible, Equatable {
    case badFileName(String)
    case duplicateVersion(Int)
    case unreadableDirectory(String)
    case editedAfterApply(namespace: String, version: Int, name: String)
    case failed(namespace: String, version: Int, name: String, message: String)

    public var description: String {
        switch self {
        case .badFileName(let f):
            return "migration file '\(f)' must be named NNNN_description.sql"
        case .duplicateVersion(let v):
            return "two migration files have version \(v)"
        case .unreadableDirectory(let d):
            return "cannot read migrations directory '\(d)'"
        case .editedAfterApply(let ns, let v, let n):
            return "migration \(ns)/\(String(format: "%04d", v))_\(n) was edited after it was applied; "
                + "applied migrations are immutable: add a new migration instead"
        case .failed(let ns, let v, let n, let m):
            return "migration \(ns)/\(String(format: "%04d", v))_\(n) failed: \(m)"
        }
    }
}

/// Applies migrations under a PostgreSQL advisory lock (so replicas starting together apply each
/// migration once), each in its own transaction, recorded with a SHA-256 checksum in
/// `schema_migrations`. An applied migration whose file changed is refused.
public struct Migrator: Sendable {
    /// Advisory lock key shared by every migrator ("LIAISON" in ASCII).
    public static let lockKey: Int64 = 0x4C49_4149_534F_4E

    public let pool: PostgresPool
    public let logger: Logger

    public init(pool: PostgresPool, logger: Logger = Logger(label: "liaison.migrate")) {
        self.pool = pool
        self.logger = logger
    }

    /// Reads `NNNN_description.sql` files from `directory`.
    public static func load(directory: String) throws -> [Migration] {
        guard let files = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            throw MigrationError.unreadableDirectory(directory)
        }
        var result: [Migration] = []
        for file in files.sorted() where file.hasSuffix(".sql") {
            let stem = file.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_"),
                let version = Int(stem[..<underscore]), stem.distance(from: stem.startIndex, to: underscore) >= 4
            else { throw MigrationError.badFileName(file) }
            let sql = try String(contentsOfFile: directory + "/" + file, encoding: .utf8)
            result.append(Migration(version: version, name: String(stem[stem.index(after: underscore)...]), sql: sql))
        }
        try validate(result)
        return result
    }

    static func validate(_ migrations: [Migration]) throws {
        var seen = Set<Int>()
        for m in migrations where !seen.insert(m.version).inserted { throw MigrationError.duplicateVersion(m.version) }
    }

    /// Applies what is pending in `namespace`; returns the versions applied now.
    @discardableResult
    public func migrate(namespace: String, _ migrations: [Migration]) async throws -> [Int] {
        try Self.validate(migrations)
        let sorted = migrations.sorted { $0.version < $1.version }
        let logger = self.logger
        return try await pool.withConnection { conn in
            try conn.query("SELECT pg_advisory_lock($1)", [Self.lockKey])
            defer { _ = try? conn.query("SELECT pg_advisory_unlock($1)", [Self.lockKey]) }
            try conn.execute(script: """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    namespace  text        NOT NULL,
                    version    integer     NOT NULL,
                    name       text        NOT NULL,
                    checksum   text        NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (namespace, version)
                )
                """)
            let applied = try conn.query(
                "SELECT version, name, checksum FROM schema_migrations WHERE namespace = $1", [namespace])
            var known: [Int: String] = [:]
            for row in applied.rows { known[try row.decode(Int.self, 0)] = try row.decode(String.self, 2) }
            var done: [Int] = []
            for m in sorted {
                let checksum = try conn.query(
                    "SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')", [m.sql]
                ).first!.decode(String.self, 0)
                if let existing = known[m.version] {
                    guard existing == checksum else {
                        throw MigrationError.editedAfterApply(namespace: namespace, version: m.version, name: m.name)
                    }
                    continue
                }
                do {
                    try conn.inTransaction { c in
                        try c.execute(script: m.sql)
                        try c.query(
                            "INSERT INTO schema_migrations (namespace, version, name, checksum) VALUES ($1, $2, $3, $4)",
                            [namespace, m.version, m.name, checksum])
                    }
                } catch let e as PostgresError {
                    throw MigrationError.failed(namespace: namespace, version: m.version, name: m.name, message: e.message)
                }
                logger.info("applied migration", metadata: ["namespace": "\(namespace)", "version": "\(m.version)", "name": "\(m.name)"])
                done.append(m.version)
            }
            let files = Set(sorted.map(\.version))
            for v in known.keys where !files.contains(v) {
                logger.warning("database has a migration this binary does not know", metadata: ["namespace": "\(namespace)", "version": "\(v)"])
            }
            return done
        }
    }
}
