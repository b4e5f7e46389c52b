//! Transactions: snapshot reads, locked current reads, a private write set,
//! and one atomic batch at commit.
//!
//! - **Snapshot reads** ([`Txn::get`], [`Txn::scan`]) see the durable LSN
//!   taken at the transaction's first read (REPEATABLE READ), plus the
//!   transaction's own writes.
//! - **Writes** take the row lock first — on the clustered key, and on each
//!   unique key, whether or not it exists — then read at the applied LSN
//!   (a *current read*) to check for duplicates; [`Txn::get_for_update`] is
//!   the same for `SELECT … FOR UPDATE`, `UPDATE` and `DELETE`.
//! - Changes go to the **write set**: per index tree, key → new value or
//!   deletion. Nothing reaches a page until commit, so rollback is dropping
//!   the write set; a failed statement undoes only its own changes
//!   ([`Txn::rollback_statement`]).
//! - **Commit** prefetches the pages the write set touches, then the
//!   applier replays the write set into the trees as one batch; row locks
//!   are released once it is published (the log orders every later commit
//!   after it), and commit returns when the batch is durable.
//! - DML holds each table's metadata lock shared until the end.
//!
//! Data read above the durable LSN (current reads) is not shown to a client
//! before it is durable: [`Txn::settle`] waits for it, and commit does.

mod scan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use strata_wal::page::Page;
use strata_wal::{Lsn, PageId};

use crate::btree::{BTree, Result as TreeResult};
use crate::catalog::{ColumnDef, IndexDef, TableDef};
use crate::engine::Shared;
use crate::engine::read::ReadAt;
use crate::error::{EngineError, Result};
use crate::key::encode_key_part;
use crate::lock::{LockKey, LockMode, TxnId};
use crate::row::{decode_row, encode_row};
use crate::space::{read_header, set_counters};
use crate::types::Value;

pub use scan::{RowScan, prefix_end};

pub type Row = Vec<Value>;

/// A row as read, with its clustered key (which, for a table without a
/// primary key, is a hidden row id found nowhere in the values).
#[derive(Clone, Debug, PartialEq)]
pub struct FoundRow {
    pub key: Vec<u8>,
    pub values: Row,
}

pub struct Txn {
    shared: Arc<Shared>,
    id: TxnId,
    snapshot: Option<Lsn>,
    writes: WriteSet,
    /// The highest LSN whose data this transaction has seen.
    read_lsn: Lsn,
    tables: HashSet<u32>,
    finished: bool,
    /// How long a row or table lock waits before error 1205
    /// (`innodb_lock_wait_timeout`; the engine's default until set).
    lock_wait_timeout: Duration,
}

/// One undone change: the tree, the key, what the key held before.
type Undo = (PageId, Vec<u8>, Option<Option<Vec<u8>>>);

/// Index root → key → new value (`None`: deleted).
type Changes = BTreeMap<PageId, BTreeMap<Vec<u8>, Option<Vec<u8>>>>;

#[derive(Default)]
struct WriteSet {
    changes: Changes,
    bytes: u64,
    /// Per table: the largest auto-increment value used, to persist.
    auto_inc: HashMap<u32, u64>,
    /// This statement's changes, oldest first, with what they replaced.
    undo: Vec<Undo>,
}

impl WriteSet {
    fn set(&mut self, root: PageId, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.bytes += (key.len() + value.as_ref().map_or(0, Vec::len) + 16) as u64;
        let old = self
            .changes
            .entry(root)
            .or_default()
            .insert(key.clone(), value);
        self.undo.push((root, key, old));
    }

    fn get(&self, root: PageId, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.changes.get(&root)?.get(key)
    }

    fn is_empty(&self) -> bool {
        self.changes.values().all(BTreeMap::is_empty)
    }
}

impl Txn {
    pub(crate) fn new(shared: Arc<Shared>, id: TxnId) -> Txn {
        Txn {
            lock_wait_timeout: shared.cfg.lock_wait_timeout,
            shared,
            id,
            snapshot: None,
            writes: WriteSet::default(),
            read_lsn: Lsn::ZERO,
            tables: HashSet::new(),
            finished: false,
        }
    }

    /// Sets how long this transaction's next lock waits may last.
    pub fn set_lock_wait_timeout(&mut self, timeout: Duration) {
        self.lock_wait_timeout = timeout;
    }

