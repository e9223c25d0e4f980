//! Configuration reload (SIGHUP) at the scheduler level, on the manual clock
//! with the WAHA simulator and a real database: what a new config changes,
//! and that every session's state, counters and backoff survive it.
//! (The signal plumbing itself is tested against the binary in
//! `tests/it/systemd.rs`.)

use crate::common;
use std::time::Duration;

use crate::common::{Harness, PROVIDER, Settings, healthy_fleet};
use wa_watchdog::events::Event;
use wa_watchdog::machine::State;
use wa_watchdog::sim::waha::Fault;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A second provider on the same simulator, watching only `s1`.
const SECOND: &str = "\n[[provider]]\nname = \"second\"\nkind = \"waha\"\nurl = \"{sim}\"\n\
                      api_key_env = \"WAHA_API_KEY\"\nsessions = [\"s1\"]\n";

#[tokio::test]
async fn a_shorter_interval_takes_effect_at_once_and_machines_are_untouched() {
    let mut settings = Settings::default();
    settings.canary("interval", "\"1m\"");
    let mut h = Harness::start(&["s1", "s2"], &settings).await;
    h.run_for(secs(31)).await; // first probes are spread over 30 s
    assert_eq!(h.state("s1"), State::Healthy);
    let next = h.scheduler.next_step(PROVIDER, "s1").expect("scheduled");
    assert!(next.at.since(h.now()) > secs(20), "{next:?}");
    let before = h.scheduler.machine(PROVIDER, "s1").cloned();

    settings.canary("interval", "\"5s\"");
    let report = h.reload(&settings).await.expect("reload");
    assert_eq!(report.providers_changed, [PROVIDER]);
    assert_eq!(report.probes_rescheduled, 2, "{report}");
    assert_eq!(h.scheduler.machine(PROVIDER, "s1").cloned(), before);
    let next = h.scheduler.next_step(PROVIDER, "s1").expect("scheduled");
    assert!(next.at.since(h.now()) <= secs(5), "{next:?}");

    let probes = h.outcomes("s1").len();
    h.run_for(secs(11)).await;
    assert!(
        h.outcomes("s1").len() >= probes + 2,
        "{:?}",
        h.outcomes("s1")
    );

    // A longer interval does not delay the probe already scheduled.
    let next = h.scheduler.next_step(PROVIDER, "s1").expect("scheduled");
    settings.canary("interval", "\"10m\"");
    let report = h.reload(&settings).await.expect("reload");
    assert_eq!(report.probes_rescheduled, 0);
    assert_eq!(h.scheduler.next_step(PROVIDER, "s1"), Some(next));

    // Reloading the same file changes nothing.
    let report = h.reload(&settings).await.expect("reload");
    assert_eq!(report.to_string(), "no changes");
}

#[tokio::test]
async fn a_session_in_backoff_keeps_its_deadline_and_counters_across_a_reload() {
    let mut settings = Settings::default();
    let mut h = healthy_fleet(&["s1"], &settings).await;
    h.fail_first_restart("s1").await;
    let before = h.scheduler.machine(PROVIDER, "s1").cloned().expect("m");
    let deadline = before.persisted.next_restart_at.expect("backoff deadline");

    // New policy and intervals: the machine, its counters and the backoff
    // deadline stay (while it waits the session is probed, and each probe
    // asks the policy again, which answers with the same deadline).
    settings
        .policy("max_restarts", "5")
        .policy("backoff_initial", "\"1s\"")
        .canary("interval", "\"1s\"");
    h.reload(&settings).await.expect("reload");
    assert_eq!(h.scheduler.machine(PROVIDER, "s1"), Some(&before));
    let step = h.scheduler.next_step(PROVIDER, "s1").expect("step");
    assert!(step.at <= deadline, "{step:?}");

    let second = h.second_restart("s1", deadline).await;
    assert!(second >= deadline, "restarted early");
}

#[tokio::test]
async fn a_lower_confirmation_threshold_applies_to_the_next_decision() {
    let mut settings = Settings::default();
    settings.policy("desync_confirmations", "5");
    let mut h = healthy_fleet(&["s1"], &settings).await;
    settings.policy("desync_confirmations", "1");
    h.reload(&settings).await.expect("reload");
    let onset = h.now();
    h.ctl.inject("s1", Fault::Desync).expect("desync");
    h.run_until(secs(10), |h| {
        h.entered("s1", State::Restarting, onset).is_some()
    })
    .await
    .expect("restarted");
    // One desync was enough: healthy -> desynced directly, no suspect.
    let after: Vec<_> = h
        .transitions("s1")
        .into_iter()
        .filter(|(from, _, _)| *from == State::Healthy)
        .collect();
    assert_eq!(after[0].1, State::Desynced, "{:?}", h.transitions("s1"));
}

