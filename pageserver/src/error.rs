//! The page server's errors, and their one mapping to gRPC status.
//!
//! Callers tell *retry* from *give up* with [`PageServerError::is_retryable`]:
//! ingest that has not yet reached an LSN may catch up; a page never written,
//! a corrupt file or a malformed request never will.

use std::path::PathBuf;

use strata_logservice::LogError;
use strata_wal::{Lsn, PageId, WalError};

#[derive(Debug, thiserror::Error)]
pub enum PageServerError {
    #[error(
        "wrong cluster: this page server belongs to cluster {ours:?}, the request names {theirs:?}"
    )]
    WrongCluster { ours: String, theirs: String },
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("page {page} was never written at or below LSN {lsn}")]
    PageNotFound { page: PageId, lsn: Lsn },
    #[error("page {page} is in space {} which was dropped at LSN {dropped_at}", page.space)]
    SpaceDropped { page: PageId, dropped_at: Lsn },
    #[error("snapshot too old: LSN {lsn} is below the GC horizon {horizon}; its history is gone")]
    SnapshotTooOld { lsn: Lsn, horizon: Lsn },
    #[error("LSN {lsn} is above what the log has committed ({committed}); waited {waited_ms} ms")]
    LsnNotCommitted {
        lsn: Lsn,
        committed: Lsn,
        waited_ms: u64,
    },
    #[error(
        "timed out after {waited_ms} ms waiting for ingest to reach LSN {lsn} (ingested {ingested})"
    )]
    LsnTimeout {
        lsn: Lsn,
        ingested: Lsn,
        waited_ms: u64,
    },
    #[error("corrupt {file}: {detail}")]
    Corrupt { file: PathBuf, detail: String },
    #[error("corrupt WAL: {0}")]
    Wal(#[from] WalError),
    #[error("cannot rebuild page {page} at LSN {lsn}: {detail}")]
    Rebuild {
        page: PageId,
        lsn: Lsn,
        detail: String,
    },
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object store: {0}")]
    ObjectStore(String),
    #[error(
        "fenced: a page server of generation {newer} owns the bucket; this one ({ours}) stops writing to it"
    )]
    Fenced { ours: u32, newer: u32 },
    #[error("log service: {0}")]
    Log(#[from] LogError),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A layer file was evicted from the local disk and must be downloaded
    /// again before this read can go on. Handled inside the page server
    /// (download, retry); a caller never sees it.
    #[error("layer {file} is not on the local disk")]
    LayerEvicted { file: String },
    /// An error the page server answered with, as a client sees it.
    #[error("page server: {message} ({code:?})")]
    Remote { code: tonic::Code, message: String },
    #[error("bad answer from the page server: {0}")]
    BadResponse(String),
    #[error("shutting down")]
    Shutdown,
}

pub type Result<T, E = PageServerError> = std::result::Result<T, E>;

impl PageServerError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PageServerError {
        let context = context.into();
        move |source| PageServerError::Io { context, source }
    }

    pub fn corrupt(file: impl Into<PathBuf>, detail: impl Into<String>) -> PageServerError {
        PageServerError::Corrupt {
            file: file.into(),
            detail: detail.into(),
        }
    }

    /// Whether trying again (later, or elsewhere) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            PageServerError::LsnTimeout { .. }
            | PageServerError::LsnNotCommitted { .. }
            | PageServerError::Unavailable(_)
            | PageServerError::LayerEvicted { .. }
            | PageServerError::ObjectStore(_)
            | PageServerError::Io { .. } => true,
            PageServerError::Log(e) => e.is_retryable(),
            PageServerError::Remote { code, .. } => matches!(
                code,
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::OutOfRange
            ),
            _ => false,
        }
    }

    /// The gRPC code this error travels as.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            PageServerError::WrongCluster { .. }
            | PageServerError::SnapshotTooOld { .. }
            | PageServerError::Fenced { .. } => Code::FailedPrecondition,
            PageServerError::BadRequest(_) => Code::InvalidArgument,
            PageServerError::PageNotFound { .. } | PageServerError::SpaceDropped { .. } => {
                Code::NotFound
            }
            PageServerError::LsnNotCommitted { .. } => Code::OutOfRange,
            PageServerError::LsnTimeout { .. } => Code::DeadlineExceeded,
            PageServerError::Corrupt { .. }
            | PageServerError::Wal(_)
            | PageServerError::Rebuild { .. } => Code::DataLoss,
            PageServerError::Io { .. } => Code::Internal,
            PageServerError::Log(_)
            | PageServerError::Unavailable(_)
            | PageServerError::LayerEvicted { .. }
            | PageServerError::ObjectStore(_) => Code::Unavailable,
            PageServerError::Shutdown => Code::Unavailable,
            PageServerError::Remote { code, .. } => *code,
            PageServerError::BadResponse(_) => Code::Internal,
        }
    }
}

impl From<PageServerError> for tonic::Status {
    fn from(e: PageServerError) -> tonic::Status {
        tonic::Status::new(e.code(), e.to_string())
    }
}

impl From<tonic::Status> for PageServerError {
    fn from(s: tonic::Status) -> PageServerError {
        PageServerError::Remote {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

impl From<tonic::transport::Error> for PageServerError {
    fn from(e: tonic::transport::Error) -> PageServerError {
        PageServerError::Unavailable(format!("connecting to the page server: {e}"))
    }
}
