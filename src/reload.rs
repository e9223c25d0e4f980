//! Configuration reload on SIGHUP (`systemctl reload wa-watchdog`): read the
//! file again, validate it, and hand it to the running scheduler through the
//! same command channel as every other request, so the loop applies it
//! between two steps and nothing else ever touches the scheduler.
//!
//! Owns: the reload sequence (systemd `RELOADING=1` … `READY=1`), the
//! rejection of an invalid file (logged naming the key, counted in
//! `wa_watchdog_config_reload_failures_total`, the running config stays),
//! and telling the operator which changed keys need a restart. Must not:
//! apply anything itself (`Scheduler::reload` does), or log a secret (only
//! key names are logged).

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::scheduler::Command;
use crate::scheduler::Handle;
use crate::service::Notifier;

/// Reloads the configuration of a running [`App`](crate::app::App).
pub struct Reloader {
    path: PathBuf,
    current: Config,
    handle: Handle,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    /// SIGHUP, listened for from construction on: the daemon says READY=1
    /// right after, and systemd may send a reload at once.
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

/// How a reload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Applied. The keys listed changed but take effect only after a restart.
    Applied { restart_needed: Vec<&'static str> },
    /// Rejected; the previous configuration stays. The message names the
    /// file and the key.
    Rejected(String),
}

impl Reloader {
    /// `current` is the configuration the daemon runs with; the file is
    /// re-read from `current.path`. Starts listening for SIGHUP (call it
    /// inside the runtime, before telling systemd the daemon is ready).
    pub fn new(current: Config, handle: Handle, metrics: Arc<Metrics>, notifier: Notifier) -> Self {
        #[cfg(unix)]
        let hangup = {
            use tokio::signal::unix::{SignalKind, signal};
            signal(SignalKind::hangup())
                .inspect_err(|e| {
                    tracing::error!(error = %e, "cannot listen for SIGHUP; reload by restarting")
                })
                .ok()
        };
        Reloader {
            path: current.path.clone(),
            current,
            handle,
            metrics,
            notifier,
            #[cfg(unix)]
            hangup,
        }
    }

    /// The configuration in force.
    pub fn current(&self) -> &Config {
        &self.current
    }

    /// One reload: the single step of [`Reloader::run`], for tests.
    pub async fn reload(&mut self) -> ReloadOutcome {
        self.notifier.reloading();
        tracing::info!(config = %self.path.display(), "reloading the configuration");
        let outcome = self.try_reload().await;
        match &outcome {
            ReloadOutcome::Applied { restart_needed } => {
                for key in restart_needed {
                    tracing::warn!(
                        key,
                        "{key} changed; it takes effect only after a restart (systemctl restart wa-watchdog)"
                    );
                }
            }
            ReloadOutcome::Rejected(why) => {
                self.metrics.reload_failed();
                tracing::error!(
                    error = %why,
                    "configuration reload rejected; the previous configuration stays in force"
                );
            }
        }
        // READY=1 ends the reload for systemd either way; the loop's next
        // beat replaces this STATUS= with the summary.
        self.notifier.ready(match outcome {
            ReloadOutcome::Applied { .. } => "configuration reloaded",
            ReloadOutcome::Rejected(_) => "configuration reload rejected; see the journal",
        });
        outcome
    }

    async fn try_reload(&mut self) -> ReloadOutcome {
        let path = self.path.clone();
        // Reading the file and `_file` secrets is blocking I/O.
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
        let new = match loaded {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return ReloadOutcome::Rejected(e.to_string()),
            Err(e) => {
                return ReloadOutcome::Rejected(format!("reading the configuration failed: {e}"));
            }
        };
        let restart_needed = restart_needed(&self.current, &new);
        if let Err(e) = self
            .handle
            .command(Command::Reload(Box::new(new.clone())))
            .await
        {
            return ReloadOutcome::Rejected(format!("{}: {e}", self.path.display()));
        }
        self.current = new;
        ReloadOutcome::Applied { restart_needed }
    }

