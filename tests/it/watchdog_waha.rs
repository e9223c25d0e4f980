//! The watchdog core against the WAHA simulator, over loopback, with a real
//! SQLite file (and PostgreSQL for the tests in `matrix!`) and a manual clock (see `clock.rs` for why not tokio's paused
//! clock here). One test per behaviour the core issue names.

use crate::common;
use std::time::Duration;

use crate::common::backends::{Backend, matrix};
use crate::common::{API_KEY, Harness, PROVIDER, Settings, database_text, healthy_fleet};
use wa_watchdog::events::Event;
use wa_watchdog::machine::State;
use wa_watchdog::sim::waha::{Fault, Status};

const S: Duration = Duration::from_secs(1);

// The whole watchdog on both store backends: detection and restart, and a
// daemon restart that resumes backoff and an in-flight restart.
matrix!(
    a_desync_is_caught_restarted_and_healed_and_only_that_session_is_touched,
    a_daemon_restarted_mid_backoff_does_not_restart_early,
    a_restart_in_flight_when_the_daemon_stops_is_followed_up_not_repeated,
);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn a_desync_is_caught_restarted_and_healed_and_only_that_session_is_touched(
    backend: Backend,
) {
    let names = ["alpha", "bravo", "charlie"];
    let mut h = healthy_fleet(&names, &backend.settings(&Settings::default()).await).await;

    let onset = h.now();
    h.ctl.inject("bravo", Fault::Desync).expect("inject");

    let healed = h
        .run_until(secs(60), |h| {
            h.entered("bravo", State::Healthy, onset).is_some()
        })
        .await;
    assert!(healed.is_some(), "not healed; path {:?}", h.path("bravo"));

    let restarted_at = h
        .entered("bravo", State::Restarting, onset)
        .expect("restarting");
    let healthy_at = h.entered("bravo", State::Healthy, onset).expect("healthy");
    // Done-when of the core issue: 2 s interval, 1 s confirm, 3 confirmations.
    eprintln!(
        "desync onset → restart {:.2} s, → delivering again {:.2} s",
        restarted_at.since(onset).as_secs_f64(),
        healthy_at.since(onset).as_secs_f64()
    );
    assert!(
        restarted_at.since(onset) <= secs(10),
        "restart {}s after onset",
        restarted_at.since(onset).as_secs_f64()
    );
    assert!(
        healthy_at.since(onset) <= secs(15),
        "delivering again {}s after onset",
        healthy_at.since(onset).as_secs_f64()
    );
    assert_eq!(
        h.path("bravo")[2..],
        [
            State::Suspect,
            State::Desynced,
            State::Restarting,
            State::Recovering,
            State::Healthy
        ],
        "{:?}",
        h.transitions("bravo")
    );
    assert!(
        h.transitions("bravo")[2]
            .2
            .contains("desync confirmed (desync 3/3)")
    );

    // Only bravo was restarted, exactly once, and nothing destructive was called.
    assert_eq!(h.ctl.restart_count("bravo"), 1);
    assert_eq!(
        h.ctl.restart_count("alpha") + h.ctl.restart_count("charlie"),
        0
    );
    for a in ["alpha", "charlie"] {
        assert_eq!(h.state(a), State::Healthy);
        assert!(h.transitions(a).iter().all(|t| t.1 == State::Healthy));
    }
    for call in h.ctl.calls() {
        assert!(
            call.method != "DELETE"
                && !call.path.ends_with("/logout")
                && call.path != "/api/sessions/stop",
            "destructive call {call:?}"
        );
    }

    // The store has the whole story: intent, result, recovery time.
    let rem = h
        .store
        .recent_remediations(PROVIDER, "bravo", None, 10)
        .await
        .expect("remediations");
    assert_eq!(rem.len(), 1);
    assert_eq!(rem[0].action, "restart");
    assert_eq!(rem[0].result, "healed");
    assert!(
        rem[0].reason.contains("desync confirmed"),
        "{}",
        rem[0].reason
    );
    let recovery = rem[0].recovery_ms.expect("recovery time");
    assert!(recovery <= 15_000, "{recovery} ms");
    let transitions = h
        .store
        .recent_transitions(PROVIDER, "bravo", None, 20)
        .await
        .expect("transitions");
    assert!(
        transitions
            .iter()
            .any(|t| t.to_state == "desynced" || t.to_state == "restarting")
    );
    let rec = h
        .store
        .session(PROVIDER, "bravo")
        .await
        .expect("row")
        .expect("session row");
    assert_eq!(rec.machine.state, "healthy");
    assert_eq!(rec.machine.consecutive_failures, 0);
    assert_eq!(rec.machine.restart_history.len(), 1);
}

