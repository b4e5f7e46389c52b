//! Overflow chains: values too large to sit in a leaf.
//!
//! A chain is a list of pages of type [`page_type::OVERFLOW`], each holding
//! one item (a chunk of at most [`CHUNK_BYTES`]) and linked by right-links,
//! the last linking 0. The leaf item holds the first page and the total
//! length. Each page is written as one `FullImage` op, so a 16 MiB value
//! costs about 2,000 records of at most a page each. A chain belongs to
//! exactly one leaf item and is freed with it.

use strata_wal::PageId;
use strata_wal::op::PageOp;
use strata_wal::page::MAX_ITEM_BYTES;

use super::node::{build_page, corrupt, item};
use super::{PageRead, PageWrite, Result, page_type};
use crate::space;

/// The most value bytes one overflow page holds.
pub const CHUNK_BYTES: usize = MAX_ITEM_BYTES;

/// Writes `value` (non-empty) to a new chain in `space`; returns its first
/// page.
pub fn write_chain(w: &mut impl PageWrite, space: u32, value: &[u8]) -> Result<u32> {
    let chunks: Vec<&[u8]> = value.chunks(CHUNK_BYTES).collect();
    let pages = space::allocate_pages(w, space, chunks.len())?;
    for (i, chunk) in chunks.iter().enumerate() {
        let id = PageId::new(space, pages[i]);
        let next = pages.get(i + 1).copied().unwrap_or(0);
        let page = build_page(id, page_type::OVERFLOW, 0, &[chunk.to_vec()], next)?;
        w.apply(id, PageOp::full_image(&page))?;
    }
    pages
        .first()
        .copied()
        .ok_or_else(|| corrupt(space::header_page(space), "an empty overflow value"))
}

/// Reads the chain starting at `first` holding `len` bytes: the value and
/// the chain's pages.
pub fn read_chain(
    r: &mut impl PageRead,
    space: u32,
    first: u32,
    len: u32,
) -> Result<(Vec<u8>, Vec<u32>)> {
    let len = len as usize;
    let mut value = Vec::with_capacity(len.min(super::MAX_VALUE_BYTES));
    let mut pages = Vec::new();
    let mut next = first;
    while value.len() < len {
        let id = PageId::new(space, next);
        if next == 0 {
            return Err(corrupt(id, "overflow chain ends early"));
        }
        let page = r.page(id)?;
        if page.page_type() != page_type::OVERFLOW || page.slot_count() != 1 {
            return Err(corrupt(id, "not an overflow page"));
        }
        let chunk = item(&page, id, 0)?;
        if chunk.is_empty() || value.len() + chunk.len() > len {
            return Err(corrupt(id, "overflow chunk does not match the length"));
        }
        value.extend_from_slice(chunk);
        pages.push(next);
        next = page.right_link();
    }
    Ok((value, pages))
}
