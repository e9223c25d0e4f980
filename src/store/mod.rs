//! The store: the only module that knows SQL.
//!
//! Two backends behind one [`Store`]: SQLite (the zero-setup default, one
//! daemon) and PostgreSQL (several replicas sharing one database). It owns
//! opening the database (SQLite's file in WAL mode; a PostgreSQL pool),
//! running the embedded migrations of the backend (`migrations/` for SQLite,
//! `migrations/postgres/` for PostgreSQL), every query, and retention (old probes,
//! transitions and closed remediations; long-retired sessions). It
//! persists what the daemon needs to resume after a restart (session state,
//! backoff deadlines, restart history, in-flight remediations) and the history
//! the operator reads (probes, transitions, remediations).
//!
//! What it must not do: interpret the records. States, outcomes and results
//! are snake_case strings the daemon hands in; the state machine and the
//! restart policy live elsewhere and the store neither validates nor derives
//! them (the one derived value is a remediation's `duration_ms`). It never
//! receives secrets, and it caps free text ([`MAX_TEXT_CHARS`]) so a provider's
//! error page cannot bloat the file. It does not read the clock: every
//! timestamp is an argument.
//!
//! Writes: every write is a [`Write`], committed by [`Store::apply_batch`]
//! (one transaction per batch); the daemon's scheduler sends all of its
//! writes through one [`Writer`] task that batches them (group commit; the
//! durability of each kind and the crash window are in `writer.rs`).
//! Retention rolls old delivered probes up into per-session buckets
//! (`rollup.rs`), so the file is bounded by sessions, not time.
//!
//! Connections: writes go through a pool of one connection, so writers in this
//! process queue in the pool (fair, async) instead of spinning in SQLite's busy
//! handler; reads use a separate pool of read-only connections, which WAL lets
//! run beside the writer. `busy_timeout` covers other processes (the operator
//! CLI, a `sqlite3` shell).
//!
//! Backends: every query is written once, in SQL both dialects accept (`$N`
//! placeholders, which sqlx-sqlite binds by number; `ON CONFLICT .. DO
//! UPDATE`; `RETURNING`; no dialect-only functions; subqueries named), and
//! compiled for each backend by [`on_writer!`]/[`on_reader!`], which run the
//! same expression against whichever pool the store holds. Integers are
//! `i64` on both (PostgreSQL columns are `BIGINT`, booleans stored as 0/1
//! like SQLite's), so rows decode into the same structs. Only opening
//! (`open*`) and the migrations differ per backend. PostgreSQL: one pool
//! for reads and writes (MVCC lets them run side by side);
//! [`WRITE_TIMEOUT`] bounds writes the same way.

/// Runs `$body` with `$pool` bound to the store's write pool, whichever
/// backend it is: the same source compiled once per backend.
macro_rules! on_writer {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pools {
            $crate::store::Pools::Sqlite { writer: $pool, .. } => $body,
            $crate::store::Pools::Postgres($pool) => $body,
        }
    };
}

/// [`on_writer!`] for reads: SQLite's read-only pool, PostgreSQL's pool.
macro_rules! on_reader {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pools {
            $crate::store::Pools::Sqlite { reader: $pool, .. } => $body,
            $crate::store::Pools::Postgres($pool) => $body,
        }
    };
}

/// The restart intent's INSERT, bound to a [`NewRemediation`]: one query for
/// the three places an intent is written (alone, in a writer batch, fenced by
/// a lease). Idempotent per `intent_key`: a retry of an intent whose earlier
/// write timed out (and may have committed meanwhile) returns the existing
/// row's id instead of adding a second row.
macro_rules! insert_intent {
    ($r:expr) => {
        sqlx::query_scalar(
            "INSERT INTO remediations \
             (provider, session, started_at, action, reason, result, detail, intent_key) \
             VALUES ($1, $2, $3, $4, $5, $6, '', $7) \
             ON CONFLICT (intent_key) WHERE intent_key IS NOT NULL \
             DO UPDATE SET intent_key = excluded.intent_key \
             RETURNING id",
        )
        .bind(&$r.provider)
        .bind(&$r.session)
        .bind($r.started_at.as_millis())
        .bind(&$r.action)
        .bind(cap_text(&$r.reason))
        .bind(&$r.result)
        .bind(&$r.intent_key)
    };
}

