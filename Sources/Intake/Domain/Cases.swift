// Cases and their state machine, with full-case ownership. Every operation is a pure function
// from the current case(s) to the new ones, appending status-history entries; a refused operation
// throws a `CaseRuleError` and changes nothing.
//
//   OPEN ──assign / add report / split / merge in──▶ OPEN
//   OPEN ──close(outcome), customer already told──▶ CLOSED
//   OPEN ──close(outcome), resolved incident, customer not told yet──▶ AWAITING_CUSTOMER_NOTICE
//   OPEN ──incident resolved──▶ AWAITING_CUSTOMER_NOTICE ──customer notified──▶ CLOSED
//   OPEN / AWAITING_CUSTOMER_NOTICE ──merged into a survivor──▶ MERGED (read-only, final)
//   CLOSED ──reopen──▶ OPEN
import Foundation

/// A report in a case, with the time that orders the case's reports (oldest first).
public struct ReportRef: Hashable, Sendable {
    /// `reports/{id}`.
    public var name: String
    /// The report's `receive_time`.
    public var receiveTime: Date

    /// Creates the value from its fields.
    public init(name: String, receiveTime: Date) {
        self.name = name
        self.receiveTime = receiveTime
    }
}

/// One entry of a case's status history (`liaison.intake.v1.CaseHistoryEntry`).
public struct CaseHistoryEntry: Hashable, Sendable {
    /// What happened.
    public var action: CaseHistoryAction
    /// State after the action.
    public var state: CaseState
    /// `agents/{id}` or `services/{producer}`.
    public var actor: String
    /// When it happened.
    public var time: Date
    /// Related resources: other case of a merge/split, added report, new owner, incident.
    public var related: [String]
    /// Free-text note given with the action.
    public var note: String

    /// Creates the value from its fields.
    public init(action: CaseHistoryAction, state: CaseState, actor: String, time: Date, related: [String] = [],
                note: String = "") {
        self.action = action
        self.state = state
        self.actor = actor
        self.time = time
        self.related = related
        self.note = note
    }
}

/// A case (`liaison.intake.v1.Case`) with its history.
public struct CaseRecord: Hashable, Sendable {
    /// `cases/{id}`.
    public var name: String
    /// `customers/{id}`.
    public var customer: String
    /// Short summary; defaults to the first report's first line.
    public var title: String
    /// Lifecycle state.
    public var state: CaseState
    /// The owning agent, `agents/{id}`: the customer's single point of contact.
    public var owner: String
    /// Reports, oldest first (by receive time, then name).
    public var reports: [ReportRef]
    /// Linked incidents, `incidents/{id}`.
    public var incidents: [String]
    /// Dominant symptom across the reports.
    public var symptom: SymptomKind
    /// Outcome recorded by closing; `.unspecified` while not closed.
    public var outcome: CaseOutcome
    /// Note recorded with the outcome.
    public var outcomeNote: String
    /// For MERGED cases, the survivor.
    public var mergedInto: String
    /// When the customer was last told about the resolution.
    public var customerNotifyTime: Date?
    /// When the case was opened.
    public var createTime: Date
    /// When the case last changed.
    public var updateTime: Date
    /// When the case closed (or was merged away).
    public var closeTime: Date?
    /// Status history, oldest first.
    public var history: [CaseHistoryEntry]
    /// How many stored history entries come before `history` but were not loaded (a join only
    /// appends, so the repository loads none); entry `i` of `history` has position
    /// `historyOffset + i`.
    public var historyOffset = 0

    /// Creates the value from its fields.
    public init(name: String, customer: String, title: String, state: CaseState, owner: String, reports: [ReportRef],
                incidents: [String] = [], symptom: SymptomKind = .unspecified, outcome: CaseOutcome = .unspecified,
                outcomeNote: String = "", mergedInto: String = "", customerNotifyTime: Date? = nil, createTime: Date,
                updateTime: Date, closeTime: Date? = nil, history: [CaseHistoryEntry] = []) {
        self.name = name
        self.customer = customer
        self.title = title
        self.state = state
        self.owner = owner
        self.reports = reports
        self.incidents = incidents
        self.symptom = symptom
        self.outcome = outcome
        self.outcomeNote = outcomeNote
        self.mergedInto = mergedInto
        self.customerNotifyTime = customerNotifyTime
        self.createTime = createTime
        self.updateTime = updateTime
        self.closeTime = closeTime
        self.history = history
    }

