import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import ServiceLifecycle

/// The followup service: see services/followup/README.md.
public struct FollowupService: LiaisonService {
    public static let descriptor = ServiceDescriptor(
        name: "followup", defaultPort: 50055, defaultAdminPort: 9105,
        grpcServices: ["liaison.followup.v1.FollowupService"])

    let context: ServiceContext

    public init(context: ServiceContext) async throws {
        self.context = context
    }

    // The liaison.followup.v1.FollowupService handlers land with the service's own issue; until then grpc answers
    // UNIMPLEMENTED for its methods while health, reflection and metrics already work.
    public var rpcServices: [ServedRPCService] { [] }
    public var backgroundServices: [any Service] { [] }
}
