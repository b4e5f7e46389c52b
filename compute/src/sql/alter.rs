//! ALTER TABLE, RENAME TABLE and TRUNCATE TABLE: the statement's actions
//! applied, in order, to a draft of the table, which becomes the engine's
//! [`TableChange`] (the engine decides between in place and a rebuild).
//!
//! Draft columns carry a stable id (an old column's id is its old
//! position), so indexes follow their columns through renames, moves and
//! drops. Errors are MySQL's: 1060 duplicate column, 1054 unknown column,
//! 1091 nothing to drop, 1061 duplicate key name, 1068 a second primary
//! key, 1072 an index on a column that does not exist, 1090 dropping every
//! column. A failing action changes nothing.

use sqlparser::ast::{
    self, AlterColumnOperation, AlterTableOperation, MySQLColumnPosition, ObjectName,
    RenameTableNameKind, Statement,
};

use crate::catalog::{ColumnDef, TableDef};
use crate::engine::{ColumnChange, ColumnSpec, Engine, IndexChange, IndexSpec, TableChange};
use crate::error::EngineError;
use crate::types::Value;

use super::compile::table_name;
use super::ddl::{column, constraint, default_value, ok};
use super::{Output, SqlError};

fn done() -> Output {
    Output::Ok {
        affected_rows: 0,
        last_insert_id: 0,
        warnings: 0,
        info: "Records: 0  Duplicates: 0  Warnings: 0".into(),
    }
}

/// Runs ALTER TABLE, RENAME TABLE or TRUNCATE; `None` for anything else.
pub(crate) async fn run(
    engine: &Engine,
    stmt: &Statement,
    db: Option<&str>,
) -> Option<Result<Output, SqlError>> {
    Some(match stmt {
        Statement::AlterTable(a) => alter(engine, a, db).await,
        Statement::RenameTable(pairs) => rename(engine, pairs, db).await,
        Statement::Truncate(t) => truncate(engine, t, db).await,
        _ => return None,
    })
}

pub(crate) fn is_alter(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::AlterTable(_) | Statement::RenameTable(_) | Statement::Truncate(_)
    )
}

async fn truncate(
    engine: &Engine,
    t: &ast::Truncate,
    db: Option<&str>,
) -> Result<Output, SqlError> {
    for target in &t.table_names {
        let (d, name) = table_name(&target.name, db)?;
        engine.truncate_table(&d, &name).await?;
    }
    Ok(ok())
}

async fn rename(
    engine: &Engine,
    pairs: &[ast::RenameTable],
    db: Option<&str>,
) -> Result<Output, SqlError> {
    let mut resolved = Vec::with_capacity(pairs.len());
    for p in pairs {
        resolved.push((table_name(&p.old_name, db)?, table_name(&p.new_name, db)?));
    }
    engine.rename_tables(&resolved).await?;
    Ok(ok())
}

async fn alter(engine: &Engine, a: &ast::AlterTable, db: Option<&str>) -> Result<Output, SqlError> {
    let (d, name) = table_name(&a.name, db)?;
    let mut rename_to = None;
    let mut auto_increment = None;
    let mut shape_ops = Vec::new();
    for op in &a.operations {
        match op {
            AlterTableOperation::RenameTable { table_name: kind } => {
                let (RenameTableNameKind::To(n) | RenameTableNameKind::As(n)) = kind;
                rename_to = Some(target_name(n, &d)?);
            }
            AlterTableOperation::AutoIncrement { value, .. } => {
                auto_increment = Some(super::ddl::auto_increment_value(value)?);
            }
            other => shape_ops.push(other),
        }
    }
    if !shape_ops.is_empty() {
        engine
            .alter_table(&d, &name, |t| {
                let mut draft = Draft::of(t);
                for op in &shape_ops {
                    draft.apply(op)?;
                }
                draft.finish()
            })
            .await?;
    }
    if let Some(n) = auto_increment {
        engine.raise_auto_increment(&d, &name, n).await?;
    }
    if let Some(to) = rename_to {
        engine.rename_tables(&[((d, name), to)]).await?;
    }
    Ok(done())
}

