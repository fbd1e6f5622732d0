// The liaison.intake.v1.IntakeService handlers: parse and validate requests (domain validators),
// call the repository, map every failure to a gRPC status with google.rpc details.
import IntakeDomain
import Foundation
import GRPCCore
import GRPCProtobuf
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf

/// The intake gRPC API over an `IntakeRepository`.
public struct IntakeHandler: Liaison_Intake_V1_IntakeService.SimpleServiceProtocol {
    static let domain = "liaison.intake.v1"
    let repository: IntakeRepository
    let codec: PageTokenCodec
    let logger: Logger

    /// A handler storing into `pool` with `settings`.
    public init(pool: PostgresPool, settings: IntakeSettings, logger: Logger) {
        self.repository = IntakeRepository(pool: pool, settings: settings)
        self.codec = PageTokenCodec(key: settings.pageTokenKey)
        self.logger = logger
    }

    // MARK: - Errors

    /// Runs `body`, mapping domain, repository and storage errors to `APIError`.
    func handle<T: Sendable>(_ method: String, _ body: () async throws -> T) async throws -> T {
        try await Self.errors(logger).run(method, body)
    }

    static func apiError(_ error: any Error, logger: Logger, method: String) -> APIError {
        errors(logger).map(error, method: method)
    }

    /// The kit's error mapping plus intake's own error types.
    static func errors(_ logger: Logger) -> ErrorMapper {
        ErrorMapper(domain: domain, logger: logger) { error in
            switch error {
            case let e as ValidationError: return invalid(e.violations)
            case let e as FieldViolation: return invalid([e])
            case let e as CaseRuleError:
                switch e.kind {
                case .invalidArgument: return invalid(e.fieldViolations)
                case .failedPrecondition:
                    let v = e.preconditionViolations.first!
                    return APIError.failedPrecondition(domain: domain, type: v.type, subject: v.subject, v.description)
                }
            case let e as RepositoryError:
                switch e {
                case .notFound(let type, let name): return APIError.notFound(domain: domain, resourceType: type, name: name)
                case .etagMismatch(let name, let current): return APIError.etagMismatch(domain: domain, name: name, currentEtag: current)
                case .invalid(let v): return invalid(v)
                }
            default: return nil
            }
        }
    }

    static func invalid(_ violations: [FieldViolation]) -> APIError {
        APIError.invalidArgument(domain: domain, violations.map { APIError.FieldViolation($0.field, $0.description) })
    }

    static func requireRequestID(_ id: String, field: String = "request_id") throws {
        try RequestFields.requestID(id, field: field, domain: domain)
    }

    static func name(_ name: String, collection: String, field: String = "name") throws -> String {
        guard let id = ResourceName.id(of: name, collection: collection) else {
            throw FieldViolation(field: field, description: name.isEmpty ? "required: \(collection)/{id}" : "must be \(collection)/{id}")
        }
        return id
    }

    // MARK: - Customers

