//! The `pageserver-soak` workload: sustained WAL ingest with GetPage load
//! for a fixed time, watching compaction and GC keep the page server small.
//!
//! Order of a run:
//! 1. three log replicas (`--log-replicas`) and a page server in this
//!    process, the log (and its writers) on a tokio runtime of its own
//!    (16 MiB layers, a 256 MiB history window by default, so compaction
//!    and GC both run within a couple of minutes); every page formatted
//!    once;
//! 2. **idle**: every page read once (a page server serving a working set
//!    holds it in its newest-page cache), then GetPage for a few seconds
//!    with no ingest and no compaction running (`--idle-seconds`) — the
//!    idle p99 (after a second of warm-up, not counted, for the clients'
//!    connections);
//! 3. **soak**: writers append batches that replace each page's one item,
//!    at `--rate-mib-s`, for `--seconds`, while `--clients` readers ask
//!    for random pages at the latest ingested LSN. Each GetPage is counted
//!    as *compacting* if a compaction or GC step was running when it was
//!    due (the status RPC's `compaction_running`, polled every 20 ms).
//!    By default the readers are an **open loop**: `--getpage-rate`
//!    requests a second on a fixed schedule, round robin over the clients,
//!    each an OS thread of its own that sleeps until its next request is
//!    due and sends it (at `SCHED_FIFO` if permitted, see
//!    [`start_open_loop`]); a request's latency runs from its *scheduled*
//!    time, so a stall counts for every request it delays (no coordinated
//!    omission). The offered and achieved rates are printed, and so is
//!    each phase's latency from *sending* to the answer, without the wait
//!    to be sent (behind the client's previous request, or for the
//!    client's wake-up), and how late the clients' timers woke them, to
//!    tell the page server's share of a tail from the load generator's.
//!    While it runs the soak keeps the CPUs from halting when the process
//!    may (see [`CpusAwake`]). With
//!    `--getpage-rate 0` each client asks again as soon as it has an
//!    answer (closed loop), which keeps both cores of this machine busy.
//!    Every `--report-secs` a line: WAL ingested, live layers by kind,
//!    bytes on disk, write amplification, compaction debt, p99, and the
//!    CPU time the host took from the VM in that interval (steal).
//!    Each phase's latency is also printed as the page server itself
//!    measured it (its GetPage histogram on the status RPC, split by the
//!    phase seen at each poll), which leaves out the network and every
//!    client-side wait.
//!
//! 4. **idle again**: once the writers stop, the soak waits (answers not
//!    counted) until ingest has caught up and the page server's background
//!    work is done (the open layer written, uploads and compaction
//!    finished, for two seconds in a row; at most two minutes), then reads
//!    for `--idle-seconds` more. The RESULT line's idle p99 is the lower of
//!    the two idle windows' p99: a stall of the host in one window (this
//!    project's VMs have them) cannot flatter the ratio;
//!
//! 5. **recovery**: the page server uploads its layers to a local bucket
//!    (`DIR/bucket`) as it goes; at the end the soak reads a sample of pages
//!    at the last ingested LSN, stops it, starts a page server on an empty
//!    directory with only the bucket and the log, and times it from start
//!    until it answers every sampled page with the same bytes and LSN range
//!    (`recover_from_bucket_s`).
//!
//! Last line: `RESULT write_amp=… max_layers=… getpage_p99_us_idle=…
//! getpage_p99_us_compacting=… recover_from_bucket_s=…`. Targets from
//! issue 7: `max_layers` ≤ 64, `write_amp` ≤ 6, compacting p99 ≤ 3× idle
//! p99.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use strata_pageserver::client::{PageServerClient, RemotePage, Status};
use strata_pageserver::metrics::quantile_bound_us;
use strata_pageserver::remote::BucketConfig;
use strata_pageserver::server::ServerConfig;
use strata_pageserver::workload::Rng;
use strata_wal::{Lsn, PageId};
use tokio::runtime::Handle;

use crate::machine::{CpusAwake, steal_ms, steal_since};
use crate::pageserver::start_log;
use crate::pageserver::{CLUSTER_ID, PageServer, PageserverArgs, RECORDS_PER_BATCH, SPACE, batch};
use crate::report::us;
use crate::stats::Latency;
use crate::watchdog::Watchdog;

