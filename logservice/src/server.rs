//! The gRPC server of one log replica.
//!
//! A thin shell around [`Replica`]: every RPC takes the replica's lock,
//! calls the state machine and answers. Around it run, owned by [`serve_on`]
//! and stopped by its cancellation token:
//!
//! - the *flusher*, one OS thread: takes a sync job from the replica, runs
//!   it (fsync) outside the lock, and reports it done; appends that arrive
//!   meanwhile share the next fsync (group fsync);
//! - the *catch-up* task: when the replica finds itself behind the writer,
//!   it fetches committed log from its peers;
//! - the *housekeeping* task: trims segments and saves the commit LSN.
//!
//! Appends are acknowledged on their stream once the flusher has made them
//! durable. Separate signals wake the waiters, so that an append does not
//! wake everyone: `acks` (the synced LSN moved, or the log was cut) wakes
//! the append streams; `changed` (commit moved) wakes read streams;
//! `behind` (an append found the replica behind the writer) wakes the
//! catch-up task. Shutdown order: stop accepting
//! RPCs, cancel the tasks, stop the flusher after its last fsync.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::{Condvar, Mutex};
use strata_proto::logservice as pb;
use strata_proto::logservice::log_service_server::{LogService, LogServiceServer};
use strata_wal::Lsn;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::control_file::new_incarnation;
use crate::error::{LogError, Result};
use crate::msg::{AppendOutcome, AppendRequest, FetchRequest, FetchResponse, ReplicaId};
use crate::replica::Replica;
use crate::segment::SegmentStorage;
use crate::storage::Storage;
use crate::wire::history_to_pb;
use crate::{framed, sniff};

/// The most bytes one read-stream message carries.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// gRPC message size limit: an append or fetch of a few MiB must fit.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub id: ReplicaId,
    pub cluster_id: String,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The other replicas, as `http://host:port`.
    pub peers: Vec<String>,
    pub segment_size_bytes: u64,
    /// A consumer further behind than this stops holding the log back.
    pub retention_cap_bytes: u64,
    pub housekeeping_interval: Duration,
    /// Fsync a writer's appends on the append stream itself (on a
    /// multi-threaded runtime, through `block_in_place`) instead of handing
    /// them to the flusher thread and waiting to be woken: two wake-ups
    /// fewer on the commit path.
    pub inline_sync: bool,
}

impl ServerConfig {
    pub fn new(id: ReplicaId, cluster_id: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            id,
            cluster_id: cluster_id.into(),
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            peers: Vec::new(),
            segment_size_bytes: 64 << 20,
            retention_cap_bytes: 16 << 30,
            housekeeping_interval: Duration::from_secs(1),
            inline_sync: std::env::var("STRATA_LOG_INLINE_SYNC").map_or(true, |v| v != "0"),
        }
    }
}

struct Shared {
    cluster_id: String,
    replica: Mutex<Replica<SegmentStorage>>,
    /// Bumped when the commit LSN may have changed (or the log was cut).
    changed: watch::Sender<u64>,
    /// Notified when an append finds the replica behind the writer: wakes
    /// the catch-up task, and only then (it used to wake on every commit,
    /// a task wake-up per append for nothing).
    behind: Notify,
    /// Bumped when the synced LSN moved or the log end went back: what an
    /// append stream waiting to acknowledge needs to look again.
    acks: watch::Sender<u64>,
    sync_wanted: Mutex<bool>,
    sync_cv: Condvar,
    inline_sync: bool,
    /// Cancelled at shutdown: long-lived streams end so that the server's
    /// graceful shutdown does not wait for a writer that never hangs up.
    stop: CancellationToken,
}

impl Shared {
    fn check_cluster(&self, cluster_id: &str) -> Result<(), Status> {
        if cluster_id != self.cluster_id {
            return Err(LogError::WrongCluster {
                ours: self.cluster_id.clone(),
                theirs: cluster_id.into(),
            }
            .into());
        }
        Ok(())
    }

    /// Wakes every waiter: append streams, read streams, catch-up.
    fn notify(&self) {
        self.notify_acks();
        self.notify_changed();
    }

