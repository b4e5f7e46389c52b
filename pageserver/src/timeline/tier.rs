//! Tiering: layer files evicted from the local disk under a byte budget,
//! and downloaded again from the bucket when a read or a compaction step
//! needs them.
//!
//! [`Tiering`] holds the bucket, the budget and the *catalog*: the layers
//! the newest published index names (file name → object generation, size,
//! crc), replaced by the uploader each time it publishes one. Only layers
//! in the catalog are evicted, so the local file is never the only copy:
//! its object exists, an index names it, and a restart finds it through
//! that index (a layer stays named by every later index for as long as any
//! manifest names it, because a file name is never reused).
//!
//! **Eviction** ([`Timeline::evict_to_budget`]): while the resident layer
//! files of the current map exceed the budget, the least recently read one
//! that is in the catalog and that no reader holds a handle to is unlinked
//! and its slot emptied (see [`LayerFile`]). Layers that are in use or not
//! yet uploaded are skipped, so the budget is a target the disk may pass
//! for a while, never a reason to lose data or stall a read.
//!
//! **Download** ([`Timeline::download_layer`]): one at a time per layer
//! (its download mutex; later askers find the file in place when they get
//! the lock), checked against the catalog's size and crc before a byte is
//! written, written to `NAME.download`, fsynced, renamed, opened and checked
//! against the manifest's description, then put in the slot. The returned
//! handle pins it: callers keep it until they are done, so a retry after a
//! download never finds the same layer evicted again.
//!
//! Reads and compaction steps are synchronous code that meets an evicted
//! layer as [`PageServerError::LayerEvicted`]; the async caller downloads
//! it, keeps the handle and runs the step again on a fresh map
//! ([`Timeline::compact_step_resident`], `PageService::get_page`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::{LayerFile, Step, Timeline};
use crate::error::{PageServerError, Result};
use crate::layer::delta_file::DeltaFile;
use crate::remote::{Bucket, RemoteLayer};

/// The bucket, the disk budget and what the published index names.
pub struct Tiering {
    pub bucket: Arc<Bucket>,
    /// Resident layer files are evicted while they pass this many bytes.
    pub disk_budget_bytes: u64,
    catalog: RwLock<Arc<HashMap<String, RemoteLayer>>>,
    /// Woken when eviction may be due (a publish, a download).
    pub wake: Notify,
    pub stats: TierStats,
}

/// Tiering's counters.
#[derive(Default)]
pub struct TierStats {
    pub evictions: AtomicU64,
    pub downloads: AtomicU64,
    pub download_bytes: AtomicU64,
    /// Reads (GetPage) that found every layer they needed on the disk.
    pub local_reads: AtomicU64,
    /// Reads that had to wait for at least one download.
    pub downloading_reads: AtomicU64,
}

impl std::fmt::Debug for Tiering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tiering")
            .field("bucket", &self.bucket)
            .field("disk_budget_bytes", &self.disk_budget_bytes)
            .finish_non_exhaustive()
    }
}

impl Tiering {
    /// `catalog`: the layers of the newest index (empty if none).
    pub fn new(
        bucket: Arc<Bucket>,
        disk_budget_bytes: u64,
        catalog: HashMap<String, RemoteLayer>,
    ) -> Tiering {
        Tiering {
            bucket,
            disk_budget_bytes,
            catalog: RwLock::new(Arc::new(catalog)),
            wake: Notify::new(),
            stats: TierStats::default(),
        }
    }

    /// Replaces the catalog with the layers of an index just published.
    pub fn published(&self, catalog: HashMap<String, RemoteLayer>) {
        *self.catalog.write() = Arc::new(catalog);
        self.wake.notify_one();
    }

    pub fn catalog(&self) -> Arc<HashMap<String, RemoteLayer>> {
        self.catalog.read().clone()
    }

    /// Reads that needed no download over all reads (1 before any read).
    pub fn hit_rate(&self) -> f64 {
        let local = self.stats.local_reads.load(Ordering::Relaxed);
        let downloading = self.stats.downloading_reads.load(Ordering::Relaxed);
        match local + downloading {
            0 => 1.0,
            all => local as f64 / all as f64,
        }
    }
}

/// How often a step is tried again after downloads, at most (beyond one
/// try per layer of the map, for compaction): each try downloads (and
/// pins) at least one more layer, so this only bounds a map that keeps
/// changing under it.
pub const MAX_DOWNLOAD_RETRIES: usize = 64;

impl Timeline {
    pub fn tiering(&self) -> Option<&Arc<Tiering>> {
        self.config.tiering.as_ref()
    }

    /// Evicts least recently read, uploaded, unused layer files until the
    /// resident ones fit the budget; returns how many it evicted.
    /// Blocking (unlinks files): call it off the async threads.
    pub fn evict_to_budget(&self) -> usize {
        let Some(tiering) = self.tiering() else {
            return 0;
        };
        let map = self.snapshot();
        let mut local = map.local_bytes();
        if local <= tiering.disk_budget_bytes {
            return 0;
        }
        let catalog = tiering.catalog();
        let mut candidates: Vec<&Arc<LayerFile>> = map
            .files
            .iter()
            .filter(|f| f.is_resident() && catalog.contains_key(&f.desc.file_name))
            .collect();
        candidates.sort_by_key(|f| f.last_access_ms());
        let mut evicted = 0;
        for f in candidates {
            if local <= tiering.disk_budget_bytes {
                break;
            }
            let unlink = |file: &DeltaFile| {
                std::fs::remove_file(file.path()).map_err(PageServerError::io(format!(
                    "evicting {}",
                    file.path().display()
                )))
            };
            if f.evict_if_unused(unlink) {
                local -= f.desc.file_bytes;
                evicted += 1;
                debug!(file = %f.desc.file_name, "evicted a layer file");
            }
        }
        tiering
            .stats
            .evictions
            .fetch_add(evicted as u64, Ordering::Relaxed);
        evicted
    }

