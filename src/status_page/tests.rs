use super::*;
use crate::store::RemediationCount;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn session(provider: &str, name: &str, state: &str) -> SessionRecord {
    let mut rec = SessionRecord::new(provider, name, state, NOW.minus(Duration::from_secs(300)));
    rec.machine.reason = format!("reason of {name}");
    rec.machine.last_success_at = Some(NOW.minus(Duration::from_secs(20)));
    rec.machine.last_outcome = Some("delivered".into());
    rec.machine.last_probe_at = Some(NOW.minus(Duration::from_secs(20)));
    rec.next_probe_at = Some(NOW.plus(Duration::from_secs(40)));
    rec.updated_at = NOW;
    rec
}

fn probe(kind: &str, outcome: &str, secs_ago: u64) -> ProbeRecord {
    ProbeRecord {
        provider: "waha".into(),
        session: "s".into(),
        at: NOW.minus(Duration::from_secs(secs_ago)),
        kind: kind.into(),
        outcome: outcome.into(),
        http_status: Some(201),
        latency_ms: 42,
        detail: format!("detail {outcome}"),
    }
}

#[test]
fn urgency_of_every_state() {
    let table = [
        ("escalated", Urgency::NeedsPerson),
        ("needs_pairing", Urgency::NeedsPerson),
        ("blocked", Urgency::NeedsPerson),
        ("desynced", Urgency::Failing),
        ("suspect", Urgency::Failing),
        ("unreachable", Urgency::Failing),
        ("not_ready", Urgency::Failing),
        ("restarting", Urgency::Healing),
        ("recovering", Urgency::Healing),
        ("unknown", Urgency::Unknown),
        ("paused", Urgency::Paused),
        ("healthy", Urgency::Healthy),
        ("from_a_newer_build", Urgency::Unknown),
        ("", Urgency::Unknown),
    ];
    for (state, want) in table {
        assert_eq!(urgency(state), want, "{state}");
    }
    // Every state the machine knows is in the table.
    for st in State::ALL {
        assert!(table.iter().any(|(s, _)| *s == st.as_str()), "{st}");
    }
}

#[test]
fn sessions_are_sorted_most_urgent_first_then_by_name() {
    let mut v = vec![
        session("waha", "b", "healthy"),
        session("waha", "a", "healthy"),
        session("green", "z", "desynced"),
        session("waha", "p", "paused"),
        session("waha", "q", "needs_pairing"),
        session("waha", "r", "restarting"),
    ];
    sort_sessions(&mut v);
    let order: Vec<&str> = v.iter().map(|s| s.session.as_str()).collect();
    assert_eq!(order, ["q", "z", "r", "p", "a", "b"]);
}

#[test]
fn state_counts_follow_the_machine_order_and_keep_unknown_names() {
    let v = vec![
        session("waha", "a", "healthy"),
        session("waha", "b", "desynced"),
        session("waha", "c", "healthy"),
        session("waha", "d", "zzz"),
        session("waha", "e", "unknown"),
    ];
    assert_eq!(
        state_counts(&v),
        [
            ("unknown".to_string(), 1),
            ("healthy".to_string(), 2),
            ("desynced".to_string(), 1),
            ("zzz".to_string(), 1),
        ]
    );
    assert!(state_counts(&[]).is_empty());
}

#[test]
fn beats_of_probe_outcomes() {
    let table = [
        ("probe", "delivered", Some(Beat::Delivered)),
        ("verify", "delivered", Some(Beat::Delivered)),
        ("probe", "desync", Some(Beat::Failed)),
        ("probe", "send_failed", Some(Beat::Failed)),
        ("ack", "stuck", Some(Beat::Stuck)),
        ("probe", "not_ready:starting", Some(Beat::NoCanary)),
        ("probe", "unreachable", Some(Beat::NoCanary)),
        ("probe", "rate_limited:5000", Some(Beat::NoCanary)),
        ("status", "delivered", None),
        ("status", "not_ready:starting", None),
    ];
    for (kind, outcome, want) in table {
        assert_eq!(beat(&probe(kind, outcome, 1)), want, "{kind} {outcome}");
    }
}

