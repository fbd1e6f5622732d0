import XCTest
@testable import SLADomain

final class ContractCalendarTests: XCTestCase {
    private typealias F = SLADomainFixtures
    private let p999 = PercentE4(99.9)

    func testZoneValidation() {
        XCTAssertNil(ContractCalendar(timeZone: "Mars/Olympus_Mons"))
        XCTAssertEqual(ContractCalendar(timeZone: "UTC")?.timeZoneIdentifier, "UTC")
        XCTAssertNotNil(ContractCalendar(timeZone: "Europe/Berlin"))
    }

    func testLeapFebruary2028() {
        let cal = F.calendar("UTC")
        let feb = cal.period(.month, containing: F.utc(2028, 2, 29, 12))
        XCTAssertEqual(feb, Interval(F.utc(2028, 2, 1), F.utc(2028, 3, 1)))
        // 29 days × 86_400_000 = 2_505_600_000 ms
        XCTAssertEqual(feb.length, 2_505_600_000)
        // 99.9%: 2_505_600_000 × 1_000 / 1_000_000 = 2_505_600 ms = 41m45.6s
        XCTAssertEqual(Budget.allowedMs(target: p999, windowMs: feb.length), 2_505_600)
        XCTAssertEqual(2_505_600, 41 * F.minute + 45 * F.second + 600)
    }

    func testBerlinMarchAndOctober2026() {
        let cal = F.calendar("Europe/Berlin")
        // 1 Mar 00:00 CET (+1) = 28 Feb 23:00Z; 1 Apr 00:00 CEST (+2) = 31 Mar 22:00Z (DST from 29 Mar)
        let march = cal.period(.month, containing: F.utc(2026, 3, 15))
        XCTAssertEqual(march, Interval(F.utc(2026, 2, 28, 23), F.utc(2026, 3, 31, 22)))
        // 31 × 86_400_000 − 3_600_000 = 2_674_800_000; 99.9% -> 2_674_800 ms (44m34.8s)
        XCTAssertEqual(march.length, 31 * F.day - F.hour)
        XCTAssertEqual(Budget.allowedMs(target: p999, windowMs: march.length), 2_674_800)

        // 1 Oct 00:00 CEST = 30 Sep 22:00Z; 1 Nov 00:00 CET = 31 Oct 23:00Z (DST ends 25 Oct)
        let october = cal.period(.month, containing: F.utc(2026, 10, 25, 12))
        XCTAssertEqual(october, Interval(F.utc(2026, 9, 30, 22), F.utc(2026, 10, 31, 23)))
        // 31 × 86_400_000 + 3_600_000 = 2_682_000_000; 99.9% -> 2_682_000 ms (44m42s)
        XCTAssertEqual(october.length, 31 * F.day + F.hour)
        XCTAssertEqual(Budget.allowedMs(target: p999, windowMs: october.length), 2_682_000)

        // Boundary: the first instant of April belongs to April, one ms earlier to March.
        XCTAssertEqual(cal.period(.month, containing: F.utc(2026, 3, 31, 22)).start, F.utc(2026, 3, 31, 22))
        XCTAssertEqual(cal.period(.month, containing: F.utc(2026, 3, 31, 22) - 1), march)
    }

    func testNewYorkMarchAndNovember2026() {
        let cal = F.calendar("America/New_York")
        // 1 Mar 00:00 EST (−5) = 05:00Z; 1 Apr 00:00 EDT (−4) = 04:00Z (DST from 8 Mar)
        let march = cal.period(.month, containing: F.utc(2026, 3, 8, 12))
        XCTAssertEqual(march, Interval(F.utc(2026, 3, 1, 5), F.utc(2026, 4, 1, 4)))
        XCTAssertEqual(march.length, 2_674_800_000)  // 31 d − 1 h
        XCTAssertEqual(Budget.allowedMs(target: p999, windowMs: march.length), 2_674_800)
        // 1 Nov 00:00 EDT = 04:00Z (DST ends 02:00 that day); 1 Dec 00:00 EST = 05:00Z
        let november = cal.period(.month, containing: F.utc(2026, 11, 15))
        XCTAssertEqual(november, Interval(F.utc(2026, 11, 1, 4), F.utc(2026, 12, 1, 5)))
        XCTAssertEqual(november.length, 2_595_600_000)  // 30 × 86_400_000 + 3_600_000
        XCTAssertEqual(Budget.allowedMs(target: p999, windowMs: november.length), 2_595_600)  // 43m15.6s
    }

