//! Delta layer files: the immutable, on-disk form of a frozen layer.
//!
//! One file holds every entry `(page, lsn, value)` of one [`LsnRange`]
//! `(start, end]`, in layer order (page, then LSN, then delta before image),
//! packed into blocks, followed by an index that is kept in memory while the
//! file is open. Little-endian throughout.
//!
//! ```text
//! header (HEADER_BYTES = 136, at offset 0)
//!   0   magic         8   b"STRATDLT"
//!   8   version       u32 DELTA_FORMAT_VERSION (1)
//!   12  cluster_len   u32 at most MAX_CLUSTER_ID_BYTES (64)
//!   16  cluster_id    64  UTF-8, zero-padded
//!   80  range.start   u64
//!   88  range.end     u64
//!   96  entry_count   u64
//!   104 page_count    u32
//!   108 block_count   u32
//!   112 index_offset  u64 where the index starts (= where the blocks end)
//!   120 index_len     u64 (index_offset + index_len = file length)
//!   128 index_crc     u32 crc32 of the index
//!   132 header_crc    u32 crc32 of bytes 0..132
//! blocks, from offset 136, back to back
//!   entries, each: space u32, page_no u32, lsn u64, tag u8 (0 delta,
//!   1 image), len u32, then len value bytes
//! index
//!   block_count x (offset u64, len u32, crc32 u32, first key: space u32,
//!                  page_no u32, lsn u64, tag u8)
//!   page_count  x (space u32, page_no u32, first_lsn u64, last_lsn u64,
//!                  entries u32, first_block u32, last_block u32)
//! ```
//!
//! Invariants, checked by [`DeltaFile::open`] (header, index) or when a
//! block is read (its entries): every byte of the file is under a crc — the
//! header's own, the index's (stored in the header) or its block's (stored in
//! the index) — so any flipped bit is reported as
//! [`PageServerError::Corrupt`], never returned as data. Blocks tile the
//! bytes between the header and the index exactly, each one about
//! [`BLOCK_TARGET_BYTES`] (an entry is never split, so a large entry makes a
//! large block), and their first keys strictly increase. The page table is
//! sorted by page; its entry counts add up to `entry_count`; every LSN lies in
//! the range. An entry's key is strictly greater than the one before it.
//!
//! The writer creates the file with `create_new`, writes a zeroed header,
//! the blocks and the index, then the real header, and fsyncs the file; the
//! directory entry is the caller's to make durable. An unfinished writer
//! removes its file when dropped, so a half-written file carries no header
//! and never opens.
//!
//! Reads use positional `read_at` on one shared `File`, so a [`DeltaFile`]
//! serves any number of threads through `&self`. This module depends only on
//! the layer types, the error type and [`crate::durable`].

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_wal::{Lsn, PageId};

use crate::durable;
use crate::error::{PageServerError, Result};
use crate::layer::{Entry, LsnRange, Value, entry_key};

pub const DELTA_MAGIC: [u8; 8] = *b"STRATDLT";
pub const DELTA_FORMAT_VERSION: u32 = 1;
/// The longest cluster id a layer file can carry.
pub const MAX_CLUSTER_ID_BYTES: usize = 64;
/// A block is closed once it holds this many bytes or the next entry would
/// take it past this size.
pub const BLOCK_TARGET_BYTES: usize = 32 * 1024;

const HEADER_BYTES: usize = 136;
/// Bytes of the header covered by its crc: all but the crc itself.
const HEADER_CRC_AT: usize = HEADER_BYTES - 4;
const ENTRY_HEADER_BYTES: usize = 4 + 4 + 8 + 1 + 4;
const BLOCK_META_BYTES: usize = 8 + 4 + 4 + KEY_BYTES;
const PAGE_META_BYTES: usize = 4 + 4 + 8 + 8 + 4 + 4 + 4;
const KEY_BYTES: usize = 4 + 4 + 8 + 1;
/// The largest value an entry may hold: its block's length must fit a u32.
const MAX_VALUE_BYTES: usize = u32::MAX as usize - ENTRY_HEADER_BYTES;
const TAG_DELTA: u8 = 0;
const TAG_IMAGE: u8 = 1;

/// An entry's position in layer order: page, LSN, delta before image.
type Key = (PageId, Lsn, bool);

/// A page's figures in a layer file's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageSummary {
    /// LSN of the page's first entry in the file.
    pub first_lsn: Lsn,
    /// LSN of the page's last entry in the file.
    pub last_lsn: Lsn,
    pub entries: u32,
    pub first_block: u32,
    pub last_block: u32,
}

/// One row of the block table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BlockMeta {
    offset: u64,
    len: u32,
    crc: u32,
    first: Key,
}

/// The fixed-size header's fields (magic and version are implied).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Header {
    cluster_id: String,
    range: LsnRange,
    entry_count: u64,
    page_count: u32,
    block_count: u32,
    index_offset: u64,
    index_len: u64,
    index_crc: u32,
}

/// Writes one delta layer file; entries must come in layer order.
pub struct DeltaFileWriter {
    path: PathBuf,
    cluster_id: String,
    range: LsnRange,
    /// `None` once finished (or failed while finishing).
    out: Option<BufWriter<File>>,
    block_target_bytes: usize,
    /// Where the block being filled starts.
    offset: u64,
    block: Vec<u8>,
    block_first: Option<Key>,
    blocks: Vec<BlockMeta>,
    pages: Vec<(PageId, PageSummary)>,
    last_key: Option<Key>,
    entry_count: u64,
    /// Where the bytes not yet handed to writeback start (see
    /// [`WRITE_BEHIND_BYTES`]).
    written_back: u64,
}

impl DeltaFileWriter {
    pub fn create(path: &Path, cluster_id: &str, range: LsnRange) -> Result<DeltaFileWriter> {
        DeltaFileWriter::with_block_target(path, cluster_id, range, BLOCK_TARGET_BYTES)
    }

