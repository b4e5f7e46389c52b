//! INSERT, UPDATE and DELETE.
//!
//! INSERT fills every column the statement leaves out (or names DEFAULT)
//! from its default, NULL, or — NOT NULL without a default — refuses with
//! 1364. UPDATE and DELETE are current reads: the candidates are found on
//! the access path as of now, each is locked and read again, and the
//! WHERE clause is checked on the locked row before it changes.

use crate::catalog::TableDef;
use crate::error::EngineError;
use crate::txn::{FoundRow, Txn};
use crate::types::Value;

use super::access::{read_rows, resolve};
use super::expr::{Ctx, Env, Expr};
use super::plan::{Access, DeletePlan, InsertPlan, OrderKey, UpdatePlan};
use super::select::passes;
use super::{Output, SqlError};

fn ok(affected_rows: u64, last_insert_id: u64, info: String) -> Output {
    Output::Ok {
        affected_rows,
        last_insert_id,
        warnings: 0,
        info,
    }
}

/// Runs an INSERT; also returns the first generated auto-increment value.
pub(crate) async fn insert(
    plan: &InsertPlan,
    txn: &mut Txn,
    env: &Env<'_>,
) -> Result<(Output, Option<u64>), SqlError> {
    let t = &plan.table.def;
    let mut first = None;
    let cx = Ctx {
        env,
        row: &[],
        aggs: &[],
    };
    for (n, exprs) in plan.rows.iter().enumerate() {
        if exprs.len() != plan.columns.len() {
            return Err(SqlError::new(
                1136,
                "21S01",
                format!("Column count doesn't match value count at row {}", n + 1),
            ));
        }
        let mut row: Vec<Option<Value>> = vec![None; t.columns.len()];
        for (&c, e) in plan.columns.iter().zip(exprs) {
            if let Some(e) = e {
                row[c] = Some(env.store(&t.columns[c], e.eval(&cx)?, n + 1)?);
            }
        }
        let values = fill_defaults(t, row)?;
        let generated = txn.insert(t, values).await?;
        first = first.or(generated);
    }
    let n = plan.rows.len() as u64;
    let info = if n > 1 {
        let w = env.stmt.warning_count();
        format!("Records: {n}  Duplicates: 0  Warnings: {w}")
    } else {
        String::new()
    };
    Ok((ok(n, first.unwrap_or(0), info), first))
}

/// INSERT … SELECT: the query runs to the end first (so it may read the
/// table it inserts into), then its rows are inserted as literal rows.
pub(crate) async fn insert_select(
    plan: &InsertPlan,
    slot: &mut Option<Txn>,
    env: &Env<'_>,
) -> Result<(Output, Option<u64>), SqlError> {
    let Some(select) = &plan.select else {
        return Err(SqlError::unsupported("INSERT … SELECT without a query"));
    };
    let rows = super::select::rows_of(select, slot, env, &[]).await?;
    let n = rows.len();
    let literal = InsertPlan {
        table: plan.table.clone(),
        columns: plan.columns.clone(),
        rows: rows
            .into_iter()
            .map(|r| r.into_iter().map(|v| Some(Expr::Lit(v))).collect())
            .collect(),
        select: None,
    };
    let Some(txn) = slot.as_mut() else {
        return Err(SqlError::unsupported("INSERT outside a transaction"));
    };
    let (out, first) = insert(&literal, txn, env).await?;
    let out = match out {
        Output::Ok {
            affected_rows,
            last_insert_id,
            warnings,
            ..
        } => Output::Ok {
            affected_rows,
            last_insert_id,
            warnings,
            info: format!("Records: {n}  Duplicates: 0  Warnings: 0"),
        },
        other => other,
    };
    Ok((out, first))
}

