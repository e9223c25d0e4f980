//! The scheduler: owns every watched session, decides when each one is due,
//! runs the due steps with bounded concurrency per provider, feeds their
//! results to the pure machine and carries out what it answers (persist,
//! report, schedule the next step).
//!
//! Shape: a background loop around a public single step:
//! [`Scheduler::tick`] runs everything due now until quiet, which is what
//! tests drive with a manual clock; [`Scheduler::run`] is the daemon's loop
//! around the same pieces. Every job is owned by a `JoinSet` of this struct:
//! nothing is detached.
//!
//! Invariants:
//! - a session has at most one job in flight, and a job's result is applied
//!   only if the session's schedule has not been replaced since (`seq`);
//! - the schedule anchors periodic probes on their due time, so slow probes
//!   do not make it drift;
//! - everything the machine decides is written to the store before the next
//!   I/O that depends on it (the intent of a restart before the call).

mod apply;
pub mod command;
mod discovery;
mod evidence;
mod fleet;
mod jobs;
mod maintenance;
mod persist;
mod providers;
mod reload;
mod replica;
mod ring;
mod run;
mod webhooks;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use crate::clock::{Clock, Timestamp};
use crate::config::{Config, ProviderConfig, SessionSelector};
use crate::events::Event;
use crate::health::Health;
use crate::machine::{Action, Machine, Step};
use crate::metrics::Metrics;
use crate::policy::ProviderGuard;
use crate::provider::Provider;
use crate::store::{Store, Writer};
use providers::Providers;

pub use command::{CommandError, CommandRequest, Handle, Refusal, ReloadError};
pub use jobs::{Job, JobDone, JobKey, Output, Owner, Work};
pub use reload::ReloadReport;

/// How often the loop wakes even when nothing is due, so that `/healthz`
/// and systemd's watchdog can tell it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// The resolution of the daemon's loop on the system clock: it wakes on a
/// grid of this step (unix time in multiples of it) and starts together
/// everything due by then, so a periodic probe starts up to this long after
/// its jittered due time (counted in `wa_watchdog_probe_lateness_seconds`).
///
/// Why not wake for each due time: at 20 probes a second each probe then
/// woke the process alone and paid for its own wakeups with cold caches
/// (the timer, two HTTP replies, the writer's commit), 1.2-1.7 ms of CPU
/// per probe; waking four times a second starts about five together and
/// the cost fell to 0.35-0.39 ms (`scripts/bench-blackbox 600 30s`, README
/// "Benchmarks"). A quarter second
/// is invisible next to a canary interval of seconds to minutes, and keeps
/// the p99 lateness well under the one second that means "not keeping up".
/// A manual clock (tests, the simulator) wakes at the exact due time: its
/// time moves only when a test sets it.
pub const WAKE_RESOLUTION: Duration = Duration::from_millis(250);
/// How often old probes are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// First probes of a batch are spread over about one second per session, up
/// to this long (a single new session is probed within a second, not at a
/// random point of the next half minute), and longer only as far as
/// [`FIRST_PROBES_PER_SEC`] needs.
const INITIAL_SPREAD_MAX: Duration = Duration::from_secs(30);
/// The highest rate of first probes when many sessions start together (up
/// to their interval): 100k sessions at 5 m start at ~333/s, their steady
/// rate, not at 3,333/s within 30 s.
const FIRST_PROBES_PER_SEC: f64 = 50.0;
/// How long a restart waits before its intent row is tried again after a
/// failed write (intent before action).
const INTENT_RETRY: Duration = Duration::from_secs(5);

/// Last time the scheduler loop went round (system clock, unix ms); read by
/// `/healthz` and the systemd watchdog.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat(Arc<AtomicI64>);

impl Heartbeat {
    pub fn beat(&self) {
        self.0
            .store(chrono::Utc::now().timestamp_millis(), Ordering::SeqCst);
    }

    /// Time since the last beat; None if it never beat.
    pub fn age(&self) -> Option<Duration> {
        let last = self.0.load(Ordering::SeqCst);
        (last != 0).then(|| {
            let now = chrono::Utc::now().timestamp_millis();
            Duration::from_millis(u64::try_from(now - last).unwrap_or(0))
        })
    }
}

