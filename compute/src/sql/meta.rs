//! Result column descriptions: a table column's protocol type, flags and
//! display length, an expression's type, and values made to fit the type
//! their column announces.

use crate::catalog::{ColumnDef, TableDef};
use crate::types::{Collation, ColumnType, Decimal, IntWidth, Value};

use super::{Column, FieldType, flags};

/// The static kind of an expression's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    UInt,
    Decimal(u8),
    Double,
    Text,
    Date,
    DateTime,
    Null,
    /// Unknown until a value is seen (parameters, user variables).
    Any,
}

/// The protocol description of a table column.
pub(crate) fn table_column(db: &str, table: &TableDef, i: usize, name: &str) -> Column {
    let c = &table.columns[i];
    let (field_type, length, decimals, charset) = describe(&c.ty);
    let mut f = 0;
    if !c.nullable {
        f |= flags::NOT_NULL;
    }
    if table.primary.columns.contains(&i) {
        f |= flags::PRI_KEY;
    }
    if c.auto_increment {
        f |= flags::AUTO_INCREMENT;
    }
    if table
        .secondary
        .iter()
        .any(|x| x.unique && x.columns.first() == Some(&i))
    {
        f |= flags::UNIQUE_KEY;
    }
    if table
        .secondary
        .iter()
        .any(|x| !x.unique && x.columns.first() == Some(&i))
    {
        f |= flags::MULTIPLE_KEY;
    }
    f |= type_flags(&c.ty);
    Column {
        db: db.to_string(),
        table: table.name.clone(),
        name: name.to_string(),
        charset,
        length,
        field_type,
        flags: f,
        decimals,
    }
}

fn type_flags(ty: &ColumnType) -> u16 {
    match ty {
        ColumnType::Int { unsigned: true, .. } => flags::UNSIGNED | flags::NUM,
        ColumnType::Int { .. } | ColumnType::Boolean => flags::NUM,
        ColumnType::Double | ColumnType::Decimal { .. } => flags::NUM,
        ColumnType::Blob { .. } => flags::BLOB | flags::BINARY,
        ColumnType::Text { collation, .. } => {
            flags::BLOB
                | if *collation == Collation::Utf8mb4Bin {
                    flags::BINARY
                } else {
                    0
                }
        }
        ColumnType::Char { collation, .. } | ColumnType::VarChar { collation, .. } => {
            if *collation == Collation::Utf8mb4Bin {
                flags::BINARY
            } else {
                0
            }
        }
        ColumnType::Date | ColumnType::DateTime | ColumnType::Timestamp => flags::BINARY,
    }
}

/// (type, display length, decimals, charset) of a column type.
fn describe(ty: &ColumnType) -> (FieldType, u32, u8, u16) {
    let int = |ft, len, unsigned: bool| (ft, if unsigned { len - 1 } else { len }, 0, 63);
    match ty {
        ColumnType::Int { width, unsigned } => match width {
            IntWidth::Tiny => int(FieldType::Tiny, 4, *unsigned),
            IntWidth::Small => int(FieldType::Short, 6, *unsigned),
            IntWidth::Medium => int(FieldType::Int24, 9, *unsigned),
            IntWidth::Int => int(FieldType::Long, 11, *unsigned),
            IntWidth::Big => int(FieldType::LongLong, 20, false),
        },
        ColumnType::Boolean => (FieldType::Tiny, 1, 0, 63),
        ColumnType::Double => (FieldType::Double, 22, 31, 63),
        ColumnType::Decimal { precision, scale } => (
            FieldType::NewDecimal,
            u32::from(*precision) + u32::from(*scale > 0) + 1,
            *scale,
            63,
        ),
        ColumnType::Char {
            max_chars,
            collation,
        } => (FieldType::String, max_chars * 4, 0, collation.id()),
        ColumnType::VarChar {
            max_chars,
            collation,
        } => (FieldType::VarString, max_chars * 4, 0, collation.id()),
        ColumnType::Text {
            max_bytes,
            collation,
        } => (FieldType::Blob, *max_bytes, 0, collation.id()),
        ColumnType::Blob { max_bytes } => (FieldType::Blob, *max_bytes, 0, 63),
        ColumnType::Date => (FieldType::Date, 10, 0, 63),
        ColumnType::DateTime => (FieldType::DateTime, 19, 0, 63),
        ColumnType::Timestamp => (FieldType::Timestamp, 19, 0, 63),
    }
}

