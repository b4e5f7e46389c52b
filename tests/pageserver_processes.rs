//! A `strata pageserver` process following three `strata logservice`
//! processes, SIGKILLed at random points during ingest and freezing (its
//! layers are small and frozen every 150 ms) while a writer keeps
//! appending. After each restart every answer matches the model; at the
//! end, after a clean stop, the layer files hold every record of the log
//! exactly once.
//!
//! The second test kills it while layers are being uploaded to its bucket
//! (and, under a tiny disk budget, evicted and downloaded again): after
//! each restart the answers are the ones it gave before, the bucket's
//! newest index names only objects that exist with its crc, and a page
//! server on an empty disk recovers the same answers from the bucket.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use strata_logservice::client::{LogClient, LogClientConfig};
use strata_pageserver::client::{PageServerClient, RemotePage};
use strata_pageserver::layer::Value;
use strata_pageserver::layer::delta_file::DeltaFile;
use strata_pageserver::manifest::Manifest;
use strata_pageserver::workload::{Model, Rng, Workload};
use strata_wal::{BatchBuilder, Lsn, PageId};

const CLUSTER: &str = "ps-proc-test";
const KILLS: usize = 6;

fn page_server(dir: &Path, port: u16, log: &[String]) -> common::Process {
    page_server_with(dir, "pageserver", port, log, &[])
}

