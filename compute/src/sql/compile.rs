//! sqlparser's AST into plans: names resolved against the catalog, `?`
//! numbered in the order they appear in the text, expressions into
//! [`Expr`], the access path chosen ([`super::access`]).
//!
//! Anything the executors cannot run is refused here, with MySQL's error
//! (1054 unknown column, 1146 unknown table, 1046 no database) or 1235.

use std::sync::Arc;

use sqlparser::ast::{
    self, AssignmentTarget, BinaryOperator, DuplicateTreatment, FunctionArg, FunctionArgExpr,
    FunctionArguments, ObjectName, SetExpr, Statement, TableFactor, TableObject, UnaryOperator,
    Value as AstValue,
};

use crate::catalog::{Catalog, TableDef};
use crate::types::{Collation, Decimal, Value};

use super::SqlError;
use super::expr::{ArithOp, CmpOp, Expr};
use super::meta::{self, Kind};
use super::plan::{
    AggFunc, AggSpec, DeletePlan, InsertPlan, Plan, SetItem, SetTarget, SubqueryTest, TableRef,
    UpdatePlan,
};

/// What names resolve against.
pub(crate) struct Scope<'a> {
    pub catalog: &'a Catalog,
    pub db: Option<&'a str>,
    /// The common table expressions (WITH) in view.
    pub ctes: Option<&'a super::query::Ctes<'a>>,
}

/// Numbers the `?` of one statement.
#[derive(Default)]
pub(crate) struct Params(pub usize);

/// Compiles one statement.
pub(crate) fn compile(stmt: &Statement, scope: &Scope<'_>) -> Result<Plan, SqlError> {
    compile_statement(stmt, scope).map_err(|e| super::func::name_database(e, scope.db))
}

fn compile_statement(stmt: &Statement, scope: &Scope<'_>) -> Result<Plan, SqlError> {
    let mut params = Params::default();
    match stmt {
        Statement::Query(q) => Ok(Plan::Select(Box::new(super::query::query(
            q,
            scope,
            &mut params,
            None,
        )?))),
        Statement::Insert(i) => Ok(Plan::Insert(Box::new(insert(i, scope, &mut params)?))),
        Statement::Update(u) if !u.table.joins.is_empty() && u.from.is_none() => Ok(Plan::Multi(
            Box::new(super::multi::update(u, scope, &mut params)?),
        )),
        Statement::Delete(d) if !d.tables.is_empty() || d.using.is_some() => Ok(Plan::Multi(
            Box::new(super::multi::delete(d, scope, &mut params)?),
        )),
        Statement::Update(u) => Ok(Plan::Update(Box::new(update(u, scope, &mut params)?))),
        Statement::Delete(d) => Ok(Plan::Delete(Box::new(delete(d, scope, &mut params)?))),
        Statement::Set(s) => set(s, &mut params).map(Plan::Set),
        Statement::Explain {
            statement,
            analyze: false,
            ..
        } if matches!(statement.as_ref(), Statement::Query(_)) => {
            let Statement::Query(q) = statement.as_ref() else {
                return Err(SqlError::unsupported("EXPLAIN of this statement"));
            };
            let plan = super::explain::explain(q, scope, &mut params)?;
            Ok(Plan::Select(Box::new(plan)))
        }
        other => Ok(Plan::Other(Box::new(other.clone()))),
    }
}

/// The last part of a name (`db.t` → `t`).
pub(crate) fn last_name(name: &ObjectName) -> Result<String, SqlError> {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
        .ok_or_else(|| SqlError::unsupported(name))
}

/// A table name's database (the session's when not qualified) and table.
pub(crate) fn table_name(
    name: &ObjectName,
    db: Option<&str>,
) -> Result<(String, String), SqlError> {
    let parts: Vec<&str> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.as_str()))
        .collect();
    match parts.as_slice() {
        [t] => Ok((
            db.ok_or_else(SqlError::no_database)?.to_string(),
            t.to_string(),
        )),
        [d, t] => Ok((d.to_string(), t.to_string())),
        _ => Err(SqlError::unsupported(name)),
    }
}

pub(crate) fn resolve_table(name: &ObjectName, scope: &Scope<'_>) -> Result<TableRef, SqlError> {
    let (db, table) = table_name(name, scope.db)?;
    if db.eq_ignore_ascii_case(super::information_schema::NAME) {
        return super::information_schema::table_ref(&table);
    }
    let def = scope.catalog.table(&db, &table)?;
    Ok(TableRef { db, def })
}

/// The single table of a FROM clause, with its alias.
fn from_table(
    from: &[ast::TableWithJoins],
    scope: &Scope<'_>,
) -> Result<Option<(TableRef, Option<String>)>, SqlError> {
    match from {
        [] => Ok(None),
        [t] if t.joins.is_empty() => match &t.relation {
            TableFactor::Table { name, alias, .. } => Ok(Some((
                resolve_table(name, scope)?,
                alias.as_ref().map(|a| a.name.value.clone()),
            ))),
            other => Err(SqlError::unsupported(other)),
        },
        _ => Err(SqlError::unsupported("joins")),
    }
}

