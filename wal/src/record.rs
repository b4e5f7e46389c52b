//! Record framing and batches.
//!
//! A record is a 28-byte header and a body, little endian:
//!
//! ```text
//!  0  len      u32  total length, header included
//!  4  crc      u32  crc32 of bytes 0..4 and 8..len (everything but itself)
//!  8  lsn      u64  stream position just past this record's end
//! 16  kind     u8   RecordKind
//! 17  version  u8   RECORD_FORMAT_VERSION
//! 18  flags    u16  reserved, must be zero
//! 20  space    u32  page records: the page; zero otherwise
//! 24  page_no  u32
//! 28  body
//! ```
//!
//! The page id sits in the header so that a follower (the DMS, a replica)
//! learns which page changed without decoding the body.
//!
//! A *batch* is one transaction's records ending in its `Commit` record; its
//! commit LSN is the LSN of that record. A [`BatchBuilder`] frames records
//! at positions relative to zero; the log writer places the batch in the
//! stream with [`Batch::stamp_into`], which rewrites each LSN and crc.
//!
//! Decoding tells *incomplete* ([`WalError::Truncated`]) from *invalid*
//! (every other error); a reader at the tail of a stream may wait for more
//! bytes on the first, never on the second.

use crate::error::{Result, WalError};
use crate::lsn::{Lsn, PageId};
use crate::op::PageOp;

pub const HEADER_BYTES: usize = 28;
/// The largest record, header included. A large value is split into many
/// overflow-page records, so no record needs to be large; the bound keeps a
/// corrupted length from making a reader allocate or wait for gigabytes.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
pub const RECORD_FORMAT_VERSION: u8 = 1;

/// Every kind of record. Page operations are below 64, the rest above.
///
/// Adding a kind: a variant here, its arm in [`RecordKind::from_u8`], and
/// (for a page operation) its variant in [`PageOp`] with its redo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    Init = 1,
    Insert = 2,
    Delete = 3,
    Replace = 4,
    Truncate = 5,
    SetLink = 6,
    FullImage = 7,
    Commit = 64,
    TermStart = 65,
    DropSpace = 66,
    /// Reserved for logical row changes (change streams); carried opaquely.
    RowChange = 67,
}

impl RecordKind {
    pub fn from_u8(v: u8) -> Option<RecordKind> {
        use RecordKind::*;
        Some(match v {
            1 => Init,
            2 => Insert,
            3 => Delete,
            4 => Replace,
            5 => Truncate,
            6 => SetLink,
            7 => FullImage,
            64 => Commit,
            65 => TermStart,
            66 => DropSpace,
            67 => RowChange,
            _ => return None,
        })
    }

    pub fn is_page_op(self) -> bool {
        (self as u8) < 64
    }
}

/// A framed record borrowed from a buffer, header decoded, body raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Where the record starts in the stream.
    pub start: Lsn,
    /// The record's LSN: where it ends.
    pub lsn: Lsn,
    pub kind: RecordKind,
    pub page: PageId,
    pub body: &'a [u8],
}

impl RecordRef<'_> {
    pub fn len(&self) -> usize {
        HEADER_BYTES + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Decodes the body into a [`Record`].
    pub fn decode(&self) -> Result<Record> {
        Record::decode_body(self)
    }
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Page {
        page: PageId,
        op: PageOp,
    },
    /// Ends a batch. The timestamp (µs since the Unix epoch, the writer's
    /// clock) lets followers measure their lag in time.
    Commit {
        timestamp_us: u64,
    },
    /// The first record a new writer writes in its term.
    TermStart {
        term: u64,
    },
    DropSpace {
        space: u32,
    },
    RowChange {
        payload: Vec<u8>,
    },
}

