//! The newest-page cache: the newest versions of recently read pages,
//! kept up to date by ingest.
//!
//! Under ingest almost every read at the latest LSN asks for a version
//! that did not exist a moment ago, so the page cache (keyed by version)
//! misses and the read replays the newest records onto an older image.
//! Here ingest keeps each cached page's records instead, so a read of a
//! recent version replays a few records from memory.
//!
//! **An image and its tail.** A cached page is an image (its *base*) and
//! the frames of the page's records after it (its *tail*), copied out of
//! the chunk. Ingest only appends a record to the tail: it never copies or
//! replays a page per record, which had been most of ingest's CPU (an
//! 8 KiB copy per record, to keep the version it replaced). The base and
//! the tail hold every version from the base's label to the newest, so a
//! reader slightly behind ingest (a replica at its replay LSN, a client at
//! the LSN it last heard of) finds its version too. A read replays the
//! tail up to its version onto a copy of the base, outside the lock; a
//! read of the newest version then makes it the base (*folds* the tail).
//! A tail longer than [`TAIL_BYTES`] is folded by ingest, outside the
//! lock, so ingest copies a page once per that many bytes of its records
//! and a read replays at most that many.
//!
//! **Superseded versions.** The base a fold replaces, and the version the
//! newest record replaced, are kept in a second LRU (a quarter of the
//! budget), keyed by their labels; other versions between them are not. A
//! reader a little behind ingest most often asks for the version the
//! newest record replaced. A version is immutable, so one found by its
//! exact label is always right.
//!
//! **Shards.** The pages are split over up to [`MAX_SHARDS`] shards by
//! page, each with a lock, an LRU and an `applied` LSN of its own. Ingest
//! appends a chunk shard by shard, so a read waits only while ingest works
//! on the read's own shard: measured in `pageserver-soak`, a GetPage
//! thread waiting for the one lock of an unsharded cache (while ingest,
//! preempted, held it) was most of the time it spent in the page server
//! off the CPU. No page is copied and no record replayed under a lock.
//!
//! **Invariant**, per shard. `applied` is the LSN up to which ingest has
//! taken in the log for the shard; for every page cached in the shard, its
//! tail holds exactly the page's records above its base's label and at or
//! below `applied`, in LSN order. So the version labelled `from` (the
//! page's last record at or below the read's LSN, found in the layers) is
//! the base if `from` is its label, the base with the tail replayed up to
//! the record at `from` if one is there, and not cached otherwise. The
//! invariant is kept by
//! - ingest ([`NewestPages::apply`]): it runs after the chunk is in the
//!   open layer, and appends a batch of records to their pages' tails and
//!   moves the shard's `applied` under one hold of the shard's lock;
//! - folds: a base replaced by the tail replayed up to record `n` (by
//!   ingest or a reader, outside the lock) goes in only if the page's
//!   entry still has the base the replay started from and the same record
//!   at `n`; the first `n` records leave the tail with it;
//! - reads that rebuilt a version ([`NewestPages::offer`]): the image goes
//!   in (with an empty tail) only if the caller checks, under the shard's
//!   lock (so its `applied` cannot move), that the page has no record in
//!   `(label, applied]`; every such record is already in a layer of any
//!   map taken then, because ingest puts a chunk into the open layer
//!   before it applies it here.
//!
//! A record that does not apply (found when a tail is replayed) drops its
//! page; the read goes to the layers.
//!
//! Bounded by a byte budget, split evenly over the shards, each page
//! counted as an image and a full tail (LRU by read within a shard; ingest
//! does not count as a use), and a quarter more (at least a page per
//! shard) for superseded versions. This module knows nothing of layers:
//! the check is the caller's.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::Mutex;
use lru::LruCache;
use strata_wal::page::{PAGE_SIZE, Page};
use strata_wal::{Lsn, PageId, record};
use tracing::warn;

use crate::layer::inmem::ChunkRecords;
use crate::layer::shard_of;

/// Records appended per hold of a shard's lock.
const APPLY_BATCH: usize = 64;

