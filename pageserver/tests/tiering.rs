//! Tiering: layer files uploaded by the real uploader, evicted under a disk
//! budget, downloaded once for concurrent readers, never evicted while a
//! reader holds them, checked against the index's crc when downloaded, and
//! a recovery on an empty disk that downloads lazily; and the sweep of
//! orphan objects older generations left in the bucket.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use strata_pageserver::PageServerError;
use strata_pageserver::metrics::Metrics;
use strata_pageserver::remote::recover::{self, Recovery};
use strata_pageserver::remote::upload::{UploadFigures, UploadState, Uploader};
use strata_pageserver::remote::{Bucket, BucketConfig, RemoteLayer};
use strata_pageserver::service::PageService;
use strata_pageserver::timeline::{Tiering, Timeline, TimelineConfig};
use strata_pageserver::workload::{Model, Workload};
use strata_wal::{BatchBuilder, Lsn, PageId};
use tokio_util::sync::CancellationToken;

const CLUSTER: &str = "tiering-test";
const PAGES: u32 = 24;

fn pages() -> Vec<PageId> {
    (0..PAGES).map(|i| PageId::new(1, i)).collect()
}

fn open(dir: &std::path::Path, tiering: Arc<Tiering>) -> Arc<Timeline> {
    Timeline::open(TimelineConfig {
        layer_size_bytes: 1 << 20,
        image_after_records: 4,
        tiering: Some(tiering),
        ..TimelineConfig::new(CLUSTER, dir)
    })
    .unwrap()
}

/// Ingests `batches` batches of random records, freezes and flushes: one
/// L0 layer file per call.
fn write_layer(tl: &Timeline, workload: &mut Workload, model: &mut Model, batches: usize) {
    ingest_frozen(tl, workload, model, batches);
    while tl.flush_frozen().unwrap() {}
}

/// Ingests `batches` batches of random records and freezes them.
fn ingest_frozen(tl: &Timeline, workload: &mut Workload, model: &mut Model, batches: usize) {
    for i in 0..batches {
        let start = tl.ingested();
        let mut batch = BatchBuilder::new();
        for rec in workload.next_records(4) {
            batch.push(&rec).unwrap();
        }
        let mut bytes = Vec::new();
        let end = batch.commit(i as u64).stamp_into(&mut bytes, start);
        model.read(start, &bytes);
        tl.ingest_chunk(start, &Bytes::from(bytes), end).unwrap();
    }
    assert!(tl.freeze());
}

/// Image values in the newest layer file.
fn images_in_newest(tl: &Timeline) -> usize {
    let map = tl.snapshot();
    let file = map.files.last().unwrap().file().unwrap();
    pages()
        .into_iter()
        .map(|p| file.read_page(p, Lsn::MAX).unwrap())
        .map(|values| values.iter().filter(|(_, v)| v.is_image()).count())
        .sum()
}

/// A timeline on a fresh disk with a local bucket, its generation taken,
/// and a disk budget of 0 (every uploaded layer may be evicted).
struct Tiered {
    data: tempfile::TempDir,
    bucket_dir: tempfile::TempDir,
    bucket: Arc<Bucket>,
    generation: u32,
    tiering: Arc<Tiering>,
    tl: Arc<Timeline>,
}

