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
/// values it sorts by.
struct Produced {
    out: Vec<Value>,
    keys: Vec<Value>,
}

/// Runs a SELECT; `txn` is needed when it reads a table.
pub(crate) async fn run(
    plan: &SelectPlan,
    txn: &mut Option<Txn>,
    env: &Env<'_>,
) -> Result<Output, SqlError> {
    let (limit, offset) = limits(plan, env)?;
    let rows = match (&plan.from, txn) {
        (None, _) => vec![Vec::new()],
        (Some(t), Some(txn)) => read(plan, txn, &t.def, env, limit.map(|l| l + offset)).await?,
        (Some(_), None) => return Err(SqlError::unsupported("a table read outside a transaction")),
    };
    shape(plan, rows, limit, offset, env)
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
    shape(plan, kept, limit, offset, env)
}

/// Grouping, DISTINCT, ORDER BY and LIMIT over the rows read.
fn shape(
    plan: &SelectPlan,
    rows: Vec<Vec<Value>>,
    limit: Option<usize>,
    offset: usize,
    env: &Env<'_>,
) -> Result<Output, SqlError> {
    let mut produced = if plan.grouped {
        grouped(plan, rows, env)?
    } else {
        rows.iter()
            .map(|r| produce(plan, r, &[], env))
            .collect::<Result<Vec<_>, _>>()?
    };
    if plan.distinct {
        produced = distinct(produced);
    }
    if !plan.order.is_empty() && plan.index_order.is_none() {
        sort(plan, &mut produced);
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
    let streams =
        !plan.grouped && !plan.distinct && (plan.order.is_empty() || plan.index_order.is_some());
    let stop_after = stop_after.filter(|_| streams);
    let keys = resolve(&plan.access, t, env)?;
    let mut rows = Vec::new();
    if stop_after == Some(0) {
        return Ok(rows);
    }
    let reverse = plan.index_order == Some(true);
    let mut keep = |row: crate::txn::FoundRow| -> Result<bool, SqlError> {
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
        &mut keep,
    )
    .await?;
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

fn produce(
    plan: &SelectPlan,
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
    let keys = plan
        .order
        .iter()
        .map(|k| k.expr.eval(&cx))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Produced { out, keys })
}

/// Groups rows by the GROUP BY values (one group of every row without
/// GROUP BY), aggregates, and applies HAVING.
fn grouped(
    plan: &SelectPlan,
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
    let mut last: Option<Vec<Value>> = None;
    for (key, row) in keyed {
        match &last {
            Some(k) if cmp_keys(k, &key).is_eq() => {
                groups.last_mut().expect("a group exists").push(row)
            }
            _ => {
                groups.push(vec![row]);
                last = Some(key);
            }
        }
    }
    if groups.is_empty() && plan.group_by.is_empty() {
        groups.push(Vec::new());
    }
    let mut out = Vec::new();
    for g in groups {
        let aggs = aggregate(&plan.aggs, &g, env)?;
        let first = g.first().map(Vec::as_slice).unwrap_or(&[]);
        if let Some(h) = &plan.having {
            let cx = Ctx {
                env,
                row: first,
                aggs: &aggs,
            };
            if h.truth(&cx)? != Some(true) {
                continue;
            }
        }
        out.push(produce(plan, first, &aggs, env)?);
    }
    Ok(out)
}

/// Every aggregate over one group's rows.
fn aggregate(
    specs: &[AggSpec],
    rows: &[Vec<Value>],
    env: &Env<'_>,
) -> Result<Vec<Value>, SqlError> {
    specs
        .iter()
        .map(|spec| {
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

/// Drops repeated output rows, keeping the first of each.
fn distinct(rows: Vec<Produced>) -> Vec<Produced> {
    let cmp = |a: &[Value], b: &[Value]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| sort_cmp(x, y, Collation::Utf8mb4GeneralCi))
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

fn sort(plan: &SelectPlan, rows: &mut [Produced]) {
    rows.sort_by(|a, b| {
        for (i, key) in plan.order.iter().enumerate() {
            let o = sort_cmp(&a.keys[i], &b.keys[i], key.collation);
            let o = if key.desc { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        Ordering::Equal
    });
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
