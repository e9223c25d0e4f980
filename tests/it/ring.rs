//! Rings across WAHA and Green-API on the manual clock: each member's
//! canary goes to the next member's own number through the simulators'
//! shared network; the receiver must see it (a webhook, or reading its chat)
//! within the deadline. An inbound-dead member is restarted and verified by
//! the next ring canary, its sender is never blamed, nobody else is
//! restarted; a delay within the deadline is fine; a provider whose members
//! all stop receiving is an outage, not a reason to restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{Driver, GREEN_ID, GREEN_TOKEN, GREEN_WID, t0};
use wa_watchdog::clock::{Clock, Timestamp};
use wa_watchdog::events::Event;
use wa_watchdog::http::{self, HttpState};
use wa_watchdog::machine::{Action, State};
use wa_watchdog::scheduler::Heartbeat;
use wa_watchdog::sim::green_api::{self, GreenSim, GreenSimControl, GreenSimOptions, SimInstance};
use wa_watchdog::sim::hostile::Hostile;
use wa_watchdog::sim::network::{InboundFault, Network};
use wa_watchdog::sim::waha::{self, SimControl, WahaSim, WahaSimOptions};
use wa_watchdog::sim::webhooks::{HookAuth, HookSender};
use wa_watchdog::webhooks::Receiver;

const HMAC_KEY: &str = "ring-hook-key-SEKRET-1a2b";
const HOOK_TOKEN: &str = "ring-hook-token-SEKRET-3c4d";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn env(name: &str) -> Option<String> {
    (name == "GREEN_API_TOKEN").then(|| GREEN_TOKEN.to_string())
}

struct Hooks {
    waha: HookSender,
    green: HookSender,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Two simulators on one network, the watchdog with one ring over them.
struct Ring {
    _waha: WahaSim,
    _green: GreenSim,
    wctl: SimControl,
    gctl: GreenSimControl,
    net: Network,
    d: Driver,
    hooks: Option<Hooks>,
    /// (session, number) of every simulated member, for the pushes.
    numbers: Vec<(String, String)>,
}

impl Ring {
    /// `sessions` are WAHA sessions; `members` the ring in order
    /// (`"waha/a"`, `"green"` for the Green-API instance).
    async fn start(sessions: &[&str], members: &[&str], webhooks: bool) -> Ring {
        let clock = Clock::manual(t0());
        let net = Network::default();
        let waha = waha::start(
            "127.0.0.1:0".parse().expect("addr"),
            WahaSimOptions {
                sessions: sessions.iter().map(|s| s.to_string()).collect(),
                clock: clock.clone(),
                network: Some(net.clone()),
                ..WahaSimOptions::default()
            },
        )
        .await
        .expect("WAHA simulator");
        let mut gopts = GreenSimOptions::new(
            clock.clone(),
            vec![SimInstance::new(GREEN_ID, GREEN_TOKEN, GREEN_WID)],
        );
        gopts.reboot_starting_for = secs(3);
        gopts.network = Some(net.clone());
        let green = green_api::start("127.0.0.1:0".parse().expect("addr"), gopts)
            .await
            .expect("Green-API simulator");
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("watchdog.db");
        let members: Vec<String> = members
            .iter()
            .map(|m| match *m {
                "green" => format!("\"green/{GREEN_ID}\""),
                other => format!("\"{other}\""),
            })
            .collect();
        let listed: Vec<String> = sessions.iter().map(|s| format!("\"{s}\"")).collect();
        let (waha_hook, green_hook) = if webhooks {
            (
                format!("webhook_hmac_key = \"{HMAC_KEY}\"\n"),
                format!("webhook_token = \"{HOOK_TOKEN}\"\n"),
            )
        } else {
            (String::new(), String::new())
        };
        let text = format!(
            r#"[daemon]
database = {db:?}

[canary]
interval = "20s"
jitter = 0.0
timeout = "2s"
ack_timeout = "6s"

[policy]
confirm_interval = "1s"
send_failure_confirmations = 2
restart_timeout = "30s"
restart_poll_interval = "1s"
backoff_initial = "10s"
backoff_max = "1m"

[[provider]]
name = "waha"
kind = "waha"
url = "{}"
sessions = [{}]
{waha_hook}
[[provider]]
name = "green"
kind = "green-api"
url = "{}"
id_instance = "{GREEN_ID}"
api_token_env = "GREEN_API_TOKEN"
min_request_interval = "1ms"
{green_hook}
[[ring]]
name = "office"
members = [{}]
interval = "20s"
deadline = "8s"
"#,
            waha.url(),
            listed.join(", "),
            green.url(),
            members.join(", "),
        );
        let mut d = Driver::build(clock, dir, &text, &env, "waha").await;
        let wctl = waha.control();
        let gctl = green.control();
        let mut numbers: Vec<(String, String)> = sessions
            .iter()
            .map(|s| (s.to_string(), wctl.me_id(s).expect("me id")))
            .collect();
        numbers.push((GREEN_ID.to_string(), GREEN_WID.to_string()));
        let hooks = if webhooks {
            Some(attach(&mut d).await)
        } else {
            None
        };
        Ring {
            _waha: waha,
            _green: green,
            wctl,
            gctl,
            net,
            d,
            hooks,
            numbers,
        }
    }

