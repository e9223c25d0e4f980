//! Direct push of alerts to Alertmanager's v2 API (`[alertmanager] url`), for
//! sites that run Alertmanager but no Prometheus rules.
//!
//! What it owns: a model of what the alert rules in
//! `contrib/prometheus/alerts.yml` would see (each session's state and since
//! when, its last delivered canary, each provider's reachability, outage and
//! recent provider-level failures), fed by the scheduler's events and seeded
//! from the store; the list of alerts firing now ([`RULES`], with the same
//! names, `severity`/`scope` labels, `provider`/`session` labels, hold times
//! (`for`) and `keep_firing_for` as the rules); and the push cycle: a new
//! alert is posted at once, a firing one is re-posted every
//! `resend_interval` with `endsAt` [`ENDS_AT_INTERVALS`] intervals ahead (so
//! Alertmanager keeps it between pushes and drops it by itself if the daemon
//! dies), and a cleared one is posted once more with `endsAt = now`.
//!
//! What it must not do: block or slow the scheduler (it only reads a
//! broadcast channel, which drops old events for a slow reader; it then
//! re-reads the store), fail the daemon (Alertmanager being unreachable is
//! logged and counted in `wa_watchdog_alertmanager_push_failures_total`, and
//! retried), or invent labels the rules do not have. Prometheus adds
//! `instance` and `job` to rule alerts; direct pushes have neither.
//!
//! Alerts the push cannot send, because they need an observer outside the
//! process or data the events do not carry: `WaWatchdogDown`,
//! `WaWatchdogAbsent`, `WaWatchdogSchedulerStalled`,
//! `WaWatchdogRestartBudgetExhausted`, `WaWatchdogConfigReloadFailed`,
//! `WaWatchdogAlertmanagerPushFailing`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::clock::{Clock, Timestamp};
use crate::config::{AlertmanagerConfig, Config};
use crate::events::Event;
use crate::machine::{Action, State};
use crate::metrics::Metrics;
use crate::provider::Outcome;
use crate::store::Store;

/// Firing alerts are sent with `endsAt = now + this × resend_interval`, so a
/// missed push or two does not resolve them in Alertmanager.
pub const ENDS_AT_INTERVALS: u32 = 4;
/// How often the firing set is re-evaluated (holds and windows are checked
/// at this resolution).
const EVAL_EVERY: Duration = Duration::from_secs(1);
/// After a failed push, wait this long (or `resend_interval` if shorter)
/// before the next attempt.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Deadline of one push request.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Resolutions kept for re-sending while Alertmanager is unreachable; older
/// ones are dropped (their `endsAt` passes anyway).
const MAX_RESOLVING: usize = 10_000;

/// Which part of the fleet an alert is about (the `scope` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Session,
    Provider,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Session => "session",
            Scope::Provider => "provider",
        }
    }
}

/// When an alert's condition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The session is in one of these states.
    SessionIn(&'static [State]),
    /// The session has had no delivered canary for 3 × its canary interval
    /// (and is not paused; sessions that never delivered are left to their
    /// state alerts, as in the rule).
    CanaryStale,
    /// The provider's session list did not answer.
    ProviderDown,
    /// The provider is in outage (restarts suspended).
    ProviderOutage,
    /// A probe of the provider ended with this outcome within the window.
    OutcomeWithin(&'static str, Duration),
    /// A restart of the provider failed (failed, timeout, not healed) within
    /// the window.
    RestartFailedWithin(Duration),
}

/// One alert of `contrib/prometheus/alerts.yml` that the daemon can judge
/// by itself.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// `alertname`.
    pub name: &'static str,
    /// The `severity` label.
    pub severity: &'static str,
    pub scope: Scope,
    /// The rule's `for`: how long the condition must hold before it fires.
    pub hold: Duration,
    /// The rule's `keep_firing_for`.
    pub keep_firing_for: Duration,
    pub condition: Condition,
    /// `summary`, in the rules' template syntax (`{{ $labels.session }}`,
    /// `{{ $labels.provider }}`).
    pub summary: &'static str,
    /// `description`, same syntax.
    pub description: &'static str,
    /// Anchor in `docs/runbook.md`.
    pub runbook: &'static str,
}

