//! Whether this machine stops its own CPUs when it writes to its disk.
//!
//! On some virtual machines the host does a guest's disk I/O on CPU time
//! it takes from the guest's vCPUs: while the vCPUs are busy, each write
//! or flush the guest sends stops them (often all at once) for a
//! millisecond or more. A latency benchmark that writes to disk while its
//! CPUs are busy then measures those stops, whatever the program does. The
//! page server's soak is such a benchmark: its tail while ingesting is set
//! by them on the VM this project was built on (docs/pageserver.md,
//! "Disk writes stop the VM").
//!
//! This workload measures that with no Strata code at all. One thread per
//! CPU spins on the clock, pinned to its CPU, and notes every gap of
//! [`GAP`] or more between two readings: a time the thread did not run.
//! The phases:
//!
//! - **busy CPUs, no disk writes**: the spinners alone (the floor);
//! - **disk writes, CPUs idle**: a writer alone, only the host's steal
//!   counted (nothing spins to see gaps);
//! - **busy CPUs + streaming writes**: the spinners and a writer of large
//!   writes with an `fdatasync` every few MiB, as a layer file is written;
//! - **busy CPUs + synced small writes**: the spinners and a writer of
//!   4 KiB writes each made durable with `fdatasync`, as a log replica
//!   commits.
//!
//! Gaps on one CPU may be the guest's own scheduler running the writer
//! there; gaps on every CPU at once cannot be (the writer is one thread),
//! so time with every CPU stopped is reported on its own.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::machine::{steal_ms, steal_since};

/// Shortest gap between two clock readings counted as a stop.
const GAP: Duration = Duration::from_millis(1);
/// The writers cycle over this much of one file.
const FILE_BYTES: u64 = 64 << 20;

#[derive(clap::Args, Clone, Debug)]
pub struct HostStallsArgs {
    /// Seconds of each phase.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// The streaming writer's rate, in MiB a second (1 MiB writes).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub stream_mib_s: u64,
    /// The streaming writer's `fdatasync` interval, in MiB.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub stream_sync_mib: u64,
    /// Synced 4 KiB writes a second in the last phase.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub synced_writes_s: u64,
}

/// How a writer writes: `chunk`-byte writes at `per_s` a second,
/// `fdatasync` after every `sync_every` of them.
#[derive(Clone, Copy, Debug)]
struct Writes {
    chunk: usize,
    per_s: u64,
    sync_every: u64,
}

/// What one phase measured.
#[derive(Clone, Copy, Debug, Default)]
struct Phase {
    steal_ms_s: f64,
    /// Gaps summed over the CPUs, in ms a second (`None`: nothing spun).
    gaps_ms_s: Option<f64>,
    /// Time every CPU was in a gap at once, in ms a second.
    all_stopped_ms_s: Option<f64>,
    longest_gap_ms: Option<f64>,
    written_mib: f64,
}

