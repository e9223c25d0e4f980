//! Restart policy: thresholds, per-session backoff, per-provider restart
//! budgets, concurrency and the outage rule. Pure: no I/O, no clock reads;
//! time is an argument.

use std::time::Duration;

/// The resolved `[policy]` table (global defaults merged with a provider's
/// `[provider.policy]` override). Field names are the config keys.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// Case-insensitive substrings of a failed send's error that mark a desync.
    pub desync_signatures: Vec<String>,
    /// Failures in a streak that holds a desync before the session is desynced.
    pub desync_confirmations: u32,
    /// Failures in a streak without a desync before the session is desynced.
    pub send_failure_confirmations: u32,
    /// Re-probe delay while suspect (instead of the full canary interval).
    pub confirm_interval: Duration,
    /// How long a restarted session may take to report healthy again.
    pub restart_timeout: Duration,
    /// How often the status is polled while restarting.
    pub restart_poll_interval: Duration,
    /// How long a session may stay STARTING before it is restarted.
    pub starting_grace: Duration,
    /// Whether a STOPPED session is restarted (someone may have stopped it on purpose).
    pub restart_stopped: bool,
    /// Restarts within `restart_window` after which the session is escalated.
    pub max_restarts: u32,
    pub restart_window: Duration,
    /// First backoff between restarts of one session; doubles per attempt.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Healthy this long: backoff and restart history are forgotten.
    pub healthy_reset: Duration,
    /// Restarts of one provider in flight at once.
    pub max_concurrent_restarts: u32,
    /// Restarts of one provider per `restart_budget_window`.
    pub restart_budget: u32,
    pub restart_budget_window: Duration,
    /// Share of a provider's sessions failing with provider-level outcomes that
    /// declares an outage.
    pub outage_fraction: f64,
    /// ...and at least this many sessions.
    pub outage_min_sessions: u32,
    /// Record what would be done, never restart.
    pub dry_run: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            desync_signatures: vec!["server returned error 400".to_string()],
            desync_confirmations: 3,
            send_failure_confirmations: 5,
            confirm_interval: Duration::from_secs(15),
            restart_timeout: Duration::from_secs(120),
            restart_poll_interval: Duration::from_secs(2),
            starting_grace: Duration::from_secs(180),
            restart_stopped: false,
            max_restarts: 3,
            restart_window: Duration::from_secs(3600),
            backoff_initial: Duration::from_secs(30),
            backoff_max: Duration::from_secs(15 * 60),
            healthy_reset: Duration::from_secs(30 * 60),
            max_concurrent_restarts: 1,
            restart_budget: 10,
            restart_budget_window: Duration::from_secs(600),
            outage_fraction: 0.5,
            outage_min_sessions: 3,
            dry_run: false,
        }
    }
}
