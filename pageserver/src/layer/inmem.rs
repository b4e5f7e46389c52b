//! The in-memory layer: where ingest puts records until they are frozen
//! into a delta layer file.
//!
//! One layer covers `(start, end]`. While it is the open layer only the
//! ingest task adds to it, and `end` grows with every chunk of log it takes
//! in, page records or not, so `end` *is* the ingested LSN. A large chunk
//! is added in batches, each moving `end` to its last record after the
//! batch's records are in. A reader reads `end` before a page's records, so
//! "no record for this page after L" is only ever claimed up to an `end`
//! whose records were all in. Once frozen (replaced as the open layer) it
//! never changes again; it is dropped when its file is live.
//!
//! The pages are split over [`SHARDS`] shards, each under its own lock: a
//! GetPage waits for ingest only while ingest adds to the read's own shard
//! (with one lock, GetPage threads in `pageserver-soak` spent more of
//! their time off the CPU waiting for it, while ingest, preempted, held it,
//! than anywhere else).
//!
//! It holds deltas only: images are written when the layer is frozen into a
//! file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::RwLock;
use bytes::Bytes;
use strata_wal::{Lsn, PageId};

use crate::layer::{LsnRange, Value, shard_of};

/// Records added per batch (after each, `end` moves).
const PUT_BATCH: usize = 64;

/// Shards of a layer's pages.
const SHARDS: usize = 16;

/// Each page's records, in LSN order.
type Pages = HashMap<PageId, Vec<(Lsn, Bytes)>>;

pub struct InMemoryLayer {
    start: Lsn,
    shards: [RwLock<Pages>; SHARDS],
    /// Every record at or below it is in a shard.
    end: AtomicU64,
    /// Bytes of record frames held (the size that triggers a freeze).
    bytes: AtomicU64,
    records: AtomicU64,
    /// Spaces dropped by `DropSpace` records in this layer, with the
    /// record's LSN.
    dropped_spaces: RwLock<Vec<(u32, Lsn)>>,
}

/// What one chunk of log adds to a layer.
#[derive(Default)]
pub struct ChunkRecords {
    /// Page records: the page, the record's LSN, its whole frame.
    pub records: Vec<(PageId, Lsn, Bytes)>,
    pub dropped_spaces: Vec<(u32, Lsn)>,
    /// Where the chunk ends: the new ingested LSN.
    pub end: Lsn,
}

impl InMemoryLayer {
    /// An empty layer starting after `start`.
    pub fn new(start: Lsn) -> InMemoryLayer {
        InMemoryLayer {
            start,
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
            end: AtomicU64::new(start.0),
            bytes: AtomicU64::new(0),
            records: AtomicU64::new(0),
            dropped_spaces: RwLock::new(Vec::new()),
        }
    }

    fn shard(&self, page: PageId) -> &RwLock<Pages> {
        &self.shards[shard_of(page, SHARDS)]
    }

    /// Adds a chunk's records (all above `end`, in LSN order) and moves
    /// `end` to the chunk's end, [`PUT_BATCH`] records at a time (a
    /// catch-up chunk holds thousands): each batch goes in shard by shard,
    /// each shard's lock taken once, and then `end` moves to its last
    /// record, which is true then.
    pub fn put(&self, chunk: &ChunkRecords) {
        debug_assert!(chunk.end >= self.end(), "a layer's end only grows");
        let mut by_shard: [Vec<&(PageId, Lsn, Bytes)>; SHARDS] = Default::default();
        for batch in chunk.records.chunks(PUT_BATCH) {
            for record in batch {
                debug_assert!(record.1 > self.end() && record.1 <= chunk.end);
                by_shard[shard_of(record.0, SHARDS)].push(record);
            }
            let mut bytes = 0;
            for (shard, records) in self.shards.iter().zip(&mut by_shard) {
                if records.is_empty() {
                    continue;
                }
                let mut pages = shard.write();
                for (page, lsn, frame) in records.drain(..) {
                    bytes += frame.len() as u64;
                    pages.entry(*page).or_default().push((*lsn, frame.clone()));
                }
            }
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
            self.records
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let last = batch.last().map_or(chunk.end, |r| r.1);
            self.end.store(last.0, Ordering::Release);
        }
        if !chunk.dropped_spaces.is_empty() {
            self.dropped_spaces
                .write()
                .extend(chunk.dropped_spaces.iter().copied());
        }
        self.end.store(chunk.end.0, Ordering::Release);
    }

    /// Where the layer starts (after this LSN).
    pub fn start(&self) -> Lsn {
        self.start
    }

    pub fn range(&self) -> LsnRange {
        LsnRange {
            start: self.start,
            end: self.end(),
        }
    }

