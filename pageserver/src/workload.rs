//! A seeded generator of valid page-operation batches and a model to check
//! the page server's answers against: for tests and benchmarks.
//!
//! [`Workload`] keeps its own copy of every page it writes and only emits an
//! op that applies cleanly to it (`Init` for a new page, then inserts,
//! replaces, deletes, truncations, links, full images and re-formats).
//! [`Model`] knows nothing of the generator: it reads the committed log as
//! the page server does (framed bytes at their LSNs) and applies every page
//! record in order to its own page, keeping every version. The page server
//! must answer exactly what the model says: the same bytes, and the exact
//! validity `[from, to)`.

use std::collections::{BTreeMap, HashMap};

use std::time::Duration;

use strata_logservice::client::LogReader;
use strata_wal::op::PageOp;
use strata_wal::page::{Page, SLOT_BYTES};
use strata_wal::record::RecordIter;
use strata_wal::{Lsn, PageId, Record, redo};

use crate::client::RemotePage;

/// SplitMix64: small, seedable, good enough for workloads.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Generates batches of valid page records over a fixed set of pages.
pub struct Workload {
    rng: Rng,
    pages: Vec<PageId>,
    state: HashMap<PageId, Page>,
    /// A stand-in LSN for the generator's own pages (the real LSNs come
    /// when the log places the batch).
    clock: u64,
    /// Largest item the generator writes (most are much smaller).
    pub max_item_bytes: usize,
}

impl Workload {
    pub fn new(seed: u64, pages: Vec<PageId>) -> Workload {
        assert!(!pages.is_empty(), "a workload needs pages");
        Workload {
            rng: Rng::new(seed),
            pages,
            state: HashMap::new(),
            clock: 0,
            max_item_bytes: 400,
        }
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// `records` page records, each valid on its page after the ones before.
    pub fn next_records(&mut self, records: usize) -> Vec<Record> {
        (0..records).map(|_| self.next_record()).collect()
    }

    /// One page record on a random page.
    pub fn next_record(&mut self) -> Record {
        let page = self.pages[self.rng.below(self.pages.len() as u64) as usize];
        self.record_on(page)
    }

    /// One valid record on `page`.
    pub fn record_on(&mut self, page: PageId) -> Record {
        self.clock += 1;
        let lsn = Lsn(self.clock);
        let current = self
            .state
            .entry(page)
            .or_insert_with(Page::new_zeroed)
            .clone();
        loop {
            let op = self.pick_op(&current);
            let mut next = current.clone();
            if redo::apply_op(&mut next, lsn, &op).is_ok() {
                self.state.insert(page, next);
                return Record::Page { page, op };
            }
        }
    }

    fn item(&mut self) -> Vec<u8> {
        let len = if self.rng.chance(5) {
            self.max_item_bytes
        } else {
            1 + self.rng.below(self.max_item_bytes.min(64) as u64) as usize
        };
        let fill = self.rng.next_u64() as u8;
        (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
    }

    /// An op for `page`; it may not fit (the caller then asks again).
    fn pick_op(&mut self, page: &Page) -> PageOp {
        let count = page.slot_count();
        if page.free_space().is_err() {
            return PageOp::Init {
                page_type: 1 + self.rng.below(3) as u8,
                level: 0,
            };
        }
        let slot = |rng: &mut Rng, n: u16| rng.below(u64::from(n).max(1)) as u16;
        match self.rng.below(100) {
            0..=44 if page.free_space().unwrap_or(0) > SLOT_BYTES + self.max_item_bytes => {
                PageOp::Insert {
                    slot: slot(&mut self.rng, count + 1),
                    bytes: self.item(),
                }
            }
            0..=64 if count > 0 => PageOp::Replace {
                slot: slot(&mut self.rng, count),
                bytes: self.item(),
            },
            0..=84 if count > 0 => PageOp::Delete {
                slot: slot(&mut self.rng, count),
            },
            85..=89 => PageOp::Truncate {
                from_slot: slot(&mut self.rng, count + 1),
            },
            90..=94 => PageOp::SetLink {
                right: self.rng.next_u64() as u32,
            },
            95..=97 => PageOp::full_image(page),
            98..=99 => PageOp::Init {
                page_type: 1 + self.rng.below(3) as u8,
                level: self.rng.below(2) as u8,
            },
            _ => PageOp::Delete {
                slot: slot(&mut self.rng, count),
            },
        }
    }
}

/// A record that formats `page` (type 1, level 0): the first of a page in
/// a hand-written log.
pub fn init_record(page: PageId) -> Record {
    Record::Page {
        page,
        op: PageOp::Init {
            page_type: 1,
            level: 0,
        },
    }
}

/// A record that inserts `bytes` at slot 0 of `page`.
pub fn insert_record(page: PageId, bytes: &[u8]) -> Record {
    Record::Page {
        page,
        op: PageOp::Insert {
            slot: 0,
            bytes: bytes.to_vec(),
        },
    }
}

/// What the page server must answer for a page at an LSN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub page: Page,
    pub from: Lsn,
    pub to: Lsn,
}

/// Every version of every page, from the committed log.
#[derive(Default)]
pub struct Model {
    versions: HashMap<PageId, BTreeMap<Lsn, Page>>,
    /// Where the log the model has read ends.
    end: Lsn,
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    /// Where the log the model has read ends.
    pub fn end(&self) -> Lsn {
        self.end
    }

