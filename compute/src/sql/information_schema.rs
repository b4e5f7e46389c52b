//! information_schema as virtual tables: SCHEMATA, TABLES, COLUMNS,
//! STATISTICS, KEY_COLUMN_USAGE, TABLE_CONSTRAINTS and (always empty: no
//! foreign keys) REFERENTIAL_CONSTRAINTS, with MySQL 8's columns, each row
//! made from the catalog when a query reads the table.
//!
//! A virtual table is a [`TableDef`] in the reserved database id
//! [`DB_ID`], with no spaces; [`table_ref`] resolves a name to it, so the
//! compiler treats it as any table (names, `*`, WHERE, ORDER BY, grouping),
//! and the session, instead of reading pages, hands [`rows`] to the SELECT
//! executor's entry point for rows given whole (`select::run_over`).
//! Nothing here writes; INSERT/UPDATE/DELETE on it fail in the engine
//! (1412: no such table id), as a read-only view should refuse.

use std::sync::Arc;

use crate::catalog::{Catalog, ColumnDef, IndexDef, TableDef};
use crate::types::{Collation, ColumnType, IntWidth, Value};

use super::SqlError;
use super::plan::TableRef;
use super::show::{collation_name, column_key, default_text, extra, index_rows, type_name};

pub(crate) const NAME: &str = "information_schema";
/// The database id of every virtual table (never a real database's).
pub(crate) const DB_ID: u32 = u32::MAX;

/// Column kinds of the virtual tables.
#[derive(Clone, Copy)]
enum K {
    /// A name or short text.
    S,
    /// A number.
    N,
}

const SCHEMATA: &[(&str, K)] = &[
    ("CATALOG_NAME", K::S),
    ("SCHEMA_NAME", K::S),
    ("DEFAULT_CHARACTER_SET_NAME", K::S),
    ("DEFAULT_COLLATION_NAME", K::S),
    ("SQL_PATH", K::S),
    ("DEFAULT_ENCRYPTION", K::S),
];

const TABLES: &[(&str, K)] = &[
    ("TABLE_CATALOG", K::S),
    ("TABLE_SCHEMA", K::S),
    ("TABLE_NAME", K::S),
    ("TABLE_TYPE", K::S),
    ("ENGINE", K::S),
    ("VERSION", K::N),
    ("ROW_FORMAT", K::S),
    ("TABLE_ROWS", K::N),
    ("AVG_ROW_LENGTH", K::N),
    ("DATA_LENGTH", K::N),
    ("MAX_DATA_LENGTH", K::N),
    ("INDEX_LENGTH", K::N),
    ("DATA_FREE", K::N),
    ("AUTO_INCREMENT", K::N),
    ("CREATE_TIME", K::S),
    ("UPDATE_TIME", K::S),
    ("CHECK_TIME", K::S),
    ("TABLE_COLLATION", K::S),
    ("CHECKSUM", K::N),
    ("CREATE_OPTIONS", K::S),
    ("TABLE_COMMENT", K::S),
];

const COLUMNS: &[(&str, K)] = &[
    ("TABLE_CATALOG", K::S),
    ("TABLE_SCHEMA", K::S),
    ("TABLE_NAME", K::S),
    ("COLUMN_NAME", K::S),
    ("ORDINAL_POSITION", K::N),
    ("COLUMN_DEFAULT", K::S),
    ("IS_NULLABLE", K::S),
    ("DATA_TYPE", K::S),
    ("CHARACTER_MAXIMUM_LENGTH", K::N),
    ("CHARACTER_OCTET_LENGTH", K::N),
    ("NUMERIC_PRECISION", K::N),
    ("NUMERIC_SCALE", K::N),
    ("DATETIME_PRECISION", K::N),
    ("CHARACTER_SET_NAME", K::S),
    ("COLLATION_NAME", K::S),
    ("COLUMN_TYPE", K::S),
    ("COLUMN_KEY", K::S),
    ("EXTRA", K::S),
    ("PRIVILEGES", K::S),
    ("COLUMN_COMMENT", K::S),
    ("GENERATION_EXPRESSION", K::S),
    ("SRS_ID", K::N),
];

