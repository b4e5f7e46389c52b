//! SELECT over one table (or none): read through the access path, filter,
//! group and aggregate, DISTINCT, sort (unless the index gave the order),
//! OFFSET/LIMIT, and the result columns with values of their types.
//!
//! Rows stream (and reading stops at the limit) only when nothing after
//! the filter needs every row: no aggregate, no DISTINCT, and an order the
//! index already gives.

use std::cmp::Ordering;

use crate::txn::Txn;
use crate::types::{Collation, Decimal, Value};

use super::access::{read_rows, resolve};
use super::expr::{ArithOp, Ctx, Env, arith, sort_cmp};
use super::meta::{self, Kind};
use super::plan::{AggFunc, AggSpec, SelectPlan};
use super::{Output, SqlError};

/// One result row before the final projection: its output values and the
/// ORDER BY values that are not output values ([`Shape::key_from`]).
struct Produced {
    out: Vec<Value>,
    keys: Vec<Value>,
}

/// Where an ORDER BY value of a [`Produced`] row is.
#[derive(Clone, Copy)]
enum KeyFrom {
    /// Output value `j` (the key is a SELECT item's expression).
    Out(usize),
    /// `Produced::keys[m]`.
    Own(usize),
}

/// How a query's rows become [`Produced`] rows, decided once per run: an
/// ORDER BY key that is a SELECT item is read from the output instead of
/// being evaluated again, and an item that is a plain column read by no
/// other item takes the row's value instead of a copy.
struct Shape {
    key_from: Vec<KeyFrom>,
    /// The ORDER BY keys (positions in `plan.order`) evaluated per row.
    own_keys: Vec<usize>,
    /// Per item: the row column it takes (moved; the row is not used again).
    moves: Vec<Option<usize>>,
    /// Every item is moved, from strictly increasing columns: the row
    /// becomes the output in place (no second vector per row).
    in_place: bool,
}

impl Shape {
    fn of(plan: &SelectPlan) -> Shape {
        let mut own_keys = Vec::new();
        let key_from = plan
            .order
            .iter()
            .enumerate()
            .map(
                |(k, key)| match plan.items.iter().position(|i| i.expr == key.expr) {
                    Some(j) => KeyFrom::Out(j),
                    None => {
                        own_keys.push(k);
                        KeyFrom::Own(own_keys.len() - 1)
                    }
                },
            )
            .collect();
        let column = |e: &super::expr::Expr| match e {
            super::expr::Expr::Column(i, _) => Some(*i),
            _ => None,
        };
        let moves: Vec<Option<usize>> = plan
            .items
            .iter()
            .map(|item| {
                column(&item.expr).filter(|&c| {
                    plan.items
                        .iter()
                        .filter(|i| column(&i.expr) == Some(c))
                        .count()
                        == 1
                })
            })
            .collect();
        let in_place = !moves.is_empty()
            && moves.iter().all(Option::is_some)
            && moves.windows(2).all(|w| w[0] < w[1]);
        Shape {
            key_from,
            own_keys,
            moves,
            in_place,
        }
    }

    /// ORDER BY value `k` of a row.
    fn key<'a>(&self, row: &'a Produced, k: usize) -> &'a Value {
        match self.key_from[k] {
            KeyFrom::Out(j) => &row.out[j],
            KeyFrom::Own(m) => &row.keys[m],
        }
    }

    /// Whether the ORDER BY keys are output values covering every output
    /// column, each compared as DISTINCT compares it: rows DISTINCT calls
    /// equal are then exactly rows with equal sort keys.
    fn orders_every_output(&self, plan: &SelectPlan, collations: &[Collation]) -> bool {
        let mut covered = vec![false; plan.items.len()];
        for (from, key) in self.key_from.iter().zip(&plan.order) {
            match from {
                KeyFrom::Out(j) if collations.get(*j) == Some(&key.collation) => covered[*j] = true,
                _ => return false,
            }
        }
        covered.iter().all(|c| *c)
    }
}