/// Compiles expressions in one clause of a statement.
pub(crate) struct ExprCompiler<'a> {
    pub table: Option<&'a TableDef>,
    pub alias: Option<&'a str>,
    pub clause: &'static str,
    pub params: &'a mut Params,
    /// Where aggregates go, when the clause may hold them.
    pub aggs: Option<&'a mut Vec<AggSpec>>,
    /// The names of a query's sources (joins, subqueries); `None`: the one
    /// `table`.
    pub names: Option<&'a super::names::Names<'a>>,
}

impl ExprCompiler<'_> {
    pub(crate) fn expr(&mut self, e: &ast::Expr) -> Result<Expr, SqlError> {
        use ast::Expr as E;
        Ok(match e {
            E::Value(v) => self.value(&v.value)?,
            E::Identifier(id) => self.ident(&[id.value.as_str()])?,
            E::CompoundIdentifier(ids) => {
                let parts: Vec<&str> = ids.iter().map(|i| i.value.as_str()).collect();
                self.ident(&parts)?
            }
            E::Nested(e) => self.expr(e)?,
            E::UnaryOp { op, expr } => match op {
                UnaryOperator::Minus => Expr::Neg(Box::new(self.expr(expr)?)),
                UnaryOperator::Plus => self.expr(expr)?,
                UnaryOperator::Not | UnaryOperator::BangNot => {
                    Expr::Not(Box::new(self.expr(expr)?))
                }
                other => return Err(SqlError::unsupported(other)),
            },
            E::BinaryOp { left, op, right } => self.binary(left, op, right)?,
            E::IsNull(e) => Expr::IsNull(Box::new(self.expr(e)?), false),
            E::IsNotNull(e) => Expr::IsNull(Box::new(self.expr(e)?), true),
            E::IsTrue(e) => self.is_bool(e, true, false)?,
            E::IsFalse(e) => self.is_bool(e, false, false)?,
            E::IsNotTrue(e) => self.is_bool(e, true, true)?,
            E::IsNotFalse(e) => self.is_bool(e, false, true)?,
            E::InList {
                expr,
                list,
                negated,
            } if matches!(expr.as_ref(), E::Tuple(_)) => self.row_in_list(expr, list, *negated)?,
            E::InList {
                expr,
                list,
                negated,
            } => {
                let e = self.expr(expr)?;
                let list = list
                    .iter()
                    .map(|x| self.expr(x))
                    .collect::<Result<Vec<_>, _>>()?;
                let coll = collation_of(&[&e]);
                Expr::In(Box::new(e), list, *negated, coll)
            }
            E::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let e = self.expr(expr)?;
                let (lo, hi) = (self.expr(low)?, self.expr(high)?);
                let coll = collation_of(&[&e, &lo, &hi]);
                Expr::Between(Box::new(e), Box::new(lo), Box::new(hi), *negated, coll)
            }
            E::Like {
                negated,
                expr,
                pattern,
                escape_char: None,
                any: false,
            } => {
                let e = self.expr(expr)?;
                let p = self.expr(pattern)?;
                let coll = collation_of(&[&e]);
                Expr::Like(Box::new(e), Box::new(p), *negated, coll)
            }
            E::Like {
                negated,
                expr,
                pattern,
                escape_char: Some(esc),
                any: false,
            } => self.like_escape(expr, pattern, esc, *negated)?,
            E::Function(f) => self.function(f)?,
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(operand.as_deref(), conditions, else_result.as_deref())?,
            E::Cast {
                kind,
                expr,
                data_type,
                format: None,
            } => self.cast(kind, expr, data_type)?,
            E::Convert {
                is_try: false,
                expr,
                data_type,
                charset,
                styles,
                ..
            } if styles.is_empty() => self.convert(expr, data_type.as_ref(), charset.as_ref())?,
            E::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => self.substring(expr, substring_from.as_deref(), substring_for.as_deref())?,
            E::Trim {
                trim_where,
                trim_what,
                expr,
                trim_characters,
            } => self.trim(
                trim_where.as_ref(),
                trim_what.as_deref(),
                expr,
                trim_characters.as_ref(),
            )?,
            E::Position { expr, r#in } => self.position(expr, r#in)?,
            E::Ceil { expr, field } => self.ceil_floor(expr, field, true)?,
            E::Floor { expr, field } => self.ceil_floor(expr, field, false)?,
            E::Subquery(q) => super::subquery::compile(self, q, None, SubqueryTest::Scalar)?,
            E::Exists { subquery, negated } => {
                super::subquery::compile(self, subquery, None, SubqueryTest::Exists(*negated))?
            }
            E::InSubquery {
                expr,
                subquery,
                negated,
            } if matches!(expr.as_ref(), E::Tuple(_)) => {
                super::subquery::compile(self, subquery, Some(expr), SubqueryTest::RowIn(*negated))?
            }
            E::InSubquery {
                expr,
                subquery,
                negated,
            } => {
                let test = SubqueryTest::Quantified(CmpOp::Eq, false, *negated);
                super::subquery::compile(self, subquery, Some(expr), test)?
            }
            E::AnyOp {
                left,
                compare_op,
                right,
                ..
            } => super::subquery::quantified(self, left, compare_op, right, false)?,
            E::AllOp {
                left,
                compare_op,
                right,
            } => super::subquery::quantified(self, left, compare_op, right, true)?,
            E::Tuple(list) => {
                return Err(SqlError::new(
                    1241,
                    "21000",
                    format!("Operand should contain 1 column(s) (not {})", list.len()),
                ));
            }
            other => return Err(SqlError::unsupported(other)),
        })
    }

    /// `(a, b) op (c, d)`: `=` and `<=>` all pairs, `<>` any pair, and the
    /// orderings lexicographically (`a < c OR (a = c AND b < d)`), which
    /// is MySQL's three-valued result.
    fn row_cmp(
        &mut self,
        left: &[ast::Expr],
        op: &BinaryOperator,
        right: &[ast::Expr],
    ) -> Result<Expr, SqlError> {
        if left.len() != right.len() {
            return Err(SqlError::new(
                1241,
                "21000",
                format!("Operand should contain {} column(s)", left.len()),
            ));
        }
        let mut pairs = Vec::with_capacity(left.len());
        for (l, r) in left.iter().zip(right) {
            let (a, b) = (self.expr(l)?, self.expr(r)?);
            let coll = collation_of(&[&a, &b]);
            pairs.push((Box::new(a), Box::new(b), coll));
        }
        let cmp = |op, (a, b, c): &(Box<Expr>, Box<Expr>, Collation)| {
            Expr::Cmp(op, a.clone(), b.clone(), *c)
        };
        let all = |op, join: fn(Box<Expr>, Box<Expr>) -> Expr| {
            pairs
                .iter()
                .map(|p| cmp(op, p))
                .reduce(|x, y| join(Box::new(x), Box::new(y)))
        };
        let (strict, last) = match op {
            BinaryOperator::Eq => return Ok(all(CmpOp::Eq, Expr::And).unwrap_or(truth(true))),
            BinaryOperator::Spaceship => {
                return Ok(all(CmpOp::NullSafeEq, Expr::And).unwrap_or(truth(true)));
            }
            BinaryOperator::NotEq => return Ok(all(CmpOp::Ne, Expr::Or).unwrap_or(truth(false))),
            BinaryOperator::Lt => (CmpOp::Lt, CmpOp::Lt),
            BinaryOperator::LtEq => (CmpOp::Lt, CmpOp::Le),
            BinaryOperator::Gt => (CmpOp::Gt, CmpOp::Gt),
            BinaryOperator::GtEq => (CmpOp::Gt, CmpOp::Ge),
            other => return Err(SqlError::unsupported(format!("{other} of rows"))),
        };
        let mut it = pairs.iter().rev();
        let Some(tail) = it.next() else {
            return Ok(truth(matches!(last, CmpOp::Le | CmpOp::Ge)));
        };
        let mut e = cmp(last, tail);
        for p in it {
            let tie = Expr::And(Box::new(cmp(CmpOp::Eq, p)), Box::new(e));
            e = Expr::Or(Box::new(cmp(strict, p)), Box::new(tie));
        }
        Ok(e)
    }

    /// `(a, b) [NOT] IN ((1, 2), (3, 4))`: any row equal.
    fn row_in_list(
        &mut self,
        left: &ast::Expr,
        list: &[ast::Expr],
        negated: bool,
    ) -> Result<Expr, SqlError> {
        let ast::Expr::Tuple(l) = left else {
            return Err(SqlError::unsupported(left));
        };
        let mut any = None;
        for item in list {
            let r: &[ast::Expr] = match item {
                ast::Expr::Tuple(r) => r,
                other => std::slice::from_ref(other),
            };
            let eq = self.row_cmp(l, &BinaryOperator::Eq, r)?;
            any = Some(match any {
                None => eq,
                Some(prev) => Expr::Or(Box::new(prev), Box::new(eq)),
            });
        }
        let any = any.unwrap_or(truth(false));
        Ok(match negated {
            true => Expr::Not(Box::new(any)),
            false => any,
        })
    }

    fn is_bool(&mut self, e: &ast::Expr, want: bool, negated: bool) -> Result<Expr, SqlError> {
        // IS TRUE is never NULL: (e <=> want) over its truth value.
        let truth = Expr::Not(Box::new(Expr::Not(Box::new(self.expr(e)?))));
        let test = Expr::Cmp(
            CmpOp::NullSafeEq,
            Box::new(truth),
            Box::new(Expr::Lit(Value::Int(i64::from(want)))),
            Collation::Binary,
        );
        Ok(if negated {
            Expr::Not(Box::new(test))
        } else {
            test
        })
    }

    fn value(&mut self, v: &AstValue) -> Result<Expr, SqlError> {
        Ok(Expr::Lit(match v {
            AstValue::Number(n, _) => number(n)?,
            AstValue::SingleQuotedString(s) | AstValue::DoubleQuotedString(s) => {
                Value::Bytes(s.as_bytes().to_vec())
            }
            AstValue::HexStringLiteral(h) => Value::Bytes(hex(h)?),
            AstValue::Boolean(b) => Value::Int(i64::from(*b)),
            AstValue::Null => Value::Null,
            AstValue::Placeholder(p) if p == "?" => {
                self.params.0 += 1;
                return Ok(Expr::Param(self.params.0 - 1));
            }
            other => return Err(SqlError::unsupported(other)),
        }))
    }

    fn ident(&mut self, parts: &[&str]) -> Result<Expr, SqlError> {
        if let Some(first) = parts.first() {
            if let Some(name) = first.strip_prefix("@@") {
                let name = match (name.to_lowercase().as_str(), parts.get(1)) {
                    ("session" | "global" | "local", Some(n)) => n.to_lowercase(),
                    (n, _) => n.to_string(),
                };
                return Ok(Expr::SysVar(name));
            }
            if let Some(name) = first.strip_prefix('@') {
                return Ok(Expr::UserVar(name.to_lowercase()));
            }
        }
        let shown = parts.join(".");
        let unknown = || SqlError::unknown_column(&shown, self.clause);
        if let Some(names) = self.names {
            return names.resolve(parts, self.clause)?.ok_or_else(unknown);
        }
        let Some(table) = self.table else {
            return Err(unknown());
        };
        let col = match parts {
            [c] => c,
            [t, c] if self.names_table(t) => c,
            [_, t, c] if self.names_table(t) => c,
            _ => return Err(unknown()),
        };
        let i = table.column_index(col).ok_or_else(unknown)?;
        Ok(Expr::Column(i, table.columns[i].ty.collation()))
    }

    fn names_table(&self, t: &str) -> bool {
        match (self.alias, self.table) {
            (Some(a), _) => a.eq_ignore_ascii_case(t),
            (None, Some(table)) => table.name.eq_ignore_ascii_case(t),
            _ => false,
        }
    }

    fn binary(
        &mut self,
        left: &ast::Expr,
        op: &BinaryOperator,
        right: &ast::Expr,
    ) -> Result<Expr, SqlError> {
        if let (ast::Expr::Tuple(l), ast::Expr::Tuple(r)) = (left, right) {
            return self.row_cmp(l, op, r);
        }
        match op {
            BinaryOperator::Plus | BinaryOperator::Minus => {
                let sub = *op == BinaryOperator::Minus;
                if let Some(r) = self.interval_arith(left, right, sub) {
                    return r;
                }
                if let (false, Some(r)) = (sub, self.interval_arith(right, left, false)) {
                    return r;
                }
            }
            _ => {}
        }
        let (a, b) = (self.expr(left)?, self.expr(right)?);
        let (a, b) = (Box::new(a), Box::new(b));
        let cmp = |op| {
            let coll = collation_of(&[&a, &b]);
            Expr::Cmp(op, a.clone(), b.clone(), coll)
        };
        Ok(match op {
            BinaryOperator::Plus => Expr::Arith(ArithOp::Add, a, b),
            BinaryOperator::Minus => Expr::Arith(ArithOp::Sub, a, b),
            BinaryOperator::Multiply => Expr::Arith(ArithOp::Mul, a, b),
            BinaryOperator::Divide => Expr::Arith(ArithOp::Div, a, b),
            BinaryOperator::MyIntegerDivide => Expr::Arith(ArithOp::IntDiv, a, b),
            BinaryOperator::Modulo => Expr::Arith(ArithOp::Mod, a, b),
            BinaryOperator::Eq => cmp(CmpOp::Eq),
            BinaryOperator::NotEq => cmp(CmpOp::Ne),
            BinaryOperator::Lt => cmp(CmpOp::Lt),
            BinaryOperator::LtEq => cmp(CmpOp::Le),
            BinaryOperator::Gt => cmp(CmpOp::Gt),
            BinaryOperator::GtEq => cmp(CmpOp::Ge),
            BinaryOperator::Spaceship => cmp(CmpOp::NullSafeEq),
            BinaryOperator::And => Expr::And(a, b),
            BinaryOperator::Or => Expr::Or(a, b),
            BinaryOperator::Xor => Expr::Xor(a, b),
            other => return Err(SqlError::unsupported(other)),
        })
    }

    fn function(&mut self, f: &ast::Function) -> Result<Expr, SqlError> {
        let name = last_name(&f.name)?.to_uppercase();
        let (args, distinct) = match &f.args {
            FunctionArguments::None => (Vec::new(), false),
            FunctionArguments::List(list) => (
                list.args.iter().collect::<Vec<_>>(),
                matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct)),
            ),
            FunctionArguments::Subquery(_) => return Err(SqlError::unsupported("subqueries")),
        };
        if f.over.is_some() || f.filter.is_some() {
            return Err(SqlError::unsupported(format!("{name} with OVER or FILTER")));
        }
        if name == "GROUP_CONCAT" || (name == "COUNT" && args.len() > 1) {
            return super::query::group_concat(self, f);
        }
        if let Some(func) = agg_func(&name, &args) {
            return self.aggregate(func, &args, distinct, &name);
        }
        if name == "GROUPING" {
            return self.grouping(&args);
        }
        if let Some(r) = self.date_add_call(&name, &args) {
            return r;
        }
        let func = super::func::lookup(&name).ok_or_else(|| super::func::unknown(&name))?;
        let mut compiled = Vec::with_capacity(args.len());
        for a in args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => compiled.push(self.expr(e)?),
                other => return Err(SqlError::unsupported(other)),
            }
        }
        super::func::check_arity(&name, compiled.len())?;
        Ok(Expr::Func(func, compiled))
    }

    /// A compiler for an aggregate's (or GROUPING's) arguments: the same
    /// names, no aggregates.
    fn without_aggregates(&mut self) -> ExprCompiler<'_> {
        ExprCompiler {
            table: self.table,
            alias: self.alias,
            clause: self.clause,
            params: self.params,
            aggs: None,
            names: self.names,
        }
    }

    /// `GROUPING(e, …)`, where aggregates may stand (the select list,
    /// HAVING, ORDER BY; elsewhere 1111): bound to the GROUP BY
    /// expressions once the query is compiled (`rollup::bind`).
    fn grouping(&mut self, args: &[&FunctionArg]) -> Result<Expr, SqlError> {
        if self.aggs.is_none() || args.is_empty() {
            return Err(super::rollup::invalid_use());
        }
        let mut inner = self.without_aggregates();
        let compiled = args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => inner.expr(e),
                other => Err(SqlError::unsupported(other)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Expr::Func(super::func::Func::Grouping, compiled))
    }

    fn aggregate(
        &mut self,
        func: AggFunc,
        args: &[&FunctionArg],
        distinct: bool,
        name: &str,
    ) -> Result<Expr, SqlError> {
        let arg = match (func, args) {
            (AggFunc::CountStar, _) => None,
            (_, [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))]) => {
                // An aggregate's argument may not itself aggregate.
                Some(self.without_aggregates().expr(e)?)
            }
            _ => {
                return Err(SqlError::unsupported(format!(
                    "{name} with these arguments"
                )));
            }
        };
        let Some(aggs) = self.aggs.as_deref_mut() else {
            return Err(SqlError::new(
                1111,
                "HY000",
                "Invalid use of group function",
            ));
        };
        let collation = arg
            .as_ref()
            .map_or(Collation::Binary, |a| collation_of(&[a]));
        aggs.push(AggSpec {
            func,
            arg,
            distinct,
            collation,
            concat: None,
        });
        Ok(Expr::Agg(aggs.len() - 1))
    }
}

