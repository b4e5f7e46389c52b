//! Row-count and distinct-key estimates per table and index, for choosing
//! access paths, ordering joins and EXPLAIN's `rows`.
//!
//! A table's row estimate is what the last full read of it saw (a full
//! scan through any index counts its rows on the way, so keeping it costs
//! one counter per scanned row and one map write per full scan; no query
//! ever scans for statistics). Tables never read in full get
//! [`DEFAULT_ROWS`].
//!
//! Distinct-key estimates come from `ANALYZE TABLE` ([`analyze`]): it
//! reads each index's keys in order (keys only: a secondary index is not
//! joined to its rows) and counts, for each prefix length k, how many
//! distinct values the first k index columns take — the key parts are
//! self-delimiting and memcomparable, so equal part bytes are equal values
//! (NULLs equal, as InnoDB's default `nulls_equal`; strings under the
//! column's collation). They are what SHOW INDEX's `Cardinality` and
//! information_schema.STATISTICS.CARDINALITY show and what
//! [`super::planner::estimate`] divides the rows by for an equality on an
//! index prefix; without them it assumes a tenth of the rows per column.
//! They are kept in memory (lost at restart, like MySQL's non-persistent
//! statistics) and tied to the index's root page, so an index rebuilt by
//! ALTER TABLE drops its figures. Besides ANALYZE TABLE, they are
//! recomputed in the background once enough of the table changed since
//! the last computation (MySQL's `innodb_stats_auto_recalc`): committed
//! statements report their changed rows ([`changed`], an atomic add under
//! the map's read lock), and the one that passes `16 + rows / 10` (rows as
//! of the last computation, InnoDB's threshold) gets `true` back and starts
//! the refresh; at most one runs per table ([`Known::refreshing`]), and
//! not sooner than [`MIN_REFRESH_INTERVAL`] after the last computation
//! started (it waits for its turn, as InnoDB's background statistics
//! thread puts a table back in its queue).
//! Estimates only steer plan choices: a stale one makes a plan slower,
//! never an answer wrong.
//!
//! The map is process-wide, keyed by (database id, table id, the LSN that
//! created the definition), which names one table of one cluster.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::ops::Bound;

use crate::btree::Direction;
use crate::catalog::TableDef;
use crate::txn::Txn;
use crate::types::{ColumnType, Value};
use strata_wal::PageId;

use super::{Output, SqlError};

/// The estimate for a table never read in full.
pub(crate) const DEFAULT_ROWS: u64 = 1000;
/// At most this many tables are remembered (the map is cleared when full).
const MAX_TABLES: usize = 100_000;

type Key = (u32, u32, u64);

/// What is known of one table.
#[derive(Default)]
struct Known {
    rows: Option<u64>,
    /// Per analyzed index: its root page and, for each prefix length k
    /// (from 1), the distinct values of its first k columns.
    distinct: Vec<(PageId, Vec<u64>)>,
    /// The rows the last computation of `distinct` saw (0 before any).
    base_rows: u64,
    /// Rows changed (inserted, updated, deleted) since that computation.
    changed: AtomicU64,
    /// A background refresh is running (or waiting for its turn).
    refreshing: AtomicBool,
    /// When the last computation started, in ms since [`epoch`] plus one
    /// (0: never).
    computed_at_ms: AtomicU64,
}

/// Background refreshes of one table start at least this far apart
/// (InnoDB's `MIN_RECALC_INTERVAL`): a table written faster than a tenth
/// of its rows per interval is recomputed once per interval, not once per
/// tenth, so the cost stays bounded under sustained writes.
pub(crate) const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// How long a background refresh of `t` waits before it may compute:
/// [`MIN_REFRESH_INTERVAL`] after the last computation started.
pub(crate) fn refresh_delay(t: &TableDef) -> Duration {
    let last = map()
        .read()
        .get(&key(t))
        .map_or(0, |k| k.computed_at_ms.load(Ordering::Relaxed));
    delay(last, now_ms())
}

/// The wait at `now` after a computation started at `last` (both in
/// [`now_ms`]'s terms; `last` 0: never).
fn delay(last: u64, now: u64) -> Duration {
    if last == 0 {
        return Duration::ZERO;
    }
    let due = last.saturating_add(MIN_REFRESH_INTERVAL.as_millis() as u64);
    Duration::from_millis(due.saturating_sub(now))
}

/// Changed rows that start a refresh: InnoDB's `16 + n_rows / 10`.
fn threshold(base_rows: u64) -> u64 {
    16 + base_rows / 10
}

