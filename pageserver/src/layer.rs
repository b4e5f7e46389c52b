//! What every layer holds: values keyed by (page, LSN).
//!
//! A layer covers an LSN range `(start, end]`: it holds every page record of
//! the committed log whose LSN is in that range (records are keyed by their
//! LSN, the position just past their end), and possibly page images at some
//! of those LSNs. Layers of one page server tile the log without gaps or
//! overlaps: the next layer starts where the previous one ends.
//!
//! Within a layer, entries are ordered by page, then LSN, then delta before
//! image: an image at LSN `L` is the page *after* the record at `L`.
//!
//! Layer *files* come in three kinds ([`LayerKind`](desc::LayerKind)),
//! each described by a [`LayerDesc`](desc::LayerDesc) that the manifest
//! stores: L0 deltas (one per flush, every page), L1 deltas (written by
//! compaction; one LSN range split into files with disjoint page ranges)
//! and image layers (every page of a page range as of one LSN). All three
//! use the delta file format; the kind, the page range and, for an image
//! layer, its LSN live in the manifest.

pub mod delta_file;
pub mod desc;
pub mod inmem;

use bytes::Bytes;
use strata_wal::record::HEADER_BYTES;
use strata_wal::{Lsn, PageId, RecordKind};

/// The LSN range `(start, end]` a layer covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LsnRange {
    pub start: Lsn,
    pub end: Lsn,
}

impl LsnRange {
    /// Whether a record at `lsn` belongs in this range.
    pub fn contains(&self, lsn: Lsn) -> bool {
        self.start < lsn && lsn <= self.end
    }
}

/// One value of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A whole framed WAL record (header and body) as the log holds it; its
    /// LSN is the key's. Kept framed so its crc is checked again at replay.
    Delta(Bytes),
    /// The page's full image as of the key's LSN, lz4 block-compressed (as
    /// `PageOp::full_image` compresses it).
    Image(Bytes),
}

impl Value {
    pub fn is_image(&self) -> bool {
        matches!(self, Value::Image(_))
    }

    pub fn bytes(&self) -> &Bytes {
        match self {
            Value::Delta(b) | Value::Image(b) => b,
        }
    }

    /// The record kind of a delta, read from its frame header (None for an
    /// image or a frame too short to hold one; replay reports those).
    pub fn delta_kind(&self) -> Option<RecordKind> {
        match self {
            Value::Delta(b) if b.len() >= HEADER_BYTES => RecordKind::from_u8(b[16]),
            _ => None,
        }
    }

    /// Whether replay can start here without any older value: an image, or
    /// a record that overwrites the whole page (`Init`, `FullImage`).
    pub fn starts_page(&self) -> bool {
        self.is_image()
            || matches!(
                self.delta_kind(),
                Some(RecordKind::Init | RecordKind::FullImage)
            )
    }
}

/// One entry of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub page: PageId,
    pub lsn: Lsn,
    pub value: Value,
}

/// The order of entries in a layer: page, LSN, delta before image.
/// The shard of `page` among `count` (Fibonacci hashing: neighbouring
/// pages land in different shards).
pub fn shard_of(page: PageId, count: usize) -> usize {
    let key = (u64::from(page.space) << 32) | u64::from(page.page_no);
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % count
}

pub fn entry_key(page: PageId, lsn: Lsn, value: &Value) -> (PageId, Lsn, bool) {
    (page, lsn, value.is_image())
}

/// The record kind in a frame's header (None if too short or unknown;
/// replay reports those).
pub fn frame_kind(frame: &[u8]) -> Option<RecordKind> {
    (frame.len() >= HEADER_BYTES)
        .then(|| RecordKind::from_u8(frame[16]))
        .flatten()
}

/// Whether the framed record overwrites its whole page (`Init`,
/// `FullImage`), so replay can start at it.
pub fn frame_starts_page(frame: &[u8]) -> bool {
    matches!(
        frame_kind(frame),
        Some(RecordKind::Init | RecordKind::FullImage)
    )
}
