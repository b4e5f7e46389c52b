//! The B+tree over pages. (Stub: helper B owns this file and `btree/`.)

use std::ops::Bound;
use std::sync::Arc;

use strata_wal::PageId;
use strata_wal::op::PageOp;
use strata_wal::page::{Page, PageError};

/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 2048;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Page `0` is not in memory: fetch it and retry the whole operation
    /// (a failed operation changed nothing; a cursor did not move).
    #[error("page {0} is not in memory")]
    Miss(PageId),
    #[error("page {page}: {detail}")]
    Corrupt { page: PageId, detail: String },
    #[error("page {page}: {source}")]
    Page {
        page: PageId,
        #[source]
        source: PageError,
    },
    #[error("key of {len} bytes; the most is {MAX_KEY_BYTES}")]
    KeyTooLarge { len: usize },
    #[error("value of {len} bytes; the most is {MAX_VALUE_BYTES}")]
    ValueTooLarge { len: usize },
}

pub type Result<T, E = TreeError> = std::result::Result<T, E>;

/// Where a tree reads pages.
pub trait PageRead {
    /// Page `id` as this reader sees it, or `TreeError::Miss(id)`.
    fn page(&mut self, id: PageId) -> Result<Arc<Page>>;
}

/// Where a tree writes: every change is one page op.
pub trait PageWrite: PageRead {
    /// Applies `op` to page `id` (logging it). A page never read and never
    /// written before may be the target of `Init` or `FullImage` only.
    fn apply(&mut self, id: PageId, op: PageOp) -> Result<()>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

/// A clustered or secondary index: its fixed root page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BTree {
    pub root: PageId,
}

impl BTree {
    /// Allocates a root page in `space` (already created with
    /// `space::create_space`) and formats it as an empty leaf.
    pub fn create(w: &mut impl PageWrite, space: u32) -> Result<BTree> {
        let _ = (w, space);
        unimplemented!("helper B")
    }

    pub fn open(root: PageId) -> BTree {
        BTree { root }
    }

    pub fn get(&self, r: &mut impl PageRead, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let _ = (r, key);
        unimplemented!("helper B")
    }

    /// Inserts or replaces; returns the previous value.
    pub fn put(&self, w: &mut impl PageWrite, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let _ = (w, key, value);
        unimplemented!("helper B")
    }

    /// Removes `key`; returns its value.
    pub fn delete(&self, w: &mut impl PageWrite, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let _ = (w, key);
        unimplemented!("helper B")
    }

    /// The pages a change of `key` reads: the path from the root to the
    /// leaf, the space header. For prefetching.
    pub fn path(&self, r: &mut impl PageRead, key: &[u8]) -> Result<Vec<PageId>> {
        let _ = (r, key);
        unimplemented!("helper B")
    }

    pub fn cursor(&self, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>, dir: Direction) -> Cursor {
        let _ = (lower, upper, dir);
        unimplemented!("helper B")
    }
}

/// A range scan. Each call reads pages through the reader it is given.
pub struct Cursor {}

impl Cursor {
    /// The next entry in the cursor's direction, `None` past the range.
    /// On error the cursor is unchanged.
    pub fn next(&mut self, r: &mut impl PageRead) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let _ = r;
        unimplemented!("helper B")
    }
}

/// Builds a new tree from entries in ascending key order, writing whole
/// leaves and inner pages as `FullImage` ops.
pub struct BulkLoader {}

impl BulkLoader {
    /// Starts a tree in `space` (already created); the root page is taken
    /// now, so it is fixed.
    pub fn new(w: &mut impl PageWrite, space: u32) -> Result<BulkLoader> {
        let _ = (w, space);
        unimplemented!("helper B")
    }

    /// Adds the next entry (keys strictly ascending).
    pub fn push(&mut self, w: &mut impl PageWrite, key: &[u8], value: &[u8]) -> Result<()> {
        let _ = (w, key, value);
        unimplemented!("helper B")
    }

    pub fn finish(self, w: &mut impl PageWrite) -> Result<BTree> {
        let _ = w;
        unimplemented!("helper B")
    }
}