fn agg_func(name: &str, args: &[&FunctionArg]) -> Option<AggFunc> {
    Some(match name {
        "COUNT" => match args {
            [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] => AggFunc::CountStar,
            _ => AggFunc::Count,
        },
        "SUM" => AggFunc::Sum,
        "AVG" => AggFunc::Avg,
        "MIN" => AggFunc::Min,
        "MAX" => AggFunc::Max,
        _ => return None,
    })
}

/// The collation a comparison uses: the first string column's, else the
/// connection's.
pub(crate) fn collation_of(exprs: &[&Expr]) -> Collation {
    exprs
        .iter()
        .find_map(|e| match e {
            Expr::Column(_, c) => Some(*c),
            _ => None,
        })
        .unwrap_or(Collation::Utf8mb4GeneralCi)
}

/// A numeric literal: integer, decimal (with a point) or double (with an
/// exponent).
pub(crate) fn number(n: &str) -> Result<Value, SqlError> {
    let bad = || SqlError::syntax(n, 1);
    if n.contains(['e', 'E']) {
        return n.parse::<f64>().map(Value::Double).map_err(|_| bad());
    }
    if let Some((int, frac)) = n.split_once('.') {
        let digits = format!("{int}{frac}");
        let scale = u8::try_from(frac.len()).map_err(|_| bad())?;
        return match digits.parse::<i128>() {
            Ok(mantissa) if scale <= 38 => Ok(Value::Decimal(Decimal { mantissa, scale })),
            _ => n.parse::<f64>().map(Value::Double).map_err(|_| bad()),
        };
    }
    if let Ok(i) = n.parse::<i64>() {
        return Ok(Value::Int(i));
    }
    if let Ok(u) = n.parse::<u64>() {
        return Ok(Value::UInt(u));
    }
    match n.parse::<i128>() {
        Ok(mantissa) => Ok(Value::Decimal(Decimal { mantissa, scale: 0 })),
        Err(_) => n.parse::<f64>().map(Value::Double).map_err(|_| bad()),
    }
}

