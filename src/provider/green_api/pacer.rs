//! Per-method pacing: [`Pacer`] spaces requests so the client stays under
//! Green-API's per-instance rate limits (Green-API docs: request frequency) by waiting instead
//! of failing; `Pacers` holds one per rate-limited method of an instance.

use std::time::Duration;

use tokio::time::Instant;

use super::Call;

/// Green-API allows 1 request/s per instance for each method we read with
/// (Green-API docs: request frequency); exceeding it gives a 429 for the whole instance. The
/// pacer spaces departures, and network jitter can bring two arrivals closer
/// than that, so the default keeps a 10 % margin.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_millis(1_100);

/// An async "at most one permit per `min_interval`" gate. Callers wait for
/// their turn instead of failing; permits are granted in arrival order.
#[derive(Debug)]
pub struct Pacer {
    min_interval: Duration,
    /// When the next permit may be granted (None: now).
    next: tokio::sync::Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn new(min_interval: Duration) -> Self {
        Pacer {
            min_interval,
            next: tokio::sync::Mutex::new(None),
        }
    }

    /// Waits for a permit and returns the instant it was granted for. A
    /// caller cancelled while waiting still used its slot (conservative).
    pub async fn acquire(&self) -> Instant {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = match *next {
                Some(n) if n > now => n,
                _ => now,
            };
            *next = Some(at + self.min_interval);
            at
        };
        tokio::time::sleep_until(at).await;
        at
    }
}

/// One [`Pacer`] per rate-limited method of one instance. `sendMessage` is
/// allowed 50/s (same page) and a canary sends one message: not paced.
#[derive(Debug)]
pub(super) struct Pacers {
    state: Pacer,
    settings: Pacer,
    queue: Pacer,
    /// `getMessage` (10/s documented) is paced like the other journal calls.
    message: Pacer,
    reboot: Pacer,
    /// `lastIncomingMessages` (1/s documented).
    incoming: Pacer,
}

impl Pacers {
    pub(super) fn new(min_interval: Duration) -> Self {
        Pacers {
            state: Pacer::new(min_interval),
            settings: Pacer::new(min_interval),
            queue: Pacer::new(min_interval),
            message: Pacer::new(min_interval),
            reboot: Pacer::new(min_interval),
            incoming: Pacer::new(min_interval),
        }
    }

    pub(super) fn get(&self, call: Call) -> Option<&Pacer> {
        match call {
            Call::State => Some(&self.state),
            Call::Settings => Some(&self.settings),
            Call::Queue => Some(&self.queue),
            Call::Message => Some(&self.message),
            Call::Reboot => Some(&self.reboot),
            Call::Incoming => Some(&self.incoming),
            Call::Send => None,
        }
    }
}
