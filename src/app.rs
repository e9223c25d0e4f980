//! Wiring, build then run: [`App::build`] opens the store,
//! builds the metrics and the scheduler (restoring every session) and binds
//! the HTTP listener; [`App::run_until_stopped`] runs the scheduler loop, the
//! HTTP server and (when configured) the Alertmanager pusher until the
//! shutdown future resolves. The same constructor serves production, the
//! demo and the tests.
//!
//! Every task here is owned: the HTTP server and the pusher run in a
//! `JoinSet` beside the scheduler loop; if one of them ends on its own, the
//! scheduler is stopped and `run_until_stopped` returns an error, so a
//! half-working daemon never keeps running unnoticed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::alertmanager::{self, Holds};
use crate::clock::Clock;
use crate::config::Config;
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::scheduler::{self, Parts, Scheduler};
use crate::service::{self, Notifier};
use crate::store::Store;
use crate::webhooks::Receiver;

pub use crate::scheduler::{CommandError, CommandRequest, Handle};

/// The daemon, built and ready to run.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub scheduler: Scheduler,
    commands: mpsc::Receiver<CommandRequest>,
    handle: Handle,
    listener: TcpListener,
    http_addr: SocketAddr,
    webhooks: Receiver,
    webhook_listener: Option<(TcpListener, SocketAddr)>,
    heartbeat_max_age: Duration,
    alert_holds: Holds,
}

impl App {
    pub async fn build(config: Config, clock: Clock, seed: Option<u64>) -> anyhow::Result<App> {
        let store = Store::open_database(&config.daemon.database)
            .await
            .with_context(|| format!("cannot open the database {}", config.daemon.database))?;
        let metrics = Arc::new(Metrics::with_session_series(config.daemon.session_metrics));
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
        // Bound here, not in `run_until_stopped`, so a busy port is a start-up
        // error and tests on port 0 learn the address before running.
        let listen = config.daemon.listen;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (daemon.listen)"))?;
        let http_addr = listener
            .local_addr()
            .with_context(|| format!("cannot read the address bound for {listen}"))?;
        tracing::info!(%http_addr, "http: listening (/metrics, /healthz, /readyz, /api/v1, /webhooks)");
        let (webhooks, queue) = Receiver::new(&config, metrics.clone(), scheduler.clock().clone());
        let mut scheduler = scheduler;
        scheduler.attach_webhooks(queue);
        let webhook_listener = match config.daemon.webhook_listen {
            None => None,
            Some(addr) => {
                let l = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (daemon.webhook_listen)"))?;
                let bound = l
                    .local_addr()
                    .with_context(|| format!("cannot read the address bound for {addr}"))?;
                tracing::info!(%bound, "http: listening for webhooks only (/webhooks, /healthz)");
                Some((l, bound))
            }
        };
        for p in &config.providers {
            if p.webhook.auth == crate::config::WebhookAuth::Insecure {
                tracing::warn!(provider = %p.name, "webhooks accepted without a signature or token (webhook_insecure = true)");
            }
        }
        let (handle, commands) = scheduler::command::channel(64);
        Ok(App {
            config,
            store,
            metrics,
            scheduler,
            commands,
            handle,
            listener,
            http_addr,
            webhooks,
            webhook_listener,
            heartbeat_max_age: http::HEARTBEAT_MAX_AGE,
            alert_holds: Holds::default(),
        })
    }

