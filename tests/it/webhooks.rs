//! Webhooks against the simulators over loopback: the real receiver behind
//! the real HTTP server, feeding the real scheduler on a manual clock. What a
//! push may do (confirm our canary sooner, move a session to needs-pairing at
//! once, count markers) and what it may not (restart anything, change any
//! state when it is forged, stale or replayed; block the scheduler).

use crate::common;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{Driver, GREEN_ID, GreenHarness, Harness, Settings};
use wa_watchdog::clock::Timestamp;
use wa_watchdog::http::{self, HttpState};
use wa_watchdog::machine::State;
use wa_watchdog::scheduler::Heartbeat;
use wa_watchdog::sim::waha::Status;
use wa_watchdog::sim::webhooks::{HookAuth, HookFault, HookSender, HookTarget, PushAnswer};
use wa_watchdog::webhooks::Receiver;

/// Distinctive, so a leak is easy to grep.
const HMAC_KEY: &str = "waha-hook-key-SEKRET-3e9a";
const HOOK_TOKEN: &str = "green-hook-token-SEKRET-5d1c";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Serves `POST /webhooks/{provider}` for `d`'s scheduler on 127.0.0.1:0.
struct Hooks {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Hooks {
    async fn attach(d: &mut Driver) -> Hooks {
        let (receiver, queue) = Receiver::new(&d.config, d.metrics.clone(), d.clock.clone());
        d.scheduler.attach_webhooks(queue);
        let (handle, _commands) = wa_watchdog::scheduler::command::channel(4);
        let state = HttpState {
            store: d.store.clone(),
            metrics: Arc::clone(&d.metrics),
            heartbeat: Heartbeat::default(),
            heartbeat_max_age: secs(30),
            handle,
            clock: d.clock.clone(),
            admin_token: None,
            config_path: d.dir.path().join("config.toml"),
            webhooks: Some(receiver),
            replica: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(http::serve_router(
            listener,
            http::webhook_router(state),
            async move {
                let _ = stopped.await;
            },
        ));
        Hooks { addr, _stop: stop }
    }

    fn url(&self, provider: &str) -> String {
        format!("http://{}/webhooks/{provider}", self.addr)
    }
}

fn metric(d: &Driver, family: &str, labels: &str) -> f64 {
    let text = d.metrics.encode().expect("encode");
    let prefix = format!("{family}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.parse().expect("number"))
}

fn green_settings() -> Settings {
    let mut s = Settings::default();
    s.canary("interval", "\"60s\"")
        .canary("ack_timeout", "\"150s\"")
        .provider("webhook_token", &format!("\"{HOOK_TOKEN}\""));
    s
}

fn waha_settings() -> Settings {
    let mut s = Settings::default();
    s.canary("interval", "\"60s\"")
        .provider("sessions", "[\"s1\"]")
        .provider("webhook_hmac_key", &format!("\"{HMAC_KEY}\""));
    s
}

/// Runs until the Green-API canary was queued; returns its idMessage. The
/// first look at the queue is due 2 s after the send.
async fn until_queued(h: &mut GreenHarness) -> String {
    for _ in 0..400 {
        h.scheduler
            .advance(Duration::from_millis(100), Duration::from_millis(100))
            .await;
        if let Some(m) = h.ctl.messages(GREEN_ID).expect("messages").first() {
            return m.id_message.clone();
        }
    }
    panic!("no canary was sent");
}

#[tokio::test]
async fn a_green_api_canary_is_confirmed_by_its_status_push_before_the_first_queue_look() {
    let mut h = GreenHarness::start(&green_settings(), |o| o).await;
    let hooks = Hooks::attach(&mut h.d).await;
    let id = until_queued(&mut h).await;
    let sent_at = h.now();
    assert_eq!(h.ctl.count("getMessage"), 0, "no look at the journal yet");
    assert_eq!(h.state(GREEN_ID), State::Unknown);

    let push = HookSender::new(
        hooks.url(common::GREEN_PROVIDER),
        HookAuth::Token(HOOK_TOKEN.into()),
        h.clock.clone(),
    );
    // A status for some other message is ignored (counted) and concludes nothing.
    assert_eq!(
        push.green_outgoing_status(GREEN_ID, "OTHER1", "sent")
            .await
            .expect("send"),
        202
    );
    h.run_for(Duration::ZERO).await;
    assert_eq!(h.state(GREEN_ID), State::Unknown);
    assert_eq!(
        metric(
            &h,
            "wa_watchdog_webhook_ignored_total",
            "provider=\"green\",reason=\"not_a_pending_canary\""
        ),
        1.0
    );

    assert_eq!(
        push.green_outgoing_status(GREEN_ID, &id, "sent")
            .await
            .expect("send"),
        202
    );
    h.run_for(Duration::ZERO).await;
    assert_eq!(h.now(), sent_at, "no time passed");
    assert_eq!(h.state(GREEN_ID), State::Healthy, "{:?}", h.log);
    assert_eq!(
        h.ctl.count("getMessage"),
        0,
        "confirmed before the first look would have run"
    );
    let probes = h
        .store
        .recent_probes(common::GREEN_PROVIDER, GREEN_ID, None, 5)
        .await
        .expect("probes");
    assert_eq!(probes[0].outcome, "delivered");
    assert!(
        probes[0].detail.contains("confirmed: sent by webhook"),
        "{probes:?}"
    );
    // The first look that was scheduled no longer runs for this canary.
    h.run_for(secs(5)).await;
    assert_eq!(h.ctl.count("getMessage"), 0);
}

/// Runs until the WAHA canary was sent; returns its serialized id (the
/// first read-back is due 2 s after the send).
async fn until_sent(h: &mut Harness) -> String {
    for _ in 0..400 {
        h.scheduler
            .advance(Duration::from_millis(100), Duration::from_millis(100))
            .await;
        if let Some(m) = h.ctl.sent_messages().first() {
            return m.id.clone();
        }
    }
    panic!("no canary was sent");
}

/// Read-backs of sent messages the WAHA simulator has answered.
fn read_backs(h: &Harness) -> usize {
    h.ctl
        .calls()
        .iter()
        .filter(|c| c.method == "GET" && c.path.contains("/messages/"))
        .count()
}

#[tokio::test]
async fn a_waha_canary_is_confirmed_by_its_message_ack_push_before_the_first_read_back() {
    let mut h = Harness::start(&["s1"], &waha_settings()).await;
    let hooks = Hooks::attach(&mut h.d).await;
    let id = until_sent(&mut h).await;
    let sent_at = h.now();
    assert_eq!(read_backs(&h), 0, "no read-back yet");
    assert_eq!(h.state("s1"), State::Unknown, "pending, not delivered");

    let push = HookSender::new(
        hooks.url(common::PROVIDER),
        HookAuth::Hmac(HMAC_KEY.into()),
        h.clock.clone(),
    );
    // PENDING concludes nothing: the canary stays pending.
    assert_eq!(
        push.waha_message_ack("s1", &id, 0).await.expect("send"),
        202
    );
    h.run_for(Duration::ZERO).await;
    assert_eq!(h.state("s1"), State::Unknown);
    assert_eq!(
        metric(
            &h,
            "wa_watchdog_webhook_ignored_total",
            "provider=\"waha\",reason=\"ack_pending\""
        ),
        1.0
    );

    // SERVER for that id concludes it through the same confirmation table.
    assert_eq!(
        push.waha_message_ack("s1", &id, 1).await.expect("send"),
        202
    );
    h.run_for(Duration::ZERO).await;
    assert_eq!(h.now(), sent_at, "no time passed");
    assert_eq!(h.state("s1"), State::Healthy, "{:?}", h.log);
    assert_eq!(read_backs(&h), 0, "confirmed before the first read-back");
    let probes = h
        .store
        .recent_probes(common::PROVIDER, "s1", None, 5)
        .await
        .expect("probes");
    assert_eq!(probes[0].outcome, "delivered");
    assert!(
        probes[0].detail.contains("confirmed: SERVER by webhook"),
        "{probes:?}"
    );
    // The scheduled read-back no longer runs for this canary.
    h.run_for(secs(5)).await;
    assert_eq!(read_backs(&h), 0);
}

#[tokio::test]
async fn a_waha_ack_error_push_is_the_same_counting_failure_as_a_read_back_would_find() {
    let mut h = Harness::start(&["s1"], &waha_settings()).await;
    let hooks = Hooks::attach(&mut h.d).await;
    let id = until_sent(&mut h).await;
    let push = HookSender::new(
        hooks.url(common::PROVIDER),
        HookAuth::Hmac(HMAC_KEY.into()),
        h.clock.clone(),
    );
    assert_eq!(
        push.waha_message_ack("s1", &id, -1).await.expect("send"),
        202
    );
    h.run_for(Duration::ZERO).await;
    let probes = h
        .store
        .recent_probes(common::PROVIDER, "s1", None, 5)
        .await
        .expect("probes");
    assert_eq!(probes[0].outcome, "ack_error", "{probes:?}");
    assert_eq!(h.state("s1"), State::Suspect, "{:?}", h.log);
    assert_eq!(h.ctl.restart_count("s1"), 0, "a push never restarts");
}

#[tokio::test]
async fn scan_qr_code_push_needs_pairing_at_once_and_never_restarts() {
    let mut h = Harness::start(&["s1"], &waha_settings()).await;
    let hooks = Hooks::attach(&mut h.d).await;
    h.run_for(secs(35)).await;
    assert_eq!(h.state("s1"), State::Healthy);
    let push = HookSender::new(
        hooks.url(common::PROVIDER),
        HookAuth::Hmac(HMAC_KEY.into()),
        h.clock.clone(),
    );

    // A WORKING push is a hint: the session is probed now, not at its interval.
    let sends = h.ctl.send_count("s1");
    assert_eq!(
        push.waha_session_status("s1", "WORKING")
            .await
            .expect("send"),
        202
    );
    h.run_for(Duration::ZERO).await;
    assert_eq!(h.ctl.send_count("s1"), sends + 1, "probed at once");
    assert_eq!(h.state("s1"), State::Healthy);

    h.ctl.set_status("s1", Status::ScanQrCode).expect("status");
    let event_at = h.now();
    assert_eq!(
        push.waha_session_status("s1", "SCAN_QR_CODE")
            .await
            .expect("send"),
        202
    );
    h.run_for(Duration::ZERO).await;
    let entered = h
        .entered("s1", State::NeedsPairing, event_at)
        .expect("needs pairing");
    assert!(
        entered.since(event_at) < secs(1),
        "within one second of the event"
    );
    let (_, _, reason) = h
        .transitions("s1")
        .into_iter()
        .find(|t| t.1 == State::NeedsPairing)
        .expect("transition");
    assert!(reason.contains("SCAN_QR_CODE"), "{reason}");
    h.run_for(secs(600)).await;
    assert_eq!(h.state("s1"), State::NeedsPairing);
    assert_eq!(h.ctl.restart_count("s1"), 0, "zero restarts");
}

#[tokio::test]
async fn swe003_needs_pairing_naming_the_remedy_and_swe001_is_counted() {
    let mut h = GreenHarness::start(&green_settings(), |o| o).await;
    let hooks = Hooks::attach(&mut h.d).await;
    h.run_for(secs(40)).await;
    assert_eq!(h.state(GREEN_ID), State::Healthy, "{:?}", h.log);
    let push = HookSender::new(
        hooks.url(common::GREEN_PROVIDER),
        HookAuth::Token(HOOK_TOKEN.into()),
        h.clock.clone(),
    );
    let swe001 = "wa_watchdog_webhook_markers_total";
    assert_eq!(
        push.green_incoming_text(GREEN_ID, "IN1", "{{SWE001}}")
            .await
            .expect("send"),
        202
    );
    assert_eq!(
        push.green_incoming_text(GREEN_ID, "IN2", "{{SWE001}}")
            .await
            .expect("send"),
        202
    );
    h.run_for(Duration::ZERO).await;
    assert_eq!(
        metric(&h, swe001, "marker=\"SWE001\",provider=\"green\""),
        2.0
    );
    assert_eq!(
        h.state(GREEN_ID),
        State::Healthy,
        "SWE001 is counted, nothing more"
    );

    let event_at = h.now();
    assert_eq!(
        push.green_incoming_text(GREEN_ID, "IN3", "{{SWE003}}")
            .await
            .expect("send"),
        202
    );
    h.run_for(Duration::ZERO).await;
    assert_eq!(h.state(GREEN_ID), State::NeedsPairing);
    assert!(h.entered(GREEN_ID, State::NeedsPairing, event_at).is_some());
    let (_, _, reason) = h
        .transitions(GREEN_ID)
        .into_iter()
        .rfind(|t| t.1 == State::NeedsPairing)
        .expect("transition");
    assert!(
        reason.contains("SWE003") && reason.contains("remove all linked devices"),
        "{reason}"
    );
    assert_eq!(
        metric(&h, swe001, "marker=\"SWE003\",provider=\"green\""),
        1.0
    );
    // The state the alert rule WaWatchdogSessionNeedsPairing reads.
    assert_eq!(
        metric(
            &h,
            "wa_watchdog_session_state",
            "provider=\"green\",session=\"1101000001\",state=\"needs_pairing\""
        ),
        1.0
    );
    let stored = h
        .store
        .recent_transitions(common::GREEN_PROVIDER, GREEN_ID, None, 5)
        .await
        .expect("transitions");
    assert!(
        stored.iter().any(|t| t.reason.contains("SWE003")),
        "{stored:?}"
    );
    assert_eq!(h.ctl.count("reboot"), 0);
    // The direct push to Alertmanager hears the markers from the same
    // events: SWE003 pages at once, two SWE001 are not yet a pattern.
    let mut model = wa_watchdog::alertmanager::Model::default();
    for e in &h.log {
        model.apply(e);
    }
    let firing: Vec<&str> = model
        .firing(h.now(), wa_watchdog::alertmanager::Holds::default())
        .iter()
        .map(|f| f.rule.name)
        .collect();
    assert!(firing.contains(&"WaWatchdogStaleKeys"), "{firing:?}");
    assert!(
        !firing.contains(&"WaWatchdogFirstMessagesLost"),
        "{firing:?}"
    );
}

#[tokio::test]
async fn forged_stale_future_and_replayed_pushes_are_refused_counted_and_change_nothing() {
    let mut h = Harness::start(&["s1"], &waha_settings()).await;
    let hooks = Hooks::attach(&mut h.d).await;
    h.run_for(secs(35)).await;
    assert_eq!(h.state("s1"), State::Healthy);
    h.ctl.set_status("s1", Status::ScanQrCode).expect("status");
    let url = hooks.url(common::PROVIDER);
    let client = reqwest::Client::new();
    let rejected = |h: &Harness, reason: &str| {
        metric(
            h,
            "wa_watchdog_webhook_rejected_total",
            &format!("provider=\"waha\",reason=\"{reason}\""),
        )
    };

    // Wrong key (the simulator's fault mode).
    let forged = HookSender::new(&url, HookAuth::Hmac(HMAC_KEY.into()), h.clock.clone());
    forged.set_fault(HookFault::WrongSignature);
    assert_eq!(
        forged
            .waha_session_status("s1", "SCAN_QR_CODE")
            .await
            .expect("send"),
        401
    );
    assert_eq!(rejected(&h, "bad_signature"), 1.0);
    let good = forged.last().expect("sent");

    // One flipped byte, a missing header, another algorithm.
    let sign = |body: &str| wa_watchdog::webhooks::auth::sign_waha(HMAC_KEY, body.as_bytes());
    let body = good.body.replace("SCAN_QR_CODE", "SCAN_QR_CODF");
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, String, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "flipped byte",
            vec![("x-webhook-hmac", sign(&good.body))],
            body.clone(),
            "bad_signature",
        ),
        ("missing header", vec![], good.body.clone(), "auth_missing"),
        (
            "other algorithm",
            vec![
                ("x-webhook-hmac", sign(&good.body)),
                ("x-webhook-hmac-algorithm", "sha1".into()),
            ],
            good.body.clone(),
            "bad_algorithm",
        ),
    ];
    for (name, headers, body, reason) in cases {
        let before = rejected(&h, reason);
        let mut req = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.expect("post");
        assert_eq!(resp.status().as_u16(), 401, "{name}");
        let text = resp.text().await.expect("body");
        assert!(!text.contains(HMAC_KEY), "{name}: {text}");
        assert_eq!(rejected(&h, reason), before + 1.0, "{name}");
    }