fn hex(h: &str) -> Result<Vec<u8>, SqlError> {
    let padded = if h.len() % 2 == 1 {
        format!("0{h}")
    } else {
        h.to_string()
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| SqlError::syntax(h, 1))
}

fn truth(b: bool) -> Expr {
    Expr::Lit(Value::Int(i64::from(b)))
}

/// The static kind of an expression's values.
pub(crate) fn kind_of(e: &Expr, table: Option<&TableDef>, aggs: &[AggSpec]) -> Kind {
    let k = |x: &Expr| kind_of(x, table, aggs);
    match e {
        Expr::Lit(v) => meta::value_kind(v),
        Expr::Column(i, _) => table
            .and_then(|t| t.columns.get(*i))
            .map_or(Kind::Any, meta::column_kind),
        Expr::Param(_) | Expr::UserVar(_) | Expr::SysVar(_) => Kind::Any,
        Expr::Agg(i) => aggs.get(*i).map_or(Kind::Any, |a| agg_kind(a, table, aggs)),
        Expr::Neg(x) => match k(x) {
            Kind::UInt => Kind::Int,
            other => other,
        },
        Expr::Arith(op, a, b) => arith_kind(*op, k(a), k(b)),
        Expr::Func(f, args) => super::func::kind(*f, args, &k),
        Expr::Case(_, arms, otherwise, _) => super::func::merge_kinds(
            arms.iter()
                .map(|a| k(&a.1))
                .chain(Some(otherwise.as_deref().map_or(Kind::Null, k))),
        ),
        Expr::Cast(_, to) => super::func::cast_kind(*to),
        Expr::DateArith(d, _, unit, _) => super::func::date_arith_kind(k(d), *unit),
        _ => Kind::Int,
    }
}

