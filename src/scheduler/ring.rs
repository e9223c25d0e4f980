//! Rings in the scheduler: the ring canary of a member goes to the next
//! member's own number (its probe's target), the receiver's side is watched
//! for it (a webhook, or paced reads of its chat with the sender until the
//! deadline), and the fate [`crate::ring`] judges is carried out: a received
//! canary is `Input::Received` for the receiver, a missing one an
//! `inbound_missing` probe outcome for it, or the provider's inbound outage.
//! The sender is never blamed here: its own confirmation is its probe.
//!
//! Owns: the members' own numbers (read once, `Provider::own_number`), the
//! canaries in flight per receiver, the latest inbound verdict per member,
//! asking the sender of a member under suspicion for its next ring canary
//! early (confirmation and verification by the next ring canary).
//! Must not: decide blame (`crate::ring` does) or restart anything (only
//! the machine asks for restarts).

use std::time::Duration;

use super::Scheduler;
use super::jobs::{Job, Owner};
use crate::clock::Timestamp;
use crate::config::{ProviderConfig, RingConfig, SessionOverride, WebhookAuth};
use crate::events::Event;
use crate::machine::{Action, Input, State, Step};
use crate::outcome::Outcome;
use crate::provider::ProbeReport;
use crate::ring::{self, Blame, InFlight, Judgement, SenderVerdict};
use crate::store::ProbeRecord;

/// Spacing of the reads of a receiver's chat while a canary is awaited
/// (Green-API allows one `lastIncomingMessages` per second; a ring needs far
/// fewer).
pub const RING_LOOK_EVERY: Duration = Duration::from_secs(20);
/// Spacing of the reads for one ring: at most [`RING_LOOK_EVERY`], and
/// several reads within the deadline.
fn look_every(deadline: Duration) -> Duration {
    RING_LOOK_EVERY
        .min(deadline / 4)
        .max(Duration::from_millis(500))
}

/// Retry spacing of reading a member's own number.
const NUMBER_RETRY: Duration = Duration::from_secs(60);

/// One ring at run time.
#[derive(Debug)]
pub(super) struct RingRt {
    pub(super) cfg: RingConfig,
    numbers: Vec<Option<String>>,
    number_in_flight: Vec<bool>,
    number_retry: Vec<Timestamp>,
    /// Canaries on their way to member *i*.
    inbound: Vec<Vec<Canary>>,
    /// The latest inbound verdict of member *i*: when, and whether missing.
    latest: Vec<Option<(Timestamp, bool)>>,
}

#[derive(Debug)]
struct Canary {
    from: usize,
    nonce: String,
    /// The sender's message id, while its own confirmation is pending.
    message_id: Option<String>,
    flight: InFlight,
    look_in_flight: bool,
    next_look: Timestamp,
    /// How it was seen (for the record).
    seen_by: &'static str,
    /// The last read of the receiver's chat, after the deadline, was made.
    final_look: bool,
}

/// What a member's probe sends instead of a self-canary.
#[derive(Clone, Debug)]
pub(super) struct RingSend {
    pub ring: usize,
    pub to: usize,
    pub nonce: String,
    /// The next member's own number.
    pub chat: String,
    pub text: String,
}

impl RingRt {
    pub(super) fn new(cfg: RingConfig, now: Timestamp) -> RingRt {
        let n = cfg.members.len();
        RingRt {
            cfg,
            numbers: vec![None; n],
            number_in_flight: vec![false; n],
            number_retry: vec![now; n],
            inbound: (0..n).map(|_| Vec::new()).collect(),
            latest: vec![None; n],
        }
    }
}

/// For ring members the ring's interval is the canary interval (the ring
/// canary replaces the self-canary).
pub(super) fn apply_intervals(providers: &mut [ProviderConfig], rings: &[RingConfig]) {
    for r in rings {
        for m in &r.members {
            let Some(p) = providers.iter_mut().find(|p| p.name == m.provider) else {
                continue;
            };
            match p.session_overrides.iter_mut().find(|o| o.name == m.session) {
                Some(o) => o.interval = Some(r.interval),
                None => p.session_overrides.push(SessionOverride {
                    name: m.session.clone(),
                    chat: None,
                    interval: Some(r.interval),
                    enabled: true,
                }),
            }
        }
    }
}

impl Scheduler {
    /// The ring and position of provider slot `p`'s session `name`.
    pub(super) fn ring_member(&self, p: usize, name: &str) -> Option<(usize, usize)> {
        let provider = &self.providers.get(p)?.cfg.name;
        self.rings
            .iter()
            .enumerate()
            .find_map(|(r, rt)| rt.cfg.position(provider, name).map(|i| (r, i)))
    }

