//! Direct I/O for the last segment file.
//!
//! With buffered writes, making an append durable costs a copy into the
//! page cache, then `fdatasync` walking that cache, writing the dirty
//! pages back and flushing the disk. Measured on this project's machines
//! (pwrite and sync of 8 KiB, Python, same disk, side by side) buffered
//! write + fdatasync took 60–73 µs of CPU per sync, an `O_DIRECT |
//! O_DSYNC` write of the same blocks 24–42 µs, and a three-replica log
//! syncs once per commit group on each replica. So when the file system
//! takes direct I/O, the last segment is written this way:
//!
//! - an append goes to memory only ([`DirectTail::push`]): the bytes from
//!   the start of the block holding the last written byte to the data end;
//! - a sync job ([`TailWrite::run`]) writes the whole blocks from the one
//!   holding the first unwritten byte to the data end (zero padded) with
//!   one `O_DIRECT | O_DSYNC` write, durable when it returns. The already
//!   written bytes of the first block are written again unchanged, so a
//!   write torn at any sector leaves each sector old or new, both correct.
//! - Writes are serialised by a lock held across copying and writing, and
//!   each copies what is in memory when it starts, so a later write always
//!   carries everything an earlier one did: a block never goes back.
//! - Readers following the log read the newest bytes from memory; a
//!   window of [`WINDOW_BYTES`] is kept behind the last write for them.
//!   Bytes below the window are read from the file (buffered): they were
//!   written by a write that finished, and the kernel drops cached pages a
//!   direct write replaces.
//!
//! Bytes pushed and not yet written are not in the file: a process killed
//! before its sync loses them, as a crash loses unsynced buffered writes.
//! Nothing unsynced was acknowledged, so nothing acknowledged is lost.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

/// Direct writes cover whole blocks of this size, at offsets aligned to it
/// (a multiple of every logical block size in use).
pub const BLOCK_BYTES: u64 = 4096;
/// Bytes kept in memory behind the last write, for readers.
pub const WINDOW_BYTES: u64 = 4 << 20;
/// Room a tail's memory is given when it opens: memory is trimmed back
/// once it holds more than two windows, so this takes pushes of up to a
/// window each without the buffer growing. Grown by doubling instead, it
/// was copied at each step into fresh pages: in the page server's soak the
/// log's append threads took 41% of the process's page faults there.
const ROOM_BYTES: usize = 3 * WINDOW_BYTES as usize;

fn block_floor(off: u64) -> u64 {
    off / BLOCK_BYTES * BLOCK_BYTES
}

/// The file's newest bytes, in memory.
#[derive(Debug)]
struct Window {
    /// File offset of `bytes[0]`, block aligned.
    base: u64,
    bytes: Vec<u8>,
    /// File offset below which every byte is written (as `TailIo::written`,
    /// read here without waiting for a write in flight).
    written: u64,
}

impl Window {
    fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }
}

/// The last segment's direct handle and newest bytes.
#[derive(Debug)]
pub struct DirectTail {
    file: Arc<File>,
    window: Arc<Mutex<Window>>,
    /// File offset below which every byte is written; held across a write.
    io: Arc<Mutex<u64>>,
}

impl DirectTail {
    /// Opens `path` for direct writes, its bytes from `base` (block
    /// aligned) being `bytes` and all of them written. `None` if the file
    /// system does not take direct I/O.
    pub fn open(path: &Path, base: u64, mut bytes: Vec<u8>) -> std::io::Result<Option<DirectTail>> {
        debug_assert_eq!(base % BLOCK_BYTES, 0);
        let opened = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(path);
        let file = match opened {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
            Err(e) => return Err(e),
        };
        let written = base + bytes.len() as u64;
        bytes.reserve(ROOM_BYTES.saturating_sub(bytes.len()));
        Ok(Some(DirectTail {
            file: Arc::new(file),
            window: Arc::new(Mutex::new(Window {
                base,
                bytes,
                written,
            })),
            io: Arc::new(Mutex::new(written)),
        }))
    }

