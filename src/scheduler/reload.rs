//! Applying a new configuration to the running scheduler (SIGHUP) without
//! losing any session's state: machines, counters, backoff deadlines,
//! restart history and budgets stay; what changes is each provider's
//! settings, its client, the set of watched sessions and, where an interval
//! got shorter, the next probe.
//!
//! All or nothing: everything that can fail (building the new clients,
//! reading the store for providers that come back) happens before the first
//! change. The config itself was validated by `config` before it got here.
//!
//! Providers have stable ids (`providers.rs`): heap entries and jobs in
//! flight refer to providers by id. A removed provider's sessions are
//! retired and its slot emptied, so no lookup by name finds it, and results
//! of its jobs still in flight are dropped
//! ([`Scheduler::drop_if_provider_removed`]). A provider added by a reload,
//! or one whose `kind` changed, gets a new id.
//!
//! Daemon-level keys that only take effect on restart (`daemon.database`,
//! `daemon.listen`, ...) are the caller's business (`crate::reload`).

use std::collections::HashMap;
use std::fmt;

use super::{JobDone, ProviderRt, ReloadError, Scheduler};
use crate::clock::Timestamp;
use crate::config::{Config, ProviderConfig, SessionSelector};
use crate::machine::{Action, Step};
use crate::provider::Provider;