fn map() -> &'static RwLock<HashMap<Key, Known>> {
    static MAP: OnceLock<RwLock<HashMap<Key, Known>>> = OnceLock::new();
    MAP.get_or_init(|| RwLock::new(HashMap::new()))
}

fn update(t: &TableDef, change: impl FnOnce(&mut Known)) {
    let mut m = map().write();
    if m.len() >= MAX_TABLES && !m.contains_key(&key(t)) {
        m.clear();
    }
    change(m.entry(key(t)).or_default());
}

fn key(t: &TableDef) -> Key {
    (t.db_id, t.id, t.created_lsn.0)
}

/// The estimated number of rows of `t`.
pub(crate) fn rows(t: &TableDef) -> u64 {
    map()
        .read()
        .get(&key(t))
        .and_then(|k| k.rows)
        .unwrap_or(DEFAULT_ROWS)
}

/// Records what a full read of `t` saw.
pub(crate) fn observe(t: &TableDef, rows: u64) {
    if map().read().get(&key(t)).and_then(|k| k.rows) == Some(rows) {
        return;
    }
    update(t, |k| k.rows = Some(rows));
}

/// The distinct values of the first k columns of index `index` (0:
/// primary) for each k from 1, if ANALYZE TABLE counted them.
pub(crate) fn distinct(t: &TableDef, index: usize) -> Option<Vec<u64>> {
    let root = index_root(t, index)?;
    let m = map().read();
    let known = m.get(&key(t))?;
    known
        .distinct
        .iter()
        .find(|(r, _)| *r == root)
        .map(|(_, d)| d.clone())
}

/// Whether ANALYZE TABLE counted distinct keys of any index of `t`.
pub(crate) fn analyzed(t: &TableDef) -> bool {
    map()
        .read()
        .get(&key(t))
        .is_some_and(|k| !k.distinct.is_empty())
}

fn index_root(t: &TableDef, index: usize) -> Option<PageId> {
    match index {
        0 => Some(t.primary.root()),
        i => t.secondary.get(i - 1).map(|x| x.root()),
    }
}

/// Records `n` committed changed rows of `t`. `true`: the changes since
/// the last computation passed the threshold and no refresh is running —
/// the caller starts one ([`analyze`] in a transaction of its own, then
/// [`refreshed`]).
pub(crate) fn changed(t: &TableDef, n: u64) -> bool {
    if n == 0 {
        return false;
    }
    let add = |k: &Known| {
        let total = k.changed.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        total >= threshold(k.base_rows) && !k.refreshing.swap(true, Ordering::AcqRel)
    };
    if let Some(k) = map().read().get(&key(t)) {
        return add(k);
    }
    let mut start = false;
    update(t, |k| start = add(k));
    start
}

/// A background refresh of `t` has ended (done or failed). `true`: the
/// changes reported while it ran already pass the threshold (they could
/// not start a refresh of their own), so the caller runs another one.
pub(crate) fn refreshed(t: &TableDef) -> bool {
    let m = map().read();
    let Some(k) = m.get(&key(t)) else {
        return false;
    };
    k.refreshing.store(false, Ordering::Release);
    k.changed.load(Ordering::Relaxed) >= threshold(k.base_rows)
        && !k.refreshing.swap(true, Ordering::AcqRel)
}

/// ANALYZE TABLE: reads `t` through each of its indexes (in the
/// transaction's snapshot) and records its rows and each index's
/// distinct-prefix counts.
pub(crate) async fn analyze(txn: &mut Txn, t: &TableDef) -> Result<(), SqlError> {
    // Changes from here on count toward the next computation.
    update(t, |k| {
        k.changed.store(0, Ordering::Relaxed);
        k.computed_at_ms.store(now_ms(), Ordering::Relaxed);
    });
    let mut counted = Vec::new();
    let mut rows = 0;
    for index in 0..=t.secondary.len() {
        let Some(root) = index_root(t, index) else {
            continue;
        };
        let idx = super::access::index_def(t, index);
        let Some(types) = idx
            .columns
            .iter()
            .map(|&c| t.columns.get(c).map(|col| &col.ty))
            .collect::<Option<Vec<&ColumnType>>>()
        else {
            return Err(SqlError::new(
                1034,
                "HY000",
                format!(
                    "Index {} of table '{}' names a missing column",
                    idx.name, t.name
                ),
            ));
        };
        let mut counts = vec![0u64; idx.columns.len()];
        // The previous key and where each of its first columns ends.
        let mut prev: Option<(Vec<u8>, Vec<usize>)> = None;
        let mut seen = 0u64;
        let mut scan = txn
            .scan(
                t,
                index,
                Bound::Unbounded,
                Bound::Unbounded,
                Direction::Forward,
            )
            .await?;
        // Keys, not rows: equal key parts are equal values under the
        // column's collation (NULLs equal), so counting needs no decoding
        // and a secondary index no visit to the clustered rows.
        while let Some((key, _)) = scan.next_entry(txn).await? {
            seen += 1;
            let ends = part_ends(&types, &key).ok_or_else(|| {
                SqlError::from(crate::error::EngineError::Corrupt(format!(
                    "a key of index {} of table '{}' does not split into its columns",
                    idx.name, t.name
                )))
            })?;
            let first_change = match &prev {
                None => 0,
                // Parts are self-delimiting: the first k parts are equal
                // exactly when the keys' bytes up to the k-th end are.
                Some((p, p_ends)) => (0..ends.len())
                    .find(|&i| key[..ends[i]] != p[..p_ends[i]])
                    .unwrap_or(counts.len()),
            };
            counts[first_change..].iter_mut().for_each(|c| *c += 1);
            prev = Some((key, ends));
        }
        rows = rows.max(seen);
        counted.push((root, counts));
    }
    update(t, |k| {
        k.rows = Some(rows);
        k.distinct = counted;
        k.base_rows = rows;
    });
    Ok(())
}

