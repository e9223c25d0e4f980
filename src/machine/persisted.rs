//! The persisted part of a session's machine ([`Persisted`]): what the
//! store keeps of it, so that a daemon restart resumes exactly where it
//! stopped. Plain data, written once: the machine holds it typed, a store
//! record holds it with the state and the last outcome in their stored form.

use std::convert::Infallible;

use super::State;
use crate::clock::Timestamp;
use crate::outcome::Outcome;

/// Everything of a session's machine that is stored: a daemon restart
/// restores it exactly, so it never restarts a session early nor forgets a
/// failure streak.
///
/// `S` is the state and `O` the last outcome: [`State`] and [`Outcome`] in
/// the machine; their stored names ([`State::as_str`],
/// [`Outcome::to_stored`]) in a store record
/// (`crate::store::SessionRecord`), which holds whatever its row says, also
/// a name this version does not know.
#[derive(Clone, Debug, PartialEq)]
pub struct Persisted<S = State, O = Outcome> {
    /// The current state.
    pub state: S,
    /// When the session entered `state`.
    pub since: Timestamp,
    /// Why the session is in this state (or what it waits for), for humans.
    /// Stored as `state_reason`, capped to `store::MAX_TEXT_CHARS`.
    pub reason: String,
    /// Counting failures in the current streak.
    pub consecutive_failures: u32,
    /// Whether the streak holds a desync (the lower confirmation threshold applies).
    pub streak_has_desync: bool,
    /// First failure of the current streak: the start of the recovery time.
    pub first_failure_at: Option<Timestamp>,
    /// Last delivered canary.
    pub last_success_at: Option<Timestamp>,
    /// The last outcome.
    pub last_outcome: Option<O>,
    /// When the last probe finished.
    pub last_probe_at: Option<Timestamp>,
    /// Since when the provider reports the session not ready (for `starting_grace`).
    pub not_ready_since: Option<Timestamp>,
    /// Position in the restart backoff sequence (0 = next restart uses the initial delay).
    pub backoff_step: u32,
    /// No restart before this instant (backoff).
    pub next_restart_at: Option<Timestamp>,
    /// Start times of restarts that still count toward escalation
    /// (`max_restarts` within `restart_window`).
    pub restart_history: Vec<Timestamp>,
    /// Start of the restart in flight, if any (for `restart_timeout`).
    pub restart_started_at: Option<Timestamp>,
    /// Healthy since this instant (for the backoff reset after `healthy_reset`).
    pub healthy_since: Option<Timestamp>,
    /// Operator pause or maintenance window end.
    pub paused_until: Option<Timestamp>,
}

impl<S, O> Persisted<S, O> {
    /// In `state` since `since` for `reason`, with nothing else known yet:
    /// no streak, no history, no backoff.
    pub fn fresh(state: S, since: Timestamp, reason: String) -> Self {
        Persisted {
            state,
            since,
            reason,
            consecutive_failures: 0,
            streak_has_desync: false,
            first_failure_at: None,
            last_success_at: None,
            last_outcome: None,
            last_probe_at: None,
            not_ready_since: None,
            backoff_step: 0,
            next_restart_at: None,
            restart_history: Vec::new(),
            restart_started_at: None,
            healthy_since: None,
            paused_until: None,
        }
    }

    /// The same with the state and the last outcome converted (the one
    /// field-by-field copy between the typed and the stored form); the
    /// first conversion that fails is the error.
    pub fn try_map<S2, O2, E>(
        self,
        state: impl FnOnce(S) -> Result<S2, E>,
        outcome: impl FnOnce(O) -> Result<O2, E>,
    ) -> Result<Persisted<S2, O2>, E> {
        let Persisted {
            state: from_state,
            since,
            reason,
            consecutive_failures,
            streak_has_desync,
            first_failure_at,
            last_success_at,
            last_outcome: from_outcome,
            last_probe_at,
            not_ready_since,
            backoff_step,
            next_restart_at,
            restart_history,
            restart_started_at,
            healthy_since,
            paused_until,
        } = self;
        Ok(Persisted {
            state: state(from_state)?,
            last_outcome: from_outcome.map(outcome).transpose()?,
            since,
            reason,
            consecutive_failures,
            streak_has_desync,
            first_failure_at,
            last_success_at,
            last_probe_at,
            not_ready_since,
            backoff_step,
            next_restart_at,
            restart_history,
            restart_started_at,
            healthy_since,
            paused_until,
        })
    }

    /// [`Persisted::try_map`] with conversions that cannot fail.
    pub fn map<S2, O2>(
        self,
        state: impl FnOnce(S) -> S2,
        outcome: impl FnOnce(O) -> O2,
    ) -> Persisted<S2, O2> {
        let mapped: Result<_, Infallible> = self.try_map(|s| Ok(state(s)), |o| Ok(outcome(o)));
        match mapped {
            Ok(p) => p,
            Err(never) => match never {},
        }
    }
}
