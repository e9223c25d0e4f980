//! The plain records the store takes and gives back, and their conversion
//! from database rows.
//!
//! Records are data, not behaviour: states, outcomes and results are the
//! snake_case names the daemon hands in (`State::as_str`, `Outcome::to_stored`); the
//! store never interprets them. Rows are read into private `*Row` structs of
//! SQL-native types first, and only then converted with checked conversions,
//! so a bad value written by hand or by a future version becomes a
//! [`StoreError::Corrupt`] naming the row instead of a panic.

use std::borrow::Cow;

use crate::clock::Timestamp;
use crate::machine::Persisted;

use super::StoreError;

/// The most characters a free-text field (`detail`, `reason`, `state_reason`)
/// keeps. Providers can answer with whole HTML error pages; a probe every few
/// minutes per session must not turn that into gigabytes.
pub const MAX_TEXT_CHARS: usize = 500;

/// Marks text cut by [`MAX_TEXT_CHARS`], so a reader knows it is not the whole.
const ELLIPSIS: char = '…';

/// `s` cut to at most [`MAX_TEXT_CHARS`] characters, on a char boundary; cut
/// text ends with `…` (which counts toward the limit).
/// Every registered secret is redacted first ([`crate::redact`]): nothing
/// the store keeps, and so nothing the API serves, can carry one.
pub(crate) fn cap_text(s: &str) -> Cow<'_, str> {
    let redacted = crate::redact::redact(s);
    if redacted != s {
        return Cow::Owned(cap_owned(&redacted).into_owned());
    }
    cap_owned(s)
}

fn cap_owned(s: &str) -> Cow<'_, str> {
    // Where the MAX_TEXT_CHARS-th character starts: if the text is longer, it
    // is cut there, leaving room for the ellipsis.
    let mut chars = s.char_indices();
    let Some((keep_end, _)) = chars.nth(MAX_TEXT_CHARS - 1) else {
        return Cow::Borrowed(s);
    };
    if chars.next().is_none() {
        // Exactly MAX_TEXT_CHARS characters: fits.
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(keep_end + ELLIPSIS.len_utf8());
    out.push_str(&s[..keep_end]);
    out.push(ELLIPSIS);
    Cow::Owned(out)
}

/// A session's machine as stored ([`Persisted`]): its state and last
/// outcome by their stored names (`State::as_str`, `Outcome::to_stored`),
/// as the row says, so a record holds a name this version does not know.
pub type StoredMachine = Persisted<String, String>;

/// The persisted state of one watched session: everything the daemon needs to
/// resume exactly where it stopped, so a daemon restart never restarts a
/// session early nor forgets a failure streak.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// Provider name from the config (`[[provider]] name`).
    pub provider: String,
    /// Session name at that provider (WAHA session, Green-API instance).
    pub session: String,
    /// The machine's persisted part: state (snake_case: `healthy`,
    /// `desynced`, ...), its reason (column `state_reason`, capped to
    /// [`MAX_TEXT_CHARS`] on save), streak, backoff, restart history, ...
    pub machine: StoredMachine,
    /// When the next probe is due; keeps the schedule across daemon restarts.
    pub next_probe_at: Option<Timestamp>,
    /// Resolved canary target (`self` resolved to the session's own id).
    pub chat_id: Option<String>,
    /// When the session stopped being tracked. Ignored by
    /// [`Store::save_session`](super::Store::save_session), which always
    /// makes the session active again.
    pub retired_at: Option<Timestamp>,
    /// When the daemon last saved this record.
    pub updated_at: Timestamp,
}

impl SessionRecord {
    /// A session in `state` since `since` with nothing else known yet (no
    /// streak, no history, no schedule): the base the daemon and tests fill
    /// in with `..SessionRecord::new(..)`.
    pub fn new(provider: &str, session: &str, state: &str, since: Timestamp) -> SessionRecord {
        SessionRecord {
            provider: provider.to_string(),
            session: session.to_string(),
            machine: StoredMachine::fresh(state.to_string(), since, String::new()),
            next_probe_at: None,
            chat_id: None,
            retired_at: None,
            updated_at: since,
        }
    }
}

