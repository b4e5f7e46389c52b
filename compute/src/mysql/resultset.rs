//! Result sets: column definitions (Protocol::ColumnDefinition41), text
//! rows and binary rows, and the text form of a value.
//!
//! Invariants: a binary row encodes each value by its COLUMN's field type
//! (the client decodes by the column, not by the value), converting a value
//! of another kind rather than failing: integers truncate to the column's
//! width, text that is not a number becomes 0, text that is not a date
//! becomes the zero date. The NULL bitmap of a binary row is offset by 2
//! bits. Only the connection decides where EOF packets go.

use super::codec::{put_lenenc_bytes, put_lenenc_int, put_u16, put_u32};
use crate::sql::{Column, FieldType};
use crate::types::{Date, DateTime, Value};

/// A value's text-protocol form: `Display` of the value, except that
/// strings and blobs are their raw bytes. (A NULL is written as 0xFB by
/// the row, never through this function; here it is `NULL`.)
pub fn text_value(v: &Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.clone(),
        other => other.to_string().into_bytes(),
    }
}

/// A column definition; `field_list` adds COM_FIELD_LIST's default value
/// (always NULL here).
pub(crate) fn column_def(out: &mut Vec<u8>, col: &Column, field_list: bool) {
    put_lenenc_bytes(out, b"def");
    put_lenenc_bytes(out, col.db.as_bytes());
    put_lenenc_bytes(out, col.table.as_bytes());
    put_lenenc_bytes(out, col.table.as_bytes());
    put_lenenc_bytes(out, col.name.as_bytes());
    put_lenenc_bytes(out, col.name.as_bytes());
    out.push(0x0C);
    put_u16(out, col.charset);
    put_u32(out, col.length);
    out.push(col.field_type as u8);
    put_u16(out, col.flags);
    out.push(col.decimals);
    out.extend_from_slice(&[0, 0]);
    if field_list {
        out.push(0xFB);
    }
}

pub(crate) fn column_count(out: &mut Vec<u8>, n: usize) {
    put_lenenc_int(out, n as u64);
}

pub(crate) fn text_row(out: &mut Vec<u8>, row: &[Value]) {
    for v in row {
        match v {
            Value::Null => out.push(0xFB),
            Value::Bytes(b) => put_lenenc_bytes(out, b),
            other => put_lenenc_bytes(out, other.to_string().as_bytes()),
        }
    }
}

/// A binary row: 0x00, the NULL bitmap (offset 2), then the non-NULL
/// values. Missing trailing values count as NULL.
pub(crate) fn binary_row(out: &mut Vec<u8>, columns: &[Column], row: &[Value]) {
    out.push(0);
    let bitmap_at = out.len();
    out.resize(bitmap_at + (columns.len() + 7 + 2) / 8, 0);
    for (i, col) in columns.iter().enumerate() {
        let v = row.get(i).unwrap_or(&Value::Null);
        if matches!(v, Value::Null) || col.field_type == FieldType::Null {
            let bit = i + 2;
            out[bitmap_at + bit / 8] |= 1 << (bit % 8);
        } else {
            binary_value(out, col.field_type, v);
        }
    }
}

fn binary_value(out: &mut Vec<u8>, ty: FieldType, v: &Value) {
    match ty {
        FieldType::Tiny => out.push(int_of(v) as u8),
        FieldType::Short | FieldType::Year => put_u16(out, int_of(v) as u16),
        FieldType::Long | FieldType::Int24 => put_u32(out, int_of(v) as u32),
        FieldType::LongLong => out.extend_from_slice(&(int_of(v) as u64).to_le_bytes()),
        FieldType::Float => out.extend_from_slice(&(float_of(v) as f32).to_le_bytes()),
        FieldType::Double => out.extend_from_slice(&float_of(v).to_le_bytes()),
        FieldType::Date | FieldType::DateTime | FieldType::Timestamp => {
            binary_datetime(out, ty == FieldType::Date, datetime_of(v));
        }
        FieldType::Time => binary_time(out, &text_value(v)),
        _ => put_lenenc_bytes(out, &text_value(v)),
    }
}

/// A value as an integer (two's complement; the caller truncates).
fn int_of(v: &Value) -> i128 {
    match v {
        Value::Int(i) => i128::from(*i),
        Value::UInt(u) => i128::from(*u),
        Value::Double(d) => *d as i128,
        Value::Decimal(d) => d.mantissa / 10i128.pow(u32::from(d.scale.min(38))),
        Value::Bytes(b) => {
            let s = String::from_utf8_lossy(b);
            let s = s.trim();
            s.parse::<i128>()
                .unwrap_or_else(|_| s.parse::<f64>().map_or(0, |d| d as i128))
        }
        Value::Null | Value::Date(_) | Value::DateTime(_) => 0,
    }
}

fn float_of(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::UInt(u) => *u as f64,
        Value::Double(d) => *d,
        Value::Decimal(_) | Value::Bytes(_) => String::from_utf8_lossy(&text_value(v))
            .trim()
            .parse()
            .unwrap_or(0.0),
        Value::Null | Value::Date(_) | Value::DateTime(_) => 0.0,
    }
}

const ZERO_DATE: Date = Date {
    year: 0,
    month: 0,
    day: 0,
};

fn datetime_of(v: &Value) -> DateTime {
    let midnight = |date| DateTime {
        date,
        hour: 0,
        minute: 0,
        second: 0,
        micros: 0,
    };
    match v {
        Value::Date(d) => midnight(*d),
        Value::DateTime(dt) => *dt,
        Value::Bytes(b) => parse_datetime(b).unwrap_or(midnight(ZERO_DATE)),
        _ => midnight(ZERO_DATE),
    }
}

