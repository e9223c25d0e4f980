-- wa-watchdog schema, migration 0005, PostgreSQL only: provider-wide rules over
-- several replicas. Each replica publishes, with its lease round, how many
-- of each provider's sessions it watches and how many of them are
-- unreachable; the outage rule of a provider runs over the sum of the
-- unexpired rows (a dead replica's row expires with its heartbeat).
-- Times are the database's clock (unix ms).
CREATE TABLE provider_counts (
    replica    TEXT NOT NULL,
    provider   TEXT NOT NULL,
    total      BIGINT NOT NULL CHECK (total >= 0),
    failing    BIGINT NOT NULL CHECK (failing >= 0),
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (replica, provider)
);
