//! The HTML of the status page, with maud: every `(expression)` below is
//! escaped; the only `PreEscaped` is the constant style sheet.
//!
//! Hooks for tests and scripts: each session row is
//! `<tr class="session" data-provider=… data-session=… data-state=…>`, the
//! fleet summary is `#summary`, a session page's heartbeat cells are
//! `#heartbeat span.beat[data-beat]`, its timeline rows `#timeline tr`.

use std::collections::BTreeMap;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{
    Beat, Fleet, REFRESH_SECONDS, RESTART_WINDOW, SessionHistory, TIMELINE_LIMIT, Urgency, beat,
    session_path, state_counts, urgency,
};
use crate::cli::format;
use crate::clock::Timestamp;
use crate::maintenance;
use crate::store::SessionRecord;

/// Inline, so the page needs nothing but itself. States are shown as text in
/// a coloured badge (colour is never the only signal).
const CSS: &str = r#"
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--heal:#0969da;--person:#8250df;--idle:#6e7781}
body{font:14px/1.45 system-ui,sans-serif;margin:1.2rem;max-width:90rem}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.4rem 0 .4rem}
.muted{color:var(--idle)}a{color:inherit}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #8884;vertical-align:top}
th{font-weight:600;white-space:nowrap}td.num{text-align:right}
.badge{display:inline-block;padding:0 .45rem;border-radius:.6rem;color:#fff;font-weight:600;white-space:nowrap}
.u-healthy{background:var(--ok)}.u-failing{background:var(--bad)}.u-healing{background:var(--heal)}
.u-person{background:var(--person)}.u-paused,.u-unknown{background:var(--idle)}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}.card{border:1px solid #8886;border-radius:.4rem;padding:.5rem .8rem;min-width:12rem}
.card b{font-size:1.3rem}
#heartbeat{display:flex;gap:2px;align-items:flex-end;margin:.3rem 0}
.beat{display:inline-block;width:9px;height:22px;border-radius:2px}
.b-delivered{background:var(--ok)}.b-failed{background:var(--bad)}.b-stuck{background:var(--warn)}.b-none{background:var(--idle);height:14px}
.reason{max-width:40rem}#facts{width:auto}#facts th{padding-right:2rem}
"#;

fn css_class(u: Urgency) -> &'static str {
    match u {
        Urgency::NeedsPerson => "u-person",
        Urgency::Failing => "u-failing",
        Urgency::Healing => "u-healing",
        Urgency::Unknown => "u-unknown",
        Urgency::Paused => "u-paused",
        Urgency::Healthy => "u-healthy",
    }
}

fn beat_class(b: Beat) -> &'static str {
    match b {
        Beat::Delivered => "beat b-delivered",
        Beat::Failed => "beat b-failed",
        Beat::Stuck => "beat b-stuck",
        Beat::NoCanary => "beat b-none",
    }
}

/// A state as a coloured badge that also says it in words.
fn badge(state: &str) -> Markup {
    let u = urgency(state);
    html! {
        span class=(format!("badge {}", css_class(u))) title=(u.label()) { (state) }
    }
}

/// `5m ago`, with the UTC time as a tooltip.
fn ago(now: Timestamp, t: Option<Timestamp>, never: &str) -> Markup {
    match t {
        Some(t) => {
            html! { time datetime=(t.to_rfc3339()) title=(format::time(t)) { (format::ago(now, t)) } }
        }
        None => html! { span.muted { (never) } },
    }
}

fn until(now: Timestamp, t: Option<Timestamp>) -> Markup {
    match t {
        Some(t) => {
            html! { time datetime=(t.to_rfc3339()) title=(format::time(t)) { (format::until(now, t)) } }
        }
        None => html! { span.muted { "—" } },
    }
}

fn page(title: &str, now: Timestamp, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content=(REFRESH_SECONDS);
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                (body)
                p.muted {
                    "Updated " (format::time(now)) "; this page reloads every "
                    (REFRESH_SECONDS) " s. Data: "
                    a href="/api/v1/sessions" { "/api/v1/sessions" } ", "
                    a href="/metrics" { "/metrics" } "."
                }
            }
        }
    }
    .into_string()
}

