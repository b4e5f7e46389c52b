//! Scalar functions: the table the compiler looks names up in (name →
//! [`Func`], argument count), each function's result kind, and evaluation
//! with MySQL's rules. One file per family: [`string`], [`number`],
//! [`time`] (dates, intervals, the clock) and [`cast`] (CAST/CONVERT).
//!
//! Invariants: a function never panics and never allocates more than its
//! result (a result longer than `max_allowed_packet` is NULL with a
//! warning, as MySQL does); NULL in gives NULL out except where MySQL says
//! otherwise (CONCAT_WS, IFNULL, COALESCE, IF, NULLIF). Functions read the
//! clock only through the statement's [`super::expr::StmtEnv`], so one
//! statement sees one instant (SYSDATE excepted, as in MySQL).

mod cast;
mod compile;
mod number;
mod string;
mod time;

use crate::types::Value;

use super::SqlError;
use super::expr::{Ctx, Expr, text_bytes};
use super::meta::Kind;

pub(crate) use cast::{CastTo, cast};
pub(crate) use time::{IntervalUnit, date_arith, datetime_from_unix};

/// The longest string a function builds (MySQL's `max_allowed_packet`
/// default, 64 MiB); longer results are NULL with warning 1301.
const MAX_RESULT_BYTES: usize = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    // Strings.
    Concat,
    ConcatWs,
    Substring,
    Upper,
    Lower,
    Length,
    CharLength,
    /// TRIM([BOTH] [remstr FROM] s): arguments s [, remstr].
    Trim,
    TrimLeading,
    TrimTrailing,
    Ltrim,
    Rtrim,
    Replace,
    Left,
    Right,
    Lpad,
    Rpad,
    Repeat,
    /// LOCATE(substr, str [, pos]) and POSITION(substr IN str).
    Locate,
    /// INSTR(str, substr).
    Instr,
    Reverse,
    // Control flow.
    IfNull,
    Coalesce,
    If,
    NullIf,
    // Numbers.
    Abs,
    Round,
    Truncate,
    Floor,
    Ceil,
    Mod,
    Pow,
    Sqrt,
    Sign,
    Greatest,
    Least,
    // Dates and times.
    Now,
    SysDate,
    CurDate,
    CurTime,
    DateFormat,
    DateDiff,
    /// ADDDATE(d, days) / SUBDATE(d, days) (the INTERVAL forms compile
    /// to [`Expr::DateArith`]).
    AddDays,
    SubDays,
    UnixTimestamp,
    FromUnixtime,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Date,
    DayOfWeek,
    DayOfYear,
    LastDay,
    // The session.
    Database,
    Version,
    ConnectionId,
    LastInsertId,
    RowCount,
    FoundRows,
    /// `GROUPING(e, …)`: compiled by the expression compiler (not in the
    /// name table) and replaced at compile time by `rollup::bind`.
    Grouping,
}

