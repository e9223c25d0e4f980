//! A whole daemon as `wa-watchdog run` builds it ([`App::build`]: store,
//! scheduler, HTTP server on 127.0.0.1:0, optionally the Alertmanager
//! pusher) running on its own task against the WAHA simulator, for tests
//! that talk to it over loopback like Prometheus or an operator would.
//!
//! With a manual clock nothing moves until the test calls
//! [`Daemon::advance_until`]; with the system clock it runs for real.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use wa_watchdog::alertmanager::Holds;
use wa_watchdog::app::App;
use wa_watchdog::clock::Clock;
use wa_watchdog::config::Config;
use wa_watchdog::metrics::Metrics;
use wa_watchdog::sim::waha::{SimControl, WahaSim};
use wa_watchdog::store::Store;

use super::{API_KEY, Settings};

/// The admin token of daemons started with `admin_token: true`;
/// distinctive so a leak is easy to grep.
pub const ADMIN_TOKEN: &str = "admin-token-SEKRET-51f0c2";

/// How to start a [`Daemon`].
pub struct DaemonOptions {
    pub settings: Settings,
    pub clock: Clock,
    /// Configure `daemon.admin_token_env`.
    pub admin_token: bool,
    /// `[alertmanager] url` (and `resend_interval`), if any.
    pub alertmanager: Option<(String, Duration)>,
    /// Hold times of directly pushed alerts.
    pub holds: Holds,
}

impl DaemonOptions {
    pub fn new(clock: Clock) -> DaemonOptions {
        DaemonOptions {
            settings: Settings::default(),
            clock,
            admin_token: false,
            alertmanager: None,
            holds: Holds::default(),
        }
    }
}

pub struct Daemon {
    pub sim: WahaSim,
    pub ctl: SimControl,
    pub clock: Clock,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub config: Config,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Daemon {
    pub async fn start(sessions: &[&str], opts: DaemonOptions) -> Daemon {
        // reqwest is built without a default TLS provider (see provider::http).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = super::sim(sessions, &opts.clock).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("watchdog.db");
        let mut settings = opts.settings.clone();
        settings.daemon("listen", "\"127.0.0.1:0\"");
        if opts.admin_token {
            settings.daemon("admin_token_env", "\"WA_WATCHDOG_ADMIN_TOKEN\"");
        }
        let mut text = settings.waha_toml(&db, &sim.url());
        if let Some((url, resend)) = &opts.alertmanager {
            text.push_str(&format!(
                "\n[alertmanager]\nurl = \"{url}\"\nresend_interval = \"{}\"\n",
                humantime::format_duration(*resend)
            ));
        }
        let env = |name: &str| match name {
            "WAHA_API_KEY" => Some(API_KEY.to_string()),
            "WA_WATCHDOG_ADMIN_TOKEN" => Some(ADMIN_TOKEN.to_string()),
            _ => None,
        };
        let config = Config::from_toml_str(&text, dir.path().join("config.toml"), &env)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        let app = App::build(config.clone(), opts.clock.clone(), Some(7))
            .await
            .expect("build the daemon")
            .with_alert_holds(opts.holds);
        let addr = app.http_addr();
        let store = app.store.clone();
        let metrics = app.metrics.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let ctl = sim.control();
        Daemon {
            sim,
            ctl,
            clock: opts.clock,
            dir,
            addr,
            store,
            metrics,
            config,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("response body");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        let resp = self
            .client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        Self::reply(resp).await
    }

    /// POSTs `body` (if any) with `Authorization: Bearer token` (if any).
    pub async fn post(&self, path: &str, token: Option<&str>, body: Option<&str>) -> Reply {
        let mut req = self.client.post(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        Self::reply(resp).await
    }

    /// The state of one session as `GET /api/v1/sessions/waha/{session}` shows it.
    pub async fn state(&self, session: &str) -> String {
        let r = self
            .get(&format!("/api/v1/sessions/{}/{session}", super::PROVIDER))
            .await;
        if r.status == 404 {
            return "unwatched".into();
        }
        r.json()["state"].as_str().unwrap_or_default().to_string()
    }

    /// Moves a manual clock forward by `step` at a time (letting the daemon
    /// work in real time in between) until `done` holds; panics after
    /// `clock_limit` of clock time or 30 s of real time.
    pub async fn advance_until<F, Fut>(
        &self,
        what: &str,
        step: Duration,
        clock_limit: Duration,
        mut done: F,
    ) where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let start = self.clock.now();
        let real = Instant::now();
        loop {
            // Let the loop and the jobs due now finish before checking.
            tokio::time::sleep(Duration::from_millis(30)).await;
            if done().await {
                return;
            }
            assert!(
                self.clock.now().since(start) < clock_limit
                    && real.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            self.clock.advance(step);
        }
    }

    /// Waits in real time (bounded) until `done` holds.
    pub async fn wait_until<F, Fut>(&self, what: &str, limit: Duration, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let real = Instant::now();
        while !done().await {
            assert!(real.elapsed() < limit, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the daemon the way SIGTERM does and returns its result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the daemon stops within 30 s")
            .expect("daemon task")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
