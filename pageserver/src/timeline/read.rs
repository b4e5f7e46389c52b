//! Reading a page as of an LSN from one consistent set of layers.
//!
//! A [`LayerMap`] is an immutable snapshot: the delta files, the frozen
//! in-memory layers waiting to be written, and the open layer, in LSN
//! order. Readers take one (an `Arc`) and answer from it alone, so a freeze
//! or a flush that publishes a new map never changes what a read in flight
//! sees. The only part of a map that still moves is the open layer's end,
//! which every lookup reads under the layer's own lock together with its
//! records.
//!
//! Three questions, all for one page and one LSN `L`:
//! - [`last_record`]: the LSN of the last record at or below `L` — the
//!   version's `from`, and the key it is cached under;
//! - [`next_record`]: the LSN of the first record above `L`, or the
//!   ingested LSN + 1 if none is known yet — the version's `to`;
//! - [`rebuild`]: the page itself: the newest image (or `Init`/`FullImage`
//!   record) at or below `L`, then every later record up to `L`, applied
//!   with `strata_wal::redo::Replay` (`redo::apply`'s bytes, sealed once).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;
use strata_wal::page::Page;
use strata_wal::redo::Replay;
use strata_wal::{Lsn, PageId, op, record};

use crate::error::{PageServerError, Result};
use crate::layer::Value;
use crate::layer::delta_file::DeltaFile;
use crate::layer::desc::LayerDesc;
use crate::layer::inmem::InMemoryLayer;

/// A layer file and what the manifest says of it. The file itself may be
/// on the local disk (resident) or only in the bucket (evicted, see
/// [`crate::timeline::tier`]).
///
/// Readers get the open file as an `Arc<DeltaFile>` ([`LayerFile::file`])
/// and hold it for as long as they read. Eviction takes a file out only
/// when no such handle is held (the slot's own `Arc` is the only one), and
/// unlinks it under the slot's write lock, so a reader either holds an open
/// handle (whose descriptor keeps the data readable even if the file were
/// unlinked) or sees the slot empty and downloads it again.
pub struct LayerFile {
    pub desc: LayerDesc,
    slot: RwLock<Option<Arc<DeltaFile>>>,
    /// Milliseconds since the process started when last read (LRU order).
    last_access_ms: AtomicU64,
    /// Held while the file is downloaded: one download for all askers.
    pub(crate) download: tokio::sync::Mutex<()>,
}

impl LayerFile {
    /// A layer whose file is open on the local disk.
    pub fn resident(desc: LayerDesc, file: DeltaFile) -> LayerFile {
        LayerFile {
            desc,
            slot: RwLock::new(Some(Arc::new(file))),
            last_access_ms: AtomicU64::new(now_ms()),
            download: tokio::sync::Mutex::new(()),
        }
    }

    /// A layer whose file is only in the bucket.
    pub fn evicted(desc: LayerDesc) -> LayerFile {
        LayerFile {
            desc,
            slot: RwLock::new(None),
            last_access_ms: AtomicU64::new(0),
            download: tokio::sync::Mutex::new(()),
        }
    }

    /// The open file, or [`PageServerError::LayerEvicted`].
    pub fn file(&self) -> Result<Arc<DeltaFile>> {
        match &*self.slot.read() {
            Some(f) => {
                self.last_access_ms.store(now_ms(), Ordering::Relaxed);
                Ok(f.clone())
            }
            None => Err(PageServerError::LayerEvicted {
                file: self.desc.file_name.clone(),
            }),
        }
    }

    pub fn is_resident(&self) -> bool {
        self.slot.read().is_some()
    }

    pub(crate) fn last_access_ms(&self) -> u64 {
        self.last_access_ms.load(Ordering::Relaxed)
    }

    /// Puts a downloaded file in place; the handle it returns pins it.
    pub(crate) fn install(&self, file: DeltaFile) -> Arc<DeltaFile> {
        let file = Arc::new(file);
        *self.slot.write() = Some(file.clone());
        self.last_access_ms.store(now_ms(), Ordering::Relaxed);
        file
    }

    /// Runs `unlink` on the file and empties the slot, if the file is here
    /// and nobody holds a handle to it; true if it did. `unlink` runs under
    /// the slot's write lock, so no reader can see the slot empty (and
    /// start a download that writes the same path) before it is done.
    pub(crate) fn evict_if_unused(&self, unlink: impl FnOnce(&DeltaFile) -> Result<()>) -> bool {
        let mut slot = self.slot.write();
        let Some(file) = slot.as_ref() else {
            return false;
        };
        if Arc::strong_count(file) > 1 {
            return false;
        }
        if let Err(e) = unlink(file) {
            tracing::warn!(file = %file.path().display(), error = %e, "cannot evict a layer file");
            return false;
        }
        *slot = None;
        true
    }