#[tokio::test]
async fn single_blips_of_429_5xx_and_timeouts_cause_no_restart() {
    let mut settings = Settings::default();
    // A latency longer than the probe deadline makes a real client timeout.
    settings.canary("timeout", "\"300ms\"");
    let mut h = healthy_fleet(&["s1"], &settings).await;

    let blips = [
        Fault::RateLimited {
            retry_after_secs: Some(3),
            times: Some(1),
        },
        Fault::SendError {
            status: 500,
            body: None,
            times: Some(1),
        },
        Fault::SendError {
            status: 503,
            body: None,
            times: Some(1),
        },
    ];
    for blip in blips {
        h.ctl.inject("s1", blip.clone()).expect("inject");
        h.run_for(secs(8)).await;
        assert_eq!(h.state("s1"), State::Healthy, "after {blip:?}");
    }
    // Timeout: one slow answer.
    h.ctl
        .inject("s1", Fault::Latency(Duration::from_millis(600)))
        .expect("inject");
    h.run_for(Duration::from_millis(2100)).await;
    h.ctl
        .inject("s1", Fault::Latency(Duration::ZERO))
        .expect("clear latency");
    h.run_for(secs(8)).await;
    assert_eq!(h.state("s1"), State::Healthy);

    let outcomes = h.outcomes("s1");
    for o in ["rate_limited", "send_failed", "unreachable", "timeout"] {
        assert!(outcomes.iter().any(|x| x == o), "no {o} in {outcomes:?}");
    }
    assert_eq!(h.ctl.restart_count("s1"), 0);
    assert!(
        h.path("s1")
            .iter()
            .all(|s| !matches!(s, State::Restarting | State::Desynced)),
        "{:?}",
        h.path("s1")
    );
}

#[tokio::test]
async fn scan_qr_code_means_needs_pairing_and_is_never_restarted() {
    let mut h = healthy_fleet(&["s1"], &Settings::default()).await;
    h.ctl.set_status("s1", Status::ScanQrCode).expect("status");
    h.run_for(secs(120)).await;
    assert_eq!(h.state("s1"), State::NeedsPairing);
    assert_eq!(h.ctl.restart_count("s1"), 0);
    // No canary is sent to a session that is not WORKING.
    let sends_before = h.ctl.send_count("s1");
    h.run_for(secs(30)).await;
    assert_eq!(h.ctl.send_count("s1"), sends_before);

    // Once re-paired, the first delivered canary clears it.
    h.ctl.set_status("s1", Status::Working).expect("status");
    h.run_for(secs(5)).await;
    assert_eq!(h.state("s1"), State::Healthy);
}

#[tokio::test]
async fn starting_beyond_the_grace_is_restarted_once_and_heals() {
    let mut h = healthy_fleet(&["s1"], &Settings::default()).await;
    h.ctl.set_status("s1", Status::Starting).expect("status");
    let since = h.now();
    // Within the 20 s grace: nothing happens.
    h.run_for(secs(15)).await;
    assert_eq!(h.state("s1"), State::NotReady);
    assert_eq!(h.ctl.restart_count("s1"), 0);
    let healed = h
        .run_until(secs(60), |h| {
            h.entered("s1", State::Healthy, since).is_some()
        })
        .await;
    assert!(healed.is_some(), "{:?}", h.transitions("s1"));
    assert_eq!(h.ctl.restart_count("s1"), 1);
    let restarted = h.entered("s1", State::Restarting, since).expect("restart");
    assert!(
        restarted.since(since) >= secs(20),
        "restarted inside the grace"
    );
    let rem = h
        .store
        .recent_remediations(PROVIDER, "s1", None, 5)
        .await
        .expect("rows");
    let reason = &rem[0].reason;
    assert!(reason.contains("beyond starting_grace"), "{reason}");
}

