//! One log replica as a state machine without I/O of its own.
//!
//! [`Replica`] owns a [`Storage`] and answers the protocol's messages; the
//! gRPC server and the simulator drive it the same way. Invariants:
//!
//! - Nothing from a term below the promised one is accepted; a promise is
//!   durable before it is answered.
//! - Bytes are accepted only where they continue the log: the byte before
//!   the append's start must be of the append's `prev_term`. Where the log
//!   holds bytes of another term than the append's, they are cut (they were
//!   never committed: a committed byte is in every later writer's log).
//!   Bytes of the same term are identical, so a duplicate append is skipped.
//! - The term history is durable before bytes of a new term are written,
//!   and a cut is durable before the history forgets the cut terms; at
//!   open, history entries without bytes are dropped.
//! - `flush` is always the end of a complete batch that is durable; at open
//!   the log is cut back to its last complete batch (a torn tail).
//! - The local commit LSN only covers bytes known to match a writer's log
//!   (acknowledged in the current term, or taken from a peer's committed
//!   prefix), and readers never get a byte above it.
//! - A replica started empty is not a voter until, in some term, its log
//!   has matched the writer's up to a commit LSN above that term's start
//!   *and* above the commit LSN of the first append this process got in
//!   that term. A restart breaks every connection, so that append was sent
//!   after the replica started: everything committed before it was wiped
//!   is at or below that commit LSN, or earlier than the term's start.
//!   (The term's start alone is not enough: a disk wiped in the middle of
//!   a term missed that term's commits too.) A new
//!   cluster bootstraps when a writer finds *every* replica empty and names
//!   their incarnations.

use bytes::Bytes;
use strata_wal::record::{MAX_RECORD_BYTES, RecordIter};
use strata_wal::{Lsn, WalError};
use tracing::{info, warn};

use crate::error::{LogError, Result};
use crate::history::TermHistory;
use crate::msg::{
    AppendOutcome, AppendRequest, AppendResponse, ElectRequest, FetchRequest, FetchResponse,
    Promise, ReadChunk, ReplicaId,
};
use crate::storage::{Control, Storage};

/// A sync started by [`Replica::begin_sync`], to be passed back to
/// [`Replica::finish_sync`] once its job has run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncTicket {
    pub end: Lsn,
    batch_end: Lsn,
    epoch: u64,
}

pub struct Replica<S: Storage> {
    storage: S,
    control: Control,
    /// Where written bytes end (whole records).
    end: Lsn,
    /// Where the last complete batch among the written bytes ends.
    batch_end: Lsn,
    /// Written bytes below this are durable.
    synced: Lsn,
    /// The last durable batch end.
    flush: Lsn,
    commit: Lsn,
    /// The commit LSN the current writer last sent.
    writer_commit: Lsn,
    /// The log matches the writer of the promised term up to here.
    matched: Lsn,
    /// Bumped by every cut: syncs started before it do not count.
    epoch: u64,
    sync_in_flight: bool,
    trim_floor: Lsn,
    /// Set when the writer is ahead of this log: fetch from peers.
    behind: bool,
    /// While not a voter: the term of the first append this process got
    /// in its promised term, and the commit LSN that append carried.
    joined: Option<(u64, Lsn)>,
    /// The log is known to equal a peer's committed log up to here (a
    /// record boundary, at or above `commit`): where catching up resumes.
    peer_agreed: Lsn,
    /// Batch end up to which the log equals a peer's committed log; it
    /// becomes our commit LSN as it becomes durable here.
    peer_commit: Lsn,
    fsyncs: u64,
}

