//! Reading delivery evidence out of provider replies: the ack in a WAHA send
//! reply, the serialized message id the WAHA read-back needs, the WAHA
//! message read-back, and Green-API's `getMessage`. Pure: a reply in, one
//! [`Lookup`] out; no I/O, no clock. The verdict on a pending canary is not
//! decided here but in [`crate::confirm`].
//!
//! Facts used (sources named per item):
//! * WAHA OpenAPI 2026.7.2, `WAMessage`: `ack` -1 `ERROR`, 0 `PENDING`,
//!   1 `SERVER`, 2 `DEVICE`, 3 `READ`, 4 `PLAYED`, with `ackName`.
//! * WAHA `GET /api/{session}/chats/{chatId}/messages/{messageId}` answers
//!   200 `WAMessage`; engines without it answer 501
//!   (`NotImplementedByEngineError`) or the router's 404 (NestJS
//!   `Cannot GET /api/...`), which differs from a 404 about the message.
//! * WAHA send replies keep each engine's native shape: GOWS `id` (the
//!   serialized `true_<chat>_<ID>`), WEBJS `id._serialized` (and `ack`),
//!   NOWEB `key {remoteJid, fromMe, id}` (and `status` in Baileys' names).
//! * Green-API docs, getMessage: the message object at top level (the npm
//!   client's typings wrap it as `{message: …}`; both accepted) with
//!   `statusMessage`; "not found" is not documented (an empty body, `{}` or
//!   a 404 are all read as "not in the journal yet").

use serde_json::Value;

use super::http::{self, Reply};

/// What one look at a sent message found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A WAHA ack level (read back, in the send reply, or from a webhook).
    WahaAck { ack: i64, ack_name: Option<String> },
    /// A Green-API `statusMessage` (getMessage, or a webhook's `status`).
    GreenStatus {
        status: String,
        description: Option<String>,
    },
    /// The provider does not know the message (yet).
    NotFound { detail: String },
    /// The engine cannot answer the lookup at all (no route, 501).
    Unsupported { detail: String },
    /// An answer that says nothing about the message (garbage, truncated,
    /// wrong shape).
    Unreadable { detail: String },
    /// Not a delivery answer: classify it with the provider's own table
    /// (auth, rate limits, session not working, server errors).
    Other,
}

/// The WAHA ack a send reply already carries: WEBJS `ack` (a number),
/// NOWEB `status` (Baileys' names). GOWS carries none.
pub fn waha_send_ack(v: &Value) -> Option<i64> {
    if let Some(ack) = v.get("ack").and_then(Value::as_i64) {
        return Some(ack);
    }
    match v.get("status").and_then(Value::as_str)? {
        "ERROR" => Some(-1),
        "PENDING" => Some(0),
        "SERVER_ACK" => Some(1),
        "DELIVERY_ACK" => Some(2),
        "READ" => Some(3),
        "PLAYED" => Some(4),
        _ => None,
    }
}

/// WAHA's canonical user id form (`…@c.us` for `…@s.whatsapp.net`).
fn to_c_us(chat: &str) -> String {
    match chat.strip_suffix("@s.whatsapp.net") {
        Some(n) => format!("{n}@c.us"),
        None => chat.to_string(),
    }
}

/// The serialized id (`<fromMe>_<chat>_<ID>`) the read-back takes, from any
/// engine's send reply: GOWS `id` (already serialized), WEBJS
/// `id._serialized`, NOWEB `key` (built from `fromMe`, `remoteJid`, `id`).
pub fn waha_serialized_id(v: &Value) -> Option<String> {
    let id = v.get("id");
    if let Some(s) = id.and_then(Value::as_str).filter(|s| !s.is_empty()) {
        return Some(s.to_string());
    }
    if let Some(s) = id
        .and_then(|i| i.get("_serialized"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return Some(s.to_string());
    }
    let key = v.get("key")?;
    let bare = key
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())?;
    let from_me = key.get("fromMe").and_then(Value::as_bool).unwrap_or(true);
    match key.get("remoteJid").and_then(Value::as_str) {
        Some(jid) if !jid.is_empty() => Some(format!("{from_me}_{}_{bare}", to_c_us(jid))),
        _ => Some(bare.to_string()),
    }
}

