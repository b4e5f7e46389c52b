//! Compaction: one bounded step of background work at a time.
//!
//! A step ([`Timeline::compact_step`]) does the first thing that is due:
//! 1. **L0 → L1**: once `l0_threshold` L0 deltas wait, the oldest (at most
//!    `max_l0_per_step`) are merged, with a k-way merge that holds one block
//!    per input in memory, into one L1 *run*: files over the same LSN range
//!    with disjoint page ranges, cut at about `target_file_bytes` (a page is
//!    never split). The newest L1 run joins the merge when it is smaller
//!    than the L0s (so small runs grow instead of piling up, and a byte is
//!    rewritten only a few times) unless an image layer sits at its end.
//! 2. **Image layers** ([`super::gc`] decides when): every page as of the
//!    end of an L1 run, so GC can drop the deltas under it and a read never
//!    walks many runs.
//! 3. **GC**: layers the horizon no longer needs are dropped.
//!
//! Every step swaps the manifest the same way ([`Timeline::swap_layers`]):
//! new files are written under temporary names, fsynced, renamed to their
//! final names and the directory fsynced; then the manifest naming them (and
//! no longer naming the inputs) is stored; then a new layer map is
//! published (readers holding the old one keep its open files); only then
//! are the inputs unlinked. A crash before the manifest leaves files no
//! manifest names (removed at start); a crash after it leaves old files no
//! manifest names (removed too). Inputs are never changed in place.
//!
//! Steps run on the blocking pool, one at a time (`compacting` lock); a
//! flush may run beside a step: it only appends an L0 at the newest end,
//! and both take the manifest lock to store and publish.
//!
//! **Pacing.** A step that writes files keeps to `cpu_percent` of one CPU
//! ([`Pacer`]): after each few milliseconds of the thread's CPU time it
//! sleeps for the rest of its share. A step at full speed holds a whole
//! CPU for up to a second, and on a small machine a GetPage woken meanwhile
//! waits for a CPU even when compaction runs at the lowest priority (the
//! page server soak, docs/pageserver.md, ninth pass). While L0 deltas pile
//! up (twice `l0_threshold` or more) steps run unpaced, so compaction that
//! falls behind catches up.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use strata_wal::{Lsn, PageId};
use tracing::{info, warn};

use super::{LayerFile, LayerMap, Timeline};
use crate::durable;
use crate::error::{PageServerError, Result};
use crate::layer::delta_file::{DeltaFile, DeltaFileWriter};
use crate::layer::desc::{KeyRange, LayerDesc, LayerKind, layer_file_name, page_key};
use crate::layer::{Entry, LsnRange, Value, entry_key};

/// When and how much compaction does.
#[derive(Clone, Debug)]
pub struct CompactionConfig {
    /// L0 deltas are merged into an L1 run once this many wait.
    pub l0_threshold: usize,
    /// The most L0 deltas one step merges (bounds a step's work).
    pub max_l0_per_step: usize,
    /// L1 and image files are cut at about this size.
    pub target_file_bytes: u64,
    /// An image layer is written once this many delta runs (L1 runs and
    /// L0s) lie above the newest one: reads then visit few layers.
    pub image_after_delta_runs: usize,
    /// The share of one CPU a step that writes files may use, in percent
    /// (1–100; 100: unpaced). See the module doc.
    pub cpu_percent: u8,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            l0_threshold: 4,
            max_l0_per_step: 8,
            target_file_bytes: 128 << 20,
            image_after_delta_runs: 16,
            cpu_percent: DEFAULT_CPU_PERCENT,
        }
    }
}

/// The default share of one CPU for compaction: at 16 MiB/s of WAL it
/// keeps up in the page server soak (one log replica: L0 deltas stay at
/// 2–4), and it lowered the GetPage tail while compacting in most runs
/// (docs/pageserver.md, ninth pass).
pub const DEFAULT_CPU_PERCENT: u8 = 25;

