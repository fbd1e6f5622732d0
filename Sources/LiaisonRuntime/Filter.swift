// The `filter` grammar of the List methods (a small AIP-160 subset), shared by the services:
//
//   filter     = [ comparison { "AND" comparison } ]
//   comparison = field op value
//   op         = "=" | "!=" | "<" | "<=" | ">" | ">=" | ":"        (":" is "has", for repeated fields)
//   value      = quoted string ("..." with \" and \\ escapes) | bare word (true, false, ENTERPRISE, 0.5)
//
// Each list method declares its fields. Parsing turns a filter into SQL conditions over constant
// column expressions with every value as a statement parameter; anything else is INVALID_ARGUMENT
// with a field violation on `filter` naming the problem (unknown field, bad value, bad operator).
import Foundation
import LiaisonStorage

/// The values of a proto enum a filter accepts: full value names and their numbers. A value may
/// be given in full (`INCIDENT_STATE_RESOLVED`) or without `prefix` (`RESOLVED`).
public struct FilterEnum: Sendable {
    /// Full proto value name -> number.
    public var values: [String: Int]
    /// Prefix that may be omitted.
    public var prefix: String
    /// Whether the column stores the number (`int`) rather than the full name (`text`).
    public var storesNumber: Bool

    /// Values given by their names without `prefix` (`["DECLARED": 1]` with "INCIDENT_STATE_").
    public init(prefix: String = "", _ shortNames: [String: Int], storesNumber: Bool = true) {
        self.values = Dictionary(uniqueKeysWithValues: shortNames.map { (prefix + $0.key, $0.value) })
        self.prefix = prefix
        self.storesNumber = storesNumber
    }

    /// Values given by their full names.
    public init(fullNames: [String: Int], prefix: String, storesNumber: Bool) {
        self.values = fullNames
        self.prefix = prefix
        self.storesNumber = storesNumber
    }

    /// The full name of `value` (full or short), or nil.
    public func fullName(_ value: String) -> String? {
        if values[value] != nil { return value }
        if values[prefix + value] != nil { return prefix + value }
        return nil
    }

    /// The parameter to compare the column with: the number or the full name.
    func parameter(_ value: String) -> (any PostgresBindable)? {
        guard let name = fullName(value) else { return nil }
        return storesNumber ? values[name]! : name
    }
}

/// How one filterable field maps to SQL. `column` is a constant SQL expression (usually a
/// column name; never built from the request).
public struct FilterField: Sendable {
    /// The field's type, which decides its operators and how values are checked.
    public enum Kind: Sendable {
        /// Text column; `=` and `!=`.
        case text
        /// Text column holding the id of a `collection/{id}` name given in full.
        case resource(collection: String)
        /// Text column holding a whole `collection/{id}` name; the value must have that form.
        case name(collection: String)
        /// Enum column (number or name, see `FilterEnum`); `=` and `!=`.
        case enumeration(FilterEnum)
        /// Boolean column; `=` and `!=` with `true` or `false`.
        case bool
        /// timestamptz column; values are RFC 3339; all comparisons.
        case time
        /// Numeric column (`double precision`, `bigint`); all comparisons.
        case number
        /// text[] column; `:` (has) only. An enum normalizes values; `lowercased` folds case.
        case has(FilterEnum?, lowercased: Bool)
        /// jsonb object of string values (a proto `map<string, string>`): the field is used as
        /// `name.<key>` with `=` and `!=`.
        case map
    }

    /// The SQL expression compared.
    public let column: String
    /// The field's type.
    public let kind: Kind

    /// A field from its column expression and kind.
    public init(column: String, kind: Kind) {
        self.column = column
        self.kind = kind
    }

    public static func text(_ c: String) -> FilterField { .init(column: c, kind: .text) }
    public static func resource(_ c: String, _ collection: String) -> FilterField { .init(column: c, kind: .resource(collection: collection)) }
    public static func name(_ c: String, _ collection: String) -> FilterField { .init(column: c, kind: .name(collection: collection)) }
    public static func enumeration(_ c: String, _ values: FilterEnum) -> FilterField { .init(column: c, kind: .enumeration(values)) }
    public static func bool(_ c: String) -> FilterField { .init(column: c, kind: .bool) }
    public static func time(_ c: String) -> FilterField { .init(column: c, kind: .time) }
    public static func number(_ c: String) -> FilterField { .init(column: c, kind: .number) }
    public static func has(_ c: String, lowercased: Bool = false) -> FilterField { .init(column: c, kind: .has(nil, lowercased: lowercased)) }
    public static func hasEnum(_ c: String, _ values: FilterEnum) -> FilterField { .init(column: c, kind: .has(values, lowercased: false)) }
    public static func map(_ c: String) -> FilterField { .init(column: c, kind: .map) }
}

