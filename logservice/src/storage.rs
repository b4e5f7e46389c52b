//! What a replica needs from its disk, and an in-memory disk for tests.
//!
//! [`Storage`] is the seam between the replica's state machine and the
//! world: the real server uses segment files ([`crate::segment`]), the
//! simulator and unit tests use [`MemStorage`], which can crash and lose
//! whatever was not synced. Writes are not durable until a [`SyncJob`] made
//! after them has run; a sync job runs outside the replica's lock, so many
//! appends share one fsync (group fsync). `store_control` and `truncate`
//! are durable when they return.
//!
//! Bytes are written in whole records, so every write start is a record
//! boundary; [`Storage::recovery_points`] names some record boundaries
//! (segment starts) from which recovery can scan.

use std::collections::BTreeMap;

use strata_wal::Lsn;

use crate::error::{LogError, Result};
use crate::history::TermHistory;

/// A replica's durable state besides its log bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Control {
    pub cluster_id: String,
    pub replica_id: u32,
    /// Random, chosen when the directory was created: a wiped and restarted
    /// replica is a new incarnation and cannot use an old bootstrap.
    pub incarnation: u64,
    pub promised_term: u64,
    /// The writer the term was promised to ("" when learned from an
    /// append): a second writer asking for the same term is refused.
    pub promised_writer: String,
    pub history: TermHistory,
    /// Whether this replica counts in elections. A replica started on an
    /// empty directory is not a voter until it has caught up.
    pub voter: bool,
    /// The highest LSN known committed (kept lazily; never above the log).
    pub commit_lsn: Lsn,
    /// Registered consumers and the LSN below which each needs nothing.
    pub consumers: BTreeMap<String, Lsn>,
}

/// Makes durable everything written before it was made.
pub trait SyncJob: Send + 'static {
    fn run(self) -> Result<()>;
}

pub trait Storage: Send + 'static {
    type Sync: SyncJob;

    /// The control state, `None` for a new, empty directory.
    fn load_control(&self) -> Option<Control>;
    /// Replaces the control state durably.
    fn store_control(&mut self, control: &Control) -> Result<()>;

    /// The first byte still held (segments below were trimmed).
    fn start(&self) -> Lsn;
    /// Where written bytes end (durable or not).
    fn end(&self) -> Lsn;
    /// Appends whole records at `at == self.end()`.
    fn write(&mut self, at: Lsn, bytes: &[u8]) -> Result<()>;
    /// A job that makes every byte written so far durable.
    fn sync_job(&mut self) -> Self::Sync;
    /// Drops every byte at or after `at`, durably.
    fn truncate(&mut self, at: Lsn) -> Result<()>;
    /// Up to `max_bytes` from `from` (not cut at a record boundary).
    fn read(&self, from: Lsn, max_bytes: usize) -> Result<Vec<u8>>;
    /// Record boundaries, ascending, from which the log can be scanned.
    fn recovery_points(&self) -> Vec<Lsn>;
    /// Deletes whole segments that end at or below `below`; returns the new
    /// start.
    fn trim(&mut self, below: Lsn) -> Result<Lsn>;
    /// How many segment files the log is in (for status).
    fn segment_count(&self) -> usize {
        1
    }
}

/// An in-memory disk: `durable` survives a crash, `volatile` (written after
/// the last sync) may be lost, or partly kept and torn.
#[derive(Debug, Default)]
pub struct MemStorage {
    control: Option<Control>,
    base: Lsn,
    durable: Vec<u8>,
    volatile: Vec<u8>,
    /// Record boundaries of writes, used as recovery points.
    write_starts: Vec<Lsn>,
}

/// A sync on [`MemStorage`] takes effect when the disk is told, so that a
/// simulator can crash the disk between making and running the job.
#[derive(Debug)]
pub struct MemSync;

impl SyncJob for MemSync {
    fn run(self) -> Result<()> {
        Ok(())
    }
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `upto` bytes of the log durable (what a completed fsync did).
    pub fn sync_to(&mut self, upto: Lsn) {
        let durable_end = self.base.advance(self.durable.len() as u64);
        let n = (upto.bytes_since(durable_end) as usize).min(self.volatile.len());
        let moved: Vec<u8> = self.volatile.drain(..n).collect();
        self.durable.extend_from_slice(&moved);
    }

    /// A crash: of the unsynced bytes only the first `keep` survive, and if
    /// `tear` the last surviving byte is flipped (a torn sector).
    pub fn crash(&mut self, keep: usize, tear: bool) {
        let keep = keep.min(self.volatile.len());
        self.durable.extend_from_slice(&self.volatile[..keep]);
        self.volatile.clear();
        if tear && keep > 0 {
            let last = self.durable.len() - 1;
            self.durable[last] ^= 0x5a;
        }
        let end = self.end();
        self.write_starts.retain(|p| *p < end);
    }

    /// Flips one durable byte (bit rot).
    pub fn corrupt(&mut self, at: Lsn) {
        if let Some(i) = at.0.checked_sub(self.base.0)
            && let Some(b) = self.durable.get_mut(i as usize)
        {
            *b ^= 0x01;
        }
    }

    pub fn volatile_len(&self) -> usize {
        self.volatile.len()
    }

    fn all(&self) -> Vec<u8> {
        let mut v = self.durable.clone();
        v.extend_from_slice(&self.volatile);
        v
    }
}

impl Storage for MemStorage {
    type Sync = MemSync;

    fn load_control(&self) -> Option<Control> {
        self.control.clone()
    }

    fn store_control(&mut self, control: &Control) -> Result<()> {
        self.control = Some(control.clone());
        Ok(())
    }

    fn start(&self) -> Lsn {
        self.base
    }

    fn end(&self) -> Lsn {
        self.base
            .advance((self.durable.len() + self.volatile.len()) as u64)
    }

    fn write(&mut self, at: Lsn, bytes: &[u8]) -> Result<()> {
        if at != self.end() {
            return Err(LogError::BadRequest(format!(
                "write at {at}, log ends at {}",
                self.end()
            )));
        }
        self.write_starts.push(at);
        self.volatile.extend_from_slice(bytes);
        Ok(())
    }

    fn sync_job(&mut self) -> MemSync {
        MemSync
    }

    fn truncate(&mut self, at: Lsn) -> Result<()> {
        let mut all = self.all();
        all.truncate(at.bytes_since(self.base) as usize);
        self.durable = all;
        self.volatile.clear();
        self.write_starts.retain(|p| *p < at);
        Ok(())
    }

    fn read(&self, from: Lsn, max_bytes: usize) -> Result<Vec<u8>> {
        if from < self.base {
            return Err(LogError::Trimmed {
                lsn: from,
                start: self.base,
            });
        }
        let all = self.all();
        let i = (from.bytes_since(self.base) as usize).min(all.len());
        Ok(all[i..(i + max_bytes).min(all.len())].to_vec())
    }

    fn recovery_points(&self) -> Vec<Lsn> {
        let mut points = vec![self.base];
        points.extend(self.write_starts.iter().copied().filter(|p| *p > self.base));
        points
    }

    fn trim(&mut self, below: Lsn) -> Result<Lsn> {
        let _ = below; // Memory is cheap in tests; trimming is the segment store's.
        Ok(self.base)
    }
}
