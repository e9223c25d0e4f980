-- wa-watchdog schema, version 3, PostgreSQL only: work sharing between
-- replicas (src/lease.rs has the rules). SQLite has no such tables: one
-- daemon owns everything there.
--
-- One row per shard, created by the first replica. `token` grows by one on
-- every claim and never goes back: a replica proves it still holds a shard
-- by presenting the token it claimed with, in the same transaction as the
-- write it guards (a restart intent), so a replica that lost the shard
-- (paused, partitioned) cannot write after another took it over.
-- Times are the database's clock (unix ms), never a replica's.
CREATE TABLE leases (
    shard      BIGINT PRIMARY KEY CHECK (shard >= 0),
    owner      TEXT,
    expires_at BIGINT NOT NULL DEFAULT 0,
    token      BIGINT NOT NULL DEFAULT 0 CHECK (token >= 0)
);

-- Replicas alive: each renews its row every round; the live count sets the
-- fair share of shards.
CREATE TABLE replicas (
    name       TEXT PRIMARY KEY CHECK (name <> ''),
    expires_at BIGINT NOT NULL
);
