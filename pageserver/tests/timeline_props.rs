//! Property test of the page server's core: random page operations through
//! the real ingest path (framed, stamped log bytes into
//! `Timeline::ingest_chunk`), frozen and flushed at random points, reopened
//! as after a crash; for sampled (page, LSN) pairs `GetPage` must equal the
//! model (the records applied in order to one page) with the exact validity.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use strata_pageserver::PageServerError;
use strata_pageserver::service::PageService;
use strata_pageserver::timeline::{Timeline, TimelineConfig};
use strata_pageserver::workload::{Model, Rng, Workload};
use strata_wal::{BatchBuilder, Lsn, PageId};

const CLUSTER: &str = "props";

struct Case {
    seed: u64,
    batches: usize,
    pages: u32,
    image_after: u32,
    layer_bytes: usize,
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

fn open(dir: &std::path::Path, case: &Case) -> Arc<Timeline> {
    Timeline::open(TimelineConfig {
        cluster_id: CLUSTER.into(),
        dir: dir.to_path_buf(),
        layer_size_bytes: case.layer_bytes,
        image_after_records: case.image_after,
    })
    .unwrap()
}

/// Ingests the log's batches from the timeline's ingested LSN to `upto`
/// (a batch end), a few batches per chunk, freezing and flushing at random.
fn ingest(tl: &Timeline, log: &Log, upto: Lsn, rng: &mut Rng) {
    let ends = &log.batch_ends;
    let mut i = ends
        .iter()
        .position(|l| *l == tl.ingested())
        .expect("at a batch end");
    while ends[i] < upto {
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
    }
}

/// Asks about `samples` (page, LSN) pairs and compares with the model.
async fn check(service: &PageService, model: &Model, rng: &mut Rng, samples: usize) {
    let ingested = service.timeline().ingested();
    for _ in 0..samples {
        let (page, lsn) = model.sample(rng, ingested).expect("pages written");
        let got = service.get_page(page, lsn).await;
        match model.expected(page, lsn, ingested) {
            Some(want) => {
                let got = got.unwrap_or_else(|e| panic!("{page} at {lsn}: {e}"));
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

    let tl = open(dir.path(), &case);
    ingest(&tl, &log, half, &mut rng);
    rt.block_on(check(&service(tl.clone()), &model, &mut rng, 40));
    ingest(&tl, &log, end, &mut rng);
    rt.block_on(check(&service(tl.clone()), &model, &mut rng, 40));
    let durable = tl.durable();
    drop(tl);

    // A restart: whatever was not flushed is gone; ingest resumes at the
    // durable LSN and takes in the rest again.
    let tl = open(dir.path(), &case);
    assert_eq!(tl.ingested(), durable);
    ingest(&tl, &log, end, &mut rng);
    assert_eq!(tl.ingested(), end);
    rt.block_on(check(&service(tl.clone()), &model, &mut rng, 60));
    tl.freeze();
    while tl.flush_frozen().unwrap() {}
    rt.block_on(check(&service(tl), &model, &mut rng, 60));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn get_page_matches_the_model(
        seed in any::<u64>(),
        batches in 10usize..150,
        pages in 1u32..30,
        image_after in 2u32..10,
        layer_bytes in 2_000usize..40_000,
    ) {
        run(Case { seed, batches, pages, image_after, layer_bytes });
    }
}