/// What a paused session waits for, or nothing.
fn paused(now: Timestamp, s: &SessionRecord) -> Markup {
    if s.machine.state != "paused" {
        return html! {};
    }
    let by = match maintenance::window_of_reason(&s.machine.reason) {
        Some(window) => format!("maintenance window {window}"),
        None => "operator".to_string(),
    };
    html! {
        (by) @if let Some(t) = s.machine.paused_until { ", resumes " (until(now, Some(t))) }
    }
}

/// `GET /`: the fleet summary, who needs a person, and one row per session.
pub fn fleet_html(f: &Fleet) -> String {
    let now = f.now;
    let counts = state_counts(&f.sessions);
    let mut restarts_by_result: BTreeMap<&str, u64> = BTreeMap::new();
    let mut restarts_by_session: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for r in &f.restarts {
        // `pending` (intent written) and `called` (provider answered) are
        // restarts still under way.
        let result = match r.result.as_str() {
            "pending" | "called" => "in progress",
            other => other,
        };
        *restarts_by_result.entry(result).or_default() += r.count;
        *restarts_by_session
            .entry((r.provider.as_str(), r.session.as_str()))
            .or_default() += r.count;
    }
    let restarts_total: u64 = restarts_by_result.values().sum();
    let mut per_provider: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &f.sessions {
        *per_provider.entry(s.provider.as_str()).or_default() += 1;
    }
    let needs_person: Vec<&SessionRecord> = f
        .sessions
        .iter()
        .filter(|s| urgency(&s.machine.state) == Urgency::NeedsPerson)
        .collect();
    let window_h = RESTART_WINDOW.as_secs() / 3600;
    let body = html! {
        h1 { "wa-watchdog status" }
        section #summary {
            div.cards {
                div.card #sessions-per-state {
                    b { (f.sessions.len()) } " sessions"
                    @if counts.is_empty() { div.muted { "none watched yet" } }
                    @for (state, n) in &counts {
                        div data-state=(state) { (badge(state)) " " (n) }
                    }
                }
                div.card #providers {
                    b { (f.providers.len()) } " providers"
                    @for p in &f.providers {
                        @let health = match (p.up, p.outage) {
                            (_, Some(true)) => ("outage", Urgency::Failing),
                            (Some(false), _) => ("down", Urgency::Failing),
                            (Some(true), _) => ("up", Urgency::Healthy),
                            _ => ("not probed yet", Urgency::Unknown),
                        };
                        div.provider data-provider=(p.name) data-health=(health.0) {
                            (p.name) " "
                            span class=(format!("badge {}", css_class(health.1))) { (health.0) }
                            " " (per_provider.get(p.name.as_str()).copied().unwrap_or(0)) " sessions"
                            @if let Some(b) = p.budget_left { span.muted { " budget left " (b) } }
                        }
                    }
                }
                div.card #restarts {
                    b { (restarts_total) } " restarts in the last " (window_h) " h"
                    @for (result, n) in &restarts_by_result {
                        div { (result) ": " (n) }
                    }
                }
                div.card #needs-person-count {
                    b { (needs_person.len()) } " need a person"
                }
            }
        }
        @if !needs_person.is_empty() {
            section #needs-person {
                h2 { "Needs a person" }
                ul {
                    @for s in &needs_person {
                        li {
                            a href=(session_path(&s.provider, &s.session)) { (s.provider) " / " (s.session) }
                            " " (badge(&s.machine.state)) " since " (ago(now, Some(s.machine.since), "")) ": "
                            span.reason { (s.machine.reason) }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Sessions" }
            table #sessions {
                thead { tr {
                    th { "provider" } th { "session" } th { "state" } th { "since" }
                    th { "last delivered" } th { "last outcome" } th { "next probe" }
                    th { "failures" } th { "restarts " (window_h) " h" } th { "paused" }
                } }
                tbody {
                    @for s in &f.sessions {
                        tr.session data-provider=(s.provider) data-session=(s.session) data-state=(s.machine.state) {
                            td { (s.provider) }
                            td { a href=(session_path(&s.provider, &s.session)) { (s.session) } }
                            td { (badge(&s.machine.state)) }
                            td { (ago(now, Some(s.machine.since), "")) }
                            td { (ago(now, s.machine.last_success_at, "never")) }
                            td { @match &s.machine.last_outcome { Some(o) => (o), None => span.muted { "—" } } }
                            td { (until(now, s.next_probe_at)) }
                            td.num { (s.machine.consecutive_failures) }
                            td.num { (restarts_by_session.get(&(s.provider.as_str(), s.session.as_str())).copied().unwrap_or(0)) }
                            td { (paused(now, s)) }
                        }
                    }
                }
            }
        }
        (actions_note())
    };
    page("wa-watchdog status", now, body)
}

