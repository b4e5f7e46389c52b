//! The versioned buffer pool: a cache of immutable page images
//! (`Arc<Page>`), each valid over an LSN range `[from, to)`.
//!
//! It owns every page version this node holds, the applied and durable
//! LSNs, and each page's last-written LSN. It never reads or writes
//! anything anywhere: misses are fetched by [`crate::source::Fetcher`] and
//! inserted here; eviction only drops.
//!
//! # Invariants
//!
//! - **True ranges.** A version claims only what its writer or its source
//!   vouched for. The applier is the one writer of the whole database:
//!   [`BufferPool::publish`] makes each image the page's open version
//!   `[page LSN, MAX)` and closes the previous one there. Inserted versions
//!   are clipped at the first write this node knows of after their `from`
//!   and at the next cached version, so a page's versions never overlap.
//!   Only the write path claims `to = MAX` for a fetched image ("current
//!   until this node writes it"); [`BufferPool::insert_current`] checks,
//!   under the page's lock, that no publish wrote the page since the fetch
//!   was sent, and keeps only the source's range otherwise.
//! - **All or nothing.** `applied` moves (Release) only after every image
//!   of a batch is in place, each page's close-and-add done under its shard
//!   lock. A reader takes its snapshot `S <= applied` (Acquire) and so sees
//!   all of a batch or none of it; a read above `applied` is not a snapshot
//!   and may see part of a batch.
//! - **Pinned.** A version whose `from` is above the durable LSN exists
//!   nowhere else: it is pinned, never evicted nor released, and counted
//!   in `pinned_bytes`. Published versions start pinned (their `from` is
//!   above the old applied LSN, itself at or above the durable one);
//!   [`BufferPool::mark_durable`] unpins them in LSN order. The engine
//!   bounds `pinned_bytes` (it waits before publishing more).
//! - **Release.** [`BufferPool::release_below`] drops versions ending at or
//!   below `min(oldest snapshot, durable)`. Any version from at or below
//!   the durable LSN could be rebuilt by the page server, so the second
//!   bound is not needed for truth; it keeps the version a non-durable
//!   write closed (the one [`discard_above`] falls back to) cached for the
//!   failure path, and it means release never meets a pinned version.
//! - **Failure.** [`BufferPool::discard_above`] drops every version above
//!   the durable LSN, ends every remaining version at `durable + 1` (this
//!   node no longer knows what comes after: another writer may take over),
//!   sets `applied` back to `durable`, forgets last writes above it, and
//!   from then on clips every insert there too and takes no `to = MAX`
//!   claim. The write path is dead after it.
//!
//! [`discard_above`]: BufferPool::discard_above
//!
//! # Hot path
//!
//! [`BufferPool::get`] runs on every page access of every query: it hashes
//! the page id (a multiply-rotate hash, not SipHash) to one of
//! [`SHARDS`] shards, takes that shard's `parking_lot` mutex, finds the
//! page's few versions (newest first), sets the version's reference bit,
//! bumps the shard's hit or miss count and clones the `Arc`. No global lock,
//! no global atomic write. Eviction is a clock over unpinned versions (a
//! global queue touched only on inserts, unpins and eviction): the hand
//! gives a referenced version a second chance, which is LRU up to the
//! tolerance of one bit.
//!
//! Known limit: a page every query reads (a B+tree root) makes its shard
//! lock and its `Arc` count cache lines all cores write. If that shows in
//! profiles, the next steps are a read lock with an atomic reference bit,
//! or callers keeping the root's `Arc` for a whole statement.
//!
//! # Memory
//!
//! Beside the images (8 KiB a version, the only bytes counted against
//! `budget_bytes`), the pool keeps one entry per page written since the
//! node started, even when its versions are gone: page id, last-written LSN
//! and an empty version list, about 48 bytes with the hash table's
//! overhead — 48 MiB for a million distinct pages written. The clock and
//! release queues hold 16–24 bytes per version and are compacted when stale
//! entries outnumber live versions.

