//! The in-memory layer: where ingest puts records until they are frozen
//! into a delta layer file.
//!
//! One layer covers `(start, end]`. While it is the open layer only the
//! ingest task adds to it, and `end` grows with every chunk of log it takes
//! in, page records or not, so `end` *is* the ingested LSN. Readers see a
//! consistent view under a read lock: the records of a page and `end` read
//! together, so "no record for this page after L" is only ever claimed up
//! to an `end` that was true at that moment (a large chunk is added in
//! batches, each moving `end` to its last record). Once frozen (replaced as the
//! open layer) it never changes again; it is dropped when its file is live.
//!
//! It holds deltas only: images are written when the layer is frozen into a
//! file.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::RwLock;
use strata_wal::{Lsn, PageId};

use crate::layer::{LsnRange, Value};

/// Records added under one hold of the write lock.
const PUT_BATCH: usize = 64;

pub struct InMemoryLayer {
    start: Lsn,
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Each page's records, in LSN order.
    pages: HashMap<PageId, Vec<(Lsn, Bytes)>>,
    end: Lsn,
    /// Bytes of record frames held (the size that triggers a freeze).
    bytes: usize,
    records: u64,
    /// Spaces dropped by `DropSpace` records in this layer, with the
    /// record's LSN.
    dropped_spaces: Vec<(u32, Lsn)>,
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
            inner: RwLock::new(Inner {
                end: start,
                ..Inner::default()
            }),
        }
    }

    /// Adds a chunk's records (all above `end`, in LSN order) and moves
    /// `end` to the chunk's end. The write lock is taken once per
    /// [`PUT_BATCH`] records, not for the whole chunk (a catch-up chunk
    /// holds thousands, and a reader waiting on the lock holds up its
    /// thread): after each batch `end` is its last record's LSN, which is
    /// true then (every record at or below it is in), so readers still
    /// see records and `end` together.
    pub fn put(&self, chunk: &ChunkRecords) {
        let mut records = chunk.records.iter().peekable();
        loop {
            let mut inner = self.inner.write();
            debug_assert!(chunk.end >= inner.end, "a layer's end only grows");
            for (page, lsn, frame) in records.by_ref().take(PUT_BATCH) {
                debug_assert!(*lsn > inner.end && *lsn <= chunk.end);
                inner.bytes += frame.len();
                inner.records += 1;
                inner
                    .pages
                    .entry(*page)
                    .or_default()
                    .push((*lsn, frame.clone()));
                inner.end = *lsn;
            }
            if records.peek().is_none() {
                inner
                    .dropped_spaces
                    .extend(chunk.dropped_spaces.iter().copied());
                inner.end = chunk.end;
                return;
            }
        }
    }

    /// Where the layer starts (after this LSN): no lock needed.
    pub fn start(&self) -> Lsn {
        self.start
    }

    pub fn range(&self) -> LsnRange {
        LsnRange {
            start: self.start,
            end: self.inner.read().end,
        }
    }

    pub fn end(&self) -> Lsn {
        self.inner.read().end
    }

    pub fn bytes(&self) -> usize {
        self.inner.read().bytes
    }

    pub fn records(&self) -> u64 {
        self.inner.read().records
    }

    pub fn dropped_spaces(&self) -> Vec<(u32, Lsn)> {
        self.inner.read().dropped_spaces.clone()
    }

    /// The LSNs of `page`'s first and last records here, if it has any.
    pub fn summary(&self, page: PageId) -> Option<(Lsn, Lsn)> {
        let inner = self.inner.read();
        let recs = inner.pages.get(&page)?;
        Some((recs.first()?.0, recs.last()?.0))
    }

    /// `page`'s records at or below `upto`, in LSN order.
    pub fn read_page(&self, page: PageId, upto: Lsn) -> Vec<(Lsn, Value)> {
        let inner = self.inner.read();
        let Some(recs) = inner.pages.get(&page) else {
            return Vec::new();
        };
        let n = recs.partition_point(|(lsn, _)| *lsn <= upto);
        recs[..n]
            .iter()
            .map(|(lsn, frame)| (*lsn, Value::Delta(frame.clone())))
            .collect()
    }

    /// The LSN of `page`'s first record above `lsn` here, and the layer's
    /// end, read together.
    pub fn next_after(&self, page: PageId, lsn: Lsn) -> (Option<Lsn>, Lsn) {
        let inner = self.inner.read();
        let next = inner.pages.get(&page).and_then(|recs| {
            let i = recs.partition_point(|(l, _)| *l <= lsn);
            recs.get(i).map(|(l, _)| *l)
        });
        (next, inner.end)
    }

    /// The LSN of `page`'s last record at or below `lsn` here.
    pub fn last_at_or_below(&self, page: PageId, lsn: Lsn) -> Option<Lsn> {
        let inner = self.inner.read();
        let recs = inner.pages.get(&page)?;
        let i = recs.partition_point(|(l, _)| *l <= lsn);
        i.checked_sub(1).map(|i| recs[i].0)
    }

    /// Every page with its records, pages in order: what a freeze writes.
    pub fn sorted_pages(&self) -> Vec<(PageId, Vec<(Lsn, Bytes)>)> {
        let inner = self.inner.read();
        let mut pages: Vec<_> = inner
            .pages
            .iter()
            .map(|(page, recs)| (*page, recs.clone()))
            .collect();
        pages.sort_unstable_by_key(|(page, _)| *page);
        pages
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
}
