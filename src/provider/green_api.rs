//! Green-API client (Green-API docs, green-api.com/en/docs/api) for one WhatsApp instance: read
//! the state (`getStateInstance`), the instance's own chat (`getSettings`
//! `wid`), send the canary (`sendMessage`), watch it leave the send queue
//! (`showMessagesQueue`) and reboot (`reboot`).
//!
//! It must never call `logout` (wipes the link), `setSettings` (reboots the
//! instance behind the operator's back) or `clearMessagesQueue` (destroys
//! evidence and other people's messages). [`Call`] is the closed set of
//! methods this client can name; none of those three is in it, so there is
//! no code path that could build such a request.
//!
//! The instance token is part of every URL (`{url}/waInstance{id}/{method}/{token}`).
//! URLs are therefore built only inside [`GreenApiClient`] and never
//! formatted: transport errors go through [`http::send`], which strips the
//! URL, every detail is scrubbed of the token once more, and `Debug` shows
//! `<redacted>`. [`GreenApiClient::endpoint`] is the printable form.
//!
//! Every reply is mapped to one [`Outcome`] by [`RULES`], a table kept as data
//! beside the client and tested row by row (green_api_tests.rs, and against
//! the simulator in tests/it/sim_green_api.rs). The vendor's retry advice (499:
//! once more with a longer timeout; 502: three more times with a delay) is
//! part of the table too ([`Retry`]).
//!
//! Code map: `state` ([`InstanceState`], the `getStateInstance` parser),
//! `classify` ([`Call`], the [`RULES`] table and [`classify()`], the queue
//! reader [`queue_has`]), `pacer` ([`Pacer`], per-method spacing), this file
//! (the client: URLs, the token, sending, retries; results and [`scrub`]).

mod classify;
mod pacer;
mod state;

pub use classify::{
    BodyMatch, Call, Classified, Codes, RULES, Retry, Rule, Scope, Verdict, classify, queue_has,
};
pub use pacer::{DEFAULT_MIN_INTERVAL, Pacer};
pub use state::InstanceState;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use self::pacer::Pacers;
use super::http::{self, Reply, Transport};
use super::{ClientError, Outcome};

/// Why a request to Green-API did not yield a usable answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    /// Short, one line, no URL, no token.
    pub detail: String,
    /// The [`RULES`] row that decided (or `transport`, `reply shape`).
    pub rule: &'static str,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.outcome)
    }
}

/// The result of one `sendMessage`.
#[derive(Clone, Debug, PartialEq)]
pub struct SendResult {
    /// [`Outcome::Delivered`] means only "accepted into the queue": Green-API
    /// answers 200 + idMessage even when nothing will ever leave (Green-API docs:
    /// sendMessage; the vendor's issue tracker).
    /// The scheduler confirms it with [`GreenApiClient::queue_contains`] before counting it.
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub detail: String,
    /// The `idMessage` Green-API returned.
    pub message_id: Option<String>,
    pub rule: &'static str,
}

/// Retries the vendor asks for (Green-API docs: Common errors, 499 and 502). One delay serves both 499 and 502.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before each retry (of a 502, and of a 499).
    pub delay_502: Duration,
    /// Retries after a 502 before giving up with `Unreachable` (vendor: 3).
    pub retries_502: u32,
    /// Retries after a 499, each with twice the request timeout, before
    /// giving up with `Timeout` (vendor: "increase the waiting time and repeat").
    pub retries_499: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            delay_502: Duration::from_secs(1),
            retries_502: 3,
            retries_499: 1,
        }
    }
}

/// The instance token: never shown.
#[derive(Clone)]
struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One Green-API instance. Clones share the pacers and the attempt counter.
#[derive(Clone)]
pub struct GreenApiClient {
    http: reqwest::Client,
    base: Url,
    id_instance: String,
    token: Token,
    retry: RetryPolicy,
    pacers: Arc<Pacers>,
    attempts: Arc<AtomicU64>,
}

impl std::fmt::Debug for GreenApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GreenApiClient")
            .field("endpoint", &self.endpoint())
            .field("id_instance", &self.id_instance)
            .field("token", &self.token)
            .field("retry", &self.retry)
            .finish()
    }
}

