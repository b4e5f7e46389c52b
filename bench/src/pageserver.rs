//! The `pageserver` workload: ingest catch-up against the log service's own
//! sustained commit rate, and `GetPage@LSN` latency for cache hits and for
//! rebuilds, all in one run on one disk.
//!
//! Order of a run:
//! 1. three log replicas in this process; 64 writers fill a backlog of
//!    page records (`--backlog-mib`, 1 GiB by default) over `--pages`
//!    pages: each page formatted once, then its one item replaced again and
//!    again — the log's sustained commit rate is this phase's MB/s;
//! 2. a page server starts on an empty directory and catches up from LSN 0;
//!    ingest MB/s is the backlog over the time until its ingested LSN
//!    reaches the end (layer files are written meanwhile, not waited for);
//! 3. once its layers are flushed, `GetPage` with 1 and 16 concurrent
//!    clients: hits (a hot set of pages at the latest LSN, well inside the
//!    cache) and rebuilds (random pages at random LSNs of the history, so
//!    almost every request rebuilds a version from layer files).
//!
//! Target: `ingest_vs_log` ≥ 2 (the page server is never the bottleneck).
//! GetPage latencies are printed next to a plain loopback TCP round trip
//! measured first, in the same run. The CPUs are kept from halting while
//! it runs, where permitted ([`CpusAwake`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use strata_logservice::client::{LogClient, LogClientConfig};
use strata_pageserver::client::PageServerClient;
use strata_pageserver::server::{ServerConfig, serve_on};
use strata_pageserver::workload::Rng;
use strata_wal::op::PageOp;
use strata_wal::{Batch, BatchBuilder, Lsn, PageId, Record};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::log::cluster::{Cluster, REPLICAS};
use crate::machine::CpusAwake;
use crate::report::{Table, per_sec, times, us};
use crate::stats::Latency;
use crate::watchdog::Watchdog;

pub(crate) const CLUSTER_ID: &str = "strata-bench-ps";
const FILL_WRITERS: usize = 64;
pub(crate) const RECORDS_PER_BATCH: usize = 16;
const HOT_PAGES: u32 = 256;
pub(crate) const SPACE: u32 = 1;
const RTT_SAMPLES: usize = 20_000;

#[derive(clap::Args, Clone, Debug)]
pub struct PageserverArgs {
    /// MiB of WAL to fill before the page server starts.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub backlog_mib: u64,
    /// Pages the backlog writes to.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub pages: u32,
    /// Bytes of each page's one item.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(8..=4000))]
    pub item_bytes: u32,
    /// Seconds each GetPage phase runs.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
}

pub fn run(args: &PageserverArgs, dir: &Path) -> anyhow::Result<()> {
    let _watchdog = Watchdog::arm(Duration::from_secs(1800), "the pageserver workload".into());
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    // The loopback floor runs on idle cores, where each wake-up would also
    // wait for the host to wake a halted virtual CPU.
    let cpus_awake = CpusAwake::hold();
    println!(
        "pageserver: {}",
        match cpus_awake {
            Some(_) => "CPUs kept from halting (cpu_dma_latency 0)",
            None =>
                "CPUs may halt when idle (cpu_dma_latency not permitted): on a VM, idle wake-ups count",
        }
    );
    runtime.block_on(run_async(args, dir))
}

