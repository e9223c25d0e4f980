//! Webhook bodies into typed events. Pure: bytes in, [`Event`] out, with an
//! error naming the field for anything malformed.
//!
//! WAHA (WAHA docs "Events", OpenAPI 2026.7.2 `WAWebhook*` schemas): every
//! event is an envelope `{id: "evt_…", timestamp: <ms>, event, session, me,
//! payload, engine, environment}`; `session.status` carries
//! `payload.status`, `message.ack` carries `payload.id`, `payload.ack`
//! (-1 ERROR, 0 PENDING, 1 SERVER, 2 DEVICE, 3 READ, 4 PLAYED) and
//! `payload.ackName`, `message` (inbound) `payload.id`.
//!
//! Green-API (Green-API docs "Notifications format"): `{typeWebhook,
//! instanceData: {idInstance, wid, typeInstance}, timestamp: <s>, …}`;
//! `stateInstanceChanged` carries `stateInstance`; `outgoingMessageStatus`
//! `idMessage`, `status`, `description` (`chatId` and `description` may be
//! missing); `incomingMessageReceived` `idMessage` and `messageData`, where
//! the error markers replace the whole field value (Green-API docs "Common
//! errors → Errors in the webhooks body"): `{{SWE001}}` and `{{SWE003}}` in
//! `messageData.textMessageData.textMessage`, `{{SWE002}}` in
//! `messageData.fileMessageData.downloadUrl`.
//!
//! What identifies an event and when it happened is taken from the signed
//! body when it is there (the WAHA envelope's `id` and `timestamp`), and only
//! otherwise from the unsigned headers (`X-Webhook-Request-Id`,
//! `X-Webhook-Timestamp`): a replayed body with fresh headers must still be
//! recognised.

use serde_json::Value;

/// Longest identifier kept (message ids, event ids, session names); longer
/// ones are malformed, so the de-duplication window stays bounded in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Longest message text kept from an inbound message (characters): enough
/// for a ring canary's nonce; a longer message is cut, never rejected.
pub const MAX_TEXT_LEN: usize = 1024;

/// A Green-API error marker in an incoming message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Marker {
    /// First incoming message of a chat not delivered to linked devices.
    Swe001,
    /// Incoming file over 100 MB could not be fetched.
    Swe002,
    /// Decryption keys are stale: the phone must unlink devices and pair again.
    Swe003,
}

impl Marker {
    pub const ALL: [Marker; 3] = [Marker::Swe001, Marker::Swe002, Marker::Swe003];

    /// The metric label (`SWE001`).
    pub fn as_str(self) -> &'static str {
        match self {
            Marker::Swe001 => "SWE001",
            Marker::Swe002 => "SWE002",
            Marker::Swe003 => "SWE003",
        }
    }

    /// The marker as it appears in the field (`{{SWE001}}`).
    pub fn text(self) -> &'static str {
        match self {
            Marker::Swe001 => "{{SWE001}}",
            Marker::Swe002 => "{{SWE002}}",
            Marker::Swe003 => "{{SWE003}}",
        }
    }

    fn from_field(value: &str) -> Option<Marker> {
        let v = value.trim();
        Marker::ALL.into_iter().find(|m| m.text() == v)
    }
}

/// What an event says, by type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// WAHA `session.status`.
    SessionStatus { status: String },
    /// WAHA `message.ack`.
    MessageAck {
        message_id: String,
        ack: i64,
        ack_name: Option<String>,
    },
    /// WAHA `message` (inbound): `payload.from` (the sender's chat id) and
    /// `payload.body` (the text, cut at [`MAX_TEXT_LEN`]) when present.
    Message {
        message_id: String,
        from: Option<String>,
        text: Option<String>,
    },
    /// Green-API `stateInstanceChanged`.
    InstanceState { state: String },
    /// Green-API `outgoingMessageStatus`.
    OutgoingStatus {
        message_id: String,
        status: String,
        description: Option<String>,
    },
    /// Green-API `incomingMessageReceived`.
    /// `senderData.sender` (or `chatId`) and the text
    /// (`textMessageData.textMessage` or `extendedTextMessageData.text`, cut
    /// at [`MAX_TEXT_LEN`]) when present.
    Incoming {
        message_id: String,
        marker: Option<Marker>,
        from: Option<String>,
        text: Option<String>,
    },
    /// Any other type: authenticated, counted, ignored.
    Other,
}

