//! Prepared statements on the wire: the COM_STMT_PREPARE response header,
//! the parameters of COM_STMT_EXECUTE decoded into [`Value`]s, and the
//! per-connection state a statement needs between commands (its parameter
//! count, the parameter types last bound, long data).
//!
//! Invariants: the parsers never panic on any bytes; an execute without
//! new types reuses the types of the statement's last execute that sent
//! them (none yet is malformed); long data for a parameter replaces its
//! value in the next execute and is then cleared; long data is bounded by
//! `max_allowed_packet` per statement.

use std::collections::HashMap;

use super::codec::{Malformed, Reader, put_u16, put_u32};
use crate::types::{Date, DateTime, Value};

/// A parameter's bound type: the MySQL type byte and the unsigned flag.
pub(crate) type ParamType = (u8, bool);

/// What the connection remembers about one prepared statement.
#[derive(Clone, Debug, Default)]
pub(crate) struct Statement {
    pub params: u16,
    pub types: Option<Vec<ParamType>>,
    pub long_data: HashMap<u16, Vec<u8>>,
    pub long_data_bytes: usize,
    /// Long data went over the limit; the next execute fails.
    pub long_data_overflow: bool,
}

impl Statement {
    pub(crate) fn new(params: u16) -> Statement {
        Statement {
            params,
            ..Statement::default()
        }
    }

    /// COM_STMT_SEND_LONG_DATA's payload (after the stmt id and param id).
    pub(crate) fn append_long_data(&mut self, param: u16, data: &[u8], limit: usize) {
        if param >= self.params || self.long_data_overflow {
            return;
        }
        self.long_data_bytes += data.len();
        if self.long_data_bytes > limit {
            self.long_data_overflow = true;
            self.long_data.clear();
            return;
        }
        self.long_data
            .entry(param)
            .or_default()
            .extend_from_slice(data);
    }

    pub(crate) fn reset(&mut self) {
        self.long_data.clear();
        self.long_data_bytes = 0;
        self.long_data_overflow = false;
    }
}

/// COM_STMT_PREPARE_OK's first packet.
pub(crate) fn prepare_ok(out: &mut Vec<u8>, id: u32, columns: u16, params: u16) {
    out.push(0);
    put_u32(out, id);
    put_u16(out, columns);
    put_u16(out, params);
    out.push(0);
    put_u16(out, 0);
}

/// The statement id that starts COM_STMT_EXECUTE, CLOSE, RESET and
/// SEND_LONG_DATA payloads (after the command byte).
pub(crate) fn statement_id(body: &[u8]) -> Result<u32, Malformed> {
    Reader::new(body).u32()
}

/// COM_STMT_EXECUTE's body (after the command byte): the parameters.
pub(crate) fn parse_execute(body: &[u8], stmt: &mut Statement) -> Result<Vec<Value>, Malformed> {
    let mut r = Reader::new(body);
    let _id = r.u32()?;
    let _cursor_flags = r.u8()?;
    let _iterations = r.u32()?;
    let n = usize::from(stmt.params);
    if n == 0 {
        return Ok(Vec::new());
    }
    let nulls = r.take(n.div_ceil(8))?;
    if r.u8()? == 1 {
        let mut types = Vec::with_capacity(n);
        for _ in 0..n {
            let ty = r.u8()?;
            let flags = r.u8()?;
            types.push((ty, flags & 0x80 != 0));
        }
        stmt.types = Some(types);
    }
    let types = stmt
        .types
        .as_ref()
        .ok_or(Malformed("parameter types never sent"))?;
    let mut values = Vec::with_capacity(n);
    for (i, &(ty, unsigned)) in types.iter().enumerate() {
        let index = u16::try_from(i).map_err(|_| Malformed("too many parameters"))?;
        if let Some(data) = stmt.long_data.remove(&index) {
            values.push(Value::Bytes(data));
        } else if nulls[i / 8] & (1 << (i % 8)) != 0 {
            values.push(Value::Null);
        } else {
            values.push(binary_param(&mut r, ty, unsigned)?);
        }
    }
    Ok(values)
}

