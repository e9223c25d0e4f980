//! WAHA client (WAHA docs and OpenAPI, waha.devlike.pro): list sessions, read one, send the canary
//! with `POST /api/sendText`, restart with `POST /api/sessions/{s}/restart`.
//!
//! It must never call logout, `DELETE /api/sessions/{s}` or the body-form
//! stop/logout routes: those wipe credentials. There is deliberately no code
//! path here that could build such a request.
//!
//! Every reply is mapped to one [`Outcome`] by [`RULES`], a table kept as data
//! in `classify` ([`Call`], [`RULES`], [`classify()`]), run by the shared
//! engine of [`super::rules`] and tested row by row.

mod classify;

pub use classify::{
    BodyMatch, Call, Classified, Codes, RULES, Rule, Verdict, classify, status_outcome,
};

use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderValue;
use serde_json::Value;

use super::delivery::{self, Lookup};
use super::http;
use super::{ClientError, Failure, Outcome, ProbeReport, SendResult};
use crate::confirm::{Evidence, Source};

/// One session as WAHA lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub name: String,
    /// `STOPPED`, `STARTING`, `SCAN_QR_CODE`, `PASSKEY_REQUIRED`,
    /// `PASSKEY_CONFIRMATION_REQUIRED`, `WORKING`, `FAILED`.
    pub status: String,
    /// `me.id`, the session's own chat, when logged in.
    pub me: Option<String>,
    /// `me.reachoutTimelock.isActive` (WAHA 2026 servers; absent = false):
    /// WhatsApp restricts messaging new contacts and sends fail with 463.
    pub reachout_timelock: bool,
}

impl SessionInfo {
    /// None when the session is healthy, else the outcome its status means.
    pub fn not_working(&self) -> Option<Outcome> {
        status_outcome(&self.status)
    }
}

/// A WAHA server.
#[derive(Clone)]
pub struct WahaClient {
    http: reqwest::Client,
    base: Url,
    /// Marked sensitive so that no `Debug` of a request or header map shows it.
    api_key: Option<HeaderValue>,
    /// Lowercase desync signatures.
    signatures: Vec<String>,
}

