//! Column types, values, the checks a value must pass to be stored
//! ([`ColumnType::coerce`]) and the order of values within a column
//! ([`compare`]).
//!
//! Invariants: `coerce` is MySQL's strict `sql_mode` conversion and never
//! panics; a value it returns is in the column's stored form (signed ints
//! as `Value::Int`, unsigned as `Value::UInt`, decimals at the column's
//! scale, strings valid UTF-8 within their limits, dates valid calendar
//! dates). `compare` is a total order on such values, NULL first, strings
//! under the column's collation; [`crate::key`] encodes exactly this order.
//! This module depends on nothing else in the crate.

use std::cmp::Ordering;

pub(crate) mod coerce;
pub(crate) mod collation;
mod display;
pub(crate) mod num;
pub(crate) mod temporal;

#[cfg(test)]
pub(crate) mod strategies;

/// A string column's collation (MySQL/MariaDB ids).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Collation {
    /// id 45: case-insensitive, PAD SPACE; the default.
    #[default]
    Utf8mb4GeneralCi,
    /// id 46: code-point order, PAD SPACE.
    Utf8mb4Bin,
    /// id 63: raw bytes (BLOB, BINARY).
    Binary,
}

impl Collation {
    pub fn id(self) -> u16 {
        match self {
            Collation::Utf8mb4GeneralCi => 45,
            Collation::Utf8mb4Bin => 46,
            Collation::Binary => 63,
        }
    }

    pub fn from_id(id: u16) -> Option<Collation> {
        match id {
            45 => Some(Collation::Utf8mb4GeneralCi),
            46 => Some(Collation::Utf8mb4Bin),
            63 => Some(Collation::Binary),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Collation::Utf8mb4GeneralCi => "utf8mb4_general_ci",
            Collation::Utf8mb4Bin => "utf8mb4_bin",
            Collation::Binary => "binary",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntWidth {
    Tiny,
    Small,
    Medium,
    Int,
    Big,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Int {
        width: IntWidth,
        unsigned: bool,
    },
    Double,
    /// DECIMAL(p, s), p <= 38.
    Decimal {
        precision: u8,
        scale: u8,
    },
    Char {
        max_chars: u32,
        collation: Collation,
    },
    VarChar {
        max_chars: u32,
        collation: Collation,
    },
    /// TEXT family; `max_bytes` is 255, 65535, 16 MiB - 1 or 4 GiB - 1.
    Text {
        max_bytes: u32,
        collation: Collation,
    },
    Blob {
        max_bytes: u32,
    },
    Date,
    DateTime,
    Timestamp,
    /// TINYINT(1): stored as `Value::Int(0 | 1)`.
    Boolean,
}

/// An exact decimal: `mantissa * 10^-scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decimal {
    pub mantissa: i128,
    pub scale: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micros: u32,
}

/// A value as the engine stores it. Strings are UTF-8 bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    UInt(u64),
    Double(f64),
    Decimal(Decimal),
    Bytes(Vec<u8>),
    Date(Date),
    /// DATETIME and TIMESTAMP.
    DateTime(DateTime),
}

/// Why a value cannot be stored in a column (strict sql_mode).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// MySQL 1264.
    #[error("Out of range value")]
    OutOfRange,
    /// MySQL 1406.
    #[error("Data too long")]
    TooLong,
    /// MySQL 1366 (and 1292 for dates).
    /// The message names the value (`Incorrect integer value: 'x'`).
    #[error("{0}")]
    BadValue(String),
}

