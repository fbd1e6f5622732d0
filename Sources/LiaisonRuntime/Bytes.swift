// Big-endian byte helpers for small binary formats (page tokens, MinHash fingerprints).

extension Array where Element == UInt8 {
    /// Appends `value` in big-endian byte order.
    public mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        var v = value.bigEndian
        Swift.withUnsafeBytes(of: &v) { append(contentsOf: $0) }
    }
}

/// Reads big-endian integers from a byte array; `nil` past the end.
public struct ByteReader {
    /// The bytes read from.
    public let bytes: [UInt8]
    /// Position of the next read.
    public var offset: Int

    /// A reader of `bytes` starting at `offset`.
    public init(bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    /// Bytes left to read.
    public var remaining: Int { bytes.count - offset }

    /// Reads one big-endian integer.
    public mutating func read<T: FixedWidthInteger>(_: T.Type) -> T? {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { return nil }
        var v: T = 0
        for i in 0 ..< size { v = v << 8 | T(bytes[offset + i]) }
        offset += size
        return v
    }

    public mutating func u8() -> UInt8? { read(UInt8.self) }
    public mutating func u16() -> UInt16? { read(UInt16.self) }
    public mutating func u32() -> UInt32? { read(UInt32.self) }
    public mutating func u64() -> UInt64? { read(UInt64.self) }

    /// Reads `n` raw bytes.
    public mutating func bytes(_ n: Int) -> [UInt8]? {
        guard n >= 0, remaining >= n else { return nil }
        defer { offset += n }
        return Array(bytes[offset ..< offset + n])
    }
}
