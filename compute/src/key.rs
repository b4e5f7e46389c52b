//! Memcomparable keys: a value's bytes compare (as byte strings) exactly as
//! [`crate::types::compare`] orders the values in their column, and equal
//! bytes mean equal under the column's collation.
//!
//! Every part is self-delimiting, so a concatenation of parts orders as
//! the tuple of values (first part first). The layout of one part:
//!
//! - `0x00` for NULL (which sorts first), else `0x01` and then:
//! - integers: the column's width in bytes, big-endian, the sign bit
//!   flipped for signed columns;
//! - DOUBLE: 8 bytes, the IEEE bits with the sign bit flipped for positive
//!   numbers and all bits flipped for negative ones (-0.0 is 0.0);
//! - DECIMAL(p, s): the mantissa at scale `s`, sign bit flipped, 8 bytes
//!   for p <= 18 and 16 beyond;
//! - DATE: year (2 bytes), month, day; DATETIME/TIMESTAMP: the date, hour,
//!   minute, second, then microseconds (4 bytes), all big-endian;
//! - PAD SPACE strings (`utf8mb4_general_ci`: one 2-byte weight per
//!   character; `utf8mb4_bin`: the UTF-8 bytes): the units, trailing spaces
//!   dropped, in groups of [`GROUP_UNITS`], the last group padded with
//!   spaces; after each group a marker: [`END`] after the last one, else
//!   [`BELOW_PAD`] or [`ABOVE_PAD`] as the rest of the string sorts below or
//!   above spaces. This encodes PAD SPACE exactly (`'a\t' < 'a' = 'a '`);
//! - binary strings: the bytes with `0x00` written `0x00 0xFF`, then
//!   `0x00 0x00`.
//!
//! Keys are not decodable; the B+tree stores the row beside its key.

use crate::types::coerce::int_range;
use crate::types::collation::{self, SPACE};
use crate::types::num::rescale_exact;
use crate::types::{
    Collation, ColumnType, Date, DateTime, IntWidth, Value, ValueError, datetime_of, int_of,
    normalize_f64,
};

/// Weight units per group of a PAD SPACE string.
pub const GROUP_UNITS: usize = 8;
/// Marker after a group: more follows, and it sorts below the pad space.
pub const BELOW_PAD: u8 = 1;
/// Marker after the last group.
pub const END: u8 = 2;
/// Marker after a group: more follows, and it sorts above the pad space.
pub const ABOVE_PAD: u8 = 3;

