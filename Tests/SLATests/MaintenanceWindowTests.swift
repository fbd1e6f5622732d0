import XCTest
@testable import SLADomain

final class MaintenanceWindowTests: XCTestCase {
    private typealias F = SLADomainFixtures
    private let berlin = SLADomainFixtures.calendar("Europe/Berlin")

    /// Sunday 22 Mar 2026 02:00–04:00 CET (+1) = 01:00Z–03:00Z, weekly.
    private var weekly: MaintenanceWindow {
        MaintenanceWindow(first: Interval(F.utc(2026, 3, 22, 1), F.utc(2026, 3, 22, 3)), recurrence: .weekly)
    }

    func testWeeklyStaysAtLocalWallClockAcrossSpringForward() {
        let occ = weekly.occurrences(in: Interval(F.utc(2026, 3, 20), F.utc(2026, 4, 13)), calendar: berlin)
        XCTAssertEqual(occ, [
            // 22 Mar: 02:00–04:00 CET
            Interval(F.utc(2026, 3, 22, 1), F.utc(2026, 3, 22, 3)),
            // 29 Mar (spring forward at 02:00 CET -> 03:00 CEST): 02:00 does not exist and moves forward
            // to 03:00 CEST = 01:00Z; 04:00 CEST = 02:00Z -> a 1 h occurrence
            Interval(F.utc(2026, 3, 29, 1), F.utc(2026, 3, 29, 2)),
            // 5 and 12 Apr: 02:00–04:00 CEST (+2) = 00:00Z–02:00Z
            Interval(F.utc(2026, 4, 5, 0), F.utc(2026, 4, 5, 2)),
            Interval(F.utc(2026, 4, 12, 0), F.utc(2026, 4, 12, 2)),
        ])
    }

    func testWeeklyAcrossFallBack() {
        // 25 Oct 2026: 03:00 CEST -> 02:00 CET. 02:00 local is ambiguous: Foundation picks the first
        // (CEST, 00:00Z); 04:00 CET = 03:00Z -> a 3 h occurrence. 1 Nov: 02:00–04:00 CET = 01:00Z–03:00Z.
        let occ = weekly.occurrences(in: Interval(F.utc(2026, 10, 18), F.utc(2026, 11, 2)), calendar: berlin)
        XCTAssertEqual(occ, [
            Interval(F.utc(2026, 10, 18, 0), F.utc(2026, 10, 18, 2)),
            Interval(F.utc(2026, 10, 25, 0), F.utc(2026, 10, 25, 3)),
            Interval(F.utc(2026, 11, 1, 1), F.utc(2026, 11, 1, 3)),
        ])
    }

    func testUntilServicesAndOneOff() {
        var w = weekly
        w.until = F.utc(2026, 4, 5, 0)  // the 5 Apr occurrence starts exactly at `until` -> excluded
        XCTAssertEqual(w.occurrences(in: Interval(F.utc(2026, 3, 20), F.utc(2026, 4, 13)), calendar: berlin).count, 2)
        w.services = ["api"]
        XCTAssertTrue(w.applies(toService: "api"))
        XCTAssertFalse(w.applies(toService: "web"))
        XCTAssertTrue(weekly.applies(toService: "web"))

        let once = MaintenanceWindow(first: Interval(F.utc(2026, 5, 1, 10), F.utc(2026, 5, 1, 11)))
        XCTAssertEqual(once.occurrences(in: Interval(F.utc(2026, 5, 1), F.utc(2026, 5, 2)), calendar: berlin),
                       [once.first])
        XCTAssertEqual(once.occurrences(in: Interval(F.utc(2026, 5, 1, 11), F.utc(2026, 5, 2)), calendar: berlin), [])
        // Partial overlap returns the full occurrence.
        XCTAssertEqual(weekly.occurrences(in: Interval(F.utc(2026, 4, 5, 1), F.utc(2026, 4, 5, 1, 1)), calendar: berlin),
                       [Interval(F.utc(2026, 4, 5, 0), F.utc(2026, 4, 5, 2))])
    }

    func testDailyIsBoundedAndFarWindowsAreCheap() {
        let daily = MaintenanceWindow(first: Interval(F.utc(2020, 1, 1, 3), F.utc(2020, 1, 1, 4)), recurrence: .daily)
        let utc = F.calendar("UTC")
        XCTAssertEqual(daily.occurrences(in: Interval(F.utc(2020, 1, 1), F.utc(2060, 1, 1)), calendar: utc).count,
                       MaintenanceWindow.maxOccurrences)
        XCTAssertEqual(daily.occurrences(in: Interval(F.utc(2035, 6, 1), F.utc(2035, 6, 3)), calendar: utc),
                       [Interval(F.utc(2035, 6, 1, 3), F.utc(2035, 6, 1, 4)),
                        Interval(F.utc(2035, 6, 2, 3), F.utc(2035, 6, 2, 4))])
    }

    func testRecurringExclusionInDowntime() {
        // Incident Sun 5 Apr 2026 23:00Z (4 Apr) .. 03:00Z = 4 h; maintenance 00:00Z–02:00Z -> 2 h counted
        let window = berlin.period(.month, containing: F.utc(2026, 4, 10))
        let x = weekly.occurrences(in: window, calendar: berlin)
        let e = [WeightedInterval(Interval(F.utc(2026, 4, 4, 23), F.utc(2026, 4, 5, 3)))]
        XCTAssertEqual(Downtime.consumed(e, exclusions: x, within: window), 7_200_000)
        XCTAssertEqual(Downtime.excludedParts(e, exclusions: x, within: window),
                       [Interval(F.utc(2026, 4, 5, 0), F.utc(2026, 4, 5, 2))])
    }
}
