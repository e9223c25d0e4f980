//! The per-session families (`session_state`,
//! `session_last_success_timestamp_seconds`,
//! `session_consecutive_failures`), written as exposition text straight from
//! the bookkeeping in [`Tracked`] at scrape time.
//!
//! Why not three `GaugeVec`s: a vec keeps a child per label set, and each
//! child holds its own copy of the family's description (name, help text,
//! label names) and its label pairs — about 1.6 KB and 36 allocations per
//! session for the three families (measured with `session_mem_bench`), most
//! of the daemon's memory on a large fleet. Here a session costs its entry
//! in `Tracked` (name, state, streak, last success).
//!
//! Why not a `Collector` either: a collector hands the registry protobuf
//! values, one `Metric` with three owned `LabelPair`s per series, which the
//! registry then sorts and the text encoder walks again. At 100,000 sessions
//! that was 300,000 series, ~1 million small allocations and most of a 1.3 s
//! scrape, and its high-water mark stayed in the process's RSS. Written
//! directly, a series costs its bytes in the output.
//!
//! What it owns: the three families' names, help texts and text rendering.
//! What it must not do: change the bookkeeping (`sessions.rs` does), or hold
//! the bookkeeping's lock while writing a scrape: it copies the values
//! under the lock (names are shared `Arc<str>`, so the copy allocates one
//! vector), then writes outside it, so a scrape of a large fleet does not
//! stall the scheduler's updates.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

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

/// Appends the three families to `out` in the text exposition format, series
/// ordered by provider and session (as the registry orders its own), or
/// nothing for a fleet without sessions.
pub(super) fn render(tracked: &Mutex<Tracked>, out: &mut String) {
    // A copy under the lock; the text is written after it.
    let mut snapshot: Vec<(Arc<str>, Arc<str>, SessionSeries)> = {
        let t = tracked.lock().unwrap_or_else(|e| e.into_inner());
        let total = t.sessions.values().map(|known| known.len()).sum();
        let mut all = Vec::with_capacity(total);
        for (provider, known) in &t.sessions {
            for (session, series) in known {
                all.push((provider.clone(), session.clone(), *series));
            }
        }
        all
    };
    if snapshot.is_empty() {
        return;
    }
    snapshot.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    // ~90 bytes per series; reserving once avoids regrowing a 26 MB string.
    out.reserve(snapshot.len() * 3 * 96);

    header(out, STATE);
    for (provider, session, series) in &snapshot {
        series_start(out, STATE.0, provider, session);
        out.push_str(",state=\"");
        out.push_str(series.state.as_str());
        out.push_str("\"} 1\n");
    }
    // A family without samples is left out, as the registry leaves out its
    // own (no session has succeeded yet).
    if snapshot.iter().any(|(_, _, s)| s.last_success.is_some()) {
        header(out, LAST_SUCCESS);
    }
    for (provider, session, series) in &snapshot {
        if let Some(at) = series.last_success {
            series_start(out, LAST_SUCCESS.0, provider, session);
            // `{}` of an f64, as the registry's own text encoder writes it.
            let _ = writeln!(out, "}} {at}");
        }
    }
    header(out, FAILURES);
    for (provider, session, series) in &snapshot {
        series_start(out, FAILURES.0, provider, session);
        let _ = writeln!(out, "}} {}", series.consecutive_failures);
    }
}

fn header(out: &mut String, (name, help): (&str, &str)) {
    // Help texts are constants without `\` or newlines: nothing to escape.
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
}

/// `name{provider="…",session="…"` (without the closing brace).
fn series_start(out: &mut String, name: &str, provider: &str, session: &str) {
    out.push_str(name);
    out.push_str("{provider=\"");
    escaped(out, provider);
    out.push_str("\",session=\"");
    escaped(out, session);
    out.push('"');
}

/// A label value as the text format wants it: `\`, `"` and newline escaped.
/// Session names come from the providers, so they are not trusted to be
/// plain.
fn escaped(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_as_the_text_format_wants() {
        let mut out = String::new();
        escaped(&mut out, "plain-name_1");
        assert_eq!(out, "plain-name_1");
        out.clear();
        escaped(&mut out, "a\\b\"c\nd");
        assert_eq!(out, "a\\\\b\\\"c\\nd");
    }
}
