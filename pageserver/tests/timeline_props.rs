//! Property test of the page server's core: random page operations through
//! the real ingest path (framed, stamped log bytes into
//! `Timeline::ingest_chunk`), frozen, flushed, compacted and collected at
//! random points, reopened as after a crash — including crashes in the
//! middle of a compaction step (fail points after the new files and after
//! the new manifest); for sampled (page, LSN) pairs `GetPage` must equal the
//! model (the records applied in order to one page) with the exact
//! validity at or above the GC cutoff, and be "snapshot too old" below it.
//! The cutoff must never pass the history window.
//!
//! With a disk budget (most cases), layers are uploaded to a local bucket
//! at random points and evicted down to a tiny budget, so reads and
//! compaction steps download them again on demand, and a reopened timeline
//! finds the evicted ones through the bucket's newest index.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use strata_pageserver::PageServerError;
use strata_pageserver::remote::{Bucket, BucketConfig, RemoteIndex, RemoteLayer};
use strata_pageserver::service::PageService;
use strata_pageserver::timeline::{
    CompactionConfig, FailPoint, GcConfig, Step, Tiering, Timeline, TimelineConfig,
};
use strata_pageserver::workload::{Model, Rng, Workload};
use strata_wal::{BatchBuilder, Lsn, PageId};

const CLUSTER: &str = "props";

struct Case {
    seed: u64,
    batches: usize,
    pages: u32,
    image_after: u32,
    layer_bytes: usize,
    /// Bytes of WAL history kept (None: no GC).
    history: Option<u64>,
    l0_threshold: usize,
    target_file_bytes: u64,
    image_after_runs: usize,
    /// Local layer files are evicted down to this (None: no bucket).
    disk_budget: Option<u64>,
}

/// The committed log a case ingests: its bytes and where each batch ends.
struct Log {
    bytes: Bytes,
    batch_ends: Vec<Lsn>,
}

fn make_log(case: &Case, model: &mut Model) -> Log {
    let pages = (0..case.pages).map(|i| PageId::new(1 + i % 2, i)).collect();
    let mut workload = Workload::new(case.seed, pages);
    let mut bytes = Vec::new();
    let mut batch_ends = vec![Lsn::ZERO];
    for i in 0..case.batches {
        let n = 1 + workload.rng().below(6) as usize;
        let mut batch = BatchBuilder::new();
        for rec in workload.next_records(n) {
            batch.push(&rec).unwrap();
        }
        let end = batch
            .commit(i as u64)
            .stamp_into(&mut bytes, *batch_ends.last().unwrap());
        batch_ends.push(end);
    }
    model.read(Lsn::ZERO, &bytes);
    Log {
        bytes: Bytes::from(bytes),
        batch_ends,
    }
}

fn open(dir: &std::path::Path, case: &Case, tiering: Option<Arc<Tiering>>) -> Arc<Timeline> {
    let tl = Timeline::open(TimelineConfig {
        layer_size_bytes: case.layer_bytes,
        image_after_records: case.image_after,
        compaction: CompactionConfig {
            l0_threshold: case.l0_threshold,
            max_l0_per_step: 4,
            target_file_bytes: case.target_file_bytes,
            image_after_delta_runs: case.image_after_runs,
            // Unpaced: these check answers, not timing.
            cpu_percent: 100,
        },
        gc: GcConfig {
            history_bytes: case.history,
            history: None,
            snapshot_cap_bytes: u64::MAX,
        },
        tiering,
        ..TimelineConfig::new(CLUSTER, dir)
    })
    .unwrap();
    // Every layer file in the directory is one the manifest names: what a
    // crash left behind was removed.
    let on_disk = strata_pageserver::workload::layer_files_in(dir).unwrap();
    let resident = tl
        .snapshot()
        .files
        .iter()
        .filter(|f| f.is_resident())
        .count();
    assert_eq!(on_disk, resident, "stray layer files");
    tl
}

/// The bucket side of a case with a disk budget: what the uploader does
/// (layers before the index naming them), done synchronously.
struct Remote {
    bucket: Arc<Bucket>,
    generation: u32,
    budget: u64,
    /// Objects uploaded, by file name.
    known: HashMap<String, RemoteLayer>,
    _dir: tempfile::TempDir,
}

