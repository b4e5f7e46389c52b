//! The catalog: databases, tables, their columns and indexes.
//!
//! It lives in space 0, in two B+trees whose roots are fixed at bootstrap:
//! [`DATABASES_ROOT`] maps a database's folded name to its definition and
//! [`TABLES_ROOT`] maps (database, folded table name) to the whole table
//! definition — columns with their types and collation ids, the clustered
//! index and every secondary index with its space and fixed root page.
//! Space 0's header hands out space ids (`next_space_id`), never reused.
//!
//! Names are compared case-insensitively (as MySQL with
//! `lower_case_table_names=1`): keys hold the lowercased name, definitions
//! the name as written.
//!
//! Definitions are encoded with a small versioned codec ([`codec`]); a
//! definition that does not decode is corrupt data, never a guess. The
//! in-memory [`Catalog`] is a cache of the trees, rebuilt at start and
//! changed only after a DDL batch is durable.

mod codec;

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_wal::{Lsn, PageId};

use crate::error::{EngineError, Result};
use crate::types::{ColumnType, Value};

pub use codec::{decode_database, decode_table, encode_database, encode_table};

/// Root of the databases tree in space 0.
pub const DATABASES_ROOT: PageId = PageId::new(0, 1);
/// Root of the tables tree in space 0.
pub const TABLES_ROOT: PageId = PageId::new(0, 2);
/// The first space id handed out to a table or index.
pub const FIRST_USER_SPACE: u32 = 1;

#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseDef {
    pub id: u32,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    /// The default, already coerced to `ty`; `None` = no default.
    pub default: Option<Value>,
    pub auto_increment: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDef {
    pub name: String,
    /// The index's own space; its root is page [`IndexDef::root`].
    pub space: u32,
    pub root_page: u32,
    /// Column positions in the table.
    pub columns: Vec<usize>,
    pub unique: bool,
}

impl IndexDef {
    /// A unique primary key not yet placed in a space and with no columns
    /// yet (a table being defined, or a virtual table's).
    pub fn unplaced_primary() -> IndexDef {
        IndexDef {
            name: "PRIMARY".into(),
            space: 0,
            root_page: 0,
            columns: Vec::new(),
            unique: true,
        }
    }

    pub fn root(&self) -> PageId {
        PageId::new(self.space, self.root_page)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableDef {
    pub db_id: u32,
    pub name: String,
    /// The clustered index's space, which is also the table's id.
    pub id: u32,
    pub schema_version: u32,
    /// The LSN of the batch that created (or last changed) the definition:
    /// a snapshot below it cannot read the table.
    pub created_lsn: Lsn,
    pub columns: Vec<ColumnDef>,
    /// The clustered index: on the primary key, or (with no columns) on a
    /// hidden row id.
    pub primary: IndexDef,
    pub secondary: Vec<IndexDef>,
}

impl TableDef {
    /// Whether the clustered index is on a hidden row id.
    pub fn has_hidden_key(&self) -> bool {
        self.primary.columns.is_empty()
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub fn auto_increment_column(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.auto_increment)
    }

    pub fn types(&self) -> Vec<ColumnType> {
        self.columns.iter().map(|c| c.ty.clone()).collect()
    }

    /// Every space the table owns.
    pub fn spaces(&self) -> Vec<u32> {
        std::iter::once(self.primary.space)
            .chain(self.secondary.iter().map(|i| i.space))
            .collect()
    }

    pub fn index(&self, name: &str) -> Option<&IndexDef> {
        if name.eq_ignore_ascii_case("PRIMARY") {
            return Some(&self.primary);
        }
        self.secondary
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
    }
}

/// A name as catalog keys hold it.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// The key of a database in the databases tree.
pub fn database_key(name: &str) -> Vec<u8> {
    fold(name).into_bytes()
}

/// The key of a table in the tables tree.
pub fn table_key(db_id: u32, name: &str) -> Vec<u8> {
    let mut key = db_id.to_be_bytes().to_vec();
    key.extend_from_slice(fold(name).as_bytes());
    key
}

/// The in-memory copy of the catalog.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    databases: BTreeMap<String, DatabaseDef>,
    tables: BTreeMap<(u32, String), Arc<TableDef>>,
}

impl Catalog {
    pub fn database(&self, name: &str) -> Result<&DatabaseDef> {
        self.databases
            .get(&fold(name))
            .ok_or_else(|| EngineError::UnknownDatabase(name.to_string()))
    }

    pub fn has_database(&self, name: &str) -> bool {
        self.databases.contains_key(&fold(name))
    }

    pub fn databases(&self) -> impl Iterator<Item = &DatabaseDef> {
        self.databases.values()
    }

    pub fn table(&self, db: &str, name: &str) -> Result<Arc<TableDef>> {
        let d = self.database(db)?;
        self.tables
            .get(&(d.id, fold(name)))
            .cloned()
            .ok_or_else(|| EngineError::UnknownTable {
                db: db.to_string(),
                table: name.to_string(),
            })
    }

    /// The table with id `id` in database `db_id`, whatever its name now.
    pub fn table_by_id(&self, db_id: u32, id: u32) -> Option<Arc<TableDef>> {
        self.tables_in(db_id).find(|t| t.id == id).cloned()
    }

    pub fn tables_in(&self, db_id: u32) -> impl Iterator<Item = &Arc<TableDef>> {
        self.tables
            .range((db_id, String::new())..)
            .take_while(move |((d, _), _)| *d == db_id)
            .map(|(_, t)| t)
    }

    pub fn put_database(&mut self, def: DatabaseDef) {
        self.databases.insert(fold(&def.name), def);
    }

    pub fn remove_database(&mut self, name: &str) {
        if let Some(d) = self.databases.remove(&fold(name)) {
            self.tables.retain(|(db, _), _| *db != d.id);
        }
    }

    pub fn put_table(&mut self, def: TableDef) {
        self.tables
            .insert((def.db_id, fold(&def.name)), Arc::new(def));
    }

    pub fn remove_table(&mut self, db_id: u32, name: &str) {
        self.tables.remove(&(db_id, fold(name)));
    }

    /// The next database id: one past the largest in use.
    pub fn next_database_id(&self) -> u32 {
        self.databases.values().map(|d| d.id + 1).max().unwrap_or(1)
    }
}
