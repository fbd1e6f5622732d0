// The intake repository: every SQL statement of the service. Transaction bodies are synchronous
// closures run on a connection thread (see LiaisonStorage's DataModel article): they touch only
// the database, may be retried as a whole, and record the request_id and the outbox events in the
// same transaction as the change, so that an acknowledged call is durable and its events exist
// exactly when the change does.
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf

/// Settings of the intake service.
public struct IntakeSettings: Sendable {
    /// Destinations of ReportAccepted and CustomerUpserted.
    public var directoryEventDestinations: [String] = ["correlation"]
    /// Destinations of the case events (`LIAISON_INTAKE_CASE_EVENT_DESTINATIONS`, comma separated,
    /// `none` for none). Default: correlation, whose CasesMerged applier moves links to the
    /// surviving case.
    public var caseEventDestinations: [String] = ["correlation"]
    /// Duplicate detection tuning.
    public var duplicate = DuplicateConfig()
    /// Report validation; `requireAgent` is false: the case owner falls back to the customer's
    /// owning agent, and a report with neither is refused (`report.agent`).
    public var validation: ReportValidationConfig = {
        var v = ReportValidationConfig()
        v.requireAgent = false
        return v
    }()
    /// Page-token signing key (shared by replicas).
    public var pageTokenKey: [UInt8]
    /// How long page tokens stay valid.
    public var pageTokenLifetime: TimeInterval = 24 * 3600
    /// Most transactions, on as many connections, that one BatchSubmitReports call splits its
    /// entries into (`LIAISON_INTAKE_BATCH_PARALLELISM`, default 2; see
    /// `IntakeRepository.submitBatch`). 1 runs every batch as one transaction.
    public var batchParallelism = 2
    /// Fewest entries per transaction when a batch is split.
    public var minBatchGroup = 16
    /// Most SubmitReport transactions running at once (`LIAISON_INTAKE_SUBMIT_TRANSACTIONS`,
    /// default 2). Calls beyond them queue and share transactions (`SubmitCoalescer`). On the
    /// 2-core benchmark machine, single reports at 16 clients ran at 0.94x pgbench with 2 and
    /// 0.86x with 4 (services/intake/README.md).
    public var submitTransactions = 2
    /// Most queued SubmitReport calls in one shared transaction.
    public var maxSharedSubmissions = 100
    /// Most SubmitReport calls waiting for a transaction (`LIAISON_INTAKE_MAX_QUEUED_SUBMISSIONS`,
    /// default 2000); beyond it a call is refused with RESOURCE_EXHAUSTED and a retry hint.
    public var maxQueuedSubmissions = 2000

    /// Settings with a page-token key.
    public init(pageTokenKey: [UInt8]) {
        self.pageTokenKey = pageTokenKey
    }

    /// Reads `LIAISON_INTAKE_CASE_EVENT_DESTINATIONS`, `LIAISON_INTAKE_BATCH_PARALLELISM`,
    /// `LIAISON_INTAKE_SUBMIT_TRANSACTIONS` and `LIAISON_INTAKE_PAGE_TOKEN_KEY` (required in
    /// production; see `ServiceConfiguration.pageTokenKey`).
    public static func from(_ environment: Environment, configuration: ServiceConfiguration, logger: Logger) throws -> IntakeSettings {
        let key = try configuration.pageTokenKey("INTAKE_PAGE_TOKEN_KEY", environment: environment, service: "intake", logger: logger)
        var s = IntakeSettings(pageTokenKey: key)
        s.batchParallelism = try environment.int("INTAKE_BATCH_PARALLELISM", default: s.batchParallelism, range: 1...16)
        s.submitTransactions = try environment.int("INTAKE_SUBMIT_TRANSACTIONS", default: s.submitTransactions, range: 1...256)
        s.maxQueuedSubmissions = try environment.int("INTAKE_MAX_QUEUED_SUBMISSIONS", default: s.maxQueuedSubmissions, range: 1...1_000_000)
        s.caseEventDestinations = environment.destinations("INTAKE_CASE_EVENT_DESTINATIONS", default: s.caseEventDestinations)
        return s
    }
}

/// Errors of the repository that the handler maps to gRPC statuses.
enum RepositoryError: Error {
    case notFound(type: String, name: String)
    case etagMismatch(name: String, current: String)
    case invalid([FieldViolation])
}

/// Storage of customers, reports, cases and their history in the intake database.
public final class IntakeRepository: Sendable {
    let pool: PostgresPool
    let settings: IntakeSettings
    static let producer = "intake"

    /// A repository over `pool`.
    public init(pool: PostgresPool, settings: IntakeSettings) {
        self.pool = pool
        self.settings = settings
        self.submissions = SubmitCoalescer(
            limit: settings.submitTransactions, maxEntries: settings.maxSharedSubmissions, maxQueued: settings.maxQueuedSubmissions,
            runAlone: { try await Self.submitAlone($0, pool: pool, settings: settings) },
            runShared: { try await Self.submitGroup($0, pool: pool, settings: settings) })
    }

    /// SubmitReport's group commit (see `submit`).
    let submissions: SubmitCoalescer

    // MARK: - Events

    static func header(aggregate: String, version: Int64, requestID: String, at time: Date)
        -> (Liaison_Common_V1_EventHeader, UUID)
    {
        Events.header(producer: producer, aggregate: aggregate, version: version, requestID: requestID, at: time)
    }

    // MARK: - Customers

    static let customerColumns = "id, data, version, create_time, update_time, contacts"

    /// A customer message from a row of `customerColumns`.
    static func customer(_ row: PostgresRow, contacts: Bool) throws -> Liaison_Intake_V1_Customer {
        var c = try Liaison_Intake_V1_Customer(serializedBytes: try row.decode(ByteA.self, 1).bytes)
        c.name = "customers/" + (try row.decode(String.self, 0))
        c.etag = Etag.make(try row.decode(Int64.self, 2))
        c.createTime = .init(micros: try row.decode(Date.self, 3))
        c.updateTime = .init(micros: try row.decode(Date.self, 4))
        if contacts {
            c.contacts = try Liaison_Intake_V1_Customer(serializedBytes: try row.decode(ByteA.self, 5).bytes).contacts
        } else {
            c.contacts = []
        }
        return c
    }

