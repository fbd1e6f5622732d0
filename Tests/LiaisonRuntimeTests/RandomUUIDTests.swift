import Foundation
import LiaisonRuntime
import Synchronization
import XCTest

final class RandomUUIDTests: XCTestCase {
    /// Version 4 and the RFC variant on every UUID; no repeats across buffer refills (256 UUIDs
    /// per refill) and across threads, each with its own buffer.
    func testVersionVariantAndUniquenessAcrossRefillsAndThreads() {
        let all = Mutex<Set<UUID>>([])
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            var mine: [UUID] = []
            for _ in 0..<5_000 { mine.append(RandomUUID.make()) }
            for id in mine {
                let b = id.uuid
                XCTAssertEqual(b.6 >> 4, 4, "version")
                XCTAssertEqual(b.8 >> 6, 0b10, "variant")
            }
            all.withLock { $0.formUnion(mine) }
        }
        XCTAssertEqual(all.withLock { $0.count }, 40_000)
        // The text form is the usual one that the services store and parse back.
        let id = RandomUUID.make()
        XCTAssertEqual(UUID(uuidString: id.uuidString.lowercased()), id)
    }

    /// Version 7: the millisecond timestamp in the first 48 bits, the version and variant bits,
    /// no repeats, and ids of later milliseconds sort after earlier ones in their text form (the
    /// form the services store as keys).
    func testTimeOrderedIDsCarryTheirMillisecondAndSortByIt() {
        let t = Date(timeIntervalSince1970: 1_795_000_000.123_9)
        let id = RandomUUID.makeTimeOrdered(at: t)
        let b = id.uuid
        let ms = [b.0, b.1, b.2, b.3, b.4, b.5].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        XCTAssertEqual(ms, 1_795_000_000_123)
        XCTAssertEqual(b.6 >> 4, 7, "version")
        XCTAssertEqual(b.8 >> 6, 0b10, "variant")
        var seen = Set<UUID>()
        var texts: [String] = []
        for k in 0..<2_000 {
            let at = t.addingTimeInterval(Double(k / 4) * 0.001)  // four ids per millisecond
            let u = RandomUUID.makeTimeOrdered(at: at)
            XCTAssertTrue(seen.insert(u).inserted)
            texts.append(u.uuidString.lowercased())
        }
        for k in stride(from: 4, to: texts.count, by: 4) {
            XCTAssertLessThan(texts[k - 1], texts[k], "a later millisecond sorts later")
        }
    }
}