/// CPU time a paced step works between pauses.
const PACE_SLICE: Duration = Duration::from_millis(2);

/// Entries a run writer takes between looks at the thread's CPU time (a
/// system call).
const PACE_CHECK_EVERY: u32 = 32;

/// Keeps a thread's work to a share of one CPU: [`pause`](Pacer::pause)
/// says how long to sleep, given the thread's CPU time so far.
#[derive(Debug)]
pub(crate) struct Pacer {
    percent: u32,
    /// The thread's CPU time at the last pause.
    since: Duration,
}

impl Pacer {
    /// A pacer to `percent` of one CPU; none at 100 (or above).
    pub(crate) fn new(percent: u8, cpu_now: Duration) -> Option<Pacer> {
        let percent = u32::from(percent.max(1));
        (percent < 100).then_some(Pacer {
            percent,
            since: cpu_now,
        })
    }

    /// The sleep due now, if the thread has worked a slice since the last.
    pub(crate) fn pause(&mut self, cpu_now: Duration) -> Option<Duration> {
        let worked = cpu_now.saturating_sub(self.since);
        if worked < PACE_SLICE {
            return None;
        }
        self.since = cpu_now;
        Some(worked * (100 - self.percent) / self.percent)
    }
}

/// The calling thread's CPU time, where the OS tells it.
fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Where a test stops a compaction step as a crash (SIGKILL) would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailPoint {
    /// The new files are durable; the manifest does not name them yet.
    AfterNewFiles,
    /// The new manifest is durable; the old files are not deleted yet.
    AfterManifest,
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Idle,
    CompactedL0 { inputs: usize, outputs: usize },
    Images { lsn: Lsn, files: usize },
    Collected { deleted: usize },
}

impl Timeline {
    /// Arms (or clears) a fail point for the next compaction step. After it
    /// fires the timeline refuses every change to its files: drop it and
    /// open the directory again, as after a crash.
    pub fn set_fail_point(&self, fail_point: Option<FailPoint>) {
        *self.fail_point.lock() = fail_point;
    }

    /// Whether a compaction or GC step is running now.
    pub fn compaction_running(&self) -> bool {
        self.compacting.try_lock().is_none()
    }

    fn fail_at(&self, at: FailPoint) -> Result<()> {
        if *self.fail_point.lock() == Some(at) {
            self.crashed.store(true, Ordering::Release);
            return Err(PageServerError::Unavailable(format!(
                "fail point {at:?} stopped compaction"
            )));
        }
        Ok(())
    }

    /// Does one bounded step of compaction or GC, the first that is due.
    /// Blocking: call it off the async threads.
    pub fn compact_step(&self) -> Result<Step> {
        let _one = self.compacting.lock();
        self.check_not_crashed()?;
        let map = self.snapshot();
        if let Some(inputs) = self.pick_l0(&map) {
            return self.compact_l0(inputs, self.pacer(&map));
        }
        let horizon = self.gc_horizon();
        if let Some(lsn) = self.image_due(&map, horizon) {
            return self.write_images(&map, lsn, self.pacer(&map));
        }
        self.collect(&map, horizon)
    }

    /// The inputs of the next L0 → L1 merge, if one is due.
    fn pick_l0(&self, map: &LayerMap) -> Option<Vec<Arc<LayerFile>>> {
        let config = &self.config.compaction;
        let l0: Vec<_> = map
            .files
            .iter()
            .filter(|f| f.desc.kind == LayerKind::L0)
            .take(config.max_l0_per_step.max(1))
            .cloned()
            .collect();
        if l0.len() < config.l0_threshold.max(1) {
            return None;
        }
        let start = l0[0].desc.range.start;
        let run: Vec<_> = map
            .files
            .iter()
            .filter(|f| f.desc.kind == LayerKind::L1 && f.desc.range.end == start)
            .cloned()
            .collect();
        let bytes = |fs: &[Arc<LayerFile>]| fs.iter().map(|f| f.desc.file_bytes).sum::<u64>();
        let image_at_start = map.files.iter().any(|f| f.desc.image_lsn() == Some(start));
        let absorb = !run.is_empty() && !image_at_start && bytes(&run) < bytes(&l0);
        Some(match absorb {
            true => run.into_iter().chain(l0).collect(),
            false => l0,
        })
    }

