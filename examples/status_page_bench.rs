//! How long does the status page take for a large fleet? Fills a real SQLite
//! store (on disk, WAL, as the daemon opens it) with N sessions in a mix of
//! states, restarts in the last day and a session with a full history, then
//! times what `GET /` and `GET /sessions/{provider}/{session}` do: the store
//! reads, the registry read and the HTML rendering (median and worst of
//! `RUNS`).
//!
//! ```text
//! cargo run --release --example status_page_bench -- [SESSIONS] [RUNS]   # default 1000 20
//! ```

use std::time::{Duration, Instant};

use wa_watchdog::clock::Timestamp;
use wa_watchdog::metrics::Metrics;
use wa_watchdog::status_page;
use wa_watchdog::store::{
    NewRemediation, ProbeRecord, RemediationUpdate, SessionRecord, Store, TransitionRecord,
};

const STATES: [&str; 8] = [
    "healthy",
    "healthy",
    "healthy",
    "healthy",
    "desynced",
    "restarting",
    "needs_pairing",
    "paused",
];

fn session(provider: &str, name: &str, state: &str, now: Timestamp) -> SessionRecord {
    let mut rec = SessionRecord::new(provider, name, state, now.minus(Duration::from_secs(600)));
    rec.machine.reason = format!("{state}: the reason a person reads");
    rec.machine.consecutive_failures = u32::from(state != "healthy");
    rec.machine.last_success_at = Some(now.minus(Duration::from_secs(30)));
    rec.machine.last_outcome = Some("delivered".into());
    rec.machine.last_probe_at = Some(now.minus(Duration::from_secs(30)));
    rec.machine.paused_until = (state == "paused").then(|| now.plus(Duration::from_secs(3600)));
    rec.next_probe_at = Some(now.plus(Duration::from_secs(30)));
    rec.updated_at = now;
    rec
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.2} ms, worst {:.2} ms",
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20);
    anyhow::ensure!(n > 0 && runs > 0, "SESSIONS and RUNS must be positive");

    let dir = std::env::temp_dir().join(format!("wa-watchdog-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = Store::open(&dir.join("bench.db")).await?;
    let now = Timestamp::from_millis(1_800_000_000_000);
    let metrics = Metrics::new();
    for p in ["waha", "green"] {
        metrics.add_provider(p);
        metrics.set_provider(p, true, false);
        metrics.set_restart_budget(p, 10);
    }
    let names = wa_watchdog::sim::session_names(n);
    for (i, name) in names.iter().enumerate() {
        let provider = if i % 2 == 0 { "waha" } else { "green" };
        let state = STATES[i % STATES.len()];
        let rec = session(provider, name, state, now);
        store.save_session(&rec).await?;
        metrics.set_session(
            provider,
            name,
            state.parse().map_err(anyhow::Error::msg)?,
            0,
            rec.machine.last_success_at,
        );
        if i % 10 == 0 {
            let id = store
                .begin_remediation(&NewRemediation {
                    provider: provider.into(),
                    session: name.clone(),
                    started_at: now.minus(Duration::from_secs(3600)),
                    action: "restart".into(),
                    reason: "3 desyncs in a row".into(),
                    result: "pending".into(),
                    intent_key: NewRemediation::new_key(
                        provider,
                        name,
                        now.minus(Duration::from_secs(3600)),
                    ),
                })
                .await?;
            store
                .update_remediation(
                    id,
                    &RemediationUpdate {
                        result: "healed".into(),
                        detail: String::new(),
                        finished_at: Some(now.minus(Duration::from_secs(3570))),
                        recovery_ms: Some(75_000),
                    },
                )
                .await?;
        }
    }
    // One session with a full history (more than the page shows).
    let (provider, name) = ("waha", names[0].as_str());
    for k in 0..200u64 {
        let at = now.minus(Duration::from_secs(15 * k));
        store
            .insert_probe(&ProbeRecord {
                provider: provider.into(),
                session: name.into(),
                at,
                kind: "probe".into(),
                outcome: if k % 7 == 3 { "desync" } else { "delivered" }.into(),
                http_status: Some(201),
                latency_ms: 120,
                detail: "message id true_123@c.us_ABCDEF".into(),
            })
            .await?;
        if k % 4 == 0 {
            store
                .insert_transition(&TransitionRecord {
                    provider: provider.into(),
                    session: name.into(),
                    at,
                    from_state: "healthy".into(),
                    to_state: "suspect".into(),
                    reason: "canary failed: desync".into(),
                })
                .await?;
        }
    }

    let mut fleet_times = Vec::new();
    let mut fleet_bytes = 0;
    let mut render_times = Vec::new();
    let mut session_times = Vec::new();
    let mut session_bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let fleet = status_page::read_fleet(&store, &metrics, now).await?;
        let read = t.elapsed();
        let html = status_page::fleet_html(&fleet);
        fleet_times.push(t.elapsed());
        render_times.push(t.elapsed() - read);
        fleet_bytes = html.len();
        anyhow::ensure!(fleet.sessions.len() == n, "not every session read");

        let t = Instant::now();
        let h = status_page::read_session(&store, provider, name, now)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the session with history is missing"))?;
        let html = status_page::session_html(&h);
        session_times.push(t.elapsed());
        session_bytes = html.len();
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "sessions={n} runs={runs}\n\
         GET /         read+render: {} (render alone: {}), {fleet_bytes} bytes\n\
         GET /sessions read+render: {}, {session_bytes} bytes",
        stats(fleet_times),
        stats(render_times),
        stats(session_times),
    );
    Ok(())
}
