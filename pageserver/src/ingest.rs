//! Ingest: follows the committed log into the timeline, freezes and flushes
//! layers, and reports the durable LSN to the log service as this
//! consumer's safe LSN.
//!
//! Four tasks, all owned by [`Ingest::spawn`]'s caller through one
//! cancellation token and their join handles:
//! - the **reader** follows the log from the ingested LSN with a
//!   `LogReader` (which fails over between replicas) and hands chunks over
//!   a bounded channel;
//! - the **applier** adds each chunk to the timeline (a large one on the
//!   blocking pool, off the threads that answer GetPage), freezes the open
//!   layer by size and by age, and stops taking chunks while too many
//!   frozen layers wait for the flusher (backpressure reaches the reader
//!   through the channel);
//! - the **flusher** writes frozen layers to files on a low-priority thread
//!   (`crate::background`);
//! - the **reporter** tells the log service the safe LSN whenever it moves,
//!   and again every few seconds (a restarted replica forgets): the LSN the
//!   uploaded index covers when there is a bucket, else the durable LSN;
//! - the **compactor** runs compaction and GC steps on the blocking pool,
//!   one at a time, until none is due, then waits for a flush (or a
//!   second: the GC horizon also moves with time and snapshot reports).
//!
//! Shutdown: the token stops the reader and applier at once; the applier
//! then freezes what it holds, and the flusher writes every frozen layer
//! before it exits, so a clean stop leaves nothing to re-ingest. The
//! compactor stops between steps (a step in flight finishes: it is bounded,
//! and stopping halfway would be safe but wasteful).

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_logservice::client::LogReader;
use strata_logservice::msg::ReadChunk;
use strata_wal::Lsn;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::error::{PageServerError, Result};
use crate::timeline::Timeline;

/// How ingest reaches the log and when it freezes.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    pub cluster_id: String,
    pub consumer_id: String,
    pub log_endpoints: Vec<String>,
    /// The open layer is frozen once it is this old (and not empty).
    pub freeze_interval: Duration,
    /// Ingest pauses while this many layers are frozen and not yet written.
    pub max_frozen_layers: usize,
    pub safe_lsn_report_interval: Duration,
}

/// Chunks in flight between the reader and the applier.
const CHUNK_QUEUE: usize = 16;
/// Pause before a reader retries after every replica failed.
const RETRY_PAUSE: Duration = Duration::from_millis(300);

/// The running ingest tasks.
pub struct Ingest {
    pub handles: Vec<JoinHandle<Result<()>>>,
    /// Cancelled when ingest stops on its own, on an error it cannot get
    /// past: the server then stops too, rather than serve a page server
    /// that no longer follows the log.
    pub failed: CancellationToken,
}

impl Ingest {
    /// Starts the tasks; they stop when `stop` is cancelled. `safe_lsn` is
    /// what the log service is told it may trim below.
    pub fn spawn(
        timeline: Arc<Timeline>,
        config: IngestConfig,
        safe_lsn: watch::Receiver<Lsn>,
        stop: CancellationToken,
    ) -> Ingest {
        let (tx, rx) = mpsc::channel(CHUNK_QUEUE);
        let flush_wanted = Arc::new(Notify::new());
        let applier_done = CancellationToken::new();
        let failed = CancellationToken::new();
        let handles = vec![
            tokio::spawn(read_log(timeline.clone(), config.clone(), tx, stop.clone())),
            tokio::spawn(apply_chunks(
                timeline.clone(),
                config.clone(),
                rx,
                flush_wanted.clone(),
                stop.clone(),
                applier_done.clone(),
                failed.clone(),
            )),
            tokio::spawn(flush_layers(timeline.clone(), flush_wanted, applier_done)),
            tokio::spawn(report_safe_lsn(
                timeline.clone(),
                config,
                safe_lsn,
                stop.clone(),
            )),
            tokio::spawn(compact(timeline, stop)),
        ];
        Ingest { handles, failed }
    }

