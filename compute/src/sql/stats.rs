//! Row-count estimates per table, for ordering joins and EXPLAIN's `rows`.
//!
//! An estimate is what the last full read of the table saw (a full scan
//! through any index counts its rows on the way, so keeping it costs one
//! counter per scanned row and one map write per full scan; no query ever
//! scans for statistics). Tables never read in full get
//! [`DEFAULT_ROWS`]. Estimates only steer plan choices: a stale one makes
//! a plan slower, never an answer wrong.
//!
//! The map is process-wide, keyed by (database id, table id, the LSN that
//! created the definition), which names one table of one cluster.

use std::collections::HashMap;
use std::sync::OnceLock;

use parking_lot::RwLock;

use crate::catalog::TableDef;

/// The estimate for a table never read in full.
pub(crate) const DEFAULT_ROWS: u64 = 1000;
/// At most this many tables are remembered (the map is cleared when full).
const MAX_TABLES: usize = 100_000;

type Key = (u32, u32, u64);

fn map() -> &'static RwLock<HashMap<Key, u64>> {
    static MAP: OnceLock<RwLock<HashMap<Key, u64>>> = OnceLock::new();
    MAP.get_or_init(|| RwLock::new(HashMap::new()))
}

fn key(t: &TableDef) -> Key {
    (t.db_id, t.id, t.created_lsn.0)
}

/// The estimated number of rows of `t`.
pub(crate) fn rows(t: &TableDef) -> u64 {
    map().read().get(&key(t)).copied().unwrap_or(DEFAULT_ROWS)
}

/// Records what a full read of `t` saw.
pub(crate) fn observe(t: &TableDef, rows: u64) {
    let k = key(t);
    if map().read().get(&k) == Some(&rows) {
        return;
    }
    let mut m = map().write();
    if m.len() >= MAX_TABLES {
        m.clear();
    }
    m.insert(k, rows);
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
}
