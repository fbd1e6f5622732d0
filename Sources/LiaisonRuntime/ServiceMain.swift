import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonStorage
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// What the runtime needs to know about a service.
public struct ServiceDescriptor: Sendable {
    /// Short name: `intake`, `correlation`, `sla`, `communications`, `followup`.
    public var name: String
    /// Default gRPC port.
    public var defaultPort: Int
    /// Default admin HTTP port.
    public var defaultAdminPort: Int
    /// Fully-qualified gRPC services it serves (their health status follows readiness).
    public var grpcServices: [String]

    public init(name: String, defaultPort: Int, defaultAdminPort: Int, grpcServices: [String]) {
        self.name = name
        self.defaultPort = defaultPort
        self.defaultAdminPort = defaultAdminPort
        self.grpcServices = grpcServices
    }
}

/// What a service gets at start-up.
public struct ServiceContext: Sendable {
    public let configuration: ServiceConfiguration
    public let environment: Environment
    public let pool: PostgresPool
    public let logger: Logger
}

/// A Liaison service: its RPC handlers and its background work. The runtime does the rest
/// (configuration, logs, metrics, migrations, health, reflection, graceful shutdown).
public protocol LiaisonService: Sendable {
    static var descriptor: ServiceDescriptor { get }
    init(context: ServiceContext) async throws
    /// gRPC services to serve (the runtime adds reflection; grpc++ serves health): each
    /// generated service's `served`, whose unary methods the transport serves directly.
    var rpcServices: [ServedRPCService] { get }
    /// Long-running work (outbox relays, detectors), stopped gracefully on SIGTERM.
    var backgroundServices: [any Service] { get }
}

