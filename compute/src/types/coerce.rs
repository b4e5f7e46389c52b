//! Strict-mode conversion of a value to a column's stored form, one
//! function per family of column types (see [`super::ColumnType::coerce`]).
//!
//! Every function here takes a non-NULL value and never panics.

use super::num::{self, MAX_PRECISION, ParsedNum};
use super::temporal::{self, TIMESTAMP_MAX, TIMESTAMP_MIN};
use super::{Date, DateTime, Decimal, IntWidth, Value, ValueError};

fn bad(what: &str, v: &Value) -> ValueError {
    ValueError::BadValue(format!("Incorrect {what} value: '{v}'"))
}

/// The values an integer column of `width` holds.
pub(crate) fn int_range(width: IntWidth, unsigned: bool) -> (i128, i128) {
    let bits = match width {
        IntWidth::Tiny => 8,
        IntWidth::Small => 16,
        IntWidth::Medium => 24,
        IntWidth::Int => 32,
        IntWidth::Big => 64,
    };
    if unsigned {
        (0, (1i128 << bits) - 1)
    } else {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    }
}

/// A numeric reading of any non-NULL value: numbers as they are, strings
/// parsed, dates as MySQL's numbers (`20240229`, `20240229131415.5`).
fn to_parsed(v: &Value, what: &str) -> Result<ParsedNum, ValueError> {
    let parsed = match v {
        Value::Int(i) => Some(ParsedNum::from_i64(*i)),
        Value::UInt(u) => Some(ParsedNum::from_u128(false, u128::from(*u), 0)),
        Value::Double(f) => ParsedNum::from_f64(*f),
        Value::Decimal(d) => Some(ParsedNum::from_decimal(*d)),
        Value::Bytes(b) => num::parse(b),
        Value::Date(d) => num::parse(date_number(d).as_bytes()),
        Value::DateTime(dt) => num::parse(datetime_number(dt).as_bytes()),
        Value::Null => None,
    };
    parsed.ok_or_else(|| bad(what, v))
}

fn date_number(d: &Date) -> String {
    format!("{:04}{:02}{:02}", d.year, d.month, d.day)
}

fn datetime_number(dt: &DateTime) -> String {
    format!(
        "{}{:02}{:02}{:02}.{:06}",
        date_number(&dt.date),
        dt.hour,
        dt.minute,
        dt.second,
        dt.micros
    )
}

/// An integer column (and BOOLEAN, which is TINYINT).
pub(crate) fn to_int(width: IntWidth, unsigned: bool, v: &Value) -> Result<Value, ValueError> {
    let n = match v {
        Value::Int(i) => i128::from(*i),
        Value::UInt(u) => i128::from(*u),
        _ => to_parsed(v, "integer")?
            .to_i128()
            .ok_or(ValueError::OutOfRange)?,
    };
    let (min, max) = int_range(width, unsigned);
    if n < min || n > max {
        return Err(ValueError::OutOfRange);
    }
    // In range of the column, so in range of the variant.
    Ok(if unsigned {
        Value::UInt(u64::try_from(n).map_err(|_| ValueError::OutOfRange)?)
    } else {
        Value::Int(i64::try_from(n).map_err(|_| ValueError::OutOfRange)?)
    })
}

/// A DOUBLE column.
pub(crate) fn to_double(v: &Value) -> Result<Value, ValueError> {
    let f = match v {
        Value::Int(i) => *i as f64,
        Value::UInt(u) => *u as f64,
        Value::Double(f) if f.is_finite() => *f,
        Value::Double(_) => return Err(bad("double", v)),
        _ => {
            let f = to_parsed(v, "double")?.to_f64();
            if !f.is_finite() {
                return Err(ValueError::OutOfRange);
            }
            f
        }
    };
    Ok(Value::Double(f))
}

/// A DECIMAL(precision, scale) column.
pub(crate) fn to_decimal(precision: u8, scale: u8, v: &Value) -> Result<Value, ValueError> {
    let (negative, mag) = to_parsed(v, "decimal")?
        .round_to_scale(u32::from(scale))
        .ok_or(ValueError::OutOfRange)?;
    let limit =
        num::pow10(u32::from(precision).min(MAX_PRECISION)).ok_or(ValueError::OutOfRange)?;
    if mag >= limit {
        return Err(ValueError::OutOfRange);
    }
    let mantissa = num::signed(negative, mag).ok_or(ValueError::OutOfRange)?;
    Ok(Value::Decimal(Decimal { mantissa, scale }))
}

/// A value's text as a string column stores it: strings as they are,
/// numbers and dates in their MySQL text form.
fn text_of(v: Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b,
        other => other.to_string().into_bytes(),
    }
}

