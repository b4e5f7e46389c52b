//! The pool against a model that keeps every page's full history (the
//! truth) and a model page server that knows the truth up to the durable
//! LSN. Random publishes, fetches delivered late (so publishes overtake
//! them), durability, releases, eviction pressure and one discard: every
//! version `get` returns must be exactly the true one, and pinned versions
//! must always be there.

use std::collections::BTreeSet;

use proptest::prelude::*;
use strata_wal::{Lsn, PageId};

use super::tests::{image, read_tag};
use super::{BufferPool, VERSION_BYTES};

const PAGES: u32 = 4;
const START: u64 = 1000;

#[derive(Clone, Debug)]
enum Op {
    /// The applier writes the pages in `mask` (LSNs in one batch).
    Publish {
        mask: u8,
        gap: u8,
    },
    /// The quorum reaches one of the published batch ends.
    MarkDurable {
        pick: u8,
    },
    /// A snapshot read misses and asks the page server.
    FetchAt {
        page: u32,
        lsn: u16,
    },
    /// The write path asks for the current version.
    FetchCurrent {
        page: u32,
        plain: bool,
    },
    /// The write path's plain insert with `to = MAX`, with no publish
    /// between the fetch and the insert.
    InsertCurrentNow {
        page: u32,
    },
    /// A fetch in flight arrives.
    Deliver {
        pick: u8,
    },
    Get {
        page: u32,
        lsn: u16,
    },
    Release {
        lsn: u16,
    },
    Discard,
    /// Reads `page` at the applied LSN: keeps its current version warm.
    Touch {
        page: u32,
    },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..16u8, 0..3u8).prop_map(|(mask, gap)| Op::Publish { mask, gap }),
        3 => any::<u8>().prop_map(|pick| Op::MarkDurable { pick }),
        3 => (0..PAGES, any::<u16>()).prop_map(|(page, lsn)| Op::FetchAt { page, lsn }),
        3 => (0..PAGES, any::<bool>()).prop_map(|(page, plain)| Op::FetchCurrent { page, plain }),
        1 => (0..PAGES).prop_map(|page| Op::InsertCurrentNow { page }),
        4 => any::<u8>().prop_map(|pick| Op::Deliver { pick }),
        6 => (0..PAGES, any::<u16>()).prop_map(|(page, lsn)| Op::Get { page, lsn }),
        1 => any::<u16>().prop_map(|lsn| Op::Release { lsn }),
        1 => Just(Op::Discard),
        2 => (0..PAGES).prop_map(|page| Op::Touch { page }),
    ]
}

/// How a fetched version is inserted when it arrives.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A snapshot read: `insert` with the source's range.
    Snapshot,
    /// The write path: `insert_current`, fetched at this LSN.
    Current(Lsn),
    /// The write path through plain `insert(.., MAX)`, fetched when the
    /// page had this many writes: true only if at most one publish wrote
    /// the page since (documented), so delivered as a snapshot otherwise.
    PlainMax(usize),
}

/// A page server answer on its way.
struct Pending {
    page: PageId,
    from: Lsn,
    to: Lsn,
    kind: Kind,
}

struct Model {
    budget_bytes: u64,
    /// Every write of every page, ever (the truth).
    history: Vec<BTreeSet<u64>>,
    batch_ends: Vec<u64>,
    applied: u64,
    durable: u64,
    fenced: bool,
    pending: Vec<Pending>,
}

/// An LSN at or below `hi` from `x`: mostly within 64 of `hi`, where
/// this node's writes are, sometimes anywhere.
fn near(x: u16, hi: u64) -> u64 {
    let x = u64::from(x);
    if x % 4 == 0 {
        (x / 4) % (hi + 1)
    } else {
        hi.saturating_sub(x % 64)
    }
}

fn page_id(n: u32) -> PageId {
    PageId::new(1, n)
}

impl Model {
    fn new(budget_bytes: u64) -> Model {
        Model {
            budget_bytes,
            // Written before this node started.
            history: (0..PAGES)
                .map(|n| BTreeSet::from([10 + 100 * u64::from(n)]))
                .collect(),
            batch_ends: Vec::new(),
            applied: START,
            durable: START,
            fenced: false,
            pending: Vec::new(),
        }
    }

    /// The write `page` holds as of `lsn`, if any.
    fn truth(&self, page: u32, lsn: u64) -> Option<u64> {
        self.history[page as usize]
            .range(..=lsn)
            .next_back()
            .copied()
    }

    /// What the page server (which knows the truth up to `durable`)
    /// answers for `page` at `lsn`: `[from, to)`.
    fn serve(&self, page: u32, lsn: u64) -> Option<(Lsn, Lsn)> {
        assert!(lsn <= self.durable);
        let from = self.truth(page, lsn)?;
        let next = self.history[page as usize]
            .range(from + 1..)
            .next()
            .copied();
        let to = next
            .filter(|&n| n <= self.durable)
            .unwrap_or(self.durable + 1);
        Some((Lsn(from), Lsn(to)))
    }

    fn publish(&mut self, pool: &BufferPool, mask: u8, gap: u8) {
        if self.fenced {
            return;
        }
        let mut images = Vec::new();
        let mut lsn = self.applied;
        for n in (0..PAGES).filter(|n| mask & (1 << n) != 0) {
            lsn += 1 + u64::from(gap);
            self.history[n as usize].insert(lsn);
            images.push((page_id(n), image(page_id(n), lsn, lsn)));
        }
        self.applied = lsn + u64::from(gap);
        self.batch_ends.push(self.applied);
        pool.publish(images, Lsn(self.applied));
    }

