//! Queries on the history tables: `probes`, `transitions`, `remediations`.
//!
//! Each history row references its session (foreign key), so the daemon saves
//! a session with [`Store::save_session`] before recording anything about it.
//! "Recent" queries return newest first, ties broken by insertion order.

use crate::clock::Timestamp;

use super::records::{ProbeRow, RemediationRow, TransitionRow};
use super::write::{Applied, Write};
use super::{
    NewRemediation, ProbeRecord, RemediationRecord, RemediationUpdate, Store, StoreError,
    TransitionRecord, query_error,
};

macro_rules! remediation_columns {
    () => {
        "id, provider, session, started_at, action, reason, result, detail, \
         finished_at, duration_ms, recovery_ms"
    };
}

/// Lower bound for "no `since`": every stored timestamp is at or after it.
fn since_or_min(since: Option<Timestamp>) -> i64 {
    since.map_or(i64::MIN, Timestamp::as_millis)
}

impl Store {
    /// Records one probe. `detail` is capped to
    /// [`MAX_TEXT_CHARS`](super::MAX_TEXT_CHARS).
    pub async fn insert_probe(&self, p: &ProbeRecord) -> Result<(), StoreError> {
        self.apply_batch(&[Write::Probe(p.clone())]).await.map(drop)
    }

    /// Records one state change. `reason` is capped to
    /// [`MAX_TEXT_CHARS`](super::MAX_TEXT_CHARS).
    pub async fn insert_transition(&self, t: &TransitionRecord) -> Result<(), StoreError> {
        self.apply_batch(&[Write::Transition(t.clone())])
            .await
            .map(drop)
    }

    /// Writes the intent to remediate before the provider is called, and
    /// returns the row id for [`Store::update_remediation`]. Written first so
    /// that a daemon killed mid-restart still finds the restart in
    /// [`Store::remediations_since`] and does not restart early.
    ///
    /// Idempotent per [`NewRemediation::intent_key`]: a retry of an intent
    /// whose earlier write timed out (and may have committed meanwhile)
    /// returns the existing row instead of adding a second one.
    pub async fn begin_remediation(&self, r: &NewRemediation) -> Result<i64, StoreError> {
        match self
            .apply_batch(&[Write::BeginRemediation(r.clone())])
            .await?[..]
        {
            [Applied::Id(id)] => Ok(id),
            ref other => Err(StoreError::Corrupt {
                row: "remediations".into(),
                detail: format!("an intent write returned {other:?}, not its row id"),
            }),
        }
    }

    /// Moves a remediation on (`pending` → `called` → `healed`, ...). A
    /// `finished_at` sets `duration_ms = finished_at - started_at` (0 if the
    /// wall clock stepped back); `None` fields keep their earlier values.
    pub async fn update_remediation(
        &self,
        id: i64,
        update: &RemediationUpdate,
    ) -> Result<(), StoreError> {
        let write = Write::UpdateRemediation {
            id,
            update: update.clone(),
        };
        match self.apply_batch(&[write]).await?[..] {
            [Applied::Missing] => Err(StoreError::UnknownRemediation { id }),
            _ => Ok(()),
        }
    }

    /// Remediations of `provider` started at or after `since`, oldest first,
    /// without `dry_run` rows (they never called the provider). Unfinished
    /// rows are included: a restart whose outcome the daemon never saw still
    /// counts. Used at start-up to restore restart budgets and backoff.
    pub async fn remediations_since(
        &self,
        provider: &str,
        since: Timestamp,
    ) -> Result<Vec<RemediationRecord>, StoreError> {
        on_reader!(self, |r| sqlx::query_as::<_, RemediationRow>(concat!(
            "SELECT ",
            remediation_columns!(),
            " FROM remediations WHERE provider = $1 AND started_at >= $2 AND result <> 'dry_run' \
             ORDER BY started_at, id"
        ))
        .bind(provider)
        .bind(since.as_millis())
        .fetch_all(r)
        .await)
        .map_err(query_error("remediations_since"))?
        .into_iter()
        .map(RemediationRow::into_record)
        .collect()
    }