/// CHAR (`is_char`) or VARCHAR of `max_chars` characters.
pub(crate) fn to_chars(v: Value, max_chars: u32, is_char: bool) -> Result<Value, ValueError> {
    let mut bytes = text_of(v);
    let text = std::str::from_utf8(&bytes).map_err(|_| bad_string(&bytes))?;
    let keep = if is_char {
        text.trim_end_matches(' ').len()
    } else {
        text.len()
    };
    let max = usize::try_from(max_chars).unwrap_or(usize::MAX);
    if let Some((cut, _)) = text[..keep].char_indices().nth(max) {
        // Beyond the limit: only spaces may be dropped.
        if !text.as_bytes()[cut..].iter().all(|&b| b == b' ') {
            return Err(ValueError::TooLong);
        }
        bytes.truncate(cut);
    } else {
        bytes.truncate(keep);
    }
    Ok(Value::Bytes(bytes))
}

/// TEXT (`is_text`, so UTF-8) or BLOB of `max_bytes` bytes.
pub(crate) fn to_bytes(v: Value, max_bytes: u32, is_text: bool) -> Result<Value, ValueError> {
    let mut bytes = text_of(v);
    if is_text && std::str::from_utf8(&bytes).is_err() {
        return Err(bad_string(&bytes));
    }
    let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    if bytes.len() > max {
        // TEXT drops trailing spaces beyond the limit (cutting at a space
        // keeps the UTF-8 valid); BLOB never changes its bytes.
        if !is_text || !bytes[max..].iter().all(|&b| b == b' ') {
            return Err(ValueError::TooLong);
        }
        bytes.truncate(max);
    }
    Ok(Value::Bytes(bytes))
}

fn bad_string(bytes: &[u8]) -> ValueError {
    let shown: String = bytes
        .iter()
        .take(8)
        .map(|b| format!("\\x{b:02X}"))
        .collect();
    ValueError::BadValue(format!("Incorrect string value: '{shown}'"))
}

/// A datetime from a date, a datetime or its text; `None` otherwise.
fn datetime_from(v: &Value) -> Option<DateTime> {
    match v {
        Value::Date(d) => Some(DateTime::midnight(*d)),
        Value::DateTime(dt) => Some(*dt),
        Value::Bytes(b) => temporal::parse_datetime(b).map(|(dt, _)| dt),
        _ => None,
    }
}

/// A DATE column: a datetime's time of day is dropped.
pub(crate) fn to_date(v: &Value) -> Result<Value, ValueError> {
    match datetime_from(v) {
        Some(dt) if temporal::valid_datetime(dt) => Ok(Value::Date(dt.date)),
        _ => Err(bad("date", v)),
    }
}

/// A DATETIME or (`timestamp`) TIMESTAMP column.
pub(crate) fn to_datetime(v: &Value, timestamp: bool) -> Result<Value, ValueError> {
    let what = if timestamp { "timestamp" } else { "datetime" };
    match datetime_from(v) {
        Some(dt)
            if temporal::valid_datetime(dt)
                && (!timestamp || (TIMESTAMP_MIN..=TIMESTAMP_MAX).contains(&dt)) =>
        {
            Ok(Value::DateTime(dt))
        }
        _ => Err(bad(what, v)),
    }
}

/// What non-strict `sql_mode` did to a value it stored anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Adjusted {
    /// 1264: clamped to the column's range.
    OutOfRange,
    /// 1265: cut (a string too long, a number's trailing garbage).
    Truncated,
    /// 1366: not a number at all, stored as 0.
    Incorrect,
}

/// A value made to fit `ty` as MySQL does outside strict mode: numbers
/// out of range clamp to the nearest end, strings too long are cut, a
/// string with a leading number stores that number and one without
/// stores 0. Values no adjustment can fit (a bad date, invalid UTF-8)
/// still fail.
pub(crate) fn lenient(
    ty: &super::ColumnType,
    v: Value,
) -> Result<(Value, Option<Adjusted>), ValueError> {
    use super::ColumnType as T;
    let error = match ty.coerce(v.clone()) {
        Ok(stored) => return Ok((stored, None)),
        Err(e) => e,
    };
    match (ty, error) {
        (T::Int { .. } | T::Boolean | T::Decimal { .. } | T::Double, ValueError::OutOfRange) => {
            Ok((clamp(ty, &v)?, Some(Adjusted::OutOfRange)))
        }
        (T::Int { .. } | T::Boolean | T::Decimal { .. } | T::Double, ValueError::BadValue(_)) => {
            let Value::Bytes(b) = &v else {
                return Err(bad("number", &v));
            };
            let (number, how) = match leading_number(b) {
                Some(n) => (Value::Bytes(n.to_vec()), Adjusted::Truncated),
                None => (Value::Int(0), Adjusted::Incorrect),
            };
            match lenient(ty, number)? {
                (stored, Some(Adjusted::OutOfRange)) => Ok((stored, Some(Adjusted::OutOfRange))),
                (stored, _) => Ok((stored, Some(how))),
            }
        }
        (T::Char { max_chars, .. } | T::VarChar { max_chars, .. }, ValueError::TooLong) => {
            let t = String::from_utf8_lossy(&text_of(v)).into_owned();
            let cut: String = t
                .chars()
                .take(usize::try_from(*max_chars).unwrap_or(usize::MAX))
                .collect();
            Ok((
                ty.coerce(Value::Bytes(cut.into_bytes()))?,
                Some(Adjusted::Truncated),
            ))
        }
        (T::Text { max_bytes, .. } | T::Blob { max_bytes }, ValueError::TooLong) => {
            let mut b = text_of(v);
            let mut end = usize::try_from(*max_bytes)
                .unwrap_or(usize::MAX)
                .min(b.len());
            if matches!(ty, T::Text { .. }) {
                // Cut at a character boundary.
                while end > 0 && end < b.len() && (b[end] & 0xC0) == 0x80 {
                    end -= 1;
                }
            }
            b.truncate(end);
            Ok((ty.coerce(Value::Bytes(b))?, Some(Adjusted::Truncated)))
        }
        (_, e) => Err(e),
    }
}