/// SQL conditions (joined by AND) and their parameters, numbered from a given offset.
public struct SQLFilter: Sendable {
    /// Conditions over the declared columns, with `$n` placeholders.
    public var conditions: [String] = []
    /// The placeholders' values, in order.
    public var parameters: [any PostgresBindable] = []

    public init(conditions: [String] = [], parameters: [any PostgresBindable] = []) {
        self.conditions = conditions
        self.parameters = parameters
    }
}

/// Parses `filter` strings for one list method. Errors are INVALID_ARGUMENT in `domain` with a
/// field violation on `filter`.
public struct FilterParser: Sendable {
    /// The error domain (`liaison.intake.v1`).
    public let domain: String
    /// Filterable fields by name (`customer_snapshot.region`; a `.map` field by its prefix, `labels`).
    public let fields: [String: FilterField]

    public init(domain: String, fields: [String: FilterField]) {
        self.domain = domain
        self.fields = fields
    }

    private enum Token: Equatable {
        case word(String), string(String), op(String)
    }

    private func fail(_ why: String) -> APIError {
        APIError.invalidArgument(domain: domain, field: "filter", why)
    }

    private func tokenize(_ s: String) throws(APIError) -> [Token] {
        var out: [Token] = []
        let c = Array(s.unicodeScalars)
        var i = 0
        func isWord(_ u: Unicode.Scalar) -> Bool {
            (u >= "a" && u <= "z") || (u >= "A" && u <= "Z") || (u >= "0" && u <= "9") || u == "_" || u == "." || u == "-"
                || u == "/" || u == "+"
        }
        while i < c.count {
            let u = c[i]
            if u == " " || u == "\t" || u == "\n" { i += 1; continue }
            if u == "\"" {
                var value = String.UnicodeScalarView()
                i += 1
                var closed = false
                while i < c.count {
                    if c[i] == "\\", i + 1 < c.count { value.append(c[i + 1]); i += 2; continue }
                    if c[i] == "\"" { closed = true; i += 1; break }
                    value.append(c[i])
                    i += 1
                }
                if !closed { throw fail("unterminated string") }
                out.append(.string(String(value)))
            } else if "=:<>!".unicodeScalars.contains(u) {
                if i + 1 < c.count, c[i + 1] == "=", u != "=" && u != ":" {
                    out.append(.op(String(u) + "="))
                    i += 2
                } else if u == "!" {
                    throw fail("unexpected '!' (use !=)")
                } else {
                    out.append(.op(String(u)))
                    i += 1
                }
            } else if isWord(u) {
                var w = String.UnicodeScalarView()
                while i < c.count, isWord(c[i]) { w.append(c[i]); i += 1 }
                out.append(.word(String(w)))
            } else {
                throw fail("unexpected character '\(u)'")
            }
        }
        return out
    }

    /// The field named `name`, with the map key for `.map` fields (`labels.env` -> ("labels", "env")).
    private func field(_ name: String) -> (FilterField, String?)? {
        if let f = fields[name] {
            if case .map = f.kind { return nil }
            return (f, nil)
        }
        guard let dot = name.firstIndex(of: ".") else { return nil }
        let key = String(name[name.index(after: dot)...])
        guard let f = fields[String(name[..<dot])], case .map = f.kind, !key.isEmpty else { return nil }
        return (f, key)
    }

    /// Longest filter accepted, in bytes.
    public static let maxLength = 4096
    /// Most comparisons in one filter.
    public static let maxComparisons = 32

