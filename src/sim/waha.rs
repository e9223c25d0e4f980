//! A fake WAHA server (Plus tier: many sessions) on a real loopback port, for
//! integration tests and the demo. It answers the routes the watchdog uses
//! (and the ones it must never use) with the status codes and bodies recorded
//! from real WAHA (2024.10.8 Core, NOWEB; newer behaviour from the WAHA
//! source), and lets tests inject the
//! faults the watchdog exists for: the #2084 desync ("WORKING but every send
//! returns 500"), send errors, 429s, latency, restarts that fail, do not heal
//! or never finish, and a provider that is down.
//!
//! Owns: the WAHA routes, the session status machine of the simulator, the
//! call log. Does not own: anything of the daemon (it only sees HTTP).
//!
//! Code map: `state` (pure data and rules, time as an argument), `fault`
//! (injectable faults), `bodies` and `messages` (exact response bytes),
//! `request` (decoding, auth), `control` ([`SimControl`] and its `/_sim/...`
//! HTTP routes), this file (options, server, routing).
//!
//! Why one hand-written dispatcher instead of axum routes: WAHA answers
//! unknown paths and wrong methods with NestJS bodies, bad JSON with its own
//! 400, and the API-key check runs before routing; axum's per-route
//! extractors and 405s would leak axum's own bodies. One choke point also
//! makes the call log, latency and the down switch cover every request.
//! Status changes over time are lazy (see `state`), so the simulator runs no
//! background tasks besides the server itself.

mod acks;
mod bodies;
mod control;
mod fault;
mod messages;
mod request;
mod state;

pub use acks::{PresenceForm, ReadBack, ack_name};
pub use control::{SessionSnapshot, SimControl, StateSnapshot};
pub use fault::Fault;
pub use state::{ControlError, Engine, SentMessage, Status};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;

use self::request::{Body, Incoming, authorized, is_protected, session_hint};
use self::state::{SendDecision, State};
use crate::clock::{Clock, Timestamp};
use crate::sim::webhooks::{HookTarget, SimHooks};
use crate::sim::{
    CallRecord, OrderedJson, SimServer, empty_response, json_response, lock, serve_until,
};

/// Largest request body read (real WAHA allows large media bodies; the
/// simulator only needs JSON for text).
const MAX_BODY: usize = 1024 * 1024;

/// How often real WAHA re-checks the status while a send waits for WORKING.
const NOT_WORKING_POLL: Duration = Duration::from_millis(500);

/// How the simulated server behaves. `Default` gives a test-friendly server:
/// no auth, no sessions, system clock, GOWS, instant replies, sessions ready
/// 5 s (clock time) after a restart. [`WahaSimOptions::with_real_timings`]
/// adds WAHA's real-time waits for the demo.
#[derive(Clone, Debug)]
pub struct WahaSimOptions {
    /// `None`: no auth (`WAHA_NO_API_KEY=true`). `Some(key)`: `/api/*`,
    /// `/health` and `/ws*` need `X-Api-Key: key` or `?x-api-key=key` (the
    /// header wins when both are sent).
    pub api_key: Option<String>,
    /// Sessions that exist at start, all WORKING; session *i* (from 1) gets
    /// `me.id` = `1555000000i@c.us` (eleven digits).
    pub sessions: Vec<String>,
    /// Time for status changes, the call log and response timestamps.
    pub clock: Clock,
    /// Decides the shape of the `sendText` 201 body and the `engine` block.
    pub engine: Engine,
    /// Real-time wait before a `restart` or `stop` reply (real WAHA sleeps
    /// 3 s after stopping the engine); the status reads STOPPED meanwhile.
    pub restart_reply_delay: Duration,
    /// Clock time from a restart/start until the session is WORKING.
    pub restart_working_after: Duration,
    /// Real-time wait before a `sendText` 422 for a session that is unknown or
    /// not WORKING (real WAHA polls for up to 10 s and succeeds if the
    /// session becomes WORKING meanwhile).
    pub not_working_delay: Duration,
    /// Clock time from an accepted send until its ack is 1 (SERVER).
    pub ack_server_after: Duration,
    /// Clock time from an accepted send until its ack is 2 (DEVICE).
    pub ack_device_after: Duration,
    /// Whether the engine serves the message read-back.
    pub read_back: ReadBack,
    /// How SessionInfo writes `presence`.
    pub presence: PresenceForm,
    /// The network messages to other numbers go through (shared with other
    /// simulators for rings across them); None: a network of its own.
    pub network: Option<crate::sim::network::Network>,
    /// Where to push `message.ack` and `session.status` (None: nowhere;
    /// [`SimControl::set_webhook`] changes it at run time).
    pub webhook: Option<HookTarget>,
}

