import XCTest
@testable import SLADomain

/// Test helpers independent of Foundation's calendar (so expectations are computed by hand).
enum SLADomainFixtures {
    static let second: Int64 = 1000
    static let minute: Int64 = 60_000
    static let hour: Int64 = 3_600_000
    static let day: Int64 = 86_400_000

    /// Epoch ms of a UTC civil time (H. Hinnant's days_from_civil).
    static func utc(_ y: Int, _ m: Int, _ d: Int, _ h: Int = 0, _ mi: Int = 0, _ s: Int = 0) -> Int64 {
        let yy = m <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = Int64(era * 146_097 + doe - 719_468)
        return days * day + Int64(h) * hour + Int64(mi) * minute + Int64(s) * second
    }

    static func calendar(_ id: String) -> ContractCalendar {
        guard let c = ContractCalendar(timeZone: id) else { fatalError("unknown zone \(id)") }
        return c
    }
}

/// Deterministic SplitMix64 generator.
struct SLASplitMix64 {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform-ish in 0..<n.
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}
