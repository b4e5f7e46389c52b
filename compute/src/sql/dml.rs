//! INSERT (with IGNORE, REPLACE and ON DUPLICATE KEY UPDATE), UPDATE and
//! DELETE.
//!
//! INSERT fills every column the statement leaves out (or names DEFAULT)
//! from its default, NULL, or — NOT NULL without a default — refuses with
//! 1364. UPDATE and DELETE are current reads: the candidates are found on
//! the access path as of now, each is locked and read again, and the
//! WHERE clause is checked on the locked row before it changes.

use crate::catalog::TableDef;
use crate::engine::zero_of;
use crate::error::EngineError;
use crate::txn::{FoundRow, Txn, encode_prefix};
use crate::types::{ColumnType, Value, ValueError};

use super::access::{read_rows, resolve};
use super::expr::{Ctx, Env, Expr};
use super::plan::{Access, DeletePlan, InsertPlan, OrderKey, UpdatePlan};
use super::select::passes;
use super::upsert::Conflict;
use super::{Output, SqlError};

fn ok(affected_rows: u64, last_insert_id: u64, info: String) -> Output {
    Output::Ok {
        affected_rows,
        last_insert_id,
        warnings: 0,
        info,
    }
}

/// Runs an INSERT (IGNORE, REPLACE, ON DUPLICATE KEY UPDATE); also
/// returns the first generated auto-increment value.
///
/// Affected rows as MySQL counts them: 1 per row inserted; REPLACE adds 1
/// per row it deleted; ON DUPLICATE KEY UPDATE counts 2 for a row updated
/// and 0 for one left as it was.
pub(crate) async fn insert(
    plan: &InsertPlan,
    txn: &mut Txn,
    env: &Env<'_>,
) -> Result<(Output, Option<u64>), SqlError> {
    insert_rows(plan, txn, env, false).await
}

/// [`insert`]; `records`: the info string is always given (INSERT … SELECT).
async fn insert_rows(
    plan: &InsertPlan,
    txn: &mut Txn,
    env: &Env<'_>,
    records: bool,
) -> Result<(Output, Option<u64>), SqlError> {
    let t = &plan.table.def;
    let mut first = None;
    let mut affected = 0u64;
    let mut duplicates = 0u64;
    let cx = Ctx {
        env,
        row: &[],
        aggs: &[],
    };
    let ignore = matches!(plan.conflict, Conflict::Ignore);
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
        let values = match ignore {
            true => lenient_row(t, row, env, n + 1),
            false => fill_defaults(t, row)?,
        };
        let outcome = match &plan.conflict {
            Conflict::Error => txn.insert(t, values).await.map(|g| (1, g))?,
            Conflict::Ignore => match txn.insert(t, values).await {
                Ok(g) => (1, g),
                Err(e @ EngineError::DuplicateKey { .. }) => {
                    env.stmt.warn(1062, e.to_string());
                    duplicates += 1;
                    (0, None)
                }
                Err(e) => return Err(e.into()),
            },
            Conflict::Replace => replace_row(txn, t, values, env).await?,
            Conflict::Update(set) => upsert_row(txn, t, values, set, env).await?,
        };
        if outcome.0 != 1 && !ignore {
            duplicates += 1;
        }
        affected += outcome.0;
        first = first.or(outcome.1);
    }
    let n = plan.rows.len() as u64;
    let warnings = env.stmt.warning_count();
    let info = match n > 1 || ignore || records {
        true => format!("Records: {n}  Duplicates: {duplicates}  Warnings: {warnings}"),
        false => String::new(),
    };
    let out = Output::Ok {
        affected_rows: affected,
        last_insert_id: first.unwrap_or(0),
        warnings: u16::try_from(warnings).unwrap_or(u16::MAX),
        info,
    };
    Ok((out, first))
}