const MIN: u64 = 60;
const fn mins(n: u64) -> Duration {
    Duration::from_secs(n * MIN)
}

/// The alerts the daemon pushes, mirroring `contrib/prometheus/alerts.yml`
/// (a test compares names, labels, `for` and `keep_firing_for` with it).
pub const RULES: [Rule; 13] = [
    Rule {
        name: "WaWatchdogSessionEscalated",
        severity: "page",
        scope: Scope::Session,
        hold: Duration::ZERO,
        keep_firing_for: mins(15),
        condition: Condition::SessionIn(&[State::Escalated]),
        summary: "WhatsApp session {{ $labels.session }} on {{ $labels.provider }} needs a human",
        description: "Session {{ $labels.session }} on provider {{ $labels.provider }} used up its restarts (max_restarts within restart_window) without staying healthy. The watchdog keeps probing but will not restart it again.",
        runbook: "session-escalated",
    },
    Rule {
        name: "WaWatchdogSessionNeedsPairing",
        severity: "page",
        scope: Scope::Session,
        hold: mins(5),
        keep_firing_for: Duration::ZERO,
        condition: Condition::SessionIn(&[State::NeedsPairing]),
        summary: "WhatsApp session {{ $labels.session }} on {{ $labels.provider }} must be paired again",
        description: "Session {{ $labels.session }} on provider {{ $labels.provider }} is logged out (WAHA SCAN_QR_CODE, Green-API notAuthorized). It cannot send until someone scans a QR code with the phone; the watchdog never restarts it.",
        runbook: "session-needs-pairing",
    },
    Rule {
        name: "WaWatchdogSessionBlocked",
        severity: "page",
        scope: Scope::Session,
        hold: mins(1),
        keep_firing_for: Duration::ZERO,
        condition: Condition::SessionIn(&[State::Blocked]),
        summary: "WhatsApp number of session {{ $labels.session }} on {{ $labels.provider }} is blocked",
        description: "WhatsApp has banned or restricted (yellow card) the number behind session {{ $labels.session }} on provider {{ $labels.provider }}. Restarts cannot help.",
        runbook: "session-blocked",
    },
    Rule {
        name: "WaWatchdogSessionDesynced",
        severity: "ticket",
        scope: Scope::Session,
        hold: mins(10),
        keep_firing_for: Duration::ZERO,
        condition: Condition::SessionIn(&[State::Desynced, State::Restarting, State::Recovering]),
        summary: "WhatsApp session {{ $labels.session }} on {{ $labels.provider }} has not sent for 10 minutes",
        description: "Session {{ $labels.session }} on provider {{ $labels.provider }} has been desynced, restarting or recovering for more than 10 minutes: it reports itself healthy but cannot send, and restarts have not fixed it yet (or are held back by backoff, budget or a provider outage).",
        runbook: "session-desynced",
    },
    Rule {
        name: "WaWatchdogCanaryStale",
        severity: "ticket",
        scope: Scope::Session,
        hold: mins(1),
        keep_firing_for: Duration::ZERO,
        condition: Condition::CanaryStale,
        summary: "No canary from {{ $labels.session }} on {{ $labels.provider }} for more than 3 canary intervals",
        description: "The last delivered canary of session {{ $labels.session }} on provider {{ $labels.provider }} is older than 3 canary intervals.",
        runbook: "canary-stale",
    },
    Rule {
        name: "WaWatchdogSessionPausedLong",
        severity: "info",
        scope: Scope::Session,
        hold: mins(24 * 60),
        keep_firing_for: Duration::ZERO,
        condition: Condition::SessionIn(&[State::Paused]),
        summary: "Session {{ $labels.session }} on {{ $labels.provider }} has been paused for a day",
        description: "Session {{ $labels.session }} on provider {{ $labels.provider }} has been paused (no canaries, no restarts) for more than 24 hours. Resume it if the pause was forgotten.",
        runbook: "session-paused-long",
    },
    Rule {
        name: "WaWatchdogProviderUnreachable",
        severity: "page",
        scope: Scope::Provider,
        hold: mins(5),
        keep_firing_for: Duration::ZERO,
        condition: Condition::ProviderDown,
        summary: "WhatsApp provider {{ $labels.provider }} is unreachable",
        description: "wa-watchdog has not reached the API of provider {{ $labels.provider }} for 5 minutes (connection refused, DNS, TLS or timeouts). None of its sessions can be probed or healed.",
        runbook: "provider-unreachable",
    },
    Rule {
        name: "WaWatchdogProviderOutage",
        severity: "page",
        scope: Scope::Provider,
        hold: mins(2),
        keep_firing_for: Duration::ZERO,
        condition: Condition::ProviderOutage,
        summary: "WhatsApp provider {{ $labels.provider }} is in outage; restarts suspended",
        description: "At least half (and at least outage_min_sessions) of the sessions of provider {{ $labels.provider }} fail in the same way at once. The watchdog treats this as a provider problem and restarts none of them.",
        runbook: "provider-outage",
    },
    Rule {
        name: "WaWatchdogAuthRejected",
        severity: "page",
        scope: Scope::Provider,
        hold: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        condition: Condition::OutcomeWithin("auth_rejected", mins(15)),
        summary: "Provider {{ $labels.provider }} rejects wa-watchdog's credentials",
        description: "Provider {{ $labels.provider }} answered 401/403 to wa-watchdog within the last 15 minutes. The API key or token is wrong or was rotated; the watchdog cannot see or heal any session there.",
        runbook: "auth-rejected",
    },
    Rule {
        name: "WaWatchdogInstanceExpired",
        severity: "page",
        scope: Scope::Provider,
        hold: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        condition: Condition::OutcomeWithin("instance_expired", mins(15)),
        summary: "Green-API instance {{ $labels.provider }} expired or was deleted",
        description: "Provider {{ $labels.provider }} reports the instance as expired or deleted. Nothing is sent until the instance is renewed in the vendor's console.",
        runbook: "instance-expired",
    },
    Rule {
        name: "WaWatchdogQuotaExceeded",
        severity: "page",
        scope: Scope::Provider,
        hold: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        condition: Condition::OutcomeWithin("quota_exceeded", mins(15)),
        summary: "Green-API instance {{ $labels.provider }} used up its monthly quota",
        description: "Provider {{ $labels.provider }} answers 466: the plan's quota is used up and sends are refused until the plan changes or the month ends.",
        runbook: "quota-exceeded",
    },
    Rule {
        name: "WaWatchdogCanaryRejected",
        severity: "ticket",
        scope: Scope::Provider,
        hold: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        condition: Condition::OutcomeWithin("bad_request", mins(30)),
        summary: "Provider {{ $labels.provider }} rejects the canary as malformed",
        description: "Provider {{ $labels.provider }} rejected canaries as bad requests within the last 30 minutes: the canary's chat or text in the configuration does not suit this provider or session.",
        runbook: "canary-rejected",
    },
    Rule {
        name: "WaWatchdogRestartsFailing",
        severity: "ticket",
        scope: Scope::Provider,
        hold: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        condition: Condition::RestartFailedWithin(mins(30)),
        summary: "Session restarts fail on provider {{ $labels.provider }}",
        description: "Restarts on provider {{ $labels.provider }} failed within the last 30 minutes (the call failed, timed out, or the session was still unable to send afterwards).",
        runbook: "restarts-failing",
    },
];

