//! Round-trip attribution, pure: who is to blame for a ring canary that was
//! not seen. A ring canary is sent by one member to the next member's own
//! number; it proves the sender's send path (its own confirmation, as for a
//! self-canary) and the receiver's inbound path (the receiver saw the nonce:
//! a webhook, or reading its chat with the sender).
//!
//! The table ([`judge`], then [`blame`]):
//!
//! | sender's own confirmation | receiver saw it | now vs deadline | judgement | blame |
//! |---|---|---|---|---|
//! | any | yes | any | `Received` | nobody; the receiver's inbound is proven |
//! | failed | no | any | `SenderFailed` | the sender (through its own probe), never the receiver |
//! | confirmed / pending | no | before | `Wait` | nobody yet |
//! | confirmed | no, and its chat read | at or after | `Missing` | the receiver: `inbound_missing` |
//! | confirmed | no, its last chat read failed or was not understood | at or after | `Inconclusive` | nobody (nobody could look) |
//! | pending | no | at or after | `Inconclusive` | nobody (the sender never proved it sent) |
//!
//! and a `Missing` is the provider's when, among the ring members of the
//! receiver's provider, at least [`PROVIDER_MIN_MEMBERS`] and at least half
//! have their latest inbound verdict missing ([`provider_inbound_outage`]):
//! then no member is restarted for it and the provider is in outage (the
//! outage rule), like an unreachable provider.
//!
//! Must not: do I/O, read a clock, know vendor JSON.

use std::time::Duration;

use crate::clock::Timestamp;

/// Fewest members of one provider that must miss their canaries together
/// before it is the provider's problem (one member alone is that member's).
pub const PROVIDER_MIN_MEMBERS: usize = 2;

/// What the sender's own confirmation said about the ring canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderVerdict {
    /// Accepted, its confirmation not in yet.
    Pending,
    /// Confirmed the way a self-canary is (WAHA ack >= 1, Green-API sent).
    Confirmed,
    /// The sender's canary failed (stuck, ack error, send failure, ...).
    Failed,
}

/// One ring canary in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub sent_at: Timestamp,
    /// `sent_at + ring.deadline`.
    pub deadline: Timestamp,
    pub sender: SenderVerdict,
    /// When the receiver's side first showed it (None: not yet).
    pub seen_at: Option<Timestamp>,
    /// The last read of the receiver's chat failed or could not be
    /// understood (a 5xx, a timeout, an HTML page, garbage): that it was not
    /// seen proves nothing about the receiver.
    pub unread: bool,
}

/// The fate of one ring canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// The receiver saw it; `latency` from the send.
    Received { latency: Duration },
    /// Not decided yet: look again (or wait for a webhook) until the deadline.
    Wait,
    /// The sender's own confirmation failed: the sender's failure only.
    SenderFailed,
    /// The sender confirmed it, the receiver never saw it by the deadline.
    Missing,
    /// The deadline passed before the sender's own confirmation came in.
    Inconclusive,
}

impl Judgement {
    /// The stored/metric name of the fate.
    pub fn as_str(self) -> &'static str {
        match self {
            Judgement::Received { .. } => "received",
            Judgement::Wait => "waiting",
            Judgement::SenderFailed => "sender_failed",
            Judgement::Missing => "inbound_missing",
            Judgement::Inconclusive => "inconclusive",
        }
    }

    /// Whether the canary's fate is decided.
    pub fn is_final(self) -> bool {
        self != Judgement::Wait
    }
}

/// Judges one ring canary at `now`.
pub fn judge(c: &InFlight, now: Timestamp) -> Judgement {
    if let Some(seen) = c.seen_at {
        return Judgement::Received {
            latency: seen.since(c.sent_at),
        };
    }
    match c.sender {
        SenderVerdict::Failed => Judgement::SenderFailed,
        _ if now < c.deadline => Judgement::Wait,
        SenderVerdict::Confirmed if c.unread => Judgement::Inconclusive,
        SenderVerdict::Confirmed => Judgement::Missing,
        SenderVerdict::Pending => Judgement::Inconclusive,
    }
}

/// Who a final judgement is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// Nothing to hold against anyone (received, inconclusive, or the
    /// sender's own probe already counts its failure).
    Nobody,
    /// The receiver proved it receives.
    ReceiverOk,
    /// The receiver: an `inbound_missing` counting failure.
    Receiver,
    /// The receiver's provider: several of its members miss their canaries
    /// together; no restarts, the provider is in outage.
    Provider,
}