    /// Reads one customer.
    func getCustomer(id: String, contacts: Bool) async throws -> Liaison_Intake_V1_Customer? {
        let rows = try await pool.query("SELECT \(Self.customerColumns) FROM customers WHERE id = $1", [id])
        return try rows.first.map { try Self.customer($0, contacts: contacts) }
    }

    static let upsertSQL = """
        INSERT INTO customers (id, display_name, account_number, account_partition, region, country, tier,
            white_glove, features, platforms, client_versions, owning_agent, state, source_update_time, data,
            contacts, version, create_time, update_time)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18)
        ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name,
            account_number = EXCLUDED.account_number, account_partition = EXCLUDED.account_partition,
            region = EXCLUDED.region, country = EXCLUDED.country, tier = EXCLUDED.tier,
            white_glove = EXCLUDED.white_glove, features = EXCLUDED.features, platforms = EXCLUDED.platforms,
            client_versions = EXCLUDED.client_versions, owning_agent = EXCLUDED.owning_agent,
            state = EXCLUDED.state, source_update_time = EXCLUDED.source_update_time, data = EXCLUDED.data,
            contacts = EXCLUDED.contacts, version = customers.version + 1, update_time = EXCLUDED.update_time
        """

    /// Parameters of `upsertSQL` for a stored-form customer.
    static func upsertParameters(id: String, _ c: Liaison_Intake_V1_Customer, version: Int64, now: Date) throws
        -> [any PostgresBindable]
    {
        var data = c
        data.contacts = []
        var contacts = Liaison_Intake_V1_Customer()
        contacts.contacts = c.contacts
        let a = c.attributes
        return [
            id, c.displayName, a.accountNumber, a.accountPartition, a.region, a.country,
            Tier(rawValue: a.tier.rawValue).protoName, a.whiteGlove, TextArray(a.features),
            TextArray(a.platforms.map { Platform(rawValue: $0.platform.rawValue).protoName }),
            TextArray(a.platforms.map(\.clientVersion).filter { !$0.isEmpty }), c.owningAgent,
            CustomerState(rawValue: c.state.rawValue).protoName,
            c.hasSourceUpdateTime ? c.sourceUpdateTime.date : nil as Date?,
            ByteA(try deterministicBytes(data)), ByteA(try deterministicBytes(contacts)), version, now,
        ]
    }

    /// One validated entry of a batch upsert.
    struct UpsertEntry: Sendable {
        var index: Int
        var id: String
        var customer: Liaison_Intake_V1_Customer  // stored form
    }

    /// Applies a batch upsert (entries already validated) in one transaction: locks the existing
    /// rows in id order, decides each outcome (last writer wins by `source_update_time`), writes
    /// the changed rows in one pipeline, queues CustomerUpserted events and records the request.
    func batchUpsert(entries: [UpsertEntry], failed: [Liaison_Intake_V1_UpsertCustomerResult], requestID: String,
                     requestBytes: [UInt8]) async throws -> Liaison_Intake_V1_BatchUpsertCustomersResponse {
        let destinations = settings.directoryEventDestinations
        return try await pool.transaction { c in
            let key = Idempotency.Key(scope: "intake.BatchUpsertCustomers", requestID: requestID, request: requestBytes)
            if let stored = try Idempotency.begin(c, key) {
                return try Liaison_Intake_V1_BatchUpsertCustomersResponse(serializedBytes: stored)
            }
            let now = Date()
            var existing: [String: (Liaison_Intake_V1_Customer, Int64, Date)] = [:]
            let ids = entries.map(\.id).sorted()
            for row in try c.query("SELECT \(Self.customerColumns) FROM customers WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                                   [TextArray(ids)]).rows {
                let stored = try Self.customer(row, contacts: true)
                existing[try row.decode(String.self, 0)] = (stored, try row.decode(Int64.self, 2), try row.decode(Date.self, 3))
            }
            var results = failed
            var statements: [(sql: String, parameters: [any PostgresBindable])] = []
            var events: [(Liaison_Intake_V1_CustomerUpserted, UUID)] = []
            for e in entries {
                var result = Liaison_Intake_V1_UpsertCustomerResult()
                result.index = Int32(e.index)
                let old = existing[e.id]
                var oldInput = old?.0
                oldInput?.clearCreateTime(); oldInput?.clearUpdateTime(); oldInput?.etag = ""
                let outcome = CustomerRules.upsertOutcome(existing: oldInput.map(Mapping.customerUpsert),
                                                          incoming: Mapping.customerUpsert(e.customer))
                var out: Liaison_Intake_V1_Customer
                switch outcome {
                case .created, .updated:
                    let version = (old?.1 ?? 0) + 1
                    statements.append((Self.upsertSQL, try Self.upsertParameters(id: e.id, e.customer, version: 1, now: now)))
                    out = e.customer
                    out.etag = Etag.make(version)
                    out.createTime = .init(micros: old?.2 ?? now)
                    out.updateTime = .init(micros: now)
                    var event = Liaison_Intake_V1_CustomerUpserted()
                    let (header, eventID) = Self.header(aggregate: e.customer.name, version: version, requestID: requestID, at: now)
                    event.header = header
                    event.customer = out
                    event.customer.contacts = []  // PII stays in intake; correlation needs attributes only
                    if let old { event.previousAttributes = old.0.attributes }
                    events.append((event, eventID))
                    result.outcome = outcome == .created ? .created : .updated
                case .unchanged, .skippedStale:
                    out = old!.0
                    result.outcome = outcome == .unchanged ? .unchanged : .skippedStale
                }
                out.contacts = []
                result.customer = out
                result.status = Google_Rpc_Status()
                results.append(result)
            }
            if !statements.isEmpty { _ = try c.pipeline(statements) }
            for (event, id) in events { try Events.publish(c, event, eventID: id, to: destinations) }
            var response = Liaison_Intake_V1_BatchUpsertCustomersResponse()
            response.results = results.sorted { $0.index < $1.index }
            try Idempotency.record(c, key, response: try deterministicBytes(response))
            return response
        }
    }