    // Stale and future: signed correctly, but outside the 5-minute window.
    // (The senders' clocks are off by just over the window.)
    let stale_clock = wa_watchdog::clock::Clock::manual(h.now().minus(secs(301)));
    let stale = HookSender::new(&url, HookAuth::Hmac(HMAC_KEY.into()), stale_clock);
    assert_eq!(
        stale
            .waha_session_status("s1", "SCAN_QR_CODE")
            .await
            .expect("send"),
        200
    );
    let future_clock = wa_watchdog::clock::Clock::manual(h.now().plus(secs(301)));
    let future = HookSender::new(&url, HookAuth::Hmac(HMAC_KEY.into()), future_clock);
    assert_eq!(
        future
            .waha_session_status("s1", "SCAN_QR_CODE")
            .await
            .expect("send"),
        200
    );
    assert_eq!(rejected(&h, "stale"), 1.0);
    assert_eq!(rejected(&h, "future"), 1.0);

    // A replayed id: the first delivery is acted upon, the replay is not.
    let sender = HookSender::new(&url, HookAuth::Hmac(HMAC_KEY.into()), h.clock.clone());
    assert_eq!(
        sender
            .waha_message_ack("s1", "true_x@c.us_NOTOURS", 1)
            .await
            .expect("send"),
        202
    );
    assert_eq!(sender.replay().await.expect("replay"), Some(200));
    assert_eq!(rejected(&h, "duplicate"), 1.0);