async fn tiered() -> Tiered {
    let (data, bucket_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bucket =
        Arc::new(Bucket::open(&BucketConfig::Local(bucket_dir.path().into()), CLUSTER).unwrap());
    let generation = bucket.take_generation().await.unwrap();
    let tiering = Arc::new(Tiering::new(bucket.clone(), 0, Default::default()));
    let tl = open(data.path(), tiering.clone());
    Tiered {
        data,
        bucket_dir,
        bucket,
        generation,
        tiering,
        tl,
    }
}

#[tokio::test]
async fn a_flush_downloads_the_evicted_layers_its_images_need() {
    let Tiered {
        data: _data,
        bucket_dir: _bucket_dir,
        bucket,
        generation: g1,
        tiering: _,
        tl,
    } = tiered().await;
    let (mut workload, mut model) = (Workload::new(5, pages()), Model::new());
    // About 3 records a page per layer, an image due after 4.
    write_layer(&tl, &mut workload, &mut model, 20);
    upload(&tl, &bucket, g1).await;
    assert_eq!(tl.evict_to_budget(), 1);

    // Without downloads (the plain flush) a page whose chain reaches into
    // the evicted layer gets no image.
    write_layer(&tl, &mut workload, &mut model, 20);
    let skipped = images_in_newest(&tl);
    assert_eq!(downloads(&tl), 0);
    let known = bucket.newest_index().await.unwrap().unwrap().by_name();
    let hour = Duration::from_secs(3600);
    upload_with(&tl, &bucket, g1, known, hour).await;
    assert_eq!(tl.evict_to_budget(), 1);

    // The flusher's flush downloads both older layers, once each, and
    // writes the images.
    ingest_frozen(&tl, &mut workload, &mut model, 20);
    assert!(tl.flush_frozen_resident().await.unwrap());
    assert_eq!(downloads(&tl), 2);
    let written = images_in_newest(&tl);
    assert!(
        written >= PAGES as usize / 2 && written > skipped,
        "{written} images with downloads, {skipped} without"
    );
    // The downloaded layers are no longer pinned: back under the budget.
    assert_eq!(tl.evict_to_budget(), 2);
    let service = PageService::new(tl.clone(), 1 << 20, Duration::from_secs(5));
    check_all(&service, &model, tl.ingested()).await;
}

/// Runs the real uploader until the bucket's index covers the durable LSN.
async fn upload(tl: &Timeline, bucket: &Arc<Bucket>, generation: u32) {
    upload_with(
        tl,
        bucket,
        generation,
        Default::default(),
        Duration::from_secs(600),
    )
    .await;
}

/// [`upload`] knowing the objects `known` and sweeping orphans older than
/// `orphan_grace`; returns the uploader's figures.
async fn upload_with(
    tl: &Timeline,
    bucket: &Arc<Bucket>,
    generation: u32,
    known: HashMap<String, RemoteLayer>,
    orphan_grace: Duration,
) -> UploadFigures {
    let state = Arc::new(UploadState::new(generation, Lsn::ZERO, 0));
    let uploader = Uploader {
        bucket: bucket.clone(),
        tiering: tl.tiering().cloned(),
        dir: tl.config().dir.clone(),
        state: state.clone(),
        known,
        concurrency: 2,
        orphan_grace,
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(uploader.run(tl.subscribe_manifest(), stop.clone()));
    let mut uploaded = state.subscribe_uploaded();
    let durable = tl.durable();
    tokio::time::timeout(
        Duration::from_secs(20),
        uploaded.wait_for(|l| *l >= durable),
    )
    .await
    .expect("the uploader publishes the manifest")
    .unwrap();
    stop.cancel();
    task.await.unwrap().unwrap();
    state.figures()
}

async fn check_all(service: &PageService, model: &Model, lsn: Lsn) {
    for page in pages() {
        let want = model.expected(page, lsn, lsn).expect("every page written");
        let got = service.get_page(page, lsn).await.unwrap();
        assert_eq!((got.from, got.to), (want.from, want.to), "{page}");
        assert!(*got.page == want.page, "{page}: different bytes");
    }
}

fn downloads(tl: &Timeline) -> u64 {
    tl.tiering()
        .unwrap()
        .stats
        .downloads
        .load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_evicted_layer_is_downloaded_once_for_concurrent_readers_and_checked() {
    let Tiered {
        data,
        bucket_dir,
        bucket,
        generation,
        tiering,
        tl,
    } = tiered().await;
    let (mut workload, mut model) = (Workload::new(5, pages()), Model::new());
    write_layer(&tl, &mut workload, &mut model, 60);
    let end = tl.ingested();

    // Not uploaded yet: nothing may be evicted, whatever the budget.
    assert_eq!(tl.evict_to_budget(), 0);
    upload(&tl, &bucket, generation).await;
    let layer = tl.snapshot().files[0].clone();
    let path = data.path().join(&layer.desc.file_name);

    // A reader's handle keeps the file from being evicted.
    let handle = layer.file().unwrap();
    assert_eq!(tl.evict_to_budget(), 0, "a file in use is not evicted");
    drop(handle);
    assert_eq!(tl.evict_to_budget(), 1);
    assert!(!path.exists() && !layer.is_resident());
    assert_eq!(tl.snapshot().local_bytes(), 0);

    // Concurrent readers of different pages (no shared cache entry) need
    // the same evicted layer: one download, and every answer as before.
    let service = Arc::new(PageService::new(
        tl.clone(),
        1 << 20,
        Duration::from_secs(5),
    ));
    let reads: Vec<_> = pages()
        .into_iter()
        .map(|page| {
            let service = service.clone();
            tokio::spawn(async move { (page, service.get_page(page, end).await) })
        })
        .collect();
    for read in reads {
        let (page, got) = read.await.unwrap();
        let got = got.unwrap_or_else(|e| panic!("{page}: {e}"));
        let want = model.expected(page, end, end).unwrap();
        assert_eq!((got.from, got.to), (want.from, want.to), "{page}");
        assert!(*got.page == want.page, "{page}: different bytes");
    }
    assert_eq!(downloads(&tl), 1, "concurrent readers share one download");
    assert!(path.exists() && layer.is_resident());
    assert!(tiering.hit_rate() < 1.0);
    let m = Metrics::read(&service);
    assert_eq!(m.local_layer_bytes, layer.desc.file_bytes);
    let text = m.prometheus();
    for line in [
        "strata_pageserver_layer_downloads_total 1\n",
        "strata_pageserver_layer_evictions_total 1\n",
        "strata_pageserver_disk_budget_bytes 0\n",
        &format!(
            "strata_pageserver_local_layer_bytes {}\n",
            layer.desc.file_bytes
        ),
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }

    // A flipped bit in the object: the download is refused before a byte
    // reaches the disk, and the read gets a typed error.
    assert_eq!(tl.evict_to_budget(), 1);
    let object = bucket_dir
        .path()
        .join(bucket.layer_key(&layer.desc.file_name, generation).as_ref());
    let pristine = std::fs::read(&object).unwrap();
    let mut bad = pristine.clone();
    bad[pristine.len() / 2] ^= 0x10;
    std::fs::write(&object, &bad).unwrap();
    let fresh = PageService::new(tl.clone(), 1 << 20, Duration::from_secs(5));
    let err = fresh.get_page(pages()[0], end).await.unwrap_err();
    assert!(matches!(err, PageServerError::Corrupt { .. }), "{err}");
    assert!(!path.exists(), "nothing written from a corrupt object");
    std::fs::write(&object, &pristine).unwrap();
    check_all(&fresh, &model, end).await;
    assert_eq!(downloads(&tl), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_recovery_on_an_empty_disk_answers_every_page_downloading_on_demand() {
    let (data, bucket_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = BucketConfig::Local(bucket_dir.path().into());
    let bucket = Arc::new(Bucket::open(&config, CLUSTER).unwrap());
    let attached = recover::attach(&bucket, data.path(), CLUSTER, Recovery::Lazy)
        .await
        .unwrap();
    let tiering = Arc::new(Tiering::new(bucket.clone(), u64::MAX, attached.known));
    let tl = open(data.path(), tiering);
    let (mut workload, mut model) = (Workload::new(9, pages()), Model::new());
    for _ in 0..3 {
        write_layer(&tl, &mut workload, &mut model, 30);
    }
    let end = tl.ingested();
    upload(&tl, &bucket, attached.generation).await;
    drop(tl);

    // The disk is lost: a lazy recovery stores the index's manifest only.
    let empty = tempfile::tempdir().unwrap();
    let attached = recover::attach(&bucket, empty.path(), CLUSTER, Recovery::Lazy)
        .await
        .unwrap();
    assert!(attached.recovered);
    let tiering = Arc::new(Tiering::new(bucket.clone(), u64::MAX, attached.known));
    let tl = open(empty.path(), tiering);
    assert_eq!(tl.durable(), end);
    let layers = tl.snapshot().files.len();
    assert_eq!(layers, 3);
    assert_eq!(
        tl.snapshot().local_bytes(),
        0,
        "nothing downloaded at start"
    );
    let service = PageService::new(tl.clone(), 1 << 20, Duration::from_secs(5));
    check_all(&service, &model, end).await;
    let got = downloads(&tl);
    assert!(
        got >= 1 && got <= layers as u64,
        "{got} downloads of {layers} layers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_of_older_generations_are_swept_after_the_grace_period_and_nothing_named() {
    let (data, bucket_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bucket =
        Arc::new(Bucket::open(&BucketConfig::Local(bucket_dir.path().into()), CLUSTER).unwrap());
    let g1 = bucket.take_generation().await.unwrap();
    let tiering = Arc::new(Tiering::new(bucket.clone(), u64::MAX, Default::default()));
    let tl = open(data.path(), tiering);
    let (mut workload, mut model) = (Workload::new(3, pages()), Model::new());
    write_layer(&tl, &mut workload, &mut model, 20);
    upload(&tl, &bucket, g1).await;
    // What a page server of generation 1 that crashed mid-upload leaves:
    // an object no index names.
    let orphan = "0000000000000000-00000000DEADBEEF.delta";
    bucket
        .put_layer(orphan, g1, Bytes::from_static(b"half a layer"))
        .await
        .unwrap();
    let exists = |name: &str, generation: u32| {
        let key = bucket.layer_key(name, generation);
        bucket_dir.path().join(key.as_ref()).exists()
    };

    // Generation 2 inherits generation 1's index (as attach does).
    let g2 = bucket.take_generation().await.unwrap();
    let inherited = bucket.newest_index().await.unwrap().unwrap().by_name();
    let first = tl.snapshot().files[0].desc.file_name.clone();
    write_layer(&tl, &mut workload, &mut model, 20);
    let hour = Duration::from_secs(3600);
    let figures = upload_with(&tl, &bucket, g2, inherited.clone(), hour).await;
    assert_eq!(figures.orphans_deleted, 0, "younger than the grace period");
    assert!(exists(orphan, g1));
    // Generation 1's marker and index went once generation 2 published.
    assert_eq!(figures.old_generation_objects_deleted, 2);
    let gone = |dir: &str| {
        !bucket_dir
            .path()
            .join(format!("{CLUSTER}/{dir}/{g1:010}"))
            .exists()
    };
    assert!(gone("generations") && gone("index"));
    assert_eq!(bucket.newest_generation().await.unwrap(), g2);

    write_layer(&tl, &mut workload, &mut model, 20);
    let figures = upload_with(&tl, &bucket, g2, inherited, Duration::ZERO).await;
    assert_eq!(figures.orphans_deleted, 1);
    assert!(!exists(orphan, g1), "the orphan is swept");
    assert!(
        exists(&first, g1),
        "an inherited object the index names stays"
    );
    let index = bucket.newest_index().await.unwrap().unwrap();
    assert_eq!(index.generation, g2);
    for (name, layer) in index.by_name() {
        bucket.get_layer(&name, layer).await.unwrap();
    }
}