impl ColumnType {
    /// `v` converted to this column's stored form, or why it cannot be.
    ///
    /// NULL stays NULL (NOT NULL is checked by the caller). Numbers round
    /// half away from zero; strings are parsed as MySQL does in strict
    /// mode; CHAR drops trailing spaces, VARCHAR and TEXT drop trailing
    /// spaces beyond the limit (as MySQL does, with a note) and refuse
    /// anything else beyond it.
    pub fn coerce(&self, v: Value) -> Result<Value, ValueError> {
        if matches!(v, Value::Null) {
            return Ok(Value::Null);
        }
        match self {
            ColumnType::Int { width, unsigned } => coerce::to_int(*width, *unsigned, &v),
            ColumnType::Boolean => coerce::to_int(IntWidth::Tiny, false, &v),
            ColumnType::Double => coerce::to_double(&v),
            ColumnType::Decimal { precision, scale } => coerce::to_decimal(*precision, *scale, &v),
            ColumnType::Char { max_chars, .. } => coerce::to_chars(v, *max_chars, true),
            ColumnType::VarChar { max_chars, .. } => coerce::to_chars(v, *max_chars, false),
            ColumnType::Text { max_bytes, .. } => coerce::to_bytes(v, *max_bytes, true),
            ColumnType::Blob { max_bytes } => coerce::to_bytes(v, *max_bytes, false),
            ColumnType::Date => coerce::to_date(&v),
            ColumnType::DateTime => coerce::to_datetime(&v, false),
            ColumnType::Timestamp => coerce::to_datetime(&v, true),
        }
    }

    pub fn collation(&self) -> Collation {
        match self {
            ColumnType::Char { collation, .. }
            | ColumnType::VarChar { collation, .. }
            | ColumnType::Text { collation, .. } => *collation,
            _ => Collation::Binary,
        }
    }
}

/// Value order in a column of type `ty` (NULL first), under its collation.
///
/// Values whose variant does not fit the column (never produced by
/// `coerce`) still get a total order: by variant, then by value.
pub fn compare(ty: &ColumnType, a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => return Ordering::Equal,
        (Value::Null, _) => return Ordering::Less,
        (_, Value::Null) => return Ordering::Greater,
        _ => {}
    }
    compare_typed(ty, a, b).unwrap_or_else(|| natural_cmp(a, b))
}

/// The column order of two non-NULL values, or `None` when a variant does
/// not belong to the column.
fn compare_typed(ty: &ColumnType, a: &Value, b: &Value) -> Option<Ordering> {
    match ty {
        ColumnType::Int { .. } | ColumnType::Boolean => Some(int_of(a)?.cmp(&int_of(b)?)),
        ColumnType::Double => match (a, b) {
            (Value::Double(x), Value::Double(y)) => Some(cmp_f64(*x, *y)),
            _ => None,
        },
        ColumnType::Decimal { .. } => match (a, b) {
            (Value::Decimal(x), Value::Decimal(y)) => Some(num::cmp_decimal(*x, *y)),
            _ => None,
        },
        ColumnType::Char { collation, .. }
        | ColumnType::VarChar { collation, .. }
        | ColumnType::Text { collation, .. } => match (a, b) {
            (Value::Bytes(x), Value::Bytes(y)) => Some(collation::compare(*collation, x, y)),
            _ => None,
        },
        ColumnType::Blob { .. } => match (a, b) {
            (Value::Bytes(x), Value::Bytes(y)) => Some(x.cmp(y)),
            _ => None,
        },
        ColumnType::Date | ColumnType::DateTime | ColumnType::Timestamp => {
            Some(datetime_of(a)?.cmp(&datetime_of(b)?))
        }
    }
}

/// An integer value widened so that signed and unsigned compare.
pub(crate) fn int_of(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        _ => None,
    }
}

/// A date or datetime as a datetime (a date is its midnight).
pub(crate) fn datetime_of(v: &Value) -> Option<DateTime> {
    match v {
        Value::Date(d) => Some(DateTime::midnight(*d)),
        Value::DateTime(dt) => Some(*dt),
        _ => None,
    }
}

