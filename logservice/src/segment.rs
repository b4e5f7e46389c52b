//! Segment files: the real [`Storage`] of a log replica, on plain files.
//!
//! A replica's data directory holds its control file (see
//! [`crate::control_file`]) and `wal/{start_lsn:016X}.seg`, one file per
//! segment. A segment is a fixed [`SEGMENT_HEADER_BYTES`]-byte header
//! followed by the log bytes from its start LSN on:
//!
//! ```text
//!   0  magic        8   b"STRATLOG"
//!   8  version      u32 SEGMENT_FORMAT_VERSION
//!  12  start_lsn    u64 (equal to the file name's)
//!  20  cluster_id   u16 length + UTF-8 bytes (at most MAX_CLUSTER_ID_BYTES)
//!  ..  zero padding
//! 508  crc32        u32 of bytes 0..508
//! ```
//!
//! Invariants:
//! - Segments are contiguous: each starts where the one before ends. Only
//!   the last segment is ever written to, and a record never straddles two
//!   segments, so every segment start is a record boundary (a recovery
//!   point). A record larger than a segment goes alone into its own.
//! - Segments are preallocated: a new segment is first a spare file
//!   (`next-segment.tmp`) of the full segment size, written with zeros and
//!   fsynced, so that appends overwrite allocated blocks and `fdatasync`
//!   has no metadata to write. At a roll its header is written and fsynced
//!   and only then is it renamed to its segment name (and the directory
//!   fsynced), so a named segment is never torn by our own crash. The
//!   spare for the next roll is zero-filled on a background thread once
//!   the last segment is half full, off the append path; a leftover spare
//!   is deleted on open. A torn header (an older layout, or a file damaged outside
//!   us) is still deleted if it is the last segment and holds no data. A
//!   bad header anywhere else, or with data behind it, may hide
//!   acknowledged data: it is [`LogError::CorruptFile`], never repaired.
//! - The last segment's data end is not its file length: `open` finds it by
//!   scanning records from the segment start up to the first one that does
//!   not decode (a zero length, a bad crc). Everything past the data end of
//!   the last segment is zeros: `open` rewrites with zeros any bytes a
//!   crash left past the scanned end, and `truncate` zeroes the bytes it
//!   cuts and fsyncs before it returns, so a record beyond a cut can never
//!   be read back as data by a later open. `read` stops at the data end.
//! - Before the next segment is created the current one is cut to exactly
//!   its data and fsynced, so a crash can never leave a gap between two
//!   segments; a gap or an overlap found on open is corruption. Segments
//!   other than the last are therefore measured by their file length.
//! - Group fsync: [`SegmentStorage::sync_job`] hands out the files that
//!   hold unsynced data and `SyncJob::run` fsyncs them outside the caller's
//!   lock. Where the file system takes direct I/O, the last segment's
//!   appends stay in memory until a sync job writes them with one
//!   `O_DIRECT | O_DSYNC` write instead (see [`crate::tail`]; off with
//!   `STRATA_LOG_DIRECT_IO=0`). Before a segment is sealed, cut or
//!   dropped, what memory holds of it is written out. A failed fsync (or
//!   direct write) aborts the process: after one the kernel may have
//!   dropped the dirty pages, and a retry would report a success that is
//!   not one (Postgres' "fsyncgate"). The same holds for every fsync here.
//! - `truncate` and `trim` delete whole files (newest first for truncate,
//!   oldest first for trim), so a crash part way leaves a contiguous log.
//!
//! Cutting a torn tail back to the last complete batch is not done here:
//! the replica core does it through `read`, `truncate` and
//! `recovery_points`. This module depends on std, the WAL framing (a
//! record's first four bytes are its length) and the control file; nothing
//! here knows about terms, quorums or the network.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use strata_wal::Lsn;
use strata_wal::record::{HEADER_BYTES, MAX_RECORD_BYTES, RecordIter};

use crate::control_file::{self, ByteReader, fsync_dir, must_sync};
use crate::error::{LogError, Result};
use crate::storage::{Control, Storage, SyncJob};
use crate::tail::{BLOCK_BYTES, DirectTail, TailWrite};

pub const SEGMENT_MAGIC: [u8; 8] = *b"STRATLOG";
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Every segment file starts with a header of this many bytes.
pub const SEGMENT_HEADER_BYTES: u64 = 512;
/// The default size of a segment file, header included.
pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 64 << 20;
/// The longest cluster id a segment header holds.
pub const MAX_CLUSTER_ID_BYTES: usize = 255;
const CRC_OFFSET: usize = SEGMENT_HEADER_BYTES as usize - 4;
const WAL_DIR_NAME: &str = "wal";
const SEGMENT_SUFFIX: &str = ".seg";
/// The preallocated file the next segment is made from.
const SPARE_FILE_NAME: &str = "next-segment.tmp";
/// Zeros are written in chunks of this many bytes: a buffered write is a
/// call the kernel may not preempt (on a kernel without full preemption),
/// so a short one lets a woken thread have the core sooner.
const ZERO_CHUNK_BYTES: u64 = 64 << 10;

/// Writes zeros over bytes `from..to` of `file`.
fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; to.saturating_sub(from).min(ZERO_CHUNK_BYTES) as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZERO_CHUNK_BYTES) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Creates `path` as `size_bytes` of written zeros (not holes: a write
/// into a hole changes metadata), fsynced; with direct writes where the
/// log writes its last segment that way.
fn create_zeroed(path: &Path, size_bytes: u64, mode: IoMode) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(LogError::io(format!("creating {}", path.display())))?;
    let zero_fill = || {
        if mode == IoMode::Direct && crate::tail::write_zeros_direct(path, size_bytes)? {
            return Ok(());
        }
        write_zeros(&file, 0, size_bytes)
    };
    zero_fill().map_err(LogError::io(format!("zero-filling {}", path.display())))?;
    must_sync(file.sync_all(), path);
    Ok(file)
}

/// The name of the segment file starting at `start`.
pub fn segment_file_name(start: Lsn) -> String {
    format!("{:016X}{SEGMENT_SUFFIX}", start.0)
}

/// The start LSN a segment file name encodes, if it is one.
fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let hex = name.strip_suffix(SEGMENT_SUFFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(Lsn)
}

