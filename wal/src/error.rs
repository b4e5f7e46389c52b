//! The one error type of the `wal` crate.
//!
//! Every error that concerns a record names the LSN where the record starts,
//! so an operator can find it in a segment or layer file. Nothing here is
//! retryable: a decode error means the bytes are wrong, and the caller must
//! fetch them again from elsewhere or stop.

use crate::lsn::Lsn;
use crate::page::PageError;
use crate::record::RecordKind;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalError {
    #[error("record at LSN {at} is truncated: it needs {need} bytes, {have} are there")]
    Truncated { at: Lsn, need: usize, have: usize },
    #[error(
        "record at LSN {at} fails its crc check (stored {stored:#010x}, computed {computed:#010x})"
    )]
    BadCrc { at: Lsn, stored: u32, computed: u32 },
    #[error("record at LSN {at} has an impossible length of {len} bytes")]
    BadLength { at: Lsn, len: u32 },
    #[error("record at LSN {at} has unknown kind {kind}")]
    UnknownKind { at: Lsn, kind: u8 },
    #[error("record at LSN {at} has unsupported format version {version} (flags {flags:#x})")]
    UnknownVersion { at: Lsn, version: u8, flags: u16 },
    #[error("record at LSN {at} says it ends at {claimed}, but it ends at {actual}")]
    LsnMismatch { at: Lsn, claimed: Lsn, actual: Lsn },
    #[error("record at LSN {at}: malformed {kind:?} body: {reason}")]
    BadBody {
        at: Lsn,
        kind: RecordKind,
        reason: &'static str,
    },
    #[error("a record body of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("batch starting at LSN {at} ends without its Commit record")]
    IncompleteBatch { at: Lsn },
    #[error("redo of the record at LSN {at} failed: {source}")]
    Redo {
        at: Lsn,
        #[source]
        source: PageError,
    },
    #[error(transparent)]
    Page(#[from] PageError),
}

pub type Result<T, E = WalError> = std::result::Result<T, E>;
