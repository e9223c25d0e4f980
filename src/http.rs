//! The daemon's HTTP server: `/metrics`, `/healthz`, `/readyz` and the JSON
//! API under `/api/v1` (DESIGN.md "Contracts → HTTP API").
//!
//! Owns: the routes, their JSON shapes and status codes, bearer-token auth of
//! the admin (POST) routes, and the server's own resource bounds. It is the
//! only module besides `sim` that knows axum/hyper.
//!
//! Must not: lock or wait on the scheduler to answer a read. Everything the
//! GET routes show comes from the store (the scheduler saves every change
//! before it answers or moves on, so the store is current) or from the
//! metrics registry; only the admin routes talk to the scheduler, through
//! [`Handle::command`], which queues like any other input. It never logs or
//! echoes the admin token, and answers bad input with a 4xx, never a panic.
//!
//! Bounds, because the listener may be reachable by more than Prometheus:
//! - at most [`MAX_CONNECTIONS`] connections at once; further clients wait in
//!   the kernel's accept backlog until one closes (no unbounded task growth);
//! - request headers must arrive within [`HEADER_READ_TIMEOUT`] (hyper closes
//!   the connection otherwise: slowloris on headers);
//! - every request, body read included, is answered within
//!   [`REQUEST_TIMEOUT`] (a 503 after that: slowloris on bodies, a wedged
//!   store);
//! - request bodies are at most [`BODY_LIMIT`] bytes (413, checked on
//!   `Content-Length` before reading and while reading chunked bodies);
//! - a connection lives at most [`CONNECTION_LIFETIME`]; then it is closed
//!   after its current request, so a client that reads its response slowly or
//!   keeps a connection forever cannot pin a slot. What hyper does not offer
//!   is a minimum transfer rate for writes; the lifetime cap bounds them.
//! - HTTP/1.1 only (Prometheus, curl and Alertmanager-style clients use it;
//!   no HTTP/2 state to bound).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::app::{CommandError, Handle};
use crate::clock::{Clock, Timestamp};
use crate::config::{MAX_DURATION, Secret};
use crate::metrics::{self, Metrics};
use crate::scheduler::{Command, Heartbeat};
use crate::store::{ProbeRecord, RemediationRecord, SessionRecord, Store, TransitionRecord};

/// Largest request body accepted (the admin routes take at most a small JSON
/// object).
pub const BODY_LIMIT: usize = 16 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Deadline for one request, from the end of its headers to the end of the
/// handler (body read included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection (keep-alive included); Prometheus simply
/// reconnects.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// `/healthz` fails when the scheduler loop has not gone round for this long.
/// The loop wakes every [`crate::scheduler::HEARTBEAT`] (1 s) even when idle.
pub const HEARTBEAT_MAX_AGE: Duration = Duration::from_secs(30);
/// Entries of each history list in `GET /api/v1/sessions/{provider}/{session}`.
pub const HISTORY_LIMIT: u32 = 50;

/// The `error` of a POST to the admin API when no token is configured.
pub const ADMIN_DISABLED: &str =
    "admin API disabled: set daemon.admin_token_env or admin_token_file";

/// What the handlers need. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// The scheduler loop's heartbeat, for `/healthz`.
    pub heartbeat: Heartbeat,
    /// `/healthz` answers 503 when the heartbeat is older than this
    /// ([`HEARTBEAT_MAX_AGE`] in the daemon).
    pub heartbeat_max_age: Duration,
    /// Commands to the running scheduler (admin routes).
    pub handle: Handle,
    /// The daemon's clock: a pause `for` a duration ends at `now + for`.
    pub clock: Clock,
    /// `daemon.admin_token`; `None` turns the admin routes off (403).
    pub admin_token: Option<Secret>,
    /// The config file the daemon runs with, shown by `/readyz`.
    pub config_path: PathBuf,
}

/// The routes, with the per-request bounds (body limit, request timeout).
/// [`serve`] adds the per-connection bounds.
pub fn router(state: HttpState) -> Router {
    let state = Arc::new(state);
    let admin = Router::new()
        .route("/api/v1/sessions/{provider}/{session}/pause", post(pause))
        .route("/api/v1/sessions/{provider}/{session}/resume", post(resume))
        .route(
            "/api/v1/sessions/{provider}/{session}/restart",
            post(restart),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/sessions", get(list_sessions))
        .route("/api/v1/sessions/{provider}/{session}", get(one_session))
        .merge(admin)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(request_bounds))
        .with_state(state)
}

