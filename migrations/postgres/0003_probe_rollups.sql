-- wa-watchdog schema, version 3, PostgreSQL dialect: probe rollups (see
-- migrations/0003_probe_rollups.sql for why). The same table without
-- SQLite's WITHOUT ROWID.
CREATE TABLE IF NOT EXISTS probe_rollups (
    provider       TEXT    NOT NULL,
    session        TEXT    NOT NULL,
    bucket_start   BIGINT  NOT NULL,
    span_ms        BIGINT  NOT NULL CHECK (span_ms > 0),
    outcome        TEXT    NOT NULL CHECK (outcome <> ''),
    probes         BIGINT  NOT NULL CHECK (probes > 0),
    latency_sum_ms BIGINT  NOT NULL CHECK (latency_sum_ms >= 0),
    latency_max_ms BIGINT  NOT NULL CHECK (latency_max_ms >= 0),
    PRIMARY KEY (provider, session, bucket_start, span_ms, outcome),
    FOREIGN KEY (provider, session) REFERENCES sessions (provider, session)
);
