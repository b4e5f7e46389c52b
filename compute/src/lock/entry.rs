//! One key's lock state: the transactions holding it and the requests
//! waiting for it, in arrival order.
//!
//! This module is pure bookkeeping under the caller's shard mutex: it never
//! locks, waits or wakes anything itself (waking is sending on a waiter's
//! channel, which the manager does after [`Entry::pop_grantable`]).
//!
//! Invariants, kept by the manager calling [`Entry::pop_grantable`] after
//! every change that can unblock a waiter:
//! - a transaction appears at most once among the holders;
//! - if the queue is not empty, its head cannot be granted (so the holders
//!   are not empty either), hence a new request that is not re-entrant waits
//!   whenever anyone is queued: FIFO, no writer starvation;
//! - upgrade requests (S→X by a current holder) queue before every other
//!   request, because the requests behind them wait for them anyway (they
//!   hold S), and queueing them at the back would be a certain deadlock.

use std::collections::VecDeque;

use tokio::sync::oneshot;

use super::{LockMode, TxnId};

/// `a` and `b` can be held at once by two transactions.
pub(super) fn compatible(a: LockMode, b: LockMode) -> bool {
    a == LockMode::Shared && b == LockMode::Shared
}

/// Holding `held` already gives what a request for `wanted` asks for.
fn covers(held: LockMode, wanted: LockMode) -> bool {
    held == LockMode::Exclusive || wanted == LockMode::Shared
}

#[derive(Debug)]
struct Holder {
    txn: TxnId,
    mode: LockMode,
}

/// A queued request; granting it means sending on `granted`.
#[derive(Debug)]
pub(super) struct Waiter {
    pub(super) txn: TxnId,
    pub(super) mode: LockMode,
    /// Unique per request, so a waiter can find (and withdraw) itself.
    pub(super) ticket: u64,
    pub(super) upgrade: bool,
    pub(super) granted: oneshot::Sender<()>,
}

/// What a new request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// The transaction already holds this mode or a stronger one.
    AlreadyHeld,
    /// Compatible and nobody queued (or a sole holder's upgrade).
    Grant,
    /// Must queue; `upgrade` when the requester holds the key in S.
    Wait { upgrade: bool },
}

#[derive(Debug, Default)]
pub(super) struct Entry {
    holders: Vec<Holder>,
    queue: VecDeque<Waiter>,
}

impl Entry {
    pub(super) fn held_by(txn: TxnId, mode: LockMode) -> Entry {
        Entry {
            holders: vec![Holder { txn, mode }],
            queue: VecDeque::new(),
        }
    }

    /// Neither held nor waited for: the manager drops it.
    pub(super) fn is_idle(&self) -> bool {
        self.holders.is_empty() && self.queue.is_empty()
    }

    pub(super) fn decide(&self, txn: TxnId, mode: LockMode) -> Decision {
        if let Some(held) = self.holders.iter().find(|h| h.txn == txn) {
            if covers(held.mode, mode) {
                return Decision::AlreadyHeld;
            }
            if self.holders.len() == 1 {
                return Decision::Grant;
            }
            return Decision::Wait { upgrade: true };
        }
        let fits = self.holders.iter().all(|h| compatible(h.mode, mode));
        if fits && self.queue.is_empty() {
            Decision::Grant
        } else {
            Decision::Wait { upgrade: false }
        }
    }

    /// Makes `txn` a holder in `mode` (or raises its mode); true when it was
    /// not a holder before, i.e. the key joins the transaction's held list.
    pub(super) fn grant(&mut self, txn: TxnId, mode: LockMode) -> bool {
        match self.holders.iter_mut().find(|h| h.txn == txn) {
            Some(held) => {
                if !covers(held.mode, mode) {
                    held.mode = mode;
                }
                false
            }
            None => {
                self.holders.push(Holder { txn, mode });
                true
            }
        }
    }

