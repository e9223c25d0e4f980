//! `wa-watchdog`: parses the command line, dispatches, and maps errors to
//! exit codes (0 ok, 1 runtime failure, 2 usage or config error). Nothing
//! else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use wa_watchdog::cli::{self, DEFAULT_CONFIG};
use wa_watchdog::clock::Clock;
use wa_watchdog::config::{self, Config};
use wa_watchdog::sim::webhooks::{HookAuth, HookFault, HookTarget};
use wa_watchdog::{app, demo, telemetry};

#[derive(Parser, Debug)]
#[command(
    name = "wa-watchdog",
    version,
    about = "Health watchdog for WhatsApp API sessions (WAHA, Green-API)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon.
    Run {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate the config and print it resolved, secrets redacted.
    CheckConfig {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Watch a desync get caught and healed: simulator + daemon in one process.
    Demo {
        /// Stop after this long (e.g. "90s"); default: run until Ctrl-C.
        #[arg(long, value_parser = humantime::parse_duration)]
        exit_after: Option<std::time::Duration>,
    },
    /// Serve only the simulators (WAHA, and Green-API if asked), for trying a
    /// Prometheus/Alertmanager pipeline or the daemon by hand.
    Simulate {
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: std::net::SocketAddr,
        /// Number of WAHA sessions (named session-001, session-002, ...).
        #[arg(long, default_value_t = 5)]
        sessions: usize,
        /// Environment variable holding the API key the WAHA simulator
        /// demands (unset variable: no authentication).
        #[arg(long, default_value = "WAHA_API_KEY")]
        api_key_env: String,
        /// Also serve a Green-API simulator on this address.
        #[arg(long)]
        green_listen: Option<std::net::SocketAddr>,
        /// Green-API instances (ids 1101000001, 1101000002, ...).
        #[arg(long, default_value_t = 1)]
        green_instances: usize,
        /// Environment variable holding the instances' apiTokenInstance.
        #[arg(long, default_value = "GREEN_API_TOKEN")]
        green_token_env: String,
        /// Push WAHA webhooks (`message.ack`, `session.status`) to this URL,
        /// e.g. http://127.0.0.1:9797/webhooks/waha.
        #[arg(long)]
        webhook_url: Option<String>,
        /// Environment variable holding the HMAC key WAHA signs pushes with
        /// (unset: unsigned).
        #[arg(long, default_value = "WAHA_WEBHOOK_HMAC_KEY")]
        webhook_hmac_key_env: String,
        /// Push Green-API webhooks (`outgoingMessageStatus`,
        /// `stateInstanceChanged`) to this URL.
        #[arg(long)]
        green_webhook_url: Option<String>,
        /// Environment variable holding the webhookUrlToken Green-API sends
        /// as `Authorization: Bearer` (unset: none).
        #[arg(long, default_value = "GREEN_WEBHOOK_TOKEN")]
        green_webhook_token_env: String,
        /// Only these events, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        webhook_events: Vec<String>,
        /// A fault of every push: none, wrong-signature, replay.
        #[arg(long, default_value = "none")]
        webhook_fault: HookFault,
    },
    /// Operator commands: status, history, probe, pause, resume.
    #[command(flatten)]
    Operator(cli::Op),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Cmd::Operator(op) => {
            telemetry::init(config::LogFormat::Text, "warn");
            cli::run(op)
        }
        Cmd::CheckConfig { config } => check_config(&config),
        Cmd::Demo { exit_after } => {
            telemetry::init(config::LogFormat::Text, "error");
            runtime_main(cli::Threads::PerCore, async move {
                let opts = demo::DemoOptions {
                    exit_after,
                    ..demo::DemoOptions::default()
                };
                demo::run(opts, |line| println!("{line}"), app::shutdown_signal())
                    .await
                    .map(|_| ())
            })
        }
        Cmd::Simulate {
            listen,
            sessions,
            api_key_env,
            green_listen,
            green_instances,
            green_token_env,
            webhook_url,
            webhook_hmac_key_env,
            green_webhook_url,
            green_webhook_token_env,
            webhook_events,
            webhook_fault,
        } => {
            telemetry::init(config::LogFormat::Text, "info");
            let secret = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
            let target = |url: String, auth: HookAuth| HookTarget {
                url,
                auth,
                events: webhook_events.clone(),
                fault: webhook_fault,
            };
            let hooks = SimHookTargets {
                waha: webhook_url.map(|url| {
                    let auth = secret(&webhook_hmac_key_env).map_or(HookAuth::None, HookAuth::Hmac);
                    target(url, auth)
                }),
                green: green_webhook_url.map(|url| {
                    let auth =
                        secret(&green_webhook_token_env).map_or(HookAuth::None, HookAuth::Token);
                    target(url, auth)
                }),
            };
            let api_key = std::env::var(&api_key_env).ok().filter(|k| !k.is_empty());
            if api_key.is_none() {
                eprintln!(
                    "wa-watchdog: ${api_key_env} is not set: the WAHA simulator accepts requests without an API key"
                );
            }
            let green = match green_listen {
                None => None,
                Some(addr) => match std::env::var(&green_token_env)
                    .ok()
                    .filter(|t| !t.is_empty())
                {
                    Some(token) => Some((addr, token)),
                    None => {
                        eprintln!(
                            "wa-watchdog: --green-listen needs the instance token in ${green_token_env}"
                        );
                        return ExitCode::from(2);
                    }
                },
            };
            runtime_main(
                cli::Threads::PerCore,
                simulate(listen, sessions, api_key, green, green_instances, hooks),
            )
        }
        Cmd::Run { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("wa-watchdog: {e}");
                    return ExitCode::from(2);
                }
            };
            telemetry::init(cfg.daemon.log_format, "info");
            for w in &cfg.warnings {
                tracing::warn!("{w}");
            }
            let threads = cli::Threads::for_daemon(cfg.daemon.worker_threads);
            runtime_main(threads, async move {
                let app = app::App::build(cfg, Clock::system(), None).await?;
                app.run_until_stopped(app::shutdown_signal()).await
            })
        }
    }
}

