-- What intake learns from correlation's events (Sources/Intake/Handlers/CorrelationEvents.swift).
--
-- `reports.incidents` and `cases.incidents` (0002) hold the confirmed links; the tables below keep
-- the newest link / incident version applied, so an event delivered late (after a newer one for
-- the same link or incident) changes nothing.

-- One row per (report, incident): the newest state of correlation's link between them.
-- No foreign key to reports: an event about an unknown report is recorded, not refused.
CREATE TABLE report_links (
    report_id        text        NOT NULL,   -- reports/{id} without the collection
    incident         text        NOT NULL,   -- incidents/{id}
    link             text        NOT NULL,   -- incidents/{id}/links/{id}
    confirmed        boolean     NOT NULL,   -- true after ReportLinked, false after ReportUnlinked
    link_version     bigint      NOT NULL,   -- from Link.etag (correlation's row version); 0 if unknown
    link_update_time timestamptz NOT NULL,   -- Link.update_time
    apply_time       timestamptz NOT NULL,
    PRIMARY KEY (report_id, incident)
);

-- The newest known state of each incident intake has heard of.
CREATE TABLE incident_states (
    incident     text        PRIMARY KEY,   -- incidents/{id}
    state        integer     NOT NULL,      -- liaison.correlation.v1.IncidentState number
    version      bigint      NOT NULL,      -- EventHeader.aggregate_version; 0 if unknown
    update_time  timestamptz NOT NULL,      -- Incident.update_time
    resolve_time timestamptz,
    apply_time   timestamptz NOT NULL
);

-- Cases linked to an incident (`incidents @> ARRAY[...]` when an incident is resolved).
CREATE INDEX cases_incidents ON cases USING gin (incidents);
