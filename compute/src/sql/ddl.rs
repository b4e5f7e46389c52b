//! CREATE/DROP DATABASE, TABLE and INDEX: sqlparser's definitions into the
//! engine's specs (MySQL type names into [`ColumnType`]s, inline and table
//! constraints into the primary key and indexes).
//!
//! Table options (ENGINE=, CHARSET=, COLLATE=) are accepted and ignored:
//! every table is the engine's, every string utf8mb4.

use std::collections::HashMap;

use sqlparser::ast::{
    self, CharacterLength, ColumnOption, DataType, ExactNumberInfo, ObjectName, ObjectType,
    Statement, TableConstraint,
};

use crate::engine::{ColumnSpec, Engine, IndexSpec, TableSpec};
use crate::types::{Collation, ColumnType, IntWidth, Value};

use super::compile::{ExprCompiler, Params, last_name, table_name};
use super::expr::{Ctx, Env, Expr};
use super::{Output, SqlError};

pub(super) fn ok() -> Output {
    Output::Ok {
        affected_rows: 0,
        last_insert_id: 0,
        warnings: 0,
        info: String::new(),
    }
}

/// Runs a DDL statement (the session has committed its transaction).
/// `None` if the statement is not DDL.
pub(crate) async fn run(
    engine: &Engine,
    stmt: &Statement,
    db: Option<&str>,
) -> Option<Result<Output, SqlError>> {
    Some(match stmt {
        Statement::CreateDatabase {
            db_name,
            if_not_exists,
            ..
        } => create_database(engine, db_name, *if_not_exists).await,
        Statement::CreateTable(c) => create_table(engine, c, db).await,
        Statement::CreateIndex(c) => create_index(engine, c, db).await,
        Statement::Drop {
            object_type,
            if_exists,
            names,
            table,
            ..
        } => drop(engine, *object_type, *if_exists, names, table.as_ref(), db).await,
        other => return super::alter::run(engine, other, db).await,
    })
}

/// Whether a statement is DDL (commits the open transaction first).
pub(crate) fn is_ddl(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::CreateDatabase { .. }
            | Statement::CreateTable(_)
            | Statement::CreateIndex(_)
            | Statement::Drop { .. }
    ) || super::alter::is_alter(stmt)
}

async fn create_database(
    engine: &Engine,
    name: &ObjectName,
    if_not_exists: bool,
) -> Result<Output, SqlError> {
    let name = last_name(name)?;
    let created = engine.create_database(&name, if_not_exists).await?;
    Ok(affected(u64::from(created)))
}

fn affected(n: u64) -> Output {
    Output::Ok {
        affected_rows: n,
        last_insert_id: 0,
        warnings: 0,
        info: String::new(),
    }
}

