-- The sla schema (0001 was the placeholder the service ran on before its handlers).
--
-- Resources are stored as their protobuf message (`body`, deterministic encoding) beside the
-- columns that queries filter, order or join on; `version` is the optimistic-concurrency counter
-- behind the API etag. Times are timestamptz (UTC instants); calendar work in a contract's time
-- zone happens in the domain (SLADomain), never in SQL.

-- Customers, from intake's CustomerUpserted (applied once, newer aggregate versions only). The
-- segment columns hold the canonical values of liaison.common.v1.Dimension so that a blast-radius
-- segment is a plain WHERE clause.
CREATE TABLE customers (
    id          text    PRIMARY KEY,
    attrs       bytea   NOT NULL,
    tier        int     NOT NULL,
    white_glove boolean NOT NULL,
    region      text    NOT NULL,
    country     text    NOT NULL,
    partition   text    NOT NULL,
    platforms   text[]  NOT NULL,
    versions    text[]  NOT NULL,
    minors      text[]  NOT NULL,
    features    text[]  NOT NULL,
    version     bigint  NOT NULL
);
CREATE INDEX customers_region ON customers (region);
CREATE INDEX customers_tier ON customers (tier);

-- Contracts. Scope is a customer or a tier; ACTIVE and RETIRED contracts both govern the periods
-- inside their effective window (a retired contract keeps its past periods).
CREATE TABLE contracts (
    id              text        PRIMARY KEY,
    body            bytea       NOT NULL,
    state           int         NOT NULL,
    customer_id     text,
    tier            int,
    services        text[]      NOT NULL,
    effective_start timestamptz,
    effective_end   timestamptz,
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL,
    version         bigint      NOT NULL DEFAULT 1,
    CHECK ((customer_id IS NULL) <> (tier IS NULL))
);
CREATE INDEX contracts_customer ON contracts (customer_id, effective_start) WHERE customer_id IS NOT NULL;
CREATE INDEX contracts_tier ON contracts (tier, effective_start) WHERE tier IS NOT NULL;
CREATE INDEX contracts_update ON contracts (update_time, id);

-- Incidents as correlation publishes them (IncidentDeclared / StatusChanged / Updated), and the
-- AFFECTED segments of their last blast radius (BlastRadiusChanged, by blast_revision).
CREATE TABLE incidents (
    id             uuid        PRIMARY KEY,
    severity       int         NOT NULL,
    state          int         NOT NULL,
    services       text[]      NOT NULL,
    impact_start   timestamptz NOT NULL,
    -- mitigation, else resolution; NULL while the incident is open
    end_time       timestamptz,
    declare_time   timestamptz NOT NULL,
    version        bigint      NOT NULL,
    segments       text[]      NOT NULL DEFAULT '{}', -- AFFECTED segments, each as protobuf JSON
    blast_revision bigint      NOT NULL DEFAULT 0,
    -- the severity recommendation last published (SeverityRecommended), "<level>:<direction>"
    recommended    text        NOT NULL DEFAULT ''
);

-- The impact ledger. Event-driven lines are unique per (customer, service, incident, source), so a
-- replayed event finds its line; MANUAL lines (source 3) are free. `corrected` marks a line a
-- person changed: later events no longer move its interval.
CREATE TABLE impacts (
    id               uuid        PRIMARY KEY,
    customer_id      text        NOT NULL,
    service          text        NOT NULL,
    incident_id      uuid,
    start_time       timestamptz NOT NULL,
    end_time         timestamptz,
    severity         int         NOT NULL,
    symptom          int         NOT NULL DEFAULT 0,
    source           int         NOT NULL,
    excluded         boolean     NOT NULL DEFAULT false,
    exclusion_reason text        NOT NULL DEFAULT '',
    author           text        NOT NULL,
    note             text        NOT NULL DEFAULT '',
    corrected        boolean     NOT NULL DEFAULT false,
    create_time      timestamptz NOT NULL DEFAULT now(),
    update_time      timestamptz NOT NULL DEFAULT now(),
    version          bigint      NOT NULL DEFAULT 1,
    CHECK (end_time IS NULL OR end_time >= start_time)
);
CREATE UNIQUE INDEX impacts_event_line ON impacts (customer_id, service, incident_id, source) WHERE source <> 3;
CREATE INDEX impacts_customer ON impacts (customer_id, start_time, id);
CREATE INDEX impacts_start ON impacts (start_time, id);
CREATE INDEX impacts_incident ON impacts (incident_id) WHERE incident_id IS NOT NULL;