    /// The pacer for a step that writes files: none while L0 deltas pile
    /// up (see the module doc).
    fn pacer(&self, map: &LayerMap) -> Option<Pacer> {
        let config = &self.config.compaction;
        let l0 = map
            .files
            .iter()
            .filter(|f| f.desc.kind == LayerKind::L0)
            .count();
        if l0 >= 2 * config.l0_threshold.max(1) {
            return None;
        }
        Pacer::new(config.cpu_percent, thread_cpu_time()?)
    }

    fn compact_l0(&self, inputs: Vec<Arc<LayerFile>>, pacer: Option<Pacer>) -> Result<Step> {
        let range = LsnRange {
            start: inputs[0].desc.range.start,
            end: inputs[inputs.len() - 1].desc.range.end,
        };
        // Every input open (downloaded if evicted) before anything is written.
        let files = inputs
            .iter()
            .map(|f| f.file())
            .collect::<Result<Vec<_>>>()?;
        let mut out = RunWriter::new(self, LayerKind::L1, range, pacer);
        let mut cursors: Vec<Cursor<'_>> = files.iter().map(|f| Cursor::new(f)).collect();
        let mut heap = BinaryHeap::new();
        let mut heads: Vec<Option<Entry>> = Vec::with_capacity(cursors.len());
        for (i, c) in cursors.iter_mut().enumerate() {
            let head = c.next()?;
            if let Some(e) = &head {
                heap.push(Reverse((entry_key(e.page, e.lsn, &e.value), i)));
            }
            heads.push(head);
        }
        while let Some(Reverse((_, i))) = heap.pop() {
            let entry = heads[i].take().expect("a queued input has a head");
            out.push(entry.page, entry.lsn, &entry.value)?;
            heads[i] = cursors[i].next()?;
            if let Some(e) = &heads[i] {
                heap.push(Reverse((entry_key(e.page, e.lsn, &e.value), i)));
            }
        }
        let outputs = out.finish()?;
        let (n_in, n_out) = (inputs.len(), outputs.len());
        self.fail_at(FailPoint::AfterNewFiles)?;
        self.swap_layers(&inputs, outputs, None)?;
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        info!(inputs = n_in, outputs = n_out, start = %range.start, end = %range.end, "compacted L0 layers");
        Ok(Step::CompactedL0 {
            inputs: n_in,
            outputs: n_out,
        })
    }

    /// Writes an image layer run at `lsn` (the end of an L1 run): every
    /// page that exists there, as of `lsn`, keyed at the page's own LSN.
    fn write_images(&self, map: &LayerMap, lsn: Lsn, pacer: Option<Pacer>) -> Result<Step> {
        let range = LsnRange {
            start: Lsn::ZERO,
            end: lsn,
        };
        let mut out = RunWriter::new(self, LayerKind::Image, range, pacer);
        for page in pages_at(map, lsn)? {
            if self.space_dropped(page.space).is_some_and(|at| at <= lsn) {
                continue;
            }
            let Some(at) = super::read::last_record(map, page, lsn)? else {
                continue;
            };
            match super::read::rebuild(map, page, at) {
                Ok(img) => out.push(page, at, &Value::Image(super::images::compress(&img)))?,
                // The log cannot make this page (a history that does not
                // start it): no image, and nothing lost that a read could
                // have had. Damaged files stop the run instead.
                Err(e @ (PageServerError::Rebuild { .. } | PageServerError::Wal(_))) => {
                    warn!(%page, %at, error = %e, "no image for the page");
                }
                Err(e) => return Err(e),
            }
        }
        let outputs = out.finish()?;
        let files = outputs.len();
        self.fail_at(FailPoint::AfterNewFiles)?;
        self.swap_layers(&[], outputs, None)?;
        self.stats
            .image_layers_written
            .fetch_add(files as u64, Ordering::Relaxed);
        info!(%lsn, files, "image layers written");
        Ok(Step::Images { lsn, files })
    }

