//! Subqueries in expressions: scalar `(SELECT …)`, `[NOT] EXISTS`,
//! `[NOT] IN (SELECT …)` and `op ANY/SOME/ALL (SELECT …)`.
//!
//! A subquery is compiled against the enclosing query's names (so it may
//! read the enclosing row: correlated) and registered there as an extra
//! value of the enclosing row; the expression that contained it reads that
//! value like a column. [`super::join`] computes it: once per statement
//! when uncorrelated, per row otherwise. The tests follow MySQL's NULL
//! rules: `x IN (…)` is NULL when x is NULL (and the subquery has rows) or
//! when nothing matched but some value was NULL; `NOT IN` negates that; an
//! empty subquery makes IN false and ALL true whatever x is.

use sqlparser::ast::{self, BinaryOperator};

use crate::txn::Txn;
use crate::types::{Collation, Value};

use super::SqlError;
use super::compile::{ExprCompiler, collation_of};
use super::expr::{CmpOp, Ctx, Env, Expr, compare_op};
use super::plan::{Extra, Subquery, SubqueryTest};

/// Compiles a subquery into the enclosing query's extras; the expression
/// reading its result.
pub(crate) fn compile(
    cx: &mut ExprCompiler<'_>,
    q: &ast::Query,
    lhs: Option<&ast::Expr>,
    test: SubqueryTest,
) -> Result<Expr, SqlError> {
    let Some(names) = cx.names else {
        return Err(SqlError::unsupported("subqueries in this statement"));
    };
    let row = match (test, lhs) {
        (SubqueryTest::RowIn(_), Some(ast::Expr::Tuple(list))) => list
            .iter()
            .map(|e| cx.expr(e))
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    let lhs = match test {
        SubqueryTest::RowIn(_) => None,
        _ => lhs.map(|e| cx.expr(e)).transpose()?,
    };
    let mut plan = super::query::query(q, names.scope, cx.params, Some(names))?;
    let width = match test {
        SubqueryTest::RowIn(_) => row.len(),
        _ => 1,
    };
    if !matches!(test, SubqueryTest::Exists(_)) && plan.items.len() != width {
        return Err(SqlError::new(
            1241,
            "21000",
            format!("Operand should contain {width} column(s)"),
        ));
    }
    let row = row
        .into_iter()
        .zip(&plan.items)
        .map(|(e, item)| {
            let coll = match (&e, &item.expr) {
                (Expr::Column(_, c), _) | (_, Expr::Column(_, c)) => *c,
                _ => collation_of(&[&e]),
            };
            (e, coll)
        })
        .collect();
    if plan.limit.is_none() && plan.offset.is_none() {
        // EXISTS needs one row; a scalar subquery two (to tell 1242).
        let n = match test {
            SubqueryTest::Exists(_) => Some(1),
            SubqueryTest::Scalar => Some(2),
            SubqueryTest::Quantified(..) | SubqueryTest::RowIn(_) => None,
        };
        plan.limit = n.map(|n| Expr::Lit(Value::Int(n)));
    }
    let correlated = plan
        .sources
        .as_ref()
        .is_some_and(|f| f.extras.iter().any(|x| matches!(x, Extra::Outer(_))));
    let inner_coll = match plan.items.first().map(|i| &i.expr) {
        Some(Expr::Column(_, c)) => Some(*c),
        _ => None,
    };
    let collation = match &lhs {
        Some(Expr::Column(_, c)) => *c,
        Some(l) => inner_coll.unwrap_or_else(|| collation_of(&[l])),
        None => inner_coll.unwrap_or(Collation::Utf8mb4GeneralCi),
    };
    let slot = names.add_subquery(Subquery {
        test,
        lhs,
        collation,
        row,
        plan: Box::new(plan),
        correlated,
        in_where: false,
    });
    Ok(match (test, slot) {
        (SubqueryTest::Scalar, Expr::Column(i, _)) => Expr::Column(i, collation),
        (_, e) => e,
    })
}

/// `left op ANY/ALL (subquery)`.
pub(crate) fn quantified(
    cx: &mut ExprCompiler<'_>,
    left: &ast::Expr,
    op: &BinaryOperator,
    right: &ast::Expr,
    all: bool,
) -> Result<Expr, SqlError> {
    let ast::Expr::Subquery(q) = right else {
        return Err(SqlError::unsupported("ANY/ALL over a non-subquery"));
    };
    let op = match op {
        BinaryOperator::Eq => CmpOp::Eq,
        BinaryOperator::NotEq => CmpOp::Ne,
        BinaryOperator::Lt => CmpOp::Lt,
        BinaryOperator::LtEq => CmpOp::Le,
        BinaryOperator::Gt => CmpOp::Gt,
        BinaryOperator::GtEq => CmpOp::Ge,
        other => return Err(SqlError::unsupported(format!("{other} ANY/ALL"))),
    };
    compile(cx, q, Some(left), SubqueryTest::Quantified(op, all, false))
}

/// The subquery's rows, for the enclosing row `outer`.
pub(crate) async fn run(
    sub: &Subquery,
    txn: &mut Option<Txn>,
    env: &Env<'_>,
    outer: &[Value],
) -> Result<Vec<Vec<Value>>, SqlError> {
    super::select::rows_of(&sub.plan, txn, env, outer).await
}

/// The subquery's test over its rows, for the enclosing row `row`.
pub(crate) fn test(
    sub: &Subquery,
    rows: &[Vec<Value>],
    row: &[Value],
    env: &Env<'_>,
) -> Result<Value, SqlError> {
    let truth = |t: Option<bool>| t.map_or(Value::Null, |b| Value::Int(i64::from(b)));
    match sub.test {
        SubqueryTest::Scalar => match rows {
            [] => Ok(Value::Null),
            [r] => Ok(r.first().cloned().unwrap_or(Value::Null)),
            _ => Err(SqlError::new(
                1242,
                "21000",
                "Subquery returns more than 1 row",
            )),
        },
        SubqueryTest::Exists(negated) => Ok(truth(Some(rows.is_empty() == negated))),
        SubqueryTest::Quantified(op, all, negated) => {
            let lhs = match &sub.lhs {
                Some(e) => e.eval(&Ctx {
                    env,
                    row,
                    aggs: &[],
                })?,
                None => Value::Null,
            };
            let t = quantify(op, all, &lhs, rows, sub.collation);
            Ok(truth(t.map(|b| b != negated)))
        }
        SubqueryTest::RowIn(negated) => {
            let cx = Ctx {
                env,
                row,
                aggs: &[],
            };
            let left = sub
                .row
                .iter()
                .map(|(e, c)| Ok((e.eval(&cx)?, *c)))
                .collect::<Result<Vec<_>, SqlError>>()?;
            Ok(truth(row_in(&left, rows).map(|b| b != negated)))
        }
    }
}

/// `lhs op ANY (values)` or `lhs op ALL (values)`, three-valued.
fn quantify(
    op: CmpOp,
    all: bool,
    lhs: &Value,
    rows: &[Vec<Value>],
    coll: Collation,
) -> Option<bool> {
    if rows.is_empty() {
        return Some(all);
    }
    let mut saw_null = false;
    for r in rows {
        let v = r.first().unwrap_or(&Value::Null);
        match compare_op(op, lhs, v, coll) {
            Some(t) if t != all => return Some(t),
            None => saw_null = true,
            Some(_) => {}
        }
    }
    if saw_null { None } else { Some(all) }
}

/// `(l1, l2, …) IN (rows)`, three-valued: true if a row equals it, else
/// NULL if some row's comparison was NULL, else false (and false for no
/// rows).
fn row_in(left: &[(Value, Collation)], rows: &[Vec<Value>]) -> Option<bool> {
    let mut saw_null = false;
    for r in rows {
        let mut eq = Some(true);
        for ((l, c), v) in left.iter().zip(r) {
            match compare_op(CmpOp::Eq, l, v, *c) {
                Some(false) => {
                    eq = Some(false);
                    break;
                }
                None => eq = None,
                Some(true) => {}
            }
        }
        match eq {
            Some(true) => return Some(true),
            None => saw_null = true,
            Some(false) => {}
        }
    }
    if saw_null { None } else { Some(false) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[Value]) -> Vec<Vec<Value>> {
        v.iter().map(|x| vec![x.clone()]).collect()
    }

    #[test]
    fn in_and_not_in_follow_mysql_null_rules() {
        let c = Collation::Binary;
        let one = Value::Int(1);
        let with_null = rows(&[Value::Int(2), Value::Null]);
        // 1 IN (2, NULL) is NULL; 1 IN () is false; NULL IN () is false.
        assert_eq!(quantify(CmpOp::Eq, false, &one, &with_null, c), None);
        assert_eq!(quantify(CmpOp::Eq, false, &one, &[], c), Some(false));
        assert_eq!(
            quantify(CmpOp::Eq, false, &Value::Null, &[], c),
            Some(false)
        );
        assert_eq!(
            quantify(
                CmpOp::Eq,
                false,
                &Value::Null,
                &rows(std::slice::from_ref(&one)),
                c
            ),
            None
        );
        assert_eq!(
            quantify(
                CmpOp::Eq,
                false,
                &one,
                &rows(&[Value::Null, one.clone()]),
                c
            ),
            Some(true)
        );
        // 3 > ALL (1, 2) is true; > ALL of an empty set is true.
        let small = rows(&[Value::Int(1), Value::Int(2)]);
        assert_eq!(
            quantify(CmpOp::Gt, true, &Value::Int(3), &small, c),
            Some(true)
        );
        assert_eq!(
            quantify(CmpOp::Gt, true, &Value::Int(2), &small, c),
            Some(false)
        );
        assert_eq!(
            quantify(CmpOp::Gt, true, &Value::Int(3), &[], c),
            Some(true)
        );
    }
}
