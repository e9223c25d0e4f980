//! The receiver behind `POST /webhooks/{provider}`: checks, in this order,
//! that the provider exists (404) and has webhooks on (403), the media type
//! (415), the size (413), the signature or token (401), the body (400) and
//! the session (404); then the timestamp window and the ids seen; then hands
//! the event to the scheduler through a bounded queue (503 when this
//! provider's share of it is full). It never waits: the answer comes within
//! the time of a hash and a map look-up, and the scheduler loop is never
//! blocked by it (the queue is drained by the loop).
//!
//! Nothing from an unauthenticated request is kept: ids enter the
//! de-duplication window only after the signature and the body checked out
//! and the event was queued. Stale, future and duplicate events from an
//! authenticated sender are answered 200 with `"status": "ignored"` and
//! counted, not 4xx: both providers retry every non-2xx (WAHA up to 15
//! times; Green-API every 60 s for 24 h, and its queue is FIFO per instance,
//! so one refused notification would hold back every later one).
//!
//! No secret, header value or body text goes into a log line, a metric
//! label or a response.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::auth::{self, AuthError};
use super::parse::{self, Event};
use super::replay::{self, SeenIds};
use super::rules;
use crate::clock::Clock;
use crate::config::{Config, ProviderConfig, ProviderKind, WebhookAuth, WebhookConfig};
use crate::metrics::Metrics;

/// Ids remembered per provider at most (see [`SeenIds`]).
pub const SEEN_IDS_PER_PROVIDER: usize = 10_000;
/// `Retry-After` of a 503 (queue full), seconds.
pub const RETRY_AFTER_SECS: u64 = 2;

/// What the HTTP layer passes in: the headers that matter and the body.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    pub content_type: Option<&'a str>,
    /// `X-Webhook-Hmac`.
    pub hmac: Option<&'a str>,
    /// `X-Webhook-Hmac-Algorithm`.
    pub hmac_algorithm: Option<&'a str>,
    /// `X-Webhook-Request-Id`.
    pub request_id: Option<&'a str>,
    /// `X-Webhook-Timestamp`.
    pub timestamp: Option<&'a str>,
    /// `Authorization`.
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

/// The answer: a status, a JSON body and, for a 503, `Retry-After`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
}

impl Reply {
    fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply {
            status,
            body: json!({ "error": message.into() }),
            retry_after: None,
        }
    }

    fn ignored(reason: &str) -> Reply {
        Reply {
            status: 200,
            body: json!({ "status": "ignored", "reason": reason }),
            retry_after: None,
        }
    }
}

/// One authenticated event on its way to the scheduler.
#[derive(Debug)]
pub struct Queued {
    /// The configured provider name.
    pub provider: String,
    pub event: Event,
    /// Frees the provider's queue slot when the event is dropped.
    _slot: Slot,
}

#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Cheap to clone; shared by the HTTP handlers.
#[derive(Clone, Debug)]
pub struct Receiver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    providers: HashMap<String, Hook>,
    tx: mpsc::Sender<Queued>,
    metrics: Arc<Metrics>,
    clock: Clock,
    max_body_limit: usize,
}

#[derive(Debug)]
struct Hook {
    provider: ProviderConfig,
    seen: Mutex<SeenIds>,
    queued: Arc<AtomicUsize>,
    /// The fixed part of the text of each ring this provider's sessions are
    /// members of: an inbound message containing one may be a ring canary
    /// and goes to the scheduler; other inbound messages are passive.
    ring_marks: Vec<String>,
}

impl Hook {
    fn cfg(&self) -> &WebhookConfig {
        &self.provider.webhook
    }
}

