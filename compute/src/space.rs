//! A space's header page (page 0). (Stub: helper B owns this file.)

use strata_wal::PageId;

use crate::btree::{PageRead, PageWrite, Result};

/// What page 0 of a space records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpaceHeader {
    /// The next never-used page number.
    pub next_page_no: u32,
    /// Head of the free-page list (0 = empty).
    pub free_head: u32,
    /// For a table's clustered space: the auto-increment high-water mark.
    pub auto_inc: u64,
    /// For space 0: the next space id to hand out.
    pub next_space_id: u32,
}

pub fn header_page(space: u32) -> PageId {
    PageId::new(space, 0)
}

/// Formats page 0 of a new space.
pub fn create_space(w: &mut impl PageWrite, space: u32) -> Result<()> {
    let _ = (w, space);
    unimplemented!("helper B")
}

pub fn read_header(r: &mut impl PageRead, space: u32) -> Result<SpaceHeader> {
    let _ = (r, space);
    unimplemented!("helper B")
}

/// Rewrites the header's counters (`auto_inc`, `next_space_id`); the
/// allocation fields are the allocator's.
pub fn set_counters(
    w: &mut impl PageWrite,
    space: u32,
    auto_inc: u64,
    next_space_id: u32,
) -> Result<()> {
    let _ = (w, space, auto_inc, next_space_id);
    unimplemented!("helper B")
}

/// A page for the tree in `space`: from the free list, else a new one.
/// The caller formats it (`Init` or `FullImage`).
pub fn allocate_page(w: &mut impl PageWrite, space: u32) -> Result<u32> {
    let _ = (w, space);
    unimplemented!("helper B")
}

/// Returns `page` to its space's free list.
pub fn free_page(w: &mut impl PageWrite, page: PageId) -> Result<()> {
    let _ = (w, page);
    unimplemented!("helper B")
}
