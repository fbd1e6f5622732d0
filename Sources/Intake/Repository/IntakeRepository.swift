// The intake repository: every SQL statement of the service. Transaction bodies are synchronous
// closures run on a connection thread (see LiaisonStorage's DataModel article): they touch only
// the database, may be retried as a whole, and record the request_id and the outbox events in the
// same transaction as the change, so that an acknowledged call is durable and its events exist
// exactly when the change does.
import IntakeDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf

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
        let destinations = settings.customerEventDestinations
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
        let destinations = settings.customerEventDestinations
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

    // MARK: - Lists

    /// One page of a list (the runtime's keyset engine), and the next page's token.
    func list(table: String, columns: String, query: ListQuery, codec: PageTokenCodec) async throws
        -> (rows: [PostgresRow], next: String) {
        let lifetime = settings.pageTokenLifetime
        return try await pool.withConnection { c in
            try query.page(c, table: table, columns: columns, codec: codec, lifetime: lifetime)
        }
    }
}
