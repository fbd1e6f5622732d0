// Numerics for the correlation domain: log-gamma, regularized incomplete beta and gamma in log
// space, exact binomial and Poisson tails, Wilson intervals, rate-ratio tests and
// multiple-testing corrections. Pure functions, no dependencies beyond Foundation's libm.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Special functions and exact tests used by the blast-radius, trend and emerging-issue engines.
///
/// Tail probabilities are computed in log space (``logBinomialUpperTail(_:_:_:)`` etc.) so they stay
/// accurate down to ~1e-300 and beyond (the log is returned, so even underflowing values keep their
/// magnitude), for populations up to tens of millions.
public enum Stats {
    // MARK: Gamma and beta functions

    private static let lanczos: [Double] = [
        0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
        -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6,
        1.5056327351493116e-7,
    ]

    /// ln Γ(x) for x > 0 (Lanczos, g = 7; relative error ~1e-15).
    public static func logGamma(_ x: Double) -> Double {
        if x < 0.5 { return log(Double.pi / abs(sin(Double.pi * x))) - logGamma(1 - x) }
        let y = x - 1
        var a = lanczos[0]
        let t = y + 7.5
        for i in 1..<9 { a += lanczos[i] / (y + Double(i)) }
        return 0.5 * log(2 * Double.pi) + (y + 0.5) * log(t) - t + log(a)
    }

    /// ln B(a, b).
    public static func logBeta(_ a: Double, _ b: Double) -> Double {
        logGamma(a) + logGamma(b) - logGamma(a + b)
    }

    /// Continued fraction for the incomplete beta (modified Lentz).
    private static func betaContinuedFraction(_ a: Double, _ b: Double, _ x: Double) -> Double {
        let tiny = 1e-300, eps = 1e-15
        let qab = a + b, qap = a + 1, qam = a - 1
        var c = 1.0
        var d = 1 - qab * x / qap
        if abs(d) < tiny { d = tiny }
        d = 1 / d
        var h = d
        var m = 1.0
        while m < 1_000_000 {
            let m2 = 2 * m
            var aa = m * (b - m) * x / ((qam + m2) * (a + m2))
            d = 1 + aa * d
            if abs(d) < tiny { d = tiny }
            c = 1 + aa / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            h *= d * c
            aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
            d = 1 + aa * d
            if abs(d) < tiny { d = tiny }
            c = 1 + aa / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            let del = d * c
            h *= del
            if abs(del - 1) < eps { break }
            m += 1
        }
        return h
    }

    /// ln I_x(a, b), the log of the regularized incomplete beta function.
    public static func logRegularizedBeta(_ x: Double, _ a: Double, _ b: Double) -> Double {
        if x <= 0 { return -.infinity }
        if x >= 1 { return 0 }
        let logFront = a * log(x) + b * log1p(-x) - logBeta(a, b)
        if x < (a + 1) / (a + b + 2) {
            return logFront + log(betaContinuedFraction(a, b, x)) - log(a)
        }
        let complement = exp(logFront + log(betaContinuedFraction(b, a, 1 - x)) - log(b))
        return log1p(-min(complement, 1))
    }

    /// ln P(a, x), the log of the regularized lower incomplete gamma function.
    public static func logRegularizedGammaP(_ a: Double, _ x: Double) -> Double {
        if x <= 0 { return -.infinity }
        let logFront = -x + a * log(x) - logGamma(a)
        if x < a + 1 {
            var ap = a, del = 1 / a, sum = del
            for _ in 0..<1_000_000 {
                ap += 1
                del *= x / ap
                sum += del
                if abs(del) < abs(sum) * 1e-16 { break }
            }
            return logFront + log(sum)
        }
        return log1p(-min(1, exp(logFront + log(gammaContinuedFraction(a, x)))))
    }

    /// ln Q(a, x), the log of the regularized upper incomplete gamma function.
    public static func logRegularizedGammaQ(_ a: Double, _ x: Double) -> Double {
        if x <= 0 { return 0 }
        let logFront = -x + a * log(x) - logGamma(a)
        if x < a + 1 { return log1p(-min(1, exp(logRegularizedGammaP(a, x)))) }
        return logFront + log(gammaContinuedFraction(a, x))
    }

