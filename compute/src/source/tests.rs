//! The fetcher against a fake page source that counts its calls and
//! holds them at a gate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use strata_pageserver::PageServerError;
use strata_pageserver::client::RemotePage;
use strata_wal::page::Page;
use strata_wal::{Lsn, PageId};
use tokio::sync::Semaphore;

use super::{Fetcher, PageSource};
use crate::error::{EngineError, Result};
use crate::pool::BufferPool;

const START: Lsn = Lsn(1000);

/// Every page was written once, at LSN 10, and the fake server has
/// ingested up to `START`.
struct FakeSource {
    calls: AtomicUsize,
    gate: Semaphore,
    fail: AtomicBool,
    /// Answers with a range that does not cover the request.
    lie: AtomicBool,
}

impl FakeSource {
    fn new(open: bool) -> Arc<FakeSource> {
        Arc::new(FakeSource {
            calls: AtomicUsize::new(0),
            gate: Semaphore::new(usize::from(open)),
            fail: AtomicBool::new(false),
            lie: AtomicBool::new(false),
        })
    }

    fn open(&self) {
        self.gate.add_permits(1);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn image(lsn: u64) -> Page {
    let mut p = Page::new_zeroed();
    p.init(1, 0);
    p.set_lsn(Lsn(lsn));
    p
}

impl PageSource for FakeSource {
    fn get_page(&self, page: PageId, lsn: Lsn) -> BoxFuture<'_, Result<RemotePage>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let _pass = self.gate.acquire().await.expect("the gate is never closed");
            if self.fail.load(Ordering::SeqCst) {
                return Err(EngineError::PageServer(PageServerError::LsnTimeout {
                    lsn,
                    ingested: START,
                    waited_ms: 5,
                }));
            }
            let to = if self.lie.load(Ordering::SeqCst) {
                Lsn(10)
            } else {
                Lsn(START.0 + 1)
            };
            let _ = page;
            Ok(RemotePage {
                page: image(10),
                from: Lsn(10),
                to,
            })
        })
    }
}

fn fetcher(source: &Arc<FakeSource>) -> Fetcher {
    let pool = Arc::new(BufferPool::new(1 << 20, START));
    Fetcher::new(pool, source.clone())
}

const P: PageId = PageId::new(3, 4);

#[tokio::test]
async fn concurrent_fetches_of_one_page_make_one_request() {
    let source = FakeSource::new(false);
    let f = fetcher(&source);
    let fetches = join_all((0..20).map(|_| f.fetch_page(P, Lsn(500))));
    let release = async {
        // Every fetch has joined the flight by the time this runs again.
        tokio::task::yield_now().await;
        assert_eq!(f.in_flight(), 1);
        source.open();
    };
    let (results, ()) = tokio::join!(fetches, release);
    for r in results {
        assert_eq!(r.expect("fetched").lsn(), Lsn(10));
    }
    assert_eq!(source.calls(), 1);
    assert_eq!(f.in_flight(), 0);
    assert_eq!(f.pool().get(P, Lsn(1000)).map(|p| p.lsn()), Some(Lsn(10)));
    assert_eq!(
        f.pool().get(P, Lsn(1001)),
        None,
        "the source vouched up to 1001"
    );
    f.fetch(P, Lsn(700)).await.expect("a hit");
    assert_eq!(source.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_across_tasks_make_one_request() {
    let source = FakeSource::new(false);
    let f = Arc::new(fetcher(&source));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { f.fetch(P, Lsn(900)).await })
        })
        .collect();
    while source.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    source.open();
    for t in tasks {
        t.await.expect("no panic").expect("fetched");
    }
    assert_eq!(source.calls(), 1);
    assert_eq!(f.in_flight(), 0);
}

