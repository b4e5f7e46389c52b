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
//!
//! The third does the same with an S3 bucket (moto's S3 server), set in
//! the page server's config file: killed once, then an empty disk
//! recovers from S3 and the log.
//!
//! The fourth reaches S3 through the environment alone: a second page
//! server takes the bucket over from a running one, which is fenced (it
//! publishes nothing more, and says so when stopped); the newer index
//! names none of its later objects, and an empty disk recovers from it.

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

/// Waits until the bucket holds a manifest covering `lsn` (Lsn(1): any).
async fn wait_uploaded(c: &mut PageServerClient, lsn: Lsn) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Lsn(c.status().await.unwrap().uploaded_lsn) < lsn {
        assert!(Instant::now() < deadline, "uploads do not reach {lsn}");
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
    let (_replicas, log) = start_log(dir.path());
    let (mut ps, ps_endpoint) = start_page_server(dir.path(), &log, &[]);

    let writer = log_writer(&log).await;
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

/// A page server on `dir/pageserver` following `log`, started; its
/// endpoint.
fn start_page_server(dir: &Path, log: &[String], extra: &[&str]) -> (common::Process, String) {
    let port = common::free_port();
    let mut ps = page_server_with(dir, "pageserver", port, log, extra);
    ps.start();
    (ps, common::endpoint(port))
}

/// A writer to the log at `log`.
async fn log_writer(log: &[String]) -> LogClient {
    LogClient::connect(LogClientConfig::new(CLUSTER, "writer", log.to_vec()))
        .await
        .unwrap()
}

/// Up to `tries` sampled reads at or below `at`, each checked against the
/// model and kept in `answers`.
async fn record_answers(
    c: &mut PageServerClient,
    model: &Model,
    rng: &mut Rng,
    at: Lsn,
    tries: usize,
    answers: &mut Vec<(PageId, Lsn, RemotePage)>,
) {
    for _ in 0..tries {
        let Some((page, lsn)) = model.sample(rng, at) else {
            break;
        };
        if model.expected(page, lsn, at).is_some() {
            let got = c.get_page(page, lsn).await.unwrap();
            assert_matches(model, page, lsn, &got);
            answers.push((page, lsn, got));
        }
    }
}

/// The seed of a seeded test: `STRATA_TEST_SEED` or `default`, printed so
/// that a failing run can be replayed.
fn test_seed(default: u64) -> u64 {
    let seed = std::env::var("STRATA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("seed {seed} (replay with STRATA_TEST_SEED={seed})");
    seed
}

/// Three log replicas under `dir`, started; their endpoints.
fn start_log(dir: &Path) -> (Vec<common::Process>, Vec<String>) {
    let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let log: Vec<String> = ports.iter().map(|p| common::endpoint(*p)).collect();
    let mut replicas: Vec<_> = (1..=3)
        .map(|id| common::log_replica(CLUSTER, dir, id, &ports))
        .collect();
    replicas.iter_mut().for_each(common::Process::start);
    (replicas, log)
}

/// A page server started on an empty data directory (`dir/fresh`) with
/// the bucket and the log, once it has ingested up to `end`.
struct Recovery<'a> {
    dir: &'a Path,
    log: &'a [String],
    extra: &'a [&'a str],
    env: &'a [(&'a str, String)],
    end: Lsn,
}

/// `process` with `env` added to its environment.
fn with_env(process: common::Process, env: &[(&str, String)]) -> common::Process {
    env.iter()
        .fold(process, |p, (key, value)| p.with_env(key, value))
}

impl Recovery<'_> {
    /// Checks that it gives every one of `answers` again and agrees with
    /// the model on 100 sampled reads; its status before it stops.
    async fn answers_the_same(
        &self,
        answers: &[(PageId, Lsn, RemotePage)],
        model: &Model,
        rng: &mut Rng,
    ) -> strata_pageserver::client::Status {
        let port = common::free_port();
        let mut fresh = with_env(
            page_server_with(self.dir, "fresh", port, self.log, self.extra),
            self.env,
        );
        fresh.start();
        let mut c = client(&common::endpoint(port)).await;
        wait_ingested(&mut c, self.end).await;
        for (page, lsn, before) in answers {
            let after = c.get_page(*page, *lsn).await.unwrap();
            assert_eq!(
                (after.from, &after.page),
                (before.from, &before.page),
                "{page} at {lsn} after a recovery"
            );
        }
        for _ in 0..100 {
            let (page, lsn) = model.sample(rng, self.end).expect("pages written");
            if model.expected(page, lsn, self.end).is_some() {
                assert_matches(model, page, lsn, &c.get_page(page, lsn).await.unwrap());
            }
        }
        let status = c.status().await.unwrap();
        fresh.terminate();
        status
    }
}