mod history;
mod leases;
mod overview;
mod postgres;
mod records;
mod rollup;
mod shared;
#[macro_use]
mod sessions;
mod write;
mod writer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::PgPool;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use leases::{Fence, Held, LeaseSnapshot};
pub use overview::RemediationCount;
pub use records::{
    MAX_TEXT_CHARS, NewRemediation, ProbeRecord, ProbeRollup, RemediationRecord, RemediationUpdate,
    SessionRecord, StoredMachine, TransitionRecord,
};
pub use rollup::{HOURLY_FOR, KEEP_LAST_PROBES, ROLL_SESSIONS, RollupStats};
pub use shared::Limits;

pub use write::{Applied, Write};
pub use writer::Writer;

use crate::clock::Timestamp;

/// SQLite's migrations, embedded at build time from `migrations/` (its
/// subdirectories are not read: `postgres/` holds the other backend's).
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How long a connection waits for another process's write lock before the
/// query fails with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes the WAL file is truncated back to after a checkpoint resets it
/// (SQLite's `journal_size_limit`): what is left of the WAL at rest. 4 MiB
/// is about one checkpoint's worth (`wal_autocheckpoint`, 1000 pages).
pub const WAL_SIZE_LIMIT: u64 = 4 * 1024 * 1024;

/// How long a query waits for a pooled connection. Bounded so that a stuck
/// database surfaces as errors (and a failing `/readyz`) instead of hung tasks.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest the daemon waits for one write (a locked database, a stalled
/// disk): the scheduler loop must not stall behind it. A write that takes
/// longer fails with [`StoreError::WriteTimeout`] and counts as a failure.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// A write waiting longer than this makes `/readyz` fail.
pub const WRITE_STALL: Duration = Duration::from_secs(2);

/// How the daemon's writes are going, for `/readyz` and the metrics.
#[derive(Debug, Default)]
struct WriteHealth {
    inner: std::sync::Mutex<HealthInner>,
}

#[derive(Debug, Default)]
struct HealthInner {
    in_flight: u32,
    oldest: Option<std::time::Instant>,
    last_error: Option<String>,
    failures: std::collections::BTreeMap<&'static str, u64>,
}

/// A snapshot of [`Store::write_status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStatus {
    /// The last write failed (and none succeeded since): why.
    pub failing: Option<String>,
    /// A write has been waiting this long.
    pub waiting: Option<Duration>,
    /// Failed or timed-out writes so far, by store operation.
    pub failures: std::collections::BTreeMap<&'static str, u64>,
}

impl WriteHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, HealthInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A store write bounded by [`WRITE_TIMEOUT`] and recorded in the store's
/// write health.
async fn timed<T>(
    health: &WriteHealth,
    op: &'static str,
    fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    timed_ops(health, op, std::iter::once(op), fut).await
}

/// [`timed`] for a batch: a failure counts once for each write in it, under
/// that write's operation (a failed batch of 300 probes is 300 probes not
/// recorded).
async fn timed_batch<T>(
    health: &WriteHealth,
    op: &'static str,
    writes: &[Write],
    fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    timed_ops(health, op, writes.iter().map(Write::op), fut).await
}

async fn timed_ops<T>(
    health: &WriteHealth,
    op: &'static str,
    counted: impl Iterator<Item = &'static str>,
    fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    {
        let mut h = health.lock();
        h.in_flight += 1;
        h.oldest.get_or_insert_with(std::time::Instant::now);
    }
    let result = match tokio::time::timeout(WRITE_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(error)) => Err(StoreError::Query { op, error }),
        Err(_) => Err(StoreError::WriteTimeout {
            op,
            after: WRITE_TIMEOUT,
        }),
    };
    let mut h = health.lock();
    h.in_flight = h.in_flight.saturating_sub(1);
    if h.in_flight == 0 {
        h.oldest = None;
    }
    match &result {
        Ok(_) => h.last_error = None,
        Err(e) => {
            h.last_error = Some(e.to_string());
            for op in counted {
                *h.failures.entry(op).or_default() += 1;
            }
        }
    }
    result
}

impl WriteHealth {
    /// A write that failed before it reached the database (the writer's
    /// queue was full or closed, or its commit was not confirmed in time).
    fn failed(&self, op: &'static str, error: &StoreError) {
        let mut h = self.lock();
        h.last_error = Some(error.to_string());
        *h.failures.entry(op).or_default() += 1;
    }
}

