//! WAHA client (providers/waha.md): list sessions, read one, send the canary
//! with `POST /api/sendText`, restart with `POST /api/sessions/{s}/restart`.
//!
//! It must never call logout, `DELETE /api/sessions/{s}` or the body-form
//! stop/logout routes: those wipe credentials. There is deliberately no code
//! path here that could build such a request.
//!
//! Every reply is mapped to one [`Outcome`] by [`RULES`], a table kept as data
//! beside the client and tested row by row.

use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderValue;
use serde_json::Value;

use super::http::{self, Reply, Transport};
use super::{NotReadyKind, Outcome};

/// One session as WAHA lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub name: String,
    /// `STOPPED`, `STARTING`, `SCAN_QR_CODE`, `WORKING`, `FAILED`.
    pub status: String,
    /// `me.id`, the session's own chat, when logged in.
    pub me: Option<String>,
}

impl SessionInfo {
    /// None when the session is healthy, else the outcome its status means.
    pub fn not_working(&self) -> Option<Outcome> {
        status_outcome(&self.status)
    }
}

/// Maps a WAHA session status to the outcome it implies (None = WORKING).
pub fn status_outcome(status: &str) -> Option<Outcome> {
    match status {
        "WORKING" => None,
        "STARTING" => Some(Outcome::NotReady(NotReadyKind::Starting)),
        "STOPPED" => Some(Outcome::NotReady(NotReadyKind::Stopped)),
        "FAILED" => Some(Outcome::NotReady(NotReadyKind::Failed)),
        "SCAN_QR_CODE" => Some(Outcome::NeedsPairing),
        _ => Some(Outcome::NotReady(NotReadyKind::Unrecognised)),
    }
}

/// Which request a reply answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `GET /api/sessions/{s}` or the session list.
    Status,
    /// `POST /api/sendText`.
    Send,
    /// `POST /api/sessions/{s}/restart`.
    Restart,
}

/// Status codes a rule applies to.
#[derive(Clone, Copy, Debug)]
pub enum Codes {
    One(u16),
    Range(u16, u16),
}

/// What the body must show for a rule to apply.
#[derive(Clone, Copy, Debug)]
pub enum BodyMatch {
    Any,
    /// Parses as JSON.
    Json,
    /// `exception.message`, `exception.details` or `message` contains a
    /// configured desync signature (case-insensitive).
    DesyncSignature,
    /// A JSON object with a `status` field (WAHA's "session not WORKING" 422).
    SessionStatusField,
    /// The raw body contains this text (case-insensitive).
    Contains(&'static str),
}

/// What a matching reply means.
#[derive(Clone, Copy, Debug)]
pub enum Verdict {
    Is(Outcome),
    /// The outcome of the `status` field in the body.
    FromSessionStatus,
    /// 429, with the `Retry-After` header if any.
    RateLimited,
    /// A successful answer to read further (session info, accepted restart).
    Success,
}

/// One row of the classification table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub name: &'static str,
    /// None: applies to every call.
    pub call: Option<Call>,
    pub codes: Codes,
    pub body: BodyMatch,
    pub verdict: Verdict,
}

const fn rule(
    name: &'static str,
    call: Option<Call>,
    codes: Codes,
    body: BodyMatch,
    verdict: Verdict,
) -> Rule {
    Rule {
        name,
        call,
        codes,
        body,
        verdict,
    }
}

use BodyMatch as B;
use Codes::{One, Range};
use Verdict as V;

