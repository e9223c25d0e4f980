//! Wiring (STYLE.md "build, then run"): [`App::build`] opens the store,
//! builds the metrics and the scheduler (restoring every session), and
//! [`App::run_until_stopped`] runs the scheduler loop until the shutdown
//! future resolves. The same constructor serves production, the demo and
//! the tests.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::scheduler::{Command, Parts, Scheduler};
use crate::service::{self, Notifier};
use crate::store::Store;

/// A request to the running scheduler and the channel for its answer.
pub type CommandRequest = (Command, oneshot::Sender<Result<(), String>>);

/// Sends commands to a running [`App`].
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<CommandRequest>,
}

impl Handle {
    /// Sends a command and waits for the scheduler's answer.
    pub async fn command(&self, cmd: Command) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((cmd, reply))
            .await
            .map_err(|_| "the scheduler is not running".to_string())?;
        rx.await
            .map_err(|_| "the scheduler stopped before answering".to_string())?
    }
}

pub struct App {
    pub config: Config,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub scheduler: Scheduler,
    commands: mpsc::Receiver<CommandRequest>,
    handle: Handle,
}

impl App {
    pub async fn build(config: Config, clock: Clock, seed: Option<u64>) -> anyhow::Result<App> {
        let store = Store::open(&config.daemon.database)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    config.daemon.database.display()
                )
            })?;
        let metrics = Arc::new(Metrics::new());
        let scheduler = Scheduler::build(
            &config,
            Parts {
                clock,
                store: store.clone(),
                metrics: metrics.clone(),
                seed,
            },
        )
        .await?;
        let (tx, commands) = mpsc::channel(64);
        Ok(App {
            config,
            store,
            metrics,
            scheduler,
            commands,
            handle: Handle { tx },
        })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs until `shutdown` resolves; then finishes in-flight probes within
    /// `daemon.shutdown_grace` and closes the store. Under systemd it tells
    /// the service manager (see `service`); SIGHUP reloads the config file
    /// (see `reload`).
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let App {
            config,
            store,
            metrics,
            mut scheduler,
            commands,
            handle,
        } = self;
        tracing::info!(
            providers = config.providers.len(),
            sessions = scheduler.sessions().len(),
            "wa-watchdog running"
        );
        let notifier = Notifier::from_env();
        let grace = config.daemon.shutdown_grace;
        let reloader = Reloader::new(config, handle, metrics, notifier.clone());
        notifier.ready(&service::status_line(&scheduler.summary()));
        let shutdown = async {
            shutdown.await;
            notifier.stopping();
        };
        // The reloader only sends commands to the loop and never returns:
        // this ends when the loop does.
        tokio::select! {
            _ = scheduler.run(shutdown, commands, grace, |s| {
                if notifier.is_enabled() {
                    notifier.beat(&s.summary());
                }
            }) => {}
            _ = reloader.run() => {}
        }
        tracing::info!("scheduler stopped; closing the database");
        store.close().await;
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C will stop the daemon");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