    /// [`create`](Self::create) with another block size (tests use small
    /// blocks to get many of them).
    fn with_block_target(
        path: &Path,
        cluster_id: &str,
        range: LsnRange,
        block_target_bytes: usize,
    ) -> Result<DeltaFileWriter> {
        check_cluster_id(cluster_id).map_err(PageServerError::BadRequest)?;
        if range.start >= range.end {
            return Err(PageServerError::BadRequest(format!(
                "layer range ({}, {}] is empty",
                range.start, range.end
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(NO_ATIME)
            .open(path)
            .map_err(PageServerError::io(format!("creating {}", path.display())))?;
        let mut out = BufWriter::with_capacity(BLOCK_TARGET_BYTES * 2, file);
        out.write_all(&[0; HEADER_BYTES])
            .map_err(PageServerError::io(format!("writing {}", path.display())))?;
        Ok(DeltaFileWriter {
            path: path.to_path_buf(),
            cluster_id: cluster_id.to_string(),
            range,
            out: Some(out),
            block_target_bytes,
            offset: HEADER_BYTES as u64,
            block: Vec::with_capacity(block_target_bytes),
            block_first: None,
            blocks: Vec::new(),
            pages: Vec::new(),
            last_key: None,
            entry_count: 0,
            written_back: 0,
        })
    }

    pub fn push(&mut self, page: PageId, lsn: Lsn, value: &Value) -> Result<()> {
        let key = entry_key(page, lsn, value);
        self.check_entry(key, value)?;
        let entry_bytes = ENTRY_HEADER_BYTES + value.bytes().len();
        if !self.block.is_empty() && self.block.len() + entry_bytes > self.block_target_bytes {
            self.flush_block()?;
        }
        let block_no = u32::try_from(self.blocks.len())
            .map_err(|_| PageServerError::BadRequest("too many blocks for one layer".into()))?;
        self.note_page(page, lsn, block_no)?;
        encode_entry(&mut self.block, key, value.bytes());
        self.block_first.get_or_insert(key);
        self.last_key = Some(key);
        self.entry_count += 1;
        Ok(())
    }

    /// Refuses an entry that is not strictly after the last one, outside the
    /// range or too large; the writer stays usable.
    fn check_entry(&self, key: Key, value: &Value) -> Result<()> {
        let (page, lsn, _) = key;
        let refuse = |why: String| Err(PageServerError::BadRequest(why));
        if !self.range.contains(lsn) {
            return refuse(format!(
                "entry for page {page} at LSN {lsn} is outside the layer's range ({}, {}]",
                self.range.start, self.range.end
            ));
        }
        if value.bytes().len() > MAX_VALUE_BYTES {
            return refuse(format!(
                "value of {} bytes is too large",
                value.bytes().len()
            ));
        }
        match self.last_key {
            Some(last) if key == last => refuse(format!(
                "duplicate entry for page {page} at LSN {lsn} (image: {})",
                value.is_image()
            )),
            Some(last) if key < last => refuse(format!(
                "entry for page {page} at LSN {lsn} is out of order (after page {} at LSN {})",
                last.0, last.1
            )),
            _ => Ok(()),
        }
    }

    /// Counts the entry in its page's summary.
    fn note_page(&mut self, page: PageId, lsn: Lsn, block_no: u32) -> Result<()> {
        match self.pages.last_mut() {
            Some((last, s)) if *last == page => {
                s.entries = s.entries.checked_add(1).ok_or_else(|| {
                    PageServerError::BadRequest(format!("too many entries for page {page}"))
                })?;
                s.last_lsn = lsn;
                s.last_block = block_no;
            }
            _ => self.pages.push((
                page,
                PageSummary {
                    first_lsn: lsn,
                    last_lsn: lsn,
                    entries: 1,
                    first_block: block_no,
                    last_block: block_no,
                },
            )),
        }
        Ok(())
    }

    /// Writes the block being filled, if any, and starts a new one.
    fn flush_block(&mut self) -> Result<()> {
        let Some(first) = self.block_first.take() else {
            return Ok(());
        };
        let len = u32::try_from(self.block.len()).expect("values are capped to fit a u32 block");
        let mut block = std::mem::take(&mut self.block);
        self.write(&block)?;
        self.blocks.push(BlockMeta {
            offset: self.offset,
            len,
            crc: crc32fast::hash(&block),
            first,
        });
        self.offset += u64::from(len);
        block.clear();
        self.block = block;
        if self.offset - self.written_back >= WRITE_BEHIND_BYTES {
            self.write_behind()?;
        }
        Ok(())
    }

    /// Starts writeback of what was written since the last call, without
    /// waiting for it (see [`WRITE_BEHIND_BYTES`]).
    fn write_behind(&mut self) -> Result<()> {
        let out = self.out.as_mut().expect("the writer is not finished");
        out.flush().map_err(PageServerError::io(format!(
            "writing {}",
            self.path.display()
        )))?;
        start_writeback(
            out.get_ref(),
            self.written_back,
            self.offset - self.written_back,
        );
        self.written_back = self.offset;
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().expect("the writer is not finished");
        out.write_all(bytes).map_err(PageServerError::io(format!(
            "writing {}",
            self.path.display()
        )))
    }

    /// Bytes written so far (blocks closed and the one being filled).
    pub fn bytes_written(&self) -> u64 {
        self.offset + self.block.len() as u64
    }

    /// Writes the last block, the index and the header, fsyncs the file and
    /// returns it open for reading.
    pub fn finish(mut self) -> Result<DeltaFile> {
        self.flush_block()?;
        let index = encode_index(&self.blocks, &self.pages);
        self.write(&index)?;
        let header = Header {
            cluster_id: self.cluster_id.clone(),
            range: self.range,
            entry_count: self.entry_count,
            page_count: u32::try_from(self.pages.len())
                .map_err(|_| PageServerError::BadRequest("too many pages for one layer".into()))?,
            block_count: u32::try_from(self.blocks.len()).expect("checked at each push"),
            index_offset: self.offset,
            index_len: index.len() as u64,
            index_crc: crc32fast::hash(&index),
        };
        // `out` stays in place until the file is whole, so that a failure
        // here leaves the file to `Drop` to remove.
        let out = self.out.as_mut().expect("the writer is not finished");
        let context = format!("writing {}", self.path.display());
        out.flush().map_err(PageServerError::io(context.clone()))?;
        out.get_ref()
            .write_all_at(&encode_header(&header), 0)
            .map_err(PageServerError::io(context))?;
        durable::sync_file(out.get_ref(), &self.path);
        let (file, _) = self.out.take().expect("checked above").into_parts();
        Ok(DeltaFile {
            path: std::mem::take(&mut self.path),
            file,
            range: self.range,
            file_bytes: header.index_offset + header.index_len,
            entry_count: self.entry_count,
            blocks: std::mem::take(&mut self.blocks),
            pages: self.pages.drain(..).collect(),
        })
    }
}

impl Drop for DeltaFileWriter {
    /// An unfinished file is removed: it has no header and would never open.
    fn drop(&mut self) {
        if self.out.take().is_some()
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e,
                "cannot remove an unfinished delta layer file");
        }
    }
}

/// A layer writer hands its file to writeback every this many bytes
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which starts the writes and
/// does not wait), as RocksDB's `bytes_per_sync` and PostgreSQL's
/// `*_flush_after` do. Without it, a flush's 16 MiB or a compaction's
/// 128 MiB stays dirty until the final fsync writes it in one burst: the
/// kernel's writeback work then comes in long stretches, and the whole
/// file reaches the disk's queue at once, ahead of other writers' fsyncs.
/// In the page server soak this halved how late real-time timers woke
/// while compacting (docs/pageserver.md, seventh pass). Durability is
/// unchanged: the file is still fsynced when it is finished.
const WRITE_BEHIND_BYTES: u64 = 1 << 20;

/// Starts writeback of `len` bytes of `file` from `offset`. Advisory: an
/// error (a filesystem without it) only means the final fsync writes them.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its arguments; the descriptor is
    // open for as long as `file` is borrowed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// `O_NOATIME` where there is one: reads of a layer file (GetPage's
/// lookups and rebuilds) then never update its access time. With
/// `relatime` the first read of a newly written file would, and that
/// needs a journal handle, which waits while the journal commits (a
/// flush's or compaction's fsync, the blocks freed by a deleted layer):
/// a read from the page cache would wait for the disk.
#[cfg(target_os = "linux")]
const NO_ATIME: i32 = libc::O_NOATIME;
#[cfg(not(target_os = "linux"))]
const NO_ATIME: i32 = 0;

/// Opens `path` for reading with [`NO_ATIME`], or without it where that
/// is refused (`EPERM`: a file this user does not own).
fn open_no_atime(path: &Path) -> std::io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(NO_ATIME)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        other => other,
    }
}

