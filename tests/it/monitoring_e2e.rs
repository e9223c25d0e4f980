//! The daemon with the real Prometheus stack from Debian's packages, all on
//! 127.0.0.1: `promtool check metrics` on a real scrape, a real Prometheus
//! scraping the daemon (which watches the WAHA simulator) and reporting a
//! desynced session through its query API, and a real Alertmanager receiving
//! the daemon's direct push for a session that needs pairing and seeing it
//! resolved.
//!
//! A missing binary fails the test with install instructions (a silent skip
//! would hide a broken pipeline); `WA_WATCHDOG_SKIP_PROMETHEUS_TOOLS=1` skips
//! only these tool-based checks, as in `tests/it/alerting_assets.rs`. Every
//! process a test starts listens on 127.0.0.1 only and is killed by a guard
//! when the test ends, however it ends.

use crate::common;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, DaemonOptions};
use crate::common::tools::tool;
use crate::common::{Settings, free_port, t0};
use wa_watchdog::alertmanager::Holds;
use wa_watchdog::clock::Clock;
use wa_watchdog::sim::waha::{Fault, Status};

const S: Duration = Duration::from_secs(1);

/// Kills and reaps the child when the test ends, however it ends.
struct Running {
    child: Child,
    what: &'static str,
    log: PathBuf,
}

impl Running {
    fn start(what: &'static str, program: &Path, args: &[String], log: PathBuf) -> Running {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        Running { child, what, log }
    }

