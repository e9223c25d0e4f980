//! The systemd service contract (`systemd/wa-watchdog.service`,
//! `Type=notify`): `READY=1` once the store is open and the first schedule
//! is loaded, `WATCHDOG=1` from the scheduler loop itself, a one-line
//! `STATUS=`, and `RELOADING=1` / `STOPPING=1` around reload and shutdown.
//!
//! Owns: [`Notifier`] and the status line. Must not: do anything when
//! `NOTIFY_SOCKET` is unset (the daemon runs the same outside systemd), or
//! ping the watchdog from anywhere but the scheduler loop's beat — a stalled
//! loop must stop the pings so that systemd kills and restarts the process.
//!
//! Datagrams go through the `sd-notify` crate, which reads `NOTIFY_SOCKET`
//! at each call; `WATCHDOG_USEC`/`WATCHDOG_PID` are read once, at start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::Instant;

use crate::machine::State;
use crate::scheduler::HEARTBEAT;

/// Talks to the service manager. Cheap to clone; all clones share state.
#[derive(Clone, Debug)]
pub struct Notifier {
    /// None: not under systemd (`NOTIFY_SOCKET` unset): every call is a no-op.
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    sink: Sink,
    /// How often to ping: half of `WATCHDOG_USEC`, None when the watchdog is off.
    ping_every: Option<Duration>,
    state: Mutex<BeatState>,
}

#[derive(Debug, Default)]
struct BeatState {
    last_ping: Option<Instant>,
    /// The last `STATUS=` sent, so an unchanged status is not re-sent.
    status: String,
    /// A send failed before: later failures are logged at debug only.
    failed: bool,
}

#[derive(Debug)]
enum Sink {
    /// The real socket in `NOTIFY_SOCKET`.
    Systemd,
    /// Tests: the messages, one string per datagram.
    Memory(Arc<Mutex<Vec<String>>>),
}

impl Notifier {
    /// From the environment systemd sets: `NOTIFY_SOCKET`, and for the
    /// watchdog `WATCHDOG_USEC` (+ `WATCHDOG_PID`, which must be ours).
    pub fn from_env() -> Notifier {
        if std::env::var_os("NOTIFY_SOCKET").is_none_or(|s| s.is_empty()) {
            return Notifier::disabled();
        }
        let watchdog = sd_notify::watchdog_enabled();
        if let Some(usec) = watchdog
            && usec < HEARTBEAT * 2
        {
            tracing::warn!(
                watchdog_usec = usec.as_micros() as u64,
                "WatchdogSec= is shorter than two scheduler beats ({}s); the watchdog may kill a healthy daemon",
                (HEARTBEAT * 2).as_secs()
            );
        }
        Notifier::with_sink(Sink::Systemd, watchdog)
    }

    /// A notifier that never sends anything.
    pub fn disabled() -> Notifier {
        Notifier { inner: None }
    }

    /// A notifier that records every datagram instead of sending it (tests).
    /// `watchdog` is what `WATCHDOG_USEC` would say.
    pub fn recording(watchdog: Option<Duration>) -> (Notifier, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        (
            Notifier::with_sink(Sink::Memory(log.clone()), watchdog),
            log,
        )
    }

    fn with_sink(sink: Sink, watchdog: Option<Duration>) -> Notifier {
        Notifier {
            inner: Some(Arc::new(Inner {
                sink,
                ping_every: watchdog.map(|w| w / 2),
                state: Mutex::new(BeatState::default()),
            })),
        }
    }

    /// Whether anything is sent at all.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// How often the loop's beat pings the watchdog (half of `WATCHDOG_USEC`).
    pub fn ping_every(&self) -> Option<Duration> {
        self.inner.as_ref().and_then(|i| i.ping_every)
    }

