//! A fake Green-API (WhatsApp product) on a real loopback port, for
//! integration tests and the demo. It serves
//! `/waInstance{id}/{method}/{token}` for the methods the watchdog uses
//! (`getStateInstance`, `getSettings`, `sendMessage`, `showMessagesQueue`,
//! `reboot`) and for the ones it must never use (`logout`, `setSettings`,
//! `clearMessagesQueue`), so a test can prove from the call log that they
//! were never called. Facts: `shared/providers/green-api.md` (§ numbers below).
//!
//! Owns: the instance state machine of the simulator, the send queue, fault
//! injection, the call log and the `/_sim/...` control routes. Does not own:
//! anything of the daemon (it only sees HTTP).
//!
//! Time: everything that changes with time (a reboot's `starting` phase, a
//! queued message leaving the queue) is computed lazily from the
//! [`Clock`] in [`GreenSimOptions`] whenever a request or a control call
//! looks, so the simulator runs no task besides the server and tests drive
//! it with `Clock::manual`. Injected latency is real time (it exists to
//! exercise the client's real-time request timeouts).
//!
//! Modelling choices for the UNCONFIRMED items of green-api.md:
//! * error bodies: plain text by default; per instance ([`GreenSimControl::set_error_form`])
//!   or per injected fault ([`BodyForm`]) they can be `{"message": ...}` instead;
//! * `sendMessage` to an instance that is not `authorized`: queued with 200 by
//!   default (D-send, D-track); [`SendWhenNotReady::Reject`] answers 400 instead (D-err);
//! * the yellow card (D-yellow: "the API answers 200 but nothing is sent"):
//!   [`QueueMode::SilentDrop`] accepts the message with 200 + idMessage, never
//!   puts it in the queue and never sends it; it shows up in
//!   [`GreenSimControl::messages`] as [`MessageStatus::Dropped`]. Setting the
//!   *state* to `yellowCard` is independent: messages then wait in the queue
//!   (D-state: "new sends sit in the queue for 24 h");
//! * method names in the path match case-insensitively; the call log records
//!   the canonical lowerCamel name;
//! * `clearMessagesQueue` answers `{"isCleared": true}` (field name not documented);
//! * 403/401/404 bodies are the plain texts `Forbidden`/`Unauthorized`/`Not Found`;
//!   a path without `waInstance{digits}` is a 403 (§4.1 "wrong request URL");
//! * a reboot (or setSettings) shows `starting` for `reboot_starting_for`,
//!   then the state from before, whatever it was (also `yellowCard`: D-yellow
//!   says a reboot resumes sending, but whether it clears the state is not
//!   documented; a test sets the state it wants);
//! * a queued message leaves the queue at the first look after
//!   `queued_at + queue_drain_after` at which the instance is `authorized`
//!   (and the queue mode is [`QueueMode::Drains`]);
//! * the §6 rate limits (429) are off unless [`GreenSimControl::set_rate_limits`]
//!   turns them on, so tests on a manual clock may repeat a call at one instant.
//!
//! Tokens never leave the simulator: not in the call log, not in the control
//! API, not in `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::{Clock, Timestamp};

/// How long `starting` lasts after a reboot unless configured (docs: seconds
/// to about 2 minutes, §2.3).
pub const DEFAULT_REBOOT_STARTING_FOR: Duration = Duration::from_secs(30);

/// How long a queued message stays in the queue of a healthy instance.
pub const DEFAULT_QUEUE_DRAIN_AFTER: Duration = Duration::from_secs(1);

/// The call log keeps at most this many records (the oldest half goes first).
pub const MAX_CALLS: usize = 100_000;

/// The longest `message` sendMessage accepts (§3).
const MAX_MESSAGE_CHARS: usize = 20_000;

/// `getStateInstance` values (§2.1), plus the JSON `null` of a new instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimState {
    NotAuthorized,
    Authorized,
    Blocked,
    SleepMode,
    Starting,
    YellowCard,
    /// `getStateInstance` answers JSON `null` (D-create).
    Provisioning,
}

impl SimState {
    pub const ALL: [SimState; 7] = [
        SimState::NotAuthorized,
        SimState::Authorized,
        SimState::Blocked,
        SimState::SleepMode,
        SimState::Starting,
        SimState::YellowCard,
        SimState::Provisioning,
    ];

    /// The wire value; None for [`SimState::Provisioning`] (JSON `null`).
    pub fn wire(self) -> Option<&'static str> {
        match self {
            SimState::NotAuthorized => Some("notAuthorized"),
            SimState::Authorized => Some("authorized"),
            SimState::Blocked => Some("blocked"),
            SimState::SleepMode => Some("sleepMode"),
            SimState::Starting => Some("starting"),
            SimState::YellowCard => Some("yellowCard"),
            SimState::Provisioning => None,
        }
    }

    /// Parses a wire value; `None` (JSON null) is [`SimState::Provisioning`].
    pub fn from_wire(value: Option<&str>) -> Option<SimState> {
        match value {
            None => Some(SimState::Provisioning),
            Some(v) => SimState::ALL
                .into_iter()
                .find(|s| s.wire().is_some_and(|w| w.eq_ignore_ascii_case(v))),
        }
    }
}

/// The API methods the simulator serves (green-api.md §1 verbs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiMethod {
    GetStateInstance,
    GetSettings,
    SendMessage,
    ShowMessagesQueue,
    Reboot,
    /// Never called by the watchdog: wipes the link.
    Logout,
    /// Never called by the watchdog: reboots the instance.
    SetSettings,
    /// Never called by the watchdog: destroys queued messages.
    ClearMessagesQueue,
}

