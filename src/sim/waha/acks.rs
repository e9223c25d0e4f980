//! Delivery acks of the messages the simulator accepted, and reading one
//! message back (`GET /api/{session}/chats/{chatId}/messages/{messageId}`).
//!
//! Facts (WAHA OpenAPI 2026.7.2, `WAMessage`): `ack` is -1 `ERROR`,
//! 0 `PENDING`, 1 `SERVER`, 2 `DEVICE`, 3 `READ`, 4 `PLAYED`; the read-back
//! answers 200 with a `WAMessage`; engines that lack the route answer 501
//! (`NotImplementedByEngineError`) or the router's 404. Known "accepted but
//! never delivered" reports (WAHA issues #1721, #552/#559, #789/#792) are
//! what [`AckFault::NeverAcked`] and [`AckFault::Error`] model.
//!
//! Time: an ack is a pure function of the send instant, the plan chosen at
//! send time and `now` (the simulator's clock), so a manual clock moves it.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::bodies::{nest_error, route_not_found};
use crate::clock::Timestamp;
use crate::sim::json_response;

/// Whether the engine serves the message read-back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadBack {
    /// 200 `WAMessage`, 404 for an unknown message.
    #[default]
    Supported,
    /// 501 `NotImplementedByEngineError` for every read-back.
    NotImplemented,
    /// No such route: the router's 404 `Cannot GET /api/...`.
    NoRoute,
}

/// How `presence` is written in a SessionInfo: an object in the 2026 spec,
/// a string or null on older servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceForm {
    #[default]
    Object,
    String,
    Null,
}

/// A session's ack behaviour for messages sent while it is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckFault {
    /// 201 with an id, the ack stays 0 (PENDING) forever (#1721).
    NeverAcked,
    /// 201 (ack 0), then the ack turns -1 (ERROR) once the server would have
    /// acked (at least 1 s after the send).
    Error,
    /// SERVER only this long after the send (a slow but healthy session).
    Slow(Duration),
}

/// What will happen to one accepted message, fixed when it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// 0 until `server`, 1 until `device`, then 2.
    Progress {
        server: Timestamp,
        device: Timestamp,
    },
    /// 0 forever.
    Never,
    /// 0 until `at`, then -1.
    Error { at: Timestamp },
}

impl Plan {
    /// The plan for a message sent at `now`.
    pub(crate) fn new(
        fault: Option<AckFault>,
        now: Timestamp,
        server_after: Duration,
        device_after: Duration,
    ) -> Plan {
        match fault {
            Some(AckFault::NeverAcked) => Plan::Never,
            // The send reply itself still says PENDING.
            Some(AckFault::Error) => Plan::Error {
                at: now.plus(server_after.max(Duration::from_secs(1))),
            },
            Some(AckFault::Slow(d)) => Plan::Progress {
                server: now.plus(d),
                device: now.plus(d.max(device_after)),
            },
            None => Plan::Progress {
                server: now.plus(server_after),
                device: now.plus(server_after.max(device_after)),
            },
        }
    }

    /// The ack at `now`.
    pub(crate) fn ack(self, now: Timestamp) -> i8 {
        match self {
            Plan::Never => 0,
            Plan::Error { at } => {
                if now >= at {
                    -1
                } else {
                    0
                }
            }
            Plan::Progress { server, device } => {
                if now >= device {
                    2
                } else if now >= server {
                    1
                } else {
                    0
                }
            }
        }
    }
}

/// `ackName` of an ack value.
pub fn ack_name(ack: i8) -> &'static str {
    match ack {
        -1 => "ERROR",
        0 => "PENDING",
        1 => "SERVER",
        2 => "DEVICE",
        3 => "READ",
        4 => "PLAYED",
        _ => "UNKNOWN",
    }
}

/// The NOWEB send reply's `status` for an ack (Baileys' names).
pub(crate) fn noweb_status(ack: i8) -> &'static str {
    match ack {
        -1 => "ERROR",
        0 => "PENDING",
        1 => "SERVER_ACK",
        2 => "DELIVERY_ACK",
        _ => "READ",
    }
}

/// One accepted message, as the read-back needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tracked {
    pub session: String,
    /// The chat in WAHA's canonical form (`…@c.us`).
    pub chat: String,
    pub from: String,
    pub body: String,
    pub at: Timestamp,
    pub plan: Plan,
}

