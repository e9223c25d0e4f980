//! Prometheus metrics: one [`Metrics`] value owns its own
//! [`prometheus::Registry`] (never the process-global one, so tests and the
//! demo can run several daemons in one process) and typed handles for exactly
//! the families of the metrics contract (README "Metrics"), plus a few extensions the
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
//!
//! Code map: this file (the families, their registration and the counters),
//! `families` (the contract list [`FAMILIES`]), `sessions` (the
//! per-session bookkeeping: setting and retiring sessions and providers),
//! `session_series` (the three per-session families, written as text from
//! that bookkeeping at scrape time, after the registry's families: no
//! per-series objects, kept or built),
//! `tests`.

pub mod exposition;
mod families;
mod session_series;
mod sessions;

pub use families::FAMILIES;

use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::clock::Timestamp;
use crate::machine::RemediationResult;
use crate::provider::Outcome;

use self::sessions::Tracked;

/// The `Content-Type` of [`Metrics::encode`]'s output, for the `/metrics` route.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Histogram bounds for canary latencies in seconds: a healthy WAHA send
/// answers in well under a second, a struggling one holds the request for up
/// to ~10 s, and the default canary timeout is 20 s.
pub const CANARY_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0];

/// Histogram bounds for send → confirmation in seconds: WAHA acks SERVER
/// within seconds when healthy, its maintainers wait ~60 s before calling a
/// message lost (WAHA issues #789/#792); Green-API's journal lags up to 2
/// minutes.
pub const CONFIRMATION_BUCKETS: [f64; 10] =
    [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0];

/// Histogram bounds for recovery durations (first failure → healthy again) in
/// seconds: the fastest path is ~3 confirmations at 15 s plus a WAHA restart
/// (about a minute); a Green-API reboot takes up to ~5 min; backoff can stretch
/// a recovery towards the restart window (1 h).
pub const RECOVERY_BUCKETS: [f64; 10] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
];

