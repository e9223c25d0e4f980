//! Webhook events from the receiver's queue, applied inside the loop: the
//! rules of [`crate::webhooks::rules`] decide, this carries them out. A
//! webhook never starts a restart (no effect can), never blocks the loop
//! (the queue is drained between other work, one event at a time), and an
//! event for a session that is not watched (any more) is counted and dropped.

use tokio::sync::mpsc;

use super::Scheduler;
use crate::events::Event;
use crate::machine::{Action, Input, Step};
use crate::webhooks::{Body, Effect, Evidence, Queued, rules};

impl Scheduler {
    /// Connects the receiver's queue ([`crate::webhooks::Receiver::new`]).
    /// [`Scheduler::run`] drains it as events arrive, [`Scheduler::tick`]
    /// before running what is due.
    pub fn attach_webhooks(&mut self, queue: mpsc::Receiver<Queued>) {
        self.webhooks = Some(queue);
    }

    /// Applies every event queued now.
    pub(super) async fn drain_webhooks(&mut self) {
        loop {
            let next = match &mut self.webhooks {
                Some(rx) => rx.try_recv().ok(),
                None => None,
            };
            match next {
                Some(q) => self.on_webhook(q).await,
                None => return,
            }
        }
    }

    /// Applies one event.
    pub(super) async fn on_webhook(&mut self, q: Queued) {
        let Queued {
            provider, event, ..
        } = q;
        let Some(p) = self.slot(&provider) else {
            self.metrics.webhook_ignored(&provider, "unknown_provider");
            return;
        };
        let name = event.session.clone();
        if !self.providers[p].sessions.contains_key(&name) {
            self.metrics.webhook_ignored(&provider, "unknown_session");
            return;
        }
        // An inbound message may be a ring canary reaching this member.
        let inbound = match &event.body {
            Body::Message {
                from,
                text: Some(t),
                ..
            }
            | Body::Incoming {
                from,
                text: Some(t),
                ..
            } => Some((from.clone(), t.clone())),
            _ => None,
        };
        if let Some((from, text)) = inbound
            && self.ring_seen(p, &name, from.as_deref(), &text, "webhook")
        {
            return;
        }
        let pending = self.pending_canary(p, &name);
        for effect in rules::decide(&event.body, pending.as_deref()) {
            match effect {
                Effect::Evidence(evidence) => self.webhook_evidence(p, &name, evidence).await,
                Effect::ProbeNow => self.probe_now(p, &name),
                Effect::NeedsPairing { reason } => {
                    tracing::warn!(
                        provider = %provider,
                        session = %name,
                        event = %event.event_type,
                        "webhook: the provider says the session needs pairing"
                    );
                    let now = self.clock.now();
                    self.apply_input(p, &name, Input::NeedsPairing { reason }, now)
                        .await;
                }
                Effect::Marker(marker) => {
                    tracing::info!(
                        provider = %provider,
                        session = %name,
                        marker = marker.as_str(),
                        "webhook: Green-API error marker in an incoming message"
                    );
                    self.metrics.webhook_marker(&provider, marker);
                    let _ = self.events.send(Event::WebhookMarker {
                        at: self.clock.now(),
                        provider: provider.clone(),
                        session: name.clone(),
                        marker: marker.as_str(),
                    });
                }
                Effect::Ignore(reason) => self.metrics.webhook_ignored(&provider, reason),
            }
        }
    }

    /// The message id of the session's canary awaiting confirmation.
    fn pending_canary(&self, p: usize, name: &str) -> Option<String> {
        self.providers[p]
            .sessions
            .get(name)
            .and_then(|s| s.pending_ack.as_ref())
            .map(|a| a.canary.message_id.clone())
    }

    /// Hands pushed evidence to the one confirmation step
    /// ([`Scheduler::evidence`]): the canary's probe is concluded exactly as
    /// when a look finds the same evidence (same table, same record, same
    /// machine input), only sooner. Evidence that does not conclude leaves
    /// the scheduled look in place.
    async fn webhook_evidence(&mut self, p: usize, name: &str, pushed: Evidence) {
        let provider = self.providers[p].cfg.name.clone();
        let decided = self
            .evidence(&provider, name, &pushed.message_id, pushed.evidence)
            .await;
        if !decided {
            self.metrics.webhook_ignored(&provider, "not_conclusive");
        }
    }

    /// Moves the session's next periodic probe to now. Only a periodic probe
    /// moves: a restart in progress, a pause or a canary awaiting its
    /// confirmation keep their own schedule.
    fn probe_now(&mut self, p: usize, name: &str) {
        let now = self.clock.now();
        let Some(s) = self.providers[p].sessions.get(name) else {
            return;
        };
        let movable = !s.in_flight
            && s.pending_ack.is_none()
            && s.next
                .is_some_and(|st| st.action == Action::Probe && st.at > now);
        if movable {
            self.schedule(
                p,
                name,
                Some(Step {
                    at: now,
                    action: Action::Probe,
                }),
            );
        }
    }
}
