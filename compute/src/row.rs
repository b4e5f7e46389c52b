//! The row format: how a row's values are stored in a B+tree leaf.
//!
//! ```text
//! row    = varint(schema_version) varint(count << 1 | tagged) nulls value*
//! nulls  = ceil(count / 8) bytes, bit i (LSB first) set when column i is
//!          NULL; bits past `count` are zero
//! value  = one per non-NULL column, in column order
//! ```
//!
//! Varints are LEB128. In an untagged row (`tagged = 0`, every row whose
//! values are in their columns' stored form) a value is written in its
//! column's encoding: integers in the column's width (1, 2, 3, 4 or 8
//! bytes, little-endian, two's complement for signed columns), DOUBLE as
//! its 8 IEEE bytes, DECIMAL(p, s) as the mantissa at scale `s` in 8 bytes
//! (p <= 18) or 16, DATE as year (2 bytes), month, day, DATETIME and
//! TIMESTAMP packed in 8 bytes (see `pack_datetime`), strings and blobs
//! as `varint(len)` and the bytes. A row with a value that does not fit
//! its column (which `coerce` never produces) is written tagged instead:
//! each value is a variant tag and a self-describing encoding, so nothing
//! is lost or mangled.
//!
//! A row has at most as many columns as the schema it is decoded with: a
//! row written before columns were added decodes to its own columns, and
//! the caller appends the defaults. Decoding never panics and allocates
//! no more than the row's own bytes and one slot per column.

use crate::types::coerce::int_range;
use crate::types::{ColumnType, Date, DateTime, Decimal, IntWidth, Value};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("corrupt row: {0}")]
pub struct RowError(pub String);

fn corrupt(what: impl Into<String>) -> RowError {
    RowError(what.into())
}

/// Encodes a row of `values` (coerced to `types`) at `schema_version`.
///
/// `values` should hold one value per column of `types`; fewer are written
/// as a row of that many columns. Values of the wrong variant or beyond
/// their column's range are written losslessly in the tagged form (and
/// more values than `types` too, though `decode_row` with the same `types`
/// then refuses the row).
pub fn encode_row(schema_version: u32, types: &[ColumnType], values: &[Value]) -> Vec<u8> {
    let tagged = values.len() > types.len()
        || values
            .iter()
            .zip(types)
            .any(|(v, ty)| !matches!(v, Value::Null) && !fits(ty, v));
    let mut out = Vec::with_capacity(8 + values.len() * 9);
    put_varint(&mut out, u64::from(schema_version));
    put_varint(&mut out, (values.len() as u64) << 1 | u64::from(tagged));
    let mut nulls = vec![0u8; values.len().div_ceil(8)];
    for (i, v) in values.iter().enumerate() {
        if matches!(v, Value::Null) {
            nulls[i / 8] |= 1 << (i % 8);
        }
    }
    out.extend_from_slice(&nulls);
    for (i, v) in values.iter().enumerate() {
        match v {
            Value::Null => {}
            _ if tagged => put_tagged(&mut out, v),
            _ => put_value(&mut out, &types[i], v),
        }
    }
    out
}

/// The schema version a row was written with.
pub fn row_schema_version(bytes: &[u8]) -> Result<u32, RowError> {
    Reader(bytes).version()
}

/// Decodes a row written with the schema whose column types are `types`
/// (or an earlier one with fewer columns): exactly the values stored.
pub fn decode_row(types: &[ColumnType], bytes: &[u8]) -> Result<Vec<Value>, RowError> {
    let mut r = Reader(bytes);
    r.version()?;
    let header = r.varint()?;
    let tagged = header & 1 == 1;
    let count = usize::try_from(header >> 1).unwrap_or(usize::MAX);
    if count > types.len() {
        return Err(corrupt(format!(
            "{count} columns; the schema has {}",
            types.len()
        )));
    }
    let nulls = r.take(count.div_ceil(8))?;
    if count % 8 != 0 && nulls[count / 8] >> (count % 8) != 0 {
        return Err(corrupt("NULL bits set past the last column"));
    }
    let mut values = Vec::with_capacity(count.min(bytes.len()));
    for (i, ty) in types.iter().enumerate().take(count) {
        let value = if nulls[i / 8] & (1 << (i % 8)) != 0 {
            Value::Null
        } else if tagged {
            r.tagged()?
        } else {
            r.value(ty)?
        };
        values.push(value);
    }
    if !r.0.is_empty() {
        return Err(corrupt(format!(
            "{} bytes after the last column",
            r.0.len()
        )));
    }
    Ok(values)
}

fn int_bytes(width: IntWidth) -> usize {
    match width {
        IntWidth::Tiny => 1,
        IntWidth::Small => 2,
        IntWidth::Medium => 3,
        IntWidth::Int => 4,
        IntWidth::Big => 8,
    }
}

