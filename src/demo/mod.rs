//! `wa-watchdog demo`: the WAHA simulator with a handful of sessions, the
//! Green-API simulator with one instance, and the real daemon with short
//! intervals, in one process, on a temporary database. After a while one
//! WAHA session gets the #2084 desync (every send fails with HTTP 500 while
//! WAHA still says WORKING) and the Green-API instance's send queue stops
//! draining while it still says `authorized`; a third WAHA session starts
//! accepting sends (201) that never get an ack from WhatsApp (WAHA issue
//! #1721). The demo prints every state change as it happens, so a newcomer
//! watches all three caught and healed.
//! The daemon's HTTP server runs as in production, on an ephemeral loopback
//! port printed in the banner (the status page `/`, `/metrics`, `/healthz`,
//! `/api/v1/sessions`).

mod config;
mod events;
mod faults;
mod ring;
mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context;

use crate::app::App;
use crate::clock::{Clock, Timestamp};
use crate::config::Config;
use crate::sim::green_api::{self, GreenSimOptions, SimInstance};
use crate::sim::waha::{self, WahaSimOptions};

const DEMO_KEY: &str = "demo-api-key";
const DEMO_GREEN_TOKEN: &str = "demo-green-token";
const DEMO_GREEN_ID: &str = "1101000001";
const DEMO_GREEN_WID: &str = "79990000001@c.us";
const DEMO_HOOK_KEY: &str = "demo-webhook-hmac-key";
const DEMO_HOOK_TOKEN: &str = "demo-webhook-token";

/// Timings of one demo run. [`DemoOptions::default`] is what the CLI runs;
/// tests use faster ones.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub sessions: usize,
    /// The WAHA session that gets the desync (1-based).
    pub victim: usize,
    pub desync_after: Duration,
    /// When the Green-API instance's queue stops draining (None: never).
    pub green_stuck_after: Option<Duration>,
    /// The WAHA session whose sends stop being acked (1-based; None: no such
    /// fault), and when.
    pub never_acked: Option<(usize, Duration)>,
    pub canary_interval: Duration,
    pub confirm_interval: Duration,
    /// How long a Green-API canary may stay queued before it is `stuck`.
    pub ack_timeout: Duration,
    /// The simulator's real-time wait before answering a restart (WAHA: 3 s).
    pub restart_reply_delay: Duration,
    /// Time from a restart until the WAHA session is WORKING again.
    pub restart_working_after: Duration,
    /// Time a rebooted Green-API instance stays `starting`.
    pub reboot_starting_for: Duration,
    /// Stop by itself after this long (None: until Ctrl-C).
    pub exit_after: Option<Duration>,
    /// Webhooks on: the WAHA simulator pushes `message.ack` for every
    /// canary it acks (signed with HMAC-SHA512), so WAHA canaries are
    /// confirmed by the push before their read-back; the first Green-API
    /// canary is confirmed by an `outgoingMessageStatus` push, before the
    /// first look at the queue.
    pub webhooks: bool,
    /// When the simulator pushes an incoming `{{SWE003}}` to the Green-API
    /// instance (None: never; needs `webhooks`).
    pub swe003_after: Option<Duration>,
    /// A round-trip ring of two WAHA sessions and the Green-API instance
    /// (None: no ring).
    pub ring: Option<RingDemo>,
}

/// The demo's `[[ring]]`: WAHA sessions `members` (1-based) and the
/// Green-API instance, in that order; the second WAHA member stops
/// receiving after `inbound_dead_after` (WAHA issue #1931).
#[derive(Clone, Debug)]
pub struct RingDemo {
    pub members: (usize, usize),
    pub interval: Duration,
    pub deadline: Duration,
    pub inbound_dead_after: Option<Duration>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            sessions: 4,
            victim: 2,
            desync_after: Duration::from_secs(20),
            green_stuck_after: Some(Duration::from_secs(25)),
            never_acked: Some((3, Duration::from_secs(35))),
            canary_interval: Duration::from_secs(5),
            confirm_interval: Duration::from_secs(2),
            ack_timeout: Duration::from_secs(4),
            restart_reply_delay: Duration::from_secs(3),
            restart_working_after: Duration::from_secs(4),
            reboot_starting_for: Duration::from_secs(5),
            exit_after: None,
            webhooks: true,
            swe003_after: Some(Duration::from_secs(90)),
            ring: Some(RingDemo {
                members: (1, 4),
                interval: Duration::from_secs(10),
                deadline: Duration::from_secs(4),
                inbound_dead_after: Some(Duration::from_secs(30)),
            }),
        }
    }
}

