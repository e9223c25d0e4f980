//! The simulated WAHA server's data and rules: sessions, their status
//! machine, injected faults, the call log. No I/O and no clock reads: every
//! rule takes `now`, so the HTTP layer and the control handle share one
//! behaviour and time only moves when the caller's [`Clock`] does.
//!
//! Status changes that real WAHA makes in the background (a restarted session
//! becoming `WORKING` once WhatsApp connects) are computed lazily: a starting
//! session carries the time it will be ready, and every read settles it
//! against `now` first. No timers, so a manual clock fully controls them.
//!
//! [`Clock`]: crate::clock::Clock

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::acks::{AckFault, Tracked};
pub use super::fault::Fault;
use crate::clock::Timestamp;
use crate::sim::CallRecord;

/// A WAHA session status; the complete enum of the WAHA OpenAPI 2026.7.2
/// (`SessionInfo.status`: seven values, the two `PASSKEY_*` ones newer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Stopped,
    Starting,
    ScanQrCode,
    /// Needs a person at the phone, like `SCAN_QR_CODE`.
    PasskeyRequired,
    /// Needs a person at the phone, like `SCAN_QR_CODE`.
    PasskeyConfirmationRequired,
    Working,
    Failed,
}

impl Status {
    /// The wire name (`"SCAN_QR_CODE"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Stopped => "STOPPED",
            Status::Starting => "STARTING",
            Status::ScanQrCode => "SCAN_QR_CODE",
            Status::PasskeyRequired => "PASSKEY_REQUIRED",
            Status::PasskeyConfirmationRequired => "PASSKEY_CONFIRMATION_REQUIRED",
            Status::Working => "WORKING",
            Status::Failed => "FAILED",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "STOPPED" => Ok(Status::Stopped),
            "STARTING" => Ok(Status::Starting),
            "SCAN_QR_CODE" => Ok(Status::ScanQrCode),
            "PASSKEY_REQUIRED" => Ok(Status::PasskeyRequired),
            "PASSKEY_CONFIRMATION_REQUIRED" => Ok(Status::PasskeyConfirmationRequired),
            "WORKING" => Ok(Status::Working),
            "FAILED" => Ok(Status::Failed),
            other => Err(format!("unknown waha status {other:?}")),
        }
    }
}

/// The WhatsApp engine the simulated server runs; it decides the shape of
/// the `sendText` 201 body and of the session's `engine` block (WAHA docs: Send messages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Engine {
    /// Go + whatsmeow over gRPC; the engine of issue #2084.
    #[default]
    Gows,
    /// Baileys.
    Noweb,
    /// whatsapp-web.js in a browser.
    Webjs,
}

impl Engine {
    /// The wire name (`"GOWS"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Gows => "GOWS",
            Engine::Noweb => "NOWEB",
            Engine::Webjs => "WEBJS",
        }
    }
}

/// Why a control operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no session named {0:?}")]
    UnknownSession(String),
    #[error("session {0:?} already exists")]
    SessionExists(String),
    #[error("invalid session name {0:?}: use 1-54 letters, digits, '-' or '_'")]
    InvalidName(String),
    #[error("invalid fault: {0}")]
    InvalidFault(String),
}

/// A fault that fires on the next `remaining` sends, or forever.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Armed<T> {
    spec: T,
    remaining: Option<u32>,
}

impl<T: Clone> Armed<T> {
    fn new(spec: T, times: Option<u32>) -> Option<Self> {
        // `times: Some(0)` means "never": nothing to arm.
        (times != Some(0)).then_some(Armed {
            spec,
            remaining: times,
        })
    }

