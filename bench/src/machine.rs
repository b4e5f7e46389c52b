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

/// CPU time the host took from this machine's CPUs so far (the `steal`
/// column of `/proc/stat`, summed over CPUs), in milliseconds; `None`
/// where the kernel does not report it. A vCPU the host preempts stops
/// for that long with its thread still "running", so a benchmark phase
/// with more steal has stalls that are not the program's.
pub(crate) fn steal_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = steal_ticks(&stat)?;
    (ticks_per_s > 0).then(|| ticks as f64 * 1000.0 / ticks_per_s as f64)
}

/// Milliseconds of steal since `before` (None if either reading is
/// missing).
pub(crate) fn steal_since(before: Option<f64>) -> Option<f64> {
    Some(steal_ms()? - before?)
}

/// The `steal` column (the eighth number) of the all-CPU line of a
/// `/proc/stat` text.
fn steal_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    line.split_whitespace().nth(8)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_the_eighth_column_of_the_all_cpu_line() {
        let stat = "cpu  4705 150 1120 16250 520 30 45 77 0 0\n\
                    cpu0 2000 75 560 8000 260 15 20 40 0 0\n";
        assert_eq!(steal_ticks(stat), Some(77));
        assert_eq!(steal_ticks("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(steal_ticks("cpu  1 2 3\n"), None);
    }
}
