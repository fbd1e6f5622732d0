import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging

/// The appliers of the events sla consumes, each inside the EventSink's transaction (applied
/// once by event id; aggregate versions make replayed or reordered events change nothing twice):
/// intake's customers, correlation's incidents, links and blast radius.
public enum InboundEvents {
    public static func sink(pool: PostgresPool, logger: Logger) -> EventSink {
        EventSink(pool: pool, consumer: "sla", appliers: appliers, logger: logger)
    }

    public static let appliers: [String: EventSink.Applier] = [
        Liaison_Intake_V1_CustomerUpserted.protoMessageName: { c, payload, _ in
            try Store.applyCustomer(c, try Liaison_Intake_V1_CustomerUpserted(serializedBytes: payload))
        },
        Liaison_Correlation_V1_IncidentDeclared.protoMessageName: { c, payload, _ in
            let e = try Liaison_Correlation_V1_IncidentDeclared(serializedBytes: payload)
            try Store.applyIncident(c, e.incident, version: e.header.aggregateVersion)
        },
        Liaison_Correlation_V1_IncidentStatusChanged.protoMessageName: { c, payload, _ in
            let e = try Liaison_Correlation_V1_IncidentStatusChanged(serializedBytes: payload)
            try Store.applyIncident(c, e.incident, version: e.header.aggregateVersion)
        },
        Liaison_Correlation_V1_IncidentUpdated.protoMessageName: { c, payload, _ in
            let e = try Liaison_Correlation_V1_IncidentUpdated(serializedBytes: payload)
            try Store.applyIncident(c, e.incident, version: e.header.aggregateVersion)
        },
        Liaison_Correlation_V1_PostmortemAttached.protoMessageName: { c, payload, _ in
            let e = try Liaison_Correlation_V1_PostmortemAttached(serializedBytes: payload)
            try Store.applyIncident(c, e.incident, version: e.header.aggregateVersion)
        },
        Liaison_Correlation_V1_BlastRadiusChanged.protoMessageName: { c, payload, _ in
            try Store.applyBlastRadius(c, try Liaison_Correlation_V1_BlastRadiusChanged(serializedBytes: payload))
        },
        Liaison_Correlation_V1_ReportLinked.protoMessageName: { c, payload, _ in
            try Store.applyLinked(c, try Liaison_Correlation_V1_ReportLinked(serializedBytes: payload))
        },
        Liaison_Correlation_V1_ReportUnlinked.protoMessageName: { c, payload, _ in
            try Store.applyUnlinked(c, try Liaison_Correlation_V1_ReportUnlinked(serializedBytes: payload))
        },
        // Produced to the same destinations but of no use to sla: accepted, so they are not dead-lettered.
        Liaison_Correlation_V1_ServiceUpserted.protoMessageName: { _, _, _ in },
        Liaison_Correlation_V1_ServiceDeleted.protoMessageName: { _, _, _ in },
        Liaison_Correlation_V1_EmergingIssueRaised.protoMessageName: { _, _, _ in },
        Liaison_Correlation_V1_EmergingIssueStatusChanged.protoMessageName: { _, _, _ in },
        Liaison_Intake_V1_ReportAccepted.protoMessageName: { _, _, _ in },
    ]
}
