//! The message journal: `POST getMessage {chatId, idMessage}` with each
//! message's `statusMessage`, what a message becomes when it leaves the queue
//! ([`MessageFate`]), a backlog ahead of the canary, and the 500-entry cap of
//! `showMessagesQueue`.
//!
//! Facts (Green-API docs: getMessage, showMessagesQueue, outgoingMessageStatus;
//! official clients `whatsapp-api-client-python` 0.0.55 and
//! `@green-api/whatsapp-api-client` 0.4.4):
//! * `getMessage` answers the message object at top level (`type`,
//!   `idMessage`, `timestamp`, `typeMessage`, `chatId`, `textMessage`,
//!   `statusMessage`, `sendByApi`); a message can take up to 2 minutes to
//!   appear in the journal. How "not found" is answered is not documented:
//!   [`NotFoundForm`] offers the three plausible forms.
//! * `statusMessage`: `pending` (spelling unconfirmed), `sent` (the most a
//!   message to one's own number reaches), `delivered`, `read`, `failed`
//!   (with a `description`), `noAccount`, `notInGroup`, `yellowCard`.
//! * `showMessagesQueue` lists at most the first 500 queued messages.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use axum::response::Response;

use super::bodies::{error_reply, json_reply, text_reply};
use super::faults::Canned;
use super::state::{Inst, MessageStatus, QueueMode, SimMessage};
use crate::clock::Timestamp;

/// The most entries `showMessagesQueue` lists.
pub const QUEUE_LIST_CAP: usize = 500;

/// The `description` of a message that left the queue as `failed`.
pub const FAILED_DESCRIPTION: &str =
    "An error occurred while sending a message to the WhatsApp server";

/// What a queued message becomes when it leaves the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageFate {
    /// `sent` (own chat) or `delivered` (any other chat).
    #[default]
    Sent,
    /// `failed` with a description. A reboot clears it.
    LeavesFailed,
    /// `noAccount`: the target chat has no WhatsApp account. Sticky.
    NoAccount,
}

/// How `getMessage` answers an id that is not (yet) in the journal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotFoundForm {
    /// 404 `Not Found`.
    #[default]
    NotFound404,
    /// 200 with an empty body.
    EmptyBody,
    /// 200 `{}`.
    EmptyObject,
}

/// The `statusMessage` of a message at `now` (`None`: not in the journal).
pub(super) fn status_message(
    m: &SimMessage,
    wid: &str,
    now: Timestamp,
    lag: std::time::Duration,
) -> Option<&'static str> {
    if now < m.queued_at.plus(lag) {
        return None;
    }
    Some(match m.status {
        MessageStatus::Queued => "pending",
        MessageStatus::Sent if m.chat_id == wid => "sent",
        MessageStatus::Sent => "delivered",
        MessageStatus::Failed => "failed",
        MessageStatus::NoAccount => "noAccount",
        MessageStatus::Dropped => "yellowCard",
        MessageStatus::Cleared => return None,
    })
}

/// `POST getMessage`.
pub(super) fn get_message(
    inst: &Inst,
    now: Timestamp,
    lag: std::time::Duration,
    body: &[u8],
) -> Response {
    let form = inst.error_form;
    let fields: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => o,
        _ => return error_reply(form, 400, Canned::BadRequestData.text()),
    };
    let (Some(Value::String(chat)), Some(Value::String(id))) =
        (fields.get("chatId"), fields.get("idMessage"))
    else {
        return error_reply(form, 400, "'chatId' and 'idMessage' are required");
    };
    let found = inst
        .messages
        .iter()
        .find(|m| m.id_message == *id && m.chat_id == *chat)
        .and_then(|m| status_message(m, &inst.wid, now, lag).map(|st| (m, st)));
    let Some((m, status)) = found else {
        return match inst.not_found_form {
            NotFoundForm::NotFound404 => text_reply(404, "Not Found"),
            NotFoundForm::EmptyBody => text_reply(200, ""),
            NotFoundForm::EmptyObject => json_reply(200, &json!({})),
        };
    };
    let mut reply = json!({
        "type": "outgoing",
        "idMessage": m.id_message,
        "timestamp": m.queued_at.as_millis().div_euclid(1000),
        "typeMessage": "textMessage",
        "chatId": m.chat_id,
        "textMessage": m.text,
        "statusMessage": status,
        "sendByApi": true,
    });
    if status == "failed"
        && let Some(o) = reply.as_object_mut()
    {
        o.insert("description".into(), json!(FAILED_DESCRIPTION));
    }
    json_reply(200, &reply)
}

/// The status a message leaving the queue gets under `fate`.
pub(super) fn leave_status(fate: MessageFate) -> MessageStatus {
    match fate {
        MessageFate::Sent => MessageStatus::Sent,
        MessageFate::LeavesFailed => MessageStatus::Failed,
        MessageFate::NoAccount => MessageStatus::NoAccount,
    }
}

/// Queues `count` messages to another chat ahead of whatever comes next and
/// stalls the queue until the next reboot (a backlog the vendor's advice is
/// to reboot away: Green-API tracker issues 42 and 227).
pub(super) fn add_backlog(inst: &mut Inst, count: usize, now: Timestamp) {
    for n in 0..count {
        let id = format!("BACKLOG{n:013}");
        inst.messages.push(SimMessage {
            id_message: id,
            chat_id: "79990000000@c.us".to_owned(),
            text: format!("backlog {n}"),
            status: MessageStatus::Queued,
            queued_at: now,
            done_at: None,
        });
    }
    inst.queue_mode = QueueMode::StuckUntilReboot;
}
