internal import CLiaisonGRPC
public import GRPCCore
import Foundation
import Synchronization

/// TLS credentials for ``ShimServerTransport`` and ``ShimClientTransport`` (PEM strings).
public struct ShimTLS: Sendable, Hashable {
    /// Server: CA bundle that verifies client certificates (mTLS). Client: CA bundle that
    /// verifies the server. `nil` on the client means the system roots.
    public var rootCertificatesPEM: String?
    /// This side's certificate chain (required on the server; client side enables mTLS).
    public var certificateChainPEM: String?
    /// This side's private key, paired with `certificateChainPEM`.
    public var privateKeyPEM: String?
    /// Server only: require and verify a client certificate (mTLS).
    public var requireClientCertificate: Bool
    /// Client only: the name expected in the server's certificate, when it differs from the
    /// target's host (tests with self-made certificates).
    public var serverNameOverride: String?

    public init(
        rootCertificatesPEM: String? = nil,
        certificateChainPEM: String? = nil,
        privateKeyPEM: String? = nil,
        requireClientCertificate: Bool = false,
        serverNameOverride: String? = nil
    ) {
        self.rootCertificatesPEM = rootCertificatesPEM
        self.certificateChainPEM = certificateChainPEM
        self.privateKeyPEM = privateKeyPEM
        self.requireClientCertificate = requireClientCertificate
        self.serverNameOverride = serverNameOverride
    }
}

/// Owns C copies of strings handed to the shim for the duration of one create call.
final class CStrings {
    private var owned: [UnsafeMutablePointer<CChar>] = []

    func dup(_ s: String?) -> UnsafePointer<CChar>? {
        guard let s else { return nil }
        let p = strdup(s)!
        owned.append(p)
        return UnsafePointer(p)
    }

    deinit { for p in owned { free(p) } }
}

extension ShimTLS {
    /// Calls `body` with a C view of these credentials, valid only during `body`.
    func withC<R>(_ body: (UnsafePointer<lgrpc_tls>) throws -> R) rethrows -> R {
        let strings = CStrings()
        var tls = lgrpc_tls()
        tls.root_certs_pem = strings.dup(rootCertificatesPEM)
        tls.cert_chain_pem = strings.dup(certificateChainPEM)
        tls.private_key_pem = strings.dup(privateKeyPEM)
        tls.require_client_cert = requireClientCertificate ? 1 : 0
        tls.server_name_override = strings.dup(serverNameOverride)
        return try withExtendedLifetime(strings) { try withUnsafePointer(to: &tls) { try body($0) } }
    }
}

enum MetadataBridge {
    /// Calls `body` with `metadata` as a borrowed C array (keys lowercased, `-bin` values raw).
    static func withC<R>(
        _ metadata: Metadata,
        _ body: (UnsafePointer<lgrpc_metadata>?, Int) -> R
    ) -> R {
        if metadata.isEmpty { return body(nil, 0) }
        var bytes: [UInt8] = []
        var spans: [(Int, Int, Int, Int)] = []
        spans.reserveCapacity(metadata.count)
        for (key, value) in metadata {
            let k = Array(key.lowercased().utf8)
            let v: [UInt8]
            switch value {
            case .string(let s):
                v = Array(s.utf8)
            case .binary(let b):
                v = k.count >= 4 && key.lowercased().hasSuffix("-bin") ? b : Array(value.encoded().utf8)
            }
            let ko = bytes.count
            bytes.append(contentsOf: k)
            let vo = bytes.count
            bytes.append(contentsOf: v)
            spans.append((ko, k.count, vo, v.count))
        }
        return bytes.withUnsafeBufferPointer { buf in
            let base = buf.baseAddress!
            var entries: [lgrpc_metadata] = []
            entries.reserveCapacity(spans.count)
            for (ko, kl, vo, vl) in spans {
                let keyPtr = UnsafeRawPointer(base + ko).assumingMemoryBound(to: CChar.self)
                entries.append(lgrpc_metadata(key: keyPtr, key_len: kl, value: base + vo, value_len: vl))
            }
            return entries.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
        }
    }

    /// Copies a borrowed C metadata array into a `Metadata`.
    static func fromC(_ md: UnsafePointer<lgrpc_metadata>?, _ count: Int) -> Metadata {
        var out = Metadata()
        guard let md, count > 0 else { return out }
        out.reserveCapacity(count)
        for i in 0..<count {
            let e = md[i]
            let key = String(
                decoding: UnsafeRawBufferPointer(start: e.key, count: e.key_len),
                as: UTF8.self
            )
            let value = UnsafeBufferPointer(start: e.value, count: e.value_len)
            if key.hasSuffix("-bin") {
                out.addBinary(Array(value), forKey: key)
            } else {
                out.addString(String(decoding: value, as: UTF8.self), forKey: key)
            }
        }
        return out
    }
}

extension Duration {
    /// Whole microseconds, saturating.
    var microseconds: Int64 {
        let (s, atto) = self.components
        let (m, overflow) = s.multipliedReportingOverflow(by: 1_000_000)
        if overflow { return s < 0 ? Int64.min : Int64.max }
        return m &+ atto / 1_000_000_000_000
    }

    var milliseconds: Int64 { microseconds / 1000 }
}

enum GRPCTimeout {
    /// Encodes a `grpc-timeout` header value (at most 8 digits, per the gRPC HTTP/2 spec).
    static func encode(microseconds us: Int64) -> String {
        let us = max(us, 0)
        if us < 100_000_000 { return "\(us)u" }
        let ms = us / 1000
        if ms < 100_000_000 { return "\(ms)m" }
        let s = ms / 1000
        if s < 100_000_000 { return "\(s)S" }
        return "99999999S"
    }
}

extension MethodDescriptor {
    /// Parses "/package.Service/Method".
    init(path: String) {
        var p = Substring(path)
        if p.hasPrefix("/") { p = p.dropFirst() }
        if let slash = p.lastIndex(of: "/") {
            self.init(fullyQualifiedService: String(p[..<slash]), method: String(p[p.index(after: slash)...]))
        } else {
            self.init(fullyQualifiedService: String(p), method: "")
        }
    }
}

/// A one-shot value that tasks can wait for.
final class Promise<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var waiters: [UnsafeContinuation<Value, Never>] = []
    }
    private let state = Mutex(State())

    func fulfil(_ value: Value) {
        let waiters: [UnsafeContinuation<Value, Never>] = state.withLock { st in
            if st.value != nil { return [] }
            st.value = value
            defer { st.waiters = [] }
            return st.waiters
        }
        for w in waiters { w.resume(returning: value) }
    }

    var current: Value? { state.withLock { $0.value } }

    func wait() async -> Value {
        if let v = current { return v }
        return await withUnsafeContinuation { cont in
            let v: Value? = state.withLock { st in
                if let v = st.value { return v }
                st.waiters.append(cont)
                return nil
            }
            if let v { cont.resume(returning: v) }
        }
    }
}