    fn mark_durable(&mut self, pool: &BufferPool, pick: u8) {
        let ahead: Vec<u64> = self
            .batch_ends
            .iter()
            .copied()
            .filter(|&e| e > self.durable)
            .collect();
        if let Some(&end) = ahead.get(usize::from(pick) % ahead.len().max(1)) {
            self.durable = end;
            pool.mark_durable(Lsn(end));
        }
    }

    fn fetch(&mut self, page: u32, lsn: u64, kind: Kind) {
        if let Some((from, to)) = self.serve(page, lsn) {
            self.pending.push(Pending {
                page: page_id(page),
                from,
                to,
                kind,
            });
        }
    }

    /// The write path's fetch at the page's last-written LSN.
    fn fetch_current(&mut self, pool: &BufferPool, page: u32, plain: bool) {
        let at = pool.last_written(page_id(page));
        // The page server would wait for ingest; the engine has the
        // version pinned meanwhile.
        if at.0 > self.durable {
            return;
        }
        let kind = if plain {
            Kind::PlainMax(self.history[page as usize].len())
        } else {
            Kind::Current(at)
        };
        self.fetch(page, at.0, kind);
    }

    /// The write path's fetch and insert with no publish between them.
    fn insert_current_now(&self, pool: &BufferPool, page: u32) {
        let at = pool.last_written(page_id(page));
        if at.0 > self.durable {
            return;
        }
        if let Some((from, _)) = self.serve(page, at.0) {
            let img = image(page_id(page), from.0, from.0);
            pool.insert(page_id(page), img, from, Lsn::MAX);
        }
    }

    fn deliver(&mut self, pool: &BufferPool, pick: u8) {
        if self.pending.is_empty() {
            return;
        }
        let p = self
            .pending
            .swap_remove(usize::from(pick) % self.pending.len());
        let img = image(p.page, p.from.0, p.from.0);
        let writes = self.history[p.page.page_no as usize].len();
        match p.kind {
            Kind::Current(at) => pool.insert_current(p.page, img, p.from, p.to, at),
            Kind::PlainMax(then) if writes <= then + 1 => {
                pool.insert(p.page, img, p.from, Lsn::MAX)
            }
            Kind::PlainMax(_) | Kind::Snapshot => pool.insert(p.page, img, p.from, p.to),
        }
    }

    fn get(&self, pool: &BufferPool, page: u32, lsn: u64) -> Result<(), TestCaseError> {
        let truth = self.truth(page, lsn);
        let got = pool.get(page_id(page), Lsn(lsn));
        if let Some(img) = &got {
            prop_assert_eq!(Some(img.lsn().0), truth, "page {} at {}", page, lsn);
            prop_assert_eq!(read_tag(img), (page_id(page), img.lsn().0));
        }
        if truth.is_some_and(|w| w > self.durable) {
            prop_assert!(got.is_some(), "pinned page {} at {} was dropped", page, lsn);
        }
        Ok(())
    }

    fn discard(&mut self, pool: &BufferPool) {
        for h in &mut self.history {
            h.retain(|&w| w <= self.durable);
        }
        self.batch_ends.retain(|&e| e <= self.durable);
        self.applied = self.durable;
        self.fenced = true;
        pool.discard_above(Lsn(self.durable));
    }

    fn step(&mut self, pool: &BufferPool, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Publish { mask, gap } => self.publish(pool, mask, gap),
            Op::MarkDurable { pick } => self.mark_durable(pool, pick),
            Op::FetchAt { page, lsn } => self.fetch(page, near(lsn, self.durable), Kind::Snapshot),
            Op::FetchCurrent { page, plain } => self.fetch_current(pool, page, plain),
            Op::InsertCurrentNow { page } => self.insert_current_now(pool, page),
            Op::Deliver { pick } => self.deliver(pool, pick),
            Op::Get { page, lsn } => self.get(pool, page, near(lsn, self.applied))?,
            Op::Release { lsn } => pool.release_below(Lsn(near(lsn, self.applied))),
            Op::Discard => self.discard(pool),
            Op::Touch { page } => self.get(pool, page, self.applied)?,
        }
        self.check(pool)
    }

    fn check(&self, pool: &BufferPool) -> Result<(), TestCaseError> {
        pool.check().map_err(TestCaseError::fail)?;
        let stats = pool.stats();
        let pinned: u64 = self
            .history
            .iter()
            .map(|h| h.range(self.durable + 1..).count() as u64)
            .sum();
        prop_assert_eq!(stats.pinned_bytes, pinned * VERSION_BYTES);
        prop_assert!(
            stats.bytes <= self.budget_bytes.max(stats.pinned_bytes),
            "{:?}",
            stats
        );
        prop_assert_eq!(pool.applied_lsn(), Lsn(self.applied));
        prop_assert_eq!(pool.durable_lsn(), Lsn(self.durable));
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Budgets of 1 to 8 versions: most inserts and unpins evict.
    #[test]
    fn every_version_returned_is_the_true_one(
        budget in 1..8u64,
        ops in prop::collection::vec(arb_op(), 1..200),
    ) {
        let pool = BufferPool::new(budget * VERSION_BYTES, Lsn(START));
        let mut model = Model::new(budget * VERSION_BYTES);
        for op in ops {
            model.step(&pool, op)?;
        }
        // Every page at every LSN, at the end.
        for page in 0..PAGES {
            for lsn in 0..=model.applied {
                model.get(&pool, page, lsn)?;
            }
        }
    }
}