impl ApiMethod {
    pub const ALL: [ApiMethod; 8] = [
        ApiMethod::GetStateInstance,
        ApiMethod::GetSettings,
        ApiMethod::SendMessage,
        ApiMethod::ShowMessagesQueue,
        ApiMethod::Reboot,
        ApiMethod::Logout,
        ApiMethod::SetSettings,
        ApiMethod::ClearMessagesQueue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ApiMethod::GetStateInstance => "getStateInstance",
            ApiMethod::GetSettings => "getSettings",
            ApiMethod::SendMessage => "sendMessage",
            ApiMethod::ShowMessagesQueue => "showMessagesQueue",
            ApiMethod::Reboot => "reboot",
            ApiMethod::Logout => "logout",
            ApiMethod::SetSettings => "setSettings",
            ApiMethod::ClearMessagesQueue => "clearMessagesQueue",
        }
    }

    /// Case-insensitive (§1: casing on the server is UNCONFIRMED).
    pub fn from_name(name: &str) -> Option<ApiMethod> {
        ApiMethod::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The documented verb; any other gets 404 (§1).
    pub fn verb(self) -> Method {
        match self {
            ApiMethod::SendMessage | ApiMethod::SetSettings => Method::POST,
            _ => Method::GET,
        }
    }

    /// Requests per second per instance (§6).
    fn rate_limit(self) -> usize {
        match self {
            ApiMethod::SendMessage => 50,
            _ => 1,
        }
    }
}

/// One instance the simulator starts with.
#[derive(Clone)]
pub struct SimInstance {
    /// `idInstance`, digits.
    pub id: String,
    /// `apiTokenInstance`.
    pub token: String,
    /// The account's own chat (`getSettings` `wid`), e.g. `79876543210@c.us`.
    pub wid: String,
    pub state: SimState,
}

impl SimInstance {
    /// An `authorized` instance.
    pub fn new(id: &str, token: &str, wid: &str) -> Self {
        SimInstance {
            id: id.to_string(),
            token: token.to_string(),
            wid: wid.to_string(),
            state: SimState::Authorized,
        }
    }
}

impl fmt::Debug for SimInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimInstance")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .field("wid", &self.wid)
            .field("state", &self.state)
            .finish()
    }
}

/// How the simulator starts.
#[derive(Clone, Debug)]
pub struct GreenSimOptions {
    pub instances: Vec<SimInstance>,
    /// Simulated time for reboots, the queue and the call log.
    pub clock: Clock,
    /// How long `starting` lasts after `reboot` (or `setSettings`).
    pub reboot_starting_for: Duration,
    /// How long a queued message stays queued on an `authorized` instance.
    pub queue_drain_after: Duration,
}

impl GreenSimOptions {
    pub fn new(clock: Clock, instances: Vec<SimInstance>) -> Self {
        GreenSimOptions {
            instances,
            clock,
            reboot_starting_for: DEFAULT_REBOOT_STARTING_FOR,
            queue_drain_after: DEFAULT_QUEUE_DRAIN_AFTER,
        }
    }
}

/// What happens to messages that `sendMessage` accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueMode {
    /// They leave the queue `queue_drain_after` after being queued, once the
    /// instance is `authorized`.
    Drains,
    /// They stay in the queue forever (ISS-42, ISS-791, ISS-1084).
    NeverDrains,
    /// They stay in the queue until the next `reboot`, which the vendor
    /// recommends for a stuck queue (ISS-42, ISS-227): afterwards the queue
    /// drains again, the stuck messages included.
    StuckUntilReboot,
    /// The yellow card of D-yellow: 200 + idMessage, never queued, never sent.
    SilentDrop,
}

/// What `sendMessage` does when the instance is `starting`, `notAuthorized`
/// or still provisioning (UNCONFIRMED, §UNCONFIRMED summary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendWhenNotReady {
    /// 200 + idMessage; the message waits in the queue (D-send, D-track).
    Queue,
    /// 400 `instance in starting process try later` / `instance account not authorized` (D-err).
    Reject,
}

/// The shape of an error body (§4.1: UNCONFIRMED which the server uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyForm {
    /// `text/plain`: the text as is.
    Plain,
    /// `application/json`: `{"message": text}`.
    Json,
    /// `application/json`: the text is already the whole JSON body.
    Raw,
}

/// The documented error replies (§4.1, §4.2, seed 004), ready to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Canned {
    Starting,
    StartingOrNotAuthorized,
    NotAuthorized,
    Expired,
    Deleted,
    BadRequestData,
    ValidationFailed,
    BadRequest,
    ChatIdFormat,
    FieldRequired,
    FieldNotAllowed,
    FieldEmpty,
    MessageTooLong,
    MessageIdTooShort,
    UnexpectedToken,
    ChatLimit2021,
    Unauthorized,
    Forbidden,
    WrongVerb,
    TooManyRequests,
    /// 466 with `correspondentsStatus` (the body's `QUOTE` spelling).
    Quota,
    /// 466 with `invokeStatus` in the webhook's `QUOTA` spelling.
    QuotaWebhookSpelling,
    ClientClosedRequest,
    ServerError,
    BadGateway,
    ServiceUnavailable,
    GatewayTimeout,
    /// 200 `{"code":401,"description":"Unauthorized"}` (ISS-619).
    CodeInBody401,
    /// 200 `{"status":false,"reason":"instance is starting or not authorized"}`.
    Refusal,
    /// 200 `{"isReboot": false}`.
    RebootFalse,
}

impl Canned {
    pub const ALL: [Canned; 30] = [
        Canned::Starting,
        Canned::StartingOrNotAuthorized,
        Canned::NotAuthorized,
        Canned::Expired,
        Canned::Deleted,
        Canned::BadRequestData,
        Canned::ValidationFailed,
        Canned::BadRequest,
        Canned::ChatIdFormat,
        Canned::FieldRequired,
        Canned::FieldNotAllowed,
        Canned::FieldEmpty,
        Canned::MessageTooLong,
        Canned::MessageIdTooShort,
        Canned::UnexpectedToken,
        Canned::ChatLimit2021,
        Canned::Unauthorized,
        Canned::Forbidden,
        Canned::WrongVerb,
        Canned::TooManyRequests,
        Canned::Quota,
        Canned::QuotaWebhookSpelling,
        Canned::ClientClosedRequest,
        Canned::ServerError,
        Canned::BadGateway,
        Canned::ServiceUnavailable,
        Canned::GatewayTimeout,
        Canned::CodeInBody401,
        Canned::Refusal,
        Canned::RebootFalse,
    ];