#[tokio::test]
async fn stopped_is_left_alone_by_default_and_restarted_when_configured() {
    let mut h = healthy_fleet(&["s1"], &Settings::default()).await;
    h.ctl.set_status("s1", Status::Stopped).expect("status");
    h.run_for(secs(300)).await;
    assert_eq!(h.state("s1"), State::NotReady);
    assert_eq!(h.ctl.restart_count("s1"), 0);

    let mut settings = Settings::default();
    settings.policy("restart_stopped", "true");
    let mut h = healthy_fleet(&["s1"], &settings).await;
    h.ctl.set_status("s1", Status::Stopped).expect("status");
    h.run_for(secs(20)).await;
    assert_eq!(h.ctl.restart_count("s1"), 1);
    assert_eq!(h.state("s1"), State::Healthy);
}

#[tokio::test]
async fn a_provider_that_is_down_makes_sessions_unreachable_and_is_never_restarted() {
    let names = ["s1", "s2", "s3", "s4"];
    let mut h = healthy_fleet(&names, &Settings::default()).await;
    h.ctl.set_down(true);
    h.run_for(secs(120)).await;
    for n in names {
        assert_eq!(h.state(n), State::Unreachable, "{n}");
        assert_eq!(h.ctl.restart_count(n), 0, "{n}");
    }
    assert!(
        h.log
            .iter()
            .any(|e| matches!(e, Event::ProviderHealth { outage: true, .. }))
    );
    h.ctl.set_down(false);
    h.run_for(secs(10)).await;
    for n in names {
        assert_eq!(h.state(n), State::Healthy, "{n}");
    }
    assert!(
        h.log
            .iter()
            .any(|e| matches!(e, Event::ProviderHealth { outage: false, .. }))
    );
}

#[tokio::test]
async fn restarts_that_fail_back_off_then_escalate_and_never_storm() {
    for fault in [Fault::RestartFails, Fault::RestartDoesNotHeal] {
        let mut h = healthy_fleet(&["s1"], &Settings::default()).await;
        h.ctl.inject("s1", Fault::Desync).expect("desync");
        h.ctl.inject("s1", fault.clone()).expect("fault");
        let onset = h.now();
        let escalated = h
            .run_until(secs(600), |h| h.state("s1") == State::Escalated)
            .await;
        assert!(escalated.is_some(), "{fault:?}: {:?}", h.path("s1"));
        assert_eq!(
            h.ctl.restart_count("s1"),
            3,
            "{fault:?}: max_restarts attempts"
        );

        // Backoff: 10 s, then 20 s between attempts at least.
        let starts: Vec<_> = h
            .log
            .iter()
            .filter_map(|e| match e {
                Event::Remediation { at, stage, .. } if stage == "begin" && *at >= onset => {
                    Some(*at)
                }
                _ => None,
            })
            .collect();
        assert_eq!(starts.len(), 3, "{fault:?}");
        assert!(
            starts[1].since(starts[0]) >= secs(10),
            "{fault:?} {starts:?}"
        );
        assert!(
            starts[2].since(starts[1]) >= secs(20),
            "{fault:?} {starts:?}"
        );

        // Escalated: probing goes on, restarts do not.
        let probes_before = h.outcomes("s1").len();
        h.run_for(secs(600)).await;
        assert_eq!(h.ctl.restart_count("s1"), 3, "{fault:?}: storm");
        assert_eq!(h.state("s1"), State::Escalated);
        assert!(h.outcomes("s1").len() > probes_before + 100);

        let rem = h
            .store
            .recent_remediations(PROVIDER, "s1", None, 10)
            .await
            .expect("rows");
        let expected = match fault {
            Fault::RestartFails => "failed",
            _ => "not_healed",
        };
        assert!(
            rem.iter().all(|r| r.result == expected),
            "{fault:?} {rem:?}"
        );

        // A human fixes it: the first delivered canary clears the escalation.
        h.ctl.clear("s1").expect("clear");
        h.run_for(secs(5)).await;
        assert_eq!(
            h.state("s1"),
            State::Healthy,
            "{fault:?}: {:?}",
            h.transitions("s1")
        );
    }
}