/// A request from outside the loop (HTTP API, operator CLI).
#[derive(Debug)]
pub enum Command {
    Pause {
        provider: String,
        session: String,
        until: Option<Timestamp>,
        reason: String,
    },
    Resume {
        provider: String,
        session: String,
    },
    Restart {
        provider: String,
        session: String,
    },
    /// Apply a new, already validated configuration (SIGHUP); see
    /// [`Scheduler::reload`].
    Reload(Box<Config>),
    /// Evidence about a pending canary's message from outside a look (a
    /// webhook); see [`Scheduler::evidence`]. Never refused: evidence that
    /// does not decide anything is dropped.
    Evidence {
        provider: String,
        session: String,
        message_id: String,
        evidence: crate::confirm::Evidence,
    },
}

/// One watched session.
#[derive(Debug)]
struct SessionRt {
    machine: Machine,
    /// The current schedule; None while paused without expiry.
    next: Option<Step>,
    /// Bumped whenever `next` is replaced; jobs carry the value they ran for.
    seq: u64,
    in_flight: bool,
    /// The job in flight holds one of the provider's probe slots (every
    /// job but a restart call does).
    probe_slot: bool,
    /// A due entry was popped while a job was in flight: re-queue on completion.
    deferred: bool,
    /// Found by discovery (retired when the provider no longer lists it).
    discovered: bool,
    /// Since when and for how many lists in a row discovery has not seen it.
    missing: Option<Missing>,
    /// The open remediation row, while a restart is in progress.
    remediation_id: Option<i64>,
    /// A restart whose intent row could not be written yet: the call waits
    /// until it is (intent before action). Boxed, like the other rarely set
    /// fields: a session carries one pointer for it, not the whole record
    /// (this struct is kept for every session of a fleet).
    pending_intent: Option<Box<crate::store::NewRemediation>>,
    /// A sent canary waiting for its confirmation (`crate::confirm`).
    pending_ack: Option<Box<PendingAck>>,
    /// "Cannot be confirmed" was logged for this session (once, until a
    /// canary is confirmed again).
    unconfirmed_logged: bool,
    /// The ring canary of the probe in flight (None: a self-canary).
    ring_send: Option<Box<ring::RingSend>>,
    /// The chat of the last canary sent (None: its own), for its look.
    canary_chat: Option<String>,
}

impl SessionRt {
    /// A session just added or restored: nothing in flight, nothing pending.
    fn new(machine: Machine, discovered: bool, remediation_id: Option<i64>) -> SessionRt {
        SessionRt {
            machine,
            next: None,
            seq: 0,
            in_flight: false,
            probe_slot: false,
            deferred: false,
            discovered,
            missing: None,
            pending_intent: None,
            remediation_id,
            pending_ack: None,
            unconfirmed_logged: false,
            ring_send: None,
            canary_chat: None,
        }
    }
}

/// A discovered session absent from the provider's recent session lists.
#[derive(Debug, Clone, Copy)]
struct Missing {
    since: Timestamp,
    rounds: u32,
}

/// A sent canary whose outcome is not known yet: the canary for the
/// confirmation verdict, and what the scheduler needs to apply it.
#[derive(Debug, Clone)]
struct PendingAck {
    canary: crate::confirm::Pending,
    /// `Probe` or `Verify`: what the final outcome is fed back as.
    action: Action,
    /// When the probe was due (anchors the next periodic probe).
    due: Timestamp,
    latency: Duration,
}

/// One provider with its sessions.
struct ProviderRt {
    cfg: ProviderConfig,
    client: Provider,
    guard: ProviderGuard,
    sessions: fleet::Sessions,
    /// Due probes waiting for a concurrency slot, oldest first (the name
    /// shared with the session map's key).
    ready: VecDeque<(Arc<str>, u64)>,
    probes_in_flight: usize,
    next_discovery: Option<Timestamp>,
    discovery_in_flight: bool,
    /// The last session list was suspect (see `discovery::suspect_list`).
    list_suspect: bool,
    /// A restart intent could not be written (logged once per episode).
    intent_failing: bool,
    health: Health,
    /// Several of its ring members miss their ring canaries together
    /// (`crate::ring`): an outage like an unreachable provider.
    inbound_outage: bool,
}

