//! The store against real SQLite files in a temporary directory and real
//! PostgreSQL databases on a throwaway cluster (`common::postgres`): the
//! behaviour tests run on both backends ([`matrix!`]); the tests of opening
//! (files, modes, WAL, migrations) are SQLite's own.

use std::path::{Path, PathBuf};

use crate::common::backends::{Backend, matrix};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;
use wa_watchdog::clock::Timestamp;
use wa_watchdog::config::{Database, Secret, SecretSource};
use wa_watchdog::store::{
    MAX_TEXT_CHARS, NewRemediation, PRUNE_BATCH, ProbeRecord, RemediationUpdate, SessionRecord,
    Store, StoreError, StoredMachine, TransitionRecord,
};

const T0: i64 = 1_764_000_000_000; // 2025-11-24, unix ms

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("wa-watchdog.db")
}

/// A fresh, empty database on one backend (a file in a temporary
/// directory; a new database on the test PostgreSQL cluster).
struct TestDb {
    _dir: Option<TempDir>,
    location: Database,
}

impl TestDb {
    async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let location = Database::Sqlite(db_path(&dir));
                TestDb {
                    _dir: Some(dir),
                    location,
                }
            }
            Backend::Postgres => TestDb {
                _dir: None,
                location: Database::Postgres(Secret::new(
                    crate::common::postgres::fresh_database().await,
                    SecretSource::Inline,
                )),
            },
        }
    }

    /// Another store on this database (another daemon or replica).
    async fn open(&self) -> Store {
        Store::open_database(&self.location)
            .await
            .expect("open store")
    }

    async fn open_read_only(&self) -> Result<Store, StoreError> {
        Store::open_database_read_only(&self.location).await
    }

    /// Runs `sql` with integer `binds` on a connection of its own.
    async fn execute(&self, sql: &'static str, binds: &[i64]) {
        match &self.location {
            Database::Sqlite(path) => {
                let mut conn = raw(path).await;
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.execute(&mut conn).await.expect("raw sql");
            }
            Database::Postgres(url) => {
                let mut conn = sqlx::postgres::PgConnection::connect(url.expose())
                    .await
                    .expect("raw connection");
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.execute(&mut conn).await.expect("raw sql");
            }
        }
    }
}

async fn open_temp(backend: Backend) -> (TestDb, Store) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    (db, store)
}

matrix!(
    sessions_round_trip_every_field,
    saving_clears_retired_at,
    retiring_hides_a_session_but_keeps_its_history,
    recent_probes_are_newest_first_with_since_and_limit,
    recent_transitions_are_newest_first_with_since_and_limit,
    remediation_lifecycle_pending_called_healed,
    updating_an_unknown_remediation_is_an_error,
    remediations_since_skips_dry_runs_older_rows_and_other_providers,
    prune_deletes_only_older_probes_across_batches,
    free_text_is_capped_on_a_char_boundary,
    read_only_store_reads_beside_the_daemon_and_refuses_writes,
    history_needs_a_saved_session,
    a_closed_store_fails_instead_of_hanging,
    retention_prunes_transitions_closed_remediations_and_long_retired_sessions,
);
matrix!(multi_thread: concurrent_writers_all_succeed);

/// A raw connection beside the store, to look at what it wrote.
async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("raw connection")
}

/// A session with every optional field set.
fn full_session(provider: &str, session: &str) -> SessionRecord {
    SessionRecord {
        provider: provider.into(),
        session: session.into(),
        machine: StoredMachine {
            state: "desynced".into(),
            since: Timestamp(T0),
            reason: "3 desyncs in a row".into(),
            consecutive_failures: 3,
            streak_has_desync: true,
            first_failure_at: Some(Timestamp(T0 - 30_000)),
            last_success_at: Some(Timestamp(T0 - 300_000)),
            last_outcome: Some("desync".into()),
            last_probe_at: Some(Timestamp(T0 - 1)),
            not_ready_since: Some(Timestamp(T0 - 2)),
            backoff_step: 2,
            next_restart_at: Some(Timestamp(T0 + 60_000)),
            restart_history: vec![Timestamp(T0 - 3_600_000), Timestamp(T0 - 60_000)],
            restart_started_at: Some(Timestamp(T0 - 3)),
            healthy_since: Some(Timestamp(T0 - 4)),
            paused_until: Some(Timestamp(T0 + 86_400_000)),
        },
        next_probe_at: Some(Timestamp(T0 + 15_000)),
        chat_id: Some("5511999990001@c.us".into()),
        retired_at: None,
        updated_at: Timestamp(T0 + 5),
    }
}

