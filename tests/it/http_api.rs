//! The HTTP server over loopback, against a daemon built as `wa-watchdog run`
//! builds it (App: real SQLite, real scheduler, the WAHA simulator on port
//! 0), on a manual clock: `/metrics` as Prometheus scrapes it, the JSON API's
//! shapes, auth and bounds of the admin routes, `/healthz` and `/readyz`.

use crate::common;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::daemon::{ADMIN_TOKEN, Daemon, DaemonOptions};
use crate::common::{PROVIDER, t0};
use wa_watchdog::app::App;
use wa_watchdog::clock::Clock;
use wa_watchdog::config::Config;
use wa_watchdog::http::{self, HttpState};
use wa_watchdog::metrics::exposition::{contract_violations, samples};
use wa_watchdog::scheduler::Heartbeat;
use wa_watchdog::sim::waha::{Fault, Status};

const S: Duration = Duration::from_secs(1);

/// A daemon on a manual clock with every session healthy.
async fn healthy(sessions: &[&str], admin_token: bool) -> Daemon {
    let mut opts = DaemonOptions::new(Clock::manual(t0()));
    opts.admin_token = admin_token;
    let d = Daemon::start(sessions, opts).await;
    d.advance_until("every session healthy", S, 60 * S, || async {
        let mut all = true;
        for s in sessions {
            all &= d.state(s).await == "healthy";
        }
        all
    })
    .await;
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_scrape_has_every_contract_family_with_its_type_and_labels() {
    let d = healthy(&["s1", "s2"], false).await;
    // A desync healed by a restart fills the restart and recovery families.
    d.ctl.inject("s2", Fault::Desync).expect("inject");
    d.advance_until("s2 healed", S, 120 * S, || async {
        d.store
            .recent_remediations(PROVIDER, "s2", None, 5)
            .await
            .expect("remediations")
            .first()
            .is_some_and(|r| r.result == "healed")
    })
    .await;
    // The webhook route is not built yet; count one event through the
    // daemon's own registry so the family is in the scrape.
    d.metrics.webhook_event(PROVIDER, "message.ack");

    let r = d.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some(wa_watchdog::metrics::CONTENT_TYPE)
    );
    let text = &r.body;
    let wrong = contract_violations(text);
    assert!(wrong.is_empty(), "{wrong:#?}\n{text}");
    let all = samples(text);
    let value = |name: &str, want: &[(&str, &str)]| -> Option<String> {
        all.iter()
            .find(|s| s.name == name && want.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .map(|s| s.value.clone())
    };
    let session_state = |s: &str| {
        all.iter()
            .filter(|x| x.name == "wa_watchdog_session_state" && x.label("session") == Some(s))
            .map(|x| (x.labels["state"].clone(), x.value.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        session_state("s1"),
        [("healthy".to_string(), "1".to_string())]
    );
    assert_eq!(
        session_state("s2"),
        [("healthy".to_string(), "1".to_string())]
    );
    assert_eq!(
        value("wa_watchdog_restarts_total", &[("result", "ok")]).as_deref(),
        Some("1")
    );
    assert_eq!(
        value("wa_watchdog_desyncs_total", &[]).as_deref(),
        Some("1")
    );
    assert_eq!(
        value("wa_watchdog_recovery_duration_seconds_count", &[]).as_deref(),
        Some("1")
    );
    assert_eq!(
        value("wa_watchdog_sessions", &[("state", "healthy")]).as_deref(),
        Some("2")
    );
    assert_eq!(value("wa_watchdog_build_info", &[]).as_deref(), Some("1"));
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_sessions_series_disappear_from_a_real_scrape() {
    let d = healthy(&["s1", "s2", "s3"], false).await;
    let before = d.get("/metrics").await.body;
    assert_eq!(before.matches("session=\"s3\"").count(), 3, "{before}");

    d.ctl.remove_session("s3").expect("remove");
    // Discovery runs every 10 s (clock time) and retires what is gone.
    d.advance_until("s3 retired", S, 30 * S, || async {
        d.state("s3").await == "unwatched"
    })
    .await;
    let after = d.get("/metrics").await.body;
    assert!(!after.contains("session=\"s3\""), "{after}");
    assert_eq!(after.matches("session=\"s1\"").count(), 3);
    assert!(
        after.contains("wa_watchdog_sessions{provider=\"waha\",state=\"healthy\"} 2\n"),
        "{after}"
    );
    // The API stops listing it too.
    let list = d.get("/api/v1/sessions").await.json();
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["session"].as_str())
        .collect();
    assert_eq!(names, ["s1", "s2"]);
    d.stop().await.expect("clean stop");
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// An RFC 3339 UTC timestamp as the API writes it.
fn is_rfc3339_utc(v: &serde_json::Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

const LIST_KEYS: [&str; 8] = [
    "provider",
    "session",
    "state",
    "since",
    "consecutive_failures",
    "last_success",
    "last_outcome",
    "next_probe",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_api_has_the_contract_shapes() {
    let d = healthy(&["s1", "s2"], false).await;
    d.ctl.set_status("s2", Status::ScanQrCode).expect("status");
    d.advance_until("s2 needs pairing", S, 30 * S, || async {
        d.state("s2").await == "needs_pairing"
    })
    .await;

    let r = d.get("/api/v1/sessions").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let list = r.json();
    let list = list.as_array().expect("a JSON array");
    assert_eq!(list.len(), 2);
    for s in list {
        assert_eq!(keys(s), set(&LIST_KEYS), "{s}");
        assert_eq!(s["provider"], PROVIDER);
        assert!(is_rfc3339_utc(&s["since"]), "{s}");
        assert!(is_rfc3339_utc(&s["last_success"]), "{s}");
        assert!(is_rfc3339_utc(&s["next_probe"]), "{s}");
        assert!(s["consecutive_failures"].is_u64(), "{s}");
    }
    assert_eq!(list[0]["session"], "s1");
    assert_eq!(list[0]["state"], "healthy");
    assert_eq!(list[0]["last_outcome"], "delivered");
    assert_eq!(list[1]["state"], "needs_pairing");

    let one = d.get("/api/v1/sessions/waha/s2").await;
    assert_eq!(one.status, 200);
    let one = one.json();
    let mut want = set(&LIST_KEYS);
    want.extend(set(&[
        "reason",
        "transitions",
        "probes",
        "probe_rollups",
        "remediations",
    ]));
    assert_eq!(keys(&one), want);
    assert!(
        one["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{one}"
    );
    let transitions = one["transitions"].as_array().expect("transitions");
    assert_eq!(keys(&transitions[0]), set(&["at", "from", "to", "reason"]));
    // Newest first.
    assert_eq!(transitions[0]["to"], "needs_pairing");
    assert!(is_rfc3339_utc(&transitions[0]["at"]));
    let probes = one["probes"].as_array().expect("probes");
    assert_eq!(
        keys(&probes[0]),
        set(&[
            "at",
            "kind",
            "outcome",
            "http_status",
            "latency_ms",
            "detail"
        ])
    );
    assert_eq!(probes[0]["outcome"], "needs_pairing");
    let ats: Vec<&str> = probes.iter().filter_map(|p| p["at"].as_str()).collect();
    let mut sorted = ats.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ats, sorted, "probes newest first");
    assert!(probes.len() <= http::HISTORY_LIMIT as usize);
    assert_eq!(one["remediations"], serde_json::json!([]));
    // Nothing is old enough to be rolled up yet.
    assert_eq!(one["probe_rollups"], serde_json::json!([]));

    // Unknown sessions and routes: 404 with a JSON error.
    for path in [
        "/api/v1/sessions/waha/nope",
        "/api/v1/sessions/nope/s1",
        "/api/v2/x",
    ] {
        let r = d.get(path).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(
            r.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}"
        );
    }
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_are_off_without_a_token() {
    let d = healthy(&["s1"], false).await;
    for action in ["pause", "resume", "restart"] {
        let path = format!("/api/v1/sessions/waha/s1/{action}");
        for token in [None, Some(ADMIN_TOKEN), Some("anything")] {
            let r = d.post(&path, token, None).await;
            assert_eq!(r.status, 403, "{action} {token:?}");
            assert_eq!(
                r.json(),
                serde_json::json!({"error": "admin API disabled: set daemon.admin_token_env or admin_token_file"})
            );
        }
    }
    assert_eq!(d.state("s1").await, "healthy");
    assert_eq!(d.ctl.restart_count("s1"), 0);
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_want_the_bearer_token_and_pause_and_resume_work() {
    let d = healthy(&["s1"], true).await;
    let pause = "/api/v1/sessions/waha/s1/pause?for=2h";

    // Missing or wrong token: 401 with a challenge, nothing echoed, nothing done.
    for token in [
        None,
        Some("wrong-token-QX7"),
        Some(""),
        Some(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]),
    ] {
        let r = d.post(pause, token, None).await;
        assert_eq!(r.status, 401, "{token:?}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{:?}",
            r.headers
        );
        assert!(
            !r.body.contains(ADMIN_TOKEN) && !r.body.contains("QX7"),
            "{}",
            r.body
        );
    }
    // A token in another scheme is no bearer token.
    let r = d
        .client
        .post(d.url(pause))
        .basic_auth("admin", Some(ADMIN_TOKEN))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(d.state("s1").await, "healthy");

    // Bad durations name the parameter.
    for (path, body) in [
        ("/api/v1/sessions/waha/s1/pause?for=soon", None),
        ("/api/v1/sessions/waha/s1/pause", Some(r#"{"for":"0s"}"#)),
        (
            "/api/v1/sessions/waha/s1/pause",
            Some(r#"{"for":"2h","until":"x"}"#),
        ),
        ("/api/v1/sessions/waha/s1/pause", Some("not json")),
        (
            "/api/v1/sessions/waha/s1/pause?for=1h",
            Some(r#"{"for":"2h"}"#),
        ),
    ] {
        let r = d.post(path, Some(ADMIN_TOKEN), body).await;
        assert_eq!(r.status, 400, "{path} {body:?}: {}", r.body);
        let e = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(e.contains("for") || e.contains("JSON"), "{e}");
    }

    // The right token pauses for two hours.
    let now = d.clock.now();
    let r = d.post(pause, Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["ok"], true);
    assert_eq!(body["action"], "pause");
    let until = now.plus(Duration::from_secs(7200)).to_rfc3339();
    assert_eq!(body["until"], until.as_str());
    let s1 = d.get("/api/v1/sessions/waha/s1").await.json();
    assert_eq!(s1["state"], "paused");
    assert_eq!(
        s1["next_probe"],
        until.as_str(),
        "the pause ends in 2 h: {s1}"
    );
    // A paused session gets no canaries.
    let sends = d.ctl.send_count("s1");
    d.clock.advance(Duration::from_secs(600));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(d.ctl.send_count("s1"), sends);
    assert_eq!(d.state("s1").await, "paused");

    // Resume: probing again, healthy after the next canary.
    let r = d
        .post("/api/v1/sessions/waha/s1/resume", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(d.state("s1").await, "paused");
    d.advance_until("s1 healthy after resume", S, 30 * S, || async {
        d.state("s1").await == "healthy"
    })
    .await;
    // Resuming what is not paused is refused with the reason.
    let r = d
        .post("/api/v1/sessions/waha/s1/resume", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("not paused"))
    );

    // A JSON body with a reason works too, and the reason is recorded.
    let r = d
        .post(
            "/api/v1/sessions/waha/s1/pause",
            Some(ADMIN_TOKEN),
            Some(r#"{"for":"30m","reason":"maintenance of the phone"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s1 = d.get("/api/v1/sessions/waha/s1").await.json();
    assert_eq!(s1["state"], "paused");
    assert!(
        s1["reason"]
            .as_str()
            .is_some_and(|r| r.contains("maintenance of the phone")),
        "{s1}"
    );
    // Unknown sessions are 404 on the admin routes as well.
    let r = d
        .post("/api/v1/sessions/waha/nope/pause", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(r.status, 404);
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_through_the_api_is_an_operator_restart_within_the_concurrency_limit() {
    let d = healthy(&["s1", "s2"], true).await;
    // The simulator keeps a restarted session STARTING until its clock moves:
    // s1 holds the provider's only restart slot while the test asks for s2.
    let r = d
        .post("/api/v1/sessions/waha/s1/restart", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["action"], "restart");
    assert_eq!(d.state("s1").await, "restarting");

    let r = d
        .post("/api/v1/sessions/waha/s2/restart", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let why = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("max_concurrent_restarts"), "{why}");
    assert_eq!(d.state("s2").await, "healthy");
    // Twice the same: already in progress.
    let r = d
        .post("/api/v1/sessions/waha/s1/restart", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(r.status, 409, "{}", r.body);

    d.advance_until("s1 healthy after the restart", S, 60 * S, || async {
        d.state("s1").await == "healthy"
    })
    .await;
    assert_eq!(d.ctl.restart_count("s1"), 1);
    assert_eq!(d.ctl.restart_count("s2"), 0);
    let s1 = d.get("/api/v1/sessions/waha/s1").await.json();
    let rem = &s1["remediations"][0];
    assert_eq!(rem["reason"], "operator", "{s1}");
    assert_eq!(rem["action"], "restart");
    assert_eq!(rem["result"], "healed");
    assert_eq!(
        keys(rem),
        set(&[
            "id",
            "started_at",
            "action",
            "reason",
            "result",
            "detail",
            "finished_at",
            "duration_ms",
            "recovery_ms"
        ])
    );
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_bodies_are_rejected_with_413() {
    let d = healthy(&["s1"], true).await;
    let big = format!(r#"{{"reason":"{}"}}"#, "x".repeat(http::BODY_LIMIT));
    // Declared length.
    let r = d
        .post(
            "/api/v1/sessions/waha/s1/pause",
            Some(ADMIN_TOKEN),
            Some(&big),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("16384"))
    );
    // Chunked, without a length: cut off while reading.
    let status = raw_chunked_post(
        d.addr,
        "/api/v1/sessions/waha/s1/pause",
        ADMIN_TOKEN,
        big.as_bytes(),
    )
    .await;
    assert_eq!(status, 413);
    // Even where no body is read (a GET), a declared oversized body is refused.
    let r = d
        .client
        .get(d.url("/api/v1/sessions"))
        .body(big.clone())
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(d.state("s1").await, "healthy");
    d.stop().await.expect("clean stop");
}

#[tokio::test]
async fn every_refusal_is_a_json_error() {
    let d = healthy(&["s1"], true).await;
    let long_path = format!("/api/v1/sessions/{}", "a".repeat(http::MAX_URI_BYTES));
    let big_header = "b".repeat(http::MAX_HEADER_BYTES);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("wrong method", d.client.post(d.url("/metrics")), 405),
        (
            "path segment not UTF-8",
            d.client.get(d.url("/api/v1/sessions/%FF/s1")),
            400,
        ),
        ("target too long", d.client.get(d.url(&long_path)), 414),
        (
            "headers too large",
            d.client.get(d.url("/healthz")).header("x-big", big_header),
            431,
        ),
        ("no route", d.client.get(d.url("/nope")), 404),
    ];
    for (name, req, want) in cases {
        let r = req.send().await.expect(name);
        assert_eq!(r.status().as_u16(), want, "{name}");
        let allow = r.headers().get("allow").cloned();
        let text = r.text().await.expect("body");
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text:?}"));
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}: {text}"
        );
        if want == 405 {
            assert!(allow.is_some(), "{name}: Allow kept");
        }
    }
    // A healthy probe and the status page are untouched.
    let r = d
        .client
        .get(d.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status().as_u16(), 200);
    d.stop().await.expect("clean stop");
}

/// POSTs `body` with `Transfer-Encoding: chunked` (no length declared) over
/// a raw connection and returns the status code.
async fn raw_chunked_post(addr: std::net::SocketAddr, path: &str, token: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    for chunk in body.chunks(1024) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        // The server may answer and close before the whole body is sent.
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// An HTTP server on its own listener around a built (not running) daemon's
/// store, with a heartbeat the test controls.
struct Probe {
    addr: std::net::SocketAddr,
    heartbeat: Heartbeat,
    store: wa_watchdog::store::Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    _app: App,
    _dir: tempfile::TempDir,
    _sim: wa_watchdog::sim::waha::WahaSim,
}

impl Probe {
    async fn start(max_age: Duration) -> Probe {
        let clock = Clock::manual(t0());
        let sim = common::sim(&["s1"], &clock).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = common::Settings::default();
        settings.daemon("listen", "\"127.0.0.1:0\"");
        let text = settings.waha_toml(&dir.path().join("w.db"), &sim.url());
        let config =
            Config::from_toml_str(&text, dir.path().join("c.toml"), &common::env).expect("config");
        let app = App::build(config, clock.clone(), Some(1))
            .await
            .expect("build");
        let heartbeat = Heartbeat::default();
        let state = HttpState {
            store: app.store.clone(),
            metrics: Arc::clone(&app.metrics),
            heartbeat: heartbeat.clone(),
            heartbeat_max_age: max_age,
            handle: app.handle(),
            clock,
            admin_token: None,
            config_path: dir.path().join("c.toml"),
            webhooks: None,
            replica: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(http::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Probe {
            addr,
            heartbeat,
            store: app.store.clone(),
            stop: Some(stop),
            server,
            _app: app,
            _dir: dir,
            _sim: sim,
        }
    }

    async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::get(format!("http://{}{path}", self.addr))
            .await
            .expect("get");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json"))
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.server)
            .await
            .expect("server stops")
            .expect("server task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_follows_the_scheduler_heartbeat() {
    let p = Probe::start(Duration::from_millis(1500)).await;
    // Never beat: the loop has not run.
    let (status, body) = p.get("/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "starting");
    p.heartbeat.beat();
    let (status, body) = p.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert!(
        body["heartbeat_age_seconds"]
            .as_f64()
            .is_some_and(|a| a < 1.5),
        "{body}"
    );
    // No beat for longer than the limit: stalled.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (status, body) = p.get("/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "stalled");
    assert!(
        body["heartbeat_age_seconds"]
            .as_f64()
            .is_some_and(|a| a >= 1.5),
        "{body}"
    );
    p.heartbeat.beat();
    assert_eq!(p.get("/healthz").await.0, 200);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_once_the_store_is_closed() {
    let p = Probe::start(http::HEARTBEAT_MAX_AGE).await;
    let (status, body) = p.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    p.store.close().await;
    let (status, body) = p.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("store")),
        "{body}"
    );
    // The API says so too instead of hanging.
    let (status, _) = p.get("/api/v1/sessions").await;
    assert_eq!(status, 503);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_daemon_is_healthy_and_ready_and_stops_its_server() {
    let d = healthy(&["s1"], false).await;
    assert_eq!(d.get("/healthz").await.status, 200);
    assert_eq!(d.get("/readyz").await.status, 200);
    let addr = d.addr;
    d.stop().await.expect("clean stop");
    // The listener is closed with the daemon.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_answered_while_idle_and_slow_clients_hold_every_slot() {
    use tokio::io::AsyncWriteExt;
    let d = healthy(&["s1"], false).await;
    // Every serving slot held by a client that sent half a request (it keeps
    // its slot until the header timeout), and more silent clients than the
    // waiting queue holds.
    let mut held = Vec::new();
    for _ in 0..http::MAX_CONNECTIONS {
        let mut c = tokio::net::TcpStream::connect(d.addr)
            .await
            .expect("connect");
        c.write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .expect("half a request");
        held.push(c);
    }
    for _ in 0..http::MAX_WAITING + 20 {
        held.push(
            tokio::net::TcpStream::connect(d.addr)
                .await
                .expect("connect"),
        );
    }
    let client = reqwest::Client::builder().build().expect("client");
    for path in ["/healthz", "/readyz", "/healthz"] {
        let answered =
            tokio::time::timeout(Duration::from_secs(3), client.get(d.url(path)).send()).await;
        let response = answered
            .unwrap_or_else(|_| panic!("{path} not answered while the slots are held"))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(response.status(), 200, "{path}");
    }
    drop(held);
    // Once they are gone the ordinary routes are served again.
    assert_eq!(d.get("/metrics").await.status, 200);
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_nothing_is_closed_early() {
    use tokio::io::AsyncReadExt;
    let d = healthy(&["s1"], false).await;
    let mut silent = tokio::net::TcpStream::connect(d.addr)
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(
        http::FIRST_BYTE_TIMEOUT + Duration::from_secs(3),
        silent.read(&mut buf),
    )
    .await
    .expect("the server closes a silent connection");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_echoed_by_the_provider_is_in_no_api_answer_and_no_row() {
    let d = healthy(&["s1"], false).await;
    // A proxy that echoes the request's X-Api-Key in its error page.
    d.ctl
        .inject(
            "s1",
            Fault::SendError {
                status: 500,
                body: Some(format!(
                    "{{\"message\":\"upstream refused X-Api-Key: {} ({})\"}}",
                    common::API_KEY,
                    common::API_KEY.to_uppercase()
                )),
                times: None,
            },
        )
        .expect("fault");
    d.advance_until("a failed canary recorded", S, 120 * S, || async {
        let r = d.get(&format!("/api/v1/sessions/{PROVIDER}/s1")).await;
        r.body.contains("upstream refused")
    })
    .await;
    for path in [
        format!("/api/v1/sessions/{PROVIDER}/s1"),
        "/api/v1/sessions".to_string(),
        "/metrics".to_string(),
    ] {
        let r = d.get(&path).await;
        assert!(
            !r.body
                .to_lowercase()
                .contains(&common::API_KEY.to_lowercase()),
            "{path} serves the key: {}",
            r.body
        );
    }
    let r = d.get(&format!("/api/v1/sessions/{PROVIDER}/s1")).await;
    assert!(r.body.contains("<redacted>"), "{}", r.body);
    let db = d.dir.path().join("watchdog.db");
    d.store.close().await;
    let hay = common::database_text(&db).to_lowercase();
    assert!(
        hay.contains("upstream refused"),
        "sanity: the detail is stored"
    );
    assert!(
        !hay.contains(&common::API_KEY.to_lowercase()),
        "the key is in the database"
    );
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_store_writes_fail() {
    let p = Probe::start(http::HEARTBEAT_MAX_AGE).await;
    assert_eq!(p.get("/readyz").await.0, 200);
    let lock = crate::common::store::WriteLock::take(&p._dir.path().join("w.db")).await;
    // Any write will do: retiring an unknown session changes nothing.
    let write = || p.store.retire_session(PROVIDER, "nobody", t0());
    assert!(write().await.is_err(), "the write must fail");
    let (status, body) = p.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("last write failed")),
        "{body}"
    );
    lock.release().await;
    write().await.expect("the write works again");
    assert_eq!(p.get("/readyz").await.0, 200);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_list_is_paged_and_filtered_and_bad_parameters_are_400() {
    let d = healthy(&["s1", "s2", "s3"], false).await;
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .filter_map(|s| s["session"].as_str().map(str::to_string))
            .collect()
    };
    // Page 1 of 2, then the rest by the cursor it handed out.
    let r = d.get("/api/v1/sessions?limit=2").await;
    assert_eq!(r.status, 200);
    assert_eq!(names(&r.json()), ["s1", "s2"]);
    let cursor = r
        .header("x-next-cursor")
        .expect("a next cursor")
        .to_string();
    assert!(
        r.header("link")
            .is_some_and(|l| l.contains(&cursor) && l.ends_with("rel=\"next\"")),
        "{:?}",
        r.header("link")
    );
    let r = d
        .get(&format!("/api/v1/sessions?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(names(&r.json()), ["s3"]);
    assert_eq!(r.header("x-next-cursor"), None, "the last page");
    // Filters.
    let r = d.get("/api/v1/sessions?provider=waha&state=healthy").await;
    assert_eq!(names(&r.json()), ["s1", "s2", "s3"]);
    let r = d.get("/api/v1/sessions?state=needs_pairing").await;
    assert_eq!(names(&r.json()), Vec::<String>::new());
    let r = d.get("/api/v1/sessions?provider=other").await;
    assert_eq!(names(&r.json()), Vec::<String>::new());
    // Bad parameters: 400 naming the parameter.
    for (query, names_it) in [
        ("state=sleepy", "state"),
        ("limit=0", "limit"),
        ("limit=99999", "limit"),
        ("cursor=nope", "cursor"),
        ("page=2", "page"),
    ] {
        let r = d.get(&format!("/api/v1/sessions?{query}")).await;
        assert_eq!(r.status, 400, "{query}");
        let e = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(e.contains(names_it), "{query}: {e}");
    }
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_gzipped_when_the_scraper_asks() {
    use std::io::Read;
    let d = healthy(&["s1", "s2"], false).await;
    let plain = d.get("/metrics").await;
    assert_eq!(plain.header("content-encoding"), None);
    let resp = d
        .client
        .get(d.url("/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(
        resp.headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let bytes = resp.bytes().await.expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .expect("a gzip body");
    assert!(
        text.contains("wa_watchdog_sessions{provider=\"waha\",state=\"healthy\"} 2\n"),
        "{text}"
    );
    assert!(bytes.len() < text.len());
    // q=0 refuses it.
    let resp = d
        .client
        .get(d.url("/metrics"))
        .header("accept-encoding", "gzip;q=0")
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.headers().get("content-encoding"), None);
    d.stop().await.expect("clean stop");
}
