//! Green-API client (providers/green-api.md) for one WhatsApp instance: read
//! the state (`getStateInstance`), the instance's own chat (`getSettings`
//! `wid`), send the canary (`sendMessage`), watch it leave the send queue
//! (`showMessagesQueue`) and reboot (`reboot`).
//!
//! It must never call `logout` (wipes the link), `setSettings` (reboots the
//! instance behind the operator's back) or `clearMessagesQueue` (destroys
//! evidence and other people's messages). [`Call`] is the closed set of
//! methods this client can name; none of those three is in it, so there is
//! no code path that could build such a request.
//!
//! The instance token is part of every URL (`{url}/waInstance{id}/{method}/{token}`).
//! URLs are therefore built only inside [`GreenApiClient`] and never
//! formatted: transport errors go through [`http::send`], which strips the
//! URL, every detail is scrubbed of the token once more, and `Debug` shows
//! `<redacted>`. [`GreenApiClient::endpoint`] is the printable form.
//!
//! Every reply is mapped to one [`Outcome`] by [`RULES`], a table kept as data
//! beside the client and tested row by row (green_api_tests.rs, and against
//! the simulator in tests/sim_green_api.rs). The vendor's retry advice (499:
//! once more with a longer timeout; 502: three more times with a delay) is
//! part of the table too ([`Retry`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Url;
use serde_json::Value;
use tokio::time::Instant;

use super::http::{self, Reply, Transport};
use super::{BlockKind, NotReadyKind, Outcome};

/// Green-API allows 1 request/s per instance for each method we read with
/// (green-api.md §6); exceeding it gives a 429 for the whole instance. The
/// pacer spaces departures, and network jitter can bring two arrivals closer
/// than that, so the default keeps a 10 % margin.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_millis(1_100);

/// The state of an instance as `getStateInstance` reports it (green-api.md §2.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum InstanceState {
    Authorized,
    NotAuthorized,
    Blocked,
    SleepMode,
    Starting,
    YellowCard,
    /// The body was JSON `null` (or `stateInstance` was null): the instance
    /// is still being created (D-create).
    Provisioning,
    /// A value this version does not know, as sent.
    Unknown(String),
}

impl InstanceState {
    /// Parses the wire value (`authorized`, `notAuthorized`, ...). Matching
    /// ignores case: the vendor has changed casing elsewhere (§1).
    pub fn from_wire(value: &str) -> InstanceState {
        const KNOWN: [(&str, InstanceState); 6] = [
            ("authorized", InstanceState::Authorized),
            ("notAuthorized", InstanceState::NotAuthorized),
            ("blocked", InstanceState::Blocked),
            ("sleepMode", InstanceState::SleepMode),
            ("starting", InstanceState::Starting),
            ("yellowCard", InstanceState::YellowCard),
        ];
        KNOWN
            .into_iter()
            .find(|(wire, _)| wire.eq_ignore_ascii_case(value.trim()))
            .map(|(_, s)| s)
            .unwrap_or_else(|| InstanceState::Unknown(http::short(value)))
    }

    /// Parses a `getStateInstance` body: `{"stateInstance": "..."}` or `null`.
    /// None when the body has neither shape.
    pub fn from_json(body: &Value) -> Option<InstanceState> {
        match body {
            Value::Null => Some(InstanceState::Provisioning),
            Value::Object(o) => match o.get("stateInstance")? {
                Value::Null => Some(InstanceState::Provisioning),
                Value::String(s) => Some(InstanceState::from_wire(s)),
                _ => None,
            },
            _ => None,
        }
    }

    /// The wire value; `null` for [`InstanceState::Provisioning`].
    pub fn as_str(&self) -> &str {
        match self {
            InstanceState::Authorized => "authorized",
            InstanceState::NotAuthorized => "notAuthorized",
            InstanceState::Blocked => "blocked",
            InstanceState::SleepMode => "sleepMode",
            InstanceState::Starting => "starting",
            InstanceState::YellowCard => "yellowCard",
            InstanceState::Provisioning => "null",
            InstanceState::Unknown(s) => s,
        }
    }