    /// Replaces `remove` by `add` in the manifest and the layer map (and
    /// raises the GC cutoff to `cutoff`), then deletes the removed files.
    pub(super) fn swap_layers(
        &self,
        remove: &[Arc<LayerFile>],
        add: Vec<LayerFile>,
        cutoff: Option<Lsn>,
    ) -> Result<()> {
        let add: Vec<Arc<LayerFile>> = add.into_iter().map(Arc::new).collect();
        let gone: HashSet<&str> = remove.iter().map(|f| f.desc.file_name.as_str()).collect();
        {
            let mut manifest = self.manifest.lock();
            self.check_not_crashed()?;
            let mut next = manifest.clone();
            next.layers.retain(|l| !gone.contains(l.file_name.as_str()));
            next.layers.extend(add.iter().map(|f| f.desc.clone()));
            next.layers.sort_by_key(LayerDesc::order);
            if let Some(cutoff) = cutoff {
                next.gc_cutoff = next.gc_cutoff.max(cutoff);
            }
            self.store_manifest(&mut manifest, next)?;
            self.fail_at(FailPoint::AfterManifest)?;
            // Published under the manifest lock, so a flush's map and this
            // one never cross.
            self.publish_map(|map| {
                let mut next = map.clone();
                next.files
                    .retain(|f| !gone.contains(f.desc.file_name.as_str()));
                next.files.extend(add.iter().cloned());
                next.files.sort_by_key(|f| f.desc.order());
                if let Some(cutoff) = cutoff {
                    next.gc_cutoff = next.gc_cutoff.max(cutoff);
                }
                Some(next)
            });
        }
        let written: u64 = add.iter().map(|f| f.desc.file_bytes).sum();
        self.stats
            .compaction_bytes_written
            .fetch_add(written, Ordering::Relaxed);
        self.delete_files(remove)
    }

    /// Unlinks files no manifest names any more. A file that cannot be
    /// removed is left for the next start to remove as a stray.
    fn delete_files(&self, files: &[Arc<LayerFile>]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        for f in files {
            // An evicted layer has no local file to delete.
            let Some(path) = f.local_path() else {
                continue;
            };
            // Here, on a background thread, not in the file's last close.
            f.drop_cached_pages();
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "cannot delete an old layer file")
                }
            }
        }
        self.stats
            .layers_deleted
            .fetch_add(files.len() as u64, Ordering::Relaxed);
        durable::sync_dir(&self.config.dir)
    }
}

/// Every page with a record or an image in a layer file at or below `lsn`.
fn pages_at(map: &LayerMap, lsn: Lsn) -> Result<Vec<PageId>> {
    let mut pages = HashSet::new();
    for f in &map.files {
        let below = match f.desc.image_lsn() {
            Some(at) => at <= lsn,
            None => f.desc.range.end <= lsn,
        };
        if below {
            pages.extend(f.file()?.pages().into_iter().map(|(p, _)| p));
        }
    }
    let mut pages: Vec<_> = pages.into_iter().collect();
    pages.sort_unstable();
    Ok(pages)
}

/// Reads a layer file's entries in order, one block at a time.
struct Cursor<'a> {
    file: &'a DeltaFile,
    next_block: usize,
    entries: std::vec::IntoIter<Entry>,
}

