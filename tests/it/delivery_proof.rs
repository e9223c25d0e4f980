//! Delivery proof, end to end: a canary counts only when WhatsApp has it.
//! The daemon's scheduler against the WAHA and Green-API simulators over
//! loopback, a real SQLite file, a manual clock. One test per acceptance
//! item of the delivery-proof issue; the WAHA ones print the detection time
//! (fault → restart issued) and the heal time (fault → healthy again).

use crate::common;
use std::time::Duration;

use crate::common::{GREEN_ID, GreenHarness, Harness, Settings, healthy_fleet, t0};
use wa_watchdog::alertmanager::{Holds, Model};
use wa_watchdog::clock::Clock;
use wa_watchdog::machine::State;
use wa_watchdog::sim::green_api::MessageFate;
use wa_watchdog::sim::waha::{self, Fault, ReadBack, Status, WahaSimOptions};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A WAHA fleet whose canaries must be confirmed within 6 s.
fn settings() -> Settings {
    let mut s = Settings::default();
    s.canary("ack_timeout", "\"6s\"");
    s
}

fn count(outcomes: &[String], name: &str) -> usize {
    outcomes.iter().filter(|o| *o == name).count()
}

/// Runs until `session` is healthy again after `onset`; returns (detection,
/// heal) times and asserts exactly one restart.
async fn caught_and_healed(
    h: &mut Harness,
    session: &str,
    onset: wa_watchdog::clock::Timestamp,
) -> (Duration, Duration) {
    let healed = h
        .run_until(secs(300), |h| {
            h.entered(session, State::Healthy, onset).is_some()
        })
        .await;
    assert!(healed.is_some(), "not healed: {:?}", h.transitions(session));
    assert_eq!(
        h.ctl.restart_count(session),
        1,
        "{:?}",
        h.transitions(session)
    );
    let restarted = h
        .entered(session, State::Restarting, onset)
        .expect("restarted");
    let healthy = h.entered(session, State::Healthy, onset).expect("healthy");
    let path = h.path(session);
    let tail: Vec<State> = path.iter().rev().take(3).rev().copied().collect();
    assert_eq!(
        tail,
        [State::Restarting, State::Recovering, State::Healthy],
        "{path:?}"
    );
    (restarted.since(onset), healthy.since(onset))
}

#[tokio::test]
async fn accepted_never_acked_is_stuck_five_times_then_restarted_verified_and_healthy() {
    let names = ["alpha", "bravo", "charlie"];
    let mut h = healthy_fleet(&names, &settings()).await;
    let onset = h.now();
    h.ctl
        .inject("bravo", Fault::AcceptedNeverAcked)
        .expect("inject");
    let (detect, heal) = caught_and_healed(&mut h, "bravo", onset).await;
    eprintln!(
        "accepted_never_acked: detection {:.1} s, heal {:.1} s",
        detect.as_secs_f64(),
        heal.as_secs_f64()
    );
    // send_failure_confirmations (5) stuck canaries, each at ack_timeout.
    let outcomes = h.outcomes("bravo");
    assert_eq!(count(&outcomes, "stuck"), 5, "{outcomes:?}");
    assert!(detect >= secs(5 * 6), "each stuck waits for ack_timeout");
    let probes = h
        .store
        .recent_probes(common::PROVIDER, "bravo", None, 50)
        .await
        .expect("probes");
    assert!(
        probes
            .iter()
            .any(|p| p.outcome == "stuck" && p.detail.contains("still PENDING")),
        "{probes:?}"
    );
    // The verification canary was confirmed by reading it back.
    assert!(
        probes
            .iter()
            .any(|p| p.kind == "verify" && p.detail.contains("by read-back")),
        "{probes:?}"
    );
    for other in ["alpha", "charlie"] {
        assert_eq!(h.ctl.restart_count(other), 0, "{other}");
        assert_eq!(h.state(other), State::Healthy, "{other}");
        assert_eq!(count(&h.outcomes(other), "stuck"), 0, "{other}");
    }
    // Read-backs went to the serialized id of each canary.
    let reads = h
        .ctl
        .calls()
        .into_iter()
        .filter(|c| c.method == "GET" && c.path.contains("/messages/"))
        .count();
    assert!(reads >= 5, "{reads}");
}

