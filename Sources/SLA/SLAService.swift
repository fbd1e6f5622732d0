import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import ServiceLifecycle

/// The sla service: see services/sla/README.md.
public struct SLAService: LiaisonService {
    public static let descriptor = ServiceDescriptor(
        name: "sla", defaultPort: 50053, defaultAdminPort: 9103,
        grpcServices: ["liaison.sla.v1.SlaService"])

    let context: ServiceContext

    public init(context: ServiceContext) async throws {
        self.context = context
    }

    // The liaison.sla.v1.SlaService handlers land with the service's own issue; until then grpc answers
    // UNIMPLEMENTED for its methods while health, reflection and metrics already work.
    public var rpcServices: [ServedRPCService] { [] }
    public var backgroundServices: [any Service] { [] }
}
