//! Several replicas as real processes: two `wa-watchdog run` children on one
//! PostgreSQL database (the throwaway cluster of `common::postgres`) over
//! WAHA simulators on the system clock, killed with SIGKILL or frozen with
//! SIGSTOP the way a host dies or a VM stalls. From the simulators' call
//! logs and the store:
//!
//! - after kill -9 of one replica, every one of its sessions is probed again
//!   by the other within `lease_ttl` + one canary interval of the kill, and a
//!   desync injected at the kill is restarted exactly once;
//! - a replica frozen past its lease while a desync of its own session is
//!   pending issues no restart after it is resumed (fenced), while the
//!   replica that took the session over restarts it once.
//!
//! Real time, short leases (3 s, the shortest allowed) and a 1 s interval:
//! about 15 s per test. `failover_time_with_the_default_lease` measures the
//! failover with the default lease for README (ignored by default; the
//! command is in its comment).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::binary::{BIN, signal, system_sim};
use crate::common::{free_port, postgres};
use wa_watchdog::clock::{Clock, Timestamp};
use wa_watchdog::lease::{SHARDS, shard_of};
use wa_watchdog::sim::waha::{Fault, WahaSim};
use wa_watchdog::store::Store;

const KEY: &str = "waha-key-SEKRET-replicas-7c31";
const PROVIDER: &str = "waha";
/// `daemon.lease_ttl` of the quick tests: the shortest allowed.
const TTL: Duration = Duration::from_secs(3);
/// `canary.interval` of the quick tests (no jitter).
const INTERVAL: Duration = Duration::from_secs(1);
/// What the failover may take beyond `lease_ttl` + one interval: the lease
/// round's own database round trip and the loop waking up, on a machine
/// where four builds share two cores.
const SLACK: Duration = Duration::from_millis(500);

/// The replica's child process, killed (if still running) when dropped, so
/// a failing test leaves nothing behind.
struct Replica {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Replica {
    fn child(&self) -> &Child {
        self.child.as_ref().expect("running")
    }

