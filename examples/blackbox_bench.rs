//! Side by side with blackbox_exporter: what one probe costs the release
//! daemon compared with Prometheus's blackbox_exporter doing one HTTP POST
//! against the same WAHA stand-in, at the same rate, in the same window.
//!
//! Run through `scripts/bench-blackbox` (it installs Debian's `nginx-light`
//! and `prometheus-blackbox-exporter` when missing, builds the release
//! daemon and this example, and passes the daemon's path):
//!
//! ```sh
//! scripts/bench-blackbox 600 30s            # sessions, canary interval
//! scripts/bench-blackbox 10000 30s
//! scripts/bench-blackbox 100000 5m
//! scripts/bench-blackbox --smoke            # 2,000 sessions at 20 s (.ci/run)
//! ```
//!
//! What runs, all on 127.0.0.1:
//! - nginx serving N WAHA-shaped sessions with fixed answers: the session
//!   list (`GET /api/sessions`, a file), each session's status
//!   (`GET /api/sessions/{s}`: `WORKING`) and the send
//!   (`POST /api/sendText`: a message id with ack 1, so a canary is decided
//!   by the reply); keep-alive on;
//! - the release daemon (`wa-watchdog run`) discovering and probing them at
//!   the interval (status read + canary send, stored in SQLite);
//! - blackbox_exporter with one `http` module that POSTs a sendText body,
//!   driven from here through its `/probe` endpoint at the daemon's intended
//!   rate (sessions / interval), in the same window.
//!
//! It prints CPU µs per probe of both (from `/proc/<pid>/stat` utime+stime
//! over the window), their ratio, achieved vs intended rate, the daemon's
//! p50/p99 lateness (`wa_watchdog_probe_lateness_seconds`), RSS, database
//! bytes per probe, the time and size of a `/metrics` scrape, and — unless
//! `--no-restart` — the daemon restarted on its database: time to READY and
//! the canaries it sent in the first 60 s against what the schedule sends.
//!
//! `--keep` leaves the run's directory (logs, database) in place.
//!
//! `--smoke` fails on a crash (any of the three processes gone) or a rate
//! shortfall (less than 80 % of the intended rate, either side); never on
//! timing.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

const KEY: &str = "bench-waha-key";
const KEY_ENV: &str = "WA_WATCHDOG_BENCH_WAHA_KEY";
const PROVIDER: &str = "bench";
/// A fixed own number for every session (the canary goes to `me.id`).
const ME: &str = "10000000001@c.us";
/// Linux's USER_HZ: `/proc/<pid>/stat` times are in these ticks.
const TICKS_PER_SEC: f64 = 100.0;
/// The smoke test's floor: achieved / intended rate.
const SMOKE_MIN_RATE: f64 = 0.8;

struct Args {
    daemon: PathBuf,
    sessions: usize,
    interval: Duration,
    /// Measurement window (default: max(one interval, 60 s)).
    window: Option<Duration>,
    smoke: bool,
    restart: bool,
    /// `--keep`: leave the run's directory (daemon logs, database) in place.
    keep: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut daemon = None;
    let mut positional = Vec::new();
    let mut window = None;
    let mut smoke = false;
    let mut restart = true;
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--daemon" => daemon = args.next().map(PathBuf::from),
            "--window" => {
                let w = args.next().context("--window needs a duration")?;
                window =
                    Some(humantime::parse_duration(&w).with_context(|| format!("--window {w}"))?);
            }
            "--smoke" => smoke = true,
            "--no-restart" => restart = false,
            "--keep" => keep = true,
            _ if a.starts_with("--") => bail!("unknown option {a}"),
            _ => positional.push(a),
        }
    }
    let daemon = daemon.context("--daemon PATH (the release wa-watchdog binary) is required")?;
    let (default_n, default_interval) = if smoke { (2000, "20s") } else { (600, "30s") };
    let sessions = match positional.first() {
        Some(n) => n
            .parse()
            .with_context(|| format!("`{n}` is not a session count"))?,
        None => default_n,
    };
    let interval = positional.get(1).map_or(default_interval, String::as_str);
    let interval =
        humantime::parse_duration(interval).with_context(|| format!("interval `{interval}`"))?;
    ensure!(sessions > 0, "at least one session");
    ensure!(interval >= Duration::from_secs(1), "interval at least 1s");
    if smoke {
        window.get_or_insert(interval);
        restart = false;
    }
    Ok(Args {
        daemon,
        sessions,
        interval,
        window,
        smoke,
        restart,
        keep,
    })
}

