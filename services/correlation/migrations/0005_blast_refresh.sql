-- The incident revision at which the background refresher last computed the default blast radius
-- (it recomputes, and publishes BlastRadiusChanged when the AFFECTED segments move, whenever an
-- open incident's revision passes it).
ALTER TABLE incidents ADD COLUMN blast_checked_revision bigint NOT NULL DEFAULT 0;
CREATE INDEX incidents_blast_pending ON incidents (id) WHERE state IN (1, 2) AND revision <> blast_checked_revision;
