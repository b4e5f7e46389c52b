//! Runs a [`FromPlan`]: the rows of a query with several sources, in the
//! query's row layout, filtered by its WHERE clause.
//!
//! Partial rows (full width, NULL where a source has not run yet) go
//! through the steps in order. Each step reads its source's rows — once
//! (`Scan`, `Hash`) or for every partial row (`Lookup`: the index
//! nested-loop join) — keeping those that pass the pushed conjuncts, then
//! joins: a candidate row passes the step's ON, a LEFT JOIN adds the NULL
//! row when none does, and the conjuncts due after the step filter the
//! result. Hash joins key both sides by the build column's memcomparable
//! encoding ([`crate::key::encode_key_part`]), so keys that compare equal
//! under the column's collation hash alike; a probe value that does not
//! convert exactly to the column's type falls back to checking every row.
//!
//! Subqueries: uncorrelated ones run once per statement; correlated ones
//! once per row that needs them. Those WHERE reads are computed before
//! the residual filter, the others after it.

use std::collections::HashMap;

use crate::txn::Txn;
use crate::types::Value;

use super::SqlError;
use super::access::{Keys, exact, read_rows, resolve_at};
use super::expr::{Ctx, Env};
use super::plan::{Extra, FromPlan, JoinKind, Method, SelectPlan, Source, SourceKind, Step};
use super::select::passes;
use super::stats;

type Rows = Vec<Vec<Value>>;

/// The query's rows (at most `stop_after` when that can be known early).
pub(crate) async fn rows(
    plan: &SelectPlan,
    from: &FromPlan,
    txn: &mut Option<Txn>,
    env: &Env<'_>,
    outer: &[Value],
    stop_after: Option<usize>,
) -> Result<Rows, SqlError> {
    let mut init = vec![Value::Null; from.width + from.extras.len()];
    for (k, x) in from.extras.iter().enumerate() {
        if let Extra::Outer(e) = x {
            init[from.width + k] = e.eval(&Ctx {
                env,
                row: outer,
                aggs: &[],
            })?;
        }
    }
    let mut cache: Vec<Option<Rows>> = Vec::with_capacity(from.subqueries.len());
    for sub in &from.subqueries {
        cache.push(match sub.correlated {
            false => Some(super::subquery::run(sub, txn, env, &init).await?),
            true => None,
        });
    }
    // The last step may stop at the limit when nothing filters after it.
    let limit = stop_after.filter(|_| from.subqueries.is_empty() && from.residual.is_none());
    let last = from.steps.len().saturating_sub(1);
    let reverse = plan.index_order == Some(true);
    let mut partial = vec![init];
    for (i, step) in from.steps.iter().enumerate() {
        let read = Read {
            lock: plan.lock,
            reverse: reverse && step.ordered,
            limit: if i == last { limit } else { None },
            single: from.steps.len() == 1,
        };
        partial = join_step(from, step, partial, &read, txn, env).await?;
        if partial.is_empty() {
            break;
        }
    }
    if from.subqueries.is_empty() && from.residual.is_none() {
        return Ok(partial);
    }
    let mut out = Vec::new();
    for mut row in partial {
        fill(from, &cache, &mut row, true, txn, env).await?;
        if !passes(from.residual.as_ref(), &row, env)? {
            continue;
        }
        fill(from, &cache, &mut row, false, txn, env).await?;
        out.push(row);
    }
    Ok(out)
}

/// Computes the subquery results WHERE reads (`for_where`) or the rest.
async fn fill(
    from: &FromPlan,
    cache: &[Option<Rows>],
    row: &mut [Value],
    for_where: bool,
    txn: &mut Option<Txn>,
    env: &Env<'_>,
) -> Result<(), SqlError> {
    for (k, x) in from.extras.iter().enumerate() {
        let Extra::Subquery(i) = x else {
            continue;
        };
        let sub = &from.subqueries[*i];
        if sub.in_where != for_where {
            continue;
        }
        let v = match &cache[*i] {
            Some(rows) => super::subquery::test(sub, rows, row, env)?,
            None => {
                let rows = super::subquery::run(sub, txn, env, row).await?;
                super::subquery::test(sub, &rows, row, env)?
            }
        };
        row[from.width + k] = v;
    }
    Ok(())
}