    /// UpdateCustomer: applies `mask` of `incoming` over the stored customer (etag-checked), in one
    /// transaction with its request_id and event.
    func updateCustomer(id: String, incoming: Liaison_Intake_V1_Customer, mask: [String], etag: String,
                        requestID: String, requestBytes: [UInt8]) async throws -> Liaison_Intake_V1_Customer {
        let destinations = settings.directoryEventDestinations
        let showContacts = mask.contains("*") || mask.contains("contacts")
        return try await pool.transaction { c in
            let key = Idempotency.Key(scope: "intake.UpdateCustomer", requestID: requestID, request: requestBytes)
            if let stored = try Idempotency.begin(c, key) {
                return try Liaison_Intake_V1_Customer(serializedBytes: stored)
            }
            guard let row = try c.query("SELECT \(Self.customerColumns) FROM customers WHERE id = $1 FOR UPDATE", [id]).first else {
                throw RepositoryError.notFound(type: "liaison.intake.v1.Customer", name: "customers/\(id)")
            }
            let current = try Self.customer(row, contacts: true)
            let version = try row.decode(Int64.self, 2)
            let createTime = try row.decode(Date.self, 3)
            if !etag.isEmpty && etag != current.etag {
                throw RepositoryError.etagMismatch(name: current.name, current: current.etag)
            }
            var next = current
            next.clearCreateTime(); next.clearUpdateTime(); next.etag = ""
            let all = mask.contains("*")
            func on(_ path: String) -> Bool { all || mask.contains(path) }
            if on("display_name") { next.displayName = incoming.displayName }
            if on("attributes") { next.attributes = incoming.attributes }
            if on("attributes.account_number") { next.attributes.accountNumber = incoming.attributes.accountNumber }
            if on("attributes.region") { next.attributes.region = incoming.attributes.region }
            if on("attributes.country") { next.attributes.country = incoming.attributes.country }
            if on("attributes.tier") { next.attributes.tier = incoming.attributes.tier }
            if on("attributes.white_glove") { next.attributes.whiteGlove = incoming.attributes.whiteGlove }
            if on("attributes.features") { next.attributes.features = incoming.attributes.features }
            if on("attributes.platforms") { next.attributes.platforms = incoming.attributes.platforms }
            if on("contacts") { next.contacts = incoming.contacts }
            if on("preferred_channel") { next.preferredChannel = incoming.preferredChannel }
            if on("owning_agent") { next.owningAgent = incoming.owningAgent }
            if on("crm_reference") {
                if incoming.hasCrmReference { next.crmReference = incoming.crmReference } else { next.clearCrmReference() }
            }
            if on("source_update_time") {
                if incoming.hasSourceUpdateTime { next.sourceUpdateTime = incoming.sourceUpdateTime } else { next.clearSourceUpdateTime() }
            }
            if on("labels") { next.labels = incoming.labels }
            if on("state") { next.state = incoming.state }
            next = Mapping.storedCustomer(next)
            // The merged result must be a valid customer as a whole.
            let violations = CustomerValidator.violations(of: Mapping.customerUpsert(next))
            if !violations.isEmpty { throw RepositoryError.invalid(violations) }

            var previous = current
            previous.clearCreateTime(); previous.clearUpdateTime(); previous.etag = ""
            var out: Liaison_Intake_V1_Customer
            if Mapping.storedCustomer(previous) == next {
                out = current
            } else {
                let now = Date()
                try c.query(Self.upsertSQL, try Self.upsertParameters(id: id, next, version: version + 1, now: now))
                out = next
                out.etag = Etag.make(version + 1)
                out.createTime = .init(micros: createTime)
                out.updateTime = .init(micros: now)
                var event = Liaison_Intake_V1_CustomerUpserted()
                let (header, eventID) = Self.header(aggregate: out.name, version: version + 1, requestID: requestID, at: now)
                event.header = header
                event.customer = out
                event.customer.contacts = []
                event.previousAttributes = current.attributes
                try Events.publish(c, event, eventID: eventID, to: destinations)
            }
            if !showContacts { out.contacts = [] }
            try Idempotency.record(c, key, response: try deterministicBytes(out))
            return out
        }
    }

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

    /// The duplicate candidates of a new report: the customer's open cases (the 100 most recently
    /// updated), each with `cases.candidates`, its newest `maxCandidatesPerCase` reports as the
    /// matcher needs them (`CaseCandidates`). One row per case and no read of `reports`: reading
    /// each case's reports in the window through `reports_case` (an index descent and a heap fetch
    /// per report) was 70% of PostgreSQL's time per submission; the stored list is about three
    /// times cheaper per case. The matcher keeps the entries in the window around the new
    /// report; when a full list may hide older reports in that window (a report received long
    /// before a busy case's latest ones), `caseWindowSQL` reads that case's reports instead.
    /// $1 customer, $2 receive time ($3, the window, is `caseWindowSQL`'s).
    static let maxCandidatesPerCase = 20
    static let candidatesSQL = """
        SELECT id, owner, candidates FROM cases WHERE customer_id = $1 AND state = 'OPEN'
        ORDER BY update_time DESC LIMIT 100
        """

    /// `candidatesSQL` for several submissions at once: $1 their customers (an array, in entry
    /// order). Each row ends with the entry's 1-based position (rows are not sorted).
    static let candidatesAllSQL = """
        SELECT oc.id, oc.owner, oc.candidates, q.i
        FROM unnest($1::text[]) WITH ORDINALITY AS q(customer_id, i)
        CROSS JOIN LATERAL (
            SELECT id, owner, candidates FROM cases WHERE customer_id = q.customer_id AND state = 'OPEN'
            ORDER BY update_time DESC LIMIT 100) oc
        """

    /// One case's candidate reports read from `reports` (when its stored list cannot answer): its
    /// most recent `maxCandidatesPerCase` reports received within $3 seconds of $2; $1 the case id.
    ///
    /// The window is written as row comparisons on `(case_id, receive_time)`, which only
    /// `reports_case` can use. As a plain `receive_time BETWEEN`, `reports_receive_time` could
    /// serve the same ordered, limited scan with the case as a filter; on a small, never analyzed
    /// table both paths cost exactly the same, and a connection that cached its generic plan at
    /// that moment kept walking the whole window of every customer's reports (measured: 105 ms
    /// instead of 4 ms per 25-entry batch read, in about half the benchmark runs, when every
    /// candidate read went this way). Now that index has nothing to bound its scan.
    static let caseWindowSQL = """
        SELECT id, fingerprint, symptom, service_hint, receive_time, ticket_system, ticket_id, symptom_inferred
        FROM reports
        WHERE case_id = $1
          AND (case_id, receive_time) >= ($1, $2::timestamptz - make_interval(secs => $3))
          AND (case_id, receive_time) <= ($1, $2::timestamptz + make_interval(secs => $3))
        ORDER BY receive_time DESC, id DESC LIMIT \(maxCandidatesPerCase)
        """

