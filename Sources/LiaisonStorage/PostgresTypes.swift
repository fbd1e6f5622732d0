import Foundation

/// A value that can be sent as a statement parameter. Values travel in PostgreSQL's text format
/// (`bytea` in binary format), always as parameters: SQL text is never built from values.
public protocol PostgresBindable: Sendable {
    /// The text representation, or `nil` for SQL NULL.
    var postgresText: String? { get }
    /// The binary representation, if the value is sent in binary format (`bytea`: its bytes);
    /// nil to send `postgresText` instead.
    var postgresBinary: [UInt8]? { get }
    /// Throws when the value has no PostgreSQL representation (a Date beyond timestamptz's range).
    /// Checked for every parameter before a statement is sent, so that such a value becomes an
    /// error of that statement and never a trap.
    func checkPostgresRepresentable() throws
}

extension PostgresBindable {
    public var postgresBinary: [UInt8]? { nil }
    public func checkPostgresRepresentable() throws {}
}

/// A value that can be decoded from a column in PostgreSQL's text format.
public protocol PostgresDecodable {
    init(postgresText: String) throws
    /// Decodes from the text format's bytes, borrowed from the result (no String in between
    /// where a type can do without one, as `ByteA` does).
    init(postgresBytes: UnsafeBufferPointer<UInt8>) throws
    /// Decodes from the binary format's bytes, for results requested in binary
    /// (`PostgresConnection.query(_:_:binaryResults:)`): nothing to parse, and `bytea` arrives
    /// as its bytes instead of hex. Text, bytea, booleans, integers, double, uuid and timestamptz
    /// implement it; other types throw.
    init(postgresBinary: UnsafeBufferPointer<UInt8>) throws
}

extension PostgresDecodable {
    public init(postgresBytes: UnsafeBufferPointer<UInt8>) throws {
        try self.init(postgresText: String(decoding: postgresBytes, as: UTF8.self))
    }
    public init(postgresBinary: UnsafeBufferPointer<UInt8>) throws {
        throw PostgresError(.decoding, message: "\(Self.self) has no binary-format decoder")
    }
}

/// `u` if it holds exactly `count` bytes, the binary size of `type`; else a decoding error.
func fixedBinary(_ u: UnsafeBufferPointer<UInt8>, _ count: Int, _ type: String) throws -> UnsafeBufferPointer<UInt8> {
    guard u.count == count else {
        throw PostgresError(.decoding, message: "cannot decode \(type) from \(u.count) binary bytes")
    }
    return u
}

/// Reads a big-endian two's complement integer of 2, 4 or 8 bytes.
func bigEndianInteger(_ u: UnsafeBufferPointer<UInt8>, _ type: String) throws -> Int64 {
    guard u.count == 2 || u.count == 4 || u.count == 8 else {
        throw PostgresError(.decoding, message: "cannot decode \(type) from \(u.count) binary bytes")
    }
    var v: UInt64 = 0
    for b in u { v = v << 8 | UInt64(b) }
    let shift = UInt64(64 - 8 * u.count)
    return Int64(bitPattern: v << shift) >> shift  // sign-extend
}

extension String: PostgresBindable, PostgresDecodable {
    public var postgresText: String? { self }
    /// PostgreSQL's text cannot hold NUL, and libpq would end the value there.
    public func checkPostgresRepresentable() throws {
        if utf8.contains(0) { throw PostgresError(.client, message: "text value contains a NUL character") }
    }
    public init(postgresText: String) { self = postgresText }
    public init(postgresBinary u: UnsafeBufferPointer<UInt8>) { self = String(decoding: u, as: UTF8.self) }
}

/// Integers travel as decimal text.
public protocol PostgresInteger: FixedWidthInteger, PostgresBindable, PostgresDecodable {}