    private static func gammaContinuedFraction(_ a: Double, _ x: Double) -> Double {
        let tiny = 1e-300
        var b = x + 1 - a
        var c = 1 / tiny
        var d = 1 / b
        var h = d
        var i = 1.0
        while i < 1_000_000 {
            let an = -i * (i - a)
            b += 2
            d = an * d + b
            if abs(d) < tiny { d = tiny }
            c = b + an / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            let del = d * c
            h *= del
            if abs(del - 1) < 1e-15 { break }
            i += 1
        }
        return h
    }

    // MARK: Binomial and Poisson tails

    /// ln P(X ≥ k) for X ~ Binomial(n, p), exact (via the incomplete beta).
    public static func logBinomialUpperTail(_ k: Int, _ n: Int, _ p: Double) -> Double {
        if k <= 0 { return 0 }
        if k > n || p <= 0 { return -.infinity }
        if p >= 1 { return 0 }
        return logRegularizedBeta(p, Double(k), Double(n - k + 1))
    }

    /// ln P(X ≤ k) for X ~ Binomial(n, p), exact.
    public static func logBinomialLowerTail(_ k: Int, _ n: Int, _ p: Double) -> Double {
        if k < 0 { return -.infinity }
        if k >= n || p <= 0 { return 0 }
        if p >= 1 { return -.infinity }
        return logRegularizedBeta(1 - p, Double(n - k), Double(k + 1))
    }

    /// P(X ≥ k) for X ~ Binomial(n, p).
    public static func binomialUpperTail(_ k: Int, _ n: Int, _ p: Double) -> Double {
        exp(logBinomialUpperTail(k, n, p))
    }

    /// P(X ≤ k) for X ~ Binomial(n, p).
    public static func binomialLowerTail(_ k: Int, _ n: Int, _ p: Double) -> Double {
        exp(logBinomialLowerTail(k, n, p))
    }

    /// ln P(X ≥ k) for X ~ Poisson(λ), exact (via the incomplete gamma).
    public static func logPoissonUpperTail(_ k: Int, _ lambda: Double) -> Double {
        if k <= 0 { return 0 }
        if lambda <= 0 { return -.infinity }
        return logRegularizedGammaP(Double(k), lambda)
    }

    /// ln P(X ≤ k) for X ~ Poisson(λ).
    public static func logPoissonLowerTail(_ k: Int, _ lambda: Double) -> Double {
        if k < 0 { return -.infinity }
        if lambda <= 0 { return 0 }
        return logRegularizedGammaQ(Double(k + 1), lambda)
    }

    /// P(X ≥ k) for X ~ Poisson(λ).
    public static func poissonUpperTail(_ k: Int, _ lambda: Double) -> Double {
        exp(logPoissonUpperTail(k, lambda))
    }

    /// P(X ≤ k) for X ~ Poisson(λ).
    public static func poissonLowerTail(_ k: Int, _ lambda: Double) -> Double {
        exp(logPoissonLowerTail(k, lambda))
    }

    // MARK: Comparing two rates

    /// One-sided test that rate 1 (`k1` events over exposure `e1`) is *higher* than rate 2 (`k2`
    /// over `e2`): the exact conditional test, k1 | k1 + k2 ~ Binomial(k1 + k2, e1 / (e1 + e2)).
    /// Exact for Poisson counts; for binomial proportions (exposure = population) it is the
    /// binomial approximation of Fisher's exact test and errs on the conservative side.
    public static func rateRatioUpperP(_ k1: Int, _ e1: Double, _ k2: Int, _ e2: Double) -> Double {
        guard e1 > 0, e2 > 0, k1 + k2 > 0 else { return 1 }
        return binomialUpperTail(k1, k1 + k2, e1 / (e1 + e2))
    }

    /// One-sided test that rate 1 is *lower* than rate 2 (see ``rateRatioUpperP(_:_:_:_:)``).
    public static func rateRatioLowerP(_ k1: Int, _ e1: Double, _ k2: Int, _ e2: Double) -> Double {
        guard e1 > 0, e2 > 0, k1 + k2 > 0 else { return 1 }
        return binomialLowerTail(k1, k1 + k2, e1 / (e1 + e2))
    }

