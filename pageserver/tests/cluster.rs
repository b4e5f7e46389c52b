//! The page server over real gRPC, following a real three-replica log
//! service, in one process: answers against the model, bad requests,
//! restart, log replica failover, trimming, and many readers while ingest
//! and freezing run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_logservice::client::{LogClient, LogClientConfig, replica_status};
use strata_pageserver::client::{PageServerClient, RemotePage};
use strata_pageserver::metrics::GETPAGE_BUCKETS_US;
use strata_pageserver::remote::BucketConfig;
use strata_pageserver::server::{ServerConfig, serve_on};
use strata_pageserver::workload::{Model, Rng, Workload};
use strata_wal::{BatchBuilder, Lsn, PageId};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CLUSTER: &str = "ps-test";

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Three log replicas on 127.0.0.1.
struct Log {
    endpoints: Vec<String>,
    addrs: Vec<SocketAddr>,
    dir: tempfile::TempDir,
    stops: Vec<CancellationToken>,
    tasks: Vec<JoinHandle<strata_logservice::Result<()>>>,
}

impl Log {
    async fn start() -> Log {
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let mut log = Log {
            endpoints: addrs.iter().map(|a| format!("http://{a}")).collect(),
            addrs,
            dir: tempfile::tempdir().unwrap(),
            stops: Vec::new(),
            tasks: Vec::new(),
        };
        for (i, l) in listeners.into_iter().enumerate() {
            let (stop, task) = log.spawn(i, l);
            log.stops.push(stop);
            log.tasks.push(task);
        }
        log
    }

    fn spawn(
        &self,
        i: usize,
        l: TcpListener,
    ) -> (CancellationToken, JoinHandle<strata_logservice::Result<()>>) {
        use strata_logservice::server::{ServerConfig, serve_on};
        let mut cfg =
            ServerConfig::new(i as u32 + 1, CLUSTER, self.dir.path().join(format!("r{i}")));
        cfg.peers = (0..3)
            .filter(|j| *j != i)
            .map(|j| self.endpoints[j].clone())
            .collect();
        cfg.segment_size_bytes = 1 << 20;
        cfg.housekeeping_interval = Duration::from_millis(50);
        let stop = CancellationToken::new();
        (stop.clone(), tokio::spawn(serve_on(l, cfg, stop)))
    }

    async fn stop(&mut self, i: usize) {
        self.stops[i].cancel();
        (&mut self.tasks[i]).await.unwrap().unwrap();
    }

    async fn restart(&mut self, i: usize) {
        let l = TcpListener::bind(self.addrs[i]).await.unwrap();
        let (stop, task) = self.spawn(i, l);
        self.stops[i] = stop;
        self.tasks[i] = task;
    }

    async fn writer(&self) -> LogClient {
        LogClient::connect(LogClientConfig::new(
            CLUSTER,
            "writer",
            self.endpoints.clone(),
        ))
        .await
        .unwrap()
    }
}

/// A page server in this process.
struct PageServer {
    endpoint: String,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    stop: CancellationToken,
    task: Option<JoinHandle<strata_pageserver::Result<()>>>,
    tweak: fn(&mut ServerConfig),
    /// A local bucket to upload to (None: no bucket).
    bucket: Option<std::path::PathBuf>,
}

impl PageServer {
    async fn start(log: &Log) -> PageServer {
        PageServer::start_with(log, |_| {}).await
    }

    async fn start_with(log: &Log, tweak: fn(&mut ServerConfig)) -> PageServer {
        PageServer::start_on(log, tweak, None).await
    }

