// IntakeRepository: cases (load, lock with etag, history pages, mutations with their events).
import IntakeDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf

extension IntakeRepository {
    // MARK: - Cases

    static let caseColumns = """
        id, customer_id, title, state, owner, symptom, outcome, outcome_note, merged_into, incidents,
        customer_notify_time, close_time, version, create_time, update_time
        """
    /// How many columns `caseColumns` names.
    static let caseColumnCount = caseColumns.split(separator: ",").count

    /// Loads a case with its reports and history (optionally locking the row).
    static func loadCase(_ c: PostgresConnection, id: String, lock: Bool) throws -> (CaseRecord, Int64)? {
        try caseFrom(try c.pipeline(loadCaseStatements(id: id, lock: lock)))
    }

    /// The three reads of `loadCase` (row, reports with their symptoms, history), to send in one
    /// pipeline. Without `history`, the third read only counts the entries (an index probe), for
    /// operations that only append to it. With `candidates`, the row ends with `cases.candidates`
    /// (column `caseColumnCount`).
    static func loadCaseStatements(id: String, lock: Bool, history: Bool = true, candidates: Bool = false)
        -> [(sql: String, parameters: [any PostgresBindable])] {
        [
            ("SELECT \(caseColumns)\(candidates ? ", candidates" : "") FROM cases WHERE id = $1" + (lock ? " FOR UPDATE" : ""),
             [id]),
            ("SELECT id, receive_time, symptom FROM reports WHERE case_id = $1 ORDER BY receive_time, id", [id]),
            history
                ? ("SELECT action, state, actor, time, related, note FROM case_history WHERE case_id = $1 ORDER BY seq", [id])
                : ("SELECT coalesce(max(seq) + 1, 0) FROM case_history WHERE case_id = $1", [id]),
        ]
    }

    /// A case from the results of `loadCaseStatements`; nil when the row does not exist.
    static func caseFrom(_ results: [PostgresResult], history loaded: Bool = true) throws -> (CaseRecord, Int64)? {
        guard let row = results[0].first else { return nil }
        let reports = try results[1].rows.map {
            ReportRef(name: "reports/" + (try $0.decode(String.self, 0)), receiveTime: try $0.decode(Date.self, 1))
        }
        guard loaded else {
            var record = try caseRecord(row, reports: reports, history: [])
            record.historyOffset = try results[2].first!.decode(Int.self, 0)
            return (record, try row.decode(Int64.self, 12))
        }
        let history = try results[2].rows.map { try historyEntry($0) }
        let record = try caseRecord(row, reports: reports, history: history)
        return (record, try row.decode(Int64.self, 12))
    }

    /// A case from a row of `caseColumns` with its reports and history.
    static func caseRecord(_ row: PostgresRow, reports: [ReportRef], history: [CaseHistoryEntry]) throws -> CaseRecord {
        let state = try row.decode(String.self, 3)
        return CaseRecord(
            name: "cases/" + (try row.decode(String.self, 0)), customer: "customers/" + (try row.decode(String.self, 1)),
            title: try row.decode(String.self, 2),
            state: CaseState.known.first { $0.protoName == state } ?? .unspecified,
            owner: try row.decode(String.self, 4), reports: reports, incidents: try row.decode(TextArray.self, 9).values,
            symptom: symptom(named: try row.decode(String.self, 5)), outcome: CaseOutcome(rawValue: try row.decode(Int.self, 6)),
            outcomeNote: try row.decode(String.self, 7), mergedInto: try row.decode(String.self, 8),
            customerNotifyTime: try row.decode(Date?.self, 10), createTime: try row.decode(Date.self, 13),
            updateTime: try row.decode(Date.self, 14), closeTime: try row.decode(Date?.self, 11), history: history)
    }