/// An open, verified delta layer file.
pub struct DeltaFile {
    path: PathBuf,
    file: File,
    range: LsnRange,
    file_bytes: u64,
    entry_count: u64,
    blocks: Vec<BlockMeta>,
    pages: HashMap<PageId, PageSummary>,
}

/// How much of a file's cached pages [`DeltaFile::drop_cached_pages`]
/// drops per call into the kernel.
const DROP_STEP_BYTES: u64 = 1 << 20;

impl DeltaFile {
    /// Asks the kernel to drop this file's pages from its page cache
    /// (`POSIX_FADV_DONTNEED`, a MiB per call; best effort). Called on a
    /// background thread for a file about to be deleted: the file's last
    /// close then has no cached pages to free, wherever it happens. That
    /// close can come on any thread holding the layer last, a GetPage
    /// thread among them; a close or unlink that freed a layer's cached
    /// pages stayed on the CPU up to a millisecond at p99, and GetPage
    /// stalls of tens of milliseconds followed deletions
    /// (docs/pageserver.md, eighth and tenth passes). A reader still
    /// holding the file reads it from the disk instead.
    pub fn drop_cached_pages(&self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let mut start = 0;
            while start < self.file_bytes {
                // SAFETY: posix_fadvise takes the open descriptor this
                // struct owns and no pointers.
                unsafe {
                    libc::posix_fadvise(
                        self.file.as_raw_fd(),
                        start as libc::off_t,
                        DROP_STEP_BYTES as libc::off_t,
                        libc::POSIX_FADV_DONTNEED,
                    );
                }
                start += DROP_STEP_BYTES;
            }
        }
    }

    pub fn open(path: &Path, cluster_id: &str) -> Result<DeltaFile> {
        let corrupt = |detail: String| PageServerError::corrupt(path, detail);
        let file = open_no_atime(path)
            .map_err(PageServerError::io(format!("opening {}", path.display())))?;
        let file_bytes = file
            .metadata()
            .map_err(PageServerError::io(format!(
                "reading metadata of {}",
                path.display()
            )))?
            .len();
        if file_bytes < HEADER_BYTES as u64 {
            return Err(corrupt(format!(
                "{file_bytes} bytes is too short for a delta layer header"
            )));
        }
        let mut raw = [0; HEADER_BYTES];
        read_exact_at(&file, path, &mut raw, 0)?;
        let header = decode_header(&raw).map_err(corrupt)?;
        check_header(&header, cluster_id, file_bytes).map_err(corrupt)?;
        let index_len = usize::try_from(header.index_len).expect("bounded by the file's length");
        let mut index = vec![0; index_len];
        read_exact_at(&file, path, &mut index, header.index_offset)?;
        if crc32fast::hash(&index) != header.index_crc {
            return Err(corrupt(format!(
                "index at offset {}: crc mismatch",
                header.index_offset
            )));
        }
        let (blocks, pages) = decode_index(&index, &header).map_err(corrupt)?;
        Ok(DeltaFile {
            path: path.to_path_buf(),
            file,
            range: header.range,
            file_bytes,
            entry_count: header.entry_count,
            blocks,
            pages,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that the file was renamed to `path` (by its writer, before
    /// anything else knew it).
    pub(crate) fn renamed(&mut self, path: PathBuf) {
        self.path = path;
    }

    pub fn range(&self) -> LsnRange {
        self.range
    }

    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    pub fn entry_count(&self) -> u64 {
        self.entry_count
    }

    pub fn summary(&self, page: PageId) -> Option<PageSummary> {
        self.pages.get(&page).copied()
    }

    pub fn pages(&self) -> Vec<(PageId, PageSummary)> {
        self.pages.iter().map(|(p, s)| (*p, *s)).collect()
    }

    /// Every entry of `page` with an LSN at or below `upto`, in order. Reads
    /// only the page's blocks, and of those only the ones that start at or
    /// below `upto`.
    pub fn read_page(&self, page: PageId, upto: Lsn) -> Result<Vec<(Lsn, Value)>> {
        let Some(summary) = self.pages.get(&page) else {
            return Ok(Vec::new());
        };
        if upto < summary.first_lsn {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for block_no in summary.first_block..=summary.last_block {
            let meta = &self.blocks[block_no as usize];
            if block_no > summary.first_block && meta.first > (page, upto, true) {
                break;
            }
            let entries = self.read_block(block_no as usize)?;
            out.extend(
                entries
                    .into_iter()
                    .filter(|e| e.page == page && e.lsn <= upto)
                    .map(|e| (e.lsn, e.value)),
            );
        }
        if upto >= summary.last_lsn && out.len() != summary.entries as usize {
            return Err(self.corrupt(format!(
                "page {page}: the index counts {} entries, its blocks hold {}",
                summary.entries,
                out.len()
            )));
        }
        Ok(out)
    }

    /// Every entry of the file, in layer order.
    pub fn read_all(&self) -> Result<Vec<Entry>> {
        let mut out: Vec<Entry> = Vec::with_capacity(self.entry_count as usize);
        for block_no in 0..self.blocks.len() {
            let entries = self.read_block(block_no)?;
            if let (Some(last), Some(next)) = (out.last(), entries.first())
                && key_of(next) <= key_of(last)
            {
                return Err(self.corrupt(format!(
                    "block {block_no}: its first entry is not after the previous block's last"
                )));
            }
            out.extend(entries);
        }
        if out.len() as u64 != self.entry_count {
            return Err(self.corrupt(format!(
                "the header counts {} entries, the blocks hold {}",
                self.entry_count,
                out.len()
            )));
        }
        Ok(out)
    }

    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Reads block `block_no`, checks its crc and decodes its entries.
    pub fn read_block(&self, block_no: usize) -> Result<Vec<Entry>> {
        let meta = self.blocks[block_no];
        let mut buf = vec![0; meta.len as usize];
        read_exact_at(&self.file, &self.path, &mut buf, meta.offset)?;
        // Only an error names the block: formatting it on every read cost
        // an allocation on the read path.
        let what = || format!("block {block_no} at offset {}", meta.offset);
        if crc32fast::hash(&buf) != meta.crc {
            return Err(self.corrupt(format!("{}: crc mismatch", what())));
        }
        decode_block(Bytes::from(buf), &meta, self.range)
            .map_err(|detail| self.corrupt(format!("{}: {detail}", what())))
    }

    fn corrupt(&self, detail: String) -> PageServerError {
        PageServerError::corrupt(&self.path, detail)
    }
}

/// The file's identity and size; the index would be too long to print.
impl std::fmt::Debug for DeltaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaFile")
            .field("path", &self.path)
            .field("range", &self.range)
            .field("file_bytes", &self.file_bytes)
            .field("entry_count", &self.entry_count)
            .field("page_count", &self.pages.len())
            .field("block_count", &self.blocks.len())
            .finish()
    }
}

impl std::fmt::Debug for DeltaFileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaFileWriter")
            .field("path", &self.path)
            .field("range", &self.range)
            .field("entry_count", &self.entry_count)
            .finish()
    }
}