pub fn run(args: &HostStallsArgs, dir: &Path) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let secs = Duration::from_secs(args.seconds);
    let stream = Writes {
        chunk: 1 << 20,
        per_s: args.stream_mib_s,
        sync_every: args.stream_sync_mib,
    };
    let synced = Writes {
        chunk: 4096,
        per_s: args.synced_writes_s,
        sync_every: 1,
    };
    println!(
        "host-stalls: {cpus} CPU(s), each kept busy by a thread spinning on the clock that notes \
         every gap of {} ms or more; writes to {}; {} s a phase",
        GAP.as_millis(),
        dir.display(),
        args.seconds
    );
    let phases = [
        ("busy CPUs, no disk writes", true, None),
        ("disk writes (streaming), CPUs idle", false, Some(stream)),
        ("busy CPUs + streaming writes", true, Some(stream)),
        ("busy CPUs + synced 4 KiB writes", true, Some(synced)),
    ];
    println!(
        "  streaming: 1 MiB writes at {} MiB/s, fdatasync every {} MiB; synced: {} writes of 4 KiB \
         a second, each followed by fdatasync",
        args.stream_mib_s, args.stream_sync_mib, args.synced_writes_s
    );
    println!(
        "{:<38} {:>11} {:>12} {:>17} {:>12} {:>12}",
        "phase", "steal ms/s", "gaps ms/s", "all CPUs ms/s", "longest ms", "written MiB"
    );
    let mut results = [Phase::default(); 4];
    for (slot, (name, spin, writes)) in results.iter_mut().zip(phases) {
        let p =
            phase(dir, cpus, secs, spin, writes).with_context(|| format!("phase \"{name}\""))?;
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
        println!(
            "{:<38} {:>11.1} {:>12} {:>17} {:>12} {:>12.0}",
            name,
            p.steal_ms_s,
            opt(p.gaps_ms_s),
            opt(p.all_stopped_ms_s),
            opt(p.longest_gap_ms),
            p.written_mib
        );
        *slot = p;
    }
    let [busy, writes_idle, streaming, synced] = results;
    // Every phase but the writer's alone spins, so has a stopped time.
    let stopped = |p: Phase| p.all_stopped_ms_s.unwrap_or(0.0);
    println!(
        "every CPU stopped at once: {:.1} ms a second with synced writes, against {:.1} with no \
         writes (the floor)",
        stopped(synced),
        stopped(busy)
    );
    println!(
        "RESULT steal_ms_s_busy={:.1} steal_ms_s_writes_idle={:.1} steal_ms_s_busy_streaming={:.1} \
         steal_ms_s_busy_synced={:.1} all_stopped_ms_s_busy={:.1} \
         all_stopped_ms_s_busy_streaming={:.1} all_stopped_ms_s_busy_synced={:.1}",
        busy.steal_ms_s,
        writes_idle.steal_ms_s,
        streaming.steal_ms_s,
        synced.steal_ms_s,
        stopped(busy),
        stopped(streaming),
        stopped(synced),
    );
    Ok(())
}

fn phase(
    dir: &Path,
    cpus: usize,
    secs: Duration,
    spin: bool,
    writes: Option<Writes>,
) -> anyhow::Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let origin = Instant::now();
    let steal_before = steal_ms();
    let spinners: Vec<_> = (0..if spin { cpus } else { 0 })
        .map(|cpu| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("spin-{cpu}"))
                .spawn(move || spin_on(cpu, origin, &stop))
        })
        .collect::<Result<_, _>>()
        .context("starting the spinners")?;
    let writer = match writes {
        Some(w) => {
            let (stop, path) = (stop.clone(), dir.join("host-stalls.dat"));
            Some(
                std::thread::Builder::new()
                    .name("writer".into())
                    .spawn(move || write_until(&path, w, &stop))
                    .context("starting the writer")?,
            )
        }
        None => None,
    };
    std::thread::sleep(secs);
    stop.store(true, Ordering::Release);
    let elapsed = origin.elapsed().as_secs_f64();
    let steal_ms_s = steal_since(steal_before).map_or(0.0, |ms| ms / elapsed);
    let gaps: Vec<Vec<(Duration, Duration)>> = spinners
        .into_iter()
        .map(|h| h.join().map_err(|_| anyhow::anyhow!("a spinner panicked")))
        .collect::<anyhow::Result<_>>()?;
    let written = match writer {
        Some(h) => h
            .join()
            .map_err(|_| anyhow::anyhow!("the writer panicked"))??,
        None => 0,
    };
    std::fs::remove_file(dir.join("host-stalls.dat")).ok();
    let per_s = |d: Duration| d.as_secs_f64() * 1e3 / elapsed;
    Ok(Phase {
        steal_ms_s,
        gaps_ms_s: spin.then(|| per_s(gaps.iter().flatten().map(|(s, e)| *e - *s).sum())),
        all_stopped_ms_s: spin.then(|| per_s(all_at_once(&gaps))),
        longest_gap_ms: spin.then(|| {
            gaps.iter()
                .flatten()
                .map(|(s, e)| (*e - *s).as_secs_f64() * 1e3)
                .fold(0.0, f64::max)
        }),
        written_mib: written as f64 / (1 << 20) as f64,
    })
}

