//! Crash safety of the real binary: `wa-watchdog run` against two WAHA
//! simulators over loopback, driven through desync → restart → recover
//! while the test kills it with SIGKILL at random moments (seeded; set
//! `CRASH_SEED` to replay a run, `CRASH_KILLS` for more kills) and starts it
//! again each time. Afterwards, from the database and the simulators' call
//! logs:
//!
//! - `PRAGMA integrity_check` is `ok` (and no foreign key is dangling);
//! - every restart the simulators saw was preceded by its own intent row
//!   (a remediation row written after the previous restart call): no restart
//!   without an intent row. Intent rows without a call are allowed (the
//!   kill fell between the row and the call), at most one per kill;
//! - `max_restarts` holds across daemon restarts (provider `budget`: at most
//!   3 restart decisions, hence calls, per session, and the budget was
//!   actually reached);
//! - backoff holds across daemon restarts: consecutive restarts of one
//!   session are at least `backoff_initial` apart, and on `budget` the
//!   doubled backoff (1 s, then 2 s) holds between the decisions.
//!
//! Real time (the child runs on the system clock), bounded: about 30 s.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::common::binary::{BIN, signal, system_sim, wait_exit};
use crate::common::free_port;
use wa_watchdog::sim::waha::{Fault, WahaSim};

const KEY: &str = "waha-key-SEKRET-crash-5e2a";
/// A session's restarts allowed within the (whole-test) window on `budget`.
const MAX_RESTARTS: usize = 3;
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// What a restart's call may lag behind its decision (the intent write and
/// spawning the job) before the backoff check calls it early.
const DECISION_TO_CALL: Duration = Duration::from_millis(150);
const BUDGET: [&str; 2] = ["a1", "a2"];
const CYCLE: [&str; 3] = ["b1", "b2", "b3"];

/// Kills the child if the test fails while it runs.
struct Reap(Option<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn config(db: &Path, listen: u16, budget: &WahaSim, cycle: &WahaSim) -> String {
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"[daemon]
database = {db:?}
listen = "127.0.0.1:{listen}"
shutdown_grace = "1s"

[canary]
interval = "300ms"
jitter = 0.0
timeout = "2s"
confirm = "accepted"

[policy]
desync_confirmations = 1
send_failure_confirmations = 1
confirm_interval = "100ms"
restart_timeout = "5s"
restart_poll_interval = "100ms"
restart_call_timeout = "2s"
backoff_initial = "1s"
backoff_max = "2s"
max_concurrent_restarts = 3
restart_budget = 1000
restart_budget_window = "10m"
outage_min_sessions = 100

[[provider]]
name = "budget"
kind = "waha"
url = "{budget_url}"
api_key_env = "CRASH_WAHA_KEY"
sessions = [{budget_sessions}]
[provider.policy]
max_restarts = {MAX_RESTARTS}
restart_window = "1h"
healthy_reset = "1h"

[[provider]]
name = "cycle"
kind = "waha"
url = "{cycle_url}"
api_key_env = "CRASH_WAHA_KEY"
sessions = [{cycle_sessions}]
[provider.policy]
max_restarts = 1000
restart_window = "1m"
healthy_reset = "1200ms"
"#,
        budget_url = budget.url(),
        cycle_url = cycle.url(),
        budget_sessions = list(&BUDGET),
        cycle_sessions = list(&CYCLE),
    )
}

fn spawn(config: &Path, log: &Path) -> Reap {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let child = Command::new(BIN)
        .args(["run", "--config", &config.to_string_lossy()])
        .env("CRASH_WAHA_KEY", KEY)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn daemon");
    Reap(Some(child))
}

/// Remediation rows (dry runs excluded) per session: `started_at` in ms.
async fn intent_rows(db: &Path) -> BTreeMap<(String, String), Vec<i64>> {
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(db))
        .await
        .expect("open db");
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT provider, session, started_at FROM remediations \
         WHERE result <> 'dry_run' ORDER BY started_at",
    )
    .fetch_all(&mut conn)
    .await
    .expect("remediations");
    conn.close().await.expect("close");
    let mut out: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for (p, s, at) in rows {
        out.entry((p, s)).or_default().push(at);
    }
    out
}

