import XCTest
@testable import Correlation
@testable import CorrelationDomain

final class SegmentTests: XCTestCase {
    func testKeysAreSortedAndParse() {
        let a = SegmentKey(SegmentCondition(.platform, "android"), SegmentCondition(.region, "eu-south"))
        let b = SegmentKey(SegmentCondition(.region, "eu-south"), SegmentCondition(.platform, "android"))
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.description, "region=eu-south&platform=android")
        XCTAssertEqual(SegmentKey(parsing: "platform=android&region=eu-south"), a)
        XCTAssertEqual(a.parents, [SegmentKey(.region, "eu-south"), SegmentKey(.platform, "android")])
        XCTAssertNil(SegmentKey(parsing: "colour=red"))
        XCTAssertNil(SegmentKey(parsing: "region=a&tier=b&feature=c"))
    }

    func testExtractorKeys() {
        let customer = CustomerAttributes(
            accountNumber: "1048576", region: "eu-south", country: "IT", tier: "business",
            features: ["teapot-customization", "sso", "sso"],
            platforms: [.init(platform: "android", clientVersion: "5.1.3"), .init(platform: "web", clientVersion: "5.1.0")])
        let keys = Set(SegmentExtractor.keys(for: customer).map(\.description))
        for expected in [
            "region=eu-south", "country=IT", "account_partition=1", "tier=business",
            "feature=teapot-customization", "feature=sso", "platform=android", "platform=web",
            "client_version=5.1.3", "client_version=5.1.0", "client_version_minor=5.1",
            "region=eu-south&platform=android", "country=IT&client_version_minor=5.1",
            "client_version=5.1.3&client_version_minor=5.1",
        ] { XCTAssertTrue(keys.contains(expected), expected) }
        // No pairs within one dimension.
        XCTAssertFalse(keys.contains("feature=sso&feature=teapot-customization"))
        XCTAssertFalse(keys.contains("platform=android&platform=web"))
        // 11 conditions, 11*10/2 pairs minus the same-dimension ones (features 1, platforms 1, versions 1).
        XCTAssertEqual(keys.count, 11 + 55 - 3)
        XCTAssertEqual(SegmentExtractor.keys(for: customer, maxDepth: 1).count, 11)
        XCTAssertEqual(SegmentExtractor.minorVersion(of: "5.1.3"), "5.1")
        XCTAssertEqual(SegmentExtractor.minorVersion(of: "5"), "5")
        XCTAssertEqual(SegmentExtractor.accountPartition(of: "AC-4711"), "4")
        XCTAssertEqual(SegmentExtractor.accountPartition(of: "4711", digits: 2), "47")
    }

    func testExtractorCapsMultiValuedExplosion() {
        let customer = CustomerAttributes(region: "r", features: (0..<100).map { "f\($0)" })
        let keys = SegmentExtractor.keys(for: customer, maxValuesPerDimension: 8)
        XCTAssertEqual(keys.filter { $0.depth == 1 }.count, 9)
        XCTAssertEqual(keys.filter { $0.depth == 2 }.count, 8)
    }
}