/// A fresh session with every optional field empty.
fn bare_session(provider: &str, session: &str) -> SessionRecord {
    SessionRecord::new(provider, session, "unknown", Timestamp(T0))
}

fn probe(provider: &str, session: &str, at: i64, outcome: &str) -> ProbeRecord {
    ProbeRecord {
        provider: provider.into(),
        session: session.into(),
        at: Timestamp(at),
        kind: "probe".into(),
        outcome: outcome.into(),
        http_status: Some(201),
        latency_ms: 120,
        detail: format!("probe at {at}"),
    }
}

fn transition(at: i64, from: &str, to: &str) -> TransitionRecord {
    TransitionRecord {
        provider: "waha".into(),
        session: "default".into(),
        at: Timestamp(at),
        from_state: from.into(),
        to_state: to.into(),
        reason: format!("{from} -> {to}"),
    }
}

fn remediation(provider: &str, session: &str, started_at: i64, result: &str) -> NewRemediation {
    NewRemediation {
        provider: provider.into(),
        session: session.into(),
        started_at: Timestamp(started_at),
        action: "restart".into(),
        reason: "desync confirmed".into(),
        result: result.into(),
        intent_key: NewRemediation::new_key(provider, session, Timestamp(started_at)),
    }
}

#[tokio::test]
async fn open_creates_the_file_and_its_directory_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state").join("nested").join("wa.db");
    let store = Store::open(&path).await.expect("open");
    assert!(path.is_file());
    store.ping().await.expect("ping");

    let mut conn = raw(&path).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("journal_mode");
    assert_eq!(mode, "wal");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "database holds phone numbers: owner only"
        );
        for created in [
            dir.path().join("state"),
            dir.path().join("state").join("nested"),
        ] {
            let mode = std::fs::metadata(&created)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{}", created.display());
        }
    }
    store.close().await;
}

#[tokio::test]
async fn opening_twice_runs_migrations_once_and_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = Store::open(&path).await.expect("first open");
    store
        .save_session(&full_session("waha", "default"))
        .await
        .expect("save");
    store.close().await;

    let store = Store::open(&path).await.expect("second open");
    let again = Store::open(&path).await.expect("concurrent third open");
    assert_eq!(store.load_sessions().await.expect("load").len(), 1);
    assert_eq!(again.load_sessions().await.expect("load").len(), 1);

    let mut conn = raw(&path).await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("count migrations");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("migrations dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_file()))
        .count();
    assert_eq!(applied, i64::try_from(files).expect("count"));
}

async fn sessions_round_trip_every_field(backend: Backend) {
    let (_db, store) = open_temp(backend).await;
    let full = full_session("waha", "sales");
    let bare = bare_session("green-1", "1101000001");
    store.save_session(&full).await.expect("save full");
    store.save_session(&bare).await.expect("save bare");

    assert_eq!(
        store.session("waha", "sales").await.expect("get"),
        Some(full.clone())
    );
    assert_eq!(
        store.session("green-1", "1101000001").await.expect("get"),
        Some(bare.clone())
    );
    assert_eq!(store.session("waha", "nope").await.expect("get"), None);
    // Ordered by provider, then session.
    assert_eq!(
        store.load_sessions().await.expect("load"),
        vec![bare.clone(), full.clone()]
    );

    // Upsert replaces every field, including clearing options.
    let mut healed = bare_session("waha", "sales");
    healed.machine.state = "healthy".into();
    healed.machine.restart_history = vec![Timestamp(T0 + 1)];
    healed.updated_at = Timestamp(T0 + 100);
    store.save_session(&healed).await.expect("upsert");
    assert_eq!(
        store.session("waha", "sales").await.expect("get"),
        Some(healed)
    );
    assert_eq!(store.load_sessions().await.expect("load").len(), 2);
}