mod queues;
mod versions;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};
use strata_wal::page::{PAGE_SIZE, Page};
use strata_wal::{Lsn, PageId};

use queues::{Pinned, Queues, Slot};
use versions::{Inserted, PageEntry, Version};

/// Bytes one version counts for.
pub const VERSION_BYTES: u64 = PAGE_SIZE as u64;
/// Shards of the page map; a power of two.
pub const SHARDS: usize = 64;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub versions: u64,
    pub bytes: u64,
    /// Bytes of versions above the durable LSN (pinned).
    pub pinned_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    /// Versions dropped by `release_below` (no snapshot needs them).
    pub released: u64,
}

/// One shard of the page map, with its share of the hit and miss counts
/// (kept under the shard's lock so a hit writes no shared cache line).
#[derive(Default)]
struct Shard {
    pages: HashMap<PageId, PageEntry, PageHash>,
    hits: u64,
    misses: u64,
}

impl Shard {
    /// Drops the page's entry if it holds nothing any more.
    fn tidy(&mut self, page: PageId) {
        if self.pages.get(&page).is_some_and(PageEntry::is_empty) {
            self.pages.remove(&page);
        }
    }
}

/// The pool-wide figures that are not per shard.
#[derive(Default)]
struct Counters {
    versions: AtomicU64,
    bytes: AtomicU64,
    pinned_bytes: AtomicU64,
    evictions: AtomicU64,
    released: AtomicU64,
}

impl Counters {
    fn added(&self, pinned: bool) {
        self.versions.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(VERSION_BYTES, Ordering::Relaxed);
        if pinned {
            self.pinned_bytes
                .fetch_add(VERSION_BYTES, Ordering::Relaxed);
        }
    }

    fn removed(&self, v: &Version) {
        self.versions.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(VERSION_BYTES, Ordering::Relaxed);
        if v.pinned {
            self.pinned_bytes
                .fetch_sub(VERSION_BYTES, Ordering::Relaxed);
        }
    }

    fn unpinned(&self) {
        self.pinned_bytes
            .fetch_sub(VERSION_BYTES, Ordering::Relaxed);
    }
}

pub struct BufferPool {
    shards: Box<[Mutex<Shard>]>,
    hash: PageHash,
    budget_bytes: u64,
    start: Lsn,
    applied: AtomicU64,
    durable: AtomicU64,
    /// Inserts are clipped here: `MAX`, or `durable + 1` after a discard.
    ceiling: AtomicU64,
    /// The pinned versions in `from` order; its lock also serializes the
    /// writer-side calls (publish, mark_durable, discard_above).
    pinned: Mutex<Pinned>,
    queues: Queues,
    next_id: AtomicU64,
    counters: Counters,
}

impl BufferPool {
    /// A pool holding at most about `budget_bytes` of page images (pinned
    /// versions may exceed it; the engine bounds them). `start` is the log
    /// end when this node started: no page was written after it but by
    /// this node, and the applied and durable LSNs start there.
    pub fn new(budget_bytes: u64, start: Lsn) -> BufferPool {
        BufferPool {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hash: PageHash,
            budget_bytes,
            start,
            applied: AtomicU64::new(start.0),
            durable: AtomicU64::new(start.0),
            ceiling: AtomicU64::new(Lsn::MAX.0),
            pinned: Mutex::default(),
            queues: Queues::default(),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
        }
    }

    fn shard(&self, page: PageId) -> &Mutex<Shard> {
        // Bits 32.. of the hash: the map inside uses the low bits for its
        // buckets and the top seven for its tags.
        let h = self.hash.hash_one(page);
        &self.shards[(h >> 32) as usize & (SHARDS - 1)]
    }

    fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The version of `page` valid at `lsn`, if cached.
    pub fn get(&self, page: PageId, lsn: Lsn) -> Option<Arc<Page>> {
        let mut shard = self.shard(page).lock();
        let found = shard
            .pages
            .get_mut(&page)
            .and_then(|e| e.lookup(lsn))
            .map(|v| {
                v.referenced = true;
                Arc::clone(&v.image)
            });
        if found.is_some() {
            shard.hits += 1;
        } else {
            shard.misses += 1;
        }
        found
    }

