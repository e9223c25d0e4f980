//! The per-session families (`session_state`,
//! `session_last_success_timestamp_seconds`,
//! `session_consecutive_failures`) as one collector that renders them from
//! the bookkeeping in [`Tracked`] at scrape time.
//!
//! Why not three `GaugeVec`s: a vec keeps a child per label set, and each
//! child holds its own copy of the family's description (name, help text,
//! label names) and its label pairs — about 1.6 KB and 36 allocations per
//! session for the three families (measured with `session_mem_bench`), most
//! of the daemon's memory on a large fleet. Here a session costs its entry
//! in `Tracked` (name, state, streak, last success); the series exist only
//! while a scrape is encoded.
//!
//! What it owns: the three families' descriptions and their rendering.
//! What it must not do: change the bookkeeping (`sessions.rs` does), or hold
//! the bookkeeping's lock while building a scrape: it copies the values
//! under the lock, then builds outside it, so a scrape of a large fleet
//! does not stall the scheduler's updates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use super::sessions::Tracked;
use crate::machine::State;

/// What one session exports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct SessionSeries {
    pub(super) state: State,
    pub(super) consecutive_failures: u32,
    /// Unix seconds; None: never succeeded (the series is absent).
    pub(super) last_success: Option<f64>,
}

pub(super) const STATE: (&str, &str) = (
    "wa_watchdog_session_state",
    "1 for the current state of each session; other states have no series.",
);
pub(super) const LAST_SUCCESS: (&str, &str) = (
    "wa_watchdog_session_last_success_timestamp_seconds",
    "Unix time of the session's last delivered canary; absent if it never succeeded.",
);
pub(super) const FAILURES: (&str, &str) = (
    "wa_watchdog_session_consecutive_failures",
    "Counting failures (desync, send_failed, stuck) since the last delivered canary.",
);

pub(super) struct SessionFamilies {
    tracked: Arc<Mutex<Tracked>>,
    /// `daemon.session_metrics`: off exports nothing.
    enabled: bool,
    descs: Vec<Desc>,
}

impl SessionFamilies {
    pub(super) fn new(tracked: Arc<Mutex<Tracked>>, enabled: bool) -> SessionFamilies {
        let desc = |(name, help): (&str, &str), labels: &[&str]| {
            Desc::new(
                name.to_string(),
                help.to_string(),
                labels.iter().map(|l| l.to_string()).collect(),
                HashMap::new(),
            )
            .expect("valid, constant family description")
        };
        SessionFamilies {
            tracked,
            enabled,
            descs: vec![
                desc(STATE, &["provider", "session", "state"]),
                desc(LAST_SUCCESS, &["provider", "session"]),
                desc(FAILURES, &["provider", "session"]),
            ],
        }
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn gauge(labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_label(labels);
    m.set_gauge(g);
    m
}

fn family((name, help): (&str, &str), metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(MetricType::GAUGE);
    f.set_metric(metrics);
    f
}

impl Collector for SessionFamilies {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if !self.enabled {
            return Vec::new();
        }
        // A copy under the lock; the protobuf values are built after it.
        let snapshot: Vec<(String, String, SessionSeries)> = {
            let t = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
            t.sessions
                .iter()
                .flat_map(|(p, known)| known.iter().map(move |(s, v)| (p.clone(), s.clone(), *v)))
                .collect()
        };
        let mut states = Vec::with_capacity(snapshot.len());
        let mut successes = Vec::with_capacity(snapshot.len());
        let mut failures = Vec::with_capacity(snapshot.len());
        for (provider, session, v) in &snapshot {
            let base = || vec![label("provider", provider), label("session", session)];
            let mut with_state = base();
            with_state.push(label("state", v.state.as_str()));
            states.push(gauge(with_state, 1.0));
            if let Some(ts) = v.last_success {
                successes.push(gauge(base(), ts));
            }
            failures.push(gauge(base(), f64::from(v.consecutive_failures)));
        }
        vec![
            family(STATE, states),
            family(LAST_SUCCESS, successes),
            family(FAILURES, failures),
        ]
    }
}