/// Spins on `cpu` until `stop`, returning each gap of [`GAP`] or more
/// between two clock readings, as offsets from `origin`.
fn spin_on(cpu: usize, origin: Instant, stop: &AtomicBool) -> Vec<(Duration, Duration)> {
    pin_to(cpu);
    let mut gaps = Vec::new();
    let mut prev = origin.elapsed();
    let mut n = 0u32;
    loop {
        let now = origin.elapsed();
        if now - prev >= GAP {
            gaps.push((prev, now));
        }
        prev = now;
        n = n.wrapping_add(1);
        if n.is_multiple_of(1024) && stop.load(Ordering::Relaxed) {
            return gaps;
        }
    }
}

/// Pins the calling thread to one CPU; where that is refused the spinner
/// runs unpinned (its gaps then also count migrations).
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes
    // inside it, and sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Writes as `writes` says into `path` until `stop`; returns the bytes
/// written.
fn write_until(path: &Path, writes: Writes, stop: &AtomicBool) -> anyhow::Result<u64> {
    let Writes {
        chunk,
        per_s,
        sync_every,
    } = writes;
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let buf = vec![0x5au8; chunk];
    let started = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        let at = (n * chunk as u64) % FILE_BYTES;
        file.write_all_at(&buf, at)
            .with_context(|| format!("writing {}", path.display()))?;
        n += 1;
        if n.is_multiple_of(sync_every) {
            file.sync_data()
                .with_context(|| format!("syncing {}", path.display()))?;
        }
        let due = Duration::from_secs_f64(n as f64 / per_s as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(n * chunk as u64)
}

/// Total time inside a gap on every CPU at once, given each CPU's gaps
/// (each list in time order, not overlapping itself).
fn all_at_once(gaps: &[Vec<(Duration, Duration)>]) -> Duration {
    if gaps.is_empty() {
        return Duration::ZERO;
    }
    let mut edges: Vec<(Duration, i32)> = gaps
        .iter()
        .flatten()
        .flat_map(|&(s, e)| [(s, 1), (e, -1)])
        .collect();
    // Ends before starts at the same instant: touching gaps do not overlap.
    edges.sort();
    let (mut inside, mut since, mut total) = (0usize, Duration::ZERO, Duration::ZERO);
    for (at, step) in edges {
        if inside == gaps.len() {
            total += at - since;
        }
        inside = inside.checked_add_signed(step as isize).unwrap_or(0);
        since = at;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: u64, e: u64) -> (Duration, Duration) {
        (Duration::from_millis(s), Duration::from_millis(e))
    }

    #[test]
    fn only_time_with_every_cpu_in_a_gap_counts() {
        // CPU 0 stopped 10–20 and 30–40, CPU 1 15–35: both at 15–20, 30–35.
        let gaps = vec![vec![ms(10, 20), ms(30, 40)], vec![ms(15, 35)]];
        assert_eq!(all_at_once(&gaps), Duration::from_millis(10));
        // A third CPU that never stopped: never all at once.
        let mut three = gaps.clone();
        three.push(vec![]);
        assert_eq!(all_at_once(&three), Duration::ZERO);
        // Touching gaps do not overlap.
        assert_eq!(
            all_at_once(&[vec![ms(0, 5)], vec![ms(5, 9)]]),
            Duration::ZERO
        );
        // One CPU: all of its gaps.
        assert_eq!(
            all_at_once(&[vec![ms(0, 5), ms(7, 9)]]),
            Duration::from_millis(7)
        );
        assert_eq!(all_at_once(&[]), Duration::ZERO);
    }
}
