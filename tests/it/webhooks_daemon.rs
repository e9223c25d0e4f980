//! The real binary with webhooks on a second listener (`daemon.webhook_listen`),
//! trace-level logs on: a signed push moves a session to needs-pairing, a
//! forged one changes nothing, and the webhook key appears in no log line,
//! database row, metric or error body.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::binary::{BIN, signal, system_sim, wait_exit, wait_for_db};
use crate::common::{database_text, free_port};
use wa_watchdog::clock::Clock;
use wa_watchdog::sim::waha::Status;
use wa_watchdog::sim::webhooks::{HookAuth, HookFault, HookSender};

const KEY: &str = "waha-key-SEKRET-d41f";
const HOOK_KEY: &str = "waha-hook-SEKRET-b7c2e9";

/// Kills the child if the test fails before it stops it.
struct Reap(Option<std::process::Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test]
async fn the_binary_hears_signed_pushes_on_webhook_listen_and_never_shows_the_key() {
    let sim = system_sim(KEY, &["s1"]).await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("wd.db");
    let config = dir.path().join("config.toml");
    let (listen, hooks) = (free_port(), free_port());
    std::fs::write(
        &config,
        format!(
            "[daemon]\ndatabase = {db:?}\nlisten = \"127.0.0.1:{listen}\"\n\
             webhook_listen = \"127.0.0.1:{hooks}\"\nshutdown_grace = \"2s\"\n\
             [canary]\ninterval = \"1h\"\njitter = 0.0\ntimeout = \"2s\"\n\
             [[provider]]\nname = \"waha\"\nkind = \"waha\"\nurl = \"{}\"\n\
             api_key_env = \"WH_TEST_WAHA_KEY\"\nwebhook_hmac_key_env = \"WH_TEST_HOOK_KEY\"\n",
            sim.url()
        ),
    )
    .expect("config");
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(BIN)
        .args(["run", "--config", &config.to_string_lossy()])
        .env("WH_TEST_WAHA_KEY", KEY)
        .env("WH_TEST_HOOK_KEY", HOOK_KEY)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn daemon");
    let mut child = Reap(Some(child));

    wait_for_db(&db, "s1 healthy", |rows| {
        rows.len() == 1 && rows[0].machine.state == "healthy"
    })
    .await;
    let url = format!("http://127.0.0.1:{hooks}/webhooks/waha");
    let client = wa_watchdog::provider::http::build_client(Duration::from_secs(5)).expect("client");

    // The webhook listener serves webhooks only.
    let metrics_there = client
        .get(format!("http://127.0.0.1:{hooks}/metrics"))
        .send()
        .await
        .expect("get");
    assert_eq!(metrics_there.status().as_u16(), 404);

    sim.control()
        .set_status("s1", Status::ScanQrCode)
        .expect("status");
    let forged = HookSender::new(&url, HookAuth::Hmac(HOOK_KEY.into()), Clock::system());
    forged.set_fault(HookFault::WrongSignature);
    assert_eq!(
        forged
            .waha_session_status("s1", "SCAN_QR_CODE")
            .await
            .expect("send"),
        401
    );
    let last = forged.last().expect("sent");
    let mut req = client.post(&url).body(last.body.clone());
    for (k, v) in &last.headers {
        req = req.header(k, v);
    }
    let body = req.send().await.expect("post").text().await.expect("text");
    assert!(!body.contains(HOOK_KEY), "{body}");
    // Nothing changed (the canary interval is an hour: only a push could
    // make it probe now).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let store = wa_watchdog::store::Store::open_read_only(&db)
        .await
        .expect("open");
    let rows = store.list_sessions(false).await.expect("rows");
    store.close().await;
    assert_eq!(
        rows[0].machine.state, "healthy",
        "a forged push changed nothing"
    );

    let signed = HookSender::new(&url, HookAuth::Hmac(HOOK_KEY.into()), Clock::system());
    assert_eq!(
        signed
            .waha_session_status("s1", "SCAN_QR_CODE")
            .await
            .expect("send"),
        202
    );
    assert_eq!(signed.replay().await.expect("replay"), Some(200));
    wait_for_db(&db, "s1 needs pairing", |rows| {
        rows[0].machine.state == "needs_pairing"
    })
    .await;

    let metrics = client
        .get(format!("http://127.0.0.1:{listen}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "wa_watchdog_webhook_rejected_total{provider=\"waha\",reason=\"bad_signature\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "wa_watchdog_webhook_rejected_total{provider=\"waha\",reason=\"duplicate\"} 1"
        )
    );
    assert!(metrics.contains(
        "wa_watchdog_webhook_events_total{event=\"session.status\",provider=\"waha\"} 1"
    ));
    assert!(!metrics.contains(HOOK_KEY));

    let child = child.0.take().expect("child");
    signal(&child, "-TERM");
    let status = wait_exit(child).await;
    assert_eq!(status.code(), Some(0));
    let logs = std::fs::read_to_string(&log_path).expect("logs");
    assert!(logs.contains("webhook"), "trace logs were captured");
    assert!(!logs.contains(HOOK_KEY), "the webhook key is in the logs");
    assert!(!logs.contains(KEY), "the API key is in the logs");
    let db_text = database_text(&db);
    assert!(
        !db_text.contains(HOOK_KEY),
        "the webhook key is in the database"
    );
    assert!(db_text.contains("SCAN_QR_CODE"), "the reason was stored");
    sim.shutdown().await;
}