    /// Sends commands to the scheduler once it runs.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The address of `daemon.webhook_listen`, if set (the real port when
    /// it asked for port 0).
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.webhook_listener.as_ref().map(|(_, a)| *a)
    }

    /// The address the HTTP server listens on (the real port when
    /// `daemon.listen` asked for port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Replaces how long each directly pushed alert's condition must hold
    /// before it fires (default: the `for` of the matching rule). For tests
    /// and the demo, which cannot wait five minutes.
    pub fn with_alert_holds(mut self, holds: Holds) -> App {
        self.alert_holds = holds;
        self
    }

    /// Replaces the heartbeat age at which `/healthz` fails (default
    /// [`http::HEARTBEAT_MAX_AGE`]).
    pub fn with_heartbeat_max_age(mut self, max_age: Duration) -> App {
        self.heartbeat_max_age = max_age;
        self
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
            listener,
            http_addr,
            webhooks,
            webhook_listener,
            heartbeat_max_age,
            alert_holds,
        } = self;
        tracing::info!(
            providers = config.providers.len(),
            sessions = scheduler.summary().values().sum::<usize>(),
            %http_addr,
            "wa-watchdog running"
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            // An error means the sender is gone, which is a stop too.
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let mut tasks: JoinSet<&'static str> = JoinSet::new();
        let http_state = HttpState {
            store: store.clone(),
            metrics: metrics.clone(),
            heartbeat: scheduler.heartbeat(),
            heartbeat_max_age,
            handle: handle.clone(),
            clock: scheduler.clock().clone(),
            admin_token: config.daemon.admin_token.clone(),
            config_path: config.path.clone(),
            webhooks: Some(webhooks),
            replica: (store.backend() == crate::store::Backend::Postgres)
                .then(|| config.daemon.replica.clone()),
        };
        if let Some((listener, _)) = webhook_listener {
            let router = http::webhook_router(http_state.clone());
            let stop = stopped(stop_rx.clone());
            tasks.spawn(async move {
                http::serve_router(listener, router, stop).await;
                "the webhook http server"
            });
        }
        let http_stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            http::serve(listener, http_state, http_stop).await;
            "the http server"
        });
        if let Some(am) = &config.alertmanager {
            let pusher = alertmanager::Pusher::new(
                am,
                &config,
                alertmanager::Parts {
                    store: store.clone(),
                    metrics: metrics.clone(),
                    clock: scheduler.clock().clone(),
                    holds: alert_holds,
                    generator_base: format!("http://{http_addr}"),
                },
            )?;
            let events = scheduler.subscribe();
            let am_stop = stopped(stop_rx.clone());
            tasks.spawn(async move {
                pusher.run(events, am_stop).await;
                "the alertmanager pusher"
            });
        }

        // Under systemd: READY now, WATCHDOG from the loop itself, STATUS on
        // change, STOPPING at shutdown; SIGHUP reloads through the loop.
        let notifier = Notifier::from_env();
        let grace = config.daemon.shutdown_grace;
        let reloader = Reloader::new(config, handle, metrics, notifier.clone());
        notifier.ready(&service::status_line(&scheduler.summary()));

        // The scheduler runs until the shutdown signal, or until a companion
        // task ends by itself (a bug: they only return when told to stop).
        let mut failed: Option<String> = None;
        {
            let tasks = &mut tasks;
            let failed = &mut failed;
            let stopping = notifier.clone();
            let until = async move {
                tokio::select! {
                    () = shutdown => {}
                    Some(joined) = tasks.join_next() => {
                        let what = match joined {
                            Ok(name) => format!("{name} stopped unexpectedly"),
                            Err(e) => format!("a daemon task failed: {e}"),
                        };
                        tracing::error!("{what}; shutting down");
                        *failed = Some(what);
                    }
                }
                stopping.stopping();
            };
            // The reloader only sends commands to the loop and never returns:
            // this ends when the loop does.
            tokio::select! {
                _ = scheduler.run(until, commands, grace, |s| {
                    if notifier.is_enabled() {
                        notifier.beat(&s.summary());
                    }
                }) => {}
                _ = reloader.run() => {}
            }
        }
        // One of several replicas: the others take its shards over at their
        // next round rather than after the lease time.
        scheduler.leave().await;
        tracing::info!("scheduler stopped; stopping the http server");
        let _ = stop_tx.send(true);
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "a daemon task failed while stopping");
            }
        }
        tracing::info!("closing the database");
        store.close().await;
        match failed {
            Some(what) => Err(anyhow::anyhow!(what)),
            None => Ok(()),
        }
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
