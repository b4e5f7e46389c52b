//! Properties of redo: `redo::apply` matches a simple model of a page for
//! random op sequences, is deterministic (the same records give the same
//! bytes, whether framed or not), refuses replays, and never panics on a
//! corrupt page.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use strata_wal::op::PageOp;
use strata_wal::page::{PAGE_HEADER_BYTES, PAGE_SIZE, Page, PageError, SLOT_BYTES};
use strata_wal::proptest_util::{
    PageSpec, arb_churn_op, arb_item, arb_item_op, arb_page, arb_page_op, arb_page_spec, arb_slot,
};
use strata_wal::{Lsn, PageId, Record, WalError, record, redo};

const ID: PageId = PageId::new(1, 42);

/// What a page holds, without a byte layout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    formatted: bool,
    page_type: u8,
    level: u8,
    items: Vec<Vec<u8>>,
    right_link: u32,
    lsn: Lsn,
}

impl Model {
    fn of(spec: &PageSpec) -> Model {
        Model {
            formatted: true,
            page_type: spec.page_type,
            level: spec.level,
            items: spec.items.clone(),
            right_link: spec.right_link,
            lsn: spec.lsn,
        }
    }

    /// Free bytes for items and slots.
    fn free(&self) -> usize {
        let used: usize = self.items.iter().map(|i| i.len() + SLOT_BYTES).sum();
        PAGE_SIZE - PAGE_HEADER_BYTES - used
    }

    fn apply(&mut self, lsn: Lsn, step: &Step) -> Result<(), PageError> {
        if lsn <= self.lsn {
            return Err(PageError::StaleLsn {
                page_lsn: self.lsn,
                record_lsn: lsn,
            });
        }
        match step {
            Step::Image(spec) => *self = Model::of(spec),
            Step::Op(op) => self.apply_op(op)?,
        }
        self.lsn = lsn;
        Ok(())
    }

    fn apply_op(&mut self, op: &PageOp) -> Result<(), PageError> {
        if let PageOp::Init { page_type, level } = *op {
            *self = Model {
                formatted: true,
                page_type,
                level,
                ..Model::default()
            };
            return Ok(());
        }
        if !self.formatted {
            return Err(PageError::NotFormatted { version: 0 });
        }
        let count = self.items.len() as u16;
        let out_of_range = |slot| PageError::SlotOutOfRange { slot, count };
        match op {
            PageOp::Insert { slot, .. } if *slot > count => return Err(out_of_range(*slot)),
            PageOp::Truncate { from_slot } if *from_slot > count => {
                return Err(out_of_range(*from_slot));
            }
            PageOp::Delete { slot } | PageOp::Replace { slot, .. } if *slot >= count => {
                return Err(out_of_range(*slot));
            }
            _ => {}
        }
        self.apply_checked(op)
    }

    /// `op`, whose slot is known to be in range.
    fn apply_checked(&mut self, op: &PageOp) -> Result<(), PageError> {
        match op {
            PageOp::Insert { slot, bytes } => {
                let (need, free) = (bytes.len() + SLOT_BYTES, self.free());
                if need > free {
                    return Err(PageError::PageFull { need, free });
                }
                self.items.insert(usize::from(*slot), bytes.clone());
            }
            PageOp::Replace { slot, bytes } => {
                let old = self.items[usize::from(*slot)].len();
                let (need, free) = (bytes.len(), self.free() + old);
                if need > old && need > free {
                    return Err(PageError::PageFull { need, free });
                }
                self.items[usize::from(*slot)] = bytes.clone();
            }
            PageOp::Delete { slot } => drop(self.items.remove(usize::from(*slot))),
            PageOp::Truncate { from_slot } => self.items.truncate(usize::from(*from_slot)),
            PageOp::SetLink { right } => self.right_link = *right,
            PageOp::Init { .. } | PageOp::FullImage { .. } => unreachable!("handled by apply"),
        }
        Ok(())
    }
}

/// One record of a model run: an op, or a full image of a known page.
#[derive(Clone, Debug)]
enum Step {
    Op(PageOp),
    Image(PageSpec),
}

impl Step {
    fn op(&self) -> PageOp {
        match self {
            Step::Op(op) => op.clone(),
            Step::Image(spec) => PageOp::full_image(&spec.build()),
        }
    }
}

fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        40 => arb_item_op().prop_map(Step::Op),
        1 => arb_page_spec().prop_map(Step::Image),
    ];
    let init =
        (any::<u8>(), 0..4u8).prop_map(|(page_type, level)| PageOp::Init { page_type, level });
    (prop::option::weighted(0.9, init), vec(step, 0..120)).prop_map(|(init, mut steps)| {
        if let Some(op) = init {
            steps.insert(0, Step::Op(op));
        }
        steps
    })
}

