//! The exact bytes WAHA answers with: status codes, JSON key order and
//! headers of the WAHA source and OpenAPI, and of recordings from a real
//! WAHA 2024.10.8 Core server (NOWEB). Every body is a struct (fields serialize in declaration order) so
//! the key order is visible and fixed. Nothing here reads state or the clock;
//! callers pass what the body needs.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::acks::{PresenceForm, presence};
use super::state::{Engine, SendErrorSpec, Session, Status};
use crate::clock::Timestamp;
use crate::sim::{OrderedJson, json_response};

/// The WAHA version the simulator claims (the version of issue #2084).
pub const WAHA_VERSION: &str = "2026.4.2";
/// `worker.id` in the version object.
pub const WORKER_ID: &str = "sim";

/// Serializes as `{}`.
#[derive(Serialize)]
struct Empty {}

// ---------------------------------------------------------------- NestJS errors

/// `new XException('msg')` in current NestJS: `{message, error, statusCode}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NestError<'a, M: Serialize> {
    message: M,
    error: &'a str,
    status_code: u16,
}

/// The older key order, which WAHA still shows for the router's 404 and for
/// `SessionPipe`'s 404 (recorded from WAHA 2024.10.8): `{statusCode, message, error}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NestErrorLegacy<'a> {
    status_code: u16,
    message: &'a str,
    error: &'a str,
}

/// `new XException()` without arguments: `{message, statusCode}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NestBare<'a> {
    message: &'a str,
    status_code: u16,
}

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

/// A NestJS `HttpException` body in current key order.
pub fn nest_error<M: Serialize>(status: StatusCode, message: M) -> Response {
    json_response(
        status,
        &NestError {
            message,
            error: reason(status),
            status_code: status.as_u16(),
        },
    )
}

/// 401 from the API-key middleware.
pub fn unauthorized() -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        &NestBare {
            message: "Unauthorized",
            status_code: 401,
        },
    )
}

/// The router's 404: `Cannot GET /api/nosuchroute` (URL as requested, with
/// its query string, as Express's `originalUrl`).
pub fn route_not_found(method: &str, url: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &NestErrorLegacy {
            status_code: 404,
            message: &format!("Cannot {method} {url}"),
            error: "Not Found",
        },
    )
}

/// 404 of the session routes.
pub fn session_not_found() -> Response {
    nest_error(StatusCode::NOT_FOUND, "Session not found")
}

/// 404 of routes that need a running session (`GET /api/sessions/{s}/me`).
pub fn session_not_running(name: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &NestErrorLegacy {
            status_code: 404,
            message: &format!(
                "We didn't find a session with name '{name}'.\nPlease start it first by using POST /api/sessions/{name}/start request"
            ),
            error: "Not Found",
        },
    )
}

/// 422 of `start` on a running session.
pub fn already_started(name: &str) -> Response {
    nest_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("Session '{name}' is already started."),
    )
}

/// 400 of the ValidationPipe: `message` is a list of complaints.
pub fn validation_failed(messages: &[&str]) -> Response {
    nest_error(StatusCode::BAD_REQUEST, messages)
}

/// 400 of the JSON body parser.
pub fn malformed_json(detail: &str) -> Response {
    nest_error(
        StatusCode::BAD_REQUEST,
        format!("Unexpected token in JSON: {detail}"),
    )
}

/// 413 of the body parser.
pub fn payload_too_large() -> Response {
    nest_error(StatusCode::PAYLOAD_TOO_LARGE, "request entity too large")
}

// ---------------------------------------------------------------- send-path 422s

/// The raw objects WAHA hands to `UnprocessableEntityException`: no
/// `statusCode` key (WAHA source: the send path's session check).
#[derive(Serialize)]
struct NameRequired<'a> {
    error: &'a str,
    session: Option<&'a OrderedJson>,
}

#[derive(Serialize)]
struct DoesNotExist<'a> {
    error: String,
    session: &'a str,
}

#[derive(Serialize)]
struct NotExpected<'a> {
    error: &'a str,
    session: &'a str,
    status: Status,
    expected: [Status; 1],
}

/// `session` missing or empty: echoes what was sent (`null` when absent).
pub fn session_name_required(session: Option<&OrderedJson>) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &NameRequired {
            error: "Session name is required",
            session,
        },
    )
}