/// How long conditions must hold before their alerts fire, as a multiple of
/// the rules' `for` and `keep_firing_for` (1 = exactly the rules).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Holds {
    scale: f64,
}

impl Default for Holds {
    fn default() -> Self {
        Holds { scale: 1.0 }
    }
}

impl Holds {
    /// Every alert fires as soon as its condition holds and resolves as soon
    /// as it clears (tests, the demo).
    pub fn immediate() -> Holds {
        Holds { scale: 0.0 }
    }

    /// The rules' hold times multiplied by `scale` (clamped to 0..=1000).
    pub fn scaled(scale: f64) -> Holds {
        let scale = if scale.is_finite() { scale } else { 1.0 };
        Holds {
            scale: scale.clamp(0.0, 1000.0),
        }
    }

    fn apply(self, d: Duration) -> Duration {
        d.mul_f64(self.scale)
    }
}

// ---------------------------------------------------------------- the model

/// What the rules would know about one session.
#[derive(Clone, Debug, PartialEq)]
struct SessionView {
    state: State,
    /// When it entered `state`.
    since: Timestamp,
    /// Since when it has been continuously in the states of each
    /// `SessionIn` rule (the rules aggregate `max without (state)`, so a
    /// session cycling desynced → restarting → recovering keeps its clock).
    in_group_since: HashMap<&'static str, Timestamp>,
    last_success: Option<Timestamp>,
    /// 3 × the session's canary interval.
    stale_after: Duration,
}

