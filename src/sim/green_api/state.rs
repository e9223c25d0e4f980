//! The simulated instances' data and rules: the linked state, the queue and
//! message modes, the messages an instance accepted, and what time does to
//! them (a reboot's `starting` phase ending, queued messages leaving). No I/O
//! and no clock reads: every rule takes `now`, and the server and the control
//! handle settle an instance before they look at it.
//!
//! Also the public views of that data: [`InstanceSnapshot`], [`SimMessage`],
//! and [`ControlError`] for control calls that cannot be applied.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::faults::{BodyForm, Injection};
use super::journal::{MessageFate, NotFoundForm, leave_status};
use super::request::ApiMethod;
use crate::clock::Timestamp;

/// `getStateInstance` values (Green-API docs: getStateInstance), plus the JSON `null` of a new instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimState {
    NotAuthorized,
    Authorized,
    Blocked,
    SleepMode,
    Starting,
    YellowCard,
    /// `getStateInstance` answers JSON `null` (Green-API partner docs: createInstance).
    Provisioning,
}

impl SimState {
    pub const ALL: [SimState; 7] = [
        SimState::NotAuthorized,
        SimState::Authorized,
        SimState::Blocked,
        SimState::SleepMode,
        SimState::Starting,
        SimState::YellowCard,
        SimState::Provisioning,
    ];

    /// The wire value; None for [`SimState::Provisioning`] (JSON `null`).
    pub fn wire(self) -> Option<&'static str> {
        match self {
            SimState::NotAuthorized => Some("notAuthorized"),
            SimState::Authorized => Some("authorized"),
            SimState::Blocked => Some("blocked"),
            SimState::SleepMode => Some("sleepMode"),
            SimState::Starting => Some("starting"),
            SimState::YellowCard => Some("yellowCard"),
            SimState::Provisioning => None,
        }
    }

    /// Parses a wire value; `None` (JSON null) is [`SimState::Provisioning`].
    pub fn from_wire(value: Option<&str>) -> Option<SimState> {
        match value {
            None => Some(SimState::Provisioning),
            Some(v) => SimState::ALL
                .into_iter()
                .find(|s| s.wire().is_some_and(|w| w.eq_ignore_ascii_case(v))),
        }
    }
}

/// What happens to messages that `sendMessage` accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueMode {
    /// They leave the queue `queue_drain_after` after being queued, once the
    /// instance is `authorized`.
    Drains,
    /// They stay in the queue forever (ISS-42, ISS-791, ISS-1084).
    NeverDrains,
    /// They stay in the queue until the next `reboot`, which the vendor
    /// recommends for a stuck queue (ISS-42, ISS-227): afterwards the queue
    /// drains again, the stuck messages included.
    StuckUntilReboot,
    /// The yellow card (Green-API docs): 200 + idMessage, never queued, never sent.
    SilentDrop,
}

/// What `sendMessage` does when the instance is `starting`, `notAuthorized`
/// or still provisioning (not documented by the vendor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendWhenNotReady {
    /// 200 + idMessage; the message waits in the queue (Green-API docs: sendMessage, message tracking).
    Queue,
    /// 400 `instance in starting process try later` / `instance account not authorized` (Green-API docs: Common errors).
    Reject,
}

/// What became of a message `sendMessage` accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Queued,
    /// Left the queue.
    Sent,
    /// Accepted and silently dropped ([`QueueMode::SilentDrop`]).
    Dropped,
    /// Removed by `clearMessagesQueue`.
    Cleared,
    /// Left the queue as `failed` ([`MessageFate::LeavesFailed`]).
    ///
    /// [`MessageFate::LeavesFailed`]: super::journal::MessageFate::LeavesFailed
    Failed,
    /// Left the queue as `noAccount` ([`MessageFate::NoAccount`]).
    ///
    /// [`MessageFate::NoAccount`]: super::journal::MessageFate::NoAccount
    NoAccount,
}

/// A message the simulator accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimMessage {
    pub id_message: String,
    pub chat_id: String,
    pub text: String,
    pub status: MessageStatus,
    pub queued_at: Timestamp,
    /// When the simulator noticed it left the queue (sent, dropped, cleared).
    pub done_at: Option<Timestamp>,
}

