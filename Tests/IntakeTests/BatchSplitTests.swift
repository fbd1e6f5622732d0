@testable import Intake
@testable import IntakeDomain
import XCTest

/// How `IntakeRepository.parallelGroups` splits a batch over transactions.
final class BatchSplitTests: XCTestCase {
    typealias Key = (customer: String, requestID: String)

    /// Checks the split's invariants: every entry once, each group in request order, and no
    /// customer or request id in two groups.
    func assertValidSplit(_ keys: [Key], _ groups: [[Int]], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(groups.flatMap { $0 }.sorted(), Array(keys.indices), "every entry exactly once", file: file, line: line)
        for group in groups {
            XCTAssertFalse(group.isEmpty, file: file, line: line)
            XCTAssertEqual(group, group.sorted(), "request order within a group", file: file, line: line)
        }
        var customerGroup: [String: Int] = [:]
        var requestGroup: [String: Int] = [:]
        for (g, group) in groups.enumerated() {
            for i in group {
                XCTAssertEqual(customerGroup[keys[i].customer, default: g], g, "customer \(keys[i].customer) split", file: file, line: line)
                XCTAssertEqual(requestGroup[keys[i].requestID, default: g], g, "request \(keys[i].requestID) split", file: file, line: line)
                customerGroup[keys[i].customer] = g
                requestGroup[keys[i].requestID] = g
            }
        }
    }

    func testIndependentEntriesAreBalanced() {
        let keys: [Key] = (0..<100).map { ("c\($0)", "r\($0)") }
        let groups = IntakeRepository.parallelGroups(keys, count: 2)
        assertValidSplit(keys, groups)
        XCTAssertEqual(groups.map(\.count), [50, 50])
        XCTAssertEqual(IntakeRepository.parallelGroups(keys, count: 3).map(\.count).sorted(), [33, 33, 34])
    }

    /// Entries linked through a customer, a request id, or a chain of both stay together.
    func testLinkedEntriesStayTogether() {
        let keys: [Key] = [
            ("a", "1"), ("b", "2"), ("a", "3"),  // 0 and 2: customer a
            ("c", "2"),                          // 3 joins 1 through request id 2
            ("d", "4"), ("c", "5"),              // 5 joins 1 and 3 through customer c
            ("e", "6"), ("f", "7"), ("g", "8"),
        ]
        let groups = IntakeRepository.parallelGroups(keys, count: 2)
        assertValidSplit(keys, groups)
        let together = groups.first { $0.contains(1) }!
        XCTAssertTrue(Set([1, 3, 5]).isSubset(of: Set(together)))
        let withA = groups.first { $0.contains(0) }!
        XCTAssertTrue(withA.contains(2))
        XCTAssertEqual(groups.map(\.count).sorted(), [4, 5])
    }

    /// One customer for everything cannot be split; neither can more groups than sets be made.
    func testUnsplittableBatches() {
        let keys: [Key] = (0..<40).map { ("same", "r\($0)") }
        XCTAssertEqual(IntakeRepository.parallelGroups(keys, count: 2), [Array(0..<40)])
        let two: [Key] = [("a", "1"), ("b", "2")]
        XCTAssertEqual(IntakeRepository.parallelGroups(two, count: 4), [[0], [1]])
        XCTAssertEqual(IntakeRepository.parallelGroups([], count: 2), [])
    }

    /// Random batches with many collisions keep every invariant, and the split is deterministic.
    func testRandomBatchesKeepTheInvariants() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            let n = Int.random(in: 1...120, using: &rng)
            let customers = Int.random(in: 1...60, using: &rng)
            let requests = Int.random(in: n / 2 + 1...n + 1, using: &rng)
            let keys: [Key] = (0..<n).map { _ in
                ("c\(Int.random(in: 0..<customers, using: &rng))", "r\(Int.random(in: 0..<requests, using: &rng))")
            }
            let count = Int.random(in: 1...4, using: &rng)
            let groups = IntakeRepository.parallelGroups(keys, count: count)
            XCTAssertLessThanOrEqual(groups.count, count)
            assertValidSplit(keys, groups)
            XCTAssertEqual(IntakeRepository.parallelGroups(keys, count: count), groups)
        }
    }
}