    /// `READY=1` with the current status: the daemon is up (start-up), or
    /// a reload is over (whether or not it was applied).
    pub fn ready(&self, status: &str) {
        let Some(inner) = &self.inner else { return };
        let mut st = inner.lock();
        st.status = status.to_string();
        drop(st);
        inner.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1` (with `MONOTONIC_USEC`, which `Type=notify-reload`
    /// needs on newer systemd and older versions ignore).
    pub fn reloading(&self) {
        let Some(inner) = &self.inner else { return };
        match NotifyState::monotonic_usec_now() {
            Ok(now) => inner.send(&[NotifyState::Reloading, now]),
            Err(_) => inner.send(&[NotifyState::Reloading]),
        }
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        let Some(inner) = &self.inner else { return };
        inner.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Called by the scheduler loop on every beat: pings the watchdog when
    /// half its period has passed and sends `STATUS=` when the summary changed.
    pub fn beat(&self, summary: &BTreeMap<State, usize>) {
        let Some(inner) = &self.inner else { return };
        let status = status_line(summary);
        let now = Instant::now();
        let mut st = inner.lock();
        // Beats come every HEARTBEAT; ping when the next beat would be late,
        // so a half period of exactly one beat pings on every beat.
        let ping = inner.ping_every.is_some_and(|every| {
            st.last_ping
                .is_none_or(|last| now.duration_since(last) + HEARTBEAT / 2 >= every)
        });
        if ping {
            st.last_ping = Some(now);
        }
        let status_changed = st.status != status;
        if status_changed {
            st.status = status.clone();
        }
        drop(st);
        let mut msg: Vec<NotifyState<'_>> = Vec::with_capacity(2);
        if ping {
            msg.push(NotifyState::Watchdog);
        }
        if status_changed {
            msg.push(NotifyState::Status(&status));
        }
        if !msg.is_empty() {
            inner.send(&msg);
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, BeatState> {
        // A panic while holding this lock cannot leave BeatState invalid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        match &self.sink {
            Sink::Memory(log) => {
                let text: String = states.iter().map(|s| format!("{s}\n")).collect();
                log.lock().unwrap_or_else(|e| e.into_inner()).push(text);
            }
            Sink::Systemd => {
                if let Err(e) = sd_notify::notify(states) {
                    let mut st = self.lock();
                    if st.failed {
                        tracing::debug!(error = %e, "cannot notify systemd");
                    } else {
                        st.failed = true;
                        tracing::warn!(error = %e, "cannot notify systemd through NOTIFY_SOCKET");
                    }
                }
            }
        }
    }
}

/// The one-line summary for `STATUS=`: `"41 healthy, 1 restarting, 2 need a
/// human"`: healthy first, then the other states in the machine's order
/// when non-zero, and the states that need a person counted together last.
pub fn status_line(summary: &BTreeMap<State, usize>) -> String {
    let total: usize = summary.values().sum();
    if total == 0 {
        return "no sessions watched".to_string();
    }
    let count = |state: State| summary.get(&state).copied().unwrap_or(0);
    let mut parts = vec![format!("{} healthy", count(State::Healthy))];
    let mut human = 0;
    for state in State::ALL {
        let n = count(state);
        if state.needs_human() {
            human += n;
        } else if n > 0 && state != State::Healthy {
            parts.push(format!("{n} {}", state.as_str()));
        }
    }
    if human > 0 {
        parts.push(format!(
            "{human} need{} a human",
            if human == 1 { "s" } else { "" }
        ));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(pairs: &[(State, usize)]) -> BTreeMap<State, usize> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn status_line_counts_states_and_groups_those_that_need_a_human() {
        assert_eq!(status_line(&summary(&[])), "no sessions watched");
        assert_eq!(
            status_line(&summary(&[
                (State::Healthy, 41),
                (State::Restarting, 1),
                (State::Escalated, 1),
                (State::NeedsPairing, 1),
            ])),
            "41 healthy, 1 restarting, 2 need a human"
        );
        assert_eq!(
            status_line(&summary(&[(State::Paused, 2), (State::Blocked, 1)])),
            "0 healthy, 2 paused, 1 needs a human"
        );
        assert_eq!(
            status_line(&summary(&[(State::Healthy, 3), (State::Unknown, 0)])),
            "3 healthy"
        );
    }

    #[test]
    fn a_disabled_notifier_does_nothing() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        n.ready("x");
        n.reloading();
        n.beat(&summary(&[(State::Healthy, 1)]));
        n.stopping();
        assert_eq!(n.ping_every(), None);
    }

    fn drain(log: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        std::mem::take(&mut *log.lock().expect("log"))
    }

    /// Pure timer logic: tokio's paused clock moves `Instant::now()`.
    #[tokio::test(start_paused = true)]
    async fn watchdog_pings_at_half_the_period_and_status_only_on_change() {
        let (n, log) = Notifier::recording(Some(Duration::from_secs(10)));
        assert_eq!(n.ping_every(), Some(Duration::from_secs(5)));
        let healthy = summary(&[(State::Healthy, 2)]);
        n.ready(&status_line(&healthy));
        assert_eq!(drain(&log), ["READY=1\nSTATUS=2 healthy\n"]);

        // Beats every second, as the scheduler loop does.
        let mut pings = Vec::new();
        for second in 0..=20u64 {
            n.beat(&healthy);
            for m in drain(&log) {
                assert_eq!(m, "WATCHDOG=1\n", "at {second}s");
                pings.push(second);
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(pings, [0, 5, 10, 15, 20]);

        // A change of the summary is sent once.
        let degraded = summary(&[(State::Healthy, 1), (State::Desynced, 1)]);
        n.beat(&degraded);
        n.beat(&degraded);
        assert_eq!(drain(&log), ["STATUS=1 healthy, 1 desynced\n"]);

        n.reloading();
        n.stopping();
        let rest = drain(&log);
        assert!(
            rest[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{rest:?}"
        );
        assert_eq!(rest[1], "STOPPING=1\nSTATUS=stopping\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_two_second_watchdog_is_pinged_on_every_beat() {
        let (n, log) = Notifier::recording(Some(Duration::from_secs(2)));
        let s = summary(&[(State::Healthy, 1)]);
        n.ready(&status_line(&s));
        drain(&log);
        for _ in 0..5 {
            n.beat(&s);
            assert_eq!(drain(&log), ["WATCHDOG=1\n"]);
            // A beat that comes a little early still pings.
            tokio::time::advance(Duration::from_millis(990)).await;
        }
        // Without a watchdog, beats send nothing while the status stays.
        let (n, log) = Notifier::recording(None);
        n.ready("1 healthy");
        drain(&log);
        n.beat(&s);
        assert!(drain(&log).is_empty());
    }
}
