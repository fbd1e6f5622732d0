import CorrelationDomain
import Foundation
import LiaisonStorage
import Logging
import Synchronization

/// One change feed of incident revisions for every WatchIncident stream of a replica.
///
/// Each watcher used to poll its incident's row every `watchPoll` on a connection of its own:
/// N watchers cost N queries per interval and held N pool slots in turn. Here one task reads the
/// revisions of every watched incident in one query per interval, and only while someone
/// watches; a watcher waits until its incident's revision differs from the one it has.
/// At most `maxWatchers` watch at once per replica: one more is refused (the caller answers
/// RESOURCE_EXHAUSTED with a retry hint), so watchers cannot grow without bound.
final class IncidentRevisionFeed: Sendable {
    /// The feed is full.
    struct Full: Error {}

    private struct Waiter {
        let incident: UUID
        let after: Int64?
        let continuation: CheckedContinuation<Int64, any Error>
    }

    private struct State {
        var watchers: [UUID: Int] = [:]
        var total = 0
        var latest: [UUID: Int64] = [:]
        var waiters: [UInt64: Waiter] = [:]
        var nextID: UInt64 = 0
        var polling = false
    }

    private let state = Mutex(State())
    private let pool: PostgresPool
    private let interval: Duration
    private let maxWatchers: Int
    private let logger: Logger

    init(pool: PostgresPool, interval: Duration, maxWatchers: Int, logger: Logger) {
        self.pool = pool
        self.interval = interval
        self.maxWatchers = maxWatchers
        self.logger = logger
    }

    /// Watchers registered now.
    var watcherCount: Int { state.withLock { $0.total } }

    /// Runs `body` as a watcher of `incident`; throws `Full` when `maxWatchers` already watch.
    func watching<T>(_ incident: UUID, _ body: () async throws -> T) async throws -> T {
        let start = try state.withLock { s -> Bool in
            guard s.total < maxWatchers else { throw Full() }
            s.total += 1
            s.watchers[incident, default: 0] += 1
            guard !s.polling else { return false }
            s.polling = true
            return true
        }
        if start { Task { await self.poll() } }
        defer {
            state.withLock { s in
                s.total -= 1
                s.watchers[incident, default: 1] -= 1
                if s.watchers[incident] == 0 {
                    s.watchers[incident] = nil
                    s.latest[incident] = nil
                }
            }
        }
        return try await body()
    }

    /// Waits until `incident`'s revision is known and greater than `after` (at once when it
    /// already is; revisions only grow); returns it, or `Int64.min` when the incident is gone.
    /// Call inside `watching`.
    func revision(of incident: UUID, after: Int64?) async throws -> Int64 {
        let id = state.withLock { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int64, any Error>) in
                let ready = state.withLock { s -> Int64? in
                    if let r = s.latest[incident], r > (after ?? Int64.min) { return r }
                    if Task.isCancelled { return -1 }
                    s.waiters[id] = Waiter(incident: incident, after: after, continuation: continuation)
                    return nil
                }
                if let ready {
                    if ready == -1 { continuation.resume(throwing: CancellationError()) } else { continuation.resume(returning: ready) }
                }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    /// The one poll loop: runs while anyone watches.
    private func poll() async {
        while true {
            let ids = state.withLock { s -> [UUID]? in
                guard s.total > 0 else {
                    s.polling = false
                    return nil
                }
                return Array(s.watchers.keys)
            }
            guard let ids else { return }
            do {
                let rows = try await PostgresPool.$deadline.withValue(ContinuousClock.now + .seconds(10)) {
                    try await pool.query(
                        "SELECT id, revision + incident_shard_revisions(id) FROM incidents WHERE id = ANY($1::uuid[])",
                        [TextArray(ids.map(\.lowercasedString))])
                }
                var revisions: [UUID: Int64] = [:]
                for row in rows.rows { revisions[try row.decode(UUID.self, 0)] = try row.decode(Int64.self, 1) }
                let woken = state.withLock { s -> [(CheckedContinuation<Int64, any Error>, Result<Int64, any Error>)] in
                    for (id, r) in revisions where s.watchers[id] != nil { s.latest[id] = r }
                    var out: [(CheckedContinuation<Int64, any Error>, Result<Int64, any Error>)] = []
                    for (key, w) in s.waiters {
                        if let r = s.latest[w.incident], r > (w.after ?? Int64.min) {
                            out.append((w.continuation, .success(r)))
                            s.waiters[key] = nil
                        } else if revisions[w.incident] == nil, ids.contains(w.incident) {
                            // Gone (deleted): the watcher looks it up itself and fails as it should.
                            out.append((w.continuation, .success(Int64.min)))
                            s.waiters[key] = nil
                        }
                    }
                    return out
                }
                for (c, r) in woken { c.resume(with: r) }
            } catch {
                logger.warning("incident revision feed: poll failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
    }
}