    func testKolkataQuarterAndYear() {
        let cal = F.calendar("Asia/Kolkata")  // +05:30, no DST
        // Q2 2026: 1 Apr 00:00 IST = 31 Mar 18:30Z .. 1 Jul 00:00 IST = 30 Jun 18:30Z; 30+31+30 = 91 days
        let q2 = cal.period(.quarter, containing: F.utc(2026, 5, 10))
        XCTAssertEqual(q2, Interval(F.utc(2026, 3, 31, 18, 30), F.utc(2026, 6, 30, 18, 30)))
        XCTAssertEqual(q2.length, 91 * F.day)
        // One ms before local midnight of 1 Apr is still Q1 (1 Jan 00:00 IST = 31 Dec 2025 18:30Z).
        XCTAssertEqual(cal.period(.quarter, containing: q2.start - 1),
                       Interval(F.utc(2025, 12, 31, 18, 30), q2.start))
        XCTAssertEqual(cal.localDateString(q2.start), "2026-04-01")
        XCTAssertEqual(cal.localDateString(q2.start - 1), "2026-03-31")
        let year = cal.period(.year, containing: F.utc(2026, 7, 1))
        XCTAssertEqual(year, Interval(F.utc(2025, 12, 31, 18, 30), F.utc(2026, 12, 31, 18, 30)))
        XCTAssertEqual(year.length, 365 * F.day)
        // Q4 in UTC: Oct..Dec
        XCTAssertEqual(F.calendar("UTC").period(.quarter, containing: F.utc(2026, 12, 31, 23, 59)),
                       Interval(F.utc(2026, 10, 1), F.utc(2027, 1, 1)))
    }

    func testPeriodsOverlappingAndBounds() {
        let cal = F.calendar("UTC")
        XCTAssertEqual(cal.periods(.month, overlapping: Interval(F.utc(2026, 1, 15), F.utc(2026, 3, 2))),
                       [Interval(F.utc(2026, 1, 1), F.utc(2026, 2, 1)),
                        Interval(F.utc(2026, 2, 1), F.utc(2026, 3, 1)),
                        Interval(F.utc(2026, 3, 1), F.utc(2026, 4, 1))])
        // A window ending exactly at a period start does not overlap that period.
        XCTAssertEqual(cal.periods(.month, overlapping: Interval(F.utc(2026, 1, 15), F.utc(2026, 2, 1))).count, 1)
        XCTAssertEqual(cal.periods(.month, overlapping: Interval(5, 5)), [])
        XCTAssertEqual(cal.periods(.month, overlapping: Interval(F.utc(1900, 1, 1), F.utc(2100, 1, 1))).count, 1200)
        XCTAssertEqual(cal.periods(.year, overlapping: Interval(F.utc(2026, 6, 1), F.utc(2028, 1, 1))).count, 2)
    }

    func testLocalDaysAcrossDST() {
        let cal = F.calendar("Europe/Berlin")
        // 29 Mar 2026 starts 00:00 CET = 28 Mar 23:00Z; the next day starts 00:00 CEST = 29 Mar 22:00Z (23 h day)
        let d = cal.localDayStart(containing: F.utc(2026, 3, 29, 12))
        XCTAssertEqual(d, F.utc(2026, 3, 28, 23))
        XCTAssertEqual(cal.nextLocalDayStart(after: d) - d, 23 * F.hour)
        XCTAssertEqual(cal.localDateString(F.utc(2026, 3, 28, 23)), "2026-03-29")
        XCTAssertEqual(cal.localDateString(F.utc(2026, 3, 28, 22, 59)), "2026-03-28")
        XCTAssertEqual(cal.isoWeekday(d), 7)  // Sunday
    }
}