impl ProviderRt {
    /// A provider as configured, with no sessions yet.
    fn new(cfg: ProviderConfig, client: Provider, now: Timestamp) -> ProviderRt {
        ProviderRt {
            next_discovery: matches!(cfg.sessions, SessionSelector::All).then_some(now),
            cfg,
            client,
            guard: ProviderGuard::default(),
            sessions: fleet::Sessions::default(),
            ready: VecDeque::new(),
            probes_in_flight: 0,
            discovery_in_flight: false,
            list_suspect: false,
            intent_failing: false,
            health: Health::default(),
            inbound_outage: false,
        }
    }
}

/// A heap entry: session `session` of provider `provider` is due at `at`.
/// The name is the session map's key, shared (a heap holds an entry per
/// session and more: replaced entries stay until they are popped).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Timestamp,
    provider: usize,
    session: Arc<str>,
    seq: u64,
}

pub struct Scheduler {
    clock: Clock,
    store: Store,
    /// Every write goes through it (group commit); reads go to `store`.
    writer: Writer,
    metrics: Arc<Metrics>,
    /// By stable id (`providers.rs`): heap entries and jobs name them by it.
    providers: Providers,
    heap: BinaryHeap<Reverse<Due>>,
    jobs: JoinSet<JobDone>,
    /// Which job task belongs to which provider/session, to recover from a
    /// job that panicked.
    job_owner: HashMap<tokio::task::Id, jobs::Owner>,
    rng: StdRng,
    events: broadcast::Sender<Event>,
    heartbeat: Heartbeat,
    discovery_interval: Duration,
    /// `daemon.retire_after_rounds` and `daemon.retire_after`.
    retire_after_rounds: u32,
    retire_after: Duration,
    retention: Duration,
    next_prune: Timestamp,
    prune_in_flight: bool,
    /// `[[maintenance]]` windows and what they have paused.
    maintenance: maintenance::MaintenanceRt,
    /// Events from the webhook receiver, if one is attached.
    webhooks: Option<tokio::sync::mpsc::Receiver<crate::webhooks::Queued>>,
    /// `[[ring]]` rings (fixed at build; a reload keeps them).
    rings: Vec<ring::RingRt>,
    /// One of several replicas on a shared PostgreSQL store: the shards it
    /// holds (`replica.rs`). `None` on SQLite: this process owns everything.
    replica: Option<replica::ReplicaRt>,
    /// Shards whose fenced write was refused: handed off at the next turn.
    fenced: Vec<u32>,
    /// [`WAKE_RESOLUTION`] on the system clock, zero (exact) on a manual one.
    wake_resolution: Duration,
}

/// How the scheduler is built: the parts that differ between production,
/// the demo and tests.
pub struct Parts {
    pub clock: Clock,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Seed for jitter and nonces; None = from the OS.
    pub seed: Option<u64>,
}

impl Scheduler {
    /// Builds the scheduler from the config and restores every session's
    /// state from the store, so that a daemon restart never restarts a
    /// session early.
    pub async fn build(config: &Config, parts: Parts) -> anyhow::Result<Scheduler> {
        let Parts {
            clock,
            store,
            metrics,
            seed,
        } = parts;
        let now = clock.now();
        let mut providers = Providers::default();
        let mut provider_cfgs = config.providers.clone();
        ring::apply_intervals(&mut provider_cfgs, &config.rings);
        for pc in &provider_cfgs {
            let client = Provider::from_config(pc)
                .map_err(|e| anyhow::anyhow!("provider \"{}\": {e}", pc.name))?;
            providers.add(ProviderRt::new(pc.clone(), client, now));
        }
        let (events, _) = broadcast::channel(4096);
        let rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let replica = (store.backend() == crate::store::Backend::Postgres).then(|| {
            replica::ReplicaRt::new(config.daemon.replica.clone(), config.daemon.lease_ttl)
        });
        let wake_resolution = if clock.is_manual() {
            Duration::ZERO
        } else {
            WAKE_RESOLUTION
        };
        let mut s = Scheduler {
            wake_resolution,
            clock,
            writer: Writer::start(store.clone()),
            store,
            metrics,
            providers,
            heap: BinaryHeap::new(),
            jobs: JoinSet::new(),
            job_owner: HashMap::new(),
            rng,
            events,
            heartbeat: Heartbeat::default(),
            discovery_interval: config.daemon.discovery_interval,
            retire_after_rounds: config.daemon.retire_after_rounds,
            retire_after: config.daemon.retire_after,
            retention: config.daemon.retention,
            next_prune: now,
            prune_in_flight: false,
            maintenance: maintenance::MaintenanceRt::new(config.maintenance.clone(), now),
            webhooks: None,
            rings: config
                .rings
                .iter()
                .map(|r| ring::RingRt::new(r.clone(), now))
                .collect(),
            replica,
            fenced: Vec::new(),
        };
        for r in &config.rings {
            let members: Vec<(String, String)> = r
                .members
                .iter()
                .map(|m| (m.provider.clone(), m.session.clone()))
                .collect();
            s.metrics.add_ring(&r.name, &members);
        }
        for p in s.providers.iter() {
            s.metrics.add_provider(&p.cfg.name);
        }
        s.join().await;
        s.restore().await?;
        s.publish_budgets(now);
        s.beat();
        Ok(s)
    }

