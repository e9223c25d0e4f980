//! `sendMessage` (Green-API docs: sendMessage): body validation with the vendor's error
//! texts, the not-ready rule, queueing (or silently dropping) the message,
//! and new message ids. Pure apart from the random message id.

use axum::body::Bytes;
use axum::response::Response;
use serde_json::{Value, json};

use super::bodies::{error_reply, json_reply};
use super::faults::Canned;
use super::state::{Inst, MessageStatus, QueueMode, SendWhenNotReady, SimMessage, SimState};
use crate::clock::Timestamp;

/// The longest `message` sendMessage accepts (Green-API docs: sendMessage).
const MAX_MESSAGE_CHARS: usize = 20_000;

/// Fields sendMessage accepts (Green-API docs: sendMessage).
const SEND_FIELDS: [&str; 7] = [
    "chatId",
    "message",
    "quotedMessageId",
    "linkPreview",
    "typePreview",
    "customPreview",
    "archiveChat",
];

fn valid_chat_id(chat: &str) -> bool {
    if let Some(phone) = chat.strip_suffix("@c.us") {
        !phone.is_empty() && phone.bytes().all(|b| b.is_ascii_digit())
    } else if let Some(group) = chat.strip_suffix("@g.us") {
        !group.is_empty()
    } else {
        false
    }
}

pub(super) fn send_message(inst: &mut Inst, now: Timestamp, body: &Bytes) -> Response {
    let form = inst.error_form;
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            // Node's wording: the offending character and its byte position.
            let text = String::from_utf8_lossy(body);
            let pos = byte_position(&text, e.line(), e.column());
            let token = text[pos.min(text.len())..].chars().next().unwrap_or(' ');
            return error_reply(
                form,
                400,
                &format!("Unexpected token {token} in JSON at position {pos}"),
            );
        }
    };
    let Value::Object(fields) = &parsed else {
        return error_reply(form, 400, Canned::BadRequestData.text());
    };
    if let Some(extra) = fields.keys().find(|k| !SEND_FIELDS.contains(&k.as_str())) {
        return error_reply(form, 400, &format!("'{extra}' is not allowed"));
    }
    let chat = match fields.get("chatId") {
        None => return error_reply(form, 400, "'chatId' is required"),
        Some(Value::String(c)) if valid_chat_id(c) => c.clone(),
        Some(_) => return error_reply(form, 400, Canned::ChatIdFormat.text()),
    };
    let text = match fields.get("message") {
        None => return error_reply(form, 400, "'message' is required"),
        Some(Value::String(m)) if m.is_empty() => {
            return error_reply(form, 400, Canned::FieldEmpty.text());
        }
        Some(Value::String(m)) if m.chars().count() > MAX_MESSAGE_CHARS => {
            return error_reply(form, 400, Canned::MessageTooLong.text());
        }
        Some(Value::String(m)) => m.clone(),
        Some(_) => return error_reply(form, 400, "'message' must be a string"),
    };
    if inst.send_when_not_ready == SendWhenNotReady::Reject {
        match inst.effective(now) {
            SimState::Starting => return error_reply(form, 400, Canned::Starting.text()),
            SimState::NotAuthorized | SimState::Provisioning => {
                return error_reply(form, 400, Canned::NotAuthorized.text());
            }
            _ => {}
        }
    }
    let id = new_message_id();
    let status = match inst.queue_mode {
        QueueMode::SilentDrop => MessageStatus::Dropped,
        QueueMode::Drains | QueueMode::NeverDrains | QueueMode::StuckUntilReboot => {
            MessageStatus::Queued
        }
    };
    inst.messages.push(SimMessage {
        id_message: id.clone(),
        chat_id: chat,
        text,
        status,
        queued_at: now,
        done_at: (status == MessageStatus::Dropped).then_some(now),
    });
    inst.bodies.insert(id.clone(), parsed);
    json_reply(200, &json!({ "idMessage": id }))
}

/// Byte offset of serde_json's 1-based (line, column).
fn byte_position(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return offset + column.saturating_sub(1);
        }
        offset += l.len();
    }
    offset
}

/// 20 uppercase hex digits, like `3EB0C767D097B7C7C030`.
fn new_message_id() -> String {
    let n: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
    format!("{n:020X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_20_uppercase_hex_digits() {
        for _ in 0..50 {
            let id = new_message_id();
            assert_eq!(id.len(), 20, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
            );
        }
    }

    #[test]
    fn invalid_json_positions_name_the_offending_character() {
        assert_eq!(byte_position("{\"a\":}", 1, 6), 5);
        assert_eq!(byte_position("{\n\"a\":}", 2, 5), 6);
    }
}
