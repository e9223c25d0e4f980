//! What the scheduler tells observers (the demo's printer, tests, later the
//! Alertmanager pusher) as it happens. Sent on a broadcast channel: a slow
//! observer loses old events, it never slows the scheduler down.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::machine::{Action, State};
use crate::provider::Outcome;

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A session's state changed.
    Transition {
        at: Timestamp,
        provider: String,
        session: String,
        from: State,
        to: State,
        reason: String,
    },
    /// A probe, verification canary or status poll finished.
    Probe {
        at: Timestamp,
        provider: String,
        session: String,
        action: Action,
        outcome: Outcome,
        detail: String,
        latency: Duration,
    },
    /// A restart was begun, called, or ended (`stage` is `begin`, `dry_run`,
    /// `called`, or a final result such as `healed`).
    Remediation {
        at: Timestamp,
        provider: String,
        session: String,
        stage: String,
        detail: String,
    },
    /// Discovery found a new session, or configuration added one.
    SessionAdded {
        at: Timestamp,
        provider: String,
        session: String,
    },
    /// A session is no longer watched (gone from the provider or the config).
    SessionRetired {
        at: Timestamp,
        provider: String,
        session: String,
        reason: String,
    },
    /// The provider answered (or stopped answering) its session list, or
    /// entered / left outage.
    ProviderHealth {
        at: Timestamp,
        provider: String,
        up: bool,
        outage: bool,
    },
    /// A provider pushed an incoming message carrying an error marker
    /// (Green-API `{{SWE001}}`, `{{SWE002}}`, `{{SWE003}}`); `marker` is its
    /// name (`SWE003`), as in `wa_watchdog_webhook_markers_total`.
    WebhookMarker {
        at: Timestamp,
        provider: String,
        session: String,
        marker: &'static str,
    },
}

impl Event {
    pub fn session(&self) -> Option<(&str, &str)> {
        match self {
            Event::Transition {
                provider, session, ..
            }
            | Event::Probe {
                provider, session, ..
            }
            | Event::Remediation {
                provider, session, ..
            }
            | Event::SessionAdded {
                provider, session, ..
            }
            | Event::SessionRetired {
                provider, session, ..
            }
            | Event::WebhookMarker {
                provider, session, ..
            } => Some((provider, session)),
            Event::ProviderHealth { .. } => None,
        }
    }
}
