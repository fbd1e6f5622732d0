// swift-tools-version:6.1
//
// Liaison: customer service as part of incident response.
// Five executables (intake, correlation, sla, communications, followup) over shared plumbing:
//   CLibPQ / LiaisonStorage   PostgreSQL through libpq
//   CLiaisonGRPC / LiaisonRPC gRPC through a C shim over libgrpc++, as a GRPCCore transport
//   LiaisonAPI                protobuf models and stubs generated from protos/ (committed)
//   LiaisonRuntime            config, logs, metrics, admin HTTP, lifecycle, outbox, idempotency
import PackageDescription

let swiftSettings: [SwiftSetting] = [.swiftLanguageMode(.v6)]

/// grpc++ is linked by explicit library names: its pkg-config graph (abseil) overwhelms SwiftPM.
let grpcLinker: [LinkerSetting] = [
    .linkedLibrary("grpc++"),
    .linkedLibrary("grpc"),
    .linkedLibrary("gpr"),
    .linkedLibrary("protobuf"),
    .linkedLibrary("absl_synchronization"),
]

/// Each service is a library (`Sources/<Name>`: handlers, repository, domain) and a thin executable
/// (`Sources/Executables/<product>/main.swift`).
let services: [(product: String, target: String)] = [
    ("intake", "Intake"),
    ("correlation", "Correlation"),
    ("sla", "SLA"),
    ("communications", "Communications"),
    ("followup", "Followup"),
]

/// Services whose domain folder is its own target (`<Target>Domain`).
let servicesWithDomain = ["Intake", "Correlation", "SLA"]

