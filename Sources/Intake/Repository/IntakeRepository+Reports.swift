// IntakeRepository: reading reports and the SubmitReport / BatchSubmitReports entry points (one
// transaction, group commit, parallel groups and waves). The pipeline's stages are in
// IntakeRepository+SubmitPipeline.swift.
import IntakeDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf

extension IntakeRepository {
    // MARK: - Reports

    static let reportColumns = "id, data, case_id, incidents, update_time"

    static func report(_ row: PostgresRow) throws -> Liaison_Intake_V1_Report {
        var r = try Liaison_Intake_V1_Report(serializedBytes: try row.decode(ByteA.self, 1).bytes)
        r.name = "reports/" + (try row.decode(String.self, 0))
        r.case = "cases/" + (try row.decode(String.self, 2))
        r.incidents = try row.decode(TextArray.self, 3).values
        r.updateTime = .init(micros: try row.decode(Date.self, 4))
        return r
    }

    /// Reads one report.
    func getReport(id: String) async throws -> Liaison_Intake_V1_Report? {
        try await pool.query("SELECT \(Self.reportColumns) FROM reports WHERE id = $1", [id]).first.map(Self.report)
    }

    /// One classifier for every submission (building one normalizes its whole keyword table).
    static let classifier = SymptomClassifier()

    static func symptom(named name: String) -> SymptomKind {
        SymptomKind.known.first { $0.protoName == name } ?? .unspecified
    }