#[tokio::test]
async fn sessions_added_to_and_removed_from_the_list_are_watched_and_retired() {
    let mut settings = Settings::default();
    settings.provider("sessions", "[\"s1\"]");
    let mut h = Harness::start(&["s1", "s2", "s3"], &settings).await;
    h.run_for(secs(5)).await;
    assert_eq!(h.state("s1"), State::Healthy);
    assert!(h.scheduler.machine(PROVIDER, "s2").is_none());

    settings.provider("sessions", "[\"s1\", \"s2\"]");
    let report = h.reload(&settings).await.expect("reload");
    assert_eq!(report.sessions_added, ["waha/s2"]);
    h.run_for(secs(5)).await;
    assert_eq!(h.state("s2"), State::Healthy);

    // s1 goes; its history stays in the store, retired.
    let s1 = h.scheduler.machine(PROVIDER, "s1").cloned();
    settings.provider("sessions", "[\"s2\"]");
    let report = h.reload(&settings).await.expect("reload");
    assert_eq!(report.sessions_retired, ["waha/s1"]);
    assert!(h.scheduler.machine(PROVIDER, "s1").is_none());
    let sends = h.ctl.send_count("s1");
    h.run_for(secs(10)).await;
    assert_eq!(
        h.ctl.send_count("s1"),
        sends,
        "a retired session was probed"
    );
    let row = h
        .store
        .session(PROVIDER, "s1")
        .await
        .expect("db")
        .expect("row");
    assert!(row.retired_at.is_some());
    assert_eq!(
        Some(row.machine.state.as_str()),
        s1.map(|m| m.persisted.state.as_str())
    );

    // Turned off by an override: retired too.
    settings.provider("sessions", "[\"s2\", \"s3\"]");
    settings.extra = "[[provider.session]]\nname = \"s3\"\nenabled = false\n".into();
    let report = h.reload(&settings).await.expect("reload");
    assert!(report.sessions_added.is_empty(), "{report}");
    assert!(h.scheduler.machine(PROVIDER, "s3").is_none());

    // From a list to discovery: every session of the server is found.
    settings.provider("sessions", "[\"*\"]");
    settings.extra.clear();
    h.reload(&settings).await.expect("reload");
    h.run_for(secs(5)).await;
    for s in ["s1", "s2", "s3"] {
        assert_eq!(h.state(s), State::Healthy, "{s}");
    }
}

#[tokio::test]
async fn a_removed_provider_retires_its_sessions_and_can_come_back() {
    let mut settings = Settings {
        extra: SECOND.to_string(),
        ..Settings::default()
    };
    let mut h = healthy_fleet(&["s1", "s2"], &settings).await;
    assert_eq!(
        h.scheduler
            .machine("second", "s1")
            .map(|m| m.persisted.state),
        Some(State::Healthy)
    );

    settings.extra.clear();
    let report = h.reload(&settings).await.expect("reload");
    assert_eq!(report.providers_removed, ["second"]);
    assert_eq!(report.sessions_retired, ["second/s1"]);
    assert!(h.scheduler.machine("second", "s1").is_none());
    h.run_for(Duration::from_millis(1)).await; // collects the events
    assert!(h.log.iter().any(|e| matches!(e,
        Event::SessionRetired { provider, session, .. } if provider == "second" && session == "s1")));
    let rows = h.store.list_sessions(false).await.expect("rows");
    assert!(rows.iter().all(|r| r.provider != "second"), "{rows:?}");
    // Commands no longer find it; the provider that stays is untouched.
    let err = h
        .scheduler
        .command(wa_watchdog::scheduler::Command::Resume {
            provider: "second".into(),
            session: "s1".into(),
        })
        .await
        .expect_err("removed");
    assert_eq!(
        err,
        wa_watchdog::scheduler::Refusal::NoProvider("second".into())
    );
    assert!(
        err.to_string().contains("no provider named \"second\""),
        "{err}"
    );
    h.run_for(secs(5)).await;
    assert_eq!(h.state("s1"), State::Healthy);

    // Back again: a new slot, watched from scratch.
    settings.extra = SECOND.to_string();
    let report = h.reload(&settings).await.expect("reload");
    assert_eq!(report.providers_added, ["second"]);
    assert_eq!(report.sessions_added, ["second/s1"]);
    h.run_for(secs(5)).await;
    assert_eq!(
        h.scheduler
            .machine("second", "s1")
            .map(|m| m.persisted.state),
        Some(State::Healthy)
    );
}

