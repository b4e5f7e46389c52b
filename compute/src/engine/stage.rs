//! The applier's private staging area for one batch.
//!
//! A [`Stage`] reads pages as of the applied LSN (the pool's current
//! versions) and takes every change as a page op: it frames the op as a WAL
//! record in the batch, then applies it with `strata_wal::redo::apply_op`
//! to a private copy of the page at the LSN the record will have in the
//! log (`start` + its end within the batch). So the pages published from a
//! stage are byte for byte what the page server rebuilds from the log.
//!
//! Nothing in a stage is visible until [`Stage::finish`] hands its pages to
//! the pool; a stage dropped half way leaves no trace.

use std::collections::HashMap;
use std::sync::Arc;

use strata_wal::op::PageOp;
use strata_wal::page::Page;
use strata_wal::record::{Batch, BatchBuilder, Record};
use strata_wal::redo::apply_op;
use strata_wal::{Lsn, PageId};

use crate::btree::{PageRead, PageWrite, Result as TreeResult, TreeError};
use crate::pool::BufferPool;

pub(crate) struct Stage<'a> {
    pool: &'a BufferPool,
    /// The applied LSN the stage reads at.
    base: Lsn,
    /// Where the batch will start in the log.
    start: Lsn,
    pages: HashMap<PageId, Arc<Page>>,
    /// Pages the transaction fetched before it entered the applier, used
    /// if the pool has let them go and no publish has changed them since.
    pinned: Option<&'a HashMap<PageId, Arc<Page>>>,
    batch: BatchBuilder,
}

/// A finished stage: the batch to append and the images to publish.
pub(crate) struct Staged {
    pub batch: Batch,
    pub images: Vec<(PageId, Arc<Page>)>,
    /// The batch's commit LSN, if it lands at `start`.
    pub commit_lsn: Lsn,
}

impl<'a> Stage<'a> {
    pub fn new(pool: &'a BufferPool, start: Lsn) -> Stage<'a> {
        Stage {
            pool,
            base: pool.applied_lsn(),
            start,
            pages: HashMap::new(),
            pinned: None,
            batch: BatchBuilder::new(),
        }
    }

    /// Lets the stage fall back on pages held by the transaction.
    pub fn with_pinned(mut self, pinned: &'a HashMap<PageId, Arc<Page>>) -> Stage<'a> {
        self.pinned = Some(pinned);
        self
    }

    /// Page `id` as of the applied LSN, from the pool or the pinned pages.
    fn committed(&self, id: PageId) -> Option<Arc<Page>> {
        if let Some(page) = self.pool.get(id, self.base) {
            return Some(page);
        }
        let page = self.pinned?.get(&id)?;
        self.pool
            .still_current(id, page.lsn())
            .then(|| Arc::clone(page))
    }

    /// Where this batch starts: a snapshot must be past it to see it.
    pub fn start(&self) -> Lsn {
        self.start
    }

    /// Bytes framed so far.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Logs the drop of a whole space.
    pub fn drop_space(&mut self, space: u32) {
        self.batch
            .push(&Record::DropSpace { space })
            .expect("a drop-space record is tiny");
    }

    pub fn finish(self, timestamp_us: u64) -> Staged {
        let batch = self.batch.commit(timestamp_us);
        let commit_lsn = self.start.advance(batch.len() as u64);
        Staged {
            batch,
            images: self.pages.into_iter().collect(),
            commit_lsn,
        }
    }

    /// The page as the stage sees it, for a change.
    fn base_for(&mut self, id: PageId, op: &PageOp) -> TreeResult<Arc<Page>> {
        if let Some(page) = self.pages.remove(&id) {
            return Ok(page);
        }
        match (self.committed(id), op) {
            (Some(page), _) => Ok(page),
            // Formatting ops do not read the page: a new page needs no fetch.
            (None, PageOp::Init { .. } | PageOp::FullImage { .. }) => {
                Ok(Arc::new(Page::new_zeroed()))
            }
            (None, _) => Err(TreeError::Miss(id)),
        }
    }
}

impl PageRead for Stage<'_> {
    fn page(&mut self, id: PageId) -> TreeResult<Arc<Page>> {
        if let Some(page) = self.pages.get(&id) {
            return Ok(page.clone());
        }
        self.committed(id).ok_or(TreeError::Miss(id))
    }
}

impl PageWrite for Stage<'_> {
    fn apply(&mut self, id: PageId, op: PageOp) -> TreeResult<()> {
        let mut page = self.base_for(id, &op)?;
        let record = Record::Page { page: id, op };
        let pushed = self.batch.push(&record);
        let Record::Page { op, .. } = record else {
            unreachable!("built as a page record above")
        };
        pushed.map_err(|e| TreeError::Corrupt {
            page: id,
            detail: format!("cannot frame {:?}: {e}", op.kind()),
        })?;
        let lsn = self.start.advance(self.batch.len() as u64);
        let result = apply_op(Arc::make_mut(&mut page), lsn, &op);
        // Keep the page even on error: the stage is dropped by the caller.
        self.pages.insert(id, page);
        result.map_err(|source| TreeError::Page { page: id, source })
    }
}
