//! Converting between a session's machine and its store record, and
//! restoring every session when the daemon starts: states, counters, backoff
//! deadlines and restart budgets come back exactly, so a daemon restart
//! never restarts a session early and never repeats a restart in flight.

use std::collections::{HashMap, HashSet};

use super::{Scheduler, SessionRt};
use crate::clock::Timestamp;
use crate::config::SessionSelector;
use crate::machine::{Action, Machine, RemediationResult, RemediationStatus, State, Step};
use crate::provider::Outcome;
use crate::store::{RemediationRecord, RemediationUpdate, SessionRecord, Write};

/// Restart records newer than a session's last save that restoring it
/// replays (more than the longest backoff ladder needs).
const RECALL_MAX: usize = 16;

/// What restoring one provider did, for its one INFO line.
#[derive(Debug, Default)]
struct RestoreStats {
    /// Sessions whose stored next probe lay ahead and was kept.
    kept: usize,
    /// Sessions overdue (or never scheduled), spread over the start-up window.
    overdue: usize,
    added: usize,
    retired: usize,
    /// The provider's stored sessions: the batch overdue ones are spread
    /// for (`Scheduler::first_probe_at`).
    stored: usize,
}

/// The store record of a session.
pub(super) fn record(
    provider: &str,
    session: &str,
    s: &SessionRt,
    now: Timestamp,
) -> SessionRecord {
    SessionRecord {
        provider: provider.to_string(),
        session: session.to_string(),
        machine: s
            .machine
            .persisted
            .clone()
            .map(|st| st.as_str().to_string(), |o| o.to_stored()),
        next_probe_at: s.next.map(|st| st.at),
        chat_id: None,
        retired_at: None,
        updated_at: now,
    }
}

/// A stored value this version cannot read, by field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum UnreadableRecord {
    #[error("state: {0}")]
    State(String),
    #[error("last_outcome: {0}")]
    LastOutcome(String),
}

/// The machine a store record describes. A record this version cannot read
/// (a state or outcome name it does not know) is an error naming the field.
pub(super) fn machine(rec: &SessionRecord) -> Result<Machine, UnreadableRecord> {
    let persisted = rec.machine.clone().try_map(
        |st| {
            st.parse::<State>()
                .map_err(|e| UnreadableRecord::State(e.to_string()))
        },
        |o| {
            o.parse::<Outcome>()
                .map_err(|e| UnreadableRecord::LastOutcome(e.to_string()))
        },
    )?;
    Ok(Machine::restored(persisted))
}

impl Scheduler {
    /// Loads every session of every configured provider from the store.
    pub(super) async fn restore(&mut self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let started = std::time::Instant::now();
        let mut records = self.store.load_sessions().await?;
        tracing::info!(
            sessions = records.len(),
            took_ms = started.elapsed().as_millis(),
            "read the stored sessions"
        );
        if self.replica.is_some() {
            // One of several replicas: only the sessions of its shards.
            records.retain(|r| {
                self.slot(&r.provider)
                    .is_none_or(|p| self.owns(p, &r.session))
            });
        }
        for p in self.providers.ids() {
            self.restore_provider(p, &records, now).await?;
        }
        Ok(())
    }

