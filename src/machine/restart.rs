//! The restart rules of [`Machine::step`]: the restart call's result, the
//! status polls while restarting, an operator's restart, asking the policy
//! ([`crate::policy::decide`]) and the bookkeeping of an attempt (history,
//! backoff, the remediation records). The rest of the transition rules are
//! in `step.rs`.

use super::{
    Action, CallFailed, Ctx, Effects, Machine, Remediation, RemediationResult, State, StatusRead,
    Step,
};
use crate::clock::Timestamp;
use crate::outcome::{NotReadyKind, Outcome};
use crate::policy::{self, Decision, PolicyConfig, ProviderGuard};

impl Machine {
    pub(super) fn on_restart_called(
        &mut self,
        result: Result<(), CallFailed>,
        guard: &mut ProviderGuard,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        if self.persisted.state != State::Restarting {
            fx.ignored = true;
            return;
        }
        match result {
            Ok(()) => {
                fx.remediations.push(Remediation::Called);
                fx.next = Some(self.poll_step(ctx));
            }
            Err(failed) => {
                let detail = failed.to_string();
                fx.remediations.push(Remediation::Finished {
                    result: RemediationResult::Failed,
                    detail: detail.clone(),
                });
                self.persisted.restart_started_at = None;
                self.consider_restart(
                    format!("restart call failed: {detail}"),
                    State::Desynced,
                    guard,
                    ctx,
                    fx,
                );
            }
        }
    }

    pub(super) fn on_status(
        &mut self,
        read: StatusRead,
        guard: &mut ProviderGuard,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        if self.persisted.state != State::Restarting {
            fx.ignored = true;
            return;
        }
        match read {
            StatusRead::Working => {
                self.enter(
                    State::Recovering,
                    "provider reports healthy after restart; verifying with a canary".into(),
                    guard,
                    ctx,
                    fx,
                );
                // One poll interval later: the status was just read, and
                // Green-API allows one state read per second.
                fx.next = Some(Step {
                    at: ctx.now.plus(ctx.policy.restart_poll_interval),
                    action: Action::Verify,
                });
            }
            StatusRead::Not(outcome @ (Outcome::NeedsPairing | Outcome::Blocked(_))) => {
                // The restart revealed that only a person can help: this is
                // the ordinary probe path for these outcomes.
                self.apply_outcome(outcome, guard, ctx, fx);
            }
            StatusRead::Not(outcome) => {
                let started = self.persisted.restart_started_at.unwrap_or(ctx.now);
                if ctx.now.since(started) >= ctx.policy.restart_timeout {
                    self.persisted.last_outcome = Some(outcome);
                    fx.remediations.push(Remediation::Finished {
                        result: RemediationResult::Timeout,
                        detail: format!("still {} after restart_timeout", outcome),
                    });
                    self.persisted.restart_started_at = None;
                    if outcome == Outcome::NotReady(NotReadyKind::Starting) {
                        // Still starting long after a restart: another restart
                        // will not help (Green-API's own ladder is reboot, then
                        // support), so hand it to a person instead of looping.
                        self.enter(
                            State::Escalated,
                            format!(
                                "still STARTING {}s after the restart; another restart will not help: needs a human",
                                ctx.now.since(started).as_secs()
                            ),
                            guard,
                            ctx,
                            fx,
                        );
                        fx.next = Some(self.periodic(ctx));
                    } else {
                        self.consider_restart(
                            format!(
                                "not healthy within restart_timeout ({}s) after restart",
                                ctx.policy.restart_timeout.as_secs()
                            ),
                            State::Desynced,
                            guard,
                            ctx,
                            fx,
                        );
                    }
                } else {
                    fx.next = Some(self.poll_step(ctx));
                }
            }
        }
    }

