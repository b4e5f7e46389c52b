//! `GetPage@LSN`: the one read the page server answers, independent of the
//! wire.
//!
//! Order of a read: wait (bounded) until ingest reaches the LSN; refuse a
//! dropped space; take one layer map and refuse an LSN below its GC
//! cutoff (snapshot too old); find the version's `from` (the page's
//! last record at or below the LSN) and `to` (its next record, or the
//! ingested LSN + 1); then the page from the cache, or rebuilt once from the
//! same map and verified (checksum and layout) before it is cached or sent.
//!
//! The newest version of a recently read page comes from the timeline's
//! newest-page cache, which ingest keeps up to date (`timeline::newest`);
//! a version rebuilt here is offered to it.
//!
//! A rebuild runs in the request's own task when its chain is short (at
//! most [`INLINE_REPLAY_VALUES`] values, tens of microseconds of replay),
//! and on the blocking pool otherwise: under ingest almost every read at
//! the latest LSN rebuilds, and handing a short replay to another thread
//! and back cost more (two wake-ups on a busy machine) than the replay.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use strata_wal::page::Page;
use strata_wal::{Lsn, PageId};

use crate::cache::{CacheStats, PageCache};
use crate::error::{PageServerError, Result};
use crate::metrics::LatencyHistogram;
use crate::realtime::RealtimeBudget;
use crate::remote::upload::UploadState;
use crate::timeline::tier::MAX_DOWNLOAD_RETRIES;
use crate::timeline::{LayerMap, Timeline, read};

/// A page as of an LSN, and the LSN range `[from, to)` it is valid over.
#[derive(Clone, Debug)]
pub struct PageVersion {
    pub page: Arc<Page>,
    pub from: Lsn,
    pub to: Lsn,
}

/// Replays of at most this many values (records, images) run in the
/// request's own task: one is tens of microseconds, less than handing it
/// to another thread and back costs on a busy machine.
const INLINE_REPLAY_VALUES: usize = 128;

pub struct PageService {
    timeline: Arc<Timeline>,
    cache: PageCache,
    wait_lsn_timeout: Duration,
    /// The uploader's figures, when there is a bucket.
    upload: Option<Arc<UploadState>>,
    /// Every GetPage's time here, answered or refused.
    latency: LatencyHistogram,
    /// The framed GetPage threads' budget at real-time priority.
    realtime: RealtimeBudget,
}

impl PageService {
    pub fn new(timeline: Arc<Timeline>, cache_bytes: u64, wait_lsn_timeout: Duration) -> Self {
        PageService {
            timeline,
            cache: PageCache::new(cache_bytes),
            wait_lsn_timeout,
            upload: None,
            latency: LatencyHistogram::default(),
            realtime: RealtimeBudget::off(),
        }
    }

    /// Lets the framed GetPage threads run at real-time priority, within
    /// `percent` of this machine's CPU time ([`crate::realtime`]; 0: never).
    pub fn with_getpage_realtime(mut self, percent: u32) -> Self {
        self.realtime = RealtimeBudget::of_machine(percent);
        self
    }

    pub fn realtime(&self) -> &RealtimeBudget {
        &self.realtime
    }

    /// Reports the uploader's figures with the others.
    pub fn with_upload_state(mut self, state: Arc<UploadState>) -> Self {
        self.upload = Some(state);
        self
    }

    pub fn upload_state(&self) -> Option<&Arc<UploadState>> {
        self.upload.as_ref()
    }

    pub fn timeline(&self) -> &Arc<Timeline> {
        &self.timeline
    }

    /// The time each GetPage took here, from the call to the answer.
    pub fn latency(&self) -> &LatencyHistogram {
        &self.latency
    }

    /// The page cache's figures; a read answered from the newest-page
    /// cache counts as a hit.
    pub fn cache_stats(&self) -> CacheStats {
        let mut stats = self.cache.stats();
        stats.hits += self.timeline.newest_stats().hits;
        stats
    }

    /// `page` as of `lsn`.
    pub async fn get_page(&self, page: PageId, lsn: Lsn) -> Result<PageVersion> {
        let started = Instant::now();
        let answer = self.answer(page, lsn).await;
        self.latency.record(started.elapsed());
        answer
    }

    async fn answer(&self, page: PageId, lsn: Lsn) -> Result<PageVersion> {
        self.timeline.wait_for(lsn, self.wait_lsn_timeout).await?;
        if let Some(dropped_at) = self.timeline.space_dropped(page.space)
            && dropped_at <= lsn
        {
            return Err(PageServerError::SpaceDropped { page, dropped_at });
        }
        // Each try reads one map; a layer evicted from the local disk is
        // downloaded (once for all askers) and pinned here until the read
        // is done, and the read tried again.
        let mut pinned = Vec::new();
        for _ in 0..MAX_DOWNLOAD_RETRIES {
            let map = self.timeline.snapshot();
            match self.read(&map, page, lsn).await {
                Err(PageServerError::LayerEvicted { file }) => {
                    match self.timeline.download_named(&map, &file).await {
                        Ok(handle) => pinned.push(handle),
                        // Dropped by a compaction meanwhile: the next map
                        // does not need it.
                        Err(_) if self.timeline.snapshot().find(&file).is_none() => {}
                        // Not in the catalog but still in the map: an index
                        // that drops it was published a moment before the
                        // map that drops it; that map comes next.
                        Err(PageServerError::Unavailable(_)) => {
                            tokio::time::sleep(Duration::from_millis(10)).await
                        }
                        Err(e) => return Err(e),
                    }
                }
                other => {
                    self.count_layer_read(!pinned.is_empty());
                    return other;
                }
            }
        }
        Err(PageServerError::Unavailable(format!(
            "page {page} at {lsn}: the layers kept changing under the read"
        )))
    }

    fn count_layer_read(&self, downloaded: bool) {
        if let Some(t) = self.timeline.tiering() {
            let counter = match downloaded {
                true => &t.stats.downloading_reads,
                false => &t.stats.local_reads,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One try of a read from one map.
    async fn read(&self, map: &Arc<LayerMap>, page: PageId, lsn: Lsn) -> Result<PageVersion> {
        if lsn < map.gc_cutoff {
            return Err(PageServerError::SnapshotTooOld {
                lsn,
                horizon: map.gc_cutoff,
            });
        }
        let from = read::last_record(map, page, lsn)?
            .ok_or(PageServerError::PageNotFound { page, lsn })?;
        let to = read::next_record(map, page, lsn)?;
        if let Some(image) = self.timeline.newest_page(page, from) {
            return Ok(PageVersion {
                page: image,
                from,
                to,
            });
        }
        let image = self
            .cache
            .get_or_build((page, from), || async move {
                // Finding the chain reads layer files as the lookups above
                // do; a short replay runs here too, a long one on the
                // blocking pool (module doc).
                let chain = read::chain(map, page, from)?;
                let image = if chain.len() <= INLINE_REPLAY_VALUES {
                    read::replay(page, from, &chain)?
                } else {
                    tokio::task::spawn_blocking(move || read::replay(page, from, &chain))
                        .await
                        .map_err(|e| {
                            PageServerError::Unavailable(format!("page rebuild failed: {e}"))
                        })??
                };
                image.verify(page).map_err(|e| PageServerError::Rebuild {
                    page,
                    lsn: from,
                    detail: format!("the rebuilt page fails verification: {e}"),
                })?;
                Ok(image)
            })
            .await?;
        self.timeline.offer_newest(page, &image);
        Ok(PageVersion {
            page: image,
            from,
            to,
        })
    }
}
