//! Numbers as MySQL reads them from text, and exact decimal arithmetic.
//!
//! [`ParsedNum`] holds any number exactly (sign, decimal digits, power of
//! ten), so that strings, doubles and decimals convert to integer and
//! DECIMAL columns with one rounding rule: half away from zero, on the
//! exact decimal digits. Nothing here allocates more than its input.

use std::cmp::Ordering;

use super::Decimal;

/// The largest power of ten an `i128` mantissa can hold: DECIMAL(38).
pub(crate) const MAX_PRECISION: u32 = 38;

/// `(-1)^negative * digits * 10^exp10`, exactly. `digits` are the values
/// 0..=9 with no leading or trailing zeros; zero has no digits and is
/// never negative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParsedNum {
    negative: bool,
    digits: Vec<u8>,
    exp10: i64,
}

/// Exponents beyond this are clamped: far past anything representable,
/// yet small enough that exponent arithmetic cannot overflow.
const EXP_LIMIT: i64 = 1 << 40;

impl ParsedNum {
    /// Builds a number from digits without trailing zeros, dropping the
    /// leading ones.
    fn new(negative: bool, digits: &[u8], exp10: i64) -> ParsedNum {
        let start = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
        let digits = digits[start..].to_vec();
        ParsedNum {
            negative: negative && !digits.is_empty(),
            exp10: if digits.is_empty() { 0 } else { exp10 },
            digits,
        }
    }

    /// An unsigned magnitude with a sign.
    pub(crate) fn from_u128(negative: bool, magnitude: u128, exp10: i64) -> ParsedNum {
        let digits: Vec<u8> = magnitude.to_string().bytes().map(|b| b - b'0').collect();
        ParsedNum::from_digits(negative, &digits, exp10)
    }

    /// From decimal digit values (0..=9), trailing zeros folded into the exponent.
    fn from_digits(negative: bool, digits: &[u8], exp10: i64) -> ParsedNum {
        let trailing = digits.iter().rev().take_while(|&&d| d == 0).count();
        let kept = &digits[..digits.len() - trailing];
        let exp10 = exp10
            .saturating_add(trailing as i64)
            .clamp(-EXP_LIMIT, EXP_LIMIT);
        ParsedNum::new(negative, kept, exp10)
    }

    pub(crate) fn from_i64(v: i64) -> ParsedNum {
        ParsedNum::from_u128(v < 0, u128::from(v.unsigned_abs()), 0)
    }

    pub(crate) fn from_decimal(d: Decimal) -> ParsedNum {
        ParsedNum::from_u128(
            d.mantissa < 0,
            d.mantissa.unsigned_abs(),
            -i64::from(d.scale),
        )
    }

    /// A finite double, by its shortest round-trip decimal form (so 1.005
    /// is 1.005, as a user typed it, not 1.00499999999999989...).
    pub(crate) fn from_f64(f: f64) -> Option<ParsedNum> {
        if !f.is_finite() {
            return None;
        }
        parse(format!("{f:e}").as_bytes())
    }

    /// `round(|self| * 10^scale)` half away from zero, and the sign; `None`
    /// if the magnitude does not fit a `u128`.
    pub(crate) fn round_to_scale(&self, scale: u32) -> Option<(bool, u128)> {
        if self.digits.is_empty() {
            return Some((false, 0));
        }
        let shift = self.exp10 + i64::from(scale);
        let (kept, round_up) = if shift >= 0 {
            (self.digits.as_slice(), false)
        } else {
            let drop = usize::try_from(-shift).unwrap_or(usize::MAX);
            if drop > self.digits.len() {
                return Some((false, 0));
            }
            let keep = self.digits.len() - drop;
            (&self.digits[..keep], self.digits[keep] >= 5)
        };
        let mut mag = digits_to_u128(kept)?;
        if shift > 0 {
            let pow = u32::try_from(shift).ok().and_then(pow10)?;
            mag = mag.checked_mul(pow)?;
        }
        if round_up {
            mag = mag.checked_add(1)?;
        }
        Some((self.negative && mag != 0, mag))
    }

    /// Rounds to an integer and fits it in an `i128`.
    pub(crate) fn to_i128(&self) -> Option<i128> {
        let (negative, mag) = self.round_to_scale(0)?;
        signed(negative, mag)
    }

    /// The nearest double (infinite when the magnitude is too large).
    pub(crate) fn to_f64(&self) -> f64 {
        let mut text = String::with_capacity(self.digits.len() + 24);
        if self.negative {
            text.push('-');
        }
        if self.digits.is_empty() {
            text.push('0');
        }
        text.extend(self.digits.iter().map(|&d| char::from(b'0' + d)));
        text.push_str(&format!("e{}", self.exp10));
        // The text is digits and an exponent, which `f64` always parses.
        text.parse().unwrap_or(f64::NAN)
    }

