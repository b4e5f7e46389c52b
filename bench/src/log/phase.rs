//! One measured phase: `writers` tokio tasks sharing one client, each
//! appending small batches in a loop until the phase's deadline.
//!
//! Every append is timed from just before `append` to its commit LSN coming
//! back (a quorum has the batch durably). A phase also reads every
//! replica's fsync count before and after, to tell how many commits each
//! fsync carried.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use strata_logservice::client::LogClient;
use strata_wal::{Batch, BatchBuilder, Record};
use tokio::task::JoinSet;

use super::cluster::Cluster;
use crate::stats::Latency;

/// What every writer appends, and for how long.
#[derive(Clone, Debug)]
pub struct Workload {
    pub duration: Duration,
    pub payload_bytes: usize,
}

impl Workload {
    /// One batch: one row-change record and its commit record.
    fn batch(&self) -> anyhow::Result<Batch> {
        let mut b = BatchBuilder::new();
        b.push(&Record::RowChange {
            payload: vec![0u8; self.payload_bytes],
        })?;
        let timestamp_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
        Ok(b.commit(timestamp_us))
    }

    pub fn batch_bytes(&self) -> anyhow::Result<usize> {
        Ok(self.batch()?.len())
    }
}

/// The outcome of one phase.
#[derive(Clone, Debug)]
pub struct Phase {
    pub writers: usize,
    pub commits: u64,
    pub elapsed: Duration,
    pub latency: Latency,
    /// Fsyncs each replica did during the phase, in replica-id order.
    pub fsyncs_by_replica: Vec<u64>,
}

impl Phase {
    pub fn commits_per_sec(&self) -> f64 {
        self.commits as f64 / self.elapsed.as_secs_f64()
    }

    /// Fsyncs one replica did during the phase, on average.
    pub fn fsyncs_per_replica(&self) -> f64 {
        let all: u64 = self.fsyncs_by_replica.iter().sum();
        all as f64 / self.fsyncs_by_replica.len().max(1) as f64
    }

    /// Commits divided by the average replica's fsyncs.
    ///
    /// Why the average over all three replicas: every replica receives every
    /// batch and groups its own fsyncs, so each replica's count is the
    /// fsyncs it needed for all of the phase's commits. There is no leader
    /// replica whose count would speak for "the quorum" (the writer is the
    /// client), and which two replicas make a commit's majority changes
    /// from commit to commit, so no single quorum count exists to read. The
    /// mean includes the slowest replica, which, lagging, tends to group
    /// more; the report prints each replica's count to show the spread.
    pub fn commits_per_fsync(&self) -> f64 {
        self.commits as f64 / self.fsyncs_per_replica().max(1.0)
    }
}

/// Runs `writers` concurrent writers on `client` for the workload's duration.
pub async fn run(
    cluster: &Cluster,
    client: &LogClient,
    writers: usize,
    workload: &Workload,
) -> anyhow::Result<Phase> {
    let before = cluster.fsync_counts().await?;
    let start = Instant::now();
    let deadline = start + workload.duration;
    // The set owns the writer tasks: returning early (an error) drops it,
    // which aborts the writers still running.
    let mut tasks = JoinSet::new();
    for _ in 0..writers {
        tasks.spawn(append_until(client.clone(), workload.clone(), deadline));
    }
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        latencies.extend(joined.context("a writer task panicked")??);
    }
    let elapsed = start.elapsed();
    let after = cluster.fsync_counts().await?;
    let fsyncs_by_replica = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let commits = latencies.len() as u64;
    let latency = Latency::from_samples(latencies).context("no append committed in the phase")?;
    Ok(Phase {
        writers,
        commits,
        elapsed,
        latency,
        fsyncs_by_replica,
    })
}

/// One writer: appends batches one after another until `deadline`; returns
/// each append's commit latency.
async fn append_until(
    client: LogClient,
    workload: Workload,
    deadline: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let batch = workload.batch()?;
        let start = Instant::now();
        client.append(batch).await.context("append")?;
        latencies.push(start.elapsed());
    }
    Ok(latencies)
}
