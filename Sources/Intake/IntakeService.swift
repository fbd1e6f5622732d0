@_exported import IntakeDomain
import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import LiaisonStorage
import Logging
import ServiceLifecycle

/// The intake service: see services/intake/README.md.
///
/// RPCs: `IntakeHandler` (liaison.intake.v1.IntakeService) and the event sink of correlation's
/// events (`CorrelationEvents`, liaison.events.v1.EventSinkService). Background: an `EventRelayService`
/// delivering the outbox to "correlation" (ReportAccepted, CustomerUpserted) and to the case event
/// destinations (`LIAISON_INTAKE_CASE_EVENT_DESTINATIONS`, default none).
public struct IntakeService: LiaisonService {
    public static let descriptor = ServiceDescriptor(
        name: "intake", defaultPort: 50051, defaultAdminPort: 9101,
        grpcServices: ["liaison.intake.v1.IntakeService", "liaison.events.v1.EventSinkService"])

    let context: ServiceContext
    let handler: IntakeHandler
    let sink: EventSink
    let relay: EventRelayService

    public init(context: ServiceContext) async throws {
        self.context = context
        let settings = try IntakeSettings.from(context.environment, configuration: context.configuration, logger: context.logger)
        self.handler = IntakeHandler(pool: context.pool, settings: settings, logger: context.logger)
        self.sink = CorrelationEvents.sink(pool: context.pool, settings: settings, logger: context.logger)
        let destinations = Array(Set(settings.directoryEventDestinations + settings.caseEventDestinations + settings.customerEventDestinations)).sorted()
        self.relay = try EventRelayService(context: context, producer: "intake", destinations: destinations)
    }

    public var rpcServices: [ServedRPCService] { [handler.servedDirect, sink.served] }
    public var backgroundServices: [any Service] { [relay] }
}