/// Runs a SELECT; `txn` is needed when it reads a table.
pub(crate) async fn run(
    plan: &SelectPlan,
    txn: &mut Option<Txn>,
    env: &Env<'_>,
) -> Result<Output, SqlError> {
    run_in(plan, txn, env, &[]).await
}

/// The result rows of a query inside another (`outer`: the enclosing
/// row, which a correlated subquery reads).
pub(crate) async fn rows_of(
    plan: &SelectPlan,
    txn: &mut Option<Txn>,
    env: &Env<'_>,
    outer: &[Value],
) -> Result<Vec<Vec<Value>>, SqlError> {
    match run_in(plan, txn, env, outer).await? {
        Output::Rows { rows, .. } => Ok(rows),
        Output::Ok { .. } => Ok(Vec::new()),
    }
}

type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// [`run`] for a query inside another; boxed, as queries nest.
fn run_in<'a>(
    plan: &'a SelectPlan,
    txn: &'a mut Option<Txn>,
    env: &'a Env<'_>,
    outer: &'a [Value],
) -> Boxed<'a, Result<Output, SqlError>> {
    Box::pin(async move {
        let (limit, offset) = limits(plan, env)?;
        let stop_after = limit
            .map(|l| l.saturating_add(offset))
            .filter(|_| streams(plan));
        let rows = match (&plan.from, &plan.sources, txn) {
            (_, Some(from), txn) => {
                super::join::rows(plan, from, txn, env, outer, stop_after).await?
            }
            (None, None, _) => vec![Vec::new()],
            (Some(t), None, _) if super::information_schema::is_virtual(&t.def) => {
                let all = super::information_schema::rows(&t.def, super::join::catalog(env)?);
                let mut kept = Vec::with_capacity(all.len());
                for row in all {
                    if passes(plan.filter.as_ref(), &row, env)? {
                        kept.push(row);
                    }
                }
                kept
            }
            (Some(t), None, Some(txn)) => read(plan, txn, &t.def, env, stop_after).await?,
            (Some(_), None, None) => {
                return Err(SqlError::unsupported("a table read outside a transaction"));
            }
        };
        finish_rows(plan, rows, env, limit, offset)
    })
}

/// Whether rows can stop at the limit (nothing after the filter needs
/// every row).
fn streams(plan: &SelectPlan) -> bool {
    !plan.grouped
        && !plan.distinct
        && !plan.calc_found_rows
        && (plan.order.is_empty() || plan.index_order.is_some())
}

/// A SELECT over rows given whole (a virtual table's scan, e.g.
/// information_schema's): the WHERE clause, then the rest as [`run`].
pub(crate) fn run_over(
    plan: &SelectPlan,
    rows: Vec<Vec<Value>>,
    env: &Env<'_>,
) -> Result<Output, SqlError> {
    let (limit, offset) = limits(plan, env)?;
    let mut kept = Vec::with_capacity(rows.len());
    for row in rows {
        if passes(plan.filter.as_ref(), &row, env)? {
            kept.push(row);
        }
    }
    finish_rows(plan, kept, env, limit, offset)
}