    /// The path of the open file, if it is resident.
    pub(crate) fn local_path(&self) -> Option<std::path::PathBuf> {
        self.slot.read().as_ref().map(|f| f.path().to_path_buf())
    }

    /// Drops the local file's pages from the OS page cache, if it has a
    /// local file (see [`DeltaFile::drop_cached_pages`]).
    pub(crate) fn drop_cached_pages(&self) {
        let file = self.slot.read().clone();
        if let Some(file) = file {
            file.drop_cached_pages();
        }
    }
}

/// Milliseconds since the first call: a cheap, monotonic LRU clock.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}

/// The layers of a timeline at one moment, oldest first.
#[derive(Clone)]
pub struct LayerMap {
    /// In [`LayerDesc::order`].
    pub files: Vec<Arc<LayerFile>>,
    pub frozen: Vec<Arc<InMemoryLayer>>,
    pub open: Arc<InMemoryLayer>,
    /// Reads below it are refused: layers it made unnecessary may be gone
    /// from this map (it travels with the map, so a reader that sees a map
    /// without them also sees the cutoff that allowed it).
    pub gc_cutoff: Lsn,
}

/// One layer of a map, whatever its kind.
#[derive(Clone, Copy)]
enum Layer<'a> {
    Delta(&'a LayerFile),
    Image(&'a LayerFile),
    Mem(&'a InMemoryLayer),
}

impl LayerMap {
    /// The layers that may hold `page`, oldest first.
    fn layers_of(&self, page: PageId) -> impl DoubleEndedIterator<Item = Layer<'_>> {
        let files = self
            .files
            .iter()
            .filter(move |f| f.desc.keys.contains(page))
            .map(|f| match f.desc.kind.is_delta() {
                true => Layer::Delta(f),
                false => Layer::Image(f),
            });
        let mems = self
            .frozen
            .iter()
            .chain([&self.open])
            .map(|m| Layer::Mem(m));
        files.chain(mems)
    }

    /// Bytes of all layer files (local or not).
    pub fn file_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.desc.file_bytes).sum()
    }

    /// Bytes of the layer files on the local disk.
    pub fn local_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.is_resident())
            .map(|f| f.desc.file_bytes)
            .sum()
    }

    /// The layer file named `name`, if this map has it.
    pub fn find(&self, name: &str) -> Option<&Arc<LayerFile>> {
        self.files.iter().find(|f| f.desc.file_name == name)
    }
}