/// The most bytes of record frames a cached page holds in its tail; ingest
/// folds a longer one. An eighth of a page: a page's records are a
/// fraction of a page each (about 240 bytes in `pageserver-soak`), so a
/// fold copies a page once per several records, and a read replays only
/// a few. Measured in that soak: half a page took ingest's CPU lower (0.20
/// cores against 0.26) but doubled a read's time in the page server at
/// p50 (≤ 10 to ≤ 20 µs), each read replaying more records.
pub const TAIL_BYTES: usize = PAGE_SIZE / 8;

/// What one cached page may cost: an image and a full tail.
pub const ENTRY_BYTES: u64 = (PAGE_SIZE + TAIL_BYTES) as u64;

/// The most shards (a budget of fewer pages has one page per shard).
pub const MAX_SHARDS: usize = 16;

/// The default budget: 14,563 pages with full tails.
pub const DEFAULT_NEWEST_BYTES: u64 = 128 << 20;

pub struct NewestPages {
    /// False with a budget below one entry: nothing is ever cached.
    enabled: bool,
    shards: Box<[Mutex<Shard>]>,
    hits: AtomicU64,
    superseded_hits: AtomicU64,
    image_hits: AtomicU64,
    applied_records: AtomicU64,
    folds: AtomicU64,
}

struct Shard {
    pages: LruCache<PageId, Entry>,
    /// Versions folds replaced (old bases, and the version before the
    /// newest record), by page and label (None: not kept).
    superseded: Option<LruCache<(PageId, Lsn), Arc<Page>>>,
    /// Every record of this shard's pages at or below it is in its page's
    /// tail or base.
    applied: Lsn,
}

/// A cached page: an image and the frames of the page's records after it.
struct Entry {
    base: Arc<Page>,
    /// The records' frames, back to back, in LSN order.
    frames: Vec<u8>,
    /// Each record's LSN and where its frame ends in `frames`.
    ends: Vec<(Lsn, usize)>,
}

impl Entry {
    fn new(base: Arc<Page>) -> Entry {
        Entry {
            base,
            frames: Vec::new(),
            ends: Vec::new(),
        }
    }

    fn push(&mut self, lsn: Lsn, frame: &[u8]) {
        self.frames.extend_from_slice(frame);
        self.ends.push((lsn, self.frames.len()));
    }

    /// The base and the first `n` records, copied, to replay without the
    /// lock.
    fn take(&self, n: usize) -> Tail {
        let bytes = n.checked_sub(1).map_or(0, |last| self.ends[last].1);
        Tail {
            base: self.base.clone(),
            frames: self.frames[..bytes].to_vec(),
            ends: self.ends[..n].to_vec(),
        }
    }

    /// True if this entry still starts from `tail`'s base and holds its
    /// last record at the same place: a fold of `tail` fits it.
    fn extends(&self, tail: &Tail) -> bool {
        Arc::ptr_eq(&self.base, &tail.base)
            && match tail.ends.len().checked_sub(1) {
                None => true,
                Some(last) => self.ends.get(last) == tail.ends.last(),
            }
    }

    /// Makes `image` (the base with `n` records replayed) the base, and
    /// returns the base it replaced.
    fn fold(&mut self, n: usize, image: Arc<Page>) -> Arc<Page> {
        if let Some(last) = n.checked_sub(1) {
            let bytes = self.ends[last].1;
            self.frames.drain(..bytes);
            self.ends.drain(..n);
            for end in &mut self.ends {
                end.1 -= bytes;
            }
            // A large record (or a long chunk's worth) grew the buffer:
            // give it back, so an entry stays near its budget.
            if self.frames.capacity() > 2 * TAIL_BYTES {
                self.frames.shrink_to(TAIL_BYTES);
            }
        }
        std::mem::replace(&mut self.base, image)
    }
}

/// A base and records after it, taken out of an entry to replay.
struct Tail {
    base: Arc<Page>,
    frames: Vec<u8>,
    ends: Vec<(Lsn, usize)>,
}

impl Tail {
    /// The base with every record replayed, on a copy, and with `keep`
    /// the version before the last record too (a copy of its own; None
    /// if that is the base).
    fn replay_keeping(
        &self,
        page: PageId,
        keep: bool,
    ) -> crate::error::Result<(Page, Option<Page>)> {
        let mut image = (*self.base).clone();
        let mut previous = None;
        let mut start = 0;
        for (i, &(lsn, end)) in self.ends.iter().enumerate() {
            if keep && i > 0 && i + 1 == self.ends.len() {
                previous = Some(image.clone());
            }
            apply_frame(&mut image, page, lsn, &self.frames[start..end])?;
            start = end;
        }
        Ok((image, previous))
    }
}

