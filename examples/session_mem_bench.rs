//! Memory per watched session: the heap the scheduler holds for N sessions
//! (counted by a global allocator, so deterministic and unaffected by load)
//! and the process's RSS, built the way the daemon builds it.
//!
//! Run (release, as deployed; the heap counts are the same in a debug build):
//!
//! ```sh
//! cargo run --release --example session_mem_bench -- 100000 restore on    # sessions, mode, session metrics
//! cargo run --release --example session_mem_bench -- 10000 steady off
//! ```
//!
//! Modes:
//! - `restore`: a daemon start with N sessions in the database (a provider
//!   with `sessions = ["*"]`): the store is filled first, reopened, then
//!   `Scheduler::build` restores every session (machines, schedules, heap
//!   entries, metric series). No HTTP.
//! - `steady`: an empty database; the provider's session list (the WAHA
//!   simulator over loopback, on its own runtime whose threads the counter
//!   leaves out) discovers N sessions, then one canary interval passes on
//!   the manual clock so every session has been probed once: the steady
//!   state of a running daemon.
//!
//! `on`/`off` is `daemon.session_metrics` (the per-session metric series).
//! It prints the scheduler's live heap per session (bytes still allocated
//! after the build or the interval, minus before, over N), the number of
//! live allocations per session, and VmRSS / VmHWM of the whole process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use wa_watchdog::clock::{Clock, Timestamp};
use wa_watchdog::config::Config;
use wa_watchdog::metrics::Metrics;
use wa_watchdog::scheduler::{Parts, Scheduler};
use wa_watchdog::sim::waha::{self, WahaSimOptions};
use wa_watchdog::store::{SessionRecord, Store};

/// Live heap bytes and allocations of the threads counted.
static BYTES: AtomicI64 = AtomicI64::new(0);
static BLOCKS: AtomicI64 = AtomicI64::new(0);

thread_local! {
    /// Set on the simulator's threads: their allocations are not the daemon's.
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

fn counted() -> bool {
    !EXCLUDED.try_with(Cell::get).unwrap_or(true)
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && counted() {
            BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if counted() {
            BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
            BLOCKS.fetch_sub(1, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && counted() {
            BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn heap() -> (i64, i64) {
    (
        BYTES.load(Ordering::Relaxed),
        BLOCKS.load(Ordering::Relaxed),
    )
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "?".into())
}

const START_MS: i64 = 1_800_000_000_000;
const INTERVAL_S: u64 = 300;

fn config(dir: &std::path::Path, url: &str, session_metrics: bool) -> anyhow::Result<Config> {
    let db = dir.join("bench.db");
    let text = format!(
        "[daemon]\ndatabase = {db:?}\nsession_metrics = {session_metrics}\n\
         [canary]\ninterval = \"{INTERVAL_S}s\"\n\
         [policy]\nrestart_budget = 1000\nmax_concurrent_restarts = 16\n\
         [[provider]]\nname = \"waha\"\nkind = \"waha\"\nurl = \"{url}\"\napi_key_env = \"K\"\n\
         sessions = [\"*\"]\nmax_concurrent_probes = 32\n"
    );
    let env = |n: &str| (n == "K").then(|| "bench-key".to_string());
    Config::from_toml_str(&text, dir.join("bench.toml"), &env).map_err(|e| anyhow::anyhow!("{e}"))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let sessions: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let mode = args.next().unwrap_or_else(|| "restore".into());
    let session_metrics = match args.next().as_deref() {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => anyhow::bail!("session metrics: `on` or `off`, not `{other}`"),
    };
    anyhow::ensure!(sessions > 0, "sessions must be at least 1");
    anyhow::ensure!(
        mode == "restore" || mode == "steady",
        "mode: `restore` or `steady`, not `{mode}`"
    );
    let clock = Clock::manual(Timestamp::from_millis(START_MS));
    let names = wa_watchdog::sim::session_names(sessions);
    // The simulator on runtime threads the counter leaves out.
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(|| EXCLUDED.with(|e| e.set(true)))
        .enable_all()
        .build()?;
    let listen: std::net::SocketAddr = "127.0.0.1:0".parse()?;
    let sim = (mode == "steady")
        .then(|| {
            sim_rt.block_on(waha::start(
                listen,
                WahaSimOptions {
                    api_key: Some("bench-key".into()),
                    sessions: names.clone(),
                    clock: clock.clone(),
                    ..WahaSimOptions::default()
                },
            ))
        })
        .transpose()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    // Nothing listens on the discard port: `restore` never calls it.
    let url = sim
        .as_ref()
        .map(|s| s.url().to_string())
        .unwrap_or_else(|| "http://127.0.0.1:9".into());
    let config = config(dir.path(), &url, session_metrics)?;
    let db = dir.path().join("bench.db");
    rt.block_on(async {
        if mode == "restore" {
            let store = Store::open(&db).await?;
            let start = Timestamp::from_millis(START_MS);
            let records: Vec<SessionRecord> = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let mut rec = SessionRecord::new("waha", n, "healthy", start);
                    rec.machine.reason = "canary delivered".into();
                    rec.machine.last_outcome = Some("delivered".into());
                    rec.machine.last_success_at = Some(start);
                    rec.machine.last_probe_at = Some(start);
                    rec.machine.healthy_since = Some(start);
                    // Spread over the next interval, as a running daemon leaves them.
                    rec.next_probe_at = Some(start.plus(Duration::from_millis(
                        (i as u64 * 7919) % (INTERVAL_S * 1000),
                    )));
                    rec
                })
                .collect();
            store.save_sessions(&records).await?;
            drop(records);
            store.close().await;
        }
        let store = Store::open(&db).await?;
        let rss_before = status_kib("VmRSS:");
        let (bytes_before, blocks_before) = heap();
        let metrics = Arc::new(Metrics::with_session_series(session_metrics));
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
        if mode == "steady" {
            // Discovery, then one interval: every session probed once.
            scheduler
                .advance(Duration::from_secs(INTERVAL_S + 60), Duration::from_secs(1))
                .await;
        }
        let (bytes_after, blocks_after) = heap();
        let watched = scheduler.sessions().len();
        anyhow::ensure!(
            watched == sessions,
            "{watched} sessions watched, expected {sessions}"
        );
        let per = |v: i64| v as f64 / sessions as f64;
        println!(
            "session_mem_bench: {sessions} sessions, {mode}, session metrics {}",
            if session_metrics { "on" } else { "off" }
        );
        println!(
            "heap per session        {:.0} B ({:.1} allocations)",
            per(bytes_after - bytes_before),
            per(blocks_after - blocks_before)
        );
        println!(
            "heap total              {:.1} MiB",
            (bytes_after - bytes_before) as f64 / 1_048_576.0
        );
        println!(
            "RSS                     {} (before the build {}, peak {})",
            mib(status_kib("VmRSS:")),
            mib(rss_before),
            mib(status_kib("VmHWM:"))
        );
        drop(scheduler);
        store.close().await;
        anyhow::Ok(())
    })?;
    drop(sim);
    Ok(())
}
