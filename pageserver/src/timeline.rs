//! The timeline: every page at every LSN the page server holds.
//!
//! It owns the layers and their life cycle:
//! 1. ingest ([`Timeline::ingest_chunk`]) adds each chunk of committed log
//!    to the open in-memory layer and only then advances the ingested LSN,
//!    so a reader that waited for an LSN finds every record at or below it;
//! 2. [`Timeline::freeze`] (called by the ingest task only, so nothing is
//!    ever added to a layer after it is frozen) replaces the open layer
//!    with an empty one starting at its end;
//! 3. [`Timeline::flush_frozen`] writes the oldest frozen layer to a delta
//!    file (with images for pages whose chains grew long), fsyncs it and the
//!    directory, stores a manifest naming it with the durable LSN = its end,
//!    and only then publishes a map with the file in place of the frozen
//!    layer.
//!
//! 4. [`Timeline::compact_step`] (in [`compact`] and [`gc`]) merges L0
//!    deltas into L1 runs, writes image layers and deletes layers the GC
//!    horizon no longer needs, each step writing its new files before the
//!    manifest names them and deleting old ones only after it no longer
//!    does.
//!
//! After a crash the manifest names exactly the files that were complete;
//! any other layer file is a leftover of an interrupted flush or compaction
//! and is deleted; ingest resumes at the durable LSN, so no record is lost
//! and none is added twice.

pub mod compact;
pub mod gc;
mod images;
pub mod newest;
pub mod read;
pub mod tier;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use strata_wal::page::Page;
use strata_wal::record::RecordIter;
use strata_wal::{Lsn, PageId, Record, RecordKind};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::durable;
use crate::error::{PageServerError, Result};
use crate::layer::delta_file::{DeltaFile, DeltaFileWriter};
use crate::layer::desc::{KeyRange, LayerDesc, LayerKind, layer_file_name};
use crate::layer::inmem::{ChunkRecords, InMemoryLayer};
use crate::layer::{LsnRange, Value};
use crate::manifest::Manifest;
pub use compact::{CompactionConfig, DEFAULT_CPU_PERCENT, FailPoint, Step};
pub use gc::GcConfig;
pub use newest::{NewestPages, NewestStats};
pub use read::{LayerFile, LayerMap};
pub use tier::Tiering;

/// What a timeline needs to know.
#[derive(Clone, Debug)]
pub struct TimelineConfig {
    pub cluster_id: String,
    /// Where the manifest and the layer files live.
    pub dir: PathBuf,
    /// The open layer is frozen when its records pass this size.
    pub layer_size_bytes: usize,
    /// A page gets an image in the layer file once this many records have
    /// piled up on it since its last image (or `Init`/`FullImage`), so a
    /// rebuild replays at most about this many.
    pub image_after_records: u32,
    pub compaction: CompactionConfig,
    pub gc: GcConfig,
    /// The bucket and the disk budget (None: every layer file stays on the
    /// local disk, and a missing one is an error).
    pub tiering: Option<Arc<Tiering>>,
    /// Bytes of newest page versions kept up to date by ingest
    /// ([`newest`]).
    pub newest_bytes: u64,
}

impl TimelineConfig {
    /// A config with every knob at its default.
    pub fn new(cluster_id: impl Into<String>, dir: impl Into<PathBuf>) -> TimelineConfig {
        TimelineConfig {
            cluster_id: cluster_id.into(),
            dir: dir.into(),
            layer_size_bytes: 64 << 20,
            image_after_records: 32,
            compaction: CompactionConfig::default(),
            gc: GcConfig::default(),
            tiering: None,
            newest_bytes: newest::DEFAULT_NEWEST_BYTES,
        }
    }
}

/// The extension of every layer file (stray files are found by it).
const DELTA_EXT: &str = "delta";

/// Counters for the status API and `/metrics`.
#[derive(Default)]
pub struct TimelineStats {
    /// Bytes of layer files written by flushes.
    pub flush_bytes_written: AtomicU64,
    /// Bytes of layer files written by compaction (L1 deltas and images).
    pub compaction_bytes_written: AtomicU64,
    /// Bytes of WAL taken in (page records or not).
    pub wal_bytes_ingested: AtomicU64,
    pub compactions: AtomicU64,
    pub image_layers_written: AtomicU64,
    pub layers_deleted: AtomicU64,
}

