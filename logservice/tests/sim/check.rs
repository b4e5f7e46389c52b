//! What a run must never do, checked as it happens and once at its end.
//!
//! The checker keeps the run's observable history: which writer led which
//! term, every acknowledged batch (term, writer, LSN, bytes) and every byte
//! a reader was given. The final check compares that history with the
//! replicas' disks after the cluster has healed and gone quiet.

use std::collections::{BTreeMap, BTreeSet};

use strata_logservice::replica::Replica;
use strata_logservice::storage::{MemStorage, Storage};
use strata_wal::Lsn;
use strata_wal::record::{RecordIter, decode_batches};

/// A writer instance: its index and its life (replacements start a new one).
pub type WriterRef = (usize, u64);

#[derive(Clone, Debug)]
pub struct Ack {
    pub term: u64,
    pub writer: WriterRef,
    /// The batch's commit LSN (where it ends).
    pub lsn: Lsn,
    /// The batch as placed in the log.
    pub bytes: Vec<u8>,
}

impl Ack {
    pub fn start(&self) -> Lsn {
        Lsn(self.lsn.0 - self.bytes.len() as u64)
    }
}

#[derive(Default)]
pub struct Checker {
    pub acks: Vec<Ack>,
    leaders: BTreeMap<u64, WriterRef>,
    ack_writers: BTreeMap<u64, WriterRef>,
    /// What readers were given, from LSN 0 on.
    pub read_log: Vec<u8>,
}

impl Checker {
    /// A writer leads `term`: no other writer may lead it.
    pub fn leading(&mut self, term: u64, w: WriterRef) -> Result<(), String> {
        match self.leaders.insert(term, w) {
            Some(prev) if prev != w => {
                Err(format!("two writers lead term {term}: {prev:?} and {w:?}"))
            }
            _ => Ok(()),
        }
    }

    /// A writer acknowledged a batch: invariant (2) at once.
    pub fn acknowledged(&mut self, ack: Ack) -> Result<(), String> {
        if let Some(prev) = self.ack_writers.insert(ack.term, ack.writer)
            && prev != ack.writer
        {
            return Err(format!(
                "two writers acknowledged commits in term {}: {prev:?} and {:?}",
                ack.term, ack.writer
            ));
        }
        self.acks.push(ack);
        Ok(())
    }

    /// A reader got `data` at `start` (at most `read_log.len()`): it must
    /// be whole records and agree with what readers got before.
    pub fn read(&mut self, start: Lsn, data: &[u8]) -> Result<(), String> {
        for r in RecordIter::new(data, start) {
            r.map_err(|e| format!("reader got a bad record at {}: {e}", start.0))?;
        }
        let s = start.0 as usize;
        assert!(
            s <= self.read_log.len(),
            "the reader reads on from what it has"
        );
        let overlap = (self.read_log.len() - s).min(data.len());
        if self.read_log[s..s + overlap] != data[..overlap] {
            return Err(format!(
                "readers got different bytes at {}..{} from different reads",
                s,
                s + overlap
            ));
        }
        self.read_log.extend_from_slice(&data[overlap..]);
        Ok(())
    }
}

/// Whether `storage` holds `bytes` at `start`, durably.
pub fn durably_holds(storage: &MemStorage, start: Lsn, bytes: &[u8]) -> bool {
    let durable_end = storage.end().0 - storage.volatile_len() as u64;
    let end = start.0 + bytes.len() as u64;
    end <= durable_end
        && storage
            .read(start, bytes.len())
            .is_ok_and(|got| got == bytes)
}

fn whole_log(r: &Replica<MemStorage>) -> Vec<u8> {
    let s = r.storage();
    s.read(Lsn::ZERO, s.end().0 as usize)
        .expect("MemStorage reads what it holds")
}

/// The end-of-run check: invariants (1) to (5) on quiet, healed replicas.
pub fn final_check(checker: &Checker, replicas: &[&Replica<MemStorage>]) -> Result<(), String> {
    let logs: Vec<Vec<u8>> = replicas.iter().map(|r| whole_log(r)).collect();
    let commits: Vec<usize> = replicas.iter().map(|r| r.commit().0 as usize).collect();
    // (4) Every pair agrees on the prefix both have committed.
    for a in 0..replicas.len() {
        for b in a + 1..replicas.len() {
            let n = commits[a].min(commits[b]);
            if let Some(at) = (0..n).find(|&i| logs[a][i] != logs[b][i]) {
                return Err(format!(
                    "replicas {} and {} differ at {at}, below both commit LSNs ({} and {})",
                    replicas[a].id(),
                    replicas[b].id(),
                    commits[a],
                    commits[b]
                ));
            }
        }
    }
    let best = (0..replicas.len())
        .max_by_key(|&i| commits[i])
        .expect("replicas");
    let committed = &logs[best][..commits[best]];
    // (5) The committed log is whole batches; every commit is a batch end.
    let batches = decode_batches(committed, Lsn::ZERO)
        .map_err(|e| format!("the committed log does not decode as whole batches: {e}"))?;
    let ends: BTreeSet<u64> = std::iter::once(0)
        .chain(batches.iter().map(|b| b.commit_lsn.0))
        .collect();
    for (r, c) in replicas.iter().zip(&commits) {
        if !ends.contains(&(*c as u64)) {
            return Err(format!(
                "replica {}'s commit LSN {c} is not a batch end",
                r.id()
            ));
        }
    }
    // (1) Every acknowledged batch is committed, whole, and on a majority.
    for ack in &checker.acks {
        check_ack(ack, committed, &ends, replicas)?;
    }
    // (3) Readers got committed bytes only, and the right ones.
    let read = &checker.read_log;
    if read.len() > committed.len() || read[..] != committed[..read.len()] {
        let at = (0..read.len().min(committed.len()))
            .find(|&i| read[i] != committed[i])
            .unwrap_or(committed.len());
        return Err(format!(
            "a reader got bytes that are not the committed log: read {} bytes, committed {}, first difference at {at}",
            read.len(),
            committed.len()
        ));
    }
    Ok(())
}

fn check_ack(
    ack: &Ack,
    committed: &[u8],
    ends: &BTreeSet<u64>,
    replicas: &[&Replica<MemStorage>],
) -> Result<(), String> {
    let (start, end) = (ack.start().0 as usize, ack.lsn.0 as usize);
    let what = format!(
        "batch [{start}, {end}) acknowledged by {:?} in term {}",
        ack.writer, ack.term
    );
    if end > committed.len() {
        return Err(format!(
            "{what} is above the final commit LSN {}",
            committed.len()
        ));
    }
    if committed[start..end] != ack.bytes[..] {
        return Err(format!(
            "{what} is not in the committed log: other bytes are there"
        ));
    }
    if !ends.contains(&ack.lsn.0) {
        return Err(format!("{what} does not end at a batch end"));
    }
    let holders = replicas
        .iter()
        .filter(|r| durably_holds(r.storage(), ack.start(), &ack.bytes))
        .count();
    if holders <= replicas.len() / 2 {
        return Err(format!("{what} is durable on {holders} replicas only"));
    }
    Ok(())
}
