//! The pool's rules, one test each, and readers racing the applier.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use strata_wal::page::Page;
use strata_wal::{Lsn, PageId};

use super::{BufferPool, VERSION_BYTES};

const START: Lsn = Lsn(1000);

/// An image of `page` as of `lsn` carrying `tag` as its one item.
pub(super) fn image(page: PageId, lsn: u64, tag: u64) -> Arc<Page> {
    let mut p = Page::new_zeroed();
    p.init(1, 0);
    let mut item = Vec::with_capacity(16);
    item.extend_from_slice(&page.space.to_le_bytes());
    item.extend_from_slice(&page.page_no.to_le_bytes());
    item.extend_from_slice(&tag.to_le_bytes());
    p.insert(0, &item)
        .expect("a 16-byte item fits an empty page");
    p.set_lsn(Lsn(lsn));
    Arc::new(p)
}

/// The (page, tag) an [`image`] carries.
pub(super) fn read_tag(p: &Page) -> (PageId, u64) {
    let item = p.item(0).expect("the test image has one item");
    let u32_at = |at: usize| u32::from_le_bytes(item[at..at + 4].try_into().expect("4 bytes"));
    let tag = u64::from_le_bytes(item[8..16].try_into().expect("8 bytes"));
    (PageId::new(u32_at(0), u32_at(4)), tag)
}

fn lsn_of(p: Option<Arc<Page>>) -> Option<u64> {
    p.map(|p| p.lsn().0)
}

const P: PageId = PageId::new(7, 1);

#[test]
fn publish_closes_the_previous_current_version() {
    let pool = BufferPool::new(1 << 20, START);
    pool.insert(P, image(P, 10, 0), Lsn(10), Lsn::MAX);
    pool.publish(vec![(P, image(P, 1010, 1))], Lsn(1012));
    assert_eq!(pool.applied_lsn(), Lsn(1012));
    assert_eq!(lsn_of(pool.get(P, Lsn(1000))), Some(10));
    assert_eq!(lsn_of(pool.get(P, Lsn(1009))), Some(10));
    assert_eq!(lsn_of(pool.get(P, Lsn(1010))), Some(1010));
    assert_eq!(lsn_of(pool.get(P, Lsn(5000))), Some(1010));
    assert_eq!(lsn_of(pool.get_current(P)), Some(1010));
    assert_eq!(pool.get(P, Lsn(9)), None);
    let stats = pool.stats();
    assert_eq!((stats.hits, stats.misses), (5, 1));
    pool.check().expect("invariants");
}

#[test]
fn last_written_is_start_until_a_publish_and_survives_eviction() {
    let pool = BufferPool::new(0, START);
    assert_eq!(pool.last_written(P), START);
    pool.publish(vec![(P, image(P, 1010, 1))], Lsn(1010));
    assert_eq!(pool.last_written(P), Lsn(1010));
    pool.mark_durable(Lsn(1010));
    assert_eq!(pool.get(P, Lsn(1010)), None, "budget 0 evicts it");
    assert_eq!(pool.stats().evictions, 1);
    assert_eq!(pool.last_written(P), Lsn(1010));
    pool.check().expect("invariants");
}

#[test]
fn an_insert_is_clipped_at_the_last_write_even_when_its_version_is_gone() {
    let pool = BufferPool::new(2 * VERSION_BYTES, START);
    pool.publish(vec![(P, image(P, 1010, 1))], Lsn(1010));
    pool.mark_durable(Lsn(1010));
    // Push the published version out with other pages.
    for n in 0..4 {
        let q = PageId::new(9, n);
        pool.insert(q, image(q, 5, 0), Lsn(5), Lsn::MAX);
    }
    assert_eq!(pool.get(P, Lsn(1010)), None, "evicted");
    pool.insert(P, image(P, 5, 0), Lsn(5), Lsn::MAX);
    assert_eq!(lsn_of(pool.get(P, Lsn(1009))), Some(5));
    assert_eq!(pool.get(P, Lsn(1010)), None, "clipped at the last write");
    pool.check().expect("invariants");
}

#[test]
fn overlapping_inserts_are_refused() {
    let pool = BufferPool::new(1 << 20, START);
    pool.insert(P, image(P, 10, 0), Lsn(10), Lsn(30));
    pool.insert(P, image(P, 20, 1), Lsn(20), Lsn(40));
    assert_eq!(
        lsn_of(pool.get(P, Lsn(25))),
        Some(10),
        "the cached one stays"
    );
    assert_eq!(pool.get(P, Lsn(35)), None);
    // Below a cached version: ends where it starts.
    pool.insert(P, image(P, 2, 2), Lsn(2), Lsn(15));
    assert_eq!(lsn_of(pool.get(P, Lsn(9))), Some(2));
    assert_eq!(lsn_of(pool.get(P, Lsn(10))), Some(10));
    assert_eq!(pool.stats().versions, 2);
    pool.check().expect("invariants");
}

