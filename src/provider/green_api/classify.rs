//! The Green-API classification table: [`Call`] (the closed set of methods
//! the client can name), the [`RULES`] rows (status, body, verdict, the
//! vendor's retry advice) and [`classify`], which maps one reply to one
//! [`Outcome`]; plus [`queue_has`], the `showMessagesQueue` reader. Pure: no
//! I/O, no clock. A detail may still hold the token if a proxy echoed the
//! URL; the client scrubs it.

use serde_json::Value;

use super::InstanceState;
use crate::provider::http::{self, Reply};
pub use crate::provider::rules::Codes;
use crate::provider::rules::{self, Common};
use crate::provider::{NotReadyKind, Outcome};

/// The methods this client calls: a closed set (see the module comment for
/// the ones deliberately absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// `GET getStateInstance`.
    State,
    /// `GET getSettings`.
    Settings,
    /// `POST sendMessage`.
    Send,
    /// `GET showMessagesQueue`.
    Queue,
    /// `POST getMessage`: one sent message and its `statusMessage`.
    Message,
    /// `GET reboot`.
    Reboot,
    /// `GET lastIncomingMessages`: the incoming journal (ring canaries).
    Incoming,
}

impl Call {
    pub const ALL: [Call; 7] = [
        Call::State,
        Call::Settings,
        Call::Send,
        Call::Queue,
        Call::Message,
        Call::Reboot,
        Call::Incoming,
    ];

    /// The method name as it appears in the path.
    pub fn method_name(self) -> &'static str {
        match self {
            Call::State => "getStateInstance",
            Call::Settings => "getSettings",
            Call::Send => "sendMessage",
            Call::Queue => "showMessagesQueue",
            Call::Message => "getMessage",
            Call::Reboot => "reboot",
            Call::Incoming => "lastIncomingMessages",
        }
    }

    /// The verb the Green-API docs give each method; any other verb gets a 404.
    pub fn http_method(self) -> reqwest::Method {
        match self {
            Call::Send | Call::Message => reqwest::Method::POST,
            Call::State | Call::Settings | Call::Queue | Call::Reboot | Call::Incoming => {
                reqwest::Method::GET
            }
        }
    }
}

/// Which calls a rule applies to.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    Any,
    Only(Call),
    /// Every call but [`Call::Send`]: a failure there says nothing about sending.
    Reads,
}

impl rules::Scope<Call> for Scope {
    fn covers(&self, call: Call) -> bool {
        match *self {
            Scope::Any => true,
            Scope::Only(c) => c == call,
            Scope::Reads => call != Call::Send,
        }
    }
}

/// What the body must show for a rule to apply.
#[derive(Clone, Copy, Debug)]
pub enum BodyMatch {
    Any,
    /// A JSON object whose `code` is this number (the partner-token `200
    /// {"code":401,...}` of the Green-API docs, Common errors).
    CodeInBody(u16),
    /// A JSON object with `status: false` and a `reason` containing one of
    /// these (case-insensitive): the `200` refusal some methods send (Green-API docs, Common errors).
    Refusal(&'static [&'static str]),
    /// A `getStateInstance` body: `null` or an object with `stateInstance`.
    StateBody,
    /// Any JSON object.
    JsonObject,
    /// A JSON object with a non-empty string `idMessage`.
    IdMessage,
    /// `showMessagesQueue`: a JSON array, `null`, or an empty body.
    QueueBody,
    /// A JSON object whose boolean field has this value.
    Flag(&'static str, bool),
    /// The raw body, or its JSON `message` / `reason` / `description`,
    /// contains one of these (case-insensitive). Green-API's error bodies are
    /// plain text or `{"message": ...}` (UNCONFIRMED which): both match alike.
    ContainsAny(&'static [&'static str]),
}

/// What a matching reply means.
#[derive(Clone, Copy, Debug)]
pub enum Verdict {
    Is(Outcome),
    /// 429, with the `Retry-After` header if any.
    RateLimited,
    /// A successful answer to read further.
    Success,
}

/// What to do before accepting a rule's verdict (the vendor's advice,
/// Green-API docs: Common errors: 499 "increase the waiting time and repeat",
/// 502 "repeat the request 3 times with a delay").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    No,
    /// 502: repeat [`RetryPolicy::retries_502`] times, [`RetryPolicy::delay_502`] apart.
    ///
    /// [`RetryPolicy::retries_502`]: super::RetryPolicy::retries_502
    /// [`RetryPolicy::delay_502`]: super::RetryPolicy::delay_502
    Repeat,
    /// 499: repeat [`RetryPolicy::retries_499`] times with twice the request
    /// timeout, after [`RetryPolicy::delay_502`].
    ///
    /// [`RetryPolicy::retries_499`]: super::RetryPolicy::retries_499
    /// [`RetryPolicy::delay_502`]: super::RetryPolicy::delay_502
    LongerTimeout,
}