/// Where `simulate` pushes webhooks.
struct SimHookTargets {
    waha: Option<HookTarget>,
    green: Option<HookTarget>,
}

/// Serves the simulators until SIGTERM / Ctrl-C.
async fn simulate(
    listen: std::net::SocketAddr,
    sessions: usize,
    api_key: Option<String>,
    green: Option<(std::net::SocketAddr, String)>,
    green_instances: usize,
    hooks: SimHookTargets,
) -> anyhow::Result<()> {
    use wa_watchdog::sim::{green_api, waha};
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let opts = waha::WahaSimOptions {
        api_key,
        sessions: wa_watchdog::sim::session_names(sessions),
        webhook: hooks.waha,
        ..waha::WahaSimOptions::default().with_real_timings()
    };
    println!(
        "WAHA simulator on http://{listen} with {sessions} sessions; faults: http://{listen}/_sim/..."
    );
    for (who, target) in [("WAHA", &opts.webhook), ("Green-API", &hooks.green)] {
        if let Some(t) = target {
            println!(
                "{who} simulator pushes webhooks to {} (events: {}; fault: {:?})",
                t.url,
                if t.events.is_empty() {
                    "all".to_string()
                } else {
                    t.events.join(",")
                },
                t.fault
            );
        }
    }
    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(waha::run_standalone(listen, opts, stopped(stop_rx.clone())));
    if let Some((addr, token)) = green {
        let instances = (1..=green_instances)
            .map(|i| {
                green_api::SimInstance::new(
                    &format!("{}", 1_101_000_000u64 + i as u64),
                    &token,
                    &format!("7999000{i:04}@c.us"),
                )
            })
            .collect();
        let mut opts =
            green_api::GreenSimOptions::new(wa_watchdog::clock::Clock::system(), instances);
        opts.webhook = hooks.green;
        println!(
            "Green-API simulator on http://{addr} with {green_instances} instance(s) from 1101000001; faults: http://{addr}/_sim/..."
        );
        servers.spawn(green_api::run_standalone(
            addr,
            opts,
            stopped(stop_rx.clone()),
        ));
    }
    tokio::select! {
        _ = app::shutdown_signal() => {}
        Some(done) = servers.join_next() => {
            // A server that ends by itself failed (e.g. the port is taken).
            let _ = stop_tx.send(true);
            return match done {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::anyhow!("simulator: {e}")),
                Err(e) => Err(anyhow::anyhow!("simulator task: {e}")),
            };
        }
    }
    let _ = stop_tx.send(true);
    while let Some(done) = servers.join_next().await {
        if let Ok(Err(e)) = done {
            return Err(anyhow::anyhow!("simulator: {e}"));
        }
    }
    Ok(())
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", config::render_redacted(&cfg));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wa-watchdog: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs `fut` on a runtime with `threads`; a runtime error exits 1.
fn runtime_main(
    threads: cli::Threads,
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let rt = match wa_watchdog::cli::runtime(threads) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("wa-watchdog: {e:#}");
            ExitCode::from(1)
        }
    }
}
