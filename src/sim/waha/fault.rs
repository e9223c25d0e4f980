//! Faults a test can inject into a simulated session, and their JSON wire
//! form for the `/_sim` control routes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A fault injected into one session.
///
/// Over HTTP (and serde) a fault is an object tagged by `"fault"`:
/// `{"fault":"desync"}`, `{"fault":"send_error","status":502,"body":null,"times":1}`,
/// `{"fault":"rate_limited","retry_after_secs":30,"times":1}`,
/// `{"fault":"latency","ms":150}`, `{"fault":"restart_fails"}`,
/// `{"fault":"restart_does_not_heal"}`, `{"fault":"stuck_starting"}`,
/// `{"fault":"accepted_never_acked"}`, `{"fault":"ack_error"}`,
/// `{"fault":"ack_slow","ms":30000}`, `{"fault":"whatsapp_error","code":403,"times":1}`,
/// `{"fault":"reachout_timelock","ms":600000}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "FaultSpec", try_from = "FaultSpec")]
pub enum Fault {
    /// Issue #2084: every `sendText` answers 500 with the gRPC
    /// `2 UNKNOWN: server returned error 400` filter body while the status
    /// stays `WORKING`. Sticky; a restart (or stop + start) clears it.
    Desync,
    /// `sendText` answers `status` with `body` (JSON if it parses as JSON,
    /// text otherwise); `None` gives a default body for the status. `times`:
    /// the next N sends only, `None` = until cleared. Takes precedence over
    /// `RateLimited` and `Desync`.
    SendError {
        status: u16,
        body: Option<String>,
        times: Option<u32>,
    },
    /// `sendText` answers 429, with `Retry-After` when set (WAHA itself does
    /// not rate-limit; this is a proxy in front of it). `times` as above.
    RateLimited {
        retry_after_secs: Option<u64>,
        times: Option<u32>,
    },
    /// Real-time delay before every request naming this session is answered,
    /// for client-timeout tests. Zero removes it.
    Latency(Duration),
    /// `restart` answers 500 and changes nothing. Sticky.
    RestartFails,
    /// `restart` goes STARTING → WORKING as usual but the desync survives. Sticky.
    RestartDoesNotHeal,
    /// After a restart or start the session stays `STARTING` forever. Sticky.
    StuckStarting,
    /// `sendText` answers 201 with an id, but the message's ack stays 0
    /// (PENDING) forever (WAHA #1721). A restart clears it, like the desync.
    AcceptedNeverAcked,
    /// `sendText` answers 201, then the message's ack turns -1 (ERROR). A
    /// restart clears it.
    AckError,
    /// Messages reach SERVER only this long after the send: a healthy but
    /// slow session. Survives restarts.
    AckSlow(Duration),
    /// `sendText` answers 500 with the gRPC `2 UNKNOWN: server returned error
    /// <code>` (whatsmeow forwards WhatsApp's error code: 403, 463, …).
    /// `times` as for `SendError`.
    WhatsappError { code: u16, times: Option<u32> },
    /// WhatsApp's reachout timelock for this long from now: sends answer the
    /// 463 error, `me.reachoutTimelock` says `isActive: true` until it lifts
    /// by itself. Survives restarts.
    ReachoutTimelock(Duration),
}

