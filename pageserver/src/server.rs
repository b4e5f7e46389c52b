//! The page server process: the timeline, ingest, and the edge: gRPC, and
//! GetPage's framed transport on the same port ([`crate::framed`]).
//!
//! Startup order: with a bucket, take a generation and recover the local
//! directory from the bucket if it is behind ([`crate::remote::recover`]);
//! open the timeline (manifest, layer files, stray files removed), start
//! the uploader and ingest, then answer requests. Shutdown order: stop
//! taking requests, stop ingest (which freezes and flushes what it holds),
//! let the uploader upload that last manifest, and return. If ingest stops on an error of its own, the server stops
//! too and returns that error: a page server that no longer follows the
//! log should be restarted, not keep answering.
//!
//! Wire types stop here: requests are checked (cluster id, page present,
//! batch size) and turned into domain calls on [`PageService`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use strata_logservice::sniff::{Routes, accept_loop};
use strata_proto::pageserver as pb;
use strata_proto::pageserver::page_server_server::{PageServer, PageServerServer};
use strata_wal::{Lsn, PageId};
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::error::{PageServerError, Result};
use crate::framed;
use crate::ingest::{Ingest, IngestConfig};
use crate::metrics::Metrics;
use crate::remote::upload::{UploadState, Uploader};
use crate::remote::{Bucket, BucketConfig, recover};
use crate::service::{PageService, PageVersion};
use crate::timeline::{CompactionConfig, GcConfig, Tiering, Timeline, TimelineConfig};

/// The most pages one `GetPages` request may ask for.
pub const MAX_BATCH_PAGES: usize = 256;
/// Framed GetPage connections served at once at most (a thread each;
/// a compute keeps one per concurrent fetch).
pub const MAX_FRAMED_CONNECTIONS: usize = 512;

/// The GetPage threads' default share of the CPU at real-time priority:
/// half the machine, so ingest and the rest keep at least the other half
/// under a flood of reads.
pub const DEFAULT_GETPAGE_REALTIME_PERCENT: u32 = 50;

/// Everything a page server needs to run.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub cluster_id: String,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The log service replicas, as `http://host:port`.
    pub log_endpoints: Vec<String>,
    /// The name this page server registers under with the log service.
    pub consumer_id: String,
    pub layer_size_bytes: u64,
    pub freeze_interval: Duration,
    pub image_after_records: u32,
    pub cache_bytes: u64,
    /// Bytes of newest page versions ingest keeps up to date
    /// (`timeline::newest`).
    pub newest_cache_bytes: u64,
    pub wait_lsn_timeout: Duration,
    pub max_frozen_layers: usize,
    pub safe_lsn_report_interval: Duration,
    pub compaction: CompactionConfig,
    pub gc: GcConfig,
    /// Where `/metrics` is served (None: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// Where layer files are uploaded (None: the local disk is the only
    /// copy beside the log, and the safe LSN is the durable LSN).
    pub bucket: Option<BucketConfig>,
    /// Layer uploads (and recovery downloads) in flight at most.
    pub upload_concurrency: usize,
    /// With a bucket: uploaded layer files are evicted from the local disk
    /// while they pass this many bytes, and downloaded again on demand;
    /// recovery on an empty disk then downloads lazily too. None: no limit
    /// (every layer stays local, recovery downloads all before answering).
    pub disk_budget_bytes: Option<u64>,
    /// Orphan objects in the bucket (older generations, named by no index
    /// of ours) are deleted once this old; swept at most once per period.
    pub orphan_grace: Duration,
    /// The share of this machine's CPU time, in percent, the GetPage
    /// threads may use at real-time priority when the process may take it
    /// (`CAP_SYS_NICE`); beyond it they run at normal priority until the
    /// next 10 ms window (`realtime`). 0: never.
    pub getpage_realtime_percent: u32,
}

impl ServerConfig {
    pub fn new(
        cluster_id: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        log_endpoints: Vec<String>,
    ) -> Self {
        ServerConfig {
            cluster_id: cluster_id.into(),
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_endpoints,
            consumer_id: "pageserver".into(),
            layer_size_bytes: 64 << 20,
            freeze_interval: Duration::from_secs(10),
            image_after_records: 32,
            cache_bytes: 256 << 20,
            newest_cache_bytes: crate::timeline::newest::DEFAULT_NEWEST_BYTES,
            wait_lsn_timeout: Duration::from_secs(5),
            max_frozen_layers: 4,
            safe_lsn_report_interval: Duration::from_secs(5),
            compaction: CompactionConfig::default(),
            gc: GcConfig::default(),
            metrics_listen: None,
            bucket: None,
            upload_concurrency: 4,
            disk_budget_bytes: None,
            orphan_grace: Duration::from_secs(600),
            getpage_realtime_percent: DEFAULT_GETPAGE_REALTIME_PERCENT,
        }
    }

