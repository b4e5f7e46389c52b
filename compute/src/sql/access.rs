//! Access paths: which index a statement reads through, and the rows it
//! finds there.
//!
//! At compile time ([`choose`]) the WHERE clause's AND-ed conjuncts that
//! compare a column with a constant (`=`, `IN`, `<`, `<=`, `>`, `>=`,
//! `BETWEEN`) are matched against each index: the longest prefix of
//! equalities, then a range on the next column, wins (a unique index fully
//! bound first; the primary key on ties). Once ANALYZE TABLE has counted
//! an index's distinct keys ([`super::stats`]), the path with the fewest
//! estimated rows wins before the count of equalities is looked at. At run time ([`resolve`]) the
//! constants are evaluated and converted to the column's type; a value that
//! does not convert exactly (`id = 1.5`, `id = 'x'`) makes that part of the
//! path unbounded instead. The whole WHERE clause is always checked again on
//! every row, so a path only ever narrows what is read.
//!
//! Locking reads ([`read_rows`] with `current`) read the candidates as of
//! now, then lock each row and read it again, as InnoDB's current reads do.

use std::cmp::Ordering;
use std::ops::Bound;

use crate::btree::Direction;
use crate::catalog::{IndexDef, TableDef};
use crate::txn::{FoundRow, Txn};
use crate::types::{ColumnType, Value};

use super::SqlError;
use super::covering::Cover;
use super::expr::{CmpOp, Ctx, Env, Expr, sql_cmp};
use super::plan::{Access, SelectPlan};

/// The most points an IN list (or several) may expand into.
const MAX_POINTS: usize = 1000;

/// What the conjuncts say about one column.
#[derive(Default, Clone)]
struct ColumnFacts {
    eq: Option<Vec<Expr>>,
    lower: Option<(Expr, bool)>,
    upper: Option<(Expr, bool)>,
}

pub(crate) fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::And(a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        other => out.push(other),
    }
}

fn facts(filter: Option<&Expr>, ncols: usize) -> Vec<ColumnFacts> {
    let mut list = Vec::new();
    if let Some(f) = filter {
        conjuncts(f, &mut list);
    }
    facts_at(&list, 0, ncols, &Expr::is_constant)
}

/// What the conjuncts say about the columns `offset..offset + ncols` of a
/// row, comparing them with values `usable` accepts (constants; for a
/// join, expressions over the sources already read).
fn facts_at(
    list: &[&Expr],
    offset: usize,
    ncols: usize,
    usable: &dyn Fn(&Expr) -> bool,
) -> Vec<ColumnFacts> {
    let mut facts = vec![ColumnFacts::default(); ncols];
    let local = |e: &Expr| match e {
        Expr::Column(i, _) if *i >= offset && *i < offset + ncols => Some(*i - offset),
        _ => None,
    };
    for c in list {
        match c {
            Expr::Cmp(op, a, b, _) => {
                let (col, value, op) = match (local(a), local(b)) {
                    (Some(i), _) if usable(b) => (i, b.as_ref(), *op),
                    (_, Some(i)) if usable(a) => (i, a.as_ref(), flip(*op)),
                    _ => continue,
                };
                let f = &mut facts[col];
                let v = value.clone();
                match op {
                    CmpOp::Eq => f.eq = Some(vec![v]),
                    CmpOp::Lt => f.upper = Some((v, false)),
                    CmpOp::Le => f.upper = Some((v, true)),
                    CmpOp::Gt => f.lower = Some((v, false)),
                    CmpOp::Ge => f.lower = Some((v, true)),
                    CmpOp::Ne | CmpOp::NullSafeEq => {}
                }
            }
            Expr::In(e, list, false, _) => {
                if let (Some(i), true) = (local(e), list.iter().all(usable))
                    && facts[i].eq.is_none()
                {
                    facts[i].eq = Some(list.clone());
                }
            }
            Expr::Between(e, lo, hi, false, _) => {
                if let (Some(i), true, true) = (local(e), usable(lo), usable(hi)) {
                    facts[i].lower = Some((lo.as_ref().clone(), true));
                    facts[i].upper = Some((hi.as_ref().clone(), true));
                }
            }
            _ => {}
        }
    }
    facts
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        other => other,
    }
}

