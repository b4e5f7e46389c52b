//! The engine's exchange with the page server, every
//! [`FEEDBACK_INTERVAL`]: it reads how far ingest has got (commits slow
//! down while ingest lags the durable LSN by more than
//! `max_ingest_lag_bytes`, see [`Shared::wait_ingest_room`]) and reports
//! the oldest snapshot in use (the page server keeps history back to it).
//!
//! The task holds the engine weakly and ends with it, or when
//! [`Engine::close`](super::Engine::close) cancels it. A page server that
//! does not answer is logged (once per outage) and asked again; meanwhile
//! the last known ingest position stands, so a long outage stalls commits
//! up to the commit timeout rather than letting the lag grow unbounded.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use strata_pageserver::client::PageServerClient;
use strata_wal::Lsn;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Shared;
use crate::error::{EngineError, Result};

pub(super) const FEEDBACK_INTERVAL: Duration = Duration::from_millis(50);

pub(super) async fn run(
    shared: Weak<Shared>,
    mut client: PageServerClient,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(FEEDBACK_INTERVAL) => {}
        }
        let Some(s) = shared.upgrade() else { return };
        let oldest = s.oldest_snapshot();
        let node = s.cfg.node_id.clone();
        drop(s);
        let exchanged = async {
            let status = client.status().await?;
            client.report_snapshot(&node, oldest).await?;
            Ok::<_, strata_pageserver::PageServerError>(Lsn(status.ingested_lsn))
        }
        .await;
        match (exchanged, shared.upgrade()) {
            (_, None) => return,
            (Ok(ingested), Some(s)) => {
                if std::mem::take(&mut failing) {
                    info!("compute engine: the page server answers again");
                }
                s.ingested.fetch_max(ingested.0, Ordering::Relaxed);
            }
            (Err(e), Some(_)) => {
                if !std::mem::replace(&mut failing, true) {
                    warn!(error = %e, "compute engine: the page server does not answer its status");
                }
            }
        }
    }
}

impl Shared {
    /// The oldest snapshot in use, or the durable LSN if none is.
    pub fn oldest_snapshot(&self) -> Lsn {
        let oldest = self.snapshots.lock().keys().next().copied();
        oldest.unwrap_or_else(|| self.durable_lsn())
    }

    /// Waits while the page server's ingest lags the durable LSN by more
    /// than the configured bound (backpressure), at most the commit timeout.
    pub(super) async fn wait_ingest_room(&self) -> Result<()> {
        let max = self.cfg.max_ingest_lag_bytes;
        if max == 0 || !self.feedback_running.load(Ordering::Relaxed) {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.cfg.commit_timeout;
        loop {
            let ingested = Lsn(self.ingested.load(Ordering::Relaxed));
            let lag = self.durable_lsn().bytes_since(ingested);
            if lag <= max {
                return Ok(());
            }
            self.check_writable()?;
            if tokio::time::Instant::now() > deadline {
                return Err(EngineError::Unavailable(format!(
                    "the page server's ingest lags {lag} bytes behind the log (the bound is {max})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
