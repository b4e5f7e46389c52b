//! The cache of rebuilt pages: an LRU under a memory budget, and
//! single-flight rebuilds.
//!
//! Entries are keyed by (page, `from`), the LSN of the last record in the
//! version: a version never changes, so an entry never goes stale; only the
//! validity's `to` moves, and the caller computes that from the layers on
//! every request. Concurrent misses on one key share one rebuild: the first
//! runs it (inline or on the blocking pool, as the caller's build future
//! chooses), the others wait for its result. A
//! finished rebuild is put in the LRU *before* it leaves the in-flight map,
//! so a request that finds no rebuild in flight finds the page in the LRU.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;
use parking_lot::Mutex;
use strata_wal::page::{PAGE_SIZE, Page};
use strata_wal::{Lsn, PageId};
use tokio::sync::OnceCell;

use crate::error::{PageServerError, Result};

type Key = (PageId, Lsn);

pub struct PageCache {
    lru: Mutex<LruCache<Key, Arc<Page>>>,
    inflight: Mutex<HashMap<Key, Arc<OnceCell<Arc<Page>>>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    rebuilds: AtomicU64,
}

/// The cache's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub rebuilds: u64,
    pub pages: u64,
}

impl CacheStats {
    /// Hits over lookups; 0 before the first lookup.
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

impl PageCache {
    /// A cache holding at most `budget_bytes` of pages (at least one).
    pub fn new(budget_bytes: u64) -> PageCache {
        let pages = usize::try_from(budget_bytes / PAGE_SIZE as u64).unwrap_or(usize::MAX);
        PageCache {
            lru: Mutex::new(LruCache::new(
                NonZeroUsize::new(pages).unwrap_or(NonZeroUsize::MIN),
            )),
            inflight: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            rebuilds: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            rebuilds: self.rebuilds.load(Ordering::Relaxed),
            pages: self.lru.lock().len() as u64,
        }
    }

    /// The cached page under `key`, or the result of `rebuild` (run on the
    /// blocking pool, once for all concurrent callers of the same key).
    pub async fn get_or_rebuild<F>(&self, key: Key, rebuild: F) -> Result<Arc<Page>>
    where
        F: FnOnce() -> Result<Page> + Send + 'static,
    {
        self.get_or_build(key, || async move {
            tokio::task::spawn_blocking(rebuild)
                .await
                .map_err(|e| PageServerError::Unavailable(format!("page rebuild failed: {e}")))?
        })
        .await
    }

    /// The cached page under `key`, or the page `build` makes: a future
    /// run in the caller's task, once for all concurrent callers of the
    /// same key (the others wait for its result). `build` decides where
    /// its work runs: a short replay inline, a long one on the blocking
    /// pool (see `PageService`).
    pub async fn get_or_build<F, Fut>(&self, key: Key, build: F) -> Result<Arc<Page>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Page>>,
    {
        if let Some(page) = self.lru.lock().get(&key).cloned() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(page);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let cell = self.inflight.lock().entry(key).or_default().clone();
        // A rebuild that finished between the LRU miss and taking the cell
        // is in the LRU by now (see the module doc).
        if !cell.initialized()
            && let Some(page) = self.lru.lock().get(&key).cloned()
        {
            self.forget_inflight(key, &cell);
            return Ok(page);
        }
        let page = cell
            .get_or_try_init(|| async {
                self.rebuilds.fetch_add(1, Ordering::Relaxed);
                build().await.map(Arc::new)
            })
            .await
            .cloned();
        if let Ok(page) = &page {
            self.lru.lock().put(key, page.clone());
        }
        self.forget_inflight(key, &cell);
        page
    }

    fn forget_inflight(&self, key: Key, cell: &Arc<OnceCell<Arc<Page>>>) {
        let mut inflight = self.inflight.lock();
        if inflight.get(&key).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            inflight.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: PageId = PageId::new(3, 1);

    fn page_at(lsn: u64) -> Page {
        let mut page = Page::new_zeroed();
        page.init(1, 0);
        page.set_lsn(Lsn(lsn));
        page.seal();
        page
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_rebuild() {
        let cache = Arc::new(PageCache::new(1 << 20));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_rebuild((P, Lsn(10)), || {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        Ok(page_at(10))
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().lsn(), Lsn(10));
        }
        let stats = cache.stats();
        assert_eq!(stats.rebuilds, 1);
        assert_eq!(stats.hits + stats.misses, 32);
    }

    #[tokio::test]
    async fn a_failed_rebuild_is_not_cached_and_the_budget_holds() {
        let cache = PageCache::new(2 * PAGE_SIZE as u64);
        let err = cache
            .get_or_rebuild((P, Lsn(5)), || {
                Err(PageServerError::PageNotFound {
                    page: P,
                    lsn: Lsn(5),
                })
            })
            .await;
        assert!(matches!(err, Err(PageServerError::PageNotFound { .. })));
        for lsn in 1..=5 {
            cache
                .get_or_rebuild((P, Lsn(lsn)), move || Ok(page_at(lsn)))
                .await
                .unwrap();
        }
        let stats = cache.stats();
        assert_eq!(stats.pages, 2);
        assert_eq!(stats.rebuilds, 6);
        cache
            .get_or_rebuild((P, Lsn(5)), || unreachable!("cached"))
            .await
            .unwrap();
        assert_eq!(cache.stats().hits, 1);
    }
}
