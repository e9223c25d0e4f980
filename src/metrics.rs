//! Prometheus metrics: one [`Metrics`] value owns its own
//! [`prometheus::Registry`] (never the process-global one, so tests and the
//! demo can run several daemons in one process) and typed handles for exactly
//! the families of DESIGN.md "Contracts → Metrics", plus a few extensions the
//! daemon needs (config reloads, Alertmanager pushes, restart budget,
//! scheduler liveness).
//!
//! What it owns: the names, types, labels, help texts and histogram buckets of
//! every family, and the per-session bookkeeping that keeps cardinality
//! bounded. What it must not do: serve HTTP (`http` does), read clocks, or put
//! anything but closed-set names and configured identifiers into labels —
//! never message text, never credentials.
//!
//! Cardinality invariant: every session has at most three series —
//! `session_state` for its *current* state only (the previous state's series is
//! removed on a change, not set to 0), `session_last_success_timestamp_seconds`
//! and `session_consecutive_failures` — and [`Metrics::retire_session`] removes
//! all three. Everything else is per provider, over closed label sets
//! (outcomes, states, restart results) that are initialised to zero when a
//! provider is first seen, so `increase()` and `rate()` see the first event of
//! each kind and dashboards show 0 rather than nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::clock::Timestamp;
use crate::machine::{RemediationResult, State};
use crate::provider::Outcome;

/// The `Content-Type` of [`Metrics::encode`]'s output, for the `/metrics` route.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Histogram bounds for canary latencies in seconds: a healthy WAHA send
/// answers in well under a second, a struggling one holds the request for up
/// to ~10 s, and the default canary timeout is 20 s.
pub const CANARY_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0];

/// Histogram bounds for recovery durations (first failure → healthy again) in
/// seconds: the fastest path is ~3 confirmations at 15 s plus a WAHA restart
/// (about a minute); a Green-API reboot takes up to ~5 min; backoff can stretch
/// a recovery towards the restart window (1 h).
pub const RECOVERY_BUCKETS: [f64; 10] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
];

/// Longest webhook event name kept as a label value; longer ones are counted as
/// [`OTHER_EVENT`].
const MAX_EVENT_LEN: usize = 64;
/// Distinct webhook event names kept per provider; further ones are counted as
/// [`OTHER_EVENT`], so a misbehaving sender cannot grow the label set.
const MAX_EVENTS_PER_PROVIDER: usize = 32;
/// The label value for webhook events beyond the limits above.
pub const OTHER_EVENT: &str = "other";

/// How a restart attempt ended, as the `result` label of
/// `wa_watchdog_restarts_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestartResult {
    /// The restart brought the session back (verification canary delivered).
    Ok,
    /// The restart call failed, timed out, or the session was not healed.
    Failed,
    /// A restart was due but not performed (dry run, interrupted by a pause).
    Skipped,
}

impl RestartResult {
    /// Every result, in label order.
    pub const ALL: [RestartResult; 3] = [
        RestartResult::Ok,
        RestartResult::Failed,
        RestartResult::Skipped,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartResult::Ok => "ok",
            RestartResult::Failed => "failed",
            RestartResult::Skipped => "skipped",
        }
    }
}

impl From<RemediationResult> for RestartResult {
    /// The machine's finer results folded into the three the contract exports.
    fn from(r: RemediationResult) -> Self {
        match r {
            RemediationResult::Healed => RestartResult::Ok,
            RemediationResult::Failed
            | RemediationResult::Timeout
            | RemediationResult::NotHealed => RestartResult::Failed,
            RemediationResult::Interrupted => RestartResult::Skipped,
        }
    }
}