/// Appends `v` (a value of a column of type `ty`, already coerced) to a key.
///
/// A value that does not belong to the column (a wrong variant, an integer
/// beyond the column's width, a decimal with more fractional digits than the
/// column's scale) is `BadValue` or `OutOfRange`, and `out` is left as it was.
pub fn encode_key_part(out: &mut Vec<u8>, ty: &ColumnType, v: &Value) -> Result<(), ValueError> {
    let start = out.len();
    let result = encode_non_null(out, ty, v);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// The length of the key part of a `ty` column at the start of `key`, or
/// `None` if `key` does not start with a whole one. Parts are
/// self-delimiting, so this splits a key into its columns without decoding
/// them: equal part bytes are equal values (under the column's collation).
pub fn part_len(ty: &ColumnType, key: &[u8]) -> Option<usize> {
    let (&flag, rest) = key.split_first()?;
    let body = match flag {
        0 => return Some(1),
        1 => match ty {
            ColumnType::Int { width, .. } => int_width_bytes(*width),
            ColumnType::Boolean => int_width_bytes(IntWidth::Tiny),
            ColumnType::Double => 8,
            ColumnType::Decimal { precision, .. } => match *precision <= 18 {
                true => 8,
                false => 16,
            },
            ColumnType::Date => 4,
            ColumnType::DateTime | ColumnType::Timestamp => 11,
            ColumnType::Char { collation, .. }
            | ColumnType::VarChar { collation, .. }
            | ColumnType::Text { collation, .. } => string_part_len(*collation, rest)?,
            ColumnType::Blob { .. } => string_part_len(Collation::Binary, rest)?,
        },
        _ => return None,
    };
    (body <= rest.len()).then_some(1 + body)
}

/// The length of an encoded string (after the NULL flag).
fn string_part_len(collation: Collation, bytes: &[u8]) -> Option<usize> {
    let unit = match collation {
        Collation::Utf8mb4GeneralCi => 2,
        Collation::Utf8mb4Bin => 1,
        Collation::Binary => {
            // Up to the first 0x00 not followed by 0xFF (then 0x00).
            let mut i = 0;
            loop {
                match (bytes.get(i)?, bytes.get(i + 1)) {
                    (0, Some(0)) => return Some(i + 2),
                    (0, Some(0xFF)) => i += 2,
                    (0, _) => return None,
                    _ => i += 1,
                }
            }
        }
    };
    let group = GROUP_UNITS * unit + 1;
    let mut len = 0;
    loop {
        len += group;
        match *bytes.get(len - 1)? {
            END => return Some(len),
            BELOW_PAD | ABOVE_PAD => {}
            _ => return None,
        }
    }
}

fn encode_non_null(out: &mut Vec<u8>, ty: &ColumnType, v: &Value) -> Result<(), ValueError> {
    if matches!(v, Value::Null) {
        out.push(0);
        return Ok(());
    }
    out.push(1);
    match (ty, v) {
        (ColumnType::Int { width, unsigned }, _) => encode_int(out, *width, *unsigned, v),
        (ColumnType::Boolean, _) => encode_int(out, IntWidth::Tiny, false, v),
        (ColumnType::Double, Value::Double(f)) => {
            encode_double(out, *f);
            Ok(())
        }
        (ColumnType::Decimal { precision, scale }, Value::Decimal(d)) => {
            let mantissa = rescale_exact(*d, *scale).ok_or_else(|| mismatch(ty, v))?;
            encode_decimal(out, *precision, mantissa)
        }
        (
            ColumnType::Char { collation, .. }
            | ColumnType::VarChar { collation, .. }
            | ColumnType::Text { collation, .. },
            Value::Bytes(b),
        ) => {
            encode_string(out, *collation, b);
            Ok(())
        }
        (ColumnType::Blob { .. }, Value::Bytes(b)) => {
            encode_string(out, Collation::Binary, b);
            Ok(())
        }
        (ColumnType::Date, Value::Date(d)) => {
            encode_date(out, d);
            Ok(())
        }
        (ColumnType::DateTime | ColumnType::Timestamp, _) => {
            let dt = datetime_of(v).ok_or_else(|| mismatch(ty, v))?;
            encode_datetime(out, &dt);
            Ok(())
        }
        _ => Err(mismatch(ty, v)),
    }
}

fn mismatch(ty: &ColumnType, v: &Value) -> ValueError {
    ValueError::BadValue(format!("{v:?} is not a stored value of a {ty:?} column"))
}

/// A whole key: the parts in order.
pub fn encode_key(parts: &[(&ColumnType, &Value)]) -> Result<Vec<u8>, ValueError> {
    let mut out = Vec::new();
    for (ty, v) in parts {
        encode_key_part(&mut out, ty, v)?;
    }
    Ok(out)
}

fn encode_int(
    out: &mut Vec<u8>,
    width: IntWidth,
    unsigned: bool,
    v: &Value,
) -> Result<(), ValueError> {
    let n = int_of(v).ok_or_else(|| mismatch(&ColumnType::Int { width, unsigned }, v))?;
    let (min, max) = int_range(width, unsigned);
    if n < min || n > max {
        return Err(ValueError::OutOfRange);
    }
    // Offsetting by -min maps the column's range onto 0..=max-min, which
    // fits the width; its big-endian bytes order as the numbers.
    let biased = u64::try_from(n - min).map_err(|_| ValueError::OutOfRange)?;
    let bytes = biased.to_be_bytes();
    out.extend_from_slice(&bytes[8 - int_width_bytes(width)..]);
    Ok(())
}

fn int_width_bytes(width: IntWidth) -> usize {
    match width {
        IntWidth::Tiny => 1,
        IntWidth::Small => 2,
        IntWidth::Medium => 3,
        IntWidth::Int => 4,
        IntWidth::Big => 8,
    }
}

fn encode_double(out: &mut Vec<u8>, f: f64) {
    let bits = normalize_f64(f).to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    out.extend_from_slice(&ordered.to_be_bytes());
}

fn encode_decimal(out: &mut Vec<u8>, precision: u8, mantissa: i128) -> Result<(), ValueError> {
    if precision <= 18 {
        let m = i64::try_from(mantissa).map_err(|_| ValueError::OutOfRange)?;
        out.extend_from_slice(&((m as u64) ^ (1 << 63)).to_be_bytes());
    } else {
        out.extend_from_slice(&((mantissa as u128) ^ (1 << 127)).to_be_bytes());
    }
    Ok(())
}

fn encode_date(out: &mut Vec<u8>, d: &Date) {
    out.extend_from_slice(&d.year.to_be_bytes());
    out.extend_from_slice(&[d.month, d.day]);
}

fn encode_datetime(out: &mut Vec<u8>, dt: &DateTime) {
    encode_date(out, &dt.date);
    out.extend_from_slice(&[dt.hour, dt.minute, dt.second]);
    out.extend_from_slice(&dt.micros.to_be_bytes());
}

fn encode_string(out: &mut Vec<u8>, collation: Collation, bytes: &[u8]) {
    match collation {
        // ASCII (most keys) weighs its uppercase byte: no UTF-8 decoding,
        // no weights collected first.
        Collation::Utf8mb4GeneralCi if bytes.is_ascii() => {
            encode_padded(out, bytes, |b| u16::from(b.to_ascii_uppercase()))
        }
        Collation::Utf8mb4GeneralCi => {
            let weights = collation::general_ci_weight_vec(bytes);
            encode_padded(out, &weights, |w| w);
        }
        Collation::Utf8mb4Bin => encode_padded(out, bytes, |b| b),
        Collation::Binary => encode_escaped(out, bytes),
    }
}

/// One unit of a PAD SPACE string's weights: a byte or a 2-byte weight.
trait Unit: Copy + Into<u16> {
    const PAD: Self;
    const BYTES: usize;
    fn put(self, out: &mut Vec<u8>);
}

impl Unit for u8 {
    const PAD: u8 = b' ';
    const BYTES: usize = 1;
    fn put(self, out: &mut Vec<u8>) {
        out.push(self);
    }
}

impl Unit for u16 {
    const PAD: u16 = SPACE;
    const BYTES: usize = 2;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}

/// The grouped PAD SPACE encoding described in the module doc, of the
/// units `weigh` gives for `chars`.
fn encode_padded<C: Copy, U: Unit>(out: &mut Vec<u8>, chars: &[C], weigh: impl Fn(C) -> U) {
    let pad: u16 = U::PAD.into();
    let len = chars
        .iter()
        .rposition(|&c| weigh(c).into() != pad)
        .map_or(0, |i| i + 1);
    let chars = &chars[..len];
    let groups = len.div_ceil(GROUP_UNITS).max(1);
    out.reserve(groups * (GROUP_UNITS * U::BYTES + 1));
    if chars.is_empty() {
        // The empty string: one group of pad.
        (0..GROUP_UNITS).for_each(|_| U::PAD.put(out));
        out.push(END);
        return;
    }
    let mut done = 0;
    for group in chars.chunks(GROUP_UNITS) {
        group.iter().for_each(|&c| weigh(c).put(out));
        (group.len()..GROUP_UNITS).for_each(|_| U::PAD.put(out));
        done += group.len();
        out.push(if done == len {
            END
        } else {
            rest_marker(chars[done..].iter().map(|&c| weigh(c).into()), pad)
        });
    }
}

/// Whether a non-empty rest (which ends in a non-pad unit) sorts below or
/// above an endless run of pad: decided by its first non-pad unit.
fn rest_marker(mut rest: impl Iterator<Item = u16>, pad: u16) -> u8 {
    match rest.find(|&u| u != pad) {
        Some(u) if u < pad => BELOW_PAD,
        _ => ABOVE_PAD,
    }
}

/// Raw bytes, self-delimited: `0x00` escaped as `0x00 0xFF`, then
/// `0x00 0x00`.
fn encode_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use proptest::prelude::*;

    use super::*;
    use crate::types::compare;
    use crate::types::strategies::{arb_collation, arb_column_type, arb_string, arb_value};

    fn key(ty: &ColumnType, v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key_part(&mut out, ty, v).expect("a coerced value encodes");
        out
    }

    fn varchar(collation: Collation) -> ColumnType {
        ColumnType::VarChar {
            max_chars: 100,
            collation,
        }
    }

    fn s(text: &str) -> Value {
        Value::Bytes(text.as_bytes().to_vec())
    }

    /// A column type and two of its values.
    fn arb_pair() -> impl Strategy<Value = (ColumnType, Value, Value)> {
        arb_column_type().prop_flat_map(|ty| {
            let a = arb_value(&ty);
            let b = arb_value(&ty);
            (Just(ty), a, b)
        })
    }

    /// 2-3 column types and two tuples of their values.
    fn arb_tuples() -> impl Strategy<Value = (Vec<ColumnType>, Vec<Value>, Vec<Value>)> {
        prop::collection::vec(arb_column_type(), 2..=3).prop_flat_map(|types| {
            let a: Vec<_> = types.iter().map(arb_value).collect();
            let b: Vec<_> = types.iter().map(arb_value).collect();
            (Just(types), a, b)
        })
    }

    fn tuple_compare(types: &[ColumnType], a: &[Value], b: &[Value]) -> Ordering {
        types
            .iter()
            .zip(a.iter().zip(b))
            .map(|(ty, (x, y))| compare(ty, x, y))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }

    fn tuple_key(types: &[ColumnType], values: &[Value]) -> Vec<u8> {
        let parts: Vec<_> = types.iter().zip(values).collect();
        encode_key(&parts).expect("coerced values encode")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn part_len_splits_a_key_into_its_columns(
            (types, a, _) in arb_tuples(),
            tail in prop::collection::vec(any::<u8>(), 0..4),
        ) {
            let mut k = tuple_key(&types, &a);
            let whole = k.len();
            k.extend_from_slice(&tail);
            let mut at = 0;
            for (ty, v) in types.iter().zip(&a) {
                let n = part_len(ty, &k[at..]);
                prop_assert_eq!(n, Some(key(ty, v).len()), "{:?} {:?}", ty, v);
                at += n.unwrap();
            }
            prop_assert_eq!(at, whole);
            // A part cut short is not a whole part.
            let first = key(&types[0], &a[0]);
            prop_assert_eq!(part_len(&types[0], &first[..first.len() - 1]), None);
        }

        #[test]
        fn key_order_is_column_order((ty, a, b) in arb_pair()) {
            prop_assert_eq!(key(&ty, &a).cmp(&key(&ty, &b)), compare(&ty, &a, &b), "{:?}", ty);
        }

        #[test]
        fn string_key_order_is_collation_order(
            collation in arb_collation(),
            a in arb_string(),
            b in arb_string(),
            pad_a in 0usize..3,
        ) {
            let ty = varchar(collation);
            let a = Value::Bytes(format!("{a}{}", " ".repeat(pad_a)).into_bytes());
            let b = s(&b);
            prop_assert_eq!(key(&ty, &a).cmp(&key(&ty, &b)), compare(&ty, &a, &b));
            // Equal keys exactly when equal under the collation.
            prop_assert_eq!(key(&ty, &a) == key(&ty, &b), compare(&ty, &a, &b).is_eq());
        }

        #[test]
        fn tuple_key_order_is_tuple_order((types, a, b) in arb_tuples()) {
            prop_assert_eq!(
                tuple_key(&types, &a).cmp(&tuple_key(&types, &b)),
                tuple_compare(&types, &a, &b)
            );
        }

        #[test]
        fn long_strings_order_across_groups(
            collation in arb_collation(),
            prefix in "[aA ]{0,20}",
            a in arb_string(),
            b in arb_string(),
        ) {
            let ty = varchar(collation);
            let (a, b) = (s(&format!("{prefix}{a}")), s(&format!("{prefix}{b}")));
            prop_assert_eq!(key(&ty, &a).cmp(&key(&ty, &b)), compare(&ty, &a, &b));
        }
    }

    #[test]
    fn general_ci_equal_strings_have_equal_keys_and_bin_does_not() {
        let ci = varchar(Collation::Utf8mb4GeneralCi);
        let bin = varchar(Collation::Utf8mb4Bin);
        for (a, b) in [("a", "A "), ("é", "E"), ("ß", "s"), ("Straße", "STRASSE ")] {
            let same_ci = key(&ci, &s(a)) == key(&ci, &s(b));
            assert_eq!(same_ci, a != "Straße", "{a} vs {b} under general_ci");
            assert_ne!(key(&bin, &s(a)), key(&bin, &s(b)), "{a} vs {b} under bin");
        }
        assert_eq!(key(&bin, &s("abc  ")), key(&bin, &s("abc")));
        assert_eq!(key(&ci, &s("😀")), key(&ci, &s("𝔸")));
        let blob = ColumnType::Blob { max_bytes: 10 };
        assert!(key(&blob, &s("a")) < key(&blob, &s("a ")));
    }

    #[test]
    fn pad_space_puts_control_characters_below_the_end() {
        for collation in [Collation::Utf8mb4GeneralCi, Collation::Utf8mb4Bin] {
            let ty = varchar(collation);
            assert!(key(&ty, &s("a\t")) < key(&ty, &s("a")));
            assert!(key(&ty, &s("a")) < key(&ty, &s("a!")));
            let long = "x".repeat(GROUP_UNITS);
            assert!(key(&ty, &s(&format!("{long}\0"))) < key(&ty, &s(&long)));
            assert!(key(&ty, &s(&format!("{long}  \t"))) < key(&ty, &s(&long)));
        }
    }

    #[test]
    fn null_sorts_first_and_numbers_in_order() {
        let int = ColumnType::Int {
            width: IntWidth::Tiny,
            unsigned: false,
        };
        let keys: Vec<_> = [
            Value::Null,
            Value::Int(-128),
            Value::Int(-1),
            Value::Int(0),
            Value::Int(127),
        ]
        .iter()
        .map(|v| key(&int, v))
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(keys[1], vec![1, 0]);
        let double = ColumnType::Double;
        assert_eq!(
            key(&double, &Value::Double(-0.0)),
            key(&double, &Value::Double(0.0))
        );
        assert!(key(&double, &Value::Double(-1.5)) < key(&double, &Value::Double(-0.5)));
    }

    #[test]
    fn values_that_do_not_belong_are_refused_and_leave_the_key_alone() {
        let tiny = ColumnType::Int {
            width: IntWidth::Tiny,
            unsigned: true,
        };
        let mut out = vec![7];
        assert_eq!(
            encode_key_part(&mut out, &tiny, &Value::Int(256)),
            Err(ValueError::OutOfRange)
        );
        assert_eq!(
            encode_key_part(&mut out, &tiny, &Value::Int(-1)),
            Err(ValueError::OutOfRange)
        );
        assert!(matches!(
            encode_key_part(&mut out, &ColumnType::Date, &s("2024-01-01")),
            Err(ValueError::BadValue(_))
        ));
        let dec = ColumnType::Decimal {
            precision: 5,
            scale: 1,
        };
        let too_fine = Value::Decimal(crate::types::Decimal {
            mantissa: 123,
            scale: 2,
        });
        assert!(matches!(
            encode_key_part(&mut out, &dec, &too_fine),
            Err(ValueError::BadValue(_))
        ));
        assert_eq!(out, vec![7]);
    }
}
