//! Deleting items, and putting the tree back in shape afterwards.
//!
//! After a delete, bottom-up along the path: an emptied page leaves its
//! parent (a leaf also leaves the leaf chain: its left neighbour, found
//! through the ancestors, takes over its right-link) and is freed; a page
//! under a quarter full is merged with its right sibling (else its left
//! one) under the same parent when both fit on one page, the left page taking
//! the merged content as one `FullImage` and the right one being freed; a
//! root left with one child takes that child's content (the tree gets one
//! level shorter), and an inner root left with none becomes an empty leaf.

use strata_wal::PageId;
use strata_wal::op::PageOp;

use super::node::{self, PAGE_ROOM, encode_inner};
use super::{BTree, Frame, PageWrite, Result, Target, leaf_of, page_type};
use crate::space;

pub(super) fn delete(tree: &BTree, w: &mut impl PageWrite, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let path = tree.descend(w, Target::Key(key))?;
    let leaf = leaf_of(&path);
    let Ok(slot) = node::search_leaf(&leaf.page, leaf.id, key)? else {
        return Ok(None);
    };
    let (value, chain) = tree.read_value(w, &leaf.page, leaf.id, slot)?;
    w.apply(leaf.id, PageOp::Delete { slot })?;
    space::free_pages(w, tree.space(), &chain)?;
    rebalance(tree, w, &path, path.len() - 1)?;
    Ok(Some(value))
}

/// Puts the page at `path[depth]` back in shape after it lost an item.
fn rebalance(tree: &BTree, w: &mut impl PageWrite, path: &[Frame], depth: usize) -> Result<()> {
    if depth == 0 {
        return collapse_root(tree, w);
    }
    let id = path[depth].id;
    let page = w.page(id)?;
    if page.slot_count() == 0 {
        return remove_empty(tree, w, path, depth);
    }
    if node::used_bytes(&page, id)? >= PAGE_ROOM / 4 {
        return Ok(());
    }
    merge(tree, w, path, depth)
}

/// Unlinks the empty page at `path[depth]` from its parent (and the leaf
/// chain) and frees it.
fn remove_empty(tree: &BTree, w: &mut impl PageWrite, path: &[Frame], depth: usize) -> Result<()> {
    let id = path[depth].id;
    let page = w.page(id)?;
    if page.level() == 0
        && let Some(left) = left_leaf(tree, w, path, depth)?
    {
        w.apply(
            left,
            PageOp::SetLink {
                right: page.right_link(),
            },
        )?;
    }
    let parent = &path[depth - 1];
    w.apply(parent.id, PageOp::Delete { slot: parent.slot })?;
    if parent.slot == 0 {
        let p = w.page(parent.id)?;
        if p.slot_count() > 0 {
            let child = node::inner_child(&p, parent.id, 0)?;
            let bytes = encode_inner(child, b"");
            w.apply(parent.id, PageOp::Replace { slot: 0, bytes })?;
        }
    }
    space::free_page(w, id)?;
    rebalance(tree, w, path, depth - 1)
}

/// The leaf before the leaf at `path[depth]` in the chain: the last leaf
/// of the subtree left of the deepest ancestor slot that has one.
fn left_leaf(
    tree: &BTree,
    w: &mut impl PageWrite,
    path: &[Frame],
    depth: usize,
) -> Result<Option<PageId>> {
    let Some(j) = (0..depth).rev().find(|&j| path[j].slot > 0) else {
        return Ok(None);
    };
    let frame = &path[j];
    let page = w.page(frame.id)?;
    let child = tree.page_id(node::inner_child(&page, frame.id, frame.slot - 1)?);
    let mut sub = Vec::new();
    let level = page.level().checked_sub(1);
    tree.descend_from(w, &mut sub, child, level, Target::Rightmost)?;
    Ok(Some(leaf_of(&sub).id))
}

/// Merges the page at `path[depth]` with a sibling under the same parent
/// (the right one, else the left one) if both fit on one page.
fn merge(tree: &BTree, w: &mut impl PageWrite, path: &[Frame], depth: usize) -> Result<()> {
    let parent = &path[depth - 1];
    let count = w.page(parent.id)?.slot_count();
    let s = parent.slot;
    for rs in [s + 1, s] {
        if rs == 0 || rs >= count {
            continue;
        }
        if merge_pair(tree, w, parent.id, rs)? {
            return rebalance(tree, w, path, depth - 1);
        }
    }
    Ok(())
}

/// Merges child `rs` of `parent` into child `rs - 1` if both fit on one
/// page; returns whether it did.
fn merge_pair(tree: &BTree, w: &mut impl PageWrite, parent: PageId, rs: u16) -> Result<bool> {
    let ppage = w.page(parent)?;
    let left = tree.page_id(node::inner_child(&ppage, parent, rs - 1)?);
    let right = tree.page_id(node::inner_child(&ppage, parent, rs)?);
    let (lpage, rpage) = (w.page(left)?, w.page(right)?);
    let level = lpage.level();
    node::check_node(&lpage, left, None)?;
    node::check_node(&rpage, right, Some(level))?;
    let mut merged = node::items(&lpage, left)?;
    let mut rest = node::items(&rpage, right)?;
    if level > 0
        && let Some(first) = rest.first_mut()
    {
        let sep = node::parse_inner(parent, node::item(&ppage, parent, rs)?)?.1;
        *first = encode_inner(node::parse_inner(right, first)?.0, sep);
    }
    merged.append(&mut rest);
    if node::items_bytes(&merged) > PAGE_ROOM {
        return Ok(false);
    }
    let link = if level == 0 { rpage.right_link() } else { 0 };
    let image = node::build_page(left, lpage.page_type(), level, &merged, link)?;
    w.apply(left, PageOp::full_image(&image))?;
    w.apply(parent, PageOp::Delete { slot: rs })?;
    space::free_page(w, right)?;
    Ok(true)
}

/// Shortens the tree while the root is an inner page with one child; an
/// inner root with no child becomes an empty leaf.
fn collapse_root(tree: &BTree, w: &mut impl PageWrite) -> Result<()> {
    loop {
        let root = w.page(tree.root)?;
        if root.level() == 0 {
            return Ok(());
        }
        match root.slot_count() {
            0 => {
                let init = PageOp::Init {
                    page_type: page_type::LEAF,
                    level: 0,
                };
                return w.apply(tree.root, init);
            }
            1 => {
                let child = tree.page_id(node::inner_child(&root, tree.root, 0)?);
                let page = w.page(child)?;
                node::check_node(&page, child, Some(root.level() - 1))?;
                let items = node::items(&page, child)?;
                let image = node::build_page(tree.root, page.page_type(), page.level(), &items, 0)?;
                w.apply(tree.root, PageOp::full_image(&image))?;
                space::free_page(w, child)?;
            }
            _ => return Ok(()),
        }
    }
}
