import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SLADomain
import SwiftProtobuf

/// liaison.sla.v1.SlaService over the sla database. Stateless: any replica answers any call.
/// Contracts live here; the ledger, budgets and breaches in the extensions beside it.
public struct SLAHandler: Liaison_Sla_V1_SlaService.SimpleServiceProtocol {
    let pool: PostgresPool
    let settings: SLASettings
    let logger: Logger
    let codec: PageTokenCodec

    public init(pool: PostgresPool, settings: SLASettings, logger: Logger) {
        self.pool = pool
        self.settings = settings
        self.logger = logger
        self.codec = PageTokenCodec(key: settings.pageTokenKey)
    }

    // MARK: Plumbing (the kit)

    func mutate<Req: SwiftProtobuf.Message, Resp: SwiftProtobuf.Message>(
        _ scope: String, _ requestID: String, _ request: Req,
        _ body: @escaping @Sendable (PostgresConnection) throws -> Resp
    ) async throws -> Resp {
        try RequestFields.requestID(requestID, domain: domain)
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        let bytes: [UInt8] = try request.serializedBytes(options: options)
        return try await run(scope) { try await Mutation.once(pool, scope: scope, requestID: requestID, requestBytes: bytes, body) }
    }

    func read<T: Sendable>(_ method: String = #function, _ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await run(method) { try await pool.transaction(.repeatableRead, body) }
    }

    func run<T>(_ method: String, _ body: () async throws -> T) async throws -> T {
        try await ErrorMapper(domain: domain, logger: logger).run(method, body)
    }

    static func invalid(_ v: [APIError.FieldViolation]) throws {
        if !v.isEmpty { throw APIError.invalidArgument(domain: domain, v) }
    }

    static func notFound(_ type: String, _ name: String) -> APIError {
        APIError.notFound(domain: domain, resourceType: "liaison.sla.v1." + type, name: name)
    }

    static func customerID(_ name: String, field: String) throws -> String {
        guard let id = Store.id(name, "customers"), id.utf8.count <= 256 else {
            throw APIError.invalidArgument(domain: domain, field: field, "must be customers/{customer_id}")
        }
        return id
    }

    static func incidentID(_ name: String, field: String) throws -> UUID {
        guard let id = Store.uuid(name, "incidents") else {
            throw APIError.invalidArgument(domain: domain, field: field, "must be incidents/{uuid}")
        }
        return id
    }

    static func uuidName(_ name: String, _ collection: String, field: String) throws -> UUID {
        guard let id = Store.uuid(name, collection) else {
            throw APIError.invalidArgument(domain: domain, field: field, "must be \(collection)/{uuid}")
        }
        return id
    }

    static func validServiceName(_ s: String) -> Bool {
        s.hasPrefix("services/") && s.utf8.count > 9 && s.utf8.count <= 200
    }

    static func ms(_ d: Google_Protobuf_Duration) -> Int64 { d.seconds * 1000 + Int64(d.nanos / 1_000_000) }

    // MARK: Contract validation

    static let contractPaths: Set<String> = [
        "display_name", "customer", "tier", "services", "availability_objectives", "restore_objectives", "credit_schedule",
        "period_fee", "credit_cap_percent", "effective_window", "effective_window.start_time", "effective_window.end_time",
        "document", "time_zone", "maintenance_windows", "warning_thresholds_percent", "business_hours", "impact_weights",
    ]

