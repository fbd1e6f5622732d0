import Foundation

/// A half-open time interval [start, end) in epoch milliseconds (UTC); `end >= start` always holds.
public struct Interval: Hashable, Sendable, CustomStringConvertible {
    /// Inclusive start, epoch ms.
    public var start: Int64
    /// Exclusive end, epoch ms.
    public var end: Int64

    /// Creates [start, end); an `end` before `start` is clamped to `start` (empty interval).
    public init(_ start: Int64, _ end: Int64) {
        self.start = start
        self.end = Swift.max(start, end)
    }

    /// `end - start` in ms.
    public var length: Int64 { end - start }

    /// True when the interval contains no instant.
    public var isEmpty: Bool { end <= start }

    /// True when `t` lies in [start, end).
    public func contains(_ t: Int64) -> Bool { t >= start && t < end }

    /// The common part of both intervals; nil when they share no instant.
    public func intersection(_ o: Interval) -> Interval? {
        let s = Swift.max(start, o.start)
        let e = Swift.min(end, o.end)
        return s < e ? Interval(s, e) : nil
    }

    public var description: String { "[\(start), \(end))" }
}

/// Exact 128-bit helpers for products that may exceed Int64.
enum SLAWideMath {
    /// Compares a*b with c*d exactly: -1, 0 or 1.
    static func compareProducts(_ a: Int64, _ b: Int64, _ c: Int64, _ d: Int64) -> Int {
        let l = Int128(a) * Int128(b)
        let r = Int128(c) * Int128(d)
        return l < r ? -1 : (l == r ? 0 : 1)
    }

    /// floor(a*b / c) (c > 0), clamped to the Int64 range.
    static func mulDivFloor(_ a: Int64, _ b: Int64, _ c: Int64) -> Int64 {
        precondition(c > 0, "divisor must be positive")
        let p = Int128(a) * Int128(b)
        var q = p / Int128(c)
        if p % Int128(c) < 0 { q -= 1 }
        return clamp(q)
    }

    /// ceil(a*b / c) (c > 0), clamped to the Int64 range.
    static func mulDivCeil(_ a: Int64, _ b: Int64, _ c: Int64) -> Int64 {
        precondition(c > 0, "divisor must be positive")
        let p = Int128(a) * Int128(b)
        var q = p / Int128(c)
        if p % Int128(c) > 0 { q += 1 }
        return clamp(q)
    }

    /// a*b / c rounded half up (towards +infinity at exactly .5) (c > 0), clamped to the Int64 range.
    static func mulDivHalfUp(_ a: Int64, _ b: Int64, _ c: Int64) -> Int64 {
        precondition(c > 0, "divisor must be positive")
        let p = Int128(a) * Int128(b)
        let c128 = Int128(c)
        var q = p / c128
        var r = p % c128
        if r < 0 { q -= 1; r += c128 }
        if r * 2 >= c128 { q += 1 }
        return clamp(q)
    }

    static func clamp(_ v: Int128) -> Int64 {
        if v > Int128(Int64.max) { return .max }
        if v < Int128(Int64.min) { return .min }
        return Int64(v)
    }
}
