//! The simulator's control surface: [`GreenSimControl`] for Rust tests, and
//! the same operations as JSON over HTTP under `/_sim/...` on the simulator's
//! own listener (no auth, never shows a token), so demo users can inject
//! faults with curl. Control calls are not written to the call log: the log
//! is what a Green-API client did.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Serialize;
use serde_json::{Value, json};

use super::Shared;
use super::faults::{BodyForm, Canned, Fault, Injection};
use super::journal::{MessageFate, NotFoundForm};
use super::request::{ApiMethod, CallRecord};
use super::state::{
    ControlError, InstanceSnapshot, MessageStatus, QueueMode, SendWhenNotReady, SimMessage,
    SimState,
};
use crate::clock::Clock;

// ---------------------------------------------------------------------------
// Control: Rust handle

/// A handle on a running simulator's state. Clones share it.
#[derive(Clone)]
pub struct GreenSimControl {
    pub(super) shared: Arc<Shared>,
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
        })?;
        super::push_state(&self.shared, id);
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

    /// Enforces the per-method limits (Green-API docs: request frequency) on the simulator's clock (429).
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

    /// Sets (None: clears) the inbound fault of the instance's number
    /// (its wid): with `Dead` nothing sent to it arrives until a reboot.
    pub fn set_inbound(
        &self,
        id: &str,
        fault: Option<crate::sim::network::InboundFault>,
    ) -> Result<(), ControlError> {
        let wid = self.shared.with_inst(id, |inst, _| inst.wid.clone())?;
        self.shared.network.set_inbound(&wid, fault);
        Ok(())
    }

    /// The instance's own number (its wid).
    pub fn wid(&self, id: &str) -> Result<String, ControlError> {
        self.shared.with_inst(id, |inst, _| inst.wid.clone())
    }

    /// The network this simulator sends through.
    pub fn network(&self) -> crate::sim::network::Network {
        self.shared.network.clone()
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

    /// What messages become when they leave the queue (`leaves_failed` is
    /// cleared by the next reboot, `no_account` stays).
    pub fn set_fate(&self, id: &str, fate: MessageFate) -> Result<(), ControlError> {
        self.shared.with_inst(id, |i, _| i.fate = fate)
    }

    /// How `getMessage` answers an id that is not in the journal.
    pub fn set_not_found_form(&self, id: &str, form: NotFoundForm) -> Result<(), ControlError> {
        self.shared.with_inst(id, |i, _| i.not_found_form = form)
    }

    /// Queues `count` messages to another chat and stalls the queue until
    /// the next reboot: with more than 500, `showMessagesQueue` no longer
    /// lists what comes after them.
    pub fn add_backlog(&self, id: &str, count: usize) -> Result<(), ControlError> {
        self.shared
            .with_inst(id, |i, now| super::journal::add_backlog(i, count, now))
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

/// The `/_sim/...` routes; the server adds the Green-API routes as the
/// fallback.
pub(super) fn routes() -> Router<Arc<Shared>> {
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
        .route("/_sim/instances/{id}/fate", put(ctl_set_fate))
        .route(
            "/_sim/instances/{id}/not_found_form",
            put(ctl_set_not_found_form),
        )
        .route("/_sim/instances/{id}/backlog", post(ctl_add_backlog))
        .route("/_sim/calls", get(ctl_calls).delete(ctl_clear_calls))
        .route("/_sim/calls/counts", get(ctl_counts))
        .route("/_sim/canned", get(ctl_canned))
        .route("/_sim/clock", get(ctl_clock))
        .route("/_sim/clock/advance", post(ctl_clock_advance))
}

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

/// `{"fate": "sent" | "leaves_failed" | "no_account"}`.
async fn ctl_set_fate(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = ctl_body(&body)
        .and_then(|o| ctl_field::<MessageFate>(&o, "fate"))
        .and_then(|f| control(&s).set_fate(&id, f));
    ctl_ok(r)
}

/// `{"form": "not_found404" | "empty_body" | "empty_object"}`.
async fn ctl_set_not_found_form(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = ctl_body(&body)
        .and_then(|o| ctl_field::<NotFoundForm>(&o, "form"))
        .and_then(|f| control(&s).set_not_found_form(&id, f));
    ctl_ok(r)
}

/// `{"count": 600}`.
async fn ctl_add_backlog(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = ctl_body(&body)
        .and_then(|o| ctl_field::<usize>(&o, "count"))
        .and_then(|n| control(&s).add_backlog(&id, n));
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