    pub fn end(&self) -> Lsn {
        Lsn(self.end.load(Ordering::Acquire))
    }

    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed) as usize
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    pub fn dropped_spaces(&self) -> Vec<(u32, Lsn)> {
        self.dropped_spaces.read().clone()
    }

    /// The LSNs of `page`'s first and last records here, if it has any.
    pub fn summary(&self, page: PageId) -> Option<(Lsn, Lsn)> {
        let pages = self.shard(page).read();
        let recs = pages.get(&page)?;
        Some((recs.first()?.0, recs.last()?.0))
    }

    /// `page`'s records at or below `upto`, in LSN order.
    pub fn read_page(&self, page: PageId, upto: Lsn) -> Vec<(Lsn, Value)> {
        let pages = self.shard(page).read();
        let Some(recs) = pages.get(&page) else {
            return Vec::new();
        };
        let n = recs.partition_point(|(lsn, _)| *lsn <= upto);
        recs[..n]
            .iter()
            .map(|(lsn, frame)| (*lsn, Value::Delta(frame.clone())))
            .collect()
    }

    /// The LSN of `page`'s first record above `lsn` here, if any, and an
    /// `end` read before it: without such a record, `page` has none in
    /// `(lsn, end]`.
    pub fn next_after(&self, page: PageId, lsn: Lsn) -> (Option<Lsn>, Lsn) {
        let end = self.end();
        let pages = self.shard(page).read();
        let next = pages.get(&page).and_then(|recs| {
            let i = recs.partition_point(|(l, _)| *l <= lsn);
            recs.get(i).map(|(l, _)| *l)
        });
        (next, end)
    }

    /// The LSN of `page`'s last record at or below `lsn` here.
    pub fn last_at_or_below(&self, page: PageId, lsn: Lsn) -> Option<Lsn> {
        let pages = self.shard(page).read();
        let recs = pages.get(&page)?;
        let i = recs.partition_point(|(l, _)| *l <= lsn);
        i.checked_sub(1).map(|i| recs[i].0)
    }

    /// Every page with its records, pages in order: what a freeze writes.
    pub fn sorted_pages(&self) -> Vec<(PageId, Vec<(Lsn, Bytes)>)> {
        let mut all = Vec::new();
        for shard in &self.shards {
            let pages = shard.read();
            all.extend(pages.iter().map(|(page, recs)| (*page, recs.clone())));
        }
        all.sort_unstable_by_key(|(page, _)| *page);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: PageId = PageId::new(1, 7);

    fn chunk(recs: &[(PageId, u64)], end: u64) -> ChunkRecords {
        ChunkRecords {
            records: recs
                .iter()
                .map(|(p, l)| (*p, Lsn(*l), Bytes::from(vec![0u8; 30])))
                .collect(),
            dropped_spaces: Vec::new(),
            end: Lsn(end),
        }
    }

    #[test]
    fn lookups_honour_lsn_bounds_and_end() {
        let layer = InMemoryLayer::new(Lsn(100));
        layer.put(&chunk(&[(P, 130), (PageId::new(1, 8), 160), (P, 190)], 200));
        assert_eq!(
            layer.range(),
            LsnRange {
                start: Lsn(100),
                end: Lsn(200)
            }
        );
        assert_eq!(layer.summary(P), Some((Lsn(130), Lsn(190))));
        assert_eq!(layer.read_page(P, Lsn(189)).len(), 1);
        assert_eq!(layer.read_page(P, Lsn(190)).len(), 2);
        assert_eq!(layer.next_after(P, Lsn(130)), (Some(Lsn(190)), Lsn(200)));
        assert_eq!(layer.next_after(P, Lsn(190)), (None, Lsn(200)));
        assert_eq!(layer.last_at_or_below(P, Lsn(129)), None);
        assert_eq!(layer.last_at_or_below(P, Lsn(150)), Some(Lsn(130)));
        assert_eq!(layer.bytes(), 90);
        let pages = layer.sorted_pages();
        assert_eq!(pages[0].0, P);
        assert_eq!(pages[1].0, PageId::new(1, 8));
    }

    #[test]
    fn a_chunk_larger_than_a_batch_is_put_whole() {
        let layer = InMemoryLayer::new(Lsn(0));
        let recs: Vec<_> = (1..=PUT_BATCH as u64 * 2 + 5)
            .map(|i| (PageId::new(1, (i % 3) as u32), i * 10))
            .collect();
        layer.put(&chunk(&recs, 5000));
        assert_eq!(layer.end(), Lsn(5000));
        assert_eq!(layer.records(), recs.len() as u64);
        let last = recs.last().unwrap();
        assert_eq!(layer.last_at_or_below(last.0, Lsn(5000)), Some(Lsn(last.1)));
        assert_eq!(layer.next_after(last.0, Lsn(last.1)), (None, Lsn(5000)));
    }

    #[test]
    fn a_read_does_not_wait_while_ingest_holds_another_shard() {
        let layer = std::sync::Arc::new(InMemoryLayer::new(Lsn(0)));
        layer.put(&chunk(&[(P, 10)], 20));
        let other = (0..)
            .map(|n| PageId::new(P.space, n))
            .find(|q| shard_of(*q, SHARDS) != shard_of(P, SHARDS))
            .unwrap();
        let held = layer.shard(other).write();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = layer.clone();
        std::thread::spawn(move || {
            tx.send((
                reader.last_at_or_below(P, Lsn(20)),
                reader.next_after(P, Lsn(10)),
            ))
            .unwrap()
        });
        let answered = rx.recv_timeout(std::time::Duration::from_secs(10));
        drop(held);
        assert_eq!(answered, Ok((Some(Lsn(10)), (None, Lsn(20)))));
    }
}