    /// Reads cases by id (without history), in the order given; missing ids are skipped.
    func cases(ids: [String]) async throws -> [Liaison_Intake_V1_Case] {
        try await pool.withConnection { c in
            // At most `maxListedReports` per case (the oldest), with each case's total.
            var reports: [String: [ReportRef]] = [:]
            var counts: [String: Int] = [:]
            for row in try c.query("""
                SELECT case_id, id, receive_time, n FROM (
                    SELECT case_id, id, receive_time, count(*) OVER (PARTITION BY case_id) AS n,
                           row_number() OVER (PARTITION BY case_id ORDER BY receive_time, id) AS k
                    FROM reports WHERE case_id = ANY($1)) t
                WHERE k <= $2 ORDER BY case_id, receive_time, id
                """, [TextArray(ids), Mapping.maxListedReports]).rows {
                let caseID = try row.decode(String.self, 0)
                reports[caseID, default: []].append(
                    ReportRef(name: "reports/" + (try row.decode(String.self, 1)), receiveTime: try row.decode(Date.self, 2)))
                counts[caseID] = try row.decode(Int.self, 3)
            }
            var byID: [String: Liaison_Intake_V1_Case] = [:]
            for row in try c.query("SELECT \(Self.caseColumns) FROM cases WHERE id = ANY($1)", [TextArray(ids)]).rows {
                let id = try row.decode(String.self, 0)
                let record = try Self.caseRecord(row, reports: reports[id] ?? [], history: [])
                byID[id] = Mapping.proto(record, version: try row.decode(Int64.self, 12), reportCount: counts[id] ?? 0)
            }
            return ids.compactMap { byID[$0] }
        }
    }

