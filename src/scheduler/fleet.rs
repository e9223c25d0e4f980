//! One provider's watched sessions with the provider-wide facts kept
//! incrementally: how many sessions are in each state (the outage rule's
//! input, the per-state summary). Adding, retiring and stepping a session
//! update the counts in O(1); nothing walks the fleet per probe.
//!
//! Owns: the session map and its [`StateCounts`]. A session's name is
//! allocated once, as the map's `Arc<str>` key: the scheduler's heap
//! entries and ready queue hold clones of that key (a reference count),
//! never copies of the string.
//! Must not: change a session's state behind the counts' back: a state
//! changes only in [`Sessions::insert`], [`Sessions::remove`] and through
//! [`Sessions::note_state`] right after the machine stepped. Debug builds
//! check the counts against a full recount after every step.

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::ops::Bound;
use std::sync::Arc;

use super::SessionRt;
use crate::health::StateCounts;
use crate::machine::State;

#[derive(Debug, Default)]
pub(super) struct Sessions {
    map: BTreeMap<Arc<str>, SessionRt>,
    counts: StateCounts,
}

impl Sessions {
    pub(super) fn insert(&mut self, name: impl Into<Arc<str>>, session: SessionRt) {
        self.counts.add(session.machine.persisted.state);
        if let Some(old) = self.map.insert(name.into(), session) {
            self.counts.remove(old.machine.persisted.state);
        }
    }

    pub(super) fn remove(&mut self, name: &str) -> Option<SessionRt> {
        let s = self.map.remove(name)?;
        self.counts.remove(s.machine.persisted.state);
        Some(s)
    }

    /// A session's machine went from `from` to `to` (call after every step).
    pub(super) fn note_state(&mut self, from: State, to: State) {
        self.counts.moved(from, to);
        self.debug_check();
    }

    pub(super) fn counts(&self) -> &StateCounts {
        &self.counts
    }

    /// Debug builds: the incremental counts equal a full recount (skipped
    /// on fleets too big for that to stay cheap in tests).
    pub(super) fn debug_check(&self) {
        #[cfg(debug_assertions)]
        if self.map.len() <= 10_000 {
            let recount = StateCounts::of(self.map.values().map(|s| s.machine.persisted.state));
            assert_eq!(
                self.counts, recount,
                "incremental state counts drifted from a full recount"
            );
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<&SessionRt> {
        self.map.get(name)
    }

    /// For everything but the machine's state (see the module's docs).
    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut SessionRt> {
        self.map.get_mut(name)
    }

    /// The session with its shared name (for a heap or queue entry).
    pub(super) fn get_mut_with_name(&mut self, name: &str) -> Option<(Arc<str>, &mut SessionRt)> {
        let range = (Bound::Included(name), Bound::Included(name));
        self.map
            .range_mut::<str, _>(range)
            .next()
            .map(|(k, s)| (k.clone(), s))
    }

    pub(super) fn contains_key(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub(super) fn keys(&self) -> btree_map::Keys<'_, Arc<str>, SessionRt> {
        self.map.keys()
    }

    pub(super) fn values(&self) -> btree_map::Values<'_, Arc<str>, SessionRt> {
        self.map.values()
    }

    /// For everything but the machine's state (see the module's docs).
    pub(super) fn values_mut(&mut self) -> btree_map::ValuesMut<'_, Arc<str>, SessionRt> {
        self.map.values_mut()
    }

    /// For everything but the machine's state (see the module's docs).
    pub(super) fn iter_mut(&mut self) -> btree_map::IterMut<'_, Arc<str>, SessionRt> {
        self.map.iter_mut()
    }

    pub(super) fn iter(&self) -> btree_map::Iter<'_, Arc<str>, SessionRt> {
        self.map.iter()
    }
}

impl<'a> IntoIterator for &'a Sessions {
    type Item = (&'a Arc<str>, &'a SessionRt);
    type IntoIter = btree_map::Iter<'a, Arc<str>, SessionRt>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}
