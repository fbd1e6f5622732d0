import XCTest
@testable import Correlation
@testable import CorrelationDomain

final class StatisticsTests: XCTestCase {
    /// Reference values computed with mpmath at 40 significant digits.
    func testBinomialTailsMatchHighPrecisionReferences() {
        let upper: [(Int, Int, Double, Double)] = [
            (1200, 10_000_000, 1e-4, -21.483692496727951),
            (2000, 10_000_000, 1e-4, -390.37164835477693),
            (5000, 10_000_000, 1e-4, -4052.9440695179905),  // 6.7e-1761: far below Double's range
            (3, 100, 0.001, -8.8023693007234037),
        ]
        for (k, n, p, ref) in upper {
            let got = Stats.logBinomialUpperTail(k, n, p)
            XCTAssertEqual(got, ref, accuracy: 1e-6 * max(1, abs(ref)), "upper k=\(k) n=\(n) p=\(p)")
        }
        let lower: [(Int, Int, Double, Double)] = [
            (800, 10_000_000, 1e-4, -24.158026723399178),
            (100, 10_000_000, 1e-4, -672.89911811021017),
            (0, 1_000_000, 1e-3, -1000.5003335835335),
        ]
        for (k, n, p, ref) in lower {
            let got = Stats.logBinomialLowerTail(k, n, p)
            XCTAssertEqual(got, ref, accuracy: 1e-6 * max(1, abs(ref)), "lower k=\(k) n=\(n) p=\(p)")
        }
        XCTAssertEqual(Stats.binomialUpperTail(1200, 10_000_000, 1e-4), 4.6746693511493802e-10,
                       accuracy: 4.67e-10 * 1e-6)
    }

    func testBinomialTailsEdgeCasesAndComplement() {
        XCTAssertEqual(Stats.binomialUpperTail(0, 10, 0.3), 1)
        XCTAssertEqual(Stats.binomialUpperTail(11, 10, 0.3), 0)
        XCTAssertEqual(Stats.binomialLowerTail(10, 10, 0.3), 1)
        // P(X >= k) + P(X <= k - 1) = 1, in the bulk of a large binomial.
        for k in [9_900, 10_000, 10_100] {
            let sum = Stats.binomialUpperTail(k, 10_000_000, 1e-3) + Stats.binomialLowerTail(k - 1, 10_000_000, 1e-3)
            XCTAssertEqual(sum, 1, accuracy: 1e-9)
        }
        // Small exact case: Bin(5, 0.5), P(X >= 4) = 6/32.
        XCTAssertEqual(Stats.binomialUpperTail(4, 5, 0.5), 6.0 / 32, accuracy: 1e-14)
    }

    func testPoissonTails() {
        XCTAssertEqual(Stats.poissonUpperTail(30, 10), 2.5099512015279078e-7, accuracy: 2.5e-7 * 1e-8)
        XCTAssertEqual(Stats.poissonUpperTail(200, 50), 2.0247590148473564e-57, accuracy: 2e-57 * 1e-7)
        XCTAssertEqual(Stats.poissonUpperTail(5, 0.1), 7.667801686189311e-8, accuracy: 7.7e-8 * 1e-8)
        XCTAssertEqual(Stats.poissonLowerTail(2, 1), Foundation_exp(-1) * 2.5, accuracy: 1e-14)
        XCTAssertEqual(Stats.poissonUpperTail(10, 10) + Stats.poissonLowerTail(9, 10), 1, accuracy: 1e-12)
    }

    func testNormalQuantileAndWilson() {
        XCTAssertEqual(Stats.normalQuantile(0.975), 1.959963984540054, accuracy: 1e-12)
        XCTAssertEqual(Stats.normalQuantile(1e-10), -6.361340902404056, accuracy: 1e-9)
        let ci = Stats.wilsonInterval(10, 100)
        XCTAssertEqual(ci.lower, 0.0552291, accuracy: 1e-6)
        XCTAssertEqual(ci.upper, 0.1743657, accuracy: 1e-6)
        let zero = Stats.wilsonInterval(0, 1000)
        XCTAssertEqual(zero.lower, 0)
        XCTAssertLessThan(zero.upper, 0.004)
    }

    func testCorrections() {
        let p = [0.01, 0.04, 0.03, 0.005]
        let bh = Stats.adjust(p, correction: .benjaminiHochberg)
        for (got, want) in zip(bh, [0.02, 0.04, 0.04, 0.02]) { XCTAssertEqual(got, want, accuracy: 1e-12) }
        let holm = Stats.adjust(p, correction: .holm)
        for (got, want) in zip(holm, [0.03, 0.06, 0.06, 0.02]) { XCTAssertEqual(got, want, accuracy: 1e-12) }
        // Hypotheses counted in the family but not listed behave as p = 1.
        XCTAssertEqual(Stats.adjust([0.001], familySize: 10, correction: .benjaminiHochberg)[0], 0.01, accuracy: 1e-15)
        XCTAssertEqual(Stats.adjust([0.001], familySize: 10, correction: .holm)[0], 0.01, accuracy: 1e-15)
        XCTAssertEqual(Stats.adjust([0.2], correction: .none)[0], 0.2)
    }

    func testRateRatio() {
        // Equal rates: not significant either way.
        XCTAssertGreaterThan(Stats.rateRatioTwoSidedP(50, 1, 50, 1), 0.5)
        // 60 events in one hour vs 20 in one hour: significant increase.
        XCTAssertLessThan(Stats.rateRatioUpperP(60, 1, 20, 1), 1e-5)
        XCTAssertLessThan(Stats.rateRatioLowerP(20, 1, 60, 1), 1e-5)
    }
}
