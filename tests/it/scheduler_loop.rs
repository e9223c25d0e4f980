//! The daemon's loop, `Scheduler::run`, on a manual clock with the system
//! clock's wake grid switched on: a due probe starts at the next grid
//! point, together with everything else due by then, not at its own due
//! time (see `scheduler::WAKE_RESOLUTION`).

use std::time::Duration;

use crate::common::{Harness, PROVIDER, Settings};
use wa_watchdog::clock::Timestamp;
use wa_watchdog::metrics::Metrics;

/// `(count, sum)` of `wa_watchdog_probe_lateness_seconds` for the provider.
fn lateness(m: &Metrics) -> (u64, f64) {
    let text = m.encode().expect("encode");
    let value = |family: &str| {
        let prefix = format!("{family}{{provider=\"{PROVIDER}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0.0, |v| v.parse::<f64>().expect("a number"))
    };
    (
        value("wa_watchdog_probe_lateness_seconds_count") as u64,
        value("wa_watchdog_probe_lateness_seconds_sum"),
    )
}

fn round_up(t: Timestamp, step_ms: i64) -> Timestamp {
    Timestamp::from_millis((t.as_millis() + step_ms - 1).div_euclid(step_ms) * step_ms)
}

#[tokio::test]
async fn due_probes_start_together_at_the_next_grid_point() {
    const GRID_MS: i64 = 1_000;
    let names = ["s1", "s2", "s3", "s4"];
    let mut h = Harness::start(&names, &Settings::default()).await;
    // Discovery (due at the start) adds the sessions and schedules them.
    h.d.scheduler.tick().await;
    h.d.scheduler
        .set_wake_resolution(Duration::from_millis(GRID_MS as u64));
    // First probes are spread over the first seconds: off the grid.
    let dues: Vec<Timestamp> = names
        .iter()
        .map(|s| h.scheduler.next_step(PROVIDER, s).expect("scheduled").at)
        .collect();
    let grid: Vec<Timestamp> = dues.iter().map(|d| round_up(*d, GRID_MS)).collect();
    assert!(
        dues.iter().all(|d| d.as_millis() % GRID_MS != 0),
        "the test needs due times off the grid: {dues:?}"
    );
    let mut stops: Vec<Timestamp> = dues.iter().chain(&grid).copied().collect();
    stops.sort();
    stops.dedup();
    let expected_late: f64 = dues
        .iter()
        .zip(&grid)
        .map(|(d, g)| g.since(*d).as_secs_f64())
        .sum();

    let clock = h.clock.clone();
    let metrics = h.metrics.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (_commands, commands_rx) = tokio::sync::mpsc::channel(1);
    let run = h.d.scheduler.run(
        async {
            let _ = stopped.await;
        },
        commands_rx,
        Duration::from_secs(5),
        |_| {},
    );
    let drive = async {
        for at in stops {
            clock.set(at);
            // Started probes are counted when they start (before any
            // HTTP), so a few turns of the loop are enough to see them.
            let want = grid.iter().filter(|g| **g <= at).count() as u64;
            let mut seen = lateness(&metrics).0;
            for _ in 0..200 {
                if seen >= want {
                    break;
                }
                tokio::task::yield_now().await;
                seen = lateness(&metrics).0;
            }
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            seen = lateness(&metrics).0;
            assert_eq!(
                seen, want,
                "probes started by {at:?} (due {dues:?}, grid {grid:?})"
            );
        }
        let (_, sum) = lateness(&metrics);
        assert!(
            (sum - expected_late).abs() < 1e-6,
            "each probe started at its grid point: lateness {sum} s, expected {expected_late} s"
        );
        let _ = stop.send(());
    };
    tokio::join!(run, drive);
}