/// The nearest end of a numeric column's range to `v`.
fn clamp(ty: &super::ColumnType, v: &Value) -> Result<Value, ValueError> {
    use super::ColumnType as T;
    let negative = match v {
        Value::Int(i) => *i < 0,
        Value::Decimal(d) => d.mantissa < 0,
        Value::Double(f) => *f < 0.0,
        Value::Bytes(b) => b.trim_ascii_start().first() == Some(&b'-'),
        _ => false,
    };
    Ok(match ty {
        T::Int { width, unsigned } => {
            let (min, max) = int_range(*width, *unsigned);
            to_int(
                *width,
                *unsigned,
                &Value::Decimal(Decimal {
                    mantissa: if negative { min } else { max },
                    scale: 0,
                }),
            )?
        }
        T::Boolean => Value::Int(if negative { -128 } else { 127 }),
        T::Decimal { precision, scale } => {
            let max = num::pow10(u32::from(*precision).min(MAX_PRECISION))
                .and_then(|p| i128::try_from(p).ok())
                .map_or(i128::MAX, |p| p - 1);
            Value::Decimal(Decimal {
                mantissa: if negative { -max } else { max },
                scale: *scale,
            })
        }
        _ => Value::Double(if negative { f64::MIN } else { f64::MAX }),
    })
}

/// The number a string starts with (`'12abc'` → `12`, `' -1.5e3x'` →
/// `-1.5e3`), if any.
pub(crate) fn leading_number(b: &[u8]) -> Option<&[u8]> {
    let t = b.trim_ascii_start();
    let digits = |mut i: usize| {
        while i < t.len() && t[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let sign = usize::from(matches!(t.first(), Some(b'+' | b'-')));
    let mut end = digits(sign);
    let int_digits = end - sign;
    if t.get(end) == Some(&b'.') {
        end = digits(end + 1);
    }
    if int_digits == 0 && end <= sign + 1 {
        return None;
    }
    if matches!(t.get(end), Some(b'e' | b'E')) {
        let mut j = end + 1;
        j += usize::from(matches!(t.get(j), Some(b'+' | b'-')));
        let exp_end = digits(j);
        if exp_end > j {
            end = exp_end;
        }
    }
    Some(&t[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Collation, ColumnType};

    fn s(t: &str) -> Value {
        Value::Bytes(t.as_bytes().to_vec())
    }

    #[test]
    fn lenient_adjusts_as_mysql_outside_strict_mode() {
        let tiny = ColumnType::Int {
            width: IntWidth::Tiny,
            unsigned: false,
        };
        assert_eq!(
            lenient(&tiny, Value::Int(300)),
            Ok((Value::Int(127), Some(Adjusted::OutOfRange)))
        );
        assert_eq!(
            lenient(&tiny, s("-1000")),
            Ok((Value::Int(-128), Some(Adjusted::OutOfRange)))
        );
        assert_eq!(
            lenient(&tiny, s("12abc")),
            Ok((Value::Int(12), Some(Adjusted::Truncated)))
        );
        assert_eq!(
            lenient(&tiny, s("abc")),
            Ok((Value::Int(0), Some(Adjusted::Incorrect)))
        );
        assert_eq!(lenient(&tiny, Value::Int(5)), Ok((Value::Int(5), None)));
        let dec = ColumnType::Decimal {
            precision: 4,
            scale: 1,
        };
        assert_eq!(
            lenient(&dec, Value::Int(12345)),
            Ok((
                Value::Decimal(Decimal {
                    mantissa: 9999,
                    scale: 1
                }),
                Some(Adjusted::OutOfRange)
            ))
        );
        let vc = ColumnType::VarChar {
            max_chars: 3,
            collation: Collation::Utf8mb4GeneralCi,
        };
        assert_eq!(
            lenient(&vc, s("héllo")),
            Ok((s("hél"), Some(Adjusted::Truncated)))
        );
        assert!(lenient(&ColumnType::Date, s("nope")).is_err());
        assert_eq!(leading_number(b" -1.5e3x"), Some(&b"-1.5e3"[..]));
        assert_eq!(leading_number(b".5"), Some(&b".5"[..]));
        assert_eq!(leading_number(b"-."), None);
        assert_eq!(leading_number(b"x1"), None);
    }
}
