//! DDL: databases, tables and indexes, each change one atomic batch.
//!
//! DDL runs one at a time (the `ddl` mutex) and takes the table's metadata
//! lock exclusive, so it waits for every transaction using the table to end.
//! The catalog trees and the new spaces change in one batch, durable before
//! the in-memory catalog changes: a crash before the batch is durable leaves
//! no trace, after it leaves the whole change. Dropping a table logs
//! `DropSpace` for each of its spaces in the same batch.
//!
//! An index over existing rows is bulk built: the rows are read at the
//! applied LSN (the table is locked), sorted, and written as whole pages by
//! [`BulkLoader`] in batches of about [`BUILD_CHUNK_BYTES`]; only the last
//! batch names the index in the catalog, so an interrupted build leaves
//! unreachable pages in a space no one names.
//!
//! The SQL layer commits a session's open transaction before calling here,
//! as MySQL does. ALTER, RENAME and TRUNCATE TABLE are in [`alter`].

mod alter;

use std::sync::Arc;

use strata_wal::PageId;

use super::{Engine, Shared};
use crate::btree::{BTree, BulkLoader, Result as TreeResult, TreeError};
use crate::catalog::{
    ColumnDef, DATABASES_ROOT, DatabaseDef, IndexDef, TABLES_ROOT, TableDef, database_key,
    encode_database, encode_table, table_key,
};
use crate::engine::stage::Stage;
use crate::error::{EngineError, Result};
use crate::lock::{LockKey, LockMode, TxnId};
use crate::space::{create_space, read_header, set_counters};
use crate::types::{ColumnType, Value};

pub(crate) use alter::zero_of;
pub use alter::{AlterKind, ColumnChange, IndexChange, TableChange};

/// Pages written per batch while building an index.
const BUILD_CHUNK_BYTES: usize = 4 << 20;

#[derive(Clone, Debug)]
pub struct ColumnSpec {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    pub default: Option<Value>,
    pub auto_increment: bool,
}

#[derive(Clone, Debug)]
pub struct IndexSpec {
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
}

#[derive(Clone, Debug)]
pub struct TableSpec {
    pub name: String,
    pub columns: Vec<ColumnSpec>,
    /// Empty: the table gets a hidden row id.
    pub primary_key: Vec<String>,
    pub indexes: Vec<IndexSpec>,
    /// The first auto-increment value (`AUTO_INCREMENT=n`; 0 or 1: from 1).
    pub auto_increment: u64,
}

impl Engine {
    /// Creates a database; `Ok(false)` if it exists and `if_not_exists`.
    pub async fn create_database(&self, name: &str, if_not_exists: bool) -> Result<bool> {
        let s = &self.shared;
        let _ddl = s.ddl.lock().await;
        if s.catalog.read().has_database(name) {
            return match if_not_exists {
                true => Ok(false),
                false => Err(EngineError::DatabaseExists(name.into())),
            };
        }
        let def = DatabaseDef {
            id: s.catalog.read().next_database_id(),
            name: name.into(),
        };
        let bytes = encode_database(&def);
        let key = database_key(name);
        commit(s, |st| {
            BTree::open(DATABASES_ROOT).put(st, &key, &bytes).map(drop)
        })
        .await?;
        s.catalog.write().put_database(def);
        Ok(true)
    }

    /// Drops a database and every table in it, in one batch.
    pub async fn drop_database(&self, name: &str, if_exists: bool) -> Result<bool> {
        let s = &self.shared;
        let _ddl = s.ddl.lock().await;
        let (db, tables) = {
            let cat = s.catalog.read();
            match cat.database(name) {
                Ok(db) => (
                    db.clone(),
                    cat.tables_in(db.id).cloned().collect::<Vec<_>>(),
                ),
                Err(_) if if_exists => return Ok(false),
                Err(e) => return Err(e),
            }
        };
        let locker = TableLocks::exclusive(s, &tables).await?;
        let key = database_key(name);
        commit(s, |st| {
            for t in &tables {
                drop_table_in(st, t)?;
            }
            BTree::open(DATABASES_ROOT).delete(st, &key).map(drop)
        })
        .await?;
        s.catalog.write().remove_database(&db.name);
        drop(locker);
        Ok(true)
    }