fn encode_header(cluster_id: &str, start: Lsn) -> Vec<u8> {
    let mut h = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
    h.extend_from_slice(&SEGMENT_MAGIC);
    h.extend_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    h.extend_from_slice(&start.0.to_le_bytes());
    let len = u16::try_from(cluster_id.len()).expect("cluster id length checked at open");
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(cluster_id.as_bytes());
    h.resize(CRC_OFFSET, 0);
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// Why a segment header does not decode.
#[derive(Debug)]
enum HeaderFault {
    /// Short, or not yet a header at all: what a crash while creating the
    /// file leaves.
    Torn(String),
    /// A whole header that this build must refuse.
    Fatal(LogError),
}

/// Decodes the header at the front of `buf` (the file's first bytes);
/// returns the start LSN it names.
fn decode_header(buf: &[u8], what: &str, cluster_id: &str) -> Result<Lsn, HeaderFault> {
    let fatal = |detail: String| {
        HeaderFault::Fatal(LogError::CorruptFile {
            what: what.to_string(),
            detail,
        })
    };
    if buf.len() < SEGMENT_HEADER_BYTES as usize {
        return Err(HeaderFault::Torn(format!(
            "{} bytes, shorter than a header",
            buf.len()
        )));
    }
    if buf[..8] != SEGMENT_MAGIC {
        return Err(HeaderFault::Torn("bad magic".into()));
    }
    let crc_bytes: [u8; 4] = buf[CRC_OFFSET..CRC_OFFSET + 4].try_into().expect("4 bytes");
    let stored = u32::from_le_bytes(crc_bytes);
    let computed = crc32fast::hash(&buf[..CRC_OFFSET]);
    if stored != computed {
        return Err(HeaderFault::Torn(format!(
            "header crc mismatch (stored {stored:#010x}, computed {computed:#010x})"
        )));
    }
    let mut r = ByteReader::new(&buf[8..CRC_OFFSET]);
    let (version, start, id) = read_header_fields(&mut r).map_err(|e| fatal(e.into()))?;
    if version != SEGMENT_FORMAT_VERSION {
        return Err(fatal(format!(
            "unsupported segment format version {version} (this build reads {SEGMENT_FORMAT_VERSION})"
        )));
    }
    if id != cluster_id.as_bytes() {
        let ours = String::from_utf8_lossy(id).into_owned();
        return Err(HeaderFault::Fatal(LogError::WrongCluster {
            ours,
            theirs: cluster_id.into(),
        }));
    }
    Ok(start)
}

fn read_header_fields<'a>(r: &mut ByteReader<'a>) -> Result<(u32, Lsn, &'a [u8]), &'static str> {
    let version = r.u32()?;
    let start = Lsn(r.u64()?);
    let len = r.u16()? as usize;
    Ok((version, start, r.bytes(len)?))
}

/// The lengths of the whole records `bytes` is made of.
fn record_lengths(bytes: &[u8]) -> Result<Vec<usize>> {
    let mut lens = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let len = match bytes.get(pos..pos + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
            None => 0,
        };
        if !(HEADER_BYTES..=MAX_RECORD_BYTES).contains(&len) || len > bytes.len() - pos {
            return Err(LogError::BadRequest(format!(
                "write is not whole records: at byte {pos} of {}, a record length of {len}",
                bytes.len()
            )));
        }
        lens.push(len);
        pos += len;
    }
    Ok(lens)
}

/// A run of whole records written to one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chunk {
    bytes: u64,
    /// Whether a new segment starts with this chunk.
    new_segment: bool,
}

/// Splits records of `lens` into chunks so that none crosses a segment
/// boundary. `current` is the data held by the last segment (`None` if
/// there is none), `capacity` the data one segment holds.
fn plan_chunks(current: Option<u64>, capacity: u64, lens: &[usize]) -> Vec<Chunk> {
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut used = current;
    for &len in lens {
        let len = len as u64;
        let roll = match used {
            None => true,
            Some(used) => used > 0 && used + len > capacity,
        };
        match chunks.last_mut() {
            Some(c) if !roll => c.bytes += len,
            _ => chunks.push(Chunk {
                bytes: len,
                new_segment: roll,
            }),
        }
        used = Some(if roll { len } else { used.unwrap_or(0) + len });
    }
    chunks
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    start: Lsn,
    /// Log bytes held after the header (for the last segment, not its file
    /// length: zeros follow).
    data_bytes: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Whether bytes were written since the last sync job was handed out.
    unsynced: bool,
    /// The last segment's direct-I/O tail, if it takes direct I/O.
    tail: Option<DirectTail>,
}

impl Segment {
    fn end(&self) -> Lsn {
        self.start.advance(self.data_bytes)
    }

    fn what(&self) -> String {
        self.path.display().to_string()
    }

    /// Gives the segment a direct-I/O tail, if `mode` and the file system
    /// allow: memory starts with the block holding its data end.
    fn start_tail(&mut self, mode: IoMode) -> Result<()> {
        if mode != IoMode::Direct || self.tail.is_some() {
            return Ok(());
        }
        let end = SEGMENT_HEADER_BYTES + self.data_bytes;
        let base = end / BLOCK_BYTES * BLOCK_BYTES;
        let mut bytes = vec![0; (end - base) as usize];
        self.file
            .read_exact_at(&mut bytes, base)
            .map_err(LogError::io_with(|| format!("reading {}", self.what())))?;
        self.tail = DirectTail::open(&self.path, base, bytes).map_err(LogError::io_with(|| {
            format!("opening {} for direct I/O", self.what())
        }))?;
        Ok(())
    }

    /// Writes out what memory holds and drops the tail: the file holds
    /// every byte (durably) from here on.
    fn end_tail(&mut self) {
        if let Some(tail) = self.tail.take() {
            must_sync(tail.write_job().run(), &self.path);
        }
    }
}

/// How the last segment is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// Buffered writes, then `fdatasync`.
    Buffered,
    /// Appends in memory, then one `O_DIRECT | O_DSYNC` write per sync,
    /// where the file system takes it (buffered otherwise).
    Direct,
}

impl IoMode {
    /// Direct unless `STRATA_LOG_DIRECT_IO=0`.
    pub fn from_env() -> IoMode {
        match std::env::var("STRATA_LOG_DIRECT_IO").as_deref() {
            Ok("0") => IoMode::Buffered,
            _ => IoMode::Direct,
        }
    }
}

/// Makes durable the segment files that held unsynced data when it was
/// made: fsyncs the buffered ones, writes the direct tail.
#[derive(Debug)]
pub struct SegmentSync {
    files: Vec<(PathBuf, Arc<File>)>,
    tail: Option<(PathBuf, TailWrite)>,
}

impl SyncJob for SegmentSync {
    fn run(self) -> Result<()> {
        for (path, file) in &self.files {
            must_sync(file.sync_data(), path);
        }
        if let Some((path, write)) = &self.tail {
            // As a failed fsync, a failed synchronous write aborts.
            must_sync(write.run(), path);
        }
        Ok(())
    }
}

/// The log of one replica in segment files, and its control file.
#[derive(Debug)]
pub struct SegmentStorage {
    dir: PathBuf,
    wal_dir: PathBuf,
    cluster_id: String,
    segment_size_bytes: u64,
    control: Option<Control>,
    /// Ascending and contiguous.
    segments: Vec<Segment>,
    /// The thread zero-filling the spare file for the next roll.
    spare: Option<JoinHandle<Result<File>>>,
    io_mode: IoMode,
}