/// Serves `state`'s routes on `listener` until `shutdown` resolves, then lets
/// requests in flight finish (at most [`REQUEST_TIMEOUT`] more) and returns.
/// Accept errors (e.g. out of file descriptors) are logged and retried; they
/// never end the server.
pub async fn serve(listener: TcpListener, state: HttpState, shutdown: impl Future<Output = ()>) {
    let router = router(state);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = joined {
                    if e.is_panic() {
                        tracing::error!(error = %e, "http: a connection task panicked");
                    }
                }
            }
            accepted = accept(&listener, &slots) => match accepted {
                Ok((stream, permit)) => {
                    connections.spawn(connection(stream, router.clone(), stop_rx.clone(), permit));
                }
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "http: closing connections still busy at shutdown"
        );
        connections.shutdown().await;
    }
    tracing::info!("http server stopped");
}

/// Waits for a connection slot, then for a client. Cancel-safe: dropping it
/// gives the slot back and loses no connection.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> std::io::Result<(TcpStream, OwnedSemaphorePermit)> {
    let permit = slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| std::io::Error::other("connection semaphore closed"))?;
    let (stream, _peer) = listener.accept().await?;
    Ok((stream, permit))
}

/// Serves one connection until the client closes it, the server stops, or
/// [`CONNECTION_LIFETIME`] passes. Holds its connection slot while it runs.
async fn connection(
    stream: TcpStream,
    router: Router,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(conn);
    let deadline = tokio::time::sleep(CONNECTION_LIFETIME);
    tokio::pin!(deadline);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    // Clients hanging up, header timeouts: routine, not errors.
                    tracing::debug!(error = %e, "http: connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + REQUEST_TIMEOUT);
            }
            () = &mut deadline => {
                if closing {
                    return; // dropping the connection closes the socket
                }
                // Finish the request in flight (bounded by REQUEST_TIMEOUT), then close.
                conn.as_mut().graceful_shutdown();
                closing = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + REQUEST_TIMEOUT);
            }
        }
    }
}

// ---------------------------------------------------------------- middleware

/// A JSON `{"error": message}` with `status`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Rejects declared oversized bodies before anything reads them, and bounds
/// every request by [`REQUEST_TIMEOUT`].
async fn request_bounds(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return too_large();
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("request timed out after {}s", REQUEST_TIMEOUT.as_secs_f64()),
        ),
    }
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {BODY_LIMIT} bytes"),
    )
}

/// The admin routes' gate: 403 when no token is configured, 401 (with
/// `WWW-Authenticate`) for a missing or wrong `Authorization: Bearer`.
async fn require_admin(State(s): State<Arc<HttpState>>, req: Request, next: Next) -> Response {
    let Some(token) = &s.admin_token else {
        return error(StatusCode::FORBIDDEN, ADMIN_DISABLED);
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    // `matches` takes time independent of where the strings differ.
    if presented.is_some_and(|t| token.matches(t)) {
        return next.run(req).await;
    }
    tracing::warn!(
        path = req.uri().path(),
        presented = presented.is_some(),
        "admin API: refused a request with a missing or wrong bearer token"
    );
    let mut response = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"wa-watchdog\""),
    );
    response
}

/// The token of an `Authorization: Bearer <token>` value (scheme
/// case-insensitive, as RFC 9110 says).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route")
}

// ---------------------------------------------------------------- probes of the daemon

async fn metrics_text(State(s): State<Arc<HttpState>>) -> Response {
    match s.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "http: cannot encode /metrics");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

async fn healthz(State(s): State<Arc<HttpState>>) -> Response {
    let max = s.heartbeat_max_age.as_secs_f64();
    match s.heartbeat.age() {
        Some(age) if age <= s.heartbeat_max_age => (
            StatusCode::OK,
            axum::Json(json!({
                "status": "ok",
                "heartbeat_age_seconds": age.as_secs_f64(),
                "max_age_seconds": max,
            })),
        )
            .into_response(),
        Some(age) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "status": "stalled",
                "error": format!("scheduler loop last ran {:.1}s ago", age.as_secs_f64()),
                "heartbeat_age_seconds": age.as_secs_f64(),
                "max_age_seconds": max,
            })),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "status": "starting",
                "error": "scheduler loop has not run yet",
                "heartbeat_age_seconds": null,
                "max_age_seconds": max,
            })),
        )
            .into_response(),
    }
}

async fn readyz(State(s): State<Arc<HttpState>>) -> Response {
    // The config was loaded and validated before the server existed; the
    // store is what can go away at run time.
    let config = s.config_path.display().to_string();
    match s.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({ "status": "ready", "store": "ok", "config": config })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "status": "not ready",
                "error": format!("store: {e}"),
                "store": "error",
                "config": config,
            })),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------- reads

fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339()
}

/// One session in `GET /api/v1/sessions` (the contract's keys, in order).
#[derive(Serialize)]
struct SessionJson {
    provider: String,
    session: String,
    state: String,
    since: String,
    consecutive_failures: u32,
    last_success: Option<String>,
    last_outcome: Option<String>,
    next_probe: Option<String>,
}

