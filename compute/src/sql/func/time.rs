//! Date and time functions, interval arithmetic and the civil calendar.
//!
//! Times are UTC (the server's only time zone). A date argument may be a
//! DATE, a DATETIME, its text (`'2024-02-29'`, `'2024-02-29 13:14:15'`)
//! or a number (`20240229`, `20240229131415`); anything else is NULL with
//! warning 1292, as MySQL does. Interval arithmetic keeps DATE a DATE for
//! day-or-larger units, clamps the day at the month's end for MONTH,
//! QUARTER and YEAR, and is NULL outside years 0..=9999.

use crate::types::{Date, DateTime, Decimal, Value, num, temporal};

use super::super::SqlError;
use super::super::expr::{Ctx, double_of, temporal_number};
use super::number::int_arg;
use super::{Func, text};

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// The last second FROM_UNIXTIME accepts (3001-01-19 03:14:07 UTC), as MySQL 8.
const MAX_UNIX_SECS: i64 = 32_536_771_199;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntervalUnit {
    Microsecond,
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

/// Whether the unit is a whole number of days or more.
pub(super) fn is_date_unit(unit: IntervalUnit) -> bool {
    matches!(
        unit,
        IntervalUnit::Day
            | IntervalUnit::Week
            | IntervalUnit::Month
            | IntervalUnit::Quarter
            | IntervalUnit::Year
    )
}

/// Evaluates `f` if it is a date or time function (`None` otherwise).
pub(super) fn call(f: Func, v: &[Value], cx: &Ctx<'_>) -> Option<Result<Value, SqlError>> {
    let now = cx.env.stmt.now;
    let dt = |i: usize| v.get(i).and_then(|x| datetime_arg(x, cx));
    let part =
        |i: usize, get: fn(&DateTime) -> i64| dt(i).map_or(Value::Null, |d| Value::Int(get(&d)));
    Some(Ok(match f {
        Func::Now => Value::DateTime(now),
        Func::SysDate => Value::DateTime(super::super::expr::StmtEnv::starting(0, 0).now),
        Func::CurDate => Value::Date(now.date),
        Func::CurTime => Value::Bytes(time_text(&now).into_bytes()),
        Func::DateFormat => match dt(0) {
            Some(d) => Value::Bytes(format(&d, &text(&v[1])).into_bytes()),
            None => Value::Null,
        },
        Func::DateDiff => match (dt(0), dt(1)) {
            (Some(a), Some(b)) => Value::Int(days_of(a.date) - days_of(b.date)),
            _ => Value::Null,
        },
        Func::AddDays | Func::SubDays => {
            return Some(Ok(date_arith(
                v[0].clone(),
                v[1].clone(),
                IntervalUnit::Day,
                f == Func::SubDays,
                cx,
            )));
        }
        Func::UnixTimestamp => match v.first() {
            None => Value::Int(cx.env.stmt.unix_micros.div_euclid(1_000_000)),
            Some(_) => dt(0).map_or(Value::Null, unix_timestamp),
        },
        Func::FromUnixtime => match from_unixtime(&v[0]) {
            Some(d) => match v.get(1) {
                Some(fmt) => Value::Bytes(format(&d, &text(fmt)).into_bytes()),
                None => Value::DateTime(d),
            },
            None => Value::Null,
        },
        Func::Year => part(0, |d| i64::from(d.date.year)),
        Func::Month => part(0, |d| i64::from(d.date.month)),
        Func::Day => part(0, |d| i64::from(d.date.day)),
        Func::Hour | Func::Minute | Func::Second => match time_of_day(&v[0]) {
            Some((h, m, s)) => Value::Int(i64::from(match f {
                Func::Hour => h,
                Func::Minute => m,
                _ => s,
            })),
            None => Value::Null,
        },
        Func::Date => dt(0).map_or(Value::Null, |d| Value::Date(d.date)),
        Func::DayOfWeek => part(0, |d| weekday(d.date) + 1),
        Func::DayOfYear => part(0, |d| day_of_year(d.date)),
        Func::LastDay => dt(0).map_or(Value::Null, |d| {
            Value::Date(Date {
                day: temporal::days_in_month(d.date.year, d.date.month),
                ..d.date
            })
        }),
        _ => return None,
    }))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub(crate) fn days_of(d: Date) -> i64 {
    let (y, m) = (i64::from(d.year), i64::from(d.month));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d.day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `z` days after 1970-01-01 (`None` outside years 0..=9999).
pub(crate) fn date_of_days(z: i64) -> Option<Date> {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(Date {
        year: u16::try_from(year).ok().filter(|y| *y <= 9999)?,
        month,
        day,
    })
}

/// The datetime `secs` seconds (and `micros`) after the epoch, UTC.
pub(crate) fn datetime_from_unix(secs: i64, micros: u32) -> Option<DateTime> {
    from_micros(
        secs.checked_mul(1_000_000)?
            .checked_add(i64::from(micros))?,
    )
}

/// Microseconds since the epoch.
fn micros_of(dt: &DateTime) -> i64 {
    days_of(dt.date) * MICROS_PER_DAY
        + (i64::from(dt.hour) * 3600 + i64::from(dt.minute) * 60 + i64::from(dt.second)) * 1_000_000
        + i64::from(dt.micros)
}

fn from_micros(t: i64) -> Option<DateTime> {
    let date = date_of_days(t.div_euclid(MICROS_PER_DAY))?;
    let rest = t.rem_euclid(MICROS_PER_DAY);
    let secs = rest / 1_000_000;
    Some(DateTime {
        date,
        hour: (secs / 3600) as u8,
        minute: (secs / 60 % 60) as u8,
        second: (secs % 60) as u8,
        micros: (rest % 1_000_000) as u32,
    })
}

/// 0 = Sunday … 6 = Saturday.
fn weekday(d: Date) -> i64 {
    (days_of(d) + 4).rem_euclid(7)
}

fn day_of_year(d: Date) -> i64 {
    days_of(d)
        - days_of(Date {
            year: d.year,
            month: 1,
            day: 1,
        })
        + 1
}

/// A date argument as a datetime, or `None` (with warning 1292 for text
/// that is not a date).
fn datetime_arg(v: &Value, cx: &Ctx<'_>) -> Option<DateTime> {
    let found = to_datetime(v);
    if found.is_none() && !matches!(v, Value::Null) {
        cx.env
            .stmt
            .warn(1292, format!("Incorrect datetime value: '{}'", text(v)));
    }
    found.map(|(dt, _)| dt)
}

/// A value as a datetime, and whether it had a time of day.
pub(crate) fn to_datetime(v: &Value) -> Option<(DateTime, bool)> {
    let (dt, timed) = match v {
        Value::Date(d) => (DateTime::midnight(*d), false),
        Value::DateTime(dt) => (*dt, true),
        Value::Bytes(b) => temporal::parse_datetime(b)?,
        Value::Int(_) | Value::UInt(_) | Value::Decimal(_) => from_number(&text(v))?,
        _ => return None,
    };
    let real = dt.date.month >= 1
        && dt.date.day >= 1
        && dt.date.day <= temporal::days_in_month(dt.date.year, dt.date.month)
        && dt.hour < 24
        && dt.minute < 60
        && dt.second < 60;
    real.then_some((dt, timed))
}

/// `YYYYMMDD` or `YYYYMMDDhhmmss` as a datetime.
fn from_number(t: &str) -> Option<(DateTime, bool)> {
    let int = t.split('.').next()?;
    let field = |a: usize, b: usize| int.get(a..b)?.parse::<u16>().ok();
    let date = Date {
        year: field(0, 4)?,
        month: u8::try_from(field(4, 6)?).ok()?,
        day: u8::try_from(field(6, 8)?).ok()?,
    };
    match int.len() {
        8 => Some((DateTime::midnight(date), false)),
        14 => Some((
            DateTime {
                date,
                hour: u8::try_from(field(8, 10)?).ok()?,
                minute: u8::try_from(field(10, 12)?).ok()?,
                second: u8::try_from(field(12, 14)?).ok()?,
                micros: 0,
            },
            true,
        )),
        _ => None,
    }
}

/// Hours, minutes, seconds of a datetime or of a time's text (`'13:14:15'`).
fn time_of_day(v: &Value) -> Option<(u32, u32, u32)> {
    if let Some((dt, _)) = to_datetime(v) {
        return Some((dt.hour.into(), dt.minute.into(), dt.second.into()));
    }
    let t = text(v);
    let mut parts = t.trim().split(':');
    let mut next = || -> Option<u32> { parts.next()?.split('.').next()?.parse().ok() };
    let (h, m, s) = (next()?, next()?, next()?);
    (m < 60 && s < 60).then_some((h, m, s))
}

fn time_text(dt: &DateTime) -> String {
    format!("{:02}:{:02}:{:02}", dt.hour, dt.minute, dt.second)
}

/// `d ± INTERVAL n unit`.
pub(crate) fn date_arith(d: Value, n: Value, unit: IntervalUnit, sub: bool, cx: &Ctx<'_>) -> Value {
    if matches!(d, Value::Null) || matches!(n, Value::Null) {
        return Value::Null;
    }
    let Some((base, timed)) = to_datetime(&d) else {
        cx.env
            .stmt
            .warn(1292, format!("Incorrect datetime value: '{}'", text(&d)));
        return Value::Null;
    };
    let result = shift(base, &n, unit, sub);
    match result {
        Some(r) if !timed && is_date_unit(unit) => Value::Date(r.date),
        Some(r) => Value::DateTime(r),
        None => {
            cx.env
                .stmt
                .warn(1441, "Datetime function: datetime field overflow");
            Value::Null
        }
    }
}

fn shift(base: DateTime, n: &Value, unit: IntervalUnit, sub: bool) -> Option<DateTime> {
    let sign = if sub { -1 } else { 1 };
    let count = || int_arg(n).checked_mul(sign);
    let linear = |per: i64| -> Option<DateTime> {
        from_micros(micros_of(&base).checked_add(count()?.checked_mul(per)?)?)
    };
    match unit {
        IntervalUnit::Microsecond => linear(1),
        IntervalUnit::Second => {
            // Seconds may have a fraction: INTERVAL 1.5 SECOND.
            let micros = match temporal_number(n.clone()) {
                Value::Int(i) => i.checked_mul(1_000_000)?,
                Value::UInt(u) => i64::try_from(u).ok()?.checked_mul(1_000_000)?,
                Value::Decimal(d) => {
                    let r = num::rescale(d, 6, false)?;
                    i64::try_from(r.mantissa).ok()?
                }
                other => (double_of(&other) * 1e6).round() as i64,
            };
            from_micros(micros_of(&base).checked_add(micros.checked_mul(sign)?)?)
        }
        IntervalUnit::Minute => linear(60_000_000),
        IntervalUnit::Hour => linear(3_600_000_000),
        IntervalUnit::Day => linear(MICROS_PER_DAY),
        IntervalUnit::Week => linear(7 * MICROS_PER_DAY),
        IntervalUnit::Month => add_months(base, count()?),
        IntervalUnit::Quarter => add_months(base, count()?.checked_mul(3)?),
        IntervalUnit::Year => add_months(base, count()?.checked_mul(12)?),
    }
}

fn add_months(base: DateTime, months: i64) -> Option<DateTime> {
    let total =
        (i64::from(base.date.year) * 12 + i64::from(base.date.month) - 1).checked_add(months)?;
    let year = u16::try_from(total.div_euclid(12))
        .ok()
        .filter(|y| *y <= 9999)?;
    let month = (total.rem_euclid(12) + 1) as u8;
    let day = base.date.day.min(temporal::days_in_month(year, month));
    Some(DateTime {
        date: Date { year, month, day },
        ..base
    })
}

fn unix_timestamp(dt: DateTime) -> Value {
    let micros = micros_of(&dt);
    if micros < 0 || micros / 1_000_000 > MAX_UNIX_SECS {
        return Value::Int(0);
    }
    if dt.micros == 0 {
        Value::Int(micros / 1_000_000)
    } else {
        Value::Decimal(Decimal {
            mantissa: i128::from(micros),
            scale: 6,
        })
    }
}

fn from_unixtime(v: &Value) -> Option<DateTime> {
    let micros = match temporal_number(v.clone()) {
        Value::Int(i) => i.checked_mul(1_000_000)?,
        Value::UInt(u) => i64::try_from(u).ok()?.checked_mul(1_000_000)?,
        Value::Decimal(d) => i64::try_from(num::rescale(d, 6, true)?.mantissa).ok()?,
        other => {
            let f = double_of(&other) * 1e6;
            if !f.is_finite() || f.abs() > 9e18 {
                return None;
            }
            f.trunc() as i64
        }
    };
    if micros < 0 || micros / 1_000_000 > MAX_UNIX_SECS {
        return None;
    }
    from_micros(micros)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// DATE_FORMAT's specifiers (the week-number ones, %U %u %V %v %X %x, are
/// not supported and print their letter).
fn format(dt: &DateTime, fmt: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.chars();
    let month = MONTHS[usize::from(dt.date.month.clamp(1, 12)) - 1];
    let day = DAYS[weekday(dt.date) as usize];
    let h12 = match dt.hour % 12 {
        0 => 12,
        h => h,
    };
    let ampm = if dt.hour < 12 { "AM" } else { "PM" };
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            break;
        };
        // Writing to a String cannot fail.
        let _ = match spec {
            'Y' => write!(out, "{:04}", dt.date.year),
            'y' => write!(out, "{:02}", dt.date.year % 100),
            'm' => write!(out, "{:02}", dt.date.month),
            'c' => write!(out, "{}", dt.date.month),
            'M' => write!(out, "{month}"),
            'b' => write!(out, "{}", &month[..3]),
            'd' => write!(out, "{:02}", dt.date.day),
            'e' => write!(out, "{}", dt.date.day),
            'D' => write!(out, "{}{}", dt.date.day, ordinal(dt.date.day)),
            'j' => write!(out, "{:03}", day_of_year(dt.date)),
            'W' => write!(out, "{day}"),
            'a' => write!(out, "{}", &day[..3]),
            'w' => write!(out, "{}", weekday(dt.date)),
            'H' => write!(out, "{:02}", dt.hour),
            'k' => write!(out, "{}", dt.hour),
            'h' | 'I' => write!(out, "{h12:02}"),
            'l' => write!(out, "{h12}"),
            'i' => write!(out, "{:02}", dt.minute),
            'S' | 's' => write!(out, "{:02}", dt.second),
            'f' => write!(out, "{:06}", dt.micros),
            'p' => write!(out, "{ampm}"),
            'T' => write!(out, "{}", time_text(dt)),
            'r' => write!(out, "{h12:02}:{:02}:{:02} {ampm}", dt.minute, dt.second),
            other => write!(out, "{other}"),
        };
    }
    out
}

fn ordinal(day: u8) -> &'static str {
    match (day % 10, day % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(t: &str) -> DateTime {
        to_datetime(&Value::Bytes(t.as_bytes().to_vec()))
            .expect("a datetime")
            .0
    }

    #[test]
    fn civil_days_round_trip() {
        for z in [-719_528, -1, 0, 1, 19_782, 2_932_896] {
            let d = date_of_days(z).expect("in range");
            assert_eq!(days_of(d), z, "{d}");
        }
        assert_eq!(
            date_of_days(19_782).map(|d| d.to_string()),
            Some("2024-02-29".into())
        );
        assert_eq!(date_of_days(2_932_897), None);
    }

    #[test]
    fn interval_arithmetic() {
        let base = dt("2024-01-31 10:00:00");
        let month = shift(base, &Value::Int(1), IntervalUnit::Month, false).map(|d| d.to_string());
        assert_eq!(month.as_deref(), Some("2024-02-29 10:00:00"));
        let back = shift(base, &Value::Int(11), IntervalUnit::Hour, true).map(|d| d.to_string());
        assert_eq!(back.as_deref(), Some("2024-01-30 23:00:00"));
        let q = shift(base, &Value::Int(-1), IntervalUnit::Quarter, false).map(|d| d.to_string());
        assert_eq!(q.as_deref(), Some("2023-10-31 10:00:00"));
        assert_eq!(
            shift(base, &Value::Int(8000), IntervalUnit::Year, false),
            None
        );
        assert_eq!(
            shift(base, &Value::Int(i64::MAX), IntervalUnit::Day, false),
            None
        );
    }

    #[test]
    fn formats_and_timestamps() {
        let d = dt("2024-03-01 13:05:09");
        assert_eq!(
            format(
                &d,
                "%Y-%m-%d %H:%i:%s %W %M %D %j %p %r %T %% %y %c %e %a %b %l %k"
            ),
            "2024-03-01 13:05:09 Friday March 1st 061 PM 01:05:09 PM 13:05:09 % 24 3 1 Fri Mar 1 13"
        );
        assert_eq!(unix_timestamp(d), Value::Int(1_709_298_309));
        assert_eq!(from_unixtime(&Value::Int(1_709_298_309)), Some(d));
        assert_eq!(from_unixtime(&Value::Int(-1)), None);
        assert_eq!(weekday(d.date), 5);
        assert_eq!(
            to_datetime(&Value::Int(20_240_229)).map(|x| x.1),
            Some(false)
        );
        assert_eq!(to_datetime(&Value::Bytes(b"2023-02-29".to_vec())), None);
    }
}
