//! SHOW DATABASES / TABLES / VARIABLES / WARNINGS / CREATE TABLE, and the
//! columns COM_FIELD_LIST describes.

use std::collections::BTreeMap;

use sqlparser::ast::{ShowStatementFilter, ShowStatementIn, Statement};

use crate::catalog::{Catalog, TableDef};
use crate::types::{Collation, ColumnType, IntWidth, Value};

use super::compile::{last_name, table_name};
use super::expr::like;
use super::meta::{Kind, expr_column};
use super::{Column, Output, SqlError};

fn text(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

fn text_columns(names: &[&str]) -> Vec<Column> {
    names.iter().map(|n| expr_column(n, Kind::Text)).collect()
}

/// Runs a SHOW statement; `None` if `stmt` is not one.
pub(crate) fn run(
    stmt: &Statement,
    catalog: &Catalog,
    db: Option<&str>,
    vars: &BTreeMap<String, Value>,
) -> Option<Result<Output, SqlError>> {
    Some(match stmt {
        Statement::ShowDatabases { show_options, .. } => {
            let pattern = filter_pattern(show_options.filter_position.as_ref());
            let rows = catalog
                .databases()
                .map(|d| d.name.clone())
                .chain(["information_schema".to_string()])
                .filter(|n| matches(pattern.as_deref(), n))
                .map(|n| vec![text(&n)])
                .collect();
            Ok(Output::Rows {
                columns: text_columns(&["Database"]),
                rows,
            })
        }
        Statement::ShowTables {
            show_options, full, ..
        } => show_tables(catalog, db, show_options, *full),
        Statement::ShowVariables { filter, .. } => Ok(show_variables(vars, filter.as_ref())),
        Statement::ShowVariable { variable } if is_warnings(variable) => Ok(Output::Rows {
            columns: vec![
                expr_column("Level", Kind::Text),
                expr_column("Code", Kind::UInt),
                expr_column("Message", Kind::Text),
            ],
            rows: Vec::new(),
        }),
        Statement::ShowCreate { obj_type, obj_name } if obj_type.to_string() == "TABLE" => {
            table_name(obj_name, db)
                .and_then(|(d, t)| Ok(catalog.table(&d, &t)?))
                .map(|t| Output::Rows {
                    columns: text_columns(&["Table", "Create Table"]),
                    rows: vec![vec![text(&t.name), text(&create_table(&t))]],
                })
        }
        _ => return None,
    })
}

fn is_warnings(v: &[sqlparser::ast::Ident]) -> bool {
    matches!(v, [w] if w.value.eq_ignore_ascii_case("warnings") || w.value.eq_ignore_ascii_case("errors"))
}

fn filter_pattern(f: Option<&sqlparser::ast::ShowStatementFilterPosition>) -> Option<String> {
    use sqlparser::ast::ShowStatementFilterPosition as P;
    match f {
        Some(P::Infix(ShowStatementFilter::Like(p)) | P::Suffix(ShowStatementFilter::Like(p))) => {
            Some(p.clone())
        }
        _ => None,
    }
}

fn matches(pattern: Option<&str>, name: &str) -> bool {
    pattern.is_none_or(|p| like(name.as_bytes(), p.as_bytes(), Collation::Utf8mb4GeneralCi))
}

fn show_tables(
    catalog: &Catalog,
    db: Option<&str>,
    opts: &sqlparser::ast::ShowStatementOptions,
    full: bool,
) -> Result<Output, SqlError> {
    let db = match &opts.show_in {
        Some(ShowStatementIn {
            parent_name: Some(n),
            ..
        }) => last_name(n)?,
        _ => db.ok_or_else(SqlError::no_database)?.to_string(),
    };
    let d = catalog.database(&db)?;
    let pattern = filter_pattern(opts.filter_position.as_ref());
    let header = format!("Tables_in_{}", d.name);
    let mut names = vec![header.as_str()];
    if full {
        names.push("Table_type");
    }
    let rows = catalog
        .tables_in(d.id)
        .filter(|t| matches(pattern.as_deref(), &t.name))
        .map(|t| {
            let mut row = vec![text(&t.name)];
            if full {
                row.push(text("BASE TABLE"));
            }
            row
        })
        .collect();
    Ok(Output::Rows {
        columns: text_columns(&names),
        rows,
    })
}

fn show_variables(vars: &BTreeMap<String, Value>, filter: Option<&ShowStatementFilter>) -> Output {
    let pattern = match filter {
        Some(ShowStatementFilter::Like(p)) => Some(p.as_str()),
        _ => None,
    };
    let rows = vars
        .iter()
        .filter(|(k, _)| matches(pattern, k))
        .map(|(k, v)| vec![text(k), text(&v.to_string())])
        .collect();
    Output::Rows {
        columns: text_columns(&["Variable_name", "Value"]),
        rows,
    }
}

/// A type as CREATE TABLE spells it.
fn type_sql(ty: &ColumnType) -> String {
    let coll = |c: &Collation| match c {
        Collation::Utf8mb4Bin => " COLLATE utf8mb4_bin",
        _ => "",
    };
    match ty {
        ColumnType::Int { width, unsigned } => {
            let name = match width {
                IntWidth::Tiny => "tinyint",
                IntWidth::Small => "smallint",
                IntWidth::Medium => "mediumint",
                IntWidth::Int => "int",
                IntWidth::Big => "bigint",
            };
            format!("{name}{}", if *unsigned { " unsigned" } else { "" })
        }
        ColumnType::Boolean => "tinyint(1)".into(),
        ColumnType::Double => "double".into(),
        ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
        ColumnType::Char {
            max_chars,
            collation,
        } => format!("char({max_chars}){}", coll(collation)),
        ColumnType::VarChar {
            max_chars,
            collation,
        } => format!("varchar({max_chars}){}", coll(collation)),
        ColumnType::Text {
            max_bytes,
            collation,
        } => {
            let name = match max_bytes {
                255 => "tinytext",
                65_535 => "text",
                16_777_215 => "mediumtext",
                _ => "longtext",
            };
            format!("{name}{}", coll(collation))
        }
        ColumnType::Blob { max_bytes } => match *max_bytes {
            255 => "tinyblob".into(),
            65_535 => "blob".into(),
            16_777_215 => "mediumblob".into(),
            u32::MAX => "longblob".into(),
            n => format!("varbinary({n})"),
        },
        ColumnType::Date => "date".into(),
        ColumnType::DateTime => "datetime".into(),
        ColumnType::Timestamp => "timestamp".into(),
    }
}

/// SHOW CREATE TABLE's text.
pub(crate) fn create_table(t: &TableDef) -> String {
    let mut lines = Vec::new();
    for c in &t.columns {
        let mut line = format!("  `{}` {}", c.name, type_sql(&c.ty));
        if !c.nullable {
            line.push_str(" NOT NULL");
        }
        if c.auto_increment {
            line.push_str(" AUTO_INCREMENT");
        } else if let Some(d) = &c.default {
            line.push_str(&format!(" DEFAULT '{}'", d.to_string().replace('\'', "''")));
        } else if c.nullable {
            line.push_str(" DEFAULT NULL");
        }
        lines.push(line);
    }
    let cols = |idx: &[usize]| {
        idx.iter()
            .map(|&i| format!("`{}`", t.columns[i].name))
            .collect::<Vec<_>>()
            .join(",")
    };
    if !t.has_hidden_key() {
        lines.push(format!("  PRIMARY KEY ({})", cols(&t.primary.columns)));
    }
    for i in &t.secondary {
        let kind = if i.unique { "UNIQUE KEY" } else { "KEY" };
        lines.push(format!("  {kind} `{}` ({})", i.name, cols(&i.columns)));
    }
    format!(
        "CREATE TABLE `{}` (\n{}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
        t.name,
        lines.join(",\n")
    )
}

/// COM_FIELD_LIST: the table's columns.
pub(crate) fn field_list(
    catalog: &Catalog,
    db: &str,
    table: &str,
) -> Result<Vec<Column>, SqlError> {
    let t = catalog.table(db, table)?;
    Ok((0..t.columns.len())
        .map(|i| super::meta::table_column(db, &t, i, &t.columns[i].name))
        .collect())
}