/// Histogram bounds for probe lateness in seconds (a periodic probe started
/// after its due time): a loop that keeps up starts probes within a few
/// milliseconds; the fleet target is p99 ≤ 1 s; minutes mean the daemon (or
/// `max_concurrent_probes`) cannot keep up with the fleet.
pub const LATENESS_BUCKETS: [f64; 12] = [
    0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
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

/// The daemon's metrics. Cheap to share behind an `Arc`; every method takes
/// `&self`.
pub struct Metrics {
    registry: Registry,
    canary_total: IntCounterVec,
    canary_duration: HistogramVec,
    confirmation_duration: HistogramVec,
    restarts_total: IntCounterVec,
    desyncs_total: IntCounterVec,
    recovery_duration: HistogramVec,
    probe_lateness: HistogramVec,
    provider_up: IntGaugeVec,
    provider_outage: IntGaugeVec,
    sessions: IntGaugeVec,
    webhook_events: IntCounterVec,
    webhook_rejected: IntCounterVec,
    webhook_ignored: IntCounterVec,
    webhook_queue_dropped: IntCounterVec,
    webhook_markers: IntCounterVec,
    ring_canaries: IntCounterVec,
    ring_round_trip: HistogramVec,
    ring_inbound_failures: IntCounterVec,
    restart_budget_remaining: IntGaugeVec,
    config_reload_failures: IntCounter,
    discovery_suspect: IntCounterVec,
    shards_owned: IntGauge,
    lease_renew_failures: IntCounter,
    store_write_failures: IntCounterVec,
    store_failures_reported: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    alertmanager_push_failures: IntCounter,
    scheduler_last_tick: Gauge,
    /// Held across each multi-series update, so that concurrent callers never
    /// leave a session with two state series or a `sessions` count off by one.
    /// Also the per-session families' values (`session_series.rs` renders
    /// them at scrape time; exported or not by `daemon.session_metrics`).
    tracked: Mutex<Tracked>,
    /// `daemon.session_metrics`: whether [`Metrics::encode`] writes the
    /// per-session families (they are not in the registry: see
    /// `session_series.rs`).
    session_series: bool,
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
        Metrics::with_session_series(true)
    }

    /// [`Metrics::new`], with the per-session families
    /// (`session_state`, `session_last_success_timestamp_seconds`,
    /// `session_consecutive_failures`) exported or not
    /// (`daemon.session_metrics`): a fleet of 100,000 sessions has 300,000
    /// such series, most of a scrape; the per-provider families stay.
    pub fn with_session_series(session_series: bool) -> Metrics {
        let r = Registry::new();
        let tracked = Mutex::new(Tracked::default());
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
            confirmation_duration: histogram_vec(
                &r,
                "wa_watchdog_canary_confirmation_seconds",
                "Time from sending a canary to WhatsApp's confirmation of it (WAHA ack, \
                 Green-API message status), in seconds.",
                &CONFIRMATION_BUCKETS,
                &["provider"],
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
            probe_lateness: histogram_vec(
                &r,
                "wa_watchdog_probe_lateness_seconds",
                "How long after its due time a periodic probe started, in seconds.",
                &LATENESS_BUCKETS,
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
            webhook_rejected: counter_vec(
                &r,
                "wa_watchdog_webhook_rejected_total",
                "Webhook requests not acted upon, by reason (auth, format, replay, queue).",
                &["provider", "reason"],
            ),
            webhook_ignored: counter_vec(
                &r,
                "wa_watchdog_webhook_ignored_total",
                "Authenticated webhook events that had nothing to do, by reason.",
                &["provider", "reason"],
            ),
            webhook_queue_dropped: counter_vec(
                &r,
                "wa_watchdog_webhook_queue_dropped_total",
                "Webhook events refused with 503 because the queue into the scheduler was full.",
                &["provider"],
            ),
            webhook_markers: counter_vec(
                &r,
                "wa_watchdog_webhook_markers_total",
                "Green-API error markers ({{SWE001}}, {{SWE002}}, {{SWE003}}) seen in incoming messages.",
                &["provider", "marker"],
            ),
            ring_canaries: counter_vec(
                &r,
                "wa_watchdog_ring_canaries_total",
                "Ring canaries by fate (received, inbound_missing, sender_failed, inconclusive).",
                &["ring", "fate"],
            ),
            ring_round_trip: histogram_vec(
                &r,
                "wa_watchdog_ring_round_trip_seconds",
                "Time from sending a ring canary to the receiver seeing it, by the receiver's \
                 provider, in seconds.",
                &CONFIRMATION_BUCKETS,
                &["ring", "provider"],
            ),
            ring_inbound_failures: counter_vec(
                &r,
                "wa_watchdog_ring_inbound_failures_total",
                "Ring canaries the sender confirmed but this session (the receiver) never saw \
                 within the ring's deadline.",
                &["provider", "session"],
            ),
            restart_budget_remaining: gauge_vec(
                &r,
                "wa_watchdog_restart_budget_remaining",
                "Restarts the provider's token budget still allows in the current window.",
                &["provider"],
            ),
            discovery_suspect: counter_vec(
                &r,
                "wa_watchdog_discovery_suspect_total",
                "Session lists not applied because they dropped most sessions at once.",
                &["provider"],
            ),
            shards_owned: register(
                &r,
                IntGauge::new(
                    "wa_watchdog_shards_owned",
                    "Shards (of 64) whose lease this replica holds on a shared PostgreSQL store; \
                     0 on SQLite, where one daemon owns every session.",
                )
                .expect("valid gauge definition"),
            ),
            lease_renew_failures: register(
                &r,
                IntCounter::new(
                    "wa_watchdog_lease_renew_failures_total",
                    "Lease rounds that failed (database unreachable) or lost a held shard.",
                )
                .expect("valid counter definition"),
            ),
            store_write_failures: counter_vec(
                &r,
                "wa_watchdog_store_write_failures_total",
                "Database writes that failed or did not finish in time, by store operation \
                 (begin_remediation: a restart intent; the restart waits for it).",
                &["op"],
            ),
            store_failures_reported: Mutex::default(),
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
            tracked,
            session_series,
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

    /// Records how long one canary took from send to confirmation.
    pub fn observe_confirmation(&self, provider: &str, latency: Duration) {
        self.add_provider(provider);
        self.confirmation_duration
            .with_label_values(&[provider])
            .observe(latency.as_secs_f64());
    }

    /// Records how late a periodic probe started (start − due).
    pub fn observe_lateness(&self, provider: &str, late: Duration) {
        self.probe_lateness
            .with_label_values(&[provider])
            .observe(late.as_secs_f64());
    }

    /// Counts a ring canary's fate.
    pub fn ring_canary(&self, ring: &str, fate: &str) {
        self.ring_canaries.with_label_values(&[ring, fate]).inc();
    }

    /// Records how long a ring canary took from send to the receiver.
    pub fn ring_round_trip(&self, ring: &str, provider: &str, latency: Duration) {
        self.ring_round_trip
            .with_label_values(&[ring, provider])
            .observe(latency.as_secs_f64());
    }

    /// Counts a ring canary the receiver `session` never saw.
    pub fn ring_inbound_failure(&self, provider: &str, session: &str) {
        self.ring_inbound_failures
            .with_label_values(&[provider, session])
            .inc();
    }

    /// Starts the ring series at zero: every fate of `ring`, and the inbound
    /// failures of each member (so `increase()` sees the first one).
    pub fn add_ring(&self, ring: &str, members: &[(String, String)]) {
        for fate in [
            "received",
            "inbound_missing",
            "sender_failed",
            "inconclusive",
        ] {
            self.ring_canaries.with_label_values(&[ring, fate]);
        }
        for (provider, session) in members {
            self.ring_inbound_failures
                .with_label_values(&[provider.as_str(), session.as_str()]);
        }
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

    /// Counts a session list that was not applied (suspect).
    pub fn discovery_suspect(&self, provider: &str) {
        self.discovery_suspect.with_label_values(&[provider]).inc();
    }

    /// Sets `wa_watchdog_shards_owned`.
    pub fn set_shards_owned(&self, n: usize) {
        self.shards_owned.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts a failed lease round (`wa_watchdog_lease_renew_failures_total`).
    pub fn lease_renew_failed(&self) {
        self.lease_renew_failures.inc();
    }

    /// Brings `wa_watchdog_store_write_failures_total` up to the store's
    /// own counts (by store operation: fixed names, never free text).
    pub fn sync_store_failures(&self, counts: &std::collections::BTreeMap<&'static str, u64>) {
        let mut reported = self
            .store_failures_reported
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (op, n) in counts {
            let seen = reported.entry(op).or_default();
            if *n > *seen {
                self.store_write_failures
                    .with_label_values(&[op])
                    .inc_by(*n - *seen);
                *seen = *n;
            }
        }
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
        let mut text = TextEncoder::new().encode_to_string(&families)?;
        if self.session_series {
            session_series::render(&self.tracked, &mut text);
        }
        Ok(text)
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
mod tests;
mod webhooks;
