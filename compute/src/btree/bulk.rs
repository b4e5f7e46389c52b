//! Building a tree from sorted entries, a page at a time.
//!
//! The loader keeps one open page per level (its items, in memory) and
//! writes a page only when it is complete: filled to [`FILL_BYTES`], as one
//! `FullImage` op. A written page's first key and number go up into the
//! open page of the level above. A leaf's right-link is the page number its
//! successor will use, taken from the allocator when the leaf is written.
//! At `finish` the open pages are written bottom-up, and the single open
//! page of the top level goes to the root page, which was taken (and
//! formatted as an empty leaf) at `new`. Large values go to overflow chains
//! as in `put`.
//!
//! The loader holds page numbers only, never a page or a writer, so the
//! caller may commit its ops in several batches through different writers.
//! The only pages it reads are the space header and (in a space that had
//! pages freed) free-list pages: a `Miss` inside `push` or `finish` may
//! leave the loader's state half-advanced, so a caller keeps the header
//! fetched while loading (a new space's free list is empty).

use strata_wal::op::PageOp;
use strata_wal::page::SLOT_BYTES;

use super::node::{self, PAGE_ROOM, encode_inner};
use super::{BTree, PageWrite, Result, check_key, check_value, page_type};
use crate::space;

/// How full the loader makes a page: about 90%.
pub const FILL_BYTES: usize = PAGE_ROOM * 9 / 10;

/// Builds a new tree from entries in ascending key order, writing whole
/// leaves and inner pages as `FullImage` ops.
pub struct BulkLoader {
    tree: BTree,
    /// The open page of each level, leaves first.
    levels: Vec<Level>,
    last_key: Option<Vec<u8>>,
}

#[derive(Default)]
struct Level {
    items: Vec<Vec<u8>>,
    bytes: usize,
    /// The first key of the open page (what goes up to the parent).
    first_key: Vec<u8>,
    /// The page number the open page will take, once one is known.
    page_no: Option<u32>,
    /// Whether this level has written a page (so it is not the top).
    written: bool,
}

/// What a level's item points to.
enum Payload {
    /// A leaf item, encoded.
    Leaf(Vec<u8>),
    /// An inner item's child page.
    Child(u32),
}

impl BulkLoader {
    /// Starts a tree in `space` (already created); the root page is taken
    /// now, so it is fixed.
    pub fn new(w: &mut impl PageWrite, space: u32) -> Result<BulkLoader> {
        Ok(BulkLoader {
            tree: BTree::create(w, space)?,
            levels: Vec::new(),
            last_key: None,
        })
    }

    /// The tree being built (its root is fixed from the start).
    pub fn tree(&self) -> BTree {
        self.tree
    }

    /// Adds the next entry (keys strictly ascending; a key out of order is
    /// a `Corrupt` error naming the root, and nothing is written).
    pub fn push(&mut self, w: &mut impl PageWrite, key: &[u8], value: &[u8]) -> Result<()> {
        check_key(key)?;
        check_value(value)?;
        if self.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(node::corrupt(
                self.tree.root,
                "bulk load keys are not strictly ascending",
            ));
        }
        let item = self.tree.leaf_item(w, key, value)?;
        self.add(w, 0, key.to_vec(), Payload::Leaf(item))?;
        self.last_key = Some(key.to_vec());
        Ok(())
    }

    pub fn finish(mut self, w: &mut impl PageWrite) -> Result<BTree> {
        let mut level = 0;
        while level < self.levels.len() {
            let top = level + 1 == self.levels.len();
            let lv = &mut self.levels[level];
            if top && !lv.written {
                let items = std::mem::take(&mut lv.items);
                self.write(w, self.tree.root.page_no, level, &items, 0)?;
                break;
            }
            let page_no = match lv.page_no {
                Some(p) => p,
                None => space::allocate_page(w, self.tree.space())?,
            };
            let items = std::mem::take(&mut lv.items);
            let first_key = std::mem::take(&mut lv.first_key);
            self.write(w, page_no, level, &items, 0)?;
            self.add(w, level + 1, first_key, Payload::Child(page_no))?;
            level += 1;
        }
        Ok(self.tree)
    }

    /// Adds an item to the open page of `level`, first writing that page
    /// if the item would take it past [`FILL_BYTES`].
    fn add(
        &mut self,
        w: &mut impl PageWrite,
        level: usize,
        key: Vec<u8>,
        p: Payload,
    ) -> Result<()> {
        if self.levels.len() <= level {
            self.levels.push(Level::default());
        }
        let lv = &self.levels[level];
        let len = match &p {
            Payload::Leaf(item) => item.len(),
            Payload::Child(_) if lv.items.is_empty() => 4,
            Payload::Child(_) => 4 + key.len(),
        };
        if !lv.items.is_empty() && lv.bytes + len + SLOT_BYTES > FILL_BYTES {
            self.write_open(w, level)?;
        }
        let lv = &mut self.levels[level];
        let item = match p {
            Payload::Leaf(item) => item,
            Payload::Child(child) if lv.items.is_empty() => encode_inner(child, b""),
            Payload::Child(child) => encode_inner(child, &key),
        };
        if lv.items.is_empty() {
            lv.first_key = key;
        }
        lv.bytes += item.len() + SLOT_BYTES;
        lv.items.push(item);
        Ok(())
    }

    /// Writes the open page of `level`, which has a successor: it links
    /// to it (leaves) and goes up into the level above.
    fn write_open(&mut self, w: &mut impl PageWrite, level: usize) -> Result<()> {
        let space = self.tree.space();
        let page_no = match self.levels[level].page_no {
            Some(p) => p,
            None => space::allocate_page(w, space)?,
        };
        let next = space::allocate_page(w, space)?;
        let lv = &mut self.levels[level];
        let items = std::mem::take(&mut lv.items);
        let first_key = std::mem::take(&mut lv.first_key);
        (lv.bytes, lv.page_no, lv.written) = (0, Some(next), true);
        let link = if level == 0 { next } else { 0 };
        self.write(w, page_no, level, &items, link)?;
        self.add(w, level + 1, first_key, Payload::Child(page_no))
    }

    fn write(
        &self,
        w: &mut impl PageWrite,
        page_no: u32,
        level: usize,
        items: &[Vec<u8>],
        link: u32,
    ) -> Result<()> {
        let id = self.tree.page_id(page_no);
        let level = u8::try_from(level)
            .ok()
            .filter(|l| *l <= super::MAX_LEVELS)
            .ok_or_else(|| node::corrupt(id, "the tree is too deep"))?;
        let kind = if level == 0 {
            page_type::LEAF
        } else {
            page_type::INNER
        };
        let page = node::build_page(id, kind, level, items, link)?;
        w.apply(id, PageOp::full_image(&page))
    }
}