impl Default for WahaSimOptions {
    fn default() -> Self {
        WahaSimOptions {
            api_key: None,
            sessions: Vec::new(),
            clock: Clock::System,
            engine: Engine::Gows,
            restart_reply_delay: Duration::ZERO,
            restart_working_after: Duration::from_secs(5),
            not_working_delay: Duration::ZERO,
            ack_server_after: Duration::ZERO,
            ack_device_after: Duration::from_secs(1),
            read_back: ReadBack::Supported,
            presence: PresenceForm::Object,
            network: None,
            webhook: None,
        }
    }
}

impl WahaSimOptions {
    /// WAHA's real-time waits: 3 s restart/stop replies, 10 s before a
    /// not-WORKING 422. For the demo; tests keep the zero defaults.
    pub fn with_real_timings(mut self) -> Self {
        self.restart_reply_delay = Duration::from_secs(3);
        self.not_working_delay = Duration::from_secs(10);
        self
    }
}

/// Fixed settings the request handlers read.
#[derive(Debug)]
struct Settings {
    api_key: Option<String>,
    engine: Engine,
    restart_reply_delay: Duration,
    restart_working_after: Duration,
    not_working_delay: Duration,
    ack_server_after: Duration,
    ack_device_after: Duration,
    read_back: ReadBack,
    presence: PresenceForm,
}

impl Settings {
    fn view(&self, now: Timestamp) -> bodies::View {
        bodies::View {
            engine: self.engine,
            presence: self.presence,
            now,
        }
    }
}

/// What the server and every [`SimControl`] share.
struct Shared {
    state: Arc<Mutex<State>>,
    clock: Clock,
    hooks: SimHooks,
    settings: Settings,
    started: Timestamp,
    /// WAHA requests being answered now, and the most ever at once (tests
    /// check the daemon's per-provider concurrency bound with it).
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    network: crate::sim::network::Network,
}

/// Counts one request in flight for as long as it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    fn new(opts: WahaSimOptions) -> std::io::Result<Arc<Shared>> {
        let now = opts.clock.now();
        let mut state = State::default();
        for name in &opts.sessions {
            state
                .add_session(name, now)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        }
        Ok(Arc::new(Shared {
            state: Arc::new(Mutex::new(state)),
            hooks: SimHooks::new(opts.webhook, &opts.clock),
            clock: opts.clock,
            settings: Settings {
                api_key: opts.api_key,
                engine: opts.engine,
                restart_reply_delay: opts.restart_reply_delay,
                restart_working_after: opts.restart_working_after,
                not_working_delay: opts.not_working_delay,
                ack_server_after: opts.ack_server_after,
                ack_device_after: opts.ack_device_after,
                read_back: opts.read_back,
                presence: opts.presence,
            },
            started: now,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            network: opts.network.unwrap_or_default(),
        }))
    }
}

/// A running WAHA simulator. Dropping it stops the server too (without
/// waiting).
pub type WahaSim = SimServer<SimControl>;

/// Binds `listen` and serves the simulator on a background task owned by the
/// returned [`WahaSim`]. Fails if the address cannot be bound or an initial
/// session name is invalid or repeated.
pub async fn start(listen: SocketAddr, opts: WahaSimOptions) -> std::io::Result<WahaSim> {
    let shared = Shared::new(opts)?;
    SimServer::start(
        "waha",
        listen,
        router(shared.clone()),
        SimControl::new(shared),
    )
    .await
}

