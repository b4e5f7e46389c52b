//! Text INSERTs with literal values, run as a cached prepared plan.
//!
//! Drivers that do not prepare statements (sysbench's `oltp_insert`, most
//! ORMs' bulk paths) send `INSERT INTO t (…) VALUES (1, 'a'), …` as text,
//! each with new values. Parsing and compiling each costs more than
//! running it, so [`insert_shape`] scans the text once, by hand, and
//! replaces every integer and plain string literal inside the VALUES
//! tuples with `?`: the session compiles that template once, as a
//! prepared statement, and runs it with the literals as parameters.
//!
//! A literal bound as a parameter is the same value the compiler makes of
//! it (`compile::number`, a string's bytes), and an INSERT's values only
//! reach the row through the same conversion either way, so the results,
//! errors and warnings are the prepared statement's. The scan is
//! deliberately narrow: anything it is not sure of — comments, escapes,
//! doubled or double quotes, charset introducers, decimals, hex, several
//! statements, INSERT … SELECT, ON DUPLICATE KEY UPDATE, a `?` already in
//! the text — gives `None`, and the statement takes the ordinary path.

use crate::types::Value;

use super::compile::number;

/// A text INSERT with its literals taken out.
#[derive(Debug, PartialEq)]
pub(crate) struct Shape {
    /// The statement with `?` where each literal was.
    pub template: String,
    /// The literals, in the text's order.
    pub params: Vec<Value>,
}

/// The shape of `sql` if it is a single `INSERT … VALUES (…), …` whose
/// literals can be taken out (see the module documentation).
pub(crate) fn insert_shape(sql: &str) -> Option<Shape> {
    let sql = sql.trim_end();
    let sql = sql.strip_suffix(';').unwrap_or(sql).trim();
    let b = sql.as_bytes();
    if !b.get(..6)?.eq_ignore_ascii_case(b"INSERT") || b.get(6).is_some_and(|&c| is_word(c)) {
        return None;
    }
    let mut template = String::with_capacity(sql.len());
    let mut params = Vec::new();
    // Inside VALUES, how deep in parentheses.
    let mut in_values = false;
    let mut depth = 0u32;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' => {
                if i > 0 && is_word(b[i - 1]) {
                    return None; // _utf8mb4'…', x'…', b'…'
                }
                let len = b[i + 1..].iter().position(|&q| q == b'\'')?;
                let body = &b[i + 1..i + 1 + len];
                let end = i + 2 + len;
                if body.contains(&b'\\') || b.get(end) == Some(&b'\'') || !in_values || depth == 0 {
                    return None;
                }
                params.push(Value::Bytes(body.to_vec()));
                template.push('?');
                i = end;
            }
            b'0'..=b'9' if i == 0 || !(is_word(b[i - 1]) || b[i - 1] == b'.') => {
                let len = b[i..]
                    .iter()
                    .position(|&d| !d.is_ascii_digit())
                    .unwrap_or(b.len() - i);
                let end = i + len;
                if b.get(end).is_some_and(|&d| is_word(d) || d == b'.') {
                    return None; // 1.5, 1e3, 0x41, 1abc
                }
                if !in_values || depth == 0 {
                    return None;
                }
                params.push(number(&sql[i..end]).ok()?);
                template.push('?');
                i = end;
            }
            b'`' => {
                let len = b[i + 1..].iter().position(|&q| q == b'`')?;
                template.push_str(&sql[i..i + len + 2]);
                i += len + 2;
            }
            b'(' => {
                depth += in_values as u32;
                template.push('(');
                i += 1;
            }
            b')' => {
                if in_values {
                    depth = depth.checked_sub(1)?;
                }
                template.push(')');
                i += 1;
            }
            b'"' | b'#' | b'?' | b';' | b'\\' => return None,
            b'-' if b.get(i + 1) == Some(&b'-') => return None,
            b'/' if b.get(i + 1) == Some(&b'*') => return None,
            c if is_word(c) => {
                let len = b[i..]
                    .iter()
                    .position(|&d| !is_word(d))
                    .unwrap_or(b.len() - i);
                let word = &sql[i..i + len];
                if word.eq_ignore_ascii_case("SELECT") {
                    return None;
                }
                if depth == 0 && in_values {
                    return None; // ON DUPLICATE KEY UPDATE, AS alias, …
                }
                if word.eq_ignore_ascii_case("VALUES") || word.eq_ignore_ascii_case("VALUE") {
                    in_values = true;
                }
                template.push_str(word);
                i += len;
            }
            // ASCII: a byte that is not a word's is never non-ASCII.
            c => {
                template.push(c as char);
                i += 1;
            }
        }
    }
    (in_values && depth == 0 && !params.is_empty()).then_some(Shape { template, params })
}