    /// Everything wrong with a contract, by field path.
    static func violations(_ k: Liaison_Sla_V1_Contract, prefix p: String = "contract.") -> [APIError.FieldViolation] {
        var v: [APIError.FieldViolation] = []
        func add(_ f: String, _ d: String) { v.append(.init(p + f, d)) }
        if k.displayName.trimmingCharacters(in: .whitespaces).isEmpty { add("display_name", "is required") }
        switch k.scope {
        case .customer(let c)?: if Store.id(c, "customers") == nil { add("customer", "must be customers/{customer_id}") }
        case .tier(let t)?: if t == .unspecified || Liaison_Common_V1_Tier(rawValue: t.rawValue) == nil || t.rawValue > 4 { add("tier", "must be a tier") }
        case nil: add("scope", "a customer or a tier is required")
        }
        for (n, s) in k.services.enumerated() where !validServiceName(s) { add("services[\(n)]", "must be services/{service}") }
        if k.availabilityObjectives.isEmpty { add("availability_objectives", "at least one is required") }
        for (n, o) in k.availabilityObjectives.enumerated() {
            if !(o.targetPercent > 0 && o.targetPercent < 100) { add("availability_objectives[\(n)].target_percent", "must be in (0, 100)") }
            if o.period == .unspecified || o.period.rawValue > 3 { add("availability_objectives[\(n)].period", "is required") }
            if !o.service.isEmpty && !validServiceName(o.service) { add("availability_objectives[\(n)].service", "must be services/{service}") }
        }
        var severities = Set<Int>()
        for (n, r) in k.restoreObjectives.enumerated() {
            if r.severity == .unspecified || r.severity.rawValue > 5 { add("restore_objectives[\(n)].severity", "is required") }
            else if !severities.insert(r.severity.rawValue).inserted { add("restore_objectives[\(n)].severity", "is duplicated") }
            if ms(r.timeToRestore) <= 0 { add("restore_objectives[\(n)].time_to_restore", "must be positive") }
            if !(0...100).contains(r.creditPercent) { add("restore_objectives[\(n)].credit_percent", "must be in [0, 100]") }
            if r.businessHoursOnly && !k.hasBusinessHours { add("restore_objectives[\(n)].business_hours_only", "needs business_hours") }
        }
        for (n, s) in k.creditSchedule.enumerated() {
            if !(s.availabilityBelowPercent > 0 && s.availabilityBelowPercent <= 100) {
                add("credit_schedule[\(n)].availability_below_percent", "must be in (0, 100]")
            }
            if !(s.creditPercent > 0 && s.creditPercent <= 100) { add("credit_schedule[\(n)].credit_percent", "must be in (0, 100]") }
        }
        if k.hasPeriodFee {
            let code = k.periodFee.currencyCode
            if code.utf8.count != 3 || !code.utf8.allSatisfy({ $0 >= 65 && $0 <= 90 }) {
                add("period_fee.currency_code", "must be an ISO 4217 code such as EUR")
            } else if k.periodFee.units < 0 || k.periodFee.nanos < 0 {
                add("period_fee", "must not be negative")
            } else if k.periodFee.units > 1_000_000_000_000 {
                add("period_fee", "must be at most 1,000,000,000,000 units")
            } else if Currency.minorUnits(units: k.periodFee.units, nanos: k.periodFee.nanos, code: code) == nil {
                add("period_fee", "must be a whole number of \(code) minor units")
            }
        } else if !k.creditSchedule.isEmpty || k.restoreObjectives.contains(where: { $0.creditPercent > 0 }) {
            add("period_fee", "is required with credits")
        }
        if !(0...100).contains(k.creditCapPercent) { add("credit_cap_percent", "must be in [0, 100]") }
        if k.effectiveWindow.hasStartTime && k.effectiveWindow.hasEndTime
            && Store.ms(k.effectiveWindow.endTime) <= Store.ms(k.effectiveWindow.startTime) {
            add("effective_window.end_time", "must be after start_time")
        }
        if !k.timeZone.isEmpty && (k.timeZone.utf8.count > 64 || ContractCalendar(timeZone: k.timeZone) == nil) {
            add("time_zone", "unknown IANA time zone")
        }
        for (n, m) in k.maintenanceWindows.enumerated() {
            let f = "maintenance_windows[\(n)]"
            if !m.window.hasStartTime || !m.window.hasEndTime || Store.ms(m.window.endTime) <= Store.ms(m.window.startTime) {
                add(f + ".window", "needs a start and an end after it")
            } else {
                let len = Store.ms(m.window.endTime) - Store.ms(m.window.startTime)
                if m.recurrence == .daily && len > 86_400_000 { add(f + ".window", "a daily window lasts at most a day") }
                if m.recurrence == .weekly && len > 7 * 86_400_000 { add(f + ".window", "a weekly window lasts at most a week") }
                if len > 31 * 86_400_000 { add(f + ".window", "lasts at most 31 days") }
            }
            if m.recurrence.rawValue > 2 { add(f + ".recurrence", "unknown") }
            if m.reason.trimmingCharacters(in: .whitespaces).isEmpty { add(f + ".reason", "is required") }
            if m.approvedBy.trimmingCharacters(in: .whitespaces).isEmpty { add(f + ".approved_by", "is required") }
            for (i, s) in m.services.enumerated() where !validServiceName(s) { add(f + ".services[\(i)]", "must be services/{service}") }
        }
        if k.maintenanceWindows.count > 100 { add("maintenance_windows", "at most 100") }
        if Set(k.warningThresholdsPercent).count != k.warningThresholdsPercent.count { add("warning_thresholds_percent", "must not repeat") }
        for (n, t) in k.warningThresholdsPercent.enumerated() where !(1...100).contains(t) {
            add("warning_thresholds_percent[\(n)]", "must be in [1, 100]")
        }
        if k.hasBusinessHours {
            if k.businessHours.days.isEmpty { add("business_hours.days", "at least one is required") }
            for (n, d) in k.businessHours.days.enumerated() {
                if !(1...7).contains(d.weekday) { add("business_hours.days[\(n)].weekday", "must be 1 (Monday) to 7 (Sunday)") }
                if !(0..<1440).contains(d.startMinute) || !(d.startMinute + 1...1440).contains(d.endMinute) {
                    add("business_hours.days[\(n)]", "needs 0 <= start_minute < end_minute <= 1440")
                }
            }
            for (n, h) in k.businessHours.holidays.enumerated() where !validDate(h) {
                add("business_hours.holidays[\(n)]", "must be a date YYYY-MM-DD")
            }
        }
        var weightKeys = Set<String>()
        for (n, w) in k.impactWeights.enumerated() {
            if w.severity.rawValue < 0 || w.severity.rawValue > 5 { add("impact_weights[\(n)].severity", "unknown severity") }
            if w.symptom.rawValue < 0 || w.symptom.rawValue > 5 { add("impact_weights[\(n)].symptom", "unknown symptom") }
            if w.severity == .unspecified && w.symptom == .unspecified { add("impact_weights[\(n)]", "needs a severity or a symptom") }
            else if !weightKeys.insert("\(w.severity.rawValue):\(w.symptom.rawValue)").inserted { add("impact_weights[\(n)]", "is duplicated") }
            if !(0...100).contains(w.weightPercent) { add("impact_weights[\(n)].weight_percent", "must be in [0, 100]") }
        }
        var texts: [(String, String, Int)] = [(p + "display_name", k.displayName, 200), (p + "document.system", k.document.system, 64),
                                              (p + "document.id", k.document.id, 256), (p + "document.uri", k.document.uri, 2048)]
        for (n, m) in k.maintenanceWindows.enumerated() {
            texts += [(p + "maintenance_windows[\(n)].reason", m.reason, 1000), (p + "maintenance_windows[\(n)].approved_by", m.approvedBy, 256)]
        }
        v += RequestFields.lengthViolations(texts)
        let counts: [(String, Int, Int)] = [("services", k.services.count, 200), ("availability_objectives", k.availabilityObjectives.count, 50),
                                            ("credit_schedule", k.creditSchedule.count, 20), ("business_hours.holidays", k.businessHours.holidays.count, 1000),
                                            ("business_hours.days", k.businessHours.days.count, 50)]
        for (f, n, m) in counts where n > m { add(f, "at most \(m)") }
        return v
    }

