//! Dates and datetimes: parsing MySQL's text forms and the calendar checks
//! strict mode (with NO_ZERO_DATE and NO_ZERO_IN_DATE) applies.
//!
//! DATE and DATETIME hold years 1000..=9999; TIMESTAMP holds
//! '1970-01-01 00:00:01' ..= '2038-01-19 03:14:07.999999' (UTC).

use super::{Date, DateTime};

/// The earliest TIMESTAMP.
pub(crate) const TIMESTAMP_MIN: DateTime = DateTime {
    date: Date {
        year: 1970,
        month: 1,
        day: 1,
    },
    hour: 0,
    minute: 0,
    second: 1,
    micros: 0,
};

/// The latest TIMESTAMP.
pub(crate) const TIMESTAMP_MAX: DateTime = DateTime {
    date: Date {
        year: 2038,
        month: 1,
        day: 19,
    },
    hour: 3,
    minute: 14,
    second: 7,
    micros: 999_999,
};

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// Days in `month` of `year` (0 for a month that does not exist).
pub(crate) fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A real calendar date within DATE's range (so never a zero date).
pub(crate) fn valid_date(d: Date) -> bool {
    (1000..=9999).contains(&d.year) && d.day >= 1 && d.day <= days_in_month(d.year, d.month)
}

/// A valid date and a valid time of day.
pub(crate) fn valid_datetime(dt: DateTime) -> bool {
    valid_date(dt.date) && dt.hour < 24 && dt.minute < 60 && dt.second < 60 && dt.micros < 1_000_000
}

/// Parses `YYYY-MM-DD` or `YYYY-MM-DD[ T]HH:MM:SS[.ffffff]` (surrounding
/// whitespace allowed; month, day and time fields of one or two digits;
/// one to six fractional digits). Returns the datetime and whether the text
/// had a time part. Fields are not range-checked here.
pub(crate) fn parse_datetime(text: &[u8]) -> Option<(DateTime, bool)> {
    let mut p = Cursor(text.trim_ascii());
    let year = p.digits(4, 4)?;
    p.expect(b'-')?;
    let month = p.digits(1, 2)?;
    p.expect(b'-')?;
    let day = p.digits(1, 2)?;
    let date = Date {
        year: u16::try_from(year).ok()?,
        month: u8::try_from(month).ok()?,
        day: u8::try_from(day).ok()?,
    };
    if p.0.is_empty() {
        return Some((DateTime::midnight(date), false));
    }
    p.expect(b' ').or_else(|| p.expect(b'T'))?;
    let hour = p.digits(1, 2)?;
    p.expect(b':')?;
    let minute = p.digits(1, 2)?;
    p.expect(b':')?;
    let second = p.digits(1, 2)?;
    let micros = if p.expect(b'.').is_some() {
        let n = p.0.iter().take_while(|b| b.is_ascii_digit()).count();
        let frac = p.digits(1, 6)?;
        frac * 10u32.pow(6 - n as u32)
    } else {
        0
    };
    if !p.0.is_empty() {
        return None;
    }
    let dt = DateTime {
        date,
        hour: u8::try_from(hour).ok()?,
        minute: u8::try_from(minute).ok()?,
        second: u8::try_from(second).ok()?,
        micros,
    };
    Some((dt, true))
}

/// The unread rest of a datetime's text.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn expect(&mut self, b: u8) -> Option<()> {
        let rest = self.0.strip_prefix(&[b])?;
        self.0 = rest;
        Some(())
    }

    /// `min..=max` ASCII digits (no more may follow) as a number.
    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let n = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        if n < min || n > max {
            return None;
        }
        let (digits, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(
            digits
                .iter()
                .fold(0, |acc, &b| acc * 10 + u32::from(b - b'0')),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: u16, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    #[test]
    fn calendar_checks() {
        assert!(valid_date(date(2024, 2, 29)));
        assert!(!valid_date(date(2023, 2, 29)));
        assert!(valid_date(date(2000, 2, 29)));
        assert!(!valid_date(date(1900, 2, 29)));
        assert!(!valid_date(date(2024, 4, 31)));
        assert!(!valid_date(date(2024, 0, 1)));
        assert!(!valid_date(date(2024, 1, 0)));
        assert!(!valid_date(date(0, 0, 0)));
        assert!(!valid_date(date(999, 12, 31)));
        assert!(valid_date(date(9999, 12, 31)));
    }

    #[test]
    fn parses_the_text_forms() {
        let (dt, has_time) = parse_datetime(b" 2024-2-9 ").expect("parses");
        assert_eq!(
            (dt, has_time),
            (DateTime::midnight(date(2024, 2, 9)), false)
        );
        let (dt, has_time) = parse_datetime(b"2024-02-09 13:04:05.25").expect("parses");
        assert!(has_time);
        assert_eq!(
            (dt.hour, dt.minute, dt.second, dt.micros),
            (13, 4, 5, 250_000)
        );
        let (dt, _) = parse_datetime(b"2024-02-09T01:02:03").expect("parses");
        assert_eq!(dt.second, 3);
        for bad in [
            "",
            "2024",
            "24-01-01",
            "2024-01-01x",
            "2024-01-01 1:2",
            "2024-01-01 01:02:03.1234567",
            "2024-001-01",
            "2024-01-01 01:02:03.",
        ] {
            assert!(parse_datetime(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
