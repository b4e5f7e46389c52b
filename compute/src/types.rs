//! Column types, values and the checks a value must pass to be stored.
//! (Stub: helper A owns this file.)

use std::cmp::Ordering;

/// A string column's collation (MySQL/MariaDB ids).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Collation {
    /// id 45: case-insensitive, PAD SPACE; the default.
    #[default]
    Utf8mb4GeneralCi,
    /// id 46: code-point order, PAD SPACE.
    Utf8mb4Bin,
    /// id 63: raw bytes (BLOB, BINARY).
    Binary,
}

impl Collation {
    pub fn id(self) -> u16 {
        match self {
            Collation::Utf8mb4GeneralCi => 45,
            Collation::Utf8mb4Bin => 46,
            Collation::Binary => 63,
        }
    }

    pub fn from_id(id: u16) -> Option<Collation> {
        match id {
            45 => Some(Collation::Utf8mb4GeneralCi),
            46 => Some(Collation::Utf8mb4Bin),
            63 => Some(Collation::Binary),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Collation::Utf8mb4GeneralCi => "utf8mb4_general_ci",
            Collation::Utf8mb4Bin => "utf8mb4_bin",
            Collation::Binary => "binary",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntWidth {
    Tiny,
    Small,
    Medium,
    Int,
    Big,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Int {
        width: IntWidth,
        unsigned: bool,
    },
    Double,
    /// DECIMAL(p, s), p <= 38.
    Decimal {
        precision: u8,
        scale: u8,
    },
    Char {
        max_chars: u32,
        collation: Collation,
    },
    VarChar {
        max_chars: u32,
        collation: Collation,
    },
    /// TEXT family; `max_bytes` is 255, 65535, 16 MiB - 1 or 4 GiB - 1.
    Text {
        max_bytes: u32,
        collation: Collation,
    },
    Blob {
        max_bytes: u32,
    },
    Date,
    DateTime,
    Timestamp,
    /// TINYINT(1): stored as `Value::Int(0 | 1)`.
    Boolean,
}

/// An exact decimal: `mantissa * 10^-scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decimal {
    pub mantissa: i128,
    pub scale: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micros: u32,
}

/// A value as the engine stores it. Strings are UTF-8 bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    UInt(u64),
    Double(f64),
    Decimal(Decimal),
    Bytes(Vec<u8>),
    Date(Date),
    /// DATETIME and TIMESTAMP.
    DateTime(DateTime),
}

/// Why a value cannot be stored in a column (strict sql_mode).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// MySQL 1264.
    #[error("Out of range value")]
    OutOfRange,
    /// MySQL 1406.
    #[error("Data too long")]
    TooLong,
    /// MySQL 1366 (and 1292 for dates).
    #[error("Incorrect value: {0}")]
    BadValue(String),
}

impl ColumnType {
    /// `v` converted to this column's stored form, or why it cannot be.
    pub fn coerce(&self, v: Value) -> Result<Value, ValueError> {
        let _ = v;
        unimplemented!("helper A")
    }

    pub fn collation(&self) -> Collation {
        match self {
            ColumnType::Char { collation, .. }
            | ColumnType::VarChar { collation, .. }
            | ColumnType::Text { collation, .. } => *collation,
            _ => Collation::Binary,
        }
    }
}

/// Value order in a column of type `ty` (NULL first), under its collation.
pub fn compare(ty: &ColumnType, a: &Value, b: &Value) -> Ordering {
    let _ = (ty, a, b);
    unimplemented!("helper A")
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
