//! Probe rollups: the file is bounded by the number of sessions (and their
//! failures), not by time.
//!
//! What is kept:
//! - the last [`KEEP_LAST_PROBES`] probes of every session in full (the
//!   status page's heartbeat, the API's and the CLI's recent history);
//! - every probe that was not delivered, in full, for `daemon.retention`
//!   (failures are what an operator looks into, and they are rare: a healthy
//!   fleet adds none);
//! - older delivered probes counted in `probe_rollups`, per session, outcome
//!   and bucket, with their latency sum and maximum: an hour for the last
//!   [`HOURLY_FOR`], a day before that, for `daemon.retention`;
//! - transitions and remediations in full (small, and the audit trail).
//!
//! Why hourly only for a day: at 100k sessions hourly rows for 30 days
//! are 100k × 24 × 30 = 72M rows, over 4 GB even at 60 bytes a row. Hourly
//! for 24 h then daily is 100k × (24 + 29) = 5.3M rows (about 0.35 GB), and
//! the full rows (100k × 60 probes, about 1.3 GB with their index) dominate.
//! 48 hourly buckets measured 2.0 GiB at 100k, at the 2 GiB the daemon is
//! meant to stay under; a day of hours (what a "last 24 h" view needs)
//! leaves room. The total stays flat once the oldest bucket passes the
//! retention (see the README's measured sizes).
//!
//! How: [`Store::roll_up_probes`] walks the sessions in key order,
//! [`ROLL_SESSIONS`] at a time, one short transaction each (count into the
//! buckets, delete what was counted, merge hours older than [`HOURLY_FOR`]
//! into days, drop buckets past the retention), pausing between batches, so
//! it never holds the write lock for long and an interrupted sweep has
//! still done its part. A batch that runs past the write timeout (a slow
//! disk, another process holding the lock) is rolled back and retried at
//! half the size, down to one session ([`batch_size_after`]). Additive upserts keep a repeated or interrupted
//! pass correct: a probe is counted in the same transaction that deletes it.

use std::time::Duration;

use crate::clock::Timestamp;

use super::records::{ProbeRollup, ProbeRollupRow};
use super::{PRUNE_PAUSE, Store, StoreError, query_error};

/// Probes of each session kept in full whatever their outcome: the status
/// page's heartbeat shows this many.
pub const KEEP_LAST_PROBES: u32 = 60;

/// Rollup buckets are an hour long for this long, then a day.
pub const HOURLY_FOR: Duration = Duration::from_secs(24 * 3600);

/// Sessions per rollup transaction. At 100k sessions × ~70 probe rows each,
/// one batch touches ~14k rows: a few milliseconds of write lock.
pub const ROLL_SESSIONS: u32 = 200;

/// The next batch's size in sessions: half after a batch that timed out
/// (its transaction rolled back whole, so it is retried smaller: a busy or
/// slow disk shortens the write lock instead of failing the pass), doubled
/// back toward [`ROLL_SESSIONS`] after one that committed. Never below one.
fn batch_size_after(size: u32, committed: bool) -> u32 {
    if committed {
        size.saturating_mul(2).clamp(1, ROLL_SESSIONS)
    } else {
        (size / 2).max(1)
    }
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// What one rollup pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupStats {
    /// Probe rows counted into buckets and deleted.
    pub rolled: u64,
    /// Hourly buckets merged into daily ones.
    pub merged: u64,
    /// Buckets dropped past the retention.
    pub expired: u64,
}

/// The probes of the batch's sessions, newest first per session, numbered:
/// `rn > KEEP` are the ones past the kept window. `$1..$4` bound the batch
/// (`(provider, session)` in `($1, $2) .. ($3, $4)]`), `$5` = KEEP.
macro_rules! ranked_probes {
    () => {
        "SELECT id, provider, session, at, outcome, latency_ms, \
         ROW_NUMBER() OVER (PARTITION BY provider, session ORDER BY at DESC, id DESC) AS rn \
         FROM probes \
         WHERE (provider, session) > ($1, $2) AND (provider, session) <= ($3, $4)"
    };
}