    /// None when the instance is healthy (`authorized`), else the outcome the
    /// state means. Note `authorized` proves little (green-api.md §7): the
    /// canary and its trip through the queue are the real test.
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            InstanceState::Authorized => None,
            InstanceState::NotAuthorized => Some(Outcome::NeedsPairing),
            InstanceState::Blocked => Some(Outcome::Blocked(BlockKind::Banned)),
            InstanceState::YellowCard => Some(Outcome::Blocked(BlockKind::YellowCard)),
            InstanceState::SleepMode => Some(Outcome::NotReady(NotReadyKind::Sleeping)),
            InstanceState::Starting => Some(Outcome::NotReady(NotReadyKind::Starting)),
            InstanceState::Provisioning => Some(Outcome::NotReady(NotReadyKind::Provisioning)),
            InstanceState::Unknown(_) => Some(Outcome::NotReady(NotReadyKind::Unrecognised)),
        }
    }
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// `GET reboot`.
    Reboot,
}

impl Call {
    pub const ALL: [Call; 5] = [
        Call::State,
        Call::Settings,
        Call::Send,
        Call::Queue,
        Call::Reboot,
    ];

    /// The method name as it appears in the path.
    pub fn method_name(self) -> &'static str {
        match self {
            Call::State => "getStateInstance",
            Call::Settings => "getSettings",
            Call::Send => "sendMessage",
            Call::Queue => "showMessagesQueue",
            Call::Reboot => "reboot",
        }
    }

    /// The verb green-api.md §1 documents; any other verb gets a 404.
    pub fn http_method(self) -> reqwest::Method {
        match self {
            Call::Send => reqwest::Method::POST,
            Call::State | Call::Settings | Call::Queue | Call::Reboot => reqwest::Method::GET,
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

impl Scope {
    fn covers(self, call: Call) -> bool {
        match self {
            Scope::Any => true,
            Scope::Only(c) => c == call,
            Scope::Reads => call != Call::Send,
        }
    }
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
    /// A JSON object whose `code` is this number (the partner-token `200
    /// {"code":401,...}` of §4.1).
    CodeInBody(u16),
    /// A JSON object with `status: false` and a `reason` containing one of
    /// these (case-insensitive): the `200` refusal some methods send (§4.1).
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

/// What to do before accepting a rule's verdict (the vendor's advice, seed 004).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    No,
    /// 502: repeat [`RetryPolicy::retries_502`] times, [`RetryPolicy::delay_502`] apart.
    Repeat,
    /// 499: repeat [`RetryPolicy::retries_499`] times with twice the request
    /// timeout, after [`RetryPolicy::delay_502`].
    LongerTimeout,
}

/// One row of the classification table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub name: &'static str,
    pub scope: Scope,
    pub codes: Codes,
    pub body: BodyMatch,
    pub verdict: Verdict,
    pub retry: Retry,
}

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
        retry: Retry::No,
    }
}

const fn retried(r: Rule, retry: Retry) -> Rule {
    Rule { retry, ..r }
}

use BodyMatch as B;
use Codes::{One, Range};
use Verdict as V;

const STARTING: Outcome = Outcome::NotReady(NotReadyKind::Starting);

/// The Green-API classification table (DESIGN.md "Providers", green-api.md
/// §4, seed 004). Checked in order; the first matching row wins.
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

/// The classification of one reply: the rule that matched and its meaning.
#[derive(Clone, Debug, PartialEq)]
pub struct Classified {
    pub rule: &'static str,
    /// None for [`Verdict::Success`].
    pub outcome: Option<Outcome>,
    pub retry: Retry,
    /// Short, one line; may still hold the token if a proxy echoed the URL
    /// (the client scrubs it).
    pub detail: String,
}

