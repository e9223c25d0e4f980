//! The watchdog against the Green-API simulator: a queued canary counts only
//! once the journal (`getMessage`) says it was sent; a stuck queue is healed by a reboot; states that a
//! reboot cannot fix are never rebooted; the vendor's retry guidance and rate
//! limits hold; the token (part of every URL) never leaks.

use crate::common;
use std::time::Duration;

use crate::common::{GREEN_ID, GREEN_TOKEN, GREEN_WID, GreenHarness, Settings, database_text};
use wa_watchdog::events::Event;
use wa_watchdog::machine::State;
use wa_watchdog::sim::green_api::{ApiMethod, BodyForm, Canned, Fault, QueueMode, SimState};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn settings() -> Settings {
    let mut s = Settings::default();
    s.canary("ack_timeout", "\"6s\"");
    s
}

async fn healthy(settings: &Settings) -> GreenHarness {
    let mut h = GreenHarness::start(settings, |mut o| {
        o.reboot_starting_for = secs(5);
        o
    })
    .await;
    h.run_for(secs(10)).await;
    assert_eq!(h.state(GREEN_ID), State::Healthy, "{:?}", h.log);
    h
}

#[tokio::test]
async fn a_canary_counts_only_once_the_journal_says_sent_and_goes_to_the_wid() {
    let h = healthy(&settings()).await;
    let messages = h.ctl.messages(GREEN_ID).expect("messages");
    assert!(!messages.is_empty());
    assert!(
        messages.iter().all(|m| m.chat_id == GREEN_WID),
        "default target is the wid"
    );
    // Each delivered probe read the journal at least once before counting.
    let delivered = h
        .outcomes(GREEN_ID)
        .iter()
        .filter(|o| *o == "delivered")
        .count();
    assert!(delivered >= 2);
    assert!(h.ctl.count("getMessage") >= delivered);
    assert_eq!(
        h.ctl.count("showMessagesQueue"),
        0,
        "the queue is no verdict"
    );
    let probes = h
        .store
        .recent_probes(common::GREEN_PROVIDER, GREEN_ID, None, 10)
        .await
        .expect("probes");
    assert!(
        probes
            .iter()
            .any(|p| p.detail.contains("confirmed: sent by getMessage")),
        "{probes:?}"
    );
}

#[tokio::test]
async fn a_stuck_queue_is_rebooted_and_healed_through_the_same_machine() {
    let mut h = healthy(&settings()).await;
    h.ctl
        .set_queue_mode(GREEN_ID, QueueMode::StuckUntilReboot)
        .expect("mode");
    let onset = h.now();
    let healed = h
        .run_until(secs(300), |h| {
            h.entered(GREEN_ID, State::Healthy, onset).is_some()
        })
        .await;
    assert!(healed.is_some(), "{:?}", h.transitions(GREEN_ID));
    assert_eq!(h.ctl.count("reboot"), 1);
    let path = h.path(GREEN_ID);
    let tail: Vec<State> = path.iter().rev().take(5).rev().copied().collect();
    assert_eq!(
        tail,
        [
            State::Suspect,
            State::Desynced,
            State::Restarting,
            State::Recovering,
            State::Healthy
        ],
        "{:?}",
        h.transitions(GREEN_ID)
    );
    // Stuck is a send failure without a signature: five confirmations.
    let stuck = h
        .outcomes(GREEN_ID)
        .iter()
        .filter(|o| *o == "stuck")
        .count();
    assert_eq!(stuck, 5);
    let rem = h
        .store
        .recent_remediations(common::GREEN_PROVIDER, GREEN_ID, None, 5)
        .await
        .expect("rows");
    assert_eq!(rem.len(), 1);
    assert_eq!(rem[0].action, "reboot");
    assert_eq!(rem[0].result, "healed");
    for forbidden in ["logout", "setSettings", "clearMessagesQueue"] {
        assert_eq!(h.ctl.count(forbidden), 0, "{forbidden} was called");
    }
}