impl Record {
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Page { op, .. } => op.kind(),
            Record::Commit { .. } => RecordKind::Commit,
            Record::TermStart { .. } => RecordKind::TermStart,
            Record::DropSpace { .. } => RecordKind::DropSpace,
            Record::RowChange { .. } => RecordKind::RowChange,
        }
    }

    /// The page this record changes; `PageId::default()` for other records.
    pub fn page(&self) -> PageId {
        match self {
            Record::Page { page, .. } => *page,
            _ => PageId::default(),
        }
    }

    /// Frames this record at stream position `start` onto `out`; returns its
    /// LSN (where it ends).
    pub fn encode(&self, out: &mut Vec<u8>, start: Lsn) -> Result<Lsn> {
        let mut body = Vec::new();
        match self {
            Record::Page { op, .. } => op.encode_body(&mut body),
            Record::Commit { timestamp_us } => body.extend_from_slice(&timestamp_us.to_le_bytes()),
            Record::TermStart { term } => body.extend_from_slice(&term.to_le_bytes()),
            Record::DropSpace { space } => body.extend_from_slice(&space.to_le_bytes()),
            Record::RowChange { payload } => body.extend_from_slice(payload),
        }
        encode_raw(out, start, self.kind(), self.page(), &body)
    }

    fn decode_body(r: &RecordRef<'_>) -> Result<Record> {
        let bad = |reason| WalError::BadBody {
            at: r.start,
            kind: r.kind,
            reason,
        };
        let u64_body = || -> Result<u64> {
            let b: [u8; 8] = r.body.try_into().map_err(|_| bad("expected 8 bytes"))?;
            Ok(u64::from_le_bytes(b))
        };
        Ok(match r.kind {
            RecordKind::Commit => Record::Commit {
                timestamp_us: u64_body()?,
            },
            RecordKind::TermStart => Record::TermStart { term: u64_body()? },
            RecordKind::DropSpace => {
                let b: [u8; 4] = r.body.try_into().map_err(|_| bad("expected 4 bytes"))?;
                Record::DropSpace {
                    space: u32::from_le_bytes(b),
                }
            }
            RecordKind::RowChange => Record::RowChange {
                payload: r.body.to_vec(),
            },
            kind => Record::Page {
                page: r.page,
                op: PageOp::decode_body(kind, r.body, r.start)?,
            },
        })
    }
}

/// Frames one record with a raw body at stream position `start` onto `out`;
/// returns the record's LSN.
pub fn encode_raw(
    out: &mut Vec<u8>,
    start: Lsn,
    kind: RecordKind,
    page: PageId,
    body: &[u8],
) -> Result<Lsn> {
    let len = HEADER_BYTES + body.len();
    if len > MAX_RECORD_BYTES {
        return Err(WalError::TooLarge {
            len,
            max: MAX_RECORD_BYTES,
        });
    }
    let lsn = start.advance(len as u64);
    let at = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lsn.0.to_le_bytes());
    out.push(kind as u8);
    out.push(RECORD_FORMAT_VERSION);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&page.space.to_le_bytes());
    out.extend_from_slice(&page.page_no.to_le_bytes());
    out.extend_from_slice(body);
    let crc = frame_crc(&out[at..]);
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(lsn)
}

fn frame_crc(frame: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&frame[0..4]);
    h.update(&frame[8..]);
    h.finalize()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4-byte slice"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8-byte slice"))
}

/// Decodes the record at the front of `buf`, which sits at stream position
/// `start`. The crc is checked before anything but the length is believed.
pub fn decode(buf: &[u8], start: Lsn) -> Result<RecordRef<'_>> {
    if buf.len() < HEADER_BYTES {
        return Err(WalError::Truncated {
            at: start,
            need: HEADER_BYTES,
            have: buf.len(),
        });
    }
    let len32 = u32_at(buf, 0);
    let len = len32 as usize;
    if !(HEADER_BYTES..=MAX_RECORD_BYTES).contains(&len) {
        return Err(WalError::BadLength {
            at: start,
            len: len32,
        });
    }
    if buf.len() < len {
        return Err(WalError::Truncated {
            at: start,
            need: len,
            have: buf.len(),
        });
    }
    let frame = &buf[..len];
    let stored = u32_at(frame, 4);
    let computed = frame_crc(frame);
    if stored != computed {
        return Err(WalError::BadCrc {
            at: start,
            stored,
            computed,
        });
    }
    let version = frame[17];
    let flags = u16::from_le_bytes([frame[18], frame[19]]);
    if version != RECORD_FORMAT_VERSION || flags != 0 {
        return Err(WalError::UnknownVersion {
            at: start,
            version,
            flags,
        });
    }
    let kind = RecordKind::from_u8(frame[16]).ok_or(WalError::UnknownKind {
        at: start,
        kind: frame[16],
    })?;
    let claimed = Lsn(u64_at(frame, 8));
    let actual = start.advance(len as u64);
    if claimed != actual {
        return Err(WalError::LsnMismatch {
            at: start,
            claimed,
            actual,
        });
    }
    Ok(RecordRef {
        start,
        lsn: actual,
        kind,
        page: PageId::new(u32_at(frame, 20), u32_at(frame, 24)),
        body: &frame[HEADER_BYTES..],
    })
}