/// Classifies a reply to `call`. Pure.
pub fn classify(call: Call, reply: &Reply) -> Classified {
    let json = reply.json();
    let texts = texts(reply, json.as_ref());
    for r in RULES {
        if !r.scope.covers(call) {
            continue;
        }
        let code_ok = match r.codes {
            One(c) => reply.status == c,
            Range(lo, hi) => (lo..=hi).contains(&reply.status),
        };
        if !code_ok || !body_matches(r.body, reply, json.as_ref(), &texts) {
            continue;
        }
        let outcome = match r.verdict {
            V::Is(o) => Some(o),
            V::RateLimited => Some(Outcome::RateLimited {
                retry_after: reply.retry_after,
            }),
            V::Success => None,
        };
        return Classified {
            rule: r.name,
            outcome,
            retry: r.retry,
            detail: detail(reply, json.as_ref()),
        };
    }
    // The last row matches every status code; this is unreachable in practice.
    Classified {
        rule: "unexpected status",
        outcome: Some(Outcome::SendFailed),
        retry: Retry::No,
        detail: detail(reply, json.as_ref()),
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
    let message = json.and_then(|j| {
        ["message", "description", "reason"]
            .into_iter()
            .find_map(|k| j.get(k).and_then(Value::as_str))
    });
    match message {
        Some(m) => http::short(&format!("HTTP {}: {m}", reply.status)),
        None if reply.body.trim().is_empty() => format!("HTTP {} with an empty body", reply.status),
        None if json.is_none() => http::short(&format!(
            "HTTP {}: {}",
            reply.status,
            reply.body.chars().take(100).collect::<String>()
        )),
        None => format!("HTTP {}", reply.status),
    }
}

/// The 466 body (§4.2): names the quota that is used up. The body says
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

/// Why a request to Green-API did not yield a usable answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    /// Short, one line, no URL, no token.
    pub detail: String,
    /// The [`RULES`] row that decided (or `transport`, `reply shape`).
    pub rule: &'static str,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.outcome)
    }
}

/// The result of one `sendMessage`.
#[derive(Clone, Debug, PartialEq)]
pub struct SendResult {
    /// [`Outcome::Delivered`] means only "accepted into the queue": Green-API
    /// answers 200 + idMessage even when nothing will ever leave (§3, §7).
    /// The scheduler confirms it with [`GreenApiClient::queue_contains`] before counting it.
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub detail: String,
    /// The `idMessage` Green-API returned.
    pub message_id: Option<String>,
    pub rule: &'static str,
}

/// Retries the vendor asks for (seed 004). One delay serves both 499 and 502.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before each retry (of a 502, and of a 499).
    pub delay_502: Duration,
    /// Retries after a 502 before giving up with `Unreachable` (vendor: 3).
    pub retries_502: u32,
    /// Retries after a 499, each with twice the request timeout, before
    /// giving up with `Timeout` (vendor: "increase the waiting time and repeat").
    pub retries_499: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            delay_502: Duration::from_secs(1),
            retries_502: 3,
            retries_499: 1,
        }
    }
}

/// An async "at most one permit per `min_interval`" gate. Callers wait for
/// their turn instead of failing; permits are granted in arrival order.
#[derive(Debug)]
pub struct Pacer {
    min_interval: Duration,
    /// When the next permit may be granted (None: now).
    next: tokio::sync::Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn new(min_interval: Duration) -> Self {
        Pacer {
            min_interval,
            next: tokio::sync::Mutex::new(None),
        }
    }

    /// Waits for a permit and returns the instant it was granted for. A
    /// caller cancelled while waiting still used its slot (conservative).
    pub async fn acquire(&self) -> Instant {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = match *next {
                Some(n) if n > now => n,
                _ => now,
            };
            *next = Some(at + self.min_interval);
            at
        };
        tokio::time::sleep_until(at).await;
        at
    }
}

/// One [`Pacer`] per rate-limited method of one instance. `sendMessage` is
/// allowed 50/s (§6) and a canary sends one message: not paced.
#[derive(Debug)]
struct Pacers {
    state: Pacer,
    settings: Pacer,
    queue: Pacer,
    reboot: Pacer,
}

impl Pacers {
    fn new(min_interval: Duration) -> Self {
        Pacers {
            state: Pacer::new(min_interval),
            settings: Pacer::new(min_interval),
            queue: Pacer::new(min_interval),
            reboot: Pacer::new(min_interval),
        }
    }

    fn get(&self, call: Call) -> Option<&Pacer> {
        match call {
            Call::State => Some(&self.state),
            Call::Settings => Some(&self.settings),
            Call::Queue => Some(&self.queue),
            Call::Reboot => Some(&self.reboot),
            Call::Send => None,
        }
    }
}

/// The instance token: never shown.
#[derive(Clone)]
struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One Green-API instance. Clones share the pacers and the attempt counter.
#[derive(Clone)]
pub struct GreenApiClient {
    http: reqwest::Client,
    base: Url,
    id_instance: String,
    token: Token,
    retry: RetryPolicy,
    pacers: Arc<Pacers>,
    attempts: Arc<AtomicU64>,
}

