//! The WAHA simulator over real loopback HTTP: status codes, exact bodies,
//! fault injection, the call log and the `/_sim` control API. Time is a
//! manual clock; the only real waits are the latency and not-WORKING delays
//! (≤ 200 ms each).

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};
use wa_watchdog::clock::{Clock, Timestamp};
use wa_watchdog::sim::waha::{self, Engine, Fault, Status, WahaSim, WahaSimOptions};
use wa_watchdog::sim::{JSON_UTF8, session_names};

/// 2026-09-21T…: any fixed instant works; the clock only moves by hand.
const T0: Timestamp = Timestamp::from_millis(1_790_000_000_000);
const LOOPBACK: &str = "127.0.0.1:0";

fn client() -> Client {
    // reqwest is built with `rustls-no-provider`: a provider must be installed
    // even for plain HTTP. A second install in the same process is refused; fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

fn opts(sessions: &[&str]) -> WahaSimOptions {
    WahaSimOptions {
        sessions: sessions.iter().map(|s| (*s).to_owned()).collect(),
        clock: Clock::manual(T0),
        ..WahaSimOptions::default()
    }
}

async fn start(opts: WahaSimOptions) -> WahaSim {
    let listen: SocketAddr = LOOPBACK.parse().expect("loopback address");
    waha::start(listen, opts).await.expect("start simulator")
}

/// A finished HTTP exchange.
struct Reply {
    status: u16,
    content_type: Option<String>,
    retry_after: Option<String>,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts status, JSON content type and the exact body bytes.
    fn assert_exact(&self, status: u16, body: &str) {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(self.content_type.as_deref(), Some(JSON_UTF8));
        assert_eq!(self.text, body);
    }
}

async fn call(req: RequestBuilder) -> Reply {
    let resp = req.send().await.expect("request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type");
    let retry_after = header("retry-after");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    Reply {
        status,
        content_type,
        retry_after,
        text,
    }
}

fn send_body(session: &str) -> Value {
    json!({"session": session, "chatId": "5511999990001@c.us", "text": "canary"})
}

async fn send(c: &Client, sim: &WahaSim, session: &str) -> Reply {
    call(
        c.post(format!("{}/api/sendText", sim.url()))
            .json(&send_body(session)),
    )
    .await
}

async fn get(c: &Client, sim: &WahaSim, path: &str) -> Reply {
    call(c.get(format!("{}{path}", sim.url()))).await
}

async fn post(c: &Client, sim: &WahaSim, path: &str) -> Reply {
    call(c.post(format!("{}{path}", sim.url()))).await
}

fn t0_ms(offset: Duration) -> i64 {
    T0.plus(offset).as_millis()
}

#[tokio::test]
async fn ping_is_open_and_api_needs_the_key() {
    let sim = start(WahaSimOptions {
        api_key: Some("s3cret+key".into()),
        ..opts(&["a"])
    })
    .await;
    let c = client();
    let url = sim.url();

    get(&c, &sim, "/ping")
        .await
        .assert_exact(200, r#"{"message":"pong"}"#);

    let unauthorized = r#"{"message":"Unauthorized","statusCode":401}"#;
    for req in [
        c.get(format!("{url}/api/sessions")),
        c.get(format!("{url}/api/sessions"))
            .header("X-Api-Key", "wrong"),
        c.get(format!("{url}/health")),
        c.get(format!("{url}/api/nosuchroute")),
        c.post(format!("{url}/api/sessions/a/restart")),
        // The header wins over the query parameter.
        c.get(format!("{url}/api/sessions?x-api-key=s3cret%2Bkey"))
            .header("x-api-key", "wrong"),
    ] {
        call(req).await.assert_exact(401, unauthorized);
    }

    let ok = call(
        c.get(format!("{url}/api/sessions"))
            .header("x-api-key", "s3cret+key"),
    )
    .await;
    assert_eq!(ok.status, 200);
    let ok = call(c.get(format!("{url}/api/sessions?x-api-key=s3cret%2Bkey"))).await;
    assert_eq!(ok.status, 200);
    let health = call(
        c.get(format!("{url}/health"))
            .header("X-API-KEY", "s3cret+key"),
    )
    .await;
    assert_eq!(health.status, 200);

    call(
        c.get(format!("{url}/api/nosuchroute?x=1"))
            .header("x-api-key", "s3cret+key"),
    )
    .await
    .assert_exact(
        404,
        r#"{"statusCode":404,"message":"Cannot GET /api/nosuchroute?x=1","error":"Not Found"}"#,
    );
    // Outside the protected prefixes nothing needs a key.
    get(&c, &sim, "/apix").await.assert_exact(
        404,
        r#"{"statusCode":404,"message":"Cannot GET /apix","error":"Not Found"}"#,
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn list_hides_stopped_sessions_unless_all() {
    let sim = start(opts(&["a", "b", "c"])).await;
    let ctl = sim.control();
    ctl.set_status("c", Status::Stopped).unwrap();
    let c = client();

    let names = |r: &Reply| -> Vec<String> {
        r.json()
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for (query, expect) in [
        ("", vec!["a", "b"]),
        ("?all=false", vec!["a", "b"]),
        ("?all=False", vec!["a", "b"]),
        ("?all=0", vec!["a", "b"]),
        ("?all=true", vec!["a", "b", "c"]),
        ("?all=True", vec!["a", "b", "c"]),
        ("?all=1", vec!["a", "b", "c"]),
    ] {
        let r = get(&c, &sim, &format!("/api/sessions{query}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(names(&r), expect, "query {query:?}");
    }

    let r = get(&c, &sim, "/api/sessions?all=true").await;
    let t = T0.as_millis();
    r.assert_exact(
        200,
        &format!(
            concat!(
                r#"[{{"name":"a","status":"WORKING","config":null,"me":{{"id":"15550000001@c.us","pushName":"a"}},"presence":{{"status":"online"}},"timestamps":{{"activity":{t}}}}},"#,
                r#"{{"name":"b","status":"WORKING","config":null,"me":{{"id":"15550000002@c.us","pushName":"b"}},"presence":{{"status":"online"}},"timestamps":{{"activity":{t}}}}},"#,
                r#"{{"name":"c","status":"STOPPED","config":null,"me":null,"presence":null,"timestamps":{{"activity":{t}}}}}]"#
            ),
            t = t
        ),
    );

    let bad = get(&c, &sim, "/api/sessions?all=yes").await;
    bad.assert_exact(
        400,
        r#"{"message":["all must be a boolean value"],"error":"Bad Request","statusCode":400}"#,
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn single_session_has_engine_block_and_unknown_is_404() {
    let sim = start(opts(&["a"])).await;
    let c = client();
    let t = T0.as_millis();
    get(&c, &sim, "/api/sessions/a").await.assert_exact(
        200,
        &format!(
            r#"{{"name":"a","status":"WORKING","config":null,"me":{{"id":"15550000001@c.us","pushName":"a"}},"presence":{{"status":"online"}},"timestamps":{{"activity":{t}}},"engine":{{"engine":"GOWS","grpc":{{"client":"READY","stream":"READY"}},"gows":{{"found":true,"connected":true}}}}}}"#
        ),
    );
    let not_found = r#"{"message":"Session not found","error":"Not Found","statusCode":404}"#;
    get(&c, &sim, "/api/sessions/nosuch")
        .await
        .assert_exact(404, not_found);
    post(&c, &sim, "/api/sessions/nosuch/restart")
        .await
        .assert_exact(404, not_found);
    post(&c, &sim, "/api/sessions/nosuch/start")
        .await
        .assert_exact(404, not_found);
    sim.shutdown().await;
}

#[tokio::test]
async fn desync_returns_the_2084_body_while_status_stays_working() {
    let sim = start(opts(&["a", "b"])).await;
    let ctl = sim.control();
    ctl.inject("a", Fault::Desync).unwrap();
    let c = client();

    // Sent with the #2084 report's key order; the filter echoes it as parsed.
    let raw = r#"{"chatId":"5511999990001@c.us","text":"Hello","session":"a"}"#;
    let r = call(
        c.post(format!("{}/api/sendText", sim.url()))
            .header("content-type", "application/json")
            .body(raw),
    )
    .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.content_type.as_deref(), Some(JSON_UTF8));
    let ts = T0.to_rfc3339();
    assert!(
        r.text.starts_with(&format!(
            r#"{{"statusCode":500,"timestamp":"{ts}","exception":{{"message":"2 UNKNOWN: server returned error 400","code":2,"details":"server returned error 400","metadata":{{}},"name":"Error","stack":"Error: 2 UNKNOWN: server returned error 400\n    at callErrorFromStatus (/app/node_modules/@grpc/grpc-js/build/src/call.js:32:19)\n"#
        )),
        "{}",
        r.text
    );
    assert!(r.text.ends_with(&format!(
        r#""request":{{"path":"/api/sendText","method":"POST","body":{raw}}},"version":{{"version":"2026.4.2","engine":"GOWS","tier":"PLUS","browser":null,"platform":"linux/x64","worker":{{"id":"sim"}}}}}}"#
    )), "{}", r.text);
    let v = r.json();
    assert_eq!(
        v["exception"]["message"],
        "2 UNKNOWN: server returned error 400"
    );
    assert_eq!(v["exception"]["details"], "server returned error 400");
    assert_eq!(v["exception"]["code"], 2);

    // The status API sees nothing wrong; other sessions send fine.
    let status = get(&c, &sim, "/api/sessions/a").await.json();
    assert_eq!(status["status"], "WORKING");
    assert_eq!(status["engine"]["gows"]["connected"], true);
    assert_eq!(send(&c, &sim, "b").await.status, 201);
    assert_eq!(send(&c, &sim, "a").await.status, 500, "desync is sticky");
    sim.shutdown().await;
}

#[tokio::test]
async fn restart_goes_starting_then_working_on_the_clock_and_heals() {
    let sim = start(opts(&["a", "b"])).await;
    let ctl = sim.control();
    let clock = ctl.clock().clone();
    ctl.inject("a", Fault::Desync).unwrap();
    let c = client();

    let r = post(&c, &sim, "/api/sessions/a/restart").await;
    let t = T0.as_millis();
    r.assert_exact(
        201,
        &format!(
            r#"{{"name":"a","status":"STARTING","config":null,"me":null,"presence":null,"timestamps":{{"activity":{t}}},"engine":{{"engine":"GOWS","grpc":{{"client":"READY","stream":"READY"}},"gows":{{"found":true,"connected":false}}}}}}"#
        ),
    );
    send(&c, &sim, "a").await.assert_exact(
        422,
        r#"{"error":"Session status is not as expected. Try again later or restart the session","session":"a","status":"STARTING","expected":["WORKING"]}"#,
    );

    clock.advance(Duration::from_millis(4_999));
    assert_eq!(
        get(&c, &sim, "/api/sessions/a").await.json()["status"],
        "STARTING"
    );
    clock.advance(Duration::from_millis(1));
    let status = get(&c, &sim, "/api/sessions/a").await.json();
    assert_eq!(status["status"], "WORKING");
    assert_eq!(status["me"]["id"], "15550000001@c.us");
    assert_eq!(
        status["timestamps"]["activity"],
        t0_ms(Duration::from_secs(5))
    );

    assert_eq!(
        send(&c, &sim, "a").await.status,
        201,
        "restart cleared the desync"
    );
    assert_eq!(ctl.restart_count("a"), 1);
    assert_eq!(ctl.restart_count("b"), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn restart_that_does_not_heal_keeps_the_desync() {
    let sim = start(opts(&["a"])).await;
    let ctl = sim.control();
    ctl.inject("a", Fault::Desync).unwrap();
    ctl.inject("a", Fault::RestartDoesNotHeal).unwrap();
    let c = client();

    assert_eq!(post(&c, &sim, "/api/sessions/a/restart").await.status, 201);
    ctl.clock().advance(Duration::from_secs(5));
    assert_eq!(ctl.status("a"), Some(Status::Working));
    let r = send(&c, &sim, "a").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json()["exception"]["message"],
        "2 UNKNOWN: server returned error 400"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn restart_that_fails_answers_500_and_changes_nothing() {
    let sim = start(opts(&["a"])).await;
    let ctl = sim.control();
    ctl.inject("a", Fault::Desync).unwrap();
    ctl.inject("a", Fault::RestartFails).unwrap();
    let c = client();

    let r = post(&c, &sim, "/api/sessions/a/restart").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.content_type.as_deref(), Some(JSON_UTF8));
    let v = r.json();
    assert_eq!(v["statusCode"], 500);
    assert_eq!(v["request"]["path"], "/api/sessions/a/restart");
    assert_eq!(v["request"]["body"], json!({}));
    assert!(v["exception"]["message"].is_string());
    assert_eq!(ctl.status("a"), Some(Status::Working));
    assert_eq!(send(&c, &sim, "a").await.status, 500, "still desynced");

    ctl.clear("a").unwrap();
    assert_eq!(send(&c, &sim, "a").await.status, 201);
    sim.shutdown().await;
}

#[tokio::test]
async fn stuck_starting_never_becomes_working() {
    let sim = start(opts(&["a"])).await;
    let ctl = sim.control();
    ctl.inject("a", Fault::StuckStarting).unwrap();
    let c = client();

    assert_eq!(post(&c, &sim, "/api/sessions/a/restart").await.status, 201);
    ctl.clock().advance(Duration::from_secs(3600));
    assert_eq!(
        get(&c, &sim, "/api/sessions/a").await.json()["status"],
        "STARTING"
    );
    assert_eq!(send(&c, &sim, "a").await.json()["status"], "STARTING");

    // Clearing the fault does not unstick this start; the next restart works.
    ctl.clear("a").unwrap();
    assert_eq!(ctl.status("a"), Some(Status::Starting));
    assert_eq!(post(&c, &sim, "/api/sessions/a/restart").await.status, 201);
    ctl.clock().advance(Duration::from_secs(5));
    assert_eq!(ctl.status("a"), Some(Status::Working));
    sim.shutdown().await;
}

#[tokio::test]
async fn counted_faults_blip_exactly_n_times() {
    let sim = start(opts(&["a"])).await;
    let ctl = sim.control();
    let c = client();

    ctl.inject(
        "a",
        Fault::RateLimited {
            retry_after_secs: Some(30),
            times: Some(1),
        },
    )
    .unwrap();
    let r = send(&c, &sim, "a").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.retry_after.as_deref(), Some("30"));
    assert_eq!(r.json()["statusCode"], 429);
    assert_eq!(send(&c, &sim, "a").await.status, 201);

    ctl.inject(
        "a",
        Fault::SendError {
            status: 502,
            body: None,
            times: Some(2),
        },
    )
    .unwrap();
    for _ in 0..2 {
        let r = send(&c, &sim, "a").await;
        assert_eq!(r.status, 502);
        assert_eq!(r.content_type.as_deref(), Some("text/html"));
        assert!(r.text.contains("502 Bad Gateway"), "{}", r.text);
    }
    assert_eq!(send(&c, &sim, "a").await.status, 201);

    // A sticky plain 500: a filter body, but without the #2084 signature.
    ctl.inject(
        "a",
        Fault::SendError {
            status: 500,
            body: None,
            times: None,
        },
    )
    .unwrap();
    for _ in 0..3 {
        let r = send(&c, &sim, "a").await;
        assert_eq!(r.status, 500);
        assert!(!r.text.contains("server returned error"), "{}", r.text);
        assert_eq!(r.json()["exception"]["name"], "Error");
    }

    // A custom body is sent as given: JSON when it parses, text otherwise.
    ctl.inject(
        "a",
        Fault::SendError {
            status: 503,
            body: Some("upstream busy".into()),
            times: Some(1),
        },
    )
    .unwrap();
    let r = send(&c, &sim, "a").await;
    assert_eq!((r.status, r.text.as_str()), (503, "upstream busy"));
    assert_eq!(r.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    ctl.inject(
        "a",
        Fault::SendError {
            status: 500,
            body: Some(r#"{"statusCode":500,"message":"x"}"#.into()),
            times: Some(1),
        },
    )
    .unwrap();
    send(&c, &sim, "a")
        .await
        .assert_exact(500, r#"{"statusCode":500,"message":"x"}"#);

    assert_eq!(ctl.send_count("a"), 10);
    assert_eq!(ctl.sent_messages().len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn send_text_422s_and_400s() {
    let sim = start(opts(&["a"])).await;
    let ctl = sim.control();
    let c = client();
    let url = format!("{}/api/sendText", sim.url());

    call(c.post(&url).json(&json!({"chatId": "1@c.us", "text": "x"})))
        .await
        .assert_exact(
            422,
            r#"{"error":"Session name is required","session":null}"#,
        );
    call(
        c.post(&url)
            .json(&json!({"session": "", "chatId": "1@c.us"})),
    )
    .await
    .assert_exact(422, r#"{"error":"Session name is required","session":""}"#);
    // Express parses only JSON content types; anything else is `{}`.
    call(
        c.post(&url)
            .body(r#"{"session":"a","chatId":"1@c.us","text":"x"}"#),
    )
    .await
    .assert_exact(
        422,
        r#"{"error":"Session name is required","session":null}"#,
    );
    send(&c, &sim, "nosuch").await.assert_exact(
        422,
        r#"{"error":"Session \"nosuch\" does not exist","session":"nosuch"}"#,
    );

    for status in [
        Status::Starting,
        Status::ScanQrCode,
        Status::Failed,
        Status::Stopped,
    ] {
        ctl.set_status("a", status).unwrap();
        send(&c, &sim, "a").await.assert_exact(
            422,
            &format!(
                r#"{{"error":"Session status is not as expected. Try again later or restart the session","session":"a","status":"{status}","expected":["WORKING"]}}"#
            ),
        );
    }
    ctl.set_status("a", Status::Working).unwrap();

    let bad = call(
        c.post(&url)
            .header("content-type", "application/json")
            .body(r#"{"session":"a","#),
    )
    .await;
    assert_eq!(bad.status, 400);
    let v = bad.json();
    assert_eq!(
        (v["error"].as_str(), v["statusCode"].as_u64()),
        (Some("Bad Request"), Some(400))
    );
    assert!(v["message"].is_string());

    let no_chat = call(c.post(&url).json(&json!({"session": "a", "text": "x"}))).await;
    assert_eq!(no_chat.status, 400);
    assert_eq!(send(&c, &sim, "a").await.status, 201);
    sim.shutdown().await;
}

#[tokio::test]
async fn send_waits_for_working_when_asked_to() {
    let sim = start(WahaSimOptions {
        not_working_delay: Duration::from_millis(150),
        ..opts(&["a"])
    })
    .await;
    let ctl = sim.control();
    let c = client();
    assert_eq!(post(&c, &sim, "/api/sessions/a/restart").await.status, 201);

    // The send arrives while STARTING; the session becomes WORKING while the
    // server waits, so the send succeeds instead of failing with 422.
    let pending = tokio::spawn({
        let c = c.clone();
        let url = sim.url();
        async move {
            call(c.post(format!("{url}/api/sendText")).json(&send_body("a")))
                .await
                .status
        }
    });
    while ctl.send_count("a") == 0 {
        tokio::task::yield_now().await;
    }
    ctl.clock().advance(Duration::from_secs(5));
    assert_eq!(pending.await.unwrap(), 201);

    // An unknown session still fails after the wait.
    let started = std::time::Instant::now();
    assert_eq!(send(&c, &sim, "nosuch").await.status, 422);
    assert!(started.elapsed() >= Duration::from_millis(150));
    sim.shutdown().await;
}

#[tokio::test]
async fn send_bodies_follow_the_engine() {
    let c = client();

    let gows = start(opts(&["a"])).await;
    let r = call(
        c.post(format!("{}/api/sendText", gows.url()))
            .json(&json!({"session": "a", "chatId": "5511999990001", "text": "hi"})),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.content_type.as_deref(), Some(JSON_UTF8));
    assert!(
        r.text.starts_with(r#"{"id":"true_5511999990001@c.us_3EB0"#),
        "{}",
        r.text
    );
    let v = r.json();
    let msg_id = v["_data"]["Info"]["ID"].as_str().unwrap().to_owned();
    assert_eq!(v["id"], format!("true_5511999990001@c.us_{msg_id}"));
    assert_eq!(v["_data"]["Info"]["Chat"], "5511999990001@s.whatsapp.net");
    assert_eq!(v["_data"]["Info"]["Sender"], "15550000001@s.whatsapp.net");
    assert_eq!(v["_data"]["Info"]["IsFromMe"], true);
    assert_eq!(v["_data"]["Message"]["conversation"], "hi");
    let sent = gows.control().sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (
            sent[0].session.as_str(),
            sent[0].chat_id.as_str(),
            sent[0].text.as_str()
        ),
        ("a", "5511999990001", "hi")
    );
    assert_eq!(sent[0].id, v["id"].as_str().unwrap());
    // Groups get the sender as a 4th id part.
    let g = call(
        c.post(format!("{}/api/sendText", gows.url()))
            .json(&json!({"session": "a", "chatId": "1203630@g.us", "text": "hi"})),
    )
    .await
    .json();
    assert!(
        g["id"].as_str().unwrap().ends_with("_15550000001@c.us"),
        "{g}"
    );
    assert_eq!(g["_data"]["Info"]["IsGroup"], true);
    gows.shutdown().await;

    let noweb = start(WahaSimOptions {
        engine: Engine::Noweb,
        ..opts(&["a"])
    })
    .await;
    let r = send(&c, &noweb, "a").await;
    assert_eq!(r.status, 201);
    assert!(
        r.text.starts_with(
            r#"{"key":{"remoteJid":"5511999990001@s.whatsapp.net","fromMe":true,"id":"3EB0"#
        ),
        "{}",
        r.text
    );
    let v = r.json();
    assert_eq!(v["message"]["extendedTextMessage"]["text"], "canary");
    assert_eq!(v["messageTimestamp"], (T0.as_millis() / 1000).to_string());
    assert_eq!(v["status"], "SERVER_ACK");
    assert_eq!(
        get(&c, &noweb, "/api/sessions/a").await.json()["engine"],
        json!({"engine": "NOWEB"})
    );
    assert_eq!(
        get(&c, &noweb, "/api/version").await.json()["engine"],
        "NOWEB"
    );
    noweb.shutdown().await;

    let webjs = start(WahaSimOptions {
        engine: Engine::Webjs,
        ..opts(&["a"])
    })
    .await;
    let r = send(&c, &webjs, "a").await;
    assert_eq!(r.status, 201);
    assert!(
        r.text
            .starts_with(r#"{"id":{"fromMe":true,"remote":"5511999990001@c.us","id":"3EB0"#),
        "{}",
        r.text
    );
    let v = r.json();
    let id = v["id"]["id"].as_str().unwrap();
    assert_eq!(
        v["id"]["_serialized"],
        format!("true_5511999990001@c.us_{id}")
    );
    // Acked at once by default (`ack_server_after` zero).
    assert_eq!(v["ack"], 1);
    assert_eq!(v["body"], "canary");
    assert_eq!(v["fromMe"], true);
    webjs.shutdown().await;
}

#[tokio::test]
async fn down_answers_503_everywhere_but_control() {
    let sim = start(opts(&["a"])).await;
    let ctl = sim.control();
    let c = client();
    ctl.set_down(true);
    for path in ["/ping", "/api/sessions", "/api/sessions/a"] {
        let r = get(&c, &sim, path).await;
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(r.content_type.as_deref(), Some("text/html"));
        assert!(r.text.contains("503 Service Temporarily Unavailable"));
    }
    assert_eq!(send(&c, &sim, "a").await.status, 503);
    assert_eq!(post(&c, &sim, "/api/sessions/a/restart").await.status, 503);
    assert_eq!(
        ctl.status("a"),
        Some(Status::Working),
        "a 503 restart did nothing"
    );
    let state = get(&c, &sim, "/_sim/state").await;
    assert_eq!(state.status, 200);
    assert_eq!(state.json()["down"], true);

    ctl.set_down(false);
    assert_eq!(send(&c, &sim, "a").await.status, 201);
    sim.shutdown().await;
}

#[tokio::test]
async fn session_lifecycle_routes() {
    let sim = start(opts(&["a"])).await;
    let ctl = sim.control();
    let c = client();

    let r = post(&c, &sim, "/api/sessions/a/stop").await;
    let t = T0.as_millis();
    r.assert_exact(
        201,
        &format!(
            r#"{{"name":"a","status":"STOPPED","config":null,"me":null,"presence":null,"timestamps":{{"activity":{t}}},"engine":{{}}}}"#
        ),
    );
    assert_eq!(get(&c, &sim, "/api/sessions").await.text, "[]");
    let me = get(&c, &sim, "/api/sessions/a/me").await;
    assert_eq!(me.status, 404);
    assert_eq!(
        me.json()["message"],
        "We didn't find a session with name 'a'.\nPlease start it first by using POST /api/sessions/a/start request"
    );

    let r = post(&c, &sim, "/api/sessions/a/start").await;
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (201, Some("STARTING"))
    );
    post(&c, &sim, "/api/sessions/a/start").await.assert_exact(
        422,
        r#"{"message":"Session 'a' is already started.","error":"Unprocessable Entity","statusCode":422}"#,
    );
    ctl.clock().advance(Duration::from_secs(5));
    get(&c, &sim, "/api/sessions/a/me")
        .await
        .assert_exact(200, r#"{"id":"15550000001@c.us","pushName":"a"}"#);

    // Restart of a STOPPED session starts it.
    ctl.set_status("a", Status::Stopped).unwrap();
    let r = post(&c, &sim, "/api/sessions/a/restart").await;
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (201, Some("STARTING"))
    );

    // A trailing slash is the same route.
    assert_eq!(get(&c, &sim, "/api/sessions/a/").await.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn forbidden_routes_exist_and_are_logged() {
    let sim = start(opts(&["a", "b", "c", "d"])).await;
    let ctl = sim.control();
    let c = client();
    let url = sim.url();

    // Logout: credentials gone, running session asks for a QR.
    let r = post(&c, &sim, "/api/sessions/a/logout").await;
    assert_eq!(r.status, 201);
    let v = r.json();
    assert_eq!(
        (v["status"].as_str(), &v["me"]),
        (Some("SCAN_QR_CODE"), &Value::Null)
    );
    // A restart cannot bring it back without a scan.
    post(&c, &sim, "/api/sessions/a/restart").await;
    ctl.clock().advance(Duration::from_secs(5));
    assert_eq!(ctl.status("a"), Some(Status::ScanQrCode));

    let r = call(c.delete(format!("{url}/api/sessions/b"))).await;
    assert_eq!((r.status, r.text.as_str(), r.content_type), (200, "", None));
    assert_eq!(get(&c, &sim, "/api/sessions/b").await.status, 404);

    let r = call(
        c.post(format!("{url}/api/sessions/stop"))
            .json(&json!({"name": "c", "logout": false})),
    )
    .await;
    assert_eq!((r.status, r.text.as_str()), (201, ""));
    assert_eq!(ctl.status("c"), Some(Status::Stopped));
    call(
        c.post(format!("{url}/api/sessions/stop"))
            .json(&json!({"name": "c", "logout": true})),
    )
    .await;
    assert_eq!(ctl.status("c"), None, "logout:true deletes");

    let r = call(
        c.post(format!("{url}/api/sessions/logout"))
            .json(&json!({"name": "d"})),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(ctl.status("d"), None);

    assert_eq!(ctl.calls_matching("DELETE", "/api/sessions/b").len(), 1);
    assert_eq!(
        ctl.calls_matching("POST", "/api/sessions/a/logout").len(),
        1
    );
    let deprecated = ctl.calls_matching("POST", "/api/sessions/stop");
    assert_eq!(deprecated.len(), 2);
    assert_eq!(deprecated[0].session.as_deref(), Some("c"));
    assert_eq!(
        ctl.calls_matching("post", "/api/sessions/logout")[0]
            .session
            .as_deref(),
        Some("d")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn call_log_records_every_waha_request() {
    let sim = start(opts(&["a", "b"])).await;
    let ctl = sim.control();
    let clock = ctl.clock().clone();
    let c = client();

    get(&c, &sim, "/api/sessions?all=true").await;
    clock.advance(Duration::from_secs(1));
    send(&c, &sim, "a").await;
    post(&c, &sim, "/api/sessions/b/restart").await;
    get(&c, &sim, "/ping").await;
    get(&c, &sim, "/_sim/state").await; // control calls are not logged

    let calls = ctl.calls();
    let summary: Vec<_> = calls
        .iter()
        .map(|c| {
            (
                c.at.as_millis() - T0.as_millis(),
                c.method.as_str(),
                c.path.as_str(),
                c.session.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, "GET", "/api/sessions", None),
            (1000, "POST", "/api/sendText", Some("a")),
            (1000, "POST", "/api/sessions/b/restart", Some("b")),
            (1000, "GET", "/ping", None),
        ]
    );
    assert_eq!(ctl.send_count("a"), 1);
    assert_eq!(ctl.send_count("b"), 0);
    assert_eq!((ctl.restart_count("a"), ctl.restart_count("b")), (0, 1));
    assert!(ctl.calls_matching("DELETE", "/api/sessions/a").is_empty());
    assert_eq!(ctl.clear_calls(), 4);
    assert!(ctl.calls().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_faults_delay_only_their_session() {
    let sim = start(opts(&["slow", "fast"])).await;
    let ctl = sim.control();
    ctl.inject("slow", Fault::Latency(Duration::from_millis(150)))
        .unwrap();
    let c = client();
    let url = sim.url();

    let timed_out = c
        .post(format!("{url}/api/sendText"))
        .json(&send_body("slow"))
        .timeout(Duration::from_millis(50))
        .send()
        .await;
    assert!(timed_out.is_err_and(|e| e.is_timeout()));
    let fast = c
        .get(format!("{url}/api/sessions/fast"))
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .expect("fast session is not delayed");
    assert_eq!(fast.status(), 200);

    ctl.inject("slow", Fault::Latency(Duration::ZERO)).unwrap();
    ctl.set_global_latency(Duration::from_millis(100));
    let started = std::time::Instant::now();
    assert_eq!(get(&c, &sim, "/ping").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(100));
    sim.shutdown().await;
}

#[tokio::test]
async fn version_and_server_routes() {
    let sim = start(opts(&[])).await;
    let c = client();
    let version = r#"{"version":"2026.4.2","engine":"GOWS","tier":"PLUS","browser":null,"platform":"linux/x64","worker":{"id":"sim"}}"#;
    get(&c, &sim, "/api/server/version")
        .await
        .assert_exact(200, version);
    get(&c, &sim, "/api/version")
        .await
        .assert_exact(200, version);
    sim.control().clock().advance(Duration::from_secs(2));
    get(&c, &sim, "/api/server/status").await.assert_exact(
        200,
        &format!(
            r#"{{"startTimestamp":{},"uptime":2000,"worker":{{"id":"sim"}}}}"#,
            T0.as_millis()
        ),
    );
    call(c.put(format!("{}/api/sessions", sim.url())))
        .await
        .assert_exact(
            404,
            r#"{"statusCode":404,"message":"Cannot PUT /api/sessions","error":"Not Found"}"#,
        );
    sim.shutdown().await;
}

#[tokio::test]
async fn http_control_api_round_trip() {
    let sim = start(opts(&["a"])).await;
    let c = client();
    let url = sim.url();
    let ctl_call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = c.request(method, format!("{url}/_sim{path}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        call(req)
    };
    use reqwest::Method as M;

    let r = ctl_call(M::POST, "/sessions", Some(json!({"name": "new"}))).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.json(),
        json!({"name": "new", "status": "WORKING", "me_id": "15550000002@c.us", "paired": true, "ready_at": null, "faults": []})
    );
    let r = ctl_call(M::POST, "/sessions", Some(json!({"name": "new"}))).await;
    assert_eq!(r.status, 409);
    let r = ctl_call(M::POST, "/sessions", Some(json!({"name": "no spaces"}))).await;
    assert_eq!(r.status, 400);

    let r = ctl_call(
        M::POST,
        "/sessions/new/faults",
        Some(json!({"fault": "desync"})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["faults"], json!([{"fault": "desync"}]));
    let r = ctl_call(
        M::POST,
        "/sessions/new/faults",
        Some(json!({"fault": "rate_limited", "retry_after_secs": 5, "times": 1})),
    )
    .await;
    assert_eq!(
        r.json()["faults"],
        json!([{"fault": "desync"}, {"fault": "rate_limited", "retry_after_secs": 5, "times": 1}])
    );
    assert_eq!(send(&c, &sim, "new").await.status, 429);
    assert_eq!(send(&c, &sim, "new").await.status, 500);

    let r = ctl_call(M::DELETE, "/sessions/new/faults", None).await;
    assert_eq!(r.json()["faults"], json!([]));
    assert_eq!(send(&c, &sim, "new").await.status, 201);

    let r = ctl_call(
        M::PUT,
        "/sessions/new/status",
        Some(json!({"status": "FAILED"})),
    )
    .await;
    assert_eq!(r.json()["status"], "FAILED");
    assert_eq!(send(&c, &sim, "new").await.json()["status"], "FAILED");

    let r = ctl_call(M::PUT, "/down", Some(json!({"down": true}))).await;
    assert_eq!(r.json()["down"], true);
    assert_eq!(get(&c, &sim, "/ping").await.status, 503);
    ctl_call(M::PUT, "/down", Some(json!({"down": false}))).await;
    let r = ctl_call(M::PUT, "/latency", Some(json!({"ms": 0}))).await;
    assert_eq!(r.json()["global_latency_ms"], 0);

    let calls = ctl_call(M::GET, "/calls", None).await.json();
    assert_eq!(calls.as_array().unwrap().len(), 5);
    assert_eq!(calls[0]["path"], "/api/sendText");
    assert_eq!(calls[0]["session"], "new");
    assert_eq!(calls[0]["at"], T0.as_millis());
    let sent = ctl_call(M::GET, "/sent", None).await.json();
    assert_eq!(sent[0]["text"], "canary");
    assert_eq!(
        ctl_call(M::DELETE, "/calls", None).await.json(),
        json!({"cleared": 5})
    );

    let state = ctl_call(M::GET, "/state", None).await.json();
    assert_eq!(state["sessions"].as_array().unwrap().len(), 2);
    let r = ctl_call(M::DELETE, "/sessions/new", None).await;
    assert_eq!(r.json(), json!({"removed": "new"}));
    assert_eq!(sim.control().status("new"), None);

    // Clear errors for bad control requests.
    for (method, path, body, status) in [
        (
            M::POST,
            "/sessions/nosuch/faults",
            Some(json!({"fault": "desync"})),
            404,
        ),
        (
            M::POST,
            "/sessions/a/faults",
            Some(json!({"fault": "melt"})),
            400,
        ),
        (
            M::POST,
            "/sessions/a/faults",
            Some(json!({"fault": "send_error", "status": 200})),
            400,
        ),
        (
            M::PUT,
            "/sessions/a/status",
            Some(json!({"status": "BROKEN"})),
            400,
        ),
        (M::PUT, "/down", None, 400),
        (M::PUT, "/latency", Some(json!({"ms": -1})), 400),
        (M::DELETE, "/sessions/nosuch", None, 404),
        (M::GET, "/nope", None, 404),
    ] {
        let r = ctl_call(method.clone(), path, body).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.text);
        assert!(r.json()["error"].is_string(), "{}", r.text);
    }
    let r = call(
        c.put(format!("{url}/_sim/down"))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn start_rejects_bad_initial_sessions_and_shutdown_closes_the_port() {
    let listen: SocketAddr = LOOPBACK.parse().unwrap();
    let err = waha::start(listen, opts(&["ok", "ok"]))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let err = waha::start(listen, opts(&["bad name"]))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);

    let names = session_names(3);
    let sim = waha::start(
        listen,
        WahaSimOptions {
            sessions: names.clone(),
            ..opts(&[])
        },
    )
    .await
    .unwrap();
    assert!(sim.addr().ip().is_loopback());
    assert_ne!(sim.addr().port(), 0);
    let c = client();
    let list = get(&c, &sim, "/api/sessions").await.json();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(list[2]["name"], "session-003");
    assert_eq!(list[2]["me"]["id"], "15550000003@c.us");
    let url = sim.url();
    sim.shutdown().await;
    assert!(c.get(format!("{url}/ping")).send().await.is_err());
}

#[tokio::test]
async fn run_standalone_serves_until_shutdown() {
    // run_standalone does not report its port, so pick a free one first.
    let probe = std::net::TcpListener::bind(LOOPBACK).unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(waha::run_standalone(addr, opts(&["a"]), async {
        let _ = stopped.await;
    }));
    let c = client();
    let url = format!("http://{addr}");
    // The server binds asynchronously; retry until it answers.
    let mut pong = None;
    for _ in 0..200 {
        if let Ok(r) = c.get(format!("{url}/ping")).send().await {
            pong = Some(r.status().as_u16());
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(pong, Some(200));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

// ---------------------------------------------------------------- delivery acks

/// `GET /api/{s}/chats/{chat}/messages/{id}?downloadMedia=false`, ids and
/// chats percent-encoded as a client would send them.
async fn read_back(c: &Client, sim: &WahaSim, session: &str, chat: &str, id: &str) -> Reply {
    let enc = |s: &str| s.replace('@', "%40");
    get(
        c,
        sim,
        &format!(
            "/api/{session}/chats/{}/messages/{}?downloadMedia=false",
            enc(chat),
            enc(id)
        ),
    )
    .await
}

const CANARY_CHAT: &str = "5511999990001@c.us";

fn last_id(sim: &WahaSim) -> String {
    sim.control()
        .sent_messages()
        .last()
        .expect("a sent message")
        .id
        .clone()
}

#[tokio::test]
async fn acks_progress_pending_server_device_on_the_clock() {
    let sim = start(WahaSimOptions {
        ack_server_after: Duration::from_secs(2),
        ack_device_after: Duration::from_secs(5),
        engine: Engine::Webjs,
        ..opts(&["a"])
    })
    .await;
    let c = client();
    let r = send(&c, &sim, "a").await;
    assert_eq!(r.status, 201);
    // WEBJS's own reply carries the ack at send time.
    assert_eq!(r.json()["ack"], 0);
    let id = last_id(&sim);
    assert_eq!(r.json()["id"]["_serialized"], id.as_str());

    let r = read_back(&c, &sim, "a", CANARY_CHAT, &id).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["ack"], 0);
    assert_eq!(v["ackName"], "PENDING");
    assert_eq!(v["fromMe"], true);
    assert_eq!(v["to"], CANARY_CHAT);

    sim.control().clock().advance(Duration::from_secs(2));
    let v = read_back(&c, &sim, "a", CANARY_CHAT, &id).await.json();
    assert_eq!(
        (v["ack"].as_i64(), v["ackName"].as_str()),
        (Some(1), Some("SERVER"))
    );
    sim.control().clock().advance(Duration::from_secs(3));
    let v = read_back(&c, &sim, "a", CANARY_CHAT, &id).await.json();
    assert_eq!(
        (v["ack"].as_i64(), v["ackName"].as_str()),
        (Some(2), Some("DEVICE"))
    );
    assert_eq!(sim.control().message_ack(&id), Some(2));
}

#[tokio::test]
async fn read_back_tells_unknown_messages_sessions_and_chats_apart() {
    let sim = start(opts(&["a", "b"])).await;
    let c = client();
    assert_eq!(send(&c, &sim, "a").await.status, 201);
    let id = last_id(&sim);
    // Default: SERVER at once.
    assert_eq!(
        read_back(&c, &sim, "a", CANARY_CHAT, &id).await.json()["ack"],
        1
    );

    read_back(&c, &sim, "a", CANARY_CHAT, "true_5511999990001@c.us_NOPE")
        .await
        .assert_exact(
            404,
            r#"{"message":"Message not found","error":"Not Found","statusCode":404}"#,
        );
    // Another session's message, or the wrong chat: not found either.
    assert_eq!(read_back(&c, &sim, "b", CANARY_CHAT, &id).await.status, 404);
    assert_eq!(
        read_back(&c, &sim, "a", "5511000000000@c.us", &id)
            .await
            .status,
        404
    );
    // A session that is not WORKING answers like the send path.
    sim.control().set_status("a", Status::Stopped).unwrap();
    let r = read_back(&c, &sim, "a", CANARY_CHAT, &id).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["status"], "STOPPED");
    assert_eq!(
        read_back(&c, &sim, "zz", CANARY_CHAT, &id).await.status,
        404
    );
}

#[tokio::test]
async fn engines_without_the_read_back_answer_501_or_the_router_404() {
    let c = client();
    let sim = start(WahaSimOptions {
        read_back: waha::ReadBack::NotImplemented,
        ..opts(&["a"])
    })
    .await;
    send(&c, &sim, "a").await;
    let r = read_back(&c, &sim, "a", CANARY_CHAT, &last_id(&sim)).await;
    r.assert_exact(
        501,
        r#"{"message":"The method is not implemented by the engine","error":"Not Implemented","statusCode":501}"#,
    );

    let sim = start(WahaSimOptions {
        read_back: waha::ReadBack::NoRoute,
        ..opts(&["a"])
    })
    .await;
    let r = read_back(&c, &sim, "a", CANARY_CHAT, "x").await;
    assert_eq!(r.status, 404);
    // The router's 404 names the route; a missing message does not.
    assert_eq!(
        r.json()["message"],
        "Cannot GET /api/a/chats/5511999990001%40c.us/messages/x?downloadMedia=false"
    );
}

#[tokio::test]
async fn ack_faults_never_acked_error_and_slow() {
    let sim = start(opts(&["a", "b", "c"])).await;
    let ctl = sim.control();
    let c = client();
    ctl.inject("a", Fault::AcceptedNeverAcked).unwrap();
    ctl.inject("b", Fault::AckError).unwrap();
    ctl.inject("c", Fault::AckSlow(Duration::from_secs(30)))
        .unwrap();

    let mut ids = Vec::new();
    for s in ["a", "b", "c"] {
        assert_eq!(send(&c, &sim, s).await.status, 201);
        ids.push(last_id(&sim));
    }
    let ack = |i: usize| ctl.message_ack(&ids[i]);
    assert_eq!((ack(0), ack(1), ack(2)), (Some(0), Some(0), Some(0)));
    ctl.clock().advance(Duration::from_secs(1));
    assert_eq!(ack(1), Some(-1));
    let v = read_back(&c, &sim, "b", CANARY_CHAT, &ids[1]).await.json();
    assert_eq!(
        (v["ack"].as_i64(), v["ackName"].as_str()),
        (Some(-1), Some("ERROR"))
    );
    ctl.clock().advance(Duration::from_secs(29));
    assert_eq!((ack(0), ack(2)), (Some(0), Some(2)));
    ctl.clock().advance(Duration::from_secs(86_400));
    assert_eq!(ack(0), Some(0), "never acked stays PENDING");

    // A restart heals never-acked and ack-error; the slow session stays slow.
    for s in ["a", "b", "c"] {
        assert_eq!(
            post(&c, &sim, &format!("/api/sessions/{s}/restart"))
                .await
                .status,
            201
        );
    }
    ctl.clock().advance(Duration::from_secs(5));
    assert!(ctl.session("a").unwrap().faults.is_empty());
    assert!(ctl.session("b").unwrap().faults.is_empty());
    assert_eq!(
        ctl.session("c").unwrap().faults,
        vec![Fault::AckSlow(Duration::from_secs(30))]
    );
    send(&c, &sim, "a").await;
    assert_eq!(ctl.message_ack(&last_id(&sim)), Some(1));
    // Wire form of the new faults.
    for (json, fault) in [
        (
            r#"{"fault":"accepted_never_acked"}"#,
            Fault::AcceptedNeverAcked,
        ),
        (r#"{"fault":"ack_error"}"#, Fault::AckError),
        (
            r#"{"fault":"ack_slow","ms":1500}"#,
            Fault::AckSlow(Duration::from_millis(1500)),
        ),
        (
            r#"{"fault":"whatsapp_error","code":403,"times":1}"#,
            Fault::WhatsappError {
                code: 403,
                times: Some(1),
            },
        ),
        (
            r#"{"fault":"reachout_timelock","ms":60000}"#,
            Fault::ReachoutTimelock(Duration::from_secs(60)),
        ),
    ] {
        assert_eq!(serde_json::from_str::<Fault>(json).unwrap(), fault);
        assert_eq!(serde_json::to_string(&fault).unwrap(), json);
    }
}

#[tokio::test]
async fn send_replies_carry_the_ack_per_engine() {
    let c = client();
    for (engine, field) in [(Engine::Webjs, "ack"), (Engine::Noweb, "status")] {
        let sim = start(WahaSimOptions {
            engine,
            ..opts(&["a"])
        })
        .await;
        let v = send(&c, &sim, "a").await.json();
        let want = if engine == Engine::Webjs {
            json!(1)
        } else {
            json!("SERVER_ACK")
        };
        assert_eq!(v[field], want, "{engine:?}: {v}");
        sim.control().inject("a", Fault::AckError).unwrap();
        let v = send(&c, &sim, "a").await.json();
        let want = if engine == Engine::Webjs {
            json!(0)
        } else {
            json!("PENDING")
        };
        assert_eq!(v[field], want, "{engine:?}: {v}");
    }
    // NOWEB's id sits at key.id, the read-back takes the serialized form.
    let sim = start(WahaSimOptions {
        engine: Engine::Noweb,
        ..opts(&["a"])
    })
    .await;
    let v = send(&c, &sim, "a").await.json();
    let id = last_id(&sim);
    assert!(
        id.ends_with(v["key"]["id"].as_str().unwrap()),
        "{id} vs {v}"
    );
    assert_eq!(read_back(&c, &sim, "a", CANARY_CHAT, &id).await.status, 200);
}

#[tokio::test]
async fn passkey_statuses_need_a_person_and_survive_restarts() {
    let sim = start(opts(&["a", "b"])).await;
    let ctl = sim.control();
    let c = client();
    ctl.set_status("a", Status::PasskeyRequired).unwrap();
    ctl.set_status("b", Status::PasskeyConfirmationRequired)
        .unwrap();
    let v = get(&c, &sim, "/api/sessions/a").await.json();
    assert_eq!(v["status"], "PASSKEY_REQUIRED");
    assert_eq!(v["me"], Value::Null);
    assert_eq!(
        get(&c, &sim, "/api/sessions/b").await.json()["status"],
        "PASSKEY_CONFIRMATION_REQUIRED"
    );
    // Sends are refused like any other non-WORKING status.
    let r = send(&c, &sim, "a").await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (422, json!("PASSKEY_REQUIRED"))
    );
    // A restart does not pair: the session asks for the passkey again.
    post(&c, &sim, "/api/sessions/a/restart").await;
    ctl.clock().advance(Duration::from_secs(5));
    assert_eq!(ctl.status("a"), Some(Status::PasskeyRequired));
    let body = json!({"status": "PASSKEY_REQUIRED"});
    assert_eq!(
        serde_json::from_value::<Status>(body["status"].clone()).unwrap(),
        Status::PasskeyRequired
    );
}

#[tokio::test]
async fn whatsapp_errors_463_timelock_and_403() {
    let sim = start(opts(&["a", "b"])).await;
    let ctl = sim.control();
    let c = client();
    ctl.inject("a", Fault::ReachoutTimelock(Duration::from_secs(600)))
        .unwrap();
    let r = send(&c, &sim, "a").await;
    assert_eq!(r.status, 500);
    let v = r.json();
    assert_eq!(
        v["exception"]["message"],
        "2 UNKNOWN: server returned error 463"
    );
    assert_eq!(v["exception"]["details"], "server returned error 463");
    let me = get(&c, &sim, "/api/sessions/a").await.json()["me"].clone();
    assert_eq!(me["reachoutTimelock"]["isActive"], true);
    assert!(me["reachoutTimelock"]["timeEnforcementEnds"].is_string());
    // A restart does not lift it; time does.
    post(&c, &sim, "/api/sessions/a/restart").await;
    ctl.clock().advance(Duration::from_secs(5));
    assert_eq!(send(&c, &sim, "a").await.status, 500);
    ctl.clock().advance(Duration::from_secs(600));
    assert_eq!(send(&c, &sim, "a").await.status, 201);
    let me = get(&c, &sim, "/api/sessions/a/me").await.json();
    assert_eq!(me["reachoutTimelock"]["isActive"], false);
    // No timelock ever: the key is absent (older servers).
    assert!(
        get(&c, &sim, "/api/sessions/b").await.json()["me"]
            .get("reachoutTimelock")
            .is_none()
    );

    ctl.inject(
        "b",
        Fault::WhatsappError {
            code: 403,
            times: Some(1),
        },
    )
    .unwrap();
    let v = send(&c, &sim, "b").await.json();
    assert_eq!(
        v["exception"]["message"],
        "2 UNKNOWN: server returned error 403"
    );
    assert_eq!(send(&c, &sim, "b").await.status, 201);
}

#[tokio::test]
async fn presence_is_an_object_a_string_or_null() {
    let c = client();
    for (form, want) in [
        (waha::PresenceForm::Object, json!({"status": "online"})),
        (waha::PresenceForm::String, json!("online")),
        (waha::PresenceForm::Null, Value::Null),
    ] {
        let sim = start(WahaSimOptions {
            presence: form,
            ..opts(&["a"])
        })
        .await;
        assert_eq!(
            get(&c, &sim, "/api/sessions/a").await.json()["presence"],
            want
        );
        let list = get(&c, &sim, "/api/sessions").await.json();
        assert_eq!(list[0]["presence"], want);
    }
}
