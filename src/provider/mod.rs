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

impl ProbeReport {
    fn from_waha(f: waha::Failure) -> Self {
        Self::failed(f.outcome, f.http_status, f.detail)
    }

    fn from_green(f: green_api::Failure) -> Self {
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

    async fn wid(&self, timeout: Duration) -> Result<String, green_api::Failure> {
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

/// A provider endpoint: a closed set, so matches stay exhaustive and no
/// boxed async traits are needed.
#[derive(Clone, Debug)]
pub enum Provider {
    Waha(waha::WahaClient),
    GreenApi(GreenProvider),
}

impl Provider {
    /// The client for one configured provider.
    pub fn from_config(cfg: &crate::config::ProviderConfig) -> Result<Provider, String> {
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
                    return Err("green-api needs id_instance and api_token".to_string());
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
                .map_err(ProbeReport::from_waha),
            Provider::GreenApi(g) => Ok(vec![g.client.id_instance().to_string()]),
        }
    }

    /// One probe: read the status, and send the canary only when healthy.
    pub async fn probe(&self, session: &str, canary: &Canary<'_>) -> ProbeReport {
        match self {
            Provider::Waha(c) => {
                let info = match c.session(session, canary.timeout).await {
                    Ok(info) => info,
                    Err(f) => return ProbeReport::from_waha(f),
                };
                if let Some(outcome) = info.not_working() {
                    return ProbeReport::failed(
                        outcome,
                        Some(200),
                        format!("status {}", info.status),
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
                ProbeReport {
                    outcome: r.outcome,
                    http_status: r.http_status,
                    detail: r.detail,
                    sent: true,
                    pending_ack: None,
                }
            }
            Provider::GreenApi(g) => {
                let state = match g.client.state(canary.timeout).await {
                    Ok(s) => s,
                    Err(f) => return ProbeReport::from_green(f),
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
                        Err(f) => return ProbeReport::from_green(f),
                    },
                };
                let r = g
                    .client
                    .send_message(&chat, canary.text, canary.timeout)
                    .await;
                match (r.outcome, r.message_id) {
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
                .map_err(ProbeReport::from_green),
        }
    }

    /// The status only (while restarting).
    pub async fn status(&self, session: &str, timeout: Duration) -> (StatusRead, ProbeReport) {
        let (read, detail) = match self {
            Provider::Waha(c) => match c.session(session, timeout).await {
                Ok(info) => (info.not_working(), format!("status {}", info.status)),
                Err(f) => {
                    let report = ProbeReport::from_waha(f);
                    return (StatusRead::Not(report.outcome), report);
                }
            },
            Provider::GreenApi(g) => match g.client.state(timeout).await {
                Ok(state) => (state.outcome(), http::short(&format!("state {state}"))),
                Err(f) => {
                    let report = ProbeReport::from_green(f);
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
