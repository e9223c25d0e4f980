//! A daemon restart keeps every session's schedule: a session whose next
//! probe lay in the future is probed exactly then, never earlier (no extra
//! canaries after a restart), and only the overdue ones are spread over the
//! start-up window. Manual clock, the WAHA simulator, a real SQLite file.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{Harness, PROVIDER, Settings};
use wa_watchdog::clock::Timestamp;
use wa_watchdog::events::Event;
use wa_watchdog::machine::{Action, State};

const SESSIONS: usize = 24;
const INTERVAL: Duration = Duration::from_secs(60);

fn settings() -> Settings {
    let mut s = Settings::default();
    s.canary("interval", "\"60s\"");
    s
}

fn names() -> Vec<String> {
    (0..SESSIONS).map(|i| format!("s{i:02}")).collect()
}

/// Every session's next probe time.
fn schedule(h: &Harness) -> BTreeMap<String, Timestamp> {
    names()
        .into_iter()
        .map(|n| {
            let step = h
                .scheduler
                .next_step(PROVIDER, &n)
                .unwrap_or_else(|| panic!("{n} has a next step"));
            assert_eq!(step.action, Action::Probe, "{n}");
            (n, step.at)
        })
        .collect()
}

/// The first canary each session sent, by send time, from the events seen.
fn first_canaries(h: &Harness) -> BTreeMap<String, Timestamp> {
    let mut first = BTreeMap::new();
    for e in &h.log {
        if let Event::Probe {
            at,
            session,
            action: Action::Probe,
            ..
        } = e
        {
            first.entry(session.clone()).or_insert(*at);
        }
    }
    first
}

async fn warm_fleet() -> Harness {
    let names = names();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut h = Harness::start(&refs, &settings()).await;
    // First probes spread over 30 s; then into the middle of the interval,
    // so the next probes lie anywhere in the coming minute.
    h.run_for(Duration::from_secs(40)).await;
    for n in &names {
        assert_eq!(h.state(n), State::Healthy, "{n} after warm-up");
    }
    h
}

#[tokio::test]
async fn a_restart_keeps_every_future_schedule_and_sends_no_extra_canary() {
    let h = warm_fleet().await;
    let before = schedule(&h);
    let stopped = h.now();
    assert!(before.values().all(|at| *at > stopped));
    let sends_before: usize = names().iter().map(|n| h.ctl.send_count(n)).sum();

    let mut h = h.restart_daemon(&settings()).await;
    assert_eq!(schedule(&h), before, "every stored schedule is kept as is");

    // One interval: each session sends exactly its one scheduled canary,
    // at or after its stored time.
    h.run_for(INTERVAL).await;
    let first = first_canaries(&h);
    for (n, at) in &before {
        let sent = first.get(n).unwrap_or_else(|| panic!("{n} was probed"));
        assert!(
            sent >= at,
            "{n} probed {} ms early",
            at.since(*sent).as_millis()
        );
        assert_eq!(h.state(n), State::Healthy, "{n}");
    }
    let sends_after: usize = names().iter().map(|n| h.ctl.send_count(n)).sum();
    assert_eq!(
        sends_after - sends_before,
        SESSIONS,
        "one canary per session in the interval after the restart"
    );
}

#[tokio::test]
async fn after_a_long_stop_only_overdue_sessions_are_spread() {
    let h = warm_fleet().await;
    let before = schedule(&h);
    // Down for 25 s: the sessions due in that time are overdue.
    let back = h.now().plus(Duration::from_secs(25));
    let stored = |rows: Vec<wa_watchdog::store::SessionRecord>| -> BTreeMap<String, Timestamp> {
        rows.into_iter()
            .map(|r| (r.session, r.updated_at))
            .collect()
    };
    let saved_before = stored(h.store.load_sessions().await.expect("load"));
    h.clock.set(back);
    let mut h = h.restart_daemon(&settings()).await;
    let after = schedule(&h);
    // The restore rewrote no row: a new schedule alone is not written back
    // (after a stop longer than the interval, that would be every row).
    assert_eq!(
        stored(h.store.load_sessions().await.expect("load")),
        saved_before,
        "rows rewritten by the restore"
    );
    let (mut kept, mut spread) = (0, 0);
    for (n, at) in &before {
        let now_at = after[n];
        if *at > back {
            assert_eq!(now_at, *at, "{n}: a future schedule is kept");
            kept += 1;
        } else {
            assert!(
                now_at >= back && now_at <= back.plus(Duration::from_secs(30)),
                "{n}: overdue, spread over the start-up window"
            );
            spread += 1;
        }
    }
    assert!(kept > 0 && spread > 0, "kept {kept}, spread {spread}");

    h.run_for(INTERVAL).await;
    let first = first_canaries(&h);
    for (n, at) in &after {
        let sent = first.get(n).unwrap_or_else(|| panic!("{n} was probed"));
        assert!(
            sent >= at,
            "{n} probed {} ms early",
            at.since(*sent).as_millis()
        );
    }
    // Each first probe after the restart saved its session.
    let saved_after = stored(h.store.load_sessions().await.expect("load"));
    for (n, at) in &saved_after {
        assert!(*at > back, "{n} saved at {at:?}, not after its probe");
    }
}
