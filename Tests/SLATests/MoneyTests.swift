import XCTest
@testable import SLADomain

final class MoneyTests: XCTestCase {
    private let month: Int64 = 2_592_000_000  // 30 days
    private let cloud = [CreditStep(availabilityBelowPercent: 99.99, creditPercent: 10),
                         CreditStep(availabilityBelowPercent: 99, creditPercent: 25),
                         CreditStep(availabilityBelowPercent: 95, creditPercent: 100)]

    func testCurrencyConversions() {
        XCTAssertEqual(Currency.minorUnitExponent("JPY"), 0)
        XCTAssertEqual(Currency.minorUnitExponent("krw"), 0)
        XCTAssertEqual(Currency.minorUnitExponent("BHD"), 3)
        XCTAssertEqual(Currency.minorUnitExponent("KWD"), 3)
        XCTAssertEqual(Currency.minorUnitExponent("EUR"), 2)
        XCTAssertEqual(Currency.minorUnits(units: 2000, nanos: 0, code: "EUR"), 200_000)
        XCTAssertEqual(Currency.minorUnits(units: 12, nanos: 340_000_000, code: "USD"), 1234)
        XCTAssertEqual(Currency.minorUnits(units: -12, nanos: -340_000_000, code: "USD"), -1234)
        XCTAssertNil(Currency.minorUnits(units: 12, nanos: 345_000_000, code: "USD"))  // half a cent
        XCTAssertNil(Currency.minorUnits(units: 1, nanos: -1, code: "USD"))  // mixed signs
        XCTAssertEqual(Currency.minorUnits(units: 150, nanos: 0, code: "JPY"), 150)
        XCTAssertNil(Currency.minorUnits(units: 150, nanos: 500_000_000, code: "JPY"))
        XCTAssertEqual(Currency.minorUnits(units: 1234, nanos: 567_000_000, code: "BHD"), 1_234_567)
        XCTAssertNil(Currency.minorUnits(units: Int64.max, nanos: 0, code: "EUR"))
        XCTAssertTrue(Currency.money(minor: 1_234_567, code: "BHD") == (1234, 567_000_000))
        XCTAssertTrue(Currency.money(minor: -1234, code: "USD") == (-12, -340_000_000))
        XCTAssertTrue(Currency.money(minor: 150, code: "JPY") == (150, 0))
    }

    func testFormat() {
        XCTAssertEqual(Currency.format(minor: 200_000, code: "EUR"), "2,000.00 EUR")
        XCTAssertEqual(Currency.format(minor: 150, code: "JPY"), "150 JPY")
        XCTAssertEqual(Currency.format(minor: -1234, code: "USD"), "-12.34 USD")
        XCTAssertEqual(Currency.format(minor: 1_234_567, code: "BHD"), "1,234.567 BHD")
        XCTAssertEqual(Currency.format(minor: 5, code: "EUR"), "0.05 EUR")
        XCTAssertEqual(Currency.format(minor: 123_456_789, code: "EUR"), "1,234,567.89 EUR")
        XCTAssertEqual(Currency.format(minor: 1_000_000, code: "JPY"), "1,000,000 JPY")
    }

    func testCloudCreditStepsAroundEachThreshold() {
        // 99.99% of 30 d: allowed downtime 2_592_000_000 × 0.0001 = 259_200 ms -> exactly 99.99% is not below
        XCTAssertEqual(Credits.percentE2(consumedMs: 0, windowMs: month, steps: cloud), 0)
        XCTAssertEqual(Credits.percentE2(consumedMs: 259_200, windowMs: month, steps: cloud), 0)
        XCTAssertEqual(Credits.percentE2(consumedMs: 259_201, windowMs: month, steps: cloud), 1000)
        // 99%: 25_920_000 ms
        XCTAssertEqual(Credits.percentE2(consumedMs: 25_920_000, windowMs: month, steps: cloud), 1000)
        XCTAssertEqual(Credits.percentE2(consumedMs: 25_920_001, windowMs: month, steps: cloud), 2500)
        // 95%: 129_600_000 ms
        XCTAssertEqual(Credits.percentE2(consumedMs: 129_600_000, windowMs: month, steps: cloud), 2500)
        XCTAssertEqual(Credits.percentE2(consumedMs: 129_600_001, windowMs: month, steps: cloud), 10_000)
        XCTAssertEqual(Credits.percentE2(consumedMs: 5, windowMs: 0, steps: cloud), 0)
    }