impl From<&SessionRecord> for SessionJson {
    fn from(r: &SessionRecord) -> Self {
        SessionJson {
            provider: r.provider.clone(),
            session: r.session.clone(),
            state: r.state.clone(),
            since: rfc3339(r.since),
            consecutive_failures: r.consecutive_failures,
            last_success: r.last_success_at.map(rfc3339),
            last_outcome: r.last_outcome.clone(),
            next_probe: r.next_probe_at.map(rfc3339),
        }
    }
}

/// `GET /api/v1/sessions/{provider}/{session}`: the list entry plus why it
/// is in its state and its recent history, newest first.
#[derive(Serialize)]
struct SessionDetailJson {
    #[serde(flatten)]
    session: SessionJson,
    reason: String,
    transitions: Vec<TransitionJson>,
    probes: Vec<ProbeJson>,
    remediations: Vec<RemediationJson>,
}

#[derive(Serialize)]
struct TransitionJson {
    at: String,
    from: String,
    to: String,
    reason: String,
}

impl From<TransitionRecord> for TransitionJson {
    fn from(t: TransitionRecord) -> Self {
        TransitionJson {
            at: rfc3339(t.at),
            from: t.from_state,
            to: t.to_state,
            reason: t.reason,
        }
    }
}

#[derive(Serialize)]
struct ProbeJson {
    at: String,
    kind: String,
    outcome: String,
    http_status: Option<u16>,
    latency_ms: u64,
    detail: String,
}

impl From<ProbeRecord> for ProbeJson {
    fn from(p: ProbeRecord) -> Self {
        ProbeJson {
            at: rfc3339(p.at),
            kind: p.kind,
            outcome: p.outcome,
            http_status: p.http_status,
            latency_ms: p.latency_ms,
            detail: p.detail,
        }
    }
}

#[derive(Serialize)]
struct RemediationJson {
    id: i64,
    started_at: String,
    action: String,
    reason: String,
    result: String,
    detail: String,
    finished_at: Option<String>,
    duration_ms: Option<u64>,
    recovery_ms: Option<u64>,
}

impl From<RemediationRecord> for RemediationJson {
    fn from(r: RemediationRecord) -> Self {
        RemediationJson {
            id: r.id,
            started_at: rfc3339(r.started_at),
            action: r.action,
            reason: r.reason,
            result: r.result,
            detail: r.detail,
            finished_at: r.finished_at.map(rfc3339),
            duration_ms: r.duration_ms,
            recovery_ms: r.recovery_ms,
        }
    }
}

fn store_error(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "http: cannot read {what} from the store");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("cannot read {what} from the store: {e}"),
    )
}

fn unknown_session(provider: &str, session: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no watched session \"{session}\" at provider \"{provider}\""),
    )
}

async fn list_sessions(State(s): State<Arc<HttpState>>) -> Response {
    match s.store.list_sessions(false).await {
        Ok(rows) => {
            axum::Json(rows.iter().map(SessionJson::from).collect::<Vec<_>>()).into_response()
        }
        Err(e) => store_error("sessions", e),
    }
}

/// The active (not retired) record of one session, or the response to send.
async fn active_session(
    s: &HttpState,
    provider: &str,
    session: &str,
) -> Result<SessionRecord, Response> {
    match s.store.session(provider, session).await {
        Ok(Some(r)) if r.retired_at.is_none() => Ok(r),
        Ok(_) => Err(unknown_session(provider, session)),
        Err(e) => Err(store_error("the session", e)),
    }
}

async fn one_session(
    State(s): State<Arc<HttpState>>,
    Path((provider, session)): Path<(String, String)>,
) -> Response {
    let rec = match active_session(&s, &provider, &session).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let (transitions, probes, remediations) = tokio::join!(
        s.store
            .recent_transitions(&provider, &session, None, HISTORY_LIMIT),
        s.store
            .recent_probes(&provider, &session, None, HISTORY_LIMIT),
        s.store
            .recent_remediations(&provider, &session, None, HISTORY_LIMIT),
    );
    let (transitions, probes, remediations) = match (transitions, probes, remediations) {
        (Ok(t), Ok(p), Ok(r)) => (t, p, r),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return store_error("the session's history", e);
        }
    };
    axum::Json(SessionDetailJson {
        session: SessionJson::from(&rec),
        reason: rec.state_reason,
        transitions: transitions.into_iter().map(Into::into).collect(),
        probes: probes.into_iter().map(Into::into).collect(),
        remediations: remediations.into_iter().map(Into::into).collect(),
    })
    .into_response()
}

// ---------------------------------------------------------------- admin

/// `?for=2h`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PauseQuery {
    #[serde(rename = "for")]
    duration: Option<String>,
    reason: Option<String>,
}