/// Name, function, least and most arguments.
const FUNCS: &[(&str, Func, u8, u8)] = &[
    ("CONCAT", Func::Concat, 1, u8::MAX),
    ("CONCAT_WS", Func::ConcatWs, 2, u8::MAX),
    ("SUBSTRING", Func::Substring, 2, 3),
    ("SUBSTR", Func::Substring, 2, 3),
    ("MID", Func::Substring, 3, 3),
    ("UPPER", Func::Upper, 1, 1),
    ("UCASE", Func::Upper, 1, 1),
    ("LOWER", Func::Lower, 1, 1),
    ("LCASE", Func::Lower, 1, 1),
    ("LENGTH", Func::Length, 1, 1),
    ("OCTET_LENGTH", Func::Length, 1, 1),
    ("CHAR_LENGTH", Func::CharLength, 1, 1),
    ("CHARACTER_LENGTH", Func::CharLength, 1, 1),
    ("LTRIM", Func::Ltrim, 1, 1),
    ("RTRIM", Func::Rtrim, 1, 1),
    ("REPLACE", Func::Replace, 3, 3),
    ("LEFT", Func::Left, 2, 2),
    ("RIGHT", Func::Right, 2, 2),
    ("LPAD", Func::Lpad, 3, 3),
    ("RPAD", Func::Rpad, 3, 3),
    ("REPEAT", Func::Repeat, 2, 2),
    ("LOCATE", Func::Locate, 2, 3),
    ("INSTR", Func::Instr, 2, 2),
    ("REVERSE", Func::Reverse, 1, 1),
    ("IFNULL", Func::IfNull, 2, 2),
    ("COALESCE", Func::Coalesce, 1, u8::MAX),
    ("IF", Func::If, 3, 3),
    ("NULLIF", Func::NullIf, 2, 2),
    ("ABS", Func::Abs, 1, 1),
    ("ROUND", Func::Round, 1, 2),
    ("TRUNCATE", Func::Truncate, 2, 2),
    ("FLOOR", Func::Floor, 1, 1),
    ("CEIL", Func::Ceil, 1, 1),
    ("CEILING", Func::Ceil, 1, 1),
    ("MOD", Func::Mod, 2, 2),
    ("POW", Func::Pow, 2, 2),
    ("POWER", Func::Pow, 2, 2),
    ("SQRT", Func::Sqrt, 1, 1),
    ("SIGN", Func::Sign, 1, 1),
    ("GREATEST", Func::Greatest, 2, u8::MAX),
    ("LEAST", Func::Least, 2, u8::MAX),
    ("NOW", Func::Now, 0, 1),
    ("CURRENT_TIMESTAMP", Func::Now, 0, 1),
    ("LOCALTIME", Func::Now, 0, 1),
    ("LOCALTIMESTAMP", Func::Now, 0, 1),
    ("UTC_TIMESTAMP", Func::Now, 0, 1),
    ("SYSDATE", Func::SysDate, 0, 1),
    ("CURDATE", Func::CurDate, 0, 0),
    ("CURRENT_DATE", Func::CurDate, 0, 0),
    ("UTC_DATE", Func::CurDate, 0, 0),
    ("CURTIME", Func::CurTime, 0, 1),
    ("CURRENT_TIME", Func::CurTime, 0, 1),
    ("UTC_TIME", Func::CurTime, 0, 1),
    ("DATE_FORMAT", Func::DateFormat, 2, 2),
    ("DATEDIFF", Func::DateDiff, 2, 2),
    ("ADDDATE", Func::AddDays, 2, 2),
    ("SUBDATE", Func::SubDays, 2, 2),
    ("UNIX_TIMESTAMP", Func::UnixTimestamp, 0, 1),
    ("FROM_UNIXTIME", Func::FromUnixtime, 1, 2),
    ("YEAR", Func::Year, 1, 1),
    ("MONTH", Func::Month, 1, 1),
    ("DAY", Func::Day, 1, 1),
    ("DAYOFMONTH", Func::Day, 1, 1),
    ("HOUR", Func::Hour, 1, 1),
    ("MINUTE", Func::Minute, 1, 1),
    ("SECOND", Func::Second, 1, 1),
    ("DATE", Func::Date, 1, 1),
    ("DAYOFWEEK", Func::DayOfWeek, 1, 1),
    ("DAYOFYEAR", Func::DayOfYear, 1, 1),
    ("LAST_DAY", Func::LastDay, 1, 1),
    ("DATABASE", Func::Database, 0, 0),
    ("SCHEMA", Func::Database, 0, 0),
    ("VERSION", Func::Version, 0, 0),
    ("CONNECTION_ID", Func::ConnectionId, 0, 0),
    ("LAST_INSERT_ID", Func::LastInsertId, 0, 1),
    ("ROW_COUNT", Func::RowCount, 0, 0),
    ("FOUND_ROWS", Func::FoundRows, 0, 0),
];

/// The function an (upper-case) name calls.
pub(crate) fn lookup(name: &str) -> Option<Func> {
    FUNCS.iter().find(|f| f.0 == name).map(|f| f.1)
}