    /// Reloads on every SIGHUP, forever. Run it beside the scheduler loop
    /// (it only sends commands to it); it never returns, so a `select!` with
    /// the loop ends when the loop does.
    pub async fn run(mut self) {
        #[cfg(unix)]
        if let Some(mut hup) = self.hangup.take() {
            while hup.recv().await.is_some() {
                self.reload().await;
            }
        }
        std::future::pending::<()>().await;
    }
}

/// Keys that differ between `old` and `new` and that a running daemon
/// cannot take over: the database and the listening socket are opened once;
/// the log format is fixed when logging starts; the shutdown grace is handed
/// to the loop at start; the metrics registry is built with or without
/// per-session series (`daemon.session_metrics`); the runtime's threads
/// (`daemon.worker_threads`) are started before anything else. `daemon.admin_token` and `[alertmanager]` belong to
/// the HTTP API and the Alertmanager push, which read them at start; the
/// webhook receiver is built at start as well, and so are the `[[ring]]`
/// rings.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.daemon, &new.daemon);
    let mut keys = Vec::new();
    if o.database != n.database {
        keys.push("daemon.database");
    }
    if o.replica != n.replica || o.lease_ttl != n.lease_ttl {
        keys.push("daemon.replica / daemon.lease_ttl");
    }
    if o.listen != n.listen {
        keys.push("daemon.listen");
    }
    if o.log_format != n.log_format {
        keys.push("daemon.log_format");
    }
    if o.shutdown_grace != n.shutdown_grace {
        keys.push("daemon.shutdown_grace");
    }
    if o.admin_token != n.admin_token {
        keys.push("daemon.admin_token");
    }
    if old.alertmanager != new.alertmanager {
        keys.push("alertmanager");
    }
    if o.webhook_listen != n.webhook_listen {
        keys.push("daemon.webhook_listen");
    }
    if o.session_metrics != n.session_metrics {
        keys.push("daemon.session_metrics");
    }
    if o.worker_threads != n.worker_threads {
        keys.push("daemon.worker_threads");
    }
    // The webhook receiver is built at start from every provider's
    // `webhook_*` keys (and the set of providers it answers for).
    let hooks = |c: &Config| -> Vec<(String, crate::config::WebhookConfig)> {
        c.providers
            .iter()
            .filter(|p| p.webhook.auth != crate::config::WebhookAuth::Off)
            .map(|p| (p.name.clone(), p.webhook.clone()))
            .collect()
    };
    if hooks(old) != hooks(new) {
        keys.push("provider.webhook_*");
    }
    // Rings are built at start (their members' numbers, canaries in flight).
    if old.rings != new.rings {
        keys.push("ring");
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(daemon: &str) -> Config {
        let text = format!(
            "[daemon]\n{daemon}\n[[provider]]\nname = \"w\"\nkind = \"waha\"\nurl = \"http://127.0.0.1:3000\"\n"
        );
        let env = |k: &str| (k == "TOKEN_A" || k == "TOKEN_B").then(|| k.to_lowercase());
        Config::from_toml_str(&text, "/etc/wa-watchdog/config.toml", &env).expect("config")
    }

    #[test]
    fn restart_needed_lists_the_keys_a_running_daemon_cannot_take_over() {
        let base = cfg("");
        assert!(restart_needed(&base, &cfg("discovery_interval = \"5m\"")).is_empty());
        assert_eq!(
            restart_needed(
                &base,
                &cfg("database = \"/tmp/x.db\"\nlisten = \"127.0.0.1:1\"")
            ),
            ["daemon.database", "daemon.listen"]
        );
        assert_eq!(
            restart_needed(
                &cfg("admin_token_env = \"TOKEN_A\""),
                &cfg(
                    "admin_token_env = \"TOKEN_B\"\nlog_format = \"json\"\nshutdown_grace = \"1s\""
                )
            ),
            [
                "daemon.log_format",
                "daemon.shutdown_grace",
                "daemon.admin_token"
            ]
        );
    }
}
