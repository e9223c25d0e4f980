//! The 201 body of `sendText`: each engine returns its own native message
//! object (WAHA docs: Send messages), and chat ids are normalised the way WAHA does it
//! (WAHA docs: chat ids). Pure apart from the random message id.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::state::Engine;
use crate::clock::Timestamp;
use crate::sim::json_response;

/// `chatId` without a server part gets `@c.us` (WAHA's `ensureSuffix`).
fn ensure_suffix(chat: &str) -> String {
    if chat.contains('@') {
        chat.to_owned()
    } else {
        format!("{chat}@c.us")
    }
}

/// WAHA's canonical user id form (`…@c.us`).
fn to_c_us(chat: &str) -> String {
    match chat.strip_suffix("@s.whatsapp.net") {
        Some(n) => format!("{n}@c.us"),
        None => chat.to_owned(),
    }
}

/// The whatsmeow/Baileys JID form (`…@s.whatsapp.net`); groups, lids,
/// broadcasts and newsletters pass through.
fn to_jid(chat: &str) -> String {
    match chat.strip_suffix("@c.us") {
        Some(n) => format!("{n}@s.whatsapp.net"),
        None => chat.to_owned(),
    }
}

/// A WhatsApp-style message id: `3EB0` + 18 upper-case hex digits.
fn new_message_id() -> String {
    let bytes: [u8; 9] = rand::random();
    let mut id = String::from("3EB0");
    for b in bytes {
        id.push_str(&format!("{b:02X}"));
    }
    id
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GowsInfo {
    chat: String,
    sender: String,
    is_from_me: bool,
    is_group: bool,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Type")]
    kind: &'static str,
    push_name: String,
    timestamp: String,
}

#[derive(Serialize)]
struct GowsProto<'a> {
    conversation: &'a str,
}

#[derive(Serialize)]
struct GowsData<'a> {
    #[serde(rename = "Info")]
    info: GowsInfo,
    #[serde(rename = "Message")]
    message: GowsProto<'a>,
}

#[derive(Serialize)]
struct GowsMessage<'a> {
    id: String,
    #[serde(rename = "_data")]
    data: GowsData<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NowebKey {
    remote_jid: String,
    from_me: bool,
    id: String,
}

#[derive(Serialize)]
struct NowebText<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NowebProto<'a> {
    extended_text_message: NowebText<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NowebMessage<'a> {
    key: NowebKey,
    message: NowebProto<'a>,
    message_timestamp: String,
    status: &'static str,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct WebjsId {
    from_me: bool,
    remote: String,
    id: String,
    #[serde(rename = "_serialized")]
    serialized: String,
}

#[derive(Serialize)]
struct WebjsData<'a> {
    id: WebjsId,
    body: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    t: i64,
    from: &'a str,
    to: &'a str,
    ack: i8,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebjsMessage<'a> {
    id: WebjsId,
    ack: i8,
    has_media: bool,
    body: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: i64,
    from: &'a str,
    to: &'a str,
    device_type: &'static str,
    is_forwarded: bool,
    from_me: bool,
    #[serde(rename = "_data")]
    data: WebjsData<'a>,
}

/// What a successful send needs.
pub struct Sent<'a> {
    pub engine: Engine,
    pub session: &'a str,
    pub me_id: &'a str,
    pub chat_id: &'a str,
    pub text: &'a str,
    pub now: Timestamp,
    /// The message's ack at send time (WEBJS and NOWEB replies show it).
    pub ack: i8,
}

/// The chat id in WAHA's canonical form, as the read-back compares it.
pub fn canonical_chat(chat: &str) -> String {
    to_c_us(&ensure_suffix(chat))
}

/// The 201 body of `sendText` in the engine's native shape (WAHA docs: Send messages),
/// the serialized message id it carries, and the canonical chat.
pub fn sent(s: &Sent<'_>) -> (Response, String, String) {
    let chat = to_c_us(&ensure_suffix(s.chat_id));
    let msg_id = new_message_id();
    let secs = s.now.as_millis().div_euclid(1000);
    let group_like = chat.ends_with("@g.us") || chat.ends_with("@broadcast");
    let mut serialized = format!("true_{chat}_{msg_id}");
    if group_like {
        // Group and broadcast ids carry the sender as a 4th part.
        serialized.push('_');
        serialized.push_str(s.me_id);
    }
    let resp = match s.engine {
        Engine::Gows => json_response(
            StatusCode::CREATED,
            &GowsMessage {
                id: serialized.clone(),
                data: GowsData {
                    info: GowsInfo {
                        chat: to_jid(&chat),
                        sender: to_jid(s.me_id),
                        is_from_me: true,
                        is_group: chat.ends_with("@g.us"),
                        id: msg_id,
                        kind: "text",
                        push_name: s.session.to_owned(),
                        timestamp: s.now.to_rfc3339(),
                    },
                    message: GowsProto {
                        conversation: s.text,
                    },
                },
            },
        ),
        Engine::Noweb => json_response(
            StatusCode::CREATED,
            &NowebMessage {
                key: NowebKey {
                    remote_jid: to_jid(&chat),
                    from_me: true,
                    id: msg_id,
                },
                message: NowebProto {
                    extended_text_message: NowebText { text: s.text },
                },
                message_timestamp: secs.to_string(),
                status: super::acks::noweb_status(s.ack),
            },
        ),
        Engine::Webjs => {
            let id = WebjsId {
                from_me: true,
                remote: chat.clone(),
                id: msg_id,
                serialized: serialized.clone(),
            };
            json_response(
                StatusCode::CREATED,
                &WebjsMessage {
                    id: id.clone(),
                    ack: s.ack,
                    has_media: false,
                    body: s.text,
                    kind: "chat",
                    timestamp: secs,
                    from: s.me_id,
                    to: &chat,
                    device_type: "web",
                    is_forwarded: false,
                    from_me: true,
                    data: WebjsData {
                        id,
                        body: s.text,
                        kind: "chat",
                        t: secs,
                        from: s.me_id,
                        to: &chat,
                        ack: s.ack,
                    },
                },
            )
        }
    };
    (resp, serialized, chat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_ids_are_normalised_like_waha() {
        assert_eq!(ensure_suffix("123"), "123@c.us");
        assert_eq!(to_c_us("123@s.whatsapp.net"), "123@c.us");
        assert_eq!(to_jid("123@c.us"), "123@s.whatsapp.net");
        assert_eq!(to_jid("1-2@g.us"), "1-2@g.us");
        let id = new_message_id();
        assert_eq!(id.len(), 22);
        assert!(id.starts_with("3EB0"));
        assert!(
            id.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }
}
