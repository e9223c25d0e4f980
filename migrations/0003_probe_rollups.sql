-- wa-watchdog schema, version 3: probe rollups, so the file is bounded by
-- the number of sessions (and their failures), not by time.
--
-- Full probe rows are kept for the last probes of each session (what the
-- status page and the API show) and for every probe that was not delivered
-- (within daemon.retention). Older delivered probes are counted here, per
-- session, outcome and time bucket: an hour while the bucket is recent, a
-- day once it is older (see the store's retention for the horizon and the
-- size arithmetic). Transitions and remediations are never rolled up.
--
-- WITHOUT ROWID: the primary key is the only index the table needs, so a
-- row is stored once (about 60 bytes), not once in the table and again in
-- an index. Idempotent (IF NOT EXISTS) like the rest of the schema's
-- additions; sqlx runs each migration once and records it.
CREATE TABLE IF NOT EXISTS probe_rollups (
    provider       TEXT    NOT NULL,
    session        TEXT    NOT NULL,
    -- unix ms of the bucket's start; a multiple of span_ms.
    bucket_start   INTEGER NOT NULL,
    -- 3600000 (an hour) or 86400000 (a day, UTC).
    span_ms        INTEGER NOT NULL CHECK (span_ms > 0),
    outcome        TEXT    NOT NULL CHECK (outcome <> ''),
    probes         INTEGER NOT NULL CHECK (probes > 0),
    latency_sum_ms INTEGER NOT NULL CHECK (latency_sum_ms >= 0),
    latency_max_ms INTEGER NOT NULL CHECK (latency_max_ms >= 0),
    PRIMARY KEY (provider, session, bucket_start, span_ms, outcome),
    FOREIGN KEY (provider, session) REFERENCES sessions (provider, session)
) WITHOUT ROWID;
