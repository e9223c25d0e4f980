//! The delivery confirmation verdict: whether a canary the provider only
//! queued has been delivered, has failed, or needs another look. Pure and
//! provider-agnostic: the scheduler parks the [`Pending`] canary, a job
//! gathers [`Evidence`] (today the Green-API send queue, `showMessagesQueue`),
//! and [`verdict`] decides; the scheduler only carries the verdict out
//! (records the probe and feeds the outcome to the machine, or schedules the
//! next look).
//!
//! Owns: the rules "left the queue = delivered", "still queued at the
//! deadline = stuck", "could not look at the deadline = that failure", and
//! the spacing of the looks.
//! Must not: do I/O, read a clock, know a provider's JSON.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::outcome::{Outcome, ProbeReport};

/// How often a queued canary is looked at until its deadline.
pub const POLL: Duration = Duration::from_secs(2);

/// A canary the provider accepted but has not proven delivered yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The provider's id of the sent message (Green-API `idMessage`).
    pub message_id: String,
    /// When the canary was sent.
    pub sent_at: Timestamp,
    /// Not proven delivered by then = failed (`sent_at` + `ack_timeout`).
    pub deadline: Timestamp,
    /// The HTTP status of the send that queued it.
    pub http_status: Option<u16>,
}

impl Pending {
    /// A canary sent at `sent_at` with `ack_timeout` to prove delivery.
    pub fn new(
        message_id: String,
        sent_at: Timestamp,
        ack_timeout: Duration,
        http_status: Option<u16>,
    ) -> Pending {
        Pending {
            message_id,
            sent_at,
            deadline: sent_at.plus(ack_timeout),
            http_status,
        }
    }

    /// The first look, one [`POLL`] after sending (never after the deadline).
    pub fn first_look(&self) -> Timestamp {
        self.sent_at.plus(POLL).min(self.deadline)
    }
}

/// What one look at the provider found.
#[derive(Clone, Debug, PartialEq)]
pub enum Evidence {
    /// The provider's send queue was read (Green-API `showMessagesQueue`).
    QueueRead { still_queued: bool },
    /// The look itself failed (unreachable, timeout, an unexpected answer).
    LookupFailed(ProbeReport),
}

/// What to do with a pending canary after one look.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Proven delivered.
    Delivered { detail: String },
    /// Not delivered by the deadline; the outcome says why.
    Failed {
        outcome: Outcome,
        http_status: Option<u16>,
        detail: String,
    },
    /// Not decided yet: look again at this instant.
    LookAgainAt(Timestamp),
}

impl Verdict {
    /// The probe result to record and feed to the machine; `None` while
    /// undecided.
    pub fn report(&self, pending: &Pending) -> Option<ProbeReport> {
        let (outcome, http_status, detail) = match self {
            Verdict::Delivered { detail } => (Outcome::Delivered, pending.http_status, detail),
            Verdict::Failed {
                outcome,
                http_status,
                detail,
            } => (*outcome, *http_status, detail),
            Verdict::LookAgainAt(_) => return None,
        };
        Some(ProbeReport {
            outcome,
            http_status,
            detail: detail.clone(),
            sent: true,
            pending_ack: None,
        })
    }
}

/// Decides on a pending canary from one look taken at `now`.
pub fn verdict(pending: &Pending, evidence: Evidence, now: Timestamp) -> Verdict {
    let waited = now.since(pending.sent_at).as_secs();
    let at_deadline = now >= pending.deadline;
    match evidence {
        Evidence::QueueRead {
            still_queued: false,
        } => Verdict::Delivered {
            detail: format!(
                "message {} left the queue within {waited}s",
                pending.message_id
            ),
        },
        Evidence::QueueRead { still_queued: true } if at_deadline => Verdict::Failed {
            outcome: Outcome::Stuck,
            http_status: pending.http_status,
            detail: format!(
                "message {} still queued {waited}s after sending (ack_timeout)",
                pending.message_id
            ),
        },
        Evidence::LookupFailed(report) if at_deadline => Verdict::Failed {
            outcome: report.outcome,
            http_status: report.http_status,
            detail: report.detail,
        },
        // Still queued, or the queue could not be read: look again.
        Evidence::QueueRead { still_queued: true } | Evidence::LookupFailed(_) => {
            Verdict::LookAgainAt(now.plus(POLL).min(pending.deadline).max(now))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp(s * 1000)
    }

    fn pending() -> Pending {
        Pending::new("m1".into(), t(100), Duration::from_secs(30), Some(200))
    }

    fn unreachable() -> ProbeReport {
        ProbeReport::failed(Outcome::Unreachable, None, "connection refused".into())
    }

    #[test]
    fn pending_deadline_and_first_look() {
        let p = pending();
        assert_eq!(p.deadline, t(130));
        assert_eq!(p.first_look(), t(102));
        let short = Pending::new("m".into(), t(100), Duration::from_secs(1), None);
        assert_eq!(short.first_look(), t(101), "never after the deadline");
    }

    #[test]
    fn every_evidence_before_at_and_after_the_deadline() {
        use Evidence::*;
        let queued = || QueueRead { still_queued: true };
        let left = || QueueRead {
            still_queued: false,
        };
        let failed = |o: Outcome, h: Option<u16>, d: &str| Verdict::Failed {
            outcome: o,
            http_status: h,
            detail: d.to_string(),
        };
        let delivered = |d: &str| Verdict::Delivered {
            detail: d.to_string(),
        };
        #[rustfmt::skip]
        let table: Vec<(Evidence, i64, Verdict)> = vec![
            (left(), 102, delivered("message m1 left the queue within 2s")),
            (left(), 130, delivered("message m1 left the queue within 30s")),
            (left(), 140, delivered("message m1 left the queue within 40s")),
            (queued(), 102, Verdict::LookAgainAt(t(104))),
            (queued(), 129, Verdict::LookAgainAt(t(130))),
            (queued(), 130, failed(Outcome::Stuck, Some(200), "message m1 still queued 30s after sending (ack_timeout)")),
            (queued(), 135, failed(Outcome::Stuck, Some(200), "message m1 still queued 35s after sending (ack_timeout)")),
            (LookupFailed(unreachable()), 102, Verdict::LookAgainAt(t(104))),
            (LookupFailed(unreachable()), 129, Verdict::LookAgainAt(t(130))),
            (LookupFailed(unreachable()), 130, failed(Outcome::Unreachable, None, "connection refused")),
        ];
        for (evidence, now, want) in table {
            let got = verdict(&pending(), evidence.clone(), t(now));
            assert_eq!(got, want, "{evidence:?} at {now}");
        }
    }

    #[test]
    fn a_verdict_becomes_the_probe_report() {
        let p = pending();
        let d = verdict(
            &p,
            Evidence::QueueRead {
                still_queued: false,
            },
            t(104),
        );
        let r = d.report(&p).expect("decided");
        assert_eq!(
            (r.outcome, r.http_status, r.sent, r.pending_ack),
            (Outcome::Delivered, Some(200), true, None)
        );
        let s = verdict(&p, Evidence::QueueRead { still_queued: true }, t(130));
        assert_eq!(s.report(&p).map(|r| r.outcome), Some(Outcome::Stuck));
        let f = verdict(&p, Evidence::LookupFailed(unreachable()), t(131));
        let r = f.report(&p).expect("decided");
        assert_eq!((r.outcome, r.http_status), (Outcome::Unreachable, None));
        assert!(r.sent, "the canary itself was sent");
        assert_eq!(Verdict::LookAgainAt(t(1)).report(&p), None);
    }
}
