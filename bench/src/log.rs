//! The `log` workload: Strata's quorum-replicated log service against its
//! physical floor, both measured in the same run on the same disk.
//!
//! Order of a run: the floor first, with nothing else of ours running; then
//! three replicas in-process on 127.0.0.1 and one writer client; a warm-up;
//! then one measured phase per writer count in [`WRITER_COUNTS`]; then the
//! client is closed and the replicas are shut down (client first, so no
//! append is in flight against a stopping replica).
//!
//! Replicas and client share one multi-threaded tokio runtime (a worker per
//! core), as three replica processes and a compute node on one machine
//! would share its cores; the loopback floor has no such overhead.
//!
//! The 1-writer phase gives both the commit latency and `tput_1`: it is the
//! same workload (one writer appending sequentially), so it is run once.

pub mod cluster;
mod phase;
mod report;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use strata_logservice::client::{LogClient, LogClientConfig};

use crate::floor::{self, FloorArgs};
use crate::watchdog::Watchdog;
use cluster::Cluster;
use phase::{Phase, Workload};

/// Writers in each measured phase; the first must be 1 (latency, `tput_1`).
const WRITER_COUNTS: [usize; 3] = [1, 16, 64];
const WARMUP_WRITERS: usize = 16;
const WARMUP: Duration = Duration::from_millis(500);
const CLUSTER_ID: &str = "strata-bench";
const WRITER_ID: &str = "strata-bench-writer";
/// Time allowed beyond the measured phases (election, warm-up, shutdown,
/// the client's own timeouts) before the run counts as stalled.
const STALL_MARGIN: Duration = Duration::from_secs(120);

#[derive(clap::Args, Clone, Debug)]
pub struct LogArgs {
    /// Seconds each measured phase runs.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// Payload bytes of the one row-change record in each appended batch
    /// (with framing and the commit record, 160 makes a 224-byte batch).
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u32).range(0..=65536))]
    pub payload_bytes: u32,
    #[command(flatten)]
    pub floor: FloorArgs,
}

/// Runs the workload with all its files under `dir` and prints the report.
pub fn run(args: &LogArgs, dir: &Path) -> anyhow::Result<()> {
    println!("measuring the floor in {} ...", dir.display());
    let floor = floor::measure(dir, &args.floor)?;
    let workload = Workload {
        duration: Duration::from_secs(args.seconds),
        payload_bytes: args.payload_bytes as usize,
    };
    println!(
        "measuring the log service: 3 replicas, {} s per phase, {}-byte batches ...",
        args.seconds,
        workload.batch_bytes()?
    );
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let limit = workload.duration * WRITER_COUNTS.len() as u32 + STALL_MARGIN;
    let watchdog = Watchdog::arm(limit, format!("the log service run in {}", dir.display()));
    let phases = runtime.block_on(measure_service(dir, &workload))?;
    drop(watchdog);
    report::print(&floor, &phases);
    Ok(())
}

/// Starts the replicas, runs every phase, and stops the replicas (also
/// when a phase failed).
async fn measure_service(dir: &Path, workload: &Workload) -> anyhow::Result<Vec<Phase>> {
    let cluster = Cluster::start(dir, CLUSTER_ID).await?;
    let phases = run_phases(&cluster, workload).await;
    let stopped = cluster.stop().await;
    let phases = phases?;
    stopped?;
    Ok(phases)
}

async fn run_phases(cluster: &Cluster, workload: &Workload) -> anyhow::Result<Vec<Phase>> {
    let config = LogClientConfig::new(CLUSTER_ID, WRITER_ID, cluster.endpoints().to_vec());
    // The client bounds the election and every append with its own
    // timeouts (LogClientConfig), so an unavailable service fails the run;
    // a wedged runtime, where no timer fires, is left to the watchdog.
    let client = LogClient::connect(config)
        .await
        .context("electing the writer")?;
    let warmup = Workload {
        duration: WARMUP,
        ..workload.clone()
    };
    phase::run(cluster, &client, WARMUP_WRITERS, &warmup)
        .await
        .context("warm-up")?;
    let mut phases = Vec::with_capacity(WRITER_COUNTS.len());
    for writers in WRITER_COUNTS {
        let phase = phase::run(cluster, &client, writers, workload)
            .await
            .with_context(|| format!("phase with {writers} writers"))?;
        phases.push(phase);
    }
    client.close();
    Ok(phases)
}
