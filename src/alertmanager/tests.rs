//! The alert model and the push bookkeeping, without I/O; and the rules
//! table against `contrib/prometheus/alerts.yml`.

use std::collections::BTreeMap;

use super::*;
use crate::clock::Timestamp;
use crate::events::Event;
use crate::machine::Action;
use crate::provider::Outcome;

const ALERTS_YML: &str = include_str!("../../contrib/prometheus/alerts.yml");

/// `key: value` lines of one `- alert:` block of alerts.yml (values of
/// folded `>-` keys are not needed here).
fn rule_block(name: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in ALERTS_YML.lines() {
        let t = line.trim();
        if let Some(n) = t.strip_prefix("- alert: ") {
            inside = n.trim() == name;
            continue;
        }
        if t.starts_with("- name: ") {
            inside = false;
        }
        if inside && !t.starts_with('#') {
            if let Some((k, v)) = t.split_once(": ") {
                out.insert(k.to_string(), v.trim().trim_matches('"').to_string());
            }
        }
    }
    out
}

fn duration(text: Option<&String>) -> Duration {
    text.map(|t| humantime::parse_duration(t).expect("a rule duration"))
        .unwrap_or_default()
}

#[test]
fn every_pushed_alert_mirrors_its_prometheus_rule() {
    for rule in &RULES {
        let block = rule_block(rule.name);
        assert!(!block.is_empty(), "{} is not in alerts.yml", rule.name);
        assert_eq!(
            block.get("severity").map(String::as_str),
            Some(rule.severity),
            "{}",
            rule.name
        );
        assert_eq!(
            block.get("scope").map(String::as_str),
            Some(rule.scope.as_str()),
            "{}",
            rule.name
        );
        assert_eq!(duration(block.get("for")), rule.hold, "{} for", rule.name);
        assert_eq!(
            duration(block.get("keep_firing_for")),
            rule.keep_firing_for,
            "{} keep_firing_for",
            rule.name
        );
        assert_eq!(
            block.get("runbook").map(String::as_str),
            Some(format!("docs/runbook.md#{}", rule.runbook).as_str()),
            "{}",
            rule.name
        );
        // Summaries without a query value are the rule's, word for word.
        let summary = block.get("summary").expect("summary");
        if !summary.contains("$value") {
            assert_eq!(summary, rule.summary, "{}", rule.name);
        }
        // Windows of rate-style rules match the rule's range.
        match rule.condition {
            Condition::OutcomeWithin(outcome, window) => {
                let expr = block.get("expr").expect("expr");
                assert!(expr.contains(&format!("outcome=\"{outcome}\"")), "{expr}");
                let range = format!("[{}]", humantime::format_duration(window));
                assert!(expr.contains(&range), "{expr} lacks {range}");
            }
            Condition::RestartFailedWithin(window) => {
                let expr = block.get("expr").expect("expr");
                let range = format!("[{}]", humantime::format_duration(window));
                assert!(expr.contains(&range), "{expr} lacks {range}");
            }
            Condition::MarkerWithin {
                marker,
                at_least,
                window,
            } => {
                let expr = block.get("expr").expect("expr");
                let want = format!(
                    "increase(wa_watchdog_webhook_markers_total{{marker=\"{marker}\"}}[{}])",
                    humantime::format_duration(window)
                );
                // The rule sums the replicas' increases around this.
                assert!(expr.contains(&want), "{expr} lacks {want}");
                let threshold = if at_least == 1 {
                    " > 0".to_string()
                } else {
                    format!(" >= {at_least}")
                };
                assert!(expr.ends_with(&threshold), "{expr} lacks {threshold}");
            }
            _ => {}
        }
    }
}

/// Every rule of alerts.yml is pushed or listed as not pushed, never both
/// and never neither: a rule added to the file without the daemon knowing
/// fails here.
#[test]
fn every_prometheus_rule_is_pushed_or_listed_as_not_pushed() {
    let in_file: Vec<&str> = ALERTS_YML
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::trim)
        .collect();
    assert!(in_file.len() >= RULES.len(), "{in_file:?}");
    for name in &in_file {
        let pushed = RULES.iter().filter(|r| r.name == *name).count();
        let not_pushed = NOT_PUSHED.iter().filter(|(n, _)| n == name).count();
        assert_eq!(
            pushed + not_pushed,
            1,
            "{name}: pushed {pushed} times, listed as not pushed {not_pushed} times"
        );
    }
    for name in RULES
        .iter()
        .map(|r| r.name)
        .chain(NOT_PUSHED.iter().map(|(n, _)| *n))
    {
        assert!(in_file.contains(&name), "{name} is not in alerts.yml");
    }
}

