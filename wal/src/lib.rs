//! `strata-wal`: the shared language of every Strata node.
//!
//! [`Lsn`] and [`PageId`] name positions and pages; [`page`] is the 8 KiB
//! page layout; [`record`] frames redo records (length, crc32, LSN, kind) and
//! groups them into atomic batches; [`op`] holds the physiological page
//! operations; [`redo::apply`] is the one deterministic function that every
//! node uses to apply a record to a page.
//!
//! This crate does no I/O and depends on no other Strata crate.

pub mod error;
pub mod lsn;
pub mod op;
pub mod page;
#[cfg(any(test, feature = "proptest"))]
pub mod proptest_util;
pub mod record;
pub mod redo;

pub use error::{Result, WalError};
pub use lsn::{Lsn, PageId};
pub use record::{Batch, BatchBuilder, Record, RecordKind, RecordRef};
