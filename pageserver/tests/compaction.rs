//! Compaction and GC on a small, fast workload: one item per page replaced
//! again and again (the shape of the target, scaled down).
//!
//! Sizes, not timings, are asserted: the live layer count and the bytes
//! written to layer files per byte of WAL stay under their bounds; a crash
//! at either fail point of a compaction step changes no answer; reads
//! below the GC horizon are "snapshot too old"; a compute's snapshot holds
//! the horizon back, up to the cap.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_pageserver::PageServerError;
use strata_pageserver::service::PageService;
use strata_pageserver::timeline::{
    CompactionConfig, DEFAULT_CPU_PERCENT, FailPoint, GcConfig, Step, Timeline, TimelineConfig,
};
use strata_wal::op::PageOp;
use strata_wal::{BatchBuilder, Lsn, PageId, Record};

const CLUSTER: &str = "compaction-test";
const PAGES: u32 = 1_000;
const ITEM_BYTES: usize = 200;
const RECORDS_PER_BATCH: u64 = 64;

fn config(dir: &std::path::Path, history_bytes: Option<u64>) -> TimelineConfig {
    TimelineConfig {
        layer_size_bytes: 256 << 10,
        image_after_records: 32,
        compaction: CompactionConfig {
            l0_threshold: 4,
            max_l0_per_step: 8,
            target_file_bytes: 1 << 20,
            image_after_delta_runs: 16,
            // Paced as by default: pauses must not change what a step writes.
            cpu_percent: DEFAULT_CPU_PERCENT,
        },
        gc: GcConfig {
            history_bytes,
            history: None,
            snapshot_cap_bytes: 4 << 20,
        },
        ..TimelineConfig::new(CLUSTER, dir)
    }
}

/// Writes the workload into a timeline: `Init` + `Insert` on each page
/// first, then `Replace` of its one item, round robin.
struct Writer {
    next: u64,
}

impl Writer {
    fn batch(&mut self, start: Lsn) -> (Bytes, Lsn) {
        let mut b = BatchBuilder::new();
        for _ in 0..RECORDS_PER_BATCH {
            let n = self.next;
            self.next += 1;
            let page = PageId::new(1, (n % u64::from(PAGES)) as u32);
            let bytes = vec![n as u8; ITEM_BYTES];
            let ops = match n < u64::from(PAGES) {
                true => vec![
                    PageOp::Init {
                        page_type: 1,
                        level: 0,
                    },
                    PageOp::Insert { slot: 0, bytes },
                ],
                false => vec![PageOp::Replace { slot: 0, bytes }],
            };
            for op in ops {
                b.push(&Record::Page { page, op }).unwrap();
            }
        }
        let mut out = Vec::new();
        let end = b.commit(self.next).stamp_into(&mut out, start);
        (Bytes::from(out), end)
    }

    /// Ingests `bytes` of WAL, freezing at the layer size and flushing as
    /// ingest does; after each flush `between` runs.
    fn ingest(&mut self, tl: &Timeline, bytes: u64, mut between: impl FnMut(&Timeline)) {
        let until = tl.ingested().advance(bytes);
        while tl.ingested() < until {
            let start = tl.ingested();
            let (data, end) = self.batch(start);
            tl.ingest_chunk(start, &data, end).unwrap();
            if tl.open_layer_bytes() >= tl.config().layer_size_bytes {
                tl.freeze();
                while tl.flush_frozen().unwrap() {}
                between(tl);
            }
        }
    }
}

fn compact_until_idle(tl: &Timeline) -> Vec<Step> {
    let mut steps = Vec::new();
    loop {
        match tl.compact_step().unwrap() {
            Step::Idle => return steps,
            step => steps.push(step),
        }
    }
}

fn service(tl: &Arc<Timeline>) -> PageService {
    PageService::new(tl.clone(), 8 * 8192, Duration::from_millis(100))
}

/// Every page at a few LSNs: (page, lsn) → (bytes, from, to), or the error.
async fn answers(tl: &Arc<Timeline>, lsns: &[Lsn]) -> Vec<Result<(Vec<u8>, Lsn, Lsn), String>> {
    let s = service(tl);
    let mut out = Vec::new();
    for &lsn in lsns {
        for p in (0..PAGES).step_by(7) {
            let got = s.get_page(PageId::new(1, p), lsn).await;
            out.push(
                got.map(|v| (v.page.as_bytes().to_vec(), v.from, v.to))
                    .map_err(|e| e.to_string()),
            );
        }
    }
    out
}

