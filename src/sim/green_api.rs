//! A fake Green-API (WhatsApp product) on a real loopback port, for
//! integration tests and the demo. It serves
//! `/waInstance{id}/{method}/{token}` for the methods the watchdog uses
//! (`getStateInstance`, `getSettings`, `sendMessage`, `showMessagesQueue`,
//! `reboot`) and for the ones it must never use (`logout`, `setSettings`,
//! `clearMessagesQueue`), so a test can prove from the call log that they
//! were never called. Facts: the Green-API docs (green-api.com/en/docs/api), pages named below.
//!
//! Owns: the instance state machine of the simulator, the send queue, fault
//! injection, the call log and the `/_sim/...` control routes. Does not own:
//! anything of the daemon (it only sees HTTP).
//!
//! Code map: `state` (instance data and rules, time as an argument), `faults`
//! (canned replies and injected faults), `request` (method names, decoding a
//! request, the call log record), `bodies` (reply bytes, the `getSettings`
//! body), `messages` (`sendMessage`: validation, queueing, message ids),
//! `control` ([`GreenSimControl`] and its `/_sim/...` HTTP routes), this file
//! (options, server, routing, the Green-API methods).
//!
//! Time: everything that changes with time (a reboot's `starting` phase, a
//! queued message leaving the queue) is computed lazily from the
//! [`Clock`] in [`GreenSimOptions`] whenever a request or a control call
//! looks, so the simulator runs no task besides the server and tests drive
//! it with `Clock::manual`. Injected latency is real time (it exists to
//! exercise the client's real-time request timeouts).
//!
//! Modelling choices for what the Green-API docs leave open:
//! * error bodies: plain text by default; per instance ([`GreenSimControl::set_error_form`])
//!   or per injected fault ([`BodyForm`]) they can be `{"message": ...}` instead;
//! * `sendMessage` to an instance that is not `authorized`: queued with 200 by
//!   default (Green-API docs: sendMessage, message tracking); [`SendWhenNotReady::Reject`]
//!   answers 400 instead (Green-API docs: Common errors);
//! * the yellow card (Green-API docs, yellow card: "the API answers 200 but nothing is sent"):
//!   [`QueueMode::SilentDrop`] accepts the message with 200 + idMessage, never
//!   puts it in the queue and never sends it; it shows up in
//!   [`GreenSimControl::messages`] as [`MessageStatus::Dropped`]. Setting the
//!   *state* to `yellowCard` is independent: messages then wait in the queue
//!   (Green-API docs, getStateInstance: "new sends sit in the queue for 24 h");
//! * method names in the path match case-insensitively; the call log records
//!   the canonical lowerCamel name;
//! * `clearMessagesQueue` answers `{"isCleared": true}` (field name not documented);
//! * 403/401/404 bodies are the plain texts `Forbidden`/`Unauthorized`/`Not Found`;
//!   a path without `waInstance{digits}` is a 403 (Green-API docs: Common errors, "wrong request URL");
//! * a reboot (or setSettings) shows `starting` for `reboot_starting_for`,
//!   then the state from before, whatever it was (also `yellowCard`: the yellow-card
//!   page says a reboot resumes sending, but whether it clears the state is not
//!   documented; a test sets the state it wants);
//! * a queued message leaves the queue at the first look after
//!   `queued_at + queue_drain_after` at which the instance is `authorized`
//!   (and the queue mode is [`QueueMode::Drains`]);
//! * the rate limits (429, Green-API docs: request frequency) are off unless [`GreenSimControl::set_rate_limits`]
//!   turns them on, so tests on a manual clock may repeat a call at one instant.
//!
//! Tokens never leave the simulator: not in the call log, not in the control
//! API, not in `Debug`.

mod bodies;
mod control;
mod faults;
mod journal;
mod messages;
mod request;
mod state;

pub use control::GreenSimControl;
pub use faults::{BodyForm, Canned, Fault};
pub use journal::{FAILED_DESCRIPTION, MessageFate, NotFoundForm, QUEUE_LIST_CAP};
pub use request::{ApiMethod, CallRecord};
pub use state::{
    ControlError, InstanceSnapshot, MessageStatus, QueueMode, SendWhenNotReady, SimMessage,
    SimState,
};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use self::bodies::{error_reply, json_reply, reply, settings, text_reply};
use self::messages::send_message;
use self::request::Incoming;
use self::state::Inst;
use crate::clock::{Clock, Timestamp};
use crate::sim::webhooks::{HookTarget, SimHooks};
use crate::sim::{SimServer, serve_until};

