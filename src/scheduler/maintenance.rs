//! Carrying out `[[maintenance]]` windows: at each window start (and after a
//! start-up, a reload or a discovery), pause the sessions a window covers,
//! until the window ends. The machine schedules the `Resume` at the pause's
//! end itself, so nothing here has to wake at window ends.
//!
//! The evaluation is pure (`crate::maintenance`); this file only keeps track
//! of which occurrences were already applied to which session, so that an
//! operator's `resume` during a window sticks for the rest of it, and turns
//! the answers into machine inputs. It must not decide anything the machine
//! decides (a pause interrupts a restart in flight there, not here).
//!
//! Rules:
//! - a session paused by an operator is left alone unless its pause ends
//!   before the window does (then the window extends it);
//! - a session paused by a window that no longer covers it (the window was
//!   removed or changed by a reload) is resumed;
//! - applied occurrences are remembered in memory only: after a daemon
//!   restart inside a window, a session an operator had resumed is paused
//!   again (sessions still paused keep their persisted pause).

use std::collections::HashMap;

use super::Scheduler;
use crate::clock::Timestamp;
use crate::machine::{Input, State};
use crate::maintenance::{self, Occurrence, Window};

/// One occurrence of one window applied to one session.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Applied {
    provider: String,
    session: String,
    window: String,
    occurrence: Occurrence,
}

/// The scheduler's maintenance state.
#[derive(Debug)]
pub(super) struct MaintenanceRt {
    windows: Vec<Window>,
    /// When the windows must be evaluated next: the next window start, or
    /// now after a start-up, reload or discovery.
    next_check: Option<Timestamp>,
    /// Occurrences already applied, until they end.
    applied: HashMap<Applied, Timestamp>,
}

impl MaintenanceRt {
    /// Windows from the config; the first evaluation is due at `now` (a
    /// daemon started inside a window pauses at once).
    pub(super) fn new(windows: Vec<Window>, now: Timestamp) -> MaintenanceRt {
        MaintenanceRt {
            windows,
            next_check: Some(now),
            applied: HashMap::new(),
        }
    }

    pub(super) fn next_check(&self) -> Option<Timestamp> {
        self.next_check
    }

    pub(super) fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// New windows from a reload: re-evaluate at `now`. What was applied is
    /// kept for windows that are still there, so an unchanged window does
    /// not re-pause a session an operator resumed; a window whose times
    /// changed is a new occurrence and applies again, and so does a window
    /// that was removed and comes back.
    pub(super) fn replace(&mut self, windows: Vec<Window>, now: Timestamp) {
        self.applied
            .retain(|k, _| windows.iter().any(|w| w.name == k.window));
        self.windows = windows;
        self.next_check = Some(now);
    }

    /// Sessions may have appeared: evaluate at `now` (only if any window
    /// exists; without windows there is nothing a new session could need).
    pub(super) fn sessions_changed(&mut self, now: Timestamp) {
        if !self.windows.is_empty() {
            self.next_check = Some(self.next_check.map_or(now, |t| t.min(now)));
        }
    }
}

impl Scheduler {
    /// Evaluates every window for every session at `now` and pauses or
    /// resumes accordingly; schedules the next evaluation at the next start.
    pub(super) async fn run_maintenance(&mut self, now: Timestamp) {
        let m = &mut self.maintenance;
        m.next_check = maintenance::next_start(&m.windows, now);
        m.applied.retain(|_, end| *end > now);

        let mut inputs: Vec<(usize, String, Input)> = Vec::new();
        for (p, pr) in self.providers.enumerate() {
            for (name, s) in &pr.sessions {
                let active = maintenance::active(&m.windows, &pr.cfg.name, name, now);
                let machine = &s.machine;
                let by_window = (machine.persisted.state == State::Paused)
                    .then(|| maintenance::window_of_reason(&machine.persisted.reason))
                    .flatten();
                let Some(last) = maintenance::last_ending(&active) else {
                    if by_window.is_some() {
                        // Its window is gone or no longer covers it.
                        inputs.push((p, name.to_string(), Input::Resume));
                    }
                    continue;
                };
                let mut fresh = false;
                for a in &active {
                    let key = Applied {
                        provider: pr.cfg.name.clone(),
                        session: name.to_string(),
                        window: a.window.to_string(),
                        occurrence: a.occurrence,
                    };
                    if let std::collections::hash_map::Entry::Vacant(e) = m.applied.entry(key) {
                        e.insert(a.occurrence.end);
                        fresh = true;
                    }
                }
                if !fresh {
                    continue; // applied before; an operator may have resumed it
                }
                let end = last.occurrence.end;
                let reason = maintenance::pause_reason(last.window);
                let leave = machine.persisted.state == State::Paused
                    && match by_window {
                        // Already paused by this very occurrence.
                        Some(_) => {
                            machine.persisted.reason == reason
                                && machine.persisted.paused_until == Some(end)
                        }
                        // An operator's pause that lasts at least as long.
                        None => machine
                            .persisted
                            .paused_until
                            .is_none_or(|until| until >= end),
                    };
                if !leave {
                    inputs.push((
                        p,
                        name.to_string(),
                        Input::Pause {
                            until: Some(end),
                            reason,
                        },
                    ));
                }
            }
        }
        if inputs.is_empty() {
            return;
        }
        let (mut paused, mut resumed) = (0usize, 0usize);
        for (p, name, input) in inputs {
            match input {
                Input::Pause { .. } => paused += 1,
                _ => resumed += 1,
            }
            // Each change is logged as a state change (provider, session,
            // from, to, reason) by `apply_input`.
            self.apply_input(p, &name, input, now).await;
        }
        tracing::info!(
            paused,
            resumed,
            next_window_start = %self.maintenance.next_check.map(|t| t.to_string()).unwrap_or_else(|| "none".into()),
            "maintenance windows applied"
        );
    }

    /// After a discovery finished: new sessions may fall into a window.
    pub(super) fn after_discovery(&mut self, p: usize) {
        let now = self.clock.now();
        self.maintenance.sessions_changed(now);
        // A provider that a reload switched from discovery to a session list
        // while its last discovery ran must not be scheduled to discover again.
        if let Some(pr) = self.providers.get_mut(p)
            && !matches!(pr.cfg.sessions, crate::config::SessionSelector::All)
        {
            pr.next_discovery = None;
        }
    }
}
