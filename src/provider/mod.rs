//! Providers: the WhatsApp HTTP gateways we watch, and the vocabulary every
//! client maps its responses into ([`Outcome`]). Only modules below
//! `provider::` know vendor JSON; everything above sees outcomes.

pub mod green_api;
pub mod http;
pub mod waha;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a provider says a session cannot send right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotReadyKind {
    /// WAHA `STARTING`, Green-API `starting`: usually transient; restarted after `starting_grace`.
    Starting,
    /// WAHA `STOPPED`: someone may have stopped it on purpose; restarted only if `restart_stopped`.
    Stopped,
    /// WAHA `FAILED`: restarted through the policy.
    Failed,
    /// Green-API `sleepMode`: the phone is off; a restart cannot help.
    Sleeping,
    /// Green-API `null` state: the instance is still being provisioned.
    Provisioning,
    /// A status this version does not know: reported, never acted on.
    Unrecognised,
}

impl NotReadyKind {
    pub const ALL: [NotReadyKind; 6] = [
        NotReadyKind::Starting,
        NotReadyKind::Stopped,
        NotReadyKind::Failed,
        NotReadyKind::Sleeping,
        NotReadyKind::Provisioning,
        NotReadyKind::Unrecognised,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotReadyKind::Starting => "starting",
            NotReadyKind::Stopped => "stopped",
            NotReadyKind::Failed => "failed",
            NotReadyKind::Sleeping => "sleeping",
            NotReadyKind::Provisioning => "provisioning",
            NotReadyKind::Unrecognised => "unrecognised",
        }
    }
}

/// Why a provider refuses to let a session send at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// WhatsApp banned the number (Green-API `blocked`).
    Banned,
    /// WhatsApp filters the number's messages (Green-API `yellowCard`): rest it.
    YellowCard,
}

/// The result of one probe, in the provider-neutral taxonomy of DESIGN.md.
/// A failed probe is data, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The canary was accepted (WAHA 201) or left the queue (Green-API).
    Delivered,
    /// Send rejected with a configured desync signature while the status says healthy.
    Desync,
    /// Any other send failure while healthy.
    SendFailed,
    /// Green-API canary never left the queue within `ack_timeout`.
    Stuck,
    NotReady(NotReadyKind),
    NeedsPairing,
    Blocked(BlockKind),
    RateLimited {
        retry_after: Option<Duration>,
    },
    AuthRejected,
    BadRequest,
    Unreachable,
    Timeout,
    /// A 2xx answer that cannot be understood: not JSON, empty, cut off at
    /// the size cap, the wrong shape, an HTML page from a proxy — to a status
    /// read (WAHA `GET /api/sessions/{s}`, Green-API `getStateInstance` /
    /// `getSettings`) or to a send (WAHA `sendText`, Green-API
    /// `sendMessage`). It proves nothing about the session (no canary was
    /// sent, or nobody can tell whether it was): never counted toward a
    /// restart; it feeds the provider outage rule like `unreachable`.
    BadReply,
    SessionMissing,
    /// Green-API 466: the plan's monthly quota is used up.
    QuotaExceeded,
    /// Green-API 400 "expired" / "deleted": the instance needs the vendor's console.
    InstanceExpired,
}

impl Outcome {
    /// Every outcome name, in contract order (DESIGN.md "States and outcomes").
    pub const NAMES: [&'static str; 16] = [
        "delivered",
        "desync",
        "send_failed",
        "stuck",
        "not_ready",
        "needs_pairing",
        "blocked",
        "rate_limited",
        "auth_rejected",
        "bad_request",
        "unreachable",
        "timeout",
        "bad_reply",
        "session_missing",
        "quota_exceeded",
        "instance_expired",
    ];