    pub fn pages(&self) -> impl Iterator<Item = PageId> + '_ {
        self.versions.keys().copied()
    }

    /// The LSNs of `page`'s records.
    pub fn record_lsns(&self, page: PageId) -> Vec<Lsn> {
        self.versions
            .get(&page)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Reads committed log bytes that start at `start` (which must be where
    /// the model's log ends).
    pub fn read(&mut self, start: Lsn, data: &[u8]) {
        assert_eq!(start, self.end, "the model reads the log in order");
        for rec in RecordIter::new(data, start) {
            let rec = rec.expect("the log holds valid records");
            if rec.kind.is_page_op() {
                let versions = self.versions.entry(rec.page).or_default();
                let mut page = versions
                    .last_key_value()
                    .map(|(_, p)| p.clone())
                    .unwrap_or_else(Page::new_zeroed);
                redo::apply(&mut page, &rec).expect("the workload only writes ops that apply");
                versions.insert(rec.lsn, page);
            }
            self.end = rec.lsn;
        }
    }

    /// Reads the committed log from where the model ends up to `upto` as
    /// consumer `consumer_id`, then reports its safe LSN (a consumer that
    /// never did would hold the log's trimming back). Each wait for the log
    /// is bounded by `patience`: a commit the log never shows its readers is
    /// an error, not a hang.
    pub async fn follow(
        &mut self,
        cluster_id: &str,
        consumer_id: &str,
        endpoints: Vec<String>,
        upto: Lsn,
        patience: Duration,
    ) -> Result<(), String> {
        let mut reader = LogReader::new(cluster_id, consumer_id, endpoints, self.end);
        while self.end < upto {
            let chunk = tokio::time::timeout(patience, reader.next_chunk())
                .await
                .map_err(|_| format!("the log shows nothing past {}", self.end))?
                .map_err(|e| format!("reading the log at {}: {e}", self.end))?;
            self.read(chunk.start, &chunk.data);
        }
        reader
            .report_safe_lsn(self.end)
            .await
            .map_err(|e| format!("reporting the safe LSN: {e}"))
    }

    /// Checks an answer for `page` at `lsn`: the same bytes and the exact
    /// validity, as of the ingested LSN the answer implies (`to - 1` when
    /// no later record was known to the server).
    pub fn check(&self, page: PageId, lsn: Lsn, got: &RemotePage) -> Result<(), String> {
        let ingested = Lsn(got.to.0.saturating_sub(1));
        let want = self
            .expected(page, lsn, ingested)
            .ok_or_else(|| format!("{page} at {lsn}: the model has no such page"))?;
        if (got.from, got.to) != (want.from, want.to) {
            return Err(format!(
                "{page} at {lsn}: valid [{}, {}), the model says [{}, {})",
                got.from, got.to, want.from, want.to
            ));
        }
        if got.page != want.page {
            return Err(format!("{page} at {lsn}: different bytes"));
        }
        Ok(())
    }

    /// `page` as of `lsn`, when the page server has ingested up to
    /// `ingested` (≥ `lsn`); `None` if the page has no record at or below
    /// `lsn`.
    pub fn expected(&self, page: PageId, lsn: Lsn, ingested: Lsn) -> Option<Expected> {
        let versions = self.versions.get(&page)?;
        let (from, image) = versions.range(..=lsn).next_back()?;
        let to = versions
            .range(lsn.advance(1)..)
            .next()
            .map(|(l, _)| *l)
            .filter(|l| *l <= ingested)
            .unwrap_or(ingested.advance(1));
        Some(Expected {
            page: image.clone(),
            from: *from,
            to,
        })
    }

    /// A (page, LSN) worth asking about: a page with records, at one of its
    /// record LSNs, just before or after one, or anywhere up to `upto`.
    /// `None` while no page has records.
    pub fn sample(&self, rng: &mut Rng, upto: Lsn) -> Option<(PageId, Lsn)> {
        let mut pages: Vec<PageId> = self.pages().collect();
        if pages.is_empty() || upto == Lsn::ZERO {
            return None;
        }
        pages.sort_unstable();
        let page = pages[rng.below(pages.len() as u64) as usize];
        let lsns: Vec<Lsn> = self.versions[&page]
            .range(..=upto)
            .map(|(l, _)| *l)
            .collect();
        let lsn = match (rng.below(4), lsns.is_empty()) {
            (0, _) | (_, true) => Lsn(1 + rng.below(upto.0.max(1))),
            (k, false) => {
                let at = lsns[rng.below(lsns.len() as u64) as usize].0;
                Lsn(match k {
                    1 => at,
                    2 => at - 1,
                    _ => (at + 1).min(upto.0),
                })
            }
        };
        Some((page, lsn))
    }
}

/// How many layer files (`*.delta`) are in `dir`: after a restart, tests
/// compare it with the files the manifest names (strays must be gone).
pub fn layer_files_in(dir: &std::path::Path) -> std::io::Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        n += usize::from(e?.file_name().to_string_lossy().ends_with(".delta"));
    }
    Ok(n)
}