#[tokio::test]
async fn the_budget_and_the_concurrency_limit_hold_across_sessions() {
    let mut settings = Settings::default();
    settings
        .policy("restart_budget", "2")
        .policy("restart_budget_window", "\"10m\"")
        .policy("max_concurrent_restarts", "1");
    let names = ["s1", "s2", "s3", "s4", "s5", "s6"];
    let mut h = healthy_fleet(&names, &settings).await;
    for n in ["s1", "s2", "s3"] {
        h.ctl.inject(n, Fault::Desync).expect("desync");
        h.ctl.inject(n, Fault::StuckStarting).expect("stuck");
    }
    let onset = h.now();
    // Never two restarts in flight at once.
    let mut max_in_flight = 0;
    while h.now().since(onset) < secs(300) {
        h.run_for(S).await;
        let in_flight = names
            .iter()
            .filter(|n| matches!(h.state(n), State::Restarting | State::Recovering))
            .count();
        max_in_flight = max_in_flight.max(in_flight);
    }
    assert_eq!(max_in_flight, 1);
    let total: usize = names.iter().map(|n| h.ctl.restart_count(n)).sum();
    assert_eq!(total, 2, "restart_budget of 2 per 10 minutes");
    let waiting = names
        .iter()
        .filter_map(|n| h.scheduler.machine(PROVIDER, n))
        .filter(|m| m.persisted.reason.contains("restart budget spent"))
        .count();
    assert!(waiting >= 1, "a session says it waits for the budget");
}

#[tokio::test]
async fn the_outage_rule_suspends_restarts_while_most_sessions_are_unreachable() {
    let names = ["s1", "s2", "s3", "s4"];
    let mut settings = Settings::default();
    settings.canary("timeout", "\"200ms\"");
    let mut h = healthy_fleet(&names, &settings).await;
    // Three of four sessions cannot be reached in time; the fourth desyncs.
    for n in ["s1", "s2", "s3"] {
        h.ctl
            .inject(n, Fault::Latency(Duration::from_millis(400)))
            .expect("latency");
    }
    h.run_for(secs(3)).await;
    h.ctl.inject("s4", Fault::Desync).expect("desync");
    h.run_for(secs(30)).await;
    assert_eq!(h.state("s4"), State::Desynced);
    assert!(
        h.scheduler
            .machine(PROVIDER, "s4")
            .expect("s4")
            .persisted
            .reason
            .contains("provider outage"),
        "{:?}",
        h.transitions("s4")
    );
    assert_eq!(h.ctl.restart_count("s4"), 0);
    // The outage ends; the desync is restarted.
    for n in ["s1", "s2", "s3"] {
        h.ctl
            .inject(n, Fault::Latency(Duration::ZERO))
            .expect("latency");
    }
    h.run_for(secs(30)).await;
    assert_eq!(h.ctl.restart_count("s4"), 1);
    assert_eq!(h.state("s4"), State::Healthy);
}

#[tokio::test]
async fn discovery_adds_new_sessions_and_retires_removed_ones_keeping_history() {
    let mut h = healthy_fleet(&["s1", "s2"], &Settings::default()).await;
    h.ctl.add_session("s3").expect("add");
    h.ctl.remove_session("s1").expect("remove");
    h.run_for(secs(15)).await;
    let watched: Vec<String> = h.scheduler.sessions().into_iter().map(|s| s.1).collect();
    assert_eq!(watched, ["s2", "s3"]);
    assert_eq!(h.state("s3"), State::Healthy);
    assert!(
        h.log
            .iter()
            .any(|e| matches!(e, Event::SessionRetired { session, .. } if session == "s1"))
    );

    let all = h.store.list_sessions(true).await.expect("list");
    let s1 = all.iter().find(|r| r.session == "s1").expect("s1 kept");
    assert!(s1.retired_at.is_some());
    let probes = h
        .store
        .recent_probes(PROVIDER, "s1", None, 100)
        .await
        .expect("probes");
    assert!(!probes.is_empty(), "history of a retired session is kept");
    let active = h.store.load_sessions().await.expect("load");
    assert!(active.iter().all(|r| r.session != "s1"));
}