async fn saving_clears_retired_at(backend: Backend) {
    let (_db, store) = open_temp(backend).await;
    let mut rec = full_session("waha", "default");
    rec.retired_at = Some(Timestamp(T0));
    store.save_session(&rec).await.expect("save");
    let stored = store
        .session("waha", "default")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(stored.retired_at, None);
    assert_eq!(store.load_sessions().await.expect("load").len(), 1);
}

async fn retiring_hides_a_session_but_keeps_its_history(backend: Backend) {
    let (_db, store) = open_temp(backend).await;
    store
        .save_session(&full_session("waha", "default"))
        .await
        .expect("save");
    store
        .save_session(&bare_session("waha", "other"))
        .await
        .expect("save");
    store
        .insert_probe(&probe("waha", "default", T0, "delivered"))
        .await
        .expect("probe");
    store
        .insert_transition(&transition(T0, "unknown", "healthy"))
        .await
        .expect("transition");

    store
        .retire_session("waha", "default", Timestamp(T0 + 10))
        .await
        .expect("retire");
    // A second retirement keeps the first time; an unknown session is a no-op.
    store
        .retire_session("waha", "default", Timestamp(T0 + 20))
        .await
        .expect("retire again");
    store
        .retire_session("waha", "ghost", Timestamp(T0))
        .await
        .expect("retire unknown");

    let active = store.load_sessions().await.expect("load");
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].session, "other");
    assert_eq!(store.list_sessions(false).await.expect("list"), active);
    let all = store.list_sessions(true).await.expect("list all");
    assert_eq!(all.len(), 2);
    let retired = store
        .session("waha", "default")
        .await
        .expect("get")
        .expect("retired row stays");
    assert_eq!(retired.retired_at, Some(Timestamp(T0 + 10)));

    assert_eq!(
        store
            .recent_probes("waha", "default", None, 10)
            .await
            .expect("probes")
            .len(),
        1
    );
    assert_eq!(
        store
            .recent_transitions("waha", "default", None, 10)
            .await
            .expect("transitions")
            .len(),
        1
    );

    // Saving it again (rediscovered) makes it active.
    store
        .save_session(&full_session("waha", "default"))
        .await
        .expect("save again");
    assert_eq!(store.load_sessions().await.expect("load").len(), 2);
}

async fn recent_probes_are_newest_first_with_since_and_limit(backend: Backend) {
    let (_db, store) = open_temp(backend).await;
    store
        .save_session(&bare_session("waha", "default"))
        .await
        .expect("save");
    store
        .save_session(&bare_session("waha", "other"))
        .await
        .expect("save");
    for i in 0..5 {
        store
            .insert_probe(&probe("waha", "default", T0 + i * 1000, "delivered"))
            .await
            .expect("probe");
    }
    // Same millisecond as the newest: insertion order breaks the tie.
    let mut last = probe("waha", "default", T0 + 4000, "desync");
    last.http_status = None;
    last.latency_ms = 20_000;
    store.insert_probe(&last).await.expect("probe");
    store
        .insert_probe(&probe("waha", "other", T0 + 9000, "delivered"))
        .await
        .expect("other session");

    let all = store
        .recent_probes("waha", "default", None, 100)
        .await
        .expect("all");
    let ats: Vec<i64> = all.iter().map(|p| p.at.as_millis()).collect();
    assert_eq!(
        ats,
        vec![T0 + 4000, T0 + 4000, T0 + 3000, T0 + 2000, T0 + 1000, T0]
    );
    assert_eq!(all[0], last);
    assert_eq!(all[1], probe("waha", "default", T0 + 4000, "delivered"));

    let limited = store
        .recent_probes("waha", "default", None, 2)
        .await
        .expect("limited");
    assert_eq!(limited, all[..2].to_vec());

    let since = store
        .recent_probes("waha", "default", Some(Timestamp(T0 + 2000)), 100)
        .await
        .expect("since");
    assert_eq!(since, all[..4].to_vec(), "since is inclusive");

    assert!(
        store
            .recent_probes("waha", "default", None, 0)
            .await
            .expect("limit 0")
            .is_empty()
    );
}