#[tokio::test]
async fn ack_error_counts_and_is_restarted() {
    let mut h = healthy_fleet(&["alpha", "bravo"], &settings()).await;
    let onset = h.now();
    h.ctl.inject("bravo", Fault::AckError).expect("inject");
    let (detect, heal) = caught_and_healed(&mut h, "bravo", onset).await;
    eprintln!(
        "ack_error: detection {:.1} s, heal {:.1} s",
        detect.as_secs_f64(),
        heal.as_secs_f64()
    );
    let outcomes = h.outcomes("bravo");
    assert_eq!(count(&outcomes, "ack_error"), 5, "{outcomes:?}");
    // An ERROR ack decides at once, long before ack_timeout.
    assert!(detect < secs(5 * 6), "{detect:?}");
    let probes = h
        .store
        .recent_probes(common::PROVIDER, "bravo", None, 50)
        .await
        .expect("probes");
    assert!(
        probes
            .iter()
            .any(|p| p.outcome == "ack_error" && p.detail.contains("ack -1 (ERROR)")),
        "{probes:?}"
    );
    assert_eq!(h.ctl.restart_count("alpha"), 0);
}

#[tokio::test]
async fn a_slow_ack_within_the_deadline_is_never_a_restart() {
    let mut h = healthy_fleet(&["alpha"], &settings()).await;
    h.ctl
        .inject("alpha", Fault::AckSlow(secs(4)))
        .expect("inject");
    h.run_for(secs(90)).await;
    assert_eq!(h.ctl.restart_count("alpha"), 0);
    assert_eq!(h.state("alpha"), State::Healthy);
    let outcomes = h.outcomes("alpha");
    assert!(count(&outcomes, "delivered") >= 5, "{outcomes:?}");
    assert_eq!(count(&outcomes, "stuck"), 0, "{outcomes:?}");
    // The confirmation histogram saw the slow acks.
    let text = h.metrics.encode().expect("encode");
    let line = text
        .lines()
        .find(|l| {
            l.starts_with(
                "wa_watchdog_canary_confirmation_seconds_bucket{provider=\"waha\",le=\"2\"}",
            )
        })
        .expect("histogram");
    let fast: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let total = text
        .lines()
        .find(|l| l.starts_with("wa_watchdog_canary_confirmation_seconds_count{provider=\"waha\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("count");
    assert!(
        total > fast,
        "slow confirmations land above 2 s: {fast} of {total}"
    );
}

#[tokio::test]
async fn a_send_reply_with_ack_minus_one_fails_at_once_and_ack_one_needs_no_read_back() {
    let clock = Clock::manual(t0());
    let sim = waha::start(
        "127.0.0.1:0".parse().expect("addr"),
        WahaSimOptions {
            api_key: Some(common::API_KEY.to_string()),
            sessions: vec!["alpha".into()],
            clock: clock.clone(),
            engine: waha::Engine::Webjs,
            ..WahaSimOptions::default()
        },
    )
    .await
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::with(clock, sim, dir, &settings()).await;
    h.run_for(secs(5)).await;
    assert_eq!(h.state("alpha"), State::Healthy);
    // WEBJS replies carry ack 1 (the simulator acks at once): no read-back.
    let reads = |h: &Harness| {
        h.ctl
            .calls()
            .iter()
            .filter(|c| c.path.contains("/messages/"))
            .count()
    };
    assert_eq!(reads(&h), 0);
    let probes = h
        .store
        .recent_probes(common::PROVIDER, "alpha", None, 5)
        .await
        .expect("probes");
    assert!(
        probes[0].detail.contains("SERVER by send reply"),
        "{probes:?}"
    );
}

#[tokio::test]
async fn green_api_leaves_failed_takes_the_reboot_path() {
    let mut s = Settings::default();
    s.canary("ack_timeout", "\"6s\"");
    let mut h = GreenHarness::start(&s, |mut o| {
        o.reboot_starting_for = secs(5);
        o
    })
    .await;
    h.run_for(secs(10)).await;
    assert_eq!(h.state(GREEN_ID), State::Healthy);
    let onset = h.now();
    h.ctl
        .set_fate(GREEN_ID, MessageFate::LeavesFailed)
        .expect("fate");
    let healed = h
        .run_until(secs(300), |h| {
            h.entered(GREEN_ID, State::Healthy, onset).is_some()
        })
        .await;
    assert!(healed.is_some(), "{:?}", h.transitions(GREEN_ID));
    assert_eq!(h.ctl.count("reboot"), 1);
    let outcomes = h.outcomes(GREEN_ID);
    assert!(count(&outcomes, "ack_error") >= 3, "{outcomes:?}");
    // It left the queue, which the old verdict called delivered.
    assert_eq!(h.ctl.count("showMessagesQueue"), 0);
}

#[tokio::test]
async fn green_api_no_account_alerts_and_never_reboots() {
    let mut s = Settings::default();
    s.canary("ack_timeout", "\"6s\"");
    let mut h = GreenHarness::start(&s, |o| o).await;
    h.run_for(secs(10)).await;
    h.ctl
        .set_fate(GREEN_ID, MessageFate::NoAccount)
        .expect("fate");
    h.run_for(secs(120)).await;
    assert_eq!(h.ctl.count("reboot"), 0);
    let outcomes = h.outcomes(GREEN_ID);
    assert!(count(&outcomes, "bad_canary_chat") >= 5, "{outcomes:?}");
    let text = h.metrics.encode().expect("encode");
    assert!(
        text.contains("wa_watchdog_canary_total{outcome=\"bad_canary_chat\",provider=\"green\"}"),
        "{text}"
    );
    let mut model = Model::new(&h.config);
    for e in &h.log {
        model.apply(e);
    }
    let firing: Vec<&str> = model
        .firing(h.now(), Holds::immediate())
        .iter()
        .map(|f| f.rule.name)
        .collect();
    assert!(
        firing.contains(&"WaWatchdogCanaryChatInvalid"),
        "{firing:?}"
    );
}

#[tokio::test]
async fn green_api_a_backlog_of_600_hides_a_stuck_canary_no_longer() {
    let mut s = Settings::default();
    s.canary("ack_timeout", "\"6s\"");
    let mut h = GreenHarness::start(&s, |mut o| {
        o.reboot_starting_for = secs(5);
        o
    })
    .await;
    h.run_for(secs(10)).await;
    let onset = h.now();
    h.ctl.add_backlog(GREEN_ID, 600).expect("backlog");
    let stuck = h
        .run_until(secs(60), |h| count(&h.outcomes(GREEN_ID), "stuck") > 0)
        .await;
    assert!(stuck.is_some(), "{:?}", h.outcomes(GREEN_ID));
    // And the stuck streak takes the reboot path, which drains the queue.
    let healed = h
        .run_until(secs(300), |h| {
            h.entered(GREEN_ID, State::Healthy, onset).is_some()
        })
        .await;
    assert!(healed.is_some(), "{:?}", h.transitions(GREEN_ID));
    assert_eq!(h.ctl.count("reboot"), 1);
}

#[tokio::test]
async fn passkey_statuses_need_pairing_never_restart_and_the_pairing_alert_fires() {
    let mut h = healthy_fleet(&["alpha", "bravo"], &settings()).await;
    h.ctl
        .set_status("alpha", Status::PasskeyRequired)
        .expect("status");
    h.ctl
        .set_status("bravo", Status::PasskeyConfirmationRequired)
        .expect("status");
    h.run_for(secs(60)).await;
    let mut model = Model::new(&h.config);
    for e in &h.log {
        model.apply(e);
    }
    let firing = model.firing(h.now(), Holds::immediate());
    for s in ["alpha", "bravo"] {
        assert_eq!(h.state(s), State::NeedsPairing, "{s}");
        assert_eq!(h.ctl.restart_count(s), 0, "{s}");
        assert!(
            firing
                .iter()
                .any(|f| f.rule.name == "WaWatchdogSessionNeedsPairing"
                    && f.session.as_deref() == Some(s)),
            "{s}: {:?}",
            firing.iter().map(|f| f.rule.name).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn reachout_timelock_463_and_a_403_refusal_never_restart() {
    let mut h = healthy_fleet(&["alpha", "bravo", "charlie"], &settings()).await;
    // alpha: the timelock shows in me.reachoutTimelock (no canary is sent);
    // bravo: an older server that only answers the send with 463;
    // charlie: WhatsApp refuses with 403.
    h.ctl
        .inject("alpha", Fault::ReachoutTimelock(secs(600)))
        .expect("inject");
    h.ctl
        .inject(
            "bravo",
            Fault::WhatsappError {
                code: 463,
                times: None,
            },
        )
        .expect("inject");
    h.ctl
        .inject(
            "charlie",
            Fault::WhatsappError {
                code: 403,
                times: None,
            },
        )
        .expect("inject");
    let sends_before = h.ctl.send_count("alpha");
    h.run_for(secs(120)).await;
    for s in ["alpha", "bravo", "charlie"] {
        assert_eq!(h.ctl.restart_count(s), 0, "{s}: {:?}", h.transitions(s));
        assert!(
            !h.path(s).contains(&State::Desynced),
            "{s}: {:?}",
            h.path(s)
        );
    }
    assert!(count(&h.outcomes("alpha"), "reachout_timelock") >= 5);
    assert_eq!(
        h.ctl.send_count("alpha"),
        sends_before,
        "no sends into a timelock"
    );
    assert!(count(&h.outcomes("bravo"), "reachout_timelock") >= 5);
    assert!(count(&h.outcomes("charlie"), "send_refused") >= 5);
    // It lifts by itself: the session delivers again.
    h.run_for(secs(500)).await;
    assert_eq!(
        h.outcomes("alpha").last().map(String::as_str),
        Some("delivered")
    );
}

async fn without_read_back(read_back: ReadBack) -> Harness {
    let clock = Clock::manual(t0());
    let sim = waha::start(
        "127.0.0.1:0".parse().expect("addr"),
        WahaSimOptions {
            api_key: Some(common::API_KEY.to_string()),
            sessions: vec!["alpha".into(), "bravo".into()],
            clock: clock.clone(),
            read_back,
            ..WahaSimOptions::default()
        },
    )
    .await
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    Harness::with(clock, sim, dir, &settings()).await
}

#[tokio::test]
async fn an_engine_without_the_read_back_is_unconfirmed_never_restarted_and_visible() {
    for read_back in [ReadBack::NotImplemented, ReadBack::NoRoute] {
        let mut h = without_read_back(read_back).await;
        h.run_for(secs(60)).await;
        for s in ["alpha", "bravo"] {
            assert_eq!(h.ctl.restart_count(s), 0, "{read_back:?} {s}");
            let outcomes = h.outcomes(s);
            assert!(
                count(&outcomes, "unconfirmed") >= 5,
                "{read_back:?} {s}: {outcomes:?}"
            );
            assert_eq!(
                count(&outcomes, "delivered"),
                0,
                "never counted as delivered"
            );
            assert_ne!(h.state(s), State::Healthy, "{read_back:?} {s}");
        }
        let text = h.metrics.encode().expect("encode");
        assert!(
            text.contains("wa_watchdog_canary_total{outcome=\"unconfirmed\",provider=\"waha\"}"),
            "{text}"
        );
        // What the API and `status` show: the session's last outcome.
        let rec = h
            .store
            .session(common::PROVIDER, "alpha")
            .await
            .expect("store")
            .expect("session row");
        assert_eq!(
            rec.machine.last_outcome.as_deref(),
            Some("unconfirmed"),
            "{read_back:?}"
        );
        let mut model = Model::new(&h.config);
        for e in &h.log {
            model.apply(e);
        }
        let firing = model.firing(h.now(), Holds::immediate());
        assert!(
            firing
                .iter()
                .any(|f| f.rule.name == "WaWatchdogCanaryUnconfirmed"),
            "{read_back:?}"
        );
    }
}