/// Read connections; the daemon's reads are small and the API is low-traffic.
const READ_CONNECTIONS: u32 = 4;

/// Probes deleted per statement by [`Store::prune_probes`]. Each batch is one
/// short write transaction (milliseconds), so probes and state saves of the
/// running daemon are never held up for long by a large retention sweep.
pub const PRUNE_BATCH: u64 = 1000;

/// Pause between prune batches: gives writers in other processes, which poll
/// through SQLite's busy handler, a window to take the lock.
pub(crate) const PRUNE_PAUSE: Duration = Duration::from_millis(5);

/// An infrastructure failure of the store. (A failed probe is data, stored as
/// a record; this is for the database itself.)
///
/// The underlying error's text is part of each message (and not also exposed
/// as `source()`), so logging the error with `%` or printing an error chain
/// shows the cause exactly once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database's directory could not be created.
    #[error("cannot create database directory {}: {error}", path.display())]
    CreateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    /// SQLite could not open the file (permissions, not a database, ...).
    #[error("cannot open database {}: {error}", path.display())]
    Open { path: PathBuf, error: sqlx::Error },
    /// The file [`Store::open_read_only`] was given does not exist.
    #[error("database {} does not exist", path.display())]
    Missing { path: PathBuf },
    /// The file exists but was never initialised by the daemon.
    #[error("database {} has no wa-watchdog schema (the daemon creates it on its first start)", path.display())]
    NoSchema { path: PathBuf },
    /// A read-only open found a schema older than this binary's.
    #[error(
        "database {} lacks schema migration {missing} that this binary needs: restart the daemon to migrate it",
        path.display()
    )]
    SchemaOutdated { path: PathBuf, missing: i64 },
    /// Running the embedded migrations failed (or the database was migrated by a
    /// newer or different build).
    #[error("cannot migrate database {}: {error}", path.display())]
    Migrate { path: PathBuf, error: MigrateError },
    /// A query failed; `op` names the store operation.
    #[error("store {op} failed: {error}")]
    Query {
        op: &'static str,
        error: sqlx::Error,
    },
    /// A write was attempted on a store opened with [`Store::open_read_only`].
    #[error("store {op} refused: the database is open read-only")]
    ReadOnly { op: &'static str },
    /// A write did not finish within [`WRITE_TIMEOUT`] (the database is
    /// locked by another process, the disk stalls).
    #[error("store {op} did not finish within {}s (database locked or stalled)", after.as_secs_f64())]
    WriteTimeout { op: &'static str, after: Duration },
    /// A stored value cannot be turned back into a record.
    #[error("corrupt row {row}: {detail}")]
    Corrupt { row: String, detail: String },
    /// The PostgreSQL database could not be reached or opened; `target` is
    /// the URL without user and password.
    #[error("cannot open database {target}: {error}")]
    Connect { target: String, error: sqlx::Error },
    /// The PostgreSQL URL does not parse (its text is not repeated: it may
    /// hold a password).
    #[error(
        "the PostgreSQL database URL is not valid (expected postgres://[user[:password]@]host[:port]/database[?options])"
    )]
    BadUrl,
    /// The PostgreSQL database has no schema, or an older one, and this
    /// read-only open cannot migrate it.
    #[error("database {target} {problem}")]
    Schema { target: String, problem: String },
    /// Running PostgreSQL migrations failed.
    #[error("cannot migrate database {target}: {error}")]
    MigrateRemote { target: String, error: MigrateError },
    /// A lease operation on a store that is not shared (SQLite).
    #[error("store {op} needs a PostgreSQL database (replicas share one; SQLite has one daemon)")]
    NotShared { op: &'static str },
    /// A fenced write found that this replica no longer holds the shard
    /// (its lease expired, another replica took it over): nothing was written.
    #[error("shard {shard} is no longer held by this replica (lease lost): not written")]
    Fenced { shard: u32 },
    /// A restart intent of a provider shared by replicas would exceed its
    /// `max_concurrent_restarts` or `restart_budget`, counted over every
    /// replica: nothing was written, the restart waits.
    #[error("restart of {provider} not recorded: {what} across replicas")]
    Limit {
        provider: String,
        what: &'static str,
    },
    /// [`Store::update_remediation`] was given an id that is not in the table.
    #[error("store update_remediation failed: no remediation with id {id}")]
    UnknownRemediation { id: i64 },
    /// The writer's queue ([`Writer`]) is full: the database has not kept up
    /// (locked or stalled) for a while; the write is dropped, not waited for.
    #[error(
        "store {op} dropped: the write queue is full ({queued} writes waiting; database locked or stalled)"
    )]
    QueueFull { op: &'static str, queued: usize },
    /// The batch a queued write was in failed (the batch's error, as text).
    #[error("store {op} failed: {detail}")]
    Failed { op: &'static str, detail: String },
    /// The writer has stopped (the daemon is shutting down).
    #[error("store {op} refused: the writer has stopped")]
    WriterClosed { op: &'static str },
}

/// Maps a sqlx error of operation `op` into [`StoreError::Query`].
fn query_error(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| StoreError::Query { op, error }
}

/// The connections of one backend.
#[derive(Debug, Clone)]
pub(crate) enum Pools {
    Sqlite {
        /// One connection: every write of this process goes through it.
        writer: SqlitePool,
        /// Read-only connections; the same pool as `writer` when read-only.
        reader: SqlitePool,
    },
    /// Reads and writes share the pool.
    Postgres(PgPool),
}

/// Which backend a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Handle to the database. Cheap to clone (the pools are shared).
#[derive(Debug, Clone)]
pub struct Store {
    pools: Pools,
    read_only: bool,
    health: std::sync::Arc<WriteHealth>,
}

impl Store {
    /// Opens the database a config names (`daemon.database`): SQLite at a
    /// path or PostgreSQL at a URL, migrating it.
    pub async fn open_database(db: &crate::config::Database) -> Result<Store, StoreError> {
        match db {
            crate::config::Database::Sqlite(path) => Store::open(path).await,
            crate::config::Database::Postgres(url) => Store::open_postgres(url.expose()).await,
        }
    }

    /// [`Store::open_database`] read-only, for the operator CLI: no
    /// migrations, writes refused.
    pub async fn open_database_read_only(
        db: &crate::config::Database,
    ) -> Result<Store, StoreError> {
        match db {
            crate::config::Database::Sqlite(path) => Store::open_read_only(path).await,
            crate::config::Database::Postgres(url) => {
                Store::open_postgres_read_only(url.expose()).await
            }
        }
    }

    /// Which backend this store runs on.
    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// How writes are going: the last one failed, one is waiting, failures
    /// so far (for `/readyz` and `wa_watchdog_store_write_failures_total`).
    pub fn write_status(&self) -> WriteStatus {
        let h = self.health.lock();
        WriteStatus {
            failing: h.last_error.clone(),
            waiting: h.oldest.map(|t| t.elapsed()),
            failures: h.failures.clone(),
        }
    }

    /// Opens (creating the file and its parent directory if missing) the
    /// database at `path` for the daemon, and runs the embedded migrations.
    ///
    /// Settings: WAL journal (readers never block the writer),
    /// `synchronous=NORMAL` (durable across process crashes; a power cut can
    /// lose the last commits, never corrupt the file), `busy_timeout` 5 s,
    /// foreign keys on, the WAL file truncated back to [`WAL_SIZE_LIMIT`].
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Directories it creates are 0700 (the database holds chat ids);
            // an existing directory keeps its mode.
            let mut builder = tokio::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            builder.mode(0o700);
            builder
                .create(dir)
                .await
                .map_err(|error| StoreError::CreateDir {
                    path: dir.to_owned(),
                    error,
                })?;
        }
        create_private(path).await?;

        let open_error = |error| StoreError::Open {
            path: path.to_owned(),
            error,
        };
        let write_options = connect_options(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // The WAL file keeps its high-water size after a checkpoint
            // resets it; this truncates what is left past the limit, so a
            // burst (a roll-up pass, a backlog of batches) does not leave a
            // file of that size behind for good.
            .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string());
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(PING_BEFORE_ACQUIRE)
            .connect_with(write_options)
            .await
            .map_err(open_error)?;
        if let Err(error) = MIGRATOR.run(&writer).await {
            writer.close().await;
            return Err(StoreError::Migrate {
                path: path.to_owned(),
                error,
            });
        }
        // Opened after the writer has switched the file to WAL (a persistent
        // setting), so readers need not, and cannot, set it themselves.
        let reader = match read_pool(path).await {
            Ok(reader) => reader,
            Err(error) => {
                writer.close().await;
                return Err(open_error(error));
            }
        };
        Ok(Store {
            pools: Pools::Sqlite { writer, reader },
            read_only: false,
            health: Default::default(),
        })
    }

    /// Opens an existing database read-only, for the operator CLI while the
    /// daemon runs. Runs no migrations; fails with a message naming the path
    /// if the file does not exist, was never initialised, or lacks a migration
    /// this binary expects. Every write method then returns
    /// [`StoreError::ReadOnly`] (and SQLite would refuse it anyway).
    pub async fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        match tokio::fs::metadata(path).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing {
                    path: path.to_owned(),
                });
            }
            // Anything else (a directory, no permission) SQLite reports
            // below, with the path.
            _ => {}
        }
        let reader = read_pool(path).await.map_err(|error| StoreError::Open {
            path: path.to_owned(),
            error,
        })?;
        if let Err(e) = check_schema(&reader, path).await {
            reader.close().await;
            return Err(e);
        }
        Ok(Store {
            pools: Pools::Sqlite {
                writer: reader.clone(),
                reader,
            },
            read_only: true,
            health: Default::default(),
        })
    }

    /// Closes every connection, waiting for queries in flight. Later calls fail.
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { writer, reader } => {
                reader.close().await;
                writer.close().await;
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }

    /// Checks that the database answers (for `/readyz`). Uses the write
    /// connection, since that is the one the daemon cannot work without.
    pub async fn ping(&self) -> Result<(), StoreError> {
        // Not through `timed`: a ping is no write, and /readyz bounds it.
        on_writer!(self, |w| sqlx::query("SELECT 1").execute(w).await.map(drop))
            .map_err(query_error("ping"))
    }

    /// Deletes probes older than `before` (`at < before`) and returns how many
    /// went. Works in batches of [`PRUNE_BATCH`], oldest first, so a sweep of
    /// millions of rows never holds the write lock for long, and an
    /// interrupted sweep has still removed the oldest.
    pub async fn prune_probes(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.prune_batched(
            "prune_probes",
            "DELETE FROM probes WHERE id IN \
             (SELECT id FROM probes WHERE at < $1 ORDER BY at LIMIT $2)",
            before,
        )
        .await
    }

    /// Retention of everything the daemon keeps: probes and transitions
    /// older than `before`, remediations started before it that are closed
    /// (an open one may still be followed up), and sessions retired before
    /// it together with all their history. Returns how many rows went. In
    /// batches like [`Store::prune_probes`].
    pub async fn prune_history(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut total = self.prune_probes(before).await?;
        total += self
            .prune_batched(
                "prune_transitions",
                "DELETE FROM transitions WHERE id IN \
                 (SELECT id FROM transitions WHERE at < $1 ORDER BY at LIMIT $2)",
                before,
            )
            .await?;
        total += self
            .prune_batched(
                "prune_remediations",
                "DELETE FROM remediations WHERE id IN \
                 (SELECT id FROM remediations WHERE started_at < $1 \
                  AND (finished_at IS NOT NULL OR result = 'dry_run') \
                  ORDER BY started_at LIMIT $2)",
                before,
            )
            .await?;
        // Driven from the (few) retired sessions through each table's
        // (provider, session, ..) index: a join the planner may start from
        // the history side scans every probe (SQLite did: over a second
        // per sweep at 10k sessions, so the sweep timed out and nothing was
        // pruned).
        macro_rules! of_retired {
            ($table:literal) => {
                concat!(
                    "DELETE FROM ", $table, " WHERE id IN (SELECT t.id FROM ", $table, " t \
                     WHERE (t.provider, t.session) IN (SELECT provider, session FROM sessions \
                     WHERE retired_at IS NOT NULL AND retired_at < $1) LIMIT $2)"
                )
            };
        }
        // probe_rollups has no id: its own DELETE, in batches by key.
        total += self
            .prune_batched(
                "prune_retired_sessions",
                "DELETE FROM probe_rollups WHERE (provider, session, bucket_start, span_ms, outcome) \
                 IN (SELECT t.provider, t.session, t.bucket_start, t.span_ms, t.outcome \
                 FROM probe_rollups t WHERE (t.provider, t.session) IN \
                 (SELECT provider, session FROM sessions \
                 WHERE retired_at IS NOT NULL AND retired_at < $1) LIMIT $2)",
                before,
            )
            .await?;
        for sql in [
            of_retired!("probes"),
            of_retired!("transitions"),
            of_retired!("remediations"),
        ] {
            total += self
                .prune_batched("prune_retired_sessions", sql, before)
                .await?;
        }
        const OP: &str = "prune_retired_sessions";
        // A session that came back meanwhile has retired_at NULL again; one
        // that got new rows since is kept until the next sweep.
        total += on_writer!(self, |w| timed(
            &self.health,
            OP,
            sqlx::query(
                "DELETE FROM sessions WHERE retired_at IS NOT NULL AND retired_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM probes p \
                     WHERE p.provider = sessions.provider AND p.session = sessions.session) \
                 AND NOT EXISTS (SELECT 1 FROM probe_rollups u \
                     WHERE u.provider = sessions.provider AND u.session = sessions.session) \
                 AND NOT EXISTS (SELECT 1 FROM transitions t \
                     WHERE t.provider = sessions.provider AND t.session = sessions.session) \
                 AND NOT EXISTS (SELECT 1 FROM remediations m \
                     WHERE m.provider = sessions.provider AND m.session = sessions.session)",
            )
            .bind(before.as_millis())
            .execute(w),
        )
        .await
        .map(|r| r.rows_affected()))?;
        Ok(total)
    }

    /// Runs `sql` (a DELETE of at most `$2` rows older than `$1`) until a
    /// batch deletes fewer than [`PRUNE_BATCH`] rows.
    async fn prune_batched(
        &self,
        op: &'static str,
        sql: &'static str,
        before: Timestamp,
    ) -> Result<u64, StoreError> {
        self.check_writable(op)?;
        let mut total = 0;
        loop {
            let deleted = on_writer!(self, |w| timed(
                &self.health,
                op,
                sqlx::query(sql)
                    .bind(before.as_millis())
                    .bind(records::u64_to_i64(PRUNE_BATCH))
                    .execute(w),
            )
            .await
            .map(|r| r.rows_affected()))?;
            total += deleted;
            if deleted < PRUNE_BATCH {
                return Ok(total);
            }
            tokio::time::sleep(PRUNE_PAUSE).await;
        }
    }

    fn check_writable(&self, op: &'static str) -> Result<(), StoreError> {
        if self.read_only {
            Err(StoreError::ReadOnly { op })
        } else {
            Ok(())
        }
    }
}