    /// Shards this replica holds (`None`: not one of several replicas).
    pub fn shards_owned(&self) -> Option<usize> {
        self.replica.as_ref().map(replica::ReplicaRt::shards_owned)
    }

    /// A receiver of everything that happens from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat.clone()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// `(provider, session, state)` of every watched session.
    pub fn sessions(&self) -> Vec<(String, String, crate::machine::State)> {
        self.providers
            .iter()
            .flat_map(|p| {
                p.sessions.iter().map(|(name, s)| {
                    (
                        p.cfg.name.clone(),
                        name.to_string(),
                        s.machine.persisted.state,
                    )
                })
            })
            .collect()
    }

    /// The machine of one session (for tests and the API).
    pub fn machine(&self, provider: &str, session: &str) -> Option<&Machine> {
        self.providers[self.slot(provider)?]
            .sessions
            .get(session)
            .map(|s| &s.machine)
    }

    /// The next step of one session.
    pub fn next_step(&self, provider: &str, session: &str) -> Option<Step> {
        self.providers[self.slot(provider)?]
            .sessions
            .get(session)?
            .next
    }

    /// Counts of sessions per state, for a one-line summary.
    pub fn summary(&self) -> BTreeMap<crate::machine::State, usize> {
        let mut counts = BTreeMap::new();
        for p in self.providers.iter() {
            for (state, n) in p.sessions.counts().iter().filter(|(_, n)| *n > 0) {
                *counts.entry(state).or_insert(0) += n;
            }
        }
        counts
    }

    /// When the next thing is due, if anything is scheduled.
    pub fn next_due(&self) -> Option<Timestamp> {
        let heap = self.heap.peek().map(|Reverse(d)| d.at);
        let discovery = self
            .providers
            .iter()
            .filter(|p| !p.discovery_in_flight)
            .filter_map(|p| p.next_discovery)
            .min();
        let prune = (!self.prune_in_flight).then_some(self.next_prune);
        let maintenance = self.maintenance.next_check();
        let ring = self.ring_next_due();
        [heap, discovery, prune, maintenance, ring]
            .into_iter()
            .flatten()
            .min()
    }

    /// When the loop wakes for something due at `due`: the next point of the
    /// [`WAKE_RESOLUTION`] grid at or after it (exactly `due` on a manual
    /// clock).
    fn wake_at(&self, due: Timestamp) -> Timestamp {
        round_up(due, self.wake_resolution)
    }

    /// What the loop starts when it goes round at `now`: the session steps
    /// due by the last grid point (`now` itself on a manual clock). A
    /// wake between grid points (a heartbeat, a finished job) leaves the
    /// rest for the next grid point, so steps start together there and
    /// not one by one.
    fn start_by(&self, now: Timestamp) -> Timestamp {
        round_down(now, self.wake_resolution)
    }

    /// Sets the loop's resolution (see [`WAKE_RESOLUTION`]); for tests
    /// that check the grid on a manual clock.
    pub fn set_wake_resolution(&mut self, resolution: Duration) {
        self.wake_resolution = resolution;
    }

    /// Replaces a session's schedule.
    fn schedule(&mut self, p: usize, name: &str, step: Option<Step>) {
        let Some((session, s)) = self.providers[p].sessions.get_mut_with_name(name) else {
            return;
        };
        s.seq += 1;
        s.next = step;
        if let Some(step) = step {
            self.heap.push(Reverse(Due {
                at: step.at,
                provider: p,
                session,
                seq: s.seq,
            }));
        }
    }