    /// The snake_case name used in the database, metrics, API and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Desync => "desync",
            Outcome::SendFailed => "send_failed",
            Outcome::Stuck => "stuck",
            Outcome::NotReady(_) => "not_ready",
            Outcome::NeedsPairing => "needs_pairing",
            Outcome::Blocked(_) => "blocked",
            Outcome::RateLimited { .. } => "rate_limited",
            Outcome::AuthRejected => "auth_rejected",
            Outcome::BadRequest => "bad_request",
            Outcome::Unreachable => "unreachable",
            Outcome::Timeout => "timeout",
            Outcome::BadReply => "bad_reply",
            Outcome::SessionMissing => "session_missing",
            Outcome::QuotaExceeded => "quota_exceeded",
            Outcome::InstanceExpired => "instance_expired",
        }
    }

    /// Failures that say "this session cannot send although it claims to be
    /// healthy": they build the confirmation streak that leads to a restart.
    pub fn is_counting_failure(&self) -> bool {
        matches!(self, Outcome::Desync | Outcome::SendFailed | Outcome::Stuck)
    }

    /// Failures that say nothing about the session, only about the path to the
    /// provider: they feed the provider outage rule.
    pub fn is_provider_level(&self) -> bool {
        matches!(
            self,
            Outcome::Unreachable | Outcome::Timeout | Outcome::BadReply
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::NotReady(k) => write!(f, "not_ready({})", k.as_str()),
            Outcome::Blocked(BlockKind::YellowCard) => f.write_str("blocked(yellow_card)"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Parses the stored form written by [`Outcome::to_stored`].
impl FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let outcome = match name {
            "delivered" => Outcome::Delivered,
            "desync" => Outcome::Desync,
            "send_failed" => Outcome::SendFailed,
            "stuck" => Outcome::Stuck,
            "not_ready" => {
                let kind = arg.unwrap_or("starting");
                let kind = NotReadyKind::ALL
                    .into_iter()
                    .find(|k| k.as_str() == kind)
                    .ok_or_else(|| format!("unknown not_ready kind `{kind}`"))?;
                Outcome::NotReady(kind)
            }
            "needs_pairing" => Outcome::NeedsPairing,
            "blocked" => match arg {
                Some("yellow_card") => Outcome::Blocked(BlockKind::YellowCard),
                _ => Outcome::Blocked(BlockKind::Banned),
            },
            "rate_limited" => Outcome::RateLimited {
                retry_after: arg
                    .and_then(|a| a.parse::<u64>().ok())
                    .map(Duration::from_millis),
            },
            "auth_rejected" => Outcome::AuthRejected,
            "bad_request" => Outcome::BadRequest,
            "unreachable" => Outcome::Unreachable,
            "timeout" => Outcome::Timeout,
            "bad_reply" => Outcome::BadReply,
            "session_missing" => Outcome::SessionMissing,
            "quota_exceeded" => Outcome::QuotaExceeded,
            "instance_expired" => Outcome::InstanceExpired,
            other => return Err(format!("unknown outcome `{other}`")),
        };
        Ok(outcome)
    }
}

impl Outcome {
    /// The name plus the detail needed to restore it exactly (`not_ready:starting`).
    pub fn to_stored(&self) -> String {
        match self {
            Outcome::NotReady(k) => format!("not_ready:{}", k.as_str()),
            Outcome::Blocked(BlockKind::YellowCard) => "blocked:yellow_card".to_string(),
            Outcome::RateLimited {
                retry_after: Some(d),
            } => format!("rate_limited:{}", d.as_millis()),
            other => other.as_str().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_outcomes() -> Vec<Outcome> {
        let mut v = vec![
            Outcome::Delivered,
            Outcome::Desync,
            Outcome::SendFailed,
            Outcome::Stuck,
            Outcome::NeedsPairing,
            Outcome::Blocked(BlockKind::Banned),
            Outcome::Blocked(BlockKind::YellowCard),
            Outcome::RateLimited { retry_after: None },
            Outcome::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
            },
            Outcome::AuthRejected,
            Outcome::BadRequest,
            Outcome::Unreachable,
            Outcome::Timeout,
            Outcome::BadReply,
            Outcome::SessionMissing,
            Outcome::QuotaExceeded,
            Outcome::InstanceExpired,
        ];
        v.extend(NotReadyKind::ALL.into_iter().map(Outcome::NotReady));
        v
    }

    #[test]
    fn stored_form_round_trips_for_every_outcome() {
        for o in all_outcomes() {
            assert_eq!(o.to_stored().parse::<Outcome>(), Ok(o), "{o:?}");
            assert!(Outcome::NAMES.contains(&o.as_str()), "{o:?}");
        }
        assert!("nonsense".parse::<Outcome>().is_err());
        assert!("not_ready:weird".parse::<Outcome>().is_err());
    }

    #[test]
    fn counting_and_provider_level_sets_are_disjoint() {
        for o in all_outcomes() {
            assert!(!(o.is_counting_failure() && o.is_provider_level()), "{o:?}");
        }
        let counting: Vec<_> = all_outcomes()
            .into_iter()
            .filter(Outcome::is_counting_failure)
            .map(|o| o.as_str())
            .collect();
        assert_eq!(counting, ["desync", "send_failed", "stuck"]);
    }
}

/// The text of a refused restart: the detail, then what it means. A 5xx is
/// named a server error (the provider answered: it is not unreachable).
pub(crate) fn restart_error(http_status: Option<u16>, detail: &str, outcome: Outcome) -> String {
    match http_status {
        Some(code) if code >= 500 => format!("{detail} (server error {code})"),
        _ => format!("{detail} ({})", outcome.as_str()),
    }
}

/// What one probe found, for the machine and the probe record.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeReport {
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    /// Short, single-line, secret-free.
    pub detail: String,
    /// Whether a canary message was actually sent.
    pub sent: bool,
    /// The canary was only queued (Green-API): `Delivered` is provisional
    /// until this message id has left the provider's queue.
    pub pending_ack: Option<String>,
}

impl ProbeReport {
    fn failed(outcome: Outcome, http_status: Option<u16>, detail: String) -> Self {
        ProbeReport {
            outcome,
            http_status,
            detail,
            sent: false,
            pending_ack: None,
        }
    }

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
                // "Repeat the request 3 times with a delay" (seed 004): the
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
    pub async fn status(
        &self,
        session: &str,
        timeout: Duration,
    ) -> (crate::machine::StatusRead, ProbeReport) {
        use crate::machine::StatusRead;
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
    pub async fn restart(&self, session: &str, timeout: Duration) -> Result<(), String> {
        match self {
            Provider::Waha(c) => c.restart(session, timeout).await,
            Provider::GreenApi(g) => g
                .client
                .reboot(timeout)
                .await
                .map_err(|f| restart_error(f.http_status, &f.detail, f.outcome)),
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
