//! Reading trees from the buffer pool at one LSN, fetching misses.
//!
//! The B+tree is synchronous and reads through [`PageRead`]; a page not in
//! the pool is a [`TreeError::Miss`]. [`Shared::read_at`] runs a read,
//! fetches the missing page (at the snapshot LSN, or the page's current
//! version for a current read) and runs it again; reads change nothing, and
//! a cursor that missed has not moved, so running again is always safe.

use std::collections::HashMap;
use std::sync::Arc;

use strata_wal::page::Page;
use strata_wal::{Lsn, PageId};

use super::Shared;
use crate::btree::{PageRead, Result as TreeResult, TreeError};
use crate::error::Result;
use crate::pool::BufferPool;

/// Which version of the data a read sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAt {
    /// A snapshot: durable data as of this LSN.
    Snapshot(Lsn),
    /// Current read: everything the applier has published (write path),
    /// at this LSN or, after a miss, at the applied LSN of then (data read
    /// is never older than this).
    Current(Lsn),
}

/// The pool as of one LSN.
pub struct PoolReader<'a> {
    pool: &'a BufferPool,
    at: Lsn,
    /// Pages read, when asked to keep them.
    kept: Option<Vec<(PageId, Arc<Page>)>>,
}

impl<'a> PoolReader<'a> {
    pub fn new(pool: &'a BufferPool, at: Lsn) -> Self {
        PoolReader {
            pool,
            at,
            kept: None,
        }
    }
}

impl PageRead for PoolReader<'_> {
    fn page(&mut self, id: PageId) -> TreeResult<Arc<Page>> {
        let page = self.pool.get(id, self.at).ok_or(TreeError::Miss(id))?;
        if let Some(kept) = &mut self.kept {
            kept.push((id, Arc::clone(&page)));
        }
        Ok(page)
    }
}

impl Shared {
    /// Runs `read` against the pool at `at` until no page is missing.
    pub async fn read_at<T>(
        &self,
        at: ReadAt,
        mut read: impl FnMut(&mut PoolReader<'_>) -> TreeResult<T>,
    ) -> Result<T> {
        loop {
            // A current read that missed starts again at the applied LSN of
            // now: the page it fetched is the current one, which may be
            // newer than the position it first read at.
            let lsn = match at {
                ReadAt::Snapshot(lsn) => lsn,
                ReadAt::Current(_) => self.pool.applied_lsn(),
            };
            let mut reader = PoolReader::new(&self.pool, lsn);
            match read(&mut reader) {
                Err(TreeError::Miss(page)) => self.fetch(at, page).await?,
                other => return other.map_err(Into::into),
            }
        }
    }

    /// A current read that also returns every page it read: the engine
    /// holds them so that they cannot be evicted before the applier uses
    /// them.
    pub async fn read_current_keeping<T>(
        &self,
        mut read: impl FnMut(&mut PoolReader<'_>) -> TreeResult<T>,
        keep: &mut HashMap<PageId, Arc<Page>>,
    ) -> Result<T> {
        loop {
            let mut reader = PoolReader::new(&self.pool, self.pool.applied_lsn());
            reader.kept = Some(Vec::new());
            let result = read(&mut reader);
            keep.extend(reader.kept.take().into_iter().flatten());
            match result {
                Err(TreeError::Miss(page)) => self.fetcher.fetch_current(page).await?,
                other => return other.map_err(Into::into),
            }
        }
    }

    pub async fn fetch(&self, at: ReadAt, page: PageId) -> Result<()> {
        match at {
            ReadAt::Snapshot(lsn) => self.fetcher.fetch(page, lsn).await,
            ReadAt::Current(_) => self.fetcher.fetch_current(page).await,
        }
    }

    /// A current read's position: the applied LSN now.
    pub fn current(&self) -> ReadAt {
        ReadAt::Current(self.pool.applied_lsn())
    }
}

impl Shared {
    /// The next entry of `cursor` at `at`, fetching misses.
    pub async fn next_entry(
        &self,
        at: ReadAt,
        cursor: &mut crate::btree::Cursor,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.read_at(at, |r| cursor.next(r)).await
    }

    /// Up to `max` next entries of `cursor` at `at` (see
    /// [`crate::btree::Cursor::next_batch`]), appended to `out`.
    pub async fn next_entries(
        &self,
        at: ReadAt,
        cursor: &mut crate::btree::Cursor,
        max: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        self.read_at(at, |r| cursor.next_batch(r, max, out)).await
    }

    /// Every entry of `tree` at `at`, in key order.
    pub async fn collect(
        &self,
        at: ReadAt,
        tree: crate::btree::BTree,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        use std::ops::Bound;
        let mut cursor = tree.cursor(
            Bound::Unbounded,
            Bound::Unbounded,
            crate::btree::Direction::Forward,
        );
        let mut out = Vec::new();
        while let Some(entry) = self.next_entry(at, &mut cursor).await? {
            out.push(entry);
        }
        Ok(out)
    }
}