/// One row of the classification table; `extra` is the vendor's retry
/// advice.
pub type Rule = rules::Rule<Scope, BodyMatch, Verdict, Retry>;

const fn rule(
    name: &'static str,
    scope: Scope,
    codes: Codes,
    body: BodyMatch,
    verdict: Verdict,
) -> Rule {
    Rule {
        name,
        scope,
        codes,
        body,
        verdict,
        extra: Retry::No,
    }
}

const fn retried(r: Rule, retry: Retry) -> Rule {
    Rule { extra: retry, ..r }
}

use BodyMatch as B;
use Codes::{One, Range};
use Verdict as V;

const STARTING: Outcome = Outcome::NotReady(NotReadyKind::Starting);

/// The Green-API classification table (Green-API docs: Common errors, HTTP
/// 466). Checked in order; the first matching row wins.
///
/// The newer combined 400 text `instance is starting or not authorized` is
/// classified as starting: a probe reads `getStateInstance` before it sends
/// and does not send unless the state is `authorized`, so this reply means
/// the instance changed state between the two calls, and a restart is the
/// usual cause. `NotReady(Starting)` is transient and re-probed (the next
/// state read tells the truth), whereas `NeedsPairing` would page a human and
/// stop remediation on a guess.
pub const RULES: &[Rule] = &[
    rule(
        "401 in the body",
        Scope::Any,
        Range(0, 999),
        B::CodeInBody(401),
        V::Is(Outcome::AuthRejected),
    ),
    rule(
        "refusal: starting",
        Scope::Any,
        Range(200, 299),
        B::Refusal(&["starting"]),
        V::Is(STARTING),
    ),
    rule(
        "refusal: not authorized",
        Scope::Any,
        Range(200, 299),
        B::Refusal(&["not authorized"]),
        V::Is(Outcome::NeedsPairing),
    ),
    rule(
        "state read",
        Scope::Only(Call::State),
        One(200),
        B::StateBody,
        V::Success,
    ),
    rule(
        "settings read",
        Scope::Only(Call::Settings),
        One(200),
        B::JsonObject,
        V::Success,
    ),
    rule(
        "message queued",
        Scope::Only(Call::Send),
        One(200),
        B::IdMessage,
        V::Success,
    ),
    rule(
        "queue read",
        Scope::Only(Call::Queue),
        One(200),
        B::QueueBody,
        V::Success,
    ),
    rule(
        "reboot accepted",
        Scope::Only(Call::Reboot),
        One(200),
        B::Flag("isReboot", true),
        V::Success,
    ),
    rule(
        "reboot refused",
        Scope::Only(Call::Reboot),
        One(200),
        B::Flag("isReboot", false),
        V::Is(Outcome::SendFailed),
    ),
    // getMessage (Green-API docs): any 200 body, and a 404 (one of the
    // undocumented "not in the journal yet" forms), are read by
    // `provider::delivery::green_get_message`.
    rule(
        "journal read",
        Scope::Only(Call::Message),
        One(200),
        B::Any,
        V::Success,
    ),
    // lastIncomingMessages (Green-API docs): an array, read by
    // `provider::delivery::green_incoming_has` (anything else is a failed read).
    rule(
        "incoming journal read",
        Scope::Only(Call::Incoming),
        One(200),
        B::Any,
        V::Success,
    ),
    rule(
        "not in the journal (404)",
        Scope::Only(Call::Message),
        One(404),
        B::Any,
        V::Success,
    ),
    rule(
        "unusable send reply",
        Scope::Only(Call::Send),
        Range(200, 299),
        B::Any,
        V::Is(Outcome::BadReply),
    ),
    rule(
        "unusable state reply",
        Scope::Only(Call::State),
        Range(200, 299),
        B::Any,
        V::Is(Outcome::BadReply),
    ),
    rule(
        "unusable settings reply",
        Scope::Only(Call::Settings),
        Range(200, 299),
        B::Any,
        V::Is(Outcome::BadReply),
    ),
    rule(
        "unexpected 2xx body",
        Scope::Any,
        Range(200, 299),
        B::Any,
        V::Is(Outcome::SendFailed),
    ),
    rule(
        "starting or not authorized",
        Scope::Any,
        One(400),
        B::ContainsAny(&["starting or not authorized"]),
        V::Is(STARTING),
    ),
    rule(
        "instance starting",
        Scope::Any,
        One(400),
        B::ContainsAny(&["instance in starting process", "instance is starting"]),
        V::Is(STARTING),
    ),
    rule(
        "chat limit used up (2021)",
        Scope::Any,
        One(400),
        B::ContainsAny(&["chat limit"]),
        V::Is(Outcome::QuotaExceeded),
    ),
    rule(
        "instance expired",
        Scope::Any,
        One(400),
        B::ContainsAny(&["expired"]),
        V::Is(Outcome::InstanceExpired),
    ),
    rule(
        "instance deleted",
        Scope::Any,
        One(400),
        B::ContainsAny(&["instance is deleted"]),
        V::Is(Outcome::InstanceExpired),
    ),
    rule(
        "instance not authorized",
        Scope::Any,
        One(400),
        B::ContainsAny(&["not authorized"]),
        V::Is(Outcome::NeedsPairing),
    ),
    rule(
        "bad request data",
        Scope::Any,
        One(400),
        B::ContainsAny(&["bad request data"]),
        V::Is(Outcome::BadRequest),
    ),
    rule(
        "validation failed",
        Scope::Any,
        One(400),
        B::ContainsAny(&["validation failed", "bad request"]),
        V::Is(Outcome::BadRequest),
    ),
    rule(
        "field validation",
        Scope::Any,
        One(400),
        B::ContainsAny(&[
            "must be one of the next formats",
            "is required",
            "is not allowed",
            "must be less than or equal to",
            "must be at least",
        ]),
        V::Is(Outcome::BadRequest),
    ),
    rule(
        "malformed JSON",
        Scope::Any,
        One(400),
        B::ContainsAny(&["unexpected token", "in json"]),
        V::Is(Outcome::BadRequest),
    ),
    rule(
        "other 400",
        Scope::Any,
        One(400),
        B::Any,
        V::Is(Outcome::BadRequest),
    ),
    rule(
        "token rejected (401)",
        Scope::Any,
        One(401),
        B::Any,
        V::Is(Outcome::AuthRejected),
    ),
    rule(
        "instance rejected (403)",
        Scope::Any,
        One(403),
        B::Any,
        V::Is(Outcome::AuthRejected),
    ),
    rule(
        "wrong verb (404)",
        Scope::Any,
        One(404),
        B::Any,
        V::Is(Outcome::BadRequest),
    ),
    rule(
        "rate limited (429)",
        Scope::Any,
        One(429),
        B::Any,
        V::RateLimited,
    ),
    rule(
        "quota exceeded (466)",
        Scope::Any,
        One(466),
        B::Any,
        V::Is(Outcome::QuotaExceeded),
    ),
    retried(
        rule(
            "client closed request (499)",
            Scope::Any,
            One(499),
            B::Any,
            V::Is(Outcome::Timeout),
        ),
        Retry::LongerTimeout,
    ),
    rule(
        "other 4xx",
        Scope::Any,
        Range(400, 499),
        B::Any,
        V::Is(Outcome::BadRequest),
    ),
    retried(
        rule(
            "bad gateway (502)",
            Scope::Any,
            One(502),
            B::Any,
            V::Is(Outcome::Unreachable),
        ),
        Retry::Repeat,
    ),
    rule(
        "unavailable (503/504)",
        Scope::Any,
        Range(503, 504),
        B::Any,
        V::Is(Outcome::Unreachable),
    ),
    rule(
        "server error on send",
        Scope::Only(Call::Send),
        Range(500, 599),
        B::Any,
        V::Is(Outcome::SendFailed),
    ),
    rule(
        "server error on read",
        Scope::Reads,
        Range(500, 599),
        B::Any,
        V::Is(Outcome::Unreachable),
    ),
    rule(
        "unexpected status",
        Scope::Any,
        Range(0, 999),
        B::Any,
        V::Is(Outcome::SendFailed),
    ),
];