/// `ALTER TABLE … RENAME TO x` stays in the table's database.
fn target_name(n: &ObjectName, db: &str) -> Result<(String, String), SqlError> {
    table_name(n, Some(db))
}

struct DraftColumn {
    id: usize,
    def: ColumnDef,
    source: Option<usize>,
}

struct DraftIndex {
    name: String,
    /// Column ids.
    columns: Vec<usize>,
    unique: bool,
    existing: Option<usize>,
}

struct Draft {
    table: String,
    columns: Vec<DraftColumn>,
    primary: Vec<usize>,
    indexes: Vec<DraftIndex>,
    next_id: usize,
}

impl Draft {
    fn of(t: &TableDef) -> Draft {
        Draft {
            table: t.name.clone(),
            columns: t
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| DraftColumn {
                    id: i,
                    def: c.clone(),
                    source: Some(i),
                })
                .collect(),
            primary: t.primary.columns.clone(),
            indexes: t
                .secondary
                .iter()
                .enumerate()
                .map(|(n, i)| DraftIndex {
                    name: i.name.clone(),
                    columns: i.columns.clone(),
                    unique: i.unique,
                    existing: Some(n),
                })
                .collect(),
            next_id: t.columns.len(),
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.def.name.eq_ignore_ascii_case(name))
    }

    fn unknown_column(&self, name: &str) -> SqlError {
        SqlError::new(
            1054,
            "42S22",
            format!("Unknown column '{name}' in '{}'", self.table),
        )
    }

    fn apply(&mut self, op: &AlterTableOperation) -> Result<(), SqlError> {
        use AlterTableOperation as Op;
        match op {
            Op::AddColumn {
                if_not_exists,
                column_def,
                column_position,
                ..
            } => {
                if *if_not_exists && self.position(&column_def.name.value).is_some() {
                    return Ok(());
                }
                self.add_column(column_def, column_position.as_ref())
            }
            Op::DropColumn {
                column_names,
                if_exists,
                ..
            } => column_names
                .iter()
                .try_for_each(|c| self.drop_column(&c.value, *if_exists)),
            Op::ModifyColumn {
                col_name,
                data_type,
                options,
                column_position,
            } => self.change_column(
                &col_name.value,
                &col_name.value,
                data_type,
                options,
                column_position.as_ref(),
            ),
            Op::ChangeColumn {
                old_name,
                new_name,
                data_type,
                options,
                column_position,
            } => self.change_column(
                &old_name.value,
                &new_name.value,
                data_type,
                options,
                column_position.as_ref(),
            ),
            Op::RenameColumn {
                old_column_name,
                new_column_name,
            } => self.rename_column(&old_column_name.value, &new_column_name.value),
            Op::AlterColumn { column_name, op } => self.alter_column(&column_name.value, op),
            Op::AddConstraint { constraint: c, .. } => {
                let mut spec = empty_spec();
                constraint(c, &mut spec)?;
                self.add_keys(spec)
            }
            Op::DropIndex { name } => self.drop_index(&name.value),
            Op::DropPrimaryKey { .. } => self.drop_index("PRIMARY"),
            other => Err(SqlError::unsupported(format!("ALTER TABLE … {other}"))),
        }
    }

    fn add_column(
        &mut self,
        col: &ast::ColumnDef,
        at: Option<&MySQLColumnPosition>,
    ) -> Result<(), SqlError> {
        if self.position(&col.name.value).is_some() {
            return Err(duplicate_column(&col.name.value));
        }
        let mut spec = empty_spec();
        column(col, &mut spec)?;
        let def = column_def(spec.columns.remove(0))?;
        let id = self.next_id;
        self.next_id += 1;
        let pos = self.target_position(at, self.columns.len())?;
        self.columns.insert(
            pos,
            DraftColumn {
                id,
                def,
                source: None,
            },
        );
        self.add_keys(spec)
    }

    /// Where FIRST / AFTER c puts a column (`default` without either).
    fn target_position(
        &self,
        at: Option<&MySQLColumnPosition>,
        default: usize,
    ) -> Result<usize, SqlError> {
        match at {
            None => Ok(default),
            Some(MySQLColumnPosition::First) => Ok(0),
            Some(MySQLColumnPosition::After(c)) => self
                .position(&c.value)
                .map(|p| p + 1)
                .ok_or_else(|| self.unknown_column(&c.value)),
        }
    }

    fn drop_column(&mut self, name: &str, if_exists: bool) -> Result<(), SqlError> {
        let Some(pos) = self.position(name) else {
            return match if_exists {
                true => Ok(()),
                false => Err(cant_drop(name)),
            };
        };
        if self.columns.len() == 1 {
            return Err(SqlError::new(
                1090,
                "42000",
                "You can't delete all columns with ALTER TABLE; use DROP TABLE instead",
            ));
        }
        let id = self.columns.remove(pos).id;
        self.primary.retain(|&c| c != id);
        for i in &mut self.indexes {
            if i.columns.contains(&id) {
                i.columns.retain(|&c| c != id);
                i.existing = None;
            }
        }
        self.indexes.retain(|i| !i.columns.is_empty());
        Ok(())
    }

    fn change_column(
        &mut self,
        old: &str,
        new: &str,
        data_type: &ast::DataType,
        options: &[ast::ColumnOption],
        at: Option<&MySQLColumnPosition>,
    ) -> Result<(), SqlError> {
        let pos = self.position(old).ok_or_else(|| self.unknown_column(old))?;
        if !old.eq_ignore_ascii_case(new) && self.position(new).is_some() {
            return Err(duplicate_column(new));
        }
        let col = ast::ColumnDef {
            name: ast::Ident::new(new),
            data_type: data_type.clone(),
            options: options
                .iter()
                .map(|o| ast::ColumnOptionDef {
                    name: None,
                    option: o.clone(),
                })
                .collect(),
        };
        let mut spec = empty_spec();
        column(&col, &mut spec)?;
        let def = column_def(spec.columns.remove(0))?;
        let mut moved = self.columns.remove(pos);
        moved.def = def;
        let pos = self.target_position(at, pos)?;
        self.columns.insert(pos, moved);
        self.add_keys(spec)
    }

    fn rename_column(&mut self, old: &str, new: &str) -> Result<(), SqlError> {
        let pos = self.position(old).ok_or_else(|| self.unknown_column(old))?;
        if !old.eq_ignore_ascii_case(new) && self.position(new).is_some() {
            return Err(duplicate_column(new));
        }
        self.columns[pos].def.name = new.to_string();
        Ok(())
    }

    fn alter_column(&mut self, name: &str, op: &AlterColumnOperation) -> Result<(), SqlError> {
        let pos = self
            .position(name)
            .ok_or_else(|| self.unknown_column(name))?;
        let def = &mut self.columns[pos].def;
        match op {
            AlterColumnOperation::SetDefault { value } => {
                def.default = coerce_default(def, default_value(value)?)?;
            }
            AlterColumnOperation::DropDefault => def.default = None,
            other => return Err(SqlError::unsupported(format!("ALTER COLUMN … {other}"))),
        }
        Ok(())
    }

    /// The primary key and indexes a column or constraint declared.
    fn add_keys(&mut self, spec: crate::engine::TableSpec) -> Result<(), SqlError> {
        if !spec.primary_key.is_empty() {
            if !self.primary.is_empty() {
                return Err(SqlError::new(1068, "42000", "Multiple primary key defined"));
            }
            self.primary = self.key_ids(&spec.primary_key)?;
        }
        for i in spec.indexes {
            let columns = self.key_ids(&i.columns)?;
            let name = match i.name.is_empty() {
                true => self.free_index_name(&i.columns[0]),
                false => i.name,
            };
            if name.eq_ignore_ascii_case("PRIMARY")
                || self
                    .indexes
                    .iter()
                    .any(|x| x.name.eq_ignore_ascii_case(&name))
            {
                return Err(EngineError::IndexExists(name).into());
            }
            self.indexes.push(DraftIndex {
                name,
                columns,
                unique: i.unique,
                existing: None,
            });
        }
        Ok(())
    }

    fn key_ids(&self, names: &[String]) -> Result<Vec<usize>, SqlError> {
        names
            .iter()
            .map(|n| {
                self.position(n).map(|p| self.columns[p].id).ok_or_else(|| {
                    SqlError::new(
                        1072,
                        "42000",
                        format!("Key column '{n}' doesn't exist in table"),
                    )
                })
            })
            .collect()
    }

    /// An unnamed index takes its first column's name (`c`, `c_2`, …).
    fn free_index_name(&self, base: &str) -> String {
        let taken = |n: &str| self.indexes.iter().any(|i| i.name.eq_ignore_ascii_case(n));
        let mut name = base.to_string();
        let mut n = 1;
        while taken(&name) || name.eq_ignore_ascii_case("PRIMARY") {
            n += 1;
            name = format!("{base}_{n}");
        }
        name
    }

    fn drop_index(&mut self, name: &str) -> Result<(), SqlError> {
        if name.eq_ignore_ascii_case("PRIMARY") {
            if self.primary.is_empty() {
                return Err(cant_drop(name));
            }
            self.primary.clear();
            return Ok(());
        }
        let pos = self
            .indexes
            .iter()
            .position(|i| i.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| cant_drop(name))?;
        self.indexes.remove(pos);
        Ok(())
    }

    fn finish(self) -> Result<TableChange, SqlError> {
        let at = |id: usize| {
            self.columns
                .iter()
                .position(|c| c.id == id)
                .expect("drafts drop keys with their columns")
        };
        let auto = self.columns.iter().filter(|c| c.def.auto_increment).count();
        if auto > 1 {
            return Err(SqlError::new(
                1075,
                "42000",
                "Incorrect table definition; there can be only one auto column and it must be \
                 defined as a key",
            ));
        }
        Ok(TableChange {
            primary: self.primary.iter().map(|&id| at(id)).collect(),
            indexes: self
                .indexes
                .iter()
                .map(|i| IndexChange {
                    name: i.name.clone(),
                    columns: i.columns.iter().map(|&id| at(id)).collect(),
                    unique: i.unique,
                    existing: i.existing,
                })
                .collect(),
            columns: self
                .columns
                .into_iter()
                .map(|c| ColumnChange {
                    def: c.def,
                    source: c.source,
                })
                .collect(),
        })
    }
}

