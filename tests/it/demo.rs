//! The demo, sped up: both simulators and the daemon in one process, a WAHA
//! desync, a stuck Green-API queue and a WAHA session whose sends are never
//! acked injected, caught and healed, every state change printed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wa_watchdog::demo::{self, DemoOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_three_faults_caught_and_healed() {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let opts = DemoOptions {
        sessions: 3,
        victim: 2,
        // Late enough that every session had its first canary confirmed,
        // even on a loaded machine.
        desync_after: Duration::from_secs(3),
        green_stuck_after: Some(Duration::from_secs(4)),
        never_acked: Some((3, Duration::from_secs(5))),
        canary_interval: Duration::from_millis(1200),
        confirm_interval: Duration::from_millis(1200),
        ack_timeout: Duration::from_millis(1500),
        restart_reply_delay: Duration::from_millis(100),
        restart_working_after: Duration::from_millis(500),
        reboot_starting_for: Duration::from_millis(500),
        exit_after: Some(Duration::from_secs(60)),
        webhooks: true,
        swe003_after: None,
        ring: None,
    };
    // Stop as soon as all three heals are printed, so the test takes seconds;
    // scrape the /metrics URL and load the status page the banner printed
    // before stopping.
    let watch = lines.clone();
    let scraped = Arc::new(Mutex::new(None::<(u16, String)>));
    let scrape = scraped.clone();
    let paged = Arc::new(Mutex::new(None::<(u16, String)>));
    let page = paged.clone();
    let healed = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (heals, url, page_url) = {
                let lines = watch.lock().expect("lines");
                let heals = lines
                    .iter()
                    .filter(|l| l.contains("recovering → healthy"))
                    .count();
                let url_of = |label: &str| {
                    lines.iter().find_map(|l| {
                        l.trim()
                            .strip_prefix(label)
                            .and_then(|rest| rest.split_whitespace().next())
                            .map(str::to_owned)
                    })
                };
                (heals, url_of("metrics"), url_of("status"))
            };
            if heals >= 3 {
                let client = wa_watchdog::provider::http::build_client(Duration::from_secs(5))
                    .expect("client");
                // The page reads the database, which a state change reaches
                // within the writer's short linger (20 ms) after the log
                // line: read again until it shows the heals, for a while.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                let metrics_shows = ["session=\"demo-2\",state=\"healthy\"} 1"];
                let page_shows = [
                    "data-session=\"demo-2\" data-state=\"healthy\"",
                    "data-session=\"1101000001\" data-state=\"healthy\"",
                ];
                for (url, into, shows) in [
                    (url, &scrape, &metrics_shows[..]),
                    (page_url, &page, &page_shows[..]),
                ] {
                    let Some(url) = url else { continue };
                    loop {
                        let got = match client.get(&url).send().await {
                            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                            Err(e) => (0, e.to_string()),
                        };
                        let healed = shows.iter().all(|n| got.1.contains(n));
                        *into.lock().expect("scrape") = Some(got);
                        if healed || tokio::time::Instant::now() > deadline {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
        }
    };
    let report = demo::run(opts, move |l| sink.lock().expect("lines").push(l), healed)
        .await
        .expect("demo runs");
    let text = lines.lock().expect("lines").join("\n");
    let waha = report.fault("demo-2").expect("desync injected");
    assert!(waha.healed_at.is_some(), "{text}");
    let green = report.fault("1101000001").expect("stuck queue injected");
    assert!(green.healed_at.is_some(), "{text}");
    let never = report.fault("demo-3").expect("never-acked injected");
    assert!(never.healed_at.is_some(), "{text}");
    for f in &report.faults {
        let detect = f.remedied_at.map(|r| r.since(f.injected_at).as_secs_f64());
        let heal = f.healed_at.map(|h| h.since(f.injected_at).as_secs_f64());
        eprintln!(
            "{} ({}): detection {detect:?} s, heal {heal:?} s",
            f.session, f.what
        );
    }
    assert_eq!(
        report.restarts,
        [
            ("demo-2".to_string(), 1),
            ("demo-3".to_string(), 1),
            ("1101000001".to_string(), 1)
        ],
        "{text}"
    );
    let (status, body) = scraped
        .lock()
        .expect("scrape")
        .clone()
        .unwrap_or_else(|| panic!("the banner printed no metrics URL:\n{text}"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(
            "wa_watchdog_session_state{provider=\"waha-demo\",session=\"demo-2\",state=\"healthy\"} 1"
        ),
        "{body}"
    );
    // The status page shows both healed sessions.
    let (status, html) = paged
        .lock()
        .expect("page")
        .clone()
        .unwrap_or_else(|| panic!("the banner printed no status page URL:\n{text}"));
    assert_eq!(status, 200, "{html}");
    for session in ["demo-2", "1101000001"] {
        assert!(
            html.contains(&format!(
                "data-session=\"{session}\" data-state=\"healthy\""
            )),
            "{session} not healthy on the status page:\n{html}"
        );
    }
    for needle in [
        "  status     http://127.0.0.1:",
        "  metrics    http://127.0.0.1:",
        "injected: demo-2",
        "demo-2     healthy → suspect",
        "restart accepted by WAHA",
        "injected: 1101000001",
        "1101000001 healthy → suspect",
        "reboot accepted",
        "summary: demo-2 (desync) was caught, restarted and delivering again",
        "summary: 1101000001 (stuck queue) was caught, rebooted and delivering again",
        "injected: demo-3",
        "stuck",
        "summary: demo-3 (accepted, never acked) was caught, restarted and delivering again",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

/// The ring part of the demo: two WAHA sessions and the Green-API instance
/// in a ring; one WAHA member stops receiving, is caught by the ring
/// canaries, restarted and verified by the next one; nobody else restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_ring_catches_and_restarts_an_inbound_dead_session() {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let opts = DemoOptions {
        sessions: 2,
        victim: 1,
        desync_after: Duration::from_secs(3600),
        green_stuck_after: None,
        never_acked: None,
        canary_interval: Duration::from_millis(1200),
        confirm_interval: Duration::from_millis(800),
        ack_timeout: Duration::from_secs(3),
        restart_reply_delay: Duration::from_millis(100),
        restart_working_after: Duration::from_millis(500),
        reboot_starting_for: Duration::from_millis(500),
        exit_after: Some(Duration::from_secs(90)),
        webhooks: true,
        swe003_after: None,
        ring: Some(demo::RingDemo {
            members: (1, 2),
            interval: Duration::from_secs(3),
            deadline: Duration::from_millis(1500),
            inbound_dead_after: Some(Duration::from_secs(5)),
        }),
    };
    let watch = lines.clone();
    let healed = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let done = watch
                .lock()
                .expect("lines")
                .iter()
                .any(|l| l.contains("demo-2") && l.contains("recovering → healthy"));
            if done {
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
        }
    };
    let report = demo::run(opts, move |l| sink.lock().expect("lines").push(l), healed)
        .await
        .expect("demo runs");
    let text = lines.lock().expect("lines").join("\n");
    let f = report.fault("demo-2").expect("inbound dead injected");
    assert!(f.healed_at.is_some(), "{text}");
    assert_eq!(report.restarts, [("demo-2".to_string(), 1)], "{text}");
    for needle in [
        "  ring       demo-1 → demo-2 → 1101000001 → demo-1",
        "injected: messages to demo-2 no longer arrive",
        "ring demo-ring: canary from waha-demo/demo-1 (confirmed sent) not received",
        "demo-2     healthy → suspect",
        "summary: demo-2 (inbound dead) was caught, restarted and delivering again",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(
        text.contains("canary from waha-demo/demo-1 received after"),
        "the restart is verified by a received ring canary:\n{text}"
    );
}