/// The classification of one reply: the rule that matched, its meaning and
/// the vendor's retry advice (`extra`).
pub type Classified = rules::Classified<Retry>;

/// Classifies a reply to `call`. Pure.
pub fn classify(call: Call, reply: &Reply) -> Classified {
    let json = reply.json();
    let texts = texts(reply, json.as_ref());
    let matched = rules::first_match(RULES, call, reply, |b| {
        body_matches(b, reply, json.as_ref(), &texts)
    });
    let (rule, outcome, retry) = match matched {
        Some(r) => {
            let common = match r.verdict {
                V::Is(o) => Common::Is(o),
                V::RateLimited => Common::RateLimited,
                V::Success => Common::Success,
            };
            (r.name, common.outcome(reply), r.extra)
        }
        // The last row matches every status code; this is unreachable in practice.
        None => (rules::UNEXPECTED, Some(Outcome::SendFailed), Retry::No),
    };
    Classified {
        rule,
        outcome,
        detail: detail(reply, json.as_ref()),
        extra: retry,
    }
}

/// The lowercase texts a [`BodyMatch::ContainsAny`] searches: the raw body and
/// the decoded message fields (a JSON string may escape what we look for).
fn texts(reply: &Reply, json: Option<&Value>) -> Vec<String> {
    let mut texts = vec![reply.body.to_lowercase()];
    if let Some(j) = json {
        for key in ["message", "reason", "description"] {
            if let Some(s) = j.get(key).and_then(Value::as_str) {
                texts.push(s.to_lowercase());
            }
        }
    }
    texts
}