fn agg_kind(a: &AggSpec, table: Option<&TableDef>, aggs: &[AggSpec]) -> Kind {
    let arg = a
        .arg
        .as_ref()
        .map_or(Kind::Int, |x| kind_of(x, table, aggs));
    match a.func {
        AggFunc::CountStar | AggFunc::Count => Kind::Int,
        AggFunc::Min | AggFunc::Max => arg,
        AggFunc::GroupConcat => Kind::Text,
        AggFunc::Sum => match arg {
            Kind::Int | Kind::UInt => Kind::Decimal(0),
            Kind::Decimal(s) => Kind::Decimal(s),
            _ => Kind::Double,
        },
        AggFunc::Avg => match arg {
            Kind::Int | Kind::UInt => Kind::Decimal(4),
            Kind::Decimal(s) => Kind::Decimal((s + 4).min(30)),
            _ => Kind::Double,
        },
    }
}

pub(crate) fn arith_kind(op: ArithOp, a: Kind, b: Kind) -> Kind {
    use Kind::*;
    if matches!(a, Any) || matches!(b, Any) {
        return Any;
    }
    // Dates count as their numbers (20240229).
    let date_int = |k: Kind| if matches!(k, Date | DateTime) { Int } else { k };
    let (a, b) = (date_int(a), date_int(b));
    let exact = |k: Kind| matches!(k, Int | UInt | Decimal(_) | Null);
    let scale = |k: Kind| if let Decimal(s) = k { s } else { 0 };
    match op {
        ArithOp::IntDiv => Int,
        _ if !exact(a) || !exact(b) => Double,
        ArithOp::Div => Decimal((scale(a) + 4).min(30)),
        ArithOp::Mul if matches!(a, Decimal(_)) || matches!(b, Decimal(_)) => {
            Decimal((scale(a) + scale(b)).min(30))
        }
        _ if matches!(a, Decimal(_)) || matches!(b, Decimal(_)) => Decimal(scale(a).max(scale(b))),
        _ if a == UInt || b == UInt => UInt,
        _ => Int,
    }
}

