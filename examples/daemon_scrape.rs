//! How big is a real scrape? Starts the WAHA simulator with N sessions and
//! the real daemon (App: store, scheduler, HTTP server) watching them on the
//! system clock, waits until every session has been probed, injects a few
//! faults for a realistic mix of states, then scrapes `/metrics` and
//! `/api/v1/sessions` over loopback and prints their sizes and timings.
//!
//! ```text
//! cargo run --release --example daemon_scrape -- [SESSIONS]      # default 1000
//! cargo run --release --example daemon_scrape -- 1000 --dump | promtool check metrics
//! ```
//! `--dump` prints the scrape itself instead of the summary. Everything
//! listens on 127.0.0.1 and stops when the example ends (~10 s for 1,000).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use wa_watchdog::app::App;
use wa_watchdog::clock::Clock;
use wa_watchdog::config::Config;
use wa_watchdog::sim::waha::{self, Fault, Status, WahaSimOptions};

const KEY: &str = "scrape-example-key";

fn parse_args() -> Result<(usize, bool), String> {
    let mut sessions = 1000;
    let mut dump = false;
    for arg in std::env::args().skip(1) {
        if arg == "--dump" {
            dump = true;
        } else {
            sessions = arg
                .parse()
                .map_err(|e| format!("`{arg}` is not a count: {e}"))?;
        }
    }
    Ok((sessions, dump))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (n, dump) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("daemon_scrape: {e}");
            return ExitCode::from(2);
        }
    };
    match run(n, dump).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("daemon_scrape: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(n: usize, dump: bool) -> anyhow::Result<()> {
    let names = wa_watchdog::sim::session_names(n);
    let sim = waha::start(
        "127.0.0.1:0".parse()?,
        WahaSimOptions {
            api_key: Some(KEY.to_string()),
            sessions: names.clone(),
            ..WahaSimOptions::default()
        },
    )
    .await?;
    // Listed by name, not discovered (`["*"]`): WAHA's session list for
    // 1,000 sessions is larger than the provider client's 64 KiB body cap.
    let listed = &names;
    let dir = std::env::temp_dir().join(format!("wa-watchdog-scrape-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let text = format!(
        "[daemon]\ndatabase = {:?}\nlisten = \"127.0.0.1:0\"\ndiscovery_interval = \"1m\"\n\
         [canary]\ninterval = \"5s\"\ntimeout = \"5s\"\n\
         [policy]\nconfirm_interval = \"1s\"\n\
         [[provider]]\nname = \"waha\"\nkind = \"waha\"\nurl = \"{}\"\napi_key_env = \"KEY\"\n\
         sessions = {listed:?}\nmax_concurrent_probes = 64\n",
        dir.join("w.db"),
        sim.url()
    );
    let env = |name: &str| (name == "KEY").then(|| KEY.to_string());
    let config = Config::from_toml_str(&text, dir.join("c.toml"), &env)
        .map_err(|e| anyhow::anyhow!("config: {e}"))?;
    let app = App::build(config, Clock::system(), None).await?;
    let base = format!("http://{}", app.http_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();

    // A mix like the one in examples/scrape_size.rs: 1 % desynced (restarts
    // that do not heal), 1 % needing pairing, the rest healthy.
    let ctl = sim.control();
    for (i, name) in names.iter().enumerate() {
        match i % 100 {
            0 => {
                ctl.inject(name, Fault::Desync)?;
                ctl.inject(name, Fault::RestartDoesNotHeal)?;
            }
            1 => ctl.set_status(name, Status::ScanQrCode)?,
            _ => {}
        }
    }
    // Wait until every session has left `unknown` (first probes are spread
    // over the 5 s interval).
    let started = Instant::now();
    loop {
        let m = http
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let count = |state: &str| {
            let prefix = format!("wa_watchdog_sessions{{provider=\"waha\",state=\"{state}\"}} ");
            m.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let watched = m
            .lines()
            .filter(|l| l.starts_with("wa_watchdog_session_state{"))
            .count();
        if watched == n && count("unknown") == 0.0 && count("desynced") + count("escalated") > 0.0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "sessions not all probed after 2 minutes: {watched} watched, {} unknown, {} desynced",
            count("unknown"),
            count("desynced")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let t = Instant::now();
    let scrape = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let scrape_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let api = http
        .get(format!("{base}/api/v1/sessions"))
        .send()
        .await?
        .text()
        .await?;
    let api_ms = t.elapsed().as_secs_f64() * 1000.0;

    let _ = stop.send(());
    daemon.await??;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    if dump {
        print!("{scrape}");
        return Ok(());
    }
    let series = scrape.lines().filter(|l| !l.starts_with('#')).count();
    let session_series = scrape.lines().filter(|l| l.contains("session=\"")).count();
    let process = scrape.lines().filter(|l| l.starts_with("process_")).count();
    println!(
        "sessions={n} series={series} (per-session={session_series}, process_*={process}) \
         metrics_bytes={} metrics_ms={scrape_ms:.1} api_sessions_bytes={} api_ms={api_ms:.1}",
        scrape.len(),
        api.len()
    );
    Ok(())
}
