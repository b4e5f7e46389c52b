//! The engine: one primary compute's storage core, over the log service and
//! the page server.
//!
//! State and who may change it:
//! - the **durable LSN** (`durable`): the end of the last batch a quorum of
//!   log replicas holds. Snapshots are taken here: nothing above it is
//!   visible to a snapshot read.
//! - the **applied LSN** (the pool's): the end of the last batch the single
//!   applier published into the buffer pool, ≥ durable. Current reads (the
//!   write path: row-locked reads, unique checks) read here.
//! - `next_lsn` (under the applier lock): where the next batch lands in the
//!   log. This node is the log's only writer and enqueues every batch itself,
//!   in order, so it knows each record's LSN before the batch is sent — and
//!   checks it when the log answers.
//!
//! A commit: the transaction's write set is replayed into the B+trees in a
//! private [`stage::Stage`] (a miss fetches the page and starts the stage
//! again), the batch is enqueued on the log, the stage's pages are published
//! (applied LSN advances), locks are released, and the caller waits until the
//! durable LSN passes the batch. If an append fails or the log places a batch
//! anywhere but where it was expected, the node refuses writes from then on
//! and drops every version above the durable LSN (`Shared::refuse_writes`).
//!
//! Must not depend on the SQL layer; the catalog API here is the one it uses.

mod bootstrap;
mod ddl;
mod feedback;
pub(crate) mod read;
pub(crate) mod stage;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use strata_logservice::client::{LogClient, LogClientConfig};
use strata_wal::Lsn;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::btree::{Result as TreeResult, TreeError};
use crate::catalog::Catalog;
use crate::error::{EngineError, Result};
use crate::lock::{LockManager, TxnId};
use crate::pool::{BufferPool, PoolStats};
use crate::source::{Fetcher, PageServerSource, PageSource};
use crate::txn::Txn;
use stage::{Stage, Staged};

pub(crate) use ddl::zero_of;
pub use ddl::{
    AlterKind, ColumnChange, ColumnSpec, IndexChange, IndexSpec, TableChange, TableSpec,
};

/// Pages a transaction fetched and holds for its commit.
pub(crate) type PinnedPages = HashMap<strata_wal::PageId, Arc<strata_wal::page::Page>>;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub cluster_id: String,
    /// This node's name as the log's writer.
    pub node_id: String,
    /// Every log replica, as `http://host:port`.
    pub log_endpoints: Vec<String>,
    pub pageserver_endpoint: String,
    pub pool_budget_bytes: u64,
    /// Bytes of not-yet-durable page versions; commits wait beyond it.
    pub max_pinned_bytes: u64,
    pub lock_wait_timeout: Duration,
    /// The most one transaction's batch may hold.
    pub max_txn_bytes: u64,
    /// How long a commit waits for the log's quorum before the node gives
    /// up on the log and refuses writes.
    pub commit_timeout: Duration,
    /// Commits wait while the page server's ingest lags the durable LSN
    /// by more than this (0: never).
    pub max_ingest_lag_bytes: u64,
}

impl EngineConfig {
    pub fn new(
        cluster_id: impl Into<String>,
        log_endpoints: Vec<String>,
        pageserver_endpoint: impl Into<String>,
    ) -> EngineConfig {
        EngineConfig {
            cluster_id: cluster_id.into(),
            node_id: "compute-1".into(),
            log_endpoints,
            pageserver_endpoint: pageserver_endpoint.into(),
            pool_budget_bytes: 256 << 20,
            max_pinned_bytes: 128 << 20,
            lock_wait_timeout: Duration::from_secs(50),
            max_txn_bytes: 32 << 20,
            commit_timeout: Duration::from_secs(30),
            max_ingest_lag_bytes: 256 << 20,
        }
    }
}

/// The catalog, copy-on-write: readers take an `Arc` of the current
/// version (one atomic increment per statement, not a deep copy); a DDL's
/// `write()` edits a private copy when readers still hold the old one.
#[derive(Default)]
pub(crate) struct SharedCatalog(RwLock<Arc<Catalog>>);

impl SharedCatalog {
    pub fn read(&self) -> Arc<Catalog> {
        self.0.read().clone()
    }

    pub fn write(&self) -> CatalogWrite<'_> {
        CatalogWrite(self.0.write())
    }
}

pub(crate) struct CatalogWrite<'a>(parking_lot::RwLockWriteGuard<'a, Arc<Catalog>>);

impl std::ops::Deref for CatalogWrite<'_> {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        &self.0
    }
}

impl std::ops::DerefMut for CatalogWrite<'_> {
    fn deref_mut(&mut self) -> &mut Catalog {
        Arc::make_mut(&mut self.0)
    }
}

