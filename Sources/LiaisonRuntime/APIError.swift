import GRPCCore
import GRPCProtobuf
import LiaisonStorage

/// Errors that RPC handlers throw: a gRPC status with google.rpc.Status details
/// (`ErrorInfo` with a reason from `liaison.common.v1.ErrorReason`, plus `BadRequest`,
/// `ResourceInfo`, `PreconditionFailure` or `RetryInfo` as fits), carried in the
/// `grpc-status-details-bin` trailer.
public struct APIError: Error, RPCErrorConvertible, CustomStringConvertible {
    public var status: GoogleRPCStatus

    public init(_ status: GoogleRPCStatus) { self.status = status }

    public var rpcErrorCode: RPCError.Code { status.rpcErrorCode }
    public var rpcErrorMessage: String { status.rpcErrorMessage }
    public var rpcErrorMetadata: Metadata { status.rpcErrorMetadata }
    public var description: String { "\(status.code): \(status.message)" }

    /// One invalid field: `field` is the request's field path (`report.text`).
    public struct FieldViolation: Sendable, Equatable {
        public var field: String
        public var description: String
        public init(_ field: String, _ description: String) {
            self.field = APIError.clip(field, 120)
            self.description = APIError.clip(description, 200)
        }
    }

    /// `text` cut to `limit` characters (with "…"): whatever a client sent is echoed in an
    /// answer's message and details at bounded size, so trailers stay far below gRPC's default
    /// 8 KiB metadata limit whatever the input (a 10 KB resource name, a 4,000-character filter).
    public static func clip(_ text: String, _ limit: Int = 160) -> String {
        guard text.count > limit else { return text }
        return String(text.prefix(limit)) + "…"
    }

    /// Most field violations listed in one answer; the message counts the rest.
    public static let maxViolations = 10

    /// INVALID_ARGUMENT listing every violation (google.rpc.BadRequest).
    public static func invalidArgument(domain: String, _ violations: [FieldViolation]) -> APIError {
        let summary = violations.prefix(3).map { "\($0.field): \($0.description)" }.joined(separator: "; ")
        return APIError(GoogleRPCStatus(
            code: .invalidArgument,
            message: violations.count > 3 ? "\(summary); and \(violations.count - 3) more" : summary,
            details: [
                .errorInfo(reason: "INVALID_FIELD", domain: domain, metadata: [:]),
                .badRequest(violations: violations.prefix(maxViolations).map {
                    ErrorDetails.BadRequest.FieldViolation(field: $0.field, description: $0.description)
                }),
            ]))
    }

    /// INVALID_ARGUMENT for one field.
    public static func invalidArgument(domain: String, field: String, _ description: String) -> APIError {
        invalidArgument(domain: domain, [FieldViolation(field, description)])
    }

    /// NOT_FOUND naming the resource (google.rpc.ResourceInfo).
    public static func notFound(domain: String, resourceType: String, name full: String) -> APIError {
        let name = clip(full)
        return APIError(GoogleRPCStatus(
            code: .notFound, message: "\(name) not found",
            details: [
                .errorInfo(reason: "RESOURCE_NOT_FOUND", domain: domain, metadata: ["resource": name]),
                .resourceInfo(type: resourceType, name: name, errorDescription: "does not exist"),
            ]))
    }

    /// ALREADY_EXISTS naming the existing resource.
    public static func alreadyExists(domain: String, resourceType: String, name full: String, _ message: String? = nil) -> APIError {
        let name = clip(full)
        return APIError(GoogleRPCStatus(
            code: .alreadyExists, message: message ?? "\(name) already exists",
            details: [
                .errorInfo(reason: "RESOURCE_EXISTS", domain: domain, metadata: ["resource": name]),
                .resourceInfo(type: resourceType, name: name, errorDescription: "already exists"),
            ]))
    }

    /// FAILED_PRECONDITION (google.rpc.PreconditionFailure): the resource is not in a state that
    /// allows the call. `type` is e.g. "STATE", `subject` the resource name.
    public static func failedPrecondition(domain: String, type: String = "STATE", subject full: String, _ text: String) -> APIError {
        let subject = clip(full), description = clip(text, 300)
        return APIError(GoogleRPCStatus(
            code: .failedPrecondition, message: description,
            details: [
                .errorInfo(reason: "INVALID_STATE", domain: domain, metadata: ["resource": subject]),
                .preconditionFailure(violations: [
                    ErrorDetails.PreconditionFailure.Violation(type: type, subject: subject, description: description)
                ]),
            ]))
    }

