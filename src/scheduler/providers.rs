//! The scheduler's providers by stable id. Heap entries, jobs in flight and
//! their results name a provider by its id (its index here), so an id is
//! never reused: a provider removed by a reload leaves an empty slot, which
//! no lookup by name finds and no iteration visits, and the results of its
//! jobs still in flight find no provider and are dropped. An added provider
//! (also one that comes back under an old name) gets a new id.
//!
//! `providers[p]` is for an id the caller got from a live provider in the
//! same turn of the loop (a reload runs inside the loop, so none disappears
//! in between); what carries an id over from an earlier turn — a heap entry,
//! a job's result or owner — looks it up with [`Slots::get`].

use std::ops::{Index, IndexMut};

use super::ProviderRt;

/// The scheduler's providers.
pub(super) type Providers = Slots<ProviderRt>;

/// Values by stable id: ids are handed out in order and never reused.
pub(super) struct Slots<T> {
    slots: Vec<Option<T>>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots { slots: Vec::new() }
    }
}

impl<T> Slots<T> {
    /// The value with id `p`, unless it was removed.
    pub(super) fn get(&self, p: usize) -> Option<&T> {
        self.slots.get(p).and_then(Option::as_ref)
    }

    pub(super) fn get_mut(&mut self, p: usize) -> Option<&mut T> {
        self.slots.get_mut(p).and_then(Option::as_mut)
    }

    /// The ids of the values not removed, in the order they were added (for
    /// loops that act on the scheduler per provider).
    pub(super) fn ids(&self) -> Vec<usize> {
        self.enumerate().map(|(p, _)| p).collect()
    }

    /// The values not removed, with their ids.
    pub(super) fn enumerate(&self) -> impl Iterator<Item = (usize, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(p, slot)| slot.as_ref().map(|v| (p, v)))
    }

    /// The values not removed.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().flatten()
    }

    /// Adds a value under a new id.
    pub(super) fn add(&mut self, v: T) -> usize {
        self.slots.push(Some(v));
        self.slots.len() - 1
    }

    /// Empties the slot of `p`; its id is never given out again.
    pub(super) fn remove(&mut self, p: usize) -> Option<T> {
        self.slots.get_mut(p).and_then(Option::take)
    }
}

impl Providers {
    /// The id of the provider named `name` (a removed one has none).
    pub(super) fn find(&self, name: &str) -> Option<usize> {
        self.enumerate()
            .find(|(_, pr)| pr.cfg.name == name)
            .map(|(p, _)| p)
    }
}

impl<T> Index<usize> for Slots<T> {
    type Output = T;

    fn index(&self, p: usize) -> &T {
        match self.get(p) {
            Some(v) => v,
            None => panic!("id {p} is not live (see the module comment)"),
        }
    }
}

impl<T> IndexMut<usize> for Slots<T> {
    fn index_mut(&mut self, p: usize) -> &mut T {
        match self.get_mut(p) {
            Some(v) => v,
            None => panic!("id {p} is not live (see the module comment)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[test]
    fn a_removed_id_is_never_reused_nor_visited() {
        let mut s = Slots::default();
        let (a, b) = (s.add("a"), s.add("b"));
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None, "removed once");
        let c = s.add("a again");
        assert_ne!(c, a, "a new id, not the old one");
        assert_eq!(s.get(a), None);
        assert_eq!(s[b], "b");
        assert_eq!(s.ids(), vec![b, c]);
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), ["b", "a again"]);
        assert_eq!(s.enumerate().map(|(p, _)| p).collect::<Vec<_>>(), [b, c]);
        assert_eq!(s.get(99), None);
    }

    #[test]
    #[should_panic(expected = "is not live")]
    fn indexing_a_removed_id_is_a_bug() {
        let mut s = Slots::default();
        let a = s.add(1);
        s.remove(a);
        let _ = s[a];
    }
}