    pub fn status(self) -> u16 {
        match self {
            Canned::Starting
            | Canned::StartingOrNotAuthorized
            | Canned::NotAuthorized
            | Canned::Expired
            | Canned::Deleted
            | Canned::BadRequestData
            | Canned::ValidationFailed
            | Canned::BadRequest
            | Canned::ChatIdFormat
            | Canned::FieldRequired
            | Canned::FieldNotAllowed
            | Canned::FieldEmpty
            | Canned::MessageTooLong
            | Canned::MessageIdTooShort
            | Canned::UnexpectedToken
            | Canned::ChatLimit2021 => 400,
            Canned::Unauthorized => 401,
            Canned::Forbidden => 403,
            Canned::WrongVerb => 404,
            Canned::TooManyRequests => 429,
            Canned::Quota | Canned::QuotaWebhookSpelling => 466,
            Canned::ClientClosedRequest => 499,
            Canned::ServerError => 500,
            Canned::BadGateway => 502,
            Canned::ServiceUnavailable => 503,
            Canned::GatewayTimeout => 504,
            Canned::CodeInBody401 | Canned::Refusal | Canned::RebootFalse => 200,
        }
    }

    /// The body text (the error id of the docs, or a whole JSON body for the
    /// rows that [`Canned::is_json_body`]).
    pub fn text(self) -> &'static str {
        match self {
            Canned::Starting => "instance in starting process try later",
            Canned::StartingOrNotAuthorized => "instance is starting or not authorized",
            Canned::NotAuthorized => "instance account not authorized",
            Canned::Expired => {
                "Instance account is expired. Renew your instance from personal area"
            }
            Canned::Deleted => "Instance is deleted",
            Canned::BadRequestData => "bad request data",
            Canned::ValidationFailed => {
                "Validation failed. Details: 'chatId' must be one of the next formats: 'phone_number@c.us' or 'group_id@g.us'"
            }
            Canned::BadRequest => "Bad Request",
            Canned::ChatIdFormat => {
                "'chatId' must be one of the next formats: 'phone_number@c.us' or 'group_id@g.us'"
            }
            Canned::FieldRequired => "'message' is required",
            Canned::FieldNotAllowed => "'foo' is not allowed",
            Canned::FieldEmpty => "'message' is not allowed to be empty",
            Canned::MessageTooLong => {
                "'message' length must be less than or equal to 20000 characters long"
            }
            Canned::MessageIdTooShort => "'message id' must be at least 16 symbols",
            Canned::UnexpectedToken => "Unexpected token } in JSON at position 42",
            Canned::ChatLimit2021 => {
                "You have used up the chat limit on your tariff. Renew you instance from personal area."
            }
            Canned::Unauthorized => "Unauthorized",
            Canned::Forbidden => "Forbidden",
            Canned::WrongVerb => "Not Found",
            Canned::TooManyRequests => "Too Many Requests",
            Canned::Quota => {
                r#"{"invokeStatus":{"method":"sendmessage","used":12,"total":0,"status":"QUOTE_ALLOWED","description":""},"correspondentsStatus":{"method":"correspondents","used":3,"total":3,"status":"CORRESPONDENTS_QUOTE_EXCEEDED","description":"Monthly quota has been exceeded. You can send messages to chats: 79001234567@c.us, 79001234568@c.us, 79001234569@c.us"}}"#
            }
            Canned::QuotaWebhookSpelling => {
                r#"{"invokeStatus":{"method":"sendmessage","used":100,"total":100,"status":"QUOTA_EXCEEDED","description":"Monthly quota has been exceeded"}}"#
            }
            Canned::ClientClosedRequest => "Client Closed Request",
            Canned::ServerError => {
                "File from url exceeded max upload size. Size: 120mb Limit: 100mb Url: https://example.com/big.bin"
            }
            Canned::BadGateway => "Bad Gateway",
            Canned::ServiceUnavailable => "Service Unavailable",
            Canned::GatewayTimeout => "Gateway Timeout",
            Canned::CodeInBody401 => r#"{"code":401,"description":"Unauthorized"}"#,
            Canned::Refusal => {
                r#"{"status":false,"reason":"instance is starting or not authorized"}"#
            }
            Canned::RebootFalse => r#"{"isReboot":false}"#,
        }
    }

    /// Bodies that are JSON by documentation (466, the 200 shapes): the
    /// requested [`BodyForm`] does not apply to them.
    pub fn is_json_body(self) -> bool {
        matches!(
            self,
            Canned::Quota
                | Canned::QuotaWebhookSpelling
                | Canned::CodeInBody401
                | Canned::Refusal
                | Canned::RebootFalse
        )
    }

    /// The snake_case name used by the HTTP control API.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// One injected reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub status: u16,
    pub body: String,
    pub form: BodyForm,
    /// `Retry-After` in seconds (none is documented for 429).
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Real-time delay before this reply, instead of the instance's latency
    /// (so a test can answer the first attempt fast and a retry slowly).
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

impl Fault {
    pub fn new(status: u16, body: &str, form: BodyForm) -> Fault {
        Fault {
            status,
            body: body.to_string(),
            form,
            retry_after: None,
            delay_ms: None,
        }
    }

    /// A documented reply; `form` applies to text bodies only.
    pub fn canned(c: Canned, form: BodyForm) -> Fault {
        let form = if c.is_json_body() {
            BodyForm::Raw
        } else {
            form
        };
        Fault::new(c.status(), c.text(), form)
    }

    pub fn with_retry_after(mut self, secs: u64) -> Fault {
        self.retry_after = Some(secs);
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Fault {
        self.delay_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self
    }
}

/// One request the simulator received, in arrival order. No token, no path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The simulator's clock when the request arrived.
    pub at: Timestamp,
    /// `idInstance` from the path (as sent; may be unknown).
    pub instance: String,
    /// Canonical method name, or the path segment as sent if unknown.
    pub method_name: String,
    /// `GET`, `POST`, ...
    pub http_method: String,
    /// The status the simulator answered with.
    pub status: u16,
}

/// What became of a message `sendMessage` accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Queued,
    /// Left the queue.
    Sent,
    /// Accepted and silently dropped ([`QueueMode::SilentDrop`]).
    Dropped,
    /// Removed by `clearMessagesQueue`.
    Cleared,
}

