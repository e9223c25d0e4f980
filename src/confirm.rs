//! The delivery confirmation verdict: whether a sent canary is proven to be
//! on WhatsApp, has failed, or needs another look. Pure and
//! provider-agnostic: the scheduler parks the [`Pending`] canary, a job (or a
//! webhook) brings [`Evidence`] about its message id, and [`verdict`]
//! decides; the scheduler only carries the verdict out (records the probe and
//! feeds the outcome to the machine, or schedules the next look).
//!
//! The table (every row is a unit test below):
//!
//! | evidence | before the deadline | at / after the deadline |
//! |---|---|---|
//! | WAHA ack ≥ 1 (`SERVER`, `DEVICE`, `READ`, `PLAYED`) | `delivered` | `delivered` |
//! | WAHA ack -1 (`ERROR`) | `ack_error` | `ack_error` |
//! | WAHA ack 0 (`PENDING`) or unknown | look again | `stuck` |
//! | Green-API `sent` / `delivered` / `read` | `delivered` | `delivered` |
//! | Green-API `failed` (`fail` in 2021 docs) | `ack_error` | `ack_error` |
//! | Green-API `noAccount` / `notInGroup` | `bad_canary_chat` | `bad_canary_chat` |
//! | Green-API `yellowCard` | `blocked(yellow_card)` | same |
//! | Green-API `pending` or unknown | look again | `stuck` |
//! | message not found (yet) | look again | `stuck` |
//! | the engine cannot look messages up | `unconfirmed` | `unconfirmed` |
//! | an unreadable answer | look again | `unconfirmed` |
//! | the session stopped being ready (not ready, needs pairing, gone, blocked) | that outcome | that outcome |
//! | the look itself failed otherwise | look again | that failure |
//!
//! Facts: WAHA OpenAPI 2026.7.2 `WAMessage.ack` (-1 ERROR, 0 PENDING,
//! 1 SERVER, 2 DEVICE, 3 READ, 4 PLAYED; SERVER is proof enough for a
//! self-chat canary); Green-API docs (getMessage / outgoingMessageStatus:
//! `sent` is the most a message to one's own number reaches; `noAccount` and
//! `notInGroup` are failures of the target, not of the instance).
//!
//! Owns: the rules above and the spacing of the looks.
//! Must not: do I/O, read a clock, know a provider's JSON.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::outcome::{BlockKind, Outcome, ProbeReport};

/// How often a pending canary is looked at until its deadline.
pub const POLL: Duration = Duration::from_secs(2);

/// A canary the provider accepted but has not proven delivered yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The provider's id of the sent message (WAHA serialized id,
    /// Green-API `idMessage`).
    pub message_id: String,
    /// When the canary was sent.
    pub sent_at: Timestamp,
    /// Not proven delivered by then = failed (`sent_at` + `ack_timeout`).
    pub deadline: Timestamp,
    /// The HTTP status of the send that accepted it.
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

/// Where a piece of evidence came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The send reply itself (a WAHA reply that already carries `ack`).
    SendReply,
    /// WAHA `GET /api/{session}/chats/{chat}/messages/{id}`.
    ReadBack,
    /// Green-API `getMessage`.
    Journal,
    /// A provider webhook (WAHA `message.ack`, Green-API `outgoingMessageStatus`).
    Webhook,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::SendReply => "send reply",
            Source::ReadBack => "read-back",
            Source::Journal => "getMessage",
            Source::Webhook => "webhook",
        }
    }
}

/// What one look at (or one report about) the sent message found.
#[derive(Clone, Debug, PartialEq)]
pub enum Evidence {
    /// A WAHA ack level.
    WahaAck {
        ack: i64,
        ack_name: Option<String>,
        source: Source,
    },
    /// A Green-API delivery status (`statusMessage` / webhook `status`).
    GreenStatus {
        status: String,
        description: Option<String>,
        source: Source,
    },
    /// The provider does not know the message (yet): Green-API's journal
    /// lags up to 2 minutes.
    NotFound { detail: String },
    /// The engine cannot answer the lookup at all (WAHA 501, or no route).
    Unsupported { detail: String },
    /// An answer that says nothing about the message.
    Unreadable { detail: String },
    /// The look itself failed (unreachable, timeout, auth, session gone …).
    LookupFailed(ProbeReport),
}

