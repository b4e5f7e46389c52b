//! The engine's errors, and their one mapping to MySQL error numbers.
//!
//! Callers tell *retry* from *give up* with [`EngineError::is_retryable`]:
//! a deadlock or a lock-wait timeout is worth retrying the transaction;
//! a duplicate key or a value that does not fit never is.

use strata_logservice::LogError;
use strata_pageserver::PageServerError;
use strata_wal::Lsn;

use crate::btree::TreeError;
use crate::lock::LockError;
use crate::row::RowError;
use crate::types::ValueError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Duplicate entry '{key}' for key '{index}'")]
    DuplicateKey { index: String, key: String },
    #[error("{0}")]
    Lock(#[from] LockError),
    #[error("Unknown database '{0}'")]
    UnknownDatabase(String),
    #[error("Table '{db}.{table}' doesn't exist")]
    UnknownTable { db: String, table: String },
    #[error("Unknown column '{0}'")]
    UnknownColumn(String),
    #[error("Can't create database '{0}'; database exists")]
    DatabaseExists(String),
    #[error("Table '{0}' already exists")]
    TableExists(String),
    #[error("Duplicate key name '{0}'")]
    IndexExists(String),
    #[error("Can't DROP '{0}'; check that column/key exists")]
    UnknownIndex(String),
    #[error("{error} for column '{column}'")]
    Value { column: String, error: ValueError },
    #[error("Specified key was too long; max key length is {max} bytes")]
    KeyTooLong { max: usize },
    #[error("Column count doesn't match value count")]
    ColumnCount,
    #[error("Column '{0}' cannot be null")]
    NotNull(String),
    #[error("Table definition has changed, please retry transaction")]
    TableDefChanged,
    #[error("Field '{0}' doesn't have a default value")]
    NoDefault(String),
    #[error("transaction too large: {bytes} bytes of changes; the most is {max}")]
    TxnTooLarge { bytes: u64, max: u64 },
    #[error("snapshot too old: LSN {snapshot} is below the page server's horizon")]
    SnapshotTooOld { snapshot: Lsn },
    #[error("this node refuses writes: {0}")]
    WritesRefused(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("log service: {0}")]
    Log(#[from] LogError),
    #[error("page server: {0}")]
    PageServer(#[from] PageServerError),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("shutting down")]
    Shutdown,
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// A deadlock or lock-wait timeout: retry the transaction.
    pub fn is_retryable(&self) -> bool {
        matches!(self, EngineError::Lock(_))
    }

    /// The MySQL error number and SQLSTATE a client sees.
    pub fn mysql_code(&self) -> (u16, &'static str) {
        use EngineError::*;
        match self {
            DuplicateKey { .. } => (1062, "23000"),
            Lock(LockError::Deadlock) => (1213, "40001"),
            Lock(LockError::Timeout) => (1205, "HY000"),
            UnknownDatabase(_) => (1049, "42000"),
            UnknownTable { .. } => (1146, "42S02"),
            UnknownColumn(_) => (1054, "42S22"),
            DatabaseExists(_) => (1007, "HY000"),
            TableExists(_) => (1050, "42S01"),
            IndexExists(_) => (1061, "42000"),
            UnknownIndex(_) => (1091, "42000"),
            Value { error, .. } => match error {
                ValueError::OutOfRange => (1264, "22003"),
                ValueError::TooLong => (1406, "22001"),
                ValueError::BadValue(_) => (1366, "HY000"),
            },
            KeyTooLong { .. } => (1071, "42000"),
            ColumnCount => (1136, "21S01"),
            NoDefault(_) => (1364, "HY000"),
            NotNull(_) => (1048, "23000"),
            TableDefChanged => (1412, "HY000"),
            TxnTooLarge { .. } => (1197, "HY000"),
            SnapshotTooOld { .. } => (1105, "HY000"),
            WritesRefused(_) => (1290, "HY000"),
            Invalid(_) => (1105, "HY000"),
            Corrupt(_) => (1030, "HY000"),
            Log(_) | PageServer(_) | Unavailable(_) | Shutdown => (1105, "HY000"),
        }
    }
}

impl From<RowError> for EngineError {
    fn from(e: RowError) -> Self {
        EngineError::Corrupt(e.to_string())
    }
}

/// A tree error other than a miss (the engine handles misses itself).
impl From<TreeError> for EngineError {
    fn from(e: TreeError) -> Self {
        match e {
            TreeError::KeyTooLarge { .. } => EngineError::KeyTooLong {
                max: crate::btree::MAX_KEY_BYTES,
            },
            TreeError::ValueTooLarge { len } => EngineError::Invalid(format!(
                "a value of {len} bytes is larger than the most a row can hold ({} bytes)",
                crate::btree::MAX_VALUE_BYTES
            )),
            TreeError::Miss(page) => {
                EngineError::Unavailable(format!("page {page} missing from the buffer pool"))
            }
            e @ (TreeError::Corrupt { .. } | TreeError::Page { .. }) => {
                EngineError::Corrupt(e.to_string())
            }
        }
    }
}