impl Remote {
    fn new(rt: &tokio::runtime::Runtime, budget: u64) -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(&BucketConfig::Local(dir.path().into()), CLUSTER).unwrap();
        let generation = rt.block_on(bucket.take_generation()).unwrap();
        Remote {
            bucket: Arc::new(bucket),
            generation,
            budget,
            known: HashMap::new(),
            _dir: dir,
        }
    }

    /// Tiering for a timeline opened now: the catalog is the newest index.
    fn tiering(&self, rt: &tokio::runtime::Runtime) -> Arc<Tiering> {
        let index = rt.block_on(self.bucket.newest_index()).unwrap();
        let catalog = index.map(|i| i.by_name()).unwrap_or_default();
        Arc::new(Tiering::new(self.bucket.clone(), self.budget, catalog))
    }

    /// Uploads what the stored manifest names, publishes it, evicts.
    fn upload_and_evict(&mut self, rt: &tokio::runtime::Runtime, tl: &Timeline) {
        let manifest = tl.subscribe_manifest().borrow().clone();
        for l in &manifest.layers {
            if self.known.contains_key(&l.file_name) {
                continue;
            }
            let data = Bytes::from(std::fs::read(tl.config().dir.join(&l.file_name)).unwrap());
            let layer = RemoteLayer {
                generation: self.generation,
                crc: crc32fast::hash(&data),
                bytes: data.len() as u64,
            };
            rt.block_on(self.bucket.put_layer(&l.file_name, self.generation, data))
                .unwrap();
            self.known.insert(l.file_name.clone(), layer);
        }
        let index = RemoteIndex {
            generation: self.generation,
            layers: manifest
                .layers
                .iter()
                .map(|l| self.known[&l.file_name])
                .collect(),
            manifest: (*manifest).clone(),
        };
        rt.block_on(self.bucket.put_index(&index)).unwrap();
        let tiering = tl.tiering().expect("a case with a budget has tiering");
        tiering.published(index.by_name());
        tl.evict_to_budget();
        assert!(
            tl.snapshot().local_bytes() <= self.budget,
            "nothing is pinned, so eviction reaches the budget"
        );
    }
}

/// A timeline that can crash and be opened again.
struct Harness<'a> {
    dir: &'a std::path::Path,
    case: &'a Case,
    rt: &'a tokio::runtime::Runtime,
    remote: Option<Remote>,
    tl: Arc<Timeline>,
    /// Steps that did something, by kind: L0 merges, image runs, GC.
    did: [usize; 3],
    crashes: usize,
}

impl Harness<'_> {
    fn restart(&mut self) {
        let durable = self.tl.durable();
        let tiering = self.remote.as_ref().map(|r| r.tiering(self.rt));
        self.tl = open(self.dir, self.case, tiering);
        assert_eq!(self.tl.ingested(), durable);
        // A crash after a GC's manifest may leave a cutoff the old process
        // never published; it must still be outside the window.
        self.check_window();
    }

    /// A few compaction steps; now and then one stopped by a fail point,
    /// which is a crash: the timeline is opened again.
    fn compact(&mut self, rng: &mut Rng) {
        for _ in 0..1 + rng.below(4) {
            let fail = match rng.below(10) {
                0 => Some(FailPoint::AfterNewFiles),
                1 => Some(FailPoint::AfterManifest),
                _ => None,
            };
            self.tl.set_fail_point(fail);
            match self.rt.block_on(self.tl.compact_step_resident()) {
                Ok(step) => self.count(step),
                Err(e) => {
                    assert!(fail.is_some(), "compaction failed: {e}");
                    self.crashes += 1;
                    self.restart();
                }
            }
            self.tl.set_fail_point(None);
            self.check_window();
        }
    }

    /// With a bucket: upload and evict down to the budget.
    fn tier(&mut self) {
        if let Some(remote) = &mut self.remote {
            remote.upload_and_evict(self.rt, &self.tl);
        }
    }

    fn count(&mut self, step: Step) {
        match step {
            Step::CompactedL0 { .. } => self.did[0] += 1,
            Step::Images { .. } => self.did[1] += 1,
            Step::Collected { .. } => self.did[2] += 1,
            Step::Idle => {}
        }
    }

    /// The cutoff never passes the window: history_bytes below durable.
    fn check_window(&self) {
        let cutoff = self.tl.gc_cutoff();
        let durable = self.tl.durable();
        match self.case.history {
            None => assert_eq!(cutoff, Lsn::ZERO),
            Some(h) => assert!(
                cutoff.0 <= durable.0.saturating_sub(h),
                "cutoff {cutoff} is inside the window ({h} bytes below {durable})"
            ),
        }
    }
}