impl std::fmt::Debug for GreenApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GreenApiClient")
            .field("endpoint", &self.endpoint())
            .field("id_instance", &self.id_instance)
            .field("token", &self.token)
            .field("retry", &self.retry)
            .finish()
    }
}

impl GreenApiClient {
    /// `url` is the instance's `apiUrl` (e.g. `https://api.green-api.com`),
    /// `id_instance` its digits. Errors never contain the token.
    pub fn new(
        url: &str,
        id_instance: &str,
        api_token: &str,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let base = Url::parse(url).map_err(|e| format!("invalid Green-API url: {e}"))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err("invalid Green-API url: must be http:// or https://".to_string());
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err("invalid Green-API url: no query or fragment allowed".to_string());
        }
        if id_instance.is_empty()
            || id_instance.len() > 20
            || !id_instance.bytes().all(|b| b.is_ascii_digit())
        {
            return Err("invalid Green-API id_instance: must be 1 to 20 digits".to_string());
        }
        if api_token.is_empty()
            || !api_token
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'%'))
        {
            return Err(
                "invalid Green-API api token: must be printable ASCII without spaces, `/`, `?`, `#` or `%`"
                    .to_string(),
            );
        }
        Ok(GreenApiClient {
            http: http::build_client(connect_timeout)?,
            base,
            id_instance: id_instance.to_string(),
            token: Token(Arc::from(api_token)),
            retry: RetryPolicy::default(),
            pacers: Arc::new(Pacers::new(DEFAULT_MIN_INTERVAL)),
            attempts: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Replaces the retry policy (tests use delays of a few ms).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the per-method pacing interval (default [`DEFAULT_MIN_INTERVAL`];
    /// lower it only against a simulator).
    pub fn with_min_interval(mut self, min_interval: Duration) -> Self {
        self.pacers = Arc::new(Pacers::new(min_interval));
        self
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    pub fn id_instance(&self) -> &str {
        &self.id_instance
    }

    /// HTTP requests sent so far by this client and its clones (retries included).
    pub fn attempts_made(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// The endpoint for humans:
    /// `https://api.green-api.com/waInstance1101000001/<method>/<redacted>`.
    pub fn endpoint(&self) -> String {
        format!(
            "{}/waInstance{}/<method>/<redacted>",
            self.base.as_str().trim_end_matches('/'),
            self.id_instance
        )
    }

    /// `{url}/waInstance{id}/{method}/{token}`. Never formatted anywhere.
    fn url(&self, call: Call) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.push(&format!("waInstance{}", self.id_instance));
            path.push(call.method_name());
            path.push(&self.token.0);
        }
        url
    }

    /// Replaces every occurrence of the token (ASCII case-insensitive) with
    /// `<redacted>`: a proxy may echo the request path in its error page.
    fn scrub(&self, text: &str) -> String {
        scrub(text, &self.token.0)
    }

    fn failure(
        &self,
        outcome: Outcome,
        status: Option<u16>,
        detail: &str,
        rule: &'static str,
    ) -> Failure {
        Failure {
            outcome,
            http_status: status,
            detail: self.scrub(detail),
            rule,
        }
    }

    fn transport_failure(&self, t: Transport) -> Failure {
        match t {
            Transport::Unreachable(d) => self.failure(Outcome::Unreachable, None, &d, "transport"),
            Transport::Timeout(d) => self.failure(Outcome::Timeout, None, &d, "transport"),
        }
    }

    /// Sends `call` (paced), classifies the reply and applies the table's
    /// retries. Ok: a [`Verdict::Success`] reply to read further.
    async fn exchange(
        &self,
        call: Call,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Reply, Failure> {
        let mut retried_502 = 0;
        let mut retried_499 = 0;
        let mut request_timeout = timeout;
        loop {
            if let Some(p) = self.pacers.get(call) {
                p.acquire().await;
            }
            let mut req = self
                .http
                .request(call.http_method(), self.url(call))
                .timeout(request_timeout)
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let reply = http::send(req)
                .await
                .map_err(|t| self.transport_failure(t))?;
            let c = classify(call, &reply);
            let again = match c.retry {
                Retry::Repeat if retried_502 < self.retry.retries_502 => {
                    retried_502 += 1;
                    true
                }
                Retry::LongerTimeout if retried_499 < self.retry.retries_499 => {
                    retried_499 += 1;
                    request_timeout = timeout.saturating_mul(2);
                    true
                }
                _ => false,
            };
            if again {
                tracing::debug!(
                    id_instance = %self.id_instance,
                    method = call.method_name(),
                    status = reply.status,
                    rule = c.rule,
                    "green-api: retrying as the vendor advises"
                );
                tokio::time::sleep(self.retry.delay_502).await;
                continue;
            }
            return match c.outcome {
                None => Ok(reply),
                Some(outcome) => Err(self.failure(outcome, Some(reply.status), &c.detail, c.rule)),
            };
        }
    }

    /// The instance's state (`getStateInstance`).
    pub async fn state(&self, timeout: Duration) -> Result<InstanceState, Failure> {
        let reply = self.exchange(Call::State, None, timeout).await?;
        // The "state read" row only matches bodies that parse.
        reply
            .json()
            .as_ref()
            .and_then(InstanceState::from_json)
            .ok_or_else(|| {
                self.failure(
                    Outcome::SendFailed,
                    Some(reply.status),
                    "getStateInstance reply has no stateInstance",
                    "reply shape",
                )
            })
    }

    /// The instance's own chat id (`getSettings` `wid`), the default canary
    /// target. A missing or empty `wid` is a [`Outcome::BadRequest`]: the
    /// canary then needs an explicit chat.
    pub async fn wid(&self, timeout: Duration) -> Result<String, Failure> {
        let reply = self.exchange(Call::Settings, None, timeout).await?;
        reply
            .json()
            .as_ref()
            .and_then(|j| j.get("wid"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                self.failure(
                    Outcome::BadRequest,
                    Some(reply.status),
                    "getSettings reports no wid to send a self canary to; set canary chat",
                    "reply shape",
                )
            })
    }

    /// Queues one text (`sendMessage`). See [`SendResult::outcome`] for what
    /// "delivered" means here.
    pub async fn send_message(&self, chat_id: &str, text: &str, timeout: Duration) -> SendResult {
        let body = serde_json::json!({ "chatId": chat_id, "message": text });
        match self.exchange(Call::Send, Some(&body), timeout).await {
            Err(f) => SendResult {
                outcome: f.outcome,
                http_status: f.http_status,
                detail: f.detail,
                message_id: None,
                rule: f.rule,
            },
            Ok(reply) => {
                let id = reply
                    .json()
                    .as_ref()
                    .and_then(|j| j.get("idMessage"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                SendResult {
                    outcome: Outcome::Delivered,
                    http_status: Some(reply.status),
                    detail: self.scrub(&http::short(&format!(
                        "HTTP {}: message {} queued",
                        reply.status,
                        id.as_deref().unwrap_or("?")
                    ))),
                    message_id: id,
                    rule: "message queued",
                }
            }
        }
    }

    /// Whether `id_message` is still in the instance's send queue
    /// (`showMessagesQueue`). Items without a readable id are skipped; a
    /// `null` or empty body is an empty queue.
    pub async fn queue_contains(
        &self,
        id_message: &str,
        timeout: Duration,
    ) -> Result<bool, Failure> {
        let reply = self.exchange(Call::Queue, None, timeout).await?;
        Ok(queue_has(reply.json().as_ref(), id_message))
    }

    /// Reboots the instance (`reboot`). Ok means `{"isReboot": true}`;
    /// `starting` follows for seconds to minutes, so poll [`Self::state`].
    pub async fn reboot(&self, timeout: Duration) -> Result<(), Failure> {
        self.exchange(Call::Reboot, None, timeout).await.map(|_| ())
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

/// `text` with every ASCII-case-insensitive occurrence of `secret` replaced
/// by `<redacted>`.
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() || text.len() < secret.len() {
        return text.to_string();
    }
    let hay = text.to_ascii_lowercase();
    let needle = secret.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut from = 0;
    while let Some(pos) = hay[from..].find(&needle) {
        let start = from + pos;
        out.push_str(&text[last..start]);
        out.push_str("<redacted>");
        last = start + needle.len();
        from = last;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
#[path = "green_api_tests.rs"]
mod tests;