    /// Queues `waiter`: upgrades after the upgrades already queued, other
    /// requests at the back.
    pub(super) fn enqueue(&mut self, waiter: Waiter) {
        if waiter.upgrade {
            let at = self.queue.iter().take_while(|w| w.upgrade).count();
            self.queue.insert(at, waiter);
        } else {
            self.queue.push_back(waiter);
        }
    }

    /// Removes the request `ticket`; false when it is no longer queued
    /// (it was granted).
    pub(super) fn remove_waiter(&mut self, ticket: u64) -> bool {
        match self.queue.iter().position(|w| w.ticket == ticket) {
            Some(at) => {
                self.queue.remove(at);
                true
            }
            None => false,
        }
    }

    /// Pops the head of the queue if it can be granted now. The caller
    /// grants it ([`Entry::grant`]) and wakes it, then calls again.
    pub(super) fn pop_grantable(&mut self) -> Option<Waiter> {
        let head = self.queue.front()?;
        let fits = self
            .holders
            .iter()
            .all(|h| h.txn == head.txn || compatible(h.mode, head.mode));
        if fits { self.queue.pop_front() } else { None }
    }

    /// Drops `txn` from the holders (its queued requests stay).
    pub(super) fn release(&mut self, txn: TxnId) {
        self.holders.retain(|h| h.txn != txn);
    }

    /// The transactions the request `ticket` waits for: the holders and the
    /// requests queued ahead of it whose modes conflict with its own. Empty
    /// when the request is not queued any more.
    pub(super) fn blockers(&self, ticket: u64) -> Vec<TxnId> {
        let Some(at) = self.queue.iter().position(|w| w.ticket == ticket) else {
            return Vec::new();
        };
        let me = &self.queue[at];
        let conflicts = |txn: TxnId, mode: LockMode| txn != me.txn && !compatible(mode, me.mode);
        let holders = self.holders.iter().filter(|h| conflicts(h.txn, h.mode));
        let ahead = self.queue.range(..at).filter(|w| conflicts(w.txn, w.mode));
        holders.map(|h| h.txn).chain(ahead.map(|w| w.txn)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockMode::{Exclusive as X, Shared as S};

    fn waiter(txn: TxnId, mode: LockMode, ticket: u64, upgrade: bool) -> Waiter {
        let (granted, _) = oneshot::channel();
        Waiter {
            txn,
            mode,
            ticket,
            upgrade,
            granted,
        }
    }

    #[test]
    fn decisions() {
        let mut e = Entry::held_by(1, S);
        assert_eq!(e.decide(1, S), Decision::AlreadyHeld);
        assert_eq!(e.decide(1, X), Decision::Grant, "sole holder upgrades");
        assert_eq!(e.decide(2, S), Decision::Grant);
        assert_eq!(e.decide(2, X), Decision::Wait { upgrade: false });
        assert!(e.grant(2, S));
        assert_eq!(e.decide(1, X), Decision::Wait { upgrade: true });
        e.enqueue(waiter(3, X, 1, false));
        assert_eq!(e.decide(4, S), Decision::Wait { upgrade: false }, "FIFO");
        assert_eq!(e.decide(2, S), Decision::AlreadyHeld, "re-entrant");
    }

    #[test]
    fn upgrades_queue_first_and_block_by_mode() {
        let mut e = Entry::held_by(1, S);
        e.grant(2, S);
        e.enqueue(waiter(3, X, 10, false));
        e.enqueue(waiter(1, X, 11, true));
        assert_eq!(e.blockers(11), vec![2], "the upgrade waits for 2 only");
        assert_eq!(e.blockers(10), vec![1, 2, 1]);
        assert!(e.pop_grantable().is_none());
        e.release(2);
        let head = e.pop_grantable().expect("the upgrade is grantable");
        assert_eq!((head.txn, head.ticket), (1, 11));
        assert!(!e.grant(1, X), "already a holder");
        assert!(e.pop_grantable().is_none(), "3 waits for 1's X");
        assert!(e.remove_waiter(10));
        assert!(!e.remove_waiter(10));
        assert!(e.blockers(10).is_empty());
        e.release(1);
        assert!(e.is_idle());
    }
}