fn key_of(e: &Entry) -> Key {
    entry_key(e.page, e.lsn, &e.value)
}

/// Fills `buf` from `offset`; a file that ends early is corrupt.
fn read_exact_at(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            PageServerError::corrupt(
                path,
                format!(
                    "truncated: {} bytes at offset {offset} are missing",
                    buf.len()
                ),
            )
        } else {
            PageServerError::io(format!("reading {}", path.display()))(e)
        }
    })
}

fn check_cluster_id(cluster_id: &str) -> std::result::Result<(), String> {
    if cluster_id.len() > MAX_CLUSTER_ID_BYTES {
        return Err(format!(
            "cluster id of {} bytes is longer than {MAX_CLUSTER_ID_BYTES}",
            cluster_id.len()
        ));
    }
    Ok(())
}

fn encode_key(out: &mut Vec<u8>, (page, lsn, image): Key) {
    out.extend_from_slice(&page.space.to_le_bytes());
    out.extend_from_slice(&page.page_no.to_le_bytes());
    out.extend_from_slice(&lsn.0.to_le_bytes());
    out.push(if image { TAG_IMAGE } else { TAG_DELTA });
}

fn encode_entry(out: &mut Vec<u8>, key: Key, value: &[u8]) {
    encode_key(out, key);
    let len = u32::try_from(value.len()).expect("values are capped below u32::MAX");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value);
}

fn encode_index(blocks: &[BlockMeta], pages: &[(PageId, PageSummary)]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(blocks.len() * BLOCK_META_BYTES + pages.len() * PAGE_META_BYTES);
    for b in blocks {
        out.extend_from_slice(&b.offset.to_le_bytes());
        out.extend_from_slice(&b.len.to_le_bytes());
        out.extend_from_slice(&b.crc.to_le_bytes());
        encode_key(&mut out, b.first);
    }
    for (page, s) in pages {
        out.extend_from_slice(&page.space.to_le_bytes());
        out.extend_from_slice(&page.page_no.to_le_bytes());
        out.extend_from_slice(&s.first_lsn.0.to_le_bytes());
        out.extend_from_slice(&s.last_lsn.0.to_le_bytes());
        out.extend_from_slice(&s.entries.to_le_bytes());
        out.extend_from_slice(&s.first_block.to_le_bytes());
        out.extend_from_slice(&s.last_block.to_le_bytes());
    }
    out
}

fn encode_header(h: &Header) -> [u8; HEADER_BYTES] {
    let mut out = Vec::with_capacity(HEADER_BYTES);
    out.extend_from_slice(&DELTA_MAGIC);
    out.extend_from_slice(&DELTA_FORMAT_VERSION.to_le_bytes());
    let id = h.cluster_id.as_bytes();
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(id);
    out.resize(16 + MAX_CLUSTER_ID_BYTES, 0);
    for v in [h.range.start.0, h.range.end.0, h.entry_count] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&h.page_count.to_le_bytes());
    out.extend_from_slice(&h.block_count.to_le_bytes());
    out.extend_from_slice(&h.index_offset.to_le_bytes());
    out.extend_from_slice(&h.index_len.to_le_bytes());
    out.extend_from_slice(&h.index_crc.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.try_into()
        .expect("the header layout adds up to HEADER_BYTES")
}

/// Decodes the header, checking magic, version and crc, in that order: a
/// foreign file is "not a layer file", a later format (whose header may be
/// laid out differently) "unsupported version", a damaged one "crc
/// mismatch".
fn decode_header(raw: &[u8; HEADER_BYTES]) -> std::result::Result<Header, String> {
    if raw[..8] != DELTA_MAGIC {
        return Err("bad magic: not a Strata delta layer file".into());
    }
    let mut r = ByteReader::new(&raw[8..HEADER_CRC_AT]);
    let version = r.u32()?;
    if version != DELTA_FORMAT_VERSION {
        return Err(format!(
            "unsupported format version {version} (this build reads {DELTA_FORMAT_VERSION})"
        ));
    }
    let stored = u32::from_le_bytes(raw[HEADER_CRC_AT..].try_into().expect("4 bytes"));
    if crc32fast::hash(&raw[..HEADER_CRC_AT]) != stored {
        return Err("header: crc mismatch".into());
    }
    let id_len = r.u32()? as usize;
    let id = r.bytes(MAX_CLUSTER_ID_BYTES)?;
    let cluster_id = id
        .get(..id_len)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or("header: the cluster id is not valid")?
        .to_string();
    Ok(Header {
        cluster_id,
        range: LsnRange {
            start: Lsn(r.u64()?),
            end: Lsn(r.u64()?),
        },
        entry_count: r.u64()?,
        page_count: r.u32()?,
        block_count: r.u32()?,
        index_offset: r.u64()?,
        index_len: r.u64()?,
        index_crc: r.u32()?,
    })
}

/// The header's claims that need no more of the file.
fn check_header(h: &Header, cluster_id: &str, file_bytes: u64) -> std::result::Result<(), String> {
    if h.cluster_id != cluster_id {
        return Err(format!(
            "belongs to cluster {:?}, not {cluster_id:?}",
            h.cluster_id
        ));
    }
    if h.range.start >= h.range.end {
        return Err(format!(
            "header: empty range ({}, {}]",
            h.range.start, h.range.end
        ));
    }
    let expected_len = u64::from(h.block_count) * BLOCK_META_BYTES as u64
        + u64::from(h.page_count) * PAGE_META_BYTES as u64;
    if h.index_len != expected_len {
        return Err(format!(
            "header: index of {} bytes cannot hold {} blocks and {} pages",
            h.index_len, h.block_count, h.page_count
        ));
    }
    if h.index_offset < HEADER_BYTES as u64
        || h.index_offset.checked_add(h.index_len) != Some(file_bytes)
    {
        return Err(format!(
            "truncated or overlong: the index at offset {} of {} bytes does not end the {file_bytes}-byte file",
            h.index_offset, h.index_len
        ));
    }
    Ok(())
}

