//! The simulator's control surface: [`SimControl`] for Rust tests, and the
//! same operations as JSON over HTTP under `/_sim/...` on the simulator's own
//! listener (no auth, so demo users can inject faults with curl).
//!
//! Control calls change state directly and are not written to the call log:
//! the log is what a WAHA client did.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, request::Parts};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Shared;
use super::state::{ControlError, Fault, SentMessage, Session, Status};
use crate::clock::{Clock, Timestamp};
use crate::sim::{CallRecord, json_response, lock};

/// Largest control request body.
const MAX_CONTROL_BODY: usize = 64 * 1024;

/// A handle on a running simulator's state. Cheap to clone; every clone (and
/// the HTTP control routes) acts on the same state.
#[derive(Clone)]
pub struct SimControl {
    shared: Arc<Shared>,
}

/// One session as the control API reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionSnapshot {
    pub name: String,
    /// The status a WAHA client would see now.
    pub status: Status,
    /// `me.id` while WORKING.
    pub me_id: String,
    /// Holds credentials (false after a logout).
    pub paired: bool,
    /// When a STARTING session becomes ready; `None` if not starting or stuck.
    pub ready_at: Option<Timestamp>,
    /// Active faults, with the remaining counts of counted ones.
    pub faults: Vec<Fault>,
}

/// The whole simulator as the control API reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StateSnapshot {
    /// Every WAHA route answers 503.
    pub down: bool,
    /// Real-time delay added to every WAHA request.
    pub global_latency_ms: u64,
    pub sessions: Vec<SessionSnapshot>,
}

