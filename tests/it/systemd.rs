//! The systemd contract of the real binary, without systemd: `NOTIFY_SOCKET`
//! points at a datagram socket this test binds, and the test plays the
//! service manager — READY=1, WATCHDOG=1 at half of `WATCHDOG_USEC`,
//! RELOADING=1 … READY=1 around SIGHUP (a good and a broken config), and
//! STOPPING=1 on SIGTERM. Also: journald-friendly logs, JSON logs, and the
//! unit file checked by `systemd-analyze` when it is installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::UnixDatagram;

use crate::common::binary::{BIN, signal, system_sim, wait_exit, wait_for_db};
use wa_watchdog::sim::waha::WahaSim;
use wa_watchdog::store::{SessionRecord, Store};

const KEY: &str = "systemd-test-key-SEKRET-3b9f";

async fn sim(sessions: &[&str]) -> WahaSim {
    system_sim(KEY, sessions).await
}

fn config_text(db: &Path, url: &str, sessions: &str, extra_daemon: &str) -> String {
    format!(
        "[daemon]\ndatabase = {db:?}\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n{extra_daemon}\n\
         [canary]\ninterval = \"300ms\"\njitter = 0.0\ntimeout = \"2s\"\n\
         [policy]\nconfirm_interval = \"100ms\"\nrestart_poll_interval = \"100ms\"\n\
         [[provider]]\nname = \"waha\"\nkind = \"waha\"\nurl = \"{url}\"\napi_key_env = \"SYSTEMD_TEST_WAHA_KEY\"\n\
         sessions = {sessions}\n"
    )
}

/// Spawns `run`; stderr goes to a file (a pipe nobody reads could fill up).
fn spawn(config: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config", &config.to_string_lossy()])
        .env("SYSTEMD_TEST_WAHA_KEY", KEY)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn daemon")
}

/// The service manager's end of `NOTIFY_SOCKET`.
struct Manager {
    sock: UnixDatagram,
    path: PathBuf,
    /// Every datagram so far, with when it arrived.
    seen: Vec<(Instant, String)>,
}

impl Manager {
    fn bind(dir: &Path) -> Manager {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        Manager {
            sock,
            path,
            seen: Vec::new(),
        }
    }

