//! SQL sessions over the engine. (Stub: the SQL helper owns this file and
//! `sql/`.)

use crate::engine::Engine;
use crate::types::Value;

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

/// One client's session: current database, variables, open transaction,
/// prepared statements.
pub struct Session {}

impl Session {
    pub fn new(engine: Engine, connection_id: u32) -> Session {
        let _ = (engine, connection_id);
        unimplemented!("SQL helper")
    }
}
