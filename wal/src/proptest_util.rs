//! Proptest strategies for the WAL's formats: the one place they live.
//!
//! Used by this crate's tests and, through the `proptest` feature, by any
//! crate whose tests need random pages, page ops or records (the page
//! server's and the DMS's redo checks, the log service's streams).
//!
//! Sizes are chosen so that random op sequences on one page hit every
//! outcome: most slots exist, some do not; most items are small, a few are
//! big enough to fill the page within a few dozen ops. Every item fits the
//! record format (at most [`MAX_ITEM_BYTES`]), so every generated record
//! frames and decodes.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::lsn::{Lsn, PageId};
use crate::op::PageOp;
use crate::page::{MAX_ITEM_BYTES, Page};
use crate::record::Record;

/// A stream position, with room for any number of records after it.
pub fn arb_lsn() -> impl Strategy<Value = Lsn> {
    prop_oneof![0..4096u64, 0..(1u64 << 62)].prop_map(Lsn)
}

pub fn arb_page_id() -> impl Strategy<Value = PageId> {
    (0..8u32, any::<u32>()).prop_map(|(space, page_no)| PageId::new(space, page_no))
}

/// Item bytes: mostly small, sometimes a large share of a page, now and
/// then the largest an item may be.
pub fn arb_item() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        16 => vec(any::<u8>(), 0..48),
        3 => vec(any::<u8>(), 48..2500),
        1 => Just(vec![0xA5; MAX_ITEM_BYTES]),
    ]
}

/// A slot number near the item counts of the pages generated here: mostly
/// low (a page starts empty), sometimes far out of range.
pub fn arb_slot() -> impl Strategy<Value = u16> {
    prop_oneof![12 => 0..4u16, 4 => 0..32u16, 1 => any::<u16>()]
}

/// The contents of a formatted page, as a model of it would hold them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageSpec {
    pub page_type: u8,
    pub level: u8,
    pub items: Vec<Vec<u8>>,
    pub right_link: u32,
    pub lsn: Lsn,
}

impl PageSpec {
    /// The sealed page holding exactly this.
    pub fn build(&self) -> Page {
        let mut page = Page::new_zeroed();
        page.init(self.page_type, self.level);
        for (slot, item) in self.items.iter().enumerate() {
            let slot = u16::try_from(slot).expect("a spec holds few items");
            page.insert(slot, item)
                .expect("a spec's items fit on a page");
        }
        page.set_right_link(self.right_link)
            .expect("the page is formatted");
        page.set_lsn(self.lsn);
        page.seal();
        page
    }
}

/// Pages of up to 24 small items: they always fit.
pub fn arb_page_spec() -> impl Strategy<Value = PageSpec> {
    let items = vec(vec(any::<u8>(), 0..64), 0..24);
    (any::<u8>(), 0..4u8, items, any::<u32>(), 0..1000u64).prop_map(
        |(page_type, level, items, right_link, lsn)| PageSpec {
            page_type,
            level,
            items,
            right_link,
            lsn: Lsn(lsn),
        },
    )
}

/// A sealed, formatted page.
pub fn arb_page() -> impl Strategy<Value = Page> {
    arb_page_spec().prop_map(|spec| spec.build())
}

/// Every page op but `FullImage`, weighted towards inserts so that pages
/// fill up.
pub fn arb_item_op() -> impl Strategy<Value = PageOp> {
    prop_oneof![
        1 => (any::<u8>(), 0..4u8).prop_map(|(page_type, level)| PageOp::Init { page_type, level }),
        16 => (arb_slot(), arb_item()).prop_map(|(slot, bytes)| PageOp::Insert { slot, bytes }),
        4 => arb_slot().prop_map(|slot| PageOp::Delete { slot }),
        4 => (arb_slot(), arb_item()).prop_map(|(slot, bytes)| PageOp::Replace { slot, bytes }),
        1 => arb_slot().prop_map(|from_slot| PageOp::Truncate { from_slot }),
        2 => any::<u32>().prop_map(|right| PageOp::SetLink { right }),
    ]
}

/// Inserts, deletes and replaces of medium items at low slots: a page under
/// this churn fills up, fragments and gets compacted.
pub fn arb_churn_op() -> impl Strategy<Value = PageOp> {
    let slot = || 0..6u16;
    let item = || vec(any::<u8>(), 0..1800);
    prop_oneof![
        4 => (slot(), item()).prop_map(|(slot, bytes)| PageOp::Insert { slot, bytes }),
        2 => slot().prop_map(|slot| PageOp::Delete { slot }),
        2 => (slot(), item()).prop_map(|(slot, bytes)| PageOp::Replace { slot, bytes }),
    ]
}

/// Every page op, `FullImage` included.
pub fn arb_page_op() -> impl Strategy<Value = PageOp> {
    prop_oneof![
        12 => arb_item_op(),
        1 => arb_page().prop_map(|page| PageOp::full_image(&page)),
    ]
}

/// Every kind of record.
pub fn arb_record() -> impl Strategy<Value = Record> {
    prop_oneof![
        8 => (arb_page_id(), arb_page_op()).prop_map(|(page, op)| Record::Page { page, op }),
        1 => any::<u64>().prop_map(|timestamp_us| Record::Commit { timestamp_us }),
        1 => any::<u64>().prop_map(|term| Record::TermStart { term }),
        1 => any::<u32>().prop_map(|space| Record::DropSpace { space }),
        1 => vec(any::<u8>(), 0..64).prop_map(|payload| Record::RowChange { payload }),
    ]
}

/// The records of one batch, before its `Commit`.
pub fn arb_batch_records() -> impl Strategy<Value = Vec<Record>> {
    vec(
        arb_record().prop_filter("a batch's only Commit is its last record", |r| {
            !matches!(r, Record::Commit { .. })
        }),
        0..8,
    )
}