    public func getCustomer(request: Liaison_Intake_V1_GetCustomerRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_Customer
    {
        try await handle("GetCustomer") {
            let id = try Self.name(request.name, collection: "customers")
            guard let c = try await repository.getCustomer(id: id, contacts: request.view == .full) else {
                throw RepositoryError.notFound(type: "liaison.intake.v1.Customer", name: request.name)
            }
            return c
        }
    }

    static let customerFilter = FilterParser(domain: domain, fields: [
        "region": .text("region"), "country": .text("country"),
        "tier": .enumeration("tier", Tier.self, prefix: "TIER_"), "white_glove": .bool("white_glove"),
        "features": .has("features"), "platform": .hasEnum("platforms", Platform.self, prefix: "PLATFORM_"),
        "client_version": .has("client_versions"), "owning_agent": .text("owning_agent"),
        "state": .enumeration("state", CustomerState.self, prefix: ""), "account_number": .text("account_number"),
        "account_partition": .text("account_partition"), "update_time": .time("update_time"),
    ])

    static func pageSize(_ n: Int32) throws -> Int {
        try RequestFields.pageSize(n, default: 100, max: 1000, domain: domain)
    }

    /// A List request's checked parts (the kit's `ListQuery`) with intake's page sizes.
    func listQuery(_ collection: String, _ pageSize: Int32, _ filter: String, _ parser: FilterParser, _ orderBy: String,
                   _ orderings: KeyValuePairs<String, ListOrdering>, _ pageToken: String) throws -> ListQuery {
        try ListQuery(collection: collection, pageSize: pageSize, defaultSize: 100, maxSize: 1000, filter: filter,
                      parser: parser, orderBy: orderBy, orderings: orderings, pageToken: pageToken, codec: codec,
                      domain: Self.domain)
    }

    func token(_ s: String, _ query: QueryFingerprint) throws -> PageToken? {
        s.isEmpty ? nil : try PageToken.decode(s, using: codec, expecting: query)
    }

    func nextToken(_ next: (Int64, String)?, _ query: QueryFingerprint) -> String {
        guard let (t, id) = next else { return "" }
        return PageToken(query: query, lastTimeMicros: t, lastId: id,
                         expireTimeMicros: PageToken.micros(Date().addingTimeInterval(repository.settings.pageTokenLifetime))).encoded(using: codec)
    }

    static let customerOrderings: KeyValuePairs<String, ListOrdering> = [
        "name": .init(column: "id", key: .idOnly, descending: false, idType: "text"),
        "update_time desc": .init(column: "update_time", key: .time, descending: true, idType: "text"),
        "display_name": .init(column: "display_name", key: .text, descending: false, idType: "text"),
    ]
    static let reportOrderings: KeyValuePairs<String, ListOrdering> = [
        "receive_time desc": .init(column: "receive_time", key: .time, descending: true, idType: "text"),
        "receive_time": .init(column: "receive_time", key: .time, descending: false, idType: "text"),
        "create_time": .init(column: "create_time", key: .time, descending: false, idType: "text"),
    ]
    static let caseOrderings: KeyValuePairs<String, ListOrdering> = [
        "update_time desc": .init(column: "update_time", key: .time, descending: true, idType: "text"),
        "create_time": .init(column: "create_time", key: .time, descending: false, idType: "text"),
        "create_time desc": .init(column: "create_time", key: .time, descending: true, idType: "text"),
    ]

    public func listCustomers(request: Liaison_Intake_V1_ListCustomersRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_ListCustomersResponse
    {
        try await handle("ListCustomers") {
            let q = try listQuery("customers", request.pageSize, request.filter, Self.customerFilter, request.orderBy,
                                  Self.customerOrderings, request.pageToken)
            let full = request.view == .full
            let page = try await repository.list(table: "customers", columns: IntakeRepository.customerColumns, query: q, codec: codec)
            var response = Liaison_Intake_V1_ListCustomersResponse()
            response.customers = try page.rows.map { try IntakeRepository.customer($0, contacts: full) }
            response.nextPageToken = page.next
            return response
        }
    }

    public func batchUpsertCustomers(request: Liaison_Intake_V1_BatchUpsertCustomersRequest, context: ServerContext)
        async throws -> Liaison_Intake_V1_BatchUpsertCustomersResponse
    {
        try await handle("BatchUpsertCustomers") {
            var violations = CustomerRules.batchUpsertViolations(names: request.customers.map(\.name))
            if let v = CustomerRules.requestIdViolation(request.requestID) { violations.append(v) }
            if !violations.isEmpty { throw ValidationError(violations: violations) }
            var entries: [IntakeRepository.UpsertEntry] = []
            var failed: [Liaison_Intake_V1_UpsertCustomerResult] = []
            for (i, customer) in request.customers.enumerated() {
                let v = CustomerValidator.violations(of: Mapping.customerUpsert(customer), prefix: "customers[\(i)]")
                if v.isEmpty {
                    entries.append(.init(index: i, id: ResourceName.customerId(customer.name)!, customer: Mapping.storedCustomer(customer)))
                } else {
                    var r = Liaison_Intake_V1_UpsertCustomerResult()
                    r.index = Int32(i)
                    r.outcome = .failed
                    r.status = Self.rpcStatus(Self.invalid(v))
                    failed.append(r)
                }
            }
            return try await repository.batchUpsert(entries: entries, failed: failed, requestID: request.requestID,
                                                    requestBytes: try deterministicBytes(request))
        }
    }

    static func rpcStatus(_ e: APIError) -> Google_Rpc_Status {
        let bytes: [UInt8] = (try? e.status.serializedBytes()) ?? []
        return (try? Google_Rpc_Status(serializedBytes: bytes)) ?? Google_Rpc_Status()
    }

    public func updateCustomer(request: Liaison_Intake_V1_UpdateCustomerRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_Customer
    {
        try await handle("UpdateCustomer") {
            var violations = CustomerValidator.updateViolations(
                of: Mapping.customerUpsert(request.customer), updateMask: request.updateMask.paths)
            if let v = CustomerRules.requestIdViolation(request.requestID) { violations.append(v) }
            if !violations.isEmpty { throw ValidationError(violations: violations) }
            let id = ResourceName.customerId(request.customer.name)!
            return try await repository.updateCustomer(
                id: id, incoming: request.customer, mask: request.updateMask.paths, etag: request.etag,
                requestID: request.requestID, requestBytes: try deterministicBytes(request))
        }
    }

    // MARK: - Reports

    func validate(_ report: Liaison_Intake_V1_Report, prefix: String) -> [FieldViolation] {
        ReportValidator.violations(of: Mapping.submission(report), now: Date(), config: repository.settings.validation,
                                   prefix: prefix)
    }

    public func submitReport(request: Liaison_Intake_V1_SubmitReportRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_SubmitReportResponse
    {
        try await handle("SubmitReport") { try await submitAnswer(request).response }
    }

    /// SubmitReport as the direct unary path serves it (`servedDirect`): answered with the
    /// response bytes recorded for replays, as BatchSubmitReports answers its entries, instead
    /// of encoding the response a second time (about 5% of intake's CPU per single report).
    func submitReportEncoded(_ request: Liaison_Intake_V1_SubmitReportRequest) async throws -> [UInt8] {
        let answer = try await handle("SubmitReport") { try await submitAnswer(request) }
        return try answer.encoded ?? answer.response.serializedBytes()
    }

    func submitAnswer(_ request: Liaison_Intake_V1_SubmitReportRequest) async throws -> SubmitAnswer {
        var violations = validate(request.report, prefix: "report")
        if let v = CustomerRules.requestIdViolation(request.requestID) { violations.append(v) }
        if !violations.isEmpty { throw ValidationError(violations: violations) }
        return try await repository.submitAnswer(request.report, requestID: request.requestID,
                                                 requestBytes: try deterministicBytes(request))
    }

    /// The service for the server: the generated tables (`served`), with SubmitReport's direct
    /// path answering with recorded bytes (`submitReportEncoded`).
    public var servedDirect: ServedRPCService {
        let base = served
        let submit = Liaison_Intake_V1_IntakeService.Method.SubmitReport.descriptor
        return ServedRPCService(base.registrable, unaryMethods: base.unaryMethods.map { method in
            guard method.descriptor == submit else { return method }
            return UnaryMethod(submit, encodedResponse: { (request: Liaison_Intake_V1_SubmitReportRequest, _) in
                try await self.submitReportEncoded(request)
            })
        })
    }

    public func batchSubmitReports(request: Liaison_Intake_V1_BatchSubmitReportsRequest, context: ServerContext)
        async throws -> Liaison_Intake_V1_BatchSubmitReportsResponse
    {
        try await handle("BatchSubmitReports") {
            let v = CustomerRules.batchSubmitViolations(count: request.requests.count)
            if !v.isEmpty { throw ValidationError(violations: v) }
            var response = Liaison_Intake_V1_BatchSubmitReportsResponse()
            response.results = request.requests.indices.map { i in
                var result = Liaison_Intake_V1_SubmitReportResult()
                result.index = Int32(i)
                return result
            }
            // Validate every entry first; the valid ones go to the database together (one
            // transaction, or two at once on two connections; see IntakeRepository.submitBatch).
            var valid: [(index: Int, report: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8])] = []
            for (i, entry) in request.requests.enumerated() {
                var violations = validate(entry.report, prefix: "requests[\(i)].report")
                if let v = CustomerRules.requestIdViolation(entry.requestID, field: "requests[\(i)].request_id") {
                    violations.append(v)
                }
                if violations.isEmpty {
                    valid.append((i, entry.report, entry.requestID, try deterministicBytes(entry)))
                } else {
                    response.results[i].status = Self.rpcStatus(
                        Self.apiError(ValidationError(violations: violations), logger: logger, method: "BatchSubmitReports"))
                }
            }
            if !valid.isEmpty {
                // A database failure fails the whole call: nothing was acknowledged, and the
                // client retries with the same request ids.
                let outcomes = try await repository.submitBatch(valid.map { ($0.report, $0.requestID, $0.requestBytes) })
                for (entry, outcome) in zip(valid, outcomes) {
                    switch outcome {
                    case .success(let answer):
                        response.results[entry.index].status = Google_Rpc_Status()
                        if let encoded = answer.encoded {
                            // Field 2, `response`, as recorded (see `setEncodedField`).
                            try setEncodedField(2, encoded, in: &response.results[entry.index])
                        } else {
                            response.results[entry.index].response = answer.response
                        }
                    case .failure(let error):
                        response.results[entry.index].status = Self.rpcStatus(
                            Self.apiError(error, logger: logger, method: "BatchSubmitReports"))
                    }
                }
            }
            return response
        }
    }

    public func getReport(request: Liaison_Intake_V1_GetReportRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_Report
    {
        try await handle("GetReport") {
            let id = try Self.name(request.name, collection: "reports")
            guard let r = try await repository.getReport(id: id) else {
                throw RepositoryError.notFound(type: "liaison.intake.v1.Report", name: request.name)
            }
            return r
        }
    }

    static let reportFilter = FilterParser(domain: domain, fields: [
        "customer": .resource("customer_id", "customers"), "case": .resource("case_id", "cases"),
        "channel": .enumeration("channel", ReportChannel.self, prefix: "REPORT_CHANNEL_"),
        "symptom": .enumeration("symptom", SymptomKind.self, prefix: "SYMPTOM_KIND_"), "agent": .text("agent"),
        "service_hint": .text("service_hint"), "incidents": .has("incidents"),
        "duplicate_assessment.duplicate": .bool("duplicate"), "external_ticket.system": .text("ticket_system"),
        "external_ticket.id": .text("ticket_id"), "receive_time": .time("receive_time"),
        "create_time": .time("create_time"), "customer_snapshot.region": .text("snapshot_region"),
        "customer_snapshot.country": .text("snapshot_country"),
        "customer_snapshot.tier": .enumeration("snapshot_tier", Tier.self, prefix: "TIER_"),
        "customer_snapshot.account_partition": .text("snapshot_partition"),
        "customer_snapshot.white_glove": .bool("snapshot_white_glove"),
    ])

    public func listReports(request: Liaison_Intake_V1_ListReportsRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_ListReportsResponse
    {
        try await handle("ListReports") {
            let q = try listQuery("reports", request.pageSize, request.filter, Self.reportFilter, request.orderBy,
                                  Self.reportOrderings, request.pageToken)
            let page = try await repository.list(table: "reports", columns: IntakeRepository.reportColumns, query: q, codec: codec)
            var response = Liaison_Intake_V1_ListReportsResponse()
            response.reports = try page.rows.map(IntakeRepository.report)
            response.nextPageToken = page.next
            return response
        }
    }

    // MARK: - Cases

    public func getCase(request: Liaison_Intake_V1_GetCaseRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_Case
    {
        try await handle("GetCase") {
            let id = try Self.name(request.name, collection: "cases")
            guard let c = try await repository.getCase(id: id) else {
                throw RepositoryError.notFound(type: "liaison.intake.v1.Case", name: request.name)
            }
            return c
        }
    }

    static let caseFilter = FilterParser(domain: domain, fields: [
        "customer": .resource("customer_id", "customers"),
        "state": .enumeration("state", CaseState.self, prefix: ""), "owner": .text("owner"),
        "incidents": .has("incidents"), "symptom": .enumeration("symptom", SymptomKind.self, prefix: "SYMPTOM_KIND_"),
        "create_time": .time("create_time"), "update_time": .time("update_time"),
    ])

    public func listCases(request: Liaison_Intake_V1_ListCasesRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_ListCasesResponse
    {
        try await handle("ListCases") {
            let q = try listQuery("cases", request.pageSize, request.filter, Self.caseFilter, request.orderBy,
                                  Self.caseOrderings, request.pageToken)
            let page = try await repository.list(table: "cases", columns: "id", query: q, codec: codec)
            var response = Liaison_Intake_V1_ListCasesResponse()
            response.cases = try await repository.cases(ids: page.rows.map { try $0.decode(String.self, 0) })
            response.nextPageToken = page.next
            return response
        }
    }

    public func assignCase(request: Liaison_Intake_V1_AssignCaseRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_Case
    {
        try await handle("AssignCase") {
            _ = try Self.name(request.name, collection: "cases")
            _ = try Self.name(request.owner, collection: "agents", field: "owner")
            try Self.requireRequestID(request.requestID)
            return try await repository.mutateCases(
                scope: "intake.AssignCase", requestID: request.requestID, requestBytes: try deterministicBytes(request)
            ) { c, now in
                let (current, version) = try IntakeRepository.lockedCase(c, name: request.name, etag: request.etag)
                let next = try CaseRules.assign(current, to: request.owner, note: request.note, actor: request.owner, at: now)
                if next == current { return (Mapping.proto(current, version: version), []) }
                try IntakeRepository.saveCase(c, old: current, new: next, version: version + 1)
                let out = Mapping.proto(next, version: version + 1)
                var e = Liaison_Intake_V1_CaseAssigned()
                e.header = IntakeRepository.header(aggregate: out.name, version: version + 1, requestID: request.requestID, at: now).0
                e.case = out
                e.previousOwner = current.owner
                return (out, [e])
            }
        }
    }

    public func mergeCases(request: Liaison_Intake_V1_MergeCasesRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_Case
    {
        try await handle("MergeCases") {
            _ = try Self.name(request.name, collection: "cases")
            for (i, s) in request.sourceCases.enumerated() {
                _ = try Self.name(s, collection: "cases", field: "source_cases[\(i)]")
            }
            try Self.requireRequestID(request.requestID)
            return try await repository.mutateCases(
                scope: "intake.MergeCases", requestID: request.requestID, requestBytes: try deterministicBytes(request)
            ) { c, now in
                // Lock every case in name order (no deadlock between concurrent merges).
                var locked: [String: (CaseRecord, Int64)] = [:]
                for name in Set([request.name] + request.sourceCases).sorted() {
                    locked[name] = try IntakeRepository.lockedCase(c, name: name, etag: name == request.name ? request.etag : "")
                }
                let (survivor, version) = locked[request.name]!
                let sources = request.sourceCases.map { locked[$0]!.0 }
                let result = try CaseRules.merge(survivor: survivor, sources: sources, note: request.note,
                                                 actor: "services/intake", at: now)
                for m in result.merged {
                    let (old, v) = locked[m.name]!
                    try IntakeRepository.saveCase(c, old: old, new: m, version: v + 1)
                }
                try IntakeRepository.saveCase(c, old: survivor, new: result.survivor, version: version + 1)
                let out = Mapping.proto(result.survivor, version: version + 1)
                var e = Liaison_Intake_V1_CasesMerged()
                e.header = IntakeRepository.header(aggregate: out.name, version: version + 1, requestID: request.requestID, at: now).0
                e.case = out
                e.mergedCases = request.sourceCases
                return (out, [e])
            }
        }
    }

    public func splitCase(request: Liaison_Intake_V1_SplitCaseRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_SplitCaseResponse
    {
        try await handle("SplitCase") {
            _ = try Self.name(request.name, collection: "cases")
            if !request.newOwner.isEmpty { _ = try Self.name(request.newOwner, collection: "agents", field: "new_owner") }
            try Self.requireRequestID(request.requestID)
            return try await repository.mutateCases(
                scope: "intake.SplitCase", requestID: request.requestID, requestBytes: try deterministicBytes(request)
            ) { c, now in
                let (current, version) = try IntakeRepository.lockedCase(c, name: request.name, etag: request.etag)
                let newName = "cases/" + RandomUUID.make().lowercasedString
                var result = try CaseRules.split(current, reports: request.reports, newCaseName: newName,
                                                 newOwner: request.newOwner, newTitle: request.newTitle,
                                                 actor: request.newOwner.isEmpty ? current.owner : request.newOwner, at: now)
                // Each case keeps the incidents its own reports are linked to.
                result.newCase.incidents = try IntakeRepository.caseIncidents(
                    c, reports: result.newCase.reportNames, current: current.incidents)
                result.original.incidents = try IntakeRepository.caseIncidents(
                    c, reports: result.original.reportNames, current: current.incidents)
                try IntakeRepository.saveCase(c, old: nil, new: result.newCase, version: 1)
                try IntakeRepository.saveCase(c, old: current, new: result.original, version: version + 1)
                var response = Liaison_Intake_V1_SplitCaseResponse()
                response.originalCase = Mapping.proto(result.original, version: version + 1)
                response.newCase = Mapping.proto(result.newCase, version: 1)
                var e = Liaison_Intake_V1_CaseOpened()
                e.header = IntakeRepository.header(aggregate: newName, version: 1, requestID: request.requestID, at: now).0
                e.case = response.newCase
                e.firstReport = result.newCase.reportNames.first ?? ""
                e.splitFrom = current.name
                return (response, [e])
            }
        }
    }

    public func closeCase(request: Liaison_Intake_V1_CloseCaseRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_Case
    {
        try await handle("CloseCase") {
            _ = try Self.name(request.name, collection: "cases")
            let outcome = CaseOutcome(rawValue: request.outcome.rawValue)
            if !outcome.isSpecified { throw CaseRuleError.outcomeRequired(outcome) }
            try Self.requireRequestID(request.requestID)
            return try await repository.mutateCases(
                scope: "intake.CloseCase", requestID: request.requestID, requestBytes: try deterministicBytes(request)
            ) { c, now in
                let (current, version) = try IntakeRepository.lockedCase(c, name: request.name, etag: request.etag)
                // A linked incident that correlation reported RESOLVED (CorrelationEvents) makes the
                // case wait for the customer notice unless the customer was already told.
                let resolved = try IntakeRepository.resolvedIncident(c, current.incidents)
                let next = try CaseRules.close(
                    current, outcome: outcome, note: request.note,
                    customerNotifyTime: request.hasCustomerNotifyTime ? request.customerNotifyTime.date : nil,
                    pendingCustomerNotice: resolved != nil, actor: current.owner.isEmpty ? "services/intake" : current.owner, at: now)
                try IntakeRepository.saveCase(c, old: current, new: next, version: version + 1)
                let out = Mapping.proto(next, version: version + 1)
                let header = IntakeRepository.header(aggregate: out.name, version: version + 1, requestID: request.requestID, at: now).0
                if next.state == .closed {
                    var e = Liaison_Intake_V1_CaseClosed()
                    e.header = header
                    e.case = out
                    return (out, [e])
                }
                var e = Liaison_Intake_V1_CaseAwaitingCustomerNotice()
                e.header = header
                e.case = out
                e.incident = resolved ?? ""
                return (out, [e])
            }
        }
    }

    public func reopenCase(request: Liaison_Intake_V1_ReopenCaseRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_Case
    {
        try await handle("ReopenCase") {
            _ = try Self.name(request.name, collection: "cases")
            try Self.requireRequestID(request.requestID)
            return try await repository.mutateCases(
                scope: "intake.ReopenCase", requestID: request.requestID, requestBytes: try deterministicBytes(request)
            ) { c, now in
                let (current, version) = try IntakeRepository.lockedCase(c, name: request.name, etag: request.etag)
                let next = try CaseRules.reopen(current, note: request.note,
                                                actor: current.owner.isEmpty ? "services/intake" : current.owner, at: now)
                try IntakeRepository.saveCase(c, old: current, new: next, version: version + 1)
                let out = Mapping.proto(next, version: version + 1)
                var e = Liaison_Intake_V1_CaseReopened()
                e.header = IntakeRepository.header(aggregate: out.name, version: version + 1, requestID: request.requestID, at: now).0
                e.case = out
                return (out, [e])
            }
        }
    }

    public func listCaseHistory(request: Liaison_Intake_V1_ListCaseHistoryRequest, context: ServerContext) async throws
        -> Liaison_Intake_V1_ListCaseHistoryResponse
    {
        try await handle("ListCaseHistory") {
            let id = try Self.name(request.name, collection: "cases")
            let size = try Self.pageSize(request.pageSize)
            let query = QueryFingerprint(collection: "case_history", parent: request.name, filter: "", orderBy: "")
            let start = try token(request.pageToken, query).map { Int(clamping: $0.lastTimeMicros) &+ 1 } ?? 0
            guard let page = try await repository.caseHistoryPage(id: id, from: max(start, 0), limit: size) else {
                throw RepositoryError.notFound(type: "liaison.intake.v1.Case", name: request.name)
            }
            var response = Liaison_Intake_V1_ListCaseHistoryResponse()
            response.entries = page.entries.map { Mapping.proto($0.1) }
            if page.more, let last = page.entries.last { response.nextPageToken = nextToken((Int64(last.0), ""), query) }
            return response
        }
    }
}