/// Grouping, DISTINCT, ORDER BY and LIMIT over the rows read.
fn finish_rows(
    plan: &SelectPlan,
    rows: Vec<Vec<Value>>,
    env: &Env<'_>,
    limit: Option<usize>,
    offset: usize,
) -> Result<Output, SqlError> {
    let shape = Shape::of(plan);
    let mut produced = if plan.grouped {
        grouped(plan, &shape, rows, env)?
    } else {
        rows.into_iter()
            .map(|r| produce_owned(plan, &shape, r, env))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut sort_needed = !plan.order.is_empty() && plan.index_order.is_none();
    if plan.distinct {
        let collations: Vec<Collation> = plan
            .items
            .iter()
            .map(|i| super::compile::collation_of(&[&i.expr]))
            .collect();
        let sorted = sort_needed
            && shape.orders_every_output(plan, &collations)
            && sort_distinct(plan, &shape, &mut produced);
        if sorted {
            sort_needed = false;
        } else {
            produced = distinct(produced, &collations);
        }
    }
    if sort_needed {
        sort(plan, &shape, &mut produced);
    }
    if plan.calc_found_rows {
        env.stmt.set_calc_found_rows(produced.len() as u64);
    }
    let rows: Vec<Vec<Value>> = produced
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .map(|p| p.out)
        .collect();
    Ok(finish(plan, rows))
}

fn limits(plan: &SelectPlan, env: &Env<'_>) -> Result<(Option<usize>, usize), SqlError> {
    let cx = Ctx {
        env,
        row: &[],
        aggs: &[],
    };
    let count = |e: &Option<super::expr::Expr>| -> Result<Option<usize>, SqlError> {
        match e.as_ref().map(|e| e.eval(&cx)).transpose()? {
            None => Ok(None),
            Some(Value::Int(i)) if i >= 0 => Ok(Some(i as usize)),
            Some(Value::UInt(u)) => Ok(Some(usize::try_from(u).unwrap_or(usize::MAX))),
            Some(v) => Err(SqlError::new(
                1210,
                "HY000",
                format!("Incorrect arguments to LIMIT: {v}"),
            )),
        }
    };
    Ok((count(&plan.limit)?, count(&plan.offset)?.unwrap_or(0)))
}

/// The rows of the table that pass the filter (at most `stop_after` when
/// nothing needs more).
async fn read(
    plan: &SelectPlan,
    txn: &mut Txn,
    t: &crate::catalog::TableDef,
    env: &Env<'_>,
    stop_after: Option<usize>,
) -> Result<Vec<Vec<Value>>, SqlError> {
    let keys = resolve(&plan.access, t, env)?;
    let mut rows = Vec::new();
    if stop_after == Some(0) {
        return Ok(rows);
    }
    let reverse = plan.index_order == Some(true);
    let full = matches!(
        keys,
        super::access::Keys::Range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
    ) && stop_after.is_none();
    let mut seen = 0u64;
    let mut keep = |row: crate::txn::FoundRow| -> Result<bool, SqlError> {
        seen += 1;
        if passes(plan.filter.as_ref(), &row.values, env)? {
            rows.push(row.values);
        }
        Ok(stop_after.is_none_or(|n| rows.len() < n))
    };
    read_rows(
        txn,
        t,
        plan.access.index,
        keys,
        reverse,
        plan.lock,
        plan.access.cover,
        &mut keep,
    )
    .await?;
    if full {
        super::stats::observe(t, seen);
    }
    Ok(rows)
}

/// Whether a row passes a WHERE clause.
pub(crate) fn passes(
    filter: Option<&super::expr::Expr>,
    row: &[Value],
    env: &Env<'_>,
) -> Result<bool, SqlError> {
    match filter {
        None => Ok(true),
        Some(f) => Ok(f.truth(&Ctx {
            env,
            row,
            aggs: &[],
        })? == Some(true)),
    }
}

/// A result row from a row (or a group's first row and its aggregates)
/// that is used again: values are copied.
fn produce(
    plan: &SelectPlan,
    shape: &Shape,
    row: &[Value],
    aggs: &[Value],
    env: &Env<'_>,
) -> Result<Produced, SqlError> {
    let cx = Ctx { env, row, aggs };
    let out = plan
        .items
        .iter()
        .map(|i| i.expr.eval(&cx))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Produced {
        out,
        keys: own_keys(plan, shape, &cx)?,
    })
}

/// The ORDER BY values that are not output values.
fn own_keys(plan: &SelectPlan, shape: &Shape, cx: &Ctx<'_>) -> Result<Vec<Value>, SqlError> {
    shape
        .own_keys
        .iter()
        .map(|&k| plan.order[k].expr.eval(cx))
        .collect()
}