/// Adds a bucket's counts to an existing row of the same key (portable:
/// no SQLite-only two-argument MAX).
macro_rules! add_to_bucket {
    () => {
        " ON CONFLICT (provider, session, bucket_start, span_ms, outcome) DO UPDATE SET \
         probes = probe_rollups.probes + excluded.probes, \
         latency_sum_ms = probe_rollups.latency_sum_ms + excluded.latency_sum_ms, \
         latency_max_ms = CASE WHEN excluded.latency_max_ms > probe_rollups.latency_max_ms \
             THEN excluded.latency_max_ms ELSE probe_rollups.latency_max_ms END"
    };
}

impl Store {
    /// One rollup pass at `now` with the retention starting at `before` (see
    /// the module comment). In batches of [`ROLL_SESSIONS`] sessions.
    pub async fn roll_up_probes(
        &self,
        now: Timestamp,
        before: Timestamp,
    ) -> Result<RollupStats, StoreError> {
        const OP: &str = "roll_up_probes";
        self.check_writable(OP)?;
        let hourly_from = now.minus(HOURLY_FOR).as_millis();
        let mut stats = RollupStats::default();
        // '' sorts before every provider name (names are non-empty).
        let mut after = (String::new(), String::new());
        let mut size = ROLL_SESSIONS;
        loop {
            let keys: Vec<(String, String)> = on_reader!(self, |r| sqlx::query_as(
                "SELECT provider, session FROM sessions \
                 WHERE (provider, session) > ($1, $2) ORDER BY provider, session LIMIT $3",
            )
            .bind(&after.0)
            .bind(&after.1)
            .bind(i64::from(size))
            .fetch_all(r)
            .await)
            .map_err(query_error(OP))?;
            let Some(last) = keys.last().cloned() else {
                return Ok(stats);
            };
            let batch = on_writer!(self, |pool| super::timed(&self.health, OP, async {
                let mut tx = pool.begin().await?;
                sqlx::query(concat!(
                    "INSERT INTO probe_rollups (provider, session, bucket_start, span_ms, outcome, \
                     probes, latency_sum_ms, latency_max_ms) \
                     SELECT provider, session, at - at % span, span, outcome, \
                     COUNT(*), SUM(latency_ms), MAX(latency_ms) \
                     FROM (SELECT provider, session, at, outcome, latency_ms, \
                         CASE WHEN at < $6 THEN $8 ELSE $9 END AS span FROM (",
                    ranked_probes!(),
                    ") AS ranked WHERE rn > $5 AND outcome = 'delivered' AND at >= $7) AS spans \
                     GROUP BY provider, session, at - at % span, span, outcome",
                    add_to_bucket!()
                ))
                .bind(&after.0)
                .bind(&after.1)
                .bind(&last.0)
                .bind(&last.1)
                .bind(i64::from(KEEP_LAST_PROBES))
                .bind(hourly_from)
                .bind(before.as_millis())
                .bind(DAY_MS)
                .bind(HOUR_MS)
                .execute(&mut *tx)
                .await?;
                // Delivered probes past the window: counted just above (or
                // older than the retention, which drops them uncounted).
                let deleted = sqlx::query(concat!(
                    "DELETE FROM probes WHERE id IN (SELECT id FROM (",
                    ranked_probes!(),
                    ") AS ranked WHERE rn > $5 AND outcome = 'delivered')"
                ))
                .bind(&after.0)
                .bind(&after.1)
                .bind(&last.0)
                .bind(&last.1)
                .bind(i64::from(KEEP_LAST_PROBES))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query(concat!(
                    "INSERT INTO probe_rollups (provider, session, bucket_start, span_ms, outcome, \
                     probes, latency_sum_ms, latency_max_ms) \
                     SELECT provider, session, bucket_start - bucket_start % $6, $6, outcome, \
                     SUM(probes), SUM(latency_sum_ms), MAX(latency_max_ms) FROM probe_rollups \
                     WHERE (provider, session) > ($1, $2) AND (provider, session) <= ($3, $4) \
                     AND span_ms = $7 AND bucket_start < $5 \
                     GROUP BY provider, session, bucket_start - bucket_start % $6, outcome",
                    add_to_bucket!()
                ))
                .bind(&after.0)
                .bind(&after.1)
                .bind(&last.0)
                .bind(&last.1)
                .bind(hourly_from)
                .bind(DAY_MS)
                .bind(HOUR_MS)
                .execute(&mut *tx)
                .await?;
                let merged = sqlx::query(
                    "DELETE FROM probe_rollups \
                     WHERE (provider, session) > ($1, $2) AND (provider, session) <= ($3, $4) \
                     AND span_ms = $6 AND bucket_start < $5",
                )
                .bind(&after.0)
                .bind(&after.1)
                .bind(&last.0)
                .bind(&last.1)
                .bind(hourly_from)
                .bind(HOUR_MS)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let expired = sqlx::query(
                    "DELETE FROM probe_rollups \
                     WHERE (provider, session) > ($1, $2) AND (provider, session) <= ($3, $4) \
                     AND bucket_start + span_ms <= $5",
                )
                .bind(&after.0)
                .bind(&after.1)
                .bind(&last.0)
                .bind(&last.1)
                .bind(before.as_millis())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(RollupStats {
                    rolled: deleted,
                    merged,
                    expired,
                })
            })
            .await);
            let batch = match batch {
                Ok(batch) => batch,
                // Rolled back whole (nothing counted, nothing deleted): the
                // same sessions again in a smaller batch, after a pause that
                // lets the probe writes queued behind it through.
                Err(StoreError::WriteTimeout { .. }) if size > 1 => {
                    size = batch_size_after(size, false);
                    tracing::debug!(size, "probe rollup batch timed out; retrying smaller");
                    tokio::time::sleep(PRUNE_PAUSE).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            stats.rolled += batch.rolled;
            stats.merged += batch.merged;
            stats.expired += batch.expired;
            if keys.len() < size as usize {
                return Ok(stats);
            }
            size = batch_size_after(size, true);
            after = last;
            tokio::time::sleep(PRUNE_PAUSE).await;
        }
    }

    /// Up to `limit` rollup buckets of one session starting at or after
    /// `since` (a bucket that started before `since` is left out), newest
    /// first: the probes older than the last [`KEEP_LAST_PROBES`].
    pub async fn probe_rollups(
        &self,
        provider: &str,
        session: &str,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<ProbeRollup>, StoreError> {
        on_reader!(self, |r| sqlx::query_as::<_, ProbeRollupRow>(
            "SELECT provider, session, bucket_start, span_ms, outcome, probes, \
             latency_sum_ms, latency_max_ms FROM probe_rollups \
             WHERE provider = $1 AND session = $2 AND bucket_start >= $3 \
             ORDER BY bucket_start DESC, span_ms, outcome LIMIT $4",
        )
        .bind(provider)
        .bind(session)
        .bind(since.map_or(i64::MIN, Timestamp::as_millis))
        .bind(i64::from(limit))
        .fetch_all(r)
        .await)
        .map_err(query_error("probe_rollups"))?
        .into_iter()
        .map(ProbeRollupRow::into_record)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_out_batch_is_retried_at_half_size_down_to_one_session() {
        let mut size = ROLL_SESSIONS;
        let mut seen = vec![size];
        while size > 1 {
            size = batch_size_after(size, false);
            seen.push(size);
        }
        assert_eq!(seen, [200, 100, 50, 25, 12, 6, 3, 1]);
        assert_eq!(batch_size_after(1, false), 1);
    }

    #[test]
    fn a_committed_batch_grows_back_to_the_full_size_and_no_further() {
        assert_eq!(batch_size_after(1, true), 2);
        assert_eq!(batch_size_after(3, true), 6);
        assert_eq!(batch_size_after(ROLL_SESSIONS / 2 + 1, true), ROLL_SESSIONS);
        assert_eq!(batch_size_after(ROLL_SESSIONS, true), ROLL_SESSIONS);
        assert_eq!(batch_size_after(u32::MAX, true), ROLL_SESSIONS);
    }
}