    fn timeline(&self, tiering: Option<Arc<Tiering>>) -> TimelineConfig {
        TimelineConfig {
            cluster_id: self.cluster_id.clone(),
            dir: self.data_dir.clone(),
            layer_size_bytes: usize::try_from(self.layer_size_bytes).unwrap_or(usize::MAX),
            image_after_records: self.image_after_records.max(1),
            compaction: self.compaction.clone(),
            gc: self.gc.clone(),
            tiering,
            newest_bytes: self.newest_cache_bytes,
        }
    }

    fn ingest(&self) -> IngestConfig {
        IngestConfig {
            cluster_id: self.cluster_id.clone(),
            consumer_id: self.consumer_id.clone(),
            log_endpoints: self.log_endpoints.clone(),
            freeze_interval: self.freeze_interval,
            max_frozen_layers: self.max_frozen_layers.max(1),
            safe_lsn_report_interval: self.safe_lsn_report_interval,
        }
    }
}

/// Binds `config.listen` and serves until `shutdown`.
pub async fn serve(config: ServerConfig, shutdown: CancellationToken) -> Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(PageServerError::io(format!("binding {}", config.listen)))?;
    serve_on(listener, config, shutdown).await
}

/// Serves on a bound listener until `shutdown`.
pub async fn serve_on(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let attached = match &config.bucket {
        Some(b) => {
            let bucket = Arc::new(Bucket::open(b, &config.cluster_id)?);
            let recovery = match config.disk_budget_bytes {
                Some(_) => recover::Recovery::Lazy,
                None => recover::Recovery::Eager {
                    concurrency: config.upload_concurrency,
                },
            };
            let attached =
                recover::attach(&bucket, &config.data_dir, &config.cluster_id, recovery).await?;
            Some((bucket, attached))
        }
        None => None,
    };
    let tiering = attached.as_ref().map(|(bucket, a)| {
        Arc::new(Tiering::new(
            bucket.clone(),
            config.disk_budget_bytes.unwrap_or(u64::MAX),
            a.known.clone(),
        ))
    });
    let tl_config = config.timeline(tiering.clone());
    let timeline = tokio::task::spawn_blocking(move || Timeline::open(tl_config))
        .await
        .map_err(|e| PageServerError::Unavailable(format!("opening the timeline: {e}")))??;
    let uploader = attached
        .map(|(bucket, a)| start_uploader(&config, &timeline, bucket, a))
        .transpose()?;
    let evictor_stop = CancellationToken::new();
    let evictor = tiering.map(|t| tokio::spawn(evict(timeline.clone(), t, evictor_stop.clone())));
    let safe_lsn = match &uploader {
        Some(u) => u.state.subscribe_uploaded(),
        None => timeline.subscribe_durable(),
    };
    let ingest_stop = CancellationToken::new();
    let ingest = Ingest::spawn(
        timeline.clone(),
        config.ingest(),
        safe_lsn,
        ingest_stop.clone(),
    );
    let mut service = PageService::new(timeline, config.cache_bytes, config.wait_lsn_timeout)
        .with_getpage_realtime(config.getpage_realtime_percent);
    if let Some(u) = &uploader {
        service = service.with_upload_state(u.state.clone());
    }
    let service = Arc::new(service);
    let metrics_stop = CancellationToken::new();
    let metrics = match config.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(PageServerError::io(format!("binding {addr} for /metrics")))?;
            info!(listen = ?listener.local_addr().ok(), "serving /metrics");
            Some(tokio::spawn(crate::http::serve_metrics(
                listener,
                service.clone(),
                metrics_stop.clone(),
            )))
        }
        None => None,
    };
    let addr = listener.local_addr().ok();
    info!(listen = ?addr, data_dir = %config.data_dir.display(), "page server serving");
    // Stops taking requests on shutdown or when ingest fails.
    let stop_serving = CancellationToken::new();
    // Also when this future is dropped (its task aborted): the framed
    // connections' threads are not the runtime's and would not notice.
    let _stop_on_drop = stop_serving.clone().drop_guard();
    let watch = {
        let (stop, failed) = (stop_serving.clone(), ingest.failed.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = failed.cancelled() => {}
            }
            stop.cancel();
        })
    };
    // GetPage's framed connections are served on threads of their own
    // (`framed`); the rest goes to gRPC.
    let serving = Arc::new(framed::Serving {
        cluster_id: config.cluster_id.clone(),
        service: service.clone(),
        runtime: tokio::runtime::Handle::current(),
        stop: stop_serving.clone(),
    });
    let (grpc_tx, grpc_rx) = tokio::sync::mpsc::channel(16);
    let routes = Routes {
        magic: framed::MAGIC,
        thread_name: "getpage",
        serve: Arc::new(move |stream| framed::serve_connection(&serving, stream)),
        max_framed: MAX_FRAMED_CONNECTIONS,
        grpc: grpc_tx,
    };
    let acceptor = tokio::spawn(accept_loop(listener, routes, stop_serving.clone()));
    let grpc = Grpc {
        cluster_id: config.cluster_id.clone(),
        service,
    };
    let served = tonic::transport::Server::builder()
        .add_service(PageServerServer::new(grpc))
        .serve_with_incoming_shutdown(
            ReceiverStream::new(grpc_rx),
            stop_serving.clone().cancelled_owned(),
        )
        .await;
    stop_serving.cancel();
    let _ = acceptor.await;
    watch.abort();
    metrics_stop.cancel();
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    ingest_stop.cancel();
    let ingested = ingest.join().await;
    evictor_stop.cancel();
    if let Some(evictor) = evictor {
        let _ = evictor.await;
    }
    let uploaded = match uploader {
        Some(u) => u.stop().await,
        None => Ok(()),
    };
    served.map_err(|e| PageServerError::Unavailable(format!("gRPC server: {e}")))?;
    ingested?;
    uploaded
}

