// Filters, orderings and keyset paging of the List methods (the shared FilterParser and signed
// page tokens from LiaisonRuntime). A page token carries the sort key and id of the last row
// returned and a fingerprint of the list, parent, filter and order_by, so it continues exactly
// after that row (rows inserted meanwhile appear in later pages or not at all, never twice) and a
// token of another query is refused (INVALID_ARGUMENT on page_token, reason INVALID_PAGE_TOKEN).
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage

/// One ordering of a list: a sort column, then `id` in the same direction (the keyset).
struct ListOrdering: Sendable {
    /// How the sort key is carried in a page token's 64-bit key.
    enum Key: Sendable {
        /// timestamptz, as microseconds since the epoch.
        case time
        /// double precision, as its IEEE 754 bit pattern (exact).
        case double
        /// An integer column.
        case integer
        /// No sort column: by id alone.
        case idOnly
    }

    let column: String
    let key: Key
    let descending: Bool
    /// A timestamptz column sorted descending between `column` and `id` (then `id` descending);
    /// its microseconds travel in the token id as "<µs>|<id>". Only with an ascending `column`.
    var then: String? = nil
    /// SQL type of the id column ("uuid", "text").
    var idType = "uuid"

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
        case (_, nil):
            return ("(\(column), id) \(descending ? "<" : ">") (\(value(a, key)), \(b)::\(idType))",
                    [parameter(token.lastTimeMicros, key), token.lastId])
        case (_, let then?):
            guard let bar = token.lastId.firstIndex(of: "|"), let micros = Int64(token.lastId[..<bar]) else {
                throw PageTokenError.malformed.apiError(domain: domain)
            }
            let id = String(token.lastId[token.lastId.index(after: bar)...])
            return ("(\(column) > \(value(a, key)) OR (\(column) = \(value(a, key)) AND (\(then), id) < (\(value(b, .time)), \(c)::\(idType))))",
                    [parameter(token.lastTimeMicros, key), micros, id])
        }
    }

    /// The token position of `row` (id at column 0, key columns from `k`).
    func position(_ row: PostgresRow, keyAt k: Int) throws -> (Int64, String) {
        let id = try row.decode(String.self, 0)
        func value(_ kind: Key, _ i: Int) throws -> Int64 {
            switch kind {
            case .time: PageToken.micros(try row.decode(Date.self, i))
            case .double: Int64(bitPattern: try row.decode(Double.self, i).bitPattern)
            case .integer: try row.decode(Int64.self, i)
            case .idOnly: 0
            }
        }
        if then != nil { return (try value(key, k), "\(try value(.time, k + 1))|\(id)") }
        return (try value(key, k), id)
    }
}

extension CorrelationHandler {
    // MARK: Enum values of the filters

    static let incidentStateValues = FilterEnum(prefix: "INCIDENT_STATE_", ["DECLARED": 1, "ACKNOWLEDGED": 2, "MITIGATED": 3, "RESOLVED": 4])
    static let severityValues = FilterEnum(prefix: "SEVERITY_", ["SEV1": 1, "SEV2": 2, "SEV3": 3, "SEV4": 4, "SEV5": 5])
    static let sourceValues = FilterEnum(prefix: "INCIDENT_SOURCE_", ["MONITORING": 1, "MANUAL": 2, "EMERGING_ISSUE": 3])
    static let symptomValues = FilterEnum(prefix: "SYMPTOM_KIND_", ["SLOW": 1, "ERRORS": 2, "UNAVAILABLE": 3, "DATA": 4, "OTHER": 5])
    static let tierValues = FilterEnum(prefix: "TIER_", ["FREE": 1, "STANDARD": 2, "BUSINESS": 3, "ENTERPRISE": 4])
    static let linkStateValues = FilterEnum(["SUGGESTED": 1, "CONFIRMED": 2, "REJECTED": 3, "UNLINKED": 4])
    static let linkOriginValues = FilterEnum(["AUTOMATIC": 1, "MANUAL": 2])
    static let issueStateValues = FilterEnum(["OPEN": 1, "PROMOTED": 2, "DISMISSED": 3, "EXPLAINED": 4, "EXPIRED": 5])

    // MARK: Filterable fields (columns from migrations/0002_list_filters.sql)

