// Incident links and incident states learned from correlation's events (migration 0003). Each
// function runs inside the EventSink's transaction (the inbox has already claimed the event id) and
// is idempotent on its own: re-applying an event, or applying an event older than the one already
// applied for the same link or incident, changes nothing.
//
// Lock order, shared with the case mutations (which lock cases before their reports):
// incident_states row -> case row -> report row. The link appliers take the incident row FOR SHARE
// and the resolution applier FOR UPDATE, so a link and the resolution of its incident never miss
// each other: whichever commits second sees the first.
import IntakeDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import SwiftProtobuf

/// The version of one link or incident event, to order events for the same link or incident.
struct EventVersion: Sendable, Equatable {
    /// Correlation's row version (Link.etag, EventHeader.aggregate_version); 0 when unknown.
    var version: Int64
    /// The resource's update time in microseconds since 1970 (PostgreSQL's precision); 0 when
    /// unknown.
    var updateMicros: Int64

    init(version: Int64, updateTime: Date?) {
        self.version = max(version, 0)
        self.updateMicros = updateTime.map(\.postgresMicros) ?? 0
    }

    /// The stored time of a version (0 micros is stored as the epoch).
    var updateTime: Date { Date(timeIntervalSince1970: Double(updateMicros) / 1_000_000) }

    /// Whether `self` is strictly newer than `stored`. Versions decide when both are known (they
    /// are incremented under correlation's row lock, so they never go backwards); otherwise the
    /// update times do. Equal means the same change: not newer. Nothing is older than a stored
    /// placeholder (version 0 at the epoch).
    func isNewer(than stored: EventVersion) -> Bool {
        if stored.version == 0 && stored.updateMicros == 0 { return true }
        if version > 0 && stored.version > 0 && version != stored.version { return version > stored.version }
        return updateMicros > stored.updateMicros
    }

    /// The row version inside correlation's etag (`W/"<version>"`). Correlation's links created in
    /// the same call as their event carry no etag yet: that is version 1. Anything unparseable is
    /// 0 (unknown: the update time decides).
    static func linkVersion(etag: String) -> Int64 {
        if etag.isEmpty { return 1 }
        return Etag.version(of: etag).map { $0 > 0 ? $0 : 0 } ?? 0
    }
}

extension IntakeRepository {
    /// `incidents/{id}` of a link name `incidents/{id}/links/{link}`, or nil.
    static func incidentOfLink(_ link: String) -> String? {
        let parts = link.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "incidents", !parts[1].isEmpty, parts[2] == "links", !parts[3].isEmpty
        else { return nil }
        return "incidents/\(parts[1])"
    }

    /// Makes sure `incident_states` has a row for `incident` (a placeholder that any real event is
    /// newer than) and locks it: FOR SHARE for link changes, FOR UPDATE for state changes.
    /// Returns (state, version) of the stored row.
    static func lockIncident(_ c: PostgresConnection, _ incident: String, exclusive: Bool) throws
        -> (state: Int, version: EventVersion)
    {
        try c.query("""
            INSERT INTO incident_states (incident, state, version, update_time, apply_time)
            VALUES ($1, 0, 0, 'epoch', now()) ON CONFLICT (incident) DO NOTHING
            """, [incident])
        let row = try c.query(
            "SELECT state, version, update_time FROM incident_states WHERE incident = $1 FOR \(exclusive ? "UPDATE" : "SHARE")",
            [incident]).first!
        return (try row.decode(Int.self, 0),
                EventVersion(version: try row.decode(Int64.self, 1), updateTime: try row.decode(Date.self, 2)))
    }

    static let resolvedState = Liaison_Correlation_V1_IncidentState.resolved.rawValue

