//! Multi-table UPDATE and DELETE: `UPDATE t1 JOIN t2 ON … SET t1.a = t2.b
//! WHERE …`, `UPDATE t1, t2 SET …`, `DELETE t1[, t2] FROM <joins> WHERE …`
//! and `DELETE FROM t1[, t2] USING <joins> WHERE …`.
//!
//! The table references compile as a SELECT's FROM clause (any join the
//! query side runs) into a [`FromPlan`] read with locks (current reads).
//! Each target table's row key rides along in the row layout, after every
//! other value (`Extra::Key`), so the rows to change are known exactly,
//! whether or not the table has a primary key. Then, as MySQL: each target
//! row changes at most once (the first joined row that reaches it wins), a
//! target row an outer join left NULL is skipped, and every assignment is
//! computed from the joined rows as read (no assignment sees another
//! table's new values). Affected rows: rows changed (UPDATE; the info
//! string also counts the distinct rows matched) or deleted (DELETE, every
//! target together).
//!
//! ORDER BY and LIMIT are refused as MySQL does (1221 for UPDATE, a syntax
//! error for DELETE).

use std::collections::HashSet;

use sqlparser::ast::{self, AssignmentTarget, ObjectName};

use crate::txn::{FoundRow, Txn};
use crate::types::Value;

use super::compile::{Params, Scope};
use super::expr::{Ctx, Env, Expr};
use super::names::Names;
use super::plan::{Extra, SelectPlan, TableRef};
use super::query::compiler;
use super::{Output, SqlError};

/// A multi-table UPDATE or DELETE.
pub(crate) struct MultiPlan {
    /// The joined rows: a query with no select list, read with locks.
    pub query: SelectPlan,
    pub targets: Vec<Target>,
    pub delete: bool,
}

/// One table the statement changes.
pub(crate) struct Target {
    pub table: TableRef,
    /// Where its columns start in the row layout.
    pub offset: usize,
    /// Where its row key is in the row layout (NULL: no row, outer join).
    pub key_slot: usize,
    /// UPDATE: (column of the table, value over the joined row).
    pub assignments: Vec<(usize, Expr)>,
}

fn misuse(statement: &str, clause: &str) -> SqlError {
    SqlError::new(
        1221,
        "HY000",
        format!("Incorrect usage of {statement} and {clause}"),
    )
}

fn not_updatable(name: &str, statement: &str) -> SqlError {
    SqlError::new(
        1288,
        "HY000",
        format!("The target table {name} of the {statement} is not updatable"),
    )
}

/// `UPDATE <joins> SET … [WHERE …]`.
pub(crate) fn update(
    u: &ast::Update,
    scope: &Scope<'_>,
    params: &mut Params,
) -> Result<MultiPlan, SqlError> {
    if !u.order_by.is_empty() {
        return Err(misuse("UPDATE", "ORDER BY"));
    }
    if u.limit.is_some() {
        return Err(misuse("UPDATE", "LIMIT"));
    }
    let mut names = Names::new(scope, None);
    let joins = super::from::sources(std::slice::from_ref(&u.table), &mut names, scope, params)?;
    let mut cx = compiler(&names, params, "on clause", None);
    let joins = joins.compile(&mut cx)?;
    // (source, column, value) in the statement's order.
    let mut sets: Vec<(usize, usize, Expr)> = Vec::new();
    cx.clause = "field list";
    for a in &u.assignments {
        let AssignmentTarget::ColumnName(name) = &a.target else {
            return Err(SqlError::unsupported("tuple assignment"));
        };
        let parts = name_parts(name);
        let shown = parts.join(".");
        let p = match names.resolve(&parts, "field list")? {
            Some(Expr::Column(p, _)) if p < names.width() => p,
            _ => return Err(SqlError::unknown_column(&shown, "field list")),
        };
        let s = names
            .source_of(p)
            .ok_or_else(|| SqlError::unknown_column(&shown, "field list"))?;
        if names.sources[s].table.is_none() {
            return Err(not_updatable(&names.sources[s].qualifier, "UPDATE"));
        }
        let value = cx.expr(&a.value)?;
        sets.push((s, p - names.sources[s].offset, value));
    }
    cx.clause = "where clause";
    let filter = u.selection.as_ref().map(|e| cx.expr(e)).transpose()?;
    let mut chosen: Vec<usize> = Vec::new();
    for (s, _, _) in &sets {
        if !chosen.contains(s) {
            chosen.push(*s);
        }
    }
    let mut plan = finish(names, joins, filter, &chosen, false)?;
    for (s, c, value) in sets {
        let at = chosen.iter().position(|x| *x == s).expect("chosen above");
        plan.targets[at].assignments.push((c, value));
    }
    Ok(plan)
}

