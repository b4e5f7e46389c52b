//! Physiological page operations and their record bodies.
//!
//! A [`PageOp`] is one change to one page; the page id travels in the record
//! header (see [`crate::record`]), the op in the body. Bodies are little
//! endian and *canonical*: a body decodes only if it is exactly what
//! [`PageOp::encode_body`] makes of the decoded op, so
//! `encode(decode(b)) == b` for every body that decodes.
//!
//! | kind      | body                                   |
//! |-----------|----------------------------------------|
//! | Init      | `page_type u8, level u8`               |
//! | Insert    | `slot u16`, item bytes (the rest)      |
//! | Delete    | `slot u16`                             |
//! | Replace   | `slot u16`, item bytes (the rest)      |
//! | Truncate  | `from_slot u16`                        |
//! | SetLink   | `right u32`                            |
//! | FullImage | lz4 block of the whole page (the rest) |
//!
//! Decoding never panics and never allocates more than a page per op: a
//! malformed body is a [`WalError::BadBody`] naming the record's LSN. A
//! decoded op may still not fit its page (slot out of range, page full):
//! that is found by [`crate::redo`], which owns what each op does.
//!
//! Adding a kind: its variant here, its arms in [`PageOp::kind`],
//! [`PageOp::encode_body`] and [`PageOp::decode_body`], and its arm in
//! `redo::apply_op`.

use crate::error::{Result, WalError};
use crate::lsn::Lsn;
use crate::page::{MAX_ITEM_BYTES, PAGE_SIZE, Page, PageError};
use crate::record::RecordKind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageOp {
    /// Formats the page (every byte zeroed first).
    Init {
        page_type: u8,
        level: u8,
    },
    /// Inserts item `slot`; later items move up.
    Insert {
        slot: u16,
        bytes: Vec<u8>,
    },
    /// Deletes item `slot`; later items move down.
    Delete {
        slot: u16,
    },
    Replace {
        slot: u16,
        bytes: Vec<u8>,
    },
    /// Deletes items `from_slot..`.
    Truncate {
        from_slot: u16,
    },
    /// Sets the right-sibling link (0 = none).
    SetLink {
        right: u32,
    },
    /// The whole page, lz4-compressed (a raw lz4 block of [`PAGE_SIZE`]
    /// bytes). Build it with [`PageOp::full_image`].
    FullImage {
        compressed: Vec<u8>,
    },
}

impl PageOp {
    pub fn kind(&self) -> RecordKind {
        match self {
            PageOp::Init { .. } => RecordKind::Init,
            PageOp::Insert { .. } => RecordKind::Insert,
            PageOp::Delete { .. } => RecordKind::Delete,
            PageOp::Replace { .. } => RecordKind::Replace,
            PageOp::Truncate { .. } => RecordKind::Truncate,
            PageOp::SetLink { .. } => RecordKind::SetLink,
            PageOp::FullImage { .. } => RecordKind::FullImage,
        }
    }

    /// A full image of `page`, compressed.
    pub fn full_image(page: &Page) -> PageOp {
        PageOp::FullImage {
            compressed: lz4_flex::block::compress(page.as_bytes()),
        }
    }

    pub fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            PageOp::Init { page_type, level } => out.extend_from_slice(&[*page_type, *level]),
            PageOp::Insert { slot, bytes } | PageOp::Replace { slot, bytes } => {
                out.extend_from_slice(&slot.to_le_bytes());
                out.extend_from_slice(bytes);
            }
            PageOp::Delete { slot } => out.extend_from_slice(&slot.to_le_bytes()),
            PageOp::Truncate { from_slot } => out.extend_from_slice(&from_slot.to_le_bytes()),
            PageOp::SetLink { right } => out.extend_from_slice(&right.to_le_bytes()),
            PageOp::FullImage { compressed } => out.extend_from_slice(compressed),
        }
    }

    /// Decodes the body of a page record of `kind` that starts at `at`.
    pub fn decode_body(kind: RecordKind, body: &[u8], at: Lsn) -> Result<PageOp> {
        let mut r = BodyReader { body, at, kind };
        match kind {
            RecordKind::Init => {
                let [page_type, level] = r.take()?;
                r.end(PageOp::Init { page_type, level })
            }
            RecordKind::Insert => Ok(PageOp::Insert {
                slot: r.u16()?,
                bytes: r.item()?,
            }),
            RecordKind::Delete => {
                let slot = r.u16()?;
                r.end(PageOp::Delete { slot })
            }
            RecordKind::Replace => Ok(PageOp::Replace {
                slot: r.u16()?,
                bytes: r.item()?,
            }),
            RecordKind::Truncate => {
                let from_slot = r.u16()?;
                r.end(PageOp::Truncate { from_slot })
            }
            RecordKind::SetLink => {
                let right = u32::from_le_bytes(r.take()?);
                r.end(PageOp::SetLink { right })
            }
            RecordKind::FullImage => match decompress_image(body) {
                Ok(_) => Ok(PageOp::FullImage {
                    compressed: body.to_vec(),
                }),
                Err(_) => Err(r.bad("not an lz4 block of exactly one page")),
            },
            RecordKind::Commit
            | RecordKind::TermStart
            | RecordKind::DropSpace
            | RecordKind::RowChange => Err(r.bad("not a page operation")),
        }
    }
}

