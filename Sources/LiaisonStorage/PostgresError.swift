/// An error from PostgreSQL or from the client layer, classified so that callers (and the RPC
/// layer) can decide what to do without parsing messages.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is.
    public enum Kind: Sendable, Equatable {
        /// The server reported an error; `sqlState` says which.
        case server
        /// The connection could not be made or was lost; the outcome of an in-flight statement is
        /// unknown. Retry only idempotent work.
        case connection
        /// The operation was cancelled by the caller (task cancellation).
        case cancelled
        /// The caller's deadline passed and the statement was cancelled.
        case deadlineExceeded
        /// A value could not be decoded into the requested Swift type.
        case decoding
        /// The client was used incorrectly (closed pool, bad URL, a value PostgreSQL cannot hold).
        case client
        /// The pool's queue of callers waiting for a connection is full: the caller should back
        /// off and retry (nothing was sent).
        case overloaded
    }

    public var kind: Kind
    /// The five-character SQLSTATE for server errors (e.g. `23505`).
    public var sqlState: String?
    public var message: String
    public var detail: String?
    public var constraint: String?
    public var table: String?
    public var column: String?
    /// True when the failure happened before anything was sent (e.g. on BEGIN), so the whole
    /// operation may be retried on a fresh connection without risk of doing it twice.
    public var safeToRetry = false

    public init(
        _ kind: Kind, sqlState: String? = nil, message: String, detail: String? = nil,
        constraint: String? = nil, table: String? = nil, column: String? = nil
    ) {
        self.kind = kind
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.constraint = constraint
        self.table = table
        self.column = column
    }

    public var description: String {
        var s = "PostgresError(\(kind)"
        if let sqlState { s += ", \(sqlState)" }
        s += "): \(message)"
        if let constraint { s += " [constraint \(constraint)]" }
        return s
    }

    /// Serialization failure or deadlock: the whole transaction may be retried.
    public var isRetryableTransactionConflict: Bool {
        sqlState == SQLState.serializationFailure || sqlState == SQLState.deadlockDetected
    }

    /// The error class: the first two characters of the SQLSTATE.
    public var sqlStateClass: String? { sqlState.map { String($0.prefix(2)) } }
}

/// SQLSTATE codes the platform reacts to.
public enum SQLState {
    public static let uniqueViolation = "23505"
    public static let foreignKeyViolation = "23503"
    public static let checkViolation = "23514"
    public static let notNullViolation = "23502"
    public static let exclusionViolation = "23P01"
    public static let serializationFailure = "40001"
    public static let deadlockDetected = "40P01"
    public static let queryCanceled = "57014"
    public static let adminShutdown = "57P01"
    public static let crashShutdown = "57P02"
    public static let cannotConnectNow = "57P03"
    public static let lockNotAvailable = "55P03"
    public static let invalidTextRepresentation = "22P02"
    public static let numericValueOutOfRange = "22003"
    public static let stringDataRightTruncation = "22001"
    public static let undefinedTable = "42P01"
    public static let insufficientPrivilege = "42501"
    public static let tooManyConnections = "53300"
}

/// The gRPC status code an error maps to. Kept here as plain numbers so that the storage layer does
/// not depend on a gRPC library; the RPC layer converts.
public enum StatusCodeMapping {
    /// gRPC status codes (same numbering as `grpc::StatusCode`).
    public enum Code: Int, Sendable {
        case ok = 0, cancelled = 1, unknown = 2, invalidArgument = 3, deadlineExceeded = 4,
            notFound = 5, alreadyExists = 6, permissionDenied = 7, resourceExhausted = 8,
            failedPrecondition = 9, aborted = 10, outOfRange = 11, unimplemented = 12,
            `internal` = 13, unavailable = 14, dataLoss = 15, unauthenticated = 16
    }

    /// Maps a storage error to the gRPC status a caller should see.
    public static func code(for error: PostgresError) -> Code {
        switch error.kind {
        case .connection: return .unavailable
        case .cancelled: return .cancelled
        case .deadlineExceeded: return .deadlineExceeded
        case .decoding, .client: return .internal
        case .overloaded: return .resourceExhausted
        case .server: break
        }
        guard let state = error.sqlState else { return .internal }
        switch state {
        case SQLState.uniqueViolation, SQLState.exclusionViolation: return .alreadyExists
        case SQLState.checkViolation, SQLState.notNullViolation, SQLState.invalidTextRepresentation,
            SQLState.numericValueOutOfRange, SQLState.stringDataRightTruncation:
            return .invalidArgument
        case SQLState.foreignKeyViolation: return .failedPrecondition
        case SQLState.serializationFailure, SQLState.deadlockDetected, SQLState.lockNotAvailable:
            return .aborted
        case SQLState.queryCanceled: return .deadlineExceeded
        case SQLState.adminShutdown, SQLState.crashShutdown, SQLState.cannotConnectNow,
            SQLState.tooManyConnections:
            return .unavailable
        case SQLState.insufficientPrivilege: return .permissionDenied
        default:
            switch error.sqlStateClass {
            case "22": return .invalidArgument  // data exception
            case "23": return .failedPrecondition  // other integrity constraint
            case "08": return .unavailable  // connection exception
            case "53": return .resourceExhausted  // insufficient resources
            default: return .internal
            }
        }
    }
}