    /// Two-sided rate-ratio p-value: twice the smaller one-sided p-value, capped at 1.
    public static func rateRatioTwoSidedP(_ k1: Int, _ e1: Double, _ k2: Int, _ e2: Double) -> Double {
        min(1, 2 * min(rateRatioUpperP(k1, e1, k2, e2), rateRatioLowerP(k1, e1, k2, e2)))
    }

    // MARK: Intervals

    /// Quantile of the standard normal distribution (Acklam's rational approximation refined by
    /// one Halley step; relative error < 1e-12).
    public static func normalQuantile(_ p: Double) -> Double {
        precondition(p > 0 && p < 1, "normalQuantile needs 0 < p < 1")
        let a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
        let b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                 6.680131188771972e+01, -1.328068155288572e+01]
        let c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                 -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
        let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                 3.754408661907416e+00]
        let low = 0.02425
        var x: Double
        if p < low {
            let q = sqrt(-2 * log(p))
            x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
                / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        } else if p <= 1 - low {
            let q = p - 0.5, r = q * q
            x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
                / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
        } else {
            let q = sqrt(-2 * log1p(-p))
            x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
                / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        }
        let e = 0.5 * erfc(-x / 2.0.squareRoot()) - p
        let u = e * (2 * Double.pi).squareRoot() * exp(x * x / 2)
        x -= u / (1 + x * u / 2)
        return x
    }

    /// Wilson score interval for a proportion k / n at two-sided confidence `confidence`.
    public static func wilsonInterval(_ k: Int, _ n: Int, confidence: Double = 0.95) -> (lower: Double, upper: Double) {
        guard n > 0 else { return (0, 1) }
        let z = normalQuantile(0.5 + confidence / 2)
        let nn = Double(n), phat = Double(k) / nn, z2 = z * z
        let denom = 1 + z2 / nn
        let centre = (phat + z2 / (2 * nn)) / denom
        let half = z * (phat * (1 - phat) / nn + z2 / (4 * nn * nn)).squareRoot() / denom
        return (max(0, centre - half), min(1, centre + half))
    }

    // MARK: Multiple testing

    /// Adjusts p-values for multiple testing over a family of `familySize` hypotheses, of which
    /// only `pValues` are given explicitly (the others are treated as p = 1, i.e. hypotheses that
    /// were counted in the family but could not be rejected). Returns adjusted p-values in the
    /// order of `pValues`.
    public static func adjust(_ pValues: [Double], familySize: Int? = nil, correction: Correction) -> [Double] {
        let m = Double(max(familySize ?? pValues.count, pValues.count))
        guard !pValues.isEmpty else { return [] }
        let order = pValues.indices.sorted { pValues[$0] < pValues[$1] }
        var adjusted = [Double](repeating: 1, count: pValues.count)
        switch correction {
        case .none:
            return pValues.map { min(1, max(0, $0)) }
        case .benjaminiHochberg:
            // q_(i) = min_{j >= i} m p_(j) / j; entries beyond the explicit ones have q = 1.
            var running = 1.0
            for rank in stride(from: order.count, through: 1, by: -1) {
                let i = order[rank - 1]
                running = min(running, m * pValues[i] / Double(rank))
                adjusted[i] = min(1, running)
            }
        case .holm:
            var running = 0.0
            for rank in 1...order.count {
                let i = order[rank - 1]
                running = max(running, min(1, (m - Double(rank) + 1) * pValues[i]))
                adjusted[i] = running
            }
        }
        return adjusted
    }
}

/// Multiple-testing correction (mirrors `liaison.correlation.v1.Correction`).
public enum Correction: String, Sendable, Hashable, CaseIterable {
    /// Benjamini-Hochberg: controls the false discovery rate (and, when nothing is there, the
    /// chance of reporting anything at all).
    case benjaminiHochberg
    /// Holm-Bonferroni: controls the family-wise error rate.
    case holm
    /// No correction (exploration only).
    case none
}
