-- intake schema; platform tables (outbox, idempotency_keys, inbox) come from the runtime.
--
-- Each resource keeps its queryable fields as columns (filters, keyset paging, indexes) and its
-- full input as the serialized protobuf message (`data`), so the API round-trips every field.
-- Contacts (PII) live in their own column and are read only for CUSTOMER_VIEW_FULL.

CREATE TABLE customers (
    id                 text        PRIMARY KEY,
    display_name       text        NOT NULL,
    account_number     text        NOT NULL,
    account_partition  text        NOT NULL,
    region             text        NOT NULL,
    country            text        NOT NULL,
    tier               text        NOT NULL,
    white_glove        boolean     NOT NULL,
    features           text[]      NOT NULL,
    platforms          text[]      NOT NULL,   -- PLATFORM_* names
    client_versions    text[]      NOT NULL,
    owning_agent       text        NOT NULL,
    state              text        NOT NULL,
    source_update_time timestamptz,
    data               bytea       NOT NULL,   -- liaison.intake.v1.Customer, input fields without contacts
    contacts           bytea       NOT NULL,   -- liaison.intake.v1.Customer holding only `contacts`
    version            bigint      NOT NULL DEFAULT 1,
    create_time        timestamptz NOT NULL,
    update_time        timestamptz NOT NULL
);
CREATE INDEX customers_update_time ON customers (update_time, id);
CREATE INDEX customers_display_name ON customers (display_name, id);
CREATE INDEX customers_region ON customers (region);

CREATE TABLE cases (
    id                   text        PRIMARY KEY,
    customer_id          text        NOT NULL REFERENCES customers (id),
    title                text        NOT NULL,
    state                text        NOT NULL,
    owner                text        NOT NULL,
    symptom              text        NOT NULL,
    outcome              integer     NOT NULL DEFAULT 0,
    outcome_note         text        NOT NULL DEFAULT '',
    merged_into          text        NOT NULL DEFAULT '',
    incidents            text[]      NOT NULL DEFAULT '{}',
    customer_notify_time timestamptz,
    close_time           timestamptz,
    version              bigint      NOT NULL DEFAULT 1,
    create_time          timestamptz NOT NULL,
    update_time          timestamptz NOT NULL
);
CREATE INDEX cases_customer_open ON cases (customer_id) WHERE state = 'OPEN';
CREATE INDEX cases_update_time ON cases (update_time, id);
CREATE INDEX cases_create_time ON cases (create_time, id);

CREATE TABLE case_history (
    case_id  text        NOT NULL REFERENCES cases (id),
    seq      integer     NOT NULL,
    action   integer     NOT NULL,
    state    integer     NOT NULL,
    actor    text        NOT NULL,
    time     timestamptz NOT NULL,
    related  text[]      NOT NULL,
    note     text        NOT NULL,
    PRIMARY KEY (case_id, seq)
);

CREATE TABLE reports (
    id                  text        PRIMARY KEY,
    customer_id         text        NOT NULL REFERENCES customers (id),
    case_id             text        NOT NULL REFERENCES cases (id),
    channel             text        NOT NULL,   -- REPORT_CHANNEL_* name
    symptom             text        NOT NULL,   -- SYMPTOM_KIND_* name (resolved)
    agent               text        NOT NULL,
    service_hint        text        NOT NULL,
    ticket_system       text,
    ticket_id           text,
    duplicate           boolean     NOT NULL,
    fingerprint         bytea       NOT NULL,   -- MinHash (ReportFingerprint.encode)
    incidents           text[]      NOT NULL DEFAULT '{}',
    snapshot_region     text        NOT NULL,
    snapshot_country    text        NOT NULL,
    snapshot_tier       text        NOT NULL,
    snapshot_partition  text        NOT NULL,
    snapshot_white_glove boolean    NOT NULL,
    data                bytea       NOT NULL,   -- liaison.intake.v1.Report as accepted
    receive_time        timestamptz NOT NULL,
    create_time         timestamptz NOT NULL,
    update_time         timestamptz NOT NULL
);
CREATE INDEX reports_receive_time ON reports (receive_time, id);
CREATE INDEX reports_create_time ON reports (create_time, id);
CREATE INDEX reports_customer ON reports (customer_id, receive_time);
CREATE INDEX reports_case ON reports (case_id, receive_time, id);
CREATE INDEX reports_ticket ON reports (customer_id, ticket_system, ticket_id) WHERE ticket_id IS NOT NULL;
CREATE INDEX reports_incidents ON reports USING gin (incidents);
