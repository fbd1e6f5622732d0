import Foundation
import LiaisonRPC
import Synchronization
import XCTest

final class PerThreadTests: XCTestCase {
    final class Counted {
        static let live = Atomic<Int>(0)
        init() { Self.live.add(1, ordering: .relaxed) }
        deinit { Self.live.subtract(1, ordering: .relaxed) }
    }

    /// Each thread gets its own value, the same one on every use, and loses it when it exits.
    func testOneValuePerThreadReleasedAtThreadExit() {
        let perThread = PerThread { Counted() }
        let before = Counted.live.load(ordering: .relaxed)
        let seen = Mutex<[ObjectIdentifier]>([])
        let ready = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        for _ in 0..<8 {
            let thread = Thread {
                XCTAssertNil(perThread.existing)
                let a = perThread.value
                XCTAssertTrue(perThread.value === a)
                XCTAssertTrue(perThread.existing === a)
                seen.withLock { $0.append(ObjectIdentifier(a)) }
                ready.signal()
                release.wait()  // all alive at once, so no address is reused
            }
            thread.start()
        }
        for _ in 0..<8 { ready.wait() }
        XCTAssertEqual(Set(seen.withLock { $0 }).count, 8)
        XCTAssertEqual(Counted.live.load(ordering: .relaxed), before + 8)
        for _ in 0..<8 { release.signal() }
        // The threads exit now; their values go with them.
        let deadline = Date().addingTimeInterval(10)
        while Counted.live.load(ordering: .relaxed) > before, Date() < deadline { usleep(1000) }
        XCTAssertEqual(Counted.live.load(ordering: .relaxed), before)
    }
}