/// Encoding the registry failed (only on an inconsistent family, which the
/// fixed definitions here rule out; kept as an error rather than a panic
/// because it happens on the scrape path).
#[derive(Debug, thiserror::Error)]
#[error("encoding metrics: {0}")]
pub struct EncodeError(#[from] prometheus::Error);

/// Label bookkeeping that the registry cannot answer (it has no "list the
/// children of a vec"), kept so that state changes and retirements remove
/// exactly the series that exist.
#[derive(Default)]
struct Tracked {
    /// provider → session → current state.
    sessions: HashMap<String, HashMap<String, State>>,
    /// provider → webhook event label values in use.
    events: HashMap<String, HashSet<String>>,
}

/// The daemon's metrics. Cheap to share behind an `Arc`; every method takes
/// `&self`.
pub struct Metrics {
    registry: Registry,
    canary_total: IntCounterVec,
    canary_duration: HistogramVec,
    session_state: IntGaugeVec,
    session_last_success: GaugeVec,
    session_failures: IntGaugeVec,
    restarts_total: IntCounterVec,
    desyncs_total: IntCounterVec,
    recovery_duration: HistogramVec,
    provider_up: IntGaugeVec,
    provider_outage: IntGaugeVec,
    sessions: IntGaugeVec,
    webhook_events: IntCounterVec,
    restart_budget_remaining: IntGaugeVec,
    config_reload_failures: IntCounter,
    alertmanager_push_failures: IntCounter,
    scheduler_last_tick: Gauge,
    /// Held across each multi-series update, so that concurrent callers never
    /// leave a session with two state series or a `sessions` count off by one.
    tracked: Mutex<Tracked>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Registers a collector on a registry created moments ago.
///
/// The `expect`s in this module are all of one kind: the names, label names and
/// buckets are compile-time constants that the unit tests exercise, and every
/// family is registered once on a fresh registry, so creation and registration
/// cannot fail at run time. A failure would be a programming error caught by
/// the first test run.
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric families are unique on a fresh registry");
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter definition");
    register(registry, c)
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge definition");
    register(registry, g)
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let h = HistogramVec::new(opts, labels).expect("valid histogram definition");
    register(registry, h)
}

impl Metrics {
    /// Creates a registry with every family registered, `build_info` set to 1
    /// for this crate's version, and (on Linux) the `process_*` collector.
    pub fn new() -> Metrics {
        let r = Registry::new();
        let m = Metrics {
            canary_total: counter_vec(
                &r,
                "wa_watchdog_canary_total",
                "Canary probes by outcome.",
                &["provider", "outcome"],
            ),
            canary_duration: histogram_vec(
                &r,
                "wa_watchdog_canary_duration_seconds",
                "Duration of one probe (status read plus canary send), in seconds.",
                &CANARY_BUCKETS,
                &["provider"],
            ),
            session_state: gauge_vec(
                &r,
                "wa_watchdog_session_state",
                "1 for the current state of each session; other states have no series.",
                &["provider", "session", "state"],
            ),
            session_last_success: register(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "wa_watchdog_session_last_success_timestamp_seconds",
                        "Unix time of the session's last delivered canary; absent if it never succeeded.",
                    ),
                    &["provider", "session"],
                )
                .expect("valid gauge definition"),
            ),
            session_failures: gauge_vec(
                &r,
                "wa_watchdog_session_consecutive_failures",
                "Counting failures (desync, send_failed, stuck) since the last delivered canary.",
                &["provider", "session"],
            ),
            restarts_total: counter_vec(
                &r,
                "wa_watchdog_restarts_total",
                "Session restarts by result (ok, failed, skipped).",
                &["provider", "result"],
            ),
            desyncs_total: counter_vec(
                &r,
                "wa_watchdog_desyncs_total",
                "Desyncs (or send-failure streaks) confirmed.",
                &["provider"],
            ),
            recovery_duration: histogram_vec(
                &r,
                "wa_watchdog_recovery_duration_seconds",
                "Time from a session's first failure to healthy again after a restart, in seconds.",
                &RECOVERY_BUCKETS,
                &["provider"],
            ),
            provider_up: gauge_vec(
                &r,
                "wa_watchdog_provider_up",
                "1 if the provider's API answered the last request, 0 if it was unreachable.",
                &["provider"],
            ),
            provider_outage: gauge_vec(
                &r,
                "wa_watchdog_provider_outage",
                "1 while the provider is in outage (restarts suspended), else 0.",
                &["provider"],
            ),
            sessions: gauge_vec(
                &r,
                "wa_watchdog_sessions",
                "Number of tracked sessions in each state.",
                &["provider", "state"],
            ),
            webhook_events: counter_vec(
                &r,
                "wa_watchdog_webhook_events_total",
                "Webhook events received, by event type.",
                &["provider", "event"],
            ),
            restart_budget_remaining: gauge_vec(
                &r,
                "wa_watchdog_restart_budget_remaining",
                "Restarts the provider's token budget still allows in the current window.",
                &["provider"],
            ),
            config_reload_failures: register(
                &r,
                IntCounter::new(
                    "wa_watchdog_config_reload_failures_total",
                    "Configuration reloads (SIGHUP) rejected; the previous configuration stays in effect.",
                )
                .expect("valid counter definition"),
            ),
            alertmanager_push_failures: register(
                &r,
                IntCounter::new(
                    "wa_watchdog_alertmanager_push_failures_total",
                    "Direct pushes to Alertmanager that failed.",
                )
                .expect("valid counter definition"),
            ),
            scheduler_last_tick: register(
                &r,
                Gauge::new(
                    "wa_watchdog_scheduler_last_tick_timestamp_seconds",
                    "Unix time of the scheduler loop's last tick; 0 before the first.",
                )
                .expect("valid gauge definition"),
            ),
            tracked: Mutex::new(Tracked::default()),
            registry: r,
        };
        let build_info = gauge_vec(
            &m.registry,
            "wa_watchdog_build_info",
            "Always 1; the version label names the running build.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // process_* (CPU, memory, file descriptors, start time) from /proc.
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector registers once on a fresh registry");
        m
    }

    /// The registry, for callers that want to gather or register more.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A poisoned lock only means another thread panicked mid-update; the
    /// bookkeeping is still the best information there is, so keep going
    /// rather than take the scrape path down with it.
    fn lock(&self) -> MutexGuard<'_, Tracked> {
        self.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the provider's zero-valued series for every closed label set,
    /// once. Called with the lock held.
    fn ensure_provider(&self, t: &mut Tracked, provider: &str) {
        if t.sessions.contains_key(provider) {
            return;
        }
        t.sessions.insert(provider.to_owned(), HashMap::new());
        for outcome in Outcome::NAMES {
            self.canary_total.with_label_values(&[provider, outcome]);
        }
        for result in RestartResult::ALL {
            self.restarts_total
                .with_label_values(&[provider, result.as_str()]);
        }
        self.desyncs_total.with_label_values(&[provider]);
        for state in State::ALL {
            self.sessions.with_label_values(&[provider, state.as_str()]);
        }
        // Up until told otherwise: a provider that was never contacted is not
        // an outage, and "0" here would page before the first probe.
        self.provider_up.with_label_values(&[provider]).set(1);
        self.provider_outage.with_label_values(&[provider]).set(0);
    }

    /// Announces a configured provider, so its series exist (at zero) before
    /// its first probe. Optional: every other method does it on first use.
    pub fn add_provider(&self, provider: &str) {
        let mut t = self.lock();
        self.ensure_provider(&mut t, provider);
    }

    /// Records one probe: its outcome and how long it took.
    pub fn observe_probe(&self, provider: &str, outcome: &Outcome, duration: Duration) {
        self.add_provider(provider);
        self.canary_total
            .with_label_values(&[provider, outcome.as_str()])
            .inc();
        self.canary_duration
            .with_label_values(&[provider])
            .observe(duration.as_secs_f64());
    }

    /// Sets a session's current state, failure streak and last success.
    ///
    /// On a state change the old state's `session_state` series is removed (so
    /// the session has exactly one) and the per-provider `sessions` counts move
    /// with it. `last_success = None` (never succeeded) leaves that series
    /// absent rather than exporting 0, which alert rules would read as
    /// "stale since 1970".
    pub fn set_session(
        &self,
        provider: &str,
        session: &str,
        state: State,
        consecutive_failures: u32,
        last_success: Option<Timestamp>,
    ) {
        let mut t = self.lock();
        self.ensure_provider(&mut t, provider);
        let known = t.sessions.entry(provider.to_owned()).or_default();
        let previous = known.insert(session.to_owned(), state);
        // The new series first, then the old one goes: a scrape racing this
        // update may see both for an instant, never neither, so alert rules
        // that aggregate over `state` (`max without (state)`) never see the
        // session vanish and restart their `for` clocks.
        self.session_state
            .with_label_values(&[provider, session, state.as_str()])
            .set(1);
        if previous != Some(state) {
            self.sessions
                .with_label_values(&[provider, state.as_str()])
                .inc();
            if let Some(old) = previous {
                // The series exists because we created it; ignore the impossible miss.
                let _ = self
                    .session_state
                    .remove_label_values(&[provider, session, old.as_str()]);
                self.sessions
                    .with_label_values(&[provider, old.as_str()])
                    .dec();
            }
        }
        self.session_failures
            .with_label_values(&[provider, session])
            .set(i64::from(consecutive_failures));
        match last_success {
            Some(ts) => self
                .session_last_success
                .with_label_values(&[provider, session])
                .set(ts.as_secs_f64()),
            None => {
                // Absent is the only honest value for "never"; nothing to remove otherwise.
                let _ = self
                    .session_last_success
                    .remove_label_values(&[provider, session]);
            }
        }
    }

    /// Forgets a session that is no longer tracked (gone from discovery or the
    /// config): removes its three series and its contribution to `sessions`.
    /// A no-op for an unknown session.
    pub fn retire_session(&self, provider: &str, session: &str) {
        let mut t = self.lock();
        self.retire_locked(&mut t, provider, session);
    }

    fn retire_locked(&self, t: &mut Tracked, provider: &str, session: &str) {
        let Some(state) = t
            .sessions
            .get_mut(provider)
            .and_then(|known| known.remove(session))
        else {
            return;
        };
        // Each removal may miss only for a series that was never set (e.g. no
        // last success yet), which is the outcome we want anyway.
        let _ = self
            .session_state
            .remove_label_values(&[provider, session, state.as_str()]);
        let _ = self
            .session_last_success
            .remove_label_values(&[provider, session]);
        let _ = self
            .session_failures
            .remove_label_values(&[provider, session]);
        self.sessions
            .with_label_values(&[provider, state.as_str()])
            .dec();
    }

    /// Forgets a provider removed from the configuration: its sessions and
    /// every per-provider series. A no-op for an unknown provider.
    pub fn retire_provider(&self, provider: &str) {
        let mut t = self.lock();
        let sessions: Vec<String> = match t.sessions.get(provider) {
            Some(known) => known.keys().cloned().collect(),
            None => return,
        };
        for session in sessions {
            self.retire_locked(&mut t, provider, &session);
        }
        t.sessions.remove(provider);
        // Label sets that were never created make these removals miss; fine.
        for outcome in Outcome::NAMES {
            let _ = self.canary_total.remove_label_values(&[provider, outcome]);
        }
        for result in RestartResult::ALL {
            let _ = self
                .restarts_total
                .remove_label_values(&[provider, result.as_str()]);
        }
        for state in State::ALL {
            let _ = self
                .sessions
                .remove_label_values(&[provider, state.as_str()]);
        }
        for event in t.events.remove(provider).unwrap_or_default() {
            let _ = self
                .webhook_events
                .remove_label_values(&[provider, event.as_str()]);
        }
        let _ = self
            .webhook_events
            .remove_label_values(&[provider, OTHER_EVENT]);
        let _ = self.canary_duration.remove_label_values(&[provider]);
        let _ = self.recovery_duration.remove_label_values(&[provider]);
        let _ = self.desyncs_total.remove_label_values(&[provider]);
        let _ = self.provider_up.remove_label_values(&[provider]);
        let _ = self.provider_outage.remove_label_values(&[provider]);
        let _ = self
            .restart_budget_remaining
            .remove_label_values(&[provider]);
    }

    /// Counts a finished (or skipped) restart.
    pub fn restart_result(&self, provider: &str, result: RestartResult) {
        self.add_provider(provider);
        self.restarts_total
            .with_label_values(&[provider, result.as_str()])
            .inc();
    }

    /// Counts a newly confirmed desync (the machine's `desync_confirmed`).
    pub fn desync_detected(&self, provider: &str) {
        self.add_provider(provider);
        self.desyncs_total.with_label_values(&[provider]).inc();
    }

    /// Records a recovery: time from first failure to healthy after a restart.
    pub fn recovered(&self, provider: &str, after: Duration) {
        self.add_provider(provider);
        self.recovery_duration
            .with_label_values(&[provider])
            .observe(after.as_secs_f64());
    }

    /// Sets whether the provider's API is reachable (`up`: it answered at
    /// all, whatever the answer) and whether the outage rule holds for it.
    /// `WaWatchdogProviderUnreachable` fires on five minutes of `up = false`,
    /// `WaWatchdogProviderOutage` on two of `outage = true`; both inhibit the
    /// provider's per-session alerts in Alertmanager.
    pub fn set_provider(&self, provider: &str, up: bool, outage: bool) {
        let mut t = self.lock();
        self.ensure_provider(&mut t, provider);
        self.provider_up
            .with_label_values(&[provider])
            .set(i64::from(up));
        self.provider_outage
            .with_label_values(&[provider])
            .set(i64::from(outage));
    }

    /// Sets how many restarts the provider's budget still allows.
    pub fn set_restart_budget(&self, provider: &str, remaining: u32) {
        self.add_provider(provider);
        self.restart_budget_remaining
            .with_label_values(&[provider])
            .set(i64::from(remaining));
    }

    /// Counts a received webhook event. `event` should be the provider's event
    /// type name (`message.ack`, `outgoingMessageStatus`, ...); names that are
    /// too long, contain unexpected characters, or exceed the per-provider
    /// limit are counted as `other`, because the sender controls this value.
    pub fn webhook_event(&self, provider: &str, event: &str) {
        let label = {
            let mut t = self.lock();
            self.ensure_provider(&mut t, provider);
            let seen = t.events.entry(provider.to_owned()).or_default();
            if !is_plain_event_name(event) {
                OTHER_EVENT
            } else if seen.contains(event) {
                event
            } else if seen.len() < MAX_EVENTS_PER_PROVIDER {
                seen.insert(event.to_owned());
                event
            } else {
                OTHER_EVENT
            }
        };
        self.webhook_events
            .with_label_values(&[provider, label])
            .inc();
    }

    /// Counts a configuration reload that was rejected.
    pub fn reload_failed(&self) {
        self.config_reload_failures.inc();
    }

    /// Counts a failed direct push to Alertmanager.
    pub fn alertmanager_push_failed(&self) {
        self.alertmanager_push_failures.inc();
    }

    /// Records a tick of the scheduler loop at `now`. Call it on every
    /// iteration, also when nothing was due: the `WaWatchdogSchedulerStalled`
    /// rule reads five minutes without a tick as a dead loop.
    pub fn scheduler_ticked(&self, now: Timestamp) {
        self.scheduler_last_tick.set(now.as_secs_f64());
    }

    /// The registry in the Prometheus text exposition format
    /// ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, EncodeError> {
        let families = self.registry.gather();
        Ok(TextEncoder::new().encode_to_string(&families)?)
    }
}