    /// Its output so far, for failure messages.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        format!(
            "--- last lines of {}:\n{}",
            self.what,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
async fn poll<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let r = client.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

async fn ready(client: &reqwest::Client, url: &str) -> Option<()> {
    let r = client.get(url).send().await.ok()?;
    r.status().is_success().then_some(())
}

/// Real-time settings: canaries every 300 ms, confirmations every 200 ms,
/// discovery every second.
fn fast() -> Settings {
    let mut s = Settings::default();
    s.canary("interval", "\"300ms\"")
        .canary("timeout", "\"2s\"")
        .policy("confirm_interval", "\"200ms\"")
        .policy("restart_poll_interval", "\"200ms\"")
        .daemon("discovery_interval", "\"1s\"");
    s
}

fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; the daemon installs
    // ring when it builds its clients, the test must not depend on order.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_check_metrics_passes_on_a_real_scrape() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let d = Daemon::start(&["s1", "s2", "s3"], DaemonOptions::new(Clock::manual(t0()))).await;
    d.ctl.inject("s2", Fault::Desync).expect("inject");
    d.ctl.set_status("s3", Status::ScanQrCode).expect("status");
    d.advance_until("a restart and a needs_pairing", S, 120 * S, || async {
        d.state("s3").await == "needs_pairing" && d.ctl.restart_count("s2") > 0
    })
    .await;
    let scrape = d.get("/metrics").await;
    assert_eq!(scrape.status, 200);
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(scrape.body.as_bytes())
        .expect("feeding promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics on a real scrape:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_daemon_and_reports_a_desynced_session() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    // A desync whose restarts fail: the session stays desynced (backoff 10 s)
    // long enough for a few scrapes.
    let mut opts = DaemonOptions::new(Clock::system());
    opts.settings = fast();
    let d = Daemon::start(&["alpha", "bravo"], opts).await;
    d.ctl.inject("bravo", Fault::Desync).expect("inject");
    d.ctl.inject("bravo", Fault::RestartFails).expect("inject");

    let tmp = tempfile::tempdir().expect("tempdir");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus/alerts.yml");
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: wa-watchdog\n    static_configs:\n      - targets: [\"{}\"]\n",
            d.addr
        ),
    )
    .expect("write prometheus.yml");
    let port = free_port();
    let prom = Running::start(
        "prometheus",
        &prometheus,
        &[
            format!("--config.file={}", config.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            format!("--storage.tsdb.path={}", tmp.path().join("data").display()),
            "--log.level=warn".to_string(),
        ],
        tmp.path().join("prometheus.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let ready_url = format!("{base}/-/ready");
    poll("prometheus to be ready", 30 * S, || {
        ready(&http, &ready_url)
    })
    .await;

    let query = format!(
        "{base}/api/v1/query?query=wa_watchdog_session_state%7Bstate%3D%22desynced%22%7D%20%3D%3D%201"
    );
    let result = poll("prometheus to report bravo desynced", 30 * S, || async {
        let v = get_json(&http, &query).await?;
        let result = v["data"]["result"].as_array()?.clone();
        (!result.is_empty()).then_some(result)
    })
    .await;
    assert_eq!(result.len(), 1, "{result:?}\n{}", prom.log());
    let metric = &result[0]["metric"];
    assert_eq!(metric["session"], "bravo", "{result:?}");
    assert_eq!(metric["provider"], "waha");
    assert_eq!(metric["job"], "wa-watchdog");
    assert_eq!(result[0]["value"][1], "1");

    // The scrape target is up, and the real alert rules run on the data:
    // the desynced rule is pending (its `for` is 10 minutes).
    let up = get_json(&http, &format!("{base}/api/v1/query?query=up")).await;
    assert_eq!(
        up.as_ref()
            .map(|v| v["data"]["result"][0]["value"][1].clone()),
        Some(serde_json::json!("1")),
        "{up:?}"
    );
    poll(
        "the WaWatchdogSessionDesynced rule to be pending",
        30 * S,
        || async {
            let v = get_json(&http, &format!("{base}/api/v1/alerts")).await?;
            v["data"]["alerts"].as_array()?.iter().find(|a| {
                a["labels"]["alertname"] == "WaWatchdogSessionDesynced"
                    && a["labels"]["session"] == "bravo"
            })?;
            Some(())
        },
    )
    .await;
    // Only bravo: alpha stays healthy all along.
    assert_eq!(d.state("alpha").await, "healthy");
    drop(prom);
    d.stop().await.expect("clean stop");
}

/// Alertmanager's active alerts as `(alertname, labels)`.
async fn am_alerts(http: &reqwest::Client, base: &str) -> Option<Vec<serde_json::Value>> {
    let v = get_json(http, &format!("{base}/api/v2/alerts?active=true")).await?;
    v.as_array().cloned()
}

fn pairing_alert_for<'a>(
    alerts: &'a [serde_json::Value],
    session: &str,
) -> Option<&'a serde_json::Value> {
    alerts.iter().find(|a| {
        a["labels"]["alertname"] == "WaWatchdogSessionNeedsPairing"
            && a["labels"]["session"] == session
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_receives_a_pushed_needs_pairing_alert_and_sees_it_resolved() {
    let Some(alertmanager) = tool("prometheus-alertmanager") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    // One receiver that notifies nobody: this test reads the API only.
    let config = tmp.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: nobody\n  group_wait: 1s\nreceivers:\n  - name: nobody\n",
    )
    .expect("write alertmanager.yml");
    let port = free_port();
    let am = Running::start(
        "alertmanager",
        &alertmanager,
        &[
            format!("--config.file={}", config.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // Empty: no cluster listener at all (it would bind 0.0.0.0:9094).
            "--cluster.listen-address=".to_string(),
            format!("--storage.path={}", tmp.path().join("data").display()),
            "--log.level=warn".to_string(),
        ],
        tmp.path().join("alertmanager.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let ready_url = format!("{base}/-/ready");
    poll("alertmanager to be ready", 30 * S, || {
        ready(&http, &ready_url)
    })
    .await;

    // The daemon pushes with the rules' labels; hold times are cut to zero so
    // the test need not wait the rule's five minutes.
    let mut opts = DaemonOptions::new(Clock::system());
    opts.settings = fast();
    opts.alertmanager = Some((base.clone(), Duration::from_secs(1)));
    opts.holds = Holds::immediate();
    let d = Daemon::start(&["s1", "s2"], opts).await;
    d.wait_until("s1 healthy", 20 * S, || async {
        d.state("s1").await == "healthy"
    })
    .await;
    d.ctl.set_status("s1", Status::ScanQrCode).expect("status");

    let alert = poll(
        "the needs-pairing alert in alertmanager",
        20 * S,
        || async {
            let alerts = am_alerts(&http, &base).await?;
            pairing_alert_for(&alerts, "s1").cloned()
        },
    )
    .await;
    let labels = &alert["labels"];
    assert_eq!(labels["provider"], "waha", "{alert}\n{}", am.log());
    assert_eq!(labels["severity"], "page");
    assert_eq!(labels["scope"], "session");
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    assert_eq!(
        alert["annotations"]["summary"],
        "WhatsApp session s1 on waha must be paired again"
    );
    assert_eq!(
        alert["annotations"]["runbook"],
        "docs/runbook.md#session-needs-pairing"
    );
    assert!(
        alert["generatorURL"]
            .as_str()
            .is_some_and(|u| u.ends_with("/api/v1/sessions/waha/s1")),
        "{alert}"
    );
    // Only the session that needs pairing.
    let alerts = am_alerts(&http, &base).await.unwrap_or_default();
    assert!(pairing_alert_for(&alerts, "s2").is_none(), "{alerts:?}");

    // It stays active across re-sends (resend_interval 1 s, endsAt ahead).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let alerts = am_alerts(&http, &base).await.unwrap_or_default();
    assert!(pairing_alert_for(&alerts, "s1").is_some(), "{alerts:?}");

    // Paired again: the daemon sends endsAt = now and the alert is resolved.
    d.ctl.set_status("s1", Status::Working).expect("status");
    poll("the alert to be resolved", 20 * S, || async {
        let alerts = am_alerts(&http, &base).await?;
        pairing_alert_for(&alerts, "s1").is_none().then_some(())
    })
    .await;
    assert_eq!(d.state("s1").await, "healthy");
    let metrics = d.get("/metrics").await.body;
    assert!(
        metrics.contains("wa_watchdog_alertmanager_push_failures_total 0\n"),
        "{metrics}"
    );
    drop(am);
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_alertmanager_is_counted_and_never_fatal() {
    // No tool needed: nothing listens on this port.
    let port = free_port();
    let mut opts = DaemonOptions::new(Clock::system());
    opts.settings = fast();
    opts.alertmanager = Some((format!("http://127.0.0.1:{port}"), Duration::from_secs(1)));
    opts.holds = Holds::immediate();
    let d = Daemon::start(&["s1"], opts).await;
    d.ctl.set_status("s1", Status::ScanQrCode).expect("status");
    d.wait_until("a failed push to be counted", 20 * S, || async {
        let m = d.get("/metrics").await.body;
        !m.contains("wa_watchdog_alertmanager_push_failures_total 0\n")
            && m.contains("wa_watchdog_alertmanager_push_failures_total ")
    })
    .await;
    // The daemon carries on.
    assert_eq!(d.get("/healthz").await.status, 200);
    assert_eq!(d.state("s1").await, "needs_pairing");
    d.stop().await.expect("clean stop");
}

/// The `wa_watchdog_restart_budget_remaining` line of a scrape.
fn budget_line(scrape: &str) -> Option<String> {
    scrape
        .lines()
        .find(|l| l.starts_with("wa_watchdog_restart_budget_remaining{"))
        .map(str::to_string)
}

/// `promtool test rules` with the alert rules and one series taken from a
/// scrape line (`name{labels} value`), held for 15 minutes: whether
/// `WaWatchdogRestartBudgetExhausted` fires at 11 minutes.
fn budget_alert_test(promtool: &Path, line: &str, fires: bool) -> std::process::Output {
    let (series, value) = line.rsplit_once(' ').expect("name{labels} value");
    let value: f64 = value.parse().expect("a number");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = if fires {
        format!(
            r#"
          - exp_labels:
              severity: info
              scope: provider
              provider: {p}
            exp_annotations:
              summary: "Restart budget of provider {p} is used up"
              description: "Provider {p} has had no restart budget left for 10 minutes; desynced sessions there wait for tokens (restart_budget per restart_budget_window)."
              runbook: "docs/runbook.md#restart-budget-exhausted""#,
            p = common::PROVIDER
        )
    } else {
        " []".to_string()
    };
    let test = format!(
        r#"rule_files:
  - {rules}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: '{series}'
        values: '{value}x15'
    alert_rule_test:
      - eval_time: 11m
        alertname: WaWatchdogRestartBudgetExhausted
        exp_alerts:{expected}
"#,
        rules = root.join("contrib/prometheus/alerts.yml").display(),
    );
    let file = dir.path().join("budget_test.yml");
    std::fs::write(&file, test).expect("write the rule test");
    Command::new(promtool)
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("running promtool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_scrape_of_an_exhausted_restart_budget_fires_its_alert() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let mut opts = DaemonOptions::new(Clock::manual(t0()));
    opts.settings.policy("restart_budget", "1");
    let d = Daemon::start(&["s1", "s2"], opts).await;

    // Before any restart the gauge is there, at the full budget: no alert.
    let before = d.get("/metrics").await;
    let line = budget_line(&before.body)
        .unwrap_or_else(|| panic!("no restart budget in the scrape:\n{}", before.body));
    assert_eq!(
        line,
        format!(
            "wa_watchdog_restart_budget_remaining{{provider=\"{}\"}} 1",
            common::PROVIDER
        )
    );
    let out = budget_alert_test(&promtool, &line, false);
    assert!(
        out.status.success(),
        "a full budget must not alert:\n{}",
        show(&out)
    );

    // One restart spends the budget of one.
    d.ctl.inject("s1", Fault::Desync).expect("inject");
    d.advance_until("a restart", S, 120 * S, || async {
        d.ctl.restart_count("s1") > 0
    })
    .await;
    let after = d.get("/metrics").await;
    let line = budget_line(&after.body).expect("the budget gauge");
    assert_eq!(
        line,
        format!(
            "wa_watchdog_restart_budget_remaining{{provider=\"{}\"}} 0",
            common::PROVIDER
        )
    );
    let out = budget_alert_test(&promtool, &line, true);
    assert!(
        out.status.success(),
        "the exhausted budget must alert:\n{}",
        show(&out)
    );
    d.stop().await.expect("clean stop");
}

fn show(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every query of `contrib/grafana/wa-watchdog.json` (variables set to
/// "All") evaluated by a real Prometheus scraping a real daemon that saw a
/// desync healed: each must parse, and the core panels must return data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grafana_panel_query_runs_on_real_prometheus() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let dashboard = common::grafana::load();
    let mut opts = DaemonOptions::new(Clock::system());
    opts.settings = fast();
    let d = Daemon::start(&["alpha", "bravo"], opts).await;

    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: wa-watchdog\n    static_configs:\n      - targets: [\"{}\"]\n",
            d.addr
        ),
    )
    .expect("write prometheus.yml");
    let port = free_port();
    let prom = Running::start(
        "prometheus",
        &prometheus,
        &[
            format!("--config.file={}", config.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            format!("--storage.tsdb.path={}", tmp.path().join("data").display()),
            "--log.level=warn".to_string(),
        ],
        tmp.path().join("prometheus.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let ready_url = format!("{base}/-/ready");
    poll("prometheus to be ready", 30 * S, || {
        ready(&http, &ready_url)
    })
    .await;
    let query = |expr: String| {
        let http = http.clone();
        let url = format!("{base}/api/v1/query");
        async move {
            let r = http
                .get(format!(
                    "{url}?query={}",
                    wa_watchdog::status_page::path_segment(&expr)
                ))
                .send()
                .await
                .ok()?;
            r.json::<serde_json::Value>().await.ok()
        }
    };
    poll("a first scrape of healthy sessions", 30 * S, || {
        query("wa_watchdog_session_state{state=\"healthy\"} == 1".to_string())
    })
    .await;
    poll("both sessions healthy in prometheus", 30 * S, || async {
        let v =
            query("count(wa_watchdog_session_state{state=\"healthy\"} == 1)".to_string()).await?;
        (v["data"]["result"][0]["value"][1] == "2").then_some(())
    })
    .await;

    // A desync healed by a restart, while Prometheus watches.
    d.ctl.inject("bravo", Fault::Desync).expect("inject");
    d.wait_until("bravo restarted and healthy", 60 * S, || async {
        d.ctl.restart_count("bravo") > 0 && d.state("bravo").await == "healthy"
    })
    .await;
    poll("the healed restart in prometheus", 30 * S, || async {
        let v = query("wa_watchdog_restarts_total{result=\"ok\"} > 0".to_string()).await?;
        (!v["data"]["result"].as_array()?.is_empty()).then_some(())
    })
    .await;

    let exprs = common::grafana::expressions(&dashboard);
    assert!(!exprs.is_empty());
    for (title, ref_id, expr) in &exprs {
        let promql = common::grafana::substitute(&dashboard, expr);
        let v = query(promql.clone())
            .await
            .unwrap_or_else(|| panic!("{title}/{ref_id}: no answer for {promql}\n{}", prom.log()));
        assert_eq!(v["status"], "success", "{title}/{ref_id}: {promql}\n{v}");
        let core = common::grafana::CORE_PANELS.contains(&title.as_str());
        if !core {
            continue;
        }
        // Core panels: data while the daemon runs (bounded wait for rates
        // that need a second sample in their window).
        poll(
            &format!("data for {title}/{ref_id}: {promql}"),
            20 * S,
            || async {
                let v = query(promql.clone()).await?;
                (!v["data"]["result"].as_array()?.is_empty()).then_some(())
            },
        )
        .await;
    }
    drop(prom);
    d.stop().await.expect("clean stop");
}
