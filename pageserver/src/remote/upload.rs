//! The uploader: keeps the bucket in step with the stored manifest.
//!
//! One task follows the manifests the timeline stores (a watch channel: a
//! manifest superseded before the uploader got to it is skipped). For the
//! newest one it
//! 1. uploads every layer file it names that the bucket lacks, at most
//!    `concurrency` at a time, under this page server's generation;
//! 2. publishes an index naming them (after checking that no newer
//!    generation has started: [`Bucket::put_index`]);
//! 3. only then moves the uploaded LSN (the safe LSN the log service is
//!    told: the bucket alone, with the log above it, rebuilds everything);
//! 4. checks the generation again and deletes the objects the published
//!    index no longer names.
//!
//! A layer file that disappears before it is read was dropped by a newer
//! manifest (compaction, GC): the round is abandoned for that one. A failed
//! upload is retried; a newer generation ([`PageServerError::Fenced`])
//! stops the uploader for good, and the uploaded LSN stays where it was.
//! Objects a fenced or crashed page server uploaded and no index names are
//! left behind (a later sweep could remove them; none does yet).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_wal::Lsn;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{Bucket, RemoteIndex, RemoteLayer};
use crate::error::{PageServerError, Result};
use crate::manifest::Manifest;

/// Pause before a failed round is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// The uploader's figures, shared with the status API.
pub struct UploadState {
    pub generation: u32,
    uploaded_lsn: watch::Sender<Lsn>,
    pending_layers: AtomicU64,
    pending_bytes: AtomicU64,
    bucket_bytes: AtomicU64,
    layers_uploaded: AtomicU64,
    bytes_uploaded: AtomicU64,
    objects_deleted: AtomicU64,
    orphans_deleted: AtomicU64,
    old_generation_objects_deleted: AtomicU64,
    fenced: AtomicBool,
}

/// One reading of [`UploadState`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadFigures {
    pub generation: u32,
    pub uploaded_lsn: u64,
    pub pending_layers: u64,
    pub pending_bytes: u64,
    pub bucket_bytes: u64,
    pub layers_uploaded: u64,
    pub bytes_uploaded: u64,
    pub objects_deleted: u64,
    /// Objects of older generations that no index of ours named, swept
    /// (and a local bucket's staged names of older generations).
    pub orphans_deleted: u64,
    /// Generation markers and indexes of older generations, swept.
    pub old_generation_objects_deleted: u64,
    pub fenced: bool,
}

impl UploadState {
    pub fn new(generation: u32, uploaded_lsn: Lsn, bucket_bytes: u64) -> UploadState {
        UploadState {
            generation,
            uploaded_lsn: watch::Sender::new(uploaded_lsn),
            pending_layers: AtomicU64::new(0),
            pending_bytes: AtomicU64::new(0),
            bucket_bytes: AtomicU64::new(bucket_bytes),
            layers_uploaded: AtomicU64::new(0),
            bytes_uploaded: AtomicU64::new(0),
            objects_deleted: AtomicU64::new(0),
            orphans_deleted: AtomicU64::new(0),
            old_generation_objects_deleted: AtomicU64::new(0),
            fenced: AtomicBool::new(false),
        }
    }

    /// Every record at or below it is in a layer the published index names.
    pub fn uploaded_lsn(&self) -> Lsn {
        *self.uploaded_lsn.borrow()
    }

    pub fn subscribe_uploaded(&self) -> watch::Receiver<Lsn> {
        self.uploaded_lsn.subscribe()
    }

    pub fn figures(&self) -> UploadFigures {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UploadFigures {
            generation: self.generation,
            uploaded_lsn: self.uploaded_lsn().0,
            pending_layers: get(&self.pending_layers),
            pending_bytes: get(&self.pending_bytes),
            bucket_bytes: get(&self.bucket_bytes),
            layers_uploaded: get(&self.layers_uploaded),
            bytes_uploaded: get(&self.bytes_uploaded),
            objects_deleted: get(&self.objects_deleted),
            orphans_deleted: get(&self.orphans_deleted),
            old_generation_objects_deleted: get(&self.old_generation_objects_deleted),
            fenced: self.fenced.load(Ordering::Relaxed),
        }
    }
}