#[test]
fn path_segments_are_percent_encoded() {
    assert_eq!(path_segment("s1.a-b_c~"), "s1.a-b_c~");
    assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    assert_eq!(path_segment("<x>"), "%3Cx%3E");
    assert_eq!(path_segment("é"), "%C3%A9");
    assert_eq!(session_path("waha", "a?b#c"), "/sessions/waha/a%3Fb%23c");
}

const XSS: &str = "<script>alert(1)</script>";

fn fleet() -> Fleet {
    let mut sessions = vec![
        session("waha", "alpha", "healthy"),
        session("waha", "bravo", "desynced"),
        session("waha", XSS, "needs_pairing"),
        session("green\"&", "gamma", "paused"),
    ];
    sessions[3].machine.paused_until = Some(NOW.plus(Duration::from_secs(600)));
    sessions[3].machine.reason = crate::maintenance::pause_reason("nightly");
    sessions[2].machine.reason = "scan the QR code <b>now</b>".into();
    sort_sessions(&mut sessions);
    Fleet {
        now: NOW,
        sessions,
        providers: vec![
            ProviderHealth {
                name: "waha".into(),
                up: Some(true),
                outage: Some(false),
                budget_left: Some(7),
            },
            ProviderHealth {
                name: "green\"&".into(),
                up: Some(false),
                outage: Some(true),
                budget_left: None,
            },
        ],
        restarts: vec![
            RemediationCount {
                provider: "waha".into(),
                session: "bravo".into(),
                result: "healed".into(),
                count: 2,
            },
            RemediationCount {
                provider: "waha".into(),
                session: "bravo".into(),
                result: "failed".into(),
                count: 1,
            },
            RemediationCount {
                provider: "waha".into(),
                session: "alpha".into(),
                result: "called".into(),
                count: 1,
            },
        ],
    }
}

#[test]
fn fleet_page_shows_every_session_and_escapes_names() {
    let html = fleet_html(&fleet());
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    for (name, state) in [
        ("alpha", "healthy"),
        ("bravo", "desynced"),
        ("gamma", "paused"),
    ] {
        assert!(
            html.contains(&format!("data-session=\"{name}\" data-state=\"{state}\"")),
            "{name} {state}\n{html}"
        );
    }
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("/sessions/waha/%3Cscript%3Ealert%281%29%3C%2Fscript%3E"));
    assert!(!html.contains("<b>now</b>"), "{html}");
    assert!(html.contains("green&quot;&amp;"), "{html}");
    // The summary: counts, providers, restarts, who needs a person.
    assert!(html.contains("<b>4</b> sessions"), "{html}");
    assert!(
        html.contains("<b>4</b> restarts in the last 24 h"),
        "{html}"
    );
    assert!(html.contains("in progress: 1"), "{html}");
    assert!(html.contains("healed: 2"), "{html}");
    assert!(html.contains("data-health=\"outage\""), "{html}");
    assert!(html.contains("data-health=\"up\""), "{html}");
    assert!(html.contains("budget left 7"), "{html}");
    assert!(
        html.contains("</span> 3 sessions"),
        "waha has 3 sessions\n{html}"
    );
    assert!(html.contains("<b>1</b> need a person"), "{html}");
    assert!(html.contains("maintenance window nightly"), "{html}");
    assert!(html.contains("http-equiv=\"refresh\""), "{html}");
    // The session needing a person is listed first, both in its own section
    // and in the table.
    let first_row = html.find("class=\"session\"").expect("a row");
    assert!(html[first_row..].starts_with(&format!(
        "class=\"session\" data-provider=\"waha\" data-session=\"{}\"",
        "&lt;script&gt;alert(1)&lt;/script&gt;"
    )));
    // No external assets.
    assert!(!html.contains("src="), "{html}");
    assert!(!html.contains("http://") && !html.contains("https://"));
}