pub fn session_does_not_exist(name: &str) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &DoesNotExist {
            error: format!("Session \"{name}\" does not exist"),
            session: name,
        },
    )
}

pub fn status_not_expected(name: &str, status: Status) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &NotExpected {
            error: "Session status is not as expected. Try again later or restart the session",
            session: name,
            status,
            expected: [Status::Working],
        },
    )
}

// ---------------------------------------------------------------- server routes

#[derive(Serialize)]
struct Worker {
    id: &'static str,
}

/// The server's VERSION object (WAHA OpenAPI: `GET /api/version`).
#[derive(Serialize)]
pub struct Version {
    version: &'static str,
    engine: Engine,
    tier: &'static str,
    browser: Option<&'static str>,
    platform: &'static str,
    worker: Worker,
}

pub fn version_object(engine: Engine) -> Version {
    Version {
        version: WAHA_VERSION,
        engine,
        tier: "PLUS",
        browser: None,
        platform: "linux/x64",
        worker: Worker { id: WORKER_ID },
    }
}

pub fn version(engine: Engine) -> Response {
    json_response(StatusCode::OK, &version_object(engine))
}

#[derive(Serialize)]
struct Message<'a> {
    message: &'a str,
}

pub fn pong() -> Response {
    json_response(StatusCode::OK, &Message { message: "pong" })
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    info: Empty,
    error: Empty,
    details: Empty,
}

/// Plus-tier `/health` (terminus), always healthy: no disk or database here.
pub fn health() -> Response {
    json_response(
        StatusCode::OK,
        &Health {
            status: "ok",
            info: Empty {},
            error: Empty {},
            details: Empty {},
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerStatus {
    start_timestamp: i64,
    uptime: i64,
    worker: Worker,
}

pub fn server_status(started: Timestamp, now: Timestamp) -> Response {
    json_response(
        StatusCode::OK,
        &ServerStatus {
            start_timestamp: started.as_millis(),
            uptime: now.as_millis().saturating_sub(started.as_millis()),
            worker: Worker { id: WORKER_ID },
        },
    )
}

// ---------------------------------------------------------------- sessions

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Me<'a> {
    id: &'a str,
    push_name: &'a str,
    /// 2026 servers only; omitted unless a timelock was ever set.
    #[serde(skip_serializing_if = "Option::is_none")]
    reachout_timelock: Option<Timelock>,
}

/// `MeInfo.reachoutTimelock` (WAHA 2026 `sessions.dto.ts`). The type of
/// `timeEnforcementEnds` is not confirmed; the simulator writes RFC 3339.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Timelock {
    enforcement_type: &'static str,
    is_active: bool,
    time_enforcement_ends: String,
}

fn me_info<'a>(name: &'a str, s: &'a Session, now: Timestamp) -> Me<'a> {
    Me {
        id: &s.me_id,
        push_name: name,
        reachout_timelock: s.timelock(now).map(|(active, until)| Timelock {
            enforcement_type: "REACHOUT_TIMELOCK",
            is_active: active,
            time_enforcement_ends: until.to_rfc3339(),
        }),
    }
}

#[derive(Serialize)]
struct Timestamps {
    activity: Option<i64>,
}

#[derive(Serialize)]
struct Grpc {
    client: &'static str,
    stream: &'static str,
}

#[derive(Serialize)]
struct GowsState {
    found: bool,
    connected: bool,
}

/// The `engine` block of the single-session GET: `{}` when stopped, the
/// GOWS gRPC/connection state when running on GOWS, else just the name.
#[derive(Serialize)]
#[serde(untagged)]
enum EngineInfo {
    Stopped(Empty),
    Gows {
        engine: Engine,
        grpc: Grpc,
        gows: GowsState,
    },
    Named {
        engine: Engine,
    },
}

/// SessionInfo, plus `engine` for the detailed form (WAHA OpenAPI: SessionInfo).
#[derive(Serialize)]
struct SessionInfo<'a> {
    name: &'a str,
    status: Status,
    config: Option<Empty>,
    me: Option<Me<'a>>,
    presence: serde_json::Value,
    timestamps: Timestamps,
    #[serde(skip_serializing_if = "Option::is_none")]
    engine: Option<EngineInfo>,
}