impl<'a> Cursor<'a> {
    fn new(file: &'a DeltaFile) -> Cursor<'a> {
        Cursor {
            file,
            next_block: 0,
            entries: Vec::new().into_iter(),
        }
    }

    fn next(&mut self) -> Result<Option<Entry>> {
        loop {
            if let Some(e) = self.entries.next() {
                return Ok(Some(e));
            }
            if self.next_block >= self.file.block_count() {
                return Ok(None);
            }
            self.entries = self.file.read_block(self.next_block)?.into_iter();
            self.next_block += 1;
        }
    }
}

/// Writes a run: files of one kind over one LSN range whose page ranges
/// tile every page, each cut at about the target size between pages.
struct RunWriter<'a> {
    tl: &'a Timeline,
    kind: LayerKind,
    range: LsnRange,
    target_bytes: u64,
    current: Option<(DeltaFileWriter, PathBuf, u64)>,
    last_page: Option<PageId>,
    done: Vec<(LayerDesc, DeltaFile)>,
    pacer: Option<Pacer>,
    /// Entries pushed since the pacer last looked.
    unpaced: u32,
}

impl<'a> RunWriter<'a> {
    fn new(
        tl: &'a Timeline,
        kind: LayerKind,
        range: LsnRange,
        pacer: Option<Pacer>,
    ) -> RunWriter<'a> {
        RunWriter {
            tl,
            kind,
            range,
            target_bytes: tl.config.compaction.target_file_bytes.max(1),
            current: None,
            last_page: None,
            done: Vec::new(),
            pacer,
            unpaced: 0,
        }
    }

    fn push(&mut self, page: PageId, lsn: Lsn, value: &Value) -> Result<()> {
        let new_page = self.last_page != Some(page);
        let full = self
            .current
            .as_ref()
            .is_some_and(|(w, _, _)| w.bytes_written() >= self.target_bytes);
        if new_page && full {
            self.finish_file(page_key(page) - 1)?;
        }
        if self.current.is_none() {
            let first = match self.done.is_empty() {
                true => 0,
                false => page_key(page),
            };
            self.start_file(first)?;
        }
        let (writer, _, _) = self.current.as_mut().expect("started above");
        writer.push(page, lsn, value)?;
        self.last_page = Some(page);
        self.pace();
        Ok(())
    }

    /// Sleeps when the step has used its share of the CPU (if paced).
    fn pace(&mut self) {
        let Some(pacer) = self.pacer.as_mut() else {
            return;
        };
        self.unpaced += 1;
        if self.unpaced < PACE_CHECK_EVERY {
            return;
        }
        self.unpaced = 0;
        if let Some(sleep) = thread_cpu_time().and_then(|now| pacer.pause(now)) {
            std::thread::sleep(sleep);
        }
    }

    fn start_file(&mut self, first_key: u64) -> Result<()> {
        let tmp = self.tl.config.dir.join(format!(
            "tmp-{}-{:016X}-{:016X}-{}.delta",
            self.kind.code(),
            self.range.start.0,
            self.range.end.0,
            self.done.len()
        ));
        if tmp.exists() {
            std::fs::remove_file(&tmp)
                .map_err(PageServerError::io(format!("removing {}", tmp.display())))?;
        }
        let writer = DeltaFileWriter::create(&tmp, &self.tl.config.cluster_id, self.range)?;
        self.current = Some((writer, tmp, first_key));
        Ok(())
    }

    /// Finishes the file being written, covering pages up to `last_key`,
    /// and renames it to its final name.
    fn finish_file(&mut self, last_key: u64) -> Result<()> {
        let Some((writer, tmp, first)) = self.current.take() else {
            return Ok(());
        };
        let mut file = writer.finish()?;
        let keys = KeyRange {
            first,
            last: last_key,
        };
        let file_name = layer_file_name(self.kind, self.range, keys);
        let path = self.tl.config.dir.join(&file_name);
        std::fs::rename(&tmp, &path).map_err(PageServerError::io(format!(
            "renaming {} to {}",
            tmp.display(),
            path.display()
        )))?;
        file.renamed(path);
        let desc = LayerDesc {
            file_name,
            kind: self.kind,
            range: self.range,
            keys,
            file_bytes: file.file_bytes(),
        };
        self.done.push((desc, file));
        Ok(())
    }

    /// The run's files, durable under their final names. A run with no
    /// entries is one empty file over every page (an image layer of no
    /// pages still tells GC that nothing older is needed).
    fn finish(mut self) -> Result<Vec<LayerFile>> {
        if self.current.is_none() && self.done.is_empty() {
            self.start_file(0)?;
        }
        self.finish_file(u64::MAX)?;
        durable::sync_dir(&self.tl.config.dir)?;
        Ok(std::mem::take(&mut self.done)
            .into_iter()
            .map(|(desc, file)| LayerFile::resident(desc, file))
            .collect())
    }
}