/// The cache's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewestStats {
    /// Reads answered from here (older versions included).
    pub hits: u64,
    /// Of those, reads answered by a version older than the page's newest.
    pub superseded_hits: u64,
    /// Images flushes took from here instead of rebuilding them.
    pub image_hits: u64,
    /// Records ingest appended to cached pages.
    pub applied_records: u64,
    /// Tails replayed into a new base, by ingest or by reads.
    pub folds: u64,
    pub pages: u64,
}

impl NewestPages {
    /// An empty cache of at most `budget_bytes` of pages (below one page
    /// and its tail: none, the cache is off), for a log ingested from
    /// `start`.
    pub fn new(budget_bytes: u64, start: Lsn) -> NewestPages {
        let pages = usize::try_from(budget_bytes / ENTRY_BYTES).unwrap_or(usize::MAX);
        let count = pages.clamp(1, MAX_SHARDS);
        let per_shard = NonZeroUsize::new(pages / count).unwrap_or(NonZeroUsize::MIN);
        // At least one per shard, so a small budget keeps some too.
        let superseded = match pages {
            0 => None,
            _ => NonZeroUsize::new((pages / 4 / count).max(1)),
        };
        NewestPages {
            enabled: pages > 0,
            shards: (0..count)
                .map(|_| {
                    Mutex::new(Shard {
                        pages: LruCache::new(per_shard),
                        superseded: superseded.map(LruCache::new),
                        applied: start,
                    })
                })
                .collect(),
            hits: AtomicU64::new(0),
            superseded_hits: AtomicU64::new(0),
            image_hits: AtomicU64::new(0),
            applied_records: AtomicU64::new(0),
            folds: AtomicU64::new(0),
        }
    }

    fn shard_of(&self, page: PageId) -> usize {
        shard_of(page, self.shards.len())
    }

    pub fn stats(&self) -> NewestStats {
        NewestStats {
            hits: self.hits.load(Ordering::Relaxed),
            superseded_hits: self.superseded_hits.load(Ordering::Relaxed),
            image_hits: self.image_hits.load(Ordering::Relaxed),
            applied_records: self.applied_records.load(Ordering::Relaxed),
            folds: self.folds.load(Ordering::Relaxed),
            pages: self
                .shards
                .iter()
                .map(|s| s.lock().pages.len() as u64)
                .sum(),
        }
    }

    /// The cached version of `page` whose last record is `from`: the
    /// newest, or an older one still held. Counted as a read's hit.
    pub fn get(&self, page: PageId, from: Lsn) -> Option<Arc<Page>> {
        let (image, newest) = self.lookup(page, from)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        if !newest {
            self.superseded_hits.fetch_add(1, Ordering::Relaxed);
        }
        Some(image)
    }

    /// [`get`](Self::get) for a flush's image of `page` at `from`: the
    /// same version a rebuild from the layers would give, without reading
    /// them. Counted apart from reads.
    pub fn image_at(&self, page: PageId, from: Lsn) -> Option<Arc<Page>> {
        let (image, _) = self.lookup(page, from)?;
        self.image_hits.fetch_add(1, Ordering::Relaxed);
        Some(image)
    }

    /// The version of `page` whose last record is `from`, and whether it
    /// is the newest.
    fn lookup(&self, page: PageId, from: Lsn) -> Option<(Arc<Page>, bool)> {
        let shard_lock = &self.shards[self.shard_of(page)];
        let mut shard = shard_lock.lock();
        let held = shard.pages.get(&page).and_then(|entry| {
            if entry.base.lsn() == from {
                return Some(Ok((entry.base.clone(), entry.ends.is_empty())));
            }
            let n = 1 + entry.ends.binary_search_by_key(&from, |e| e.0).ok()?;
            Some(Err((entry.take(n), n == entry.ends.len())))
        });
        let (image, newest) = match held {
            Some(Ok(found)) => found,
            Some(Err((tail, newest))) => {
                drop(shard);
                let (image, previous) = match tail.replay_keeping(page, newest) {
                    Ok((image, previous)) => (Arc::new(image), previous),
                    Err(e) => {
                        warn!(%page, %from, error = %e, "cannot replay a cached newest page's records; dropping it");
                        self.drop_page(page, &tail);
                        return None;
                    }
                };
                if newest {
                    self.fold(page, &tail, image.clone(), previous);
                }
                (image, newest)
            }
            None => {
                let older = shard.superseded.as_mut()?.get(&(page, from)).cloned()?;
                (older, false)
            }
        };
        Some((image, newest))
    }