const STATISTICS: &[(&str, K)] = &[
    ("TABLE_CATALOG", K::S),
    ("TABLE_SCHEMA", K::S),
    ("TABLE_NAME", K::S),
    ("NON_UNIQUE", K::N),
    ("INDEX_SCHEMA", K::S),
    ("INDEX_NAME", K::S),
    ("SEQ_IN_INDEX", K::N),
    ("COLUMN_NAME", K::S),
    ("COLLATION", K::S),
    ("CARDINALITY", K::N),
    ("SUB_PART", K::N),
    ("PACKED", K::S),
    ("NULLABLE", K::S),
    ("INDEX_TYPE", K::S),
    ("COMMENT", K::S),
    ("INDEX_COMMENT", K::S),
    ("IS_VISIBLE", K::S),
    ("EXPRESSION", K::S),
];

const KEY_COLUMN_USAGE: &[(&str, K)] = &[
    ("CONSTRAINT_CATALOG", K::S),
    ("CONSTRAINT_SCHEMA", K::S),
    ("CONSTRAINT_NAME", K::S),
    ("TABLE_CATALOG", K::S),
    ("TABLE_SCHEMA", K::S),
    ("TABLE_NAME", K::S),
    ("COLUMN_NAME", K::S),
    ("ORDINAL_POSITION", K::N),
    ("POSITION_IN_UNIQUE_CONSTRAINT", K::N),
    ("REFERENCED_TABLE_SCHEMA", K::S),
    ("REFERENCED_TABLE_NAME", K::S),
    ("REFERENCED_COLUMN_NAME", K::S),
];

const TABLE_CONSTRAINTS: &[(&str, K)] = &[
    ("CONSTRAINT_CATALOG", K::S),
    ("CONSTRAINT_SCHEMA", K::S),
    ("CONSTRAINT_NAME", K::S),
    ("TABLE_SCHEMA", K::S),
    ("TABLE_NAME", K::S),
    ("CONSTRAINT_TYPE", K::S),
    ("ENFORCED", K::S),
];

/// Empty: Strata has no FOREIGN KEY constraints (ORMs join it to
/// KEY_COLUMN_USAGE to reflect them).
const REFERENTIAL_CONSTRAINTS: &[(&str, K)] = &[
    ("CONSTRAINT_CATALOG", K::S),
    ("CONSTRAINT_SCHEMA", K::S),
    ("CONSTRAINT_NAME", K::S),
    ("UNIQUE_CONSTRAINT_CATALOG", K::S),
    ("UNIQUE_CONSTRAINT_SCHEMA", K::S),
    ("UNIQUE_CONSTRAINT_NAME", K::S),
    ("MATCH_OPTION", K::S),
    ("UPDATE_RULE", K::S),
    ("DELETE_RULE", K::S),
    ("TABLE_NAME", K::S),
    ("REFERENCED_TABLE_NAME", K::S),
];

/// Every virtual table: its name and columns. Its id is its position + 1.
const ALL: &[(&str, &[(&str, K)])] = &[
    ("SCHEMATA", SCHEMATA),
    ("TABLES", TABLES),
    ("COLUMNS", COLUMNS),
    ("STATISTICS", STATISTICS),
    ("KEY_COLUMN_USAGE", KEY_COLUMN_USAGE),
    ("TABLE_CONSTRAINTS", TABLE_CONSTRAINTS),
    ("REFERENTIAL_CONSTRAINTS", REFERENTIAL_CONSTRAINTS),
];

pub(crate) fn table_names() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|(n, _)| *n)
}

pub(crate) fn is_virtual(def: &TableDef) -> bool {
    def.db_id == DB_ID
}

