//! The B+tree over pages: one clustered or secondary index per space.
//!
//! The tree owns the layout of its pages (see [`node`] for the items) and
//! every decision to split, merge or free them; it owns no page. It reads
//! pages through [`PageRead`] and changes them only through [`PageWrite`],
//! one [`PageOp`] at a time, so the engine logs every change and the page
//! server, replaying the same records, gets the same bytes. It never
//! changes a page it read: a page it makes whole (a split's new half, a
//! merge, an overflow page) is built privately and shipped as `FullImage`.
//!
//! Invariants of a tree:
//! - The root page never moves: a root split moves its content into two
//!   new children and re-formats the root one level up; a root with one
//!   child takes that child's content back.
//! - Leaves are level 0, inner pages level `>= 1`, each child exactly one
//!   level below its parent. Keys are unique and ascend (plain byte order)
//!   within a page and along the leaf chain, which is linked by
//!   right-links (the last leaf links 0; inner pages link 0).
//! - Only the root may be empty: an emptied page leaves its parent and is
//!   freed; a leaf under a quarter full is merged into a sibling when both
//!   fit in one page (inner pages likewise).
//! - A value whose leaf item would exceed [`node::MAX_INLINE_ITEM`] lives
//!   in an overflow chain ([`overflow`]) freed with its item.
//!
//! Every operation may fail with [`TreeError::Miss`]: reads propagate it
//! and change nothing; a write that misses may have applied some ops, and
//! the caller discards them all and replays after fetching the page.

mod bulk;
mod cursor;
mod insert;
mod node;
mod overflow;
mod remove;
#[cfg(test)]
mod tests;

use std::ops::Bound;
use std::sync::Arc;

use strata_wal::PageId;
use strata_wal::op::PageOp;
use strata_wal::page::{Page, PageError};

pub use bulk::BulkLoader;
pub use cursor::Cursor;

use crate::space;
use node::ValueRef;

/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 2048;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 16 << 20;

/// The `page_type` byte of every page a space holds.
pub mod page_type {
    /// Page 0 of a space: the allocator's state and the engine's counters.
    pub const SPACE_HEADER: u8 = 1;
    /// A tree leaf (level 0): key/value items, right-linked.
    pub const LEAF: u8 = 2;
    /// An inner tree page (level >= 1): separator key/child items.
    pub const INNER: u8 = 3;
    /// One chunk of a large value; right-link to the next chunk.
    pub const OVERFLOW: u8 = 4;
    /// On the free list; right-link to the next free page.
    pub const FREE: u8 = 5;
}

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

/// One page on a root-to-leaf path, and the child slot taken from it (0 on
/// the leaf).
struct Frame {
    id: PageId,
    page: Arc<Page>,
    slot: u16,
}

/// Where a descent goes.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// To the leaf whose range holds this key.
    Key(&'a [u8]),
    /// To the last leaf.
    Rightmost,
}

/// The deepest a tree may be; a deeper one is corrupt (a loop).
const MAX_LEVELS: u8 = 32;

fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(TreeError::KeyTooLarge { len: key.len() });
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(TreeError::ValueTooLarge { len: value.len() });
    }
    Ok(())
}

impl BTree {
    /// Allocates a root page in `space` (already created with
    /// `space::create_space`) and formats it as an empty leaf.
    pub fn create(w: &mut impl PageWrite, space: u32) -> Result<BTree> {
        let page_no = space::allocate_page(w, space)?;
        let root = PageId::new(space, page_no);
        w.apply(
            root,
            PageOp::Init {
                page_type: page_type::LEAF,
                level: 0,
            },
        )?;
        Ok(BTree { root })
    }

    pub fn open(root: PageId) -> BTree {
        BTree { root }
    }

    fn space(&self) -> u32 {
        self.root.space
    }

    fn page_id(&self, page_no: u32) -> PageId {
        PageId::new(self.root.space, page_no)
    }

