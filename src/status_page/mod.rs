//! The status page for people on call: `GET /` (the fleet at a glance) and
//! `GET /sessions/{provider}/{session}` (one session's timeline), as
//! server-rendered HTML.
//!
//! What it owns: what the page reads (the store and the metrics registry,
//! never the scheduler), how sessions are ordered and grouped (pure
//! functions, table-tested) and the HTML itself (`render`). What it must not
//! do: wait on the scheduler, show anything unescaped, load anything from
//! elsewhere (no external scripts, fonts or style sheets: the page works
//! offline and under a `default-src 'none'` content security policy), or
//! offer admin actions.
//!
//! Template crate: [maud](https://maud.lambda.xyz) 0.27 rather than askama.
//! Both are maintained and compile templates to Rust; maud was chosen
//! because every `(expression)` it splices is HTML-escaped with no opt-out
//! but an explicit `PreEscaped` (askama escapes by file extension and
//! configuration, and `|safe` is one filter away), because the templates are
//! Rust code checked by the compiler field by field with no template files
//! to keep in sync, and because it adds only two small crates (its proc-macro
//! dependencies are already in the tree).
//!
//! Refreshing: a `<meta http-equiv="refresh">` every [`REFRESH_SECONDS`]; no
//! JavaScript at all, so nothing degrades without it.
//!
//! Admin actions (pause, resume, restart) are deliberately not on the page:
//! a form would need the admin token in the browser (a cookie would open a
//! CSRF hole, a prompt would put the token in page script). The page names
//! the CLI commands and the bearer-token API instead.

mod render;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::machine::State;
use crate::metrics::Metrics;
use crate::store::{
    ProbeRecord, RemediationCount, RemediationRecord, SessionRecord, Store, StoreError,
    TransitionRecord,
};

pub use render::{fleet_html, not_found_html, session_html};

/// Seconds between the page's own reloads.
pub const REFRESH_SECONDS: u32 = 10;
/// Canaries in a session page's heartbeat strip.
pub const HEARTBEAT_LEN: u32 = 60;
/// Entries of each kind (probes, state changes, restarts) on a session page.
pub const TIMELINE_LIMIT: u32 = 50;
/// The fleet summary counts restarts over this window.
pub const RESTART_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A provider as the metrics registry sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderHealth {
    pub name: String,
    /// `wa_watchdog_provider_up`; `None` before the first probe set it.
    pub up: Option<bool>,
    /// `wa_watchdog_provider_outage`.
    pub outage: Option<bool>,
    /// `wa_watchdog_restart_budget_remaining`.
    pub budget_left: Option<i64>,
}

/// Everything the fleet page shows.
#[derive(Clone, Debug)]
pub struct Fleet {
    pub now: Timestamp,
    /// Watched sessions, most urgent first (see [`sort_sessions`]).
    pub sessions: Vec<SessionRecord>,
    pub providers: Vec<ProviderHealth>,
    /// Remediations started in the last [`RESTART_WINDOW`].
    pub restarts: Vec<RemediationCount>,
}

/// Everything one session's page shows; histories newest first.
#[derive(Clone, Debug)]
pub struct SessionHistory {
    pub now: Timestamp,
    pub session: SessionRecord,
    pub transitions: Vec<TransitionRecord>,
    /// Up to [`HEARTBEAT_LEN`] probes (the strip uses all, the timeline the
    /// newest [`TIMELINE_LIMIT`]).
    pub probes: Vec<ProbeRecord>,
    /// Delivered probes older than the ones kept in full, counted per hour
    /// or day, newest first (up to [`TIMELINE_LIMIT`] buckets).
    pub rollups: Vec<crate::store::ProbeRollup>,
    pub remediations: Vec<RemediationRecord>,
}

/// How much a session's state asks of a person, most urgent first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Urgency {
    /// Escalated, needs pairing, blocked: the watchdog will not fix it.
    NeedsPerson,
    /// Failing and not (yet) being healed: desynced, suspect, unreachable,
    /// not ready.
    Failing,
    /// A restart is under way: restarting, recovering.
    Healing,
    /// Not probed yet, or a state this build does not know.
    Unknown,
    /// Paused by an operator or a maintenance window.
    Paused,
    Healthy,
}

impl Urgency {
    /// A CSS class and a word for people.
    pub fn label(self) -> &'static str {
        match self {
            Urgency::NeedsPerson => "needs a person",
            Urgency::Failing => "failing",
            Urgency::Healing => "being healed",
            Urgency::Unknown => "unknown",
            Urgency::Paused => "paused",
            Urgency::Healthy => "healthy",
        }
    }
}

/// The urgency of a stored state name.
pub fn urgency(state: &str) -> Urgency {
    let Ok(state) = state.parse::<State>() else {
        return Urgency::Unknown;
    };
    match state {
        s if s.needs_human() => Urgency::NeedsPerson,
        State::Desynced | State::Suspect | State::Unreachable | State::NotReady => Urgency::Failing,
        State::Restarting | State::Recovering => Urgency::Healing,
        State::Paused => Urgency::Paused,
        State::Healthy => Urgency::Healthy,
        _ => Urgency::Unknown,
    }
}

