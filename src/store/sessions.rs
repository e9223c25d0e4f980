//! Queries on `sessions`: one row per (provider, session), the state the
//! daemon resumes from.

use crate::clock::Timestamp;

use super::records::{SessionRow, cap_text};
use super::write::Write;
use super::{SessionRecord, Store, StoreError, query_error};

/// The columns of `sessions`, in [`SessionRow`]'s order. A macro so it can be
/// spliced into literal SQL with `concat!` (sqlx only takes `'static` SQL).
macro_rules! session_columns {
    () => {
        "provider, session, state, since, state_reason, consecutive_failures, \
         streak_has_desync, first_failure_at, last_success_at, last_outcome, \
         last_probe_at, next_probe_at, not_ready_since, backoff_step, next_restart_at, \
         restart_history, restart_started_at, healthy_since, paused_until, chat_id, \
         retired_at, updated_at"
    };
}

/// Records per transaction in [`Store::save_sessions`].
pub const SAVE_BATCH: usize = 500;

/// `rec`'s restart history as stored (a JSON array of unix ms).
pub(super) fn history_json(rec: &SessionRecord) -> Result<String, StoreError> {
    serde_json::to_string(&rec.machine.restart_history).map_err(|e| {
        // Serialising a Vec of integers cannot fail; keep the path total anyway.
        StoreError::Corrupt {
            row: format!("sessions ({}, {})", rec.provider, rec.session),
            detail: format!("restart_history does not serialise: {e}"),
        }
    })
}

/// The upsert of one session record (see [`Store::save_session`]), with its
/// restart history already serialised. A macro so that one text builds the
/// query for either backend (the executor decides which).
macro_rules! upsert {
    ($rec:expr, $history:expr) => {{
        let rec: &SessionRecord = $rec;
        sqlx::query(concat!(
            "INSERT INTO sessions (",
            session_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17, $18, $19, $20, NULL, $21) \
                 ON CONFLICT (provider, session) DO UPDATE SET \
                 state = excluded.state, since = excluded.since, \
                 state_reason = excluded.state_reason, \
                 consecutive_failures = excluded.consecutive_failures, \
                 streak_has_desync = excluded.streak_has_desync, \
                 first_failure_at = excluded.first_failure_at, \
                 last_success_at = excluded.last_success_at, \
                 last_outcome = excluded.last_outcome, \
                 last_probe_at = excluded.last_probe_at, \
                 next_probe_at = excluded.next_probe_at, \
                 not_ready_since = excluded.not_ready_since, \
                 backoff_step = excluded.backoff_step, \
                 next_restart_at = excluded.next_restart_at, \
                 restart_history = excluded.restart_history, \
                 restart_started_at = excluded.restart_started_at, \
                 healthy_since = excluded.healthy_since, \
                 paused_until = excluded.paused_until, \
                 chat_id = excluded.chat_id, \
                 retired_at = NULL, \
                 updated_at = excluded.updated_at"
        ))
        .bind(rec.provider.clone())
        .bind(rec.session.clone())
        .bind(rec.machine.state.clone())
        .bind(rec.machine.since.as_millis())
        .bind(cap_text(&rec.machine.reason).to_string())
        .bind(i64::from(rec.machine.consecutive_failures))
        // 0/1 on both backends (the column is an integer on both).
        .bind(i64::from(rec.machine.streak_has_desync))
        .bind(rec.machine.first_failure_at.map(Timestamp::as_millis))
        .bind(rec.machine.last_success_at.map(Timestamp::as_millis))
        .bind(rec.machine.last_outcome.clone())
        .bind(rec.machine.last_probe_at.map(Timestamp::as_millis))
        .bind(rec.next_probe_at.map(Timestamp::as_millis))
        .bind(rec.machine.not_ready_since.map(Timestamp::as_millis))
        .bind(i64::from(rec.machine.backoff_step))
        .bind(rec.machine.next_restart_at.map(Timestamp::as_millis))
        .bind($history)
        .bind(rec.machine.restart_started_at.map(Timestamp::as_millis))
        .bind(rec.machine.healthy_since.map(Timestamp::as_millis))
        .bind(rec.machine.paused_until.map(Timestamp::as_millis))
        .bind(rec.chat_id.clone())
        .bind(rec.updated_at.as_millis())
    }};
}