/// The WAHA classification table (DESIGN.md "Providers" and waha.md §4).
/// Checked in order; the first matching row wins.
pub const RULES: &[Rule] = &[
    rule(
        "send accepted",
        Some(Call::Send),
        Range(200, 299),
        B::Json,
        V::Is(Outcome::Delivered),
    ),
    rule(
        "send accepted without a JSON body",
        Some(Call::Send),
        Range(200, 299),
        B::Any,
        V::Is(Outcome::BadReply),
    ),
    rule(
        "status read",
        Some(Call::Status),
        One(200),
        B::Json,
        V::Success,
    ),
    rule(
        "status reply is not JSON",
        Some(Call::Status),
        Range(200, 299),
        B::Any,
        V::Is(Outcome::BadReply),
    ),
    rule(
        "restart accepted",
        Some(Call::Restart),
        Range(200, 299),
        B::Any,
        V::Success,
    ),
    rule(
        "desync signature (#2084)",
        Some(Call::Send),
        Range(500, 599),
        B::DesyncSignature,
        V::Is(Outcome::Desync),
    ),
    rule(
        "gateway or proxy error",
        None,
        Range(502, 504),
        B::Any,
        V::Is(Outcome::Unreachable),
    ),
    rule(
        "server error on send",
        Some(Call::Send),
        Range(500, 599),
        B::Any,
        V::Is(Outcome::SendFailed),
    ),
    rule(
        "server error",
        None,
        Range(500, 599),
        B::Any,
        V::Is(Outcome::Unreachable),
    ),
    rule(
        "session not working",
        None,
        One(422),
        B::SessionStatusField,
        V::FromSessionStatus,
    ),
    rule(
        "session does not exist (422)",
        None,
        One(422),
        B::Contains("does not exist"),
        V::Is(Outcome::SessionMissing),
    ),
    rule(
        "session not found (404)",
        None,
        One(404),
        B::Any,
        V::Is(Outcome::SessionMissing),
    ),
    rule(
        "api key rejected (401)",
        None,
        One(401),
        B::Any,
        V::Is(Outcome::AuthRejected),
    ),
    rule(
        "api key not permitted (403)",
        None,
        One(403),
        B::Any,
        V::Is(Outcome::AuthRejected),
    ),
    rule("rate limited", None, One(429), B::Any, V::RateLimited),
    rule(
        "request rejected",
        None,
        Range(400, 499),
        B::Any,
        V::Is(Outcome::BadRequest),
    ),
    rule(
        "unexpected status",
        None,
        Range(0, 999),
        B::Any,
        V::Is(Outcome::SendFailed),
    ),
];

/// The classification of one reply: the rule that matched and its meaning.
#[derive(Clone, Debug, PartialEq)]
pub struct Classified {
    pub rule: &'static str,
    /// None for [`Verdict::Success`].
    pub outcome: Option<Outcome>,
    pub detail: String,
}

/// Classifies a reply to `call`. `signatures` are lowercase.
pub fn classify(call: Call, reply: &Reply, signatures: &[String]) -> Classified {
    let json = reply.json();
    for r in RULES {
        if r.call.is_some_and(|c| c != call) {
            continue;
        }
        let code_ok = match r.codes {
            One(c) => reply.status == c,
            Range(lo, hi) => (lo..=hi).contains(&reply.status),
        };
        if !code_ok || !body_matches(r.body, reply, json.as_ref(), signatures) {
            continue;
        }
        let outcome = match r.verdict {
            V::Is(o) => Some(o),
            V::FromSessionStatus => {
                let status = json
                    .as_ref()
                    .and_then(|j| j.get("status"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                // A 422 that says WORKING is self-contradictory: count it as a failed send.
                Some(status_outcome(status).unwrap_or(Outcome::SendFailed))
            }
            V::RateLimited => Some(Outcome::RateLimited {
                retry_after: reply.retry_after,
            }),
            V::Success => None,
        };
        return Classified {
            rule: r.name,
            outcome,
            detail: detail(reply, json.as_ref()),
        };
    }
    // The last row matches every status code; this is unreachable in practice.
    Classified {
        rule: "unexpected status",
        outcome: Some(Outcome::SendFailed),
        detail: detail(reply, json.as_ref()),
    }
}

fn body_matches(m: BodyMatch, reply: &Reply, json: Option<&Value>, signatures: &[String]) -> bool {
    match m {
        B::Any => true,
        B::Json => json.is_some(),
        B::DesyncSignature => {
            let Some(j) = json else { return false };
            let texts = [
                j.pointer("/exception/message"),
                j.pointer("/exception/details"),
                j.get("message"),
            ];
            texts
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_lowercase)
                .any(|t| {
                    signatures
                        .iter()
                        .any(|s| !s.is_empty() && t.contains(s.as_str()))
                })
        }
        B::SessionStatusField => json
            .and_then(|j| j.get("status"))
            .is_some_and(Value::is_string),
        B::Contains(needle) => reply.body.to_lowercase().contains(needle),
    }
}

/// A short human description of a reply: the status and the most telling
/// message in the body (never the whole body, which echoes the request).
fn detail(reply: &Reply, json: Option<&Value>) -> String {
    let message = json.and_then(|j| {
        [
            j.pointer("/exception/message"),
            j.get("message"),
            j.get("error"),
        ]
        .into_iter()
        .flatten()
        .find_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            _ => None,
        })
    });
    let status = match json.and_then(|j| j.get("status")).and_then(Value::as_str) {
        Some(s) => format!(" (status {s})"),
        None => String::new(),
    };
    if reply.truncated {
        return http::truncated_detail(reply.status);
    }
    match message {
        Some(m) => http::short(&format!("HTTP {}: {m}{status}", reply.status)),
        None if reply.body.trim().is_empty() => format!("HTTP {} with an empty body", reply.status),
        None if json.is_none() => http::short(&format!(
            "HTTP {}: body is not JSON: {}",
            reply.status,
            reply.body.chars().take(60).collect::<String>()
        )),
        None => format!("HTTP {}", reply.status),
    }
}

