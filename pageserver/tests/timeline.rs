//! The timeline's rules, one at a time, on hand-written log: dropped
//! spaces, chunks that do not continue the log, a page whose history does
//! not start with `Init`, stray layer files, and waits bounded by time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_pageserver::PageServerError;
use strata_pageserver::layer::LsnRange;
use strata_pageserver::layer::desc::{KeyRange, LayerKind, layer_file_name};
use strata_pageserver::service::PageService;
use strata_pageserver::timeline::{Timeline, TimelineConfig};
use strata_pageserver::workload::{init_record as init, insert_record as insert};
use strata_wal::{BatchBuilder, Lsn, PageId, Record};

const CLUSTER: &str = "timeline-test";

fn open(dir: &std::path::Path) -> Arc<Timeline> {
    Timeline::open(TimelineConfig {
        layer_size_bytes: 1 << 20,
        image_after_records: 4,
        ..TimelineConfig::new(CLUSTER, dir)
    })
    .unwrap()
}

/// One batch of `records` stamped at `start`: its bytes and its end.
fn batch(records: &[Record], start: Lsn) -> (Bytes, Lsn) {
    let mut b = BatchBuilder::new();
    for r in records {
        b.push(r).unwrap();
    }
    let mut out = Vec::new();
    let end = b.commit(1).stamp_into(&mut out, start);
    (Bytes::from(out), end)
}

fn ingest(tl: &Timeline, records: &[Record]) -> Lsn {
    let start = tl.ingested();
    let (bytes, end) = batch(records, start);
    tl.ingest_chunk(start, &bytes, end).unwrap();
    end
}

fn service(tl: &Arc<Timeline>) -> PageService {
    PageService::new(tl.clone(), 1 << 20, Duration::from_millis(100))
}

#[tokio::test]
async fn a_dropped_space_answers_before_its_drop_and_not_after_even_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (p, q) = (PageId::new(5, 1), PageId::new(6, 1));
    let mut tl = open(dir.path());
    let written = ingest(&tl, &[init(p), insert(p, b"row"), init(q)]);
    let dropped = ingest(&tl, &[Record::DropSpace { space: 5 }]);
    for round in 0..2 {
        let s = service(&tl);
        let page = s.get_page(p, written).await.unwrap();
        assert_eq!(page.page.item(0).unwrap(), b"row", "round {round}");
        // The drop counts from its record's LSN, inside the last batch.
        let at = tl.space_dropped(5).expect("space 5 was dropped");
        assert!(written < at && at <= dropped);
        assert!(matches!(
            s.get_page(p, dropped).await,
            Err(PageServerError::SpaceDropped { dropped_at, .. }) if dropped_at == at
        ));
        assert!(s.get_page(q, dropped).await.is_ok(), "other spaces stay");
        // Flushed and reopened: the drop is in the manifest.
        tl.freeze();
        while tl.flush_frozen().unwrap() {}
        drop(s);
        let reopened = open(dir.path());
        assert_eq!(reopened.space_dropped(5), Some(at));
        assert_eq!(reopened.ingested(), dropped);
        tl = reopened;
    }
}

#[tokio::test]
async fn a_chunk_that_does_not_continue_the_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tl = open(dir.path());
    let end = ingest(&tl, &[init(PageId::new(1, 1))]);
    let (bytes, next) = batch(&[init(PageId::new(1, 2))], end.advance(8));
    let err = tl.ingest_chunk(end.advance(8), &bytes, next).unwrap_err();
    assert!(matches!(err, PageServerError::BadRequest(_)), "{err}");
    // A chunk whose bytes are not records at the position it claims.
    let (bytes, next) = batch(&[init(PageId::new(1, 2))], end.advance(8));
    assert!(tl.ingest_chunk(end, &bytes, next).is_err());
    assert_eq!(tl.ingested(), end, "nothing was taken in");
}

#[tokio::test]
async fn a_history_without_init_is_a_typed_error_not_a_guess() {
    let dir = tempfile::tempdir().unwrap();
    let tl = open(dir.path());
    let p = PageId::new(1, 9);
    let end = ingest(&tl, &[insert(p, b"orphan")]);
    let err = service(&tl).get_page(p, end).await.unwrap_err();
    assert!(matches!(err, PageServerError::Rebuild { .. }), "{err}");
    assert_eq!(err.code(), tonic::Code::DataLoss);
}

#[tokio::test]
async fn waits_are_bounded_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let tl = open(dir.path());
    let end = ingest(&tl, &[init(PageId::new(1, 1))]);
    let err = service(&tl)
        .get_page(PageId::new(1, 1), end.advance(100))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PageServerError::LsnNotCommitted { .. }),
        "{err}"
    );
    assert!(err.is_retryable());
}

#[test]
fn a_layer_file_the_manifest_does_not_name_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let tl = open(dir.path());
    ingest(&tl, &[init(PageId::new(1, 1))]);
    tl.freeze();
    assert!(tl.flush_frozen().unwrap());
    let durable = tl.durable();
    drop(tl);
    // As if a flush had written a file and crashed before its manifest.
    let range = LsnRange {
        start: durable,
        end: durable.advance(100),
    };
    let stray = dir
        .path()
        .join(layer_file_name(LayerKind::L0, range, KeyRange::ALL));
    std::fs::write(&stray, b"half a layer").unwrap();
    let tl = open(dir.path());
    assert!(!stray.exists());
    assert_eq!(tl.snapshot().files.len(), 1);
}
