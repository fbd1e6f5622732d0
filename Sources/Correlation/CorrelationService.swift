import GRPCCore
import LiaisonRuntime
import ServiceLifecycle

/// The correlation service: see services/correlation/README.md.
public struct CorrelationService: LiaisonService {
    public static let descriptor = ServiceDescriptor(
        name: "correlation", defaultPort: 50052, defaultAdminPort: 9102,
        grpcServices: ["liaison.correlation.v1.CorrelationService"])

    let context: ServiceContext

    public init(context: ServiceContext) async throws {
        self.context = context
    }

    // The liaison.correlation.v1.CorrelationService handlers land with the service's own issue; until then grpc answers
    // UNIMPLEMENTED for its methods while health, reflection and metrics already work.
    public var rpcServices: [any RegistrableRPCService] { [] }
    public var backgroundServices: [any Service] { [] }
}
