//! The log service's errors, and their one mapping to and from gRPC status.
//!
//! Callers tell *retry* from *give up* with [`LogError::is_retryable`]: a
//! replica that is down or a missing quorum may heal; a fenced writer, a
//! wrong cluster, a malformed request or corrupt data never will.

use strata_wal::{Lsn, WalError};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "wrong cluster: this replica belongs to cluster {ours:?}, the request names {theirs:?}"
    )]
    WrongCluster { ours: String, theirs: String },
    #[error("fenced: term {term} is stale, term {promised} has been promised to another writer")]
    Fenced { term: u64, promised: u64 },
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("corrupt log data: {0}")]
    Corrupt(#[from] WalError),
    #[error("corrupt {what}: {detail}")]
    CorruptFile { what: String, detail: String },
    #[error("LSN {lsn} is no longer held here: the log starts at {start}")]
    Trimmed { lsn: Lsn, start: Lsn },
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("shutting down")]
    Shutdown,
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

impl LogError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LogError {
        let context = context.into();
        move |source| LogError::Io { context, source }
    }

    /// As [`LogError::io`], the context built only on an error (for the
    /// hot paths: a write or read per append).
    pub fn io_with(context: impl FnOnce() -> String) -> impl FnOnce(std::io::Error) -> LogError {
        move |source| LogError::Io {
            context: context(),
            source,
        }
    }

    /// Whether trying again (perhaps elsewhere) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LogError::Unavailable(_) | LogError::Io { .. })
    }
}

impl From<LogError> for tonic::Status {
    fn from(e: LogError) -> tonic::Status {
        use tonic::Code;
        let code = match &e {
            LogError::WrongCluster { .. } => Code::FailedPrecondition,
            LogError::Fenced { .. } => Code::Aborted,
            LogError::BadRequest(_) => Code::InvalidArgument,
            LogError::Corrupt(_) | LogError::CorruptFile { .. } => Code::DataLoss,
            LogError::Trimmed { .. } => Code::OutOfRange,
            LogError::Io { .. } => Code::Internal,
            LogError::Unavailable(_) | LogError::Shutdown => Code::Unavailable,
        };
        tonic::Status::new(code, e.to_string())
    }
}

impl From<tonic::Status> for LogError {
    /// A status from a remote replica. Only the kinds a caller acts on
    /// differently are kept apart; the message travels as it came.
    fn from(s: tonic::Status) -> LogError {
        use tonic::Code;
        let msg = s.message().to_string();
        match s.code() {
            Code::InvalidArgument => LogError::BadRequest(msg),
            Code::FailedPrecondition => LogError::WrongCluster {
                ours: String::new(),
                theirs: msg,
            },
            Code::DataLoss => LogError::CorruptFile {
                what: "remote log".into(),
                detail: msg,
            },
            _ => LogError::Unavailable(format!("{}: {}", s.code(), msg)),
        }
    }
}