    pub fn id(&self) -> TxnId {
        self.id
    }

    /// Whether the transaction has changed anything.
    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// The snapshot, taken at the first read.
    pub fn snapshot(&mut self) -> Lsn {
        *self
            .snapshot
            .get_or_insert_with(|| self.shared.take_snapshot())
    }

    /// Marks the start of a statement: [`Txn::rollback_statement`] undoes
    /// back to here.
    pub fn begin_statement(&mut self) {
        self.writes.undo.clear();
    }

    /// Undoes the current statement's changes (its locks stay, as InnoDB's).
    pub fn rollback_statement(&mut self) {
        while let Some((root, key, old)) = self.writes.undo.pop() {
            let tree = self.writes.changes.entry(root).or_default();
            match old {
                Some(v) => tree.insert(key, v),
                None => tree.remove(&key),
            };
        }
    }

    /// The metadata lock on `table`, shared, and the definition as it is now.
    async fn use_table(&mut self, table: &TableDef) -> Result<Arc<TableDef>> {
        if self.tables.insert(table.id) {
            let key = LockKey::Table {
                table_id: u64::from(table.id),
            };
            if let Err(e) = self.lock(key, LockMode::Shared).await {
                self.tables.remove(&table.id);
                return Err(e);
            }
        }
        let current = self
            .shared
            .catalog
            .read()
            .table_by_id(table.db_id, table.id)
            .ok_or(EngineError::TableDefChanged)?;
        if current.schema_version != table.schema_version {
            return Err(EngineError::TableDefChanged);
        }
        if let Some(s) = self.snapshot
            && s < current.created_lsn
        {
            return Err(EngineError::TableDefChanged);
        }
        Ok(current)
    }

    async fn lock(&self, key: LockKey, mode: LockMode) -> Result<()> {
        let timeout = self.lock_wait_timeout;
        self.shared.locks.lock(self.id, key, mode, timeout).await?;
        Ok(())
    }

    async fn lock_row(&self, space: u32, key: &[u8]) -> Result<()> {
        let key = LockKey::Row {
            space,
            key: key.to_vec(),
        };
        self.lock(key, LockMode::Exclusive).await
    }

    /// Inserts a row (every column, in order; `NULL` or 0 in an
    /// auto-increment column takes the next value). Returns the generated
    /// auto-increment value, if one was.
    pub async fn insert(&mut self, table: &TableDef, values: Row) -> Result<Option<u64>> {
        self.shared.check_writable()?;
        let table = self.use_table(table).await?;
        let (row, generated) = self.prepare_insert(&table, values).await?;
        let key = match table.has_hidden_key() {
            true => {
                let row_id = self.shared.next_auto_inc(&table).await?;
                let max = self.writes.auto_inc.entry(table.id).or_default();
                *max = (*max).max(row_id);
                row_id.to_be_bytes().to_vec()
            }
            false => index_key(&table, &table.primary, &row, &[])?,
        };
        self.lock_row(table.primary.space, &key).await?;
        if self.exists_current(table.primary.root(), &key).await? {
            return Err(duplicate(&table, &table.primary, &row));
        }
        self.check_unique(&table, &row, &key, None).await?;
        self.write_row(&table, key, &row)?;
        Ok(generated)
    }

    /// Coerces the values, fills the auto-increment column, checks NOT NULL.
    async fn prepare_insert(
        &mut self,
        table: &TableDef,
        values: Row,
    ) -> Result<(Row, Option<u64>)> {
        if values.len() != table.columns.len() {
            return Err(EngineError::ColumnCount);
        }
        // A value to generate is taken only once every other value is
        // good: a row refused for a bad value uses up no number (as InnoDB,
        // whose values are checked before the row reaches the engine).
        let to_generate = table
            .auto_increment_column()
            .filter(|&c| matches!(values[c], Value::Null | Value::Int(0) | Value::UInt(0)));
        let mut row = coerce_row(table, values, to_generate)?;
        let mut generated = None;
        if let Some(c) = to_generate {
            let n = self.shared.next_auto_inc(table).await?;
            row[c] = coerce_value(&table.columns[c], Value::UInt(n))?;
            generated = Some(n);
        }
        if let Some(c) = table.auto_increment_column() {
            let used = auto_inc_value(&row[c]);
            self.shared.bump_auto_inc(table, used).await?;
            let max = self.writes.auto_inc.entry(table.id).or_default();
            *max = (*max).max(used);
        }
        Ok((row, generated))
    }

