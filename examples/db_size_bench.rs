//! Database size benchmark: how large the SQLite file grows for a fleet over
//! simulated days at default settings, through the daemon's real store path
//! (the one writer with group commit, the hourly retention pass that rolls
//! probes up and prunes), on a manual clock.
//!
//! Run (release):
//!
//! ```sh
//! cargo run --release --example db_size_bench -- 10000 35        # sessions, simulated days
//! cargo run --release --example db_size_bench -- 100000 3 300 1  # + probe interval s, failures per mille
//! ```
//!
//! What it drives: every session probed every `interval` (default 300 s),
//! each probe a row like the daemon writes (kind, outcome, HTTP status,
//! latency, a delivery detail of the usual length), one failure per mille
//! by default (not delivered: kept in full for the retention); every
//! simulated hour the probes of that hour go through `store::Writer`, then
//! the daemon's retention job runs (`Store::prune_history` and
//! `Store::roll_up_probes` with `daemon.retention` = 30 days). Session rows
//! are saved once (the daemon upserts the same row, so their size does not
//! grow). It skips the HTTP side: a probe here is its database writes only,
//! which is what the size depends on.
//!
//! It prints, once per simulated day, the rows per table and the file size
//! (database + WAL), total and per session. Everything the store keeps is
//! per session (last probes, buckets, failures), so the size is linear in
//! the number of sessions: a run at 10k sessions past the retention gives
//! the 100k size as 10 × its size, which a shorter run at 100k checks.

use std::path::Path;
use std::time::{Duration, Instant};

use wa_watchdog::clock::Timestamp;
use wa_watchdog::store::{ProbeRecord, SessionRecord, Store, Write, Writer};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// `daemon.retention`'s default.
const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

fn file_bytes(path: &Path) -> u64 {
    let wal = path.with_extension("db-wal");
    [path.to_path_buf(), wal]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

async fn rows(store_path: &Path, count_sql: &'static str) -> anyhow::Result<i64> {
    use sqlx::Connection;
    let mut conn = sqlx::sqlite::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new()
            .filename(store_path)
            .read_only(true),
    )
    .await?;
    let n: i64 = sqlx::query_scalar(count_sql).fetch_one(&mut conn).await?;
    conn.close().await?;
    Ok(n)
}

/// Where the bytes are at the end: pages per table and index (SQLite's
/// `dbstat`), so a change to the schema or the retention shows what it
/// saved; free pages are what deletes left for reuse.
async fn breakdown(store_path: &Path) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::sqlite::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new()
            .filename(store_path)
            .read_only(true),
    )
    .await?;
    let parts: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT name, SUM(pgsize), SUM(pgsize - unused) FROM dbstat GROUP BY name ORDER BY 2 DESC",
    )
    .fetch_all(&mut conn)
    .await?;
    let free: i64 = sqlx::query_scalar(
        "SELECT freelist_count * page_size FROM pragma_freelist_count, pragma_page_size",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    println!("table or index                  MiB   used %");
    for (name, bytes, used) in parts {
        println!(
            "{name:<28} {:>6.1}   {:>5.1}",
            bytes as f64 / (1024.0 * 1024.0),
            used as f64 * 100.0 / bytes.max(1) as f64
        );
    }
    println!(
        "{:<28} {:>6.1}",
        "(free pages)",
        free as f64 / (1024.0 * 1024.0)
    );
    let wal = std::fs::metadata(store_path.with_extension("db-wal")).map_or(0, |m| m.len());
    println!(
        "{:<28} {:>6.1}",
        "(WAL file)",
        wal as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let sessions: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let days: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(35);
    let interval_s: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(300);
    let failures_per_mille: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1);
    anyhow::ensure!(
        interval_s > 0 && interval_s <= 3600,
        "interval must be 1..=3600 s"
    );

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("wa-watchdog.db");
    let store = Store::open(&path).await?;
    let names = wa_watchdog::sim::session_names(sessions);
    let start = Timestamp::from_millis(1_800_000_000_000 - 1_800_000_000_000 % DAY_MS);
    let records: Vec<SessionRecord> = names
        .iter()
        .map(|n| {
            let mut rec = SessionRecord::new("waha", n, "healthy", start);
            rec.chat_id = Some("15550000001@c.us".into());
            rec.machine.reason = "canary delivered".into();
            rec.machine.last_outcome = Some("delivered".into());
            rec
        })
        .collect();
    store.save_sessions(&records).await?;
    let writer = Writer::start(store.clone());
    println!(
        "db_size_bench: {sessions} sessions, a probe every {interval_s} s, \
         {failures_per_mille}‰ not delivered, retention {} days, {days} simulated days",
        RETENTION.as_secs() / 86_400
    );
    println!("day  probes      rollups     file_MiB   bytes/session  without_WAL  real_s");
    let real = Instant::now();
    let mut seq: u64 = 0;
    let per_hour = 3600 / interval_s;
    for hour in 0..days * 24 {
        let hour_start = start.as_millis() + hour * HOUR_MS;
        for k in 0..per_hour {
            for (i, name) in names.iter().enumerate() {
                // Spread over the interval like the scheduler's jitter.
                let offset = (i as i64 * 7919) % (interval_s * 1000);
                let at = hour_start + k * interval_s * 1000 + offset;
                seq += 1;
                let failed = failures_per_mille > 0 && seq % (1000 / failures_per_mille) == 0;
                let probe = ProbeRecord {
                    provider: "waha".into(),
                    session: name.clone(),
                    at: Timestamp(at),
                    kind: "probe".into(),
                    outcome: if failed { "desync" } else { "delivered" }.into(),
                    http_status: Some(if failed { 500 } else { 201 }),
                    latency_ms: 80 + seq % 400,
                    detail: if failed {
                        "HTTP 500: 2 UNKNOWN: server returned error 400".into()
                    } else {
                        format!(
                            "message true_15550000001@c.us_3EB0{seq:018X} confirmed: DEVICE by read-back 2s after sending"
                        )
                    },
                };
                while let Err(e) = writer.submit(Write::Probe(probe.clone())) {
                    // The queue is full: let the writer catch up (the
                    // daemon would drop the write; a benchmark must not).
                    if !matches!(e, wa_watchdog::store::StoreError::QueueFull { .. }) {
                        anyhow::bail!("{e}");
                    }
                    writer.flush().await;
                }
            }
        }
        writer.flush().await;
        // The daemon's retention job, once an hour.
        let now = Timestamp(hour_start + HOUR_MS);
        let before = now.minus(RETENTION);
        store.prune_history(before).await?;
        store.roll_up_probes(now, before).await?;
        if (hour + 1) % 24 == 0 {
            let bytes = file_bytes(&path);
            println!(
                "{:>3}  {:>10}  {:>10}  {:>9.1}  {:>13}  {:>11}  {:>6.0}",
                (hour + 1) / 24,
                rows(&path, "SELECT COUNT(*) FROM probes").await?,
                rows(&path, "SELECT COUNT(*) FROM probe_rollups").await?,
                bytes as f64 / (1024.0 * 1024.0),
                bytes / sessions as u64,
                std::fs::metadata(&path).map_or(0, |m| m.len()) / sessions as u64,
                real.elapsed().as_secs_f64()
            );
        }
    }
    breakdown(&path).await?;
    let status = store.write_status();
    anyhow::ensure!(
        status.failures.is_empty(),
        "store writes failed: {status:?}"
    );
    let mut writer = writer;
    writer.close().await;
    store.close().await;
    Ok(())
}
