//! Start-up: becoming the log's writer, and loading (or creating) the
//! catalog.
//!
//! A new cluster's log holds only `TermStart` batches: space 0 was never
//! written, the page server answers "not found" for its header, and the
//! engine creates the catalog in one batch (space 0's header and the two
//! catalog trees, whose roots must come out as pages 1 and 2). Otherwise the
//! catalog trees are read at the durable LSN.

use std::time::Duration;

use strata_logservice::client::LogClient;
use strata_pageserver::PageServerError;
use strata_wal::Lsn;
use tracing::info;

use super::Engine;
use super::read::ReadAt;
use crate::btree::{BTree, TreeError};
use crate::catalog::{
    DATABASES_ROOT, FIRST_USER_SPACE, TABLES_ROOT, decode_database, decode_table,
};
use crate::error::{EngineError, Result};
use crate::space::{create_space, header_page, set_counters};

/// Waits until this writer's `TermStart` is committed; returns the log end,
/// where this node's first batch will go.
pub(super) async fn wait_term_start(log: &LogClient) -> Result<Lsn> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = log.state();
        if s.end_lsn > Lsn::ZERO && s.commit_lsn >= s.end_lsn {
            return Ok(s.end_lsn);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(EngineError::Unavailable(
                "the log did not commit this writer's first batch within 30 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub(super) async fn load_or_create_catalog(engine: &Engine) -> Result<()> {
    let shared = &engine.shared;
    let at = shared.durable_lsn();
    match shared.fetcher.fetch(header_page(0), at).await {
        Ok(()) => load(engine, at).await,
        Err(e) if is_not_found(&e) => create(engine).await,
        Err(e) => Err(e),
    }
}

fn is_not_found(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::PageServer(PageServerError::PageNotFound { .. })
            | EngineError::PageServer(PageServerError::Remote {
                code: tonic::Code::NotFound,
                ..
            })
    )
}

async fn create(engine: &Engine) -> Result<()> {
    let (lsn, durable) = engine
        .shared
        .apply(|st| {
            create_space(st, 0)?;
            let databases = BTree::create(st, 0)?;
            let tables = BTree::create(st, 0)?;
            if databases.root != DATABASES_ROOT || tables.root != TABLES_ROOT {
                return Err(TreeError::Corrupt {
                    page: databases.root,
                    detail: "the catalog trees' roots are not pages 1 and 2".into(),
                });
            }
            set_counters(st, 0, 0, FIRST_USER_SPACE)
        })
        .await?;
    durable.await?;
    info!(%lsn, "compute engine: created the catalog of a new cluster");
    Ok(())
}

async fn load(engine: &Engine, at: Lsn) -> Result<()> {
    let shared = &engine.shared;
    let at = ReadAt::Snapshot(at);
    let databases = shared.collect(at, BTree::open(DATABASES_ROOT)).await?;
    let tables = shared.collect(at, BTree::open(TABLES_ROOT)).await?;
    let mut catalog = shared.catalog.write();
    for (_, v) in &databases {
        catalog.put_database(decode_database(v)?);
    }
    for (_, v) in &tables {
        catalog.put_table(decode_table(v)?);
    }
    info!(
        databases = databases.len(),
        tables = tables.len(),
        "compute engine: loaded the catalog"
    );
    Ok(())
}
