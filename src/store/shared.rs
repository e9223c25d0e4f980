//! Provider-wide rules over several replicas (PostgreSQL only): the restart
//! budget and `max_concurrent_restarts` counted from the `remediations`
//! rows of every replica, checked in the fenced intent's transaction under
//! a per-provider advisory lock (two replicas cannot both take the last
//! slot or token), and the per-provider session counts each replica
//! publishes for the outage rule (`provider_counts`, migration 0005).
//!
//! A restart is in flight while its row is open (`pending`, `called`) and
//! younger than the provider's `restart_timeout` (the longest a restart
//! lasts, measured from its start): a row a dead replica left open stops
//! counting then. Every real attempt (not `dry_run`) in the budget window
//! takes a token, operator restarts included, as a restarted daemon counts
//! them (`scheduler/persist.rs`).

use std::time::Duration;

use super::leases::{DB_NOW, Fence};
use super::records::cap_text;
use super::{NewRemediation, Pools, Store, StoreError};
use crate::clock::Timestamp;
use crate::health::Remote;
use crate::policy::SharedUse;

/// The provider-wide limits a restart intent must respect across replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The writer's clock (the rows' `started_at` are replicas' clocks too).
    pub now: Timestamp,
    /// `max_concurrent_restarts`.
    pub max_concurrent: u32,
    /// `restart_timeout`: an open row older than this is no longer in flight.
    pub in_flight_for: Duration,
    /// `restart_budget`; `None` for an operator restart (it bypasses the
    /// budget, not the concurrency limit).
    pub budget: Option<u32>,
    pub budget_window: Duration,
}

