//! The simulators' WhatsApp network: a message one simulated session sends
//! to another simulated number arrives in that number's inbox, across the
//! two simulators too (a WAHA session and a Green-API instance that share
//! one [`Network`]). Faults of the receiving side: [`InboundFault::Dead`]
//! drops everything sent to the number (WAHA #1931: WORKING, no incoming
//! events) until the receiving session is restarted; [`InboundFault::Delay`]
//! makes messages visible only after a while.
//!
//! Time is the simulators' clock: a message sent at `t` is visible at
//! `t + delay`. Nothing runs in the background: readers ask for what is
//! visible now, and webhook pushes are pulled with [`Network::take_pushes`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Timestamp;

/// What goes wrong on a number's inbound side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundFault {
    /// Nothing sent to the number arrives (cleared by a restart of the
    /// receiving session).
    Dead,
    /// Messages arrive this much later (clock time); survives restarts.
    Delay(Duration),
}

/// One message as the receiver sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// The sender's message id.
    pub id: String,
    /// The sender's own number (`…@c.us`).
    pub from: String,
    /// The receiver's number.
    pub to: String,
    pub text: String,
    pub sent_at: Timestamp,
    pub visible_at: Timestamp,
}

#[derive(Debug, Default)]
struct NetState {
    inboxes: HashMap<String, Vec<Inbound>>,
    faults: HashMap<String, InboundFault>,
    /// Messages already handed out by `take_pushes`, per receiver.
    pushed: HashMap<String, usize>,
    dropped: usize,
}

/// Shared by the simulators of one test or demo. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Network(Arc<Mutex<NetState>>);

/// `…@s.whatsapp.net` (NOWEB's form) is the same user as `…@c.us`.
pub fn canonical(number: &str) -> String {
    match number.strip_suffix("@s.whatsapp.net") {
        Some(user) => format!("{user}@c.us"),
        None => number.to_string(),
    }
}

impl Network {
    fn lock(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A message from `from` to `to` sent at `now` (not to oneself: a
    /// self-chat never leaves the server).
    pub fn deliver(&self, from: &str, to: &str, text: &str, id: &str, now: Timestamp) {
        let (from, to) = (canonical(from), canonical(to));
        if from == to {
            return;
        }
        let mut st = self.lock();
        let delay = match st.faults.get(&to) {
            Some(InboundFault::Dead) => {
                st.dropped += 1;
                return;
            }
            Some(InboundFault::Delay(d)) => *d,
            None => Duration::ZERO,
        };
        st.inboxes.entry(to.clone()).or_default().push(Inbound {
            id: id.to_string(),
            from,
            to,
            text: text.to_string(),
            sent_at: now,
            visible_at: now.plus(delay),
        });
    }

    /// What `number` has received by `now`, oldest first.
    pub fn inbox(&self, number: &str, now: Timestamp) -> Vec<Inbound> {
        let st = self.lock();
        st.inboxes
            .get(&canonical(number))
            .map(|v| v.iter().filter(|m| m.visible_at <= now).cloned().collect())
            .unwrap_or_default()
    }

    /// Sets (or with `None` clears) a number's inbound fault.
    pub fn set_inbound(&self, number: &str, fault: Option<InboundFault>) {
        let mut st = self.lock();
        match fault {
            Some(f) => st.faults.insert(canonical(number), f),
            None => st.faults.remove(&canonical(number)),
        };
    }

    /// A restart of the session owning `number`: a dead inbound comes back.
    pub fn restarted(&self, number: &str) {
        let mut st = self.lock();
        let key = canonical(number);
        if st.faults.get(&key) == Some(&InboundFault::Dead) {
            st.faults.remove(&key);
        }
    }

    /// The fault of a number, if any.
    pub fn inbound_fault(&self, number: &str) -> Option<InboundFault> {
        self.lock().faults.get(&canonical(number)).copied()
    }

    /// How many messages an `inbound_dead` number swallowed.
    pub fn dropped(&self) -> usize {
        self.lock().dropped
    }

    /// Messages to `number` that became visible by `now` and were not
    /// handed out before: what the receiving provider would push as
    /// webhooks now (WAHA `message`, Green-API `incomingMessageReceived`).
    pub fn take_pushes(&self, number: &str, now: Timestamp) -> Vec<Inbound> {
        let mut st = self.lock();
        let key = canonical(number);
        let all: Vec<Inbound> = st.inboxes.get(&key).cloned().unwrap_or_default();
        let done = st.pushed.get(&key).copied().unwrap_or(0);
        // Inboxes only grow and are in send order; with delays, a later
        // message may become visible first: hand out the visible prefix.
        let ready = all[done.min(all.len())..]
            .iter()
            .take_while(|m| m.visible_at <= now)
            .cloned()
            .collect::<Vec<_>>();
        st.pushed.insert(key, done + ready.len());
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "15550000001@c.us";
    const B: &str = "15550000002@c.us";

    #[test]
    fn delivery_dead_delay_restart_and_pushes() {
        let net = Network::default();
        let t = |s: i64| Timestamp(s * 1000);
        net.deliver(A, "15550000002@s.whatsapp.net", "one", "m1", t(1));
        net.deliver(A, A, "self", "m0", t(1));
        assert_eq!(net.inbox(B, t(1)).len(), 1);
        assert!(net.inbox(A, t(9)).is_empty(), "a self-chat never arrives");
        assert_eq!(net.inbox(B, t(1))[0].from, A);

        net.set_inbound(B, Some(InboundFault::Dead));
        net.deliver(A, B, "two", "m2", t(2));
        assert_eq!((net.inbox(B, t(3)).len(), net.dropped()), (1, 1));
        net.restarted(B);
        net.deliver(A, B, "three", "m3", t(4));
        assert_eq!(net.inbox(B, t(4)).len(), 2);

        net.set_inbound(B, Some(InboundFault::Delay(Duration::from_secs(10))));
        net.restarted(B);
        assert_eq!(
            net.inbound_fault(B),
            Some(InboundFault::Delay(Duration::from_secs(10)))
        );
        net.deliver(A, B, "four", "m4", t(5));
        assert_eq!(net.inbox(B, t(14)).len(), 2);
        assert_eq!(net.inbox(B, t(15)).len(), 3);

        let first: Vec<String> = net.take_pushes(B, t(6)).into_iter().map(|m| m.id).collect();
        assert_eq!(first, ["m1", "m3"]);
        assert!(net.take_pushes(B, t(6)).is_empty());
        assert_eq!(net.take_pushes(B, t(15))[0].id, "m4");
    }
}