    /// The report names, oldest first.
    public var reportNames: [String] { reports.map(\.name) }
}

/// One failed precondition (`google.rpc.PreconditionFailure.Violation`).
public struct PreconditionViolation: Hashable, Sendable {
    /// Kind of precondition, "STATE" for case state rules.
    public var type: String
    /// The resource that failed it, e.g. "cases/c-1".
    public var subject: String
    public var description: String

    /// Creates the value from its fields.
    public init(type: String, subject: String, description: String) {
        self.type = type
        self.subject = subject
        self.description = description
    }
}

/// Why a case operation was refused. `kind` says which gRPC status the handler answers with.
public enum CaseRuleError: Error, Hashable, Sendable {
    /// The case is not in a state that allows `operation` (FAILED_PRECONDITION).
    case invalidState(case: String, state: CaseState, operation: String, allowed: [CaseState])
    /// A case cannot be merged into itself (INVALID_ARGUMENT, field `source_cases`).
    case mergeIntoSelf(case: String)
    /// Merge without source cases (INVALID_ARGUMENT, field `source_cases`).
    case noMergeSources
    /// The same source case listed twice (INVALID_ARGUMENT, field `source_cases`).
    case duplicateMergeSource(case: String)
    /// Cases of different customers cannot be merged (INVALID_ARGUMENT, field `source_cases`).
    case customerMismatch(case: String, expected: String, actual: String)
    /// Split without reports (INVALID_ARGUMENT, field `reports`).
    case noReportsToSplit
    /// A report to split off is not in the case (INVALID_ARGUMENT, field `reports`).
    case reportNotInCase(report: String, case: String)
    /// The same report listed twice (INVALID_ARGUMENT, field `reports`).
    case duplicateReport(report: String)
    /// Splitting every report would leave the original case empty (INVALID_ARGUMENT, field `reports`).
    case splitWouldEmptyCase(case: String)
    /// Closing needs a known, specified outcome (INVALID_ARGUMENT, field `outcome`).
    case outcomeRequired(CaseOutcome)
    /// The owner is not `agents/{id}` (INVALID_ARGUMENT, field `owner` / `new_owner`).
    case invalidOwner(field: String)
    /// The report is already in the case (FAILED_PRECONDITION).
    case reportAlreadyInCase(report: String, case: String)

    /// The gRPC status family of an error.
    public enum Kind: Hashable, Sendable {
        /// INVALID_ARGUMENT with `fieldViolations`.
        case invalidArgument
        /// FAILED_PRECONDITION with `preconditionViolations`.
        case failedPrecondition
    }

    /// Which status the handler answers with.
    public var kind: Kind {
        switch self {
        case .invalidState, .reportAlreadyInCase: .failedPrecondition
        default: .invalidArgument
        }
    }

    /// The BadRequest field violations (empty for FAILED_PRECONDITION errors).
    public var fieldViolations: [FieldViolation] {
        switch self {
        case .mergeIntoSelf(let c):
            [FieldViolation(field: "source_cases", description: "\(c) cannot be merged into itself")]
        case .noMergeSources:
            [FieldViolation(field: "source_cases", description: "required: at least one case to merge")]
        case .duplicateMergeSource(let c):
            [FieldViolation(field: "source_cases", description: "\(c) is listed more than once")]
        case .customerMismatch(let c, let expected, let actual):
            [FieldViolation(field: "source_cases",
                            description: "\(c) belongs to \(actual), not \(expected): only cases of the same customer merge")]
        case .noReportsToSplit:
            [FieldViolation(field: "reports", description: "required: at least one report to move")]
        case .reportNotInCase(let r, let c):
            [FieldViolation(field: "reports", description: "\(r) is not in \(c)")]
        case .duplicateReport(let r):
            [FieldViolation(field: "reports", description: "\(r) is listed more than once")]
        case .splitWouldEmptyCase(let c):
            [FieldViolation(field: "reports", description: "cannot move every report: \(c) must keep at least one")]
        case .outcomeRequired(let o):
            [FieldViolation(field: "outcome",
                            description: o == .unspecified ? "required: the case outcome" : "unknown CaseOutcome \(o.protoName)")]
        case .invalidOwner(let field):
            [FieldViolation(field: field, description: "must be agents/{agent_id}")]
        case .invalidState, .reportAlreadyInCase:
            []
        }
    }