/// A handle on the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub cfg: EngineConfig,
    pub pool: Arc<BufferPool>,
    pub fetcher: Fetcher,
    pub locks: LockManager,
    pub catalog: SharedCatalog,
    /// Held while a batch is staged and enqueued; holds `next_lsn`.
    applier: tokio::sync::Mutex<Lsn>,
    /// DDL runs one statement at a time.
    ddl: tokio::sync::Mutex<()>,
    log: LogClient,
    durable: watch::Sender<Lsn>,
    refused: Mutex<Option<String>>,
    /// Snapshots in use: LSN → how many readers hold it.
    snapshots: Mutex<BTreeMap<Lsn, usize>>,
    next_txn: AtomicU64,
    /// Per table: the next auto-increment value to hand out.
    pub auto_inc: Mutex<HashMap<u32, u64>>,
    /// The page server's ingested LSN, as last heard.
    ingested: AtomicU64,
    feedback_running: AtomicBool,
    /// Stops background tasks.
    stop: CancellationToken,
}

impl Engine {
    /// Connects to the log service (winning the writer's election, which
    /// fences any earlier primary) and the page server, and loads the
    /// catalog — creating it if the cluster is new.
    pub async fn open(cfg: EngineConfig) -> Result<Engine> {
        let ps = connect_pageserver(&cfg).await?;
        let engine =
            Self::open_with_source(cfg, Arc::new(PageServerSource::new(ps.clone()))).await?;
        let s = &engine.shared;
        s.ingested.store(s.durable_lsn().0, Ordering::Relaxed);
        s.feedback_running.store(true, Ordering::Relaxed);
        tokio::spawn(feedback::run(Arc::downgrade(s), ps, s.stop.clone()));
        Ok(engine)
    }

    /// [`Engine::open`] with misses going to `source`.
    pub async fn open_with_source(
        cfg: EngineConfig,
        source: Arc<dyn PageSource>,
    ) -> Result<Engine> {
        let mut log_cfg = LogClientConfig::new(
            cfg.cluster_id.clone(),
            cfg.node_id.clone(),
            cfg.log_endpoints.clone(),
        );
        log_cfg.commit_timeout = cfg.commit_timeout;
        let log = LogClient::connect(log_cfg).await?;
        let start = bootstrap::wait_term_start(&log).await?;
        info!(%start, "compute engine: elected as the log's writer");
        let pool = Arc::new(BufferPool::new(cfg.pool_budget_bytes, start));
        let shared = Arc::new(Shared {
            fetcher: Fetcher::new(pool.clone(), source),
            pool,
            locks: LockManager::new(),
            catalog: SharedCatalog::default(),
            applier: tokio::sync::Mutex::new(start),
            ddl: tokio::sync::Mutex::new(()),
            log,
            durable: watch::channel(start).0,
            refused: Mutex::new(None),
            snapshots: Mutex::new(BTreeMap::new()),
            next_txn: AtomicU64::new(1),
            auto_inc: Mutex::new(HashMap::new()),
            ingested: AtomicU64::new(0),
            feedback_running: AtomicBool::new(false),
            stop: CancellationToken::new(),
            cfg,
        });
        let engine = Engine { shared };
        bootstrap::load_or_create_catalog(&engine).await?;
        Ok(engine)
    }

    /// Starts a transaction.
    pub fn begin(&self) -> Txn {
        let id = self.shared.next_txn.fetch_add(1, Ordering::Relaxed);
        Txn::new(self.shared.clone(), id)
    }

    /// How long a lock waits unless the session says otherwise (the
    /// server's `innodb_lock_wait_timeout`).
    pub fn lock_wait_timeout(&self) -> std::time::Duration {
        self.shared.cfg.lock_wait_timeout
    }

    /// The auto-increment value `table`'s next insert takes (none taken).
    pub async fn peek_auto_inc(&self, table: &crate::catalog::TableDef) -> Result<u64> {
        self.shared.peek_auto_inc(table).await
    }

    /// The catalog as of now: an immutable snapshot, shared (not copied)
    /// by every statement until the next DDL replaces it.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.shared.catalog.read()
    }

    /// The LSN snapshots are taken at: durable on the log's quorum.
    pub fn durable_lsn(&self) -> Lsn {
        *self.shared.durable.borrow()
    }

    /// How far the page server's ingest is behind the durable LSN, as last
    /// heard (0 when the engine does not follow the page server).
    pub fn ingest_lag_bytes(&self) -> u64 {
        let s = &self.shared;
        if !s.feedback_running.load(Ordering::Relaxed) {
            return 0;
        }
        s.durable_lsn()
            .bytes_since(Lsn(s.ingested.load(Ordering::Relaxed)))
    }

    pub fn applied_lsn(&self) -> Lsn {
        self.shared.pool.applied_lsn()
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.shared.pool.stats()
    }

    /// Every page version cached here that is valid at `lsn` (for checks:
    /// it locks the whole pool in turn).
    pub fn cached_pages_at(
        &self,
        lsn: Lsn,
    ) -> Vec<(strata_wal::PageId, Arc<strata_wal::page::Page>)> {
        self.shared.pool.versions_at(lsn)
    }

    /// Why writes are refused, if they are.
    pub fn refused(&self) -> Option<String> {
        self.shared.refused.lock().clone()
    }

    /// Stops writing to the log and the background tasks.
    pub fn close(&self) {
        self.shared.stop.cancel();
        self.shared.log.close();
    }
}

