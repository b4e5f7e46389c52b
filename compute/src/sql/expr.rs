//! The expression tree statements are compiled into, and its evaluation
//! over one row with MySQL's rules: three-valued logic (NULL is `None`
//! truth), integer arithmetic in 64 bits with overflow an error (1690),
//! `/` giving a decimal (or a double), division by zero giving NULL,
//! numbers compared numerically when either side is a number, strings
//! compared under a collation.
//!
//! Evaluation reads the row, the statement's parameters, the aggregate
//! results and the session's environment ([`Env`]); it never touches the
//! engine. What a statement reports back (warnings, `LAST_INSERT_ID(n)`)
//! goes to its [`StmtEnv`], which also fixes the statement's clock: every
//! `NOW()` of one statement reads the same instant, as in MySQL.
//! Scalar functions live in [`super::func`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

use crate::types::{
    Collation, Date, DateTime, Decimal, Value, collation, compare, datetime_of, num, temporal,
};

use super::SqlError;
pub(crate) use super::func::{CastTo, Func, IntervalUnit};

/// Decimal digits `/` adds to the dividend's scale (MySQL's
/// `div_precision_increment`).
const DIV_INCREMENT: u8 = 4;
/// The largest scale a computed decimal keeps.
const MAX_SCALE: u8 = 30;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Lit(Value),
    /// The i-th `?` of the statement.
    Param(usize),
    /// A column of the row, with its collation (for comparisons).
    Column(usize, Collation),
    /// `@@name` (scope ignored: session and global read the same table).
    SysVar(String),
    /// `@name`.
    UserVar(String),
    /// The i-th aggregate's result (after aggregation).
    Agg(usize),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>, Collation),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Xor(Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>, bool),
    /// `e [NOT] IN (list)`.
    In(Box<Expr>, Vec<Expr>, bool, Collation),
    /// `e [NOT] BETWEEN lo AND hi`.
    Between(Box<Expr>, Box<Expr>, Box<Expr>, bool, Collation),
    /// `e [NOT] LIKE pattern`.
    Like(Box<Expr>, Box<Expr>, bool, Collation),
    Func(Func, Vec<Expr>),
    /// `e [NOT] LIKE pattern ESCAPE 'c'` (`None`: `ESCAPE ''`, no escape).
    LikeEscape(Box<Expr>, Box<Expr>, Option<char>, bool, Collation),
    /// `CASE [operand] WHEN … THEN … [ELSE …] END`; the collation compares
    /// the operand with each WHEN value.
    Case(
        Option<Box<Expr>>,
        Vec<(Expr, Expr)>,
        Option<Box<Expr>>,
        Collation,
    ),
    /// `CAST(e AS type)` / `CONVERT(e, type)`.
    Cast(Box<Expr>, CastTo),
    /// `d + INTERVAL n unit` (`true`: `-`), DATE_ADD, DATE_SUB.
    DateArith(Box<Expr>, Box<Expr>, IntervalUnit, bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    IntDiv,
    Mod,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `<=>`: NULL-safe equality.
    NullSafeEq,
}

/// What an expression may read besides the row.
pub(crate) struct Env<'a> {
    pub params: &'a [Value],
    pub db: Option<&'a str>,
    pub connection_id: u32,
    pub last_insert_id: u64,
    pub sys_vars: &'a BTreeMap<String, Value>,
    pub user_vars: &'a HashMap<String, Value>,
    pub stmt: &'a StmtEnv,
    /// The catalog, for statements that read information_schema inside a
    /// join, subquery or derived table (`None` for all others).
    pub catalog: Option<&'a crate::catalog::Catalog>,
}

/// A condition a statement reports (SHOW WARNINGS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Warning {
    /// "Note", "Warning" or "Error".
    pub level: &'static str,
    pub code: u16,
    pub message: String,
}

/// Warnings kept per statement; MySQL's `max_error_count` default.
const MAX_WARNINGS: usize = 64;

/// One statement's clock, what it read of the session's previous
/// statement, and what it reports back.
#[derive(Debug)]
pub(crate) struct StmtEnv {
    /// The statement's start (UTC), for NOW() and friends.
    pub now: DateTime,
    /// Seconds and microseconds since 1970 at the statement's start.
    pub unix_micros: i64,
    /// Whether `sql_mode` is strict (STRICT_TRANS_TABLES or
    /// STRICT_ALL_TABLES) for this statement: bad stored values fail;
    /// otherwise they are adjusted with a warning ([`Env::store`]).
    pub strict: bool,
    /// ROW_COUNT(): the previous statement's affected rows (-1 after a
    /// SELECT).
    pub row_count: i64,
    /// FOUND_ROWS(): the rows the previous SELECT returned.
    pub found_rows: u64,
    warnings: Mutex<(Vec<Warning>, usize)>,
    insert_id: Mutex<Option<u64>>,
    calc_found_rows: Mutex<Option<u64>>,
    /// Common table expressions' rows, kept for the statement
    /// (`super::join`): each CTE runs once however often it is named.
    ctes: Mutex<HashMap<u64, std::sync::Arc<Vec<Vec<Value>>>>>,
}