    /// Appends `bytes` at the end, in memory.
    pub fn push(&self, bytes: &[u8]) {
        let mut w = self.window.lock();
        w.bytes.extend_from_slice(bytes);
        // Forget, in large steps, bytes well behind the last write.
        if w.bytes.len() as u64 > 2 * WINDOW_BYTES {
            let keep_from = block_floor(w.written.min(w.end() - WINDOW_BYTES));
            if keep_from > w.base {
                let n = (keep_from - w.base) as usize;
                w.bytes.drain(..n);
                w.base = keep_from;
            }
        }
    }

    /// Copies the bytes at file offset `at` into `out` if memory holds them
    /// all; `false` if it does not (they are in the file).
    pub fn read(&self, at: u64, out: &mut [u8]) -> bool {
        let w = self.window.lock();
        if at < w.base || at + out.len() as u64 > w.end() {
            return false;
        }
        let from = (at - w.base) as usize;
        out.copy_from_slice(&w.bytes[from..from + out.len()]);
        true
    }

    /// The lowest file offset memory holds.
    pub fn base(&self) -> u64 {
        self.window.lock().base
    }

    /// A write of everything pushed so far (and whatever is pushed before
    /// it starts), to run outside the storage's lock.
    pub fn write_job(&self) -> TailWrite {
        TailWrite {
            file: Arc::clone(&self.file),
            window: Arc::clone(&self.window),
            io: Arc::clone(&self.io),
        }
    }
}

/// Writes a [`DirectTail`]'s unwritten bytes, durably.
#[derive(Debug)]
pub struct TailWrite {
    file: Arc<File>,
    window: Arc<Mutex<Window>>,
    io: Arc<Mutex<u64>>,
}

impl TailWrite {
    pub fn run(&self) -> std::io::Result<()> {
        let mut written = self.io.lock();
        let (from, end, mut buf) = {
            let w = self.window.lock();
            let end = w.end();
            if end <= *written {
                return Ok(());
            }
            let from = block_floor(*written);
            let len = (end - from).div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
            let mut buf = AlignedBuf::zeroed(len as usize);
            let start = (from - w.base) as usize;
            buf.as_mut()[..(end - from) as usize].copy_from_slice(&w.bytes[start..]);
            (from, end, buf)
        };
        self.file.write_all_at(buf.as_mut(), from)?;
        *written = end;
        let mut w = self.window.lock();
        w.written = w.written.max(end);
        Ok(())
    }
}

/// Zeros are written in direct writes of at most this many bytes.
const ZERO_CHUNK_BYTES: u64 = 1 << 20;

/// Writes `size` bytes of zeros over the start of the file at `path` with
/// `O_DIRECT`: a preallocated segment costs a few device writes instead of
/// copying a segment's worth of zeros into the page cache (milliseconds of
/// CPU at a stretch, three replicas at once when they roll together) and
/// writing it back — pages the segment's own direct writes would then have
/// to invalidate. False, with nothing written, where the file system takes
/// no direct I/O or `size` is not a whole number of blocks: the caller
/// writes the zeros buffered.
pub fn write_zeros_direct(path: &Path, size: u64) -> std::io::Result<bool> {
    if !size.is_multiple_of(BLOCK_BYTES) {
        return Ok(false);
    }
    let file = match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut zeros = AlignedBuf::zeroed(size.min(ZERO_CHUNK_BYTES) as usize);
    let zeros = zeros.as_mut();
    let mut at = 0;
    while at < size {
        let n = (size - at).min(ZERO_CHUNK_BYTES) as usize;
        match file.write_all_at(&zeros[..n], at) {
            Err(e) if at == 0 && e.raw_os_error() == Some(libc::EINVAL) => return Ok(false),
            written => written?,
        }
        at += n as u64;
    }
    Ok(true)
}

/// A zeroed buffer whose start is aligned to [`BLOCK_BYTES`], as direct
/// I/O wants: a slice of a larger vector (no unsafe allocation).
struct AlignedBuf {
    storage: Vec<u8>,
    offset: usize,
    len: usize,
}