/// One parameter value in the binary protocol.
fn binary_param(r: &mut Reader<'_>, ty: u8, unsigned: bool) -> Result<Value, Malformed> {
    let int = |v: i64, u: u64| {
        if unsigned {
            Value::UInt(u)
        } else {
            Value::Int(v)
        }
    };
    Ok(match ty {
        6 => Value::Null,
        1 => {
            let b = r.u8()?;
            int(i64::from(b as i8), u64::from(b))
        }
        2 | 13 => {
            let v = r.u16()?;
            int(i64::from(v as i16), u64::from(v))
        }
        3 | 9 => {
            let v = r.u32()?;
            int(i64::from(v as i32), u64::from(v))
        }
        8 => {
            let v = r.u64()?;
            int(v as i64, v)
        }
        4 => Value::Double(f64::from(f32::from_le_bytes(r.u32()?.to_le_bytes()))),
        5 => Value::Double(f64::from_bits(r.u64()?)),
        7 | 10 | 12 => binary_date(r, ty == 10)?,
        11 => Value::Bytes(binary_time(r)?.into_bytes()),
        0 | 15 | 16 | 245..=255 => Value::Bytes(r.lenenc_bytes()?.to_vec()),
        _ => return Err(Malformed("unknown parameter type")),
    })
}

fn binary_date(r: &mut Reader<'_>, date_only: bool) -> Result<Value, Malformed> {
    let len = r.u8()?;
    let mut body = Reader::new(r.take(usize::from(len))?);
    let mut date = Date {
        year: 0,
        month: 0,
        day: 0,
    };
    let mut dt = DateTime {
        date,
        hour: 0,
        minute: 0,
        second: 0,
        micros: 0,
    };
    match len {
        0 => {}
        4 | 7 | 11 => {
            date = Date {
                year: body.u16()?,
                month: body.u8()?,
                day: body.u8()?,
            };
            dt.date = date;
            if len >= 7 {
                (dt.hour, dt.minute, dt.second) = (body.u8()?, body.u8()?, body.u8()?);
            }
            if len == 11 {
                dt.micros = body.u32()?;
            }
        }
        _ => return Err(Malformed("bad date length")),
    }
    Ok(if date_only {
        Value::Date(date)
    } else {
        Value::DateTime(dt)
    })
}