/// How one try of a flush ended.
pub(crate) enum Flushed {
    /// Whether a frozen layer was written.
    Done(bool),
    /// Nothing written: building its images needs these evicted layers.
    NeedLayers(Vec<String>),
}

/// A flush's images: those built (by index in the layer's pages) and the
/// evicted layers the others need.
struct FlushImagesDone {
    built: HashMap<usize, Bytes>,
    evicted: Vec<String>,
}

pub struct Timeline {
    config: TimelineConfig,
    map: RwLock<Arc<LayerMap>>,
    /// Every record at or below it is in a layer of the current map.
    ingested: watch::Sender<Lsn>,
    /// Every record at or below it is in a file the stored manifest names.
    durable: watch::Sender<Lsn>,
    /// The highest commit LSN the log has reported.
    log_commit: AtomicU64,
    records_ingested: AtomicU64,
    /// The stored manifest; held while a flush writes the next one.
    manifest: Mutex<Manifest>,
    /// The stored manifest, for the uploader: sent right after each store.
    stored: watch::Sender<Arc<Manifest>>,
    dropped_spaces: RwLock<BTreeMap<u32, Lsn>>,
    /// Records applied to each page since its last image or start, as far
    /// as this process knows; a page missing here gets an image at its next
    /// flush (after a restart its history is not counted again).
    chain_lens: images::ChainLens,
    /// The newest version of recently read pages, kept up to date by
    /// ingest.
    newest: NewestPages,
    /// Woken when a flush has finished (ingest waits on it when too many
    /// layers are frozen).
    flushed: Notify,
    /// Held by a compaction or GC step: one at a time.
    compacting: Mutex<()>,
    /// Each compute's last reported oldest snapshot.
    snapshots: Mutex<HashMap<String, Lsn>>,
    /// (when, durable LSN) samples: the time side of the history window.
    lsn_times: Mutex<gc::LsnTimes>,
    stats: TimelineStats,
    /// A test's fail point for the next compaction step.
    fail_point: Mutex<Option<FailPoint>>,
    /// Set when a fail point fired: the timeline stands for a crashed
    /// process and refuses to change anything on disk again.
    crashed: AtomicBool,
}

impl Timeline {
    /// Opens the timeline in `config.dir`, creating it if it is new.
    pub fn open(config: TimelineConfig) -> Result<Arc<Timeline>> {
        let dir = &config.dir;
        std::fs::create_dir_all(dir)
            .map_err(PageServerError::io(format!("creating {}", dir.display())))?;
        let manifest = match Manifest::load(dir, &config.cluster_id)? {
            Some(m) => m,
            None => {
                let m = Manifest::new(&config.cluster_id);
                m.store(dir)?;
                info!(dir = %dir.display(), "new page server data directory");
                m
            }
        };
        let catalog = config.tiering.as_ref().map(|t| t.catalog());
        let files = open_layer_files(dir, &config.cluster_id, &manifest, catalog.as_deref())?;
        remove_stray_files(dir, &manifest)?;
        let durable = manifest.durable_lsn;
        info!(durable = %durable, layers = files.len(), "timeline opened");
        let map = LayerMap {
            files,
            frozen: Vec::new(),
            open: Arc::new(InMemoryLayer::new(durable)),
            gc_cutoff: manifest.gc_cutoff,
        };
        Ok(Arc::new(Timeline {
            map: RwLock::new(Arc::new(map)),
            ingested: watch::Sender::new(durable),
            durable: watch::Sender::new(durable),
            log_commit: AtomicU64::new(durable.0),
            records_ingested: AtomicU64::new(0),
            dropped_spaces: RwLock::new(manifest.dropped_spaces.iter().copied().collect()),
            stored: watch::Sender::new(Arc::new(manifest.clone())),
            manifest: Mutex::new(manifest),
            chain_lens: images::ChainLens::default(),
            newest: NewestPages::new(config.newest_bytes, durable),
            flushed: Notify::new(),
            compacting: Mutex::new(()),
            snapshots: Mutex::new(HashMap::new()),
            lsn_times: Mutex::new(gc::LsnTimes::default()),
            stats: TimelineStats::default(),
            fail_point: Mutex::new(None),
            crashed: AtomicBool::new(false),
            config,
        }))
    }

    pub fn config(&self) -> &TimelineConfig {
        &self.config
    }

