// SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104) in pure Swift, plus the request fingerprint
// used for idempotency (moved from intake; page tokens sign with the HMAC). No crypto library.

/// SHA-256 message digest (FIPS 180-4), streaming.
///
/// ```swift
/// var h = SHA256()
/// h.update("abc".utf8)
/// let digest = h.finalize()   // 32 bytes
/// ```
public struct SHA256: Sendable {
    /// Digest length in bytes.
    public static let digestByteCount = 32
    /// Block length in bytes.
    public static let blockByteCount = 64

    private static let k: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]

    private var state: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19
    )
    private var buffer: [UInt8] = []
    private var totalBytes: UInt64 = 0

    /// A fresh hasher.
    public init() {
        buffer.reserveCapacity(Self.blockByteCount)
    }

    /// Feeds bytes into the hash.
    public mutating func update<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        // Fast path: whole blocks straight from contiguous storage.
        let handled: Bool? = bytes.withContiguousStorageIfAvailable { buffer -> Bool in
            var offset = 0
            while offset < buffer.count {
                if buffer.isEmpty { break }
                if self.buffer.isEmpty && buffer.count - offset >= Self.blockByteCount {
                    compress(UnsafeBufferPointer(rebasing: buffer[offset ..< offset + Self.blockByteCount]))
                    offset += Self.blockByteCount
                    totalBytes &+= UInt64(Self.blockByteCount)
                } else {
                    let take = min(Self.blockByteCount - self.buffer.count, buffer.count - offset)
                    self.buffer.append(contentsOf: buffer[offset ..< offset + take])
                    offset += take
                    totalBytes &+= UInt64(take)
                    if self.buffer.count == Self.blockByteCount {
                        compress(self.buffer)
                        self.buffer.removeAll(keepingCapacity: true)
                    }
                }
            }
            return true
        }
        if handled == true { return }
        for byte in bytes {
            buffer.append(byte)
            totalBytes &+= 1
            if buffer.count == Self.blockByteCount {
                compress(buffer)
                buffer.removeAll(keepingCapacity: true)
            }
        }
    }

    /// Finishes the hash and returns the 32-byte digest. The hasher should not be used afterwards.
    public mutating func finalize() -> [UInt8] {
        let bitLength = totalBytes &* 8
        var tail = buffer
        tail.append(0x80)
        while tail.count % Self.blockByteCount != 56 { tail.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) { tail.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
        var offset = 0
        while offset < tail.count {
            compress(tail[offset ..< offset + Self.blockByteCount])
            offset += Self.blockByteCount
        }
        buffer.removeAll()
        var out: [UInt8] = []
        out.reserveCapacity(Self.digestByteCount)
        for word in [state.0, state.1, state.2, state.3, state.4, state.5, state.6, state.7] {
            out.append(UInt8(truncatingIfNeeded: word >> 24))
            out.append(UInt8(truncatingIfNeeded: word >> 16))
            out.append(UInt8(truncatingIfNeeded: word >> 8))
            out.append(UInt8(truncatingIfNeeded: word))
        }
        return out
    }

    /// One-shot digest of `bytes`.
    public static func hash<S: Sequence>(_ bytes: S) -> [UInt8] where S.Element == UInt8 {
        var h = SHA256()
        h.update(bytes)
        return h.finalize()
    }

    /// One-shot digest of a string's UTF-8 bytes.
    public static func hash(string: String) -> [UInt8] {
        hash(Array(string.utf8))
    }

    @inline(__always)
    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 &- n)) }

    private mutating func compress<C: Collection>(_ block: C) where C.Element == UInt8, C.Index == Int {
        var w = [UInt32](repeating: 0, count: 64)
        let base = block.startIndex
        for i in 0 ..< 16 {
            let j = base + i * 4
            w[i] = UInt32(block[j]) << 24 | UInt32(block[j + 1]) << 16 | UInt32(block[j + 2]) << 8 | UInt32(block[j + 3])
        }
        for i in 16 ..< 64 {
            let s0 = Self.rotr(w[i - 15], 7) ^ Self.rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
            let s1 = Self.rotr(w[i - 2], 17) ^ Self.rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
            w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
        }
        var (a, b, c, d, e, f, g, h) = state
        for i in 0 ..< 64 {
            let s1 = Self.rotr(e, 6) ^ Self.rotr(e, 11) ^ Self.rotr(e, 25)
            let ch = (e & f) ^ (~e & g)
            let t1 = h &+ s1 &+ ch &+ Self.k[i] &+ w[i]
            let s0 = Self.rotr(a, 2) ^ Self.rotr(a, 13) ^ Self.rotr(a, 22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ maj
            h = g; g = f; f = e; e = d &+ t1
            d = c; c = b; b = a; a = t1 &+ t2
        }
        state = (state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d,
                 state.4 &+ e, state.5 &+ f, state.6 &+ g, state.7 &+ h)
    }
}

/// HMAC-SHA-256 (RFC 2104), used to sign page tokens.
public enum HMACSHA256 {
    /// The 32-byte MAC of `message` under `key`.
    public static func mac(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var k = key.count > SHA256.blockByteCount ? SHA256.hash(key) : key
        k += [UInt8](repeating: 0, count: SHA256.blockByteCount - k.count)
        var inner = SHA256()
        inner.update(k.map { $0 ^ 0x36 })
        inner.update(message)
        let innerDigest = inner.finalize()
        var outer = SHA256()
        outer.update(k.map { $0 ^ 0x5c })
        outer.update(innerDigest)
        return outer.finalize()
    }

    /// Compares two MACs in time independent of where they differ.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0 ..< a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}

/// Lower-case hexadecimal text of bytes, e.g. a digest.
public func hexString<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Fingerprint of a mutating request for idempotency: a retry with the same `request_id` must
/// carry the same fingerprint, otherwise the call fails with ALREADY_EXISTS
/// (`REQUEST_ID_REUSED`).
///
/// The handler passes the request's canonical bytes (deterministic protobuf serialization with
/// `request_id` cleared). The method name is hashed in too, length-prefixed, so that the same
/// `request_id` used for two different methods never compares equal.
public struct RequestFingerprint: Hashable, Sendable, CustomStringConvertible {
    /// The SHA-256 digest (32 bytes).
    public let digest: [UInt8]

    /// Fingerprint of `canonicalBytes` for the RPC `method` (e.g. "liaison.intake.v1.IntakeService/SubmitReport").
    public init(method: String, canonicalBytes: [UInt8]) {
        var h = SHA256()
        let name = Array(method.utf8)
        let n = UInt32(truncatingIfNeeded: name.count)
        h.update([UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)])
        h.update(name)
        h.update(canonicalBytes)
        digest = h.finalize()
    }

    /// Wraps a stored digest (e.g. read back from the idempotency table).
    public init(digest: [UInt8]) {
        self.digest = digest
    }

    /// Lower-case hex of the digest.
    public var hex: String { hexString(digest) }

    public var description: String { hex }
}
