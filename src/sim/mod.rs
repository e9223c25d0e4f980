//! In-process simulators of the WhatsApp HTTP gateways the watchdog talks to,
//! for integration tests and for `wa-watchdog simulate` (the demo).
//!
//! Each simulator is a real HTTP server on a loopback port that answers with
//! the vendor's recorded status codes and bodies, plus a control surface (Rust
//! handle and `/_sim/...` HTTP routes) to inject faults and read a call log.
//! This module holds the vendor-neutral helpers (the server's start and
//! shutdown in [`SimServer`], JSON replies, query strings); vendor behaviour
//! lives in its own submodule ([`waha`], [`green_api`]). Simulators never touch the daemon's state: they
//! only see HTTP requests.

pub mod green_api;
pub mod hostile;
pub mod network;
pub mod waha;
pub mod webhooks;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::Timestamp;

/// `Content-Type` of every JSON reply (what Express sends).
pub const JSON_UTF8: &str = "application/json; charset=utf-8";

/// Session names for a simulator with `n` sessions: `session-001`,
/// `session-002`, … (zero-padded to three digits so they sort; longer when
/// `n` passes 999). Used by `wa-watchdog simulate --sessions N`.
pub fn session_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("session-{i:03}")).collect()
}

/// One request a simulator received, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallRecord {
    /// The simulator's clock when the request arrived.
    pub at: Timestamp,
    /// HTTP method, upper case (`GET`, `POST`, …).
    pub method: String,
    /// Request path as sent, without the query string.
    pub path: String,
    /// The session the request is about, if the route names one (in the path
    /// or in the JSON body).
    pub session: Option<String>,
}

/// A running simulator: its HTTP server on a background task owned by this
/// value, and its control handle `C`. Dropping it stops the server too
/// (without waiting); [`SimServer::shutdown`] waits. The vendor modules name
/// it ([`waha::WahaSim`], [`green_api::GreenSim`]) and build it in their
/// `start`.
pub struct SimServer<C> {
    /// The simulator's name in log lines (`waha`, `green-api`).
    name: &'static str,
    addr: SocketAddr,
    control: C,
    hostile: hostile::HostileControl,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl<C: Clone> SimServer<C> {
    /// Binds `listen` and serves `app` on a task owned by the returned value.
    pub(crate) async fn start(
        name: &'static str,
        listen: SocketAddr,
        app: Router,
        control: C,
    ) -> std::io::Result<SimServer<C>> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let hostile = hostile::HostileControl::default();
        let app = hostile::layer(app, hostile.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // A dropped sender also means "stop".
                    let _ = stopped.await;
                })
                .await
        });
        Ok(SimServer {
            name,
            addr,
            control,
            hostile,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address actually bound (the port is real when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash; for
    /// Green-API, the instance `apiUrl`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A handle on the simulator's state; clones share it.
    pub fn control(&self) -> C {
        self.control.clone()
    }

    /// The hostile answers of this simulator ([`hostile`]).
    pub fn hostile(&self) -> hostile::HostileControl {
        self.hostile.clone()
    }

    /// Stops accepting connections, lets in-flight requests finish, and
    /// waits for the server task.
    pub async fn shutdown(mut self) {
        self.hostile.clear();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let name = self.name;
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "{name} simulator stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "{name} simulator task failed"),
            }
        }
    }
}

