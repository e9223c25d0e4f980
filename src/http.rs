//! The daemon's HTTP server: `/metrics`, `/healthz`, `/readyz` and the JSON
//! API under `/api/v1` (README "Monitoring").
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
//! - at most [`MAX_CONNECTIONS`] connections are served at once, plus
//!   [`PROBE_SLOTS`] kept for `/healthz` and `/readyz` (so systemd's and
//!   Prometheus's probes of the daemon are answered when every other slot is
//!   busy); a connection gets a slot only once it has sent its first byte;
//! - a connection must send its first byte within [`FIRST_BYTE_TIMEOUT`],
//!   and at most [`MAX_WAITING`] connections wait for that (or for a slot)
//!   at once: a new one closes the oldest waiting one, so silent clients
//!   cannot hold slots nor starve a prompt client (see `server`);
//! - request headers must arrive within [`HEADER_READ_TIMEOUT`] (hyper closes
//!   the connection otherwise: slowloris on headers; also the longest a
//!   keep-alive connection idles between requests);
//! - every request, body read included, is answered within
//!   [`REQUEST_TIMEOUT`] (a 503 after that: slowloris on bodies, a wedged
//!   store);
//! - request bodies are at most [`BODY_LIMIT`] bytes (413, checked on
//!   `Content-Length` before reading and while reading chunked bodies);
//! - a connection lives at most [`CONNECTION_LIFETIME`]; then it is closed
//!   after its current request, so a client that reads its response slowly or
//!   keeps a connection forever cannot pin a slot. What hyper does not offer
//!   is a minimum transfer rate for writes; the lifetime cap bounds them.
//! - request targets are at most [`MAX_URI_BYTES`] (414) and header blocks
//!   at most [`MAX_HEADER_BYTES`] (431); every error answer is JSON
//!   `{"error": ...}` (see `json_errors`), except hyper's own refusals of
//!   targets over 64 KiB or headers over its read buffer (empty bodies,
//!   before any of this code runs);
//! - HTTP/1.1 only (Prometheus, curl and Alertmanager-style clients use it;
//!   no HTTP/2 state to bound).
//!
//! Code map: this file (the constants, [`HttpState`], the router, the
//! middleware and the daemon's own probes), `server` (the accept loop and
//! the connection bounds), `reads` (the JSON shapes and the GET routes of
//! the API), `admin` (the POST routes), `page` (the status page's routes;
//! its HTML is [`crate::status_page`]).

mod admin;
mod page;
mod reads;
mod server;
mod webhooks;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::clock::Clock;
use crate::config::Secret;
use crate::metrics::{self, Metrics};
use crate::scheduler::Handle;
use crate::scheduler::Heartbeat;
use crate::store::Store;

use self::admin::{pause, restart, resume};
use self::reads::{list_sessions, one_session};

pub use server::{serve, serve_router};

/// Longest request target (path and query) accepted: 414 beyond, as JSON.
/// hyper itself refuses targets over 64 KiB with an empty 414 before any
/// route runs; this bound sits below that, so the refusal a client meets is
/// JSON like every other error.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Largest request header block (names and values) accepted: 431 beyond, as
/// JSON. hyper's own limit (its ~400 KiB read buffer, 100 headers) answers an
/// empty 431 and sits above this one.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Largest request body accepted (the admin routes take at most a small JSON
/// object).
pub const BODY_LIMIT: usize = 16 * 1024;
/// Connections served at once (besides [`PROBE_SLOTS`]).
pub const MAX_CONNECTIONS: usize = 64;
/// Slots only `/healthz` and `/readyz` may use when the others are busy.
pub const PROBE_SLOTS: usize = 8;
/// Connections accepted and not yet served (waiting for their first byte or
/// a slot); one more closes the oldest.
pub const MAX_WAITING: usize = 256;
/// Deadline for a new connection's first byte.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(2);
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
    /// The receiver of `POST /webhooks/{provider}`; `None` answers 404.
    pub webhooks: Option<crate::webhooks::Receiver>,
    /// `daemon.replica` when this daemon is one of several on a shared
    /// PostgreSQL store: the API names each session's owner, `/readyz` the
    /// shards held, and an admin command for another replica's session is
    /// answered 421 naming it. `None` on SQLite (one daemon owns all).
    pub replica: Option<String>,
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
        .route("/", get(page::fleet))
        .route("/sessions/{provider}/{session}", get(page::session))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/sessions", get(list_sessions))
        .route("/api/v1/sessions/{provider}/{session}", get(one_session))
        .merge(admin)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(request_bounds))
        // After the layers above: webhooks have their own body limit.
        .merge(webhooks::routes(state.webhooks.as_ref()))
        .fallback(not_found)
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