/// The README's "Direct push" section names every pushed and every
/// not-pushed alert.
#[test]
fn the_readme_lists_what_is_pushed_and_what_is_not() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("### Direct push to Alertmanager")
        .expect("README section");
    let section = &readme[start..];
    let section = &section[..section[4..].find("\n#").map_or(section.len(), |i| i + 4)];
    for name in RULES
        .iter()
        .map(|r| r.name)
        .chain(NOT_PUSHED.iter().map(|(n, _)| *n))
    {
        assert!(
            section.contains(&format!("`{name}`")),
            "README's direct push section does not name {name}"
        );
    }
}

fn marker(secs: u64, provider: &str, marker: &'static str) -> Event {
    Event::WebhookMarker {
        at: at(secs),
        provider: provider.into(),
        session: provider.into(),
        marker,
    }
}

#[test]
fn one_swe003_pages_for_an_hour() {
    let mut m = Model::default();
    assert!(m.firing(at(0), Holds::default()).is_empty());
    m.apply(&marker(10, "green", "SWE003"));
    let f = m.firing(at(10), Holds::default());
    assert_eq!(names(&f), [("WaWatchdogStaleKeys", None)]);
    assert_eq!(f[0].provider, "green");
    assert_eq!(f[0].since, at(10));
    assert_eq!(f[0].rule.severity, "page");
    assert_eq!(m.firing(at(10 + 3599), Holds::default()).len(), 1);
    assert!(m.firing(at(10 + 3600), Holds::default()).is_empty());
    // Other markers never page for stale keys.
    m.apply(&marker(5000, "green", "SWE002"));
    assert!(m.firing(at(5000), Holds::default()).is_empty());
}

#[test]
fn swe001_needs_three_within_an_hour() {
    let mut m = Model::default();
    m.apply(&marker(0, "green", "SWE001"));
    m.apply(&marker(100, "green", "SWE001"));
    assert!(m.firing(at(200), Holds::default()).is_empty());
    m.apply(&marker(3000, "green", "SWE001"));
    let f = m.firing(at(3000), Holds::default());
    assert_eq!(names(&f), [("WaWatchdogFirstMessagesLost", None)]);
    assert_eq!(f[0].since, at(3000));
    assert_eq!(f[0].rule.severity, "info");
    // The first of the three leaves the hour: two are not a pattern.
    assert!(m.firing(at(3600), Holds::default()).is_empty());
    // A fourth makes three within the hour again; a new run begins.
    m.apply(&marker(3650, "green", "SWE001"));
    let f = m.firing(at(3650), Holds::default());
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].since, at(3650));
    // Another marker while firing keeps the run's start.
    m.apply(&marker(3680, "green", "SWE001"));
    assert_eq!(m.firing(at(3680), Holds::default())[0].since, at(3650));
    // Per provider: another instance's markers do not add up.
    m.apply(&marker(3680, "other", "SWE001"));
    assert!(
        m.firing(at(3680), Holds::default())
            .iter()
            .all(|f| f.provider == "green")
    );
}

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn at(secs: u64) -> Timestamp {
    T0.plus(Duration::from_secs(secs))
}

fn transition(secs: u64, session: &str, to: State) -> Event {
    Event::Transition {
        at: at(secs),
        provider: "waha".into(),
        session: session.into(),
        from: State::Healthy,
        to,
        reason: "test".into(),
    }
}

fn probe(secs: u64, session: &str, outcome: Outcome) -> Event {
    Event::Probe {
        at: at(secs),
        provider: "waha".into(),
        session: session.into(),
        action: Action::Probe,
        outcome,
        detail: String::new(),
        latency: Duration::from_millis(10),
    }
}

