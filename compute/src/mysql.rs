//! The MySQL wire protocol server: accepts clients, runs the connection
//! phase and the command loop of each in its own task, and turns commands
//! into calls on a [`Handler`] (one SQL session per connection).
//!
//! The module tree follows mini-redis: packet framing
//! (`mysql/packet.rs`), basic encodings (`mysql/codec.rs`), the handshake
//! (`mysql/handshake.rs`), the command loop (`mysql/connection.rs`), result
//! sets (`mysql/resultset.rs`), prepared statements (`mysql/prepared.rs`)
//! and OK/ERR/EOF (`mysql/response.rs`).
//!
//! Invariants: nothing a client sends can panic the server or affect
//! another connection; each connection has a distinct id (from 1); on
//! shutdown the listener stops accepting, idle connections close and busy
//! ones finish their current command, and `serve` returns when all have
//! ended. This module knows nothing of the engine: only [`Handler`].

mod codec;
mod connection;
mod handshake;
mod packet;
mod prepared;
mod response;
mod resultset;

pub use resultset::text_value;

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sql::{Column, Output, Prepared, SqlError};
use crate::types::Value;
use connection::Connection;

/// What a connection runs its commands against: one SQL session.
pub trait Handler: Send + 'static {
    /// One COM_QUERY: the statement's outcome.
    fn query<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<Output, SqlError>>;
    /// COM_STMT_PREPARE.
    fn prepare<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<Prepared, SqlError>>;
    /// COM_STMT_EXECUTE with the decoded parameters.
    fn execute(&mut self, stmt: u32, params: Vec<Value>)
    -> BoxFuture<'_, Result<Output, SqlError>>;
    /// COM_STMT_CLOSE.
    fn close(&mut self, stmt: u32);
    /// COM_INIT_DB (and the database named in the handshake).
    fn init_db<'a>(&'a mut self, db: &'a str) -> BoxFuture<'a, Result<(), SqlError>>;
    /// COM_FIELD_LIST.
    fn field_list<'a>(&'a mut self, table: &'a str)
    -> BoxFuture<'a, Result<Vec<Column>, SqlError>>;
    /// Server status flags for OK/EOF packets.
    fn in_transaction(&self) -> bool;
    fn autocommit(&self) -> bool;
    /// The connection's token: cancelling it closes the connection (KILL).
    fn attach(&mut self, _connection: CancellationToken) {}
}

/// Makes a handler for each new connection (its connection id given).
pub trait HandlerFactory: Send + Sync + 'static {
    type H: Handler;
    fn make(&self, connection_id: u32) -> Self::H;
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `root`'s password; `None` or empty = no password.
    pub root_password: Option<String>,
    /// The version string in the handshake and `@@version`.
    pub server_version: String,
    /// Largest packet a client may send (bytes); beyond, the connection is
    /// closed with an error.
    pub max_allowed_packet: u32,
}

/// Serves MySQL clients on `listener` until `shutdown`.
pub async fn serve<F: HandlerFactory>(
    listener: TcpListener,
    config: ServerConfig,
    factory: Arc<F>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let mut tasks = JoinSet::new();
    let mut last_id = 0u32;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => log_end(done),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    last_id = last_id.checked_add(1).unwrap_or(1);
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::warn!(%peer, error = %e, "cannot set TCP_NODELAY");
                    }
                    let conn = Connection::new(
                        stream,
                        last_id,
                        Arc::clone(&factory),
                        config.max_allowed_packet,
                        shutdown.child_token(),
                    );
                    let config = Arc::clone(&config);
                    tasks.spawn(async move { conn.run(&config).await });
                }
                Err(e) => {
                    // Usually transient (a reset before accept, out of file
                    // descriptors): wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    while let Some(done) = tasks.join_next().await {
        log_end(done);
    }
    Ok(())
}

fn log_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "connection task failed");
    }
}