#[derive(clap::Args, Clone, Debug)]
pub struct SoakArgs {
    /// Seconds of sustained ingest.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(5..))]
    pub seconds: u64,
    /// WAL written per second, in MiB (spread over the writers).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_mib_s: u64,
    /// Pages the WAL updates.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub pages: u32,
    /// Concurrent GetPage clients.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub clients: u64,
    /// GetPage requests per second over all clients, sent on a fixed
    /// schedule (open loop; latency counted from each request's scheduled
    /// time). 0: closed loop, each client asks again as soon as it has an
    /// answer (keeps every core busy). At most 100,000: the clients may run
    /// at real-time priority, and a rate they cannot keep up with would
    /// keep them on the cores.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub getpage_rate: u64,
    /// The page server's layer size, in MiB.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub layer_size_mib: u64,
    /// The page server's history window, in MiB of WAL.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub history_mib: u64,
    /// The page server's newest-page cache, in MiB (0: off).
    #[arg(long, default_value_t = 128)]
    pub newest_cache_mib: u64,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub report_secs: u64,
    /// Seconds of the idle phase (GetPage only, after a second of warm-up).
    /// The default gives it about as many samples as the compacting phase
    /// of a default run, so one stall of the host weighs about as much in
    /// either p99.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_seconds: u64,
    /// Log replicas in this process. In a deployment they run on other
    /// machines; fewer of them here shows how much of the loaded tail is
    /// theirs (the page server reads the same stream from any count).
    #[arg(long, default_value_t = crate::log::cluster::REPLICAS,
          value_parser = clap::value_parser!(u32).range(1..=5))]
    pub log_replicas: u32,
    /// Where the log replicas keep their segment files (a temporary
    /// directory is made in it). Default: the run's directory, on the disk
    /// under test. In a deployment they run on other machines, with disks
    /// of their own.
    #[arg(long)]
    pub log_dir: Option<std::path::PathBuf>,
    /// The share of one CPU a compaction step may use, in percent (100:
    /// unpaced).
    #[arg(long, default_value_t = strata_pageserver::timeline::DEFAULT_CPU_PERCENT,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub compaction_cpu_percent: u8,
    /// The share of the CPUs the page server's GetPage threads may use at
    /// real-time priority, in percent, as its `--getpage-realtime-percent`
    /// (0: normal priority, with a short slice).
    #[arg(long, default_value_t = strata_pageserver::server::DEFAULT_GETPAGE_REALTIME_PERCENT,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub getpage_realtime_percent: u32,
    /// Print each open-loop GetPage that took at least this many µs from
    /// its due time (to stderr, with its due and sending times on
    /// `CLOCK_MONOTONIC`, the clock of `perf record -k CLOCK_MONOTONIC`),
    /// to find its stall in a trace. 0: none.
    #[arg(long, default_value_t = 0)]
    pub print_slow_us: u64,
}

const WRITERS: usize = 8;
const WARM_UP: Duration = Duration::from_secs(1);
/// Pages per GetPages request when every page is read once at the start.
const WARM_BATCH: usize = 100;
const POLL: Duration = Duration::from_millis(20);
/// Steal while soaking, in ms a second, from which the report says the
/// loaded tails are the host's. On the VM this was built on, runs within
/// 3× had 0.6–3.3; runs with 15 or more were 3.6× and over.
const HOST_NOTE_STEAL_MS_S: f64 = 10.0;

pub fn run(args: &SoakArgs, dir: &Path) -> anyhow::Result<()> {
    let budget = Duration::from_secs(args.seconds * 3 + 2 * args.idle_seconds + 300) + DRAIN_LIMIT;
    let _watchdog = Watchdog::arm(budget, "the pageserver-soak workload".into());
    // The log replicas and the writers run on a runtime of their own, as
    // the separate processes they are in a deployment: a GetPage then
    // waits for the OS scheduler, not in the same task queues as the log's
    // appends. The page server and its readers share the main runtime.
    let log_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("soak-log")
        .enable_all()
        .build()
        .context("starting the log's tokio")?;
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    let cpus_awake = CpusAwake::hold();
    runtime.block_on(run_async(
        args,
        dir,
        log_runtime.handle(),
        cpus_awake.is_some(),
    ))
}

/// GetPage latencies, split by whether compaction was running.
#[derive(Default)]
struct Samples {
    idle: Vec<Duration>,
    compacting: Vec<Duration>,
    /// Neither idle nor compacting: ingest only (printed, not a target).
    ingesting: Vec<Duration>,
    /// Since the last progress line, all kinds.
    interval: Vec<Duration>,
    /// Open loop only: each GetPage from the moment its client sent it to
    /// the answer (idle, ingesting, compacting), leaving out the time it
    /// waited to be sent — behind the client's previous request, or for
    /// the client's own wake-up on a busy machine.
    in_flight: [Vec<Duration>; 3],
    /// Open loop only: how late a client woke for a GetPage it slept
    /// until (the load generator's own error), by phase.
    timer_late: [Vec<Duration>; 3],
    /// Open loop only: GetPages due while their client still waited for
    /// its previous answer (sent late, not slept for), by phase.
    behind: [u64; 3],
}

/// The page server's own GetPage histogram (status RPC), split by phase
/// (idle, ingesting, compacting).
#[derive(Default)]
struct ServerTimes {
    phases: [Vec<u64>; 3],
    last: Vec<u64>,
}

