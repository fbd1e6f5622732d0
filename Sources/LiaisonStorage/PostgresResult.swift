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
    /// Per column: whether its values are in binary format (see `binaryResults`).
    private let binaryColumns: [Bool]

    init(_ result: OpaquePointer?) {
        self.result = result
        guard let result else {
            count = 0
            affectedRows = 0
            columns = []
            columnIndex = [:]
            binaryColumns = []
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
        binaryColumns = (0..<n).map { PQfformat(result, Int32($0)) == 1 }
    }

    deinit { if let result { PQclear(result) } }

    /// The row at `index`.
    public subscript(index: Int) -> PostgresRow { PostgresRow(result: self, row: index) }

    /// All rows.
    public var rows: [PostgresRow] { (0..<count).map { PostgresRow(result: self, row: $0) } }

    /// The first row, if any.
    public var first: PostgresRow? { count > 0 ? self[0] : nil }

    /// Calls `body` with the value's bytes in its column's format (borrowed from the result), or
    /// nil for NULL.
    func withBytes<R>(row: Int, column: Int, _ body: (UnsafeBufferPointer<UInt8>?) throws -> R) rethrows -> R {
        guard let result, PQgetisnull(result, Int32(row), Int32(column)) == 0 else { return try body(nil) }
        let length = Int(PQgetlength(result, Int32(row), Int32(column)))
        let value = UnsafeRawPointer(PQgetvalue(result, Int32(row), Int32(column)))
        return try body(UnsafeBufferPointer(start: value?.assumingMemoryBound(to: UInt8.self), count: length))
    }

    func column(named name: String) -> Int? { columnIndex[name] }

    /// Decodes one non-NULL value in the column's format.
    func value<T: PostgresDecodable>(_ type: T.Type, _ bytes: UnsafeBufferPointer<UInt8>, column: Int) throws -> T {
        binaryColumns[column] ? try T(postgresBinary: bytes) : try T(postgresBytes: bytes)
    }
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
        return try result.withBytes(row: row, column: column) { bytes in
            guard let bytes else { throw PostgresError(.decoding, message: "column \(result.columns[column]) is NULL") }
            return try result.value(T.self, bytes, column: column)
        }
    }

    /// The value at `column` decoded as `T`, or nil for NULL.
    public func decode<T: PostgresDecodable>(_ type: T?.Type, _ column: Int) throws -> T? {
        guard column < result.columns.count else {
            throw PostgresError(.decoding, message: "no column \(column)")
        }
        return try result.withBytes(row: row, column: column) { bytes in
            guard let bytes else { return nil }
            return try result.value(T.self, bytes, column: column)
        }
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
    public func isNull(_ column: Int) -> Bool { result.withBytes(row: row, column: column) { $0 == nil } }
}
