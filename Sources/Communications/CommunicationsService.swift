import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import ServiceLifecycle

/// The communications service: see services/communications/README.md.
public struct CommunicationsService: LiaisonService {
    public static let descriptor = ServiceDescriptor(
        name: "communications", defaultPort: 50054, defaultAdminPort: 9104,
        grpcServices: ["liaison.communications.v1.CommunicationsService"])

    let context: ServiceContext

    public init(context: ServiceContext) async throws {
        self.context = context
    }

    // The liaison.communications.v1.CommunicationsService handlers land with the service's own issue; until then grpc answers
    // UNIMPLEMENTED for its methods while health, reflection and metrics already work.
    public var rpcServices: [ServedRPCService] { [] }
    public var backgroundServices: [any Service] { [] }
}
