import CLibPQ

/// The rows of one statement. Owns the libpq result; immutable and safe to read from any thread.
public final class PostgresResult: @unchecked Sendable {
    // libpq documents PGresult as read-only after creation and safe to share between threads.
    private let result: OpaquePointer?
    /// Number of rows returned.
    public let count: Int
    /// Rows affected by INSERT/UPDATE/DELETE (or returned by SELECT).
    public let affectedRows: Int
    /// Column names in order.
    public let columns: [String]
    private let columnIndex: [String: Int]

    init(_ result: OpaquePointer?) {
        self.result = result
        guard let result else {
            count = 0
            affectedRows = 0
            columns = []
            columnIndex = [:]
            return
        }
        count = Int(PQntuples(result))
        affectedRows = Int(String(cString: PQcmdTuples(result))) ?? count
        let n = Int(PQnfields(result))
        var cols: [String] = []
        cols.reserveCapacity(n)
        var index: [String: Int] = [:]
        for i in 0..<n {
            let name = String(cString: PQfname(result, Int32(i)))
            cols.append(name)
            if index[name] == nil { index[name] = i }
        }
        columns = cols
        columnIndex = index
    }

    deinit { if let result { PQclear(result) } }

    /// The row at `index`.
    public subscript(index: Int) -> PostgresRow { PostgresRow(result: self, row: index) }

    /// All rows.
    public var rows: [PostgresRow] { (0..<count).map { PostgresRow(result: self, row: $0) } }

    /// The first row, if any.
    public var first: PostgresRow? { count > 0 ? self[0] : nil }

    func text(row: Int, column: Int) -> String? {
        guard let result, PQgetisnull(result, Int32(row), Int32(column)) == 0 else { return nil }
        return String(cString: PQgetvalue(result, Int32(row), Int32(column)))
    }

    func column(named name: String) -> Int? { columnIndex[name] }
}

/// One row of a `PostgresResult`, decoded on demand.
public struct PostgresRow: Sendable {
    let result: PostgresResult
    let row: Int

    /// The value at `column` (0-based) decoded as `T`; throws on NULL.
    public func decode<T: PostgresDecodable>(_ type: T.Type = T.self, _ column: Int) throws -> T {
        guard column < result.columns.count else {
            throw PostgresError(.decoding, message: "no column \(column)")
        }
        guard let text = result.text(row: row, column: column) else {
            throw PostgresError(.decoding, message: "column \(result.columns[column]) is NULL")
        }
        return try T(postgresText: text)
    }

    /// The value at `column` decoded as `T`, or nil for NULL.
    public func decode<T: PostgresDecodable>(_ type: T?.Type, _ column: Int) throws -> T? {
        guard column < result.columns.count else {
            throw PostgresError(.decoding, message: "no column \(column)")
        }
        guard let text = result.text(row: row, column: column) else { return nil }
        return try T(postgresText: text)
    }

    /// The value of the column named `name` decoded as `T`; throws on NULL.
    public func decode<T: PostgresDecodable>(_ type: T.Type = T.self, _ name: String) throws -> T {
        guard let i = result.column(named: name) else {
            throw PostgresError(.decoding, message: "no column named \(name)")
        }
        return try decode(type, i)
    }

    /// The value of the column named `name` decoded as `T`, or nil for NULL.
    public func decode<T: PostgresDecodable>(_ type: T?.Type, _ name: String) throws -> T? {
        guard let i = result.column(named: name) else {
            throw PostgresError(.decoding, message: "no column named \(name)")
        }
        return try decode(type, i)
    }

    /// Whether the column is NULL.
    public func isNull(_ column: Int) -> Bool { result.text(row: row, column: column) == nil }
}