/// `YYYY-MM-DD[ hh:mm:ss[.ffffff]]`.
fn parse_datetime(b: &[u8]) -> Option<DateTime> {
    let s = std::str::from_utf8(b).ok()?.trim();
    let (date, time) = s.split_once([' ', 'T']).unwrap_or((s, "00:00:00"));
    let mut d = date.splitn(3, '-').map(str::parse::<u32>);
    let (year, month, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(str::parse::<u8>);
    let (hour, minute, second) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    Some(DateTime {
        date: Date {
            year: u16::try_from(year).ok()?,
            month: u8::try_from(month).ok()?,
            day: u8::try_from(day).ok()?,
        },
        hour,
        minute,
        second,
        micros: micros_of(frac),
    })
}

/// Up to six fractional digits as microseconds.
fn micros_of(frac: &str) -> u32 {
    let digits: String = frac.chars().take(6).collect();
    format!("{digits:0<6}").parse().unwrap_or(0)
}

fn binary_datetime(out: &mut Vec<u8>, date_only: bool, dt: DateTime) {
    let d = dt.date;
    let time_zero = date_only || (dt.hour, dt.minute, dt.second, dt.micros) == (0, 0, 0, 0);
    let len: u8 = if d == ZERO_DATE && time_zero {
        0
    } else if time_zero {
        4
    } else if dt.micros == 0 {
        7
    } else {
        11
    };
    out.push(len);
    if len >= 4 {
        put_u16(out, d.year);
        out.extend_from_slice(&[d.month, d.day]);
    }
    if len >= 7 {
        out.extend_from_slice(&[dt.hour, dt.minute, dt.second]);
    }
    if len == 11 {
        put_u32(out, dt.micros);
    }
}

/// A TIME in the binary format, from its text `[-]h:mm:ss[.ffffff]`.
fn binary_time(out: &mut Vec<u8>, text: &[u8]) {
    let s = String::from_utf8_lossy(text);
    let (neg, body) = match s.trim().strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, s.trim().to_string()),
    };
    let (hms, frac) = body.split_once('.').unwrap_or((&body, ""));
    let parts: Vec<u32> = hms.split(':').map(|p| p.parse().unwrap_or(0)).collect();
    let [h, m, sec] = [0, 1, 2].map(|i| parts.get(i).copied().unwrap_or(0));
    let micros = micros_of(frac);
    if (h, m, sec, micros) == (0, 0, 0, 0) {
        out.push(0);
        return;
    }
    out.push(if micros == 0 { 8 } else { 12 });
    out.push(u8::from(neg));
    put_u32(out, h / 24);
    out.extend_from_slice(&[(h % 24) as u8, m.min(59) as u8, sec.min(59) as u8]);
    if micros != 0 {
        put_u32(out, micros);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Decimal;

    fn col(field_type: FieldType) -> Column {
        Column {
            db: "d".into(),
            table: "t".into(),
            name: "c".into(),
            charset: 63,
            length: 20,
            field_type,
            flags: 0,
            decimals: 0,
        }
    }

    #[test]
    fn text_rows() {
        let mut out = Vec::new();
        text_row(
            &mut out,
            &[Value::Int(-1), Value::Null, Value::Bytes(vec![0xFF, 0])],
        );
        assert_eq!(out, b"\x02-1\xFB\x02\xFF\x00");
        assert_eq!(text_value(&Value::Double(1.5)), b"1.5");
    }

    #[test]
    fn binary_rows_follow_column_types() {
        let cols: Vec<Column> = [
            FieldType::LongLong,
            FieldType::Null,
            FieldType::Long,
            FieldType::Tiny,
            FieldType::Double,
            FieldType::NewDecimal,
            FieldType::DateTime,
            FieldType::Date,
            FieldType::VarString,
        ]
        .map(col)
        .to_vec();
        let dt = DateTime {
            date: Date {
                year: 2024,
                month: 2,
                day: 9,
            },
            hour: 1,
            minute: 2,
            second: 3,
            micros: 4,
        };
        let row = [
            Value::Int(-2),
            Value::Null,
            Value::UInt(7),
            Value::Bytes(b"5".to_vec()),
            Value::Double(0.5),
            Value::Decimal(Decimal {
                mantissa: 125,
                scale: 2,
            }),
            Value::DateTime(dt),
            Value::Bytes(b"2024-02-09".to_vec()),
            Value::Null,
        ];
        let mut out = Vec::new();
        binary_row(&mut out, &cols, &row);
        let mut want = vec![0u8, 0b0000_1000, 0b0000_0100];
        want.extend_from_slice(&(-2i64).to_le_bytes());
        want.extend_from_slice(&7u32.to_le_bytes());
        want.push(5);
        want.extend_from_slice(&0.5f64.to_le_bytes());
        want.extend_from_slice(b"\x041.25");
        want.extend_from_slice(&[11, 0xE8, 0x07, 2, 9, 1, 2, 3, 4, 0, 0, 0]);
        want.extend_from_slice(&[4, 0xE8, 0x07, 2, 9]);
        assert_eq!(out, want);
    }

    #[test]
    fn time_and_zero_dates() {
        let mut out = Vec::new();
        binary_value(
            &mut out,
            FieldType::Time,
            &Value::Bytes(b"-25:01:02".to_vec()),
        );
        assert_eq!(out, [8, 1, 1, 0, 0, 0, 1, 1, 2]);
        out.clear();
        binary_value(&mut out, FieldType::Date, &Value::Bytes(b"junk".to_vec()));
        assert_eq!(out, [0]);
    }
}