/// `f` with -0.0 made 0.0 and every NaN the one quiet NaN, so that
/// `total_cmp` (and the key's bit pattern) treats equal numbers as equal.
pub(crate) fn normalize_f64(f: f64) -> f64 {
    if f == 0.0 {
        0.0
    } else if f.is_nan() {
        f64::NAN
    } else {
        f
    }
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    normalize_f64(a).total_cmp(&normalize_f64(b))
}

/// The order of values of any variants: by variant, then by value.
fn natural_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(_) | Value::UInt(_), Value::Int(_) | Value::UInt(_)) => {
            int_of(a).cmp(&int_of(b))
        }
        (Value::Double(x), Value::Double(y)) => cmp_f64(*x, *y),
        (Value::Decimal(x), Value::Decimal(y)) => num::cmp_decimal(*x, *y),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (Value::Date(x), Value::Date(y)) => x.cmp(y),
        (Value::DateTime(x), Value::DateTime(y)) => x.cmp(y),
        _ => variant_rank(a).cmp(&variant_rank(b)),
    }
}

fn variant_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Int(_) | Value::UInt(_) => 1,
        Value::Double(_) => 2,
        Value::Decimal(_) => 3,
        Value::Bytes(_) => 4,
        Value::Date(_) => 5,
        Value::DateTime(_) => 6,
    }
}

