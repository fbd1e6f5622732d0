// Group commit for SubmitReport: concurrent single-report calls share transactions when more
// arrive than `IntakeSettings.submitTransactions` transactions are running.
import IntakeDomain
import LiaisonAPI
import LiaisonStorage
import Synchronization

/// Runs concurrent SubmitReport calls as shared transactions once enough are in flight.
///
/// Up to `limit` submissions run at once, each alone in its own transaction, in the caller's task
/// (cancellation reaches its statements, as before). A submission that arrives while `limit` are
/// running waits in a queue; when a running submission ends, its slot passes to a drainer task
/// that takes everything queued (up to `maxEntries`) into one transaction through the batch path
/// (`IntakeRepository.submitGroup`: customers locked in id order, entries that share a customer
/// or request id in arrival order, each entry with its own outcome), and keeps draining until the
/// queue is empty. So at low concurrency nothing waits and nothing changes; under load, a
/// transaction carries several reports and intake pays its per-transaction costs (round trips,
/// thread hand-offs, a commit) once for all of them.
///
/// Every caller still gets only its own answer, once its transaction has committed (durable),
/// and exactly what it would have got alone: the batch path decides each entry as the single
/// path does, and both write the same rows. A caller cancelled while queued leaves the queue
/// and gets `CancellationError`; once its transaction has started it is not cancelled (that
/// would roll back the others' reports), and its answer, if it arrives too late, is dropped; a
/// retry with the same request_id replays it. A transaction that fails as a whole fails every
/// caller in it, and each may retry with its request_id.
final class SubmitCoalescer: Sendable {
    typealias Entry = (report: Liaison_Intake_V1_Report, requestID: String, requestBytes: [UInt8])

    private struct Waiter {
        let id: UInt64
        let entry: Entry
        let continuation: CheckedContinuation<SubmitAnswer, any Error>
    }

    private struct State {
        var queue: [Waiter] = []
        var head = 0
        var running = 0
        var nextID: UInt64 = 0
        var queuedCount: Int { queue.count - head }
    }

    private let state = Mutex(State())
    private let limit: Int
    private let maxEntries: Int
    /// Most submissions waiting at once; one more is refused at once (RESOURCE_EXHAUSTED with a
    /// retry hint) rather than growing the queue without bound under overload.
    private let maxQueued: Int
    private let runAlone: @Sendable (Entry) async throws -> SubmitAnswer
    private let runShared: @Sendable ([Entry]) async throws -> [Result<SubmitAnswer, any Error>]
    /// Transactions that carried more than one submission, and the submissions they carried.
    private let shared = Atomic<Int>(0)
    private let sharedEntries = Atomic<Int>(0)

    /// `limit` transactions at most run at once; a shared one takes at most `maxEntries`; at
    /// most `maxQueued` submissions wait.
    init(limit: Int, maxEntries: Int, maxQueued: Int = 2000,
         runAlone: @escaping @Sendable (Entry) async throws -> SubmitAnswer,
         runShared: @escaping @Sendable ([Entry]) async throws -> [Result<SubmitAnswer, any Error>]) {
        self.limit = max(1, limit)
        self.maxEntries = max(1, maxEntries)
        self.maxQueued = max(1, maxQueued)
        self.runAlone = runAlone
        self.runShared = runShared
    }

    /// Transactions that carried more than one submission, and how many submissions they carried.
    var sharedTransactions: (transactions: Int, submissions: Int) {
        (shared.load(ordering: .relaxed), sharedEntries.load(ordering: .relaxed))
    }

    /// Submissions waiting in the queue, and transactions running.
    var load: (queued: Int, running: Int) {
        state.withLock { ($0.queuedCount, $0.running) }
    }

    /// Submits one report; returns once it is committed (or refused).
    func submit(_ entry: Entry) async throws -> SubmitAnswer {
        try Task.checkCancellation()
        // nil: run now, alone; else the id this submission queues under.
        let queuedID: UInt64?? = state.withLock { s in
            if s.running < limit, s.queuedCount == 0 {
                s.running += 1
                return .some(nil)
            }
            guard s.queuedCount < maxQueued else { return nil }
            s.nextID += 1
            return s.nextID
        }
        guard let queuedID else {
            throw PostgresError(.overloaded, message: "\(maxQueued) submissions already wait for a transaction")
        }
        guard let id = queuedID else {
            defer { release() }
            return try await runAlone(entry)
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<SubmitAnswer, any Error>) in
                let start = state.withLock { s in
                    s.queue.append(Waiter(id: id, entry: entry, continuation: continuation))
                    // A slot may have freed between the check above and now: take it.
                    guard s.running < limit else { return false }
                    s.running += 1
                    return true
                }
                if start { Task { await self.drain() } }
            }
        } onCancel: {
            let removed = state.withLock { s -> Waiter? in
                guard let i = s.queue[s.head...].firstIndex(where: { $0.id == id }) else { return nil }
                return s.queue.remove(at: i)
            }
            removed?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Ends a running submission: its slot goes to a drainer if anything is queued.
    private func release() {
        let drain = state.withLock { s in
            if s.queuedCount > 0 { return true }
            s.running -= 1
            return false
        }
        if drain { Task { await self.drain() } }
    }

    /// Runs the queued submissions, as many per transaction as are queued (up to `maxEntries`),
    /// until the queue is empty; then gives the slot back.
    private func drain() async {
        while true {
            let batch: [Waiter]? = state.withLock { s in
                guard s.queuedCount > 0 else {
                    s.running -= 1
                    return nil
                }
                let end = min(s.queue.count, s.head + maxEntries)
                let taken = Array(s.queue[s.head..<end])
                s.head = end
                if s.head == s.queue.count {
                    s.queue.removeAll(keepingCapacity: true)
                    s.head = 0
                } else if s.head >= 1024 {
                    s.queue.removeFirst(s.head)
                    s.head = 0
                }
                return taken
            }
            guard let batch else { return }
            if batch.count == 1 {
                let w = batch[0]
                do { w.continuation.resume(returning: try await runAlone(w.entry)) } catch {
                    w.continuation.resume(throwing: error)
                }
                continue
            }
            shared.add(1, ordering: .relaxed)
            sharedEntries.add(batch.count, ordering: .relaxed)
            do {
                let outcomes = try await runShared(batch.map(\.entry))
                for (w, outcome) in zip(batch, outcomes) { w.continuation.resume(with: outcome) }
            } catch {
                for w in batch { w.continuation.resume(throwing: error) }
            }
        }
    }
}