    fn slot_of(&self, provider: &str) -> Option<usize> {
        self.providers.find(provider)
    }

    /// The ring canary a member's probe sends now, if it is a member and
    /// the next member's number is known.
    pub(super) fn ring_target(&mut self, p: usize, name: &str) -> Option<RingSend> {
        let (r, i) = self.ring_member(p, name)?;
        let rt = &self.rings[r];
        let to = (i + 1) % rt.cfg.members.len();
        let chat = rt.numbers[to].clone()?;
        let nonce = format!("{:012x}", rand::Rng::random::<u64>(&mut self.rng) >> 16);
        let text = self.rings[r].cfg.render_text(&nonce);
        Some(RingSend {
            ring: r,
            to,
            nonce,
            chat,
            text,
        })
    }

    /// A member's probe answered: an accepted ring canary is now on its way
    /// to the receiver. A refused one is only the sender's failure.
    pub(super) fn ring_sent(&mut self, p: usize, name: &str, report: &ProbeReport, at: Timestamp) {
        let Some(send) = self.providers[p]
            .sessions
            .get_mut(name)
            .and_then(|s| s.ring_send.take())
        else {
            return;
        };
        if !(report.sent && report.outcome == Outcome::Delivered) {
            return;
        }
        let Some((r, from)) = self.ring_member(p, name) else {
            return;
        };
        if send.ring != r || send.to >= self.rings[r].inbound.len() {
            return;
        }
        // A receiver that is paused or in the middle of a restart cannot be
        // expected to see it: not watched, never held against it.
        let receiver = self.rings[r].cfg.members[send.to].clone();
        let unavailable = self
            .slot_of(&receiver.provider)
            .and_then(|q| self.providers[q].sessions.get(&receiver.session))
            .is_none_or(|s| matches!(s.machine.persisted.state, State::Paused | State::Restarting));
        if unavailable {
            return;
        }
        let rt = &mut self.rings[r];
        let deadline = at.plus(rt.cfg.deadline);
        rt.inbound[send.to].push(Canary {
            from,
            nonce: send.nonce,
            message_id: report.pending_ack.clone(),
            flight: InFlight {
                sent_at: at,
                deadline,
                sender: if report.pending_ack.is_some() {
                    SenderVerdict::Pending
                } else {
                    SenderVerdict::Confirmed
                },
                seen_at: None,
                unread: false,
            },
            look_in_flight: false,
            next_look: at.plus(look_every(rt.cfg.deadline)),
            seen_by: "",
            final_look: false,
        });
    }

    /// The sender's own confirmation of message `message_id` was decided.
    pub(super) fn ring_sender_decided(
        &mut self,
        p: usize,
        name: &str,
        message_id: &str,
        outcome: Outcome,
    ) {
        let Some((r, i)) = self.ring_member(p, name) else {
            return;
        };
        let rt = &mut self.rings[r];
        let to = (i + 1) % rt.cfg.members.len();
        for c in &mut rt.inbound[to] {
            if c.message_id.as_deref() == Some(message_id) {
                c.message_id = None;
                c.flight.sender = if outcome == Outcome::Delivered {
                    SenderVerdict::Confirmed
                } else {
                    SenderVerdict::Failed
                };
            }
        }
    }

    /// The receiver's side shows a message (a webhook): if it carries the
    /// nonce of a canary on its way to it (from the expected sender, when
    /// both are known), that canary is seen.
    pub(super) fn ring_seen(
        &mut self,
        p: usize,
        name: &str,
        from: Option<&str>,
        text: &str,
        by: &'static str,
    ) -> bool {
        let Some((r, j)) = self.ring_member(p, name) else {
            return false;
        };
        let now = self.clock.now();
        let rt = &mut self.rings[r];
        let user = |n: &str| n.split('@').next().unwrap_or(n).to_string();
        let mut seen = false;
        for c in &mut rt.inbound[j] {
            if c.flight.seen_at.is_some() || !text.contains(&c.nonce) {
                continue;
            }
            let sender_ok = match (from, &rt.numbers[c.from]) {
                (Some(f), Some(n)) => user(f) == user(n),
                _ => true,
            };
            if sender_ok {
                c.flight.seen_at = Some(now);
                c.seen_by = by;
                seen = true;
            }
        }
        seen
    }