    pub fn get(&self, r: &mut impl PageRead, key: &[u8]) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        let path = self.descend(r, Target::Key(key))?;
        let leaf = leaf_of(&path);
        match node::search_leaf(&leaf.page, leaf.id, key)? {
            Ok(slot) => Ok(Some(self.read_value(r, &leaf.page, leaf.id, slot)?.0)),
            Err(_) => Ok(None),
        }
    }

    /// Inserts or replaces; returns the previous value.
    pub fn put(&self, w: &mut impl PageWrite, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        check_value(value)?;
        let path = self.descend(w, Target::Key(key))?;
        let leaf = leaf_of(&path);
        let found = node::search_leaf(&leaf.page, leaf.id, key)?;
        let old = match found {
            Ok(slot) => Some(self.read_value(w, &leaf.page, leaf.id, slot)?),
            Err(_) => None,
        };
        let item = self.leaf_item(w, key, value)?;
        match found {
            Ok(slot) => insert::replace(self, w, &path, slot, item)?,
            Err(slot) => insert::insert(self, w, &path, path.len() - 1, slot, item)?,
        }
        match old {
            Some((value, chain)) => {
                space::free_pages(w, self.space(), &chain)?;
                Ok(Some(value))
            }
            None => Ok(None),
        }
    }

    /// Removes `key`; returns its value.
    pub fn delete(&self, w: &mut impl PageWrite, key: &[u8]) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        remove::delete(self, w, key)
    }

    /// The pages a change of `key` reads: the path from the root to the
    /// leaf, the space header. For prefetching.
    pub fn path(&self, r: &mut impl PageRead, key: &[u8]) -> Result<Vec<PageId>> {
        check_key(key)?;
        let path = self.descend(r, Target::Key(key))?;
        let mut ids: Vec<PageId> = path.iter().map(|f| f.id).collect();
        ids.push(space::header_page(self.space()));
        Ok(ids)
    }

    pub fn cursor(&self, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>, dir: Direction) -> Cursor {
        Cursor::new(*self, lower, upper, dir)
    }

    /// The path from the root to the leaf `target` names.
    fn descend(&self, r: &mut impl PageRead, target: Target<'_>) -> Result<Vec<Frame>> {
        let mut path = Vec::new();
        self.descend_from(r, &mut path, self.root, None, target)?;
        Ok(path)
    }

    /// Extends `path` from page `id` (expected at `level`, if known) down
    /// to the leaf `target` names.
    fn descend_from(
        &self,
        r: &mut impl PageRead,
        path: &mut Vec<Frame>,
        mut id: PageId,
        mut level: Option<u8>,
        target: Target<'_>,
    ) -> Result<()> {
        loop {
            let page = r.page(id)?;
            node::check_node(&page, id, level)?;
            if page.level() > MAX_LEVELS {
                return Err(node::corrupt(id, "a tree deeper than any real one"));
            }
            if page.level() == 0 {
                path.push(Frame { id, page, slot: 0 });
                return Ok(());
            }
            let slot = match target {
                Target::Key(key) => node::child_slot(&page, id, key)?,
                Target::Rightmost => page
                    .slot_count()
                    .checked_sub(1)
                    .ok_or_else(|| node::corrupt(id, "an inner page without children"))?,
            };
            let child = self.page_id(node::inner_child(&page, id, slot)?);
            level = Some(page.level() - 1);
            path.push(Frame { id, page, slot });
            id = child;
        }
    }

    /// The value of leaf item `slot`, and its overflow pages if it has any.
    fn read_value(
        &self,
        r: &mut impl PageRead,
        page: &Page,
        id: PageId,
        slot: u16,
    ) -> Result<(Vec<u8>, Vec<u32>)> {
        match node::parse_leaf(id, node::item(page, id, slot)?)?.1 {
            ValueRef::Inline(v) => Ok((v.to_vec(), Vec::new())),
            ValueRef::Overflow { first, len } => overflow::read_chain(r, self.space(), first, len),
        }
    }

    /// The leaf item for `key` and `value`, writing the value to an
    /// overflow chain if it is too large to sit inline.
    fn leaf_item(&self, w: &mut impl PageWrite, key: &[u8], value: &[u8]) -> Result<Vec<u8>> {
        if node::inline_item_len(key, value) <= node::MAX_INLINE_ITEM {
            return Ok(node::encode_leaf(key, ValueRef::Inline(value)));
        }
        let first = overflow::write_chain(w, self.space(), value)?;
        let len = u32::try_from(value.len()).expect("values are checked against MAX_VALUE_BYTES");
        Ok(node::encode_leaf(key, ValueRef::Overflow { first, len }))
    }
}

/// The leaf at the end of a descent.
fn leaf_of(path: &[Frame]) -> &Frame {
    path.last().expect("a descent ends at a leaf")
}