    /// The PreconditionFailure violations (empty for INVALID_ARGUMENT errors).
    public var preconditionViolations: [PreconditionViolation] {
        switch self {
        case .invalidState(let c, let state, let operation, let allowed):
            [PreconditionViolation(type: "STATE", subject: c,
                                   description: "\(operation) needs the case to be "
                                       + allowed.map(\.protoName).joined(separator: " or ")
                                       + ", it is \(state.protoName)")]
        case .reportAlreadyInCase(let r, let c):
            [PreconditionViolation(type: "STATE", subject: c, description: "\(r) is already in the case")]
        default:
            []
        }
    }
}

/// The case state machine.
public enum CaseRules {
    /// Opens a case for its first report. The owner is the report's agent (full-case ownership),
    /// else the customer's owning agent. The title defaults to the first line of `firstReportText`
    /// (at most 120 characters).
    public static func open(name: String, customer: String, firstReport: ReportRef, firstReportText: String = "",
                            owner: String, title: String = "", symptom: SymptomKind = .unspecified, actor: String,
                            at time: Date) -> CaseRecord {
        let derivedTitle = title.isEmpty ? defaultTitle(firstReportText) : title
        return CaseRecord(
            name: name, customer: customer, title: derivedTitle, state: .open, owner: owner, reports: [firstReport],
            symptom: symptom, createTime: time, updateTime: time,
            history: [CaseHistoryEntry(action: .opened, state: .open, actor: actor, time: time,
                                       related: [firstReport.name] + (owner.isEmpty ? [] : [owner]))])
    }

    /// The first non-blank line of `text`, trimmed, cut at 120 characters.
    /// (Whitespace is `CharacterSet.whitespaces`; lines end at any `Character.isNewline`. Scans
    /// only up to that line.)
    public static func defaultTitle(_ text: String) -> String {
        func isNewline(_ s: Unicode.Scalar) -> Bool {
            switch s.value {
            case 0x0A...0x0D, 0x85, 0x2028, 0x2029: true
            default: false
            }
        }
        let whitespace = CharacterSet.whitespaces
        func isBlank(_ s: Unicode.Scalar) -> Bool { whitespace.contains(s) }
        let scalars = text.unicodeScalars
        var i = scalars.startIndex
        while i < scalars.endIndex {
            // One line: [i, end).
            var end = i
            while end < scalars.endIndex, !isNewline(scalars[end]) { end = scalars.index(after: end) }
            var first = i
            while first < end, isBlank(scalars[first]) { first = scalars.index(after: first) }
            var last = end
            while last > first, isBlank(scalars[scalars.index(before: last)]) { last = scalars.index(before: last) }
            if first < last {
                let line = Substring(scalars[first..<last])
                return line.count > 120 ? String(line.prefix(119)) + "…" : String(line)
            }
            i = end < scalars.endIndex ? scalars.index(after: end) : end
        }
        return ""
    }

    /// Adds a report to an OPEN case (duplicate or follow-up). The owner does not change.
    public static func addReport(_ c: CaseRecord, report: ReportRef, actor: String,
                                 at time: Date) throws(CaseRuleError) -> CaseRecord {
        try require(c, in: [.open], for: "adding a report")
        guard !c.reports.contains(where: { $0.name == report.name }) else {
            throw .reportAlreadyInCase(report: report.name, case: c.name)
        }
        var next = c
        next.reports = sorted(c.reports + [report])
        next.updateTime = time
        next.history.append(CaseHistoryEntry(action: .reportAdded, state: .open, actor: actor, time: time,
                                             related: [report.name]))
        return next
    }

    /// Makes `owner` the owning agent. Allowed while OPEN or AWAITING_CUSTOMER_NOTICE; assigning the
    /// current owner changes nothing and adds no history entry.
    public static func assign(_ c: CaseRecord, to owner: String, note: String = "", actor: String,
                              at time: Date) throws(CaseRuleError) -> CaseRecord {
        guard ResourceName.agentId(owner) != nil else { throw .invalidOwner(field: "owner") }
        try require(c, in: [.open, .awaitingCustomerNotice], for: "assigning an owner")
        guard owner != c.owner else { return c }
        var next = c
        next.owner = owner
        next.updateTime = time
        next.history.append(CaseHistoryEntry(action: .assigned, state: c.state, actor: actor, time: time,
                                             related: [owner], note: note))
        return next
    }

