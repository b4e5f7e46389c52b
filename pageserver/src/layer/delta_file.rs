//! Delta layer files: the immutable, on-disk form of a frozen layer.
//! (Interface only; the format is being written.)

use std::path::Path;

use strata_wal::{Lsn, PageId};

use crate::error::Result;
use crate::layer::{Entry, LsnRange, Value};

/// A page's figures in a layer file's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageSummary {
    /// LSN of the page's first entry in the file.
    pub first_lsn: Lsn,
    /// LSN of the page's last entry in the file.
    pub last_lsn: Lsn,
    pub entries: u32,
    pub first_block: u32,
    pub last_block: u32,
}

/// Writes one delta layer file; entries must come in layer order.
pub struct DeltaFileWriter {}

impl DeltaFileWriter {
    pub fn create(_path: &Path, _cluster_id: &str, _range: LsnRange) -> Result<DeltaFileWriter> {
        unimplemented!("delta layer format")
    }

    pub fn push(&mut self, _page: PageId, _lsn: Lsn, _value: &Value) -> Result<()> {
        unimplemented!("delta layer format")
    }

    pub fn finish(self) -> Result<DeltaFile> {
        unimplemented!("delta layer format")
    }
}

/// An open, verified delta layer file.
pub struct DeltaFile {}

impl DeltaFile {
    pub fn open(_path: &Path, _cluster_id: &str) -> Result<DeltaFile> {
        unimplemented!("delta layer format")
    }

    pub fn path(&self) -> &Path {
        unimplemented!("delta layer format")
    }

    pub fn range(&self) -> LsnRange {
        unimplemented!("delta layer format")
    }

    pub fn file_bytes(&self) -> u64 {
        unimplemented!("delta layer format")
    }

    pub fn page_count(&self) -> usize {
        unimplemented!("delta layer format")
    }

    pub fn entry_count(&self) -> u64 {
        unimplemented!("delta layer format")
    }

    pub fn summary(&self, _page: PageId) -> Option<PageSummary> {
        unimplemented!("delta layer format")
    }

    pub fn pages(&self) -> Vec<(PageId, PageSummary)> {
        unimplemented!("delta layer format")
    }

    pub fn read_page(&self, _page: PageId, _upto: Lsn) -> Result<Vec<(Lsn, Value)>> {
        unimplemented!("delta layer format")
    }

    pub fn read_all(&self) -> Result<Vec<Entry>> {
        unimplemented!("delta layer format")
    }
}