/// What the rules would know about one provider.
#[derive(Clone, Debug, Default, PartialEq)]
struct ProviderView {
    down_since: Option<Timestamp>,
    outage_since: Option<Timestamp>,
    /// Last probe with each provider-level outcome.
    last_outcome: HashMap<&'static str, Timestamp>,
    /// Since when the current run of such outcomes (within the window) lasts.
    outcome_run_since: HashMap<&'static str, Timestamp>,
    last_restart_failed: Option<Timestamp>,
    restart_failed_run_since: Option<Timestamp>,
}

/// The alert model: sessions and providers as the events describe them.
#[derive(Debug, Default)]
pub struct Model {
    sessions: BTreeMap<(String, String), SessionView>,
    providers: BTreeMap<String, ProviderView>,
    /// provider → canary interval of each session (and the provider's).
    intervals: HashMap<String, (Duration, HashMap<String, Duration>)>,
}

/// One alert that fires now.
#[derive(Clone, Debug)]
pub struct Firing {
    pub rule: &'static Rule,
    pub provider: String,
    pub session: Option<String>,
    /// When the condition began.
    pub since: Timestamp,
}

impl Firing {
    /// The identity of the alert in Alertmanager: its labels.
    fn key(&self) -> Key {
        (
            self.rule.name,
            self.provider.clone(),
            self.session.clone().unwrap_or_default(),
        )
    }
}

type Key = (&'static str, String, String);

/// Outcome names that feed `OutcomeWithin` rules.
fn windowed_outcome(o: &Outcome) -> Option<&'static str> {
    RULES.iter().find_map(|r| match r.condition {
        Condition::OutcomeWithin(name, _) if name == o.as_str() => Some(name),
        _ => None,
    })
}

impl Model {
    /// An empty model that knows the canary intervals of `config`.
    pub fn new(config: &Config) -> Model {
        let intervals = config
            .providers
            .iter()
            .map(|p| {
                let overrides = p
                    .session_overrides
                    .iter()
                    .filter_map(|o| o.interval.map(|i| (o.name.clone(), i)))
                    .collect();
                (p.name.clone(), (p.canary.interval, overrides))
            })
            .collect();
        Model {
            intervals,
            ..Model::default()
        }
    }

    fn stale_after(&self, provider: &str, session: &str) -> Duration {
        let interval = self
            .intervals
            .get(provider)
            .map(|(default, per)| per.get(session).copied().unwrap_or(*default))
            .unwrap_or(Duration::from_secs(300));
        interval.saturating_mul(3)
    }

    fn view(&self, state: State, since: Timestamp, provider: &str, session: &str) -> SessionView {
        let mut v = SessionView {
            state,
            since,
            in_group_since: HashMap::new(),
            last_success: None,
            stale_after: self.stale_after(provider, session),
        };
        v.enter(state, since);
        v
    }