/// Iterates over the records in `buf`, which starts at stream position
/// `start`. Yields each record, or the first error and then nothing.
#[derive(Clone, Debug)]
pub struct RecordIter<'a> {
    buf: &'a [u8],
    pos: usize,
    start: Lsn,
    failed: bool,
}

impl<'a> RecordIter<'a> {
    pub fn new(buf: &'a [u8], start: Lsn) -> Self {
        RecordIter {
            buf,
            pos: 0,
            start,
            failed: false,
        }
    }

    /// The stream position of the next record.
    pub fn next_start(&self) -> Lsn {
        self.start.advance(self.pos as u64)
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos == self.buf.len() {
            return None;
        }
        match decode(&self.buf[self.pos..], self.next_start()) {
            Ok(r) => {
                self.pos += r.len();
                Some(Ok(r))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// What a scan of framed bytes found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Where the last whole record ends (`start` if there is none).
    pub end: Lsn,
    /// Where the last `Commit` record ends, if any.
    pub last_commit: Option<Lsn>,
    /// Where the last `TermStart` record ends, and its term, if any.
    pub last_term_start: Option<(Lsn, u64)>,
}

/// Checks every record in `buf` (which starts at `start` and must hold whole
/// records only) and reports where batches end.
pub fn scan(buf: &[u8], start: Lsn) -> Result<Scan> {
    let mut out = Scan {
        end: start,
        ..Scan::default()
    };
    for r in RecordIter::new(buf, start) {
        let r = r?;
        out.end = r.lsn;
        match r.kind {
            RecordKind::Commit => out.last_commit = Some(r.lsn),
            RecordKind::TermStart => {
                if let Record::TermStart { term } = r.decode()? {
                    out.last_term_start = Some((r.lsn, term));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Gathers one transaction's records, framed at positions relative to 0.
#[derive(Clone, Debug, Default)]
pub struct BatchBuilder {
    bytes: Vec<u8>,
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, record: &Record) -> Result<()> {
        let start = Lsn(self.bytes.len() as u64);
        record.encode(&mut self.bytes, start)?;
        Ok(())
    }

    /// Bytes framed so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Ends the batch with its `Commit` record.
    pub fn commit(mut self, timestamp_us: u64) -> Batch {
        self.push(&Record::Commit { timestamp_us })
            .expect("a commit record is far below the size limit");
        Batch { bytes: self.bytes }
    }
}

/// A complete batch (records ending in `Commit`), framed at positions
/// relative to 0, ready to be placed in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    bytes: Vec<u8>,
}

impl Batch {
    /// A batch holding just a `TermStart` record, which a new writer commits
    /// before anything else in its term.
    pub fn term_start(term: u64, timestamp_us: u64) -> Batch {
        let mut b = BatchBuilder::new();
        b.push(&Record::TermStart { term }).expect("small record");
        b.commit(timestamp_us)
    }

    /// Parses a batch given as relative-positioned bytes (as made by
    /// [`BatchBuilder`]): every record must check out and the last must be
    /// the only `Commit`.
    pub fn from_relative_bytes(bytes: Vec<u8>) -> Result<Batch> {
        let mut last_commit = None;
        for r in RecordIter::new(&bytes, Lsn::ZERO) {
            let r = r?;
            if let Some(at) = last_commit {
                // A second batch follows the first: not one batch.
                return Err(WalError::BadBody {
                    at,
                    kind: RecordKind::Commit,
                    reason: "a batch holds exactly one Commit, at its end",
                });
            }
            if r.kind == RecordKind::Commit {
                last_commit = Some(r.lsn);
            }
        }
        match last_commit {
            Some(_) => Ok(Batch { bytes }),
            None => Err(WalError::IncompleteBatch { at: Lsn::ZERO }),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn relative_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Copies the batch onto `out` as if it started at stream position
    /// `start`, rewriting every LSN and crc; returns the commit LSN.
    pub fn stamp_into(&self, out: &mut Vec<u8>, start: Lsn) -> Lsn {
        let mut pos = 0;
        let mut end = start;
        while pos < self.bytes.len() {
            let len = u32_at(&self.bytes, pos) as usize;
            let at = out.len();
            out.extend_from_slice(&self.bytes[pos..pos + len]);
            end = start.advance((pos + len) as u64);
            out[at + 8..at + 16].copy_from_slice(&end.0.to_le_bytes());
            let crc = frame_crc(&out[at..at + len]);
            out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
            pos += len;
        }
        end
    }
}

/// One decoded batch read back from the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedBatch {
    pub start: Lsn,
    pub commit_lsn: Lsn,
    /// Each record with its LSN; the last is the `Commit`.
    pub records: Vec<(Lsn, Record)>,
}

/// Decodes whole batches from stream bytes starting at `start`; bytes after
/// the last `Commit` are an [`WalError::IncompleteBatch`].
pub fn decode_batches(buf: &[u8], start: Lsn) -> Result<Vec<DecodedBatch>> {
    let mut out = Vec::new();
    let mut current = DecodedBatch {
        start,
        commit_lsn: start,
        records: Vec::new(),
    };
    for r in RecordIter::new(buf, start) {
        let r = r?;
        let is_commit = r.kind == RecordKind::Commit;
        current.records.push((r.lsn, r.decode()?));
        if is_commit {
            current.commit_lsn = r.lsn;
            let next = DecodedBatch {
                start: r.lsn,
                commit_lsn: r.lsn,
                records: Vec::new(),
            };
            out.push(std::mem::replace(&mut current, next));
        }
    }
    if !current.records.is_empty() {
        return Err(WalError::IncompleteBatch { at: current.start });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_batch() -> Batch {
        let mut b = BatchBuilder::new();
        b.push(&Record::TermStart { term: 7 }).unwrap();
        b.push(&Record::DropSpace { space: 3 }).unwrap();
        b.push(&Record::RowChange {
            payload: vec![1, 2, 3],
        })
        .unwrap();
        b.commit(42)
    }

    #[test]
    fn stamped_batch_decodes_at_its_position() {
        let batch = sample_batch();
        let mut out = Vec::new();
        let start = Lsn(1000);
        let commit = batch.stamp_into(&mut out, start);
        assert_eq!(commit, start.advance(batch.len() as u64));
        let batches = decode_batches(&out, start).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].commit_lsn, commit);
        assert_eq!(batches[0].records.len(), 4);
        assert_eq!(batches[0].records[1].1, Record::DropSpace { space: 3 });
        assert_eq!(batches[0].records[3].1, Record::Commit { timestamp_us: 42 });
    }

    #[test]
    fn misplaced_bytes_are_rejected_by_lsn() {
        let mut out = Vec::new();
        sample_batch().stamp_into(&mut out, Lsn(1000));
        let err = decode(&out, Lsn(2000)).unwrap_err();
        assert!(
            matches!(err, WalError::LsnMismatch { at: Lsn(2000), .. }),
            "{err}"
        );
    }

    #[test]
    fn trailing_partial_batch_is_incomplete() {
        let mut b = BatchBuilder::new();
        b.push(&Record::DropSpace { space: 1 }).unwrap();
        let partial = b.bytes.clone();
        let mut out = Vec::new();
        let end = sample_batch().stamp_into(&mut out, Lsn::ZERO);
        out.extend_from_slice(&partial[..]);
        // The partial record was framed at 0, so re-frame it at `end`.
        out.truncate(end.0 as usize);
        Record::DropSpace { space: 1 }
            .encode(&mut out, end)
            .unwrap();
        assert_eq!(
            decode_batches(&out, Lsn::ZERO),
            Err(WalError::IncompleteBatch { at: end })
        );
        let s = scan(&out, Lsn::ZERO).unwrap();
        assert_eq!(s.last_commit, Some(end));
        assert!(s.end > end);
        assert_eq!(s.last_term_start, Some((Lsn(36), 7)));
    }

    #[test]
    fn from_relative_bytes_wants_one_commit_at_the_end() {
        let b = sample_batch();
        assert!(Batch::from_relative_bytes(b.relative_bytes().to_vec()).is_ok());
        let mut two = b.relative_bytes().to_vec();
        let mut second = Vec::new();
        b.stamp_into(&mut second, Lsn(two.len() as u64));
        two.extend_from_slice(&second);
        assert!(Batch::from_relative_bytes(two).is_err());
        let mut no_commit = BatchBuilder::new();
        no_commit.push(&Record::DropSpace { space: 1 }).unwrap();
        assert_eq!(
            Batch::from_relative_bytes(no_commit.bytes),
            Err(WalError::IncompleteBatch { at: Lsn::ZERO })
        );
    }

    #[test]
    fn oversized_record_is_refused() {
        let r = Record::RowChange {
            payload: vec![0; MAX_RECORD_BYTES],
        };
        assert!(matches!(
            r.encode(&mut Vec::new(), Lsn::ZERO),
            Err(WalError::TooLarge { .. })
        ));
    }
}