#[test]
fn session_page_has_the_strip_the_restarts_and_the_timeline() {
    let mut rec = session("waha", XSS, "healthy");
    rec.machine.reason = "<img src=x onerror=alert(2)>".into();
    let h = SessionHistory {
        now: NOW,
        session: rec,
        transitions: vec![TransitionRecord {
            provider: "waha".into(),
            session: XSS.into(),
            at: NOW.minus(Duration::from_secs(30)),
            from_state: "recovering".into(),
            to_state: "healthy".into(),
            reason: "verification canary delivered".into(),
        }],
        probes: vec![
            probe("verify", "delivered", 30),
            probe("status", "not_ready:starting", 40),
            probe("probe", "desync", 60),
            probe("ack", "stuck", 70),
            probe("probe", "delivered", 80),
        ],
        rollups: vec![crate::store::ProbeRollup {
            provider: "waha".into(),
            session: XSS.into(),
            start: Timestamp::from_millis(
                NOW.as_millis() - NOW.as_millis() % 3_600_000 - 7_200_000,
            ),
            span: Duration::from_secs(3600),
            outcome: "delivered".into(),
            probes: 12,
            latency_sum_ms: 12 * 250,
            latency_max_ms: 900,
        }],
        remediations: vec![RemediationRecord {
            id: 1,
            provider: "waha".into(),
            session: XSS.into(),
            started_at: NOW.minus(Duration::from_secs(50)),
            action: "restart".into(),
            reason: "3 desyncs <in a row>".into(),
            result: "healed".into(),
            detail: String::new(),
            finished_at: Some(NOW.minus(Duration::from_secs(30))),
            duration_ms: Some(20_000),
            recovery_ms: Some(65_000),
        }],
    };
    let html = session_html(&h);
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "{html}"
    );
    assert!(html.contains("3 desyncs &lt;in a row&gt;"), "{html}");
    // Oldest left: delivered, stuck, desync, (status poll skipped), delivered.
    let beats: Vec<&str> = html
        .match_indices("data-beat=\"")
        .map(|(i, m)| {
            let rest = &html[i + m.len()..];
            &rest[..rest.find('"').expect("closing quote")]
        })
        .collect();
    assert_eq!(beats, ["delivered", "stuck", "failed", "delivered"]);
    assert!(html.contains("Last 4 canaries"), "{html}");
    assert!(html.contains("2 delivered, 1 failed, 1 stuck"), "{html}");
    assert!(html.contains("data-result=\"healed\""), "{html}");
    // Older delivered probes, counted: one bucket row with its numbers.
    let rollups = &html[html.find("id=\"rollups\"").expect("rollups table")..];
    assert!(rollups.contains("data-outcome=\"delivered\""), "{html}");
    assert!(
        rollups.contains("<td>12</td>") && rollups.contains("an hour"),
        "{html}"
    );
    assert!(html.contains("20s"), "restart duration\n{html}");
    assert!(html.contains("1m"), "recovery duration\n{html}");
    // Timeline: newest first, every kind.
    let state = html.find("class=\"t-state\"").expect("state entry");
    let restart = html.find("class=\"t-restart\"").expect("restart entry");
    let probe_row = html.find("class=\"t-probe\"").expect("probe entry");
    assert!(probe_row < restart || state < restart, "{html}");
    assert!(restart < html.rfind("class=\"t-probe\"").expect("probe"));
    assert!(html.contains("verification canary delivered"), "{html}");
    assert!(
        html.contains("detail delivered"),
        "what proved delivery\n{html}"
    );
}

#[test]
fn not_found_page_escapes_the_names() {
    let html = not_found_html(XSS, "<i>x</i>", NOW);
    assert!(!html.contains("<script") && !html.contains("<i>"), "{html}");
    assert!(html.contains("&lt;i&gt;x&lt;/i&gt;"));
}

#[test]
fn provider_health_reads_the_registry() {
    let m = Metrics::new();
    m.add_provider("waha");
    m.set_provider("waha", true, false);
    m.set_restart_budget("waha", 9);
    m.add_provider("green");
    m.set_provider("green", false, true);
    let got = provider_health(&m);
    assert_eq!(
        got,
        [
            ProviderHealth {
                name: "green".into(),
                up: Some(false),
                outage: Some(true),
                budget_left: got[0].budget_left,
            },
            ProviderHealth {
                name: "waha".into(),
                up: Some(true),
                outage: Some(false),
                budget_left: Some(9),
            },
        ]
    );
}