    h.run_for(Duration::ZERO).await;
    assert_eq!(
        h.state("s1"),
        State::Healthy,
        "no refused push changed any state"
    );
    assert!(
        h.entered("s1", State::NeedsPairing, Timestamp::from_millis(0))
            .is_none()
    );
    assert_eq!(
        metric(
            &h,
            "wa_watchdog_webhook_ignored_total",
            "provider=\"waha\",reason=\"not_a_pending_canary\""
        ),
        1.0,
        "the replayed ack was applied once"
    );
}

#[tokio::test]
async fn a_burst_of_1000_pushes_with_a_small_queue_answers_503_and_probing_stays_on_schedule() {
    let mut s = waha_settings();
    s.provider("webhook_queue_size", "8");
    let mut h = Harness::start(&["s1"], &s).await;
    let hooks = Hooks::attach(&mut h.d).await;
    h.run_for(secs(35)).await;
    assert_eq!(h.state("s1"), State::Healthy);
    let sends_before = h.ctl.send_count("s1");
    let start = h.now();
    let sender = HookSender::new(
        hooks.url(common::PROVIDER),
        HookAuth::Hmac(HMAC_KEY.into()),
        h.clock.clone(),
    );
    // As fast as 32 connections go (the server admits 64 at once).
    let lanes = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let sender = sender.clone();
        let lanes = lanes.clone();
        tasks.spawn(async move {
            let _lane = lanes.acquire_owned().await.expect("lane");
            sender
                .waha_message_ack("s1", &format!("true_x@c.us_{i}"), 1)
                .await
                .expect("send")
        });
    }
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    while let Some(done) = tasks.join_next().await {
        *by_status.entry(done.expect("task")).or_default() += 1;
    }
    assert_eq!(by_status.values().sum::<usize>(), 1000);
    let accepted = by_status.get(&202).copied().unwrap_or(0);
    let refused = by_status.get(&503).copied().unwrap_or(0);
    assert_eq!(accepted, 8, "{by_status:?}");
    assert_eq!(refused, 992, "{by_status:?}");
    assert_eq!(
        metric(
            &h,
            "wa_watchdog_webhook_queue_dropped_total",
            "provider=\"waha\""
        ),
        992.0
    );
    // The scheduler drains the queue between its work; probes keep their
    // schedule (one every 60 s).
    h.run_for(secs(300)).await;
    let probes = h.ctl.send_count("s1") - sends_before;
    assert!(
        (5..=6).contains(&probes),
        "{probes} canaries in 300 s at a 60 s interval"
    );
    assert_eq!(h.state("s1"), State::Healthy);
    assert_eq!(
        metric(
            &h,
            "wa_watchdog_webhook_ignored_total",
            "provider=\"waha\",reason=\"not_a_pending_canary\""
        ),
        8.0
    );
    // Room again once drained.
    assert_eq!(
        sender
            .waha_message_ack("s1", "true_x@c.us_late", 1)
            .await
            .expect("send"),
        202
    );
    assert!(h.now() >= start.plus(secs(300)));
}

