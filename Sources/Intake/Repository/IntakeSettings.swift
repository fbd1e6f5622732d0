// Settings of the intake service, read from LIAISON_INTAKE_* variables.
import IntakeDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf

/// Settings of the intake service.
public struct IntakeSettings: Sendable {
    /// Destinations of ReportAccepted.
    public var directoryEventDestinations: [String] = ["correlation"]
    /// Destinations of CustomerUpserted (`LIAISON_INTAKE_CUSTOMER_EVENT_DESTINATIONS`, comma
    /// separated, `none` for none): correlation's population baseline and sla's segments and tiers.
    public var customerEventDestinations: [String] = ["correlation", "sla"]
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
        s.customerEventDestinations = environment.destinations("INTAKE_CUSTOMER_EVENT_DESTINATIONS", default: s.customerEventDestinations)
        return s
    }
}