/// An instance as the control API shows it (no token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSnapshot {
    pub id: String,
    pub wid: String,
    /// The linked state (null = provisioning), what a reboot returns to.
    pub state: Option<String>,
    /// What `getStateInstance` answers now.
    pub effective_state: Option<String>,
    /// End of the current reboot's `starting` phase.
    pub starting_until: Option<Timestamp>,
    pub queue_mode: QueueMode,
    pub send_when_not_ready: SendWhenNotReady,
    pub error_form: BodyForm,
    pub rate_limits: bool,
    pub queued: usize,
    pub faults_pending: u32,
    pub fate: MessageFate,
}

/// Why a control call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no instance `{0}`")]
    UnknownInstance(String),
    #[error("invalid control request: {0}")]
    Invalid(String),
}

pub(super) struct Inst {
    pub(super) token: String,
    pub(super) wid: String,
    pub(super) state: SimState,
    pub(super) starting_until: Option<Timestamp>,
    pub(super) queue_mode: QueueMode,
    pub(super) send_when_not_ready: SendWhenNotReady,
    pub(super) error_form: BodyForm,
    pub(super) rate_limits: bool,
    /// Accepted requests per method in the last second (only with `rate_limits`).
    pub(super) recent: BTreeMap<ApiMethod, Vec<Timestamp>>,
    pub(super) injections: Vec<Injection>,
    /// Real-time delay per method (None key: every method).
    pub(super) latency: BTreeMap<Option<ApiMethod>, Duration>,
    pub(super) messages: Vec<SimMessage>,
    /// The original `sendMessage` bodies, by idMessage (showMessagesQueue echoes them).
    pub(super) bodies: BTreeMap<String, Value>,
    /// What messages become when they leave the queue.
    pub(super) fate: MessageFate,
    /// How getMessage answers an id not in the journal.
    pub(super) not_found_form: NotFoundForm,
}

impl Inst {
    pub(super) fn effective(&self, now: Timestamp) -> SimState {
        match self.starting_until {
            Some(until) if now < until => SimState::Starting,
            _ => self.state,
        }
    }

    /// Applies what time has done since the last look.
    pub(super) fn settle(&mut self, now: Timestamp, drain_after: Duration) {
        if self.starting_until.is_some_and(|u| now >= u) {
            self.starting_until = None;
        }
        if self.queue_mode != QueueMode::Drains || self.effective(now) != SimState::Authorized {
            return;
        }
        let leave = leave_status(self.fate);
        for m in &mut self.messages {
            if m.status == MessageStatus::Queued && now >= m.queued_at.plus(drain_after) {
                m.status = leave;
                m.done_at = Some(now);
            }
        }
    }

    pub(super) fn reboot(&mut self, now: Timestamp, starting_for: Duration) {
        self.starting_until = Some(now.plus(starting_for));
        if self.queue_mode == QueueMode::StuckUntilReboot {
            // Stuck messages leave once the instance is authorized again.
            self.queue_mode = QueueMode::Drains;
        }
        if self.fate == MessageFate::LeavesFailed {
            self.fate = MessageFate::Sent;
        }
    }

    pub(super) fn snapshot(&self, id: &str, now: Timestamp) -> InstanceSnapshot {
        InstanceSnapshot {
            id: id.to_string(),
            wid: self.wid.clone(),
            state: self.state.wire().map(str::to_string),
            effective_state: self.effective(now).wire().map(str::to_string),
            starting_until: self.starting_until,
            queue_mode: self.queue_mode,
            send_when_not_ready: self.send_when_not_ready,
            error_form: self.error_form,
            rate_limits: self.rate_limits,
            queued: self
                .messages
                .iter()
                .filter(|m| m.status == MessageStatus::Queued)
                .count(),
            faults_pending: self.injections.iter().map(|i| i.remaining).sum(),
            fate: self.fate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_the_wire_form() {
        for s in SimState::ALL {
            assert_eq!(SimState::from_wire(s.wire()), Some(s));
        }
        assert_eq!(SimState::from_wire(Some("pendingCode")), None);
    }
}
