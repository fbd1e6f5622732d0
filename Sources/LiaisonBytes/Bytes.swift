// Big-endian byte helpers for small binary formats (page tokens, MinHash fingerprints).

extension Array where Element == UInt8 {
    /// Appends `value` in big-endian byte order.
    public mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        var v = value.bigEndian
        Swift.withUnsafeBytes(of: &v) { append(contentsOf: $0) }
    }
}

/// Reads big-endian integers from a byte array or a slice of one; `nil` past the end. Inlinable,
/// so that callers in other modules get it specialized (a generic call per byte otherwise: it
/// was 7% of intake's CPU when it decoded every duplicate candidate's fingerprint).
public struct ByteReader {
    /// The bytes read from (positions are the slice's indices).
    public let bytes: ArraySlice<UInt8>
    /// Position of the next read.
    public var offset: Int

    /// A reader of `bytes` starting at `offset`.
    @inlinable
    public init(bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes[...]
        self.offset = offset
    }

    /// A reader of `bytes` from its start, without copying them.
    @inlinable
    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.offset = bytes.startIndex
    }

    /// Bytes left to read.
    @inlinable
    public var remaining: Int { bytes.endIndex - offset }

    /// Reads one big-endian integer.
    @inlinable
    public mutating func read<T: FixedWidthInteger>(_: T.Type) -> T? {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { return nil }
        var v: T = 0
        for i in 0 ..< size { v = v << 8 | T(bytes[offset + i]) }
        offset += size
        return v
    }

    @inlinable public mutating func u8() -> UInt8? { read(UInt8.self) }
    @inlinable public mutating func u16() -> UInt16? { read(UInt16.self) }
    @inlinable public mutating func u32() -> UInt32? { read(UInt32.self) }
    @inlinable public mutating func u64() -> UInt64? { read(UInt64.self) }

    /// The positions of the next `n` bytes, skipping them (nothing copied).
    @inlinable
    public mutating func range(_ n: Int) -> Range<Int>? {
        guard n >= 0, remaining >= n else { return nil }
        defer { offset += n }
        return offset ..< offset + n
    }

    /// Reads `n` raw bytes.
    @inlinable
    public mutating func bytes(_ n: Int) -> [UInt8]? {
        range(n).map { Array(bytes[$0]) }
    }
}
