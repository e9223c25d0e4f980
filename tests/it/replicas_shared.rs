//! Provider-wide rules over several replicas on one real PostgreSQL
//! database (the throwaway cluster of `common::postgres`), two replicas in
//! process over one WAHA simulator on one manual clock: the restart budget,
//! `max_concurrent_restarts` and the outage rule hold for the provider as a
//! whole, not once per replica. Lease rounds are driven by hand
//! (`Scheduler::renew_leases`), like the loop is by `tick`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{self, Driver, PROVIDER, Settings, env};
use wa_watchdog::clock::{Clock, Timestamp};
use wa_watchdog::lease::shard_of;
use wa_watchdog::machine::State;
use wa_watchdog::sim::waha::Fault;
use wa_watchdog::store::{Fence, Limits, NewRemediation, SessionRecord, Store, StoreError};

async fn replica(clock: &Clock, sim_url: &str, url: &str, name: &str, s: &Settings) -> Driver {
    let mut s = s.clone();
    s.daemon("database", &format!("{url:?}"))
        .daemon("replica", &format!("{name:?}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let text = s.waha_toml(&dir.path().join("unused.db"), sim_url);
    Driver::build(clock.clone(), dir, &text, &env, PROVIDER).await
}

/// Two replicas over `fleet`, leases settled (each holds its fair share).
async fn pair(
    fleet: &[&str],
    settings: &Settings,
) -> (Clock, wa_watchdog::sim::waha::WahaSim, Vec<Driver>) {
    let clock = Clock::manual(common::t0());
    let sim = common::sim(fleet, &clock).await;
    let url = common::postgres::fresh_database().await;
    let mut rs = Vec::new();
    for i in 0..2 {
        rs.push(replica(&clock, &sim.url(), &url, &format!("replica-{i}"), settings).await);
    }
    for _ in 0..6 {
        for r in &mut rs {
            r.scheduler.renew_leases().await;
        }
    }
    // Both sessions lists read: every replica watches its own share.
    for r in &mut rs {
        r.scheduler.tick().await;
    }
    (clock, sim, rs)
}

/// Which replica watches each session.
fn owners(rs: &[Driver]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (i, r) in rs.iter().enumerate() {
        for (_, s, _) in r.scheduler.sessions() {
            m.insert(s, i);
        }
    }
    m
}

fn per_replica(owners: &BTreeMap<String, usize>) -> [usize; 2] {
    let mut n = [0; 2];
    for i in owners.values() {
        n[*i] += 1;
    }
    n
}

async fn step_all(clock: &Clock, rs: &mut [Driver], by: Duration) {
    clock.set(clock.now().plus(by));
    for r in rs.iter_mut() {
        r.scheduler.tick().await;
    }
}

fn fleet(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restart_budget_holds_in_sum_over_two_replicas() {
    let names = fleet("b", 10);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut s = Settings::default();
    s.policy("restart_budget", "2")
        .policy("restart_budget_window", "\"10m\"")
        .policy("max_concurrent_restarts", "10");
    let (clock, sim, mut rs) = pair(&refs, &s).await;
    let split = per_replica(&owners(&rs));
    assert_eq!(split.iter().sum::<usize>(), 10, "{split:?}");
    // Each replica alone would spend a budget of 2: the sum is what counts.
    assert!(split.iter().all(|&n| n >= 2), "{split:?}");
    for n in &refs {
        sim.control().inject(n, Fault::Desync).expect("inject");
    }
    for _ in 0..120 {
        step_all(&clock, &mut rs, Duration::from_secs(1)).await;
        if clock.now().as_millis() % 10_000 == 0 {
            for r in &mut rs {
                r.scheduler.renew_leases().await;
            }
        }
    }
    let restarted: Vec<&str> = refs
        .iter()
        .copied()
        .filter(|n| sim.control().restart_count(n) > 0)
        .collect();
    let calls: usize = refs.iter().map(|n| sim.control().restart_count(n)).sum();
    assert_eq!(calls, 2, "restart budget of 2 in sum: {restarted:?}");
    // The others wait on the spent budget, on whichever replica they are.
    let waiting = rs
        .iter()
        .flat_map(|r| r.scheduler.sessions())
        .filter(|(_, _, st)| *st == State::Desynced)
        .count();
    assert_eq!(waiting, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_restarts_over_two_replicas_never_exceed_the_maximum() {
    let names = fleet("c", 8);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut s = Settings::default();
    s.policy("max_concurrent_restarts", "1")
        .policy("restart_budget", "100")
        .policy("restart_timeout", "\"20s\"");
    let (clock, sim, mut rs) = pair(&refs, &s).await;
    let owner = owners(&rs);
    assert!(per_replica(&owner).iter().all(|&n| n >= 1), "{owner:?}");
    // Every restart hangs in STARTING until restart_timeout: each holds
    // the provider's one slot for 20 s.
    for n in &refs {
        let ctl = sim.control();
        ctl.inject(n, Fault::Desync).expect("inject");
        ctl.inject(n, Fault::StuckStarting).expect("inject");
    }
    let mut most = 0;
    for _ in 0..150 {
        step_all(&clock, &mut rs, Duration::from_secs(1)).await;
        if clock.now().as_millis() % 5_000 == 0 {
            for r in &mut rs {
                r.scheduler.renew_leases().await;
            }
        }
        let restarting = rs
            .iter()
            .flat_map(|r| r.scheduler.sessions())
            .filter(|(_, _, st)| st.holds_restart_slot())
            .count();
        most = most.max(restarting);
        assert!(
            restarting <= 1,
            "{restarting} restarts at once over the replicas"
        );
    }
    assert_eq!(most, 1, "restarts happened");
    // Both replicas restarted some (the slot passed between them).
    let mut by_replica = [0usize; 2];
    for n in &refs {
        by_replica[owner[*n]] += sim.control().restart_count(n);
    }
    assert!(by_replica.iter().all(|&n| n >= 1), "{by_replica:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_over_sessions_split_between_replicas_is_seen_by_both() {
    let names = fleet("o", 6);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut s = Settings::default();
    // Neither replica's share alone reaches the minimum; together they do.
    s.policy("outage_min_sessions", "5")
        .policy("outage_fraction", "0.5");
    let (clock, sim, mut rs) = pair(&refs, &s).await;
    let split = per_replica(&owners(&rs));
    assert!(split.iter().all(|&n| (1..5).contains(&n)), "{split:?}");
    let outage = |d: &Driver| {
        let text = d.metrics.encode().expect("encode");
        text.lines()
            .any(|l| l == "wa_watchdog_provider_outage{provider=\"waha\"} 1")
    };
    sim.control().set_down(true);
    for _ in 0..30 {
        step_all(&clock, &mut rs, Duration::from_secs(1)).await;
    }
    let unreachable = rs
        .iter()
        .flat_map(|r| r.scheduler.sessions())
        .filter(|(_, _, st)| *st == State::Unreachable)
        .count();
    assert_eq!(unreachable, 6);
    assert!(
        !outage(&rs[0]) && !outage(&rs[1]),
        "no counts exchanged yet"
    );
    // One lease round each: the counts are exchanged.
    for _ in 0..2 {
        for r in &mut rs {
            r.scheduler.renew_leases().await;
        }
    }
    assert!(outage(&rs[0]) && outage(&rs[1]), "both see the outage");
    // And both see it end.
    sim.control().set_down(false);
    for _ in 0..30 {
        step_all(&clock, &mut rs, Duration::from_secs(1)).await;
    }
    for _ in 0..2 {
        for r in &mut rs {
            r.scheduler.renew_leases().await;
        }
    }
    assert!(!outage(&rs[0]) && !outage(&rs[1]), "the outage is over");
}

/// The check in the intent's transaction: two replicas writing the intent
/// for the provider's last token at the same moment, one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_for_the_last_token_cannot_both_win() {
    let url = common::postgres::fresh_database().await;
    let stores = [
        Store::open_postgres(&url).await.expect("a"),
        Store::open_postgres(&url).await.expect("b"),
    ];
    // Two sessions in different shards, one held by each replica.
    let (sa, sb) = (
        "r0",
        (1..)
            .map(|i| format!("r{i}"))
            .find(|s| shard_of(PROVIDER, s) != shard_of(PROVIDER, "r0"))
            .expect("another shard"),
    );
    let now = Timestamp(1_800_000_000_000);
    for session in [sa, sb.as_str()] {
        stores[0]
            .save_session(&SessionRecord::new(PROVIDER, session, "desynced", now))
            .await
            .expect("save");
    }
    let ttl = Duration::from_secs(60);
    let mut fences = Vec::new();
    for (store, (me, session)) in stores
        .iter()
        .zip([("a", sa.to_string()), ("b", sb.clone())])
    {
        store.lease_snapshot(me, ttl).await.expect("snapshot");
        let shard = shard_of(PROVIDER, &session);
        let held = store
            .lease_round(me, ttl, &[], &[], &[shard])
            .await
            .expect("claim");
        fences.push((
            session,
            Fence {
                owner: me.into(),
                shard,
                token: held[0].token,
            },
        ));
    }
    let limits = |now: Timestamp| Limits {
        now,
        max_concurrent: 5,
        in_flight_for: Duration::from_secs(120),
        budget: Some(1),
        budget_window: Duration::from_secs(600),
    };
    let intent = |session: &str, now: Timestamp| NewRemediation {
        provider: PROVIDER.into(),
        session: session.into(),
        started_at: now,
        action: "restart".into(),
        reason: "desync confirmed".into(),
        result: "pending".into(),
        intent_key: NewRemediation::new_key(PROVIDER, session, now),
    };
    // Eight windows an hour apart (each with a fresh budget of one), three
    // races in each: the first has one winner, the later ones none.
    const WINDOWS: u64 = 8;
    let mut winner = None;
    for window in 0..WINDOWS {
        let at = now.plus(Duration::from_secs(3600 * window));
        for round in 0..3 {
            let (ra, rb) = (intent(&fences[0].0, at), intent(&fences[1].0, at));
            let l = limits(at);
            let (a, b) = tokio::join!(
                stores[0].begin_remediation_limited(&ra, &fences[0].1, &l),
                stores[1].begin_remediation_limited(&rb, &fences[1].1, &l),
            );
            let won = [&a, &b].iter().filter(|r| r.is_ok()).count();
            let limit = [&a, &b]
                .iter()
                .filter(|r| matches!(r, Err(StoreError::Limit { .. })))
                .count();
            let want = usize::from(round == 0);
            assert_eq!(
                (won, limit),
                (want, 2 - want),
                "window {window} round {round}: {a:?} {b:?}"
            );
            if round == 0 {
                winner = Some(match (a, b) {
                    (Ok(id), _) => (0, ra, id, at),
                    (_, Ok(id)) => (1, rb, id, at),
                    _ => unreachable!("one won"),
                });
            }
        }
    }
    // A retry of the intent already written (after a timeout) is returned,
    // not refused by the token it took itself.
    let (i, rec, id, at) = winner.expect("a winner");
    let again = stores[i]
        .begin_remediation_limited(&rec, &fences[i].1, &limits(at))
        .await
        .expect("the same intent again");
    assert_eq!(again, id);
    let rows = stores[0]
        .remediations_since(PROVIDER, Timestamp(0))
        .await
        .expect("rows");
    assert_eq!(rows.len() as u64, WINDOWS, "{rows:?}");
}

/// The HTTP API of a replica on one of several: every session names the
/// replica that watches it, the detail says who answered, `/readyz` the
/// shards held, and an admin command for another replica's session is
/// refused with 421 naming the owner (never carried out as its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_names_each_sessions_owner_and_sends_commands_to_it() {
    use wa_watchdog::config::{Secret, SecretSource};
    use wa_watchdog::http::{self, HttpState};

    let names = fleet("h", 12);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (_clock, _sim, rs) = pair(&refs, &Settings::default()).await;
    let owner = owners(&rs);
    let token = "admin-token-for-the-test";
    let mut servers = Vec::new();
    for (i, r) in rs.iter().enumerate() {
        let (handle, _rx) = wa_watchdog::scheduler::command::channel(1);
        let state = HttpState {
            store: r.store.clone(),
            metrics: r.metrics.clone(),
            heartbeat: Default::default(),
            heartbeat_max_age: Duration::from_secs(60),
            handle,
            clock: r.clock.clone(),
            admin_token: Some(Secret::new(token, SecretSource::Inline)),
            config_path: r.dir.path().join("config.toml"),
            webhooks: None,
            replica: Some(format!("replica-{i}")),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        servers.push((addr, stop, task, _rx));
    }
    let client = reqwest::Client::new();
    let get = |addr: std::net::SocketAddr, path: &str| {
        let req = client.get(format!("http://{addr}{path}"));
        async move {
            let r = req.send().await.expect("get");
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.expect("json"))
        }
    };
    // Both list all 12 (the store is shared), each with its owner.
    for (addr, ..) in &servers {
        let (status, list) = get(*addr, "/api/v1/sessions").await;
        assert_eq!(status, 200);
        let list = list.as_array().expect("array").clone();
        assert_eq!(list.len(), 12);
        for s in &list {
            let name = s["session"].as_str().expect("name");
            assert_eq!(
                s["owner"],
                serde_json::json!(format!("replica-{}", owner[name])),
                "{s}"
            );
        }
    }
    let (status, ready) = get(servers[0].0, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["replica"], "replica-0");
    assert_eq!(
        ready["shards_owned"],
        serde_json::json!(rs[0].scheduler.shards_owned().expect("replica"))
    );
    // A session of replica-1, asked of replica-0.
    let theirs = owner
        .iter()
        .find(|(_, o)| **o == 1)
        .map(|(s, _)| s.clone())
        .expect("replica-1 watches one");
    let (status, detail) = get(servers[0].0, &format!("/api/v1/sessions/waha/{theirs}")).await;
    assert_eq!(status, 200);
    assert_eq!(detail["owner"], "replica-1");
    assert_eq!(detail["answered_by"], "replica-0");
    let post = client
        .post(format!(
            "http://{}/api/v1/sessions/waha/{theirs}/pause",
            servers[0].0
        ))
        .bearer_auth(token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(post.status().as_u16(), 421);
    let body: serde_json::Value = post.json().await.expect("json");
    let error = body["error"].as_str().expect("error");
    assert!(error.contains("replica \"replica-1\""), "{error}");
    for (_, stop, task, _rx) in servers {
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }
}

/// The probe rollups on PostgreSQL 15 (Debian 12's): every subquery in FROM
/// needs an alias there (SQLite and PostgreSQL 16 do without).
#[tokio::test]
async fn probe_rollups_run_on_postgresql() {
    let url = common::postgres::fresh_database().await;
    let store = Store::open_postgres(&url).await.expect("open");
    let now = Timestamp(1_800_000_000_000);
    store
        .save_session(&SessionRecord::new(PROVIDER, "s1", "healthy", now))
        .await
        .expect("save");
    store
        .roll_up_probes(now, now.minus(Duration::from_secs(3600)))
        .await
        .expect("roll up");
}
