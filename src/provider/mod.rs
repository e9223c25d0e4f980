//! Providers: the WhatsApp HTTP gateways we watch. Every client maps its
//! responses into the vocabulary of [`crate::outcome`] (re-exported here).
//! Only modules below `provider::` know vendor JSON; everything above sees
//! outcomes.

pub mod delivery;
pub mod green_api;
pub mod http;
pub mod rules;
pub mod waha;

use std::time::Duration;

pub use crate::outcome::{BlockKind, CallFailed, NotReadyKind, Outcome, ProbeReport, StatusRead};

/// Why a request to a provider did not yield a usable answer; every
/// client's calls fail with this.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    /// Short, one line, no URL, no secret.
    pub detail: String,
    /// The row of the client's `RULES` that decided (or `transport`,
    /// `reply shape`).
    pub rule: &'static str,
}

impl Failure {
    /// A request that got no answer (unreachable, timed out).
    pub(crate) fn transport(t: http::Transport) -> Failure {
        let (outcome, detail) = match t {
            http::Transport::Unreachable(d) => (Outcome::Unreachable, d),
            http::Transport::Timeout(d) => (Outcome::Timeout, d),
        };
        Failure {
            outcome,
            http_status: None,
            detail,
            rule: "transport",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.outcome)
    }
}

/// The answer to one canary send, whichever the client.
#[derive(Clone, Debug, PartialEq)]
pub struct SendResult {
    /// [`Outcome::Delivered`] means only "accepted": the message is not
    /// proven on WhatsApp yet (WAHA's ack, Green-API's queue and journal
    /// decide that, `crate::confirm`).
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub detail: String,
    /// The provider's id of the sent message: WAHA's serialized form
    /// (`true_<chat>_<ID>`; built from NOWEB's `key`), Green-API's
    /// `idMessage`.
    pub message_id: Option<String>,
    /// The ack the reply already carries (WAHA WEBJS `ack`, NOWEB `status`;
    /// a Green-API send reply carries none).
    pub ack: Option<i64>,
    /// The row of the client's `RULES` that decided.
    pub rule: &'static str,
}

impl SendResult {
    /// A send that failed before anything was accepted.
    pub(crate) fn failed(f: Failure) -> SendResult {
        SendResult {
            outcome: f.outcome,
            http_status: f.http_status,
            detail: f.detail,
            message_id: None,
            ack: None,
            rule: f.rule,
        }
    }
}

impl ProbeReport {
    fn from_failure(f: Failure) -> Self {
        Self::failed(f.outcome, f.http_status, f.detail)
    }
}

/// The canary to send in one probe.
#[derive(Clone, Debug)]
pub struct Canary<'a> {
    /// None: the session's own chat.
    pub chat: Option<&'a str>,
    pub text: &'a str,
    pub timeout: Duration,
    /// What proves the canary (`[canary] confirm`).
    pub confirm: crate::config::ConfirmMode,
}