/// A binary TIME as its text `[-]hh:mm:ss[.ffffff]`.
fn binary_time(r: &mut Reader<'_>) -> Result<String, Malformed> {
    let len = r.u8()?;
    let mut body = Reader::new(r.take(usize::from(len))?);
    if len == 0 {
        return Ok("00:00:00".to_string());
    }
    if len != 8 && len != 12 {
        return Err(Malformed("bad time length"));
    }
    let neg = body.u8()? != 0;
    let days = body.u32()?;
    let (h, m, s) = (body.u8()?, body.u8()?, body.u8()?);
    let hours = u64::from(days) * 24 + u64::from(h);
    let mut text = format!("{}{hours:02}:{m:02}:{s:02}", if neg { "-" } else { "" });
    if len == 12 {
        text.push_str(&format!(".{:06}", body.u32()?));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::super::codec::put_lenenc_bytes;
    use super::*;
    use proptest::prelude::*;

    /// A COM_STMT_EXECUTE body with the given typed parameters.
    fn execute_body(id: u32, params: &[(u8, u8, Option<Vec<u8>>)], with_types: bool) -> Vec<u8> {
        let mut out = Vec::new();
        put_u32(&mut out, id);
        out.push(0);
        put_u32(&mut out, 1);
        if params.is_empty() {
            return out;
        }
        let mut nulls = vec![0u8; params.len().div_ceil(8)];
        for (i, p) in params.iter().enumerate() {
            if p.2.is_none() {
                nulls[i / 8] |= 1 << (i % 8);
            }
        }
        out.extend_from_slice(&nulls);
        out.push(u8::from(with_types));
        if with_types {
            for p in params {
                out.extend_from_slice(&[p.0, p.1]);
            }
        }
        for p in params {
            if let Some(v) = &p.2 {
                out.extend_from_slice(v);
            }
        }
        out
    }

    fn sample() -> Vec<(u8, u8, Option<Vec<u8>>)> {
        let mut s = Vec::new();
        put_lenenc_bytes(&mut s, b"hi");
        vec![
            (8, 0, Some((-5i64).to_le_bytes().to_vec())),
            (8, 0x80, Some(u64::MAX.to_le_bytes().to_vec())),
            (1, 0, Some(vec![0xFF])),
            (5, 0, Some(2.5f64.to_le_bytes().to_vec())),
            (253, 0, Some(s)),
            (6, 0, None),
            (12, 0, Some(vec![7, 0xE8, 0x07, 2, 9, 1, 2, 3])),
            (10, 0, Some(vec![4, 0xE8, 0x07, 2, 9])),
            (3, 0x80, None),
        ]
    }

    #[test]
    fn decodes_parameters_and_remembers_types() {
        let mut stmt = Statement::new(9);
        let values = parse_execute(&execute_body(1, &sample(), true), &mut stmt).expect("parses");
        let dt = DateTime {
            date: Date {
                year: 2024,
                month: 2,
                day: 9,
            },
            hour: 1,
            minute: 2,
            second: 3,
            micros: 0,
        };
        assert_eq!(
            values,
            vec![
                Value::Int(-5),
                Value::UInt(u64::MAX),
                Value::Int(-1),
                Value::Double(2.5),
                Value::Bytes(b"hi".to_vec()),
                Value::Null,
                Value::DateTime(dt),
                Value::Date(dt.date),
                Value::Null,
            ]
        );
        let again = parse_execute(&execute_body(1, &sample(), false), &mut stmt).expect("parses");
        assert_eq!(again, values);
        let mut fresh = Statement::new(9);
        assert!(parse_execute(&execute_body(1, &sample(), false), &mut fresh).is_err());
    }

    #[test]
    fn long_data_replaces_a_value_once() {
        let mut stmt = Statement::new(1);
        stmt.append_long_data(0, b"ab", 10);
        stmt.append_long_data(0, b"cd", 10);
        stmt.append_long_data(3, b"ignored", 10);
        let body = execute_body(1, &[(252, 0, Some(vec![]))], true);
        let body = body.as_slice();
        // The value is absent from the packet when long data was sent.
        assert_eq!(
            parse_execute(body, &mut stmt),
            Ok(vec![Value::Bytes(b"abcd".to_vec())])
        );
        assert!(parse_execute(body, &mut stmt).is_err());
        stmt.append_long_data(0, &[0; 11], 10);
        assert!(stmt.long_data_overflow);
        stmt.reset();
        assert!(!stmt.long_data_overflow);
    }

    #[test]
    fn time_parameters_become_text() {
        let mut stmt = Statement::new(1);
        let time = vec![12, 1, 1, 0, 0, 0, 2, 3, 4, 5, 0, 0, 0];
        let values = parse_execute(&execute_body(1, &[(11, 0, Some(time))], true), &mut stmt);
        assert_eq!(values, Ok(vec![Value::Bytes(b"-26:03:04.000005".to_vec())]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn random_execute_bodies_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..80),
            params in 0u16..20,
            typed in any::<bool>(),
        ) {
            let mut stmt = Statement::new(params);
            if typed {
                stmt.types = Some(vec![(253, false); usize::from(params)]);
            }
            if let Ok(values) = parse_execute(&body, &mut stmt) {
                prop_assert_eq!(values.len(), usize::from(params));
            }
        }

        #[test]
        fn mutated_execute_bodies_never_panic(
            flips in proptest::collection::vec(any::<(usize, u8)>(), 1..4),
            cut in any::<usize>(),
            with_types in any::<bool>(),
        ) {
            let mut body = execute_body(1, &sample(), with_types);
            for (i, x) in flips {
                let i = i % body.len();
                body[i] ^= x;
            }
            body.truncate(cut % (body.len() + 1));
            let mut stmt = Statement::new(9);
            stmt.types = Some(sample().iter().map(|p| (p.0, false)).collect());
            if let Ok(values) = parse_execute(&body, &mut stmt) {
                prop_assert_eq!(values.len(), 9);
            }
        }
    }
}