/// The chat part of a serialized id, in canonical form.
pub fn waha_chat_of(serialized: &str) -> Option<&str> {
    let mut parts = serialized.splitn(3, '_');
    let first = parts.next()?;
    if first != "true" && first != "false" {
        return None;
    }
    parts.next().filter(|c| c.contains('@'))
}

/// Reads a WAHA message read-back reply.
pub fn waha_read_back(reply: &Reply) -> Lookup {
    let json = reply.json();
    match reply.status {
        200 => match json {
            Some(Value::Object(o)) => match o.get("ack").and_then(Value::as_i64) {
                Some(ack) => Lookup::WahaAck {
                    ack,
                    ack_name: o.get("ackName").and_then(Value::as_str).map(http::short),
                },
                None => Lookup::Unreadable {
                    detail: "read-back has no numeric `ack`".to_string(),
                },
            },
            Some(Value::Null) => Lookup::NotFound {
                detail: "read-back answered null".to_string(),
            },
            None if reply.body.trim().is_empty() => Lookup::NotFound {
                detail: "read-back answered an empty body".to_string(),
            },
            _ => Lookup::Unreadable {
                detail: unreadable(reply),
            },
        },
        501 => Lookup::Unsupported {
            detail: "the engine does not implement the message read-back (501)".to_string(),
        },
        404 => {
            let message = json
                .as_ref()
                .and_then(|j| j.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if message.starts_with("Cannot GET") {
                Lookup::Unsupported {
                    detail: "this WAHA has no message read-back route (404 Cannot GET)".to_string(),
                }
            } else if message.to_lowercase().contains("session") {
                // "Session not found" / "We didn't find a session …".
                Lookup::Other
            } else {
                Lookup::NotFound {
                    detail: "the engine does not know the message (404)".to_string(),
                }
            }
        }
        _ => Lookup::Other,
    }
}

/// Reads a Green-API `getMessage` reply.
pub fn green_get_message(reply: &Reply) -> Lookup {
    match reply.status {
        200 => {
            if reply.body.trim().is_empty() {
                return Lookup::NotFound {
                    detail: "getMessage answered an empty body".to_string(),
                };
            }
            let json = reply.json();
            let Some(Value::Object(top)) = &json else {
                return match json {
                    Some(Value::Null) => Lookup::NotFound {
                        detail: "getMessage answered null".to_string(),
                    },
                    _ => Lookup::Unreadable {
                        detail: unreadable(reply),
                    },
                };
            };
            // The npm client's typings wrap it as `{message: {...}}`.
            let msg = match top.get("message") {
                Some(Value::Object(inner)) => inner,
                _ => top,
            };
            if msg.is_empty() {
                return Lookup::NotFound {
                    detail: "getMessage answered {}".to_string(),
                };
            }
            match msg.get("statusMessage").and_then(Value::as_str) {
                Some(s) => Lookup::GreenStatus {
                    status: http::short(s),
                    description: msg
                        .get("description")
                        .and_then(Value::as_str)
                        .filter(|d| !d.is_empty())
                        .map(http::short),
                },
                // `pending` may simply be absent while the message waits.
                None if msg.contains_key("idMessage") => Lookup::GreenStatus {
                    status: "pending".to_string(),
                    description: None,
                },
                None => Lookup::Unreadable {
                    detail: "getMessage reply has no statusMessage".to_string(),
                },
            }
        }
        404 => Lookup::NotFound {
            detail: "not in the journal yet (404)".to_string(),
        },
        _ => Lookup::Other,
    }
}

fn unreadable(reply: &Reply) -> String {
    http::short(&format!(
        "HTTP {}: body is not a JSON object: {}",
        reply.status,
        reply.body.chars().take(40).collect::<String>()
    ))
}

/// The user part of a chat id (`15550000001` of `15550000001@c.us` or
/// `…@s.whatsapp.net`): engines write one user in several forms.
fn user_of(chat: &str) -> &str {
    chat.split('@').next().unwrap_or(chat)
}

/// Whether a text message from `from` containing `nonce` is in a list of
/// messages read from a receiver (a ring canary seen). `from_of` and
/// `text_of` pick the fields of one message; outgoing ones (`fromMe`) never
/// count. None: the body is not a JSON array (garbage, an HTML page, cut
/// off): nothing can be told from it.
fn list_has(
    body: &str,
    from: &str,
    nonce: &str,
    from_of: fn(&Value) -> Option<&str>,
    text_of: fn(&Value) -> Option<&str>,
) -> Option<bool> {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(body) else {
        return None;
    };
    let want = user_of(from);
    Some(items.iter().any(|m| {
        m.get("fromMe").and_then(Value::as_bool) != Some(true)
            && from_of(m).is_some_and(|f| user_of(f) == want)
            && text_of(m).is_some_and(|t| !nonce.is_empty() && t.contains(nonce))
    }))
}

/// WAHA `GET /api/{session}/chats/{chatId}/messages` (WAHA OpenAPI
/// 2026.7.2: an array of `WAMessage`, `from`, `fromMe`, `body`): whether the
/// ring canary with `nonce` from `from` is among them (None: not a list).
pub fn waha_chat_has(body: &str, from: &str, nonce: &str) -> Option<bool> {
    list_has(
        body,
        from,
        nonce,
        |m| m.get("from").and_then(Value::as_str),
        |m| m.get("body").and_then(Value::as_str),
    )
}

/// Green-API `lastIncomingMessages` (Green-API docs: an array of `{type:
/// "incoming", idMessage, chatId, senderId, textMessage, …}`): whether the
/// ring canary with `nonce` from `from` is among them (None: not a list).
pub fn green_incoming_has(body: &str, from: &str, nonce: &str) -> Option<bool> {
    list_has(
        body,
        from,
        nonce,
        |m| {
            m.get("senderId")
                .or_else(|| m.get("chatId"))
                .and_then(Value::as_str)
        },
        |m| {
            m.get("textMessage")
                .or_else(|| m.pointer("/extendedTextMessage/text"))
                .and_then(Value::as_str)
        },
    )
}

#[cfg(test)]
mod ring_reads {
    use super::*;

    #[test]
    fn a_ring_canary_is_found_by_sender_and_nonce_only() {
        let waha = r#"[{"id":"false_15550000001@c.us_X","from":"15550000001@s.whatsapp.net","fromMe":false,"body":"wa-watchdog ring check ab12"},
                      {"id":"true_x","from":"15550000002@c.us","fromMe":true,"body":"wa-watchdog ring check cd34"}]"#;
        assert_eq!(waha_chat_has(waha, "15550000001@c.us", "ab12"), Some(true));
        assert_eq!(
            waha_chat_has(waha, "15550000009@c.us", "ab12"),
            Some(false),
            "another sender"
        );
        assert_eq!(
            waha_chat_has(waha, "15550000002@c.us", "cd34"),
            Some(false),
            "our own message"
        );
        assert_eq!(
            waha_chat_has(waha, "15550000001@c.us", ""),
            Some(false),
            "an empty nonce matches nothing"
        );
        for odd in ["[1,2]", "[{\"from\":1}]", "[]"] {
            assert_eq!(
                waha_chat_has(odd, "15550000001@c.us", "ab12"),
                Some(false),
                "{odd}"
            );
        }
        let green = r#"[{"type":"incoming","idMessage":"A","chatId":"15550000001@c.us","senderId":"15550000001@c.us","textMessage":"ring ab12"}]"#;
        assert_eq!(
            green_incoming_has(green, "15550000001@c.us", "ab12"),
            Some(true)
        );
        assert_eq!(
            green_incoming_has(green, "15550000001@c.us", "zz99"),
            Some(false)
        );
        let chat_only = r#"[{"chatId":"15550000001@c.us","textMessage":"ring ab12"}]"#;
        assert_eq!(
            green_incoming_has(chat_only, "15550000001@c.us", "ab12"),
            Some(true)
        );
    }

    #[test]
    fn a_body_that_is_not_a_list_tells_nothing() {
        for garbage in [
            "",
            "{}",
            "null",
            "<html>",
            "[{\"from\":",
            "\u{fffd}\u{fffd}",
        ] {
            assert_eq!(
                waha_chat_has(garbage, "15550000001@c.us", "ab12"),
                None,
                "{garbage}"
            );
            assert_eq!(
                green_incoming_has(garbage, "15550000001@c.us", "ab12"),
                None,
                "{garbage}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            truncated: false,
            retry_after: None,
        }
    }

    fn ack(ack: i64, name: &str) -> Lookup {
        Lookup::WahaAck {
            ack,
            ack_name: Some(name.to_string()),
        }
    }

    #[test]
    fn send_reply_acks_per_engine() {
        assert_eq!(waha_send_ack(&json!({"ack": -1})), Some(-1));
        assert_eq!(
            waha_send_ack(&json!({"ack": 1, "status": "PENDING"})),
            Some(1)
        );
        assert_eq!(waha_send_ack(&json!({"status": "SERVER_ACK"})), Some(1));
        assert_eq!(waha_send_ack(&json!({"status": "PENDING"})), Some(0));
        assert_eq!(waha_send_ack(&json!({"status": "ERROR"})), Some(-1));
        assert_eq!(waha_send_ack(&json!({"status": "WHATEVER"})), None);
        assert_eq!(waha_send_ack(&json!({"ack": "1"})), None);
        assert_eq!(waha_send_ack(&json!({"id": "true_1@c.us_X"})), None);
    }

    #[test]
    fn serialized_ids_from_every_engine_shape() {
        let gows = json!({"id": "true_15550000001@c.us_3EB0AA", "_data": {}});
        assert_eq!(
            waha_serialized_id(&gows).as_deref(),
            Some("true_15550000001@c.us_3EB0AA")
        );
        let webjs =
            json!({"id": {"fromMe": true, "id": "3EB0AA", "_serialized": "true_1@c.us_3EB0AA"}});
        assert_eq!(
            waha_serialized_id(&webjs).as_deref(),
            Some("true_1@c.us_3EB0AA")
        );
        let noweb =
            json!({"key": {"remoteJid": "1555@s.whatsapp.net", "fromMe": true, "id": "3EB0AA"}});
        assert_eq!(
            waha_serialized_id(&noweb).as_deref(),
            Some("true_1555@c.us_3EB0AA")
        );
        let bare = json!({"key": {"id": "3EB0AA"}});
        assert_eq!(waha_serialized_id(&bare).as_deref(), Some("3EB0AA"));
        assert_eq!(waha_serialized_id(&json!({"id": ""})), None);
        assert_eq!(waha_serialized_id(&json!({"id": 5})), None);
        assert_eq!(waha_serialized_id(&json!([])), None);
        assert_eq!(waha_chat_of("true_1555@c.us_3EB0AA"), Some("1555@c.us"));
        assert_eq!(
            waha_chat_of("true_1-2@g.us_3EB0AA_1@c.us"),
            Some("1-2@g.us")
        );
        assert_eq!(waha_chat_of("3EB0AA"), None);
        assert_eq!(waha_chat_of("true_nochat_X"), None);
    }

    /// Every row of the WAHA read-back reading.
    #[test]
    fn waha_read_back_rows() {
        let rows: &[(u16, &str, Lookup)] = &[
            (
                200,
                r#"{"id":"x","ack":1,"ackName":"SERVER"}"#,
                ack(1, "SERVER"),
            ),
            (200, r#"{"ack":-1,"ackName":"ERROR"}"#, ack(-1, "ERROR")),
            (200, r#"{"ack":0,"ackName":"PENDING"}"#, ack(0, "PENDING")),
            (
                200,
                r#"{"ack":3}"#,
                Lookup::WahaAck {
                    ack: 3,
                    ack_name: None,
                },
            ),
            (
                200,
                r#"{"ack":"1"}"#,
                Lookup::Unreadable {
                    detail: "read-back has no numeric `ack`".into(),
                },
            ),
            (
                200,
                "null",
                Lookup::NotFound {
                    detail: "read-back answered null".into(),
                },
            ),
            (
                200,
                "  ",
                Lookup::NotFound {
                    detail: "read-back answered an empty body".into(),
                },
            ),
            (
                501,
                r#"{"message":"The method is not implemented by the engine","statusCode":501}"#,
                Lookup::Unsupported {
                    detail: "the engine does not implement the message read-back (501)".into(),
                },
            ),
            (
                404,
                r#"{"statusCode":404,"message":"Cannot GET /api/a/chats/x/messages/y","error":"Not Found"}"#,
                Lookup::Unsupported {
                    detail: "this WAHA has no message read-back route (404 Cannot GET)".into(),
                },
            ),
            (
                404,
                r#"{"message":"Message not found","error":"Not Found","statusCode":404}"#,
                Lookup::NotFound {
                    detail: "the engine does not know the message (404)".into(),
                },
            ),
            (
                404,
                "not json",
                Lookup::NotFound {
                    detail: "the engine does not know the message (404)".into(),
                },
            ),
            (404, r#"{"message":"Session not found"}"#, Lookup::Other),
            (422, r#"{"status":"STOPPED"}"#, Lookup::Other),
            (500, "boom", Lookup::Other),
            (401, "", Lookup::Other),
        ];
        for (status, body, want) in rows {
            assert_eq!(
                &waha_read_back(&reply(*status, body)),
                want,
                "{status} {body}"
            );
        }
    }

    /// Garbage, truncated and huge bodies classify without a panic.
    #[test]
    fn hostile_read_back_bodies_classify_cleanly() {
        let huge_ack = format!(r#"{{"ack":1,"ackName":"{}"}}"#, "S".repeat(1_000_000));
        let cases = [
            "{\"ack\":1,\"ackNa".to_string(),
            "\u{0}\u{1}\u{2}garbage".to_string(),
            "[1,2,3]".to_string(),
            "\"a string\"".to_string(),
            "{\"ack\": 1e400}".to_string(),
            "{\"ack\": 99999999999999999999999}".to_string(),
            "x".repeat(2_000_000),
            "[".repeat(100_000),
        ];
        for body in &cases {
            let l = waha_read_back(&reply(200, body));
            assert!(
                matches!(l, Lookup::Unreadable { .. } | Lookup::NotFound { .. }),
                "{l:?}"
            );
            if let Lookup::Unreadable { detail } = &l {
                assert!(detail.len() <= 200, "{}", detail.len());
            }
            let g = green_get_message(&reply(200, body));
            assert!(
                matches!(g, Lookup::Unreadable { .. } | Lookup::NotFound { .. }),
                "{g:?}"
            );
        }
        // A body cut at the size cap is never read as JSON.
        let cut = Reply {
            truncated: true,
            ..reply(200, r#"{"ack":1}"#)
        };
        assert!(matches!(waha_read_back(&cut), Lookup::Unreadable { .. }));
        assert!(matches!(green_get_message(&cut), Lookup::Unreadable { .. }));
        // A huge but valid ack name is shortened.
        match waha_read_back(&reply(200, &huge_ack)) {
            Lookup::WahaAck {
                ack: 1,
                ack_name: Some(n),
            } => assert!(n.chars().count() <= 200),
            other => panic!("{other:?}"),
        }
    }

    /// Every row of the Green-API getMessage reading.
    #[test]
    fn green_get_message_rows() {
        let status = |s: &str, d: Option<&str>| Lookup::GreenStatus {
            status: s.to_string(),
            description: d.map(str::to_string),
        };
        let rows: &[(u16, &str, Lookup)] = &[
            (
                200,
                r#"{"type":"outgoing","idMessage":"A","statusMessage":"sent"}"#,
                status("sent", None),
            ),
            (
                200,
                r#"{"statusMessage":"delivered"}"#,
                status("delivered", None),
            ),
            (
                200,
                r#"{"message":{"idMessage":"A","statusMessage":"read"}}"#,
                status("read", None),
            ),
            (
                200,
                r#"{"statusMessage":"failed","description":"SWE004: x"}"#,
                status("failed", Some("SWE004: x")),
            ),
            (
                200,
                r#"{"statusMessage":"failed","description":""}"#,
                status("failed", None),
            ),
            (
                200,
                r#"{"statusMessage":"noAccount"}"#,
                status("noAccount", None),
            ),
            (
                200,
                r#"{"idMessage":"A","type":"outgoing"}"#,
                status("pending", None),
            ),
            (
                200,
                "",
                Lookup::NotFound {
                    detail: "getMessage answered an empty body".into(),
                },
            ),
            (
                200,
                "{}",
                Lookup::NotFound {
                    detail: "getMessage answered {}".into(),
                },
            ),
            (
                200,
                "null",
                Lookup::NotFound {
                    detail: "getMessage answered null".into(),
                },
            ),
            (
                200,
                r#"{"type":"outgoing"}"#,
                Lookup::Unreadable {
                    detail: "getMessage reply has no statusMessage".into(),
                },
            ),
            (
                404,
                "Not Found",
                Lookup::NotFound {
                    detail: "not in the journal yet (404)".into(),
                },
            ),
            (400, "instance account not authorized", Lookup::Other),
            (429, "Too Many Requests", Lookup::Other),
            (502, "Bad Gateway", Lookup::Other),
        ];
        for (code, body, want) in rows {
            assert_eq!(
                &green_get_message(&reply(*code, body)),
                want,
                "{code} {body}"
            );
        }
    }
}
