//! The `leases` and `replicas` tables (PostgreSQL only: replicas share a
//! PostgreSQL database; a SQLite store has one daemon, which owns
//! everything) and the fenced restart intent. What a round does is decided
//! by the pure `crate::lease::plan`; this module only reads the snapshot and
//! carries the plan out, each statement guarded so that two replicas racing
//! for a shard cannot both win.

use std::time::Duration;

use super::records::cap_text;
use super::{NewRemediation, Pools, Store, StoreError, query_error};
use crate::lease::{Lease, SHARDS};

/// The database's clock in unix ms (never a replica's: their clocks may
/// disagree, the database's is one).
pub(super) const DB_NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// The leases and live replicas as of `now` (database time).
#[derive(Clone, Debug)]
pub struct LeaseSnapshot {
    pub now: i64,
    pub leases: Vec<Lease>,
    /// Names of the replicas whose heartbeat has not expired.
    pub live: Vec<String>,
}

/// A shard a replica holds: the token it claimed it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub shard: u32,
    pub token: i64,
}

/// The proof a restart intent carries: this replica, this shard, this token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub owner: String,
    pub shard: u32,
    pub token: i64,
}

/// A row of `leases` as read by [`LEASE_ROWS`]: shard, owner, expires_at,
/// token.
type LeaseRow = (i64, Option<String>, i64, i64);

/// Every lease row, in shard order (the snapshot and `status` read the same).
const LEASE_ROWS: &str = "SELECT shard, owner, expires_at, token FROM leases ORDER BY shard";