let package = Package(
    name: "Liaison",
    platforms: [.macOS(.v15)],
    products: services.map { .executable(name: $0.product, targets: [$0.product]) },
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
    ],
    targets: [
        // MARK: PostgreSQL
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .target(
            name: "LiaisonStorage",
            dependencies: [
                "CLibPQ",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: gRPC
        .target(
            name: "CLiaisonGRPC",
            cxxSettings: [.define("NOMINMAX")],
            linkerSettings: grpcLinker
        ),
        .target(
            name: "LiaisonRPC",
            dependencies: [
                "CLiaisonGRPC",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // grpc.testing.TestService over the shim transport, driven by grpcio's interop client
        // (Tests/interop/run.sh). Also the child process of LiaisonRPCTests' kill test.
        .executableTarget(
            name: "InteropServer",
            dependencies: [
                "LiaisonRPC",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),

        // Swift echo server over the shim, for Benchmarks/transport/run.sh.
        .executableTarget(
            name: "ShimEchoBench",
            dependencies: [
                "LiaisonRPC",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: API contract (generated, committed)
        .target(
            name: "LiaisonAPI",
            dependencies: [
                "LiaisonRPC",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Service runtime
        // Big-endian byte helpers, shared by the runtime and the pure domains (no dependencies).
        .target(name: "LiaisonBytes", swiftSettings: swiftSettings),

        .target(
            name: "LiaisonRuntime",
            dependencies: [
                "LiaisonBytes",
                "LiaisonStorage",
                "LiaisonRPC",
                "LiaisonAPI",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Benchmarks (programs, not tests: Benchmarks/*/run.sh)
        .executableTarget(
            name: "StorageBenchmark",
            dependencies: ["LiaisonStorage"],
            path: "Benchmarks/storage",
            exclude: ["run.sh"],
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "IntakeBenchmark",
            dependencies: [
                "LiaisonAPI", "LiaisonRPC", "LiaisonRuntime",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
            ],
            path: "Benchmarks/intake",
            exclude: ["run.sh", "loadgen.cpp"],
            swiftSettings: swiftSettings
        ),

        // MARK: Test tooling
        .target(
            name: "LiaisonTestSupport",
            dependencies: ["LiaisonStorage"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LiaisonStorageTests",
            dependencies: ["LiaisonStorage", "LiaisonTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LiaisonRuntimeTests",
            dependencies: [
                "LiaisonRuntime", "LiaisonStorage", "LiaisonTestSupport", "LiaisonAPI", "LiaisonRPC",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LiaisonRPCTests",
            dependencies: [
                "LiaisonRPC",
                "CLiaisonGRPC",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
        // MARK: The five services
        // A service's pure domain (Sources/<Service>/Domain) is a target of its own that depends on
        // nothing but Foundation: the compiler enforces that the domain imports neither protobuf
        // nor storage nor the RPC layer.
        + servicesWithDomain.map { target in
            .target(name: target + "Domain", dependencies: ["LiaisonBytes"], path: "Sources/\(target)/Domain", swiftSettings: swiftSettings)
        }
        + services.map { service in
            .target(
                name: service.target,
                dependencies: (servicesWithDomain.contains(service.target) ? [.target(name: service.target + "Domain")] : []) + [
                    "LiaisonRuntime", "LiaisonAPI", "LiaisonRPC", "LiaisonStorage",
                    .product(name: "GRPCCore", package: "grpc-swift-2"),
                    .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                    .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                    .product(name: "Logging", package: "swift-log"),
                    .product(name: "Metrics", package: "swift-metrics"),
                ],
                exclude: servicesWithDomain.contains(service.target) ? ["Domain"] : [],
                swiftSettings: swiftSettings
            )
        }
        + services.map { service in
            .executableTarget(
                name: service.product,
                dependencies: [.target(name: service.target), "LiaisonRuntime"],
                path: "Sources/Executables/\(service.product)",
                swiftSettings: swiftSettings
            )
        }
        + [
            // Correlation benchmark (Benchmarks/correlation/run.sh), a program beside the service.
            .executableTarget(
                name: "CorrelationBenchmark",
                dependencies: [
                    "Correlation", "LiaisonRuntime", "LiaisonRPC", "LiaisonAPI", "LiaisonStorage",
                    .product(name: "GRPCCore", package: "grpc-swift-2"),
                    .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                    .product(name: "Logging", package: "swift-log"),
                ],
                path: "Benchmarks/correlation",
                exclude: ["run.sh", "waits.sh"],
                swiftSettings: swiftSettings
            ),
            // sla benchmark (Benchmarks/sla/run.sh).
            .executableTarget(
                name: "SLABenchmark",
                dependencies: [
                    "SLA", "LiaisonRuntime", "LiaisonRPC", "LiaisonAPI", "LiaisonStorage",
                    .product(name: "GRPCCore", package: "grpc-swift-2"),
                    .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                    .product(name: "Logging", package: "swift-log"),
                ],
                path: "Benchmarks/sla",
                exclude: ["run.sh"],
                swiftSettings: swiftSettings
            ),
            .testTarget(
                name: "CorrelationTests",
                dependencies: [
                    "Correlation", "LiaisonTestSupport", "LiaisonRuntime", "LiaisonRPC", "LiaisonAPI", "LiaisonStorage",
                    .product(name: "GRPCCore", package: "grpc-swift-2"),
                    .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                    .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                    .product(name: "Logging", package: "swift-log"),
                ],
                swiftSettings: swiftSettings
            ),
            .testTarget(
                name: "SLATests",
                dependencies: [
                    "SLA", "LiaisonTestSupport", "LiaisonRuntime", "LiaisonRPC", "LiaisonAPI", "LiaisonStorage",
                    .product(name: "GRPCCore", package: "grpc-swift-2"),
                    .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                    .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                    .product(name: "Logging", package: "swift-log"),
                ],
                swiftSettings: swiftSettings
            ),
            .testTarget(
                name: "IntakeTests",
                dependencies: [
                    "Intake", "LiaisonTestSupport", "LiaisonRuntime", "LiaisonRPC", "LiaisonAPI", "LiaisonStorage",
                    .product(name: "GRPCCore", package: "grpc-swift-2"),
                    .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                    .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                    .product(name: "Logging", package: "swift-log"),
                ],
                swiftSettings: swiftSettings
            ),
        ],
    cxxLanguageStandard: .cxx17
)