/// The routes of `daemon.webhook_listen`: `POST /webhooks/{provider}` and
/// `/healthz`, nothing else (no metrics, no API) on the address exposed to
/// the providers.
pub fn webhook_router(state: HttpState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/healthz", get(healthz))
        .layer(middleware::from_fn(request_bounds))
        .merge(webhooks::routes(state.webhooks.as_ref()))
        .fallback(not_found)
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

// ---------------------------------------------------------------- middleware

/// Every error answer is a JSON `{"error": ...}`: refuses an overlong target
/// (414) or header block (431) itself, and turns the bodies axum and its
/// extractors answer on their own (an empty 405 with `Allow`, a text/plain
/// 400 for a path segment that is not UTF-8) into JSON, keeping the status
/// and the `Allow`, `WWW-Authenticate` and `Retry-After` headers. HTML
/// answers (the status page) and HEAD answers are left alone.
async fn json_errors(req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        return error(
            StatusCode::URI_TOO_LONG,
            format!("request target longer than {MAX_URI_BYTES} bytes"),
        );
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request headers larger than {MAX_HEADER_BYTES} bytes"),
        );
    }
    let head = req.method() == axum::http::Method::HEAD;
    let response = next.run(req).await;
    let status = response.status();
    if head || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(content_type.is_empty() || content_type.starts_with("text/plain")) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    let mut json = error(status, message);
    for name in [header::ALLOW, header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            json.headers_mut().insert(name, v.clone());
        }
    }
    json
}

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

/// `/metrics`, gzip-compressed when the scraper accepts it (Prometheus
/// does): at a large fleet the text is tens of megabytes and compresses
/// about tenfold.
async fn metrics_text(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    // Encoding (and compressing) a large fleet's registry takes a while of
    // pure CPU: on the blocking pool, not on a worker the scheduler and the
    // probes run on.
    let metrics = s.metrics.clone();
    let want_gzip = accepts_gzip(&headers);
    let encoded = tokio::task::spawn_blocking(move || {
        metrics.encode().map(|text| {
            let zipped = if want_gzip {
                gzip(text.as_bytes())
            } else {
                None
            };
            (text, zipped)
        })
    })
    .await;
    let (text, zipped) = match encoded {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "http: cannot encode /metrics");
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        Err(e) => {
            tracing::error!(error = %e, "http: encoding /metrics failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode metrics".to_string(),
            );
        }
    };
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    let vary = (header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(body) = zipped {
        let encoding = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        return ([content_type, vary, encoding], body).into_response();
    }
    ([content_type, vary], text).into_response()
}

/// Whether `Accept-Encoding` lists gzip (without `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            coding.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// `bytes` gzip-compressed (fast level: a scrape is on the clock).
fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 8),
        flate2::Compression::fast(),
    );
    enc.write_all(bytes).ok()?;
    enc.finish().ok()
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
    let writes = s.store.write_status();
    let write_problem = match (&writes.failing, writes.waiting) {
        (Some(e), _) => Some(format!("store: last write failed: {e}")),
        (None, Some(w)) if w > crate::store::WRITE_STALL => Some(format!(
            "store: a write has been waiting {:.1}s",
            w.as_secs_f64()
        )),
        _ => None,
    };
    if let Some(error) = write_problem {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "status": "not ready",
                "error": error,
                "store": "error",
                "config": config,
            })),
        )
            .into_response();
    }
    let ping = tokio::time::timeout(Duration::from_secs(2), s.store.ping()).await;
    let ping = ping.unwrap_or_else(|_| {
        Err(crate::store::StoreError::WriteTimeout {
            op: "ping",
            after: Duration::from_secs(2),
        })
    });
    match ping {
        Ok(()) => {
            let mut body = json!({ "status": "ready", "store": "ok", "config": config });
            if let Some(me) = &s.replica {
                // The leases held as the database sees them now.
                let held = match s.store.lease_owners().await {
                    Ok(owners) => json!(owners.iter().filter(|o| o.as_deref() == Some(me)).count()),
                    Err(_) => serde_json::Value::Null,
                };
                body["replica"] = json!(me);
                body["shards_owned"] = held;
                body["shards"] = json!(crate::lease::SHARDS);
            }
            (StatusCode::OK, axum::Json(body)).into_response()
        }
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
}