/// A result row from a row used for nothing else: plain-column items take
/// the row's values (after every other item and key has been evaluated).
fn produce_owned(
    plan: &SelectPlan,
    shape: &Shape,
    mut row: Vec<Value>,
    env: &Env<'_>,
) -> Result<Produced, SqlError> {
    let cx = Ctx {
        env,
        row: &row,
        aggs: &[],
    };
    let keys = own_keys(plan, shape, &cx)?;
    if shape.in_place && shape.moves.iter().flatten().all(|&c| c < row.len()) {
        for (j, c) in shape.moves.iter().flatten().enumerate() {
            row.swap(j, *c);
        }
        row.truncate(shape.moves.len());
        return Ok(Produced { out: row, keys });
    }
    let mut out = Vec::with_capacity(plan.items.len());
    for (item, mv) in plan.items.iter().zip(&shape.moves) {
        out.push(match mv {
            Some(_) => Value::Null,
            None => item.expr.eval(&cx)?,
        });
    }
    for (slot, mv) in out.iter_mut().zip(&shape.moves) {
        if let Some(v) = mv.and_then(|c| row.get_mut(c)) {
            *slot = std::mem::replace(v, Value::Null);
        }
    }
    Ok(Produced { out, keys })
}

/// Groups rows by the GROUP BY values (one group of every row without
/// GROUP BY), aggregates, and applies HAVING.
fn grouped(
    plan: &SelectPlan,
    shape: &Shape,
    rows: Vec<Vec<Value>>,
    env: &Env<'_>,
) -> Result<Vec<Produced>, SqlError> {
    let colls: Vec<Collation> = plan
        .group_by
        .iter()
        .map(|e| super::compile::collation_of(&[e]))
        .collect();
    let mut keyed = rows
        .into_iter()
        .map(|r| {
            let cx = Ctx {
                env,
                row: &r,
                aggs: &[],
            };
            let key = plan
                .group_by
                .iter()
                .map(|e| e.eval(&cx))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((key, r))
        })
        .collect::<Result<Vec<_>, SqlError>>()?;
    let cmp_keys = |a: &[Value], b: &[Value]| {
        a.iter()
            .zip(b)
            .zip(&colls)
            .map(|((x, y), c)| sort_cmp(x, y, *c))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    };
    keyed.sort_by(|a, b| cmp_keys(&a.0, &b.0));
    let mut groups: Vec<Vec<Vec<Value>>> = Vec::new();
    let mut keys: Vec<Vec<Value>> = Vec::new();
    for (key, row) in keyed {
        match keys.last() {
            Some(k) if cmp_keys(k, &key).is_eq() => {
                groups.last_mut().expect("a group exists").push(row)
            }
            _ => {
                groups.push(vec![row]);
                keys.push(key);
            }
        }
    }
    if groups.is_empty() && plan.group_by.is_empty() {
        groups.push(Vec::new());
    }
    let mut out = Vec::new();
    // WITH ROLLUP: per prefix length k, where the current run of groups
    // sharing their first k keys started.
    let mut starts = vec![0usize; plan.group_by.len()];
    for i in 0..groups.len() {
        let g = &groups[i];
        let first = g.first().map(Vec::as_slice).unwrap_or(&[]);
        // No GROUP BY: one group, no key.
        let key = keys.get(i).map_or(&[][..], Vec::as_slice);
        emit_group(plan, shape, g, first, (key, key.len()), env, &mut out)?;
        if !plan.rollup {
            continue;
        }
        for k in (0..plan.group_by.len()).rev() {
            let ends = keys
                .get(i + 1)
                .is_none_or(|next| cmp_keys(&keys[i][..k], &next[..k]).is_ne());
            if !ends {
                break;
            }
            let rows: Vec<Vec<Value>> = groups[starts[k]..=i].concat();
            let mut first = first.to_vec();
            for e in &plan.group_by[k..] {
                if let super::expr::Expr::Column(c, _) = e
                    && let Some(v) = first.get_mut(*c)
                {
                    *v = Value::Null;
                }
            }
            emit_group(plan, shape, &rows, &first, (key, k), env, &mut out)?;
            starts[k] = i + 1;
        }
    }
    Ok(out)
}

