//! SHOW DATABASES / TABLES / VARIABLES / WARNINGS / CREATE TABLE /
//! COLUMNS / INDEX / TABLE STATUS / ENGINES / PROCESSLIST / STATUS,
//! DESCRIBE, and the columns COM_FIELD_LIST describes — with MySQL 8's
//! column names and value formats.
//!
//! sqlparser reads SHOW INDEX, SHOW TABLE STATUS and SHOW ENGINES as a
//! list of words (dropping a LIKE's pattern), so those are recognised in
//! the statement's text ([`run_text`]).

use std::collections::BTreeMap;

use sqlparser::ast::{ShowStatementFilter, ShowStatementIn, Statement};

use crate::catalog::{Catalog, TableDef};
use crate::types::{Collation, ColumnType, IntWidth, Value};

use super::compile::{last_name, table_name};
use super::expr::like;
use super::information_schema;
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
    if let Some(e) = where_filter(stmt) {
        return Some(Err(e));
    }
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
        Statement::ShowColumns {
            full, show_options, ..
        } => show_columns(catalog, db, show_options, *full),
        Statement::ExplainTable {
            table_name: name, ..
        } => table_name(name, db)
            .and_then(|(d, t)| Ok(catalog.table(&d, &t)?))
            .map(|t| columns_output(&t, false, None)),
        _ => return None,
    })
}

