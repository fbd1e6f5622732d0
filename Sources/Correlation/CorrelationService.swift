@_exported import CorrelationDomain
import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import ServiceLifecycle

/// The correlation service: see services/correlation/README.md.
public struct CorrelationService: LiaisonService {
    public static let descriptor = ServiceDescriptor(
        name: "correlation", defaultPort: 50052, defaultAdminPort: 9102,
        grpcServices: ["liaison.correlation.v1.CorrelationService", "liaison.events.v1.EventSinkService"])

    let context: ServiceContext
    let settings: CorrelationSettings
    let relay: EventRelayService?
    let handler: CorrelationHandler

    public init(context: ServiceContext) async throws {
        self.context = context
        self.settings = try CorrelationSettings.from(context.environment, configuration: context.configuration, logger: context.logger)
        self.relay = settings.destinations.isEmpty ? nil
            : try EventRelayService(context: context, producer: "correlation", destinations: settings.destinations)
        self.handler = CorrelationHandler(pool: context.pool, settings: settings, logger: context.logger)
    }

    public var rpcServices: [ServedRPCService] {
        [
            handler.served,
            IntakeEvents.sink(pool: context.pool, settings: settings, logger: context.logger).served,
        ]
    }

    public var backgroundServices: [any Service] {
        var services: [any Service] = [EmergingIssueDetectorService(pool: context.pool, settings: settings, logger: context.logger),
                                       BlastRadiusRefresher(pool: context.pool, settings: settings, logger: context.logger)]
        if let relay { services.append(relay) }
        return services
    }
}