/// One parsed webhook event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The provider's type name (`message.ack`, `outgoingMessageStatus`).
    pub event_type: String,
    /// WAHA session name; Green-API `idInstance` (digits).
    pub session: String,
    /// Identity for de-duplication (retries carry the same one).
    pub dedupe_key: String,
    /// When the provider says it happened, unix milliseconds.
    pub timestamp_ms: i64,
    pub body: Body,
}

/// Why a body was not understood. The message names the field, never the
/// body's content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Parses a WAHA webhook. `request_id` and `header_timestamp` are the
/// `X-Webhook-Request-Id` and `X-Webhook-Timestamp` header values.
pub fn parse_waha(
    body: &[u8],
    request_id: Option<&str>,
    header_timestamp: Option<&str>,
) -> Result<Event, ParseError> {
    let v = json(body)?;
    let event_type = string(&v, "event")?.ok_or_else(|| missing("event"))?;
    let session = string(&v, "session")?.ok_or_else(|| missing("session"))?;
    let id = match string(&v, "id")? {
        Some(id) => id,
        None => request_id
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| bounded(s.to_string(), "X-Webhook-Request-Id"))
            .transpose()?
            .ok_or_else(|| missing("id (or header X-Webhook-Request-Id)"))?,
    };
    let timestamp_ms = match v.get("timestamp") {
        Some(t) if !t.is_null() => integer(t).ok_or_else(|| bad("timestamp", "milliseconds"))?,
        _ => header_timestamp
            .and_then(|t| t.trim().parse::<i64>().ok())
            .ok_or_else(|| missing("timestamp (or header X-Webhook-Timestamp)"))?,
    };
    let payload = v.get("payload").unwrap_or(&Value::Null);
    let body = match event_type.as_str() {
        "session.status" => Body::SessionStatus {
            status: string(payload, "status")?.ok_or_else(|| missing("payload.status"))?,
        },
        "message.ack" => Body::MessageAck {
            message_id: message_id(payload)?.ok_or_else(|| missing("payload.id"))?,
            ack: payload
                .get("ack")
                .and_then(integer)
                .ok_or_else(|| bad("payload.ack", "an integer"))?,
            ack_name: string(payload, "ackName")?,
        },
        "message" => Body::Message {
            message_id: message_id(payload)?.ok_or_else(|| missing("payload.id"))?,
            from: string(payload, "from")?,
            text: text(payload, "body"),
        },
        _ => Body::Other,
    };
    Ok(Event {
        dedupe_key: format!("waha|{session}|{id}"),
        event_type: bounded(event_type, "event")?,
        session,
        timestamp_ms,
        body,
    })
}