/// 1235 for `SHOW … WHERE` (only LIKE filters are built): answering
/// every row instead would be a wrong answer.
pub(crate) fn where_filter(stmt: &Statement) -> Option<SqlError> {
    use sqlparser::ast::ShowStatementFilterPosition as P;
    let filter = match stmt {
        Statement::ShowDatabases { show_options, .. }
        | Statement::ShowTables { show_options, .. }
        | Statement::ShowColumns { show_options, .. } => match &show_options.filter_position {
            Some(P::Infix(f) | P::Suffix(f)) => Some(f),
            None => None,
        },
        Statement::ShowVariables { filter, .. } | Statement::ShowStatus { filter, .. } => {
            filter.as_ref()
        }
        _ => None,
    };
    match filter {
        None | Some(ShowStatementFilter::Like(_)) => None,
        Some(other) => Some(SqlError::unsupported(format!("SHOW … {other}"))),
    }
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
    let pattern = filter_pattern(opts.filter_position.as_ref());
    let (db, tables): (String, Vec<(String, &str)>) =
        match db.eq_ignore_ascii_case(information_schema::NAME) {
            true => (
                information_schema::NAME.into(),
                information_schema::table_names()
                    .map(|n| (n.to_string(), "SYSTEM VIEW"))
                    .collect(),
            ),
            false => {
                let d = catalog.database(&db)?;
                let names = catalog
                    .tables_in(d.id)
                    .map(|t| (t.name.clone(), "BASE TABLE"));
                (d.name.clone(), names.collect())
            }
        };
    let header = format!("Tables_in_{db}");
    let mut names = vec![header.as_str()];
    if full {
        names.push("Table_type");
    }
    let rows = tables
        .into_iter()
        .filter(|(name, _)| matches(pattern.as_deref(), name))
        .map(|(name, kind)| {
            let mut row = vec![text(&name)];
            if full {
                row.push(text(kind));
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
    // A boolean variable shows ON / OFF, as MySQL's SHOW VARIABLES (its
    // value, `@@autocommit`, is still 1 / 0).
    let shown = |k: &str, v: &Value| match v {
        Value::Int(n) if super::vars::is_boolean(k) => {
            (if *n == 0 { "OFF" } else { "ON" }).to_string()
        }
        v => v.to_string(),
    };
    name_values(vars.iter().map(|(k, v)| (k.as_str(), shown(k, v))), filter)
}

/// Variable_name, Value rows (SHOW VARIABLES, SHOW STATUS), LIKE-filtered.
fn name_values<'a>(
    pairs: impl Iterator<Item = (&'a str, String)>,
    filter: Option<&ShowStatementFilter>,
) -> Output {
    let pattern = match filter {
        Some(ShowStatementFilter::Like(p)) => Some(p.as_str()),
        _ => None,
    };
    let rows = pairs
        .filter(|(k, _)| matches(pattern, k))
        .map(|(k, v)| vec![text(k), text(&v)])
        .collect();
    Output::Rows {
        columns: text_columns(&["Variable_name", "Value"]),
        rows,
    }
}

/// A type as CREATE TABLE spells it.
fn type_sql(ty: &ColumnType) -> String {
    let coll = match ty.collation() {
        Collation::Utf8mb4Bin if is_text(ty) => " COLLATE utf8mb4_bin",
        _ => "",
    };
    format!("{}{coll}", type_name(ty))
}

fn is_text(ty: &ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::Char { .. } | ColumnType::VarChar { .. } | ColumnType::Text { .. }
    )
}

/// A type as SHOW COLUMNS and information_schema's COLUMN_TYPE spell it.
pub(crate) fn type_name(ty: &ColumnType) -> String {
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
        ColumnType::Char { max_chars, .. } => format!("char({max_chars})"),
        ColumnType::VarChar { max_chars, .. } => format!("varchar({max_chars})"),
        ColumnType::Text { max_bytes, .. } => match max_bytes {
            255 => "tinytext",
            65_535 => "text",
            16_777_215 => "mediumtext",
            _ => "longtext",
        }
        .into(),
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

/// SHOW CREATE TABLE (its table's next auto-increment value is the
/// engine's, so the session answers it with [`create_table`]).
pub(crate) fn show_create_table(t: &TableDef, next_auto_inc: Option<u64>) -> Output {
    Output::Rows {
        columns: text_columns(&["Table", "Create Table"]),
        rows: vec![vec![text(&t.name), text(&create_table(t, next_auto_inc))]],
    }
}

/// SHOW CREATE TABLE's text; `next_auto_inc` is the value the next
/// insert takes, shown as MySQL does once past 1.
pub(crate) fn create_table(t: &TableDef, next_auto_inc: Option<u64>) -> String {
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
    let auto_inc = match next_auto_inc {
        Some(n) if n > 1 => format!(" AUTO_INCREMENT={n}"),
        _ => String::new(),
    };
    format!(
        "CREATE TABLE `{}` (\n{}\n) ENGINE=InnoDB{auto_inc} DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
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

/// A column's Key in SHOW COLUMNS: PRI (in the primary key), UNI (first
/// column of a one-column unique index), MUL (first column of another
/// index), or empty.
pub(crate) fn column_key(t: &TableDef, i: usize) -> &'static str {
    if t.primary.columns.contains(&i) {
        return "PRI";
    }
    let first = |x: &&crate::catalog::IndexDef| x.columns.first() == Some(&i);
    if t.secondary
        .iter()
        .filter(first)
        .any(|x| x.unique && x.columns.len() == 1)
    {
        return "UNI";
    }
    match t.secondary.iter().any(|x| first(&x)) {
        true => "MUL",
        false => "",
    }
}

/// A column's default as text (`None`: NULL or none).
pub(crate) fn default_text(c: &crate::catalog::ColumnDef) -> Option<String> {
    c.default.as_ref().map(|d| d.to_string())
}

pub(crate) fn extra(c: &crate::catalog::ColumnDef) -> &'static str {
    if c.auto_increment {
        "auto_increment"
    } else {
        ""
    }
}

/// The collation name a string column shows (`None` for other types).
pub(crate) fn collation_name(ty: &ColumnType) -> Option<&'static str> {
    is_text(ty).then(|| ty.collation().name())
}

fn opt_text(v: Option<&str>) -> Value {
    v.map_or(Value::Null, text)
}

fn show_columns(
    catalog: &Catalog,
    db: Option<&str>,
    opts: &sqlparser::ast::ShowStatementOptions,
    full: bool,
) -> Result<Output, SqlError> {
    let Some(name) = opts.show_in.as_ref().and_then(|i| i.parent_name.as_ref()) else {
        return Err(SqlError::syntax("", 1));
    };
    let (d, t) = table_name(name, db)?;
    let t = catalog.table(&d, &t)?;
    let pattern = filter_pattern(opts.filter_position.as_ref());
    Ok(columns_output(&t, full, pattern.as_deref()))
}

/// SHOW [FULL] COLUMNS / DESCRIBE.
fn columns_output(t: &TableDef, full: bool, pattern: Option<&str>) -> Output {
    let names: &[&str] = match full {
        true => &[
            "Field",
            "Type",
            "Collation",
            "Null",
            "Key",
            "Default",
            "Extra",
            "Privileges",
            "Comment",
        ],
        false => &["Field", "Type", "Null", "Key", "Default", "Extra"],
    };
    let rows = t
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| matches(pattern, &c.name))
        .map(|(i, c)| {
            let mut row = vec![text(&c.name), text(&type_name(&c.ty))];
            if full {
                row.push(opt_text(collation_name(&c.ty)));
            }
            row.push(text(if c.nullable { "YES" } else { "NO" }));
            row.push(text(column_key(t, i)));
            row.push(opt_text(default_text(c).as_deref()));
            row.push(text(extra(c)));
            if full {
                row.push(text("select,insert,update,references"));
                row.push(text(""));
            }
            row
        })
        .collect();
    Output::Rows {
        columns: text_columns(names),
        rows,
    }
}

/// Statements sqlparser does not parse whole: SHOW INDEX / INDEXES / KEYS,
/// SHOW TABLE STATUS, SHOW [STORAGE] ENGINES. `None`: not one of them.
pub(crate) fn run_text(
    sql: &str,
    catalog: &Catalog,
    db: Option<&str>,
) -> Option<Result<Output, SqlError>> {
    let words = show_words(sql)?;
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let upper: Vec<String> = w.iter().map(|x| x.to_uppercase()).collect();
    let u: Vec<&str> = upper.iter().map(String::as_str).collect();
    Some(match u.as_slice() {
        ["INDEX" | "INDEXES" | "KEYS", "FROM" | "IN", ..] => {
            show_index(catalog, db, &w[2..], &u[2..])
        }
        ["TABLE", "STATUS", ..] => show_table_status(catalog, db, &w[2..], &u[2..]),
        ["ENGINES"] | ["STORAGE", "ENGINES"] => Ok(show_engines()),
        _ => return None,
    })
}

/// Whether `sql` starts with SHOW (cheap: no parsing, no allocation).
pub(crate) fn is_show(sql: &str) -> bool {
    sql.trim_start()
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("SHOW"))
}

