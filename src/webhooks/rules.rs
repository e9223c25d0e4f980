//! What an authenticated webhook event may do. Pure and table-tested.
//!
//! A webhook is a passive signal, never a trigger: it can conclude a canary
//! the watchdog itself sent (matched by message id), ask for a probe now, or
//! move a session to needs-pairing; it can never start a restart (a restart
//! always needs the watchdog's own failed canaries), so a forged or replayed
//! event cannot restart a session. [`Effect`] has no variant that could.
//!
//! Sources: WAHA session statuses `SCAN_QR_CODE`, `PASSKEY_REQUIRED`,
//! `PASSKEY_CONFIRMATION_REQUIRED` need a person at the phone (WAHA OpenAPI
//! 2026.7.2 `SessionInfo.status`); Green-API `notAuthorized` means the
//! instance must be linked again (Green-API docs "getStateInstance");
//! `{{SWE003}}` means stale authorization keys, remedied by deleting all
//! linked devices on the phone and scanning the QR code again (Green-API
//! docs "Common errors → Errors in the webhooks body").

use super::parse::{Body, Marker};
use crate::confirm::{self, Source};

/// Remedy named in the needs-pairing reason of a `{{SWE003}}` marker.
pub const SWE003_REASON: &str = "Green-API reported {{SWE003}} in an incoming message: the \
     decryption keys are stale; on the phone remove all linked devices, then scan the QR code \
     again";

/// What the scheduler is to do with one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Evidence for the session's pending canary (the same confirmation step
    /// polling feeds).
    Evidence(Evidence),
    /// Probe the session now (a status change is a hint, not a state).
    ProbeNow,
    /// The session needs a person to pair it again.
    NeedsPairing { reason: String },
    /// Count a Green-API marker for the session.
    Marker(Marker),
    /// Nothing to do; the label says why (counted).
    Ignore(&'static str),
}

/// What a provider pushed about a message the watchdog sent: the evidence
/// goes to the one confirmation step ([`confirm::verdict`]), exactly as a
/// polled look would; these rules only decide whether it is about the
/// pending canary and conclusive at all.
#[derive(Clone, Debug, PartialEq)]
pub struct Evidence {
    pub message_id: String,
    pub evidence: confirm::Evidence,
}

/// The effects of `body` for a session whose pending canary (if any) has the
/// message id `pending`.
pub fn decide(body: &Body, pending: Option<&str>) -> Vec<Effect> {
    match body {
        Body::SessionStatus { status } => {
            let mut fx = Vec::new();
            if waha_needs_pairing(status) {
                fx.push(Effect::NeedsPairing {
                    reason: format!(
                        "WAHA webhook session.status {status}: the session must be paired \
                         again at the phone"
                    ),
                });
            }
            fx.push(Effect::ProbeNow);
            fx
        }
        Body::InstanceState { state } => {
            let mut fx = Vec::new();
            if state == "notAuthorized" {
                fx.push(Effect::NeedsPairing {
                    reason: "Green-API webhook stateInstanceChanged notAuthorized: the instance \
                             must be linked again (scan the QR code)"
                        .into(),
                });
            }
            fx.push(Effect::ProbeNow);
            fx
        }
        Body::MessageAck {
            message_id,
            ack,
            ack_name,
        } => {
            if pending != Some(message_id.as_str()) {
                return vec![Effect::Ignore("not_a_pending_canary")];
            }
            // Only SERVER and beyond (>= 1) or ERROR (-1) conclude; PENDING
            // (0) or a value outside WAHA's enum leaves the scheduled look.
            if !(*ack >= 1 || *ack == -1) {
                return vec![Effect::Ignore("ack_pending")];
            }
            vec![Effect::Evidence(Evidence {
                message_id: message_id.clone(),
                evidence: confirm::Evidence::WahaAck {
                    ack: *ack,
                    ack_name: ack_name.clone(),
                    source: Source::Webhook,
                },
            })]
        }
        Body::OutgoingStatus {
            message_id,
            status,
            description,
        } => {
            if pending != Some(message_id.as_str()) {
                return vec![Effect::Ignore("not_a_pending_canary")];
            }
            // Not sent yet (`pending`, or a status this version does not
            // know) concludes nothing: the scheduled look stays.
            if !TERMINAL_STATUSES.contains(&status.as_str()) {
                return vec![Effect::Ignore("status_pending")];
            }
            vec![Effect::Evidence(Evidence {
                message_id: message_id.clone(),
                evidence: confirm::Evidence::GreenStatus {
                    status: status.clone(),
                    description: description.clone(),
                    source: Source::Webhook,
                },
            })]
        }
        Body::Incoming { marker, .. } => match marker {
            Some(Marker::Swe003) => vec![
                Effect::Marker(Marker::Swe003),
                Effect::NeedsPairing {
                    reason: SWE003_REASON.into(),
                },
            ],
            Some(m) => vec![Effect::Marker(*m)],
            None => vec![Effect::Ignore("incoming_message")],
        },
        Body::Message { .. } => vec![Effect::Ignore("incoming_message")],
        Body::Other => vec![Effect::Ignore("unused_type")],
    }
}

