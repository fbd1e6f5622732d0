import Foundation
import LiaisonRuntime
import XCTest
@testable import Intake
@testable import IntakeDomain

/// Deterministic PRNG for reproducible randomized tests.
typealias SeededGenerator = SplitMix64

final class NormalizationTests: XCTestCase {
    let n = TextNormalizer.standard

    func testLowercasesStripsPunctuationAndStopWords() {
        XCTAssertEqual(n.tokens("The CHECKOUT page is DOWN!!! (again?)"), ["checkout", "page", "down"])
    }

    func testFoldsDiacriticsAndSpecialLetters() {
        XCTAssertEqual(n.tokens("Zahlungsbestätigung fehlt – Straße"), ["zahlungsbestatigung", "fehlt", "strasse"])
        XCTAssertEqual(n.tokens("Café crème, ÉCHEC de connexion"), ["cafe", "creme", "echec", "connexion"])
        XCTAssertEqual(n.tokens("Łódź Ærø"), ["lodz", "aero"])
        XCTAssertEqual(n.fold("Ñandú"), "nandu")
    }

    func testStemming() {
        XCTAssertEqual(n.tokens("errors failing failed fails crashes timeouts payments stopped logged"),
                       ["error", "fail", "fail", "fail", "crash", "timeout", "payment", "stop", "log"])
        XCTAssertEqual(TextNormalizer.stemmed("status"), "status")
        XCTAssertEqual(TextNormalizer.stemmed("access"), "access")
        XCTAssertEqual(TextNormalizer.stemmed("queries"), "query")
        XCTAssertEqual(TextNormalizer.stemmed("down"), "down")
    }

    func testNumbersKeptSingleLettersDropped() {
        XCTAssertEqual(n.tokens("error 500 on v 5.1.3"), ["error", "500", "5", "1", "3"])
    }

    func testIdeographsAreTokens() {
        XCTAssertEqual(n.tokens("支付失败"), ["支", "付", "失", "败"])
    }

    func testShinglesOfSizeTwoAndShortTexts() {
        var config = SimilarityConfig.standard
        config.shingleSize = 2
        XCTAssertEqual(config.shingles("checkout page down"), ["checkout page", "page down"])
        XCTAssertEqual(config.shingles("down"), ["down"])
        XCTAssertEqual(config.shingles("the and of"), [])
    }
}

final class SimilarityTests: XCTestCase {
    let outage = "The checkout page keeps failing with error 500 when I try to pay"
    let paraphrases = [
        "Payment fails at checkout, getting a 500 error",
        "checkout broken - error 500 every time I pay",
        "Customer cannot pay: checkout returns error 500",
        "Getting HTTP 500 errors at checkout when paying",
    ]
    let unrelated = [
        "Invoice for October shows the wrong amount, we were charged twice",
        "Password reset email never arrives",
        "Dashboard charts load very slowly in the morning",
        "How do I export my contacts to CSV?",
    ]

    func testParaphrasesScoreHigherThanDifferentProblems() {
        for p in paraphrases {
            let s = Similarity.score(outage, p)
            XCTAssertGreaterThanOrEqual(s, 0.25, "paraphrase \(p): \(s)")
            for u in unrelated {
                XCTAssertLessThan(Similarity.score(u, p), 0.1, "\(u) vs \(p)")
            }
        }
        for u in unrelated {
            XCTAssertLessThan(Similarity.score(outage, u), 0.1, u)
        }
    }

    func testIdenticalAfterNormalisationScoresOne() {
        XCTAssertEqual(Similarity.score("Checkout is DOWN!", "checkout down"), 1)
        XCTAssertEqual(Similarity.score("Zahlung fehlgeschlagen", "zahlung FEHLGESCHLAGEN."), 1)
    }

    func testMultilingualDiacritics() {
        // Same complaint typed with and without accents.
        XCTAssertEqual(Similarity.score("Échec du paiement sur la page de caisse",
                                        "echec du paiement sur la page de caisse"), 1)
        XCTAssertGreaterThan(Similarity.score("Zahlung schlägt fehl, Fehler 500 im Checkout",
                                              "Fehler 500 beim Checkout, Zahlung schlagt fehl"), 0.7)
        XCTAssertLessThan(Similarity.score("Zahlung schlägt fehl, Fehler 500 im Checkout",
                                           "Rechnung für Oktober ist falsch"), 0.1)
        XCTAssertEqual(Similarity.score("支付失败", "支付失败"), 1)
    }

    func testVeryShortTexts() {
        XCTAssertEqual(Similarity.score("", ""), 0)
        XCTAssertEqual(Similarity.score("the", "a"), 0, "only stop words: no evidence")
        XCTAssertEqual(Similarity.score("down", "down!"), 1)
        XCTAssertEqual(Similarity.score("down", "slow"), 0)
        XCTAssertEqual(Similarity.score("site down", "website down"), 1.0 / 3.0, accuracy: 1e-9)
        XCTAssertEqual(Similarity.score("", "checkout down"), 0)
    }