    /// The current layers.
    pub fn snapshot(&self) -> Arc<LayerMap> {
        self.map.read().clone()
    }

    pub fn ingested(&self) -> Lsn {
        *self.ingested.borrow()
    }

    pub fn durable(&self) -> Lsn {
        *self.durable.borrow()
    }

    pub fn subscribe_durable(&self) -> watch::Receiver<Lsn> {
        self.durable.subscribe()
    }

    /// The stored manifest, and every one stored after it.
    pub fn subscribe_manifest(&self) -> watch::Receiver<Arc<Manifest>> {
        self.stored.subscribe()
    }

    /// Stores `next` as the manifest (the caller holds `current`'s lock)
    /// and tells the uploader.
    fn store_manifest(&self, current: &mut Manifest, next: Manifest) -> Result<()> {
        next.store(&self.config.dir)?;
        self.stored.send_replace(Arc::new(next.clone()));
        *current = next;
        Ok(())
    }

    pub fn log_commit(&self) -> Lsn {
        Lsn(self.log_commit.load(Ordering::Acquire))
    }

    pub fn stats(&self) -> &TimelineStats {
        &self.stats
    }

    /// Reads below this LSN are refused.
    pub fn gc_cutoff(&self) -> Lsn {
        self.map.read().gc_cutoff
    }

    pub fn records_ingested(&self) -> u64 {
        self.records_ingested.load(Ordering::Relaxed)
    }

    /// The LSN at which `space` was dropped, if it was.
    pub fn space_dropped(&self, space: u32) -> Option<Lsn> {
        self.dropped_spaces.read().get(&space).copied()
    }

