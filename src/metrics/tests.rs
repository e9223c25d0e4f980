//! Unit tests of the metrics: every family of the contract with its type and
//! labels, the cardinality invariant (one state series per session, retired
//! series gone), zeroed closed label sets, histogram buckets and the bound on
//! webhook event labels. They read the exposition text, as Prometheus would;
//! they must not touch the process-global registry.

use std::collections::HashMap;

use crate::machine::State;

use super::*;

use super::exposition::{Sample, samples};

fn encode(m: &Metrics) -> String {
    m.encode().expect("encode")
}

/// Samples of `name` for one session.
fn session_samples<'a>(all: &'a [Sample], name: &str, session: &str) -> Vec<&'a Sample> {
    all.iter()
        .filter(|s| s.name == name && s.label("session") == Some(session))
        .collect()
}

fn sessions_count(m: &Metrics, provider: &str, state: State) -> i64 {
    m.sessions
        .with_label_values(&[provider, state.as_str()])
        .get()
}

/// A registry with every family holding at least one series.
fn populated() -> Metrics {
    let m = Metrics::new();
    m.observe_probe("waha-main", &Outcome::Delivered, Duration::from_millis(420));
    m.observe_confirmation("waha-main", Duration::from_secs(3));
    m.observe_lateness("waha-main", Duration::from_millis(7));
    m.set_session(
        "waha-main",
        "sales",
        State::Healthy,
        0,
        Some(Timestamp(1_764_000_000_000)),
    );
    m.restart_result("waha-main", RestartResult::Ok);
    m.desync_detected("waha-main");
    m.recovered("waha-main", Duration::from_secs(95));
    m.set_provider("waha-main", true, false);
    m.webhook_event("waha-main", "message.ack");
    m.set_restart_budget("waha-main", 9);
    m.reload_failed();
    m.alertmanager_push_failed();
    m.scheduler_ticked(Timestamp(1_764_000_000_000));
    m
}

#[test]
fn exposition_has_every_contract_family_with_its_type_and_labels() {
    let text = encode(&populated());
    let wrong = super::exposition::contract_violations(&text);
    assert!(wrong.is_empty(), "{wrong:#?}\n{text}");
}

