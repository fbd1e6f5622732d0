// Keyset page tokens (shared by the services) for lists ordered by (sort key, id): the sort key
// is a time in microseconds or any other 64-bit key (a number, a Double's bit pattern), the id a
// string that may itself carry a secondary key. A token is an opaque URL-safe base64 string
// of a small versioned payload signed with HMAC-SHA-256: it carries the sort keys of the last item
// returned and a fingerprint of the query, so a token cannot be forged, altered, or replayed
// against another query (each of these is INVALID_ARGUMENT, reason INVALID_PAGE_TOKEN).
import Foundation
import LiaisonBytes
import GRPCProtobuf

/// Fingerprint of what a page token may be used with: the list method's collection, `parent`,
/// `filter` and `order_by` (`PageCursor.query_fingerprint`). 16 bytes of SHA-256 over the
/// length-prefixed fields.
public struct QueryFingerprint: Hashable, Sendable {
    /// The fingerprint bytes.
    public let bytes: [UInt8]

    /// The fingerprint of a list query. `collection` names the list (e.g. "reports", "cases") so
    /// a token of one list method is refused by another. `filter` and `orderBy` are taken as sent;
    /// callers that want "a = 1 AND b = 2" and "b = 2 AND a = 1" to share tokens should pass a
    /// canonical form.
    public init(collection: String, parent: String = "", filter: String, orderBy: String) {
        var h = SHA256()
        for field in [collection, parent, filter, orderBy] {
            let utf8 = Array(field.utf8)
            var length: [UInt8] = []
            length.appendBigEndian(UInt32(clamping: utf8.count))
            h.update(length)
            h.update(utf8)
        }
        bytes = Array(h.finalize().prefix(16))
    }

    /// Wraps decoded bytes.
    public init(bytes: [UInt8]) {
        self.bytes = bytes
    }
}

/// The decoded content of a page token: the position after which the next page starts.
public struct PageToken: Hashable, Sendable {
    /// The query the token belongs to.
    public var query: QueryFingerprint
    /// Sort time of the last item returned, in microseconds since the Unix epoch (PostgreSQL
    /// timestamp precision, so the key round-trips exactly).
    public var lastTimeMicros: Int64
    /// Resource id of the last item returned (the tiebreak key).
    public var lastId: String
    /// When the token stops being accepted, microseconds since the epoch; `nil` for never.
    public var expireTimeMicros: Int64?

    /// Creates the value from its fields.
    public init(query: QueryFingerprint, lastTimeMicros: Int64, lastId: String, expireTimeMicros: Int64? = nil) {
        self.query = query
        self.lastTimeMicros = lastTimeMicros
        self.lastId = lastId
        self.expireTimeMicros = expireTimeMicros
    }

    /// Builds a token from a `Date` (rounded to the microsecond).
    public init(query: QueryFingerprint, lastTime: Date, lastId: String, expireTime: Date? = nil) {
        self.init(query: query, lastTimeMicros: Self.micros(lastTime), lastId: lastId,
                  expireTimeMicros: expireTime.map(Self.micros))
    }

    /// The last sort time as a `Date`.
    public var lastTime: Date { Date(timeIntervalSince1970: Double(lastTimeMicros) / 1_000_000) }

    /// Microseconds since the epoch of `date`, rounded.
    public static func micros(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
    }

    /// Whether an item with keys (`timeMicros`, `id`) comes after this position in a list ordered
    /// by (time, id), descending or ascending: the keyset predicate the repository also writes in
    /// SQL as `(t, id) < ($1, $2)` (descending) or `(t, id) > ($1, $2)` (ascending).
    public func precedes(timeMicros: Int64, id: String, descending: Bool) -> Bool {
        descending ? (timeMicros, id) < (lastTimeMicros, lastId) : (timeMicros, id) > (lastTimeMicros, lastId)
    }
}

/// Why a page token was refused. All map to INVALID_ARGUMENT on field `page_token` with
/// ErrorInfo reason INVALID_PAGE_TOKEN.
public enum PageTokenError: Error, Hashable, Sendable {
    /// Not base64url, or a payload of the wrong shape.
    case malformed
    /// A payload version this server does not know.
    case unsupportedVersion(UInt8)
    /// The signature does not match: altered, or made with another key.
    case badSignature
    /// Issued for a different collection, parent, filter or order_by.
    case queryMismatch
    /// Past its expiry time.
    case expired

    /// The BadRequest violation for the handler.
    public var fieldViolation: APIError.FieldViolation {
        let why = switch self {
        case .malformed: "is not a page token issued by this service"
        case .unsupportedVersion: "was issued by an incompatible server version; restart the listing"
        case .badSignature: "is not a page token issued by this service (signature mismatch)"
        case .queryMismatch: "was issued for a different filter, order_by or parent; restart the listing"
        case .expired: "has expired; restart the listing"
        }
        return APIError.FieldViolation("page_token", why)
    }

    /// INVALID_ARGUMENT in `domain`: ErrorInfo reason INVALID_PAGE_TOKEN and the violation.
    public func apiError(domain: String) -> APIError {
        let v = fieldViolation
        return APIError(GoogleRPCStatus(code: .invalidArgument, message: "\(v.field): \(v.description)", details: [
            .errorInfo(reason: "INVALID_PAGE_TOKEN", domain: domain, metadata: [:]),
            .badRequest(violations: [.init(field: v.field, description: v.description)]),
        ]))
    }
}

