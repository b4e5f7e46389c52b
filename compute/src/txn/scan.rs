//! Range scans through an index, merged with the transaction's own writes.
//!
//! Bounds are *prefixes* of the index's columns: `Included([5])` on an index
//! over (a, b) starts at the first key whose `a` is 5. Because keys are
//! memcomparable and self-delimiting, "the key's leading columns equal the
//! prefix" is "the key's bytes start with the prefix's bytes", and every
//! bound becomes a plain byte bound: an inclusive upper prefix `p` is
//! `Excluded(prefix_end(p))`, an exclusive lower one `Included(prefix_end(p))`.
//!
//! The transaction's own changes in the range are copied when the scan
//! starts and merged in key order: an own value replaces the tree's, an own
//! deletion hides it. A secondary index's entries lead to the row through the
//! clustered index at the same read position.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use super::{FoundRow, Txn, decode_stored, encode_prefix};
use crate::btree::{BTree, Cursor, Direction};
use crate::catalog::{IndexDef, TableDef};
use crate::engine::read::ReadAt;
use crate::error::{EngineError, Result};
use crate::types::Value;

/// The first byte string after every string that starts with `prefix`;
/// `None` if there is none (the prefix is all 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// An open scan; [`RowScan::next`] yields rows in index order.
pub struct RowScan {
    table: Arc<TableDef>,
    /// 0: the clustered index; i: secondary index i - 1.
    index: usize,
    at: ReadAt,
    dir: Direction,
    cursor: Cursor,
    tree_head: Option<(Vec<u8>, Vec<u8>)>,
    /// Entries read ahead from the tree (snapshot reads only), in order.
    tree_ahead: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    /// How many entries the next read-ahead takes: doubling from
    /// [`FIRST_READ_AHEAD`] so a scan stopped early by a LIMIT reads little.
    read_ahead: usize,
    tree_done: bool,
    own: VecDeque<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Entries the first read-ahead of a snapshot scan takes from one leaf.
const FIRST_READ_AHEAD: usize = 8;
/// The most a read-ahead takes.
const MAX_READ_AHEAD: usize = 128;

impl Txn {
    /// Rows through index `index` (0: primary, i: secondary i - 1) whose
    /// leading index columns lie between the prefixes `lower` and `upper`,
    /// as of the snapshot.
    pub async fn scan(
        &mut self,
        table: &TableDef,
        index: usize,
        lower: Bound<Vec<Value>>,
        upper: Bound<Vec<Value>>,
        dir: Direction,
    ) -> Result<RowScan> {
        let table = self.use_table(table).await?;
        let at = ReadAt::Snapshot(self.snapshot());
        self.open_scan(table, index, lower, upper, dir, at)
    }

    /// [`Txn::scan`] as of now (the write path: read, then lock each row
    /// with [`Txn::lock_key_for_update`] and check it again).
    pub async fn scan_current(
        &mut self,
        table: &TableDef,
        index: usize,
        lower: Bound<Vec<Value>>,
        upper: Bound<Vec<Value>>,
        dir: Direction,
    ) -> Result<RowScan> {
        let table = self.use_table(table).await?;
        let at = self.shared.current();
        self.saw_current();
        self.open_scan(table, index, lower, upper, dir, at)
    }

