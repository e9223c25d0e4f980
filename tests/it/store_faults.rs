//! A database another process holds locked: the restart intent cannot be
//! written, so the restart is not made (it waits and is made once the intent
//! is recorded), writes fail within a bounded time instead of stalling the
//! loop, and the failures show in the store's write status (what `/readyz`
//! and `wa_watchdog_store_write_failures_total` report). Real SQLite, WAHA
//! simulator over loopback, manual clock.

use std::time::Duration;

use crate::common::store::{WriteLock, intent, save_session};
use crate::common::{PROVIDER, Settings, healthy_fleet};
use wa_watchdog::events::Event;
use wa_watchdog::sim::waha::Fault;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_restart_is_made_while_its_intent_cannot_be_written() {
    let mut h = healthy_fleet(&["s1", "s2"], &Settings::default()).await;
    let lock = WriteLock::take(&h.dir.path().join("watchdog.db")).await;
    h.ctl.inject("s1", Fault::Desync).expect("desync");
    let probes_before = h
        .log
        .iter()
        .filter(|e| matches!(e, Event::Probe { session, .. } if session == "s2"))
        .count();
    let real = std::time::Instant::now();
    h.run_until(secs(30), |h| {
        h.store
            .write_status()
            .failures
            .contains_key("begin_remediation")
    })
    .await
    .expect("the restart intent was attempted");
    h.run_for(secs(6)).await;
    assert_eq!(
        h.ctl.restart_count("s1"),
        0,
        "restarted although the intent row could not be written"
    );
    let status = h.store.write_status();
    assert!(status.failing.is_some(), "{status:?}");
    let probes = h
        .log
        .iter()
        .filter(|e| matches!(e, Event::Probe { session, .. } if session == "s2"))
        .count()
        - probes_before;
    // s2 (healthy, every 2 s) is still probed: the loop does not stall.
    assert!(probes >= 2, "the loop stalled: {probes} probes of s2");
    // Writes give up within WRITE_TIMEOUT each: no 5 s stall per write.
    assert!(
        real.elapsed() < secs(120),
        "took {:?} of real time",
        real.elapsed()
    );
    let text = h.metrics.encode().expect("metrics");
    assert!(
        text.lines()
            .any(|l| l
                .starts_with("wa_watchdog_store_write_failures_total{op=\"begin_remediation\"}")),
        "{text}"
    );
    // The lock goes away: the intent is written, then the restart is made.
    lock.release().await;
    h.run_until(secs(60), |h| h.ctl.restart_count("s1") >= 1)
        .await
        .expect("restarted once the intent was recorded");
    h.run_for(secs(3)).await;
    let rows = h
        .store
        .recent_remediations(PROVIDER, "s1", None, 10)
        .await
        .expect("rows");
    assert_eq!(rows.len(), h.ctl.restart_count("s1"), "{rows:?}");
    assert!(h.store.write_status().failing.is_none());
}

/// The duplicate this guards against: an intent write that times out is not
/// cancelled inside SQLite; it waits out its busy timeout and commits once
/// the lock goes, and then the daemon's retry writes the same intent again.
/// The intent key makes the retry return the row already written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_intent_whose_timed_out_write_committed_late_is_one_row() {
    use wa_watchdog::clock::Timestamp;
    use wa_watchdog::store::{NewRemediation, Store, StoreError};

    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("watchdog.db");
    let store = Store::open(&db).await.expect("open");
    let at = Timestamp(1_780_000_000_000);
    save_session(&store, "s1", "healthy", at).await;
    let rec = intent("s1", at, &NewRemediation::new_key(PROVIDER, "s1", at));

    let lock = WriteLock::take(&db).await;
    let first = store.begin_remediation(&rec).await;
    assert!(
        matches!(first, Err(StoreError::WriteTimeout { .. })),
        "{first:?}"
    );
    lock.release().await;

    // The retry queues behind the late commit on the one writer connection.
    let id = store.begin_remediation(&rec).await.expect("retry");
    let again = store.begin_remediation(&rec).await.expect("second retry");
    assert_eq!(id, again);
    let rows = store
        .recent_remediations(PROVIDER, "s1", None, 10)
        .await
        .expect("rows");
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![id],
        "one intent, one row: {rows:?}"
    );
    // A new intent (its own key) for the same session and instant is its own row.
    let other = NewRemediation {
        intent_key: NewRemediation::new_key(PROVIDER, "s1", at),
        ..rec.clone()
    };
    let other_id = store.begin_remediation(&other).await.expect("other");
    assert_ne!(other_id, id);
    store.close().await;
}