/// `WAMessage` as the read-back answers it (field order of the spec).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WaMessage<'a> {
    id: &'a str,
    timestamp: i64,
    from: &'a str,
    from_me: bool,
    source: &'static str,
    to: &'a str,
    participant: Option<&'a str>,
    body: &'a str,
    has_media: bool,
    media: Option<()>,
    ack: i8,
    ack_name: &'static str,
    reply_to: Option<()>,
}

/// 200 with the message's `WAMessage` at `now`.
pub(crate) fn message_reply(id: &str, m: &Tracked, now: Timestamp) -> Response {
    let ack = m.plan.ack(now);
    json_response(
        StatusCode::OK,
        &WaMessage {
            id,
            timestamp: m.at.as_millis().div_euclid(1000),
            from: &m.from,
            from_me: true,
            source: "api",
            to: &m.chat,
            participant: None,
            body: &m.body,
            has_media: false,
            media: None,
            ack,
            ack_name: ack_name(ack),
            reply_to: None,
        },
    )
}

/// 200 with the messages `session` (number `me`) received from `chat`,
/// newest first, at most `limit` (WAHA OpenAPI 2026.7.2: `GET
/// /api/{session}/chats/{chatId}/messages?limit=N&downloadMedia=false`).
pub(crate) fn chat_messages_reply(
    me: &str,
    received: &[crate::sim::network::Inbound],
    limit: usize,
) -> Response {
    let list: Vec<WaMessage<'_>> = received
        .iter()
        .rev()
        .take(limit)
        .map(|m| WaMessage {
            id: &m.id,
            timestamp: m.sent_at.as_millis().div_euclid(1000),
            from: &m.from,
            from_me: false,
            source: "app",
            to: me,
            participant: None,
            body: &m.text,
            has_media: false,
            media: None,
            ack: 2,
            ack_name: ack_name(2),
            reply_to: None,
        })
        .collect();
    json_response(StatusCode::OK, &list)
}

/// 404 for a message id the session never sent.
pub(crate) fn message_not_found() -> Response {
    nest_error(StatusCode::NOT_FOUND, "Message not found")
}

/// What an engine without the read-back answers.
pub(crate) fn unsupported(read_back: ReadBack, method: &str, url: &str) -> Option<Response> {
    match read_back {
        ReadBack::Supported => None,
        ReadBack::NotImplemented => Some(nest_error(
            StatusCode::NOT_IMPLEMENTED,
            "The method is not implemented by the engine",
        )),
        ReadBack::NoRoute => Some(route_not_found(method, url)),
    }
}

/// The `presence` value of a SessionInfo.
/// The object's field name is not in the facts; the simulator writes
/// `{"status": "online"}`. A session that is not WORKING has `null`.
pub(crate) fn presence(form: PresenceForm, working: bool) -> serde_json::Value {
    match form {
        _ if !working => serde_json::Value::Null,
        PresenceForm::Object => serde_json::json!({ "status": "online" }),
        PresenceForm::String => serde_json::Value::String("online".to_owned()),
        PresenceForm::Null => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_000_000);

    fn at(secs: u64) -> Timestamp {
        T0.plus(Duration::from_secs(secs))
    }

    #[test]
    fn acks_progress_on_the_clock() {
        let p = Plan::new(None, T0, Duration::from_secs(2), Duration::from_secs(5));
        assert_eq!(p.ack(T0), 0);
        assert_eq!(p.ack(at(2)), 1);
        assert_eq!(p.ack(at(5)), 2);

        let never = Plan::new(
            Some(AckFault::NeverAcked),
            T0,
            Duration::ZERO,
            Duration::ZERO,
        );
        assert_eq!(never.ack(at(100_000)), 0);

        let err = Plan::new(
            Some(AckFault::Error),
            T0,
            Duration::from_secs(1),
            Duration::ZERO,
        );
        assert_eq!(err.ack(T0), 0);
        assert_eq!(err.ack(at(1)), -1);

        let slow = Plan::new(
            Some(AckFault::Slow(Duration::from_secs(30))),
            T0,
            Duration::ZERO,
            Duration::from_secs(1),
        );
        assert_eq!(slow.ack(at(29)), 0);
        assert_eq!(slow.ack(at(30)), 2);
        assert_eq!(ack_name(-1), "ERROR");
        assert_eq!(ack_name(1), "SERVER");
        assert_eq!(noweb_status(0), "PENDING");
    }
}