/// How a step reads.
struct Read {
    lock: bool,
    reverse: bool,
    /// Rows the step need not produce beyond.
    limit: Option<usize>,
    /// The step is the only one (its source's rows are the output).
    single: bool,
}

async fn join_step(
    from: &FromPlan,
    step: &Step,
    partial: Rows,
    read: &Read,
    txn: &mut Option<Txn>,
    env: &Env<'_>,
) -> Result<Rows, SqlError> {
    let src = &from.sources[step.source];
    // A multi-table UPDATE/DELETE target: its row key rides along.
    let key_slot = from
        .extras
        .iter()
        .position(|x| matches!(x, Extra::Key(s) if *s == step.source))
        .map(|k| from.width + k);
    let src = &Placed { src, key_slot };
    let mut out = Vec::new();
    let enough = |out: &Rows| read.limit.is_some_and(|n| out.len() >= n);
    match &step.method {
        Method::Nest(inner) => {
            return nest(from, step, inner, partial, read, txn, env).await;
        }
        Method::Lookup => {
            for p in partial {
                if enough(&out) {
                    break;
                }
                let found = read_source(src, step, &p, read, txn, env).await?;
                emit(src, step, p, found.iter(), &mut out, env)?;
            }
        }
        Method::Scan => {
            let found = read_source(src, step, &partial[0], read, txn, env).await?;
            for p in partial {
                if enough(&out) {
                    break;
                }
                emit(src, step, p, found.iter(), &mut out, env)?;
            }
        }
        Method::Hash {
            build,
            probe,
            types,
        } => {
            let found = read_source(src, step, &partial[0], read, txn, env).await?;
            let table = HashTable::build(&found, build, types);
            for p in partial {
                if enough(&out) {
                    break;
                }
                let cx = Ctx {
                    env,
                    row: &p,
                    aggs: &[],
                };
                let keys = probe
                    .iter()
                    .map(|e| e.eval(&cx))
                    .collect::<Result<Vec<_>, _>>()?;
                match table.probe(keys, types) {
                    Probe::Rows(ix) => {
                        let rows = ix.iter().chain(&table.loose).map(|&i| &found[i]);
                        emit(src, step, p, rows, &mut out, env)?
                    }
                    Probe::All => emit(src, step, p, found.iter(), &mut out, env)?,
                }
            }
        }
    }
    Ok(out)
}

/// A nest's step: its members' steps over the partial rows (each tagged
/// with its number), then per partial row the rows that pass the ON, or
/// the partial row itself (NULL in the nest's slots) when none does.
async fn nest(
    from: &FromPlan,
    step: &Step,
    inner: &[Step],
    partial: Rows,
    read: &Read,
    txn: &mut Option<Txn>,
    env: &Env<'_>,
) -> Result<Rows, SqlError> {
    let mut tagged: Rows = partial
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut r = p.clone();
            r.push(Value::UInt(i as u64));
            r
        })
        .collect();
    let inner_read = Read {
        lock: read.lock,
        reverse: false,
        limit: None,
        single: false,
    };
    for s in inner {
        if tagged.is_empty() {
            break;
        }
        tagged = Box::pin(join_step(from, s, tagged, &inner_read, txn, env)).await?;
    }
    let mut matched = vec![false; partial.len()];
    let mut out = Vec::new();
    for mut r in tagged {
        let Some(Value::UInt(i)) = r.pop() else {
            continue;
        };
        if passes(step.on.as_ref(), &r, env)? {
            matched[i as usize] = true;
            if passes(step.after.as_ref(), &r, env)? {
                out.push(r);
            }
        }
    }
    for (p, m) in partial.into_iter().zip(matched) {
        if !m && passes(step.after.as_ref(), &p, env)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// A source as a step reads it.
struct Placed<'a> {
    src: &'a Source,
    /// Where the row key goes (each row read then carries it last).
    key_slot: Option<usize>,
}