    /// Replaces the sessions with the store's (at start, and after this
    /// reader fell behind the event stream). Group clocks of sessions that
    /// are still in the same group are kept.
    pub fn seed(&mut self, records: &[crate::store::SessionRecord]) {
        let mut next = BTreeMap::new();
        for r in records {
            let Ok(state) = r.state.parse::<State>() else {
                continue;
            };
            let key = (r.provider.clone(), r.session.clone());
            let mut v = self.view(state, r.since, &r.provider, &r.session);
            if let Some(old) = self.sessions.get(&key) {
                for (rule, at) in &old.in_group_since {
                    if v.in_group_since.contains_key(rule) {
                        v.in_group_since.insert(rule, (*at).min(r.since));
                    }
                }
            }
            v.last_success = r.last_success_at;
            self.providers.entry(r.provider.clone()).or_default();
            next.insert(key, v);
        }
        self.sessions = next;
    }

    /// Takes one scheduler event into account.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Transition {
                at,
                provider,
                session,
                to,
                ..
            } => {
                let key = (provider.clone(), session.clone());
                match self.sessions.get_mut(&key) {
                    Some(v) => v.enter(*to, *at),
                    None => {
                        let v = self.view(*to, *at, provider, session);
                        self.sessions.insert(key, v);
                    }
                }
            }
            Event::SessionAdded {
                at,
                provider,
                session,
            } => {
                let key = (provider.clone(), session.clone());
                if !self.sessions.contains_key(&key) {
                    let v = self.view(State::Unknown, *at, provider, session);
                    self.sessions.insert(key, v);
                }
                self.providers.entry(provider.clone()).or_default();
            }
            Event::SessionRetired {
                provider, session, ..
            } => {
                self.sessions.remove(&(provider.clone(), session.clone()));
            }
            Event::Probe {
                at,
                provider,
                session,
                action,
                outcome,
                ..
            } => {
                // Status polls during a restart are not canaries (the metrics
                // do not count them either).
                if *action == Action::PollStatus {
                    return;
                }
                if *outcome == Outcome::Delivered {
                    if let Some(v) = self.sessions.get_mut(&(provider.clone(), session.clone())) {
                        v.last_success = Some(*at);
                    }
                }
                if let Some(name) = windowed_outcome(outcome) {
                    let window = rule_window(name);
                    let p = self.providers.entry(provider.clone()).or_default();
                    let run_over = p
                        .last_outcome
                        .get(name)
                        .is_none_or(|last| at.since(*last) >= window);
                    if run_over {
                        p.outcome_run_since.insert(name, *at);
                    }
                    p.last_outcome.insert(name, *at);
                }
            }
            Event::Remediation {
                at,
                provider,
                stage,
                ..
            } => {
                if matches!(stage.as_str(), "failed" | "timeout" | "not_healed") {
                    let window = restart_window();
                    let p = self.providers.entry(provider.clone()).or_default();
                    if p.last_restart_failed
                        .is_none_or(|last| at.since(last) >= window)
                    {
                        p.restart_failed_run_since = Some(*at);
                    }
                    p.last_restart_failed = Some(*at);
                }
            }
            Event::ProviderHealth {
                at,
                provider,
                up,
                outage,
            } => {
                let p = self.providers.entry(provider.clone()).or_default();
                p.down_since = if *up {
                    None
                } else {
                    p.down_since.or(Some(*at))
                };
                p.outage_since = if *outage {
                    p.outage_since.or(Some(*at))
                } else {
                    None
                };
            }
        }
    }

    /// The alerts that fire at `now`.
    pub fn firing(&self, now: Timestamp, holds: Holds) -> Vec<Firing> {
        let mut out = Vec::new();
        for rule in &RULES {
            let held = |since: Timestamp| now.since(since) >= holds.apply(rule.hold);
            match rule.condition {
                Condition::SessionIn(_) => {
                    for ((provider, session), v) in &self.sessions {
                        if let Some(since) = v.in_group_since.get(rule.name) {
                            if held(*since) {
                                out.push(firing(rule, provider, Some(session), *since));
                            }
                        }
                    }
                }
                Condition::CanaryStale => {
                    for ((provider, session), v) in &self.sessions {
                        let Some(last) = v.last_success else { continue };
                        if v.state == State::Paused {
                            continue;
                        }
                        let stale_from = last.plus(v.stale_after);
                        if now > stale_from && held(stale_from) {
                            out.push(firing(rule, provider, Some(session), stale_from));
                        }
                    }
                }
                Condition::ProviderDown => {
                    for (provider, p) in &self.providers {
                        if let Some(since) = p.down_since.filter(|s| held(*s)) {
                            out.push(firing(rule, provider, None, since));
                        }
                    }
                }
                Condition::ProviderOutage => {
                    for (provider, p) in &self.providers {
                        if let Some(since) = p.outage_since.filter(|s| held(*s)) {
                            out.push(firing(rule, provider, None, since));
                        }
                    }
                }
                Condition::OutcomeWithin(name, window) => {
                    for (provider, p) in &self.providers {
                        let recent = p
                            .last_outcome
                            .get(name)
                            .is_some_and(|last| now.since(*last) < window);
                        if let (true, Some(since)) = (recent, p.outcome_run_since.get(name)) {
                            out.push(firing(rule, provider, None, *since));
                        }
                    }
                }
                Condition::RestartFailedWithin(window) => {
                    for (provider, p) in &self.providers {
                        let recent = p
                            .last_restart_failed
                            .is_some_and(|last| now.since(last) < window);
                        if let (true, Some(since)) = (recent, p.restart_failed_run_since) {
                            out.push(firing(rule, provider, None, since));
                        }
                    }
                }
            }
        }
        out
    }
}

