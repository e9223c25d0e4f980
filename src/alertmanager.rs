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
//! process or data the events do not carry, are [`NOT_PUSHED`]; every rule
//! of `contrib/prometheus/alerts.yml` is in exactly one of the two lists (a
//! test reads the file).
//!
//! Code map: this file (the rules and their hold times), `model` (the alert
//! model: what fires when), `outbox` (the push bookkeeping, pure), `pusher`
//! (the task that reads events and posts), `tests`.

mod model;
mod outbox;
mod pusher;

use std::time::Duration;

use crate::machine::State;

pub use model::{Firing, Model};
pub use outbox::{Batch, Outbox, PostableAlert};
pub use pusher::{Parts, Pusher};

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
    /// At least `at_least` incoming messages of the provider carried this
    /// webhook marker (`SWE003`) within the window.
    MarkerWithin {
        marker: &'static str,
        at_least: usize,
        window: Duration,
    },
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
pub const RULES: [Rule; 17] = [
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
        name: "WaWatchdogStaleKeys",
        severity: "page",
        scope: Scope::Provider,
        hold: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        condition: Condition::MarkerWithin {
            marker: "SWE003",
            at_least: 1,
            window: mins(60),
        },
        summary: "Green-API instance {{ $labels.provider }} has stale keys (SWE003): pair it again",
        description: "Provider {{ $labels.provider }} pushed incoming messages marked SWE003 in the last hour: WhatsApp could not decrypt them because the instance's authorization keys are stale. On the phone remove all linked devices, then scan the QR code again; a reboot does not help.",
        runbook: "stale-keys",
    },
    Rule {
        name: "WaWatchdogFirstMessagesLost",
        severity: "info",
        scope: Scope::Provider,
        hold: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        condition: Condition::MarkerWithin {
            marker: "SWE001",
            at_least: 3,
            window: mins(60),
        },
        summary: "Green-API instance {{ $labels.provider }} keeps losing first messages (SWE001)",
        description: "Provider {{ $labels.provider }} received at least three incoming messages marked SWE001 in the last hour: WhatsApp did not deliver the first message of those chats to the linked device, so they arrived empty.",
        runbook: "first-messages-lost",
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
        name: "WaWatchdogCanaryChatInvalid",
        severity: "ticket",
        scope: Scope::Provider,
        hold: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        condition: Condition::OutcomeWithin("bad_canary_chat", mins(30)),
        summary: "The canary chat on provider {{ $labels.provider }} cannot receive messages",
        description: "Provider {{ $labels.provider }} reported canaries in the last 30 minutes as undeliverable to their chat (Green-API noAccount or notInGroup): the configured canary chat is wrong. Nothing is rebooted for it.",
        runbook: "canary-chat-invalid",
    },
    Rule {
        name: "WaWatchdogCanaryUnconfirmed",
        severity: "ticket",
        scope: Scope::Provider,
        hold: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        condition: Condition::OutcomeWithin("unconfirmed", mins(30)),
        summary: "Canaries on provider {{ $labels.provider }} cannot be confirmed",
        description: "Provider {{ $labels.provider }} accepted canaries in the last 30 minutes that it cannot prove delivered (the engine cannot look messages up). They are not counted as delivered, so a session that accepts sends but never delivers them goes unnoticed there.",
        runbook: "canary-unconfirmed",
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

/// The alerts of `contrib/prometheus/alerts.yml` the daemon does not push,
/// and why.
pub const NOT_PUSHED: [(&str, &str); 7] = [
    ("WaWatchdogDown", "needs an observer outside the process"),
    ("WaWatchdogAbsent", "needs an observer outside the process"),
    (
        "WaWatchdogSchedulerStalled",
        "a stalled scheduler cannot report itself",
    ),
    (
        "WaWatchdogRestartBudgetExhausted",
        "the budget is a gauge, not an event",
    ),
    (
        "WaWatchdogConfigReloadFailed",
        "reloads are not scheduler events",
    ),
    (
        "WaWatchdogAlertmanagerPushFailing",
        "a failing push cannot report itself",
    ),
    (
        "WaWatchdogRingMemberNotReceiving",
        "ring fates are counted, not kept as session state",
    ),
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

#[cfg(test)]
mod tests;