    /// The newest remediation row of every session of `provider` that has
    /// one (newest by `started_at`, then `id`): one query for a whole
    /// provider at start-up instead of one per session.
    pub async fn latest_remediations(
        &self,
        provider: &str,
    ) -> Result<Vec<RemediationRecord>, StoreError> {
        on_reader!(self, |r| sqlx::query_as::<_, RemediationRow>(concat!(
            "SELECT ",
            remediation_columns!(),
            " FROM (SELECT ",
            remediation_columns!(),
            ", ROW_NUMBER() OVER (PARTITION BY session ORDER BY started_at DESC, id DESC) AS rn \
             FROM remediations WHERE provider = $1) AS latest WHERE rn = 1"
        ))
        .bind(provider)
        .fetch_all(r)
        .await)
        .map_err(query_error("latest_remediations"))?
        .into_iter()
        .map(RemediationRow::into_record)
        .collect()
    }

    /// Remediation rows of `provider` started at or after their (active)
    /// session's row was last saved (`sessions.updated_at`), newest first
    /// per session: restarts decided after the last save of a daemon that
    /// died in between. One query for a whole provider.
    pub async fn remediations_after_save(
        &self,
        provider: &str,
    ) -> Result<Vec<RemediationRecord>, StoreError> {
        on_reader!(self, |r| sqlx::query_as::<_, RemediationRow>(
            "SELECT r.id, r.provider, r.session, r.started_at, r.action, r.reason, r.result, \
             r.detail, r.finished_at, r.duration_ms, r.recovery_ms \
             FROM remediations r JOIN sessions s \
             ON s.provider = r.provider AND s.session = r.session \
             WHERE r.provider = $1 AND s.retired_at IS NULL AND r.started_at >= s.updated_at \
             ORDER BY r.session, r.started_at DESC, r.id DESC",
        )
        .bind(provider)
        .fetch_all(r)
        .await)
        .map_err(query_error("remediations_after_save"))?
        .into_iter()
        .map(RemediationRow::into_record)
        .collect()
    }

    /// Up to `limit` probes of one session at or after `since`, newest first.
    pub async fn recent_probes(
        &self,
        provider: &str,
        session: &str,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<ProbeRecord>, StoreError> {
        on_reader!(self, |r| sqlx::query_as::<_, ProbeRow>(
            "SELECT id, provider, session, at, kind, outcome, http_status, latency_ms, detail \
             FROM probes WHERE provider = $1 AND session = $2 AND at >= $3 \
             ORDER BY at DESC, id DESC LIMIT $4",
        )
        .bind(provider)
        .bind(session)
        .bind(since_or_min(since))
        .bind(i64::from(limit))
        .fetch_all(r)
        .await)
        .map_err(query_error("recent_probes"))?
        .into_iter()
        .map(ProbeRow::into_record)
        .collect()
    }

    /// Up to `limit` transitions of one session at or after `since`, newest first.
    pub async fn recent_transitions(
        &self,
        provider: &str,
        session: &str,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<TransitionRecord>, StoreError> {
        let rows = on_reader!(self, |r| sqlx::query_as::<_, TransitionRow>(
            "SELECT provider, session, at, from_state, to_state, reason \
             FROM transitions WHERE provider = $1 AND session = $2 AND at >= $3 \
             ORDER BY at DESC, id DESC LIMIT $4",
        )
        .bind(provider)
        .bind(session)
        .bind(since_or_min(since))
        .bind(i64::from(limit))
        .fetch_all(r)
        .await)
        .map_err(query_error("recent_transitions"))?;
        Ok(rows.into_iter().map(TransitionRow::into_record).collect())
    }

    /// Up to `limit` remediations of one session started at or after `since`,
    /// newest first (`dry_run` rows included: this is history, not budgets).
    pub async fn recent_remediations(
        &self,
        provider: &str,
        session: &str,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<RemediationRecord>, StoreError> {
        on_reader!(self, |r| sqlx::query_as::<_, RemediationRow>(concat!(
            "SELECT ",
            remediation_columns!(),
            " FROM remediations WHERE provider = $1 AND session = $2 AND started_at >= $3 \
             ORDER BY started_at DESC, id DESC LIMIT $4"
        ))
        .bind(provider)
        .bind(session)
        .bind(since_or_min(since))
        .bind(i64::from(limit))
        .fetch_all(r)
        .await)
        .map_err(query_error("recent_remediations"))?
        .into_iter()
        .map(RemediationRow::into_record)
        .collect()
    }
}