    /// Reads datagrams until one has the line `line`; returns when it came.
    async fn expect(&mut self, line: &str, within: Duration, log: &Path) -> Instant {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.sock.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                    let now = Instant::now();
                    self.seen.push((now, msg.clone()));
                    if msg.lines().any(|l| l == line) {
                        return now;
                    }
                }
                Ok(Err(e)) => panic!("notify socket: {e}"),
                Err(_) => panic!(
                    "no {line} within {within:?}; got {:?}\nlog tail:\n{}",
                    self.seen.iter().map(|(_, m)| m).collect::<Vec<_>>(),
                    tail(log)
                ),
            }
        }
    }

    /// Datagrams (after index `from`) with line `line`, and when they came.
    fn times(&self, from: usize, line: &str) -> Vec<Instant> {
        self.seen[from..]
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == line))
            .map(|(t, _)| *t)
            .collect()
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text[text.len().saturating_sub(3000)..].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_ready_watchdog_reload_and_stopping() {
    let sim = sim(&["s1", "s2"]).await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("wd.db");
    let config = dir.path().join("config.toml");
    let log = dir.path().join("daemon.log");
    std::fs::write(&config, config_text(&db, &sim.url(), "[\"s1\"]", "")).expect("config");
    let mut manager = Manager::bind(dir.path());
    let socket = manager.path.to_string_lossy().to_string();
    let child = spawn(
        &config,
        &log,
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "2000000")],
    );

    // READY=1 once the store is open and the schedule loaded.
    manager
        .expect("READY=1", Duration::from_secs(20), &log)
        .await;
    assert!(db.exists(), "READY before the database exists");
    // STATUS= comes with it and then follows the summary.
    assert!(manager.seen[0].1.contains("STATUS="), "{:?}", manager.seen);

    // WATCHDOG=1 about every second (half of WATCHDOG_USEC = 2 s).
    let from = manager.seen.len();
    let start = Instant::now();
    while Instant::now() < start + Duration::from_millis(3500) {
        manager
            .expect("WATCHDOG=1", Duration::from_secs(2), &log)
            .await;
    }
    let pings = manager.times(from, "WATCHDOG=1");
    assert!(pings.len() >= 3, "{} pings in 3.5 s", pings.len());
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap < Duration::from_millis(1600), "pings {gap:?} apart");
    }
    wait_for_db(&db, "s1 healthy", |rows| {
        rows.iter()
            .any(|r| r.session == "s1" && r.machine.state == "healthy")
    })
    .await;
    if !manager
        .seen
        .iter()
        .any(|(_, m)| m.contains("STATUS=1 healthy\n"))
    {
        manager
            .expect("STATUS=1 healthy", Duration::from_secs(5), &log)
            .await;
    }

    // SIGHUP with a changed config: RELOADING=1 … READY=1, and s2 is watched.
    std::fs::write(
        &config,
        config_text(&db, &sim.url(), "[\"s1\", \"s2\"]", ""),
    )
    .expect("config");
    let from = manager.seen.len();
    signal(&child, "-HUP");
    manager
        .expect("RELOADING=1", Duration::from_secs(5), &log)
        .await;
    manager
        .expect("READY=1", Duration::from_secs(5), &log)
        .await;
    assert!(
        manager.seen[from].1.contains("MONOTONIC_USEC="),
        "{:?}",
        manager.seen[from]
    );
    wait_for_db(&db, "s2 watched and healthy after the reload", |rows| {
        rows.iter()
            .any(|r| r.session == "s2" && r.machine.state == "healthy")
    })
    .await;

    // SIGHUP with a broken config: rejected naming the key, old one kept.
    std::fs::write(
        &config,
        config_text(&db, &sim.url(), "[\"s1\"]", "").replace("jitter = 0.0", "jitter = 2.0"),
    )
    .expect("config");
    signal(&child, "-HUP");
    manager
        .expect("RELOADING=1", Duration::from_secs(5), &log)
        .await;
    manager
        .expect("READY=1", Duration::from_secs(5), &log)
        .await;
    let probes_of = |rows: &[SessionRecord], s: &str| {
        rows.iter()
            .find(|r| r.session == s)
            .and_then(|r| r.machine.last_probe_at)
    };
    let store = Store::open_read_only(&db).await.expect("db");
    let rows = store.list_sessions(false).await.expect("rows");
    store.close().await;
    let s2_before = probes_of(&rows, "s2");
    wait_for_db(&db, "s2 still probed (the old config stays)", |rows| {
        probes_of(rows, "s2") > s2_before
    })
    .await;
    // The watchdog is still fed.
    manager
        .expect("WATCHDOG=1", Duration::from_secs(2), &log)
        .await;

    // SIGTERM: STOPPING=1, then a clean exit.
    signal(&child, "-TERM");
    manager
        .expect("STOPPING=1", Duration::from_secs(5), &log)
        .await;
    let status = wait_exit(child).await;
    let logs = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(0), "{}", tail(&log));

    assert!(logs.contains("configuration reloaded"), "{}", tail(&log));
    let rejected = logs
        .lines()
        .find(|l| l.contains("configuration reload rejected"))
        .unwrap_or_else(|| panic!("no rejection logged:\n{}", tail(&log)));
    assert!(rejected.contains("canary.jitter"), "{rejected}");
    assert!(!logs.contains(KEY), "the API key is in the logs");
    // journald-friendly: stderr is a file here, so no colours and no
    // timestamps of our own; state changes are one structured line.
    assert!(!logs.contains('\u{1b}'), "ANSI escapes in the logs");
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.starts_with(" INFO")
                || line.starts_with(" WARN")
                || line.starts_with("ERROR")
                || line.starts_with("DEBUG")
                || line.starts_with("TRACE"),
            "line does not start with its level: {line:?}"
        );
    }
    let change = logs
        .lines()
        .find(|l| l.contains("state change"))
        .expect("a state change");
    for field in ["provider=waha", "session=", "from=", "to=", "reason="] {
        assert!(change.contains(field), "{field} missing in {change:?}");
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notify_socket_nothing_is_sent_and_json_logs_are_structured() {
    let sim = sim(&["s1"]).await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("wd.db");
    let config = dir.path().join("config.toml");
    let log = dir.path().join("daemon.log");
    std::fs::write(
        &config,
        config_text(&db, &sim.url(), "[\"s1\"]", "log_format = \"json\""),
    )
    .expect("config");
    // A socket exists but NOTIFY_SOCKET does not name it: nothing arrives.
    let manager = Manager::bind(dir.path());
    let child = spawn(&config, &log, &[("JOURNAL_STREAM", "8:12345")]);
    wa_watchdog_wait_healthy(&db).await;
    let mut buf = [0u8; 512];
    let got = tokio::time::timeout(Duration::from_millis(1500), manager.sock.recv(&mut buf)).await;
    assert!(got.is_err(), "a datagram arrived without NOTIFY_SOCKET");
    signal(&child, "-TERM");
    assert_eq!(wait_exit(child).await.code(), Some(0), "{}", tail(&log));

    let logs = std::fs::read_to_string(&log).expect("log");
    let mut changes = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        // Under journald (JOURNAL_STREAM set) the journal timestamps lines.
        assert!(v.get("timestamp").is_none(), "{line}");
        if v["message"] == "state change" {
            changes += 1;
            for field in ["provider", "session", "from", "to", "reason"] {
                assert!(v[field].is_string(), "{field} missing in {line}");
            }
        }
    }
    assert!(changes >= 1, "{logs}");
    sim.shutdown().await;
}

