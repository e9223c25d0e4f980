//! The operator commands run as the real binary: `status` and `history`
//! against a database a real scheduler produced (a desync caught and
//! healed), `probe` against the WAHA simulator, and `pause`/`resume`
//! against a stand-in for the daemon's HTTP API that records what it got.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::binary::BIN;
use crate::common::{Harness, Settings};
use wa_watchdog::clock::Clock;
use wa_watchdog::machine::State;
use wa_watchdog::sim::waha::{self, Fault, WahaSimOptions};

/// Runs the binary off the async runtime (the simulator it talks to runs on
/// that runtime).
async fn wa(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        cmd.args(&args)
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("OPS_TEST_WAHA_KEY")
            .env_remove("OPS_TEST_ADMIN_TOKEN")
            .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run wa-watchdog")
    })
    .await
    .expect("join")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// A config whose provider key comes from a variable nobody sets: `status`
/// and `history` must not need it.
fn write_config(dir: &Path, db: &Path, url: &str, daemon: &str) -> String {
    let path = dir.join("ops.toml");
    std::fs::write(
        &path,
        format!(
            "[daemon]\ndatabase = {db:?}\n{daemon}\n[[provider]]\nname = \"waha\"\nkind = \"waha\"\n\
             url = \"{url}\"\napi_key_env = \"OPS_TEST_WAHA_KEY\"\n"
        ),
    )
    .expect("config");
    path.to_string_lossy().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_history_read_a_database_from_a_real_run() {
    let mut h = Harness::start(&["s1", "s2"], &Settings::default()).await;
    h.run_for(Duration::from_secs(5)).await;
    let onset = h.now();
    h.ctl.inject("s2", Fault::Desync).expect("desync");
    h.run_until(Duration::from_secs(60), |h| {
        h.entered("s2", State::Healthy, onset).is_some()
    })
    .await
    .expect("healed");
    let db = h.dir.path().join("watchdog.db");
    let cfg = write_config(h.dir.path(), &db, "http://127.0.0.1:1", "");

    // status --json: every session with its state, from the live database.
    let out = wa(&["status", "--config", &cfg, "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2);
    let s2 = list.iter().find(|s| s["session"] == "s2").expect("s2");
    assert_eq!(s2["provider"], "waha");
    assert_eq!(s2["state"], "healthy");
    assert_eq!(s2["consecutive_failures"], 0);
    assert_eq!(s2["last_outcome"], "delivered");
    assert!(s2["next_probe"].is_string() && s2["last_success"].is_string());
    assert_eq!(s2["reason"], "verification canary delivered after restart");

    // status: the table.
    let out = wa(&["status", "--config", &cfg], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("PROVIDER"), "{table}");
    assert!(table.contains("2 sessions: 2 healthy"), "{table}");
    for line in table.lines() {
        assert!(line.chars().count() <= 100, "{line:?}");
        assert!(!line.contains('\u{1b}'), "{line:?}");
    }
    // --database without a config works too.
    let db_arg = db.to_string_lossy().to_string();
    let out = wa(
        &[
            "status",
            "--config",
            "/nonexistent.toml",
            "--database",
            &db_arg,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // history: the desync explained, in order. The harness clock is in 2027,
    // so --since takes a time rather than "24h".
    let since = onset.minus(Duration::from_secs(3600)).to_rfc3339();
    let out = wa(&["history", "s2", "--config", &cfg, "--since", &since], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let timeline = text(&out.stdout);
    let flat = timeline.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "waha/s2: healthy since",
        "probe probe desync (HTTP 500",
        "healthy -> suspect: canary failed",
        "suspect -> desynced: desync confirmed",
        "desynced -> restarting",
        "restart restart healed after",
        "recovering -> healthy: verification canary delivered after restart",
    ] {
        assert!(
            flat.contains(expected),
            "{expected:?} missing in:\n{timeline}"
        );
    }
    let order: Vec<usize> = [
        "-> suspect",
        "-> desynced",
        "-> restarting",
        "-> recovering",
        "recovering -> healthy",
    ]
    .iter()
    .map(|s| flat.find(s).expect(s))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{timeline}");
    for line in timeline.lines() {
        assert!(line.chars().count() <= 100, "{line:?}");
    }

    // history --json, with --provider and --limit.
    let out = wa(
        &[
            "history",
            "s2",
            "--provider",
            "waha",
            "--config",
            &cfg,
            "--since",
            &since,
            "--json",
            "--limit",
            "2",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["current"]["state"], "healthy");
    assert_eq!(v["remediations"][0]["result"], "healed");
    assert!(v["remediations"][0]["duration_ms"].is_u64());
    assert_eq!(v["transitions"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["transitions"][0]["to"], "healthy");

    // Mistakes are usage errors.
    for (args, expected) in [
        (
            vec!["history", "nope", "--config", &cfg],
            "the database has no session waha/nope",
        ),
        (
            vec!["history", "waha/nope", "--config", &cfg],
            "the database has no session waha/nope",
        ),
        (
            vec!["history", "s2", "--config", &cfg, "--since", "yesterday"],
            "neither a duration",
        ),
        (vec!["history", "--config", &cfg], "SESSION"),
    ] {
        let out = wa(&args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // A database that is not there: a runtime failure naming it.
    let out = wa(&["status", "--database", "/nonexistent/wd.db"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/wd.db"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_exits_0_delivered_1_failed_2_usage() {
    let key = "probe-key-SEKRET-77";
    let sim = waha::start(
        "127.0.0.1:0".parse().expect("addr"),
        WahaSimOptions {
            api_key: Some(key.to_string()),
            sessions: vec!["s1".into(), "s2".into()],
            clock: Clock::system(),
            ..WahaSimOptions::default()
        },
    )
    .await
    .expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write_config(dir.path(), &dir.path().join("unused.db"), &sim.url(), "");
    let env = [("OPS_TEST_WAHA_KEY", key)];

    let out = wa(&["probe", "s1", "--config", &cfg], &env).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("waha/s1: delivered (HTTP 201"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(sim.control().send_count("s1"), 1);

    sim.control().inject("s2", Fault::Desync).expect("desync");
    let out = wa(&["probe", "waha/s2", "--config", &cfg], &env).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("waha/s2: desync (HTTP 500"), "{stdout}");
    assert!(stdout.contains("server returned error 400"), "{stdout}");

    for (args, env) in [
        (vec!["probe", "--config", &cfg], &env[..]),
        (vec!["probe", "other/s1", "--config", &cfg], &env[..]),
        (
            vec!["probe", "s1", "--provider", "other", "--config", &cfg],
            &env[..],
        ),
        (
            vec!["probe", "s1", "--config", "/nonexistent.toml"],
            &env[..],
        ),
        // The key is missing: a config error.
        (vec!["probe", "s1", "--config", &cfg], &[][..]),
    ] {
        let out = wa(&args, env).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = wa(&["probe", "other/s1", "--config", &cfg], &env).await;
    assert!(
        text(&out.stderr).contains("no [[provider]] is named \"other\""),
        "{}",
        text(&out.stderr)
    );
    sim.shutdown().await;
}

/// What the stand-in API saw: method, path, query and Authorization.
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

async fn fake_api() -> (std::net::SocketAddr, Seen, tokio::task::JoinHandle<()>) {
    use axum::http::HeaderMap;
    use axum::http::{StatusCode, Uri};
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: Uri, headers: HeaderMap| {
            let log = log.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                log.lock().expect("log").push((
                    method.to_string(),
                    uri.path().to_string(),
                    uri.query().unwrap_or("").to_string(),
                    auth,
                ));
                if uri.path().ends_with("/resume") {
                    (
                        StatusCode::CONFLICT,
                        "{\"error\":\"not paused (state healthy)\"}",
                    )
                } else {
                    (StatusCode::OK, "{\"ok\":true}")
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_call_the_api_with_the_admin_token() {
    let token = "admin-token-SEKRET-4242";
    let (addr, seen, server) = fake_api().await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("absent.db");
    let cfg = write_config(
        dir.path(),
        &db,
        "http://127.0.0.1:1",
        &format!("listen = \"{addr}\"\nadmin_token_env = \"OPS_TEST_ADMIN_TOKEN\""),
    );
    let env = [("OPS_TEST_ADMIN_TOKEN", token)];

    let out = wa(&["pause", "s1", "--for", "2h", "--config", &cfg], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "paused waha/s1 for 2h");
    let out = wa(&["pause", "waha/s1", "--config", &cfg], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "paused waha/s1 until resumed");

    let out = wa(&["resume", "s1", "--config", &cfg], &env).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("HTTP 409: {\"error\":\"not paused (state healthy)\"}"),
        "{stderr}"
    );

    let calls = seen.lock().expect("seen").clone();
    assert_eq!(
        calls,
        vec![
            (
                "POST".into(),
                "/api/v1/sessions/waha/s1/pause".into(),
                "for=7200s".into(),
                format!("Bearer {token}")
            ),
            (
                "POST".into(),
                "/api/v1/sessions/waha/s1/pause".into(),
                String::new(),
                format!("Bearer {token}")
            ),
            (
                "POST".into(),
                "/api/v1/sessions/waha/s1/resume".into(),
                String::new(),
                format!("Bearer {token}")
            ),
        ]
    );

    // The daemon is not running: a runtime failure naming where it looked.
    server.abort();
    let _ = server.await;
    let out = wa(&["resume", "s1", "--config", &cfg], &env).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot reach the daemon at http://{addr}")),
        "{stderr}"
    );
    // No admin token configured: a usage error that says what to set.
    let no_token = write_config(
        dir.path(),
        &db,
        "http://127.0.0.1:1",
        &format!("listen = \"{addr}\""),
    );
    let out = wa(&["pause", "s1", "--config", &no_token], &env).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("daemon.admin_token is not set"),
        "{}",
        text(&out.stderr)
    );
    // Bad arguments.
    let out = wa(&["pause", "s1", "--for", "soon", "--config", &cfg], &env).await;
    assert_eq!(out.status.code(), Some(2));

    assert!(!stderr.contains(token), "the admin token was printed");
}