    pub(super) fn on_operator_restart(
        &mut self,
        guard: &mut ProviderGuard,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        let refusal = if self.persisted.state == State::Paused {
            Some("session is paused; resume it first".to_string())
        } else if self.persisted.state.holds_restart_slot() {
            Some(format!(
                "a restart is already in progress ({})",
                self.persisted.state
            ))
        } else if !guard.slot_free(ctx.policy) {
            Some(format!(
                "max_concurrent_restarts ({}) restarts of this provider are in flight",
                ctx.policy.max_concurrent_restarts
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            fx.rejected = Some(why);
            fx.ignored = true;
            return;
        }
        guard.acquire_slot();
        self.start_restart("operator".into(), "operator".into(), ctx, fx);
    }

    /// Asks the policy for a restart; `waiting` is the state to show while
    /// the policy says "not yet".
    pub(super) fn consider_restart(
        &mut self,
        why: String,
        waiting: State,
        guard: &mut ProviderGuard,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        let cfg = ctx.policy;
        let now = ctx.now;
        match policy::decide(
            &self.persisted.restart_history,
            self.persisted.next_restart_at,
            guard,
            cfg,
            now,
        ) {
            Decision::Allow => {
                self.book_restart(cfg, now);
                // Pass through the waiting state so the record shows why
                // (desync confirmed) apart from what was done (restart); this
                // also gives back the slot of a failed attempt before the next
                // one takes one, so the slot count stays exact.
                if self.persisted.state != waiting {
                    self.enter(waiting, why.clone(), guard, ctx, fx);
                }
                guard.acquire(cfg, now);
                let attempt = policy::restarts_in_window(&self.persisted.restart_history, cfg, now);
                let transition = format!(
                    "restart {attempt} of at most {} within restart_window",
                    cfg.max_restarts
                );
                self.start_restart(transition, why, ctx, fx);
            }
            Decision::DryRun => {
                self.book_restart(cfg, now);
                fx.remediations.push(Remediation::DryRun {
                    reason: why.clone(),
                });
                self.enter(
                    waiting,
                    format!("dry run: would restart ({why})"),
                    guard,
                    ctx,
                    fx,
                );
                fx.next = Some(self.periodic(ctx));
            }
            Decision::Wait { reason, until } => {
                let recheck = until.unwrap_or_else(|| now.plus(cfg.confirm_interval));
                let until_text = until.map(|u| format!(" until {u}")).unwrap_or_default();
                self.enter(
                    waiting,
                    format!("{why}; restart waits: {}{until_text}", reason.as_str()),
                    guard,
                    ctx,
                    fx,
                );
                fx.next = Some(Step {
                    at: recheck.min(now.plus(ctx.interval)).max(now),
                    action: Action::Probe,
                });
            }
            Decision::Escalate => {
                let n = policy::restarts_in_window(&self.persisted.restart_history, cfg, now);
                self.enter(
                    State::Escalated,
                    format!(
                        "{why}; {n} restarts within {}s did not keep it healthy: needs a human",
                        cfg.restart_window.as_secs()
                    ),
                    guard,
                    ctx,
                    fx,
                );
                fx.next = Some(self.periodic(ctx));
            }
        }
    }

    /// A restart whose intent row the store holds but this machine's saved
    /// record does not show (the daemon died after writing the intent and
    /// before saving the session): counted like one made, so backoff and
    /// `max_restarts` hold across the crash. Already counted: no change.
    pub fn recall_restart(&mut self, cfg: &PolicyConfig, at: Timestamp) {
        if self.persisted.restart_history.contains(&at) {
            return;
        }
        let before = self.persisted.next_restart_at;
        self.book_restart(cfg, at);
        self.persisted.next_restart_at = self.persisted.next_restart_at.max(before);
    }

    /// Records a restart attempt in the session's history and backoff.
    fn book_restart(&mut self, cfg: &PolicyConfig, now: Timestamp) {
        let horizon = now.minus(cfg.restart_window);
        self.persisted.restart_history.retain(|t| *t > horizon);
        self.persisted.restart_history.push(now);
        self.persisted.next_restart_at =
            Some(now.plus(policy::backoff(cfg, self.persisted.backoff_step)));
        self.persisted.backoff_step = self.persisted.backoff_step.saturating_add(1);
    }

    /// Enters `restarting`; the caller has already taken the slot (so this
    /// bypasses `enter`, which would account for it a second time).
    fn start_restart(&mut self, transition: String, why: String, ctx: &Ctx<'_>, fx: &mut Effects) {
        self.persisted.restart_started_at = Some(ctx.now);
        self.persisted.healthy_since = None;
        self.persisted.not_ready_since = None;
        fx.remediations.push(Remediation::Begin { reason: why });
        let from = self.persisted.state;
        self.persisted.state = State::Restarting;
        self.record(from, State::Restarting, transition, ctx, fx);
        fx.next = Some(Step {
            at: ctx.now,
            action: Action::Restart,
        });
    }

    /// Ends a restart attempt in progress, if any, with `result`.
    pub(super) fn finish_restart(
        &mut self,
        fx: &mut Effects,
        result: RemediationResult,
        detail: &str,
    ) {
        if self.persisted.state.holds_restart_slot() {
            fx.remediations.push(Remediation::Finished {
                result,
                detail: detail.to_string(),
            });
            self.persisted.restart_started_at = None;
        }
    }

    pub(super) fn interrupt_restart(&mut self, fx: &mut Effects, why: &str) {
        self.finish_restart(fx, RemediationResult::Interrupted, why);
    }
}