impl ServerTimes {
    /// Adds the answers counted since the last reading to `phase`.
    fn add(&mut self, phase: usize, now: &[u64]) {
        if !self.last.is_empty() {
            let sums = &mut self.phases[phase];
            sums.resize(now.len(), 0);
            for ((sum, n), before) in sums.iter_mut().zip(now).zip(&self.last) {
                *sum += n.saturating_sub(*before);
            }
        }
        self.last = now.to_vec();
    }

    /// Takes `now` as the last reading without counting the answers
    /// since the one before in any phase.
    fn skip(&mut self, now: &[u64]) {
        self.last = now.to_vec();
    }

    /// A phase's quantile, as "≤ bound".
    fn quantile(&self, phase: usize, q: f64) -> String {
        match quantile_bound_us(&self.phases[phase], q) {
            None => "-".into(),
            Some(Some(bound)) => format!("<= {}", us(bound as f64)),
            Some(None) => "above every bucket".into(),
        }
    }
}

/// What the readers need to know, kept fresh by the poller.
struct Shared {
    lsn: AtomicU64,
    compacting: AtomicBool,
    soaking: AtomicBool,
    /// Between the soak and the second idle window: answers are not
    /// counted in any phase.
    draining: AtomicBool,
    stop: AtomicBool,
    /// Open loop only: GetPages sent while idle, while soaking.
    sent: [AtomicU64; 2],
    samples: Mutex<Samples>,
    /// Open loop only: print GetPages that took at least this long.
    print_slow: Option<Duration>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Samples> {
        // A reader that panicked holding it left whole samples behind.
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn run_async(
    args: &SoakArgs,
    dir: &Path,
    log_side: &Handle,
    cpus_awake: bool,
) -> anyhow::Result<()> {
    let log_tmp = match &args.log_dir {
        Some(parent) => Some(
            tempfile::Builder::new()
                .prefix("strata-soak-log-")
                .tempdir_in(parent)
                .with_context(|| format!("making a directory in {}", parent.display()))?,
        ),
        None => None,
    };
    let log_dir = log_tmp.as_ref().map_or(dir, |t| t.path()).to_path_buf();
    let replicas = args.log_replicas;
    let (log, writer) = log_side
        .spawn(async move { start_log(&log_dir, replicas).await })
        .await??;
    let fill = PageserverArgs {
        backlog_mib: 1,
        pages: args.pages,
        item_bytes: 200,
        seconds: 1,
    };
    let mut end = Lsn::ZERO;
    let mut next = 0u64;
    while next < u64::from(args.pages) {
        end = end.max(writer.append(batch(next, &fill, 0)?).await?);
        next += RECORDS_PER_BATCH as u64;
    }
    let mut config =
        ServerConfig::new(CLUSTER_ID, dir.join("pageserver"), log.endpoints().to_vec());
    config.layer_size_bytes = args.layer_size_mib << 20;
    config.compaction.cpu_percent = args.compaction_cpu_percent;
    config.getpage_realtime_percent = args.getpage_realtime_percent;
    config.gc.history_bytes = Some(args.history_mib << 20);
    config.newest_cache_bytes = args.newest_cache_mib << 20;
    config.bucket = Some(BucketConfig::Local(dir.join("bucket")));
    let ps = PageServer::start_with(config.clone()).await?;
    let mut status = ps.client().await?;
    while Lsn(status.status().await?.ingested_lsn) < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every page read once: a page server that has been serving a working
    // set holds it in its newest-page cache (sized for it), so the phases
    // below compare steady states, not a cache filling up.
    let mut warm = ps.client().await?;
    let all: Vec<PageId> = (0..args.pages).map(|n| PageId::new(SPACE, n)).collect();
    for some in all.chunks(WARM_BATCH) {
        for answer in warm.get_pages(some, end).await? {
            answer?;
        }
    }
    let shared = Arc::new(Shared {
        lsn: AtomicU64::new(end.0),
        compacting: AtomicBool::new(false),
        soaking: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        sent: Default::default(),
        samples: Mutex::new(Samples::default()),
        print_slow: (args.print_slow_us > 0).then(|| Duration::from_micros(args.print_slow_us)),
    });
    let mut readers = tokio::task::JoinSet::new();
    let schedule = Schedule::new(args.getpage_rate, args.clients);
    let mut realtime = true;
    for c in 0..args.clients {
        match args.getpage_rate {
            0 => {
                let client = ps.client().await?;
                readers.spawn(read_closed_loop(client, shared.clone(), args.pages, c))
            }
            _ => {
                let endpoint = ps.endpoint().to_string();
                let (rt, done) =
                    start_open_loop(endpoint, shared.clone(), schedule, c, args.pages)?;
                realtime &= rt;
                readers.spawn(async move { done.await? })
            }
        };
    }
    let load = match args.getpage_rate {
        0 => "closed loop".to_string(),
        rate => format!(
            "open loop, {rate} GetPage/s offered, each client keeping its share of the schedule {}",
            match realtime {
                true => "at SCHED_FIFO",
                false => "at normal priority (SCHED_FIFO not permitted): its wake-ups count",
            }
        ),
    };
    println!(
        "pageserver-soak: {} pages, {} MiB/s of WAL for {} s into {} log replica(s) ({}), {} GetPage clients ({load}), {} MiB layers, {} MiB history, compaction at {}% of a CPU, {}",
        args.pages,
        args.rate_mib_s,
        args.seconds,
        args.log_replicas,
        match &args.log_dir {
            Some(d) => format!("their files in {}", d.display()),
            None => "their files beside the page server's".to_string(),
        },
        args.clients,
        args.layer_size_mib,
        args.history_mib,
        args.compaction_cpu_percent,
        match cpus_awake {
            true => "CPUs kept from halting (cpu_dma_latency 0)",
            false =>
                "CPUs may halt when idle (cpu_dma_latency not permitted): on a VM, idle wake-ups count",
        }
    );
    tokio::time::sleep(WARM_UP).await;
    {
        let mut s = shared.lock();
        s.idle.clear();
        s.in_flight[0].clear();
        s.timer_late[0].clear();
        s.behind[0] = 0;
    }
    shared.sent[0].store(0, Ordering::Relaxed);
    let mut server_times = ServerTimes::default();
    let warmed = status.status().await?;
    server_times.add(0, &warmed.getpage_latency_buckets);
    println!(
        "GetPage threads at real-time priority: {} (within {}% of the CPUs' time; 0: off or not permitted, normal priority)",
        warmed.getpage_realtime_threads, args.getpage_realtime_percent
    );
    let idle_started = Instant::now();
    let steal_before_idle = steal_ms();
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let idle_steal = steal_since(steal_before_idle);
    server_times.add(0, &status.status().await?.getpage_latency_buckets);
    let idle = Latency::from_samples(std::mem::take(&mut shared.lock().idle))
        .context("no idle GetPage samples")?;
    let idle_secs = idle_started.elapsed().as_secs_f64();
    println!(
        "idle: GetPage p50 {} p99 {} ({} samples)",
        us(idle.p50_us),
        us(idle.p99_us),
        idle.samples
    );
    print_rates(
        &shared,
        args.getpage_rate,
        "idle",
        false,
        idle.samples,
        idle_secs,
    );

    shared.soaking.store(true, Ordering::Release);
    let soak_started = Instant::now();
    let steal_before_soak = steal_ms();
    let deadline = soak_started + Duration::from_secs(args.seconds);
    let written = Arc::new(AtomicU64::new(0));
    let mut writers = tokio::task::JoinSet::new();
    let counter = Arc::new(AtomicU64::new(next));
    for w in 0..WRITERS {
        let (writer, counter, fill, written) = (
            writer.clone(),
            counter.clone(),
            fill.clone(),
            written.clone(),
        );
        let per_writer = (args.rate_mib_s << 20) as f64 / WRITERS as f64;
        writers.spawn_on(
            async move {
                let started = Instant::now();
                let mut bytes = 0u64;
                while Instant::now() < deadline {
                    let first = counter.fetch_add(RECORDS_PER_BATCH as u64, Ordering::Relaxed);
                    let b = batch(first, &fill, w as u8)?;
                    let before = b.len() as u64;
                    writer.append(b).await?;
                    bytes += before;
                    written.fetch_add(before, Ordering::Relaxed);
                    let due = Duration::from_secs_f64(bytes as f64 / per_writer);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                anyhow::Ok(())
            },
            log_side,
        );
    }
    let max_layers = watch(&mut status, &shared, &mut server_times, args, deadline).await?;
    while let Some(done) = writers.join_next().await {
        done??;
    }
    shared.draining.store(true, Ordering::Release);
    let soak_secs = soak_started.elapsed().as_secs_f64();
    let soak_steal = steal_since(steal_before_soak);
    let soaked = {
        let s = shared.lock();
        s.ingesting.len() + s.compacting.len()
    };
    print_rates(&shared, args.getpage_rate, "soak", true, soaked, soak_secs);

    // The second idle window, once ingest and background work are done.
    let idle_again = match wait_until_quiet(&mut status, &shared).await? {
        None => {
            println!(
                "idle again: skipped, the page server was not quiet within {} s",
                DRAIN_LIMIT.as_secs()
            );
            None
        }
        Some(waited) => {
            server_times.skip(&status.status().await?.getpage_latency_buckets);
            shared.lock().idle.clear();
            shared.soaking.store(false, Ordering::Release);
            shared.compacting.store(false, Ordering::Release);
            shared.draining.store(false, Ordering::Release);
            let steal_before = steal_ms();
            let started = Instant::now();
            tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
            let steal = steal_since(steal_before);
            let secs = started.elapsed().as_secs_f64();
            server_times.add(0, &status.status().await?.getpage_latency_buckets);
            let again = Latency::from_samples(std::mem::take(&mut shared.lock().idle))
                .context("no GetPage samples in the second idle window")?;
            println!(
                "idle again, after ingest and background work stopped ({:.1} s later): GetPage p50 {} p99 {} ({} samples{})",
                waited.as_secs_f64(),
                us(again.p50_us),
                us(again.p99_us),
                again.samples,
                steal.map_or(String::new(), |ms| format!(
                    "; the host took {:.1} ms a second",
                    ms / secs
                )),
            );
            Some(again)
        }
    };
    shared.stop.store(true, Ordering::Release);
    while let Some(done) = readers.join_next().await {
        done??;
    }
    // The ratio's baseline: the lower of the two windows' p99, so that a
    // stall of the host in one of them cannot flatter the ratio.
    let idle_p99 = idle_again
        .as_ref()
        .map_or(idle.p99_us, |again| again.p99_us.min(idle.p99_us));
    println!(
        "idle p99 for the ratio: {} (the lower of the idle windows: a stall of the host in one cannot flatter the ratio)",
        us(idle_p99)
    );
    let last = status.status().await?;
    writer.close();
    let sample = sample_pages(&mut status, args.pages).await?;
    ps.stop().await?;
    config.data_dir = dir.join("pageserver-recovered");
    let recover_s = recover_from_bucket(config, &sample).await?;
    log_side.spawn(log.stop()).await??;

    let samples = std::mem::take(&mut *shared.lock());
    print_by_phase(
        samples.in_flight,
        "GetPage sent to answered",
        "open loop: without the wait to be sent",
    );
    print_by_phase(
        samples.timer_late,
        "a client's timer late",
        "due to woken: the load generator's own error",
    );
    if args.getpage_rate > 0 {
        let [idle, ingesting, compacting] = samples.behind;
        println!(
            "GetPages due while their client still waited for its previous answer: {idle} idle, {ingesting} ingesting, {compacting} compacting"
        );
    }
    if let (Some(idle), Some(soak)) = (idle_steal, soak_steal) {
        println!(
            "CPU time the host took from this VM (steal): {:.1} ms a second idle, {:.1} ms a second soaking \
             (a vCPU stopped that long stalls whatever it ran; the idle p99 counts such stalls too)",
            idle / idle_secs,
            soak / soak_secs
        );
        if soak / soak_secs >= HOST_NOTE_STEAL_MS_S {
            println!(
                "  the host stopped this VM's CPUs while it soaked: on VMs whose disk writes stop \
                 their CPUs, the loaded tails measure the host (`strata-bench host-stalls` tells; \
                 docs/pageserver.md, \"Disk writes stop the VM\")"
            );
        }
    }
    for (i, phase) in ["idle", "ingesting", "compacting"].into_iter().enumerate() {
        println!(
            "{phase}: GetPage in the page server p50 {} p99 {} (its own histogram)",
            server_times.quantile(i, 0.5),
            server_times.quantile(i, 0.99)
        );
    }
    let compacting = Latency::from_samples(samples.compacting);
    let ingesting = Latency::from_samples(samples.ingesting);
    let write_amp = write_amp(&last);
    println!();
    if let Some(l) = &ingesting {
        println!(
            "ingesting, not compacting: GetPage p50 {} p99 {} ({} samples)",
            us(l.p50_us),
            us(l.p99_us),
            l.samples
        );
    }
    let compacting_p99 = match &compacting {
        Some(l) => {
            println!(
                "compacting: GetPage p50 {} p99 {} ({} samples)",
                us(l.p50_us),
                us(l.p99_us),
                l.samples
            );
            format!("{:.1}", l.p99_us)
        }
        None => "na".into(),
    };
    println!(
        "WAL ingested {:.0} MiB; layer files written {:.0} MiB by flushes, {:.0} MiB by compaction; {} layers deleted",
        mib(last.wal_bytes_ingested),
        mib(last.flush_bytes_written),
        mib(last.compaction_bytes_written),
        last.layers_deleted
    );
    println!(
        "GetPage answered from the caches {:.1}% ({} hits, {} misses), {} pages rebuilt from layers",
        last.cache_hit_rate * 100.0,
        last.cache_hits,
        last.cache_misses,
        last.reconstructions
    );
    println!(
        "GetPage threads dropped to normal priority on a spent budget: {} times",
        last.getpage_realtime_demotions
    );
    println!("targets: max_layers <= 64, write_amp <= 6, compacting p99 <= 3x idle p99");
    println!(
        "RESULT write_amp={write_amp:.2} max_layers={max_layers} getpage_p99_us_idle={:.1} \
         getpage_p99_us_compacting={compacting_p99} recover_from_bucket_s={recover_s:.2}",
        idle_p99
    );
    Ok(())
}

/// Pages compared after recovery.
const RECOVERY_SAMPLE: u64 = 200;

/// A sample of pages as the running page server answers them at its
/// ingested LSN.
async fn sample_pages(
    c: &mut PageServerClient,
    pages: u32,
) -> anyhow::Result<Vec<(PageId, Lsn, RemotePage)>> {
    let lsn = Lsn(c.status().await?.ingested_lsn);
    let mut rng = Rng::new(4242);
    let mut out = Vec::new();
    for _ in 0..RECOVERY_SAMPLE {
        let page = random_page(&mut rng, pages);
        out.push((page, lsn, c.get_page(page, lsn).await?));
    }
    Ok(out)
}

/// Starts a page server on `config` (an empty directory, the soak's bucket)
/// and returns the seconds until it answers every sampled page the same.
async fn recover_from_bucket(
    config: ServerConfig,
    sample: &[(PageId, Lsn, RemotePage)],
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let ps = PageServer::start_with(config).await?;
    let mut c = ps.client().await?;
    let deadline = started + Duration::from_secs(600);
    for (page, lsn, want) in sample {
        let got = loop {
            match c.get_page(*page, *lsn).await {
                Ok(got) => break got,
                // Ingest has not reached the LSN yet.
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(e) => return Err(e.into()),
            }
        };
        // (`to` depends on how far each server had ingested when asked.)
        anyhow::ensure!(
            got.page.as_bytes() == want.page.as_bytes() && got.from == want.from,
            "page {page} at {lsn} differs after recovery from the bucket"
        );
    }
    let took = started.elapsed().as_secs_f64();
    let s = c.status().await?;
    println!(
        "recovered from the bucket in {took:.2} s: {} layers, {:.0} MiB in the bucket, generation {}",
        s.layer_count,
        mib(s.bucket_bytes),
        s.generation
    );
    ps.stop().await?;
    Ok(took)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn write_amp(s: &Status) -> f64 {
    (s.flush_bytes_written + s.compaction_bytes_written) as f64 / s.wal_bytes_ingested.max(1) as f64
}

/// Polls the status until `deadline`, keeping the readers' LSN and
/// compaction flag fresh and printing a line every `report_secs`; returns
/// the most live layers seen.
async fn watch(
    status: &mut PageServerClient,
    shared: &Shared,
    server_times: &mut ServerTimes,
    args: &SoakArgs,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let started = Instant::now();
    let mut next_report = started + Duration::from_secs(args.report_secs);
    let mut max_layers = 0;
    // The host's share of each interval (steal, ms a second): an
    // interval whose p99 jumps while the host took more is the host's.
    let mut steal_at = (Instant::now(), steal_ms());
    println!(
        "{:>5} {:>8} {:>4} {:>4} {:>4} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "s", "WAL MiB", "L0", "L1", "img", "disk MiB", "debt MiB", "write amp", "p99", "steal"
    );
    while Instant::now() < deadline {
        let s = status.status().await?;
        // Answers since the last poll count in the phase seen then, as
        // the readers' own samples do.
        let phase = 1 + usize::from(shared.compacting.load(Ordering::Acquire));
        server_times.add(phase, &s.getpage_latency_buckets);
        shared.lsn.store(s.ingested_lsn, Ordering::Release);
        shared
            .compacting
            .store(s.compaction_running, Ordering::Release);
        max_layers = max_layers.max(s.layer_count);
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(args.report_secs);
            let interval = std::mem::take(&mut shared.lock().interval);
            let p99 = Latency::from_samples(interval).map_or("-".into(), |l| us(l.p99_us));
            let now = (Instant::now(), steal_ms());
            let steal = match (steal_at.1, now.1) {
                (Some(before), Some(after)) => format!(
                    "{:.1} ms/s",
                    (after - before) / now.0.duration_since(steal_at.0).as_secs_f64()
                ),
                _ => "-".into(),
            };
            steal_at = now;
            println!(
                "{:>5.0} {:>8.0} {:>4} {:>4} {:>4} {:>9.0} {:>9.0} {:>9.2} {:>10} {:>10}",
                started.elapsed().as_secs_f64(),
                mib(s.wal_bytes_ingested),
                s.l0_layer_count,
                s.l1_layer_count,
                s.image_layer_count,
                mib(s.layer_bytes),
                mib(s.compaction_debt_bytes),
                write_amp(&s),
                p99,
                steal
            );
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(max_layers)
}

/// How long the page server must be quiet before the second idle window.
const QUIET_FOR: Duration = Duration::from_secs(2);
/// How long the soak waits for that at most.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// Waits until the page server has been quiet for [`QUIET_FOR`]: ingest
/// caught up with the log, the open layer frozen and written, nothing
/// waiting for upload, no compaction or GC step running. Keeps the
/// readers' LSN at the ingested one. Returns how long it waited, or None
/// after [`DRAIN_LIMIT`].
async fn wait_until_quiet(
    status: &mut PageServerClient,
    shared: &Shared,
) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    while started.elapsed() < DRAIN_LIMIT {
        let s = status.status().await?;
        shared.lsn.store(s.ingested_lsn, Ordering::Release);
        let quiet = !s.compaction_running
            && s.ingest_lag_bytes == 0
            && s.open_layer_bytes == 0
            && s.frozen_layer_count == 0
            && s.upload_pending_layers == 0;
        match quiet_since {
            _ if !quiet => quiet_since = None,
            None => quiet_since = Some(Instant::now()),
            Some(since) if since.elapsed() >= QUIET_FOR => return Ok(Some(started.elapsed())),
            Some(_) => {}
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(None)
}

/// The open loop's schedule: request `k` is due `k / rate` seconds after
/// `start`, and client `c` of `n` sends requests `c`, `c + n`, `c + 2n`, …
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    every_ns: u64,
    clients: u64,
}

impl Schedule {
    fn new(rate: u64, clients: u64) -> Schedule {
        Schedule {
            start: Instant::now(),
            every_ns: 1_000_000_000 / rate.max(1),
            clients: clients.max(1),
        }
    }

    fn due(&self, k: u64) -> Instant {
        self.start + Duration::from_nanos(self.every_ns.saturating_mul(k))
    }
}

/// Starts an open-loop client: an OS thread of its own, at `SCHED_FIFO`
/// when the process may (root or `CAP_SYS_NICE`), which keeps its own
/// share of the schedule. It stands for a compute on another machine: it
/// sleeps until a request is due and sends it itself, as a compute's
/// thread that needs a page does, and the answer wakes it at once. Returns
/// whether it runs at `SCHED_FIFO`, and its end.
///
/// Each client sleeps on an OS timer, not tokio's (whose wheel has a
/// resolution of one millisecond, which would count up to that much as
/// latency). Before, one pacer thread handed each due request to a
/// client: a second real-time wake-up per request, which on two busy cores
/// waited for the same kernel work the page server's threads wait for, and
/// was counted as their latency.
fn start_open_loop(
    endpoint: String,
    shared: Arc<Shared>,
    schedule: Schedule,
    index: u64,
    pages: u32,
) -> anyhow::Result<(bool, tokio::sync::oneshot::Receiver<anyhow::Result<()>>)> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (told, realtime) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("soak-client".into())
        .spawn(move || {
            let _ = told.send(strata_pageserver::realtime::set_realtime());
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| ask_on_schedule(&rt, &endpoint, &shared, schedule, index, pages));
            let _ = done_tx.send(result);
        })
        .context("starting an open-loop client")?;
    let realtime = realtime
        .recv()
        .context("an open-loop client ended at once")?;
    Ok((realtime, done_rx))
}

/// The open-loop client's work: its requests of the schedule, each sent
/// when due (or at once, if the client is behind) and its latency counted
/// from the due time, so the time spent behind an earlier, slow request
/// counts too. Ends when the run stops.
fn ask_on_schedule(
    rt: &tokio::runtime::Runtime,
    endpoint: &str,
    shared: &Shared,
    schedule: Schedule,
    index: u64,
    pages: u32,
) -> anyhow::Result<()> {
    let mut client = rt.block_on(PageServerClient::connect(endpoint, CLUSTER_ID))?;
    let mut rng = Rng::new(index + 1);
    let mut k = index;
    while !shared.stop.load(Ordering::Acquire) {
        let due = schedule.due(k);
        k += schedule.clients;
        let late = match due.checked_duration_since(Instant::now()) {
            Some(wait) => {
                std::thread::sleep(wait);
                Some(due.elapsed())
            }
            None => None,
        };
        // Draining first: it is cleared after soaking, so a sample read
        // as not draining also sees the phase that follows the drain.
        let draining = shared.draining.load(Ordering::Acquire);
        let soaking = shared.soaking.load(Ordering::Acquire);
        let compacting = shared.compacting.load(Ordering::Acquire);
        let page = random_page(&mut rng, pages);
        let lsn = Lsn(shared.lsn.load(Ordering::Acquire));
        let sent = Instant::now();
        rt.block_on(client.get_page(page, lsn))?;
        let in_flight = sent.elapsed();
        if draining {
            continue;
        }
        shared.sent[usize::from(soaking)].fetch_add(1, Ordering::Relaxed);
        let phase = match (soaking, compacting) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        };
        {
            let mut s = shared.lock();
            s.in_flight[phase].push(in_flight);
            match late {
                Some(late) => s.timer_late[phase].push(late),
                None => s.behind[phase] += 1,
            }
        }
        let took = due.elapsed();
        if shared.print_slow.is_some_and(|slow| took >= slow) {
            print_slow(index, page, took, sent.elapsed(), in_flight);
        }
        record(shared, soaking, compacting, took);
    }
    Ok(())
}

/// Prints one slow GetPage of an open-loop client, with its due and
/// sending times on `CLOCK_MONOTONIC` (the clock of `perf record -k
/// CLOCK_MONOTONIC` and of `perf script`), to find it in a trace.
fn print_slow(
    client: u64,
    page: PageId,
    took: Duration,
    since_sent: Duration,
    in_flight: Duration,
) {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only to `now`, which lives across the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return;
    }
    let now = now.tv_sec as f64 + now.tv_nsec as f64 / 1e9;
    eprintln!(
        "slow GetPage: client={client} due={:.6} sent={:.6} took_us={} in_flight_us={} page={}",
        now - took.as_secs_f64(),
        now - since_sent.as_secs_f64(),
        took.as_micros(),
        in_flight.as_micros(),
        page.page_no,
    );
}

/// Prints p50 and p99 of each phase's (idle, ingesting, compacting)
/// samples of `what`, if it has any.
fn print_by_phase(samples: [Vec<Duration>; 3], what: &str, note: &str) {
    for (phase, taken) in ["idle", "ingesting", "compacting"].into_iter().zip(samples) {
        if let Some(l) = Latency::from_samples(taken) {
            println!(
                "{phase}: {what} p50 {} p99 {} ({note})",
                us(l.p50_us),
                us(l.p99_us)
            );
        }
    }
}

/// Prints a phase's offered and achieved GetPage rates (open loop only).
fn print_rates(shared: &Shared, rate: u64, phase: &str, soaking: bool, done: usize, secs: f64) {
    if rate == 0 {
        return;
    }
    let sent = shared.sent[usize::from(soaking)].load(Ordering::Relaxed);
    println!(
        "{phase}: GetPage offered {rate} /s (sent {:.0} /s), achieved {:.0} /s",
        sent as f64 / secs,
        done as f64 / secs,
    );
}

/// Files a GetPage's latency under the phase it belongs to.
fn record(shared: &Shared, soaking: bool, compacting: bool, took: Duration) {
    let mut s = shared.lock();
    match (soaking, compacting) {
        (false, _) => s.idle.push(took),
        (true, true) => s.compacting.push(took),
        (true, false) => s.ingesting.push(took),
    }
    if soaking {
        s.interval.push(took);
    }
}

fn random_page(rng: &mut Rng, pages: u32) -> PageId {
    PageId::new(SPACE, rng.below(u64::from(pages)) as u32)
}

/// A closed-loop client: asks again as soon as it has an answer.
async fn read_closed_loop(
    mut client: PageServerClient,
    shared: Arc<Shared>,
    pages: u32,
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed + 1);
    while !shared.stop.load(Ordering::Acquire) {
        let page = random_page(&mut rng, pages);
        let lsn = Lsn(shared.lsn.load(Ordering::Acquire));
        let draining = shared.draining.load(Ordering::Acquire);
        let soaking = shared.soaking.load(Ordering::Acquire);
        let compacting = shared.compacting.load(Ordering::Acquire);
        let t = Instant::now();
        client.get_page(page, lsn).await?;
        if !draining {
            record(&shared, soaking, compacting, t.elapsed());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_share_the_schedule_without_gaps_or_overlaps() {
        let schedule = Schedule::new(2_000, 3);
        let mut dues: Vec<Duration> = (0..3)
            .flat_map(|c| (0..5).map(move |i| c + i * schedule.clients))
            .map(|k| schedule.due(k) - schedule.start)
            .collect();
        dues.sort();
        let want: Vec<Duration> = (0..15).map(|k| Duration::from_micros(500 * k)).collect();
        assert_eq!(dues, want);
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        soak: SoakArgs,
    }

    /// The soak's arguments from a command line after the workload's name.
    fn soak(args: &[&str]) -> Result<SoakArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("soak").chain(args.iter().copied())).map(|c| c.soak)
    }

