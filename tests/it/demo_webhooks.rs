//! The demo with webhooks on, sped up: a WAHA canary is confirmed by the
//! WAHA simulator's own `message.ack` push, the first Green-API canary by an
//! `outgoingMessageStatus` push, and a pushed `{{SWE003}}` turns the
//! instance to needs-pairing, all printed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wa_watchdog::demo::{self, DemoOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_a_canary_confirmed_by_a_push_and_swe003_needing_pairing() {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let opts = DemoOptions {
        sessions: 1,
        victim: 1,
        desync_after: Duration::from_secs(3600),
        green_stuck_after: None,
        never_acked: None,
        canary_interval: Duration::from_millis(1200),
        confirm_interval: Duration::from_millis(1200),
        ack_timeout: Duration::from_secs(3),
        restart_reply_delay: Duration::from_millis(100),
        restart_working_after: Duration::from_millis(500),
        reboot_starting_for: Duration::from_millis(500),
        exit_after: Some(Duration::from_secs(60)),
        webhooks: true,
        swe003_after: Some(Duration::from_secs(3)),
        ring: None,
    };
    let watch = lines.clone();
    let done = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let lines = watch.lock().expect("lines");
            if lines
                .iter()
                .any(|l| l.contains("needs_pairing") && l.contains("SWE003"))
            {
                return;
            }
        }
    };
    demo::run(opts, move |l| sink.lock().expect("lines").push(l), done)
        .await
        .expect("demo runs");
    let text = lines.lock().expect("lines").join("\n");
    assert!(
        text.contains("pushed: Green-API outgoingMessageStatus `sent`"),
        "{text}"
    );
    assert!(text.contains("→ HTTP 202"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("canary confirmed by a push")
                && l.contains("confirmed: sent by webhook")),
        "{text}"
    );
    // WAHA: the simulator's signed message.ack confirmed demo-1's canary.
    let waha = text
        .lines()
        .find(|l| l.contains("demo-1") && l.contains("canary confirmed by a push"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        waha.contains("confirmed: SERVER by webhook")
            || waha.contains("confirmed: DEVICE by webhook"),
        "{text}"
    );
    let pairing = text
        .lines()
        .find(|l| l.contains("→ needs_pairing"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        pairing.contains("SWE003") && pairing.contains("remove all linked devices"),
        "{text}"
    );
}