#[tokio::test]
async fn a_rejected_api_key_is_auth_rejected_and_never_restarts() {
    let clock = wa_watchdog::clock::Clock::manual(common::t0());
    // The server wants a different key than the daemon has.
    let opts = wa_watchdog::sim::waha::WahaSimOptions {
        api_key: Some("another-key".into()),
        sessions: vec!["s1".into()],
        clock: clock.clone(),
        ..Default::default()
    };
    let sim = wa_watchdog::sim::waha::start("127.0.0.1:0".parse().expect("addr"), opts)
        .await
        .expect("sim");
    let mut settings = Settings::default();
    settings.provider("sessions", "[\"s1\"]");
    let dir = tempfile::tempdir().expect("dir");
    let mut h = Harness::with(clock, sim, dir, &settings).await;
    h.run_for(secs(120)).await;
    let outcomes = h.outcomes("s1");
    assert!(!outcomes.is_empty());
    assert!(
        outcomes.iter().all(|o| o == "auth_rejected"),
        "{outcomes:?}"
    );
    assert_eq!(h.ctl.restart_count("s1"), 0);
    assert_eq!(h.ctl.send_count("s1"), 0);
    assert_eq!(h.state("s1"), State::Unknown);
}

async fn a_daemon_restarted_mid_backoff_does_not_restart_early(backend: Backend) {
    let settings = backend.settings(&Settings::default()).await;
    let mut h = healthy_fleet(&["s1"], &settings).await;
    h.fail_first_restart("s1").await;
    let m = h
        .scheduler
        .machine(PROVIDER, "s1")
        .expect("machine")
        .clone();
    let deadline = m.persisted.next_restart_at.expect("backoff deadline");
    assert!(deadline > h.now());

    // The daemon stops and starts again: state, counters and deadline come back.
    let mut h = h.restart_daemon(&settings).await;
    let restored = h
        .scheduler
        .machine(PROVIDER, "s1")
        .expect("restored")
        .clone();
    assert_eq!(restored.persisted.state, State::Desynced);
    assert_eq!(restored.persisted.next_restart_at, Some(deadline));
    assert_eq!(
        restored.persisted.restart_history,
        m.persisted.restart_history
    );
    assert_eq!(restored.persisted.backoff_step, m.persisted.backoff_step);

    let second = h.second_restart("s1", deadline).await;
    assert!(
        second >= deadline,
        "restarted {} ms early",
        deadline.since(second).as_millis()
    );
}

async fn a_restart_in_flight_when_the_daemon_stops_is_followed_up_not_repeated(backend: Backend) {
    let settings = backend.settings(&Settings::default()).await;
    let mut h = healthy_fleet(&["s1"], &settings).await;
    h.ctl.inject("s1", Fault::Desync).expect("desync");
    h.run_until(secs(30), |h| h.state("s1") == State::Restarting)
        .await
        .expect("restarting");
    let mut h = h.restart_daemon(&settings).await;
    assert_eq!(h.state("s1"), State::Restarting);
    h.run_for(secs(20)).await;
    assert_eq!(h.state("s1"), State::Healthy);
    assert_eq!(h.ctl.restart_count("s1"), 1, "the restart was not repeated");
    let rem = h
        .store
        .recent_remediations(PROVIDER, "s1", None, 5)
        .await
        .expect("rows");
    assert_eq!(rem.len(), 1);
    assert_eq!(rem[0].result, "healed");
}

