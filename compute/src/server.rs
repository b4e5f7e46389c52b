//! A compute node: the engine, and MySQL clients served over it.
//!
//! Start: the engine opens (it becomes the log's writer, which fences any
//! earlier primary, and loads the catalog), then the MySQL listener takes
//! connections, one SQL session each. Stop (the shutdown token): the
//! listener stops, connections end, and the engine stops writing.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::engine::{Engine, EngineConfig};
use crate::error::{EngineError, Result};
use crate::mysql::{self, ServerConfig as MysqlConfig};
use crate::sql::SessionFactory;

/// The MySQL version this node reports (8.0 wire and variables).
pub const SERVER_VERSION: &str = "8.0.35-strata";

#[derive(Clone, Debug)]
pub struct ComputeConfig {
    pub engine: EngineConfig,
    /// Where MySQL clients connect.
    pub mysql_listen: SocketAddr,
    /// `root`'s password; `None` or empty: none.
    pub root_password: Option<String>,
    pub max_allowed_packet: u32,
}

impl ComputeConfig {
    pub fn new(engine: EngineConfig, mysql_listen: SocketAddr) -> ComputeConfig {
        ComputeConfig {
            engine,
            mysql_listen,
            root_password: None,
            max_allowed_packet: 64 << 20,
        }
    }
}

/// Binds the MySQL port and serves until `shutdown`.
pub async fn serve(config: ComputeConfig, shutdown: CancellationToken) -> Result<()> {
    let listener = TcpListener::bind(config.mysql_listen).await.map_err(|e| {
        EngineError::Unavailable(format!(
            "binding the MySQL port {}: {e}",
            config.mysql_listen
        ))
    })?;
    serve_on(listener, config, shutdown).await
}

/// Serves MySQL clients on `listener` until `shutdown`.
pub async fn serve_on(
    listener: TcpListener,
    config: ComputeConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let engine = tokio::select! {
        opened = Engine::open(config.engine.clone()) => opened?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let mysql_config = MysqlConfig {
        root_password: config.root_password.clone().filter(|p| !p.is_empty()),
        server_version: SERVER_VERSION.into(),
        max_allowed_packet: config.max_allowed_packet,
    };
    let addr = listener.local_addr().ok();
    info!(mysql = ?addr, "compute node serving MySQL clients");
    let factory = Arc::new(SessionFactory::new(engine.clone()));
    let served = mysql::serve(listener, mysql_config, factory, shutdown).await;
    engine.close();
    served.map_err(|e| EngineError::Unavailable(format!("the MySQL listener failed: {e}")))
}
