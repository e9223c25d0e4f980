//! The real `wa-watchdog` binary as a child process, for the tests that run
//! it the way systemd or an operator would: a WAHA simulator on the system
//! clock for it to watch, signals, waiting for its exit, and waiting (in real
//! time, bounded) for its database to show something.
//!
//! Owns: those helpers. Must not: fake the daemon's clock or state (the
//! child runs for real), or wait without a bound.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use wa_watchdog::clock::Clock;
use wa_watchdog::sim::waha::{self, WahaSim, WahaSimOptions};
use wa_watchdog::store::{SessionRecord, Store};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_wa-watchdog");

/// A WAHA simulator on the system clock that demands `key`, whose restarts
/// bring a session back within 300 ms.
pub async fn system_sim(key: &str, sessions: &[&str]) -> WahaSim {
    waha::start(
        "127.0.0.1:0".parse().expect("addr"),
        WahaSimOptions {
            api_key: Some(key.to_string()),
            sessions: sessions.iter().map(|s| s.to_string()).collect(),
            clock: Clock::system(),
            restart_working_after: Duration::from_millis(300),
            ..WahaSimOptions::default()
        },
    )
    .await
    .expect("sim")
}

/// Sends `sig` (`-TERM`, `-HUP`, ...) to the child with kill(1).
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig}");
}

/// Waits for the child to exit, off the async runtime.
pub async fn wait_exit(child: Child) -> ExitStatus {
    tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait()
    })
    .await
    .expect("join")
    .expect("wait")
}

/// Waits for the child to exit and collects its piped output, off the async
/// runtime.
pub async fn wait_output(child: Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait")
}

/// Waits (real time, bounded) until `pred` holds on the database.
pub async fn wait_for_db(db: &Path, what: &str, mut pred: impl FnMut(&[SessionRecord]) -> bool) {
    let start = Instant::now();
    loop {
        if db.exists()
            && let Ok(store) = Store::open_read_only(db).await
        {
            let rows = store.list_sessions(false).await.unwrap_or_default();
            store.close().await;
            if pred(&rows) {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