fn assert_matches_model(page: &Page, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(page.lsn(), model.lsn);
    if !model.formatted {
        return Ok(());
    }
    page.verify(ID)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let items: Vec<Vec<u8>> = page
        .items()
        .map(|i| i.map(<[u8]>::to_vec))
        .collect::<Result<_, _>>()
        .unwrap();
    prop_assert_eq!(&items, &model.items);
    prop_assert_eq!(
        (page.page_type(), page.level()),
        (model.page_type, model.level)
    );
    prop_assert_eq!(page.right_link(), model.right_link);
    prop_assert_eq!(page.free_space(), Ok(model.free()));
    Ok(())
}

/// Applies `op` framed as a record at `start` through `redo::apply`;
/// returns the record's LSN and the outcome.
fn apply_framed(page: &mut Page, op: PageOp, start: Lsn) -> (Lsn, Result<(), WalError>) {
    let mut buf = Vec::new();
    let lsn = Record::Page { page: ID, op }
        .encode(&mut buf, start)
        .unwrap();
    let framed = record::decode(&buf, start).unwrap();
    (lsn, redo::apply(page, &framed))
}

/// `ops` framed one after the other from `start`: the bytes and each
/// record's LSN.
fn frame_all(ops: &[PageOp], start: Lsn) -> (Vec<u8>, Vec<Lsn>) {
    let mut buf = Vec::new();
    let mut lsns = Vec::new();
    for op in ops {
        let pos = lsns.last().copied().unwrap_or(start);
        lsns.push(
            Record::Page {
                page: ID,
                op: op.clone(),
            }
            .encode(&mut buf, pos)
            .unwrap(),
        );
    }
    (buf, lsns)
}

/// `ops` applied directly to `page` at `lsns`.
fn replay(mut page: Page, ops: &[PageOp], lsns: &[Lsn]) -> (Page, Vec<Result<(), PageError>>) {
    let results = ops
        .iter()
        .zip(lsns)
        .map(|(op, lsn)| redo::apply_op(&mut page, *lsn, op))
        .collect();
    (page, results)
}

/// `ops` applied to `page` at LSNs just past its own.
fn replay_after(page: Page, ops: &[PageOp]) -> (Page, Vec<Result<(), PageError>>, Vec<Lsn>) {
    let (_, lsns) = frame_all(ops, page.lsn());
    let (page, results) = replay(page, ops, &lsns);
    (page, results, lsns)
}

/// Runs `steps` framed from `start` through `redo::apply`, checking the
/// page against the model after each.
fn check_against_model(steps: &[Step], start: Lsn) -> Result<(), TestCaseError> {
    let (mut page, mut model) = (Page::new_zeroed(), Model::default());
    let mut pos = start;
    for step in steps {
        let before = page.clone();
        let (lsn, got) = apply_framed(&mut page, step.op(), pos);
        let want = model
            .apply(lsn, step)
            .map_err(|source| WalError::Redo { at: pos, source });
        prop_assert_eq!(&got, &want, "step {:?}", step);
        if got.is_err() {
            prop_assert!(page == before, "a failed redo changed the page");
        }
        assert_matches_model(&page, &model)?;
        pos = lsn;
    }
    Ok(())
}

