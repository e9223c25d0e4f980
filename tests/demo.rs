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
    // Stop as soon as the heal is printed, so the test takes seconds; scrape
    // the /metrics URL the banner printed before stopping.
    let watch = lines.clone();
    let scraped = Arc::new(Mutex::new(None::<(u16, String)>));
    let scrape = scraped.clone();
    let healed = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (done, url) = {
                let lines = watch.lock().expect("lines");
                let done = lines.iter().any(|l| l.contains("recovering → healthy"));
                let url = lines.iter().find_map(|l| {
                    l.trim()
                        .strip_prefix("metrics")
                        .and_then(|rest| rest.split_whitespace().next())
                        .map(str::to_owned)
                });
                (done, url)
            };
            if done {
                if let Some(url) = url {
                    let got = match reqwest::get(&url).await {
                        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                        Err(e) => (0, e.to_string()),
                    };
                    *scrape.lock().expect("scrape") = Some(got);
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
    assert!(report.injected_at.is_some(), "{text}");
    assert!(report.healed_at.is_some(), "{text}");
    assert_eq!(report.restarts, [("demo-2".to_string(), 1)], "{text}");
    let (status, body) = scraped
        .lock()
        .expect("scrape")
        .clone()
        .unwrap_or_else(|| panic!("the banner printed no metrics URL:\n{text}"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("wa_watchdog_session_state{provider=\"waha-demo\",session=\"demo-2\",state=\"healthy\"} 1"),
        "{body}"
    );
    for needle in [
        "  metrics    http://127.0.0.1:",
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
