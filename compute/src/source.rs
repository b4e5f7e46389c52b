//! Where buffer-pool misses go: the [`PageSource`] trait (the page server
//! now, the DMS later) and the [`Fetcher`] that brings a miss into the
//! [`BufferPool`].
//!
//! The fetcher owns the in-flight requests: concurrent fetches of the same
//! (page, LSN) share one request (single flight). A flight is a shared
//! future in a map; the waiter that sees it finish removes it, and the
//! last waiter to give up (cancelled) removes it and so drops the request.
//! The map therefore only holds flights someone still waits on.
//!
//! Every answer is checked before it is inserted: it must cover the LSN
//! asked for and carry its `from` as page LSN. The pool then clips its
//! range to what this node knows; this module never decides validity.
//!
//! Must not depend on the engine: it only knows pools and sources.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use strata_pageserver::PageServerError;
use strata_pageserver::client::{PageServerClient, RemotePage};
use strata_wal::page::Page;
use strata_wal::{Lsn, PageId};

use crate::error::{EngineError, Result};
use crate::pool::BufferPool;

/// Requests one `fetch_many` keeps in flight at once.
pub const MAX_CONCURRENT_FETCHES: usize = 64;
/// Fetches of the current version one `fetch_current` tries while
/// publishes keep overtaking them.
const CURRENT_ATTEMPTS: usize = 4;

/// A source of pages at an LSN: the page server now, the DMS later.
pub trait PageSource: Send + Sync + 'static {
    fn get_page(&self, page: PageId, lsn: Lsn) -> BoxFuture<'_, Result<RemotePage>>;
}

/// The page server as a [`PageSource`]. Its client is a cheap handle on
/// a pool of GetPage connections (the page server's framed transport):
/// each request uses a clone and a connection of its own, so requests run
/// concurrently.
#[derive(Clone)]
pub struct PageServerSource {
    client: PageServerClient,
}

impl PageServerSource {
    pub fn new(client: PageServerClient) -> PageServerSource {
        PageServerSource { client }
    }
}

impl PageSource for PageServerSource {
    fn get_page(&self, page: PageId, lsn: Lsn) -> BoxFuture<'_, Result<RemotePage>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            client
                .get_page(page, lsn)
                .await
                .map_err(EngineError::PageServer)
        })
    }
}

/// What a flight fetches: the version at an LSN (a snapshot read), or the
/// current version, fetched at the page's last-written LSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Want {
    At(Lsn),
    Current(Lsn),
}

type FlightOutput = std::result::Result<Arc<Page>, Arc<EngineError>>;
type Flight = Shared<BoxFuture<'static, FlightOutput>>;
type FlightKey = (PageId, Want);

/// Fetches misses into a pool, each (page, lsn) once however many ask.
pub struct Fetcher {
    pool: Arc<BufferPool>,
    source: Arc<dyn PageSource>,
    /// In-flight requests; the id tells a flight from a later one for the
    /// same key.
    flights: Mutex<HashMap<FlightKey, (u64, Flight)>>,
    next_flight: AtomicU64,
}

impl Fetcher {
    pub fn new(pool: Arc<BufferPool>, source: Arc<dyn PageSource>) -> Fetcher {
        Fetcher {
            pool,
            source,
            flights: Mutex::default(),
            next_flight: AtomicU64::new(0),
        }
    }

    pub fn pool(&self) -> &Arc<BufferPool> {
        &self.pool
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.flights.lock().len()
    }

    /// Makes the version of `page` valid at `lsn` cached (for a snapshot
    /// read).
    pub async fn fetch(&self, page: PageId, lsn: Lsn) -> Result<()> {
        self.fetch_page(page, lsn).await.map(drop)
    }

    /// The version of `page` valid at `lsn`: from the pool, else fetched
    /// and inserted. The image is returned, so eviction between the insert
    /// and the caller's read does not matter.
    pub async fn fetch_page(&self, page: PageId, lsn: Lsn) -> Result<Arc<Page>> {
        if let Some(image) = self.pool.get(page, lsn) {
            return Ok(image);
        }
        self.fly(page, Want::At(lsn)).await
    }

    /// Makes the current version of `page` cached (the write path): fetched
    /// at `pool.last_written(page)`, valid until this node writes it.
    pub async fn fetch_current(&self, page: PageId) -> Result<()> {
        self.fetch_current_page(page).await.map(drop)
    }

    /// The current version of `page`: cached, else fetched at the page's
    /// last-written LSN and inserted open. A publish that overtakes the
    /// fetch makes its own image current; the fetch is retried only if that
    /// one is gone too.
    pub async fn fetch_current_page(&self, page: PageId) -> Result<Arc<Page>> {
        if let Some(image) = self.pool.get_current(page) {
            return Ok(image);
        }
        for _ in 0..CURRENT_ATTEMPTS {
            if self.pool.is_fenced() {
                return Err(fenced());
            }
            let at = self.pool.last_written(page);
            self.fly(page, Want::Current(at)).await?;
            if let Some(image) = self.pool.peek_current(page) {
                return Ok(image);
            }
        }
        if self.pool.is_fenced() {
            return Err(fenced());
        }
        Err(EngineError::Unavailable(format!(
            "page {page} changed under {CURRENT_ATTEMPTS} fetches of its current version"
        )))
    }

