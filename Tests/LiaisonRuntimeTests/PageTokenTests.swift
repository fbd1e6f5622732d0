import Foundation
import XCTest
@testable import LiaisonRuntime

final class PageTokenTests: XCTestCase {
    let codec = PageTokenCodec(key: Array("0123456789abcdef-test-key".utf8))
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let query = QueryFingerprint(collection: "reports", filter: "symptom = \"UNAVAILABLE\"", orderBy: "receive_time desc")

    func token(expire: Date? = nil) -> PageToken {
        PageToken(query: query, lastTimeMicros: 1_799_999_000_123_456, lastId: "r-42",
                  expireTimeMicros: expire.map(PageToken.micros))
    }

    func testRoundTrip() throws {
        let original = token(expire: now.addingTimeInterval(3600))
        let s = codec.encode(original)
        XCTAssertFalse(s.contains("="))
        XCTAssertFalse(s.contains("+"))
        XCTAssertFalse(s.contains("/"))
        let back = try codec.decode(s, expecting: query, now: now)
        XCTAssertEqual(back, original)
        XCTAssertEqual(back.lastId, "r-42")
        XCTAssertEqual(back.lastTimeMicros, 1_799_999_000_123_456)
    }

    func testConvenienceEncodeDecode() throws {
        let s = token().encoded(using: codec)
        XCTAssertEqual(try PageToken.decode(s, using: codec, expecting: query, now: now), token())
    }

    func testRoundTripWithoutExpiryAndUnicodeId() throws {
        let t = PageToken(query: query, lastTime: Date(timeIntervalSince1970: 1_800_000_000.5), lastId: "ünï-çødé")
        XCTAssertEqual(try codec.decode(codec.encode(t), expecting: query, now: now), t)
        XCTAssertEqual(t.lastTime, Date(timeIntervalSince1970: 1_800_000_000.5))
    }

    func testEncodingIsDeterministic() {
        XCTAssertEqual(codec.encode(token()), codec.encode(token()))
    }

    func testTamperingIsRejected() {
        let s = codec.encode(token())
        var bytes = Base64URL.decode(s)!
        for i in [0, 5, 20, 30, bytes.count - 1] {
            var tampered = bytes
            tampered[i] ^= 0x01
            XCTAssertThrowsError(try codec.decode(Base64URL.encode(tampered), expecting: query, now: now)) { error in
                XCTAssertEqual(error as? PageTokenError, .badSignature, "byte \(i)")
            }
        }
        bytes.removeLast()
        XCTAssertThrowsError(try codec.decode(Base64URL.encode(bytes), expecting: query, now: now))
        let otherKey = PageTokenCodec(key: Array("another-key-0123456789".utf8))
        XCTAssertThrowsError(try otherKey.decode(s, expecting: query, now: now)) { error in
            XCTAssertEqual(error as? PageTokenError, .badSignature)
        }
    }

    func testMalformedTokens() {
        for s in ["", "!!!!", "abc", "a", String(repeating: "A", count: 10), "AAAA====", "not a token"] {
            XCTAssertThrowsError(try codec.decode(s, expecting: query, now: now), s) { error in
                XCTAssertEqual(error as? PageTokenError, .malformed, s)
                XCTAssertEqual((error as? PageTokenError)?.fieldViolation.field, "page_token")
            }
        }
    }

    func testOtherFilterOrderOrCollectionIsRejected() {
        let s = codec.encode(token())
        let others = [
            QueryFingerprint(collection: "reports", filter: "symptom = \"SLOW\"", orderBy: "receive_time desc"),
            QueryFingerprint(collection: "reports", filter: "symptom = \"UNAVAILABLE\"", orderBy: "receive_time"),
            QueryFingerprint(collection: "cases", filter: "symptom = \"UNAVAILABLE\"", orderBy: "receive_time desc"),
            QueryFingerprint(collection: "reports", parent: "customers/acme", filter: "symptom = \"UNAVAILABLE\"",
                             orderBy: "receive_time desc"),
        ]
        for other in others {
            XCTAssertNotEqual(other, query)
            XCTAssertThrowsError(try codec.decode(s, expecting: other, now: now)) { error in
                XCTAssertEqual(error as? PageTokenError, .queryMismatch)
            }
        }
        // Field boundaries are length-prefixed: moving text between fields changes the fingerprint.
        XCTAssertNotEqual(QueryFingerprint(collection: "a", filter: "bc", orderBy: ""),
                          QueryFingerprint(collection: "ab", filter: "c", orderBy: ""))
    }

    func testExpiredTokenIsRejected() {
        let s = codec.encode(token(expire: now))
        XCTAssertThrowsError(try codec.decode(s, expecting: query, now: now)) { error in
            XCTAssertEqual(error as? PageTokenError, .expired)
        }
        XCTAssertNoThrow(try codec.decode(s, expecting: query, now: now.addingTimeInterval(-1)))
    }

    func testKeysetPredicate() {
        let t = PageToken(query: query, lastTimeMicros: 100, lastId: "m")
        XCTAssertTrue(t.precedes(timeMicros: 99, id: "z", descending: true))
        XCTAssertTrue(t.precedes(timeMicros: 100, id: "a", descending: true))
        XCTAssertFalse(t.precedes(timeMicros: 100, id: "m", descending: true))
        XCTAssertFalse(t.precedes(timeMicros: 101, id: "a", descending: true))
        XCTAssertTrue(t.precedes(timeMicros: 100, id: "n", descending: false))
        XCTAssertFalse(t.precedes(timeMicros: 100, id: "m", descending: false))
    }

    func testPagingThroughAListVisitsEveryItemOnce() throws {
        // Items with duplicate times, listed newest first, 3 per page.
        let items = (0 ..< 10).map { (time: Int64(100 - $0 / 2), id: "r\($0)") }
            .sorted { ($0.time, $0.id) > ($1.time, $1.id) }
        var seen: [String] = []
        var tokenString = ""
        repeat {
            var remaining = items
            if !tokenString.isEmpty {
                let position = try codec.decode(tokenString, expecting: query, now: now)
                remaining = items.filter { position.precedes(timeMicros: $0.time, id: $0.id, descending: true) }
            }
            let page = remaining.prefix(3)
            seen += page.map(\.id)
            tokenString = page.count == 3 && remaining.count > 3
                ? codec.encode(PageToken(query: query, lastTimeMicros: page.last!.time, lastId: page.last!.id))
                : ""
        } while !tokenString.isEmpty
        XCTAssertEqual(seen, items.map(\.id))
    }

    func testBase64URL() {
        for n in 0 ..< 40 {
            let bytes = (0 ..< n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 250) }
            XCTAssertEqual(Base64URL.decode(Base64URL.encode(bytes)), bytes)
        }
        XCTAssertEqual(Base64URL.encode(Array("foobar".utf8)), "Zm9vYmFy")
        XCTAssertEqual(Base64URL.encode(Array("fo".utf8)), "Zm8")
        XCTAssertEqual(Base64URL.encode([0xfb, 0xff]), "-_8")
        XCTAssertNil(Base64URL.decode("Zm9="))  // padding refused
        XCTAssertNil(Base64URL.decode("Zm9vY"))  // impossible length 5
        XCTAssertNil(Base64URL.decode("Zm-"))  // non-zero trailing bits: not the canonical encoding
        XCTAssertNil(Base64URL.decode("Zh"))
    }
}