fn snapshot(name: &str, s: &Session) -> SessionSnapshot {
    SessionSnapshot {
        name: name.to_owned(),
        status: s.status(),
        me_id: s.me_id.clone(),
        paired: s.paired(),
        ready_at: s.ready_at(),
        faults: s.faults(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl SimControl {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        SimControl { shared }
    }

    fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    /// The simulator's clock (tests advance a manual clock through it).
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// Adds a WORKING session with the next fake number.
    pub fn add_session(&self, name: &str) -> Result<(), ControlError> {
        let now = self.now();
        lock(&self.shared.state).add_session(name, now)
    }

    /// Removes a session (as if deleted behind the watchdog's back).
    pub fn remove_session(&self, name: &str) -> Result<(), ControlError> {
        if lock(&self.shared.state).remove_session(name) {
            Ok(())
        } else {
            Err(ControlError::UnknownSession(name.to_owned()))
        }
    }

    /// Forces a status. It stays until changed (a forced STARTING never
    /// finishes by itself); WORKING also marks the session as logged in,
    /// SCAN_QR_CODE as logged out.
    pub fn set_status(&self, name: &str, status: Status) -> Result<(), ControlError> {
        let now = self.now();
        lock(&self.shared.state).set_status(name, status, now)?;
        super::push_status(&self.shared, name);
        Ok(())
    }

    /// Where the simulator pushes its webhooks from now on (None: nowhere).
    pub fn set_webhook(&self, target: Option<crate::sim::webhooks::HookTarget>) {
        self.shared.hooks.set(target, &self.shared.clock);
    }

    /// The sender of the simulator's pushes (its fault and the receiver's
    /// answers), if a target is set.
    pub fn webhook(&self) -> Option<crate::sim::webhooks::HookSender> {
        self.shared.hooks.sender()
    }

    /// The status a client would see now; `None` for an unknown session.
    pub fn status(&self, name: &str) -> Option<Status> {
        let now = self.now();
        lock(&self.shared.state)
            .session(name, now)
            .map(Session::status)
    }

    /// Injects a fault; a fault of the same kind is replaced.
    pub fn inject(&self, name: &str, fault: Fault) -> Result<(), ControlError> {
        let now = self.now();
        lock(&self.shared.state).inject(name, fault, now)
    }

    /// Sets (None: clears) the inbound fault of the session's number: with
    /// `Dead` nothing sent to it arrives until it is restarted.
    pub fn set_inbound(
        &self,
        name: &str,
        fault: Option<crate::sim::network::InboundFault>,
    ) -> Result<(), ControlError> {
        let me = self.me_id(name)?;
        self.shared.network.set_inbound(&me, fault);
        Ok(())
    }

    /// The session's own number (`me.id`).
    pub fn me_id(&self, name: &str) -> Result<String, ControlError> {
        let now = self.now();
        lock(&self.shared.state)
            .session(name, now)
            .map(|s| s.me_id.clone())
            .ok_or_else(|| ControlError::UnknownSession(name.to_owned()))
    }

    /// The network this simulator sends through.
    pub fn network(&self) -> crate::sim::network::Network {
        self.shared.network.clone()
    }

    /// Removes every fault of the session.
    pub fn clear(&self, name: &str) -> Result<(), ControlError> {
        let now = self.now();
        lock(&self.shared.state).clear(name, now)
    }

    /// Provider down: every WAHA route (not `/_sim`) answers 503 from "the
    /// reverse proxy", as when the WAHA container is gone.
    pub fn set_down(&self, down: bool) {
        lock(&self.shared.state).down = down;
    }

    /// Real-time delay added to every WAHA request (on top of any
    /// per-session `Latency` fault). Zero removes it.
    pub fn set_global_latency(&self, d: Duration) {
        lock(&self.shared.state).global_latency = d;
    }

    /// One session's snapshot.
    pub fn session(&self, name: &str) -> Option<SessionSnapshot> {
        let now = self.now();
        lock(&self.shared.state)
            .session(name, now)
            .map(|s| snapshot(name, s))
    }

    /// Everything, for `GET /_sim/state`.
    pub fn state(&self) -> StateSnapshot {
        let now = self.now();
        let mut st = lock(&self.shared.state);
        let sessions = st.sessions(now).map(|(n, s)| snapshot(n, s)).collect();
        StateSnapshot {
            down: st.down,
            global_latency_ms: millis(st.global_latency),
            sessions,
        }
    }

    /// Every WAHA request so far, in arrival order.
    pub fn calls(&self) -> Vec<CallRecord> {
        lock(&self.shared.state).calls.clone()
    }

    /// Requests with this method and path (a trailing slash is ignored, as
    /// WAHA ignores it), e.g. `("DELETE", "/api/sessions/s1")`.
    pub fn calls_matching(&self, method: &str, path: &str) -> Vec<CallRecord> {
        let want = path.trim_end_matches('/');
        lock(&self.shared.state)
            .calls
            .iter()
            .filter(|c| {
                c.method.eq_ignore_ascii_case(method) && c.path.trim_end_matches('/') == want
            })
            .cloned()
            .collect()
    }

    /// `POST /api/sessions/{session}/restart` requests so far (any outcome).
    pub fn restart_count(&self, session: &str) -> usize {
        self.calls_matching("POST", &format!("/api/sessions/{session}/restart"))
            .len()
    }

    /// `POST /api/sendText` requests naming `session` so far (any outcome).
    pub fn send_count(&self, session: &str) -> usize {
        self.calls_matching("POST", "/api/sendText")
            .iter()
            .filter(|c| c.session.as_deref() == Some(session))
            .count()
    }

    /// The most WAHA requests ever answered at the same time.
    pub fn max_concurrent_requests(&self) -> usize {
        self.shared
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Forgets the call log; returns how many records were dropped.
    pub fn clear_calls(&self) -> usize {
        std::mem::take(&mut lock(&self.shared.state).calls).len()
    }

    /// The ack a read-back of message `id` (serialized) would show now.
    pub fn message_ack(&self, id: &str) -> Option<i8> {
        let now = self.now();
        lock(&self.shared.state)
            .tracked
            .get(id)
            .map(|m| m.plan.ack(now))
    }

    /// Messages accepted with 201, in order.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        lock(&self.shared.state).sent.clone()
    }
}

// ---------------------------------------------------------------- HTTP

pub(super) fn is_control_path(path: &str) -> bool {
    path == "/_sim" || path.starts_with("/_sim/")
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    json_response(status, &ErrorBody { error: msg.into() })
}

fn control_error(e: &ControlError) -> Response {
    let status = match e {
        ControlError::UnknownSession(_) => StatusCode::NOT_FOUND,
        ControlError::SessionExists(_) => StatusCode::CONFLICT,
        ControlError::InvalidName(_) | ControlError::InvalidFault(_) => StatusCode::BAD_REQUEST,
    };
    error(status, e.to_string())
}

/// Parses a control body; the error is the message of the 400.
fn parse<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, String> {
    if bytes.is_empty() {
        return Err("expected a JSON body".to_owned());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON body: {e}"))
}

fn bad_request(msg: String) -> Response {
    error(StatusCode::BAD_REQUEST, msg)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: Status,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DownBody {
    down: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyBody {
    ms: u64,
}

#[derive(Serialize)]
struct Cleared {
    cleared: usize,
}

#[derive(Serialize)]
struct Removed<'a> {
    removed: &'a str,
}

/// Applies `op` to session `name` and answers with its snapshot.
fn on_session(
    ctl: &SimControl,
    name: &str,
    status: StatusCode,
    op: impl FnOnce() -> Result<(), ControlError>,
) -> Response {
    if let Err(e) = op() {
        return control_error(&e);
    }
    match ctl.session(name) {
        Some(snap) => json_response(status, &snap),
        None => control_error(&ControlError::UnknownSession(name.to_owned())),
    }
}

/// Serves one `/_sim/...` request.
pub(super) async fn handle(shared: &Arc<Shared>, parts: &Parts, body: Body) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_CONTROL_BODY).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "control request body too large",
        );
    };
    let ctl = SimControl::new(shared.clone());
    let path = parts.uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').skip(2).collect();
    let method = parts.method.as_str();
    match (method, segs.as_slice()) {
        ("GET", ["state"]) => json_response(StatusCode::OK, &ctl.state()),
        ("GET", ["calls"]) => json_response(StatusCode::OK, &ctl.calls()),
        ("DELETE", ["calls"]) => json_response(
            StatusCode::OK,
            &Cleared {
                cleared: ctl.clear_calls(),
            },
        ),
        ("GET", ["sent"]) => json_response(StatusCode::OK, &ctl.sent_messages()),
        ("POST", ["sessions"]) => match parse::<NameBody>(&bytes) {
            Ok(b) => on_session(&ctl, &b.name, StatusCode::CREATED, || {
                ctl.add_session(&b.name)
            }),
            Err(msg) => bad_request(msg),
        },
        ("GET", ["sessions", name]) => match ctl.session(name) {
            Some(snap) => json_response(StatusCode::OK, &snap),
            None => control_error(&ControlError::UnknownSession((*name).to_owned())),
        },
        ("DELETE", ["sessions", name]) => match ctl.remove_session(name) {
            Ok(()) => json_response(StatusCode::OK, &Removed { removed: name }),
            Err(e) => control_error(&e),
        },
        ("PUT", ["sessions", name, "status"]) => match parse::<StatusBody>(&bytes) {
            Ok(b) => on_session(&ctl, name, StatusCode::OK, || {
                ctl.set_status(name, b.status)
            }),
            Err(msg) => bad_request(msg),
        },
        ("POST", ["sessions", name, "faults"]) => match parse::<Fault>(&bytes) {
            Ok(fault) => on_session(&ctl, name, StatusCode::OK, || ctl.inject(name, fault)),
            Err(msg) => bad_request(msg),
        },
        ("DELETE", ["sessions", name, "faults"]) => {
            on_session(&ctl, name, StatusCode::OK, || ctl.clear(name))
        }
        ("PUT", ["down"]) => match parse::<DownBody>(&bytes) {
            Ok(b) => {
                ctl.set_down(b.down);
                json_response(StatusCode::OK, &ctl.state())
            }
            Err(msg) => bad_request(msg),
        },
        ("PUT", ["latency"]) => match parse::<LatencyBody>(&bytes) {
            Ok(b) => {
                ctl.set_global_latency(Duration::from_millis(b.ms));
                json_response(StatusCode::OK, &ctl.state())
            }
            Err(msg) => bad_request(msg),
        },
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no control route {method} {}", parts.uri.path()),
        ),
    }
}
