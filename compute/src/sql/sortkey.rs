//! Values prepared once for the many comparisons of a sort.
//!
//! Comparing two strings under utf8mb4_general_ci decodes both as UTF-8
//! and folds every character to its weight; a sort of n rows does that
//! about n·log n times per key. A [`Prepared`] value holds a string's
//! weights, computed once, and compares them as [`sort_cmp`] would compare
//! the strings: the same order exactly (a property test holds the two to
//! it), at the cost of one weight vector per string per sort.

use std::cmp::Ordering;

use crate::types::Collation;
use crate::types::Value;
use crate::types::collation;

use super::expr::sort_cmp;

/// A value and, for a string under a PAD SPACE collation, its weights.
pub(crate) struct Prepared<'a> {
    value: &'a Value,
    weights: Option<Vec<u16>>,
}

impl<'a> Prepared<'a> {
    pub fn new(value: &'a Value, coll: Collation) -> Prepared<'a> {
        let weights = match (value, coll) {
            (Value::Bytes(b), Collation::Utf8mb4GeneralCi) => {
                Some(collation::general_ci_weights(b.as_slice()).collect())
            }
            (Value::Bytes(b), Collation::Utf8mb4Bin) => {
                Some(b.iter().map(|&x| u16::from(x)).collect())
            }
            _ => None,
        };
        Prepared { value, weights }
    }

    /// The order [`sort_cmp`] gives the two values under `coll` (the
    /// collation both were prepared with).
    pub fn cmp(&self, other: &Prepared<'_>, coll: Collation) -> Ordering {
        match (&self.weights, &other.weights) {
            (Some(a), Some(b)) => cmp_padded(a, b),
            _ => sort_cmp(self.value, other.value, coll),
        }
    }
}

/// Weight sequences in order, the shorter padded with spaces (PAD SPACE).
fn cmp_padded(a: &[u16], b: &[u16]) -> Ordering {
    let common = a.len().min(b.len());
    match a[..common].cmp(&b[..common]) {
        Ordering::Equal => {}
        o => return o,
    }
    let (rest, flip) = if a.len() > common {
        (&a[common..], false)
    } else {
        (&b[common..], true)
    };
    let o = rest
        .iter()
        .map(|&w| w.cmp(&collation::SPACE))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal);
    if flip { o.reverse() } else { o }
}

/// Prepares a row's values, one collation per value.
pub(crate) fn prepare_row<'a>(
    values: &'a [Value],
    colls: impl Iterator<Item = Collation>,
) -> Vec<Prepared<'a>> {
    values
        .iter()
        .zip(colls)
        .map(|(v, c)| Prepared::new(v, c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Int),
            "[ aAbBéÉß\t😀zZ]{0,6}".prop_map(|s| Value::Bytes(s.into_bytes())),
            proptest::collection::vec(any::<u8>(), 0..5).prop_map(Value::Bytes),
        ]
    }

    fn collation() -> impl Strategy<Value = Collation> {
        prop_oneof![
            Just(Collation::Utf8mb4GeneralCi),
            Just(Collation::Utf8mb4Bin),
            Just(Collation::Binary),
        ]
    }

    proptest! {
        #[test]
        fn prepared_order_is_sort_cmp(a in value(), b in value(), coll in collation()) {
            let (pa, pb) = (Prepared::new(&a, coll), Prepared::new(&b, coll));
            prop_assert_eq!(pa.cmp(&pb, coll), sort_cmp(&a, &b, coll));
        }
    }

    #[test]
    fn padding_is_compared_as_spaces() {
        let c = Collation::Utf8mb4GeneralCi;
        let (a, b) = (Value::Bytes(b"ab".to_vec()), Value::Bytes(b"ab\t".to_vec()));
        let (pa, pb) = (Prepared::new(&a, c), Prepared::new(&b, c));
        assert_eq!(pa.cmp(&pb, c), Ordering::Greater);
        let d = Value::Bytes(b"AB  ".to_vec());
        assert_eq!(pa.cmp(&Prepared::new(&d, c), c), Ordering::Equal);
    }
}