/// Who `judgement` is held against, given whether the receiver's provider
/// is in an inbound outage ([`provider_inbound_outage`], counted with this
/// verdict included).
pub fn blame(judgement: Judgement, provider_outage: bool) -> Blame {
    match judgement {
        Judgement::Received { .. } => Blame::ReceiverOk,
        Judgement::Missing if provider_outage => Blame::Provider,
        Judgement::Missing => Blame::Receiver,
        Judgement::Wait | Judgement::SenderFailed | Judgement::Inconclusive => Blame::Nobody,
    }
}

/// The latest inbound verdict of each ring member of one provider within
/// the recent window: `Some(true)` missing, `Some(false)` received, `None`
/// no verdict. The provider is in an inbound outage when at least
/// [`PROVIDER_MIN_MEMBERS`] and at least half of its ring members miss.
pub fn provider_inbound_outage(latest: &[Option<bool>]) -> bool {
    let missing = latest.iter().filter(|v| **v == Some(true)).count();
    missing >= PROVIDER_MIN_MEMBERS && missing * 2 >= latest.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp(s * 1000)
    }

    fn canary(sender: SenderVerdict, seen: Option<i64>, unread: bool) -> InFlight {
        InFlight {
            sent_at: at(100),
            deadline: at(400),
            sender,
            seen_at: seen.map(at),
            unread,
        }
    }

    #[test]
    fn judge_table() {
        use Judgement::*;
        use SenderVerdict::*;
        let received = |s| Received {
            latency: Duration::from_secs(s),
        };
        // (sender, seen at, last chat read failed, now, judgement)
        let rows: &[(SenderVerdict, Option<i64>, bool, i64, Judgement)] = &[
            // Seen: received, whatever the sender's own confirmation says.
            (Confirmed, Some(103), false, 200, received(3)),
            (Pending, Some(150), false, 500, received(50)),
            (Failed, Some(110), false, 120, received(10)),
            (Confirmed, Some(103), true, 500, received(3)),
            // The sender failed: never the receiver's.
            (Failed, None, false, 120, SenderFailed),
            (Failed, None, false, 900, SenderFailed),
            // Before the deadline: wait.
            (Confirmed, None, false, 399, Wait),
            (Confirmed, None, true, 399, Wait),
            (Pending, None, false, 100, Wait),
            // At or after the deadline.
            (Confirmed, None, false, 400, Missing),
            (Confirmed, None, false, 9000, Missing),
            (Pending, None, false, 400, Inconclusive),
            // The receiver's chat could not be read: nobody can tell.
            (Confirmed, None, true, 400, Inconclusive),
            (Pending, None, true, 400, Inconclusive),
        ];
        for (sender, seen, unread, now, expected) in rows {
            let c = canary(*sender, *seen, *unread);
            assert_eq!(
                judge(&c, at(*now)),
                *expected,
                "{sender:?} {seen:?} unread={unread} at {now}"
            );
            assert_eq!(expected.is_final(), *expected != Wait);
        }
    }

    #[test]
    fn blame_table() {
        let received = Judgement::Received {
            latency: Duration::ZERO,
        };
        let rows = [
            (received, false, Blame::ReceiverOk),
            (received, true, Blame::ReceiverOk),
            (Judgement::Missing, false, Blame::Receiver),
            (Judgement::Missing, true, Blame::Provider),
            (Judgement::SenderFailed, false, Blame::Nobody),
            (Judgement::SenderFailed, true, Blame::Nobody),
            (Judgement::Inconclusive, false, Blame::Nobody),
            (Judgement::Wait, true, Blame::Nobody),
        ];
        for (j, outage, expected) in rows {
            assert_eq!(blame(j, outage), expected, "{j:?} outage={outage}");
        }
    }

    #[test]
    fn provider_outage_needs_two_members_and_half() {
        let m = Some(true);
        let r = Some(false);
        let rows: &[(&[Option<bool>], bool)] = &[
            (&[], false),
            (&[m], false),               // one member alone is that member's problem
            (&[m, r], false),            // one of two
            (&[m, m], true),             // both
            (&[m, r, r], false),         // one of three
            (&[m, m, r], true),          // two of three
            (&[m, m, r, r], true),       // half, and two
            (&[m, m, r, r, r], false),   // two of five: below half
            (&[m, m, None, None], true), // members without a verdict count in the total
            (&[m, None, None], false),
        ];
        for (latest, expected) in rows {
            assert_eq!(provider_inbound_outage(latest), *expected, "{latest:?}");
        }
    }

    #[test]
    fn fate_names_are_stable() {
        assert_eq!(Judgement::Missing.as_str(), "inbound_missing");
        assert_eq!(
            Judgement::Received {
                latency: Duration::ZERO
            }
            .as_str(),
            "received"
        );
        assert_eq!(Judgement::SenderFailed.as_str(), "sender_failed");
        assert_eq!(Judgement::Inconclusive.as_str(), "inconclusive");
    }
}
