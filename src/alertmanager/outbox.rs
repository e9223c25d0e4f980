//! The push bookkeeping, without I/O: which alerts are active, which need
//! (re)sending with which `endsAt`, which resolutions are still owed, and
//! the alerts as Alertmanager's v2 API takes them ([`PostableAlert`]).
//!
//! What it owns: [`Outbox`] and [`Batch`]. What it must not do: send
//! anything, read a clock (the instant is an argument), or decide what
//! fires (the model does).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::model::{Firing, Key};
use super::{ENDS_AT_INTERVALS, Holds, MAX_RESOLVING, RETRY_AFTER};
use crate::clock::Timestamp;

/// One alert as Alertmanager's `POST /api/v2/alerts` takes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// Fills `{{ $labels.provider }}` and `{{ $labels.session }}`.
fn render(template: &str, provider: &str, session: Option<&str>) -> String {
    template
        .replace("{{ $labels.provider }}", provider)
        .replace("{{ $labels.session }}", session.unwrap_or(""))
}

/// A firing alert being kept alive in Alertmanager.
#[derive(Clone, Debug)]
struct Active {
    firing: Firing,
    last_sent: Option<Timestamp>,
    /// When its condition stopped holding (it stays for `keep_firing_for`).
    cleared_at: Option<Timestamp>,
}

/// The push bookkeeping, without I/O: which alerts are active, which need
/// (re)sending, which resolutions are owed.
#[derive(Debug)]
pub struct Outbox {
    resend: Duration,
    holds: Holds,
    /// Base of `generatorURL`: `http://<daemon listen address>`.
    generator_base: String,
    active: BTreeMap<Key, Active>,
    /// Cleared alerts whose resolution Alertmanager has not acknowledged yet.
    resolving: BTreeMap<Key, (Firing, Timestamp)>,
    /// No push before this (after a failure).
    retry_at: Option<Timestamp>,
}

/// A batch to post, and what to mark when it went through.
#[derive(Debug, Default)]
pub struct Batch {
    pub alerts: Vec<PostableAlert>,
    firing: Vec<Key>,
    resolved: Vec<Key>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }
}

impl Outbox {
    pub fn new(resend: Duration, holds: Holds, generator_base: String) -> Outbox {
        Outbox {
            resend: resend.max(Duration::from_secs(1)),
            holds,
            generator_base,
            active: BTreeMap::new(),
            resolving: BTreeMap::new(),
            retry_at: None,
        }
    }

    /// Names of the alerts currently kept firing, with their labels
    /// `(alertname, provider, session)`.
    pub fn active(&self) -> Vec<(String, String, String)> {
        self.active
            .keys()
            .map(|(n, p, s)| (n.to_string(), p.clone(), s.clone()))
            .collect()
    }

    /// Takes the alerts firing at `now` and returns what to post: new ones,
    /// firing ones due for a re-send, and resolutions.
    pub fn plan(&mut self, now: Timestamp, firing: Vec<Firing>) -> Batch {
        let mut seen = std::collections::BTreeSet::new();
        for f in firing {
            let key = f.key();
            seen.insert(key.clone());
            self.resolving.remove(&key);
            match self.active.get_mut(&key) {
                Some(a) => {
                    a.cleared_at = None;
                    a.firing.since = a.firing.since.min(f.since);
                }
                None => {
                    self.active.insert(
                        key,
                        Active {
                            firing: f,
                            last_sent: None,
                            cleared_at: None,
                        },
                    );
                }
            }
        }
        let mut ended = Vec::new();
        for (key, a) in self.active.iter_mut() {
            if seen.contains(key) {
                continue;
            }
            let cleared = *a.cleared_at.get_or_insert(now);
            if now.since(cleared) >= self.holds.apply(a.firing.rule.keep_firing_for) {
                ended.push(key.clone());
            }
        }
        for key in ended {
            if let Some(a) = self.active.remove(&key) {
                self.resolving.insert(key, (a.firing, now));
            }
        }
        while self.resolving.len() > MAX_RESOLVING {
            let oldest = self
                .resolving
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.resolving.remove(&k);
                }
                None => break,
            }
        }

        let mut batch = Batch::default();
        if self.retry_at.is_some_and(|t| now < t) {
            return batch;
        }
        let ends_firing = now.plus(self.resend.saturating_mul(ENDS_AT_INTERVALS));
        for (key, a) in &self.active {
            let due = a.last_sent.is_none_or(|t| now.since(t) >= self.resend);
            if due {
                batch.alerts.push(self.postable(&a.firing, ends_firing));
                batch.firing.push(key.clone());
            }
        }
        for (key, (f, at)) in &self.resolving {
            batch.alerts.push(self.postable(f, *at));
            batch.resolved.push(key.clone());
        }
        batch
    }

    /// Records how the post of `batch` went.
    pub fn sent(&mut self, now: Timestamp, batch: Batch, ok: bool) {
        if !ok {
            self.retry_at = Some(now.plus(RETRY_AFTER.min(self.resend)));
            return;
        }
        self.retry_at = None;
        for key in batch.firing {
            if let Some(a) = self.active.get_mut(&key) {
                a.last_sent = Some(now);
            }
        }
        for key in batch.resolved {
            self.resolving.remove(&key);
        }
    }

    fn postable(&self, f: &Firing, ends_at: Timestamp) -> PostableAlert {
        let rule = f.rule;
        let session = f.session.as_deref();
        let mut labels = BTreeMap::from([
            ("alertname".to_string(), rule.name.to_string()),
            ("severity".to_string(), rule.severity.to_string()),
            ("scope".to_string(), rule.scope.as_str().to_string()),
            ("provider".to_string(), f.provider.clone()),
        ]);
        if let Some(s) = session {
            labels.insert("session".to_string(), s.to_string());
        }
        let annotations = BTreeMap::from([
            (
                "summary".to_string(),
                render(rule.summary, &f.provider, session),
            ),
            (
                "description".to_string(),
                render(rule.description, &f.provider, session),
            ),
            (
                "runbook".to_string(),
                format!("docs/runbook.md#{}", rule.runbook),
            ),
        ]);
        let generator_url = match session {
            Some(s) => format!(
                "{}/api/v1/sessions/{}/{}",
                self.generator_base,
                path_segment(&f.provider),
                path_segment(s)
            ),
            None => format!("{}/api/v1/sessions", self.generator_base),
        };
        PostableAlert {
            labels,
            annotations,
            starts_at: f.since.to_rfc3339(),
            ends_at: ends_at.max(f.since).to_rfc3339(),
            generator_url,
        }
    }
}

/// Percent-encodes what may not stand in a URL path segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
