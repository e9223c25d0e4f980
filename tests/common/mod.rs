//! The test harness: a WAHA simulator on 127.0.0.1:0, a real SQLite file in
//! a temp dir, and the real scheduler, all on one manual clock that the test
//! moves. Nothing is faked but WhatsApp itself.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::broadcast;

use wa_watchdog::clock::{Clock, Timestamp};
use wa_watchdog::config::Config;
use wa_watchdog::events::Event;
use wa_watchdog::machine::State;
use wa_watchdog::metrics::Metrics;
use wa_watchdog::scheduler::{Parts, Scheduler};
use wa_watchdog::sim::waha::{self, SimControl, WahaSim, WahaSimOptions};
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
            .daemon("discovery_interval", "\"10s\"");
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

    pub fn toml(&self, db: &std::path::Path, url: &str) -> String {
        let table = |m: &BTreeMap<&'static str, String>| {
            m.iter()
                .map(|(k, v)| format!("{k} = {v}\n"))
                .collect::<String>()
        };
        format!(
            "[daemon]\ndatabase = {db:?}\n{}\n[canary]\n{}\n[policy]\n{}\n\
             [[provider]]\nname = \"{PROVIDER}\"\nkind = \"waha\"\nurl = \"{url}\"\napi_key_env = \"WAHA_API_KEY\"\n{}\n{}",
            table(&self.daemon),
            table(&self.canary),
            table(&self.policy),
            table(&self.provider),
            self.extra.replace("{sim}", url),
        )
    }
}

pub struct Harness {
    pub clock: Clock,
    pub sim: WahaSim,
    pub ctl: SimControl,
    pub scheduler: Scheduler,
    pub store: Store,
    pub config: Config,
    pub dir: tempfile::TempDir,
    events: broadcast::Receiver<Event>,
    /// Everything that happened so far.
    pub log: Vec<Event>,
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

pub fn env(name: &str) -> Option<String> {
    (name == "WAHA_API_KEY").then(|| API_KEY.to_string())
}

impl Harness {
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
        let text = settings.toml(&db, &sim.url());
        let config = Config::from_toml_str(&text, dir.path().join("config.toml"), &env)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        let store = Store::open(&db).await.expect("open store");
        let scheduler = Scheduler::build(
            &config,
            Parts {
                clock: clock.clone(),
                store: store.clone(),
                metrics: std::sync::Arc::new(Metrics::new()),
                seed: Some(7),
            },
        )
        .await
        .expect("build scheduler");
        let events = scheduler.subscribe();
        let ctl = sim.control();
        Harness {
            clock,
            sim,
            ctl,
            scheduler,
            store,
            config,
            dir,
            events,
            log: Vec::new(),
        }
    }

    /// Stops this scheduler and starts a new one on the same database,
    /// simulator and clock: a daemon restart.
    pub async fn restart_daemon(self, settings: &Settings) -> Harness {
        let Harness {
            clock,
            sim,
            scheduler,
            store,
            dir,
            ..
        } = self;
        drop(scheduler);
        store.close().await;
        Self::with(clock, sim, dir, settings).await
    }

    /// The config `settings` describe for this harness's database and
    /// simulator (what a reload would read).
    pub fn config_for(&self, settings: &Settings) -> Config {
        let text = settings.toml(&self.dir.path().join("watchdog.db"), &self.sim.url());
        Config::from_toml_str(&text, self.dir.path().join("config.toml"), &env)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Moves the clock forward by `d`, running everything due on the way.
    pub async fn run_for(&mut self, d: Duration) {
        self.scheduler.advance(d, Duration::from_millis(250)).await;
        self.collect();
    }

    /// Runs until `pred` holds or `limit` passes; returns the time it took.
    pub async fn run_until(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Harness) -> bool,
    ) -> Option<Duration> {
        let start = self.now();
        let end = start.plus(limit);
        while self.now() < end {
            self.scheduler
                .advance(Duration::from_millis(250), Duration::from_millis(250))
                .await;
            self.collect();
            if pred(self) {
                return Some(self.now().since(start));
            }
        }
        None
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
            .machine(PROVIDER, session)
            .map(|m| m.state)
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
