//! The rules for ring canaries ([`crate::ring`]) as the machine sees them:
//! a received ring canary (`Input::Received`) and a delivered canary while
//! the streak holds an `inbound_missing`. The rest of the transition rules
//! are in `step.rs`.

use super::{Action, Ctx, Effects, Machine, RemediationResult, State, Step};
use crate::outcome::Outcome;
use crate::policy::ProviderGuard;

impl Machine {
    /// A received ring canary: ends an inbound streak like a delivered
    /// canary ends a send streak; otherwise nothing changes (the schedule
    /// stays: it arrives between this session's own steps).
    pub(super) fn on_received(
        &mut self,
        guard: &mut ProviderGuard,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        if matches!(self.persisted.state, State::Paused | State::Restarting)
            || !self.streak_has_inbound
        {
            fx.ignored = true;
            return;
        }
        if self.persisted.consecutive_failures > 0 && self.persisted.streak_has_desync {
            // A send streak too: receiving proves nothing about it.
            fx.ignored = true;
            return;
        }
        self.persisted.last_outcome = Some(Outcome::Delivered);
        self.streak_has_inbound = false;
        self.on_delivered(guard, ctx, fx);
        if self.persisted.state == State::Healthy && fx.transitions.is_empty() {
            // Healthy all along (the streak was below the threshold):
            // keep the session's own schedule.
            fx.next = None;
            fx.ignored = true;
        }
    }

    /// A delivered canary while the streak holds an `inbound_missing`: the
    /// send path works, the inbound path is still unproven (only a received
    /// ring canary proves it), so the streak stays.
    pub(super) fn on_delivered_inbound_unproven(
        &mut self,
        previous: Option<Outcome>,
        guard: &mut ProviderGuard,
        ctx: &Ctx<'_>,
        fx: &mut Effects,
    ) {
        match self.persisted.state {
            State::Recovering if previous == Some(Outcome::Delivered) => {
                // A second verification without any ring canary reaching it:
                // nobody can tell; give the slot back and keep the streak.
                self.finish_restart(
                    fx,
                    RemediationResult::NotHealed,
                    "verification inconclusive: no ring canary reached it",
                );
                self.enter(
                    State::Unknown,
                    "verification inconclusive: sends work, but no ring canary reached it".into(),
                    guard,
                    ctx,
                    fx,
                );
                fx.next = Some(self.periodic(ctx));
            }
            State::Recovering => {
                self.persisted.reason =
                    "sends work after the restart; waiting for the next ring canary to prove it                      receives"
                        .into();
                fx.next = Some(Step {
                    at: ctx.due.plus(ctx.interval).max(ctx.now),
                    action: Action::Verify,
                });
            }
            State::Desynced => self.consider_restart(
                "still not receiving ring canaries (sends work)".into(),
                State::Desynced,
                guard,
                ctx,
                fx,
            ),
            _ => fx.next = Some(self.periodic(ctx)),
        }
    }
}
