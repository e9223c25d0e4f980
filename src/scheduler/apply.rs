//! Applying what jobs found: probe records, machine inputs and the machine's
//! effects (persist, report, reschedule), discovery results (handed to
//! `discovery`), and the outage rule.

use super::{JobDone, Output, PendingAck, Scheduler};
use crate::clock::Timestamp;
use crate::confirm;
use crate::events::Event;
use crate::health::{self, Health};
use crate::machine::Step;
use crate::machine::{
    Action, Ctx, Effects, Input, Remediation, RemediationResult, RemediationStatus,
};
use crate::metrics::RestartResult;
use crate::provider::ProbeReport;
use crate::store::{
    Applied, NewRemediation, ProbeRecord, RemediationUpdate, StoreError, TransitionRecord, Write,
};

impl Scheduler {
    /// Applies one finished job.
    pub(super) async fn finish(&mut self, done: JobDone) {
        let (key, started, finished, latency, output) = match done {
            JobDone::Session {
                key,
                started,
                finished,
                latency,
                output,
            } => (key, started, finished, latency, output),
            JobDone::Discovery { provider, result } => {
                self.on_discovered(provider, result).await;
                return;
            }
            JobDone::RingNumber {
                ring,
                member,
                result,
            } => {
                self.ring_number(ring, member, result);
                return;
            }
            JobDone::RingLook {
                ring,
                receiver,
                nonce,
                result,
            } => {
                self.ring_looked(ring, receiver, &nonce, result);
                return;
            }
            JobDone::Pruned { result } => {
                self.prune_in_flight = false;
                self.next_prune = self.clock.now().plus(super::PRUNE_EVERY);
                match result {
                    Ok(n) if n > 0 => {
                        tracing::info!(
                            rows = n,
                            "retention: pruned records older than daemon.retention, rolled older probes up"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "pruning old records failed"),
                }
                return;
            }
        };
        let p = key.provider;
        let name = key.session.clone();

        let current = {
            let pr = &mut self.providers[p];
            let Some(s) = pr.sessions.get_mut(&name) else {
                return; // retired while the job ran
            };
            s.in_flight = false;
            if std::mem::take(&mut s.probe_slot) {
                pr.probes_in_flight = pr.probes_in_flight.saturating_sub(1);
            }
            let current = s.seq == key.seq;
            if !current && s.deferred {
                // The schedule was replaced while this ran; run the new one now
                // that the session is free.
                s.deferred = false;
                let step = s.next;
                self.schedule(p, &name, step);
            }
            current
        };

        let action = key.action;
        let mut due = key.due;
        if let Output::Probe(report) = &output
            && current
        {
            self.ring_sent(p, &name, report, started);
        }
        let input = match output {
            Output::Probe(report) if current && report.pending_ack.is_some() => {
                // Queued is not delivered: confirm before the machine hears of it.
                self.await_ack(p, &name, action, key.due, finished, latency, report);
                return;
            }
            Output::Probe(report) => {
                self.record_probe(p, &name, action, &report, started, latency)
                    .await;
                Input::Probe(report.outcome)
            }
            Output::Ack(evidence) => {
                if !current {
                    return;
                }
                let Some(pending) = self.providers[p]
                    .sessions
                    .get(&name)
                    .and_then(|s| s.pending_ack.clone())
                else {
                    return;
                };
                let verdict = confirm::verdict(&pending.canary, evidence, finished);
                let Some(report) = verdict.report(&pending.canary) else {
                    if let confirm::Verdict::LookAgainAt(at) = verdict {
                        self.schedule(
                            p,
                            &name,
                            Some(Step {
                                at,
                                action: Action::ConfirmAck,
                            }),
                        );
                    }
                    return;
                };
                due = pending.due;
                self.ring_sender_decided(p, &name, &pending.canary.message_id, report.outcome);
                self.observe_verdict(p, &name, &verdict, report.outcome);
                self.record_probe(
                    p,
                    &name,
                    pending.action,
                    &report,
                    pending.canary.sent_at,
                    pending.latency,
                )
                .await;
                Input::Probe(report.outcome)
            }
            Output::Status(read, report) => {
                self.record_probe(p, &name, action, &report, started, latency)
                    .await;
                Input::Status(read)
            }
            Output::Restart(result) => Input::RestartCalled(result),
        };
        if !current {
            return;
        }
        // A discovered session that answers 404 is not retired here: one
        // 404 (a restarting server, a proxy) must not erase it. Discovery
        // retires it once the session lists have left it out for the grace
        // (`daemon.retire_after_rounds`, `daemon.retire_after`).
        self.apply_input(p, &name, input, due).await;
    }

    /// Parks a queued canary and schedules the first look at the queue.
    #[allow(clippy::too_many_arguments)]
    fn await_ack(
        &mut self,
        p: usize,
        name: &str,
        action: Action,
        due: Timestamp,
        sent_at: Timestamp,
        latency: std::time::Duration,
        report: ProbeReport,
    ) {
        let ack_timeout = self.providers[p].cfg.canary.ack_timeout;
        let Some(s) = self.providers[p].sessions.get_mut(name) else {
            return;
        };
        let Some(message_id) = report.pending_ack else {
            return;
        };
        let canary = confirm::Pending::new(message_id, sent_at, ack_timeout, report.http_status);
        let at = canary.first_look();
        s.pending_ack = Some(Box::new(PendingAck {
            canary,
            action: if action == Action::Verify {
                Action::Verify
            } else {
                Action::Probe
            },
            due,
            latency,
        }));
        self.schedule(
            p,
            name,
            Some(Step {
                at,
                action: Action::ConfirmAck,
            }),
        );
    }

    pub(super) async fn record_probe(
        &mut self,
        p: usize,
        name: &str,
        action: Action,
        report: &ProbeReport,
        at: Timestamp,
        latency: std::time::Duration,
    ) {
        let provider = self.providers[p].cfg.name.clone();
        let kind = action.as_str();
        let rec = ProbeRecord {
            provider: provider.clone(),
            session: name.to_string(),
            at,
            kind: kind.to_string(),
            outcome: report.outcome.to_stored(),
            http_status: report.http_status,
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            detail: report.detail.clone(),
        };
        let latency_ms = rec.latency_ms;
        if let Err(e) = self.writer.submit(Write::Probe(rec)) {
            tracing::error!(%provider, session = name, error = %e, "cannot record probe");
        }
        if action != Action::PollStatus {
            self.metrics
                .observe_probe(&provider, &report.outcome, latency);
        }
        // Providers without a session list to read (named sessions,
        // Green-API) are "up" unless probes find them unreachable.
        let pr = &self.providers[p];
        if let Some(up) = health::up_after_probe(&report.outcome, pr.next_discovery.is_some()) {
            let new = Health { up, ..pr.health };
            self.set_health(p, new, at);
        }
        tracing::debug!(
            %provider, session = name, kind, outcome = %report.outcome,
            detail = %report.detail, latency_ms, "probe"
        );
        let _ = self.events.send(Event::Probe {
            at,
            provider,
            session: name.to_string(),
            action,
            outcome: report.outcome,
            detail: report.detail.clone(),
            latency,
        });
    }

    /// Feeds one input to a session's machine and carries out the effects.
    pub(super) async fn apply_input(
        &mut self,
        p: usize,
        name: &str,
        input: Input,
        due: Timestamp,
    ) -> Effects {
        let now = self.clock.now();
        self.refresh_shared(p, name, &input, now).await;
        self.update_outage(p, now);
        let interval = {
            let pr = &self.providers[p];
            (pr.cfg.interval_for(name), pr.cfg.canary.jitter)
        };
        let interval = self.jittered(interval.0, interval.1);
        let pr = &mut self.providers[p];
        let Some(s) = pr.sessions.get_mut(name) else {
            return Effects {
                ignored: true,
                rejected: Some("no such session".into()),
                ..Effects::default()
            };
        };
        let ctx = Ctx {
            now,
            due,
            interval,
            policy: &pr.cfg.policy,
            restart_on_yellow_card: pr.cfg.reboot_on_yellow_card,
        };
        let before = s.machine.persisted.state;
        let fx = s.machine.step(input, &mut pr.guard, &ctx);
        let after = s.machine.persisted.state;
        if !fx.ignored {
            // Whatever was awaited belongs to the schedule this input replaces.
            s.pending_ack = None;
        }
        pr.sessions.note_state(before, after);
        if fx.ignored {
            return fx;
        }
        let provider = pr.cfg.name.clone();
        let action = pr.client.restart_action();

        if fx.desync_confirmed {
            self.metrics.desync_detected(&provider);
        }
        for t in &fx.transitions {
            tracing::info!(
                provider = %provider,
                session = name,
                from = t.from.as_str(),
                to = t.to.as_str(),
                reason = %t.reason,
                "state change"
            );
            let rec = TransitionRecord {
                provider: provider.clone(),
                session: name.to_string(),
                at: now,
                from_state: t.from.as_str().to_string(),
                to_state: t.to.as_str().to_string(),
                reason: t.reason.clone(),
            };
            if let Err(e) = self.writer.submit(Write::Transition(rec)) {
                tracing::error!(%provider, session = name, error = %e, "cannot record transition");
            }
            let _ = self.events.send(Event::Transition {
                at: now,
                provider: provider.clone(),
                session: name.to_string(),
                from: t.from,
                to: t.to,
                reason: t.reason.clone(),
            });
        }
        // After the transitions so logs and events read in order; still
        // before the restart job is spawned (the intent precedes the call).
        let mut next = fx.next;
        for r in &fx.remediations {
            let written = self
                .record_remediation(p, name, &provider, action, r, &fx, now)
                .await;
            if !written {
                // No intent row, no restart call: the call waits and the
                // intent is written again first (see `run::start_restart`).
                next = next.map(|st| match st.action {
                    Action::Restart => Step {
                        at: now.plus(super::INTENT_RETRY),
                        action: Action::Restart,
                    },
                    _ => st,
                });
            }
        }
        self.schedule(p, name, next);
        self.save(p, name).await;
        // A restart that began took a budget token.
        self.publish_budget(p, now);
        self.ring_after_input(p, name);
        fx
    }

    /// Sets `wa_watchdog_restart_budget_remaining` for every provider: the
    /// budget changes when a restart takes a token and when the window moves
    /// past one, so this runs on every pass of the loop.
    pub(super) fn publish_budgets(&self, now: Timestamp) {
        for p in self.providers.ids() {
            self.publish_budget(p, now);
        }
    }

    fn publish_budget(&self, p: usize, now: Timestamp) {
        let pr = &self.providers[p];
        let remaining = pr.guard.budget_remaining(&pr.cfg.policy, now);
        self.metrics.set_restart_budget(&pr.cfg.name, remaining);
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_remediation(
        &mut self,
        p: usize,
        name: &str,
        provider: &str,
        action: &str,
        r: &Remediation,
        fx: &Effects,
        now: Timestamp,
    ) -> bool {
        let mut written = true;
        let (stage, detail) = match r {
            Remediation::Begin { reason } | Remediation::DryRun { reason } => {
                let dry = matches!(r, Remediation::DryRun { .. });
                let rec = NewRemediation {
                    provider: provider.to_string(),
                    session: name.to_string(),
                    started_at: now,
                    action: action.to_string(),
                    reason: reason.clone(),
                    result: if dry {
                        RemediationStatus::DryRun
                    } else {
                        RemediationStatus::Pending
                    }
                    .as_str()
                    .to_string(),
                    intent_key: NewRemediation::new_key(provider, name, now),
                };
                let intent = if dry {
                    self.begin_intent(&rec).await
                } else {
                    self.write_intent(p, name, &rec).await
                };
                match intent {
                    Ok(id) if !dry => self.set_remediation_id(p, name, Some(id)),
                    Ok(_) => {}
                    Err(e) if !dry => {
                        self.intent_failed(p, name, &e);
                        if let Some(s) = self.providers[p].sessions.get_mut(name) {
                            s.pending_intent = Some(Box::new(rec.clone()));
                        }
                        written = false;
                    }
                    Err(e) => {
                        tracing::error!(%provider, session = name, error = %e, "cannot record a dry-run restart")
                    }
                }
                if dry {
                    self.metrics
                        .restart_result(provider, RestartResult::Skipped);
                    tracing::warn!(%provider, session = name, %reason, "dry run: would {action}");
                } else {
                    tracing::warn!(%provider, session = name, %reason, "{action} begins");
                }
                (if dry { "dry_run" } else { "begin" }, reason.clone())
            }
            Remediation::Called => {
                let called = RemediationStatus::Called.as_str();
                self.update_remediation(p, name, called, String::new(), None, None)
                    .await;
                ("called", String::new())
            }
            Remediation::Finished { result, detail } => {
                let recovery = (*result == RemediationResult::Healed)
                    .then_some(fx.recovered_after)
                    .flatten();
                self.update_remediation(
                    p,
                    name,
                    result.as_str(),
                    detail.clone(),
                    Some(now),
                    recovery.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                )
                .await;
                self.set_remediation_id(p, name, None);
                match result {
                    RemediationResult::Healed => {
                        self.metrics.restart_result(provider, RestartResult::Ok);
                        if let Some(d) = recovery {
                            self.metrics.recovered(provider, d);
                        }
                    }
                    RemediationResult::Interrupted => {}
                    _ => self.metrics.restart_result(provider, RestartResult::Failed),
                }
                tracing::info!(%provider, session = name, result = result.as_str(), %detail, "{action} ended");
                (result.as_str(), detail.clone())
            }
        };
        let _ = self.events.send(Event::Remediation {
            at: now,
            provider: provider.to_string(),
            session: name.to_string(),
            stage: stage.to_string(),
            detail,
        });
        written
    }

    /// A restart intent could not be written: logged once per episode of the
    /// provider (counted by `wa_watchdog_store_write_failures_total`).
    pub(super) fn intent_failed(&mut self, p: usize, name: &str, e: &crate::store::StoreError) {
        if matches!(e, crate::store::StoreError::Limit { .. }) {
            // Not a store failure: another replica took the last slot or
            // token (logged by `write_intent`); the call waits all the same.
            return;
        }
        let pr = &mut self.providers[p];
        if !pr.intent_failing {
            tracing::error!(
                provider = %pr.cfg.name, session = name, error = %e,
                "cannot record restart intent: the restart waits until it is recorded"
            );
        }
        pr.intent_failing = true;
    }

    fn set_remediation_id(&mut self, p: usize, name: &str, id: Option<i64>) {
        if let Some(s) = self.providers[p].sessions.get_mut(name) {
            s.remediation_id = id;
        }
    }

    async fn update_remediation(
        &mut self,
        p: usize,
        name: &str,
        result: &str,
        detail: String,
        finished_at: Option<Timestamp>,
        recovery_ms: Option<u64>,
    ) {
        let Some(id) = self.providers[p]
            .sessions
            .get(name)
            .and_then(|s| s.remediation_id)
        else {
            return;
        };
        let update = RemediationUpdate {
            result: result.to_string(),
            detail,
            finished_at,
            recovery_ms,
        };
        if let Err(e) = self.writer.submit(Write::UpdateRemediation { id, update }) {
            tracing::error!(session = name, error = %e, "cannot record restart result");
        }
    }

    /// Writes a restart intent and waits until it is committed: the restart
    /// call must not be made before its intent is on disk.
    pub(super) async fn begin_intent(&self, rec: &NewRemediation) -> Result<i64, StoreError> {
        match self
            .writer
            .write(Write::BeginRemediation(rec.clone()))
            .await?
        {
            Applied::Id(id) => Ok(id),
            other => Err(StoreError::Corrupt {
                row: "remediations".into(),
                detail: format!("an intent write returned {other:?}, not its row id"),
            }),
        }
    }

    /// Writes a session's row and its metrics.
    pub(super) async fn save(&mut self, p: usize, name: &str) {
        if !self.owns(p, name) {
            return; // another replica's session now: it is the writer
        }
        let now = self.clock.now();
        let pr = &self.providers[p];
        let Some(s) = pr.sessions.get(name) else {
            return;
        };
        let rec = super::persist::record(&pr.cfg.name, name, s, now);
        self.metrics.set_session(
            &pr.cfg.name,
            name,
            s.machine.persisted.state,
            s.machine.persisted.consecutive_failures,
            s.machine.persisted.last_success_at,
        );
        if let Err(e) = self.writer.submit(Write::Session(Box::new(rec))) {
            tracing::error!(provider = %pr.cfg.name, session = name, error = %e, "cannot save session");
        }
    }

    /// The outage rule now (a ring's provider inbound outage changed).
    pub(super) fn update_outage_now(&mut self, p: usize, now: Timestamp) {
        self.update_outage(p, now);
    }

    /// The outage rule over this provider's sessions (paused ones do not
    /// count), from the counts kept per state: O(1), not a walk; or several
    /// of its ring members missing their ring canaries together.
    fn update_outage(&mut self, p: usize, now: Timestamp) {
        let others = self.others(p);
        let pr = &mut self.providers[p];
        let mut count = health::outage_across(pr.sessions.counts(), others, &pr.cfg.policy);
        count.outage |= pr.inbound_outage;
        pr.guard.in_outage = count.outage;
        if count.outage != pr.health.outage {
            if count.outage {
                tracing::warn!(provider = %pr.cfg.name, failing = count.failing, total = count.total, "provider in outage: restarts suspended");
            } else {
                tracing::info!(provider = %pr.cfg.name, "provider outage over");
            }
        }
        let new = Health {
            outage: count.outage,
            ..pr.health
        };
        self.set_health(p, new, now);
    }

    /// Records a provider's health when it changed: metrics and the
    /// `ProviderHealth` event.
    pub(super) fn set_health(&mut self, p: usize, new: Health, at: Timestamp) {
        let pr = &mut self.providers[p];
        let Some(h) = health::changed(pr.health, new) else {
            return;
        };
        pr.health = h;
        self.metrics.set_provider(&pr.cfg.name, h.up, h.outage);
        let _ = self.events.send(Event::ProviderHealth {
            at,
            provider: pr.cfg.name.clone(),
            up: h.up,
            outage: h.outage,
        });
    }
}
