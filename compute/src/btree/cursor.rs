//! Range scans.
//!
//! A [`Cursor`] owns its state: the bounds, the direction, and after the
//! first entry the last key it returned and the leaf it was on. It never
//! holds a page or a reader. Each [`Cursor::next`] looks at that leaf
//! again: if the leaf still holds the last key, the next entry is beside it
//! (forward, possibly across right-links); otherwise (the tree changed
//! under the cursor) it descends again from the root for the first key
//! past the last one. Going backwards there is no left link, so moving off
//! the front of a leaf descends again for the last key below.
//!
//! `next` commits its new state only after everything it read succeeded:
//! on a `Miss` the cursor has not moved.

use std::ops::Bound;
use std::sync::Arc;

use strata_wal::PageId;
use strata_wal::page::Page;

use super::node::{self, search_leaf};
use super::{BTree, Direction, Frame, PageRead, Result, Target, leaf_of, page_type};

/// Most empty leaves a forward step may cross: only the root can be empty
/// in a sound tree, so more means a corrupt chain.
const MAX_EMPTY_LEAVES: usize = 64;

/// A range scan. Each call reads pages through the reader it is given.
#[derive(Clone, Debug)]
pub struct Cursor {
    tree: BTree,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    dir: Direction,
    pos: Pos,
}

#[derive(Clone, Debug)]
enum Pos {
    Start,
    /// `key` was returned last, from leaf `leaf`.
    After {
        leaf: PageId,
        key: Vec<u8>,
    },
    Done,
}

/// An entry found: leaf item `slot` of `page`.
struct Hit {
    id: PageId,
    page: Arc<Page>,
    slot: u16,
}

impl Cursor {
    pub(super) fn new(
        tree: BTree,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        dir: Direction,
    ) -> Cursor {
        Cursor {
            tree,
            lower,
            upper,
            dir,
            pos: Pos::Start,
        }
    }