    fn state(&self, provider: &str, session: &str) -> State {
        self.d
            .scheduler
            .machine(provider, session)
            .map(|m| m.persisted.state)
            .unwrap_or_else(|| panic!("{provider}/{session} not watched"))
    }

    /// Runs `d` in quarter-second steps, pushing what the network delivered
    /// as the providers' webhooks when they are on.
    async fn run_for(&mut self, d: Duration) {
        let end = self.d.now().plus(d);
        while self.d.now() < end {
            self.d.run_for(Duration::from_millis(250)).await;
            self.push().await;
        }
    }

    /// Runs until `pred` holds or `limit` passes; the time it took.
    async fn run_until(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Ring) -> bool,
    ) -> Option<Duration> {
        let start = self.d.now();
        while self.d.now() < start.plus(limit) {
            self.run_for(Duration::from_millis(250)).await;
            if pred(self) {
                return Some(self.d.now().since(start));
            }
        }
        None
    }

    async fn push(&mut self) {
        let Some(h) = &self.hooks else { return };
        let now = self.d.now();
        for (session, number) in &self.numbers {
            for m in self.net.take_pushes(number, now) {
                let status = if session == GREEN_ID {
                    h.green
                        .green_incoming_from(GREEN_ID, &m.id, &m.from, &m.text)
                        .await
                } else {
                    h.waha.waha_message(session, &m.id, &m.from, &m.text).await
                };
                assert!((200..300).contains(&status.expect("push")));
            }
        }
    }

