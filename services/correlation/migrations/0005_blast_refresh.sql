-- The incident revision (incidents.revision plus its counter shards') at which the background
-- refresher last computed the default blast radius; it recomputes (and publishes
-- BlastRadiusChanged when the AFFECTED segments move) whenever an open incident's revision passes it.
ALTER TABLE incidents ADD COLUMN blast_checked_revision bigint NOT NULL DEFAULT 0;
