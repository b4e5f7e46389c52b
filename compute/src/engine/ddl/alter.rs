//! ALTER TABLE, RENAME TABLE and TRUNCATE TABLE.
//!
//! A change is described as the table's new shape ([`TableChange`]): every
//! column with where its values come from, the primary key, and every
//! secondary index (kept or new). The engine picks the cheapest way that
//! keeps every row readable:
//!
//! - **in place** when the old columns stay where they are with the same
//!   types, defaults and auto-increment (renames and dropping NOT NULL are
//!   fine), new columns come after them and need no value per row
//!   (nullable or defaulted), and the primary key is unchanged. The
//!   definition gets a new schema version; rows written before read the new
//!   columns' defaults ([`crate::txn`]'s `decode_stored`). New secondary
//!   indexes are bulk built, dropped ones' spaces dropped.
//! - **rebuild** otherwise: every row is read (the table is locked), turned
//!   into the new shape, and written, sorted, into new spaces by the bulk
//!   loader — the clustered index and every secondary index. The last
//!   batch names the new spaces in the catalog and drops the old ones
//!   (`DropSpace`), so a crash leaves either the old table or the new one;
//!   the pages of an interrupted build are in spaces no one names.
//!
//! The table's id is its clustered space, so a rebuild gives it a new id:
//! plans and transactions holding the old definition see it gone (1412) and
//! are compiled again. The auto-increment high-water mark moves to the new
//! clustered space's header.

use std::sync::Arc;

use crate::btree::BTree;
use crate::catalog::{ColumnDef, IndexDef, TABLES_ROOT, TableDef, encode_table, table_key};
use crate::engine::Engine;
use crate::engine::stage::Stage;
use crate::error::{EngineError, Result};
use crate::row::encode_row;
use crate::space::{read_header, set_counters};
use crate::txn::{Row, auto_inc_value, coerce_value, decode_stored, duplicate, index_key};
use crate::types::{ColumnType, Date, DateTime, Value};

use super::{TableLocks, bulk_build, commit};

/// (database, table).
pub type QualifiedName = (String, String);

/// One column of the new shape.
#[derive(Clone, Debug)]
pub struct ColumnChange {
    pub def: ColumnDef,
    /// The old column its values come from; `None`: a new column.
    pub source: Option<usize>,
}

/// One secondary index of the new shape.
#[derive(Clone, Debug)]
pub struct IndexChange {
    pub name: String,
    /// Positions in the new columns.
    pub columns: Vec<usize>,
    pub unique: bool,
    /// The old index (position in the old secondary list) it is, unchanged.
    pub existing: Option<usize>,
}

/// A table's new shape.
#[derive(Clone, Debug)]
pub struct TableChange {
    pub columns: Vec<ColumnChange>,
    /// Positions in the new columns; empty: a hidden row id.
    pub primary: Vec<usize>,
    pub indexes: Vec<IndexChange>,
}

/// How an ALTER ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlterKind {
    InPlace,
    Rebuild,
}

impl Engine {
    /// Alters a table: `plan` sees the definition as it is under the DDL
    /// lock and returns the new shape (or an error, and nothing changes).
    pub async fn alter_table<E: From<EngineError>>(
        &self,
        db: &str,
        name: &str,
        plan: impl FnOnce(&TableDef) -> std::result::Result<TableChange, E>,
    ) -> std::result::Result<AlterKind, E> {
        let s = &self.shared;
        let _ddl = s.ddl.lock().await;
        let table = s.catalog.read().table(db, name)?;
        let change = plan(&table)?;
        let locker = TableLocks::exclusive(s, std::slice::from_ref(&table)).await?;
        let kind = match in_place(&table, &change) {
            true => self.alter_in_place(&table, &change).await?,
            false => self.rebuild(&table, &change).await?,
        };
        drop(locker);
        Ok(kind)
    }