/// A LIMIT/OFFSET expression: a literal or a `?`.
pub(crate) fn limit_expr(e: &ast::Expr, params: &mut Params) -> Result<Expr, SqlError> {
    let mut c = ExprCompiler {
        table: None,
        alias: None,
        clause: "limit clause",
        params,
        aggs: None,
        names: None,
    };
    match c.expr(e)? {
        x @ (Expr::Lit(_) | Expr::Param(_)) => Ok(x),
        _ => Err(SqlError::syntax(&e.to_string(), 1)),
    }
}

fn insert(i: &ast::Insert, scope: &Scope<'_>, params: &mut Params) -> Result<InsertPlan, SqlError> {
    let TableObject::TableName(name) = &i.table else {
        return Err(SqlError::unsupported("INSERT INTO a table function"));
    };
    let table = resolve_table(name, scope)?;
    let def = table.def.clone();
    let column = |n: &str| {
        def.column_index(n)
            .ok_or_else(|| SqlError::unknown_column(n, "field list"))
    };
    let mut cx = ExprCompiler {
        table: None,
        alias: None,
        clause: "field list",
        params,
        aggs: None,
        names: None,
    };
    if !i.assignments.is_empty() {
        let mut columns = Vec::new();
        let mut row = Vec::new();
        for a in &i.assignments {
            columns.push(column(&assignment_column(&a.target)?)?);
            row.push(value_or_default(&a.value, &mut cx)?);
        }
        return Ok(InsertPlan {
            table,
            columns,
            rows: vec![row],
            select: None,
            // After the values: `?` are numbered in the text's order.
            conflict: super::upsert::compile(i, &def, cx.params)?,
        });
    }
    let named = || {
        i.columns
            .iter()
            .map(|c| column(&last_name(c)?))
            .collect::<Result<Vec<_>, _>>()
    };
    let Some(SetExpr::Values(values)) = i.source.as_ref().map(|q| q.body.as_ref()) else {
        let Some(source) = &i.source else {
            return Err(SqlError::unsupported("INSERT without values"));
        };
        let columns = match i.columns.is_empty() {
            true => (0..def.columns.len()).collect(),
            false => named()?,
        };
        let mut plan = insert_select(table, columns, source, scope, cx.params)?;
        // After the query: `?` are numbered in the text's order.
        plan.conflict = super::upsert::compile(i, &def, cx.params)?;
        return Ok(plan);
    };
    // `VALUES ()`: every column at its default.
    let all_default = values.rows.iter().all(|r| r.content.is_empty());
    let columns = match i.columns.is_empty() {
        true if all_default => Vec::new(),
        true => (0..def.columns.len()).collect(),
        false => named()?,
    };
    let mut rows = Vec::with_capacity(values.rows.len());
    for r in &values.rows {
        let row = r
            .content
            .iter()
            .map(|e| value_or_default(e, &mut cx))
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(row);
    }
    Ok(InsertPlan {
        table,
        columns,
        rows,
        select: None,
        conflict: super::upsert::compile(i, &def, cx.params)?,
    })
}