    /// Creates a table with its indexes; `Ok(false)` if it exists and
    /// `if_not_exists`.
    pub async fn create_table(
        &self,
        db: &str,
        spec: TableSpec,
        if_not_exists: bool,
    ) -> Result<bool> {
        let s = &self.shared;
        let _ddl = s.ddl.lock().await;
        let db_def = s.catalog.read().database(db)?.clone();
        if s.catalog.read().table(db, &spec.name).is_ok() {
            return match if_not_exists {
                true => Ok(false),
                false => Err(EngineError::TableExists(spec.name)),
            };
        }
        let template = table_template(db_def.id, &spec)?;
        let mut created = None;
        commit(s, |st| {
            let def = allocate_table(st, &template)?;
            if spec.auto_increment > 1 {
                let header = read_header(st, def.id)?;
                set_counters(st, def.id, spec.auto_increment - 1, header.next_space_id)?;
            }
            let key = table_key(def.db_id, &def.name);
            BTree::open(TABLES_ROOT).put(st, &key, &encode_table(&def))?;
            created = Some(def);
            Ok(())
        })
        .await?;
        let def = created.expect("set by the committed build");
        s.catalog.write().put_table(def);
        Ok(true)
    }

    /// `ALTER TABLE … AUTO_INCREMENT = n`: the table's next auto-increment
    /// value becomes at least `next`, in memory and in its space header.
    /// Never lower: values above the rows may have been handed out already
    /// (MySQL lowers it down to the largest value in the column + 1).
    pub async fn raise_auto_increment(&self, db: &str, table: &str, next: u64) -> Result<()> {
        let s = &self.shared;
        let _ddl = s.ddl.lock().await;
        let table = s.catalog.read().table(db, table)?;
        if table.auto_increment_column().is_none() {
            return Ok(());
        }
        let used = next.saturating_sub(1);
        s.bump_auto_inc(&table, used).await?;
        commit(s, |st| {
            let header = read_header(st, table.id)?;
            if used > header.auto_inc {
                set_counters(st, table.id, used, header.next_space_id)?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Drops a table: its catalog entry and every space, in one batch.
    pub async fn drop_table(&self, db: &str, name: &str, if_exists: bool) -> Result<bool> {
        let s = &self.shared;
        let _ddl = s.ddl.lock().await;
        let table = match s.catalog.read().table(db, name) {
            Ok(t) => t,
            Err(EngineError::UnknownTable { .. }) if if_exists => return Ok(false),
            Err(e) => return Err(e),
        };
        let locker = TableLocks::exclusive(s, std::slice::from_ref(&table)).await?;
        commit(s, |st| drop_table_in(st, &table)).await?;
        s.catalog.write().remove_table(table.db_id, &table.name);
        drop(locker);
        Ok(true)
    }

    /// Builds a secondary index over the table's rows.
    pub async fn create_index(&self, db: &str, table: &str, spec: IndexSpec) -> Result<()> {
        let s = &self.shared;
        let _ddl = s.ddl.lock().await;
        let table = s.catalog.read().table(db, table)?;
        if table.index(&spec.name).is_some() {
            return Err(EngineError::IndexExists(spec.name));
        }
        let columns = column_positions(&table, &spec.columns)?;
        let locker = TableLocks::exclusive(s, std::slice::from_ref(&table)).await?;
        let mut idx = IndexDef {
            name: spec.name.clone(),
            space: 0,
            root_page: 0,
            columns,
            unique: spec.unique,
        };
        let rows = self.current_rows(&table).await?;
        let entries = alter::sorted_entries(&table, &idx, &rows)?;
        let (space, root) = bulk_build(s, &entries).await?;
        idx.space = space;
        idx.root_page = root;
        let mut def = (*table).clone();
        def.secondary.push(idx);
        def.schema_version += 1;
        let key = table_key(def.db_id, &def.name);
        commit(s, |st| {
            def.created_lsn = st.start().advance(1);
            BTree::open(TABLES_ROOT)
                .put(st, &key, &encode_table(&def))
                .map(drop)
        })
        .await?;
        s.catalog.write().put_table(def);
        drop(locker);
        Ok(())
    }

    /// Drops a secondary index.
    pub async fn drop_index(&self, db: &str, table: &str, name: &str) -> Result<()> {
        let s = &self.shared;
        let _ddl = s.ddl.lock().await;
        let table = s.catalog.read().table(db, table)?;
        let Some(pos) = table
            .secondary
            .iter()
            .position(|i| i.name.eq_ignore_ascii_case(name))
        else {
            return Err(EngineError::UnknownIndex(name.into()));
        };
        let locker = TableLocks::exclusive(s, std::slice::from_ref(&table)).await?;
        let mut def = (*table).clone();
        let idx = def.secondary.remove(pos);
        def.schema_version += 1;
        let key = table_key(def.db_id, &def.name);
        commit(s, |st| {
            def.created_lsn = st.start().advance(1);
            st.drop_space(idx.space);
            BTree::open(TABLES_ROOT)
                .put(st, &key, &encode_table(&def))
                .map(drop)
        })
        .await?;
        s.catalog.write().put_table(def);
        drop(locker);
        Ok(())
    }
}

/// Applies one batch and waits until it is durable.
async fn commit(s: &Shared, build: impl FnMut(&mut Stage<'_>) -> TreeResult<()>) -> Result<()> {
    let (_lsn, durable) = s.apply(build).await?;
    durable.await
}

/// Exclusive metadata locks on some tables, released on drop.
struct TableLocks<'a> {
    shared: &'a Shared,
    txn: TxnId,
}

impl<'a> TableLocks<'a> {
    async fn exclusive(shared: &'a Shared, tables: &[Arc<TableDef>]) -> Result<TableLocks<'a>> {
        let locks = TableLocks {
            shared,
            txn: shared.new_txn_id(),
        };
        for t in tables {
            let key = LockKey::Table {
                table_id: u64::from(t.id),
            };
            shared
                .locks
                .lock(
                    locks.txn,
                    key,
                    LockMode::Exclusive,
                    shared.cfg.lock_wait_timeout,
                )
                .await?;
        }
        Ok(locks)
    }
}

impl Drop for TableLocks<'_> {
    fn drop(&mut self) {
        self.shared.locks.release_all(self.txn);
    }
}

fn drop_table_in(st: &mut Stage<'_>, table: &TableDef) -> TreeResult<()> {
    BTree::open(TABLES_ROOT).delete(st, &table_key(table.db_id, &table.name))?;
    for space in table.spaces() {
        st.drop_space(space);
    }
    Ok(())
}

/// Column positions of `names`.
fn column_positions(table: &TableDef, names: &[String]) -> Result<Vec<usize>> {
    names
        .iter()
        .map(|n| {
            table
                .column_index(n)
                .ok_or_else(|| EngineError::UnknownColumn(n.clone()))
        })
        .collect()
}

/// The definition `spec` describes, spaces not yet allocated.
fn table_template(db_id: u32, spec: &TableSpec) -> Result<TableDef> {
    let mut columns = Vec::with_capacity(spec.columns.len());
    for c in &spec.columns {
        if columns
            .iter()
            .any(|d: &ColumnDef| d.name.eq_ignore_ascii_case(&c.name))
        {
            return Err(EngineError::Invalid(format!(
                "Duplicate column name '{}'",
                c.name
            )));
        }
        let default = match &c.default {
            None | Some(Value::Null) => None,
            Some(v) => Some(c.ty.coerce(v.clone()).map_err(|error| EngineError::Value {
                column: c.name.clone(),
                error,
            })?),
        };
        columns.push(ColumnDef {
            name: c.name.clone(),
            ty: c.ty.clone(),
            nullable: c.nullable,
            default,
            auto_increment: c.auto_increment,
        });
    }
    if columns.iter().filter(|c| c.auto_increment).count() > 1 {
        return Err(EngineError::Invalid(
            "Incorrect table definition; there can be only one auto column".into(),
        ));
    }
    let mut table = TableDef {
        db_id,
        name: spec.name.clone(),
        id: 0,
        schema_version: 1,
        created_lsn: Default::default(),
        columns,
        primary: IndexDef::unplaced_primary(),
        secondary: Vec::new(),
    };
    table.primary.columns = column_positions(&table, &spec.primary_key)?;
    for &c in &table.primary.columns {
        table.columns[c].nullable = false;
    }
    for i in &spec.indexes {
        if table.index(&i.name).is_some() {
            return Err(EngineError::IndexExists(i.name.clone()));
        }
        let columns = column_positions(&table, &i.columns)?;
        table.secondary.push(IndexDef {
            name: i.name.clone(),
            space: 0,
            root_page: 0,
            columns,
            unique: i.unique,
        });
    }
    Ok(table)
}

/// Allocates the table's spaces from space 0's header and creates each
/// space and its tree.
fn allocate_table(st: &mut Stage<'_>, template: &TableDef) -> TreeResult<TableDef> {
    let mut def = template.clone();
    let first = allocate_spaces(st, 1 + def.secondary.len() as u32)?;
    def.id = first;
    def.created_lsn = st.start().advance(1);
    def.primary.space = first;
    def.primary.root_page = new_tree(st, first)?.page_no;
    for (i, idx) in def.secondary.iter_mut().enumerate() {
        idx.space = first + 1 + i as u32;
        idx.root_page = new_tree(st, idx.space)?.page_no;
    }
    Ok(def)
}

fn allocate_spaces(st: &mut Stage<'_>, n: u32) -> TreeResult<u32> {
    let header = read_header(st, 0)?;
    let first = header.next_space_id;
    let next = first.checked_add(n).ok_or_else(|| TreeError::Corrupt {
        page: PageId::new(0, 0),
        detail: "space ids exhausted".into(),
    })?;
    set_counters(st, 0, header.auto_inc, next)?;
    Ok(first)
}

fn new_tree(st: &mut Stage<'_>, space: u32) -> TreeResult<PageId> {
    create_space(st, space)?;
    Ok(BTree::create(st, space)?.root)
}

/// Writes `entries` into a new space in chunked batches; returns the space
/// and the tree's root page.
async fn bulk_build(s: &Shared, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(u32, u32)> {
    let mut loader: Option<(u32, BulkLoader)> = None;
    let mut done = 0;
    loop {
        // The loader reads its space's header to allocate pages: have it
        // cached before the applier runs (see the closure's note).
        if let Some((space, _)) = &loader {
            let space = *space;
            s.read_at(s.current(), |r| read_header(r, space)).await?;
        }
        let mut ran = false;
        let mut root = None;
        commit(s, |st| {
            // Pages of a bulk build are new: a miss cannot happen, and a
            // re-run after one would push entries twice.
            if std::mem::replace(&mut ran, true) {
                return Err(TreeError::Corrupt {
                    page: PageId::new(0, 0),
                    detail: "an index build missed a page; retry the statement".into(),
                });
            }
            if loader.is_none() {
                let space = allocate_spaces(st, 1)?;
                create_space(st, space)?;
                loader = Some((space, BulkLoader::new(st, space)?));
            }
            let (_, l) = loader.as_mut().expect("set above");
            while done < entries.len() && st.len() < BUILD_CHUNK_BYTES {
                let (k, v) = &entries[done];
                l.push(st, k, v)?;
                done += 1;
            }
            if done == entries.len() {
                let (space, l) = loader.take().expect("set above");
                root = Some((space, l.finish(st)?.root.page_no));
            }
            Ok(())
        })
        .await?;
        if let Some(r) = root {
            return Ok(r);
        }
    }
}
