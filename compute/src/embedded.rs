//! The storage side of a cluster in this process: three log replicas and a
//! page server on 127.0.0.1 ports chosen by the OS, data under one
//! directory. For tests, benchmarks and embedding; `strata up` runs the
//! same servers.
//!
//! Shutdown order: the engine first (the caller's), then the page server,
//! then the log replicas ([`StorageCluster::stop`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::EngineConfig;
use crate::error::{EngineError, Result};

pub struct StorageCluster {
    pub cluster_id: String,
    pub log_endpoints: Vec<String>,
    pub pageserver_endpoint: String,
    dir: PathBuf,
    log_stops: Vec<CancellationToken>,
    ps_stop: CancellationToken,
    logs: Vec<Option<JoinHandle<strata_logservice::Result<()>>>>,
    pageserver: Option<JoinHandle<strata_pageserver::Result<()>>>,
}

async fn bind() -> Result<(TcpListener, String)> {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| EngineError::Unavailable(format!("binding a port: {e}")))?;
    let addr = l
        .local_addr()
        .map_err(|e| EngineError::Unavailable(format!("a bound port: {e}")))?;
    Ok((l, format!("http://{addr}")))
}

impl StorageCluster {
    /// Starts (or restarts, on the same `dir`) three log replicas and a
    /// page server.
    pub async fn start(dir: &Path, cluster_id: &str) -> Result<StorageCluster> {
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(bind().await?);
        }
        let log_endpoints: Vec<String> = listeners.iter().map(|(_, e)| e.clone()).collect();
        let mut log_stops = Vec::new();
        let mut logs = Vec::new();
        for (i, (listener, _)) in listeners.into_iter().enumerate() {
            use strata_logservice::server::{ServerConfig, serve_on};
            let mut cfg =
                ServerConfig::new(i as u32 + 1, cluster_id, dir.join(format!("log-{}", i + 1)));
            cfg.peers = (0..3)
                .filter(|j| *j != i)
                .map(|j| log_endpoints[j].clone())
                .collect();
            let stop = CancellationToken::new();
            logs.push(Some(tokio::spawn(serve_on(listener, cfg, stop.clone()))));
            log_stops.push(stop);
        }
        let mut cluster = StorageCluster {
            cluster_id: cluster_id.into(),
            log_endpoints,
            pageserver_endpoint: String::new(),
            dir: dir.to_path_buf(),
            log_stops,
            ps_stop: CancellationToken::new(),
            logs,
            pageserver: None,
        };
        cluster.start_pageserver().await?;
        Ok(cluster)
    }

    async fn start_pageserver(&mut self) -> Result<()> {
        let (listener, endpoint) = bind().await?;
        self.serve_pageserver(listener, endpoint)
    }

    fn serve_pageserver(&mut self, listener: TcpListener, endpoint: String) -> Result<()> {
        use strata_pageserver::server::{ServerConfig, serve_on};
        let mut cfg = ServerConfig::new(
            self.cluster_id.clone(),
            self.dir.join("pageserver"),
            self.log_endpoints.clone(),
        );
        cfg.wait_lsn_timeout = Duration::from_secs(10);
        self.ps_stop = CancellationToken::new();
        self.pageserver = Some(tokio::spawn(serve_on(listener, cfg, self.ps_stop.clone())));
        self.pageserver_endpoint = endpoint;
        Ok(())
    }

    /// Stops the page server (the log replicas go on).
    pub async fn stop_pageserver(&mut self) {
        self.ps_stop.cancel();
        if let Some(ps) = self.pageserver.take() {
            let _ = ps.await;
        }
    }

    /// Starts the page server again on its address and data.
    pub async fn restart_pageserver(&mut self) -> Result<()> {
        let addr = self
            .pageserver_endpoint
            .trim_start_matches("http://")
            .to_string();
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|e| EngineError::Unavailable(format!("binding {addr} again: {e}")))?;
        let endpoint = self.pageserver_endpoint.clone();
        self.serve_pageserver(listener, endpoint)
    }

    /// An engine configuration for this cluster.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig::new(
            self.cluster_id.clone(),
            self.log_endpoints.clone(),
            self.pageserver_endpoint.clone(),
        )
    }

    /// Stops the page server, then the log replicas.
    pub async fn stop(mut self) -> Result<()> {
        self.ps_stop.cancel();
        if let Some(ps) = self.pageserver.take() {
            let _ = ps.await;
        }
        for stop in &self.log_stops {
            stop.cancel();
        }
        for l in self.logs.iter_mut().filter_map(Option::take) {
            let _ = l.await;
        }
        Ok(())
    }

    /// Stops log replica `i` (0-based) and waits for it to end: for tests
    /// of a log that loses its quorum.
    pub async fn stop_log_replica(&mut self, i: usize) {
        self.log_stops[i].cancel();
        if let Some(l) = self.logs[i].take() {
            let _ = l.await;
        }
    }
}

impl Drop for StorageCluster {
    fn drop(&mut self) {
        self.ps_stop.cancel();
        for stop in &self.log_stops {
            stop.cancel();
        }
    }
}
