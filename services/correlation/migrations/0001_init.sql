-- correlation schema starts here; platform tables (outbox, idempotency_keys, inbox) come from the runtime.
--
-- Resources are stored as their protobuf message (`body`, deterministic encoding) beside the
-- columns that queries filter, order or join on; `version` is the optimistic-concurrency counter
-- behind the API etag.

-- Technical services catalogue.
CREATE TABLE services (
    id          text        PRIMARY KEY,
    body        bytea       NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    version     bigint      NOT NULL DEFAULT 1
);
-- Aliases (and ids) in lower case, unique across the catalogue.
CREATE TABLE service_aliases (
    alias      text PRIMARY KEY,
    service_id text NOT NULL REFERENCES services (id) ON DELETE CASCADE
);

-- Incidents. `revision` is the change counter shared by all replicas (WatchIncident sequence):
-- bumped by every state change and every change of the linked reports.
CREATE TABLE incidents (
    id            uuid        PRIMARY KEY,
    body          bytea       NOT NULL,
    state         int         NOT NULL,
    services      text[]      NOT NULL,
    ext_system    text,
    ext_id        text,
    impact_start  timestamptz NOT NULL,
    create_time   timestamptz NOT NULL,
    version       bigint      NOT NULL DEFAULT 1,
    revision      bigint      NOT NULL DEFAULT 1,
    linked_reports   bigint   NOT NULL DEFAULT 0,
    affected_customers bigint NOT NULL DEFAULT 0,
    -- 1-D segment keys of the last computed blast radius (AFFECTED), used by the link scorer.
    affected_keys text[]      NOT NULL DEFAULT '{}',
    -- BlastRadius.revision: bumped when the set of AFFECTED segments changes.
    blast_revision bigint     NOT NULL DEFAULT 0,
    UNIQUE (ext_system, ext_id)
);
CREATE INDEX incidents_open ON incidents (state) WHERE state <> 4;
CREATE INDEX incidents_created ON incidents (create_time DESC, id DESC);

-- Customers known from intake's CustomerUpserted events, with the segment keys they count in.
CREATE TABLE customers (
    id          text        PRIMARY KEY,
    keys        text[]      NOT NULL,
    active      boolean     NOT NULL,
    update_time timestamptz NOT NULL,
    aggregate_version bigint NOT NULL DEFAULT 0
);

-- Population baseline: customers per segment key (1-D and 2-D keys, text form), '' = total.
-- Counters are split over shards (customer hash) so that concurrent updates rarely wait.
CREATE TABLE population (
    key   text     NOT NULL,
    shard smallint NOT NULL,
    count bigint   NOT NULL,
    PRIMARY KEY (key, shard)
);

-- Reports from intake's ReportAccepted events with their customer attribute snapshot.
CREATE TABLE reports (
    id            text        PRIMARY KEY,
    customer_id   text        NOT NULL,
    case_name     text        NOT NULL DEFAULT '',
    receive_time  timestamptz NOT NULL,
    symptom       int         NOT NULL,
    service_hint  text        NOT NULL DEFAULT '',
    text          text        NOT NULL DEFAULT '',
    snapshot      bytea       NOT NULL,
    keys          text[]      NOT NULL,   -- 1-D and 2-D segment keys of the snapshot
    keys1         text[]      NOT NULL,   -- 1-D keys only (emerging-issue scan)
    confirmed_links int       NOT NULL DEFAULT 0,
    emerging_issue uuid
);
CREATE INDEX reports_unlinked ON reports (receive_time) WHERE confirmed_links = 0;

-- Report-to-incident links.
CREATE TABLE links (
    id          uuid        PRIMARY KEY,
    incident_id uuid        NOT NULL REFERENCES incidents (id),
    report_id   text        NOT NULL REFERENCES reports (id),
    state       int         NOT NULL,
    score       double precision NOT NULL,
    body        bytea       NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    version     bigint      NOT NULL DEFAULT 1,
    UNIQUE (incident_id, report_id)
);
CREATE INDEX links_incident ON links (incident_id, create_time, id);
CREATE INDEX links_report ON links (report_id);

-- Live aggregates, maintained in the transaction that confirms or removes a link.
-- Distinct reporting customers per incident: a customer counts while it has >= 1 confirmed link;
-- its segment keys and bucket come from its first report in the incident.
CREATE TABLE incident_customers (
    incident_id  uuid        NOT NULL,
    customer_id  text        NOT NULL,
    links        int         NOT NULL,
    first_time   timestamptz NOT NULL,
    keys         text[]      NOT NULL,
    PRIMARY KEY (incident_id, customer_id)
);
-- Reporting customers per segment key (1-D and 2-D, '' = total), sharded counters.
CREATE TABLE incident_segments (
    incident_id uuid     NOT NULL,
    key         text     NOT NULL,
    shard       smallint NOT NULL,
    count       bigint   NOT NULL,
    PRIMARY KEY (incident_id, key, shard)
);
-- Per-minute buckets: reports (every confirmed report) and customers (first report of each
-- customer) per 1-D key, '' = total.
CREATE TABLE incident_buckets (
    incident_id uuid        NOT NULL,
    minute      timestamptz NOT NULL,
    key         text        NOT NULL,
    reports     bigint      NOT NULL,
    customers   bigint      NOT NULL,
    PRIMARY KEY (incident_id, minute, key)
);

-- Emerging issues; at most one OPEN issue per cluster key.
CREATE TABLE emerging_issues (
    id           uuid        PRIMARY KEY,
    cluster_key  text        NOT NULL,
    state        int         NOT NULL,
    body         bytea       NOT NULL,
    adjusted_p   double precision NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    version      bigint      NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX emerging_open_key ON emerging_issues (cluster_key) WHERE state = 1;

-- Leases of singleton background jobs shared by the replicas.
CREATE TABLE job_leases (
    name        text        PRIMARY KEY,
    owner       text        NOT NULL,
    lease_until timestamptz NOT NULL,
    runs        bigint      NOT NULL DEFAULT 0
);
