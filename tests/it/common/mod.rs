//! The test harness: a WAHA simulator on 127.0.0.1:0, a real SQLite file in
//! a temp dir, and the real scheduler, all on one manual clock that the test
//! moves. Nothing is faked but WhatsApp itself.

#![allow(dead_code)] // `it` and `hostile_corpus` use different parts of the harness

pub mod backends;
pub mod binary;
pub mod daemon;
pub mod grafana;
pub mod page;
pub mod postgres;
pub mod store;
pub mod tools;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::broadcast;

use wa_watchdog::clock::{Clock, Timestamp};
use wa_watchdog::config::Config;
use wa_watchdog::events::Event;
use wa_watchdog::machine::State;
use wa_watchdog::metrics::Metrics;
use wa_watchdog::scheduler::{Parts, Scheduler};
use wa_watchdog::sim::waha::{self, Fault, SimControl, WahaSim, WahaSimOptions};
use wa_watchdog::store::Store;

/// The WAHA API key the simulator demands; distinctive so a leak is easy to grep.
pub const API_KEY: &str = "waha-key-SEKRET-7c1d9e";
pub const PROVIDER: &str = "waha";

pub fn t0() -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000)
}

/// Settings of one harness; every key is a config key.
#[derive(Clone, Debug)]
pub struct Settings {
    pub canary: BTreeMap<&'static str, String>,
    pub policy: BTreeMap<&'static str, String>,
    pub provider: BTreeMap<&'static str, String>,
    pub daemon: BTreeMap<&'static str, String>,
    /// Appended to the file as is (more `[[provider]]` or `[[maintenance]]`
    /// tables); `{sim}` is replaced by the simulator's URL.
    pub extra: String,
}

impl Default for Settings {
    fn default() -> Self {
        let mut s = Settings {
            canary: BTreeMap::new(),
            policy: BTreeMap::new(),
            provider: BTreeMap::new(),
            daemon: BTreeMap::new(),
            extra: String::new(),
        };
        s.canary("interval", "\"2s\"")
            .canary("jitter", "0.0")
            .canary("timeout", "\"2s\"")
            .policy("confirm_interval", "\"1s\"")
            .policy("restart_timeout", "\"30s\"")
            .policy("restart_poll_interval", "\"1s\"")
            .policy("backoff_initial", "\"10s\"")
            .policy("backoff_max", "\"1m\"")
            .policy("starting_grace", "\"20s\"")
            .provider("sessions", "[\"*\"]")
            .daemon("discovery_interval", "\"10s\"")
            // Retire at the first list without the session: the grace has
            // tests of its own (tests/discovery_grace.rs).
            .daemon("retire_after_rounds", "1")
            .daemon("retire_after", "\"0s\"");
        s
    }
}

impl Settings {
    pub fn canary(&mut self, k: &'static str, v: &str) -> &mut Self {
        self.canary.insert(k, v.to_string());
        self
    }
    pub fn policy(&mut self, k: &'static str, v: &str) -> &mut Self {
        self.policy.insert(k, v.to_string());
        self
    }
    pub fn provider(&mut self, k: &'static str, v: &str) -> &mut Self {
        self.provider.insert(k, v.to_string());
        self
    }
    pub fn daemon(&mut self, k: &'static str, v: &str) -> &mut Self {
        self.daemon.insert(k, v.to_string());
        self
    }

    /// The config file text: the daemon, canary and policy tables, then
    /// `provider_block` (a `[[provider]]` table without its extra keys),
    /// then this harness's provider keys, then `extra` with `{sim}` replaced
    /// by `sim_url`.
    pub fn toml(&self, db: &std::path::Path, provider_block: &str, sim_url: &str) -> String {
        let table = |m: &BTreeMap<&'static str, String>| {
            m.iter()
                .map(|(k, v)| format!("{k} = {v}\n"))
                .collect::<String>()
        };
        // A `database` among the daemon keys (a PostgreSQL URL,
        // `backends::Backend::settings`) replaces the harness's SQLite file.
        let database = if self.daemon.contains_key("database") {
            String::new()
        } else {
            format!("database = {db:?}\n")
        };
        format!(
            "[daemon]\n{database}{}\n[canary]\n{}\n[policy]\n{}\n{provider_block}{}\n{}",
            table(&self.daemon),
            table(&self.canary),
            table(&self.policy),
            table(&self.provider),
            self.extra.replace("{sim}", sim_url),
        )
    }

    /// The config text with this harness's WAHA provider at `url`.
    pub fn waha_toml(&self, db: &std::path::Path, url: &str) -> String {
        self.toml(
            db,
            &format!(
                "[[provider]]\nname = \"{PROVIDER}\"\nkind = \"waha\"\nurl = \"{url}\"\napi_key_env = \"WAHA_API_KEY\"\n"
            ),
            url,
        )
    }
}

