//! One replica among several on a shared PostgreSQL store: the lease round
//! and what changes hands with a shard.
//!
//! Only sessions in shards this replica holds are in memory and scheduled;
//! the rules of a round are `crate::lease::plan` (pure). A shard gained is
//! restored from the store exactly as a daemon restart restores (stored
//! schedule, backoff, counts, restart history, intents written after the
//! last save, a restart in flight followed up, not repeated:
//! `persist.rs`); a shard lost is dropped from memory without a write (its
//! new owner is the writer now; results of jobs still in flight for it are
//! dropped, like those of a retired session).
//!
//! Safety against a paused or partitioned replica, twice over: locally, a
//! replica that has not renewed within its lease time (measured on the
//! monotonic clock, which keeps running through SIGSTOP) drops every shard
//! before it starts anything else; and in the database, every restart
//! intent is written in the transaction that checks the shard's lease
//! token (`Store::begin_remediation_fenced`).
//!
//! Provider-wide rules hold over the whole provider, not one replica's
//! share of it: before an input that may start a restart, the provider's
//! restarts over every replica are read from the store into the guard
//! (`ProviderGuard::shared`), so the machine waits for a slot or a token
//! another replica holds; the intent's transaction then counts them again
//! under a per-provider lock (`Store::begin_remediation_limited`), so two
//! replicas racing for the last slot cannot both win (the loser's call
//! waits, its intent written again every `INTENT_RETRY`). The outage rule
//! adds the other replicas' session counts, published with every lease
//! round (`Store::publish_counts`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::Scheduler;
use crate::health::{self, Remote};
use crate::lease::{self, shard_of};
use crate::machine::Input;
use crate::outcome::Outcome;
use crate::store::{Fence, Held, LeaseSnapshot, Limits, NewRemediation, StoreError};

/// One replica's leases.
#[derive(Debug)]
pub(super) struct ReplicaRt {
    /// `daemon.replica`: unique among the replicas.
    pub(super) name: String,
    /// `daemon.lease_ttl`.
    ttl: Duration,
    /// Shards held, ascending, with the tokens they were claimed with.
    held: Vec<Held>,
    /// Held shards count only until then (monotonic): the last successful
    /// round's start plus the lease time, less a safety margin.
    valid_until: Instant,
    next_round: Instant,
    /// The other live replicas' session counts per provider (the outage
    /// rule's input), as of the last round.
    others: HashMap<String, Remote>,
    /// Intent keys refused by a provider-wide limit: nothing was written,
    /// so the retry is a new intent, started when it is written.
    refused: HashSet<String>,
}

impl ReplicaRt {
    pub(super) fn new(name: String, ttl: Duration) -> ReplicaRt {
        let now = Instant::now();
        ReplicaRt {
            name,
            ttl,
            held: Vec::new(),
            valid_until: now,
            next_round: now,
            others: HashMap::new(),
            refused: HashSet::new(),
        }
    }

    /// How often the round runs: a third of the lease, so one failed round
    /// does not lose the lease.
    fn period(&self) -> Duration {
        self.ttl / 3
    }

    fn token(&self, shard: u32) -> Option<i64> {
        if Instant::now() >= self.valid_until {
            return None;
        }
        self.held
            .binary_search_by_key(&shard, |h| h.shard)
            .ok()
            .map(|i| self.held[i].token)
    }

    pub(super) fn shards_owned(&self) -> usize {
        self.held.len()
    }

    /// When the next round is due (the loop wakes for it).
    pub(super) fn next_round(&self) -> Instant {
        self.next_round
    }
}

/// Slack after another replica's lease runs out before the round that
/// claims it: the snapshot's `now` was read a little after the round
/// started, so the expiry falls a little later on this replica's clock. A
/// round that comes too early claims nothing and waits again (the next
/// snapshot gives the rest).
const TAKEOVER_SLACK: Duration = Duration::from_millis(20);

/// How long after this round started another replica's lease runs out
/// (the soonest one; `None` if none is held by another): when that is
/// sooner than a round period, the round after is due then, not up to a
/// period later, so a dead replica's sessions
/// move within the lease time. Live replicas renew a third into the lease,
/// so their leases never come due this way.
fn takeover_wait(me: &str, snapshot: &LeaseSnapshot) -> Option<Duration> {
    snapshot
        .leases
        .iter()
        .filter(|l| l.owner.as_deref().is_some_and(|o| o != me))
        .filter(|l| l.expires_at > snapshot.now)
        .map(|l| l.expires_at - snapshot.now)
        .min()
        .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)) + TAKEOVER_SLACK)
}