/// 1582 unless `n` arguments suit `name`.
pub(crate) fn check_arity(name: &str, n: usize) -> Result<(), SqlError> {
    let ok = FUNCS
        .iter()
        .find(|f| f.0 == name)
        .is_some_and(|f| (usize::from(f.2)..=usize::from(f.3)).contains(&n));
    if ok {
        Ok(())
    } else {
        Err(SqlError::new(
            1582,
            "42000",
            format!("Incorrect parameter count in the call to native function '{name}'"),
        ))
    }
}

/// Stands for the current database in a 1305 message until the
/// statement's compiler, which knows it, fills it in ([`name_database`]).
const CURRENT_DB: &str = "\u{1}db\u{1}";

/// 1305 for a function nobody defined.
pub(crate) fn unknown(name: &str) -> SqlError {
    SqlError::new(
        1305,
        "42000",
        format!(
            "FUNCTION {CURRENT_DB}.{} does not exist",
            name.to_lowercase()
        ),
    )
}

/// A 1305 names the current database, as MySQL's does (`FUNCTION
/// test.foo does not exist`); without one, MySQL says 1046.
pub(crate) fn name_database(e: SqlError, db: Option<&str>) -> SqlError {
    if e.code != 1305 || !e.message.contains(CURRENT_DB) {
        return e;
    }
    match db {
        Some(db) => SqlError {
            message: e.message.replace(CURRENT_DB, db),
            ..e
        },
        None => SqlError::no_database(),
    }
}

/// The kind CAST gives.
pub(crate) fn cast_kind(to: CastTo) -> Kind {
    match to {
        CastTo::Signed => Kind::Int,
        CastTo::Unsigned => Kind::UInt,
        CastTo::Decimal(_, s) => Kind::Decimal(s),
        CastTo::Double => Kind::Double,
        CastTo::Char(_) => Kind::Text,
        CastTo::Date => Kind::Date,
        CastTo::DateTime => Kind::DateTime,
    }
}

/// The kind `d ± INTERVAL` gives: a DATE stays one for day-or-larger
/// units; text gives text (whichever form the value takes).
pub(crate) fn date_arith_kind(d: Kind, unit: IntervalUnit) -> Kind {
    match d {
        Kind::Date if time::is_date_unit(unit) => Kind::Date,
        Kind::Date | Kind::DateTime => Kind::DateTime,
        Kind::Null => Kind::Null,
        _ => Kind::Any,
    }
}

/// The kind a function's values have, given its arguments' kinds.
pub(crate) fn kind(f: Func, args: &[Expr], kind_of: &dyn Fn(&Expr) -> Kind) -> Kind {
    let arg = |i: usize| args.get(i).map_or(Kind::Null, kind_of);
    match f {
        Func::Length
        | Func::CharLength
        | Func::Locate
        | Func::Instr
        | Func::Sign
        | Func::DateDiff
        | Func::Year
        | Func::Month
        | Func::Day
        | Func::Hour
        | Func::Minute
        | Func::Second
        | Func::DayOfWeek
        | Func::DayOfYear
        | Func::RowCount
        | Func::Grouping
        | Func::UnixTimestamp => Kind::Int,
        Func::ConnectionId | Func::LastInsertId | Func::FoundRows => Kind::UInt,
        Func::Now | Func::SysDate => Kind::DateTime,
        Func::CurDate | Func::Date | Func::LastDay => Kind::Date,
        Func::FromUnixtime if args.len() == 1 => Kind::DateTime,
        Func::AddDays | Func::SubDays => match arg(0) {
            Kind::Date => Kind::Date,
            Kind::DateTime => Kind::DateTime,
            _ => Kind::Any,
        },
        Func::Pow | Func::Sqrt => Kind::Double,
        Func::Abs => match arg(0) {
            Kind::Text | Kind::Date | Kind::DateTime => Kind::Double,
            k => k,
        },
        Func::Floor | Func::Ceil => match arg(0) {
            Kind::Int | Kind::UInt | Kind::Null | Kind::Any => arg(0),
            Kind::Decimal(_) => Kind::Int,
            _ => Kind::Double,
        },
        Func::Round | Func::Truncate => number::round_kind(arg(0), args.get(1)),
        Func::Mod => super::compile::arith_kind(super::expr::ArithOp::Mod, arg(0), arg(1)),
        Func::IfNull | Func::Coalesce | Func::Greatest | Func::Least => {
            merge_kinds(args.iter().map(kind_of))
        }
        Func::If => merge_kinds([arg(1), arg(2)].into_iter()),
        Func::NullIf => arg(0),
        _ => Kind::Text,
    }
}

