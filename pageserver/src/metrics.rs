//! The page server's figures, gathered once for both the status RPC and
//! the Prometheus text on `/metrics` ([`crate::http`]).
//!
//! Counters (`*_total`) count since the process started; gauges are read
//! from one layer map, so layer counts and bytes agree with each other.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::layer::desc::LayerKind;
use crate::remote::upload::UploadFigures;
use crate::service::PageService;

/// One reading of every figure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    pub ingested_lsn: u64,
    pub durable_lsn: u64,
    pub log_commit_lsn: u64,
    pub ingest_lag_bytes: u64,
    pub gc_cutoff_lsn: u64,
    pub oldest_snapshot_lsn: u64,
    pub l0_layers: u64,
    pub l1_layers: u64,
    pub image_layers: u64,
    pub frozen_layers: u64,
    pub layer_bytes: u64,
    pub open_layer_bytes: u64,
    pub compaction_debt_bytes: u64,
    pub flush_bytes_written: u64,
    pub compaction_bytes_written: u64,
    pub wal_bytes_ingested: u64,
    pub records_ingested: u64,
    pub compactions: u64,
    pub image_layers_written: u64,
    pub layers_deleted: u64,
    pub compaction_running: bool,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_hit_rate: f64,
    pub cached_pages: u64,
    pub reconstructions: u64,
    /// The uploader's figures (None: no bucket).
    pub upload: Option<UploadFigures>,
    /// Bytes of layer files on the local disk (= `layer_bytes` unless
    /// some are evicted).
    pub local_layer_bytes: u64,
    /// Tiering's figures (None: no bucket).
    pub tiering: Option<TierFigures>,
    /// GetPage answers by the time the page server took, per bucket of
    /// [`GETPAGE_BUCKETS_US`] (one more for slower ones).
    pub getpage_latency: Vec<u64>,
    /// The time all of them took, in seconds.
    pub getpage_seconds: f64,
    /// GetPage threads at real-time priority now (`realtime`).
    pub getpage_realtime_threads: u64,
    /// Times a GetPage thread dropped to normal priority on a spent budget.
    pub getpage_realtime_demotions: u64,
}

/// One reading of tiering's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TierFigures {
    pub disk_budget_bytes: u64,
    pub evictions: u64,
    pub downloads: u64,
    pub download_bytes: u64,
    /// Reads that needed no download over all reads.
    pub hit_rate: f64,
}

impl Metrics {
    pub fn read(service: &PageService) -> Metrics {
        let tl = service.timeline();
        let map = tl.snapshot();
        let count = |kind| map.files.iter().filter(|f| f.desc.kind == kind).count() as u64;
        let debt = map
            .files
            .iter()
            .filter(|f| f.desc.kind == LayerKind::L0)
            .map(|f| f.desc.file_bytes)
            .sum();
        let stats = tl.stats();
        let cache = service.cache_stats();
        let (ingested, log_commit) = (tl.ingested(), tl.log_commit());
        Metrics {
            ingested_lsn: ingested.0,
            durable_lsn: tl.durable().0,
            log_commit_lsn: log_commit.0,
            ingest_lag_bytes: log_commit.0.saturating_sub(ingested.0),
            gc_cutoff_lsn: map.gc_cutoff.0,
            oldest_snapshot_lsn: tl.oldest_snapshot().map_or(0, |l| l.0),
            l0_layers: count(LayerKind::L0),
            l1_layers: count(LayerKind::L1),
            image_layers: count(LayerKind::Image),
            frozen_layers: map.frozen.len() as u64,
            layer_bytes: map.file_bytes(),
            open_layer_bytes: map.open.bytes() as u64,
            compaction_debt_bytes: debt,
            flush_bytes_written: stats.flush_bytes_written.load(Ordering::Relaxed),
            compaction_bytes_written: stats.compaction_bytes_written.load(Ordering::Relaxed),
            wal_bytes_ingested: stats.wal_bytes_ingested.load(Ordering::Relaxed),
            records_ingested: tl.records_ingested(),
            compactions: stats.compactions.load(Ordering::Relaxed),
            image_layers_written: stats.image_layers_written.load(Ordering::Relaxed),
            layers_deleted: stats.layers_deleted.load(Ordering::Relaxed),
            compaction_running: tl.compaction_running(),
            cache_hits: cache.hits,
            cache_misses: cache.misses,
            cache_hit_rate: cache.hit_rate(),
            cached_pages: cache.pages,
            reconstructions: cache.rebuilds,
            upload: service.upload_state().map(|u| u.figures()),
            local_layer_bytes: map.local_bytes(),
            tiering: tl.tiering().map(|t| TierFigures {
                disk_budget_bytes: t.disk_budget_bytes,
                evictions: t.stats.evictions.load(Ordering::Relaxed),
                downloads: t.stats.downloads.load(Ordering::Relaxed),
                download_bytes: t.stats.download_bytes.load(Ordering::Relaxed),
                hit_rate: t.hit_rate(),
            }),
            getpage_latency: service.latency().counts(),
            getpage_seconds: service.latency().sum_seconds(),
            getpage_realtime_threads: service.realtime().realtime_threads(),
            getpage_realtime_demotions: service.realtime().demotions(),
        }
    }