fn actions_note() -> Markup {
    html! {
        p.muted #actions {
            "Pause, resume and restart are not on this page: use "
            code { "wa-watchdog pause|resume SESSION" }
            " or POST "
            code { "/api/v1/sessions/{provider}/{session}/pause|resume|restart" }
            " with the admin bearer token."
        }
    }
}

/// One entry of the merged timeline.
struct Entry {
    at: Timestamp,
    kind: &'static str,
    what: Markup,
    detail: String,
}

fn ms(v: u64) -> String {
    if v < 1000 {
        format!("{v} ms")
    } else {
        format::short(std::time::Duration::from_millis(v))
    }
}

/// `GET /sessions/{provider}/{session}`: state, heartbeat strip, restarts and
/// the timeline of probes, state changes and restarts, newest first.
pub fn session_html(h: &SessionHistory) -> String {
    let now = h.now;
    let s = &h.session;
    // The strip reads left (oldest) to right (newest), like Uptime Kuma's.
    let beats: Vec<(Beat, &crate::store::ProbeRecord)> = h
        .probes
        .iter()
        .rev()
        .filter_map(|p| beat(p).map(|b| (b, p)))
        .collect();
    let count = |b: Beat| beats.iter().filter(|(x, _)| *x == b).count();
    let mut timeline: Vec<Entry> = Vec::new();
    for p in h.probes.iter().take(TIMELINE_LIMIT as usize) {
        let status = p
            .http_status
            .map(|c| format!(" HTTP {c}"))
            .unwrap_or_default();
        timeline.push(Entry {
            at: p.at,
            kind: "probe",
            what: html! { (p.kind) ": " b { (p.outcome) } (status) " in " (ms(p.latency_ms)) },
            detail: p.detail.clone(),
        });
    }
    for t in &h.transitions {
        timeline.push(Entry {
            at: t.at,
            kind: "state",
            what: html! { (badge(&t.from_state)) " → " (badge(&t.to_state)) },
            detail: t.reason.clone(),
        });
    }
    for r in &h.remediations {
        timeline.push(Entry {
            at: r.started_at,
            kind: "restart",
            what: html! { (r.action) ": " b { (r.result) } },
            detail: r.reason.clone(),
        });
    }
    timeline.sort_by_key(|e| std::cmp::Reverse(e.at));
    let title = format!("{} / {} — wa-watchdog", s.provider, s.session);
    let body = html! {
        p { a href="/" { "← all sessions" } }
        h1 #session data-provider=(s.provider) data-session=(s.session) data-state=(s.machine.state) {
            (s.provider) " / " (s.session) " " (badge(&s.machine.state))
        }
        p.reason { "Since " (ago(now, Some(s.machine.since), "")) ": " (s.machine.reason) }
        table #facts { tbody {
            tr { th { "last delivered canary" } td { (ago(now, s.machine.last_success_at, "never")) } }
            tr { th { "last outcome" } td { (s.machine.last_outcome.as_deref().unwrap_or("—")) } }
            tr { th { "last probe" } td { (ago(now, s.machine.last_probe_at, "never")) } }
            tr { th { "next probe" } td { (until(now, s.next_probe_at)) } }
            tr { th { "consecutive failures" } td { (s.machine.consecutive_failures) } }
            @if s.machine.state == "paused" { tr { th { "paused" } td { (paused(now, s)) } } }
            @if let Some(t) = s.machine.next_restart_at.filter(|t| *t > now) { tr { th { "next restart allowed" } td { (until(now, Some(t))) } } }
            @if let Some(t) = s.machine.healthy_since { tr { th { "healthy since" } td { (ago(now, Some(t), "")) } } }
        } }
        h2 { "Last " (beats.len()) " canaries" }
        div #heartbeat role="img" aria-label=(format!(
            "{} delivered, {} failed, {} stuck, {} without a canary",
            count(Beat::Delivered), count(Beat::Failed), count(Beat::Stuck), count(Beat::NoCanary)
        )) {
            @for (b, p) in &beats {
                span class=(beat_class(*b)) data-beat=(b.as_str())
                    title=(format!("{} {}: {} ({})", format::time(p.at), p.kind, p.outcome, ms(p.latency_ms))) {}
            }
        }
        p.muted {
            (count(Beat::Delivered)) " delivered, " (count(Beat::Failed)) " failed, "
            (count(Beat::Stuck)) " stuck, " (count(Beat::NoCanary)) " without a canary (oldest left)"
        }
        @if !h.rollups.is_empty() {
            h2 { "Earlier probes" }
            p.muted { "Delivered probes older than the strip, counted per hour (last day) or day; failed ones stay in the timeline one by one." }
            table #rollups { thead { tr {
                th { "from" } th { "for" } th { "outcome" } th { "probes" } th { "mean" } th { "slowest" }
            } } tbody {
                @for r in &h.rollups {
                    tr data-outcome=(r.outcome) {
                        td { time datetime=(r.start.to_rfc3339()) { (format::time(r.start)) } }
                        td { @if r.span.as_secs() >= 24 * 3600 { "a day" } @else { "an hour" } }
                        td { (r.outcome) }
                        td { (r.probes) }
                        td { (ms(r.latency_sum_ms / r.probes.max(1))) }
                        td { (ms(r.latency_max_ms)) }
                    }
                }
            } }
        }
        h2 { "Restarts" }
        @if h.remediations.is_empty() { p.muted { "none recorded" } } @else {
            table #restarts { thead { tr {
                th { "started" } th { "action" } th { "result" } th { "took" } th { "recovery" } th { "reason" } th { "detail" }
            } } tbody {
                @for r in &h.remediations {
                    tr data-result=(r.result) {
                        td { (ago(now, Some(r.started_at), "")) }
                        td { (r.action) }
                        td { (r.result) }
                        td { @match r.duration_ms { Some(d) => (ms(d)), None => span.muted { "—" } } }
                        td { @match r.recovery_ms { Some(d) => (ms(d)), None => span.muted { "—" } } }
                        td.reason { (r.reason) }
                        td { (r.detail) }
                    }
                }
            } }
        }
        h2 { "Timeline" }
        p.muted { "Probes (with what proved delivery), state changes with their reasons, restarts; newest first." }
        table #timeline { thead { tr { th { "when" } th { "" } th { "what" } th { "detail" } } } tbody {
            @for e in &timeline {
                tr class=(format!("t-{}", e.kind)) {
                    td { time datetime=(e.at.to_rfc3339()) { (format::time(e.at)) } }
                    td { (e.kind) }
                    td { (e.what) }
                    td.reason { (e.detail) }
                }
            }
        } }
        (actions_note())
    };
    page(&title, now, body)
}

/// The page for a session that is not watched.
pub fn not_found_html(provider: &str, session: &str, now: Timestamp) -> String {
    let body = html! {
        p { a href="/" { "← all sessions" } }
        h1 { "Not watched" }
        p { "No watched session \u{201c}" (session) "\u{201d} at provider \u{201c}" (provider) "\u{201d}." }
    };
    page("not watched — wa-watchdog", now, body)
}
