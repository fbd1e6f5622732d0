import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRPC
import Metrics

/// How every service's gRPC server is put together, in `ServiceMain.serve` and in the test
/// harnesses alike (one builder, port 0 in tests): the services' unary methods on the
/// transport's direct path with ``RequestBounds``; everything else through `GRPCServer` with the
/// metrics, deadline and request-bounds interceptors; reflection that lists only the services
/// with handlers; health for those services only.
public struct ServerAssembly: Sendable {
    public let transport: ShimServerTransport
    public let server: GRPCServer<ShimServerTransport>
    /// Fully-qualified names of the services with handlers.
    public let servedServices: Set<String>

    /// Assembles `services` on `config`. `interceptors` run first (tests count calls there);
    /// `observer` also sees direct unary calls (after the runtime's metrics).
    public init(
        services: [ServedRPCService], config: ShimServerTransport.Config,
        interceptors: [any ServerInterceptor] = [],
        observer: ShimServerTransport.CallObserver? = nil
    ) throws {
        let served = services.reduce(into: Set<String>()) { $0.formUnion($1.serviceNames) }
        let reflection = try ReflectionService(fileDescriptorSet: LiaisonDescriptors.fileDescriptorSet, serving: served)
        let all = services + [ServedRPCService(reflection)]
        transport = ShimServerTransport(
            config: config, unaryMethods: ServerKit.unaryMethods(all),
            observer: { method, code, duration in
                MetricsInterceptor.record(method: method.fullyQualifiedMethod, code: MetricsInterceptor.label(code), elapsed: duration)
                observer?(method, code, duration)
            })
        server = GRPCServer(
            transport: transport, services: all.map(\.registrable),
            interceptors: interceptors + ServerKit.interceptors([MetricsInterceptor()]))
        servedServices = served
    }

    /// Marks `names` (those of them with handlers) and the server as a whole SERVING.
    public func setServing(_ serving: Bool, services names: [String]) {
        for s in [""] + names.filter(servedServices.contains) {
            transport.health.setServingStatus(service: s, serving: serving)
        }
    }

    /// Serves until shut down.
    public func serve() async throws { try await server.serve() }

    /// The bound port (after `serve` started).
    public var port: Int { get async throws { try await transport.listeningPort } }

    /// Stops accepting, drains, then returns from `serve`.
    public func shutdown() { server.beginGracefulShutdown() }
}
