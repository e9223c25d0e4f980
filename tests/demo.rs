//! The demo, sped up: the simulator and the daemon in one process, a desync
//! injected, caught and healed, every state change printed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wa_watchdog::demo::{self, DemoOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_a_desync_caught_and_healed() {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let opts = DemoOptions {
        sessions: 3,
        victim: 2,
        desync_after: Duration::from_millis(1500),
        canary_interval: Duration::from_millis(500),
        confirm_interval: Duration::from_millis(300),
        restart_reply_delay: Duration::from_millis(100),
        restart_working_after: Duration::from_millis(500),
        exit_after: Some(Duration::from_secs(20)),
    };
    // Stop as soon as the heal is printed, so the test takes seconds.
    let watch = lines.clone();
    let healed = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let done = watch
                .lock()
                .expect("lines")
                .iter()
                .any(|l| l.contains("recovering → healthy"));
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
    assert!(report.injected_at.is_some(), "{text}");
    assert!(report.healed_at.is_some(), "{text}");
    assert_eq!(report.restarts, [("demo-2".to_string(), 1)], "{text}");
    for needle in [
        "injected: demo-2",
        "demo-2   healthy → suspect",
        "suspect → desynced",
        "desynced → restarting",
        "restart accepted by WAHA",
        "restarting → recovering",
        "recovering → healthy",
        "summary: demo-2 desynced, was restarted and delivered again",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}
