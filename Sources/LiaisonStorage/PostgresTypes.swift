import Foundation

/// A value that can be sent as a statement parameter. Values travel in PostgreSQL's text format
/// (`bytea` in binary format), always as parameters: SQL text is never built from values.
public protocol PostgresBindable: Sendable {
    /// The text representation, or `nil` for SQL NULL.
    var postgresText: String? { get }
    /// The binary representation, if the value is sent in binary format (`bytea`: its bytes);
    /// nil to send `postgresText` instead.
    var postgresBinary: [UInt8]? { get }
}

extension PostgresBindable {
    public var postgresBinary: [UInt8]? { nil }
}

/// A value that can be decoded from a column in PostgreSQL's text format.
public protocol PostgresDecodable {
    init(postgresText: String) throws
    /// Decodes from the text format's bytes, borrowed from the result (no String in between
    /// where a type can do without one, as `ByteA` does).
    init(postgresBytes: UnsafeBufferPointer<UInt8>) throws
}

extension PostgresDecodable {
    public init(postgresBytes: UnsafeBufferPointer<UInt8>) throws {
        try self.init(postgresText: String(decoding: postgresBytes, as: UTF8.self))
    }
}

extension String: PostgresBindable, PostgresDecodable {
    public var postgresText: String? { self }
    public init(postgresText: String) { self = postgresText }
}

/// Integers travel as decimal text.
public protocol PostgresInteger: FixedWidthInteger, PostgresBindable, PostgresDecodable {}

extension PostgresInteger {
    public var postgresText: String? { String(self) }
    public init(postgresText: String) throws {
        guard let v = Self(postgresText, radix: 10) else { throw decodeError("\(Self.self)", postgresText) }
        self = v
    }
}

extension Int: PostgresInteger {}
extension Int16: PostgresInteger {}
extension Int32: PostgresInteger {}
extension Int64: PostgresInteger {}

extension Double: PostgresBindable, PostgresDecodable {
    public var postgresText: String? {
        if isNaN { return "NaN" }
        if isInfinite { return self > 0 ? "Infinity" : "-Infinity" }
        return "\(self)"
    }
    public init(postgresText: String) throws {
        switch postgresText {
        case "NaN": self = .nan
        case "Infinity": self = .infinity
        case "-Infinity": self = -.infinity
        default:
            guard let v = Double(postgresText) else { throw decodeError("Double", postgresText) }
            self = v
        }
    }
}

extension Bool: PostgresBindable, PostgresDecodable {
    public var postgresText: String? { self ? "t" : "f" }
    public init(postgresText: String) throws {
        switch postgresText {
        case "t", "true": self = true
        case "f", "false": self = false
        default: throw decodeError("Bool", postgresText)
        }
    }
}

extension UUID: PostgresBindable, PostgresDecodable {
    public var postgresText: String? { uuidString.lowercased() }
    public init(postgresText: String) throws {
        guard let v = UUID(uuidString: postgresText) else { throw decodeError("UUID", postgresText) }
        self = v
    }
}

extension Optional: PostgresBindable where Wrapped: PostgresBindable {
    public var postgresText: String? { self?.postgresText }
    public var postgresBinary: [UInt8]? { self?.postgresBinary }
}

/// Binary data: sent as `bytea` in binary format (no hex encoding on either side), read from
/// the hex text format.
public struct ByteA: PostgresBindable, PostgresDecodable, Equatable, Hashable {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var postgresBinary: [UInt8]? { bytes }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    public var postgresText: String? {
        var out = [UInt8]()
        out.reserveCapacity(2 + bytes.count * 2)
        out.append(UInt8(ascii: "\\"))
        out.append(UInt8(ascii: "x"))
        for b in bytes {
            out.append(Self.hexDigits[Int(b >> 4)])
            out.append(Self.hexDigits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public init(postgresText: String) throws {
        var text = postgresText
        self = try text.withUTF8 { try ByteA(postgresBytes: $0) }
    }

    /// Hex digit values; 0xFF for anything else.
    private static let nibbles: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in "0123456789abcdef".utf8.enumerated() { table[Int(c)] = UInt8(i) }
        for (i, c) in "ABCDEF".utf8.enumerated() { table[Int(c)] = UInt8(10 + i) }
        return table
    }()

    /// Decodes the hex text format ("\\x0a1b...") straight from the result's bytes.
    public init(postgresBytes utf8: UnsafeBufferPointer<UInt8>) throws {
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0
        else { throw decodeError("bytea (hex)", String(decoding: utf8.prefix(16), as: UTF8.self)) }
        let count = (utf8.count - 2) / 2
        var bad = false
        let table = Self.nibbles
        bytes = table.withUnsafeBufferPointer { nib in
            [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
                var i = 2
                for j in 0..<count {
                    let hi = nib[Int(utf8[i])], lo = nib[Int(utf8[i + 1])]
                    bad = bad || hi == 0xFF || lo == 0xFF
                    out[j] = hi << 4 | (lo & 0x0F)
                    i += 2
                }
                initialized = count
            }
        }
        if bad { throw decodeError("bytea (hex)", String(decoding: utf8.prefix(16), as: UTF8.self)) }
    }
}

/// A `text[]` array parameter or column.
public struct TextArray: PostgresBindable, PostgresDecodable, Equatable {
    public var values: [String]
    public init(_ values: [String]) { self.values = values }

