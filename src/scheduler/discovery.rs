//! The set of watched sessions: a provider's session list reconciled with
//! it (discovery), and a session added (first probe spread over its
//! interval) or retired (its restart slot, probe slot and open restart
//! record given back; its history kept).
//!
//! What it owns: [`Scheduler::add`] and [`Scheduler::retire`], used by
//! discovery, restore and reload alike. What it must not do: drop a
//! session's history from the store, or retire a configured session because
//! a session list could not be read.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{Scheduler, SessionRt};
use crate::clock::Timestamp;
use crate::events::Event;
use crate::machine::{Action, Machine, RemediationResult, State};
use crate::provider::ProbeReport;
use crate::store::{RemediationUpdate, SessionRecord, Write};

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
        let discovered = pr.sessions.values().filter(|s| s.discovered).count();
        let absent: Vec<String> = pr
            .sessions
            .iter()
            .filter(|(n, s)| s.discovered && !listed.contains(n.as_ref()))
            .map(|(n, _)| n.to_string())
            .collect();
        let new: Vec<String> = listed
            .iter()
            .filter(|n| !pr.sessions.contains_key(n))
            .cloned()
            .collect();
        for (name, s) in pr.sessions.iter_mut() {
            if listed.contains(name.as_ref()) {
                s.missing = None;
            }
        }
        let provider = pr.cfg.name.clone();
        if suspect_list(discovered, absent.len()) {
            // A restarting server, a proxy or a bug answering a (nearly)
            // empty list: not the truth about the sessions. Logged once per
            // episode; the absent sessions' grace does not advance.
            if !pr.list_suspect {
                tracing::warn!(
                    %provider,
                    listed = listed.len(),
                    absent = absent.len(),
                    watched = discovered,
                    "session list drops most sessions at once: suspect, not applied"
                );
            }
            pr.list_suspect = true;
            self.metrics.discovery_suspect(&provider);
        } else {
            if pr.list_suspect {
                tracing::info!(%provider, "session list plausible again");
            }
            pr.list_suspect = false;
            let (rounds, min_time) = (self.retire_after_rounds, self.retire_after);
            let mut gone = Vec::new();
            for name in &absent {
                let Some(s) = pr.sessions.get_mut(name) else {
                    continue;
                };
                let m = s.missing.get_or_insert(super::Missing {
                    since: now,
                    rounds: 0,
                });
                m.rounds += 1;
                if m.rounds >= rounds && now.since(m.since) >= min_time {
                    gone.push(name.clone());
                }
            }
            for name in gone {
                self.retire(p, &name, "the provider no longer lists this session")
                    .await;
            }
        }
        // Another replica's shard: it adds the session itself.
        let new: Vec<String> = new.into_iter().filter(|n| self.owns(p, n)).collect();
        if !new.is_empty() {
            // One line per discovery, not one per session (a first start on
            // a large server adds them all at once); each is at debug.
            tracing::info!(provider = %self.providers[p].cfg.name, added = new.len(), "watching newly listed sessions");
            self.add_many(p, &new, true).await;
        }
    }

    /// Starts watching a session. A session watched before (retired, now
    /// back) keeps its restart history, backoff and escalation from the
    /// store: coming and going never resets the restart limits.
    pub(super) async fn add(&mut self, p: usize, name: &str, discovered: bool) {
        self.add_many(p, &[name.to_string()], discovered).await;
    }

    /// [`Scheduler::add`] for many sessions at once (a first discovery on a
    /// large server, configured names a fresh database does not know): the
    /// stored records of returning sessions read in one query when there
    /// are many, one batched save, first probes spread for the batch's size
    /// (`first_probe_at`). The caller logs one line; each session is at debug.
    pub(super) async fn add_many(&mut self, p: usize, names: &[String], discovered: bool) {
        let now = self.clock.now();
        let stored = self.stored_records(p, names).await;
        let provider = self.providers[p].cfg.name.clone();
        let mut records = Vec::with_capacity(names.len());
        for name in names {
            let interval = self.providers[p].cfg.interval_for(name);
            let first = self.first_probe_at(now, interval, names.len());
            let machine = returning_machine(&provider, name, stored.get(name.as_str()), now);
            self.providers[p]
                .sessions
                .insert(name.clone(), SessionRt::new(machine, discovered, None));
            tracing::debug!(%provider, session = %name, "watching session");
            self.schedule(
                p,
                name,
                Some(crate::machine::Step {
                    at: first,
                    action: Action::Probe,
                }),
            );
            let Some(s) = self.providers[p].sessions.get(name) else {
                continue;
            };
            self.metrics.set_session(
                &provider,
                name,
                s.machine.persisted.state,
                s.machine.persisted.consecutive_failures,
                s.machine.persisted.last_success_at,
            );
            records.push(super::persist::record(&provider, name, s, now));
        }
        if let Err(e) = self.store.save_sessions(&records).await {
            tracing::error!(%provider, sessions = records.len(), error = %e, "cannot save sessions");
        }
        for name in names {
            let _ = self.events.send(Event::SessionAdded {
                at: now,
                provider: provider.clone(),
                session: name.clone(),
            });
        }
    }

    /// The stored records (retired or not) of `names`, by name: one query
    /// per name for a few, one read of every stored session for many.
    async fn stored_records(&self, p: usize, names: &[String]) -> HashMap<String, SessionRecord> {
        /// Above this many names, one read of the whole table is cheaper.
        const ONE_BY_ONE_MAX: usize = 16;
        let provider = &self.providers[p].cfg.name;
        // One may have been retired (or saved) a moment ago: read what the
        // writer has committed, not what it still holds.
        self.writer.flush().await;
        let mut found = HashMap::new();
        if names.len() <= ONE_BY_ONE_MAX {
            for name in names {
                match self.store.session(provider, name).await {
                    Ok(Some(rec)) => {
                        found.insert(name.clone(), rec);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(%provider, session = %name, error = %e, "cannot read the stored session; starting it afresh");
                    }
                }
            }
            return found;
        }
        let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
        match self.store.list_sessions(true).await {
            Ok(recs) => found.extend(
                recs.into_iter()
                    .filter(|r| r.provider == *provider && wanted.contains(r.session.as_str()))
                    .map(|r| (r.session.clone(), r)),
            ),
            Err(e) => {
                tracing::error!(%provider, sessions = names.len(), error = %e, "cannot read the stored sessions; starting them afresh");
            }
        }
        found
    }

    /// Stops watching a session; its history stays in the store.
    pub(super) async fn retire(&mut self, p: usize, name: &str, reason: &str) {
        let now = self.clock.now();
        let pr = &mut self.providers[p];
        let Some(s) = pr.sessions.remove(name) else {
            return;
        };
        if s.machine.persisted.state.holds_restart_slot() {
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
            if let Err(e) = self.writer.submit(Write::UpdateRemediation { id, update }) {
                tracing::error!(%provider, session = name, error = %e, "cannot close restart record");
            }
        }
        let retire = Write::Retire {
            provider: provider.clone(),
            session: name.to_string(),
            at: now,
        };
        if let Err(e) = self.writer.submit(retire) {
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

/// A fresh machine for a session, with what must survive its absence
/// taken from its stored record, if any: restart history, backoff,
/// escalation (cleared only by a verified delivery or an operator).
fn returning_machine(
    provider: &str,
    name: &str,
    rec: Option<&SessionRecord>,
    now: Timestamp,
) -> Machine {
    let mut m = Machine::new(now);
    let Some(rec) = rec else {
        return m;
    };
    let Ok(old) = super::persist::machine(rec) else {
        return m;
    };
    m.persisted.restart_history = old.persisted.restart_history;
    m.persisted.backoff_step = old.persisted.backoff_step;
    m.persisted.next_restart_at = old.persisted.next_restart_at;
    if old.persisted.state == State::Escalated {
        m.persisted.state = State::Escalated;
        m.persisted.since = old.persisted.since;
        m.persisted.reason = old.persisted.reason;
    }
    tracing::info!(
        %provider, session = name, restarts = m.persisted.restart_history.len(),
        escalated = m.persisted.state == State::Escalated,
        "session is back; its restart history is kept"
    );
    m
}

/// Whether a session list that leaves out `absent` of the `watched`
/// discovered sessions is suspect: more than half of them, and at least 2.
/// Pure, so the rule is table-tested.
pub(super) fn suspect_list(watched: usize, absent: usize) -> bool {
    absent >= 2 && absent * 2 > watched
}

#[cfg(test)]
mod tests {
    use super::suspect_list;

    #[test]
    fn a_list_that_drops_most_sessions_at_once_is_suspect() {
        let cases = [
            // (watched, absent, suspect)
            (0, 0, false),
            (1, 1, false),
            (2, 1, false),
            (2, 2, true),
            (5, 2, false),
            (5, 3, true),
            (5005, 5005, true),
            (10, 5, false),
            (10, 6, true),
        ];
        for (watched, absent, want) in cases {
            assert_eq!(suspect_list(watched, absent), want, "{watched} {absent}");
        }
    }
}
