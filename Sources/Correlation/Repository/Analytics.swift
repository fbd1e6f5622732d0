import CorrelationDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import SwiftProtobuf

/// Blast radius and timeline from the live aggregates (never from the raw reports).
enum Analytics {
    struct BlastOptions {
        var options = BlastRadiusOptions()
        var dimensions: Set<SegmentDimension>? = nil
        var window: (Date, Date)? = nil
        var isDefault = true
    }

    static func blastOptions(_ r: Liaison_Correlation_V1_GetBlastRadiusRequest, field: String = "") throws -> BlastOptions {
        var o = BlastOptions()
        var violations: [APIError.FieldViolation] = []
        if r.alpha != 0 {
            if r.alpha > 0 && r.alpha <= 0.5 { o.options.alpha = r.alpha; o.isDefault = false }
            else { violations.append(.init(field + "alpha", "must be in (0, 0.5]")) }
        }
        if r.maxDepth != 0 {
            if (1...3).contains(r.maxDepth) {
                o.options.searchCombinations = r.maxDepth >= 2
                o.isDefault = o.isDefault && r.maxDepth >= 2
            } else { violations.append(.init(field + "max_depth", "must be between 1 and 3")) }
        }
        if r.correction != .unspecified {
            o.options.correction = Convert.correction(r.correction)
            o.isDefault = false
        }
        if r.minObserved != 0 {
            if r.minObserved > 0 { o.options.minObserved = Int(r.minObserved); o.isDefault = false }
            else { violations.append(.init(field + "min_observed", "must be positive")) }
        }
        if r.minLift != 0 {
            if r.minLift >= 1 { o.options.minLift = r.minLift; o.isDefault = false }
            else { violations.append(.init(field + "min_lift", "must be at least 1")) }
        }
        if !r.dimensions.isEmpty {
            var dims = Set<SegmentDimension>()
            for (i, d) in r.dimensions.enumerated() {
                if let dim = SegmentDimension(rawValue: d.rawValue), d != .unspecified { dims.insert(dim) }
                else { violations.append(.init(field + "dimensions[\(i)]", "unknown dimension")) }
            }
            o.dimensions = dims
            o.isDefault = false
        }
        if r.hasWindow {
            let start = r.window.hasStartTime ? r.window.startTime.date : Convert.openStart
            let end = r.window.hasEndTime ? r.window.endTime.date : Date.distantFuture
            if end <= start { violations.append(.init(field + "window", "end_time must be after start_time")) }
            o.window = (start, end)
            o.isDefault = false
        }
        if !violations.isEmpty { throw APIError.invalidArgument(domain: domain, violations) }
        return o
    }

    static func filter(_ counts: SegmentCounts, _ dims: Set<SegmentDimension>?) -> SegmentCounts {
        guard let dims else { return counts }
        return counts.filter { entry in entry.key.conditions.allSatisfy { dims.contains($0.dimension) } }
    }

    /// Computes the blast radius. Reads (GetBlastRadius, WatchIncident) only compute: the answer
    /// carries the last recorded `revision`. With `persist` (the ``BlastRadiusRefresher``, within
    /// a second of a change) and default options it also records the AFFECTED keys (for the link
    /// scorer) and bumps `BlastRadius.revision` when they change, publishing BlastRadiusChanged.
    static func blastRadius(
        _ c: PostgresConnection, incident: Store.IncidentRow, options o: BlastOptions, settings: CorrelationSettings,
        requireData: Bool, persist: Bool = false
    ) throws -> Liaison_Correlation_V1_BlastRadius {
        let baseline = try Store.cachedPopulation(c)
        let (population, populationTotal) = (baseline.counts, baseline.total)
        let (reporters, reportersTotal): (SegmentCounts, Int)
        if let w = o.window {
            (reporters, reportersTotal) = try Store.reporters(c, incident.id, from: w.0, to: w.1, keys: baseline.keys)
        } else {
            (reporters, reportersTotal) = try Store.reporters(c, incident.id, keys: baseline.keys)
        }
        if requireData && reportersTotal == 0 {
            throw APIError.failedPrecondition(domain: domain, type: "INSUFFICIENT_DATA", subject: incident.incident.name,
                                              "no confirmed links in the window")
        }
        let now = try Store.now(c)
        let result = BlastRadiusEngine.compute(
            population: filter(population, o.dimensions), populationTotal: populationTotal,
            reporters: filter(reporters, o.dimensions), reportersTotal: reportersTotal, options: o.options)
        var revision = incident.blastRevision
        if o.isDefault && persist {
            let keys = result.affected.map(\.segment.description).sorted()
            if keys != incident.affectedKeys.sorted() {
                let row = try c.query("""
                    UPDATE incidents SET affected_keys = $2::text[], blast_revision = blast_revision + 1
                    WHERE id = $1 AND affected_keys IS DISTINCT FROM $2::text[] RETURNING blast_revision
                    """, [incident.id, TextArray(keys)]).first
                if let row {
                    revision = try row.decode(Int64.self, 0)
                    let old = Set(incident.affectedKeys), new = Set(keys)
                    var radius = message(result, incident: incident, window: o.window, now: now, revision: revision)
                    radius.revision = revision
                    let snapshot = radius
                    try Store.publish(c, settings, { h in
                        var e = Liaison_Correlation_V1_BlastRadiusChanged()
                        e.header = h
                        e.incident = incident.incident.name
                        e.blastRadius = snapshot
                        e.addedSegments = new.subtracting(old).sorted().compactMap(SegmentKey.init(parsing:)).map(Convert.segment)
                        e.removedSegments = old.subtracting(new).sorted().compactMap(SegmentKey.init(parsing:)).map(Convert.segment)
                        return e
                    }, aggregate: incident.incident.name, version: revision)
                }
            }
        }
        return message(result, incident: incident, window: o.window, now: now, revision: revision)
    }