/// `{"for": "2h", "reason": "..."}`; both optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    #[serde(rename = "for")]
    duration: Option<String>,
    reason: Option<String>,
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// Parses the pause duration: positive, humantime, at most ten years. The
/// error is the message of the 400.
fn pause_duration(text: &str, source: &str) -> Result<Duration, String> {
    let invalid = |why: String| {
        format!(
            "invalid \"for\" in the {source}: {why} (expected a duration such as \"30m\" or \"2h\")"
        )
    };
    let d = humantime::parse_duration(text.trim()).map_err(|e| invalid(e.to_string()))?;
    if d.is_zero() {
        return Err(invalid("must be longer than zero".into()));
    }
    if d > MAX_DURATION {
        return Err(invalid("longer than ten years".into()));
    }
    Ok(d)
}

async fn pause(
    State(s): State<Arc<HttpState>>,
    Path((provider, session)): Path<(String, String)>,
    query: Result<Query<PauseQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return bad_request(format!("invalid query string: {}", e.body_text())),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(),
        Err(e) => {
            return error(
                e.status(),
                format!("cannot read the body: {}", e.body_text()),
            );
        }
    };
    let body: PauseBody = if body.iter().all(u8::is_ascii_whitespace) {
        PauseBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return bad_request(format!(
                    "invalid JSON body: {e} (expected {{\"for\": \"2h\", \"reason\": \"...\"}}, both optional)"
                ));
            }
        }
    };
    let duration = match (query.duration, body.duration) {
        (Some(_), Some(_)) => {
            return bad_request("give \"for\" in the query string or in the body, not both");
        }
        (Some(q), None) => match pause_duration(&q, "query string") {
            Ok(d) => Some(d),
            Err(why) => return bad_request(why),
        },
        (None, Some(b)) => match pause_duration(&b, "body") {
            Ok(d) => Some(d),
            Err(why) => return bad_request(why),
        },
        (None, None) => None,
    };
    let reason = body
        .reason
        .or(query.reason)
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "paused by an operator through the HTTP API".to_string());
    if let Err(r) = active_session(&s, &provider, &session).await {
        return r;
    }
    let until = duration.map(|d| s.clock.now().plus(d));
    let cmd = Command::Pause {
        provider: provider.clone(),
        session: session.clone(),
        until,
        reason: reason.clone(),
    };
    tracing::info!(%provider, %session, until = ?until, %reason, "admin API: pause");
    run_command(&s, cmd, &provider, &session, "pause", |body| {
        body["until"] = json!(until.map(rfc3339));
        body["reason"] = json!(reason);
    })
    .await
}

async fn resume(
    State(s): State<Arc<HttpState>>,
    Path((provider, session)): Path<(String, String)>,
) -> Response {
    if let Err(r) = active_session(&s, &provider, &session).await {
        return r;
    }
    tracing::info!(%provider, %session, "admin API: resume");
    let cmd = Command::Resume {
        provider: provider.clone(),
        session: session.clone(),
    };
    run_command(&s, cmd, &provider, &session, "resume", |_| {}).await
}

async fn restart(
    State(s): State<Arc<HttpState>>,
    Path((provider, session)): Path<(String, String)>,
) -> Response {
    if let Err(r) = active_session(&s, &provider, &session).await {
        return r;
    }
    tracing::info!(%provider, %session, "admin API: restart");
    let cmd = Command::Restart {
        provider: provider.clone(),
        session: session.clone(),
    };
    run_command(&s, cmd, &provider, &session, "restart", |_| {}).await
}

/// Sends `cmd` and answers 200 `{"ok": true, ...}`, 409 with the scheduler's
/// reason when it refuses, or 503 when it is not running.
async fn run_command(
    s: &HttpState,
    cmd: Command,
    provider: &str,
    session: &str,
    action: &str,
    extra: impl FnOnce(&mut serde_json::Value),
) -> Response {
    match s.handle.command(cmd).await {
        Ok(()) => {
            let mut body = json!({
                "ok": true,
                "provider": provider,
                "session": session,
                "action": action,
            });
            extra(&mut body);
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(CommandError::Refused(why)) => {
            tracing::info!(%provider, %session, action, reason = %why, "admin API: refused");
            error(StatusCode::CONFLICT, why)
        }
        Err(e @ CommandError::NotRunning) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_takes_the_token_of_a_bearer_header_only() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("BEARER abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer(""), None);
    }

    #[test]
    fn pause_durations_are_humantime_positive_and_bounded() {
        assert_eq!(
            pause_duration("2h", "query string").ok(),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(
            pause_duration(" 90s ", "body").ok(),
            Some(Duration::from_secs(90))
        );
        for bad in ["", "soon", "0s", "-1h", "20000y", "2 parsecs"] {
            assert!(pause_duration(bad, "query string").is_err(), "{bad:?}");
        }
    }
}
