//! The writer's side of the log protocol, as a state machine without I/O.
//!
//! A [`Writer`] wins a term, adopts the most advanced log, streams it and
//! new batches to every replica, and counts the quorum. The gRPC client
//! ([`crate::client`]) and the simulator drive it the same way: feed it
//! responses and the time, send what it returns.
//!
//! The protocol (ARCHITECTURE.md §5):
//! 1. Pick a term above every term seen; ask every replica to promise it.
//! 2. With promises from a majority of *voters*, adopt the log of the one
//!    with the highest (last term, flush LSN) — a complete-batch boundary —
//!    fetching from it the bytes above the highest known commit LSN.
//! 3. Write `TermStart` in the new term; stream to each replica from where
//!    its log diverges from ours (found from its term history).
//! 4. Commit LSN = the highest batch end that a majority of replicas have
//!    flushed, once that is at or above our `TermStart` (as Raft, only
//!    entries of the current term are committed by counting).
//!
//! A replica whose log ends below the bytes we still hold catches up from
//! its peers; we keep a bounded window, and refuse new batches while the
//! uncommitted bytes would pass `max_uncommitted_bytes` (backpressure).

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use strata_wal::record::RecordIter;
use strata_wal::{Batch, Lsn, RecordKind};
use tracing::{info, warn};

use crate::history::TermHistory;
use crate::msg::{
    AppendOutcome, AppendRequest, AppendResponse, ElectRequest, FetchRequest, FetchResponse,
    Promise, ReplicaId,
};

#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub writer_id: String,
    pub replicas: Vec<ReplicaId>,
    /// The most bytes in one append message.
    pub max_append_bytes: usize,
    /// Appends sent to one replica and not yet acknowledged.
    pub max_inflight_appends: usize,
    /// While an append with data is in flight to a replica, another goes
    /// out only once this many bytes wait; until then they gather into the
    /// next append. Small commits then share one append (one write and one
    /// fsync on each replica) instead of each taking a pipeline slot, and
    /// a heavy stream (bulk loads, catch-up) still pipelines. A heartbeat
    /// in flight never holds data back.
    pub pipeline_min_bytes: u64,
    /// Bytes above the commit LSN; new batches wait beyond it.
    pub max_uncommitted_bytes: u64,
    /// Bytes kept for lagging replicas beyond what is uncommitted.
    pub window_bytes: u64,
    pub heartbeat_ms: u64,
    /// How long a new commit LSN waits for an append to carry it before a
    /// heartbeat of its own does. A busy writer's next append carries it at
    /// no cost; sending it at once would double the messages of a writer
    /// that commits one batch at a time, and their work lands on the next
    /// commit's path. Measured on the writer's clock, which moves when it
    /// is pumped (the client pumps at least every 5 ms), so readers of a
    /// writer that went quiet see its last commit a few ms later — and
    /// those of a writer that stops right after a commit not until the
    /// next writer commits. Hence 0 (send at once) by default.
    pub commit_heartbeat_ms: u64,
    pub retransmit_ms: u64,
    /// Whether [`Writer::on_append_response`] also sends what became due
    /// (more bytes, the new commit LSN). The client's driver pumps after
    /// every event anyway and turns this off: callers whose commit the
    /// response completed run first, and a batch they append at once
    /// then carries the new commit LSN instead of a heartbeat of its own.
    pub pump_on_response: bool,
}

impl WriterConfig {
    pub fn new(writer_id: impl Into<String>, replicas: Vec<ReplicaId>) -> Self {
        WriterConfig {
            writer_id: writer_id.into(),
            replicas,
            max_append_bytes: 1 << 20,
            max_inflight_appends: 2,
            pipeline_min_bytes: 256 << 10,
            max_uncommitted_bytes: 64 << 20,
            window_bytes: 128 << 20,
            heartbeat_ms: 50,
            commit_heartbeat_ms: 0,
            retransmit_ms: 500,
            pump_on_response: true,
        }
    }

    fn majority(&self) -> usize {
        self.replicas.len() / 2 + 1
    }
}