/// Serves the simulator on `listen` until `shutdown` resolves (for
/// `wa-watchdog simulate`); faults are injected over `/_sim/...`.
pub async fn run_standalone(
    listen: SocketAddr,
    opts: WahaSimOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Shared::new(opts)?;
    serve_until("waha", listen, router(shared), shutdown).await
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

async fn dispatch(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if control::is_control_path(parts.uri.path()) {
        return control::handle(&shared, &parts, body).await;
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return bodies::payload_too_large();
    };
    let _in_flight = InFlight::enter(&shared);
    let inc = Incoming::new(&parts, &bytes);
    let segs = inc.segments();
    let session = session_hint(&inc.method, &segs, inc.json());

    let now = shared.clock.now();
    let (down, latency) = {
        let mut st = lock(&shared.state);
        st.calls.push(CallRecord {
            at: now,
            method: inc.method.clone(),
            path: inc.path.clone(),
            session: session.clone(),
        });
        (st.down, st.latency_for(session.as_deref()))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if down {
        return bodies::proxy_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if is_protected(&inc.path) && !authorized(shared.settings.api_key.as_deref(), &inc) {
        return bodies::unauthorized();
    }
    route(&shared, &inc, &segs).await
}

async fn route(shared: &Shared, inc: &Incoming, segs: &[&str]) -> Response {
    let engine = shared.settings.engine;
    match (inc.method.as_str(), segs) {
        ("GET", ["ping"]) => bodies::pong(),
        ("GET", ["health"]) => bodies::health(),
        ("GET", ["api", "server", "version"] | ["api", "version"]) => bodies::version(engine),
        ("GET", ["api", "server", "status"]) => {
            bodies::server_status(shared.started, shared.clock.now())
        }
        ("GET", ["api", "sessions"]) => list_sessions(shared, inc),
        ("POST", ["api", "sessions", "stop"]) => deprecated_stop(shared, inc),
        ("POST", ["api", "sessions", "logout"]) => deprecated_logout(shared, inc),
        ("GET", ["api", "sessions", name]) => get_session(shared, name),
        ("DELETE", ["api", "sessions", name]) => {
            lock(&shared.state).remove_session(name);
            empty_response(StatusCode::OK)
        }
        ("GET", ["api", "sessions", name, "me"]) => me(shared, name),
        ("POST", ["api", "sessions", name, "restart"]) => restart(shared, inc, name).await,
        ("POST", ["api", "sessions", name, "start"]) => start_session(shared, name),
        ("POST", ["api", "sessions", name, "stop"]) => stop_session(shared, name).await,
        ("POST", ["api", "sessions", name, "logout"]) => logout(shared, name),
        ("POST", ["api", "sendText"]) => send_text(shared, inc).await,
        ("GET", ["api", session, "chats", chat, "messages", id]) => {
            read_back(shared, inc, session, chat, id)
        }
        ("GET", ["api", session, "chats", chat, "messages"]) => {
            chat_messages(shared, inc, session, chat)
        }
        (method, _) => bodies::route_not_found(method, &inc.url),
    }
}

fn list_sessions(shared: &Shared, inc: &Incoming) -> Response {
    // WAHA's boolean query transform accepts exactly these spellings.
    let all = match inc.query_value("all") {
        None => false,
        Some("true" | "True" | "1") => true,
        Some("false" | "False" | "0") => false,
        Some(_) => return bodies::validation_failed(&["all must be a boolean value"]),
    };
    let now = shared.clock.now();
    let view = shared.settings.view(now);
    let mut st = lock(&shared.state);
    let list: Vec<_> = st
        .sessions(now)
        .filter(|(_, s)| all || s.is_running())
        .map(|(name, s)| bodies::session_info(name, s, view, false))
        .collect();
    json_response(StatusCode::OK, &list)
}

fn get_session(shared: &Shared, name: &str) -> Response {
    let now = shared.clock.now();
    let mut st = lock(&shared.state);
    match st.session(name, now) {
        Some(s) => json_response(
            StatusCode::OK,
            &bodies::session_info(name, s, shared.settings.view(now), true),
        ),
        None => bodies::session_not_found(),
    }
}

fn me(shared: &Shared, name: &str) -> Response {
    let now = shared.clock.now();
    let mut st = lock(&shared.state);
    match st.session(name, now) {
        Some(s) if s.is_running() => bodies::me(name, s, now),
        _ => bodies::session_not_running(name),
    }
}

/// Stop + (3 s) + start, keeping credentials (WAHA source: `restart`).
async fn restart(shared: &Shared, inc: &Incoming, name: &str) -> Response {
    let delay = shared.settings.restart_reply_delay;
    let fails = {
        let now = shared.clock.now();
        let mut st = lock(&shared.state);
        match st.session(name, now) {
            None => return bodies::session_not_found(),
            Some(s) => s.restart_fails(),
        }
    };
    if fails {
        sleep_real(delay).await;
        return bodies::restart_failed(&inc.failed(shared.settings.engine, shared.clock.now()));
    }
    if !delay.is_zero() {
        let now = shared.clock.now();
        if lock(&shared.state).restart_stop(name, now).is_err() {
            return bodies::session_not_found();
        }
        sleep_real(delay).await;
    }
    start_reply(shared, name)
}

/// Starts the session and answers 201 with its detailed info (STARTING).
fn start_reply(shared: &Shared, name: &str) -> Response {
    let now = shared.clock.now();
    let started = lock(&shared.state).start(name, now, shared.settings.restart_working_after);
    if started.is_ok() {
        push_status_now_and_when_ready(
            shared,
            name,
            now.plus(shared.settings.restart_working_after),
        );
    }
    match started {
        Ok(s) => {
            // A restart brings a dead inbound back (WAHA #1931's workaround).
            shared.network.restarted(&s.me_id);
            json_response(
                StatusCode::CREATED,
                &bodies::session_info(name, &s, shared.settings.view(now), true),
            )
        }
        // Deleted while the restart waited.
        Err(_) => bodies::session_not_found(),
    }
}

fn start_session(shared: &Shared, name: &str) -> Response {
    let now = shared.clock.now();
    match lock(&shared.state).session(name, now) {
        None => return bodies::session_not_found(),
        Some(s) if s.is_running() => return bodies::already_started(name),
        Some(_) => {}
    }
    start_reply(shared, name)
}

async fn stop_session(shared: &Shared, name: &str) -> Response {
    let now = shared.clock.now();
    if lock(&shared.state).stop(name, now).is_err() {
        return bodies::session_not_found();
    }
    sleep_real(shared.settings.restart_reply_delay).await;
    detailed_reply(shared, name, StatusCode::CREATED)
}

fn logout(shared: &Shared, name: &str) -> Response {
    let now = shared.clock.now();
    if lock(&shared.state).logout(name, now).is_err() {
        return bodies::session_not_found();
    }
    detailed_reply(shared, name, StatusCode::CREATED)
}

fn detailed_reply(shared: &Shared, name: &str, status: StatusCode) -> Response {
    let now = shared.clock.now();
    let mut st = lock(&shared.state);
    match st.session(name, now) {
        Some(s) => json_response(
            status,
            &bodies::session_info(name, s, shared.settings.view(now), true),
        ),
        None => bodies::session_not_found(),
    }
}

/// Why a deprecated body-based session route rejects its body.
enum BadName<'a> {
    Json(&'a str),
    Missing,
}

impl BadName<'_> {
    fn response(&self) -> Response {
        match self {
            BadName::Json(e) => bodies::malformed_json(e),
            BadName::Missing => bodies::validation_failed(&["name must be a string"]),
        }
    }
}

/// The `name` of a deprecated body-based session route.
fn body_name(inc: &Incoming) -> Result<&str, BadName<'_>> {
    if let Body::Invalid(e) = &inc.body {
        return Err(BadName::Json(e));
    }
    match inc.json().get("name").and_then(OrderedJson::as_str) {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(BadName::Missing),
    }
}

/// `POST /api/sessions/stop {name, logout}`: `logout: true` also logs out
/// and deletes the session.
fn deprecated_stop(shared: &Shared, inc: &Incoming) -> Response {
    let name = match body_name(inc) {
        Ok(name) => name,
        Err(bad) => return bad.response(),
    };
    let wipe = matches!(inc.json().get("logout"), Some(OrderedJson::Bool(true)));
    let now = shared.clock.now();
    let mut st = lock(&shared.state);
    if wipe {
        st.remove_session(name);
    } else {
        // Stopping an unknown session is a no-op.
        let _ = st.stop(name, now);
    }
    empty_response(StatusCode::CREATED)
}

/// `POST /api/sessions/logout {name}`: stop, log out and delete.
fn deprecated_logout(shared: &Shared, inc: &Incoming) -> Response {
    match body_name(inc) {
        Ok(name) => {
            lock(&shared.state).remove_session(name);
            empty_response(StatusCode::CREATED)
        }
        Err(bad) => bad.response(),
    }
}

async fn send_text(shared: &Shared, inc: &Incoming) -> Response {
    let engine = shared.settings.engine;
    if let Body::Invalid(e) = &inc.body {
        return bodies::malformed_json(e);
    }
    let body = inc.json();
    let session = body.get("session");
    let name = match session.and_then(OrderedJson::as_str) {
        Some(name) if !name.is_empty() => name,
        _ => return bodies::session_name_required(session),
    };

    // Real WAHA waits for WORKING (polling) before giving up with a 422.
    let deadline = Instant::now() + shared.settings.not_working_delay;
    loop {
        let now = shared.clock.now();
        let pending = lock(&shared.state).send_readiness(name, now);
        let Some(refusal) = pending else { break };
        let left = deadline.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            tokio::time::sleep(left.min(NOT_WORKING_POLL)).await;
            continue;
        }
        return match refusal {
            SendDecision::NotWorking(status) => bodies::status_not_expected(name, status),
            _ => bodies::session_does_not_exist(name),
        };
    }

    // The status check runs before any body validation (recorded from WAHA 2024.10.8).
    let Some(chat_id) = body.get("chatId").and_then(OrderedJson::as_str) else {
        return bodies::validation_failed(&["chatId must be a string"]);
    };
    let text = body.get("text").and_then(OrderedJson::as_str).unwrap_or("");

    let now = shared.clock.now();
    let decision = lock(&shared.state).send_text(name, now);
    match decision {
        SendDecision::Unknown => bodies::session_does_not_exist(name),
        SendDecision::NotWorking(status) => bodies::status_not_expected(name, status),
        SendDecision::Error(spec) => bodies::send_error(&spec, &inc.failed(engine, now)),
        SendDecision::RateLimited { retry_after_secs } => bodies::rate_limited(retry_after_secs),
        SendDecision::Desync => bodies::desync(&inc.failed(engine, now)),
        SendDecision::WhatsappError(code) => bodies::whatsapp_error(&inc.failed(engine, now), code),
        SendDecision::Sent { me_id, ack_fault } => {
            let plan = acks::Plan::new(
                ack_fault,
                now,
                shared.settings.ack_server_after,
                shared.settings.ack_device_after,
            );
            let (resp, id, chat) = messages::sent(&messages::Sent {
                engine,
                session: name,
                me_id: &me_id,
                chat_id,
                text,
                now,
                ack: plan.ack(now),
            });
            push_acks(shared, name, &id, plan);
            let mut st = lock(&shared.state);
            st.tracked.insert(
                id.clone(),
                acks::Tracked {
                    session: name.to_owned(),
                    chat,
                    from: me_id.clone(),
                    body: text.to_owned(),
                    at: now,
                    plan,
                },
            );
            st.sent.push(SentMessage {
                at: now,
                session: name.to_owned(),
                chat_id: chat_id.to_owned(),
                text: text.to_owned(),
                id: id.clone(),
            });
            drop(st);
            shared.network.deliver(&me_id, chat_id, text, &id, now);
            resp
        }
    }
}