    /// Ring records (`kind = ring`) of `provider/session`: (outcome, detail).
    fn ring_fates(&self, provider: &str, session: &str) -> Vec<(String, String)> {
        self.d
            .log
            .iter()
            .filter_map(|e| match e {
                Event::Probe {
                    provider: p,
                    session: s,
                    action: Action::Ring,
                    outcome,
                    detail,
                    ..
                } if p == provider && s == session => {
                    Some((outcome.as_str().to_string(), detail.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Every probe outcome of `provider/session` (its own canaries and
    /// ring fates).
    fn outcomes(&self, provider: &str, session: &str) -> Vec<String> {
        self.d
            .log
            .iter()
            .filter_map(|e| match e {
                Event::Probe {
                    provider: p,
                    session: s,
                    outcome,
                    ..
                } if p == provider && s == session => Some(outcome.as_str().to_string()),
                _ => None,
            })
            .collect()
    }

    fn states_of(&self, provider: &str, session: &str, after: Timestamp) -> Vec<State> {
        self.d
            .log
            .iter()
            .filter_map(|e| match e {
                Event::Transition {
                    at,
                    provider: p,
                    session: s,
                    to,
                    ..
                } if p == provider && s == session && *at >= after => Some(*to),
                _ => None,
            })
            .collect()
    }

    fn metric(&self, family: &str, labels: &str) -> f64 {
        let text = self.d.metrics.encode().expect("encode");
        let prefix = format!("{family}{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0.0, |v| v.parse().expect("number"))
    }
}

/// Serves `POST /webhooks/{provider}` for the scheduler on 127.0.0.1:0.
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
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve_router(
        listener,
        http::webhook_router(state),
        async move {
            let _ = stopped.await;
        },
    ));
    Hooks {
        waha: HookSender::new(
            format!("http://{addr}/webhooks/waha"),
            HookAuth::Hmac(HMAC_KEY.into()),
            d.clock.clone(),
        ),
        green: HookSender::new(
            format!("http://{addr}/webhooks/green"),
            HookAuth::Token(HOOK_TOKEN.into()),
            d.clock.clone(),
        ),
        _stop: stop,
    }
}

/// A WAHA ↔ Green-API ring goes round: every member receives its
/// predecessor's canary, with or without webhooks.
async fn goes_round(webhooks: bool) {
    let mut r = Ring::start(&["a", "b"], &["waha/a", "waha/b", "green"], webhooks).await;
    r.run_for(secs(70)).await;
    for (p, s) in [("waha", "a"), ("waha", "b"), ("green", GREEN_ID)] {
        assert_eq!(r.state(p, s), State::Healthy, "{p}/{s}: {:?}", r.d.log);
        let fates = r.ring_fates(p, s);
        assert!(
            fates.iter().any(|(o, _)| o == "delivered"),
            "{p}/{s} received no ring canary: {fates:?}"
        );
        assert!(
            fates.iter().all(|(o, _)| o == "delivered"),
            "{p}/{s}: {fates:?}"
        );
    }
    let how = if webhooks { "(webhook)" } else { "(chat read)" };
    let fates = r.ring_fates("green", GREEN_ID);
    assert!(
        fates
            .iter()
            .any(|(_, d)| d.contains("canary from waha/b received") && d.contains(how)),
        "{fates:?}"
    );
    assert!(
        r.ring_fates("waha", "a")
            .iter()
            .any(|(_, d)| d.contains(&format!("canary from green/{GREEN_ID}"))),
        "the last member sends to the first"
    );
    // The canaries went to the next member's own number, not to themselves.
    let sent = r.wctl.sent_messages();
    assert!(
        sent.iter()
            .any(|m| m.session == "b" && m.chat_id == GREEN_WID && m.text.contains("ring check")),
        "{sent:?}"
    );
    let gmsgs = r.gctl.messages(GREEN_ID).expect("messages");
    let a_number = r.wctl.me_id("a").expect("me");
    assert!(gmsgs.iter().any(|m| m.chat_id == a_number), "{gmsgs:?}");
    // Reading the chats happens only without webhooks.
    let reads = r
        .wctl
        .calls()
        .iter()
        .filter(|c| {
            c.method == "GET" && c.path.contains("/chats/") && !c.path.contains("/messages/")
        })
        .count();
    let journal = r.gctl.count("lastIncomingMessages");
    if webhooks {
        assert_eq!((reads, journal), (0, 0), "no chat reads with webhooks");
    } else {
        assert!(reads > 0 && journal > 0, "reads {reads}, journal {journal}");
    }
    assert!(
        r.metric(
            "wa_watchdog_ring_canaries_total",
            "fate=\"received\",ring=\"office\""
        ) >= 3.0
    );
    assert!(
        r.d.metrics.encode().expect("encode").contains(
            "wa_watchdog_ring_round_trip_seconds_count{provider=\"green\",ring=\"office\"}"
        )
    );
    assert_eq!(r.wctl.restart_count("a") + r.wctl.restart_count("b"), 0);
    assert_eq!(r.gctl.count("reboot"), 0);
}

#[tokio::test]
async fn a_waha_green_api_ring_goes_round_without_webhooks() {
    goes_round(false).await;
}

#[tokio::test]
async fn a_waha_green_api_ring_goes_round_with_webhooks() {
    goes_round(true).await;
}

/// Chat reads answered badly (not JSON, an HTML page, cut off, empty, a
/// 500) prove nothing about the receiver: its ring canaries are
/// inconclusive, never `inbound_missing`, and nobody is restarted. The
/// chat read is a call each provider makes (WAHA `GET
/// /api/{s}/chats/{chat}/messages`, Green-API `lastIncomingMessages`), so
/// it belongs to the hostile corpus like the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_chat_reads_never_blame_the_receiver() {
    let members = [("waha", "a"), ("waha", "b"), ("green", GREEN_ID)];
    for mode in [
        Hostile::Garbage,
        Hostile::Html200,
        Hostile::TruncatedJson,
        Hostile::Empty,
        Hostile::Status(500),
    ] {
        let mut r = Ring::start(&["a", "b"], &["waha/a", "waha/b", "green"], false).await;
        r._waha.hostile().set("GET", "/messages$", mode);
        r._green
            .hostile()
            .set("GET", "/lastIncomingMessages/", mode);
        r.run_for(secs(150)).await;
        for (p, s) in members {
            assert!(
                !r.outcomes(p, s).iter().any(|o| o == "inbound_missing"),
                "{mode:?}: {p}/{s} blamed for an unreadable chat: {:?}",
                r.ring_fates(p, s)
            );
        }
        let inconclusive = r.metric(
            "wa_watchdog_ring_canaries_total",
            "fate=\"inconclusive\",ring=\"office\"",
        );
        assert!(inconclusive >= 3.0, "{mode:?}: {inconclusive} inconclusive");
        assert_eq!(
            (
                r.wctl.restart_count("a"),
                r.wctl.restart_count("b"),
                r.gctl.count("reboot")
            ),
            (0, 0, 0),
            "{mode:?}: restarted"
        );
    }
}

/// `inbound_dead` on one member: that member is restarted and verified by
/// the next ring canary; its sender is never blamed; nobody else restarts.
async fn inbound_dead_member(webhooks: bool) {
    let mut r = Ring::start(&["a", "b"], &["waha/a", "waha/b", "green"], webhooks).await;
    r.run_for(secs(45)).await;
    assert_eq!(r.state("waha", "b"), State::Healthy);
    r.wctl
        .set_inbound("b", Some(InboundFault::Dead))
        .expect("fault");
    let onset = r.d.now();
    let mut healed = None;
    for _ in 0..(300 * 4) {
        r.run_for(Duration::from_millis(250)).await;
        let states = r.states_of("waha", "b", onset);
        if states.contains(&State::Recovering) && r.state("waha", "b") == State::Healthy {
            healed = Some(r.d.now().since(onset));
            break;
        }
    }
    let healed = healed.unwrap_or_else(|| {
        panic!(
            "b not healed; states {:?}; fates {:?}",
            r.states_of("waha", "b", onset),
            r.ring_fates("waha", "b")
        )
    });
    assert!(healed < secs(300), "{healed:?}");
    assert_eq!(r.wctl.restart_count("b"), 1, "restarted once");
    let fates = r.ring_fates("waha", "b");
    assert!(
        fates.iter().any(|(o, d)| o == "inbound_missing"
            && d.contains("canary from waha/a (confirmed sent) not received")),
        "{fates:?}"
    );
    // Verified by the next ring canary, after the restart.
    assert_eq!(
        fates.last().map(|f| f.0.as_str()),
        Some("delivered"),
        "{fates:?}"
    );
    let states = r.states_of("waha", "b", onset);
    assert!(
        states.ends_with(&[State::Restarting, State::Recovering, State::Healthy]),
        "{states:?}"
    );
    // The sender is never blamed, nobody else restarts.
    for (p, s) in [("waha", "a"), ("green", GREEN_ID)] {
        assert!(
            !r.outcomes(p, s).iter().any(|o| o == "inbound_missing"),
            "{p}/{s} blamed: {:?}",
            r.outcomes(p, s)
        );
        assert!(
            r.states_of(p, s, onset).is_empty(),
            "{p}/{s} changed state: {:?}",
            r.states_of(p, s, onset)
        );
    }
    assert_eq!(r.wctl.restart_count("a"), 0);
    assert_eq!(r.gctl.count("reboot"), 0);
    assert!(
        r.metric(
            "wa_watchdog_ring_inbound_failures_total",
            "provider=\"waha\",session=\"b\""
        ) >= 2.0
    );
    assert_eq!(
        r.metric(
            "wa_watchdog_ring_inbound_failures_total",
            "provider=\"waha\",session=\"a\""
        ),
        0.0
    );
    assert!(
        r.metric(
            "wa_watchdog_restarts_total",
            "provider=\"waha\",result=\"ok\""
        ) >= 1.0
    );
    // The history shows each ring canary's fate.
    let rows =
        r.d.store
            .recent_probes("waha", "b", None, 50)
            .await
            .expect("probes");
    assert!(
        rows.iter()
            .any(|p| p.kind == "ring" && p.outcome == "inbound_missing"),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|p| p.kind == "ring" && p.outcome == "delivered")
    );
}

#[tokio::test]
async fn an_inbound_dead_member_is_restarted_and_verified_and_its_sender_never_blamed() {
    inbound_dead_member(false).await;
}

#[tokio::test]
async fn an_inbound_dead_member_is_caught_through_webhooks_too() {
    inbound_dead_member(true).await;
}

#[tokio::test]
async fn an_inbound_dead_green_api_instance_is_rebooted_and_verified() {
    let mut r = Ring::start(&["a", "b"], &["waha/a", "waha/b", "green"], false).await;
    r.run_for(secs(45)).await;
    r.gctl
        .set_inbound(GREEN_ID, Some(InboundFault::Dead))
        .expect("fault");
    let onset = r.d.now();
    let healed = r
        .run_until(secs(300), |r| {
            r.state("green", GREEN_ID) == State::Healthy
                && r.states_of("green", GREEN_ID, onset)
                    .contains(&State::Recovering)
        })
        .await;
    assert!(healed.is_some(), "{:?}", r.ring_fates("green", GREEN_ID));
    assert_eq!(r.gctl.count("reboot"), 1);
    assert_eq!(r.wctl.restart_count("a") + r.wctl.restart_count("b"), 0);
    assert!(
        !r.outcomes("waha", "b")
            .iter()
            .any(|o| o == "inbound_missing")
    );
}

#[tokio::test]
async fn inbound_delayed_within_the_deadline_restarts_nothing() {
    let mut r = Ring::start(&["a", "b"], &["waha/a", "waha/b", "green"], false).await;
    r.run_for(secs(45)).await;
    r.wctl
        .set_inbound("b", Some(InboundFault::Delay(secs(5))))
        .expect("fault");
    r.gctl
        .set_inbound(GREEN_ID, Some(InboundFault::Delay(secs(6))))
        .expect("fault");
    let onset = r.d.now();
    r.run_for(secs(120)).await;
    for (p, s) in [("waha", "a"), ("waha", "b"), ("green", GREEN_ID)] {
        assert_eq!(r.state(p, s), State::Healthy, "{p}/{s}");
        assert!(
            r.states_of(p, s, onset).is_empty(),
            "{p}/{s}: {:?}",
            r.states_of(p, s, onset)
        );
        assert!(
            !r.outcomes(p, s).iter().any(|o| o == "inbound_missing"),
            "{p}/{s}"
        );
    }
    let late: Vec<_> = r
        .ring_fates("waha", "b")
        .into_iter()
        .filter(|(_, d)| d.contains("received after 5.") || d.contains("received after 6."))
        .collect();
    assert!(!late.is_empty(), "{:?}", r.ring_fates("waha", "b"));
    assert_eq!(r.wctl.restart_count("a") + r.wctl.restart_count("b"), 0);
    assert_eq!(r.gctl.count("reboot"), 0);
}

#[tokio::test]
async fn a_provider_whose_members_all_stop_receiving_is_an_outage_not_a_restart() {
    let mut r = Ring::start(
        &["a", "b", "c"],
        &["waha/a", "waha/b", "waha/c", "green"],
        false,
    )
    .await;
    r.run_for(secs(45)).await;
    for s in ["a", "b", "c"] {
        r.wctl
            .set_inbound(s, Some(InboundFault::Dead))
            .expect("fault");
    }
    let outage = r
        .run_until(secs(200), |r| {
            r.d.log.iter().any(|e| {
                matches!(e, Event::ProviderHealth { provider, outage: true, .. } if provider == "waha")
            })
        })
        .await;
    assert!(
        outage.is_some(),
        "no outage: {:?}",
        r.ring_fates("waha", "c")
    );
    r.run_for(secs(240)).await;
    for s in ["a", "b", "c"] {
        assert_eq!(r.wctl.restart_count(s), 0, "{s} restarted");
        assert_ne!(r.state("waha", s), State::Restarting);
    }
    assert_eq!(r.gctl.count("reboot"), 0);
    assert_eq!(
        r.metric("wa_watchdog_provider_outage", "provider=\"waha\""),
        1.0
    );
    assert_eq!(
        r.metric("wa_watchdog_provider_outage", "provider=\"green\""),
        0.0
    );
    // Green-API keeps receiving: never blamed.
    assert!(
        !r.outcomes("green", GREEN_ID)
            .iter()
            .any(|o| o == "inbound_missing")
    );
    let fates = r.ring_fates("waha", "c");
    assert!(
        fates
            .iter()
            .any(|(_, d)| d.contains("the provider's problem")),
        "{fates:?}"
    );
    // Inbound comes back: the outage ends.
    for s in ["a", "b", "c"] {
        r.wctl.set_inbound(s, None).expect("clear");
    }
    r.run_for(secs(120)).await;
    assert_eq!(
        r.metric("wa_watchdog_provider_outage", "provider=\"waha\""),
        0.0
    );
    for s in ["a", "b", "c"] {
        assert_eq!(r.wctl.restart_count(s), 0, "{s} restarted after the outage");
    }
}

#[tokio::test]
async fn a_paused_member_is_never_held_to_its_ring_canaries() {
    let mut r = Ring::start(&["a", "b"], &["waha/a", "waha/b", "green"], false).await;
    r.run_for(secs(45)).await;
    r.d.scheduler
        .command(wa_watchdog::scheduler::Command::Pause {
            provider: "waha".into(),
            session: "b".into(),
            until: None,
            reason: "operator".into(),
        })
        .await
        .expect("pause");
    r.wctl
        .set_inbound("b", Some(InboundFault::Dead))
        .expect("fault");
    let onset = r.d.now();
    r.run_for(secs(120)).await;
    assert_eq!(r.state("waha", "b"), State::Paused);
    let fates: Vec<_> = r
        .ring_fates("waha", "b")
        .into_iter()
        .filter(|(o, _)| o == "inbound_missing")
        .collect();
    assert!(fates.is_empty(), "{fates:?}");
    assert_eq!(r.wctl.restart_count("b"), 0);
    assert!(r.states_of("waha", "a", onset).is_empty());
    assert_eq!(
        r.metric(
            "wa_watchdog_ring_inbound_failures_total",
            "provider=\"waha\",session=\"b\""
        ),
        0.0
    );
}

#[tokio::test]
async fn webhooks_that_carry_no_inbound_messages_never_look_like_a_dead_inbound() {
    // Webhooks are configured, but the providers push no inbound messages:
    // the last read at the deadline finds every canary.
    let mut r = Ring::start(&["a", "b"], &["waha/a", "waha/b", "green"], true).await;
    r.hooks = None;
    r.run_for(secs(90)).await;
    for (p, s) in [("waha", "a"), ("waha", "b"), ("green", GREEN_ID)] {
        assert_eq!(r.state(p, s), State::Healthy, "{p}/{s}");
        let fates = r.ring_fates(p, s);
        assert!(!fates.is_empty(), "{p}/{s}");
        assert!(
            fates
                .iter()
                .all(|(o, d)| o == "delivered" && d.contains("(chat read)")),
            "{p}/{s}: {fates:?}"
        );
    }
    assert_eq!(r.wctl.restart_count("a") + r.wctl.restart_count("b"), 0);
    assert_eq!(r.gctl.count("reboot"), 0);
}