/// Encodes and decodes signed page tokens. All replicas of a service must share `key`.
public struct PageTokenCodec: Sendable {
    /// Current payload version.
    public static let version: UInt8 = 1
    /// Bytes of the HMAC kept in the token.
    public static let macBytes = 16

    private let key: [UInt8]

    /// A codec signing with `key` (at least 16 bytes of secret, from configuration).
    public init(key: [UInt8]) {
        precondition(key.count >= 16, "page token key must be at least 16 bytes")
        self.key = key
    }

    /// The opaque token string: base64url (no padding) of
    /// version(1) | query fingerprint(16) | last time µs(8) | expire time µs(8, 0 = never) |
    /// id length(2) | id (UTF-8) | HMAC-SHA-256 truncated to 16 bytes.
    public func encode(_ token: PageToken) -> String {
        var payload: [UInt8] = [Self.version]
        payload += token.query.bytes
        payload.appendBigEndian(token.lastTimeMicros)
        payload.appendBigEndian(token.expireTimeMicros ?? 0)
        let id = Array(token.lastId.utf8)
        payload.appendBigEndian(UInt16(clamping: id.count))
        payload += id.prefix(Int(UInt16.max))
        payload += HMACSHA256.mac(key: key, message: payload).prefix(Self.macBytes)
        return Base64URL.encode(payload)
    }

    /// Decodes `string`, checking signature, query and expiry (at `now`).
    public func decode(_ string: String, expecting query: QueryFingerprint,
                       now: Date = Date()) throws(PageTokenError) -> PageToken {
        guard let bytes = Base64URL.decode(string), bytes.count >= 1 + 16 + 8 + 8 + 2 + Self.macBytes else {
            throw .malformed
        }
        let payload = Array(bytes.dropLast(Self.macBytes))
        let mac = Array(bytes.suffix(Self.macBytes))
        let expected = Array(HMACSHA256.mac(key: key, message: payload).prefix(Self.macBytes))
        guard HMACSHA256.constantTimeEquals(mac, expected) else { throw .badSignature }
        guard payload[0] == Self.version else { throw .unsupportedVersion(payload[0]) }
        var reader = ByteReader(bytes: payload, offset: 1)
        guard let fingerprint = reader.bytes(16), let time = reader.u64(), let expire = reader.u64(),
              let idLength = reader.u16(), let idBytes = reader.bytes(Int(idLength)), reader.remaining == 0,
              let id = String(validating: idBytes, as: UTF8.self)
        else { throw .malformed }
        guard fingerprint == query.bytes else { throw .queryMismatch }
        let token = PageToken(query: QueryFingerprint(bytes: fingerprint), lastTimeMicros: Int64(bitPattern: time),
                              lastId: id, expireTimeMicros: expire == 0 ? nil : Int64(bitPattern: expire))
        if let e = token.expireTimeMicros, PageToken.micros(now) >= e { throw .expired }
        return token
    }
}

/// URL-safe base64 without padding (RFC 4648 §5), strict on decode.
public enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let reverse: [Int8] = {
        var table = [Int8](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = Int8(i) }
        return table
    }()

    /// Encodes without padding.
    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(v >> 18 & 63)], alphabet[Int(v >> 12 & 63)], alphabet[Int(v >> 6 & 63)],
                    alphabet[Int(v & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let v = UInt32(bytes[i]) << 16
            out += [alphabet[Int(v >> 18 & 63)], alphabet[Int(v >> 12 & 63)]]
        } else if rest == 2 {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [alphabet[Int(v >> 18 & 63)], alphabet[Int(v >> 12 & 63)], alphabet[Int(v >> 6 & 63)]]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes unpadded base64url; `nil` on any other character, padding, an impossible length or
    /// non-zero trailing bits (so each byte string has exactly one encoding).
    public static func decode(_ string: String) -> [UInt8]? {
        let chars = Array(string.utf8)
        guard chars.count % 4 != 1 else { return nil }
        var values: [UInt32] = []
        values.reserveCapacity(chars.count)
        for c in chars {
            let v = reverse[Int(c)]
            guard v >= 0 else { return nil }
            values.append(UInt32(v))
        }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count * 3 / 4)
        var i = 0
        while i + 4 <= values.count {
            let v = values[i] << 18 | values[i + 1] << 12 | values[i + 2] << 6 | values[i + 3]
            out += [UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
            i += 4
        }
        let rest = values.count - i
        if rest == 2 {
            guard values[i + 1] & 0x0f == 0 else { return nil }
            out.append(UInt8((values[i] << 2 | values[i + 1] >> 4) & 0xff))
        } else if rest == 3 {
            guard values[i + 2] & 0x03 == 0 else { return nil }
            let v = values[i] << 18 | values[i + 1] << 12 | values[i + 2] << 6
            out += [UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff)]
        }
        return out
    }
}

extension PageToken {
    /// The opaque token string for this position (see `PageTokenCodec.encode(_:)`).
    public func encoded(using codec: PageTokenCodec) -> String {
        codec.encode(self)
    }

    /// Decodes and checks a token string (see `PageTokenCodec.decode(_:expecting:now:)`).
    public static func decode(_ string: String, using codec: PageTokenCodec, expecting query: QueryFingerprint,
                              now: Date = Date()) throws(PageTokenError) -> PageToken {
        try codec.decode(string, expecting: query, now: now)
    }
}