impl DateTime {
    /// The first instant of `date`.
    pub fn midnight(date: Date) -> DateTime {
        DateTime {
            date,
            hour: 0,
            minute: 0,
            second: 0,
            micros: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::strategies::{arb_column_type, arb_value};
    use super::*;

    fn int(width: IntWidth, unsigned: bool) -> ColumnType {
        ColumnType::Int { width, unsigned }
    }

    fn s(text: &str) -> Value {
        Value::Bytes(text.as_bytes().to_vec())
    }

    fn dec(mantissa: i128, scale: u8) -> Value {
        Value::Decimal(Decimal { mantissa, scale })
    }

    fn date(year: u16, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    fn is_bad(r: Result<Value, ValueError>) -> bool {
        matches!(r, Err(ValueError::BadValue(_)))
    }

    #[test]
    fn integers_check_their_width_and_sign() {
        let tiny = int(IntWidth::Tiny, false);
        assert_eq!(tiny.coerce(Value::Int(127)), Ok(Value::Int(127)));
        assert_eq!(tiny.coerce(Value::Int(128)), Err(ValueError::OutOfRange));
        assert_eq!(tiny.coerce(Value::Int(-128)), Ok(Value::Int(-128)));
        assert_eq!(tiny.coerce(Value::Int(-129)), Err(ValueError::OutOfRange));
        let utiny = int(IntWidth::Tiny, true);
        assert_eq!(utiny.coerce(Value::Int(255)), Ok(Value::UInt(255)));
        assert_eq!(utiny.coerce(Value::Int(-1)), Err(ValueError::OutOfRange));
        let medium = int(IntWidth::Medium, false);
        assert_eq!(
            medium.coerce(Value::Int(8_388_607)),
            Ok(Value::Int(8_388_607))
        );
        assert_eq!(
            medium.coerce(Value::Int(8_388_608)),
            Err(ValueError::OutOfRange)
        );
        let ubig = int(IntWidth::Big, true);
        assert_eq!(
            ubig.coerce(s("18446744073709551615")),
            Ok(Value::UInt(u64::MAX))
        );
        assert_eq!(
            ubig.coerce(s("18446744073709551616")),
            Err(ValueError::OutOfRange)
        );
        let big = int(IntWidth::Big, false);
        assert_eq!(
            big.coerce(Value::UInt(u64::MAX)),
            Err(ValueError::OutOfRange)
        );
        assert_eq!(big.coerce(s("1e40")), Err(ValueError::OutOfRange));
        assert_eq!(ColumnType::Boolean.coerce(Value::Int(1)), Ok(Value::Int(1)));
        assert_eq!(
            ColumnType::Boolean.coerce(Value::Int(300)),
            Err(ValueError::OutOfRange)
        );
    }

    #[test]
    fn integers_from_numbers_and_strings_round_half_away() {
        let i = int(IntWidth::Int, false);
        assert_eq!(i.coerce(Value::Double(2.5)), Ok(Value::Int(3)));
        assert_eq!(i.coerce(Value::Double(-2.5)), Ok(Value::Int(-3)));
        assert_eq!(i.coerce(Value::Double(2.49)), Ok(Value::Int(2)));
        assert_eq!(i.coerce(dec(-15, 1)), Ok(Value::Int(-2)));
        assert_eq!(i.coerce(s("12")), Ok(Value::Int(12)));
        assert_eq!(i.coerce(s(" 12 ")), Ok(Value::Int(12)));
        assert_eq!(i.coerce(s("1.5")), Ok(Value::Int(2)));
        assert_eq!(i.coerce(s("-1e3")), Ok(Value::Int(-1000)));
        assert!(is_bad(i.coerce(s("12abc"))));
        assert!(is_bad(i.coerce(s(""))));
        assert!(is_bad(i.coerce(Value::Double(f64::NAN))));
        assert_eq!(i.coerce(Value::Null), Ok(Value::Null));
        assert_eq!(
            i.coerce(Value::Date(date(2024, 2, 29))),
            Ok(Value::Int(20_240_229))
        );
    }

    #[test]
    fn doubles() {
        let d = ColumnType::Double;
        assert_eq!(d.coerce(Value::Int(3)), Ok(Value::Double(3.0)));
        assert_eq!(d.coerce(s(" 1.5e2 ")), Ok(Value::Double(150.0)));
        assert_eq!(d.coerce(dec(1005, 3)), Ok(Value::Double(1.005)));
        assert_eq!(d.coerce(s("1e400")), Err(ValueError::OutOfRange));
        assert!(is_bad(d.coerce(s("abc"))));
        assert!(is_bad(d.coerce(s("inf"))));
        assert!(is_bad(d.coerce(Value::Double(f64::INFINITY))));
        assert!(is_bad(d.coerce(Value::Double(f64::NAN))));
    }

    #[test]
    fn decimals_rescale_and_check_precision() {
        let d52 = ColumnType::Decimal {
            precision: 5,
            scale: 2,
        };
        assert_eq!(d52.coerce(s("999.99")), Ok(dec(99999, 2)));
        assert_eq!(d52.coerce(s("999.995")), Err(ValueError::OutOfRange));
        assert_eq!(d52.coerce(s("1.005")), Ok(dec(101, 2)));
        assert_eq!(d52.coerce(Value::Double(1.005)), Ok(dec(101, 2)));
        assert_eq!(d52.coerce(s("-12.345")), Ok(dec(-1235, 2)));
        assert_eq!(d52.coerce(s("1e3")), Err(ValueError::OutOfRange));
        assert_eq!(d52.coerce(s("1e2")), Ok(dec(10000, 2)));
        assert_eq!(d52.coerce(Value::Int(-999)), Ok(dec(-99900, 2)));
        assert_eq!(d52.coerce(dec(12, 0)), Ok(dec(1200, 2)));
        assert!(is_bad(d52.coerce(s("1.2.3"))));
        let d38 = ColumnType::Decimal {
            precision: 38,
            scale: 0,
        };
        let max = "9".repeat(38);
        assert_eq!(d38.coerce(s(&max)), Ok(dec(10i128.pow(38) - 1, 0)));
        assert_eq!(
            d38.coerce(s(&format!("1{max}"))),
            Err(ValueError::OutOfRange)
        );
        assert_eq!(
            d38.coerce(s(&format!("-{max}"))),
            Ok(dec(1 - 10i128.pow(38), 0))
        );
    }

    #[test]
    fn strings_check_their_length() {
        let vc3 = ColumnType::VarChar {
            max_chars: 3,
            collation: Collation::default(),
        };
        assert_eq!(vc3.coerce(s("abcd")), Err(ValueError::TooLong));
        assert_eq!(vc3.coerce(s("äöü")), Ok(s("äöü")));
        assert_eq!(vc3.coerce(s("ab ")), Ok(s("ab ")));
        assert_eq!(vc3.coerce(s("abc   ")), Ok(s("abc")));
        assert_eq!(vc3.coerce(Value::Int(-12)), Ok(s("-12")));
        assert_eq!(vc3.coerce(Value::Int(1234)), Err(ValueError::TooLong));
        assert!(is_bad(vc3.coerce(Value::Bytes(vec![0xC3]))));
        let c3 = ColumnType::Char {
            max_chars: 3,
            collation: Collation::Utf8mb4Bin,
        };
        assert_eq!(c3.coerce(s("ab  ")), Ok(s("ab")));
        assert_eq!(c3.coerce(s("abcd")), Err(ValueError::TooLong));
        let text = ColumnType::Text {
            max_bytes: 4,
            collation: Collation::default(),
        };
        assert_eq!(text.coerce(s("äöü")), Err(ValueError::TooLong));
        assert_eq!(text.coerce(s("äö")), Ok(s("äö")));
        assert_eq!(text.coerce(s("abcd  ")), Ok(s("abcd")));
        assert!(is_bad(text.coerce(Value::Bytes(vec![0xFF]))));
        let blob = ColumnType::Blob { max_bytes: 2 };
        assert_eq!(
            blob.coerce(Value::Bytes(vec![0xFF, 0])),
            Ok(Value::Bytes(vec![0xFF, 0]))
        );
        assert_eq!(blob.coerce(s("ab ")), Err(ValueError::TooLong));
        let wide = ColumnType::VarChar {
            max_chars: 30,
            collation: Collation::default(),
        };
        assert_eq!(wide.coerce(dec(-5, 2)), Ok(s("-0.05")));
        assert_eq!(wide.coerce(Value::Double(1e20)), Ok(s("1e20")));
        assert_eq!(
            wide.coerce(Value::Date(date(2024, 1, 2))),
            Ok(s("2024-01-02"))
        );
    }

    #[test]
    fn dates_are_real_calendar_dates() {
        let d = ColumnType::Date;
        assert!(is_bad(d.coerce(s("2023-02-29"))));
        assert_eq!(
            d.coerce(s("2024-02-29")),
            Ok(Value::Date(date(2024, 2, 29)))
        );
        assert!(is_bad(d.coerce(s("0000-00-00"))));
        assert!(is_bad(d.coerce(s("0999-12-31"))));
        assert!(is_bad(d.coerce(s("2024-13-01"))));
        assert!(is_bad(d.coerce(s("yesterday"))));
        assert!(is_bad(d.coerce(Value::Int(20240101))));
        assert!(is_bad(d.coerce(Value::Date(date(2024, 4, 31)))));
        assert_eq!(
            d.coerce(s("2024-01-02 10:11:12")),
            Ok(Value::Date(date(2024, 1, 2)))
        );
        let dt = ColumnType::DateTime;
        let midnight = DateTime::midnight(date(2024, 1, 2));
        assert_eq!(
            dt.coerce(Value::Date(date(2024, 1, 2))),
            Ok(Value::DateTime(midnight))
        );
        assert_eq!(
            d.coerce(Value::DateTime(midnight)),
            Ok(Value::Date(date(2024, 1, 2)))
        );
        let parsed = dt.coerce(s("9999-12-31 23:59:59.999999"));
        assert_eq!(
            parsed.map(|v| v.to_string()),
            Ok("9999-12-31 23:59:59.999999".into())
        );
        assert!(is_bad(dt.coerce(s("2024-01-01 24:00:00"))));
        assert!(is_bad(dt.coerce(s("2024-01-01 23:60:00"))));
    }

    #[test]
    fn timestamps_hold_1970_to_2038() {
        let ts = ColumnType::Timestamp;
        assert!(ts.coerce(s("1970-01-01 00:00:01")).is_ok());
        assert!(is_bad(ts.coerce(s("1970-01-01 00:00:00"))));
        assert!(ts.coerce(s("2038-01-19 03:14:07")).is_ok());
        assert!(ts.coerce(s("2038-01-19 03:14:07.999999")).is_ok());
        assert!(is_bad(ts.coerce(s("2038-01-19 03:14:08"))));
        assert!(is_bad(ts.coerce(s("1969-12-31"))));
    }

    #[test]
    fn compare_orders_within_the_column() {
        let ci = ColumnType::VarChar {
            max_chars: 10,
            collation: Collation::Utf8mb4GeneralCi,
        };
        assert_eq!(compare(&ci, &s("a"), &s("A")), Ordering::Equal);
        assert_eq!(compare(&ci, &s("é"), &s("E")), Ordering::Equal);
        assert_eq!(compare(&ci, &s("abc "), &s("abc")), Ordering::Equal);
        assert_eq!(compare(&ci, &Value::Null, &s("")), Ordering::Less);
        let d = ColumnType::Double;
        assert_eq!(
            compare(&d, &Value::Double(-0.0), &Value::Double(0.0)),
            Ordering::Equal
        );
        assert_eq!(
            compare(&d, &Value::Double(-1.0), &Value::Double(0.5)),
            Ordering::Less
        );
        let dc = ColumnType::Decimal {
            precision: 10,
            scale: 2,
        };
        assert_eq!(compare(&dc, &dec(150, 2), &dec(15, 1)), Ordering::Equal);
        assert_eq!(compare(&dc, &dec(-150, 2), &dec(-14, 1)), Ordering::Less);
        let u = int(IntWidth::Big, true);
        assert_eq!(
            compare(&u, &Value::UInt(u64::MAX), &Value::Int(-1)),
            Ordering::Greater
        );
        let dt = ColumnType::DateTime;
        let day = date(2024, 1, 2);
        let later = DateTime {
            micros: 1,
            ..DateTime::midnight(day)
        };
        assert_eq!(
            compare(&dt, &Value::Date(day), &Value::DateTime(later)),
            Ordering::Less
        );
        assert_eq!(compare(&dt, &Value::Null, &Value::Null), Ordering::Equal);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn coerce_is_idempotent((ty, v) in arb_column_type().prop_flat_map(|ty| {
            let v = arb_value(&ty);
            (Just(ty), v)
        })) {
            prop_assert_eq!(ty.coerce(v.clone()), Ok(v));
        }

        #[test]
        fn stored_values_survive_their_text_form((ty, v) in arb_column_type().prop_flat_map(|ty| {
            let v = arb_value(&ty);
            (Just(ty), v)
        })) {
            // What a client reads back (the text) is the value it wrote.
            // (Blobs are not text, and NULL has no text form.)
            if matches!(v, Value::Null) || matches!(ty, ColumnType::Blob { .. }) {
                return Ok(());
            }
            let back = ty.coerce(Value::Bytes(v.to_string().into_bytes()));
            prop_assert_eq!(back.map(|b| compare(&ty, &b, &v)), Ok(Ordering::Equal), "{}", v);
        }

        #[test]
        fn compare_is_antisymmetric_and_transitive(
            (ty, a, b, c) in arb_column_type().prop_flat_map(|ty| {
                let (a, b, c) = (arb_value(&ty), arb_value(&ty), arb_value(&ty));
                (Just(ty), a, b, c)
            })
        ) {
            prop_assert_eq!(compare(&ty, &a, &b), compare(&ty, &b, &a).reverse());
            prop_assert_eq!(compare(&ty, &a, &a), Ordering::Equal);
            if compare(&ty, &a, &b).is_le() && compare(&ty, &b, &c).is_le() {
                prop_assert!(compare(&ty, &a, &c).is_le());
            }
        }
    }
}