/// One lease row as a [`Lease`]; a shard number out of range (not written by
/// this program) is skipped.
fn lease_of_row((shard, owner, expires_at, token): LeaseRow) -> Option<Lease> {
    Some(Lease {
        shard: u32::try_from(shard).ok()?,
        owner,
        expires_at,
        token,
    })
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    pub(super) fn postgres(&self, op: &'static str) -> Result<&sqlx::PgPool, StoreError> {
        self.check_writable(op)?;
        match &self.pools {
            Pools::Postgres(pool) => Ok(pool),
            Pools::Sqlite { .. } => Err(StoreError::NotShared { op }),
        }
    }

    /// Renews replica `me`'s heartbeat (alive for `ttl`), creates the shard
    /// rows on first use, and reads every lease and the live replicas.
    pub async fn lease_snapshot(
        &self,
        me: &str,
        ttl: Duration,
    ) -> Result<LeaseSnapshot, StoreError> {
        const OP: &str = "lease_snapshot";
        let pool = self.postgres(OP)?;
        super::timed(&self.health, OP, async {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO leases (shard) SELECT s FROM generate_series(0, $1 - 1) AS s \
                 ON CONFLICT (shard) DO NOTHING",
            )
            .bind(i64::from(SHARDS))
            .execute(&mut *tx)
            .await?;
            let now: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "INSERT INTO replicas (name, expires_at) VALUES ($1, {DB_NOW} + $2) \
                 ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at \
                 RETURNING expires_at - $2"
            )))
            .bind(me)
            .bind(ms(ttl))
            .fetch_one(&mut *tx)
            .await?;
            let live: Vec<String> =
                sqlx::query_scalar("SELECT name FROM replicas WHERE expires_at > $1 ORDER BY name")
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
            let rows: Vec<LeaseRow> = sqlx::query_as(LEASE_ROWS).fetch_all(&mut *tx).await?;
            tx.commit().await?;
            Ok(LeaseSnapshot {
                now,
                live,
                leases: rows.into_iter().filter_map(lease_of_row).collect(),
            })
        })
        .await
    }

    /// One round's writes for replica `me`: renews the shards it `held`
    /// (each only if its token is still current), releases `release`, and
    /// claims `claim` (each only if still free or expired, with a new
    /// token). Returns what it holds afterwards, with the tokens. Shards
    /// lost meanwhile (another replica claimed them) are simply not in it.
    pub async fn lease_round(
        &self,
        me: &str,
        ttl: Duration,
        held: &[Held],
        release: &[u32],
        claim: &[u32],
    ) -> Result<Vec<Held>, StoreError> {
        const OP: &str = "lease_round";
        let pool = self.postgres(OP)?;
        let keep: Vec<&Held> = held
            .iter()
            .filter(|h| !release.contains(&h.shard))
            .collect();
        super::timed(&self.health, OP, async {
            let mut tx = pool.begin().await?;
            let mut now_held = Vec::new();
            for h in &keep {
                let renewed = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE leases SET expires_at = {DB_NOW} + $4 \
                     WHERE shard = $1 AND owner = $2 AND token = $3 AND expires_at > {DB_NOW}"
                )))
                .bind(i64::from(h.shard))
                .bind(me)
                .bind(h.token)
                .bind(ms(ttl))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if renewed == 1 {
                    now_held.push(**h);
                }
            }
            for shard in release {
                sqlx::query(
                    "UPDATE leases SET owner = NULL, expires_at = 0 WHERE shard = $1 AND owner = $2",
                )
                .bind(i64::from(*shard))
                .bind(me)
                .execute(&mut *tx)
                .await?;
            }
            for shard in claim {
                let token: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "UPDATE leases SET owner = $2, expires_at = {DB_NOW} + $3, token = token + 1 \
                     WHERE shard = $1 AND (owner IS NULL OR expires_at <= {DB_NOW}) \
                     RETURNING token"
                )))
                .bind(i64::from(*shard))
                .bind(me)
                .bind(ms(ttl))
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(token) = token {
                    now_held.push(Held {
                        shard: *shard,
                        token,
                    });
                }
            }
            tx.commit().await?;
            now_held.sort_by_key(|h| h.shard);
            Ok(now_held)
        })
        .await
    }

    /// Gives up every shard of `me` and its heartbeat (a clean stop), so the
    /// others take over at their next round instead of after the lease.
    pub async fn lease_leave(&self, me: &str) -> Result<(), StoreError> {
        const OP: &str = "lease_leave";
        let pool = self.postgres(OP)?;
        super::timed(&self.health, OP, async {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE leases SET owner = NULL, expires_at = 0 WHERE owner = $1")
                .bind(me)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM replicas WHERE name = $1")
                .bind(me)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM provider_counts WHERE replica = $1")
                .bind(me)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        })
        .await
    }

    /// The lease rows (for `status`: who owns which session's shard). Empty
    /// on SQLite.
    pub async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let Pools::Postgres(pool) = &self.pools else {
            return Ok(Vec::new());
        };
        let rows: Vec<LeaseRow> = sqlx::query_as(LEASE_ROWS)
            .fetch_all(pool)
            .await
            .map_err(query_error("leases"))?;
        Ok(rows.into_iter().filter_map(lease_of_row).collect())
    }

    /// Who holds each shard now by the database's clock (index = shard;
    /// `None`: free or expired), for `status`, the HTTP API and `/readyz`.
    /// Empty on SQLite (one daemon owns everything).
    pub async fn lease_owners(&self) -> Result<Vec<Option<String>>, StoreError> {
        let Pools::Postgres(pool) = &self.pools else {
            return Ok(Vec::new());
        };
        let rows: Vec<(i64, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT shard, CASE WHEN expires_at > {DB_NOW} THEN owner END FROM leases ORDER BY shard"
        )))
        .fetch_all(pool)
        .await
        .map_err(query_error("lease_owners"))?;
        let mut owners = vec![None; SHARDS as usize];
        for (shard, owner) in rows {
            if let Some(slot) = usize::try_from(shard).ok().and_then(|i| owners.get_mut(i)) {
                *slot = owner;
            }
        }
        Ok(owners)
    }

    /// [`Store::begin_remediation`] guarded by `fence`: in one transaction,
    /// the shard's lease row is locked and checked (owner, token, not
    /// expired by the database's clock) and only then the intent written.
    /// A replica that lost the shard gets [`StoreError::Fenced`] and must not
    /// make the call. Idempotent per intent key like the unguarded write.
    pub async fn begin_remediation_fenced(
        &self,
        r: &NewRemediation,
        fence: &Fence,
    ) -> Result<i64, StoreError> {
        const OP: &str = "begin_remediation";
        let pool = self.postgres(OP)?;
        let result = super::timed(&self.health, OP, async {
            let mut tx = pool.begin().await?;
            if !lock_fence(&mut tx, fence).await? {
                tx.rollback().await?;
                return Ok(None);
            }
            let id: i64 = insert_intent!(r).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok(Some(id))
        })
        .await?;
        result.ok_or(StoreError::Fenced { shard: fence.shard })
    }
}

/// Locks the fence's lease row until the end of `tx` and tells whether the
/// writer still holds it (owner, token, not expired by the database's
/// clock): a write guarded by it commits only while that is still true, and
/// a takeover (which updates the row) waits for the commit.
pub(super) async fn lock_fence(
    tx: &mut sqlx::PgConnection,
    fence: &Fence,
) -> Result<bool, sqlx::Error> {
    let holds: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT token FROM leases WHERE shard = $1 AND owner = $2 AND token = $3 \
         AND expires_at > {DB_NOW} FOR UPDATE"
    )))
    .bind(i64::from(fence.shard))
    .bind(&fence.owner)
    .bind(fence.token)
    .fetch_optional(tx)
    .await?;
    Ok(holds.is_some())
}
