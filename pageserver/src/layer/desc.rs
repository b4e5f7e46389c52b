//! What the manifest says about one layer file: its kind, its LSN range, its
//! page range and its name.
//!
//! Invariants the rest of the page server relies on:
//! - an L0 delta covers every page ([`KeyRange::ALL`]);
//! - the L1 deltas written for one LSN range (a *run*) have disjoint page
//!   ranges that together cover every page;
//! - delta layers of different LSN ranges never overlap in LSN, so for any
//!   one page the deltas covering it tile the log;
//! - an image layer "at `L`" holds, for every page of its range that exists
//!   at `L`, the page as of `L`, keyed at the page's own LSN (its last
//!   record at or below `L`); its file's LSN range is `(0, L]`. `L` is
//!   always the end of a delta run, never inside one.
//!
//! Pages are ordered as `(space, page_no)`, packed into a `u64` key.

use strata_wal::{Lsn, PageId};

use super::LsnRange;

/// A page as a sortable key: `space << 32 | page_no`.
pub fn page_key(page: PageId) -> u64 {
    (u64::from(page.space) << 32) | u64::from(page.page_no)
}

pub fn key_page(key: u64) -> PageId {
    PageId::new((key >> 32) as u32, key as u32)
}

/// An inclusive range of page keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyRange {
    pub first: u64,
    pub last: u64,
}

impl KeyRange {
    pub const ALL: KeyRange = KeyRange {
        first: 0,
        last: u64::MAX,
    };

    pub fn contains(&self, page: PageId) -> bool {
        let k = page_key(page);
        self.first <= k && k <= self.last
    }
}

/// The three kinds of layer file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// Written by a flush: every page, one frozen layer's LSN range.
    L0,
    /// Written by compaction: part of a run of disjoint page ranges.
    L1,
    /// Page images as of the end of its LSN range.
    Image,
}

impl LayerKind {
    pub fn code(self) -> u8 {
        match self {
            LayerKind::L0 => 0,
            LayerKind::L1 => 1,
            LayerKind::Image => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<LayerKind> {
        match code {
            0 => Some(LayerKind::L0),
            1 => Some(LayerKind::L1),
            2 => Some(LayerKind::Image),
            _ => None,
        }
    }

    pub fn is_delta(self) -> bool {
        self != LayerKind::Image
    }
}

/// One layer file as the manifest names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDesc {
    pub file_name: String,
    pub kind: LayerKind,
    /// For a delta: the records' LSN range. For an image layer: `(0, L]`.
    pub range: LsnRange,
    pub keys: KeyRange,
    pub file_bytes: u64,
}

impl LayerDesc {
    /// Where the layer sits in LSN order: deltas by their end, an image
    /// layer at `L` after the deltas ending at `L`; then by page range.
    pub fn order(&self) -> (Lsn, bool, u64) {
        (self.range.end, !self.kind.is_delta(), self.keys.first)
    }

    /// The LSN of an image layer.
    pub fn image_lsn(&self) -> Option<Lsn> {
        (!self.kind.is_delta()).then_some(self.range.end)
    }
}

/// The file name of a layer: its kind, LSN range and page range, so no two
/// live layers ever share one.
pub fn layer_file_name(kind: LayerKind, range: LsnRange, keys: KeyRange) -> String {
    let (start, end) = (range.start.0, range.end.0);
    match kind {
        LayerKind::L0 => format!("{start:016X}-{end:016X}.delta"),
        LayerKind::L1 => format!(
            "{start:016X}-{end:016X}-{:016X}-{:016X}.l1.delta",
            keys.first, keys.last
        ),
        LayerKind::Image => format!(
            "{end:016X}-{:016X}-{:016X}.image.delta",
            keys.first, keys.last
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_as_pages_do() {
        let pages = [
            PageId::new(0, 5),
            PageId::new(1, 0),
            PageId::new(1, u32::MAX),
        ];
        for w in pages.windows(2) {
            assert!(page_key(w[0]) < page_key(w[1]));
        }
        for p in pages {
            assert_eq!(key_page(page_key(p)), p);
        }
    }

    #[test]
    fn names_of_different_layers_differ() {
        let r = LsnRange {
            start: Lsn(0),
            end: Lsn(100),
        };
        let half = KeyRange { first: 0, last: 7 };
        let names = [
            layer_file_name(LayerKind::L0, r, KeyRange::ALL),
            layer_file_name(LayerKind::L1, r, KeyRange::ALL),
            layer_file_name(LayerKind::L1, r, half),
            layer_file_name(LayerKind::Image, r, KeyRange::ALL),
        ];
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }
}
