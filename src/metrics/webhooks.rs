//! The webhook receiver's counters. Every label value is either a configured
//! provider name (or `""` for a request to no configured provider) or one of
//! a fixed set of reasons and markers chosen by the daemon, never text the
//! sender chose, so a sender cannot grow the label set.

use super::Metrics;
use crate::webhooks::Marker;

impl Metrics {
    /// Counts a webhook request that was not acted upon; `reason` is one of
    /// the receiver's fixed reasons (`bad_signature`, `stale`, ...).
    pub fn webhook_rejected(&self, provider: &str, reason: &'static str) {
        self.webhook_rejected
            .with_label_values(&[provider, reason])
            .inc();
    }

    /// Counts an authenticated event that had nothing to do.
    pub fn webhook_ignored(&self, provider: &str, reason: &'static str) {
        self.webhook_ignored
            .with_label_values(&[provider, reason])
            .inc();
    }

    /// Counts an event refused because the queue into the scheduler was full.
    pub fn webhook_queue_dropped(&self, provider: &str) {
        self.webhook_queue_dropped
            .with_label_values(&[provider])
            .inc();
    }

    /// Counts a Green-API marker.
    pub fn webhook_marker(&self, provider: &str, marker: Marker) {
        self.webhook_markers
            .with_label_values(&[provider, marker.as_str()])
            .inc();
    }

    /// Makes a provider's marker series exist at zero (so `increase()` sees
    /// the first one).
    pub fn webhook_provider(&self, provider: &str) {
        for m in Marker::ALL {
            self.webhook_markers
                .with_label_values(&[provider, m.as_str()]);
        }
        self.webhook_queue_dropped.with_label_values(&[provider]);
    }
}
