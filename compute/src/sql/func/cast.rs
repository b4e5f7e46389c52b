//! CAST(e AS type) and CONVERT(e, type), as MySQL converts outside strict
//! mode: a string that is not wholly a number converts by its leading
//! number with warning 1292; a number out of a DECIMAL's range saturates
//! with warning 1264; a value that is not a date is NULL with warning
//! 1292. Integers convert as two's complement between SIGNED and
//! UNSIGNED (`CAST(-1 AS UNSIGNED)` = 18446744073709551615).

use crate::types::{ColumnType, Decimal, Value, ValueError, num};

use super::super::expr::{Ctx, double_of, leading_f64, temporal_number};
use super::text;
use super::time::to_datetime;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CastTo {
    Signed,
    Unsigned,
    /// DECIMAL(precision, scale).
    Decimal(u8, u8),
    Double,
    /// CHAR[(n)]: at most `n` characters.
    Char(Option<u32>),
    Date,
    DateTime,
}

/// `CAST(v AS to)`.
pub(crate) fn cast(v: Value, to: CastTo, cx: &Ctx<'_>) -> Value {
    if matches!(v, Value::Null) {
        return Value::Null;
    }
    match to {
        CastTo::Signed => match integer(v, cx) {
            Int::Signed(i) => Value::Int(i),
            Int::Unsigned(u) => Value::Int(u as i64),
        },
        CastTo::Unsigned => match integer(v, cx) {
            Int::Signed(i) => Value::UInt(i as u64),
            Int::Unsigned(u) => Value::UInt(u),
        },
        CastTo::Decimal(p, s) => decimal(v, p, s, cx),
        CastTo::Double => {
            if let Value::Bytes(b) = &v {
                warn_number(b, "DOUBLE", cx);
            }
            Value::Double(double_of(&temporal_number(v)))
        }
        CastTo::Char(max) => {
            let t = text(&v);
            match max.map(|m| usize::try_from(m).unwrap_or(usize::MAX)) {
                Some(m) if t.chars().count() > m => {
                    cx.env
                        .stmt
                        .warn(1292, format!("Truncated incorrect CHAR({m}) value: '{t}'"));
                    Value::Bytes(t.chars().take(m).collect::<String>().into_bytes())
                }
                _ => Value::Bytes(t.into_bytes()),
            }
        }
        CastTo::Date | CastTo::DateTime => match to_datetime(&v) {
            Some((dt, _)) if to == CastTo::Date => Value::Date(dt.date),
            Some((dt, _)) => Value::DateTime(dt),
            None => {
                let what = if to == CastTo::Date {
                    "date"
                } else {
                    "datetime"
                };
                cx.env
                    .stmt
                    .warn(1292, format!("Incorrect {what} value: '{}'", text(&v)));
                Value::Null
            }
        },
    }
}

enum Int {
    Signed(i64),
    Unsigned(u64),
}

/// A value as a 64-bit integer: numbers rounded (saturating), strings by
/// their leading integer (`'1.9'` is 1, as MySQL's string-to-integer
/// conversion stops at the point).
fn integer(v: Value, cx: &Ctx<'_>) -> Int {
    match temporal_number(v) {
        Value::Int(i) => Int::Signed(i),
        Value::UInt(u) => Int::Unsigned(u),
        Value::Decimal(d) => {
            let r =
                num::round_decimal(d, 0).map_or(d.mantissa.signum() * i128::MAX, |r| r.mantissa);
            saturate(r)
        }
        Value::Bytes(b) => {
            let t = b.trim_ascii();
            let sign = usize::from(matches!(t.first(), Some(b'-' | b'+')));
            let digits = t[sign..].iter().take_while(|c| c.is_ascii_digit()).count();
            if sign + digits != t.len() {
                cx.env.stmt.warn(
                    1292,
                    format!(
                        "Truncated incorrect INTEGER value: '{}'",
                        String::from_utf8_lossy(&b)
                    ),
                );
            }
            let n: i128 = std::str::from_utf8(&t[sign..sign + digits])
                .ok()
                .filter(|s| !s.is_empty())
                .map_or(0, |s| s.parse().unwrap_or(i128::MAX));
            saturate(if t.first() == Some(&b'-') { -n } else { n })
        }
        other => {
            let f = double_of(&other).round();
            if f >= 9.223_372_036_854_776e18 {
                Int::Unsigned(if f >= 1.844_674_407_370_955_2e19 {
                    u64::MAX
                } else {
                    f as u64
                })
            } else {
                Int::Signed(f as i64)
            }
        }
    }
}

fn saturate(n: i128) -> Int {
    match i64::try_from(n) {
        Ok(i) => Int::Signed(i),
        Err(_) if n > 0 => Int::Unsigned(u64::try_from(n).unwrap_or(u64::MAX)),
        Err(_) => Int::Signed(i64::MIN),
    }
}

/// CAST(v AS DECIMAL(p, s)): rounded to `s` digits, saturated at the
/// largest value of `p` digits.
fn decimal(v: Value, p: u8, s: u8, cx: &Ctx<'_>) -> Value {
    let v = match v {
        Value::Bytes(b) => {
            warn_number(&b, "DECIMAL", cx);
            match num::parse(&b) {
                Some(_) => Value::Bytes(b),
                None => leading_number(&b),
            }
        }
        other => temporal_number(other),
    };
    match (ColumnType::Decimal {
        precision: p,
        scale: s,
    })
    .coerce(v.clone())
    {
        Ok(d) => d,
        Err(ValueError::OutOfRange) => {
            cx.env.stmt.warn(
                1264,
                "Out of range value for column 'CAST' at row 1".to_string(),
            );
            let max = num::pow10(u32::from(p))
                .map_or(i128::MAX, |m| i128::try_from(m).unwrap_or(i128::MAX) - 1);
            let negative = double_of(&v) < 0.0;
            Value::Decimal(Decimal {
                mantissa: if negative { -max } else { max },
                scale: s,
            })
        }
        Err(_) => Value::Decimal(Decimal {
            mantissa: 0,
            scale: s,
        }),
    }
}

/// The leading number of a string that is not wholly one, as a double.
fn leading_number(b: &[u8]) -> Value {
    Value::Double(leading_f64(b))
}

fn warn_number(b: &[u8], what: &str, cx: &Ctx<'_>) {
    if num::parse(b).is_none() {
        cx.env.stmt.warn(
            1292,
            format!(
                "Truncated incorrect {what} value: '{}'",
                String::from_utf8_lossy(b)
            ),
        );
    }
}