/// A byte of an unquoted identifier or keyword; every byte of a non-ASCII
/// character counts (MySQL allows them in identifiers).
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || !c.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(sql: &str) -> Option<(String, Vec<Value>)> {
        insert_shape(sql).map(|s| (s.template, s.params))
    }

    #[test]
    fn sysbench_insert_becomes_a_template() {
        let (t, p) =
            shape("INSERT INTO sbtest1 (id, k, c, pad) VALUES (0, 5012, '6863-…', '2207-x');")
                .expect("takes the literals out");
        assert_eq!(t, "INSERT INTO sbtest1 (id, k, c, pad) VALUES (?, ?, ?, ?)");
        assert_eq!(
            p,
            vec![
                Value::Int(0),
                Value::Int(5012),
                Value::Bytes("6863-…".as_bytes().to_vec()),
                Value::Bytes(b"2207-x".to_vec()),
            ]
        );
    }

    #[test]
    fn rows_negatives_nulls_and_expressions_keep_their_shape() {
        let (t, p) = shape("insert into `t 1`(é,b) values(-3,NULL),(18446744073709551615, 2+1)")
            .expect("takes the literals out");
        assert_eq!(t, "insert into `t 1`(é,b) values(-?,NULL),(?, ?+?)");
        assert_eq!(
            p,
            vec![
                Value::Int(3),
                Value::UInt(u64::MAX),
                Value::Int(2),
                Value::Int(1)
            ]
        );
    }

    proptest::proptest! {
        /// Any text: no panic, and a shape has one `?` (outside backquoted
        /// names) per literal taken out.
        #[test]
        fn any_text_scans_without_panic(tail in "[0-9a-c'`\"\\ ,()?;#*/é-]{0,40}") {
            let sql = format!("INSERT INTO t VALUES ({tail}");
            if let Some(s) = insert_shape(&sql) {
                let marks = s.template.split('`').step_by(2).map(|p| p.matches('?').count()).sum::<usize>();
                proptest::prop_assert_eq!(marks, s.params.len(), "{}", s.template);
            }
        }
    }

    #[test]
    fn anything_unsure_takes_the_ordinary_path() {
        for sql in [
            "INSERT INTO t VALUES ('it''s')",
            "INSERT INTO t VALUES ('a\\'b')",
            "INSERT INTO t VALUES (\"a\")",
            "INSERT INTO t VALUES (_utf8mb4'a')",
            "INSERT INTO t VALUES (x'41')",
            "INSERT INTO t VALUES (0x41)",
            "INSERT INTO t VALUES (1.5)",
            "INSERT INTO t VALUES (1e3)",
            "INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 2",
            "INSERT INTO t SELECT 1",
            "INSERT INTO t VALUES ((SELECT 1))",
            "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)",
            "INSERT INTO t VALUES (1) -- c",
            "INSERT INTO t VALUES (1) # c",
            "INSERT INTO t VALUES (/* c */ 1)",
            "INSERT INTO t VALUES (?)",
            "INSERT INTO t VALUES ('unterminated)",
            "INSERT INTO t VALUES (1",
            "INSERT INTO t VALUES (1))",
            "INSERT INTO t VALUES (NOW())",
            "INSERT INTO t SET a = 1",
            "INSERT INTO t3 VALUES (1) AS new",
            "INSERTX INTO t VALUES (1)",
            "REPLACE INTO t VALUES (1)",
            "SELECT 1",
        ] {
            assert_eq!(shape(sql), None, "{sql}");
        }
    }
}