fn body_matches(m: BodyMatch, reply: &Reply, json: Option<&Value>, texts: &[String]) -> bool {
    let obj = json.and_then(Value::as_object);
    match m {
        B::Any => true,
        B::CodeInBody(code) => obj.and_then(|o| o.get("code")).is_some_and(|c| {
            c.as_u64() == Some(u64::from(code)) || c.as_str() == Some(&code.to_string())
        }),
        B::Refusal(needles) => {
            let Some(o) = obj else { return false };
            let refused = o.get("status").and_then(Value::as_bool) == Some(false);
            let reason = o
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_lowercase)
                .unwrap_or_default();
            refused && needles.iter().any(|n| reason.contains(n))
        }
        B::StateBody => json.is_some_and(|j| InstanceState::from_json(j).is_some()),
        B::JsonObject => obj.is_some(),
        B::IdMessage => obj
            .and_then(|o| o.get("idMessage"))
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty()),
        B::QueueBody => {
            (reply.body.trim().is_empty() && !reply.truncated)
                || matches!(json, Some(Value::Null | Value::Array(_)))
        }
        B::Flag(field, value) => {
            obj.and_then(|o| o.get(field)).and_then(Value::as_bool) == Some(value)
        }
        B::ContainsAny(needles) => texts
            .iter()
            .any(|t| needles.iter().any(|n| t.contains(&n.to_lowercase()))),
    }
}

/// A short human description of a reply: the status and the most telling
/// message in the body.
fn detail(reply: &Reply, json: Option<&Value>) -> String {
    if reply.status == 466 {
        return quota_detail(json);
    }
    if reply.truncated {
        return http::truncated_detail(reply.status);
    }
    let message = json.and_then(|j| {
        ["message", "description", "reason"]
            .into_iter()
            .find_map(|k| j.get(k).and_then(Value::as_str))
    });
    rules::describe(
        reply,
        json.is_some(),
        message.map(str::to_string),
        "",
        "",
        100,
    )
}

/// The 466 body (Green-API docs: HTTP 466): names the quota that is used up. The body says
/// `QUOTE_EXCEEDED`, the webhook `QUOTA_EXCEEDED`; both are recognised. The
/// `description` (a list of allowed chat ids) is left out.
fn quota_detail(json: Option<&Value>) -> String {
    let exceeded = |o: &Value| {
        o.get("status")
            .and_then(Value::as_str)
            .map(str::to_ascii_uppercase)
            .is_some_and(|s| s.contains("QUOTE_EXCEEDED") || s.contains("QUOTA_EXCEEDED"))
    };
    let found = json.and_then(|j| {
        ["correspondentsStatus", "invokeStatus"]
            .into_iter()
            .filter_map(|k| j.get(k))
            .find(|o| exceeded(o))
    });
    match found {
        Some(o) => {
            let method = o.get("method").and_then(Value::as_str).unwrap_or("?");
            let used = o.get("used").map(Value::to_string).unwrap_or_default();
            let total = o.get("total").map(Value::to_string).unwrap_or_default();
            let status = o.get("status").and_then(Value::as_str).unwrap_or("");
            http::short(&format!(
                "HTTP 466: {method} quota exceeded ({used}/{total}, {status})"
            ))
        }
        None => "HTTP 466: quota exceeded".to_string(),
    }
}

/// Whether a `showMessagesQueue` body lists `id_message`. Tolerates `null`,
/// non-array bodies, items that are not objects, and the id under
/// `messageID`, `messageId` or `idMessage`.
pub fn queue_has(body: Option<&Value>, id_message: &str) -> bool {
    let Some(Value::Array(items)) = body else {
        return false;
    };
    items.iter().any(|item| {
        ["messageID", "messageId", "idMessage"]
            .into_iter()
            .filter_map(|k| item.get(k).and_then(Value::as_str))
            .any(|id| id.eq_ignore_ascii_case(id_message))
    })
}
