//! Where buffer-pool misses go. (Stub: helper C owns this file.)

use std::sync::Arc;

use futures::future::BoxFuture;
use strata_pageserver::client::RemotePage;
use strata_wal::{Lsn, PageId};

use crate::error::Result;
use crate::pool::BufferPool;

/// A source of pages at an LSN: the page server now, the DMS later.
pub trait PageSource: Send + Sync + 'static {
    fn get_page(&self, page: PageId, lsn: Lsn) -> BoxFuture<'_, Result<RemotePage>>;
}

/// Fetches misses into a pool, each (page, lsn) once however many ask.
pub struct Fetcher {}

impl Fetcher {
    pub fn new(pool: Arc<BufferPool>, source: Arc<dyn PageSource>) -> Fetcher {
        let _ = (pool, source);
        unimplemented!("helper C")
    }

    /// Makes the version of `page` valid at `lsn` cached (for a snapshot
    /// read).
    pub async fn fetch(&self, page: PageId, lsn: Lsn) -> Result<()> {
        let _ = (page, lsn);
        unimplemented!("helper C")
    }

    /// Makes the current version of `page` cached (the write path): fetched
    /// at `pool.last_written(page)`, valid until this node writes it.
    pub async fn fetch_current(&self, page: PageId) -> Result<()> {
        let _ = page;
        unimplemented!("helper C")
    }
}

pub struct PageServerSource {}

impl PageServerSource {
    pub fn new(client: strata_pageserver::client::PageServerClient) -> Self {
        let _ = client;
        unimplemented!("helper C")
    }
}

impl PageSource for PageServerSource {
    fn get_page(&self, page: PageId, lsn: Lsn) -> BoxFuture<'_, Result<RemotePage>> {
        let _ = (page, lsn);
        unimplemented!("helper C")
    }
}
