//! Merging: the global `[canary]` and `[policy]` tables are each provider's
//! base, a provider's own table replaces the keys it gives, and the result
//! is checked as a whole (a provider's `timeout` may not exceed the global
//! `interval` it inherits, say).

use super::raw::{RawCanary, RawPolicy};
use super::resolve::{at_least_one, chat_error, not_above, positive};
use super::{CanaryConfig, ChatTarget, ConfirmMode};
use crate::policy::PolicyConfig;

/// `base` with the keys `raw` gives replaced, then checked as a whole.
pub(super) fn merge_canary(base: &CanaryConfig, raw: RawCanary) -> Result<CanaryConfig, String> {
    let chat = match raw.chat {
        None => base.chat.clone(),
        Some(text) => ChatTarget::parse(&text).ok_or_else(|| chat_error("canary.chat", &text))?,
    };
    let c = CanaryConfig {
        interval: raw.interval.unwrap_or(base.interval),
        jitter: raw.jitter.unwrap_or(base.jitter),
        timeout: raw.timeout.unwrap_or(base.timeout),
        ack_timeout: raw.ack_timeout.unwrap_or(base.ack_timeout),
        confirm: match raw.confirm {
            None => base.confirm,
            Some(text) => ConfirmMode::parse(&text).ok_or_else(|| {
                format!("canary.confirm must be \"ack\" or \"accepted\", got {text:?}")
            })?,
        },
        text: raw.text.unwrap_or_else(|| base.text.clone()),
        chat,
    };
    positive("canary.interval", c.interval)?;
    // `contains` is false for NaN, so NaN is rejected too.
    if !(0.0..=0.5).contains(&c.jitter) {
        return Err(format!(
            "canary.jitter must be between 0 and 0.5, got {}",
            c.jitter
        ));
    }
    positive("canary.timeout", c.timeout)?;
    positive("canary.ack_timeout", c.ack_timeout)?;
    if c.text.trim().is_empty() {
        return Err("canary.text must not be empty".to_string());
    }
    Ok(c)
}

/// `base` with the keys `raw` gives replaced, then checked as a whole.
pub(super) fn merge_policy(base: &PolicyConfig, raw: RawPolicy) -> Result<PolicyConfig, String> {
    let p = PolicyConfig {
        desync_signatures: raw
            .desync_signatures
            .unwrap_or_else(|| base.desync_signatures.clone()),
        desync_confirmations: raw
            .desync_confirmations
            .unwrap_or(base.desync_confirmations),
        send_failure_confirmations: raw
            .send_failure_confirmations
            .unwrap_or(base.send_failure_confirmations),
        confirm_interval: raw.confirm_interval.unwrap_or(base.confirm_interval),
        restart_timeout: raw.restart_timeout.unwrap_or(base.restart_timeout),
        restart_poll_interval: raw
            .restart_poll_interval
            .unwrap_or(base.restart_poll_interval),
        restart_call_timeout: raw
            .restart_call_timeout
            .unwrap_or(base.restart_call_timeout),
        starting_grace: raw.starting_grace.unwrap_or(base.starting_grace),
        restart_stopped: raw.restart_stopped.unwrap_or(base.restart_stopped),
        max_restarts: raw.max_restarts.unwrap_or(base.max_restarts),
        restart_window: raw.restart_window.unwrap_or(base.restart_window),
        backoff_initial: raw.backoff_initial.unwrap_or(base.backoff_initial),
        backoff_max: raw.backoff_max.unwrap_or(base.backoff_max),
        healthy_reset: raw.healthy_reset.unwrap_or(base.healthy_reset),
        max_concurrent_restarts: raw
            .max_concurrent_restarts
            .unwrap_or(base.max_concurrent_restarts),
        restart_budget: raw.restart_budget.unwrap_or(base.restart_budget),
        restart_budget_window: raw
            .restart_budget_window
            .unwrap_or(base.restart_budget_window),
        outage_fraction: raw.outage_fraction.unwrap_or(base.outage_fraction),
        outage_min_sessions: raw.outage_min_sessions.unwrap_or(base.outage_min_sessions),
        dry_run: raw.dry_run.unwrap_or(base.dry_run),
    };
    if p.desync_signatures.iter().any(|s| s.trim().is_empty()) {
        return Err(
            "policy.desync_signatures must not contain an empty string (it would match every error)"
                .to_string(),
        );
    }
    at_least_one("policy.desync_confirmations", p.desync_confirmations)?;
    at_least_one(
        "policy.send_failure_confirmations",
        p.send_failure_confirmations,
    )?;
    positive("policy.confirm_interval", p.confirm_interval)?;
    positive("policy.restart_timeout", p.restart_timeout)?;
    positive("policy.restart_poll_interval", p.restart_poll_interval)?;
    not_above(
        ("policy.restart_poll_interval", p.restart_poll_interval),
        ("policy.restart_timeout", p.restart_timeout),
    )?;
    positive("policy.restart_call_timeout", p.restart_call_timeout)?;
    not_above(
        ("policy.restart_call_timeout", p.restart_call_timeout),
        ("policy.restart_timeout", p.restart_timeout),
    )?;
    positive("policy.starting_grace", p.starting_grace)?;
    at_least_one("policy.max_restarts", p.max_restarts)?;
    positive("policy.restart_window", p.restart_window)?;
    positive("policy.backoff_initial", p.backoff_initial)?;
    positive("policy.backoff_max", p.backoff_max)?;
    not_above(
        ("policy.backoff_initial", p.backoff_initial),
        ("policy.backoff_max", p.backoff_max),
    )?;
    positive("policy.healthy_reset", p.healthy_reset)?;
    at_least_one("policy.max_concurrent_restarts", p.max_concurrent_restarts)?;
    at_least_one("policy.restart_budget", p.restart_budget)?;
    positive("policy.restart_budget_window", p.restart_budget_window)?;
    // Written so that NaN fails: comparisons with NaN are false.
    if !(p.outage_fraction > 0.0 && p.outage_fraction <= 1.0) {
        return Err(format!(
            "policy.outage_fraction must be greater than 0 and at most 1, got {}",
            p.outage_fraction
        ));
    }
    at_least_one("policy.outage_min_sessions", p.outage_min_sessions)?;
    Ok(p)
}