    async fn alter_in_place(&self, table: &TableDef, change: &TableChange) -> Result<AlterKind> {
        let s = &self.shared;
        let mut def = shaped(table, change);
        def.schema_version = table.schema_version + 1;
        let mut secondary = Vec::with_capacity(change.indexes.len());
        let rows = match change.indexes.iter().any(|i| i.existing.is_none()) {
            true => self.current_rows(&def).await?,
            false => Vec::new(),
        };
        for i in &change.indexes {
            let idx = match i.existing {
                Some(old) => table.secondary[old].clone(),
                None => {
                    let mut idx = new_index(i);
                    let entries = sorted_entries(&def, &idx, &rows)?;
                    (idx.space, idx.root_page) = bulk_build(s, &entries).await?;
                    idx
                }
            };
            secondary.push(idx);
        }
        def.secondary = secondary;
        let kept: Vec<u32> = def.secondary.iter().map(|i| i.space).collect();
        let dropped: Vec<u32> = table
            .secondary
            .iter()
            .map(|i| i.space)
            .filter(|sp| !kept.contains(sp))
            .collect();
        let key = table_key(def.db_id, &def.name);
        commit(s, |st| {
            def.created_lsn = st.start().advance(1);
            for &space in &dropped {
                st.drop_space(space);
            }
            BTree::open(TABLES_ROOT)
                .put(st, &key, &encode_table(&def))
                .map(drop)
        })
        .await?;
        s.catalog.write().put_table(def);
        Ok(AlterKind::InPlace)
    }

    /// Every row of `def`'s table as of now, with its clustered key.
    pub(super) async fn current_rows(&self, def: &TableDef) -> Result<Vec<(Vec<u8>, Row)>> {
        let s = &self.shared;
        let stored = s
            .collect(s.current(), BTree::open(def.primary.root()))
            .await?;
        stored
            .into_iter()
            .map(|(k, v)| Ok((k, decode_stored(def, &v)?)))
            .collect()
    }

    async fn rebuild(&self, table: &TableDef, change: &TableChange) -> Result<AlterKind> {
        let s = &self.shared;
        let mut def = shaped(table, change);
        def.schema_version = table.schema_version + 1;
        let old_rows = self.current_rows(table).await?;
        let mut rows = Vec::with_capacity(old_rows.len());
        let mut next_id = 0u64;
        let mut max_auto = s.auto_inc_high_water(table).await?;
        for (old_key, old) in old_rows {
            let row = reshape(&def, change, &old, &mut max_auto)?;
            let key = match (def.has_hidden_key(), table.has_hidden_key()) {
                (true, true) => old_key,
                (true, false) => {
                    next_id += 1;
                    next_id.to_be_bytes().to_vec()
                }
                (false, _) => index_key(&def, &def.primary, &row, &[])?,
            };
            rows.push((key, row));
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(duplicate(&def, &def.primary, &w[1].1));
        }
        let types = def.types();
        let clustered: Vec<(Vec<u8>, Vec<u8>)> = rows
            .iter()
            .map(|(k, r)| (k.clone(), encode_row(def.schema_version, &types, r)))
            .collect();
        let mut secondary = Vec::with_capacity(change.indexes.len());
        for i in &change.indexes {
            let mut idx = new_index(i);
            let entries = sorted_entries(&def, &idx, &rows)?;
            (idx.space, idx.root_page) = bulk_build(s, &entries).await?;
            secondary.push(idx);
        }
        let (space, root) = bulk_build(s, &clustered).await?;
        def.id = space;
        def.primary.space = space;
        def.primary.root_page = root;
        def.secondary = secondary;
        let auto_inc = match def.has_hidden_key() {
            true => max_auto.max(next_id),
            false => max_auto,
        };
        self.swap_in(table, def, auto_inc).await?;
        Ok(AlterKind::Rebuild)
    }

    /// The last batch of a rebuild: the new definition named, the old
    /// spaces dropped, the auto-increment mark carried over.
    async fn swap_in(&self, old: &TableDef, mut def: TableDef, auto_inc: u64) -> Result<()> {
        let s = &self.shared;
        let old_key = table_key(old.db_id, &old.name);
        let key = table_key(def.db_id, &def.name);
        commit(s, |st| {
            def.created_lsn = st.start().advance(1);
            swap_batch(st, old, &def, &old_key, &key, auto_inc)
        })
        .await?;
        let mut cat = s.catalog.write();
        cat.remove_table(old.db_id, &old.name);
        cat.put_table(def);
        s.auto_inc.lock().remove(&old.id);
        Ok(())
    }