/// Green-API delivery statuses that conclude a canary one way or the other
/// (Green-API docs "outgoingMessageStatus": `sent`, `delivered`, `read`,
/// `failed` — `fail` in the 2021 docs —, `noAccount`, `notInGroup`,
/// `yellowCard`); what each means is [`confirm::verdict`]'s table.
const TERMINAL_STATUSES: [&str; 8] = [
    "sent",
    "delivered",
    "read",
    "failed",
    "fail",
    "noAccount",
    "notInGroup",
    "yellowCard",
];

/// Events that never need the scheduler (nothing but counting): the
/// receiver answers them without queueing.
pub fn is_passive(body: &Body) -> bool {
    matches!(
        body,
        Body::Other | Body::Message { .. } | Body::Incoming { marker: None, .. }
    )
}

/// WAHA statuses that need a person at the phone.
pub fn waha_needs_pairing(status: &str) -> bool {
    status == "SCAN_QR_CODE" || status.starts_with("PASSKEY_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: &str, ack: i64, name: Option<&str>) -> Body {
        Body::MessageAck {
            message_id: id.into(),
            ack,
            ack_name: name.map(Into::into),
        }
    }

    fn out(id: &str, status: &str, description: Option<&str>) -> Body {
        Body::OutgoingStatus {
            message_id: id.into(),
            status: status.into(),
            description: description.map(Into::into),
        }
    }

    fn waha_ev(ack: i64, name: Option<&str>) -> Vec<Effect> {
        vec![Effect::Evidence(Evidence {
            message_id: "C1".into(),
            evidence: confirm::Evidence::WahaAck {
                ack,
                ack_name: name.map(Into::into),
                source: Source::Webhook,
            },
        })]
    }

    fn green_ev(status: &str, description: Option<&str>) -> Vec<Effect> {
        vec![Effect::Evidence(Evidence {
            message_id: "C1".into(),
            evidence: confirm::Evidence::GreenStatus {
                status: status.into(),
                description: description.map(Into::into),
                source: Source::Webhook,
            },
        })]
    }

    fn pairing_then_probe(reason_part: &str, fx: &[Effect]) {
        match fx {
            [Effect::NeedsPairing { reason }, Effect::ProbeNow] => {
                assert!(reason.contains(reason_part), "{reason}")
            }
            other => panic!("expected needs pairing then probe, got {other:?}"),
        }
    }

    #[test]
    fn acks_for_the_pending_canary_are_evidence() {
        let cases = [
            (ack("C1", 1, Some("SERVER")), waha_ev(1, Some("SERVER"))),
            (ack("C1", 2, Some("DEVICE")), waha_ev(2, Some("DEVICE"))),
            (ack("C1", 3, None), waha_ev(3, None)),
            (ack("C1", 4, Some("PLAYED")), waha_ev(4, Some("PLAYED"))),
            (ack("C1", -1, Some("ERROR")), waha_ev(-1, Some("ERROR"))),
            (
                ack("C1", 0, Some("PENDING")),
                vec![Effect::Ignore("ack_pending")],
            ),
            (ack("C1", -7, None), vec![Effect::Ignore("ack_pending")]),
            (out("C1", "sent", None), green_ev("sent", None)),
            (out("C1", "delivered", None), green_ev("delivered", None)),
            (out("C1", "read", None), green_ev("read", None)),
            (
                out("C1", "failed", Some("SWE004: group")),
                green_ev("failed", Some("SWE004: group")),
            ),
            (out("C1", "fail", None), green_ev("fail", None)),
            (out("C1", "noAccount", None), green_ev("noAccount", None)),
            (out("C1", "notInGroup", None), green_ev("notInGroup", None)),
            (out("C1", "yellowCard", None), green_ev("yellowCard", None)),
            (
                out("C1", "pending", None),
                vec![Effect::Ignore("status_pending")],
            ),
        ];
        for (body, want) in cases {
            assert_eq!(decide(&body, Some("C1")), want, "{body:?}");
        }
    }

    #[test]
    fn acks_for_other_messages_are_ignored() {
        for body in [
            ack("C2", 1, None),
            out("C2", "sent", None),
            ack("C1", -1, None),
        ] {
            assert_eq!(
                decide(&body, Some("C9")),
                vec![Effect::Ignore("not_a_pending_canary")]
            );
            assert_eq!(
                decide(&body, None),
                vec![Effect::Ignore("not_a_pending_canary")]
            );
        }
    }

    #[test]
    fn status_changes_probe_and_pairing_states_need_pairing_at_once() {
        let status = |s: &str| Body::SessionStatus { status: s.into() };
        for s in [
            "SCAN_QR_CODE",
            "PASSKEY_REQUIRED",
            "PASSKEY_CONFIRMATION_REQUIRED",
        ] {
            pairing_then_probe(s, &decide(&status(s), None));
        }
        for s in ["WORKING", "FAILED", "STOPPED", "STARTING", "whatever"] {
            assert_eq!(decide(&status(s), None), vec![Effect::ProbeNow], "{s}");
        }
        let state = |s: &str| Body::InstanceState { state: s.into() };
        pairing_then_probe("notAuthorized", &decide(&state("notAuthorized"), None));
        for s in [
            "authorized",
            "blocked",
            "sleepMode",
            "starting",
            "yellowCard",
        ] {
            assert_eq!(decide(&state(s), None), vec![Effect::ProbeNow], "{s}");
        }
    }

    #[test]
    fn markers() {
        let incoming = |m| Body::Incoming {
            message_id: "F7".into(),
            marker: m,
            from: None,
            text: None,
        };
        assert_eq!(
            decide(&incoming(Some(Marker::Swe001)), None),
            vec![Effect::Marker(Marker::Swe001)]
        );
        assert_eq!(
            decide(&incoming(Some(Marker::Swe002)), None),
            vec![Effect::Marker(Marker::Swe002)]
        );
        let fx = decide(&incoming(Some(Marker::Swe003)), None);
        assert_eq!(fx[0], Effect::Marker(Marker::Swe003));
        match &fx[1] {
            Effect::NeedsPairing { reason } => {
                assert!(reason.contains("SWE003"));
                assert!(reason.contains("remove all linked devices"));
                assert!(reason.contains("scan the QR code"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fx.len(), 2);
        assert_eq!(
            decide(&incoming(None), None),
            vec![Effect::Ignore("incoming_message")]
        );
    }

    #[test]
    fn nothing_a_webhook_says_restarts_or_heals_a_session_by_itself() {
        // Every body kind, with and without a matching pending canary: the
        // only effects are evidence for our own canary, a probe, pairing,
        // counting and ignoring. There is no restart effect, and a session
        // is never declared healthy from a status event alone.
        let bodies = [
            Body::SessionStatus {
                status: "WORKING".into(),
            },
            Body::SessionStatus {
                status: "FAILED".into(),
            },
            Body::InstanceState {
                state: "authorized".into(),
            },
            Body::InstanceState {
                state: "blocked".into(),
            },
            ack("C1", -1, None),
            out("C1", "failed", None),
            Body::Message {
                message_id: "C1".into(),
                from: None,
                text: None,
            },
            Body::Incoming {
                message_id: "C1".into(),
                marker: Some(Marker::Swe003),
                from: None,
                text: None,
            },
            Body::Other,
        ];
        for body in &bodies {
            for pending in [None, Some("C1")] {
                for fx in decide(body, pending) {
                    match fx {
                        Effect::Evidence(e) => assert_eq!(e.message_id, "C1"),
                        Effect::ProbeNow
                        | Effect::NeedsPairing { .. }
                        | Effect::Marker(_)
                        | Effect::Ignore(_) => {}
                    }
                }
            }
        }
    }
}
