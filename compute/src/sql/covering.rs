//! Covering-index reads: a query that needs only columns a secondary
//! index entry holds is answered from the entries, without visiting the
//! clustered row (EXPLAIN's `Using index`).
//!
//! Why an entry alone is enough (see docs/sql.md, "Covering-index reads"):
//! nothing reaches a page before commit (a transaction's changes live in
//! its write set), the applier writes a transaction's clustered and
//! secondary changes in one batch, and a snapshot read sees page versions
//! as of a durable LSN, which is always a batch boundary. So the entries a
//! snapshot read finds in a secondary index are exactly the committed rows
//! of that snapshot, keyed by their values then, as the clustered read at
//! the same snapshot would find them (the clustered path already relies on
//! this: an entry leading to no row is corruption). Other transactions'
//! uncommitted or later changes are in no page version the snapshot reads.
//!
//! The reading transaction's own writes are the exception: an UPDATE reads
//! the current row (a locking read), so after it the snapshot's entry and
//! the transaction's own entry can both name the row. The clustered path
//! shows the row's own version for both; the covering path would show the
//! snapshot's values for one of them. So a transaction with writes reads
//! through the clustered index ([`Cover`] is checked per statement, at run
//! time, with `Txn::has_writes`). Locking reads (FOR UPDATE) never cover.
//!
//! Keys are memcomparable, not stored values: a part decodes back to its
//! value exactly only for integers, DECIMAL, DATE, DATETIME and TIMESTAMP
//! (strings hold collation weights; DOUBLE folds -0.0 and NaNs). An index
//! covers a query when every column the query reads is one of those, found
//! among the index's leading parts that are all of those types, or in the
//! primary key (every entry's value is the row's clustered key).

use crate::catalog::TableDef;
use crate::error::EngineError;
use crate::types::coerce::int_range;
use crate::types::{ColumnType, Date, DateTime, Decimal, IntWidth, Value};

use super::expr::Expr;
use super::plan::{FromPlan, Method, SelectPlan, Source, SourceKind, Step};

/// How a covering read makes a row from an entry: decode the first
/// `key_parts` parts of the entry's key (the index's columns) and the first
/// `pk_parts` parts of its value (the primary key's columns); every other
/// column of the row is NULL (the query reads none of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cover {
    pub key_parts: usize,
    pub pk_parts: usize,
}

/// Whether a key part of this type decodes back to the stored value.
fn decodable(ty: &ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::Int { .. }
            | ColumnType::Boolean
            | ColumnType::Decimal { .. }
            | ColumnType::Date
            | ColumnType::DateTime
            | ColumnType::Timestamp
    )
}

/// The columns of a plan's row (one table's, or a join's layout) that the
/// query reads after the FROM clause, and in its WHERE.
fn needed(plan: &SelectPlan, ncols: usize) -> Vec<bool> {
    let mut need = vec![false; ncols];
    let mut mark = |e: &Expr| mark_columns(e, &mut need);
    plan.items.iter().for_each(|i| mark(&i.expr));
    plan.filter.iter().for_each(&mut mark);
    plan.group_by.iter().for_each(&mut mark);
    plan.having.iter().for_each(&mut mark);
    plan.order.iter().for_each(|k| mark(&k.expr));
    for a in &plan.aggs {
        a.arg.iter().for_each(&mut mark);
        if let Some(c) = &a.concat {
            c.more.iter().for_each(&mut mark);
            c.order.iter().for_each(|k| mark(&k.expr));
        }
    }
    need
}

fn mark_columns(e: &Expr, need: &mut [bool]) {
    e.walk(&mut |x| {
        if let Expr::Column(i, _) = x
            && let Some(n) = need.get_mut(*i)
        {
            *n = true;
        }
    })
}