    /// TRUNCATE TABLE: the table emptied into new spaces in one batch, its
    /// auto-increment counter back to the start.
    pub async fn truncate_table(&self, db: &str, name: &str) -> Result<()> {
        let s = &self.shared;
        let _ddl = s.ddl.lock().await;
        let table = s.catalog.read().table(db, name)?;
        let locker = TableLocks::exclusive(s, std::slice::from_ref(&table)).await?;
        let mut created = None;
        let key = table_key(table.db_id, &table.name);
        commit(s, |st| {
            let mut def = super::allocate_table(st, &table)?;
            def.schema_version = table.schema_version + 1;
            for space in table.spaces() {
                st.drop_space(space);
            }
            BTree::open(TABLES_ROOT).put(st, &key, &encode_table(&def))?;
            created = Some(def);
            Ok(())
        })
        .await?;
        let def = created.expect("set by the committed batch");
        s.catalog.write().put_table(def);
        s.auto_inc.lock().remove(&table.id);
        drop(locker);
        Ok(())
    }

    /// RENAME TABLE a TO b, c TO d, …: in order (so a swap through a
    /// temporary name works), all in one batch.
    pub async fn rename_tables(&self, pairs: &[(QualifiedName, QualifiedName)]) -> Result<()> {
        let s = &self.shared;
        let _ddl = s.ddl.lock().await;
        let mut cat = (*s.catalog.read()).clone();
        let mut moves: Vec<(Arc<TableDef>, TableDef)> = Vec::new();
        for ((from_db, from), (to_db, to)) in pairs {
            let t = cat.table(from_db, from)?;
            let target_db = cat.database(to_db)?.id;
            if cat.table(to_db, to).is_ok() {
                return Err(EngineError::TableExists(to.clone()));
            }
            let mut def = (*t).clone();
            def.db_id = target_db;
            def.name = to.clone();
            def.schema_version += 1;
            cat.remove_table(t.db_id, &t.name);
            cat.put_table(def.clone());
            match moves.iter_mut().find(|(_, now)| now.id == def.id) {
                Some(m) => m.1 = def,
                None => moves.push((t, def)),
            }
        }
        let originals: Vec<Arc<TableDef>> = moves.iter().map(|(o, _)| o.clone()).collect();
        let locker = TableLocks::exclusive(s, &originals).await?;
        commit(s, |st| {
            let tree = BTree::open(TABLES_ROOT);
            for (old, _) in &moves {
                tree.delete(st, &table_key(old.db_id, &old.name))?;
            }
            for (_, new) in &moves {
                tree.put(st, &table_key(new.db_id, &new.name), &encode_table(new))?;
            }
            Ok(())
        })
        .await?;
        let mut live = s.catalog.write();
        for (old, _) in &moves {
            live.remove_table(old.db_id, &old.name);
        }
        for (_, new) in moves {
            live.put_table(new);
        }
        drop(live);
        drop(locker);
        Ok(())
    }
}

impl super::Shared {
    /// The largest auto-increment value the table has handed out or stored.
    async fn auto_inc_high_water(&self, table: &TableDef) -> Result<u64> {
        let header = self
            .read_at(self.current(), |r| read_header(r, table.id))
            .await?;
        let in_memory = self
            .auto_inc
            .lock()
            .get(&table.id)
            .map_or(0, |next| next.saturating_sub(1));
        Ok(header.auto_inc.max(in_memory))
    }
}

fn swap_batch(
    st: &mut Stage<'_>,
    old: &TableDef,
    def: &TableDef,
    old_key: &[u8],
    key: &[u8],
    auto_inc: u64,
) -> crate::btree::Result<()> {
    let tree = BTree::open(TABLES_ROOT);
    if old_key != key {
        tree.delete(st, old_key)?;
    }
    tree.put(st, key, &encode_table(def))?;
    let header = read_header(st, def.id)?;
    set_counters(st, def.id, auto_inc, header.next_space_id)?;
    for space in old.spaces() {
        st.drop_space(space);
    }
    Ok(())
}