impl StmtEnv {
    /// A statement starting now.
    pub(crate) fn starting(row_count: i64, found_rows: u64) -> StmtEnv {
        let unix_micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        StmtEnv {
            now: super::func::datetime_from_unix(unix_micros.div_euclid(1_000_000), 0)
                .unwrap_or(temporal::TIMESTAMP_MIN),
            unix_micros,
            strict: true,
            row_count,
            found_rows,
            warnings: Mutex::new((Vec::new(), 0)),
            insert_id: Mutex::new(None),
            calc_found_rows: Mutex::new(None),
            ctes: Mutex::new(HashMap::new()),
        }
    }

    /// The rows kept for CTE `id`, if it ran in this statement.
    pub(crate) fn cte_rows(&self, id: u64) -> Option<std::sync::Arc<Vec<Vec<Value>>>> {
        self.ctes.lock().get(&id).cloned()
    }

    /// Keeps CTE `id`'s rows for the rest of the statement.
    pub(crate) fn keep_cte_rows(&self, id: u64, rows: std::sync::Arc<Vec<Vec<Value>>>) {
        self.ctes.lock().insert(id, rows);
    }

    /// Records a warning (the count goes on past the kept ones).
    pub(crate) fn warn(&self, code: u16, message: impl Into<String>) {
        self.push("Warning", code, message.into());
    }

    pub(crate) fn push(&self, level: &'static str, code: u16, message: String) {
        let mut w = self.warnings.lock();
        w.1 += 1;
        if w.0.len() < MAX_WARNINGS {
            w.0.push(Warning {
                level,
                code,
                message,
            });
        }
    }

    /// The warnings recorded, and how many there were in all.
    pub(crate) fn take_warnings(&self) -> (Vec<Warning>, usize) {
        std::mem::take(&mut *self.warnings.lock())
    }

    /// `LAST_INSERT_ID(n)` sets the session's value.
    /// The row count SQL_CALC_FOUND_ROWS computed (FOUND_ROWS() after the
    /// statement).
    pub(crate) fn set_calc_found_rows(&self, n: u64) {
        *self.calc_found_rows.lock() = Some(n);
    }

    pub(crate) fn calc_found_rows(&self) -> Option<u64> {
        *self.calc_found_rows.lock()
    }

    pub(crate) fn set_insert_id(&self, id: u64) {
        *self.insert_id.lock() = Some(id);
    }

    pub(crate) fn insert_id_set(&self) -> Option<u64> {
        *self.insert_id.lock()
    }

    /// How many conditions the statement has raised so far.
    pub(crate) fn warning_count(&self) -> usize {
        self.warnings.lock().1
    }
}

impl Env<'_> {
    /// The value row `row` (from 1) stores in `col`: in strict mode as it
    /// is (the engine refuses what does not fit); otherwise made to fit,
    /// with MySQL's warning (1264, 1265, 1366).
    pub(crate) fn store(
        &self,
        col: &crate::catalog::ColumnDef,
        v: Value,
        row: usize,
    ) -> Result<Value, SqlError> {
        use crate::types::coerce::{Adjusted, lenient};
        if self.stmt.strict || matches!(v, Value::Null) {
            return Ok(v);
        }
        let shown = text_bytes(&v);
        let (stored, adjusted) =
            lenient(&col.ty, v).map_err(|error| crate::error::EngineError::Value {
                column: col.name.clone(),
                error,
            })?;
        let name = &col.name;
        match adjusted {
            None => {}
            Some(Adjusted::OutOfRange) => self.stmt.warn(
                1264,
                format!("Out of range value for column '{name}' at row {row}"),
            ),
            Some(Adjusted::Truncated) => self.stmt.warn(
                1265,
                format!("Data truncated for column '{name}' at row {row}"),
            ),
            Some(Adjusted::Incorrect) => {
                let what = match col.ty {
                    crate::types::ColumnType::Decimal { .. } => "decimal",
                    crate::types::ColumnType::Double => "double",
                    _ => "integer",
                };
                self.stmt.warn(
                    1366,
                    format!(
                        "Incorrect {what} value: '{}' for column '{name}' at row {row}",
                        String::from_utf8_lossy(&shown)
                    ),
                )
            }
        }
        Ok(stored)
    }
}

/// One evaluation's inputs.
pub(crate) struct Ctx<'a> {
    pub env: &'a Env<'a>,
    pub row: &'a [Value],
    pub aggs: &'a [Value],
}

fn out_of_range(what: &str) -> SqlError {
    SqlError::new(
        1690,
        "22003",
        format!("BIGINT value is out of range in '{what}'"),
    )
}