    static func message(_ result: BlastRadiusResult, incident: Store.IncidentRow, window: (Date, Date)?, now: Date, revision: Int64)
        -> Liaison_Correlation_V1_BlastRadius {
        var out = Liaison_Correlation_V1_BlastRadius()
        out.incident = incident.incident.name
        out.computeTime = Convert.timestamp(now)
        var w = Liaison_Common_V1_TimeWindow()
        w.startTime = window.map { $0.0 == Convert.openStart ? incident.incident.impactStartTime : Convert.timestamp($0.0) } ?? incident.incident.impactStartTime
        w.endTime = window.map { $0.1 == .distantFuture ? Convert.timestamp(now) : Convert.timestamp($0.1) } ?? Convert.timestamp(now)
        out.window = w
        out.reportingCustomers = Int64(result.reportingCustomers)
        out.population = Int64(result.population)
        out.baseRate = result.baseRate
        out.alpha = result.alpha
        out.correction = Convert.correction(result.correction)
        out.testedSegments = Int32(result.testedSegments)
        out.affected = result.affected.map(Convert.entry)
        out.perDimension = result.perDimension.map(Convert.entry)
        out.combinations = result.combinations.map(Convert.entry)
        out.unaffectedLargeSegments = result.unaffectedLargeSegments.map(Convert.entry)
        out.summary = result.summary
        out.revision = revision
        return out
    }

    // MARK: Timeline

    struct MinuteRow {
        var minute: Date
        var key: String
        var reports: Int
        var customers: Int
    }

    static func minutes(_ c: PostgresConnection, _ id: UUID, from: Date, to: Date) throws -> [MinuteRow] {
        try c.query("""
            SELECT minute, key, sum(reports)::bigint, sum(customers)::bigint FROM incident_buckets
            WHERE incident_id = $1 AND minute >= $2 AND minute < $3 GROUP BY minute, key
            HAVING sum(reports) <> 0 OR sum(customers) <> 0
            """, [id, from, to]).rows.map {
            MinuteRow(minute: try $0.decode(Date.self, 0), key: try $0.decode(String.self, 1),
                      reports: try $0.decode(Int.self, 2), customers: try $0.decode(Int.self, 3))
        }
    }