fn indexes(t: &TableDef) -> impl Iterator<Item = (usize, &IndexDef)> {
    let primary = (!t.has_hidden_key()).then_some((0, &t.primary));
    primary
        .into_iter()
        .chain(t.secondary.iter().enumerate().map(|(i, x)| (i + 1, x)))
}

/// The access path through `idx` the facts allow, and its score.
/// How a path ranks (higher is better): a unique index fully bound, then
/// fewer estimated rows (only for an analyzed table: [`super::stats`]),
/// more equalities, a range, the primary key, a narrower index.
type Score = (
    u8,
    std::cmp::Reverse<u64>,
    usize,
    u8,
    u8,
    std::cmp::Reverse<usize>,
);

fn path(t: &TableDef, idx: &IndexDef, facts: &[ColumnFacts], number: usize) -> (Access, Score) {
    let mut access = Access {
        index: number,
        ..Default::default()
    };
    let mut points = 1usize;
    for &c in &idx.columns {
        match &facts[c].eq {
            Some(alts) if points.saturating_mul(alts.len()) <= MAX_POINTS => {
                points *= alts.len();
                access.eq.push(alts.clone());
            }
            _ => break,
        }
    }
    let full = access.eq.len() == idx.columns.len();
    if let Some(&next) = idx.columns.get(access.eq.len()) {
        access.lower = facts[next].lower.clone();
        access.upper = facts[next].upper.clone();
    }
    let ranged = u8::from(access.lower.is_some() || access.upper.is_some());
    let estimate = match super::stats::analyzed(t) {
        true => super::planner::estimate(t, &access),
        false => 0,
    };
    let score = (
        u8::from(full && idx.unique),
        std::cmp::Reverse(estimate),
        access.eq.len(),
        ranged,
        u8::from(number == 0),
        // On a tie, the narrower index (cheaper to read).
        std::cmp::Reverse(idx.columns.len()),
    );
    (access, score)
}

/// The best access path for a WHERE clause.
pub(crate) fn choose(t: &TableDef, filter: Option<&Expr>) -> Access {
    best(t, &facts(filter, t.columns.len())).0
}

fn best(t: &TableDef, facts: &[ColumnFacts]) -> (Access, Vec<usize>) {
    let paths: Vec<_> = indexes(t)
        .map(|(n, idx)| path(t, idx, facts, n))
        .filter(|(_, (_, _, eq, ranged, _, _))| *eq > 0 || *ranged > 0)
        .collect();
    let possible = paths.iter().map(|(a, _)| a.index).collect();
    let access = paths
        .into_iter()
        .max_by_key(|(_, score)| *score)
        .map(|(a, _)| a)
        .unwrap_or_default();
    (access, possible)
}

/// The best access path to source columns `offset..` of a join's row
/// (table `t`), with the indexes that could serve (EXPLAIN's
/// possible_keys).
pub(crate) fn choose_at(
    t: &TableDef,
    list: &[&Expr],
    offset: usize,
    usable: &dyn Fn(&Expr) -> bool,
) -> (Access, Vec<usize>) {
    best(t, &facts_at(list, offset, t.columns.len(), usable))
}

/// The index definition behind access number `n` (0: primary).
pub(crate) fn index_def(t: &TableDef, n: usize) -> &IndexDef {
    if n == 0 {
        &t.primary
    } else {
        &t.secondary[n - 1]
    }
}

/// [`choose`], then whether the path gives the ORDER BY's order (or a full
/// scan of an index that does when nothing narrows the read).
pub(crate) fn choose_for_select(plan: &mut SelectPlan, t: &TableDef) {
    plan.access = choose(t, plan.filter.as_ref());
    let full = plan.access.is_full_scan();
    order_for(plan, t, full);
    plan.access.cover = super::covering::cover(plan, t, plan.access.index);
    if full
        && plan.access.cover.is_none()
        && plan.index_order.is_none()
        && let Some((n, cover)) = super::covering::full_index_scan(plan, t)
    {
        plan.access.index = n;
        plan.access.cover = Some(cover);
    }
}