/// What a reload changed (for the log line).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub providers_added: Vec<String>,
    pub providers_removed: Vec<String>,
    /// Providers whose settings changed (url, credentials, canary, policy,
    /// sessions, ...).
    pub providers_changed: Vec<String>,
    /// `provider/session`.
    pub sessions_added: Vec<String>,
    pub sessions_retired: Vec<String>,
    /// Sessions whose next probe moved earlier because their interval got
    /// shorter.
    pub probes_rescheduled: usize,
    pub maintenance_changed: bool,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let mut list = |what: &str, items: &[String]| {
            if !items.is_empty() {
                parts.push(format!("{what} {}", items.join(", ")));
            }
        };
        list("providers added:", &self.providers_added);
        list("providers removed:", &self.providers_removed);
        list("providers changed:", &self.providers_changed);
        list("sessions added:", &self.sessions_added);
        list("sessions retired:", &self.sessions_retired);
        if self.probes_rescheduled > 0 {
            parts.push(format!(
                "{} probes moved earlier (shorter interval)",
                self.probes_rescheduled
            ));
        }
        if self.maintenance_changed {
            parts.push("maintenance windows changed".to_string());
        }
        if parts.is_empty() {
            f.write_str("no changes")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

impl Scheduler {
    /// Applies `new` (already validated by `config`). On error nothing has
    /// changed and the message says what could not be applied.
    pub async fn reload(&mut self, new: &Config) -> Result<ReloadReport, ReloadError> {
        // The rings stay as built (a change needs a restart,
        // `reload::restart_needed`); their members keep the ring's interval.
        let mut adjusted = new.clone();
        let rings: Vec<crate::config::RingConfig> =
            self.rings.iter().map(|r| r.cfg.clone()).collect();
        super::ring::apply_intervals(&mut adjusted.providers, &rings);
        let new = &adjusted;
        // 1. Everything that can fail.
        let mut clients: HashMap<&str, Provider> = HashMap::new();
        for pc in &new.providers {
            let client = Provider::from_config(pc).map_err(|error| ReloadError::Client {
                name: pc.name.clone(),
                error,
            })?;
            clients.insert(pc.name.as_str(), client);
        }
        let records = self
            .store
            .load_sessions()
            .await
            .map_err(|e| ReloadError::Store(e.to_string()))?;

        let now = self.clock.now();
        let mut report = ReloadReport::default();

        // 2. Removed providers (and those whose kind changed: a WAHA server
        // and a Green-API instance have nothing in common but a name).
        for p in self.providers.ids() {
            let name = self.providers[p].cfg.name.clone();
            let keep = new
                .provider(&name)
                .is_some_and(|pc| pc.kind == self.providers[p].cfg.kind);
            if !keep {
                self.remove_provider(p, &mut report).await;
            }
        }

        // 3. Changed and added providers, in config order.
        for pc in &new.providers {
            let Some(client) = clients.remove(pc.name.as_str()) else {
                continue; // duplicate names are rejected by config
            };
            match self.slot(&pc.name) {
                Some(p) => self.update_provider(p, pc, client, now, &mut report).await,
                None => {
                    let p = self.providers.add(ProviderRt::new(pc.clone(), client, now));
                    self.metrics.add_provider(&pc.name);
                    let before: Vec<String> = self.session_names(p);
                    if let Err(e) = self.restore_provider(p, &records, now).await {
                        // The sessions are in; only the budget history is
                        // missing, which errs on the side of restarting.
                        tracing::error!(provider = %pc.name, error = %e, "cannot restore the restart budget of an added provider");
                    }
                    report.sessions_added.extend(
                        self.session_names(p)
                            .into_iter()
                            .filter(|s| !before.contains(s))
                            .map(|s| format!("{}/{s}", pc.name)),
                    );
                    tracing::info!(provider = %pc.name, "provider added");
                    report.providers_added.push(pc.name.clone());
                }
            }
        }

        // 4. Daemon-level settings the scheduler owns.
        self.discovery_interval = new.daemon.discovery_interval;
        self.retire_after_rounds = new.daemon.retire_after_rounds;
        self.retire_after = new.daemon.retire_after;
        self.retention = new.daemon.retention;
        let latest = now.plus(self.discovery_interval);
        for pr in self.providers.iter_mut() {
            if let Some(at) = pr.next_discovery.as_mut() {
                *at = (*at).min(latest);
            }
        }

        // 5. Maintenance windows: re-evaluated at once.
        report.maintenance_changed = self.maintenance_windows() != new.maintenance.as_slice();
        self.maintenance.replace(new.maintenance.clone(), now);

        Ok(report)
    }

    /// The id of the provider named `name` (removed providers have none).
    pub(super) fn slot(&self, name: &str) -> Option<usize> {
        self.providers.find(name)
    }

    fn session_names(&self, p: usize) -> Vec<String> {
        self.providers[p]
            .sessions
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    fn maintenance_windows(&self) -> &[crate::maintenance::Window] {
        self.maintenance.windows()
    }

    /// Retires every session of provider `p` and empties its slot (its id
    /// is never given out again).
    async fn remove_provider(&mut self, p: usize, report: &mut ReloadReport) {
        let name = self.providers[p].cfg.name.clone();
        for session in self.session_names(p) {
            self.retire(p, &session, "provider removed from the configuration")
                .await;
            report.sessions_retired.push(format!("{name}/{session}"));
        }
        self.metrics.retire_provider(&name);
        self.providers.remove(p);
        tracing::info!(provider = %name, "provider removed");
        report.providers_removed.push(name);
    }

    /// New settings for an existing provider; its sessions keep their state.
    async fn update_provider(
        &mut self,
        p: usize,
        new: &ProviderConfig,
        client: Provider,
        now: Timestamp,
        report: &mut ReloadReport,
    ) {
        if self.providers[p].cfg == *new {
            // Unchanged: keep the running client (and whatever it holds,
            // e.g. pooled connections); the new one only proved it builds.
            drop(client);
            return;
        }
        let old = std::mem::replace(&mut self.providers[p].cfg, new.clone());
        self.providers[p].client = client;
        report.providers_changed.push(new.name.clone());
        tracing::info!(provider = %new.name, "provider settings changed");

        // Discovery on or off; which sessions discovery may retire.
        let discover = matches!(new.sessions, SessionSelector::All);
        {
            let pr = &mut self.providers[p];
            match (discover, pr.next_discovery) {
                (true, None) => pr.next_discovery = Some(now),
                (false, _) => pr.next_discovery = None,
                (true, Some(_)) => {}
            }
            for s in pr.sessions.values_mut() {
                s.discovered = discover;
            }
        }

        // Sessions no longer selected or turned off.
        for session in self.session_names(p) {
            if !self.providers[p].cfg.is_enabled(&session) {
                self.retire(p, &session, "removed from the configuration")
                    .await;
                report
                    .sessions_retired
                    .push(format!("{}/{session}", new.name));
            }
        }
        // Sessions newly named (or turned on again).
        if let SessionSelector::Named(names) = &new.sessions {
            for session in names {
                let known = self.providers[p].sessions.contains_key(session);
                if !known && new.is_enabled(session) {
                    self.add(p, session, false).await;
                    report
                        .sessions_added
                        .push(format!("{}/{session}", new.name));
                }
            }
        }

        // A shorter interval takes effect now, not after the old one ran
        // out. Only periodic probes move, and only earlier: a confirmation
        // probe, a restart waiting for its backoff or a status poll keeps its
        // time, and a session with a job in flight gets its next step from
        // the job's result, which already uses the new interval.
        for session in self.session_names(p) {
            if old.interval_for(&session) <= new.interval_for(&session) {
                continue;
            }
            let interval = new.interval_for(&session);
            let jitter = new.canary.jitter;
            let Some(s) = self.providers[p].sessions.get(&session) else {
                continue;
            };
            let Some(next) = s.next else { continue };
            if s.in_flight || next.action != Action::Probe {
                continue;
            }
            let anchor = s.machine.persisted.last_probe_at.unwrap_or(now);
            let interval = self.jittered(interval, jitter);
            let at = anchor.plus(interval).max(now);
            if at < next.at {
                self.schedule(
                    p,
                    &session,
                    Some(Step {
                        at,
                        action: Action::Probe,
                    }),
                );
                self.save(p, &session).await;
                report.probes_rescheduled += 1;
            }
        }
    }

    /// Drops the result of a job whose provider a reload removed (its
    /// sessions are retired, its slot empty). Returns whether it was dropped.
    pub(super) fn drop_if_provider_removed(&self, done: &JobDone) -> bool {
        let p = match done {
            JobDone::Session { key, .. } => key.provider,
            JobDone::Discovery { provider, .. } => *provider,
            JobDone::Pruned { .. } => return false, // a store job: no provider
            // Ring jobs name members; a member whose provider is gone is skipped.
            JobDone::RingNumber { .. } | JobDone::RingLook { .. } => return false,
        };
        self.providers.get(p).is_none()
    }
}