/// The scheduler under test, its store and what it reported: shared by the
/// WAHA and Green-API harnesses.
pub struct Driver {
    pub clock: Clock,
    pub scheduler: Scheduler,
    pub store: Store,
    pub config: Config,
    pub metrics: std::sync::Arc<Metrics>,
    pub dir: tempfile::TempDir,
    /// The provider sessions belong to in the helpers below.
    pub provider: String,
    events: broadcast::Receiver<Event>,
    /// Everything that happened so far.
    pub log: Vec<Event>,
}

impl Driver {
    /// Builds a scheduler from `config_text` on a database in `dir`.
    pub async fn build(
        clock: Clock,
        dir: tempfile::TempDir,
        config_text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        provider: &str,
    ) -> Driver {
        let config = Config::from_toml_str(config_text, dir.path().join("config.toml"), env)
            .unwrap_or_else(|e| panic!("test config: {e}\n{config_text}"));
        let store = Store::open_database(&config.daemon.database)
            .await
            .expect("open store");
        let metrics = std::sync::Arc::new(Metrics::new());
        let scheduler = Scheduler::build(
            &config,
            Parts {
                clock: clock.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
                seed: Some(7),
            },
        )
        .await
        .expect("build scheduler");
        let events = scheduler.subscribe();
        Driver {
            clock,
            scheduler,
            store,
            config,
            metrics,
            dir,
            provider: provider.to_string(),
            events,
            log: Vec::new(),
        }
    }
}

/// The WAHA harness: a simulator plus the [`Driver`].
pub struct Harness {
    pub sim: WahaSim,
    pub ctl: SimControl,
    pub d: Driver,
}

impl std::ops::Deref for Harness {
    type Target = Driver;
    fn deref(&self) -> &Driver {
        &self.d
    }
}

impl std::ops::DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Driver {
        &mut self.d
    }
}

pub async fn sim(sessions: &[&str], clock: &Clock) -> WahaSim {
    let opts = WahaSimOptions {
        api_key: Some(API_KEY.to_string()),
        sessions: sessions.iter().map(|s| s.to_string()).collect(),
        clock: clock.clone(),
        ..WahaSimOptions::default()
    };
    waha::start("127.0.0.1:0".parse().expect("addr"), opts)
        .await
        .expect("start the WAHA simulator")
}

/// [`Harness::start`], then five seconds for every session to turn healthy
/// (asserted).
pub async fn healthy_fleet(names: &[&str], settings: &Settings) -> Harness {
    let mut h = Harness::start(names, settings).await;
    h.run_for(Duration::from_secs(5)).await;
    for n in names {
        assert_eq!(h.state(n), State::Healthy, "{n} after warm-up");
    }
    h
}

pub fn env(name: &str) -> Option<String> {
    (name == "WAHA_API_KEY").then(|| API_KEY.to_string())
}

