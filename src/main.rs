//! `wa-watchdog`: parses the command line, dispatches, and maps errors to
//! exit codes (0 ok, 1 runtime failure, 2 usage or config error). Nothing
//! else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use wa_watchdog::cli::{self, DEFAULT_CONFIG};
use wa_watchdog::clock::Clock;
use wa_watchdog::config::{self, Config};
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
    /// Serve only the WAHA simulator, for trying a Prometheus/Alertmanager pipeline.
    Simulate {
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: std::net::SocketAddr,
        /// Number of sessions (named session-001, session-002, ...).
        #[arg(long, default_value_t = 5)]
        sessions: usize,
        /// Environment variable holding the API key the simulator demands
        /// (unset variable: no authentication).
        #[arg(long, default_value = "WAHA_API_KEY")]
        api_key_env: String,
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
            runtime_main(async move {
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
        } => {
            telemetry::init(config::LogFormat::Text, "info");
            let api_key = std::env::var(&api_key_env).ok().filter(|k| !k.is_empty());
            if api_key.is_none() {
                eprintln!(
                    "wa-watchdog: ${api_key_env} is not set: the simulator accepts requests without an API key"
                );
            }
            runtime_main(async move {
                let opts = wa_watchdog::sim::waha::WahaSimOptions {
                    api_key,
                    sessions: wa_watchdog::sim::session_names(sessions),
                    ..wa_watchdog::sim::waha::WahaSimOptions::default().with_real_timings()
                };
                println!(
                    "WAHA simulator on http://{listen} with {sessions} sessions; faults: http://{listen}/_sim/..."
                );
                wa_watchdog::sim::waha::run_standalone(listen, opts, app::shutdown_signal())
                    .await
                    .map_err(|e| anyhow::anyhow!("simulator on {listen}: {e}"))
            })
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
            runtime_main(async move {
                let app = app::App::build(cfg, Clock::system(), None).await?;
                app.run_until_stopped(app::shutdown_signal()).await
            })
        }
    }
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

/// Runs `fut` on a multi-threaded runtime; a runtime error exits 1.
fn runtime_main(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wa-watchdog: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
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
