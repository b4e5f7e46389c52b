//! String functions. Positions and lengths count characters (utf8mb4),
//! except LENGTH, which counts bytes; positions start at 1, and a negative
//! SUBSTRING position counts from the end. LOCATE/INSTR compare under the
//! arguments' collation; REPLACE and TRIM compare bytes, as MySQL does.

use crate::types::{Collation, Value};

use super::super::SqlError;
use super::super::expr::{Ctx, Expr};
use super::number::int_arg;
use super::{Func, MAX_RESULT_BYTES, text, too_long};

/// Evaluates `f` if it is a string function (`None` otherwise).
pub(super) fn call(
    f: Func,
    v: &[Value],
    args: &[Expr],
    cx: &Ctx<'_>,
) -> Option<Result<Value, SqlError>> {
    let s = |i: usize| v.get(i).map(text).unwrap_or_default();
    let n = |i: usize| v.get(i).map_or(0, int_arg);
    let bytes = |t: String| Value::Bytes(t.into_bytes());
    Some(Ok(match f {
        Func::Concat => {
            let total: usize = v.iter().map(|x| super::text_bytes(x).len()).sum();
            if total > MAX_RESULT_BYTES {
                return Some(Ok(too_long("concat", cx)));
            }
            let mut out = Vec::with_capacity(total);
            v.iter().for_each(|x| out.extend(super::text_bytes(x)));
            Value::Bytes(out)
        }
        Func::Length => Value::Int(super::text_bytes(&v[0]).len() as i64),
        Func::CharLength => Value::Int(s(0).chars().count() as i64),
        Func::Upper => bytes(s(0).to_uppercase()),
        Func::Lower => bytes(s(0).to_lowercase()),
        Func::Substring => bytes(substring(&s(0), n(1), v.get(2).map(int_arg))),
        Func::Trim => bytes(trim(&s(0), v.get(1).map(text).as_deref(), true, true)),
        Func::TrimLeading => bytes(trim(&s(0), v.get(1).map(text).as_deref(), true, false)),
        Func::TrimTrailing => bytes(trim(&s(0), v.get(1).map(text).as_deref(), false, true)),
        Func::Ltrim => bytes(s(0).trim_start_matches(' ').to_string()),
        Func::Rtrim => bytes(s(0).trim_end_matches(' ').to_string()),
        Func::Replace => {
            let (from, to) = (s(1), s(2));
            let src = s(0);
            if from.is_empty() {
                bytes(src)
            } else {
                let count = src.matches(from.as_str()).count();
                let len = src.len() - count * from.len() + count * to.len();
                if len > MAX_RESULT_BYTES {
                    return Some(Ok(too_long("replace", cx)));
                }
                bytes(src.replace(from.as_str(), &to))
            }
        }
        Func::Left => bytes(s(0).chars().take(clamp(n(1))).collect()),
        Func::Right => {
            let t = s(0);
            let len = t.chars().count();
            bytes(t.chars().skip(len.saturating_sub(clamp(n(1)))).collect())
        }
        Func::Lpad | Func::Rpad => return Some(Ok(pad(&s(0), n(1), &s(2), f == Func::Lpad, cx))),
        Func::Repeat => {
            let (t, times) = (s(0), clamp(n(1)));
            if t.len().saturating_mul(times) > MAX_RESULT_BYTES {
                return Some(Ok(too_long("repeat", cx)));
            }
            bytes(t.repeat(times))
        }
        Func::Locate => {
            let coll = super::super::compile::collation_of(&args.iter().collect::<Vec<_>>());
            let start = if v.len() > 2 { n(2) } else { 1 };
            Value::Int(locate(&s(0), &s(1), start, coll))
        }
        Func::Instr => {
            let coll = super::super::compile::collation_of(&args.iter().collect::<Vec<_>>());
            Value::Int(locate(&s(1), &s(0), 1, coll))
        }
        Func::Reverse => bytes(s(0).chars().rev().collect()),
        _ => return None,
    }))
}

/// CONCAT_WS(sep, …): NULL arguments are skipped; a NULL separator is NULL.
pub(super) fn concat_ws(args: &[Expr], cx: &Ctx<'_>) -> Result<Value, SqlError> {
    let Some((sep, rest)) = args.split_first() else {
        return Ok(Value::Null);
    };
    let sep = match sep.eval(cx)? {
        Value::Null => return Ok(Value::Null),
        v => super::text_bytes(&v),
    };
    let mut out = Vec::new();
    let mut first = true;
    for a in rest {
        let v = a.eval(cx)?;
        if matches!(v, Value::Null) {
            continue;
        }
        if !first {
            out.extend_from_slice(&sep);
        }
        first = false;
        out.extend(super::text_bytes(&v));
        if out.len() > MAX_RESULT_BYTES {
            return Ok(too_long("concat_ws", cx));
        }
    }
    Ok(Value::Bytes(out))
}

