@_exported import SLADomain
import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import ServiceLifecycle

/// The sla service: see services/sla/README.md.
public struct SLAService: LiaisonService {
    public static let descriptor = ServiceDescriptor(
        name: "sla", defaultPort: 50053, defaultAdminPort: 9103,
        grpcServices: ["liaison.sla.v1.SlaService", "liaison.events.v1.EventSinkService"])

    let context: ServiceContext
    let settings: SLASettings
    let relay: EventRelayService?
    let handler: SLAHandler

    public init(context: ServiceContext) async throws {
        self.context = context
        self.settings = try SLASettings.from(context.environment, configuration: context.configuration, logger: context.logger)
        self.relay = settings.destinations.isEmpty ? nil
            : try EventRelayService(context: context, producer: "sla", destinations: settings.destinations)
        self.handler = SLAHandler(pool: context.pool, settings: settings, logger: context.logger)
    }

    public var rpcServices: [ServedRPCService] {
        [handler.served, InboundEvents.sink(pool: context.pool, logger: context.logger).served]
    }

    public var backgroundServices: [any Service] {
        var services: [any Service] = [EvaluatorService(pool: context.pool, settings: settings, logger: context.logger)]
        if let relay { services.append(relay) }
        return services
    }
}