/// The kind of a value that may come from any of several expressions
/// (IF, CASE, COALESCE…), as MySQL aggregates their types.
pub(crate) fn merge_kinds(kinds: impl Iterator<Item = Kind>) -> Kind {
    let mut out = Kind::Null;
    for k in kinds {
        out = match (out, k) {
            (a, Kind::Null) => a,
            (Kind::Null, b) => b,
            (Kind::Any, _) | (_, Kind::Any) => Kind::Any,
            (a, b) if a == b => a,
            (Kind::Int | Kind::UInt, Kind::Int | Kind::UInt) => Kind::Decimal(0),
            (Kind::Decimal(a), Kind::Decimal(b)) => Kind::Decimal(a.max(b)),
            (Kind::Decimal(s), Kind::Int | Kind::UInt)
            | (Kind::Int | Kind::UInt, Kind::Decimal(s)) => Kind::Decimal(s),
            (Kind::Double, Kind::Int | Kind::UInt | Kind::Decimal(_))
            | (Kind::Int | Kind::UInt | Kind::Decimal(_), Kind::Double) => Kind::Double,
            (Kind::Date | Kind::DateTime, Kind::Date | Kind::DateTime) => Kind::DateTime,
            _ => Kind::Text,
        };
    }
    out
}

/// Evaluates a function call.
pub(crate) fn call(f: Func, args: &[Expr], cx: &Ctx<'_>) -> Result<Value, SqlError> {
    match f {
        Func::IfNull | Func::Coalesce => {
            for a in args {
                let v = a.eval(cx)?;
                if !matches!(v, Value::Null) {
                    return Ok(v);
                }
            }
            Ok(Value::Null)
        }
        Func::If => {
            let pick = match args.first().map(|c| c.truth(cx)).transpose()?.flatten() {
                Some(true) => 1,
                _ => 2,
            };
            args.get(pick).map_or(Ok(Value::Null), |e| e.eval(cx))
        }
        Func::NullIf => {
            let (a, b) = (arg(args, 0, cx)?, arg(args, 1, cx)?);
            let coll = super::compile::collation_of(&args.iter().collect::<Vec<_>>());
            let same = super::expr::compare_op(super::expr::CmpOp::Eq, &a, &b, coll);
            Ok(if same == Some(true) { Value::Null } else { a })
        }
        Func::ConcatWs => string::concat_ws(args, cx),
        // Replaced when the query compiles (`rollup::bind`); reaching it
        // means it stood where no GROUP BY … WITH ROLLUP is.
        Func::Grouping => Err(super::rollup::invalid_use()),
        Func::LastInsertId => match args.first() {
            // LAST_INSERT_ID(n) earlier in the statement counts at once.
            None => Ok(Value::UInt(
                cx.env.stmt.insert_id_set().unwrap_or(cx.env.last_insert_id),
            )),
            Some(e) => {
                let v = e.eval(cx)?;
                if !matches!(v, Value::Null) {
                    let id = number::uint_arg(&v);
                    cx.env.stmt.set_insert_id(id);
                    return Ok(Value::UInt(id));
                }
                Ok(v)
            }
        },
        _ => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                match a.eval(cx)? {
                    Value::Null => return Ok(Value::Null),
                    v => vals.push(v),
                }
            }
            strict(f, &vals, args, cx)
        }
    }
}

fn arg(args: &[Expr], i: usize, cx: &Ctx<'_>) -> Result<Value, SqlError> {
    args.get(i).map_or(Ok(Value::Null), |e| e.eval(cx))
}

