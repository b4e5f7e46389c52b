//! The versioned buffer pool. (Stub: helper C owns this file.)

use std::sync::Arc;

use strata_wal::page::Page;
use strata_wal::{Lsn, PageId};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub versions: u64,
    pub bytes: u64,
    /// Bytes of versions above the durable LSN (pinned).
    pub pinned_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

pub struct BufferPool {}

impl BufferPool {
    /// A pool holding at most about `budget_bytes` of page images (pinned
    /// versions may exceed it; the engine bounds them). `start` is the log
    /// end when this node started: no page was written after it but by
    /// this node, and the applied and durable LSNs start there.
    pub fn new(budget_bytes: u64, start: Lsn) -> BufferPool {
        let _ = (budget_bytes, start);
        unimplemented!("helper C")
    }

    /// The version of `page` valid at `lsn`, if cached.
    pub fn get(&self, page: PageId, lsn: Lsn) -> Option<Arc<Page>> {
        let _ = (page, lsn);
        unimplemented!("helper C")
    }

    /// The LSN to fetch `page` at for the write path: the LSN of the last
    /// batch this node published that wrote it, else `start`.
    pub fn last_written(&self, page: PageId) -> Lsn {
        let _ = page;
        unimplemented!("helper C")
    }

    /// Adds a version fetched from a page source, valid `[from, to)`;
    /// `to` is clipped to what this node has written since.
    pub fn insert(&self, page: PageId, image: Arc<Page>, from: Lsn, to: Lsn) {
        let _ = (page, image, from, to);
        unimplemented!("helper C")
    }

    /// The applier publishes one batch, all or nothing: each image becomes
    /// the page's current version from its page LSN, closing the previous
    /// one there; then the applied LSN becomes `applied`.
    pub fn publish(&self, images: Vec<(PageId, Arc<Page>)>, applied: Lsn) {
        let _ = (images, applied);
        unimplemented!("helper C")
    }

    pub fn applied_lsn(&self) -> Lsn {
        unimplemented!("helper C")
    }

    /// The quorum has everything up to `lsn`: versions from at or below it
    /// may be evicted.
    pub fn mark_durable(&self, lsn: Lsn) {
        let _ = lsn;
        unimplemented!("helper C")
    }

    pub fn durable_lsn(&self) -> Lsn {
        unimplemented!("helper C")
    }

    /// The failure path: drops every version above `durable` and makes
    /// the applied LSN `durable` again.
    pub fn discard_above(&self, durable: Lsn) {
        let _ = durable;
        unimplemented!("helper C")
    }

    /// No snapshot below `oldest` remains: versions that ended at or below
    /// it can go.
    pub fn release_below(&self, oldest: Lsn) {
        let _ = oldest;
        unimplemented!("helper C")
    }

    pub fn stats(&self) -> PoolStats {
        unimplemented!("helper C")
    }
}