fn in_range(width: IntWidth, unsigned: bool, n: i128) -> bool {
    let (min, max) = int_range(width, unsigned);
    (min..=max).contains(&n)
}

/// Whether a non-NULL `v` has the untagged encoding of a `ty` column.
fn fits(ty: &ColumnType, v: &Value) -> bool {
    match (ty, v) {
        (
            ColumnType::Int {
                width,
                unsigned: false,
            },
            Value::Int(i),
        ) => in_range(*width, false, i128::from(*i)),
        (
            ColumnType::Int {
                width,
                unsigned: true,
            },
            Value::UInt(u),
        ) => in_range(*width, true, i128::from(*u)),
        (ColumnType::Boolean, Value::Int(i)) => i8::try_from(*i).is_ok(),
        (ColumnType::Double, Value::Double(_)) => true,
        (ColumnType::Decimal { precision, scale }, Value::Decimal(d)) => {
            d.scale == *scale && (*precision > 18 || i64::try_from(d.mantissa).is_ok())
        }
        (
            ColumnType::Char { .. }
            | ColumnType::VarChar { .. }
            | ColumnType::Text { .. }
            | ColumnType::Blob { .. },
            Value::Bytes(_),
        ) => true,
        (ColumnType::Date, Value::Date(_)) => true,
        (ColumnType::DateTime | ColumnType::Timestamp, Value::DateTime(dt)) => {
            pack_datetime(dt).is_some()
        }
        _ => false,
    }
}

/// Writes a value that [`fits`] its column.
fn put_value(out: &mut Vec<u8>, ty: &ColumnType, v: &Value) {
    match (ty, v) {
        (ColumnType::Int { width, .. }, Value::Int(i)) => {
            out.extend_from_slice(&i.to_le_bytes()[..int_bytes(*width)]);
        }
        (ColumnType::Int { width, .. }, Value::UInt(u)) => {
            out.extend_from_slice(&u.to_le_bytes()[..int_bytes(*width)]);
        }
        (ColumnType::Boolean, Value::Int(i)) => out.push(i.to_le_bytes()[0]),
        (ColumnType::Decimal { precision, .. }, Value::Decimal(d)) => {
            if *precision <= 18 {
                out.extend_from_slice(&(d.mantissa as i64).to_le_bytes());
            } else {
                out.extend_from_slice(&d.mantissa.to_le_bytes());
            }
        }
        (_, Value::DateTime(dt)) => {
            let packed = pack_datetime(dt).unwrap_or_default();
            out.extend_from_slice(&packed.to_le_bytes());
        }
        (_, v) => put_common(out, v),
    }
}

/// The encodings the tagged and untagged forms share.
fn put_common(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => {}
        Value::Int(i) => out.extend_from_slice(&i.to_le_bytes()),
        Value::UInt(u) => out.extend_from_slice(&u.to_le_bytes()),
        Value::Double(f) => out.extend_from_slice(&f.to_bits().to_le_bytes()),
        Value::Decimal(d) => {
            out.push(d.scale);
            out.extend_from_slice(&d.mantissa.to_le_bytes());
        }
        Value::Bytes(b) => {
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Date(d) => {
            out.extend_from_slice(&d.year.to_le_bytes());
            out.extend_from_slice(&[d.month, d.day]);
        }
        Value::DateTime(dt) => {
            put_common(out, &Value::Date(dt.date));
            out.extend_from_slice(&[dt.hour, dt.minute, dt.second]);
            out.extend_from_slice(&dt.micros.to_le_bytes());
        }
    }
}

const TAG_INT: u8 = 1;
const TAG_UINT: u8 = 2;
const TAG_DOUBLE: u8 = 3;
const TAG_DECIMAL: u8 = 4;
const TAG_BYTES: u8 = 5;
const TAG_DATE: u8 = 6;
const TAG_DATETIME: u8 = 7;

fn put_tagged(out: &mut Vec<u8>, v: &Value) {
    let tag = match v {
        Value::Null => return,
        Value::Int(_) => TAG_INT,
        Value::UInt(_) => TAG_UINT,
        Value::Double(_) => TAG_DOUBLE,
        Value::Decimal(_) => TAG_DECIMAL,
        Value::Bytes(_) => TAG_BYTES,
        Value::Date(_) => TAG_DATE,
        Value::DateTime(_) => TAG_DATETIME,
    };
    out.push(tag);
    put_common(out, v);
}

/// Bit layout of a packed datetime, low to high: micros (20 bits), second
/// (6), minute (6), hour (5), day (5), month (4), year (14).
const DATETIME_FIELDS: [u32; 7] = [20, 6, 6, 5, 5, 4, 14];

