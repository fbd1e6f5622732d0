import Foundation

/// One `Value` per thread, made on the thread's first use and released when the thread exits
/// (a pthread key). For per-thread caches and queues that must not be shared or locked. `Value`
/// is a native Swift class (the key's destructor releases it as `AnyObject`).
public final class PerThread<Value: AnyObject>: @unchecked Sendable {
    private let key: pthread_key_t
    private let make: @Sendable () -> Value

    /// `make` creates a thread's value on its first use.
    public init(_ make: @escaping @Sendable () -> Value) {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, { raw in
            if let raw { Unmanaged<AnyObject>.fromOpaque(raw).release() }
        }) == 0, "pthread_key_create failed")
        self.key = key
        self.make = make
    }

    /// This thread's value if it has one already.
    public var existing: Value? {
        guard let raw = pthread_getspecific(key) else { return nil }
        return Unmanaged<Value>.fromOpaque(raw).takeUnretainedValue()
    }

    /// This thread's value, made now if it has none.
    public var value: Value {
        if let v = existing { return v }
        let v = make()
        pthread_setspecific(key, Unmanaged.passRetained(v).toOpaque())
        return v
    }
}