/// Marks covering reads on the table steps of a join plan. Only for a
/// plan with no extras (no subquery results, correlated values or row
/// keys ride in its rows, so every column read is one of the expressions
/// walked here) and no locking read. A step's source is covered when the
/// columns of it that anything reads — items, grouping, ordering,
/// aggregates, every step's conditions and lookup keys, a hash join's
/// build columns — are in its chosen secondary index.
pub(crate) fn mark_join(plan: &SelectPlan, from: &mut FromPlan) {
    if plan.lock || !from.extras.is_empty() || !from.subqueries.is_empty() {
        return;
    }
    let mut need = needed(plan, from.width);
    from.residual
        .iter()
        .for_each(|e| mark_columns(e, &mut need));
    fn walk_steps(steps: &[Step], need: &mut [bool]) {
        for s in steps {
            for e in [&s.pushed, &s.on, &s.after].into_iter().flatten() {
                mark_columns(e, need);
            }
            let a = &s.access;
            for e in a.eq.iter().flatten() {
                mark_columns(e, need);
            }
            for (e, _) in a.lower.iter().chain(&a.upper) {
                mark_columns(e, need);
            }
            match &s.method {
                Method::Hash { probe, .. } => probe.iter().for_each(|e| mark_columns(e, need)),
                Method::Nest(inner) => walk_steps(inner, need),
                Method::Scan | Method::Lookup => {}
            }
        }
    }
    walk_steps(&from.steps, &mut need);
    fn set(steps: &mut [Step], sources: &[Source], need: &[bool]) {
        for s in steps {
            if let Method::Nest(inner) = &mut s.method {
                set(inner, sources, need);
                continue;
            }
            let Some(src) = sources.get(s.source) else {
                continue;
            };
            let SourceKind::Table(t) = &src.kind else {
                continue;
            };
            let Some(mut mine) = need
                .get(src.offset..src.offset + src.columns)
                .map(<[bool]>::to_vec)
            else {
                continue;
            };
            if let Method::Hash { build, .. } = &s.method {
                for &b in build {
                    if let Some(n) = mine.get_mut(b) {
                        *n = true;
                    }
                }
            }
            s.access.cover = cover_needing(&t.def, s.access.index, mine.clone());
            // A step reading its whole table (no key, no index order) may
            // read a narrower covering index instead.
            if s.access.cover.is_none()
                && s.access.index == 0
                && s.access.is_full_scan()
                && !s.ordered
                && let Some((n, cover)) = narrowest(&t.def, &mine)
            {
                s.access.index = n;
                s.access.cover = Some(cover);
            }
        }
    }
    set(&mut from.steps, &from.sources, &need);
}

/// The number of leading parts of `columns` to decode so that every
/// needed column among them is read, if every one of those parts decodes.
fn parts_for(t: &TableDef, columns: &[usize], need: &[bool]) -> Option<usize> {
    let last = columns.iter().rposition(|&c| need[c]).map_or(0, |p| p + 1);
    columns[..last]
        .iter()
        .all(|&c| decodable(&t.columns[c].ty))
        .then_some(last)
}

/// Whether index `index` (a secondary one) covers the plan, and how.
pub(crate) fn cover(plan: &SelectPlan, t: &TableDef, index: usize) -> Option<Cover> {
    if plan.lock {
        return None;
    }
    cover_needing(t, index, needed(plan, t.columns.len()))
}

/// For a read of the whole table (no usable condition, no index order
/// wanted): the covering secondary index with the narrowest entries, if
/// they are narrower than the rows — MySQL's full index scan (EXPLAIN's
/// type `index` with `Using index`), as for `SELECT COUNT(*) FROM t`.
pub(crate) fn full_index_scan(plan: &SelectPlan, t: &TableDef) -> Option<(usize, Cover)> {
    if plan.lock {
        return None;
    }
    narrowest(t, &needed(plan, t.columns.len()))
}

/// The covering secondary index (number and cover) whose entries — its
/// columns and the primary key's — are the narrowest, if narrower than
/// the rows. Widths are MySQL's key lengths (`explain::key_bytes`), an
/// estimate that only ranks.
fn narrowest(t: &TableDef, need: &[bool]) -> Option<(usize, Cover)> {
    let width = |cols: &[usize]| -> u64 {
        cols.iter()
            .filter_map(|&c| t.columns.get(c))
            .map(|c| u64::from(super::explain::key_bytes(&c.ty)))
            .sum()
    };
    let all: Vec<usize> = (0..t.columns.len()).collect();
    let row = width(&all);
    t.secondary
        .iter()
        .enumerate()
        .filter_map(|(i, idx)| {
            let cover = cover_needing(t, i + 1, need.to_vec())?;
            let mut cols: Vec<usize> = idx
                .columns
                .iter()
                .chain(&t.primary.columns)
                .copied()
                .collect();
            cols.sort_unstable();
            cols.dedup();
            let entry = width(&cols);
            (entry < row).then_some((entry, i + 1, cover))
        })
        .min_by_key(|&(entry, n, _)| (entry, n))
        .map(|(_, n, cover)| (n, cover))
}