#[tokio::test]
async fn not_authorized_blocked_and_yellow_card_are_never_rebooted() {
    for (state, expect) in [
        (SimState::NotAuthorized, State::NeedsPairing),
        (SimState::Blocked, State::Blocked),
        (SimState::YellowCard, State::Blocked),
        (SimState::SleepMode, State::NotReady),
        (SimState::Provisioning, State::NotReady),
    ] {
        let mut h = healthy(&settings()).await;
        h.ctl.set_state(GREEN_ID, state).expect("state");
        let sends_before = h.ctl.count("sendMessage");
        h.run_for(secs(1800)).await;
        assert_eq!(h.state(GREEN_ID), expect, "{state:?}");
        assert_eq!(h.ctl.count("reboot"), 0, "{state:?} was rebooted");
        // Canaries stop: sending more to a yellow-carded number makes it worse.
        assert_eq!(
            h.ctl.count("sendMessage"),
            sends_before,
            "{state:?}: canaries sent"
        );
    }
}

#[tokio::test]
async fn a_yellow_card_is_rebooted_only_when_configured() {
    let mut s = settings();
    s.provider("reboot_on_yellow_card", "true");
    let mut h = healthy(&s).await;
    h.ctl
        .set_state(GREEN_ID, SimState::YellowCard)
        .expect("state");
    h.run_for(secs(8)).await;
    assert_eq!(h.ctl.count("reboot"), 1, "a reboot right away");
    // A yellow card that a reboot does not lift: backoff, then a human.
    h.run_for(secs(3600)).await;
    assert_eq!(h.ctl.count("reboot"), 3, "max_restarts, then escalated");
    assert_eq!(h.state(GREEN_ID), State::Escalated);
}

#[tokio::test]
async fn starting_beyond_the_grace_gets_one_reboot_not_a_loop() {
    let mut h = healthy(&settings()).await;
    h.ctl
        .set_state(GREEN_ID, SimState::Starting)
        .expect("state");
    let since = h.now();
    h.run_for(secs(15)).await;
    assert_eq!(h.ctl.count("reboot"), 0, "rebooted within the 20 s grace");
    h.run_for(secs(2 * 3600)).await;
    assert_eq!(h.ctl.count("reboot"), 1, "{:?}", h.transitions(GREEN_ID));
    assert_eq!(h.state(GREEN_ID), State::Escalated);
    let reboot_at = h
        .entered(GREEN_ID, State::Restarting, since)
        .expect("rebooted");
    assert!(reboot_at.since(since) >= secs(20));
    // It comes back by itself: the escalation clears.
    h.ctl
        .set_state(GREEN_ID, SimState::Authorized)
        .expect("state");
    h.run_for(secs(30)).await;
    assert_eq!(h.state(GREEN_ID), State::Healthy);
}

#[tokio::test]
async fn a_502_is_retried_exactly_three_times_before_it_counts() {
    let mut h = healthy(&settings()).await;
    // Four 502s in a row: the first try and three retries fail.
    h.ctl
        .inject(
            GREEN_ID,
            Some(ApiMethod::GetStateInstance),
            4,
            Fault::canned(Canned::BadGateway, BodyForm::Plain),
        )
        .expect("inject");
    let states_before = h.ctl.count("getStateInstance");
    let outcomes_before = h.outcomes(GREEN_ID).len();
    h.run_for(secs(3)).await;
    let new: Vec<String> = h.outcomes(GREEN_ID)[outcomes_before..].to_vec();
    let unreachable = new.iter().filter(|o| *o == "unreachable").count();
    assert_eq!(unreachable, 1, "one probe counted as unreachable: {new:?}");
    let calls = h.ctl.calls();
    let gateway_errors = calls
        .iter()
        .filter(|c| c.method_name == "getStateInstance" && c.status == 502)
        .count();
    assert_eq!(gateway_errors, 4, "1 try + 3 retries");
    assert!(h.ctl.count("getStateInstance") >= states_before + 4);

    // Three 502s then a good answer: never counted at all.
    h.run_for(secs(10)).await;
    assert_eq!(h.state(GREEN_ID), State::Healthy);
    h.ctl
        .inject(
            GREEN_ID,
            Some(ApiMethod::GetStateInstance),
            3,
            Fault::canned(Canned::BadGateway, BodyForm::Json),
        )
        .expect("inject");
    let outcomes_before = h.outcomes(GREEN_ID).len();
    h.run_for(secs(6)).await;
    let new: Vec<String> = h.outcomes(GREEN_ID)[outcomes_before..].to_vec();
    assert!(new.iter().all(|o| o == "delivered"), "{new:?}");
    assert_eq!(h.ctl.count("reboot"), 0);
}