/// A port that was free a moment ago (bound to 127.0.0.1:0 and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// The SQLite database at `db` with its `-wal` and `-shm` files, as text, for
/// tests that grep it for secrets. Close the store first.
pub fn database_text(db: &std::path::Path) -> String {
    let mut bytes = std::fs::read(db).expect("db");
    for suffix in ["-wal", "-shm"] {
        if let Ok(more) = std::fs::read(format!("{}{suffix}", db.display())) {
            bytes.extend(more);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs `h` in quarter-second steps until `pred` holds or `limit` passes;
/// returns the time it took.
pub async fn run_until<H: std::ops::DerefMut<Target = Driver>>(
    h: &mut H,
    limit: Duration,
    mut pred: impl FnMut(&H) -> bool,
) -> Option<Duration> {
    let start = h.now();
    let end = start.plus(limit);
    while h.now() < end {
        h.run_for(Duration::from_millis(250)).await;
        if pred(h) {
            return Some(h.now().since(start));
        }
    }
    None
}

impl Harness {
    pub async fn run_until(
        &mut self,
        limit: Duration,
        pred: impl FnMut(&Harness) -> bool,
    ) -> Option<Duration> {
        run_until(self, limit, pred).await
    }

    pub async fn start(sessions: &[&str], settings: &Settings) -> Harness {
        let clock = Clock::manual(t0());
        let sim = sim(sessions, &clock).await;
        let dir = tempfile::tempdir().expect("tempdir");
        Self::with(clock, sim, dir, settings).await
    }

    /// Builds a scheduler around an existing simulator and database directory.
    pub async fn with(
        clock: Clock,
        sim: WahaSim,
        dir: tempfile::TempDir,
        settings: &Settings,
    ) -> Harness {
        let db = dir.path().join("watchdog.db");
        let text = settings.waha_toml(&db, &sim.url());
        let d = Driver::build(clock, dir, &text, &env, PROVIDER).await;
        let ctl = sim.control();
        Harness { sim, ctl, d }
    }

    /// Desyncs `session` with restarts that do not heal it, and runs until the
    /// first attempt failed and the session waits in backoff.
    pub async fn fail_first_restart(&mut self, session: &str) {
        self.ctl.inject(session, Fault::Desync).expect("desync");
        self.ctl
            .inject(session, Fault::RestartDoesNotHeal)
            .expect("no heal");
        self.run_until(Duration::from_secs(60), |h| {
            h.state(session) == State::Desynced && h.ctl.restart_count(session) == 1
        })
        .await
        .expect("first attempt failed");
    }

    /// Runs in half-second steps until five seconds past `deadline` (the end
    /// of the backoff after [`Harness::fail_first_restart`]) and returns when
    /// the second restart of `session` was seen.
    pub async fn second_restart(&mut self, session: &str, deadline: Timestamp) -> Timestamp {
        let mut second = None;
        while self.now() < deadline.plus(Duration::from_secs(5)) {
            self.run_for(Duration::from_millis(500)).await;
            if self.ctl.restart_count(session) == 2 && second.is_none() {
                second = Some(self.now());
            }
        }
        second.expect("second attempt after the backoff")
    }

    /// Stops this scheduler and starts a new one on the same database,
    /// simulator and clock: a daemon restart.
    pub async fn restart_daemon(self, settings: &Settings) -> Harness {
        let Harness { sim, d, .. } = self;
        let Driver {
            clock,
            scheduler,
            store,
            dir,
            ..
        } = d;
        drop(scheduler);
        store.close().await;
        Self::with(clock, sim, dir, settings).await
    }

    /// Reloads the scheduler with the config `settings` describe.
    pub async fn reload(
        &mut self,
        settings: &Settings,
    ) -> Result<wa_watchdog::scheduler::ReloadReport, wa_watchdog::scheduler::ReloadError> {
        let config = self.config_for(settings);
        self.d.scheduler.reload(&config).await
    }

    /// The config `settings` describe for this harness's database and
    /// simulator (what a reload would read).
    pub fn config_for(&self, settings: &Settings) -> Config {
        let text = settings.waha_toml(&self.dir.path().join("watchdog.db"), &self.sim.url());
        Config::from_toml_str(&text, self.dir.path().join("config.toml"), &env)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
    }
}

impl Driver {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Moves the clock forward by `d`, running everything due on the way.
    pub async fn run_for(&mut self, d: Duration) {
        self.scheduler.advance(d, Duration::from_millis(250)).await;
        self.collect();
    }

    fn collect(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(e) => self.log.push(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => panic!("test lost {n} events"),
                Err(_) => break,
            }
        }
    }

    pub fn state(&self, session: &str) -> State {
        self.scheduler
            .machine(&self.provider, session)
            .map(|m| m.persisted.state)
            .unwrap_or_else(|| panic!("session {session} not watched"))
    }

    /// `(from, to, reason)` of every transition of `session` so far.
    pub fn transitions(&self, session: &str) -> Vec<(State, State, String)> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Event::Transition {
                    session: s,
                    from,
                    to,
                    reason,
                    ..
                } if s == session => Some((*from, *to, reason.clone())),
                _ => None,
            })
            .collect()
    }

    /// States `session` went through, in order (without repeats).
    pub fn path(&self, session: &str) -> Vec<State> {
        let t = self.transitions(session);
        let mut v: Vec<State> = t.first().map(|x| vec![x.0]).unwrap_or_default();
        v.extend(t.iter().map(|x| x.1));
        v
    }

    /// When `session` first entered `state` after `after`.
    pub fn entered(&self, session: &str, state: State, after: Timestamp) -> Option<Timestamp> {
        self.log.iter().find_map(|e| match e {
            Event::Transition {
                at, session: s, to, ..
            } if s == session && *to == state && *at >= after => Some(*at),
            _ => None,
        })
    }

    /// Outcomes of the probes of `session`, in order.
    pub fn outcomes(&self, session: &str) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Event::Probe {
                    session: s,
                    outcome,
                    ..
                } if s == session => Some(outcome.as_str().to_string()),
                _ => None,
            })
            .collect()
    }
}

