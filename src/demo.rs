//! `wa-watchdog demo`: the WAHA simulator with a handful of sessions and the
//! real daemon with short intervals, in one process, on a temporary
//! database. After a while one session gets the #2084 desync (every send
//! fails with HTTP 500 while WAHA still says WORKING); the demo prints every
//! state change as it happens, so a newcomer watches it caught and healed.
//! The daemon's HTTP server runs as in production, on an ephemeral loopback
//! port printed in the banner (`/metrics`, `/healthz`, `/api/v1/sessions`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::broadcast;

use crate::app::App;
use crate::clock::{Clock, Timestamp};
use crate::config::Config;
use crate::events::Event;
use crate::sim::waha::{self, Fault, WahaSimOptions};

const DEMO_KEY: &str = "demo-api-key";
const PROVIDER: &str = "waha-demo";

/// Timings of one demo run. [`DemoOptions::default`] is what the CLI runs;
/// tests use faster ones.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub sessions: usize,
    /// The session that gets the desync (1-based).
    pub victim: usize,
    pub desync_after: Duration,
    pub canary_interval: Duration,
    pub confirm_interval: Duration,
    /// The simulator's real-time wait before answering a restart (WAHA: 3 s).
    pub restart_reply_delay: Duration,
    /// Simulated time from a restart until the session is WORKING again.
    pub restart_working_after: Duration,
    /// Stop by itself after this long (None: until Ctrl-C).
    pub exit_after: Option<Duration>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            sessions: 4,
            victim: 2,
            desync_after: Duration::from_secs(20),
            canary_interval: Duration::from_secs(5),
            confirm_interval: Duration::from_secs(2),
            restart_reply_delay: Duration::from_secs(3),
            restart_working_after: Duration::from_secs(4),
            exit_after: None,
        }
    }
}

/// What a demo run saw, for its closing summary and for tests.
#[derive(Clone, Debug, Default)]
pub struct DemoReport {
    pub injected_at: Option<Timestamp>,
    pub restarted_at: Option<Timestamp>,
    pub healed_at: Option<Timestamp>,
    /// Sessions that were restarted, with how often.
    pub restarts: Vec<(String, usize)>,
}

fn session_name(i: usize) -> String {
    format!("demo-{i}")
}