#[tokio::test]
async fn an_error_reaches_every_waiter_and_the_next_fetch_tries_again() {
    let source = FakeSource::new(false);
    source.fail.store(true, Ordering::SeqCst);
    let f = fetcher(&source);
    let fetches = join_all((0..5).map(|_| f.fetch(P, Lsn(500))));
    let release = async {
        tokio::task::yield_now().await;
        source.open();
    };
    let (results, ()) = tokio::join!(fetches, release);
    for r in results {
        let e = r.expect_err("the source failed");
        assert!(matches!(e, EngineError::PageServer(_)), "{e}");
        assert!(
            matches!(&e, EngineError::PageServer(pe) if pe.is_retryable()),
            "a timeout stays retryable: {e}"
        );
    }
    assert_eq!(source.calls(), 1);
    assert_eq!(f.in_flight(), 0);
    source.fail.store(false, Ordering::SeqCst);
    f.fetch(P, Lsn(500)).await.expect("fetched this time");
    assert_eq!(source.calls(), 2);
}

#[tokio::test]
async fn a_cancelled_flight_is_forgotten() {
    let source = FakeSource::new(false);
    let f = fetcher(&source);
    let attempt = tokio::time::timeout(Duration::from_millis(20), f.fetch(P, Lsn(500))).await;
    assert!(attempt.is_err(), "the gate held it");
    assert_eq!(f.in_flight(), 0);
    source.open();
    f.fetch(P, Lsn(500)).await.expect("fetched");
    assert_eq!(source.calls(), 2);
}

#[tokio::test]
async fn an_answer_that_does_not_cover_the_request_is_refused() {
    let source = FakeSource::new(true);
    source.lie.store(true, Ordering::SeqCst);
    let f = fetcher(&source);
    let e = f
        .fetch(P, Lsn(500))
        .await
        .expect_err("[10, 10) covers nothing");
    assert!(matches!(e, EngineError::PageServer(_)), "{e}");
    assert_eq!(f.pool().stats().versions, 0);
}

#[tokio::test]
async fn fetch_current_caches_the_open_version() {
    let source = FakeSource::new(true);
    let f = fetcher(&source);
    let image = f.fetch_current_page(P).await.expect("fetched");
    assert_eq!(image.lsn(), Lsn(10));
    assert_eq!(f.pool().get(P, Lsn(5000)).map(|p| p.lsn()), Some(Lsn(10)));
    f.fetch_current(P).await.expect("a hit");
    assert_eq!(source.calls(), 1);
}

#[tokio::test]
async fn a_publish_that_overtakes_fetch_current_wins() {
    let source = FakeSource::new(false);
    let f = fetcher(&source);
    let fetch = f.fetch_current_page(P);
    let publish = async {
        tokio::task::yield_now().await;
        let mut page = image(1010);
        page.set_lsn(Lsn(1010));
        f.pool().publish(vec![(P, Arc::new(page))], Lsn(1010));
        source.open();
    };
    let (image, ()) = tokio::join!(fetch, publish);
    assert_eq!(image.expect("fetched").lsn(), Lsn(1010));
    assert_eq!(source.calls(), 1);
    // The fetched version keeps only the range its source vouched for.
    assert_eq!(f.pool().get(P, Lsn(1000)).map(|p| p.lsn()), Some(Lsn(10)));
    assert_eq!(f.pool().get(P, Lsn(1005)), None);
}

#[tokio::test]
async fn fetch_current_is_refused_after_a_discard() {
    let source = FakeSource::new(true);
    let f = fetcher(&source);
    f.pool().discard_above(START);
    let e = f.fetch_current(P).await.expect_err("writes are dead");
    assert!(matches!(e, EngineError::WritesRefused(_)), "{e}");
}

#[tokio::test]
async fn fetch_many_returns_pages_in_order_with_one_request_each() {
    let source = FakeSource::new(true);
    let f = fetcher(&source);
    let pages = [
        PageId::new(1, 1),
        PageId::new(1, 2),
        PageId::new(1, 1),
        PageId::new(1, 3),
    ];
    let images = f.fetch_many(&pages, Lsn(800)).await.expect("fetched");
    assert_eq!(images.len(), 4);
    assert_eq!(source.calls(), 3, "the repeated page is fetched once");
    let current = f.fetch_current_many(&pages).await.expect("fetched");
    assert_eq!(current.len(), 4);
    // The snapshot fetches already cached [10, 1001); fetched again at
    // start, the same image is extended to stay open.
    assert_eq!(source.calls(), 6);
    for &p in &pages {
        assert!(f.pool().get_current(p).is_some());
    }
}