/// One probe of one session, as the history shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRecord {
    /// Provider name from the config.
    pub provider: String,
    /// Session name at that provider.
    pub session: String,
    /// When the probe finished.
    pub at: Timestamp,
    /// `probe` (scheduled canary), `verify` (canary after a restart) or `status` (status-only).
    pub kind: String,
    /// Stored form of the outcome (`delivered`, `desync`, `not_ready:starting`, ...).
    pub outcome: String,
    /// HTTP status of the deciding response; `None` when no response came (timeout, connect error).
    pub http_status: Option<u16>,
    /// Time the probe took, status read and send together.
    pub latency_ms: u64,
    /// Short explanation (capped to [`MAX_TEXT_CHARS`] on insert). Never secrets.
    pub detail: String,
}

/// Delivered probes of one session within one time bucket, counted: what
/// is left of probes older than the last few
/// ([`KEEP_LAST_PROBES`](super::KEEP_LAST_PROBES)).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRollup {
    /// Provider name from the config.
    pub provider: String,
    /// Session name at that provider.
    pub session: String,
    /// Start of the bucket (a multiple of `span` since the epoch, UTC).
    pub start: Timestamp,
    /// An hour for recent buckets, a day for older ones.
    pub span: std::time::Duration,
    /// Stored form of the outcome counted (`delivered`).
    pub outcome: String,
    /// How many probes.
    pub probes: u64,
    /// Their latencies added up (the mean is `latency_sum_ms / probes`).
    pub latency_sum_ms: u64,
    /// The slowest of them.
    pub latency_max_ms: u64,
}

/// One state change of one session.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionRecord {
    /// Provider name from the config.
    pub provider: String,
    /// Session name at that provider.
    pub session: String,
    /// When the state changed.
    pub at: Timestamp,
    /// State before, snake_case.
    pub from_state: String,
    /// State after, snake_case.
    pub to_state: String,
    /// Why (capped to [`MAX_TEXT_CHARS`] on insert).
    pub reason: String,
}

/// The intent to remediate, written before the provider is called so that a
/// daemon dying mid-restart still counts the restart against its budgets.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRemediation {
    /// Provider name from the config.
    pub provider: String,
    /// Session name at that provider.
    pub session: String,
    /// When the decision was taken, just before the provider is called.
    pub started_at: Timestamp,
    /// `restart` (WAHA) or `reboot` (Green-API).
    pub action: String,
    /// Why (capped to [`MAX_TEXT_CHARS`]); `operator` for a manual restart.
    pub reason: String,
    /// `pending`, or `dry_run` when the policy only records what it would do.
    pub result: String,
    /// Identifies this intent across retries of its write: writing the same
    /// key twice (a timed-out write that committed late, then the retry)
    /// leaves one row and returns its id. Generated once per intent
    /// ([`NewRemediation::new_key`]); never reused for another restart.
    pub intent_key: String,
}

impl NewRemediation {
    /// A fresh intent key: the session, the decision time and 64 random bits.
    pub fn new_key(provider: &str, session: &str, started_at: Timestamp) -> String {
        format!(
            "{provider}/{session}/{}/{:016x}",
            started_at.as_millis(),
            rand::random::<u64>()
        )
    }
}

/// A step in a remediation's life: `called`, then a final `healed`, `failed`,
/// `timeout`, `not_healed` or `interrupted`.
#[derive(Debug, Clone, PartialEq)]
pub struct RemediationUpdate {
    /// The new result, replacing the previous one.
    pub result: String,
    /// Replaces the previous detail (capped to [`MAX_TEXT_CHARS`]).
    pub detail: String,
    /// Set on the final update; the store derives `duration_ms` from it.
    /// `None` leaves an earlier value in place.
    pub finished_at: Option<Timestamp>,
    /// First failure to healthy again; `None` leaves an earlier value in place.
    pub recovery_ms: Option<u64>,
}