/// A Green-API instance with the instance's own chat id (its `wid`, the
/// default canary target) remembered after the first read.
#[derive(Clone, Debug)]
pub struct GreenProvider {
    client: green_api::GreenApiClient,
    wid: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl GreenProvider {
    pub fn client(&self) -> &green_api::GreenApiClient {
        &self.client
    }

    async fn wid(&self, timeout: Duration) -> Result<String, Failure> {
        let cached = self
            .wid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(w) = cached {
            return Ok(w);
        }
        let w = self.client.wid(timeout).await?;
        *self
            .wid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(w.clone());
        Ok(w)
    }
}

/// The probe report of a WAHA send: an accepted canary is pending until
/// WhatsApp's ack proves it, unless the reply already decides it (ack -1
/// fails at once, ack >= 1 needs no read-back) or `confirm = "accepted"`.
fn waha_canary(r: SendResult, confirm: crate::config::ConfirmMode) -> ProbeReport {
    use crate::confirm::{Evidence, Pending, Source, verdict};
    let report = |outcome, detail, pending_ack| ProbeReport {
        outcome,
        http_status: r.http_status,
        detail,
        sent: true,
        pending_ack,
    };
    if r.outcome != Outcome::Delivered || confirm == crate::config::ConfirmMode::Accepted {
        return report(r.outcome, r.detail.clone(), None);
    }
    let Some(id) = r.message_id.clone() else {
        return report(
            Outcome::Unconfirmed,
            format!(
                "HTTP {}: the send reply has no message id to confirm",
                r.http_status.unwrap_or(0)
            ),
            None,
        );
    };
    if let Some(ack) = r.ack.filter(|a| *a == -1 || *a >= 1) {
        // Decided by the reply alone; the instant does not matter for these rows.
        let at = crate::clock::Timestamp(0);
        let pending = Pending::new(id.clone(), at, Duration::from_secs(86_400), r.http_status);
        let evidence = Evidence::WahaAck {
            ack,
            ack_name: None,
            source: Source::SendReply,
        };
        if let Some(decided) = verdict(&pending, evidence, at).report(&pending) {
            return decided;
        }
    }
    report(Outcome::Delivered, r.detail.clone(), Some(id))
}

/// A provider endpoint: a closed set, so matches stay exhaustive and no
/// boxed async traits are needed.
#[derive(Clone, Debug)]
pub enum Provider {
    Waha(waha::WahaClient),
    GreenApi(GreenProvider),
}

/// Why a provider's client could not be built from its configuration.
/// Never carries a secret: the messages name the setting, not its value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// reqwest could not build its client (TLS backend, resolver).
    #[error("cannot build HTTP client: {0}")]
    Http(String),
    /// The provider's `url` is not an http(s) base URL.
    #[error("invalid {provider} url: {reason}")]
    Url {
        provider: &'static str,
        reason: String,
    },
    #[error("the WAHA api key contains characters not allowed in a header")]
    ApiKeyHeader,
    #[error("invalid Green-API id_instance: must be 1 to 20 digits")]
    IdInstance,
    #[error(
        "invalid Green-API api token: must be printable ASCII without spaces, `/`, `?`, `#` or `%`"
    )]
    ApiToken,
    #[error("green-api needs id_instance and api_token")]
    MissingCredentials,
}

impl Provider {
    /// The client for one configured provider.
    pub fn from_config(cfg: &crate::config::ProviderConfig) -> Result<Provider, ClientError> {
        use crate::config::ProviderKind;
        match cfg.kind {
            ProviderKind::Waha => Ok(Provider::Waha(waha::WahaClient::new(
                &cfg.url,
                cfg.api_key.as_ref().map(|k| k.expose()),
                cfg.connect_timeout,
                &cfg.policy.desync_signatures,
            )?)),
            ProviderKind::GreenApi => {
                let (Some(id), Some(token)) = (cfg.id_instance.as_deref(), cfg.api_token.as_ref())
                else {
                    return Err(ClientError::MissingCredentials);
                };
                let client = green_api::GreenApiClient::new(
                    &cfg.url,
                    id,
                    token.expose(),
                    cfg.connect_timeout,
                )?
                .with_min_interval(cfg.min_request_interval)
                // "Repeat the request 3 times with a delay" (Green-API docs:
                // Common errors, 502): the
                // same spacing as every other paced call.
                .with_retry_policy(green_api::RetryPolicy {
                    delay_502: cfg.min_request_interval,
                    ..green_api::RetryPolicy::default()
                });
                Ok(Provider::GreenApi(GreenProvider {
                    client,
                    wid: Default::default(),
                }))
            }
        }
    }

    /// Names of every session the provider has (a Green-API instance is one
    /// session, named after its id).
    pub async fn list_sessions(&self, timeout: Duration) -> Result<Vec<String>, ProbeReport> {
        match self {
            Provider::Waha(c) => c
                .list_sessions(timeout)
                .await
                .map(|v| v.into_iter().map(|s| s.name).collect())
                .map_err(ProbeReport::from_failure),
            Provider::GreenApi(g) => Ok(vec![g.client.id_instance().to_string()]),
        }
    }

