//! A first start on a large server: discovery adds every listed session in
//! one batch (one batched save, one log line), and spreads their first
//! probes so the fleet starts at no more than its steady rate instead of a
//! burst. WAHA simulator over loopback, manual clock, a real SQLite file.

use std::time::Duration;

use crate::common::{Harness, PROVIDER, Settings};
use wa_watchdog::machine::{Action, State};

#[tokio::test]
async fn a_large_first_discovery_is_added_at_once_and_starts_at_a_steady_rate() {
    const SESSIONS: usize = 2000;
    let names = wa_watchdog::sim::session_names(SESSIONS);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut s = Settings::default();
    s.canary("interval", "\"5m\"").canary("jitter", "0");
    let mut h = Harness::start(&refs, &s).await;
    let start = h.now();
    // The first tick reads the session list and adds them all.
    h.scheduler.tick().await;

    assert_eq!(h.scheduler.sessions().len(), SESSIONS);
    let stored = h.store.load_sessions().await.expect("load sessions");
    assert_eq!(stored.len(), SESSIONS, "every session saved with the batch");
    assert!(
        stored
            .iter()
            .all(|r| r.machine.state == State::Unknown.as_str())
    );

    // 2,000 sessions at no more than 50 first probes per second: spread
    // over 40 s, not squeezed into the 30 s a small fleet gets.
    let firsts: Vec<Duration> = names
        .iter()
        .map(|n| {
            let step = h.scheduler.next_step(PROVIDER, n).expect("scheduled");
            assert_eq!(step.action, Action::Probe, "{n}");
            step.at.since(start)
        })
        .collect();
    let latest = firsts.iter().max().copied().unwrap_or_default();
    assert!(
        latest <= Duration::from_secs(40),
        "latest first probe {latest:?}"
    );
    let after_30 = firsts
        .iter()
        .filter(|d| **d > Duration::from_secs(30))
        .count();
    assert!(
        after_30 > SESSIONS / 8,
        "the batch's spread is longer than 30 s: {after_30} after 30 s"
    );
}