fn page_server_with(
    dir: &Path,
    data_dir: &str,
    port: u16,
    log: &[String],
    extra: &[&str],
) -> common::Process {
    let mut args: Vec<String> = vec![
        "pageserver".into(),
        "--cluster-id".into(),
        CLUSTER.into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        dir.join(data_dir).to_str().unwrap().into(),
        "--log".into(),
        log.join(","),
        "--layer-size-bytes".into(),
        "65536".into(),
        "--freeze-interval-ms".into(),
        "150".into(),
        "--image-after-records".into(),
        "6".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    common::Process::new(args)
}

async fn client(endpoint: &str) -> PageServerClient {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut c) = PageServerClient::connect(endpoint, CLUSTER).await
            && c.status().await.is_ok()
        {
            return c;
        }
        assert!(Instant::now() < deadline, "the page server does not answer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_ingested(c: &mut PageServerClient, lsn: Lsn) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Lsn(c.status().await.unwrap().ingested_lsn) < lsn {
        assert!(Instant::now() < deadline, "ingest does not reach {lsn}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status once it shows an eviction, or the last one seen when
/// `patience` has passed.
async fn wait_for_evictions(
    c: &mut PageServerClient,
    patience: Duration,
) -> strata_pageserver::client::Status {
    let deadline = Instant::now() + patience;
    loop {
        let status = c.status().await.unwrap();
        if status.layer_evictions > 0 || Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn follow(model: &mut Model, log: &[String], upto: Lsn) {
    let patience = Duration::from_secs(60);
    model
        .follow(CLUSTER, "model", log.to_vec(), upto, patience)
        .await
        .unwrap();
}

fn assert_matches(model: &Model, page: PageId, lsn: Lsn, got: &RemotePage) {
    model
        .check(page, lsn, got)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Every (page, LSN) of a delta in the page server's live layer files, each
/// checked to appear once.
fn layer_records(dir: &Path) -> BTreeSet<(PageId, Lsn)> {
    let dir = dir.join("pageserver");
    let manifest = Manifest::load(&dir, CLUSTER).unwrap().unwrap();
    let mut keys = BTreeSet::new();
    for layer in &manifest.layers {
        let file = DeltaFile::open(&dir.join(&layer.file_name), CLUSTER).unwrap();
        for e in file.read_all().unwrap() {
            if let Value::Delta(_) = e.value {
                assert!(
                    keys.insert((e.page, e.lsn)),
                    "{} at {} is held twice",
                    e.page,
                    e.lsn
                );
            }
        }
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_page_server_restarts_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let log: Vec<String> = ports.iter().map(|p| common::endpoint(*p)).collect();
    let mut replicas: Vec<_> = (1..=3)
        .map(|id| common::log_replica(CLUSTER, dir.path(), id, &ports))
        .collect();
    replicas.iter_mut().for_each(common::Process::start);
    let ps_port = common::free_port();
    let ps_endpoint = common::endpoint(ps_port);
    let mut ps = page_server(dir.path(), ps_port, &log);
    ps.start();

    let writer = LogClient::connect(LogClientConfig::new(CLUSTER, "writer", log.clone()))
        .await
        .unwrap();
    let pages: Vec<PageId> = (0..50).map(|i| PageId::new(5 + i % 2, i)).collect();
    let writing = spawn_writer(&writer, 42, pages, 3000, 5);

    // Kill the page server at random moments while the log grows; keep
    // some answers from each life to compare afterwards.
    let mut rng = Rng::new(2026);
    let mut answers = Vec::new();
    let mut model = Model::new();
    for _ in 0..KILLS {
        let mut c = client(&ps_endpoint).await;
        tokio::time::sleep(Duration::from_millis(100 + rng.below(500))).await;
        let ingested = Lsn(c.status().await.unwrap().ingested_lsn);
        follow(&mut model, &log, ingested).await;
        for _ in 0..20 {
            let Some((page, lsn)) = model.sample(&mut rng, ingested) else {
                break;
            };
            if model.expected(page, lsn, ingested).is_some() {
                answers.push((page, lsn, c.get_page(page, lsn).await.unwrap()));
            }
        }
        ps.kill();
        ps.start();
    }
    let end = writing.await.unwrap();
    writer.close();
    follow(&mut model, &log, end).await;
    let mut c = client(&ps_endpoint).await;
    wait_ingested(&mut c, end).await;
    for (page, lsn, before) in &answers {
        assert_matches(&model, *page, *lsn, before);
        let after = c.get_page(*page, *lsn).await.unwrap();
        assert_eq!(
            (after.from, &after.page),
            (before.from, &before.page),
            "{page} at {lsn}"
        );
        assert_matches(&model, *page, *lsn, &after);
    }
    for _ in 0..300 {
        let (page, lsn) = model.sample(&mut rng, end).expect("pages written");
        if model.expected(page, lsn, end).is_some() {
            assert_matches(&model, page, lsn, &c.get_page(page, lsn).await.unwrap());
        }
    }

    // A clean stop writes everything; the layers then hold each record of
    // the log once, and nothing else.
    ps.terminate();
    let held = layer_records(dir.path());
    let logged: BTreeSet<(PageId, Lsn)> = model
        .pages()
        .flat_map(|p| model.record_lsns(p).into_iter().map(move |l| (p, l)))
        .collect();
    assert_eq!(held.len(), logged.len());
    assert!(held == logged, "the layers and the log differ");
}

/// Starts a writer appending `batches` batches of the seeded workload over
/// `pages`, batch `i` holding `1 + i % cycle` records.
fn spawn_writer(
    writer: &LogClient,
    seed: u64,
    pages: Vec<PageId>,
    batches: u64,
    cycle: u64,
) -> tokio::task::JoinHandle<Lsn> {
    let writer = writer.clone();
    tokio::spawn(async move {
        let mut workload = Workload::new(seed, pages);
        let mut last = Lsn::ZERO;
        for i in 0..batches {
            let mut b = BatchBuilder::new();
            for rec in workload.next_records(1 + (i % cycle) as usize) {
                b.push(&rec).unwrap();
            }
            last = writer.append(b.commit(i)).await.unwrap();
        }
        last
    })
}

/// The bucket's newest index names only objects that exist, each with the
/// size and crc the index gives (`get_layer` checks both).
async fn check_bucket(bucket_dir: &Path) -> usize {
    let config = strata_pageserver::remote::BucketConfig::Local(bucket_dir.into());
    let bucket = strata_pageserver::remote::Bucket::open(&config, CLUSTER).unwrap();
    let index = bucket
        .newest_index()
        .await
        .unwrap()
        .expect("an index was published");
    for (name, layer) in index.by_name() {
        bucket
            .get_layer(&name, layer)
            .await
            .unwrap_or_else(|e| panic!("the newest index names {name}: {e}"));
    }
    index.layers.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_during_uploads_the_bucket_stays_consistent_and_answers_stay_the_same() {
    let seed: u64 = std::env::var("STRATA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2027);
    eprintln!("seed {seed} (replay with STRATA_TEST_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let log: Vec<String> = ports.iter().map(|p| common::endpoint(*p)).collect();
    let mut replicas: Vec<_> = (1..=3)
        .map(|id| common::log_replica(CLUSTER, dir.path(), id, &ports))
        .collect();
    replicas.iter_mut().for_each(common::Process::start);
    let ps_port = common::free_port();
    let ps_endpoint = common::endpoint(ps_port);
    // A budget of one small layer: uploaded layers are evicted soon after
    // they are published, and reads download them again.
    let tiny_budget = ["--disk-budget-bytes", "65536"];
    let mut ps = page_server_with(dir.path(), "pageserver", ps_port, &log, &tiny_budget);
    ps.start();
    let writer = LogClient::connect(LogClientConfig::new(CLUSTER, "writer", log.clone()))
        .await
        .unwrap();
    let pages: Vec<PageId> = (0..40).map(|i| PageId::new(5, i)).collect();
    let writing = spawn_writer(&writer, 7, pages, 1500, 4);

    // Kill when an upload is pending (or after a seeded wait if none shows
    // up), so kills land before, during and after uploads.
    let mut rng = Rng::new(seed);
    let (mut answers, mut model) = (Vec::new(), Model::new());
    let mut during_upload = 0;
    for _ in 0..KILLS {
        let mut c = client(&ps_endpoint).await;
        let ingested = Lsn(c.status().await.unwrap().ingested_lsn);
        follow(&mut model, &log, ingested).await;
        for _ in 0..15 {
            let Some((page, lsn)) = model.sample(&mut rng, ingested) else {
                break;
            };
            if model.expected(page, lsn, ingested).is_some() {
                let got = c.get_page(page, lsn).await.unwrap();
                assert_matches(&model, page, lsn, &got);
                answers.push((page, lsn, got));
            }
        }
        let give_up = Instant::now() + Duration::from_millis(100 + rng.below(400));
        while Instant::now() < give_up {
            if c.status().await.unwrap().upload_pending_layers > 0 {
                during_upload += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_micros(rng.below(3000))).await;
        ps.kill();
        ps.start();
    }
    eprintln!("{during_upload} of {KILLS} kills with an upload pending");
    let end = writing.await.unwrap();
    writer.close();
    follow(&mut model, &log, end).await;
    let mut c = client(&ps_endpoint).await;
    wait_ingested(&mut c, end).await;
    for (page, lsn, before) in &answers {
        let after = c.get_page(*page, *lsn).await.unwrap();
        assert_eq!(
            (after.from, &after.page),
            (before.from, &before.page),
            "{page} at {lsn}"
        );
    }
    // The counter is this process's own, and its evictor runs once a
    // second and after each publish or download: on a loaded machine the
    // reads above (which download evicted layers again) can end before
    // its first pass, so give it a bounded while.
    let status = wait_for_evictions(&mut c, Duration::from_secs(30)).await;
    assert!(status.layer_evictions > 0, "{status:?}");
    ps.kill();
    assert!(check_bucket(&dir.path().join("bucket")).await > 0);

    // An empty disk, the bucket and the log: the same answers.
    let fresh_port = common::free_port();
    let mut fresh = page_server_with(dir.path(), "fresh", fresh_port, &log, &tiny_budget);
    fresh.start();
    let mut c = client(&common::endpoint(fresh_port)).await;
    wait_ingested(&mut c, end).await;
    for (page, lsn, before) in &answers {
        let after = c.get_page(*page, *lsn).await.unwrap();
        assert_eq!(
            (after.from, &after.page),
            (before.from, &before.page),
            "{page} at {lsn} after a recovery"
        );
    }
    for _ in 0..100 {
        let (page, lsn) = model.sample(&mut rng, end).expect("pages written");
        if model.expected(page, lsn, end).is_some() {
            assert_matches(&model, page, lsn, &c.get_page(page, lsn).await.unwrap());
        }
    }
    fresh.terminate();
    assert!(check_bucket(&dir.path().join("bucket")).await > 0);
}