-- Work for the evaluator: customers whose ledger or contract changed, incidents whose impact set
-- changed, and the next instant at which a customer's open impact crosses a line (a warning
-- threshold, the exhaustion horizon, a breach).
CREATE TABLE dirty_customers (customer_id text PRIMARY KEY);
CREATE TABLE dirty_incidents (incident_id uuid PRIMARY KEY);
CREATE TABLE next_checks (
    customer_id text        PRIMARY KEY,
    at          timestamptz NOT NULL
);
CREATE INDEX next_checks_at ON next_checks (at);

-- The last computed budget status per customer (ListBudgetStatuses).
CREATE TABLE budget_status (
    id           text        PRIMARY KEY,  -- the customer id
    contract_id  text        NOT NULL,
    state        int         NOT NULL,
    services     text[]      NOT NULL,
    body         bytea       NOT NULL,
    compute_time timestamptz NOT NULL
);
CREATE INDEX budget_status_state ON budget_status (state DESC, id DESC);

-- Warnings sent, once per line per period.
CREATE TABLE warnings (
    customer_id  text        NOT NULL,
    contract_id  text        NOT NULL,
    objective    text        NOT NULL,
    period_start timestamptz NOT NULL,
    kind         int         NOT NULL,
    threshold    int         NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, contract_id, objective, period_start, kind, threshold)
);

-- Customers at risk per open incident: one row per customer, its soonest breach if the incident
-- goes on (recomputed by the evaluator when the incident's impacts change).
CREATE TABLE at_risk (
    incident_id    uuid        NOT NULL,
    id             text        NOT NULL,  -- the customer id (keyset id)
    service        text        NOT NULL,
    objective_kind int         NOT NULL,
    breach_time    timestamptz NOT NULL,
    remaining_ms   bigint      NOT NULL,
    exposure_minor bigint      NOT NULL,
    currency       text        NOT NULL,
    evidence       int         NOT NULL,
    contract_id    text        NOT NULL,
    tier           int         NOT NULL,
    white_glove    boolean     NOT NULL,
    attrs          bytea       NOT NULL,
    PRIMARY KEY (incident_id, id)
);
CREATE INDEX at_risk_order ON at_risk (incident_id, breach_time, id);

-- Breaches, recorded once per (customer, contract, objective, window).
CREATE TABLE breaches (
    id             uuid        PRIMARY KEY,
    customer_id    text        NOT NULL,
    contract_id    text        NOT NULL,
    service        text        NOT NULL,
    objective_kind int         NOT NULL,
    objective      text        NOT NULL,
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL,
    occur_time     timestamptz NOT NULL,
    incidents      text[]      NOT NULL,
    body           bytea       NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, contract_id, objective, window_start)
);
CREATE INDEX breaches_occur ON breaches (occur_time, id);

-- Credits: one per breach, plus adjustment entries (adjusts = the original) when a correction
-- changes what is owed. Never updated in amount.
CREATE TABLE credits (
    id           uuid        PRIMARY KEY,
    customer_id  text        NOT NULL,
    breach_id    uuid        NOT NULL REFERENCES breaches (id),
    adjusts      uuid        REFERENCES credits (id),
    amount_minor bigint      NOT NULL,
    currency     text        NOT NULL,
    state        int         NOT NULL,
    body         bytea       NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now(),
    version      bigint      NOT NULL DEFAULT 1
);
CREATE INDEX credits_breach ON credits (breach_id);
CREATE INDEX credits_create ON credits (create_time, id);

-- Report links seen (ReportLinked / ReportUnlinked), by link version, so a late older event does
-- not undo a newer one.
CREATE TABLE links (
    id      text   PRIMARY KEY,
    version bigint NOT NULL,
    state   int    NOT NULL
);