impl Drop for RunWriter<'_> {
    /// A run given up halfway leaves no finished file behind (the writer
    /// of an unfinished one removes it itself).
    fn drop(&mut self) {
        for (_, f) in &self.done {
            if let Err(e) = std::fs::remove_file(f.path()) {
                warn!(file = %f.path().display(), error = %e, "cannot remove a file of an abandoned run");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use strata_wal::{BatchBuilder, PageId};

    use super::{Pacer, thread_cpu_time};
    use crate::timeline::{CompactionConfig, Timeline, TimelineConfig};
    use crate::workload::{init_record, insert_record};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_pacer_sleeps_for_the_rest_of_its_share_after_each_slice() {
        let mut pacer = Pacer::new(25, 10 * MS).unwrap();
        assert_eq!(pacer.pause(11 * MS), None, "less than a slice of work");
        assert_eq!(pacer.pause(12 * MS), Some(6 * MS), "2 ms of work at 25%");
        assert_eq!(pacer.pause(13 * MS), None, "counted from the last pause");
        assert_eq!(pacer.pause(16 * MS), Some(12 * MS));
        // At 100% nothing is paced; 0 is taken as 1%.
        assert!(Pacer::new(100, MS).is_none());
        assert_eq!(
            Pacer::new(0, Duration::ZERO).unwrap().pause(2 * MS),
            Some(198 * MS)
        );
    }

    #[test]
    fn the_threads_cpu_time_grows_with_its_work() {
        let before = thread_cpu_time().expect("Linux tells a thread's CPU time");
        let mut x = 0u64;
        for _ in 0..100_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(thread_cpu_time().unwrap() > before);
    }

    /// Ingests one batch of records for `pages` pages and flushes it: one
    /// L0 file.
    fn write_l0(tl: &Timeline, pages: u32) {
        let start = tl.ingested();
        let mut b = BatchBuilder::new();
        for n in 0..pages {
            let page = PageId::new(1, n);
            b.push(&init_record(page)).unwrap();
            b.push(&insert_record(page, b"x")).unwrap();
        }
        let mut out = Vec::new();
        let end = b.commit(1).stamp_into(&mut out, start);
        tl.ingest_chunk(start, &Bytes::from(out), end).unwrap();
        assert!(tl.freeze());
        while tl.flush_frozen().unwrap() {}
    }

    #[test]
    fn steps_run_unpaced_while_l0_deltas_pile_up() {
        let dir = tempfile::tempdir().unwrap();
        let tl = Timeline::open(TimelineConfig {
            compaction: CompactionConfig {
                l0_threshold: 2,
                ..CompactionConfig::default()
            },
            ..TimelineConfig::new("pacing", dir.path())
        })
        .unwrap();
        write_l0(&tl, 4);
        assert!(tl.pacer(&tl.snapshot()).is_some(), "one L0: paced");
        for _ in 0..3 {
            write_l0(&tl, 4);
        }
        assert!(tl.pacer(&tl.snapshot()).is_none(), "four L0s: unpaced");
    }
}