/// One remediation as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RemediationRecord {
    /// Row id, as returned by [`Store::begin_remediation`](super::Store::begin_remediation).
    pub id: i64,
    /// Provider name from the config.
    pub provider: String,
    /// Session name at that provider.
    pub session: String,
    /// When the intent was written.
    pub started_at: Timestamp,
    /// `restart` or `reboot`.
    pub action: String,
    /// Why the remediation was started.
    pub reason: String,
    /// Latest result: `pending`, `dry_run`, `called`, or a final one.
    pub result: String,
    /// Latest detail ("" until the first update).
    pub detail: String,
    /// When the remediation reached its final result; `None` while in flight
    /// (or if the daemon died before it finished).
    pub finished_at: Option<Timestamp>,
    /// `finished_at - started_at` (0 if the wall clock stepped back).
    pub duration_ms: Option<u64>,
    /// First failure to healthy again, when the remediation healed the session.
    pub recovery_ms: Option<u64>,
}

// ---- rows as SQLite returns them, and their checked conversion ----

#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    provider: String,
    session: String,
    state: String,
    since: i64,
    state_reason: String,
    consecutive_failures: i64,
    streak_has_desync: i64,
    first_failure_at: Option<i64>,
    last_success_at: Option<i64>,
    last_outcome: Option<String>,
    last_probe_at: Option<i64>,
    next_probe_at: Option<i64>,
    not_ready_since: Option<i64>,
    backoff_step: i64,
    next_restart_at: Option<i64>,
    restart_history: String,
    restart_started_at: Option<i64>,
    healthy_since: Option<i64>,
    paused_until: Option<i64>,
    chat_id: Option<String>,
    retired_at: Option<i64>,
    updated_at: i64,
}