impl<S: Storage> Replica<S> {
    /// Opens a replica on `storage`: a new one (not a voter, with the given
    /// incarnation) if the storage is empty, else as it was, with a torn
    /// tail cut back to the last complete batch.
    pub fn open(
        storage: S,
        replica_id: ReplicaId,
        cluster_id: &str,
        incarnation: u64,
    ) -> Result<Self> {
        let mut storage = storage;
        let control = match storage.load_control() {
            Some(c) if c.cluster_id != cluster_id => {
                return Err(LogError::WrongCluster {
                    ours: c.cluster_id,
                    theirs: cluster_id.into(),
                });
            }
            Some(c) => c,
            None => {
                let c = Control {
                    cluster_id: cluster_id.into(),
                    replica_id,
                    incarnation,
                    ..Control::default()
                };
                storage.store_control(&c)?;
                info!(
                    replica_id,
                    incarnation, "new log replica: not a voter until caught up"
                );
                c
            }
        };
        let cut = last_batch_end(&storage)?;
        if cut < storage.end() {
            warn!(replica_id, %cut, end = %storage.end(), "cutting the log back to its last complete batch");
            storage.truncate(cut)?;
        }
        let mut r = Replica {
            storage,
            control,
            end: cut,
            batch_end: cut,
            synced: cut,
            flush: cut,
            commit: Lsn::ZERO,
            writer_commit: Lsn::ZERO,
            matched: Lsn::ZERO,
            epoch: 0,
            sync_in_flight: false,
            trim_floor: Lsn::ZERO,
            behind: false,
            joined: None,
            peer_agreed: Lsn::ZERO,
            peer_commit: Lsn::ZERO,
            fsyncs: 0,
        };
        if cut < r.control.commit_lsn {
            // The commit LSN is saved only once durable, so a bad record
            // below it was not torn by a crash: the file is damaged.
            return Err(LogError::CorruptFile {
                what: format!("log of replica {replica_id}"),
                detail: format!(
                    "a bad record at {cut} lies below the durable commit LSN {}: this is \
                     damage, not a torn write; move this replica's directory away and \
                     restart it empty to copy the log from its peers",
                    r.control.commit_lsn
                ),
            });
        }
        r.commit = r.control.commit_lsn;
        r.peer_agreed = r.commit;
        if r.control.history.cut_at(cut) != r.control.history {
            r.control.history.cut(cut);
            r.store_control()?;
        }
        Ok(r)
    }

    pub fn id(&self) -> ReplicaId {
        self.control.replica_id
    }

