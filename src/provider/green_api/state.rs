//! [`InstanceState`]: the state of an instance as `getStateInstance` reports
//! it (Green-API docs: getStateInstance), its parser (tolerant of casing, `null` and values
//! this version does not know) and the [`Outcome`] each state means.

use serde_json::Value;

use crate::provider::http;
use crate::provider::{BlockKind, NotReadyKind, Outcome};

/// The state of an instance as `getStateInstance` reports it (Green-API docs: getStateInstance).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum InstanceState {
    Authorized,
    NotAuthorized,
    Blocked,
    SleepMode,
    Starting,
    YellowCard,
    /// The body was JSON `null` (or `stateInstance` was null): the instance
    /// is still being created (Green-API partner docs: createInstance).
    Provisioning,
    /// A value this version does not know, as sent.
    Unknown(String),
}

impl InstanceState {
    /// Parses the wire value (`authorized`, `notAuthorized`, ...). Matching
    /// ignores case: the vendor has changed casing elsewhere (Green-API docs: API URL).
    pub fn from_wire(value: &str) -> InstanceState {
        const KNOWN: [(&str, InstanceState); 6] = [
            ("authorized", InstanceState::Authorized),
            ("notAuthorized", InstanceState::NotAuthorized),
            ("blocked", InstanceState::Blocked),
            ("sleepMode", InstanceState::SleepMode),
            ("starting", InstanceState::Starting),
            ("yellowCard", InstanceState::YellowCard),
        ];
        KNOWN
            .into_iter()
            .find(|(wire, _)| wire.eq_ignore_ascii_case(value.trim()))
            .map(|(_, s)| s)
            .unwrap_or_else(|| InstanceState::Unknown(http::short(value)))
    }

    /// Parses a `getStateInstance` body: `{"stateInstance": "..."}` or `null`.
    /// None when the body has neither shape.
    pub fn from_json(body: &Value) -> Option<InstanceState> {
        match body {
            Value::Null => Some(InstanceState::Provisioning),
            Value::Object(o) => match o.get("stateInstance")? {
                Value::Null => Some(InstanceState::Provisioning),
                Value::String(s) => Some(InstanceState::from_wire(s)),
                _ => None,
            },
            _ => None,
        }
    }

    /// The wire value; `null` for [`InstanceState::Provisioning`].
    pub fn as_str(&self) -> &str {
        match self {
            InstanceState::Authorized => "authorized",
            InstanceState::NotAuthorized => "notAuthorized",
            InstanceState::Blocked => "blocked",
            InstanceState::SleepMode => "sleepMode",
            InstanceState::Starting => "starting",
            InstanceState::YellowCard => "yellowCard",
            InstanceState::Provisioning => "null",
            InstanceState::Unknown(s) => s,
        }
    }

    /// None when the instance is healthy (`authorized`), else the outcome the
    /// state means. Note `authorized` proves little (Green-API issue tracker: authorized
    /// instances whose messages never leave the queue): the
    /// canary and its trip through the queue are the real test.
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            InstanceState::Authorized => None,
            InstanceState::NotAuthorized => Some(Outcome::NeedsPairing),
            InstanceState::Blocked => Some(Outcome::Blocked(BlockKind::Banned)),
            InstanceState::YellowCard => Some(Outcome::Blocked(BlockKind::YellowCard)),
            InstanceState::SleepMode => Some(Outcome::NotReady(NotReadyKind::Sleeping)),
            InstanceState::Starting => Some(Outcome::NotReady(NotReadyKind::Starting)),
            InstanceState::Provisioning => Some(Outcome::NotReady(NotReadyKind::Provisioning)),
            InstanceState::Unknown(_) => Some(Outcome::NotReady(NotReadyKind::Unrecognised)),
        }
    }
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