    #[test]
    fn the_log_runs_three_replicas_unless_asked_for_one_to_five() {
        let parse = |args: &[&str]| soak(args).map(|s| s.log_replicas);
        assert_eq!(parse(&[]).unwrap(), 3);
        assert_eq!(parse(&["--log-replicas", "1"]).unwrap(), 1);
        assert!(parse(&["--log-replicas", "0"]).is_err());
        assert!(parse(&["--log-replicas", "6"]).is_err());
    }

    #[test]
    fn compaction_is_paced_as_the_page_server_does_unless_asked() {
        let parse = |args: &[&str]| soak(args).map(|s| s.compaction_cpu_percent);
        assert_eq!(
            parse(&[]).unwrap(),
            strata_pageserver::timeline::CompactionConfig::default().cpu_percent
        );
        assert_eq!(parse(&["--compaction-cpu-percent", "100"]).unwrap(), 100);
        assert!(parse(&["--compaction-cpu-percent", "0"]).is_err());
        assert!(parse(&["--compaction-cpu-percent", "101"]).is_err());
    }

    #[test]
    fn getpage_threads_take_the_page_servers_realtime_share_unless_asked() {
        let parse = |args: &[&str]| soak(args).map(|s| s.getpage_realtime_percent);
        assert_eq!(
            parse(&[]).unwrap(),
            strata_pageserver::server::ServerConfig::new("c", "d", Vec::new())
                .getpage_realtime_percent
        );
        assert_eq!(parse(&["--getpage-realtime-percent", "0"]).unwrap(), 0);
        assert!(parse(&["--getpage-realtime-percent", "101"]).is_err());
    }
}
