//! The newest-page cache: the newest version of recently read pages, kept
//! up to date by ingest.
//!
//! Under ingest almost every read at the latest LSN asks for a version
//! that did not exist a moment ago, so the page cache (keyed by version)
//! misses and the read replays the newest records onto an older image.
//! Here ingest does that work once per record instead: every page record
//! it takes in is applied to the cached image of its page, if the page is
//! cached, so a read of the newest version is answered from memory.
//!
//! **Superseded versions.** Readers often ask a little behind ingest (a
//! replica at its replay LSN, a client at the LSN it last heard of), for
//! the version a record has just replaced. So when ingest applies a record
//! to a cached page, the version it replaces is kept too, keyed by its
//! label, in a second LRU of a quarter of the budget: the last few
//! milliseconds of versions under heavy ingest, more under light. A
//! version is immutable, so one found by its exact label is always right.
//!
//! **Shards.** The pages are split over up to [`MAX_SHARDS`] shards by
//! page, each with a lock, an LRU and an `applied` LSN of its own. Ingest
//! applies a chunk shard by shard, so a read waits only while ingest works
//! on the read's own shard: measured in `pageserver-soak`, a GetPage
//! thread waiting for the one lock of an unsharded cache (while ingest,
//! preempted, held it) was most of the time it spent in the page server
//! off the CPU.
//!
//! **Invariant**, per shard. `applied` is the LSN up to which ingest has
//! applied the log to the shard; for every page cached in the shard, its
//! image is the page after its last record at or below `applied`, and the
//! image's page LSN is that record's LSN (its *label*). So an image
//! answers a read exactly when its label is the read's `from` (the page's
//! last record at or below the read's LSN, found in the layers): a stale
//! image simply never matches. The invariant is kept by
//! - ingest ([`NewestPages::apply`]): it runs after the chunk is in the open
//!   layer, applies each record to (a copy of) its cached page in LSN
//!   order, and only then, under the shard's lock, swaps the new versions
//!   in and moves the shard's `applied` (per batch of records; a page that
//!   changed meanwhile, or whose record does not apply, is dropped);
//! - reads that rebuilt a version ([`NewestPages::offer`]): the image goes
//!   in only if the caller checks, under the shard's lock (so its `applied`
//!   cannot move), that the page has no record in `(label, applied]`;
//!   every such record is already in a layer of any map taken then,
//!   because ingest puts a chunk into the open layer before it applies it
//!   here.
//!
//! Bounded by a byte budget, split evenly over the shards (LRU by read
//! within a shard; ingest does not count as a use), and a quarter more
//! (at least a page per shard) for superseded versions. This module knows
//! nothing of layers: the check is the caller's.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::Mutex;
use bytes::Bytes;
use lru::LruCache;
use strata_wal::page::{PAGE_SIZE, Page};
use strata_wal::{Lsn, PageId, record};
use tracing::warn;

use crate::layer::inmem::ChunkRecords;
use crate::layer::shard_of;

/// Records applied per batch (the shard's lock is taken twice per batch,
/// for lookups only).
const APPLY_BATCH: usize = 64;

/// The most shards (a budget of fewer pages has one page per shard).
pub const MAX_SHARDS: usize = 16;

/// The default budget: 16,384 pages.
pub const DEFAULT_NEWEST_BYTES: u64 = 128 << 20;

pub struct NewestPages {
    /// False with a budget below one page: nothing is ever cached.
    enabled: bool,
    shards: Box<[Mutex<Shard>]>,
    hits: AtomicU64,
    superseded_hits: AtomicU64,
    applied_records: AtomicU64,
}

struct Shard {
    pages: LruCache<PageId, Arc<Page>>,
    /// Versions ingest replaced, by page and label (None: not kept).
    superseded: Option<LruCache<(PageId, Lsn), Arc<Page>>>,
    /// Every record of this shard's pages at or below it has been applied
    /// to its cached pages.
    applied: Lsn,
}

/// The cache's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewestStats {
    /// Reads answered from here (superseded versions included).
    pub hits: u64,
    /// Of those, reads answered by a superseded version.
    pub superseded_hits: u64,
    /// Records ingest applied to cached pages.
    pub applied_records: u64,
    pub pages: u64,
}