    func testExplanation() {
        let e = Similarity.explain(outage, paraphrases[0])
        XCTAssertEqual(e.score, Similarity.score(outage, paraphrases[0]))
        XCTAssertTrue(e.sharedSample.contains("checkout"))
        XCTAssertTrue(e.sharedSample.contains("500"))
        XCTAssertEqual(e.sharedSample, e.sharedSample.sorted())
        XCTAssertGreaterThanOrEqual(e.overlap, e.score)
        XCTAssertEqual(Double(e.sharedCount) / Double(e.unionCount), e.score, accuracy: 1e-12)
        XCTAssertTrue(e.summary.hasPrefix("jaccard "), e.summary)
    }

    func testFingerprintEncodeDecodeRoundTrip() throws {
        let fp = ReportFingerprint(text: outage)
        let bytes = fp.encode()
        XCTAssertEqual(bytes.count, 16 + 128)
        let back = try ReportFingerprint(decoding: bytes)
        XCTAssertEqual(back, fp)
        XCTAssertEqual(back.estimatedJaccard(with: fp), 1)
        XCTAssertThrowsError(try ReportFingerprint(decoding: Array(bytes.dropLast()))) { error in
            XCTAssertEqual(error as? FingerprintDecodingError, .truncated)
        }
        var wrongVersion = bytes
        wrongVersion[0] = 9
        XCTAssertThrowsError(try ReportFingerprint(decoding: wrongVersion)) { error in
            XCTAssertEqual(error as? FingerprintDecodingError, .unsupportedVersion(9))
        }
        XCTAssertThrowsError(try ReportFingerprint(decoding: []))
    }

    /// Fingerprints stored in formats 1 (64-bit minima) and 2 (their high 32 bits) decode with
    /// their width, narrow to what the same text's fingerprint is now, and compare with new
    /// fingerprints at 8 bits, exactly as two new fingerprints do; two old ones still compare at
    /// 32 bits, with no chance agreements to remove.
    func testOlderFormatsDecodeAndCompareWithTodaysFingerprints() throws {
        let config = SimilarityConfig.standard
        func header(_ version: UInt8, _ shingles: Set<String>) -> [UInt8] {
            var b: [UInt8] = [version, UInt8(config.shingleSize)]
            b.appendBigEndian(UInt16(config.permutations))
            b.appendBigEndian(config.seed)
            b.appendBigEndian(UInt32(shingles.count))
            return b
        }
        func v1(_ text: String) -> [UInt8] {
            let shingles = config.shingles(text)
            var b = header(1, shingles)
            for m in ReportFingerprint.minima(shingles: shingles, config: config) { b.appendBigEndian(m) }
            return b
        }
        func v2(_ text: String) -> [UInt8] {
            let shingles = config.shingles(text)
            var b = header(2, shingles)
            for m in ReportFingerprint.minima(shingles: shingles, config: config) { b.appendBigEndian(UInt32(truncatingIfNeeded: m >> 32)) }
            return b
        }
        XCTAssertEqual(v1(outage).count, 16 + 8 * 128)
        XCTAssertEqual(v2(outage).count, 16 + 4 * 128)
        let now = ReportFingerprint(text: outage)
        let paraphrase = ReportFingerprint(text: paraphrases[0])
        for bytes in [v1(outage), v2(outage)] {
            let old = try ReportFingerprint(decoding: bytes)
            XCTAssertEqual(old.bits, 32)
            XCTAssertEqual(old.minHashes.map { $0 & 0xff }, now.minHashes)
            XCTAssertEqual(try ReportFingerprint(decoding: old.encode()), now)
            XCTAssertEqual(old.estimatedJaccard(with: paraphrase), now.estimatedJaccard(with: paraphrase))
            XCTAssertEqual(old.estimatedJaccard(with: now), 1)
            XCTAssertThrowsError(try ReportFingerprint(decoding: Array(bytes.dropLast(4)))) { error in
                XCTAssertEqual(error as? FingerprintDecodingError, .truncated)
            }
        }
        let oldA = try ReportFingerprint(decoding: v2(outage))
        let oldB = try ReportFingerprint(decoding: v2(paraphrases[0]))
        let equal = zip(oldA.minHashes, oldB.minHashes).filter { $0 == $1 }.count
        XCTAssertEqual(oldA.estimatedJaccard(with: oldB), Double(equal) / 128)
    }