/// One group's result row (`first` stands for its columns), if HAVING
/// keeps it. `(key, kept)`: the group's GROUP BY values and how many of
/// them the row keeps (fewer for a ROLLUP super-aggregate row), which a
/// ROLLUP plan reads through its group slots ([`super::rollup`]).
fn emit_group(
    plan: &SelectPlan,
    shape: &Shape,
    rows: &[Vec<Value>],
    first: &[Value],
    (key, kept): (&[Value], usize),
    env: &Env<'_>,
    out: &mut Vec<Produced>,
) -> Result<(), SqlError> {
    let mut aggs = aggregate(&plan.aggs, rows, env, out.len() + 1)?;
    if plan.rollup {
        super::rollup::slots(&mut aggs, key, kept);
    }
    if let Some(h) = &plan.having {
        let cx = Ctx {
            env,
            row: first,
            aggs: &aggs,
        };
        if h.truth(&cx)? != Some(true) {
            return Ok(());
        }
    }
    out.push(produce(plan, shape, first, &aggs, env)?);
    Ok(())
}

/// Every aggregate over one group's rows; `row_no` is the result row the
/// group makes (for GROUP_CONCAT's warning).
fn aggregate(
    specs: &[AggSpec],
    rows: &[Vec<Value>],
    env: &Env<'_>,
    row_no: usize,
) -> Result<Vec<Value>, SqlError> {
    specs
        .iter()
        .map(|spec| {
            if let Some(c) = &spec.concat {
                return group_concat(spec, c, rows, env, row_no);
            }
            let mut values = Vec::new();
            for r in rows {
                let v = match &spec.arg {
                    None => Value::Int(1),
                    Some(e) => e.eval(&Ctx {
                        env,
                        row: r,
                        aggs: &[],
                    })?,
                };
                if !matches!(v, Value::Null) {
                    values.push(v);
                }
            }
            if spec.distinct {
                values.sort_by(|a, b| sort_cmp(a, b, spec.collation));
                values.dedup_by(|a, b| sort_cmp(a, b, spec.collation).is_eq());
            }
            fold(spec, values)
        })
        .collect()
}

fn fold(spec: &AggSpec, values: Vec<Value>) -> Result<Value, SqlError> {
    let n = values.len();
    Ok(match spec.func {
        AggFunc::CountStar | AggFunc::Count => Value::Int(n as i64),
        AggFunc::GroupConcat => return Err(SqlError::unsupported("GROUP_CONCAT here")),
        AggFunc::Min | AggFunc::Max => {
            let pick = |a: Value, b: Value| {
                let o = sort_cmp(&a, &b, spec.collation);
                let take_b = if spec.func == AggFunc::Min {
                    o.is_gt()
                } else {
                    o.is_lt()
                };
                if take_b { b } else { a }
            };
            values.into_iter().reduce(pick).unwrap_or(Value::Null)
        }
        AggFunc::Sum | AggFunc::Avg => {
            if n == 0 {
                return Ok(Value::Null);
            }
            let mut sum = Value::Decimal(Decimal {
                mantissa: 0,
                scale: 0,
            });
            for v in values {
                let v = match v {
                    Value::Int(_) | Value::UInt(_) | Value::Decimal(_) | Value::Double(_) => v,
                    other => Value::Double(super::expr::double_of(&other)),
                };
                sum = arith(ArithOp::Add, sum, v)?;
            }
            match spec.func {
                AggFunc::Avg => arith(ArithOp::Div, sum, Value::Int(n as i64))?,
                _ => sum,
            }
        }
    })
}

