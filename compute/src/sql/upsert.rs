//! What an INSERT does when a row meets a duplicate key: INSERT IGNORE
//! (skip it, with a warning), REPLACE (delete every row in the way, then
//! insert) and ON DUPLICATE KEY UPDATE (update the row in the way).
//!
//! The UPDATE's expressions are evaluated over the old row followed by the
//! row that was to be inserted (the join convention: `Expr::Column(i)` is
//! the i-th value of the concatenation), so `VALUES(c)` and a row alias's
//! `new.c` are the column `n + c`. They are compiled against the table's
//! definition widened with those columns, under names no query can write.

use sqlparser::ast::{self, FunctionArg, FunctionArgExpr, FunctionArguments, OnInsert};

use crate::catalog::TableDef;

use super::SqlError;
use super::compile::{ExprCompiler, Params};
use super::expr::Expr;

/// What a duplicate key makes an INSERT do.
#[derive(Clone, Default)]
pub(crate) enum Conflict {
    /// Fail with 1062.
    #[default]
    Error,
    Ignore,
    Replace,
    /// Column assignments over (old row, new row).
    Update(Vec<(usize, Expr)>),
}

/// The marker that names the inserted row's columns.
const NEW: char = '\u{1}';

pub(crate) fn compile(
    i: &ast::Insert,
    def: &TableDef,
    params: &mut Params,
) -> Result<Conflict, SqlError> {
    if i.returning.is_some() {
        return Err(SqlError::unsupported("INSERT … RETURNING"));
    }
    let assignments = match &i.on {
        None if i.replace_into => return Ok(Conflict::Replace),
        None if i.ignore => return Ok(Conflict::Ignore),
        None => return Ok(Conflict::Error),
        Some(OnInsert::DuplicateKeyUpdate(a)) => a,
        Some(other) => return Err(SqlError::unsupported(other)),
    };
    let alias = i
        .insert_alias
        .as_ref()
        .and_then(|a| a.row_alias.0.last())
        .and_then(|p| p.as_ident())
        .map(|id| id.value.clone());
    let mut wide = def.clone();
    for c in &def.columns {
        let mut new = c.clone();
        new.name = format!("{NEW}{}", c.name);
        wide.columns.push(new);
    }
    let mut cx = ExprCompiler {
        table: Some(&wide),
        alias: None,
        clause: "field list",
        params,
        aggs: None,
        names: None,
    };
    let mut out = Vec::with_capacity(assignments.len());
    for a in assignments {
        let name = match &a.target {
            ast::AssignmentTarget::ColumnName(n) => super::compile::last_name(n)?,
            ast::AssignmentTarget::Tuple(_) => {
                return Err(SqlError::unsupported("tuple assignment"));
            }
        };
        let col = def
            .column_index(&name)
            .ok_or_else(|| SqlError::unknown_column(&name, "field list"))?;
        let value = mark_new_values(&a.value, alias.as_deref());
        out.push((col, cx.expr(&value)?));
    }
    Ok(Conflict::Update(out))
}

/// `VALUES(c)` and `alias.c` as the marked name of the inserted row's `c`.
fn mark_new_values(e: &ast::Expr, alias: Option<&str>) -> ast::Expr {
    use ast::Expr as E;
    let marked = |c: &str| E::Identifier(ast::Ident::new(format!("{NEW}{c}")));
    let rec = |x: &ast::Expr| Box::new(mark_new_values(x, alias));
    match e {
        E::Function(f) if values_arg(f).is_some() => marked(values_arg(f).unwrap_or_default()),
        E::CompoundIdentifier(ids)
            if ids.len() == 2 && alias.is_some_and(|a| ids[0].value.eq_ignore_ascii_case(a)) =>
        {
            marked(&ids[1].value)
        }
        E::BinaryOp { left, op, right } => E::BinaryOp {
            left: rec(left),
            op: op.clone(),
            right: rec(right),
        },
        E::UnaryOp { op, expr } => E::UnaryOp {
            op: *op,
            expr: rec(expr),
        },
        E::Nested(x) => E::Nested(rec(x)),
        E::IsNull(x) => E::IsNull(rec(x)),
        E::IsNotNull(x) => E::IsNotNull(rec(x)),
        E::Function(f) => {
            let mut f = f.clone();
            if let FunctionArguments::List(list) = &mut f.args {
                for a in &mut list.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a {
                        *x = mark_new_values(x, alias);
                    }
                }
            }
            E::Function(f)
        }
        other => other.clone(),
    }
}

/// The column a `VALUES(c)` call names.
fn values_arg(f: &ast::Function) -> Option<&str> {
    let name = f.name.0.last()?.as_ident()?;
    if !name.value.eq_ignore_ascii_case("VALUES") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Identifier(id)))] => {
            Some(id.value.as_str())
        }
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::CompoundIdentifier(ids)))] => {
            ids.last().map(|i| i.value.as_str())
        }
        _ => None,
    }
}