#[test]
fn build_info_names_the_crate_version() {
    let text = encode(&Metrics::new());
    let want = format!(
        "wa_watchdog_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&want), "{text}");
}

#[test]
fn a_session_has_exactly_one_state_series_through_its_life() {
    let m = Metrics::new();
    let path = [
        State::Unknown,
        State::Healthy,
        State::Suspect,
        State::Suspect,
        State::Desynced,
        State::Restarting,
        State::Recovering,
        State::Healthy,
        State::NeedsPairing,
        State::Escalated,
        State::Paused,
        State::Healthy,
    ];
    for (i, state) in path.into_iter().enumerate() {
        let failures = u32::try_from(i).expect("small");
        m.set_session("waha-main", "sales", state, failures, None);
        let all = samples(&encode(&m));
        let series = session_samples(&all, "wa_watchdog_session_state", "sales");
        assert_eq!(series.len(), 1, "after {state}: {series:?}");
        assert_eq!(series[0].label("state"), Some(state.as_str()));
        assert_eq!(series[0].value, "1");
        let failures_series =
            session_samples(&all, "wa_watchdog_session_consecutive_failures", "sales");
        assert_eq!(failures_series.len(), 1);
        assert_eq!(failures_series[0].value, i.to_string());
    }
}

#[test]
fn sessions_gauge_counts_follow_state_changes() {
    let m = Metrics::new();
    m.add_provider("p");
    for state in State::ALL {
        assert_eq!(sessions_count(&m, "p", state), 0, "{state}");
    }
    m.set_session("p", "a", State::Healthy, 0, None);
    m.set_session("p", "b", State::Healthy, 0, None);
    m.set_session("p", "c", State::Desynced, 3, None);
    assert_eq!(sessions_count(&m, "p", State::Healthy), 2);
    assert_eq!(sessions_count(&m, "p", State::Desynced), 1);

    // Setting the same state again changes nothing.
    m.set_session("p", "a", State::Healthy, 0, None);
    assert_eq!(sessions_count(&m, "p", State::Healthy), 2);

    m.set_session("p", "c", State::Restarting, 3, None);
    m.set_session("p", "b", State::Suspect, 1, None);
    assert_eq!(sessions_count(&m, "p", State::Healthy), 1);
    assert_eq!(sessions_count(&m, "p", State::Suspect), 1);
    assert_eq!(sessions_count(&m, "p", State::Desynced), 0);
    assert_eq!(sessions_count(&m, "p", State::Restarting), 1);

    m.retire_session("p", "c");
    assert_eq!(sessions_count(&m, "p", State::Restarting), 0);
    let total: i64 = State::ALL
        .into_iter()
        .map(|s| sessions_count(&m, "p", s))
        .sum();
    assert_eq!(total, 2);

    // Same session name at another provider is another session.
    m.set_session("q", "a", State::Blocked, 0, None);
    assert_eq!(sessions_count(&m, "q", State::Blocked), 1);
    assert_eq!(sessions_count(&m, "p", State::Healthy), 1);
}

#[test]
fn retired_sessions_series_disappear() {
    let m = Metrics::new();
    m.set_session("p", "gone", State::Escalated, 7, Some(Timestamp(5_000)));
    m.set_session("p", "kept", State::Healthy, 0, Some(Timestamp(6_000)));
    let before = encode(&m);
    assert_eq!(before.matches("session=\"gone\"").count(), 3, "{before}");

    m.retire_session("p", "gone");
    let after = encode(&m);
    assert!(!after.contains("session=\"gone\""), "{after}");
    assert_eq!(after.matches("session=\"kept\"").count(), 3);
    assert!(after.contains("wa_watchdog_sessions{provider=\"p\",state=\"escalated\"} 0\n"));

    // Retiring twice, or a session never seen, is harmless.
    m.retire_session("p", "gone");
    m.retire_session("nowhere", "nobody");
    assert_eq!(sessions_count(&m, "p", State::Healthy), 1);
}

#[test]
fn last_success_is_seconds_and_absent_until_the_first_success() {
    let m = Metrics::new();
    m.set_session("p", "new", State::Unknown, 0, None);
    let text = encode(&m);
    assert!(
        !text.contains("wa_watchdog_session_last_success_timestamp_seconds{"),
        "{text}"
    );
    m.set_session(
        "p",
        "new",
        State::Healthy,
        0,
        Some(Timestamp(1_764_000_000_500)),
    );
    let text = encode(&m);
    assert!(
        text.contains(
            "wa_watchdog_session_last_success_timestamp_seconds{provider=\"p\",session=\"new\"} 1764000000.5\n"
        ),
        "{text}"
    );
}

#[test]
fn retire_provider_removes_every_series_of_that_provider() {
    let m = populated();
    m.set_session("other", "x", State::Healthy, 0, None);
    m.retire_provider("waha-main");
    let text = encode(&m);
    assert!(!text.contains("provider=\"waha-main\""), "{text}");
    assert!(text.contains("provider=\"other\""));
    // It can come back later (config reload adds it again).
    m.set_session("waha-main", "sales", State::Healthy, 0, None);
    assert_eq!(sessions_count(&m, "waha-main", State::Healthy), 1);
}

#[test]
fn providers_start_with_zeroed_closed_label_sets() {
    let m = Metrics::new();
    m.add_provider("p");
    let all = samples(&encode(&m));
    let of = |name: &str| {
        all.iter()
            .filter(|s| s.name == name && s.label("provider") == Some("p"))
            .collect::<Vec<_>>()
    };
    assert_eq!(of("wa_watchdog_canary_total").len(), Outcome::NAMES.len());
    assert_eq!(of("wa_watchdog_restarts_total").len(), 3);
    assert_eq!(of("wa_watchdog_sessions").len(), State::ALL.len());
    assert_eq!(of("wa_watchdog_desyncs_total").len(), 1);
    assert_eq!(of("wa_watchdog_provider_up")[0].value, "1");
    assert_eq!(of("wa_watchdog_provider_outage")[0].value, "0");
    for s in of("wa_watchdog_canary_total") {
        assert_eq!(s.value, "0", "{s:?}");
    }
}

#[test]
fn counters_and_provider_gauges_move() {
    let m = Metrics::new();
    m.observe_probe("p", &Outcome::Desync, Duration::from_secs(2));
    m.observe_probe("p", &Outcome::Desync, Duration::from_secs(3));
    m.restart_result("p", RemediationResult::Timeout.into());
    m.set_provider("p", false, true);
    let text = encode(&m);
    for want in [
        "wa_watchdog_canary_total{outcome=\"desync\",provider=\"p\"} 2\n",
        "wa_watchdog_canary_duration_seconds_count{provider=\"p\"} 2\n",
        "wa_watchdog_canary_duration_seconds_sum{provider=\"p\"} 5\n",
        "wa_watchdog_restarts_total{provider=\"p\",result=\"failed\"} 1\n",
        "wa_watchdog_provider_up{provider=\"p\"} 0\n",
        "wa_watchdog_provider_outage{provider=\"p\"} 1\n",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
}

#[test]
fn histogram_buckets_are_as_specified() {
    let text = encode(&populated());
    let all = samples(&text);
    let bounds = |family: &str| -> Vec<String> {
        all.iter()
            .filter(|s| s.name == format!("{family}_bucket"))
            .filter_map(|s| s.label("le").map(str::to_owned))
            .collect()
    };
    let canary = bounds("wa_watchdog_canary_duration_seconds");
    assert_eq!(
        canary,
        [
            "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "20", "30", "+Inf"
        ]
    );
    let recovery = bounds("wa_watchdog_recovery_duration_seconds");
    assert_eq!(
        recovery,
        [
            "5", "15", "30", "60", "120", "300", "600", "900", "1800", "3600", "+Inf"
        ]
    );
    // A 95 s recovery lands in the 120 s bucket and not the 60 s one.
    assert!(text.contains(
        "wa_watchdog_recovery_duration_seconds_bucket{provider=\"waha-main\",le=\"60\"} 0\n"
    ));
    assert!(text.contains(
        "wa_watchdog_recovery_duration_seconds_bucket{provider=\"waha-main\",le=\"120\"} 1\n"
    ));
}

#[test]
fn a_thousand_sessions_through_every_state_keep_three_series_each() {
    let m = Metrics::new();
    let n = 1_000;
    for round in 0..State::ALL.len() {
        for i in 0..n {
            let state = State::ALL[(i + round) % State::ALL.len()];
            let provider = if i % 2 == 0 { "waha-a" } else { "waha-b" };
            let last = (i % 3 != 0).then_some(Timestamp(1_764_000_000_000));
            m.set_session(provider, &format!("s-{i}"), state, 0, last);
        }
    }
    let text = encode(&m);
    // Count the exposition's lines per session, whatever their family.
    let mut per_session: HashMap<String, usize> = HashMap::new();
    for s in samples(&text) {
        if let Some(session) = s.label("session") {
            *per_session.entry(session.to_owned()).or_default() += 1;
        }
    }
    assert_eq!(per_session.len(), n);
    for (session, count) in &per_session {
        assert!(*count <= 3, "{session} has {count} series");
    }
    let state_lines = text
        .lines()
        .filter(|l| l.starts_with("wa_watchdog_session_state{"))
        .count();
    assert_eq!(state_lines, n);
    let total: i64 = ["waha-a", "waha-b"]
        .into_iter()
        .flat_map(|p| State::ALL.map(|s| sessions_count(&m, p, s)))
        .sum();
    assert_eq!(total, i64::try_from(n).expect("small"));
}

#[test]
fn webhook_event_labels_stay_bounded() {
    let m = Metrics::new();
    m.webhook_event("p", "message.ack");
    m.webhook_event("p", "message.ack");
    m.webhook_event("p", "hello \"world\"");
    m.webhook_event("p", &"x".repeat(MAX_EVENT_LEN + 1));
    m.webhook_event("p", "");
    for i in 0..100 {
        m.webhook_event("p", &format!("event{i}"));
    }
    let all = samples(&encode(&m));
    let events: Vec<_> = all
        .iter()
        .filter(|s| s.name == "wa_watchdog_webhook_events_total")
        .collect();
    // `message.ack`, 31 more distinct names, and `other`.
    assert_eq!(events.len(), MAX_EVENTS_PER_PROVIDER + 1, "{events:?}");
    let other = events
        .iter()
        .find(|s| s.label("event") == Some(OTHER_EVENT))
        .expect("other");
    assert_eq!(
        other.value,
        (3 + 100 - (MAX_EVENTS_PER_PROVIDER - 1)).to_string()
    );
    let ack = events
        .iter()
        .find(|s| s.label("event") == Some("message.ack"))
        .expect("ack");
    assert_eq!(ack.value, "2");
}

#[test]
fn each_metrics_value_has_its_own_registry() {
    let a = Metrics::new();
    let b = Metrics::new();
    a.reload_failed();
    assert!(encode(&a).contains("wa_watchdog_config_reload_failures_total 1\n"));
    assert!(encode(&b).contains("wa_watchdog_config_reload_failures_total 0\n"));
    // Nothing leaked into the process-global registry.
    assert!(
        prometheus::gather()
            .iter()
            .all(|f| !f.name().starts_with("wa_watchdog_"))
    );
}

#[test]
fn restart_results_fold_the_machine_results() {
    assert_eq!(
        RestartResult::from(RemediationResult::Healed),
        RestartResult::Ok
    );
    for r in [
        RemediationResult::Failed,
        RemediationResult::Timeout,
        RemediationResult::NotHealed,
    ] {
        assert_eq!(RestartResult::from(r), RestartResult::Failed, "{r:?}");
    }
    assert_eq!(
        RestartResult::from(RemediationResult::Interrupted),
        RestartResult::Skipped
    );
    assert_eq!(
        RestartResult::ALL.map(RestartResult::as_str),
        ["ok", "failed", "skipped"]
    );
}

/// `daemon.session_metrics = false`: no per-session series at all, while the
/// per-provider counts still follow every session's state, its changes and
/// its retirement.
#[test]
fn without_session_series_only_the_fleet_counts_move() {
    let m = Metrics::with_session_series(false);
    let ts = Some(Timestamp(1_764_000_000_000));
    m.set_session("waha", "a", State::Healthy, 0, ts);
    m.set_session("waha", "b", State::Healthy, 0, ts);
    m.set_session("waha", "b", State::Desynced, 3, ts);
    m.set_session("waha", "c", State::Unknown, 0, None);
    m.retire_session("waha", "c");
    let text = encode(&m);
    let all = samples(&text);
    assert!(
        all.iter().all(|s| s.label("session").is_none()),
        "per-session series exported:\n{text}"
    );
    let count = |state: &str| -> String {
        all.iter()
            .find(|s| s.name == "wa_watchdog_sessions" && s.label("state") == Some(state))
            .map(|s| s.value.clone())
            .unwrap_or_default()
    };
    assert_eq!(count("healthy"), "1");
    assert_eq!(count("desynced"), "1");
    assert_eq!(count("unknown"), "0");
}

/// The per-session families are written as text without the registry; the
/// text must be what the registry's own encoder writes for three gauge vecs
/// with the same values: same help, type, label order, escaping (names from
/// a provider may hold `"`, `\` or a newline), value format and series order.
#[test]
fn session_series_text_is_what_the_registry_would_encode() {
    let m = Metrics::new();
    let reference = Registry::new();
    let vec = |(name, help): (&str, &str), labels: &[&str]| {
        let g = prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid");
        reference.register(Box::new(g.clone())).expect("unique");
        g
    };
    let state = vec(session_series::STATE, &["provider", "session", "state"]);
    let success = vec(session_series::LAST_SUCCESS, &["provider", "session"]);
    let failures = vec(session_series::FAILURES, &["provider", "session"]);
    let sessions = [
        ("waha-b", "zeta", State::Healthy, 0, Some(1_764_000_000_123)),
        (
            "waha-a",
            "quote\"d",
            State::Desynced,
            4,
            Some(1_764_000_000_000),
        ),
        ("waha-a", "back\\slash", State::Unknown, 0, None),
        (
            "waha-a",
            "new\nline",
            State::Escalated,
            17,
            Some(1_700_000_000_500),
        ),
        ("waha-a", "alpha", State::Restarting, 2, None),
    ];
    for (provider, session, st, streak, ok) in sessions {
        m.set_session(provider, session, st, streak, ok.map(Timestamp));
        state
            .with_label_values(&[provider, session, st.as_str()])
            .set(1.0);
        if let Some(ms) = ok {
            success
                .with_label_values(&[provider, session])
                .set(Timestamp(ms).as_secs_f64());
        }
        failures
            .with_label_values(&[provider, session])
            .set(f64::from(streak));
    }
    let want = TextEncoder::new()
        .encode_to_string(&reference.gather())
        .expect("encode");
    let ours = encode(&m);
    for family in [
        session_series::STATE.0,
        session_series::LAST_SUCCESS.0,
        session_series::FAILURES.0,
    ] {
        let lines = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| {
                    l.starts_with(&format!("{family}{{"))
                        || *l == format!("# TYPE {family} gauge")
                        || l.starts_with(&format!("# HELP {family} "))
                })
                .map(str::to_owned)
                .collect()
        };
        let got = lines(&ours);
        assert_eq!(got, lines(&want), "{family}");
        assert!(got.len() >= 4, "{family}: {got:?}");
    }
}

/// A family no session has a value for is left out, as the registry leaves
/// out its own; a fleet without sessions writes none of the three.
#[test]
fn session_families_without_samples_are_left_out() {
    let m = Metrics::new();
    m.add_provider("waha");
    let empty = encode(&m);
    assert!(!empty.contains("wa_watchdog_session_"), "{empty}");
    m.set_session("waha", "a", State::Unknown, 0, None);
    let text = encode(&m);
    assert!(text.contains("# TYPE wa_watchdog_session_state gauge\n"));
    assert!(text.contains("# TYPE wa_watchdog_session_consecutive_failures gauge\n"));
    assert!(!text.contains("wa_watchdog_session_last_success"), "{text}");
}