async fn run_async(args: &PageserverArgs, dir: &Path) -> anyhow::Result<()> {
    // The floor under a GetPage: one loopback round trip, no Strata code.
    let rtt = crate::floor::loopback_rtt(RTT_SAMPLES).context("measuring loopback RTT")?;
    let (log, writer) = start_log(dir, REPLICAS).await?;
    println!(
        "filling {} MiB of WAL over {} pages ...",
        args.backlog_mib, args.pages
    );
    let fill = fill(&writer, args).await?;
    writer.close();
    println!(
        "  {:.0} MiB in {:.1} s: log sustained commit rate {:.1} MB/s",
        fill.timed_bytes as f64 / (1 << 20) as f64,
        fill.elapsed.as_secs_f64(),
        fill.mb_per_sec()
    );

    let ps = PageServer::start(&dir.join("pageserver"), log.endpoints()).await?;
    let mut client = ps.client().await?;
    let started = Instant::now();
    while Lsn(client.status().await?.ingested_lsn) < fill.end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    let ingest_mb_s = fill.bytes as f64 / 1e6 / ingest_secs;
    println!("  page server ingested it in {ingest_secs:.1} s: {ingest_mb_s:.1} MB/s");
    while Lsn(client.status().await?.durable_lsn) < fill.end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = client.status().await?;
    println!(
        "  all durable after {:.1} s: {} layer files, {:.0} MiB",
        started.elapsed().as_secs_f64(),
        status.layer_count,
        status.layer_bytes as f64 / (1 << 20) as f64
    );

    let duration = Duration::from_secs(args.seconds);
    let mut table = Table::new(&["GetPage", "clients", "p50", "p99", "pages/s", "rebuilt"]);
    let mut hit_p50 = 0.0;
    let mut rebuild_p50 = 0.0;
    for kind in [Kind::Hit, Kind::Rebuild] {
        for clients in [1, 16] {
            let r = get_pages(&ps, kind, clients, duration, fill.end, args.pages).await?;
            match (kind, clients) {
                (Kind::Hit, 1) => hit_p50 = r.latency.p50_us,
                (Kind::Rebuild, 1) => rebuild_p50 = r.latency.p50_us,
                _ => {}
            }
            table.row(vec![
                kind.name().into(),
                clients.to_string(),
                us(r.latency.p50_us),
                us(r.latency.p99_us),
                per_sec(r.pages_per_sec),
                format!("{:.0}%", r.rebuilt_fraction * 100.0),
            ]);
        }
    }
    table.print();
    println!(
        "  floor: loopback TCP round trip p50 {}, p99 {} (a GetPage is one round trip with an 8 KiB answer)",
        us(rtt.p50_us),
        us(rtt.p99_us)
    );
    ps.stop().await?;
    log.stop().await?;

    let log_mb_s = fill.mb_per_sec();
    let ratio = ingest_mb_s / log_mb_s;
    println!();
    println!(
        "ingest {ingest_mb_s:.1} MB/s vs the log's sustained {log_mb_s:.1} MB/s: {} (target >= 2)",
        times(ratio)
    );
    println!(
        "RESULT getpage_hit_p50_us={hit_p50:.1} getpage_rebuild_p50_us={rebuild_p50:.1} \
         ingest_mb_s={ingest_mb_s:.1} log_mb_s={log_mb_s:.1} ingest_vs_log={ratio:.2}"
    );
    Ok(())
}

/// `replicas` log replicas in this process and a writer.
pub(crate) async fn start_log(dir: &Path, replicas: u32) -> anyhow::Result<(Cluster, LogClient)> {
    let log = Cluster::start_with(&dir.join("log"), CLUSTER_ID, replicas).await?;
    let writer = LogClient::connect(LogClientConfig::new(
        CLUSTER_ID,
        "bench-writer",
        log.endpoints().to_vec(),
    ))
    .await
    .context("connecting the writer")?;
    Ok((log, writer))
}

/// The backlog written.
struct Fill {
    /// All of it, from LSN 0 (what the page server ingests).
    bytes: u64,
    end: Lsn,
    /// The part written by the concurrent writers, and how long it took
    /// (the log's sustained rate; the pages' first formatting is left out).
    timed_bytes: u64,
    elapsed: Duration,
}

