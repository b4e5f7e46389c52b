//! Redo: the one function that applies a record to a page.
//!
//! Compute (its buffer pool and replicas), the page server and the DMS all
//! call [`apply`] (or [`apply_op`], for an op already decoded), so the same
//! records on the same page give the same bytes on every node. It is a pure
//! function of the page's bytes and the record: no clock, no randomness, no
//! configuration.
//!
//! Rules:
//! - **LSNs only grow.** A record whose LSN is not past the page LSN is
//!   refused with [`PageError::StaleLsn`] and the page is left alone. Redo
//!   is *not* silently idempotent: a caller replaying from an image must pick
//!   the records after the image's LSN itself (it knows them: the page LSN),
//!   and a record that arrives twice is a bug upstream worth an error.
//! - **All or nothing.** An op that does not fit the page (slot out of range,
//!   page full, page not formatted) is an error and the page is unchanged,
//!   LSN and checksum included.
//! - **Sealed after every record.** On success the page LSN becomes the
//!   record's LSN and the checksum is recomputed, so a page's bytes at an
//!   LSN depend only on the records (never on who last sealed it), and every
//!   page redo produces passes [`Page::verify`].
//! - The record's page id is the caller's business: this module is handed
//!   the page the record names.

use crate::error::{Result, WalError};
use crate::lsn::Lsn;
use crate::op::{PageOp, decompress_image};
use crate::page::{Page, PageError};
use crate::record::RecordRef;

/// Applies a framed record to `page`. Errors: the body's decode error as is
/// ([`WalError::BadBody`]), or [`WalError::Redo`] naming the record's start
/// for a non-page record or an op that cannot apply.
pub fn apply(page: &mut Page, record: &RecordRef<'_>) -> Result<()> {
    let op = page_op(record)?;
    apply_op(page, record.lsn, &op).map_err(|source| WalError::Redo {
        at: record.start,
        source,
    })
}

/// The op a page record carries; a non-page record is a redo error.
fn page_op(record: &RecordRef<'_>) -> Result<PageOp> {
    if !record.kind.is_page_op() {
        return Err(WalError::Redo {
            at: record.start,
            source: PageError::NotPageOp { kind: record.kind },
        });
    }
    PageOp::decode_body(record.kind, record.body, record.start)
}

/// Applies `op`, logged at `lsn` (where its record ends), to `page`.
pub fn apply_op(page: &mut Page, lsn: Lsn, op: &PageOp) -> Result<(), PageError> {
    apply_op_unsealed(page, lsn, op)?;
    page.seal();
    Ok(())
}

/// [`apply_op`] without the final checksum.
fn apply_op_unsealed(page: &mut Page, lsn: Lsn, op: &PageOp) -> Result<(), PageError> {
    if lsn <= page.lsn() {
        return Err(PageError::StaleLsn {
            page_lsn: page.lsn(),
            record_lsn: lsn,
        });
    }
    match op {
        PageOp::Init { page_type, level } => page.init(*page_type, *level),
        PageOp::Insert { slot, bytes } => page.insert(*slot, bytes)?,
        PageOp::Delete { slot } => page.delete(*slot)?,
        PageOp::Replace { slot, bytes } => page.replace(*slot, bytes)?,
        PageOp::Truncate { from_slot } => page.truncate(*from_slot)?,
        PageOp::SetLink { right } => page.set_right_link(*right)?,
        PageOp::FullImage { compressed } => *page = decompress_image(compressed)?,
    }
    page.set_lsn(lsn);
    Ok(())
}

/// Replays many records onto one page and seals it once, at the end.
///
/// The result is byte for byte what [`apply`] gives record by record: a
/// seal only writes the checksum field, which no op reads and which the
/// checksum itself leaves out, so only the last one counts. Skipping the
/// others saves a pass over the whole page per record, the main cost of a
/// long replay. A `Replay` that returned an error must be dropped: the page
/// inside is the last good state but unsealed.
pub struct Replay {
    page: Page,
}

impl Replay {
    /// Starts from `page` (an image, or a zeroed page for a chain that
    /// starts with `Init` or `FullImage`).
    pub fn new(page: Page) -> Replay {
        Replay { page }
    }