#[test]
fn insert_current_is_open_only_if_no_publish_overtook_the_fetch() {
    let pool = BufferPool::new(1 << 20, START);
    let q = PageId::new(7, 2);
    // Fetched at start, nothing written since: current.
    pool.insert_current(q, image(q, 10, 0), Lsn(10), Lsn(1001), START);
    assert_eq!(lsn_of(pool.get_current(q)), Some(10));
    // Fetched at start, but the page was written twice meanwhile and both
    // versions were released: only the source's range holds.
    pool.publish(vec![(P, image(P, 1010, 1))], Lsn(1010));
    pool.publish(vec![(P, image(P, 1020, 2))], Lsn(1020));
    pool.mark_durable(Lsn(1020));
    pool.release_below(Lsn(1020));
    pool.insert(P, image(P, 1020, 2), Lsn(1020), Lsn::MAX);
    pool.insert_current(P, image(P, 10, 0), Lsn(10), Lsn(1001), START);
    assert_eq!(lsn_of(pool.get(P, Lsn(1000))), Some(10));
    assert_eq!(pool.get(P, Lsn(1015)), None, "must not claim [10, 1020)");
    pool.check().expect("invariants");
}

#[test]
fn pinned_versions_are_never_evicted() {
    let pool = BufferPool::new(0, START);
    let pages: Vec<PageId> = (0..3).map(|n| PageId::new(3, n)).collect();
    let batch = |lsn: u64| pages.iter().map(|&p| (p, image(p, lsn, lsn))).collect();
    pool.publish(batch(1010), Lsn(1010));
    pool.publish(batch(1020), Lsn(1020));
    assert_eq!(pool.stats().pinned_bytes, 6 * VERSION_BYTES);
    for &p in &pages {
        pool.insert(PageId::new(4, p.page_no), image(p, 5, 0), Lsn(5), Lsn::MAX);
        assert_eq!(lsn_of(pool.get(p, Lsn(1015))), Some(1010));
        assert_eq!(lsn_of(pool.get(p, Lsn(1020))), Some(1020));
    }
    assert_eq!(pool.stats().versions, 6, "inserts are evicted, pins kept");
    pool.mark_durable(Lsn(1010));
    let stats = pool.stats();
    assert_eq!(stats.pinned_bytes, 3 * VERSION_BYTES);
    assert_eq!(stats.versions, 3, "the durable ones went at once");
    pool.check().expect("invariants");
}

#[test]
fn unpinned_versions_stay_within_budget_and_hits_refresh_recency() {
    let pool = BufferPool::new(4 * VERSION_BYTES, START);
    let page = |n| PageId::new(5, n);
    for n in 0..4 {
        pool.insert(page(n), image(page(n), 5, 0), Lsn(5), Lsn::MAX);
    }
    assert!(pool.get(page(0), Lsn(6)).is_some());
    pool.insert(page(4), image(page(4), 5, 0), Lsn(5), Lsn::MAX);
    assert!(pool.get(page(0), Lsn(6)).is_some(), "recently read: spared");
    assert!(pool.get(page(1), Lsn(6)).is_none(), "the least recent went");
    for n in 5..40 {
        pool.insert(page(n), image(page(n), 5, 0), Lsn(5), Lsn::MAX);
        assert!(pool.stats().bytes <= 4 * VERSION_BYTES);
    }
    assert_eq!(pool.stats().evictions, 36);
    pool.check().expect("invariants");
}

#[test]
fn release_below_keeps_what_a_discard_would_fall_back_to() {
    let pool = BufferPool::new(1 << 20, START);
    pool.insert(P, image(P, 10, 0), Lsn(10), Lsn::MAX);
    pool.publish(vec![(P, image(P, 1010, 1))], Lsn(1010));
    pool.release_below(Lsn(2000));
    assert_eq!(lsn_of(pool.get(P, Lsn(1000))), Some(10), "1010 not durable");
    pool.mark_durable(Lsn(1010));
    pool.release_below(Lsn(1009));
    assert_eq!(
        lsn_of(pool.get(P, Lsn(1000))),
        Some(10),
        "a snapshot needs it"
    );
    pool.release_below(Lsn(1010));
    assert_eq!(pool.get(P, Lsn(1000)), None);
    assert_eq!(lsn_of(pool.get(P, Lsn(1010))), Some(1010));
    assert_eq!(pool.stats().released, 1);
    pool.check().expect("invariants");
}

