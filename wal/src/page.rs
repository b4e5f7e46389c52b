//! The 8 KiB page layout: the one byte format every node stores and ships.
//!
//! A [`Page`] owns exactly [`PAGE_SIZE`] bytes, little endian:
//!
//! ```text
//!  0  version     u8   PAGE_FORMAT_VERSION; 0 = never formatted
//!  1  page_type   u8   chosen by the owner (B+tree leaf, inner, header, ...)
//!  2  level       u8   height above the leaves
//!  3  flags       u8   reserved, zero
//!  4  checksum    u32  crc32 of the page with this field zeroed
//!  8  lsn         u64  LSN of the last record applied
//! 16  item_count  u16
//! 18  lower       u16  end of the slot array = 32 + 4 * item_count
//! 20  upper       u16  start of the item area
//! 22  reserved    u16  zero
//! 24  right_link  u32  page_no of the right sibling; 0 = none
//! 28  reserved    u32  zero
//! 32  slot array: (offset u16, length u16) per item, growing up
//!     ... free space ...
//! upper..8192: item bytes, growing down
//! ```
//!
//! Invariants of a formatted page (checked by [`Page::verify`], and by every
//! operation before it changes a byte):
//! - `lower == 32 + 4 * item_count <= upper <= PAGE_SIZE`;
//! - every non-empty item lies inside `upper..PAGE_SIZE`, items do not
//!   overlap; an empty item's slot is `(PAGE_SIZE, 0)`.
//!
//! Deleting, truncating or shrinking an item leaves its bytes dead in the
//! item area. When an insert or a growing replace finds too little
//! contiguous room but enough in total, the page is compacted: live items
//! are packed against the end in slot order, everything else zeroed. The
//! result depends only on the page's bytes, so the same operations give the
//! same bytes on every node.
//!
//! An operation either succeeds or returns an error and leaves the page
//! untouched. No input bytes, however corrupt, make this module panic.
//!
//! This module knows nothing of records or redo: [`crate::redo`] decides
//! which operation runs, and stamps the LSN and checksum afterwards.

use std::fmt;
use std::ops::Range;

use crate::lsn::{Lsn, PageId};
use crate::record::RecordKind;

pub const PAGE_SIZE: usize = 8192;
pub const PAGE_FORMAT_VERSION: u8 = 1;
pub const PAGE_HEADER_BYTES: usize = 32;
/// One slot array entry: offset and length, a `u16` each.
pub const SLOT_BYTES: usize = 4;
/// The largest item: alone on an empty page, with its slot.
pub const MAX_ITEM_BYTES: usize = PAGE_SIZE - PAGE_HEADER_BYTES - SLOT_BYTES;