async fn recent_transitions_are_newest_first_with_since_and_limit(backend: Backend) {
    let (_db, store) = open_temp(backend).await;
    store
        .save_session(&bare_session("waha", "default"))
        .await
        .expect("save");
    let steps = [
        transition(T0, "unknown", "healthy"),
        transition(T0 + 10, "healthy", "suspect"),
        transition(T0 + 20, "suspect", "desynced"),
        transition(T0 + 30, "desynced", "restarting"),
    ];
    for t in &steps {
        store.insert_transition(t).await.expect("transition");
    }
    let all = store
        .recent_transitions("waha", "default", None, 10)
        .await
        .expect("all");
    let newest_first: Vec<TransitionRecord> = steps.iter().rev().cloned().collect();
    assert_eq!(all, newest_first);
    assert_eq!(
        store
            .recent_transitions("waha", "default", Some(Timestamp(T0 + 15)), 1)
            .await
            .expect("since + limit"),
        vec![steps[3].clone()]
    );
    assert!(
        store
            .recent_transitions("waha", "other", None, 10)
            .await
            .expect("other")
            .is_empty()
    );
}

async fn remediation_lifecycle_pending_called_healed(backend: Backend) {
    let (_db, store) = open_temp(backend).await;
    store
        .save_session(&bare_session("waha", "default"))
        .await
        .expect("save");
    let id = store
        .begin_remediation(&remediation("waha", "default", T0, "pending"))
        .await
        .expect("begin");

    let [pending] = store
        .recent_remediations("waha", "default", None, 10)
        .await
        .expect("recent")
        .try_into()
        .expect("one row");
    assert_eq!(pending.id, id);
    assert_eq!(pending.result, "pending");
    assert_eq!(pending.detail, "");
    assert_eq!(
        (
            pending.finished_at,
            pending.duration_ms,
            pending.recovery_ms
        ),
        (None, None, None)
    );

    store
        .update_remediation(
            id,
            &RemediationUpdate {
                result: "called".into(),
                detail: "201 STARTING".into(),
                finished_at: None,
                recovery_ms: None,
            },
        )
        .await
        .expect("called");
    let called = &store
        .recent_remediations("waha", "default", None, 10)
        .await
        .expect("recent")[0];
    assert_eq!(called.result, "called");
    assert_eq!(called.detail, "201 STARTING");
    assert_eq!(called.finished_at, None);
    assert_eq!(called.duration_ms, None);

    store
        .update_remediation(
            id,
            &RemediationUpdate {
                result: "healed".into(),
                detail: "verification canary delivered".into(),
                finished_at: Some(Timestamp(T0 + 42_500)),
                recovery_ms: Some(95_000),
            },
        )
        .await
        .expect("healed");
    let healed = &store
        .recent_remediations("waha", "default", None, 10)
        .await
        .expect("recent")[0];
    assert_eq!(healed.id, id);
    assert_eq!(healed.started_at, Timestamp(T0));
    assert_eq!(healed.action, "restart");
    assert_eq!(healed.reason, "desync confirmed");
    assert_eq!(healed.result, "healed");
    assert_eq!(healed.detail, "verification canary delivered");
    assert_eq!(healed.finished_at, Some(Timestamp(T0 + 42_500)));
    assert_eq!(healed.duration_ms, Some(42_500));
    assert_eq!(healed.recovery_ms, Some(95_000));

    // A finish before the start (the wall clock stepped back) gives 0, not a negative.
    let id2 = store
        .begin_remediation(&remediation("waha", "default", T0 + 100_000, "pending"))
        .await
        .expect("begin 2");
    assert_ne!(id2, id);
    store
        .update_remediation(
            id2,
            &RemediationUpdate {
                result: "failed".into(),
                detail: "500".into(),
                finished_at: Some(Timestamp(T0 + 99_000)),
                recovery_ms: None,
            },
        )
        .await
        .expect("failed");
    let recent = store
        .recent_remediations("waha", "default", None, 10)
        .await
        .expect("recent");
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].id, id2, "newest first");
    assert_eq!(recent[0].duration_ms, Some(0));
    assert_eq!(
        store
            .recent_remediations("waha", "default", Some(Timestamp(T0 + 1)), 10)
            .await
            .expect("since")
            .len(),
        1
    );
}

