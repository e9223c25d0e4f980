//! The push task: reads the scheduler's events into the model, evaluates
//! it every second and posts what the outbox plans to `{url}/api/v2/alerts`.
//!
//! What it owns: [`Pusher`] and its HTTP client. What it must not do: block
//! or slow the scheduler (it only reads a broadcast channel and re-reads the
//! store when it falls behind), or fail the daemon when Alertmanager is down
//! (a failed push is logged, counted and retried).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::{EVAL_EVERY, Holds, Model, Outbox, PUSH_TIMEOUT, PostableAlert};
use crate::clock::Clock;
use crate::config::{AlertmanagerConfig, Config};
use crate::events::Event;
use crate::metrics::Metrics;
use crate::store::Store;

/// What the pusher shares with the rest of the daemon.
pub struct Parts {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// The daemon's clock: hold times, `startsAt` and `endsAt`.
    pub clock: Clock,
    pub holds: Holds,
    /// Base of `generatorURL` (`http://<listen address>`).
    pub generator_base: String,
}

/// The push task: builds the model from events and the store and posts the
/// alerts it implies.
pub struct Pusher {
    endpoint: String,
    client: reqwest::Client,
    model: Model,
    outbox: Outbox,
    store: Store,
    metrics: Arc<Metrics>,
    clock: Clock,
    holds: Holds,
}

impl Pusher {
    /// A pusher for `am`, knowing the canary intervals of `config`.
    pub fn new(am: &AlertmanagerConfig, config: &Config, parts: Parts) -> anyhow::Result<Pusher> {
        let client = crate::provider::http::build_client(Duration::from_secs(5))
            .map_err(|e| anyhow::anyhow!("alertmanager: {e}"))?;
        Ok(Pusher {
            endpoint: format!("{}/api/v2/alerts", am.url),
            client,
            model: Model::new(config),
            outbox: Outbox::new(am.resend_interval, parts.holds, parts.generator_base),
            store: parts.store,
            metrics: parts.metrics,
            clock: parts.clock,
            holds: parts.holds,
        })
    }

    /// Re-reads every session from the store. A failure keeps the model as
    /// it is (the events keep it roughly right) and is logged.
    async fn seed(&mut self) {
        match self.store.load_sessions().await {
            Ok(records) => self.model.seed(&records),
            Err(e) => {
                tracing::warn!(error = %e, "alertmanager: cannot read sessions from the store")
            }
        }
    }

    /// Runs until `stop` resolves. Alerts still firing then are not resolved:
    /// their `endsAt` lets Alertmanager expire them, and the
    /// `WaWatchdogDown` rule covers a daemon that stays down.
    pub async fn run(
        mut self,
        mut events: broadcast::Receiver<Event>,
        stop: impl Future<Output = ()>,
    ) {
        tracing::info!(endpoint = %self.endpoint, "alertmanager: pushing alerts directly");
        self.seed().await;
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(EVAL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events_open = true;
        loop {
            tokio::select! {
                biased;
                () = &mut stop => break,
                event = events.recv(), if events_open => match event {
                    Ok(e) => self.model.apply(&e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "alertmanager: fell behind the scheduler's events; re-reading the store");
                        self.seed().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => events_open = false,
                },
                _ = tick.tick() => self.cycle().await,
            }
        }
    }

    /// One evaluation and, if anything is due, one post.
    pub async fn cycle(&mut self) {
        let now = self.clock.now();
        let firing = self.model.firing(now, self.holds);
        let batch = self.outbox.plan(now, firing);
        if batch.is_empty() {
            return;
        }
        let ok = self.post(&batch.alerts).await;
        if !ok {
            self.metrics.alertmanager_push_failed();
        }
        self.outbox.sent(now, batch, ok);
    }

    async fn post(&self, alerts: &[PostableAlert]) -> bool {
        let request = self
            .client
            .post(&self.endpoint)
            .timeout(PUSH_TIMEOUT)
            .json(alerts);
        match crate::provider::http::send(request).await {
            Ok(reply) if (200..300).contains(&reply.status) => {
                tracing::debug!(alerts = alerts.len(), "alertmanager: pushed");
                true
            }
            Ok(reply) => {
                let body: String = reply.body.chars().take(200).collect();
                tracing::warn!(status = reply.status, body = %body, alerts = alerts.len(), "alertmanager: push rejected");
                false
            }
            Err(e) => {
                tracing::warn!(error = ?e, alerts = alerts.len(), "alertmanager: push failed");
                false
            }
        }
    }
}
