import XCTest
@testable import LiaisonRuntime

final class SHA256Tests: XCTestCase {
    func testEmptyString() {
        XCTAssertEqual(hexString(SHA256.hash(string: "")),
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    func testABC() {
        XCTAssertEqual(hexString(SHA256.hash(string: "abc")),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    func testNIST448BitVector() {
        XCTAssertEqual(hexString(SHA256.hash(string: "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    func testNIST896BitVector() {
        let m = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
        XCTAssertEqual(hexString(SHA256.hash(string: m)),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
    }

    func testOneMillionA() {
        var h = SHA256()
        let chunk = [UInt8](repeating: 0x61, count: 1000)
        for _ in 0 ..< 1000 { h.update(chunk) }
        XCTAssertEqual(hexString(h.finalize()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testStreamingEqualsOneShotAcrossBlockBoundaries() {
        let message = (0 ..< 300).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let oneShot = SHA256.hash(message)
        for split in [0, 1, 55, 56, 63, 64, 65, 128, 299] {
            var h = SHA256()
            h.update(message[..<split])
            h.update(message[split...])
            XCTAssertEqual(h.finalize(), oneShot, "split at \(split)")
        }
    }

    func testNonContiguousSequencesHashTheSame() {
        let message = (0 ..< 1000).map { UInt8(truncatingIfNeeded: $0 * 13) }
        var slow = SHA256()
        slow.update(message.lazy.map { $0 })  // no contiguous storage: byte-wise path
        var mixed = SHA256()
        mixed.update(message[..<10])
        mixed.update(message[10...].lazy.map { $0 })
        XCTAssertEqual(slow.finalize(), SHA256.hash(message))
        XCTAssertEqual(mixed.finalize(), SHA256.hash(message))
        var a = SHA256()
        a.update(repeatElement(UInt8(0x61), count: 1_000))
        XCTAssertEqual(a.finalize(), SHA256.hash([UInt8](repeating: 0x61, count: 1_000)))
    }

    func testHMACRFC4231Case1And2() {
        let key1 = [UInt8](repeating: 0x0b, count: 20)
        XCTAssertEqual(hexString(HMACSHA256.mac(key: key1, message: Array("Hi There".utf8))),
                       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        XCTAssertEqual(hexString(HMACSHA256.mac(key: Array("Jefe".utf8),
                                                message: Array("what do ya want for nothing?".utf8))),
                       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    func testHMACLongKey() {
        // RFC 4231 test case 6: 131-byte key (hashed first).
        let key = [UInt8](repeating: 0xaa, count: 131)
        let message = Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)
        XCTAssertEqual(hexString(HMACSHA256.mac(key: key, message: message)),
                       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    func testRequestFingerprintIsStableAndSeparatesMethods() {
        let body: [UInt8] = [0x0a, 0x03, 0x61, 0x62, 0x63]
        let a = RequestFingerprint(method: "liaison.intake.v1.IntakeService/SubmitReport", canonicalBytes: body)
        let b = RequestFingerprint(method: "liaison.intake.v1.IntakeService/SubmitReport", canonicalBytes: body)
        let c = RequestFingerprint(method: "liaison.intake.v1.IntakeService/CloseCase", canonicalBytes: body)
        let d = RequestFingerprint(method: "liaison.intake.v1.IntakeService/SubmitReport", canonicalBytes: body + [0])
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
        XCTAssertNotEqual(a, d)
        XCTAssertEqual(a.digest.count, 32)
        XCTAssertEqual(a.hex.count, 64)
        XCTAssertEqual(RequestFingerprint(digest: a.digest), a)
    }
}
