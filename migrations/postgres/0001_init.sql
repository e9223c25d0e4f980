-- wa-watchdog schema, version 1, PostgreSQL dialect.
--
-- The same tables, columns, constraints and indexes as SQLite's
-- migrations/0001_init.sql (read that file for the conventions), with the
-- differences the dialect needs and nothing else:
--   * every integer column is BIGINT, so rows decode into the same i64
--     fields on both backends;
--   * ids are BIGINT GENERATED ALWAYS AS IDENTITY (SQLite: INTEGER PRIMARY KEY);
--   * streak_has_desync stays a 0/1 integer, as on SQLite, so both backends
--     bind and read it the same way.

CREATE TABLE sessions (
    provider             TEXT    NOT NULL CHECK (provider <> ''),
    session              TEXT    NOT NULL CHECK (session <> ''),
    state                TEXT    NOT NULL CHECK (state <> ''),
    since                BIGINT  NOT NULL,
    state_reason         TEXT    NOT NULL DEFAULT '',
    consecutive_failures BIGINT  NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    streak_has_desync    BIGINT  NOT NULL DEFAULT 0 CHECK (streak_has_desync IN (0, 1)),
    first_failure_at     BIGINT,
    last_success_at      BIGINT,
    last_outcome         TEXT,
    last_probe_at        BIGINT,
    next_probe_at        BIGINT,
    not_ready_since      BIGINT,
    backoff_step         BIGINT  NOT NULL DEFAULT 0 CHECK (backoff_step >= 0),
    next_restart_at      BIGINT,
    restart_history      TEXT    NOT NULL DEFAULT '[]',
    restart_started_at   BIGINT,
    healthy_since        BIGINT,
    paused_until         BIGINT,
    chat_id              TEXT,
    retired_at           BIGINT,
    updated_at           BIGINT  NOT NULL,
    PRIMARY KEY (provider, session)
);

CREATE TABLE probes (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider    TEXT    NOT NULL,
    session     TEXT    NOT NULL,
    at          BIGINT  NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind <> ''),
    outcome     TEXT    NOT NULL CHECK (outcome <> ''),
    http_status BIGINT,
    latency_ms  BIGINT  NOT NULL CHECK (latency_ms >= 0),
    detail      TEXT    NOT NULL DEFAULT '',
    FOREIGN KEY (provider, session) REFERENCES sessions (provider, session)
);
CREATE INDEX probes_session_at ON probes (provider, session, at);
CREATE INDEX probes_at ON probes (at);

CREATE TABLE transitions (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider   TEXT    NOT NULL,
    session    TEXT    NOT NULL,
    at         BIGINT  NOT NULL,
    from_state TEXT    NOT NULL CHECK (from_state <> ''),
    to_state   TEXT    NOT NULL CHECK (to_state <> ''),
    reason     TEXT    NOT NULL DEFAULT '',
    FOREIGN KEY (provider, session) REFERENCES sessions (provider, session)
);
CREATE INDEX transitions_session_at ON transitions (provider, session, at);

CREATE TABLE remediations (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider    TEXT    NOT NULL,
    session     TEXT    NOT NULL,
    started_at  BIGINT  NOT NULL,
    action      TEXT    NOT NULL CHECK (action <> ''),
    reason      TEXT    NOT NULL DEFAULT '',
    result      TEXT    NOT NULL CHECK (result <> ''),
    detail      TEXT    NOT NULL DEFAULT '',
    finished_at BIGINT,
    duration_ms BIGINT CHECK (duration_ms >= 0),
    recovery_ms BIGINT CHECK (recovery_ms >= 0),
    FOREIGN KEY (provider, session) REFERENCES sessions (provider, session)
);
CREATE INDEX remediations_session_started ON remediations (provider, session, started_at);
CREATE INDEX remediations_provider_started ON remediations (provider, started_at);
