//! The scheduler's loop and its single step: [`Scheduler::tick`] and
//! [`Scheduler::advance`] for tests on a manual clock, [`Scheduler::run`] for
//! the daemon (with the shutdown drain), operator commands, and starting
//! what is due as owned jobs and taking their results back.
//!
//! What it owns: the order of one round (maintenance windows, the due heap,
//! each provider's ready queue within `max_concurrent_probes`, discovery,
//! pruning) and the bookkeeping of jobs in flight. What it must not do:
//! decide policy (the machine does), detach a task, or leave a session
//! in flight after its job panicked.

use std::cmp::Reverse;
use std::time::Duration;

use rand::Rng;

use super::jobs::{self, Job, JobDone, JobKey, Owner, Work};
use super::{Command, HEARTBEAT, Refusal, Scheduler};
use crate::clock::Timestamp;
use crate::config::ChatTarget;
use crate::machine::{Action, Input, Step};

impl Scheduler {
    /// Runs everything that is due now, and everything that becomes due now
    /// as a consequence, until nothing is in flight. The single step of the
    /// loop, for tests that drive a manual clock.
    pub async fn tick(&mut self) {
        loop {
            self.drain_webhooks().await;
            self.start_due().await;
            match self.jobs.join_next_with_id().await {
                None => break,
                Some(done) => self.on_joined(done).await,
            }
        }
        // What this round wrote is committed before the caller looks: a
        // test (or benchmark) reads the store right after a tick.
        self.writer.flush().await;
        self.beat();
    }

    /// Records that the loop is alive (for `/healthz`, systemd and metrics).
    pub(super) fn beat(&self) {
        let now = self.clock.now();
        self.heartbeat.beat();
        self.metrics.scheduler_ticked(now);
        self.metrics
            .sync_store_failures(&self.store.write_status().failures);
        // `wa_watchdog_restart_budget_remaining`: tokens come back as the
        // window slides, so it is refreshed on every turn of the loop, not
        // only when a restart takes one.
        for pr in self.providers.iter() {
            self.metrics
                .set_restart_budget(&pr.cfg.name, pr.guard.budget_remaining(&pr.cfg.policy, now));
        }
    }

    /// Moves a manual clock forward to `now + by`, in steps of `step`, running
    /// everything due at each step (tests and benchmarks). Steps that would
    /// land before the next due time jump straight to it, so idle stretches
    /// cost nothing; what falls due within one step runs together, like a
    /// scheduler with that resolution.
    pub async fn advance(&mut self, by: Duration, step: Duration) {
        let end = self.clock.now().plus(by);
        loop {
            self.tick().await;
            let now = self.clock.now();
            if now >= end {
                break;
            }
            let stepped = now.plus(step.max(Duration::from_millis(1)));
            let next = match self.next_due() {
                Some(due) if due > stepped => due,
                _ => stepped,
            };
            self.clock.set(next.min(end));
        }
    }

