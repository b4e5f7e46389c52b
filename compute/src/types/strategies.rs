//! Proptest strategies for column types and their values, shared by the
//! tests of `types`, `key` and `row`. Values are drawn from small pools
//! (so that equal and nearly equal values meet often) plus whole ranges,
//! and every non-NULL value is in its column's stored form (`coerce`d).

use proptest::prelude::*;

use super::coerce::int_range;
use super::num::{MAX_PRECISION, pow10};
use super::{Collation, ColumnType, Date, DateTime, Decimal, IntWidth, Value};

/// Characters that meet every corner of the collations: case, Latin-1
/// accents, `ß`, spaces and the characters below them, NUL, and
/// characters above U+FFFF.
const CHARS: &[char] = &[
    'a', 'A', 'b', 'B', 'z', 'á', 'Á', 'é', 'E', 'e', 'ß', 's', 'S', 'ÿ', 'Y', 'Æ', ' ', ' ', '\0',
    '\t', '!', '~', '\u{7f}', '€', '😀', '𝔸',
];

pub(crate) fn arb_collation() -> impl Strategy<Value = Collation> {
    prop_oneof![
        Just(Collation::Utf8mb4GeneralCi),
        Just(Collation::Utf8mb4Bin),
        Just(Collation::Binary),
    ]
}

fn arb_width() -> impl Strategy<Value = IntWidth> {
    prop_oneof![
        Just(IntWidth::Tiny),
        Just(IntWidth::Small),
        Just(IntWidth::Medium),
        Just(IntWidth::Int),
        Just(IntWidth::Big),
    ]
}

/// Every kind of column, with small length limits.
pub(crate) fn arb_column_type() -> BoxedStrategy<ColumnType> {
    prop_oneof![
        (arb_width(), any::<bool>())
            .prop_map(|(width, unsigned)| ColumnType::Int { width, unsigned }),
        Just(ColumnType::Boolean),
        Just(ColumnType::Double),
        (1u8..=38)
            .prop_flat_map(|p| (Just(p), 0..=p.min(10)))
            .prop_map(|(precision, scale)| ColumnType::Decimal { precision, scale }),
        (1u32..=6, arb_collation()).prop_map(|(max_chars, collation)| ColumnType::Char {
            max_chars,
            collation
        }),
        (0u32..=6, arb_collation()).prop_map(|(max_chars, collation)| ColumnType::VarChar {
            max_chars,
            collation
        }),
        (prop_oneof![Just(8u32), Just(255)], arb_collation()).prop_map(|(max_bytes, collation)| {
            ColumnType::Text {
                max_bytes,
                collation,
            }
        }),
        Just(ColumnType::Blob { max_bytes: 255 }),
        Just(ColumnType::Date),
        Just(ColumnType::DateTime),
        Just(ColumnType::Timestamp),
    ]
    .boxed()
}

/// Strings from [`CHARS`], up to 6 characters.
pub(crate) fn arb_string() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(CHARS), 0..=6)
        .prop_map(|cs| cs.into_iter().collect())
}

/// A value of a column of type `ty` (NULL one time in ten).
pub(crate) fn arb_value(ty: &ColumnType) -> BoxedStrategy<Value> {
    let ty_for_filter = ty.clone();
    let non_null = arb_raw_value(ty).prop_filter_map("does not fit the column", move |v| {
        ty_for_filter.coerce(v).ok()
    });
    prop_oneof![1 => Just(Value::Null), 9 => non_null].boxed()
}

/// A value meant for `ty`, not yet coerced (a few do not fit).
fn arb_raw_value(ty: &ColumnType) -> BoxedStrategy<Value> {
    match ty {
        ColumnType::Int { width, unsigned } => arb_int(*width, *unsigned),
        ColumnType::Boolean => arb_int(IntWidth::Tiny, false),
        ColumnType::Double => prop_oneof![
            (-3i32..=3).prop_map(|i| Value::Double(f64::from(i))),
            Just(Value::Double(-0.0)),
            any::<f64>().prop_map(Value::Double),
        ]
        .boxed(),
        ColumnType::Decimal { precision, scale } => arb_decimal(*precision, *scale),
        ColumnType::Char { .. } | ColumnType::VarChar { .. } | ColumnType::Text { .. } => {
            arb_string()
                .prop_map(|s| Value::Bytes(s.into_bytes()))
                .boxed()
        }
        ColumnType::Blob { .. } => prop::collection::vec(
            prop::sample::select(&[0u8, 1, b' ', b'A', b'a', 0xff][..]),
            0..6,
        )
        .prop_map(Value::Bytes)
        .boxed(),
        ColumnType::Date => arb_date(1000..=9999).prop_map(Value::Date).boxed(),
        ColumnType::DateTime => arb_datetime(1000..=9999),
        ColumnType::Timestamp => arb_datetime(1969..=2039),
    }
}

fn int_value(n: i128, unsigned: bool) -> Value {
    if unsigned {
        Value::UInt(u64::try_from(n).unwrap_or(0))
    } else {
        Value::Int(i64::try_from(n).unwrap_or(0))
    }
}

fn arb_int(width: IntWidth, unsigned: bool) -> BoxedStrategy<Value> {
    let (min, max) = int_range(width, unsigned);
    prop_oneof![
        (-3i128..=3).prop_map(move |n| n.clamp(min, max)),
        min..=max,
        prop_oneof![Just(min), Just(max)],
    ]
    .prop_map(move |n| int_value(n, unsigned))
    .boxed()
}

fn arb_decimal(precision: u8, scale: u8) -> BoxedStrategy<Value> {
    let p = u32::from(precision).min(MAX_PRECISION);
    let max = i128::try_from(pow10(p).expect("10^38 fits") - 1).expect("10^38 fits an i128");
    prop_oneof![
        -300i128..=300,
        -max..=max,
        prop_oneof![Just(-max), Just(max)]
    ]
    .prop_map(move |mantissa| Value::Decimal(Decimal { mantissa, scale }))
    .boxed()
}

fn arb_date(years: std::ops::RangeInclusive<u16>) -> impl Strategy<Value = Date> {
    let pool_year =
        prop::sample::select(vec![*years.start(), 1970, 2000, 2024, 2038, *years.end()]);
    (prop_oneof![pool_year, years], 1u8..=12, 1u8..=31).prop_map(|(year, month, day)| Date {
        year,
        month,
        day,
    })
}

fn arb_datetime(years: std::ops::RangeInclusive<u16>) -> BoxedStrategy<Value> {
    let clock = prop_oneof![Just(0u8), Just(59), 0u8..60];
    let micros = prop_oneof![Just(0u32), Just(1), Just(999_999), 0u32..1_000_000];
    (arb_date(years), 0u8..24, clock.clone(), clock, micros)
        .prop_map(|(date, hour, minute, second, micros)| {
            Value::DateTime(DateTime {
                date,
                hour,
                minute,
                second,
                micros,
            })
        })
        .boxed()
}

/// A schema of up to 10 columns and a row of values for it.
pub(crate) fn arb_row() -> BoxedStrategy<(Vec<ColumnType>, Vec<Value>)> {
    prop::collection::vec(arb_column_type(), 0..10)
        .prop_flat_map(|types| {
            let values: Vec<BoxedStrategy<Value>> = types.iter().map(arb_value).collect();
            (Just(types), values)
        })
        .boxed()
}
