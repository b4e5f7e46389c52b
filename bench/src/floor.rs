//! The physical floor a quorum-replicated log is measured against.
//!
//! A commit in Strata's log service cannot be faster than one network round
//! trip to the replicas plus the time for a majority of them to make the
//! bytes durable. Both are measured here, on the same disk and the same
//! loopback as the service under test, with plain blocking std I/O and no
//! Strata code at all, so the floor depends on nothing it is compared to.
//!
//! Floor commit latency = quorum fsync p50 + loopback round-trip p50.

mod echo;
mod fsync;

pub use echo::loopback_rtt;

use std::path::Path;

use anyhow::Context;

use crate::stats::Latency;

/// How many samples to take of each floor component.
#[derive(clap::Args, Clone, Debug)]
pub struct FloorArgs {
    /// Quorum-fsync samples (each: 3 files × (write 4 KiB + fdatasync)).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub fsync_samples: u32,
    /// Loopback TCP round trips of 64-byte messages.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub rtt_samples: u32,
}

/// The measured floor.
#[derive(Clone, Copy, Debug)]
pub struct Floor {
    /// Time for the second of three replicas to write 4 KiB durably.
    pub quorum_fsync: Latency,
    /// One 64-byte request and its echo over loopback TCP.
    pub loopback_rtt: Latency,
}

impl Floor {
    /// The fastest a commit can be: one round trip plus one quorum fsync.
    pub fn commit_p50_us(&self) -> f64 {
        self.quorum_fsync.p50_us + self.loopback_rtt.p50_us
    }

    /// The same sum at p99. Adding two p99s is not the p99 of a sum (it
    /// overstates it a little), so this is a rough guide, not a floor.
    pub fn commit_p99_us(&self) -> f64 {
        self.quorum_fsync.p99_us + self.loopback_rtt.p99_us
    }
}

/// Measures the floor, writing its fsync files in `dir`.
pub fn measure(dir: &Path, args: &FloorArgs) -> anyhow::Result<Floor> {
    let quorum_fsync = fsync::quorum_fsync(dir, args.fsync_samples as usize)
        .with_context(|| format!("measuring quorum fsync in {}", dir.display()))?;
    let loopback_rtt =
        echo::loopback_rtt(args.rtt_samples as usize).context("measuring loopback RTT")?;
    Ok(Floor {
        quorum_fsync,
        loopback_rtt,
    })
}