fn main() -> ExitCode {
    // reqwest is built without a default TLS provider (the daemon installs
    // one when it builds its provider clients); this driver needs one too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("blackbox_bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("blackbox_bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blackbox_bench: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A child process killed (and reaped) when dropped.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> anyhow::Result<Proc> {
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc { name, child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited (a crash, for the smoke test).
    fn alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("{} exited: {status}", self.name),
        }
    }

    /// SIGTERM, then wait (up to `grace`) for a clean exit.
    fn stop(&mut self, grace: Duration) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "{} stopped with {status}", self.name);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{} did not stop within {grace:?}", self.name)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count from the ')'.
    let rest = stat.rsplit_once(')').context("/proc stat")?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next().context("utime")?.parse()?;
    let stime: u64 = fields.next().context("stime")?.parse()?;
    Ok((utime + stime) as f64 / TICKS_PER_SEC)
}

/// Resident memory now and at its peak, in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0))
}

/// The pids of nginx: its master and the master's children (workers).
fn nginx_pids(master: u32) -> Vec<u32> {
    let mut pids = vec![master];
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
    {
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    pids
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn write_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    f.write_all(text.as_bytes())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn session_name(i: usize) -> String {
    format!("s{i:06}")
}

fn nginx_conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    // Fixed answers; `$1` echoes the session's name as WAHA would.
    format!(
        r#"worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    default_type application/json;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
        location = /api/sessions {{ try_files /sessions.json =404; }}
        location ~ ^/api/sessions/([A-Za-z0-9_.-]+)$ {{
            return 200 '{{"name":"$1","status":"WORKING","me":{{"id":"{ME}","pushName":"bench"}},"engine":{{"engine":"WEBJS"}}}}';
        }}
        location = /api/sendText {{
            return 201 '{{"id":{{"fromMe":true,"remote":"{ME}","id":"BENCH","_serialized":"true_{ME}_BENCH"}},"ack":1}}';
        }}
    }}
}}
"#
    )
}

fn blackbox_conf() -> String {
    format!(
        r#"modules:
  waha_send:
    prober: http
    timeout: 5s
    http:
      method: POST
      headers:
        Content-Type: application/json
        X-Api-Key: {KEY}
      body: '{{"session":"s000001","chatId":"{ME}","text":"blackbox canary"}}'
      valid_status_codes: [201]
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
"#
    )
}

fn daemon_conf(dir: &Path, listen: u16, nginx: u16, interval: Duration) -> String {
    format!(
        "[daemon]\ndatabase = {:?}\nlisten = \"127.0.0.1:{listen}\"\n\
         [canary]\ninterval = \"{}\"\ntimeout = \"5s\"\n\
         [[provider]]\nname = \"{PROVIDER}\"\nkind = \"waha\"\nurl = \"http://127.0.0.1:{nginx}\"\n\
         api_key_env = \"{KEY_ENV}\"\nsessions = [\"*\"]\nmax_concurrent_probes = 64\n",
        dir.join("wa.db"),
        humantime::format_duration(interval)
    )
}

/// What one `/metrics` scrape says about the bench provider.
#[derive(Debug, Default, Clone)]
struct Scrape {
    canaries: f64,
    delivered: f64,
    sessions: f64,
    unknown: f64,
    /// `le` → cumulative count of `wa_watchdog_probe_lateness_seconds`.
    lateness: BTreeMap<u64, f64>,
    bytes: usize,
    took: Duration,
}

fn label_value<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let start = line.find(&format!("{label}=\""))? + label.len() + 2;
    let end = line[start..].find('"')? + start;
    Some(&line[start..end])
}

fn parse_scrape(text: &str) -> Scrape {
    let mut s = Scrape {
        bytes: text.len(),
        ..Scrape::default()
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        if label_value(series, "provider") != Some(PROVIDER) {
            continue;
        }
        if series.starts_with("wa_watchdog_canary_total{") {
            s.canaries += v;
            if label_value(series, "outcome") == Some("delivered") {
                s.delivered += v;
            }
        } else if series.starts_with("wa_watchdog_sessions{") {
            s.sessions += v;
            if label_value(series, "state") == Some("unknown") {
                s.unknown += v;
            }
        } else if series.starts_with("wa_watchdog_probe_lateness_seconds_bucket{") {
            if let Some(le) = label_value(series, "le") {
                let key = if le == "+Inf" {
                    u64::MAX
                } else {
                    (le.parse::<f64>().unwrap_or(0.0) * 1e6) as u64
                };
                s.lateness.insert(key, v);
            }
        }
    }
    s
}