#[tokio::test]
async fn rate_limits_and_an_exhausted_quota_never_reboot() {
    for (canned, outcome) in [
        (Canned::TooManyRequests, "rate_limited"),
        (Canned::Quota, "quota_exceeded"),
    ] {
        let mut h = healthy(&settings()).await;
        h.ctl
            .inject(
                GREEN_ID,
                Some(ApiMethod::SendMessage),
                1000,
                Fault::canned(canned, BodyForm::Json),
            )
            .expect("inject");
        h.run_for(secs(600)).await;
        assert!(
            h.outcomes(GREEN_ID).iter().any(|o| o == outcome),
            "{canned:?}"
        );
        assert_eq!(h.ctl.count("reboot"), 0, "{canned:?}");
        assert_eq!(h.state(GREEN_ID), State::Healthy, "{canned:?}");
    }
}

#[tokio::test]
async fn state_reads_are_never_closer_than_one_second() {
    let mut h = healthy(&settings()).await;
    // The busiest paths: confirmations every second, a reboot with polls.
    h.ctl
        .set_queue_mode(GREEN_ID, QueueMode::StuckUntilReboot)
        .expect("mode");
    h.run_for(secs(180)).await;
    assert!(h.ctl.count("reboot") >= 1, "the reboot path was exercised");
    for method in [
        "getStateInstance",
        "showMessagesQueue",
        "getSettings",
        "reboot",
    ] {
        let at: Vec<_> = h
            .ctl
            .calls()
            .into_iter()
            .filter(|c| c.method_name == method)
            .map(|c| c.at)
            .collect();
        for w in at.windows(2) {
            assert!(
                w[1].since(w[0]) >= secs(1),
                "{method}: two requests {} ms apart",
                w[1].since(w[0]).as_millis()
            );
        }
    }
}

#[tokio::test]
async fn the_token_never_reaches_the_database_the_metrics_or_the_events() {
    let mut h = healthy(&settings()).await;
    // Exercise failures whose details could carry the URL.
    h.ctl
        .inject(
            GREEN_ID,
            None,
            6,
            Fault::canned(Canned::BadGateway, BodyForm::Plain),
        )
        .expect("inject");
    h.ctl
        .set_queue_mode(GREEN_ID, QueueMode::StuckUntilReboot)
        .expect("mode");
    h.run_for(secs(200)).await;
    assert!(h.ctl.count("reboot") >= 1);

    let events = format!("{:?}", h.log);
    assert!(!events.contains(GREEN_TOKEN), "token in an event");
    let metrics = h.metrics.encode().expect("encode");
    assert!(!metrics.contains(GREEN_TOKEN), "token in metrics");
    assert!(
        !format!("{:?}", h.config).contains(GREEN_TOKEN),
        "token in config Debug"
    );

    let db = h
        .config
        .daemon
        .database
        .sqlite_path()
        .expect("the harness runs on SQLite")
        .to_path_buf();
    h.store.close().await;
    let hay = database_text(&db);
    assert!(hay.contains(GREEN_ID), "sanity: the database has content");
    assert!(!hay.contains(GREEN_TOKEN), "token in the database");
    assert!(h.log.iter().any(|e| matches!(e, Event::Remediation { .. })));
}

#[tokio::test]
async fn an_instance_whose_api_does_not_answer_marks_the_provider_down_and_back_up() {
    let mut h = healthy(&settings()).await;
    h.ctl
        .inject(
            GREEN_ID,
            None,
            1000,
            Fault::canned(Canned::ServiceUnavailable, BodyForm::Plain),
        )
        .expect("inject");
    h.run_for(secs(10)).await;
    assert_eq!(h.state(GREEN_ID), State::Unreachable);
    let metrics = h.metrics.encode().expect("encode");
    assert!(
        metrics.contains("wa_watchdog_provider_up{provider=\"green\"} 0"),
        "{metrics}"
    );
    h.ctl.clear_faults(GREEN_ID).expect("clear");
    h.run_for(secs(10)).await;
    assert_eq!(h.state(GREEN_ID), State::Healthy);
    let metrics = h.metrics.encode().expect("encode");
    assert!(metrics.contains("wa_watchdog_provider_up{provider=\"green\"} 1"));
    assert_eq!(h.ctl.count("reboot"), 0);
}