    public var postgresText: String? {
        "{" + values.map { v in
            var s = "\""
            for ch in v.unicodeScalars {
                if ch == "\"" || ch == "\\" { s.unicodeScalars.append("\\") }
                s.unicodeScalars.append(ch)
            }
            return s + "\""
        }.joined(separator: ",") + "}"
    }

    public init(postgresText: String) throws {
        let scalars = Array(postgresText.unicodeScalars)
        guard scalars.first == "{", scalars.last == "}" else { throw decodeError("text[]", postgresText) }
        var result: [String] = []
        var i = 1
        let end = scalars.count - 1
        while i < end {
            var item = String.UnicodeScalarView()
            if scalars[i] == "\"" {
                i += 1
                while i < end, scalars[i] != "\"" {
                    if scalars[i] == "\\" { i += 1 }
                    item.append(scalars[i])
                    i += 1
                }
                i += 1  // closing quote
            } else {
                while i < end, scalars[i] != "," {
                    item.append(scalars[i])
                    i += 1
                }
            }
            result.append(String(item))
            if i < end, scalars[i] == "," { i += 1 }
        }
        values = result
    }
}

/// Timestamps travel as ISO 8601 in UTC with microseconds; sessions run with `TimeZone=UTC`.
extension Date: PostgresBindable, PostgresDecodable {
    public var postgresText: String? {
        var t = time_t(floor(timeIntervalSince1970))
        var micros = Int((timeIntervalSince1970 - floor(timeIntervalSince1970)) * 1_000_000 + 0.5)
        if micros >= 1_000_000 {
            t += 1
            micros -= 1_000_000
        }
        var tmv = tm()
        gmtime_r(&t, &tmv)
        let year = Int(tmv.tm_year) + 1900
        func pad(_ v: Int, _ w: Int) -> String {
            let s = String(v)
            return s.count >= w ? s : String(repeating: "0", count: w - s.count) + s
        }
        return "\(pad(year, 4))-\(pad(Int(tmv.tm_mon) + 1, 2))-\(pad(Int(tmv.tm_mday), 2)) "
            + "\(pad(Int(tmv.tm_hour), 2)):\(pad(Int(tmv.tm_min), 2)):\(pad(Int(tmv.tm_sec), 2))."
            + "\(pad(micros, 6))+00"
    }

    /// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]+00[:00]` as printed by a UTC session.
    public init(postgresText: String) throws {
        let u = Array(postgresText.utf8)
        func num(_ from: Int, _ len: Int) throws -> Int {
            guard from + len <= u.count else { throw decodeError("timestamptz", postgresText) }
            var v = 0
            for i in from..<(from + len) {
                let d = Int(u[i]) - 48
                guard d >= 0, d <= 9 else { throw decodeError("timestamptz", postgresText) }
                v = v * 10 + d
            }
            return v
        }
        guard u.count >= 19 else { throw decodeError("timestamptz", postgresText) }
        var tmv = tm()
        tmv.tm_year = Int32(try num(0, 4) - 1900)
        tmv.tm_mon = Int32(try num(5, 2) - 1)
        tmv.tm_mday = Int32(try num(8, 2))
        tmv.tm_hour = Int32(try num(11, 2))
        tmv.tm_min = Int32(try num(14, 2))
        tmv.tm_sec = Int32(try num(17, 2))
        var i = 19
        var fraction = 0.0
        if i < u.count, u[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            while i < u.count, u[i] >= 48, u[i] <= 57 {
                fraction += Double(u[i] - 48) * scale
                scale /= 10
                i += 1
            }
        }
        var offset = 0
        if i < u.count, u[i] == UInt8(ascii: "+") || u[i] == UInt8(ascii: "-") {
            let sign = u[i] == UInt8(ascii: "-") ? -1 : 1
            let hh = try num(i + 1, 2)
            var mm = 0
            if i + 3 < u.count, u[i + 3] == UInt8(ascii: ":") { mm = try num(i + 4, 2) }
            offset = sign * (hh * 3600 + mm * 60)
        }
        let seconds = timegm(&tmv)
        self = Date(timeIntervalSince1970: Double(seconds - offset) + fraction)
    }
}

func decodeError(_ type: String, _ text: String) -> PostgresError {
    PostgresError(.decoding, message: "cannot decode \(type) from '\(text.prefix(40))'")
}