/// The `q` quantile of a cumulative histogram (bounds in µs), interpolated
/// within its bucket like PromQL's `histogram_quantile`; None if empty.
fn quantile(buckets: &BTreeMap<u64, f64>, q: f64) -> Option<f64> {
    let total = *buckets.get(&u64::MAX)?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for (&le, &count) in buckets {
        if count >= rank {
            if le == u64::MAX {
                return Some(lower); // beyond the last bound: at least this
            }
            let upper = le as f64 / 1e6;
            let in_bucket = count - below;
            let frac = if in_bucket > 0.0 {
                (rank - below) / in_bucket
            } else {
                1.0
            };
            return Some(lower + (upper - lower) * frac);
        }
        lower = le as f64 / 1e6;
        below = count;
    }
    None
}

fn diff(a: &BTreeMap<u64, f64>, b: &BTreeMap<u64, f64>) -> BTreeMap<u64, f64> {
    b.iter()
        .map(|(le, v)| (*le, v - a.get(le).copied().unwrap_or(0.0)))
        .collect()
}

async fn scrape(http: &reqwest::Client, base: &str) -> anyhow::Result<Scrape> {
    let t = Instant::now();
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let mut s = parse_scrape(&text);
    s.took = t.elapsed();
    Ok(s)
}

/// Live database bytes (pages in use, WAL included), read beside the daemon.
async fn db_bytes(db: &Path) -> anyhow::Result<f64> {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await?;
    let page: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut conn)
        .await?;
    let count: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut conn)
        .await?;
    let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
        .fetch_one(&mut conn)
        .await?;
    Ok(((count - free) * page) as f64)
}

async fn wait_ready(
    http: &reqwest::Client,
    base: &str,
    daemon: &mut Proc,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        daemon.alive()?;
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(t.elapsed());
            }
        }
        ensure!(
            t.elapsed() < Duration::from_secs(600),
            "daemon not ready after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start_daemon(args: &Args, dir: &Path, log: &str) -> anyhow::Result<Proc> {
    Proc::spawn(
        "wa-watchdog",
        Command::new(&args.daemon)
            .args(["run", "--config"])
            .arg(dir.join("wa.toml"))
            .env(KEY_ENV, KEY)
            .env("RUST_LOG", "info"),
        &dir.join(log),
    )
}