    /// Every secondary index entry of `row`, checking unique ones: their
    /// keys are locked and must be free (or be `old`'s own entries).
    async fn check_unique(
        &mut self,
        table: &TableDef,
        row: &Row,
        pk: &[u8],
        old: Option<&FoundRow>,
    ) -> Result<()> {
        for idx in table.secondary.iter().filter(|i| i.unique) {
            if has_null(idx, row) {
                continue;
            }
            let key = index_key(table, idx, row, pk)?;
            if let Some(old) = old
                && index_key(table, idx, &old.values, &old.key)? == key
            {
                continue;
            }
            self.lock_row(idx.space, &key).await?;
            if self.exists_current(idx.root(), &key).await? {
                return Err(duplicate(table, idx, row));
            }
        }
        Ok(())
    }

    fn write_row(&mut self, table: &TableDef, key: Vec<u8>, row: &Row) -> Result<()> {
        for idx in &table.secondary {
            let ikey = index_key(table, idx, row, &key)?;
            self.writes.set(idx.root(), ikey, Some(key.clone()));
        }
        let bytes = encode_row(table.schema_version, &table.types(), row);
        self.writes.set(table.primary.root(), key, Some(bytes));
        self.check_size()
    }

    fn check_size(&self) -> Result<()> {
        let max = self.shared.cfg.max_txn_bytes;
        if self.writes.bytes > max {
            return Err(EngineError::TxnTooLarge {
                bytes: self.writes.bytes,
                max,
            });
        }
        Ok(())
    }

    /// Whether `key` exists in the tree at `root` as of now (own writes
    /// first, then a current read).
    async fn exists_current(&mut self, root: PageId, key: &[u8]) -> Result<bool> {
        Ok(self.get_current(root, key).await?.is_some())
    }

    async fn get_current(&mut self, root: PageId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.writes.get(root, key) {
            return Ok(v.clone());
        }
        let tree = BTree::open(root);
        let found = self
            .shared
            .read_at(self.shared.current(), |r| tree.get(r, key))
            .await;
        self.saw_current();
        found
    }

    /// After a current read: what was read is at most the applied LSN now.
    fn saw_current(&mut self) {
        self.read_lsn = self.read_lsn.max(self.shared.pool.applied_lsn());
    }

    async fn get_at(&mut self, at: ReadAt, root: PageId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.writes.get(root, key) {
            return Ok(v.clone());
        }
        let tree = BTree::open(root);
        let found = self.shared.read_at(at, |r| tree.get(r, key)).await;
        if let ReadAt::Current(_) = at {
            self.saw_current();
        }
        found
    }

    /// The row with primary key `pk`, as of the snapshot.
    pub async fn get(&mut self, table: &TableDef, pk: &[Value]) -> Result<Option<FoundRow>> {
        let table = self.use_table(table).await?;
        let key = pk_key(&table, pk)?;
        let at = ReadAt::Snapshot(self.snapshot());
        self.row_at(&table, at, key).await
    }

    /// The row with primary key `pk`, locked, as of now.
    pub async fn get_for_update(
        &mut self,
        table: &TableDef,
        pk: &[Value],
    ) -> Result<Option<FoundRow>> {
        let table = self.use_table(table).await?;
        let key = pk_key(&table, pk)?;
        self.lock_key_for_update(&table, key).await
    }

    /// Locks the row whose clustered key is `key` and reads it as of now.
    pub async fn lock_key_for_update(
        &mut self,
        table: &TableDef,
        key: Vec<u8>,
    ) -> Result<Option<FoundRow>> {
        self.lock_row(table.primary.space, &key).await?;
        let at = self.shared.current();
        self.row_at(table, at, key).await
    }

    async fn row_at(
        &mut self,
        table: &TableDef,
        at: ReadAt,
        key: Vec<u8>,
    ) -> Result<Option<FoundRow>> {
        match self.get_at(at, table.primary.root(), &key).await? {
            None => Ok(None),
            Some(bytes) => Ok(Some(FoundRow {
                values: decode_stored(table, &bytes)?,
                key,
            })),
        }
    }