/// Every column's value: given, else the default, else NULL (1364 for a
/// NOT NULL column without a default; the auto-increment column generates).
fn fill_defaults(t: &TableDef, row: Vec<Option<Value>>) -> Result<Vec<Value>, SqlError> {
    row.into_iter()
        .zip(&t.columns)
        .map(|(v, c)| match v {
            Some(v) => Ok(v),
            None if c.auto_increment => Ok(Value::Null),
            None => match &c.default {
                Some(d) => Ok(d.clone()),
                None if c.nullable => Ok(Value::Null),
                None => Err(EngineError::NoDefault(c.name.clone()).into()),
            },
        })
        .collect()
}

/// The rows an UPDATE or DELETE changes: locked, current, matching.
async fn locked_matches(
    txn: &mut Txn,
    t: &TableDef,
    access: &Access,
    filter: Option<&Expr>,
    limit: Option<&Expr>,
    order: &[OrderKey],
    env: &Env<'_>,
) -> Result<Vec<FoundRow>, SqlError> {
    let limit = match limit.map(|l| {
        l.eval(&Ctx {
            env,
            row: &[],
            aggs: &[],
        })
    }) {
        None => usize::MAX,
        Some(v) => match v? {
            Value::Int(i) if i >= 0 => i as usize,
            Value::UInt(u) => usize::try_from(u).unwrap_or(usize::MAX),
            v => {
                return Err(SqlError::new(
                    1210,
                    "HY000",
                    format!("Incorrect arguments to LIMIT: {v}"),
                ));
            }
        },
    };
    let keys = resolve(access, t, env)?;
    let mut rows = Vec::new();
    if limit == 0 {
        return Ok(rows);
    }
    // With ORDER BY every match is read, then sorted, then cut.
    let stop = if order.is_empty() { limit } else { usize::MAX };
    let mut keep = |row: FoundRow| -> Result<bool, SqlError> {
        if passes(filter, &row.values, env)? {
            rows.push(row);
        }
        Ok(rows.len() < stop)
    };
    read_rows(txn, t, access.index, keys, false, true, &mut keep).await?;
    if !order.is_empty() {
        rows = super::select::sort_found(rows, order, env)?;
        rows.truncate(limit);
    }
    Ok(rows)
}

pub(crate) async fn update(
    plan: &UpdatePlan,
    txn: &mut Txn,
    env: &Env<'_>,
) -> Result<Output, SqlError> {
    let t = &plan.table.def;
    let rows = locked_matches(
        txn,
        t,
        &plan.access,
        plan.filter.as_ref(),
        plan.limit.as_ref(),
        &plan.order,
        env,
    )
    .await?;
    let matched = rows.len();
    let mut changed = 0u64;
    for (i, old) in rows.into_iter().enumerate() {
        let mut new = old.values.clone();
        // Assignments run left to right, each seeing the ones before.
        for (c, e) in &plan.assignments {
            let v = e.eval(&Ctx {
                env,
                row: &new,
                aggs: &[],
            })?;
            let col = &t.columns[*c];
            let v = env.store(col, v, i + 1)?;
            new[*c] = col.ty.coerce(v).map_err(|error| EngineError::Value {
                column: col.name.clone(),
                error,
            })?;
        }
        if new == old.values {
            continue;
        }
        txn.update(t, &old, new).await?;
        changed += 1;
    }
    let w = env.stmt.warning_count();
    let info = format!("Rows matched: {matched}  Changed: {changed}  Warnings: {w}");
    Ok(ok(changed, 0, info))
}

pub(crate) async fn delete(
    plan: &DeletePlan,
    txn: &mut Txn,
    env: &Env<'_>,
) -> Result<Output, SqlError> {
    let t = &plan.table.def;
    let rows = locked_matches(
        txn,
        t,
        &plan.access,
        plan.filter.as_ref(),
        plan.limit.as_ref(),
        &plan.order,
        env,
    )
    .await?;
    for row in &rows {
        txn.delete(t, row).await?;
    }
    Ok(ok(rows.len() as u64, 0, String::new()))
}