    /// One probe: read the status, and send the canary only when healthy.
    pub async fn probe(&self, session: &str, canary: &Canary<'_>) -> ProbeReport {
        match self {
            Provider::Waha(c) => {
                let info = match c.session(session, canary.timeout).await {
                    Ok(info) => info,
                    Err(f) => return ProbeReport::from_failure(f),
                };
                if let Some(outcome) = info.not_working() {
                    return ProbeReport::failed(
                        outcome,
                        Some(200),
                        format!("status {}", info.status),
                    );
                }
                if info.reachout_timelock {
                    // Sends would fail with 463 until WhatsApp lifts it.
                    return ProbeReport::failed(
                        Outcome::ReachoutTimelock,
                        Some(200),
                        "me.reachoutTimelock is active: WhatsApp restricts new chats until it \
                         lifts by itself"
                            .to_string(),
                    );
                }
                let Some(chat) = canary.chat.or(info.me.as_deref()) else {
                    return ProbeReport::failed(
                        Outcome::BadRequest,
                        Some(200),
                        "session reports no me.id to send a self canary to; set canary chat"
                            .to_string(),
                    );
                };
                let r = c
                    .send_text(session, chat, canary.text, canary.timeout)
                    .await;
                waha_canary(r, canary.confirm)
            }
            Provider::GreenApi(g) => {
                let state = match g.client.state(canary.timeout).await {
                    Ok(s) => s,
                    Err(f) => return ProbeReport::from_failure(f),
                };
                if let Some(outcome) = state.outcome() {
                    return ProbeReport::failed(
                        outcome,
                        Some(200),
                        http::short(&format!("state {state}")),
                    );
                }
                let chat = match canary.chat {
                    Some(c) => c.to_string(),
                    None => match g.wid(canary.timeout).await {
                        Ok(w) => w,
                        Err(f) => return ProbeReport::from_failure(f),
                    },
                };
                let r = g
                    .client
                    .send_message(&chat, canary.text, canary.timeout)
                    .await;
                match (r.outcome, r.message_id) {
                    (Outcome::Delivered, Some(id))
                        if canary.confirm == crate::config::ConfirmMode::Accepted =>
                    {
                        ProbeReport {
                            outcome: Outcome::Delivered,
                            http_status: r.http_status,
                            detail: http::short(&format!(
                                "queued as {id}; accepted counts as delivered (confirm = \"accepted\")"
                            )),
                            sent: true,
                            pending_ack: None,
                        }
                    }
                    (Outcome::Delivered, Some(id)) => ProbeReport {
                        outcome: Outcome::Delivered,
                        http_status: r.http_status,
                        detail: http::short(&format!("queued as {id}")),
                        sent: true,
                        pending_ack: Some(id),
                    },
                    (Outcome::Delivered, None) => ProbeReport {
                        outcome: Outcome::BadReply,
                        http_status: r.http_status,
                        detail: "sendMessage answered without an idMessage".to_string(),
                        sent: true,
                        pending_ack: None,
                    },
                    (outcome, _) => ProbeReport {
                        outcome,
                        http_status: r.http_status,
                        detail: r.detail,
                        sent: true,
                        pending_ack: None,
                    },
                }
            }
        }
    }

    /// One look at a sent canary, as confirmation evidence: WAHA reads the
    /// message back (its chat from the serialized id, else `chat`),
    /// Green-API asks its journal (`getMessage`, to `chat` or the instance's
    /// own chat).
    pub async fn look(
        &self,
        session: &str,
        message_id: &str,
        chat: Option<&str>,
        timeout: Duration,
    ) -> crate::confirm::Evidence {
        use crate::confirm::Evidence;
        match self {
            Provider::Waha(c) => {
                let chat = delivery::waha_chat_of(message_id).or(chat);
                match chat {
                    Some(chat) => c.read_back(session, chat, message_id, timeout).await,
                    None => Evidence::Unsupported {
                        detail: format!("cannot tell the chat of message {message_id}"),
                    },
                }
            }
            Provider::GreenApi(g) => {
                let chat = match chat {
                    Some(c) => c.to_string(),
                    None => match g.wid(timeout).await {
                        Ok(w) => w,
                        Err(f) => return Evidence::LookupFailed(ProbeReport::from_failure(f)),
                    },
                };
                g.client.get_message(&chat, message_id, timeout).await
            }
        }
    }

