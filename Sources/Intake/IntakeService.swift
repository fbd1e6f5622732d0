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
        let settings = try IntakeSettings.from(context.environment, databaseURL: context.configuration.databaseURL)
        self.handler = IntakeHandler(pool: context.pool, settings: settings, logger: context.logger)
        self.sink = CorrelationEvents.sink(pool: context.pool, settings: settings, logger: context.logger)
        let destinations = Array(Set(settings.directoryEventDestinations + settings.caseEventDestinations)).sorted()
        self.relay = try EventRelayService(context: context, producer: "intake", destinations: destinations)
    }

    public var rpcServices: [ServedRPCService] { [handler.servedDirect, sink.served] }
    public var backgroundServices: [any Service] {
        [relay, IdempotencyExpiry(pool: context.pool, logger: context.logger)]
    }
}

/// Deletes request ids older than 8 days every hour (the API promises at least 7 days of replay).
struct IdempotencyExpiry: Service {
    let pool: PostgresPool
    let logger: Logger

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let deleted = try await pool.transaction { c in
                        try Idempotency.expire(c, olderThan: .seconds(8 * 24 * 3600))
                    }
                    if deleted > 0 { logger.info("expired request ids", metadata: ["count": "\(deleted)"]) }
                } catch {
                    logger.warning("expiring request ids failed", metadata: ["error": "\(error)"])
                }
                try await Task.sleep(for: .seconds(3600))
            }
        }
    }
}