    /// Offers `image` (verified, of `page`, labelled by its page LSN) for
    /// the cache. `no_record_until(applied)` must say whether the page has
    /// no record above the label and at or below `applied` (its shard's);
    /// it runs under the shard's lock, and the image goes in only if it
    /// says so. True if it went in.
    pub fn offer(
        &self,
        page: PageId,
        image: &Arc<Page>,
        no_record_until: impl FnOnce(Lsn) -> bool,
    ) -> bool {
        if !self.enabled {
            return false;
        }
        let mut shard = self.shards[self.shard_of(page)].lock();
        if image.lsn() > shard.applied || !no_record_until(shard.applied) {
            return false;
        }
        shard.pages.put(page, Entry::new(image.clone()));
        true
    }

    /// Appends a chunk's records (all above `applied`, in LSN order, and
    /// already in the open layer) to the cached pages' tails, folds the
    /// tails that grew past [`TAIL_BYTES`], drops the pages of spaces the
    /// chunk drops, and moves every shard's `applied` to the chunk's end.
    pub fn apply(&self, chunk: &ChunkRecords) {
        let mut by_shard = vec![Vec::new(); self.shards.len()];
        for record in &chunk.records {
            by_shard[self.shard_of(record.0)].push(record);
        }
        let mut long = HashMap::new();
        for (shard, records) in self.shards.iter().zip(by_shard) {
            for batch in records.chunks(APPLY_BATCH) {
                self.append_batch(shard, batch, &mut long);
            }
            let mut shard = shard.lock();
            for (space, _) in &chunk.dropped_spaces {
                let gone: Vec<PageId> = shard
                    .pages
                    .iter()
                    .map(|(p, _)| *p)
                    .filter(|p| p.space == *space)
                    .collect();
                for p in gone {
                    shard.pages.pop(&p);
                }
                if let Some(kept) = shard.superseded.as_mut() {
                    let gone: Vec<(PageId, Lsn)> = kept
                        .iter()
                        .map(|(k, _)| *k)
                        .filter(|(p, _)| p.space == *space)
                        .collect();
                    for k in gone {
                        kept.pop(&k);
                    }
                }
            }
            shard.applied = shard.applied.max(chunk.end);
        }
        // Outside every lock: a fold copies a page and replays its tail.
        for (page, tail) in long {
            match tail.replay_keeping(page, true) {
                Ok((image, previous)) => self.fold(page, &tail, Arc::new(image), previous),
                Err(e) => {
                    warn!(%page, error = %e, "cannot replay a cached newest page's records; dropping it");
                    self.drop_page(page, &tail);
                }
            }
        }
    }

    /// Appends a batch of one shard's records to the tails of the pages
    /// the shard caches and moves its `applied`, under one hold of its
    /// lock; puts in `long` a copy of each tail that grew past
    /// [`TAIL_BYTES`] (replacing a copy an earlier batch took, so a chunk
    /// with many records of one page replays its tail once). Only the
    /// ingest task appends.
    fn append_batch(
        &self,
        shard: &Mutex<Shard>,
        batch: &[&(PageId, Lsn, bytes::Bytes)],
        long: &mut HashMap<PageId, Tail>,
    ) {
        let mut guard = shard.lock();
        let shard = &mut *guard;
        let mut appended = 0;
        let mut grown: Vec<PageId> = Vec::new();
        for (page, lsn, frame) in batch {
            debug_assert!(*lsn > shard.applied);
            let Some(entry) = shard.pages.peek_mut(page) else {
                continue;
            };
            entry.push(*lsn, frame);
            appended += 1;
            if entry.frames.len() > TAIL_BYTES && !grown.contains(page) {
                grown.push(*page);
            }
        }
        for page in grown {
            if let Some(entry) = shard.pages.peek(&page) {
                long.insert(page, entry.take(entry.ends.len()));
            }
        }
        if let Some((_, lsn, _)) = batch.last() {
            shard.applied = *lsn;
        }
        self.applied_records.fetch_add(appended, Ordering::Relaxed);
    }