impl std::fmt::Debug for WahaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WahaClient")
            .field("base", &self.base.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl WahaClient {
    pub fn new(
        base_url: &str,
        api_key: Option<&str>,
        connect_timeout: Duration,
        desync_signatures: &[String],
    ) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::Url {
            provider: "WAHA",
            reason,
        };
        let base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("must be http:// or https://".to_string()));
        }
        let api_key = match api_key {
            Some(k) => {
                crate::redact::register(k);
                let mut v = HeaderValue::from_str(k).map_err(|_| ClientError::ApiKeyHeader)?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(WahaClient {
            http: http::build_client(connect_timeout)?,
            base,
            api_key,
            signatures: desync_signatures.iter().map(|s| s.to_lowercase()).collect(),
        })
    }

    /// `base` + path segments, each percent-encoded (session names come from the server).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    fn request(
        &self,
        method: reqwest::Method,
        url: Url,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, url)
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("X-Api-Key", key.clone());
        }
        req
    }

    /// Every session, running or not (`GET /api/sessions?all=true`).
    pub async fn list_sessions(&self, timeout: Duration) -> Result<Vec<SessionInfo>, Failure> {
        let mut url = self.url(&["api", "sessions"]);
        url.query_pairs_mut().append_pair("all", "true");
        let reply = http::send_with_limit(
            self.request(reqwest::Method::GET, url, timeout),
            http::MAX_LIST_BODY_BYTES,
        )
        .await
        .map_err(Failure::transport)?;
        // The common case read item by item: a 200 whose body is a JSON
        // array is what the table's "status read" row accepts, and reading
        // it as a whole `Value` first (then the items) held ~1.5 KB per
        // session, hundreds of MiB for a large fleet, at once.
        if reply.status == 200 && !reply.truncated {
            if let Ok(SessionList(sessions)) = serde_json::from_str(&reply.body) {
                return Ok(sessions);
            }
        }
        let c = classify(Call::Status, &reply, &self.signatures);
        if let Some(outcome) = c.outcome {
            return Err(Failure {
                outcome,
                http_status: Some(reply.status),
                detail: c.detail,
                rule: c.rule,
            });
        }
        let items = reply
            .json()
            .and_then(|j| match j {
                Value::Array(items) => Some(items),
                _ => None,
            })
            .ok_or_else(|| Failure {
                outcome: Outcome::BadReply,
                http_status: Some(reply.status),
                detail: "session list is not a JSON array".to_string(),
                rule: "reply shape",
            })?;
        Ok(items.iter().filter_map(parse_session).collect())
    }

    /// One session's status (`GET /api/sessions/{s}`).
    pub async fn session(&self, name: &str, timeout: Duration) -> Result<SessionInfo, Failure> {
        let url = self.url(&["api", "sessions", name]);
        let reply = http::send(self.request(reqwest::Method::GET, url, timeout))
            .await
            .map_err(Failure::transport)?;
        let c = classify(Call::Status, &reply, &self.signatures);
        if let Some(outcome) = c.outcome {
            return Err(Failure {
                outcome,
                http_status: Some(reply.status),
                detail: c.detail,
                rule: c.rule,
            });
        }
        reply
            .json()
            .as_ref()
            .and_then(parse_session)
            .ok_or_else(|| Failure {
                outcome: Outcome::BadReply,
                http_status: Some(reply.status),
                detail: "session reply has no `name`/`status`".to_string(),
                rule: "reply shape",
            })
    }

    /// Sends one text (`POST /api/sendText`).
    pub async fn send_text(
        &self,
        session: &str,
        chat_id: &str,
        text: &str,
        timeout: Duration,
    ) -> SendResult {
        let url = self.url(&["api", "sendText"]);
        let body = serde_json::json!({ "session": session, "chatId": chat_id, "text": text });
        let req = self
            .request(reqwest::Method::POST, url, timeout)
            .json(&body);
        match http::send(req).await {
            Err(t) => SendResult::failed(Failure::transport(t)),
            Ok(reply) => {
                let c = classify(Call::Send, &reply, &self.signatures);
                let json = reply.json();
                let message_id = json.as_ref().and_then(delivery::waha_serialized_id);
                let ack = json.as_ref().and_then(delivery::waha_send_ack);
                SendResult {
                    outcome: c.outcome.unwrap_or(Outcome::Delivered),
                    http_status: Some(reply.status),
                    detail: if c.outcome == Some(Outcome::Delivered) {
                        message_id
                            .as_ref()
                            .map(|id| http::short(&format!("HTTP {}: message {id}", reply.status)))
                            .unwrap_or_else(|| format!("HTTP {}", reply.status))
                    } else {
                        c.detail
                    },
                    message_id,
                    ack,
                    rule: c.rule,
                }
            }
        }
    }

    /// Reads one sent message back for its ack
    /// (`GET /api/{session}/chats/{chatId}/messages/{messageId}?downloadMedia=false`,
    /// WAHA OpenAPI 2026.7.2), as confirmation evidence.
    pub async fn read_back(
        &self,
        session: &str,
        chat_id: &str,
        message_id: &str,
        timeout: Duration,
    ) -> Evidence {
        let mut url = self.url(&["api", session, "chats", chat_id, "messages", message_id]);
        url.query_pairs_mut().append_pair("downloadMedia", "false");
        let reply = match http::send(self.request(reqwest::Method::GET, url, timeout)).await {
            Ok(r) => r,
            Err(t) => {
                let f = Failure::transport(t);
                return Evidence::LookupFailed(ProbeReport::failed(f.outcome, None, f.detail));
            }
        };
        match delivery::waha_read_back(&reply) {
            Lookup::WahaAck { ack, ack_name } => Evidence::WahaAck {
                ack,
                ack_name,
                source: Source::ReadBack,
            },
            Lookup::GreenStatus { .. } | Lookup::Unreadable { .. } => Evidence::Unreadable {
                detail: format!("HTTP {}: read-back not understood", reply.status),
            },
            Lookup::NotFound { detail } => Evidence::NotFound { detail },
            Lookup::Unsupported { detail } => Evidence::Unsupported { detail },
            Lookup::Other => {
                let c = classify(Call::Status, &reply, &self.signatures);
                let outcome = c.outcome.unwrap_or(Outcome::Unconfirmed);
                Evidence::LookupFailed(ProbeReport::failed(outcome, Some(reply.status), c.detail))
            }
        }
    }

    /// Whether the ring canary with `nonce` from `from` arrived in the
    /// session's chat with `from`
    /// (`GET /api/{session}/chats/{chatId}/messages?limit=N&downloadMedia=false`,
    /// WAHA OpenAPI 2026.7.2, newest first).
    pub async fn chat_has(
        &self,
        session: &str,
        from: &str,
        nonce: &str,
        limit: u32,
        timeout: Duration,
    ) -> Result<bool, Failure> {
        let mut url = self.url(&["api", session, "chats", from, "messages"]);
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string())
            .append_pair("downloadMedia", "false");
        let reply = http::send(self.request(reqwest::Method::GET, url, timeout))
            .await
            .map_err(Failure::transport)?;
        if reply.status == 200 {
            // Unreadable (garbage, HTML, cut off) is a failed read, never
            // "not there": a ring canary it hides is no one's fault.
            let seen = (!reply.truncated)
                .then(|| delivery::waha_chat_has(&reply.body, from, nonce))
                .flatten();
            return seen.ok_or_else(|| Failure {
                outcome: Outcome::BadReply,
                http_status: Some(reply.status),
                detail: http::unreadable_list_detail(&reply, "chat messages"),
                rule: "reply shape",
            });
        }
        let c = classify(Call::Status, &reply, &self.signatures);
        Err(Failure {
            outcome: c.outcome.unwrap_or(Outcome::Unconfirmed),
            http_status: Some(reply.status),
            detail: c.detail,
            rule: c.rule,
        })
    }

    /// Restarts one session (`POST /api/sessions/{s}/restart`): stop + start,
    /// credentials kept. Ok means WAHA accepted it; WORKING comes later.
    pub async fn restart(&self, session: &str, timeout: Duration) -> Result<(), Failure> {
        let url = self.url(&["api", "sessions", session, "restart"]);
        let reply = http::send(self.request(reqwest::Method::POST, url, timeout))
            .await
            .map_err(Failure::transport)?;
        let c = classify(Call::Restart, &reply, &self.signatures);
        match c.outcome {
            None => Ok(()),
            Some(outcome) => Err(Failure {
                outcome,
                http_status: Some(reply.status),
                detail: c.detail,
                rule: c.rule,
            }),
        }
    }
}