fn names(firing: &[Firing]) -> Vec<(&'static str, Option<String>)> {
    firing
        .iter()
        .map(|f| (f.rule.name, f.session.clone()))
        .collect()
}

fn model() -> Model {
    let mut m = Model::default();
    m.apply(&Event::SessionAdded {
        at: at(0),
        provider: "waha".into(),
        session: "s1".into(),
    });
    m
}

#[test]
fn needs_pairing_fires_after_the_rules_hold_and_not_before() {
    let mut m = model();
    m.apply(&transition(10, "s1", State::NeedsPairing));
    let holds = Holds::default();
    assert!(m.firing(at(10 + 299), holds).is_empty());
    let f = m.firing(at(10 + 300), holds);
    assert_eq!(
        names(&f),
        [("WaWatchdogSessionNeedsPairing", Some("s1".to_string()))]
    );
    assert_eq!(f[0].since, at(10));
    // Immediate holds (tests, demo) fire at once.
    assert_eq!(m.firing(at(10), Holds::immediate()).len(), 1);
    // Paired again: nothing fires.
    m.apply(&transition(400, "s1", State::Healthy));
    assert!(m.firing(at(401), holds).is_empty());
}

#[test]
fn a_session_cycling_through_restarts_keeps_its_desynced_clock() {
    let mut m = model();
    m.apply(&transition(0, "s1", State::Desynced));
    m.apply(&transition(100, "s1", State::Restarting));
    m.apply(&transition(200, "s1", State::Recovering));
    m.apply(&transition(300, "s1", State::Desynced));
    let f = m.firing(at(600), Holds::default());
    assert_eq!(
        names(&f),
        [("WaWatchdogSessionDesynced", Some("s1".to_string()))]
    );
    assert_eq!(f[0].since, at(0));
    // Healthy in between restarts the clock.
    m.apply(&transition(610, "s1", State::Healthy));
    m.apply(&transition(620, "s1", State::Desynced));
    assert!(m.firing(at(700), Holds::default()).is_empty());
}

#[test]
fn canary_stale_needs_a_past_success_and_three_intervals_and_no_pause() {
    let mut m = model();
    // Never succeeded: the state alerts cover it, not this one.
    assert!(m.firing(at(10_000), Holds::default()).is_empty());
    m.apply(&probe(0, "s1", Outcome::Delivered));
    // Default interval 5m: stale after 15m, fires 1m later.
    assert!(m.firing(at(900 + 59), Holds::default()).is_empty());
    let f = m.firing(at(900 + 60), Holds::default());
    assert_eq!(
        names(&f),
        [("WaWatchdogCanaryStale", Some("s1".to_string()))]
    );
    m.apply(&transition(1000, "s1", State::Paused));
    assert!(
        m.firing(at(1001), Holds::default())
            .iter()
            .all(|f| f.rule.name != "WaWatchdogCanaryStale")
    );
}

#[test]
fn provider_alerts_follow_health_events_and_outcome_windows() {
    let mut m = model();
    let health = |secs, up, outage| Event::ProviderHealth {
        at: at(secs),
        provider: "waha".into(),
        up,
        outage,
    };
    m.apply(&health(0, false, false));
    assert!(m.firing(at(299), Holds::default()).is_empty());
    assert_eq!(
        names(&m.firing(at(300), Holds::default())),
        [("WaWatchdogProviderUnreachable", None)]
    );
    m.apply(&health(310, true, true));
    assert!(m.firing(at(311), Holds::default()).is_empty());
    assert_eq!(
        names(&m.firing(at(430), Holds::default())),
        [("WaWatchdogProviderOutage", None)]
    );
    m.apply(&health(440, true, false));

    // One auth_rejected probe fires at once and for 15 minutes.
    m.apply(&probe(500, "s1", Outcome::AuthRejected));
    let f = m.firing(at(500), Holds::default());
    assert_eq!(names(&f), [("WaWatchdogAuthRejected", None)]);
    assert_eq!(f[0].since, at(500));
    assert_eq!(m.firing(at(500 + 899), Holds::default()).len(), 1);
    assert!(m.firing(at(500 + 900), Holds::default()).is_empty());

    m.apply(&Event::Remediation {
        at: at(2000),
        provider: "waha".into(),
        session: "s1".into(),
        stage: "timeout".into(),
        detail: String::new(),
    });
    assert_eq!(
        names(&m.firing(at(2001), Holds::default())),
        [("WaWatchdogRestartsFailing", None)]
    );
}