    static func timeline(
        _ c: PostgresConnection, incident: Store.IncidentRow, width: TimeInterval, window: (Date, Date)?,
        breakdown: SegmentDimension, settings: CorrelationSettings
    ) throws -> Liaison_Correlation_V1_IncidentTimeline {
        let now = try Store.now(c)
        let start = window?.0 ?? floor60(incident.incident.impactStartTime.date)
        let end = min(window?.1 ?? now, now.addingTimeInterval(60))
        guard end > start else {
            throw APIError.invalidArgument(domain: domain, field: "window", "end_time must be after start_time")
        }
        let count = Int(ceil(end.timeIntervalSince(start) / width))
        if count > 2000 { throw APIError.invalidArgument(domain: domain, field: "bucket_width", "more than 2000 buckets") }
        let rows = try minutes(c, incident.id, from: start, to: end)
        struct Acc { var reports = 0; var customers = 0 }
        var totals = [Acc](repeating: Acc(), count: max(count, 1))
        var perKey = [[String: Acc]](repeating: [:], count: max(count, 1))
        for r in rows {
            let i = min(max(0, Int(r.minute.timeIntervalSince(start) / width)), totals.count - 1)
            if r.key.isEmpty {
                totals[i].reports += r.reports
                totals[i].customers += r.customers
            } else {
                perKey[i][r.key, default: Acc()].reports += r.reports
                perKey[i][r.key, default: Acc()].customers += r.customers
            }
        }
        var out = Liaison_Correlation_V1_IncidentTimeline()
        out.incident = incident.incident.name
        out.bucketWidth = Google_Protobuf_Duration(seconds: Int64(width), nanos: 0)
        out.breakdown = Liaison_Common_V1_Dimension(rawValue: breakdown.rawValue) ?? .region
        var trendBuckets: [TimeBucketCounts] = []
        var spreadBuckets: [TimeBucketCounts] = []
        for i in totals.indices {
            let bStart = start.addingTimeInterval(Double(i) * width)
            var b = Liaison_Correlation_V1_TimelineBucket()
            b.window.startTime = Convert.timestamp(bStart)
            b.window.endTime = Convert.timestamp(bStart.addingTimeInterval(width))
            b.total.reports = Int64(totals[i].reports)
            b.total.customers = Int64(totals[i].customers)
            var segReports: [SegmentKey: Int] = [:]
            var regionCustomers: [SegmentKey: Int] = [:]
            for (text, acc) in perKey[i].sorted(by: { $0.key < $1.key }) {
                guard let key = SegmentKey(parsing: text) else { continue }
                if key.first.dimension == breakdown {
                    var sc = Liaison_Correlation_V1_SegmentCount()
                    sc.segment = Convert.segment(key)
                    sc.reports = Int64(acc.reports)
                    sc.customers = Int64(acc.customers)
                    b.segments.append(sc)
                    segReports[key] = acc.reports
                }
                if key.first.dimension == .region { regionCustomers[key] = acc.customers }
            }
            out.buckets.append(b)
            trendBuckets.append(TimeBucketCounts(start: bStart, total: totals[i].reports, segments: segReports))
            spreadBuckets.append(TimeBucketCounts(start: bStart, total: totals[i].customers, segments: regionCustomers))
        }
        let mitigations = incident.incident.mitigations
        let result = TrendAnalyzer.analyze(
            buckets: trendBuckets, bucketWidth: width,
            mitigationTimes: mitigations.map { $0.applyTime.date }, now: now)
        out.trend = Convert.trend(result.overall)
        out.segmentTrends = result.segments.map { s in
            var t = Liaison_Correlation_V1_SegmentTrend()
            t.segment = Convert.segment(s.segment)
            t.trend = Convert.trend(s.trend)
            return t
        }
        let sortedMitigations = mitigations.sorted { $0.applyTime.date < $1.applyTime.date }
        out.mitigationEffects = zip(sortedMitigations, result.mitigations).map { m, e in
            var x = Liaison_Correlation_V1_MitigationEffect()
            x.mitigation = m
            x.rateBefore = e.rateBefore
            x.rateAfter = e.rateAfter
            x.rateRatio = e.rateRatio.isFinite ? e.rateRatio : 0
            x.pValue = e.pValue
            switch e.verdict {
            case .effective: x.verdict = .effective
            case .noEffect: x.verdict = .noEffect
            case .worsened: x.verdict = .worsened
            case .tooEarly: x.verdict = .tooEarly
            }
            x.comparisonWindow = Google_Protobuf_Duration(seconds: Int64(e.comparisonWindow), nanos: 0)
            return x
        }
        // Spread: when each region first became AFFECTED (sliding window of 6 buckets).
        let (population, populationTotal) = try Store.population(c)
        let first = SpreadDetector.firstSignificantTimes(
            buckets: spreadBuckets, bucketWidth: width, population: population.filter { $0.key.depth == 1 && $0.key.first.dimension == .region },
            populationTotal: populationTotal, windowBuckets: 6)
        var firstReport: [SegmentKey: Date] = [:]
        for b in spreadBuckets { for (k, n) in b.segments where n > 0 && firstReport[k] == nil { firstReport[k] = b.start } }
        out.spread = SpreadDetector.detect(firstSignificant: first, firstReport: firstReport, neighbours: settings.neighbours,
                                           minDelay: width).map { s in
            var x = Liaison_Correlation_V1_SegmentSpread()
            x.segment = Convert.segment(s.segment)
            if let f = s.firstReportTime { x.firstReportTime = Convert.timestamp(f) }
            x.affectedTime = Convert.timestamp(s.affectedTime)
            if let a = s.adjacentTo { x.adjacentTo = Convert.segment(a) }
            return x
        }
        return out
    }

    static func floor60(_ d: Date) -> Date { Date(timeIntervalSince1970: floor(d.timeIntervalSince1970 / 60) * 60) }
}