/// Calls blackbox_exporter's `/probe` at `rate` per second until `stop`,
/// counting probes that succeeded (`probe_success 1`) and that failed.
async fn drive_blackbox(
    url: String,
    rate: f64,
    window: Duration,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("a plain HTTP client");
    let slots = Arc::new(tokio::sync::Semaphore::new(256));
    let start = tokio::time::Instant::now();
    let total = (rate * window.as_secs_f64()).round() as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let (http, url, ok, failed) = (http.clone(), url.clone(), ok.clone(), failed.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let good = match http.get(&url).send().await {
                Ok(r) => r
                    .text()
                    .await
                    .is_ok_and(|t| t.contains("\nprobe_success 1")),
                Err(_) => false,
            };
            if good {
                ok.fetch_add(1, Ordering::Relaxed)
            } else {
                failed.fetch_add(1, Ordering::Relaxed)
            };
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let n = args.sessions;
    let rate = n as f64 / args.interval.as_secs_f64();
    let window = args
        .window
        .unwrap_or_else(|| args.interval.max(Duration::from_secs(60)));
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());

    let dir = std::env::temp_dir().join(format!("wa-watchdog-blackbox-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("www"))?;
    std::fs::create_dir_all(dir.join("tmp"))?;
    // nginx's workers run as `nobody`: everything they read must be readable
    // by that user, the directories on the way included.
    for d in [dir.as_path(), &dir.join("www"), &dir.join("tmp")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
    }
    let result = bench(args, &dir, n, rate, window, cores).await;
    if result.is_ok() && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else if result.is_ok() {
        eprintln!("blackbox_bench: --keep: the run is in {}", dir.display());
    } else {
        eprintln!("blackbox_bench: logs kept in {}", dir.display());
    }
    result
}

async fn bench(
    args: &Args,
    dir: &Path,
    n: usize,
    rate: f64,
    window: Duration,
    cores: usize,
) -> anyhow::Result<()> {
    let list: Vec<String> = (1..=n)
        .map(|i| {
            format!(
                r#"{{"name":"{}","status":"WORKING","me":{{"id":"{ME}"}}}}"#,
                session_name(i)
            )
        })
        .collect();
    write_file(
        &dir.join("www/sessions.json"),
        &format!("[{}]", list.join(",")),
        0o644,
    )?;
    let (nginx_port, bb_port, listen) = (free_port()?, free_port()?, free_port()?);
    write_file(&dir.join("nginx.conf"), &nginx_conf(dir, nginx_port), 0o644)?;
    write_file(&dir.join("blackbox.yml"), &blackbox_conf(), 0o644)?;
    write_file(
        &dir.join("wa.toml"),
        &daemon_conf(dir, listen, nginx_port, args.interval),
        0o644,
    )?;

    println!(
        "blackbox_bench: {n} sessions, interval {}, intended {rate:.1} probes/s, window {}, {cores} cores",
        humantime::format_duration(args.interval),
        humantime::format_duration(window)
    );
    let mut nginx = Proc::spawn(
        "nginx",
        Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf")),
        &dir.join("nginx.out"),
    )?;
    let mut blackbox = Proc::spawn(
        "blackbox_exporter",
        Command::new("prometheus-blackbox-exporter")
            .arg(format!(
                "--config.file={}",
                dir.join("blackbox.yml").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{bb_port}"))
            .arg("--log.level=warn"),
        &dir.join("blackbox.log"),
    )?;
    let http = reqwest::Client::new();
    let nginx_url = format!("http://127.0.0.1:{nginx_port}");
    let bb_url = format!("http://127.0.0.1:{bb_port}");
    // Both answer before the daemon starts.
    let t = Instant::now();
    loop {
        nginx.alive()?;
        blackbox.alive()?;
        let a = http
            .get(format!("{nginx_url}/api/sessions/s000001"))
            .send()
            .await;
        let b = http.get(format!("{bb_url}/-/healthy")).send().await;
        if a.is_ok_and(|r| r.status().is_success()) && b.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(20),
            "nginx or blackbox_exporter not answering"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let base = format!("http://127.0.0.1:{listen}");
    let mut daemon = start_daemon(args, dir, "daemon.log")?;
    let ready = wait_ready(&http, &base, &mut daemon).await?;
    // Discovery adds the sessions (the first list is read at start).
    let t = Instant::now();
    loop {
        daemon.alive()?;
        let s = scrape(&http, &base).await?;
        if s.sessions as usize >= n {
            break;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(300),
            "only {} of {n} sessions watched after 5 minutes",
            s.sessions
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let watching = ready + t.elapsed();

    // The window: both sides at the same rate from the same instant.
    let db = dir.join("wa.db");
    let a = scrape(&http, &base).await?;
    let db_a = db_bytes(&db).await?;
    let (d0, b0) = (cpu_secs(daemon.pid())?, cpu_secs(blackbox.pid())?);
    let nginx_pids = nginx_pids(nginx.pid());
    let n0: f64 = nginx_pids.iter().filter_map(|p| cpu_secs(*p).ok()).sum();
    let t0 = Instant::now();
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let probe_url = format!("{bb_url}/probe?module=waha_send&target={nginx_url}/api/sendText");
    drive_blackbox(probe_url, rate, window, ok.clone(), failed.clone()).await;
    let driven = t0.elapsed();
    let (d1, b1) = (cpu_secs(daemon.pid())?, cpu_secs(blackbox.pid())?);
    let n1: f64 = nginx_pids.iter().filter_map(|p| cpu_secs(*p).ok()).sum();
    let b = scrape(&http, &base).await?;
    let db_b = db_bytes(&db).await?;
    let (rss, hwm) = rss_mib(daemon.pid())?;
    let (bb_rss, _) = rss_mib(blackbox.pid())?;
    daemon.alive()?;
    nginx.alive()?;
    blackbox.alive()?;
    // A second scrape, timed alone (the first one above also took a probe
    // count), plain and gzip as Prometheus asks.
    let timed = scrape(&http, &base).await?;
    let t = Instant::now();
    let gz = http
        .get(format!("{base}/metrics"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await?
        .bytes()
        .await?;
    let gz_took = t.elapsed();

    let secs = driven.as_secs_f64();
    let probes = b.canaries - a.canaries;
    let bb_ok = ok.load(Ordering::Relaxed) as f64;
    let bb_failed = failed.load(Ordering::Relaxed) as f64;
    let wa_rate = probes / secs;
    let bb_rate = bb_ok / secs;
    let wa_us = (d1 - d0) * 1e6 / probes.max(1.0);
    let bb_us = (b1 - b0) * 1e6 / (bb_ok + bb_failed).max(1.0);
    let late = diff(&a.lateness, &b.lateness);
    let fmt_q = |q: f64| quantile(&late, q).map_or("-".to_string(), |v| format!("{:.3} s", v));
    let cpu_share = (d1 - d0) / secs * 100.0;
    println!(
        "ratio (wa-watchdog / blackbox_exporter CPU per probe)  {:.2}",
        wa_us / bb_us.max(1e-9)
    );
    println!("{:<30}{:>16}{:>20}", "", "wa-watchdog", "blackbox_exporter");
    println!(
        "{:<30}{:>13.0} µs{:>17.0} µs",
        "CPU per probe", wa_us, bb_us
    );
    println!(
        "{:<30}{:>14.1} %{:>18.1} %",
        "CPU (share of one core)",
        cpu_share,
        (b1 - b0) / secs * 100.0
    );
    println!("{:<30}{:>14.1}/s{:>18.1}/s", "intended rate", rate, rate);
    println!(
        "{:<30}{:>14.1}/s{:>18.1}/s",
        "achieved rate", wa_rate, bb_rate
    );
    println!(
        "{:<30}{:>16.0}{:>20.0}",
        "probes in window",
        probes,
        bb_ok + bb_failed
    );
    println!(
        "{:<30}{:>16.0}{:>20.0}",
        "failed probes",
        probes - (b.delivered - a.delivered),
        bb_failed
    );
    println!("{:<30}{:>12.1} MiB{:>16.1} MiB", "RSS", rss, bb_rss);
    println!("{:<30}{:>12.1} MiB", "RSS peak", hwm);
    println!("{:<30}{:>16}", "lateness p50", fmt_q(0.5));
    println!("{:<30}{:>16}", "lateness p99", fmt_q(0.99));
    println!(
        "{:<30}{:>16.0}",
        "DB bytes per probe",
        (db_b - db_a) / probes.max(1.0)
    );
    println!("{:<30}{:>12.1} MiB", "DB size", db_b / 1_048_576.0);
    println!(
        "{:<30}{:>13.0} ms   ({} bytes; gzip {} bytes in {:.0} ms)",
        "/metrics scrape",
        timed.took.as_secs_f64() * 1000.0,
        timed.bytes,
        gz.len(),
        gz_took.as_secs_f64() * 1000.0
    );
    println!("{:<30}{:>14.2} s", "READY after start", ready.as_secs_f64());
    println!(
        "{:<30}{:>14.2} s",
        "all sessions watched after",
        watching.as_secs_f64()
    );
    println!(
        "{:<30}{:>13.0} ms   (both sides' requests)",
        "nginx CPU",
        (n1 - n0) * 1000.0
    );

    if args.smoke {
        ensure!(
            wa_rate >= SMOKE_MIN_RATE * rate,
            "rate shortfall: the daemon probed {wa_rate:.1}/s of {rate:.1}/s"
        );
        ensure!(
            bb_rate >= SMOKE_MIN_RATE * rate,
            "rate shortfall: blackbox_exporter probed {bb_rate:.1}/s of {rate:.1}/s"
        );
    }

    if args.restart {
        // The daemon restarted on its own database: READY, then the canaries
        // of the next 60 s against what the schedule sends in 60 s anyway.
        daemon.stop(Duration::from_secs(60))?;
        let mut daemon = start_daemon(args, dir, "daemon-restart.log")?;
        let ready = wait_ready(&http, &base, &mut daemon).await?;
        let t = Instant::now();
        let minute = Duration::from_secs(60);
        tokio::time::sleep(minute.saturating_sub(ready)).await;
        let after = scrape(&http, &base).await?;
        daemon.alive()?;
        let expected = rate * 60.0;
        println!(
            "{:<30}{:>14.2} s",
            "restart: READY after",
            ready.as_secs_f64()
        );
        println!(
            "{:<30}{:>16.0}   (the schedule: {expected:.0} in 60 s; measured over {:.0} s after READY)",
            "restart: canaries in 60 s",
            after.canaries,
            t.elapsed().as_secs_f64()
        );
        daemon.stop(Duration::from_secs(60))?;
    } else {
        daemon.stop(Duration::from_secs(60))?;
    }
    blackbox.stop(Duration::from_secs(10))?;
    // nginx leaves its workers a moment; QUIT is its graceful stop.
    let _ = Command::new("kill")
        .args(["-QUIT", &nginx.pid().to_string()])
        .status();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let b: BTreeMap<u64, f64> =
            [(1_000_000, 50.0), (2_000_000, 100.0), (u64::MAX, 100.0)].into();
        assert_eq!(quantile(&b, 0.5), Some(1.0));
        assert_eq!(quantile(&b, 0.75), Some(1.5));
    }
}
