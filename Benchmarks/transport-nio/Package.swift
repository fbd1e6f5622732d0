// swift-tools-version: 6.1
// The pure-Swift comparison for Benchmarks/transport/run.sh: the same echo service as
// ShimEchoBench, served by grpc-swift-2 over grpc-swift-nio-transport (HTTP/2 on SwiftNIO).
// A separate package on purpose: its clean release build compiles BoringSSL (about 18 minutes
// on 2 cores), so it never enters the main build or CI. Built only by `make bench-transport`
// with BENCH_NIO=1.
import PackageDescription

let package = Package(
    name: "LiaisonTransportNIOBench",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/grpc/grpc-swift-2", exact: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", exact: "2.9.2"),
    ],
    targets: [
        .executableTarget(
            name: "NIOEchoBench",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]),
    ]
)