    pub fn layer_count(&self) -> u64 {
        self.l0_layers + self.l1_layers + self.image_layers
    }

    /// Bytes of layer files written per byte of WAL ingested.
    pub fn write_amplification(&self) -> f64 {
        let written = self.flush_bytes_written + self.compaction_bytes_written;
        written as f64 / self.wal_bytes_ingested.max(1) as f64
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut put = |name: &str, kind: &str, help: &str, labels: &str, value: f64| {
            let _ = writeln!(out, "# HELP strata_pageserver_{name} {help}");
            let _ = writeln!(out, "# TYPE strata_pageserver_{name} {kind}");
            let _ = writeln!(out, "strata_pageserver_{name}{labels} {value}");
        };
        let g = "gauge";
        let c = "counter";
        put(
            "ingested_lsn",
            g,
            "Every record at or below it is in a layer.",
            "",
            self.ingested_lsn as f64,
        );
        put(
            "durable_lsn",
            g,
            "Every record at or below it is in a durable layer file.",
            "",
            self.durable_lsn as f64,
        );
        put(
            "log_commit_lsn",
            g,
            "The log's commit LSN as last reported to ingest.",
            "",
            self.log_commit_lsn as f64,
        );
        put(
            "ingest_lag_bytes",
            g,
            "The log's commit LSN minus the ingested LSN.",
            "",
            self.ingest_lag_bytes as f64,
        );
        put(
            "gc_cutoff_lsn",
            g,
            "Reads below it are refused (snapshot too old).",
            "",
            self.gc_cutoff_lsn as f64,
        );
        put(
            "oldest_snapshot_lsn",
            g,
            "The oldest snapshot a compute reported (0: none).",
            "",
            self.oldest_snapshot_lsn as f64,
        );
        for (kind, n) in [
            ("l0", self.l0_layers),
            ("l1", self.l1_layers),
            ("image", self.image_layers),
        ] {
            let labels = format!("{{kind=\"{kind}\"}}");
            put("layers", g, "Live layer files by kind.", &labels, n as f64);
        }
        put(
            "frozen_layers",
            g,
            "Frozen in-memory layers waiting to be written.",
            "",
            self.frozen_layers as f64,
        );
        put(
            "layer_bytes",
            g,
            "Bytes of live layer files on disk.",
            "",
            self.layer_bytes as f64,
        );
        put(
            "open_layer_bytes",
            g,
            "Bytes of records in the open in-memory layer.",
            "",
            self.open_layer_bytes as f64,
        );
        put(
            "compaction_debt_bytes",
            g,
            "Bytes of L0 layer files waiting to be compacted.",
            "",
            self.compaction_debt_bytes as f64,
        );
        put(
            "flush_bytes_written_total",
            c,
            "Bytes of layer files written by flushes.",
            "",
            self.flush_bytes_written as f64,
        );
        put(
            "compaction_bytes_written_total",
            c,
            "Bytes of layer files written by compaction.",
            "",
            self.compaction_bytes_written as f64,
        );
        put(
            "wal_bytes_ingested_total",
            c,
            "Bytes of WAL ingested.",
            "",
            self.wal_bytes_ingested as f64,
        );
        put(
            "records_ingested_total",
            c,
            "Page records ingested.",
            "",
            self.records_ingested as f64,
        );
        put(
            "compactions_total",
            c,
            "L0 compactions done.",
            "",
            self.compactions as f64,
        );
        put(
            "image_layers_written_total",
            c,
            "Image layer files written.",
            "",
            self.image_layers_written as f64,
        );
        put(
            "layers_deleted_total",
            c,
            "Layer files deleted by compaction and GC.",
            "",
            self.layers_deleted as f64,
        );
        put(
            "compaction_running",
            g,
            "1 while a compaction or GC step runs.",
            "",
            f64::from(u8::from(self.compaction_running)),
        );
        put(
            "cache_hits_total",
            c,
            "GetPage answers from the page cache or the newest-page cache.",
            "",
            self.cache_hits as f64,
        );
        put(
            "cache_misses_total",
            c,
            "GetPage answers not in the page cache.",
            "",
            self.cache_misses as f64,
        );
        put(
            "cache_hit_rate",
            g,
            "Cache hits over all lookups.",
            "",
            self.cache_hit_rate,
        );
        put(
            "cached_pages",
            g,
            "Pages in the page cache.",
            "",
            self.cached_pages as f64,
        );
        put(
            "reconstructions_total",
            c,
            "Pages rebuilt from layers.",
            "",
            self.reconstructions as f64,
        );
        if let Some(u) = &self.upload {
            put_upload(u, self.durable_lsn, &mut put);
        }
        put(
            "local_layer_bytes",
            g,
            "Bytes of layer files on the local disk.",
            "",
            self.local_layer_bytes as f64,
        );
        if let Some(t) = &self.tiering {
            put_tiering(t, &mut put);
        }
        put(
            "getpage_realtime_threads",
            g,
            "GetPage threads at real-time priority now.",
            "",
            self.getpage_realtime_threads as f64,
        );
        put(
            "getpage_realtime_demotions_total",
            c,
            "Times a GetPage thread dropped to normal priority for the rest of a window: \
             the threads' share of the CPU at real-time priority was spent.",
            "",
            self.getpage_realtime_demotions as f64,
        );
        put_histogram(
            &mut out,
            "getpage_seconds",
            "The page server's time for each GetPage, from the request to the answer.",
            &self.getpage_latency,
            self.getpage_seconds,
        );
        out
    }
}