/// `INSERT INTO t [(cols)] SELECT …`.
fn insert_select(
    table: TableRef,
    columns: Vec<usize>,
    source: &ast::Query,
    scope: &Scope<'_>,
    params: &mut Params,
) -> Result<InsertPlan, SqlError> {
    let select = super::query::query(source, scope, params, None)?;
    if select.items.len() != columns.len() {
        return Err(SqlError::new(
            1136,
            "21S01",
            "Column count doesn't match value count at row 1",
        ));
    }
    Ok(InsertPlan {
        table,
        columns,
        rows: Vec::new(),
        select: Some(Box::new(select)),
        conflict: super::upsert::Conflict::Error,
    })
}

/// UPDATE / DELETE … ORDER BY over the one table.
fn dml_order(
    list: &[ast::OrderByExpr],
    cx: &mut ExprCompiler<'_>,
) -> Result<Vec<super::plan::OrderKey>, SqlError> {
    cx.clause = "order clause";
    list.iter()
        .map(|o| {
            let expr = cx.expr(&o.expr)?;
            Ok(super::plan::OrderKey {
                collation: collation_of(&[&expr]),
                desc: matches!(o.options.sort, Some(ast::OrderBySort::Desc)),
                expr,
            })
        })
        .collect()
}

fn value_or_default(e: &ast::Expr, cx: &mut ExprCompiler<'_>) -> Result<Option<Expr>, SqlError> {
    match e {
        ast::Expr::Identifier(id)
            if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("DEFAULT") =>
        {
            Ok(None)
        }
        e => cx.expr(e).map(Some),
    }
}

fn assignment_column(t: &AssignmentTarget) -> Result<String, SqlError> {
    match t {
        AssignmentTarget::ColumnName(n) => last_name(n),
        AssignmentTarget::Tuple(_) => Err(SqlError::unsupported("tuple assignment")),
    }
}

fn single_table(
    from: &[ast::TableWithJoins],
    scope: &Scope<'_>,
) -> Result<(TableRef, Option<String>), SqlError> {
    from_table(from, scope)?.ok_or_else(|| SqlError::unsupported("a statement without a table"))
}

fn update(u: &ast::Update, scope: &Scope<'_>, params: &mut Params) -> Result<UpdatePlan, SqlError> {
    if u.from.is_some() || u.returning.is_some() {
        return Err(SqlError::unsupported("UPDATE with FROM or RETURNING"));
    }
    let (table, alias) = single_table(std::slice::from_ref(&u.table), scope)?;
    let def = table.def.clone();
    let mut cx = ExprCompiler {
        table: Some(&def),
        alias: alias.as_deref(),
        clause: "field list",
        params,
        aggs: None,
        names: None,
    };
    let mut assignments = Vec::new();
    for a in &u.assignments {
        let name = assignment_column(&a.target)?;
        let col = def
            .column_index(&name)
            .ok_or_else(|| SqlError::unknown_column(&name, "field list"))?;
        assignments.push((col, cx.expr(&a.value)?));
    }
    cx.clause = "where clause";
    let filter = u.selection.as_ref().map(|e| cx.expr(e)).transpose()?;
    let order = dml_order(&u.order_by, &mut cx)?;
    let limit = u
        .limit
        .as_ref()
        .map(|e| limit_expr(e, params))
        .transpose()?;
    let access = super::access::choose(&def, filter.as_ref());
    Ok(UpdatePlan {
        table,
        assignments,
        filter,
        access,
        order,
        limit,
    })
}

