import GRPCCore
@testable import LiaisonRPC
import XCTest

final class MethodTableTests: XCTestCase {
    private func method(_ service: String, _ name: String, tag: UInt8) -> UnaryMethod {
        UnaryMethod(MethodDescriptor(fullyQualifiedService: service, method: name)) { _, _ in [tag] }
    }

    private func tag(_ table: UnaryMethodTable, _ path: String) async throws -> UInt8? {
        let bytes = Array(path.utf8)
        guard let m = bytes.withUnsafeBytes({ table.method(at: $0) }) else { return nil }
        XCTAssertEqual("/" + m.descriptor.fullyQualifiedMethod, path)
        return try await m.handle([], ServerContext(
            descriptor: m.descriptor, remotePeer: "", localPeer: "", cancellation: .init())).first
    }

    /// Every path finds its own method by its bytes, in tables of many sizes (collisions and
    /// wrap-around included); prefixes, extensions and near misses find nothing.
    func testFindsEachPathAndOnlyExactPaths() async throws {
        for count in [0, 1, 2, 7, 8, 9, 100] {
            let methods = (0..<count).map { method("pkg.S\($0 % 5)", "M\($0)", tag: UInt8($0)) }
            let table = UnaryMethodTable(methods)
            for i in 0..<count {
                let tagFound = try await tag(table, "/pkg.S\(i % 5)/M\(i)")
                XCTAssertEqual(tagFound, UInt8(i))
                for miss in ["/pkg.S\((i + 1) % 5)/M\(i)", "/pkg.S\(i % 5)/M\(i)x", "/pkg.S\(i % 5)/M", "pkg.S\(i % 5)/M\(i)", "", "/"] {
                    let found = try await tag(table, miss)
                    XCTAssertNil(found, miss)
                }
            }
        }
    }

    /// A method listed twice keeps its first entry (as the transport documents).
    func testFirstEntryWins() async throws {
        let table = UnaryMethodTable([method("a.B", "C", tag: 1), method("a.B", "C", tag: 2), method("a.B", "D", tag: 3)])
        let first = try await tag(table, "/a.B/C")
        let other = try await tag(table, "/a.B/D")
        XCTAssertEqual(first, 1)
        XCTAssertEqual(other, 3)
    }

    /// The peer name is the bytes decoded; a repeated peer on a thread gives an equal name.
    func testPeerNamesFollowTheBytes() {
        let peers = ["ipv4:127.0.0.1:50001", "ipv4:127.0.0.1:50001", "ipv6:[::1]:4", "ipv4:127.0.0.1:50002", "", "ipv4:127.0.0.1:50001"]
        for p in peers {
            let bytes = Array(p.utf8)
            XCTAssertEqual(bytes.withUnsafeBytes { PeerNames.name($0) }, p)
        }
    }
}