/// Whether index `index` holds the columns `need` marks (one per column
/// of `t`), and how to read them.
fn cover_needing(t: &TableDef, index: usize, mut need: Vec<bool>) -> Option<Cover> {
    if index == 0 || need.len() != t.columns.len() {
        return None;
    }
    let idx = t.secondary.get(index - 1)?;
    let key_parts = parts_for(t, &idx.columns, &need)?;
    for &c in &idx.columns[..key_parts] {
        need[c] = false;
    }
    let pk_parts = parts_for(t, &t.primary.columns, &need)?;
    for &c in &t.primary.columns[..pk_parts] {
        need[c] = false;
    }
    need.iter().all(|n| !n).then_some(Cover {
        key_parts,
        pk_parts,
    })
}

/// The row (NULL in the columns the query does not read) of the index
/// entry `(key, value)` of index `index`.
pub(crate) fn row(
    t: &TableDef,
    index: usize,
    cover: Cover,
    key: &[u8],
    value: &[u8],
) -> Result<Vec<Value>, EngineError> {
    let bad = || {
        EngineError::Corrupt(format!(
            "an entry of index {index} of {} does not decode",
            t.name
        ))
    };
    let idx = t.secondary.get(index - 1).ok_or_else(bad)?;
    let mut row = vec![Value::Null; t.columns.len()];
    for (columns, parts, mut bytes) in [
        (&idx.columns, cover.key_parts, key),
        (&t.primary.columns, cover.pk_parts, value),
    ] {
        for &c in columns.iter().take(parts) {
            let ty = &t.columns.get(c).ok_or_else(bad)?.ty;
            row[c] = decode_part(ty, &mut bytes).ok_or_else(bad)?;
        }
    }
    Ok(row)
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if bytes.len() < n {
        return None;
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Some(head)
}

fn be(bytes: &[u8]) -> u128 {
    bytes.iter().fold(0u128, |n, &b| n << 8 | u128::from(b))
}

/// Decodes one key part written by `key::encode_key_part` for a column of
/// type `ty` (a [`decodable`] one), advancing `bytes` past it.
fn decode_part(ty: &ColumnType, bytes: &mut &[u8]) -> Option<Value> {
    match take(bytes, 1)?[0] {
        0 => return Some(Value::Null),
        1 => {}
        _ => return None,
    }
    Some(match ty {
        ColumnType::Int { width, unsigned } => int(bytes, *width, *unsigned)?,
        ColumnType::Boolean => int(bytes, IntWidth::Tiny, false)?,
        ColumnType::Decimal { precision, scale } => {
            let mantissa = if *precision <= 18 {
                i128::from((be(take(bytes, 8)?) as u64 ^ (1 << 63)) as i64)
            } else {
                (be(take(bytes, 16)?) ^ (1 << 127)) as i128
            };
            Value::Decimal(Decimal {
                mantissa,
                scale: *scale,
            })
        }
        ColumnType::Date => Value::Date(date(bytes)?),
        ColumnType::DateTime | ColumnType::Timestamp => {
            let date = date(bytes)?;
            let hms = take(bytes, 3)?;
            Value::DateTime(DateTime {
                date,
                hour: hms[0],
                minute: hms[1],
                second: hms[2],
                micros: u32::try_from(be(take(bytes, 4)?)).ok()?,
            })
        }
        _ => return None,
    })
}

fn int(bytes: &mut &[u8], width: IntWidth, unsigned: bool) -> Option<Value> {
    let n = match width {
        IntWidth::Tiny => 1,
        IntWidth::Small => 2,
        IntWidth::Medium => 3,
        IntWidth::Int => 4,
        IntWidth::Big => 8,
    };
    let (min, max) = int_range(width, unsigned);
    let v = i128::try_from(be(take(bytes, n)?)).ok()? + min;
    if v > max {
        return None;
    }
    Some(match unsigned {
        true => Value::UInt(u64::try_from(v).ok()?),
        false => Value::Int(i64::try_from(v).ok()?),
    })
}

fn date(bytes: &mut &[u8]) -> Option<Date> {
    let b = take(bytes, 4)?;
    Some(Date {
        year: u16::from_be_bytes([b[0], b[1]]),
        month: b[2],
        day: b[3],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::encode_key_part;
    use proptest::prelude::*;

    fn types() -> Vec<ColumnType> {
        use IntWidth::*;
        let mut v = Vec::new();
        for width in [Tiny, Small, Medium, Int, Big] {
            for unsigned in [false, true] {
                v.push(ColumnType::Int { width, unsigned });
            }
        }
        v.extend([
            ColumnType::Boolean,
            ColumnType::Decimal {
                precision: 10,
                scale: 2,
            },
            ColumnType::Decimal {
                precision: 30,
                scale: 5,
            },
            ColumnType::Date,
            ColumnType::DateTime,
            ColumnType::Timestamp,
        ]);
        v
    }

    fn value_for(ty: &ColumnType, seed: u64) -> Value {
        match ty {
            ColumnType::Int { width, unsigned } => {
                let (min, max) = int_range(*width, *unsigned);
                let span = (max - min + 1) as u128;
                let v = min + (u128::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) % span) as i128;
                match unsigned {
                    true => Value::UInt(v as u64),
                    false => Value::Int(v as i64),
                }
            }
            ColumnType::Boolean => Value::Int((seed % 2) as i64),
            ColumnType::Decimal { precision, scale } => {
                let limit = 10i128.pow(u32::from(*precision)) - 1;
                let m = i128::from(seed as i64) % limit;
                Value::Decimal(Decimal {
                    mantissa: m,
                    scale: *scale,
                })
            }
            ColumnType::Date => Value::Date(Date {
                year: (1000 + seed % 9_000) as u16,
                month: (seed % 12 + 1) as u8,
                day: (seed % 28 + 1) as u8,
            }),
            _ => Value::DateTime(DateTime {
                date: Date {
                    year: (1971 + seed % 60) as u16,
                    month: (seed % 12 + 1) as u8,
                    day: (seed % 28 + 1) as u8,
                },
                hour: (seed % 24) as u8,
                minute: (seed % 60) as u8,
                second: (seed / 7 % 60) as u8,
                micros: (seed % 1_000_000) as u32,
            }),
        }
    }

    proptest! {
        /// Every decodable type's key parts decode back to the value, also
        /// as one part of several (and NULL).
        #[test]
        fn key_parts_decode_to_the_stored_value(seeds in prop::collection::vec(any::<u64>(), 16)) {
            let types = types();
            let values: Vec<Value> = types
                .iter()
                .zip(&seeds)
                .map(|(ty, &s)| match s % 11 {
                    0 => Value::Null,
                    _ => ty.coerce(value_for(ty, s)).expect("a value of the type"),
                })
                .collect();
            let mut key = Vec::new();
            for (ty, v) in types.iter().zip(&values) {
                encode_key_part(&mut key, ty, v).expect("encodable");
            }
            let mut bytes = key.as_slice();
            for (ty, v) in types.iter().zip(&values) {
                let decoded = decode_part(ty, &mut bytes);
                prop_assert_eq!(decoded.as_ref(), Some(v));
            }
            prop_assert!(bytes.is_empty());
        }
    }

    #[test]
    fn strings_and_doubles_do_not_decode() {
        let ty = ColumnType::VarChar {
            max_chars: 10,
            collation: crate::types::Collation::Utf8mb4GeneralCi,
        };
        let mut key = Vec::new();
        encode_key_part(&mut key, &ty, &Value::Bytes(b"abc".to_vec())).expect("encodable");
        assert!(!decodable(&ty));
        assert!(!decodable(&ColumnType::Double));
        assert_eq!(decode_part(&ty, &mut key.as_slice()), None);
    }
}