    async fn start_on(
        log: &Log,
        tweak: fn(&mut ServerConfig),
        bucket: Option<&std::path::Path>,
    ) -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut ps = PageServer {
            endpoint: format!("http://{addr}"),
            addr,
            dir: tempfile::tempdir().unwrap(),
            stop: CancellationToken::new(),
            task: None,
            tweak,
            bucket: bucket.map(|b| b.to_path_buf()),
        };
        ps.spawn(listener, log);
        ps
    }

    fn spawn(&mut self, listener: TcpListener, log: &Log) {
        let mut cfg = ServerConfig::new(CLUSTER, self.dir.path(), log.endpoints.clone());
        cfg.layer_size_bytes = 64 << 10;
        cfg.freeze_interval = Duration::from_millis(300);
        cfg.image_after_records = 8;
        cfg.cache_bytes = 64 * 8192;
        cfg.wait_lsn_timeout = Duration::from_millis(500);
        cfg.safe_lsn_report_interval = Duration::from_millis(200);
        cfg.bucket = self.bucket.clone().map(BucketConfig::Local);
        (self.tweak)(&mut cfg);
        self.stop = CancellationToken::new();
        self.task = Some(tokio::spawn(serve_on(listener, cfg, self.stop.clone())));
    }

    async fn stop(&mut self) {
        self.stop.cancel();
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    async fn restart(&mut self, log: &Log) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.spawn(listener, log);
    }

    async fn client(&self) -> PageServerClient {
        for _ in 0..100 {
            if let Ok(c) = PageServerClient::connect(&self.endpoint, CLUSTER).await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the page server does not answer");
    }

    /// Waits until the page server has ingested `lsn`.
    async fn wait_ingested(&self, lsn: Lsn) {
        let mut c = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Lsn(c.status().await.unwrap().ingested_lsn) < lsn {
            assert!(Instant::now() < deadline, "ingest does not reach {lsn}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Appends `batches` workload batches; returns the last commit LSN.
async fn write(writer: &LogClient, workload: &mut Workload, batches: usize) -> Lsn {
    let mut last = Lsn::ZERO;
    for i in 0..batches {
        let n = 1 + workload.rng().below(8) as usize;
        let mut b = BatchBuilder::new();
        for rec in workload.next_records(n) {
            b.push(&rec).unwrap();
        }
        last = writer.append(b.commit(i as u64)).await.unwrap();
    }
    last
}

/// Brings the model up to `upto` by reading the committed log.
async fn follow(model: &mut Model, log: &Log, upto: Lsn) {
    let patience = Duration::from_secs(60);
    model
        .follow(CLUSTER, "model", log.endpoints.clone(), upto, patience)
        .await
        .unwrap();
}

fn pages(n: u32) -> Vec<PageId> {
    (0..n).map(|i| PageId::new(10 + i % 3, i)).collect()
}

/// Compares one answer with the model, as of the server's ingested LSN
/// (`to - 1` when no later record was known to it).
fn assert_matches(model: &Model, page: PageId, lsn: Lsn, got: &RemotePage) {
    model
        .check(page, lsn, got)
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn check_samples(ps: &PageServer, model: &Model, rng: &mut Rng, n: usize) {
    let mut c = ps.client().await;
    for _ in 0..n {
        let (page, lsn) = model.sample(rng, model.end()).expect("pages written");
        match model.expected(page, lsn, model.end()) {
            Some(_) => assert_matches(model, page, lsn, &c.get_page(page, lsn).await.unwrap()),
            None => {
                let err = c.get_page(page, lsn).await.unwrap_err();
                assert_eq!(err.code(), tonic::Code::NotFound, "{page} at {lsn}: {err}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_the_model_across_freezes_and_a_restart() {
    init_tracing();
    let log = Log::start().await;
    let mut ps = PageServer::start(&log).await;
    let writer = log.writer().await;
    let mut workload = Workload::new(7, pages(40));
    let mut model = Model::new();
    let mut rng = Rng::new(99);

    let end = write(&writer, &mut workload, 600).await;
    follow(&mut model, &log, end).await;
    ps.wait_ingested(end).await;
    check_samples(&ps, &model, &mut rng, 300).await;

    // The batched form answers page by page, errors included.
    let mut c = ps.client().await;
    let mut asked: Vec<PageId> = model.pages().take(20).collect();
    asked.push(PageId::new(99, 1));
    let results = c.get_pages(&asked, end).await.unwrap();
    for (page, r) in asked.iter().zip(&results) {
        match model.expected(*page, end, end) {
            Some(_) => assert_matches(&model, *page, end, r.as_ref().unwrap()),
            None => assert_eq!(r.as_ref().unwrap_err().code(), tonic::Code::NotFound),
        }
    }

    // A clean stop flushes everything; after a restart the answers are the
    // same, and ingest carries on from where it stopped.
    let before = c.status().await.unwrap();
    // Compaction may have merged the frozen layers into one already.
    assert!(
        before.layer_count + before.layers_deleted > 1,
        "layers were frozen: {before:?}"
    );
    ps.stop().await;
    ps.restart(&log).await;
    let after = ps.client().await.status().await.unwrap();
    assert_eq!(
        after.durable_lsn, end.0,
        "a clean stop leaves nothing unflushed"
    );
    check_samples(&ps, &model, &mut rng, 200).await;
    let end = write(&writer, &mut workload, 200).await;
    follow(&mut model, &log, end).await;
    ps.wait_ingested(end).await;
    check_samples(&ps, &model, &mut rng, 200).await;
    let status = ps.client().await.status().await.unwrap();
    assert!(status.reconstructions > 0 && status.cache_hits + status.cache_misses > 0);
    // The 400 GetPages since the restart, each in the page server's own
    // latency histogram once.
    let buckets = &status.getpage_latency_buckets;
    assert_eq!(buckets.len(), GETPAGE_BUCKETS_US.len() + 1);
    assert_eq!(buckets.iter().sum::<u64>(), 400, "{buckets:?}");
    writer.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_typed_errors() {
    init_tracing();
    let log = Log::start().await;
    let ps = PageServer::start(&log).await;
    let writer = log.writer().await;
    let mut workload = Workload::new(3, pages(4));
    let end = write(&writer, &mut workload, 20).await;
    ps.wait_ingested(end).await;
    let mut c = ps.client().await;

    let above = c
        .get_page(PageId::new(10, 0), end.advance(1000))
        .await
        .unwrap_err();
    assert_eq!(above.code(), tonic::Code::OutOfRange, "{above}");
    let never = c.get_page(PageId::new(77, 0), end).await.unwrap_err();
    assert_eq!(never.code(), tonic::Code::NotFound, "{never}");
    let before_first = c.get_page(PageId::new(10, 0), Lsn(1)).await.unwrap_err();
    assert_eq!(before_first.code(), tonic::Code::NotFound, "{before_first}");

    let mut other = PageServerClient::connect(&ps.endpoint, "another-cluster")
        .await
        .unwrap();
    let wrong = other.get_page(PageId::new(10, 0), end).await.unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::FailedPrecondition, "{wrong}");

    let too_many: Vec<PageId> = (0..300).map(|i| PageId::new(10, i)).collect();
    let err = c.get_pages(&too_many, end).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

    use strata_proto::pageserver as pb;
    let mut raw = pb::page_server_client::PageServerClient::connect(ps.endpoint.clone())
        .await
        .unwrap();
    let missing_page = raw
        .get_page(pb::GetPageRequest {
            cluster_id: CLUSTER.into(),
            page: None,
            lsn: end.0,
        })
        .await
        .unwrap_err();
    assert_eq!(missing_page.code(), tonic::Code::InvalidArgument);
    writer.close();
}

/// Reads one framed GetPage answer; None if the page server hung up.
async fn read_answer(
    s: &mut tokio::net::TcpStream,
) -> Option<strata_pageserver::Result<strata_proto::pageserver::GetPageResponse>> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut body).await.ok()?;
    Some(strata_pageserver::framed::decode_response(body.into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getpage_over_its_framed_transport() {
    use bytes::{BufMut, BytesMut};
    use strata_pageserver::framed;
    use strata_proto::pageserver as pb;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    init_tracing();
    let log = Log::start().await;
    let mut ps = PageServer::start(&log).await;
    let writer = log.writer().await;
    let mut workload = Workload::new(5, pages(8));
    let mut model = Model::new();
    let end = write(&writer, &mut workload, 40).await;
    follow(&mut model, &log, end).await;
    ps.wait_ingested(end).await;
    let page = model.pages().next().unwrap();
    let request = |page: PageId| pb::GetPageRequest {
        cluster_id: CLUSTER.into(),
        page: Some(pb::PageRef {
            space: page.space,
            page_no: page.page_no,
        }),
        lsn: end.0,
    };

    // The client's GetPage (framed) answers what gRPC's does.
    let mut c = ps.client().await;
    let framed_page = c.get_page(page, end).await.unwrap();
    assert_matches(&model, page, end, &framed_page);
    let mut raw = pb::page_server_client::PageServerClient::connect(ps.endpoint.clone())
        .await
        .unwrap();
    let grpc_page = raw.get_page(request(page)).await.unwrap().into_inner();
    let grpc_page = grpc_page.page.unwrap();
    assert_eq!(&grpc_page.image[..], framed_page.page.as_bytes());
    assert_eq!(
        (Lsn(grpc_page.valid_from), Lsn(grpc_page.valid_to)),
        (framed_page.from, framed_page.to)
    );

    // Three requests in one write: a refused one in the middle leaves the
    // connection open, and the answers come back in order.
    let mut s = tokio::net::TcpStream::connect(ps.addr).await.unwrap();
    let mut wire = BytesMut::new();
    wire.put_slice(framed::MAGIC);
    framed::put_request(&mut wire, &request(page));
    framed::put_request(&mut wire, &request(PageId::new(77, 0)));
    framed::put_request(&mut wire, &request(page));
    s.write_all(&wire).await.unwrap();
    let first = read_answer(&mut s).await.unwrap().unwrap();
    assert_eq!(first.page.unwrap().image, grpc_page.image);
    let refused = read_answer(&mut s).await.unwrap().unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused}");
    let third = read_answer(&mut s).await.unwrap().unwrap();
    assert_eq!(third.page.unwrap().image, grpc_page.image);

    // A frame that is not a request: one error, then the page server hangs
    // up. So does a length no request has.
    for bad in [vec![3, 0, 0, 0, 0xff, 0xff, 0xff], vec![0xff; 4]] {
        let mut s = tokio::net::TcpStream::connect(ps.addr).await.unwrap();
        s.write_all(framed::MAGIC).await.unwrap();
        s.write_all(&bad).await.unwrap();
        let err = read_answer(&mut s).await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        assert_eq!(s.read(&mut [0u8; 16]).await.unwrap(), 0, "hung up");
    }

    // After a restart the client's pooled connections are dead; its next
    // GetPage opens a new one and answers.
    ps.stop().await;
    ps.restart(&log).await;
    ps.wait_ingested(end).await;
    let again = c.get_page(page, end).await.unwrap();
    assert_eq!(again, framed_page);
    writer.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_fails_over_between_log_replicas_and_the_log_is_trimmed() {
    init_tracing();
    let mut log = Log::start().await;
    let ps = PageServer::start(&log).await;
    let writer = log.writer().await;
    let mut workload = Workload::new(11, pages(30));
    workload.max_item_bytes = 2000;
    let mut model = Model::new();
    let mut rng = Rng::new(5);
    let end = write(&writer, &mut workload, 300).await;
    ps.wait_ingested(end).await;

    // The page server reads from the first replica; stop it.
    log.stop(0).await;
    let end = write(&writer, &mut workload, 300).await;
    ps.wait_ingested(end).await;
    follow(&mut model, &log, end).await;
    check_samples(&ps, &model, &mut rng, 200).await;
    log.restart(0).await;

    // Enough log for whole segments: once the page server's durable LSN
    // passes them and it reports it, the replicas trim them.
    let end = write(&writer, &mut workload, 3000).await;
    ps.wait_ingested(end).await;
    // (The model, a consumer too, must have read it all: it holds
    // trimming back to where it reported.)
    follow(&mut model, &log, end).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = replica_status(&log.endpoints[1], CLUSTER).await.unwrap();
        if s.start_lsn > Lsn::ZERO {
            let durable = ps.client().await.status().await.unwrap().durable_lsn;
            assert!(s.start_lsn.0 <= durable, "trimmed past the safe LSN");
            break;
        }
        assert!(Instant::now() < deadline, "the log is never trimmed: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writer.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_readers_while_ingest_and_freezing_run() {
    init_tracing();
    let log = Log::start().await;
    let ps = PageServer::start(&log).await;
    let writer = log.writer().await;
    let mut workload = Workload::new(21, pages(60));
    let mut model = Model::new();
    let end = write(&writer, &mut workload, 200).await;
    follow(&mut model, &log, end).await;
    ps.wait_ingested(end).await;

    // Readers ask about the part of the log the model holds now, at LSNs
    // whose answers keep changing `to` as more log arrives, while the writer
    // adds more and the page server freezes layers every 300 ms.
    let model = Arc::new(model);
    let stop = CancellationToken::new();
    let mut readers = Vec::new();
    for r in 0..16u64 {
        let (model, stop, mut c) = (model.clone(), stop.clone(), ps.client().await);
        readers.push(tokio::spawn(async move {
            let mut rng = Rng::new(1000 + r);
            let mut answers = Vec::new();
            while !stop.is_cancelled() {
                let (page, lsn) = model.sample(&mut rng, model.end()).expect("pages written");
                if model.expected(page, lsn, model.end()).is_some() {
                    answers.push((page, lsn, c.get_page(page, lsn).await.unwrap()));
                }
            }
            answers
        }));
    }
    let end = write(&writer, &mut workload, 800).await;
    stop.cancel();
    let mut answers = Vec::new();
    for r in readers {
        answers.extend(r.await.unwrap());
    }
    let mut model = Arc::into_inner(model).unwrap();
    follow(&mut model, &log, end).await;
    assert!(answers.len() > 100, "readers ran: {}", answers.len());
    for (page, lsn, got) in &answers {
        assert_matches(&model, *page, *lsn, got);
    }
    let status = ps.client().await.status().await.unwrap();
    // Frozen layers are flushed to L0s, which compaction may have merged
    // (and deleted) by now: count both, not what happens to be live.
    assert!(
        status.layer_count + status.layers_deleted > 1,
        "layers were frozen during the reads: {status:?}"
    );
    writer.close();
}

/// Flips bit `bit` of the file at `path`.
fn flip_bit(path: &std::path::Path, bit: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = (bit / 8) as usize % bytes.len();
    bytes[at] ^= 1 << (bit % 8);
    std::fs::write(path, bytes).unwrap();
}

/// The page server's layer files.
fn layer_files(ps: &PageServer) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(ps.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "delta"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bits_in_layers_and_the_manifest_are_caught_never_served() {
    init_tracing();
    let log = Log::start().await;
    // One layer file, written at the clean stop.
    let mut ps = PageServer::start_with(&log, |c| {
        c.freeze_interval = Duration::from_secs(3600);
        c.layer_size_bytes = 64 << 20;
    })
    .await;
    let writer = log.writer().await;
    let mut workload = Workload::new(17, pages(8));
    let mut model = Model::new();
    let end = write(&writer, &mut workload, 120).await;
    follow(&mut model, &log, end).await;
    ps.wait_ingested(end).await;
    ps.stop().await;
    let files = layer_files(&ps);
    assert_eq!(files.len(), 1);
    let pristine = std::fs::read(&files[0]).unwrap();
    let manifest = ps.dir.path().join("manifest");
    let pristine_manifest = std::fs::read(&manifest).unwrap();

    let mut rng = Rng::new(4);
    for round in 0..6 {
        let bit = rng.below(pristine.len() as u64 * 8);
        std::fs::write(&files[0], &pristine).unwrap();
        flip_bit(&files[0], bit);
        ps.restart(&log).await;
        // Either the server refuses to start (header or index damaged) ...
        tokio::time::sleep(Duration::from_millis(200)).await;
        if ps.task.as_ref().unwrap().is_finished() {
            let err = ps.task.take().unwrap().await.unwrap().unwrap_err();
            assert!(err.to_string().contains(".delta"), "round {round}: {err}");
            continue;
        }
        // ... or every read of the damaged block fails, and nothing wrong
        // is ever served.
        let mut c = ps.client().await;
        let mut caught = 0;
        for page in model.pages().collect::<Vec<_>>() {
            for lsn in model.record_lsns(page) {
                match c.get_page(page, lsn).await {
                    Ok(got) => assert_matches(&model, page, lsn, &got),
                    Err(e) => {
                        assert_eq!(e.code(), tonic::Code::DataLoss, "round {round}: {e}");
                        caught += 1;
                    }
                }
            }
        }
        assert!(
            caught > 0,
            "round {round}: bit {bit} flipped and nothing noticed"
        );
        ps.stop().await;
    }

    std::fs::write(&files[0], &pristine).unwrap();
    flip_bit(&manifest, rng.below(pristine_manifest.len() as u64 * 8));
    ps.restart(&log).await;
    let err = ps.task.take().unwrap().await.unwrap().unwrap_err();
    assert!(err.to_string().contains("manifest"), "{err}");
    writer.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_open_layer_is_frozen_by_age_and_made_durable() {
    init_tracing();
    let log = Log::start().await;
    let ps = PageServer::start_with(&log, |c| {
        c.layer_size_bytes = 64 << 20;
        c.freeze_interval = Duration::from_millis(200);
    })
    .await;
    let writer = log.writer().await;
    let end = write(&writer, &mut Workload::new(8, pages(4)), 10).await;
    ps.wait_ingested(end).await;
    let mut c = ps.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = c.status().await.unwrap();
        if s.durable_lsn >= end.0 {
            assert!(s.layer_count >= 1, "{s:?}");
            assert!(s.open_layer_bytes == 0 || s.ingested_lsn > end.0, "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never frozen: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.close();
}

/// Waits until the page server's uploaded manifest covers `lsn`.
async fn wait_uploaded(ps: &PageServer, lsn: Lsn) {
    let mut c = ps.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = c.status().await.unwrap();
        if Lsn(s.uploaded_lsn) >= lsn {
            assert!(s.uploaded_lsn <= s.durable_lsn, "{s:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "uploads never reach {lsn}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The layer objects in a local bucket, by key (path under the bucket).
fn bucket_objects(bucket: &std::path::Path) -> Vec<std::path::PathBuf> {
    let dir = bucket.join(CLUSTER).join("layers");
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        // (`NAME#N` is a put in progress: the local store's staging file.)
        Ok(read) => read
            .map(|e| e.unwrap().path())
            .filter(|p| !p.to_string_lossy().contains('#'))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// The generation an object key ends in.
fn object_generation(key: &std::path::Path) -> u32 {
    let name = key.file_name().unwrap().to_str().unwrap();
    name.rsplit('-').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_local_disk_recovers_from_the_bucket_and_a_flipped_bit_is_caught() {
    init_tracing();
    let log = Log::start().await;
    let bucket = tempfile::tempdir().unwrap();
    let mut ps = PageServer::start_on(&log, |_| {}, Some(bucket.path())).await;
    let writer = log.writer().await;
    let mut workload = Workload::new(31, pages(40));
    let mut model = Model::new();
    let mut rng = Rng::new(77);
    let uploaded = write(&writer, &mut workload, 600).await;
    wait_uploaded(&ps, uploaded).await;
    // More log that only the log holds when the disk is lost.
    let end = write(&writer, &mut workload, 150).await;
    follow(&mut model, &log, end).await;
    ps.wait_ingested(end).await;
    ps.task.take().unwrap().abort();
    std::fs::remove_dir_all(ps.dir.path()).unwrap();

    // A flipped bit in an object is caught by the download, and nothing
    // starts from it.
    let objects = bucket_objects(bucket.path());
    assert!(!objects.is_empty());
    let victim = &objects[rng.below(objects.len() as u64) as usize];
    let pristine = std::fs::read(victim).unwrap();
    flip_bit(victim, rng.below(pristine.len() as u64 * 8));
    let mut broken = PageServer::start_on(&log, |_| {}, Some(bucket.path())).await;
    let err = broken.task.take().unwrap().await.unwrap().unwrap_err();
    assert!(
        matches!(err, strata_pageserver::PageServerError::Corrupt { .. }),
        "{err}"
    );
    assert!(layer_files(&broken).is_empty(), "nothing written locally");
    std::fs::write(victim, &pristine).unwrap();

    // An empty directory, the bucket and the log: every answer as before.
    let fresh = PageServer::start_on(&log, |_| {}, Some(bucket.path())).await;
    let s = fresh.client().await.status().await.unwrap();
    assert!(s.layer_count > 0 && s.durable_lsn >= uploaded.0, "{s:?}");
    assert_eq!(s.generation, 3, "{s:?}");
    fresh.wait_ingested(end).await;
    check_samples(&fresh, &model, &mut rng, 300).await;
    let end = write(&writer, &mut workload, 100).await;
    follow(&mut model, &log, end).await;
    fresh.wait_ingested(end).await;
    check_samples(&fresh, &model, &mut rng, 100).await;
    writer.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_page_server_is_fenced_and_the_newer_manifest_wins() {
    init_tracing();
    let log = Log::start().await;
    let bucket = tempfile::tempdir().unwrap();
    let mut old = PageServer::start_on(&log, |_| {}, Some(bucket.path())).await;
    let writer = log.writer().await;
    let mut workload = Workload::new(41, pages(30));
    let mut model = Model::new();
    let mut rng = Rng::new(3);
    let first = write(&writer, &mut workload, 300).await;
    wait_uploaded(&old, first).await;

    // A second page server takes the bucket over while the first still runs.
    let mut new = PageServer::start_on(&log, |_| {}, Some(bucket.path())).await;
    assert_eq!(new.client().await.status().await.unwrap().generation, 2);
    let objects_at_takeover = bucket_objects(bucket.path());
    let end = write(&writer, &mut workload, 300).await;
    follow(&mut model, &log, end).await;
    new.wait_ingested(end).await;
    old.wait_ingested(end).await;
    wait_uploaded(&new, end).await;

    // The old one tries to publish its next manifest and is fenced.
    let mut c = old.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.status().await.unwrap().upload_fenced {
        assert!(Instant::now() < deadline, "the zombie is never fenced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let old_status = c.status().await.unwrap();
    assert!(old_status.uploaded_lsn < end.0, "{old_status:?}");
    // It only ever wrote generation-1 keys: every generation-2 object is
    // the newer server's, and nothing of what the bucket held at the
    // takeover was deleted by it (the newer server deletes only what its
    // own manifest dropped, after publishing it).
    let new_dir_layers = layer_files(&new).len();
    assert!(new_dir_layers > 0);
    // Stopped before the bucket is read: a running server goes on
    // publishing manifests and deleting what they no longer name, so the
    // index read below could name layers gone by the time they are listed.
    new.stop().await;
    let remote = strata_pageserver::remote::Bucket::open(
        &BucketConfig::Local(bucket.path().to_path_buf()),
        CLUSTER,
    )
    .unwrap();
    let index = remote.newest_index().await.unwrap().unwrap();
    assert_eq!(index.generation, 2);
    assert!(index.manifest.durable_lsn >= end);
    for (name, layer) in index.by_name() {
        remote.get_layer(&name, layer).await.unwrap();
    }
    let err = {
        old.stop.cancel();
        old.task.take().unwrap().await.unwrap().unwrap_err()
    };
    assert!(
        matches!(
            err,
            strata_pageserver::PageServerError::Fenced { ours: 1, newer: 2 }
        ),
        "{err}"
    );
    let named: Vec<_> = index
        .by_name()
        .into_iter()
        .map(|(name, l)| {
            let key = format!("{name}-{:010}", l.generation);
            bucket.path().join(CLUSTER).join("layers").join(key)
        })
        .collect();
    let objects = bucket_objects(bucket.path());
    for key in &named {
        assert!(objects.contains(key), "{key:?} named but gone");
    }
    for key in objects.iter().filter(|k| !objects_at_takeover.contains(k)) {
        if object_generation(key) == 1 {
            assert!(!named.contains(key), "the zombie's {key:?} is named");
        }
    }

    // The newer manifest is the bucket's: a third server recovers from it.
    let third = PageServer::start_on(&log, |_| {}, Some(bucket.path())).await;
    third.wait_ingested(end).await;
    check_samples(&third, &model, &mut rng, 200).await;
    writer.close();
}
