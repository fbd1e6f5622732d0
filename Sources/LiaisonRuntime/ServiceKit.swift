import Foundation
import GRPCCore
import GRPCProtobuf
import LiaisonStorage
import Logging
import SwiftProtobuf

// The plumbing every service's handlers share (issue 21): one error mapping, one idempotent
// mutation, one etag format, one set of request checks. A service adds only its own error cases.

/// Maps whatever a handler, use case or repository throws to the status the client gets:
/// `APIError` as is, the service's own cases (`cases`), then the platform's errors (storage,
/// idempotency, page tokens, cancellation); anything else is INTERNAL and logged.
public struct ErrorMapper: Sendable {
    /// The service's error domain, e.g. `liaison.intake.v1`.
    public let domain: String
    let logger: Logger
    let cases: @Sendable (any Error) -> APIError?

    /// `cases` maps the service's own error types (nil for the others).
    public init(domain: String, logger: Logger, cases: @escaping @Sendable (any Error) -> APIError? = { _ in nil }) {
        self.domain = domain
        self.logger = logger
        self.cases = cases
    }

    /// The status for `error` thrown by `method`.
    public func map(_ error: any Error, method: String) -> APIError {
        if let e = error as? APIError { return e }
        if let e = cases(error) { return e }
        switch error {
        case let e as PageTokenError: return e.apiError(domain: domain)
        case let e as IdempotencyError:
            if case .reused(_, let id) = e { return APIError.requestIDReused(domain: domain, requestID: id) }
            return APIError(GoogleRPCStatus(code: .internalError, message: "internal error", details: []))
        case let e as PostgresError:
            if e.kind == .overloaded {
                logger.warning("overloaded", metadata: ["method": "\(method)", "error": "\(e)"])
            } else {
                logger.error("storage error", metadata: ["method": "\(method)", "error": "\(e)"])
            }
            return APIError.from(e, domain: domain)
        case is CancellationError:
            // The caller went away or its deadline passed (e.g. while queued).
            return APIError(GoogleRPCStatus(code: .cancelled, message: "cancelled", details: []))
        case let e as DeadlineExceeded:
            return APIError(GoogleRPCStatus(code: .deadlineExceeded, message: "\(e)", details: []))
        default:
            logger.error("unexpected error", metadata: ["method": "\(method)", "error": "\(error)"])
            return APIError(GoogleRPCStatus(code: .internalError, message: "internal error", details: []))
        }
    }

    /// Runs `body`, throwing any error as its mapped status.
    public func run<T>(_ method: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw map(error, method: method)
        }
    }
}

/// One etag format for every resource of every service: `W/"<version>"`, an HTTP-style weak
/// validator of the row's version (docs/api.md).
public enum Etag {
    /// The etag of `version`.
    public static func make(_ version: Int64) -> String { "W/\"\(version)\"" }

    /// The version inside an etag made by `make`; nil when `etag` is not one.
    public static func version(of etag: String) -> Int64? {
        guard etag.hasPrefix("W/\""), etag.hasSuffix("\""), etag.utf8.count >= 5 else { return nil }
        return Int64(etag.dropFirst(3).dropLast())
    }

    /// Throws ABORTED (`ETAG_MISMATCH`, with the current etag) when `given` is set and is not
    /// the etag of `version`; an empty `given` is last-writer-wins.
    public static func check(_ given: String, version: Int64, name: String, domain: String) throws {
        if !given.isEmpty, given != make(version) {
            throw APIError.etagMismatch(domain: domain, name: name, currentEtag: make(version))
        }
    }
}

/// Checks of request fields every service has.
public enum RequestFields {
    /// `request_id` (or `field`) must be a UUID.
    public static func requestID(_ id: String, field: String = "request_id", domain: String) throws {
        if id.isEmpty { throw APIError.invalidArgument(domain: domain, field: field, "required: an idempotency key (UUID)") }
        guard UUID(uuidString: id) != nil else { throw APIError.invalidArgument(domain: domain, field: field, "must be a UUID") }
    }

    /// Violations for texts longer than their limit (in UTF-8 bytes): (field path, value, limit).
    /// Limits keep every stored text within what its indexes and the answers can carry.
    public static func lengthViolations(_ texts: [(String, String, Int)]) -> [APIError.FieldViolation] {
        texts.compactMap { field, value, limit in
            value.utf8.count > limit ? .init(field, "at most \(limit) bytes") : nil
        }
    }

    /// `page_size`: 0 means `defaultSize`, larger than `max` is `max`, negative is refused.
    public static func pageSize(_ n: Int32, default defaultSize: Int, max: Int, domain: String) throws -> Int {
        if n < 0 { throw APIError.invalidArgument(domain: domain, field: "page_size", "must not be negative") }
        return n == 0 ? defaultSize : min(Int(n), max)
    }
}

/// One idempotent mutation for every service: in one transaction, the request id is checked (a
/// replay returns the stored answer, a reuse with another request is ALREADY_EXISTS), `body`
/// makes the change and queues its events, and the answer is stored with the change.
public enum Mutation {
    /// Runs `body` once per (`scope`, `requestID`); `requestBytes` fingerprint the request.
    public static func once<R: SwiftProtobuf.Message>(
        _ pool: PostgresPool, scope: String, requestID: String, requestBytes: [UInt8],
        _ body: @escaping @Sendable (PostgresConnection) throws -> R
    ) async throws -> R {
        try await pool.transaction { c -> R in
            let key = Idempotency.Key(scope: scope, requestID: requestID, request: requestBytes)
            if let stored = try Idempotency.begin(c, key) {
                return try R(serializedBytes: stored)
            }
            let response = try body(c)
            var options = BinaryEncodingOptions()
            options.useDeterministicOrdering = true
            try Idempotency.record(c, key, response: try response.serializedBytes(options: options))
            return response
        }
    }
}
