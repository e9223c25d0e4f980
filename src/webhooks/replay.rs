//! Replays and duplicates: the timestamp window and a bounded window of event
//! ids seen. Pure: the caller passes `now`.
//!
//! Providers retry (WAHA: any error or non-2xx, 15 attempts 2 s apart by
//! default, WAHA docs "Webhooks → retries"; Green-API: every 60 s for up to
//! 24 h, Green-API docs "Webhook Endpoint"), so a duplicate is normal and is
//! answered 2xx without acting on it again. An event whose timestamp is
//! outside `now ± window` is not acted upon either: a stale one may be a
//! replay, and one from the future means the sender's clock (or the sender)
//! cannot be trusted.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use crate::clock::Timestamp;

/// Why an event's time is not acceptable. `reason()` is a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeError {
    Stale,
    Future,
}

impl TimeError {
    pub fn reason(self) -> &'static str {
        match self {
            TimeError::Stale => "stale",
            TimeError::Future => "future",
        }
    }
}

/// Accepts `event_ms` within `window` either side of `now`.
pub fn check_time(event_ms: i64, now: Timestamp, window: Duration) -> Result<(), TimeError> {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let now_ms = now.as_millis();
    if event_ms < now_ms.saturating_sub(window_ms) {
        Err(TimeError::Stale)
    } else if event_ms > now_ms.saturating_add(window_ms) {
        Err(TimeError::Future)
    } else {
        Ok(())
    }
}

/// Event ids seen in the last `window`, at most `capacity` of them. An id
/// older than the window need not be remembered: its event is stale by then.
/// When more than `capacity` events arrive within one window the oldest ids
/// are forgotten first (memory stays bounded; a retry of such an old event
/// would be acted upon twice, which every rule tolerates: evidence for a
/// canary already concluded and a second probe are both no-ops).
#[derive(Debug)]
pub struct SeenIds {
    window: Duration,
    capacity: usize,
    order: VecDeque<(Timestamp, String)>,
    ids: HashSet<String>,
}

impl SeenIds {
    pub fn new(window: Duration, capacity: usize) -> SeenIds {
        SeenIds {
            window,
            capacity: capacity.max(1),
            order: VecDeque::new(),
            ids: HashSet::new(),
        }
    }

    /// Whether `id` was recorded within the window before `now`.
    pub fn contains(&mut self, id: &str, now: Timestamp) -> bool {
        self.expire(now);
        self.ids.contains(id)
    }

    /// Records `id` as seen at `now`.
    pub fn insert(&mut self, id: &str, now: Timestamp) {
        self.expire(now);
        if self.ids.contains(id) {
            return;
        }
        while self.order.len() >= self.capacity {
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.order.push_back((now, id.to_string()));
        self.ids.insert(id.to_string());
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn expire(&mut self, now: Timestamp) {
        let window_ms = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        let horizon = now.as_millis().saturating_sub(window_ms);
        while let Some((at, _)) = self.order.front() {
            if at.as_millis() >= horizon {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN5: Duration = Duration::from_secs(300);

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn time_window_table() {
        let now = at(1_000_000_000);
        let cases = [
            (1_000_000_000, Ok(())),
            (1_000_000_000 - 300_000, Ok(())),
            (1_000_000_000 - 300_001, Err(TimeError::Stale)),
            (1_000_000_000 + 300_000, Ok(())),
            (1_000_000_000 + 300_001, Err(TimeError::Future)),
            (0, Err(TimeError::Stale)),
            (i64::MAX, Err(TimeError::Future)),
            (i64::MIN, Err(TimeError::Stale)),
        ];
        for (event, want) in cases {
            assert_eq!(check_time(event, now, MIN5), want, "{event}");
        }
        assert_eq!(check_time(0, now, Duration::MAX), Ok(()));
    }

    #[test]
    fn ids_are_remembered_for_the_window_only() {
        let mut seen = SeenIds::new(MIN5, 10);
        assert!(!seen.contains("a", at(0)));
        seen.insert("a", at(0));
        assert!(seen.contains("a", at(1)));
        assert!(seen.contains("a", at(300_000)));
        assert!(!seen.contains("a", at(300_001)));
        assert!(seen.is_empty());
    }

    #[test]
    fn capacity_bounds_memory_oldest_first() {
        let mut seen = SeenIds::new(MIN5, 3);
        for (i, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            seen.insert(id, at(i as i64));
        }
        assert_eq!(seen.len(), 3);
        assert!(!seen.contains("a", at(5)));
        assert!(seen.contains("b", at(5)) && seen.contains("d", at(5)));
        // Re-inserting a known id does not grow or reorder.
        seen.insert("b", at(6));
        assert_eq!(seen.len(), 3);
        for i in 0..1000 {
            seen.insert(&format!("x{i}"), at(10));
        }
        assert_eq!(seen.len(), 3);
    }
}