#[test]
fn status_polls_do_not_count_as_canaries() {
    let mut m = model();
    m.apply(&Event::Probe {
        at: at(0),
        provider: "waha".into(),
        session: "s1".into(),
        action: Action::PollStatus,
        outcome: Outcome::AuthRejected,
        detail: String::new(),
        latency: Duration::ZERO,
    });
    assert!(m.firing(at(1), Holds::default()).is_empty());
}

#[test]
fn retired_sessions_stop_firing() {
    let mut m = model();
    m.apply(&transition(0, "s1", State::Escalated));
    assert_eq!(m.firing(at(1), Holds::default()).len(), 1);
    m.apply(&Event::SessionRetired {
        at: at(2),
        provider: "waha".into(),
        session: "s1".into(),
        reason: "gone".into(),
    });
    assert!(m.firing(at(3), Holds::default()).is_empty());
}

fn outbox() -> Outbox {
    Outbox::new(
        Duration::from_secs(60),
        Holds::default(),
        "http://127.0.0.1:9797".into(),
    )
}

fn pairing(since: Timestamp) -> Firing {
    let rule = RULES
        .iter()
        .find(|r| r.name == "WaWatchdogSessionNeedsPairing")
        .expect("rule");
    Firing {
        rule,
        provider: "waha".into(),
        session: Some("s 1".into()),
        since,
    }
}

#[test]
fn two_replicas_push_the_same_alert_with_identical_labels_so_alertmanager_merges_them() {
    // Two replicas differ in their own address (the generator URL) and in when
    // they first saw the condition; Alertmanager identifies an alert by its
    // label set only, so that set must carry no replica identity.
    let mut a = outbox();
    let mut b = Outbox::new(
        Duration::from_secs(60),
        Holds::default(),
        "http://10.0.0.2:9797".into(),
    );
    let from_a = a.plan(at(100), vec![pairing(at(0))]).alerts;
    let from_b = b.plan(at(130), vec![pairing(at(20))]).alerts;
    assert_eq!(from_a.len(), 1);
    assert_eq!(from_b.len(), 1);
    assert_eq!(from_a[0].labels, from_b[0].labels);
    assert_eq!(from_a[0].annotations, from_b[0].annotations);
    assert_ne!(from_a[0].generator_url, from_b[0].generator_url);
    for key in ["instance", "job", "replica"] {
        assert!(
            !from_a[0].labels.contains_key(key),
            "pushed alert carries {key}: {:?}",
            from_a[0].labels
        );
    }
}

#[test]
fn a_new_alert_is_posted_with_labels_annotations_and_ends_at_ahead() {
    let mut o = outbox();
    let batch = o.plan(at(100), vec![pairing(at(0))]);
    assert_eq!(batch.alerts.len(), 1);
    let a = &batch.alerts[0];
    let labels: Vec<(&str, &str)> = a
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("alertname", "WaWatchdogSessionNeedsPairing"),
            ("provider", "waha"),
            ("scope", "session"),
            ("session", "s 1"),
            ("severity", "page"),
        ]
    );
    assert_eq!(
        a.annotations["summary"],
        "WhatsApp session s 1 on waha must be paired again"
    );
    assert_eq!(
        a.annotations["runbook"],
        "docs/runbook.md#session-needs-pairing"
    );
    assert_eq!(a.starts_at, at(0).to_rfc3339());
    assert_eq!(a.ends_at, at(100 + 4 * 60).to_rfc3339());
    assert_eq!(
        a.generator_url,
        "http://127.0.0.1:9797/api/v1/sessions/waha/s%201"
    );
    let json = serde_json::to_value(&batch.alerts).expect("json");
    for key in [
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
    ] {
        assert!(json[0].get(key).is_some(), "{key} in {json}");
    }
}