    /// SIGKILL, waited for.
    fn kill(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().expect("SIGKILL");
        let _ = c.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Timings of one run: `None` keeps the daemon's default.
struct Timings {
    ttl: Option<Duration>,
    interval: Duration,
    desync_confirmations: u32,
    confirm_interval: Duration,
}

const QUICK: Timings = Timings {
    ttl: Some(TTL),
    interval: INTERVAL,
    desync_confirmations: 2,
    confirm_interval: Duration::from_millis(300),
};

fn config(name: &str, sim: &WahaSim, t: &Timings, sessions: &[String]) -> String {
    let ttl = t
        .ttl
        .map(|d| format!("lease_ttl = \"{}ms\"\n", d.as_millis()))
        .unwrap_or_default();
    let list = sessions
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[daemon]
database_url_env = "REPLICA_DATABASE_URL"
replica = "{name}"
{ttl}listen = "127.0.0.1:{listen}"
shutdown_grace = "1s"

[canary]
interval = "{interval}ms"
jitter = 0.0
timeout = "2s"
confirm = "accepted"

[policy]
desync_confirmations = {confirmations}
confirm_interval = "{confirm}ms"
restart_timeout = "5s"
restart_poll_interval = "100ms"
restart_call_timeout = "2s"
backoff_initial = "1s"
outage_min_sessions = 100

[[provider]]
name = "{PROVIDER}"
kind = "waha"
url = "{url}"
api_key_env = "REPLICA_WAHA_KEY"
sessions = [{list}]
"#,
        listen = free_port(),
        interval = t.interval.as_millis(),
        confirmations = t.desync_confirmations,
        confirm = t.confirm_interval.as_millis(),
        url = sim.url(),
    )
}

fn spawn(dir: &Path, db: &str, name: &'static str, config: &str) -> Replica {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, config).expect("config");
    let log = dir.join(format!("{name}.log"));
    let stderr = std::fs::File::create(&log).expect("log file");
    let child = Command::new(BIN)
        .args(["run", "--config", &cfg.to_string_lossy()])
        .env("REPLICA_DATABASE_URL", db)
        .env("REPLICA_WAHA_KEY", KEY)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("spawn daemon");
    Replica {
        name,
        child: Some(child),
        log,
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i:02}")).collect()
}

fn now() -> Timestamp {
    Clock::system().now()
}

/// Each shard's owner, `None` when free or expired (by the database's time
/// as this machine's clock tells it: one host).
async fn owners(store: &Store) -> BTreeMap<u32, Option<String>> {
    let at = now().as_millis();
    store
        .leases()
        .await
        .expect("leases")
        .into_iter()
        .map(|l| (l.shard, l.owner.filter(|_| l.expires_at > at)))
        .collect()
}

async fn shards_of(store: &Store, replica: &str) -> usize {
    owners(store)
        .await
        .values()
        .filter(|o| o.as_deref() == Some(replica))
        .count()
}

/// Waits (real time, bounded) until `pred` holds.
async fn wait_until<F, Fut>(what: &str, within: Duration, replicas: &[&Replica], mut pred: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !pred().await {
        if start.elapsed() > within {
            let logs: Vec<String> = replicas
                .iter()
                .map(|r| format!("--- {}:\n{}", r.name, r.log()))
                .collect();
            panic!(
                "timed out after {within:?} waiting for {what}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`wait_until`] for a check that needs no database.
async fn wait_for(
    what: &str,
    within: Duration,
    replicas: &[&Replica],
    mut pred: impl FnMut() -> bool,
) {
    wait_until(what, within, replicas, || std::future::ready(pred())).await;
}

/// The first request naming `session` at or after `after` (simulator clock).
fn first_call_after(sim: &WahaSim, session: &str, after: Timestamp) -> Option<Timestamp> {
    sim.control()
        .calls()
        .iter()
        .filter(|c| c.session.as_deref() == Some(session) && c.at >= after)
        .map(|c| c.at)
        .next()
}

fn ms(a: Timestamp, b: Timestamp) -> Duration {
    Duration::from_millis(u64::try_from(b.as_millis() - a.as_millis()).unwrap_or(0))
}

/// Starts `a`, waits until it holds every shard, then starts `b` and waits
/// until `b` holds some: `a` gives its highest shards up first, so its
/// lowest stay its own until it dies.
async fn pair(
    dir: &Path,
    db: &str,
    store: &Store,
    config_of: impl Fn(&str) -> String,
) -> (Replica, Replica) {
    let a = spawn(dir, db, "a", &config_of("a"));
    wait_until(
        "replica a to hold every shard",
        Duration::from_secs(20),
        &[&a],
        || async move { shards_of(store, "a").await == SHARDS as usize },
    )
    .await;
    let b = spawn(dir, db, "b", &config_of("b"));
    wait_until(
        "replica b to take shards over",
        Duration::from_secs(20),
        &[&a, &b],
        || async move { shards_of(store, "b").await >= 8 },
    )
    .await;
    (a, b)
}

/// Kills one of two replicas; measures, per session it owned, the time from
/// the kill to the survivor's first request for it. Returns (session,
/// failover) sorted by failover, and the lease time the dead replica had
/// left at the kill.
async fn kill_and_measure(
    sim: &WahaSim,
    store: &Store,
    a: &mut Replica,
    b: &Replica,
    fleet: &[String],
    within: Duration,
    at_kill: impl FnOnce(&[String]),
) -> (Vec<(String, Duration)>, Duration) {
    let owned = owners(store).await;
    let leases = store.leases().await.expect("leases");
    let mine: Vec<String> = fleet
        .iter()
        .filter(|s| {
            owned
                .get(&shard_of(PROVIDER, s))
                .cloned()
                .flatten()
                .as_deref()
                == Some("a")
        })
        .cloned()
        .collect();
    assert!(!mine.is_empty(), "replica a holds no session: {owned:?}");
    let lease_end = leases
        .iter()
        .filter(|l| l.owner.as_deref() == Some("a"))
        .map(|l| l.expires_at)
        .max()
        .expect("a's leases");
    a.kill();
    let killed = now();
    at_kill(&mine);
    wait_for(
        "the survivor to probe every session of the dead replica",
        within,
        &[b],
        || {
            mine.iter()
                .all(|s| first_call_after(sim, s, killed).is_some())
        },
    )
    .await;
    let mut failover: Vec<(String, Duration)> = mine
        .iter()
        .map(|s| {
            let at = first_call_after(sim, s, killed).expect("probed");
            (s.clone(), ms(killed, at))
        })
        .collect();
    failover.sort_by_key(|(_, d)| *d);
    let left = Duration::from_millis(u64::try_from(lease_end - killed.as_millis()).unwrap_or(0));
    (failover, left)
}

fn summary(failover: &[(String, Duration)]) -> String {
    let d: Vec<Duration> = failover.iter().map(|(_, d)| *d).collect();
    format!(
        "{} sessions, min {:.2} s, median {:.2} s, max {:.2} s",
        d.len(),
        d[0].as_secs_f64(),
        d[d.len() / 2].as_secs_f64(),
        d[d.len() - 1].as_secs_f64(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_replica_moves_its_sessions_within_ttl_plus_an_interval_and_a_desync_is_restarted_once()
 {
    let fleet = names(12);
    let refs: Vec<&str> = fleet.iter().map(String::as_str).collect();
    let sim = system_sim(KEY, &refs).await;
    let db = postgres::fresh_database().await;
    let store = Store::open_postgres(&db).await.expect("store");
    let dir = tempfile::tempdir().expect("dir");
    let (mut a, b) = pair(dir.path(), &db, &store, |n| config(n, &sim, &QUICK, &fleet)).await;
    // Every session probed once at least, so each has a stored schedule.
    wait_for(
        "a first probe of every session",
        Duration::from_secs(10),
        &[&a, &b],
        || fleet.iter().all(|s| sim.control().send_count(s) > 0),
    )
    .await;

    let mut victim = String::new();
    let (failover, left) = kill_and_measure(
        &sim,
        &store,
        &mut a,
        &b,
        &fleet,
        Duration::from_secs(20),
        |mine| {
            // A desync during the failover, on a session of the dead one.
            victim.clone_from(&mine[0]);
            sim.control()
                .inject(&victim, Fault::Desync)
                .expect("desync");
        },
    )
    .await;
    eprintln!(
        "failover after kill -9 (lease_ttl {TTL:?}, interval {INTERVAL:?}, lease left at the kill \
         {left:?}): {}",
        summary(&failover)
    );
    let bound = TTL + INTERVAL + SLACK;
    for (s, d) in &failover {
        assert!(
            *d <= bound,
            "{s} probed again {d:?} after the kill (bound {bound:?}): {failover:?}\n{}",
            b.log()
        );
    }

    // The desync is restarted by the survivor, once.
    wait_for(
        "the survivor to restart the desynced session",
        Duration::from_secs(15),
        &[&b],
        || sim.control().restart_count(&victim) >= 1,
    )
    .await;
    // Time for a second restart (a handover repeated, an intent replayed):
    // backoff 1 s, desync confirmed in 0.3 s, so a few seconds suffice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sim.control().restart_count(&victim), 1, "{}", b.log());
    let rows = store
        .recent_remediations(PROVIDER, &victim, None, 10)
        .await
        .expect("remediations");
    assert_eq!(rows.len(), 1, "one restart record: {rows:?}");
    // The session was healed: probed and delivering again after the restart.
    let restart_at = sim
        .control()
        .calls_matching("POST", &format!("/api/sessions/{victim}/restart"))[0]
        .at;
    let healed = store.list_sessions(false).await.expect("sessions");
    let row = healed
        .iter()
        .find(|r| r.session == victim)
        .expect("victim row");
    assert_eq!(row.machine.state, "healthy", "{row:?}");
    assert!(first_call_after(&sim, &victim, restart_at).is_some());
    assert!(!b.log().contains("panicked"), "{}", b.log());
    assert!(!b.log().contains(KEY), "the API key is in the log");
    store.close().await;
}

/// Slower confirmations, so a desync is pending (seen once, not yet
/// confirmed) for a second: long enough to freeze the replica then.
const PENDING: Timings = Timings {
    ttl: Some(TTL),
    interval: INTERVAL,
    desync_confirmations: 3,
    confirm_interval: Duration::from_secs(1),
};

/// Each replica talks to its own simulator of the same sessions (one
/// provider, two gateways): every request a simulator logs is that
/// replica's, so "no restart from the resumed replica" is read off its
/// simulator, and the session stays desynced there (nobody else restarts
/// it), so a replica that was not fenced would restart it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_frozen_past_its_lease_with_a_desync_pending_restarts_nothing_when_resumed() {
    let fleet = names(8);
    let refs: Vec<&str> = fleet.iter().map(String::as_str).collect();
    let sim_a = system_sim(KEY, &refs).await;
    let sim_b = system_sim(KEY, &refs).await;
    let db = postgres::fresh_database().await;
    let store = Store::open_postgres(&db).await.expect("store");
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = pair(dir.path(), &db, &store, |n| {
        let sim = if n == "a" { &sim_a } else { &sim_b };
        config(n, sim, &PENDING, &fleet)
    })
    .await;
    // The session frozen with the replica: a's lowest shard. When b holds
    // everything and a comes back, b gives its highest shards up first and
    // keeps its lower half, so this one stays b's after the resume (a
    // taking it back legitimately is not what this test is about).
    let owned = owners(&store).await;
    let victim = fleet
        .iter()
        .filter(|s| {
            owned
                .get(&shard_of(PROVIDER, s))
                .cloned()
                .flatten()
                .as_deref()
                == Some("a")
        })
        .min_by_key(|s| shard_of(PROVIDER, s))
        .cloned()
        .expect("a session of replica a");
    let shard = shard_of(PROVIDER, &victim);
    assert!(
        shard < SHARDS / 2,
        "{victim} in shard {shard}: pick other names"
    );
    wait_for(
        "a to probe its session",
        Duration::from_secs(10),
        &[&a, &b],
        || sim_a.control().send_count(&victim) > 0,
    )
    .await;

    // A desync on both gateways; a sees it once (1 of 3) and is frozen
    // with the confirmation probe due a second later.
    let injected = now();
    for sim in [&sim_a, &sim_b] {
        sim.control()
            .inject(&victim, Fault::Desync)
            .expect("desync");
    }
    wait_for(
        "a to see the desync once",
        Duration::from_secs(5),
        &[&a, &b],
        || {
            sim_a
                .control()
                .calls_matching("POST", "/api/sendText")
                .iter()
                .any(|c| c.session.as_deref() == Some(victim.as_str()) && c.at >= injected)
        },
    )
    .await;
    signal(a.child(), "-STOP");
    let frozen = Instant::now();

    // b takes the shard over once a's lease ran out; a is resumed then,
    // its desync still pending and its confirmation probe overdue.
    wait_until(
        "b to take the frozen replica's shard over",
        Duration::from_secs(15),
        &[&b],
        || {
            let store = &store;
            async move {
                owners(store)
                    .await
                    .get(&shard)
                    .cloned()
                    .flatten()
                    .as_deref()
                    == Some("b")
            }
        },
    )
    .await;
    let resumed = now();
    signal(a.child(), "-CONT");
    eprintln!("replica a frozen for {:?}", frozen.elapsed());

    // b restarts it (on its gateway) once; a, unfenced, would confirm the
    // desync in two more seconds and restart it on its own.
    wait_for(
        "b to restart the session",
        Duration::from_secs(15),
        &[&a, &b],
        || sim_b.control().restart_count(&victim) == 1,
    )
    .await;
    // a rejoins: b gives shards back to it (the highest ones).
    wait_until(
        "a to hold shards again",
        Duration::from_secs(15),
        &[&a, &b],
        || {
            let store = &store;
            async move { shards_of(store, "a").await > 0 }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert_eq!(sim_a.control().restart_count(&victim), 0, "{}", a.log());
    assert_eq!(
        first_call_after(&sim_a, &victim, resumed),
        None,
        "the resumed replica touched a session it no longer holds:\n{}",
        a.log()
    );
    assert_eq!(sim_b.control().restart_count(&victim), 1, "{}", b.log());
    let rows = store
        .recent_remediations(PROVIDER, &victim, None, 10)
        .await
        .expect("remediations");
    assert_eq!(rows.len(), 1, "one restart intent, b's: {rows:?}");
    assert_eq!(
        owners(&store)
            .await
            .get(&shard)
            .cloned()
            .flatten()
            .as_deref(),
        Some("b")
    );
    let log_a = a.log();
    assert!(
        log_a.contains("lease not renewed in time; dropping every shard"),
        "a did not notice it was frozen:\n{log_a}"
    );
    let mut a = a;
    let child = a.child.as_mut().expect("running");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "a exited:\n{log_a}"
    );
    assert!(!log_a.contains("panicked") && !b.log().contains("panicked"));
    store.close().await;
}

/// The failover time with the default `lease_ttl` (15 s) and a 10 s
/// interval, for README ("Several replicas"): kill -9 of one of two
/// replicas → the survivor's first request for each of the dead one's
/// sessions. About a minute; run it with
/// `cargo test --locked --test it failover_time_with_the_default_lease -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (about a minute): run it with --ignored --nocapture"]
async fn failover_time_with_the_default_lease() {
    let interval = Duration::from_secs(10);
    let timings = Timings {
        ttl: None,
        interval,
        ..QUICK
    };
    let fleet = names(32);
    let refs: Vec<&str> = fleet.iter().map(String::as_str).collect();
    let sim = system_sim(KEY, &refs).await;
    let db = postgres::fresh_database().await;
    let store = Store::open_postgres(&db).await.expect("store");
    let dir = tempfile::tempdir().expect("dir");
    let (mut a, b) = pair(dir.path(), &db, &store, |n| {
        config(n, &sim, &timings, &fleet)
    })
    .await;
    wait_for(
        "a first probe of every session",
        Duration::from_secs(30),
        &[&a, &b],
        || fleet.iter().all(|s| sim.control().send_count(s) > 0),
    )
    .await;
    let ttl = wa_watchdog::config::DEFAULT_LEASE_TTL;
    let (failover, left) =
        kill_and_measure(&sim, &store, &mut a, &b, &fleet, ttl + interval * 3, |_| {}).await;
    eprintln!(
        "failover after kill -9 (lease_ttl {ttl:?} (default), interval {interval:?}, lease left \
         at the kill {left:?}): {}",
        summary(&failover)
    );
    for (s, d) in &failover {
        assert!(*d <= ttl + interval + SLACK, "{s}: {d:?}");
    }
    store.close().await;
}