    /// Loads the sessions of provider `p` from `records` (the store's active
    /// sessions), adds its configured sessions the store does not know, and
    /// rebuilds its restart budget and concurrency. At start-up, and when a
    /// reload adds a provider.
    ///
    /// A few queries per provider, whatever its size: the restart records
    /// every session needs are read in bulk, and only the rows whose machine
    /// changed are written back, in batched transactions (a new schedule
    /// alone is saved by the session's next probe). A session keeps its stored
    /// next probe when that lies in the future (a daemon restart sends no
    /// canary the schedule would not have sent); only overdue ones are spread
    /// over the start-up window. One INFO line per provider; per-session
    /// lines at debug.
    pub(super) async fn restore_provider(
        &mut self,
        p: usize,
        records: &[SessionRecord],
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let name = self.providers[p].cfg.name.clone();
        // Wall time for the summary line only (the schedule reads `now`).
        let started = std::time::Instant::now();
        // On a reload the writer may still hold writes of this provider's
        // sessions: read and write after them.
        self.writer.flush().await;
        let mut latest: HashMap<String, RemediationRecord> =
            match self.store.latest_remediations(&name).await {
                Ok(rows) => rows.into_iter().map(|r| (r.session.clone(), r)).collect(),
                Err(e) => {
                    tracing::error!(provider = %name, error = %e, "cannot read restart records");
                    HashMap::new()
                }
            };
        let mut after_save: HashMap<String, Vec<RemediationRecord>> = HashMap::new();
        match self.store.remediations_after_save(&name).await {
            Ok(rows) => {
                for r in rows {
                    let list = after_save.entry(r.session.clone()).or_default();
                    if list.len() < RECALL_MAX {
                        list.push(r);
                    }
                }
            }
            Err(e) => {
                tracing::error!(provider = %name, error = %e, "cannot read restart records");
            }
        }
        let mut stats = RestoreStats {
            stored: records.iter().filter(|r| r.provider == name).count(),
            ..RestoreStats::default()
        };
        let mut saves = Vec::new();
        let mut seen = HashSet::new();
        for rec in records.iter().filter(|r| r.provider == name) {
            seen.insert(rec.session.clone());
            if !self.providers[p].cfg.is_enabled(&rec.session) {
                self.retire_record(&name, &rec.session, now).await;
                stats.retired += 1;
                continue;
            }
            let open = latest.remove(&rec.session);
            let recall = after_save.remove(&rec.session).unwrap_or_default();
            if let Some(save) = self
                .restore_session(p, rec, open, &recall, now, &mut stats)
                .await
            {
                saves.push(save);
            }
        }
        if let Err(e) = self.store.save_sessions(&saves).await {
            tracing::error!(provider = %name, sessions = saves.len(), error = %e, "cannot save restored sessions");
        }
        // Sessions named in the config that the store does not know yet.
        if let SessionSelector::Named(names) = self.providers[p].cfg.sessions.clone() {
            let unknown: Vec<String> = names
                .into_iter()
                .filter(|n| {
                    !seen.contains(n)
                        && self.providers[p].cfg.is_enabled(n)
                        && self.owns(p, n)
                        && !self.providers[p].sessions.contains_key(n)
                })
                .collect();
            stats.added = unknown.len();
            self.add_many(p, &unknown, false).await;
        }
        // Restart budget and concurrency as they were.
        let cfg = self.providers[p].cfg.policy.clone();
        let since = now.minus(cfg.restart_budget_window);
        let recent = self.store.remediations_since(&name, since).await?;
        let pr = &mut self.providers[p];
        pr.guard.recent_restarts = recent
            .iter()
            // An unreadable result counts as an attempt: errs on the
            // side of fewer restarts.
            .filter(|r| {
                r.result
                    .parse::<RemediationStatus>()
                    .map_or(true, RemediationStatus::is_attempt)
            })
            .map(|r| r.started_at)
            .collect();
        pr.guard.in_flight = State::ALL
            .iter()
            .filter(|s| s.holds_restart_slot())
            .map(|s| pr.sessions.counts().get(*s))
            .sum::<usize>()
            .try_into()
            .unwrap_or(u32::MAX);
        let states: Vec<String> = pr
            .sessions
            .counts()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{}={n}", s.as_str()))
            .collect();
        tracing::info!(
            provider = %name,
            sessions = pr.sessions.counts().total(),
            schedule_kept = stats.kept,
            overdue_spread = stats.overdue,
            added = stats.added,
            retired = stats.retired,
            saved = saves.len(),
            states = %states.join(" "),
            took_ms = started.elapsed().as_millis(),
            "restored sessions"
        );
        self.metrics.set_provider(&name, true, false);
        Ok(())
    }