/// `DELETE t1[, t2] FROM <joins> …` and `DELETE FROM t1[, t2] USING <joins> …`.
pub(crate) fn delete(
    d: &ast::Delete,
    scope: &Scope<'_>,
    params: &mut Params,
) -> Result<MultiPlan, SqlError> {
    if !d.order_by.is_empty() {
        return Err(SqlError::syntax("ORDER BY", 1));
    }
    if d.limit.is_some() {
        return Err(SqlError::syntax("LIMIT", 1));
    }
    let from = match &d.from {
        ast::FromTable::WithFromKeyword(f) | ast::FromTable::WithoutKeyword(f) => f,
    };
    let (targets, refs): (Vec<&ObjectName>, &[ast::TableWithJoins]) = match &d.using {
        Some(using) => {
            let mut targets = Vec::new();
            for t in from {
                match (&t.relation, t.joins.is_empty()) {
                    (
                        ast::TableFactor::Table {
                            name, alias: None, ..
                        },
                        true,
                    ) => targets.push(name),
                    _ => return Err(SqlError::syntax(&t.to_string(), 1)),
                }
            }
            (targets, using)
        }
        None => (d.tables.iter().collect(), from),
    };
    let mut names = Names::new(scope, None);
    let joins = super::from::sources(refs, &mut names, scope, params)?;
    let mut cx = compiler(&names, params, "on clause", None);
    let joins = joins.compile(&mut cx)?;
    cx.clause = "where clause";
    let filter = d.selection.as_ref().map(|e| cx.expr(e)).transpose()?;
    let mut chosen = Vec::new();
    for t in targets {
        let s = target_source(&names, t)?;
        if !chosen.contains(&s) {
            chosen.push(s);
        }
    }
    finish(names, joins, filter, &chosen, true)
}

fn name_parts(name: &ObjectName) -> Vec<&str> {
    name.0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.as_str()))
        .collect()
}

/// The source a DELETE target names (`t` or `db.t`; an aliased table
/// only by its alias).
fn target_source(names: &Names<'_>, t: &ObjectName) -> Result<usize, SqlError> {
    let parts = name_parts(t);
    let (db, table) = match parts.as_slice() {
        [t] => (None, *t),
        [d, t] => (Some(*d), *t),
        _ => return Err(SqlError::unsupported(t)),
    };
    let s = names
        .sources
        .iter()
        .position(|s| {
            s.qualifier.eq_ignore_ascii_case(table)
                && db.is_none_or(|d| s.db.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(d)))
        })
        .ok_or_else(|| {
            SqlError::new(
                1109,
                "42S02",
                format!("Unknown table '{table}' in MULTI DELETE"),
            )
        })?;
    if names.sources[s].table.is_none() {
        return Err(not_updatable(table, "DELETE"));
    }
    Ok(s)
}

