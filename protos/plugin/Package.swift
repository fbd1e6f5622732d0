// swift-tools-version:6.0
// protoc-gen-liaison-unary: generates, for every service of the contract, the table of its unary
// methods that ShimServerTransport serves directly (see Sources/LiaisonRPC/UnaryMethod.swift).
// Built once by protos/generate.sh into the plugin cache; never part of the main build.
import PackageDescription

let package = Package(
    name: "protoc-gen-liaison-unary",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
    ],
    targets: [
        .executableTarget(
            name: "protoc-gen-liaison-unary",
            dependencies: [.product(name: "SwiftProtobufPluginLibrary", package: "swift-protobuf")]
        ),
    ]
)
