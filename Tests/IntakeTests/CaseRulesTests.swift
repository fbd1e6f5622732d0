import Foundation
import XCTest
@testable import Intake
@testable import IntakeDomain

final class CaseRulesTests: XCTestCase {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let alice = "agents/alice"
    let bob = "agents/bob"

    func t(_ minutes: Double) -> Date { t0.addingTimeInterval(minutes * 60) }
    func ref(_ n: Int, _ minutes: Double) -> ReportRef { ReportRef(name: "reports/r\(n)", receiveTime: t(minutes)) }

    func openCase(_ name: String = "cases/c1", customer: String = "customers/acme", reports: Int = 3) throws -> CaseRecord {
        var c = CaseRules.open(name: name, customer: customer, firstReport: ref(1, 0),
                               firstReportText: "\n  Checkout fails with 500  \nmore detail", owner: alice,
                               symptom: .errors, actor: alice, at: t(0))
        for i in stride(from: 2, through: reports, by: 1) {
            c = try CaseRules.addReport(c, report: ReportRef(name: "\(name)-r\(i)", receiveTime: t(Double(i))),
                                        actor: "services/intake", at: t(Double(i)))
        }
        return c
    }

    func closed() throws -> CaseRecord {
        try CaseRules.close(try openCase(), outcome: .resolvedDirectly, actor: alice, at: t(30))
    }

    func merged() throws -> CaseRecord {
        try CaseRules.merge(survivor: try openCase("cases/s"), sources: [try openCase("cases/m")], actor: alice,
                            at: t(30)).merged[0]
    }

    func awaiting() throws -> CaseRecord {
        try CaseRules.awaitCustomerNotice(try openCase(), incident: "incidents/i1", actor: "services/correlation",
                                          at: t(20))
    }