/// REPLACE of one row: every row in its way (on the primary key or a
/// unique index) is deleted, then it is inserted. Returns (affected rows,
/// generated auto-increment value).
async fn replace_row(
    txn: &mut Txn,
    t: &TableDef,
    values: Vec<Value>,
    env: &Env<'_>,
) -> Result<(u64, Option<u64>), SqlError> {
    let mut deleted = 0;
    loop {
        match txn.insert(t, values.clone()).await {
            Ok(g) => return Ok((deleted + 1, g)),
            Err(EngineError::DuplicateKey { .. }) if deleted <= t.secondary.len() as u64 => {
                let new = coerced(t, &values)?;
                let in_the_way = conflicting(txn, t, &new, env).await?;
                if in_the_way.is_empty() {
                    return Err(SqlError::new(
                        1105,
                        "HY000",
                        "REPLACE found no conflicting row",
                    ));
                }
                for old in &in_the_way {
                    txn.delete(t, old).await?;
                    deleted += 1;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// INSERT … ON DUPLICATE KEY UPDATE of one row.
async fn upsert_row(
    txn: &mut Txn,
    t: &TableDef,
    values: Vec<Value>,
    set: &[(usize, Expr)],
    env: &Env<'_>,
) -> Result<(u64, Option<u64>), SqlError> {
    match txn.insert(t, values.clone()).await {
        Ok(g) => Ok((1, g)),
        Err(EngineError::DuplicateKey { index, key }) => {
            let new = coerced(t, &values)?;
            let Some(old) = conflicting(txn, t, &new, env).await?.into_iter().next() else {
                return Err(EngineError::DuplicateKey { index, key }.into());
            };
            let mut updated = old.values.clone();
            for (c, e) in set {
                let mut both = updated.clone();
                both.extend(new.iter().cloned());
                let v = e.eval(&Ctx {
                    env,
                    row: &both,
                    aggs: &[],
                })?;
                let col = &t.columns[*c];
                updated[*c] = col.ty.coerce(v).map_err(|error| EngineError::Value {
                    column: col.name.clone(),
                    error,
                })?;
            }
            if updated == old.values {
                return Ok((0, None));
            }
            txn.update(t, &old, updated).await?;
            Ok((2, None))
        }
        Err(e) => Err(e.into()),
    }
}

/// The values as the table stores them (the auto-increment column may
/// stay NULL: it never names a row in the way).
fn coerced(t: &TableDef, values: &[Value]) -> Result<Vec<Value>, SqlError> {
    values
        .iter()
        .zip(&t.columns)
        .map(|(v, c)| {
            c.ty.coerce(v.clone()).map_err(|error| {
                SqlError::from(EngineError::Value {
                    column: c.name.clone(),
                    error,
                })
            })
        })
        .collect()
}

/// The rows (locked, current) that have `row`'s value in the primary key
/// or a unique index, primary key first, each once.
async fn conflicting(
    txn: &mut Txn,
    t: &TableDef,
    row: &[Value],
    env: &Env<'_>,
) -> Result<Vec<FoundRow>, SqlError> {
    let mut found: Vec<FoundRow> = Vec::new();
    let indexes = std::iter::once((0, &t.primary))
        .filter(|_| !t.has_hidden_key())
        .chain(t.secondary.iter().enumerate().map(|(i, x)| (i + 1, x)))
        .filter(|(_, x)| x.unique);
    for (n, idx) in indexes {
        let key: Vec<Value> = idx.columns.iter().map(|&c| row[c].clone()).collect();
        if key.iter().any(|v| matches!(v, Value::Null)) {
            continue;
        }
        let wanted = encode_prefix(t, idx, &key)?;
        let access = Access {
            index: n,
            eq: key.iter().map(|v| vec![Expr::Lit(v.clone())]).collect(),
            ..Default::default()
        };
        let keys = resolve(&access, t, env)?;
        let mut hits = Vec::new();
        let mut keep = |r: FoundRow| -> Result<bool, SqlError> {
            let values: Vec<Value> = idx.columns.iter().map(|&c| r.values[c].clone()).collect();
            if encode_prefix(t, idx, &values)? == wanted {
                hits.push(r);
            }
            Ok(true)
        };
        read_rows(txn, t, n, keys, false, true, None, &mut keep).await?;
        for h in hits {
            if !found.iter().any(|f| f.key == h.key) {
                found.push(h);
            }
        }
    }
    Ok(found)
}

/// INSERT IGNORE's row: what does not fit its column is made to (clipped,
/// cut, or the type's zero), each change a warning.
fn lenient_row(t: &TableDef, row: Vec<Option<Value>>, env: &Env<'_>, at: usize) -> Vec<Value> {
    row.into_iter()
        .zip(&t.columns)
        .map(|(v, c)| {
            let name = &c.name;
            let v = match v {
                Some(v) => v,
                None if c.auto_increment => return Value::Null,
                None => match &c.default {
                    Some(d) => return d.clone(),
                    None if c.nullable => return Value::Null,
                    None => {
                        env.stmt
                            .warn(1364, format!("Field '{name}' doesn't have a default value"));
                        return zero_of(&c.ty);
                    }
                },
            };
            match c.ty.coerce(v.clone()) {
                Ok(Value::Null) if !c.nullable && !c.auto_increment => {
                    env.stmt
                        .warn(1048, format!("Column '{name}' cannot be null"));
                    zero_of(&c.ty)
                }
                Ok(v) => v,
                Err(error) => {
                    let (code, what) = match error {
                        ValueError::OutOfRange => (1264, "Out of range value"),
                        ValueError::TooLong => (1265, "Data truncated"),
                        _ => (1366, "Incorrect value"),
                    };
                    env.stmt
                        .warn(code, format!("{what} for column '{name}' at row {at}"));
                    nearest(&c.ty, &v, error)
                }
            }
        })
        .collect()
}

fn nearest(ty: &ColumnType, v: &Value, error: ValueError) -> Value {
    match (ty, error) {
        (ColumnType::Int { width, unsigned }, ValueError::OutOfRange) => {
            let (min, max) = crate::types::coerce::int_range(*width, *unsigned);
            let negative = super::expr::double_of(v) < 0.0;
            let n = if negative { min } else { max };
            match *unsigned {
                true => Value::UInt(u64::try_from(n).unwrap_or(0)),
                false => Value::Int(i64::try_from(n).unwrap_or(0)),
            }
        }
        (
            ColumnType::Char { max_chars, .. } | ColumnType::VarChar { max_chars, .. },
            ValueError::TooLong,
        ) => {
            let text = super::expr::text_bytes(v);
            let s = String::from_utf8_lossy(&text);
            let cut: String = s.chars().take(*max_chars as usize).collect();
            Value::Bytes(cut.into_bytes())
        }
        _ => zero_of(ty),
    }
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
    let literal = InsertPlan {
        table: plan.table.clone(),
        columns: plan.columns.clone(),
        rows: rows
            .into_iter()
            .map(|r| r.into_iter().map(|v| Some(Expr::Lit(v))).collect())
            .collect(),
        select: None,
        conflict: plan.conflict.clone(),
    };
    let Some(txn) = slot.as_mut() else {
        return Err(SqlError::unsupported("INSERT outside a transaction"));
    };
    insert_rows(&literal, txn, env, true).await
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
    read_rows(txn, t, access.index, keys, false, true, None, &mut keep).await?;
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
            new[*c] = stored(t, *c, v, i + 1, env)?;
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

/// `v` as column `c` of `t` stores it (adjusted outside strict mode; `at`:
/// the row's number, for warnings).
pub(crate) fn stored(
    t: &TableDef,
    c: usize,
    v: Value,
    at: usize,
    env: &Env<'_>,
) -> Result<Value, SqlError> {
    let col = &t.columns[c];
    let v = env.store(col, v, at)?;
    col.ty.coerce(v).map_err(|error| {
        EngineError::Value {
            column: col.name.clone(),
            error,
        }
        .into()
    })
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