extension PostgresInteger {
    public var postgresText: String? { String(self) }
    /// int2, int4 or int8 in binary format, range-checked.
    public init(postgresBinary u: UnsafeBufferPointer<UInt8>) throws {
        let v = try bigEndianInteger(u, "\(Self.self)")
        guard let exact = Self(exactly: v) else { throw decodeError("\(Self.self)", String(v)) }
        self = exact
    }
    public init(postgresText: String) throws {
        var text = postgresText
        self = try text.withUTF8 { try Self(postgresBytes: $0) }
    }
    /// Parses the decimal digits in place (no String), with overflow checks.
    public init(postgresBytes u: UnsafeBufferPointer<UInt8>) throws {
        var i = 0
        var negative = false
        if i < u.count, u[i] == UInt8(ascii: "-") || u[i] == UInt8(ascii: "+") {
            negative = u[i] == UInt8(ascii: "-")
            i += 1
        }
        guard i < u.count else { throw decodeError("\(Self.self)", String(decoding: u, as: UTF8.self)) }
        var v: Self = 0
        while i < u.count {
            let d = Int(u[i]) - 48
            guard d >= 0, d <= 9 else { throw decodeError("\(Self.self)", String(decoding: u, as: UTF8.self)) }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (n, o2) = negative ? m.subtractingReportingOverflow(Self(d)) : m.addingReportingOverflow(Self(d))
            guard !o1, !o2 else { throw decodeError("\(Self.self)", String(decoding: u, as: UTF8.self)) }
            v = n
            i += 1
        }
        self = v
    }
}

extension Int: PostgresInteger {}
extension Int16: PostgresInteger {}
extension Int32: PostgresInteger {}
extension Int64: PostgresInteger {}

extension Double: PostgresBindable, PostgresDecodable {
    /// float8 in binary format.
    public init(postgresBinary u: UnsafeBufferPointer<UInt8>) throws {
        self = Double(bitPattern: UInt64(bitPattern: try bigEndianInteger(fixedBinary(u, 8, "Double"), "Double")))
    }
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
    public init(postgresBinary u: UnsafeBufferPointer<UInt8>) throws {
        self = try fixedBinary(u, 1, "Bool")[0] != 0
    }
    public var postgresText: String? { self ? "t" : "f" }
    public init(postgresText: String) throws {
        switch postgresText {
        case "t", "true": self = true
        case "f", "false": self = false
        default: throw decodeError("Bool", postgresText)
        }
    }
    public init(postgresBytes u: UnsafeBufferPointer<UInt8>) throws {
        switch (u.count, u.first) {
        case (1, UInt8(ascii: "t")): self = true
        case (1, UInt8(ascii: "f")): self = false
        default: try self.init(postgresText: String(decoding: u, as: UTF8.self))
        }
    }
}

extension UUID {
    /// The canonical text form in lower case (`uuidString.lowercased()`, the form every resource
    /// name and event id uses), written directly: Foundation formats `uuidString` with
    /// `snprintf`, then `lowercased()` copies it again, which was 1.5% of intake's CPU.
    public var lowercasedString: String {
        func hex(_ nibble: UInt8) -> UInt8 { nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10 }
        return withUnsafeBytes(of: uuid) { bytes in
            String(unsafeUninitializedCapacity: 36) { out in
                var o = 0
                for (i, b) in bytes.enumerated() {
                    if i == 4 || i == 6 || i == 8 || i == 10 {
                        out[o] = UInt8(ascii: "-")
                        o += 1
                    }
                    out[o] = hex(b >> 4)
                    out[o + 1] = hex(b & 0xF)
                    o += 2
                }
                return o
            }
        }
    }
}

extension UUID: PostgresBindable, PostgresDecodable {
    public var postgresText: String? { lowercasedString }
    public init(postgresBinary u: UnsafeBufferPointer<UInt8>) throws {
        _ = try fixedBinary(u, 16, "UUID")
        self = UUID(uuid: (u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]))
    }
    public init(postgresText: String) throws {
        guard let v = UUID(uuidString: postgresText) else { throw decodeError("UUID", postgresText) }
        self = v
    }
}

extension Optional: PostgresBindable where Wrapped: PostgresBindable {
    public var postgresText: String? { self?.postgresText }
    public var postgresBinary: [UInt8]? { self?.postgresBinary }
    public func checkPostgresRepresentable() throws { try self?.checkPostgresRepresentable() }
}

/// Binary data: sent as `bytea` in binary format (no hex encoding on either side), read from
/// the hex text format.
public struct ByteA: PostgresBindable, PostgresDecodable, Equatable, Hashable {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    /// bytea in binary format: the bytes themselves.
    public init(postgresBinary u: UnsafeBufferPointer<UInt8>) { bytes = Array(u) }

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

