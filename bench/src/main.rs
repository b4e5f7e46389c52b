//! `strata-bench`: end-to-end workloads, each printed next to the floor it
//! is measured against.
//!
//! `cargo run --release -p strata-bench -- log` runs the log-service
//! workload, `-- pageserver` the page server's, `-- pageserver-soak` the page
//! server under sustained ingest with compaction and GC, `-- engine` the compute
//! engine's, `-- host-stalls` whether the machine stops its CPUs for its own
//! disk writes; every workload is a subcommand with its own module. All files a run writes go to a fresh
//! temporary directory (removed at the end) under `--data-dir`, which should
//! sit on the disk being measured.

mod engine;
mod floor;
mod host_stalls;
mod log;
mod machine;
mod pageserver;
mod pageserver_soak;
mod report;
mod stats;
mod sysbench;
mod watchdog;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The same allocator as the `strata` binary, so that the embedded
/// clusters measured here are the ones users run.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Strata's end-to-end benchmarks")]
struct Cli {
    /// Where a run's temporary directory is made (the disk under test).
    #[arg(long, global = true, default_value = "target/bench-tmp")]
    data_dir: PathBuf,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand, Debug)]
enum Workload {
    /// The quorum-replicated log service against its fsync + RTT floor.
    Log(log::LogArgs),
    /// The page server: ingest catch-up against the log's commit rate, and
    /// GetPage latency for cache hits and rebuilds.
    Pageserver(pageserver::PageserverArgs),
    /// The page server under sustained ingest and GetPage load: layer
    /// count, write amplification and GetPage p99 while compaction runs.
    PageserverSoak(pageserver_soak::SoakArgs),
    /// The compute engine through its library API on an embedded cluster:
    /// point selects, range scans, index updates and inserts.
    Engine(engine::EngineArgs),
    /// Whether this machine stops its own CPUs when it writes to its disk
    /// (no Strata code): the floor under any benchmark that writes while
    /// its CPUs are busy.
    HostStalls(host_stalls::HostStallsArgs),
    /// Unmodified sysbench OLTP workloads against Strata and MariaDB on the
    /// same machine, interleaved.
    Sysbench(sysbench::SysbenchArgs),
}

fn main() -> anyhow::Result<()> {
    // As the `strata` binary does, for the clusters embedded here.
    let huge_pages_off = strata_logservice::process::disable_transparent_huge_pages();
    let purger = strata_logservice::process::purge_freed_memory_in_background();
    let cli = Cli::parse();
    // The replicas run in this process: show their warnings and errors
    // (RUST_LOG overrides), not their routine logs, which would bury the report.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = huge_pages_off {
        eprintln!("warning: cannot turn transparent huge pages off, as strata does: {e}");
    }
    if let Err(e) = purger {
        eprintln!("warning: cannot start the memory purger, as strata does: {e}");
    }
    std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("creating {}", cli.data_dir.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("strata-bench-")
        .tempdir_in(&cli.data_dir)
        .with_context(|| format!("making a temporary directory in {}", cli.data_dir.display()))?;
    match &cli.workload {
        Workload::Log(args) => log::run(args, dir.path()),
        Workload::Pageserver(args) => pageserver::run(args, dir.path()),
        Workload::PageserverSoak(args) => pageserver_soak::run(args, dir.path()),
        Workload::Engine(args) => engine::run(args, dir.path()),
        Workload::Sysbench(args) => sysbench::run(args, dir.path()),
        Workload::HostStalls(args) => host_stalls::run(args, dir.path()),
    }
}
