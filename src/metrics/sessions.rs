//! The per-session bookkeeping of [`Metrics`]: which sessions (and which
//! webhook event labels) have series, so that a state change and a
//! retirement remove exactly the series that exist, and the lock that keeps
//! each multi-series update whole.
//!
//! What it owns: `Tracked`, creating a provider's zeroed closed label sets,
//! setting a session's three series and retiring sessions and providers.
//! What it must not do: define or register families (the parent module
//! does), read a clock, or leave a session with more than its three series
//! (the cardinality invariant in the parent's docs).

use std::collections::{HashMap, HashSet};
use std::sync::MutexGuard;

use super::{Metrics, OTHER_EVENT, RestartResult};
use crate::clock::Timestamp;
use crate::machine::State;
use crate::provider::Outcome;

/// Label bookkeeping that the registry cannot answer (it has no "list the
/// children of a vec"), kept so that state changes and retirements remove
/// exactly the series that exist.
#[derive(Default)]
pub(super) struct Tracked {
    /// provider → session → current state.
    pub(super) sessions: HashMap<String, HashMap<String, State>>,
    /// provider → webhook event label values in use.
    pub(super) events: HashMap<String, HashSet<String>>,
}

impl Metrics {
    /// A poisoned lock only means another thread panicked mid-update; the
    /// bookkeeping is still the best information there is, so keep going
    /// rather than take the scrape path down with it.
    pub(super) fn lock(&self) -> MutexGuard<'_, Tracked> {
        self.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the provider's zero-valued series for every closed label set,
    /// once. Called with the lock held.
    pub(super) fn ensure_provider(&self, t: &mut Tracked, provider: &str) {
        if t.sessions.contains_key(provider) {
            return;
        }
        t.sessions.insert(provider.to_owned(), HashMap::new());
        for outcome in Outcome::NAMES {
            self.canary_total.with_label_values(&[provider, outcome]);
        }
        for result in RestartResult::ALL {
            self.restarts_total
                .with_label_values(&[provider, result.as_str()]);
        }
        self.desyncs_total.with_label_values(&[provider]);
        for state in State::ALL {
            self.sessions.with_label_values(&[provider, state.as_str()]);
        }
        // Up until told otherwise: a provider that was never contacted is not
        // an outage, and "0" here would page before the first probe.
        self.provider_up.with_label_values(&[provider]).set(1);
        self.provider_outage.with_label_values(&[provider]).set(0);
    }

    /// Announces a configured provider, so its series exist (at zero) before
    /// its first probe. Optional: every other method does it on first use.
    pub fn add_provider(&self, provider: &str) {
        let mut t = self.lock();
        self.ensure_provider(&mut t, provider);
    }

    /// Sets a session's current state, failure streak and last success.
    ///
    /// On a state change the old state's `session_state` series is removed (so
    /// the session has exactly one) and the per-provider `sessions` counts move
    /// with it. `last_success = None` (never succeeded) leaves that series
    /// absent rather than exporting 0, which alert rules would read as
    /// "stale since 1970".
    pub fn set_session(
        &self,
        provider: &str,
        session: &str,
        state: State,
        consecutive_failures: u32,
        last_success: Option<Timestamp>,
    ) {
        let mut t = self.lock();
        self.ensure_provider(&mut t, provider);
        let known = t.sessions.entry(provider.to_owned()).or_default();
        // Replaced in place: a probe of a known session allocates nothing.
        let previous = match known.get_mut(session) {
            Some(current) => Some(std::mem::replace(current, state)),
            None => {
                known.insert(session.to_owned(), state);
                None
            }
        };
        if !self.session_series {
            if previous != Some(state) {
                self.sessions
                    .with_label_values(&[provider, state.as_str()])
                    .inc();
                if let Some(old) = previous {
                    self.sessions
                        .with_label_values(&[provider, old.as_str()])
                        .dec();
                }
            }
            return;
        }
        // The new series first, then the old one goes: a scrape racing this
        // update may see both for an instant, never neither, so alert rules
        // that aggregate over `state` (`max without (state)`) never see the
        // session vanish and restart their `for` clocks.
        self.session_state
            .with_label_values(&[provider, session, state.as_str()])
            .set(1);
        if previous != Some(state) {
            self.sessions
                .with_label_values(&[provider, state.as_str()])
                .inc();
            if let Some(old) = previous {
                // The series exists because we created it; ignore the impossible miss.
                let _ = self
                    .session_state
                    .remove_label_values(&[provider, session, old.as_str()]);
                self.sessions
                    .with_label_values(&[provider, old.as_str()])
                    .dec();
            }
        }
        self.session_failures
            .with_label_values(&[provider, session])
            .set(i64::from(consecutive_failures));
        match last_success {
            Some(ts) => self
                .session_last_success
                .with_label_values(&[provider, session])
                .set(ts.as_secs_f64()),
            None => {
                // Absent is the only honest value for "never"; nothing to remove otherwise.
                let _ = self
                    .session_last_success
                    .remove_label_values(&[provider, session]);
            }
        }
    }