#[test]
fn firing_alerts_are_resent_every_interval_and_resolved_once_when_cleared() {
    let mut o = outbox();
    let b = o.plan(at(0), vec![pairing(at(0))]);
    o.sent(at(0), b, true);
    // Not due again before resend_interval.
    assert!(o.plan(at(59), vec![pairing(at(0))]).is_empty());
    let b = o.plan(at(60), vec![pairing(at(0))]);
    assert_eq!(b.alerts.len(), 1);
    assert_eq!(b.alerts[0].ends_at, at(60 + 240).to_rfc3339());
    o.sent(at(60), b, true);

    // Cleared: one resolution with endsAt = now, then nothing.
    let b = o.plan(at(70), vec![]);
    assert_eq!(b.alerts.len(), 1);
    assert_eq!(b.alerts[0].ends_at, at(70).to_rfc3339());
    assert_eq!(b.alerts[0].starts_at, at(0).to_rfc3339());
    o.sent(at(70), b, true);
    assert!(o.plan(at(71), vec![]).is_empty());
    assert!(o.active().is_empty());
}

#[test]
fn a_failed_push_is_retried_later_and_resolutions_are_not_lost() {
    let mut o = outbox();
    let b = o.plan(at(0), vec![pairing(at(0))]);
    o.sent(at(0), b, false);
    // Retry after RETRY_AFTER (10 s), not at once.
    assert!(o.plan(at(5), vec![pairing(at(0))]).is_empty());
    let b = o.plan(at(10), vec![pairing(at(0))]);
    assert_eq!(b.alerts.len(), 1);
    o.sent(at(10), b, true);
    // The resolution fails once and goes out with the next attempt.
    let b = o.plan(at(20), vec![]);
    o.sent(at(20), b, false);
    let b = o.plan(at(30), vec![]);
    assert_eq!(b.alerts.len(), 1);
    assert_eq!(b.alerts[0].ends_at, at(20).to_rfc3339());
    o.sent(at(30), b, true);
    assert!(o.plan(at(40), vec![]).is_empty());
}

#[test]
fn escalated_keeps_firing_for_fifteen_minutes_after_it_clears() {
    let rule = RULES
        .iter()
        .find(|r| r.name == "WaWatchdogSessionEscalated")
        .expect("rule");
    let f = Firing {
        rule,
        provider: "waha".into(),
        session: Some("s1".into()),
        since: at(0),
    };
    let mut o = outbox();
    let b = o.plan(at(0), vec![f.clone()]);
    o.sent(at(0), b, true);
    // Cleared at 10 s: still re-sent as firing until 15 min later.
    let b = o.plan(at(10), vec![]);
    assert!(b.is_empty());
    let b = o.plan(at(70), vec![]);
    assert_eq!(b.alerts.len(), 1);
    assert_ne!(b.alerts[0].ends_at, at(70).to_rfc3339());
    o.sent(at(70), b, true);
    let b = o.plan(at(10 + 900), vec![]);
    assert_eq!(b.alerts.len(), 1);
    assert_eq!(b.alerts[0].ends_at, at(910).to_rfc3339());
    // Relapsing within the window keeps the same alert without a resolution.
    let mut o = outbox();
    let b = o.plan(at(0), vec![f.clone()]);
    o.sent(at(0), b, true);
    assert!(o.plan(at(10), vec![]).is_empty());
    assert!(o.plan(at(20), vec![f]).is_empty());
    assert_eq!(o.active().len(), 1);
}

#[test]
fn seeding_from_the_store_restores_states_and_last_success() {
    let rec = |session: &str, state: &str, since: u64| {
        let mut r = crate::store::SessionRecord::new("waha", session, state, at(since));
        r.machine.last_success_at = Some(at(0));
        r
    };
    let mut m = Model::default();
    m.seed(&[
        rec("a", "needs_pairing", 0),
        rec("b", "healthy", 0),
        rec("c", "not-a-state", 0),
    ]);
    let f = m.firing(at(300), Holds::default());
    assert_eq!(
        names(&f),
        [("WaWatchdogSessionNeedsPairing", Some("a".to_string()))]
    );
    // A session gone from the store is gone from the model.
    m.seed(&[rec("b", "healthy", 0)]);
    assert!(m.firing(at(300), Holds::default()).is_empty());
}