impl Drop for SegmentStorage {
    /// Waits for the spare's thread, so that it never writes into a file a
    /// reopened storage has taken; writes out the direct tail, so that a
    /// storage closed without a last sync leaves its bytes in the file as
    /// buffered writes would.
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
        }
        self.write_out_tail();
    }
}

impl SegmentStorage {
    /// Opens (creating if new) the replica directory `dir` of cluster
    /// `cluster_id`. See the module doc for what is checked and repaired.
    pub fn open(
        dir: &Path,
        cluster_id: &str,
        replica_id: u32,
        segment_size_bytes: u64,
    ) -> Result<SegmentStorage> {
        Self::open_with(
            dir,
            cluster_id,
            replica_id,
            segment_size_bytes,
            IoMode::from_env(),
        )
    }

    /// [`SegmentStorage::open`], writing the last segment as `io_mode` says.
    pub fn open_with(
        dir: &Path,
        cluster_id: &str,
        replica_id: u32,
        segment_size_bytes: u64,
        io_mode: IoMode,
    ) -> Result<SegmentStorage> {
        check_open_args(cluster_id, segment_size_bytes)?;
        let wal_dir = dir.join(WAL_DIR_NAME);
        create_dir_durably(dir)?;
        create_dir_durably(&wal_dir)?;
        let control = control_file::load(dir, cluster_id)?;
        if let Some(c) = &control
            && c.replica_id != replica_id
        {
            return Err(LogError::BadRequest(format!(
                "{} belongs to replica {}, not to replica {replica_id}",
                dir.display(),
                c.replica_id
            )));
        }
        remove_spare(&wal_dir)?;
        let mut segments = load_segments(&wal_dir, cluster_id)?;
        if let Some(last) = segments.last_mut() {
            last.start_tail(io_mode)?;
        }
        if control.is_none() && !segments.is_empty() {
            return Err(LogError::CorruptFile {
                what: control_file::control_path(dir).display().to_string(),
                detail: "missing, while the log holds segment files".into(),
            });
        }
        let mut storage = SegmentStorage {
            dir: dir.to_path_buf(),
            wal_dir,
            cluster_id: cluster_id.to_string(),
            segment_size_bytes,
            control,
            segments,
            spare: None,
            io_mode,
        };
        storage.maybe_start_spare();
        tracing::info!(dir = %dir.display(), start = %storage.start(), end = %storage.end(),
            segments = storage.segments.len(), "opened the log");
        Ok(storage)
    }

    /// Writes out what the direct tail holds and drops it (until reopened,
    /// appends go to the file directly).
    fn write_out_tail(&mut self) {
        if let Some(last) = self.segments.last_mut()
            && let Some(tail) = last.tail.take()
            && let Err(e) = tail.write_job().run()
        {
            tracing::warn!(path = %last.what(), error = %e, "writing the log's tail at close failed");
        }
    }

    /// Log bytes one segment holds (a larger record still gets one alone).
    fn capacity(&self) -> u64 {
        self.segment_size_bytes - SEGMENT_HEADER_BYTES
    }

    /// Starts zero-filling the spare file for the next roll on a thread
    /// once the last segment is half full (or there is none), unless one is
    /// already under way. Not earlier: writing a segment's worth of zeros
    /// competes with the appends' fsyncs for the disk.
    fn maybe_start_spare(&mut self) {
        let half_full = self
            .segments
            .last()
            .is_none_or(|s| s.data_bytes >= self.capacity() / 2);
        if self.spare.is_some() || !half_full {
            return;
        }
        let path = self.wal_dir.join(SPARE_FILE_NAME);
        let size_bytes = self.segment_size_bytes;
        let mode = self.io_mode;
        let spawned = std::thread::Builder::new()
            .name("log-segment-prealloc".into())
            .spawn(move || create_zeroed(&path, size_bytes, mode));
        match spawned {
            Ok(handle) => self.spare = Some(handle),
            // The roll will zero-fill the spare itself.
            Err(e) => tracing::warn!(error = %e, "could not start preallocating a segment"),
        }
    }

    /// The zero-filled spare file, waiting for its thread (or making it
    /// here if there is none, or it failed).
    fn take_spare(&mut self) -> Result<File> {
        let path = self.wal_dir.join(SPARE_FILE_NAME);
        if let Some(handle) = self.spare.take() {
            match handle
                .join()
                .expect("the preallocation thread does not panic")
            {
                Ok(file) => return Ok(file),
                Err(e) => tracing::warn!(error = %e, "preallocating a segment failed; retrying"),
            }
        }
        create_zeroed(&path, self.segment_size_bytes, self.io_mode)
    }

    /// Cuts the last segment to exactly its data and fsyncs it, then starts
    /// a new segment at `at` from the spare: header written and fsynced,
    /// then renamed and the directory fsynced, before any data goes in.
    fn roll(&mut self, at: Lsn) -> Result<()> {
        if let Some(last) = self.segments.last_mut() {
            last.end_tail();
            last.file
                .set_len(SEGMENT_HEADER_BYTES + last.data_bytes)
                .map_err(LogError::io(format!("sealing {}", last.what())))?;
            must_sync(last.file.sync_all(), &last.path);
            last.unsynced = false;
        }
        let spare = self.wal_dir.join(SPARE_FILE_NAME);
        let path = self.wal_dir.join(segment_file_name(at));
        let file = self.take_spare()?;
        file.write_all_at(&encode_header(&self.cluster_id, at), 0)
            .map_err(LogError::io(format!(
                "writing the header of {}",
                path.display()
            )))?;
        must_sync(file.sync_data(), &spare);
        fs::rename(&spare, &path).map_err(LogError::io(format!(
            "renaming {} to {}",
            spare.display(),
            path.display()
        )))?;
        fsync_dir(&self.wal_dir)?;
        let mut segment = Segment {
            start: at,
            data_bytes: 0,
            path,
            file: Arc::new(file),
            unsynced: false,
            tail: None,
        };
        segment.start_tail(self.io_mode)?;
        self.segments.push(segment);
        Ok(())
    }