/// How a delivered canary was confirmed, for the probe record and the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmation {
    pub source: Source,
    /// `SERVER`, `DEVICE`, `sent`, `delivered`, …
    pub level: String,
    /// From the send to the evidence.
    pub latency: Duration,
}

/// What to do with a pending canary after one piece of evidence.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Proven delivered.
    Delivered {
        detail: String,
        confirmation: Confirmation,
    },
    /// Not delivered (or not provable); the outcome says why.
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
            Verdict::Delivered { detail, .. } => (Outcome::Delivered, pending.http_status, detail),
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

    /// The confirmation of a delivered canary.
    pub fn confirmation(&self) -> Option<&Confirmation> {
        match self {
            Verdict::Delivered { confirmation, .. } => Some(confirmation),
            _ => None,
        }
    }
}

/// The WAHA `ackName` of an ack level, for details.
fn ack_label(ack: i64, name: Option<&str>) -> String {
    let known = match ack {
        -1 => "ERROR",
        0 => "PENDING",
        1 => "SERVER",
        2 => "DEVICE",
        3 => "READ",
        4 => "PLAYED",
        _ => "",
    };
    match name.filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None if !known.is_empty() => known.to_string(),
        None => format!("ack {ack}"),
    }
}

/// What a Green-API status means for a canary.
enum GreenMeaning {
    Delivered,
    Failed,
    WrongChat,
    YellowCard,
    NotYet,
}

fn green_meaning(status: &str) -> GreenMeaning {
    match status.to_ascii_lowercase().as_str() {
        "sent" | "delivered" | "read" => GreenMeaning::Delivered,
        "failed" | "fail" => GreenMeaning::Failed,
        "noaccount" | "notingroup" => GreenMeaning::WrongChat,
        "yellowcard" => GreenMeaning::YellowCard,
        _ => GreenMeaning::NotYet,
    }
}

/// Outcomes of a look that describe the session itself rather than the
/// path to it: they decide at once.
fn says_session_state(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::NotReady(_)
            | Outcome::NeedsPairing
            | Outcome::SessionMissing
            | Outcome::Blocked(_)
    )
}

/// Decides on a pending canary from one piece of evidence taken at `now`.
pub fn verdict(pending: &Pending, evidence: Evidence, now: Timestamp) -> Verdict {
    let latency = now.since(pending.sent_at);
    let waited = latency.as_secs();
    let at_deadline = now >= pending.deadline;
    let id = &pending.message_id;
    let failed = |outcome: Outcome, detail: String| Verdict::Failed {
        outcome,
        http_status: pending.http_status,
        detail,
    };
    let again = || Verdict::LookAgainAt(now.plus(POLL).min(pending.deadline).max(now));
    let delivered = |source: Source, level: String| Verdict::Delivered {
        detail: format!(
            "message {id} confirmed: {level} by {} {waited}s after sending",
            source.as_str()
        ),
        confirmation: Confirmation {
            source,
            level,
            latency,
        },
    };
    match evidence {
        Evidence::WahaAck {
            ack,
            ack_name,
            source,
        } => {
            let label = ack_label(ack, ack_name.as_deref());
            if ack >= 1 {
                delivered(source, label)
            } else if ack == -1 {
                failed(
                    Outcome::AckError,
                    format!(
                        "WhatsApp rejected message {id}: ack -1 ({label}) by {}",
                        source.as_str()
                    ),
                )
            } else if at_deadline {
                failed(
                    Outcome::Stuck,
                    format!("message {id} still {label} {waited}s after sending (ack_timeout)"),
                )
            } else {
                again()
            }
        }
        Evidence::GreenStatus {
            status,
            description,
            source,
        } => {
            let why = description.map(|d| format!(": {d}")).unwrap_or_default();
            match green_meaning(&status) {
                GreenMeaning::Delivered => delivered(source, status),
                GreenMeaning::Failed => failed(
                    Outcome::AckError,
                    format!("message {id} {status} by {}{why}", source.as_str()),
                ),
                GreenMeaning::WrongChat => failed(
                    Outcome::BadCanaryChat,
                    format!(
                        "message {id}: {status}: the canary chat cannot receive it; fix canary chat{why}"
                    ),
                ),
                GreenMeaning::YellowCard => failed(
                    Outcome::Blocked(BlockKind::YellowCard),
                    format!("message {id}: yellowCard: sending is suspended{why}"),
                ),
                GreenMeaning::NotYet if at_deadline => failed(
                    Outcome::Stuck,
                    format!("message {id} still {status} {waited}s after sending (ack_timeout)"),
                ),
                GreenMeaning::NotYet => again(),
            }
        }
        Evidence::NotFound { detail } if at_deadline => failed(
            Outcome::Stuck,
            format!("message {id} not found {waited}s after sending (ack_timeout): {detail}"),
        ),
        Evidence::NotFound { .. } => again(),
        Evidence::Unsupported { detail } => failed(
            Outcome::Unconfirmed,
            format!("message {id} cannot be confirmed: {detail}"),
        ),
        Evidence::Unreadable { detail } if at_deadline => failed(
            Outcome::Unconfirmed,
            format!("message {id} unconfirmed after {waited}s: {detail}"),
        ),
        Evidence::Unreadable { .. } => again(),
        // The session's own status answered the look: the machine must hear
        // it now, not after the deadline.
        Evidence::LookupFailed(report) if at_deadline || says_session_state(report.outcome) => {
            Verdict::Failed {
                outcome: report.outcome,
                http_status: report.http_status,
                detail: report.detail,
            }
        }
        Evidence::LookupFailed(_) => again(),
    }
}

