//! The Grafana dashboard `contrib/grafana/wa-watchdog.json`: loading it and
//! extracting every panel's PromQL with Grafana's variables replaced the way
//! Grafana would for "All" providers and sessions, for the tests that check
//! it structurally (`tests/it/grafana_dashboard.rs`) and against a real
//! Prometheus (`tests/it/monitoring_e2e.rs`).

use std::path::Path;

use serde_json::Value;

/// Grafana's built-in variables the dashboard may use, with the values the
/// tests give them (short: Prometheus in the tests scrapes every second).
pub const BUILTINS: [(&str, &str); 4] = [
    ("$__rate_interval", "15s"),
    ("$__interval", "5s"),
    ("$__range", "1m"),
    ("${__range}", "1m"),
];

/// Panels whose queries must return data while a daemon runs (a session
/// desynced and healed, restarts done). The others (webhook events) may be
/// empty on a daemon that received none.
pub const CORE_PANELS: [&str; 12] = [
    "Sessions watched",
    "Healthy",
    "Fleet state over time",
    "Canary outcomes",
    "Canary latency (confirmation)",
    "Desyncs detected",
    "Recovery duration (first failure to healthy)",
    "Restarts by result",
    "Restart budget left",
    "Provider up / outage",
    "Session states",
    "Since last delivered canary",
];

pub fn load() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/grafana/wa-watchdog.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("a panels array") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// `(panel title, refId, expr)` of every query target.
pub fn expressions(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            out.push((
                p["title"].as_str().unwrap_or_default().to_string(),
                t["refId"].as_str().unwrap_or_default().to_string(),
                expr.to_string(),
            ));
        }
    }
    out
}

/// `expr` with the dashboard's variables set to "All" (their `allValue`,
/// `.*`) and the built-ins to [`BUILTINS`].
pub fn substitute(dashboard: &Value, expr: &str) -> String {
    let mut out = expr.to_string();
    for (name, value) in BUILTINS {
        out = out.replace(name, value);
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = v["name"].as_str().unwrap_or_default();
        let all = v["allValue"].as_str().unwrap_or(".*");
        out = out
            .replace(&format!("${{{name}}}"), all)
            .replace(&format!("${name}"), all);
    }
    out
}

/// The names of every `$variable` / `${variable}` in `text` (built-ins
/// starting with `__` included).
pub fn variables_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let (start, braced) = if bytes.get(i + 1) == Some(&b'{') {
                (i + 2, true)
            } else {
                (i + 1, false)
            };
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            if end > start {
                out.push(text[start..end].to_string());
            }
            i = if braced { end + 1 } else { end };
        } else {
            i += 1;
        }
    }
    out
}