#[derive(Clone, Debug)]
pub enum Outgoing {
    Elect(ReplicaId, ElectRequest),
    Append(ReplicaId, AppendRequest),
    Fetch(ReplicaId, FetchRequest),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not (yet) a writer: start an election.
    Idle,
    Electing {
        bootstrap: bool,
    },
    /// Fetching the adopted log's uncommitted tail from the donor.
    Recovering {
        donor: ReplicaId,
        upto: Lsn,
    },
    Leading,
    /// A higher term exists: this writer is done for good.
    Fenced {
        by_term: u64,
    },
}

/// Why a batch was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitError {
    NotLeader,
    Fenced {
        by_term: u64,
    },
    /// Too many uncommitted bytes: try again after commits.
    Full,
    /// Larger than the uncommitted-bytes bound can ever hold.
    TooLarge,
}

#[derive(Clone, Debug, Default)]
struct Progress {
    /// Next byte to send.
    next: Lsn,
    /// Durable and matching our log (from acknowledgements).
    matched: Lsn,
    /// Written on the replica, as it last told us.
    acked_end: Lsn,
    /// Ends of appends sent and not yet acknowledged.
    inflight: VecDeque<Lsn>,
    commit_sent: Lsn,
    last_sent_ms: u64,
    /// Its log ends below our window: it must catch up from peers.
    lagging: bool,
}

#[derive(Clone, Debug)]
struct Piece {
    start: Lsn,
    term: u64,
    bytes: Bytes,
}

impl Piece {
    fn end(&self) -> Lsn {
        self.start.advance(self.bytes.len() as u64)
    }
}

pub struct Writer {
    cfg: WriterConfig,
    term: u64,
    max_seen_term: u64,
    phase: Phase,
    promises: BTreeMap<ReplicaId, Promise>,
    refusals: std::collections::BTreeSet<ReplicaId>,
    history: TermHistory,
    pieces: VecDeque<Piece>,
    window_start: Lsn,
    /// Batches stamped but not yet cut into pieces.
    tail: BytesMut,
    end: Lsn,
    /// Batch ends above the commit LSN.
    batch_ends: VecDeque<Lsn>,
    commit: Lsn,
    /// When the commit LSN last moved.
    commit_moved_ms: u64,
    term_start_end: Lsn,
    progress: BTreeMap<ReplicaId, Progress>,
    now_ms: u64,
}