/// Whether the plan's access path gives the ORDER BY's order (or, when
/// `full`, a full scan of an index that does); sets `index_order`.
pub(crate) fn order_for(plan: &mut SelectPlan, t: &TableDef, full: bool) {
    if plan.order.is_empty() || plan.grouped {
        return;
    }
    let single_point = plan.access.eq.iter().all(|alts| alts.len() == 1);
    if single_point && let Some(dir) = gives_order(plan, t, plan.access.index) {
        plan.index_order = Some(dir);
        return;
    }
    if full {
        for (n, _) in indexes(t) {
            if let Some(dir) = gives_order(plan, t, n) {
                plan.access.index = n;
                plan.index_order = Some(dir);
                return;
            }
        }
    }
}

/// `Some(reverse)` if reading index `n` after the access path's equality
/// prefix yields the ORDER BY's order.
fn gives_order(plan: &SelectPlan, t: &TableDef, n: usize) -> Option<bool> {
    let idx = if n == 0 {
        &t.primary
    } else {
        t.secondary.get(n - 1)?
    };
    let skip = if n == plan.access.index {
        plan.access.eq.len()
    } else {
        0
    };
    let rest = idx.columns.get(skip..)?;
    let desc = plan.order.first()?.desc;
    for (key, &col) in plan.order.iter().zip(rest) {
        match key.expr {
            Expr::Column(c, _) if c == col && key.desc == desc => {}
            _ => return None,
        }
    }
    if plan.order.len() > rest.len() {
        return None;
    }
    Some(desc)
}

/// Where to read, with the constants evaluated.
pub(crate) enum Keys {
    /// Exact prefixes (IN lists, equalities), in ascending order.
    Points(Vec<Vec<Value>>),
    Range(Bound<Vec<Value>>, Bound<Vec<Value>>),
}

/// `v` in the column's stored form, if that changes nothing a comparison
/// would see; `None` otherwise (or for NULL).
pub(crate) fn exact(ty: &ColumnType, v: Value) -> Option<Value> {
    if matches!(v, Value::Null) {
        return None;
    }
    let is_string = matches!(
        ty,
        ColumnType::Char { .. }
            | ColumnType::VarChar { .. }
            | ColumnType::Text { .. }
            | ColumnType::Blob { .. }
    );
    if is_string != matches!(v, Value::Bytes(_)) {
        return None;
    }
    let coerced = ty.coerce(v.clone()).ok()?;
    (sql_cmp(&coerced, &v, ty.collation()) == Some(Ordering::Equal)).then_some(coerced)
}

/// The keys an access path reads, for these parameters.
pub(crate) fn resolve(access: &Access, t: &TableDef, env: &Env<'_>) -> Result<Keys, SqlError> {
    resolve_at(access, t, env, &[])
}

/// [`resolve`] with key expressions over `row` (a join's bound sources).
pub(crate) fn resolve_at(
    access: &Access,
    t: &TableDef,
    env: &Env<'_>,
    row: &[Value],
) -> Result<Keys, SqlError> {
    let idx = index_def(t, access.index);
    let cx = Ctx {
        env,
        row,
        aggs: &[],
    };
    let full = Keys::Range(Bound::Unbounded, Bound::Unbounded);
    let mut points: Vec<Vec<Value>> = vec![Vec::new()];
    for (alts, &col) in access.eq.iter().zip(&idx.columns) {
        let ty = &t.columns[col].ty;
        let mut values = Vec::new();
        for a in alts {
            match a.eval(&cx)? {
                Value::Null => {}
                v => match exact(ty, v) {
                    Some(v) => values.push(v),
                    None => return Ok(full),
                },
            }
        }
        values.sort_by(|a, b| crate::types::compare(ty, a, b));
        values.dedup_by(|a, b| crate::types::compare(ty, a, b) == Ordering::Equal);
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut p = p.clone();
                    p.push(v.clone());
                    p
                })
            })
            .collect();
    }
    if points.len() != 1 || (access.lower.is_none() && access.upper.is_none()) {
        return Ok(if access.eq.is_empty() {
            full
        } else {
            Keys::Points(points)
        });
    }
    let prefix = points.pop().expect("one point");
    let next = idx.columns.get(access.eq.len()).map(|&c| &t.columns[c].ty);
    let bound = |b: &Option<(Expr, bool)>| -> Result<Bound<Vec<Value>>, SqlError> {
        let with_prefix = |p: &Vec<Value>| match p.is_empty() {
            true => Bound::Unbounded,
            false => Bound::Included(p.clone()),
        };
        let (Some((e, inclusive)), Some(ty)) = (b, next) else {
            return Ok(with_prefix(&prefix));
        };
        match exact(ty, e.eval(&cx)?) {
            Some(v) => {
                let mut key = prefix.clone();
                key.push(v);
                Ok(if *inclusive {
                    Bound::Included(key)
                } else {
                    Bound::Excluded(key)
                })
            }
            None => Ok(with_prefix(&prefix)),
        }
    };
    Ok(Keys::Range(bound(&access.lower)?, bound(&access.upper)?))
}

