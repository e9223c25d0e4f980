//! The demo, sped up: both simulators and the daemon in one process, a WAHA
//! desync and a stuck Green-API queue injected, caught and healed, every
//! state change printed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wa_watchdog::demo::{self, DemoOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_a_desync_and_a_stuck_queue_caught_and_healed() {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let opts = DemoOptions {
        sessions: 3,
        victim: 2,
        desync_after: Duration::from_millis(1500),
        green_stuck_after: Some(Duration::from_millis(1500)),
        canary_interval: Duration::from_millis(1200),
        confirm_interval: Duration::from_millis(1200),
        ack_timeout: Duration::from_millis(1500),
        restart_reply_delay: Duration::from_millis(100),
        restart_working_after: Duration::from_millis(500),
        reboot_starting_for: Duration::from_millis(500),
        exit_after: Some(Duration::from_secs(60)),
    };
    // Stop as soon as both heals are printed, so the test takes seconds.
    let watch = lines.clone();
    let healed = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let heals = watch
                .lock()
                .expect("lines")
                .iter()
                .filter(|l| l.contains("recovering → healthy"))
                .count();
            if heals >= 2 {
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
    assert_eq!(
        report.restarts,
        [("demo-2".to_string(), 1), ("1101000001".to_string(), 1)],
        "{text}"
    );
    for needle in [
        "injected: demo-2",
        "demo-2     healthy → suspect",
        "restart accepted by WAHA",
        "injected: 1101000001",
        "1101000001 healthy → suspect",
        "reboot accepted",
        "summary: demo-2 (desync) was caught, restarted and delivering again",
        "summary: 1101000001 (stuck queue) was caught, rebooted and delivering again",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}