impl Writer {
    pub fn new(cfg: WriterConfig) -> Self {
        Writer {
            cfg,
            term: 0,
            max_seen_term: 0,
            phase: Phase::Idle,
            promises: BTreeMap::new(),
            refusals: Default::default(),
            history: TermHistory::new(),
            pieces: VecDeque::new(),
            window_start: Lsn::ZERO,
            tail: BytesMut::new(),
            end: Lsn::ZERO,
            batch_ends: VecDeque::new(),
            commit: Lsn::ZERO,
            commit_moved_ms: 0,
            term_start_end: Lsn::MAX,
            progress: BTreeMap::new(),
            now_ms: 0,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn commit(&self) -> Lsn {
        self.commit
    }

    /// Every replica has acknowledged everything sent to it, the current
    /// commit LSN included (or this writer does not lead: nothing to tell).
    pub fn all_told_commit(&self) -> bool {
        self.phase != Phase::Leading
            || self
                .progress
                .values()
                .all(|p| p.inflight.is_empty() && p.commit_sent >= self.commit)
    }

    pub fn end(&self) -> Lsn {
        self.end
    }

    pub fn is_leader(&self) -> bool {
        self.phase == Phase::Leading
    }

    /// Lets a new writer start above terms an earlier one saw.
    pub fn observe_term(&mut self, term: u64) {
        self.max_seen_term = self.max_seen_term.max(term);
    }

    /// The connection to `replica` broke: its process may have restarted,
    /// perhaps on an empty disk, so what it acknowledged before no longer
    /// counts towards a commit until it acknowledges again. The driver
    /// calls this before it talks to the replica's new process.
    pub fn on_replica_reset(&mut self, replica: ReplicaId) {
        if let Some(pr) = self.progress.get_mut(&replica) {
            pr.matched = Lsn::ZERO;
            pr.acked_end = Lsn::ZERO;
            pr.inflight.clear();
        }
    }

    /// Starts (or restarts) an election with a fresh term.
    pub fn start_election(&mut self, now_ms: u64) -> Vec<Outgoing> {
        self.start_election_with(now_ms, Vec::new())
    }

    fn start_election_with(&mut self, now_ms: u64, bootstrap: Vec<u64>) -> Vec<Outgoing> {
        if let Phase::Fenced { .. } = self.phase {
            return Vec::new();
        }
        self.now_ms = now_ms;
        self.term = self.max_seen_term.max(self.term) + 1;
        self.max_seen_term = self.term;
        self.phase = Phase::Electing {
            bootstrap: !bootstrap.is_empty(),
        };
        self.promises.clear();
        self.refusals.clear();
        let req = ElectRequest {
            term: self.term,
            writer_id: self.cfg.writer_id.clone(),
            bootstrap_incarnations: bootstrap,
        };
        self.cfg
            .replicas
            .iter()
            .map(|&r| Outgoing::Elect(r, req.clone()))
            .collect()
    }

    pub fn on_promise(&mut self, p: Promise) -> Vec<Outgoing> {
        self.observe_term(p.promised_term);
        match self.phase {
            Phase::Electing { .. } => {}
            Phase::Leading | Phase::Recovering { .. } if p.promised_term > self.term => {
                self.fence(p.promised_term);
                return Vec::new();
            }
            _ => return Vec::new(),
        }
        if p.granted && p.promised_term < self.term {
            return Vec::new(); // a late answer to an earlier round
        }
        if !p.granted || p.promised_term != self.term {
            self.refusals.insert(p.replica_id);
            if self.refusals.len() > self.cfg.replicas.len() - self.cfg.majority() {
                self.phase = Phase::Idle; // lost this round; the driver retries
            }
            return Vec::new();
        }
        self.promises.insert(p.replica_id, p);
        self.after_promise()
    }

    fn after_promise(&mut self) -> Vec<Outgoing> {
        let voters = self.promises.values().filter(|p| p.voter).count();
        if voters >= self.cfg.majority() {
            return self.become_leader();
        }
        let all = self.promises.len() == self.cfg.replicas.len();
        // Every log empty: nothing was ever committed, whichever replicas a
        // bootstrap round that did not finish already made voters.
        let all_new = self.promises.values().all(|p| p.is_empty_log());
        if all && all_new && self.phase == (Phase::Electing { bootstrap: false }) {
            let incarnations = self.promises.values().map(|p| p.incarnation).collect();
            info!(
                term = self.term + 1,
                "every replica is new: bootstrapping the cluster"
            );
            return self.start_election_with(self.now_ms, incarnations);
        }
        Vec::new()
    }

    fn become_leader(&mut self) -> Vec<Outgoing> {
        let donor = self
            .promises
            .values()
            .filter(|p| p.voter)
            .max_by_key(|p| (p.history.last_term(p.flush_lsn), p.flush_lsn))
            .expect("a majority of voters promised")
            .clone();
        let adopted_end = donor.flush_lsn;
        let known_commit = self
            .promises
            .values()
            .map(|p| p.commit_lsn)
            .max()
            .unwrap_or_default();
        if known_commit > adopted_end {
            warn!(%known_commit, %adopted_end, "a replica reports a commit LSN above the most advanced log");
        }
        let known_commit = known_commit.min(adopted_end);
        self.history = donor.history.cut_at(adopted_end);
        self.pieces.clear();
        self.tail.clear();
        self.batch_ends.clear();
        self.commit = known_commit;
        self.window_start = known_commit;
        self.end = known_commit;
        info!(term = self.term, donor = donor.replica_id, %adopted_end, %known_commit, "elected");
        if adopted_end > known_commit {
            self.phase = Phase::Recovering {
                donor: donor.replica_id,
                upto: adopted_end,
            };
            return vec![self.recovery_fetch(donor.replica_id, adopted_end)];
        }
        self.finish_recovery()
    }

    fn recovery_fetch(&self, donor: ReplicaId, upto: Lsn) -> Outgoing {
        let req = FetchRequest {
            term: self.term,
            start: self.end,
            end: upto,
            max_bytes: self.cfg.max_append_bytes * 4,
        };
        Outgoing::Fetch(donor, req)
    }

    /// The donor's bytes for the log we adopted.
    pub fn on_fetch_response(&mut self, from: ReplicaId, resp: FetchResponse) -> Vec<Outgoing> {
        let Phase::Recovering { donor, upto } = self.phase else {
            return Vec::new();
        };
        if from != donor || resp.start != self.end {
            return Vec::new();
        }
        let data_end = resp.start.advance(resp.data.len() as u64);
        if resp.data.is_empty() || data_end > upto || resp.promised_term != self.term {
            warn!(
                term = self.term,
                "donor cannot give the adopted log; electing again"
            );
            self.phase = Phase::Idle;
            return Vec::new();
        }
        if let Err(e) = self.push_adopted(resp.start, &resp.data) {
            warn!(error = %e, "donor sent bad bytes; electing again");
            self.phase = Phase::Idle;
            return Vec::new();
        }
        if self.end < upto {
            return vec![self.recovery_fetch(donor, upto)];
        }
        self.finish_recovery()
    }

    /// The recovery fetch failed: elect again.
    pub fn on_fetch_error(&mut self) {
        if let Phase::Recovering { .. } = self.phase {
            self.phase = Phase::Idle;
        }
    }

    /// Adds adopted bytes to the window, split at term boundaries.
    fn push_adopted(&mut self, start: Lsn, data: &Bytes) -> Result<(), strata_wal::WalError> {
        for r in RecordIter::new(data, start) {
            let r = r?;
            if r.kind == RecordKind::Commit {
                self.batch_ends.push_back(r.lsn);
            }
        }
        let end = start.advance(data.len() as u64);
        let mut at = start;
        while at < end {
            let piece_end = self
                .history
                .next_boundary_after(at)
                .filter(|b| *b < end)
                .unwrap_or(end);
            let slice =
                data.slice(at.bytes_since(start) as usize..piece_end.bytes_since(start) as usize);
            self.pieces.push_back(Piece {
                start: at,
                term: self.history.term_at(at),
                bytes: slice,
            });
            at = piece_end;
        }
        self.end = end;
        Ok(())
    }

    fn finish_recovery(&mut self) -> Vec<Outgoing> {
        let adopted_end = self.end;
        self.history.push(self.term, adopted_end);
        self.phase = Phase::Leading;
        let ts = Batch::term_start(self.term, self.now_ms * 1000);
        self.term_start_end = self.stamp(&ts);
        self.progress.clear();
        for &r in &self.cfg.replicas {
            let next = match self.promises.get(&r) {
                Some(p) => p
                    .history
                    .divergence(p.flush_lsn, &self.history, adopted_end),
                None => adopted_end,
            };
            let mut pr = Progress::default();
            self.reposition(&mut pr, next);
            self.progress.insert(r, pr);
        }
        self.pump(self.now_ms)
    }

    fn stamp(&mut self, batch: &Batch) -> Lsn {
        let mut buf = Vec::with_capacity(batch.len());
        let lsn = batch.stamp_into(&mut buf, self.end);
        self.tail.extend_from_slice(&buf);
        self.end = lsn;
        self.batch_ends.push_back(lsn);
        lsn
    }

    /// Places a batch in the log; returns its commit LSN, which is durable
    /// once [`Writer::commit`] reaches it.
    pub fn submit(&mut self, batch: &Batch) -> Result<Lsn, SubmitError> {
        match self.phase {
            Phase::Leading => {}
            Phase::Fenced { by_term } => return Err(SubmitError::Fenced { by_term }),
            _ => return Err(SubmitError::NotLeader),
        }
        if batch.len() as u64 > self.cfg.max_uncommitted_bytes {
            return Err(SubmitError::TooLarge);
        }
        if self.end.bytes_since(self.commit) + batch.len() as u64 > self.cfg.max_uncommitted_bytes {
            return Err(SubmitError::Full);
        }
        Ok(self.stamp(batch))
    }

    fn fence(&mut self, by_term: u64) {
        if !matches!(self.phase, Phase::Fenced { .. }) {
            warn!(term = self.term, by_term, "fenced by a newer writer");
        }
        self.phase = Phase::Fenced { by_term };
    }

    pub fn on_append_response(&mut self, resp: AppendResponse) -> Vec<Outgoing> {
        self.observe_term(resp.promised_term);
        if self.phase != Phase::Leading {
            return Vec::new();
        }
        if resp.outcome == AppendOutcome::Fenced || resp.promised_term > self.term {
            self.fence(resp.promised_term);
            return Vec::new();
        }
        let Some(mut pr) = self.progress.remove(&resp.replica_id) else {
            return Vec::new();
        };
        if resp.outcome == AppendOutcome::Accepted {
            pr.matched = pr.matched.max(resp.flush_lsn.min(self.end));
            pr.acked_end = resp.end_lsn.min(self.end);
            while pr.inflight.front().is_some_and(|e| *e <= pr.acked_end) {
                pr.inflight.pop_front();
            }
            pr.lagging = false;
        } else {
            let agree = resp
                .history
                .divergence(resp.end_lsn, &self.history, self.end);
            pr.acked_end = resp.end_lsn.min(self.end);
            pr.inflight.clear();
            self.reposition(&mut pr, agree);
        }
        self.progress.insert(resp.replica_id, pr);
        self.advance_commit();
        match self.cfg.pump_on_response {
            true => self.pump(self.now_ms),
            false => Vec::new(),
        }
    }

    /// Sends from `next` on, or marks the replica as lagging if we no
    /// longer hold the bytes it needs.
    fn reposition(&self, pr: &mut Progress, next: Lsn) {
        pr.lagging = next < self.window_start;
        pr.next = next.max(self.window_start);
    }

    fn advance_commit(&mut self) {
        let mut matched: Vec<Lsn> = self.progress.values().map(|p| p.matched).collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&quorum) = matched.get(self.cfg.majority() - 1) else {
            return;
        };
        if quorum < self.term_start_end {
            return;
        }
        let n = self.batch_ends.partition_point(|e| *e <= quorum);
        if n == 0 {
            return;
        }
        self.commit = self.commit.max(self.batch_ends[n - 1]);
        self.commit_moved_ms = self.now_ms;
        self.batch_ends.drain(..n);
        self.trim_window();
    }

    /// Drops bytes every replica has, or (past the window budget) bytes
    /// that are committed.
    fn trim_window(&mut self) {
        let all_have = self
            .progress
            .values()
            .map(|p| p.acked_end)
            .min()
            .unwrap_or_default();
        let held = self.end.bytes_since(self.window_start);
        let keep_from = if held > self.cfg.window_bytes {
            self.commit
        } else {
            all_have.min(self.commit)
        };
        while self.pieces.front().is_some_and(|p| p.end() <= keep_from) {
            self.pieces.pop_front();
        }
        self.window_start = self
            .pieces
            .front()
            .map_or(Lsn(self.end.0 - self.tail_len()), |p| p.start);
    }

    fn tail_len(&self) -> u64 {
        self.tail.len() as u64
    }

    /// Cuts the tail into record-aligned pieces.
    fn seal_tail(&mut self) {
        if self.tail.is_empty() {
            return;
        }
        let bytes = self.tail.split().freeze();
        let start = Lsn(self.end.0 - bytes.len() as u64);
        self.pieces.push_back(Piece {
            start,
            term: self.term,
            bytes,
        });
    }

    /// Bytes from `from`, one term, whole pieces, at most about
    /// `max_append_bytes`.
    fn collect(&self, from: Lsn) -> (Bytes, u64) {
        let i = self.pieces.partition_point(|p| p.end() <= from);
        let Some(first) = self.pieces.get(i) else {
            return (Bytes::new(), self.term);
        };
        let skip = from.bytes_since(first.start) as usize;
        let first_bytes = first.bytes.slice(skip..);
        if first_bytes.len() >= self.cfg.max_append_bytes {
            return (self.split_at_record(first_bytes, from), first.term);
        }
        let mut out = BytesMut::from(&first_bytes[..]);
        for p in self.pieces.iter().skip(i + 1) {
            if p.term != first.term || out.len() + p.bytes.len() > self.cfg.max_append_bytes {
                break;
            }
            out.extend_from_slice(&p.bytes);
        }
        (out.freeze(), first.term)
    }

    /// The longest prefix of whole records within `max_append_bytes` (at
    /// least one record, which may be larger).
    fn split_at_record(&self, bytes: Bytes, from: Lsn) -> Bytes {
        let limit = self.cfg.max_append_bytes;
        let mut cut = 0;
        for r in RecordIter::new(&bytes, from) {
            let Ok(r) = r else { break };
            let end = r.lsn.bytes_since(from) as usize;
            if end > limit && cut > 0 {
                break;
            }
            cut = end;
        }
        bytes.slice(..cut)
    }

    /// Sends what each replica is due: new bytes, retransmissions after a
    /// silence, heartbeats carrying the commit LSN.
    pub fn pump(&mut self, now_ms: u64) -> Vec<Outgoing> {
        self.now_ms = self.now_ms.max(now_ms);
        if self.phase != Phase::Leading {
            return Vec::new();
        }
        self.seal_tail();
        let ids: Vec<ReplicaId> = self.progress.keys().copied().collect();
        let mut out = Vec::new();
        for r in ids {
            let mut pr = self.progress.remove(&r).expect("listed");
            self.pump_one(r, &mut pr, &mut out);
            self.progress.insert(r, pr);
        }
        out
    }

    fn pump_one(&self, r: ReplicaId, pr: &mut Progress, out: &mut Vec<Outgoing>) {
        let now = self.now_ms;
        if !pr.inflight.is_empty() && now.saturating_sub(pr.last_sent_ms) >= self.cfg.retransmit_ms
        {
            pr.inflight.clear();
            let from = pr.acked_end;
            self.reposition(pr, from);
        }
        if pr.next < self.window_start {
            // The window moved past what this replica is due: we no longer
            // hold those bytes.
            self.reposition(pr, pr.next);
        }
        if pr.lagging {
            if now.saturating_sub(pr.last_sent_ms) >= self.cfg.heartbeat_ms {
                out.push(self.heartbeat(r, pr, self.window_start));
            }
            return;
        }
        while pr.inflight.len() < self.cfg.max_inflight_appends && pr.next < self.end {
            let data_in_flight = pr.next > pr.acked_end;
            if data_in_flight && self.end.0 - pr.next.0 < self.cfg.pipeline_min_bytes {
                break;
            }
            let (data, data_term) = self.collect(pr.next);
            if data.is_empty() {
                break;
            }
            let req = self.append_request(pr.next, data_term, data);
            pr.next = req.end();
            pr.inflight.push_back(req.end());
            pr.commit_sent = self.commit;
            pr.last_sent_ms = now;
            out.push(Outgoing::Append(r, req));
        }
        let idle = now.saturating_sub(pr.last_sent_ms) >= self.cfg.heartbeat_ms;
        let commit_waited =
            now.saturating_sub(self.commit_moved_ms) >= self.cfg.commit_heartbeat_ms;
        if pr.inflight.is_empty() && ((pr.commit_sent < self.commit && commit_waited) || idle) {
            out.push(self.heartbeat(r, pr, pr.next));
        }
    }

    fn heartbeat(&self, r: ReplicaId, pr: &mut Progress, at: Lsn) -> Outgoing {
        let req = self.append_request(at, self.history.term_at(at), Bytes::new());
        pr.inflight.push_back(at);
        pr.commit_sent = self.commit;
        pr.last_sent_ms = self.now_ms;
        Outgoing::Append(r, req)
    }

    fn append_request(&self, start: Lsn, data_term: u64, data: Bytes) -> AppendRequest {
        AppendRequest {
            term: self.term,
            prev_term: self.history.term_before(start),
            start,
            data_term,
            data,
            commit_lsn: self.commit,
            trim_floor: self
                .progress
                .values()
                .map(|p| p.matched)
                .min()
                .unwrap_or_default(),
        }
    }
}