/// Joins one partial row with its candidates.
fn emit<'r>(
    placed: &Placed<'_>,
    step: &Step,
    p: Vec<Value>,
    candidates: impl Iterator<Item = &'r Vec<Value>>,
    out: &mut Rows,
    env: &Env<'_>,
) -> Result<(), SqlError> {
    let src = placed.src;
    let range = src.offset..src.offset + src.columns;
    let mut matched = false;
    for c in candidates {
        let mut r = p.clone();
        r[range.clone()].clone_from_slice(&c[..src.columns]);
        if let (Some(k), Some(key)) = (placed.key_slot, c.get(src.columns)) {
            r[k] = key.clone();
        }
        if passes(step.on.as_ref(), &r, env)? {
            matched = true;
            if passes(step.after.as_ref(), &r, env)? {
                out.push(r);
            }
        }
    }
    if !matched && step.kind == JoinKind::Left && passes(step.after.as_ref(), &p, env)? {
        out.push(p);
    }
    Ok(())
}

/// The source's rows (its own columns) that pass the pushed conjuncts.
async fn read_source(
    placed: &Placed<'_>,
    step: &Step,
    base: &[Value],
    read: &Read,
    txn: &mut Option<Txn>,
    env: &Env<'_>,
) -> Result<Rows, SqlError> {
    let src = placed.src;
    let range = src.offset..src.offset + src.columns;
    let mut scratch = base.to_vec();
    let mut rows = Vec::new();
    let mut seen = 0u64;
    // Reading may stop at the limit only for a lone step that nothing
    // filters after the read.
    let alone = step.on.is_none() && step.after.is_none() && step.kind == JoinKind::Inner;
    let stop = read.limit.filter(|_| alone && read.single);
    let mut keep = |values: Vec<Value>| -> Result<bool, SqlError> {
        seen += 1;
        scratch[range.clone()].clone_from_slice(&values[..src.columns]);
        if passes(step.pushed.as_ref(), &scratch, env)? {
            rows.push(values);
        }
        Ok(stop.is_none_or(|n| rows.len() < n))
    };
    match &src.kind {
        SourceKind::Table(t) if super::information_schema::is_virtual(&t.def) => {
            for r in super::information_schema::rows(&t.def, catalog(env)?) {
                if !keep(r)? {
                    break;
                }
            }
        }
        SourceKind::Table(t) => {
            let Some(txn) = txn.as_mut() else {
                return Err(SqlError::unsupported("a table read outside a transaction"));
            };
            let keys = resolve_at(&step.access, &t.def, env, base)?;
            let full = matches!(
                keys,
                Keys::Range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
            );
            let with_key = placed.key_slot.is_some();
            let mut found = |r: crate::txn::FoundRow| match with_key {
                true => {
                    let mut values = r.values;
                    values.push(Value::Bytes(r.key));
                    keep(values)
                }
                false => keep(r.values),
            };
            read_rows(
                txn,
                &t.def,
                step.access.index,
                keys,
                read.reverse,
                read.lock,
                step.access.cover,
                &mut found,
            )
            .await?;
            if full && stop.is_none() {
                stats::observe(&t.def, seen);
            }
        }
        SourceKind::Query(q) => {
            for r in super::select::rows_of(q, txn, env, &[]).await? {
                if !keep(r)? {
                    break;
                }
            }
        }
        SourceKind::Union(parts) => {
            for r in union(parts, txn, env).await? {
                if !keep(r)? {
                    break;
                }
            }
        }
        SourceKind::Values(v) => {
            for r in v {
                if !keep(r.clone())? {
                    break;
                }
            }
        }
        SourceKind::Cte(id, q) => {
            let kept = match env.stmt.cte_rows(*id) {
                Some(kept) => kept,
                None => {
                    let run = std::sync::Arc::new(super::select::rows_of(q, txn, env, &[]).await?);
                    env.stmt.keep_cte_rows(*id, run.clone());
                    run
                }
            };
            for r in kept.iter() {
                if !keep(r.clone())? {
                    break;
                }
            }
        }
        SourceKind::Recursive(r) => {
            for row in recursive(r, txn, env).await? {
                if !keep(row)? {
                    break;
                }
            }
        }
        SourceKind::Working(id) => {
            for r in env
                .stmt
                .cte_rows(working_key(*id))
                .iter()
                .flat_map(|k| k.iter())
            {
                if !keep(r.clone())? {
                    break;
                }
            }
        }
    }
    Ok(rows)
}

/// Where a recursive CTE's working table is kept (beside CTE rows).
fn working_key(id: u64) -> u64 {
    id | 1 << 63
}