/// Upper bounds, in microseconds, of the GetPage latency histogram's
/// buckets; a last bucket counts the slower answers.
pub const GETPAGE_BUCKETS_US: [u64; 22] = [
    10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500,
    10_000, 20_000, 50_000, 100_000, 1_000_000,
];

/// Counts of durations by [`GETPAGE_BUCKETS_US`], and their sum.
pub struct LatencyHistogram {
    counts: [AtomicU64; GETPAGE_BUCKETS_US.len() + 1],
    sum_ns: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = GETPAGE_BUCKETS_US.partition_point(|&bound| bound < us);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The count in each bucket (not cumulative).
    pub fn counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// The `q` quantile (0 to 1) of bucket `counts` of [`GETPAGE_BUCKETS_US`],
/// as the upper bound of the bucket it falls in, in microseconds: `Some(None)`
/// when it falls in the last bucket (slower than every bound), `None` when
/// there are no counts.
pub fn quantile_bound_us(counts: &[u64], q: f64) -> Option<Option<u64>> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the quantile's sample, 1-based.
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, &n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(GETPAGE_BUCKETS_US.get(i).copied());
        }
    }
    Some(None)
}

/// A Prometheus histogram: cumulative `_bucket` lines by `le`, `_sum` and
/// `_count`.
fn put_histogram(out: &mut String, name: &str, help: &str, counts: &[u64], sum_seconds: f64) {
    let _ = writeln!(out, "# HELP strata_pageserver_{name} {help}");
    let _ = writeln!(out, "# TYPE strata_pageserver_{name} histogram");
    let mut cumulative = 0;
    for (i, &n) in counts.iter().enumerate() {
        cumulative += n;
        let le = match GETPAGE_BUCKETS_US.get(i) {
            Some(us) => format!("{}", *us as f64 / 1e6),
            None => "+Inf".to_string(),
        };
        let _ = writeln!(
            out,
            "strata_pageserver_{name}_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(out, "strata_pageserver_{name}_sum {sum_seconds}");
    let _ = writeln!(out, "strata_pageserver_{name}_count {cumulative}");
}

/// Tiering's figures in Prometheus text.
fn put_tiering(t: &TierFigures, put: &mut impl FnMut(&str, &str, &str, &str, f64)) {
    let (g, c) = ("gauge", "counter");
    // u64::MAX (no budget) is reported as it is: +Inf would not be a budget.
    put(
        "disk_budget_bytes",
        g,
        "Layer files are evicted while the local ones pass this.",
        "",
        t.disk_budget_bytes as f64,
    );
    put(
        "layer_hit_rate",
        g,
        "Share of GetPage reads that needed no layer download.",
        "",
        t.hit_rate,
    );
    let counters = [
        (
            "layer_evictions_total",
            "Layer files evicted from the local disk.",
            t.evictions,
        ),
        (
            "layer_downloads_total",
            "Evicted layer files downloaded again on demand.",
            t.downloads,
        ),
        (
            "layer_download_bytes_total",
            "Bytes of layer files downloaded on demand.",
            t.download_bytes,
        ),
    ];
    for (name, help, v) in counters {
        put(name, c, help, "", v as f64);
    }
}

/// The uploader's figures in Prometheus text.
fn put_upload(
    u: &UploadFigures,
    durable_lsn: u64,
    put: &mut impl FnMut(&str, &str, &str, &str, f64),
) {
    let (g, c) = ("gauge", "counter");
    let gauges = [
        (
            "generation",
            "This page server's generation in the bucket.",
            u64::from(u.generation),
        ),
        (
            "uploaded_lsn",
            "The LSN the uploaded manifest covers (the safe LSN).",
            u.uploaded_lsn,
        ),
        (
            "upload_lag_bytes",
            "The durable LSN minus the uploaded LSN.",
            durable_lsn.saturating_sub(u.uploaded_lsn),
        ),
        (
            "upload_pending_layers",
            "Layer files waiting to be uploaded.",
            u.pending_layers,
        ),
        (
            "upload_pending_bytes",
            "Bytes of layer files waiting to be uploaded.",
            u.pending_bytes,
        ),
        (
            "bucket_bytes",
            "Bytes of layer objects the uploaded manifest names.",
            u.bucket_bytes,
        ),
        (
            "upload_fenced",
            "1 once a newer generation has fenced this page server.",
            u64::from(u.fenced),
        ),
    ];
    for (name, help, v) in gauges {
        put(name, g, help, "", v as f64);
    }
    let counters = [
        (
            "layers_uploaded_total",
            "Layer files uploaded.",
            u.layers_uploaded,
        ),
        (
            "bytes_uploaded_total",
            "Bytes of layer files uploaded.",
            u.bytes_uploaded,
        ),
        (
            "objects_deleted_total",
            "Layer objects deleted from the bucket.",
            u.objects_deleted,
        ),
        (
            "orphans_deleted_total",
            "Orphan layer objects of older generations deleted (and, in a local bucket, staged names interrupted puts left).",
            u.orphans_deleted,
        ),
        (
            "old_generation_objects_deleted_total",
            "Generation markers and indexes of older generations deleted.",
            u.old_generation_objects_deleted,
        ),
    ];
    for (name, help, v) in counters {
        put(name, c, help, "", v as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn durations_land_in_the_bucket_of_their_upper_bound() {
        let h = LatencyHistogram::default();
        for d in [
            us(0),
            us(10),
            us(11),
            us(999),
            us(1_000),
            us(1_001),
            us(5_000_000),
        ] {
            h.record(d);
        }
        let counts = h.counts();
        assert_eq!(counts.len(), GETPAGE_BUCKETS_US.len() + 1);
        let at = |bound: u64| counts[GETPAGE_BUCKETS_US.iter().position(|&b| b == bound).unwrap()];
        assert_eq!(at(10), 2, "0 and 10 us");
        assert_eq!(at(20), 1, "11 us");
        assert_eq!(at(1_000), 2, "999 and 1000 us");
        assert_eq!(at(1_500), 1, "1001 us");
        assert_eq!(
            counts[GETPAGE_BUCKETS_US.len()],
            1,
            "5 s: above every bound"
        );
        assert_eq!(counts.iter().sum::<u64>(), 7);
        assert!(
            (h.sum_seconds() - 5.003021).abs() < 1e-9,
            "{}",
            h.sum_seconds()
        );
    }

    #[test]
    fn a_quantile_is_the_bound_of_the_bucket_it_falls_in() {
        let mut counts = vec![0; GETPAGE_BUCKETS_US.len() + 1];
        assert_eq!(quantile_bound_us(&counts, 0.99), None);
        counts[0] = 98; // <= 10 us
        counts[5] = 1; // <= 100 us
        counts[GETPAGE_BUCKETS_US.len()] = 1; // slower than every bound
        assert_eq!(quantile_bound_us(&counts, 0.5), Some(Some(10)));
        assert_eq!(quantile_bound_us(&counts, 0.98), Some(Some(10)));
        assert_eq!(quantile_bound_us(&counts, 0.99), Some(Some(100)));
        assert_eq!(quantile_bound_us(&counts, 1.0), Some(None));
    }

    #[test]
    fn the_histogram_is_exposed_cumulative_for_prometheus() {
        let m = Metrics {
            getpage_latency: {
                let mut c = vec![0; GETPAGE_BUCKETS_US.len() + 1];
                c[0] = 3;
                c[2] = 2;
                c[GETPAGE_BUCKETS_US.len()] = 1;
                c
            },
            getpage_seconds: 2.5,
            getpage_realtime_threads: 2,
            getpage_realtime_demotions: 7,
            ..Metrics::default()
        };
        let text = m.prometheus();
        for line in [
            "# TYPE strata_pageserver_getpage_seconds histogram\n",
            "strata_pageserver_getpage_seconds_bucket{le=\"0.00001\"} 3\n",
            "strata_pageserver_getpage_seconds_bucket{le=\"0.00002\"} 3\n",
            "strata_pageserver_getpage_seconds_bucket{le=\"0.00003\"} 5\n",
            "strata_pageserver_getpage_seconds_bucket{le=\"1\"} 5\n",
            "strata_pageserver_getpage_seconds_bucket{le=\"+Inf\"} 6\n",
            "strata_pageserver_getpage_seconds_sum 2.5\n",
            "strata_pageserver_getpage_seconds_count 6\n",
            "strata_pageserver_getpage_realtime_threads 2\n",
            "strata_pageserver_getpage_realtime_demotions_total 7\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }
}
