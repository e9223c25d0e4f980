//! The receiver's checks, in order, with their status codes and counters;
//! the queue bound; nothing kept from a refused request.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::mpsc;

use super::auth::sign_waha;
use super::receiver::{Queued, Receiver, Request};
use crate::clock::{Clock, Timestamp};
use crate::config::Config;
use crate::metrics::Metrics;

const KEY: &str = "hook-key-SEKRET-77a1";
const TOKEN: &str = "green-hook-SEKRET-91b2";
const NOW_MS: i64 = 1_800_000_000_000;

fn config() -> Config {
    let text = r#"
[daemon]
database = "w.db"

[[provider]]
name = "waha-main"
kind = "waha"
url = "http://127.0.0.1:3000"
sessions = ["default"]
webhook_hmac_key_env = "HOOK_KEY"
webhook_queue_size = 2
webhook_body_limit = 2048

[[provider]]
name = "green"
kind = "green-api"
url = "http://127.0.0.1:3001"
id_instance = "1101"
api_token_env = "GREEN_TOKEN"
webhook_token_env = "GREEN_HOOK"

[[provider]]
name = "off"
kind = "waha"
url = "http://127.0.0.1:3002"
"#;
    let env = |k: &str| match k {
        "HOOK_KEY" => Some(KEY.to_string()),
        "GREEN_HOOK" => Some(TOKEN.to_string()),
        "GREEN_TOKEN" => Some("api-token".to_string()),
        _ => None,
    };
    Config::from_toml_str(text, "/tmp/wa-watchdog-test/c.toml", &env).expect("config")
}

struct Rig {
    rx: mpsc::Receiver<Queued>,
    receiver: Receiver,
    metrics: Arc<Metrics>,
}

fn rig() -> Rig {
    let metrics = Arc::new(Metrics::new());
    let clock = Clock::manual(Timestamp::from_millis(NOW_MS));
    let (receiver, rx) = Receiver::new(&config(), metrics.clone(), clock);
    Rig {
        rx,
        receiver,
        metrics,
    }
}

impl Rig {
    /// The value of one counter series, 0 when absent.
    fn counter(&self, family: &str, labels: &str) -> f64 {
        let text = self.metrics.encode().expect("encode");
        let prefix = format!("{family}{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0.0, |v| v.parse().expect("number"))
    }

    fn rejected(&self, provider: &str, reason: &str) -> f64 {
        self.counter(
            "wa_watchdog_webhook_rejected_total",
            &format!("provider=\"{provider}\",reason=\"{reason}\""),
        )
    }
}

fn waha_body(id: &str, ts_ms: i64) -> String {
    json!({
        "id": id, "timestamp": ts_ms, "event": "message.ack", "session": "default",
        "payload": {"id": "true_1@c.us_AAA", "ack": 1, "ackName": "SERVER"}
    })
    .to_string()
}

fn signed<'a>(body: &'a str, sig: &'a str) -> Request<'a> {
    Request {
        content_type: Some("application/json"),
        hmac: Some(sig),
        hmac_algorithm: Some("sha512"),
        request_id: Some("req-1"),
        timestamp: Some("0"),
        authorization: None,
        body: body.as_bytes(),
    }
}

#[test]
fn a_good_waha_event_is_queued_once() {
    let mut r = rig();
    let body = waha_body("evt_1", NOW_MS);
    let sig = sign_waha(KEY, body.as_bytes());
    let reply = r.receiver.handle("waha-main", signed(&body, &sig));
    assert_eq!(reply.status, 202, "{reply:?}");
    let q = r.rx.try_recv().expect("queued");
    assert_eq!(q.provider, "waha-main");
    assert_eq!(q.event.session, "default");
    // The retry of the same event: 200, ignored, counted, not queued again.
    let reply = r.receiver.handle("waha-main", signed(&body, &sig));
    assert_eq!(
        (reply.status, reply.body["reason"].as_str()),
        (200, Some("duplicate"))
    );
    assert!(r.rx.try_recv().is_err());
    assert_eq!(r.rejected("waha-main", "duplicate"), 1.0);
    assert_eq!(
        r.counter(
            "wa_watchdog_webhook_events_total",
            "event=\"message.ack\",provider=\"waha-main\""
        ),
        1.0
    );
}

#[test]
fn every_refusal_has_its_status_and_counter_and_queues_nothing() {
    let mut r = rig();
    let body = waha_body("evt_2", NOW_MS);
    let sig = sign_waha(KEY, body.as_bytes());
    let mut flipped = body.clone().into_bytes();
    flipped[10] ^= 0x01;
    let flipped = String::from_utf8(flipped).expect("utf8");
    let wrong_key = sign_waha("not-the-key", body.as_bytes());
    let stale = waha_body("evt_3", NOW_MS - 301_000);
    let stale_sig = sign_waha(KEY, stale.as_bytes());
    let future = waha_body("evt_4", NOW_MS + 301_000);
    let future_sig = sign_waha(KEY, future.as_bytes());
    let other_session = waha_body("evt_5", NOW_MS).replace("\"default\"", "\"nope\"");
    let other_session_sig = sign_waha(KEY, other_session.as_bytes());
    let not_json = "{not json";
    let not_json_sig = sign_waha(KEY, not_json.as_bytes());
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(3000));
    let big_sig = sign_waha(KEY, big.as_bytes());

