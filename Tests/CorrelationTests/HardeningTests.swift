import Correlation
import Foundation
import GRPCCore
import GRPCProtobuf
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import SwiftProtobuf
import XCTest

/// Issue 20: extreme times from clients and from events. Before, DeclareIncident's
/// `impact_start_time` / `resolve_time` of ±9.3e12 s trapped in the storage conversion, and
/// GetIncidentTimeline's `bucket_width` / WatchIncident's `min_interval` of Int64.max seconds
/// trapped in `Int64(...)`; one ReportAccepted with such a time took its whole batch down.
final class HardeningTests: XCTestCase {
    static let tables = ["customers", "incidents", "links", "reports", "services", "outbox", "idempotency_keys", "inbox"]

    func rowCounts(_ pool: PostgresPool) async throws -> [Int] {
        var counts: [Int] = []
        for t in Self.tables { counts.append(try await pool.query("SELECT count(*) FROM \(t)").first!.decode(Int.self, 0)) }
        return counts
    }

    func testExtremeTimesAreRefusedAtTheEdgeAndWriteNothing() async throws {
        let stack = try await CorrelationStack()
        _ = try await stack.createService("checkout")
        let incident = try await stack.declare("Checkout down", services: ["services/checkout"])
        let before = try await rowCounts(stack.pool)

        for seconds: Int64 in [9_300_000_000_000, -9_300_000_000_000, .max, .min] {
            let t = Google_Protobuf_Timestamp(seconds: seconds, nanos: 0)
            var declare = Liaison_Correlation_V1_DeclareIncidentRequest()
            declare.incident.title = "x"
            declare.incident.services = ["services/checkout"]
            declare.incident.severity = .sev2
            declare.incident.impactStartTime = t
            declare.source = .monitoring
            declare.requestID = UUID().uuidString
            var e = await XCTAssertRPCError(.invalidArgument, try await stack.correlation.declareIncident(declare))
            XCTAssertEqual(try e?.unpackGoogleRPCStatus()?.details.compactMap(\.badRequest).flatMap(\.violations).map(\.field),
                           ["incident.impact_start_time"])
            declare.incident.impactStartTime = Google_Protobuf_Timestamp(date: Date())
            declare.incident.resolveTime = t
            e = await XCTAssertRPCError(.invalidArgument, try await stack.correlation.declareIncident(declare))
            XCTAssertEqual(try e?.unpackGoogleRPCStatus()?.details.compactMap(\.badRequest).flatMap(\.violations).map(\.field),
                           ["incident.resolve_time"])

            var timeline = Liaison_Correlation_V1_GetIncidentTimelineRequest()
            timeline.incident = incident.name
            timeline.bucketWidth = Google_Protobuf_Duration(seconds: seconds, nanos: 0)
            await XCTAssertRPCError(.invalidArgument, try await stack.correlation.getIncidentTimeline(timeline))
            timeline.clearBucketWidth()
            timeline.window.startTime = t
            await XCTAssertRPCError(.invalidArgument, try await stack.correlation.getIncidentTimeline(timeline))

            var watch = Liaison_Correlation_V1_WatchIncidentRequest()
            watch.incident = incident.name
            watch.minInterval = Google_Protobuf_Duration(seconds: seconds, nanos: 0)
            let api = stack.correlation
            await XCTAssertRPCError(.invalidArgument, try await api.watchIncident(watch) { response in
                for try await _ in response.messages { break }
            })
        }
        let after = try await rowCounts(stack.pool)
        XCTAssertEqual(before, after, "refused calls change nothing (\(Self.tables))")
        // Still serving, and the edge of the range is accepted.
        var timeline = Liaison_Correlation_V1_GetIncidentTimelineRequest()
        timeline.incident = incident.name
        timeline.bucketWidth = Google_Protobuf_Duration(seconds: RequestBounds.maxDurationSeconds, nanos: 0)
        _ = try await stack.correlation.getIncidentTimeline(timeline)
        await stack.shutdown()
    }