/// `GET /api/{session}/chats/{chatId}/messages/{messageId}` (WAHA OpenAPI
/// 2026.7.2): the message with its current ack. Engines without the route
/// answer 501 or the router's 404; an unknown message is a 404 "Message not
/// found"; a session that is not WORKING gets the send path's 422.
fn read_back(shared: &Shared, inc: &Incoming, session: &str, chat: &str, id: &str) -> Response {
    if let Some(resp) = acks::unsupported(shared.settings.read_back, &inc.method, &inc.url) {
        return resp;
    }
    let session = crate::sim::percent_decode(session);
    let chat = crate::sim::percent_decode(chat);
    let id = crate::sim::percent_decode(id);
    let now = shared.clock.now();
    let mut st = lock(&shared.state);
    match st.send_readiness(&session, now) {
        Some(SendDecision::NotWorking(status)) => {
            return bodies::status_not_expected(&session, status);
        }
        Some(_) => return bodies::session_not_running(&session),
        None => {}
    }
    let chat = messages::canonical_chat(&chat);
    match st.tracked.get(&id) {
        Some(m) if m.session == session && m.chat == chat => acks::message_reply(&id, m, now),
        _ => acks::message_not_found(),
    }
}

/// `GET /api/{session}/chats/{chatId}/messages?limit=N&downloadMedia=false`
/// (WAHA OpenAPI 2026.7.2): the chat's messages, newest first; here the
/// ones the session received from `chat` through the network.
fn chat_messages(shared: &Shared, inc: &Incoming, session: &str, chat: &str) -> Response {
    if let Some(resp) = acks::unsupported(shared.settings.read_back, &inc.method, &inc.url) {
        return resp;
    }
    let session = crate::sim::percent_decode(session);
    let chat = messages::canonical_chat(&crate::sim::percent_decode(chat));
    let limit = match inc.query_value("limit") {
        None => 100,
        Some(v) => match v.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return bodies::validation_failed(&["limit must be a number"]),
        },
    };
    let now = shared.clock.now();
    let me = {
        let mut st = lock(&shared.state);
        match st.send_readiness(&session, now) {
            Some(SendDecision::NotWorking(status)) => {
                return bodies::status_not_expected(&session, status);
            }
            Some(_) => return bodies::session_not_running(&session),
            None => {}
        }
        match st.session(&session, now) {
            Some(s) => s.me_id.clone(),
            None => return bodies::session_not_running(&session),
        }
    };
    let received: Vec<_> = shared
        .network
        .inbox(&me, now)
        .into_iter()
        .filter(|m| m.from == chat)
        .collect();
    acks::chat_messages_reply(&me, &received, limit)
}

