//! `strata-bench`: end-to-end workloads, each printed next to the floor it
//! is measured against.

mod floor;
mod stats;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(about = "Strata's end-to-end benchmarks")]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand, Debug)]
enum Workload {
    /// The quorum-replicated log service against its fsync + RTT floor.
    Log {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        floor: floor::FloorArgs,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.workload {
        Workload::Log { data_dir, floor } => {
            let base = data_dir.unwrap_or_else(|| PathBuf::from("target/bench-tmp"));
            std::fs::create_dir_all(&base)?;
            let dir = tempfile::Builder::new().prefix("log-").tempdir_in(&base)?;
            let f = floor::measure(dir.path(), &floor)?;
            println!(
                "quorum fsync ({} samples) p50 {:.1} us; loopback rtt ({} samples) p50 {:.1} us",
                f.quorum_fsync.samples,
                f.quorum_fsync.p50_us,
                f.loopback_rtt.samples,
                f.loopback_rtt.p50_us
            );
            println!(
                "floor p50 {:.1} us, p99 {:.1} us",
                f.commit_p50_us(),
                f.commit_p99_us()
            );
        }
    }
    Ok(())
}
