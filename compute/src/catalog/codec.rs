//! The byte form of catalog definitions.
//!
//! Little endian; strings and nested blobs are `u32` length + bytes. Each
//! definition starts with a format version byte ([`FORMAT`]); an unknown
//! version, a short buffer or trailing bytes are [`EngineError::Corrupt`].
//! Column defaults are stored as one-column rows in the row format.

use strata_wal::Lsn;

use super::{ColumnDef, DatabaseDef, IndexDef, TableDef};
use crate::error::{EngineError, Result};
use crate::row::{decode_row, encode_row};
use crate::types::{Collation, ColumnType, IntWidth};

const FORMAT: u8 = 1;

pub fn encode_database(def: &DatabaseDef) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(FORMAT);
    w.u32(def.id);
    w.str(&def.name);
    w.0
}

pub fn decode_database(bytes: &[u8]) -> Result<DatabaseDef> {
    let mut r = Reader::new(bytes);
    r.format()?;
    let def = DatabaseDef {
        id: r.u32()?,
        name: r.str()?,
    };
    r.end(def)
}

pub fn encode_table(def: &TableDef) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(FORMAT);
    w.u32(def.db_id);
    w.str(&def.name);
    w.u32(def.id);
    w.u32(def.schema_version);
    w.u64(def.created_lsn.0);
    w.u32(def.columns.len() as u32);
    for c in &def.columns {
        column(&mut w, c);
    }
    index(&mut w, &def.primary);
    w.u32(def.secondary.len() as u32);
    for i in &def.secondary {
        index(&mut w, i);
    }
    w.0
}

pub fn decode_table(bytes: &[u8]) -> Result<TableDef> {
    let mut r = Reader::new(bytes);
    r.format()?;
    let db_id = r.u32()?;
    let name = r.str()?;
    let id = r.u32()?;
    let schema_version = r.u32()?;
    let created_lsn = Lsn(r.u64()?);
    let n = r.count()?;
    let columns = (0..n)
        .map(|_| read_column(&mut r))
        .collect::<Result<Vec<_>>>()?;
    let primary = read_index(&mut r, columns.len())?;
    let n = r.count()?;
    let secondary = (0..n)
        .map(|_| read_index(&mut r, columns.len()))
        .collect::<Result<Vec<_>>>()?;
    r.end(TableDef {
        db_id,
        name,
        id,
        schema_version,
        created_lsn,
        columns,
        primary,
        secondary,
    })
}

fn column(w: &mut Writer, c: &ColumnDef) {
    w.str(&c.name);
    column_type(w, &c.ty);
    w.u8(u8::from(c.nullable) | (u8::from(c.auto_increment) << 1));
    match &c.default {
        None => w.u8(0),
        Some(v) => {
            w.u8(1);
            w.bytes(&encode_row(
                0,
                std::slice::from_ref(&c.ty),
                std::slice::from_ref(v),
            ));
        }
    }
}

fn read_column(r: &mut Reader) -> Result<ColumnDef> {
    let name = r.str()?;
    let ty = read_column_type(r)?;
    let flags = r.u8()?;
    let default = match r.u8()? {
        0 => None,
        1 => {
            let row = decode_row(std::slice::from_ref(&ty), r.bytes()?)?;
            Some(
                row.into_iter()
                    .next()
                    .ok_or_else(|| corrupt("an empty default"))?,
            )
        }
        _ => return Err(corrupt("bad default marker")),
    };
    Ok(ColumnDef {
        name,
        ty,
        nullable: flags & 1 != 0,
        auto_increment: flags & 2 != 0,
        default,
    })
}

fn index(w: &mut Writer, i: &IndexDef) {
    w.str(&i.name);
    w.u32(i.space);
    w.u32(i.root_page);
    w.u8(u8::from(i.unique));
    w.u32(i.columns.len() as u32);
    for &c in &i.columns {
        w.u32(c as u32);
    }
}