impl Expr {
    pub(crate) fn eval(&self, cx: &Ctx<'_>) -> Result<Value, SqlError> {
        Ok(match self {
            Expr::Lit(v) => v.clone(),
            Expr::Param(i) => cx.env.params.get(*i).cloned().unwrap_or(Value::Null),
            Expr::Column(i, _) => cx.row.get(*i).cloned().unwrap_or(Value::Null),
            Expr::Agg(i) => cx.aggs.get(*i).cloned().unwrap_or(Value::Null),
            Expr::SysVar(name) => cx.env.sys_vars.get(name).cloned().ok_or_else(|| {
                SqlError::new(1193, "HY000", format!("Unknown system variable '{name}'"))
            })?,
            Expr::UserVar(name) => cx
                .env
                .user_vars
                .get(&name.to_lowercase())
                .cloned()
                .unwrap_or(Value::Null),
            Expr::Neg(e) => negate(e.eval(cx)?)?,
            Expr::Not(e) => truth_value(e.truth(cx)?.map(|t| !t)),
            Expr::Arith(op, a, b) => {
                let (x, y) = (a.eval(cx)?, b.eval(cx)?);
                check_numeric_text(&x, cx);
                check_numeric_text(&y, cx);
                arith(*op, x, y)?
            }
            Expr::Func(f, args) => super::func::call(*f, args, cx)?,
            Expr::Case(operand, arms, otherwise, coll) => {
                case(operand.as_deref(), arms, otherwise.as_deref(), *coll, cx)?
            }
            Expr::Cast(e, to) => super::func::cast(e.eval(cx)?, *to, cx),
            Expr::DateArith(d, n, unit, sub) => {
                super::func::date_arith(d.eval(cx)?, n.eval(cx)?, *unit, *sub, cx)
            }
            _ => truth_value(self.truth(cx)?),
        })
    }

    /// The expression as a condition: `None` for NULL.
    pub(crate) fn truth(&self, cx: &Ctx<'_>) -> Result<Option<bool>, SqlError> {
        match self {
            Expr::And(a, b) => Ok(match (a.truth(cx)?, b.truth(cx)?) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }),
            Expr::Or(a, b) => Ok(match (a.truth(cx)?, b.truth(cx)?) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }),
            Expr::Xor(a, b) => Ok(match (a.truth(cx)?, b.truth(cx)?) {
                (Some(x), Some(y)) => Some(x != y),
                _ => None,
            }),
            Expr::Not(e) => Ok(e.truth(cx)?.map(|t| !t)),
            Expr::IsNull(e, negated) => Ok(Some(matches!(e.eval(cx)?, Value::Null) != *negated)),
            Expr::Cmp(op, a, b, coll) => Ok(compare_op(*op, &a.eval(cx)?, &b.eval(cx)?, *coll)),
            Expr::In(e, list, negated, coll) => in_list(e, list, *negated, *coll, cx),
            Expr::Between(e, lo, hi, negated, coll) => {
                let v = e.eval(cx)?;
                let ge = compare_op(CmpOp::Ge, &v, &lo.eval(cx)?, *coll);
                let le = compare_op(CmpOp::Le, &v, &hi.eval(cx)?, *coll);
                let both = match (ge, le) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                Ok(both.map(|t| t != *negated))
            }
            Expr::Like(e, pat, negated, coll) => {
                let (v, p) = (e.eval(cx)?, pat.eval(cx)?);
                if matches!(v, Value::Null) || matches!(p, Value::Null) {
                    return Ok(None);
                }
                let m = like(&text_bytes(&v), &text_bytes(&p), *coll);
                Ok(Some(m != *negated))
            }
            Expr::LikeEscape(e, pat, escape, negated, coll) => {
                let (v, p) = (e.eval(cx)?, pat.eval(cx)?);
                if matches!(v, Value::Null) || matches!(p, Value::Null) {
                    return Ok(None);
                }
                let m = like_escape(&text_bytes(&v), &text_bytes(&p), *escape, *coll);
                Ok(Some(m != *negated))
            }
            other => Ok(truth_of(&other.eval(cx)?)),
        }
    }

    /// Whether the expression reads nothing of the row or aggregates.
    pub(crate) fn is_constant(&self) -> bool {
        let mut constant = true;
        self.walk(&mut |e| {
            if matches!(e, Expr::Column(..) | Expr::Agg(_)) {
                constant = false;
            }
        });
        constant
    }

    /// Calls `f` on this expression and, unless `f` says it replaced it
    /// (`Ok(true)`), on every sub-expression, in place.
    pub(crate) fn rewrite(
        &mut self,
        f: &mut dyn FnMut(&mut Expr) -> Result<bool, SqlError>,
    ) -> Result<(), SqlError> {
        if f(self)? {
            return Ok(());
        }
        match self {
            Expr::Neg(e) | Expr::Not(e) | Expr::IsNull(e, _) | Expr::Cast(e, _) => e.rewrite(f),
            Expr::Arith(_, a, b)
            | Expr::Cmp(_, a, b, _)
            | Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Xor(a, b)
            | Expr::Like(a, b, _, _)
            | Expr::LikeEscape(a, b, _, _, _)
            | Expr::DateArith(a, b, _, _) => {
                a.rewrite(f)?;
                b.rewrite(f)
            }
            Expr::Case(operand, arms, otherwise, _) => {
                for o in operand.iter_mut().chain(otherwise.iter_mut()) {
                    o.rewrite(f)?;
                }
                for (w, t) in arms {
                    w.rewrite(f)?;
                    t.rewrite(f)?;
                }
                Ok(())
            }
            Expr::In(e, list, _, _) => {
                e.rewrite(f)?;
                list.iter_mut().try_for_each(|x| x.rewrite(f))
            }
            Expr::Between(e, lo, hi, _, _) => {
                e.rewrite(f)?;
                lo.rewrite(f)?;
                hi.rewrite(f)
            }
            Expr::Func(_, args) => args.iter_mut().try_for_each(|x| x.rewrite(f)),
            _ => Ok(()),
        }
    }

    /// Calls `f` on this expression and every sub-expression.
    pub(crate) fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Neg(e) | Expr::Not(e) | Expr::IsNull(e, _) => e.walk(f),
            Expr::Arith(_, a, b)
            | Expr::Cmp(_, a, b, _)
            | Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Xor(a, b)
            | Expr::Like(a, b, _, _)
            | Expr::LikeEscape(a, b, _, _, _)
            | Expr::DateArith(a, b, _, _) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Cast(e, _) => e.walk(f),
            Expr::Case(operand, arms, otherwise, _) => {
                if let Some(o) = operand {
                    o.walk(f);
                }
                for (w, t) in arms {
                    w.walk(f);
                    t.walk(f);
                }
                if let Some(o) = otherwise {
                    o.walk(f);
                }
            }
            Expr::In(e, list, _, _) => {
                e.walk(f);
                list.iter().for_each(|x| x.walk(f));
            }
            Expr::Between(e, lo, hi, _, _) => {
                e.walk(f);
                lo.walk(f);
                hi.walk(f);
            }
            Expr::Func(_, args) => args.iter().for_each(|x| x.walk(f)),
            _ => {}
        }
    }
}