    /// Whether the receiver's provider pushes inbound messages to us; if
    /// not, its chat is read until the deadline.
    fn ring_reads(&self, p: usize) -> bool {
        matches!(self.providers[p].cfg.webhook.auth, WebhookAuth::Off)
    }

    /// When the ring needs the loop next.
    pub(super) fn ring_next_due(&self) -> Option<Timestamp> {
        // Only what lies ahead: anything due already is taken up on the
        // loop's next pass (every job result and heartbeat makes one).
        let now = self.clock.now();
        let mut due: Option<Timestamp> = None;
        let mut at = |t: Timestamp| {
            if t > now {
                due = Some(due.map_or(t, |d| d.min(t)));
            }
        };
        for rt in &self.rings {
            for (i, n) in rt.numbers.iter().enumerate() {
                if n.is_none() && !rt.number_in_flight[i] {
                    at(rt.number_retry[i]);
                }
            }
            for (j, list) in rt.inbound.iter().enumerate() {
                let reads = self
                    .slot_of(&rt.cfg.members[j].provider)
                    .is_some_and(|p| self.ring_reads(p));
                for c in list {
                    at(c.flight.deadline);
                    if reads && !c.look_in_flight && c.flight.seen_at.is_none() {
                        at(c.next_look);
                    }
                }
            }
        }
        due
    }

    /// One pass over every ring: read missing numbers, read receivers'
    /// chats, judge canaries and carry out their fates.
    pub(super) async fn ring_round(&mut self, now: Timestamp) {
        let mut jobs: Vec<Job> = Vec::new();
        let mut decided: Vec<(usize, usize, usize)> = Vec::new();
        for r in 0..self.rings.len() {
            let n = self.rings[r].cfg.members.len();
            for i in 0..n {
                let m = self.rings[r].cfg.members[i].clone();
                let Some(p) = self.slot_of(&m.provider) else {
                    continue;
                };
                if !self.providers[p].sessions.contains_key(&m.session) {
                    continue;
                }
                let rt = &mut self.rings[r];
                if rt.numbers[i].is_none() && !rt.number_in_flight[i] && rt.number_retry[i] <= now {
                    rt.number_in_flight[i] = true;
                    jobs.push(Job::RingNumber {
                        ring: r,
                        member: i,
                        session: m.session.clone(),
                        timeout: self.providers[p].cfg.canary.timeout,
                        client: self.providers[p].client.clone(),
                    });
                }
                let reads = self.ring_reads(p);
                let rt = &mut self.rings[r];
                for k in 0..rt.inbound[i].len() {
                    let judgement = ring::judge(&rt.inbound[i][k].flight, now);
                    let c = &rt.inbound[i][k];
                    let from = rt.numbers[c.from].clone();
                    // One last read at the deadline, with or without
                    // pushes: a message that arrived since the previous read
                    // counts, and a provider that does not push inbound
                    // messages (its webhook lacks the `message` event) must
                    // not look like a dead inbound.
                    let last_read = from.is_some()
                        && matches!(judgement, Judgement::Missing | Judgement::Inconclusive)
                        && !c.final_look;
                    if judgement.is_final() && !last_read && !c.look_in_flight {
                        decided.push((r, i, k));
                        continue;
                    }
                    if last_read {
                        rt.inbound[i][k].final_look = true;
                    }
                    let c = &rt.inbound[i][k];
                    let Some(from) = from else {
                        continue;
                    };
                    if !c.look_in_flight && ((reads && c.next_look <= now) || last_read) {
                        let nonce = c.nonce.clone();
                        rt.inbound[i][k].look_in_flight = true;
                        jobs.push(Job::RingLook {
                            ring: r,
                            receiver: i,
                            nonce,
                            from,
                            session: m.session.clone(),
                            timeout: self.providers[p].cfg.canary.timeout,
                            client: self.providers[p].client.clone(),
                        });
                    }
                }
            }
        }
        for job in jobs {
            self.spawn(job);
        }
        // Highest index first, so removing keeps the others' indices.
        decided.sort_unstable_by(|a, b| b.cmp(a));
        for (r, j, k) in decided {
            let m = self.rings[r].cfg.members[j].clone();
            let Some(p) = self.slot_of(&m.provider) else {
                self.rings[r].inbound[j].remove(k);
                continue;
            };
            let busy = self.providers[p]
                .sessions
                .get(&m.session)
                .is_none_or(|s| s.in_flight || s.pending_ack.is_some());
            if busy && self.providers[p].sessions.contains_key(&m.session) {
                continue; // applied once the receiver's own step is done
            }
            let c = self.rings[r].inbound[j].remove(k);
            if c.look_in_flight {
                // Its look's answer finds nothing to update: fine.
            }
            self.ring_fate(r, j, p, &m.session, c, now).await;
        }
    }

