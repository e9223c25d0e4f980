//! The store's one writer (group commit) and the probe rollups, against
//! real SQLite files: a batch is all or nothing, an awaited write is on
//! disk when it returns, closing commits the queue, a full queue drops
//! instead of blocking, and retention keeps the last probes and every
//! failure in full while older delivered probes become hourly, then daily
//! buckets.

use std::path::Path;
use std::time::Duration;

use crate::common::store::WriteLock;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use wa_watchdog::clock::Timestamp;
use wa_watchdog::store::{
    Applied, HOURLY_FOR, KEEP_LAST_PROBES, NewRemediation, ProbeRecord, SessionRecord, Store,
    StoreError, Write, Writer,
};

const T0: i64 = 1_764_000_000_000; // 2025-11-24, unix ms
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

async fn open_temp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("wa-watchdog.db"))
        .await
        .expect("open store");
    (dir, store)
}

/// A connection of its own, as another process would see the file.
async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("raw connection")
}

async fn count(conn: &mut SqliteConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(conn)
        .await
        .expect("count")
}

fn probe(session: &str, at: i64, outcome: &str, latency_ms: u64) -> ProbeRecord {
    ProbeRecord {
        provider: "waha".into(),
        session: session.into(),
        at: Timestamp(at),
        kind: "probe".into(),
        outcome: outcome.into(),
        http_status: Some(201),
        latency_ms,
        detail: String::new(),
    }
}

fn intent(session: &str, at: i64) -> NewRemediation {
    NewRemediation {
        provider: "waha".into(),
        session: session.into(),
        started_at: Timestamp(at),
        action: "restart".into(),
        reason: "desync confirmed".into(),
        result: "pending".into(),
        intent_key: NewRemediation::new_key("waha", session, Timestamp(at)),
    }
}

fn session(name: &str) -> Write {
    Write::Session(Box::new(SessionRecord::new(
        "waha",
        name,
        "healthy",
        Timestamp(T0),
    )))
}

#[tokio::test]
async fn a_batch_commits_all_or_nothing() {
    let (dir, store) = open_temp().await;
    let path = dir.path().join("wa-watchdog.db");
    let applied = store
        .apply_batch(&[
            session("s1"),
            Write::Probe(probe("s1", T0, "delivered", 10)),
            Write::BeginRemediation(intent("s1", T0)),
        ])
        .await
        .expect("batch");
    assert!(
        matches!(applied[..], [Applied::Done, Applied::Done, Applied::Id(_)]),
        "{applied:?}"
    );
    // A probe of a session that has no row breaks the foreign key: the
    // session saved in the same batch is not written either.
    let failed = store
        .apply_batch(&[
            session("s2"),
            Write::Probe(probe("nobody", T0, "delivered", 1)),
        ])
        .await;
    assert!(
        matches!(failed, Err(StoreError::Query { .. })),
        "{failed:?}"
    );
    let mut conn = raw(&path).await;
    assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM sessions").await, 1);
    assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM probes").await, 1);
    let status = store.write_status();
    assert_eq!(status.failures.get("save_session"), Some(&1), "{status:?}");
    assert_eq!(status.failures.get("insert_probe"), Some(&1), "{status:?}");
}