/// The kind of a table column's values.
pub(crate) fn column_kind(c: &ColumnDef) -> Kind {
    match &c.ty {
        ColumnType::Int { unsigned: true, .. } => Kind::UInt,
        ColumnType::Int { .. } | ColumnType::Boolean => Kind::Int,
        ColumnType::Double => Kind::Double,
        ColumnType::Decimal { scale, .. } => Kind::Decimal(*scale),
        ColumnType::Date => Kind::Date,
        ColumnType::DateTime | ColumnType::Timestamp => Kind::DateTime,
        _ => Kind::Text,
    }
}

/// The kind of a value.
pub(crate) fn value_kind(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Null,
        Value::Int(_) => Kind::Int,
        Value::UInt(_) => Kind::UInt,
        Value::Double(_) => Kind::Double,
        Value::Decimal(d) => Kind::Decimal(d.scale),
        Value::Bytes(_) => Kind::Text,
        Value::Date(_) => Kind::Date,
        Value::DateTime(_) => Kind::DateTime,
    }
}

/// The description of an expression column of `kind`.
pub(crate) fn expr_column(name: &str, kind: Kind) -> Column {
    let (field_type, length, decimals, charset, f) = match kind {
        Kind::Int => (FieldType::LongLong, 21, 0, 63, flags::NUM),
        Kind::UInt => (FieldType::LongLong, 20, 0, 63, flags::NUM | flags::UNSIGNED),
        Kind::Decimal(s) => (FieldType::NewDecimal, 66, s, 63, flags::NUM),
        Kind::Double => (FieldType::Double, 23, 31, 63, flags::NUM),
        Kind::Date => (FieldType::Date, 10, 0, 63, flags::BINARY),
        Kind::DateTime => (FieldType::DateTime, 19, 0, 63, flags::BINARY),
        Kind::Null => (FieldType::Null, 0, 0, 63, flags::BINARY),
        Kind::Text | Kind::Any => (FieldType::VarString, 1024, 31, 45, 0),
    };
    Column {
        db: String::new(),
        table: String::new(),
        name: name.to_string(),
        charset,
        length,
        field_type,
        flags: f,
        decimals,
    }
}

/// `v` in the form its column's kind announces (NULL stays NULL).
pub(crate) fn conform(v: Value, kind: Kind) -> Value {
    if matches!(v, Value::Null) || value_kind(&v) == kind {
        return v;
    }
    let text = || Value::Bytes(super::expr::text_bytes(&v));
    match kind {
        Kind::Int => match v {
            Value::UInt(u) => i64::try_from(u).map_or_else(|_| Value::UInt(u), Value::Int),
            other => ColumnType::Int {
                width: IntWidth::Big,
                unsigned: false,
            }
            .coerce(other)
            .unwrap_or(Value::Int(0)),
        },
        Kind::UInt => match v {
            Value::Int(i) => Value::UInt(i.max(0) as u64),
            other => Value::UInt(super::expr::double_of(&other).max(0.0) as u64),
        },
        Kind::Decimal(scale) => ColumnType::Decimal {
            precision: 38,
            scale,
        }
        .coerce(v)
        .unwrap_or(Value::Decimal(Decimal { mantissa: 0, scale })),
        Kind::Double => Value::Double(super::expr::double_of(&v)),
        Kind::Date | Kind::DateTime | Kind::Text | Kind::Any | Kind::Null => text(),
    }
}
