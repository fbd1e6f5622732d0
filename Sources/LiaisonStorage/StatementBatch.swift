import Synchronization
import Foundation

/// Runs statements whose results the caller does not need: a `PostgresConnection` runs each at
/// once (a round trip each), a `StatementBatch` collects them for one pipeline. Code that only
/// writes (outbox rows, idempotency records, a repository's inserts) takes `some SQLWriter` so
/// that its caller decides.
public protocol SQLWriter {
    func write(_ sql: String, _ parameters: [any PostgresBindable]) throws
}

extension PostgresConnection: SQLWriter {
    public func write(_ sql: String, _ parameters: [any PostgresBindable]) throws {
        try query(sql, parameters)
    }
}

/// Write statements collected in order, for the caller to send in one round trip
/// (`PostgresConnection.pipeline` or `commit(with:)`, after `coalesce` when several batches are
/// independent). Not thread-safe: one batch belongs to one transaction's code.
public final class StatementBatch: SQLWriter {
    /// A statement as `pipeline` takes it.
    public typealias Statement = (sql: String, parameters: [any PostgresBindable])

    public private(set) var statements: [Statement] = []

    public init() {}

    public func write(_ sql: String, _ parameters: [any PostgresBindable]) throws {
        statements.append((sql, parameters))
    }
}

// MARK: - Coalescing independent units

extension StatementBatch {
    /// The statements of several independent units (each unit's statements in their order; no
    /// unit reads or depends on another unit's rows), with the single-row `INSERT ... VALUES (...)`
    /// statements that share their SQL text merged into multi-row inserts: one statement per
    /// table instead of one per row (fewer statements to bind and execute, on both sides).
    ///
    /// Order: each unit's statements keep their relative order (a merged insert runs after
    /// everything that preceded any of its rows in their units, and before everything that
    /// followed). If the units' orders conflict (a cycle), nothing is merged; a single unit is
    /// returned as it is. Rows of one merged insert keep the units' order. A merged insert has at
    /// most `maxParameters` parameters (the protocol allows 65,535); larger groups are split.
    public static func coalesce(_ units: [[Statement]], maxParameters: Int = 32_767) -> [Statement] {
        // One unit has no other unit to share a statement with.
        guard units.count > 1 else { return units.first ?? [] }
        // Nodes: one per distinct mergeable INSERT text, one per other statement.
        var nodeOf: [String: Int] = [:]
        var members: [[Statement]] = []
        var templates: [InsertTemplate?] = []
        var edges: [Set<Int>] = []
        var indegree: [Int] = []
        func newNode(_ template: InsertTemplate?) -> Int {
            members.append([])
            templates.append(template)
            edges.append([])
            indegree.append(0)
            return members.count - 1
        }
        for unit in units {
            var previous: Int?
            for statement in unit {
                let node: Int
                if let existing = nodeOf[statement.sql],
                   templates[existing]?.parameterCount == statement.parameters.count {
                    node = existing
                } else if let template = InsertTemplate.parsed(statement.sql, parameterCount: statement.parameters.count) {
                    node = newNode(template)
                    nodeOf[statement.sql] = node
                } else {
                    node = newNode(nil)
                }
                members[node].append(statement)
                if let p = previous, p != node, edges[p].insert(node).inserted { indegree[node] += 1 }
                previous = node
            }
        }
        // Kahn's algorithm; among ready nodes the earliest created goes first (stable order).
        var ready = Set(indegree.indices.filter { indegree[$0] == 0 })
        var order: [Int] = []
        order.reserveCapacity(members.count)
        while let next = ready.min() {
            ready.remove(next)
            order.append(next)
            for target in edges[next] {
                indegree[target] -= 1
                if indegree[target] == 0 { ready.insert(target) }
            }
        }
        guard order.count == members.count else { return units.flatMap { $0 } }  // a cycle

        var out: [Statement] = []
        for node in order {
            let rows = members[node]
            guard let template = templates[node], rows.count > 1 else {
                out.append(contentsOf: rows)
                continue
            }
            let perChunk = max(1, maxParameters / max(template.parameterCount, 1))
            var start = 0
            while start < rows.count {
                let chunk = rows[start..<min(start + perChunk, rows.count)]
                out.append(chunk.count == 1 ? chunk.first! : template.merged(chunk.map(\.parameters)))
                start += chunk.count
            }
        }
        return out
    }
}

/// A single-row `INSERT INTO t (...) VALUES (<tuple>)` with `$1...$n` placeholders, which can
/// be repeated with renumbered placeholders. Anything else (ON CONFLICT, RETURNING, SELECT, more
/// than one tuple) is not a template.
struct InsertTemplate {
    let prefix: Substring  // through "VALUES "
    let tuple: Substring   // "( ... )"
    let parameterCount: Int
    /// `tuple` as text between placeholders and the placeholders' numbers.
    let pieces: [Piece]

    enum Piece {
        case text(ArraySlice<UInt8>)
        case placeholder(Int)
    }