/// A message the simulator accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimMessage {
    pub id_message: String,
    pub chat_id: String,
    pub text: String,
    pub status: MessageStatus,
    pub queued_at: Timestamp,
    /// When the simulator noticed it left the queue (sent, dropped, cleared).
    pub done_at: Option<Timestamp>,
}

/// An instance as the control API shows it (no token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSnapshot {
    pub id: String,
    pub wid: String,
    /// The linked state (null = provisioning), what a reboot returns to.
    pub state: Option<String>,
    /// What `getStateInstance` answers now.
    pub effective_state: Option<String>,
    /// End of the current reboot's `starting` phase.
    pub starting_until: Option<Timestamp>,
    pub queue_mode: QueueMode,
    pub send_when_not_ready: SendWhenNotReady,
    pub error_form: BodyForm,
    pub rate_limits: bool,
    pub queued: usize,
    pub faults_pending: u32,
}

/// Why a control call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no instance `{0}`")]
    UnknownInstance(String),
    #[error("invalid control request: {0}")]
    Invalid(String),
}

struct Injection {
    /// None: every method.
    method: Option<ApiMethod>,
    remaining: u32,
    fault: Fault,
}

struct Inst {
    token: String,
    wid: String,
    state: SimState,
    starting_until: Option<Timestamp>,
    queue_mode: QueueMode,
    send_when_not_ready: SendWhenNotReady,
    error_form: BodyForm,
    rate_limits: bool,
    /// Accepted requests per method in the last second (only with `rate_limits`).
    recent: BTreeMap<ApiMethod, Vec<Timestamp>>,
    injections: Vec<Injection>,
    /// Real-time delay per method (None key: every method).
    latency: BTreeMap<Option<ApiMethod>, Duration>,
    messages: Vec<SimMessage>,
    /// The original `sendMessage` bodies, by idMessage (showMessagesQueue echoes them).
    bodies: BTreeMap<String, Value>,
}

impl Inst {
    fn effective(&self, now: Timestamp) -> SimState {
        match self.starting_until {
            Some(until) if now < until => SimState::Starting,
            _ => self.state,
        }
    }

    /// Applies what time has done since the last look.
    fn settle(&mut self, now: Timestamp, drain_after: Duration) {
        if self.starting_until.is_some_and(|u| now >= u) {
            self.starting_until = None;
        }
        if self.queue_mode != QueueMode::Drains || self.effective(now) != SimState::Authorized {
            return;
        }
        for m in &mut self.messages {
            if m.status == MessageStatus::Queued && now >= m.queued_at.plus(drain_after) {
                m.status = MessageStatus::Sent;
                m.done_at = Some(now);
            }
        }
    }

    fn reboot(&mut self, now: Timestamp, starting_for: Duration) {
        self.starting_until = Some(now.plus(starting_for));
        if self.queue_mode == QueueMode::StuckUntilReboot {
            // Stuck messages leave once the instance is authorized again.
            self.queue_mode = QueueMode::Drains;
        }
    }

    fn snapshot(&self, id: &str, now: Timestamp) -> InstanceSnapshot {
        InstanceSnapshot {
            id: id.to_string(),
            wid: self.wid.clone(),
            state: self.state.wire().map(str::to_string),
            effective_state: self.effective(now).wire().map(str::to_string),
            starting_until: self.starting_until,
            queue_mode: self.queue_mode,
            send_when_not_ready: self.send_when_not_ready,
            error_form: self.error_form,
            rate_limits: self.rate_limits,
            queued: self
                .messages
                .iter()
                .filter(|m| m.status == MessageStatus::Queued)
                .count(),
            faults_pending: self.injections.iter().map(|i| i.remaining).sum(),
        }
    }
}

struct Inner {
    instances: BTreeMap<String, Inst>,
    calls: Vec<CallRecord>,
}

struct Shared {
    clock: Clock,
    reboot_starting_for: Duration,
    queue_drain_after: Duration,
    inner: Mutex<Inner>,
}

impl Shared {
    fn new(opts: GreenSimOptions) -> std::io::Result<Arc<Shared>> {
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        let mut instances = BTreeMap::new();
        for i in opts.instances {
            if i.id.is_empty() || !i.id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!("instance id `{}` is not digits", i.id)));
            }
            if i.token.is_empty() || i.token.contains('/') {
                return Err(invalid(format!("instance `{}`: invalid token", i.id)));
            }
            let inst = Inst {
                token: i.token,
                wid: i.wid,
                state: i.state,
                starting_until: None,
                queue_mode: QueueMode::Drains,
                send_when_not_ready: SendWhenNotReady::Queue,
                error_form: BodyForm::Plain,
                rate_limits: false,
                recent: BTreeMap::new(),
                injections: Vec::new(),
                latency: BTreeMap::new(),
                messages: Vec::new(),
                bodies: BTreeMap::new(),
            };
            if instances.insert(i.id.clone(), inst).is_some() {
                return Err(invalid(format!("instance `{}` listed twice", i.id)));
            }
        }
        Ok(Arc::new(Shared {
            clock: opts.clock,
            reboot_starting_for: opts.reboot_starting_for,
            queue_drain_after: opts.queue_drain_after,
            inner: Mutex::new(Inner {
                instances,
                calls: Vec::new(),
            }),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on a settled instance.
    fn with_inst<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Inst, Timestamp) -> T,
    ) -> Result<T, ControlError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let inst = inner
            .instances
            .get_mut(id)
            .ok_or_else(|| ControlError::UnknownInstance(id.to_string()))?;
        inst.settle(now, self.queue_drain_after);
        Ok(f(inst, now))
    }
}

// ---------------------------------------------------------------------------
// Server

/// A running simulator. Dropping it stops the server too (without waiting).
pub struct GreenSim {
    addr: SocketAddr,
    control: GreenSimControl,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl GreenSim {
    /// The address actually bound (the port is real when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL (the instance `apiUrl`), e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A handle on the simulator's state; clones share it.
    pub fn control(&self) -> GreenSimControl {
        self.control.clone()
    }

    /// Stops accepting connections, lets in-flight requests finish, and
    /// waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "green-api simulator stopped with an error")
                }
                Err(e) => tracing::warn!(error = %e, "green-api simulator task failed"),
            }
        }
    }
}

