//! Discovery never forgets on a blip: a session missing from the session
//! list is retired only after `daemon.retire_after_rounds` lists and
//! `daemon.retire_after`; a list that drops most sessions at once is not
//! applied; a session that comes back keeps its restart history, backoff and
//! escalation, so `max_restarts` holds across its absence. WAHA simulator
//! over loopback, manual clock.

use std::time::Duration;

use crate::common::{Harness, Settings, healthy_fleet};
use wa_watchdog::events::Event;
use wa_watchdog::machine::State;
use wa_watchdog::sim::hostile::Hostile;
use wa_watchdog::sim::waha::Fault;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn settings() -> Settings {
    let mut s = Settings::default();
    s.policy("max_restarts", "3")
        .policy("restart_window", "\"1h\"")
        .policy("backoff_initial", "\"1s\"")
        .policy("backoff_max", "\"2s\"")
        .daemon("retire_after_rounds", "3")
        .daemon("retire_after", "\"1m\"");
    s
}

fn retired(h: &Harness) -> Vec<String> {
    h.log
        .iter()
        .filter_map(|e| match e {
            Event::SessionRetired { session, .. } => Some(session.clone()),
            _ => None,
        })
        .collect()
}

/// Desyncs `s` with restarts that never heal and runs until it is escalated.
async fn escalate(h: &mut Harness, s: &str) {
    h.ctl.inject(s, Fault::Desync).expect("desync");
    h.ctl.inject(s, Fault::RestartDoesNotHeal).expect("no heal");
    h.run_until(secs(600), |h| h.state(s) == State::Escalated)
        .await
        .expect("escalated");
    assert_eq!(h.ctl.restart_count(s), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_session_list_forgets_nothing_and_max_restarts_holds() {
    let mut h = healthy_fleet(&["s1", "s2", "s3"], &settings()).await;
    escalate(&mut h, "s1").await;
    // The server answers an empty list for a few minutes (a restart, a proxy).
    h.sim
        .hostile()
        .set("GET", "/api/sessions$", Hostile::Replace(200, "[]"));
    h.run_for(secs(180)).await;
    assert!(
        retired(&h).is_empty(),
        "retired on an empty list: {:?}",
        retired(&h)
    );
    assert_eq!(h.state("s1"), State::Escalated);
    let suspect = h
        .metrics
        .encode()
        .expect("metrics")
        .lines()
        .any(|l| l.starts_with("wa_watchdog_discovery_suspect_total{") && !l.ends_with(" 0"));
    assert!(suspect, "the suspect list is not counted");
    h.sim.hostile().clear();
    h.run_for(secs(180)).await;
    assert_eq!(h.state("s1"), State::Escalated, "escalation cleared itself");
    assert_eq!(
        h.ctl.restart_count("s1"),
        3,
        "max_restarts = 3 within restart_window was bypassed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_session_is_retired_after_the_grace_and_keeps_its_history_when_back() {
    let names = ["s1", "s2", "s3", "s4", "s5"];
    let mut h = healthy_fleet(&names, &settings()).await;
    escalate(&mut h, "s1").await;
    h.ctl.remove_session("s1").expect("remove");
    let gone_at = h.now();
    // Two lists without it, 20 s: still watched.
    h.run_for(secs(25)).await;
    assert!(retired(&h).is_empty(), "{:?}", retired(&h));
    h.run_until(secs(300), |h| retired(h).contains(&"s1".to_string()))
        .await
        .expect("retired after the grace");
    let after = h.now().since(gone_at);
    assert!(
        after >= secs(60),
        "retired after {after:?}, before retire_after"
    );
    assert_eq!(retired(&h), ["s1"], "only the vanished session is retired");
    // It comes back, still desynced: it is still escalated, never restarted.
    h.ctl.add_session("s1").expect("add");
    h.ctl.inject("s1", Fault::Desync).expect("desync");
    h.run_until(secs(60), |h| {
        h.scheduler.machine(&h.provider, "s1").is_some()
    })
    .await
    .expect("watched again");
    h.run_for(secs(120)).await;
    assert_eq!(h.state("s1"), State::Escalated);
    assert_eq!(h.ctl.restart_count("s1"), 3, "restart history was lost");
    // Only a verified delivery clears it.
    h.ctl.clear("s1").expect("heal");
    h.run_until(secs(60), |h| h.state("s1") == State::Healthy)
        .await
        .expect("a delivered canary clears the escalation");
}