impl Shared {
    pub fn durable_lsn(&self) -> Lsn {
        *self.durable.borrow()
    }

    pub fn check_writable(&self) -> Result<()> {
        match &*self.refused.lock() {
            Some(why) => Err(EngineError::WritesRefused(why.clone())),
            None => Ok(()),
        }
    }

    /// Waits until the durable LSN reaches `lsn`.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        let mut rx = self.durable.subscribe();
        loop {
            if *rx.borrow_and_update() >= lsn {
                return Ok(());
            }
            if let Some(why) = self.refused.lock().clone() {
                return Err(EngineError::WritesRefused(why));
            }
            if rx.changed().await.is_err() {
                return Err(EngineError::Shutdown);
            }
        }
    }

    /// Registers a snapshot at the durable LSN; [`Shared::release_snapshot`]
    /// ends it.
    pub fn take_snapshot(&self) -> Lsn {
        let mut snaps = self.snapshots.lock();
        let lsn = self.durable_lsn();
        *snaps.entry(lsn).or_insert(0) += 1;
        lsn
    }

    pub fn release_snapshot(&self, lsn: Lsn) {
        {
            let mut snaps = self.snapshots.lock();
            if let Some(n) = snaps.get_mut(&lsn) {
                *n -= 1;
                if *n == 0 {
                    snaps.remove(&lsn);
                }
            }
        }
        self.release_unneeded();
    }

    /// Drops the cached versions no snapshot can read any more: those
    /// ending at or below the oldest snapshot, or the durable LSN when
    /// there is none. Runs when a snapshot ends and when the durable LSN
    /// moves, so that a page written by every commit (a table's header, a
    /// hot leaf) keeps a few versions, not one per commit since the last
    /// reader — even under a write-only load that takes no snapshots.
    fn release_unneeded(&self) {
        let bound = {
            let snaps = self.snapshots.lock();
            // Read under the lock: a snapshot being taken reads it there too.
            snaps
                .keys()
                .next()
                .copied()
                .unwrap_or_else(|| self.durable_lsn())
        };
        self.pool.release_below(bound);
    }

    pub fn new_txn_id(&self) -> TxnId {
        self.next_txn.fetch_add(1, Ordering::Relaxed)
    }

    /// Stages one batch with `build`, enqueues it on the log and publishes
    /// it; returns its commit LSN and the future of its durability. `build`
    /// may run several times (after each miss); it must change nothing but
    /// the stage.
    pub async fn apply(
        &self,
        build: impl FnMut(&mut Stage<'_>) -> TreeResult<()>,
    ) -> Result<(Lsn, impl Future<Output = Result<()>> + '_)> {
        static NOTHING_PINNED: std::sync::LazyLock<PinnedPages> =
            std::sync::LazyLock::new(HashMap::new);
        self.apply_pinned(&NOTHING_PINNED, build).await
    }

    /// [`Shared::apply`], the stage falling back on `pinned` pages (fetched
    /// by the caller beforehand) that the pool may have evicted.
    pub async fn apply_pinned(
        &self,
        pinned: &PinnedPages,
        mut build: impl FnMut(&mut Stage<'_>) -> TreeResult<()>,
    ) -> Result<(Lsn, impl Future<Output = Result<()>> + '_)> {
        self.check_writable()?;
        self.wait_pinned_room().await?;
        self.wait_ingest_room().await?;
        let mut next = self.applier.lock().await;
        self.check_writable()?;
        let staged = loop {
            let mut stage = Stage::new(&self.pool, *next).with_pinned(pinned);
            match build(&mut stage) {
                Ok(()) => {}
                Err(TreeError::Miss(page)) => {
                    self.fetcher.fetch_current(page).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            if stage.len() as u64 > self.cfg.max_txn_bytes {
                return Err(EngineError::TxnTooLarge {
                    bytes: stage.len() as u64,
                    max: self.cfg.max_txn_bytes,
                });
            }
            break stage.finish(now_us());
        };
        let Staged {
            batch,
            images,
            commit_lsn,
        } = staged;
        let acked = match self.log.enqueue(batch).await {
            Ok(acked) => acked,
            Err(e) => {
                self.refuse_writes(format!("the log refused a batch: {e}"));
                return Err(e.into());
            }
        };
        self.pool.publish(images, commit_lsn);
        *next = commit_lsn;
        drop(next);
        Ok((commit_lsn, async move {
            match acked.await {
                Ok(lsn) if lsn == commit_lsn => {
                    self.advance_durable(lsn);
                    Ok(())
                }
                Ok(lsn) => {
                    self.refuse_writes(format!(
                        "the log placed a batch at {lsn}, expected {commit_lsn} (a new term?)"
                    ));
                    Err(EngineError::WritesRefused(
                        "the log's writer changed under this node".into(),
                    ))
                }
                Err(e) => {
                    self.refuse_writes(format!("an append failed: {e}"));
                    Err(e.into())
                }
            }
        }))
    }

    fn advance_durable(&self, lsn: Lsn) {
        let advanced = self.durable.send_if_modified(|d| {
            let newer = lsn > *d;
            if newer {
                *d = lsn;
            }
            newer
        });
        if advanced {
            self.pool.mark_durable(lsn);
            self.release_unneeded();
        }
    }

    /// The failure path: no more writes, nothing above the durable LSN.
    pub fn refuse_writes(&self, why: String) {
        let mut refused = self.refused.lock();
        if refused.is_none() {
            error!(reason = %why, "compute engine: refusing writes from now on");
            *refused = Some(why);
            self.pool.discard_above(self.durable_lsn());
            self.log.close();
        }
        drop(refused);
        // Wake every waiter so that it sees the refusal.
        self.durable.send_modify(|_| {});
    }

    /// Waits while the pinned (not yet durable) versions are over budget.
    async fn wait_pinned_room(&self) -> Result<()> {
        let mut rx = self.durable.subscribe();
        while self.pool.stats().pinned_bytes > self.cfg.max_pinned_bytes {
            self.check_writable()?;
            if tokio::time::timeout(Duration::from_millis(100), rx.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                return Err(EngineError::Shutdown);
            }
        }
        Ok(())
    }
}

/// Connects to the page server, waiting for it to come up (as it may, when
/// every role starts at once) for up to [`PAGESERVER_CONNECT_TIMEOUT`].
async fn connect_pageserver(
    cfg: &EngineConfig,
) -> Result<strata_pageserver::client::PageServerClient> {
    let deadline = tokio::time::Instant::now() + PAGESERVER_CONNECT_TIMEOUT;
    loop {
        let connected = strata_pageserver::client::PageServerClient::connect(
            &cfg.pageserver_endpoint,
            cfg.cluster_id.clone(),
        )
        .await;
        match connected {
            Ok(client) => return Ok(client),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.into()),
            Err(e) => {
                info!(error = %e, endpoint = %cfg.pageserver_endpoint, "waiting for the page server");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

const PAGESERVER_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Auto-increment values: handed out from memory, as InnoDB's interleaved
/// mode; the high-water mark is persisted in the table's space header by
/// the commit that used it, so values never go backwards after a restart.
impl Shared {
    /// The next value for `table`.
    pub async fn next_auto_inc(&self, table: &crate::catalog::TableDef) -> Result<u64> {
        self.load_auto_inc(table).await?;
        let mut map = self.auto_inc.lock();
        let next = map.get_mut(&table.id).expect("loaded above");
        let v = *next;
        *next += 1;
        Ok(v)
    }

    /// The value the next insert would take, without taking it.
    pub async fn peek_auto_inc(&self, table: &crate::catalog::TableDef) -> Result<u64> {
        self.load_auto_inc(table).await?;
        Ok(*self.auto_inc.lock().get(&table.id).expect("loaded above"))
    }

    /// An explicit value `used` was stored: later values go above it.
    pub async fn bump_auto_inc(&self, table: &crate::catalog::TableDef, used: u64) -> Result<()> {
        self.load_auto_inc(table).await?;
        let mut map = self.auto_inc.lock();
        let next = map.get_mut(&table.id).expect("loaded above");
        *next = (*next).max(used.saturating_add(1));
        Ok(())
    }

    async fn load_auto_inc(&self, table: &crate::catalog::TableDef) -> Result<()> {
        if self.auto_inc.lock().contains_key(&table.id) {
            return Ok(());
        }
        let header = self
            .read_at(self.current(), |r| crate::space::read_header(r, table.id))
            .await?;
        self.auto_inc
            .lock()
            .entry(table.id)
            .or_insert(header.auto_inc + 1);
        Ok(())
    }
}
