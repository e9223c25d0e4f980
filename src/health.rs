//! Provider health, decided from what the scheduler saw: whether a provider
//! is up (its session list could be read, or its probes reach it) and
//! whether it is in outage (the outage rule over its sessions' states).
//! Pure: the scheduler passes what it saw and carries out the change
//! (metrics, the `ProviderHealth` event, the restart guard).
//!
//! Owns: [`Health`] and the rules that change it.
//! Must not: do I/O, read a clock, log.

use crate::machine::State;
use crate::outcome::Outcome;
use crate::policy::{self, PolicyConfig};

/// A provider's health as reported (metrics `wa_watchdog_provider_up`,
/// `wa_watchdog_provider_outage`, the `ProviderHealth` event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    pub up: bool,
    pub outage: bool,
}

impl Default for Health {
    /// Up and not in outage until something says otherwise.
    fn default() -> Self {
        Health {
            up: true,
            outage: false,
        }
    }
}

/// How the outage rule counted a provider's sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutageCount {
    /// Watched sessions (paused ones do not count).
    pub total: usize,
    /// Of those, the ones unreachable.
    pub failing: usize,
    pub outage: bool,
}

/// Whether the provider is up after a read of its session list.
pub fn up_after_list_read(read_ok: bool) -> bool {
    read_ok
}

/// Whether the provider is up after one probe, for a provider whose up/down
/// is decided by probes (no session list to read: named sessions,
/// Green-API); `None` when the session list decides instead.
pub fn up_after_probe(outcome: &Outcome, has_session_list: bool) -> Option<bool> {
    (!has_session_list).then(|| !outcome.is_provider_level())
}

/// The outage rule over the states of a provider's sessions.
pub fn outage(states: impl IntoIterator<Item = State>, cfg: &PolicyConfig) -> OutageCount {
    let (mut total, mut failing) = (0usize, 0usize);
    for state in states {
        if state == State::Paused {
            continue;
        }
        total += 1;
        if state == State::Unreachable {
            failing += 1;
        }
    }
    OutageCount {
        total,
        failing,
        outage: policy::outage(failing, total, cfg),
    }
}

/// `new` when it differs from `old` (the scheduler reports only changes).
pub fn changed(old: Health, new: Health) -> Option<Health> {
    (old != new).then_some(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::NotReadyKind;

    #[test]
    fn probes_decide_up_only_without_a_session_list() {
        #[rustfmt::skip]
        let table = [
            (Outcome::Delivered, false, Some(true)),
            (Outcome::Desync, false, Some(true)),
            (Outcome::NotReady(NotReadyKind::Starting), false, Some(true)),
            (Outcome::AuthRejected, false, Some(true)),
            (Outcome::Unreachable, false, Some(false)),
            (Outcome::Timeout, false, Some(false)),
            (Outcome::Unreachable, true, None),
            (Outcome::Delivered, true, None),
        ];
        for (outcome, listed, want) in table {
            assert_eq!(
                up_after_probe(&outcome, listed),
                want,
                "{outcome:?} {listed}"
            );
        }
        assert!(up_after_list_read(true));
        assert!(!up_after_list_read(false));
    }

    #[test]
    fn outage_counts_unreachable_sessions_and_ignores_paused_ones() {
        let cfg = PolicyConfig {
            outage_fraction: 0.5,
            outage_min_sessions: 2,
            ..PolicyConfig::default()
        };
        use State::*;
        #[rustfmt::skip]
        let table: [(&[State], usize, usize, bool); 6] = [
            (&[], 0, 0, false),
            (&[Unreachable], 1, 1, false),
            (&[Unreachable, Unreachable], 2, 2, true),
            (&[Unreachable, Unreachable, Healthy, Healthy], 4, 2, true),
            (&[Unreachable, Unreachable, Healthy, Healthy, Suspect], 5, 2, false),
            (&[Unreachable, Unreachable, Paused, Paused, Paused], 2, 2, true),
        ];
        for (states, total, failing, outage_) in table {
            assert_eq!(
                outage(states.iter().copied(), &cfg),
                OutageCount {
                    total,
                    failing,
                    outage: outage_
                },
                "{states:?}"
            );
        }
    }

    #[test]
    fn only_changes_are_reported() {
        let h = Health::default();
        assert_eq!(changed(h, h), None);
        let down = Health { up: false, ..h };
        assert_eq!(changed(h, down), Some(down));
        let out = Health { outage: true, ..h };
        assert_eq!(changed(h, out), Some(out));
    }
}
