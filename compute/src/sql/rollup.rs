//! GROUP BY … WITH ROLLUP over any expression, and `GROUPING()`.
//!
//! A super-aggregate row shows NULL for every rolled-up GROUP BY
//! expression. For a plain column the executor NULLs the column in the
//! row the super row is made from (`select::grouped`); an expression that
//! is not a plain column (`GROUP BY YEAR(d)`, `a + 1`) cannot be NULLed
//! that way, so at compile time ([`bind`]) every occurrence of it in the
//! select list, HAVING and ORDER BY — a sub-expression equal to the GROUP
//! BY expression, as MySQL matches them — is replaced by a reference to a
//! *group slot*. `GROUPING(e, …)` becomes the bit mask of the arguments'
//! *rolled-up flags* (the first argument the highest bit); an argument
//! that is no GROUP BY expression is 3602, GROUPING without ROLLUP 1111
//! (MySQL 8's errors; MariaDB has no GROUPING).
//!
//! Slots ride behind the aggregates' results (`Expr::Agg(i)` with `i` at
//! or past the plan's aggregate count): for GROUP BY expression j, slot
//! `aggs + j` holds the group's value of it (NULL when rolled up) and
//! slot `aggs + n + j` the flag (1 when rolled up, else 0) —
//! [`slots`] appends them per row. Plans without ROLLUP have none.
//!
//! Depends on the expression tree only; knows nothing of how rows are read.

use crate::types::Value;

use super::SqlError;
use super::expr::{ArithOp, Expr};
use super::func::Func;
use super::plan::SelectPlan;

/// Rewrites the rolled-up expressions and `GROUPING()` calls of a
/// plan's select list, HAVING and ORDER BY into slot references.
pub(crate) fn bind(plan: &mut SelectPlan) -> Result<(), SqlError> {
    let aggs = plan.aggs.len();
    let group_by = plan.group_by.clone();
    let rollup = plan.rollup;
    let mut f = |e: &mut Expr| -> Result<bool, SqlError> {
        if let Expr::Func(Func::Grouping, args) = e {
            if !rollup {
                return Err(invalid_use());
            }
            *e = grouping(args, &group_by, aggs)?;
            return Ok(true);
        }
        if !rollup || matches!(e, Expr::Column(..)) {
            return Ok(false);
        }
        match group_by.iter().position(|g| g == e) {
            Some(j) => {
                *e = Expr::Agg(aggs + j);
                Ok(true)
            }
            None => Ok(false),
        }
    };
    for item in &mut plan.items {
        item.expr.rewrite(&mut f)?;
    }
    if let Some(h) = &mut plan.having {
        h.rewrite(&mut f)?;
    }
    for key in &mut plan.order {
        key.expr.rewrite(&mut f)?;
    }
    Ok(())
}

/// MySQL's 1111, for GROUPING() where it cannot be.
pub(crate) fn invalid_use() -> SqlError {
    SqlError::new(1111, "HY000", "Invalid use of group function")
}

/// `GROUPING(args)`: the flags of the arguments' GROUP BY expressions as
/// one integer, the first argument's the highest bit.
fn grouping(args: &[Expr], group_by: &[Expr], aggs: usize) -> Result<Expr, SqlError> {
    let n = group_by.len();
    let mut mask: Option<Expr> = None;
    for (i, a) in args.iter().enumerate() {
        let Some(j) = group_by.iter().position(|g| g == a) else {
            return Err(SqlError::new(
                3602,
                "HY000",
                format!(
                    "Argument #{} of GROUPING function is not in GROUP BY",
                    i + 1
                ),
            ));
        };
        let flag = Expr::Agg(aggs + n + j);
        mask = Some(match mask {
            None => flag,
            Some(m) => Expr::Arith(
                ArithOp::Add,
                Box::new(Expr::Arith(
                    ArithOp::Mul,
                    Box::new(m),
                    Box::new(Expr::Lit(Value::Int(2))),
                )),
                Box::new(flag),
            ),
        });
    }
    mask.ok_or_else(invalid_use)
}

/// Appends a group's slots to its aggregate results: `key` is the
/// group's GROUP BY values, `kept` how many of them the row keeps (all
/// for an ordinary group; fewer for a super-aggregate row).
pub(crate) fn slots(aggs: &mut Vec<Value>, key: &[Value], kept: usize) {
    aggs.extend(
        key.iter()
            .enumerate()
            .map(|(j, v)| if j < kept { v.clone() } else { Value::Null }),
    );
    aggs.extend((0..key.len()).map(|j| Value::Int(i64::from(j >= kept))));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Collation;

    fn col(i: usize) -> Expr {
        Expr::Column(i, Collation::Binary)
    }

    #[test]
    fn grouping_masks_its_arguments_first_highest() {
        let group_by = vec![col(0), col(1), col(2)];
        let e = grouping(&[col(2), col(0)], &group_by, 4).expect("both grouped");
        let mut aggs = vec![Value::Null; 4];
        // A row that rolled up columns 1 and 2 (keeps only column 0).
        slots(&mut aggs, &[Value::Int(7), Value::Int(8), Value::Int(9)], 1);
        let stmt = super::super::expr::StmtEnv::starting(0, 0);
        let vars = Default::default();
        let users = Default::default();
        let env = super::super::expr::Env {
            params: &[],
            db: None,
            connection_id: 0,
            last_insert_id: 0,
            sys_vars: &vars,
            user_vars: &users,
            stmt: &stmt,
            catalog: None,
        };
        let cx = super::super::expr::Ctx {
            env: &env,
            row: &[],
            aggs: &aggs,
        };
        // col(2) rolled up (1), col(0) kept (0): binary 10.
        assert_eq!(e.eval(&cx).expect("evaluates"), Value::Int(2));
        assert_eq!(aggs[4..7], [Value::Int(7), Value::Null, Value::Null]);
        let err = grouping(&[col(5)], &group_by, 4).expect_err("not grouped");
        assert_eq!(err.code, 3602);
    }
}
