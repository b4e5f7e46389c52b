//! Values in MySQL's text form (the text protocol, and the text a number
//! becomes when stored in a string column).
//!
//! Doubles print their shortest round-trip digits, in plain notation for
//! exponents -4..=14 and as `1.5e20` / `1e-7` beyond; decimals print
//! exactly `scale` fractional digits; datetimes print `.ffffff` only when
//! the microseconds are not zero; bytes print as lossy UTF-8.

use std::fmt;

use super::{Date, DateTime, Value, num};

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Double(d) => f.write_str(&double_text(*d)),
            Value::Decimal(d) => f.write_str(&num::decimal_text(*d)),
            Value::Bytes(b) => f.write_str(&String::from_utf8_lossy(b)),
            Value::Date(d) => write!(f, "{d}"),
            Value::DateTime(dt) => write!(f, "{dt}"),
        }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:02}:{:02}:{:02}",
            self.date, self.hour, self.minute, self.second
        )?;
        if self.micros != 0 {
            write!(f, ".{:06}", self.micros)?;
        }
        Ok(())
    }
}

/// A double as MySQL's text protocol shows it (see the module doc).
pub(crate) fn double_text(d: f64) -> String {
    if !d.is_finite() {
        return d.to_string();
    }
    let sci = format!("{d:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return d.to_string();
    };
    let Ok(exp) = exp.parse::<i64>() else {
        return d.to_string();
    };
    if !(-4..15).contains(&exp) {
        return sci;
    }
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let int_digits = exp + 1;
    let len = digits.len() as i64;
    let body = if int_digits <= 0 {
        format!("0.{}{digits}", "0".repeat((-int_digits) as usize))
    } else if int_digits >= len {
        format!("{digits}{}", "0".repeat((int_digits - len) as usize))
    } else {
        let (int_part, frac_part) = digits.split_at(int_digits as usize);
        format!("{int_part}.{frac_part}")
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Decimal;

    #[test]
    fn text_forms() {
        let cases: Vec<(Value, &str)> = vec![
            (Value::Null, "NULL"),
            (Value::Int(-12), "-12"),
            (Value::UInt(u64::MAX), "18446744073709551615"),
            (Value::Double(1.5), "1.5"),
            (Value::Double(100.0), "100"),
            (Value::Double(1e20), "1e20"),
            (Value::Double(-2.5e-7), "-2.5e-7"),
            (Value::Double(0.001), "0.001"),
            (Value::Double(0.0), "0"),
            (Value::Double(123456789012345.0), "123456789012345"),
            (Value::Double(0.1 + 0.2), "0.30000000000000004"),
            (
                Value::Decimal(Decimal {
                    mantissa: -5,
                    scale: 3,
                }),
                "-0.005",
            ),
            (
                Value::Decimal(Decimal {
                    mantissa: 100,
                    scale: 2,
                }),
                "1.00",
            ),
            (Value::Bytes(b"h\xffi".to_vec()), "h\u{FFFD}i"),
        ];
        for (v, text) in cases {
            assert_eq!(v.to_string(), text, "{v:?}");
        }
    }

    #[test]
    fn date_text_forms() {
        let date = Date {
            year: 2024,
            month: 2,
            day: 9,
        };
        let mut dt = DateTime {
            date,
            hour: 1,
            minute: 2,
            second: 3,
            micros: 0,
        };
        assert_eq!(Value::Date(date).to_string(), "2024-02-09");
        assert_eq!(Value::DateTime(dt).to_string(), "2024-02-09 01:02:03");
        dt.micros = 5;
        assert_eq!(
            Value::DateTime(dt).to_string(),
            "2024-02-09 01:02:03.000005"
        );
    }
}
