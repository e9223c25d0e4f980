//! The vocabulary shared by the pure core and the providers: what a probe
//! found ([`Outcome`], [`ProbeReport`]), why a session cannot send
//! ([`NotReadyKind`], [`BlockKind`]) and what a status read said
//! ([`StatusRead`]). Every provider client maps its responses into these;
//! the machine, the policy and the confirmation verdict decide on them.
//!
//! Owns: the outcome names and their stored form.
//! Must not: import anything with I/O (no provider, store, HTTP, scheduler;
//! `tests/it/layering.rs` checks it).

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

/// The result of one probe, in the provider-neutral taxonomy.
/// A failed probe is data, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The canary is proven to be on WhatsApp: WAHA ack >= 1 (SERVER),
    /// Green-API `sent`/`delivered`/`read` — or, with `confirm = "accepted"`,
    /// the provider accepted it.
    Delivered,
    /// Send rejected with a configured desync signature while the status says healthy.
    Desync,
    /// Any other send failure while healthy.
    SendFailed,
    /// The canary was accepted but not confirmed within `ack_timeout` (WAHA
    /// ack still 0 PENDING, Green-API still pending or not in the journal).
    Stuck,
    /// WhatsApp reported the accepted canary as failed (WAHA ack -1 ERROR,
    /// Green-API `failed`): a counting failure.
    AckError,
    /// The provider cannot say whether the canary arrived (the engine has no
    /// message lookup, or its answers are unreadable): never counted as
    /// delivered, never a restart by itself.
    Unconfirmed,
    /// The canary's chat cannot receive it (Green-API `noAccount` /
    /// `notInGroup`): the configuration is wrong, not the session. Alert,
    /// never reboot.
    BadCanaryChat,
    /// WhatsApp's reachout timelock (WAHA send error `server returned error
    /// 463`, `me.reachoutTimelock` active): it lifts by itself; never a restart.
    ReachoutTimelock,
    /// WhatsApp refused the send (WAHA `server returned error 403`): never a
    /// desync, never a restart.
    SendRefused,
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
    /// A ring canary the sender confirmed was never seen by this session
    /// (the receiver) within the ring's deadline (WAHA #1931: WORKING, no
    /// incoming events): a counting failure of the receiver's inbound path.
    InboundMissing,
    /// Green-API 400 "expired" / "deleted": the instance needs the vendor's console.
    InstanceExpired,
}

impl Outcome {
    /// Every outcome name, in contract order (metrics, API, database).
    pub const NAMES: [&'static str; 22] = [
        "delivered",
        "desync",
        "send_failed",
        "stuck",
        "ack_error",
        "unconfirmed",
        "bad_canary_chat",
        "reachout_timelock",
        "send_refused",
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
        "inbound_missing",
    ];

    /// The snake_case name used in the database, metrics, API and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Desync => "desync",
            Outcome::SendFailed => "send_failed",
            Outcome::Stuck => "stuck",
            Outcome::AckError => "ack_error",
            Outcome::Unconfirmed => "unconfirmed",
            Outcome::BadCanaryChat => "bad_canary_chat",
            Outcome::ReachoutTimelock => "reachout_timelock",
            Outcome::SendRefused => "send_refused",
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
            Outcome::InboundMissing => "inbound_missing",
        }
    }

    /// Failures that say "this session cannot send although it claims to be
    /// healthy": they build the confirmation streak that leads to a restart.
    pub fn is_counting_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Desync
                | Outcome::SendFailed
                | Outcome::Stuck
                | Outcome::AckError
                | Outcome::InboundMissing
        )
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
            "ack_error" => Outcome::AckError,
            "unconfirmed" => Outcome::Unconfirmed,
            "bad_canary_chat" => Outcome::BadCanaryChat,
            "reachout_timelock" => Outcome::ReachoutTimelock,
            "send_refused" => Outcome::SendRefused,
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
            "inbound_missing" => Outcome::InboundMissing,
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

/// What one probe found, for the machine and the probe record.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeReport {
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    /// Short, single-line, secret-free.
    pub detail: String,
    /// Whether a canary message was actually sent.
    pub sent: bool,
    /// The canary was accepted but not yet proven delivered: `Delivered` is
    /// provisional until [`crate::confirm`] decides on this message id (WAHA
    /// serialized id, Green-API `idMessage`).
    pub pending_ack: Option<String>,
}

impl ProbeReport {
    /// A probe that ended before a canary was sent.
    pub fn failed(outcome: Outcome, http_status: Option<u16>, detail: String) -> Self {
        ProbeReport {
            outcome,
            http_status,
            detail,
            sent: false,
            pending_ack: None,
        }
    }
}

/// Why a provider call (a restart) did not do what was asked: the
/// classified outcome (an auth failure and a 5xx stay apart), the HTTP
/// status if one came, and a short, secret-free detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallFailed {
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub detail: String,
}

/// The detail, then what it means. A 5xx is named a server error (the
/// provider answered: it is not unreachable).
impl fmt::Display for CallFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.http_status {
            Some(code) if code >= 500 => write!(f, "{} (server error {code})", self.detail),
            _ => write!(f, "{} ({})", self.detail, self.outcome.as_str()),
        }
    }
}

impl std::error::Error for CallFailed {}

/// A status read while restarting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusRead {
    /// The provider reports the session healthy (WAHA WORKING, Green-API authorized).
    Working,
    /// Anything else, classified.
    Not(Outcome),
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
            Outcome::AckError,
            Outcome::Unconfirmed,
            Outcome::BadCanaryChat,
            Outcome::ReachoutTimelock,
            Outcome::SendRefused,
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
            Outcome::InboundMissing,
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
        assert_eq!(
            counting,
            [
                "desync",
                "send_failed",
                "stuck",
                "ack_error",
                "inbound_missing"
            ]
        );
    }
}