type Index = (Vec<BlockMeta>, HashMap<PageId, PageSummary>);

/// Decodes and checks the index (its crc already verified).
fn decode_index(index: &[u8], h: &Header) -> std::result::Result<Index, String> {
    let mut r = ByteReader::new(index);
    let mut blocks: Vec<BlockMeta> = Vec::with_capacity(h.block_count as usize);
    let mut next_offset = HEADER_BYTES as u64;
    for block_no in 0..h.block_count {
        let meta = BlockMeta {
            offset: r.u64()?,
            len: r.u32()?,
            crc: r.u32()?,
            first: decode_key(&mut r)?,
        };
        if meta.offset != next_offset || meta.len < ENTRY_HEADER_BYTES as u32 {
            return Err(format!(
                "index: block {block_no} at offset {} of {} bytes does not follow the previous block",
                meta.offset, meta.len
            ));
        }
        if blocks.last().is_some_and(|prev| prev.first >= meta.first) {
            return Err(format!("index: block {block_no} is out of order"));
        }
        next_offset += u64::from(meta.len);
        blocks.push(meta);
    }
    if next_offset != h.index_offset {
        return Err(format!(
            "index: the blocks end at offset {next_offset}, the index starts at {}",
            h.index_offset
        ));
    }
    let pages = decode_pages(&mut r, h)?;
    Ok((blocks, pages))
}

/// Decodes and checks the page table, the index's second part.
fn decode_pages(
    r: &mut ByteReader<'_>,
    h: &Header,
) -> std::result::Result<HashMap<PageId, PageSummary>, String> {
    let mut pages = HashMap::with_capacity(h.page_count as usize);
    let mut prev: Option<PageId> = None;
    let mut entries = 0u64;
    for _ in 0..h.page_count {
        let page = PageId::new(r.u32()?, r.u32()?);
        let s = PageSummary {
            first_lsn: Lsn(r.u64()?),
            last_lsn: Lsn(r.u64()?),
            entries: r.u32()?,
            first_block: r.u32()?,
            last_block: r.u32()?,
        };
        let sane = prev.is_none_or(|p| p < page)
            && h.range.contains(s.first_lsn)
            && h.range.contains(s.last_lsn)
            && s.first_lsn <= s.last_lsn
            && s.entries > 0
            && s.first_block <= s.last_block
            && s.last_block < h.block_count;
        if !sane {
            return Err(format!("index: the entry of page {page} is inconsistent"));
        }
        entries += u64::from(s.entries);
        prev = Some(page);
        pages.insert(page, s);
    }
    // Every entry takes at least its header's bytes: this bounds what a
    // reader may allocate from these counts.
    let max_entries = (h.index_offset - HEADER_BYTES as u64) / ENTRY_HEADER_BYTES as u64;
    if entries != h.entry_count || entries > max_entries {
        return Err(format!(
            "index: pages hold {entries} entries, the header counts {}",
            h.entry_count
        ));
    }
    Ok(pages)
}

fn decode_key(r: &mut ByteReader<'_>) -> std::result::Result<Key, String> {
    let page = PageId::new(r.u32()?, r.u32()?);
    let lsn = Lsn(r.u64()?);
    let image = match r.u8()? {
        TAG_DELTA => false,
        TAG_IMAGE => true,
        tag => return Err(format!("unknown value tag {tag}")),
    };
    Ok((page, lsn, image))
}

/// Decodes a block's entries (its crc already verified); values slice the
/// block's buffer.
fn decode_block(
    block: Bytes,
    meta: &BlockMeta,
    range: LsnRange,
) -> std::result::Result<Vec<Entry>, String> {
    let mut r = ByteReader::new(&block);
    let mut out: Vec<Entry> = Vec::new();
    while !r.is_empty() {
        let at = r.pos;
        let key = decode_key(&mut r).map_err(|e| format!("entry at byte {at}: {e}"))?;
        let len = r.u32().map_err(|e| format!("entry at byte {at}: {e}"))? as usize;
        if len > r.remaining() {
            return Err(format!("entry at byte {at} runs past its block"));
        }
        let value = block.slice(r.pos..r.pos + len);
        r.pos += len;
        let wrong_first = out.is_empty() && key != meta.first;
        if wrong_first || out.last().is_some_and(|last| key_of(last) >= key) {
            return Err(format!("entry at byte {at} is out of order"));
        }
        if !range.contains(key.1) {
            return Err(format!(
                "entry at byte {at}: LSN {} is outside the range",
                key.1
            ));
        }
        let (page, lsn, image) = key;
        let value = if image {
            Value::Image(value)
        } else {
            Value::Delta(value)
        };
        out.push(Entry { page, lsn, value });
    }
    Ok(out)
}