/// Ingests the log's batches from the timeline's ingested LSN to `upto`
/// (a batch end), a few batches per chunk, freezing, flushing and
/// compacting at random.
fn ingest(h: &mut Harness<'_>, log: &Log, upto: Lsn, rng: &mut Rng) {
    let ends = &log.batch_ends;
    let mut i = ends
        .iter()
        .position(|l| *l == h.tl.ingested())
        .expect("at a batch end");
    while ends[i] < upto {
        let tl = h.tl.clone();
        let j = (i + 1 + rng.below(4) as usize).min(ends.iter().position(|l| *l == upto).unwrap());
        let (a, b) = (ends[i].0 as usize, ends[j].0 as usize);
        tl.ingest_chunk(ends[i], &log.bytes.slice(a..b), ends[j])
            .unwrap();
        if rng.chance(30) {
            tl.freeze();
        }
        if rng.chance(40) {
            while tl.flush_frozen().unwrap() {}
        }
        i = j;
        if rng.chance(30) {
            h.tier();
        }
        if rng.chance(25) {
            h.compact(rng);
            // A crash takes the timeline back to its durable LSN.
            i = ends.iter().position(|l| *l == h.tl.ingested()).unwrap();
        }
    }
}

/// Asks about `samples` (page, LSN) pairs and compares with the model.
async fn check(service: &PageService, model: &Model, rng: &mut Rng, samples: usize) {
    let ingested = service.timeline().ingested();
    let cutoff = service.timeline().gc_cutoff();
    for _ in 0..samples {
        let (page, mut lsn) = model.sample(rng, ingested).expect("pages written");
        if lsn < cutoff && rng.chance(70) {
            lsn = Lsn(cutoff.0 + rng.below(ingested.0 - cutoff.0 + 1));
        }
        let got = service.get_page(page, lsn).await;
        if lsn < cutoff {
            match got {
                Err(PageServerError::SnapshotTooOld { horizon, .. }) => {
                    assert_eq!(horizon, cutoff)
                }
                other => panic!("{page} at {lsn} below the cutoff {cutoff}: {other:?}"),
            }
            continue;
        }
        match model.expected(page, lsn, ingested) {
            Some(want) => {
                let got = got.unwrap_or_else(|e| {
                    // The layers that hold the page, to tell what went wrong.
                    for f in &service.timeline().snapshot().files {
                        let summary = f.file().map(|f| f.summary(page));
                        eprintln!("{:?} {:?}: {summary:?}", f.desc.kind, f.desc.range);
                    }
                    panic!("{page} at {lsn}: {e}")
                });
                assert_eq!((got.from, got.to), (want.from, want.to), "{page} at {lsn}");
                assert!(*got.page == want.page, "{page} at {lsn}: different bytes");
            }
            None => assert!(
                matches!(got, Err(PageServerError::PageNotFound { .. })),
                "{page} at {lsn}: {got:?}"
            ),
        }
    }
}

fn service(tl: Arc<Timeline>) -> PageService {
    // A small cache, so answers come both from it and from rebuilds.
    PageService::new(tl, 16 * 8192, Duration::from_secs(5))
}