async fn updating_an_unknown_remediation_is_an_error(backend: Backend) {
    let (_db, store) = open_temp(backend).await;
    let err = store
        .update_remediation(
            4242,
            &RemediationUpdate {
                result: "healed".into(),
                detail: String::new(),
                finished_at: None,
                recovery_ms: None,
            },
        )
        .await
        .expect_err("unknown id");
    assert!(
        matches!(err, StoreError::UnknownRemediation { id: 4242 }),
        "{err}"
    );
}

async fn remediations_since_skips_dry_runs_older_rows_and_other_providers(backend: Backend) {
    let (_db, store) = open_temp(backend).await;
    for (p, s) in [("waha", "a"), ("waha", "b"), ("green-1", "g")] {
        store.save_session(&bare_session(p, s)).await.expect("save");
    }
    let old = store
        .begin_remediation(&remediation("waha", "a", T0 - 1, "pending"))
        .await
        .expect("old");
    let _dry = store
        .begin_remediation(&remediation("waha", "a", T0 + 5, "dry_run"))
        .await
        .expect("dry");
    let late = store
        .begin_remediation(&remediation("waha", "a", T0 + 20, "pending"))
        .await
        .expect("late");
    let early = store
        .begin_remediation(&remediation("waha", "b", T0, "pending"))
        .await
        .expect("early");
    let _other = store
        .begin_remediation(&remediation("green-1", "g", T0 + 1, "pending"))
        .await
        .expect("other provider");
    store
        .update_remediation(
            late,
            &RemediationUpdate {
                result: "timeout".into(),
                detail: "still STARTING".into(),
                finished_at: Some(Timestamp(T0 + 140)),
                recovery_ms: None,
            },
        )
        .await
        .expect("update");

    let since = store
        .remediations_since("waha", Timestamp(T0))
        .await
        .expect("since");
    let ids: Vec<i64> = since.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![early, late], "oldest first, at-or-after since");
    assert!(!ids.contains(&old));
    assert_eq!(since[1].result, "timeout");

    // dry runs still show up in the session's history.
    assert_eq!(
        store
            .recent_remediations("waha", "a", None, 10)
            .await
            .expect("recent")
            .len(),
        3
    );
}

async fn prune_deletes_only_older_probes_across_batches(backend: Backend) {
    let (db, store) = open_temp(backend).await;
    store
        .save_session(&bare_session("waha", "default"))
        .await
        .expect("save");
    let batch = i64::try_from(PRUNE_BATCH).expect("batch");
    let old = 2 * batch + 345;
    let cutoff = T0 + old;
    // Old rows through the API would take a while; one raw statement is
    // quick and writes the same columns (a recursive CTE: both dialects).
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $2) \
         INSERT INTO probes (provider, session, at, kind, outcome, latency_ms, detail) \
         SELECT 'waha', 'default', $1 + i, 'probe', 'delivered', 1, '' FROM n",
        &[T0, old],
    )
    .await;
    for at in [cutoff, cutoff + 1, cutoff + 1000] {
        store
            .insert_probe(&probe("waha", "default", at, "delivered"))
            .await
            .expect("insert new");
    }

    let deleted = store.prune_probes(Timestamp(cutoff)).await.expect("prune");
    assert_eq!(deleted, u64::try_from(old).expect("count"));
    let left = store
        .recent_probes("waha", "default", None, 10_000)
        .await
        .expect("left");
    let ats: Vec<i64> = left.iter().map(|p| p.at.as_millis()).collect();
    assert_eq!(
        ats,
        vec![cutoff + 1000, cutoff + 1, cutoff],
        "at == before stays"
    );

    assert_eq!(
        store.prune_probes(Timestamp(cutoff)).await.expect("again"),
        0
    );
}