    async fn ring_fate(
        &mut self,
        r: usize,
        j: usize,
        p: usize,
        name: &str,
        c: Canary,
        now: Timestamp,
    ) {
        let mut judgement = ring::judge(&c.flight, now);
        let paused = self.providers[p]
            .sessions
            .get(name)
            .is_none_or(|s| s.machine.persisted.state == State::Paused);
        if paused && judgement == Judgement::Missing {
            // Paused meanwhile (an operator, a maintenance window): nobody
            // can tell.
            judgement = Judgement::Inconclusive;
        }
        let ring_name = self.rings[r].cfg.name.clone();
        let sender = self.rings[r].cfg.members[c.from].to_string();
        let provider = self.providers[p].cfg.name.clone();
        self.metrics.ring_canary(&ring_name, judgement.as_str());
        let (outcome, input, detail) = match judgement {
            Judgement::Received { latency } => {
                self.rings[r].latest[j] = Some((now, false));
                self.metrics.ring_round_trip(&ring_name, &provider, latency);
                let how = if c.seen_by.is_empty() {
                    "chat read"
                } else {
                    c.seen_by
                };
                (
                    Outcome::Delivered,
                    Some(Input::Received),
                    format!(
                        "ring {ring_name}: canary from {sender} received after {:.1}s ({how})",
                        latency.as_secs_f64()
                    ),
                )
            }
            Judgement::Missing => {
                self.rings[r].latest[j] = Some((now, true));
                self.metrics.ring_inbound_failure(&provider, name);
                let outage = self.inbound_outage_of(p, now);
                let deadline = self.rings[r].cfg.deadline.as_secs();
                match ring::blame(judgement, outage) {
                    Blame::Provider => {
                        if !self.providers[p].inbound_outage {
                            tracing::warn!(
                                %provider,
                                "several ring members of this provider miss their ring canaries: \
                                 the provider's inbound side is down; no restarts"
                            );
                        }
                        self.providers[p].inbound_outage = true;
                        (
                            Outcome::InboundMissing,
                            None,
                            format!(
                                "ring {ring_name}: canary from {sender} not received within \
                                 {deadline}s; several members of {provider} miss theirs: the \
                                 provider's problem, not this session's"
                            ),
                        )
                    }
                    _ => (
                        Outcome::InboundMissing,
                        Some(Input::Probe(Outcome::InboundMissing)),
                        format!(
                            "ring {ring_name}: canary from {sender} (confirmed sent) not received \
                             within {deadline}s"
                        ),
                    ),
                }
            }
            Judgement::SenderFailed | Judgement::Inconclusive | Judgement::Wait => {
                tracing::debug!(
                    ring = %ring_name, %sender, receiver = name, fate = judgement.as_str(),
                    "ring canary not judged against the receiver"
                );
                return;
            }
        };
        if judgement != Judgement::Missing {
            // A received canary may end the provider's inbound outage.
            let still = self.inbound_outage_of(p, now);
            if self.providers[p].inbound_outage && !still {
                tracing::info!(%provider, "ring canaries reach this provider again");
                self.providers[p].inbound_outage = false;
            }
        }
        let latency = c.flight.seen_at.unwrap_or(now).since(c.flight.sent_at);
        self.record_ring(p, name, outcome, detail, c.flight.sent_at, latency)
            .await;
        match input {
            Some(input) => {
                self.apply_input(p, name, input, now).await;
            }
            None => {
                // The outage changes the guard; the machine sees it next time.
                self.update_outage_now(p, now);
            }
        }
    }

    /// Whether the ring members of provider `p` miss their canaries together
    /// (`crate::ring::provider_inbound_outage` over their recent verdicts).
    fn inbound_outage_of(&self, p: usize, now: Timestamp) -> bool {
        let provider = &self.providers[p].cfg.name;
        let mut latest = Vec::new();
        for rt in &self.rings {
            let window = rt.cfg.interval.saturating_mul(2) + rt.cfg.deadline;
            for (i, m) in rt.cfg.members.iter().enumerate() {
                if &m.provider != provider {
                    continue;
                }
                latest.push(
                    rt.latest[i]
                        .filter(|(at, _)| now.since(*at) <= window)
                        .map(|(_, missing)| missing),
                );
            }
        }
        ring::provider_inbound_outage(&latest)
    }