/// GROUP_CONCAT over one group: the non-NULL argument tuples (distinct
/// ones with DISTINCT), in its ORDER BY, joined by the separator, cut at
/// `group_concat_max_len` bytes (warning 1260 naming result row `row_no`).
fn group_concat(
    spec: &AggSpec,
    c: &super::plan::ConcatSpec,
    rows: &[Vec<Value>],
    env: &Env<'_>,
    row_no: usize,
) -> Result<Value, SqlError> {
    // Per row: its text, its ORDER BY values and (for DISTINCT) its
    // argument values, which DISTINCT compares one by one (('ab', 'c')
    // and ('a', 'bc') are two values with one text).
    let mut items: Vec<(Vec<u8>, Vec<Value>)> = Vec::new();
    let mut parts: Vec<Vec<Value>> = Vec::new();
    'rows: for r in rows {
        let cx = Ctx {
            env,
            row: r,
            aggs: &[],
        };
        let mut text = Vec::new();
        let mut values = Vec::new();
        for e in spec.arg.iter().chain(&c.more) {
            match e.eval(&cx)? {
                Value::Null => continue 'rows,
                v => {
                    text.extend_from_slice(&super::expr::text_bytes(&v));
                    if spec.distinct {
                        values.push(v);
                    }
                }
            }
        }
        let keys = c
            .order
            .iter()
            .map(|k| k.expr.eval(&cx))
            .collect::<Result<Vec<_>, _>>()?;
        items.push((text, keys));
        parts.push(values);
    }
    if spec.func == AggFunc::Count {
        return Ok(Value::Int(count_distinct(spec, c, rows, env)?));
    }
    if items.is_empty() {
        return Ok(Value::Null);
    }
    if spec.distinct {
        let coll = spec.collation;
        let cmp = |a: &[Value], b: &[Value]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| sort_cmp(x, y, coll))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        };
        // Sorted by value (stable: the first of equal values stays), as
        // MySQL's and MariaDB's unique tree gives them without ORDER BY.
        let mut both: Vec<_> = parts.into_iter().zip(items).collect();
        both.sort_by(|a, b| cmp(&a.0, &b.0));
        both.dedup_by(|later, kept| cmp(&later.0, &kept.0).is_eq());
        items = both.into_iter().map(|(_, it)| it).collect();
    }
    items.sort_by(|a, b| order_cmp(&a.1, &b.1, &c.order));
    let max = match env.sys_vars.get("group_concat_max_len") {
        Some(Value::Int(n)) if *n >= 0 => *n as usize,
        Some(Value::UInt(n)) => usize::try_from(*n).unwrap_or(usize::MAX),
        _ => 1024,
    };
    let mut out = Vec::new();
    for (i, (text, _)) in items.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(&c.separator);
        }
        out.extend_from_slice(text);
        if out.len() > max || (out.len() == max && i + 1 < items.len()) {
            out.truncate(max);
            env.stmt
                .warn(1260, format!("Row {row_no} was cut by GROUP_CONCAT()"));
            break;
        }
    }
    Ok(Value::Bytes(out))
}

/// COUNT(DISTINCT a, b, …): distinct tuples with no NULL.
fn count_distinct(
    spec: &AggSpec,
    c: &super::plan::ConcatSpec,
    rows: &[Vec<Value>],
    env: &Env<'_>,
) -> Result<i64, SqlError> {
    let args: Vec<&super::expr::Expr> = spec.arg.iter().chain(&c.more).collect();
    let collations: Vec<Collation> = args
        .iter()
        .map(|e| super::compile::collation_of(&[e]))
        .collect();
    let mut tuples = Vec::new();
    'rows: for r in rows {
        let cx = Ctx {
            env,
            row: r,
            aggs: &[],
        };
        let mut out = Vec::with_capacity(args.len());
        for e in &args {
            match e.eval(&cx)? {
                Value::Null => continue 'rows,
                v => out.push(v),
            }
        }
        tuples.push(Produced {
            out,
            keys: Vec::new(),
        });
    }
    Ok(distinct(tuples, &collations).len() as i64)
}

/// Drops repeated rows, keeping the first of each (UNION).
pub(crate) fn dedup(rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    let produced = rows
        .into_iter()
        .map(|out| Produced {
            out,
            keys: Vec::new(),
        })
        .collect();
    distinct(produced, &[]).into_iter().map(|p| p.out).collect()
}