async fn free_text_is_capped_on_a_char_boundary(backend: Backend) {
    let (_db, store) = open_temp(backend).await;
    // 4-byte and 3-byte characters, so a byte cut would split one.
    let huge: String = "🙂日本".repeat(2 * MAX_TEXT_CHARS);
    let expect_capped = |s: &str| {
        assert_eq!(s.chars().count(), MAX_TEXT_CHARS);
        assert!(s.ends_with('…'));
        let kept: String = huge.chars().take(MAX_TEXT_CHARS - 1).collect();
        assert!(s.starts_with(&kept));
    };

    let mut rec = bare_session("waha", "default");
    rec.machine.reason = huge.clone();
    store.save_session(&rec).await.expect("save");
    let stored = store
        .session("waha", "default")
        .await
        .expect("get")
        .expect("present");
    expect_capped(&stored.machine.reason);

    let mut p = probe("waha", "default", T0, "send_failed");
    p.detail = huge.clone();
    store.insert_probe(&p).await.expect("probe");
    expect_capped(
        &store
            .recent_probes("waha", "default", None, 1)
            .await
            .expect("probes")[0]
            .detail,
    );

    let mut t = transition(T0, "healthy", "suspect");
    t.reason = huge.clone();
    store.insert_transition(&t).await.expect("transition");
    expect_capped(
        &store
            .recent_transitions("waha", "default", None, 1)
            .await
            .expect("transitions")[0]
            .reason,
    );

    let mut r = remediation("waha", "default", T0, "pending");
    r.reason = huge.clone();
    let id = store.begin_remediation(&r).await.expect("begin");
    store
        .update_remediation(
            id,
            &RemediationUpdate {
                result: "failed".into(),
                detail: huge.clone(),
                finished_at: Some(Timestamp(T0 + 1)),
                recovery_ms: None,
            },
        )
        .await
        .expect("update");
    let stored = &store
        .recent_remediations("waha", "default", None, 1)
        .await
        .expect("remediations")[0];
    expect_capped(&stored.reason);
    expect_capped(&stored.detail);

    // Exactly at the limit: kept whole.
    let exact: String = "é".repeat(MAX_TEXT_CHARS);
    let mut p = probe("waha", "default", T0 + 1, "send_failed");
    p.detail = exact.clone();
    store.insert_probe(&p).await.expect("probe");
    assert_eq!(
        store
            .recent_probes("waha", "default", None, 1)
            .await
            .expect("probes")[0]
            .detail,
        exact
    );
}