    /// Writes a case after a domain operation: the row (inserted, or updated to `version`), the new
    /// history entries, and the `case_id` of reports that moved into it.
    /// `moveReports` false skips the report update when the caller writes the reports itself; it
    /// then passes the case's `candidates` (a report opening or joining the case), which are
    /// written with the row. Otherwise, when the case's reports changed, PostgreSQL recomputes
    /// its stored candidates from `reports` after the move (`intake_case_candidates`): a caller
    /// moving reports between cases saves the case receiving them first (split), or leaves the
    /// one giving them up empty (merge).
    static func saveCase(_ c: some SQLWriter, old: CaseRecord?, new: CaseRecord, version: Int64,
                         moveReports: Bool = true, candidates: CaseCandidates? = nil) throws {
        let id = ResourceName.caseId(new.name)!
        let values: [any PostgresBindable] = [
            id, ResourceName.customerId(new.customer)!, new.title, new.state.protoName, new.owner, new.symptom.protoName,
            new.outcome.rawValue, new.outcomeNote, new.mergedInto, TextArray(new.incidents), new.customerNotifyTime,
            new.closeTime, version, new.createTime, new.updateTime,
        ]
        if let candidates {
            let values = values + [ByteA(candidates.encoded())]
            if old == nil {
                try c.write("""
                    INSERT INTO cases (\(caseColumns), candidates)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                    """, values)
            } else {
                try c.write("UPDATE cases SET \(caseUpdateAssignments), candidates = $16 WHERE id = $1", values)
            }
        } else if old == nil {
            try c.write("INSERT INTO cases (\(caseColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                        values)
        } else {
            try c.write("UPDATE cases SET \(caseUpdateAssignments) WHERE id = $1", values)
        }
        // Positions already stored; `new` carries the same offset as `old` (see historyOffset).
        let stored = old.map { $0.historyOffset + $0.history.count } ?? 0
        for (i, h) in new.history.enumerated() where new.historyOffset + i >= stored {
            try c.write("""
                INSERT INTO case_history (case_id, seq, action, state, actor, time, related, note)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                """, [id, new.historyOffset + i, h.action.rawValue, h.state.rawValue, h.actor, h.time, TextArray(h.related), h.note])
        }
        guard moveReports else { return }
        let oldReports = Set(old?.reportNames ?? [])
        let moved = new.reportNames.filter { !oldReports.contains($0) }.compactMap(ResourceName.reportId)
        if !moved.isEmpty {
            try c.write("UPDATE reports SET case_id = $1, update_time = $2 WHERE id = ANY($3) AND case_id <> $1",
                        [id, new.updateTime, TextArray(moved)])
        }
        if candidates == nil && oldReports != Set(new.reportNames) {
            try c.write(new.reportNames.isEmpty
                            ? "UPDATE cases SET candidates = '' WHERE id = $1"
                            : "UPDATE cases SET candidates = intake_case_candidates(id) WHERE id = $1", [id])
        }
    }

    static let caseUpdateAssignments = """
        customer_id = $2, title = $3, state = $4, owner = $5, symptom = $6, outcome = $7, outcome_note = $8,
        merged_into = $9, incidents = $10, customer_notify_time = $11, close_time = $12, version = $13,
        create_time = $14, update_time = $15
        """

    /// Reads one case.
    /// Reads one case: its row, the first `Mapping.maxListedReports` reports with their total,
    /// and no history (ListCaseHistory pages through it), whatever the case's size.
    func getCase(id: String) async throws -> Liaison_Intake_V1_Case? {
        try await pool.withConnection { c in
            var statements = Self.loadCaseStatements(id: id, lock: false, history: false)
            statements[1] = ("""
                SELECT id, receive_time, symptom, count(*) OVER () FROM reports WHERE case_id = $1
                ORDER BY receive_time, id LIMIT $2
                """, [id, Mapping.maxListedReports])
            let results = try c.pipeline(statements)
            guard let (record, version) = try Self.caseFrom(results, history: false) else { return nil }
            let total = try results[1].first?.decode(Int.self, 3) ?? 0
            return Mapping.proto(record, version: version, reportCount: total)
        }
    }

    /// Reads a case's history.
    func caseHistory(id: String) async throws -> [CaseHistoryEntry]? {
        try await pool.withConnection { c in try Self.loadCase(c, id: id, lock: false)?.0.history }
    }

    /// One page of a case's history: the entries from position `from` on, at most `limit`, and
    /// whether more follow; nil when the case does not exist. Reads only the page (an index range
    /// of `case_history`), however long the history is.
    func caseHistoryPage(id: String, from: Int, limit: Int) async throws -> (entries: [(Int, CaseHistoryEntry)], more: Bool)? {
        try await pool.transaction(.repeatableRead) { c in
            guard try c.query("SELECT 1 FROM cases WHERE id = $1", [id]).first != nil else { return nil }
            let rows = try c.query("""
                SELECT seq, action, state, actor, time, related, note FROM case_history
                WHERE case_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3
                """, [id, from, limit + 1]).rows
            let entries = try rows.prefix(limit).map { r in
                (try r.decode(Int.self, 0), try Self.historyEntry(r, offset: 1))
            }
            return (entries, rows.count > limit)
        }
    }

    /// A `case_history` entry from its columns action, state, actor, time, related, note
    /// (starting at column `offset`).
    static func historyEntry(_ h: PostgresRow, offset o: Int = 0) throws -> CaseHistoryEntry {
        CaseHistoryEntry(action: CaseHistoryAction(rawValue: try h.decode(Int.self, o)),
                         state: CaseState(rawValue: try h.decode(Int.self, o + 1)), actor: try h.decode(String.self, o + 2),
                         time: try h.decode(Date.self, o + 3), related: try h.decode(TextArray.self, o + 4).values,
                         note: try h.decode(String.self, o + 5))
    }

    /// Loads and locks a case for a mutation, checking its etag.
    static func lockedCase(_ c: PostgresConnection, name: String, etag: String) throws -> (CaseRecord, Int64) {
        guard let id = ResourceName.caseId(name), let (record, version) = try loadCase(c, id: id, lock: true) else {
            throw RepositoryError.notFound(type: "liaison.intake.v1.Case", name: name)
        }
        if !etag.isEmpty && etag != Etag.make(version) {
            throw RepositoryError.etagMismatch(name: name, current: Etag.make(version))
        }
        return (record, version)
    }

    /// Runs a case mutation with its request_id in one transaction. `body` gets the connection and
    /// the time, returns the response and the events to queue (to the case destinations).
    func mutateCases<R: SwiftProtobuf.Message>(
        scope: String, requestID: String, requestBytes: [UInt8],
        _ body: @escaping @Sendable (PostgresConnection, Date) throws -> (R, [any SwiftProtobuf.Message & Sendable])
    ) async throws -> R {
        let destinations = settings.caseEventDestinations
        return try await Mutation.once(pool, scope: scope, requestID: requestID, requestBytes: requestBytes) { c in
            let (response, events) = try body(c, Date())
            for e in events {
                let id = UUID(uuidString: Self.eventID(of: e)) ?? RandomUUID.make()
                try Self.publish(c, e, id, destinations)
            }
            return response
        }
    }

    /// The header's event id of a case event.
    static func eventID(of event: any SwiftProtobuf.Message) -> String {
        switch event {
        case let e as Liaison_Intake_V1_CaseOpened: e.header.eventID
        case let e as Liaison_Intake_V1_CaseAssigned: e.header.eventID
        case let e as Liaison_Intake_V1_CasesMerged: e.header.eventID
        case let e as Liaison_Intake_V1_CaseClosed: e.header.eventID
        case let e as Liaison_Intake_V1_CaseReopened: e.header.eventID
        case let e as Liaison_Intake_V1_CaseAwaitingCustomerNotice: e.header.eventID
        default: ""
        }
    }
}