    /// Fires once: returns the spec and whether the slot is now spent.
    fn fire(&mut self) -> (T, bool) {
        let spent = match &mut self.remaining {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        (self.spec.clone(), spent)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SendErrorSpec {
    pub status: u16,
    pub body: Option<String>,
}

/// Faults of one session, one slot per kind (injecting a kind replaces it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Faults {
    desync: bool,
    send_error: Option<Armed<SendErrorSpec>>,
    rate_limited: Option<Armed<Option<u64>>>,
    latency: Duration,
    restart_fails: bool,
    restart_does_not_heal: bool,
    stuck_starting: bool,
    /// Ack behaviour of new sends (`accepted_never_acked`, `ack_error`,
    /// `ack_slow`); the first two are healed by a restart like the desync.
    ack: Option<AckFault>,
    /// `sendText` answers 500 `server returned error <code>` (gRPC UNKNOWN).
    whatsapp_error: Option<Armed<u16>>,
    /// WhatsApp's reachout timelock: until when, and for how long it was set.
    timelock: Option<(Timestamp, Duration)>,
}

impl Faults {
    /// The active faults as [`Fault`] values (with the remaining counts).
    fn list(&self) -> Vec<Fault> {
        let mut out = Vec::new();
        if self.desync {
            out.push(Fault::Desync);
        }
        if let Some(a) = &self.send_error {
            out.push(Fault::SendError {
                status: a.spec.status,
                body: a.spec.body.clone(),
                times: a.remaining,
            });
        }
        if let Some(a) = &self.rate_limited {
            out.push(Fault::RateLimited {
                retry_after_secs: a.spec,
                times: a.remaining,
            });
        }
        if !self.latency.is_zero() {
            out.push(Fault::Latency(self.latency));
        }
        if self.restart_fails {
            out.push(Fault::RestartFails);
        }
        if self.restart_does_not_heal {
            out.push(Fault::RestartDoesNotHeal);
        }
        if self.stuck_starting {
            out.push(Fault::StuckStarting);
        }
        match self.ack {
            Some(AckFault::NeverAcked) => out.push(Fault::AcceptedNeverAcked),
            Some(AckFault::Error) => out.push(Fault::AckError),
            Some(AckFault::Slow(d)) => out.push(Fault::AckSlow(d)),
            None => {}
        }
        if let Some(a) = &self.whatsapp_error {
            out.push(Fault::WhatsappError {
                code: a.spec,
                times: a.remaining,
            });
        }
        if let Some((_, d)) = self.timelock {
            out.push(Fault::ReachoutTimelock(d));
        }
        out
    }
}

/// One simulated session.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// `me.id` while WORKING, e.g. `15550000001@c.us`; stable across restarts.
    pub me_id: String,
    status: Status,
    /// For a STARTING session: when it finishes starting. `None` = it stays
    /// STARTING until told otherwise (set by hand, or `StuckStarting`).
    ready_at: Option<Timestamp>,
    /// Whether the session holds WhatsApp credentials. Logout clears it; an
    /// unpaired session that finishes starting shows `pairing_status`.
    paired: bool,
    /// What an unpaired session asks for: `SCAN_QR_CODE` or a `PASSKEY_*`.
    pairing_status: Status,
    /// `timestamps.activity`: the last start, status change or send.
    pub activity: Option<Timestamp>,
    faults: Faults,
}

impl Session {
    fn new(me_id: String, now: Timestamp) -> Self {
        Session {
            me_id,
            status: Status::Working,
            ready_at: None,
            paired: true,
            pairing_status: Status::ScanQrCode,
            activity: Some(now),
            faults: Faults::default(),
        }
    }