    /// Applies a ReportLinked (`confirmed` true) or ReportUnlinked (`confirmed` false) event.
    ///
    /// The report gains or loses the incident. Its case gains the incident on a link, and loses it
    /// on an unlink only when no other report of the case is still linked to it. Report and case
    /// update times (and the case etag) change only when their `incidents` do. An OPEN case linked
    /// to an incident intake already knows as RESOLVED moves to AWAITING_CUSTOMER_NOTICE, as if the
    /// resolution had arrived after the link.
    static func applyLink(_ c: PostgresConnection, _ link: Liaison_Correlation_V1_Link, confirmed: Bool,
                          actor: String, settings: IntakeSettings, now: Date) throws {
        guard let incident = incidentOfLink(link.name), let reportID = ResourceName.reportId(link.report) else {
            return  // not a link correlation would send; nothing to attach it to
        }
        let event = EventVersion(version: EventVersion.linkVersion(etag: link.etag),
                                 updateTime: link.hasUpdateTime ? link.updateTime.date : nil)
        let incidentState = try lockIncident(c, incident, exclusive: false).state

        // Lock the report's case, then the report, and check the report did not move meanwhile.
        var located: (record: CaseRecord, version: Int64, incidents: [String])?
        for _ in 0..<8 {
            guard let caseID = try c.query("SELECT case_id FROM reports WHERE id = $1", [reportID]).first?
                .decode(String.self, 0) else { break }
            guard let (record, version) = try loadCase(c, id: caseID, lock: true) else { break }
            guard let row = try c.query("SELECT case_id, incidents FROM reports WHERE id = $1 FOR UPDATE", [reportID]).first
            else { break }
            if try row.decode(String.self, 0) == caseID {
                located = (record, version, try row.decode(TextArray.self, 1).values)
                break
            }
        }

        // The link's newest state wins; an older or repeated event stops here.
        if let stored = try c.query(
            "SELECT link_version, link_update_time FROM report_links WHERE report_id = $1 AND incident = $2 FOR UPDATE",
            [reportID, incident]).first {
            let storedVersion = EventVersion(version: try stored.decode(Int64.self, 0), updateTime: try stored.decode(Date.self, 1))
            guard event.isNewer(than: storedVersion) else { return }
        }
        try c.query("""
            INSERT INTO report_links (report_id, incident, link, confirmed, link_version, link_update_time, apply_time)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (report_id, incident) DO UPDATE SET link = EXCLUDED.link, confirmed = EXCLUDED.confirmed,
                link_version = EXCLUDED.link_version, link_update_time = EXCLUDED.link_update_time,
                apply_time = EXCLUDED.apply_time
            """, [reportID, incident, link.name, confirmed, event.version, event.updateTime, now])

        guard let (current, version, reportIncidents) = located else { return }  // unknown report: recorded only

        // The report.
        var nextIncidents = reportIncidents.filter { $0 != incident }
        if confirmed { nextIncidents.append(incident) }
        if nextIncidents != reportIncidents {
            try c.query("UPDATE reports SET incidents = $2, update_time = $3 WHERE id = $1",
                        [reportID, TextArray(nextIncidents), now])
        }

        // The case: linked to the incident while any of its reports is.
        let caseID = ResourceName.caseId(current.name)!
        var anyLinked = confirmed
        if !anyLinked {
            anyLinked = try c.query("SELECT 1 FROM reports WHERE case_id = $1 AND $2 = ANY(incidents) LIMIT 1",
                                    [caseID, incident]).first != nil
        }
        var next = current
        if anyLinked && !next.incidents.contains(incident) { next.incidents.append(incident) }
        if !anyLinked { next.incidents.removeAll { $0 == incident } }
        var awaiting = false
        if confirmed && incidentState == resolvedState && next.state == .open {
            next = try CaseRules.awaitCustomerNotice(next, incident: incident, actor: actor, at: now)
            awaiting = true
        }
        guard next.incidents != current.incidents || awaiting else { return }
        next.updateTime = now
        try saveCase(c, old: current, new: next, version: version + 1)
        if awaiting {
            try publishAwaitingNotice(c, next, version: version + 1, incident: incident, settings: settings, now: now)
        }
    }

