-- Linking without a per-incident hot row: an incident's linked_reports, affected_customers and
-- revision are its columns plus the sums of its counter shards; every linking transaction locks
-- one shard's counter row (the first one free, SKIP LOCKED) instead of the incident row, and keeps
-- to that shard for its segment counts and buckets. Readers sum the shards. Every incident gets its
-- 8 counter rows when declared.
CREATE TABLE incident_counters (
    incident_id        uuid     NOT NULL,
    shard              smallint NOT NULL,
    linked_reports     bigint   NOT NULL DEFAULT 0,
    affected_customers bigint   NOT NULL DEFAULT 0,
    revision           bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (incident_id, shard)
);
INSERT INTO incident_counters (incident_id, shard) SELECT id, s FROM incidents, generate_series(0, 7) s;
CREATE FUNCTION incident_linked_reports(uuid) RETURNS bigint LANGUAGE sql STABLE AS
    $$ SELECT coalesce(sum(linked_reports), 0)::bigint FROM incident_counters WHERE incident_id = $1 $$;
CREATE FUNCTION incident_affected_customers(uuid) RETURNS bigint LANGUAGE sql STABLE AS
    $$ SELECT coalesce(sum(affected_customers), 0)::bigint FROM incident_counters WHERE incident_id = $1 $$;
CREATE FUNCTION incident_shard_revisions(uuid) RETURNS bigint LANGUAGE sql STABLE AS
    $$ SELECT coalesce(sum(revision), 0)::bigint FROM incident_counters WHERE incident_id = $1 $$;

ALTER TABLE incident_buckets ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE incident_buckets DROP CONSTRAINT incident_buckets_pkey;
ALTER TABLE incident_buckets ADD PRIMARY KEY (incident_id, minute, key, shard);