impl Drop for GreenSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds `listen` and serves the simulator on a task owned by the returned
/// [`GreenSim`]. Fails if the address cannot be bound or the instances are
/// invalid (id not digits, empty token, an id twice).
pub async fn start(listen: SocketAddr, opts: GreenSimOptions) -> std::io::Result<GreenSim> {
    let shared = Shared::new(opts)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(shared.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                // A dropped sender also means "stop".
                let _ = stopped.await;
            })
            .await
    });
    Ok(GreenSim {
        addr,
        control: GreenSimControl { shared },
        stop: Some(stop),
        task: Some(task),
    })
}

/// Serves the simulator on `listen` until `shutdown` resolves (for
/// `wa-watchdog simulate`); faults are injected over `/_sim/...`.
pub async fn run_standalone(
    listen: SocketAddr,
    opts: GreenSimOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Shared::new(opts)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(url = %format!("http://{addr}"), "green-api simulator listening");
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/instances", get(ctl_instances))
        .route("/_sim/instances/{id}", get(ctl_instance))
        .route("/_sim/instances/{id}/state", put(ctl_set_state))
        .route("/_sim/instances/{id}/queue_mode", put(ctl_set_queue_mode))
        .route(
            "/_sim/instances/{id}/send_when_not_ready",
            put(ctl_set_send_when_not_ready),
        )
        .route("/_sim/instances/{id}/error_form", put(ctl_set_error_form))
        .route("/_sim/instances/{id}/rate_limits", put(ctl_set_rate_limits))
        .route("/_sim/instances/{id}/latency", put(ctl_set_latency))
        .route(
            "/_sim/instances/{id}/faults",
            post(ctl_inject).delete(ctl_clear_faults),
        )
        .route("/_sim/instances/{id}/messages", get(ctl_messages))
        .route("/_sim/calls", get(ctl_calls).delete(ctl_clear_calls))
        .route("/_sim/calls/counts", get(ctl_counts))
        .route("/_sim/canned", get(ctl_canned))
        .route("/_sim/clock", get(ctl_clock))
        .route("/_sim/clock/advance", post(ctl_clock_advance))
        .fallback(dispatch)
        .with_state(shared)
}

// ---------------------------------------------------------------------------
// The Green-API routes

fn text_reply(status: u16, text: &str) -> Response {
    reply(&Fault::new(status, text, BodyForm::Plain))
}

fn json_reply(status: u16, body: &Value) -> Response {
    reply(&Fault::new(status, &body.to_string(), BodyForm::Raw))
}