/// How a SessionInfo is written: the engine, the `presence` form, and the
/// instant (for `me.reachoutTimelock`).
#[derive(Clone, Copy)]
pub struct View {
    pub engine: Engine,
    pub presence: PresenceForm,
    pub now: Timestamp,
}

/// The serializable view of one session; `detailed` adds the engine block.
pub fn session_info<'a>(
    name: &'a str,
    s: &'a Session,
    view: View,
    detailed: bool,
) -> impl Serialize + 'a {
    let engine = view.engine;
    let status = s.status();
    let working = status == Status::Working;
    let engine_info = detailed.then(|| match (s.is_running(), engine) {
        (false, _) => EngineInfo::Stopped(Empty {}),
        (true, Engine::Gows) => EngineInfo::Gows {
            engine,
            grpc: Grpc {
                client: "READY",
                stream: "READY",
            },
            // #2084 sessions look connected; whether real GOWS says so is
            // unconfirmed, but the point of the fault is that nothing shows.
            gows: GowsState {
                found: true,
                connected: working,
            },
        },
        (true, _) => EngineInfo::Named { engine },
    });
    SessionInfo {
        name,
        status,
        config: None,
        me: working.then(|| me_info(name, s, view.now)),
        presence: presence(view.presence, working),
        timestamps: Timestamps {
            activity: s.activity.map(Timestamp::as_millis),
        },
        engine: engine_info,
    }
}

/// `GET /api/sessions/{s}/me` of a running session: MeInfo, or an empty
/// body when not logged in (recorded from WAHA 2024.10.8).
pub fn me(name: &str, s: &Session, now: Timestamp) -> Response {
    if s.status() == Status::Working {
        json_response(StatusCode::OK, &me_info(name, s, now))
    } else {
        StatusCode::OK.into_response()
    }
}

// ---------------------------------------------------------------- 500 filter body

/// `request` of the exception filter body (as in the #2084 report).
#[derive(Serialize)]
struct RequestEcho<'a> {
    path: &'a str,
    method: &'a str,
    body: &'a OrderedJson,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FilterBody<'a, E: Serialize> {
    status_code: u16,
    timestamp: String,
    exception: E,
    request: RequestEcho<'a>,
    version: Version,
}

/// A gRPC `ServiceError` as the filter dumps it: own properties in the order
/// grpc-js sets them, then `name`, then `stack` (WAHA source: the global exception filter).
#[derive(Serialize)]
struct GrpcException {
    message: &'static str,
    code: u8,
    details: &'static str,
    metadata: Empty,
    name: &'static str,
    stack: &'static str,
}

/// A gRPC error with WhatsApp's own code (whatsmeow's
/// `server returned error <code>`).
#[derive(Serialize)]
struct GrpcCodeException {
    message: String,
    code: u8,
    details: String,
    metadata: Empty,
    name: &'static str,
    stack: String,
}

/// A plain JavaScript `Error`.
#[derive(Serialize)]
struct PlainException<'a> {
    message: &'a str,
    name: &'static str,
    stack: String,
}

/// The stack of #2084. The first two lines are from the report; the rest
/// follows grpc-js's and WAHA's call path (line numbers past the first are
/// illustrative).
const DESYNC_STACK: &str = "Error: 2 UNKNOWN: server returned error 400\n    at callErrorFromStatus (/app/node_modules/@grpc/grpc-js/build/src/call.js:32:19)\n    at Object.onReceiveStatus (/app/node_modules/@grpc/grpc-js/build/src/client.js:193:76)\n    at Object.onReceiveStatus (/app/node_modules/@grpc/grpc-js/build/src/client-interceptors.js:367:141)\n    at Object.onReceiveStatus (/app/node_modules/@grpc/grpc-js/build/src/client-interceptors.js:327:181)\n    at /app/node_modules/@grpc/grpc-js/build/src/resolving-call.js:135:78\n    at process.processTicksAndRejections (node:internal/process/task_queues:85:11)\nfor call at\n    at MessageServiceClient.makeUnaryRequest (/app/node_modules/@grpc/grpc-js/build/src/client.js:161:32)\n    at MessageServiceClient.SendMessage (/app/dist/core/engines/gows/grpc/gows.js:10502:30)\n    at WhatsappSessionGoWSPlus.sendText (/app/dist/core/engines/gows/session.gows.core.js:517:78)\n    at descriptor.value (/app/dist/core/abc/activity.js:9:35)";