impl Scheduler {
    /// Whether this process works on `session` of provider `p`: always
    /// without replicas, else when its shard is held.
    pub(super) fn owns(&self, p: usize, session: &str) -> bool {
        match &self.replica {
            None => true,
            Some(r) => r
                .token(shard_of(&self.providers[p].cfg.name, session))
                .is_some(),
        }
    }

    /// The fence a restart intent of `session` must pass; `None` without
    /// replicas (or when the shard is not held: the write is refused then).
    pub(super) fn fence(&self, p: usize, session: &str) -> Option<Fence> {
        let r = self.replica.as_ref()?;
        let shard = shard_of(&self.providers[p].cfg.name, session);
        Some(Fence {
            owner: r.name.clone(),
            shard,
            token: r.token(shard).unwrap_or(-1),
        })
    }

    /// Writes a restart intent: fenced by the shard's lease on a shared
    /// store. A refused fence drops the shard at once (no more writes for
    /// its sessions) and hands its sessions off at the next turn.
    pub(super) async fn write_intent(
        &mut self,
        p: usize,
        session: &str,
        rec: &NewRemediation,
    ) -> Result<i64, StoreError> {
        let Some(fence) = self.fence(p, session) else {
            return self.begin_intent(rec).await;
        };
        let now = self.clock.now();
        // The caller keeps this key for its retries (`pending_intent`).
        let key = rec.intent_key.clone();
        let refused_before = self
            .replica
            .as_mut()
            .is_some_and(|r| r.refused.remove(&rec.intent_key));
        let fresh;
        let rec = if refused_before {
            fresh = NewRemediation {
                started_at: now,
                intent_key: NewRemediation::new_key(&rec.provider, &rec.session, now),
                ..rec.clone()
            };
            &fresh
        } else {
            rec
        };
        let policy = &self.providers[p].cfg.policy;
        let limits = Limits {
            now,
            max_concurrent: policy.max_concurrent_restarts,
            in_flight_for: policy.restart_timeout,
            budget: (rec.reason != "operator").then_some(policy.restart_budget),
            budget_window: policy.restart_budget_window,
        };
        // The fenced intent is its own transaction (it locks the lease row):
        // what was queued before it is committed first, in order.
        self.writer.flush().await;
        let result = self
            .store
            .begin_remediation_limited(rec, &fence, &limits)
            .await;
        if let Err(StoreError::Limit { what, .. }) = &result {
            tracing::warn!(
                provider = %self.providers[p].cfg.name,
                session,
                limit = what,
                "restart call waits: another replica took the provider's last restart slot or budget token"
            );
            if let Some(r) = &mut self.replica {
                r.refused.insert(key);
            }
        }
        if let Err(StoreError::Fenced { shard }) = &result {
            tracing::warn!(
                provider = %self.providers[p].cfg.name,
                session,
                shard,
                "restart not made: this replica lost the session's shard"
            );
            if let Some(r) = &mut self.replica {
                r.held.retain(|h| h.shard != *shard);
            }
            self.fenced.push(*shard);
        }
        result
    }

    /// The other replicas' counts of provider `p` (nothing without replicas).
    pub(super) fn others(&self, p: usize) -> Remote {
        self.replica
            .as_ref()
            .and_then(|r| r.others.get(&self.providers[p].cfg.name).copied())
            .unwrap_or_default()
    }

    /// Before an input that may start a restart: reads the provider's
    /// restarts over every replica into its guard. Nothing without replicas,
    /// nor for an input that cannot lead to a restart (a delivered canary,
    /// a pause). A failed read keeps the last view (the intent's
    /// transaction counts again anyway).
    pub(super) async fn refresh_shared(
        &mut self,
        p: usize,
        name: &str,
        input: &Input,
        now: crate::clock::Timestamp,
    ) {
        if self.replica.is_none() || !self.providers[p].sessions.contains_key(name) {
            return;
        }
        if matches!(
            input,
            Input::Probe(Outcome::Delivered)
                | Input::Pause { .. }
                | Input::Resume
                | Input::NeedsPairing { .. }
                | Input::Received
        ) {
            return;
        }
        let (provider, policy) = {
            let pr = &self.providers[p];
            (pr.cfg.name.clone(), pr.cfg.policy.clone())
        };
        match self
            .store
            .shared_use(
                &provider,
                now,
                policy.restart_timeout,
                policy.restart_budget_window,
            )
            .await
        {
            Ok(shared) => self.providers[p].guard.shared = shared,
            Err(e) => {
                tracing::warn!(%provider, error = %e, "cannot read the restarts of the other replicas")
            }
        }
    }