/// Event names kept as label values: short and in the character set the
/// providers use (`message.ack`, `session.status`, `outgoingMessageStatus`).
fn is_plain_event_name(event: &str) -> bool {
    !event.is_empty()
        && event.len() <= MAX_EVENT_LEN
        && event
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sample line of the exposition: name, labels in order, value.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: String,
    }

    /// A parser for the subset the text encoder writes for our families
    /// (label values in tests never contain quotes or commas).
    fn samples(text: &str) -> Vec<Sample> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("sample has a value");
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => {
                        let inner = rest.strip_suffix('}').expect("closing brace");
                        let labels = inner
                            .split(',')
                            .filter(|p| !p.is_empty())
                            .map(|p| {
                                let (k, v) = p.split_once('=').expect("label pair");
                                (k.to_owned(), v.trim_matches('"').to_owned())
                            })
                            .collect();
                        (name, labels)
                    }
                    None => (series, Vec::new()),
                };
                Sample {
                    name: name.to_owned(),
                    labels,
                    value: value.to_owned(),
                }
            })
            .collect()
    }

    fn label<'a>(s: &'a Sample, key: &str) -> Option<&'a str> {
        s.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn encode(m: &Metrics) -> String {
        m.encode().expect("encode")
    }

    /// Samples of `name` for one session.
    fn session_samples<'a>(all: &'a [Sample], name: &str, session: &str) -> Vec<&'a Sample> {
        all.iter()
            .filter(|s| s.name == name && label(s, "session") == Some(session))
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

    /// (family, TYPE, label names of its samples without `le`).
    const CONTRACT: [(&str, &str, &[&str]); 18] = [
        (
            "wa_watchdog_canary_total",
            "counter",
            &["provider", "outcome"],
        ),
        (
            "wa_watchdog_canary_duration_seconds",
            "histogram",
            &["provider"],
        ),
        (
            "wa_watchdog_session_state",
            "gauge",
            &["provider", "session", "state"],
        ),
        (
            "wa_watchdog_session_last_success_timestamp_seconds",
            "gauge",
            &["provider", "session"],
        ),
        (
            "wa_watchdog_session_consecutive_failures",
            "gauge",
            &["provider", "session"],
        ),
        (
            "wa_watchdog_restarts_total",
            "counter",
            &["provider", "result"],
        ),
        ("wa_watchdog_desyncs_total", "counter", &["provider"]),
        (
            "wa_watchdog_recovery_duration_seconds",
            "histogram",
            &["provider"],
        ),
        ("wa_watchdog_provider_up", "gauge", &["provider"]),
        ("wa_watchdog_provider_outage", "gauge", &["provider"]),
        ("wa_watchdog_sessions", "gauge", &["provider", "state"]),
        (
            "wa_watchdog_webhook_events_total",
            "counter",
            &["provider", "event"],
        ),
        ("wa_watchdog_build_info", "gauge", &["version"]),
        // Extensions.
        ("wa_watchdog_config_reload_failures_total", "counter", &[]),
        (
            "wa_watchdog_alertmanager_push_failures_total",
            "counter",
            &[],
        ),
        (
            "wa_watchdog_restart_budget_remaining",
            "gauge",
            &["provider"],
        ),
        (
            "wa_watchdog_scheduler_last_tick_timestamp_seconds",
            "gauge",
            &[],
        ),
        // Not ours, but the daemon promises it on Linux.
        ("process_cpu_seconds_total", "counter", &[]),
    ];

    #[test]
    fn exposition_has_every_contract_family_with_its_type_and_labels() {
        let text = encode(&populated());
        let all = samples(&text);
        for (family, kind, labels) in CONTRACT {
            if family.starts_with("process_") && !cfg!(target_os = "linux") {
                continue;
            }
            assert!(
                text.contains(&format!("\n# TYPE {family} {kind}\n")),
                "no `# TYPE {family} {kind}` in:\n{text}"
            );
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{family} has no help"
            );
            let sample_name = if kind == "histogram" {
                format!("{family}_bucket")
            } else {
                family.to_owned()
            };
            let of_family: Vec<_> = all.iter().filter(|s| s.name == sample_name).collect();
            assert!(!of_family.is_empty(), "no samples of {sample_name}");
            for s in of_family {
                let names: Vec<&str> = s
                    .labels
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .filter(|k| *k != "le")
                    .collect();
                let mut want = labels.to_vec();
                want.sort_unstable();
                let mut got = names.clone();
                got.sort_unstable();
                assert_eq!(got, want, "labels of {s:?}");
            }
        }
        // Every family we export is in the contract table (nothing stray).
        for line in text
            .lines()
            .filter(|l| l.starts_with("# TYPE wa_watchdog_"))
        {
            let name = line.split(' ').nth(2).expect("family name");
            assert!(
                CONTRACT.iter().any(|(f, _, _)| *f == name),
                "{name} is not in the contract table"
            );
        }
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
            assert_eq!(label(series[0], "state"), Some(state.as_str()));
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
                .filter(|s| s.name == name && label(s, "provider") == Some("p"))
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
                .filter_map(|s| label(s, "le").map(str::to_owned))
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
            if let Some(session) = label(&s, "session") {
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
            .find(|s| label(s, "event") == Some(OTHER_EVENT))
            .expect("other");
        assert_eq!(
            other.value,
            (3 + 100 - (MAX_EVENTS_PER_PROVIDER - 1)).to_string()
        );
        let ack = events
            .iter()
            .find(|s| label(s, "event") == Some("message.ack"))
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
}