/// The entry point of every executable: `serve` (default), `migrate`, `probe`, `outbox-requeue`.
public enum ServiceMain {
    public static func main<S: LiaisonService>(_ service: S.Type, arguments: [String] = CommandLine.arguments) async {
        let command = arguments.dropFirst().first ?? "serve"
        let descriptor = S.descriptor
        do {
            switch command {
            case "serve":
                try await serve(service)
            case "migrate":
                let config = try ServiceConfiguration(
                    service: descriptor.name, defaultPort: descriptor.defaultPort, defaultAdminPort: descriptor.defaultAdminPort)
                JSONLogHandler.bootstrap(level: config.logLevel)
                let logger = Logger(label: descriptor.name)
                let pool = PostgresPool(.init(url: config.databaseURL, maxConnections: 1, applicationName: descriptor.name))
                try await migrate(pool: pool, directory: config.migrationsDirectory, service: descriptor.name, logger: logger)
                await pool.close()
            case "probe":
                // Health check for container orchestrators: exit 0 only when grpc.health.v1 says SERVING.
                let env = Environment()
                let address = arguments.dropFirst(2).first
                    ?? env.string("LISTEN_ADDRESS").map { $0.replacingOccurrences(of: "0.0.0.0", with: "127.0.0.1") }
                    ?? "127.0.0.1:\(descriptor.defaultPort)"
                let serving = try await HealthProbe.check(target: address, service: "", timeout: .seconds(3))
                print(serving ? "SERVING" : "NOT_SERVING")
                exit(serving ? 0 : 1)
            case "outbox-requeue":
                // Dead-lettered events go out again (after the consumer that refused them is fixed).
                let config = try ServiceConfiguration(
                    service: descriptor.name, defaultPort: descriptor.defaultPort, defaultAdminPort: descriptor.defaultAdminPort)
                let pool = PostgresPool(.init(url: config.databaseURL, maxConnections: 1, applicationName: descriptor.name))
                let count = try await Outbox.requeueDead(pool, destination: arguments.dropFirst(2).first)
                await pool.close()
                print("requeued \(count) dead-lettered events")
            case "-h", "--help", "help":
                print(usage(descriptor))
            default:
                FileHandle.standardError.write(Data("unknown command '\(command)'\n\(usage(descriptor))\n".utf8))
                exit(64)
            }
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("\(descriptor.name): configuration error: \(error)\n".utf8))
            exit(78)  // EX_CONFIG
        } catch {
            FileHandle.standardError.write(Data("\(descriptor.name): \(error)\n".utf8))
            exit(1)
        }
    }

    static func usage(_ d: ServiceDescriptor) -> String {
        """
        usage: \(d.name) [serve|migrate|probe [host:port]|outbox-requeue [destination]]
          serve    apply migrations (unless LIAISON_MIGRATE_ON_START=false) and serve gRPC on
                   LIAISON_LISTEN_ADDRESS (default 0.0.0.0:\(d.defaultPort)) and metrics/health on
                   LIAISON_ADMIN_ADDRESS (default 0.0.0.0:\(d.defaultAdminPort))
          migrate  apply the migrations in LIAISON_MIGRATIONS_DIR and exit
          probe    exit 0 if the local server reports SERVING on grpc.health.v1
          outbox-requeue  send dead-lettered events again (all, or one destination's)
        Required: LIAISON_DATABASE_URL. See README.md for every variable.
        """
    }

    /// Applies platform and service migrations, waiting up to a minute for the database.
    static func migrate(pool: PostgresPool, directory: String, service: String, logger: Logger) async throws {
        let migrations = try Migrator.load(directory: directory)
        let migrator = Migrator(pool: pool, logger: logger)
        let start = ContinuousClock.now
        while true {
            do {
                try await migrator.migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
                try await migrator.migrate(namespace: service, migrations)
                return
            } catch let e as PostgresError where e.kind == .connection && ContinuousClock.now - start < .seconds(60) {
                logger.warning("database not reachable yet; retrying", metadata: ["error": "\(e.message)"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    static func serve<S: LiaisonService>(_ type: S.Type) async throws {
        let d = S.descriptor
        let config = try ServiceConfiguration(service: d.name, defaultPort: d.defaultPort, defaultAdminPort: d.defaultAdminPort)
        JSONLogHandler.bootstrap(level: config.logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        var logger = Logger(label: d.name)
        logger[metadataKey: "replica"] = "\(config.replicaID)"

        let admin = try AdminServer(address: config.adminAddress, registry: registry, logger: logger)
        var poolConfig = PostgresPool.Configuration(
            url: config.databaseURL, maxConnections: config.databasePoolSize, applicationName: d.name,
            resumeScope: ShimServerTransport.runResumedHandlers, deadlineProvider: { ServerCallDeadline.current })
        poolConfig.maxWaiters = config.databaseMaxWaiters
        let pool = PostgresPool(poolConfig, logger: logger)
        if config.migrateOnStart {
            try await migrate(pool: pool, directory: config.migrationsDirectory, service: d.name, logger: logger)
        }
        let service = try await S(context: ServiceContext(configuration: config, environment: Environment(), pool: pool, logger: logger))

        var transportConfig = ShimServerTransport.Config(
            listenAddress: config.listenAddress,
            maxReceiveMessageBytes: config.maxMessageBytes,
            keepaliveTime: .seconds(30),
            keepaliveTimeout: .seconds(10),
            maxConnectionAge: config.maxConnectionAgeSeconds > 0 ? .seconds(config.maxConnectionAgeSeconds) : nil,
            maxConnectionAgeGrace: .seconds(30),
            shutdownGracePeriod: config.shutdownGrace)
        transportConfig.maxActiveCalls = config.maxActiveCalls
        transportConfig.maxConcurrentStreamsPerConnection = config.maxStreamsPerConnection
        transportConfig.memoryQuotaBytes = config.grpcMemoryBytes
        // Health and reflection tell only of the APIs that have handlers: a service whose API
        // is not built yet is neither SERVING nor listed for it.
        let assembly = try ServerAssembly(services: service.rpcServices, config: transportConfig)

        let grpc = GRPCServerService(
            assembly: assembly, healthServices: d.grpcServices, admin: admin,
            shutdownDelay: config.shutdownDelay, logger: logger)
        // ServiceGroup shuts services down in reverse order, one after the other: gRPC (listed last)
        // stops advertising and drains first, while the background work (outbox relays that
        // deliver what those calls wrote) keeps running; then the background services stop.
        let group = ServiceGroup(configuration: .init(
            services: service.backgroundServices.map { .init(service: $0) }
                + [.init(service: PlatformHousekeeping(
                    pool: pool, idempotencyRetention: config.idempotencyRetention, inboxRetention: config.inboxRetention,
                    logger: logger))]
                + [.init(service: OutboxGauges(pool: pool, logger: logger))]
                + [.init(service: grpc)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        logger.info("starting", metadata: ["grpc": "\(config.listenAddress)", "admin": "\(config.adminAddress)"])
        try await group.run()
        await pool.close()
        logger.info("stopped")
    }
}

/// What every server of the runtime applies to its calls, in `serve` and in test harnesses
/// alike: ``RequestBounds`` on every request, on the direct unary path and through `GRPCServer`,
/// and the client's deadline as ``ServerCallDeadline`` (which the services' pools read).
public enum ServerKit {
    /// The unary methods of `services` for the transport's direct path, with the request checks.
    public static func unaryMethods(_ services: [ServedRPCService]) -> [UnaryMethod] {
        services.flatMap(\.unaryMethods).map { $0.checking(RequestBounds.check) }
    }

    /// `GRPCServer`'s interceptors: `first`, then the call's deadline and the request checks.
    public static func interceptors(_ first: [any ServerInterceptor] = []) -> [any ServerInterceptor] {
        first + [DeadlineInterceptor(), RequestBoundsInterceptor()]
    }
}

/// Serves gRPC until graceful shutdown; drives health and readiness.
struct GRPCServerService: Service {
    let assembly: ServerAssembly
    let healthServices: [String]
    let admin: AdminServer
    let shutdownDelay: Duration
    let logger: Logger

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                // The admin endpoints live as long as the gRPC server, so that /readyz answers 503
                // (and /metrics stays scrapable) while it drains.
                group.addTask { await admin.run() }
                group.addTask {
                    defer { admin.stop() }
                    try await assembly.serve()
                }
                group.addTask {
                    let port = try await assembly.port
                    assembly.setServing(true, services: healthServices)
                    admin.setReady(true)
                    logger.info("serving", metadata: ["port": "\(port)"])
                }
                try await group.waitForAll()
            }
        } onGracefulShutdown: {
            // Stop advertising first so balancers move away (still serving for shutdownDelay),
            // then stop accepting and drain in-flight calls.
            admin.setReady(false)
            assembly.setServing(false, services: healthServices)
            logger.info("draining", metadata: ["delay": "\(shutdownDelay)"])
            if shutdownDelay == .zero {
                assembly.shutdown()
            } else {
                let assembly = self.assembly, delay = self.shutdownDelay
                Task {
                    try? await Task.sleep(for: delay)
                    assembly.shutdown()
                }
            }
        }
    }
}

/// Counts calls and their latency per method and status code
/// (`liaison_rpc_requests_total`, `liaison_rpc_duration_seconds`). Direct unary calls report
/// through the transport's observer into the same ``record(method:code:elapsed:)``.
public struct MetricsInterceptor: ServerInterceptor {
    public init() {}

    /// The `code` label of a status: "OK", or the error code as GRPCCore spells it ("notFound").
    public static func label(_ code: Status.Code) -> String {
        guard let error = RPCError.Code(code) else { return "OK" }
        return "\(error)"
    }

    /// Records one finished call.
    public static func record(method: String, code: String, elapsed: Duration) {
        Counter(label: "liaison_rpc_requests_total", dimensions: [("method", method), ("code", code)]).increment()
        let c = elapsed.components
        Timer(label: "liaison_rpc_duration_seconds", dimensions: [("method", method)])
            .recordNanoseconds(c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000)
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let start = ContinuousClock.now
        let method = context.descriptor.fullyQualifiedMethod
        @Sendable func record(_ code: String) {
            Self.record(method: method, code: code, elapsed: ContinuousClock.now - start)
        }
        do {
            let response = try await next(request, context)
            switch response.accepted {
            case .success(var contents):
                let producer = contents.producer
                contents.producer = { writer in
                    do {
                        let trailers = try await producer(writer)
                        record("OK")
                        return trailers
                    } catch {
                        record(Self.code(error))
                        throw error
                    }
                }
                return StreamingServerResponse(accepted: .success(contents))
            case .failure(let error):
                record("\(error.code)")
                return response
            }
        } catch {
            record(Self.code(error))
            throw error
        }
    }

    static func code(_ error: any Error) -> String {
        if let e = error as? RPCError { return "\(e.code)" }
        if let e = error as? any RPCErrorConvertible { return "\(e.rpcErrorCode)" }
        return "unknown"
    }
}

/// A grpc.health.v1 client for `probe` and for tests (hand-encoded: two tiny messages).
public enum HealthProbe {
    struct Bytes: MessageSerializer, MessageDeserializer {
        typealias Message = [UInt8]
        func serialize<B: GRPCContiguousBytes>(_ message: [UInt8]) throws -> B { B(message) }
        func deserialize<B: GRPCContiguousBytes>(_ serializedMessageBytes: B) throws -> [UInt8] {
            serializedMessageBytes.withUnsafeBytes { Array($0) }
        }
    }

    /// True when `service` ("" for the whole server) is SERVING at `target`.
    public static func check(target: String, service: String, timeout: Duration) async throws -> Bool {
        let transport = try ShimClientTransport(target: target)
        return try await withGRPCClient(transport: transport) { client in
            var request: [UInt8] = []
            let name = Array(service.utf8)
            if !name.isEmpty {
                request = [0x0A]
                var n = name.count
                while n >= 0x80 {
                    request.append(UInt8(n & 0x7f) | 0x80)
                    n >>= 7
                }
                request.append(UInt8(n))
                request += name
            }
            var options = CallOptions.defaults
            options.timeout = timeout
            let response = try await client.unary(
                request: ClientRequest(message: request),
                descriptor: MethodDescriptor(fullyQualifiedService: "grpc.health.v1.Health", method: "Check"),
                serializer: Bytes(), deserializer: Bytes(), options: options
            ) { try $0.message }
            // HealthCheckResponse { status = 1 (varint) }; SERVING = 1.
            return response == [0x08, 0x01]
        }
    }
}