/// Restart calls per session, in ms on the simulator's (system) clock.
fn restart_calls(sim: &WahaSim, session: &str) -> Vec<i64> {
    sim.control()
        .calls_matching("POST", &format!("/api/sessions/{session}/restart"))
        .iter()
        .map(|c| c.at.as_millis())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_never_corrupts_the_database_or_breaks_a_budget() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9_c4a5);
    let kills: usize = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let mut rng = StdRng::seed_from_u64(seed);
    let budget = system_sim(KEY, &BUDGET).await;
    let cycle = system_sim(KEY, &CYCLE).await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("state").join("wd.db");
    let cfg = dir.path().join("config.toml");
    let log = dir.path().join("stderr.log");
    std::fs::write(&cfg, config(&db, free_port(), &budget, &cycle)).expect("config");

    let started = Instant::now();
    for _ in 0..kills {
        // A session healed by a restart is desynced again, so every kill can
        // land in some phase of desync -> restart -> recover.
        for s in BUDGET {
            budget.control().inject(s, Fault::Desync).expect("desync");
        }
        for s in CYCLE {
            cycle.control().inject(s, Fault::Desync).expect("desync");
        }
        let mut child = spawn(&cfg, &log);
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..900))).await;
        let mut c = child.0.take().expect("child");
        c.kill().expect("SIGKILL");
        let status = tokio::task::spawn_blocking(move || c.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(!status.success(), "the daemon exited by itself: {status}");
    }

    // A last run that is not killed: it follows up whatever the kills left
    // in flight, then stops cleanly.
    for s in BUDGET {
        budget.control().inject(s, Fault::Desync).expect("desync");
    }
    let mut child = spawn(&cfg, &log);
    let deadline = Instant::now() + Duration::from_secs(15);
    while BUDGET
        .iter()
        .any(|s| budget.control().restart_count(s) < MAX_RESTARTS)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = child.0.take().expect("child");
    signal(&c, "-TERM");
    let status = wait_exit(c).await;
    let elapsed = started.elapsed();
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "clean stop failed: {status}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains(KEY), "the API key is in the log");

    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&db))
        .await
        .expect("open db");
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .expect("integrity_check");
    assert_eq!(integrity, vec!["ok".to_string()], "seed {seed}");
    let dangling = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut conn)
        .await
        .expect("foreign_key_check")
        .len();
    assert_eq!(dangling, 0, "seed {seed}: dangling foreign keys");

    let results: Vec<(String, i64)> =
        sqlx::query_as("SELECT result, COUNT(*) FROM remediations GROUP BY result ORDER BY result")
            .fetch_all(&mut conn)
            .await
            .expect("results");
    conn.close().await.expect("close");

    let rows = intent_rows(&db).await;
    let mut restarts = 0;
    let mut orphans = 0;
    for (provider, sim, sessions) in [
        ("budget", &budget, &BUDGET[..]),
        ("cycle", &cycle, &CYCLE[..]),
    ] {
        for &session in sessions {
            let calls = restart_calls(sim, session);
            let intents = rows
                .get(&(provider.to_string(), session.to_string()))
                .cloned()
                .unwrap_or_default();
            let what =
                format!("seed {seed}: {provider}/{session} calls {calls:?} intents {intents:?}");
            // No restart without an intent row written since the previous one.
            let mut previous = i64::MIN;
            for &call in &calls {
                assert!(
                    intents.iter().any(|&at| at > previous && at <= call),
                    "a restart without its intent row: {what}"
                );
                previous = call;
            }
            assert!(intents.len() >= calls.len(), "{what}");
            // Backoff across daemon restarts, on the decisions (an intent
            // whose call a kill prevented still counts, as the budget does)
            // and on the calls.
            let ms = |d: i64| Duration::from_millis(u64::try_from(d).unwrap_or(0));
            for pair in calls.windows(2) {
                let gap = ms(pair[1] - pair[0]);
                assert!(
                    gap + DECISION_TO_CALL >= BACKOFF_INITIAL,
                    "restarts {gap:?} apart: {what}"
                );
            }
            for (step, pair) in intents.windows(2).enumerate() {
                let want = if provider == "budget" {
                    BACKOFF_INITIAL * 2u32.pow(u32::try_from(step.min(1)).unwrap_or(1))
                } else {
                    BACKOFF_INITIAL
                };
                let gap = ms(pair[1] - pair[0]);
                assert!(gap >= want, "decision {step}: {gap:?} < {want:?}: {what}");
            }
            if provider == "budget" {
                assert!(intents.len() <= MAX_RESTARTS, "max_restarts broken: {what}");
                assert_eq!(
                    intents.len(),
                    MAX_RESTARTS,
                    "the budget was never reached, so it was not tested: {what}"
                );
            }
            restarts += calls.len();
            orphans += intents.len() - calls.len();
        }
    }
    assert!(orphans <= kills, "{orphans} intent rows without a call");
    assert!(
        CYCLE
            .iter()
            .map(|s| cycle.control().restart_count(s))
            .sum::<usize>()
            >= 6,
        "the cycling sessions were hardly restarted: the kills missed the restarts"
    );
    eprintln!(
        "crash test: seed {seed}, {kills} SIGKILLs survived, {restarts} restarts, \
         {orphans} intents without a call, remediation results {results:?}, {elapsed:?}"
    );
}