/// Whether a piece of evidence decides at once, whatever the deadline (a
/// webhook is applied only then; undecided evidence waits for the next look).
pub fn decides(pending: &Pending, evidence: &Evidence, now: Timestamp) -> bool {
    !matches!(
        verdict(pending, evidence.clone(), now),
        Verdict::LookAgainAt(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::NotReadyKind;

    fn t(s: i64) -> Timestamp {
        Timestamp(s * 1000)
    }

    fn pending() -> Pending {
        Pending::new("m1".into(), t(100), Duration::from_secs(30), Some(201))
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

    fn waha(ack: i64, name: Option<&str>) -> Evidence {
        Evidence::WahaAck {
            ack,
            ack_name: name.map(str::to_string),
            source: Source::ReadBack,
        }
    }

    fn green(status: &str, description: Option<&str>) -> Evidence {
        Evidence::GreenStatus {
            status: status.to_string(),
            description: description.map(str::to_string),
            source: Source::Journal,
        }
    }

    fn failed_look(o: Outcome) -> Evidence {
        Evidence::LookupFailed(ProbeReport::failed(o, Some(422), "look".into()))
    }

    fn outcome_of(v: &Verdict) -> Option<Outcome> {
        match v {
            Verdict::Delivered { .. } => Some(Outcome::Delivered),
            Verdict::Failed { outcome, .. } => Some(*outcome),
            Verdict::LookAgainAt(_) => None,
        }
    }

    /// Every row of the table in the module comment, before (t 102) and at
    /// (t 130) the deadline. `None` = look again.
    #[test]
    fn every_row_of_the_confirmation_table() {
        use Outcome::*;
        let yellow = Blocked(BlockKind::YellowCard);
        #[rustfmt::skip]
        let rows: Vec<(Evidence, Option<Outcome>, Option<Outcome>)> = vec![
            (waha(1, Some("SERVER")), Some(Delivered), Some(Delivered)),
            (waha(2, None), Some(Delivered), Some(Delivered)),
            (waha(3, Some("READ")), Some(Delivered), Some(Delivered)),
            (waha(4, None), Some(Delivered), Some(Delivered)),
            (waha(7, None), Some(Delivered), Some(Delivered)),
            (waha(-1, Some("ERROR")), Some(AckError), Some(AckError)),
            (waha(0, Some("PENDING")), None, Some(Stuck)),
            (waha(-5, None), None, Some(Stuck)),
            (green("sent", None), Some(Delivered), Some(Delivered)),
            (green("delivered", None), Some(Delivered), Some(Delivered)),
            (green("read", None), Some(Delivered), Some(Delivered)),
            (green("failed", Some("SWE004: x")), Some(AckError), Some(AckError)),
            (green("fail", None), Some(AckError), Some(AckError)),
            (green("noAccount", None), Some(BadCanaryChat), Some(BadCanaryChat)),
            (green("notInGroup", None), Some(BadCanaryChat), Some(BadCanaryChat)),
            (green("yellowCard", None), Some(yellow), Some(yellow)),
            (green("pending", None), None, Some(Stuck)),
            (green("somethingNew", None), None, Some(Stuck)),
            (Evidence::NotFound { detail: "404".into() }, None, Some(Stuck)),
            (Evidence::Unsupported { detail: "501".into() }, Some(Unconfirmed), Some(Unconfirmed)),
            (Evidence::Unreadable { detail: "garbage".into() }, None, Some(Unconfirmed)),
            (Evidence::LookupFailed(unreachable()), None, Some(Unreachable)),
            (failed_look(Timeout), None, Some(Timeout)),
            (failed_look(RateLimited { retry_after: None }), None, Some(RateLimited { retry_after: None })),
            (failed_look(NotReady(NotReadyKind::Starting)), Some(NotReady(NotReadyKind::Starting)), Some(NotReady(NotReadyKind::Starting))),
            (failed_look(NeedsPairing), Some(NeedsPairing), Some(NeedsPairing)),
            (failed_look(SessionMissing), Some(SessionMissing), Some(SessionMissing)),
            (failed_look(yellow), Some(yellow), Some(yellow)),
        ];
        for (evidence, before, at) in rows {
            let early = verdict(&pending(), evidence.clone(), t(102));
            assert_eq!(
                outcome_of(&early),
                before,
                "{evidence:?} before the deadline"
            );
            if before.is_none() {
                assert_eq!(early, Verdict::LookAgainAt(t(104)), "{evidence:?}");
                assert!(!decides(&pending(), &evidence, t(102)));
            }
            let late = verdict(&pending(), evidence.clone(), t(130));
            assert_eq!(outcome_of(&late), at, "{evidence:?} at the deadline");
            assert!(decides(&pending(), &evidence, t(130)));
        }
        // The last look is never after the deadline.
        assert_eq!(
            verdict(&pending(), waha(0, None), t(129)),
            Verdict::LookAgainAt(t(130))
        );
    }

    #[test]
    fn details_name_the_evidence_and_the_level() {
        let v = verdict(&pending(), waha(1, Some("SERVER")), t(103));
        let Verdict::Delivered {
            detail,
            confirmation,
        } = &v
        else {
            panic!("{v:?}")
        };
        assert_eq!(
            detail,
            "message m1 confirmed: SERVER by read-back 3s after sending"
        );
        assert_eq!(
            confirmation,
            &Confirmation {
                source: Source::ReadBack,
                level: "SERVER".into(),
                latency: Duration::from_secs(3)
            }
        );
        let v = verdict(&pending(), waha(-1, None), t(103));
        let Verdict::Failed {
            detail,
            http_status,
            ..
        } = &v
        else {
            panic!("{v:?}")
        };
        assert_eq!(
            detail,
            "WhatsApp rejected message m1: ack -1 (ERROR) by read-back"
        );
        assert_eq!(*http_status, Some(201));
        let v = verdict(&pending(), green("failed", Some("SWE004: boom")), t(103));
        let Verdict::Failed { detail, .. } = &v else {
            panic!("{v:?}")
        };
        assert!(detail.ends_with(": SWE004: boom"), "{detail}");
        let v = verdict(&pending(), waha(0, None), t(140));
        let Verdict::Failed { detail, .. } = &v else {
            panic!("{v:?}")
        };
        assert_eq!(
            detail,
            "message m1 still PENDING 40s after sending (ack_timeout)"
        );
        let v = verdict(&pending(), waha(9, None), t(101));
        assert_eq!(v.confirmation().map(|c| c.level.as_str()), Some("ack 9"));
        let webhook = Evidence::WahaAck {
            ack: 2,
            ack_name: Some("DEVICE".into()),
            source: Source::Webhook,
        };
        let v = verdict(&pending(), webhook, t(101));
        assert_eq!(v.confirmation().map(|c| c.source), Some(Source::Webhook));
    }

    #[test]
    fn a_verdict_becomes_the_probe_report() {
        let p = pending();
        let d = verdict(&p, green("sent", None), t(104));
        let r = d.report(&p).expect("decided");
        assert_eq!(
            (r.outcome, r.http_status, r.sent, r.pending_ack),
            (Outcome::Delivered, Some(201), true, None)
        );
        let f = verdict(&p, Evidence::LookupFailed(unreachable()), t(131));
        let r = f.report(&p).expect("decided");
        assert_eq!((r.outcome, r.http_status), (Outcome::Unreachable, None));
        assert!(r.sent, "the canary itself was sent");
        assert_eq!(Verdict::LookAgainAt(t(1)).report(&p), None);
    }
}