fn reply(f: &Fault) -> Response {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (content_type, body) = match f.form {
        BodyForm::Plain => ("text/plain; charset=utf-8", f.body.clone()),
        BodyForm::Json => (
            "application/json; charset=utf-8",
            json!({ "message": f.body }).to_string(),
        ),
        BodyForm::Raw => ("application/json; charset=utf-8", f.body.clone()),
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(secs) = f.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// `%XX` decoding of one path segment (the client encodes unusual token characters).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One Green-API request, decoded once.
struct Incoming {
    method: Method,
    /// The digits after `waInstance` (empty if the path has no such segment).
    instance: String,
    /// The method segment as sent.
    method_segment: String,
    api: Option<ApiMethod>,
    token: Option<String>,
    segment_count: usize,
    body: Bytes,
}

impl Incoming {
    fn new(method: Method, uri: &Uri, body: Bytes) -> Incoming {
        let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
        let instance = segments
            .first()
            .and_then(|s| {
                s.get(..10)
                    .filter(|p| p.eq_ignore_ascii_case("waInstance"))
                    .map(|_| &s[10..])
            })
            .unwrap_or("");
        let method_segment = segments.get(1).copied().unwrap_or("");
        Incoming {
            method,
            instance: instance.to_string(),
            method_segment: method_segment.to_string(),
            api: ApiMethod::from_name(method_segment),
            token: segments.get(2).map(|t| percent_decode(t)),
            segment_count: segments.len(),
            body,
        }
    }

    /// The call log's view: canonical names, and nothing that could be a
    /// token (a client that drops the method segment puts its token there).
    fn record(&self, at: Timestamp, status: u16, inner: &Inner) -> CallRecord {
        let is_token = |s: &str| inner.instances.values().any(|i| i.token == s);
        let instance = if !self.instance.is_empty()
            && self.instance.len() <= 20
            && self.instance.bytes().all(|b| b.is_ascii_digit())
        {
            self.instance.clone()
        } else {
            "<invalid>".to_string()
        };
        let method_name = match self.api {
            Some(m) => m.name().to_string(),
            None if !self.method_segment.is_empty()
                && self.method_segment.len() <= 64
                && self.method_segment.bytes().all(|b| b.is_ascii_alphabetic())
                && !is_token(&self.method_segment) =>
            {
                self.method_segment.clone()
            }
            None => "<unknown>".to_string(),
        };
        CallRecord {
            at,
            instance,
            method_name,
            http_method: self.method.as_str().to_string(),
            status,
        }
    }
}

/// Every Green-API request: one choke point, so the call log, faults and
/// latency cover all of them, and axum's own 405s never leak (Green-API
/// answers a wrong verb with 404, §1).
async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let now = shared.clock.now();
    let req = Incoming::new(method, &uri, body);
    let (resp, latency) = {
        let mut inner = shared.lock();
        let (resp, latency) = answer(&shared, &mut inner, now, &req);
        let record = req.record(now, resp.status().as_u16(), &inner);
        if inner.calls.len() >= MAX_CALLS {
            // A long demo run: keep the newer half.
            inner.calls.drain(..MAX_CALLS / 2);
        }
        inner.calls.push(record);
        (resp, latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    resp
}

/// The reply to one request and the real-time delay before sending it.
fn answer(
    shared: &Shared,
    inner: &mut Inner,
    now: Timestamp,
    req: &Incoming,
) -> (Response, Duration) {
    let none = Duration::ZERO;
    if req.method == Method::OPTIONS {
        return (StatusCode::NO_CONTENT.into_response(), none);
    }
    // §4.1: 403 for a bad idInstance or a wrong request URL.
    let Some(inst) = inner.instances.get_mut(&req.instance) else {
        return (text_reply(403, "Forbidden"), none);
    };
    match &req.token {
        Some(t) if *t == inst.token => {}
        _ => return (text_reply(401, "Unauthorized"), none),
    }
    let Some(api) = req.api else {
        return (text_reply(404, "Not Found"), none);
    };
    if req.method != api.verb() || req.segment_count != 3 {
        return (text_reply(404, "Not Found"), none);
    }
    let latency = inst
        .latency
        .get(&Some(api))
        .or_else(|| inst.latency.get(&None))
        .copied()
        .unwrap_or(none);
    inst.settle(now, shared.queue_drain_after);

    if inst.rate_limits {
        let window_start = now.minus(Duration::from_secs(1));
        let recent = inst.recent.entry(api).or_default();
        recent.retain(|t| *t > window_start);
        if recent.len() >= api.rate_limit() {
            return (text_reply(429, "Too Many Requests"), latency);
        }
        recent.push(now);
    }

    if let Some(inj) = inst
        .injections
        .iter_mut()
        .find(|i| i.remaining > 0 && i.method.is_none_or(|m| m == api))
    {
        inj.remaining -= 1;
        let resp = reply(&inj.fault);
        let latency = inj.fault.delay_ms.map_or(latency, Duration::from_millis);
        inst.injections.retain(|i| i.remaining > 0);
        return (resp, latency);
    }

    let resp = match api {
        ApiMethod::GetStateInstance => match inst.effective(now).wire() {
            Some(s) => json_reply(200, &json!({ "stateInstance": s })),
            None => json_reply(200, &Value::Null),
        },
        ApiMethod::GetSettings => json_reply(200, &settings(&inst.wid)),
        ApiMethod::SendMessage => send_message(inst, now, &req.body),
        ApiMethod::ShowMessagesQueue => {
            let items: Vec<Value> = inst
                .messages
                .iter()
                .filter(|m| m.status == MessageStatus::Queued)
                .map(|m| {
                    json!({
                        "messageID": m.id_message,
                        "type": "sendMessage",
                        "body": inst.bodies.get(&m.id_message).cloned().unwrap_or(Value::Null),
                    })
                })
                .collect();
            json_reply(200, &Value::Array(items))
        }
        ApiMethod::Reboot => {
            inst.reboot(now, shared.reboot_starting_for);
            json_reply(200, &json!({ "isReboot": true }))
        }
        ApiMethod::Logout => {
            inst.state = SimState::NotAuthorized;
            inst.starting_until = None;
            json_reply(200, &json!({ "isLogout": true }))
        }
        ApiMethod::SetSettings => match serde_json::from_slice::<Value>(&req.body) {
            Ok(Value::Object(o)) if !o.is_empty() => {
                // §2.5: saving settings reboots the instance.
                inst.reboot(now, shared.reboot_starting_for);
                json_reply(200, &json!({ "saveSettings": true }))
            }
            _ => error_reply(inst.error_form, 400, Canned::BadRequestData.text()),
        },
        ApiMethod::ClearMessagesQueue => {
            for m in &mut inst.messages {
                if m.status == MessageStatus::Queued {
                    m.status = MessageStatus::Cleared;
                    m.done_at = Some(now);
                }
            }
            json_reply(200, &json!({ "isCleared": true }))
        }
    };
    (resp, latency)
}

fn error_reply(form: BodyForm, status: u16, text: &str) -> Response {
    reply(&Fault::new(status, text, form))
}

/// A `getSettings` body (§2.5): flags are the strings "yes"/"no".
fn settings(wid: &str) -> Value {
    json!({
        "wid": wid,
        "countryInstance": "",
        "typeAccount": "",
        "webhookUrl": "",
        "webhookUrlToken": "",
        "delaySendMessagesMilliseconds": 5000,
        "markIncomingMessagesReaded": "no",
        "markIncomingMessagesReadedOnReply": "no",
        "sharedSession": "no",
        "outgoingWebhook": "no",
        "outgoingMessageWebhook": "no",
        "outgoingAPIMessageWebhook": "no",
        "incomingWebhook": "no",
        "deviceWebhook": "no",
        "statusInstanceWebhook": "no",
        "stateWebhook": "no",
        "enableMessagesHistory": "no",
        "keepOnlineStatus": "no",
        "pollMessageWebhook": "no",
        "incomingBlockWebhook": "no",
        "incomingCallWebhook": "no",
        "editedMessageWebhook": "no",
        "deletedMessageWebhook": "no"
    })
}

/// Fields sendMessage accepts (§3).
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

fn send_message(inst: &mut Inst, now: Timestamp, body: &Bytes) -> Response {
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

// ---------------------------------------------------------------------------
// Control: Rust handle

/// A handle on a running simulator's state. Clones share it.
#[derive(Clone)]
pub struct GreenSimControl {
    shared: Arc<Shared>,
}

impl fmt::Debug for GreenSimControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenSimControl").finish_non_exhaustive()
    }
}

impl GreenSimControl {
    /// The simulator's clock (advance it to move reboots and the queue along).
    pub fn clock(&self) -> Clock {
        self.shared.clock.clone()
    }

    pub fn instances(&self) -> Vec<InstanceSnapshot> {
        let now = self.shared.clock.now();
        let mut inner = self.shared.lock();
        inner
            .instances
            .iter_mut()
            .map(|(id, inst)| {
                inst.settle(now, self.shared.queue_drain_after);
                inst.snapshot(id, now)
            })
            .collect()
    }

    pub fn instance(&self, id: &str) -> Result<InstanceSnapshot, ControlError> {
        self.shared.with_inst(id, |i, now| i.snapshot(id, now))
    }

    /// What `getStateInstance` answers now.
    pub fn state(&self, id: &str) -> Result<SimState, ControlError> {
        self.shared.with_inst(id, |i, now| i.effective(now))
    }

    /// Sets the linked state and ends any reboot in progress.
    pub fn set_state(&self, id: &str, state: SimState) -> Result<(), ControlError> {
        self.shared.with_inst(id, |i, _| {
            i.state = state;
            i.starting_until = None;
        })
    }

    pub fn set_queue_mode(&self, id: &str, mode: QueueMode) -> Result<(), ControlError> {
        self.shared.with_inst(id, |i, _| i.queue_mode = mode)
    }

    pub fn set_send_when_not_ready(
        &self,
        id: &str,
        mode: SendWhenNotReady,
    ) -> Result<(), ControlError> {
        self.shared
            .with_inst(id, |i, _| i.send_when_not_ready = mode)
    }

    /// The body form of the simulator's own 400s (validation, not-ready rejections).
    pub fn set_error_form(&self, id: &str, form: BodyForm) -> Result<(), ControlError> {
        match form {
            BodyForm::Raw => Err(ControlError::Invalid(
                "error_form is `plain` or `json`".to_string(),
            )),
            _ => self.shared.with_inst(id, |i, _| i.error_form = form),
        }
    }

    /// Enforces the per-method limits of §6 on the simulator's clock (429).
    pub fn set_rate_limits(&self, id: &str, enforce: bool) -> Result<(), ControlError> {
        self.shared.with_inst(id, |i, _| {
            i.rate_limits = enforce;
            i.recent.clear();
        })
    }

    /// Answers the next `times` requests of `method` (None: of any method)
    /// with `fault`, before any normal handling (after the token check).
    /// Faults queue up in the order injected.
    pub fn inject(
        &self,
        id: &str,
        method: Option<ApiMethod>,
        times: u32,
        fault: Fault,
    ) -> Result<(), ControlError> {
        if StatusCode::from_u16(fault.status).is_err() {
            return Err(ControlError::Invalid(format!(
                "status {} is not an HTTP status",
                fault.status
            )));
        }
        if times == 0 {
            return Ok(());
        }
        self.shared.with_inst(id, |i, _| {
            i.injections.push(Injection {
                method,
                remaining: times,
                fault,
            })
        })
    }

    pub fn clear_faults(&self, id: &str) -> Result<(), ControlError> {
        self.shared.with_inst(id, |i, _| i.injections.clear())
    }

    /// Real-time delay before answering `method` (None: every method); zero clears.
    pub fn set_latency(
        &self,
        id: &str,
        method: Option<ApiMethod>,
        latency: Duration,
    ) -> Result<(), ControlError> {
        self.shared.with_inst(id, |i, _| {
            if latency.is_zero() {
                i.latency.remove(&method);
            } else {
                i.latency.insert(method, latency);
            }
        })
    }

    /// Every message `sendMessage` accepted, oldest first.
    pub fn messages(&self, id: &str) -> Result<Vec<SimMessage>, ControlError> {
        self.shared.with_inst(id, |i, _| i.messages.clone())
    }

    /// The idMessages still in the queue.
    pub fn queued(&self, id: &str) -> Result<Vec<String>, ControlError> {
        self.shared.with_inst(id, |i, _| {
            i.messages
                .iter()
                .filter(|m| m.status == MessageStatus::Queued)
                .map(|m| m.id_message.clone())
                .collect()
        })
    }

    /// The call log, in arrival order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared.lock().calls.clone()
    }

    /// Requests of one method (canonical name, e.g. `getStateInstance`), any instance.
    pub fn count(&self, method_name: &str) -> usize {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.method_name == method_name)
            .count()
    }

    /// Requests per method name.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for c in &self.shared.lock().calls {
            *counts.entry(c.method_name.clone()).or_insert(0) += 1;
        }
        counts
    }

    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }
}

