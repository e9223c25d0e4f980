//! The transition rules of [`Machine::step`]: one input in, the new state
//! and its [`Effects`] out. Kept apart from the types; the restart rules are
//! in `restart.rs`, those of ring canaries in `inbound.rs`.

use std::time::Duration;

use super::{Action, Ctx, Effects, Input, Machine, RemediationResult, State, Step, Transition};
use crate::outcome::{BlockKind, NotReadyKind, Outcome};
use crate::policy::ProviderGuard;

impl Machine {
    /// Feeds one input; the rules per state follow below.
    pub fn step(&mut self, input: Input, guard: &mut ProviderGuard, ctx: &Ctx<'_>) -> Effects {
        let mut fx = Effects::default();
        match input {
            Input::Probe(outcome) => self.on_probe(outcome, guard, ctx, &mut fx),
            Input::RestartCalled(result) => self.on_restart_called(result, guard, ctx, &mut fx),
            Input::Status(read) => self.on_status(read, guard, ctx, &mut fx),
            Input::Pause { until, reason } => {
                self.interrupt_restart(&mut fx, "paused");
                self.persisted.paused_until = until;
                self.enter(State::Paused, reason, guard, ctx, &mut fx);
                fx.next = until.map(|at| Step {
                    at,
                    action: Action::Resume,
                });
            }
            Input::Resume => {
                if self.persisted.state == State::Paused {
                    self.persisted.paused_until = None;
                    self.enter(State::Unknown, "resumed".to_string(), guard, ctx, &mut fx);
                    fx.next = Some(Step {
                        at: ctx.now,
                        action: Action::Probe,
                    });
                } else {
                    fx.rejected = Some(format!("not paused (state {})", self.persisted.state));
                    fx.ignored = true;
                }
            }
            Input::OperatorRestart => self.on_operator_restart(guard, ctx, &mut fx),
            Input::NeedsPairing { reason } => self.on_pairing_signal(reason, guard, ctx, &mut fx),
            Input::Received => self.on_received(guard, ctx, &mut fx),
        }
        fx
    }

    /// A pushed needs-pairing signal: the state changes at once, the next
    /// periodic probe checks it (and heals the session if the push was wrong).
    fn on_pairing_signal(
        &mut self,
        reason: String,
        guard: &mut ProviderGuard,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        if matches!(self.persisted.state, State::Paused | State::NeedsPairing) {
            fx.ignored = true;
            return;
        }
        self.finish_restart(fx, RemediationResult::NotHealed, "session needs pairing");
        self.enter(State::NeedsPairing, reason, guard, ctx, fx);
        fx.next = Some(self.periodic(ctx));
    }

    fn on_probe(
        &mut self,
        outcome: Outcome,
        guard: &mut ProviderGuard,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        // Results that arrive while no probe is expected are stale (the shell
        // drops most of them; this is the second line of defence).
        if matches!(self.persisted.state, State::Paused | State::Restarting) {
            fx.ignored = true;
            return;
        }
        self.apply_outcome(outcome, guard, ctx, fx);
    }

