//! The newest-page cache (`timeline::newest`) against the model: ingest
//! applies each record to the cached newest version of its page, and a
//! read answered from there must be exactly what the layers give — the
//! same bytes and the same validity — at the latest LSN and at older ones,
//! across freezes, flushes, compaction, a tiny budget (evictions from the
//! cache) and a restart.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use strata_pageserver::service::PageService;
use strata_pageserver::timeline::newest::{ENTRY_BYTES, NewestStats};
use strata_pageserver::timeline::{CompactionConfig, Step, Timeline, TimelineConfig, read};
use strata_pageserver::workload::{
    Model, Rng, Workload, init_record as init, insert_record as insert,
};
use strata_wal::page::PAGE_SIZE;
use strata_wal::{BatchBuilder, Lsn, PageId, Record};

const CLUSTER: &str = "newest";

fn open(dir: &std::path::Path, newest_pages: u64) -> Arc<Timeline> {
    Timeline::open(TimelineConfig {
        layer_size_bytes: 8_000,
        image_after_records: 4,
        compaction: CompactionConfig {
            l0_threshold: 2,
            max_l0_per_step: 4,
            target_file_bytes: 10_000,
            image_after_delta_runs: 3,
            // Unpaced: these check answers, not timing.
            cpu_percent: 100,
        },
        newest_bytes: newest_pages * ENTRY_BYTES,
        ..TimelineConfig::new(CLUSTER, dir)
    })
    .unwrap()
}

fn service(tl: &Arc<Timeline>) -> PageService {
    PageService::new(tl.clone(), 4 * PAGE_SIZE as u64, Duration::from_secs(5))
}

/// `records` as one committed batch at the timeline's ingested LSN,
/// ingested and read by the model too.
fn ingest(tl: &Timeline, model: &mut Model, records: &[Record]) -> Lsn {
    let start = tl.ingested();
    let mut b = BatchBuilder::new();
    for r in records {
        b.push(r).unwrap();
    }
    let mut out = Vec::new();
    let end = b.commit(1).stamp_into(&mut out, start);
    model.read(start, &out);
    tl.ingest_chunk(start, &Bytes::from(out), end).unwrap();
    end
}

async fn check(s: &PageService, model: &Model, page: PageId, lsn: Lsn) {
    let ingested = s.timeline().ingested();
    let got = s.get_page(page, lsn).await;
    match model.expected(page, lsn, ingested) {
        Some(want) => {
            let got = got.unwrap_or_else(|e| panic!("{page} at {lsn}: {e}"));
            assert_eq!((got.from, got.to), (want.from, want.to), "{page} at {lsn}");
            assert!(*got.page == want.page, "{page} at {lsn}: different bytes");
        }
        None => assert!(got.is_err(), "{page} at {lsn}: the model has no such page"),
    }
}

struct Case {
    seed: u64,
    batches: usize,
    pages: u32,
    /// The newest-page cache's budget, in pages.
    newest_pages: u64,
}

/// What a case took from the cache.
#[derive(Default)]
struct Taken {
    /// Reads answered from it.
    hits: u64,
    /// Of those, the ones answered by a superseded version.
    superseded: u64,
    /// Images flushes took from it instead of rebuilding them (checked
    /// when a read after a restart, or at an older LSN, meets them in a
    /// layer file).
    images: u64,
}

impl Taken {
    fn add(&mut self, stats: NewestStats) {
        self.hits += stats.hits;
        self.superseded += stats.superseded_hits;
        self.images += stats.image_hits;
    }
}