    /// `init(_:parameterCount:)` for a statement text, parsed once per process: the same few
    /// insert texts come back in every batch, and parsing (Foundation string searches) cost 6%
    /// of intake's CPU per batched report when done per batch.
    static func parsed(_ sql: String, parameterCount: Int) -> InsertTemplate? {
        let key = ParsedKey(sql: sql, parameterCount: parameterCount)
        if let cached = parsedCache.withLock({ $0[key] }) { return cached }
        let template = InsertTemplate(sql, parameterCount: parameterCount)
        parsedCache.withLock { cache in
            if cache.count >= 512 { cache.removeAll(keepingCapacity: true) }
            cache[key] = .some(template)
        }
        return template
    }

    private struct ParsedKey: Hashable {
        let sql: String
        let parameterCount: Int
    }
    /// Parsed texts, including the ones that are not templates (nil).
    private static let parsedCache = Mutex<[ParsedKey: InsertTemplate?]>([:])

    init?(_ sql: String, parameterCount: Int) {
        let trimmed = sql.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.prefix(12).uppercased() == "INSERT INTO ", trimmed.last == ")",
              let values = trimmed.range(of: "VALUES", options: [.caseInsensitive, .backwards])
        else { return nil }
        let rest = trimmed[values.upperBound...].drop { $0 == " " || $0 == "\n" || $0 == "\t" }
        guard rest.first == "(", Self.closingParenthesis(of: rest) == rest.index(before: rest.endIndex) else { return nil }
        let pieces = Self.pieces(of: rest)
        // Every placeholder must be within 1...parameterCount.
        for case .placeholder(let n) in pieces where n < 1 || n > parameterCount { return nil }
        prefix = trimmed[..<rest.startIndex]
        tuple = rest
        self.parameterCount = parameterCount
        self.pieces = pieces
    }

    /// One INSERT with a tuple per row; row k's placeholders are shifted by k * parameterCount.
    /// The SQL text for a given template and row count is built once per process (a batch's
    /// inserts come back with the same few row counts, and the same text reuses the connection's
    /// prepared statement).
    func merged(_ rows: [[any PostgresBindable]]) -> StatementBatch.Statement {
        var parameters: [any PostgresBindable] = []
        parameters.reserveCapacity(rows.count * parameterCount)
        for row in rows { parameters.append(contentsOf: row) }
        return (sql(rows: rows.count), parameters)
    }

    /// The text of the insert with `rows` tuples.
    func sql(rows: Int) -> String {
        let key = MergedKey(prefix: prefix, tuple: tuple, rows: rows)
        if let cached = Self.cache.withLock({ $0[key] }) { return cached }
        let sql = build(rows: rows)
        Self.cache.withLock { cache in
            if cache.count >= 512 { cache.removeAll(keepingCapacity: true) }
            cache[key] = sql
        }
        return sql
    }

    private struct MergedKey: Hashable {
        let prefix: Substring
        let tuple: Substring
        let rows: Int
    }
    private static let cache = Mutex<[MergedKey: String]>([:])

    /// Builds the text over UTF-8 bytes: the tuple's text between placeholders is copied as is.
    func build(rows: Int) -> String {
        var out = Array(prefix.utf8)
        out.reserveCapacity(out.count + rows * (tuple.utf8.count + 2 * parameterCount + 2))
        for k in 0..<rows {
            if k > 0 { out.append(contentsOf: ", ".utf8) }
            for piece in pieces {
                switch piece {
                case .text(let t): out.append(contentsOf: t)
                case .placeholder(let n):
                    out.append(UInt8(ascii: "$"))
                    out.append(contentsOf: String(n + k * parameterCount).utf8)
                }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Splits `s` at its placeholders (`$n` outside string literals).
    static func pieces(of s: Substring) -> [Piece] {
        let bytes = Array(s.utf8)
        var pieces: [Piece] = []
        var quoted = false
        var start = 0
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "'") { quoted.toggle() }
            if b == UInt8(ascii: "$"), !quoted {
                var j = i + 1
                var n = 0
                while j < bytes.count, bytes[j] >= UInt8(ascii: "0"), bytes[j] <= UInt8(ascii: "9") {
                    n = n * 10 + Int(bytes[j] - UInt8(ascii: "0"))
                    j += 1
                }
                if j > i + 1 {
                    pieces.append(.text(bytes[start..<i]))
                    pieces.append(.placeholder(n))
                    start = j
                    i = j
                    continue
                }
            }
            i += 1
        }
        pieces.append(.text(bytes[start..<bytes.count]))
        return pieces
    }

    /// The index of the parenthesis closing the one at `s.startIndex`, outside string literals.
    static func closingParenthesis(of s: Substring) -> Substring.Index? {
        var depth = 0
        var quoted = false
        for i in s.indices {
            switch s[i] {
            case "'": quoted.toggle()
            case "(" where !quoted: depth += 1
            case ")" where !quoted:
                depth -= 1
                if depth == 0 { return i }
            default: break
            }
        }
        return nil
    }
}