    pub(super) fn apply_outcome(
        &mut self,
        outcome: Outcome,
        guard: &mut ProviderGuard,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        let previous = self.persisted.last_outcome.replace(outcome);
        self.persisted.last_probe_at = Some(ctx.now);
        let verifying = self.persisted.state == State::Recovering;

        match outcome {
            Outcome::Delivered if self.streak_has_inbound => {
                self.on_delivered_inbound_unproven(previous, guard, ctx, fx)
            }
            Outcome::Delivered => self.on_delivered(guard, ctx, fx),
            Outcome::Desync
            | Outcome::SendFailed
            | Outcome::Stuck
            | Outcome::AckError
            | Outcome::InboundMissing => self.on_counting_failure(outcome, guard, ctx, fx),
            Outcome::NotReady(kind) => {
                if verifying {
                    // The status fell back during verification: keep waiting
                    // for it as part of the same restart attempt.
                    self.enter(
                        State::Restarting,
                        format!("status fell back to {} during verification", kind.as_str()),
                        guard,
                        ctx,
                        fx,
                    );
                    fx.next = Some(self.poll_step(ctx));
                } else if self.persisted.state == State::Escalated {
                    fx.next = Some(self.periodic(ctx));
                } else {
                    let previous_kind = match previous {
                        Some(Outcome::NotReady(k)) if self.persisted.state == State::NotReady => {
                            Some(k)
                        }
                        _ => None,
                    };
                    self.on_not_ready(kind, previous_kind, guard, ctx, fx);
                }
            }
            Outcome::NeedsPairing => {
                self.finish_restart(fx, RemediationResult::NotHealed, "session needs pairing");
                self.enter(
                    State::NeedsPairing,
                    "provider says the session must be paired again (QR code / phone code)".into(),
                    guard,
                    ctx,
                    fx,
                );
                fx.next = Some(self.periodic(ctx));
            }
            Outcome::Blocked(kind) => {
                self.finish_restart(fx, RemediationResult::NotHealed, "session is blocked");
                let why = match kind {
                    BlockKind::Banned => "WhatsApp blocked the number",
                    BlockKind::YellowCard => {
                        "WhatsApp filters this number's messages (yellow card): canaries paused"
                    }
                };
                let reboot = kind == BlockKind::YellowCard && ctx.restart_on_yellow_card;
                if reboot && self.persisted.state == State::Escalated {
                    // Reboots already failed to lift it: no more of them.
                    fx.next = Some(self.periodic(ctx));
                } else if reboot {
                    self.consider_restart(why.to_string(), State::Blocked, guard, ctx, fx);
                } else {
                    self.enter(State::Blocked, why.to_string(), guard, ctx, fx);
                    fx.next = Some(self.periodic(ctx));
                }
            }
            Outcome::RateLimited { retry_after } => {
                let wait = retry_after.unwrap_or(Duration::ZERO).max(if verifying {
                    ctx.policy.confirm_interval
                } else {
                    ctx.interval
                });
                let action = if verifying {
                    Action::Verify
                } else {
                    Action::Probe
                };
                fx.next = Some(Step {
                    at: ctx.now.plus(wait),
                    action,
                });
            }
            Outcome::Unreachable | Outcome::Timeout | Outcome::BadReply => {
                self.finish_restart(
                    fx,
                    RemediationResult::NotHealed,
                    "provider unreachable during verification",
                );
                self.enter(
                    State::Unreachable,
                    format!("probe failed: {}", outcome.as_str()),
                    guard,
                    ctx,
                    fx,
                );
                fx.next = Some(self.periodic(ctx));
            }
            Outcome::AuthRejected
            | Outcome::BadRequest
            | Outcome::SessionMissing
            | Outcome::QuotaExceeded
            | Outcome::InstanceExpired
            | Outcome::Unconfirmed
            | Outcome::BadCanaryChat
            | Outcome::ReachoutTimelock
            | Outcome::SendRefused => {
                // Nothing a restart can fix; alerts come from the outcome.
                if verifying {
                    self.finish_restart(
                        fx,
                        RemediationResult::NotHealed,
                        &format!("verification inconclusive: {}", outcome.as_str()),
                    );
                    self.enter(
                        State::Unknown,
                        format!("verification inconclusive: {}", outcome.as_str()),
                        guard,
                        ctx,
                        fx,
                    );
                } else if self.persisted.state == State::Unknown {
                    // Probed, and the answer says why it is not known: not
                    // "not probed yet" after the first rejected key.
                    self.enter(
                        State::Unknown,
                        format!("probe answered {}", outcome.as_str()),
                        guard,
                        ctx,
                        fx,
                    );
                }
                fx.next = Some(self.periodic(ctx));
            }
        }
    }

    pub(super) fn on_delivered(
        &mut self,
        guard: &mut ProviderGuard,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        let now = ctx.now;
        if self.persisted.state == State::Recovering {
            let first = self
                .persisted
                .first_failure_at
                .or(self.persisted.restart_started_at)
                .unwrap_or(now);
            fx.recovered_after = Some(now.since(first));
            self.finish_restart(
                fx,
                RemediationResult::Healed,
                "verification canary delivered",
            );
            self.enter(
                State::Healthy,
                "verification canary delivered after restart".into(),
                guard,
                ctx,
                fx,
            );
        } else if self.persisted.state != State::Healthy {
            self.enter(State::Healthy, "canary delivered".into(), guard, ctx, fx);
        }
        self.persisted.consecutive_failures = 0;
        self.persisted.streak_has_desync = false;
        self.streak_has_inbound = false;
        self.persisted.first_failure_at = None;
        self.persisted.not_ready_since = None;
        self.persisted.last_success_at = Some(now);
        let healthy_since = *self.persisted.healthy_since.get_or_insert(now);
        if now.since(healthy_since) >= ctx.policy.healthy_reset {
            // Healthy long enough: earlier restarts no longer say anything.
            self.persisted.backoff_step = 0;
            self.persisted.next_restart_at = None;
            self.persisted.restart_history.clear();
        }
        fx.next = Some(self.periodic(ctx));
    }

