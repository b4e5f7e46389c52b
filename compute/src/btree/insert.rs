//! Inserting items and splitting full pages, bottom-up along a path.
//!
//! A page that cannot take an item is split by bytes: the old items and
//! the new one are cut in two halves that each fit (items are at most
//! about a quarter page, see [`node::MAX_INLINE_ITEM`]). The left half
//! stays in place (`Truncate`, maybe `Insert`, `SetLink`), the right half
//! goes to a new page as one `FullImage`, and the right page's separator
//! goes up into the parent, which may split in turn. The root splits into
//! two new children and stays where it is, one level higher.
//!
//! Appending past the last key of the rightmost page of a level (the
//! auto-increment pattern) splits off just the new item, so pages filled in
//! ascending order stay full.

use strata_wal::op::PageOp;
use strata_wal::page::{Page, SLOT_BYTES};

use super::node::{self, encode_inner, items_bytes};
use super::{BTree, Frame, PageWrite, Result, page_type};
use crate::space;

/// Replaces leaf item `slot` of the path's leaf by `item`, splitting the
/// leaf if the new item does not fit in place.
pub(super) fn replace(
    tree: &BTree,
    w: &mut impl PageWrite,
    path: &[Frame],
    slot: u16,
    item: Vec<u8>,
) -> Result<()> {
    let depth = path.len() - 1;
    let id = path[depth].id;
    let page = w.page(id)?;
    let old = node::item(&page, id, slot)?.len();
    if item.len() <= free_space(&page, id)? + old {
        return w.apply(id, PageOp::Replace { slot, bytes: item });
    }
    w.apply(id, PageOp::Delete { slot })?;
    insert(tree, w, path, depth, slot, item)
}

/// Inserts `item` at `slot` of the page at `path[depth]`, splitting it
/// (and its ancestors) if it is full.
pub(super) fn insert(
    tree: &BTree,
    w: &mut impl PageWrite,
    path: &[Frame],
    depth: usize,
    slot: u16,
    item: Vec<u8>,
) -> Result<()> {
    let id = path[depth].id;
    let page = w.page(id)?;
    if item.len() + SLOT_BYTES <= free_space(&page, id)? {
        return w.apply(id, PageOp::Insert { slot, bytes: item });
    }
    let mut items = node::items(&page, id)?;
    let at = usize::from(slot);
    items.insert(at, item);
    let rightmost = path[..depth]
        .iter()
        .all(|f| usize::from(f.slot) + 1 == usize::from(f.page.slot_count()));
    let k = split_point(&items, at, rightmost);
    if depth == 0 {
        return split_root(tree, w, &page, items, k);
    }
    let sep = separator(tree, &page, &items[k])?;
    let right_no = space::allocate_page(w, tree.space())?;
    let right = tree.page_id(right_no);
    let link = if page.level() == 0 {
        page.right_link()
    } else {
        0
    };
    let right_items = right_half(tree, &page, &items[k..])?;
    let image = node::build_page(right, page.page_type(), page.level(), &right_items, link)?;
    w.apply(right, PageOp::full_image(&image))?;
    let cut = |n: usize| u16::try_from(n).expect("a page holds fewer than 65536 items");
    if at < k {
        w.apply(
            id,
            PageOp::Truncate {
                from_slot: cut(k - 1),
            },
        )?;
        let bytes = std::mem::take(&mut items[at]);
        w.apply(id, PageOp::Insert { slot, bytes })?;
    } else {
        w.apply(id, PageOp::Truncate { from_slot: cut(k) })?;
    }
    if page.level() == 0 {
        w.apply(id, PageOp::SetLink { right: right_no })?;
    }
    let parent = &path[depth - 1];
    insert(
        tree,
        w,
        path,
        depth - 1,
        parent.slot + 1,
        encode_inner(right_no, &sep),
    )
}

fn free_space(page: &Page, id: strata_wal::PageId) -> Result<usize> {
    page.free_space()
        .map_err(|source| super::TreeError::Page { page: id, source })
}

/// Where to cut `items` (at least two, the new one at `at`): the first
/// item of the right half. Both halves are non-empty and fit a page.
fn split_point(items: &[Vec<u8>], at: usize, rightmost: bool) -> usize {
    let n = items.len();
    if rightmost && at == n - 1 {
        return n - 1;
    }
    let total = items_bytes(items);
    let (mut best, mut best_gap) = (1, usize::MAX);
    let mut prefix = 0;
    for (k, item) in items.iter().enumerate().take(n - 1) {
        prefix += item.len() + SLOT_BYTES;
        let gap = (2 * prefix).abs_diff(total);
        if gap < best_gap {
            (best, best_gap) = (k + 1, gap);
        }
    }
    best
}

/// The key that separates the halves when `first` is the right half's
/// first item.
fn separator(tree: &BTree, page: &Page, first: &[u8]) -> Result<Vec<u8>> {
    let id = tree.root;
    if page.level() == 0 {
        Ok(node::parse_leaf(id, first)?.0.to_vec())
    } else {
        Ok(node::parse_inner(id, first)?.1.to_vec())
    }
}

/// The right half's items: on an inner page the first key becomes minus
/// infinity (it moved up as the separator).
fn right_half(tree: &BTree, page: &Page, items: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    let mut out = items.to_vec();
    if page.level() > 0
        && let Some(first) = out.first_mut()
    {
        let child = node::parse_inner(tree.root, first)?.0;
        *first = encode_inner(child, b"");
    }
    Ok(out)
}

/// Splits the root: both halves move to new pages, the root becomes an
/// inner page one level up over them.
fn split_root(
    tree: &BTree,
    w: &mut impl PageWrite,
    root: &Page,
    items: Vec<Vec<u8>>,
    k: usize,
) -> Result<()> {
    let level = root.level();
    let up = level
        .checked_add(1)
        .filter(|l| *l <= super::MAX_LEVELS)
        .ok_or_else(|| node::corrupt(tree.root, "the tree is too deep"))?;
    let pages = space::allocate_pages(w, tree.space(), 2)?;
    let (left, right) = (tree.page_id(pages[0]), tree.page_id(pages[1]));
    let sep = separator(tree, root, &items[k])?;
    let link = if level == 0 { right.page_no } else { 0 };
    let kind = root.page_type();
    let image = node::build_page(left, kind, level, &items[..k], link)?;
    w.apply(left, PageOp::full_image(&image))?;
    let right_items = right_half(tree, root, &items[k..])?;
    let image = node::build_page(right, kind, level, &right_items, 0)?;
    w.apply(right, PageOp::full_image(&image))?;
    let children = [
        encode_inner(left.page_no, b""),
        encode_inner(right.page_no, &sep),
    ];
    let image = node::build_page(tree.root, page_type::INNER, up, &children, 0)?;
    w.apply(tree.root, PageOp::full_image(&image))
}