/// A count argument as a `usize` (negative counts are 0).
fn clamp(n: i64) -> usize {
    usize::try_from(n.max(0)).unwrap_or(usize::MAX)
}

/// SUBSTRING(s, pos [, len]): `pos` 0 gives '', negative counts from the end.
pub(super) fn substring(s: &str, pos: i64, len: Option<i64>) -> String {
    let chars = s.chars().count() as i64;
    let start = match pos {
        0 => return String::new(),
        p if p > 0 => p - 1,
        p if p.unsigned_abs() > chars.unsigned_abs() => return String::new(),
        p => chars + p,
    };
    let take = match len {
        Some(l) if l <= 0 => return String::new(),
        Some(l) => clamp(l),
        None => usize::MAX,
    };
    s.chars().skip(clamp(start)).take(take).collect()
}

/// TRIM: removes every leading and/or trailing `rem` (default one space).
fn trim(s: &str, rem: Option<&str>, leading: bool, trailing: bool) -> String {
    let rem = rem.unwrap_or(" ");
    if rem.is_empty() {
        return s.to_string();
    }
    let mut t = s;
    if leading {
        while let Some(rest) = t.strip_prefix(rem) {
            t = rest;
        }
    }
    if trailing {
        while let Some(rest) = t.strip_suffix(rem) {
            t = rest;
        }
    }
    t.to_string()
}

/// LPAD / RPAD to `len` characters; a longer string is cut to `len`;
/// a negative length, or an empty pad that would be needed, is NULL.
fn pad(s: &str, len: i64, padding: &str, left: bool, cx: &Ctx<'_>) -> Value {
    if len < 0 {
        return Value::Null;
    }
    let len = clamp(len);
    let have = s.chars().count();
    if len <= have {
        return Value::Bytes(s.chars().take(len).collect::<String>().into_bytes());
    }
    if padding.is_empty() {
        return Value::Null;
    }
    let need = len - have;
    let max_char = padding.chars().map(char::len_utf8).max().unwrap_or(1);
    if s.len().saturating_add(need.saturating_mul(max_char)) > MAX_RESULT_BYTES {
        return too_long(if left { "lpad" } else { "rpad" }, cx);
    }
    let fill: String = padding.chars().cycle().take(need).collect();
    let out = if left {
        format!("{fill}{s}")
    } else {
        format!("{s}{fill}")
    };
    Value::Bytes(out.into_bytes())
}

/// LOCATE(needle, hay, start): the 1-based character position of the
/// first match at or after `start`, 0 if none.
fn locate(needle: &str, hay: &str, start: i64, coll: Collation) -> i64 {
    let hay: Vec<char> = hay.chars().collect();
    let needle: Vec<char> = needle.chars().collect();
    if start < 1 || start as usize > hay.len() + 1 {
        return 0;
    }
    let from = (start - 1) as usize;
    if needle.is_empty() {
        return start;
    }
    let eq = |a: char, b: char| super::super::expr::char_eq(a, b, coll);
    (from..hay.len())
        .find(|&i| {
            i + needle.len() <= hay.len() && needle.iter().zip(&hay[i..]).all(|(n, h)| eq(*n, *h))
        })
        .map_or(0, |i| i as i64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_positions() {
        assert_eq!(substring("Quadratically", 5, None), "ratically");
        assert_eq!(substring("Quadratically", 5, Some(6)), "ratica");
        assert_eq!(substring("Sakila", -3, None), "ila");
        assert_eq!(substring("Sakila", -5, Some(3)), "aki");
        assert_eq!(substring("Sakila", 0, None), "");
        assert_eq!(substring("Sakila", -7, None), "");
        assert_eq!(substring("Sakila", 2, Some(0)), "");
        assert_eq!(substring("héllo", 2, Some(2)), "él");
        assert_eq!(substring("abc", i64::MIN, Some(i64::MAX)), "");
        assert_eq!(substring("abc", i64::MAX, None), "");
    }

    #[test]
    fn trim_and_locate() {
        assert_eq!(trim("xxbarxx", Some("x"), true, false), "barxx");
        assert_eq!(trim("xxbarxx", Some("x"), true, true), "bar");
        assert_eq!(trim("barxyz", Some("xyz"), false, true), "bar");
        assert_eq!(trim("  bar  ", None, true, true), "bar");
        let ci = Collation::Utf8mb4GeneralCi;
        assert_eq!(locate("bar", "foobarbar", 1, ci), 4);
        assert_eq!(locate("bar", "foobarbar", 5, ci), 7);
        assert_eq!(locate("xbar", "foobar", 1, ci), 0);
        assert_eq!(locate("B", "abc", 1, ci), 2);
        assert_eq!(locate("B", "abc", 1, Collation::Utf8mb4Bin), 0);
        assert_eq!(locate("", "abc", 2, ci), 2);
        assert_eq!(locate("a", "abc", 0, ci), 0);
    }
}