    /// Waits until ingest has reached `lsn`, for at most `timeout`.
    pub async fn wait_for(&self, lsn: Lsn, timeout: Duration) -> Result<()> {
        let mut rx = self.ingested.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|ingested| *ingested >= lsn)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(PageServerError::Shutdown),
            Err(_) => {
                let waited_ms = timeout.as_millis() as u64;
                let committed = self.log_commit();
                if lsn > committed {
                    Err(PageServerError::LsnNotCommitted {
                        lsn,
                        committed,
                        waited_ms,
                    })
                } else {
                    Err(PageServerError::LsnTimeout {
                        lsn,
                        ingested: self.ingested(),
                        waited_ms,
                    })
                }
            }
        }
    }

    /// Adds one chunk of committed log (whole records, starting exactly at
    /// the ingested LSN) to the open layer. Only the ingest task calls this.
    pub fn ingest_chunk(&self, start: Lsn, data: &Bytes, commit_lsn: Lsn) -> Result<()> {
        let ingested = self.ingested();
        if start != ingested {
            return Err(PageServerError::BadRequest(format!(
                "log chunk starts at {start}, ingest is at {ingested}"
            )));
        }
        let chunk = parse_chunk(start, data)?;
        self.log_commit
            .fetch_max(commit_lsn.0.max(chunk.end.0), Ordering::AcqRel);
        let records = chunk.records.len() as u64;
        if !chunk.dropped_spaces.is_empty() {
            self.dropped_spaces
                .write()
                .extend(chunk.dropped_spaces.iter().copied());
        }
        let end = chunk.end;
        self.stats
            .wal_bytes_ingested
            .fetch_add(end.bytes_since(start), Ordering::Relaxed);
        // Not under the map's lock: a flush publishing a map would wait
        // for the put and hold up every reader's snapshot behind it. Only
        // this (the applier's) task replaces the open layer (`freeze`).
        let open = self.map.read().open.clone();
        open.put(&chunk);
        // Only after the put: see `newest`'s invariant.
        self.newest.apply(&chunk);
        self.records_ingested.fetch_add(records, Ordering::Relaxed);
        self.ingested.send_replace(end);
        Ok(())
    }

    /// The newest version of `page` if its last record is `from`.
    pub fn newest_page(&self, page: PageId, from: Lsn) -> Option<Arc<Page>> {
        self.newest.get(page, from)
    }

    pub fn newest_stats(&self) -> NewestStats {
        self.newest.stats()
    }

    /// Offers a verified version of `page` (labelled by its page LSN) to
    /// the newest-page cache; it goes in only if no later record of the
    /// page has been ingested. True if it went in.
    pub fn offer_newest(&self, page: PageId, image: &Arc<Page>) -> bool {
        let label = image.lsn();
        self.newest.offer(page, image, |applied| {
            // Every record at or below `applied` is in a layer of this map
            // (ingest puts before it applies); those above the oldest
            // in-memory layer's start are only in memory.
            let map = self.snapshot();
            let oldest = map.frozen.first().unwrap_or(&map.open);
            label >= oldest.start()
                && map
                    .frozen
                    .iter()
                    .chain(std::iter::once(&map.open))
                    .all(|mem| mem.next_after(page, label).0.is_none_or(|n| n > applied))
        })
    }

    /// Bytes held by the open layer.
    pub fn open_layer_bytes(&self) -> usize {
        self.map.read().open.bytes()
    }

    pub fn frozen_count(&self) -> usize {
        self.map.read().frozen.len()
    }

    /// Freezes the open layer if it holds anything; true if it did. Only
    /// the task that calls [`Self::ingest_chunk`] may call it (that one
    /// puts into the open layer it read outside the map's lock).
    pub fn freeze(&self) -> bool {
        self.publish_map(|map| {
            let open = map.open.range();
            if open.start == open.end {
                return None;
            }
            let mut next = map.clone();
            next.frozen.push(next.open.clone());
            next.open = Arc::new(InMemoryLayer::new(open.end));
            Some(next)
        })
    }

    /// Replaces the layer map with `change` of it (None: leave it); true
    /// if it did. The new map is built outside the lock, which is held
    /// only to swap it in (and `change` runs again if another map was
    /// published meanwhile): the threads that publish maps (flushes and
    /// compaction run at background priority) must never be preempted
    /// holding a lock every GetPage takes.
    pub(crate) fn publish_map(
        &self,
        mut change: impl FnMut(&LayerMap) -> Option<LayerMap>,
    ) -> bool {
        loop {
            let current = self.snapshot();
            let Some(next) = change(&current) else {
                return false;
            };
            let next = Arc::new(next);
            let mut map = self.map.write();
            if Arc::ptr_eq(&map, &current) {
                let old = std::mem::replace(&mut *map, next);
                drop(map);
                // The old map (and maybe its last layers) goes after the
                // lock.
                drop((old, current));
                return true;
            }
        }
    }

    /// Waits until a flush finishes (or `timeout` passes).
    pub async fn wait_flushed(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.flushed.notified()).await;
    }

    /// Writes the oldest frozen layer to a file and makes it durable; false
    /// if nothing was frozen. Blocking: call it off the async threads. Only
    /// one flush runs at a time (the manifest lock is held throughout).
    pub fn flush_frozen(&self) -> Result<bool> {
        match self.flush_frozen_with(&mut images::FlushImages::default(), false)? {
            Flushed::Done(flushed) => Ok(flushed),
            Flushed::NeedLayers(_) => {
                unreachable!("a flush without downloads never stops for them")
            }
        }
    }

    /// [`Self::flush_frozen`], keeping image work in `carry` between tries;
    /// with `stop_for_downloads`, a flush whose images need evicted layers
    /// writes nothing and names them ([`Flushed::NeedLayers`]) for the
    /// caller to download before the next try (see `tier.rs`).
    pub(crate) fn flush_frozen_with(
        &self,
        carry: &mut images::FlushImages,
        stop_for_downloads: bool,
    ) -> Result<Flushed> {
        let mut manifest = self.manifest.lock();
        self.check_not_crashed()?;
        let Some(layer) = self.map.read().frozen.first().cloned() else {
            return Ok(Flushed::Done(false));
        };
        let range = layer.range();
        let pages = layer.sorted_pages();
        let file = match pages.is_empty() {
            true => None,
            false => {
                let images = self.flush_images(range, &pages, carry);
                if stop_for_downloads && !images.evicted.is_empty() {
                    return Ok(Flushed::NeedLayers(images.evicted));
                }
                Some(self.write_layer_file(range, pages, images.built)?)
            }
        };
        let mut next = manifest.clone();
        if let Some(file) = &file {
            next.layers.push(file.desc.clone());
            self.stats
                .flush_bytes_written
                .fetch_add(file.desc.file_bytes, Ordering::Relaxed);
        }
        next.durable_lsn = range.end;
        next.dropped_spaces.extend(layer.dropped_spaces());
        self.store_manifest(&mut manifest, next)?;
        self.publish_flushed(&layer, file);
        self.durable.send_replace(range.end);
        self.lsn_times
            .lock()
            .record(std::time::Instant::now(), range.end);
        self.flushed.notify_waiters();
        Ok(Flushed::Done(true))
    }

    /// The images due in a frozen layer (`pages`, over `range`): those in
    /// `carry` from an earlier try, and the rest built now.
    fn flush_images(
        &self,
        range: LsnRange,
        pages: &[images::PageRecords],
        carry: &mut images::FlushImages,
    ) -> FlushImagesDone {
        if carry.range != Some(range) {
            *carry = images::FlushImages {
                range: Some(range),
                due: self.chain_lens.due(pages, self.config.image_after_records),
                built: HashMap::new(),
            };
        }
        let todo: Vec<usize> = carry
            .due
            .iter()
            .copied()
            .filter(|i| !carry.built.contains_key(i))
            .collect();
        let mut evicted = std::collections::BTreeSet::new();
        for (i, built) in todo.iter().zip(images::build(
            &self.snapshot(),
            pages,
            &todo,
            &|page, lsn| self.newest.image_at(page, lsn),
        )) {
            match built {
                images::Built::Image(image) => {
                    carry.built.insert(*i, image);
                }
                images::Built::Evicted(file) => {
                    evicted.insert(file);
                }
                images::Built::Failed => {}
            }
        }
        FlushImagesDone {
            built: carry.built.clone(),
            evicted: evicted.into_iter().collect(),
        }
    }

    /// Replaces the flushed frozen layer with its file in the map.
    fn publish_flushed(&self, layer: &Arc<InMemoryLayer>, file: Option<Arc<LayerFile>>) {
        self.publish_map(|map| {
            let mut next = map.clone();
            let first = next.frozen.remove(0);
            debug_assert!(
                Arc::ptr_eq(&first, layer),
                "only the flusher removes frozen layers"
            );
            next.files.extend(file.clone());
            debug_assert!(next.files.is_sorted_by_key(|f| f.desc.order()));
            Some(next)
        });
    }

    fn check_not_crashed(&self) -> Result<()> {
        match self.crashed.load(Ordering::Acquire) {
            true => Err(PageServerError::Unavailable(
                "a fail point stopped this timeline as a crash would".into(),
            )),
            false => Ok(()),
        }
    }

    fn write_layer_file(
        &self,
        range: LsnRange,
        pages: Vec<(PageId, Vec<(Lsn, Bytes)>)>,
        mut images: HashMap<usize, Bytes>,
    ) -> Result<Arc<LayerFile>> {
        let file_name = layer_file_name(LayerKind::L0, range, KeyRange::ALL);
        let path = self.config.dir.join(&file_name);
        if path.exists() {
            // Left by a flush that failed before its manifest was stored.
            std::fs::remove_file(&path)
                .map_err(PageServerError::io(format!("removing {}", path.display())))?;
        }
        let started = std::time::Instant::now();
        for i in images.keys() {
            self.chain_lens.imaged(pages[*i].0);
        }
        let (page_count, image_count) = (pages.len(), images.len());
        let mut writer = DeltaFileWriter::create(&path, &self.config.cluster_id, range)?;
        for (i, (page, records)) in pages.into_iter().enumerate() {
            for (lsn, frame) in &records {
                writer.push(page, *lsn, &Value::Delta(frame.clone()))?;
            }
            if let Some(image) = images.remove(&i) {
                let (lsn, _) = records.last().expect("a page in a layer has records");
                writer.push(page, *lsn, &Value::Image(image))?;
            }
        }
        let file = writer.finish()?;
        durable::sync_dir(&self.config.dir)?;
        info!(
            file = %path.display(), pages = page_count, images = image_count,
            bytes = file.file_bytes(),
            write_ms = started.elapsed().as_millis() as u64,
            "layer file written"
        );
        let desc = LayerDesc {
            file_name,
            kind: LayerKind::L0,
            range,
            keys: KeyRange::ALL,
            file_bytes: file.file_bytes(),
        };
        Ok(Arc::new(LayerFile::resident(desc, file)))
    }
}

