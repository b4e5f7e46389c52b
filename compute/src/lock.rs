//! Row and metadata locks, held until the transaction ends, with FIFO
//! queues and deadlock detection — what InnoDB users expect.
//!
//! Writers lock index keys ([`LockKey::Row`], present or absent) and DML
//! takes its tables' metadata locks ([`LockKey::Table`]) shared; DDL takes
//! them exclusive. S is compatible with S, X with nothing. A transaction
//! holding a key re-enters at once; a sole S holder upgrades to X at once,
//! otherwise the upgrade queues ahead of the other requests. A new request
//! queues behind any waiting request, so writers do not starve.
//!
//! The hot path — a key nobody holds, then [`LockManager::release_all`] at
//! commit — takes one key-shard mutex and one txn-shard mutex, never the
//! wait-for registry. A request that must wait takes the registry mutex,
//! queues, and searches the wait-for graph (edges read from the queues, see
//! `lock/deadlock.rs`); if it closed a cycle it withdraws and is the victim
//! ([`LockError::Deadlock`]), its earlier locks stay held. Because every
//! wait is decided under the registry mutex, the request that closes a cycle
//! always sees the rest of it: exactly one victim per cycle.
//!
//! Lock order: registry → one key shard → one txn shard; never two shards
//! of one kind at once. Memory is bounded by what is held or waited for: a
//! key's entry is dropped once nobody holds or waits for it, a
//! transaction's list once it releases.
//!
//! A waiter is woken by a oneshot send done under its key's shard mutex, so
//! no wakeup is lost. A waiter that gives up (timeout, or its future
//! dropped) removes its request under the same mutex; if it finds the
//! request already granted, a timeout reports the grant
//! ([`Acquired::AfterWait`]) and a dropped future leaves the lock held by
//! the transaction like any other, freed by `release_all`.
//!
//! Contract: a transaction makes one `lock` call at a time, and calls
//! `release_all` when none is in flight.

mod deadlock;
mod entry;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::collections::hash_map::{Entry as MapEntry, RandomState};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use entry::{Decision, Entry, Waiter};

pub type TxnId = u64;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// A key (present or absent) of the index in `space`.
    Row { space: u32, key: Vec<u8> },
    /// A table's metadata lock.
    Table { table_id: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Granted at once (or already held).
    Immediately,
    /// Granted after waiting for another transaction: re-read what it guards.
    AfterWait,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error("Deadlock found when trying to get lock; try restarting transaction")]
    Deadlock,
    #[error("Lock wait timeout exceeded; try restarting transaction")]
    Timeout,
}

/// Shards of the key table and of the per-transaction held lists (powers
/// of two).
const KEY_SHARDS: usize = 64;
const TXN_SHARDS: usize = 64;

type KeyMap = HashMap<LockKey, Entry>;
/// Per transaction, the keys it holds (each once).
type HeldMap = HashMap<TxnId, Vec<LockKey>>;

/// Which request a waiting transaction waits on.
struct WaitSlot {
    key: LockKey,
    ticket: u64,
}

/// A request that could not be granted at once.
enum Queued {
    /// Granted while it was being queued.
    Granted(Acquired),
    Waiting {
        key: LockKey,
        ticket: u64,
        granted: oneshot::Receiver<()>,
    },
}

pub struct LockManager {
    keys: Box<[Mutex<KeyMap>]>,
    /// Per transaction, the keys it holds (each once).
    held: Box<[Mutex<HeldMap>]>,
    /// The wait-for registry: each waiting transaction's request. Taken
    /// only by requests that wait, before any shard.
    waits: Mutex<HashMap<TxnId, WaitSlot>>,
    hasher: RandomState,
    next_ticket: AtomicU64,
    waiting: AtomicUsize,
}