/// Parses a Green-API notification.
pub fn parse_green_api(body: &[u8]) -> Result<Event, ParseError> {
    let v = json(body)?;
    let event_type = string(&v, "typeWebhook")?.ok_or_else(|| missing("typeWebhook"))?;
    let instance = v
        .get("instanceData")
        .and_then(|d| d.get("idInstance"))
        .ok_or_else(|| missing("instanceData.idInstance"))?;
    let session = match instance {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(bad("instanceData.idInstance", "a number")),
    };
    let session = bounded(session, "instanceData.idInstance")?;
    let seconds = v
        .get("timestamp")
        .and_then(integer)
        .ok_or_else(|| bad("timestamp", "unix seconds"))?;
    let timestamp_ms = seconds
        .checked_mul(1000)
        .ok_or_else(|| bad("timestamp", "unix seconds"))?;
    let id = string(&v, "idMessage")?;
    let body = match event_type.as_str() {
        "stateInstanceChanged" => Body::InstanceState {
            state: string(&v, "stateInstance")?.ok_or_else(|| missing("stateInstance"))?,
        },
        "outgoingMessageStatus" => Body::OutgoingStatus {
            message_id: id.clone().ok_or_else(|| missing("idMessage"))?,
            status: string(&v, "status")?.ok_or_else(|| missing("status"))?,
            description: string(&v, "description")?,
        },
        "incomingMessageReceived" => {
            let data = v.get("messageData").unwrap_or(&Value::Null);
            let text = data
                .get("textMessageData")
                .and_then(|t| text(t, "textMessage"))
                .or_else(|| {
                    data.get("extendedTextMessageData")
                        .and_then(|t| text(t, "text"))
                });
            let url = data
                .get("fileMessageData")
                .map(|f| string(f, "downloadUrl"))
                .transpose()?
                .flatten();
            let marker = text
                .as_deref()
                .and_then(Marker::from_field)
                .filter(|m| *m != Marker::Swe002)
                .or_else(|| {
                    url.as_deref()
                        .and_then(Marker::from_field)
                        .filter(|m| *m == Marker::Swe002)
                });
            let sender = v.get("senderData").unwrap_or(&Value::Null);
            let from = match string(sender, "sender")? {
                Some(f) => Some(f),
                None => string(sender, "chatId")?,
            };
            Body::Incoming {
                message_id: id.clone().ok_or_else(|| missing("idMessage"))?,
                marker,
                from,
                text,
            }
        }
        _ => Body::Other,
    };
    // Green-API has no event id: a retry resends the same notification, so
    // its type, message and status (or state and time) identify it.
    let detail = match &body {
        Body::OutgoingStatus { status, .. } => status.clone(),
        Body::InstanceState { state } => format!("{state}|{seconds}"),
        _ if id.is_none() => seconds.to_string(),
        _ => String::new(),
    };
    Ok(Event {
        dedupe_key: format!(
            "green-api|{session}|{event_type}|{}|{detail}",
            id.as_deref().unwrap_or("")
        ),
        event_type: bounded(event_type, "typeWebhook")?,
        session,
        timestamp_ms,
        body,
    })
}

fn json(body: &[u8]) -> Result<Value, ParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ParseError(format!(
            "body is not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if !v.is_object() {
        return Err(ParseError("body is not a JSON object".into()));
    }
    Ok(v)
}

/// A string field: absent or null is `None`; another type is an error.
fn string(v: &Value, field: &str) -> Result<Option<String>, ParseError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => bounded(s.clone(), field).map(Some),
        Some(_) => Err(bad(field, "a string")),
    }
}

/// A message text, cut at [`MAX_TEXT_LEN`] characters; anything but a
/// non-empty string is no text.
fn text(v: &Value, field: &str) -> Option<String> {
    match v.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.chars().take(MAX_TEXT_LEN).collect()),
        _ => None,
    }
}

/// WAHA message ids are strings; some engines send `{_serialized: "…"}`.
fn message_id(payload: &Value) -> Result<Option<String>, ParseError> {
    match payload.get("id") {
        Some(Value::Object(o)) => match o.get("_serialized") {
            Some(Value::String(s)) if !s.is_empty() => bounded(s.clone(), "payload.id").map(Some),
            _ => Err(bad("payload.id", "a string")),
        },
        _ => string(payload, "id"),
    }
}

fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn bounded(s: String, field: &str) -> Result<String, ParseError> {
    if s.len() > MAX_ID_LEN || s.chars().any(char::is_control) {
        return Err(ParseError(format!(
            "{field} is longer than {MAX_ID_LEN} bytes or has control characters"
        )));
    }
    Ok(s)
}

fn missing(field: &str) -> ParseError {
    ParseError(format!("missing field {field}"))
}