/// The virtual table `name`, as a table reference (1109 if there is none).
pub(crate) fn table_ref(name: &str) -> Result<TableRef, SqlError> {
    let (i, (table, columns)) = ALL
        .iter()
        .enumerate()
        .find(|(_, (n, _))| n.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            SqlError::new(
                1109,
                "42S02",
                format!("Unknown table '{name}' in information_schema"),
            )
        })?;
    let columns = columns
        .iter()
        .map(|(n, k)| ColumnDef {
            name: n.to_string(),
            ty: match k {
                K::S => ColumnType::VarChar {
                    max_chars: 2048,
                    collation: Collation::Utf8mb4GeneralCi,
                },
                K::N => ColumnType::Int {
                    width: IntWidth::Big,
                    unsigned: true,
                },
            },
            nullable: true,
            default: None,
            auto_increment: false,
        })
        .collect();
    let def = TableDef {
        db_id: DB_ID,
        name: table.to_string(),
        id: i as u32 + 1,
        schema_version: 1,
        created_lsn: Default::default(),
        columns,
        primary: IndexDef::unplaced_primary(),
        secondary: Vec::new(),
    };
    Ok(TableRef {
        db: NAME.to_string(),
        def: Arc::new(def),
    })
}

fn text(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

fn opt(s: Option<&str>) -> Value {
    s.map_or(Value::Null, text)
}

fn num(n: u64) -> Value {
    Value::UInt(n)
}

/// Every row of the virtual table `def`, as of `catalog`.
pub(crate) fn rows(def: &TableDef, catalog: &Catalog) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    if def.name == "SCHEMATA" {
        let names = catalog.databases().map(|d| d.name.as_str());
        for name in std::iter::once(NAME).chain(names) {
            out.push(vec![
                text("def"),
                text(name),
                text("utf8mb4"),
                text(Collation::Utf8mb4GeneralCi.name()),
                Value::Null,
                text("NO"),
            ]);
        }
        return out;
    }
    if def.name == "TABLES" {
        for t in table_names() {
            out.push(table_row(NAME, t, "SYSTEM VIEW"));
        }
    }
    for d in catalog.databases() {
        for t in catalog.tables_in(d.id) {
            match def.name.as_str() {
                "TABLES" => out.push(table_row(&d.name, &t.name, "BASE TABLE")),
                "COLUMNS" => column_rows(&d.name, t, &mut out),
                "STATISTICS" => statistics_rows(&d.name, t, &mut out),
                "KEY_COLUMN_USAGE" => key_rows(&d.name, t, &mut out),
                "TABLE_CONSTRAINTS" => constraint_rows(&d.name, t, &mut out),
                _ => {}
            }
        }
    }
    out
}

pub(crate) fn table_row(db: &str, name: &str, kind: &str) -> Vec<Value> {
    let base = kind == "BASE TABLE";
    let when = |v: Value| if base { v } else { Value::Null };
    let mut row = vec![
        text("def"),
        text(db),
        text(name),
        text(kind),
        when(text("InnoDB")),
        num(10),
        when(text("Dynamic")),
    ];
    row.extend([0, 0, 16384, 0, 0, 0].map(|n| when(num(n))));
    row.extend([Value::Null, Value::Null, Value::Null, Value::Null]);
    row.extend([
        when(text(Collation::Utf8mb4GeneralCi.name())),
        Value::Null,
        text(""),
        text(""),
    ]);
    row
}

/// (NUMERIC_PRECISION, NUMERIC_SCALE) of a type.
fn numeric(ty: &ColumnType) -> (Option<u64>, Option<u64>) {
    match ty {
        ColumnType::Int { width, unsigned } => {
            let digits = match width {
                IntWidth::Tiny => 3,
                IntWidth::Small => 5,
                IntWidth::Medium => 7,
                IntWidth::Int => 10,
                IntWidth::Big if *unsigned => 20,
                IntWidth::Big => 19,
            };
            (Some(digits), Some(0))
        }
        ColumnType::Boolean => (Some(3), Some(0)),
        ColumnType::Double => (Some(22), None),
        ColumnType::Decimal { precision, scale } => {
            (Some(u64::from(*precision)), Some(u64::from(*scale)))
        }
        _ => (None, None),
    }
}

