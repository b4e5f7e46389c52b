//! The MySQL wire protocol. (Stub: the protocol helper owns this file and
//! `mysql/`.)

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::sql::{Column, Output, Prepared, SqlError};
use crate::types::Value;

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
    let _ = (listener, config, factory, shutdown);
    unimplemented!("protocol helper")
}
