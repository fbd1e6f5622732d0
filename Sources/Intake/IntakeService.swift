import GRPCCore
import LiaisonRuntime
import ServiceLifecycle

/// The intake service: see services/intake/README.md.
public struct IntakeService: LiaisonService {
    public static let descriptor = ServiceDescriptor(
        name: "intake", defaultPort: 50051, defaultAdminPort: 9101,
        grpcServices: ["liaison.intake.v1.IntakeService"])

    let context: ServiceContext

    public init(context: ServiceContext) async throws {
        self.context = context
    }

    // The liaison.intake.v1.IntakeService handlers land with the service's own issue; until then grpc answers
    // UNIMPLEMENTED for its methods while health, reflection and metrics already work.
    public var rpcServices: [any RegistrableRPCService] { [] }
    public var backgroundServices: [any Service] { [] }
}