    /// Waits for every task; the first error, if any.
    pub async fn join(self) -> Result<()> {
        let mut first = Ok(());
        for handle in self.handles {
            let result = handle.await.unwrap_or_else(|e| {
                Err(PageServerError::Unavailable(format!(
                    "ingest task failed: {e}"
                )))
            });
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

async fn read_log(
    timeline: Arc<Timeline>,
    config: IngestConfig,
    tx: mpsc::Sender<ReadChunk>,
    stop: CancellationToken,
) -> Result<()> {
    let from = timeline.ingested();
    info!(%from, endpoints = ?config.log_endpoints, "following the committed log");
    let mut reader = LogReader::new(
        &config.cluster_id,
        &config.consumer_id,
        config.log_endpoints,
        from,
    );
    loop {
        let chunk = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            chunk = reader.next_chunk() => chunk,
        };
        match chunk {
            Ok(chunk) => {
                if tx.send(chunk).await.is_err() {
                    return Ok(());
                }
            }
            Err(e) => {
                warn!(at = %reader.position(), error = %e, "no log replica can serve ingest; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(RETRY_PAUSE) => {}
                }
            }
        }
    }
}

async fn apply_chunks(
    timeline: Arc<Timeline>,
    config: IngestConfig,
    mut rx: mpsc::Receiver<ReadChunk>,
    flush_wanted: Arc<Notify>,
    stop: CancellationToken,
    done: CancellationToken,
    failed: CancellationToken,
) -> Result<()> {
    let _done = done.drop_guard();
    let layer_size = timeline.config().layer_size_bytes;
    let mut opened = Instant::now();
    let mut tick = tokio::time::interval(config.freeze_interval.min(Duration::from_secs(1)));
    let result = loop {
        while timeline.frozen_count() >= config.max_frozen_layers && !stop.is_cancelled() {
            flush_wanted.notify_one();
            timeline.wait_flushed(Duration::from_millis(100)).await;
        }
        tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            chunk = rx.recv() => {
                let Some(chunk) = chunk else { break Ok(()) };
                let at = chunk.start;
                if let Err(e) = ingest_chunk(&timeline, chunk).await {
                    error!(%at, error = %e, "cannot ingest the log; ingest stops");
                    failed.cancel();
                    break Err(e);
                }
                if timeline.open_layer_bytes() >= layer_size {
                    freeze(&timeline, &flush_wanted, &mut opened);
                }
            }
            _ = tick.tick() => {
                if opened.elapsed() >= config.freeze_interval {
                    freeze(&timeline, &flush_wanted, &mut opened);
                }
            }
        }
    };
    freeze(&timeline, &flush_wanted, &mut opened);
    result
}

/// Chunks at least this large are ingested on the blocking pool: parsing
/// them, putting them in the open layer and applying them to the newest
/// pages takes long enough (about a millisecond for 64 KiB) to hold up
/// the GetPage requests queued on the same async thread.
const BLOCKING_CHUNK_BYTES: usize = 16 << 10;

async fn ingest_chunk(timeline: &Arc<Timeline>, chunk: ReadChunk) -> Result<()> {
    if chunk.data.len() < BLOCKING_CHUNK_BYTES {
        return timeline.ingest_chunk(chunk.start, &chunk.data, chunk.commit_lsn);
    }
    let tl = timeline.clone();
    tokio::task::spawn_blocking(move || tl.ingest_chunk(chunk.start, &chunk.data, chunk.commit_lsn))
        .await
        .map_err(|e| PageServerError::Unavailable(format!("ingesting a chunk failed: {e}")))?
}

fn freeze(timeline: &Timeline, flush_wanted: &Notify, opened: &mut Instant) {
    if timeline.freeze() {
        flush_wanted.notify_one();
    }
    *opened = Instant::now();
}

/// Writes frozen layers until the applier is done and none is left.
async fn flush_layers(
    timeline: Arc<Timeline>,
    flush_wanted: Arc<Notify>,
    applier_done: CancellationToken,
) -> Result<()> {
    loop {
        while timeline.frozen_count() > 0 {
            match timeline.flush_frozen_resident().await {
                Ok(_) => {}
                Err(e) if applier_done.is_cancelled() => {
                    // Stopping: no one will free the disk for us.
                    error!(error = %e, "cannot write a layer file; stopping without it");
                    return Err(e);
                }
                Err(e) => {
                    error!(error = %e, "cannot write a layer file; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
        if applier_done.is_cancelled() {
            return Ok(());
        }
        tokio::select! {
            _ = flush_wanted.notified() => {}
            _ = applier_done.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn report_safe_lsn(
    timeline: Arc<Timeline>,
    config: IngestConfig,
    mut safe_lsn: watch::Receiver<Lsn>,
    stop: CancellationToken,
) -> Result<()> {
    let mut reporter = LogReader::new(
        &config.cluster_id,
        &config.consumer_id,
        config.log_endpoints.clone(),
        timeline.durable(),
    );
    loop {
        let safe = *safe_lsn.borrow_and_update();
        if let Err(e) = reporter.report_safe_lsn(safe).await {
            warn!(%safe, error = %e, "cannot report the safe LSN to the log service");
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            changed = safe_lsn.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep(config.safe_lsn_report_interval) => {}
        }
    }
}

/// Pause between compaction steps that failed.
const COMPACTION_RETRY: Duration = Duration::from_secs(5);

async fn compact(timeline: Arc<Timeline>, stop: CancellationToken) -> Result<()> {
    loop {
        let pause = match timeline.compact_step_resident().await {
            Ok(crate::timeline::Step::Idle) => Duration::from_secs(1),
            Ok(_) => Duration::ZERO,
            Err(e) => {
                error!(error = %e, "compaction step failed; retrying later");
                COMPACTION_RETRY
            }
        };
        if stop.is_cancelled() {
            return Ok(());
        }
        if !pause.is_zero() {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = timeline.wait_flushed(pause) => {}
            }
        }
    }
}
