//! A space's header page (page 0) and its page allocator.
//!
//! Every space (a table's clustered index, a secondary index, the catalog)
//! starts with a header page of type [`page_type::SPACE_HEADER`] holding one
//! item of [`HEADER_ITEM_BYTES`] bytes, little endian:
//!
//! ```text
//!  0  next_page_no   u32  the next never-used page number (>= 1)
//!  4  free_head      u32  first page of the free list; 0 = empty
//!  8  auto_inc       u64  the engine's counter (clustered spaces)
//! 16  next_space_id  u32  the engine's counter (space 0)
//! ```
//!
//! Free pages have type [`page_type::FREE`]; each one's right-link is the
//! next free page (0 ends the list). Like every page, the header changes
//! only through page ops (one `Replace` of its item per allocation or
//! release batch), so every node replays the same bytes. This module reads
//! and writes pages only through [`PageRead`] / [`PageWrite`].

use strata_wal::PageId;
use strata_wal::op::PageOp;

use crate::btree::{PageRead, PageWrite, Result, TreeError, page_type};

/// Bytes of the header page's one item.
pub const HEADER_ITEM_BYTES: usize = 20;

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

impl SpaceHeader {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_ITEM_BYTES);
        out.extend_from_slice(&self.next_page_no.to_le_bytes());
        out.extend_from_slice(&self.free_head.to_le_bytes());
        out.extend_from_slice(&self.auto_inc.to_le_bytes());
        out.extend_from_slice(&self.next_space_id.to_le_bytes());
        out
    }

    fn decode(page: PageId, b: &[u8]) -> Result<SpaceHeader> {
        let b: &[u8; HEADER_ITEM_BYTES] = b.try_into().map_err(|_| TreeError::Corrupt {
            page,
            detail: format!("space header item of {} bytes", b.len()),
        })?;
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let mut auto_inc = [0u8; 8];
        auto_inc.copy_from_slice(&b[8..16]);
        Ok(SpaceHeader {
            next_page_no: u32_at(0),
            free_head: u32_at(4),
            auto_inc: u64::from_le_bytes(auto_inc),
            next_space_id: u32_at(16),
        })
    }
}

pub fn header_page(space: u32) -> PageId {
    PageId::new(space, 0)
}

/// Formats page 0 of a new space: no pages used, counters zero.
pub fn create_space(w: &mut impl PageWrite, space: u32) -> Result<()> {
    let id = header_page(space);
    w.apply(
        id,
        PageOp::Init {
            page_type: page_type::SPACE_HEADER,
            level: 0,
        },
    )?;
    let header = SpaceHeader {
        next_page_no: 1,
        ..SpaceHeader::default()
    };
    w.apply(
        id,
        PageOp::Insert {
            slot: 0,
            bytes: header.encode(),
        },
    )
}

pub fn read_header(r: &mut impl PageRead, space: u32) -> Result<SpaceHeader> {
    let id = header_page(space);
    let page = r.page(id)?;
    if page.page_type() != page_type::SPACE_HEADER || page.slot_count() != 1 {
        return Err(TreeError::Corrupt {
            page: id,
            detail: format!(
                "not a space header (type {}, {} items)",
                page.page_type(),
                page.slot_count()
            ),
        });
    }
    let item = page
        .item(0)
        .map_err(|source| TreeError::Page { page: id, source })?;
    SpaceHeader::decode(id, item)
}

fn write_header(w: &mut impl PageWrite, space: u32, header: &SpaceHeader) -> Result<()> {
    w.apply(
        header_page(space),
        PageOp::Replace {
            slot: 0,
            bytes: header.encode(),
        },
    )
}

/// Rewrites the header's counters (`auto_inc`, `next_space_id`); the
/// allocation fields are the allocator's.
pub fn set_counters(
    w: &mut impl PageWrite,
    space: u32,
    auto_inc: u64,
    next_space_id: u32,
) -> Result<()> {
    let header = SpaceHeader {
        auto_inc,
        next_space_id,
        ..read_header(w, space)?
    };
    write_header(w, space, &header)
}

/// A page for the tree in `space`: from the free list, else a new one.
/// The caller formats it (`Init` or `FullImage`).
pub fn allocate_page(w: &mut impl PageWrite, space: u32) -> Result<u32> {
    let pages = allocate_pages(w, space, 1)?;
    pages.first().copied().ok_or(TreeError::Corrupt {
        page: header_page(space),
        detail: "the allocator returned no page".into(),
    })
}

/// `n` pages for the tree in `space` (free-list pages first, then new
/// ones), with one header update. The caller formats each.
pub fn allocate_pages(w: &mut impl PageWrite, space: u32, n: usize) -> Result<Vec<u32>> {
    let mut header = read_header(w, space)?;
    let mut pages = Vec::with_capacity(n);
    while pages.len() < n && header.free_head != 0 {
        let id = PageId::new(space, header.free_head);
        let page = w.page(id)?;
        if page.page_type() != page_type::FREE || pages.contains(&header.free_head) {
            return Err(TreeError::Corrupt {
                page: id,
                detail: format!("free list holds a page of type {}", page.page_type()),
            });
        }
        pages.push(header.free_head);
        header.free_head = page.right_link();
    }
    while pages.len() < n {
        pages.push(header.next_page_no);
        header.next_page_no = header
            .next_page_no
            .checked_add(1)
            .ok_or(TreeError::Corrupt {
                page: header_page(space),
                detail: "the space has used every page number".into(),
            })?;
    }
    if n > 0 {
        write_header(w, space, &header)?;
    }
    Ok(pages)
}

/// Returns `page` to its space's free list.
pub fn free_page(w: &mut impl PageWrite, page: PageId) -> Result<()> {
    free_pages(w, page.space, &[page.page_no])
}

/// Returns `pages` of `space` to its free list, with one header update.
pub fn free_pages(w: &mut impl PageWrite, space: u32, pages: &[u32]) -> Result<()> {
    if pages.is_empty() {
        return Ok(());
    }
    let mut header = read_header(w, space)?;
    for &page_no in pages {
        let id = PageId::new(space, page_no);
        if page_no == 0 || page_no >= header.next_page_no {
            return Err(TreeError::Corrupt {
                page: id,
                detail: "freeing a page the allocator never handed out".into(),
            });
        }
        let init = PageOp::Init {
            page_type: page_type::FREE,
            level: 0,
        };
        w.apply(id, init)?;
        w.apply(
            id,
            PageOp::SetLink {
                right: header.free_head,
            },
        )?;
        header.free_head = page_no;
    }
    write_header(w, space, &header)
}

/// The free list of `space`, head first (for checks and tests).
pub fn free_list(r: &mut impl PageRead, space: u32) -> Result<Vec<u32>> {
    let header = read_header(r, space)?;
    let mut out = Vec::new();
    let mut next = header.free_head;
    while next != 0 {
        let id = PageId::new(space, next);
        if out.len() >= header.next_page_no as usize || out.contains(&next) {
            return Err(TreeError::Corrupt {
                page: id,
                detail: "the free list loops".into(),
            });
        }
        out.push(next);
        next = r.page(id)?.right_link();
    }
    Ok(out)
}