    /// Forgets a session that is no longer tracked (gone from discovery or the
    /// config): removes its three series and its contribution to `sessions`.
    /// A no-op for an unknown session.
    pub fn retire_session(&self, provider: &str, session: &str) {
        let mut t = self.lock();
        self.retire_locked(&mut t, provider, session);
    }

    fn retire_locked(&self, t: &mut Tracked, provider: &str, session: &str) {
        let Some(state) = t
            .sessions
            .get_mut(provider)
            .and_then(|known| known.remove(session))
        else {
            return;
        };
        // Each removal may miss only for a series that was never set (e.g. no
        // last success yet), which is the outcome we want anyway.
        let _ = self
            .session_state
            .remove_label_values(&[provider, session, state.as_str()]);
        let _ = self
            .session_last_success
            .remove_label_values(&[provider, session]);
        let _ = self
            .session_failures
            .remove_label_values(&[provider, session]);
        let _ = self
            .ring_inbound_failures
            .remove_label_values(&[provider, session]);
        self.sessions
            .with_label_values(&[provider, state.as_str()])
            .dec();
    }

    /// Forgets a provider removed from the configuration: its sessions and
    /// every per-provider series. A no-op for an unknown provider.
    pub fn retire_provider(&self, provider: &str) {
        let mut t = self.lock();
        let sessions: Vec<String> = match t.sessions.get(provider) {
            Some(known) => known.keys().cloned().collect(),
            None => return,
        };
        for session in sessions {
            self.retire_locked(&mut t, provider, &session);
        }
        t.sessions.remove(provider);
        // Label sets that were never created make these removals miss; fine.
        for outcome in Outcome::NAMES {
            let _ = self.canary_total.remove_label_values(&[provider, outcome]);
        }
        for result in RestartResult::ALL {
            let _ = self
                .restarts_total
                .remove_label_values(&[provider, result.as_str()]);
        }
        for state in State::ALL {
            let _ = self
                .sessions
                .remove_label_values(&[provider, state.as_str()]);
        }
        for event in t.events.remove(provider).unwrap_or_default() {
            let _ = self
                .webhook_events
                .remove_label_values(&[provider, event.as_str()]);
        }
        let _ = self
            .webhook_events
            .remove_label_values(&[provider, OTHER_EVENT]);
        let _ = self.canary_duration.remove_label_values(&[provider]);
        let _ = self.confirmation_duration.remove_label_values(&[provider]);
        let _ = self.probe_lateness.remove_label_values(&[provider]);
        let _ = self.recovery_duration.remove_label_values(&[provider]);
        let _ = self.desyncs_total.remove_label_values(&[provider]);
        let _ = self.provider_up.remove_label_values(&[provider]);
        let _ = self.provider_outage.remove_label_values(&[provider]);
        let _ = self
            .restart_budget_remaining
            .remove_label_values(&[provider]);
    }
}