    /// Publishes this replica's session counts per provider and reads the
    /// others' (the outage rule's input), then re-evaluates the rule.
    async fn exchange_counts(&mut self) {
        let Some(r) = &self.replica else { return };
        let (name, ttl) = (r.name.clone(), r.ttl);
        let mine: Vec<(String, Remote)> = self
            .providers
            .ids()
            .into_iter()
            .map(|p| {
                let pr = &self.providers[p];
                let c = health::outage(pr.sessions.counts(), &pr.cfg.policy);
                (
                    pr.cfg.name.clone(),
                    Remote {
                        total: c.total,
                        failing: c.failing,
                    },
                )
            })
            .collect();
        match self.store.publish_counts(&name, ttl, &mine).await {
            Ok(others) => {
                if let Some(r) = &mut self.replica {
                    r.others = others.into_iter().collect();
                }
            }
            Err(e) => {
                tracing::warn!(replica = %name, error = %e, "cannot exchange session counts");
                return;
            }
        }
        let now = self.clock.now();
        for p in self.providers.ids() {
            self.update_outage_now(p, now);
        }
    }

    /// Starts the replica at build: gives up leases an earlier process of
    /// the same name left behind, then claims its first shards.
    pub(super) async fn join(&mut self) {
        let Some(name) = self.replica.as_ref().map(|r| r.name.clone()) else {
            return;
        };
        if let Err(e) = self.store.lease_leave(&name).await {
            tracing::warn!(replica = %name, error = %e, "cannot clear leases of an earlier run");
        }
        self.lease_round(false).await;
    }

    /// Runs the lease round when due, and drops every shard first if the
    /// lease may have run out (a stalled or frozen process, an unreachable
    /// database). Called before anything due is started.
    pub(super) async fn lease_tick(&mut self) {
        if !self.fenced.is_empty() {
            let fenced = std::mem::take(&mut self.fenced);
            self.hand_off(&fenced);
        }
        let Some(r) = &self.replica else { return };
        let now = Instant::now();
        if now >= r.valid_until && !r.held.is_empty() {
            tracing::warn!(
                replica = %r.name,
                shards = r.held.len(),
                "lease not renewed in time; dropping every shard"
            );
            let all: Vec<u32> = r.held.iter().map(|h| h.shard).collect();
            self.hand_off(&all);
            if let Some(r) = &mut self.replica {
                r.held.clear();
            }
            self.metrics.set_shards_owned(0);
        }
        if self.replica.as_ref().is_some_and(|r| now >= r.next_round) {
            self.lease_round(true).await;
        }
    }

