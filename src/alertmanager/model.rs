//! The alert model: what the rules in `contrib/prometheus/alerts.yml` would
//! see, rebuilt from the scheduler's events and seeded from the store (each
//! session's state and since when, its last delivered canary, each
//! provider's reachability, outage and recent provider-level failures), and
//! the alerts of [`RULES`] that fire at a given instant.
//!
//! What it owns: [`Model`] and [`Firing`]. What it must not do: I/O, read a
//! clock (the instant is an argument), or know how alerts are posted (the
//! outbox does).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use super::{Condition, Holds, RULES, Rule, mins};
use crate::clock::Timestamp;
use crate::config::Config;
use crate::events::Event;
use crate::machine::{Action, State};
use crate::provider::Outcome;

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
    /// The latest pushed markers of each `MarkerWithin` rule (at most its
    /// `at_least`, newest last), and since when its condition holds.
    markers: HashMap<&'static str, VecDeque<Timestamp>>,
    marker_run_since: HashMap<&'static str, Timestamp>,
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
    pub(super) fn key(&self) -> Key {
        (
            self.rule.name,
            self.provider.clone(),
            self.session.clone().unwrap_or_default(),
        )
    }
}

pub(super) type Key = (&'static str, String, String);

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
            let Ok(state) = r.machine.state.parse::<State>() else {
                continue;
            };
            let key = (r.provider.clone(), r.session.clone());
            let mut v = self.view(state, r.machine.since, &r.provider, &r.session);
            if let Some(old) = self.sessions.get(&key) {
                for (rule, at) in &old.in_group_since {
                    if v.in_group_since.contains_key(rule) {
                        v.in_group_since.insert(rule, (*at).min(r.machine.since));
                    }
                }
            }
            v.last_success = r.machine.last_success_at;
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
            Event::WebhookMarker {
                at,
                provider,
                marker,
                ..
            } => {
                for rule in &RULES {
                    let Condition::MarkerWithin {
                        marker: m,
                        at_least,
                        window,
                    } = rule.condition
                    else {
                        continue;
                    };
                    if m != *marker {
                        continue;
                    }
                    let p = self.providers.entry(provider.clone()).or_default();
                    let held_before = markers_hold(p.markers.get(m), at_least, window, *at);
                    let seen = p.markers.entry(m).or_default();
                    seen.push_back(*at);
                    while seen.len() > at_least.max(1) {
                        seen.pop_front();
                    }
                    if !held_before {
                        p.marker_run_since.insert(m, *at);
                    }
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
                Condition::MarkerWithin {
                    marker,
                    at_least,
                    window,
                } => {
                    for (provider, p) in &self.providers {
                        let holds = markers_hold(p.markers.get(marker), at_least, window, now);
                        if let (true, Some(since)) = (holds, p.marker_run_since.get(marker)) {
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

/// Whether at least `at_least` of the markers `seen` (newest last) are
/// within `window` before `now` (the rule's `increase(...[window]) >= n`).
fn markers_hold(
    seen: Option<&VecDeque<Timestamp>>,
    at_least: usize,
    window: Duration,
    now: Timestamp,
) -> bool {
    let Some(seen) = seen else { return false };
    let at_least = at_least.max(1);
    seen.len() >= at_least
        && seen
            .iter()
            .rev()
            .nth(at_least - 1)
            .is_some_and(|t| now.since(*t) < window)
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