    /// The versions of `pages` valid at `lsn`, in order, fetched
    /// concurrently (at most [`MAX_CONCURRENT_FETCHES`] at a time).
    pub async fn fetch_many(&self, pages: &[PageId], lsn: Lsn) -> Result<Vec<Arc<Page>>> {
        futures::stream::iter(pages.iter().map(|&p| self.fetch_page(p, lsn)))
            .buffered(MAX_CONCURRENT_FETCHES)
            .try_collect()
            .await
    }

    /// The current versions of `pages`, in order, fetched concurrently:
    /// a transaction's write set, before it enters the applier.
    pub async fn fetch_current_many(&self, pages: &[PageId]) -> Result<Vec<Arc<Page>>> {
        futures::stream::iter(pages.iter().map(|&p| self.fetch_current_page(p)))
            .buffered(MAX_CONCURRENT_FETCHES)
            .try_collect()
            .await
    }

    /// Joins the flight for (page, want), starting it if there is none,
    /// and waits for it.
    async fn fly(&self, page: PageId, want: Want) -> Result<Arc<Page>> {
        let mut ticket = self.board((page, want));
        ticket.wait().await.map_err(|e| shared_error(&e))
    }

    fn board(&self, key: FlightKey) -> Ticket<'_> {
        let mut flights = self.flights.lock();
        let (id, flight) = flights
            .entry(key)
            .or_insert_with(|| {
                let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
                (id, self.launch(key))
            })
            .clone();
        Ticket {
            fetcher: self,
            key,
            id,
            flight: Some(flight),
            done: false,
        }
    }

    fn launch(&self, (page, want): FlightKey) -> Flight {
        let pool = Arc::clone(&self.pool);
        let source = Arc::clone(&self.source);
        async move {
            fetch_into(&pool, source.as_ref(), page, want)
                .await
                .map_err(Arc::new)
        }
        .boxed()
        .shared()
    }

    /// A waiter leaves: the flight goes if it finished, or if no one else
    /// waits on it.
    fn leave(&self, ticket: &mut Ticket<'_>) {
        let mut flights = self.flights.lock();
        let Some((id, flight)) = flights.get(&ticket.key) else {
            return;
        };
        if *id != ticket.id {
            return;
        }
        // Our clone no longer counts once dropped (or once it returned).
        ticket.flight = None;
        if ticket.done || flight.strong_count() == Some(1) {
            flights.remove(&ticket.key);
        }
    }
}

/// One waiter's place on a flight; leaving (normally or cancelled) runs
/// [`Fetcher::leave`].
struct Ticket<'a> {
    fetcher: &'a Fetcher,
    key: FlightKey,
    id: u64,
    flight: Option<Flight>,
    done: bool,
}

impl Ticket<'_> {
    async fn wait(&mut self) -> FlightOutput {
        let flight = self
            .flight
            .as_mut()
            .expect("a ticket holds its flight until it leaves");
        let out = flight.await;
        self.done = true;
        out
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.fetcher.leave(self);
    }
}

/// Fetches (page, want) from `source` and inserts it into `pool`.
async fn fetch_into(
    pool: &BufferPool,
    source: &dyn PageSource,
    page: PageId,
    want: Want,
) -> Result<Arc<Page>> {
    let lsn = match want {
        Want::At(lsn) => {
            // A flight that just ended may have brought it.
            if let Some(image) = pool.peek(page, lsn) {
                return Ok(image);
            }
            lsn
        }
        Want::Current(lsn) => lsn,
    };
    let remote = source.get_page(page, lsn).await?;
    check_answer(page, lsn, &remote)?;
    let image = Arc::new(remote.page);
    match want {
        Want::At(_) => pool.insert(page, Arc::clone(&image), remote.from, remote.to),
        Want::Current(at) => {
            pool.insert_current(page, Arc::clone(&image), remote.from, remote.to, at)
        }
    }
    Ok(image)
}

/// The answer must be the page as of `from` and cover `lsn`.
fn check_answer(page: PageId, lsn: Lsn, remote: &RemotePage) -> Result<()> {
    let RemotePage { from, to, .. } = *remote;
    if from <= lsn && lsn < to && remote.page.lsn() == from {
        return Ok(());
    }
    Err(EngineError::PageServer(PageServerError::BadResponse(
        format!(
            "page {page} at {lsn}: validity [{from}, {to}) with page LSN {} does not cover the request",
            remote.page.lsn()
        ),
    )))
}

fn fenced() -> EngineError {
    EngineError::WritesRefused(
        "the log writer failed; versions above the durable LSN were dropped".into(),
    )
}

/// Each waiter's copy of a flight's error. Errors are not `Clone`; a
/// page server error keeps its gRPC code (so retryability survives), the
/// kinds a caller acts on keep their kind, the rest become `Unavailable`.
fn shared_error(e: &EngineError) -> EngineError {
    match e {
        EngineError::PageServer(e) => EngineError::PageServer(PageServerError::Remote {
            code: e.code(),
            message: e.to_string(),
        }),
        EngineError::SnapshotTooOld { snapshot } => EngineError::SnapshotTooOld {
            snapshot: *snapshot,
        },
        EngineError::Corrupt(s) => EngineError::Corrupt(s.clone()),
        EngineError::WritesRefused(s) => EngineError::WritesRefused(s.clone()),
        EngineError::Shutdown => EngineError::Shutdown,
        other => EngineError::Unavailable(other.to_string()),
    }
}