/// What the filter needs to know about the failed request.
pub struct FailedRequest<'a> {
    /// `req.url`: path with query.
    pub url: &'a str,
    pub method: &'a str,
    /// The parsed JSON body (`{}` when there was none).
    pub body: &'a OrderedJson,
    pub engine: Engine,
    pub now: Timestamp,
}

fn filter_500<E: Serialize>(req: &FailedRequest<'_>, exception: E) -> Response {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &FilterBody {
            status_code: 500,
            timestamp: req.now.to_rfc3339(),
            exception,
            request: RequestEcho {
                path: req.url,
                method: req.method,
                body: req.body,
            },
            version: version_object(req.engine),
        },
    )
}

/// Issue #2084: the send reached WhatsApp, which rejected it with 400.
pub fn desync(req: &FailedRequest<'_>) -> Response {
    filter_500(
        req,
        GrpcException {
            message: "2 UNKNOWN: server returned error 400",
            code: 2,
            details: "server returned error 400",
            metadata: Empty {},
            name: "Error",
            stack: DESYNC_STACK,
        },
    )
}

/// WhatsApp refused the send with `code` (463: reachout timelock, 403: a
/// refusal), forwarded by GOWS as gRPC UNKNOWN inside the 500 filter body.
pub fn whatsapp_error(req: &FailedRequest<'_>, code: u16) -> Response {
    let message = format!("2 UNKNOWN: server returned error {code}");
    let stack = DESYNC_STACK.replacen(
        "server returned error 400",
        &format!("server returned error {code}"),
        1,
    );
    filter_500(
        req,
        GrpcCodeException {
            message,
            code: 2,
            details: format!("server returned error {code}"),
            metadata: Empty {},
            name: "Error",
            stack,
        },
    )
}

/// A 500 from a plain `Error` (no gRPC signature).
pub fn plain_500(req: &FailedRequest<'_>, message: &str, at: &str) -> Response {
    filter_500(
        req,
        PlainException {
            message,
            name: "Error",
            stack: format!("Error: {message}\n    at {at}"),
        },
    )
}

/// `RestartFails`: the per-session lock or the engine start failed.
pub fn restart_failed(req: &FailedRequest<'_>) -> Response {
    plain_500(
        req,
        "async-lock timed out",
        "Timeout._onTimeout (/app/node_modules/async-lock/lib/index.js:177:17)",
    )
}

// ---------------------------------------------------------------- injected send faults

/// The page a reverse proxy (nginx) shows when WAHA is down or failing.
pub fn proxy_error(status: StatusCode) -> Response {
    let title = match status.as_u16() {
        503 => "503 Service Temporarily Unavailable".to_owned(),
        504 => "504 Gateway Time-out".to_owned(),
        n => format!("{n} {}", reason(status)),
    };
    let html = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))],
        html,
    )
        .into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Throttled<'a> {
    status_code: u16,
    message: &'a str,
}

/// 429 as `@nestjs/throttler` (or a proxy) would send it.
pub fn rate_limited(retry_after_secs: Option<u64>) -> Response {
    let mut resp = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &Throttled {
            status_code: 429,
            message: "ThrottlerException: Too Many Requests",
        },
    );
    if let Some(secs) = retry_after_secs {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// An injected `SendError`. With a body: sent as JSON if it parses as JSON,
/// else as text. Without: 500 is a plain filter body (no #2084 signature),
/// 502-504 the proxy page, anything else Nest's bare exception body.
pub fn send_error(spec: &SendErrorSpec, req: &FailedRequest<'_>) -> Response {
    let status = StatusCode::from_u16(spec.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match &spec.body {
        Some(body) => {
            let content_type = if serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok() {
                crate::sim::JSON_UTF8
            } else {
                "text/plain; charset=utf-8"
            };
            (
                status,
                [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
                body.clone(),
            )
                .into_response()
        }
        None => match status.as_u16() {
            500 => plain_500(
                req,
                "simulated send failure",
                "WhatsappSessionGoWSPlus.sendText (/app/dist/core/engines/gows/session.gows.core.js:517:78)",
            ),
            502..=504 => proxy_error(status),
            n => json_response(
                status,
                &NestBare {
                    message: reason(status),
                    status_code: n,
                },
            ),
        },
    }
}
