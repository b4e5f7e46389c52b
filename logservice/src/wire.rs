//! Conversions between the gRPC messages and the domain messages.
//!
//! Input from the network is checked here, once: a malformed history or an
//! impossible range becomes [`LogError::BadRequest`]. Nothing beyond this
//! module sees a `strata_proto` type except the server and client shells.

use strata_proto::logservice as pb;
use strata_wal::Lsn;

use crate::error::{LogError, Result};
use crate::history::{TermEntry, TermHistory};
use crate::msg::{
    AppendOutcome, AppendRequest, AppendResponse, ElectRequest, FetchRequest, FetchResponse,
    Promise,
};

pub fn history_to_pb(h: &TermHistory) -> Vec<pb::TermEntry> {
    h.entries()
        .iter()
        .map(|e| pb::TermEntry {
            term: e.term,
            start_lsn: e.start.0,
        })
        .collect()
}

pub fn history_from_pb(entries: Vec<pb::TermEntry>) -> Result<TermHistory> {
    let entries = entries
        .into_iter()
        .map(|e| TermEntry {
            term: e.term,
            start: Lsn(e.start_lsn),
        })
        .collect();
    TermHistory::from_entries(entries).map_err(|e| LogError::BadRequest(e.into()))
}

impl From<&ElectRequest> for pb::ElectRequest {
    fn from(r: &ElectRequest) -> Self {
        pb::ElectRequest {
            cluster_id: String::new(),
            term: r.term,
            writer_id: r.writer_id.clone(),
            bootstrap_incarnations: r.bootstrap_incarnations.clone(),
        }
    }
}

impl TryFrom<pb::ElectRequest> for ElectRequest {
    type Error = LogError;
    fn try_from(r: pb::ElectRequest) -> Result<Self> {
        if r.term == 0 {
            return Err(LogError::BadRequest(
                "an election needs a term above 0".into(),
            ));
        }
        if r.writer_id.is_empty() {
            return Err(LogError::BadRequest("an election needs a writer id".into()));
        }
        Ok(ElectRequest {
            term: r.term,
            writer_id: r.writer_id,
            bootstrap_incarnations: r.bootstrap_incarnations,
        })
    }
}

impl From<&Promise> for pb::ElectResponse {
    fn from(p: &Promise) -> Self {
        pb::ElectResponse {
            replica_id: p.replica_id,
            incarnation: p.incarnation,
            granted: p.granted,
            promised_term: p.promised_term,
            voter: p.voter,
            history: history_to_pb(&p.history),
            flush_lsn: p.flush_lsn.0,
            commit_lsn: p.commit_lsn.0,
            end_lsn: p.end_lsn.0,
        }
    }
}

impl TryFrom<pb::ElectResponse> for Promise {
    type Error = LogError;
    fn try_from(p: pb::ElectResponse) -> Result<Self> {
        let (flush, commit, end) = (Lsn(p.flush_lsn), Lsn(p.commit_lsn), Lsn(p.end_lsn));
        if flush > end || commit > end {
            return Err(LogError::BadRequest(
                "promise: flush or commit LSN above the log end".into(),
            ));
        }
        Ok(Promise {
            replica_id: p.replica_id,
            incarnation: p.incarnation,
            granted: p.granted,
            promised_term: p.promised_term,
            voter: p.voter,
            history: history_from_pb(p.history)?,
            flush_lsn: flush,
            commit_lsn: commit,
            end_lsn: end,
        })
    }
}

impl From<&AppendRequest> for pb::AppendRequest {
    fn from(r: &AppendRequest) -> Self {
        pb::AppendRequest {
            cluster_id: String::new(),
            term: r.term,
            prev_term: r.prev_term,
            start_lsn: r.start.0,
            data_term: r.data_term,
            data: r.data.clone(),
            commit_lsn: r.commit_lsn.0,
            trim_floor_lsn: r.trim_floor.0,
        }
    }
}