/// Pushes `message.ack` as the ack of a sent message moves on the
/// simulator's clock: SERVER then DEVICE, or ERROR; nothing for a message
/// that is never acked.
fn push_acks(shared: &Shared, session: &str, id: &str, plan: acks::Plan) {
    let Some(sender) = shared.hooks.for_event("message.ack") else {
        return;
    };
    let steps: Vec<(Timestamp, i64)> = match plan {
        acks::Plan::Progress { server, device } => vec![(server, 1), (device, 2)],
        acks::Plan::Error { at } => vec![(at, -1)],
        acks::Plan::Never => Vec::new(),
    };
    let (clock, session, id) = (shared.clock.clone(), session.to_owned(), id.to_owned());
    tokio::spawn(async move {
        for (at, ack) in steps {
            clock.sleep_until(at).await;
            if let Err(e) = sender.waha_message_ack(&session, &id, ack).await {
                tracing::debug!("simulator webhook: {}", e.without_url());
            }
        }
    });
}

/// Pushes `session.status` with the session's status now, and again once a
/// start has finished at `ready` (WORKING, or SCAN_QR_CODE if unpaired).
fn push_status_now_and_when_ready(shared: &Shared, name: &str, ready: Timestamp) {
    let Some(sender) = shared.hooks.for_event("session.status") else {
        return;
    };
    let (clock, state, name) = (shared.clock.clone(), shared.state.clone(), name.to_owned());
    tokio::spawn(async move {
        let status = |now| lock(&state).session(&name, now).map(|s| s.status());
        if let Some(now) = status(clock.now()) {
            let _ = sender.waha_session_status(&name, now.as_str()).await;
        }
        clock.sleep_until(ready).await;
        if let Some(later) = status(clock.now()) {
            let _ = sender.waha_session_status(&name, later.as_str()).await;
        }
    });
}

/// Pushes `session.status` with the session's status now.
fn push_status(shared: &Shared, name: &str) {
    let Some(sender) = shared.hooks.for_event("session.status") else {
        return;
    };
    let now = shared.clock.now();
    let Some(status) = lock(&shared.state).session(name, now).map(|s| s.status()) else {
        return;
    };
    let name = name.to_owned();
    tokio::spawn(async move {
        let _ = sender.waha_session_status(&name, status.as_str()).await;
    });
}

async fn sleep_real(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}