impl AlignedBuf {
    fn zeroed(len: usize) -> AlignedBuf {
        let storage = vec![0u8; len + BLOCK_BYTES as usize];
        let offset = storage.as_ptr().align_offset(BLOCK_BYTES as usize);
        AlignedBuf {
            storage,
            offset,
            len,
        }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.offset..self.offset + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_written_direct_replace_what_the_file_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spare");
        let size = ZERO_CHUNK_BYTES + 3 * BLOCK_BYTES;
        std::fs::write(&path, vec![7u8; size as usize + 100]).unwrap();
        assert!(!write_zeros_direct(&path, size + 1).unwrap(), "unaligned");
        if write_zeros_direct(&path, size).unwrap() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(bytes[..size as usize].iter().all(|b| *b == 0));
            assert!(bytes[size as usize..].iter().all(|b| *b == 7));
        }
    }

    /// A tail over a new zeroed file in `dir`, or `None` where the file
    /// system takes no direct I/O.
    fn tail(dir: &Path, size: u64) -> Option<(DirectTail, std::path::PathBuf)> {
        let path = dir.join("seg");
        let f = File::create(&path).unwrap();
        f.write_all_at(&vec![0; size as usize], 0).unwrap();
        f.sync_all().unwrap();
        DirectTail::open(&path, 0, Vec::new())
            .unwrap()
            .map(|t| (t, path))
    }

    #[test]
    fn writes_reach_the_file_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let Some((t, path)) = tail(dir.path(), 64 << 10) else {
            eprintln!("no direct I/O on this file system: nothing to test");
            return;
        };
        let mut expect = Vec::new();
        for (i, n) in [1usize, 4095, 1, 5000, 7, 8192, 3].into_iter().enumerate() {
            let bytes = vec![i as u8 + 1; n];
            t.push(&bytes);
            expect.extend_from_slice(&bytes);
            // Not in the file until written; readable from memory at once.
            let mut got = vec![0; expect.len()];
            assert!(t.read(0, &mut got));
            assert_eq!(got, expect);
            if i % 2 == 0 {
                t.write_job().run().unwrap();
                let on_disk = std::fs::read(&path).unwrap();
                assert_eq!(on_disk[..expect.len()], expect[..]);
                assert!(on_disk[expect.len()..].iter().all(|&b| b == 0));
            }
        }
        // A second job with nothing new writes nothing and changes nothing.
        t.write_job().run().unwrap();
        t.write_job().run().unwrap();
        assert_eq!(std::fs::read(&path).unwrap()[..expect.len()], expect[..]);
    }

    #[test]
    fn memory_keeps_a_window_behind_the_last_write() {
        let dir = tempfile::tempdir().unwrap();
        let size = 4 * WINDOW_BYTES;
        let Some((t, path)) = tail(dir.path(), size) else {
            eprintln!("no direct I/O on this file system: nothing to test");
            return;
        };
        let chunk: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut end = 0u64;
        let buffer = t.window.lock().bytes.as_ptr();
        while end + (chunk.len() as u64) < 3 * WINDOW_BYTES {
            t.push(&chunk);
            end += chunk.len() as u64;
            t.write_job().run().unwrap();
        }
        assert_eq!(
            t.window.lock().bytes.as_ptr(),
            buffer,
            "memory grew by reallocating instead of within its room"
        );
        let base = t.base();
        assert!(base > 0, "memory was never trimmed");
        assert!(end - base >= WINDOW_BYTES, "kept only {} bytes", end - base);
        let mut out = vec![0; 10];
        assert!(
            !t.read(base - 1, &mut out),
            "below the window is not in memory"
        );
        assert!(t.read(end - 10, &mut out));
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(out[..], on_disk[(end - 10) as usize..end as usize]);
        for (i, &b) in on_disk[..end as usize].iter().enumerate() {
            assert_eq!(b, chunk[i % chunk.len()], "byte {i}");
        }
    }
}