/// 1, 0 or NULL.
fn truth_value(t: Option<bool>) -> Value {
    match t {
        Some(b) => Value::Int(i64::from(b)),
        None => Value::Null,
    }
}

/// A value as a condition: numbers are true when not zero, strings by
/// their leading number.
pub(crate) fn truth_of(v: &Value) -> Option<bool> {
    match v {
        Value::Null => None,
        Value::Int(i) => Some(*i != 0),
        Value::UInt(u) => Some(*u != 0),
        Value::Double(d) => Some(*d != 0.0),
        Value::Decimal(d) => Some(d.mantissa != 0),
        Value::Bytes(b) => Some(leading_f64(b) != 0.0),
        Value::Date(_) | Value::DateTime(_) => Some(true),
    }
}

/// `CASE`: the first arm whose WHEN holds (or equals the operand).
fn case(
    operand: Option<&Expr>,
    arms: &[(Expr, Expr)],
    otherwise: Option<&Expr>,
    coll: Collation,
    cx: &Ctx<'_>,
) -> Result<Value, SqlError> {
    let subject = operand.map(|o| o.eval(cx)).transpose()?;
    for (when, then) in arms {
        let hit = match &subject {
            Some(v) => compare_op(CmpOp::Eq, v, &when.eval(cx)?, coll),
            None => when.truth(cx)?,
        };
        if hit == Some(true) {
            return then.eval(cx);
        }
    }
    otherwise.map_or(Ok(Value::Null), |e| e.eval(cx))
}

/// A string used as a number must be one whole number, else MySQL warns
/// (1292) and uses its leading number.
pub(crate) fn check_numeric_text(v: &Value, cx: &Ctx<'_>) {
    if let Value::Bytes(b) = v
        && num::parse(b).is_none()
    {
        cx.env.stmt.warn(
            1292,
            format!(
                "Truncated incorrect DOUBLE value: '{}'",
                String::from_utf8_lossy(b)
            ),
        );
    }
}

fn in_list(
    e: &Expr,
    list: &[Expr],
    negated: bool,
    coll: Collation,
    cx: &Ctx<'_>,
) -> Result<Option<bool>, SqlError> {
    let v = e.eval(cx)?;
    if matches!(v, Value::Null) {
        return Ok(None);
    }
    let mut saw_null = false;
    for item in list {
        match compare_op(CmpOp::Eq, &v, &item.eval(cx)?, coll) {
            Some(true) => return Ok(Some(!negated)),
            None => saw_null = true,
            Some(false) => {}
        }
    }
    Ok(if saw_null { None } else { Some(negated) })
}