    /// ABORTED: the request's etag is stale.
    public static func etagMismatch(domain: String, name full: String, currentEtag: String) -> APIError {
        let name = clip(full)
        return APIError(GoogleRPCStatus(
            code: .aborted, message: "etag mismatch for \(name): re-read it and retry",
            details: [.errorInfo(reason: "ETAG_MISMATCH", domain: domain, metadata: ["resource": name, "current_etag": currentEtag])]))
    }

    /// ALREADY_EXISTS: a request_id was reused for another request.
    public static func requestIDReused(domain: String, requestID full: String) -> APIError {
        let requestID = clip(full)
        return APIError(GoogleRPCStatus(
            code: .alreadyExists,
            message: "request_id \(requestID) was already used for a different request",
            details: [
                .errorInfo(reason: "REQUEST_ID_REUSED", domain: domain, metadata: ["request_id": requestID]),
                .badRequest(violations: [.init(field: "request_id", description: "already used for a different request")]),
            ]))
    }

    /// UNAVAILABLE with a retry hint.
    public static func unavailable(domain: String, _ message: String, retryAfter: Duration = .seconds(1)) -> APIError {
        APIError(GoogleRPCStatus(
            code: .unavailable, message: message,
            details: [
                .errorInfo(reason: "TEMPORARILY_UNAVAILABLE", domain: domain, metadata: [:]),
                .retryInfo(delay: retryAfter),
            ]))
    }

    /// RESOURCE_EXHAUSTED: a bounded queue or pool is full; retry after `retryAfter`.
    public static func overloaded(domain: String, _ message: String, retryAfter: Duration = .milliseconds(500)) -> APIError {
        APIError(GoogleRPCStatus(
            code: .resourceExhausted, message: message,
            details: [
                .errorInfo(reason: "OVERLOADED", domain: domain, metadata: [:]),
                .retryInfo(delay: retryAfter),
            ]))
    }

    /// Maps a storage error; internal details stay in the log, not in the reply.
    public static func from(_ error: PostgresError, domain: String) -> APIError {
        let code = StatusCodeMapping.code(for: error)
        switch code {
        case .unavailable:
            return unavailable(domain: domain, "database temporarily unavailable; retry with the same request_id")
        case .aborted:
            return APIError(GoogleRPCStatus(
                code: .aborted, message: "concurrent update conflict; retry",
                details: [.retryInfo(delay: .milliseconds(100))]))
        case .deadlineExceeded:
            return APIError(GoogleRPCStatus(code: .deadlineExceeded, message: "deadline exceeded", details: []))
        case .resourceExhausted:
            return overloaded(domain: domain, "server busy; retry later with the same request_id")
        case .cancelled:
            return APIError(GoogleRPCStatus(code: .cancelled, message: "cancelled", details: []))
        case .alreadyExists:
            return APIError(GoogleRPCStatus(
                code: .alreadyExists, message: "already exists",
                details: [.errorInfo(reason: "RESOURCE_EXISTS", domain: domain, metadata: ["constraint": error.constraint ?? ""])]))
        case .invalidArgument:
            return invalidArgument(domain: domain, field: error.column ?? "", "value rejected by the database")
        case .failedPrecondition:
            return APIError(GoogleRPCStatus(code: .failedPrecondition, message: "a referenced resource is missing", details: []))
        default:
            return APIError(GoogleRPCStatus(code: RPCError.Code(code), message: "internal error", details: []))
        }
    }
}

extension RPCError.Code {
    init(_ code: StatusCodeMapping.Code) {
        switch code {
        case .ok, .unknown: self = .unknown
        case .cancelled: self = .cancelled
        case .invalidArgument: self = .invalidArgument
        case .deadlineExceeded: self = .deadlineExceeded
        case .notFound: self = .notFound
        case .alreadyExists: self = .alreadyExists
        case .permissionDenied: self = .permissionDenied
        case .resourceExhausted: self = .resourceExhausted
        case .failedPrecondition: self = .failedPrecondition
        case .aborted: self = .aborted
        case .outOfRange: self = .outOfRange
        case .unimplemented: self = .unimplemented
        case .internal: self = .internalError
        case .unavailable: self = .unavailable
        case .dataLoss: self = .dataLoss
        case .unauthenticated: self = .unauthenticated
        }
    }
}