/// Byte offsets of the header fields.
mod field {
    pub const VERSION: usize = 0;
    pub const PAGE_TYPE: usize = 1;
    pub const LEVEL: usize = 2;
    pub const CHECKSUM: usize = 4;
    pub const LSN: usize = 8;
    pub const COUNT: usize = 16;
    pub const LOWER: usize = 18;
    pub const UPPER: usize = 20;
    pub const RIGHT_LINK: usize = 24;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("a page is {PAGE_SIZE} bytes, not {len}")]
    WrongSize { len: usize },
    #[error("page {page} fails its checksum (stored {stored:#010x}, computed {computed:#010x})")]
    BadChecksum {
        page: PageId,
        stored: u32,
        computed: u32,
    },
    #[error("page {page} has unknown format version {version}")]
    UnknownVersion { page: PageId, version: u8 },
    #[error("page {page} is corrupt: {reason}")]
    BadLayout { page: PageId, reason: &'static str },
    #[error("the page is not formatted (version {version}): only Init or FullImage apply to it")]
    NotFormatted { version: u8 },
    #[error("the page layout is corrupt: {reason}")]
    Corrupt { reason: &'static str },
    #[error("slot {slot} is out of range: the page has {count} items")]
    SlotOutOfRange { slot: u16, count: u16 },
    #[error("an item of {len} bytes exceeds the page limit of {max} bytes")]
    ItemTooLarge { len: usize, max: usize },
    #[error("the page is full: {need} bytes needed, {free} free")]
    PageFull { need: usize, free: usize },
    #[error("bad full page image: {reason}")]
    BadImage { reason: &'static str },
    #[error("a {kind:?} record is not a page operation")]
    NotPageOp { kind: RecordKind },
    #[error("record LSN {record_lsn} is not past the page LSN {page_lsn}")]
    StaleLsn { page_lsn: Lsn, record_lsn: Lsn },
}

type Result<T> = std::result::Result<T, PageError>;

/// The free-space pointers of a formatted page, checked for consistency.
#[derive(Clone, Copy, Debug)]
struct Layout {
    count: usize,
    lower: usize,
    upper: usize,
}

/// Where slot `slot`'s entry starts.
fn slot_pos(slot: usize) -> usize {
    PAGE_HEADER_BYTES + slot * SLOT_BYTES
}

fn check_item_len(len: usize) -> Result<()> {
    if len > MAX_ITEM_BYTES {
        return Err(PageError::ItemTooLarge {
            len,
            max: MAX_ITEM_BYTES,
        });
    }
    Ok(())
}

/// One 8 KiB page, owned.
#[derive(Clone, PartialEq, Eq)]
pub struct Page {
    buf: Box<[u8; PAGE_SIZE]>,
}

impl Default for Page {
    fn default() -> Self {
        Page::new_zeroed()
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page")
            .field("version", &self.version())
            .field("page_type", &self.page_type())
            .field("level", &self.level())
            .field("lsn", &self.lsn())
            .field("items", &self.slot_count())
            .field("lower", &self.u16_at(field::LOWER))
            .field("upper", &self.u16_at(field::UPPER))
            .field("right_link", &self.right_link())
            .finish_non_exhaustive()
    }
}

/// Construction, raw access and the checksum.
impl Page {
    /// A page of zeros: not formatted, LSN 0.
    pub fn new_zeroed() -> Page {
        let buf = vec![0u8; PAGE_SIZE].into_boxed_slice();
        Page {
            buf: buf.try_into().expect("the vector holds PAGE_SIZE bytes"),
        }
    }

    /// Copies a page out of `bytes`, which must be exactly [`PAGE_SIZE`]
    /// long. Checks nothing else: call [`Page::verify`] on pages from
    /// elsewhere.
    pub fn from_bytes(bytes: &[u8]) -> Result<Page> {
        if bytes.len() != PAGE_SIZE {
            return Err(PageError::WrongSize { len: bytes.len() });
        }
        let mut page = Page::new_zeroed();
        page.buf.copy_from_slice(bytes);
        Ok(page)
    }

    pub fn as_bytes(&self) -> &[u8; PAGE_SIZE] {
        &self.buf
    }

    /// The crc32 of the page with the checksum field taken as zero.
    pub fn compute_checksum(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(&self.buf[..field::CHECKSUM]);
        h.update(&[0; 4]);
        h.update(&self.buf[field::CHECKSUM + 4..]);
        h.finalize()
    }

    pub fn stored_checksum(&self) -> u32 {
        self.u32_at(field::CHECKSUM)
    }

    /// Stores the page's checksum: the last step of every change.
    pub fn seal(&mut self) {
        let crc = self.compute_checksum();
        self.put_u32(field::CHECKSUM, crc);
    }

    /// Checks a page that comes from elsewhere: its checksum, its format
    /// version, then its layout (pointers and every slot). Errors name
    /// `page`. A page of zeros fails (its checksum is not zero): a page
    /// nobody formatted is not a page to ship.
    pub fn verify(&self, page: PageId) -> Result<()> {
        let (stored, computed) = (self.stored_checksum(), self.compute_checksum());
        if stored != computed {
            return Err(PageError::BadChecksum {
                page,
                stored,
                computed,
            });
        }
        let layout = self.layout().map_err(|e| match e {
            PageError::NotFormatted { version } => PageError::UnknownVersion { page, version },
            PageError::Corrupt { reason } => PageError::BadLayout { page, reason },
            other => other,
        })?;
        match self.live_bytes(&layout, None) {
            Err(PageError::Corrupt { reason }) => Err(PageError::BadLayout { page, reason }),
            other => other.map(drop),
        }
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.buf[at], self.buf[at + 1]])
    }

    fn u32_at(&self, at: usize) -> u32 {
        let b = &self.buf[at..at + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn put_u16(&mut self, at: usize, v: usize) {
        let v = u16::try_from(v).expect("page offsets and counts fit in u16");
        self.buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn put_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// The header fields.
impl Page {
    /// Formats the page: every byte zeroed, then an empty header of this
    /// type and level (LSN 0, no items, no right link).
    pub fn init(&mut self, page_type: u8, level: u8) {
        self.buf.fill(0);
        self.buf[field::VERSION] = PAGE_FORMAT_VERSION;
        self.buf[field::PAGE_TYPE] = page_type;
        self.buf[field::LEVEL] = level;
        self.set_counts(0, PAGE_SIZE);
    }

    pub fn version(&self) -> u8 {
        self.buf[field::VERSION]
    }

    pub fn page_type(&self) -> u8 {
        self.buf[field::PAGE_TYPE]
    }

    pub fn level(&self) -> u8 {
        self.buf[field::LEVEL]
    }

    /// The LSN of the last record applied.
    pub fn lsn(&self) -> Lsn {
        let b = &self.buf[field::LSN..field::LSN + 8];
        Lsn(u64::from_le_bytes(b.try_into().expect("an 8-byte slice")))
    }

    pub fn set_lsn(&mut self, lsn: Lsn) {
        self.buf[field::LSN..field::LSN + 8].copy_from_slice(&lsn.0.to_le_bytes());
    }

    /// The item count as stored (not checked against the layout).
    pub fn slot_count(&self) -> u16 {
        self.u16_at(field::COUNT)
    }

    /// The right sibling's page number; 0 = none.
    pub fn right_link(&self) -> u32 {
        self.u32_at(field::RIGHT_LINK)
    }

    pub fn set_right_link(&mut self, right: u32) -> Result<()> {
        self.layout()?;
        self.put_u32(field::RIGHT_LINK, right);
        Ok(())
    }

    /// Bytes free for new items *and their slots*: an insert of `n` bytes
    /// fits iff `n + SLOT_BYTES <= free_space()`, a replace of an `old`-byte
    /// item by `n` bytes iff `n <= free_space() + old`. Dead bytes count as
    /// free: compaction reclaims them.
    pub fn free_space(&self) -> Result<usize> {
        let layout = self.layout()?;
        Ok(PAGE_SIZE - layout.lower - self.live_bytes(&layout, None)?)
    }

    /// Checks the version and the free-space pointers.
    fn layout(&self) -> Result<Layout> {
        let version = self.version();
        if version != PAGE_FORMAT_VERSION {
            return Err(PageError::NotFormatted { version });
        }
        let count = usize::from(self.slot_count());
        let lower = usize::from(self.u16_at(field::LOWER));
        let upper = usize::from(self.u16_at(field::UPPER));
        if lower != slot_pos(count) {
            return Err(PageError::Corrupt {
                reason: "lower pointer does not match the item count",
            });
        }
        if lower > upper || upper > PAGE_SIZE {
            return Err(PageError::Corrupt {
                reason: "free-space pointers out of order",
            });
        }
        Ok(Layout {
            count,
            lower,
            upper,
        })
    }

    fn set_counts(&mut self, count: usize, upper: usize) {
        self.put_u16(field::COUNT, count);
        self.put_u16(field::LOWER, slot_pos(count));
        self.put_u16(field::UPPER, upper);
    }
}

/// Items and their slots.
impl Page {
    /// The bytes of item `slot`.
    pub fn item(&self, slot: u16) -> Result<&[u8]> {
        let layout = self.layout()?;
        let slot = check_slot(&layout, slot)?;
        Ok(&self.buf[self.item_range(&layout, slot)?])
    }

    /// Every item in slot order.
    pub fn items(&self) -> impl Iterator<Item = Result<&[u8]>> + '_ {
        (0..self.slot_count()).map(|slot| self.item(slot))
    }

    /// Inserts `bytes` as item `slot` (`0..=slot_count()`); later items
    /// move up one slot.
    pub fn insert(&mut self, slot: u16, bytes: &[u8]) -> Result<()> {
        let layout = self.layout()?;
        let slot = usize::from(slot);
        if slot > layout.count {
            return Err(out_of_range(slot, &layout));
        }
        check_item_len(bytes.len())?;
        let layout = self.make_room(layout, bytes.len() + SLOT_BYTES, None)?;
        let at = layout.upper - bytes.len();
        self.buf[at..layout.upper].copy_from_slice(bytes);
        self.buf
            .copy_within(slot_pos(slot)..layout.lower, slot_pos(slot + 1));
        self.set_slot(slot, at, bytes.len());
        self.set_counts(layout.count + 1, at);
        Ok(())
    }

    /// Removes item `slot`; later items move down one slot.
    pub fn delete(&mut self, slot: u16) -> Result<()> {
        let layout = self.layout()?;
        let slot = check_slot(&layout, slot)?;
        self.buf
            .copy_within(slot_pos(slot + 1)..layout.lower, slot_pos(slot));
        self.buf[layout.lower - SLOT_BYTES..layout.lower].fill(0);
        self.set_counts(layout.count - 1, layout.upper);
        Ok(())
    }

    /// Replaces the bytes of item `slot`: in place if they are no longer,
    /// else in new room (compacting if need be).
    pub fn replace(&mut self, slot: u16, bytes: &[u8]) -> Result<()> {
        let layout = self.layout()?;
        let slot = check_slot(&layout, slot)?;
        check_item_len(bytes.len())?;
        let old = self.item_range(&layout, slot)?;
        if bytes.len() <= old.len() {
            self.buf[old.start..old.start + bytes.len()].copy_from_slice(bytes);
            self.set_slot(slot, old.start, bytes.len());
            return Ok(());
        }
        let layout = self.make_room(layout, bytes.len(), Some(slot))?;
        let at = layout.upper - bytes.len();
        self.buf[at..layout.upper].copy_from_slice(bytes);
        self.set_slot(slot, at, bytes.len());
        self.put_u16(field::UPPER, at);
        Ok(())
    }

    /// Removes items `from_slot..`; `from_slot == slot_count()` is a no-op.
    pub fn truncate(&mut self, from_slot: u16) -> Result<()> {
        let layout = self.layout()?;
        let from = usize::from(from_slot);
        if from > layout.count {
            return Err(out_of_range(from, &layout));
        }
        self.buf[slot_pos(from)..layout.lower].fill(0);
        self.set_counts(from, layout.upper);
        Ok(())
    }

    /// Slot `slot`'s entry as stored: (offset, length).
    fn slot_entry(&self, slot: usize) -> (usize, usize) {
        let at = slot_pos(slot);
        (
            usize::from(self.u16_at(at)),
            usize::from(self.u16_at(at + 2)),
        )
    }

    fn set_slot(&mut self, slot: usize, offset: usize, len: usize) {
        let offset = if len == 0 { PAGE_SIZE } else { offset };
        let at = slot_pos(slot);
        self.put_u16(at, offset);
        self.put_u16(at + 2, len);
    }

    /// Where item `slot` (below `layout.count`) lies, checked to be inside
    /// the item area.
    fn item_range(&self, layout: &Layout, slot: usize) -> Result<Range<usize>> {
        let (offset, len) = self.slot_entry(slot);
        if len == 0 {
            return Ok(PAGE_SIZE..PAGE_SIZE);
        }
        if offset < layout.upper || offset + len > PAGE_SIZE {
            return Err(PageError::Corrupt {
                reason: "a slot points outside the item area",
            });
        }
        Ok(offset..offset + len)
    }

    /// The bytes of all items but `skip`, each checked to lie in the item
    /// area, and their sum to fit in it.
    fn live_bytes(&self, layout: &Layout, skip: Option<usize>) -> Result<usize> {
        let mut sum = 0;
        for slot in (0..layout.count).filter(|s| Some(*s) != skip) {
            sum += self.item_range(layout, slot)?.len();
        }
        if sum > PAGE_SIZE - layout.upper {
            return Err(PageError::Corrupt {
                reason: "items overlap",
            });
        }
        Ok(sum)
    }
}

/// Room-making: the one place item bytes move.
impl Page {
    /// Ensures `need` contiguous free bytes between the slot array and the
    /// items, compacting if that is enough; item `skip` is about to be
    /// replaced and counts as free. Returns the (possibly new) layout.
    fn make_room(&mut self, layout: Layout, need: usize, skip: Option<usize>) -> Result<Layout> {
        if layout.upper - layout.lower >= need {
            return Ok(layout);
        }
        let free = PAGE_SIZE - layout.lower - self.live_bytes(&layout, skip)?;
        if free < need {
            return Err(PageError::PageFull { need, free });
        }
        *self = self.compacted(&layout, skip)?;
        self.layout()
    }

    /// A copy of this page with its items packed against the end in slot
    /// order (item 0 last), item `skip` emptied, dead bytes zeroed.
    fn compacted(&self, layout: &Layout, skip: Option<usize>) -> Result<Page> {
        let mut out = Page::new_zeroed();
        out.buf[..layout.lower].copy_from_slice(&self.buf[..layout.lower]);
        let mut upper = PAGE_SIZE;
        for slot in 0..layout.count {
            let from = if skip == Some(slot) {
                PAGE_SIZE..PAGE_SIZE
            } else {
                self.item_range(layout, slot)?
            };
            upper = upper
                .checked_sub(from.len())
                .filter(|u| *u >= layout.lower)
                .ok_or(PageError::Corrupt {
                    reason: "items overlap",
                })?;
            out.buf[upper..upper + from.len()].copy_from_slice(&self.buf[from.clone()]);
            out.set_slot(slot, upper, from.len());
        }
        out.put_u16(field::UPPER, upper);
        Ok(out)
    }
}

fn check_slot(layout: &Layout, slot: u16) -> Result<usize> {
    let s = usize::from(slot);
    if s >= layout.count {
        return Err(out_of_range(s, layout));
    }
    Ok(s)
}

fn out_of_range(slot: usize, layout: &Layout) -> PageError {
    PageError::SlotOutOfRange {
        slot: u16::try_from(slot).unwrap_or(u16::MAX),
        count: u16::try_from(layout.count).unwrap_or(u16::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: PageId = PageId::new(3, 9);

    fn formatted() -> Page {
        let mut p = Page::new_zeroed();
        p.init(7, 1);
        p
    }

    fn items(p: &Page) -> Vec<Vec<u8>> {
        p.items().map(|i| i.unwrap().to_vec()).collect()
    }

    #[test]
    fn init_gives_an_empty_page_of_that_type() {
        let p = formatted();
        assert_eq!(
            (p.version(), p.page_type(), p.level()),
            (PAGE_FORMAT_VERSION, 7, 1)
        );
        assert_eq!((p.slot_count(), p.right_link(), p.lsn()), (0, 0, Lsn::ZERO));
        assert_eq!(p.free_space(), Ok(PAGE_SIZE - PAGE_HEADER_BYTES));
    }

    #[test]
    fn insert_shifts_later_slots_and_delete_closes_the_gap() {
        let mut p = formatted();
        p.insert(0, b"c").unwrap();
        p.insert(0, b"a").unwrap();
        p.insert(1, b"b").unwrap();
        p.insert(3, b"").unwrap();
        assert_eq!(items(&p), [&b"a"[..], b"b", b"c", b""]);
        p.delete(1).unwrap();
        assert_eq!(items(&p), [&b"a"[..], b"c", b""]);
        p.truncate(1).unwrap();
        assert_eq!(items(&p), [b"a"]);
        assert_eq!(
            p.free_space(),
            Ok(PAGE_SIZE - PAGE_HEADER_BYTES - SLOT_BYTES - 1)
        );
    }

    #[test]
    fn slots_out_of_range_are_typed_errors() {
        let mut p = formatted();
        p.insert(0, b"x").unwrap();
        let out = PageError::SlotOutOfRange { slot: 1, count: 1 };
        assert_eq!(p.item(1), Err(out.clone()));
        assert_eq!(p.delete(1), Err(out.clone()));
        assert_eq!(p.replace(1, b"y"), Err(out.clone()));
        assert_eq!(
            p.insert(2, b"y"),
            Err(PageError::SlotOutOfRange { slot: 2, count: 1 })
        );
        assert_eq!(
            p.truncate(2),
            Err(PageError::SlotOutOfRange { slot: 2, count: 1 })
        );
        assert_eq!(p.truncate(1), Ok(()));
    }

    #[test]
    fn a_full_page_refuses_and_stays_unchanged() {
        let mut p = formatted();
        let big = vec![1u8; 1000];
        for slot in 0..8 {
            p.insert(slot, &big).unwrap();
        }
        let before = p.clone();
        let free = p.free_space().unwrap();
        assert_eq!(
            free,
            PAGE_SIZE - PAGE_HEADER_BYTES - 8 * (1000 + SLOT_BYTES)
        );
        assert_eq!(
            p.insert(8, &big),
            Err(PageError::PageFull { need: 1004, free })
        );
        assert_eq!(
            p.replace(0, &vec![2u8; 1000 + free + 1]),
            Err(PageError::PageFull {
                need: 1000 + free + 1,
                free: free + 1000
            })
        );
        assert_eq!(p, before);
        p.insert(8, &vec![3u8; free - SLOT_BYTES]).unwrap();
        assert_eq!(p.free_space(), Ok(0));
    }

    #[test]
    fn too_large_items_are_refused_and_the_largest_fits() {
        let mut p = formatted();
        let err = PageError::ItemTooLarge {
            len: MAX_ITEM_BYTES + 1,
            max: MAX_ITEM_BYTES,
        };
        assert_eq!(p.insert(0, &vec![0; MAX_ITEM_BYTES + 1]), Err(err));
        p.insert(0, &vec![9; MAX_ITEM_BYTES]).unwrap();
        assert_eq!(p.item(0).unwrap().len(), MAX_ITEM_BYTES);
        assert_eq!(p.free_space(), Ok(0));
    }

    #[test]
    fn compaction_reclaims_dead_bytes_and_is_deterministic() {
        let mut p = formatted();
        for slot in 0..7 {
            p.insert(slot, &vec![slot as u8; 1100]).unwrap();
        }
        p.delete(1).unwrap();
        p.replace(3, b"short").unwrap();
        // 1100 contiguous bytes are not there, but they are in total.
        let mut q = p.clone();
        p.insert(6, &vec![0xEE; 2000]).unwrap();
        q.insert(6, &vec![0xEE; 2000]).unwrap();
        assert_eq!(p, q);
        assert_eq!(p.item(3).unwrap(), b"short");
        assert_eq!(p.item(6).unwrap(), &vec![0xEE; 2000][..]);
        assert_eq!(p.item(0).unwrap(), &vec![0u8; 1100][..]);
        p.seal();
        p.verify(ID).unwrap();
    }

    #[test]
    fn replace_grows_into_compacted_room() {
        let mut p = formatted();
        for slot in 0..7 {
            p.insert(slot, &vec![slot as u8; 1100]).unwrap();
        }
        let free = p.free_space().unwrap();
        p.replace(2, &vec![0xAB; 1100 + free]).unwrap();
        assert_eq!(p.free_space(), Ok(0));
        assert_eq!(p.item(2).unwrap(), &vec![0xAB; 1100 + free][..]);
        assert_eq!(p.item(6).unwrap(), &vec![6u8; 1100][..]);
    }

    #[test]
    fn verify_detects_a_bad_checksum_and_names_the_page() {
        let mut p = formatted();
        p.insert(0, b"hello").unwrap();
        p.seal();
        p.verify(ID).unwrap();
        let mut bytes = p.as_bytes().to_vec();
        bytes[PAGE_SIZE - 2] ^= 0x10;
        let bad = Page::from_bytes(&bytes).unwrap();
        assert!(matches!(
            bad.verify(ID),
            Err(PageError::BadChecksum { page: ID, .. })
        ));
    }

    #[test]
    fn verify_rejects_unknown_versions_and_bad_layouts() {
        let mut p = formatted();
        p.buf[field::VERSION] = 9;
        p.seal();
        assert_eq!(
            p.verify(ID),
            Err(PageError::UnknownVersion {
                page: ID,
                version: 9
            })
        );
        let mut p = formatted();
        p.insert(0, b"abc").unwrap();
        p.put_u16(slot_pos(0), 10);
        p.seal();
        assert!(matches!(
            p.verify(ID),
            Err(PageError::BadLayout { page: ID, .. })
        ));
        assert!(matches!(p.item(0), Err(PageError::Corrupt { .. })));
    }

    #[test]
    fn from_bytes_checks_the_length() {
        assert_eq!(
            Page::from_bytes(&[0; 100]),
            Err(PageError::WrongSize { len: 100 })
        );
        assert!(Page::from_bytes(&[0; PAGE_SIZE]).is_ok());
    }

    #[test]
    fn an_unformatted_page_refuses_operations() {
        let mut p = Page::new_zeroed();
        let err = PageError::NotFormatted { version: 0 };
        assert_eq!(p.insert(0, b"x"), Err(err.clone()));
        assert_eq!(p.set_right_link(4), Err(err.clone()));
        assert_eq!(p.item(0), Err(err));
        assert_eq!(p, Page::new_zeroed());
    }

    #[test]
    fn right_link_round_trips() {
        let mut p = formatted();
        p.set_right_link(42).unwrap();
        assert_eq!(p.right_link(), 42);
    }
}