/// Decompresses a full page image; more or fewer than [`PAGE_SIZE`] bytes,
/// or a malformed block, is [`PageError::BadImage`].
pub fn decompress_image(compressed: &[u8]) -> std::result::Result<Page, PageError> {
    let mut buf = vec![0u8; PAGE_SIZE];
    match lz4_flex::block::decompress_into(compressed, &mut buf) {
        Ok(PAGE_SIZE) => Page::from_bytes(&buf),
        Ok(_) => Err(PageError::BadImage {
            reason: "the image is shorter than a page",
        }),
        Err(_) => Err(PageError::BadImage {
            reason: "malformed or longer than a page",
        }),
    }
}

/// Reads a body front to back; every shortfall is a `BadBody`.
struct BodyReader<'a> {
    body: &'a [u8],
    at: Lsn,
    kind: RecordKind,
}

impl BodyReader<'_> {
    fn bad(&self, reason: &'static str) -> WalError {
        WalError::BadBody {
            at: self.at,
            kind: self.kind,
            reason,
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, rest) = self
            .body
            .split_first_chunk::<N>()
            .ok_or(self.bad("body too short"))?;
        self.body = rest;
        Ok(*head)
    }

    fn u16(&mut self) -> Result<u16> {
        self.take().map(u16::from_le_bytes)
    }

    /// The rest of the body as one item.
    fn item(self) -> Result<Vec<u8>> {
        if self.body.len() > MAX_ITEM_BYTES {
            return Err(self.bad("item larger than a page can hold"));
        }
        Ok(self.body.to_vec())
    }

    /// `op`, if the whole body has been read.
    fn end(self, op: PageOp) -> Result<PageOp> {
        if !self.body.is_empty() {
            return Err(self.bad("trailing bytes"));
        }
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Lsn = Lsn(77);

    fn body(op: &PageOp) -> Vec<u8> {
        let mut out = Vec::new();
        op.encode_body(&mut out);
        out
    }

    #[test]
    fn bodies_have_their_documented_bytes() {
        let cases = [
            (
                PageOp::Init {
                    page_type: 3,
                    level: 2,
                },
                vec![3, 2],
            ),
            (
                PageOp::Insert {
                    slot: 0x102,
                    bytes: vec![9, 8],
                },
                vec![2, 1, 9, 8],
            ),
            (PageOp::Delete { slot: 5 }, vec![5, 0]),
            (
                PageOp::Replace {
                    slot: 1,
                    bytes: vec![],
                },
                vec![1, 0],
            ),
            (PageOp::Truncate { from_slot: 0x300 }, vec![0, 3]),
            (PageOp::SetLink { right: 0x0403_0201 }, vec![1, 2, 3, 4]),
        ];
        for (op, bytes) in cases {
            assert_eq!(body(&op), bytes, "{op:?}");
            assert_eq!(PageOp::decode_body(op.kind(), &bytes, AT), Ok(op));
        }
    }

    #[test]
    fn short_and_long_bodies_are_bad_bodies() {
        let bad = |kind, reason| {
            Err(WalError::BadBody {
                at: AT,
                kind,
                reason,
            })
        };
        assert_eq!(
            PageOp::decode_body(RecordKind::Init, &[1], AT),
            bad(RecordKind::Init, "body too short")
        );
        assert_eq!(
            PageOp::decode_body(RecordKind::Delete, &[1, 0, 0], AT),
            bad(RecordKind::Delete, "trailing bytes")
        );
        assert_eq!(
            PageOp::decode_body(RecordKind::Insert, &[1], AT),
            bad(RecordKind::Insert, "body too short")
        );
        let huge = vec![0; 2 + MAX_ITEM_BYTES + 1];
        assert_eq!(
            PageOp::decode_body(RecordKind::Replace, &huge, AT),
            bad(RecordKind::Replace, "item larger than a page can hold")
        );
        assert_eq!(
            PageOp::decode_body(RecordKind::Commit, &[], AT),
            bad(RecordKind::Commit, "not a page operation")
        );
    }

    #[test]
    fn a_full_image_round_trips_its_page() {
        let mut page = Page::new_zeroed();
        page.init(1, 0);
        page.insert(0, b"image me").unwrap();
        let op = PageOp::full_image(&page);
        let PageOp::FullImage { compressed } = &op else {
            unreachable!()
        };
        assert!(
            compressed.len() < PAGE_SIZE / 10,
            "a mostly empty page compresses"
        );
        assert_eq!(decompress_image(compressed), Ok(page));
        assert_eq!(
            PageOp::decode_body(RecordKind::FullImage, &body(&op), AT),
            Ok(op)
        );
    }

    #[test]
    fn bad_images_are_typed_errors() {
        let short = lz4_flex::block::compress(&[0; 100]);
        let long = lz4_flex::block::compress(&[0; PAGE_SIZE + 1]);
        for bytes in [&short[..], &long[..], &[0xff, 0xff, 0xff][..], &[][..]] {
            assert!(matches!(
                decompress_image(bytes),
                Err(PageError::BadImage { .. })
            ));
            assert!(matches!(
                PageOp::decode_body(RecordKind::FullImage, bytes, AT),
                Err(WalError::BadBody {
                    at: AT,
                    kind: RecordKind::FullImage,
                    ..
                })
            ));
        }
    }
}