    /// The session's own number (WAHA `me.id`, Green-API `wid`): where
    /// the ring canaries to it go.
    pub async fn own_number(&self, session: &str, timeout: Duration) -> Result<String, String> {
        match self {
            Provider::Waha(c) => match c.session(session, timeout).await {
                Ok(info) => info
                    .me
                    .ok_or_else(|| format!("status {}: no me.id yet", info.status)),
                Err(f) => Err(f.detail),
            },
            Provider::GreenApi(g) => g.wid(timeout).await.map_err(|f| f.detail),
        }
    }

    /// Whether the ring canary with `nonce` from `from` reached `session`
    /// (WAHA: its chat with `from`; Green-API: `lastIncomingMessages`).
    pub async fn ring_seen(
        &self,
        session: &str,
        from: &str,
        nonce: &str,
        timeout: Duration,
    ) -> Result<bool, String> {
        match self {
            Provider::Waha(c) => c
                .chat_has(session, from, nonce, 20, timeout)
                .await
                .map_err(|f| f.detail),
            Provider::GreenApi(g) => g
                .client
                .incoming_seen(from, nonce, timeout)
                .await
                .map_err(|f| f.detail),
        }
    }

    /// Whether a queued canary is still in the provider's send queue
    /// (Green-API `showMessagesQueue`). WAHA has no queue: never queued.
    pub async fn still_queued(
        &self,
        message_id: &str,
        timeout: Duration,
    ) -> Result<bool, ProbeReport> {
        match self {
            Provider::Waha(_) => Ok(false),
            Provider::GreenApi(g) => g
                .client
                .queue_contains(message_id, timeout)
                .await
                .map_err(ProbeReport::from_failure),
        }
    }

    /// The status only (while restarting).
    pub async fn status(&self, session: &str, timeout: Duration) -> (StatusRead, ProbeReport) {
        let (read, detail) = match self {
            Provider::Waha(c) => match c.session(session, timeout).await {
                Ok(info) => (info.not_working(), format!("status {}", info.status)),
                Err(f) => {
                    let report = ProbeReport::from_failure(f);
                    return (StatusRead::Not(report.outcome), report);
                }
            },
            Provider::GreenApi(g) => match g.client.state(timeout).await {
                Ok(state) => (state.outcome(), http::short(&format!("state {state}"))),
                Err(f) => {
                    let report = ProbeReport::from_failure(f);
                    return (StatusRead::Not(report.outcome), report);
                }
            },
        };
        let (read, outcome) = match read {
            None => (StatusRead::Working, Outcome::Delivered),
            Some(o) => (StatusRead::Not(o), o),
        };
        (read, ProbeReport::failed(outcome, Some(200), detail))
    }

    /// The provider's restart (WAHA restart, Green-API reboot). Ok = accepted.
    pub async fn restart(&self, session: &str, timeout: Duration) -> Result<(), CallFailed> {
        match self {
            Provider::Waha(c) => c.restart(session, timeout).await.map_err(|f| CallFailed {
                outcome: f.outcome,
                http_status: f.http_status,
                detail: f.detail,
            }),
            Provider::GreenApi(g) => g.client.reboot(timeout).await.map_err(|f| CallFailed {
                outcome: f.outcome,
                http_status: f.http_status,
                detail: f.detail,
            }),
        }
    }

    /// "restart" or "reboot", as the provider calls it.
    pub fn restart_action(&self) -> &'static str {
        match self {
            Provider::Waha(_) => "restart",
            Provider::GreenApi(_) => "reboot",
        }
    }
}
