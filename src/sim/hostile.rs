//! Hostile answers: a layer over a simulator that mangles the answers of
//! chosen requests on their way back, as a broken proxy, a captive portal or
//! a misbehaving gateway would. The fault suite (hostile-provider corpus)
//! puts every mode on every call a provider client makes.
//!
//! The request itself still reaches the simulator (its state changes and
//! its call log records it as usual); only the answer is replaced. So a
//! mangled restart answer still restarts the session, as it would behind a
//! proxy that broke only the way back.
//!
//! Kept apart from the vendor simulators: it knows nothing of WAHA or
//! Green-API, only methods and paths.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

/// The most bytes [`Hostile::Endless`] sends before it gives up (the client
/// must stop long before: its cap is far smaller).
const ENDLESS_LIMIT: usize = 256 * 1024 * 1024;
/// How long [`Hostile::Hang`] holds an answer back at most (or until the
/// rules are cleared).
const HANG_LIMIT: Duration = Duration::from_secs(60);
/// The pause between two bytes of [`Hostile::SlowDrip`].
const DRIP_PAUSE: Duration = Duration::from_millis(200);

/// One way to answer badly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// 200 with bytes that are no known format.
    Garbage,
    /// 200 with an empty body.
    Empty,
    /// 200 with the real answer cut in half (a complete HTTP message).
    TruncatedJson,
    /// The real answer's headers announce its full length, half of it
    /// arrives, then the connection breaks.
    CutOff,
    /// 200 with valid JSON far larger than any cap of the clients (1 MiB
    /// past 64 KiB; the session list's cap is 64 MiB, so for it this is
    /// merely a large valid-looking body).
    Oversized,
    /// 200 with bytes that are not UTF-8.
    InvalidUtf8,
    /// The real answer, one byte every 200 ms.
    SlowDrip,
    /// 200 with a body that never ends (until 256 MiB or the client leaves).
    Endless,
    /// 200 with an HTML page (a proxy's login or error page).
    Html200,
    /// No answer at all (at most a minute, or until the rules are cleared).
    Hang,
    /// The real body with another status code.
    Status(u16),
    /// This status and JSON body instead of the real answer (e.g. a session
    /// list that answers `[]`).
    Replace(u16, &'static str),
}

impl Hostile {
    /// Every mode of the corpus (`Status` aside: it is a parameter).
    pub const CORPUS: [Hostile; 10] = [
        Hostile::Garbage,
        Hostile::Empty,
        Hostile::TruncatedJson,
        Hostile::CutOff,
        Hostile::Oversized,
        Hostile::InvalidUtf8,
        Hostile::SlowDrip,
        Hostile::Endless,
        Hostile::Html200,
        Hostile::Hang,
    ];
}

#[derive(Clone, Debug)]
struct Rule {
    method: String,
    path_contains: String,
    mode: Hostile,
}

/// Which requests get which hostile answer. Cheap to clone; clones share.
#[derive(Clone, Debug)]
pub struct HostileControl {
    rules: Arc<Mutex<Vec<Rule>>>,
    /// Bumped by [`HostileControl::clear`]: releases hanging answers.
    released: watch::Sender<u64>,
}

impl Default for HostileControl {
    fn default() -> Self {
        Self {
            rules: Arc::default(),
            released: watch::Sender::new(0),
        }
    }
}

impl HostileControl {
    /// Answers requests with `method` (e.g. `GET`) whose path contains
    /// `path_contains` (or ends with it, when it ends in `$`) in `mode`,
    /// replacing an earlier rule for the same pair.
    pub fn set(&self, method: &str, path_contains: &str, mode: Hostile) {
        let mut rules = self.lock();
        rules.retain(|r| !(r.method == method && r.path_contains == path_contains));
        rules.push(Rule {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            mode,
        });
    }

    /// Removes every rule and lets hanging answers go.
    pub fn clear(&self) {
        self.lock().clear();
        self.released.send_modify(|n| *n += 1);
    }