    /// The status, after applying a start that has finished by `now`.
    fn settle(&mut self, now: Timestamp) {
        if self.status == Status::Starting
            && let Some(ready) = self.ready_at
            && now >= ready
        {
            self.status = if self.paired {
                Status::Working
            } else {
                self.pairing_status
            };
            self.ready_at = None;
            self.activity = Some(ready);
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// WAHA calls a session "running" unless it is STOPPED (FAILED still
    /// counts: `start` then says "already started", issue #2231).
    pub fn is_running(&self) -> bool {
        self.status != Status::Stopped
    }

    /// Whether the session holds WhatsApp credentials (no QR scan needed).
    pub fn paired(&self) -> bool {
        self.paired
    }

    /// When a STARTING session will be ready (`None`: not starting, or stuck).
    pub fn ready_at(&self) -> Option<Timestamp> {
        self.ready_at
    }

    pub fn restart_fails(&self) -> bool {
        self.faults.restart_fails
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.faults.list()
    }

    /// `me.reachoutTimelock` at `now`: `None` if never set, else whether it
    /// is active and when it ends (it lifts by itself).
    pub(crate) fn timelock(&self, now: Timestamp) -> Option<(bool, Timestamp)> {
        self.faults.timelock.map(|(until, _)| (now < until, until))
    }

    /// Engine `start()`: STARTING now, ready `after` later unless stuck. A
    /// fresh engine session has a fresh store, which is what heals #2084.
    fn begin_start(&mut self, now: Timestamp, after: Duration) {
        self.status = Status::Starting;
        self.ready_at = (!self.faults.stuck_starting).then(|| now.plus(after));
        self.activity = Some(now);
        if !self.faults.restart_does_not_heal {
            self.faults.desync = false;
            if matches!(
                self.faults.ack,
                Some(AckFault::NeverAcked | AckFault::Error)
            ) {
                self.faults.ack = None;
            }
        }
    }

    fn stop(&mut self, now: Timestamp) {
        self.status = Status::Stopped;
        self.ready_at = None;
        self.activity = Some(now);
    }
}

/// What `sendText` does for a session at a given moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SendDecision {
    /// No such session: 422 `Session "<name>" does not exist`.
    Unknown,
    /// Exists but is not WORKING: 422 with this status.
    NotWorking(Status),
    /// An injected send error.
    Error(SendErrorSpec),
    /// An injected 429.
    RateLimited { retry_after_secs: Option<u64> },
    /// The #2084 desync.
    Desync,
    /// WhatsApp rejected the send: `server returned error <code>` (463 is
    /// the reachout timelock, 403 a refusal).
    WhatsappError(u16),
    /// Sent; the caller builds the engine body from this.
    Sent {
        me_id: String,
        ack_fault: Option<AckFault>,
    },
}

/// A message the simulator accepted (201).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    /// Clock time of the send.
    pub at: Timestamp,
    pub session: String,
    /// `chatId` as the client sent it.
    pub chat_id: String,
    pub text: String,
    /// The serialized message id returned to the client
    /// (`true_<chat>_<ID>` for GOWS).
    pub id: String,
}

/// Everything the simulator knows, behind one mutex.
#[derive(Debug, Default)]
pub(crate) struct State {
    sessions: BTreeMap<String, Session>,
    /// Last number handed out for `me.id`; each new session gets the next.
    last_number: u64,
    pub down: bool,
    pub global_latency: Duration,
    pub calls: Vec<CallRecord>,
    pub sent: Vec<SentMessage>,
    /// Accepted messages by serialized id, for the read-back.
    pub(crate) tracked: BTreeMap<String, Tracked>,
}

/// WAHA's session name rule (WAHA OpenAPI: sessions): letters, digits, `-`, `_`, ≤ 54.
pub(crate) fn valid_session_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 54
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl State {
    pub fn add_session(&mut self, name: &str, now: Timestamp) -> Result<(), ControlError> {
        if !valid_session_name(name) {
            return Err(ControlError::InvalidName(name.to_owned()));
        }
        if self.sessions.contains_key(name) {
            return Err(ControlError::SessionExists(name.to_owned()));
        }
        self.last_number += 1;
        // 1555000xxxx: the 555 exchange is reserved for fiction.
        let me_id = format!("1555{:07}@c.us", self.last_number);
        self.sessions
            .insert(name.to_owned(), Session::new(me_id, now));
        Ok(())
    }

    /// Removes a session; `false` if there was none.
    pub fn remove_session(&mut self, name: &str) -> bool {
        self.sessions.remove(name).is_some()
    }

    /// The session, settled at `now`.
    pub fn session(&mut self, name: &str, now: Timestamp) -> Option<&Session> {
        let s = self.sessions.get_mut(name)?;
        s.settle(now);
        Some(s)
    }

    fn session_mut(&mut self, name: &str, now: Timestamp) -> Result<&mut Session, ControlError> {
        let s = self
            .sessions
            .get_mut(name)
            .ok_or_else(|| ControlError::UnknownSession(name.to_owned()))?;
        s.settle(now);
        Ok(s)
    }

    /// All sessions by name, settled at `now`.
    pub fn sessions(&mut self, now: Timestamp) -> impl Iterator<Item = (&String, &Session)> {
        for s in self.sessions.values_mut() {
            s.settle(now);
        }
        self.sessions.iter()
    }

    /// Forces a status (control API). WORKING means logged in, SCAN_QR_CODE
    /// means not; a forced STARTING stays STARTING until changed.
    pub fn set_status(
        &mut self,
        name: &str,
        status: Status,
        now: Timestamp,
    ) -> Result<(), ControlError> {
        let s = self.session_mut(name, now)?;
        s.status = status;
        s.ready_at = None;
        s.activity = Some(now);
        match status {
            Status::Working => s.paired = true,
            Status::ScanQrCode | Status::PasskeyRequired | Status::PasskeyConfirmationRequired => {
                s.paired = false;
                s.pairing_status = status;
            }
            _ => {}
        }
        Ok(())
    }

    pub fn inject(&mut self, name: &str, fault: Fault, now: Timestamp) -> Result<(), ControlError> {
        fault.validate().map_err(ControlError::InvalidFault)?;
        let f = &mut self.session_mut(name, now)?.faults;
        match fault {
            Fault::Desync => f.desync = true,
            Fault::SendError {
                status,
                body,
                times,
            } => f.send_error = Armed::new(SendErrorSpec { status, body }, times),
            Fault::RateLimited {
                retry_after_secs,
                times,
            } => f.rate_limited = Armed::new(retry_after_secs, times),
            Fault::Latency(d) => f.latency = d,
            Fault::RestartFails => f.restart_fails = true,
            Fault::RestartDoesNotHeal => f.restart_does_not_heal = true,
            Fault::StuckStarting => f.stuck_starting = true,
            Fault::AcceptedNeverAcked => f.ack = Some(AckFault::NeverAcked),
            Fault::AckError => f.ack = Some(AckFault::Error),
            Fault::AckSlow(d) => f.ack = Some(AckFault::Slow(d)),
            Fault::WhatsappError { code, times } => f.whatsapp_error = Armed::new(code, times),
            Fault::ReachoutTimelock(d) => f.timelock = Some((now.plus(d), d)),
        }
        Ok(())
    }

    /// Removes every fault of the session.
    pub fn clear(&mut self, name: &str, now: Timestamp) -> Result<(), ControlError> {
        self.session_mut(name, now)?.faults = Faults::default();
        Ok(())
    }

    /// Extra real-time delay for a request about `session` (global + session).
    pub fn latency_for(&self, session: Option<&str>) -> Duration {
        let own = session
            .and_then(|n| self.sessions.get(n))
            .map_or(Duration::ZERO, |s| s.faults.latency);
        self.global_latency.saturating_add(own)
    }

    /// Why `sendText` cannot go ahead yet (unknown or not WORKING), if so.
    /// No side effects: the send path polls it.
    pub fn send_readiness(&mut self, name: &str, now: Timestamp) -> Option<SendDecision> {
        match self.session(name, now) {
            None => Some(SendDecision::Unknown),
            Some(s) if s.status != Status::Working => Some(SendDecision::NotWorking(s.status)),
            Some(_) => None,
        }
    }

    /// `sendText` at `now`. Only a decision that reaches the faults consumes
    /// a counted fault; unknown / not-working checks have no side effect, so
    /// the caller may poll them.
    pub fn send_text(&mut self, name: &str, now: Timestamp) -> SendDecision {
        let Some(s) = self.sessions.get_mut(name) else {
            return SendDecision::Unknown;
        };
        s.settle(now);
        if s.status != Status::Working {
            return SendDecision::NotWorking(s.status);
        }
        let f = &mut s.faults;
        if let Some(armed) = &mut f.send_error {
            let (spec, spent) = armed.fire();
            if spent {
                f.send_error = None;
            }
            return SendDecision::Error(spec);
        }
        if let Some(armed) = &mut f.rate_limited {
            let (retry_after_secs, spent) = armed.fire();
            if spent {
                f.rate_limited = None;
            }
            return SendDecision::RateLimited { retry_after_secs };
        }
        if f.timelock.is_some_and(|(until, _)| now < until) {
            return SendDecision::WhatsappError(463);
        }
        if let Some(armed) = &mut f.whatsapp_error {
            let (code, spent) = armed.fire();
            if spent {
                f.whatsapp_error = None;
            }
            return SendDecision::WhatsappError(code);
        }
        if f.desync {
            return SendDecision::Desync;
        }
        s.activity = Some(now);
        SendDecision::Sent {
            me_id: s.me_id.clone(),
            ack_fault: f.ack,
        }
    }

    /// First half of a restart: the engine is stopped (WAHA then sleeps 3 s
    /// before starting it again, during which the status reads STOPPED).
    pub fn restart_stop(&mut self, name: &str, now: Timestamp) -> Result<(), ControlError> {
        self.session_mut(name, now)?.stop(now);
        Ok(())
    }

    /// Second half of a restart, or `start`: STARTING, ready `after` later.
    /// Returns the session as it is right after the start, before any
    /// settling: WAHA's reply always says STARTING, even if it is ready at once.
    pub fn start(
        &mut self,
        name: &str,
        now: Timestamp,
        after: Duration,
    ) -> Result<Session, ControlError> {
        let s = self.session_mut(name, now)?;
        s.begin_start(now, after);
        Ok(s.clone())
    }

    pub fn stop(&mut self, name: &str, now: Timestamp) -> Result<(), ControlError> {
        self.session_mut(name, now)?.stop(now);
        Ok(())
    }

    /// Logout: credentials are wiped (so a desync goes with them); a running
    /// session comes back asking for a QR scan.
    pub fn logout(&mut self, name: &str, now: Timestamp) -> Result<(), ControlError> {
        let s = self.session_mut(name, now)?;
        s.paired = false;
        s.pairing_status = Status::ScanQrCode;
        s.faults.desync = false;
        if s.is_running() {
            s.status = Status::ScanQrCode;
            s.ready_at = None;
        }
        s.activity = Some(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_000_000);

    fn state_with(names: &[&str]) -> State {
        let mut st = State::default();
        for n in names {
            st.add_session(n, T0).unwrap();
        }
        st
    }

    #[test]
    fn sessions_get_distinct_numbers_and_names_are_checked() {
        let mut st = state_with(&["a", "b"]);
        assert_eq!(st.session("a", T0).unwrap().me_id, "15550000001@c.us");
        assert_eq!(st.session("b", T0).unwrap().me_id, "15550000002@c.us");
        assert_eq!(
            st.add_session("a", T0),
            Err(ControlError::SessionExists("a".into()))
        );
        assert!(matches!(
            st.add_session("bad name", T0),
            Err(ControlError::InvalidName(_))
        ));
        assert!(matches!(
            st.add_session(&"x".repeat(55), T0),
            Err(ControlError::InvalidName(_))
        ));
    }

    #[test]
    fn restart_heals_desync_unless_told_not_to() {
        let mut st = state_with(&["a"]);
        st.inject("a", Fault::Desync, T0).unwrap();
        assert_eq!(st.send_text("a", T0), SendDecision::Desync);
        st.restart_stop("a", T0).unwrap();
        st.start("a", T0, Duration::from_secs(5)).unwrap();
        assert_eq!(
            st.send_text("a", T0.plus(Duration::from_secs(4))),
            SendDecision::NotWorking(Status::Starting)
        );
        assert!(matches!(
            st.send_text("a", T0.plus(Duration::from_secs(5))),
            SendDecision::Sent { .. }
        ));

        st.inject("a", Fault::Desync, T0).unwrap();
        st.inject("a", Fault::RestartDoesNotHeal, T0).unwrap();
        st.start("a", T0, Duration::ZERO).unwrap();
        assert_eq!(st.send_text("a", T0), SendDecision::Desync);
    }

    #[test]
    fn counted_faults_fire_exactly_n_times() {
        let mut st = state_with(&["a"]);
        st.inject(
            "a",
            Fault::RateLimited {
                retry_after_secs: Some(7),
                times: Some(2),
            },
            T0,
        )
        .unwrap();
        for _ in 0..2 {
            assert_eq!(
                st.send_text("a", T0),
                SendDecision::RateLimited {
                    retry_after_secs: Some(7)
                }
            );
        }
        assert!(matches!(st.send_text("a", T0), SendDecision::Sent { .. }));
        // times = 0 arms nothing.
        st.inject(
            "a",
            Fault::SendError {
                status: 502,
                body: None,
                times: Some(0),
            },
            T0,
        )
        .unwrap();
        assert!(st.session("a", T0).unwrap().faults().is_empty());
    }

    #[test]
    fn stuck_starting_and_logout() {
        let mut st = state_with(&["a"]);
        st.inject("a", Fault::StuckStarting, T0).unwrap();
        st.start("a", T0, Duration::from_secs(1)).unwrap();
        let later = T0.plus(Duration::from_secs(3600));
        assert_eq!(st.session("a", later).unwrap().status(), Status::Starting);

        st.clear("a", later).unwrap();
        st.logout("a", later).unwrap();
        assert_eq!(st.session("a", later).unwrap().status(), Status::ScanQrCode);
        // Unpaired: a restart ends in SCAN_QR_CODE, not WORKING.
        st.start("a", later, Duration::ZERO).unwrap();
        assert_eq!(st.session("a", later).unwrap().status(), Status::ScanQrCode);
    }
}