    /// Restores one session from its record, its newest restart record
    /// (`open`, if any) and the restart records newer than its last save
    /// (`recall`, newest first). Returns the record to write back when
    /// restoring changed it.
    async fn restore_session(
        &mut self,
        p: usize,
        rec: &SessionRecord,
        open: Option<RemediationRecord>,
        recall: &[RemediationRecord],
        now: Timestamp,
        stats: &mut RestoreStats,
    ) -> Option<SessionRecord> {
        let provider = self.providers[p].cfg.name.clone();
        let mut machine = match machine(rec) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(
                    %provider, session = %rec.session, error = %e,
                    "stored state unreadable; starting this session afresh"
                );
                Machine::new(now)
            }
        };
        // A restart that was in flight keeps its open remediation row; any
        // other open row belongs to an attempt that can no longer finish.
        let open = open.filter(|r| {
            r.result
                .parse::<RemediationStatus>()
                .is_ok_and(RemediationStatus::is_open)
        });
        // Restarts decided after the session was last saved (the daemon
        // died in between): their intent rows are the truth, so they count
        // toward backoff and max_restarts as if the save had happened.
        {
            let policy = &self.providers[p].cfg.policy;
            for row in recall.iter().rev().filter(|r| {
                r.result
                    .parse::<RemediationStatus>()
                    .map_or(true, RemediationStatus::is_attempt)
            }) {
                machine.recall_restart(policy, row.started_at);
            }
        }
        let mut remediation_id = None;
        if let Some(row) = open {
            if machine.persisted.state.holds_restart_slot() {
                remediation_id = Some(row.id);
            } else {
                let update = RemediationUpdate {
                    result: RemediationStatus::Ended(RemediationResult::Interrupted)
                        .as_str()
                        .to_string(),
                    detail: "the daemon stopped during this attempt".to_string(),
                    finished_at: Some(now),
                    recovery_ms: None,
                };
                let id = row.id;
                if let Err(e) = self.writer.submit(Write::UpdateRemediation { id, update }) {
                    tracing::error!(%provider, session = %rec.session, error = %e, "cannot close restart record");
                }
            }
        }
        let interval = self.providers[p].cfg.interval_for(&rec.session);
        let step = match machine.resume_step(now) {
            Some(Step {
                action: Action::Probe,
                ..
            }) => Some(Step {
                at: match rec.next_probe_at {
                    // Still ahead: exactly as scheduled (never later than
                    // one interval from now, if the interval was shortened).
                    Some(at) if at > now => {
                        stats.kept += 1;
                        at.min(now.plus(interval))
                    }
                    _ => {
                        stats.overdue += 1;
                        self.first_probe_at(now, interval, stats.stored)
                    }
                },
                action: Action::Probe,
            }),
            other => other,
        };
        let discovered = matches!(self.providers[p].cfg.sessions, SessionSelector::All);
        tracing::debug!(
            %provider, session = %rec.session, state = machine.persisted.state.as_str(),
            next = ?step.map(|s| s.at), "restored session"
        );
        self.providers[p].sessions.insert(
            rec.session.clone(),
            SessionRt::new(machine, discovered, remediation_id),
        );
        self.schedule(p, &rec.session, step);
        let pr = &self.providers[p];
        let s = pr.sessions.get(&rec.session)?;
        let m = &s.machine;
        self.metrics.set_session(
            &provider,
            &rec.session,
            m.persisted.state,
            m.persisted.consecutive_failures,
            m.persisted.last_success_at,
        );
        // Written back only when restoring changed the machine (a recalled
        // restart, an afresh start): most rows stay as they are. A new next
        // probe alone is not written: an overdue session's spread time is
        // saved with its first probe, seconds later, and a restart before
        // that spreads it again. After a stop longer than the interval that
        // is every session, and writing 100,000 rows back held READY for 3 s.
        let mut fresh = record(&provider, &rec.session, s, rec.updated_at);
        fresh.chat_id.clone_from(&rec.chat_id);
        let next = std::mem::replace(&mut fresh.next_probe_at, rec.next_probe_at);
        if fresh == *rec {
            return None;
        }
        fresh.next_probe_at = next;
        fresh.updated_at = now;
        Some(fresh)
    }

    async fn retire_record(&mut self, provider: &str, session: &str, now: Timestamp) {
        tracing::info!(%provider, session, "session no longer configured; retired");
        let retire = Write::Retire {
            provider: provider.to_string(),
            session: session.to_string(),
            at: now,
        };
        if let Err(e) = self.writer.submit(retire) {
            tracing::error!(%provider, session, error = %e, "cannot retire session");
        }
    }
}