/// Why a request to WAHA did not yield a usable answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub detail: String,
}

impl Failure {
    fn transport(t: Transport) -> Self {
        match t {
            Transport::Unreachable(d) => Failure {
                outcome: Outcome::Unreachable,
                http_status: None,
                detail: d,
            },
            Transport::Timeout(d) => Failure {
                outcome: Outcome::Timeout,
                http_status: None,
                detail: d,
            },
        }
    }
}

/// The result of one canary attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct SendResult {
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub detail: String,
    /// The message id WAHA returned, in whichever engine's shape.
    pub message_id: Option<String>,
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
    ) -> Result<Self, String> {
        let base = Url::parse(base_url).map_err(|e| format!("invalid WAHA url: {e}"))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err("invalid WAHA url: must be http:// or https://".to_string());
        }
        let api_key = match api_key {
            Some(k) => {
                crate::redact::register(k);
                let mut v = HeaderValue::from_str(k).map_err(|_| {
                    "the WAHA api key contains characters not allowed in a header".to_string()
                })?;
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
        let c = classify(Call::Status, &reply, &self.signatures);
        if let Some(outcome) = c.outcome {
            return Err(Failure {
                outcome,
                http_status: Some(reply.status),
                detail: c.detail,
            });
        }
        let items = reply
            .json()
            .and_then(|j| j.as_array().cloned())
            .ok_or_else(|| Failure {
                outcome: Outcome::BadReply,
                http_status: Some(reply.status),
                detail: "session list is not a JSON array".to_string(),
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
            Err(t) => {
                let f = Failure::transport(t);
                SendResult {
                    outcome: f.outcome,
                    http_status: None,
                    detail: f.detail,
                    message_id: None,
                }
            }
            Ok(reply) => {
                let c = classify(Call::Send, &reply, &self.signatures);
                let message_id = reply.json().as_ref().and_then(message_id);
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
                }
            }
        }
    }

    /// Restarts one session (`POST /api/sessions/{s}/restart`): stop + start,
    /// credentials kept. Ok means WAHA accepted it; WORKING comes later.
    pub async fn restart(&self, session: &str, timeout: Duration) -> Result<(), String> {
        let url = self.url(&["api", "sessions", session, "restart"]);
        let reply = http::send(self.request(reqwest::Method::POST, url, timeout))
            .await
            .map_err(|t| Failure::transport(t).detail)?;
        let c = classify(Call::Restart, &reply, &self.signatures);
        match c.outcome {
            None => Ok(()),
            Some(o) => Err(super::restart_error(Some(reply.status), &c.detail, o)),
        }
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