impl SessionRow {
    pub(super) fn into_record(self) -> Result<SessionRecord, StoreError> {
        let row = || format!("sessions ({}, {})", self.provider, self.session);
        let restart_history: Vec<Timestamp> =
            serde_json::from_str(&self.restart_history).map_err(|e| StoreError::Corrupt {
                row: row(),
                detail: format!("restart_history is not a JSON array of unix ms: {e}"),
            })?;
        let streak_has_desync = match self.streak_has_desync {
            0 => false,
            1 => true,
            other => {
                return Err(StoreError::Corrupt {
                    row: row(),
                    detail: format!("streak_has_desync is {other}, not 0 or 1"),
                });
            }
        };
        let consecutive_failures = to_u32(self.consecutive_failures, "consecutive_failures", row)?;
        let backoff_step = to_u32(self.backoff_step, "backoff_step", row)?;
        Ok(SessionRecord {
            provider: self.provider,
            session: self.session,
            machine: StoredMachine {
                state: self.state,
                since: Timestamp(self.since),
                reason: self.state_reason,
                consecutive_failures,
                streak_has_desync,
                first_failure_at: self.first_failure_at.map(Timestamp),
                last_success_at: self.last_success_at.map(Timestamp),
                last_outcome: self.last_outcome,
                last_probe_at: self.last_probe_at.map(Timestamp),
                not_ready_since: self.not_ready_since.map(Timestamp),
                backoff_step,
                next_restart_at: self.next_restart_at.map(Timestamp),
                restart_history,
                restart_started_at: self.restart_started_at.map(Timestamp),
                healthy_since: self.healthy_since.map(Timestamp),
                paused_until: self.paused_until.map(Timestamp),
            },
            next_probe_at: self.next_probe_at.map(Timestamp),
            chat_id: self.chat_id,
            retired_at: self.retired_at.map(Timestamp),
            updated_at: Timestamp(self.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ProbeRow {
    id: i64,
    provider: String,
    session: String,
    at: i64,
    kind: String,
    outcome: String,
    http_status: Option<i64>,
    latency_ms: i64,
    detail: String,
}

impl ProbeRow {
    pub(super) fn into_record(self) -> Result<ProbeRecord, StoreError> {
        let id = self.id;
        let row = || format!("probes id {id}");
        let http_status = match self.http_status {
            None => None,
            Some(s) => Some(u16::try_from(s).map_err(|_| StoreError::Corrupt {
                row: row(),
                detail: format!("http_status {s} is not a u16"),
            })?),
        };
        Ok(ProbeRecord {
            provider: self.provider,
            session: self.session,
            at: Timestamp(self.at),
            kind: self.kind,
            outcome: self.outcome,
            http_status,
            latency_ms: to_u64(self.latency_ms, "latency_ms", row)?,
            detail: self.detail,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ProbeRollupRow {
    provider: String,
    session: String,
    bucket_start: i64,
    span_ms: i64,
    outcome: String,
    probes: i64,
    latency_sum_ms: i64,
    latency_max_ms: i64,
}

impl ProbeRollupRow {
    pub(super) fn into_record(self) -> Result<ProbeRollup, StoreError> {
        let row = || {
            format!(
                "probe_rollups ({}, {}, {})",
                self.provider, self.session, self.bucket_start
            )
        };
        Ok(ProbeRollup {
            span: std::time::Duration::from_millis(to_u64(self.span_ms, "span_ms", row)?),
            probes: to_u64(self.probes, "probes", row)?,
            latency_sum_ms: to_u64(self.latency_sum_ms, "latency_sum_ms", row)?,
            latency_max_ms: to_u64(self.latency_max_ms, "latency_max_ms", row)?,
            start: Timestamp(self.bucket_start),
            provider: self.provider,
            session: self.session,
            outcome: self.outcome,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct TransitionRow {
    provider: String,
    session: String,
    at: i64,
    from_state: String,
    to_state: String,
    reason: String,
}

impl TransitionRow {
    pub(super) fn into_record(self) -> TransitionRecord {
        TransitionRecord {
            provider: self.provider,
            session: self.session,
            at: Timestamp(self.at),
            from_state: self.from_state,
            to_state: self.to_state,
            reason: self.reason,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct RemediationRow {
    id: i64,
    provider: String,
    session: String,
    started_at: i64,
    action: String,
    reason: String,
    result: String,
    detail: String,
    finished_at: Option<i64>,
    duration_ms: Option<i64>,
    recovery_ms: Option<i64>,
}

impl RemediationRow {
    pub(super) fn into_record(self) -> Result<RemediationRecord, StoreError> {
        let id = self.id;
        let row = || format!("remediations id {id}");
        let duration_ms = match self.duration_ms {
            None => None,
            Some(v) => Some(to_u64(v, "duration_ms", row)?),
        };
        let recovery_ms = match self.recovery_ms {
            None => None,
            Some(v) => Some(to_u64(v, "recovery_ms", row)?),
        };
        Ok(RemediationRecord {
            id,
            provider: self.provider,
            session: self.session,
            started_at: Timestamp(self.started_at),
            action: self.action,
            reason: self.reason,
            result: self.result,
            detail: self.detail,
            finished_at: self.finished_at.map(Timestamp),
            duration_ms,
            recovery_ms,
        })
    }
}

fn to_u32(v: i64, column: &str, row: impl Fn() -> String) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        row: row(),
        detail: format!("{column} {v} is out of range for u32"),
    })
}

fn to_u64(v: i64, column: &str, row: impl Fn() -> String) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        row: row(),
        detail: format!("{column} {v} is negative"),
    })
}

/// An unsigned count for an INTEGER column: SQLite (and PostgreSQL) integers
/// are signed 64-bit; values past `i64::MAX` cannot occur in practice
/// (milliseconds), so saturate rather than fail a write.
pub(super) fn u64_to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_text_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert!(matches!(cap_text("short"), Cow::Borrowed("short")));
        let exact = "é".repeat(MAX_TEXT_CHARS);
        assert!(matches!(cap_text(&exact), Cow::Borrowed(_)));

        let long = "日本".repeat(MAX_TEXT_CHARS);
        let cut = cap_text(&long);
        assert_eq!(cut.chars().count(), MAX_TEXT_CHARS);
        assert!(cut.ends_with(ELLIPSIS));
        let kept: String = long.chars().take(MAX_TEXT_CHARS - 1).collect();
        assert!(cut.starts_with(&kept));
    }
}