/// (CHARACTER_MAXIMUM_LENGTH, CHARACTER_OCTET_LENGTH) of a type.
fn char_lengths(ty: &ColumnType) -> (Option<u64>, Option<u64>) {
    match ty {
        ColumnType::Char { max_chars, .. } | ColumnType::VarChar { max_chars, .. } => {
            let n = u64::from(*max_chars);
            (Some(n), Some(n * 4))
        }
        ColumnType::Text { max_bytes, .. } | ColumnType::Blob { max_bytes } => {
            let n = u64::from(*max_bytes);
            (Some(n), Some(n))
        }
        _ => (None, None),
    }
}

fn column_rows(db: &str, t: &TableDef, out: &mut Vec<Vec<Value>>) {
    for (i, c) in t.columns.iter().enumerate() {
        let full_type = type_name(&c.ty);
        let data_type = full_type
            .split(['(', ' '])
            .next()
            .unwrap_or_default()
            .to_string();
        let (max_len, octets) = char_lengths(&c.ty);
        let (precision, scale) = numeric(&c.ty);
        let datetime_precision = match c.ty {
            ColumnType::DateTime | ColumnType::Timestamp => Some(0),
            _ => None,
        };
        let collation = collation_name(&c.ty);
        out.push(vec![
            text("def"),
            text(db),
            text(&t.name),
            text(&c.name),
            num(i as u64 + 1),
            opt(default_text(c).as_deref()),
            text(if c.nullable { "YES" } else { "NO" }),
            text(&data_type),
            max_len.map_or(Value::Null, num),
            octets.map_or(Value::Null, num),
            precision.map_or(Value::Null, num),
            scale.map_or(Value::Null, num),
            datetime_precision.map_or(Value::Null, num),
            opt(collation.map(|_| "utf8mb4")),
            opt(collation),
            text(&full_type),
            text(column_key(t, i)),
            text(extra(c)),
            text("select,insert,update,references"),
            text(""),
            text(""),
            Value::Null,
        ]);
    }
}

/// STATISTICS' rows of one table.
pub(crate) fn statistics(db: &str, t: &TableDef) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    statistics_rows(db, t, &mut out);
    out
}

/// STATISTICS' rows of one table; CARDINALITY is ANALYZE TABLE's count of
/// distinct values of the index's first SEQ_IN_INDEX columns (0 before).
fn statistics_rows(db: &str, t: &TableDef, out: &mut Vec<Vec<Value>>) {
    let mut counted: Option<(usize, Option<Vec<u64>>)> = None;
    for r in index_rows(t) {
        if counted.as_ref().is_none_or(|(i, _)| *i != r.index) {
            counted = Some((r.index, super::stats::distinct(t, r.index)));
        }
        let cardinality = counted
            .as_ref()
            .and_then(|(_, d)| d.as_ref()?.get(r.seq - 1).copied())
            .unwrap_or(0);
        out.push(vec![
            text("def"),
            text(db),
            text(&t.name),
            num(u64::from(!r.unique)),
            text(db),
            text(&r.name),
            num(r.seq as u64),
            text(&r.column),
            text("A"),
            num(cardinality),
            Value::Null,
            Value::Null,
            text(if r.nullable { "YES" } else { "" }),
            text("BTREE"),
            text(""),
            text(""),
            text("YES"),
            Value::Null,
        ]);
    }
}

fn key_rows(db: &str, t: &TableDef, out: &mut Vec<Vec<Value>>) {
    for r in index_rows(t).into_iter().filter(|r| r.unique) {
        out.push(vec![
            text("def"),
            text(db),
            text(&r.name),
            text("def"),
            text(db),
            text(&t.name),
            text(&r.column),
            num(r.seq as u64),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ]);
    }
}

fn constraint_rows(db: &str, t: &TableDef, out: &mut Vec<Vec<Value>>) {
    let primary = (!t.has_hidden_key()).then_some(&t.primary);
    for idx in primary.into_iter().chain(&t.secondary).filter(|i| i.unique) {
        let kind = match idx.name == "PRIMARY" {
            true => "PRIMARY KEY",
            false => "UNIQUE",
        };
        out.push(vec![
            text("def"),
            text(db),
            text(&idx.name),
            text(db),
            text(&t.name),
            text(kind),
            text("YES"),
        ]);
    }
}