    /// One round: heartbeat and snapshot, the pure plan, renew/release/claim;
    /// then shards lost are dropped and shards gained restored.
    async fn lease_round(&mut self, adopt: bool) {
        let Some(r) = &mut self.replica else { return };
        let started = Instant::now();
        r.next_round = started + r.period();
        let (name, ttl, held) = (r.name.clone(), r.ttl, r.held.clone());
        let snapshot = match self.store.lease_snapshot(&name, ttl).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(replica = %name, error = %e, "lease round failed");
                self.metrics.lease_renew_failed();
                return;
            }
        };
        if let (Some(r), Some(wait)) = (&mut self.replica, takeover_wait(&name, &snapshot)) {
            r.next_round = r.next_round.min(started + wait);
        }
        let plan = lease::plan(&name, &snapshot.leases, snapshot.live.len(), snapshot.now);
        let now_held = match self
            .store
            .lease_round(&name, ttl, &held, &plan.release, &plan.claim)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(replica = %name, error = %e, "lease round failed");
                self.metrics.lease_renew_failed();
                return;
            }
        };
        let had = |h: &Held| held.iter().any(|o| o == h);
        let lost: Vec<u32> = held
            .iter()
            .filter(|h| !now_held.iter().any(|n| n == *h))
            .map(|h| h.shard)
            .collect();
        let gained: Vec<u32> = now_held
            .iter()
            .filter(|h| !had(h))
            .map(|h| h.shard)
            .collect();
        let renewed_lost = held.len() - (now_held.len() - gained.len());
        let released = plan.release.len();
        if renewed_lost > released {
            // Held shards that could not be renewed: someone took them over.
            self.metrics.lease_renew_failed();
        }
        if let Some(r) = &mut self.replica {
            r.held = now_held;
            // The database set expiry = its now + ttl, after `started`: a
            // margin of a tenth covers clocks that run at different rates.
            r.valid_until = started + ttl - ttl / 10;
        }
        if !lost.is_empty() || !gained.is_empty() {
            tracing::info!(
                replica = %name,
                lost = lost.len(),
                gained = gained.len(),
                owned = self.replica.as_ref().map_or(0, ReplicaRt::shards_owned),
                live_replicas = snapshot.live.len(),
                "shards changed hands"
            );
        }
        self.hand_off(&lost);
        if adopt && !gained.is_empty() {
            self.adopt().await;
        }
        self.metrics
            .set_shards_owned(self.replica.as_ref().map_or(0, ReplicaRt::shards_owned));
        self.exchange_counts().await;
    }

    /// Drops the sessions of `shards` from memory (their new owner writes
    /// them from now on): restart slots and probe slots given back, series
    /// removed (the owner exports them), no store write, no event.
    fn hand_off(&mut self, shards: &[u32]) {
        if shards.is_empty() {
            return;
        }
        for p in self.providers.ids() {
            let provider = self.providers[p].cfg.name.clone();
            let names: Vec<String> = self.providers[p]
                .sessions
                .keys()
                .filter(|n| shards.contains(&shard_of(&provider, n)))
                .map(|n| n.to_string())
                .collect();
            let pr = &mut self.providers[p];
            for name in names {
                let Some(s) = pr.sessions.remove(&name) else {
                    continue;
                };
                if s.machine.persisted.state.holds_restart_slot() {
                    pr.guard.release();
                }
                if s.in_flight && s.probe_slot {
                    pr.probes_in_flight = pr.probes_in_flight.saturating_sub(1);
                }
                self.metrics.retire_session(&provider, &name);
                tracing::debug!(%provider, session = %name, "session handed off");
            }
        }
    }

    /// Restores the sessions of the shards just gained (those not in memory
    /// yet) from the store, provider by provider, the way start-up does.
    async fn adopt(&mut self) {
        let now = self.clock.now();
        let records = match self.store.load_sessions().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the sessions of shards taken over");
                return;
            }
        };
        for p in self.providers.ids() {
            let mine: Vec<_> = records
                .iter()
                .filter(|r| r.provider == self.providers[p].cfg.name)
                .filter(|r| self.owns(p, &r.session))
                .filter(|r| !self.providers[p].sessions.contains_key(&r.session))
                .cloned()
                .collect();
            if let Err(e) = self.restore_provider(p, &mine, now).await {
                tracing::error!(provider = %self.providers[p].cfg.name, error = %e, "cannot restore the sessions of shards taken over");
            }
        }
    }

    /// When the next lease round is due (`None`: not one of several
    /// replicas). The daemon's loop wakes for it.
    pub(super) fn lease_wake(&self) -> Option<Instant> {
        self.replica.as_ref().map(ReplicaRt::next_round)
    }

    /// Runs a lease round now, whatever its schedule (tests drive rounds
    /// this way, like `tick` drives the loop). Nothing without replicas.
    pub async fn renew_leases(&mut self) {
        self.lease_round(true).await;
    }

    /// Gives the shards up at a clean stop, so the other replicas take
    /// over at their next round instead of after the lease time.
    pub async fn leave(&mut self) {
        let Some(r) = &mut self.replica else { return };
        r.held.clear();
        let name = r.name.clone();
        if let Err(e) = self.store.lease_leave(&name).await {
            tracing::warn!(replica = %name, error = %e, "cannot give the leases up");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::Lease;

    fn snapshot(leases: &[(Option<&str>, i64)]) -> LeaseSnapshot {
        LeaseSnapshot {
            now: 1_000,
            live: Vec::new(),
            leases: leases
                .iter()
                .enumerate()
                .map(|(i, &(owner, expires_at))| Lease {
                    shard: u32::try_from(i).unwrap_or(0),
                    owner: owner.map(str::to_string),
                    expires_at,
                    token: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn the_next_round_is_due_when_another_replica_s_lease_runs_out() {
        let s = snapshot(&[
            (Some("me"), 1_100),
            (Some("b"), 5_000),
            (Some("c"), 1_700),
            (None, 0),
            (Some("d"), 900), // already expired: claimed this round
        ]);
        assert_eq!(
            takeover_wait("me", &s),
            Some(Duration::from_millis(700) + TAKEOVER_SLACK)
        );
    }

    #[test]
    fn own_free_and_expired_leases_set_no_wait() {
        let s = snapshot(&[(Some("me"), 1_100), (None, 0), (Some("d"), 1_000)]);
        assert_eq!(takeover_wait("me", &s), None);
    }
}