/// A datetime in 8 bytes, or `None` if a field is too large for its bits.
fn pack_datetime(dt: &DateTime) -> Option<u64> {
    let fields = [
        u64::from(dt.micros),
        u64::from(dt.second),
        u64::from(dt.minute),
        u64::from(dt.hour),
        u64::from(dt.date.day),
        u64::from(dt.date.month),
        u64::from(dt.date.year),
    ];
    let mut packed = 0u64;
    let mut shift = 0;
    for (value, bits) in fields.into_iter().zip(DATETIME_FIELDS) {
        if value >> bits != 0 {
            return None;
        }
        packed |= value << shift;
        shift += bits;
    }
    Some(packed)
}

fn unpack_datetime(packed: u64) -> DateTime {
    let mut fields = [0u64; 7];
    let mut shift = 0;
    for (field, bits) in fields.iter_mut().zip(DATETIME_FIELDS) {
        *field = (packed >> shift) & ((1 << bits) - 1);
        shift += bits;
    }
    // Each field was masked to at most 20 bits, within its type.
    let [micros, second, minute, hour, day, month, year] = fields;
    DateTime {
        date: Date {
            year: year as u16,
            month: month as u8,
            day: day as u8,
        },
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        micros: micros as u32,
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The unread rest of a row.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RowError> {
        if n > self.0.len() {
            return Err(corrupt(format!("{n} bytes wanted, {} left", self.0.len())));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RowError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, RowError> {
        Ok(self.array::<1>()?[0])
    }

    fn varint(&mut self) -> Result<u64, RowError> {
        let mut n = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7F);
            if i == 9 && bits > 1 {
                return Err(corrupt("varint overflows 64 bits"));
            }
            n |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(corrupt("varint longer than 10 bytes"))
    }

    fn version(&mut self) -> Result<u32, RowError> {
        let version = self.varint()?;
        u32::try_from(version).map_err(|_| corrupt(format!("schema version {version}")))
    }

    /// `width` little-endian bytes, sign-extended when `signed`.
    fn int(&mut self, width: usize, signed: bool) -> Result<u64, RowError> {
        let mut buf = [0u8; 8];
        buf[..width].copy_from_slice(self.take(width)?);
        let n = u64::from_le_bytes(buf);
        let unused = 64 - 8 * width as u32;
        Ok(if signed && unused > 0 {
            (((n << unused) as i64) >> unused) as u64
        } else {
            n
        })
    }

    fn value(&mut self, ty: &ColumnType) -> Result<Value, RowError> {
        Ok(match ty {
            ColumnType::Int {
                width,
                unsigned: false,
            } => Value::Int(self.int(int_bytes(*width), true)? as i64),
            ColumnType::Int {
                width,
                unsigned: true,
            } => Value::UInt(self.int(int_bytes(*width), false)?),
            ColumnType::Boolean => Value::Int(self.int(1, true)? as i64),
            ColumnType::Decimal { precision, scale } => {
                let mantissa = if *precision <= 18 {
                    i128::from(i64::from_le_bytes(self.array()?))
                } else {
                    i128::from_le_bytes(self.array()?)
                };
                Value::Decimal(Decimal {
                    mantissa,
                    scale: *scale,
                })
            }
            ColumnType::DateTime | ColumnType::Timestamp => {
                Value::DateTime(unpack_datetime(u64::from_le_bytes(self.array()?)))
            }
            ColumnType::Double => self.common(TAG_DOUBLE)?,
            ColumnType::Char { .. }
            | ColumnType::VarChar { .. }
            | ColumnType::Text { .. }
            | ColumnType::Blob { .. } => self.common(TAG_BYTES)?,
            ColumnType::Date => self.common(TAG_DATE)?,
        })
    }

    fn tagged(&mut self) -> Result<Value, RowError> {
        let tag = self.u8()?;
        self.common(tag)
    }

    /// A value in the encoding [`put_common`] writes for the variant `tag`.
    fn common(&mut self, tag: u8) -> Result<Value, RowError> {
        Ok(match tag {
            TAG_INT => Value::Int(i64::from_le_bytes(self.array()?)),
            TAG_UINT => Value::UInt(u64::from_le_bytes(self.array()?)),
            TAG_DOUBLE => Value::Double(f64::from_bits(u64::from_le_bytes(self.array()?))),
            TAG_DECIMAL => {
                let scale = self.u8()?;
                let mantissa = i128::from_le_bytes(self.array()?);
                Value::Decimal(Decimal { mantissa, scale })
            }
            TAG_BYTES => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| corrupt(format!("length {len}")))?;
                Value::Bytes(self.take(len)?.to_vec())
            }
            TAG_DATE => Value::Date(self.date()?),
            TAG_DATETIME => {
                let date = self.date()?;
                let [hour, minute, second] = self.array()?;
                let micros = u32::from_le_bytes(self.array()?);
                Value::DateTime(DateTime {
                    date,
                    hour,
                    minute,
                    second,
                    micros,
                })
            }
            other => return Err(corrupt(format!("unknown value tag {other}"))),
        })
    }

    fn date(&mut self) -> Result<Date, RowError> {
        let year = u16::from_le_bytes(self.array()?);
        let [month, day] = self.array()?;
        Ok(Date { year, month, day })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::types::Collation;
    use crate::types::strategies::{arb_column_type, arb_row};

    /// Values equal as stored: doubles by their bits (NaN is never stored,
    /// but a tagged row keeps it).
    fn same(a: &[Value], b: &[Value]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (Value::Double(x), Value::Double(y)) => x.to_bits() == y.to_bits(),
                _ => x == y,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn rows_round_trip((types, values) in arb_row(), version in any::<u32>()) {
            let bytes = encode_row(version, &types, &values);
            prop_assert_eq!(row_schema_version(&bytes), Ok(version));
            let decoded = decode_row(&types, &bytes).expect("a row we wrote decodes");
            prop_assert!(same(&decoded, &values), "{:?} vs {:?}", decoded, values);
            // Coerced values never need the tagged form.
            let header = Reader(&bytes).skip_version_and_header();
            prop_assert_eq!(header & 1, 0);
        }

        #[test]
        fn old_rows_decode_to_their_own_columns(
            (types, values) in arb_row(),
            added in prop::collection::vec(arb_column_type(), 1..4),
        ) {
            let bytes = encode_row(1, &types, &values);
            let mut wider = types.clone();
            wider.extend(added);
            let decoded = decode_row(&wider, &bytes).expect("an older row decodes");
            prop_assert!(same(&decoded, &values));
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(
            types in prop::collection::vec(arb_column_type(), 0..8),
            bytes in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = row_schema_version(&bytes);
            if let Ok(values) = decode_row(&types, &bytes) {
                prop_assert!(values.len() <= types.len());
            }
        }

        #[test]
        fn damaged_rows_decode_or_fail_cleanly(
            (types, values) in arb_row(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encode_row(3, &types, &values);
            for (at, byte) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= byte;
            }
            if let Ok(values) = decode_row(&types, &bytes) {
                prop_assert!(values.len() <= types.len());
            }
            let short = &bytes[..cut.index(bytes.len() + 1)];
            if let Ok(values) = decode_row(&types, short) {
                prop_assert!(values.len() <= types.len());
            }
        }
    }

    impl Reader<'_> {
        fn skip_version_and_header(&mut self) -> u64 {
            self.varint().expect("version");
            self.varint().expect("header")
        }
    }

    #[test]
    fn values_that_do_not_fit_their_column_survive_in_the_tagged_form() {
        let types = vec![
            ColumnType::Int {
                width: IntWidth::Tiny,
                unsigned: false,
            },
            ColumnType::Date,
            ColumnType::VarChar {
                max_chars: 3,
                collation: Collation::Utf8mb4GeneralCi,
            },
        ];
        let values = vec![Value::Int(1000), Value::Double(f64::NAN), Value::Null];
        let bytes = encode_row(7, &types, &values);
        assert_eq!(Reader(&bytes).skip_version_and_header() & 1, 1);
        let decoded = decode_row(&types, &bytes).expect("decodes");
        assert!(same(&decoded, &values), "{decoded:?}");
    }

    #[test]
    fn compact_layout_and_refusals() {
        let types = vec![
            ColumnType::Int {
                width: IntWidth::Small,
                unsigned: false,
            },
            ColumnType::Boolean,
        ];
        let bytes = encode_row(5, &types, &[Value::Int(-2), Value::Null]);
        assert_eq!(bytes, vec![5, 4, 0b10, 0xFE, 0xFF]);
        let too_many = encode_row(5, &types, &[Value::Int(1), Value::Int(1), Value::Int(1)]);
        assert!(decode_row(&types, &too_many).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_row(&types, &trailing).is_err());
        let mut stray_null_bit = bytes.clone();
        stray_null_bit[2] |= 0b100;
        assert!(decode_row(&types, &stray_null_bit).is_err());
        assert!(row_schema_version(&[0x80; 11]).is_err());
        assert!(row_schema_version(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).is_err());
        let huge_len = [1, 2, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F];
        let text = [ColumnType::Blob { max_bytes: 10 }];
        assert!(decode_row(&text, &huge_len).is_err());
    }
}
