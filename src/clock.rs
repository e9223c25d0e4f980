//! Time for the daemon: a wall-clock [`Timestamp`] in unix milliseconds and a
//! [`Clock`] that is either the system clock or a manual clock driven by tests
//! and the simulator.
//!
//! Why a manual clock and not only tokio's paused clock: tokio auto-advances a
//! paused clock to the next timer whenever the runtime is idle, and it is idle
//! while it waits for sqlx's SQLite worker thread or for loopback I/O. A probe
//! that waits for a database write would then see time leap forward by a whole
//! request timeout. The pure logic therefore never reads a clock at all (time is
//! an argument), and the I/O shell reads this [`Clock`], which tests move by hand.
//! tokio's paused clock is still used where nothing but timers is involved.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A point in time: milliseconds since the unix epoch, UTC. Stored as such in
/// the database (one choice throughout).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// `self - d`, saturating.
    pub fn minus(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// RFC 3339 text in UTC with millisecond precision, for humans and JSON.
    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(self.0) {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => format!("@{}ms", self.0),
        }
    }

    /// Seconds since the epoch as a float (Prometheus timestamps).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Where "now" comes from.
#[derive(Clone)]
pub enum Clock {
    /// The system's wall clock; waits use tokio timers.
    System,
    /// A clock that only moves when [`Clock::advance`] or [`Clock::set`] is called.
    Manual(ManualClock),
}

#[derive(Clone)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
    changed: Arc<watch::Sender<i64>>,
}

impl Clock {
    pub fn system() -> Self {
        Clock::System
    }

    /// A manual clock starting at `start`.
    pub fn manual(start: Timestamp) -> Self {
        let (tx, _rx) = watch::channel(start.0);
        Clock::Manual(ManualClock {
            now: Arc::new(AtomicI64::new(start.0)),
            changed: Arc::new(tx),
        })
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp(chrono::Utc::now().timestamp_millis()),
            Clock::Manual(m) => Timestamp(m.now.load(Ordering::SeqCst)),
        }
    }

    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }

    /// Moves a manual clock forward; a no-op on the system clock.
    pub fn advance(&self, d: Duration) {
        if let Clock::Manual(m) = self {
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            let new = m.now.fetch_add(ms, Ordering::SeqCst).saturating_add(ms);
            m.changed.send_replace(new);
        }
    }

    /// Sets a manual clock; a no-op on the system clock.
    pub fn set(&self, t: Timestamp) {
        if let Clock::Manual(m) = self {
            m.now.store(t.0, Ordering::SeqCst);
            m.changed.send_replace(t.0);
        }
    }

    /// Waits until the clock reads `deadline` or later.
    pub async fn sleep_until(&self, deadline: Timestamp) {
        match self {
            Clock::System => {
                let now = self.now();
                if deadline > now {
                    tokio::time::sleep(deadline.since(now)).await;
                }
            }
            Clock::Manual(m) => {
                let mut rx = m.changed.subscribe();
                while m.now.load(Ordering::SeqCst) < deadline.0 {
                    if rx.changed().await.is_err() {
                        // The sender lives as long as the clock; if it is gone, nothing
                        // will ever move the clock again.
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    /// Waits for `d` on this clock.
    pub async fn sleep(&self, d: Duration) {
        let deadline = self.now().plus(d);
        self.sleep_until(deadline).await;
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clock::System => f.write_str("Clock::System"),
            Clock::Manual(_) => write!(f, "Clock::Manual({:?})", self.now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_arithmetic_saturates_and_formats() {
        let t = Timestamp::from_millis(1_000);
        assert_eq!(t.plus(Duration::from_millis(500)).as_millis(), 1_500);
        assert_eq!(t.minus(Duration::from_secs(2)).as_millis(), -1_000);
        assert_eq!(t.since(Timestamp(2_000)), Duration::ZERO);
        assert_eq!(Timestamp(2_500).since(t), Duration::from_millis(1_500));
        assert_eq!(
            Timestamp(i64::MAX).plus(Duration::from_secs(1)).as_millis(),
            i64::MAX
        );
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
    }

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_advanced() {
        let clock = Clock::manual(Timestamp(0));
        let c2 = clock.clone();
        let sleeper = tokio::spawn(async move {
            c2.sleep(Duration::from_secs(10)).await;
            c2.now()
        });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(4));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(6));
        let woke_at = sleeper.await.expect("sleeper task");
        assert_eq!(woke_at, Timestamp(10_000));
    }
}