fn run(case: Case) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    let log = make_log(&case, &mut model);
    let mut rng = Rng::new(case.seed ^ 0xA5A5);
    let half = log.batch_ends[log.batch_ends.len() / 2];
    let end = *log.batch_ends.last().unwrap();

    let remote = case.disk_budget.map(|budget| Remote::new(&rt, budget));
    let tiering = remote.as_ref().map(|r| r.tiering(&rt));
    let mut h = Harness {
        dir: dir.path(),
        case: &case,
        rt: &rt,
        remote,
        tl: open(dir.path(), &case, tiering),
        did: [0; 3],
        crashes: 0,
    };
    ingest(&mut h, &log, half, &mut rng);
    rt.block_on(check(&service(h.tl.clone()), &model, &mut rng, 40));
    ingest(&mut h, &log, end, &mut rng);
    rt.block_on(check(&service(h.tl.clone()), &model, &mut rng, 40));

    // A restart: whatever was not flushed is gone; ingest resumes at the
    // durable LSN and takes in the rest again.
    h.restart();
    ingest(&mut h, &log, end, &mut rng);
    assert_eq!(h.tl.ingested(), end);
    rt.block_on(check(&service(h.tl.clone()), &model, &mut rng, 60));
    h.tl.freeze();
    while h.tl.flush_frozen().unwrap() {}
    // Compaction and GC until nothing is due, then every answer again.
    while rt.block_on(h.tl.compact_step_resident()).unwrap() != Step::Idle {}
    h.check_window();
    h.tier();
    rt.block_on(check(&service(h.tl.clone()), &model, &mut rng, 60));
    let downloads = h.tl.tiering().map_or(0, |t| {
        t.stats.downloads.load(std::sync::atomic::Ordering::Relaxed)
    });
    TOTALS.with(|t| {
        let mut t = t.borrow_mut();
        for k in 0..3 {
            t[k] += h.did[k];
        }
        t[3] += h.crashes;
        t[4] += downloads as usize;
    });
}

thread_local! {
    /// Steps that did something across cases (L0 merges, image runs, GC
    /// deletions, crashes): the property is only worth something if the
    /// cases reach each of them.
    static TOTALS: std::cell::RefCell<[usize; 5]> = const { std::cell::RefCell::new([0; 5]) };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn get_page_matches_the_model(
        seed in any::<u64>(),
        batches in 10usize..150,
        pages in 1u32..30,
        image_after in 2u32..10,
        layer_bytes in 2_000usize..40_000,
        history in proptest::option::weighted(0.8, 0u64..30_000),
        l0_threshold in 1usize..4,
        target_file_bytes in 1_000u64..20_000,
        image_after_runs in 1usize..6,
        disk_budget in proptest::option::weighted(0.7, 0u64..20_000),
    ) {
        run(Case {
            seed, batches, pages, image_after, layer_bytes,
            history, l0_threshold, target_file_bytes, image_after_runs, disk_budget,
        });
    }
}

/// The cases above reach every kind of step and crash (checked on fixed
/// seeds, so it cannot flake).
#[test]
fn the_cases_reach_compaction_images_gc_and_crashes() {
    TOTALS.with(|t| *t.borrow_mut() = [0; 5]);
    for seed in 0..12u64 {
        run(Case {
            seed,
            batches: 140,
            pages: 12,
            image_after: 4,
            layer_bytes: 3_000,
            history: Some(4_000),
            l0_threshold: 2,
            target_file_bytes: 4_000,
            image_after_runs: 3,
            disk_budget: (seed % 2 == 0).then_some(2_000),
        });
    }
    let totals = TOTALS.with(|t| *t.borrow());
    assert!(
        totals.iter().all(|n| *n > 0),
        "L0 merges, image runs, GC, crashes, downloads: {totals:?}"
    );
}

/// Found by the property test: with a disk budget of nothing every layer is
/// evicted, and one compaction step needed more layers downloaded than the
/// fixed retry allowance (64), so it failed with "compaction kept meeting
/// evicted layers". It now gets a try per layer of the map besides.
#[test]
fn a_compaction_may_download_more_layers_than_the_retry_allowance() {
    run(Case {
        seed: 508079368321499583,
        batches: 129,
        pages: 29,
        image_after: 2,
        layer_bytes: 2000,
        history: None,
        l0_threshold: 1,
        target_file_bytes: 1000,
        image_after_runs: 1,
        disk_budget: Some(0),
    });
}
