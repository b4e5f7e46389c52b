//! Numeric functions. Integers stay integers, DECIMAL stays exact (ROUND
//! and TRUNCATE work on its digits, half away from zero), and everything
//! else is a DOUBLE (strings by their leading number). ROUND of a DOUBLE
//! rounds half to even, as MySQL's `rint` does.

use std::cmp::Ordering;

use crate::types::{Decimal, Value, num};

use super::super::SqlError;
use super::super::compile::collation_of;
use super::super::expr::{ArithOp, Ctx, Expr, arith, double_of, sql_cmp, temporal_number};
use super::super::meta::Kind;
use super::Func;

/// The largest scale MySQL computes with.
const MAX_SCALE: i64 = 30;

/// Evaluates `f` if it is a numeric function (`None` otherwise).
pub(super) fn call(
    f: Func,
    v: &[Value],
    args: &[Expr],
    _cx: &Ctx<'_>,
) -> Option<Result<Value, SqlError>> {
    let first = || temporal_number(v[0].clone());
    Some(match f {
        Func::Abs => abs(first()),
        Func::Round => Ok(round(first(), v.get(1).map_or(0, int_arg), false)),
        Func::Truncate => Ok(round(first(), int_arg(&v[1]), true)),
        Func::Floor => floor_ceil(first(), false),
        Func::Ceil => floor_ceil(first(), true),
        Func::Mod => arith(ArithOp::Mod, v[0].clone(), v[1].clone()),
        Func::Pow => {
            let r = double_of(&first()).powf(double_of(&temporal_number(v[1].clone())));
            if r.is_finite() {
                Ok(Value::Double(r))
            } else {
                Err(SqlError::new(
                    1690,
                    "22003",
                    "DOUBLE value is out of range in 'pow'",
                ))
            }
        }
        Func::Sqrt => {
            let x = double_of(&first());
            Ok(if x < 0.0 {
                Value::Null
            } else {
                Value::Double(x.sqrt())
            })
        }
        Func::Sign => Ok(Value::Int(
            match sql_cmp(&first(), &Value::Int(0), collation_of(&[])) {
                Some(Ordering::Less) => -1,
                Some(Ordering::Greater) => 1,
                _ => 0,
            },
        )),
        Func::Greatest | Func::Least => Ok(extreme(v, args, f == Func::Greatest)),
        _ => return None,
    })
}

/// An argument used as a count or position: rounded to an integer
/// (strings by their leading number), saturating.
pub(crate) fn int_arg(v: &Value) -> i64 {
    match temporal_number(v.clone()) {
        Value::Int(i) => i,
        Value::UInt(u) => i64::try_from(u).unwrap_or(i64::MAX),
        Value::Decimal(d) => {
            num::round_decimal(d, 0).map_or(if d.mantissa < 0 { i64::MIN } else { i64::MAX }, |r| {
                i64::try_from(r.mantissa).unwrap_or(if r.mantissa < 0 {
                    i64::MIN
                } else {
                    i64::MAX
                })
            })
        }
        other => double_of(&other).round() as i64,
    }
}

/// An argument as an unsigned 64-bit value (negative numbers wrap, as
/// MySQL's unsigned conversion does).
pub(crate) fn uint_arg(v: &Value) -> u64 {
    match v {
        Value::UInt(u) => *u,
        other => int_arg(other) as u64,
    }
}

fn abs(v: Value) -> Result<Value, SqlError> {
    Ok(match v {
        Value::Int(i) => match i.checked_abs() {
            Some(a) => Value::Int(a),
            None => Value::UInt(i.unsigned_abs()),
        },
        Value::UInt(u) => Value::UInt(u),
        Value::Decimal(d) => Value::Decimal(Decimal {
            mantissa: d.mantissa.abs(),
            scale: d.scale,
        }),
        other => Value::Double(double_of(&other).abs()),
    })
}

/// ROUND(x, d) or (`truncate`) TRUNCATE(x, d).
fn round(v: Value, d: i64, truncate: bool) -> Value {
    let d = d.clamp(-64, MAX_SCALE) as i32;
    let exact = super::super::expr::exact_of(&v);
    match exact {
        Some(x) => {
            let Some(r) = num::rescale(x, d, truncate) else {
                return v;
            };
            match v {
                // Integers stay integers (ROUND(125, -1) = 130).
                Value::Int(_) | Value::UInt(_) if d >= 0 => v,
                Value::Int(_) => i64::try_from(r.mantissa).map_or(Value::Decimal(r), Value::Int),
                Value::UInt(_) => u64::try_from(r.mantissa).map_or(Value::Decimal(r), Value::UInt),
                _ => Value::Decimal(r),
            }
        }
        None => Value::Double(round_double(double_of(&v), d, truncate)),
    }
}