    static let ticketSQL = """
        SELECT r.id, r.case_id, cs.state, cs.merged_into FROM reports r JOIN cases cs ON cs.id = r.case_id
        WHERE r.customer_id = $1 AND r.ticket_system = $2 AND r.ticket_id = $3
        ORDER BY r.create_time, r.id LIMIT 1
        """

    /// One report, inside the caller's transaction, in three round trips: (1) the idempotency
    /// lock and lookup, the customer row (locked), the help-desk ticket and the duplicate
    /// candidates, in one pipeline; (2) for a duplicate, the case it joins (locked) with its
    /// reports and their symptoms, and the length of its history, in one pipeline; (3) every
    /// write (report, case, history, events, idempotency record) in one pipeline. Nothing is
    /// written before (3), so a refusal
    /// (unknown customer, reused request id, missing agent) leaves the transaction clean. With
    /// `commit`, the writes and the COMMIT go in that last pipeline, ending the transaction.
    static func submit(_ c: PostgresConnection, _ input: Liaison_Intake_V1_Report, requestID: String,
                       requestBytes: [UInt8], settings: IntakeSettings, commit: Bool = false)
        throws -> Liaison_Intake_V1_SubmitReportResponse {
        let results = try submitWave(c, [(input, requestID, requestBytes)], settings: settings, commit: commit)
        return try results[0].get().response
    }

