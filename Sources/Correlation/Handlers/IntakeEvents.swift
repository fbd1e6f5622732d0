import CorrelationDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging

/// The appliers of intake's events: the population baseline from CustomerUpserted, reports and
/// linking from ReportAccepted. Each runs inside the EventSink's transaction (applied once).
public enum IntakeEvents {
    public static func sink(pool: PostgresPool, settings: CorrelationSettings, logger: Logger) -> EventSink {
        EventSink(pool: pool, consumer: "correlation", appliers: appliers(settings: settings), logger: logger)
    }

    public static func appliers(settings: CorrelationSettings) -> [String: EventSink.Applier] {
        [
            Liaison_Intake_V1_CustomerUpserted.protoMessageName: { c, payload, _ in
                try Store.applyCustomer(c, try Liaison_Intake_V1_CustomerUpserted(serializedBytes: payload))
            },
            Liaison_Intake_V1_ReportAccepted.protoMessageName: { c, payload, _ in
                try Store.applyReport(c, try Liaison_Intake_V1_ReportAccepted(serializedBytes: payload), settings: settings)
            },
            // A merge moves the reports of the merged cases to the surviving case (Link.case).
            Liaison_Intake_V1_CasesMerged.protoMessageName: { c, payload, _ in
                let e = try Liaison_Intake_V1_CasesMerged(serializedBytes: payload)
                try Store.mergeCases(c, into: e.case.name, from: e.mergedCases)
            },
            // Other case events carry nothing correlation keeps; accepted so that an intake
            // configured to send them here does not dead-letter them.
            Liaison_Intake_V1_CaseOpened.protoMessageName: { _, _, _ in },
            Liaison_Intake_V1_CaseAssigned.protoMessageName: { _, _, _ in },
            Liaison_Intake_V1_CaseAwaitingCustomerNotice.protoMessageName: { _, _, _ in },
            Liaison_Intake_V1_CaseClosed.protoMessageName: { _, _, _ in },
            Liaison_Intake_V1_CaseReopened.protoMessageName: { _, _, _ in },
        ]
    }
}