async fn drop(
    engine: &Engine,
    kind: ObjectType,
    if_exists: bool,
    names: &[ObjectName],
    table: Option<&ObjectName>,
    db: Option<&str>,
) -> Result<Output, SqlError> {
    match kind {
        ObjectType::Database | ObjectType::Schema => {
            let mut n = 0;
            for name in names {
                let name = last_name(name)?;
                let before = count_tables(engine, &name);
                match engine.drop_database(&name, if_exists).await {
                    Ok(true) => n += before,
                    Ok(false) => {}
                    Err(crate::EngineError::UnknownDatabase(_)) => {
                        return Err(SqlError::new(
                            1008,
                            "HY000",
                            format!("Can't drop database '{name}'; database doesn't exist"),
                        ));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(affected(n))
        }
        ObjectType::Table => {
            for name in names {
                let (d, t) = table_name(name, db)?;
                if !if_exists && !engine.catalog().has_database(&d) {
                    return Err(crate::EngineError::UnknownTable { db: d, table: t }.into());
                }
                match engine.drop_table(&d, &t, if_exists).await {
                    Err(crate::EngineError::UnknownDatabase(_)) if if_exists => {}
                    other => drop_result(other)?,
                }
            }
            Ok(ok())
        }
        ObjectType::Index => {
            let Some(table) = table else {
                return Err(SqlError::unsupported("DROP INDEX without ON table"));
            };
            let (d, t) = table_name(table, db)?;
            for name in names {
                engine.drop_index(&d, &t, &last_name(name)?).await?;
            }
            Ok(ok())
        }
        other => Err(SqlError::unsupported(format!("DROP {other}"))),
    }
}

fn drop_result(r: crate::Result<bool>) -> Result<(), SqlError> {
    match r {
        Ok(_) => Ok(()),
        Err(crate::EngineError::UnknownTable { db, table }) => Err(SqlError::new(
            1051,
            "42S02",
            format!("Unknown table '{db}.{table}'"),
        )),
        Err(e) => Err(e.into()),
    }
}

fn count_tables(engine: &Engine, db: &str) -> u64 {
    let cat = engine.catalog();
    cat.database(db)
        .map(|d| cat.tables_in(d.id).count() as u64)
        .unwrap_or(0)
}

async fn create_index(
    engine: &Engine,
    c: &ast::CreateIndex,
    db: Option<&str>,
) -> Result<Output, SqlError> {
    let (d, t) = table_name(&c.table_name, db)?;
    let columns = index_columns(&c.columns)?;
    let name = match &c.name {
        Some(n) => last_name(n)?,
        None => columns.first().cloned().unwrap_or_default(),
    };
    let spec = IndexSpec {
        name,
        columns,
        unique: c.unique,
    };
    engine.create_index(&d, &t, spec).await?;
    Ok(ok())
}

fn index_columns(cols: &[ast::IndexColumn]) -> Result<Vec<String>, SqlError> {
    cols.iter()
        .map(|c| match &c.column.expr {
            ast::Expr::Identifier(id) => Ok(id.value.clone()),
            other => Err(SqlError::unsupported(format!("index on {other}"))),
        })
        .collect()
}

async fn create_table(
    engine: &Engine,
    c: &ast::CreateTable,
    db: Option<&str>,
) -> Result<Output, SqlError> {
    if c.query.is_some() || c.like.is_some() || c.temporary {
        return Err(SqlError::unsupported(
            "CREATE TABLE … SELECT, LIKE or TEMPORARY",
        ));
    }
    let (d, name) = table_name(&c.name, db)?;
    let spec = table_spec(c, name)?;
    engine.create_table(&d, spec, c.if_not_exists).await?;
    Ok(ok())
}

/// The engine's spec of a CREATE TABLE.
fn table_spec(c: &ast::CreateTable, name: String) -> Result<TableSpec, SqlError> {
    let mut spec = TableSpec {
        name,
        columns: Vec::new(),
        primary_key: Vec::new(),
        indexes: Vec::new(),
        auto_increment: auto_increment_option(&c.table_options)?,
    };
    for col in &c.columns {
        column(col, &mut spec)?;
    }
    for con in &c.constraints {
        constraint(con, &mut spec)?;
    }
    name_indexes(&mut spec.indexes);
    Ok(spec)
}

/// The table option `AUTO_INCREMENT=n` (0 when absent), as SHOW CREATE
/// TABLE and mysqldump write it.
fn auto_increment_option(options: &ast::CreateTableOptions) -> Result<u64, SqlError> {
    use ast::{CreateTableOptions as O, SqlOption};
    let list = match options {
        O::None => return Ok(0),
        O::With(l) | O::Options(l) | O::Plain(l) | O::TableProperties(l) => l,
    };
    let mut start = 0;
    for opt in list {
        if let SqlOption::KeyValue { key, value } = opt
            && key.value.eq_ignore_ascii_case("AUTO_INCREMENT")
        {
            start = auto_increment_value(value)?;
        }
    }
    Ok(start)
}

/// The `n` of `AUTO_INCREMENT [=] n` (CREATE and ALTER TABLE).
pub(super) fn auto_increment_value(value: &dyn std::fmt::Display) -> Result<u64, SqlError> {
    value.to_string().parse::<u64>().map_err(|_| {
        SqlError::new(
            1064,
            "42000",
            format!("You have an error in your SQL syntax near 'AUTO_INCREMENT = {value}'"),
        )
    })
}

/// Unnamed indexes take their first column's name (`k`, `k_2`, …).
fn name_indexes(indexes: &mut [IndexSpec]) {
    let mut used: HashMap<String, usize> = HashMap::new();
    for i in indexes.iter() {
        if !i.name.is_empty() {
            used.insert(i.name.to_lowercase(), 1);
        }
    }
    for i in indexes.iter_mut().filter(|i| i.name.is_empty()) {
        let base = i.columns.first().cloned().unwrap_or_else(|| "key".into());
        let mut name = base.clone();
        let mut n = 1;
        while used.contains_key(&name.to_lowercase()) {
            n += 1;
            name = format!("{base}_{n}");
        }
        used.insert(name.to_lowercase(), 1);
        i.name = name;
    }
}

pub(super) fn column(col: &ast::ColumnDef, spec: &mut TableSpec) -> Result<(), SqlError> {
    let name = col.name.value.clone();
    let mut collation = None;
    let mut out = ColumnSpec {
        name: name.clone(),
        ty: ColumnType::Double,
        nullable: true,
        default: None,
        auto_increment: false,
    };
    for opt in &col.options {
        match &opt.option {
            ColumnOption::Null => out.nullable = true,
            ColumnOption::NotNull => out.nullable = false,
            ColumnOption::Default(e) => out.default = Some(default_value(e)?),
            ColumnOption::PrimaryKey(_) => spec.primary_key = vec![name.clone()],
            ColumnOption::Unique(_) => spec.indexes.push(IndexSpec {
                name: String::new(),
                columns: vec![name.clone()],
                unique: true,
            }),
            ColumnOption::DialectSpecific(tokens) => {
                let text = tokens.iter().map(|t| t.to_string()).collect::<String>();
                if text.eq_ignore_ascii_case("AUTO_INCREMENT") {
                    out.auto_increment = true;
                } else {
                    return Err(SqlError::unsupported(text));
                }
            }
            ColumnOption::CharacterSet(cs) => charset(cs)?,
            ColumnOption::Collation(c) => collation = Some(collation_named(&last_name(c)?)?),
            ColumnOption::Comment(_) => {}
            other => return Err(SqlError::unsupported(other)),
        }
    }
    out.ty = column_type(&col.data_type, collation)?;
    spec.columns.push(out);
    Ok(())
}

fn charset(cs: &ObjectName) -> Result<(), SqlError> {
    match last_name(cs)?.to_lowercase().as_str() {
        "utf8mb4" | "utf8" | "utf8mb3" | "binary" => Ok(()),
        other => Err(SqlError::new(
            1115,
            "42000",
            format!("Unknown character set: '{other}'"),
        )),
    }
}

pub(crate) fn collation_named(name: &str) -> Result<Collation, SqlError> {
    match name.to_lowercase().as_str() {
        "utf8mb4_general_ci" | "utf8_general_ci" | "utf8mb3_general_ci" | "utf8mb4_0900_ai_ci"
        | "utf8mb4_unicode_ci" => Ok(Collation::Utf8mb4GeneralCi),
        "utf8mb4_bin" | "utf8_bin" | "utf8mb3_bin" => Ok(Collation::Utf8mb4Bin),
        "binary" => Ok(Collation::Binary),
        other => Err(SqlError::new(
            1273,
            "HY000",
            format!("Unknown collation: '{other}'"),
        )),
    }
}

/// A DEFAULT: a literal (possibly negated) or NULL.
pub(super) fn default_value(e: &ast::Expr) -> Result<Value, SqlError> {
    let mut params = Params::default();
    let mut cx = ExprCompiler {
        table: None,
        alias: None,
        clause: "field list",
        params: &mut params,
        aggs: None,
        names: None,
    };
    let expr = cx.expr(e)?;
    let mut literal = true;
    expr.walk(&mut |x| {
        if !matches!(x, Expr::Lit(_) | Expr::Neg(_)) {
            literal = false;
        }
    });
    if !literal {
        return Err(SqlError::unsupported(format!("DEFAULT {e}")));
    }
    let vars = HashMap::new();
    let sys_vars = std::collections::BTreeMap::new();
    let env = Env {
        params: &[],
        db: None,
        connection_id: 0,
        last_insert_id: 0,
        sys_vars: &sys_vars,
        user_vars: &vars,
        stmt: &super::expr::StmtEnv::starting(0, 0),
        catalog: None,
    };
    expr.eval(&Ctx {
        env: &env,
        row: &[],
        aggs: &[],
    })
}

pub(super) fn constraint(con: &TableConstraint, spec: &mut TableSpec) -> Result<(), SqlError> {
    match con {
        TableConstraint::PrimaryKey(pk) => spec.primary_key = index_columns(&pk.columns)?,
        TableConstraint::Unique(u) => spec.indexes.push(IndexSpec {
            name: u
                .index_name
                .as_ref()
                .or(u.name.as_ref())
                .map(|n| n.value.clone())
                .unwrap_or_default(),
            columns: index_columns(&u.columns)?,
            unique: true,
        }),
        TableConstraint::Index(i) => spec.indexes.push(IndexSpec {
            name: i.name.as_ref().map(|n| n.value.clone()).unwrap_or_default(),
            columns: index_columns(&i.columns)?,
            unique: false,
        }),
        other => return Err(SqlError::unsupported(other)),
    }
    Ok(())
}

fn length(l: &Option<CharacterLength>, default: u32) -> Result<u32, SqlError> {
    match l {
        None => Ok(default),
        Some(CharacterLength::IntegerLength { length, .. }) => u32::try_from(*length)
            .map_err(|_| SqlError::new(1074, "42000", "Column length too big")),
        Some(CharacterLength::Max) => Err(SqlError::unsupported("MAX length")),
    }
}

fn int(width: IntWidth, unsigned: bool) -> ColumnType {
    ColumnType::Int { width, unsigned }
}

/// A MySQL type name as a column type.
pub(crate) fn column_type(t: &DataType, coll: Option<Collation>) -> Result<ColumnType, SqlError> {
    use DataType as D;
    let collation = coll.unwrap_or_default();
    Ok(match t {
        D::TinyInt(Some(1)) => ColumnType::Boolean,
        D::Bool | D::Boolean => ColumnType::Boolean,
        D::TinyInt(_) => int(IntWidth::Tiny, false),
        D::TinyIntUnsigned(_) => int(IntWidth::Tiny, true),
        D::SmallInt(_) => int(IntWidth::Small, false),
        D::SmallIntUnsigned(_) => int(IntWidth::Small, true),
        D::MediumInt(_) => int(IntWidth::Medium, false),
        D::MediumIntUnsigned(_) => int(IntWidth::Medium, true),
        D::Int(_) | D::Integer(_) => int(IntWidth::Int, false),
        D::IntUnsigned(_) | D::IntegerUnsigned(_) => int(IntWidth::Int, true),
        D::BigInt(_) => int(IntWidth::Big, false),
        D::BigIntUnsigned(_) => int(IntWidth::Big, true),
        D::Double(_) | D::DoublePrecision | D::Real | D::Float(_) | D::Float4 | D::Float8 => {
            ColumnType::Double
        }
        D::DoubleUnsigned(_)
        | D::DoublePrecisionUnsigned
        | D::RealUnsigned
        | D::FloatUnsigned(_) => ColumnType::Double,
        D::Decimal(info)
        | D::DecimalUnsigned(info)
        | D::Numeric(info)
        | D::Dec(info)
        | D::DecUnsigned(info) => decimal(info)?,
        D::Char(l) | D::Character(l) => ColumnType::Char {
            max_chars: length(l, 1)?,
            collation,
        },
        D::Varchar(l) | D::CharVarying(l) | D::CharacterVarying(l) | D::Nvarchar(l) => {
            if l.is_none() {
                return Err(SqlError::syntax("VARCHAR without a length", 1));
            }
            ColumnType::VarChar {
                max_chars: length(l, 0)?,
                collation,
            }
        }
        D::Text => text(65_535, collation),
        D::TinyText => text(255, collation),
        D::MediumText => text(16_777_215, collation),
        D::LongText => text(u32::MAX, collation),
        D::Blob(_) => ColumnType::Blob { max_bytes: 65_535 },
        D::TinyBlob => ColumnType::Blob { max_bytes: 255 },
        D::MediumBlob => ColumnType::Blob {
            max_bytes: 16_777_215,
        },
        D::LongBlob => ColumnType::Blob {
            max_bytes: u32::MAX,
        },
        D::Binary(n) => ColumnType::Blob {
            max_bytes: n.map_or(Ok(1), u32::try_from).unwrap_or(u32::MAX),
        },
        D::Varbinary(n) => ColumnType::Blob {
            max_bytes: match n {
                Some(ast::BinaryLength::IntegerLength { length }) => {
                    u32::try_from(*length).unwrap_or(u32::MAX)
                }
                _ => 65_535,
            },
        },
        D::Date => ColumnType::Date,
        D::Datetime(_) => ColumnType::DateTime,
        D::Timestamp(..) => ColumnType::Timestamp,
        other => return Err(SqlError::unsupported(format!("type {other}"))),
    })
}

fn text(max_bytes: u32, collation: Collation) -> ColumnType {
    ColumnType::Text {
        max_bytes,
        collation,
    }
}

fn decimal(info: &ExactNumberInfo) -> Result<ColumnType, SqlError> {
    let (p, s) = match info {
        ExactNumberInfo::None => (10, 0),
        ExactNumberInfo::Precision(p) => (*p, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => (*p, u64::try_from(*s).unwrap_or(u64::MAX)),
    };
    if p == 0 || p > 38 {
        return Err(SqlError::new(
            1426,
            "42000",
            format!("Too big precision {p} specified. Maximum is 38."),
        ));
    }
    if s > 30 || s > p {
        return Err(SqlError::new(
            1425,
            "42000",
            format!("Too big scale {s} specified. Maximum is 30."),
        ));
    }
    Ok(ColumnType::Decimal {
        precision: p as u8,
        scale: s as u8,
    })
}
