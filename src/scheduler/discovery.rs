//! The set of watched sessions: a provider's session list reconciled with
//! it (discovery), and a session added (first probe spread over its
//! interval) or retired (its restart slot, probe slot and open restart
//! record given back; its history kept).
//!
//! What it owns: [`Scheduler::add`] and [`Scheduler::retire`], used by
//! discovery, restore and reload alike. What it must not do: drop a
//! session's history from the store, or retire a configured session because
//! a session list could not be read.

use std::collections::BTreeSet;

use super::{Scheduler, SessionRt};
use crate::events::Event;
use crate::machine::{Action, Machine, RemediationResult};
use crate::provider::ProbeReport;
use crate::store::RemediationUpdate;

impl Scheduler {
    /// Reconciles a provider's session list with what is watched.
    pub(super) async fn on_discovered(
        &mut self,
        p: usize,
        result: Result<Vec<String>, ProbeReport>,
    ) {
        let now = self.clock.now();
        let interval = self.discovery_interval;
        let pr = &mut self.providers[p];
        pr.discovery_in_flight = false;
        pr.next_discovery = Some(now.plus(interval));
        let new = crate::health::Health {
            up: crate::health::up_after_list_read(result.is_ok()),
            ..pr.health
        };
        self.set_health(p, new, now);
        let pr = &mut self.providers[p];
        let names = match result {
            Ok(names) => names,
            Err(report) => {
                tracing::warn!(
                    provider = %pr.cfg.name,
                    outcome = %report.outcome,
                    detail = %report.detail,
                    "cannot read the session list"
                );
                return;
            }
        };
        let listed: BTreeSet<String> = names.into_iter().filter(|n| pr.cfg.is_enabled(n)).collect();
        let gone: Vec<String> = pr
            .sessions
            .iter()
            .filter(|(n, s)| s.discovered && !listed.contains(*n))
            .map(|(n, _)| n.clone())
            .collect();
        let new: Vec<String> = listed
            .into_iter()
            .filter(|n| !pr.sessions.contains_key(n))
            .collect();
        for name in gone {
            self.retire(p, &name, "the provider no longer lists this session")
                .await;
        }
        for name in new {
            self.add(p, &name, true).await;
        }
    }

    /// Starts watching a session.
    pub(super) async fn add(&mut self, p: usize, name: &str, discovered: bool) {
        let now = self.clock.now();
        let interval = self.providers[p].cfg.interval_for(name);
        let first = self.first_probe_at(now, interval);
        let pr = &mut self.providers[p];
        pr.sessions.insert(
            name.to_string(),
            SessionRt {
                machine: Machine::new(now),
                next: None,
                seq: 0,
                in_flight: false,
                probe_slot: false,
                deferred: false,
                discovered,
                remediation_id: None,
                pending_ack: None,
            },
        );
        let provider = pr.cfg.name.clone();
        tracing::info!(%provider, session = name, "watching session");
        self.schedule(
            p,
            name,
            Some(crate::machine::Step {
                at: first,
                action: Action::Probe,
            }),
        );
        self.save(p, name).await;
        let _ = self.events.send(Event::SessionAdded {
            at: now,
            provider,
            session: name.to_string(),
        });
    }

    /// Stops watching a session; its history stays in the store.
    pub(super) async fn retire(&mut self, p: usize, name: &str, reason: &str) {
        let now = self.clock.now();
        let pr = &mut self.providers[p];
        let Some(s) = pr.sessions.remove(name) else {
            return;
        };
        if s.machine.state.holds_restart_slot() {
            pr.guard.release();
        }
        if s.in_flight && s.probe_slot {
            pr.probes_in_flight = pr.probes_in_flight.saturating_sub(1);
        }
        let provider = pr.cfg.name.clone();
        if let Some(id) = s.remediation_id {
            let update = RemediationUpdate {
                result: RemediationResult::Interrupted.as_str().to_string(),
                detail: reason.to_string(),
                finished_at: Some(now),
                recovery_ms: None,
            };
            if let Err(e) = self.store.update_remediation(id, &update).await {
                tracing::error!(%provider, session = name, error = %e, "cannot close restart record");
            }
        }
        if let Err(e) = self.store.retire_session(&provider, name, now).await {
            tracing::error!(%provider, session = name, error = %e, "cannot retire session");
        }
        self.metrics.retire_session(&provider, name);
        tracing::info!(%provider, session = name, reason, "session retired");
        let _ = self.events.send(Event::SessionRetired {
            at: now,
            provider,
            session: name.to_string(),
            reason: reason.to_string(),
        });
    }
}
