//! Evidence about a pending canary that arrives from outside a look job (a
//! provider webhook: WAHA `message.ack`, Green-API `outgoingMessageStatus`),
//! and what the scheduler does with a decided confirmation. The verdict is
//! [`confirm::verdict`]'s; the scheduler only carries it out.

use super::Scheduler;
use crate::confirm::{self, Evidence, Verdict};
use crate::machine::Input;
use crate::outcome::Outcome;

impl Scheduler {
    /// Delivers `evidence` about message `message_id` of a session's pending
    /// canary (webhooks call this). Returns whether it decided the canary:
    /// evidence about another message, a session without a pending canary,
    /// or evidence that does not decide yet (the scheduled look stays) is
    /// dropped and returns `false`.
    pub async fn evidence(
        &mut self,
        provider: &str,
        session: &str,
        message_id: &str,
        evidence: Evidence,
    ) -> bool {
        let Some(p) = self.slot(provider) else {
            return false;
        };
        let Some(pending) = self.providers[p]
            .sessions
            .get(session)
            .and_then(|s| s.pending_ack.clone())
            .filter(|pa| pa.canary.message_id == message_id)
        else {
            return false;
        };
        let now = self.clock.now();
        let verdict = confirm::verdict(&pending.canary, evidence, now);
        let Some(report) = verdict.report(&pending.canary) else {
            return false;
        };
        self.ring_sender_decided(p, session, message_id, report.outcome);
        self.observe_verdict(p, session, &verdict, report.outcome);
        self.record_probe(
            p,
            session,
            pending.action,
            &report,
            pending.canary.sent_at,
            pending.latency,
        )
        .await;
        // Replaces the schedule: a look in flight becomes stale.
        self.apply_input(p, session, Input::Probe(report.outcome), pending.due)
            .await;
        true
    }

    /// Metrics and the once-per-session log of a decided confirmation.
    pub(super) fn observe_verdict(
        &mut self,
        p: usize,
        session: &str,
        verdict: &Verdict,
        outcome: Outcome,
    ) {
        let pr = &mut self.providers[p];
        let provider = pr.cfg.name.clone();
        if let Some(c) = verdict.confirmation() {
            self.metrics.observe_confirmation(&provider, c.latency);
        }
        let Some(s) = pr.sessions.get_mut(session) else {
            return;
        };
        if outcome == Outcome::Unconfirmed {
            if !s.unconfirmed_logged {
                s.unconfirmed_logged = true;
                let detail = match verdict {
                    Verdict::Failed { detail, .. } => detail.as_str(),
                    _ => "",
                };
                tracing::warn!(
                    %provider, session, %detail,
                    "canaries of this session cannot be confirmed: they are never counted as \
                     delivered (set confirm = \"accepted\" to accept the provider's word)"
                );
            }
        } else if outcome == Outcome::Delivered {
            s.unconfirmed_logged = false;
        }
    }
}