fn empty_spec() -> crate::engine::TableSpec {
    crate::engine::TableSpec {
        name: String::new(),
        columns: Vec::new(),
        primary_key: Vec::new(),
        indexes: Vec::<IndexSpec>::new(),
        auto_increment: 0,
    }
}

fn column_def(c: ColumnSpec) -> Result<ColumnDef, SqlError> {
    let mut def = ColumnDef {
        name: c.name,
        ty: c.ty,
        nullable: c.nullable,
        default: None,
        auto_increment: c.auto_increment,
    };
    def.default = match c.default {
        None => None,
        Some(v) => coerce_default(&def, v)?,
    };
    Ok(def)
}

/// A default in its column's type (NULL: none).
fn coerce_default(def: &ColumnDef, v: Value) -> Result<Option<Value>, SqlError> {
    if matches!(v, Value::Null) {
        return Ok(None);
    }
    let v = def.ty.coerce(v).map_err(|_| {
        SqlError::new(
            1067,
            "42000",
            format!("Invalid default value for '{}'", def.name),
        )
    })?;
    Ok(Some(v))
}

fn duplicate_column(name: &str) -> SqlError {
    SqlError::new(1060, "42S21", format!("Duplicate column name '{name}'"))
}

fn cant_drop(name: &str) -> SqlError {
    SqlError::new(
        1091,
        "42000",
        format!("Can't DROP '{name}'; check that column/key exists"),
    )
}