proptest! {
    #[test]
    fn redo_matches_a_model_of_the_page(steps in arb_steps(), start in 0..1_000_000u64) {
        check_against_model(&steps, Lsn(start))?;
    }

    #[test]
    fn redo_matches_the_model_under_churn(ops in vec(arb_churn_op(), 0..150), start in 0..1_000_000u64) {
        let init = Step::Op(PageOp::Init { page_type: 1, level: 0 });
        let steps: Vec<Step> = std::iter::once(init).chain(ops.into_iter().map(Step::Op)).collect();
        check_against_model(&steps, Lsn(start))?;
    }

    #[test]
    fn redo_is_deterministic(page in arb_page(), ops in vec(arb_page_op(), 0..40)) {
        let (bytes, lsns) = frame_all(&ops, page.lsn());
        let (once, results) = replay(page.clone(), &ops, &lsns);
        let (twice, again) = replay(page.clone(), &ops, &lsns);
        prop_assert_eq!(&results, &again);
        prop_assert!(once.as_bytes() == twice.as_bytes());
        // The framed path (decode, then `redo::apply`) gives the same bytes.
        let mut framed = page;
        for (r, want) in record::RecordIter::new(&bytes, framed.lsn()).zip(&results) {
            let got = redo::apply(&mut framed, &r.unwrap());
            prop_assert_eq!(got.is_ok(), want.is_ok());
        }
        prop_assert!(framed.as_bytes() == once.as_bytes());
    }

    /// A `Replay` (one seal at the end) gives the bytes of `apply` record by
    /// record, for the records that apply; it stops at the first that does
    /// not.
    #[test]
    fn replay_seals_once_to_the_same_bytes(page in arb_page(), ops in vec(arb_page_op(), 0..40)) {
        let (bytes, _) = frame_all(&ops, page.lsn());
        let mut one_by_one = page.clone();
        let mut replay = redo::Replay::new(page);
        for r in record::RecordIter::new(&bytes, one_by_one.lsn()) {
            let r = r.unwrap();
            let want = redo::apply(&mut one_by_one, &r);
            let got = replay.apply(&r);
            prop_assert_eq!(&got, &want);
            if got.is_err() {
                break;
            }
        }
        prop_assert!(replay.finish().as_bytes() == one_by_one.as_bytes());
    }

    #[test]
    fn a_replayed_record_is_refused(page in arb_page(), ops in vec(arb_item_op(), 1..20), pick in any::<Index>()) {
        let first_lsn = page.lsn();
        let (mut page, results, lsns) = replay_after(page, &ops);
        let applied: Vec<Lsn> = lsns.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(l, _)| *l).collect();
        let lsn = *[&[first_lsn][..], &applied].concat().get(pick.index(applied.len() + 1)).unwrap();
        let op = ops.get(pick.index(ops.len())).unwrap().clone();
        let before = page.clone();
        let got = redo::apply_op(&mut page, lsn, &op);
        prop_assert_eq!(got, Err(PageError::StaleLsn { page_lsn: before.lsn(), record_lsn: lsn }));
        prop_assert!(page == before);
    }

    #[test]
    fn a_full_image_restores_its_page(spec in arb_page_spec(), target in arb_page(), ops in vec(arb_item_op(), 0..10)) {
        let (target, _, _) = replay_after(target, &ops);
        let source = spec.build();
        let lsn = Lsn(target.lsn().0 + 1);
        let mut page = target;
        redo::apply_op(&mut page, lsn, &PageOp::full_image(&source)).unwrap();
        assert_matches_model(&page, &Model { lsn, ..Model::of(&spec) })?;
        // All but the checksum and the LSN come from the image.
        prop_assert_eq!(&page.as_bytes()[..4], &source.as_bytes()[..4]);
        prop_assert_eq!(&page.as_bytes()[16..], &source.as_bytes()[16..]);
    }

    /// A page with random bytes damaged (and not resealed): every operation
    /// returns, verify notices, nothing panics.
    #[test]
    fn a_corrupt_page_never_panics(
        page in arb_page(),
        flips in vec((prop_oneof![0..96usize, 0..PAGE_SIZE], 1..=255u8), 1..6),
        ops in vec((arb_slot(), arb_item()), 1..6),
    ) {
        let mut bytes = page.as_bytes().to_vec();
        for (at, mask) in flips {
            bytes[at] ^= mask;
        }
        let damaged = Page::from_bytes(&bytes).unwrap();
        if damaged != page {
            prop_assert!(damaged.verify(ID).is_err());
        }
        for item in damaged.items() {
            let _ = item;
        }
        let _ = damaged.free_space();
        for (slot, item) in ops {
            let mut p = damaged.clone();
            let _ = (p.insert(slot, &item), p.replace(slot, &item), p.delete(slot));
            let _ = (p.truncate(slot), p.set_right_link(1), p.item(slot));
            let _ = redo::apply_op(&mut p, Lsn::MAX, &PageOp::Insert { slot, bytes: item });
        }
    }

    #[test]
    fn a_damaged_full_image_never_panics(page in arb_page(), at in any::<Index>(), mask in 1..=255u8) {
        let PageOp::FullImage { mut compressed } = PageOp::full_image(&page) else {
            unreachable!("full_image makes a FullImage")
        };
        let i = at.index(compressed.len());
        compressed[i] ^= mask;
        let mut target = Page::new_zeroed();
        match redo::apply_op(&mut target, Lsn(1), &PageOp::FullImage { compressed }) {
            Ok(()) => prop_assert_eq!(target.lsn(), Lsn(1)),
            Err(e) => prop_assert!(matches!(e, PageError::BadImage { .. }), "{:?}", e),
        }
    }
}