/// `a op b`, NULL when either is NULL (except `<=>`).
pub(crate) fn compare_op(op: CmpOp, a: &Value, b: &Value, coll: Collation) -> Option<bool> {
    if op == CmpOp::NullSafeEq {
        return Some(match (a, b) {
            (Value::Null, Value::Null) => true,
            (Value::Null, _) | (_, Value::Null) => false,
            _ => sql_cmp(a, b, coll) == Some(Ordering::Equal),
        });
    }
    let ord = sql_cmp(a, b, coll)?;
    Some(match op {
        CmpOp::Eq | CmpOp::NullSafeEq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    })
}

/// MySQL's comparison of two values; `None` if either is NULL.
pub(crate) fn sql_cmp(a: &Value, b: &Value, coll: Collation) -> Option<Ordering> {
    use Value::*;
    Some(match (a, b) {
        (Null, _) | (_, Null) => return None,
        (Int(_) | UInt(_), Int(_) | UInt(_)) => {
            crate::types::int_of(a).cmp(&crate::types::int_of(b))
        }
        (Bytes(x), Bytes(y)) => collation::compare(coll, x, y),
        (Date(_) | DateTime(_), Date(_) | DateTime(_)) => datetime_of(a).cmp(&datetime_of(b)),
        (Date(_) | DateTime(_), Bytes(t)) => match temporal::parse_datetime(t) {
            Some((dt, _)) => datetime_of(a)?.cmp(&dt),
            None => collation::compare(coll, a.to_string().as_bytes(), t),
        },
        (Bytes(_), Date(_) | DateTime(_)) => sql_cmp(b, a, coll)?.reverse(),
        _ => match (exact_of(a), exact_of(b)) {
            (Some(x), Some(y)) => num::cmp_decimal(x, y),
            _ => double_of(a).total_cmp(&double_of(b)),
        },
    })
}

/// A total order for sorting: NULL first, then [`sql_cmp`], then by kind.
pub(crate) fn sort_cmp(a: &Value, b: &Value, coll: Collation) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => sql_cmp(a, b, coll)
            .unwrap_or_else(|| compare(&crate::types::ColumnType::Blob { max_bytes: 0 }, a, b)),
    }
}

/// An exact number (integer or decimal) as a decimal.
pub(crate) fn exact_of(v: &Value) -> Option<Decimal> {
    match v {
        Value::Int(i) => Some(Decimal {
            mantissa: i128::from(*i),
            scale: 0,
        }),
        Value::UInt(u) => Some(Decimal {
            mantissa: i128::from(*u),
            scale: 0,
        }),
        Value::Decimal(d) => Some(*d),
        _ => None,
    }
}

/// A date or datetime as the number MySQL reads it as (`20240229`,
/// `20240229131415`, with microseconds a decimal); other values unchanged.
pub(crate) fn temporal_number(v: Value) -> Value {
    let ymd = |d: &Date| i64::from(d.year) * 10_000 + i64::from(d.month) * 100 + i64::from(d.day);
    match v {
        Value::Date(d) => Value::Int(ymd(&d)),
        Value::DateTime(dt) => {
            let n = ymd(&dt.date) * 1_000_000
                + i64::from(dt.hour) * 10_000
                + i64::from(dt.minute) * 100
                + i64::from(dt.second);
            if dt.micros == 0 {
                Value::Int(n)
            } else {
                dec(i128::from(n) * 1_000_000 + i128::from(dt.micros), 6)
            }
        }
        other => other,
    }
}

/// Any value as a double (strings by their leading number, as MySQL).
pub(crate) fn double_of(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Int(i) => *i as f64,
        Value::UInt(u) => *u as f64,
        Value::Double(d) => *d,
        Value::Decimal(d) => d.mantissa as f64 / 10f64.powi(i32::from(d.scale)),
        Value::Bytes(b) => leading_f64(b),
        Value::Date(_) | Value::DateTime(_) => {
            leading_f64(v.to_string().replace(['-', ' ', ':'], "").as_bytes())
        }
    }
}

/// The number at the start of `b` (after spaces), 0 if none.
pub(crate) fn leading_f64(b: &[u8]) -> f64 {
    crate::types::coerce::leading_number(b)
        .and_then(num::parse)
        .map_or(0.0, |n| n.to_f64())
}

pub(crate) fn text_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.clone(),
        other => other.to_string().into_bytes(),
    }
}

fn negate(v: Value) -> Result<Value, SqlError> {
    Ok(match v {
        Value::Null => Value::Null,
        Value::Int(i) => Value::Int(i.checked_neg().ok_or_else(|| out_of_range("-"))?),
        Value::UInt(u) => {
            let n = -i128::from(u);
            Value::Int(i64::try_from(n).map_err(|_| out_of_range("-"))?)
        }
        Value::Double(d) => Value::Double(-d),
        Value::Decimal(d) => Value::Decimal(Decimal {
            mantissa: -d.mantissa,
            scale: d.scale,
        }),
        other => Value::Double(-double_of(&other)),
    })
}

/// How an arithmetic operand counts.
enum Num {
    Int(i128, bool),
    Dec,
    Dbl,
}

