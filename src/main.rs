//! `strata`: the one command-line entry point.
//!
//! Thin by design: parse flags and config, set up tracing, call a library's
//! `serve`. `strata up` runs the whole cluster in one process (today: three
//! log replicas and a page server); `strata logservice` and `strata
//! pageserver` run one role each.

mod compute_cmd;
mod logservice_cmd;
mod pageserver_cmd;
mod up;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::info;

use compute_cmd::ComputeArgs;
use logservice_cmd::LogserviceArgs;
use pageserver_cmd::PageserverArgs;
use up::UpArgs;

/// mimalloc rather than glibc's malloc: with many threads allocating and
/// freeing small rows, values and buffers, glibc's arenas (consolidation,
/// chunk unlinking) took about a quarter of the compute's CPU under
/// sysbench `oltp_read_only`.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: a cloud-native SQL database with separated storage and compute"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole cluster in this process, with its data under one directory.
    Up(UpArgs),
    /// Run one log service replica.
    Logservice(LogserviceArgs),
    /// Run a page server: follows the log, answers GetPage@LSN.
    Pageserver(PageserverArgs),
    /// Run a primary compute node: the engine over a log service and a page
    /// server, serving MySQL clients.
    Compute(ComputeArgs),
}

fn main() -> Result<()> {
    let huge_pages_off = strata_logservice::process::disable_transparent_huge_pages();
    let purger = strata_logservice::process::purge_freed_memory_in_background();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = huge_pages_off {
        tracing::warn!(error = %e, "cannot turn transparent huge pages off; a GetPage may wait for a 2 MiB page fault");
    }
    if let Err(e) = purger {
        tracing::warn!(error = %e, "cannot start the memory purger; request threads will return freed memory themselves");
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        match cli.command {
            Command::Up(args) => up::run(args, shutdown).await,
            Command::Logservice(args) => {
                Ok(strata_logservice::server::serve(args.into_config()?, shutdown).await?)
            }
            Command::Pageserver(args) => {
                Ok(strata_pageserver::server::serve(args.into_config()?, shutdown).await?)
            }
            Command::Compute(args) => {
                Ok(strata_compute::server::serve(args.into_config()?, shutdown).await?)
            }
        }
    })
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("shutting down");
    shutdown.cancel();
}