/// The words after SHOW (a quoted string as its text), if `sql` is one
/// SHOW statement.
fn show_words(sql: &str) -> Option<Vec<String>> {
    use sqlparser::dialect::MySqlDialect;
    use sqlparser::tokenizer::{Token, Tokenizer};
    if !is_show(sql) {
        return None;
    }
    let tokens = Tokenizer::new(&MySqlDialect {}, sql).tokenize().ok()?;
    let mut words = Vec::new();
    for t in tokens {
        match t {
            Token::Whitespace(_) | Token::SemiColon => {}
            Token::Word(w) => words.push(w.value),
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => words.push(s),
            Token::Period => words.push(".".into()),
            _ => return None,
        }
    }
    words.remove(0);
    Some(words)
}

/// `t`, `db.t` or `t FROM db` at the start of `w`; the rest.
fn table_words<'a>(
    db: Option<&str>,
    w: &'a [&'a str],
    u: &'a [&'a str],
) -> Result<((String, String), usize), SqlError> {
    match (w, u) {
        ([d, ".", t, ..], _) => Ok(((d.to_string(), t.to_string()), 3)),
        ([t, _, d, ..], [_, "FROM" | "IN", ..]) => Ok(((d.to_string(), t.to_string()), 3)),
        ([t, ..], _) => Ok((
            (
                db.ok_or_else(SqlError::no_database)?.to_string(),
                t.to_string(),
            ),
            1,
        )),
        _ => Err(SqlError::syntax("", 1)),
    }
}

fn show_index(
    catalog: &Catalog,
    db: Option<&str>,
    w: &[&str],
    u: &[&str],
) -> Result<Output, SqlError> {
    let ((d, t), used) = table_words(db, w, u)?;
    if used != w.len() {
        return Err(SqlError::unsupported("SHOW INDEX with WHERE"));
    }
    let t = catalog.table(&d, &t)?;
    let names = [
        "Table",
        "Non_unique",
        "Key_name",
        "Seq_in_index",
        "Column_name",
        "Collation",
        "Cardinality",
        "Sub_part",
        "Packed",
        "Null",
        "Index_type",
        "Comment",
        "Index_comment",
        "Visible",
        "Expression",
    ];
    let mut columns = text_columns(&names);
    for i in [1, 3, 6, 7] {
        columns[i] = expr_column(names[i], Kind::UInt);
    }
    // information_schema.STATISTICS' rows, less the catalog, schema and
    // index schema.
    let rows = information_schema::statistics(&d, &t)
        .into_iter()
        .map(|mut r| {
            r.remove(4);
            r.drain(..2);
            r
        })
        .collect();
    Ok(Output::Rows { columns, rows })
}