fn read_index(r: &mut Reader, ncols: usize) -> Result<IndexDef> {
    let name = r.str()?;
    let space = r.u32()?;
    let root_page = r.u32()?;
    let unique = r.u8()? != 0;
    let n = r.count()?;
    let columns = (0..n)
        .map(|_| match r.u32()? as usize {
            c if c < ncols => Ok(c),
            _ => Err(corrupt("an index names a column that does not exist")),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(IndexDef {
        name,
        space,
        root_page,
        columns,
        unique,
    })
}

fn column_type(w: &mut Writer, ty: &ColumnType) {
    let width = |w: IntWidth| match w {
        IntWidth::Tiny => 1,
        IntWidth::Small => 2,
        IntWidth::Medium => 3,
        IntWidth::Int => 4,
        IntWidth::Big => 8,
    };
    match ty {
        ColumnType::Int {
            width: iw,
            unsigned,
        } => {
            w.u8(1);
            w.u8(width(*iw));
            w.u8(u8::from(*unsigned));
        }
        ColumnType::Double => w.u8(2),
        ColumnType::Decimal { precision, scale } => {
            w.u8(3);
            w.u8(*precision);
            w.u8(*scale);
        }
        ColumnType::Char {
            max_chars,
            collation,
        } => string_type(w, 4, *max_chars, *collation),
        ColumnType::VarChar {
            max_chars,
            collation,
        } => string_type(w, 5, *max_chars, *collation),
        ColumnType::Text {
            max_bytes,
            collation,
        } => string_type(w, 6, *max_bytes, *collation),
        ColumnType::Blob { max_bytes } => {
            w.u8(7);
            w.u32(*max_bytes);
        }
        ColumnType::Date => w.u8(8),
        ColumnType::DateTime => w.u8(9),
        ColumnType::Timestamp => w.u8(10),
        ColumnType::Boolean => w.u8(11),
    }
}

fn string_type(w: &mut Writer, tag: u8, max: u32, collation: Collation) {
    w.u8(tag);
    w.u32(max);
    w.u16(collation.id());
}

fn read_column_type(r: &mut Reader) -> Result<ColumnType> {
    Ok(match r.u8()? {
        1 => {
            let width = match r.u8()? {
                1 => IntWidth::Tiny,
                2 => IntWidth::Small,
                3 => IntWidth::Medium,
                4 => IntWidth::Int,
                8 => IntWidth::Big,
                _ => return Err(corrupt("bad integer width")),
            };
            ColumnType::Int {
                width,
                unsigned: r.u8()? != 0,
            }
        }
        2 => ColumnType::Double,
        3 => ColumnType::Decimal {
            precision: r.u8()?,
            scale: r.u8()?,
        },
        tag @ 4..=6 => {
            let max = r.u32()?;
            let collation =
                Collation::from_id(r.u16()?).ok_or_else(|| corrupt("unknown collation"))?;
            match tag {
                4 => ColumnType::Char {
                    max_chars: max,
                    collation,
                },
                5 => ColumnType::VarChar {
                    max_chars: max,
                    collation,
                },
                _ => ColumnType::Text {
                    max_bytes: max,
                    collation,
                },
            }
        }
        7 => ColumnType::Blob {
            max_bytes: r.u32()?,
        },
        8 => ColumnType::Date,
        9 => ColumnType::DateTime,
        10 => ColumnType::Timestamp,
        11 => ColumnType::Boolean,
        _ => return Err(corrupt("unknown column type")),
    })
}

fn corrupt(what: &str) -> EngineError {
    EngineError::Corrupt(format!("catalog definition: {what}"))
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader(bytes)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| corrupt("too short"))?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64> {
        self.take().map(u64::from_le_bytes)
    }

    /// A count of items each at least a byte long: never more than the
    /// bytes left, so a corrupt count cannot make us allocate.
    fn count(&mut self) -> Result<usize> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err(corrupt("a count larger than the definition"));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err(corrupt("too short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn str(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| corrupt("a name that is not UTF-8"))
    }

    fn format(&mut self) -> Result<()> {
        match self.u8()? {
            FORMAT => Ok(()),
            v => Err(corrupt(&format!("unknown format version {v}"))),
        }
    }

    fn end<T>(self, v: T) -> Result<T> {
        if !self.0.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Value;

    fn sample() -> TableDef {
        TableDef {
            db_id: 3,
            name: "Accounts".into(),
            id: 7,
            schema_version: 2,
            created_lsn: Lsn(12345),
            columns: vec![
                ColumnDef {
                    name: "id".into(),
                    ty: ColumnType::Int {
                        width: IntWidth::Big,
                        unsigned: true,
                    },
                    nullable: false,
                    default: None,
                    auto_increment: true,
                },
                ColumnDef {
                    name: "owner".into(),
                    ty: ColumnType::VarChar {
                        max_chars: 40,
                        collation: Collation::Utf8mb4Bin,
                    },
                    nullable: true,
                    default: Some(Value::Bytes(b"nobody".to_vec())),
                    auto_increment: false,
                },
            ],
            primary: IndexDef {
                name: "PRIMARY".into(),
                space: 7,
                root_page: 1,
                columns: vec![0],
                unique: true,
            },
            secondary: vec![IndexDef {
                name: "by_owner".into(),
                space: 8,
                root_page: 1,
                columns: vec![1],
                unique: false,
            }],
        }
    }

    #[test]
    fn a_table_definition_round_trips() {
        let def = sample();
        assert_eq!(decode_table(&encode_table(&def)).unwrap(), def);
        let db = DatabaseDef {
            id: 4,
            name: "Shop".into(),
        };
        assert_eq!(decode_database(&encode_database(&db)).unwrap(), db);
    }

    #[test]
    fn every_truncation_and_a_bad_version_are_corrupt() {
        let bytes = encode_table(&sample());
        for len in 0..bytes.len() {
            assert!(matches!(
                decode_table(&bytes[..len]),
                Err(EngineError::Corrupt(_))
            ));
        }
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(matches!(decode_table(&bad), Err(EngineError::Corrupt(_))));
        let mut long = bytes;
        long.push(0);
        assert!(matches!(decode_table(&long), Err(EngineError::Corrupt(_))));
    }
}
