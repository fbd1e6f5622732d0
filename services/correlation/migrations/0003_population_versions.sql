-- Version of the population baseline per shard, bumped in the same transaction as every change of
-- the shard's population counters, so a replica can keep the decoded baseline in memory and reuse
-- it while the versions it reads are unchanged. The row at shard -1 holds a random epoch: two
-- databases (or a rebuilt one) never share a version token.
CREATE TABLE population_versions (
    shard   smallint PRIMARY KEY,
    version bigint   NOT NULL
);
INSERT INTO population_versions (shard, version) VALUES (-1, (random() * 9e18)::bigint);