#[tokio::test]
async fn the_api_key_never_reaches_the_database() {
    let mut h = healthy_fleet(&["s1", "s2"], &Settings::default()).await;
    h.ctl.inject("s1", Fault::Desync).expect("desync");
    h.ctl.set_status("s2", Status::ScanQrCode).expect("status");
    h.run_for(secs(60)).await;
    assert!(h.ctl.restart_count("s1") >= 1);
    let db = h.dir.path().join("watchdog.db");
    h.store.close().await;
    let hay = database_text(&db);
    assert!(hay.contains("s1"), "sanity: the database has content");
    assert!(!hay.contains(API_KEY), "the API key is in the database");
}

#[tokio::test]
async fn probes_of_one_provider_are_bounded_by_max_concurrent_probes() {
    let names: Vec<String> = (1..=40).map(|i| format!("s{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut settings = Settings::default();
    settings
        .provider("max_concurrent_probes", "3")
        .canary("timeout", "\"5s\"");
    let mut h = Harness::start(&refs, &settings).await;
    // Every request takes a while, so probes that could overlap do.
    h.ctl.set_global_latency(Duration::from_millis(20));
    h.run_for(secs(6)).await;
    for n in &refs {
        assert_eq!(h.state(n), State::Healthy, "{n}");
    }
    let max = h.ctl.max_concurrent_requests();
    assert!(
        max >= 2,
        "probes never overlapped ({max}); the test proves nothing"
    );
    assert!(
        max <= 3,
        "{max} requests at once with max_concurrent_probes = 3"
    );
}

#[tokio::test]
async fn canary_intervals_are_jittered_within_the_configured_bounds() {
    let mut settings = Settings::default();
    settings
        .canary("interval", "\"10s\"")
        .canary("jitter", "0.2");
    let mut h = Harness::start(&["s1"], &settings).await;
    h.run_for(secs(400)).await;
    let at: Vec<_> = h
        .log
        .iter()
        .filter_map(|e| match e {
            Event::Probe { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    let gaps: Vec<f64> = at
        .windows(2)
        .map(|w| w[1].since(w[0]).as_secs_f64())
        .collect();
    assert!(gaps.len() > 20, "{gaps:?}");
    for g in &gaps {
        assert!(
            (7.9..=12.1).contains(g),
            "gap {g}s outside 10s ± 20 % (+ scheduling step)"
        );
    }
    let distinct: std::collections::BTreeSet<i64> =
        gaps.iter().map(|g| (g * 10.0) as i64).collect();
    assert!(distinct.len() > 5, "no jitter: {gaps:?}");
}

#[tokio::test]
async fn old_probe_records_are_pruned_after_the_retention() {
    let mut settings = Settings::default();
    settings
        .canary("interval", "\"1m\"")
        .daemon("retention", "\"1h\"");
    let mut h = Harness::start(&["s1"], &settings).await;
    let start = h.now();
    h.run_for(secs(3 * 3600 + 120)).await;
    let probes = h
        .store
        .recent_probes(PROVIDER, "s1", None, 10_000)
        .await
        .expect("probes");
    assert!(!probes.is_empty());
    let oldest = probes.iter().map(|p| p.at).min().expect("oldest");
    // Pruned hourly: nothing older than retention + one prune period survives.
    assert!(
        oldest > h.now().minus(secs(2 * 3600 + 60)),
        "oldest {oldest} kept"
    );
    assert!(oldest > start.plus(secs(3600)), "the first hour was pruned");
    // Transitions older than the retention go too (the only one, unknown ->
    // healthy at the start); the session itself, still watched, stays.
    let transitions = h
        .store
        .recent_transitions(PROVIDER, "s1", None, 10)
        .await
        .expect("transitions");
    assert!(transitions.is_empty(), "{transitions:?}");
    assert_eq!(h.state("s1"), State::Healthy);
    let rows = h.store.list_sessions(false).await.expect("sessions");
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn discovery_reads_a_session_list_larger_than_the_probe_body_cap() {
    // ~1,500 sessions make a list of a few hundred kilobytes: more than any
    // probe answer may be, well within what a session list may be.
    let names: Vec<String> = (1..=1500).map(|i| format!("fleet-{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut h = Harness::start(&refs, &Settings::default()).await;
    h.run_for(Duration::from_millis(10)).await;
    assert_eq!(h.scheduler.sessions().len(), 1500);
}
