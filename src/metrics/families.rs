//! The metrics contract as a list: every family the daemon exposes, with
//! its type and labels (README "Metrics"), the one list the checks of
//! [`super::exposition`] compare an exposition against.

/// Every family the daemon exposes, as its users may rely on it: (family,
/// TYPE, label names of its samples without `le`). The contract first, then
/// the extensions. Checked
/// ([`exposition::contract_violations`](super::exposition::contract_violations))
/// against [`Metrics::encode`](super::Metrics::encode) by the unit tests and
/// against a real scrape by `tests/it/http_api.rs`.
pub const FAMILIES: &[(&str, &str, &[&str])] = &[
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
        "wa_watchdog_canary_confirmation_seconds",
        "histogram",
        &["provider"],
    ),
    (
        "wa_watchdog_probe_lateness_seconds",
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
    ("wa_watchdog_shards_owned", "gauge", &[]),
    ("wa_watchdog_lease_renew_failures_total", "counter", &[]),
    // Not ours, but the daemon promises it on Linux.
    ("process_cpu_seconds_total", "counter", &[]),
];
