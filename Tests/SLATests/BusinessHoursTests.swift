import XCTest
@testable import SLADomain

final class BusinessHoursTests: XCTestCase {
    private typealias F = SLADomainFixtures
    private let berlin = SLADomainFixtures.calendar("Europe/Berlin")
    /// Mon–Fri 09:00–17:00 local, Good Friday and Easter Monday 2026 off.
    private let office = BusinessHours.weekdays(9 * 60..<17 * 60, holidays: ["2026-04-03", "2026-04-06"])

    func testElapsedAcrossWeekend() {
        // Fri 10 Apr 15:00 CEST (13:00Z) .. Mon 13 Apr 10:00 CEST (08:00Z): Fri 15–17 (2 h) + Mon 9–10 (1 h) = 3 h
        let i = Interval(F.utc(2026, 4, 10, 13), F.utc(2026, 4, 13, 8))
        XCTAssertEqual(RestoreClock.elapsed(i, hours: office, calendar: berlin), 3 * F.hour)
        XCTAssertEqual(RestoreClock.elapsed(i, hours: nil, calendar: berlin), 67 * F.hour)  // wall clock
    }

    func testHolidays() {
        // Thu 2 Apr 16:00 CEST .. Tue 7 Apr 10:00 CEST: Thu 16–17 (1 h), Fri holiday, weekend, Mon holiday,
        // Tue 9–10 (1 h) = 2 h
        let i = Interval(F.utc(2026, 4, 2, 14), F.utc(2026, 4, 7, 8))
        XCTAssertEqual(office.duration(i, calendar: berlin), 2 * F.hour)
        // Without holidays: + Fri 8 h + Mon 8 h = 18 h
        XCTAssertEqual(BusinessHours.weekdays(9 * 60..<17 * 60).duration(i, calendar: berlin), 18 * F.hour)
        // An impact that starts on Good Friday 10:00 needs 1 h of business time: Tue 7 Apr 10:00 CEST = 08:00Z
        XCTAssertEqual(office.instant(after: F.utc(2026, 4, 3, 8), businessMs: F.hour, calendar: berlin),
                       F.utc(2026, 4, 7, 8))
    }

    func testDeadlineFridayAfternoon() {
        // 4 h objective from Fri 10 Apr 15:00 CEST: Fri 15–17 = 2 h, Mon 9–11 = 2 h -> Mon 13 Apr 11:00 CEST = 09:00Z
        XCTAssertEqual(RestoreClock.deadline(start: F.utc(2026, 4, 10, 13), limitMs: 4 * F.hour, hours: office,
                                             calendar: berlin), F.utc(2026, 4, 13, 9))
        // Exactly the end of a span: 2 h -> Fri 17:00 CEST = 15:00Z
        XCTAssertEqual(RestoreClock.deadline(start: F.utc(2026, 4, 10, 13), limitMs: 2 * F.hour, hours: office,
                                             calendar: berlin), F.utc(2026, 4, 10, 15))
        // Within hours: Mon 13 Apr 16:30 CEST + 1 h -> Tue 09:30 CEST = 07:30Z
        XCTAssertEqual(RestoreClock.deadline(start: F.utc(2026, 4, 13, 14, 30), limitMs: F.hour, hours: office,
                                             calendar: berlin), F.utc(2026, 4, 14, 7, 30))
        // Wall clock
        XCTAssertEqual(RestoreClock.deadline(start: 1000, limitMs: 4 * F.hour, hours: nil, calendar: berlin),
                       1000 + 4 * F.hour)
    }

    func testDSTWeekend() {
        // Fri 27 Mar 15:00 CET (+1) = 14:00Z; DST starts Sun 29 Mar; Mon 30 Mar 11:00 CEST (+2) = 09:00Z
        let start = F.utc(2026, 3, 27, 14)
        XCTAssertEqual(RestoreClock.deadline(start: start, limitMs: 4 * F.hour, hours: office, calendar: berlin),
                       F.utc(2026, 3, 30, 9))
        let i = Interval(start, F.utc(2026, 3, 30, 9))
        XCTAssertEqual(RestoreClock.elapsed(i, hours: office, calendar: berlin), 4 * F.hour)
        XCTAssertEqual(RestoreClock.elapsed(i, hours: nil, calendar: berlin), 67 * F.hour)  // 3 d − 5 h
        // A 24 h Sunday span: 29 Mar 2026 has 23 h, 25 Oct 2026 has 25 h
        let sundays = BusinessHours(spans: [7: [0..<24 * 60]])
        XCTAssertEqual(sundays.duration(Interval(F.utc(2026, 3, 27), F.utc(2026, 3, 31)), calendar: berlin), 23 * F.hour)
        XCTAssertEqual(sundays.duration(Interval(F.utc(2026, 10, 23), F.utc(2026, 10, 27)), calendar: berlin), 25 * F.hour)
    }

    func testNoSpansAndOverlappingSpans() {
        let none = BusinessHours(spans: [:])
        XCTAssertNil(none.instant(after: 0, businessMs: 1, calendar: berlin))
        XCTAssertEqual(none.duration(Interval(0, F.day * 10), calendar: berlin), 0)
        // Zero-width spans are no spans.
        let empty = BusinessHours(spans: [1: [600..<600]])
        XCTAssertNil(empty.instant(after: 0, businessMs: 1, calendar: berlin))
        // 100,000 business hours at 40 h/week is ~48 years: beyond the 10-year horizon
        XCTAssertNil(office.instant(after: F.utc(2026, 1, 1), businessMs: 100_000 * F.hour, calendar: berlin))
        // Overlapping spans 9–12 and 11–13 count 9–13 once: Monday 13 Apr 2026 -> 4 h
        let overlapping = BusinessHours(spans: [1: [9 * 60..<12 * 60, 11 * 60..<13 * 60]])
        XCTAssertEqual(overlapping.duration(Interval(F.utc(2026, 4, 13), F.utc(2026, 4, 14)), calendar: berlin),
                       4 * F.hour)
    }

    func testDurationText() {
        XCTAssertEqual(DurationText.format(ms: 5 * F.hour + 12 * F.minute), "5h12m")
        XCTAssertEqual(DurationText.format(ms: 45 * F.minute), "45m")
        XCTAssertEqual(DurationText.format(ms: 2 * F.day + 3 * F.hour), "2d3h")
        XCTAssertEqual(DurationText.format(ms: 2 * F.day + 5 * F.minute), "2d")
        XCTAssertEqual(DurationText.format(ms: 30_000), "30s")
        XCTAssertEqual(DurationText.format(ms: 90_000), "1m30s")
        XCTAssertEqual(DurationText.format(ms: 0), "0s")
        XCTAssertEqual(DurationText.format(ms: 999), "0s")
        XCTAssertEqual(DurationText.format(ms: -45 * F.minute), "-45m")
    }
}
