//! The pool's side queues, each naming versions by (page, id): the clock
//! over unpinned versions, the release queue ordered by `to`, and the
//! pinned versions in `from` order.
//!
//! Entries may go stale (their version was evicted, released, discarded
//! or re-clipped): every reader of a queue looks the version up again
//! under its shard lock and skips what is gone. Stale entries are
//! compacted away once they outnumber live versions, so the queues stay
//! proportional to the pool.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use parking_lot::Mutex;
use strata_wal::{Lsn, PageId};

/// A version, named: its page, its `from` (to find it in the page's
/// sorted list) and its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Slot {
    pub page: PageId,
    pub from: Lsn,
    pub id: u64,
}

/// Entries past which the queues are compacted, beyond twice the live
/// versions: small pools never bother.
pub(super) const STALE_SLACK: usize = 1024;

#[derive(Default)]
pub(super) struct Queues {
    /// Unpinned versions; the hand is the front.
    clock: Mutex<VecDeque<Slot>>,
    /// Versions with a finite `to`, smallest `to` first.
    ends: Mutex<BinaryHeap<Reverse<(Lsn, Slot)>>>,
}

impl Queues {
    pub fn push_clock(&self, slot: Slot) {
        self.clock.lock().push_back(slot);
    }

    pub fn extend_clock(&self, slots: Vec<Slot>) {
        if !slots.is_empty() {
            self.clock.lock().extend(slots);
        }
    }

    pub fn pop_clock(&self) -> Option<Slot> {
        self.clock.lock().pop_front()
    }

    pub fn clock_len(&self) -> usize {
        self.clock.lock().len()
    }

    /// Notes that the version in `slot` now ends at `to`.
    pub fn push_end(&self, slot: Slot, to: Lsn) {
        if to != Lsn::MAX {
            self.ends.lock().push(Reverse((to, slot)));
        }
    }

    /// Takes every entry ending at or below `bound`.
    pub fn pop_ended(&self, bound: Lsn) -> Vec<Slot> {
        let mut ends = self.ends.lock();
        let mut out = Vec::new();
        while let Some(Reverse((to, slot))) = ends.peek().copied() {
            if to > bound {
                break;
            }
            ends.pop();
            out.push(slot);
        }
        out
    }

    /// Whether stale entries dominate, given `live` versions.
    pub fn is_stale(&self, live: usize) -> bool {
        let limit = 2 * live + STALE_SLACK;
        self.clock.lock().len() > limit || self.ends.lock().len() > limit
    }

    /// Takes the whole clock out, to sift stale entries without holding
    /// its lock; [`Queues::restore_clock`] puts the survivors back.
    pub fn take_clock(&self) -> VecDeque<Slot> {
        std::mem::take(&mut *self.clock.lock())
    }

    /// Puts `kept` back ahead of whatever was pushed meanwhile (it is older).
    pub fn restore_clock(&self, mut kept: VecDeque<Slot>) {
        let mut clock = self.clock.lock();
        kept.append(&mut clock);
        *clock = kept;
    }

    pub fn take_ends(&self) -> Vec<(Lsn, Slot)> {
        let ends = std::mem::take(&mut *self.ends.lock());
        ends.into_iter().map(|Reverse(e)| e).collect()
    }

    pub fn restore_ends(&self, kept: Vec<(Lsn, Slot)>) {
        self.ends.lock().extend(kept.into_iter().map(Reverse));
    }

    #[cfg(test)]
    pub fn lens(&self) -> (usize, usize) {
        (self.clock.lock().len(), self.ends.lock().len())
    }
}

/// The pinned versions, `from` ascending. Batches arrive in LSN order
/// (each image's LSN is above the previous batch's applied LSN), so
/// sorting each batch keeps the whole queue sorted.
#[derive(Default)]
pub(super) struct Pinned {
    queue: VecDeque<(Lsn, Slot)>,
}

impl Pinned {
    pub fn push_batch(&mut self, mut batch: Vec<(Lsn, Slot)>) {
        batch.sort_by_key(|(from, _)| *from);
        self.queue.extend(batch);
    }

    /// The next pinned version from at or below `lsn`, taken off.
    pub fn pop_through(&mut self, lsn: Lsn) -> Option<Slot> {
        match self.queue.front() {
            Some(&(from, slot)) if from <= lsn => {
                self.queue.pop_front();
                Some(slot)
            }
            _ => None,
        }
    }

    pub fn clear(&mut self) {
        self.queue.clear();
    }
}