/// A recursive CTE's rows: the anchors', then rounds of the recursive
/// parts over the previous round's new rows until a round adds none. With
/// a UNION DISTINCT anywhere, a row already found is not added again.
/// More than `cte_max_recursion_depth` rounds is error 3636.
async fn recursive(
    r: &super::plan::RecursivePlan,
    txn: &mut Option<Txn>,
    env: &Env<'_>,
) -> Result<Rows, SqlError> {
    let max = match env.sys_vars.get("cte_max_recursion_depth") {
        Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Value::UInt(n)) => *n,
        _ => 1000,
    };
    let distinct = r.parts.iter().skip(1).any(|(all, _)| !all);
    let (anchors, rounds) = r.parts.split_at(r.anchors);
    let mut all = union(anchors, txn, env).await?;
    if distinct {
        all = super::select::dedup(all);
    }
    let mut added = all.clone();
    let mut depth = 0u64;
    while !added.is_empty() {
        depth += 1;
        if depth > max {
            return Err(SqlError::new(
                3636,
                "HY000",
                format!(
                    "Recursive query aborted after {depth} iterations. Try increasing \
                     @@cte_max_recursion_depth to a larger value."
                ),
            ));
        }
        env.stmt
            .keep_cte_rows(working_key(r.id), std::sync::Arc::new(added));
        let mut found = Vec::new();
        for (_, p) in rounds {
            found.extend(super::select::rows_of(p, txn, env, &[]).await?);
        }
        if distinct {
            let before = all.len();
            all.extend(found);
            all = super::select::dedup(all);
            added = all[before..].to_vec();
        } else {
            all.extend(found.iter().cloned());
            added = found;
        }
    }
    Ok(all)
}

/// The catalog an information_schema table is made from.
pub(crate) fn catalog<'e>(env: &Env<'e>) -> Result<&'e crate::catalog::Catalog, SqlError> {
    env.catalog
        .ok_or_else(|| SqlError::unsupported("information_schema in this statement"))
}

/// The rows of a UNION: each part's, duplicates dropped up to the last
/// UNION DISTINCT (as MySQL: a DISTINCT union removes duplicates from
/// everything to its left).
async fn union(
    parts: &[(bool, SelectPlan)],
    txn: &mut Option<Txn>,
    env: &Env<'_>,
) -> Result<Rows, SqlError> {
    let mut all: Rows = Vec::new();
    for (keep_all, p) in parts {
        all.extend(super::select::rows_of(p, txn, env, &[]).await?);
        if !keep_all {
            all = super::select::dedup(all);
        }
    }
    Ok(all)
}

/// A hash table over a step's buffered rows.
struct HashTable {
    map: HashMap<Vec<u8>, Vec<usize>>,
    /// Rows whose key could not be encoded: checked for every probe.
    loose: Vec<usize>,
}

enum Probe {
    Rows(Vec<usize>),
    /// The probe key does not convert to the build columns' types: every
    /// row is a candidate.
    All,
}

impl HashTable {
    fn build(rows: &Rows, cols: &[usize], types: &[crate::types::ColumnType]) -> HashTable {
        let mut map: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
        let mut loose = Vec::new();
        'rows: for (i, r) in rows.iter().enumerate() {
            let mut key = Vec::new();
            for (&c, ty) in cols.iter().zip(types) {
                match &r[c] {
                    // NULL never equals anything.
                    Value::Null => continue 'rows,
                    v => {
                        if crate::key::encode_key_part(&mut key, ty, v).is_err() {
                            loose.push(i);
                            continue 'rows;
                        }
                    }
                }
            }
            map.entry(key).or_default().push(i);
        }
        HashTable { map, loose }
    }

    fn probe(&self, values: Vec<Value>, types: &[crate::types::ColumnType]) -> Probe {
        let mut key = Vec::new();
        for (v, ty) in values.into_iter().zip(types) {
            if matches!(v, Value::Null) {
                return Probe::Rows(Vec::new());
            }
            let Some(v) = exact(ty, v) else {
                return Probe::All;
            };
            if crate::key::encode_key_part(&mut key, ty, &v).is_err() {
                return Probe::All;
            }
        }
        Probe::Rows(self.map.get(&key).cloned().unwrap_or_default())
    }
}
