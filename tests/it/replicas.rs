//! Several replicas on one real PostgreSQL database (the throwaway cluster
//! of `common::postgres`) over one WAHA simulator, on one manual clock: the
//! sessions split between them by shard leases, and the fence that keeps a
//! replica that lost a shard from writing a restart intent.
//!
//! Lease rounds are driven by hand (`Scheduler::renew_leases`), like the
//! loop is by `tick`, so nothing here waits in real time.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{self, Driver, PROVIDER, Settings, env};
use wa_watchdog::clock::{Clock, Timestamp};
use wa_watchdog::lease::{SHARDS, shard_of};
use wa_watchdog::store::{Fence, Store, StoreError};

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i:03}")).collect()
}

async fn replica(clock: &Clock, sim_url: &str, url: &str, name: &str) -> Driver {
    let mut s = Settings::default();
    s.daemon("database", &format!("{url:?}"))
        .daemon("replica", &format!("{name:?}"))
        .canary("interval", "\"10s\"");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = s.waha_toml(&dir.path().join("unused.db"), sim_url);
    Driver::build(clock.clone(), dir, &text, &env, PROVIDER).await
}

fn watched(d: &Driver) -> BTreeSet<String> {
    d.scheduler
        .sessions()
        .into_iter()
        .map(|(_, s, _)| s)
        .collect()
}

async fn share_a_fleet(replicas: usize) {
    let fleet = names(100);
    let refs: Vec<&str> = fleet.iter().map(String::as_str).collect();
    let clock = Clock::manual(common::t0());
    let sim = common::sim(&refs, &clock).await;
    let url = common::postgres::fresh_database().await;
    let mut rs = Vec::new();
    for i in 0..replicas {
        rs.push(replica(&clock, &sim.url(), &url, &format!("replica-{i}")).await);
    }
    // Rounds until nothing moves: joining replicas take shards over from
    // the first, at most 8 per round each.
    for _ in 0..12 {
        for r in &mut rs {
            r.scheduler.renew_leases().await;
        }
    }
    let owned: Vec<usize> = rs
        .iter()
        .map(|r| r.scheduler.shards_owned().expect("a replica"))
        .collect();
    assert_eq!(owned.iter().sum::<usize>(), SHARDS as usize, "{owned:?}");
    let fair = (SHARDS as usize).div_ceil(replicas);
    // Each at most its fair share, none idle (22/22/20 is a stable split:
    // no replica is over its share, so nothing moves).
    assert!(owned.iter().all(|&n| n > 0 && n <= fair), "{owned:?}");

    // Run a minute; every replica works only on its own sessions.
    for _ in 0..60 {
        clock.set(clock.now().plus(Duration::from_secs(1)));
        for r in &mut rs {
            r.scheduler.tick().await;
        }
    }
    let sets: Vec<BTreeSet<String>> = rs.iter().map(watched).collect();
    let mut all = BTreeSet::new();
    for (i, set) in sets.iter().enumerate() {
        for other in &sets[i + 1..] {
            assert!(set.is_disjoint(other), "a session watched twice");
        }
        all.extend(set.iter().cloned());
    }
    assert_eq!(all.len(), 100, "every session watched by one replica");
    // Each session was probed (status read and canary) by its owner alone:
    // with a 10 s interval, about 6 probes each in the minute, never double.
    for s in &fleet {
        let reads = sim
            .control()
            .calls()
            .iter()
            .filter(|c| c.method == "POST" && c.path == "/api/sendText")
            .filter(|c| c.session.as_deref() == Some(s.as_str()))
            .count();
        assert!((4..=8).contains(&reads), "{s}: {reads} canaries in 60 s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_100_sessions_each_probed_by_one() {
    share_a_fleet(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_100_sessions_each_probed_by_one() {
    share_a_fleet(3).await;
}

/// Fencing in the database: once another replica claimed the shard (the
/// first one's lease ran out), the first one's restart intent is refused
/// and nothing is written; the new owner's goes through.
#[tokio::test]
async fn a_replica_that_lost_its_shard_cannot_write_a_restart_intent() {
    let url = common::postgres::fresh_database().await;
    let a = Store::open_postgres(&url).await.expect("a");
    let b = Store::open_postgres(&url).await.expect("b");
    let at = Timestamp(1_800_000_000_000);
    common::store::save_session(&a, "s1", "desynced", at).await;
    let shard = shard_of(PROVIDER, "s1");
    // A lease of zero length: expired the moment it is granted, so the
    // test needs no waiting for the takeover.
    a.lease_snapshot("a", Duration::ZERO)
        .await
        .expect("snapshot");
    let held_a = a
        .lease_round("a", Duration::ZERO, &[], &[], &[shard])
        .await
        .expect("a claims");
    assert_eq!(held_a.len(), 1);
    b.lease_snapshot("b", Duration::from_secs(60))
        .await
        .expect("snapshot");
    let held_b = b
        .lease_round("b", Duration::from_secs(60), &[], &[], &[shard])
        .await
        .expect("b claims the expired shard");
    assert_eq!(held_b.len(), 1);
    assert!(held_b[0].token > held_a[0].token, "tokens only grow");

    let intent = |key: &str| common::store::intent("s1", at, key);
    let stale = Fence {
        owner: "a".into(),
        shard,
        token: held_a[0].token,
    };
    let err = a
        .begin_remediation_fenced(&intent("from-a"), &stale)
        .await
        .expect_err("fenced");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    // a cannot renew it either.
    let renewed = a
        .lease_round("a", Duration::from_secs(60), &held_a, &[], &[])
        .await
        .expect("round");
    assert!(renewed.is_empty(), "{renewed:?}");

    let current = Fence {
        owner: "b".into(),
        shard,
        token: held_b[0].token,
    };
    b.begin_remediation_fenced(&intent("from-b"), &current)
        .await
        .expect("the owner writes");
    let rows = b
        .recent_remediations(PROVIDER, "s1", None, 10)
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1, "only the owner's intent: {rows:?}");
}