    fn open_scan(
        &mut self,
        table: Arc<TableDef>,
        index: usize,
        lower: Bound<Vec<Value>>,
        upper: Bound<Vec<Value>>,
        dir: Direction,
        at: ReadAt,
    ) -> Result<RowScan> {
        let idx = index_def(&table, index)?.clone();
        let encode = |v: &Vec<Value>| encode_prefix(&table, &idx, v);
        let lower = match lower {
            Bound::Unbounded => Bound::Unbounded,
            Bound::Included(p) => Bound::Included(encode(&p)?),
            Bound::Excluded(p) => match prefix_end(&encode(&p)?) {
                Some(end) => Bound::Included(end),
                None => return Ok(RowScan::empty(table, index, at, dir)),
            },
        };
        let upper = match upper {
            Bound::Unbounded => Bound::Unbounded,
            Bound::Excluded(p) => Bound::Excluded(encode(&p)?),
            Bound::Included(p) => {
                prefix_end(&encode(&p)?).map_or(Bound::Unbounded, Bound::Excluded)
            }
        };
        let mut own: VecDeque<_> = self
            .writes
            .changes
            .get(&idx.root())
            .map(|m| {
                m.range((lower.clone(), upper.clone()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if dir == Direction::Reverse {
            own = own.into_iter().rev().collect();
        }
        Ok(RowScan {
            cursor: BTree::open(idx.root()).cursor(lower, upper, dir),
            table,
            index,
            at,
            dir,
            tree_head: None,
            tree_ahead: Vec::new().into_iter(),
            read_ahead: FIRST_READ_AHEAD,
            tree_done: false,
            own,
        })
    }
}

fn index_def(table: &TableDef, index: usize) -> Result<&IndexDef> {
    match index {
        0 => Ok(&table.primary),
        i => table
            .secondary
            .get(i - 1)
            .ok_or_else(|| EngineError::Invalid(format!("table {} has no index {i}", table.name))),
    }
}

impl RowScan {
    fn empty(table: Arc<TableDef>, index: usize, at: ReadAt, dir: Direction) -> RowScan {
        RowScan {
            cursor: BTree::open(table.primary.root()).cursor(
                Bound::Unbounded,
                Bound::Unbounded,
                dir,
            ),
            table,
            index,
            at,
            dir,
            tree_head: None,
            tree_ahead: Vec::new().into_iter(),
            read_ahead: FIRST_READ_AHEAD,
            tree_done: true,
            own: VecDeque::new(),
        }
    }

    /// The next row, or `None` at the end of the range.
    pub async fn next(&mut self, txn: &mut Txn) -> Result<Option<FoundRow>> {
        let Some((key, value)) = self.next_entry(txn).await? else {
            return Ok(None);
        };
        if self.index == 0 {
            return Ok(Some(FoundRow {
                values: decode_stored(&self.table, &value)?,
                key,
            }));
        }
        // A secondary entry's value is the row's clustered key.
        txn.row_at(&self.table, self.at, value)
            .await?
            .map(Some)
            .ok_or_else(|| {
                EngineError::Corrupt(format!(
                    "an entry of index {} of {} leads to no row",
                    self.index, self.table.name
                ))
            })
    }

    /// The tree's next entry. A snapshot read takes several from a leaf at
    /// once (the snapshot cannot change under them); a current read takes
    /// one at a time, each as of the moment it is read.
    async fn next_tree_entry(&mut self, txn: &mut Txn) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if let Some(e) = self.tree_ahead.next() {
            return Ok(Some(e));
        }
        if let ReadAt::Current(_) = self.at {
            let e = txn.shared.next_entry(self.at, &mut self.cursor).await?;
            txn.saw_current();
            return Ok(e);
        }
        let mut batch = Vec::with_capacity(self.read_ahead);
        (txn.shared)
            .next_entries(self.at, &mut self.cursor, self.read_ahead, &mut batch)
            .await?;
        self.read_ahead = (self.read_ahead * 2).min(MAX_READ_AHEAD);
        self.tree_ahead = batch.into_iter();
        Ok(self.tree_ahead.next())
    }

    /// The next live entry of the merge of tree and own writes: its key
    /// and value (a secondary index's value is the row's clustered key).
    pub(crate) async fn next_entry(&mut self, txn: &mut Txn) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        loop {
            if self.tree_head.is_none() && !self.tree_done {
                self.tree_head = self.next_tree_entry(txn).await?;
                self.tree_done = self.tree_head.is_none();
            }
            let own_first = match (self.own.front(), &self.tree_head) {
                (None, None) => return Ok(None),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((own, _)), Some((tree, _))) => {
                    let ord = match self.dir {
                        Direction::Forward => own.cmp(tree),
                        Direction::Reverse => tree.cmp(own),
                    };
                    if ord.is_eq() {
                        self.tree_head = None;
                    }
                    ord.is_le()
                }
            };
            if !own_first {
                return Ok(self.tree_head.take());
            }
            let (key, value) = self.own.pop_front().expect("checked above");
            if let Some(value) = value {
                return Ok(Some((key, value)));
            }
        }
    }
}