impl LockManager {
    pub fn new() -> LockManager {
        LockManager {
            keys: (0..KEY_SHARDS).map(|_| Mutex::default()).collect(),
            held: (0..TXN_SHARDS).map(|_| Mutex::default()).collect(),
            waits: Mutex::default(),
            hasher: RandomState::new(),
            next_ticket: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Takes `key` in `mode` for `txn`, waiting at most `timeout`.
    pub async fn lock(
        &self,
        txn: TxnId,
        key: LockKey,
        mode: LockMode,
        timeout: Duration,
    ) -> Result<Acquired, LockError> {
        let shard = self.key_shard(&key);
        let key = {
            let mut map = self.keys[shard].lock();
            match self.admit(&mut map, txn, key, mode) {
                None => return Ok(Acquired::Immediately),
                Some((key, _)) => key,
            }
        };
        match self.enqueue(shard, txn, key, mode)? {
            Queued::Granted(acquired) => Ok(acquired),
            Queued::Waiting {
                key,
                ticket,
                granted,
            } => self.wait(shard, txn, key, ticket, granted, timeout).await,
        }
    }

    /// Releases every lock `txn` holds, waking its waiters.
    pub fn release_all(&self, txn: TxnId) {
        let Some(keys) = self.held[txn_shard(txn)].lock().remove(&txn) else {
            return;
        };
        for key in keys {
            let mut map = self.keys[self.key_shard(&key)].lock();
            if let Some(entry) = map.get_mut(&key) {
                entry.release(txn);
                self.grant_waiters(entry, &key);
                if entry.is_idle() {
                    map.remove(&key);
                }
            }
        }
    }

    /// How many keys `txn` holds.
    pub fn held_count(&self, txn: TxnId) -> usize {
        self.held[txn_shard(txn)]
            .lock()
            .get(&txn)
            .map_or(0, Vec::len)
    }

    /// How many requests are queued, over all keys.
    pub fn waiting_count(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    fn key_shard(&self, key: &LockKey) -> usize {
        (self.hasher.hash_one(key) as usize) & (KEY_SHARDS - 1)
    }

    /// Grants at once if it can (`None`); otherwise gives the key back with
    /// whether the request is an upgrade. Called under the key's shard.
    fn admit(
        &self,
        map: &mut KeyMap,
        txn: TxnId,
        key: LockKey,
        mode: LockMode,
    ) -> Option<(LockKey, bool)> {
        match map.entry(key) {
            MapEntry::Vacant(vacant) => {
                self.record_held(txn, vacant.key().clone());
                vacant.insert(Entry::held_by(txn, mode));
                None
            }
            MapEntry::Occupied(mut occupied) => match occupied.get().decide(txn, mode) {
                Decision::AlreadyHeld => None,
                Decision::Grant => {
                    if occupied.get_mut().grant(txn, mode) {
                        self.record_held(txn, occupied.key().clone());
                    }
                    None
                }
                Decision::Wait { upgrade } => Some((occupied.key().clone(), upgrade)),
            },
        }
    }

    fn record_held(&self, txn: TxnId, key: LockKey) {
        self.held[txn_shard(txn)]
            .lock()
            .entry(txn)
            .or_default()
            .push(key);
    }

    /// Queues the request (unless it became grantable meanwhile), then
    /// looks for a cycle through it; on one, withdraws it: `Deadlock`.
    fn enqueue(
        &self,
        shard: usize,
        txn: TxnId,
        key: LockKey,
        mode: LockMode,
    ) -> Result<Queued, LockError> {
        let mut waits = self.waits.lock();
        let Some((key, ticket, granted)) = self.queue_request(shard, txn, key, mode) else {
            return Ok(Queued::Granted(Acquired::Immediately));
        };
        let slot = WaitSlot {
            key: key.clone(),
            ticket,
        };
        waits.insert(txn, slot);
        let cycle = deadlock::closes_cycle(txn, |t| match waits.get(&t) {
            Some(slot) => self.blockers(slot),
            None => Vec::new(),
        });
        if !cycle {
            return Ok(Queued::Waiting {
                key,
                ticket,
                granted,
            });
        }
        waits.remove(&txn);
        if self.dequeue(shard, &key, ticket) {
            tracing::debug!(txn, ?key, "deadlock: the requester is the victim");
            Err(LockError::Deadlock)
        } else {
            Ok(Queued::Granted(Acquired::AfterWait))
        }
    }

    /// Under the key's shard: grants the request (`None`) or queues it,
    /// giving its key, ticket and the receiver its grant will arrive on.
    fn queue_request(
        &self,
        shard: usize,
        txn: TxnId,
        key: LockKey,
        mode: LockMode,
    ) -> Option<(LockKey, u64, oneshot::Receiver<()>)> {
        let mut map = self.keys[shard].lock();
        let (key, upgrade) = self.admit(&mut map, txn, key, mode)?;
        let entry = map.get_mut(&key).expect("admit found the entry occupied");
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let (tx, granted) = oneshot::channel();
        entry.enqueue(Waiter {
            txn,
            mode,
            ticket,
            upgrade,
            granted: tx,
        });
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Some((key, ticket, granted))
    }

    /// Whom the queued request in `slot` waits for, now.
    fn blockers(&self, slot: &WaitSlot) -> Vec<TxnId> {
        let map = self.keys[self.key_shard(&slot.key)].lock();
        map.get(&slot.key)
            .map_or_else(Vec::new, |entry| entry.blockers(slot.ticket))
    }

    async fn wait(
        &self,
        shard: usize,
        txn: TxnId,
        key: LockKey,
        ticket: u64,
        granted: oneshot::Receiver<()>,
        timeout: Duration,
    ) -> Result<Acquired, LockError> {
        let mut guard = WaitGuard {
            manager: self,
            shard,
            txn,
            key,
            ticket,
            done: false,
        };
        let outcome = tokio::time::timeout(timeout, granted).await;
        // A closed channel cannot happen (the sender is dropped only after
        // sending or with the request withdrawn by this guard); treat it
        // like the deadline: withdraw and see whether it was granted.
        let still_queued = match outcome {
            Ok(Ok(())) => false,
            Ok(Err(_)) | Err(_) => guard.withdraw(),
        };
        guard.finish();
        if still_queued {
            Err(LockError::Timeout)
        } else {
            Ok(Acquired::AfterWait)
        }
    }

    /// Removes the request `ticket` from `key`'s queue, granting whom that
    /// unblocks; false when it was not queued any more (it was granted).
    fn dequeue(&self, shard: usize, key: &LockKey, ticket: u64) -> bool {
        let mut map = self.keys[shard].lock();
        let Some(entry) = map.get_mut(key) else {
            return false;
        };
        if !entry.remove_waiter(ticket) {
            return false;
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.grant_waiters(entry, key);
        if entry.is_idle() {
            map.remove(key);
        }
        true
    }

    /// Grants queued requests from the head while they fit, waking each.
    fn grant_waiters(&self, entry: &mut Entry, key: &LockKey) {
        while let Some(waiter) = entry.pop_grantable() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if entry.grant(waiter.txn, waiter.mode) {
                self.record_held(waiter.txn, key.clone());
            }
            // A dropped receiver is a waiter giving up right now; its guard
            // finds the request granted and leaves the lock held.
            let _ = waiter.granted.send(());
        }
    }

    fn unregister(&self, txn: TxnId, ticket: u64) {
        let mut waits = self.waits.lock();
        if waits.get(&txn).is_some_and(|slot| slot.ticket == ticket) {
            waits.remove(&txn);
        }
    }

    #[cfg(test)]
    fn entry_count(&self) -> usize {
        self.keys.iter().map(|shard| shard.lock().len()).sum()
    }
}

impl Default for LockManager {
    fn default() -> Self {
        LockManager::new()
    }
}

fn txn_shard(txn: TxnId) -> usize {
    // Fibonacci hashing: consecutive ids spread over the shards.
    let bits = TXN_SHARDS.trailing_zeros();
    (txn.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

/// A queued request's owner: withdraws it if the waiting future is dropped,
/// and takes it out of the wait-for registry in every case.
struct WaitGuard<'a> {
    manager: &'a LockManager,
    shard: usize,
    txn: TxnId,
    key: LockKey,
    ticket: u64,
    done: bool,
}

impl WaitGuard<'_> {
    /// True when the request was still queued (and is now gone).
    fn withdraw(&mut self) -> bool {
        self.manager.dequeue(self.shard, &self.key, self.ticket)
    }

    fn finish(&mut self) {
        self.manager.unregister(self.txn, self.ticket);
        self.done = true;
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Cancelled: if it was granted meanwhile, the lock stays held
            // by the transaction and `release_all` frees it.
            self.withdraw();
            self.finish();
        }
    }
}