fn humantime_str(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

fn config_text(db: &std::path::Path, url: &str, o: &DemoOptions) -> String {
    format!(
        r#"
[daemon]
database = {db:?}
listen = "127.0.0.1:0"
discovery_interval = "10s"

[canary]
interval = "{interval}"
jitter = 0.1
timeout = "10s"

[policy]
confirm_interval = "{confirm}"
restart_poll_interval = "1s"
restart_timeout = "1m"
backoff_initial = "10s"

[[provider]]
name = "{PROVIDER}"
kind = "waha"
url = "{url}"
api_key_env = "DEMO_WAHA_API_KEY"
sessions = ["*"]
"#,
        interval = humantime_str(o.canary_interval),
        confirm = humantime_str(o.confirm_interval),
    )
}

/// Runs the demo, writing its lines to `out`, until Ctrl-C (`shutdown`) or
/// `exit_after`.
pub async fn run(
    opts: DemoOptions,
    out: impl Fn(String) + Send + Sync + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<DemoReport> {
    let clock = Clock::system();
    let names: Vec<String> = (1..=opts.sessions).map(session_name).collect();
    let victim = session_name(opts.victim.clamp(1, opts.sessions.max(1)));
    let sim = waha::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        WahaSimOptions {
            api_key: Some(DEMO_KEY.to_string()),
            sessions: names.clone(),
            clock: clock.clone(),
            restart_reply_delay: opts.restart_reply_delay,
            restart_working_after: opts.restart_working_after,
            ..WahaSimOptions::default()
        },
    )
    .await
    .context("cannot start the WAHA simulator")?;
    let dir = tempfile_dir()?;
    let db = dir.join("wa-watchdog-demo.db");
    let text = config_text(&db, &sim.url(), &opts);
    let env = |name: &str| (name == "DEMO_WAHA_API_KEY").then(|| DEMO_KEY.to_string());
    let config = Config::from_toml_str(&text, dir.join("demo.toml"), &env)
        .map_err(|e| anyhow::anyhow!("demo config: {e}"))?;

    let app = App::build(config, clock.clone(), None).await?;
    out(format!(
        "wa-watchdog demo: a WAHA simulator with {} sessions and the watchdog, on this machine only.",
        opts.sessions
    ));
    out(format!(
        "  simulator  {}   (fault injection: {}/_sim/...)",
        sim.url(),
        sim.url()
    ));
    out(format!("  database   {}", db.display()));
    let http = app.http_addr();
    out(format!(
        "  metrics    http://{http}/metrics   (also /healthz, /readyz, /api/v1/sessions)"
    ));
    out(format!(
        "  canaries every {} per session; in ~{} {victim} starts failing every send",
        humantime_str(opts.canary_interval),
        humantime_str(opts.desync_after)
    ));
    out(
        "  while WAHA still reports it WORKING (WAHA issue #2084). Ctrl-C stops the demo."
            .to_string(),
    );
    out(String::new());

    let events = app.scheduler.subscribe();
    let report = std::sync::Arc::new(std::sync::Mutex::new(DemoReport::default()));
    let out = std::sync::Arc::new(out);

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(print_events(events, out.clone(), report.clone()));
    {
        let ctl = sim.control();
        let out = out.clone();
        let report = report.clone();
        let victim = victim.clone();
        let clock = clock.clone();
        let after = opts.desync_after;
        tasks.spawn(async move {
            tokio::time::sleep(after).await;
            match ctl.inject(&victim, Fault::Desync) {
                Ok(()) => {
                    lock(&report).injected_at = Some(clock.now());
                    out(format!(
                        "{}  ── injected: {victim} now answers every send with HTTP 500 \"server returned error 400\"; its status stays WORKING",
                        clock_text(clock.now())
                    ));
                }
                Err(e) => out(format!("cannot inject the desync: {e}")),
            }
        });
    }

    let exit_after = opts.exit_after;
    let stop = async move {
        match exit_after {
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = shutdown => {}
                }
            }
            None => shutdown.await,
        }
    };
    let result = app.run_until_stopped(stop).await;
    tasks.shutdown().await;

    let ctl = sim.control();
    let mut r = lock(&report).clone();
    r.restarts = names
        .iter()
        .map(|n| (n.clone(), ctl.restart_count(n)))
        .filter(|(_, c)| *c > 0)
        .collect();
    sim.shutdown().await;
    out(String::new());
    match (r.injected_at, r.healed_at) {
        (Some(i), Some(h)) => out(format!(
            "summary: {victim} desynced, was restarted and delivered again {:.1} s after the fault; restarts: {:?}",
            h.since(i).as_secs_f64(),
            r.restarts
        )),
        (Some(_), None) => out(format!(
            "summary: the fault was injected but the demo stopped before {victim} healed; restarts: {:?}",
            r.restarts
        )),
        _ => out("summary: stopped before the fault was injected".to_string()),
    }
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|()| r)
}

fn lock(r: &std::sync::Mutex<DemoReport>) -> std::sync::MutexGuard<'_, DemoReport> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A fresh private directory under the system temp dir.
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let base = std::env::temp_dir();
    for attempt in 0..100u32 {
        let dir = base.join(format!("wa-watchdog-demo-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).context("cannot create a temporary directory"),
        }
    }
    anyhow::bail!(
        "cannot create a temporary directory under {}",
        base.display()
    )
}

fn clock_text(t: Timestamp) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t.as_millis())
        .map(|d| {
            d.with_timezone(&chrono::Local)
                .format("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

async fn print_events(
    mut events: broadcast::Receiver<Event>,
    out: std::sync::Arc<impl Fn(String) + Send + Sync + 'static>,
    report: std::sync::Arc<std::sync::Mutex<DemoReport>>,
) {
    loop {
        let e = match events.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                out(format!("(demo output skipped {n} events)"));
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match e {
            Event::Transition {
                at,
                session,
                from,
                to,
                reason,
                ..
            } => {
                let mut r = lock(&report);
                if r.injected_at.is_some() {
                    if to == crate::machine::State::Restarting && r.restarted_at.is_none() {
                        r.restarted_at = Some(at);
                    }
                    if from == crate::machine::State::Recovering
                        && to == crate::machine::State::Healthy
                    {
                        r.healed_at = Some(at);
                    }
                }
                drop(r);
                let arrow = format!("{from} → {to}");
                out(format!(
                    "{}  {session:<8} {arrow:<26} {reason}",
                    clock_text(at)
                ));
            }
            Event::Remediation {
                at,
                session,
                stage,
                detail,
                ..
            } => {
                let what = match stage.as_str() {
                    "begin" => "restart requested (POST /api/sessions/{s}/restart)"
                        .replace("{s}", &session),
                    "called" => "restart accepted by WAHA; waiting for WORKING".to_string(),
                    other => format!("restart result: {other} {detail}"),
                };
                out(format!("{}  {session:<8} {what}", clock_text(at)));
            }
            Event::SessionAdded { at, session, .. } => {
                out(format!(
                    "{}  {session:<8} discovered; canaries start",
                    clock_text(at)
                ));
            }
            _ => {}
        }
    }
}