/// One column of one index (the primary key first).
pub(crate) struct IndexRow {
    pub name: String,
    pub unique: bool,
    /// From 1.
    pub seq: usize,
    /// The index's number (0: primary, i: secondary i - 1).
    pub index: usize,
    pub column: String,
    pub nullable: bool,
}

pub(crate) fn index_rows(t: &TableDef) -> Vec<IndexRow> {
    let primary = (!t.has_hidden_key()).then_some((0, &t.primary));
    primary
        .into_iter()
        .chain(t.secondary.iter().enumerate().map(|(i, x)| (i + 1, x)))
        .flat_map(|(index, idx)| {
            idx.columns.iter().enumerate().map(move |(n, &c)| IndexRow {
                name: idx.name.clone(),
                unique: idx.unique,
                seq: n + 1,
                index,
                column: t.columns[c].name.clone(),
                nullable: t.columns[c].nullable,
            })
        })
        .collect()
}

fn show_table_status(
    catalog: &Catalog,
    db: Option<&str>,
    w: &[&str],
    u: &[&str],
) -> Result<Output, SqlError> {
    let (db, rest) = match (w, u) {
        ([_, d, ..], ["FROM" | "IN", ..]) => (d.to_string(), &w[2..]),
        _ => (db.ok_or_else(SqlError::no_database)?.to_string(), w),
    };
    let pattern = match rest {
        [] => None,
        [like, p] if like.eq_ignore_ascii_case("LIKE") => Some(*p),
        _ => return Err(SqlError::unsupported("SHOW TABLE STATUS with WHERE")),
    };
    let d = catalog.database(&db)?;
    let names = [
        "Name",
        "Engine",
        "Version",
        "Row_format",
        "Rows",
        "Avg_row_length",
        "Data_length",
        "Max_data_length",
        "Index_length",
        "Data_free",
        "Auto_increment",
        "Create_time",
        "Update_time",
        "Check_time",
        "Collation",
        "Checksum",
        "Create_options",
        "Comment",
    ];
    let mut columns = text_columns(&names);
    for i in [2, 4, 5, 6, 7, 8, 9, 10, 15] {
        columns[i] = expr_column(names[i], Kind::UInt);
    }
    let rows = catalog
        .tables_in(d.id)
        .filter(|t| matches(pattern, &t.name))
        .map(|t| {
            // information_schema.TABLES' row from TABLE_NAME on, less
            // TABLE_TYPE.
            let mut row = information_schema::table_row(&d.name, &t.name, "BASE TABLE");
            row.drain(..2);
            row.remove(1);
            row
        })
        .collect();
    Ok(Output::Rows { columns, rows })
}

fn show_engines() -> Output {
    let row = [
        "InnoDB",
        "DEFAULT",
        "Strata's engine: pages over a shared log",
        "YES",
        "YES",
        "YES",
    ];
    Output::Rows {
        columns: text_columns(&[
            "Engine",
            "Support",
            "Comment",
            "Transactions",
            "XA",
            "Savepoints",
        ]),
        rows: vec![row.iter().map(|s| text(s)).collect()],
    }
}

/// SHOW [FULL] PROCESSLIST.
pub(crate) fn processlist(p: &super::Processes, full: bool) -> Output {
    let mut columns = text_columns(&[
        "Id", "User", "Host", "db", "Command", "Time", "State", "Info",
    ]);
    columns[0] = expr_column("Id", Kind::UInt);
    columns[5] = expr_column("Time", Kind::Int);
    Output::Rows {
        columns,
        rows: p.rows(full),
    }
}

/// SHOW [GLOBAL | SESSION] STATUS [LIKE].
pub(crate) fn status(p: &super::Processes, filter: Option<&ShowStatementFilter>) -> Output {
    name_values(
        p.status().into_iter().map(|(k, v)| (k, v.to_string())),
        filter,
    )
}