impl TryFrom<pb::AppendRequest> for AppendRequest {
    type Error = LogError;
    fn try_from(r: pb::AppendRequest) -> Result<Self> {
        if r.term == 0 || r.data_term > r.term || r.prev_term > r.term {
            return Err(LogError::BadRequest(format!(
                "append: impossible terms (term {}, prev {}, data {})",
                r.term, r.prev_term, r.data_term
            )));
        }
        if r.start_lsn.checked_add(r.data.len() as u64).is_none() {
            return Err(LogError::BadRequest("append: range overflows".into()));
        }
        Ok(AppendRequest {
            term: r.term,
            prev_term: r.prev_term,
            start: Lsn(r.start_lsn),
            data_term: r.data_term,
            data: r.data,
            commit_lsn: Lsn(r.commit_lsn),
            trim_floor: Lsn(r.trim_floor_lsn),
        })
    }
}

impl From<&AppendResponse> for pb::AppendResponse {
    fn from(r: &AppendResponse) -> Self {
        use pb::append_response::Outcome;
        let outcome = match r.outcome {
            AppendOutcome::Accepted => Outcome::Accepted,
            AppendOutcome::Fenced => Outcome::Fenced,
            AppendOutcome::Gap => Outcome::Gap,
            AppendOutcome::Mismatch => Outcome::Mismatch,
        };
        pb::AppendResponse {
            replica_id: r.replica_id,
            promised_term: r.promised_term,
            outcome: outcome as i32,
            flush_lsn: r.flush_lsn.0,
            end_lsn: r.end_lsn.0,
            history: history_to_pb(&r.history),
            message: String::new(),
        }
    }
}

impl TryFrom<pb::AppendResponse> for AppendResponse {
    type Error = LogError;
    fn try_from(r: pb::AppendResponse) -> Result<Self> {
        use pb::append_response::Outcome;
        let outcome = match Outcome::try_from(r.outcome) {
            Ok(Outcome::Accepted) => AppendOutcome::Accepted,
            Ok(Outcome::Fenced) => AppendOutcome::Fenced,
            Ok(Outcome::Gap) => AppendOutcome::Gap,
            Ok(Outcome::Mismatch) => AppendOutcome::Mismatch,
            _ => {
                return Err(LogError::BadRequest(format!(
                    "unknown append outcome {}",
                    r.outcome
                )));
            }
        };
        Ok(AppendResponse {
            replica_id: r.replica_id,
            promised_term: r.promised_term,
            outcome,
            flush_lsn: Lsn(r.flush_lsn),
            end_lsn: Lsn(r.end_lsn),
            history: history_from_pb(r.history)?,
        })
    }
}

impl From<&FetchRequest> for pb::FetchRequest {
    fn from(r: &FetchRequest) -> Self {
        pb::FetchRequest {
            cluster_id: String::new(),
            term: r.term,
            start_lsn: r.start.0,
            end_lsn: r.end.0,
            max_bytes: r.max_bytes.min(u32::MAX as usize) as u32,
        }
    }
}

impl TryFrom<pb::FetchRequest> for FetchRequest {
    type Error = LogError;
    fn try_from(r: pb::FetchRequest) -> Result<Self> {
        if r.end_lsn < r.start_lsn {
            return Err(LogError::BadRequest("fetch: end below start".into()));
        }
        Ok(FetchRequest {
            term: r.term,
            start: Lsn(r.start_lsn),
            end: Lsn(r.end_lsn),
            // Bounded so that one answer fits a gRPC message.
            max_bytes: (r.max_bytes as usize).clamp(1, 4 << 20),
        })
    }
}

impl From<&FetchResponse> for pb::FetchResponse {
    fn from(r: &FetchResponse) -> Self {
        pb::FetchResponse {
            start_lsn: r.start.0,
            data: r.data.clone(),
            history: history_to_pb(&r.history),
            commit_lsn: r.commit_lsn.0,
            promised_term: r.promised_term,
        }
    }
}

impl TryFrom<pb::FetchResponse> for FetchResponse {
    type Error = LogError;
    fn try_from(r: pb::FetchResponse) -> Result<Self> {
        Ok(FetchResponse {
            start: Lsn(r.start_lsn),
            data: r.data,
            history: history_from_pb(r.history)?,
            commit_lsn: Lsn(r.commit_lsn),
            promised_term: r.promised_term,
        })
    }
}