    /// Makes `image` (`tail` replayed) the base of `page`, if the page's
    /// entry still extends `tail`; keeps the base it replaces, and
    /// `previous` (the version before `tail`'s last record), as superseded
    /// versions: a reader a little behind ingest most often asks for the
    /// version the newest record replaced.
    fn fold(&self, page: PageId, tail: &Tail, image: Arc<Page>, previous: Option<Page>) {
        let mut guard = self.shards[self.shard_of(page)].lock();
        let shard = &mut *guard;
        let Some(entry) = shard.pages.peek_mut(&page) else {
            return;
        };
        if !entry.extends(tail) {
            return;
        }
        let old = entry.fold(tail.ends.len(), image);
        if let Some(kept) = shard.superseded.as_mut() {
            kept.put((page, old.lsn()), old);
            if let Some(previous) = previous {
                kept.put((page, previous.lsn()), Arc::new(previous));
            }
        }
        self.folds.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops `page` if its entry still extends `tail` (whose records did
    /// not replay).
    fn drop_page(&self, page: PageId, tail: &Tail) {
        let mut shard = self.shards[self.shard_of(page)].lock();
        if shard.pages.peek(&page).is_some_and(|e| e.extends(tail)) {
            shard.pages.pop(&page);
        }
    }
}

/// Applies one framed record to `image`, checking it is the record for
/// `page` at `lsn`.
fn apply_frame(image: &mut Page, page: PageId, lsn: Lsn, frame: &[u8]) -> crate::error::Result<()> {
    let start = Lsn(lsn.0.saturating_sub(frame.len() as u64));
    let rec = record::decode(frame, start)?;
    if rec.lsn != lsn || rec.page != page {
        return Err(crate::error::PageServerError::Rebuild {
            page,
            lsn,
            detail: format!(
                "the chunk holds a record for page {} at {}",
                rec.page, rec.lsn
            ),
        });
    }
    strata_wal::redo::apply(image, &rec)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use strata_wal::Record;
    use strata_wal::op::PageOp;

    const P: PageId = PageId::new(4, 2);

    /// `op` on `page` framed at `start`: its frame and LSN.
    fn framed(page: PageId, op: PageOp, start: Lsn) -> (Bytes, Lsn) {
        let mut buf = Vec::new();
        let lsn = Record::Page { page, op }.encode(&mut buf, start).unwrap();
        (Bytes::from(buf), lsn)
    }

    fn chunk(records: Vec<(PageId, Lsn, Bytes)>, end: Lsn) -> ChunkRecords {
        ChunkRecords {
            records,
            dropped_spaces: Vec::new(),
            end,
        }
    }

    fn insert(bytes: &[u8]) -> PageOp {
        PageOp::Insert {
            slot: 0,
            bytes: bytes.to_vec(),
        }
    }

    /// A cache of `budget` bytes holding `P` just formatted: the cache,
    /// the page, and the end of the chunk that formatted it.
    fn holding_formatted(budget: u64) -> (NewestPages, Arc<Page>, Lsn) {
        let newest = NewestPages::new(budget, Lsn::ZERO);
        let (page, c) = formatted(Lsn::ZERO);
        newest.apply(&c);
        assert!(newest.offer(P, &page, |_| true));
        (newest, page, c.end)
    }

    /// Record `n` of a run that inserts a 300-byte item into `P` and then
    /// replaces it (the page never fills), framed at `start` and applied
    /// to `model` too.
    fn replacing(n: u8, start: Lsn, model: &mut Page) -> (Bytes, Lsn) {
        let op = match n {
            0 => insert(&[n; 300]),
            _ => PageOp::Replace {
                slot: 0,
                bytes: vec![n; 300],
            },
        };
        let (frame, lsn) = framed(P, op, start);
        strata_wal::redo::apply(model, &record::decode(&frame, start).unwrap()).unwrap();
        (frame, lsn)
    }

    /// A formatted page at `lsn` and the chunk holding it.
    fn formatted(start: Lsn) -> (Arc<Page>, ChunkRecords) {
        let (frame, lsn) = framed(
            P,
            PageOp::Init {
                page_type: 1,
                level: 0,
            },
            start,
        );
        let mut page = Page::new_zeroed();
        let rec = record::decode(&frame, start).unwrap();
        strata_wal::redo::apply(&mut page, &rec).unwrap();
        (Arc::new(page), chunk(vec![(P, lsn, frame)], lsn))
    }

    #[test]
    fn ingest_keeps_a_cached_page_newest_and_an_old_label_never_gets_the_newest() {
        let (newest, page, end) = holding_formatted(1 << 20);
        let held = newest.get(P, page.lsn()).unwrap();
        let (frame, lsn) = framed(P, insert(b"row"), end);
        newest.apply(&chunk(vec![(P, lsn, frame)], lsn.advance(5)));
        // The old label gets the old version (kept as superseded), never
        // the new one.
        let old = newest.get(P, page.lsn()).unwrap();
        assert!(*old == *page && old.slot_count() == 0);
        let now = newest.get(P, lsn).unwrap();
        assert_eq!(now.item(0).unwrap(), b"row");
        now.verify(P).unwrap();
        // The reader's copy did not change under it.
        assert_eq!(held.slot_count(), 0);
        assert_eq!(newest.stats().applied_records, 1);
    }

    #[test]
    fn an_offer_is_refused_when_the_check_fails_or_the_image_is_ahead() {
        let newest = NewestPages::new(1 << 20, Lsn::ZERO);
        let (page, c) = formatted(Lsn::ZERO);
        assert!(!newest.offer(P, &page, |_| true), "ahead of ingest");
        newest.apply(&c);
        let mut asked = None;
        assert!(!newest.offer(P, &page, |applied| {
            asked = Some(applied);
            false
        }));
        assert_eq!(asked, Some(c.end));
        assert!(newest.get(P, page.lsn()).is_none());
    }

    #[test]
    fn a_record_that_does_not_apply_drops_the_page_and_a_drop_empties_its_space() {
        let (newest, page, end) = holding_formatted(1 << 20);
        // A delete of a slot the page does not have: found when a read
        // replays it, which drops the page.
        let (frame, lsn) = framed(P, PageOp::Delete { slot: 3 }, end);
        newest.apply(&chunk(vec![(P, lsn, frame)], lsn));
        assert_eq!(newest.stats().pages, 1);
        assert!(newest.get(P, lsn).is_none());
        assert_eq!(newest.stats().pages, 0);
        assert!(newest.get(P, page.lsn()).is_none());
        assert!(newest.offer(P, &page, |_| true));
        let mut drop = chunk(Vec::new(), lsn.advance(30));
        drop.dropped_spaces.push((P.space, lsn.advance(30)));
        newest.apply(&drop);
        assert_eq!(newest.stats().pages, 0);
    }

    #[test]
    fn the_budget_holds() {
        let newest = NewestPages::new(2 * ENTRY_BYTES, Lsn::ZERO);
        let (page, c) = formatted(Lsn::ZERO);
        newest.apply(&c);
        for n in 0..5 {
            assert!(newest.offer(PageId::new(9, n), &page, |_| true));
        }
        assert_eq!(newest.stats().pages, 2);
        let off = NewestPages::new(ENTRY_BYTES - 1, Lsn::ZERO);
        off.apply(&c);
        assert!(!off.offer(P, &page, |_| true));
    }

    #[test]
    fn a_read_does_not_wait_while_ingest_holds_another_shard() {
        let newest = Arc::new(NewestPages::new(DEFAULT_NEWEST_BYTES, Lsn::ZERO));
        assert_eq!(newest.shards.len(), MAX_SHARDS);
        let (page, c) = formatted(Lsn::ZERO);
        newest.apply(&c);
        assert!(newest.offer(P, &page, |_| true));
        let other = (0..)
            .map(|n| PageId::new(P.space, n))
            .find(|q| newest.shard_of(*q) != newest.shard_of(P))
            .unwrap();
        let held = newest.shards[newest.shard_of(other)].lock();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = newest.clone();
        let label = page.lsn();
        std::thread::spawn(move || tx.send(reader.get(P, label).is_some()).unwrap());
        let answered = rx.recv_timeout(std::time::Duration::from_secs(10));
        drop(held);
        assert_eq!(answered, Ok(true));
    }

    #[test]
    fn neighbouring_pages_spread_over_every_shard() {
        let mut seen = [0u32; MAX_SHARDS];
        for n in 0..1024 {
            seen[shard_of(PageId::new(3, n), MAX_SHARDS)] += 1;
        }
        assert!(seen.iter().all(|&k| (32..=96).contains(&k)), "{seen:?}");
    }

    #[test]
    fn the_version_a_record_replaces_is_still_answered_by_its_label() {
        let (newest, page, end) = holding_formatted(1 << 20);
        let (frame, first) = framed(P, insert(b"one"), end);
        newest.apply(&chunk(vec![(P, first, frame)], first));
        let (frame, second) = framed(P, insert(b"two"), first);
        newest.apply(&chunk(vec![(P, second, frame)], second));
        let formatted_again = newest.get(P, page.lsn()).unwrap();
        assert!(*formatted_again == *page, "the formatted page, unchanged");
        let after_one = newest.get(P, first).unwrap();
        assert_eq!(after_one.slot_count(), 1);
        after_one.verify(P).unwrap();
        assert_eq!(newest.get(P, second).unwrap().slot_count(), 2);
        let stats = newest.stats();
        assert_eq!((stats.hits, stats.superseded_hits), (3, 2));
        // A label that was never a version of the page answers nothing.
        assert!(newest.get(P, first.advance(1)).is_none());
        // The read of the newest folded the tail. The version the newest
        // record replaced is kept; in the shard's one superseded slot it
        // displaced the old base, kept before it.
        assert_eq!(newest.stats().folds, 1);
        assert_eq!(newest.get(P, first).unwrap().slot_count(), 1);
        assert!(newest.get(P, page.lsn()).is_none());
    }

    #[test]
    fn superseded_versions_keep_to_their_budget_and_leave_with_their_space() {
        // 64 pages' worth: 56 entries, 16 shards of 3, and one superseded
        // version per shard.
        let (newest, page, end) = holding_formatted(64 * PAGE_SIZE as u64);
        let mut at = end;
        let mut labels = vec![page.lsn()];
        let mut add = |newest: &NewestPages, n: u8| {
            let (frame, lsn) = framed(P, insert(&[n]), at);
            newest.apply(&chunk(vec![(P, lsn, frame)], lsn));
            at = lsn;
            lsn
        };
        for n in 0..3u8 {
            labels.push(add(&newest, n));
        }
        // Before a fold, the base and its tail: every version.
        let kept = |newest: &NewestPages, labels: &[Lsn]| -> Vec<bool> {
            labels.iter().map(|l| newest.get(P, *l).is_some()).collect()
        };
        assert_eq!(kept(&newest, &labels[..3]), [true, true, true]);
        assert_eq!(newest.get(P, labels[3]).unwrap().slot_count(), 3);
        // Read, the newest became the base. The old base and the version
        // the newest record replaced were kept, in that order, in the
        // shard's one superseded slot: the latter stays.
        assert_eq!(kept(&newest, &labels), [false, false, true, true]);
        labels.push(add(&newest, 9));
        assert_eq!(newest.get(P, labels[4]).unwrap().slot_count(), 4);
        // A one-record tail: the version it replaced is the old base.
        assert_eq!(kept(&newest, &labels), [false, false, false, true, true]);
        let mut drop = chunk(Vec::new(), at.advance(30));
        drop.dropped_spaces.push((P.space, at.advance(30)));
        newest.apply(&drop);
        assert!(labels.iter().all(|l| newest.get(P, *l).is_none()));
    }

    #[test]
    fn ingest_folds_a_tail_that_outgrows_its_bound() {
        let (newest, page, end) = holding_formatted(1 << 20);
        let mut at = end;
        let mut model = (*page).clone();
        // The frames pass the tail's bound every few records.
        for n in 0..40u8 {
            let (frame, lsn) = replacing(n, at, &mut model);
            newest.apply(&chunk(vec![(P, lsn, frame)], lsn));
            at = lsn;
            let shard = newest.shards[newest.shard_of(P)].lock();
            let entry = shard.pages.peek(&P).unwrap();
            assert!(entry.frames.len() <= TAIL_BYTES, "{}", entry.frames.len());
            assert_eq!(
                entry.ends.last().map(|e| e.1),
                (!entry.ends.is_empty()).then_some(entry.frames.len())
            );
        }
        let stats = newest.stats();
        assert!(stats.folds >= 40 * 300 / TAIL_BYTES as u64 - 1, "{stats:?}");
        assert_eq!(stats.applied_records, 40);
        let now = newest.get(P, at).unwrap();
        assert!(*now == model);
        now.verify(P).unwrap();
    }

    #[test]
    fn a_chunk_of_many_records_for_one_page_folds_it_once_and_gives_back_the_buffer() {
        let (newest, page, end) = holding_formatted(1 << 20);
        let mut at = end;
        let mut model = (*page).clone();
        let mut records = Vec::new();
        // Four batches' worth, 60 KiB of frames, in one chunk.
        for n in 0..200u8 {
            let (frame, lsn) = replacing(n, at, &mut model);
            records.push((P, lsn, frame));
            at = lsn;
        }
        newest.apply(&chunk(records, at));
        assert_eq!(newest.stats().folds, 1);
        {
            let shard = newest.shards[newest.shard_of(P)].lock();
            let entry = shard.pages.peek(&P).unwrap();
            assert!(entry.ends.is_empty());
            assert!(
                entry.frames.capacity() <= 2 * TAIL_BYTES,
                "{}",
                entry.frames.capacity()
            );
        }
        let now = newest.get(P, at).unwrap();
        assert!(*now == model);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Against a model that keeps every version of every page: whatever
        /// the cache answers for a label is exactly that version, through
        /// appends, folds by reads and by ingest, offers, evictions and
        /// dropped spaces.
        #[test]
        fn every_answer_is_the_version_its_label_names(
            budget_pages in 1u64..8,
            steps in proptest::collection::vec((0u8..4, 0u32..3, 0usize..64, 1usize..400), 1..120),
        ) {
            let newest = NewestPages::new(budget_pages * ENTRY_BYTES, Lsn::ZERO);
            // Every version of each page, by label, oldest first.
            let mut versions: HashMap<PageId, Vec<Arc<Page>>> = HashMap::new();
            let mut at = Lsn::ZERO;
            let mut answered = 0;
            for (kind, page_no, pick, len) in steps {
                let page = PageId::new(7, page_no);
                match kind {
                    // A chunk of one record for the page (formatting it first).
                    0 | 1 => {
                        let op = match versions.get(&page) {
                            None => PageOp::Init { page_type: 1, level: 0 },
                            Some(v) if v.last().unwrap().slot_count() >= 4 => PageOp::Delete { slot: 0 },
                            Some(_) => insert(&vec![pick as u8; len]),
                        };
                        let (frame, lsn) = framed(page, op, at);
                        let mut image = versions.get(&page).map_or_else(Page::new_zeroed, |v| (**v.last().unwrap()).clone());
                        strata_wal::redo::apply(&mut image, &record::decode(&frame, at).unwrap()).unwrap();
                        versions.entry(page).or_default().push(Arc::new(image));
                        newest.apply(&chunk(vec![(page, lsn, frame)], lsn));
                        at = lsn;
                    }
                    // Offer the newest version: always true to the check.
                    2 => if let Some(v) = versions.get(&page) {
                        newest.offer(page, v.last().unwrap(), |_| true);
                    },
                    // Read a version (often the newest).
                    _ => if let Some(v) = versions.get(&page) {
                        let want = &v[v.len().saturating_sub(1 + pick % 3)];
                        if let Some(got) = newest.get(page, want.lsn()) {
                            proptest::prop_assert!(*got == **want);
                            answered += 1;
                        }
                    },
                }
            }
            proptest::prop_assert!(newest.stats().hits >= answered);
        }
    }
}
