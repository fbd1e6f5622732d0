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

    /// From a seeded generator: version 4 and the variant, and the same seed gives the same ids.
    func testIDsFromAGeneratorAreVersion4AndReproducible() {
        var a = SplitMix64(seed: 7), b = SplitMix64(seed: 7)
        let ids = (0..<100).map { _ in RandomUUID.make(using: &a) }
        XCTAssertEqual(ids, (0..<100).map { _ in RandomUUID.make(using: &b) })
        XCTAssertEqual(Set(ids).count, 100)
        for id in ids {
            XCTAssertEqual(id.uuid.6 >> 4, 4, "version")
            XCTAssertEqual(id.uuid.8 >> 6, 0b10, "variant")
        }
    }
}
