import Foundation
import LiaisonStorage

// One list engine for every service (issue 21): keyset paging over a declared ordering, with the
// shared AIP-160 filter (`FilterParser`) and signed page tokens (`PageTokenCodec`). A page token
// carries the sort key and id of the last row returned and a fingerprint of the query, so a page
// continues exactly after that row (rows inserted meanwhile appear in later pages or not at all,
// never twice) and a token of another query is refused.

/// One ordering of a list: a sort column, then `id` in the same direction (the keyset).
public struct ListOrdering: Sendable {
    /// How the sort key is carried in a page token's 64-bit key.
    public enum Key: Sendable {
        /// timestamptz, as microseconds since the epoch.
        case time
        /// double precision, as its IEEE 754 bit pattern (exact).
        case double
        /// An integer column.
        case integer
        /// No sort column: by id alone.
        case idOnly
        /// A text column, ascending only; the text travels in the token id as
        /// "<utf8 length>|<text><id>".
        case text
    }

    public let column: String
    public let key: Key
    public let descending: Bool
    /// A timestamptz column sorted descending between `column` and `id` (then `id` descending);
    /// its microseconds travel in the token id as "<µs>|<id>". Only with an ascending `column`.
    public var then: String? = nil
    /// SQL type of the id column ("uuid", "text").
    public var idType = "uuid"

    public init(column: String, key: Key, descending: Bool, then: String? = nil, idType: String = "uuid") {
        self.column = column
        self.key = key
        self.descending = descending
        self.then = then
        self.idType = idType
    }

    /// The ordering `orderBy` names among `choices` (spaces normalized; empty: the first), with
    /// its normalized name; INVALID_ARGUMENT on `order_by` listing the choices otherwise.
    public static func choose(_ orderBy: String, from choices: KeyValuePairs<String, ListOrdering>, domain: String) throws
        -> (String, ListOrdering) {
        let normalized = orderBy.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
        if normalized.isEmpty { return (choices[choices.startIndex].key, choices[choices.startIndex].value) }
        guard let match = choices.first(where: { $0.key == normalized }) else {
            throw APIError.invalidArgument(domain: domain, field: "order_by",
                                           "must be one of " + choices.map { "\"\($0.key)\"" }.joined(separator: ", "))
        }
        return (match.key, match.value)
    }

    var orderSQL: String {
        if key == .idOnly { return "id" }
        let d = descending ? " DESC" : ""
        if let then { return "\(column)\(d), \(then) DESC, id DESC" }
        return "\(column)\(d), id\(d)"
    }

    /// Columns selected after the resource's own columns to build the next token.
    var keyColumns: [String] { key == .idOnly ? [] : [column] + (then.map { [$0] } ?? []) }

    private func value(_ placeholder: String, _ key: Key) -> String {
        switch key {
        case .time: "('epoch'::timestamptz + \(placeholder)::bigint * interval '1 microsecond')"
        case .double: "\(placeholder)::float8"
        case .integer, .idOnly: "\(placeholder)::bigint"
        case .text: "\(placeholder)::text"
        }
    }

    private func parameter(_ k: Int64, _ key: Key) -> any PostgresBindable {
        key == .double ? Double(bitPattern: UInt64(bitPattern: k)) : k
    }

    /// The keyset condition "after `token`", placeholders from `$\(n)`.
    func after(_ token: PageToken, from n: Int) throws -> (String, [any PostgresBindable]) {
        let a = "$\(n)", b = "$\(n + 1)", c = "$\(n + 2)"
        switch (key, then) {
        case (.idOnly, _):
            return ("id > \(a)::\(idType)", [token.lastId])
        case (.text, _):
            guard let (text, id) = Self.splitKey(token.lastId) else { throw PageTokenError.malformed }
            return ("(\(column), id) > (\(a)::text, \(b)::\(idType))", [text, id])
        case (_, nil):
            return ("(\(column), id) \(descending ? "<" : ">") (\(value(a, key)), \(b)::\(idType))",
                    [parameter(token.lastTimeMicros, key), token.lastId])
        case (_, let then?):
            guard let bar = token.lastId.firstIndex(of: "|"), let micros = Int64(token.lastId[..<bar]) else {
                throw PageTokenError.malformed
            }
            let id = String(token.lastId[token.lastId.index(after: bar)...])
            return ("(\(column) > \(value(a, key)) OR (\(column) = \(value(a, key)) AND (\(then), id) < (\(value(b, .time)), \(c)::\(idType))))",
                    [parameter(token.lastTimeMicros, key), micros, id])
        }
    }

    /// A (text, id) position as one string: "<utf8 length of text>|<text><id>".
    public static func joinKey(_ text: String, _ id: String) -> String { "\(text.utf8.count)|\(text)\(id)" }