    static func validDate(_ s: String) -> Bool {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]) else { return false }
        return y >= 1 && (1...12).contains(m) && (1...31).contains(d)
    }

    static func contractID(_ name: String, field: String = "name") throws -> String {
        guard let id = Store.id(name, "contracts"), validID(id) else {
            throw APIError.invalidArgument(domain: domain, field: field, "must be contracts/{contract}")
        }
        return id
    }

    /// The contract a mutation changes, locked, after its etag check (NOT_FOUND, ABORTED).
    static func lockedContract(_ c: PostgresConnection, _ id: String, name: String, etag: String) throws -> Liaison_Sla_V1_Contract {
        guard let (k, version) = try Store.contract(c, id, forUpdate: true) else { throw notFound("Contract", name) }
        try Store.checkEtag(etag, version, name: k.name)
        return k
    }

    static func validID(_ id: String) -> Bool {
        (1...63).contains(id.utf8.count) && id.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }
    }

    // MARK: Contracts

    public func createContract(request: Liaison_Sla_V1_CreateContractRequest, context: ServerContext) async throws -> Liaison_Sla_V1_Contract {
        var v: [APIError.FieldViolation] = []
        if !Self.validID(request.contractID) { v.append(.init("contract_id", "must be 1-63 characters of [a-z0-9-]")) }
        if !request.hasContract { v.append(.init("contract", "is required")) } else { v += Self.violations(request.contract) }
        try Self.invalid(v)
        return try await mutate("CreateContract", request.requestID, request) { c in
            let now = try Store.now(c)
            guard try Store.insertContract(c, id: request.contractID, request.contract, now: now) else {
                throw APIError.alreadyExists(domain: domain, resourceType: "liaison.sla.v1.Contract", name: "contracts/" + request.contractID)
            }
            return try Store.contract(c, request.contractID)!.0
        }
    }

    public func getContract(request: Liaison_Sla_V1_GetContractRequest, context: ServerContext) async throws -> Liaison_Sla_V1_Contract {
        let id = try Self.contractID(request.name)
        return try await read { c in
            guard let (k, _) = try Store.contract(c, id) else { throw Self.notFound("Contract", request.name) }
            return k
        }
    }

    public func listContracts(request: Liaison_Sla_V1_ListContractsRequest, context: ServerContext) async throws -> Liaison_Sla_V1_ListContractsResponse {
        let q = try ListQuery(
            collection: "contracts", pageSize: request.pageSize, defaultSize: 100, maxSize: 1000, filter: request.filter,
            parser: Self.contractFilter, orderBy: request.orderBy, orderings: Self.contractOrderings, pageToken: request.pageToken,
            codec: codec, domain: domain)
        let (codec, lifetime) = (self.codec, settings.pageTokenLifetime)
        return try await read { c in
            let page = try q.page(c, table: "contracts", columns: Store.contractColumns, codec: codec, lifetime: lifetime)
            var out = Liaison_Sla_V1_ListContractsResponse()
            out.contracts = try page.rows.map(Store.contract)
            out.nextPageToken = page.next
            return out
        }
    }

    public func updateContract(request: Liaison_Sla_V1_UpdateContractRequest, context: ServerContext) async throws -> Liaison_Sla_V1_Contract {
        let id = try Self.contractID(request.contract.name, field: "contract.name")
        let paths = request.updateMask.paths
        if paths.isEmpty { throw APIError.invalidArgument(domain: domain, field: "update_mask", "is required") }
        for path in paths where !Self.contractPaths.contains(path) {
            throw APIError.invalidArgument(domain: domain, field: "update_mask", "unknown or output-only path \"\(path.prefix(100))\"")
        }
        let given = request.contract
        return try await mutate("UpdateContract", request.requestID, request) { c in
            let current = try Self.lockedContract(c, id, name: request.contract.name, etag: request.etag)
            var k = current
            for path in paths {
                switch path {
                case "display_name": k.displayName = given.displayName
                case "customer":
                    guard case .customer(let x)? = given.scope else {
                        throw APIError.invalidArgument(domain: domain, field: "contract.customer", "is required when in update_mask")
                    }
                    k.scope = .customer(x)
                case "tier":
                    guard case .tier(let x)? = given.scope else {
                        throw APIError.invalidArgument(domain: domain, field: "contract.tier", "is required when in update_mask")
                    }
                    k.scope = .tier(x)
                case "services": k.services = given.services
                case "availability_objectives": k.availabilityObjectives = given.availabilityObjectives
                case "restore_objectives": k.restoreObjectives = given.restoreObjectives
                case "credit_schedule": k.creditSchedule = given.creditSchedule
                case "period_fee": if given.hasPeriodFee { k.periodFee = given.periodFee } else { k.clearPeriodFee() }
                case "credit_cap_percent": k.creditCapPercent = given.creditCapPercent
                case "effective_window": k.effectiveWindow = given.effectiveWindow
                case "effective_window.start_time":
                    if given.effectiveWindow.hasStartTime { k.effectiveWindow.startTime = given.effectiveWindow.startTime } else { k.effectiveWindow.clearStartTime() }
                case "effective_window.end_time":
                    if given.effectiveWindow.hasEndTime { k.effectiveWindow.endTime = given.effectiveWindow.endTime } else { k.effectiveWindow.clearEndTime() }
                case "document": k.document = given.document
                case "time_zone": k.timeZone = given.timeZone
                case "maintenance_windows": k.maintenanceWindows = given.maintenanceWindows
                case "warning_thresholds_percent": k.warningThresholdsPercent = given.warningThresholdsPercent
                case "business_hours": if given.hasBusinessHours { k.businessHours = given.businessHours } else { k.clearBusinessHours() }
                case "impact_weights": k.impactWeights = given.impactWeights
                default: break
                }
            }
            try Self.invalid(Self.violations(k))
            let state = ContractState(rawValue: current.state.rawValue) ?? .draft
            let now = Store.ms(try Store.now(c))
            switch state {
            case .draft: break
            case .retired:
                throw APIError.failedPrecondition(domain: domain, type: "STATE", subject: current.name, "a RETIRED contract cannot change")
            case .active:
                try Self.checkActiveChange(current, k, paths: paths, now: now)
            }
            let out = try Store.updateContract(c, id: id, k, state: state)
            if state == .active { try Store.markContractCustomersDirty(c, out) }
            return out
        }
    }

    /// An ACTIVE contract changes only its name, document, end (not into the past) and future
    /// maintenance windows: anything else would rewrite periods already measured.
    static func checkActiveChange(_ old: Liaison_Sla_V1_Contract, _ new: Liaison_Sla_V1_Contract, paths: [String], now: Int64) throws {
        let free: Set<String> = ["display_name", "document", "effective_window.end_time", "maintenance_windows", "effective_window"]
        for path in paths where !free.contains(path) {
            throw APIError.failedPrecondition(domain: domain, type: "STATE", subject: old.name,
                                              "an ACTIVE contract may only change display_name, document, the end of effective_window and future maintenance windows; \(path) cannot change (create a new contract)")
        }
        if new.effectiveWindow.startTime != old.effectiveWindow.startTime {
            throw APIError.failedPrecondition(domain: domain, type: "STATE", subject: old.name, "the start of an ACTIVE contract cannot change")
        }
        if new.effectiveWindow.hasEndTime && Store.ms(new.effectiveWindow.endTime) < now {
            throw APIError.invalidArgument(domain: domain, field: "contract.effective_window.end_time", "must not be in the past for an ACTIVE contract")
        }
        let oldPast = Set(old.maintenanceWindows.filter { Store.ms($0.window.startTime) < now }.map { try? $0.serializedBytes() as [UInt8] })
        let newPast = Set(new.maintenanceWindows.filter { Store.ms($0.window.startTime) < now }.map { try? $0.serializedBytes() as [UInt8] })
        if oldPast != newPast {
            throw APIError.failedPrecondition(domain: domain, type: "STATE", subject: old.name,
                                              "maintenance windows that already started cannot be added, changed or removed")
        }
    }

    public func deleteContract(request: Liaison_Sla_V1_DeleteContractRequest, context: ServerContext) async throws -> Google_Protobuf_Empty {
        let id = try Self.contractID(request.name)
        return try await mutate("DeleteContract", request.requestID, request) { c in
            let k = try Self.lockedContract(c, id, name: request.name, etag: request.etag)
            guard k.state == .draft else {
                throw APIError.failedPrecondition(domain: domain, type: "STATE", subject: k.name, "only a DRAFT contract can be deleted; retire it instead")
            }
            try Store.deleteContract(c, id: id)
            return Google_Protobuf_Empty()
        }
    }

    public func activateContract(request: Liaison_Sla_V1_ActivateContractRequest, context: ServerContext) async throws -> Liaison_Sla_V1_Contract {
        let id = try Self.contractID(request.name)
        return try await mutate("ActivateContract", request.requestID, request) { c in
            let current = try Self.lockedContract(c, id, name: request.name, etag: request.etag)
            guard current.state == .draft else {
                throw APIError.failedPrecondition(domain: domain, type: "STATE", subject: current.name, "only a DRAFT contract can be activated")
            }
            let now = try Store.now(c)
            var k = current
            if !k.effectiveWindow.hasStartTime { k.effectiveWindow.startTime = Store.timestamp(now) }
            let start = Store.ms(k.effectiveWindow.startTime)
            // A contract starts in an open period: it never rewrites a closed one.
            if let calendar = ContractCalendar(timeZone: k.timeZone.isEmpty ? "UTC" : k.timeZone) {
                for o in k.availabilityObjectives {
                    let kind: PeriodKind = o.period == .quarter ? .quarter : o.period == .year ? .year : .month
                    let open = calendar.period(kind, containing: Store.ms(now))
                    if start < open.start {
                        throw APIError.failedPrecondition(domain: domain, type: "CLOSED_PERIOD", subject: current.name,
                                                          "effective_window.start_time lies in a closed \(kind) period (the current one starts \(Store.date(open.start))); a contract never rewrites a closed period")
                    }
                }
            }
            if k.effectiveWindow.hasEndTime && Store.ms(k.effectiveWindow.endTime) <= Store.ms(now) {
                throw APIError.failedPrecondition(domain: domain, type: "EXPIRED", subject: current.name, "the effective window has already ended")
            }
            // Contracts of the same scope it overlaps end where it starts.
            let startDate = Store.date(start)
            for (old, _) in try Store.overlappingActive(c, k, excluding: id, start: startDate,
                                                        end: k.effectiveWindow.hasEndTime ? k.effectiveWindow.endTime.date : nil) {
                var o = old
                let oldStart = Store.ms(o.effectiveWindow.startTime)
                o.effectiveWindow.endTime = Store.timestamp(max(oldStart, start))
                let oid = String(o.name.dropFirst("contracts/".count))
                _ = try Store.updateContract(c, id: oid, o, state: .retired)
            }
            let out = try Store.updateContract(c, id: id, k, state: .active)
            try Store.markContractCustomersDirty(c, out)
            return out
        }
    }

    public func retireContract(request: Liaison_Sla_V1_RetireContractRequest, context: ServerContext) async throws -> Liaison_Sla_V1_Contract {
        let id = try Self.contractID(request.name)
        return try await mutate("RetireContract", request.requestID, request) { c in
            let current = try Self.lockedContract(c, id, name: request.name, etag: request.etag)
            guard current.state == .active else {
                throw APIError.failedPrecondition(domain: domain, type: "STATE", subject: current.name, "only an ACTIVE contract can be retired")
            }
            let now = try Store.now(c)
            var k = current
            if !k.effectiveWindow.hasEndTime || k.effectiveWindow.endTime.date > now {
                k.effectiveWindow.endTime = Store.timestamp(max(now, k.effectiveWindow.startTime.date))
            }
            let out = try Store.updateContract(c, id: id, k, state: .retired)
            try Store.markContractCustomersDirty(c, out)
            return out
        }
    }

    public func getEffectiveContract(request: Liaison_Sla_V1_GetEffectiveContractRequest, context: ServerContext) async throws -> Liaison_Sla_V1_Contract {
        let customer = try Self.customerID(request.customer, field: "customer")
        return try await read { c in
            let t = request.hasTime ? Store.ms(request.time) : Store.ms(try Store.now(c))
            let ctx = try Evaluator.load(c, [customer], now: max(t, Store.ms(try Store.now(c))))
            let tier = ctx.customers[customer]?.tier ?? 0
            let candidates = try Store.governingCandidates(c, customers: [customer], tiers: [tier], from: Store.date(t))
            guard let k = Governing.at(t, Governing.candidates(candidates, customer: customer, tier: tier)) else {
                throw APIError.notFound(domain: domain, resourceType: "liaison.sla.v1.Contract",
                                        name: "effective contract of \(request.customer)")
            }
            return k.contract
        }
    }
}