    fn notify_changed(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn notify_acks(&self) {
        self.acks.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn want_sync(&self) {
        *self.sync_wanted.lock() = true;
        self.sync_cv.notify_one();
    }

    /// The acknowledgement of writes up to `target`, once they are durable
    /// (or were cut, when the answer is the shorter log).
    fn ack_once_durable(&self, target: Lsn) -> Option<crate::msg::AppendResponse> {
        let r = self.replica.lock();
        (r.synced() >= target || r.end() < target).then(|| r.ack())
    }

    /// The flusher's work when woken: runs sync jobs until nothing written
    /// is left unsynced, waking the waiters after each.
    fn run_syncs(&self) {
        loop {
            // Its own statement: the lock must be released before the
            // fsync (a `while let` would hold it to the end).
            let next = self.replica.lock().begin_sync();
            let Some((job, ticket)) = next else { return };
            // An fsync error aborts the process inside the job.
            let result = crate::storage::SyncJob::run(job).and_then(|()| {
                let mut r = self.replica.lock();
                let before = r.commit();
                r.finish_sync(ticket).map(|()| r.commit() != before)
            });
            let commit_moved = result.as_ref().map_or(true, |moved| *moved);
            if let Err(e) = result {
                warn!(error = %e, "sync bookkeeping failed");
            }
            self.notify_acks();
            if commit_moved {
                self.notify_changed();
            }
        }
    }
}

/// Binds `config.listen` and serves until `shutdown`.
pub async fn serve(config: ServerConfig, shutdown: CancellationToken) -> Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(LogError::io(format!("binding {}", config.listen)))?;
    serve_on(listener, config, shutdown).await
}

/// Serves on an already bound listener until `shutdown`.
pub async fn serve_on(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let storage = SegmentStorage::open(
        &config.data_dir,
        &config.cluster_id,
        config.id,
        config.segment_size_bytes,
    )?;
    let replica = Replica::open(storage, config.id, &config.cluster_id, new_incarnation())?;
    let addr = listener
        .local_addr()
        .map_err(LogError::io("reading the bound address"))?;
    info!(id = config.id, %addr, end = %replica.end(), voter = replica.control().voter, "log replica serving");
    let shared = Arc::new(Shared {
        cluster_id: config.cluster_id.clone(),
        replica: Mutex::new(replica),
        changed: watch::channel(0).0,
        behind: Notify::new(),
        acks: watch::channel(0).0,
        sync_wanted: Mutex::new(false),
        sync_cv: Condvar::new(),
        inline_sync: config.inline_sync
            && tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::MultiThread,
        stop: shutdown.clone(),
    });
    let tasks = CancellationToken::new();
    let flusher = spawn_flusher(shared.clone(), tasks.clone());
    let catch_up = tokio::spawn(catch_up_loop(
        shared.clone(),
        config.peers.clone(),
        tasks.clone(),
    ));
    let housekeeping = tokio::spawn(housekeeping_loop(
        shared.clone(),
        config.clone(),
        tasks.clone(),
    ));
    let service = LogServiceServer::new(Service {
        shared: shared.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Connections are accepted here and sorted: the writers' framed append
    // streams are served directly, the rest goes to the gRPC server.
    let (grpc_tx, grpc_rx) = mpsc::channel(16);
    let serve_shared = shared.clone();
    let routes = sniff::Routes {
        magic: framed::MAGIC,
        thread_name: "log-append",
        serve: Arc::new(move |stream| serve_framed_appends(&serve_shared, stream)),
        max_framed: MAX_FRAMED_APPENDS,
        grpc: grpc_tx,
    };
    let acceptor = tokio::spawn(sniff::accept_loop(listener, routes, shutdown.clone()));
    let served = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(ReceiverStream::new(grpc_rx), shutdown.cancelled_owned())
        .await;
    let _ = acceptor.await;
    tasks.cancel();
    shared.want_sync();
    let _ = catch_up.await;
    let _ = housekeeping.await;
    let _ = tokio::task::spawn_blocking(move || flusher.join()).await;
    info!(id = config.id, "log replica stopped");
    served.map_err(|e| LogError::Unavailable(format!("gRPC server failed: {e}")))
}

/// Framed append connections served at once at most (one per writer and
/// replica; a thread each).
const MAX_FRAMED_APPENDS: usize = 256;

/// How often a framed append thread waiting for a frame looks whether the
/// server is stopping.
const FRAMED_STOP_CHECK: Duration = Duration::from_millis(200);

/// One writer's framed append stream (see [`framed`]), served by a thread
/// of its own with blocking I/O: the kernel wakes it when a frame
/// arrives, it appends, fsyncs (the writer's bytes, and whatever else was
/// written by then) and writes the answer, with no runtime between. It
/// reads every frame that has arrived before it syncs, so they share one
/// fsync and one answer. Ends when the writer hangs up, after an error
/// frame, or within [`FRAMED_STOP_CHECK`] of the server stopping.
fn serve_framed_appends(shared: &Shared, stream: std::net::TcpStream) {
    let Some(mut conn) = sniff::BlockingConn::new(stream, FRAMED_STOP_CHECK, 64 << 10) else {
        return;
    };
    let mut acks = shared.acks.subscribe();
    let mut out = BytesMut::with_capacity(4096);
    while conn.fill(&shared.stop) {
        out.clear();
        let mut awaiting: Option<Lsn> = None;
        let mut failed = false;
        loop {
            let frame = match framed::take_frame(conn.buffer()) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    framed::put_response(&mut out, &Err(e.into()));
                    failed = true;
                    break;
                }
            };
            let handled = framed::decode_request(frame).and_then(|req| handle_append(shared, req));
            match handled {
                Ok((resp, None)) => framed::put_response(&mut out, &Ok((&resp).into())),
                Ok((_, Some(end))) => awaiting = awaiting.max(Some(end)),
                Err(status) => {
                    framed::put_response(&mut out, &Err(status));
                    failed = true;
                    break;
                }
            }
        }
        if let Some(target) = awaiting {
            if shared.inline_sync {
                // Every sync job needed (none if the flusher has one in
                // flight: then the answer waits for its wake-up).
                shared.run_syncs();
            }
            let ack = loop {
                acks.borrow_and_update();
                if let Some(ack) = shared.ack_once_durable(target) {
                    break ack;
                }
                let stopped = futures::executor::block_on(async {
                    let changed = std::pin::pin!(acks.changed());
                    let stop = std::pin::pin!(shared.stop.cancelled());
                    match futures::future::select(changed, stop).await {
                        futures::future::Either::Left((res, _)) => res.is_err(),
                        futures::future::Either::Right(_) => true,
                    }
                });
                if stopped {
                    return;
                }
            };
            framed::put_response(&mut out, &Ok((&ack).into()));
        }
        if (!out.is_empty() && !conn.send(&out)) || failed {
            return;
        }
    }
}

/// The flusher thread: one fsync at a time, covering every write before it.
fn spawn_flusher(shared: Arc<Shared>, stop: CancellationToken) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("log-flusher".into())
        .spawn(move || {
            loop {
                {
                    let mut wanted = shared.sync_wanted.lock();
                    while !*wanted && !stop.is_cancelled() {
                        shared
                            .sync_cv
                            .wait_for(&mut wanted, Duration::from_millis(100));
                    }
                    *wanted = false;
                }
                shared.run_syncs();
                if stop.is_cancelled() {
                    return;
                }
            }
        })
        .expect("spawning the flusher thread")
}