/// Options shared by every connection.
fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
}

/// sqlx pings a pooled connection before handing it out by default: for a
/// network database that finds a dropped connection, for a SQLite file
/// (nothing in between to drop) it is one more round trip to the
/// connection's worker thread per batch and per read, ~1 in 7 of the
/// writer's hand-offs at 20 probes a second.
const PING_BEFORE_ACQUIRE: bool = false;

/// A pool of read-only connections. Connects eagerly so that a missing or
/// unreadable file fails here, with the path, not on the first query.
async fn read_pool(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(PING_BEFORE_ACQUIRE)
        .connect_with(connect_options(path).read_only(true))
        .await
}

/// Creates the database file with mode 0600 if it does not exist yet. The
/// database holds chat ids (phone numbers); SQLite gives its -wal and -shm
/// files the database's mode, so this covers them too. (Under systemd the
/// state directory is private anyway; this protects other setups.)
async fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    match options.open(path).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StoreError::Open {
            path: path.to_owned(),
            error: sqlx::Error::Io(error),
        }),
    }
}

/// Fails unless every embedded migration has been applied to the database
/// behind `pool` (read-only: it cannot migrate, and queries against an older
/// schema would fail with confusing "no such column" errors).
async fn check_schema(pool: &SqlitePool, path: &Path) -> Result<(), StoreError> {
    let open_error = |error| StoreError::Open {
        path: path.to_owned(),
        error,
    };
    // sqlite_master is SQLite's catalogue; this function is SQLite-specific
    // like the rest of opening.
    let has_table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(pool)
    .await
    .map_err(open_error)?;
    if has_table.is_none() {
        return Err(StoreError::NoSchema {
            path: path.to_owned(),
        });
    }
    let applied: HashSet<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_all(pool)
            .await
            .map_err(open_error)?
            .into_iter()
            .collect();
    match MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .find(|m| !applied.contains(&m.version))
    {
        Some(m) => Err(StoreError::SchemaOutdated {
            path: path.to_owned(),
            missing: m.version,
        }),
        None => Ok(()),
    }
}