impl GreenApiClient {
    /// `url` is the instance's `apiUrl` (e.g. `https://api.green-api.com`),
    /// `id_instance` its digits. Errors never contain the token.
    pub fn new(
        url: &str,
        id_instance: &str,
        api_token: &str,
        connect_timeout: Duration,
    ) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::Url {
            provider: "Green-API",
            reason: reason.to_string(),
        };
        let base = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("must be http:// or https://"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("no query or fragment allowed"));
        }
        if id_instance.is_empty()
            || id_instance.len() > 20
            || !id_instance.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ClientError::IdInstance);
        }
        if api_token.is_empty()
            || !api_token
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'%'))
        {
            return Err(ClientError::ApiToken);
        }
        Ok(GreenApiClient {
            http: http::build_client(connect_timeout)?,
            base,
            id_instance: id_instance.to_string(),
            token: {
                crate::redact::register(api_token);
                Token(Arc::from(api_token))
            },
            retry: RetryPolicy::default(),
            pacers: Arc::new(Pacers::new(DEFAULT_MIN_INTERVAL)),
            attempts: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Replaces the retry policy (tests use delays of a few ms).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the per-method pacing interval (default [`DEFAULT_MIN_INTERVAL`];
    /// lower it only against a simulator).
    pub fn with_min_interval(mut self, min_interval: Duration) -> Self {
        self.pacers = Arc::new(Pacers::new(min_interval));
        self
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    pub fn id_instance(&self) -> &str {
        &self.id_instance
    }

    /// HTTP requests sent so far by this client and its clones (retries included).
    pub fn attempts_made(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// The endpoint for humans:
    /// `https://api.green-api.com/waInstance1101000001/<method>/<redacted>`.
    pub fn endpoint(&self) -> String {
        format!(
            "{}/waInstance{}/<method>/<redacted>",
            self.base.as_str().trim_end_matches('/'),
            self.id_instance
        )
    }

    /// `{url}/waInstance{id}/{method}/{token}`. Never formatted anywhere.
    fn url(&self, call: Call) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.push(&format!("waInstance{}", self.id_instance));
            path.push(call.method_name());
            path.push(&self.token.0);
        }
        url
    }

    /// Replaces every occurrence of the token (ASCII case-insensitive) with
    /// `<redacted>`: a proxy may echo the request path in its error page.
    fn scrub(&self, text: &str) -> String {
        scrub(text, &self.token.0)
    }

    fn failure(
        &self,
        outcome: Outcome,
        status: Option<u16>,
        detail: &str,
        rule: &'static str,
    ) -> Failure {
        Failure {
            outcome,
            http_status: status,
            detail: self.scrub(detail),
            rule,
        }
    }

    fn transport_failure(&self, t: Transport) -> Failure {
        match t {
            Transport::Unreachable(d) => self.failure(Outcome::Unreachable, None, &d, "transport"),
            Transport::Timeout(d) => self.failure(Outcome::Timeout, None, &d, "transport"),
        }
    }

    /// Sends `call` (paced), classifies the reply and applies the table's
    /// retries. Ok: a [`Verdict::Success`] reply to read further.
    async fn exchange(
        &self,
        call: Call,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Reply, Failure> {
        let mut retried_502 = 0;
        let mut retried_499 = 0;
        let mut request_timeout = timeout;
        loop {
            if let Some(p) = self.pacers.get(call) {
                p.acquire().await;
            }
            let mut req = self
                .http
                .request(call.http_method(), self.url(call))
                .timeout(request_timeout)
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let reply = http::send(req)
                .await
                .map_err(|t| self.transport_failure(t))?;
            let c = classify(call, &reply);
            let again = match c.extra {
                Retry::Repeat if retried_502 < self.retry.retries_502 => {
                    retried_502 += 1;
                    true
                }
                Retry::LongerTimeout if retried_499 < self.retry.retries_499 => {
                    retried_499 += 1;
                    request_timeout = timeout.saturating_mul(2);
                    true
                }
                _ => false,
            };
            if again {
                tracing::debug!(
                    id_instance = %self.id_instance,
                    method = call.method_name(),
                    status = reply.status,
                    rule = c.rule,
                    "green-api: retrying as the vendor advises"
                );
                tokio::time::sleep(self.retry.delay_502).await;
                continue;
            }
            return match c.outcome {
                None => Ok(reply),
                Some(outcome) => Err(self.failure(outcome, Some(reply.status), &c.detail, c.rule)),
            };
        }
    }

    /// The instance's state (`getStateInstance`).
    pub async fn state(&self, timeout: Duration) -> Result<InstanceState, Failure> {
        let reply = self.exchange(Call::State, None, timeout).await?;
        // The "state read" row only matches bodies that parse.
        reply
            .json()
            .as_ref()
            .and_then(InstanceState::from_json)
            .ok_or_else(|| {
                self.failure(
                    Outcome::BadReply,
                    Some(reply.status),
                    "getStateInstance reply has no stateInstance",
                    "reply shape",
                )
            })
    }

    /// The instance's own chat id (`getSettings` `wid`), the default canary
    /// target. A missing or empty `wid` is a [`Outcome::BadRequest`]: the
    /// canary then needs an explicit chat.
    pub async fn wid(&self, timeout: Duration) -> Result<String, Failure> {
        let reply = self.exchange(Call::Settings, None, timeout).await?;
        reply
            .json()
            .as_ref()
            .and_then(|j| j.get("wid"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                self.failure(
                    Outcome::BadRequest,
                    Some(reply.status),
                    "getSettings reports no wid to send a self canary to; set canary chat",
                    "reply shape",
                )
            })
    }

    /// Queues one text (`sendMessage`). See [`SendResult::outcome`] for what
    /// "delivered" means here.
    pub async fn send_message(&self, chat_id: &str, text: &str, timeout: Duration) -> SendResult {
        let body = serde_json::json!({ "chatId": chat_id, "message": text });
        match self.exchange(Call::Send, Some(&body), timeout).await {
            Err(f) => SendResult {
                outcome: f.outcome,
                http_status: f.http_status,
                detail: f.detail,
                message_id: None,
                rule: f.rule,
            },
            Ok(reply) => {
                let id = reply
                    .json()
                    .as_ref()
                    .and_then(|j| j.get("idMessage"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                SendResult {
                    outcome: Outcome::Delivered,
                    http_status: Some(reply.status),
                    detail: self.scrub(&http::short(&format!(
                        "HTTP {}: message {} queued",
                        reply.status,
                        id.as_deref().unwrap_or("?")
                    ))),
                    message_id: id,
                    rule: "message queued",
                }
            }
        }
    }

    /// Whether `id_message` is still in the instance's send queue
    /// (`showMessagesQueue`). Items without a readable id are skipped; a
    /// `null` or empty body is an empty queue.
    pub async fn queue_contains(
        &self,
        id_message: &str,
        timeout: Duration,
    ) -> Result<bool, Failure> {
        let reply = self.exchange(Call::Queue, None, timeout).await?;
        Ok(queue_has(reply.json().as_ref(), id_message))
    }

    /// Looks one sent message up in the journal (`getMessage`, paced), as
    /// confirmation evidence. Not found is not a failure here: the journal
    /// lags up to 2 minutes (Green-API docs: getMessage).
    pub async fn get_message(
        &self,
        chat_id: &str,
        id_message: &str,
        timeout: Duration,
    ) -> crate::confirm::Evidence {
        use crate::confirm::{Evidence, Source};
        use crate::provider::delivery::{self, Lookup};
        let body = serde_json::json!({ "chatId": chat_id, "idMessage": id_message });
        let reply = match self.exchange(Call::Message, Some(&body), timeout).await {
            Ok(r) => r,
            Err(f) => {
                return Evidence::LookupFailed(crate::outcome::ProbeReport::failed(
                    f.outcome,
                    f.http_status,
                    f.detail,
                ));
            }
        };
        match delivery::green_get_message(&reply) {
            Lookup::GreenStatus {
                status,
                description,
            } => Evidence::GreenStatus {
                status,
                description: description.map(|d| self.scrub(&d)),
                source: Source::Journal,
            },
            Lookup::NotFound { detail } => Evidence::NotFound { detail },
            Lookup::Unsupported { detail } => Evidence::Unsupported { detail },
            Lookup::WahaAck { .. } | Lookup::Unreadable { .. } | Lookup::Other => {
                Evidence::Unreadable {
                    detail: format!("HTTP {}: getMessage reply not understood", reply.status),
                }
            }
        }
    }

    /// Whether an incoming message from `from` containing `nonce` is in the
    /// instance's incoming journal (`GET lastIncomingMessages?minutes=N`,
    /// Green-API docs "LastIncomingMessages": `chatId`, `senderId`,
    /// `textMessage`; paced like the other journal calls, 1/s; the default
    /// window of 24 hours).
    pub async fn incoming_seen(
        &self,
        from: &str,
        nonce: &str,
        timeout: Duration,
    ) -> Result<bool, Failure> {
        let reply = self.exchange(Call::Incoming, None, timeout).await?;
        // Unreadable (garbage, HTML, cut off) is a failed read, never "not
        // there": a ring canary it hides is no one's fault.
        let seen = (!reply.truncated)
            .then(|| crate::provider::delivery::green_incoming_has(&reply.body, from, nonce))
            .flatten();
        seen.ok_or_else(|| {
            self.failure(
                Outcome::BadReply,
                Some(reply.status),
                &http::unreadable_list_detail(&reply, "lastIncomingMessages reply"),
                "reply shape",
            )
        })
    }

    /// Reboots the instance (`reboot`). Ok means `{"isReboot": true}`;
    /// `starting` follows for seconds to minutes, so poll [`Self::state`].
    pub async fn reboot(&self, timeout: Duration) -> Result<(), Failure> {
        self.exchange(Call::Reboot, None, timeout).await.map(|_| ())
    }
}

pub use crate::redact::scrub;

#[cfg(test)]
#[path = "green_api_tests.rs"]
mod tests;
