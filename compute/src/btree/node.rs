//! Item layouts of tree pages, and reading them out of a `Page`.
//!
//! Leaf item: `key_len u16, key, tag u8, payload`, where tag 0 means the
//! payload is the value itself and tag 1 means it is an overflow reference
//! `first_page u32, total_len u32` (see [`super::overflow`]).
//!
//! Inner item: `child u32, key` (the rest of the item). Child `i` holds the
//! keys `k` with `key_i <= k < key_{i+1}`; item 0's key is always empty and
//! stands for minus infinity, so every inner page covers the whole range
//! its parent gives it.
//!
//! Nothing here writes a page the engine sees: [`build_page`] formats a
//! private page that the caller ships whole as a `FullImage` op.

use std::cmp::Ordering;
use std::sync::Arc;

use strata_wal::PageId;
use strata_wal::page::{PAGE_HEADER_BYTES, PAGE_SIZE, Page, SLOT_BYTES};

use super::{Result, TreeError, page_type};

/// The largest leaf item with an inline value; a bigger value goes to an
/// overflow chain. About a quarter of a page, and above the largest item
/// with an overflow reference (`2 + MAX_KEY_BYTES + 1 + 8`), so at least
/// three items fit on any page and a split always leaves both halves room.
pub const MAX_INLINE_ITEM: usize = 2100;
/// Room for items and slots on an empty page.
pub const PAGE_ROOM: usize = PAGE_SIZE - PAGE_HEADER_BYTES;

const TAG_INLINE: u8 = 0;
const TAG_OVERFLOW: u8 = 1;

/// Where a leaf item's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueRef<'a> {
    Inline(&'a [u8]),
    Overflow { first: u32, len: u32 },
}

pub fn corrupt(page: PageId, detail: impl Into<String>) -> TreeError {
    TreeError::Corrupt {
        page,
        detail: detail.into(),
    }
}

pub fn encode_leaf(key: &[u8], value: ValueRef<'_>) -> Vec<u8> {
    let key_len = u16::try_from(key.len()).expect("keys are checked against MAX_KEY_BYTES");
    let mut out = Vec::with_capacity(key.len() + 16);
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(key);
    match value {
        ValueRef::Inline(v) => {
            out.push(TAG_INLINE);
            out.extend_from_slice(v);
        }
        ValueRef::Overflow { first, len } => {
            out.push(TAG_OVERFLOW);
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
    }
    out
}

/// The size of a leaf item holding `value` inline.
pub fn inline_item_len(key: &[u8], value: &[u8]) -> usize {
    2 + key.len() + 1 + value.len()
}

/// A leaf item's key and value reference.
pub fn parse_leaf(page: PageId, item: &[u8]) -> Result<(&[u8], ValueRef<'_>)> {
    let bad = || corrupt(page, "malformed leaf item");
    let (len, rest) = item.split_first_chunk::<2>().ok_or_else(bad)?;
    let len = usize::from(u16::from_le_bytes(*len));
    if rest.len() < len + 1 {
        return Err(bad());
    }
    let (key, rest) = rest.split_at(len);
    let value = match rest {
        [TAG_INLINE, v @ ..] => ValueRef::Inline(v),
        [TAG_OVERFLOW, a, b, c, d, e, f, g, h] => ValueRef::Overflow {
            first: u32::from_le_bytes([*a, *b, *c, *d]),
            len: u32::from_le_bytes([*e, *f, *g, *h]),
        },
        _ => return Err(bad()),
    };
    Ok((key, value))
}

pub fn encode_inner(child: u32, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len());
    out.extend_from_slice(&child.to_le_bytes());
    out.extend_from_slice(key);
    out
}

/// An inner item's child page number and key.
pub fn parse_inner(page: PageId, item: &[u8]) -> Result<(u32, &[u8])> {
    let (child, key) = item
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt(page, "malformed inner item"))?;
    Ok((u32::from_le_bytes(*child), key))
}

/// Item `slot` of `page` (whose id is `id`).
pub fn item(page: &Page, id: PageId, slot: u16) -> Result<&[u8]> {
    page.item(slot)
        .map_err(|source| TreeError::Page { page: id, source })
}

pub fn items(page: &Page, id: PageId) -> Result<Vec<Vec<u8>>> {
    (0..page.slot_count())
        .map(|s| item(page, id, s).map(<[u8]>::to_vec))
        .collect()
}

pub fn leaf_key(page: &Page, id: PageId, slot: u16) -> Result<&[u8]> {
    Ok(parse_leaf(id, item(page, id, slot)?)?.0)
}

pub fn inner_child(page: &Page, id: PageId, slot: u16) -> Result<u32> {
    Ok(parse_inner(id, item(page, id, slot)?)?.0)
}

/// Binary search of a leaf: `Ok(slot)` holding `key`, or `Err(slot)` where
/// it would go.
pub fn search_leaf(page: &Page, id: PageId, key: &[u8]) -> Result<Result<u16, u16>> {
    let (mut lo, mut hi) = (0u16, page.slot_count());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match leaf_key(page, id, mid)?.cmp(key) {
            Ordering::Less => lo = mid + 1,
            Ordering::Greater => hi = mid,
            Ordering::Equal => return Ok(Ok(mid)),
        }
    }
    Ok(Err(lo))
}

/// The slot of the child of an inner page whose range holds `key`: the
/// last item whose key is `<= key` (item 0 always qualifies).
pub fn child_slot(page: &Page, id: PageId, key: &[u8]) -> Result<u16> {
    let count = page.slot_count();
    if count == 0 {
        return Err(corrupt(id, "an inner page without children"));
    }
    let (mut lo, mut hi) = (1u16, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if parse_inner(id, item(page, id, mid)?)?.1 <= key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo - 1)
}

/// Bytes that items and their slots take on `page`.
pub fn used_bytes(page: &Page, id: PageId) -> Result<usize> {
    let free = page
        .free_space()
        .map_err(|source| TreeError::Page { page: id, source })?;
    Ok(PAGE_ROOM.saturating_sub(free))
}

/// Bytes `items` take on a page, slots included.
pub fn items_bytes(items: &[Vec<u8>]) -> usize {
    items.iter().map(|i| i.len() + SLOT_BYTES).sum()
}

/// A private page of this type and level holding `items`, linked to
/// `right`, to be shipped as a `FullImage` of page `id`.
pub fn build_page(id: PageId, kind: u8, level: u8, items: &[Vec<u8>], right: u32) -> Result<Page> {
    let mut page = Page::new_zeroed();
    page.init(kind, level);
    let page_err = |source| TreeError::Page { page: id, source };
    for (slot, item) in items.iter().enumerate() {
        let slot = u16::try_from(slot).map_err(|_| corrupt(id, "too many items for a page"))?;
        page.insert(slot, item).map_err(page_err)?;
    }
    page.set_right_link(right).map_err(page_err)?;
    Ok(page)
}

/// Checks that `page` is a tree page (leaf or inner) of the level expected.
pub fn check_node(page: &Arc<Page>, id: PageId, level: Option<u8>) -> Result<()> {
    let kind = page.page_type();
    let want = match page.level() {
        0 => page_type::LEAF,
        _ => page_type::INNER,
    };
    if kind != want {
        return Err(corrupt(
            id,
            format!("type {kind} at level {}", page.level()),
        ));
    }
    if level.is_some_and(|l| l != page.level()) {
        return Err(corrupt(
            id,
            format!("level {} where {level:?} was expected", page.level()),
        ));
    }
    Ok(())
}