#[test]
fn discard_above_falls_back_to_the_durable_state() {
    let pool = BufferPool::new(1 << 20, START);
    let q = PageId::new(7, 2);
    pool.insert(P, image(P, 10, 0), Lsn(10), Lsn::MAX);
    pool.insert(q, image(q, 20, 0), Lsn(20), Lsn::MAX);
    pool.publish(vec![(P, image(P, 1010, 1))], Lsn(1010));
    pool.publish(
        vec![(P, image(P, 1020, 2)), (q, image(q, 1019, 2))],
        Lsn(1020),
    );
    pool.mark_durable(Lsn(1010));
    pool.discard_above(Lsn(1010));
    assert_eq!(pool.applied_lsn(), Lsn(1010));
    assert_eq!(pool.durable_lsn(), Lsn(1010));
    assert_eq!(lsn_of(pool.get(P, Lsn(1010))), Some(1010));
    assert_eq!(pool.get(P, Lsn(1011)), None, "ends just past durable");
    assert_eq!(lsn_of(pool.get(q, Lsn(1010))), Some(20));
    assert_eq!(pool.get(q, Lsn(1019)), None);
    assert_eq!(pool.get_current(P), None);
    // Writes above durable are forgotten (the write path is dead anyway).
    assert_eq!(pool.last_written(P), START);
    assert_eq!(pool.last_written(q), START);
    let stats = pool.stats();
    assert_eq!((stats.versions, stats.pinned_bytes), (3, 0));
    // Nothing inserted afterwards claims past durable either.
    let r = PageId::new(7, 3);
    pool.insert_current(r, image(r, 30, 0), Lsn(30), Lsn(1011), START);
    assert_eq!(pool.get(r, Lsn(1011)), None);
    assert_eq!(lsn_of(pool.get(r, Lsn(1010))), Some(30));
    pool.check().expect("invariants");
}

#[test]
fn stale_queue_entries_are_compacted() {
    let pool = BufferPool::new(1 << 30, START);
    for round in 0..3000u64 {
        let lsn = 1001 + round;
        pool.publish(vec![(P, image(P, lsn, round))], Lsn(lsn));
        pool.mark_durable(Lsn(lsn));
        pool.release_below(Lsn(lsn));
    }
    let (clock, ends) = pool.queues.lens();
    assert!(clock <= 4 + super::queues::STALE_SLACK, "clock {clock}");
    assert!(ends <= 4 + super::queues::STALE_SLACK, "ends {ends}");
    assert_eq!(pool.stats().versions, 1);
    pool.check().expect("invariants");
}

/// One applier publishes batches that write the same counter into every
/// page; readers at the applied and the durable LSN must see every page
/// of a snapshot agree, and agree with the snapshot.
#[test]
fn readers_see_each_batch_whole() {
    const PAGES: u32 = 8;
    const BATCHES: u64 = 400;
    let pool = Arc::new(BufferPool::new(1 << 30, START));
    let pages: Vec<PageId> = (0..PAGES).map(|n| PageId::new(2, n)).collect();
    for &p in &pages {
        pool.insert(p, image(p, 500, 0), Lsn(500), Lsn::MAX);
    }
    let done = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (pool, pages, done, checked) =
                (pool.clone(), pages.clone(), done.clone(), checked.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Acquire) {
                    let snap = if r == 0 {
                        pool.durable_lsn()
                    } else {
                        pool.applied_lsn()
                    };
                    // Batch k ends at 1009 + 10k.
                    let expected = snap.0.saturating_sub(1009) / 10;
                    for &p in &pages {
                        let img = pool.get(p, snap).expect("nothing is evicted");
                        assert_eq!(read_tag(&img), (p, expected), "at {snap}");
                    }
                    checked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for k in 1..=BATCHES {
        let base = 1000 + 10 * k;
        let batch = pages
            .iter()
            .map(|&p| (p, image(p, base + u64::from(p.page_no), k)))
            .collect();
        pool.publish(batch, Lsn(base + 9));
        if k > 2 {
            pool.mark_durable(Lsn(base - 11));
        }
        if k % 50 == 0 {
            std::thread::yield_now();
        }
    }
    done.store(true, Ordering::Release);
    for r in readers {
        r.join().expect("a reader panicked");
    }
    assert!(checked.load(Ordering::Relaxed) > 0);
    assert_eq!(pool.stats().versions, u64::from(PAGES) * (BATCHES + 1));
    pool.check().expect("invariants");
}

/// Many threads insert, read, publish and release under a tiny budget:
/// the counters and the versions must still agree, and nothing unpinned
/// may be left above budget.
#[test]
fn eviction_under_concurrency_keeps_the_books() {
    let pool = Arc::new(BufferPool::new(16 * VERSION_BYTES, START));
    let workers: Vec<_> = (0..3u32)
        .map(|w| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for n in 0..3000u32 {
                    let p = PageId::new(10 + w, n % 97);
                    if pool.get(p, Lsn(6)).is_none() {
                        pool.insert(p, image(p, 5, 0), Lsn(5), Lsn(900));
                    }
                }
            })
        })
        .collect();
    for k in 1..=300u64 {
        let p = PageId::new(1, (k % 13) as u32);
        pool.publish(vec![(p, image(p, 1000 + k, k))], Lsn(1000 + k));
        pool.mark_durable(Lsn(1000 + k));
        pool.release_below(Lsn(1000 + k / 2));
    }
    for w in workers {
        w.join().expect("a worker panicked");
    }
    pool.mark_durable(Lsn(1300));
    pool.check().expect("invariants");
    let stats = pool.stats();
    assert!(stats.evictions > 0);
    assert!(stats.bytes <= 16 * VERSION_BYTES, "{stats:?}");
}