    fn on_counting_failure(
        &mut self,
        outcome: Outcome,
        guard: &mut ProviderGuard,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        self.persisted.consecutive_failures = self.persisted.consecutive_failures.saturating_add(1);
        self.persisted.streak_has_desync |= outcome == Outcome::Desync;
        self.streak_has_inbound |= outcome == Outcome::InboundMissing;
        self.persisted.first_failure_at.get_or_insert(ctx.now);
        let threshold = if self.persisted.streak_has_desync {
            ctx.policy.desync_confirmations
        } else {
            ctx.policy.send_failure_confirmations
        };
        let streak = format!(
            "{} {}/{}",
            outcome.as_str(),
            self.persisted.consecutive_failures.min(threshold),
            threshold
        );
        match self.persisted.state {
            State::Escalated => {
                fx.next = Some(self.periodic(ctx));
            }
            State::Recovering => {
                self.finish_restart(
                    fx,
                    RemediationResult::NotHealed,
                    &format!("verification canary failed: {}", outcome.as_str()),
                );
                self.consider_restart(
                    format!(
                        "verification canary failed after restart ({})",
                        outcome.as_str()
                    ),
                    State::Desynced,
                    guard,
                    ctx,
                    fx,
                );
            }
            State::Desynced => {
                self.consider_restart(
                    format!("still failing ({})", outcome.as_str()),
                    State::Desynced,
                    guard,
                    ctx,
                    fx,
                );
            }
            _ if self.persisted.consecutive_failures >= threshold => {
                fx.desync_confirmed = true;
                let what = if self.persisted.streak_has_desync {
                    "desync confirmed"
                } else {
                    "send failures confirmed"
                };
                self.consider_restart(
                    format!("{what} ({streak}) while the provider reports healthy"),
                    State::Desynced,
                    guard,
                    ctx,
                    fx,
                );
            }
            _ => {
                if outcome == Outcome::InboundMissing {
                    // Its own canary proves only the send path: the next
                    // ring canary to it confirms (the shell asks for one).
                    self.enter(
                        State::Suspect,
                        format!("ring canary not received ({streak})"),
                        guard,
                        ctx,
                        fx,
                    );
                    fx.next = Some(self.periodic(ctx));
                } else {
                    self.enter(
                        State::Suspect,
                        format!("canary failed ({streak})"),
                        guard,
                        ctx,
                        fx,
                    );
                    fx.next = Some(Step {
                        at: ctx.now.plus(ctx.policy.confirm_interval),
                        action: Action::Probe,
                    });
                }
            }
        }
    }

    fn on_not_ready(
        &mut self,
        kind: NotReadyKind,
        previous_kind: Option<NotReadyKind>,
        guard: &mut ProviderGuard,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        if previous_kind != Some(kind) || self.persisted.not_ready_since.is_none() {
            self.persisted.not_ready_since = Some(ctx.now);
        }
        let since = self.persisted.not_ready_since.unwrap_or(ctx.now);
        let status = kind.as_str().to_uppercase();
        match kind {
            NotReadyKind::Starting => {
                let grace_ends = since.plus(ctx.policy.starting_grace);
                if ctx.now >= grace_ends {
                    self.consider_restart(
                        format!(
                            "STARTING for {}s, beyond starting_grace",
                            ctx.now.since(since).as_secs()
                        ),
                        State::NotReady,
                        guard,
                        ctx,
                        fx,
                    );
                } else {
                    self.enter(
                        State::NotReady,
                        "provider reports STARTING".into(),
                        guard,
                        ctx,
                        fx,
                    );
                    let next = self.periodic(ctx);
                    fx.next = Some(Step {
                        at: next.at.min(grace_ends),
                        action: Action::Probe,
                    });
                }
            }
            NotReadyKind::Failed => {
                self.consider_restart(
                    "provider reports FAILED".into(),
                    State::NotReady,
                    guard,
                    ctx,
                    fx,
                );
            }
            NotReadyKind::Stopped if ctx.policy.restart_stopped => {
                self.consider_restart(
                    "provider reports STOPPED and restart_stopped is on".into(),
                    State::NotReady,
                    guard,
                    ctx,
                    fx,
                );
            }
            NotReadyKind::Stopped
            | NotReadyKind::Sleeping
            | NotReadyKind::Provisioning
            | NotReadyKind::Unrecognised => {
                let why = match kind {
                    NotReadyKind::Stopped => {
                        "provider reports STOPPED; left alone (restart_stopped is off)".to_string()
                    }
                    _ => format!("provider reports {status}; a restart cannot help"),
                };
                self.enter(State::NotReady, why, guard, ctx, fx);
                fx.next = Some(self.periodic(ctx));
            }
        }
    }

    /// Moves to `to`, keeping the restart-slot invariant and recording the
    /// transition. Staying in the same state only refreshes the reason.
    pub(super) fn enter(
        &mut self,
        to: State,
        reason: String,
        guard: &mut ProviderGuard,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        let from = self.persisted.state;
        if from.holds_restart_slot() && !to.holds_restart_slot() {
            guard.release();
        }
        debug_assert!(
            !to.holds_restart_slot() || from.holds_restart_slot(),
            "entering {to} must go through start_restart"
        );
        if to != State::Healthy {
            self.persisted.healthy_since = None;
        }
        if to != State::NotReady {
            self.persisted.not_ready_since = None;
        }
        if from == to {
            self.persisted.reason = reason;
            return;
        }
        self.persisted.state = to;
        self.record(from, to, reason, ctx, fx);
    }

    pub(super) fn record(
        &mut self,
        from: State,
        to: State,
        reason: String,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        self.persisted.since = ctx.now;
        self.persisted.reason = reason.clone();
        fx.transitions.push(Transition { from, to, reason });
    }

    /// The next periodic probe, anchored on when this step was due.
    pub(super) fn periodic(&self, ctx: &Ctx<'_>) -> Step {
        Step {
            at: ctx.due.plus(ctx.interval).max(ctx.now),
            action: Action::Probe,
        }
    }

    pub(super) fn poll_step(&self, ctx: &Ctx<'_>) -> Step {
        Step {
            at: ctx.now.plus(ctx.policy.restart_poll_interval),
            action: Action::PollStatus,
        }
    }
}
