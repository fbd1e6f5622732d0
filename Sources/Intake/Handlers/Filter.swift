// The `filter` grammar of the List methods (a small AIP-160 subset):
//
//   filter     = [ comparison { "AND" comparison } ]
//   comparison = field op value
//   op         = "=" | "!=" | "<" | "<=" | ">" | ">=" | ":"        (":" is "has", for repeated fields)
//   value      = quoted string ("..." with \" and \\ escapes) | bare word (true, false, ENTERPRISE)
//
// Each list method declares its fields. Parsing turns a filter into SQL conditions over constant
// column names with every value as a statement parameter; anything else is INVALID_ARGUMENT on
// field `filter`.
import Foundation
import LiaisonStorage

/// How one filterable field maps to SQL.
struct FilterField: Sendable {
    enum Kind: Sendable {
        /// Text column; `=` and `!=`.
        case text
        /// Text column holding the id of a `collection/{id}` name given in full.
        case resource(collection: String)
        /// Text column holding a proto enum value name; values may omit `prefix`.
        case enumeration(names: [String], prefix: String)
        /// Boolean column.
        case bool
        /// timestamptz column; values are RFC 3339; all comparisons.
        case time
        /// text[] column; `:` (has) only. `names` and `prefix` normalize enum values if given.
        case has(names: [String], prefix: String)
    }
    let column: String
    let kind: Kind

    static func text(_ c: String) -> FilterField { .init(column: c, kind: .text) }
    static func resource(_ c: String, _ collection: String) -> FilterField { .init(column: c, kind: .resource(collection: collection)) }
    static func enumeration<E: ContractEnum>(_ c: String, _ type: E.Type, prefix: String) -> FilterField {
        .init(column: c, kind: .enumeration(names: E.known.map(\.protoName), prefix: prefix))
    }
    static func bool(_ c: String) -> FilterField { .init(column: c, kind: .bool) }
    static func time(_ c: String) -> FilterField { .init(column: c, kind: .time) }
    static func has(_ c: String) -> FilterField { .init(column: c, kind: .has(names: [], prefix: "")) }
    static func hasEnum<E: ContractEnum>(_ c: String, _ type: E.Type, prefix: String) -> FilterField {
        .init(column: c, kind: .has(names: E.known.map(\.protoName), prefix: prefix))
    }
}

/// SQL conditions (joined by AND) and their parameters, numbered from a given offset.
struct SQLFilter {
    var conditions: [String] = []
    var parameters: [any PostgresBindable] = []
}

/// Parses `filter` strings for one list method.
struct FilterParser {
    let fields: [String: FilterField]

    private enum Token: Equatable {
        case word(String), string(String), op(String)
    }

    private func fail(_ why: String) -> FieldViolation {
        FieldViolation(field: "filter", description: why)
    }

    private func tokenize(_ s: String) throws(FieldViolation) -> [Token] {
        var out: [Token] = []
        let c = Array(s.unicodeScalars)
        var i = 0
        func isWord(_ u: Unicode.Scalar) -> Bool {
            (u >= "a" && u <= "z") || (u >= "A" && u <= "Z") || (u >= "0" && u <= "9") || u == "_" || u == "." || u == "-"
                || u == "/"
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

    /// The SQL for `filter`; parameter placeholders start at `$\(firstParameter)`.
    func parse(_ filter: String, firstParameter: Int) throws(FieldViolation) -> SQLFilter {
        let tokens = try tokenize(filter)
        var result = SQLFilter()
        var i = 0
        let known = fields.keys.sorted().joined(separator: ", ")
        while i < tokens.count {
            if i > 0 {
                guard tokens[i] == .word("AND") else { throw fail("comparisons must be joined by AND (OR, NOT and parentheses are not supported)") }
                i += 1
            }
            guard case .word(let name) = tokens[i] else { throw fail("expected a field name") }
            guard let field = fields[name] else { throw fail("unknown field \"\(name)\"; filterable: \(known)") }
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
            case .text, .resource, .enumeration, .bool:
                guard op == "=" || op == "!=" else { throw fail("\(name) supports = and != only") }
                let sqlOp = op == "=" ? "=" : "<>"
                switch field.kind {
                case .text:
                    result.parameters.append(value)
                case .resource(let collection):
                    guard let id = ResourceName.id(of: value, collection: collection) else {
                        throw fail("\(name) must be \(collection)/{id}")
                    }
                    result.parameters.append(id)
                case .enumeration(let names, let prefix):
                    guard let v = normalize(value, names: names, prefix: prefix) else {
                        throw fail("\(name): unknown value \"\(value)\"")
                    }
                    result.parameters.append(v)
                case .bool:
                    guard value == "true" || value == "false" else { throw fail("\(name) must be true or false") }
                    result.parameters.append(value == "true")
                default: break
                }
                result.conditions.append("\(field.column) \(sqlOp) \(p)")
            case .time:
                guard ["=", "!=", "<", "<=", ">", ">="].contains(op) else { throw fail("\(name) supports comparisons, not \(op)") }
                guard let date = parseTime(value) else { throw fail("\(name) must be an RFC 3339 time such as \"2026-11-28T10:00:00Z\"") }
                result.parameters.append(date)
                result.conditions.append("\(field.column) \(op == "!=" ? "<>" : op) \(p)::timestamptz")
            case .has(let names, let prefix):
                guard op == ":" else { throw fail("\(name) is repeated: use \(name):\"value\"") }
                var v = value
                if !names.isEmpty {
                    guard let n = normalize(value, names: names, prefix: prefix) else {
                        throw fail("\(name): unknown value \"\(value)\"")
                    }
                    v = n
                }
                result.parameters.append(v)
                result.conditions.append("\(p) = ANY(\(field.column))")
            }
        }
        return result
    }

    private func normalize(_ value: String, names: [String], prefix: String) -> String? {
        if names.contains(value) { return value }
        if names.contains(prefix + value) { return prefix + value }
        return nil
    }

    private func parseTime(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: s)
    }
}

extension FieldViolation: Error {}