    /// The next entry in the cursor's direction, `None` past the range.
    /// On error the cursor is unchanged.
    pub fn next(&mut self, r: &mut impl PageRead) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut one = Vec::with_capacity(1);
        self.next_batch(r, 1, &mut one)?;
        Ok(one.pop())
    }

    /// Up to `max` (≥ 1) next entries, appended to `out`: the next one and
    /// those after it on the same leaf, read from one look at that leaf.
    /// None are appended past the range. On error neither the cursor nor
    /// `out` has changed.
    pub fn next_batch(
        &mut self,
        r: &mut impl PageRead,
        max: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        let before = out.len();
        let result = self.read_batch(r, max.max(1), out);
        if result.is_err() {
            out.truncate(before);
        }
        let pos = result?;
        self.pos = pos;
        Ok(())
    }

    /// Appends the entries of [`Cursor::next_batch`]; returns the position
    /// after them (committed by the caller only on success).
    fn read_batch(
        &self,
        r: &mut impl PageRead,
        max: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Pos> {
        let hit = match (&self.pos, self.dir) {
            (Pos::Done, _) => return Ok(Pos::Done),
            (Pos::Start, Direction::Forward) => self.seek_forward(r, as_ref(&self.lower))?,
            (Pos::Start, Direction::Reverse) => self.seek_reverse(r, as_ref(&self.upper))?,
            (Pos::After { leaf, key }, Direction::Forward) => self.step_forward(r, *leaf, key)?,
            (Pos::After { leaf, key }, Direction::Reverse) => self.step_reverse(r, *leaf, key)?,
        };
        let Some(Hit { id, page, mut slot }) = hit else {
            return Ok(Pos::Done);
        };
        let mut taken = 0;
        loop {
            let key = node::leaf_key(&page, id, slot)?;
            let inside = match self.dir {
                Direction::Forward => below(key, as_ref(&self.upper)),
                Direction::Reverse => above(key, as_ref(&self.lower)),
            };
            if !inside {
                return Ok(Pos::Done);
            }
            let value = match self.tree.read_value(r, &page, id, slot) {
                Ok((value, _)) => value,
                // An overflow page not in the pool: end the batch before
                // this entry rather than read the ones before it again
                // after the fetch.
                Err(super::TreeError::Miss(_)) if taken > 0 => break,
                Err(e) => return Err(e),
            };
            out.push((key.to_vec(), value));
            taken += 1;
            let next = match self.dir {
                Direction::Forward => Some(slot + 1).filter(|s| *s < page.slot_count()),
                Direction::Reverse => slot.checked_sub(1),
            };
            match next {
                Some(s) if taken < max => slot = s,
                _ => break,
            }
        }
        let key = out.last().expect("taken ≥ 1").0.clone();
        Ok(Pos::After { leaf: id, key })
    }

    /// The first entry at or past `bound`.
    fn seek_forward(&self, r: &mut impl PageRead, bound: Bound<&[u8]>) -> Result<Option<Hit>> {
        let key = match bound {
            Bound::Included(k) | Bound::Excluded(k) => k,
            Bound::Unbounded => &[],
        };
        let path = self.tree.descend(r, Target::Key(key))?;
        let leaf = leaf_of(&path);
        let slot = match (bound, search_leaf(&leaf.page, leaf.id, key)?) {
            (Bound::Unbounded, _) => 0,
            (Bound::Excluded(_), Ok(s)) => s + 1,
            (_, Ok(s) | Err(s)) => s,
        };
        self.first_from(r, leaf.id, leaf.page.clone(), slot)
    }

    /// The entry at `slot` of leaf `id`, or the first one after it along
    /// the chain.
    fn first_from(
        &self,
        r: &mut impl PageRead,
        mut id: PageId,
        mut page: Arc<Page>,
        slot: u16,
    ) -> Result<Option<Hit>> {
        if slot < page.slot_count() {
            return Ok(Some(Hit { id, page, slot }));
        }
        for _ in 0..MAX_EMPTY_LEAVES {
            let next = page.right_link();
            if next == 0 {
                return Ok(None);
            }
            id = self.tree.page_id(next);
            page = r.page(id)?;
            node::check_node(&page, id, Some(0))?;
            if page.slot_count() > 0 {
                return Ok(Some(Hit { id, page, slot: 0 }));
            }
        }
        Err(node::corrupt(id, "a chain of empty leaves"))
    }

    fn step_forward(&self, r: &mut impl PageRead, leaf: PageId, key: &[u8]) -> Result<Option<Hit>> {
        let page = r.page(leaf)?;
        if page.page_type() == page_type::LEAF
            && let Ok(slot) = search_leaf(&page, leaf, key)?
        {
            return self.first_from(r, leaf, page, slot + 1);
        }
        self.seek_forward(r, Bound::Excluded(key))
    }

    /// The last entry at or before `bound`.
    fn seek_reverse(&self, r: &mut impl PageRead, bound: Bound<&[u8]>) -> Result<Option<Hit>> {
        let target = match bound {
            Bound::Included(k) | Bound::Excluded(k) => Target::Key(k),
            Bound::Unbounded => Target::Rightmost,
        };
        let mut path = self.tree.descend(r, target)?;
        let leaf = leaf_of(&path);
        let count = match (bound, target) {
            (Bound::Included(_), Target::Key(k)) => match search_leaf(&leaf.page, leaf.id, k)? {
                Ok(s) => s + 1,
                Err(s) => s,
            },
            (_, Target::Key(k)) => match search_leaf(&leaf.page, leaf.id, k)? {
                Ok(s) | Err(s) => s,
            },
            (_, Target::Rightmost) => leaf.page.slot_count(),
        };
        if count > 0 {
            return Ok(Some(hit_at(leaf, count - 1)));
        }
        self.last_before(r, &mut path)
    }

    /// The last entry before the leaf `path` ends at: the last leaf of the
    /// subtree left of the deepest ancestor slot that has one.
    fn last_before(&self, r: &mut impl PageRead, path: &mut Vec<Frame>) -> Result<Option<Hit>> {
        for _ in 0..MAX_EMPTY_LEAVES {
            let Some(j) = path.iter().rposition(|f| f.page.level() > 0 && f.slot > 0) else {
                return Ok(None);
            };
            path.truncate(j + 1);
            let frame = path.last_mut().expect("the path holds frame j");
            frame.slot -= 1;
            let child = self
                .tree
                .page_id(node::inner_child(&frame.page, frame.id, frame.slot)?);
            let level = frame.page.level().checked_sub(1);
            self.tree
                .descend_from(r, path, child, level, Target::Rightmost)?;
            let leaf = leaf_of(path);
            if let Some(last) = leaf.page.slot_count().checked_sub(1) {
                return Ok(Some(hit_at(leaf, last)));
            }
        }
        Err(node::corrupt(self.tree.root, "a run of empty leaves"))
    }

    fn step_reverse(&self, r: &mut impl PageRead, leaf: PageId, key: &[u8]) -> Result<Option<Hit>> {
        let page = r.page(leaf)?;
        if page.page_type() == page_type::LEAF
            && let Ok(slot) = search_leaf(&page, leaf, key)?
            && slot > 0
        {
            return Ok(Some(Hit {
                id: leaf,
                page,
                slot: slot - 1,
            }));
        }
        self.seek_reverse(r, Bound::Excluded(key))
    }
}

fn hit_at(leaf: &Frame, slot: u16) -> Hit {
    Hit {
        id: leaf.id,
        page: leaf.page.clone(),
        slot,
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    b.as_ref().map(Vec::as_slice)
}

/// Whether `key` is inside an upper bound.
fn below(key: &[u8], upper: Bound<&[u8]>) -> bool {
    match upper {
        Bound::Included(u) => key <= u,
        Bound::Excluded(u) => key < u,
        Bound::Unbounded => true,
    }
}

/// Whether `key` is inside a lower bound.
fn above(key: &[u8], lower: Bound<&[u8]>) -> bool {
    match lower {
        Bound::Included(l) => key >= l,
        Bound::Excluded(l) => key > l,
        Bound::Unbounded => true,
    }
}