fn num_of(v: &Value) -> Num {
    match v {
        Value::Int(i) => Num::Int(i128::from(*i), false),
        Value::UInt(u) => Num::Int(i128::from(*u), true),
        Value::Decimal(_) => Num::Dec,
        _ => Num::Dbl,
    }
}

/// `a op b` under MySQL's numeric rules.
pub(crate) fn arith(op: ArithOp, a: Value, b: Value) -> Result<Value, SqlError> {
    if matches!(a, Value::Null) || matches!(b, Value::Null) {
        return Ok(Value::Null);
    }
    let (a, b) = (temporal_number(a), temporal_number(b));
    match (num_of(&a), num_of(&b)) {
        (Num::Int(x, ux), Num::Int(y, uy)) if op != ArithOp::Div => int_arith(op, x, y, ux || uy),
        (Num::Dbl, _) | (_, Num::Dbl) => dbl_arith(op, double_of(&a), double_of(&b)),
        _ => {
            let (x, y) = (exact_of(&a), exact_of(&b));
            match (x, y) {
                (Some(x), Some(y)) => dec_arith(op, x, y),
                _ => dbl_arith(op, double_of(&a), double_of(&b)),
            }
        }
    }
}

fn int_arith(op: ArithOp, x: i128, y: i128, unsigned: bool) -> Result<Value, SqlError> {
    let r = match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x.checked_mul(y).ok_or_else(|| out_of_range("*"))?,
        ArithOp::IntDiv | ArithOp::Div => match y {
            0 => return Ok(Value::Null),
            _ => x / y,
        },
        ArithOp::Mod => match y {
            0 => return Ok(Value::Null),
            _ => x % y,
        },
    };
    if unsigned {
        u64::try_from(r)
            .map(Value::UInt)
            .map_err(|_| SqlError::new(1690, "22003", "BIGINT UNSIGNED value is out of range"))
    } else {
        i64::try_from(r)
            .map(Value::Int)
            .map_err(|_| out_of_range("arithmetic"))
    }
}

fn dbl_arith(op: ArithOp, x: f64, y: f64) -> Result<Value, SqlError> {
    let r = match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div if y == 0.0 => return Ok(Value::Null),
        ArithOp::Div => x / y,
        ArithOp::IntDiv if y == 0.0 => return Ok(Value::Null),
        ArithOp::IntDiv => {
            let q = (x / y).trunc();
            return if q.is_finite() && q.abs() < 9.2e18 {
                Ok(Value::Int(q as i64))
            } else {
                Err(out_of_range("DIV"))
            };
        }
        ArithOp::Mod if y == 0.0 => return Ok(Value::Null),
        ArithOp::Mod => x % y,
    };
    if r.is_finite() {
        Ok(Value::Double(r))
    } else {
        Err(SqlError::new(1690, "22003", "DOUBLE value is out of range"))
    }
}

fn pow10(n: u8) -> Option<i128> {
    num::pow10(u32::from(n)).and_then(|p| i128::try_from(p).ok())
}

/// Both decimals at the larger scale.
fn align(x: Decimal, y: Decimal) -> Option<(i128, i128, u8)> {
    let s = x.scale.max(y.scale);
    Some((num::rescale_exact(x, s)?, num::rescale_exact(y, s)?, s))
}

fn dec(mantissa: i128, scale: u8) -> Value {
    Value::Decimal(Decimal { mantissa, scale })
}

fn dec_arith(op: ArithOp, x: Decimal, y: Decimal) -> Result<Value, SqlError> {
    let overflow = || SqlError::new(1690, "22003", "DECIMAL value is out of range");
    let (a, b, s) = align(x, y).ok_or_else(overflow)?;
    match op {
        ArithOp::Add => Ok(dec(a.checked_add(b).ok_or_else(overflow)?, s)),
        ArithOp::Sub => Ok(dec(a.checked_sub(b).ok_or_else(overflow)?, s)),
        ArithOp::Mul => {
            let m = x.mantissa.checked_mul(y.mantissa).ok_or_else(overflow)?;
            let product = Decimal {
                mantissa: m,
                scale: x.scale + y.scale,
            };
            Ok(Value::Decimal(
                num::round_decimal(product, MAX_SCALE.min(product.scale)).ok_or_else(overflow)?,
            ))
        }
        _ if b == 0 => Ok(Value::Null),
        ArithOp::Mod => Ok(dec(a % b, s)),
        ArithOp::IntDiv => i64::try_from(a / b)
            .map(Value::Int)
            .map_err(|_| out_of_range("DIV")),
        ArithOp::Div => dec_div(x, y).ok_or_else(overflow),
    }
}

/// Decimal digits per word of MySQL's decimal arithmetic.
const DIGITS_PER_WORD: u8 = 9;

