//! How strings compare under each collation: the weight of a character and
//! MySQL's PAD SPACE rule.
//!
//! - `utf8mb4_general_ci`: each character weighs its simple uppercase
//!   mapping (when `char::to_uppercase` gives exactly one character), with
//!   Latin-1 accented letters folded to their base letter (`é` = `E`,
//!   `ß` = `S`), and every character above U+FFFF weighs 0xFFFD. Bytes that
//!   are not UTF-8 (never stored: `coerce` refuses them) weigh 0xFFFD too.
//! - `utf8mb4_bin`: UTF-8 bytes, whose order is code-point order.
//! - `binary`: raw bytes, no padding.
//!
//! PAD SPACE: the shorter string compares as if padded with spaces, so
//! trailing spaces never matter, and `'a\t' < 'a'` (tab sorts below the
//! pad space). [`crate::key`] encodes the same rule.

use std::cmp::Ordering;

use super::Collation;

/// The weight of the pad character (a space) under both PAD SPACE
/// collations.
pub(crate) const SPACE: u16 = 0x20;

/// The weight of characters general_ci does not tell apart.
const REPLACEMENT: u16 = 0xFFFD;

/// A character's weight under utf8mb4_general_ci.
pub(crate) fn general_ci_weight(c: char) -> u16 {
    if c.is_ascii() {
        return u16::from(c.to_ascii_uppercase() as u8);
    }
    let mut upper = c.to_uppercase();
    let mapped = match (upper.next(), upper.next()) {
        (Some(u), None) => u,
        _ => c,
    };
    let folded = fold_latin1(mapped);
    u16::try_from(u32::from(folded)).unwrap_or(REPLACEMENT)
}

/// MySQL general_ci's folding of accented uppercase Latin-1 letters (and
/// `ß`, whose uppercase is two letters, and `Ÿ`, the uppercase of `ÿ`).
fn fold_latin1(c: char) -> char {
    match c {
        'À'..='Å' => 'A',
        'Ç' => 'C',
        'È'..='Ë' => 'E',
        'Ì'..='Ï' => 'I',
        'Ñ' => 'N',
        'Ò'..='Ö' | 'Ø' => 'O',
        'Ù'..='Ü' => 'U',
        'Ý' | 'Ÿ' => 'Y',
        'ß' => 'S',
        _ => c,
    }
}

/// The general_ci weights of a string's characters, collected: ASCII
/// (sysbench's strings, most keys) without decoding UTF-8.
pub(crate) fn general_ci_weight_vec(bytes: &[u8]) -> Vec<u16> {
    if bytes.is_ascii() {
        bytes
            .iter()
            .map(|b| u16::from(b.to_ascii_uppercase()))
            .collect()
    } else {
        general_ci_weights(bytes).collect()
    }
}

/// The general_ci weights of a string's characters.
pub(crate) fn general_ci_weights(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes.utf8_chunks().flat_map(|chunk| {
        let invalid = (!chunk.invalid().is_empty()).then_some(REPLACEMENT);
        chunk.valid().chars().map(general_ci_weight).chain(invalid)
    })
}

/// Order of two strings under `collation`.
pub(crate) fn compare(collation: Collation, a: &[u8], b: &[u8]) -> Ordering {
    match collation {
        Collation::Utf8mb4GeneralCi => cmp_padded(general_ci_weights(a), general_ci_weights(b)),
        Collation::Utf8mb4Bin => cmp_padded(
            a.iter().map(|&b| u16::from(b)),
            b.iter().map(|&b| u16::from(b)),
        ),
        Collation::Binary => a.cmp(b),
    }
}

/// Lexicographic order of two weight sequences, the shorter padded with
/// spaces.
fn cmp_padded(mut a: impl Iterator<Item = u16>, mut b: impl Iterator<Item = u16>) -> Ordering {
    loop {
        let (x, y) = match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => (x.unwrap_or(SPACE), y.unwrap_or(SPACE)),
        };
        if x != y {
            return x.cmp(&y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ci(a: &str, b: &str) -> Ordering {
        compare(Collation::Utf8mb4GeneralCi, a.as_bytes(), b.as_bytes())
    }

    fn bin(a: &str, b: &str) -> Ordering {
        compare(Collation::Utf8mb4Bin, a.as_bytes(), b.as_bytes())
    }

    #[test]
    fn general_ci_folds_case_accents_and_trailing_spaces() {
        assert_eq!(ci("a", "A"), Ordering::Equal);
        assert_eq!(ci("é", "E"), Ordering::Equal);
        assert_eq!(ci("Ñandú", "nandu"), Ordering::Equal);
        assert_eq!(ci("ß", "s"), Ordering::Equal);
        assert_eq!(ci("ÿ", "Y"), Ordering::Equal);
        assert_eq!(ci("abc ", "abc"), Ordering::Equal);
        assert_eq!(ci("😀", "𝔸"), Ordering::Equal);
        assert_eq!(ci("Æ", "A"), Ordering::Greater);
        assert_eq!(ci("a", "b"), Ordering::Less);
        assert_eq!(ci("Z", "a "), Ordering::Greater);
        assert_eq!(ci("a\t", "a"), Ordering::Less);
        assert_eq!(ci("a\u{0}", "a"), Ordering::Less);
        assert_eq!(ci("a", "a!"), Ordering::Less);
    }

    #[test]
    fn the_ascii_shortcut_weighs_as_the_unicode_rule() {
        for b in 0u8..128 {
            let c = char::from(b);
            let mut upper = c.to_uppercase();
            let rule = match (upper.next(), upper.next()) {
                (Some(u), None) => u,
                _ => c,
            };
            assert_eq!(
                general_ci_weight(c),
                u16::try_from(u32::from(rule)).unwrap()
            );
        }
        let ascii: Vec<u8> = (0u8..128).collect();
        let collected: Vec<u16> = general_ci_weights(&ascii).collect();
        assert_eq!(general_ci_weight_vec(&ascii), collected);
        let mixed = "abc-Ñandú-XYZ".as_bytes();
        let collected: Vec<u16> = general_ci_weights(mixed).collect();
        assert_eq!(general_ci_weight_vec(mixed), collected);
    }

    #[test]
    fn bin_is_code_point_order_with_pad_space() {
        assert_eq!(bin("a", "A"), Ordering::Greater);
        assert_eq!(bin("é", "E"), Ordering::Greater);
        assert_eq!(bin("abc  ", "abc"), Ordering::Equal);
        assert_eq!(bin("\u{FFFF}", "😀"), Ordering::Less);
        assert_eq!(bin("a\t", "a"), Ordering::Less);
        assert_eq!(
            compare(Collation::Binary, b"abc ", b"abc"),
            Ordering::Greater
        );
    }
}