    /// Replaces `old` (as read by a locking read) with `values`.
    pub async fn update(&mut self, table: &TableDef, old: &FoundRow, values: Row) -> Result<()> {
        self.shared.check_writable()?;
        let table = self.use_table(table).await?;
        let row = coerce_row(&table, values, None)?;
        let key = match table.has_hidden_key() {
            true => old.key.clone(),
            false => index_key(&table, &table.primary, &row, &[])?,
        };
        self.lock_row(table.primary.space, &old.key).await?;
        if key != old.key {
            self.lock_row(table.primary.space, &key).await?;
            if self.exists_current(table.primary.root(), &key).await? {
                return Err(duplicate(&table, &table.primary, &row));
            }
        }
        // A unique key the row keeps (even under a new primary key) is its
        // own, not a duplicate.
        self.check_unique(&table, &row, &key, Some(old)).await?;
        if let Some(c) = table.auto_increment_column() {
            self.shared
                .bump_auto_inc(&table, auto_inc_value(&row[c]))
                .await?;
        }
        self.remove_row(&table, old)?;
        self.write_row(&table, key, &row)
    }

    /// Deletes `old` (as read by a locking read).
    pub async fn delete(&mut self, table: &TableDef, old: &FoundRow) -> Result<()> {
        self.shared.check_writable()?;
        let table = self.use_table(table).await?;
        self.lock_row(table.primary.space, &old.key).await?;
        self.remove_row(&table, old)
    }

    fn remove_row(&mut self, table: &TableDef, old: &FoundRow) -> Result<()> {
        for idx in &table.secondary {
            let ikey = index_key(table, idx, &old.values, &old.key)?;
            self.writes.set(idx.root(), ikey, None);
        }
        self.writes.set(table.primary.root(), old.key.clone(), None);
        Ok(())
    }

    /// Waits until everything this transaction has read is durable.
    pub async fn settle(&self) -> Result<()> {
        self.shared.wait_durable(self.read_lsn).await
    }

    /// Commits: one batch, durable when this returns.
    pub async fn commit(mut self) -> Result<()> {
        let result = self.commit_inner().await;
        self.finish();
        result
    }

    async fn commit_inner(&mut self) -> Result<()> {
        if self.writes.is_empty() {
            return self.settle().await;
        }
        self.shared.check_writable()?;
        let pinned = self.prefetch().await?;
        let writes = &self.writes;
        let (_lsn, durable) = self
            .shared
            .apply_pinned(&pinned, |st| apply_writes(st, writes))
            .await?;
        // Published: later current reads see it, and the log orders every
        // later commit after it, so the row locks can go now.
        self.shared.locks.release_all(self.id);
        durable.await
    }

    /// Fetches the current version of every page the commit will change
    /// and holds them, so the applier does not wait on a miss (a split or a
    /// merge may still read a page off these paths).
    async fn prefetch(&self) -> Result<HashMap<PageId, Arc<Page>>> {
        let mut pinned = HashMap::new();
        for (root, entries) in &self.writes.changes {
            let tree = BTree::open(*root);
            for key in entries.keys() {
                self.shared
                    .read_current_keeping(|r| tree.path(r, key), &mut pinned)
                    .await?;
            }
        }
        Ok(pinned)
    }

    /// Drops every change and releases every lock.
    pub fn rollback(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.writes = WriteSet::default();
        self.shared.locks.release_all(self.id);
        if let Some(s) = self.snapshot.take() {
            self.shared.release_snapshot(s);
        }
    }
}

impl Drop for Txn {
    /// A transaction dropped unfinished (its client went away) rolls back.
    fn drop(&mut self) {
        self.finish();
    }
}

/// Replays a write set into the trees, and persists auto-increment values.
fn apply_writes(st: &mut crate::engine::stage::Stage<'_>, writes: &WriteSet) -> TreeResult<()> {
    for (root, entries) in &writes.changes {
        let tree = BTree::open(*root);
        for (key, value) in entries {
            match value {
                Some(v) => tree.put(st, key, v).map(drop)?,
                None => tree.delete(st, key).map(drop)?,
            }
        }
    }
    for (&table, &max) in &writes.auto_inc {
        let header = read_header(st, table)?;
        if max > header.auto_inc {
            set_counters(st, table, max, header.next_space_id)?;
        }
    }
    Ok(())
}