fn delete(d: &ast::Delete, scope: &Scope<'_>, params: &mut Params) -> Result<DeletePlan, SqlError> {
    if !d.tables.is_empty() || d.using.is_some() || d.returning.is_some() {
        return Err(SqlError::unsupported("multi-table DELETE or RETURNING"));
    }
    let from = match &d.from {
        ast::FromTable::WithFromKeyword(f) | ast::FromTable::WithoutKeyword(f) => f,
    };
    let (table, alias) = single_table(from, scope)?;
    let def = table.def.clone();
    let mut cx = ExprCompiler {
        table: Some(&def),
        alias: alias.as_deref(),
        clause: "where clause",
        params,
        aggs: None,
        names: None,
    };
    let filter = d.selection.as_ref().map(|e| cx.expr(e)).transpose()?;
    let order = dml_order(&d.order_by, &mut cx)?;
    let limit = d
        .limit
        .as_ref()
        .map(|e| limit_expr(e, params))
        .transpose()?;
    let access = super::access::choose(&def, filter.as_ref());
    Ok(DeletePlan {
        table,
        filter,
        access,
        order,
        limit,
    })
}

fn set(s: &ast::Set, params: &mut Params) -> Result<Vec<SetItem>, SqlError> {
    let mut cx = ExprCompiler {
        table: None,
        alias: None,
        clause: "field list",
        params,
        aggs: None,
        names: None,
    };
    match s {
        ast::Set::SingleAssignment {
            variable, values, ..
        } => {
            let [value] = values.as_slice() else {
                return Err(SqlError::unsupported("SET with several values"));
            };
            Ok(vec![set_item(variable, value, &mut cx)?])
        }
        ast::Set::MultipleAssignments { assignments } => assignments
            .iter()
            .map(|a| set_item(&a.name, &a.value, &mut cx))
            .collect(),
        ast::Set::SetNames {
            charset_name,
            collation_name,
        } => Ok(vec![SetItem {
            target: SetTarget::Names(charset_name.value.clone(), collation_name.clone()),
            value: Expr::Lit(Value::Null),
        }]),
        ast::Set::SetNamesDefault {} => Ok(vec![SetItem {
            target: SetTarget::Names("utf8mb4".into(), None),
            value: Expr::Lit(Value::Null),
        }]),
        ast::Set::SetTransaction { .. } => Ok(Vec::new()),
        other => Err(SqlError::unsupported(other)),
    }
}

fn set_item(
    name: &ObjectName,
    value: &ast::Expr,
    cx: &mut ExprCompiler<'_>,
) -> Result<SetItem, SqlError> {
    let parts: Vec<&str> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.as_str()))
        .collect();
    let target = match parts.as_slice() {
        [n] if n.starts_with("@@") => SetTarget::System(n[2..].to_lowercase()),
        [n] if n.starts_with('@') => SetTarget::User(n[1..].to_lowercase()),
        [scope, n] if scope.starts_with("@@") => SetTarget::System(n.to_lowercase()),
        [n] => SetTarget::System(n.to_lowercase()),
        _ => return Err(SqlError::unsupported(name)),
    };
    // `SET autocommit = ON`: a bare word is its own text.
    let value = match value {
        ast::Expr::Identifier(id) if !id.value.starts_with('@') => {
            Expr::Lit(Value::Bytes(id.value.as_bytes().to_vec()))
        }
        e => cx.expr(e)?,
    };
    Ok(SetItem { target, value })
}

/// The columns a prepared SELECT returns, without running it.
pub(crate) fn columns_of(plan: &Plan) -> Vec<super::Column> {
    match plan {
        Plan::Select(s) => s.items.iter().map(|i| i.column.clone()).collect(),
        _ => Vec::new(),
    }
}

/// Whether a plan was compiled against the table definitions now in the
/// catalog.
pub(crate) fn is_current(plan: &Plan, catalog: &Catalog) -> bool {
    let current = |t: &TableRef| {
        catalog
            .table_by_id(t.def.db_id, t.def.id)
            .is_some_and(|now| {
                Arc::ptr_eq(&now, &t.def) || now.schema_version == t.def.schema_version
            })
    };
    // The common one-table plans without collecting their tables.
    match plan {
        Plan::Select(s) if s.sources.is_none() => s.from.as_ref().is_none_or(current),
        Plan::Insert(i) if i.select.is_none() => current(&i.table),
        Plan::Update(u) => current(&u.table),
        Plan::Delete(d) => current(&d.table),
        _ => plan.tables().into_iter().all(current),
    }
}