/// Drops repeated output rows, keeping the first of each (strings equal
/// under `collations`, one per column; the connection's by default).
fn distinct(rows: Vec<Produced>, collations: &[Collation]) -> Vec<Produced> {
    let coll = |i: usize| {
        collations
            .get(i)
            .copied()
            .unwrap_or(Collation::Utf8mb4GeneralCi)
    };
    let width = rows.first().map_or(0, |r| r.out.len());
    let specs: Vec<(Collation, bool)> = (0..width).map(|i| (coll(i), false)).collect();
    if let Some(keys) = super::sortkey::encode_rows(rows.len(), |r, i| &rows[r].out[i], &specs) {
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        let keep: Vec<bool> = (0..keys.len()).map(|i| seen.insert(keys.get(i))).collect();
        drop(seen);
        return rows
            .into_iter()
            .zip(keep)
            .filter_map(|(r, k)| k.then_some(r))
            .collect();
    }
    let cmp = |a: &[Value], b: &[Value]| {
        a.iter()
            .zip(b)
            .enumerate()
            .map(|(i, (x, y))| sort_cmp(x, y, coll(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| cmp(&rows[a].out, &rows[b].out).then(a.cmp(&b)));
    let mut keep = vec![false; rows.len()];
    let mut prev: Option<usize> = None;
    for i in order {
        if prev.is_none_or(|p| cmp(&rows[p].out, &rows[i].out).is_ne()) {
            keep[i] = true;
            prev = Some(i);
        }
    }
    rows.into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect()
}

/// Rows an UPDATE or DELETE found, in its ORDER BY's order.
pub(crate) fn sort_found(
    rows: Vec<crate::txn::FoundRow>,
    order: &[super::plan::OrderKey],
    env: &Env<'_>,
) -> Result<Vec<crate::txn::FoundRow>, SqlError> {
    let mut keyed = Vec::with_capacity(rows.len());
    for r in rows {
        let cx = Ctx {
            env,
            row: &r.values,
            aggs: &[],
        };
        let keys = order
            .iter()
            .map(|k| k.expr.eval(&cx))
            .collect::<Result<Vec<_>, _>>()?;
        keyed.push((keys, r));
    }
    keyed.sort_by(|a, b| order_cmp(&a.0, &b.0, order));
    Ok(keyed.into_iter().map(|(_, r)| r).collect())
}

/// The rows' ORDER BY keys ([`super::sortkey`]), if every key column has
/// one encoding.
fn order_keys(plan: &SelectPlan, shape: &Shape, rows: &[Produced]) -> Option<super::sortkey::Keys> {
    let specs: Vec<(Collation, bool)> = plan.order.iter().map(|k| (k.collation, k.desc)).collect();
    super::sortkey::encode_rows(rows.len(), |r, k| shape.key(&rows[r], k), &specs)
}

/// A string sort value's abbreviation ([`super::sortkey::abbreviated`]).
type Abbreviation = (bool, u128);

/// Two rows compared by every ORDER BY value (NULL first; DESC reversed).
fn key_cmp(plan: &SelectPlan, shape: &Shape, a: &Produced, b: &Produced) -> Ordering {
    for (k, key) in plan.order.iter().enumerate() {
        let o = sort_cmp(shape.key(a, k), shape.key(b, k), key.collation);
        let o = if key.desc { o.reverse() } else { o };
        if o.is_ne() {
            return o;
        }
    }
    Ordering::Equal
}

/// The rows' positions in ORDER BY order (row number breaking ties) when
/// the first key is a string: rows are compared by an abbreviation of
/// that string ([`super::sortkey::abbreviated`]), and by their values only
/// when the abbreviations are equal. Strings that differ early (most do)
/// are ordered without encoding whole strings' weights. `None` when the
/// first key holds other values. Also gives each row's abbreviation.
fn abbreviated_order(
    plan: &SelectPlan,
    shape: &Shape,
    rows: &[Produced],
) -> Option<(Vec<usize>, Vec<Abbreviation>)> {
    let first = plan.order.first()?;
    let mut abbreviations = Vec::with_capacity(rows.len());
    for r in rows {
        let (present, key) = super::sortkey::abbreviated(shape.key(r, 0), first.collation)?;
        abbreviations.push(match first.desc {
            false => (present, key),
            true => (!present, !key),
        });
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        abbreviations[a]
            .cmp(&abbreviations[b])
            .then_with(|| key_cmp(plan, shape, &rows[a], &rows[b]))
            .then(a.cmp(&b))
    });
    Some((order, abbreviations))
}

/// The rows at `positions`, in that order (the others dropped).
fn pick(rows: Vec<Produced>, positions: Vec<usize>) -> Vec<Produced> {
    let mut slots: Vec<Option<Produced>> = rows.into_iter().map(Some).collect();
    positions
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect()
}

/// Sorts by the ORDER BY values: on memcomparable keys computed once per
/// row ([`super::sortkey`]) when every key column has one encoding, else
/// by comparing values.
fn sort(plan: &SelectPlan, shape: &Shape, rows: &mut Vec<Produced>) {
    if let Some((order, _)) = abbreviated_order(plan, shape, rows) {
        *rows = pick(std::mem::take(rows), order);
        return;
    }
    if let Some(keys) = order_keys(plan, shape, rows) {
        *rows = pick(std::mem::take(rows), keys.order());
        return;
    }
    rows.sort_by(|a, b| key_cmp(plan, shape, a, b));
}

/// DISTINCT and ORDER BY at once when the ORDER BY orders every output
/// column as DISTINCT compares it ([`Shape::orders_every_output`]): each
/// row's key is encoded once, the rows sorted by it, and a row whose key
/// equals the previous kept row's dropped (the first in input order of
/// each run stays, as [`distinct`] keeps). False (rows untouched) when the
/// keys have no encoding.
fn sort_distinct(plan: &SelectPlan, shape: &Shape, rows: &mut Vec<Produced>) -> bool {
    if let Some((order, abbreviations)) = abbreviated_order(plan, shape, rows) {
        let mut kept: Vec<usize> = Vec::with_capacity(order.len());
        for i in order {
            // Different abbreviations: different values, no comparison.
            let new = kept.last().is_none_or(|&p| {
                abbreviations[p] != abbreviations[i]
                    || key_cmp(plan, shape, &rows[p], &rows[i]).is_ne()
            });
            if new {
                kept.push(i);
            }
        }
        *rows = pick(std::mem::take(rows), kept);
        return true;
    }
    let Some(keys) = order_keys(plan, shape, rows) else {
        return false;
    };
    let mut kept = Vec::with_capacity(keys.len());
    let mut prev: Option<usize> = None;
    for i in keys.order() {
        if prev.is_none_or(|p| keys.get(p) != keys.get(i)) {
            kept.push(i);
            prev = Some(i);
        }
    }
    *rows = pick(std::mem::take(rows), kept);
    true
}

/// Two rows' ORDER BY values compared (NULL first; DESC reversed).
fn order_cmp(a: &[Value], b: &[Value], order: &[super::plan::OrderKey]) -> Ordering {
    for (i, key) in order.iter().enumerate() {
        let o = sort_cmp(&a[i], &b[i], key.collation);
        let o = if key.desc { o.reverse() } else { o };
        if o.is_ne() {
            return o;
        }
    }
    Ordering::Equal
}

/// The result: columns whose kind was unknown take their first non-NULL
/// value's; every value is made to fit its column.
fn finish(plan: &SelectPlan, mut rows: Vec<Vec<Value>>) -> Output {
    let mut columns = Vec::with_capacity(plan.items.len());
    for (i, item) in plan.items.iter().enumerate() {
        let kind = match item.kind {
            Kind::Any | Kind::Null => rows
                .iter()
                .map(|r| meta::value_kind(&r[i]))
                .find(|k| *k != Kind::Null)
                .unwrap_or(if item.kind == Kind::Null {
                    Kind::Null
                } else {
                    Kind::Text
                }),
            k => k,
        };
        if kind == item.kind {
            columns.push(item.column.clone());
        } else {
            columns.push(meta::expr_column(&item.column.name, kind));
        }
        for r in rows.iter_mut() {
            let v = std::mem::replace(&mut r[i], Value::Null);
            r[i] = meta::conform(v, kind);
        }
    }
    Output::Rows { columns, rows }
}