    func testAmountRoundingAndCurrencies() {
        // 1,999.99 EUR × 10% = 199.999 -> 200.00 EUR (half up to the cent)
        XCTAssertEqual(Credits.amount(feeMinor: 199_999, percentE2: 1000, capPercentE2: 10_000, alreadyCreditedMinor: 0),
                       20_000)
        XCTAssertEqual(Credits.amount(feeMinor: 199_995, percentE2: 1000, capPercentE2: 10_000, alreadyCreditedMinor: 0),
                       20_000)  // 19_999.5 -> up
        XCTAssertEqual(Credits.amount(feeMinor: 199_994, percentE2: 1000, capPercentE2: 10_000, alreadyCreditedMinor: 0),
                       19_999)  // 19_999.4 -> down
        // JPY (0 decimals): 999 × 10% = 99.9 -> 100 JPY; 150,000 × 25% = 37,500 JPY
        XCTAssertEqual(Credits.amount(feeMinor: 999, percentE2: 1000, capPercentE2: 10_000, alreadyCreditedMinor: 0), 100)
        let jpy = Credits.amount(feeMinor: 150_000, percentE2: 2500, capPercentE2: 10_000, alreadyCreditedMinor: 0)
        XCTAssertEqual(Currency.format(minor: jpy, code: "JPY"), "37,500 JPY")
        // BHD (3 decimals): 1,234.567 × 10% = 123.4567 -> 123.457 BHD
        let bhd = Credits.amount(feeMinor: 1_234_567, percentE2: 1000, capPercentE2: 10_000, alreadyCreditedMinor: 0)
        XCTAssertEqual(bhd, 123_457)
        XCTAssertEqual(Currency.format(minor: bhd, code: "BHD"), "123.457 BHD")
        // Large fee: no overflow (9e16 × 10_000 exceeds Int64)
        XCTAssertEqual(Credits.amount(feeMinor: 90_000_000_000_000_000, percentE2: 1000, capPercentE2: 10_000,
                                      alreadyCreditedMinor: 0), 9_000_000_000_000_000)
    }

    func testCap() {
        // fee 1,000.00 EUR, cap 30% = 300.00, 250.00 (25%) already credited -> room 50.00 (5%) < 100.00 (10%)
        XCTAssertEqual(Credits.amount(feeMinor: 100_000, percentE2: 1000, capPercentE2: 3000, alreadyCreditedMinor: 25_000),
                       5_000)
        XCTAssertEqual(Credits.amount(feeMinor: 100_000, percentE2: 1000, capPercentE2: 3000, alreadyCreditedMinor: 30_000), 0)
        XCTAssertEqual(Credits.amount(feeMinor: 100_000, percentE2: 1000, capPercentE2: 3000, alreadyCreditedMinor: 35_000), 0)
        XCTAssertEqual(Credits.amount(feeMinor: 100_000, percentE2: 0, capPercentE2: 3000, alreadyCreditedMinor: 0), 0)
    }

    func testProrationOfAMidMonthSwitch() {
        // April 2026 (30 d), 2,000.00 EUR/month; contract switches on 11 Apr 00:00Z.
        // old: 10/30 × 200_000 = 66_666.67 -> 66_667; new: 20/30 × 200_000 = 133_333.33 -> 133_333; sum 200_000
        let d = SLADomainFixtures.day
        XCTAssertEqual(Credits.proratedFee(feeMinor: 200_000, measuredMs: 10 * d, periodMs: 30 * d), 66_667)
        XCTAssertEqual(Credits.proratedFee(feeMinor: 200_000, measuredMs: 20 * d, periodMs: 30 * d), 133_333)
        XCTAssertEqual(Credits.proratedFee(feeMinor: 200_000, measuredMs: 30 * d, periodMs: 30 * d), 200_000)
        XCTAssertEqual(Credits.proratedFee(feeMinor: 200_000, measuredMs: 5, periodMs: 0), 0)
        // Half up: 3 × 1/2 = 1.5 -> 2
        XCTAssertEqual(Credits.proratedFee(feeMinor: 3, measuredMs: 1, periodMs: 2), 2)
    }

    func testCalculationText() {
        let steps = [CreditStep(availabilityBelowPercent: 99.9, creditPercent: 10)]
        // 9_849_600 / 2_592_000_000 = 0.0038 -> availability 99.62%
        XCTAssertEqual(Credits.calculation(consumedMs: 9_849_600, windowMs: month, steps: steps, feeMinor: 200_000,
                                           currency: "EUR"),
                       "availability 99.62% < 99.9% -> 10% of 2,000.00 EUR = 200.00 EUR (cap 100%)")
        XCTAssertEqual(Credits.calculation(consumedMs: 9_849_600, windowMs: month, steps: steps, feeMinor: 100_000,
                                           currency: "EUR", capPercentE2: 3000, alreadyCreditedMinor: 25_000),
                       "availability 99.62% < 99.9% -> 10% of 1,000.00 EUR = 100.00 EUR, capped to 50.00 EUR "
                           + "(cap 30%, 250.00 EUR already credited)")
        XCTAssertEqual(Credits.calculation(consumedMs: 0, windowMs: month, steps: steps, feeMinor: 200_000, currency: "EUR"),
                       "availability 100% >= 99.9% -> no credit")
    }
}
