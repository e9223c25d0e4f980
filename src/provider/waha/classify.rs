//! The WAHA classification table: [`Call`] (the requests the client makes),
//! the [`RULES`] rows and [`classify`], which maps one reply to one
//! [`Outcome`] on the shared engine ([`crate::provider::rules`]); and
//! [`status_outcome`], what a session status means. Pure: no I/O, no clock.

use serde_json::Value;

use crate::provider::http::{self, Reply};
pub use crate::provider::rules::Codes;
use crate::provider::rules::{self, Common};
use crate::provider::{NotReadyKind, Outcome};

/// Maps a WAHA session status to the outcome it implies (None = WORKING).
pub fn status_outcome(status: &str) -> Option<Outcome> {
    match status {
        "WORKING" => None,
        "STARTING" => Some(Outcome::NotReady(NotReadyKind::Starting)),
        "STOPPED" => Some(Outcome::NotReady(NotReadyKind::Stopped)),
        "FAILED" => Some(Outcome::NotReady(NotReadyKind::Failed)),
        // PASSKEY_* (WAHA OpenAPI 2026.7.2) need a person at the phone too.
        "SCAN_QR_CODE" | "PASSKEY_REQUIRED" | "PASSKEY_CONFIRMATION_REQUIRED" => {
            Some(Outcome::NeedsPairing)
        }
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

/// One row of the classification table (`None` covers every call).
pub type Rule = rules::Rule<Option<Call>, BodyMatch, Verdict>;

const fn rule(
    name: &'static str,
    call: Option<Call>,
    codes: Codes,
    body: BodyMatch,
    verdict: Verdict,
) -> Rule {
    Rule {
        name,
        scope: call,
        codes,
        body,
        verdict,
        extra: (),
    }
}

use BodyMatch as B;
use Codes::{One, Range};
use Verdict as V;

/// The WAHA classification table (WAHA source: the global exception filter
/// and its gRPC → HTTP mapping; replies recorded from WAHA 2024.10.8).
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
    // whatsmeow's `server returned error <code>` (WAHA issues #1904/#2050:
    // 463 is WhatsApp's reachout timelock, which lifts by itself; #2093:
    // 403): never a desync, whatever the configured signatures say.
    rule(
        "reachout timelock (463)",
        Some(Call::Send),
        Range(500, 599),
        B::Contains("server returned error 463"),
        V::Is(Outcome::ReachoutTimelock),
    ),
    rule(
        "WhatsApp refused the send (403)",
        Some(Call::Send),
        Range(500, 599),
        B::Contains("server returned error 403"),
        V::Is(Outcome::SendRefused),
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
pub type Classified = rules::Classified;

/// Classifies a reply to `call`. `signatures` are lowercase.
pub fn classify(call: Call, reply: &Reply, signatures: &[String]) -> Classified {
    let json = reply.json();
    let matched = rules::first_match(RULES, call, reply, |b| {
        body_matches(b, reply, json.as_ref(), signatures)
    });
    let (rule, outcome) = match matched {
        Some(r) => (r.name, outcome(r.verdict, reply, json.as_ref())),
        // The last row matches every status code; this is unreachable in practice.
        None => (rules::UNEXPECTED, Some(Outcome::SendFailed)),
    };
    Classified {
        rule,
        outcome,
        detail: detail(reply, json.as_ref()),
        extra: (),
    }
}

fn outcome(verdict: Verdict, reply: &Reply, json: Option<&Value>) -> Option<Outcome> {
    match verdict {
        V::Is(o) => Common::Is(o).outcome(reply),
        V::RateLimited => Common::RateLimited.outcome(reply),
        V::Success => Common::Success.outcome(reply),
        V::FromSessionStatus => {
            let status = json
                .and_then(|j| j.get("status"))
                .and_then(Value::as_str)
                .unwrap_or("");
            // A 422 that says WORKING is self-contradictory: count it as a failed send.
            Some(status_outcome(status).unwrap_or(Outcome::SendFailed))
        }
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
    rules::describe(
        reply,
        json.is_some(),
        message,
        &status,
        "body is not JSON: ",
        60,
    )
}
