//! Decoding a request once, the way Express and WAHA's middleware see it:
//! the JSON body (only for JSON content types), the query, the API key, and
//! the session the request is about.

use axum::body::Bytes;
use axum::http::{header, request::Parts};

use super::bodies::FailedRequest;
use super::state::Engine;
use crate::clock::Timestamp;
use crate::sim::{OrderedJson, query_pairs};

/// `{}`: the request body Express gives a handler when none was parsed.
static EMPTY_OBJECT: OrderedJson = OrderedJson::Object(Vec::new());

/// The parsed request body, as Express's JSON parser would leave it.
pub(super) enum Body {
    /// Empty, or not `application/json`: the handler sees `{}`.
    Absent,
    Json(OrderedJson),
    /// Unparseable JSON: 400 from the body parser.
    Invalid(String),
}

/// One request, decoded once.
pub(super) struct Incoming {
    pub method: String,
    /// Path as sent, without query.
    pub path: String,
    /// Path and query as sent (`req.url` / `originalUrl`).
    pub url: String,
    pub query: Vec<(String, String)>,
    pub header_key: Option<String>,
    pub body: Body,
}

impl Incoming {
    pub fn new(parts: &Parts, bytes: &Bytes) -> Incoming {
        let is_json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mime = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        let body = if bytes.is_empty() || !is_json {
            Body::Absent
        } else {
            match serde_json::from_slice::<OrderedJson>(bytes) {
                // The body parser's strict mode takes only objects and arrays.
                Ok(v @ (OrderedJson::Object(_) | OrderedJson::Array(_))) => Body::Json(v),
                Ok(_) => Body::Invalid("only objects and arrays are accepted".to_owned()),
                Err(e) => Body::Invalid(e.to_string()),
            }
        };
        Incoming {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            url: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
            query: parts.uri.query().map(query_pairs).unwrap_or_default(),
            header_key: parts
                .headers
                .get("x-api-key")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            body,
        }
    }

    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The body a handler sees (`{}` unless JSON was sent).
    pub fn json(&self) -> &OrderedJson {
        match &self.body {
            Body::Json(v) => v,
            Body::Absent | Body::Invalid(_) => &EMPTY_OBJECT,
        }
    }

    /// Path segments; a trailing slash is ignored (Express is not strict).
    pub fn segments(&self) -> Vec<&str> {
        let trimmed = self.path.trim_end_matches('/');
        trimmed.split('/').skip(1).collect()
    }

    pub fn failed<'a>(&'a self, engine: Engine, now: Timestamp) -> FailedRequest<'a> {
        FailedRequest {
            url: &self.url,
            method: &self.method,
            body: self.json(),
            engine,
            now,
        }
    }
}

/// The session a request is about, for the call log and per-session latency.
pub(super) fn session_hint(method: &str, segs: &[&str], body: &OrderedJson) -> Option<String> {
    let from_body = |key: &str| {
        body.get(key)
            .and_then(OrderedJson::as_str)
            .map(str::to_owned)
    };
    match (method, segs) {
        ("POST", ["api", "sendText"]) => from_body("session"),
        ("POST", ["api", "sessions", "start" | "stop" | "logout"]) => from_body("name"),
        (_, ["api", "sessions", s, ..]) => Some((*s).to_owned()),
        _ => None,
    }
}

/// Routes behind the API key (Nest applies the middleware to these prefixes).
pub(super) fn is_protected(path: &str) -> bool {
    ["/api", "/health", "/ws"].iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

pub(super) fn authorized(api_key: Option<&str>, inc: &Incoming) -> bool {
    let Some(expected) = api_key else {
        return true;
    };
    let given = inc
        .header_key
        .as_deref()
        .or_else(|| inc.query_value("x-api-key"));
    given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()))
}

/// WAHA compares keys in constant time; so do we, to behave the same.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