async fn wa_watchdog_wait_healthy(db: &Path) {
    wait_for_db(db, "s1 healthy", |rows| {
        rows.iter()
            .any(|r| r.session == "s1" && r.machine.state == "healthy")
    })
    .await;
}

/// The unit file, checked the way `.ci/run` checks it: `systemd-analyze
/// verify` prints nothing and `security --offline=true` rates its exposure
/// at most 1.5. Skipped (with a note) where systemd-analyze is missing; CI
/// has it. The unit points at /usr/local/bin/wa-watchdog; the check uses a
/// copy whose ExecStart= points at the binary under test, so nothing needs
/// installing.
#[test]
fn the_unit_file_verifies_cleanly_and_is_hardened() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed: unit file check skipped");
        return;
    }
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/wa-watchdog.service");
    let text = std::fs::read_to_string(&unit).expect("unit file");
    assert!(
        text.contains("ExecStart=/usr/local/bin/wa-watchdog run"),
        "{text}"
    );
    let dir = tempfile::tempdir().expect("dir");
    let copy = dir.path().join("wa-watchdog.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/wa-watchdog", BIN)).expect("copy");

    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "verify failed: {stderr}");
    assert!(stderr.trim().is_empty(), "verify complained:\n{stderr}");

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze security");
    let out = String::from_utf8_lossy(&security.stdout);
    let exposure = out
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for wa-watchdog.service:")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
        })
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{out}\n{}",
                String::from_utf8_lossy(&security.stderr)
            )
        });
    assert!(exposure <= 1.5, "exposure {exposure} > 1.5:\n{out}");
}

/// `WATCHDOG_PID` names another process: the watchdog is not ours to feed
/// (systemd sets it so a forked child does not ping for its parent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watchdog_for_another_pid_is_not_fed() {
    let sim = sim(&["s1"]).await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("wd.db");
    let config = dir.path().join("config.toml");
    let log = dir.path().join("daemon.log");
    std::fs::write(&config, config_text(&db, &sim.url(), "[\"s1\"]", "")).expect("config");
    let mut manager = Manager::bind(dir.path());
    let socket = manager.path.to_string_lossy().to_string();
    let child = spawn(
        &config,
        &log,
        &[
            ("NOTIFY_SOCKET", &socket),
            ("WATCHDOG_USEC", "2000000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    manager
        .expect("READY=1", Duration::from_secs(20), &log)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&child, "-TERM");
    manager
        .expect("STOPPING=1", Duration::from_secs(5), &log)
        .await;
    assert_eq!(wait_exit(child).await.code(), Some(0), "{}", tail(&log));
    assert!(
        manager.times(0, "WATCHDOG=1").is_empty(),
        "{:?}",
        manager.seen
    );
    sim.shutdown().await;
}