    /// Independent reports (distinct customers and request ids, so none can see another's effects;
    /// SubmitReport sends one) through the three stages together: one pipeline for all their
    /// reads, one for all the cases they join, one for all their writes. A refused entry (unknown
    /// customer, reused request id, ...) gets its error in its result and writes nothing; a
    /// database error is thrown. With `commit`, the writes end the transaction
    /// (`PostgresConnection.commit(with:)`). Batches take `streamWave` instead.
    static func submitWave(_ c: PostgresConnection,
                           _ entries: [(report: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8])],
                           settings: IntakeSettings, commit: Bool = false)
        throws -> [Result<SubmitAnswer, any Error>] {
        let staged = entries.map { StagedSubmission(input: $0.report, requestID: $0.requestID, requestBytes: $0.requestBytes) }

        // (1) Reads that depend only on the requests.
        try decideAll(staged, try singleReads(c, staged, settings: settings), c, settings: settings)

        // (2) The cases they join.
        let (statements, joinRanges) = joinStatements(staged)
        let joined = statements.isEmpty ? [] : try c.pipeline(statements)

        // (3) Every write, in one pipeline.
        let writes = try writeUnits(staged, joined: joined, joinRanges: joinRanges, settings: settings)
        if commit {
            try c.commit(with: writes)
        } else if !writes.isEmpty {
            _ = try c.pipeline(writes)
        }
        return staged.map { $0.outcome! }
    }

    /// What stage (1) read for one submission.
    struct SubmissionReads {
        /// The idempotency lookup's row (stored response, request matches), if the id is known.
        var stored: PostgresRow?
        /// The customer's `data, owning_agent` (locked), nil if there is no such customer.
        var customer: PostgresRow?
        /// The customer's open cases (`candidatesSQL`'s columns), in no particular order.
        var candidates: [PostgresRow] = []
        /// The first report with the same help-desk ticket (`ticketSQL`'s columns).
        var ticket: PostgresRow?
    }

    /// Stage (1) for one report (or a wave of a few): each submission's own statements, all in one
    /// pipeline. This is the SQL the benchmark's pgbench transaction runs.
    static func singleReads(_ c: PostgresConnection, _ staged: [StagedSubmission], settings: IntakeSettings) throws
        -> [SubmissionReads] {
        var statements: [StatementBatch.Statement] = []
        var ranges: [Range<Int>] = []
        for s in staged {
            let reads = readStatements(s, settings: settings)
            ranges.append(statements.count..<statements.count + reads.count)
            statements.append(contentsOf: reads)
        }
        // Binary results: the candidates' fingerprints (144 bytes each) arrive as bytes, not hex.
        let read = try c.pipeline(statements, binaryResults: Set(statements.indices))
        return staged.indices.map { i in
            let r = Array(read[ranges[i]])
            return SubmissionReads(stored: r[1].first, customer: r[2].first, candidates: r[3].rows,
                                   ticket: r.count > 4 ? r[4].first : nil)
        }
    }

    /// Chunks a batch wave is cut into (see `streamWave`).
    static let waveChunks = 8

    /// A wave of a batch, on the batch's stream: the same three stages as `submitWave`, cut into
    /// `waveChunks` chunks so that the database and intake work at the same time. All the
    /// chunks' reads go out first (one lock statement for the wave's request ids, then per chunk
    /// one statement each for the idempotency lookups and the duplicate candidates, plus the
    /// ticket lookups); then chunk by chunk intake decides, reads the cases its entries join, and
    /// sends the chunk's writes (one insert per table) without waiting for them. The entries of a
    /// wave are independent, so no chunk's reads can see another chunk's writes.
    /// `customers` gives the batch's locked customer rows by id (waiting for them the first time).
    static func streamWave(_ p: PipelineStream,
                           _ entries: [(report: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8])],
                           settings: IntakeSettings, customers: () throws -> [String: PostgresRow])
        throws -> [Result<SubmitAnswer, any Error>] {
        let staged = entries.map { StagedSubmission(input: $0.report, requestID: $0.requestID, requestBytes: $0.requestBytes) }
        // The wave's idempotency locks in one statement, in hash order (no deadlock between
        // batches), before any lookup.
        try p.send([(Idempotency.lockAllSQL, [TextArray(staged.map(\.key.lockKey))])])
        let size = max(8, (staged.count + waveChunks - 1) / waveChunks)
        let chunks = stride(from: 0, to: staged.count, by: size).map { Array(staged[$0..<min($0 + size, staged.count)]) }
        var sent: [(range: Range<Int>, ticketAt: [Int: Int])] = []
        for chunk in chunks {
            let (statements, ticketAt) = batchReadStatements(chunk, settings: settings)
            sent.append((try p.send(statements, binaryResults: true), ticketAt))
        }
        for (chunk, read) in zip(chunks, sent) {
            let results = try read.range.map { try p.result($0) }
            try decideAll(chunk, try batchReads(results, chunk, customers: try customers(), ticketAt: read.ticketAt), p,
                          settings: settings)
            // The cases the chunk's entries join (a round trip, only if some do).
            let (statements, joinRanges) = joinStatements(chunk)
            let joined = statements.isEmpty ? [] : try p.send(statements).map { try p.result($0) }
            // The chunk's writes, sent without waiting: the next chunk is decided meanwhile.
            try p.send(try writeUnits(chunk, joined: joined, joinRanges: joinRanges, settings: settings))
        }
        return staged.map { $0.outcome! }
    }

    /// Stage (1) decisions for each entry from its reads; an entry the rules refuse gets its
    /// error as its outcome, a database error is thrown.
    static func decideAll(_ staged: [StagedSubmission], _ reads: [SubmissionReads], _ c: some SQLQuerier,
                          settings: IntakeSettings) throws {
        for (i, s) in staged.enumerated() {
            do {
                try decide(s, reads[i], c, settings: settings)
            } catch let e as PostgresError {
                throw e
            } catch {
                s.outcome = .failure(error)
            }
        }
    }

    /// Stage (2) statements: the cases the entries join, locked, each with its reports (a join
    /// only appends to the history: it is counted, not read). `ranges`: entry -> its statements.
    static func joinStatements(_ staged: [StagedSubmission])
        -> (statements: [StatementBatch.Statement], ranges: [Int: Range<Int>]) {
        var statements: [StatementBatch.Statement] = []
        var ranges: [Int: Range<Int>] = [:]
        for (i, s) in staged.enumerated() where s.outcome == nil {
            guard let joinCase = s.joinCase else { continue }
            // The case (locked, with its stored candidates).
            let reads = loadCaseStatements(id: joinCase, lock: true, history: false, candidates: true)
            ranges[i] = statements.count..<statements.count + reads.count
            statements.append(contentsOf: reads)
        }
        return (statements, ranges)
    }

    /// Stage (3) for independent entries: each entry's writes (into its own batch, so that an
    /// entry refused halfway adds nothing), coalesced into one insert per table.
    static func writeUnits(_ staged: [StagedSubmission], joined: [PostgresResult], joinRanges: [Int: Range<Int>],
                           settings: IntakeSettings) throws -> [StatementBatch.Statement] {
        var units: [[StatementBatch.Statement]] = []
        for (i, s) in staged.enumerated() where s.outcome == nil {
            let own = StatementBatch()
            do {
                let response = try write(s, joined: joinRanges[i].map { Array(joined[$0]) }, into: own, settings: settings)
                units.append(own.statements)
                s.outcome = .success(response)
            } catch let e as PostgresError {
                throw e
            } catch {
                s.outcome = .failure(error)
            }
        }
        return StatementBatch.coalesce(units)
    }

    /// Stage (1) statements for a chunk of a batch wave whose customers are already locked: the
    /// idempotency lookups and the duplicate candidates as one statement each over arrays, plus a
    /// ticket lookup per entry that names a ticket (`ticketAt`: entry -> statement offset).
    static func batchReadStatements(_ staged: [StagedSubmission], settings: IntakeSettings)
        -> (statements: [StatementBatch.Statement], ticketAt: [Int: Int]) {
        var statements: [StatementBatch.Statement] = [
            (Idempotency.lookupAllSQL, [submitScope, TextArray(staged.map(\.requestID)),
                                        TextArray(staged.map(\.key.fingerprint))]),
            (candidatesAllSQL, [TextArray(staged.map(\.customerID))]),
        ]
        var ticketAt: [Int: Int] = [:]
        for (i, s) in staged.enumerated() {
            guard let t = s.submission.externalTicket else { continue }
            ticketAt[i] = statements.count
            statements.append((ticketSQL, [s.customerID, t.system, t.id]))
        }
        return (statements, ticketAt)
    }

    /// What `batchReadStatements` read, per entry; `customers` are the locked rows by id.
    static func batchReads(_ read: [PostgresResult], _ staged: [StagedSubmission], customers: [String: PostgresRow],
                           ticketAt: [Int: Int]) throws -> [SubmissionReads] {
        var reads = staged.map { SubmissionReads(customer: customers[$0.customerID]) }
        // The lookup and candidate rows end with the entry's 1-based position in the arrays.
        for row in read[0].rows { reads[Int(try row.decode(Int64.self, 2)) - 1].stored = row }
        for row in read[1].rows { reads[Int(try row.decode(Int64.self, 3)) - 1].candidates.append(row) }
        for (i, at) in ticketAt { reads[i].ticket = read[at].first }
        return reads
    }

    /// One submission between the stages of `submitWave`.
    final class StagedSubmission {
        let input: Liaison_Intake_V1_Report
        let requestID: String
        /// The request's idempotency key (its fingerprint is computed once, for lookup and record).
        let key: Idempotency.Key
        let now = Date()
        let submission: ReportSubmission
        let customerID: String
        /// Set when the submission is done: replayed, refused, or written.
        var outcome: Result<SubmitAnswer, any Error>?
        // Decided in stage (1):
        var customer = Liaison_Intake_V1_Customer()
        var candidate: NewReport?
        /// The new report's MinHash fingerprint (matched against candidates, then stored).
        var fingerprint: ReportFingerprint?
        var reportID = ""
        var reportName: String { "reports/" + reportID }
        /// Who the case history names: the submitting agent, else the service.
        var actor: String { submission.agent.isEmpty ? "services/intake" : submission.agent }
        var assessment: DuplicateAssessment?
        var joinCase: String?  // case id
        var newOwner = ""
        var report = Liaison_Intake_V1_Report()

        init(input: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8]) {
            self.input = input
            self.requestID = requestID
            self.key = Idempotency.Key(scope: IntakeRepository.submitScope, requestID: requestID, request: requestBytes)
            self.submission = Mapping.submission(input)
            self.customerID = ResourceName.customerId(submission.customer)!
        }
    }

    static let submitScope = "intake.SubmitReport"

    /// Stage (1) statements: idempotency lock and lookup, customer (locked), candidates, ticket.
    static func readStatements(_ s: StagedSubmission, settings: IntakeSettings) -> [(sql: String, parameters: [any PostgresBindable])] {
        var reads = Idempotency.beginStatements(s.key)
        reads.append(("SELECT data, owning_agent FROM customers WHERE id = $1 FOR UPDATE", [s.customerID]))
        reads.append((candidatesSQL, [s.customerID]))
        if let t = s.submission.externalTicket { reads.append((ticketSQL, [s.customerID, t.system, t.id])) }
        return reads
    }

    /// Stage (1) decisions from the reads: replay, refusal, or the duplicate decision (which case
    /// to join, or a new one and its owner) and the report as accepted.
    static func decide(_ s: StagedSubmission, _ read: SubmissionReads, _ c: some SQLQuerier, settings: IntakeSettings) throws {
        let submission = s.submission
        let now = s.now
        if let stored = try Idempotency.replay(read.stored, s.key) {
            s.outcome = .success(SubmitAnswer(response: try Liaison_Intake_V1_SubmitReportResponse(serializedBytes: stored),
                                              encoded: stored))
            return
        }
        guard let customerRow = read.customer
        else { throw RepositoryError.notFound(type: "liaison.intake.v1.Customer", name: submission.customer) }
        let customer = try Liaison_Intake_V1_Customer(serializedBytes: try customerRow.decode(ByteA.self, 0).bytes)
        let owningAgent = try customerRow.decode(String.self, 1)
        if submission.agent.isEmpty && owningAgent.isEmpty {
            throw RepositoryError.invalid([FieldViolation(
                field: "report.agent",
                description: "required: \(submission.customer) has no owning agent, so the report must name its agent")])
        }
        // The text is split once when the classifier and the similarity split it alike (the default).
        let similarity = settings.duplicate.similarity
        let tokens = similarity.normalizer == classifier.normalizer ? similarity.normalizer.tokens(submission.text) : nil
        let candidate = NewReport(submission, customerOwningAgent: owningAgent, classifier: classifier, tokens: tokens, now: now)
        // Shingles and fingerprint once: the matcher uses them, the report row stores the fingerprint.
        let shingles = tokens.map { similarity.shingles(tokens: $0) } ?? similarity.shingles(candidate.text)
        let fingerprint = ReportFingerprint(shingles: shingles, config: similarity)
        let reportID = RandomUUID.make().lowercasedString
        let reportName = "reports/" + reportID
        let input = s.input
        // Duplicate detection: a known help-desk ticket first, then the matcher over the open cases.
        var assessment: DuplicateAssessment
        var joinCase: String?  // case id
        var newOwner = candidate.agent.isEmpty ? owningAgent : candidate.agent
        var ticketMatch: (report: String, caseID: String, state: String)?
        if submission.externalTicket != nil, let row = read.ticket {
            var caseID = try row.decode(String.self, 1)
            var state = try row.decode(String.self, 2)
            var mergedInto = try row.decode(String.self, 3)
            var hops = 0
            while state == CaseState.merged.protoName, let next = ResourceName.caseId(mergedInto), hops < 16 {
                guard let r = try c.query("SELECT state, merged_into FROM cases WHERE id = $1", [next]).first else { break }
                caseID = next
                state = try r.decode(String.self, 0)
                mergedInto = try r.decode(String.self, 1)
                hops += 1
            }
            ticketMatch = ("reports/" + (try row.decode(String.self, 0)), caseID, state)
        }
        if let m = ticketMatch {
            assessment = DuplicateAssessment(
                duplicate: true, matchedReport: m.report, similarity: 1, threshold: settings.duplicate.threshold,
                signals: [
                    DuplicateSignal(name: "same_customer", score: 1, weight: 0, detail: "both from \(submission.customer)"),
                    DuplicateSignal(name: "same_external_ticket", score: 1, weight: 0,
                                    detail: "same \(submission.externalTicket!.system) ticket"),
                ])
            if m.state == CaseState.open.protoName { joinCase = m.caseID }
        } else {
            let openCases = try matcherCases(read.candidates, candidate: candidate, shingles: shingles,
                                             fingerprint: fingerprint, c, settings: settings)
            let decision = DuplicateMatcher.match(candidate: candidate, openCases: openCases,
                                                  config: settings.duplicate, candidateShingles: shingles,
                                                  candidateFingerprint: fingerprint)
            assessment = decision.assessment
            switch decision.action {
            case .joinCase(let name): joinCase = ResourceName.caseId(name)
            case .openCase(let owner): newOwner = owner
            }
        }

        // The report as accepted.
        var report = input
        report.name = reportName
        report.symptom = Liaison_Common_V1_SymptomKind(rawValue: candidate.symptom.rawValue) ?? .unspecified
        report.customerSnapshot = Mapping.snapshot(customer.attributes)
        report.duplicateAssessment = Mapping.proto(assessment)
        report.createTime = .init(micros: now)
        report.updateTime = .init(micros: now)
        report.incidents = []

        s.customer = customer
        s.candidate = candidate
        s.fingerprint = fingerprint
        s.reportID = reportID
        s.assessment = assessment
        s.joinCase = joinCase
        s.newOwner = newOwner
        s.report = report
    }

    /// The open cases (`candidatesSQL` rows) the matcher must be given to decide exactly as it
    /// would over all of them, built without materializing every stored report.
    ///
    /// Every report in the window is ranked here as `DuplicateMatcher.match` ranks it (the same
    /// `rawScore`, case window and `ranksBefore`), straight from the stored bytes: no report
    /// name, no decoded fingerprint (`estimatedJaccard(withEncoded:)`). Only the case holding the
    /// best-ranked report is then built in full, and the matcher, given that case, picks the
    /// same report and explains it. When no case has a report in the window, every case is
    /// built (none has reports to decode), so that the matcher says why. Building every stored
    /// report of every open case was a third of intake's CPU per batched report.
    static func matcherCases(_ rows: [PostgresRow], candidate: NewReport, shingles: Set<String>,
                             fingerprint: ReportFingerprint, _ c: some SQLQuerier,
                             settings: IntakeSettings) throws -> [CaseCandidate] {
        let stored = try rows.map { try $0.decode(ByteA.self, 2).bytes }
        return try matcherCases(stored: stored, candidate: candidate, shingles: shingles,
                                fingerprint: fingerprint, config: settings.duplicate) { i in
            try caseCandidate(rows[i], stored: stored[i], around: candidate.receiveTime, customer: candidate.customer,
                              c, settings: settings)
        }
    }

    /// `matcherCases` over each case's stored candidates; `build(i)` builds case `i` in full
    /// (`caseCandidate`: from the stored list, or from `reports` when it cannot answer).
    static func matcherCases(stored: [[UInt8]], candidate: NewReport, shingles: Set<String>,
                             fingerprint: ReportFingerprint, config: DuplicateConfig,
                             build: (Int) throws -> CaseCandidate) throws -> [CaseCandidate] {
        var best: (row: Int, report: RankedReport)?
        var built: [Int: CaseCandidate] = [:]
        for (i, bytes) in stored.enumerated() {
            var caseBest: RankedReport?
            var first = Date.distantFuture, last = Date.distantPast
            func consider(_ r: RankedReport) {
                if r.time < first { first = r.time }
                if r.time > last { last = r.time }
                if caseBest.map({ r.before($0) }) ?? true { caseBest = r }
            }
            let answered = try CaseCandidates.inWindow(bytes, around: candidate.receiveTime, seconds: config.window) { e in
                let earlier = CandidateReport(name: "", text: nil, symptom: e.symptom, serviceHint: e.serviceHint,
                                              receiveTime: e.receiveTime, externalTicket: e.externalTicket,
                                              symptomInferred: e.symptomInferred)
                let text = fingerprint.estimatedJaccard(withEncoded: e.fingerprint)
                    .map { DuplicateMatcher.TextComparison(score: $0, basis: .fingerprint) } ?? .none
                consider(RankedReport(pair: DuplicateMatcher.rawScore(candidate: candidate, against: earlier, text: text, config: config),
                                      time: earlier.receiveTime, stored: e))
            }
            if !answered {
                // The stored list cannot answer: the case's reports in the window, read from `reports`.
                caseBest = nil
                first = .distantFuture
                last = .distantPast
                let full = try build(i)
                built[i] = full
                for r in full.reports {
                    consider(RankedReport(pair: DuplicateMatcher.rawScore(candidate: candidate, candidateShingles: shingles,
                                                                    candidateFingerprint: fingerprint, against: r, config: config),
                                          time: r.receiveTime, report: r))
                }
            }
            guard let caseBest, DuplicateMatcher.caseInWindow(candidate: candidate, first: first, last: last, config: config)
            else { continue }
            if best.map({ caseBest.before($0.report) }) ?? true { best = (i, caseBest) }
        }
        func full(_ i: Int) throws -> CaseCandidate { try built[i] ?? build(i) }
        guard let best else { return try stored.indices.map(full) }
        return [try full(best.row)]
    }

    /// A report ranked by `matcherCases`: its pair score, receive time and, for exact ties only,
    /// its name (built then from the stored entry).
    struct RankedReport {
        var pair: DuplicateMatcher.RawScore
        var time: Date
        var stored: CaseCandidates.StoredEntry?
        var report: CandidateReport?
        var name: String { report?.name ?? stored!.reportName }
        func before(_ other: RankedReport) -> Bool {
            DuplicateMatcher.ranksBefore(pair, receivedAt: time, other.pair, receivedAt: other.time)
                ?? (name < other.name)
        }
    }

    /// One open case of `candidatesSQL` as the matcher sees it: its reports within the window
    /// around `time`, from the stored list (`stored`, the row's `candidates`), or from `reports`
    /// when the list cannot tell (`CaseCandidates.matcherReports` returns nil).
    static func caseCandidate(_ row: PostgresRow, stored: [UInt8], around time: Date, customer: String,
                              _ c: some SQLQuerier, settings: IntakeSettings) throws -> CaseCandidate {
        let id = try row.decode(String.self, 0)
        let window = settings.duplicate.window
        let reports: [CandidateReport]
        if let stored = try CaseCandidates.matcherReports(stored, around: time, seconds: window) {
            reports = stored
        } else {
            reports = try c.query(caseWindowSQL, [id, time, window], binaryResults: true).rows.map { r in
                let system = try r.decode(String?.self, 5)
                let ticketID = try r.decode(String?.self, 6)
                return CandidateReport(
                    name: "reports/" + (try r.decode(String.self, 0)), text: nil,
                    fingerprint: CaseCandidates.storedFingerprint(try r.decode(ByteA.self, 1).bytes, report: try r.decode(String.self, 0)),
                    symptom: symptom(named: try r.decode(String.self, 2)), serviceHint: try r.decode(String.self, 3),
                    receiveTime: try r.decode(Date.self, 4),
                    externalTicket: system.flatMap { s in ticketID.map { ExternalReference(system: s, id: $0) } },
                    symptomInferred: try r.decode(Bool.self, 7))
            }
        }
        return CaseCandidate(name: "cases/" + id, customer: customer, owner: try row.decode(String.self, 1), reports: reports)
    }

    /// Stage (3): the writes of one decided submission; `joined` holds the stage (2) results of
    /// the case it joins.
    static func write(_ s: StagedSubmission, joined joinedResults: [PostgresResult]?, into writes: StatementBatch,
                      settings: IntakeSettings) throws -> SubmitAnswer {
        let submission = s.submission
        let now = s.now
        let requestID = s.requestID
        let candidate = s.candidate!
        let assessment = s.assessment!
        let joinCase = s.joinCase
        let reportID = s.reportID
        let reportName = s.reportName
        let actor = s.actor
        let newOwner = s.newOwner
        var report = s.report
        var joined: (record: CaseRecord, version: Int64, symptoms: [SymptomKind], candidates: CaseCandidates)?
        if let results = joinedResults, let (current, version) = try caseFrom(results, history: false) {
            joined = (current, version, try results[1].rows.map { symptom(named: try $0.decode(String.self, 2)) },
                      try CaseCandidates(decoding: try results[0].first!.decode(ByteA.self, caseColumnCount).bytes))
        }
        // The new report as an entry of its case's stored candidates.
        let entry = CaseCandidates.Entry(
            id: reportID, receiveMicros: candidate.receiveTime.postgresMicros,
            fingerprint: s.fingerprint!.encode(), symptom: candidate.symptom.protoName, serviceHint: report.serviceHint,
            ticketSystem: report.hasExternalTicket ? report.externalTicket.system : nil,
            ticketID: report.hasExternalTicket ? report.externalTicket.id : nil, symptomInferred: candidate.symptomInferred)

        let ref = ReportRef(name: reportName, receiveTime: candidate.receiveTime)
        var caseCreated = false
        var caseVersion: Int64
        let reportBytes: [UInt8]
        var record: CaseRecord
        var events: [(any SwiftProtobuf.Message, UUID, [String])] = []
        if let joinCase, let (current, version, symptoms, candidates) = joined {
            report.case = current.name
            var next = try CaseRules.addReport(current, report: ref, actor: actor, at: now)
            next.symptom = SymptomClassifier.dominant(symptoms + [candidate.symptom])
            caseVersion = version + 1
            // Case, history, report: the order of a new case's writes, so that a wave's joins and
            // new cases coalesce into one insert per table (`StatementBatch.coalesce`).
            try saveCase(writes, old: current, new: next, version: caseVersion, moveReports: false,
                         candidates: candidates.adding(entry))
            reportBytes = try insertReport(writes, id: reportID, caseID: joinCase, report: report, candidate: candidate, fingerprint: s.fingerprint!,
                             duplicate: assessment.duplicate, settings: settings)
            record = next
        } else {
            let caseID = RandomUUID.make().lowercasedString
            record = CaseRules.open(name: "cases/" + caseID, customer: submission.customer, firstReport: ref,
                                    firstReportText: submission.text, owner: newOwner, symptom: candidate.symptom,
                                    actor: actor, at: now)
            caseVersion = 1
            try saveCase(writes, old: nil, new: record, version: 1, moveReports: false, candidates: CaseCandidates([entry]))
            report.case = record.name
            reportBytes = try insertReport(writes, id: reportID, caseID: caseID, report: report, candidate: candidate, fingerprint: s.fingerprint!,
                             duplicate: assessment.duplicate, settings: settings)
            caseCreated = true
        }
        let caseProto = Mapping.proto(record, version: caseVersion)

        // The report is encoded once, for its row, its event and the stored response.
        var accepted = Liaison_Intake_V1_ReportAccepted()
        let (h1, id1) = header(aggregate: reportName, version: 1, requestID: requestID, at: now)
        accepted.header = h1
        accepted.customerSnapshot = report.customerSnapshot
        accepted.duplicate = assessment.duplicate
        if !settings.directoryEventDestinations.isEmpty {
            try Outbox.enqueue(writes, eventID: id1, topic: Liaison_Intake_V1_ReportAccepted.protoMessageName,
                               payload: try deterministicBytes(accepted, appendingField: 2, reportBytes),
                               destinations: settings.directoryEventDestinations)
        }
        if caseCreated {
            var opened = Liaison_Intake_V1_CaseOpened()
            let (h2, id2) = header(aggregate: record.name, version: caseVersion, requestID: requestID, at: now)
            opened.header = h2
            opened.case = caseProto
            opened.firstReport = reportName
            events.append((opened, id2, settings.caseEventDestinations))
        }
        for (event, id, destinations) in events { try publish(writes, event, id, destinations) }

        var response = Liaison_Intake_V1_SubmitReportResponse()
        response.case = caseProto
        response.caseCreated = caseCreated
        response.duplicate = assessment.duplicate
        let encoded = try deterministicBytes(response, appendingField: 1, reportBytes)
        try Idempotency.record(writes, s.key, response: encoded)
        response.report = report
        return SubmitAnswer(response: response, encoded: encoded)
    }

    static func publish(_ c: some SQLWriter, _ event: any SwiftProtobuf.Message, _ id: UUID, _ destinations: [String]) throws {
        func open<E: SwiftProtobuf.Message>(_ e: E) throws { try Events.publish(c, e, eventID: id, to: destinations) }
        try open(event)
    }

    /// Inserts the report row; returns the report's encoding (its `data`).
    @discardableResult
    static func insertReport(_ c: some SQLWriter, id: String, caseID: String, report: Liaison_Intake_V1_Report,
                             candidate: NewReport, fingerprint: ReportFingerprint, duplicate: Bool,
                             settings: IntakeSettings) throws -> [UInt8] {
        let snap = report.customerSnapshot
        let data = try deterministicBytes(report)
        try c.write("""
            INSERT INTO reports (id, customer_id, case_id, channel, symptom, agent, service_hint, ticket_system,
                ticket_id, duplicate, fingerprint, snapshot_region, snapshot_country, snapshot_tier,
                snapshot_partition, snapshot_white_glove, data, receive_time, create_time, update_time,
                symptom_inferred)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19, $20)
            """, [
                id, ResourceName.customerId(report.customer)!, caseID,
                ReportChannel(rawValue: report.channel.rawValue).protoName, candidate.symptom.protoName, report.agent,
                report.serviceHint, report.hasExternalTicket ? report.externalTicket.system : nil as String?,
                report.hasExternalTicket ? report.externalTicket.id : nil as String?, duplicate,
                ByteA(fingerprint.encode()), snap.region, snap.country, Tier(rawValue: snap.tier.rawValue).protoName,
                snap.accountPartition, snap.whiteGlove, ByteA(data), candidate.receiveTime,
                report.createTime.date, candidate.symptomInferred,
            ])
        return data
    }

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
            var reports: [String: [ReportRef]] = [:]
            for row in try c.query(
                "SELECT case_id, id, receive_time FROM reports WHERE case_id = ANY($1) ORDER BY receive_time, id",
                [TextArray(ids)]).rows {
                reports[try row.decode(String.self, 0), default: []].append(
                    ReportRef(name: "reports/" + (try row.decode(String.self, 1)), receiveTime: try row.decode(Date.self, 2)))
            }
            var byID: [String: Liaison_Intake_V1_Case] = [:]
            for row in try c.query("SELECT \(Self.caseColumns) FROM cases WHERE id = ANY($1)", [TextArray(ids)]).rows {
                let id = try row.decode(String.self, 0)
                let record = try Self.caseRecord(row, reports: reports[id] ?? [], history: [])
                byID[id] = Mapping.proto(record, version: try row.decode(Int64.self, 12))
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
    func getCase(id: String) async throws -> Liaison_Intake_V1_Case? {
        try await pool.withConnection { c in
            try Self.loadCase(c, id: id, lock: false).map { Mapping.proto($0.0, version: $0.1) }
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

    // MARK: - Lists

    /// How a list is ordered and paged.
    /// One page of a list (the runtime's keyset engine), and the next page's token.
    func list(table: String, columns: String, filter: SQLFilter, ordering: ListOrdering, after token: PageToken?,
              size: Int, query: QueryFingerprint, codec: PageTokenCodec) async throws -> (rows: [PostgresRow], next: String) {
        let lifetime = settings.pageTokenLifetime
        return try await pool.withConnection { c in
            try KeysetPage.page(c, table: table, columns: columns, filter: filter, ordering: ordering, after: token,
                                size: size, query: query, codec: codec, lifetime: lifetime)
        }
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
