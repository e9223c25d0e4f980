//! The HTTP plumbing shared by the provider clients: one reqwest client per
//! provider with explicit timeouts, response bodies read with a size cap, and
//! transport failures reduced to short, URL-free descriptions (a Green-API URL
//! carries the instance token, so no URL may ever reach an error message).

use std::sync::Once;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Provider answers larger than this are cut off: none of the bodies we
/// classify comes close, and a misbehaving proxy must not exhaust memory.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest `detail` text kept from a response for probe records and logs.
pub const MAX_DETAIL_CHARS: usize = 200;

static CRYPTO: Once = Once::new();

/// Builds the HTTP client for one provider.
pub fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, super::ClientError> {
    CRYPTO.call_once(|| {
        // Another part of the process may have installed one already; either
        // way a provider is present afterwards.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .user_agent(concat!("wa-watchdog/", env!("CARGO_PKG_VERSION")))
        // Redirects could carry credentials to another host; providers do not use them.
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| super::ClientError::Http(e.without_url().to_string()))
}

/// A provider's answer, read in full (up to [`MAX_BODY_BYTES`]).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// The body was longer than the cap and was cut.
    pub truncated: bool,
    pub retry_after: Option<Duration>,
}

impl Reply {
    pub fn json(&self) -> Option<serde_json::Value> {
        if self.truncated {
            return None;
        }
        serde_json::from_str(&self.body).ok()
    }
}

/// Why no answer arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Connect, DNS, TLS or an aborted connection.
    Unreachable(String),
    /// The request deadline passed.
    Timeout(String),
}

/// The cap for a session list: a WAHA server with 100,000 sessions answers
/// `GET /api/sessions?all=true` with tens of megabytes.
pub const MAX_LIST_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Sends a request and reads the reply body with a cap of
/// [`MAX_BODY_BYTES`]. The request's own `.timeout()` bounds the whole
/// exchange, body included.
pub async fn send(req: reqwest::RequestBuilder) -> Result<Reply, Transport> {
    send_with_limit(req, MAX_BODY_BYTES).await
}

/// [`send`] with another body cap.
pub async fn send_with_limit(
    req: reqwest::RequestBuilder,
    max_body: usize,
) -> Result<Reply, Transport> {
    let mut resp = req.send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let mut body: Vec<u8> = Vec::new();
    let mut truncated = false;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = max_body.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(transport(e)),
        }
    }
    Ok(Reply {
        status,
        // A proxy may echo a request header (an API key) or the path (a
        // Green-API token) in its answer: nothing after this sees them.
        body: crate::redact::redact(&String::from_utf8_lossy(&body)),
        truncated,
        retry_after,
    })
}

fn transport(e: reqwest::Error) -> Transport {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let text = error_chain(&e);
    if timeout {
        Transport::Timeout(text)
    } else {
        Transport::Unreachable(text)
    }
}

/// The error and its sources on one line ("error sending request: connection refused").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    short(&crate::redact::redact(&parts.join(": ")))
}

/// `Retry-After` in seconds (the HTTP-date form is rare from APIs and ignored).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The detail of a reply cut off at the body cap: says so, instead of
/// "not JSON" (which it may well have been, whole).
pub fn truncated_detail(status: u16) -> String {
    format!("HTTP {status}: body cut off at the size cap (larger than any answer expected)")
}

/// The detail of a 2xx answer to a list read (a chat, a journal) that is
/// not a JSON list: cut off, or not understood.
pub fn unreadable_list_detail(reply: &Reply, what: &str) -> String {
    if reply.truncated {
        truncated_detail(reply.status)
    } else {
        format!("HTTP {}: {what} is not a JSON list", reply.status)
    }
}

/// One line, at most [`MAX_DETAIL_CHARS`] characters.
pub fn short(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let one_line = one_line.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_DETAIL_CHARS {
        one_line
    } else {
        let cut: String = one_line.chars().take(MAX_DETAIL_CHARS - 1).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_is_one_bounded_line() {
        assert_eq!(short("a\nb\t c"), "a b c");
        let long = "é".repeat(500);
        let s = short(&long);
        assert_eq!(s.chars().count(), MAX_DETAIL_CHARS);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "17".parse().expect("header"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(17)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(retry_after(&h), None);
    }
}