    /// The result of a merge.
    public struct MergeResult: Hashable, Sendable {
        /// The surviving case, holding every report.
        public var survivor: CaseRecord
        /// The merged cases, now MERGED, pointing at the survivor, without reports.
        public var merged: [CaseRecord]
    }

    /// Merges `sources` into `survivor`. All must belong to the same customer and be OPEN or
    /// AWAITING_CUSTOMER_NOTICE; the survivor cannot be among the sources. Reports and incidents
    /// move to the survivor (which keeps its owner and state); each source becomes MERGED with
    /// `mergedInto` set and a close time.
    public static func merge(survivor: CaseRecord, sources: [CaseRecord], note: String = "", actor: String,
                             at time: Date) throws(CaseRuleError) -> MergeResult {
        guard !sources.isEmpty else { throw .noMergeSources }
        var seen = Set<String>()
        for s in sources {
            if s.name == survivor.name { throw .mergeIntoSelf(case: s.name) }
            if !seen.insert(s.name).inserted { throw .duplicateMergeSource(case: s.name) }
            if s.customer != survivor.customer {
                throw .customerMismatch(case: s.name, expected: survivor.customer, actual: s.customer)
            }
        }
        let mergeable: [CaseState] = [.open, .awaitingCustomerNotice]
        try require(survivor, in: mergeable, for: "merging into a case")
        for s in sources { try require(s, in: mergeable, for: "merging a case away") }

        var next = survivor
        var merged: [CaseRecord] = []
        for s in sources {
            next.reports = sorted(next.reports + s.reports)
            for incident in s.incidents where !next.incidents.contains(incident) { next.incidents.append(incident) }
            var m = s
            m.state = .merged
            m.mergedInto = survivor.name
            m.reports = []
            m.closeTime = time
            m.updateTime = time
            m.history.append(CaseHistoryEntry(action: .mergedAway, state: .merged, actor: actor, time: time,
                                              related: [survivor.name] + s.reportNames, note: note))
            merged.append(m)
        }
        next.updateTime = time
        next.history.append(CaseHistoryEntry(action: .mergedIn, state: next.state, actor: actor, time: time,
                                             related: sources.map(\.name), note: note))
        return MergeResult(survivor: next, merged: merged)
    }

    /// The result of a split.
    public struct SplitResult: Hashable, Sendable {
        /// The original case without the moved reports.
        public var original: CaseRecord
        /// The new OPEN case holding them.
        public var newCase: CaseRecord
    }

    /// Moves `reports` of an OPEN case into a new OPEN case named `newCaseName`, owned by `newOwner`
    /// (default: the original owner). Each case keeps at least one report.
    public static func split(_ c: CaseRecord, reports: [String], newCaseName: String, newOwner: String = "",
                             newTitle: String = "", note: String = "", actor: String,
                             at time: Date) throws(CaseRuleError) -> SplitResult {
        guard !reports.isEmpty else { throw .noReportsToSplit }
        var seen = Set<String>()
        for r in reports {
            if !seen.insert(r).inserted { throw .duplicateReport(report: r) }
            if !c.reports.contains(where: { $0.name == r }) { throw .reportNotInCase(report: r, case: c.name) }
        }
        guard seen.count < c.reports.count else { throw .splitWouldEmptyCase(case: c.name) }
        if !newOwner.isEmpty && ResourceName.agentId(newOwner) == nil { throw .invalidOwner(field: "new_owner") }
        try require(c, in: [.open], for: "splitting")

        let moved = c.reports.filter { seen.contains($0.name) }
        var original = c
        original.reports = c.reports.filter { !seen.contains($0.name) }
        original.updateTime = time
        original.history.append(CaseHistoryEntry(action: .splitOff, state: .open, actor: actor, time: time,
                                                 related: [newCaseName] + moved.map(\.name), note: note))
        let owner = newOwner.isEmpty ? c.owner : newOwner
        let newCase = CaseRecord(
            name: newCaseName, customer: c.customer, title: newTitle.isEmpty ? c.title : newTitle, state: .open,
            owner: owner, reports: moved, incidents: [], symptom: c.symptom, createTime: time, updateTime: time,
            history: [CaseHistoryEntry(action: .splitFrom, state: .open, actor: actor, time: time,
                                       related: [c.name] + moved.map(\.name), note: note)])
        return SplitResult(original: original, newCase: newCase)
    }