pub const GREEN_PROVIDER: &str = "green";
pub const GREEN_ID: &str = "1101000001";
/// Distinctive, so a leak is easy to grep.
pub const GREEN_TOKEN: &str = "gr33n-tok3n-SEKRET-9f8e7d";
pub const GREEN_WID: &str = "79876543210@c.us";

pub fn green_env(name: &str) -> Option<String> {
    (name == "GREEN_API_TOKEN").then(|| GREEN_TOKEN.to_string())
}

/// The Green-API harness: one simulated instance plus the [`Driver`].
pub struct GreenHarness {
    pub sim: wa_watchdog::sim::green_api::GreenSim,
    pub ctl: wa_watchdog::sim::green_api::GreenSimControl,
    pub d: Driver,
}

impl std::ops::Deref for GreenHarness {
    type Target = Driver;
    fn deref(&self) -> &Driver {
        &self.d
    }
}

impl std::ops::DerefMut for GreenHarness {
    fn deref_mut(&mut self) -> &mut Driver {
        &mut self.d
    }
}

impl GreenHarness {
    /// An authorized instance; `sim_options` may change the simulator.
    pub async fn start(
        settings: &Settings,
        sim_options: impl FnOnce(
            wa_watchdog::sim::green_api::GreenSimOptions,
        ) -> wa_watchdog::sim::green_api::GreenSimOptions,
    ) -> GreenHarness {
        use wa_watchdog::sim::green_api::{self, GreenSimOptions, SimInstance};
        let clock = Clock::manual(t0());
        let opts = sim_options(GreenSimOptions::new(
            clock.clone(),
            vec![SimInstance::new(GREEN_ID, GREEN_TOKEN, GREEN_WID)],
        ));
        let sim = green_api::start("127.0.0.1:0".parse().expect("addr"), opts)
            .await
            .expect("start the Green-API simulator");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = settings.clone();
        // One instance is one session; the key is not allowed for green-api.
        settings.provider.remove("sessions");
        // The real-time pacer would only slow the manual clock down; the
        // schedule itself keeps state reads ≥ 1 s apart on the clock.
        settings
            .provider
            .entry("min_request_interval")
            .or_insert_with(|| "\"1ms\"".to_string());
        let db = dir.path().join("watchdog.db");
        let text = settings.toml(
            &db,
            &format!(
                "[[provider]]\nname = \"{GREEN_PROVIDER}\"\nkind = \"green-api\"\nurl = \"{}\"\n\
                 id_instance = \"{GREEN_ID}\"\napi_token_env = \"GREEN_API_TOKEN\"\n",
                sim.url()
            ),
            &sim.url(),
        );
        let d = Driver::build(clock, dir, &text, &green_env, GREEN_PROVIDER).await;
        let ctl = sim.control();
        GreenHarness { sim, ctl, d }
    }

    pub async fn run_until(
        &mut self,
        limit: Duration,
        pred: impl FnMut(&GreenHarness) -> bool,
    ) -> Option<Duration> {
        run_until(self, limit, pred).await
    }
}
