//! Memcomparable sort keys: each row's ORDER BY (or DISTINCT) values
//! encoded once into bytes whose plain byte order is the order
//! [`super::expr::sort_cmp`] gives, so sorting compares byte strings
//! instead of re-deriving collation weights and decoding UTF-8 in every
//! comparison.
//!
//! A key column is encoded by the class of its values: integers (as i128,
//! sign flipped), decimals (integers too, rescaled to the column's largest
//! scale), doubles, strings (the collation's weights, as index keys:
//! [`crate::key::encode_key_part`]) or dates and datetimes. NULL sorts
//! first (marker 0 before a value's 1); DESC inverts the part's bytes
//! (every part is prefix-free, so inversion reverses its order). A column
//! mixing classes that compare by other rules (a string and a number)
//! gets no key: the caller falls back to comparing values.

use crate::types::{Collation, ColumnType, Value};

/// How a key column's values are encoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Empty,
    Int,
    Decimal(u8),
    Double,
    Text,
    Temporal,
}

fn class_of(v: &Value) -> Option<Class> {
    Some(match v {
        Value::Null => Class::Empty,
        Value::Int(_) | Value::UInt(_) => Class::Int,
        Value::Decimal(d) => Class::Decimal(d.scale),
        Value::Double(_) => Class::Double,
        Value::Bytes(_) => Class::Text,
        Value::Date(_) | Value::DateTime(_) => Class::Temporal,
    })
}

fn join(a: Class, b: Class) -> Option<Class> {
    use Class::*;
    Some(match (a, b) {
        (Empty, x) | (x, Empty) => x,
        (Int, Int) => Int,
        (Decimal(s), Int) | (Int, Decimal(s)) => Decimal(s),
        (Decimal(s), Decimal(t)) => Decimal(s.max(t)),
        (Double, Double) => Double,
        (Text, Text) => Text,
        (Temporal, Temporal) => Temporal,
        _ => return None,
    })
}

/// The class of key column `i` over every row, if one encoding fits them all.
fn column_class<'a>(
    n: usize,
    value: &impl Fn(usize, usize) -> &'a Value,
    i: usize,
) -> Option<Class> {
    (0..n).try_fold(Class::Empty, |c, r| join(c, class_of(value(r, i))?))
}

fn encode(out: &mut Vec<u8>, class: Class, v: &Value, collation: Collation) -> Option<()> {
    if matches!(v, Value::Null) {
        out.push(0);
        return Some(());
    }
    out.push(1);
    match class {
        Class::Empty => {}
        Class::Int => {
            let n = crate::types::int_of(v)?;
            out.extend_from_slice(&((n as u128) ^ (1 << 127)).to_be_bytes());
        }
        Class::Decimal(scale) => {
            let (m, s) = match v {
                Value::Decimal(d) => (d.mantissa, d.scale),
                other => (crate::types::int_of(other)?, 0),
            };
            let m = m.checked_mul(10i128.checked_pow(u32::from(scale - s))?)?;
            out.extend_from_slice(&((m as u128) ^ (1 << 127)).to_be_bytes());
        }
        Class::Double => {
            out.pop();
            crate::key::encode_key_part(out, &ColumnType::Double, v).ok()?;
        }
        Class::Text => {
            out.pop();
            let ty = ColumnType::Text {
                max_bytes: u32::MAX,
                collation,
            };
            crate::key::encode_key_part(out, &ty, v).ok()?;
        }
        Class::Temporal => {
            out.pop();
            let dt = crate::types::datetime_of(v)?;
            crate::key::encode_key_part(out, &ColumnType::DateTime, &Value::DateTime(dt)).ok()?;
        }
    }
    Some(())
}

/// Every row's memcomparable key in one buffer: key `i` is
/// `bytes[ends[i - 1]..ends[i]]` (no allocation per row).
pub(crate) struct Keys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Keys {
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Row `i`'s key.
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// The rows' positions in key order, equal keys in row order.
    pub(crate) fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_unstable_by(|&a, &b| self.get(a).cmp(self.get(b)).then(a.cmp(&b)));
        order
    }
}

/// The keys of `n` rows; `value(r, i)` is row `r`'s value of key column
/// `i` (`specs`: each key column's collation and whether it sorts
/// descending). `None` when some column's values share no encoding.
pub(crate) fn encode_rows<'a>(
    n: usize,
    value: impl Fn(usize, usize) -> &'a Value,
    specs: &[(Collation, bool)],
) -> Option<Keys> {
    let classes = (0..specs.len())
        .map(|i| column_class(n, &value, i))
        .collect::<Option<Vec<_>>>()?;
    let mut keys = Keys {
        bytes: Vec::with_capacity(n * 16 * specs.len()),
        ends: Vec::with_capacity(n),
    };
    for r in 0..n {
        for (i, ((coll, desc), class)) in specs.iter().zip(&classes).enumerate() {
            let start = keys.bytes.len();
            encode(&mut keys.bytes, *class, value(r, i), *coll)?;
            if *desc {
                keys.bytes[start..].iter_mut().for_each(|b| *b = !*b);
            }
        }
        keys.ends.push(keys.bytes.len());
    }
    Some(keys)
}