    /// Every cached version valid at `lsn`, with its page (for checks and
    /// tools: it takes every shard's lock in turn).
    pub fn versions_at(&self, lsn: Lsn) -> Vec<(PageId, Arc<Page>)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for (page, entry) in &shard.pages {
                if let Some(v) = entry.versions().iter().find(|v| v.covers(lsn)) {
                    out.push((*page, Arc::clone(&v.image)));
                }
            }
        }
        out
    }

    /// The open version of `page` (valid until this node writes it), if
    /// cached: what the write path reads. Counted as a hit or a miss.
    pub fn get_current(&self, page: PageId) -> Option<Arc<Page>> {
        let mut shard = self.shard(page).lock();
        let found = shard
            .pages
            .get_mut(&page)
            .and_then(|e| e.current())
            .map(|v| {
                v.referenced = true;
                Arc::clone(&v.image)
            });
        if found.is_some() {
            shard.hits += 1;
        } else {
            shard.misses += 1;
        }
        found
    }

    /// `get` without counting a hit or miss or touching recency: for the
    /// fetcher's second look.
    pub(crate) fn peek(&self, page: PageId, lsn: Lsn) -> Option<Arc<Page>> {
        let mut shard = self.shard(page).lock();
        let entry = shard.pages.get_mut(&page)?;
        entry.lookup(lsn).map(|v| Arc::clone(&v.image))
    }

    /// `get_current` without counting a hit or miss.
    pub(crate) fn peek_current(&self, page: PageId) -> Option<Arc<Page>> {
        let mut shard = self.shard(page).lock();
        let entry = shard.pages.get_mut(&page)?;
        entry.current().map(|v| Arc::clone(&v.image))
    }

    /// Whether [`BufferPool::discard_above`] ran: the write path is dead.
    pub fn is_fenced(&self) -> bool {
        self.ceiling.load(Ordering::Acquire) != Lsn::MAX.0
    }

    /// The LSN to fetch `page` at for the write path: the LSN of the last
    /// batch this node published that wrote it, else `start`.
    pub fn last_written(&self, page: PageId) -> Lsn {
        let shard = self.shard(page).lock();
        let written = shard.pages.get(&page).map_or(Lsn::ZERO, |e| e.written);
        if written == Lsn::ZERO {
            self.start
        } else {
            written
        }
    }

    /// Whether an image of `page` with page LSN `page_lsn`, current when it
    /// was read, still is: no publish wrote the page after it.
    pub fn still_current(&self, page: PageId, page_lsn: Lsn) -> bool {
        if self.is_fenced() {
            return false;
        }
        let shard = self.shard(page).lock();
        match shard.pages.get(&page).map_or(Lsn::ZERO, |e| e.written) {
            Lsn::ZERO => page_lsn <= self.start,
            written => written == page_lsn,
        }
    }

    /// Adds a version fetched from a page source, valid `[from, to)`;
    /// `to` is clipped to what this node has written since.
    ///
    /// `to = MAX` (the write path) is true only if `image` was fetched at
    /// `last_written(page)` and no publish wrote the page since; if one
    /// wrote it twice meanwhile, the clip at the last write is too late.
    /// Prefer [`BufferPool::insert_current`], which checks that itself.
    ///
    /// After [`BufferPool::discard_above`] this node knows nothing past the
    /// durable LSN, and its last-written LSNs above it are forgotten: a
    /// `to = MAX` claim is then taken as valid at `from` only.
    pub fn insert(&self, page: PageId, image: Arc<Page>, from: Lsn, to: Lsn) {
        self.insert_with(page, image, from, |_, fenced| {
            if fenced && to == Lsn::MAX {
                Lsn(from.0.saturating_add(1))
            } else {
                to
            }
        });
    }

    /// Adds the write path's version: `image` was fetched at `fetched_at`
    /// (the page's `last_written` then) and its source vouched `[from, to)`.
    /// If the page's last write is still `fetched_at`, the version is the
    /// current one and is cached open (`to = MAX`); otherwise a publish
    /// overtook the fetch and only the source's `to` is kept.
    pub fn insert_current(
        &self,
        page: PageId,
        image: Arc<Page>,
        from: Lsn,
        to: Lsn,
        fetched_at: Lsn,
    ) {
        self.insert_with(page, image, from, |last_written, fenced| {
            if last_written == fetched_at && !fenced {
                Lsn::MAX
            } else {
                to
            }
        });
    }

    /// Inserts with the `to` that `to_for(last_written, fenced)` chooses,
    /// under the page's shard lock so that no publish slips between the
    /// two. `fenced`: a discard happened, the write path is dead.
    fn insert_with(
        &self,
        page: PageId,
        image: Arc<Page>,
        from: Lsn,
        to_for: impl FnOnce(Lsn, bool) -> Lsn,
    ) {
        let id = self.new_id();
        let outcome = {
            let mut shard = self.shard(page).lock();
            // Read under the lock: a discard sets it before it sweeps the
            // shards, so either it sweeps this insert or this sees it.
            let ceiling = Lsn(self.ceiling.load(Ordering::Acquire));
            let entry = shard.pages.entry(page).or_default();
            let last = match entry.written {
                Lsn::ZERO => self.start,
                w => w,
            };
            let to = to_for(last, ceiling != Lsn::MAX).min(ceiling);
            let outcome = entry.insert(image, from, to, id);
            if let Inserted::Added { .. } = outcome {
                self.counters.added(false);
            }
            shard.tidy(page);
            outcome
        };
        match outcome {
            Inserted::Added { id, to } => {
                let slot = Slot { page, from, id };
                self.queues.push_clock(slot);
                self.queues.push_end(slot, to);
                self.evict_to_budget();
                self.compact_if_stale();
            }
            // The extended version has the same `from`.
            Inserted::Extended { id, to } => self.queues.push_end(Slot { page, from, id }, to),
            Inserted::Refused => {}
        }
    }

    /// The applier publishes one batch, all or nothing: each image becomes
    /// the page's current version from its page LSN, closing the previous
    /// one there; then the applied LSN becomes `applied`.
    pub fn publish(&self, images: Vec<(PageId, Arc<Page>)>, applied: Lsn) {
        let mut pinned = self.pinned.lock();
        let durable = self.durable_lsn();
        let mut new_pinned = Vec::with_capacity(images.len());
        for (page, image) in images {
            let lsn = image.lsn();
            debug_assert!(lsn <= applied, "page {page} at {lsn} above {applied}");
            let id = self.new_id();
            let is_pinned = lsn > durable;
            let out = {
                let mut shard = self.shard(page).lock();
                let entry = shard.pages.entry(page).or_default();
                let out = entry.publish(image, lsn, id, is_pinned);
                self.counters.added(is_pinned);
                for v in &out.removed {
                    self.counters.removed(v);
                }
                out
            };
            debug_assert!(out.removed.is_empty(), "page {page} written out of order");
            if let Some(c) = out.closed {
                let closed = Slot {
                    page,
                    from: c.from,
                    id: c.id,
                };
                self.queues.push_end(closed, c.to);
            }
            let slot = Slot {
                page,
                from: lsn,
                id,
            };
            if is_pinned {
                new_pinned.push((lsn, slot));
            } else {
                self.queues.push_clock(slot);
            }
        }
        pinned.push_batch(new_pinned);
        self.applied.fetch_max(applied.0, Ordering::Release);
        drop(pinned);
        self.evict_to_budget();
    }

    pub fn applied_lsn(&self) -> Lsn {
        Lsn(self.applied.load(Ordering::Acquire))
    }

    /// The quorum has everything up to `lsn`: versions from at or below it
    /// may be evicted.
    pub fn mark_durable(&self, lsn: Lsn) {
        let mut pinned = self.pinned.lock();
        self.unpin_through(&mut pinned, lsn);
        drop(pinned);
        self.evict_to_budget();
    }

    /// Moves the durable LSN up to `lsn` and unpins the versions it covers.
    fn unpin_through(&self, pinned: &mut MutexGuard<'_, Pinned>, lsn: Lsn) {
        if lsn <= self.durable_lsn() {
            return;
        }
        self.durable.store(lsn.0, Ordering::Release);
        let mut unpinned = Vec::new();
        while let Some(slot) = pinned.pop_through(lsn) {
            let mut shard = self.shard(slot.page).lock();
            let Some(entry) = shard.pages.get_mut(&slot.page) else {
                continue;
            };
            let Some(v) = entry
                .position(slot.from, slot.id)
                .and_then(|i| entry.get_mut(i))
            else {
                continue;
            };
            if v.pinned {
                v.pinned = false;
                self.counters.unpinned();
                unpinned.push(slot);
            }
        }
        self.queues.extend_clock(unpinned);
    }

    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.durable.load(Ordering::Acquire))
    }

    /// The failure path: drops every version above `durable` and makes
    /// the applied LSN `durable` again.
    ///
    /// Versions at or below the pool's durable LSN are durable on the
    /// quorum whatever the caller says, so the pool discards above the
    /// larger of the two.
    pub fn discard_above(&self, durable: Lsn) {
        let mut pinned = self.pinned.lock();
        self.unpin_through(&mut pinned, durable);
        let durable = self.durable_lsn();
        self.applied.store(durable.0, Ordering::Release);
        let ceiling = Lsn(durable.0.saturating_add(1));
        self.ceiling.store(ceiling.0, Ordering::Release);
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let mut clipped = Vec::new();
            for (&page, entry) in shard.pages.iter_mut() {
                let out = entry.discard_above(durable);
                for v in &out.removed {
                    self.counters.removed(v);
                }
                clipped.extend(out.clipped.map(|c| {
                    let slot = Slot {
                        page,
                        from: c.from,
                        id: c.id,
                    };
                    (slot, c.to)
                }));
            }
            shard.pages.retain(|_, e| !e.is_empty());
            drop(shard);
            for (slot, to) in clipped {
                self.queues.push_end(slot, to);
            }
        }
        // Everything above `durable` is gone, so nothing is pinned.
        pinned.clear();
    }

    /// No snapshot below `oldest` remains: versions that ended at or below
    /// it can go.
    ///
    /// Only those ending at or below the durable LSN too (see the module
    /// header): what a discard falls back to stays cached, and no pinned
    /// version is ever released.
    pub fn release_below(&self, oldest: Lsn) {
        let bound = oldest.min(self.durable_lsn());
        for slot in self.queues.pop_ended(bound) {
            let page = slot.page;
            let mut shard = self.shard(page).lock();
            let Some(entry) = shard.pages.get_mut(&page) else {
                continue;
            };
            let Some(i) = entry.position(slot.from, slot.id) else {
                continue;
            };
            let v = &entry.versions()[i];
            // Its `to` may have been extended since the queue entry.
            if v.to <= bound && !v.pinned {
                let v = entry.remove(i);
                self.counters.removed(&v);
                self.counters.released.fetch_add(1, Ordering::Relaxed);
                shard.tidy(page);
            }
        }
        self.compact_if_stale();
    }

    pub fn stats(&self) -> PoolStats {
        let (mut hits, mut misses) = (0, 0);
        for shard in self.shards.iter() {
            let shard = shard.lock();
            hits += shard.hits;
            misses += shard.misses;
        }
        let c = &self.counters;
        PoolStats {
            versions: c.versions.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            pinned_bytes: c.pinned_bytes.load(Ordering::Relaxed),
            hits,
            misses,
            evictions: c.evictions.load(Ordering::Relaxed),
            released: c.released.load(Ordering::Relaxed),
        }
    }

    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }

    /// Runs the clock until the pool is within budget or nothing unpinned
    /// is left to drop. Each live version is seen at most twice: once to
    /// clear its reference bit, once to go.
    fn evict_to_budget(&self) {
        let over = || self.counters.bytes.load(Ordering::Relaxed) > self.budget_bytes;
        if !over() {
            return;
        }
        let mut steps = 2 * self.queues.clock_len() + 2;
        while steps > 0 && over() {
            steps -= 1;
            let Some(slot) = self.queues.pop_clock() else {
                return;
            };
            if self.evict_or_spare(slot) {
                self.queues.push_clock(slot);
            }
        }
    }

    /// Evicts the version in `slot`, or clears its reference bit and says
    /// so (`true`: put it back). A version gone already is forgotten.
    fn evict_or_spare(&self, slot: Slot) -> bool {
        let mut shard = self.shard(slot.page).lock();
        let Some(entry) = shard.pages.get_mut(&slot.page) else {
            return false;
        };
        let Some(i) = entry.position(slot.from, slot.id) else {
            return false;
        };
        let v = entry.get_mut(i).expect("the position was just found");
        if v.pinned {
            // Not in the clock by construction; it re-enters when unpinned.
            return false;
        }
        if v.referenced {
            v.referenced = false;
            return true;
        }
        let v = entry.remove(i);
        self.counters.removed(&v);
        self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        shard.tidy(slot.page);
        false
    }

    /// Sifts out of the clock and the release queue the entries of
    /// versions dropped meanwhile, once those dominate. Each entry is
    /// checked under its shard lock; an id never comes back, so an entry
    /// found stale stays stale.
    fn compact_if_stale(&self) {
        let live = self.counters.versions.load(Ordering::Relaxed) as usize;
        if !self.queues.is_stale(live) {
            return;
        }
        let mut clock = self.queues.take_clock();
        clock.retain(|s| self.version_to(*s).is_some());
        self.queues.restore_clock(clock);
        let mut ends = self.queues.take_ends();
        ends.retain(|&(to, slot)| self.version_to(slot) == Some(to));
        self.queues.restore_ends(ends);
    }

    /// The `to` of the version in `slot`, if it is still cached.
    fn version_to(&self, slot: Slot) -> Option<Lsn> {
        let shard = self.shard(slot.page).lock();
        let entry = shard.pages.get(&slot.page)?;
        entry
            .position(slot.from, slot.id)
            .map(|i| entry.versions()[i].to)
    }

    /// Checks every page's invariants and the counters against the pages.
    #[cfg(test)]
    fn check(&self) -> Result<(), String> {
        let (mut versions, mut pinned) = (0u64, 0u64);
        let durable = self.durable_lsn();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for (page, entry) in shard.pages.iter() {
                entry.check().map_err(|e| format!("page {page}: {e}"))?;
                for v in entry.versions() {
                    versions += 1;
                    pinned += u64::from(v.pinned);
                    if v.from > durable && !v.pinned {
                        return Err(format!(
                            "page {page} at {} is above durable but unpinned",
                            v.from
                        ));
                    }
                }
            }
        }
        let stats = self.stats();
        if stats.versions != versions || stats.bytes != versions * VERSION_BYTES {
            return Err(format!("counted {stats:?}, found {versions} versions"));
        }
        if stats.pinned_bytes != pinned * VERSION_BYTES {
            return Err(format!("counted {stats:?}, found {pinned} pinned"));
        }
        Ok(())
    }
}

/// Hashes a `PageId` with two multiply-rotate rounds: a few cycles, and
/// good enough spread for sequential page numbers. Not DoS-resistant, and
/// need not be: page ids come from this node's own allocator.
#[derive(Clone, Copy, Default)]
struct PageHash;

#[derive(Default)]
struct PageHasher(u64);

impl PageHasher {
    fn mix(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(26) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl Hasher for PageHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.mix(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

impl BuildHasher for PageHash {
    type Hasher = PageHasher;

    fn build_hasher(&self) -> PageHasher {
        PageHasher::default()
    }
}