fn round_double(x: f64, d: i32, truncate: bool) -> f64 {
    let step = |y: f64| {
        if truncate {
            y.trunc()
        } else {
            y.round_ties_even()
        }
    };
    let p = 10f64.powi(d.abs());
    let r = if d >= 0 {
        let scaled = x * p;
        if !scaled.is_finite() {
            return x;
        }
        step(scaled) / p
    } else {
        step(x / p) * p
    };
    if r.is_finite() { r } else { x }
}

/// The kind of ROUND/TRUNCATE: the argument's, a DECIMAL at the given
/// (constant) number of digits.
pub(super) fn round_kind(arg: Kind, digits: Option<&Expr>) -> Kind {
    let constant = match digits {
        None => Some(0),
        Some(Expr::Lit(Value::Int(n))) => Some(*n),
        Some(Expr::Neg(e)) if matches!(e.as_ref(), Expr::Lit(Value::Int(_))) => Some(-1),
        Some(_) => None,
    };
    match arg {
        Kind::Int | Kind::UInt | Kind::Null | Kind::Any | Kind::Double => arg,
        Kind::Decimal(s) => match constant {
            Some(n) => Kind::Decimal(n.clamp(0, MAX_SCALE) as u8),
            None => Kind::Decimal(s),
        },
        _ => Kind::Double,
    }
}

fn floor_ceil(v: Value, ceil: bool) -> Result<Value, SqlError> {
    Ok(match v {
        Value::Int(_) | Value::UInt(_) => v,
        Value::Decimal(d) => {
            let toward_zero = num::rescale(d, 0, true).unwrap_or(d);
            let exact = num::rescale_exact(d, 0).is_some();
            let adjust = match (exact, ceil, d.mantissa > 0) {
                (true, _, _) => 0,
                (false, true, true) => 1,
                (false, false, false) => -1,
                _ => 0,
            };
            let m = toward_zero.mantissa + adjust;
            i64::try_from(m).map(Value::Int).map_err(|_| {
                SqlError::new(1690, "22003", "BIGINT value is out of range in 'floor'")
            })?
        }
        other => {
            let x = double_of(&other);
            Value::Double(if ceil { x.ceil() } else { x.floor() })
        }
    })
}

/// GREATEST / LEAST: compared as MySQL compares the values (numbers
/// numerically, strings under their collation).
fn extreme(v: &[Value], args: &[Expr], greatest: bool) -> Value {
    let coll = collation_of(&args.iter().collect::<Vec<_>>());
    let mut best = &v[0];
    for x in &v[1..] {
        let better = match sql_cmp(x, best, coll) {
            Some(Ordering::Greater) => greatest,
            Some(Ordering::Less) => !greatest,
            _ => false,
        };
        if better {
            best = x;
        }
    }
    best.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(m: i128, s: u8) -> Value {
        Value::Decimal(Decimal {
            mantissa: m,
            scale: s,
        })
    }

    #[test]
    fn round_and_truncate_follow_the_argument_type() {
        assert_eq!(round(dec(155, 2), 0, false), dec(2, 0));
        assert_eq!(round(dec(15, 1), 3, false), dec(1500, 3));
        assert_eq!(round(dec(-25, 1), 0, false), dec(-3, 0));
        assert_eq!(round(dec(1555, 3), 2, true), dec(155, 2));
        assert_eq!(round(Value::Int(125), -1, false), Value::Int(130));
        assert_eq!(round(Value::Int(125), 2, false), Value::Int(125));
        assert_eq!(round(Value::Double(2.5), 0, false), Value::Double(2.0));
        assert_eq!(round(Value::Double(1.2345), 2, true), Value::Double(1.23));
        assert_eq!(round(Value::Int(-129), -1, true), Value::Int(-120));
    }

    #[test]
    fn floor_and_ceil() {
        assert_eq!(floor_ceil(dec(15, 1), false), Ok(Value::Int(1)));
        assert_eq!(floor_ceil(dec(-15, 1), false), Ok(Value::Int(-2)));
        assert_eq!(floor_ceil(dec(-15, 1), true), Ok(Value::Int(-1)));
        assert_eq!(floor_ceil(dec(15, 1), true), Ok(Value::Int(2)));
        assert_eq!(floor_ceil(dec(20, 1), true), Ok(Value::Int(2)));
        assert_eq!(
            floor_ceil(Value::Double(-1.5), true),
            Ok(Value::Double(-1.0))
        );
    }
}