/// The local bucket's newest index names only objects that exist, each
/// with the size and crc the index gives.
async fn check_bucket(bucket_dir: &Path) -> usize {
    check_bucket_at(&strata_pageserver::remote::BucketConfig::Local(
        bucket_dir.into(),
    ))
    .await
}

/// The bucket's newest index names only objects that exist, each with the
/// size and crc the index gives (`get_layer` checks both).
async fn check_bucket_at(config: &strata_pageserver::remote::BucketConfig) -> usize {
    let bucket = strata_pageserver::remote::Bucket::open(config, CLUSTER).unwrap();
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
    let seed = test_seed(2027);
    let dir = tempfile::tempdir().unwrap();
    let (_replicas, log) = start_log(dir.path());
    // A budget of one small layer: uploaded layers are evicted soon after
    // they are published, and reads download them again.
    let tiny_budget = ["--disk-budget-bytes", "65536"];
    let (mut ps, ps_endpoint) = start_page_server(dir.path(), &log, &tiny_budget);
    let writer = log_writer(&log).await;
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
        record_answers(&mut c, &model, &mut rng, ingested, 15, &mut answers).await;
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
    let recovered = Recovery {
        dir: dir.path(),
        log: &log,
        extra: &tiny_budget,
        env: &[],
        end,
    };
    recovered.answers_the_same(&answers, &model, &mut rng).await;
    assert!(check_bucket(&dir.path().join("bucket")).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_bucket_from_the_config_file_recovers_an_empty_disk() {
    let seed = test_seed(2028);
    let s3 = strata_pageserver::testing::S3Server::start();
    let bucket = s3.create_bucket("strata-layers");
    let dir = tempfile::tempdir().unwrap();
    // The bucket and how to reach it come from the file; the rest from
    // flags.
    let settings = s3.settings();
    let config = dir.path().join("pageserver.toml");
    std::fs::write(
        &config,
        format!(
            "bucket = \"s3://strata-layers\"\n[s3]\nendpoint = {:?}\nregion = {:?}\n\
             access_key_id = {:?}\nsecret_access_key = {:?}\nallow_http = true\n",
            settings.endpoint.unwrap(),
            settings.region.unwrap(),
            settings.access_key_id.unwrap(),
            settings.secret_access_key.unwrap(),
        ),
    )
    .unwrap();
    let with_config = ["--config", config.to_str().unwrap()];
    let (_replicas, log) = start_log(dir.path());
    let (mut ps, ps_endpoint) = start_page_server(dir.path(), &log, &with_config);
    let writer = log_writer(&log).await;
    let pages: Vec<PageId> = (0..40).map(|i| PageId::new(6, i)).collect();
    let writing = spawn_writer(&writer, 9, pages, 600, 4);

    // Answers before a SIGKILL, once a layer has gone up to S3.
    let mut rng = Rng::new(seed);
    let (mut answers, mut model) = (Vec::new(), Model::new());
    let mut c = client(&ps_endpoint).await;
    wait_uploaded(&mut c, Lsn(1)).await;
    let ingested = Lsn(c.status().await.unwrap().ingested_lsn);
    follow(&mut model, &log, ingested).await;
    record_answers(&mut c, &model, &mut rng, ingested, 30, &mut answers).await;
    assert!(!answers.is_empty());
    ps.kill();
    ps.start();
    let end = writing.await.unwrap();
    writer.close();
    follow(&mut model, &log, end).await;
    let mut c = client(&ps_endpoint).await;
    wait_ingested(&mut c, end).await;
    // Its second start took the next generation from S3's markers.
    assert_eq!(c.status().await.unwrap().generation, 2);
    ps.kill();
    assert!(check_bucket_at(&bucket).await > 0);

    // An empty disk, the S3 bucket and the log: the same answers.
    let recovered = Recovery {
        dir: dir.path(),
        log: &log,
        extra: &with_config,
        env: &[],
        end,
    };
    let status = recovered.answers_the_same(&answers, &model, &mut rng).await;
    assert_eq!(status.generation, 3, "{status:?}");
    assert!(status.uploaded_lsn > 0, "{status:?}");
    assert!(check_bucket_at(&bucket).await > 0);
    // S3 only: no local bucket was made beside the data directories.
    assert!(!dir.path().join("bucket").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_on_an_s3_bucket_from_the_environment_is_fenced() {
    let seed = test_seed(2029);
    let s3 = strata_pageserver::testing::S3Server::start();
    let bucket = s3.create_bucket("strata-zombie");
    let dir = tempfile::tempdir().unwrap();
    // No config file: the bucket is a flag, and how to reach S3 comes from
    // the AWS_* environment alone.
    let settings = s3.settings();
    let environment = [
        ("AWS_ENDPOINT", settings.endpoint.unwrap()),
        ("AWS_REGION", settings.region.unwrap()),
        ("AWS_ACCESS_KEY_ID", settings.access_key_id.unwrap()),
        ("AWS_SECRET_ACCESS_KEY", settings.secret_access_key.unwrap()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
    ];
    let flags = ["--bucket", "s3://strata-zombie"];
    let on_s3 = |data_dir: &str, port: u16, log: &[String]| {
        with_env(
            page_server_with(dir.path(), data_dir, port, log, &flags),
            &environment,
        )
    };
    let (_replicas, log) = start_log(dir.path());
    let writer = log_writer(&log).await;
    let pages: Vec<PageId> = (0..40).map(|i| PageId::new(7, i)).collect();

    // The first page server uploads, and answers.
    let zombie_port = common::free_port();
    let zombie_stderr = dir.path().join("zombie.stderr");
    let mut zombie = on_s3("pageserver", zombie_port, &log).with_stderr_to(&zombie_stderr);
    zombie.start();
    let mut z = client(&common::endpoint(zombie_port)).await;
    let first = spawn_writer(&writer, 11, pages.clone(), 300, 4)
        .await
        .unwrap();
    wait_ingested(&mut z, first).await;
    wait_uploaded(&mut z, Lsn(1)).await;
    assert_eq!(z.status().await.unwrap().generation, 1);
    let mut rng = Rng::new(seed);
    let (mut answers, mut model) = (Vec::new(), Model::new());
    follow(&mut model, &log, first).await;
    record_answers(&mut z, &model, &mut rng, first, 30, &mut answers).await;
    assert!(!answers.is_empty());

    // A second one takes the bucket over while the first still runs.
    let newer_port = common::free_port();
    let mut newer = on_s3("second", newer_port, &log);
    newer.start();
    let mut n = client(&common::endpoint(newer_port)).await;
    assert_eq!(n.status().await.unwrap().generation, 2);
    let remote = strata_pageserver::remote::Bucket::open(&bucket, CLUSTER).unwrap();
    let at_takeover = remote.layer_objects().await.unwrap();
    let end = spawn_writer(&writer, 12, pages, 300, 4).await.unwrap();
    writer.close();
    follow(&mut model, &log, end).await;
    wait_ingested(&mut n, end).await;
    wait_ingested(&mut z, end).await;
    wait_uploaded(&mut n, end).await;

    // The first one tries to publish what it froze since, and is fenced:
    // it published nothing past the takeover.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !z.status().await.unwrap().upload_fenced {
        assert!(Instant::now() < deadline, "the zombie is never fenced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let zombie_status = z.status().await.unwrap();
    assert!(zombie_status.uploaded_lsn <= first.0, "{zombie_status:?}");
    // Both still answer from the log, and alike.
    for (page, lsn, before) in &answers {
        for c in [&mut z, &mut n] {
            let after = c.get_page(*page, *lsn).await.unwrap();
            assert_eq!((after.from, &after.page), (before.from, &before.page));
        }
    }
    // Stopped, the zombie says why it stopped uploading, and fails.
    let exit = zombie.stop();
    assert!(!exit.success(), "a fenced page server exited with {exit}");
    let said = std::fs::read_to_string(&zombie_stderr).unwrap();
    assert!(
        said.contains("fenced: a page server of generation 2 owns the bucket"),
        "{said}"
    );
    newer.kill();

    // The bucket's newest index is the newer one's; every object it names
    // is intact, and none is a generation-1 object uploaded after the
    // takeover (the zombie's).
    let index = remote.newest_index().await.unwrap().unwrap();
    assert_eq!(index.generation, 2);
    assert!(index.manifest.durable_lsn >= end);
    assert!(check_bucket_at(&bucket).await > 0);
    for (name, layer) in index.by_name() {
        assert!(
            layer.generation == 2 || at_takeover.contains(&(name.clone(), layer.generation)),
            "the zombie's {name} is named"
        );
    }

    // An empty disk, the bucket and the log: generation 3, the same
    // answers.
    let recovered = Recovery {
        dir: dir.path(),
        log: &log,
        extra: &flags,
        env: &environment,
        end,
    };
    let status = recovered.answers_the_same(&answers, &model, &mut rng).await;
    assert_eq!(status.generation, 3, "{status:?}");
}