    /// Writes `bytes` at the end of the last segment.
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let last = self
            .segments
            .last_mut()
            .expect("a chunk is planned into a segment");
        match &last.tail {
            Some(tail) => tail.push(bytes),
            None => last
                .file
                .write_all_at(bytes, SEGMENT_HEADER_BYTES + last.data_bytes)
                .map_err(LogError::io_with(|| format!("writing {}", last.what())))?,
        }
        last.data_bytes += bytes.len() as u64;
        last.unsynced = true;
        self.maybe_start_spare();
        Ok(())
    }

    /// Deletes the segments from index `keep` on, newest first.
    fn delete_from(&mut self, keep: usize) -> Result<()> {
        while self.segments.len() > keep {
            let seg = self.segments.last().expect("more than `keep` segments");
            fs::remove_file(&seg.path).map_err(LogError::io(format!("deleting {}", seg.what())))?;
            self.segments.pop();
        }
        fsync_dir(&self.wal_dir)
    }

    /// Deletes the `n` oldest segments, oldest first.
    fn delete_oldest(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        for _ in 0..n {
            let seg = &self.segments[0];
            fs::remove_file(&seg.path).map_err(LogError::io(format!("deleting {}", seg.what())))?;
            self.segments.remove(0);
        }
        fsync_dir(&self.wal_dir)
    }

    /// Copies log bytes from `from` into `out`, crossing segment files.
    fn read_into(&self, from: Lsn, out: &mut [u8]) -> Result<()> {
        let mut i = self
            .segments
            .partition_point(|s| s.start <= from)
            .saturating_sub(1);
        let mut pos = from;
        let mut filled = 0;
        while filled < out.len() {
            let Some(seg) = self.segments.get(i) else {
                break;
            };
            let offset = pos.bytes_since(seg.start);
            let take = (seg.data_bytes.saturating_sub(offset) as usize).min(out.len() - filled);
            let at = SEGMENT_HEADER_BYTES + offset;
            let mut part = &mut out[filled..filled + take];
            if let Some(tail) = &seg.tail {
                // Below the memory window the bytes are in the file.
                let in_file = tail.base().saturating_sub(at).min(part.len() as u64) as usize;
                let (from_file, from_memory) = part.split_at_mut(in_file);
                if !from_memory.is_empty() && !tail.read(at + in_file as u64, from_memory) {
                    return Err(LogError::CorruptFile {
                        what: seg.what(),
                        detail: format!("the direct tail does not hold offset {at}"),
                    });
                }
                part = from_file;
            }
            seg.file
                .read_exact_at(part, at)
                .map_err(LogError::io_with(|| format!("reading {}", seg.what())))?;
            filled += take;
            pos = pos.advance(take as u64);
            i += 1;
        }
        Ok(())
    }
}

fn check_open_args(cluster_id: &str, segment_size_bytes: u64) -> Result<()> {
    if cluster_id.is_empty() || cluster_id.len() > MAX_CLUSTER_ID_BYTES {
        return Err(LogError::BadRequest(format!(
            "a cluster id is 1 to {MAX_CLUSTER_ID_BYTES} bytes, not {}",
            cluster_id.len()
        )));
    }
    if segment_size_bytes <= SEGMENT_HEADER_BYTES {
        return Err(LogError::BadRequest(format!(
            "segment_size_bytes must exceed the {SEGMENT_HEADER_BYTES}-byte header, not {segment_size_bytes}"
        )));
    }
    Ok(())
}

/// Creates `dir` if it does not exist, and makes its entry durable.
fn create_dir_durably(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(LogError::io(format!("creating {}", dir.display())))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fsync_dir(parent),
        _ => fsync_dir(Path::new(".")),
    }
}

/// Deletes a spare left by an earlier run (it may be part written).
fn remove_spare(wal_dir: &Path) -> Result<()> {
    let path = wal_dir.join(SPARE_FILE_NAME);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(format!("deleting {}", path.display()))(e)),
    }
}