/// The advisory lock key of a provider's restart bookkeeping: FNV-1a 64 of
/// a prefixed name (stable, so every replica and version takes the same).
fn lock_key(provider: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "wa-watchdog/restarts/".bytes().chain(provider.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The open/attempt rows of `provider` started after `since`.
const ROWS: &str = "SELECT started_at, result FROM remediations \
     WHERE provider = $1 AND started_at > $2 AND result <> 'dry_run'";

fn horizon(limits_now: Timestamp, d: Duration) -> i64 {
    limits_now.minus(d).as_millis()
}

/// Counts `rows` (started_at, result): in flight after `flight_since`, and
/// the start times after `budget_since`, ascending.
fn tally(rows: &[(i64, String)], flight_since: i64, budget_since: i64) -> SharedUse {
    let in_flight = rows
        .iter()
        .filter(|(at, result)| *at > flight_since && (result == "pending" || result == "called"))
        .count();
    let mut restarts: Vec<Timestamp> = rows
        .iter()
        .filter(|(at, _)| *at > budget_since)
        .map(|(at, _)| Timestamp(*at))
        .collect();
    restarts.sort_unstable();
    SharedUse {
        in_flight: u32::try_from(in_flight).unwrap_or(u32::MAX),
        restarts,
    }
}

impl Store {
    /// The provider's restarts over every replica, as of `now`: those in
    /// flight (open, younger than `in_flight_for`) and the start times in
    /// the budget window. `None` on SQLite (one process: its own
    /// bookkeeping is the whole truth).
    pub async fn shared_use(
        &self,
        provider: &str,
        now: Timestamp,
        in_flight_for: Duration,
        budget_window: Duration,
    ) -> Result<Option<SharedUse>, StoreError> {
        let Pools::Postgres(pool) = &self.pools else {
            return Ok(None);
        };
        let (flight, budget) = (horizon(now, in_flight_for), horizon(now, budget_window));
        let rows: Vec<(i64, String)> = sqlx::query_as(ROWS)
            .bind(provider)
            .bind(flight.min(budget))
            .fetch_all(pool)
            .await
            .map_err(super::query_error("shared_use"))?;
        Ok(Some(tally(&rows, flight, budget)))
    }

    /// [`Store::begin_remediation_fenced`] that also holds the provider's
    /// limits across replicas: under the provider's advisory lock (held to
    /// the end of the transaction), the restarts in flight and in the budget
    /// window are counted from every replica's rows, and the intent is
    /// refused with [`StoreError::Limit`] (nothing written) when a slot or a
    /// token is missing. An intent whose key is already written is returned
    /// as it is (a retry after a timeout), without counting it twice.
    pub async fn begin_remediation_limited(
        &self,
        r: &NewRemediation,
        fence: &Fence,
        limits: &Limits,
    ) -> Result<i64, StoreError> {
        const OP: &str = "begin_remediation";
        let pool = self.postgres(OP)?;
        enum Verdict {
            Written(i64),
            Fenced,
            Limit(&'static str),
        }
        let verdict = super::timed(&self.health, OP, async {
            let mut tx = pool.begin().await?;
            if !super::leases::lock_fence(&mut tx, fence).await? {
                tx.rollback().await?;
                return Ok(Verdict::Fenced);
            }
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock_key(&r.provider))
                .execute(&mut *tx)
                .await?;
            let existing: Option<i64> =
                sqlx::query_scalar("SELECT id FROM remediations WHERE intent_key = $1")
                    .bind(&r.intent_key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(id) = existing {
                tx.commit().await?;
                return Ok(Verdict::Written(id));
            }
            let flight = horizon(limits.now, limits.in_flight_for);
            let budget = horizon(limits.now, limits.budget_window);
            let rows: Vec<(i64, String)> = sqlx::query_as(ROWS)
                .bind(&r.provider)
                .bind(flight.min(budget))
                .fetch_all(&mut *tx)
                .await?;
            let used = tally(&rows, flight, budget);
            let refusal = if used.in_flight >= limits.max_concurrent {
                Some("max_concurrent_restarts in flight")
            } else if limits
                .budget
                .is_some_and(|b| used.restarts.len() >= b as usize)
            {
                Some("restart_budget spent")
            } else {
                None
            };
            if let Some(what) = refusal {
                tx.rollback().await?;
                return Ok(Verdict::Limit(what));
            }
            let id: i64 = insert_intent!(r).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok(Verdict::Written(id))
        })
        .await?;
        match verdict {
            Verdict::Written(id) => Ok(id),
            Verdict::Fenced => Err(StoreError::Fenced { shard: fence.shard }),
            Verdict::Limit(what) => Err(StoreError::Limit {
                provider: r.provider.clone(),
                what,
            }),
        }
    }

    /// Publishes replica `me`'s counts per provider (alive for `ttl`) and
    /// reads the sum of the other live replicas' counts per provider.
    pub async fn publish_counts(
        &self,
        me: &str,
        ttl: Duration,
        mine: &[(String, Remote)],
    ) -> Result<Vec<(String, Remote)>, StoreError> {
        const OP: &str = "publish_counts";
        let pool = self.postgres(OP)?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        super::timed(&self.health, OP, async {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM provider_counts WHERE replica = $1")
                .bind(me)
                .execute(&mut *tx)
                .await?;
            for (provider, c) in mine {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO provider_counts (replica, provider, total, failing, expires_at) \
                     VALUES ($1, $2, $3, $4, {DB_NOW} + $5)"
                )))
                .bind(me)
                .bind(provider)
                .bind(i64::try_from(c.total).unwrap_or(i64::MAX))
                .bind(i64::try_from(c.failing).unwrap_or(i64::MAX))
                .bind(ttl_ms)
                .execute(&mut *tx)
                .await?;
            }
            let rows: Vec<(String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT provider, SUM(total)::BIGINT, SUM(failing)::BIGINT FROM provider_counts \
                 WHERE replica <> $1 AND expires_at > {DB_NOW} GROUP BY provider ORDER BY provider"
            )))
            .bind(me)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(rows
                .into_iter()
                .map(|(provider, total, failing)| {
                    let n = |v: i64| usize::try_from(v).unwrap_or(0);
                    (
                        provider,
                        Remote {
                            total: n(total),
                            failing: n(failing),
                        },
                    )
                })
                .collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_open_rows_in_flight_and_attempts_in_the_window() {
        let rows: Vec<(i64, String)> = [
            (100, "healed"),
            (200, "called"),
            (300, "pending"),
            (50, "pending"), // open but older than restart_timeout
        ]
        .iter()
        .map(|(at, r)| (*at, r.to_string()))
        .collect();
        let used = tally(&rows, 150, 60);
        assert_eq!(used.in_flight, 2);
        assert_eq!(
            used.restarts,
            vec![Timestamp(100), Timestamp(200), Timestamp(300)]
        );
    }

    #[test]
    fn the_lock_key_is_per_provider_and_stable() {
        assert_eq!(lock_key("waha"), lock_key("waha"));
        assert_ne!(lock_key("waha"), lock_key("green"));
    }
}