/// `x / y` as MySQL's `decimal_div` computes it: the operands' scales
/// padded to whole 9-digit words, plus what is left of the 4 digits of
/// `div_precision_increment` after that padding, rounded up to a whole
/// word; the quotient is truncated there. The result's column shows the
/// dividend's scale + 4 (rounded when sent: `2/3` shows 0.6667), while
/// the value keeps its digits for what is computed from it, so
/// `(1/3)*3` is 0.999999999 (shown as 1.0000), as in MySQL. Where the
/// digits would pass an `i128`, whole words are dropped.
fn dec_div(x: Decimal, y: Decimal) -> Option<Value> {
    let pad = |f: u8| f.div_ceil(DIGITS_PER_WORD) * DIGITS_PER_WORD;
    let (p1, p2) = (pad(x.scale), pad(y.scale));
    let spare = i32::from(p1 - x.scale) + i32::from(p2 - y.scale);
    let incr = (i32::from(DIV_INCREMENT) - spare).max(0) as u8;
    let mut frac = pad(p1 + p2 + incr).min(MAX_WORD_SCALE);
    loop {
        // q = x.m * 10^(frac + y.scale - x.scale) / y.m, truncated.
        let shift = i32::from(frac) + i32::from(y.scale) - i32::from(x.scale);
        let q = if shift >= 0 {
            pow10(u8::try_from(shift).ok()?)
                .and_then(|p| x.mantissa.checked_mul(p))
                .and_then(|n| n.checked_div(y.mantissa))
        } else {
            pow10(u8::try_from(-shift).ok()?)
                .and_then(|p| x.mantissa.checked_div(y.mantissa).map(|q| q / p))
        };
        match q {
            Some(q) => return Some(dec(q, frac)),
            None if frac >= DIGITS_PER_WORD => frac -= DIGITS_PER_WORD,
            None => return None,
        }
    }
}

/// The most fractional digits a quotient keeps (whole words, within
/// MySQL's 30).
const MAX_WORD_SCALE: u8 = 27;

/// `LIKE` with `%` and `_` (and `\` escaping), under `coll`.
pub(crate) fn like(text: &[u8], pattern: &[u8], coll: Collation) -> bool {
    like_escape(text, pattern, Some('\\'), coll)
}

/// `LIKE … ESCAPE escape` (`None`: nothing escapes).
pub(crate) fn like_escape(
    text: &[u8],
    pattern: &[u8],
    escape: Option<char>,
    coll: Collation,
) -> bool {
    let t: Vec<char> = String::from_utf8_lossy(text).chars().collect();
    let p: Vec<char> = String::from_utf8_lossy(pattern).chars().collect();
    like_at(&t, &like_tokens(&p, escape), coll)
}

#[derive(Clone, Copy, PartialEq)]
enum LikeToken {
    /// `%`
    Any,
    /// `_`
    One,
    Char(char),
}

fn like_tokens(p: &[char], escape: Option<char>) -> Vec<LikeToken> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        out.push(match p[i] {
            c if Some(c) == escape && i + 1 < p.len() => {
                i += 1;
                LikeToken::Char(p[i])
            }
            '%' => LikeToken::Any,
            '_' => LikeToken::One,
            c => LikeToken::Char(c),
        });
        i += 1;
    }
    out
}