/// Where each of the first `types.len()` parts of `key` ends.
fn part_ends(types: &[&ColumnType], key: &[u8]) -> Option<Vec<usize>> {
    let mut at = 0;
    types
        .iter()
        .map(|ty| {
            at += crate::key::part_len(ty, &key[at..])?;
            Some(at)
        })
        .collect()
}

/// ANALYZE TABLE's answer: one row, `db.table analyze status OK`.
pub(crate) fn analyze_output(db: &str, table: &str) -> Output {
    let text = |s: &str| Value::Bytes(s.as_bytes().to_vec());
    Output::Rows {
        columns: ["Table", "Op", "Msg_type", "Msg_text"]
            .iter()
            .map(|n| super::meta::expr_column(n, super::meta::Kind::Text))
            .collect(),
        rows: vec![vec![
            text(&format!("{db}.{table}")),
            text("analyze"),
            text("status"),
            text("OK"),
        ]],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_counts_replace_the_default() {
        let mut t = crate::sql::names::Names::empty_table();
        t.db_id = 77;
        t.id = 991;
        assert_eq!(rows(&t), DEFAULT_ROWS);
        observe(&t, 5);
        assert_eq!(rows(&t), 5);
        observe(&t, 0);
        assert_eq!(rows(&t), 0);
    }

    #[test]
    fn refreshes_wait_for_the_interval_after_the_last_computation() {
        let interval = MIN_REFRESH_INTERVAL.as_millis() as u64;
        assert_eq!(delay(0, 5), Duration::ZERO);
        assert_eq!(delay(1000, 1000), MIN_REFRESH_INTERVAL);
        assert_eq!(
            delay(1000, 1250),
            MIN_REFRESH_INTERVAL - Duration::from_millis(250)
        );
        assert_eq!(delay(1000, 1000 + interval), Duration::ZERO);
        assert_eq!(delay(1000, 5000 + interval), Duration::ZERO);
        // `analyze` records its start.
        let mut t = crate::sql::names::Names::empty_table();
        t.db_id = 79;
        t.id = 993;
        assert_eq!(refresh_delay(&t), Duration::ZERO);
        update(&t, |k| k.computed_at_ms.store(now_ms(), Ordering::Relaxed));
        assert!(refresh_delay(&t) > Duration::ZERO);
    }

    #[test]
    fn enough_changes_start_one_refresh_at_a_time() {
        let mut t = crate::sql::names::Names::empty_table();
        t.db_id = 78;
        t.id = 992;
        // Never computed: 16 changed rows start a refresh.
        assert!(!changed(&t, 10));
        assert!(!changed(&t, 0));
        assert!(changed(&t, 6));
        // One at a time; changes made meanwhile start the next at its end.
        assert!(!changed(&t, 100));
        assert!(refreshed(&t));
        assert!(!changed(&t, 1));
        update(&t, |k| k.changed.store(0, Ordering::Relaxed));
        assert!(!refreshed(&t));
        assert!(changed(&t, 16));
        // (`analyze` restarts the count when it starts.)
        update(&t, |k| k.changed.store(0, Ordering::Relaxed));
        assert!(!refreshed(&t));
        // A computation over 1000 rows resets the count; 116 are needed.
        update(&t, |k| {
            k.base_rows = 1000;
            k.changed.store(0, Ordering::Relaxed);
        });
        assert!(!changed(&t, 115));
        assert!(changed(&t, 1));
    }
}
