//! Log replicas (three unless asked for another count) in this process, on
//! 127.0.0.1, each with its own data directory.
//!
//! Listeners are bound first (port 0) so that every replica knows its
//! peers' addresses before any of them starts. The [`Cluster`] owns the
//! server tasks and their cancellation token; [`Cluster::stop`] cancels
//! and joins them all.

use std::path::Path;

use anyhow::Context;
use strata_logservice::client::replica_status;
use strata_logservice::server::{ServerConfig, serve_on};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Replicas in a cluster unless asked otherwise ([`Cluster::start_with`]).
pub const REPLICAS: u32 = 3;

pub struct Cluster {
    cluster_id: String,
    /// `http://127.0.0.1:port` of every replica, in replica-id order.
    endpoints: Vec<String>,
    shutdown: CancellationToken,
    servers: JoinSet<strata_logservice::Result<()>>,
}

impl Cluster {
    /// Starts [`REPLICAS`] replicas with data directories `dir/replica-<id>`.
    pub async fn start(dir: &Path, cluster_id: &str) -> anyhow::Result<Cluster> {
        Cluster::start_with(dir, cluster_id, REPLICAS).await
    }

    /// Starts `replicas` replicas (at least one), with data directories
    /// `dir/replica-<id>`; a write commits on a majority of them.
    pub async fn start_with(
        dir: &Path,
        cluster_id: &str,
        replicas: u32,
    ) -> anyhow::Result<Cluster> {
        anyhow::ensure!(replicas >= 1, "a log cluster needs at least one replica");
        let mut listeners = Vec::new();
        for _ in 0..replicas {
            listeners.push(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .context("binding a replica")?,
            );
        }
        let endpoints = listeners
            .iter()
            .map(|l| Ok(format!("http://{}", l.local_addr()?)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let shutdown = CancellationToken::new();
        let mut servers = JoinSet::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let id = i as u32 + 1;
            let data_dir = dir.join(format!("replica-{id}"));
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let mut config = ServerConfig::new(id, cluster_id.to_string(), data_dir);
            config.listen = listener.local_addr()?;
            config.peers = endpoints
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, e)| e.clone())
                .collect();
            servers.spawn(serve_on(listener, config, shutdown.clone()));
        }
        Ok(Cluster {
            cluster_id: cluster_id.to_string(),
            endpoints,
            shutdown,
            servers,
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Every replica's fsync count so far, in replica-id order.
    pub async fn fsync_counts(&self) -> anyhow::Result<Vec<u64>> {
        let mut counts = Vec::with_capacity(self.endpoints.len());
        for endpoint in &self.endpoints {
            let status = replica_status(endpoint, &self.cluster_id)
                .await
                .with_context(|| format!("asking {endpoint} for its status"))?;
            counts.push(status.fsync_count);
        }
        Ok(counts)
    }

    /// Cancels every replica and waits for all of them to end.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut first_error = None;
        while let Some(joined) = self.servers.join_next().await {
            let result = joined
                .context("a replica task panicked")
                .and_then(|served| served.context("a replica failed"));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