    async fn record_ring(
        &mut self,
        p: usize,
        name: &str,
        outcome: Outcome,
        detail: String,
        at: Timestamp,
        latency: Duration,
    ) {
        let provider = self.providers[p].cfg.name.clone();
        let rec = ProbeRecord {
            provider: provider.clone(),
            session: name.to_string(),
            at,
            kind: Action::Ring.as_str().to_string(),
            outcome: outcome.to_stored(),
            http_status: None,
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            detail: detail.clone(),
        };
        if let Err(e) = self.writer.submit(crate::store::Write::Probe(rec)) {
            tracing::error!(%provider, session = name, error = %e, "cannot record ring canary");
        }
        tracing::info!(%provider, session = name, outcome = %outcome, %detail, "ring canary");
        let _ = self.events.send(Event::Probe {
            at,
            provider,
            session: name.to_string(),
            action: Action::Ring,
            outcome,
            detail,
            latency,
        });
    }

    /// After an input to a ring member: while it is suspected of not
    /// receiving, or verifies a restart made for that, its sender is asked
    /// for the next ring canary early.
    pub(super) fn ring_after_input(&mut self, p: usize, name: &str) {
        let Some((r, i)) = self.ring_member(p, name) else {
            return;
        };
        let Some(s) = self.providers[p].sessions.get(name) else {
            return;
        };
        if !s.machine.streak_has_inbound {
            return;
        }
        let now = self.clock.now();
        let policy = &self.providers[p].cfg.policy;
        let at = match s.machine.persisted.state {
            State::Suspect => now.plus(policy.confirm_interval),
            State::Recovering => now.plus(policy.restart_poll_interval),
            _ => return,
        };
        let prev = self.rings[r].cfg.prev_of(i).clone();
        let Some(q) = self.slot_of(&prev.provider) else {
            return;
        };
        self.move_probe_earlier(q, &prev.session, at);
    }

    /// Moves a session's next periodic probe to `at` if it is later.
    fn move_probe_earlier(&mut self, p: usize, name: &str, at: Timestamp) {
        let Some(s) = self.providers[p].sessions.get(name) else {
            return;
        };
        let movable = !s.in_flight
            && s.pending_ack.is_none()
            && s.next
                .is_some_and(|st| st.action == Action::Probe && st.at > at);
        if movable {
            self.schedule(
                p,
                name,
                Some(Step {
                    at,
                    action: Action::Probe,
                }),
            );
        }
    }

    /// A member's own number was read (or not).
    pub(super) fn ring_number(&mut self, r: usize, member: usize, result: Result<String, String>) {
        let now = self.clock.now();
        let Some(rt) = self.rings.get_mut(r) else {
            return;
        };
        if member >= rt.numbers.len() {
            return;
        }
        rt.number_in_flight[member] = false;
        match result {
            Ok(n) => rt.numbers[member] = Some(n),
            Err(detail) => {
                rt.number_retry[member] = now.plus(NUMBER_RETRY);
                tracing::debug!(ring = %rt.cfg.name, member = %rt.cfg.members[member], %detail,
                    "cannot read the member's own number yet");
            }
        }
    }

    /// A read of a receiver's chat answered.
    pub(super) fn ring_looked(
        &mut self,
        r: usize,
        receiver: usize,
        nonce: &str,
        result: Result<bool, String>,
    ) {
        let now = self.clock.now();
        let Some(rt) = self.rings.get_mut(r) else {
            return;
        };
        let Some(list) = rt.inbound.get_mut(receiver) else {
            return;
        };
        let Some(c) = list.iter_mut().find(|c| c.nonce == nonce) else {
            return;
        };
        c.look_in_flight = false;
        c.next_look = now.plus(look_every(rt.cfg.deadline));
        match result {
            Ok(seen) => {
                c.flight.unread = false;
                if seen && c.flight.seen_at.is_none() {
                    c.flight.seen_at = Some(now);
                    c.seen_by = "chat read";
                }
            }
            Err(detail) => {
                // Not seen proves nothing until a read succeeds again.
                c.flight.unread = true;
                tracing::debug!(ring = %rt.cfg.name, %detail, "reading the receiver's chat failed")
            }
        }
    }

    /// A ring job panicked: its flags are cleared so it is tried again.
    pub(super) fn ring_job_lost(&mut self, owner: &Owner) {
        if let Owner::Ring { ring, member } = owner
            && let Some(rt) = self.rings.get_mut(*ring)
            && *member < rt.numbers.len()
        {
            rt.number_in_flight[*member] = false;
            for c in &mut rt.inbound[*member] {
                c.look_in_flight = false;
            }
        }
    }
}
