/// The direct path's unary methods by path ("/service/method"), looked up from the path's bytes
/// as grpc++ hands them over: no `String` is made and nothing is hashed with SipHash for a call
/// that arrives (FNV-1a over the bytes, open addressing, then a byte comparison).
struct UnaryMethodTable: Sendable {
    private struct Slot: Sendable {
        let path: [UInt8]
        let method: UnaryMethod
    }
    private let slots: [Slot?]
    private let mask: Int

    /// A method listed twice keeps its first entry.
    init(_ methods: [UnaryMethod]) {
        var size = 8
        while size < methods.count * 2 { size *= 2 }
        var slots = [Slot?](repeating: nil, count: size)
        next: for method in methods {
            let path = Array(("/" + method.descriptor.fullyQualifiedMethod).utf8)
            var i = path.withUnsafeBytes { Self.hash($0) } & (size - 1)
            while let slot = slots[i] {
                if slot.path == path { continue next }
                i = (i + 1) & (size - 1)
            }
            slots[i] = Slot(path: path, method: method)
        }
        self.slots = slots
        self.mask = size - 1
    }

    /// The method served at `path`, if any.
    func method(at path: UnsafeRawBufferPointer) -> UnaryMethod? {
        var i = Self.hash(path) & mask
        while let slot = slots[i] {
            if slot.path.count == path.count,
               slot.path.withUnsafeBytes({ $0.elementsEqual(path) }) {
                return slot.method
            }
            i = (i + 1) & mask
        }
        return nil
    }

    private static func hash(_ bytes: UnsafeRawBufferPointer) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01b3
        }
        return Int(truncatingIfNeeded: h >> 1)
    }
}