    public func checkPostgresRepresentable() throws {
        for v in values { try v.checkPostgresRepresentable() }
    }
    public var postgresText: String? {
        // Every element quoted, `"` and `\` escaped; built as UTF-8 bytes (both are ASCII, so
        // no multi-byte sequence can contain them).
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(values.reduce(2) { $0 + $1.utf8.count + 3 })
        for (i, v) in values.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\""))
            for b in v.utf8 {
                if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { out.append(UInt8(ascii: "\\")) }
                out.append(b)
            }
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
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
/// Both directions use integer calendar arithmetic (proleptic Gregorian, as PostgreSQL), without
/// libc time functions or intermediate strings.
extension Date: PostgresBindable, PostgresDecodable {
    /// timestamptz in binary format: microseconds since 2000-01-01 00:00 UTC.
    public init(postgresBinary u: UnsafeBufferPointer<UInt8>) throws {
        let since2000 = try bigEndianInteger(fixedBinary(u, 8, "timestamptz"), "timestamptz")
        // ±infinity arrive as Int64.max / Int64.min: an error, not an overflow trap.
        let (micros, overflow) = since2000.addingReportingOverflow(946_684_800 * 1_000_000)
        guard !overflow, Date.postgresMicrosRange.contains(micros) else {
            throw decodeError("timestamptz", "\(since2000) µs after 2000-01-01")
        }
        self.init(postgresMicros: micros)
    }

    /// The Date a timestamptz of `micros` microseconds since 1970-01-01 UTC decodes to (equal to
    /// what either result format gives for it).
    public init(postgresMicros micros: Int64) {
        var (seconds, fraction) = micros.quotientAndRemainder(dividingBy: 1_000_000)
        if fraction < 0 {
            seconds -= 1
            fraction += 1_000_000
        }
        self.init(unixSeconds: seconds, micros: fraction)
    }

    /// Whole microseconds since 1970-01-01 UTC, rounded to nearest: what PostgreSQL stores for
    /// this Date when it is bound. Dates outside `postgresRange` (and NaN) are clamped to its
    /// ends, never trapped on; binding one throws (`checkPostgresRepresentable`).
    public var postgresMicros: Int64 {
        guard let micros = exactPostgresMicros else {
            return timeIntervalSince1970 < 0 ? Date.postgresMicrosRange.lowerBound : Date.postgresMicrosRange.upperBound
        }
        return micros
    }

    /// Whole microseconds since 1970-01-01 UTC, or nil when the Date is outside `postgresRange`
    /// (or not a number).
    public var exactPostgresMicros: Int64? {
        guard let micros = Int64(exactly: (timeIntervalSince1970 * 1_000_000).rounded()),
              Date.postgresMicrosRange.contains(micros) else { return nil }
        return micros
    }

    /// The instants this layer stores: 0001-01-01T00:00:00Z up to the end of year 99999, in
    /// microseconds since 1970 (PostgreSQL goes on to year 294276, which no longer fits 1970-based
    /// Int64 microseconds). Years before 1 would need PostgreSQL's "BC" form, which nothing here
    /// writes.
    public static let postgresMicrosRange: ClosedRange<Int64> =
        (CivilDate.days(year: 1, month: 1, day: 1) * 86_400_000_000)...(CivilDate.days(year: 100_000, month: 1, day: 1) * 86_400_000_000 - 1)

    public func checkPostgresRepresentable() throws {
        guard exactPostgresMicros != nil else {
            throw PostgresError(.client, message: "timestamp \(timeIntervalSince1970) s since 1970 is outside the storable range (years 1 to 99999)")
        }
    }