/// The segment files in `wal_dir` by start LSN, ascending.
fn list_segment_files(wal_dir: &Path) -> Result<Vec<(Lsn, PathBuf)>> {
    let context = || format!("listing {}", wal_dir.display());
    let mut found = Vec::new();
    for entry in fs::read_dir(wal_dir).map_err(LogError::io(context()))? {
        let path = entry.map_err(LogError::io(context()))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        match parse_segment_file_name(name) {
            Some(start) => found.push((start, path)),
            None if name.ends_with(SEGMENT_SUFFIX) => {
                return Err(LogError::CorruptFile {
                    what: path.display().to_string(),
                    detail: "a segment file name is 16 hex digits and .seg".into(),
                });
            }
            None => {
                tracing::warn!(path = %path.display(), "ignoring a stray file among the segments")
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Opens and checks every segment in `wal_dir`; deletes a last segment
/// whose header is torn.
fn load_segments(wal_dir: &Path, cluster_id: &str) -> Result<Vec<Segment>> {
    let files = list_segment_files(wal_dir)?;
    let mut segments: Vec<Segment> = Vec::with_capacity(files.len());
    for (i, (name_start, path)) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        let Some(seg) = open_segment(path, *name_start, cluster_id, is_last)? else {
            fs::remove_file(path).map_err(LogError::io(format!("deleting {}", path.display())))?;
            fsync_dir(wal_dir)?;
            continue;
        };
        if let Some(prev) = segments.last()
            && prev.end() != seg.start
        {
            let kind = if prev.end() < seg.start {
                "gap"
            } else {
                "overlap"
            };
            return Err(LogError::CorruptFile {
                what: seg.what(),
                detail: format!(
                    "starts at {}, but the segment before ends at {}: a {kind}",
                    seg.start,
                    prev.end()
                ),
            });
        }
        segments.push(seg);
    }
    if let Some(last) = segments.last_mut() {
        last.data_bytes = scan_data_end(&last.file, last.start, &last.what())?;
    }
    Ok(segments)
}

/// Opens one segment file and checks its header. `None`: a torn last
/// segment that never held data, to delete.
fn open_segment(
    path: &Path,
    name_start: Lsn,
    cluster_id: &str,
    is_last: bool,
) -> Result<Option<Segment>> {
    let what = path.display().to_string();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(LogError::io(format!("opening {what}")))?;
    let len = file
        .metadata()
        .map_err(LogError::io(format!("reading the size of {what}")))?
        .len();
    let mut header = vec![0; len.min(SEGMENT_HEADER_BYTES) as usize];
    file.read_exact_at(&mut header, 0)
        .map_err(LogError::io(format!("reading {what}")))?;
    let start = match decode_header(&header, &what, cluster_id) {
        Ok(start) => start,
        Err(HeaderFault::Torn(why)) if is_last && len <= SEGMENT_HEADER_BYTES => {
            tracing::warn!(path = %what, why = %why, "deleting a segment torn while it was created");
            return Ok(None);
        }
        Err(HeaderFault::Torn(detail)) => return Err(LogError::CorruptFile { what, detail }),
        Err(HeaderFault::Fatal(e)) => return Err(e),
    };
    if start != name_start {
        return Err(LogError::CorruptFile {
            what,
            detail: format!("header says it starts at {start}"),
        });
    }
    let path = path.to_path_buf();
    // For the last segment, `load_segments` replaces this by a scan.
    let data_bytes = len - SEGMENT_HEADER_BYTES;
    Ok(Some(Segment {
        start,
        data_bytes,
        path,
        file: Arc::new(file),
        unsynced: false,
        tail: None,
    }))
}

/// The data end of the last segment (starting at `start`): where its first record that does not decode begins. Bytes
/// after it that are not zero (what a crash can leave of unsynced writes)
/// are overwritten with zeros and fsynced, so that they cannot join the log
/// when later writes reach them.
fn scan_data_end(file: &File, start: Lsn, what: &str) -> Result<u64> {
    let len = file
        .metadata()
        .map_err(LogError::io(format!("reading the size of {what}")))?
        .len();
    let mut buf = vec![0; (len - SEGMENT_HEADER_BYTES) as usize];
    file.read_exact_at(&mut buf, SEGMENT_HEADER_BYTES)
        .map_err(LogError::io(format!("reading {what}")))?;
    let mut records = RecordIter::new(&buf, start);
    while let Some(Ok(_)) = records.next() {}
    let data_bytes = records.next_start().bytes_since(start);
    let tail = &buf[data_bytes as usize..];
    if let (Some(first), Some(last)) = (
        tail.iter().position(|&b| b != 0),
        tail.iter().rposition(|&b| b != 0),
    ) {
        let from = SEGMENT_HEADER_BYTES + data_bytes + first as u64;
        let to = SEGMENT_HEADER_BYTES + data_bytes + last as u64 + 1;
        tracing::warn!(
            path = what,
            from,
            to,
            "zeroing bytes past the end of the log"
        );
        write_zeros(file, from, to).map_err(LogError::io(format!("zeroing the tail of {what}")))?;
        must_sync(file.sync_data(), Path::new(what));
    }
    Ok(data_bytes)
}

impl Storage for SegmentStorage {
    type Sync = SegmentSync;

    /// The control state as last stored (or as `open` read it).
    fn load_control(&self) -> Option<Control> {
        self.control.clone()
    }

    fn store_control(&mut self, control: &Control) -> Result<()> {
        if control.cluster_id != self.cluster_id {
            return Err(LogError::WrongCluster {
                ours: self.cluster_id.clone(),
                theirs: control.cluster_id.clone(),
            });
        }
        control_file::store(&self.dir, control)?;
        self.control = Some(control.clone());
        Ok(())
    }

    fn start(&self) -> Lsn {
        self.segments.first().map_or(Lsn::ZERO, |s| s.start)
    }

    fn end(&self) -> Lsn {
        self.segments.last().map_or(Lsn::ZERO, Segment::end)
    }

    /// Appends whole records at `at == end()`; a write that is not whole
    /// records changes nothing. On an I/O error a prefix of the records
    /// may have been written: `end()` says how far.
    fn write(&mut self, at: Lsn, bytes: &[u8]) -> Result<()> {
        if at != self.end() {
            return Err(LogError::BadRequest(format!(
                "write at {at}, log ends at {}",
                self.end()
            )));
        }
        let lens = record_lengths(bytes)?;
        let current = self.segments.last().map(|s| s.data_bytes);
        let mut pos = 0;
        for chunk in plan_chunks(current, self.capacity(), &lens) {
            if chunk.new_segment {
                self.roll(self.end())?;
            }
            let n = chunk.bytes as usize;
            self.append(&bytes[pos..pos + n])?;
            pos += n;
        }
        Ok(())
    }

    fn sync_job(&mut self) -> SegmentSync {
        let mut job = SegmentSync {
            files: Vec::new(),
            tail: None,
        };
        for s in self.segments.iter_mut().filter(|s| s.unsynced) {
            s.unsynced = false;
            match &s.tail {
                Some(tail) => job.tail = Some((s.path.clone(), tail.write_job())),
                None => job.files.push((s.path.clone(), Arc::clone(&s.file))),
            }
        }
        job
    }

    /// Deletes the segments starting at or after `at` (but never the first,
    /// which keeps `start()`), zeroes the bytes from `at` on in the one
    /// holding `at` and fsyncs it (the file keeps its length, so the
    /// zeros stay allocated for the next appends). Everything below `at`
    /// is durable on return, and nothing at or after it can come back.
    /// `at` is a record boundary: a reopened log ends where its records do.
    fn truncate(&mut self, at: Lsn) -> Result<()> {
        let keep = self.segments.partition_point(|s| s.start < at).max(1);
        if keep < self.segments.len() {
            self.delete_from(keep)?;
        }
        let Some(last) = self.segments.last_mut() else {
            return Ok(());
        };
        let cut = last.data_bytes.min(at.bytes_since(last.start));
        // Cut in the file alone: memory is reloaded from it below.
        last.end_tail();
        write_zeros(
            &last.file,
            SEGMENT_HEADER_BYTES + cut,
            SEGMENT_HEADER_BYTES + last.data_bytes,
        )
        .map_err(LogError::io(format!("truncating {}", last.what())))?;
        last.data_bytes = cut;
        must_sync(last.file.sync_all(), &last.path);
        last.unsynced = false;
        last.start_tail(self.io_mode)
    }

    fn read(&self, from: Lsn, max_bytes: usize) -> Result<Vec<u8>> {
        if from < self.start() {
            return Err(LogError::Trimmed {
                lsn: from,
                start: self.start(),
            });
        }
        let n = (self.end().bytes_since(from)).min(max_bytes as u64) as usize;
        let mut out = vec![0; n];
        self.read_into(from, &mut out)?;
        Ok(out)
    }

    fn recovery_points(&self) -> Vec<Lsn> {
        if self.segments.is_empty() {
            return vec![self.start()];
        }
        self.segments.iter().map(|s| s.start).collect()
    }

    /// Deletes the oldest segments while the next one starts at or below
    /// `below`; never the last segment.
    fn trim(&mut self, below: Lsn) -> Result<Lsn> {
        let n = self.segments.partition_point(|s| s.start <= below);
        self.delete_oldest(n.saturating_sub(1))?;
        Ok(self.start())
    }

    fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use strata_wal::record::{RecordIter, encode_raw};
    use strata_wal::{PageId, RecordKind};

    use super::*;
    use crate::control_file::new_incarnation;
    use crate::storage::MemStorage;

    const CLUSTER: &str = "c1";
    const SEG: u64 = 4096;

    /// Records whose bodies have the lengths `bodies`, framed from `start`.
    fn records(start: Lsn, bodies: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = start;
        for (i, &n) in bodies.iter().enumerate() {
            let body = vec![i as u8; n];
            at = encode_raw(
                &mut out,
                at,
                RecordKind::RowChange,
                PageId::default(),
                &body,
            )
            .unwrap();
        }
        out
    }

    /// A fresh storage in `dir` with its control file stored.
    fn create(dir: &Path, segment_size_bytes: u64) -> SegmentStorage {
        create_with(dir, segment_size_bytes, IoMode::from_env())
    }

    fn create_with(dir: &Path, segment_size_bytes: u64, mode: IoMode) -> SegmentStorage {
        let mut s = reopen_with(dir, segment_size_bytes, mode);
        assert_eq!(s.load_control(), None);
        let control = Control {
            cluster_id: CLUSTER.into(),
            replica_id: 1,
            incarnation: new_incarnation(),
            ..Control::default()
        };
        s.store_control(&control).unwrap();
        s
    }

    fn reopen(dir: &Path, segment_size_bytes: u64) -> SegmentStorage {
        SegmentStorage::open(dir, CLUSTER, 1, segment_size_bytes).unwrap()
    }

    fn reopen_with(dir: &Path, segment_size_bytes: u64, mode: IoMode) -> SegmentStorage {
        SegmentStorage::open_with(dir, CLUSTER, 1, segment_size_bytes, mode).unwrap()
    }

    /// Appends records of body sizes `bodies` at the end; returns them.
    fn append(s: &mut SegmentStorage, bodies: &[usize]) -> Vec<u8> {
        let bytes = records(s.end(), bodies);
        s.write(s.end(), &bytes).unwrap();
        bytes
    }

    fn all(s: &SegmentStorage) -> Vec<u8> {
        s.read(s.start(), usize::MAX).unwrap()
    }

    /// A closed log in a new directory holding records of body sizes
    /// `bodies`: the directory, the log bytes, the segment starts.
    fn closed_log(bodies: &[usize]) -> (tempfile::TempDir, Vec<u8>, Vec<Lsn>) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = create(dir.path(), SEG);
        let bytes = append(&mut s, bodies);
        let points = s.recovery_points();
        (dir, bytes, points)
    }

    fn open_err(dir: &Path) -> LogError {
        SegmentStorage::open(dir, CLUSTER, 1, SEG).unwrap_err()
    }

    fn seg_path(dir: &Path, start: Lsn) -> PathBuf {
        dir.join(WAL_DIR_NAME).join(segment_file_name(start))
    }

    /// Every segment starts at a record boundary and holds at most one
    /// segment of data, unless it holds a single record.
    fn assert_segments_well_cut(s: &SegmentStorage) {
        for seg in &s.segments {
            let data = s.read(seg.start, seg.data_bytes as usize).unwrap();
            let records: Vec<_> = RecordIter::new(&data, seg.start).collect();
            assert!(
                records.iter().all(Result::is_ok),
                "{seg:?} holds a bad record"
            );
            let n = records.len();
            assert!(
                seg.data_bytes <= s.capacity() || n == 1,
                "{seg:?} holds {n} records"
            );
        }
    }

    #[test]
    fn plan_chunks_never_lets_a_record_straddle_segments() {
        let c = |bytes, new_segment| Chunk { bytes, new_segment };
        assert_eq!(
            plan_chunks(None, 100, &[40, 40, 40]),
            vec![c(80, true), c(40, true)]
        );
        assert_eq!(
            plan_chunks(Some(90), 100, &[10, 1]),
            vec![c(10, false), c(1, true)]
        );
        assert_eq!(
            plan_chunks(Some(0), 100, &[300, 30]),
            vec![c(300, false), c(30, true)]
        );
        assert_eq!(plan_chunks(Some(5), 100, &[300]), vec![c(300, true)]);
        assert_eq!(plan_chunks(Some(5), 100, &[]), vec![]);
    }

    #[test]
    fn write_read_round_trip_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = create(dir.path(), SEG);
        let mut expect = append(&mut s, &[100; 90]);
        expect.extend(append(&mut s, &[700, 10, 2000, 5]));
        assert_eq!(s.end(), Lsn(expect.len() as u64));
        assert!(s.segment_count() >= 4, "{} segments", s.segment_count());
        assert_eq!(all(&s), expect);
        for from in (0..expect.len()).step_by(97) {
            let got = s.read(Lsn(from as u64), 5000).unwrap();
            assert_eq!(got, expect[from..(from + 5000).min(expect.len())]);
        }
        assert!(s.read(s.end(), 10).unwrap().is_empty());
        assert!(s.read(s.end().advance(10), 10).unwrap().is_empty());
        assert_segments_well_cut(&s);
        for seg in &s.segments {
            let len = fs::metadata(&seg.path).unwrap().len();
            assert!(len <= SEG, "{} is {len} bytes", seg.what());
        }
    }

    #[test]
    fn a_record_bigger_than_a_segment_goes_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = create(dir.path(), 1024);
        let expect = [append(&mut s, &[10]), append(&mut s, &[3000, 10])].concat();
        assert_eq!(s.segment_count(), 3);
        let big = (HEADER_BYTES + 10) as u64;
        assert_eq!(
            s.recovery_points(),
            vec![Lsn(0), Lsn(big), Lsn(big + 3000 + HEADER_BYTES as u64)]
        );
        assert_eq!(all(&s), expect);
    }

    #[test]
    fn bad_writes_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = create(dir.path(), SEG);
        let bytes = append(&mut s, &[10, 10]);
        let more = records(s.end(), &[5]);
        assert!(matches!(
            s.write(Lsn(1), &more),
            Err(LogError::BadRequest(_))
        ));
        let torn = &more[..more.len() - 1];
        assert!(matches!(
            s.write(s.end(), torn),
            Err(LogError::BadRequest(_))
        ));
        assert!(matches!(
            s.write(s.end(), &[1, 0, 0, 0]),
            Err(LogError::BadRequest(_))
        ));
        assert!(matches!(
            s.write(s.end(), &[40, 0]),
            Err(LogError::BadRequest(_))
        ));
        assert_eq!(all(&s), bytes);
    }

    #[test]
    fn reopen_restores_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = create(dir.path(), SEG);
        let expect = append(&mut s, &[300; 40]);
        s.sync_job().run().unwrap();
        let (points, control) = (s.recovery_points(), s.load_control());
        drop(s);
        let s = reopen(dir.path(), SEG);
        assert_eq!((s.start(), s.end()), (Lsn(0), Lsn(expect.len() as u64)));
        assert_eq!(s.recovery_points(), points);
        assert_eq!(s.load_control(), control);
        assert_eq!(all(&s), expect);
    }

    #[test]
    fn sync_job_holds_only_files_with_unsynced_data() {
        for mode in [IoMode::Buffered, IoMode::Direct] {
            let dir = tempfile::tempdir().unwrap();
            let mut s = create_with(dir.path(), SEG, mode);
            assert!(job_paths(&s.sync_job()).is_empty());
            append(&mut s, &[100]);
            let job = s.sync_job();
            assert_eq!(job_paths(&job).len(), 1);
            job.run().unwrap();
            assert!(job_paths(&s.sync_job()).is_empty());
            // Rolling seals the full segment: only the new one is unsynced.
            append(&mut s, &[1000; 8]);
            let job = s.sync_job();
            assert_eq!(job_paths(&job), vec![&s.segments.last().unwrap().path]);
        }
    }

    fn job_paths(job: &SegmentSync) -> Vec<&PathBuf> {
        let files = job.files.iter().map(|(p, _)| p);
        files.chain(job.tail.iter().map(|(p, _)| p)).collect()
    }

    #[test]
    fn a_direct_tail_keeps_unsynced_bytes_out_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = create_with(dir.path(), SEG, IoMode::Direct);
        if s.segments.is_empty() {
            append(&mut s, &[10]);
            s.sync_job().run().unwrap();
        }
        if s.segments[0].tail.is_none() {
            eprintln!("no direct I/O on this file system: nothing to test");
            return;
        }
        let synced = all(&s);
        let unsynced = append(&mut s, &[100, 7]);
        // Readable at once, from memory…
        assert_eq!(all(&s), [synced.clone(), unsynced.clone()].concat());
        // …but not in the file: a killed process (no drop) loses them.
        let data = SEGMENT_HEADER_BYTES as usize..;
        let on_disk = fs::read(&s.segments[0].path).unwrap();
        assert_eq!(on_disk[data.clone()][..synced.len()], synced[..]);
        assert!(
            on_disk[data.clone()][synced.len()..]
                .iter()
                .all(|&b| b == 0)
        );
        s.sync_job().run().unwrap();
        let on_disk = fs::read(&s.segments[0].path).unwrap();
        let both = [synced, unsynced].concat();
        assert_eq!(on_disk[data][..both.len()], both[..]);
        // A reopened log reads them back from the file.
        drop(s);
        assert_eq!(all(&reopen(dir.path(), SEG)), both);
    }

    #[test]
    fn truncate_inside_a_segment_and_at_a_segment_start() {
        let (dir, expect, points) = closed_log(&[500; 40]);
        let mut s = reopen(dir.path(), SEG);
        let inside = points[2].advance((HEADER_BYTES + 500) as u64);
        s.truncate(inside).unwrap();
        assert_eq!((s.end(), s.segment_count()), (inside, 3));
        drop(s);
        let mut s = reopen(dir.path(), SEG);
        assert_eq!(all(&s), expect[..inside.0 as usize]);
        s.truncate(points[1]).unwrap();
        assert_eq!((s.end(), s.segment_count()), (points[1], 1));
        assert!(!seg_path(dir.path(), points[2]).exists());
        drop(s);
        let mut s = reopen(dir.path(), SEG);
        assert_eq!(all(&s), expect[..points[1].0 as usize]);
        // At the very start: the first segment stays, empty.
        s.truncate(Lsn(0)).unwrap();
        let s = reopen(dir.path(), SEG);
        assert_eq!((s.start(), s.end(), s.segment_count()), (Lsn(0), Lsn(0), 1));
    }

    #[test]
    fn segments_are_preallocated_and_the_end_is_found_by_scanning() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = create(dir.path(), SEG);
        let expect = append(&mut s, &[100; 3]);
        let path = s.segments[0].path.clone();
        assert_eq!(fs::metadata(&path).unwrap().len(), SEG);
        s.sync_job().run().unwrap();
        drop(s);
        let s = reopen(dir.path(), SEG);
        assert_eq!(s.end(), Lsn(expect.len() as u64));
        assert_eq!(all(&s), expect);
        assert!(s.read(s.end(), 100).unwrap().is_empty());
        assert_eq!(fs::metadata(&path).unwrap().len(), SEG);
    }

    #[test]
    fn a_cut_tail_is_never_resurrected() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = create(dir.path(), 1 << 16);
        let expect = append(&mut s, &[100; 10]);
        s.sync_job().run().unwrap();
        let rec = (HEADER_BYTES + 100) as u64;
        let at = Lsn(3 * rec);
        s.truncate(at).unwrap();
        drop(s);
        let mut s = reopen(dir.path(), 1 << 16);
        assert_eq!(s.end(), at);
        // A record of the same size puts the old ones behind it back at
        // their own LSNs: had they not been zeroed, they would decode.
        let again = append(&mut s, &[100]);
        s.sync_job().run().unwrap();
        drop(s);
        let s = reopen(dir.path(), 1 << 16);
        assert_eq!(s.end(), at.advance(rec));
        assert_eq!(all(&s), [&expect[..at.0 as usize], &again].concat());
    }

    #[test]
    fn garbage_past_the_end_after_a_crash_is_zeroed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = create(dir.path(), 1 << 16);
        let expect = append(&mut s, &[100; 10]);
        s.sync_job().run().unwrap();
        let path = s.segments[0].path.clone();
        drop(s);
        // A torn fourth record, with the later ones written whole.
        let rec = HEADER_BYTES + 100;
        let file = File::options().write(true).open(&path).unwrap();
        let torn = SEGMENT_HEADER_BYTES + 3 * rec as u64 + 30;
        file.write_all_at(&[0xff], torn).unwrap();
        drop(file);
        let mut s = reopen(dir.path(), 1 << 16);
        assert_eq!(s.end(), Lsn(3 * rec as u64));
        let again = append(&mut s, &[100]);
        drop(s);
        let s = reopen(dir.path(), 1 << 16);
        assert_eq!(s.end(), Lsn(4 * rec as u64));
        assert_eq!(all(&s), [&expect[..3 * rec], &again].concat());
    }

    #[test]
    fn trim_keeps_the_last_segment_and_reads_below_start_are_trimmed() {
        let (dir, expect, points) = closed_log(&[500; 40]);
        let mut s = reopen(dir.path(), SEG);
        assert_eq!(s.trim(points[2].advance(1)).unwrap(), points[2]);
        assert_eq!(s.recovery_points(), points[2..]);
        assert!(
            matches!(s.read(Lsn(0), 10), Err(LogError::Trimmed { start, .. }) if start == points[2])
        );
        assert_eq!(s.trim(Lsn::MAX).unwrap(), *points.last().unwrap());
        assert_eq!(s.segment_count(), 1);
        drop(s);
        let s = reopen(dir.path(), SEG);
        assert_eq!(s.start(), *points.last().unwrap());
        assert_eq!(all(&s), expect[s.start().0 as usize..]);
    }

    #[test]
    fn torn_last_segment_header_is_removed_on_open() {
        let (dir, expect, points) = closed_log(&[500; 20]);
        let (end, count) = (Lsn(expect.len() as u64), points.len());
        let next = seg_path(dir.path(), end);
        for torn in [
            encode_header(CLUSTER, end)[..100].to_vec(),
            vec![0; 512],
            vec![],
        ] {
            fs::write(&next, torn).unwrap();
            let s = reopen(dir.path(), SEG);
            assert_eq!((s.end(), s.segment_count()), (end, count));
            assert_eq!(all(&s), expect);
            assert!(!next.exists());
        }
    }

    #[test]
    fn a_damaged_header_with_data_behind_it_is_corrupt() {
        let (dir, _, points) = closed_log(&[500; 20]);
        for (start, byte) in [(points[1], 30), (*points.last().unwrap(), 12)] {
            let path = seg_path(dir.path(), start);
            let good = fs::read(&path).unwrap();
            let mut bad = good.clone();
            bad[byte] ^= 0x04;
            fs::write(&path, bad).unwrap();
            let err = open_err(dir.path());
            assert!(
                matches!(&err, LogError::CorruptFile { what, .. } if what.ends_with(&segment_file_name(start))),
                "{err}"
            );
            fs::write(&path, good).unwrap();
        }
    }

    #[test]
    fn unknown_segment_version_is_corrupt() {
        let (dir, _, _) = closed_log(&[10]);
        let path = seg_path(dir.path(), Lsn(0));
        let mut bytes = fs::read(&path).unwrap();
        bytes[8] = 9;
        let crc = crc32fast::hash(&bytes[..CRC_OFFSET]);
        bytes[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, bytes).unwrap();
        let err = open_err(dir.path());
        assert!(
            matches!(err, LogError::CorruptFile { ref detail, .. } if detail.contains("version 9")),
            "{err}"
        );
    }

    #[test]
    fn gaps_and_overlaps_are_corrupt() {
        let (dir, _, points) = closed_log(&[500; 20]);
        // An overlap: the first segment holds a byte more than it should.
        let first = seg_path(dir.path(), points[0]);
        let len = fs::metadata(&first).unwrap().len();
        File::options()
            .write(true)
            .open(&first)
            .unwrap()
            .set_len(len + 1)
            .unwrap();
        let err = open_err(dir.path());
        assert!(
            err.to_string().contains("overlap")
                && err.to_string().contains(&segment_file_name(points[1])),
            "{err}"
        );
        // A gap: a middle segment is missing.
        File::options()
            .write(true)
            .open(&first)
            .unwrap()
            .set_len(len)
            .unwrap();
        fs::remove_file(seg_path(dir.path(), points[1])).unwrap();
        let err = open_err(dir.path());
        assert!(
            matches!(err, LogError::CorruptFile { .. }) && err.to_string().contains("gap"),
            "{err}"
        );
    }

    #[test]
    fn wrong_cluster_is_refused() {
        let (a, _, _) = closed_log(&[10]);
        let b = tempfile::tempdir().unwrap();
        let err = SegmentStorage::open(a.path(), "c2", 1, SEG).unwrap_err();
        assert!(matches!(err, LogError::WrongCluster { .. }), "{err}");
        // A segment of cluster c1 in a directory of cluster c2.
        let mut other = SegmentStorage::open(b.path(), "c2", 1, SEG).unwrap();
        let control = Control {
            cluster_id: "c2".into(),
            replica_id: 1,
            ..Control::default()
        };
        other.store_control(&control).unwrap();
        assert!(matches!(
            other.store_control(&Control::default()),
            Err(LogError::WrongCluster { .. })
        ));
        fs::copy(seg_path(a.path(), Lsn(0)), seg_path(b.path(), Lsn(0))).unwrap();
        let err = SegmentStorage::open(b.path(), "c2", 1, SEG).unwrap_err();
        assert!(
            matches!(&err, LogError::WrongCluster { ours, theirs } if ours == CLUSTER && theirs == "c2"),
            "{err}"
        );
    }

    #[test]
    fn open_refuses_bad_arguments_and_orphan_segments() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SegmentStorage::open(dir.path(), "", 1, SEG).is_err());
        assert!(SegmentStorage::open(dir.path(), CLUSTER, 1, SEGMENT_HEADER_BYTES).is_err());
        let mut s = create(dir.path(), SEG);
        append(&mut s, &[10]);
        drop(s);
        let err = SegmentStorage::open(dir.path(), CLUSTER, 2, SEG).unwrap_err();
        assert!(matches!(err, LogError::BadRequest(_)), "{err}");
        fs::remove_file(control_file::control_path(dir.path())).unwrap();
        let err = open_err(dir.path());
        assert!(matches!(err, LogError::CorruptFile { .. }), "{err}");
    }

    #[test]
    fn a_new_directory_is_created_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("replica");
        let s = SegmentStorage::open(&path, CLUSTER, 1, SEG).unwrap();
        assert!(path.join(WAL_DIR_NAME).is_dir());
        assert_eq!((s.start(), s.end(), s.segment_count()), (Lsn(0), Lsn(0), 0));
        assert_eq!(s.recovery_points(), vec![Lsn(0)]);
        assert_eq!(s.load_control(), None);
        assert!(s.read(Lsn(0), 100).unwrap().is_empty());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Write(Vec<usize>),
        Sync,
        /// Truncate at a record boundary, this per mille of the way along.
        Truncate(usize),
        /// Trim below this per mille of the log.
        Trim(u64),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop::collection::vec(0usize..1400, 1..6).prop_map(Op::Write),
            1 => Just(Op::Sync),
            1 => (0usize..=1000).prop_map(Op::Truncate),
            1 => (0u64..=1000).prop_map(Op::Trim),
            1 => Just(Op::Reopen),
        ]
    }

    /// The reference: `MemStorage`, and where its records start.
    #[derive(Default)]
    struct Model {
        mem: MemStorage,
        record_starts: Vec<Lsn>,
    }

    const PROP_SEG: u64 = 2048;

    /// Applies `op` to both the segment store and the model.
    fn apply(dir: &Path, s: &mut SegmentStorage, model: &mut Model, op: &Op, mode: IoMode) {
        match op {
            Op::Write(bodies) => {
                let at = model.mem.end();
                let bytes = records(at, bodies);
                let starts = RecordIter::new(&bytes, at).map(|r| r.unwrap().start);
                model.record_starts.extend(starts);
                s.write(at, &bytes).unwrap();
                model.mem.write(at, &bytes).unwrap();
            }
            Op::Sync => s.sync_job().run().unwrap(),
            Op::Truncate(f) => {
                let held: Vec<Lsn> = model
                    .record_starts
                    .iter()
                    .copied()
                    .filter(|p| *p >= s.start())
                    .collect();
                let Some(&at) = held.get(held.len() * f / 1000) else {
                    return;
                };
                s.truncate(at).unwrap();
                model.mem.truncate(at).unwrap();
                model.record_starts.retain(|p| *p < at);
            }
            Op::Trim(f) => {
                let (before, below) = (s.start(), Lsn(model.mem.end().0 * f / 1000));
                let start = s.trim(below).unwrap();
                assert!(
                    start >= before && start <= below.max(before),
                    "trim({below}) from {before} gave {start}"
                );
            }
            Op::Reopen => {
                // Closed first, as a restarted process would be.
                s.write_out_tail();
                *s = reopen_with(dir, PROP_SEG, mode);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn behaves_like_mem_storage(
            ops in prop::collection::vec(op(), 1..30),
            direct in any::<bool>(),
        ) {
            let mode = if direct { IoMode::Direct } else { IoMode::Buffered };
            let dir = tempfile::tempdir().unwrap();
            let mut s = create_with(dir.path(), PROP_SEG, mode);
            let mut model = Model::default();
            for op in &ops {
                apply(dir.path(), &mut s, &mut model, op, mode);
                prop_assert_eq!(s.end(), model.mem.end());
                let start = s.start();
                // (MemStorage::read overflows on usize::MAX.)
                prop_assert_eq!(all(&s), model.mem.read(start, 1 << 30).unwrap());
                prop_assert_eq!(s.recovery_points()[0], start);
                assert_segments_well_cut(&s);
            }
        }
    }
}