/// A function whose every argument is given and not NULL.
fn strict(f: Func, v: &[Value], args: &[Expr], cx: &Ctx<'_>) -> Result<Value, SqlError> {
    if let Some(r) = string::call(f, v, args, cx) {
        return r;
    }
    if let Some(r) = number::call(f, v, args, cx) {
        return r;
    }
    if let Some(r) = time::call(f, v, cx) {
        return r;
    }
    Ok(match f {
        Func::Database => cx
            .env
            .db
            .map_or(Value::Null, |d| Value::Bytes(d.as_bytes().to_vec())),
        Func::Version => Value::Bytes(super::vars::VERSION.as_bytes().to_vec()),
        Func::ConnectionId => Value::UInt(u64::from(cx.env.connection_id)),
        Func::RowCount => Value::Int(cx.env.stmt.row_count),
        Func::FoundRows => Value::UInt(cx.env.stmt.found_rows),
        _ => Value::Null,
    })
}

/// A value's text (numbers and dates in their MySQL form).
fn text(v: &Value) -> String {
    String::from_utf8_lossy(&text_bytes(v)).into_owned()
}

/// The NULL (with MySQL's warning 1301) of a string result that would
/// pass the limit.
fn too_long(name: &str, cx: &Ctx<'_>) -> Value {
    cx.env.stmt.warn(
        1301,
        format!(
            "Result of {name}() was larger than max_allowed_packet ({MAX_RESULT_BYTES}) - truncated"
        ),
    );
    Value::Null
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;

    use super::*;
    use crate::sql::expr::{CmpOp, Env, StmtEnv};
    use crate::types::Decimal;

    /// Any value, including the edges (extreme integers, long and odd
    /// strings, far dates).
    fn arb_any() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Int),
            prop_oneof![Just(i64::MIN), Just(i64::MAX), -3i64..40].prop_map(Value::Int),
            any::<u64>().prop_map(Value::UInt),
            any::<f64>().prop_map(Value::Double),
            (any::<i128>(), 0u8..=38).prop_map(|(m, s)| Value::Decimal(Decimal {
                mantissa: m / 1000,
                scale: s
            })),
            "[ -~é%_\\\\]{0,12}".prop_map(|s| Value::Bytes(s.into_bytes())),
            prop_oneof![
                Just("2024-02-29 13:14:15"),
                Just("9999-12-31"),
                Just("0000-00-00"),
                Just("12abc"),
                Just("1e999"),
            ]
            .prop_map(|s| Value::Bytes(s.as_bytes().to_vec())),
        ]
    }

    proptest! {
        /// Every function, at every argument count it accepts, on any
        /// values: a value or a typed error, never a panic.
        #[test]
        fn functions_never_panic(args in proptest::collection::vec(arb_any(), 0..4)) {
            let (sys, user) = (BTreeMap::new(), HashMap::new());
            let stmt = StmtEnv::starting(0, 0);
            let env = Env {
                params: &[],
                db: Some("d"),
                connection_id: 1,
                last_insert_id: 0,
                sys_vars: &sys,
                user_vars: &user,
                stmt: &stmt,
                catalog: None,
            };
            let cx = Ctx { env: &env, row: &[], aggs: &[] };
            let exprs: Vec<Expr> = args.iter().cloned().map(Expr::Lit).collect();
            for (_, f, min, max) in FUNCS {
                if (usize::from(*min)..=usize::from(*max)).contains(&exprs.len()) {
                    let _ = call(*f, &exprs, &cx);
                }
            }
            for to in [
                CastTo::Signed,
                CastTo::Unsigned,
                CastTo::Decimal(5, 2),
                CastTo::Double,
                CastTo::Char(Some(2)),
                CastTo::Date,
                CastTo::DateTime,
            ] {
                for v in &args {
                    let _ = cast(v.clone(), to, &cx);
                }
            }
            if let [a, b, ..] = args.as_slice() {
                for unit in [IntervalUnit::Second, IntervalUnit::Month, IntervalUnit::Year] {
                    let _ = date_arith(a.clone(), b.clone(), unit, true, &cx);
                }
                let _ = super::super::expr::compare_op(CmpOp::Eq, a, b, crate::types::Collation::Utf8mb4GeneralCi);
            }
        }
    }
}