// ---------------------------------------------------------------------------
// Control: HTTP (`/_sim/...`, JSON, no auth; never shows a token)

fn ctl_error(e: ControlError) -> Response {
    let status = match e {
        ControlError::UnknownInstance(_) => StatusCode::NOT_FOUND,
        ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    (status, axum::Json(json!({ "error": e.to_string() }))).into_response()
}

fn ctl_result<T: Serialize>(r: Result<T, ControlError>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => ctl_error(e),
    }
}

fn ctl_ok(r: Result<(), ControlError>) -> Response {
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ctl_error(e),
    }
}

/// The JSON body of a control request as an object.
fn ctl_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, ControlError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ControlError::Invalid("body must be a JSON object".into())),
        Err(e) => Err(ControlError::Invalid(format!("body is not JSON: {e}"))),
    }
}

fn ctl_field<T: serde::de::DeserializeOwned>(
    o: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<T, ControlError> {
    let v = o
        .get(key)
        .ok_or_else(|| ControlError::Invalid(format!("`{key}` is required")))?;
    serde_json::from_value(v.clone()).map_err(|e| ControlError::Invalid(format!("`{key}`: {e}")))
}

fn ctl_method(o: &serde_json::Map<String, Value>) -> Result<Option<ApiMethod>, ControlError> {
    match o.get("method") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => ApiMethod::from_name(name)
            .map(Some)
            .ok_or_else(|| ControlError::Invalid(format!("unknown method `{name}`"))),
        Some(_) => Err(ControlError::Invalid("`method` must be a string".into())),
    }
}

fn control(shared: &Arc<Shared>) -> GreenSimControl {
    GreenSimControl {
        shared: shared.clone(),
    }
}

async fn ctl_instances(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(control(&s).instances()).into_response()
}

async fn ctl_instance(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    ctl_result(control(&s).instance(&id))
}

/// `{"state": "authorized" | ... | null}`.
async fn ctl_set_state(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = ctl_body(&body).and_then(|o| {
        let wire = match o.get("state") {
            Some(Value::Null) => None,
            Some(Value::String(v)) => Some(v.as_str()),
            _ => {
                return Err(ControlError::Invalid(
                    "`state` must be a state name or null".into(),
                ));
            }
        };
        let state = SimState::from_wire(wire).ok_or_else(|| {
            ControlError::Invalid(format!("unknown state `{}`", wire.unwrap_or("")))
        })?;
        control(&s).set_state(&id, state)
    });
    ctl_ok(r)
}