impl<C> Drop for SimServer<C> {
    fn drop(&mut self) {
        self.hostile.clear();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `app` on `listen` until `shutdown` resolves (for `wa-watchdog
/// simulate`), logging the URL once bound.
pub(crate) async fn serve_until(
    name: &'static str,
    listen: SocketAddr,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(url = %format!("http://{addr}"), "{name} simulator listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A JSON value that keeps object keys in the order they were parsed or
/// built. `serde_json::Value` sorts keys (the crate is built without
/// `preserve_order`), but a simulator must echo a request body the way
/// Node's `JSON.parse` + `JSON.stringify` would: in the client's order.
#[derive(Clone, Debug, PartialEq)]
pub enum OrderedJson {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<OrderedJson>),
    /// Keys in insertion order; a repeated key keeps its first position and
    /// its last value (as `JSON.parse` does).
    Object(Vec<(String, OrderedJson)>),
}

impl OrderedJson {
    /// `{}`.
    pub fn empty_object() -> Self {
        OrderedJson::Object(Vec::new())
    }

    /// The value of `key` if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&OrderedJson> {
        match self {
            OrderedJson::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            OrderedJson::String(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is an object.
    pub fn is_object(&self) -> bool {
        matches!(self, OrderedJson::Object(_))
    }
}

impl Serialize for OrderedJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OrderedJson::Null => s.serialize_unit(),
            OrderedJson::Bool(b) => s.serialize_bool(*b),
            OrderedJson::Number(n) => n.serialize(s),
            OrderedJson::String(v) => s.serialize_str(v),
            OrderedJson::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            OrderedJson::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for OrderedJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OrderedJsonVisitor)
    }
}

struct OrderedJsonVisitor;

impl<'de> Visitor<'de> for OrderedJsonVisitor {
    type Value = OrderedJson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<OrderedJson, E> {
        // JSON text cannot hold NaN or infinities, so this only guards
        // against non-JSON deserializers.
        Ok(serde_json::Number::from_f64(v).map_or(OrderedJson::Null, OrderedJson::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<OrderedJson, E> {
        Ok(OrderedJson::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<OrderedJson, E> {
        Ok(OrderedJson::String(v))
    }

    fn visit_unit<E>(self) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Null)
    }

    fn visit_none<E>(self) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<OrderedJson, D::Error> {
        OrderedJson::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OrderedJson, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(OrderedJson::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedJson, A::Error> {
        let mut fields: Vec<(String, OrderedJson)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, OrderedJson>()? {
            match fields.iter_mut().find(|(existing, _)| *existing == k) {
                Some(slot) => slot.1 = v,
                None => fields.push((k, v)),
            }
        }
        Ok(OrderedJson::Object(fields))
    }
}

/// A JSON reply with Express's `Content-Type`. Serialization of our own
/// response types cannot fail in practice; if it ever does, the client gets a
/// plain 500 that says so instead of a panic.
pub(crate) fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8))],
            bytes,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("simulator: cannot encode response: {e}"),
        )
            .into_response(),
    }
}

/// A reply with no body and no `Content-Type` (what Nest sends when a handler
/// returns `undefined`).
pub(crate) fn empty_response(status: StatusCode) -> Response {
    status.into_response()
}

/// Locks a simulator's state. A test that panicked while holding the lock
/// must not turn every later request into a panic too, so poisoning is
/// ignored: the state is plain data and stays consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Parses a query string into decoded `(key, value)` pairs, the way Express's
/// `qs` does for flat keys: `+` is a space, `%XX` is a byte, invalid escapes
/// are kept as they are.
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (form encoding); invalid escapes and
/// invalid UTF-8 are kept or replaced rather than rejected.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_padded_and_counted() {
        assert_eq!(session_names(0), Vec::<String>::new());
        assert_eq!(session_names(2), vec!["session-001", "session-002"]);
        assert_eq!(session_names(1000)[999], "session-1000");
    }

    #[test]
    fn ordered_json_keeps_key_order_and_last_duplicate() {
        let v: OrderedJson =
            serde_json::from_str(r#"{"z":1,"a":{"y":[true,null,"s"],"b":2.5},"z":3}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"z":3,"a":{"y":[true,null,"s"],"b":2.5}}"#
        );
        assert_eq!(v.get("z"), Some(&OrderedJson::Number(3.into())));
        assert!(v.get("nope").is_none());
    }

    #[test]
    fn query_pairs_decode_like_express() {
        assert_eq!(
            query_pairs("all=true&x-api-key=a%2Bb+c&flag&bad=%zz&&"),
            vec![
                ("all".to_owned(), "true".to_owned()),
                ("x-api-key".to_owned(), "a+b c".to_owned()),
                ("flag".to_owned(), String::new()),
                ("bad".to_owned(), "%zz".to_owned()),
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
