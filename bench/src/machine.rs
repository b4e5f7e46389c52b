//! Settings of the machine a benchmark holds while it runs.

/// Keeps every CPU out of its halt state for as long as it is held, by
/// asking for a CPU wake-up latency of 0 µs (`/dev/cpu_dma_latency`, the
/// kernel's PM QoS request, as `tuned`'s latency profiles and `cyclictest`
/// do): an idle CPU then polls for work instead of halting. Needs root;
/// `None` where it is not permitted (the run says so).
///
/// Why: on a virtual machine a halted vCPU gives its core back to the host,
/// and waking it waits for the host to run it again. A trace of a soak's
/// idle phase on this Firecracker VM (haltpoll idle driver, halt polling
/// off) showed both CPUs idle for 5 ms while the wake-ups of a GetPage and
/// its client waited: such stalls came every few seconds, made single
/// seconds' idle p99 1–10 ms, and moved the idle phase's p99 between 220
/// and 470 µs from run to run. Loaded phases halt rarely, so the ratio of
/// compacting to idle p99 compared the host's scheduler with compaction.
/// With the CPUs polling, a 20 s idle phase had no such stall (its p99
/// 86–135 µs in every second); the host can still preempt a vCPU, which
/// this cannot prevent.
pub(crate) struct CpusAwake {
    /// The request stands while this stays open.
    _request: std::fs::File,
}

impl CpusAwake {
    pub(crate) fn hold() -> Option<CpusAwake> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/cpu_dma_latency")
            .ok()?;
        // The request is a binary i32 in microseconds, held while the file
        // stays open.
        f.write_all(&0i32.to_ne_bytes()).ok()?;
        Some(CpusAwake { _request: f })
    }
}