    /// Applies one framed record; errors as [`apply`].
    pub fn apply(&mut self, record: &RecordRef<'_>) -> Result<()> {
        let op = page_op(record)?;
        apply_op_unsealed(&mut self.page, record.lsn, &op).map_err(|source| WalError::Redo {
            at: record.start,
            source,
        })
    }

    /// The page, sealed.
    pub fn finish(mut self) -> Page {
        self.page.seal();
        self.page
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsn::PageId;
    use crate::record::{self, Record};

    const ID: PageId = PageId::new(2, 5);

    /// `record` framed at `start`, decoded back, applied to `page`.
    fn apply_framed(page: &mut Page, record: &Record, start: Lsn) -> Result<Lsn> {
        let mut buf = Vec::new();
        let lsn = record.encode(&mut buf, start)?;
        apply(page, &record::decode(&buf, start)?)?;
        Ok(lsn)
    }

    fn page_op(op: PageOp) -> Record {
        Record::Page { page: ID, op }
    }

    /// A page formatted by an `Init` record framed at `start`, and that
    /// record's LSN.
    fn formatted_at(start: Lsn) -> (Page, Lsn) {
        let mut page = Page::new_zeroed();
        let init = page_op(PageOp::Init {
            page_type: 4,
            level: 0,
        });
        let lsn = apply_framed(&mut page, &init, start).unwrap();
        (page, lsn)
    }

    #[test]
    fn apply_sets_the_lsn_and_seals() {
        let (mut page, lsn) = formatted_at(Lsn(100));
        let insert = page_op(PageOp::Insert {
            slot: 0,
            bytes: b"row".to_vec(),
        });
        let lsn = apply_framed(&mut page, &insert, lsn).unwrap();
        assert_eq!(page.lsn(), lsn);
        assert_eq!(page.item(0).unwrap(), b"row");
        page.verify(ID).unwrap();
    }

    #[test]
    fn a_record_at_or_below_the_page_lsn_is_refused() {
        let mut page = Page::new_zeroed();
        apply_op(
            &mut page,
            Lsn(50),
            &PageOp::Init {
                page_type: 1,
                level: 0,
            },
        )
        .unwrap();
        let before = page.clone();
        let op = PageOp::SetLink { right: 9 };
        let stale = PageError::StaleLsn {
            page_lsn: Lsn(50),
            record_lsn: Lsn(50),
        };
        assert_eq!(apply_op(&mut page, Lsn(50), &op), Err(stale));
        assert!(apply_op(&mut page, Lsn(10), &op).is_err());
        assert_eq!(page, before);
    }

    #[test]
    fn a_non_page_record_is_a_redo_error() {
        let mut page = Page::new_zeroed();
        let err = apply_framed(&mut page, &Record::Commit { timestamp_us: 1 }, Lsn(8)).unwrap_err();
        let source = PageError::NotPageOp {
            kind: crate::RecordKind::Commit,
        };
        assert_eq!(err, WalError::Redo { at: Lsn(8), source });
    }

    #[test]
    fn an_op_that_does_not_fit_names_the_record_and_changes_nothing() {
        let (mut page, lsn) = formatted_at(Lsn(0));
        let before = page.clone();
        let err = apply_framed(&mut page, &page_op(PageOp::Delete { slot: 0 }), lsn).unwrap_err();
        let source = PageError::SlotOutOfRange { slot: 0, count: 0 };
        assert_eq!(err, WalError::Redo { at: lsn, source });
        assert_eq!(page, before);
    }

    #[test]
    fn a_full_image_replaces_the_page_whatever_it_held() {
        let mut src = Page::new_zeroed();
        apply_op(
            &mut src,
            Lsn(10),
            &PageOp::Init {
                page_type: 2,
                level: 1,
            },
        )
        .unwrap();
        apply_op(
            &mut src,
            Lsn(20),
            &PageOp::Insert {
                slot: 0,
                bytes: b"kept".to_vec(),
            },
        )
        .unwrap();
        let mut dst = Page::new_zeroed();
        apply_op(&mut dst, Lsn(30), &PageOp::full_image(&src)).unwrap();
        assert_eq!((dst.lsn(), dst.page_type(), dst.level()), (Lsn(30), 2, 1));
        assert_eq!(dst.item(0).unwrap(), b"kept");
        dst.verify(ID).unwrap();
    }
}
