import IntakeDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging

/// The appliers of correlation's events (correlation sends them when
/// `LIAISON_CORRELATION_EVENT_DESTINATIONS` names intake). Each runs inside the EventSink's
/// transaction, once per event id; each is also idempotent and ignores events older than the one
/// already applied for the same link or incident (see Repository/IncidentLinks.swift).
///
/// - ReportLinked / ReportUnlinked maintain `Report.incidents` and `Case.incidents`.
/// - Events carrying an incident record its state; when it becomes RESOLVED, OPEN cases linked to
///   it move to AWAITING_CUSTOMER_NOTICE (Domain/Cases.swift), and CloseCase of a case with a
///   resolved incident waits for the customer notice (intake_service.proto, CloseCase).
/// - The other correlation events carry nothing intake keeps; they are accepted (and recorded in
///   the inbox) so that a correlation configured to send everything here does not dead-letter them.
public enum CorrelationEvents {
    public static func sink(pool: PostgresPool, settings: IntakeSettings, logger: Logger) -> EventSink {
        EventSink(pool: pool, consumer: "intake", appliers: appliers(settings: settings), logger: logger)
    }

    /// The actor of case history entries written for an event: `services/{producer}`.
    static func actor(_ envelope: Liaison_Events_V1_EventEnvelope, _ header: Liaison_Common_V1_EventHeader) -> String {
        let producer = envelope.producer.isEmpty ? header.producer : envelope.producer
        return "services/" + (producer.isEmpty ? "correlation" : producer)
    }

    public static func appliers(settings: IntakeSettings) -> [String: EventSink.Applier] {
        @Sendable func incident(_ c: PostgresConnection, _ incident: Liaison_Correlation_V1_Incident,
                      _ header: Liaison_Common_V1_EventHeader, _ envelope: Liaison_Events_V1_EventEnvelope) throws {
            try IntakeRepository.applyIncident(c, incident, aggregateVersion: header.aggregateVersion,
                                               actor: actor(envelope, header), settings: settings, now: Date())
        }
        return [
            Liaison_Correlation_V1_ReportLinked.protoMessageName: { c, payload, envelope in
                let e = try Liaison_Correlation_V1_ReportLinked(serializedBytes: payload)
                try IntakeRepository.applyLink(c, e.link, confirmed: true, actor: actor(envelope, e.header),
                                               settings: settings, now: Date())
            },
            Liaison_Correlation_V1_ReportUnlinked.protoMessageName: { c, payload, envelope in
                let e = try Liaison_Correlation_V1_ReportUnlinked(serializedBytes: payload)
                try IntakeRepository.applyLink(c, e.link, confirmed: false, actor: actor(envelope, e.header),
                                               settings: settings, now: Date())
            },
            Liaison_Correlation_V1_IncidentDeclared.protoMessageName: { c, payload, envelope in
                let e = try Liaison_Correlation_V1_IncidentDeclared(serializedBytes: payload)
                try incident(c, e.incident, e.header, envelope)
            },
            Liaison_Correlation_V1_IncidentStatusChanged.protoMessageName: { c, payload, envelope in
                let e = try Liaison_Correlation_V1_IncidentStatusChanged(serializedBytes: payload)
                try incident(c, e.incident, e.header, envelope)
            },
            Liaison_Correlation_V1_IncidentUpdated.protoMessageName: { c, payload, envelope in
                let e = try Liaison_Correlation_V1_IncidentUpdated(serializedBytes: payload)
                try incident(c, e.incident, e.header, envelope)
            },
            Liaison_Correlation_V1_PostmortemAttached.protoMessageName: { c, payload, envelope in
                let e = try Liaison_Correlation_V1_PostmortemAttached(serializedBytes: payload)
                try incident(c, e.incident, e.header, envelope)
            },
            // Nothing intake keeps; accepted so that they do not dead-letter.
            Liaison_Correlation_V1_ServiceUpserted.protoMessageName: { _, _, _ in },
            Liaison_Correlation_V1_ServiceDeleted.protoMessageName: { _, _, _ in },
            Liaison_Correlation_V1_EmergingIssueRaised.protoMessageName: { _, _, _ in },
            Liaison_Correlation_V1_EmergingIssueStatusChanged.protoMessageName: { _, _, _ in },
            Liaison_Correlation_V1_BlastRadiusChanged.protoMessageName: { _, _, _ in },
        ]
    }
}