/// Reads the rows an access path finds, calling `keep` on each (as of the
/// snapshot, or — `current` — locked and as of now) until it returns false.
/// With `cover`, a snapshot read of a transaction without writes makes the
/// rows from the index entries alone ([`super::covering`]).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read_rows(
    txn: &mut Txn,
    t: &TableDef,
    index: usize,
    keys: Keys,
    reverse: bool,
    current: bool,
    cover: Option<Cover>,
    keep: &mut (dyn FnMut(FoundRow) -> Result<bool, SqlError> + Send),
) -> Result<(), SqlError> {
    let dir = if reverse {
        Direction::Reverse
    } else {
        Direction::Forward
    };
    let full_pk = index == 0 && !t.has_hidden_key();
    let ranges = match keys {
        Keys::Points(points)
            if full_pk && points.iter().all(|p| p.len() == t.primary.columns.len()) =>
        {
            let mut points = points;
            if reverse {
                points.reverse();
            }
            for p in points {
                let row = match current {
                    true => txn.get_for_update(t, &p).await?,
                    false => txn.get(t, &p).await?,
                };
                if let Some(row) = row
                    && !keep(row)?
                {
                    break;
                }
            }
            return Ok(());
        }
        Keys::Points(mut points) => {
            if reverse {
                points.reverse();
            }
            points
                .into_iter()
                .map(|p| (Bound::Included(p.clone()), Bound::Included(p)))
                .collect()
        }
        Keys::Range(lo, hi) => vec![(lo, hi)],
    };
    let cover = cover.filter(|_| !current && !txn.has_writes());
    for (lo, hi) in ranges {
        let more = match cover {
            Some(cover) => scan_covering(txn, t, index, cover, (lo, hi), dir, keep).await?,
            None => scan_range(txn, t, index, lo, hi, dir, current, keep).await?,
        };
        if !more {
            break;
        }
    }
    Ok(())
}

/// A snapshot scan of secondary index `index` whose entries alone make
/// the rows.
async fn scan_covering(
    txn: &mut Txn,
    t: &TableDef,
    index: usize,
    cover: Cover,
    (lo, hi): (Bound<Vec<Value>>, Bound<Vec<Value>>),
    dir: Direction,
    keep: &mut (dyn FnMut(FoundRow) -> Result<bool, SqlError> + Send),
) -> Result<bool, SqlError> {
    let mut scan = txn.scan(t, index, lo, hi, dir).await?;
    while let Some((key, value)) = scan.next_entry(txn).await? {
        let values = super::covering::row(t, index, cover, &key, &value)?;
        if !keep(FoundRow { key: value, values })? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
async fn scan_range(
    txn: &mut Txn,
    t: &TableDef,
    index: usize,
    lo: Bound<Vec<Value>>,
    hi: Bound<Vec<Value>>,
    dir: Direction,
    current: bool,
    keep: &mut (dyn FnMut(FoundRow) -> Result<bool, SqlError> + Send),
) -> Result<bool, SqlError> {
    if !current {
        let mut scan = txn.scan(t, index, lo, hi, dir).await?;
        while let Some(row) = scan.next(txn).await? {
            if !keep(row)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    let mut scan = txn.scan_current(t, index, lo, hi, dir).await?;
    let mut candidates = Vec::new();
    while let Some(row) = scan.next(txn).await? {
        candidates.push(row.key);
    }
    for key in candidates {
        if let Some(row) = txn.lock_key_for_update(t, key).await?
            && !keep(row)?
        {
            return Ok(false);
        }
    }
    Ok(true)
}