/// Whether `change` keeps every stored row readable as it is.
fn in_place(table: &TableDef, change: &TableChange) -> bool {
    let n = table.columns.len();
    if change.columns.len() < n || change.primary != table.primary.columns {
        return false;
    }
    let kept = change.columns[..n].iter().enumerate().all(|(i, c)| {
        let old = &table.columns[i];
        c.source == Some(i)
            && c.def.ty == old.ty
            && c.def.default == old.default
            && c.def.auto_increment == old.auto_increment
            && (c.def.nullable || !old.nullable)
    });
    let added = change.columns[n..].iter().all(|c| {
        c.source.is_none() && !c.def.auto_increment && (c.def.nullable || c.def.default.is_some())
    });
    kept && added
}

/// The new definition's columns and primary key (spaces still the old).
fn shaped(table: &TableDef, change: &TableChange) -> TableDef {
    let mut def = table.clone();
    def.columns = change.columns.iter().map(|c| c.def.clone()).collect();
    def.primary.columns = change.primary.clone();
    for &c in &change.primary {
        def.columns[c].nullable = false;
    }
    def.secondary = Vec::new();
    def
}

fn new_index(i: &IndexChange) -> IndexDef {
    IndexDef {
        name: i.name.clone(),
        space: 0,
        root_page: 0,
        columns: i.columns.clone(),
        unique: i.unique,
    }
}

/// An old row in the new shape: values converted to their new types, new
/// columns at their default (NOT NULL without one: the type's zero; an
/// auto-increment column: numbered on).
fn reshape(def: &TableDef, change: &TableChange, old: &Row, max_auto: &mut u64) -> Result<Row> {
    let mut row = Vec::with_capacity(change.columns.len());
    for (c, col) in change.columns.iter().zip(&def.columns) {
        let v = match c.source {
            Some(j) => old.get(j).cloned().unwrap_or(Value::Null),
            None if col.auto_increment => {
                *max_auto += 1;
                Value::UInt(*max_auto)
            }
            None => match &col.default {
                Some(d) => d.clone(),
                None if col.nullable => Value::Null,
                None => zero_of(&col.ty),
            },
        };
        let v = coerce_value(col, v)?;
        if col.auto_increment {
            *max_auto = (*max_auto).max(auto_inc_value(&v));
        }
        row.push(v);
    }
    Ok(row)
}

/// The implicit default of a NOT NULL column without one.
pub(crate) fn zero_of(ty: &ColumnType) -> Value {
    let date = Date {
        year: 0,
        month: 0,
        day: 0,
    };
    match ty {
        ColumnType::Char { .. }
        | ColumnType::VarChar { .. }
        | ColumnType::Text { .. }
        | ColumnType::Blob { .. } => Value::Bytes(Vec::new()),
        ColumnType::Date => Value::Date(date),
        ColumnType::DateTime | ColumnType::Timestamp => Value::DateTime(DateTime {
            date,
            hour: 0,
            minute: 0,
            second: 0,
            micros: 0,
        }),
        _ => Value::Int(0),
    }
}

/// An index's entries over `rows` (with their clustered keys), sorted;
/// duplicates of a unique index are an error.
pub(super) fn sorted_entries(
    def: &TableDef,
    idx: &IndexDef,
    rows: &[(Vec<u8>, Row)],
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut probe = def.clone();
    probe.secondary = vec![idx.clone()];
    let mut entries = Vec::with_capacity(rows.len());
    for (i, (pk, row)) in rows.iter().enumerate() {
        entries.push((index_key(&probe, &probe.secondary[0], row, pk)?, i));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(duplicate(def, idx, &rows[w[1].1].1));
    }
    Ok(entries
        .into_iter()
        .map(|(k, i)| (k, rows[i].0.clone()))
        .collect())
}