    /// `base` randomised by ± `jitter`.
    fn jittered(&mut self, base: Duration, jitter: f64) -> Duration {
        if jitter <= 0.0 {
            return base;
        }
        let f = 1.0 + jitter * self.rng.random_range(-1.0..=1.0);
        base.mul_f64(f.max(0.0))
    }

    /// When a newly watched session gets its first probe: spread over the
    /// first part of its interval so many sessions do not all start at once.
    /// `batch` sessions start together (a discovery, a restore): about a
    /// second per session up to [`INITIAL_SPREAD_MAX`], at least long enough
    /// to keep their first probes at no more than [`FIRST_PROBES_PER_SEC`],
    /// and never longer than the interval, so a large fleet starts at its
    /// steady rate instead of a burst and a single session starts at once.
    fn first_probe_at(&mut self, now: Timestamp, interval: Duration, batch: usize) -> Timestamp {
        let spread = interval.min(first_probe_spread(batch));
        now.plus(spread.mul_f64(self.rng.random_range(0.0..1.0)))
    }
}

/// The window a batch of `batch` first probes is spread over before the
/// interval caps it (see [`Scheduler::first_probe_at`]).
fn first_probe_spread(batch: usize) -> Duration {
    let one_per_sec = Duration::from_secs(batch.max(1) as u64).min(INITIAL_SPREAD_MAX);
    let paced = Duration::from_secs_f64(batch as f64 / FIRST_PROBES_PER_SEC);
    one_per_sec.max(paced)
}

/// `t` rounded down to a multiple of `step` (unix milliseconds); `t`
/// itself when `step` is under a millisecond or rounding would overflow.
fn round_down(t: Timestamp, step: Duration) -> Timestamp {
    let step = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
    if step <= 1 {
        return t;
    }
    let ms = t.as_millis();
    ms.checked_sub(ms.rem_euclid(step))
        .map_or(t, Timestamp::from_millis)
}

/// `t` rounded up to a multiple of `step` (unix milliseconds); `t` itself
/// when `step` is under a millisecond or rounding would overflow.
fn round_up(t: Timestamp, step: Duration) -> Timestamp {
    let step = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
    if step <= 1 {
        return t;
    }
    let ms = t.as_millis();
    let rem = ms.rem_euclid(step);
    if rem == 0 {
        return t;
    }
    ms.checked_add(step - rem).map_or(t, Timestamp::from_millis)
}

#[cfg(test)]
mod first_probe_tests {
    use super::*;

    #[test]
    fn the_grid_rounds_wakes_up_and_starts_down() {
        let q = Duration::from_millis(250);
        let t = |ms| Timestamp::from_millis(ms);
        assert_eq!(round_up(t(1_000), q), t(1_000));
        assert_eq!(round_up(t(1_001), q), t(1_250));
        assert_eq!(round_up(t(1_249), q), t(1_250));
        assert_eq!(round_up(t(-1), q), t(0));
        assert_eq!(round_up(t(-251), q), t(-250));
        assert_eq!(round_up(t(1_001), Duration::ZERO), t(1_001));
        assert_eq!(round_up(t(1_001), Duration::from_micros(900)), t(1_001));
        assert_eq!(round_up(t(i64::MAX), q), t(i64::MAX));
        for ms in -1_000..2_000 {
            let w = round_up(t(ms), q).as_millis();
            assert!(w >= ms && w - ms < 250 && w % 250 == 0, "{ms} -> {w}");
            let b = round_down(t(ms), q).as_millis();
            assert!(b <= ms && ms - b < 250 && b % 250 == 0, "{ms} -> {b}");
        }
        assert_eq!(round_down(t(1_249), Duration::ZERO), t(1_249));
        assert_eq!(round_down(t(i64::MIN), q), t(i64::MIN));
    }

    #[test]
    fn a_single_session_starts_within_a_second_and_a_fleet_at_its_paced_rate() {
        assert_eq!(first_probe_spread(0), Duration::from_secs(1));
        assert_eq!(first_probe_spread(1), Duration::from_secs(1));
        assert_eq!(first_probe_spread(10), Duration::from_secs(10));
        assert_eq!(first_probe_spread(600), INITIAL_SPREAD_MAX);
        assert_eq!(first_probe_spread(2_000), Duration::from_secs(40));
        assert_eq!(first_probe_spread(100_000), Duration::from_secs(2_000));
    }
}