/// The wire form of [`Fault`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case", deny_unknown_fields)]
enum FaultSpec {
    Desync,
    SendError {
        status: u16,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        times: Option<u32>,
    },
    RateLimited {
        #[serde(default)]
        retry_after_secs: Option<u64>,
        #[serde(default)]
        times: Option<u32>,
    },
    Latency {
        ms: u64,
    },
    RestartFails,
    RestartDoesNotHeal,
    StuckStarting,
    AcceptedNeverAcked,
    AckError,
    AckSlow {
        ms: u64,
    },
    WhatsappError {
        code: u16,
        #[serde(default)]
        times: Option<u32>,
    },
    ReachoutTimelock {
        ms: u64,
    },
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<Fault> for FaultSpec {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Desync => FaultSpec::Desync,
            Fault::SendError {
                status,
                body,
                times,
            } => FaultSpec::SendError {
                status,
                body,
                times,
            },
            Fault::RateLimited {
                retry_after_secs,
                times,
            } => FaultSpec::RateLimited {
                retry_after_secs,
                times,
            },
            Fault::Latency(d) => FaultSpec::Latency { ms: ms(d) },
            Fault::RestartFails => FaultSpec::RestartFails,
            Fault::RestartDoesNotHeal => FaultSpec::RestartDoesNotHeal,
            Fault::StuckStarting => FaultSpec::StuckStarting,
            Fault::AcceptedNeverAcked => FaultSpec::AcceptedNeverAcked,
            Fault::AckError => FaultSpec::AckError,
            Fault::AckSlow(d) => FaultSpec::AckSlow { ms: ms(d) },
            Fault::WhatsappError { code, times } => FaultSpec::WhatsappError { code, times },
            Fault::ReachoutTimelock(d) => FaultSpec::ReachoutTimelock { ms: ms(d) },
        }
    }
}

impl TryFrom<FaultSpec> for Fault {
    type Error = String;

    fn try_from(s: FaultSpec) -> Result<Self, String> {
        let fault = match s {
            FaultSpec::Desync => Fault::Desync,
            FaultSpec::SendError {
                status,
                body,
                times,
            } => Fault::SendError {
                status,
                body,
                times,
            },
            FaultSpec::RateLimited {
                retry_after_secs,
                times,
            } => Fault::RateLimited {
                retry_after_secs,
                times,
            },
            FaultSpec::Latency { ms } => Fault::Latency(Duration::from_millis(ms)),
            FaultSpec::RestartFails => Fault::RestartFails,
            FaultSpec::RestartDoesNotHeal => Fault::RestartDoesNotHeal,
            FaultSpec::StuckStarting => Fault::StuckStarting,
            FaultSpec::AcceptedNeverAcked => Fault::AcceptedNeverAcked,
            FaultSpec::AckError => Fault::AckError,
            FaultSpec::AckSlow { ms } => Fault::AckSlow(Duration::from_millis(ms)),
            FaultSpec::WhatsappError { code, times } => Fault::WhatsappError { code, times },
            FaultSpec::ReachoutTimelock { ms } => {
                Fault::ReachoutTimelock(Duration::from_millis(ms))
            }
        };
        fault.validate()?;
        Ok(fault)
    }
}

impl Fault {
    /// Rejects faults the simulator cannot express: a send "error" must be a
    /// 4xx/5xx status.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Fault::SendError { status, .. } if !(400..=599).contains(status) => {
                Err(format!("send_error status must be 400..=599, got {status}"))
            }
            Fault::WhatsappError { code, .. } if !(100..=999).contains(code) => {
                Err(format!("whatsapp_error code must be 100..=999, got {code}"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_wire_form_round_trips_and_validates() {
        let f: Fault =
            serde_json::from_str(r#"{"fault":"send_error","status":502,"times":1}"#).unwrap();
        assert_eq!(
            f,
            Fault::SendError {
                status: 502,
                body: None,
                times: Some(1)
            }
        );
        let f: Fault = serde_json::from_str(r#"{"fault":"latency","ms":150}"#).unwrap();
        assert_eq!(f, Fault::Latency(Duration::from_millis(150)));
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"fault":"latency","ms":150}"#
        );
        assert!(serde_json::from_str::<Fault>(r#"{"fault":"send_error","status":200}"#).is_err());
        assert!(serde_json::from_str::<Fault>(r#"{"fault":"nope"}"#).is_err());
        assert!(
            serde_json::from_str::<Fault>(r#"{"fault":"latency","ms":1,"extra":true}"#).is_err()
        );
    }
}