impl Store {
    /// Inserts or replaces the record of `(rec.provider, rec.session)`.
    /// Saving makes the session active: `retired_at` is cleared whatever
    /// `rec.retired_at` says (use [`Store::retire_session`] to retire).
    /// `state_reason` is capped to [`MAX_TEXT_CHARS`](super::MAX_TEXT_CHARS).
    pub async fn save_session(&self, rec: &SessionRecord) -> Result<(), StoreError> {
        let write = Write::Session(Box::new(rec.clone()));
        self.apply_batch(&[write]).await.map(drop)
    }

    /// [`Store::save_session`] for many records: one transaction per
    /// [`SAVE_BATCH`] records (each bounded by the write timeout), so a
    /// start-up that saves a large fleet makes a few commits, not one per
    /// session, and never holds the write lock for long.
    pub async fn save_sessions(&self, recs: &[SessionRecord]) -> Result<(), StoreError> {
        const OP: &str = "save_sessions";
        self.check_writable(OP)?;
        for chunk in recs.chunks(SAVE_BATCH) {
            let histories = chunk
                .iter()
                .map(history_json)
                .collect::<Result<Vec<_>, _>>()?;
            on_writer!(self, |w| super::timed(&self.health, OP, async {
                let mut tx = w.begin().await?;
                for (rec, history) in chunk.iter().zip(&histories) {
                    upsert!(rec, history.clone()).execute(&mut *tx).await?;
                }
                tx.commit().await
            })
            .await)?;
        }
        Ok(())
    }

    /// The sessions the daemon tracks (not retired), ordered by provider and
    /// session: what it resumes from at start-up.
    pub async fn load_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        self.list_sessions(false).await
    }

    /// All sessions ordered by provider and session; retired ones only if
    /// `include_retired`.
    pub async fn list_sessions(
        &self,
        include_retired: bool,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        on_reader!(self, |r| sqlx::query_as::<_, SessionRow>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE ($1 OR retired_at IS NULL) ORDER BY provider, session"
        ))
        .bind(include_retired)
        .fetch_all(r)
        .await)
        .map_err(query_error("list_sessions"))?
        .into_iter()
        .map(SessionRow::into_record)
        .collect()
    }

    /// One page of the active sessions, ordered by provider and session:
    /// those of `provider` and in `state` when given, after the key `after`
    /// (the last `(provider, session)` of the previous page), at most
    /// `limit` of them.
    pub async fn sessions_page(
        &self,
        provider: Option<&str>,
        state: Option<&str>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let (after_provider, after_session) = after.unzip();
        on_reader!(self, |r| sqlx::query_as::<_, SessionRow>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE retired_at IS NULL \
             AND ($1 IS NULL OR provider = $1) AND ($2 IS NULL OR state = $2) \
             AND ($3 IS NULL OR provider > $3 OR (provider = $3 AND session > $4)) \
             ORDER BY provider, session LIMIT $5"
        ))
        .bind(provider)
        .bind(state)
        .bind(after_provider)
        .bind(after_session)
        .bind(i64::from(limit))
        .fetch_all(r)
        .await)
        .map_err(query_error("sessions_page"))?
        .into_iter()
        .map(SessionRow::into_record)
        .collect()
    }

    /// One session, retired or not.
    pub async fn session(
        &self,
        provider: &str,
        session: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        on_reader!(self, |r| sqlx::query_as::<_, SessionRow>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE provider = $1 AND session = $2"
        ))
        .bind(provider)
        .bind(session)
        .fetch_optional(r)
        .await)
        .map_err(query_error("session"))?
        .map(SessionRow::into_record)
        .transpose()
    }

    /// Marks a session as no longer tracked (gone from the config or from the
    /// provider's list): sets `retired_at` and `updated_at` to `at`. Its row
    /// and all its history stay, for the operator and so that saving it again
    /// later resumes it. Retiring an unknown or already retired session
    /// changes nothing (the first retirement time is kept).
    pub async fn retire_session(
        &self,
        provider: &str,
        session: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let write = Write::Retire {
            provider: provider.to_string(),
            session: session.to_string(),
            at,
        };
        self.apply_batch(&[write]).await.map(drop)
    }
}