    fn find(&self, method: &str, path: &str) -> Option<Hostile> {
        self.lock()
            .iter()
            .rev()
            .find(|r| r.method == method && path_matches(&r.path_contains, path))
            .map(|r| r.mode)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `path` matches a rule's pattern: it contains the pattern, or,
/// for a pattern ending in `$`, it ends with the rest.
fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('$') {
        Some(end) => path.ends_with(end),
        None => path.contains(pattern),
    }
}

/// `app` with the hostile layer in front.
pub(crate) fn layer(app: Router, ctl: HostileControl) -> Router {
    app.layer(middleware::from_fn(move |req: Request, next: Next| {
        let ctl = ctl.clone();
        async move { answer(ctl, req, next).await }
    }))
}

async fn answer(ctl: HostileControl, req: Request, next: Next) -> Response {
    let mode = ctl.find(req.method().as_str(), req.uri().path());
    let real = next.run(req).await;
    let Some(mode) = mode else { return real };
    let (parts, body) = real.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let ok = |content_type: &'static str, body: Body| {
        let mut r = (StatusCode::OK, body).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    match mode {
        Hostile::Garbage => ok(
            "application/json",
            Body::from(&b"}{\x01garbage:: [[[ 0x7f \"\"\" ;;"[..]),
        ),
        Hostile::Empty => ok("application/json", Body::empty()),
        Hostile::TruncatedJson => {
            let half = body.slice(..body.len() / 2);
            let mut r = Response::from_parts(parts, Body::from(half));
            r.headers_mut().remove(header::CONTENT_LENGTH);
            r
        }
        Hostile::CutOff => {
            let full = body.len().max(2);
            let half = body.slice(..body.len() / 2);
            let stream = futures_util::stream::iter(vec![
                Ok::<Bytes, std::io::Error>(half),
                Err(std::io::Error::other("connection cut off")),
            ]);
            let mut r = Response::from_parts(parts, Body::from_stream(stream));
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(full));
            r
        }
        Hostile::Oversized => {
            let filler = "x".repeat(64 * 1024 + 1024 * 1024);
            ok(
                "application/json",
                Body::from(format!(
                    "{{\"status\":\"WORKING\",\"filler\":\"{filler}\"}}"
                )),
            )
        }
        Hostile::InvalidUtf8 => ok(
            "application/json",
            Body::from(&b"{\"status\":\"\xff\xfe\xfd WORKING\xc3\x28\"}"[..]),
        ),
        Hostile::SlowDrip => {
            let stream = futures_util::stream::unfold((body, 0usize), |(body, at)| async move {
                if at >= body.len() {
                    return None;
                }
                tokio::time::sleep(DRIP_PAUSE).await;
                let byte = body.slice(at..at + 1);
                Some((Ok::<Bytes, std::io::Error>(byte), (body, at + 1)))
            });
            let mut r = Response::from_parts(parts, Body::from_stream(stream));
            r.headers_mut().remove(header::CONTENT_LENGTH);
            r
        }
        Hostile::Endless => {
            let chunk = Bytes::from(vec![b'['; 16 * 1024]);
            let stream = futures_util::stream::unfold(0usize, move |sent| {
                let chunk = chunk.clone();
                async move {
                    if sent >= ENDLESS_LIMIT {
                        return None;
                    }
                    // Yield now and then so one endless answer cannot
                    // monopolise the runtime.
                    tokio::task::yield_now().await;
                    Some((
                        Ok::<Bytes, std::io::Error>(chunk.clone()),
                        sent + chunk.len(),
                    ))
                }
            });
            ok("application/json", Body::from_stream(stream))
        }
        Hostile::Html200 => ok(
            "text/html",
            Body::from(
                "<!DOCTYPE html><html><head><title>Sign in</title></head>\
                 <body><h1>Proxy authentication required</h1></body></html>",
            ),
        ),
        Hostile::Hang => {
            let mut released = ctl.released.subscribe();
            let _ = tokio::time::timeout(HANG_LIMIT, released.changed()).await;
            (StatusCode::GATEWAY_TIMEOUT, "released").into_response()
        }
        Hostile::Replace(code, text) => {
            let mut r = ok("application/json", Body::from(text));
            *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            r
        }
        Hostile::Status(code) => {
            let mut r = Response::from_parts(parts, Body::from(body));
            *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            r
        }
    }
}