fn bad(field: &str, want: &str) -> ParseError {
    ParseError(format!("field {field} must be {want}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waha(body: &str) -> Result<Event, ParseError> {
        parse_waha(body.as_bytes(), None, None)
    }

    #[test]
    fn waha_events() {
        let e = waha(r#"{"id":"evt_1","timestamp":1700000000000,"event":"session.status","session":"default","me":null,"payload":{"name":"default","status":"SCAN_QR_CODE","statuses":[]},"engine":"GOWS"}"#).unwrap();
        assert_eq!(e.event_type, "session.status");
        assert_eq!(e.session, "default");
        assert_eq!(e.timestamp_ms, 1_700_000_000_000);
        assert_eq!(e.dedupe_key, "waha|default|evt_1");
        assert_eq!(
            e.body,
            Body::SessionStatus {
                status: "SCAN_QR_CODE".into()
            }
        );

        let e = waha(r#"{"id":"evt_2","timestamp":1,"event":"message.ack","session":"s","payload":{"id":"true_1@c.us_AB","ack":2,"ackName":"DEVICE"}}"#).unwrap();
        assert_eq!(
            e.body,
            Body::MessageAck {
                message_id: "true_1@c.us_AB".into(),
                ack: 2,
                ack_name: Some("DEVICE".into())
            }
        );
        let e = waha(r#"{"id":"evt_3","timestamp":1,"event":"message.ack","session":"s","payload":{"id":{"_serialized":"x_1"},"ack":-1}}"#).unwrap();
        assert_eq!(
            e.body,
            Body::MessageAck {
                message_id: "x_1".into(),
                ack: -1,
                ack_name: None
            }
        );

        let e = waha(r#"{"id":"evt_4","timestamp":1,"event":"message","session":"s","payload":{"id":"m1","body":"hi"}}"#).unwrap();
        assert_eq!(
            e.body,
            Body::Message {
                message_id: "m1".into(),
                from: None,
                text: Some("hi".into()),
            }
        );
        let e = waha(
            r#"{"id":"evt_5","timestamp":1,"event":"presence.update","session":"s","payload":{}}"#,
        )
        .unwrap();
        assert_eq!(e.body, Body::Other);
    }

    #[test]
    fn waha_prefers_the_signed_envelope_over_headers() {
        let body = br#"{"id":"evt_9","timestamp":5000,"event":"message","session":"s","payload":{"id":"m"}}"#;
        let e = parse_waha(body, Some("req-1"), Some("999999")).unwrap();
        assert_eq!(e.timestamp_ms, 5000);
        assert_eq!(e.dedupe_key, "waha|s|evt_9");
        // Older envelopes without id/timestamp fall back to the headers.
        let body = br#"{"event":"message","session":"s","payload":{"id":"m"}}"#;
        let e = parse_waha(body, Some("req-1"), Some("777")).unwrap();
        assert_eq!(
            (e.timestamp_ms, e.dedupe_key.as_str()),
            (777, "waha|s|req-1")
        );
    }

    #[test]
    fn waha_malformed_bodies_name_the_field() {
        let cases = [
            ("not json", "body is not JSON"),
            ("[1]", "not a JSON object"),
            (
                r#"{"id":"e","timestamp":1,"session":"s"}"#,
                "missing field event",
            ),
            (
                r#"{"id":"e","timestamp":1,"event":"message"}"#,
                "missing field session",
            ),
            (
                r#"{"timestamp":1,"event":"message","session":"s","payload":{"id":"m"}}"#,
                "missing field id",
            ),
            (
                r#"{"id":"e","event":"message","session":"s","payload":{"id":"m"}}"#,
                "missing field timestamp",
            ),
            (
                r#"{"id":"e","timestamp":"x","event":"message","session":"s"}"#,
                "timestamp must be",
            ),
            (
                r#"{"id":"e","timestamp":1,"event":"session.status","session":"s","payload":{}}"#,
                "payload.status",
            ),
            (
                r#"{"id":"e","timestamp":1,"event":"message.ack","session":"s","payload":{"id":"m"}}"#,
                "payload.ack",
            ),
            (
                r#"{"id":"e","timestamp":1,"event":"message.ack","session":"s","payload":{"ack":1}}"#,
                "payload.id",
            ),
            (
                r#"{"id":7,"timestamp":1,"event":"message","session":"s"}"#,
                "id must be a string",
            ),
        ];
        for (body, want) in cases {
            let err = waha(body).unwrap_err().to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
        let long = format!(
            r#"{{"id":"{}","timestamp":1,"event":"x","session":"s"}}"#,
            "a".repeat(MAX_ID_LEN + 1)
        );
        assert!(waha(&long).unwrap_err().to_string().contains("longer than"));
    }

    #[test]
    fn green_api_events_and_markers() {
        let e = parse_green_api(br#"{"typeWebhook":"stateInstanceChanged","instanceData":{"idInstance":1101,"wid":"","typeInstance":"whatsapp"},"timestamp":1586700690,"stateInstance":"notAuthorized"}"#).unwrap();
        assert_eq!(e.session, "1101");
        assert_eq!(e.timestamp_ms, 1_586_700_690_000);
        assert_eq!(
            e.body,
            Body::InstanceState {
                state: "notAuthorized".into()
            }
        );

        let e = parse_green_api(br#"{"typeWebhook":"outgoingMessageStatus","instanceData":{"idInstance":"1101"},"timestamp":1,"idMessage":"B3Q5","status":"failed","description":"SWE004: x","sendByApi":true}"#).unwrap();
        assert_eq!(
            e.body,
            Body::OutgoingStatus {
                message_id: "B3Q5".into(),
                status: "failed".into(),
                description: Some("SWE004: x".into())
            }
        );
        assert_eq!(
            e.dedupe_key,
            "green-api|1101|outgoingMessageStatus|B3Q5|failed"
        );

        let incoming = |data: &str| {
            parse_green_api(format!(r#"{{"typeWebhook":"incomingMessageReceived","instanceData":{{"idInstance":1}},"timestamp":1,"idMessage":"F7","senderData":{{"chatId":"7@c.us"}},"messageData":{data}}}"#).as_bytes())
                .unwrap()
                .body
        };
        let cases = [
            (
                r#"{"typeMessage":"textMessage","textMessageData":{"textMessage":"{{SWE001}}"}}"#,
                Some(Marker::Swe001),
            ),
            (
                r#"{"typeMessage":"textMessage","textMessageData":{"textMessage":"{{SWE003}}"}}"#,
                Some(Marker::Swe003),
            ),
            (
                r#"{"typeMessage":"documentMessage","fileMessageData":{"downloadUrl":"{{SWE002}}"}}"#,
                Some(Marker::Swe002),
            ),
            (
                r#"{"typeMessage":"textMessage","textMessageData":{"textMessage":"hello {{SWE003}}"}}"#,
                None,
            ),
            (
                r#"{"typeMessage":"textMessage","textMessageData":{"textMessage":"hello"}}"#,
                None,
            ),
            (
                r#"{"typeMessage":"documentMessage","fileMessageData":{"downloadUrl":"{{SWE003}}"}}"#,
                None,
            ),
            (r#"{"typeMessage":"imageMessage"}"#, None),
        ];
        for (data, marker) in cases {
            match incoming(data) {
                Body::Incoming {
                    message_id,
                    marker: m,
                    from,
                    ..
                } => {
                    assert_eq!((message_id.as_str(), m), ("F7", marker), "{data}");
                    assert_eq!(from.as_deref(), Some("7@c.us"), "{data}");
                }
                other => panic!("{data}: {other:?}"),
            }
        }
    }

    #[test]
    fn inbound_messages_carry_sender_and_text_and_long_texts_are_cut_not_rejected() {
        let long = "x".repeat(5000);
        let e = parse_green_api(format!(r#"{{"typeWebhook":"incomingMessageReceived","instanceData":{{"idInstance":1}},"timestamp":1,"idMessage":"F7","senderData":{{"chatId":"7@c.us","sender":"8@c.us"}},"messageData":{{"typeMessage":"textMessage","textMessageData":{{"textMessage":"ring ab12 {long}"}}}}}}"#).as_bytes()).expect("a long text is fine");
        match e.body {
            Body::Incoming { from, text, .. } => {
                assert_eq!(from.as_deref(), Some("8@c.us"));
                let text = text.expect("text");
                assert!(text.starts_with("ring ab12"));
                assert_eq!(text.chars().count(), MAX_TEXT_LEN);
            }
            other => panic!("{other:?}"),
        }
        let e = parse_green_api(br#"{"typeWebhook":"incomingMessageReceived","instanceData":{"idInstance":1},"timestamp":1,"idMessage":"F8","senderData":{"chatId":"7@c.us"},"messageData":{"typeMessage":"extendedTextMessage","extendedTextMessageData":{"text":"ring cd34"}}}"#).unwrap();
        assert!(matches!(e.body, Body::Incoming { text: Some(t), .. } if t == "ring cd34"));
        let e = parse_waha(br#"{"id":"evt_1","timestamp":1,"event":"message","session":"a","payload":{"id":"false_1@c.us_X","from":"15550000001@c.us","fromMe":false,"body":"ring ab12"}}"#, None, None).unwrap();
        assert_eq!(
            e.body,
            Body::Message {
                message_id: "false_1@c.us_X".into(),
                from: Some("15550000001@c.us".into()),
                text: Some("ring ab12".into()),
            }
        );
    }

    #[test]
    fn green_api_retries_share_a_key_and_changes_do_not() {
        let status = |s: &str| {
            parse_green_api(format!(r#"{{"typeWebhook":"outgoingMessageStatus","instanceData":{{"idInstance":1}},"timestamp":1,"idMessage":"M","status":"{s}"}}"#).as_bytes()).unwrap().dedupe_key
        };
        assert_eq!(status("sent"), status("sent"));
        assert_ne!(status("sent"), status("delivered"));
        let state = |t: i64| {
            parse_green_api(format!(r#"{{"typeWebhook":"stateInstanceChanged","instanceData":{{"idInstance":1}},"timestamp":{t},"stateInstance":"starting"}}"#).as_bytes()).unwrap().dedupe_key
        };
        assert_ne!(state(1), state(2));
    }

    #[test]
    fn green_api_malformed_bodies_name_the_field() {
        let cases = [
            (
                r#"{"instanceData":{"idInstance":1},"timestamp":1}"#,
                "typeWebhook",
            ),
            (
                r#"{"typeWebhook":"x","timestamp":1}"#,
                "instanceData.idInstance",
            ),
            (
                r#"{"typeWebhook":"x","instanceData":{"idInstance":[1]},"timestamp":1}"#,
                "instanceData.idInstance",
            ),
            (
                r#"{"typeWebhook":"x","instanceData":{"idInstance":1}}"#,
                "timestamp",
            ),
            (
                r#"{"typeWebhook":"stateInstanceChanged","instanceData":{"idInstance":1},"timestamp":1}"#,
                "stateInstance",
            ),
            (
                r#"{"typeWebhook":"outgoingMessageStatus","instanceData":{"idInstance":1},"timestamp":1,"status":"sent"}"#,
                "idMessage",
            ),
            (
                r#"{"typeWebhook":"outgoingMessageStatus","instanceData":{"idInstance":1},"timestamp":1,"idMessage":"m"}"#,
                "status",
            ),
            (
                r#"{"typeWebhook":"x","instanceData":{"idInstance":1},"timestamp":9223372036854775807}"#,
                "timestamp",
            ),
        ];
        for (body, want) in cases {
            let err = parse_green_api(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
    }
}
