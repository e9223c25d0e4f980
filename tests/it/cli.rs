//! The binary itself: exit codes, `check-config` against the fixtures, and
//! `run` against the simulator — stopped by SIGTERM and SIGINT, with its logs
//! grepped for the API key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::binary::{BIN, signal, system_sim, wait_for_db, wait_output};
use crate::common::free_port;
use wa_watchdog::clock::Clock;
use wa_watchdog::sim::waha::Fault;

const KEY: &str = "cli-waha-key-SEKRET-55aa";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

fn wa(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .expect("run wa-watchdog")
}

#[test]
fn check_config_prints_the_resolved_config_without_secrets() {
    let out = wa(&[
        "check-config",
        "--config",
        &fixtures().join("valid-full.toml").to_string_lossy(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("name = \"waha-main\""), "{stdout}");
    assert!(stdout.contains("<redacted"), "{stdout}");
    for secret in ["waha-api-key", "green-api-token"] {
        let value =
            std::fs::read_to_string(fixtures().join("secrets").join(secret)).expect("secret");
        assert!(!value.trim().is_empty());
        assert!(!stdout.contains(value.trim()), "secret {secret} printed");
    }
}

#[test]
fn check_config_exits_2_naming_the_problem_for_every_invalid_fixture() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures()).expect("fixtures") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !name.starts_with("invalid-") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("fixture");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name} has no `# expect:` line"));
        let out = wa(&["check-config", "--config", &path.to_string_lossy()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(expect),
            "{name}: expected `{expect}` in `{stderr}`"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} invalid fixtures");
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    assert_eq!(wa(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(wa(&["run", "--bogus"]).status.code(), Some(2));
    assert_eq!(wa(&["--help"]).status.code(), Some(0));
    let missing = wa(&["check-config", "--config", "/nonexistent/wa.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/wa.toml"));
    let run_missing = wa(&["run", "--config", "/nonexistent/wa.toml"]);
    assert_eq!(run_missing.status.code(), Some(2));
}

/// Spawns `run` with the provider's secret in `secret` (variable, value) and
/// trace-level logs; stdout is piped, stderr goes to [`log_path`] (trace
/// logs outgrow a pipe's buffer long before the test reads it, and a daemon
/// blocked on a full pipe stops mid-write).
fn spawn_run(config: &Path, secret: (&str, &str)) -> Child {
    let log = std::fs::File::create(log_path(config)).expect("log file");
    Command::new(BIN)
        .args(["run", "--config", &config.to_string_lossy()])
        .env(secret.0, secret.1)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn daemon")
}

/// Where [`spawn_run`] writes the daemon's logs.
fn log_path(config: &Path) -> std::path::PathBuf {
    config.with_extension("log")
}

/// The daemon's logs once it has exited.
fn logs_of(config: &Path) -> String {
    std::fs::read_to_string(log_path(config)).expect("daemon logs")
}

async fn run_daemon_until_signal(sig: &str) {
    let sim = system_sim(KEY, &["s1", "s2"]).await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("wd.db");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\ndatabase = {db:?}\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n\
             [canary]\ninterval = \"300ms\"\njitter = 0.0\ntimeout = \"2s\"\n\
             [policy]\nconfirm_interval = \"100ms\"\nrestart_poll_interval = \"100ms\"\n\
             [[provider]]\nname = \"waha\"\nkind = \"waha\"\nurl = \"{}\"\napi_key_env = \"CLI_TEST_WAHA_KEY\"\n",
            sim.url()
        ),
    )
    .expect("config");
    let child = spawn_run(&config, ("CLI_TEST_WAHA_KEY", KEY));

    wait_for_db(&db, "both sessions healthy", |rows| {
        rows.len() == 2 && rows.iter().all(|r| r.machine.state == "healthy")
    })
    .await;
    // A desync is caught and healed by the real binary too.
    sim.control().inject("s2", Fault::Desync).expect("desync");
    wait_for_db(&db, "s2 restarted and healthy again", |rows| {
        rows.iter().any(|r| {
            r.session == "s2"
                && r.machine.state == "healthy"
                && !r.machine.restart_history.is_empty()
        })
    })
    .await;

    signal(&child, sig);
    let started = Instant::now();
    let out = wait_output(child).await;
    let logs = logs_of(&config);
    assert_eq!(out.status.code(), Some(0), "exit after {sig}: {logs}");
    assert!(started.elapsed() < Duration::from_secs(10), "slow shutdown");
    assert!(
        logs.contains("received; shutting down"),
        "{}",
        &logs[logs.len().saturating_sub(2000)..]
    );
    assert!(logs.contains("closing the database"));
    assert!(logs.contains("state change"));
    assert!(!logs.contains(KEY), "the API key is in the logs");
    assert_eq!(sim.control().restart_count("s2"), 1);
    assert_eq!(sim.control().restart_count("s1"), 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stops_cleanly_on_sigterm_and_never_logs_the_api_key() {
    run_daemon_until_signal("-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stops_cleanly_on_sigint() {
    run_daemon_until_signal("-INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_serves_both_simulators_until_sigterm() {
    let (waha_port, green_port) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args([
            "simulate",
            "--listen",
            &format!("127.0.0.1:{waha_port}"),
            "--sessions",
            "3",
            "--green-listen",
            &format!("127.0.0.1:{green_port}"),
        ])
        .env("WAHA_API_KEY", KEY)
        .env("GREEN_API_TOKEN", "sim-green-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn simulate");
    let http = wa_watchdog::provider::http::build_client(Duration::from_secs(5)).expect("client");
    let start = Instant::now();
    let sessions = loop {
        let r = http
            .get(format!(
                "http://127.0.0.1:{waha_port}/api/sessions?all=true"
            ))
            .header("X-Api-Key", KEY)
            .send()
            .await;
        if let Ok(r) = r {
            break r.json::<serde_json::Value>().await.expect("json");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "simulate did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sessions.as_array().map(Vec::len), Some(3), "{sessions}");
    let state: serde_json::Value = http
        .get(format!(
            "http://127.0.0.1:{green_port}/waInstance1101000001/getStateInstance/sim-green-token"
        ))
        .send()
        .await
        .expect("green")
        .json()
        .await
        .expect("json");
    assert_eq!(state["stateInstance"], "authorized");
    signal(&child, "-TERM");
    let out = wait_output(child).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_green_api_never_logs_the_token() {
    use wa_watchdog::sim::green_api::{
        self, ApiMethod, BodyForm, Canned, GreenSimOptions, SimInstance,
    };
    const TOKEN: &str = "gr33n-cli-tok3n-SEKRET-1a2b";
    let mut opts = GreenSimOptions::new(
        Clock::system(),
        vec![SimInstance::new("1101000001", TOKEN, "79990000001@c.us")],
    );
    opts.queue_drain_after = Duration::from_millis(100);
    let sim = green_api::start("127.0.0.1:0".parse().expect("addr"), opts)
        .await
        .expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("wd.db");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\ndatabase = {db:?}\nlisten = \"127.0.0.1:0\"\n\
             [canary]\ninterval = \"1s\"\njitter = 0.0\ntimeout = \"2s\"\nack_timeout = \"3s\"\n\
             [policy]\nconfirm_interval = \"1s\"\n\
             [[provider]]\nname = \"green\"\nkind = \"green-api\"\nurl = \"{}\"\nid_instance = \"1101000001\"\n\
             api_token_env = \"CLI_TEST_GREEN_TOKEN\"\nmin_request_interval = \"50ms\"\n",
            sim.url()
        ),
    )
    .expect("config");
    let child = spawn_run(&config, ("CLI_TEST_GREEN_TOKEN", TOKEN));
    wait_for_db(&db, "the instance healthy", |rows| {
        rows.iter().any(|r| r.machine.state == "healthy")
    })
    .await;
    // Failures whose messages could carry the URL (and so the token).
    let ctl = sim.control();
    ctl.inject(
        "1101000001",
        Some(ApiMethod::GetStateInstance),
        8,
        wa_watchdog::sim::green_api::Fault::canned(Canned::BadGateway, BodyForm::Plain),
    )
    .expect("inject");
    ctl.inject(
        "1101000001",
        Some(ApiMethod::SendMessage),
        2,
        wa_watchdog::sim::green_api::Fault::canned(Canned::Unauthorized, BodyForm::Json),
    )
    .expect("inject");
    wait_for_db(&db, "healthy again after the faults", |rows| {
        rows.iter().any(|r| {
            r.machine.state == "healthy" && r.machine.last_outcome.as_deref() == Some("delivered")
        }) && ctl
            .instance("1101000001")
            .is_ok_and(|i| i.faults_pending == 0)
    })
    .await;
    signal(&child, "-TERM");
    let out = wait_output(child).await;
    let logs = logs_of(&config);
    assert_eq!(out.status.code(), Some(0));
    assert!(logs.contains("state change"), "trace logs were captured");
    assert!(!logs.contains(TOKEN), "the Green-API token is in the logs");
    sim.shutdown().await;
}

/// What a stand-in receiver got: headers and body of each push.
type Pushes = std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_pushes_signed_webhooks_with_the_replay_fault() {
    // A stand-in receiver on 127.0.0.1:0 that keeps what it gets.
    let pushes: Pushes = Default::default();
    let keep = pushes.clone();
    let app = axum::Router::new().route(
        "/webhooks/waha",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let keep = keep.clone();
            async move {
                keep.lock().expect("pushes").push((headers, body));
                axum::http::StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let hook_key = "sim-hook-key-SEKRET-81f0";
    let waha_port = free_port();
    let child = Command::new(BIN)
        .args([
            "simulate",
            "--listen",
            &format!("127.0.0.1:{waha_port}"),
            "--sessions",
            "1",
            "--webhook-url",
            &format!("http://{hook_addr}/webhooks/waha"),
            "--webhook-events",
            "message.ack",
            "--webhook-fault",
            "replay",
        ])
        .env("WAHA_API_KEY", KEY)
        .env("WAHA_WEBHOOK_HMAC_KEY", hook_key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn simulate");
    let http = wa_watchdog::provider::http::build_client(Duration::from_secs(5)).expect("client");
    let start = Instant::now();
    let sent: serde_json::Value = loop {
        let r = http
            .post(format!("http://127.0.0.1:{waha_port}/api/sendText"))
            .header("X-Api-Key", KEY)
            .json(&serde_json::json!({
                "session": "session-001",
                "chatId": "15550000001@c.us",
                "text": "canary",
            }))
            .send()
            .await;
        if let Ok(r) = r {
            assert_eq!(r.status().as_u16(), 201);
            break r.json().await.expect("json");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "simulate did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // SERVER at once, DEVICE a second later: each sent twice (replay).
    let got = loop {
        let got = pushes.lock().expect("pushes").clone();
        if got.len() >= 4 {
            break got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} pushes: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    signal(&child, "-TERM");
    let out = wait_output(child).await;
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("pushes webhooks to"), "{stdout}");
    assert!(!stdout.contains(hook_key), "the key is never printed");

    let (first_headers, first_body) = &got[0];
    assert_eq!(got[1].1, *first_body, "the replay is byte for byte");
    assert_eq!(
        got[1].0.get("x-webhook-request-id"),
        first_headers.get("x-webhook-request-id")
    );
    let header = |h: &axum::http::HeaderMap, k: &str| {
        h.get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    for (headers, body) in &got {
        assert_eq!(
            header(headers, "x-webhook-hmac"),
            wa_watchdog::webhooks::auth::sign_waha(hook_key, body.as_bytes())
        );
        assert_eq!(header(headers, "x-webhook-hmac-algorithm"), "sha512");
    }
    let event: serde_json::Value = serde_json::from_str(first_body).expect("json");
    assert_eq!(event["event"], "message.ack");
    assert_eq!(event["session"], "session-001");
    assert_eq!(event["payload"]["ack"], 1);
    assert_eq!(event["payload"]["id"], sent["id"], "{sent}");
    let last: serde_json::Value = serde_json::from_str(&got[3].1).expect("json");
    assert_eq!(last["payload"]["ack"], 2);
}
