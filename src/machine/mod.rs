//! The per-session state machine. Pure: it takes
//! the session's state, one input and the current time, changes the state and
//! returns what the I/O shell must do next ([`Effects`]). It never performs
//! I/O, reads a clock, draws random numbers or logs.
//!
//! Invariant kept here: a session holds one of its provider's restart slots
//! exactly while it is `restarting` or `recovering`; every path into those
//! states takes a slot from the [`ProviderGuard`](crate::policy::ProviderGuard) and every path out of them
//! gives it back.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::outcome::Outcome;
pub use crate::outcome::{CallFailed, StatusRead};
use crate::policy::PolicyConfig;

mod inbound;
mod persisted;
mod restart;
mod step;

pub use persisted::Persisted;

/// The session states, with their contract names (metrics, API, database).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Unknown,
    Healthy,
    Suspect,
    Desynced,
    Restarting,
    Recovering,
    NotReady,
    NeedsPairing,
    Blocked,
    Unreachable,
    Escalated,
    Paused,
}

impl State {
    pub const ALL: [State; 12] = [
        State::Unknown,
        State::Healthy,
        State::Suspect,
        State::Desynced,
        State::Restarting,
        State::Recovering,
        State::NotReady,
        State::NeedsPairing,
        State::Blocked,
        State::Unreachable,
        State::Escalated,
        State::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Healthy => "healthy",
            State::Suspect => "suspect",
            State::Desynced => "desynced",
            State::Restarting => "restarting",
            State::Recovering => "recovering",
            State::NotReady => "not_ready",
            State::NeedsPairing => "needs_pairing",
            State::Blocked => "blocked",
            State::Unreachable => "unreachable",
            State::Escalated => "escalated",
            State::Paused => "paused",
        }
    }

    /// States in which the session holds one of its provider's restart slots.
    pub fn holds_restart_slot(self) -> bool {
        matches!(self, State::Restarting | State::Recovering)
    }

    /// States that need a person (alerting uses this).
    pub fn needs_human(self) -> bool {
        matches!(
            self,
            State::Escalated | State::NeedsPairing | State::Blocked
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown state `{s}`"))
    }
}

/// What the shell should do for this session next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read the status; send a canary only if it is healthy.
    Probe,
    /// Like a probe, after a restart: its success heals the session.
    Verify,
    /// Call the provider's restart (WAHA restart, Green-API reboot).
    Restart,
    /// Read the status only, while restarting.
    PollStatus,
    /// A pause expires.
    Resume,
    /// Check whether a queued canary left the provider's queue (Green-API).
    /// Scheduled by the shell between a probe and its outcome, never by
    /// the machine: the machine sees only the final outcome.
    ConfirmAck,
    /// A ring canary's fate at its receiver (`crate::ring`): only a kind
    /// of record and event, never a scheduled step.
    Ring,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Probe => "probe",
            Action::Verify => "verify",
            Action::Restart => "restart",
            Action::PollStatus => "status",
            Action::Resume => "resume",
            Action::ConfirmAck => "ack",
            Action::Ring => "ring",
        }
    }
}

/// The next scheduled step of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub at: Timestamp,
    pub action: Action,
}

/// One input to the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The result of a probe or a verification canary.
    Probe(Outcome),
    /// The result of the restart call itself.
    RestartCalled(Result<(), CallFailed>),
    /// A status read while restarting.
    Status(StatusRead),
    /// Operator pause or maintenance window; `until` None = until resumed.
    Pause {
        until: Option<Timestamp>,
        reason: String,
    },
    Resume,
    /// Operator asks for a restart now (bypasses backoff and budget, not the
    /// concurrency limit).
    OperatorRestart,
    /// The provider pushed that the session must be paired again (a webhook:
    /// WAHA `SCAN_QR_CODE`/`PASSKEY_*`, Green-API `notAuthorized` or
    /// `{{SWE003}}`); `reason` names the event and the remedy. Like every
    /// needs-pairing outcome it never leads to a restart; a paused session
    /// stays paused.
    NeedsPairing {
        reason: String,
    },
    /// A ring canary reached this session (the receiver) within the ring's
    /// deadline ([`crate::ring`]): its inbound path works. It ends a streak
    /// that holds an `inbound_missing` (and heals a restart made for one);
    /// it says nothing about the send path, so otherwise it changes nothing.
    Received,
}

impl Input {
    /// Whether this input retires a session that discovery found: the
    /// provider no longer has it. A configured session is never retired by a
    /// probe; the machine hears `session_missing` instead.
    pub fn retires(&self, discovered: bool) -> bool {
        discovered && matches!(self, Input::Probe(Outcome::SessionMissing))
    }
}

/// A recorded state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub reason: String,
}

/// Final result of a restart attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemediationResult {
    /// The verification canary was delivered.
    Healed,
    /// The restart call itself failed.
    Failed,
    /// The session did not report healthy within `restart_timeout`.
    Timeout,
    /// Healthy status, but the verification canary failed too.
    NotHealed,
    /// Stopped by a pause before it finished.
    Interrupted,
}