/// A session list read one item at a time: each item is parsed as a
/// `Value`, turned into a [`SessionInfo`] (or skipped, as
/// [`parse_session`] skips it) and dropped before the next, so only one
/// item is ever held as a `Value`.
struct SessionList(Vec<SessionInfo>);

impl<'de> serde::Deserialize<'de> for SessionList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Items;
        impl<'de> serde::de::Visitor<'de> for Items {
            type Value = SessionList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON array of sessions")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<SessionList, A::Error> {
                let mut sessions = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element::<Value>()? {
                    sessions.extend(parse_session(&item));
                }
                Ok(SessionList(sessions))
            }
        }
        d.deserialize_seq(Items)
    }
}

fn parse_session(v: &Value) -> Option<SessionInfo> {
    Some(SessionInfo {
        name: v.get("name")?.as_str()?.to_string(),
        status: v.get("status")?.as_str()?.to_string(),
        me: v
            .get("me")
            .and_then(|m| m.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string),
        reachout_timelock: v
            .pointer("/me/reachoutTimelock/isActive")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// The message id in any engine's send reply: GOWS `id` (string), WEBJS
/// `id._serialized`, NOWEB `key.id`.
pub fn message_id(v: &Value) -> Option<String> {
    let id = v.get("id");
    id.and_then(Value::as_str)
        .or_else(|| {
            id.and_then(|i| i.get("_serialized"))
                .and_then(Value::as_str)
        })
        .or_else(|| v.pointer("/key/id").and_then(Value::as_str))
        .map(str::to_string)
}

#[cfg(test)]
#[path = "waha_tests.rs"]
mod tests;
