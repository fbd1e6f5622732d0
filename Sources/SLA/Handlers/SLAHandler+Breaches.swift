import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import SwiftProtobuf

/// Breaches and credits: GetBreach, ListBreaches, GetCredit, ListCredits, IssueCredit, WaiveCredit.
extension SLAHandler {
    public func getBreach(request: Liaison_Sla_V1_GetBreachRequest, context: ServerContext) async throws -> Liaison_Sla_V1_Breach {
        let id = try Self.uuidName(request.name, "breaches", field: "name")
        return try await read { c in
            guard let b = try Store.breach(c, id) else { throw Self.notFound("Breach", request.name) }
            return b
        }
    }

    public func listBreaches(request: Liaison_Sla_V1_ListBreachesRequest, context: ServerContext) async throws -> Liaison_Sla_V1_ListBreachesResponse {
        let q = try ListQuery(
            collection: "breaches", pageSize: request.pageSize, defaultSize: 100, maxSize: 1000, filter: request.filter,
            parser: Self.breachFilter, orderBy: request.orderBy, orderings: Self.breachOrderings, pageToken: request.pageToken,
            codec: codec, domain: domain)
        let (codec, lifetime) = (self.codec, settings.pageTokenLifetime)
        return try await read { c in
            let page = try q.page(c, table: "breaches", columns: "id::text, body, NULL::text, create_time", codec: codec, lifetime: lifetime)
            var out = Liaison_Sla_V1_ListBreachesResponse()
            out.breaches = try page.rows.map(Store.breach)
            out.nextPageToken = page.next
            return out
        }
    }

    public func getCredit(request: Liaison_Sla_V1_GetCreditRequest, context: ServerContext) async throws -> Liaison_Sla_V1_Credit {
        let id = try Self.uuidName(request.name, "credits", field: "name")
        return try await read { c in
            guard let (k, _) = try Store.credit(c, id) else { throw Self.notFound("Credit", request.name) }
            return k
        }
    }

    public func listCredits(request: Liaison_Sla_V1_ListCreditsRequest, context: ServerContext) async throws -> Liaison_Sla_V1_ListCreditsResponse {
        let q = try ListQuery(
            collection: "credits", pageSize: request.pageSize, defaultSize: 100, maxSize: 1000, filter: request.filter,
            parser: Self.creditFilter, orderBy: request.orderBy, orderings: Self.creditOrderings, pageToken: request.pageToken,
            codec: codec, domain: domain)
        let (codec, lifetime) = (self.codec, settings.pageTokenLifetime)
        return try await read { c in
            let page = try q.page(c, table: "credits", columns: Store.creditColumns, codec: codec, lifetime: lifetime)
            var out = Liaison_Sla_V1_ListCreditsResponse()
            out.credits = try page.rows.map(Store.credit)
            out.nextPageToken = page.next
            return out
        }
    }

    /// OWED -> ISSUED or WAIVED, once; publishes CreditSettled.
    func settle(_ scope: String, name: String, etag: String, requestID: String, request: some SwiftProtobuf.Message,
                to state: CreditState, _ change: @escaping @Sendable (inout Liaison_Sla_V1_Credit) -> Void) async throws -> Liaison_Sla_V1_Credit {
        let id = try Self.uuidName(name, "credits", field: "name")
        let settings = self.settings
        return try await mutate(scope, requestID, request) { c in
            guard let (current, version) = try Store.credit(c, id, forUpdate: true) else { throw Self.notFound("Credit", name) }
            try Store.checkEtag(etag, version, name: current.name)
            guard current.state == .owed else {
                throw APIError.failedPrecondition(domain: domain, type: "STATE", subject: current.name,
                                                  "the credit is \(current.state == .issued ? "ISSUED" : "WAIVED"), not OWED")
            }
            var k = current
            k.state = state == .issued ? .issued : .waived
            k.settleTime = Store.timestamp(try Store.now(c))
            change(&k)
            let out = try Store.settleCredit(c, id, k, state: state)
            try Store.publish(c, settings, { h in
                var e = Liaison_Sla_V1_CreditSettled()
                e.header = h
                e.credit = out
                return e
            }, aggregate: out.name, version: version + 1)
            return out
        }
    }

    public func issueCredit(request: Liaison_Sla_V1_IssueCreditRequest, context: ServerContext) async throws -> Liaison_Sla_V1_Credit {
        var v: [APIError.FieldViolation] = []
        if request.billingReference.system.trimmingCharacters(in: .whitespaces).isEmpty { v.append(.init("billing_reference.system", "is required")) }
        if request.billingReference.id.trimmingCharacters(in: .whitespaces).isEmpty { v.append(.init("billing_reference.id", "is required")) }
        v += RequestFields.lengthViolations([("billing_reference.system", request.billingReference.system, 64),
                                             ("billing_reference.id", request.billingReference.id, 256),
                                             ("billing_reference.uri", request.billingReference.uri, 2048), ("note", request.note, 2000)])
        try Self.invalid(v)
        return try await settle("IssueCredit", name: request.name, etag: request.etag, requestID: request.requestID, request: request, to: .issued) {
            $0.billingReference = request.billingReference
            $0.note = request.note
        }
    }

    public func waiveCredit(request: Liaison_Sla_V1_WaiveCreditRequest, context: ServerContext) async throws -> Liaison_Sla_V1_Credit {
        var v: [APIError.FieldViolation] = []
        if request.note.trimmingCharacters(in: .whitespaces).isEmpty { v.append(.init("note", "is required (why the credit is waived)")) }
        v += RequestFields.lengthViolations([("note", request.note, 2000)])
        try Self.invalid(v)
        return try await settle("WaiveCredit", name: request.name, etag: request.etag, requestID: request.requestID, request: request, to: .waived) {
            $0.note = request.note
        }
    }
}