/// How many leading weights an abbreviated string key holds.
const ABBREVIATED: usize = 8;

/// An abbreviated key for a string (or NULL) sort value: NULL first, then
/// the string's first [`ABBREVIATED`] collation weights, padded as the
/// collation pads (PAD SPACE: with the space's weight; binary: with
/// zeros). A strictly smaller abbreviation means a smaller value under
/// [`super::expr::sort_cmp`]; equal abbreviations say nothing (compare the
/// values). `None` for a value that is not a string or NULL.
pub(crate) fn abbreviated(v: &Value, collation: Collation) -> Option<(bool, u128)> {
    let bytes = match v {
        Value::Null => return Some((false, 0)),
        Value::Bytes(b) => b,
        _ => return None,
    };
    let mut key = 0u128;
    match collation {
        Collation::Binary => {
            for i in 0..16 {
                key = key << 8 | u128::from(bytes.get(i).copied().unwrap_or(0));
            }
        }
        Collation::Utf8mb4Bin | Collation::Utf8mb4GeneralCi => {
            let pad = crate::types::collation::SPACE;
            let head = &bytes[..bytes.len().min(ABBREVIATED * 4)];
            let mut push = |w: u16, n: &mut usize| {
                key = key << 16 | u128::from(w);
                *n += 1;
            };
            let mut n = 0;
            match collation {
                Collation::Utf8mb4GeneralCi if head.is_ascii() => {
                    for &b in head.iter().take(ABBREVIATED) {
                        push(u16::from(b.to_ascii_uppercase()), &mut n);
                    }
                }
                Collation::Utf8mb4GeneralCi => {
                    for w in crate::types::collation::general_ci_weights(head).take(ABBREVIATED) {
                        push(w, &mut n);
                    }
                }
                _ => {
                    for &b in head.iter().take(ABBREVIATED) {
                        push(u16::from(b), &mut n);
                    }
                }
            }
            while n < ABBREVIATED {
                push(pad, &mut n);
            }
        }
    }
    Some((true, key))
}

/// [`encode_rows`] over rows given as slices of their key values.
#[cfg(test)]
pub(crate) fn keys(rows: &[&[Value]], specs: &[(Collation, bool)]) -> Option<Keys> {
    encode_rows(rows.len(), |r, i| &rows[r][i], specs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::expr::sort_cmp;
    use crate::types::Decimal;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Int),
            "[a-cA-C \u{e9}]{0,4}".prop_map(|s| Value::Bytes(s.into_bytes())),
        ]
    }

    fn check(values: &[Value], coll: Collation, desc: bool) {
        let rows: Vec<Vec<Value>> = values.iter().map(|v| vec![v.clone()]).collect();
        let refs: Vec<&[Value]> = rows.iter().map(Vec::as_slice).collect();
        let Some(keys) = keys(&refs, &[(coll, desc)]) else {
            return;
        };
        for i in 0..values.len() {
            for j in 0..values.len() {
                let want = sort_cmp(&values[i], &values[j], coll);
                let want = if desc { want.reverse() } else { want };
                assert_eq!(
                    keys.get(i).cmp(keys.get(j)),
                    want,
                    "{:?} vs {:?}",
                    values[i],
                    values[j]
                );
            }
        }
    }

    proptest! {
        #[test]
        fn key_order_is_sort_cmp_order(
            values in proptest::collection::vec(value(), 0..12),
            desc in any::<bool>(),
            which in 0..3usize,
        ) {
            let coll = [Collation::Utf8mb4GeneralCi, Collation::Utf8mb4Bin, Collation::Binary][which];
            check(&values, coll, desc);
        }
    }

    proptest! {
        #[test]
        fn abbreviated_order_agrees_with_sort_cmp(
            values in proptest::collection::vec(
                prop_oneof![
                    Just(Value::Null),
                    "[aAbB \t\u{e9}\u{c9}]{0,12}".prop_map(|s| Value::Bytes(s.into_bytes())),
                    proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
                ],
                0..12,
            ),
            which in 0..3usize,
        ) {
            let coll = [Collation::Utf8mb4GeneralCi, Collation::Utf8mb4Bin, Collation::Binary][which];
            for a in &values {
                for b in &values {
                    let (x, y) = (abbreviated(a, coll).unwrap(), abbreviated(b, coll).unwrap());
                    if x != y {
                        prop_assert_eq!(x.cmp(&y), sort_cmp(a, b, coll), "{:?} vs {:?}", a, b);
                    }
                }
            }
        }
    }

    #[test]
    fn decimals_and_integers_share_a_scale() {
        let d = |m, s| {
            Value::Decimal(Decimal {
                mantissa: m,
                scale: s,
            })
        };
        check(
            &[
                d(150, 2),
                Value::Int(1),
                d(-5, 1),
                Value::Null,
                d(10, 1),
                Value::Int(-1),
            ],
            Collation::Binary,
            false,
        );
    }

    #[test]
    fn mixed_strings_and_numbers_get_no_key() {
        let rows = [vec![Value::Int(1)], vec![Value::Bytes(b"x".to_vec())]];
        let refs: Vec<&[Value]> = rows.iter().map(Vec::as_slice).collect();
        assert!(keys(&refs, &[(Collation::Binary, false)]).is_none());
    }
}