#[test]
fn layer_count_and_write_amplification_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let tl = Timeline::open(config(dir.path(), Some(4 << 20))).unwrap();
    let mut max_layers = 0;
    let mut kinds = [0usize; 3];
    Writer { next: 0 }.ingest(&tl, 24 << 20, |tl| {
        for step in compact_until_idle(tl) {
            match step {
                Step::CompactedL0 { .. } => kinds[0] += 1,
                Step::Images { .. } => kinds[1] += 1,
                Step::Collected { .. } => kinds[2] += 1,
                Step::Idle => {}
            }
        }
        max_layers = max_layers.max(tl.snapshot().files.len());
    });
    let stats = tl.stats();
    let wal = stats
        .wal_bytes_ingested
        .load(std::sync::atomic::Ordering::Relaxed);
    let flushed = stats
        .flush_bytes_written
        .load(std::sync::atomic::Ordering::Relaxed);
    let compacted = stats
        .compaction_bytes_written
        .load(std::sync::atomic::Ordering::Relaxed);
    let write_amp = (flushed + compacted) as f64 / wal as f64;
    println!("max layers {max_layers}, write amplification {write_amp:.2}, steps {kinds:?}");
    assert!(
        kinds.iter().all(|n| *n > 0),
        "every kind of step ran: {kinds:?}"
    );
    // 96 flushes without compaction; with it: < 4 L0s, a few L1 runs of
    // 4-8 files inside the 4 MiB window, and an image run or two.
    assert!(max_layers <= 64, "{max_layers} live layers");
    assert!(write_amp <= 6.0, "write amplification {write_amp:.2}");
    // GC kept the disk to about the window, not the whole history.
    let on_disk = tl.snapshot().file_bytes();
    assert!(
        on_disk < 12 << 20,
        "{on_disk} bytes of layers for a 4 MiB window"
    );
}

#[tokio::test]
async fn a_crash_at_either_fail_point_changes_no_answer() {
    for fail in [FailPoint::AfterNewFiles, FailPoint::AfterManifest] {
        let dir = tempfile::tempdir().unwrap();
        let tl = Timeline::open(config(dir.path(), None)).unwrap();
        let mut writer = Writer { next: 0 };
        writer.ingest(&tl, 2 << 20, |_| {});
        tl.freeze();
        while tl.flush_frozen().unwrap() {}
        let end = tl.durable();
        let lsns = [Lsn(end.0 / 3), Lsn(end.0 * 2 / 3), end];
        let before = answers(&tl, &lsns).await;
        let files_before: Vec<String> = names(&tl);

        tl.set_fail_point(Some(fail));
        let r = tl.compact_step();
        assert!(
            matches!(r, Err(PageServerError::Unavailable(_))),
            "{fail:?}: {r:?}"
        );
        // The crashed timeline changes nothing more on disk.
        assert!(tl.flush_frozen().is_err() || tl.frozen_count() == 0);
        drop(tl);

        let tl = Timeline::open(config(dir.path(), None)).unwrap();
        let files_after = names(&tl);
        match fail {
            // The manifest still names the L0s; the merged files are gone.
            FailPoint::AfterNewFiles => assert_eq!(files_after, files_before),
            // The manifest names the L1 run; the L0s are gone.
            FailPoint::AfterManifest => {
                assert!(
                    files_after.iter().all(|f| f.ends_with(".l1.delta")),
                    "{files_after:?}"
                )
            }
        }
        let on_disk = strata_pageserver::workload::layer_files_in(dir.path()).unwrap();
        assert_eq!(on_disk, files_after.len(), "{fail:?}: stray files left");
        assert_eq!(answers(&tl, &lsns).await, before, "{fail:?}");
        // And the compaction completes after the restart, same answers.
        compact_until_idle(&tl);
        assert_eq!(answers(&tl, &lsns).await, before, "{fail:?}, compacted");
    }
}

fn names(tl: &Timeline) -> Vec<String> {
    tl.snapshot()
        .files
        .iter()
        .map(|f| f.desc.file_name.clone())
        .collect()
}

#[tokio::test]
async fn below_the_horizon_reads_are_snapshot_too_old_and_snapshots_hold_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let tl = Timeline::open(config(dir.path(), Some(1 << 20))).unwrap();
    let mut writer = Writer { next: 0 };
    writer.ingest(&tl, 1 << 20, |_| {});
    // A compute's snapshot near the start holds the horizon back.
    let held = Lsn(100_000);
    tl.report_snapshot("compute-a", held);
    writer.ingest(&tl, 2 << 20, |tl| {
        compact_until_idle(tl);
    });
    assert!(
        tl.gc_cutoff() <= held,
        "cutoff {} passed the snapshot",
        tl.gc_cutoff()
    );
    let page = PageId::new(1, 3);
    service(&tl).get_page(page, held).await.unwrap();

    // Past the cap (4 MiB), the snapshot no longer holds GC back.
    writer.ingest(&tl, 5 << 20, |tl| {
        compact_until_idle(tl);
    });
    let cutoff = tl.gc_cutoff();
    assert!(cutoff > held, "cutoff {cutoff} still held at {held}");
    assert!(
        cutoff.0 <= tl.durable().0 - (1 << 20),
        "cutoff inside the window"
    );
    let r = service(&tl).get_page(page, held).await;
    match r {
        Err(e @ PageServerError::SnapshotTooOld { .. }) => {
            assert_eq!(e.code(), tonic::Code::FailedPrecondition);
            let msg = e.to_string();
            assert!(
                msg.contains("snapshot too old") && msg.contains(&cutoff.to_string()),
                "{msg}"
            );
            assert!(!e.is_retryable());
        }
        other => panic!("expected snapshot too old, got {other:?}"),
    }
    // At the cutoff itself the page reads.
    service(&tl).get_page(page, cutoff).await.unwrap();
}
