// Customer directory rules: last-writer-wins upserts from CRM syncs, request-level batch limits,
// and request ids.
import Foundation

/// What an upsert does to one entry (`UpsertCustomerResult.Outcome`, except FAILED, which is a
/// validation result).
public enum UpsertOutcome: Hashable, Sendable {
    /// No customer with this name existed.
    case created
    /// The stored customer is replaced.
    case updated
    /// The stored data is identical; nothing changes (no event, no new etag).
    case unchanged
    /// The stored `source_update_time` is newer: out-of-order CRM sync, skipped.
    case skippedStale
}

/// Pure customer-directory rules.
public enum CustomerRules {
    /// Decides an upsert of `incoming` over `existing` (last writer wins by `source_update_time`).
    ///
    /// - No stored customer: `.created`.
    /// - Both carry a source time and the incoming one is older: `.skippedStale`.
    /// - Same data (features compared as a set, `source_update_time` ignored): `.unchanged`.
    /// - Otherwise `.updated` (an incoming entry without source time is applied: the source does
    ///   not order its writes, so the latest call wins).
    public static func upsertOutcome(existing: CustomerUpsert?, incoming: CustomerUpsert) -> UpsertOutcome {
        guard let existing else { return .created }
        if let stored = existing.sourceUpdateTime, let new = incoming.sourceUpdateTime, new < stored {
            return .skippedStale
        }
        return canonical(existing) == canonical(incoming) ? .unchanged : .updated
    }

    /// `customer` with order-insensitive fields sorted and output-only inputs cleared, for
    /// comparison and storage. `state` unspecified becomes ACTIVE (the contract default).
    public static func canonical(_ customer: CustomerUpsert) -> CustomerUpsert {
        var c = customer
        c.sourceUpdateTime = nil
        if c.state == .unspecified { c.state = .active }
        if var a = c.attributes {
            a.features = Array(Set(a.features)).sorted()
            c.attributes = a
        }
        return c
    }

    /// Request-level checks of BatchUpsertCustomers: 1 to `max` entries and no customer twice.
    /// Entry contents are validated per entry with `CustomerValidator` (prefix "customers[i]").
    public static func batchUpsertViolations(names: [String], max: Int = 1000) -> [FieldViolation] {
        if names.isEmpty { return [FieldViolation(field: "customers", description: "required: 1 to \(max) customers")] }
        if names.count > max {
            return [FieldViolation(field: "customers", description: "at most \(max) customers per call (got \(names.count))")]
        }
        var firstIndex: [String: Int] = [:]
        var out: [FieldViolation] = []
        for (i, name) in names.enumerated() where !name.isEmpty {
            if let first = firstIndex[name] {
                out.append(FieldViolation(field: "customers[\(i)].name",
                                          description: "same customer as customers[\(first)]: one entry per customer"))
            } else {
                firstIndex[name] = i
            }
        }
        return out
    }

    /// Request-level checks of BatchSubmitReports: 1 to `max` entries.
    public static func batchSubmitViolations(count: Int, max: Int = 500) -> [FieldViolation] {
        if count == 0 { return [FieldViolation(field: "requests", description: "required: 1 to \(max) reports")] }
        if count > max {
            return [FieldViolation(field: "requests", description: "at most \(max) reports per call (got \(count))")]
        }
        return []
    }

    /// Violation for a `request_id` that is not a UUID, if any (`field` e.g. "request_id" or
    /// "requests[2].request_id").
    public static func requestIdViolation(_ requestId: String, field: String = "request_id") -> FieldViolation? {
        if requestId.isEmpty { return FieldViolation(field: field, description: "required: an idempotency key (UUID)") }
        return Syntax.isUUID(requestId) ? nil : FieldViolation(field: field, description: "must be a UUID")
    }
}

extension Syntax {
    /// A UUID in its 36-character text form (any version, either case), e.g.
    /// "123e4567-e89b-12d3-a456-426614174000".
    public static func isUUID(_ s: String) -> Bool {
        let bytes = Array(s.utf8)
        guard bytes.count == 36 else { return false }
        for (i, b) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(i) {
                if b != 0x2d { return false }
            } else if !((b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66) || (b >= 0x41 && b <= 0x46)) {
                return false
            }
        }
        return true
    }
}