impl RemediationResult {
    pub const ALL: [RemediationResult; 5] = [
        RemediationResult::Healed,
        RemediationResult::Failed,
        RemediationResult::Timeout,
        RemediationResult::NotHealed,
        RemediationResult::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RemediationResult::Healed => "healed",
            RemediationResult::Failed => "failed",
            RemediationResult::Timeout => "timeout",
            RemediationResult::NotHealed => "not_healed",
            RemediationResult::Interrupted => "interrupted",
        }
    }
}

/// Where a restart attempt stands: the stored `result` of its remediation
/// row (`pending`, `called`, `dry_run`, or the final result).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemediationStatus {
    /// The intent is written; the restart call has not answered yet.
    Pending,
    /// The provider accepted the restart call.
    Called,
    /// `dry_run`: a restart would have been attempted.
    DryRun,
    /// The attempt ended.
    Ended(RemediationResult),
}

impl RemediationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RemediationStatus::Pending => "pending",
            RemediationStatus::Called => "called",
            RemediationStatus::DryRun => "dry_run",
            RemediationStatus::Ended(r) => r.as_str(),
        }
    }

    /// An attempt still in progress (its row is open).
    pub fn is_open(self) -> bool {
        matches!(self, RemediationStatus::Pending | RemediationStatus::Called)
    }

    /// A real attempt (it took a budget token), not a dry run.
    pub fn is_attempt(self) -> bool {
        self != RemediationStatus::DryRun
    }
}

impl fmt::Display for RemediationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RemediationStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(RemediationStatus::Pending),
            "called" => Ok(RemediationStatus::Called),
            "dry_run" => Ok(RemediationStatus::DryRun),
            other => RemediationResult::ALL
                .into_iter()
                .find(|r| r.as_str() == other)
                .map(RemediationStatus::Ended)
                .ok_or_else(|| format!("unknown remediation result `{other}`")),
        }
    }
}

/// Remediation bookkeeping the shell must persist, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remediation {
    /// A restart will be attempted: write the intent before calling.
    Begin { reason: String },
    /// `dry_run`: a restart would have been attempted now.
    DryRun { reason: String },
    /// The restart call returned successfully.
    Called,
    /// The attempt ended.
    Finished {
        result: RemediationResult,
        detail: String,
    },
}

/// What one input changed and what the shell must do about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub transitions: Vec<Transition>,
    /// The next step; None only while paused without an expiry.
    pub next: Option<Step>,
    pub remediations: Vec<Remediation>,
    /// First failure → healthy again after a restart.
    pub recovered_after: Option<Duration>,
    /// A desync (or send-failure streak) was newly confirmed.
    pub desync_confirmed: bool,
    /// An operator command that could not be carried out, and why.
    pub rejected: Option<String>,
    /// The input did not apply to the current state (a stale result or a
    /// rejected command): nothing changed and the schedule stays as it was.
    /// Otherwise `next` replaces the schedule.
    pub ignored: bool,
}

/// Per-call context: time and the session's effective settings.
#[derive(Clone, Copy, Debug)]
pub struct Ctx<'a> {
    pub now: Timestamp,
    /// When the step that produced this input was due (anchors the next
    /// periodic probe, so slow probes do not make the schedule drift).
    pub due: Timestamp,
    /// This session's canary interval with jitter already applied.
    pub interval: Duration,
    pub policy: &'a PolicyConfig,
    /// Green-API `reboot_on_yellow_card`.
    pub restart_on_yellow_card: bool,
}

/// One session's machine: its persisted part and what is not stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Machine {
    /// Everything the store keeps (`crate::scheduler` converts it to and
    /// from a store record).
    pub persisted: Persisted,
    /// The streak holds an `inbound_missing`: a delivered canary (the send
    /// path) does not end it, only a received ring canary does. Not
    /// persisted: after a daemon restart the streak ends at the next
    /// delivered canary (later, never earlier, than with the flag).
    pub streak_has_inbound: bool,
}

impl Machine {
    pub fn new(now: Timestamp) -> Self {
        Machine::restored(Persisted::fresh(
            State::Unknown,
            now,
            "not probed yet".to_string(),
        ))
    }

    /// The machine whose stored part is `persisted` (what is not stored
    /// starts afresh).
    pub fn restored(persisted: Persisted) -> Self {
        Machine {
            persisted,
            streak_has_inbound: false,
        }
    }

    /// The step to take after the daemon restarted with this persisted state.
    /// A restart that was in flight is followed up, never repeated: its status
    /// is polled and `restart_timeout` still counts from its original start.
    pub fn resume_step(&self, now: Timestamp) -> Option<Step> {
        let (at, action) = match self.persisted.state {
            State::Restarting => (now, Action::PollStatus),
            State::Recovering => (now, Action::Verify),
            State::Paused => (self.persisted.paused_until?.max(now), Action::Resume),
            _ => (now, Action::Probe),
        };
        Some(Step { at, action })
    }
}

#[cfg(test)]
mod tests;