    /// Closes a case with an outcome. Allowed from OPEN and AWAITING_CUSTOMER_NOTICE.
    ///
    /// If `pendingCustomerNotice` (a linked incident was resolved and no follow-up has told the
    /// customer yet) and neither `customerNotifyTime` nor the case's notify time is set, the case
    /// records the outcome but moves to AWAITING_CUSTOMER_NOTICE instead; it closes when the
    /// customer is notified (`customerNotified`). Otherwise it becomes CLOSED.
    public static func close(_ c: CaseRecord, outcome: CaseOutcome, note: String = "", customerNotifyTime: Date? = nil,
                             pendingCustomerNotice: Bool = false, actor: String,
                             at time: Date) throws(CaseRuleError) -> CaseRecord {
        guard outcome.isSpecified else { throw .outcomeRequired(outcome) }
        try require(c, in: [.open, .awaitingCustomerNotice], for: "closing")
        var next = c
        next.outcome = outcome
        next.outcomeNote = note
        next.updateTime = time
        if let told = customerNotifyTime { next.customerNotifyTime = told }
        if pendingCustomerNotice && next.customerNotifyTime == nil {
            next.state = .awaitingCustomerNotice
            if c.state != .awaitingCustomerNotice {
                next.history.append(CaseHistoryEntry(action: .awaitingCustomerNotice, state: next.state, actor: actor,
                                                     time: time, note: note))
            }
            return next
        }
        next.state = .closed
        next.closeTime = time
        next.history.append(CaseHistoryEntry(action: .closed, state: .closed, actor: actor, time: time,
                                             related: [], note: note.isEmpty ? outcome.protoName : note))
        return next
    }

    /// A linked incident was resolved: an OPEN case waits until the customer has been told.
    public static func awaitCustomerNotice(_ c: CaseRecord, incident: String, actor: String,
                                           at time: Date) throws(CaseRuleError) -> CaseRecord {
        try require(c, in: [.open], for: "waiting for customer notice")
        var next = c
        next.state = .awaitingCustomerNotice
        next.updateTime = time
        if !next.incidents.contains(incident) { next.incidents.append(incident) }
        next.history.append(CaseHistoryEntry(action: .awaitingCustomerNotice, state: next.state, actor: actor, time: time,
                                             related: [incident]))
        return next
    }

    /// The customer was told about the resolution (follow-up task completed). An
    /// AWAITING_CUSTOMER_NOTICE case closes, with the outcome recorded earlier or
    /// RESOLVED_BY_INCIDENT; an OPEN case only records the time.
    public static func customerNotified(_ c: CaseRecord, notifyTime: Date, actor: String,
                                        at time: Date) throws(CaseRuleError) -> CaseRecord {
        try require(c, in: [.open, .awaitingCustomerNotice], for: "recording customer notice")
        var next = c
        next.customerNotifyTime = notifyTime
        next.updateTime = time
        if c.state == .awaitingCustomerNotice {
            if !next.outcome.isSpecified { next.outcome = .resolvedByIncident }
            next.history.append(CaseHistoryEntry(action: .customerNotified, state: .closed, actor: actor, time: time))
            next.state = .closed
            next.closeTime = time
            next.history.append(CaseHistoryEntry(action: .closed, state: .closed, actor: actor, time: time,
                                                 note: next.outcome.protoName))
        } else {
            next.history.append(CaseHistoryEntry(action: .customerNotified, state: .open, actor: actor, time: time))
        }
        return next
    }

    /// Reopens a CLOSED case (MERGED cases stay merged): back to OPEN, outcome and close time
    /// cleared, owner unchanged.
    public static func reopen(_ c: CaseRecord, note: String = "", actor: String,
                              at time: Date) throws(CaseRuleError) -> CaseRecord {
        try require(c, in: [.closed], for: "reopening")
        var next = c
        next.state = .open
        next.outcome = .unspecified
        next.outcomeNote = ""
        next.closeTime = nil
        next.customerNotifyTime = nil
        next.updateTime = time
        next.history.append(CaseHistoryEntry(action: .reopened, state: .open, actor: actor, time: time, note: note))
        return next
    }

    private static func require(_ c: CaseRecord, in states: [CaseState], for operation: String) throws(CaseRuleError) {
        guard states.contains(c.state) else {
            throw .invalidState(case: c.name, state: c.state, operation: operation, allowed: states)
        }
    }

    private static func sorted(_ reports: [ReportRef]) -> [ReportRef] {
        reports.sorted { ($0.receiveTime, $0.name) < ($1.receiveTime, $1.name) }
    }
}