    static let serviceFilter = FilterParser(domain: domain, fields: [
        "public": .bool("public"), "owner_team": .text("owner_team"),
        "aliases": .has("aliases", lowercased: true), "dependencies": .has("dependencies"),
    ])

    static let incidentFilter = FilterParser(domain: domain, fields: [
        "state": .enumeration("state", incidentStateValues), "severity": .enumeration("severity", severityValues),
        "services": .has("services"), "source": .enumeration("source", sourceValues),
        "create_time": .time("create_time"), "resolve_time": .time("resolve_time"),
        "external_reference.system": .text("coalesce(ext_system, '')"), "external_reference.id": .text("coalesce(ext_id, '')"),
        "labels": .map("labels"),
    ])

    static let linkFilter = FilterParser(domain: domain, fields: [
        "state": .enumeration("state", linkStateValues), "origin": .enumeration("origin", linkOriginValues),
        "score": .number("score"), "report": .resource("report_id", "reports"), "case": .name("case_name", "cases"),
        "customer": .name("customer", "customers"), "symptom": .enumeration("symptom", symptomValues),
        "report_receive_time": .time("report_receive_time"),
        "customer_snapshot.region": .text("snapshot_region"), "customer_snapshot.country": .text("snapshot_country"),
        "customer_snapshot.tier": .enumeration("snapshot_tier", tierValues),
        "customer_snapshot.account_partition": .text("snapshot_partition"),
        "customer_snapshot.account_number": .text("snapshot_account"),
        "customer_snapshot.white_glove": .bool("snapshot_white_glove"),
        "customer_snapshot.features": .has("snapshot_features"),
    ])

    static let issueFilter = FilterParser(domain: domain, fields: [
        "state": .enumeration("state", issueStateValues), "symptom": .enumeration("symptom", symptomValues),
        "service": .text("service"), "lift": .number("lift"), "adjusted_p_value": .number("adjusted_p"),
        "create_time": .time("create_time"),
    ])

    // MARK: Orderings

    /// The ordering named by `orderBy` (spaces collapsed; "" is the first, the default), and the
    /// normalized name for the token fingerprint.
    static func ordering(_ orderBy: String, _ choices: KeyValuePairs<String, ListOrdering>) throws -> (String, ListOrdering) {
        let normalized = orderBy.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
        if normalized.isEmpty { return (choices[choices.startIndex].key, choices[choices.startIndex].value) }
        guard let match = choices.first(where: { $0.key == normalized }) else {
            throw APIError.invalidArgument(domain: domain, field: "order_by",
                                           "must be one of " + choices.map { "\"\($0.key)\"" }.joined(separator: ", "))
        }
        return (match.key, match.value)
    }

    static let incidentOrderings: KeyValuePairs<String, ListOrdering> = [
        "create_time desc": .init(column: "create_time", key: .time, descending: true),
        "severity": .init(column: "severity", key: .integer, descending: false, then: "create_time"),
        "update_time desc": .init(column: "update_time", key: .time, descending: true),
    ]

    static let linkOrderings: KeyValuePairs<String, ListOrdering> = [
        "create_time": .init(column: "create_time", key: .time, descending: false),
        "score desc": .init(column: "score", key: .double, descending: true),
        "report_receive_time": .init(column: "report_receive_time", key: .time, descending: false),
    ]

    static let issueOrderings: KeyValuePairs<String, ListOrdering> = [
        "adjusted_p_value": .init(column: "adjusted_p", key: .double, descending: false),
        "create_time desc": .init(column: "create_time", key: .time, descending: true),
        "customer_count desc": .init(column: "customer_count", key: .integer, descending: true),
    ]

    // MARK: Paging

    /// The position `token` names, or nil for the first page; INVALID_ARGUMENT (page_token) when
    /// it is not one of ours, belongs to another query or has expired.
    func position(_ token: String, _ query: QueryFingerprint) throws -> PageToken? {
        if token.isEmpty { return nil }
        do {
            return try codec.decode(token, expecting: query)
        } catch {
            throw error.apiError(domain: domain)
        }
    }

    /// One page of `table` rows matching `filter` (plus `conditions` over further parameters),
    /// ordered by `ordering`, after `token`; and the next page's token ("" on the last page).
    static func page(
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