/// Coerces each value to its column and checks NOT NULL, except column
/// `skip`'s, left as it is.
fn coerce_row(table: &TableDef, values: Row, skip: Option<usize>) -> Result<Row> {
    if values.len() != table.columns.len() {
        return Err(EngineError::ColumnCount);
    }
    values
        .into_iter()
        .zip(&table.columns)
        .enumerate()
        .map(|(i, (v, c))| match skip == Some(i) {
            true => Ok(v),
            false => coerce_value(c, v),
        })
        .collect()
}

/// Coerces a value to its column and checks NOT NULL.
pub(crate) fn coerce_value(c: &ColumnDef, v: Value) -> Result<Value> {
    let v = c.ty.coerce(v).map_err(|error| EngineError::Value {
        column: c.name.clone(),
        error,
    })?;
    if matches!(v, Value::Null) && !c.nullable {
        return Err(EngineError::NotNull(c.name.clone()));
    }
    Ok(v)
}

/// A stored row, with columns added since it was written at their defaults.
pub(crate) fn decode_stored(table: &TableDef, bytes: &[u8]) -> Result<Row> {
    let mut values = decode_row(&table.types(), bytes)?;
    for c in &table.columns[values.len().min(table.columns.len())..] {
        values.push(c.default.clone().unwrap_or(Value::Null));
    }
    Ok(values)
}

/// The key of `row` in `idx`: its columns, then — for a non-unique index,
/// or a unique one with a NULL part (NULLs never collide) — the clustered
/// key `pk`, which makes it unique.
pub(crate) fn index_key(table: &TableDef, idx: &IndexDef, row: &Row, pk: &[u8]) -> Result<Vec<u8>> {
    let mut key = Vec::new();
    for &c in &idx.columns {
        encode_key_part(&mut key, &table.columns[c].ty, &row[c]).map_err(|error| {
            EngineError::Value {
                column: table.columns[c].name.clone(),
                error,
            }
        })?;
    }
    if !std::ptr::eq(idx, &table.primary) && (!idx.unique || has_null(idx, row)) {
        key.extend_from_slice(pk);
    }
    Ok(key)
}

fn has_null(idx: &IndexDef, row: &Row) -> bool {
    idx.columns.iter().any(|&c| matches!(row[c], Value::Null))
}

/// The clustered key for primary-key values.
pub(crate) fn pk_key(table: &TableDef, pk: &[Value]) -> Result<Vec<u8>> {
    if table.has_hidden_key() {
        return Err(EngineError::Invalid(format!(
            "table {} has no primary key",
            table.name
        )));
    }
    if pk.len() != table.primary.columns.len() {
        return Err(EngineError::Invalid(format!(
            "the primary key of {} has {} columns, {} given",
            table.name,
            table.primary.columns.len(),
            pk.len()
        )));
    }
    encode_prefix(table, &table.primary, pk)
}

/// The encoding of leading values of an index's columns.
pub(crate) fn encode_prefix(table: &TableDef, idx: &IndexDef, values: &[Value]) -> Result<Vec<u8>> {
    let mut key = Vec::new();
    for (&c, v) in idx.columns.iter().zip(values) {
        let col = &table.columns[c];
        let v = col
            .ty
            .coerce(v.clone())
            .map_err(|error| EngineError::Value {
                column: col.name.clone(),
                error,
            })?;
        encode_key_part(&mut key, &col.ty, &v).map_err(|error| EngineError::Value {
            column: col.name.clone(),
            error,
        })?;
    }
    Ok(key)
}

pub(crate) fn duplicate(table: &TableDef, idx: &IndexDef, row: &Row) -> EngineError {
    let key = idx
        .columns
        .iter()
        .map(|&c| row[c].to_string())
        .collect::<Vec<_>>()
        .join("-");
    EngineError::DuplicateKey {
        index: format!("{}.{}", table.name, idx.name),
        key,
    }
}

pub(crate) fn auto_inc_value(v: &Value) -> u64 {
    match v {
        Value::Int(i) => (*i).max(0) as u64,
        Value::UInt(u) => *u,
        _ => 0,
    }
}