impl Receiver {
    /// A receiver for `config`'s providers, and the queue the scheduler
    /// drains. The queue holds at most the sum of every provider's
    /// `webhook_queue_size`; each provider has its own share.
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> (Receiver, mpsc::Receiver<Queued>) {
        let mut providers = HashMap::new();
        let mut capacity = 0usize;
        let mut max_body_limit = 0usize;
        for p in &config.providers {
            capacity = capacity.saturating_add(p.webhook.queue_size);
            if p.webhook.auth != WebhookAuth::Off {
                max_body_limit = max_body_limit.max(p.webhook.body_limit);
                metrics.webhook_provider(&p.name);
            }
            providers.insert(
                p.name.clone(),
                Hook {
                    provider: p.clone(),
                    seen: Mutex::new(SeenIds::new(p.webhook.replay_window, SEEN_IDS_PER_PROVIDER)),
                    queued: Arc::new(AtomicUsize::new(0)),
                    ring_marks: config
                        .rings
                        .iter()
                        .filter(|r| r.members.iter().any(|m| m.provider == p.name))
                        .filter_map(|r| {
                            r.text
                                .split(crate::config::NONCE_PLACEHOLDER)
                                .map(str::trim)
                                .max_by_key(|part| part.len())
                                .filter(|part| !part.is_empty())
                                .map(str::to_string)
                        })
                        .collect(),
                },
            );
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let receiver = Receiver {
            inner: Arc::new(Inner {
                providers,
                tx,
                metrics,
                clock,
                max_body_limit: max_body_limit.max(crate::config::DEFAULT_WEBHOOK_BODY_LIMIT),
            }),
        };
        (receiver, rx)
    }

    /// The largest body any provider accepts: the HTTP layer reads at most
    /// this much before [`Receiver::handle`] applies the provider's own limit.
    pub fn max_body_limit(&self) -> usize {
        self.inner.max_body_limit
    }

    /// Whether `provider` is configured and has webhooks on.
    pub fn enabled(&self, provider: &str) -> bool {
        self.inner
            .providers
            .get(provider)
            .is_some_and(|h| h.cfg().auth != WebhookAuth::Off)
    }

    /// The body limit of `provider` (or the largest one when it is unknown:
    /// the 404 comes from [`Receiver::handle`]).
    pub fn body_limit(&self, provider: &str) -> usize {
        self.inner
            .providers
            .get(provider)
            .map_or(self.inner.max_body_limit, |h| h.cfg().body_limit)
    }

    /// The checks that need no body: provider (404), webhooks on (403),
    /// media type (415), declared length (413). `None`: read the body and
    /// call [`Receiver::handle`].
    pub fn precheck(
        &self,
        provider: &str,
        content_type: Option<&str>,
        declared_len: Option<u64>,
    ) -> Option<Reply> {
        let m = &self.inner.metrics;
        let Some(hook) = self.inner.providers.get(provider) else {
            m.webhook_rejected("", "unknown_provider");
            return Some(Reply::error(404, "no provider with that name"));
        };
        let name = hook.provider.name.as_str();
        let cfg = hook.cfg();
        if cfg.auth == WebhookAuth::Off {
            let keys = match hook.provider.kind {
                ProviderKind::Waha => "webhook_hmac_key_env or webhook_hmac_key_file",
                ProviderKind::GreenApi => "webhook_token_env or webhook_token_file",
            };
            m.webhook_rejected(name, "disabled");
            return Some(Reply::error(
                403,
                format!("webhooks are off for provider {name:?}: set {keys} in its [[provider]]"),
            ));
        }
        if !is_json(content_type) {
            m.webhook_rejected(name, "unsupported_media_type");
            return Some(Reply::error(415, "Content-Type must be application/json"));
        }
        if declared_len.is_some_and(|n| n > cfg.body_limit as u64) {
            return Some(self.too_large(provider));
        }
        None
    }

    /// The 413 for a body over `provider`'s limit (counted).
    pub fn too_large(&self, provider: &str) -> Reply {
        let (name, limit) = match self.inner.providers.get(provider) {
            Some(h) => (h.provider.name.as_str(), h.cfg().body_limit),
            None => ("", self.inner.max_body_limit),
        };
        self.inner.metrics.webhook_rejected(name, "too_large");
        Reply::error(413, format!("body larger than {limit} bytes"))
    }

    /// Answers one request (running [`Receiver::precheck`] again first).
    /// Never blocks.
    pub fn handle(&self, provider: &str, req: Request<'_>) -> Reply {
        if let Some(reply) = self.precheck(provider, req.content_type, Some(req.body.len() as u64))
        {
            return reply;
        }
        let m = &self.inner.metrics;
        let Some(hook) = self.inner.providers.get(provider) else {
            return Reply::error(404, "no provider with that name");
        };
        let name = hook.provider.name.as_str();
        let kind = hook.provider.kind;
        let reject = |status: u16, reason: &'static str, message: String| {
            m.webhook_rejected(name, reason);
            tracing::debug!(provider = name, reason, status, "webhook: rejected");
            Reply::error(status, message)
        };
        let cfg = hook.cfg();
        let authenticated = match &cfg.auth {
            WebhookAuth::Hmac(key) => {
                auth::verify_waha(key, req.hmac, req.hmac_algorithm, req.body)
            }
            WebhookAuth::Token(token) => auth::verify_green_api(token, req.authorization),
            WebhookAuth::Insecure => Ok(()),
            WebhookAuth::Off => Err(AuthError::Missing),
        };
        if let Err(e) = authenticated {
            tracing::warn!(
                provider = name,
                reason = e.reason(),
                "webhook: refused a request that is not signed by the provider"
            );
            m.webhook_rejected(name, e.reason());
            return Reply::error(401, e.message(kind.as_str()));
        }
        let parsed = match kind {
            ProviderKind::Waha => parse::parse_waha(req.body, req.request_id, req.timestamp),
            ProviderKind::GreenApi => parse::parse_green_api(req.body),
        };
        let event = match parsed {
            Ok(e) => e,
            Err(e) => return reject(400, "malformed", e.to_string()),
        };
        let known = match kind {
            ProviderKind::Waha => hook.provider.is_enabled(&event.session),
            ProviderKind::GreenApi => {
                hook.provider.id_instance.as_deref() == Some(event.session.as_str())
            }
        };
        if !known {
            return reject(
                404,
                "unknown_session",
                "the event is for a session this provider does not watch".into(),
            );
        }
        let now = self.inner.clock.now();
        if let Err(e) = replay::check_time(event.timestamp_ms, now, cfg.replay_window) {
            m.webhook_rejected(name, e.reason());
            tracing::warn!(
                provider = name,
                reason = e.reason(),
                event_ms = event.timestamp_ms,
                now_ms = now.as_millis(),
                "webhook: event outside the replay window, ignored (clocks out of step?)"
            );
            return Reply::ignored(e.reason());
        }
        let ring_canary = match &event.body {
            crate::webhooks::Body::Message { text: Some(t), .. }
            | crate::webhooks::Body::Incoming { text: Some(t), .. } => {
                hook.ring_marks.iter().any(|m| t.contains(m.as_str()))
            }
            _ => false,
        };
        if rules::is_passive(&event.body) && !ring_canary {
            m.webhook_event(name, &event.event_type);
            let reason = match rules::decide(&event.body, None).first() {
                Some(rules::Effect::Ignore(r)) => r,
                _ => "unused_type",
            };
            m.webhook_ignored(name, reason);
            return Reply::ignored(reason);
        }
        // One lock around look-up, queueing and insertion: two deliveries of
        // the same event racing each other queue it once.
        let mut seen = match hook.seen.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if seen.contains(&event.dedupe_key, now) {
            m.webhook_rejected(name, "duplicate");
            return Reply::ignored("duplicate");
        }
        if hook.queued.fetch_add(1, Ordering::AcqRel) >= cfg.queue_size {
            hook.queued.fetch_sub(1, Ordering::AcqRel);
            return self.full(name);
        }
        let key = event.dedupe_key.clone();
        let event_type = event.event_type.clone();
        let queued = Queued {
            provider: name.to_string(),
            event,
            _slot: Slot(hook.queued.clone()),
        };
        match self.inner.tx.try_send(queued) {
            Ok(()) => {
                seen.insert(&key, now);
                m.webhook_event(name, &event_type);
                Reply {
                    status: 202,
                    body: json!({ "status": "accepted" }),
                    retry_after: None,
                }
            }
            // The slot is released as the event is dropped with the error.
            Err(mpsc::error::TrySendError::Full(_)) => self.full(name),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                reject(503, "stopping", "the watchdog is stopping".into())
            }
        }
    }

    fn full(&self, name: &str) -> Reply {
        let m = &self.inner.metrics;
        m.webhook_rejected(name, "queue_full");
        m.webhook_queue_dropped(name);
        Reply {
            status: 503,
            body: json!({ "error": "webhook queue full; retry later" }),
            retry_after: Some(RETRY_AFTER_SECS),
        }
    }

    /// How long an event of `provider` is remembered for de-duplication.
    pub fn replay_window(&self, provider: &str) -> Option<Duration> {
        self.inner
            .providers
            .get(provider)
            .map(|h| h.cfg().replay_window)
    }
}

/// `application/json`, parameters (charset) allowed.
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}