async fn catch_up_loop(shared: Arc<Shared>, peers: Vec<String>, stop: CancellationToken) {
    let mut turn = 0usize;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.behind.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if peers.is_empty() || !shared.replica.lock().is_behind() {
            continue;
        }
        let peer = &peers[turn % peers.len()];
        turn += 1;
        if let Err(e) = catch_up_from(&shared, peer).await {
            warn!(peer, error = %e, "catching up from a peer failed");
        }
    }
}

/// Copies committed log from `peer` until this replica has all it has.
async fn catch_up_from(shared: &Shared, peer: &str) -> Result<()> {
    let mut client = crate::client::connect_replica(peer).await?;
    loop {
        let req = shared.replica.lock().catch_up_request(4 << 20);
        let mut pb_req = pb::FetchRequest::from(&req);
        pb_req.cluster_id = shared.cluster_id.clone();
        let resp: FetchResponse = client.fetch(pb_req).await?.into_inner().try_into()?;
        let more = shared.replica.lock().apply_peer_fetch(&resp)?;
        shared.want_sync();
        shared.notify();
        if !more || resp.data.is_empty() {
            return Ok(());
        }
    }
}

async fn housekeeping_loop(shared: Arc<Shared>, config: ServerConfig, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(config.housekeeping_interval) => {}
        }
        let mut r = shared.replica.lock();
        if let Err(e) = r
            .trim(config.retention_cap_bytes)
            .and_then(|_| r.checkpoint())
        {
            warn!(error = %e, "log housekeeping failed");
        }
    }
}