/// Most urgent first, then by provider and session name.
pub fn sort_sessions(sessions: &mut [SessionRecord]) {
    sessions.sort_by(|a, b| {
        (urgency(&a.machine.state), &a.provider, &a.session).cmp(&(
            urgency(&b.machine.state),
            &b.provider,
            &b.session,
        ))
    });
}

/// Sessions per state: known states in the machine's order, then any other
/// stored name alphabetically; states without sessions are left out.
pub fn state_counts(sessions: &[SessionRecord]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in sessions {
        *counts.entry(s.machine.state.as_str()).or_default() += 1;
    }
    let mut out: Vec<(String, usize)> = State::ALL
        .iter()
        .filter_map(|st| counts.remove(st.as_str()).map(|n| (st.to_string(), n)))
        .collect();
    out.extend(counts.into_iter().map(|(s, n)| (s.to_string(), n)));
    out
}

/// One cell of the heartbeat strip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beat {
    /// The canary was delivered.
    Delivered,
    /// The send failed (desync, send_failed).
    Failed,
    /// The canary never left the queue.
    Stuck,
    /// No canary went out (not ready, unreachable, rate limited, ...).
    NoCanary,
}

impl Beat {
    pub fn as_str(self) -> &'static str {
        match self {
            Beat::Delivered => "delivered",
            Beat::Failed => "failed",
            Beat::Stuck => "stuck",
            Beat::NoCanary => "no canary",
        }
    }
}

/// The strip's cell for a probe, `None` for status polls during a restart
/// (they never send a canary).
pub fn beat(probe: &ProbeRecord) -> Option<Beat> {
    if probe.kind == "status" {
        return None;
    }
    let base = probe.outcome.split(':').next().unwrap_or_default();
    Some(match base {
        "delivered" => Beat::Delivered,
        "desync" | "send_failed" => Beat::Failed,
        "stuck" => Beat::Stuck,
        _ => Beat::NoCanary,
    })
}

/// Providers with the values the registry holds for them, by name.
pub fn provider_health(metrics: &Metrics) -> Vec<ProviderHealth> {
    let mut by_name: BTreeMap<String, ProviderHealth> = BTreeMap::new();
    for family in metrics.registry().gather() {
        let field: fn(&mut ProviderHealth, f64) = match family.name() {
            "wa_watchdog_provider_up" => |p, v| p.up = Some(v != 0.0),
            "wa_watchdog_provider_outage" => |p, v| p.outage = Some(v != 0.0),
            "wa_watchdog_restart_budget_remaining" => |p, v| p.budget_left = Some(v as i64),
            _ => continue,
        };
        for m in family.get_metric() {
            let Some(name) = m
                .get_label()
                .iter()
                .find(|l| l.name() == "provider")
                .map(|l| l.value().to_string())
            else {
                continue;
            };
            let entry = by_name
                .entry(name.clone())
                .or_insert_with(|| ProviderHealth {
                    name,
                    up: None,
                    outage: None,
                    budget_left: None,
                });
            field(entry, m.get_gauge().get_value());
        }
    }
    by_name.into_values().collect()
}

/// Reads the fleet page's data: one query for the sessions, one for the
/// restart counts, and the registry.
pub async fn read_fleet(
    store: &Store,
    metrics: &Metrics,
    now: Timestamp,
) -> Result<Fleet, StoreError> {
    let (sessions, restarts) = tokio::join!(
        store.list_sessions(false),
        store.remediation_counts_since(now.minus(RESTART_WINDOW)),
    );
    let mut sessions = sessions?;
    sort_sessions(&mut sessions);
    Ok(Fleet {
        now,
        sessions,
        providers: provider_health(metrics),
        restarts: restarts?,
    })
}

/// Reads one watched session's page, `None` if it is not watched (unknown
/// or retired).
pub async fn read_session(
    store: &Store,
    provider: &str,
    session: &str,
    now: Timestamp,
) -> Result<Option<SessionHistory>, StoreError> {
    let Some(rec) = store.session(provider, session).await? else {
        return Ok(None);
    };
    if rec.retired_at.is_some() {
        return Ok(None);
    }
    let (transitions, probes, rollups, remediations) = tokio::join!(
        store.recent_transitions(provider, session, None, TIMELINE_LIMIT),
        store.recent_probes(provider, session, None, HEARTBEAT_LEN.max(TIMELINE_LIMIT)),
        store.probe_rollups(provider, session, None, TIMELINE_LIMIT),
        store.recent_remediations(provider, session, None, TIMELINE_LIMIT),
    );
    Ok(Some(SessionHistory {
        now,
        session: rec,
        transitions: transitions?,
        probes: probes?,
        rollups: rollups?,
        remediations: remediations?,
    }))
}

/// `s` as one URL path segment (RFC 3986 unreserved characters kept, every
/// other byte percent-encoded), for links to session pages.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The session page's path.
pub fn session_path(provider: &str, session: &str) -> String {
    format!(
        "/sessions/{}/{}",
        path_segment(provider),
        path_segment(session)
    )
}