#[tokio::test]
async fn an_awaited_write_is_on_disk_with_everything_queued_before_it() {
    let (dir, store) = open_temp().await;
    let path = dir.path().join("wa-watchdog.db");
    let writer = Writer::start(store.clone());
    writer.submit(session("s1")).expect("queued");
    for i in 0..50 {
        writer
            .submit(Write::Probe(probe("s1", T0 + i, "delivered", 5)))
            .expect("queued");
    }
    let applied = writer
        .write(Write::BeginRemediation(intent("s1", T0 + 100)))
        .await
        .expect("intent");
    let Applied::Id(id) = applied else {
        panic!("{applied:?}")
    };
    // Read by another connection, as the crash test's restarted daemon would.
    let mut conn = raw(&path).await;
    assert_eq!(
        count(
            &mut conn,
            "SELECT COUNT(*) FROM remediations WHERE result = 'pending'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&mut conn, "SELECT MAX(id) FROM remediations").await,
        id
    );
    assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM probes").await, 50);
}

#[tokio::test]
async fn closing_the_writer_commits_its_queue() {
    let (dir, store) = open_temp().await;
    let path = dir.path().join("wa-watchdog.db");
    let mut writer = Writer::start(store.clone());
    writer.submit(session("s1")).expect("queued");
    for i in 0..3000 {
        writer
            .submit(Write::Probe(probe("s1", T0 + i, "delivered", 5)))
            .expect("queued");
    }
    writer.close().await;
    let mut conn = raw(&path).await;
    assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM probes").await, 3000);
    let late = writer.submit(session("s2"));
    assert!(
        matches!(late, Err(StoreError::WriterClosed { .. })),
        "{late:?}"
    );
}

#[tokio::test]
async fn one_bad_row_does_not_take_its_batch_down() {
    let (dir, store) = open_temp().await;
    let path = dir.path().join("wa-watchdog.db");
    let writer = Writer::start(store.clone());
    writer.submit(session("s1")).expect("queued");
    writer
        .submit(Write::Probe(probe("nobody", T0, "delivered", 1)))
        .expect("queued");
    writer
        .submit(Write::Probe(probe("s1", T0, "delivered", 1)))
        .expect("queued");
    writer.flush().await;
    let mut conn = raw(&path).await;
    assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM sessions").await, 1);
    assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM probes").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_writes_instead_of_blocking_and_says_so() {
    let (dir, store) = open_temp().await;
    let path = dir.path().join("wa-watchdog.db");
    store
        .save_session(&SessionRecord::new("waha", "s1", "healthy", Timestamp(T0)))
        .await
        .expect("save");
    let lock = WriteLock::take(&path).await;
    let writer = Writer::start(store.clone());
    let mut queued = 0u64;
    let dropped = loop {
        match writer.submit(Write::Probe(probe(
            "s1",
            T0 + queued as i64,
            "delivered",
            1,
        ))) {
            Ok(()) => queued += 1,
            Err(e) => break e,
        }
        assert!(queued < 1_000_000, "the queue is not bounded");
    };
    assert!(
        matches!(dropped, StoreError::QueueFull { .. }),
        "{dropped:?}"
    );
    let status = store.write_status();
    assert!(status.failing.is_some(), "{status:?}");
    lock.release().await;
    // Once the lock is gone the writer catches up and later writes land.
    writer.flush().await;
    writer
        .write(Write::Probe(probe("s1", T0 - 1, "desync", 1)))
        .await
        .expect("written after the lock");
    assert!(store.write_status().failing.is_none());
}

/// `n` probes of `session` every 5 minutes ending at `end`, every 10th not
/// delivered.
async fn five_minutely(store: &Store, session: &str, end: i64, n: i64) {
    store
        .save_session(&SessionRecord::new(
            "waha",
            session,
            "healthy",
            Timestamp(T0),
        ))
        .await
        .expect("save");
    let writes: Vec<Write> = (0..n)
        .map(|i| {
            let outcome = if i % 10 == 0 { "desync" } else { "delivered" };
            Write::Probe(probe(
                session,
                end - (n - 1 - i) * 300_000,
                outcome,
                100 + i as u64,
            ))
        })
        .collect();
    for chunk in writes.chunks(1000) {
        store.apply_batch(chunk).await.expect("probes");
    }
}

#[tokio::test]
async fn retention_keeps_the_last_probes_and_failures_and_counts_the_rest() {
    let (_dir, store) = open_temp().await;
    let now = T0 + 30 * DAY;
    let retention = Timestamp(now - 30 * DAY);
    // Four days of probes (1152): older ones become hourly, then daily buckets.
    let n = 4 * 288;
    five_minutely(&store, "s1", now, n).await;
    let stats = store
        .roll_up_probes(Timestamp(now), retention)
        .await
        .expect("roll up");
    let failures = (0..n).filter(|i| i % 10 == 0).count() as u64;
    let kept = store
        .recent_probes("waha", "s1", None, 10_000)
        .await
        .expect("probes");
    // The last KEEP_LAST_PROBES in full, whatever their outcome, and every
    // failure before them.
    let last: Vec<i64> = kept
        .iter()
        .take(KEEP_LAST_PROBES as usize)
        .map(|p| p.at.0)
        .collect();
    let expected_last: Vec<i64> = (0..i64::from(KEEP_LAST_PROBES))
        .map(|k| now - k * 300_000)
        .collect();
    assert_eq!(last, expected_last);
    assert!(
        kept[KEEP_LAST_PROBES as usize..]
            .iter()
            .all(|p| p.outcome == "desync")
    );
    let kept_failures = kept.iter().filter(|p| p.outcome == "desync").count() as u64;
    assert_eq!(kept_failures, failures);
    // Every delivered probe is either a row or counted in a bucket.
    let buckets = store
        .probe_rollups("waha", "s1", None, 10_000)
        .await
        .expect("rollups");
    let counted: u64 = buckets.iter().map(|b| b.probes).sum();
    let kept_delivered = kept.len() as u64 - kept_failures;
    assert_eq!(counted + kept_delivered, n as u64 - failures);
    assert_eq!(stats.rolled, counted);
    // Hours for the last HOURLY_FOR, days before; buckets aligned and never
    // overlapping the kept window.
    let horizon = now - HOURLY_FOR.as_millis() as i64;
    for b in &buckets {
        let span = b.span.as_millis() as i64;
        assert_eq!(b.start.0 % span, 0, "{b:?}");
        assert_eq!(
            span,
            if b.start.0 + HOUR <= horizon {
                DAY
            } else {
                HOUR
            },
            "{b:?}"
        );
        assert!(b.latency_max_ms >= b.latency_sum_ms / b.probes, "{b:?}");
    }
    assert!(buckets.iter().any(|b| b.span.as_millis() as i64 == DAY));

    // A second pass changes nothing.
    let again = store
        .roll_up_probes(Timestamp(now), retention)
        .await
        .expect("again");
    assert_eq!(again.rolled, 0);
    let same = store
        .probe_rollups("waha", "s1", None, 10_000)
        .await
        .expect("rollups");
    assert_eq!(same, buckets);

    // Two days later the hours of the first pass are days, counts unchanged.
    let later = now + 2 * DAY;
    let merged = store
        .roll_up_probes(Timestamp(later), Timestamp(later - 30 * DAY))
        .await
        .expect("merge");
    assert!(merged.merged > 0, "{merged:?}");
    let days = store
        .probe_rollups("waha", "s1", None, 10_000)
        .await
        .expect("rollups");
    assert!(
        days.iter().all(|b| b.span.as_millis() as i64 == DAY),
        "{days:?}"
    );
    assert_eq!(days.iter().map(|b| b.probes).sum::<u64>(), counted);

    // Past the retention buckets go too.
    let gone = store
        .roll_up_probes(Timestamp(later + 40 * DAY), Timestamp(later + 10 * DAY))
        .await
        .expect("expire");
    assert!(gone.expired > 0);
    assert!(
        store
            .probe_rollups("waha", "s1", None, 10)
            .await
            .expect("rollups")
            .is_empty()
    );
}

#[tokio::test]
async fn rollups_are_per_session_and_in_small_batches() {
    let (_dir, store) = open_temp().await;
    let now = T0 + DAY;
    // More sessions than one batch, so the walk crosses batch boundaries.
    let sessions = wa_watchdog::store::ROLL_SESSIONS as usize + 5;
    let mut writes = Vec::new();
    for s in 0..sessions {
        let name = format!("s{s:04}");
        writes.push(Write::Session(Box::new(SessionRecord::new(
            "waha",
            &name,
            "healthy",
            Timestamp(T0),
        ))));
        for i in 0..(i64::from(KEEP_LAST_PROBES) + 3) {
            writes.push(Write::Probe(probe(&name, now - i * 60_000, "delivered", 7)));
        }
    }
    for chunk in writes.chunks(1000) {
        store.apply_batch(chunk).await.expect("writes");
    }
    let stats = store
        .roll_up_probes(Timestamp(now), Timestamp(now - 30 * DAY))
        .await
        .expect("roll up");
    assert_eq!(stats.rolled, 3 * sessions as u64);
    for s in [0, sessions - 1] {
        let name = format!("s{s:04}");
        let b = store
            .probe_rollups("waha", &name, None, 10)
            .await
            .expect("rollups");
        assert_eq!(b.iter().map(|b| b.probes).sum::<u64>(), 3, "{name}: {b:?}");
        let kept = store
            .recent_probes("waha", &name, None, 100)
            .await
            .expect("probes");
        assert_eq!(kept.len(), KEEP_LAST_PROBES as usize, "{name}");
    }
}

/// Another process holds the write lock past the store's write timeout
/// while the hourly rollup runs: the batch that timed out was rolled back
/// whole and is retried smaller, so the pass still counts every probe
/// exactly once instead of failing (it used to fail the whole pass on a
/// slow or busy disk). The lock is real, so the wait is real time.
#[tokio::test]
async fn a_rollup_batch_that_times_out_is_retried_smaller_and_counts_each_probe_once() {
    let (dir, store) = open_temp().await;
    let now = T0 + DAY;
    let sessions = 12usize;
    let mut writes = Vec::new();
    for s in 0..sessions {
        let name = format!("s{s:04}");
        writes.push(Write::Session(Box::new(SessionRecord::new(
            "waha",
            &name,
            "healthy",
            Timestamp(T0),
        ))));
        for i in 0..(i64::from(KEEP_LAST_PROBES) + 4) {
            writes.push(Write::Probe(probe(&name, now - i * 60_000, "delivered", 7)));
        }
    }
    store.apply_batch(&writes).await.expect("writes");

    let mut other = raw(&dir.path().join("wa-watchdog.db")).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("take the write lock");
    let hold = wa_watchdog::store::WRITE_TIMEOUT + Duration::from_millis(400);
    let release = async {
        tokio::time::sleep(hold).await;
        sqlx::query("COMMIT")
            .execute(&mut other)
            .await
            .expect("release the write lock");
    };
    let (stats, ()) = tokio::join!(
        store.roll_up_probes(Timestamp(now), Timestamp(now - 30 * DAY)),
        release
    );
    let stats = stats.expect("the pass survives a batch that timed out");
    assert_eq!(stats.rolled, 4 * sessions as u64);
    for s in 0..sessions {
        let name = format!("s{s:04}");
        let b = store
            .probe_rollups("waha", &name, None, 10)
            .await
            .expect("rollups");
        assert_eq!(b.iter().map(|b| b.probes).sum::<u64>(), 4, "{name}: {b:?}");
    }
}
