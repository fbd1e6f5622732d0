// CorrelationService: blast radius, timeline and WatchIncident (one revision feed per replica).
import CorrelationDomain
import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf

extension CorrelationHandler {
    // MARK: Blast radius, timeline, watch

    public func getBlastRadius(request: Liaison_Correlation_V1_GetBlastRadiusRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_BlastRadius {
        let id = try Store.incidentID(request.incident, field: "incident")
        let options = try Analytics.blastOptions(request)
        let settings = self.settings
        return try await run {
            try await pool.transaction { c in
                let incident = try Store.incident(c, id)
                return try Analytics.blastRadius(c, incident: incident, options: options, settings: settings, requireData: true)
            }
        }
    }

    public func getIncidentTimeline(request: Liaison_Correlation_V1_GetIncidentTimelineRequest, context: ServerContext) async throws -> Liaison_Correlation_V1_IncidentTimeline {
        let id = try Store.incidentID(request.incident, field: "incident")
        var width: TimeInterval = 300
        if request.hasBucketWidth {
            width = Double(request.bucketWidth.seconds) + Double(request.bucketWidth.nanos) / 1e9
            if width < 60 { throw APIError.invalidArgument(domain: domain, field: "bucket_width", "must be at least 1 minute") }
        }
        var window: (Date, Date)? = nil
        if request.hasWindow {
            let start = request.window.hasStartTime ? request.window.startTime.date : Convert.openStart
            let end = request.window.hasEndTime ? request.window.endTime.date : Date()
            window = (start, end)
        }
        var breakdown = SegmentDimension.region
        if request.breakdown != .unspecified {
            guard let d = SegmentDimension(rawValue: request.breakdown.rawValue) else {
                throw APIError.invalidArgument(domain: domain, field: "breakdown", "unknown dimension")
            }
            breakdown = d
        }
        let settings = self.settings
        let w = window, b = breakdown, bw = width
        return try await read { c in
            let incident = try Store.incident(c, id)
            var win = w
            if let x = win, x.0 == Convert.openStart { win = (incident.incident.impactStartTime.date, x.1) }
            return try Analytics.timeline(c, incident: incident, width: bw, window: win, breakdown: b, settings: settings)
        }
    }

    public func watchIncident(
        request: Liaison_Correlation_V1_WatchIncidentRequest,
        response: RPCWriter<Liaison_Correlation_V1_WatchIncidentResponse>, context: ServerContext
    ) async throws {
        let id = try Store.incidentID(request.incident, field: "incident")
        var minInterval: Duration = .seconds(10)
        if request.hasMinInterval {
            let s = Double(request.minInterval.seconds) + Double(request.minInterval.nanos) / 1e9
            if s < 1 { throw APIError.invalidArgument(domain: domain, field: "min_interval", "must be at least 1 s") }
            minInterval = .milliseconds(Int64(s * 1000))
        }
        var width: TimeInterval = 300
        if request.hasBucketWidth {
            width = Double(request.bucketWidth.seconds)
            if width < 60 { throw APIError.invalidArgument(domain: domain, field: "bucket_width", "must be at least 1 minute") }
        }
        let options = try Analytics.blastOptions(request.blastRadiusOptions, field: "blast_radius_options.")
        let settings = self.settings
        var lastSequence = request.resumeAfterSequence
        var lastSent: ContinuousClock.Instant? = nil
        var previous: Liaison_Correlation_V1_WatchIncidentResponse? = nil
        let bw = width
        // The first look reads the incident (NOT_FOUND for an unknown one); after it, the
        // replica's shared feed wakes this stream when the revision moves.
        _ = try await read { c in try Store.incident(c, id) }
        do {
            try await feed.watching(id) {
                var first = true
                while true {
                    try Task.checkCancellation()
                    let revision: Int64
                    if first {
                        revision = try await read { c in try Store.incident(c, id).revision }
                        first = false
                    } else {
                        revision = try await feed.revision(of: id, after: lastSequence)
                        if revision == Int64.min { _ = try await read { c in try Store.incident(c, id) } }  // deleted: NOT_FOUND
                    }
                    if revision <= lastSequence {
                        // Resumed with nothing new: the client already has this snapshot.
                        let state = try await read { c in try Store.incident(c, id).incident.state }
                        if state == .resolved { return }
                        continue
                    }
                    if let lastSent, ContinuousClock.now - lastSent < minInterval {
                        try await Task.sleep(until: lastSent + minInterval, clock: .continuous)
                    }
                    let snap = try await run {
                        try await pool.transaction { c -> Liaison_Correlation_V1_WatchIncidentResponse in
                            let incident = try Store.incident(c, id)
                            var s = Liaison_Correlation_V1_WatchIncidentResponse()
                            s.sequence = incident.revision
                            s.incident = incident.incident
                            s.snapshotTime = Convert.timestamp(try Store.now(c))
                            if incident.incident.linkedReportCount > 0 {
                                s.blastRadius = try Analytics.blastRadius(c, incident: incident, options: options, settings: settings, requireData: false)
                            }
                            let timeline = try Analytics.timeline(c, incident: incident, width: bw, window: nil, breakdown: .region, settings: settings)
                            s.trend = timeline.trend
                            return s
                        }
                    }
                    var s = snap
                    if let p = previous {
                        let oldAffected = Set(p.blastRadius.affected.map { try! $0.segment.serializedBytes() as [UInt8] })
                        let newAffected = s.blastRadius.affected.filter { !oldAffected.contains(try! $0.segment.serializedBytes() as [UInt8]) }
                        if p.incident.state != s.incident.state || p.incident.severity != s.incident.severity || p.incident.etag != s.incident.etag {
                            s.changes.append(.incident)
                        }
                        if p.blastRadius.affected != s.blastRadius.affected || p.blastRadius.reportingCustomers != s.blastRadius.reportingCustomers {
                            s.changes.append(.blastRadius)
                        }
                        if p.trend.verdict != s.trend.verdict { s.changes.append(.trend) }
                        if !newAffected.isEmpty {
                            s.changes.append(.spread)
                            s.newSpread = newAffected.map { e in
                                var x = Liaison_Correlation_V1_SegmentSpread()
                                x.segment = e.segment
                                x.affectedTime = s.snapshotTime
                                return x
                            }
                        }
                    } else {
                        s.changes = [.initial]
                    }
                    try await response.write(s)
                    previous = s
                    lastSequence = s.sequence
                    lastSent = .now
                    if s.incident.state == .resolved { return }
                }
            }
        } catch is IncidentRevisionFeed.Full {
            throw APIError.overloaded(domain: domain, "too many WatchIncident streams on this replica; retry later", retryAfter: .seconds(5))
        }
    }
}