/// Wildcard matching without recursion: on a mismatch, go back to the
/// last `%` and let it take one more character.
fn like_at(t: &[char], toks: &[LikeToken], coll: Collation) -> bool {
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match toks.get(pi) {
            Some(LikeToken::One) => true,
            Some(LikeToken::Char(c)) => char_eq(t[ti], *c, coll),
            _ => false,
        };
        if step {
            ti += 1;
            pi += 1;
        } else if toks.get(pi) == Some(&LikeToken::Any) {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    toks[pi..].iter().all(|t| *t == LikeToken::Any)
}

/// Whether two characters are equal under `coll`.
pub(crate) fn char_eq(a: char, b: char, coll: Collation) -> bool {
    match coll {
        Collation::Utf8mb4GeneralCi => {
            collation::general_ci_weight(a) == collation::general_ci_weight(b)
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> Value {
        Value::Bytes(t.as_bytes().to_vec())
    }

    #[test]
    fn arithmetic_follows_mysql() {
        assert_eq!(
            arith(ArithOp::Add, Value::Int(1), Value::Int(2)),
            Ok(Value::Int(3))
        );
        assert_eq!(
            arith(ArithOp::Div, Value::Int(1), Value::Int(0)),
            Ok(Value::Null)
        );
        assert_eq!(
            arith(ArithOp::Div, Value::Int(1), Value::Int(3)),
            Ok(dec(333_333_333, 9))
        );
        assert_eq!(
            arith(ArithOp::Div, Value::Int(2), Value::Int(3)),
            Ok(dec(666_666_666, 9))
        );
        assert_eq!(
            arith(ArithOp::IntDiv, Value::Int(7), Value::Int(2)),
            Ok(Value::Int(3))
        );
        assert_eq!(
            arith(ArithOp::Mod, Value::Int(-7), Value::Int(2)),
            Ok(Value::Int(-1))
        );
        let e = arith(ArithOp::Add, Value::Int(i64::MAX), Value::Int(1)).unwrap_err();
        assert_eq!(e.code, 1690);
        let e = arith(ArithOp::Sub, Value::UInt(0), Value::Int(1)).unwrap_err();
        assert_eq!(e.code, 1690);
        assert_eq!(
            arith(ArithOp::Add, dec(15, 1), Value::Int(1)),
            Ok(dec(25, 1))
        );
        assert_eq!(
            arith(ArithOp::Mul, Value::Double(1.5), s("2")),
            Ok(Value::Double(3.0))
        );
    }

    #[test]
    fn comparisons_are_numeric_when_a_number_is_involved() {
        let ci = Collation::Utf8mb4GeneralCi;
        assert_eq!(
            compare_op(CmpOp::Eq, &s("10"), &Value::Int(10), ci),
            Some(true)
        );
        assert_eq!(
            compare_op(CmpOp::Lt, &s("9"), &Value::Int(10), ci),
            Some(true)
        );
        assert_eq!(compare_op(CmpOp::Lt, &s("9"), &s("10"), ci), Some(false));
        assert_eq!(compare_op(CmpOp::Eq, &s("abc"), &s("ABC "), ci), Some(true));
        assert_eq!(
            compare_op(CmpOp::Eq, &s("abc"), &s("ABC"), Collation::Utf8mb4Bin),
            Some(false)
        );
        assert_eq!(
            compare_op(CmpOp::Eq, &Value::Null, &Value::Int(1), ci),
            None
        );
        assert_eq!(
            compare_op(CmpOp::NullSafeEq, &Value::Null, &Value::Null, ci),
            Some(true)
        );
        assert_eq!(
            compare_op(CmpOp::Eq, &dec(10, 1), &Value::Int(1), ci),
            Some(true)
        );
    }

    #[test]
    fn like_escape_character() {
        let ci = Collation::Utf8mb4GeneralCi;
        assert!(like_escape(b"a%b", b"a|%b", Some('|'), ci));
        assert!(!like_escape(b"axb", b"a|%b", Some('|'), ci));
        assert!(like_escape(b"a\\b", b"a\\_", Some('|'), ci));
        assert!(like_escape(b"a\\b", b"a\\b", None, ci));
        assert!(like_escape(b"a_", b"a!_", Some('!'), ci));
        assert!(!like_escape(b"ab", b"a!_", Some('!'), ci));
    }

    #[test]
    fn decimal_arithmetic_is_exact() {
        assert_eq!(
            arith(ArithOp::Add, dec(110, 2), dec(2205, 3)),
            Ok(dec(3305, 3))
        );
        assert_eq!(
            arith(ArithOp::Div, dec(10, 1), Value::Int(3)),
            Ok(dec(333_333_333, 9))
        );
        // Nested quotients keep MySQL's internal digits.
        let q = arith(ArithOp::Div, dec(-4003, 2), Value::Int(3)).unwrap();
        assert_eq!(q, dec(-13_343_333_333, 9));
        assert_eq!(
            arith(ArithOp::Div, q, Value::Int(-12)),
            Ok(dec(1_111_944_444_416_666_666, 18))
        );
        assert_eq!(arith(ArithOp::Mul, dec(15, 1), dec(15, 1)), Ok(dec(225, 2)));
        assert_eq!(
            arith(ArithOp::Mod, dec(75, 1), Value::Int(2)),
            Ok(dec(15, 1))
        );
        assert_eq!(
            arith(ArithOp::IntDiv, dec(75, 1), Value::Int(2)),
            Ok(Value::Int(3))
        );
        assert_eq!(
            arith(ArithOp::Mod, Value::Int(1), Value::Int(0)),
            Ok(Value::Null)
        );
        assert_eq!(
            arith(ArithOp::IntDiv, Value::Int(1), Value::Int(0)),
            Ok(Value::Null)
        );
        let e = arith(ArithOp::Mul, Value::Double(1e308), Value::Int(10)).unwrap_err();
        assert_eq!(e.code, 1690);
        let d = Value::Date(Date {
            year: 2024,
            month: 2,
            day: 29,
        });
        assert_eq!(
            arith(ArithOp::Add, d, Value::Int(1)),
            Ok(Value::Int(20_240_230))
        );
    }

    #[test]
    fn like_matches_percent_and_underscore() {
        let ci = Collation::Utf8mb4GeneralCi;
        assert!(like(b"hello", b"h%o", ci));
        assert!(like(b"hello", b"H_LLO", ci));
        assert!(!like(b"hello", b"h_o", ci));
        assert!(like(b"a%b", b"a\\%b", ci));
        assert!(!like(b"axb", b"a\\%b", ci));
        assert!(like(b"", b"%", ci));
        assert!(like(b"abcabd", b"%ab_", ci));
        assert!(!like(b"abc", b"%b", ci));
        let long = "a".repeat(100_000);
        assert!(like(long.as_bytes(), b"%a%a", ci));
    }
}