/// Plans the joins and gives each chosen source its key slot.
fn finish(
    names: Names<'_>,
    joins: super::from::CompiledJoins,
    filter: Option<Expr>,
    chosen: &[usize],
    delete: bool,
) -> Result<MultiPlan, SqlError> {
    if names.sources.iter().any(|s| {
        s.table
            .as_ref()
            .is_some_and(|(_, t)| super::information_schema::is_virtual(t))
    }) {
        return Err(SqlError::unsupported(
            "information_schema tables in a multi-table UPDATE or DELETE",
        ));
    }
    let mut targets = Vec::with_capacity(chosen.len());
    for &s in chosen {
        let src = &names.sources[s];
        let (db, def) = src.table.clone().expect("targets are base tables");
        targets.push(Target {
            table: TableRef { db, def },
            offset: src.offset,
            key_slot: 0,
            assignments: Vec::new(),
        });
    }
    let mut query = SelectPlan {
        from: None,
        sources: None,
        items: Vec::new(),
        filter,
        access: Default::default(),
        aggs: Vec::new(),
        grouped: false,
        group_by: Vec::new(),
        rollup: false,
        having: None,
        order: Vec::new(),
        index_order: None,
        distinct: false,
        limit: None,
        offset: None,
        lock: true,
        calc_found_rows: false,
    };
    let mut from = super::planner::plan(&mut query, names, joins)?;
    for (t, &s) in targets.iter_mut().zip(chosen) {
        from.extras.push(Extra::Key(s));
        t.key_slot = from.width + from.extras.len() - 1;
    }
    query.sources = Some(Box::new(from));
    Ok(MultiPlan {
        query,
        targets,
        delete,
    })
}

/// Runs a multi-table UPDATE or DELETE in the statement's transaction.
pub(crate) async fn run(
    plan: &MultiPlan,
    slot: &mut Option<Txn>,
    env: &Env<'_>,
) -> Result<Output, SqlError> {
    let Some(from) = &plan.query.sources else {
        return Err(SqlError::unsupported(
            "a multi-table statement without tables",
        ));
    };
    let rows = super::join::rows(&plan.query, from, slot, env, &[], None).await?;
    let Some(txn) = slot.as_mut() else {
        return Err(SqlError::unsupported("a write outside a transaction"));
    };
    let mut seen: HashSet<(u32, u32, Vec<u8>)> = HashSet::new();
    let (mut matched, mut changed) = (0u64, 0u64);
    // Every change is computed from the rows as read, before any is made.
    let mut writes: Vec<(&Target, FoundRow, Option<Vec<Value>>)> = Vec::new();
    for row in &rows {
        for t in &plan.targets {
            let Some(Value::Bytes(key)) = row.get(t.key_slot) else {
                continue;
            };
            if !seen.insert((t.table.def.db_id, t.table.def.id, key.clone())) {
                continue;
            }
            let width = t.table.def.columns.len();
            let old = FoundRow {
                key: key.clone(),
                values: row[t.offset..t.offset + width].to_vec(),
            };
            matched += 1;
            let new = match plan.delete {
                true => None,
                false => Some(assign(t, row, matched as usize, env)?),
            };
            writes.push((t, old, new));
        }
    }
    for (t, old, new) in writes {
        match new {
            None => txn.delete(&t.table.def, &old).await?,
            Some(new) if new == old.values => continue,
            Some(new) => txn.update(&t.table.def, &old, new).await?,
        }
        changed += 1;
    }
    let info = match plan.delete {
        true => String::new(),
        false => {
            let w = env.stmt.warning_count();
            format!("Rows matched: {matched}  Changed: {changed}  Warnings: {w}")
        }
    };
    Ok(Output::Ok {
        affected_rows: changed,
        last_insert_id: 0,
        warnings: 0,
        info,
    })
}

