//! The log service's messages as domain types.
//!
//! The state machines ([`crate::replica`], [`crate::writer`]) speak these;
//! [`crate::wire`] converts them to and from the gRPC messages, validating
//! input once, at the edge. The simulator passes them around directly.

use bytes::Bytes;
use strata_wal::Lsn;

use crate::history::TermHistory;

pub type ReplicaId = u32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectRequest {
    pub term: u64,
    pub writer_id: String,
    /// Non-empty only to bootstrap a new cluster (see [`crate::replica`]).
    pub bootstrap_incarnations: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promise {
    pub replica_id: ReplicaId,
    pub incarnation: u64,
    pub granted: bool,
    pub promised_term: u64,
    pub voter: bool,
    pub history: TermHistory,
    pub flush_lsn: Lsn,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
}

impl Promise {
    /// An empty replica: no log, no history. Only a cluster where every
    /// replica is empty may bootstrap.
    pub fn is_empty_log(&self) -> bool {
        self.end_lsn == Lsn::ZERO && self.history.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRequest {
    pub term: u64,
    pub prev_term: u64,
    pub start: Lsn,
    pub data_term: u64,
    pub data: Bytes,
    pub commit_lsn: Lsn,
    pub trim_floor: Lsn,
}

impl AppendRequest {
    pub fn end(&self) -> Lsn {
        self.start.advance(self.data.len() as u64)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    Accepted,
    /// The request's term is stale.
    Fenced,
    /// The request starts beyond the replica's log end.
    Gap,
    /// The byte before the request's start is of another term.
    Mismatch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendResponse {
    pub replica_id: ReplicaId,
    pub promised_term: u64,
    pub outcome: AppendOutcome,
    /// Accepted: the highest batch end that is durable *and* known to match
    /// the writer's log. Otherwise the replica's flush LSN.
    pub flush_lsn: Lsn,
    pub end_lsn: Lsn,
    /// On a rejection: the replica's history, so the writer can find where
    /// the logs diverge. Empty on acceptance.
    pub history: TermHistory,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// A writer's term (it must hold the replica's promise), or 0 for a peer
    /// catching up, which gets committed bytes only.
    pub term: u64,
    pub start: Lsn,
    pub end: Lsn,
    pub max_bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchResponse {
    pub start: Lsn,
    pub data: Bytes,
    pub history: TermHistory,
    pub commit_lsn: Lsn,
    pub promised_term: u64,
}

/// Committed WAL for a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadChunk {
    pub start: Lsn,
    pub data: Bytes,
    pub commit_lsn: Lsn,
}