    func testFingerprintIsDeterministicAndSeeded() {
        XCTAssertEqual(ReportFingerprint(text: outage), ReportFingerprint(text: outage))
        var other = SimilarityConfig.standard
        other.seed = 7
        let a = ReportFingerprint(text: outage)
        let b = ReportFingerprint(text: outage, config: other)
        XCTAssertNotEqual(a.minHashes, b.minHashes)
        XCTAssertFalse(a.isComparable(with: b))
        XCTAssertEqual(a.estimatedJaccard(with: b), 0, "incomparable fingerprints never match")
        XCTAssertEqual(ReportFingerprint(text: "").estimatedJaccard(with: ReportFingerprint(text: "")), 0)
    }

    func testMinHashEstimatesJaccardWithinTolerance() {
        var rng = SeededGenerator(seed: 20261129)
        let vocabulary = (0 ..< 2000).map { "w\($0)" }
        var totalError = 0.0
        var worst = 0.0
        let pairs = 300
        for _ in 0 ..< pairs {
            let sizeA = Int.random(in: 5 ... 80, using: &rng)
            let sizeB = Int.random(in: 5 ... 80, using: &rng)
            let sharedWanted = Int.random(in: 0 ... min(sizeA, sizeB), using: &rng)
            var pool = vocabulary.shuffled(using: &rng)
            let shared = Array(pool.prefix(sharedWanted))
            pool.removeFirst(sharedWanted)
            let onlyA = Array(pool.prefix(sizeA - sharedWanted))
            pool.removeFirst(sizeA - sharedWanted)
            let onlyB = Array(pool.prefix(sizeB - sharedWanted))
            let a = Set(shared + onlyA)
            let b = Set(shared + onlyB)
            let exact = Similarity.jaccard(a, b)
            let estimate = ReportFingerprint(shingles: a).estimatedJaccard(with: ReportFingerprint(shingles: b))
            let error = abs(estimate - exact)
            totalError += error
            worst = max(worst, error)
            // b-bit minwise hashing: positions agree with probability P = J + (1 - J) r, r = 1/256,
            // and the estimate's standard error is sqrt(P(1-P)/128) / (1 - r) (<= 0.045); allow
            // 4.5 sigma per pair.
            let r = 1.0 / 256
            let agree = exact + (1 - exact) * r
            let sigma = (agree * (1 - agree) / 128).squareRoot() / (1 - r)
            XCTAssertLessThanOrEqual(error, max(4.5 * sigma, 0.02), "exact \(exact) estimate \(estimate)")
        }
        let meanError = totalError / Double(pairs)
        XCTAssertLessThan(meanError, 0.035, "mean absolute error \(meanError), worst \(worst)")
    }

    /// `twoDecimals` writes exactly what `String(format: "%.2f")` writes: every thousandth and
    /// ten-thousandth in [-2, 2] (the ties printf rounds to even), and random doubles.
    func testTwoDecimalsMatchesPrintf() {
        var values: [Double] = [0, -0.0, 1, 0.125, 0.375, 0.005, 0.015, 0.285, 1.015, 99.995, 1e14, .nan, .infinity]
        for k in -20_000 ... 20_000 { values.append(Double(k) / 10_000) }
        var rng = SplitMix64(seed: 7)
        for _ in 0 ..< 20_000 { values.append(Double(rng.next() % 1_000_000_000) / 1e9 * 3 - 1) }
        for v in values {
            XCTAssertEqual(twoDecimals(v), String(format: "%.2f", v), "\(v)")
        }
    }
}

final class TextNormalizerFastPathTests: XCTestCase {
    /// The ASCII fast paths give what the Unicode tables give, for every ASCII character, so
    /// stored fingerprints stay comparable.
    func testASCIIFastPathsMatchTheUnicodeTables() {
        let n = TextNormalizer.standard
        let every = String(decoding: (0..<128).map { UInt8($0) }, as: UTF8.self)
        XCTAssertEqual(n.fold(every), n.foldUnicode(every))
        for scalar in (0..<128).compactMap(Unicode.Scalar.init) {
            let p = scalar.properties
            let word = p.isAlphabetic || p.numericType != nil
            XCTAssertEqual(n.tokens("ab\(scalar)cd").count == 1, word, "\(scalar.value)")
        }
        let samples = [
            "Checkout FAILS with error 500 at payment; retrying 3x didn't help!",
            "Die Seite ist komplett ausgefallen, Ausfall seit heute", "Café crème: paiement refusé (ERR-42)",
            "ログインできません 503", "Straße geschlossen, ØRE bitte",
        ]
        for text in samples {
            XCTAssertEqual(n.fold(text), n.foldUnicode(text), text)
        }
        XCTAssertEqual(n.tokens(samples[0]), ["checkout", "fail", "error", "500", "payment", "retry", "3x", "didn", "help"])
    }
}