    func assertState<T>(_ expression: @autoclosure () throws -> T, _ state: CaseState, operation: String,
                        file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), file: file, line: line) { error in
            guard let e = error as? CaseRuleError, case .invalidState(_, let s, let op, _) = e else {
                return XCTFail("unexpected \(error)", file: file, line: line)
            }
            XCTAssertEqual(s, state, file: file, line: line)
            XCTAssertEqual(op, operation, file: file, line: line)
            XCTAssertEqual(e.kind, .failedPrecondition, file: file, line: line)
            XCTAssertEqual(e.preconditionViolations.first?.type, "STATE", file: file, line: line)
            XCTAssertTrue(e.fieldViolations.isEmpty, file: file, line: line)
        }
    }

    func assertInvalid<T>(_ expression: @autoclosure () throws -> T, _ expected: CaseRuleError, field: String,
                          file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), file: file, line: line) { error in
            XCTAssertEqual(error as? CaseRuleError, expected, file: file, line: line)
            XCTAssertEqual((error as? CaseRuleError)?.kind, .invalidArgument, file: file, line: line)
            XCTAssertEqual((error as? CaseRuleError)?.fieldViolations.map(\.field), [field], file: file, line: line)
        }
    }

    // MARK: open / add report

    func testOpenOwnedByFirstAgentWithHistoryAndTitle() throws {
        let c = CaseRules.open(name: "cases/c1", customer: "customers/acme", firstReport: ref(1, 0),
                               firstReportText: "\n  Checkout fails with 500  \nmore detail", owner: alice,
                               actor: alice, at: t(0))
        XCTAssertEqual(c.state, .open)
        XCTAssertEqual(c.owner, alice)
        XCTAssertEqual(c.title, "Checkout fails with 500")
        XCTAssertEqual(c.reportNames, ["reports/r1"])
        XCTAssertEqual(c.history, [CaseHistoryEntry(action: .opened, state: .open, actor: alice, time: t(0),
                                                    related: ["reports/r1", alice])])
        XCTAssertEqual(CaseRules.defaultTitle(String(repeating: "x", count: 300)).count, 120)
        // The first line with text, trimmed of whitespace, after blank
        // lines of any newline kind.
        XCTAssertEqual(CaseRules.defaultTitle(" \t\r\n\u{2028}\u{00A0} Checkout fails\u{3000} \r\nsecond"), "Checkout fails")
        XCTAssertEqual(CaseRules.defaultTitle("\n\n\t \n"), "")
        XCTAssertEqual(CaseRules.defaultTitle(""), "")
        XCTAssertEqual(CaseRules.defaultTitle("one"), "one")
        XCTAssertEqual(CaseRules.defaultTitle("e\u{301}" + String(repeating: "é", count: 130)).count, 120)
        // The same as the definition over Characters for a mixed text.
        for text in ["  a b \n c", "\u{85}x\u{2029}y", "\r\n\r\n  zz\t\t\n", "\u{1F600} smile \u{200B}\n"] {
            let reference = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                .first { !$0.isEmpty } ?? ""
            XCTAssertEqual(CaseRules.defaultTitle(text), reference, text.debugDescription)
        }
    }

    func testAddReportKeepsOwnerAndOrdersOldestFirst() throws {
        var c = try openCase(reports: 1)
        c = try CaseRules.addReport(c, report: ref(3, 10), actor: bob, at: t(10))
        c = try CaseRules.addReport(c, report: ref(2, 5), actor: bob, at: t(11))  // back-filled
        XCTAssertEqual(c.reportNames, ["reports/r1", "reports/r2", "reports/r3"])
        XCTAssertEqual(c.owner, alice, "another agent's duplicate does not take the case over")
        XCTAssertEqual(c.history.last, CaseHistoryEntry(action: .reportAdded, state: .open, actor: bob, time: t(11),
                                                        related: ["reports/r2"]))
        XCTAssertThrowsError(try CaseRules.addReport(c, report: ref(2, 5), actor: bob, at: t(12))) { error in
            XCTAssertEqual(error as? CaseRuleError, .reportAlreadyInCase(report: "reports/r2", case: "cases/c1"))
            XCTAssertEqual((error as? CaseRuleError)?.kind, .failedPrecondition)
        }
    }

    func testAddReportRefusedUnlessOpen() throws {
        assertState(try CaseRules.addReport(try closed(), report: ref(9, 40), actor: bob, at: t(40)), .closed,
                    operation: "adding a report")
        assertState(try CaseRules.addReport(try merged(), report: ref(9, 40), actor: bob, at: t(40)), .merged,
                    operation: "adding a report")
        assertState(try CaseRules.addReport(try awaiting(), report: ref(9, 40), actor: bob, at: t(40)),
                    .awaitingCustomerNotice, operation: "adding a report")
    }

    // MARK: assign

    func testAssign() throws {
        let c = try CaseRules.assign(try openCase(), to: bob, note: "shift change", actor: alice, at: t(5))
        XCTAssertEqual(c.owner, bob)
        XCTAssertEqual(c.history.last, CaseHistoryEntry(action: .assigned, state: .open, actor: alice, time: t(5),
                                                        related: [bob], note: "shift change"))
        let same = try CaseRules.assign(c, to: bob, actor: alice, at: t(6))
        XCTAssertEqual(same, c, "assigning the current owner is a no-op")
        let w = try CaseRules.assign(try awaiting(), to: bob, actor: alice, at: t(25))
        XCTAssertEqual(w.owner, bob)
        XCTAssertEqual(w.state, .awaitingCustomerNotice)
    }

    func testAssignRefused() throws {
        assertState(try CaseRules.assign(try closed(), to: bob, actor: alice, at: t(40)), .closed,
                    operation: "assigning an owner")
        assertState(try CaseRules.assign(try merged(), to: bob, actor: alice, at: t(40)), .merged,
                    operation: "assigning an owner")
        assertInvalid(try CaseRules.assign(try openCase(), to: "bob", actor: alice, at: t(40)),
                      .invalidOwner(field: "owner"), field: "owner")
    }

    // MARK: merge

    func testMerge() throws {
        let survivor = try openCase("cases/s", reports: 2)
        var source = try openCase("cases/m", reports: 2)
        source.incidents = ["incidents/i1"]
        let result = try CaseRules.merge(survivor: survivor, sources: [source], note: "same outage", actor: bob, at: t(30))
        XCTAssertEqual(result.survivor.state, .open)
        XCTAssertEqual(result.survivor.owner, alice)
        XCTAssertEqual(result.survivor.reports.count, 4)
        XCTAssertEqual(result.survivor.reports, result.survivor.reports.sorted { $0.receiveTime < $1.receiveTime })
        XCTAssertEqual(result.survivor.incidents, ["incidents/i1"])
        XCTAssertEqual(result.survivor.history.last,
                       CaseHistoryEntry(action: .mergedIn, state: .open, actor: bob, time: t(30), related: ["cases/m"],
                                        note: "same outage"))
        let m = result.merged[0]
        XCTAssertEqual(m.state, .merged)
        XCTAssertEqual(m.mergedInto, "cases/s")
        XCTAssertEqual(m.reports, [])
        XCTAssertEqual(m.closeTime, t(30))
        XCTAssertEqual(m.history.last?.action, .mergedAway)
        XCTAssertEqual(m.history.last?.related.first, "cases/s")
    }

    func testMergeSeveralAndIntoAwaitingCase() throws {
        let result = try CaseRules.merge(survivor: try awaiting(), sources: [try openCase("cases/a"), try openCase("cases/b")],
                                         actor: bob, at: t(30))
        XCTAssertEqual(result.merged.map(\.state), [.merged, .merged])
        XCTAssertEqual(result.survivor.state, .awaitingCustomerNotice)
        XCTAssertEqual(result.survivor.reports.count, 9)
    }

    func testMergeRefused() throws {
        let s = try openCase("cases/s")
        assertInvalid(try CaseRules.merge(survivor: s, sources: [], actor: bob, at: t(30)), .noMergeSources,
                      field: "source_cases")
        assertInvalid(try CaseRules.merge(survivor: s, sources: [s], actor: bob, at: t(30)),
                      .mergeIntoSelf(case: "cases/s"), field: "source_cases")
        let m = try openCase("cases/m")
        assertInvalid(try CaseRules.merge(survivor: s, sources: [m, m], actor: bob, at: t(30)),
                      .duplicateMergeSource(case: "cases/m"), field: "source_cases")
        let other = try openCase("cases/o", customer: "customers/globex")
        assertInvalid(try CaseRules.merge(survivor: s, sources: [other], actor: bob, at: t(30)),
                      .customerMismatch(case: "cases/o", expected: "customers/acme", actual: "customers/globex"),
                      field: "source_cases")
        assertState(try CaseRules.merge(survivor: try closed(), sources: [m], actor: bob, at: t(40)), .closed,
                    operation: "merging into a case")
        assertState(try CaseRules.merge(survivor: s, sources: [try closed()], actor: bob, at: t(40)), .closed,
                    operation: "merging a case away")
        assertState(try CaseRules.merge(survivor: s, sources: [try merged()], actor: bob, at: t(40)), .merged,
                    operation: "merging a case away")
        assertState(try CaseRules.merge(survivor: try merged(), sources: [try openCase("cases/x")], actor: bob, at: t(40)), .merged,
                    operation: "merging into a case")
    }

    // MARK: split

    func testSplit() throws {
        let c = try openCase(reports: 3)
        let result = try CaseRules.split(c, reports: ["cases/c1-r3"], newCaseName: "cases/c2", newOwner: bob,
                                         newTitle: "Login problem", note: "different issue", actor: alice, at: t(30))
        XCTAssertEqual(result.original.reportNames, ["reports/r1", "cases/c1-r2"])
        XCTAssertEqual(result.newCase.reportNames, ["cases/c1-r3"])
        XCTAssertEqual(result.newCase.owner, bob)
        XCTAssertEqual(result.newCase.state, .open)
        XCTAssertEqual(result.newCase.title, "Login problem")
        XCTAssertEqual(result.newCase.customer, c.customer)
        XCTAssertEqual(result.original.history.last?.action, .splitOff)
        XCTAssertEqual(result.original.history.last?.related, ["cases/c2", "cases/c1-r3"])
        XCTAssertEqual(result.newCase.history, [
            CaseHistoryEntry(action: .splitFrom, state: .open, actor: alice, time: t(30),
                             related: ["cases/c1", "cases/c1-r3"], note: "different issue"),
        ])
        let defaulted = try CaseRules.split(c, reports: ["reports/r1"], newCaseName: "cases/c3", actor: alice, at: t(30))
        XCTAssertEqual(defaulted.newCase.owner, alice, "the new case defaults to the original owner")
        XCTAssertEqual(defaulted.newCase.title, c.title)
    }

    func testSplitRefused() throws {
        let c = try openCase(reports: 2)
        assertInvalid(try CaseRules.split(c, reports: [], newCaseName: "cases/n", actor: alice, at: t(30)),
                      .noReportsToSplit, field: "reports")
        assertInvalid(try CaseRules.split(c, reports: ["reports/zz"], newCaseName: "cases/n", actor: alice, at: t(30)),
                      .reportNotInCase(report: "reports/zz", case: "cases/c1"), field: "reports")
        assertInvalid(try CaseRules.split(c, reports: ["reports/r1", "reports/r1"], newCaseName: "cases/n", actor: alice,
                                          at: t(30)),
                      .duplicateReport(report: "reports/r1"), field: "reports")
        assertInvalid(try CaseRules.split(c, reports: ["reports/r1", "cases/c1-r2"], newCaseName: "cases/n",
                                          actor: alice, at: t(30)),
                      .splitWouldEmptyCase(case: "cases/c1"), field: "reports")
        assertInvalid(try CaseRules.split(c, reports: ["reports/r1"], newCaseName: "cases/n", newOwner: "bob",
                                          actor: alice, at: t(30)),
                      .invalidOwner(field: "new_owner"), field: "new_owner")
        assertState(try CaseRules.split(try awaiting(), reports: ["reports/r1"], newCaseName: "cases/n", actor: alice,
                                        at: t(30)),
                    .awaitingCustomerNotice, operation: "splitting")
        assertState(try CaseRules.split(try closed(), reports: ["reports/r1"], newCaseName: "cases/n", actor: alice,
                                        at: t(40)),
                    .closed, operation: "splitting")
        let single = try openCase(reports: 1)
        assertInvalid(try CaseRules.split(single, reports: ["reports/r1"], newCaseName: "cases/n", actor: alice, at: t(9)),
                      .splitWouldEmptyCase(case: "cases/c1"), field: "reports")
    }

    // MARK: close / await notice / notified / reopen

    func testCloseWithEveryOutcome() throws {
        for outcome in CaseOutcome.known where outcome.isSpecified {
            let c = try CaseRules.close(try openCase(), outcome: outcome, note: "done", actor: alice, at: t(30))
            XCTAssertEqual(c.state, .closed)
            XCTAssertEqual(c.outcome, outcome)
            XCTAssertEqual(c.outcomeNote, "done")
            XCTAssertEqual(c.closeTime, t(30))
            XCTAssertEqual(c.history.last, CaseHistoryEntry(action: .closed, state: .closed, actor: alice, time: t(30),
                                                            note: "done"))
        }
    }

    func testCloseRefused() throws {
        assertInvalid(try CaseRules.close(try openCase(), outcome: .unspecified, actor: alice, at: t(30)),
                      .outcomeRequired(.unspecified), field: "outcome")
        assertInvalid(try CaseRules.close(try openCase(), outcome: .unrecognized(17), actor: alice, at: t(30)),
                      .outcomeRequired(.unrecognized(17)), field: "outcome")
        assertState(try CaseRules.close(try closed(), outcome: .withdrawn, actor: alice, at: t(40)), .closed,
                    operation: "closing")
        assertState(try CaseRules.close(try merged(), outcome: .withdrawn, actor: alice, at: t(40)), .merged,
                    operation: "closing")
    }

    func testCloseWaitsForCustomerNoticeWhenAnIncidentWasResolved() throws {
        let waiting = try CaseRules.close(try openCase(), outcome: .resolvedByIncident, pendingCustomerNotice: true,
                                          actor: alice, at: t(30))
        XCTAssertEqual(waiting.state, .awaitingCustomerNotice)
        XCTAssertEqual(waiting.outcome, .resolvedByIncident)
        XCTAssertNil(waiting.closeTime)
        XCTAssertEqual(waiting.history.last?.action, .awaitingCustomerNotice)
        let done = try CaseRules.customerNotified(waiting, notifyTime: t(50), actor: "services/followup", at: t(51))
        XCTAssertEqual(done.state, .closed)
        XCTAssertEqual(done.customerNotifyTime, t(50))
        XCTAssertEqual(done.closeTime, t(51))
        XCTAssertEqual(done.history.suffix(2).map(\.action), [.customerNotified, .closed])

        // Told in person: closes at once.
        let told = try CaseRules.close(try openCase(), outcome: .resolvedByIncident, customerNotifyTime: t(29),
                                       pendingCustomerNotice: true, actor: alice, at: t(30))
        XCTAssertEqual(told.state, .closed)
        XCTAssertEqual(told.customerNotifyTime, t(29))
        // Closing an awaiting case with a notify time closes it.
        let closedFromAwaiting = try CaseRules.close(try awaiting(), outcome: .resolvedByIncident,
                                                     customerNotifyTime: t(31), pendingCustomerNotice: true,
                                                     actor: alice, at: t(32))
        XCTAssertEqual(closedFromAwaiting.state, .closed)
    }

    func testAwaitCustomerNoticeAndNotified() throws {
        let w = try awaiting()
        XCTAssertEqual(w.state, .awaitingCustomerNotice)
        XCTAssertEqual(w.incidents, ["incidents/i1"])
        XCTAssertEqual(w.history.last, CaseHistoryEntry(action: .awaitingCustomerNotice, state: .awaitingCustomerNotice,
                                                        actor: "services/correlation", time: t(20),
                                                        related: ["incidents/i1"]))
        let closedByNotice = try CaseRules.customerNotified(w, notifyTime: t(40), actor: "services/followup", at: t(41))
        XCTAssertEqual(closedByNotice.outcome, .resolvedByIncident)
        XCTAssertEqual(closedByNotice.state, .closed)
        // On an open case the notice is only recorded.
        let open = try CaseRules.customerNotified(try openCase(), notifyTime: t(40), actor: "services/followup", at: t(41))
        XCTAssertEqual(open.state, .open)
        XCTAssertEqual(open.customerNotifyTime, t(40))
        XCTAssertEqual(open.history.last?.action, .customerNotified)

        assertState(try CaseRules.awaitCustomerNotice(w, incident: "incidents/i2", actor: "services/c", at: t(30)),
                    .awaitingCustomerNotice, operation: "waiting for customer notice")
        assertState(try CaseRules.awaitCustomerNotice(try closed(), incident: "incidents/i2", actor: "services/c",
                                                      at: t(40)),
                    .closed, operation: "waiting for customer notice")
        assertState(try CaseRules.customerNotified(try closed(), notifyTime: t(40), actor: "services/f", at: t(40)),
                    .closed, operation: "recording customer notice")
        assertState(try CaseRules.customerNotified(try merged(), notifyTime: t(40), actor: "services/f", at: t(40)),
                    .merged, operation: "recording customer notice")
    }

    func testReopen() throws {
        let r = try CaseRules.reopen(try closed(), note: "problem is back", actor: bob, at: t(60))
        XCTAssertEqual(r.state, .open)
        XCTAssertEqual(r.outcome, .unspecified)
        XCTAssertNil(r.closeTime)
        XCTAssertEqual(r.owner, alice, "ownership survives a reopen")
        XCTAssertEqual(r.history.last, CaseHistoryEntry(action: .reopened, state: .open, actor: bob, time: t(60),
                                                        note: "problem is back"))
        assertState(try CaseRules.reopen(try openCase(), actor: bob, at: t(60)), .open, operation: "reopening")
        assertState(try CaseRules.reopen(try merged(), actor: bob, at: t(60)), .merged, operation: "reopening")
        assertState(try CaseRules.reopen(try awaiting(), actor: bob, at: t(60)), .awaitingCustomerNotice,
                    operation: "reopening")
    }

    func testEveryTransitionAppendsHistoryAndUpdatesTime() throws {
        var c = try openCase(reports: 2)
        XCTAssertEqual(c.history.count, 2)
        c = try CaseRules.assign(c, to: bob, actor: alice, at: t(10))
        c = try CaseRules.close(c, outcome: .notReproducible, actor: bob, at: t(20))
        c = try CaseRules.reopen(c, actor: bob, at: t(30))
        XCTAssertEqual(c.history.map(\.action), [.opened, .reportAdded, .assigned, .closed, .reopened])
        XCTAssertEqual(c.history.map(\.time), [t(0), t(2), t(10), t(20), t(30)])
        XCTAssertEqual(c.updateTime, t(30))
        XCTAssertEqual(c.createTime, t(0))
    }

    func testPreconditionDescriptionNamesTheRule() throws {
        do {
            _ = try CaseRules.close(try closed(), outcome: .withdrawn, actor: alice, at: t(40))
            XCTFail("expected an error")
        } catch {
            let v = (error as? CaseRuleError)?.preconditionViolations
            XCTAssertEqual(v, [PreconditionViolation(
                type: "STATE", subject: "cases/c1",
                description: "closing needs the case to be OPEN or AWAITING_CUSTOMER_NOTICE, it is CLOSED")])
        }
    }
}