    /// The instant `micros` (0 ..< 1,000,000) after `unixSeconds`, built the same way for both
    /// formats so that they decode to equal Dates.
    init(unixSeconds: Int64, micros: Int64) {
        self.init(timeIntervalSince1970: Double(unixSeconds) + Double(micros) / 1_000_000)
    }
    public var postgresText: String? {
        let micros = postgresMicros
        var seconds = micros / 1_000_000
        var fraction = micros % 1_000_000
        if fraction < 0 {
            fraction += 1_000_000
            seconds -= 1
        }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let (year, month, day) = CivilDate.civil(fromDays: days)
        // Four year digits, more after 9999 (as PostgreSQL prints them; the parser below reads
        // both). Years before 1 would need PostgreSQL's "BC" form, which nothing here stores.
        var yearWidth = 4
        var limit: Int64 = 10_000
        while abs(year) >= limit, yearWidth < 7 {
            yearWidth += 1
            limit *= 10
        }
        let b = yearWidth - 4
        return String(unsafeUninitializedCapacity: 29 + b) { out in
            func put(_ value: Int64, _ width: Int, at start: Int) {
                var v = value
                for k in stride(from: start + width - 1, through: start, by: -1) {
                    out[k] = UInt8(48 + v % 10)
                    v /= 10
                }
            }
            put(abs(year), yearWidth, at: 0); out[4 + b] = UInt8(ascii: "-")
            put(month, 2, at: 5 + b); out[7 + b] = UInt8(ascii: "-")
            put(day, 2, at: 8 + b); out[10 + b] = UInt8(ascii: " ")
            put(secondOfDay / 3600, 2, at: 11 + b); out[13 + b] = UInt8(ascii: ":")
            put(secondOfDay / 60 % 60, 2, at: 14 + b); out[16 + b] = UInt8(ascii: ":")
            put(secondOfDay % 60, 2, at: 17 + b); out[19 + b] = UInt8(ascii: ".")
            put(fraction, 6, at: 20 + b)
            out[26 + b] = UInt8(ascii: "+"); out[27 + b] = UInt8(ascii: "0"); out[28 + b] = UInt8(ascii: "0")
            return 29 + b
        }
    }

    /// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]+00[:00]` as printed by a UTC session.
    public init(postgresText: String) throws {
        var text = postgresText
        self = try text.withUTF8 { try Date(postgresBytes: $0) }
    }

    /// Parses the text format in place.
    public init(postgresBytes u: UnsafeBufferPointer<UInt8>) throws {
        func fail() -> PostgresError { decodeError("timestamptz", String(decoding: u, as: UTF8.self)) }
        func num(_ from: Int, _ len: Int) throws -> Int64 {
            guard from + len <= u.count else { throw fail() }
            var v: Int64 = 0
            for i in from..<(from + len) {
                let d = Int64(u[i]) - 48
                guard d >= 0, d <= 9 else { throw fail() }
                v = v * 10 + d
            }
            return v
        }
        // Years have four digits or more (10000-01-01 ...); `b` shifts the fixed positions.
        var yearDigits = 4
        while yearDigits < u.count, yearDigits < 7, u[yearDigits] != UInt8(ascii: "-") { yearDigits += 1 }
        let b = yearDigits - 4
        guard u.count >= 19 + b, u[4 + b] == UInt8(ascii: "-"), u[7 + b] == UInt8(ascii: "-"),
              u[13 + b] == UInt8(ascii: ":"), u[16 + b] == UInt8(ascii: ":")
        else { throw fail() }
        let days = CivilDate.days(year: try num(0, yearDigits), month: try num(5 + b, 2), day: try num(8 + b, 2))
        var seconds = days * 86_400 + (try num(11 + b, 2)) * 3600 + (try num(14 + b, 2)) * 60 + (try num(17 + b, 2))
        var i = 19 + b
        var micros: Int64 = 0
        if i < u.count, u[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < u.count, u[i] >= 48, u[i] <= 57 {
                if digits < 6 { micros = micros * 10 + Int64(u[i] - 48) }
                digits += 1
                i += 1
            }
            for _ in digits..<max(digits, 6) { micros *= 10 }
        }
        if i < u.count, u[i] == UInt8(ascii: "+") || u[i] == UInt8(ascii: "-") {
            let sign: Int64 = u[i] == UInt8(ascii: "-") ? -1 : 1
            let hh = try num(i + 1, 2)
            var mm: Int64 = 0
            var ss: Int64 = 0
            if i + 3 < u.count, u[i + 3] == UInt8(ascii: ":") { mm = try num(i + 4, 2) }
            if i + 6 < u.count, u[i + 6] == UInt8(ascii: ":") { ss = try num(i + 7, 2) }
            seconds -= sign * (hh * 3600 + mm * 60 + ss)
        }
        self.init(unixSeconds: seconds, micros: micros)
    }
}

/// Days since 1970-01-01 and back, proleptic Gregorian (Howard Hinnant's algorithms).
enum CivilDate {
    static func days(year y0: Int64, month m: Int64, day d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays z0: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}

func decodeError(_ type: String, _ text: String) -> PostgresError {
    PostgresError(.decoding, message: "cannot decode \(type) from '\(text.prefix(40))'")
}