    /// Exact numeric order.
    pub(crate) fn cmp_num(&self, other: &ParsedNum) -> Ordering {
        let sign = |n: &ParsedNum| match (n.digits.is_empty(), n.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        };
        let by_sign = sign(self).cmp(&sign(other));
        if by_sign != Ordering::Equal || sign(self) == 0 {
            return by_sign;
        }
        // Same sign, both non-zero: the magnitude's leading digit position,
        // then the digits (no trailing zeros, so a prefix is smaller).
        let top = |n: &ParsedNum| n.exp10 + n.digits.len() as i64;
        let magnitude = top(self)
            .cmp(&top(other))
            .then_with(|| self.digits.cmp(&other.digits));
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// A sign and magnitude as an `i128`, if it fits.
pub(crate) fn signed(negative: bool, mag: u128) -> Option<i128> {
    if negative {
        0i128.checked_sub_unsigned(mag)
    } else {
        i128::try_from(mag).ok()
    }
}

fn digits_to_u128(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u128::from(d))
    })
}

/// `10^n`, if it fits a `u128`.
pub(crate) fn pow10(n: u32) -> Option<u128> {
    10u128.checked_pow(n)
}

/// Parses a number as MySQL does in strict mode: optional surrounding
/// whitespace, a sign, digits with at most one point (at least one digit),
/// and an optional exponent. Anything else (`''`, `'12abc'`, `'inf'`) is
/// `None`.
pub(crate) fn parse(text: &[u8]) -> Option<ParsedNum> {
    let text = text.trim_ascii();
    let (negative, rest) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (int_part, rest) = rest.split_at(int_len);
    let (frac_part, rest) = match rest.strip_prefix(b".") {
        Some(after) => {
            let n = after.iter().take_while(|b| b.is_ascii_digit()).count();
            after.split_at(n)
        }
        None => (&rest[..0], rest),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let exp = match rest {
        [] => 0,
        [b'e' | b'E', exp @ ..] => parse_exponent(exp)?,
        _ => return None,
    };
    let digits: Vec<u8> = int_part.iter().chain(frac_part).map(|b| b - b'0').collect();
    let exp10 = exp.saturating_sub(frac_part.len() as i64);
    Some(ParsedNum::from_digits(negative, &digits, exp10))
}

/// An exponent's `[sign]digits`, clamped to `±EXP_LIMIT`.
fn parse_exponent(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let magnitude = digits.iter().fold(0i64, |acc, &b| {
        acc.saturating_mul(10)
            .saturating_add(i64::from(b - b'0'))
            .min(EXP_LIMIT)
    });
    Some(if negative { -magnitude } else { magnitude })
}

/// Numeric order of two decimals, whatever their scales.
pub(crate) fn cmp_decimal(a: Decimal, b: Decimal) -> Ordering {
    if a.scale == b.scale {
        return a.mantissa.cmp(&b.mantissa);
    }
    ParsedNum::from_decimal(a).cmp_num(&ParsedNum::from_decimal(b))
}

/// `d` at `scale` exactly, or `None` if that loses digits or overflows.
pub(crate) fn rescale_exact(d: Decimal, scale: u8) -> Option<i128> {
    if scale >= d.scale {
        let factor = i128::try_from(pow10(u32::from(scale - d.scale))?).ok()?;
        d.mantissa.checked_mul(factor)
    } else {
        let factor = pow10(u32::from(d.scale - scale)).and_then(|f| i128::try_from(f).ok());
        match factor {
            Some(f) if d.mantissa % f == 0 => Some(d.mantissa / f),
            Some(_) => None,
            // A factor beyond i128: only zero divides exactly.
            None => (d.mantissa == 0).then_some(0),
        }
    }
}

/// `d` at `scale`: exact when the scale grows, rounded half away from
/// zero (`truncate`: towards zero) when it shrinks; `scale` may be
/// negative (round to tens, hundreds…; the result then has scale 0).
/// `None` on overflow.
pub(crate) fn rescale(d: Decimal, scale: i32, truncate: bool) -> Option<Decimal> {
    let target = u8::try_from(scale.max(0)).ok()?;
    if scale >= i32::from(d.scale) {
        return Some(Decimal {
            mantissa: rescale_exact(d, target)?,
            scale: target,
        });
    }
    let drop = u32::try_from(i32::from(d.scale) - scale).ok()?;
    let Some(f) = pow10(drop).and_then(|f| i128::try_from(f).ok()) else {
        return Some(Decimal {
            mantissa: 0,
            scale: target,
        });
    };
    let (q, r) = (d.mantissa / f, d.mantissa % f);
    let bump = if !truncate && 2 * r.unsigned_abs() >= f.unsigned_abs() {
        d.mantissa.signum()
    } else {
        0
    };
    let mut m = q.checked_add(bump)?;
    if scale < 0 {
        // Back to units: 125 rounded at -1 is 13 tens, 130.
        let up = pow10(u32::try_from(-scale).ok()?).and_then(|f| i128::try_from(f).ok())?;
        m = m.checked_mul(up)?;
    }
    Some(Decimal {
        mantissa: m,
        scale: target,
    })
}

/// `d` rounded half away from zero to `scale` digits.
pub(crate) fn round_decimal(d: Decimal, scale: u8) -> Option<Decimal> {
    rescale(d, i32::from(scale), false)
}

/// The text of a decimal with exactly `scale` fractional digits.
pub(crate) fn decimal_text(d: Decimal) -> String {
    let digits = d.mantissa.unsigned_abs().to_string();
    let scale = usize::from(d.scale);
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int_part, frac_part) = padded.split_at(padded.len() - scale);
    let sign = if d.mantissa < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac_part}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> ParsedNum {
        parse(s.as_bytes()).expect("a number")
    }

    #[test]
    fn parse_accepts_mysql_numbers_and_refuses_the_rest() {
        for ok in ["12", " 12 ", "-12.345", "+.5", "5.", "1e3", "1E-3", "007"] {
            assert!(parse(ok.as_bytes()).is_some(), "{ok}");
        }
        for bad in [
            "", " ", "12abc", ".", "-", "1e", "1e+", "inf", "NaN", "1.2.3", "0x10",
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn rounding_is_half_away_from_zero_on_exact_digits() {
        assert_eq!(num("1.005").round_to_scale(2), Some((false, 101)));
        assert_eq!(num("-2.5").round_to_scale(0), Some((true, 3)));
        assert_eq!(num("2.4999").round_to_scale(0), Some((false, 2)));
        assert_eq!(num("0.4").round_to_scale(0), Some((false, 0)));
        assert_eq!(num("-0.4").round_to_scale(0), Some((false, 0)));
        assert_eq!(num("1e3").round_to_scale(1), Some((false, 10000)));
        assert_eq!(num("1e50").round_to_scale(0), None);
        assert_eq!(num("1e-50").round_to_scale(0), Some((false, 0)));
        assert_eq!(num("0.5e-0").round_to_scale(0), Some((false, 1)));
        assert_eq!(
            ParsedNum::from_f64(1.005).and_then(|n| n.round_to_scale(2)),
            Some((false, 101))
        );
    }

    #[test]
    fn order_and_decimal_text() {
        let d = |m, s| Decimal {
            mantissa: m,
            scale: s,
        };
        assert_eq!(cmp_decimal(d(150, 2), d(15, 1)), Ordering::Equal);
        assert_eq!(cmp_decimal(d(-5, 1), d(5, 3)), Ordering::Less);
        assert_eq!(cmp_decimal(d(-5, 1), d(-50, 3)), Ordering::Less);
        assert_eq!(
            cmp_decimal(d(i128::MAX, 0), d(i128::MAX, 38)),
            Ordering::Greater
        );
        assert_eq!(decimal_text(d(-5, 2)), "-0.05");
        assert_eq!(decimal_text(d(12345, 2)), "123.45");
        assert_eq!(decimal_text(d(7, 0)), "7");
        assert_eq!(rescale_exact(d(150, 2), 1), Some(15));
        assert_eq!(rescale_exact(d(151, 2), 1), None);
        assert_eq!(num("-0.0").cmp_num(&num("0")), Ordering::Equal);
    }

    #[test]
    fn rescale_rounds_or_truncates() {
        let d = |m, s| Decimal {
            mantissa: m,
            scale: s,
        };
        assert_eq!(rescale(d(1555, 3), 2, false), Some(d(156, 2)));
        assert_eq!(rescale(d(1555, 3), 2, true), Some(d(155, 2)));
        assert_eq!(rescale(d(-25, 1), 0, false), Some(d(-3, 0)));
        assert_eq!(rescale(d(15, 1), 3, false), Some(d(1500, 3)));
        assert_eq!(rescale(d(123456, 3), -1, false), Some(d(120, 0)));
        assert_eq!(rescale(d(125, 0), -1, false), Some(d(130, 0)));
        assert_eq!(rescale(d(-129, 0), -1, true), Some(d(-120, 0)));
        assert_eq!(rescale(d(5, 0), -60, false), Some(d(0, 0)));
    }
}
