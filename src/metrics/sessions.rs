//! The per-session bookkeeping of [`Metrics`]: which sessions (and which
//! webhook event labels) have series, so that a state change and a
//! retirement remove exactly the series that exist, and the lock that keeps
//! each multi-series update whole.
//!
//! What it owns: `Tracked`, creating a provider's zeroed closed label sets,
//! setting a session's three series (their values live in `Tracked`;
//! `session_series.rs` renders them at scrape time) and retiring sessions
//! and providers.
//! What it must not do: define or register families (the parent module
//! does), read a clock, or leave a session with more than its three series
//! (the cardinality invariant in the parent's docs).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, MutexGuard};

use super::session_series::SessionSeries;
use super::{Metrics, OTHER_EVENT, RestartResult};
use crate::clock::Timestamp;
use crate::machine::State;
use crate::provider::Outcome;

/// Label bookkeeping that the registry cannot answer (it has no "list the
/// children of a vec"), kept so that state changes and retirements remove
/// exactly the series that exist.
#[derive(Default)]
pub(super) struct Tracked {
    /// provider → session → its current state, streak and last success
    /// (the per-session families are rendered from these).
    ///
    /// Names are `Arc<str>` so that a scrape's copy of the fleet shares
    /// them instead of copying 100,000 strings.
    pub(super) sessions: HashMap<Arc<str>, HashMap<Arc<str>, SessionSeries>>,
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
        t.sessions.insert(Arc::from(provider), HashMap::new());
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
        // The provider's map exists: `ensure_provider` made it.
        let Some(known) = t.sessions.get_mut(provider) else {
            return;
        };
        let now = SessionSeries {
            state,
            consecutive_failures,
            // Absent is the only honest value for "never".
            last_success: last_success.map(Timestamp::as_secs_f64),
        };
        // Replaced in place: a probe of a known session allocates nothing.
        // The per-session series change with it, under this lock, so a
        // scrape sees the session in exactly one state.
        let previous = match known.get_mut(session) {
            Some(current) => Some(std::mem::replace(current, now).state),
            None => {
                known.insert(Arc::from(session), now);
                None
            }
        };
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
    }

    /// Forgets a session that is no longer tracked (gone from discovery or the
    /// config): removes its three series and its contribution to `sessions`.
    /// A no-op for an unknown session.
    pub fn retire_session(&self, provider: &str, session: &str) {
        let mut t = self.lock();
        self.retire_locked(&mut t, provider, session);
    }

    fn retire_locked(&self, t: &mut Tracked, provider: &str, session: &str) {
        let Some(SessionSeries { state, .. }) = t
            .sessions
            .get_mut(provider)
            .and_then(|known| known.remove(session))
        else {
            return;
        };
        // Its three per-session series went with its entry; the ring
        // series may miss (not a ring member), which is fine.
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
        let sessions: Vec<Arc<str>> = match t.sessions.get(provider) {
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