    /// The daemon's loop: runs until `shutdown` resolves, then lets in-flight
    /// jobs finish within `grace`, applies their results and commits every
    /// queued write.
    pub async fn run(
        &mut self,
        shutdown: impl std::future::Future<Output = ()>,
        mut commands: tokio::sync::mpsc::Receiver<super::CommandRequest>,
        grace: Duration,
        on_beat: impl Fn(&Scheduler),
    ) {
        tokio::pin!(shutdown);
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands_open = true;
        loop {
            self.start_due().await;
            let wake = self.next_due().map(|due| self.wake_at(due));
            // A lease round is due on the monotonic clock (`replica.rs`).
            let lease_wake = self.lease_wake().map(tokio::time::Instant::from_std);
            let clock = self.clock.clone();
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                cmd = commands.recv(), if commands_open => match cmd {
                    Some((cmd, reply)) => {
                        let result = self.command(cmd).await;
                        // The operator reads what the command did right
                        // after it answers: commit its writes first.
                        self.writer.flush().await;
                        let _ = reply.send(result);
                    }
                    None => commands_open = false,
                },
                Some(done) = self.jobs.join_next_with_id(), if !self.jobs.is_empty() => {
                    self.on_joined(done).await;
                }
                Some(event) = next_webhook(&mut self.webhooks) => {
                    self.on_webhook(event).await;
                }
                _ = async {
                    match wake {
                        Some(at) => clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = async {
                    match lease_wake {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = beat.tick() => {
                    self.beat();
                    on_beat(self);
                }
            }
        }
        self.drain(grace).await;
        // Nothing queued is lost on SIGTERM: the writer commits its queue
        // before the store is closed.
        self.writer.close().await;
    }

    /// Waits up to `grace` for jobs in flight and applies their results;
    /// aborts the rest.
    async fn drain(&mut self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while !self.jobs.is_empty() {
            match tokio::time::timeout_at(deadline, self.jobs.join_next_with_id()).await {
                Ok(Some(done)) => self.on_joined(done).await,
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        jobs = self.jobs.len(),
                        "shutdown grace passed; abandoning jobs still in flight"
                    );
                    self.jobs.shutdown().await;
                    break;
                }
            }
        }
    }

    /// Carries out an operator command.
    pub async fn command(&mut self, cmd: Command) -> Result<(), Refusal> {
        self.lease_tick().await;
        let (provider, session, input) = match cmd {
            Command::Pause {
                provider,
                session,
                until,
                reason,
            } => (provider, session, Input::Pause { until, reason }),
            Command::Resume { provider, session } => (provider, session, Input::Resume),
            Command::Restart { provider, session } => (provider, session, Input::OperatorRestart),
            Command::Evidence {
                provider,
                session,
                message_id,
                evidence,
            } => {
                self.evidence(&provider, &session, &message_id, evidence)
                    .await;
                return Ok(());
            }
            Command::Reload(config) => {
                let report = self.reload(&config).await.map_err(Refusal::Reload)?;
                tracing::info!(changes = %report, "configuration reloaded");
                return Ok(());
            }
        };
        let p = self
            .slot(&provider)
            .ok_or_else(|| Refusal::NoProvider(provider.clone()))?;
        if !self.providers[p].sessions.contains_key(&session) {
            return Err(Refusal::NoSession { provider, session });
        }
        let now = self.clock.now();
        let fx = self.apply_input(p, &session, input, now).await;
        match fx.rejected {
            Some(why) => Err(Refusal::Machine(why)),
            None => Ok(()),
        }
    }

    /// Pops everything due and starts the jobs that may start.
    async fn start_due(&mut self) {
        // Leases first: a replica whose lease may have run out (it was
        // frozen) drops its shards before it starts anything.
        self.lease_tick().await;
        let now = self.clock.now();
        self.publish_budgets(now);
        self.ring_round(now).await;
        // Windows first, so a session about to be paused is not probed.
        if self.maintenance.next_check().is_some_and(|at| at <= now) {
            self.run_maintenance(now).await;
        }
        let start_by = self.start_by(now);
        while let Some(Reverse(top)) = self.heap.peek() {
            if top.at > start_by {
                break;
            }
            let Some(Reverse(due)) = self.heap.pop() else {
                break;
            };
            // A heap entry outlives a provider removed by a reload.
            let Some(s) = self
                .providers
                .get_mut(due.provider)
                .and_then(|pr| pr.sessions.get_mut(&due.session))
            else {
                continue;
            };
            if s.seq != due.seq {
                continue; // replaced since
            }
            if s.in_flight {
                s.deferred = true;
                continue;
            }
            let action = s.next.map(|st| st.action).unwrap_or(Action::Probe);
            match action {
                Action::Ring => {}
                Action::Resume => {
                    self.apply_input(due.provider, &due.session, Input::Resume, due.at)
                        .await;
                }
                Action::Restart => self.start_restart(due.provider, &due.session, due.at).await,
                Action::Probe | Action::Verify | Action::PollStatus | Action::ConfirmAck => {
                    self.providers[due.provider]
                        .ready
                        .push_back((due.session, due.seq));
                }
            }
        }
        for p in self.providers.ids() {
            while self.providers[p].probes_in_flight < self.providers[p].cfg.max_concurrent_probes {
                let Some((name, seq)) = self.providers[p].ready.pop_front() else {
                    break;
                };
                let Some(s) = self.providers[p].sessions.get(&name) else {
                    continue;
                };
                if s.seq != seq || s.in_flight {
                    continue;
                }
                let due = s.next.map(|st| st.at).unwrap_or(now);
                self.spawn_session_job(p, &name, due);
            }
            let pr = &self.providers[p];
            if !pr.discovery_in_flight && pr.next_discovery.is_some_and(|at| at <= now) {
                self.spawn_discovery(p);
            }
        }
        if !self.prune_in_flight && self.next_prune <= now {
            self.prune_in_flight = true;
            self.spawn(Job::Prune {
                now,
                before: now.minus(self.retention),
            });
        }
    }

    pub(super) fn spawn(&mut self, job: Job) {
        let owner = job.owner();
        let handle = self
            .jobs
            .spawn(jobs::run(job, self.store.clone(), self.clock.clone()));
        self.job_owner.insert(handle.id(), owner);
    }

    /// A due restart call: made only once its intent row is written. An
    /// intent that could not be written before is written now; if that
    /// fails again the call waits another [`super::INTENT_RETRY`].
    async fn start_restart(&mut self, p: usize, name: &str, due: Timestamp) {
        let pending = self.providers[p]
            .sessions
            .get(name)
            .and_then(|s| s.pending_intent.clone());
        if let Some(rec) = pending {
            match self.write_intent(p, name, &rec).await {
                Ok(id) => {
                    let pr = &mut self.providers[p];
                    if pr.intent_failing {
                        tracing::info!(provider = %pr.cfg.name, session = name, "restart intent recorded again");
                    }
                    pr.intent_failing = false;
                    if let Some(s) = pr.sessions.get_mut(name) {
                        s.pending_intent = None;
                        s.remediation_id = Some(id);
                    }
                }
                Err(e) => {
                    self.intent_failed(p, name, &e);
                    let at = self.clock.now().plus(super::INTENT_RETRY);
                    self.schedule(
                        p,
                        name,
                        Some(Step {
                            at,
                            action: Action::Restart,
                        }),
                    );
                    return;
                }
            }
        } else {
            let pr = &mut self.providers[p];
            if pr.intent_failing {
                tracing::info!(provider = %pr.cfg.name, "restart intents recorded again");
            }
            pr.intent_failing = false;
        }
        self.spawn_session_job(p, name, due);
    }

    fn spawn_session_job(&mut self, p: usize, name: &str, due: Timestamp) {
        let nonce = format!("{:08x}", self.rng.random::<u32>());
        let probing = self.providers[p]
            .sessions
            .get(name)
            .and_then(|s| s.next)
            .is_some_and(|st| matches!(st.action, Action::Probe | Action::Verify));
        // A ring member's canary goes to the next member's own number.
        let ring = if probing {
            self.ring_target(p, name)
        } else {
            None
        };
        let pr = &mut self.providers[p];
        let Some(s) = pr.sessions.get_mut(name) else {
            return;
        };
        let Some(step) = s.next else { return };
        if step.action == Action::Probe {
            // Read by the fleet benchmark (p50/p99 lateness) and by anyone
            // asking whether the daemon keeps up with its fleet.
            let late = self.clock.now().since(due);
            self.metrics.observe_lateness(&pr.cfg.name, late);
        }
        let timeout = pr.cfg.canary.timeout;
        let work = match step.action {
            Action::Probe | Action::Verify => {
                let (chat, text) = match &ring {
                    Some(r) => (Some(r.chat.clone()), r.text.clone()),
                    None => (
                        match pr.cfg.chat_for(name) {
                            ChatTarget::SelfChat => None,
                            ChatTarget::Id(id) => Some(id),
                        },
                        pr.cfg.canary.render_text(&nonce),
                    ),
                };
                s.canary_chat = chat.clone();
                s.ring_send = ring.map(Box::new);
                Work::Probe {
                    chat,
                    text,
                    timeout,
                    confirm: pr.cfg.canary.confirm,
                }
            }
            Action::PollStatus => Work::Status { timeout },
            Action::ConfirmAck => match &s.pending_ack {
                Some(p) => Work::ConfirmAck {
                    message_id: p.canary.message_id.clone(),
                    chat: s.canary_chat.clone(),
                    timeout,
                },
                None => return,
            },
            // WAHA answers a restart only after stopping (~3 s): the call has
            // its own deadline (policy.restart_call_timeout).
            Action::Restart => Work::Restart {
                timeout: pr.cfg.policy.restart_call_timeout,
            },
            Action::Resume | Action::Ring => return,
        };
        s.in_flight = true;
        s.probe_slot = step.action != Action::Restart;
        if s.probe_slot {
            pr.probes_in_flight += 1;
        }
        let key = JobKey {
            provider: p,
            session: name.to_string(),
            seq: s.seq,
            action: step.action,
            due,
        };
        let client = pr.client.clone();
        self.spawn(Job::Session { key, work, client });
    }

    fn spawn_discovery(&mut self, p: usize) {
        let pr = &mut self.providers[p];
        pr.discovery_in_flight = true;
        let job = Job::Discovery {
            provider: p,
            timeout: pr.cfg.canary.timeout,
            client: pr.client.clone(),
        };
        self.spawn(job);
    }

    async fn on_joined(
        &mut self,
        joined: Result<(tokio::task::Id, JobDone), tokio::task::JoinError>,
    ) {
        // A result that arrives after the lease ran out is dropped with
        // its session (see `replica.rs`).
        self.lease_tick().await;
        match joined {
            Ok((id, done)) => {
                self.job_owner.remove(&id);
                if self.drop_if_provider_removed(&done) {
                    return;
                }
                let discovered = match &done {
                    JobDone::Discovery { provider, .. } => Some(*provider),
                    _ => None,
                };
                self.finish(done).await;
                if let Some(p) = discovered {
                    self.after_discovery(p);
                }
            }
            Err(e) => {
                // A job panicked (a bug): free its session and try again later
                // instead of leaving the session stuck in flight forever.
                let owner = self.job_owner.remove(&e.id());
                tracing::error!(error = %e, "a scheduler job failed");
                if let Some(owner) = owner {
                    self.recover_failed_job(owner);
                }
            }
        }
    }

    fn recover_failed_job(&mut self, owner: Owner) {
        let now = self.clock.now();
        let retry = now.plus(Duration::from_secs(30));
        let (p, name) = match owner {
            Owner::Session { provider, session } => (provider, session),
            Owner::Discovery { provider } => {
                if let Some(pr) = self.providers.get_mut(provider) {
                    pr.discovery_in_flight = false;
                    pr.next_discovery = pr.next_discovery.map(|_| retry);
                }
                return;
            }
            Owner::Prune => {
                self.prune_in_flight = false;
                return;
            }
            owner @ Owner::Ring { .. } => {
                self.ring_job_lost(&owner);
                return;
            }
        };
        let Some(pr) = self.providers.get_mut(p) else {
            return;
        };
        let Some(s) = pr.sessions.get_mut(&name) else {
            return;
        };
        s.in_flight = false;
        if std::mem::take(&mut s.probe_slot) {
            pr.probes_in_flight = pr.probes_in_flight.saturating_sub(1);
        }
        let step = s.next.map(|st| Step { at: retry, ..st });
        self.schedule(p, &name, step);
    }
}

/// The next queued webhook event; pending forever without a receiver or
/// once the receiver is gone.
async fn next_webhook(
    queue: &mut Option<tokio::sync::mpsc::Receiver<crate::webhooks::Queued>>,
) -> Option<crate::webhooks::Queued> {
    match queue {
        Some(rx) => match rx.recv().await {
            Some(q) => Some(q),
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}