    /// A ReportAccepted whose receive time no timestamp column can hold is rejected alone, with
    /// its reason; the good events of its batch are applied.
    func testAnEventWithAnImpossibleTimeIsRejectedAloneNotItsBatch() async throws {
        let stack = try await CorrelationStack()
        var events: [Liaison_Events_V1_EventEnvelope] = []
        for i in 0..<10 {
            events.append(try CorrelationStack.customerEvent("c\(i)", CorrelationStack.attributes(i), version: 1))
        }
        events.insert(try CorrelationStack.reportEvent("bad", customer: "c1", CorrelationStack.attributes(1),
                                                       at: Date(timeIntervalSince1970: 9.3e12)), at: 5)
        events.append(try CorrelationStack.reportEvent("good", customer: "c2", CorrelationStack.attributes(2)))
        var request = Liaison_Events_V1_DeliverEventsRequest()
        request.events = events
        let response = try await stack.sink.deliverEvents(request)
        XCTAssertEqual([response.applied, response.duplicates, response.rejected], [11, 0, 1])
        XCTAssertEqual(response.outcomes.map(\.kind), Array(repeating: .applied, count: 5) + [.rejected] + Array(repeating: .applied, count: 6))
        XCTAssertFalse(response.outcomes[5].reason.isEmpty)
        let reports = try await stack.pool.query("SELECT count(*) FROM reports").first!.decode(Int.self, 0)
        XCTAssertEqual(reports, 1, "the good report only")
        // Redelivery: the applied ones are duplicates, the bad one is rejected again.
        let again = try await stack.sink.deliverEvents(request)
        XCTAssertEqual([again.applied, again.duplicates, again.rejected], [0, 11, 1])
        await stack.shutdown()
    }

    /// Issue 20: WatchIncident streams share one revision feed per replica and are bounded:
    /// past `maxWatchers` a stream is refused with RESOURCE_EXHAUSTED; every open stream still
    /// gets its update when the incident changes.
    func testWatchersShareOneFeedAndAreBounded() async throws {
        let stack = try await CorrelationStack { $0.maxWatchers = 2 }
        _ = try await stack.createService("checkout")
        try await stack.seedCustomers(60)
        let incident = try await stack.declare("Checkout down", services: ["services/checkout"])
        let api = stack.correlation
        var request = Liaison_Correlation_V1_WatchIncidentRequest()
        request.incident = incident.name
        request.minInterval = Google_Protobuf_Duration(seconds: 1, nanos: 0)
        let watch = request
        let initial = Probe()
        let watchers = (0..<2).map { _ in
            Task { () -> [Int64] in
                try await api.watchIncident(watch) { response in
                    var sequences: [Int64] = []
                    for try await snapshot in response.messages {
                        sequences.append(snapshot.sequence)
                        initial.bump()
                        if snapshot.incident.linkedReportCount > 0 { break }
                    }
                    return sequences
                }
            }
        }
        try await initial.wait(atLeast: 2)
        let refused = await XCTAssertRPCError(.resourceExhausted, try await api.watchIncident(watch) { response in
            for try await _ in response.messages { break }
        })
        XCTAssertNotNil(try refused?.unpackGoogleRPCStatus()?.details.compactMap(\.retryInfo).first)
        try await stack.deliver([try CorrelationStack.reportEvent("w1", customer: "c0", CorrelationStack.attributes(0))])
        try await stack.link(incident.name, ["w1"])
        for w in watchers {
            let sequences = try await w.value
            XCTAssertEqual(sequences.count, 2, "the initial snapshot and the one after the link: \(sequences)")
            XCTAssertLessThan(sequences[0], sequences[1])
        }
        await stack.shutdown()
    }
}

/// Counts events from concurrent tasks.
final class Probe: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func bump() { lock.lock(); n += 1; lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return n }
    func wait(atLeast value: Int, seconds: Double = 20) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while count < value, Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertGreaterThanOrEqual(count, value)
    }
}