    public static func splitKey(_ key: String) -> (String, String)? {
        guard let bar = key.firstIndex(of: "|"), let n = Int(key[..<bar]), n >= 0 else { return nil }
        let rest = Array(key[key.index(after: bar)...].utf8)
        guard n <= rest.count else { return nil }
        return (String(decoding: rest[..<n], as: UTF8.self), String(decoding: rest[n...], as: UTF8.self))
    }

    /// The token position of `row` (id at column 0, key columns from `k`).
    func position(_ row: PostgresRow, keyAt k: Int) throws -> (Int64, String) {
        let id = try row.decode(String.self, 0)
        func value(_ kind: Key, _ i: Int) throws -> Int64 {
            switch kind {
            case .time: PageToken.micros(try row.decode(Date.self, i))
            case .double: Int64(bitPattern: try row.decode(Double.self, i).bitPattern)
            case .integer: try row.decode(Int64.self, i)
            case .idOnly, .text: 0
            }
        }
        if key == .text { return (0, Self.joinKey(try row.decode(String.self, k), id)) }
        if then != nil { return (try value(key, k), "\(try value(.time, k + 1))|\(id)") }
        return (try value(key, k), id)
    }
}

/// Keyset pages.
public enum KeysetPage {
    /// One page of `table` rows matching `filter` (plus `conditions` over further parameters),
    /// ordered by `ordering`, after `token`; and the next page's token ("" on the last page).
    public static func page(
        _ c: PostgresConnection, table: String, columns: String, filter: SQLFilter,
        conditions extra: [(String, any PostgresBindable)] = [], ordering: ListOrdering, after token: PageToken?,
        size: Int, query: QueryFingerprint, codec: PageTokenCodec, lifetime: TimeInterval
    ) throws -> (rows: [PostgresRow], next: String) {
        var conditions = filter.conditions
        var parameters = filter.parameters
        for (condition, value) in extra {
            parameters.append(value)
            conditions.append(condition.replacingOccurrences(of: "$?", with: "$\(parameters.count)"))
        }
        if let token {
            let (condition, values) = try ordering.after(token, from: parameters.count + 1)
            conditions.append(condition)
            parameters += values
        }
        let keyAt = columns.split(separator: ",").count
        let selected = ([columns] + ordering.keyColumns).joined(separator: ", ")
        let whereSQL = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        var rows = try c.query("SELECT \(selected) FROM \(table)\(whereSQL) ORDER BY \(ordering.orderSQL) LIMIT \(size + 1)",
                               parameters).rows
        guard rows.count > size else { return (rows, "") }
        rows.removeLast(rows.count - size)
        let (key, id) = try ordering.position(rows[rows.count - 1], keyAt: keyAt)
        let next = PageToken(query: query, lastTimeMicros: key, lastId: id,
                             expireTimeMicros: PageToken.micros(Date().addingTimeInterval(lifetime)))
        return (rows, codec.encode(next))
    }
}

/// The checked parts of one List request, the same in every service: the page size, the parsed
/// filter, the chosen ordering, the query's fingerprint and the position its page token names.
/// Each failure is INVALID_ARGUMENT on its field (`page_size`, `filter`, `order_by`,
/// `page_token`).
public struct ListQuery: Sendable {
    public let size: Int
    public let filter: SQLFilter
    public let ordering: ListOrdering
    public let fingerprint: QueryFingerprint
    /// Where the page starts (nil: the first page).
    public let after: PageToken?

    public init(
        collection: String, parent: String = "", pageSize: Int32, defaultSize: Int, maxSize: Int,
        filter: String, parser: FilterParser, orderBy: String, orderings: KeyValuePairs<String, ListOrdering>,
        pageToken: String, codec: PageTokenCodec, domain: String
    ) throws {
        size = try RequestFields.pageSize(pageSize, default: defaultSize, max: maxSize, domain: domain)
        self.filter = try parser.parse(filter, firstParameter: 1)
        let (name, ordering) = try ListOrdering.choose(orderBy, from: orderings, domain: domain)
        self.ordering = ordering
        fingerprint = QueryFingerprint(collection: collection, parent: parent, filter: filter, orderBy: name)
        do {
            after = pageToken.isEmpty ? nil : try codec.decode(pageToken, expecting: fingerprint)
        } catch {
            throw error.apiError(domain: domain)
        }
    }

    /// This query's page of `table` (plus `conditions`), and the next page's token.
    public func page(
        _ c: PostgresConnection, table: String, columns: String, conditions: [(String, any PostgresBindable)] = [],
        codec: PageTokenCodec, lifetime: TimeInterval
    ) throws -> (rows: [PostgresRow], next: String) {
        try KeysetPage.page(c, table: table, columns: columns, filter: filter, conditions: conditions, ordering: ordering,
                            after: after, size: size, query: fingerprint, codec: codec, lifetime: lifetime)
    }
}