    let cases: Vec<(&str, &str, Request<'_>, u16, &str)> = vec![
        (
            "unknown provider",
            "nobody",
            signed(&body, &sig),
            404,
            "unknown_provider",
        ),
        ("webhooks off", "off", signed(&body, &sig), 403, "disabled"),
        (
            "form body",
            "waha-main",
            Request {
                content_type: Some("application/x-www-form-urlencoded"),
                ..signed(&body, &sig)
            },
            415,
            "unsupported_media_type",
        ),
        (
            "no content type",
            "waha-main",
            Request {
                content_type: None,
                ..signed(&body, &sig)
            },
            415,
            "unsupported_media_type",
        ),
        (
            "too large",
            "waha-main",
            signed(&big, &big_sig),
            413,
            "too_large",
        ),
        (
            "flipped byte",
            "waha-main",
            signed(&flipped, &sig),
            401,
            "bad_signature",
        ),
        (
            "wrong key",
            "waha-main",
            signed(&body, &wrong_key),
            401,
            "bad_signature",
        ),
        (
            "missing header",
            "waha-main",
            Request {
                hmac: None,
                ..signed(&body, &sig)
            },
            401,
            "auth_missing",
        ),
        (
            "other algorithm",
            "waha-main",
            Request {
                hmac_algorithm: Some("sha256"),
                ..signed(&body, &sig)
            },
            401,
            "bad_algorithm",
        ),
        (
            "not hex",
            "waha-main",
            signed(&body, "xyz"),
            401,
            "bad_signature_format",
        ),
        (
            "malformed",
            "waha-main",
            signed(not_json, &not_json_sig),
            400,
            "malformed",
        ),
        (
            "unknown session",
            "waha-main",
            signed(&other_session, &other_session_sig),
            404,
            "unknown_session",
        ),
        (
            "stale",
            "waha-main",
            signed(&stale, &stale_sig),
            200,
            "stale",
        ),
        (
            "future",
            "waha-main",
            signed(&future, &future_sig),
            200,
            "future",
        ),
    ];
    for (name, provider, req, status, reason) in cases {
        let before = r.rejected(if provider == "nobody" { "" } else { provider }, reason);
        let reply = r.receiver.handle(provider, req);
        assert_eq!(reply.status, status, "{name}: {reply:?}");
        let after = r.rejected(if provider == "nobody" { "" } else { provider }, reason);
        assert_eq!(after, before + 1.0, "{name}: counter {reason}");
        let text = reply.body.to_string();
        assert!(
            !text.contains(KEY) && !text.contains(&sig),
            "{name}: {text}"
        );
        assert!(r.rx.try_recv().is_err(), "{name}: nothing queued");
    }
    // A refused request left no id behind: the genuine event is still new.
    let reply = r.receiver.handle("waha-main", signed(&body, &sig));
    assert_eq!(reply.status, 202);
    assert!(!r.metrics.encode().expect("encode").contains(KEY));
}

#[test]
fn green_api_token_and_markers() {
    let mut r = rig();
    let marker = json!({
        "typeWebhook": "incomingMessageReceived",
        "instanceData": {"idInstance": 1101, "wid": "1@c.us", "typeInstance": "whatsapp"},
        "timestamp": NOW_MS / 1000, "idMessage": "F7",
        "messageData": {"typeMessage": "textMessage", "textMessageData": {"textMessage": "{{SWE003}}"}}
    })
    .to_string();
    let plain = marker.replace("{{SWE003}}", "hello");
    let other_instance = marker.replace("1101", "1102");
    let bearer = format!("Bearer {TOKEN}");
    let req = |body: &'static str, auth: Option<&'static str>| Request {
        content_type: Some("application/json; charset=utf-8"),
        authorization: auth,
        body: body.as_bytes(),
        ..Request::default()
    };
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let (marker, plain, other_instance, bearer) = (
        leak(marker),
        leak(plain),
        leak(other_instance),
        leak(bearer),
    );

    assert_eq!(r.receiver.handle("green", req(marker, None)).status, 401);
    assert_eq!(
        r.receiver
            .handle("green", req(marker, Some("Bearer wrong")))
            .status,
        401
    );
    assert_eq!(r.rejected("green", "auth_missing"), 1.0);
    assert_eq!(r.rejected("green", "bad_signature"), 1.0);
    assert_eq!(
        r.receiver
            .handle("green", req(other_instance, Some(bearer)))
            .status,
        404
    );
    assert!(r.rx.try_recv().is_err());

    assert_eq!(
        r.receiver.handle("green", req(marker, Some(bearer))).status,
        202
    );
    assert!(r.rx.try_recv().is_ok());
    // The raw token (no "Bearer") is accepted too; a plain incoming message
    // is counted and answered without bothering the scheduler.
    let reply = r.receiver.handle("green", req(plain, Some(TOKEN)));
    assert_eq!(
        (reply.status, reply.body["reason"].as_str()),
        (200, Some("incoming_message"))
    );
    assert!(r.rx.try_recv().is_err());
}

#[test]
fn a_full_queue_answers_503_and_frees_as_the_scheduler_drains() {
    let mut r = rig();
    let send = |r: &Rig, id: &str| {
        let body = waha_body(id, NOW_MS);
        let sig = sign_waha(KEY, body.as_bytes());
        r.receiver.handle("waha-main", signed(&body, &sig))
    };
    assert_eq!(send(&r, "a").status, 202);
    assert_eq!(send(&r, "b").status, 202);
    let full = send(&r, "c");
    assert_eq!((full.status, full.retry_after), (503, Some(2)));
    assert_eq!(r.rejected("waha-main", "queue_full"), 1.0);
    assert_eq!(
        r.counter(
            "wa_watchdog_webhook_queue_dropped_total",
            "provider=\"waha-main\""
        ),
        1.0
    );
    // Another provider's share is its own.
    // The refused event was not remembered: once a slot frees, its retry is
    // accepted.
    drop(r.rx.try_recv().expect("a"));
    assert_eq!(send(&r, "c").status, 202);
    assert_eq!(send(&r, "d").status, 503);
}