fn firing(
    rule: &'static Rule,
    provider: &str,
    session: Option<&String>,
    since: Timestamp,
) -> Firing {
    Firing {
        rule,
        provider: provider.to_string(),
        session: session.cloned(),
        since,
    }
}

fn rule_window(outcome: &str) -> Duration {
    RULES
        .iter()
        .find_map(|r| match r.condition {
            Condition::OutcomeWithin(name, window) if name == outcome => Some(window),
            _ => None,
        })
        .unwrap_or(mins(15))
}

fn restart_window() -> Duration {
    RULES
        .iter()
        .find_map(|r| match r.condition {
            Condition::RestartFailedWithin(window) => Some(window),
            _ => None,
        })
        .unwrap_or(mins(30))
}

impl SessionView {
    /// The session entered `state` at `at`: the group clocks of rules whose
    /// states it left stop, those it entered start, the others run on.
    fn enter(&mut self, state: State, at: Timestamp) {
        if state != self.state {
            self.since = at;
        }
        self.state = state;
        for rule in &RULES {
            if let Condition::SessionIn(states) = rule.condition {
                if states.contains(&state) {
                    self.in_group_since.entry(rule.name).or_insert(at);
                } else {
                    self.in_group_since.remove(rule.name);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- the push cycle

/// One alert as Alertmanager's `POST /api/v2/alerts` takes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// Fills `{{ $labels.provider }}` and `{{ $labels.session }}`.
fn render(template: &str, provider: &str, session: Option<&str>) -> String {
    template
        .replace("{{ $labels.provider }}", provider)
        .replace("{{ $labels.session }}", session.unwrap_or(""))
}

/// A firing alert being kept alive in Alertmanager.
#[derive(Clone, Debug)]
struct Active {
    firing: Firing,
    last_sent: Option<Timestamp>,
    /// When its condition stopped holding (it stays for `keep_firing_for`).
    cleared_at: Option<Timestamp>,
}

/// The push bookkeeping, without I/O: which alerts are active, which need
/// (re)sending, which resolutions are owed.
#[derive(Debug)]
pub struct Outbox {
    resend: Duration,
    holds: Holds,
    /// Base of `generatorURL`: `http://<daemon listen address>`.
    generator_base: String,
    active: BTreeMap<Key, Active>,
    /// Cleared alerts whose resolution Alertmanager has not acknowledged yet.
    resolving: BTreeMap<Key, (Firing, Timestamp)>,
    /// No push before this (after a failure).
    retry_at: Option<Timestamp>,
}

/// A batch to post, and what to mark when it went through.
#[derive(Debug, Default)]
pub struct Batch {
    pub alerts: Vec<PostableAlert>,
    firing: Vec<Key>,
    resolved: Vec<Key>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }
}

impl Outbox {
    pub fn new(resend: Duration, holds: Holds, generator_base: String) -> Outbox {
        Outbox {
            resend: resend.max(Duration::from_secs(1)),
            holds,
            generator_base,
            active: BTreeMap::new(),
            resolving: BTreeMap::new(),
            retry_at: None,
        }
    }

    /// Names of the alerts currently kept firing, with their labels
    /// `(alertname, provider, session)`.
    pub fn active(&self) -> Vec<(String, String, String)> {
        self.active
            .keys()
            .map(|(n, p, s)| (n.to_string(), p.clone(), s.clone()))
            .collect()
    }

    /// Takes the alerts firing at `now` and returns what to post: new ones,
    /// firing ones due for a re-send, and resolutions.
    pub fn plan(&mut self, now: Timestamp, firing: Vec<Firing>) -> Batch {
        let mut seen = std::collections::BTreeSet::new();
        for f in firing {
            let key = f.key();
            seen.insert(key.clone());
            self.resolving.remove(&key);
            match self.active.get_mut(&key) {
                Some(a) => {
                    a.cleared_at = None;
                    a.firing.since = a.firing.since.min(f.since);
                }
                None => {
                    self.active.insert(
                        key,
                        Active {
                            firing: f,
                            last_sent: None,
                            cleared_at: None,
                        },
                    );
                }
            }
        }
        let mut ended = Vec::new();
        for (key, a) in self.active.iter_mut() {
            if seen.contains(key) {
                continue;
            }
            let cleared = *a.cleared_at.get_or_insert(now);
            if now.since(cleared) >= self.holds.apply(a.firing.rule.keep_firing_for) {
                ended.push(key.clone());
            }
        }
        for key in ended {
            if let Some(a) = self.active.remove(&key) {
                self.resolving.insert(key, (a.firing, now));
            }
        }
        while self.resolving.len() > MAX_RESOLVING {
            let oldest = self
                .resolving
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.resolving.remove(&k);
                }
                None => break,
            }
        }

        let mut batch = Batch::default();
        if self.retry_at.is_some_and(|t| now < t) {
            return batch;
        }
        let ends_firing = now.plus(self.resend.saturating_mul(ENDS_AT_INTERVALS));
        for (key, a) in &self.active {
            let due = a.last_sent.is_none_or(|t| now.since(t) >= self.resend);
            if due {
                batch.alerts.push(self.postable(&a.firing, ends_firing));
                batch.firing.push(key.clone());
            }
        }
        for (key, (f, at)) in &self.resolving {
            batch.alerts.push(self.postable(f, *at));
            batch.resolved.push(key.clone());
        }
        batch
    }

    /// Records how the post of `batch` went.
    pub fn sent(&mut self, now: Timestamp, batch: Batch, ok: bool) {
        if !ok {
            self.retry_at = Some(now.plus(RETRY_AFTER.min(self.resend)));
            return;
        }
        self.retry_at = None;
        for key in batch.firing {
            if let Some(a) = self.active.get_mut(&key) {
                a.last_sent = Some(now);
            }
        }
        for key in batch.resolved {
            self.resolving.remove(&key);
        }
    }

    fn postable(&self, f: &Firing, ends_at: Timestamp) -> PostableAlert {
        let rule = f.rule;
        let session = f.session.as_deref();
        let mut labels = BTreeMap::from([
            ("alertname".to_string(), rule.name.to_string()),
            ("severity".to_string(), rule.severity.to_string()),
            ("scope".to_string(), rule.scope.as_str().to_string()),
            ("provider".to_string(), f.provider.clone()),
        ]);
        if let Some(s) = session {
            labels.insert("session".to_string(), s.to_string());
        }
        let annotations = BTreeMap::from([
            (
                "summary".to_string(),
                render(rule.summary, &f.provider, session),
            ),
            (
                "description".to_string(),
                render(rule.description, &f.provider, session),
            ),
            (
                "runbook".to_string(),
                format!("docs/runbook.md#{}", rule.runbook),
            ),
        ]);
        let generator_url = match session {
            Some(s) => format!(
                "{}/api/v1/sessions/{}/{}",
                self.generator_base,
                path_segment(&f.provider),
                path_segment(s)
            ),
            None => format!("{}/api/v1/sessions", self.generator_base),
        };
        PostableAlert {
            labels,
            annotations,
            starts_at: f.since.to_rfc3339(),
            ends_at: ends_at.max(f.since).to_rfc3339(),
            generator_url,
        }
    }
}

/// Percent-encodes what may not stand in a URL path segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------- the task

/// What the pusher shares with the rest of the daemon.
pub struct Parts {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// The daemon's clock: hold times, `startsAt` and `endsAt`.
    pub clock: Clock,
    pub holds: Holds,
    /// Base of `generatorURL` (`http://<listen address>`).
    pub generator_base: String,
}

/// The push task: builds the model from events and the store and posts the
/// alerts it implies.
pub struct Pusher {
    endpoint: String,
    client: reqwest::Client,
    model: Model,
    outbox: Outbox,
    store: Store,
    metrics: Arc<Metrics>,
    clock: Clock,
    holds: Holds,
}

impl Pusher {
    /// A pusher for `am`, knowing the canary intervals of `config`.
    pub fn new(am: &AlertmanagerConfig, config: &Config, parts: Parts) -> anyhow::Result<Pusher> {
        let client = crate::provider::http::build_client(Duration::from_secs(5))
            .map_err(|e| anyhow::anyhow!("alertmanager: {e}"))?;
        Ok(Pusher {
            endpoint: format!("{}/api/v2/alerts", am.url),
            client,
            model: Model::new(config),
            outbox: Outbox::new(am.resend_interval, parts.holds, parts.generator_base),
            store: parts.store,
            metrics: parts.metrics,
            clock: parts.clock,
            holds: parts.holds,
        })
    }

    /// Re-reads every session from the store. A failure keeps the model as
    /// it is (the events keep it roughly right) and is logged.
    async fn seed(&mut self) {
        match self.store.load_sessions().await {
            Ok(records) => self.model.seed(&records),
            Err(e) => {
                tracing::warn!(error = %e, "alertmanager: cannot read sessions from the store")
            }
        }
    }

    /// Runs until `stop` resolves. Alerts still firing then are not resolved:
    /// their `endsAt` lets Alertmanager expire them, and the
    /// `WaWatchdogDown` rule covers a daemon that stays down.
    pub async fn run(
        mut self,
        mut events: broadcast::Receiver<Event>,
        stop: impl Future<Output = ()>,
    ) {
        tracing::info!(endpoint = %self.endpoint, "alertmanager: pushing alerts directly");
        self.seed().await;
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(EVAL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events_open = true;
        loop {
            tokio::select! {
                biased;
                () = &mut stop => break,
                event = events.recv(), if events_open => match event {
                    Ok(e) => self.model.apply(&e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "alertmanager: fell behind the scheduler's events; re-reading the store");
                        self.seed().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => events_open = false,
                },
                _ = tick.tick() => self.cycle().await,
            }
        }
    }

    /// One evaluation and, if anything is due, one post.
    pub async fn cycle(&mut self) {
        let now = self.clock.now();
        let firing = self.model.firing(now, self.holds);
        let batch = self.outbox.plan(now, firing);
        if batch.is_empty() {
            return;
        }
        let ok = self.post(&batch.alerts).await;
        if !ok {
            self.metrics.alertmanager_push_failed();
        }
        self.outbox.sent(now, batch, ok);
    }

    async fn post(&self, alerts: &[PostableAlert]) -> bool {
        let request = self
            .client
            .post(&self.endpoint)
            .timeout(PUSH_TIMEOUT)
            .json(alerts);
        match crate::provider::http::send(request).await {
            Ok(reply) if (200..300).contains(&reply.status) => {
                tracing::debug!(alerts = alerts.len(), "alertmanager: pushed");
                true
            }
            Ok(reply) => {
                let body: String = reply.body.chars().take(200).collect();
                tracing::warn!(status = reply.status, body = %body, alerts = alerts.len(), "alertmanager: push rejected");
                false
            }
            Err(e) => {
                tracing::warn!(error = ?e, alerts = alerts.len(), "alertmanager: push failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
