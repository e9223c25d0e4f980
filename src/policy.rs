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
    /// Deadline of the restart call itself (WAHA `POST .../restart`,
    /// Green-API `reboot`); at most `restart_timeout`, which runs from the
    /// same start.
    pub restart_call_timeout: Duration,
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
            restart_call_timeout: Duration::from_secs(15),
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

use std::collections::VecDeque;

use crate::clock::Timestamp;

/// Per-provider restart bookkeeping: restarts in flight, restarts within the
/// budget window, and whether the provider is in outage. Plain data owned by
/// the scheduler and handed to the pure machine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProviderGuard {
    /// Restarts in progress: sessions in `restarting` or `recovering`.
    pub in_flight: u32,
    /// Start times of restarts within the budget window, oldest first.
    pub recent_restarts: VecDeque<Timestamp>,
    /// Set by the scheduler from the outage rule ([`outage`]).
    pub in_outage: bool,
    /// Replicas on a shared store: what the store showed of the whole
    /// provider (every replica's restarts, this one's included) when last
    /// read. The limits count whichever is higher, this process's own
    /// bookkeeping or the shared view; `None` for a single process.
    pub shared: Option<SharedUse>,
}

/// A provider's restarts as recorded in the shared store, over every
/// replica: the restarts in flight and the start times of those in the
/// budget window (oldest first).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SharedUse {
    pub in_flight: u32,
    pub restarts: Vec<Timestamp>,
}

impl ProviderGuard {
    fn prune(&mut self, cfg: &PolicyConfig, now: Timestamp) {
        let horizon = now.minus(cfg.restart_budget_window);
        while self.recent_restarts.front().is_some_and(|t| *t <= horizon) {
            self.recent_restarts.pop_front();
        }
    }

    /// Restarts within the budget window (the higher of the own and the
    /// shared count) and the oldest of them, from the list counted.
    fn budget_used(&self, cfg: &PolicyConfig, now: Timestamp) -> (usize, Option<Timestamp>) {
        let horizon = now.minus(cfg.restart_budget_window);
        let count = |list: &mut dyn Iterator<Item = &Timestamp>| {
            let inside: Vec<Timestamp> = list.filter(|t| **t > horizon).copied().collect();
            (inside.len(), inside.iter().min().copied())
        };
        let own = count(&mut self.recent_restarts.iter());
        match &self.shared {
            Some(shared) => {
                let all = count(&mut shared.restarts.iter());
                if all.0 > own.0 { all } else { own }
            }
            None => own,
        }
    }

    /// Restarts still allowed in the current budget window.
    pub fn budget_remaining(&self, cfg: &PolicyConfig, now: Timestamp) -> u32 {
        let used = self.budget_used(cfg, now).0;
        cfg.restart_budget
            .saturating_sub(u32::try_from(used).unwrap_or(u32::MAX))
    }

    /// Takes a concurrency slot and a budget token for a restart starting now.
    pub fn acquire(&mut self, cfg: &PolicyConfig, now: Timestamp) {
        self.prune(cfg, now);
        self.in_flight += 1;
        self.recent_restarts.push_back(now);
    }

    /// Takes only a concurrency slot (operator restarts bypass the budget).
    pub fn acquire_slot(&mut self) {
        self.in_flight += 1;
    }

    /// Gives a concurrency slot back.
    pub fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Restarts in flight: this process's own, or the shared view's when
    /// that is higher (other replicas' restarts of the same provider).
    pub fn in_flight_all(&self) -> u32 {
        let shared = self.shared.as_ref().map_or(0, |s| s.in_flight);
        self.in_flight.max(shared)
    }

    pub fn slot_free(&self, cfg: &PolicyConfig) -> bool {
        self.in_flight_all() < cfg.max_concurrent_restarts
    }
}