#[tokio::test]
async fn daemon_level_intervals_are_taken_over() {
    let mut settings = Settings::default();
    let mut h = healthy_fleet(&["s1"], &settings).await;
    h.ctl.add_session("s9").expect("add");
    // Discovery every 10 s by default; make it 1 s: s9 appears quickly.
    settings.daemon("discovery_interval", "\"1s\"");
    h.reload(&settings).await.expect("reload");
    // Found within a second or two, probed, its ack read back 2 s later;
    // with the old 10 s discovery it would take 10 s or more.
    let found = h
        .run_until(secs(6), |h| {
            h.scheduler
                .machine(PROVIDER, "s9")
                .map(|m| m.persisted.state)
                == Some(State::Healthy)
        })
        .await;
    assert!(found.is_some(), "{:?}", h.transitions("s9"));
}

/// The daemon-level reload (what SIGHUP runs) against a running App: a
/// broken file is rejected naming the key and counted; a good one applies.
#[tokio::test]
async fn a_broken_file_is_rejected_and_counted_and_a_good_one_applies() {
    use wa_watchdog::app::App;
    use wa_watchdog::reload::{ReloadOutcome, Reloader};
    use wa_watchdog::service::Notifier;

    let clock = wa_watchdog::clock::Clock::manual(common::t0());
    let sim = common::sim(&["s1"], &clock).await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("config.toml");
    let db = dir.path().join("watchdog.db");
    let settings = Settings::default();
    // The file names WAHA_API_KEY through api_key_env; this process's
    // environment has no such variable, so give the harness key a file.
    let key_file = dir.path().join("waha-key");
    std::fs::write(&key_file, common::API_KEY).expect("key");
    let text = |s: &Settings| {
        s.waha_toml(&db, &sim.url()).replace(
            "api_key_env = \"WAHA_API_KEY\"",
            &format!("api_key_file = {key_file:?}"),
        )
    };
    std::fs::write(&path, text(&settings)).expect("write");
    let config = wa_watchdog::config::Config::load(&path).expect("config");
    let app = App::build(config.clone(), clock.clone(), Some(1))
        .await
        .expect("app");
    let metrics = app.metrics.clone();
    let mut reloader = Reloader::new(config, app.handle(), metrics.clone(), Notifier::disabled());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let counter = |m: &wa_watchdog::metrics::Metrics| {
        m.encode()
            .expect("encode")
            .lines()
            .find(|l| l.starts_with("wa_watchdog_config_reload_failures_total "))
            .map(|l| l.to_string())
    };
    assert_eq!(
        counter(&metrics).as_deref(),
        Some("wa_watchdog_config_reload_failures_total 0")
    );

    let mut broken = settings.clone();
    broken.policy("max_restarts", "0");
    std::fs::write(&path, text(&broken)).expect("write");
    match reloader.reload().await {
        ReloadOutcome::Rejected(why) => {
            assert!(why.contains("policy.max_restarts"), "{why}");
            assert!(why.contains(&path.display().to_string()), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        counter(&metrics).as_deref(),
        Some("wa_watchdog_config_reload_failures_total 1")
    );
    assert_eq!(reloader.current().providers[0].policy.max_restarts, 3);

    let mut good = settings.clone();
    good.policy("max_restarts", "7")
        .daemon("listen", "\"127.0.0.1:9999\"");
    std::fs::write(&path, text(&good)).expect("write");
    assert_eq!(
        reloader.reload().await,
        ReloadOutcome::Applied {
            restart_needed: vec!["daemon.listen"]
        }
    );
    assert_eq!(reloader.current().providers[0].policy.max_restarts, 7);
    assert_eq!(
        counter(&metrics).as_deref(),
        Some("wa_watchdog_config_reload_failures_total 1")
    );

    let _ = stop.send(());
    running.await.expect("join").expect("run");
}