/// Runs a case; returns what it took from the cache.
fn run(case: Case) -> Taken {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pages: Vec<PageId> = (0..case.pages).map(|i| PageId::new(1, i)).collect();
    let mut workload = Workload::new(case.seed, pages.clone());
    let mut rng = Rng::new(case.seed ^ 0x5EED);
    let mut model = Model::new();
    let mut tl = open(dir.path(), case.newest_pages);
    let mut s = service(&tl);
    let mut taken = Taken::default();
    let mut lsns = vec![Lsn::ZERO];
    for i in 0..case.batches {
        let n = 1 + rng.below(5) as usize;
        lsns.push(ingest(&tl, &mut model, &workload.next_records(n)));
        match rng.below(20) {
            0..=2 => {
                tl.freeze();
            }
            3..=4 => {
                tl.freeze();
                while tl.flush_frozen().unwrap() {}
            }
            5 => while rt.block_on(tl.compact_step_resident()).unwrap() != Step::Idle {},
            6 if i > case.batches / 2 => {
                // A restart: the cache starts empty at the durable LSN,
                // and ingest takes in the rest again (the model has it).
                tl.freeze();
                while tl.flush_frozen().unwrap() {}
                taken.add(tl.newest_stats());
                drop(s);
                drop(tl);
                tl = open(dir.path(), case.newest_pages);
                s = service(&tl);
            }
            _ => {}
        }
        for _ in 0..1 + rng.below(4) {
            let page = pages[rng.below(pages.len() as u64) as usize];
            // Mostly the latest LSN (what the cache is for), sometimes an
            // older one (which it must never answer wrongly).
            let lsn = match rng.below(4) {
                0 => lsns[rng.below(lsns.len() as u64) as usize],
                _ => tl.ingested(),
            };
            rt.block_on(check(&s, &model, page, lsn));
        }
    }
    taken.add(tl.newest_stats());
    taken
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn newest_versions_match_the_model(
        seed in any::<u64>(),
        batches in 10usize..200,
        pages in 1u32..12,
        newest_pages in 1u64..16,
    ) {
        run(Case { seed, batches, pages, newest_pages });
    }
}

/// The cases above are answered from the cache often, the newest versions
/// and superseded ones, and flushes take images from it (fixed seeds, so
/// it cannot flake): otherwise the property says nothing about them.
#[test]
fn the_cases_are_answered_from_the_newest_cache() {
    let mut taken = Taken::default();
    for seed in 0..8 {
        let case = run(Case {
            seed,
            batches: 150,
            pages: 6,
            newest_pages: 4,
        });
        taken.hits += case.hits;
        taken.superseded += case.superseded;
        taken.images += case.images;
    }
    let Taken {
        hits,
        superseded,
        images,
    } = taken;
    assert!(hits > 100, "{hits} hits");
    assert!(
        superseded > 10,
        "{superseded} of {hits} hits by superseded versions"
    );
    assert!(images > 10, "{images} images from the cache");
}

/// A version rebuilt before a later record of its page was ingested must
/// not become the cache's newest: ingest would apply the next record onto
/// it and skip the one in between.
#[tokio::test]
async fn a_version_overtaken_by_ingest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = PageId::new(2, 1);
    let mut model = Model::new();
    let tl = open(dir.path(), 16);
    let first = ingest(&tl, &mut model, &[init(p), insert(p, b"a")]);
    let old = Arc::new(read::rebuild(&tl.snapshot(), p, first).unwrap());
    ingest(&tl, &mut model, &[insert(p, b"b")]);
    assert!(!tl.offer_newest(p, &old), "a record came after it");
    let s = service(&tl);
    let latest = ingest(&tl, &mut model, &[insert(p, b"c")]);
    check(&s, &model, p, latest).await;
    // Read now, it is the newest: offered, then kept up by ingest.
    let latest = ingest(&tl, &mut model, &[insert(p, b"d")]);
    let hits = tl.newest_stats().hits;
    check(&s, &model, p, latest).await;
    let latest = ingest(&tl, &mut model, &[insert(p, b"e"), insert(p, b"f")]);
    check(&s, &model, p, latest).await;
    assert_eq!(tl.newest_stats().hits, hits + 2);
    assert_eq!(s.get_page(p, latest).await.unwrap().page.slot_count(), 6);
    // An older version is never answered from the newest one.
    check(&s, &model, p, first).await;
}