/// Why a wanted restart cannot happen yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// The session's own backoff after its previous restart.
    Backoff,
    /// `max_concurrent_restarts` restarts of this provider are in flight.
    SlotBusy,
    /// The provider's `restart_budget` for the window is spent.
    BudgetSpent,
    /// The provider is in outage: restarts cannot help and could hurt.
    Outage,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Backoff => "backoff",
            WaitReason::SlotBusy => "restart slot busy",
            WaitReason::BudgetSpent => "restart budget spent",
            WaitReason::Outage => "provider outage",
        }
    }
}

/// What the policy says about a restart wanted now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// `dry_run`: record that it would restart, do nothing.
    DryRun,
    /// Not now; `until` is when it may become possible, if known.
    Wait {
        reason: WaitReason,
        until: Option<Timestamp>,
    },
    /// `max_restarts` within `restart_window` already happened: a human is needed.
    Escalate,
}

/// Restart attempts of one session that still count toward escalation.
pub fn restarts_in_window(history: &[Timestamp], cfg: &PolicyConfig, now: Timestamp) -> u32 {
    let horizon = now.minus(cfg.restart_window);
    let n = history.iter().filter(|t| **t > horizon).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The backoff that follows the `step`-th restart (0-based): `backoff_initial`
/// doubling per step, capped at `backoff_max`.
pub fn backoff(cfg: &PolicyConfig, step: u32) -> Duration {
    let factor = 1u32.checked_shl(step.min(31)).unwrap_or(u32::MAX);
    cfg.backoff_initial
        .checked_mul(factor)
        .unwrap_or(cfg.backoff_max)
        .min(cfg.backoff_max)
}

/// Decides whether a session may be restarted now. Checked in order of how
/// final the answer is: escalation, then the session's own backoff, then the
/// provider-wide guards, then dry run.
pub fn decide(
    history: &[Timestamp],
    next_restart_at: Option<Timestamp>,
    guard: &ProviderGuard,
    cfg: &PolicyConfig,
    now: Timestamp,
) -> Decision {
    if restarts_in_window(history, cfg, now) >= cfg.max_restarts {
        return Decision::Escalate;
    }
    if let Some(at) = next_restart_at.filter(|at| *at > now) {
        return Decision::Wait {
            reason: WaitReason::Backoff,
            until: Some(at),
        };
    }
    if guard.in_outage {
        return Decision::Wait {
            reason: WaitReason::Outage,
            until: None,
        };
    }
    if cfg.dry_run {
        return Decision::DryRun;
    }
    if !guard.slot_free(cfg) {
        return Decision::Wait {
            reason: WaitReason::SlotBusy,
            until: None,
        };
    }
    if guard.budget_remaining(cfg, now) == 0 {
        let oldest = guard.budget_used(cfg, now).1;
        return Decision::Wait {
            reason: WaitReason::BudgetSpent,
            until: oldest.map(|t| t.plus(cfg.restart_budget_window)),
        };
    }
    Decision::Allow
}

/// The outage rule: a provider is in outage when at least `outage_fraction`
/// of its sessions, and at least `outage_min_sessions` of them, last failed
/// with a provider-level outcome (unreachable, timeout).
pub fn outage(failing: usize, total: usize, cfg: &PolicyConfig) -> bool {
    if total == 0 || failing < cfg.outage_min_sessions as usize {
        return false;
    }
    failing as f64 >= cfg.outage_fraction * total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp(s * 1000)
    }

    #[test]
    fn backoff_doubles_from_initial_and_caps() {
        let cfg = PolicyConfig::default();
        let secs: Vec<u64> = (0..8).map(|s| backoff(&cfg, s).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(backoff(&cfg, u32::MAX), cfg.backoff_max);
    }

    #[test]
    fn decide_checks_escalation_then_backoff_then_provider_guards() {
        let cfg = PolicyConfig::default();
        let mut guard = ProviderGuard::default();
        let now = t(10_000);

        assert_eq!(decide(&[], None, &guard, &cfg, now), Decision::Allow);

        let three = [t(9_000), t(9_500), t(9_900)];
        guard.in_outage = true;
        assert_eq!(
            decide(&three, Some(t(20_000)), &guard, &cfg, now),
            Decision::Escalate
        );
        // Restarts older than the window no longer count.
        let old = [t(1_000), t(2_000), t(9_900)];
        assert_eq!(
            decide(&old, Some(t(10_030)), &guard, &cfg, now),
            Decision::Wait {
                reason: WaitReason::Backoff,
                until: Some(t(10_030))
            }
        );
        assert_eq!(
            decide(&old, Some(now), &guard, &cfg, now),
            Decision::Wait {
                reason: WaitReason::Outage,
                until: None
            }
        );
        guard.in_outage = false;
        guard.in_flight = 1;
        assert_eq!(
            decide(&[], None, &guard, &cfg, now),
            Decision::Wait {
                reason: WaitReason::SlotBusy,
                until: None
            }
        );
        let dry = PolicyConfig {
            dry_run: true,
            ..cfg.clone()
        };
        assert_eq!(decide(&[], None, &guard, &dry, now), Decision::DryRun);
    }

    #[test]
    fn budget_is_spent_within_the_window_and_refills_after_it() {
        let cfg = PolicyConfig {
            restart_budget: 2,
            max_concurrent_restarts: 5,
            ..PolicyConfig::default()
        };
        let mut guard = ProviderGuard::default();
        guard.acquire(&cfg, t(100));
        guard.acquire(&cfg, t(200));
        guard.release();
        guard.release();
        assert_eq!(guard.budget_remaining(&cfg, t(300)), 0);
        assert_eq!(
            decide(&[], None, &guard, &cfg, t(300)),
            Decision::Wait {
                reason: WaitReason::BudgetSpent,
                until: Some(t(700))
            }
        );
        assert_eq!(guard.budget_remaining(&cfg, t(700)), 1);
        assert_eq!(decide(&[], None, &guard, &cfg, t(700)), Decision::Allow);
        assert_eq!(guard.budget_remaining(&cfg, t(800)), 2);
    }

    #[test]
    fn the_shared_view_of_other_replicas_counts_when_it_is_higher() {
        let cfg = PolicyConfig {
            restart_budget: 2,
            max_concurrent_restarts: 1,
            ..PolicyConfig::default()
        };
        let mut guard = ProviderGuard::default();
        assert_eq!(decide(&[], None, &guard, &cfg, t(300)), Decision::Allow);
        // Another replica has a restart in flight and two in the window.
        guard.shared = Some(SharedUse {
            in_flight: 1,
            restarts: vec![t(100), t(250)],
        });
        assert!(!guard.slot_free(&cfg));
        assert_eq!(
            decide(&[], None, &guard, &cfg, t(300)),
            Decision::Wait {
                reason: WaitReason::SlotBusy,
                until: None
            }
        );
        guard.shared.as_mut().expect("shared").in_flight = 0;
        assert_eq!(guard.budget_remaining(&cfg, t(300)), 0);
        assert_eq!(
            decide(&[], None, &guard, &cfg, t(300)),
            Decision::Wait {
                reason: WaitReason::BudgetSpent,
                until: Some(t(700))
            }
        );
        // Own bookkeeping higher than a stale shared view: the own counts.
        guard.shared = Some(SharedUse::default());
        guard.in_flight = 1;
        assert!(!guard.slot_free(&cfg));
        guard.in_flight = 0;
        guard.acquire(&cfg, t(290));
        guard.release();
        guard.acquire(&cfg, t(295));
        guard.release();
        assert_eq!(guard.budget_remaining(&cfg, t(300)), 0);
    }

    #[test]
    fn outage_needs_both_the_fraction_and_the_minimum() {
        let cfg = PolicyConfig::default();
        assert!(
            !outage(2, 2, &cfg),
            "two sessions are below outage_min_sessions"
        );
        assert!(outage(3, 6, &cfg));
        assert!(!outage(3, 7, &cfg));
        assert!(outage(10, 10, &cfg));
        assert!(!outage(0, 0, &cfg));
    }
}