/// Waits (real time, bounded) until `sender` has `n` answers to `event`.
async fn answers_to(sender: &HookSender, event: &str, n: usize) -> Vec<PushAnswer> {
    let deadline = std::time::Instant::now() + secs(10);
    loop {
        let all = sender.answers();
        let these: Vec<PushAnswer> = all.iter().filter(|a| a.event == event).cloned().collect();
        if these.len() >= n {
            return these;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "no {n} answers to {event}: {all:?}");
        let _ = tokio::time::timeout(left, sender.wait_answers(all.len() + 1)).await;
    }
}

#[tokio::test]
async fn the_waha_simulator_pushes_acks_and_statuses_itself_and_its_faulty_pushes_change_nothing() {
    let mut h = Harness::start(&["s1"], &waha_settings()).await;
    let hooks = Hooks::attach(&mut h.d).await;
    h.ctl.set_webhook(Some(HookTarget {
        events: vec!["message.ack".into(), "session.status".into()],
        ..HookTarget::new(hooks.url(common::PROVIDER), HookAuth::Hmac(HMAC_KEY.into()))
    }));
    let sender = h.ctl.webhook().expect("a target is set");

    // The simulator acks the canary (SERVER at once) and pushes it: the
    // canary is confirmed before the watchdog's first read-back.
    let _id = until_sent(&mut h).await;
    let sent_at = h.now();
    let acks = answers_to(&sender, "message.ack", 1).await;
    assert_eq!(acks[0].status, Some(202), "{acks:?}");
    h.run_for(Duration::ZERO).await;
    assert_eq!(h.now(), sent_at, "no time passed");
    assert_eq!(h.state("s1"), State::Healthy, "{:?}", h.log);
    assert_eq!(read_backs(&h), 0, "confirmed before the first read-back");
    let probes = h
        .store
        .recent_probes(common::PROVIDER, "s1", None, 5)
        .await
        .expect("probes");
    assert!(
        probes[0].detail.contains("confirmed: SERVER by webhook"),
        "{probes:?}"
    );

    let rejected = |h: &Harness, reason: &str| {
        metric(
            h,
            "wa_watchdog_webhook_rejected_total",
            &format!("provider=\"waha\",reason=\"{reason}\""),
        )
    };
    // Wrong signature: the status push is refused, counted, and changes nothing.
    sender.set_fault(HookFault::WrongSignature);
    h.ctl.set_status("s1", Status::ScanQrCode).expect("status");
    let statuses = answers_to(&sender, "session.status", 1).await;
    assert_eq!(statuses[0].status, Some(401), "{statuses:?}");
    assert_eq!(rejected(&h, "bad_signature"), 1.0);
    h.run_for(Duration::ZERO).await;
    assert_eq!(
        h.state("s1"),
        State::Healthy,
        "a forged push changes nothing"
    );

    // Replay: the first copy is acted upon (needs pairing at once, no
    // restart), the byte-for-byte second copy is refused as a duplicate.
    sender.set_fault(HookFault::Replay);
    let event_at = h.now();
    h.ctl.set_status("s1", Status::ScanQrCode).expect("status");
    let statuses = answers_to(&sender, "session.status", 3).await;
    assert_eq!(
        statuses[1..]
            .iter()
            .map(|a| (a.status, a.replay))
            .collect::<Vec<_>>(),
        [(Some(202), false), (Some(200), true)],
        "{statuses:?}"
    );
    assert_eq!(rejected(&h, "duplicate"), 1.0);
    h.run_for(Duration::ZERO).await;
    assert_eq!(h.state("s1"), State::NeedsPairing, "{:?}", h.log);
    assert!(h.entered("s1", State::NeedsPairing, event_at).is_some());
    assert_eq!(h.ctl.restart_count("s1"), 0, "zero restarts");
}