/// How long `starting` lasts after a reboot unless configured (docs: seconds
/// to about 2 minutes, Green-API docs: reboot).
pub const DEFAULT_REBOOT_STARTING_FOR: Duration = Duration::from_secs(30);

/// How long a queued message stays in the queue of a healthy instance.
pub const DEFAULT_QUEUE_DRAIN_AFTER: Duration = Duration::from_secs(1);

/// The call log keeps at most this many records (the oldest half goes first).
pub const MAX_CALLS: usize = 100_000;

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
    /// How long after `sendMessage` a message appears in the journal
    /// (`getMessage`); the docs allow up to 2 minutes.
    pub journal_lag: Duration,
    /// The network messages to other numbers go through (shared with other
    /// simulators for rings across them); None: a network of its own.
    pub network: Option<crate::sim::network::Network>,
    /// Where to push `outgoingMessageStatus` and `stateInstanceChanged`
    /// (None: nowhere; [`GreenSimControl::set_webhook`] changes it at run
    /// time).
    pub webhook: Option<HookTarget>,
}

impl GreenSimOptions {
    pub fn new(clock: Clock, instances: Vec<SimInstance>) -> Self {
        GreenSimOptions {
            instances,
            clock,
            reboot_starting_for: DEFAULT_REBOOT_STARTING_FOR,
            queue_drain_after: DEFAULT_QUEUE_DRAIN_AFTER,
            journal_lag: Duration::ZERO,
            network: None,
            webhook: None,
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
    journal_lag: Duration,
    hooks: SimHooks,
    inner: Mutex<Inner>,
    network: crate::sim::network::Network,
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
                fate: MessageFate::Sent,
                not_found_form: NotFoundForm::NotFound404,
            };
            if instances.insert(i.id.clone(), inst).is_some() {
                return Err(invalid(format!("instance `{}` listed twice", i.id)));
            }
        }
        Ok(Arc::new(Shared {
            hooks: SimHooks::new(opts.webhook, &opts.clock),
            clock: opts.clock,
            reboot_starting_for: opts.reboot_starting_for,
            queue_drain_after: opts.queue_drain_after,
            journal_lag: opts.journal_lag,
            network: opts.network.unwrap_or_default(),
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

/// A running Green-API simulator. Dropping it stops the server too (without
/// waiting).
pub type GreenSim = SimServer<GreenSimControl>;

/// Binds `listen` and serves the simulator on a task owned by the returned
/// [`GreenSim`]. Fails if the address cannot be bound or the instances are
/// invalid (id not digits, empty token, an id twice).
pub async fn start(listen: SocketAddr, opts: GreenSimOptions) -> std::io::Result<GreenSim> {
    let shared = Shared::new(opts)?;
    let control = GreenSimControl {
        shared: shared.clone(),
    };
    SimServer::start("green-api", listen, router(shared), control).await
}

/// Serves the simulator on `listen` until `shutdown` resolves (for
/// `wa-watchdog simulate`); faults are injected over `/_sim/...`.
pub async fn run_standalone(
    listen: SocketAddr,
    opts: GreenSimOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Shared::new(opts)?;
    serve_until("green-api", listen, router(shared), shutdown).await
}

fn router(shared: Arc<Shared>) -> Router {
    control::routes().fallback(dispatch).with_state(shared)
}

// ---------------------------------------------------------------------------
// The Green-API routes

/// Every Green-API request: one choke point, so the call log, faults and
/// latency cover all of them, and axum's own 405s never leak (Green-API
/// answers a wrong verb with 404).
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
        if req.api == Some(ApiMethod::SendMessage) && resp.status() == StatusCode::OK {
            let queued = inner
                .instances
                .get(&req.instance)
                .and_then(|i| i.messages.last())
                .filter(|m| m.status == MessageStatus::Queued)
                .map(|m| m.id_message.clone());
            if let Some(id) = queued {
                push_outgoing_status(&shared, &req.instance, id, now);
            }
        }
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

/// Pushes `outgoingMessageStatus` once a queued message would leave the
/// queue (on the simulator's clock), with the status it left with (`sent`,
/// `failed`, `noAccount`); nothing while it stays queued, was dropped or
/// cleared.
fn push_outgoing_status(shared: &Arc<Shared>, instance: &str, id: String, queued_at: Timestamp) {
    let Some(sender) = shared.hooks.for_event("outgoingMessageStatus") else {
        return;
    };
    let (shared, instance) = (shared.clone(), instance.to_owned());
    tokio::spawn(async move {
        shared
            .clock
            .sleep_until(queued_at.plus(shared.queue_drain_after))
            .await;
        let left = shared
            .with_inst(&instance, |i, _| {
                i.messages
                    .iter()
                    .find(|m| m.id_message == id)
                    .map(|m| m.status)
            })
            .ok()
            .flatten();
        let status = match left {
            Some(MessageStatus::Sent) => "sent",
            Some(MessageStatus::Failed) => "failed",
            Some(MessageStatus::NoAccount) => "noAccount",
            _ => return,
        };
        let _ = sender.green_outgoing_status(&instance, &id, status).await;
    });
}

/// Pushes `stateInstanceChanged` with the instance's state now.
fn push_state(shared: &Shared, instance: &str) {
    let Some(sender) = shared.hooks.for_event("stateInstanceChanged") else {
        return;
    };
    let Some(state) = shared
        .with_inst(instance, |i, now| i.effective(now).wire())
        .ok()
        .flatten()
    else {
        return;
    };
    let instance = instance.to_owned();
    tokio::spawn(async move {
        let _ = sender.green_state(&instance, state).await;
    });
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
    // Green-API docs, Common errors: 403 for a bad idInstance or a wrong request URL.
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
        ApiMethod::SendMessage => {
            let before = inst.messages.len();
            let resp = send_message(inst, now, &req.body);
            if inst.messages.len() > before
                && let Some(m) = inst.messages.last()
                && m.status != MessageStatus::Dropped
            {
                shared
                    .network
                    .deliver(&inst.wid, &m.chat_id, &m.text, &m.id_message, now);
            }
            resp
        }
        ApiMethod::LastIncomingMessages => {
            // Green-API docs, lastIncomingMessages: the instance's incoming
            // messages (default: the last 24 hours), here from the network.
            let since = now.minus(Duration::from_secs(24 * 3600));
            let items: Vec<Value> = shared
                .network
                .inbox(&inst.wid, now)
                .into_iter()
                .filter(|m| m.visible_at >= since)
                .rev()
                .map(|m| {
                    json!({
                        "type": "incoming",
                        "idMessage": m.id,
                        "timestamp": m.sent_at.as_millis().div_euclid(1000),
                        "typeMessage": "textMessage",
                        "chatId": m.from,
                        "senderId": m.from,
                        "senderName": "",
                        "senderContactName": "",
                        "textMessage": m.text,
                    })
                })
                .collect();
            json_reply(200, &Value::Array(items))
        }
        ApiMethod::ShowMessagesQueue => {
            let items: Vec<Value> = inst
                .messages
                .iter()
                .filter(|m| m.status == MessageStatus::Queued)
                .take(QUEUE_LIST_CAP)
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
        ApiMethod::GetMessage => journal::get_message(inst, now, shared.journal_lag, &req.body),
        ApiMethod::Reboot => {
            inst.reboot(now, shared.reboot_starting_for);
            shared.network.restarted(&inst.wid);
            json_reply(200, &json!({ "isReboot": true }))
        }
        ApiMethod::Logout => {
            inst.state = SimState::NotAuthorized;
            inst.starting_until = None;
            json_reply(200, &json!({ "isLogout": true }))
        }
        ApiMethod::SetSettings => match serde_json::from_slice::<Value>(&req.body) {
            Ok(Value::Object(o)) if !o.is_empty() => {
                // Green-API docs, setSettings: saving settings reboots the instance.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_token() {
        let i = SimInstance::new("1101000001", "tok3n-SEKRET-9f8e7d", "79001234567@c.us");
        assert!(!format!("{i:?}").contains("SEKRET"));
        let o = GreenSimOptions::new(Clock::system(), vec![i]);
        assert!(!format!("{o:?}").contains("SEKRET"));
    }
}