impl Fill {
    fn mb_per_sec(&self) -> f64 {
        self.timed_bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// A batch of `RECORDS_PER_BATCH` records starting at page `first`: an
/// `Init` and an `Insert` the first time a page is written, a `Replace` of
/// its one item after that.
pub(crate) fn batch(first: u64, args: &PageserverArgs, fill_byte: u8) -> anyhow::Result<Batch> {
    let mut b = BatchBuilder::new();
    for i in 0..RECORDS_PER_BATCH as u64 {
        let n = first + i;
        let page = PageId::new(SPACE, (n % u64::from(args.pages)) as u32);
        let bytes = vec![fill_byte.wrapping_add(i as u8); args.item_bytes as usize];
        let ops = if n < u64::from(args.pages) {
            vec![
                PageOp::Init {
                    page_type: 1,
                    level: 0,
                },
                PageOp::Insert { slot: 0, bytes },
            ]
        } else {
            vec![PageOp::Replace { slot: 0, bytes }]
        };
        for op in ops {
            b.push(&Record::Page { page, op })?;
        }
    }
    Ok(b.commit(first))
}

async fn fill(writer: &LogClient, args: &PageserverArgs) -> anyhow::Result<Fill> {
    // The first batches format every page, in order, before any replace.
    let mut end = Lsn::ZERO;
    let mut next = 0u64;
    while next < u64::from(args.pages) {
        end = end.max(writer.append(batch(next, args, 0)?).await?);
        next += RECORDS_PER_BATCH as u64;
    }
    let target = args.backlog_mib << 20;
    let started = Instant::now();
    let start_lsn = end;
    let counter = Arc::new(AtomicU64::new(next));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..FILL_WRITERS {
        let (writer, counter, args) = (writer.clone(), counter.clone(), args.clone());
        tasks.spawn(async move {
            loop {
                let first = counter.fetch_add(RECORDS_PER_BATCH as u64, Ordering::Relaxed);
                let b = batch(first, &args, w as u8)?;
                let last = writer.append(b).await?;
                if last.bytes_since(start_lsn) >= target {
                    return anyhow::Ok(last);
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        end = end.max(done??);
    }
    Ok(Fill {
        bytes: end.0,
        end,
        timed_bytes: end.bytes_since(start_lsn),
        elapsed: started.elapsed(),
    })
}

/// A page server in this process, on its own directory.
pub(crate) struct PageServer {
    endpoint: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<strata_pageserver::Result<()>>,
}

impl PageServer {
    async fn start(dir: &Path, log: &[String]) -> anyhow::Result<PageServer> {
        PageServer::start_with(ServerConfig::new(CLUSTER_ID, dir, log.to_vec())).await
    }

    pub(crate) async fn start_with(config: ServerConfig) -> anyhow::Result<PageServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve_on(listener, config, stop.clone()));
        Ok(PageServer {
            endpoint,
            stop,
            task,
        })
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(crate) async fn client(&self) -> anyhow::Result<PageServerClient> {
        for _ in 0..200 {
            if let Ok(c) = PageServerClient::connect(&self.endpoint, CLUSTER_ID).await {
                return Ok(c);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("the page server does not answer")
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await??;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Hit,
    Rebuild,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Hit => "cache hit",
            Kind::Rebuild => "rebuild",
        }
    }
}

struct Reads {
    latency: Latency,
    pages_per_sec: f64,
    rebuilt_fraction: f64,
}

async fn get_pages(
    ps: &PageServer,
    kind: Kind,
    clients: usize,
    duration: Duration,
    end: Lsn,
    pages: u32,
) -> anyhow::Result<Reads> {
    let mut status = ps.client().await?;
    let rebuilds_before = status.status().await?.reconstructions;
    if let Kind::Hit = kind {
        // Warm the hot set.
        for p in 0..HOT_PAGES.min(pages) {
            status.get_page(PageId::new(SPACE, p), end).await?;
        }
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let mut client = ps.client().await?;
        tasks.spawn(async move {
            let mut rng = Rng::new(c as u64 + 1);
            let mut samples = Vec::new();
            while started.elapsed() < duration {
                let (page, lsn) = match kind {
                    Kind::Hit => (rng.below(u64::from(HOT_PAGES.min(pages))), end),
                    Kind::Rebuild => (
                        rng.below(u64::from(pages)),
                        Lsn(end.0 / 2 + rng.below(end.0 / 2)),
                    ),
                };
                let t = Instant::now();
                client
                    .get_page(PageId::new(SPACE, page as u32), lsn)
                    .await?;
                samples.push(t.elapsed());
            }
            anyhow::Ok(samples)
        });
    }
    let mut samples = Vec::new();
    while let Some(done) = tasks.join_next().await {
        samples.extend(done??);
    }
    let elapsed = started.elapsed();
    let rebuilds = status.status().await?.reconstructions - rebuilds_before;
    let n = samples.len();
    Ok(Reads {
        latency: Latency::from_samples(samples).context("no samples")?,
        pages_per_sec: n as f64 / elapsed.as_secs_f64(),
        rebuilt_fraction: rebuilds as f64 / n.max(1) as f64,
    })
}
