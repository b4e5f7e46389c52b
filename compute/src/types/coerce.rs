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