/// `{"mode": "drains" | "never_drains" | "silent_drop"}`.
async fn ctl_set_queue_mode(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = ctl_body(&body)
        .and_then(|o| ctl_field::<QueueMode>(&o, "mode"))
        .and_then(|m| control(&s).set_queue_mode(&id, m));
    ctl_ok(r)
}

/// `{"mode": "queue" | "reject"}`.
async fn ctl_set_send_when_not_ready(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = ctl_body(&body)
        .and_then(|o| ctl_field::<SendWhenNotReady>(&o, "mode"))
        .and_then(|m| control(&s).set_send_when_not_ready(&id, m));
    ctl_ok(r)
}

/// `{"form": "plain" | "json"}`.
async fn ctl_set_error_form(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = ctl_body(&body)
        .and_then(|o| ctl_field::<BodyForm>(&o, "form"))
        .and_then(|f| control(&s).set_error_form(&id, f));
    ctl_ok(r)
}

/// `{"enforce": true}`.
async fn ctl_set_rate_limits(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = ctl_body(&body)
        .and_then(|o| ctl_field::<bool>(&o, "enforce"))
        .and_then(|e| control(&s).set_rate_limits(&id, e));
    ctl_ok(r)
}

/// `{"method": "sendMessage" | null, "ms": 250}`.
async fn ctl_set_latency(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = ctl_body(&body).and_then(|o| {
        let method = ctl_method(&o)?;
        let ms: u64 = ctl_field(&o, "ms")?;
        control(&s).set_latency(&id, method, Duration::from_millis(ms))
    });
    ctl_ok(r)
}

/// `{"method": "sendMessage" | null, "times": 3, "canned": "starting", "form": "json"}`
/// or `{"method": ..., "times": ..., "status": 400, "body": "...", "form": "plain",
/// "retry_after": 5, "delay_ms": 0}`. `times` defaults to 1, `form` to `plain`.
async fn ctl_inject(State(s): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    let r = ctl_body(&body).and_then(|o| {
        let method = ctl_method(&o)?;
        let times: u32 = if o.contains_key("times") {
            ctl_field(&o, "times")?
        } else {
            1
        };
        let form: BodyForm = if o.contains_key("form") {
            ctl_field(&o, "form")?
        } else {
            BodyForm::Plain
        };
        let mut fault = if o.contains_key("canned") {
            Fault::canned(ctl_field::<Canned>(&o, "canned")?, form)
        } else {
            Fault::new(
                ctl_field(&o, "status")?,
                &ctl_field::<String>(&o, "body")?,
                form,
            )
        };
        if o.contains_key("retry_after") {
            fault.retry_after = ctl_field(&o, "retry_after")?;
        }
        if o.contains_key("delay_ms") {
            fault.delay_ms = ctl_field(&o, "delay_ms")?;
        }
        control(&s).inject(&id, method, times, fault)
    });
    ctl_ok(r)
}

async fn ctl_clear_faults(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    ctl_ok(control(&s).clear_faults(&id))
}

async fn ctl_messages(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    ctl_result(control(&s).messages(&id))
}

async fn ctl_calls(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(control(&s).calls()).into_response()
}

async fn ctl_clear_calls(State(s): State<Arc<Shared>>) -> Response {
    control(&s).clear_calls();
    StatusCode::NO_CONTENT.into_response()
}

async fn ctl_counts(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(control(&s).counts()).into_response()
}

async fn ctl_canned() -> Response {
    let rows: Vec<Value> = Canned::ALL
        .into_iter()
        .map(|c| json!({ "canned": c.name(), "status": c.status(), "text": c.text(), "json_body": c.is_json_body() }))
        .collect();
    axum::Json(rows).into_response()
}

async fn ctl_clock(State(s): State<Arc<Shared>>) -> Response {
    let now = s.clock.now();
    axum::Json(json!({ "now": now, "manual": s.clock.is_manual() })).into_response()
}

/// `{"ms": 1000}`; only a manual clock moves (409 otherwise).
async fn ctl_clock_advance(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    if !s.clock.is_manual() {
        return ctl_error_status(
            StatusCode::CONFLICT,
            "the simulator runs on the system clock",
        );
    }
    match ctl_body(&body).and_then(|o| ctl_field::<u64>(&o, "ms")) {
        Ok(ms) => {
            s.clock.advance(Duration::from_millis(ms));
            axum::Json(json!({ "now": s.clock.now() })).into_response()
        }
        Err(e) => ctl_error(e),
    }
}

fn ctl_error_status(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({ "error": msg }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_the_wire_form() {
        for s in SimState::ALL {
            assert_eq!(SimState::from_wire(s.wire()), Some(s));
        }
        assert_eq!(SimState::from_wire(Some("pendingCode")), None);
    }

    #[test]
    fn methods_parse_case_insensitively() {
        for m in ApiMethod::ALL {
            assert_eq!(ApiMethod::from_name(m.name()), Some(m));
            assert_eq!(ApiMethod::from_name(&m.name().to_uppercase()), Some(m));
        }
        assert_eq!(ApiMethod::from_name("deleteInstance"), None);
    }

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
    fn canned_json_bodies_parse_and_names_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        for c in Canned::ALL {
            if c.is_json_body() {
                assert!(serde_json::from_str::<Value>(c.text()).is_ok(), "{c:?}");
            }
            assert!(names.insert(c.name()), "{c:?}");
        }
    }

    #[test]
    fn percent_decoding_handles_partial_escapes() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("abc"), "abc");
    }

    #[test]
    fn debug_never_shows_a_token() {
        let i = SimInstance::new("1101000001", "tok3n-SEKRET-9f8e7d", "79001234567@c.us");
        assert!(!format!("{i:?}").contains("SEKRET"));
        let o = GreenSimOptions::new(Clock::system(), vec![i]);
        assert!(!format!("{o:?}").contains("SEKRET"));
    }

    #[test]
    fn invalid_json_positions_name_the_offending_character() {
        assert_eq!(byte_position("{\"a\":}", 1, 6), 5);
        assert_eq!(byte_position("{\n\"a\":}", 2, 5), 6);
    }
}