/// Splits a chunk of log into the records an in-memory layer keeps.
fn parse_chunk(start: Lsn, data: &Bytes) -> Result<ChunkRecords> {
    let mut out = ChunkRecords {
        end: start,
        ..ChunkRecords::default()
    };
    for rec in RecordIter::new(data, start) {
        let rec = rec?;
        let offset = rec.start.bytes_since(start) as usize;
        if rec.kind.is_page_op() {
            let frame = data.slice(offset..offset + rec.len());
            out.records.push((rec.page, rec.lsn, frame));
        } else if rec.kind == RecordKind::DropSpace
            && let Record::DropSpace { space } = rec.decode()?
        {
            out.dropped_spaces.push((space, rec.lsn));
        }
        out.end = rec.lsn;
    }
    Ok(out)
}

/// Opens the layer files the manifest names; one missing from the disk is
/// evicted if the bucket's published index (`catalog`) names it.
fn open_layer_files(
    dir: &Path,
    cluster_id: &str,
    m: &Manifest,
    catalog: Option<&HashMap<String, crate::remote::RemoteLayer>>,
) -> Result<Vec<Arc<LayerFile>>> {
    let mut files = Vec::with_capacity(m.layers.len());
    for layer in &m.layers {
        let in_bucket = catalog.is_some_and(|c| c.contains_key(&layer.file_name));
        let file = match in_bucket && !dir.join(&layer.file_name).exists() {
            true => LayerFile::evicted(layer.clone()),
            false => LayerFile::resident(layer.clone(), open_checked(dir, cluster_id, layer)?),
        };
        files.push(Arc::new(file));
    }
    Ok(files)
}