#[tokio::test]
async fn open_read_only_on_a_missing_file_names_the_path_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.db");
    let err = Store::open_read_only(&path).await.expect_err("missing");
    assert!(matches!(err, StoreError::Missing { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(!path.exists());
}

#[tokio::test]
async fn open_read_only_without_schema_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").expect("empty file");
    let err = Store::open_read_only(&path).await.expect_err("no schema");
    assert!(matches!(err, StoreError::NoSchema { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database, just text long enough").expect("junk");
    let err = Store::open_read_only(&junk).await.expect_err("junk");
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&junk.display().to_string()),
        "{err}"
    );
}

async fn read_only_store_reads_beside_the_daemon_and_refuses_writes(backend: Backend) {
    let (db, daemon) = open_temp(backend).await;
    daemon
        .save_session(&full_session("waha", "default"))
        .await
        .expect("save");

    let cli = db.open_read_only().await.expect("open read-only");
    cli.ping().await.expect("ping");
    assert_eq!(
        cli.load_sessions().await.expect("load"),
        vec![full_session("waha", "default")]
    );
    // Writes by the daemon after the CLI opened are visible to it.
    daemon
        .insert_probe(&probe("waha", "default", T0, "delivered"))
        .await
        .expect("probe");
    assert_eq!(
        cli.recent_probes("waha", "default", None, 10)
            .await
            .expect("probes")
            .len(),
        1
    );

    let refused = [
        cli.save_session(&bare_session("waha", "x")).await.err(),
        cli.insert_probe(&probe("waha", "default", T0, "delivered"))
            .await
            .err(),
        cli.insert_transition(&transition(T0, "a", "b")).await.err(),
        cli.begin_remediation(&remediation("waha", "default", T0, "pending"))
            .await
            .err(),
        cli.retire_session("waha", "default", Timestamp(T0))
            .await
            .err(),
        cli.prune_probes(Timestamp(T0 + 1)).await.err(),
    ];
    for err in refused {
        assert!(
            matches!(err, Some(StoreError::ReadOnly { .. })),
            "expected a read-only refusal, got {err:?}"
        );
    }
    assert_eq!(
        daemon
            .recent_probes("waha", "default", None, 10)
            .await
            .expect("probes")
            .len(),
        1,
        "nothing was pruned"
    );
    cli.close().await;
    daemon.close().await;

    // With the daemon gone (SQLite: its WAL checkpointed and removed), the
    // CLI still reads.
    let cli = db.open_read_only().await.expect("reopen read-only");
    assert_eq!(cli.load_sessions().await.expect("load").len(), 1);
}

#[tokio::test]
async fn open_read_only_refuses_a_schema_older_than_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    Store::open(&path).await.expect("open").close().await;
    let mut conn = raw(&path).await;
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 1")
        .execute(&mut conn)
        .await
        .expect("forget migration 1");
    let err = Store::open_read_only(&path).await.expect_err("outdated");
    assert!(
        matches!(err, StoreError::SchemaOutdated { missing: 1, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn open_refuses_a_database_migrated_by_a_newer_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    Store::open(&path).await.expect("open").close().await;
    let mut conn = raw(&path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', TRUE, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .expect("add a future migration");
    let err = Store::open(&path).await.expect_err("unknown migration");
    assert!(matches!(err, StoreError::Migrate { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

async fn concurrent_writers_all_succeed(backend: Backend) {
    // Two stores on one database are two independent pools, like two
    // processes: on SQLite their writers contend for the file's lock and
    // rely on busy_timeout; on PostgreSQL they are two replicas.
    let (db, a) = open_temp(backend).await;
    let b = db.open().await;
    for s in 0..8 {
        a.save_session(&bare_session("waha", &format!("s{s}")))
            .await
            .expect("save");
    }
    const PER_TASK: i64 = 50;
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..8 {
        let store = if s % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            for i in 0..PER_TASK {
                store
                    .insert_probe(&probe("waha", &format!("s{s}"), T0 + i, "delivered"))
                    .await?;
                if i % 10 == 0 {
                    let mut rec = bare_session("waha", &format!("s{s}"));
                    rec.machine.last_probe_at = Some(Timestamp(T0 + i));
                    store.save_session(&rec).await?;
                }
            }
            Ok::<_, StoreError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined
            .expect("task panicked")
            .expect("every write succeeds");
    }
    for s in 0..8 {
        let n = b
            .recent_probes("waha", &format!("s{s}"), None, 1000)
            .await
            .expect("probes")
            .len();
        assert_eq!(n, usize::try_from(PER_TASK).expect("n"));
    }
}

#[tokio::test]
async fn corrupt_restart_history_is_an_error_naming_the_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = Store::open(&path).await.expect("open");
    store
        .save_session(&full_session("waha", "broken"))
        .await
        .expect("save");
    let mut conn = raw(&path).await;
    sqlx::query("UPDATE sessions SET restart_history = '[1, \"x\"' WHERE session = 'broken'")
        .execute(&mut conn)
        .await
        .expect("corrupt it");

    let err = store.load_sessions().await.expect_err("corrupt");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("waha") && msg.contains("broken"), "{msg}");
    assert!(store.session("waha", "broken").await.is_err());

    sqlx::query(
        "UPDATE sessions SET restart_history = '[]', consecutive_failures = -1 \
         WHERE session = 'broken'",
    )
    .execute(&mut conn)
    .await
    .expect_err("the CHECK constraint refuses a negative counter");
}

async fn history_needs_a_saved_session(backend: Backend) {
    let (_db, store) = open_temp(backend).await;
    let err = store
        .insert_probe(&probe("waha", "never-saved", T0, "delivered"))
        .await
        .expect_err("foreign key");
    assert!(
        matches!(
            err,
            StoreError::Query {
                op: "insert_probe",
                ..
            }
        ),
        "{err:?}"
    );
}

async fn a_closed_store_fails_instead_of_hanging(backend: Backend) {
    let (_db, store) = open_temp(backend).await;
    store.close().await;
    let err = store.ping().await.expect_err("closed");
    assert!(
        matches!(err, StoreError::Query { op: "ping", .. }),
        "{err:?}"
    );
}

async fn retention_prunes_transitions_closed_remediations_and_long_retired_sessions(
    backend: Backend,
) {
    let (_db, store) = open_temp(backend).await;
    let cutoff = T0 + 1_000_000;
    for s in ["default", "gone", "recently-gone"] {
        store
            .save_session(&bare_session("waha", s))
            .await
            .expect("save");
        store
            .insert_probe(&probe("waha", s, T0, "delivered"))
            .await
            .expect("probe");
        let mut t = transition(T0, "unknown", "healthy");
        t.session = s.into();
        store.insert_transition(&t).await.expect("transition");
    }
    store
        .insert_transition(&transition(cutoff + 5, "healthy", "suspect"))
        .await
        .expect("new transition");
    // Old and closed, old and still open, new and closed.
    let closed = store
        .begin_remediation(&remediation("waha", "default", T0, "pending"))
        .await
        .expect("begin");
    store
        .update_remediation(
            closed,
            &RemediationUpdate {
                result: "healed".into(),
                detail: String::new(),
                finished_at: Some(Timestamp(T0 + 10)),
                recovery_ms: None,
            },
        )
        .await
        .expect("close");
    let open = store
        .begin_remediation(&remediation("waha", "default", T0 + 1, "pending"))
        .await
        .expect("open");
    let recent = store
        .begin_remediation(&remediation("waha", "default", cutoff + 1, "dry_run"))
        .await
        .expect("recent");
    store
        .begin_remediation(&remediation("waha", "gone", T0, "dry_run"))
        .await
        .expect("gone's");
    store
        .retire_session("waha", "gone", Timestamp(T0 + 100))
        .await
        .expect("retire");
    store
        .retire_session("waha", "recently-gone", Timestamp(cutoff + 100))
        .await
        .expect("retire");

    let deleted = store.prune_history(Timestamp(cutoff)).await.expect("prune");
    // 3 probes, 3 old transitions, 2 remediations (closed, gone's) and gone.
    assert_eq!(deleted, 3 + 3 + 2 + 1);
    let ts = store
        .recent_transitions("waha", "default", None, 10)
        .await
        .expect("transitions");
    assert_eq!(
        ts.iter().map(|t| t.at.as_millis()).collect::<Vec<_>>(),
        vec![cutoff + 5]
    );
    let rem: Vec<i64> = store
        .recent_remediations("waha", "default", None, 10)
        .await
        .expect("remediations")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(rem, vec![recent, open], "the open one is kept");
    let names: Vec<String> = store
        .list_sessions(true)
        .await
        .expect("sessions")
        .into_iter()
        .map(|s| s.session)
        .collect();
    assert_eq!(names, vec!["default", "recently-gone"]);
    assert_eq!(
        store.prune_history(Timestamp(cutoff)).await.expect("again"),
        0
    );
    store.close().await;
}
