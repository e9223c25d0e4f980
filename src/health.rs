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

/// How many of a provider's sessions are in each state: kept up to date by
/// the scheduler as sessions are added, change state and are retired, so
/// that the outage rule and the per-state summary cost the same for ten
/// sessions and for a hundred thousand (never a walk over the fleet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts([usize; State::ALL.len()]);

impl StateCounts {
    /// A full count (the reference the incremental counts are checked against).
    pub fn of(states: impl IntoIterator<Item = State>) -> StateCounts {
        let mut counts = StateCounts::default();
        for state in states {
            counts.add(state);
        }
        counts
    }

    pub fn add(&mut self, state: State) {
        self.0[state as usize] += 1;
    }

    pub fn remove(&mut self, state: State) {
        let n = &mut self.0[state as usize];
        *n = n.saturating_sub(1);
    }

    /// A session moved from `from` to `to` (no-op when they are equal).
    pub fn moved(&mut self, from: State, to: State) {
        if from != to {
            self.remove(from);
            self.add(to);
        }
    }

    pub fn get(&self, state: State) -> usize {
        self.0[state as usize]
    }

    /// Every session counted, whatever its state.
    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }

    /// `(state, count)` for every state, in `State::ALL` order.
    pub fn iter(&self) -> impl Iterator<Item = (State, usize)> + '_ {
        State::ALL.iter().map(|s| (*s, self.get(*s)))
    }
}

/// The outage rule over the counts of a provider's sessions per state.
pub fn outage(counts: &StateCounts, cfg: &PolicyConfig) -> OutageCount {
    // Paused sessions are not watched: they count neither way.
    let total = counts.total() - counts.get(State::Paused);
    let failing = counts.get(State::Unreachable);
    OutageCount {
        total,
        failing,
        outage: policy::outage(failing, total, cfg),
    }
}

/// What the other replicas of a shared store count of the same provider
/// (published with their leases): watched sessions and unreachable ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Remote {
    pub total: usize,
    pub failing: usize,
}

/// The outage rule over the whole provider when its sessions are split
/// between replicas: this replica's counts plus the others'.
pub fn outage_across(counts: &StateCounts, others: Remote, cfg: &PolicyConfig) -> OutageCount {
    let own = outage(counts, cfg);
    let total = own.total + others.total;
    let failing = own.failing + others.failing;
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
    fn an_outage_split_between_replicas_is_seen_from_the_sum() {
        let cfg = PolicyConfig {
            outage_fraction: 0.5,
            outage_min_sessions: 3,
            ..PolicyConfig::default()
        };
        let mine = StateCounts::of([State::Unreachable, State::Unreachable]);
        assert!(
            !outage(&mine, &cfg).outage,
            "two alone are below the minimum"
        );
        let none = Remote::default();
        assert_eq!(outage_across(&mine, none, &cfg), outage(&mine, &cfg));
        let others = Remote {
            total: 2,
            failing: 2,
        };
        let all = outage_across(&mine, others, &cfg);
        assert_eq!((all.total, all.failing, all.outage), (4, 4, true));
        // The others healthy: 2 of 6 failing is under the fraction.
        let healthy = Remote {
            total: 4,
            failing: 0,
        };
        assert!(!outage_across(&mine, healthy, &cfg).outage);
    }

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
                outage(&StateCounts::of(states.iter().copied()), &cfg),
                OutageCount {
                    total,
                    failing,
                    outage: outage_
                },
                "{states:?}"
            );
        }
    }

    /// The incremental counts agree with a full recount after any sequence
    /// of additions, state changes and removals (a seeded random walk).
    #[test]
    fn incremental_counts_match_a_full_recount() {
        // A seeded xorshift: the pure core takes no dependency for tests.
        struct Rng(u64);
        impl Rng {
            fn random_range(&mut self, r: std::ops::Range<usize>) -> usize {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                r.start + (self.0 % (r.end - r.start) as u64) as usize
            }
        }
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut fleet: Vec<State> = Vec::new();
            let mut counts = StateCounts::default();
            for _ in 0..2_000 {
                let state = State::ALL[rng.random_range(0..State::ALL.len())];
                match rng.random_range(0..4) {
                    0 => {
                        fleet.push(state);
                        counts.add(state);
                    }
                    1 if !fleet.is_empty() => {
                        let i = rng.random_range(0..fleet.len());
                        counts.remove(fleet.swap_remove(i));
                    }
                    _ if !fleet.is_empty() => {
                        let i = rng.random_range(0..fleet.len());
                        counts.moved(fleet[i], state);
                        fleet[i] = state;
                    }
                    _ => {}
                }
                assert_eq!(
                    counts,
                    StateCounts::of(fleet.iter().copied()),
                    "seed {seed}"
                );
            }
            assert_eq!(counts.total(), fleet.len());
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
