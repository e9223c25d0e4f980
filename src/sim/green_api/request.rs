//! Decoding a Green-API request once: the instance and method from the path
//! `/waInstance{id}/{method}/{token}`, the token (percent-decoded), the body;
//! the method names and verbs ([`ApiMethod`]); and the call log's view of a
//! request ([`CallRecord`]), which never holds a token.

use axum::body::Bytes;
use axum::http::{Method, Uri};
use serde::{Deserialize, Serialize};

use super::Inner;
use crate::clock::Timestamp;

/// The API methods the simulator serves (the verbs of the Green-API docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiMethod {
    GetStateInstance,
    GetSettings,
    SendMessage,
    ShowMessagesQueue,
    /// The journal: one message and its `statusMessage`.
    GetMessage,
    Reboot,
    /// Never called by the watchdog: wipes the link.
    Logout,
    /// Never called by the watchdog: reboots the instance.
    SetSettings,
    /// Never called by the watchdog: destroys queued messages.
    ClearMessagesQueue,
    /// The incoming journal (`GET lastIncomingMessages?minutes=N`).
    LastIncomingMessages,
}

impl ApiMethod {
    pub const ALL: [ApiMethod; 10] = [
        ApiMethod::GetStateInstance,
        ApiMethod::GetSettings,
        ApiMethod::SendMessage,
        ApiMethod::ShowMessagesQueue,
        ApiMethod::GetMessage,
        ApiMethod::Reboot,
        ApiMethod::Logout,
        ApiMethod::SetSettings,
        ApiMethod::ClearMessagesQueue,
        ApiMethod::LastIncomingMessages,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ApiMethod::GetStateInstance => "getStateInstance",
            ApiMethod::GetSettings => "getSettings",
            ApiMethod::SendMessage => "sendMessage",
            ApiMethod::ShowMessagesQueue => "showMessagesQueue",
            ApiMethod::GetMessage => "getMessage",
            ApiMethod::Reboot => "reboot",
            ApiMethod::Logout => "logout",
            ApiMethod::SetSettings => "setSettings",
            ApiMethod::ClearMessagesQueue => "clearMessagesQueue",
            ApiMethod::LastIncomingMessages => "lastIncomingMessages",
        }
    }

    /// Case-insensitive (the server's casing rule is not documented).
    pub fn from_name(name: &str) -> Option<ApiMethod> {
        ApiMethod::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The documented verb; any other gets 404.
    pub fn verb(self) -> Method {
        match self {
            ApiMethod::SendMessage | ApiMethod::SetSettings | ApiMethod::GetMessage => Method::POST,
            _ => Method::GET,
        }
    }

    /// Requests per second per instance (Green-API docs: request frequency).
    pub(super) fn rate_limit(self) -> usize {
        match self {
            ApiMethod::SendMessage => 50,
            ApiMethod::GetMessage => 10,
            _ => 1,
        }
    }
}

/// One request the simulator received, in arrival order. No token, no path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The simulator's clock when the request arrived.
    pub at: Timestamp,
    /// `idInstance` from the path (as sent; may be unknown).
    pub instance: String,
    /// Canonical method name, or the path segment as sent if unknown.
    pub method_name: String,
    /// `GET`, `POST`, ...
    pub http_method: String,
    /// The status the simulator answered with.
    pub status: u16,
}

/// `%XX` decoding of one path segment (the client encodes unusual token characters).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One Green-API request, decoded once.
pub(super) struct Incoming {
    pub(super) method: Method,
    /// The digits after `waInstance` (empty if the path has no such segment).
    pub(super) instance: String,
    /// The method segment as sent.
    method_segment: String,
    pub(super) api: Option<ApiMethod>,
    pub(super) token: Option<String>,
    pub(super) segment_count: usize,
    pub(super) body: Bytes,
}

impl Incoming {
    pub(super) fn new(method: Method, uri: &Uri, body: Bytes) -> Incoming {
        let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
        let instance = segments
            .first()
            .and_then(|s| {
                s.get(..10)
                    .filter(|p| p.eq_ignore_ascii_case("waInstance"))
                    .map(|_| &s[10..])
            })
            .unwrap_or("");
        let method_segment = segments.get(1).copied().unwrap_or("");
        Incoming {
            method,
            instance: instance.to_string(),
            method_segment: method_segment.to_string(),
            api: ApiMethod::from_name(method_segment),
            token: segments.get(2).map(|t| percent_decode(t)),
            segment_count: segments.len(),
            body,
        }
    }

    /// The call log's view: canonical names, and nothing that could be a
    /// token (a client that drops the method segment puts its token there).
    pub(super) fn record(&self, at: Timestamp, status: u16, inner: &Inner) -> CallRecord {
        let is_token = |s: &str| inner.instances.values().any(|i| i.token == s);
        let instance = if !self.instance.is_empty()
            && self.instance.len() <= 20
            && self.instance.bytes().all(|b| b.is_ascii_digit())
        {
            self.instance.clone()
        } else {
            "<invalid>".to_string()
        };
        let method_name = match self.api {
            Some(m) => m.name().to_string(),
            None if !self.method_segment.is_empty()
                && self.method_segment.len() <= 64
                && self.method_segment.bytes().all(|b| b.is_ascii_alphabetic())
                && !is_token(&self.method_segment) =>
            {
                self.method_segment.clone()
            }
            None => "<unknown>".to_string(),
        };
        CallRecord {
            at,
            instance,
            method_name,
            http_method: self.method.as_str().to_string(),
            status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_case_insensitively() {
        for m in ApiMethod::ALL {
            assert_eq!(ApiMethod::from_name(m.name()), Some(m));
            assert_eq!(ApiMethod::from_name(&m.name().to_uppercase()), Some(m));
        }
        assert_eq!(ApiMethod::from_name("deleteInstance"), None);
    }

    #[test]
    fn percent_decoding_handles_partial_escapes() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("abc"), "abc");
    }
}
