//! Fleet benchmark: how much a simulated hour of a large WAHA fleet costs the
//! daemon — wall time, probes per second, peak memory — with everything real
//! but WhatsApp: the WAHA simulator over loopback, SQLite on disk, the real
//! scheduler, on a manual clock moved as fast as the work allows.
//!
//! Run (release, as it would be deployed):
//!
//! ```sh
//! cargo run --release --example fleet_bench -- 1000 60     # sessions, simulated minutes
//! ```
//!
//! Every 50th session desyncs halfway through and must be healed; the run
//! fails if any of them is not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wa_watchdog::clock::{Clock, Timestamp};
use wa_watchdog::config::Config;
use wa_watchdog::machine::State;
use wa_watchdog::metrics::Metrics;
use wa_watchdog::scheduler::{Parts, Scheduler};
use wa_watchdog::sim::waha::{self, Fault, WahaSimOptions};
use wa_watchdog::store::Store;

/// CPU time of this process so far (user + system), from `/proc/self/stat`
/// (fields 14 and 15, in clock ticks; Linux's USER_HZ is 100).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count from the ')'.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let sessions: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let minutes: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(60);

    let clock = Clock::manual(Timestamp::from_millis(1_800_000_000_000));
    let names = wa_watchdog::sim::session_names(sessions);
    let sim = waha::start(
        "127.0.0.1:0".parse()?,
        WahaSimOptions {
            api_key: Some("bench-key".into()),
            sessions: names.clone(),
            clock: clock.clone(),
            ..WahaSimOptions::default()
        },
    )
    .await?;
    let dir = tempfile_dir()?;
    let db = dir.join("bench.db");
    let text = format!(
        "[daemon]\ndatabase = {db:?}\n[canary]\ninterval = \"5m\"\n\
         [policy]\nrestart_budget = 1000\nmax_concurrent_restarts = 16\n\
         [[provider]]\nname = \"waha\"\nkind = \"waha\"\nurl = \"{}\"\napi_key_env = \"K\"\nmax_concurrent_probes = 32\n",
        sim.url()
    );
    let env = |n: &str| (n == "K").then(|| "bench-key".to_string());
    let config = Config::from_toml_str(&text, dir.join("bench.toml"), &env)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Store::open(&db).await?;
    let metrics = Arc::new(Metrics::new());
    let mut scheduler = Scheduler::build(
        &config,
        Parts {
            clock: clock.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            seed: Some(1),
        },
    )
    .await?;

    let started = Instant::now();
    let cpu_before = cpu_time();
    let half = Duration::from_secs(minutes * 60 / 2);
    scheduler.advance(half, Duration::from_secs(1)).await;
    let victims: Vec<&String> = names.iter().step_by(50).collect();
    let ctl = sim.control();
    for v in &victims {
        ctl.inject(v, Fault::Desync)?;
    }
    scheduler.advance(half, Duration::from_secs(1)).await;
    let wall = started.elapsed();
    let cpu = cpu_time().zip(cpu_before).map(|(a, b)| a.saturating_sub(b));

    let sends: usize = names.iter().map(|n| ctl.send_count(n)).sum();
    let restarts: usize = names.iter().map(|n| ctl.restart_count(n)).sum();
    let healthy = scheduler
        .sessions()
        .iter()
        .filter(|(_, _, s)| *s == State::Healthy)
        .count();
    let scrape = metrics.encode().map_err(|e| anyhow::anyhow!("{e}"))?;
    let series = scrape.lines().filter(|l| !l.starts_with('#')).count();
    println!("sessions                {sessions}");
    println!("simulated time          {minutes} min");
    println!("wall time               {:.2} s", wall.as_secs_f64());
    println!("canaries sent           {sends}");
    println!(
        "canaries per wall sec   {:.0}",
        sends as f64 / wall.as_secs_f64()
    );
    if let Some(cpu) = cpu {
        println!("CPU (user+sys)          {:.2} s", cpu.as_secs_f64());
        println!(
            "CPU per canary          {:.0} µs (daemon and simulator in one process)",
            cpu.as_secs_f64() * 1e6 / sends.max(1) as f64
        );
    }
    println!("desyncs injected        {}", victims.len());
    println!("restarts                {restarts}");
    println!("healthy at the end      {healthy}/{sessions}");
    println!(
        "scrape                  {series} series, {} bytes",
        scrape.len()
    );
    if let Some(kib) = peak_rss_kib() {
        println!("peak RSS                {:.1} MiB", kib as f64 / 1024.0);
    }
    store.close().await;
    let db_size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "database                {:.1} MiB",
        db_size as f64 / 1_048_576.0
    );
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        restarts == victims.len(),
        "expected one restart per desynced session"
    );
    anyhow::ensure!(
        healthy == sessions,
        "not every session is healthy at the end"
    );
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("wa-watchdog-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