/// A bounds-checked cursor over bytes read from disk.
pub(crate) struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> ByteReader<'a> {
        ByteReader { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: {n} bytes needed at byte {}, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    pub(crate) fn u64(&mut self) -> std::result::Result<u64, String> {
        let b = self.bytes(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use proptest::prelude::*;
    use tempfile::TempDir;

    use super::*;

    const CLUSTER: &str = "test-cluster";

    fn range(start: u64, end: u64) -> LsnRange {
        LsnRange {
            start: Lsn(start),
            end: Lsn(end),
        }
    }

    fn entry(space: u32, page_no: u32, lsn: u64, image: bool, bytes: Vec<u8>) -> Entry {
        let bytes = Bytes::from(bytes);
        Entry {
            page: PageId::new(space, page_no),
            lsn: Lsn(lsn),
            value: if image {
                Value::Image(bytes)
            } else {
                Value::Delta(bytes)
            },
        }
    }

    /// Writes `entries` (in layer order) with blocks of about `block_bytes`.
    fn write(path: &Path, r: LsnRange, entries: &[Entry], block_bytes: usize) -> DeltaFile {
        let mut w = DeltaFileWriter::with_block_target(path, CLUSTER, r, block_bytes).unwrap();
        for e in entries {
            w.push(e.page, e.lsn, &e.value).unwrap();
        }
        w.finish().unwrap()
    }

    /// What `read_page(page, upto)` must return, from the entries written.
    fn model_page(entries: &[Entry], page: PageId, upto: Lsn) -> Vec<(Lsn, Value)> {
        entries
            .iter()
            .filter(|e| e.page == page && e.lsn <= upto)
            .map(|e| (e.lsn, e.value.clone()))
            .collect()
    }

    /// Checks every page at several `upto`s, `read_all` and the figures.
    fn check_matches(f: &DeltaFile, entries: &[Entry]) {
        assert_eq!(f.read_all().unwrap(), entries);
        assert_eq!(f.entry_count(), entries.len() as u64);
        let mut pages: Vec<PageId> = entries.iter().map(|e| e.page).collect();
        pages.dedup();
        assert_eq!(f.page_count(), pages.len());
        for page in pages {
            let lsns: Vec<Lsn> = entries
                .iter()
                .filter(|e| e.page == page)
                .map(|e| e.lsn)
                .collect();
            let s = f.summary(page).unwrap();
            assert_eq!((s.first_lsn, s.last_lsn), (lsns[0], *lsns.last().unwrap()));
            assert_eq!(s.entries as usize, lsns.len());
            let mut uptos = vec![Lsn(0), f.range().end, Lsn::MAX];
            uptos.extend(lsns.iter().flat_map(|l| [Lsn(l.0 - 1), *l]));
            for upto in uptos {
                assert_eq!(
                    f.read_page(page, upto).unwrap(),
                    model_page(entries, page, upto),
                    "page {page} upto {upto}"
                );
            }
        }
    }

    fn assert_corrupt<T: std::fmt::Debug>(r: Result<T>, needle: &str) {
        match r {
            Err(PageServerError::Corrupt { detail, .. }) => {
                assert!(detail.contains(needle), "{detail:?} lacks {needle:?}")
            }
            other => panic!("expected Corrupt ({needle}), got {other:?}"),
        }
    }

    fn assert_bad_request<T: std::fmt::Debug>(r: Result<T>) {
        assert!(
            matches!(r, Err(PageServerError::BadRequest(_))),
            "expected BadRequest, got {r:?}"
        );
    }

    /// A few pages with deltas and images, an image sharing an LSN with a
    /// delta, in layer order.
    fn small_entries() -> Vec<Entry> {
        vec![
            entry(0, 0, 11, false, b"d0".to_vec()),
            entry(0, 0, 11, true, b"i0".to_vec()),
            entry(0, 0, 30, false, b"d1".to_vec()),
            entry(0, 7, 12, false, vec![]),
            entry(3, 1, 50, true, vec![9; 300]),
            entry(3, 1, 99, false, b"last".to_vec()),
        ]
    }

    #[test]
    fn round_trip_small_and_reopened() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("layer");
        let entries = small_entries();
        let f = write(&path, range(10, 100), &entries, BLOCK_TARGET_BYTES);
        check_matches(&f, &entries);
        let bytes = f.file_bytes();
        assert_eq!(bytes, std::fs::metadata(&path).unwrap().len());
        drop(f);
        let f = DeltaFile::open(&path, CLUSTER).unwrap();
        check_matches(&f, &entries);
        assert_eq!(
            (f.range(), f.file_bytes(), f.path()),
            (range(10, 100), bytes, &*path)
        );
        assert_eq!(f.read_page(PageId::new(9, 9), Lsn::MAX).unwrap(), vec![]);
        assert_eq!(f.summary(PageId::new(9, 9)), None);
        let mut pages = f.pages();
        pages.sort_by_key(|(p, _)| *p);
        let ids: Vec<PageId> = pages.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            ids,
            [PageId::new(0, 0), PageId::new(0, 7), PageId::new(3, 1)]
        );
    }

    #[test]
    fn empty_layer_round_trips() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("layer");
        write(&path, range(1, 2), &[], BLOCK_TARGET_BYTES);
        let f = DeltaFile::open(&path, CLUSTER).unwrap();
        assert_eq!((f.entry_count(), f.page_count()), (0, 0));
        assert_eq!(f.read_all().unwrap(), vec![]);
        assert_eq!(f.file_bytes(), HEADER_BYTES as u64);
    }

    #[test]
    fn an_entry_larger_than_a_block_makes_a_large_block() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("layer");
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut entries: Vec<Entry> = (0..40)
            .map(|i| entry(1, 1, 1 + i, false, vec![i as u8; 1000]))
            .collect();
        entries.push(entry(1, 1, 41, true, big));
        entries.extend((0..40).map(|i| entry(1, 2, 1 + i, false, vec![7; 1000])));
        write(&path, range(0, 100), &entries, BLOCK_TARGET_BYTES);
        let f = DeltaFile::open(&path, CLUSTER).unwrap();
        check_matches(&f, &entries);
        assert!(f.blocks.len() >= 3);
        assert!(f.blocks.iter().any(|b| b.len as usize > 100_000));
        assert!(f.blocks.iter().all(|b| b.len as usize <= 100_000 + 1024));
    }

    #[test]
    fn reads_leave_the_access_time_alone() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("layer");
        write(&path, range(0, 100), &small_entries(), BLOCK_TARGET_BYTES);
        // An access time before the last change: with `relatime` (the
        // usual mount option) a plain read would move it to now.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_accessed(old))
            .unwrap();
        let f = DeltaFile::open(&path, CLUSTER).unwrap();
        f.read_all().unwrap();
        let accessed = std::fs::metadata(&path).unwrap().accessed().unwrap();
        assert_eq!(accessed, old);
    }

    #[test]
    fn thousands_of_pages_round_trip() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("layer");
        let mut entries = Vec::new();
        for page_no in 0..5000u32 {
            let base = 1000 + u64::from(page_no % 97) * 10;
            entries.push(entry(
                2,
                page_no,
                base,
                false,
                // Sizes vary, so that block boundaries fall inside pages.
                page_no.to_le_bytes().repeat(1 + page_no as usize % 13),
            ));
            entries.push(entry(2, page_no, base + 3, false, vec![1; 20]));
            entries.push(entry(2, page_no, base + 3, true, vec![2; 60]));
        }
        write(&path, range(999, 2000), &entries, BLOCK_TARGET_BYTES);
        let f = DeltaFile::open(&path, CLUSTER).unwrap();
        assert!(f.blocks.len() > 10, "{} blocks", f.blocks.len());
        check_matches(&f, &entries);
        // A page spanning two blocks reads both.
        let spanning = f
            .pages()
            .into_iter()
            .find(|(_, s)| s.first_block < s.last_block);
        let (page, _) = spanning.expect("some page straddles a block boundary");
        assert_eq!(f.read_page(page, Lsn::MAX).unwrap().len(), 3);
    }

    /// An 8 KiB image for each of `pages` pages of space 2, at LSN 1000.
    fn image_per_page(pages: u32) -> Vec<Entry> {
        (0..pages)
            .map(|page_no| entry(2, page_no, 1000, true, page_no.to_le_bytes().repeat(2048)))
            .collect()
    }

    #[test]
    fn a_file_written_back_as_it_grows_round_trips() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("layer");
        let entries = image_per_page(600);
        write(&path, range(999, 2000), &entries, BLOCK_TARGET_BYTES);
        let f = DeltaFile::open(&path, CLUSTER).unwrap();
        assert!(
            f.file_bytes() > 4 * WRITE_BEHIND_BYTES,
            "{} bytes: several write-behind windows",
            f.file_bytes()
        );
        check_matches(&f, &entries);
    }

    /// Pages of the file at `path` in the OS page cache (`mincore` over a
    /// read-only mapping).
    #[cfg(target_os = "linux")]
    fn cached_pages(path: &Path) -> usize {
        use std::os::fd::AsRawFd;
        let file = File::open(path).unwrap();
        let len = file.metadata().unwrap().len() as usize;
        // SAFETY: a read-only shared mapping of an open file, unmapped
        // before return; mincore writes one byte per page into `vec`,
        // which has room for every page of `len`.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED);
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let mut vec = vec![0u8; len.div_ceil(page)];
            assert_eq!(libc::mincore(addr, len, vec.as_mut_ptr()), 0);
            libc::munmap(addr, len);
            vec.iter().filter(|&&b| b & 1 == 1).count()
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn dropping_cached_pages_leaves_none_and_the_file_readable() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("layer");
        let entries = image_per_page(300);
        write(&path, range(999, 2000), &entries, BLOCK_TARGET_BYTES);
        let f = DeltaFile::open(&path, CLUSTER).unwrap();
        f.read_all().unwrap();
        let before = cached_pages(&path);
        // SAFETY: statfs writes into the zeroed struct it is given.
        let fs_type = unsafe {
            let mut st: libc::statfs = std::mem::zeroed();
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            assert_eq!(libc::statfs(c.as_ptr(), &mut st), 0);
            st.f_type
        };
        // tmpfs keeps its pages whatever the advice: nothing to check.
        const TMPFS_MAGIC: libc::__fsword_t = 0x0102_1994;
        if fs_type == TMPFS_MAGIC || before == 0 {
            eprintln!(
                "skipped: {} cached pages on file system type {fs_type:#x}",
                before
            );
            return;
        }
        f.drop_cached_pages();
        let after = cached_pages(&path);
        assert_eq!(after, 0, "{before} cached pages before, {after} after");
        check_matches(&f, &entries);
    }

    #[test]
    fn reads_from_many_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<DeltaFile>();
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("layer");
        let entries: Vec<Entry> = (0..2000)
            .map(|i| entry(0, i, 5, false, vec![i as u8; 100]))
            .collect();
        let f = Arc::new(write(&path, range(0, 10), &entries, 4096));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (f, entries) = (f.clone(), entries.clone());
                std::thread::spawn(move || {
                    for e in entries.iter().skip(t).step_by(4) {
                        let got = f.read_page(e.page, Lsn(5)).unwrap();
                        assert_eq!(got, vec![(e.lsn, e.value.clone())]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn the_writer_refuses_entries_out_of_order_duplicate_or_out_of_range() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("layer");
        let mut w = DeltaFileWriter::create(&path, CLUSTER, range(10, 20)).unwrap();
        let (p0, p1) = (PageId::new(0, 0), PageId::new(0, 1));
        let d = Value::Delta(Bytes::from_static(b"d"));
        let i = Value::Image(Bytes::from_static(b"i"));
        assert_bad_request(w.push(p0, Lsn(10), &d)); // start is outside (start, end]
        assert_bad_request(w.push(p0, Lsn(21), &d));
        w.push(p1, Lsn(15), &d).unwrap();
        assert_bad_request(w.push(p1, Lsn(15), &d)); // duplicate
        assert_bad_request(w.push(p0, Lsn(16), &d)); // earlier page
        assert_bad_request(w.push(p1, Lsn(14), &d)); // earlier LSN
        w.push(p1, Lsn(15), &i).unwrap(); // image after delta at one LSN
        assert_bad_request(w.push(p1, Lsn(15), &d)); // delta after image
        w.push(p1, Lsn(20), &d).unwrap(); // end is inside
        let f = w.finish().unwrap();
        let got: Vec<Lsn> = f.read_all().unwrap().iter().map(|e| e.lsn).collect();
        assert_eq!(got, [Lsn(15), Lsn(15), Lsn(20)]);
    }

    #[test]
    fn create_refuses_an_existing_file_a_long_cluster_id_and_an_empty_range() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("layer");
        write(&path, range(0, 100), &small_entries()[..1], 1024);
        let before = std::fs::read(&path).unwrap();
        let r = DeltaFileWriter::create(&path, CLUSTER, range(0, 10));
        assert!(matches!(r, Err(PageServerError::Io { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before, "not clobbered");
        let other = dir.path().join("other");
        assert_bad_request(DeltaFileWriter::create(
            &other,
            &"x".repeat(65),
            range(0, 1),
        ));
        assert_bad_request(DeltaFileWriter::create(&other, CLUSTER, range(5, 5)));
        assert!(!other.exists());
        let long = "c".repeat(MAX_CLUSTER_ID_BYTES);
        DeltaFileWriter::create(&other, &long, range(0, 1))
            .unwrap()
            .finish()
            .unwrap();
        DeltaFile::open(&other, &long).unwrap();
    }

    #[test]
    fn an_unfinished_writer_removes_its_file() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("layer");
        let mut w = DeltaFileWriter::create(&path, CLUSTER, range(0, 10)).unwrap();
        w.push(PageId::new(0, 0), Lsn(1), &Value::Delta(Bytes::new()))
            .unwrap();
        assert!(path.exists());
        drop(w);
        assert!(!path.exists());
    }

    /// Rewrites the header of the file at `path` through `f`, fixing its crc.
    fn patch_header(path: &Path, f: impl FnOnce(&mut [u8])) {
        let mut bytes = std::fs::read(path).unwrap();
        f(&mut bytes[..HEADER_BYTES]);
        let crc = crc32fast::hash(&bytes[..HEADER_CRC_AT]);
        bytes[HEADER_CRC_AT..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(path, bytes).unwrap();
    }

    /// Rewrites block `block_no` through `f` (same length) and fixes every
    /// crc above it, so that only the block's decoding can find the fault.
    fn patch_block(path: &Path, block_no: usize, f: impl FnOnce(&mut [u8])) {
        let mut bytes = std::fs::read(path).unwrap();
        let le64 = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        let index_at = le64(&bytes, 112) as usize;
        let meta_at = index_at + block_no * BLOCK_META_BYTES;
        let offset = le64(&bytes, meta_at) as usize;
        let len = u32::from_le_bytes(bytes[meta_at + 8..meta_at + 12].try_into().unwrap());
        let block = &mut bytes[offset..offset + len as usize];
        f(block);
        let crc = crc32fast::hash(block);
        bytes[meta_at + 12..meta_at + 16].copy_from_slice(&crc.to_le_bytes());
        let index_crc = crc32fast::hash(&bytes[index_at..]);
        std::fs::write(path, &bytes).unwrap();
        patch_header(path, |h| {
            h[128..132].copy_from_slice(&index_crc.to_le_bytes())
        });
    }

    fn written(dir: &TempDir) -> PathBuf {
        let path = dir.path().join("layer");
        write(&path, range(10, 100), &small_entries(), 64);
        path
    }

    #[test]
    fn open_refuses_another_cluster_bad_magic_and_unknown_version() {
        let dir = TempDir::new().unwrap();
        let path = written(&dir);
        assert_corrupt(DeltaFile::open(&path, "other-cluster"), "cluster");
        patch_header(&path, |h| h[8..12].copy_from_slice(&2u32.to_le_bytes()));
        assert_corrupt(
            DeltaFile::open(&path, CLUSTER),
            "unsupported format version 2",
        );
        // A later format's header need not end in a crc where ours does: the
        // version is read before the crc is checked.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert_corrupt(DeltaFile::open(&path, CLUSTER), "version 3");
        bytes[0] = b'X';
        std::fs::write(&path, &bytes).unwrap();
        assert_corrupt(DeltaFile::open(&path, CLUSTER), "bad magic");
    }

    #[test]
    fn open_refuses_truncated_and_overlong_files() {
        let dir = TempDir::new().unwrap();
        let path = written(&dir);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert_corrupt(DeltaFile::open(&path, CLUSTER), "truncated");
        std::fs::write(&path, &bytes[..100]).unwrap();
        assert_corrupt(DeltaFile::open(&path, CLUSTER), "too short");
        let mut longer = bytes.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert_corrupt(DeltaFile::open(&path, CLUSTER), "overlong");
    }

    #[test]
    fn a_block_with_an_unknown_tag_or_an_overlong_entry_is_corrupt() {
        let dir = TempDir::new().unwrap();
        let path = written(&dir);
        // Block 0 holds (0:0, 11, delta) then more: its first tag is byte 16.
        patch_block(&path, 0, |b| b[16] = 7);
        let f = DeltaFile::open(&path, CLUSTER).unwrap();
        assert_corrupt(
            f.read_all(),
            "block 0 at offset 136: entry at byte 0: unknown value tag 7",
        );
        assert_corrupt(
            f.read_page(PageId::new(0, 0), Lsn::MAX),
            "unknown value tag",
        );
        // The page in another block still reads.
        assert_eq!(f.read_page(PageId::new(3, 1), Lsn::MAX).unwrap().len(), 2);

        let path = dir.path().join("second");
        write(&path, range(10, 100), &small_entries(), 64);
        patch_block(&path, 0, |b| {
            b[17..21].copy_from_slice(&1000u32.to_le_bytes())
        });
        let f = DeltaFile::open(&path, CLUSTER).unwrap();
        assert_corrupt(f.read_all(), "runs past its block");
    }

    #[test]
    fn a_flipped_block_bit_names_the_block() {
        let dir = TempDir::new().unwrap();
        let path = written(&dir);
        let f = DeltaFile::open(&path, CLUSTER).unwrap();
        let b = f.blocks[1];
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[b.offset as usize + 3] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let want = format!("block 1 at offset {}: crc mismatch", b.offset);
        assert_corrupt(f.read_all(), &want);
    }

    #[test]
    fn read_page_reads_only_the_blocks_up_to_upto() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("layer");
        let entries: Vec<Entry> = (1..=10)
            .map(|lsn| entry(0, 0, lsn * 10, false, vec![lsn as u8; 40]))
            .collect();
        write(&path, range(0, 100), &entries, 64); // one entry per block
        let f = DeltaFile::open(&path, CLUSTER).unwrap();
        assert_eq!(f.blocks.len(), 10);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[f.blocks[5].offset as usize + 30] ^= 1; // the entry at LSN 60
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(f.read_page(PageId::new(0, 0), Lsn(59)).unwrap().len(), 5);
        assert_corrupt(f.read_page(PageId::new(0, 0), Lsn(60)), "block 5");
        assert_corrupt(f.read_page(PageId::new(0, 0), Lsn::MAX), "crc mismatch");
    }

    #[test]
    fn every_flipped_bit_of_a_small_file_is_reported() {
        let dir = TempDir::new().unwrap();
        let path = written(&dir);
        let clean = std::fs::read(&path).unwrap();
        for at in 0..clean.len() {
            for bit in 0..8 {
                let mut bytes = clean.clone();
                bytes[at] ^= 1 << bit;
                std::fs::write(&path, &bytes).unwrap();
                let outcome = DeltaFile::open(&path, CLUSTER).and_then(|f| f.read_all());
                assert!(
                    matches!(outcome, Err(PageServerError::Corrupt { .. })),
                    "bit {bit} of byte {at}: {outcome:?}"
                );
            }
        }
    }

    /// Up to ~60 entries over a few pages, in layer order, some large.
    fn arb_entries() -> impl Strategy<Value = Vec<Entry>> {
        let value = prop_oneof![
            8 => proptest::collection::vec(any::<u8>(), 0..64),
            1 => proptest::collection::vec(any::<u8>(), 0..3000),
        ];
        let key = (0..3u32, 0..6u32, 1..=200u64, any::<bool>());
        proptest::collection::btree_map(key, value, 0..60).prop_map(|m: BTreeMap<_, _>| {
            let mut entries: Vec<Entry> = m
                .into_iter()
                .map(|((space, page_no, lsn, image), v)| entry(space, page_no, lsn, image, v))
                .collect();
            entries.sort_by_key(key_of);
            entries
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn random_layers_round_trip(entries in arb_entries(), block_bytes in 1usize..2048) {
            let dir = TempDir::new().unwrap();
            let path = dir.path().join("layer");
            write(&path, range(0, 200), &entries, block_bytes);
            let f = DeltaFile::open(&path, CLUSTER).unwrap();
            check_matches(&f, &entries);
        }

        #[test]
        fn any_flipped_bit_is_reported_corrupt(
            entries in arb_entries(),
            at in any::<proptest::sample::Index>(),
            bit in 0..8u8,
        ) {
            let dir = TempDir::new().unwrap();
            let path = dir.path().join("layer");
            write(&path, range(0, 200), &entries, 256);
            let mut bytes = std::fs::read(&path).unwrap();
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
            std::fs::write(&path, &bytes).unwrap();
            let outcome = DeltaFile::open(&path, CLUSTER).and_then(|f| f.read_all());
            prop_assert!(
                matches!(outcome, Err(PageServerError::Corrupt { .. })),
                "flipping bit {bit} of byte {at} of {} went unnoticed: {outcome:?}",
                bytes.len()
            );
        }
    }
}
