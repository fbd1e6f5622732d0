import Foundation
import LiaisonRPC
#if canImport(Glibc)
import Glibc
#endif

/// Version 4 (random) UUIDs drawn from a per-thread buffer of kernel randomness (`/dev/urandom`,
/// kept open), refilled 4 KiB at a time. Foundation's `UUID()` opens and reads `/dev/urandom` for every UUID,
/// which showed as 4% of intake's CPU time (several ids per accepted report). Not fork-safe: the
/// services never fork.
public enum RandomUUID {
    private final class Pool {
        var bytes = [UInt8](repeating: 0, count: 4096)
        var next = 4096
    }

    private static let pools = PerThread { Pool() }

    private static let urandom: Int32 = {
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        precondition(fd >= 0, "cannot open /dev/urandom: \(errno)")
        return fd
    }()

    /// A new random UUID (RFC 9562 version 4).
    public static func make() -> UUID {
        let pool = pools.value
        if pool.next + 16 > pool.bytes.count {
            pool.bytes.withUnsafeMutableBytes { buffer in
                var filled = 0
                while filled < buffer.count {
                    let n = read(urandom, buffer.baseAddress! + filled, buffer.count - filled)
                    if n > 0 { filled += n } else if n == 0 || errno != EINTR { fatalError("reading /dev/urandom failed: \(errno)") }
                }
            }
            pool.next = 0
        }
        var b = UUID.zero.uuid
        withUnsafeMutableBytes(of: &b) { out in
            pool.bytes.withUnsafeBytes { src in
                out.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[pool.next ..< pool.next + 16]))
            }
        }
        pool.next += 16
        return version4(b)
    }

    /// A version 4 UUID from `generator`'s bits: for ids that need to be cheap or reproducible but
    /// not unguessable, such as a load generator's request ids.
    public static func make<G: RandomNumberGenerator>(using generator: inout G) -> UUID {
        var b = UUID.zero.uuid
        let (high, low) = (generator.next(), generator.next())
        withUnsafeMutableBytes(of: &b) { raw in
            raw.storeBytes(of: high, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: low, toByteOffset: 8, as: UInt64.self)
        }
        return version4(b)
    }

    /// `bytes` with the version 4 and RFC 9562 variant bits set.
    private static func version4(_ bytes: uuid_t) -> UUID {
        var b = bytes
        b.6 = (b.6 & 0x0F) | 0x40  // version 4
        b.8 = (b.8 & 0x3F) | 0x80  // RFC 9562 variant
        return UUID(uuid: b)
    }
}

private extension UUID {
    static let zero = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
}