/// A target row's new values: its assignments left to right over the
/// joined row, each seeing the target's earlier ones.
fn assign(t: &Target, row: &[Value], at: usize, env: &Env<'_>) -> Result<Vec<Value>, SqlError> {
    let def = &t.table.def;
    let mut joined = row.to_vec();
    for (c, e) in &t.assignments {
        let v = e.eval(&Ctx {
            env,
            row: &joined,
            aggs: &[],
        })?;
        joined[t.offset + c] = super::dml::stored(def, *c, v, at, env)?;
    }
    Ok(joined[t.offset..t.offset + def.columns.len()].to_vec())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::Engine;
    use crate::embedded::StorageCluster;
    use crate::sql::{Output, Session};
    use crate::types::Value;

    async fn rows(s: &mut Session, id: u32, params: Vec<Value>) -> Vec<Vec<String>> {
        match s.execute(id, params).await {
            Ok(Output::Rows { rows, .. }) => rows
                .into_iter()
                .map(|r| r.into_iter().map(|v| v.to_string()).collect())
                .collect(),
            other => panic!("not rows: {other:?}"),
        }
    }

    /// Prepared statements: a CTE named twice keeps its `?` numbers, and a
    /// multi-table UPDATE/DELETE binds its parameters in the text's order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prepared_ctes_and_multi_table_writes_bind_parameters_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = StorageCluster::start(dir.path(), "multi").await.unwrap();
        let mut cfg = cluster.engine_config();
        cfg.lock_wait_timeout = Duration::from_secs(2);
        let engine = Engine::open(cfg).await.expect("the engine opens");
        let mut s = Session::new(engine.clone(), 1);
        for sql in [
            "CREATE DATABASE d",
            "USE d",
            "CREATE TABLE t1 (id INT PRIMARY KEY, a INT)",
            "CREATE TABLE t2 (id INT PRIMARY KEY, v INT)",
            "INSERT INTO t1 VALUES (1, 0), (2, 0), (3, 0)",
            "INSERT INTO t2 VALUES (1, 10), (2, 20), (3, 30)",
        ] {
            s.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let cte = s
            .prepare(
                "WITH c AS (SELECT ? AS x) SELECT c.x, c2.x, ? FROM c JOIN c AS c2 ON c2.x = c.x",
            )
            .await
            .unwrap();
        assert_eq!(cte.params, 2);
        let got = rows(&mut s, cte.id, vec![Value::Int(7), Value::Int(8)]).await;
        assert_eq!(got, vec![vec!["7", "7", "8"]]);
        // A recursive CTE's `?` (anchor, recursive part) and the query's,
        // run twice: each execution starts from nothing kept.
        let rec = s
            .prepare(
                "WITH RECURSIVE r (n) AS (SELECT ? UNION ALL SELECT n + ? FROM r WHERE n < ?) \
                 SELECT COUNT(*), MAX(a.n) FROM r a JOIN r b ON a.n = b.n WHERE a.n > ?",
            )
            .await
            .unwrap();
        assert_eq!(rec.params, 4);
        let args = |a, b, c, d| vec![Value::Int(a), Value::Int(b), Value::Int(c), Value::Int(d)];
        let got = rows(&mut s, rec.id, args(1, 2, 9, 2)).await;
        assert_eq!(got, vec![vec!["4", "9"]]);
        let got = rows(&mut s, rec.id, args(10, 5, 30, 0)).await;
        assert_eq!(got, vec![vec!["5", "30"]]);

        let up = s
            .prepare("UPDATE t1 JOIN t2 ON t2.id = t1.id AND t2.v > ? SET t1.a = t2.v + ? WHERE t1.id < ?")
            .await
            .unwrap();
        let out = s
            .execute(up.id, vec![Value::Int(10), Value::Int(1), Value::Int(3)])
            .await
            .unwrap();
        assert!(
            matches!(
                out,
                Output::Ok {
                    affected_rows: 1,
                    ..
                }
            ),
            "{out:?}"
        );
        let del = s
            .prepare("DELETE t1, t2 FROM t1 JOIN t2 ON t2.id = t1.id WHERE t1.a = ?")
            .await
            .unwrap();
        let out = s.execute(del.id, vec![Value::Int(21)]).await.unwrap();
        assert!(
            matches!(
                out,
                Output::Ok {
                    affected_rows: 2,
                    ..
                }
            ),
            "{out:?}"
        );
        let left = s.query("SELECT id, a FROM t1 ORDER BY id").await.unwrap();
        let Output::Rows { rows, .. } = left else {
            panic!("not rows");
        };
        assert_eq!(
            rows,
            vec![
                vec![Value::Int(1), Value::Int(0)],
                vec![Value::Int(3), Value::Int(0)]
            ]
        );
    }
}