/// The running uploader, on a tokio runtime of its own.
struct RunningUploader {
    state: Arc<UploadState>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<()>>,
    _runtime: BackgroundRuntime,
}

impl RunningUploader {
    /// Uploads the last manifest stored and stops.
    async fn stop(self) -> Result<()> {
        self.stop.cancel();
        self.task.await.unwrap_or_else(|e| {
            Err(PageServerError::Unavailable(format!(
                "uploader task failed: {e}"
            )))
        })
    }
}

/// A tokio runtime whose threads (workers and blocking pool) run at
/// background priority ([`crate::background`]): the uploader's crcs,
/// reads of layer files and the local bucket's writes and fsyncs then
/// yield the CPU to GetPage. Shut down without waiting when dropped (a
/// runtime must not be dropped from async code otherwise).
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl BackgroundRuntime {
    fn start(name: &str) -> Result<BackgroundRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .on_thread_start(crate::background::lower_priority)
            .enable_all()
            .build()
            .map_err(|e| {
                PageServerError::Unavailable(format!("starting the {name} runtime: {e}"))
            })?;
        Ok(BackgroundRuntime(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("present until dropped").handle()
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

fn start_uploader(
    config: &ServerConfig,
    timeline: &Timeline,
    bucket: Arc<Bucket>,
    attached: recover::Attached,
) -> Result<RunningUploader> {
    let state = Arc::new(UploadState::new(
        attached.generation,
        attached.uploaded_lsn,
        attached.bucket_bytes,
    ));
    let uploader = Uploader {
        bucket,
        tiering: timeline.tiering().cloned(),
        dir: config.data_dir.clone(),
        state: state.clone(),
        known: attached.known,
        concurrency: config.upload_concurrency,
        orphan_grace: config.orphan_grace,
    };
    let stop = CancellationToken::new();
    let runtime = BackgroundRuntime::start("uploader")?;
    let task = runtime
        .handle()
        .spawn(uploader.run(timeline.subscribe_manifest(), stop.clone()));
    Ok(RunningUploader {
        state,
        stop,
        task,
        _runtime: runtime,
    })
}

/// The evictor: keeps the resident layer files under the disk budget,
/// checking after each publish and download and every second.
async fn evict(timeline: Arc<Timeline>, tiering: Arc<Tiering>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tiering.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let tl = timeline.clone();
        if tokio::task::spawn_blocking(move || tl.evict_to_budget())
            .await
            .is_err()
        {
            return;
        }
    }
}

struct Grpc {
    cluster_id: String,
    service: Arc<PageService>,
}

impl Grpc {
    fn check_cluster(&self, theirs: &str) -> Result<(), Status> {
        check_cluster(&self.cluster_id, theirs)
    }
}

pub(crate) fn check_cluster(ours: &str, theirs: &str) -> Result<(), Status> {
    if theirs != ours {
        return Err(PageServerError::WrongCluster {
            ours: ours.to_string(),
            theirs: theirs.to_string(),
        }
        .into());
    }
    Ok(())
}

pub(crate) fn page_id(page: Option<pb::PageRef>) -> Result<PageId, Status> {
    let page =
        page.ok_or_else(|| PageServerError::BadRequest("the request names no page".into()))?;
    Ok(PageId::new(page.space, page.page_no))
}

fn page_ref(page: PageId) -> pb::PageRef {
    pb::PageRef {
        space: page.space,
        page_no: page.page_no,
    }
}

pub(crate) fn image(v: PageVersion) -> pb::PageImage {
    pb::PageImage {
        image: bytes::Bytes::copy_from_slice(v.page.as_bytes()),
        valid_from: v.from.0,
        valid_to: v.to.0,
    }
}

#[tonic::async_trait]
impl PageServer for Grpc {
    async fn get_page(
        &self,
        req: Request<pb::GetPageRequest>,
    ) -> Result<Response<pb::GetPageResponse>, Status> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        let page = page_id(req.page)?;
        let version = self.service.get_page(page, Lsn(req.lsn)).await?;
        Ok(Response::new(pb::GetPageResponse {
            page: Some(image(version)),
        }))
    }

    async fn get_pages(
        &self,
        req: Request<pb::GetPagesRequest>,
    ) -> Result<Response<pb::GetPagesResponse>, Status> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        if req.pages.len() > MAX_BATCH_PAGES {
            return Err(PageServerError::BadRequest(format!(
                "{} pages asked for; a batch holds at most {MAX_BATCH_PAGES}",
                req.pages.len()
            ))
            .into());
        }
        let lsn = Lsn(req.lsn);
        let reads = req.pages.into_iter().map(|p| {
            let page = PageId::new(p.space, p.page_no);
            async move {
                let result = match self.service.get_page(page, lsn).await {
                    Ok(v) => pb::page_result::Result::Image(image(v)),
                    Err(e) => pb::page_result::Result::Error(pb::PageError {
                        code: e.code() as i32,
                        message: e.to_string(),
                    }),
                };
                pb::PageResult {
                    page: Some(page_ref(page)),
                    result: Some(result),
                }
            }
        });
        let results = futures::future::join_all(reads).await;
        Ok(Response::new(pb::GetPagesResponse { results }))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.check_cluster(&req.into_inner().cluster_id)?;
        let m = Metrics::read(&self.service);
        let up = m.upload.unwrap_or_default();
        Ok(Response::new(pb::StatusResponse {
            ingested_lsn: m.ingested_lsn,
            durable_lsn: m.durable_lsn,
            log_commit_lsn: m.log_commit_lsn,
            layer_count: m.layer_count(),
            layer_bytes: m.layer_bytes,
            open_layer_bytes: m.open_layer_bytes,
            cache_hits: m.cache_hits,
            cache_misses: m.cache_misses,
            cache_hit_rate: m.cache_hit_rate,
            cached_pages: m.cached_pages,
            reconstructions: m.reconstructions,
            records_ingested: m.records_ingested,
            oldest_snapshot_lsn: m.oldest_snapshot_lsn,
            gc_cutoff_lsn: m.gc_cutoff_lsn,
            l0_layer_count: m.l0_layers,
            l1_layer_count: m.l1_layers,
            image_layer_count: m.image_layers,
            frozen_layer_count: m.frozen_layers,
            ingest_lag_bytes: m.ingest_lag_bytes,
            compaction_debt_bytes: m.compaction_debt_bytes,
            flush_bytes_written: m.flush_bytes_written,
            compaction_bytes_written: m.compaction_bytes_written,
            wal_bytes_ingested: m.wal_bytes_ingested,
            layers_deleted: m.layers_deleted,
            compaction_running: m.compaction_running,
            generation: up.generation,
            uploaded_lsn: up.uploaded_lsn,
            upload_pending_layers: up.pending_layers,
            upload_pending_bytes: up.pending_bytes,
            bucket_bytes: up.bucket_bytes,
            upload_fenced: up.fenced,
            local_layer_bytes: m.local_layer_bytes,
            layer_evictions: m.tiering.map_or(0, |t| t.evictions),
            layer_downloads: m.tiering.map_or(0, |t| t.downloads),
            layer_hit_rate: m.tiering.map_or(0.0, |t| t.hit_rate),
            getpage_latency_buckets: m.getpage_latency,
            getpage_realtime_threads: m.getpage_realtime_threads,
            getpage_realtime_demotions: m.getpage_realtime_demotions,
        }))
    }

    async fn report_snapshot(
        &self,
        req: Request<pb::ReportSnapshotRequest>,
    ) -> Result<Response<pb::ReportSnapshotResponse>, Status> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        if req.compute_id.is_empty() {
            return Err(
                PageServerError::BadRequest("a snapshot report names no compute".into()).into(),
            );
        }
        // A compute that stops reporting keeps its entry until it reports
        // again under the same id (GC's cap bounds what it holds back).
        self.service
            .timeline()
            .report_snapshot(&req.compute_id, Lsn(req.oldest_snapshot_lsn));
        Ok(Response::new(pb::ReportSnapshotResponse {}))
    }
}