/// Opens the file `desc` names and checks it holds what `desc` says: its
/// LSN range, and pages only in its page range.
pub(crate) fn open_checked(dir: &Path, cluster_id: &str, desc: &LayerDesc) -> Result<DeltaFile> {
    let path = dir.join(&desc.file_name);
    let file = DeltaFile::open(&path, cluster_id)?;
    let wrong = |what: String| Err(PageServerError::corrupt(&path, what));
    if file.range() != desc.range {
        return wrong(format!(
            "covers {:?} but the manifest says {:?}",
            file.range(),
            desc.range
        ));
    }
    if let Some((page, _)) = file
        .pages()
        .into_iter()
        .find(|(p, _)| !desc.keys.contains(*p))
    {
        return wrong(format!("holds page {page}, outside its page range"));
    }
    Ok(file)
}

/// Deletes layer files the manifest does not name: leftovers of a flush
/// that a crash interrupted before its manifest was stored.
fn remove_stray_files(dir: &Path, m: &Manifest) -> Result<()> {
    let read = std::fs::read_dir(dir)
        .map_err(PageServerError::io(format!("listing {}", dir.display())))?;
    let mut removed = false;
    for entry in read {
        let entry = entry.map_err(PageServerError::io(format!("listing {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_layer = name.ends_with(&format!(".{DELTA_EXT}"));
        let stray = is_layer && !m.layers.iter().any(|l| l.file_name == name);
        if stray || tier::is_partial_download(&entry.path()) {
            warn!(file = %name, "removing a layer file no manifest names (an interrupted flush)");
            std::fs::remove_file(entry.path())
                .map_err(PageServerError::io(format!("removing {name}")))?;
            removed = true;
        }
    }
    if removed {
        durable::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map published while another change is being built makes that
    /// change run again on the new map: neither edit is lost.
    #[test]
    fn a_map_published_meanwhile_makes_the_change_run_again() {
        let dir = tempfile::tempdir().unwrap();
        let tl = Timeline::open(TimelineConfig::new("publish", dir.path())).unwrap();
        let mut seen = Vec::new();
        let published = tl.publish_map(|map| {
            seen.push(map.gc_cutoff);
            if seen.len() == 1 {
                assert!(tl.publish_map(|m| Some(LayerMap {
                    gc_cutoff: Lsn(5),
                    ..m.clone()
                })));
            }
            Some(LayerMap {
                gc_cutoff: Lsn(map.gc_cutoff.0 + 1),
                ..map.clone()
            })
        });
        assert!(published);
        assert_eq!(
            seen,
            [Lsn(0), Lsn(5)],
            "built twice, the second time on the new map"
        );
        assert_eq!(tl.snapshot().gc_cutoff, Lsn(6));
        assert!(!tl.publish_map(|_| None), "no change, nothing published");
    }
}