    /// The SQL for `filter`; parameter placeholders start at `$\(firstParameter)`. A filter longer
    /// than `maxLength` bytes or with more than `maxComparisons` comparisons is refused before
    /// any work (INVALID_ARGUMENT on `filter`), so a hostile filter cannot cost more than a small
    /// one.
    public func parse(_ filter: String, firstParameter: Int) throws(APIError) -> SQLFilter {
        guard filter.utf8.count <= Self.maxLength else { throw fail("at most \(Self.maxLength) bytes") }
        let tokens = try tokenize(filter)
        guard tokens.count <= Self.maxComparisons * 4 else { throw fail("at most \(Self.maxComparisons) comparisons") }
        var result = SQLFilter()
        var i = 0
        let known = fields.map { if case .map = $0.value.kind { "\($0.key).<key>" } else { $0.key } }.sorted().joined(separator: ", ")
        while i < tokens.count {
            if i > 0 {
                guard tokens[i] == .word("AND") else { throw fail("comparisons must be joined by AND (OR, NOT and parentheses are not supported)") }
                i += 1
                guard i < tokens.count else { throw fail("expected a comparison after AND") }
            }
            guard case .word(let name) = tokens[i] else { throw fail("expected a field name") }
            guard let (field, mapKey) = self.field(name) else { throw fail("unknown field \"\(name)\"; filterable: \(known)") }
            guard i + 1 < tokens.count, case .op(let op) = tokens[i + 1] else { throw fail("expected an operator after \(name)") }
            guard i + 2 < tokens.count else { throw fail("expected a value after \(name) \(op)") }
            let value: String
            switch tokens[i + 2] {
            case .word(let w): value = w
            case .string(let s): value = s
            case .op: throw fail("expected a value after \(name) \(op)")
            }
            i += 3
            let p = "$\(firstParameter + result.parameters.count)"
            switch field.kind {
            case .text, .resource, .name, .enumeration, .bool, .map:
                guard op == "=" || op == "!=" else { throw fail("\(name) supports = and != only, not \(op)") }
                let sqlOp = op == "=" ? "=" : "<>"
                switch field.kind {
                case .text:
                    result.parameters.append(value)
                case .resource(let collection):
                    guard let id = Self.id(of: value, collection: collection) else {
                        throw fail("\(name) must be \(collection)/{id}")
                    }
                    result.parameters.append(id)
                case .name(let collection):
                    guard Self.id(of: value, collection: collection) != nil else {
                        throw fail("\(name) must be \(collection)/{id}")
                    }
                    result.parameters.append(value)
                case .enumeration(let values):
                    guard let v = values.parameter(value) else {
                        throw fail("\(name): unknown value \"\(value)\"; one of \(values.values.keys.sorted().joined(separator: ", "))")
                    }
                    result.parameters.append(v)
                case .bool:
                    guard value == "true" || value == "false" else { throw fail("\(name) must be true or false") }
                    result.parameters.append(value == "true")
                case .map:
                    let json = try? JSONSerialization.data(withJSONObject: [mapKey ?? "": value], options: [.sortedKeys])
                    result.parameters.append(String(decoding: json ?? Data("{}".utf8), as: UTF8.self))
                    result.conditions.append(op == "=" ? "\(field.column) @> \(p)::jsonb" : "NOT (\(field.column) @> \(p)::jsonb)")
                    continue
                default: break
                }
                result.conditions.append("\(field.column) \(sqlOp) \(p)")
            case .time:
                guard ["=", "!=", "<", "<=", ">", ">="].contains(op) else { throw fail("\(name) supports comparisons, not \(op)") }
                guard let date = Self.parseTime(value) else { throw fail("\(name) must be an RFC 3339 time between 0001 and 9999 such as \"2026-11-28T10:00:00Z\"") }
                result.parameters.append(date)
                result.conditions.append("\(field.column) \(op == "!=" ? "<>" : op) \(p)::timestamptz")
            case .number:
                guard ["=", "!=", "<", "<=", ">", ">="].contains(op) else { throw fail("\(name) supports comparisons, not \(op)") }
                guard let number = Double(value), number.isFinite else { throw fail("\(name) must be a number") }
                result.parameters.append(number)
                result.conditions.append("\(field.column) \(op == "!=" ? "<>" : op) \(p)::float8")
            case .has(let values, let lowercased):
                guard op == ":" else { throw fail("\(name) is repeated: use \(name):\"value\"") }
                var v = lowercased ? value.lowercased() : value
                if let values {
                    guard let n = values.fullName(value) else {
                        throw fail("\(name): unknown value \"\(value)\"; one of \(values.values.keys.sorted().joined(separator: ", "))")
                    }
                    v = n
                }
                result.parameters.append(v)
                result.conditions.append("\(p) = ANY(\(field.column))")
            }
        }
        return result
    }

    /// The id of `collection/{id}` (a non-empty id without "/"), else nil.
    static func id(of name: String, collection: String) -> String? {
        let prefix = collection + "/"
        guard name.hasPrefix(prefix) else { return nil }
        let id = name.dropFirst(prefix.count)
        guard !id.isEmpty, !id.contains("/") else { return nil }
        return String(id)
    }

    /// An RFC 3339 time, with or without fractional seconds.
    /// An RFC 3339 time within the API's range (years 1-9999, as `RequestBounds` checks
    /// Timestamps); nil otherwise, so that no filter time reaches storage out of range.
    public static func parseTime(_ s: String) -> Date? {
        // Four-digit years only (the formatter would read "10000-01-01" as some other date).
        let u = Array(s.utf8)
        guard u.count >= 20, u[0..<4].allSatisfy({ $0 >= 48 && $0 <= 57 }), u[4] == UInt8(ascii: "-") else { return nil }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var date = f.date(from: s)
        if date == nil {
            f.formatOptions = [.withInternetDateTime]
            date = f.date(from: s)
        }
        guard let date, date.exactPostgresMicros != nil,
              (Double(RequestBounds.minTimestampSeconds)...Double(RequestBounds.maxTimestampSeconds + 1)).contains(date.timeIntervalSince1970)
        else { return nil }
        return date
    }
}