    /// Applies an event carrying an incident (declared, status changed, updated, postmortem):
    /// records its newest state; when the incident becomes RESOLVED, every OPEN case linked to it
    /// moves to AWAITING_CUSTOMER_NOTICE (history entry, CaseAwaitingCustomerNotice event).
    /// `aggregateVersion` is the event header's (correlation's incident version; 0 if unknown).
    static func applyIncident(_ c: PostgresConnection, _ incident: Liaison_Correlation_V1_Incident, aggregateVersion: Int64,
                              actor: String, settings: IntakeSettings, now: Date) throws {
        guard incident.name.hasPrefix("incidents/"), incident.name.count > 10 else { return }
        let event = EventVersion(version: aggregateVersion,
                                 updateTime: incident.hasUpdateTime ? incident.updateTime.date : nil)
        let stored = try lockIncident(c, incident.name, exclusive: true)
        guard event.isNewer(than: stored.version) else { return }
        let state = incident.state.rawValue
        try c.query("""
            UPDATE incident_states SET state = $2, version = $3, update_time = $4, resolve_time = $5, apply_time = $6
            WHERE incident = $1
            """, [incident.name, state, event.version, event.updateTime,
                  incident.hasResolveTime ? incident.resolveTime.date : nil as Date?, now])
        guard state == resolvedState, stored.state != resolvedState else { return }

        let open = try c.query(
            "SELECT id FROM cases WHERE incidents @> ARRAY[$1]::text[] AND state = $2 ORDER BY id",
            [incident.name, CaseState.open.protoName]).rows.map { try $0.decode(String.self, 0) }
        for id in open {
            guard let (current, version) = try loadCase(c, id: id, lock: true), current.state == .open,
                  current.incidents.contains(incident.name) else { continue }
            let next = try CaseRules.awaitCustomerNotice(current, incident: incident.name, actor: actor, at: now)
            try saveCase(c, old: current, new: next, version: version + 1)
            try publishAwaitingNotice(c, next, version: version + 1, incident: incident.name, settings: settings, now: now)
        }
    }

    /// Queues CaseAwaitingCustomerNotice (to the case event destinations).
    static func publishAwaitingNotice(_ c: PostgresConnection, _ record: CaseRecord, version: Int64, incident: String,
                                      settings: IntakeSettings, now: Date) throws {
        var e = Liaison_Intake_V1_CaseAwaitingCustomerNotice()
        let (h, id) = header(aggregate: record.name, version: version, requestID: "", at: now)
        e.header = h
        e.case = Mapping.proto(record, version: version)
        e.incident = incident
        try Events.publish(c, e, eventID: id, to: settings.caseEventDestinations)
    }

    /// `Case.incidents` derived from the case's reports: `current` (in its order) restricted to the
    /// incidents some report links, then the reports' other incidents in report order.
    static func caseIncidents(_ c: PostgresConnection, reports: [String], current: [String]) throws -> [String] {
        let ids = reports.compactMap(ResourceName.reportId)
        var byReport: [String: [String]] = [:]
        for row in try c.query("SELECT id, incidents FROM reports WHERE id = ANY($1)", [TextArray(ids)]).rows {
            byReport[try row.decode(String.self, 0)] = try row.decode(TextArray.self, 1).values
        }
        let linked = ids.flatMap { byReport[$0] ?? [] }
        var out = current.filter { linked.contains($0) }
        for i in linked where !out.contains(i) { out.append(i) }
        return out
    }

    /// The first of `incidents` that intake knows as RESOLVED, if any (CloseCase then waits for
    /// the customer to be told).
    static func resolvedIncident(_ c: PostgresConnection, _ incidents: [String]) throws -> String? {
        guard !incidents.isEmpty else { return nil }
        let resolved = Set(try c.query("SELECT incident FROM incident_states WHERE incident = ANY($1) AND state = $2",
                                       [TextArray(incidents), resolvedState]).rows.map { try $0.decode(String.self, 0) })
        return incidents.first { resolved.contains($0) }
    }
}