impl NewestPages {
    /// An empty cache of at most `budget_bytes` of pages (below one page:
    /// none, the cache is off), for a log ingested from `start`.
    pub fn new(budget_bytes: u64, start: Lsn) -> NewestPages {
        let pages = usize::try_from(budget_bytes / PAGE_SIZE as u64).unwrap_or(usize::MAX);
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
            applied_records: AtomicU64::new(0),
        }
    }

    fn shard_of(&self, page: PageId) -> usize {
        shard_of(page, self.shards.len())
    }

    pub fn stats(&self) -> NewestStats {
        NewestStats {
            hits: self.hits.load(Ordering::Relaxed),
            superseded_hits: self.superseded_hits.load(Ordering::Relaxed),
            applied_records: self.applied_records.load(Ordering::Relaxed),
            pages: self
                .shards
                .iter()
                .map(|s| s.lock().pages.len() as u64)
                .sum(),
        }
    }

    /// The cached image of `page` if it is the version whose last record
    /// is `from`: the newest, or one ingest superseded.
    pub fn get(&self, page: PageId, from: Lsn) -> Option<Arc<Page>> {
        let mut shard = self.shards[self.shard_of(page)].lock();
        let newest = shard.pages.get(&page).filter(|p| p.lsn() == from).cloned();
        let found = match newest {
            Some(image) => Some(image),
            None => {
                let older = shard.superseded.as_mut()?.get(&(page, from)).cloned();
                if older.is_some() {
                    self.superseded_hits.fetch_add(1, Ordering::Relaxed);
                }
                older
            }
        };
        drop(shard);
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
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
        shard.pages.put(page, image.clone());
        true
    }

    /// Applies a chunk's records (all above `applied`, in LSN order, and
    /// already in the open layer) to the cached pages, drops the pages of
    /// spaces it drops, and moves every shard's `applied` to the chunk's
    /// end.
    pub fn apply(&self, chunk: &ChunkRecords) {
        let mut by_shard = vec![Vec::new(); self.shards.len()];
        for record in &chunk.records {
            by_shard[self.shard_of(record.0)].push(record);
        }
        for (shard, records) in self.shards.iter().zip(by_shard) {
            for batch in records.chunks(APPLY_BATCH) {
                self.apply_batch(shard, batch);
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
    }

    /// Applies a batch of one shard's records in three steps, so the
    /// shard's lock is held only for lookups, never for a page copy or a
    /// replay: take the cached pages the batch touches; apply the records
    /// to copies, keeping each version a record replaces; then, under the
    /// lock again, put the new versions in where the cache still holds the
    /// page taken (a page offered meanwhile, or not taken because it was not
    /// cached, is dropped: it lacks the batch's records) and move `applied`.
    /// Only the ingest task applies, so nothing else moves `applied`
    /// between the steps.
    fn apply_batch(&self, shard: &Mutex<Shard>, batch: &[&(PageId, Lsn, Bytes)]) {
        let taken: HashMap<PageId, Arc<Page>> = {
            let shard = shard.lock();
            batch
                .iter()
                .filter_map(|(page, _, _)| Some((*page, shard.pages.peek(page)?.clone())))
                .collect()
        };
        let mut working: HashMap<PageId, Working> = HashMap::new();
        let mut applied = 0;
        for (page, lsn, frame) in batch {
            let Some(taken) = taken.get(page) else {
                continue;
            };
            let (current, replaced) = working
                .entry(*page)
                .or_insert_with(|| (Some(taken.clone()), Vec::new()));
            let Some(image) = current else {
                continue;
            };
            applied += 1;
            let old = image.clone();
            // `old` shares the page, so this changes a copy.
            match apply_frame(image, *page, *lsn, frame) {
                Ok(()) => replaced.push(old),
                Err(e) => {
                    warn!(%page, %lsn, error = %e, "cannot apply a record to a cached newest page; dropping it");
                    *current = None;
                }
            }
        }
        let mut guard = shard.lock();
        let shard = &mut *guard;
        for (page, (newest, replaced)) in working {
            let Some(now) = shard.pages.peek_mut(&page) else {
                continue;
            };
            match newest {
                Some(newest) if Arc::ptr_eq(&taken[&page], now) => {
                    *now = newest;
                    if let Some(kept) = shard.superseded.as_mut() {
                        for old in replaced {
                            kept.put((page, old.lsn()), old);
                        }
                    }
                }
                _ => {
                    shard.pages.pop(&page);
                }
            }
        }
        // Offered while the batch was applied: without its records.
        for (page, lsn, _) in batch {
            debug_assert!(*lsn > shard.applied);
            if !taken.contains_key(page) {
                shard.pages.pop(page);
            }
        }
        if let Some((_, lsn, _)) = batch.last() {
            shard.applied = *lsn;
        }
        self.applied_records.fetch_add(applied, Ordering::Relaxed);
    }
}

/// A page while a batch is applied: its newest version so far (None: a
/// record failed to apply) and the versions the batch replaced.
type Working = (Option<Arc<Page>>, Vec<Arc<Page>>);

/// Applies one framed record to `cached` (copied first if a reader holds
/// it), checking it is the record for `page` at `lsn`, and seals it.
fn apply_frame(
    cached: &mut Arc<Page>,
    page: PageId,
    lsn: Lsn,
    frame: &[u8],
) -> crate::error::Result<()> {
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
    // On an error the page may be half changed: the caller drops it.
    strata_wal::redo::apply(Arc::make_mut(cached), &rec)?;
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
        let newest = NewestPages::new(1 << 20, Lsn::ZERO);
        let (page, c) = formatted(Lsn::ZERO);
        newest.apply(&c);
        assert!(newest.offer(P, &page, |_| true));
        let held = newest.get(P, page.lsn()).unwrap();
        let (frame, lsn) = framed(P, insert(b"row"), c.end);
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
        let newest = NewestPages::new(1 << 20, Lsn::ZERO);
        let (page, c) = formatted(Lsn::ZERO);
        newest.apply(&c);
        assert!(newest.offer(P, &page, |_| true));
        // A delete of a slot the page does not have.
        let (frame, lsn) = framed(P, PageOp::Delete { slot: 3 }, c.end);
        newest.apply(&chunk(vec![(P, lsn, frame)], lsn));
        assert_eq!(newest.stats().pages, 0);
        assert!(newest.offer(P, &page, |_| true));
        let mut drop = chunk(Vec::new(), lsn.advance(30));
        drop.dropped_spaces.push((P.space, lsn.advance(30)));
        newest.apply(&drop);
        assert_eq!(newest.stats().pages, 0);
    }

    #[test]
    fn the_budget_holds() {
        let newest = NewestPages::new(2 * PAGE_SIZE as u64, Lsn::ZERO);
        let (page, c) = formatted(Lsn::ZERO);
        newest.apply(&c);
        for n in 0..5 {
            assert!(newest.offer(PageId::new(9, n), &page, |_| true));
        }
        assert_eq!(newest.stats().pages, 2);
        let off = NewestPages::new(PAGE_SIZE as u64 - 1, Lsn::ZERO);
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
        let newest = NewestPages::new(1 << 20, Lsn::ZERO);
        let (page, c) = formatted(Lsn::ZERO);
        newest.apply(&c);
        assert!(newest.offer(P, &page, |_| true));
        let (frame, first) = framed(P, insert(b"one"), c.end);
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
    }

    #[test]
    fn superseded_versions_keep_to_their_budget_and_leave_with_their_space() {
        // 64 pages: 16 shards of 4, and one superseded version per shard.
        let newest = NewestPages::new(64 * PAGE_SIZE as u64, Lsn::ZERO);
        let (page, c) = formatted(Lsn::ZERO);
        newest.apply(&c);
        assert!(newest.offer(P, &page, |_| true));
        let mut at = c.end;
        let mut labels = vec![page.lsn()];
        for n in 0..3u8 {
            let (frame, lsn) = framed(P, insert(&[n]), at);
            newest.apply(&chunk(vec![(P, lsn, frame)], lsn));
            labels.push(lsn);
            at = lsn;
        }
        // The newest, and only the one version it replaced.
        let kept: Vec<bool> = labels.iter().map(|l| newest.get(P, *l).is_some()).collect();
        assert_eq!(kept, [false, false, true, true]);
        let mut drop = chunk(Vec::new(), at.advance(30));
        drop.dropped_spaces.push((P.space, at.advance(30)));
        newest.apply(&drop);
        assert!(labels.iter().all(|l| newest.get(P, *l).is_none()));
    }
}
