//! Maintenance windows with the real scheduler, simulator and database on
//! the manual clock (`clock.rs` says why not tokio's paused clock here; the
//! time arithmetic itself is tested in `src/maintenance.rs`). The harness
//! starts at 2027-01-15 08:00:00 UTC, a Friday.

use std::time::Duration;

use crate::common::{Harness, PROVIDER, Settings};
use wa_watchdog::clock::Timestamp;
use wa_watchdog::machine::State;
use wa_watchdog::scheduler::Command;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn at(hms: &str) -> Timestamp {
    let t = chrono::DateTime::parse_from_rfc3339(&format!("2027-01-15T{hms}Z")).expect("time");
    Timestamp::from_millis(t.timestamp_millis())
}

fn window(extra: &str) -> Settings {
    Settings {
        extra: format!(
            "[[maintenance]]\nname = \"upgrade\"\nweekdays = [\"fri\"]\nstart = \"08:01\"\nduration = \"10m\"\n{extra}"
        ),
        ..Settings::default()
    }
}

async fn run_until_time(h: &mut Harness, t: Timestamp) {
    let d = t.since(h.now());
    h.run_for(d).await;
}

#[tokio::test]
async fn a_window_pauses_every_covered_session_and_resumes_it_at_the_end() {
    let mut h = Harness::start(&["s1", "s2"], &window("")).await;
    h.run_for(secs(30)).await;
    assert_eq!(h.state("s1"), State::Healthy);
    assert_eq!(
        h.scheduler.next_due().map(|t| t <= at("08:01:00")),
        Some(true)
    );

    run_until_time(&mut h, at("08:01:00")).await;
    for s in ["s1", "s2"] {
        let m = h.scheduler.machine(PROVIDER, s).expect("machine");
        assert_eq!(m.persisted.state, State::Paused, "{s}");
        assert_eq!(m.persisted.reason, "maintenance window upgrade");
        assert_eq!(m.persisted.paused_until, Some(at("08:11:00")));
    }
    // No canaries, no status reads during the window.
    let (sends, calls) = (h.ctl.send_count("s1"), h.ctl.calls().len());
    run_until_time(&mut h, at("08:10:59")).await;
    assert_eq!(h.ctl.send_count("s1"), sends);
    let during: Vec<_> = h.ctl.calls()[calls..]
        .iter()
        .filter(|c| matches!(c.session.as_deref(), Some("s1" | "s2")))
        .map(|c| c.path.clone())
        .collect();
    assert!(during.is_empty(), "{during:?}");
    assert_eq!(h.state("s1"), State::Paused);

    // At the end: resumed and probed at once; the canary counts once its
    // ack is read back (one look, 2 s later).
    run_until_time(&mut h, at("08:11:03")).await;
    assert_eq!(h.state("s1"), State::Healthy, "{:?}", h.transitions("s1"));
    assert!(h.ctl.send_count("s1") > sends);
    let path = h.path("s2");
    assert!(
        path.ends_with(&[
            State::Healthy,
            State::Paused,
            State::Unknown,
            State::Healthy
        ]),
        "{path:?}"
    );
    // Stored with its reason, for `history`.
    let rows = h
        .store
        .recent_transitions(PROVIDER, "s1", None, 10)
        .await
        .expect("rows");
    assert!(
        rows.iter()
            .any(|r| r.to_state == "paused" && r.reason == "maintenance window upgrade")
    );
    // Next Friday's occurrence is the next thing the windows wait for.
    assert!(h.scheduler.next_due().is_some());
}

#[tokio::test]
async fn scope_limits_the_window_to_the_named_sessions() {
    let mut h = Harness::start(&["s1", "s2"], &window("sessions = [\"waha/s2\"]\n")).await;
    run_until_time(&mut h, at("08:05:00")).await;
    assert_eq!(h.state("s1"), State::Healthy);
    assert_eq!(h.state("s2"), State::Paused);
}

#[tokio::test]
async fn an_operator_resume_during_the_window_sticks() {
    let mut h = Harness::start(&["s1", "s2"], &window("")).await;
    run_until_time(&mut h, at("08:02:00")).await;
    assert_eq!(h.state("s1"), State::Paused);
    h.scheduler
        .command(Command::Resume {
            provider: PROVIDER.into(),
            session: "s1".into(),
        })
        .await
        .expect("resume");
    // A discovery re-evaluates the windows (every 10 s here): s1 stays resumed.
    run_until_time(&mut h, at("08:05:00")).await;
    assert_eq!(h.state("s1"), State::Healthy);
    assert_eq!(h.state("s2"), State::Paused);
}

#[tokio::test]
async fn an_operator_pause_is_never_shortened_by_a_window() {
    let mut h = Harness::start(&["s1"], &window("")).await;
    h.run_for(secs(5)).await;
    h.scheduler
        .command(Command::Pause {
            provider: PROVIDER.into(),
            session: "s1".into(),
            until: None,
            reason: "operator".into(),
        })
        .await
        .expect("pause");
    run_until_time(&mut h, at("08:20:00")).await;
    let m = h.scheduler.machine(PROVIDER, "s1").expect("m");
    assert_eq!(
        (
            m.persisted.state,
            m.persisted.reason.as_str(),
            m.persisted.paused_until
        ),
        (State::Paused, "operator", None)
    );

    // A shorter operator pause is extended to the window's end.
    let mut h = Harness::start(&["s1"], &window("")).await;
    h.run_for(secs(5)).await;
    h.scheduler
        .command(Command::Pause {
            provider: PROVIDER.into(),
            session: "s1".into(),
            until: Some(at("08:03:00")),
            reason: "operator".into(),
        })
        .await
        .expect("pause");
    run_until_time(&mut h, at("08:05:00")).await;
    let m = h.scheduler.machine(PROVIDER, "s1").expect("m");
    assert_eq!(m.persisted.state, State::Paused);
    assert_eq!(m.persisted.paused_until, Some(at("08:11:00")));
}

#[tokio::test]
async fn a_daemon_started_inside_a_window_pauses_at_once_and_new_sessions_too() {
    let settings = window("");
    let h = Harness::start(&["s1"], &settings).await;
    h.clock.set(at("08:05:00"));
    let mut h = h.restart_daemon(&settings).await;
    h.run_for(Duration::from_millis(1)).await;
    assert_eq!(h.state("s1"), State::Paused);
    assert_eq!(h.ctl.send_count("s1"), 0);
    // A session discovered during the window is paused as soon as it is found.
    h.ctl.add_session("s7").expect("add");
    run_until_time(&mut h, at("08:05:11")).await;
    assert_eq!(h.state("s7"), State::Paused);
    assert_eq!(h.ctl.send_count("s7"), 0);
    run_until_time(&mut h, at("08:11:05")).await;
    assert_eq!(h.state("s7"), State::Healthy);
}

#[tokio::test]
async fn a_reload_that_removes_the_window_resumes_its_sessions() {
    let mut settings = window("");
    let mut h = Harness::start(&["s1"], &settings).await;
    run_until_time(&mut h, at("08:03:00")).await;
    assert_eq!(h.state("s1"), State::Paused);
    settings.extra.clear();
    let report = h.reload(&settings).await.expect("reload");
    assert!(report.maintenance_changed);
    h.run_for(secs(3)).await;
    assert_eq!(h.state("s1"), State::Healthy, "{:?}", h.transitions("s1"));

    // And a reload that adds one covering now pauses at once.
    let settings = window("");
    h.reload(&settings).await.expect("reload");
    h.run_for(Duration::from_millis(1)).await;
    assert_eq!(h.state("s1"), State::Paused);
}