/// What the uploader needs; [`Uploader::run`] consumes it.
pub struct Uploader {
    pub bucket: Arc<Bucket>,
    /// Told the layers of each index published (layers may be evicted
    /// from the local disk once one names them).
    pub tiering: Option<Arc<crate::timeline::Tiering>>,
    /// The local directory the layer files are read from.
    pub dir: PathBuf,
    pub state: Arc<UploadState>,
    /// Objects in the bucket this page server knows of, by file name.
    pub known: HashMap<String, RemoteLayer>,
    pub concurrency: usize,
    /// Orphans (objects of older generations no index of ours names) are
    /// deleted once older than this, swept after the first publish and
    /// then at most once per this period.
    pub orphan_grace: Duration,
}

/// How one round ended.
enum Round {
    Published,
    /// A layer file went away: a newer manifest replaced this one.
    Superseded,
}

impl Uploader {
    /// Follows `manifests` until `stop`; then uploads the last one stored
    /// (the clean stop's) and returns.
    pub async fn run(
        mut self,
        mut manifests: watch::Receiver<Arc<Manifest>>,
        stop: CancellationToken,
    ) -> Result<()> {
        let mut published: Option<Arc<Manifest>> = None;
        let mut last_sweep: Option<Instant> = None;
        loop {
            let m = manifests.borrow_and_update().clone();
            if !published.as_ref().is_some_and(|p| Arc::ptr_eq(p, &m)) {
                match self.round(&m).await {
                    Ok(Round::Published) => {
                        if last_sweep.is_none_or(|t| t.elapsed() >= self.orphan_grace) {
                            last_sweep = Some(Instant::now());
                            if let Err(e) = self.sweep_orphans(&m).await {
                                warn!(error = %e, "cannot sweep orphan objects; trying later");
                            }
                            match self
                                .bucket
                                .delete_stale_staged(self.state.generation, self.orphan_grace)
                                .await
                            {
                                Ok(n) => {
                                    self.state.orphans_deleted.fetch_add(n, Ordering::Relaxed);
                                }
                                Err(e) => {
                                    warn!(error = %e, "cannot sweep staged objects; trying later")
                                }
                            }
                            match self
                                .bucket
                                .delete_older_generations(self.state.generation)
                                .await
                            {
                                Ok(n) => {
                                    self.state
                                        .old_generation_objects_deleted
                                        .fetch_add(n, Ordering::Relaxed);
                                }
                                Err(e) => {
                                    warn!(error = %e, "cannot sweep older generations; trying later")
                                }
                            }
                        }
                        published = Some(m);
                    }
                    Ok(Round::Superseded) if manifests.has_changed().unwrap_or(false) => continue,
                    Ok(Round::Superseded) => {
                        return Err(PageServerError::Unavailable(
                            "a layer file the stored manifest names is missing".into(),
                        ));
                    }
                    Err(e @ PageServerError::Fenced { .. }) => {
                        error!(error = %e, "uploads stop");
                        self.state.fenced.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                    Err(e) if stop.is_cancelled() => {
                        error!(error = %e, "cannot upload the last manifest before stopping");
                        return Err(e);
                    }
                    Err(e) => {
                        warn!(error = %e, "upload round failed; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep(RETRY_PAUSE) => {}
                        }
                        continue;
                    }
                }
            }
            if stop.is_cancelled() {
                return Ok(());
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                changed = manifests.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Uploads what `m` names, publishes it, deletes what it dropped.
    async fn round(&mut self, m: &Manifest) -> Result<Round> {
        let missing: Vec<(String, u64)> = m
            .layers
            .iter()
            .filter(|l| !self.known.contains_key(&l.file_name))
            .map(|l| (l.file_name.clone(), l.file_bytes))
            .collect();
        let pending: u64 = missing.iter().map(|(_, bytes)| bytes).sum();
        self.state
            .pending_layers
            .store(missing.len() as u64, Ordering::Relaxed);
        self.state.pending_bytes.store(pending, Ordering::Relaxed);
        let uploads = futures::stream::iter(missing)
            .map(|(name, _)| self.upload_one(name))
            .buffer_unordered(self.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        let mut superseded = false;
        for up in uploads {
            match up? {
                Some((name, layer)) => {
                    self.known.insert(name, layer);
                }
                None => superseded = true,
            }
        }
        if superseded {
            return Ok(Round::Superseded);
        }
        let index = RemoteIndex {
            generation: self.state.generation,
            manifest: m.clone(),
            layers: m.layers.iter().map(|l| self.known[&l.file_name]).collect(),
        };
        self.bucket.put_index(&index).await?;
        if let Some(t) = &self.tiering {
            t.published(index.by_name());
        }
        let bytes = index.layers.iter().map(|l| l.bytes).sum();
        self.state.bucket_bytes.store(bytes, Ordering::Relaxed);
        self.state.pending_layers.store(0, Ordering::Relaxed);
        self.state.pending_bytes.store(0, Ordering::Relaxed);
        self.state
            .uploaded_lsn
            .send_if_modified(|lsn| std::mem::replace(lsn, m.durable_lsn) != m.durable_lsn);
        self.delete_unnamed(m).await?;
        Ok(Round::Published)
    }

    /// Uploads one layer file; None if it is gone (a newer manifest).
    async fn upload_one(&self, name: String) -> Result<Option<(String, RemoteLayer)>> {
        let path = self.dir.join(&name);
        let generation = self.state.generation;
        let Some(layer) = self.bucket.put_layer_file(&name, generation, &path).await? else {
            return Ok(None);
        };
        self.state.layers_uploaded.fetch_add(1, Ordering::Relaxed);
        self.state
            .bytes_uploaded
            .fetch_add(layer.bytes, Ordering::Relaxed);
        Ok(Some((name, layer)))
    }

    /// Deletes orphans: layer objects of generations older than ours that
    /// the index just published (`m`) does not name and that are older
    /// than the grace period. They were uploaded by a page server that
    /// crashed or was fenced before an index named them, or named by an
    /// index no page server will read again (a newer generation's index
    /// is the bucket's truth, and ours names everything we inherited).
    /// Objects of our own generation are left to [`Self::delete_unnamed`]
    /// (an upload may be in flight), and newer ones are never touched.
    /// The generation check comes last, as for any deletion.
    async fn sweep_orphans(&mut self, m: &Manifest) -> Result<()> {
        let ours = self.state.generation;
        let named: std::collections::HashSet<(&str, u32)> = m
            .layers
            .iter()
            .filter_map(|l| {
                let known = self.known.get(&l.file_name)?;
                Some((l.file_name.as_str(), known.generation))
            })
            .collect();
        let orphans: Vec<(String, u32)> = self
            .bucket
            .list_layers()
            .await?
            .into_iter()
            .filter(|(name, generation, age)| {
                *generation < ours
                    && *age >= self.orphan_grace
                    && !named.contains(&(name.as_str(), *generation))
            })
            .map(|(name, generation, _)| (name, generation))
            .collect();
        if orphans.is_empty() {
            return Ok(());
        }
        self.bucket.check_generation(ours).await?;
        let mut deleted = 0;
        for (name, generation) in &orphans {
            match self.bucket.delete_layer(name, *generation).await {
                Ok(()) => deleted += 1,
                Err(e) => warn!(object = %name, generation, error = %e, "cannot delete an orphan"),
            }
        }
        self.state
            .orphans_deleted
            .fetch_add(deleted, Ordering::Relaxed);
        info!(deleted, "deleted orphan layer objects of older generations");
        Ok(())
    }

    /// Deletes the objects the just-published index `m` no longer names.
    /// One generation check before them is enough: a page server started
    /// after it reads an index at least as new as ours, which names none.
    async fn delete_unnamed(&mut self, m: &Manifest) -> Result<()> {
        let named: std::collections::HashSet<&str> =
            m.layers.iter().map(|l| l.file_name.as_str()).collect();
        let stale: Vec<(String, RemoteLayer)> = self
            .known
            .iter()
            .filter(|(name, _)| !named.contains(name.as_str()))
            .map(|(n, l)| (n.clone(), *l))
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        self.bucket.check_generation(self.state.generation).await?;
        let bucket = &self.bucket;
        let count = stale.len() as u64;
        let deleted = futures::stream::iter(stale)
            .map(|(name, layer)| async move {
                let result = bucket.delete_layer(&name, layer.generation).await;
                (name, result)
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        for (name, result) in deleted {
            // A failed delete is forgotten, not retried: the object is only
            // garbage (no index names it).
            if let Err(e) = result {
                warn!(object = %name, error = %e, "cannot delete an old layer object");
            }
            self.known.remove(&name);
        }
        self.state
            .objects_deleted
            .fetch_add(count, Ordering::Relaxed);
        info!(deleted = count, "deleted layer objects no index names");
        Ok(())
    }
}