#[tokio::test]
async fn the_green_api_simulator_pushes_outgoing_status_and_state_itself() {
    let mut h = GreenHarness::start(&green_settings(), |o| o).await;
    let hooks = Hooks::attach(&mut h.d).await;
    h.ctl.set_webhook(Some(HookTarget::new(
        hooks.url(common::GREEN_PROVIDER),
        HookAuth::Token(HOOK_TOKEN.into()),
    )));
    let sender = h.ctl.webhook().expect("a target is set");
    let _id = until_queued(&mut h).await;
    // The message leaves the queue 1 s after it was queued; the watchdog's
    // first look is due 2 s after the send.
    h.run_for(secs(1)).await;
    let statuses = answers_to(&sender, "outgoingMessageStatus", 1).await;
    assert_eq!(statuses[0].status, Some(202), "{statuses:?}");
    h.run_for(Duration::ZERO).await;
    assert_eq!(h.state(GREEN_ID), State::Healthy, "{:?}", h.log);
    assert_eq!(
        h.ctl.count("getMessage"),
        0,
        "confirmed before the first look"
    );
    let probes = h
        .store
        .recent_probes(common::GREEN_PROVIDER, GREEN_ID, None, 5)
        .await
        .expect("probes");
    assert!(
        probes[0].detail.contains("confirmed: sent by webhook"),
        "{probes:?}"
    );

    // The instance is logged out: stateInstanceChanged notAuthorized moves it
    // to needs pairing at once, and nothing is rebooted.
    h.ctl
        .set_state(
            GREEN_ID,
            wa_watchdog::sim::green_api::SimState::NotAuthorized,
        )
        .expect("state");
    let states = answers_to(&sender, "stateInstanceChanged", 1).await;
    assert_eq!(states[0].status, Some(202), "{states:?}");
    h.run_for(Duration::ZERO).await;
    assert_eq!(h.state(GREEN_ID), State::NeedsPairing, "{:?}", h.log);
    assert_eq!(h.ctl.count("reboot"), 0);
}