struct Service {
    shared: Arc<Shared>,
}

type StreamOf<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl LogService for Service {
    type AppendStream = AppendStream;
    type ReadStream = StreamOf<pb::ReadResponse>;

    async fn elect(
        &self,
        req: Request<pb::ElectRequest>,
    ) -> Result<Response<pb::ElectResponse>, Status> {
        let req = req.into_inner();
        self.shared.check_cluster(&req.cluster_id)?;
        let req = req.try_into()?;
        let promise = self.shared.replica.lock().elect(&req)?;
        Ok(Response::new((&promise).into()))
    }

    async fn append(
        &self,
        req: Request<Streaming<pb::AppendRequest>>,
    ) -> Result<Response<Self::AppendStream>, Status> {
        Ok(Response::new(append_responses(
            self.shared.clone(),
            req.into_inner(),
        )))
    }

    async fn read(
        &self,
        req: Request<pb::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let req = req.into_inner();
        self.shared.check_cluster(&req.cluster_id)?;
        if req.consumer_id.is_empty() {
            return Err(LogError::BadRequest("a reader needs a consumer id".into()).into());
        }
        let start = Lsn(req.start_lsn);
        self.shared
            .replica
            .lock()
            .register_consumer(&req.consumer_id, start)?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(read_stream(self.shared.clone(), start, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch(
        &self,
        req: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let req = req.into_inner();
        self.shared.check_cluster(&req.cluster_id)?;
        let req: FetchRequest = req.try_into()?;
        let resp = self.shared.replica.lock().fetch(&req)?;
        Ok(Response::new((&resp).into()))
    }

    async fn report_safe_lsn(
        &self,
        req: Request<pb::ReportSafeLsnRequest>,
    ) -> Result<Response<pb::ReportSafeLsnResponse>, Status> {
        let req = req.into_inner();
        self.shared.check_cluster(&req.cluster_id)?;
        if req.consumer_id.is_empty() {
            return Err(LogError::BadRequest("a consumer id is required".into()).into());
        }
        let mut r = self.shared.replica.lock();
        r.report_safe_lsn(&req.consumer_id, Lsn(req.safe_lsn))?;
        Ok(Response::new(pb::ReportSafeLsnResponse {
            trimmed_below_lsn: r.storage().start().0,
        }))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.shared.check_cluster(&req.into_inner().cluster_id)?;
        let r = self.shared.replica.lock();
        let c = r.control();
        Ok(Response::new(pb::StatusResponse {
            replica_id: c.replica_id,
            incarnation: c.incarnation,
            promised_term: c.promised_term,
            voter: c.voter,
            flush_lsn: r.flush().0,
            commit_lsn: r.commit().0,
            end_lsn: r.end().0,
            start_lsn: r.storage().start().0,
            history: history_to_pb(&c.history),
            segment_count: r.storage().segment_count() as u64,
            fsync_count: r.fsync_count(),
            consumers: c
                .consumers
                .iter()
                .map(|(id, lsn)| pb::ConsumerStatus {
                    consumer_id: id.clone(),
                    safe_lsn: lsn.0,
                })
                .collect(),
        }))
    }
}

/// One writer's append stream: appends in; acknowledgements out, each sent
/// once what it acknowledges is durable.
///
/// The stream is not a task of its own: it runs when the HTTP/2 stream
/// polls it for the next response, so an append is handled, and an
/// acknowledgement leaves, without a hop through another task (each hop is
/// a wake-up on another worker, which costs more on the commit path than
/// the work itself). When the writer stops reading responses, appends stop
/// being read too: the same backpressure a bounded channel gave.
fn append_responses(shared: Arc<Shared>, inbound: Streaming<pb::AppendRequest>) -> AppendStream {
    let stream = AppendStreamState::new(shared, inbound);
    Box::pin(futures::stream::unfold(stream, |mut stream| async move {
        let next = stream.next_response().await?;
        Some((next, stream))
    }))
}

type AppendStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::AppendResponse, Status>> + Send>>;

struct AppendStreamState {
    shared: Arc<Shared>,
    inbound: Streaming<pb::AppendRequest>,
    acks: watch::Receiver<u64>,
    /// The log end our last write must reach durably before we acknowledge.
    awaiting: Option<Lsn>,
    /// An error was sent: the stream ends.
    ended: bool,
}

impl AppendStreamState {
    fn new(shared: Arc<Shared>, inbound: Streaming<pb::AppendRequest>) -> Self {
        AppendStreamState {
            acks: shared.acks.subscribe(),
            shared,
            inbound,
            awaiting: None,
            ended: false,
        }
    }

    /// The next response to send; `None` ends the stream.
    async fn next_response(&mut self) -> Option<Result<pb::AppendResponse, Status>> {
        if self.ended {
            return None;
        }
        loop {
            tokio::select! {
                _ = self.shared.stop.cancelled() => return None,
                msg = self.inbound.message() => {
                    let req = match msg {
                        Ok(Some(req)) => req,
                        Ok(None) | Err(_) => return None,
                    };
                    match handle_append(&self.shared, req) {
                        Ok((resp, None)) => return Some(Ok((&resp).into())),
                        Ok((_, Some(end))) => {
                            self.awaiting = Some(end);
                            if self.shared.inline_sync {
                                // Runs every sync job needed (none if the
                                // flusher has one in flight: then the ack
                                // waits for its wake-up as before).
                                let shared = &self.shared;
                                tokio::task::block_in_place(|| shared.run_syncs());
                                if let Some(ack) = self.ready_ack() {
                                    return Some(Ok((&ack).into()));
                                }
                            }
                        }
                        Err(status) => {
                            self.ended = true;
                            return Some(Err(status));
                        }
                    }
                }
                res = self.acks.changed(), if self.awaiting.is_some() => {
                    if res.is_err() {
                        return None;
                    }
                    if let Some(ack) = self.ready_ack() {
                        return Some(Ok((&ack).into()));
                    }
                }
            }
        }
    }

    /// The acknowledgement awaited, once what it covers is durable (or was
    /// cut, when the answer is the shorter log).
    fn ready_ack(&mut self) -> Option<crate::msg::AppendResponse> {
        let ack = self.shared.ack_once_durable(self.awaiting?)?;
        self.awaiting = None;
        Some(ack)
    }
}

/// Applies one append. Returns the answer to send now, or the log end that
/// must become durable before acknowledging.
fn handle_append(
    shared: &Shared,
    req: pb::AppendRequest,
) -> Result<(crate::msg::AppendResponse, Option<Lsn>), Status> {
    shared.check_cluster(&req.cluster_id)?;
    let req: AppendRequest = req.try_into()?;
    if !req.data.is_empty() && !shared.inline_sync {
        // Wake the flusher now, so that its wake-up overlaps the write (it
        // takes longer). A hint only: if the flusher looks before the write
        // is done it finds nothing to sync, and the call after the write
        // wakes it again.
        shared.want_sync();
    }
    let mut r = shared.replica.lock();
    let before = (r.commit(), r.end());
    let resp = r.append(&req)?;
    let needs_sync = r.synced() < r.end();
    let end = r.end();
    let changed = r.commit() != before.0;
    let behind = r.is_behind();
    let cut = end < before.1;
    drop(r);
    // The flusher first: its fsync is the long pole.
    let wait = resp.outcome == AppendOutcome::Accepted && needs_sync;
    if wait && !shared.inline_sync {
        shared.want_sync();
    }
    if changed {
        shared.notify_changed();
    }
    if behind {
        shared.behind.notify_one();
    }
    if cut {
        shared.notify_acks();
    }
    Ok((resp, wait.then_some(end)))
}

/// Streams committed log to a consumer from `from`.
async fn read_stream(
    shared: Arc<Shared>,
    mut from: Lsn,
    tx: mpsc::Sender<Result<pb::ReadResponse, Status>>,
) {
    let mut changed = shared.changed.subscribe();
    loop {
        let chunk = shared.replica.lock().read_committed(from, READ_CHUNK_BYTES);
        match chunk {
            Ok(chunk) if !chunk.data.is_empty() => {
                from = chunk.start.advance(chunk.data.len() as u64);
                let msg = pb::ReadResponse {
                    start_lsn: chunk.start.0,
                    data: chunk.data,
                    commit_lsn: chunk.commit_lsn.0,
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
            Ok(_) => {
                tokio::select! {
                    _ = shared.stop.cancelled() => return,
                    res = changed.changed() => if res.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        }
    }
}
