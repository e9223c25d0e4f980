-- wa-watchdog schema, version 1.
--
-- Conventions (DESIGN.md "Contracts -> Database"):
--   * every timestamp is INTEGER unix milliseconds, UTC;
--   * states, outcomes, actions and results are snake_case TEXT;
--   * the store does not know the state machine, so there is deliberately no
--     CHECK listing the allowed states/outcomes/results: adding a state must
--     not need a table rebuild (SQLite cannot alter a CHECK in place). The
--     CHECKs below only reject values that are wrong under any vocabulary;
--   * free text (reasons, details) is capped to 500 characters by the store
--     before it gets here;
--   * history tables reference `sessions`, which is never deleted (a session
--     that goes away is retired), so history outlives the session's activity.
--
-- Kept close to portable SQL so a PostgreSQL port needs only the id columns
-- (INTEGER PRIMARY KEY -> BIGINT GENERATED ALWAYS AS IDENTITY) and
-- streak_has_desync (INTEGER -> BOOLEAN) changed.

CREATE TABLE sessions (
    provider             TEXT    NOT NULL CHECK (provider <> ''),
    session              TEXT    NOT NULL CHECK (session <> ''),
    state                TEXT    NOT NULL CHECK (state <> ''),
    since                INTEGER NOT NULL,
    state_reason         TEXT    NOT NULL DEFAULT '',
    consecutive_failures INTEGER NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    streak_has_desync    INTEGER NOT NULL DEFAULT 0 CHECK (streak_has_desync IN (0, 1)),
    first_failure_at     INTEGER,
    last_success_at      INTEGER,
    last_outcome         TEXT,
    last_probe_at        INTEGER,
    next_probe_at        INTEGER,
    not_ready_since      INTEGER,
    backoff_step         INTEGER NOT NULL DEFAULT 0 CHECK (backoff_step >= 0),
    next_restart_at      INTEGER,
    -- JSON array of unix ms: the restarts that count against max_restarts.
    restart_history      TEXT    NOT NULL DEFAULT '[]',
    restart_started_at   INTEGER,
    healthy_since        INTEGER,
    paused_until         INTEGER,
    chat_id              TEXT,
    -- NULL while the session is tracked; set when it disappears from the
    -- config or the provider's list. History rows stay.
    retired_at           INTEGER,
    updated_at           INTEGER NOT NULL,
    PRIMARY KEY (provider, session)
);

CREATE TABLE probes (
    id          INTEGER PRIMARY KEY,
    provider    TEXT    NOT NULL,
    session     TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind <> ''),
    outcome     TEXT    NOT NULL CHECK (outcome <> ''),
    http_status INTEGER,
    latency_ms  INTEGER NOT NULL CHECK (latency_ms >= 0),
    detail      TEXT    NOT NULL DEFAULT '',
    FOREIGN KEY (provider, session) REFERENCES sessions (provider, session)
);
-- "recent probes of one session" (newest first: SQLite walks it backwards);
-- also serves the foreign key.
CREATE INDEX probes_session_at ON probes (provider, session, at);
-- retention: "probes before T".
CREATE INDEX probes_at ON probes (at);

CREATE TABLE transitions (
    id         INTEGER PRIMARY KEY,
    provider   TEXT    NOT NULL,
    session    TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    from_state TEXT    NOT NULL CHECK (from_state <> ''),
    to_state   TEXT    NOT NULL CHECK (to_state <> ''),
    reason     TEXT    NOT NULL DEFAULT '',
    FOREIGN KEY (provider, session) REFERENCES sessions (provider, session)
);
CREATE INDEX transitions_session_at ON transitions (provider, session, at);

CREATE TABLE remediations (
    id          INTEGER PRIMARY KEY,
    provider    TEXT    NOT NULL,
    session     TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    action      TEXT    NOT NULL CHECK (action <> ''),
    reason      TEXT    NOT NULL DEFAULT '',
    result      TEXT    NOT NULL CHECK (result <> ''),
    detail      TEXT    NOT NULL DEFAULT '',
    finished_at INTEGER,
    -- finished_at - started_at, clamped at 0 if the wall clock stepped back.
    duration_ms INTEGER CHECK (duration_ms >= 0),
    -- first failure -> healthy again, for the recovery histogram.
    recovery_ms INTEGER CHECK (recovery_ms >= 0),
    FOREIGN KEY (provider, session) REFERENCES sessions (provider, session)
);
CREATE INDEX remediations_session_started ON remediations (provider, session, started_at);
-- restart budgets after a daemon restart: "remediations of provider since T".
CREATE INDEX remediations_provider_started ON remediations (provider, started_at);
