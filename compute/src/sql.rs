//! SQL sessions over the engine: MySQL statements parsed with `sqlparser`,
//! compiled into small plans ([`plan`]), run against the engine's
//! transactions, and answered in the protocol's terms ([`Output`],
//! [`Column`], [`SqlError`]).
//!
//! Module tree: [`session`] (state, variables, transactions, prepared
//! statements, the `Handler`), `vars` (system variables), `expr` (the
//! expression tree and its evaluation), `compile` (sqlparser's AST into
//! plans; `query` and `from` for SELECT and UNION, `names` for column
//! names over several sources, `subquery`), `access` (index choice),
//! `planner` (join order, join methods, where conditions go), `stats`
//! (row-count estimates), `select` and `join` (running queries), `dml`,
//! `ddl`, `show`, and `meta` (result column descriptions).
//!
//! Invariants: nothing here panics on a client's input; every engine error
//! reaches the client through [`SqlError::from`] (its one MySQL mapping);
//! every row of an [`Output::Rows`] holds values of its columns' types.
//! Must not depend on the MySQL protocol beyond the `Handler` trait.

mod access;
mod alter;
mod autoparam;
mod compile;
mod covering;
mod ddl;
mod dml;
mod explain;
mod expr;
mod from;
mod func;
mod information_schema;
mod join;
mod meta;
mod multi;
mod names;
mod plan;
mod planner;
mod process;
mod query;
mod rollup;
mod select;
mod session;
mod show;
mod sortkey;
mod stats;
mod subquery;
mod upsert;
mod vars;

use crate::error::EngineError;
use crate::types::Value;

pub use process::Processes;
pub use session::{Session, SessionFactory};

/// MySQL field types (the protocol's `enum_field_types`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FieldType {
    Decimal = 0,
    Tiny = 1,
    Short = 2,
    Long = 3,
    Float = 4,
    Double = 5,
    Null = 6,
    Timestamp = 7,
    LongLong = 8,
    Int24 = 9,
    Date = 10,
    Time = 11,
    DateTime = 12,
    Year = 13,
    VarChar = 15,
    NewDecimal = 246,
    Blob = 252,
    VarString = 253,
    String = 254,
}

/// Column definition flags (NOT_NULL = 1, PRI_KEY = 2, UNIQUE_KEY = 4,
/// MULTIPLE_KEY = 8, BLOB = 16, UNSIGNED = 32, BINARY = 128,
/// AUTO_INCREMENT = 512, NUM = 32768).
pub mod flags {
    pub const NOT_NULL: u16 = 1;
    pub const PRI_KEY: u16 = 2;
    pub const UNIQUE_KEY: u16 = 4;
    pub const MULTIPLE_KEY: u16 = 8;
    pub const BLOB: u16 = 16;
    pub const UNSIGNED: u16 = 32;
    pub const BINARY: u16 = 128;
    pub const AUTO_INCREMENT: u16 = 512;
    pub const NUM: u16 = 32768;
}

/// A result column as the protocol describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub db: String,
    pub table: String,
    pub name: String,
    /// 63 (binary) for numbers and blobs; 45/46 (utf8mb4) for strings.
    pub charset: u16,
    /// Display length.
    pub length: u32,
    pub field_type: FieldType,
    pub flags: u16,
    pub decimals: u8,
}

/// What a statement returns.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// A non-SELECT statement.
    Ok {
        affected_rows: u64,
        last_insert_id: u64,
        warnings: u16,
        info: String,
    },
    /// A result set; every row has one value per column, of the column's
    /// type (`Value::Int`/`UInt` for integers, `Bytes` for strings, …).
    Rows {
        columns: Vec<Column>,
        rows: Vec<Vec<Value>>,
    },
}

/// A prepared statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    pub id: u32,
    pub params: u16,
    /// The result columns, if the statement returns rows.
    pub columns: Vec<Column>,
}

/// An error as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ERROR {code} ({state}): {message}")]
pub struct SqlError {
    pub code: u16,
    pub state: String,
    pub message: String,
}

impl SqlError {
    pub fn new(code: u16, state: &str, message: impl Into<String>) -> SqlError {
        SqlError {
            code,
            state: state.to_string(),
            message: message.into(),
        }
    }

    /// 1064, with the text from `near` on, as MySQL words it.
    pub fn syntax(near: &str, line: u64) -> SqlError {
        let near: String = near.chars().take(80).collect();
        SqlError::new(
            1064,
            "42000",
            format!(
                "You have an error in your SQL syntax; check the manual that corresponds to \
                 your MySQL server version for the right syntax to use near '{near}' at line {line}"
            ),
        )
    }

    /// 1235: a statement or construct this server does not run.
    pub fn unsupported(what: impl std::fmt::Display) -> SqlError {
        SqlError::new(
            1235,
            "42000",
            format!("This version of Strata doesn't yet support '{what}'"),
        )
    }

    /// 1054 in `clause` ('field list', 'where clause', 'order clause', …).
    pub fn unknown_column(name: &str, clause: &str) -> SqlError {
        SqlError::new(
            1054,
            "42S22",
            format!("Unknown column '{name}' in '{clause}'"),
        )
    }

    /// 1046.
    pub fn no_database() -> SqlError {
        SqlError::new(1046, "3D000", "No database selected")
    }

    /// Whether this is a deadlock (the whole transaction is rolled back).
    pub fn is_deadlock(&self) -> bool {
        self.code == 1213
    }
}

impl From<EngineError> for SqlError {
    fn from(e: EngineError) -> SqlError {
        let (code, state) = e.mysql_code();
        SqlError::new(code, state, e.to_string())
    }
}