    /// SubmitReport: the whole submission in one transaction (see the file comment). The customer
    /// row is locked FOR UPDATE first, so concurrent submissions for one customer are serialized
    /// and cannot open two cases for one problem.
    ///
    /// Concurrent calls go through `submissions` (group commit): while fewer than
    /// `settings.submitTransactions` are running each runs alone, as above; beyond that they
    /// queue and share transactions (see `SubmitCoalescer`).
    func submit(_ report: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8])
        async throws -> Liaison_Intake_V1_SubmitReportResponse
    {
        try await submitAnswer(report, requestID: requestID, requestBytes: requestBytes).response
    }

    /// `submit`, with the response as recorded for replays.
    func submitAnswer(_ report: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8]) async throws
        -> SubmitAnswer {
        try await submissions.submit((report, requestID, requestBytes))
    }

    /// One submission in its own transaction.
    static func submitAlone(_ entry: (report: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8]),
                            pool: PostgresPool, settings: IntakeSettings) async throws -> SubmitAnswer {
        try await pool.transaction { c in
            // One report: its writes and the COMMIT share the last round trip.
            try submitWave(c, [entry], settings: settings, commit: true)[0].get()
        }
    }

    /// Submits a batch of reports: in one transaction, or split into up to
    /// `settings.batchParallelism` transactions run at the same time on as many connections.
    ///
    /// The contract makes entries independent (each has its own status), and one transaction is
    /// bound by its one PostgreSQL backend: split, a batch's database work and intake's decisions
    /// run on several cores. Entries that share a customer or a request id always stay in the same
    /// transaction, in request order (`parallelGroups`), so every rule sees exactly what it would
    /// in one transaction: a later entry joins the case an earlier one opened, or replays it. The
    /// groups lock disjoint customers and request ids, so they never wait for each other. A batch
    /// is split only when the pool has a connection free for each part (under load every
    /// connection is busy anyway and a split would only add statements) and each part has at
    /// least `settings.minBatchGroup` entries. The call returns once every part has committed;
    /// if one fails as a whole (a lost connection), the call fails, and the retry with the same
    /// request ids replays what the other parts committed.
    func submitBatch(_ entries: [(report: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8])])
        async throws -> [Result<SubmitAnswer, any Error>]
    {
        let settings = self.settings
        let parallelism = min(settings.batchParallelism, entries.count / max(1, settings.minBatchGroup),
                              pool.availableConnections)
        let groups = parallelism < 2 ? [Array(entries.indices)]
            : Self.parallelGroups(entries.map { (Self.customerKey($0.report), $0.requestID) }, count: parallelism)
        if groups.count == 1 { return try await submitGroup(entries) }
        return try await withThrowingTaskGroup(
            of: ([Int], [Result<SubmitAnswer, any Error>]).self
        ) { tasks in
            for group in groups {
                let part = group.map { entries[$0] }
                tasks.addTask { (group, try await self.submitGroup(part)) }
            }
            var results = [Result<SubmitAnswer, any Error>?](repeating: nil, count: entries.count)
            for try await (group, outcomes) in tasks {
                for (index, outcome) in zip(group, outcomes) { results[index] = outcome }
            }
            return results.map { $0! }
        }
    }

    /// The customer id an entry is grouped and ordered by (the raw name if it does not parse).
    static func customerKey(_ report: Liaison_Intake_V1_Report) -> String {
        ResourceName.customerId(report.customer) ?? report.customer
    }

    /// Splits entries (customer, request id) into at most `count` groups for `submitBatch`:
    /// entries linked by a shared customer or request id (transitively) stay together, and the
    /// linked sets go, largest first, to the group with the fewest entries. Each group lists its
    /// entries in request order; empty groups are dropped.
    static func parallelGroups(_ keys: [(customer: String, requestID: String)], count: Int) -> [[Int]] {
        // Union-find over entries, linked through the first entry seen with each key.
        var parent = Array(keys.indices)
        func root(_ i: Int) -> Int {
            var i = i
            while parent[i] != i {
                parent[i] = parent[parent[i]]
                i = parent[i]
            }
            return i
        }
        var firstWithCustomer: [String: Int] = [:]
        var firstWithRequest: [String: Int] = [:]
        for (i, key) in keys.enumerated() {
            for first in [firstWithCustomer[key.customer], firstWithRequest[key.requestID]] {
                guard let first else { continue }
                let (a, b) = (root(first), root(i))
                if a != b { parent[max(a, b)] = min(a, b) }
            }
            if firstWithCustomer[key.customer] == nil { firstWithCustomer[key.customer] = i }
            if firstWithRequest[key.requestID] == nil { firstWithRequest[key.requestID] = i }
        }
        var sets: [Int: [Int]] = [:]
        for i in keys.indices { sets[root(i), default: []].append(i) }
        // Largest first; ties by first entry, so the split is deterministic.
        let ordered = sets.values.sorted { $0.count != $1.count ? $0.count > $1.count : $0[0] < $1[0] }
        var groups = [[Int]](repeating: [], count: max(1, count))
        for set in ordered {
            let lightest = groups.indices.min { groups[$0].count < groups[$1].count }!
            groups[lightest].append(contentsOf: set)
        }
        return groups.filter { !$0.isEmpty }.map { $0.sorted() }
    }

    /// Submits several reports in ONE transaction (one commit, so one fsync for them). The
    /// batch's customers are locked first, in id order, so that concurrent batches queue instead of
    /// deadlocking. Entries go through `streamWave` in waves: an entry whose customer or request id
    /// appeared earlier in the batch waits for a later wave (it may join the case the earlier one
    /// opened, or replay it), so each wave's entries are independent. The whole batch is one
    /// `PipelineStream`: PostgreSQL executes a wave's reads and writes while intake decides the
    /// next entries, and the COMMIT follows the last writes.
    /// An entry refused by the rules (unknown customer, reused request id, ...) writes nothing and
    /// is reported in its result while the others commit. If a statement fails in the database
    /// (which aborts the transaction), the batch is run again one entry at a time with a savepoint
    /// per entry so that only the failing entry is lost. Connection failures and serialization
    /// conflicts abort the whole batch (the transaction is retried, or the caller retries with the
    /// same ids).
    func submitGroup(_ entries: [(report: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8])])
        async throws -> [Result<SubmitAnswer, any Error>]
    {
        try await Self.submitGroup(entries, pool: pool, settings: settings)
    }

    /// `submitGroup` on `pool` (also what `SubmitCoalescer` runs for shared transactions).
    static func submitGroup(_ entries: [(report: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8])],
                            pool: PostgresPool, settings: IntakeSettings)
        async throws -> [Result<SubmitAnswer, any Error>]
    {
        let customerIDs = Set(entries.compactMap { ResourceName.customerId($0.report.customer) }).sorted()
        // Columns as `SubmissionReads.customer` (data, owning_agent), then the id.
        let lockCustomersStatement: StatementBatch.Statement = (
            "SELECT data, owning_agent, id FROM customers WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
            [TextArray(customerIDs)])
        let lockCustomers: @Sendable (PostgresConnection) throws -> PostgresResult = { c in
            try c.query(lockCustomersStatement.sql, lockCustomersStatement.parameters, binaryResults: true)
        }
        let waves = Self.waves(entries.map { (Self.customerKey($0.report), $0.requestID) })
        let outcomes: [BatchOutcome]
        do {
            outcomes = try await pool.transaction { c -> [BatchOutcome] in
                try c.streaming { p -> [BatchOutcome] in
                    let lock = try p.send([lockCustomersStatement], binaryResults: true).lowerBound
                    var customers: [String: PostgresRow]?
                    var outcomes = [BatchOutcome?](repeating: nil, count: entries.count)
                    for wave in waves {
                        let results = try Self.streamWave(p, wave.map { entries[$0] }, settings: settings) {
                            if let customers { return customers }
                            var byID: [String: PostgresRow] = [:]
                            for row in try p.result(lock).rows { byID[try row.decode(String.self, 2)] = row }
                            customers = byID
                            return byID
                        }
                        for (index, result) in zip(wave, results) {
                            switch result {
                            case .success(let response): outcomes[index] = .accepted(response)
                            case .failure(let error): outcomes[index] = .failed(BatchEntryError(error))
                            }
                        }
                    }
                    try p.commit()
                    return outcomes.map { $0! }
                }
            }
        } catch let e as PostgresError where e.kind == .server && !e.isRetryableTransactionConflict {
            // The database refused an entry: one at a time, each behind a savepoint. (Anything
            // else, such as a lost connection, a deadline or a row intake cannot decode, fails
            // the whole call.)
            outcomes = try await pool.transaction { c -> [BatchOutcome] in
                _ = try lockCustomers(c)
                var outcomes: [BatchOutcome] = []
                outcomes.reserveCapacity(entries.count)
                for entry in entries {
                    try c.query("SAVEPOINT batch_entry")
                    do {
                        let response = try Self.submit(c, entry.report, requestID: entry.requestID,
                                                       requestBytes: entry.requestBytes, settings: settings)
                        try c.query("RELEASE SAVEPOINT batch_entry")
                        outcomes.append(.accepted(SubmitAnswer(response: response, encoded: nil)))
                    } catch let e as PostgresError where e.kind == .connection || e.isRetryableTransactionConflict {
                        throw e
                    } catch let e as PostgresError {
                        try c.query("ROLLBACK TO SAVEPOINT batch_entry")
                        outcomes.append(.failed(BatchEntryError(e)))
                    } catch {
                        // Refused before anything was written: the transaction is intact.
                        try c.query("RELEASE SAVEPOINT batch_entry")
                        outcomes.append(.failed(BatchEntryError(error)))
                    }
                }
                return outcomes
            }
        }
        return outcomes.map { outcome in
            switch outcome {
            case .accepted(let response): return .success(response)
            case .failed(let e): return .failure(e.error)
            }
        }
    }

    /// Splits entries (customer, request id) into waves of independent entries, in order: an
    /// entry goes one wave after the last wave holding its customer or its request id.
    static func waves(_ keys: [(customer: String, requestID: String)]) -> [[Int]] {
        var waves: [[Int]] = []
        var lastCustomer: [String: Int] = [:]
        var lastRequest: [String: Int] = [:]
        for (index, key) in keys.enumerated() {
            let after = max(lastCustomer[key.customer] ?? -1, lastRequest[key.requestID] ?? -1)
            let wave = after + 1
            if wave == waves.count { waves.append([]) }
            waves[wave].append(index)
            lastCustomer[key.customer] = wave
            lastRequest[key.requestID] = wave
        }
        return waves
    }
}

/// A submission's answer, with its encoding when at hand: the bytes recorded for `request_id`
/// replays (a new report) or read back from that record (a replay). BatchSubmitReports sends
/// them as they are (`setEncodedField`) instead of encoding every answer again.
struct SubmitAnswer: Sendable {
    let response: Liaison_Intake_V1_SubmitReportResponse
    /// `response` in the protobuf wire format, or nil.
    let encoded: [UInt8]?
}

/// One entry's outcome inside a batch transaction (Sendable so it can leave the connection thread).
enum BatchOutcome: Sendable {
    case accepted(SubmitAnswer)
    case failed(BatchEntryError)
}

/// An entry's error carried out of the batch transaction.
struct BatchEntryError: @unchecked Sendable {
    // Errors thrown by the repository are value types (RepositoryError, PostgresError,
    // ValidationError, CaseRuleError); they are only read after the transaction returns.
    let error: any Error
    init(_ error: any Error) { self.error = error }
}