/// The LSN of `page`'s last record at or below `lsn`; `None` if it has none.
pub fn last_record(map: &LayerMap, page: PageId, lsn: Lsn) -> Result<Option<Lsn>> {
    for layer in map.layers_of(page).rev() {
        let found = match layer {
            Layer::Mem(m) if m.start() < lsn => m.last_at_or_below(page, lsn),
            Layer::Delta(f) if f.desc.range.start < lsn => {
                last_in_file(f.file()?.as_ref(), page, lsn)?
            }
            // An image's key is the page's own LSN (its last record at or
            // below the layer's LSN), and the version holds until then.
            Layer::Image(f) => f
                .file()?
                .summary(page)
                .map(|s| s.last_lsn)
                .filter(|l| *l <= lsn),
            _ => None,
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

fn last_in_file(f: &DeltaFile, page: PageId, lsn: Lsn) -> Result<Option<Lsn>> {
    Ok(match f.summary(page) {
        None => None,
        Some(s) if s.last_lsn <= lsn => Some(s.last_lsn),
        Some(s) if s.first_lsn > lsn => None,
        Some(_) => f.read_page(page, lsn)?.last().map(|(l, _)| *l),
    })
}

/// The end of the validity of `page` as of `lsn`: the LSN of its first
/// record above `lsn`, or the open layer's end + 1 if there is none yet.
pub fn next_record(map: &LayerMap, page: PageId, lsn: Lsn) -> Result<Lsn> {
    for file in &map.files {
        let desc = &file.desc;
        if !desc.kind.is_delta() || desc.range.end <= lsn || !desc.keys.contains(page) {
            continue;
        }
        if let Some(next) = next_in_file(file.file()?.as_ref(), page, lsn)? {
            return Ok(next);
        }
    }
    for mem in &map.frozen {
        if let (Some(next), _) = mem.next_after(page, lsn) {
            return Ok(next);
        }
    }
    // The open layer's records and end, read together.
    let (next, end) = map.open.next_after(page, lsn);
    Ok(next.unwrap_or(end.advance(1)))
}

fn next_in_file(f: &DeltaFile, page: PageId, lsn: Lsn) -> Result<Option<Lsn>> {
    Ok(match f.summary(page) {
        None => None,
        Some(s) if s.first_lsn > lsn => Some(s.first_lsn),
        Some(s) if s.last_lsn <= lsn => None,
        Some(_) => f
            .read_page(page, Lsn::MAX)?
            .into_iter()
            .map(|(l, _)| l)
            .find(|l| *l > lsn),
    })
}

/// The values to replay for `page` as of `lsn`, oldest first, starting at
/// the newest value that starts the page. Empty if the page has no record
/// at or below `lsn`.
///
/// An image layer whose image of the page is at or below `lsn` ends the
/// walk: an image layer at `L` is visited before the deltas ending at `L`,
/// and its image (keyed at the page's LSN `P` ≤ `L`) is the page for every
/// LSN in `[P, L]` — no record of the page lies between. One without such
/// an image (the page did not exist then, was written after `lsn`, or its
/// image could not be built) is passed over.
pub fn chain(map: &LayerMap, page: PageId, lsn: Lsn) -> Result<Vec<(Lsn, Value)>> {
    let mut parts: Vec<Vec<(Lsn, Value)>> = Vec::new();
    for layer in map.layers_of(page).rev() {
        let mut entries = match layer {
            Layer::Mem(m) if m.start() < lsn => m.read_page(page, lsn),
            Layer::Delta(f) if f.desc.range.start < lsn => f.file()?.read_page(page, lsn)?,
            Layer::Image(f) => {
                let entries = f.file()?.read_page(page, lsn)?;
                if entries.is_empty() {
                    continue;
                }
                entries
            }
            _ => continue,
        };
        if let Some(i) = entries.iter().rposition(|(_, v)| v.starts_page()) {
            parts.push(entries.split_off(i));
            return Ok(parts.into_iter().rev().flatten().collect());
        }
        parts.push(entries);
    }
    let all: Vec<_> = parts.into_iter().rev().flatten().collect();
    if all.is_empty() {
        return Ok(all);
    }
    Err(PageServerError::Rebuild {
        page,
        lsn,
        detail: format!(
            "its oldest record (LSN {}) neither formats it nor is an image",
            all[0].0
        ),
    })
}

/// Rebuilds `page` as of `lsn`; [`PageServerError::PageNotFound`] if it
/// has no record at or below `lsn`.
pub fn rebuild(map: &LayerMap, page: PageId, lsn: Lsn) -> Result<Page> {
    replay(page, lsn, &chain(map, page, lsn)?)
}

/// Replays a [`chain`] of `page`'s values as of `lsn`: CPU only, no I/O.
pub fn replay(page: PageId, lsn: Lsn, chain: &[(Lsn, Value)]) -> Result<Page> {
    let Some(((first_lsn, first), rest)) = chain.split_first() else {
        return Err(PageServerError::PageNotFound { page, lsn });
    };
    let mut replay = match first {
        Value::Image(bytes) => Replay::new(image(page, *first_lsn, bytes)?),
        Value::Delta(frame) => {
            let mut replay = Replay::new(Page::new_zeroed());
            apply_frame(&mut replay, page, *first_lsn, frame)?;
            replay
        }
    };
    for (at, value) in rest {
        match value {
            Value::Image(bytes) => replay = Replay::new(image(page, *at, bytes)?),
            Value::Delta(frame) => apply_frame(&mut replay, page, *at, frame)?,
        }
    }
    Ok(replay.finish())
}

fn image(page: PageId, lsn: Lsn, bytes: &[u8]) -> Result<Page> {
    let rebuild_err = |detail: String| PageServerError::Rebuild { page, lsn, detail };
    let img = op::decompress_image(bytes).map_err(|e| rebuild_err(format!("image: {e}")))?;
    img.verify(page)
        .map_err(|e| rebuild_err(format!("image: {e}")))?;
    if img.lsn() != lsn {
        return Err(rebuild_err(format!("the image holds LSN {}", img.lsn())));
    }
    Ok(img)
}

/// Applies one framed record, checking that it is the record the layer
/// says it is (its LSN and page).
fn apply_frame(replay: &mut Replay, page: PageId, lsn: Lsn, frame: &Bytes) -> Result<()> {
    let start = lsn
        .0
        .checked_sub(frame.len() as u64)
        .map(Lsn)
        .ok_or_else(|| PageServerError::Rebuild {
            page,
            lsn,
            detail: format!("a {}-byte record cannot end at LSN {lsn}", frame.len()),
        })?;
    let rec = record::decode(frame, start)?;
    if rec.lsn != lsn || rec.page != page || rec.len() != frame.len() {
        return Err(PageServerError::Rebuild {
            page,
            lsn,
            detail: format!(
                "the layer holds a record for page {} at {}",
                rec.page, rec.lsn
            ),
        });
    }
    replay.apply(&rec)?;
    Ok(())
}