/// One fault the demo injected and what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRecord {
    pub session: String,
    pub what: &'static str,
    pub injected_at: Timestamp,
    pub remedied_at: Option<Timestamp>,
    pub healed_at: Option<Timestamp>,
}

/// What a demo run saw, for its closing summary and for tests.
#[derive(Clone, Debug, Default)]
pub struct DemoReport {
    pub faults: Vec<FaultRecord>,
    /// Sessions that were restarted or rebooted, with how often.
    pub restarts: Vec<(String, usize)>,
}

impl DemoReport {
    pub fn fault(&self, session: &str) -> Option<&FaultRecord> {
        self.faults.iter().find(|f| f.session == session)
    }
}

fn session_name(i: usize) -> String {
    format!("demo-{i}")
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    ))
    .to_string()
}

/// What the demo's tasks share: where its lines go, its report and its clock.
struct Shared<O> {
    out: Arc<O>,
    report: Arc<Mutex<DemoReport>>,
    clock: Clock,
}

/// Runs the demo, writing its lines to `out`, until Ctrl-C (`shutdown`) or
/// `exit_after`.
pub async fn run(
    opts: DemoOptions,
    out: impl Fn(String) + Send + Sync + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<DemoReport> {
    let clock = Clock::system();
    let network = crate::sim::network::Network::default();
    let names: Vec<String> = (1..=opts.sessions).map(session_name).collect();
    let victim = session_name(opts.victim.clamp(1, opts.sessions.max(1)));
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let waha_sim = waha::start(
        loopback,
        WahaSimOptions {
            api_key: Some(DEMO_KEY.to_string()),
            sessions: names.clone(),
            clock: clock.clone(),
            restart_reply_delay: opts.restart_reply_delay,
            restart_working_after: opts.restart_working_after,
            // WhatsApp's SERVER ack a moment after the 201, as on a real server.
            ack_server_after: Duration::from_millis(300),
            ack_device_after: Duration::from_millis(800),
            network: Some(network.clone()),
            ..WahaSimOptions::default()
        },
    )
    .await
    .context("cannot start the WAHA simulator")?;
    let mut green_opts = GreenSimOptions::new(
        clock.clone(),
        vec![SimInstance::new(
            DEMO_GREEN_ID,
            DEMO_GREEN_TOKEN,
            DEMO_GREEN_WID,
        )],
    );
    green_opts.reboot_starting_for = opts.reboot_starting_for;
    green_opts.network = Some(network.clone());
    let green_sim = green_api::start(loopback, green_opts)
        .await
        .context("cannot start the Green-API simulator")?;

    let dir = private_temp_dir()?;
    let db = dir.join("wa-watchdog-demo.db");
    let text = config::config_text(&db, &waha_sim.url(), &green_sim.url(), &opts);
    let env = |name: &str| match name {
        "DEMO_WAHA_API_KEY" => Some(DEMO_KEY.to_string()),
        "DEMO_GREEN_API_TOKEN" => Some(DEMO_GREEN_TOKEN.to_string()),
        "DEMO_WAHA_HOOK_KEY" => Some(DEMO_HOOK_KEY.to_string()),
        "DEMO_GREEN_HOOK_TOKEN" => Some(DEMO_HOOK_TOKEN.to_string()),
        _ => None,
    };
    let config = Config::from_toml_str(&text, dir.join("demo.toml"), &env)
        .map_err(|e| anyhow::anyhow!("demo config: {e}"))?;

    let app = App::build(config, clock.clone(), None).await?;
    out(format!(
        "wa-watchdog demo: a WAHA simulator with {} sessions, a Green-API simulator with one \
         instance, and the watchdog, on this machine only.",
        opts.sessions
    ));
    out(format!(
        "  WAHA       {}   (faults: {}/_sim/...)",
        waha_sim.url(),
        waha_sim.url()
    ));
    out(format!(
        "  Green-API  {}   (faults: {}/_sim/...)",
        green_sim.url(),
        green_sim.url()
    ));
    out(format!("  database   {}", db.display()));
    out(format!(
        "  status     http://{}/   (the status page: open it in a browser)",
        app.http_addr()
    ));
    out(format!(
        "  metrics    http://{}/metrics   (also /healthz, /readyz, /api/v1/sessions)",
        app.http_addr()
    ));
    out(format!(
        "  canaries every {} per session. In ~{} {victim} starts failing every send while WAHA",
        human(opts.canary_interval),
        human(opts.desync_after)
    ));
    out("  still reports it WORKING (WAHA issue #2084).".to_string());
    if let Some((n, after)) = opts.never_acked {
        out(format!(
            "  In ~{} {} accepts every send (201) but WhatsApp never acks it (WAHA issue #1721).",
            human(after),
            session_name(n)
        ));
    }
    if let Some(after) = opts.green_stuck_after {
        out(format!(
            "  In ~{} the Green-API instance {DEMO_GREEN_ID} stops sending: messages sit in its \
             queue while it says `authorized`.",
            human(after)
        ));
    }
    if opts.webhooks {
        out(format!(
            "  webhooks   http://{}/webhooks/{{waha-demo,green-demo}}   (the simulators push to them: \
             WAHA message.ack, Green-API outgoingMessageStatus)",
            app.http_addr()
        ));
    }
    if let (true, Some(after)) = (opts.webhooks, opts.swe003_after) {
        out(format!(
            "  In ~{} Green-API pushes an incoming {{{{SWE003}}}} (stale keys): the instance needs pairing.",
            human(after)
        ));
    }
    if let Some(r) = &opts.ring {
        let (a, b) = (session_name(r.members.0), session_name(r.members.1));
        out(format!(
            "  ring       {a} → {b} → {DEMO_GREEN_ID} → {a}: every {} each member's canary goes to the \
             next member's number, which must see it within {}.",
            human(r.interval),
            human(r.deadline)
        ));
        if let Some(after) = r.inbound_dead_after {
            out(format!(
                "  In ~{} {b} stops receiving: messages to it vanish while it still sends and says \
                 WORKING (WAHA issue #1931).",
                human(after)
            ));
        }
    }
    out("  Ctrl-C stops the demo.".to_string());
    out(String::new());

    let events = app.scheduler.subscribe();
    let report = Arc::new(Mutex::new(DemoReport::default()));
    let out = Arc::new(out);

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(events::print(events, out.clone(), report.clone()));
    let shared = Shared {
        out: out.clone(),
        report: report.clone(),
        clock: clock.clone(),
    };
    faults::spawn(&mut tasks, &opts, &waha_sim, &green_sim, &shared, &victim);
    if let Some(r) = &opts.ring {
        let http = app.http_addr();
        ring::spawn(
            &mut tasks,
            r,
            opts.webhooks,
            &waha_sim,
            http,
            &network,
            &shared,
        );
    }
    if opts.webhooks {
        let http = app.http_addr();
        webhooks::spawn(
            &mut tasks,
            opts.swe003_after,
            &waha_sim,
            &green_sim,
            http,
            &shared,
        );
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

    let waha_ctl = waha_sim.control();
    let green_ctl = green_sim.control();
    let mut r = lock(&report).clone();
    r.restarts = names
        .iter()
        .map(|n| (n.clone(), waha_ctl.restart_count(n)))
        .chain(std::iter::once((
            DEMO_GREEN_ID.to_string(),
            green_ctl.count("reboot"),
        )))
        .filter(|(_, c)| *c > 0)
        .collect();
    waha_sim.shutdown().await;
    green_sim.shutdown().await;
    out(String::new());
    if r.faults.is_empty() {
        out("summary: stopped before any fault was injected".to_string());
    }
    for f in &r.faults {
        out(match f.healed_at {
            Some(h) => format!(
                "summary: {} ({}) was caught, {} and delivering again {:.1} s after the fault",
                f.session,
                f.what,
                if f.session == DEMO_GREEN_ID {
                    "rebooted"
                } else {
                    "restarted"
                },
                h.since(f.injected_at).as_secs_f64()
            ),
            None => format!(
                "summary: {} ({}) was not healed before the demo stopped",
                f.session, f.what
            ),
        });
    }
    out(format!("restarts and reboots: {:?}", r.restarts));
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|()| r)
}

/// The receiver's answer to a push, for the demo's lines.
fn answer(status: reqwest::Result<u16>) -> String {
    match status {
        Ok(code) => format!("HTTP {code}"),
        Err(e) => format!("not delivered: {}", e.without_url()),
    }
}

fn record_fault(report: &Mutex<DemoReport>, session: &str, what: &'static str, at: Timestamp) {
    lock(report).faults.push(FaultRecord {
        session: session.to_string(),
        what,
        injected_at: at,
        remedied_at: None,
        healed_at: None,
    });
}

fn lock(r: &Mutex<DemoReport>) -> MutexGuard<'_, DemoReport> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh private directory under the system temp dir.
fn private_temp_dir() -> anyhow::Result<std::path::PathBuf> {
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