    pub fn control(&self) -> &Control {
        &self.control
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    pub fn end(&self) -> Lsn {
        self.end
    }

    /// Written bytes below this are durable.
    pub fn synced(&self) -> Lsn {
        self.synced
    }

    pub fn flush(&self) -> Lsn {
        self.flush
    }

    pub fn commit(&self) -> Lsn {
        self.commit
    }

    pub fn fsync_count(&self) -> u64 {
        self.fsyncs
    }

    pub fn is_behind(&self) -> bool {
        self.behind
    }

    fn store_control(&mut self) -> Result<()> {
        self.control.commit_lsn = self.commit;
        self.storage.store_control(&self.control)
    }

    fn promise(&self, granted: bool) -> Promise {
        Promise {
            replica_id: self.id(),
            incarnation: self.control.incarnation,
            granted,
            promised_term: self.control.promised_term,
            voter: self.control.voter,
            history: self.control.history.clone(),
            flush_lsn: self.flush,
            commit_lsn: self.commit,
            end_lsn: self.end,
        }
    }

    /// A writer asks for a promise of `req.term`.
    pub fn elect(&mut self, req: &ElectRequest) -> Result<Promise> {
        let c = &self.control;
        if req.term < c.promised_term
            || (req.term == c.promised_term && c.promised_writer != req.writer_id)
        {
            return Ok(self.promise(false));
        }
        let bootstrap = !self.control.voter
            && self.end == Lsn::ZERO
            && self.control.history.is_empty()
            && req
                .bootstrap_incarnations
                .contains(&self.control.incarnation);
        if req.term > self.control.promised_term || bootstrap {
            self.control.promised_term = req.term;
            self.control.promised_writer = req.writer_id.clone();
            self.matched = Lsn::ZERO;
            if bootstrap {
                info!(
                    replica_id = self.id(),
                    term = req.term,
                    "bootstrapping a new cluster: now a voter"
                );
                self.control.voter = true;
            }
            self.store_control()?;
        }
        Ok(self.promise(true))
    }

    /// Adopts a higher term seen on an append (as Raft does); the promise is
    /// durable before anything of that term is accepted.
    fn adopt_term(&mut self, term: u64) -> Result<()> {
        if term > self.control.promised_term {
            self.control.promised_term = term;
            self.control.promised_writer = String::new();
            self.matched = Lsn::ZERO;
            self.store_control()?;
        }
        Ok(())
    }

    fn reject(&self, outcome: AppendOutcome) -> AppendResponse {
        AppendResponse {
            replica_id: self.id(),
            promised_term: self.control.promised_term,
            outcome,
            flush_lsn: self.flush,
            end_lsn: self.end,
            history: self.control.history.clone(),
        }
    }

    /// The acknowledgement for the current writer: what is durable and
    /// known to match its log. A non-voter acknowledges nothing as durable:
    /// it may have been wiped and forgotten a promise to a newer writer, so
    /// its acknowledgement must not help the writer of an older term to a
    /// commit.
    pub fn ack(&self) -> AppendResponse {
        let durable = if self.control.voter {
            self.flush.min(self.matched)
        } else {
            Lsn::ZERO
        };
        AppendResponse {
            replica_id: self.id(),
            promised_term: self.control.promised_term,
            outcome: AppendOutcome::Accepted,
            flush_lsn: durable,
            end_lsn: self.end,
            history: TermHistory::new(),
        }
    }

    /// Handles an append (or an empty heartbeat). Written bytes are not
    /// durable yet: the caller starts a sync and acknowledges after it.
    pub fn append(&mut self, req: &AppendRequest) -> Result<AppendResponse> {
        if req.term < self.control.promised_term {
            return Ok(self.reject(AppendOutcome::Fenced));
        }
        self.adopt_term(req.term)?;
        if !self.control.voter && self.joined.is_none_or(|(term, _)| term != req.term) {
            self.joined = Some((req.term, req.commit_lsn));
        }
        self.writer_commit = self.writer_commit.max(req.commit_lsn);
        if req.start > self.end {
            self.behind = true;
            return Ok(self.reject(AppendOutcome::Gap));
        }
        if self.control.history.term_before(req.start) != req.prev_term {
            self.behind = true;
            return Ok(self.reject(AppendOutcome::Mismatch));
        }
        let write_from = self.resolve_overlap(req)?;
        if write_from < req.end() {
            let offset = write_from.bytes_since(req.start) as usize;
            self.write_records(write_from, req.data_term, &req.data[offset..])?;
        }
        self.matched = self.matched.max(req.end());
        self.trim_floor = req.trim_floor;
        self.behind = false;
        self.advance_commit()?;
        Ok(self.ack())
    }

    /// Where the append's bytes must start being written: past the part
    /// this log already holds in the same term, after cutting the part it
    /// holds in another term.
    fn resolve_overlap(&mut self, req: &AppendRequest) -> Result<Lsn> {
        let overlap_end = self.end.min(req.end());
        if req.start >= overlap_end {
            return Ok(req.start);
        }
        let h = &self.control.history;
        let conflict = if h.term_at(req.start) != req.data_term {
            Some(req.start)
        } else {
            h.next_boundary_after(req.start)
                .filter(|b| *b < overlap_end)
        };
        match conflict {
            None => Ok(overlap_end),
            Some(at) => {
                if at < self.commit {
                    return Err(LogError::BadRequest(format!(
                        "append in term {} would cut committed log at {at} (committed up to {})",
                        req.term, self.commit
                    )));
                }
                self.cut(at)?;
                Ok(at)
            }
        }
    }

    /// Cuts the log at `at` (durably), then forgets the cut terms.
    fn cut(&mut self, at: Lsn) -> Result<()> {
        info!(replica_id = self.id(), %at, end = %self.end, "cutting divergent log");
        self.storage.truncate(at)?;
        self.epoch += 1;
        self.end = at;
        self.synced = self.synced.min(at);
        self.batch_end = if self.batch_end <= at {
            self.batch_end
        } else {
            last_batch_end(&self.storage)?
        };
        self.flush = self.flush.min(self.batch_end);
        self.matched = self.matched.min(at);
        self.peer_commit = self.peer_commit.min(at);
        self.peer_agreed = self.peer_agreed.min(at);
        self.control.history.cut(at);
        self.store_control()
    }

    /// Checks and writes whole records at the log's end, recording a new
    /// term in the history first.
    fn write_records(&mut self, at: Lsn, term: u64, data: &[u8]) -> Result<()> {
        debug_assert_eq!(at, self.end);
        let scan = strata_wal::record::scan(data, at)?;
        // Drop entries left without bytes by a failed write.
        self.control.history.cut(self.end);
        let last_term = self.control.history.last_term(self.end);
        if term < last_term {
            return Err(LogError::BadRequest(format!(
                "bytes of term {term} cannot follow bytes of term {last_term} at {at}"
            )));
        }
        if term != last_term || self.control.history.is_empty() {
            self.control.history.push(term, at);
            self.store_control()?;
        }
        self.storage.write(at, data)?;
        self.end = scan.end;
        if let Some(c) = scan.last_commit {
            self.batch_end = c;
        }
        Ok(())
    }

    fn advance_commit(&mut self) -> Result<()> {
        // The writer's commit LSN and our flush are batch ends; `matched`,
        // the end of the last append, need not be: it only bounds them.
        let c = self.writer_commit.min(self.flush);
        if c > self.commit && c <= self.matched {
            self.commit = c;
        }
        // Never above what is durable here, so that the saved commit LSN
        // tells a torn tail from damage at open.
        let p = self.peer_commit.min(self.flush);
        if p > self.commit {
            self.commit = p;
        }
        self.maybe_become_voter()
    }

    fn maybe_become_voter(&mut self) -> Result<()> {
        if self.control.voter {
            return Ok(());
        }
        let term = self.control.promised_term;
        let Some(term_start) = self.control.history.start_of(term) else {
            return Ok(());
        };
        let Some((joined_term, joined_commit)) = self.joined else {
            return Ok(());
        };
        if joined_term == term
            && self.commit > term_start.max(joined_commit)
            && self.control.history.term_before(self.commit) == term
        {
            info!(replica_id = self.id(), term, commit = %self.commit, "caught up: now a voter");
            self.control.voter = true;
            self.store_control()?;
        }
        Ok(())
    }

    /// Starts a sync of everything written, unless one is running or
    /// nothing is pending. The caller runs the job outside any lock.
    pub fn begin_sync(&mut self) -> Option<(S::Sync, SyncTicket)> {
        if self.sync_in_flight || self.synced >= self.end {
            return None;
        }
        self.sync_in_flight = true;
        let ticket = SyncTicket {
            end: self.end,
            batch_end: self.batch_end,
            epoch: self.epoch,
        };
        Some((self.storage.sync_job(), ticket))
    }

    /// A sync's job has run: its bytes are durable.
    pub fn finish_sync(&mut self, ticket: SyncTicket) -> Result<()> {
        self.sync_in_flight = false;
        self.fsyncs += 1;
        if ticket.epoch == self.epoch {
            self.synced = self.synced.max(ticket.end);
            self.flush = self.flush.max(ticket.batch_end);
        }
        self.advance_commit()
    }

    /// Committed bytes from `from`, whole records, checked.
    pub fn read_committed(&self, from: Lsn, max_bytes: usize) -> Result<ReadChunk> {
        let data = self.read_records(from, self.commit, max_bytes)?;
        Ok(ReadChunk {
            start: from,
            data,
            commit_lsn: self.commit,
        })
    }

    /// Whole, checked records in `[from, limit)`, at most about `max_bytes`
    /// (but at least one record).
    fn read_records(&self, from: Lsn, limit: Lsn, max_bytes: usize) -> Result<Bytes> {
        if from < self.storage.start() {
            return Err(LogError::Trimmed {
                lsn: from,
                start: self.storage.start(),
            });
        }
        let limit = limit.min(self.end);
        if from >= limit {
            return Ok(Bytes::new());
        }
        let want = (limit.bytes_since(from) as usize).min(max_bytes.max(MAX_RECORD_BYTES));
        let raw = self.storage.read(from, want)?;
        let mut whole = 0;
        for r in RecordIter::new(&raw, from) {
            match r {
                Ok(r) => whole = r.lsn.bytes_since(from) as usize,
                Err(WalError::Truncated { .. }) if from.advance(raw.len() as u64) < limit => break,
                Err(e) => return Err(LogError::Corrupt(e)),
            }
            if whole >= max_bytes {
                break;
            }
        }
        let mut raw = raw;
        raw.truncate(whole);
        Ok(Bytes::from(raw))
    }

    /// Raw log for a writer adopting this log (any bytes, if it holds the
    /// promise), or for a peer catching up (committed bytes only).
    pub fn fetch(&self, req: &FetchRequest) -> Result<FetchResponse> {
        let limit = if req.term == 0 {
            req.end.min(self.commit)
        } else if req.term == self.control.promised_term {
            req.end
        } else {
            return Err(LogError::Fenced {
                term: req.term,
                promised: self.control.promised_term,
            });
        };
        let data = self.read_records(req.start, limit, req.max_bytes)?;
        Ok(FetchResponse {
            start: req.start,
            data,
            history: self.control.history.clone(),
            commit_lsn: self.commit,
            promised_term: self.control.promised_term,
        })
    }

    /// What to ask a peer for when catching up.
    ///
    ///
    /// It starts where our log is known to equal committed log, not at our
    /// end: bytes above that may be of a term the peer does not have, so
    /// our end need not be a record boundary in the peer's log.
    pub fn catch_up_request(&self, max_bytes: usize) -> FetchRequest {
        let start = self.peer_agreed.max(self.commit).min(self.end);
        FetchRequest {
            term: 0,
            start,
            end: Lsn::MAX,
            max_bytes,
        }
    }

    /// Takes a peer's committed bytes: cuts this log where it diverges from
    /// the peer's committed prefix, then appends what continues it. Returns
    /// whether the peer has more committed bytes to give.
    pub fn apply_peer_fetch(&mut self, resp: &FetchResponse) -> Result<bool> {
        let peer_commit = resp.commit_lsn;
        let peer = resp.history.cut_at(peer_commit);
        let agree = self
            .control
            .history
            .divergence(self.end, &peer, peer_commit);
        if agree < self.end && agree < peer_commit {
            if agree < self.commit {
                return Err(LogError::CorruptFile {
                    what: "peer log".into(),
                    detail: format!(
                        "peer's committed log diverges from ours at {agree}, below our commit {}",
                        self.commit
                    ),
                });
            }
            self.cut(agree)?;
            return Ok(true);
        }
        let data_end = resp.start.advance(resp.data.len() as u64);
        if resp.start <= self.end && data_end > self.end {
            if data_end > peer_commit {
                return Err(LogError::BadRequest(
                    "peer sent bytes above its commit LSN".into(),
                ));
            }
            // Our log agrees with the peer's up to our end (else it was cut
            // above), so the bytes up to it are ours already.
            let skip = self.end.bytes_since(resp.start) as usize;
            self.write_peer_bytes(&peer, self.end, &resp.data[skip..])?;
        }
        let agree = self
            .control
            .history
            .divergence(self.end, &peer, peer_commit);
        self.peer_agreed = self.peer_agreed.max(agree);
        // The fetched bytes end at a record, not necessarily at a batch end:
        // commit only whole batches.
        self.peer_commit = self.peer_commit.max(agree.min(self.batch_end));
        self.advance_commit()?;
        self.store_control()?;
        Ok(self.end < peer_commit)
    }

    /// Writes peer bytes split at the peer's term boundaries.
    fn write_peer_bytes(&mut self, peer: &TermHistory, start: Lsn, data: &[u8]) -> Result<()> {
        let mut at = start;
        let end = start.advance(data.len() as u64);
        while at < end {
            let piece_end = peer
                .next_boundary_after(at)
                .filter(|b| *b < end)
                .unwrap_or(end);
            let offset = at.bytes_since(start) as usize;
            let len = piece_end.bytes_since(at) as usize;
            self.write_records(at, peer.term_at(at), &data[offset..offset + len])?;
            at = piece_end;
        }
        Ok(())
    }

    /// A consumer reports the LSN below which it needs nothing more.
    pub fn report_safe_lsn(&mut self, consumer: &str, safe: Lsn) -> Result<()> {
        let old = self.control.consumers.insert(consumer.to_string(), safe);
        if old != Some(safe) {
            self.store_control()?;
        }
        Ok(())
    }

    /// Registers a consumer at `start` if it is new.
    pub fn register_consumer(&mut self, consumer: &str, start: Lsn) -> Result<()> {
        if !self.control.consumers.contains_key(consumer) {
            self.control.consumers.insert(consumer.to_string(), start);
            self.store_control()?;
        }
        Ok(())
    }

    /// Deletes segments below every consumer's safe LSN, the lowest
    /// replica's flush and our commit; nothing while no consumer is
    /// registered. A consumer more than `cap_bytes`
    /// behind stops holding the log back (loudly). Returns the new start.
    pub fn trim(&mut self, cap_bytes: u64) -> Result<Lsn> {
        if self.control.consumers.is_empty() {
            // Until something has consumed the log, the log is the only
            // copy of the database: keep all of it.
            return Ok(self.storage.start());
        }
        let mut bound = self.commit.min(self.trim_floor);
        for (consumer, safe) in &self.control.consumers {
            if self.commit.bytes_since(*safe) > cap_bytes {
                warn!(replica_id = self.id(), consumer, %safe, commit = %self.commit,
                    "consumer lags more than the retention cap; no longer holding the log for it");
                continue;
            }
            bound = bound.min(*safe);
        }
        if bound <= self.storage.start() {
            return Ok(self.storage.start());
        }
        self.storage.trim(bound)
    }

    /// Persists the commit LSN if it moved (called now and then: the commit
    /// LSN is kept lazily, it only saves a restarted replica a round trip).
    pub fn checkpoint(&mut self) -> Result<()> {
        if self.control.commit_lsn != self.commit {
            self.store_control()?;
        }
        Ok(())
    }
}

/// Where the last complete batch in `storage` ends: scans from the last
/// recovery point (segment start) back until a `Commit` record is found.
/// Scanning stops at the first bad or torn record.
fn last_batch_end<S: Storage>(storage: &S) -> Result<Lsn> {
    let end = storage.end();
    for point in storage.recovery_points().into_iter().rev() {
        if point >= end {
            continue;
        }
        let bytes = storage.read(point, end.bytes_since(point) as usize)?;
        let mut last_commit = None;
        for r in RecordIter::new(&bytes, point) {
            match r {
                Ok(r) if r.kind == strata_wal::RecordKind::Commit => last_commit = Some(r.lsn),
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "log tail ends in a torn or bad record");
                    break;
                }
            }
        }
        if let Some(c) = last_commit {
            return Ok(c);
        }
    }
    Ok(storage.start())
}