    /// The file of `layer`, downloaded from the bucket if it is not on the
    /// local disk; concurrent callers share one download. Keep the handle
    /// while the file is needed: it keeps the layer from being evicted.
    pub async fn download_layer(&self, layer: &Arc<LayerFile>) -> Result<Arc<DeltaFile>> {
        let _one = layer.download.lock().await;
        if let Ok(file) = layer.file() {
            return Ok(file);
        }
        let tiering = self
            .tiering()
            .ok_or_else(|| PageServerError::LayerEvicted {
                file: layer.desc.file_name.clone(),
            })?;
        let name = &layer.desc.file_name;
        let Some(remote) = tiering.catalog().get(name).copied() else {
            return Err(PageServerError::Unavailable(format!(
                "layer {name} is neither on the local disk nor named by the published index"
            )));
        };
        tiering
            .bucket
            .download_layer_to(name, remote, &self.config.dir.join(name))
            .await?;
        let (dir, cluster, desc) = (
            self.config.dir.clone(),
            self.config.cluster_id.clone(),
            layer.desc.clone(),
        );
        let file = tokio::task::spawn_blocking(move || super::open_checked(&dir, &cluster, &desc))
            .await
            .map_err(|e| PageServerError::Unavailable(format!("a download task failed: {e}")))??;
        let file = layer.install(file);
        tiering.stats.downloads.fetch_add(1, Ordering::Relaxed);
        tiering
            .stats
            .download_bytes
            .fetch_add(layer.desc.file_bytes, Ordering::Relaxed);
        tiering.wake.notify_one();
        info!(file = %name, bytes = layer.desc.file_bytes, "downloaded an evicted layer");
        Ok(file)
    }

    /// Downloads the layer `file` names, found in `map` or the current
    /// map; the handle pins it. An error if no map has it any more.
    pub async fn download_named(
        &self,
        map: &super::LayerMap,
        file: &str,
    ) -> Result<Arc<DeltaFile>> {
        let layer = match map.find(file) {
            Some(l) => l.clone(),
            None => self.snapshot().find(file).cloned().ok_or_else(|| {
                PageServerError::Unavailable(format!("layer {file} is no longer live"))
            })?,
        };
        self.download_layer(&layer).await
    }

    /// Writes the oldest frozen layer ([`Timeline::flush_frozen`], on the
    /// blocking pool), downloading first the evicted layers its images
    /// need: a try that meets one writes nothing and names them all; they
    /// are downloaded (single-flight, as for reads; pinned until the flush
    /// is done, then left to the evictor and the disk budget) and the
    /// flush tried again with the images already built. A layer that
    /// cannot be downloaded (a compaction dropped it, the bucket fails)
    /// only costs its pages' images, as without tiering: the last try
    /// skips them.
    pub async fn flush_frozen_resident(self: &Arc<Self>) -> Result<bool> {
        let mut carry = super::images::FlushImages::default();
        let mut pinned = Vec::new();
        let mut tries = 0;
        loop {
            let download = self.tiering().is_some() && tries < MAX_DOWNLOAD_RETRIES;
            tries += 1;
            let tl = self.clone();
            // A low-priority thread, as compaction (crate::background).
            let (flushed, back) = crate::background::run("flush", move || {
                let flushed = tl.flush_frozen_with(&mut carry, download);
                (flushed, carry)
            })
            .await?;
            carry = back;
            match flushed? {
                super::Flushed::Done(flushed) => return Ok(flushed),
                super::Flushed::NeedLayers(files) => {
                    let map = self.snapshot();
                    for file in files {
                        match self.download_named(&map, &file).await {
                            Ok(handle) => pinned.push(handle),
                            Err(e) => {
                                warn!(%file, error = %e, "a flush cannot download a layer its images need")
                            }
                        }
                    }
                }
            }
        }
    }

    /// One compaction step ([`Timeline::compact_step`], on a low-priority
    /// thread, see [`crate::background`]), downloading the evicted layers
    /// it needs first.
    pub async fn compact_step_resident(self: &Arc<Self>) -> Result<Step> {
        let mut pinned = Vec::new();
        // A step may need every layer of the map (tiny layers, a disk
        // budget of nothing): each try pins one more, so as many tries as
        // there are layers, and the usual allowance for a map that changes
        // under it.
        let tries = self.snapshot().files.len() + MAX_DOWNLOAD_RETRIES;
        for _ in 0..tries {
            let tl = self.clone();
            let step = crate::background::run("compaction", move || tl.compact_step()).await?;
            match step {
                Err(PageServerError::LayerEvicted { file }) => {
                    pinned.push(self.download_named(&self.snapshot(), &file).await?);
                }
                other => return other,
            }
        }
        Err(PageServerError::Unavailable(
            "compaction kept meeting evicted layers".into(),
        ))
    }
}

/// Whether `path` is a download left half-written by a crash.
pub(crate) fn is_partial_download(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "download")
}
