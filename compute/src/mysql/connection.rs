//! One client connection: buffered packet I/O with sequence ids, the
//! command loop and the commands' responses.
//!
//! Invariants: each command starts at sequence id 0 and its response
//! continues the client's sequence; the write buffer is flushed after every
//! command and whenever it passes [`FLUSH_AT`] bytes, and the read buffer
//! never holds more than one `max_allowed_packet`-sized packet plus one
//! read. Shutdown is observed only while waiting for input, so a command
//! that has started finishes. A framing error, a malformed command or an
//! oversized packet is answered with an error and closes the connection;
//! a statement error or an unknown command is answered and the connection
//! goes on. The handler is dropped with the connection (rolling back its
//! open transaction).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::codec::{Malformed, Reader};
use super::handshake::{self, CLIENT_DEPRECATE_EOF};
use super::packet::{self, FrameError};
use super::prepared::{self, Statement};
use super::response::{self, OkInfo, SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS};
use super::resultset;
use super::{Handler, HandlerFactory, ServerConfig};
use crate::sql::{Column, FieldType, Output, SqlError};
use crate::types::Value;

/// Write-buffer size that triggers a flush in the middle of a result set.
const FLUSH_AT: usize = 64 * 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Prepared statements one connection may hold (MySQL's default
/// `max_prepared_stmt_count`).
const MAX_STATEMENTS: usize = 16_382;
/// Bytes discarded after a fatal error so the client reads the error
/// before the socket closes (closing with unread input resets it).
const DRAIN_LIMIT: usize = 1 << 26;

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_FIELD_LIST: u8 = 0x04;
const COM_PING: u8 = 0x0E;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_STMT_RESET: u8 = 0x1A;
const COM_RESET_CONNECTION: u8 = 0x1F;

/// Why a connection ends.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("client closed the connection")]
    Closed,
    #[error("server shutting down")]
    Shutdown,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Malformed(#[from] Malformed),
}

pub(crate) struct Connection<S, F: HandlerFactory> {
    stream: S,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    scratch: Vec<u8>,
    seq: u8,
    caps: u32,
    max_packet: usize,
    id: u32,
    factory: Arc<F>,
    handler: F::H,
    stmts: HashMap<u32, Statement>,
    current_db: Option<String>,
    shutdown: CancellationToken,
}

impl<S, F> Connection<S, F>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    F: HandlerFactory,
{
    pub(crate) fn new(
        stream: S,
        id: u32,
        factory: Arc<F>,
        max_allowed_packet: u32,
        shutdown: CancellationToken,
    ) -> Self {
        let mut handler = factory.make(id);
        handler.attach(shutdown.clone());
        Connection {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            scratch: Vec::new(),
            seq: 0,
            caps: 0,
            max_packet: usize::try_from(max_allowed_packet).unwrap_or(usize::MAX),
            id,
            factory,
            handler,
            stmts: HashMap::new(),
            current_db: None,
            shutdown,
        }
    }

    /// Serves the client until it quits, fails or the server shuts down.
    pub(crate) async fn run(mut self, config: &ServerConfig) {
        if let Err(e) = self.serve(config).await {
            self.report(e).await;
        }
    }

    async fn serve(&mut self, config: &ServerConfig) -> Result<(), ConnError> {
        if !handshake::establish(self, config).await? {
            return Ok(());
        }
        loop {
            self.seq = 0;
            let payload = match self.read_packet().await {
                Ok(p) => p,
                Err(ConnError::Shutdown | ConnError::Closed) => return Ok(()),
                Err(e) => return Err(e),
            };
            if !self.dispatch(&payload).await? {
                return Ok(());
            }
            self.flush().await?;
        }
    }

    /// Answers a fatal error if the client can be told, then closes.
    async fn report(&mut self, e: ConnError) {
        let sql = match &e {
            ConnError::Frame(FrameError::TooLarge { .. }) => response::packet_too_large(),
            ConnError::Frame(FrameError::OutOfOrder { .. }) => response::out_of_order(),
            ConnError::Malformed(_) => response::malformed(),
            ConnError::Io(_) | ConnError::Closed | ConnError::Shutdown => {
                tracing::debug!(connection = self.id, error = %e, "connection ended");
                return;
            }
        };
        tracing::info!(connection = self.id, error = %e, "closing connection");
        self.send_err(&sql);
        if self.flush().await.is_ok() && self.stream.shutdown().await.is_ok() {
            self.drain().await;
        }
    }

    /// Reads and discards input until the client closes (bounded).
    async fn drain(&mut self) {
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut total = 0usize;
        let shutdown = self.shutdown.clone();
        while total < DRAIN_LIMIT {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.stream.read(&mut chunk) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => total += n,
                },
            }
        }
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn set_caps(&mut self, caps: u32) {
        self.caps = caps;
    }

    fn deprecate_eof(&self) -> bool {
        self.caps & CLIENT_DEPRECATE_EOF != 0
    }

    /// Server status flags from the session.
    pub(crate) fn status(&self) -> u16 {
        let mut status = 0;
        if self.handler.autocommit() {
            status |= SERVER_STATUS_AUTOCOMMIT;
        }
        if self.handler.in_transaction() {
            status |= SERVER_STATUS_IN_TRANS;
        }
        status
    }

    /// Frames one payload into the write buffer.
    pub(crate) fn send(&mut self, payload: &[u8]) {
        self.seq = packet::encode(payload, self.seq, &mut self.wbuf);
    }

    fn send_with(&mut self, build: impl FnOnce(&mut Vec<u8>)) {
        let mut p = std::mem::take(&mut self.scratch);
        p.clear();
        build(&mut p);
        self.send(&p);
        self.scratch = p;
    }

    pub(crate) fn send_ok(&mut self, header: u8, ok: &OkInfo) {
        self.send_with(|p| response::ok(p, header, ok));
    }

    pub(crate) fn send_err(&mut self, e: &SqlError) {
        self.send_with(|p| response::err(p, e));
    }

    fn send_plain_ok(&mut self) {
        let ok = OkInfo {
            status: self.status(),
            ..OkInfo::default()
        };
        self.send_ok(0, &ok);
    }

    /// Sends `e` during the connection phase; the client is refused.
    pub(crate) async fn refuse(&mut self, e: &SqlError) -> Result<bool, ConnError> {
        self.send_err(e);
        self.flush().await?;
        Ok(false)
    }

    pub(crate) async fn flush(&mut self) -> Result<(), ConnError> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        self.stream.flush().await?;
        Ok(())
    }

    async fn flush_if_full(&mut self) -> Result<(), ConnError> {
        if self.wbuf.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// The next packet, which must carry the current sequence id.
    pub(crate) async fn read_packet(&mut self) -> Result<Vec<u8>, ConnError> {
        let shutdown = self.shutdown.clone();
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            match packet::decode(&self.rbuf, self.seq, self.max_packet) {
                Ok(Some(p)) => {
                    self.rbuf.drain(..p.consumed);
                    self.seq = p.next_seq;
                    return Ok(p.payload);
                }
                Ok(None) => {}
                Err(e) => {
                    self.seq = self.seq.wrapping_add(1);
                    return Err(e.into());
                }
            }
            let n = tokio::select! {
                _ = shutdown.cancelled() => return Err(ConnError::Shutdown),
                r = self.stream.read(&mut chunk) => r?,
            };
            if n == 0 {
                return Err(ConnError::Closed);
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    /// COM_INIT_DB's work, also done for the handshake's database.
    pub(crate) async fn use_database(&mut self, db: &str) -> Result<(), SqlError> {
        self.handler.init_db(db).await?;
        self.current_db = Some(db.to_string());
        Ok(())
    }

    /// Runs one command; `false` when the client quit.
    async fn dispatch(&mut self, payload: &[u8]) -> Result<bool, ConnError> {
        let Some((&cmd, body)) = payload.split_first() else {
            return Err(Malformed("empty command").into());
        };
        match cmd {
            COM_QUIT => return Ok(false),
            COM_PING => self.send_plain_ok(),
            COM_INIT_DB => self.com_init_db(body).await,
            COM_QUERY => self.com_query(body).await?,
            COM_FIELD_LIST => self.com_field_list(body).await?,
            COM_STMT_PREPARE => self.com_prepare(body).await?,
            COM_STMT_EXECUTE => self.com_execute(body).await?,
            COM_STMT_SEND_LONG_DATA => self.com_long_data(body)?,
            COM_STMT_CLOSE => self.com_close(body)?,
            COM_STMT_RESET => self.com_reset(body)?,
            COM_RESET_CONNECTION => self.com_reset_connection().await,
            other => self.send_err(&response::unknown_command(other)),
        }
        Ok(true)
    }

    async fn com_init_db(&mut self, body: &[u8]) {
        let result = match std::str::from_utf8(body) {
            Ok(db) => self.use_database(db).await,
            Err(_) => Err(response::not_utf8()),
        };
        match result {
            Ok(()) => self.send_plain_ok(),
            Err(e) => self.send_err(&e),
        }
    }

    async fn com_query(&mut self, body: &[u8]) -> Result<(), ConnError> {
        let Ok(sql) = std::str::from_utf8(body) else {
            self.send_err(&response::not_utf8());
            return Ok(());
        };
        let result = self.handler.query(sql).await;
        self.send_output(result, false).await
    }

    async fn com_field_list(&mut self, body: &[u8]) -> Result<(), ConnError> {
        let table = Reader::new(body).nul_or_rest();
        let Ok(table) = std::str::from_utf8(table) else {
            self.send_err(&response::not_utf8());
            return Ok(());
        };
        match self.handler.field_list(table).await {
            Ok(columns) => {
                for col in &columns {
                    self.send_with(|p| resultset::column_def(p, col, true));
                    self.flush_if_full().await?;
                }
                self.end_of_rows();
            }
            Err(e) => self.send_err(&e),
        }
        Ok(())
    }

    /// A statement's outcome: OK, ERR or a result set.
    async fn send_output(
        &mut self,
        result: Result<Output, SqlError>,
        binary: bool,
    ) -> Result<(), ConnError> {
        match result {
            Err(e) => self.send_err(&e),
            Ok(Output::Rows { columns, rows }) if !columns.is_empty() => {
                self.send_result_set(&columns, &rows, binary).await?;
            }
            Ok(Output::Rows { .. }) => self.send_plain_ok(),
            Ok(Output::Ok {
                affected_rows,
                last_insert_id,
                warnings,
                info,
            }) => {
                let ok = OkInfo {
                    affected_rows,
                    last_insert_id,
                    status: self.status(),
                    warnings,
                    info,
                };
                self.send_ok(0, &ok);
            }
        }
        Ok(())
    }

    async fn send_result_set(
        &mut self,
        columns: &[Column],
        rows: &[Vec<Value>],
        binary: bool,
    ) -> Result<(), ConnError> {
        self.send_column_defs(columns, true).await?;
        for row in rows {
            if binary {
                self.send_with(|p| resultset::binary_row(p, columns, row));
            } else {
                self.send_with(|p| resultset::text_row(p, row));
            }
            self.flush_if_full().await?;
        }
        self.end_of_rows();
        Ok(())
    }

    /// Optionally the column count, then the definitions and (without
    /// DEPRECATE_EOF) an EOF.
    async fn send_column_defs(&mut self, columns: &[Column], count: bool) -> Result<(), ConnError> {
        if count {
            self.send_with(|p| resultset::column_count(p, columns.len()));
        }
        for col in columns {
            self.send_with(|p| resultset::column_def(p, col, false));
            self.flush_if_full().await?;
        }
        if !self.deprecate_eof() {
            let status = self.status();
            self.send_with(|p| response::eof(p, status, 0));
        }
        Ok(())
    }

    /// The packet after the last row: EOF, or OK-as-EOF (0xFE).
    fn end_of_rows(&mut self) {
        let status = self.status();
        if self.deprecate_eof() {
            let ok = OkInfo {
                status,
                ..OkInfo::default()
            };
            self.send_ok(0xFE, &ok);
        } else {
            self.send_with(|p| response::eof(p, status, 0));
        }
    }

    async fn com_prepare(&mut self, body: &[u8]) -> Result<(), ConnError> {
        let Ok(sql) = std::str::from_utf8(body) else {
            self.send_err(&response::not_utf8());
            return Ok(());
        };
        let prepared = match self.handler.prepare(sql).await {
            Ok(p) => p,
            Err(e) => {
                self.send_err(&e);
                return Ok(());
            }
        };
        if self.stmts.len() >= MAX_STATEMENTS && !self.stmts.contains_key(&prepared.id) {
            self.handler.close(prepared.id);
            let msg = format!(
                "Can't create more than max_prepared_stmt_count statements (current value: {MAX_STATEMENTS})"
            );
            self.send_err(&response::sql_error(1461, "42000", msg));
            return Ok(());
        }
        let columns = u16::try_from(prepared.columns.len()).unwrap_or(u16::MAX);
        self.send_with(|p| prepared::prepare_ok(p, prepared.id, columns, prepared.params));
        if prepared.params > 0 {
            let params = vec![param_column(); usize::from(prepared.params)];
            self.send_column_defs(&params, false).await?;
        }
        if !prepared.columns.is_empty() {
            self.send_column_defs(&prepared.columns, false).await?;
        }
        self.stmts
            .insert(prepared.id, Statement::new(prepared.params));
        Ok(())
    }

    async fn com_execute(&mut self, body: &[u8]) -> Result<(), ConnError> {
        let id = prepared::statement_id(body)?;
        let Some(stmt) = self.stmts.get_mut(&id) else {
            self.send_err(&response::unknown_statement(id, "mysqld_stmt_execute"));
            return Ok(());
        };
        if stmt.long_data_overflow {
            stmt.reset();
            let msg = "Parameter of prepared statement which is set through \
                       mysql_send_long_data() is longer than 'max_allowed_packet' bytes";
            self.send_err(&response::sql_error(1153, "08S01", msg));
            return Ok(());
        }
        let params = prepared::parse_execute(body, stmt)?;
        stmt.reset();
        let result = self.handler.execute(id, params).await;
        self.send_output(result, true).await
    }

    /// COM_STMT_SEND_LONG_DATA: no response, whatever happens.
    fn com_long_data(&mut self, body: &[u8]) -> Result<(), ConnError> {
        let mut r = Reader::new(body);
        let id = r.u32()?;
        let param = r.u16()?;
        let limit = self.max_packet;
        if let Some(stmt) = self.stmts.get_mut(&id) {
            stmt.append_long_data(param, r.rest(), limit);
        }
        Ok(())
    }

    /// COM_STMT_CLOSE: no response.
    fn com_close(&mut self, body: &[u8]) -> Result<(), ConnError> {
        let id = prepared::statement_id(body)?;
        if self.stmts.remove(&id).is_some() {
            self.handler.close(id);
        }
        Ok(())
    }

    fn com_reset(&mut self, body: &[u8]) -> Result<(), ConnError> {
        let id = prepared::statement_id(body)?;
        match self.stmts.get_mut(&id) {
            Some(stmt) => {
                stmt.reset();
                self.send_plain_ok();
            }
            None => self.send_err(&response::unknown_statement(id, "mysqld_stmt_reset")),
        }
        Ok(())
    }

    /// A fresh session (the old one is dropped, rolling back its
    /// transaction) in the same database.
    async fn com_reset_connection(&mut self) {
        self.handler = self.factory.make(self.id);
        self.handler.attach(self.shutdown.clone());
        self.stmts.clear();
        if let Some(db) = self.current_db.take()
            && let Err(e) = self.use_database(&db).await
        {
            tracing::debug!(connection = self.id, error = %e, "database gone after reset");
        }
        self.send_plain_ok();
    }
}

/// How a statement's parameters are described to the client.
fn param_column() -> Column {
    Column {
        db: String::new(),
        table: String::new(),
        name: "?".to_string(),
        charset: 63,
        length: 0,
        field_type: FieldType::VarString,
        flags: 0,
        decimals: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use futures::future::BoxFuture;
    use proptest::prelude::*;

    use crate::sql::Prepared;

    /// A session that answers everything with one row of every type.
    struct Echo;

    fn one_row() -> Output {
        let types = [
            FieldType::LongLong,
            FieldType::Tiny,
            FieldType::Double,
            FieldType::NewDecimal,
            FieldType::Date,
            FieldType::DateTime,
            FieldType::Time,
            FieldType::VarString,
        ];
        let columns = types
            .iter()
            .map(|&field_type| Column {
                field_type,
                ..param_column()
            })
            .collect();
        Output::Rows {
            columns,
            rows: vec![vec![Value::Bytes(b"12:00:01".to_vec()); types.len()]],
        }
    }

    impl Handler for Echo {
        fn query<'a>(&'a mut self, _: &'a str) -> BoxFuture<'a, Result<Output, SqlError>> {
            async { Ok(one_row()) }.boxed()
        }
        fn prepare<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<Prepared, SqlError>> {
            let params = sql.matches('?').count() as u16;
            async move {
                Ok(Prepared {
                    id: 1 + u32::from(params),
                    params,
                    columns: Vec::new(),
                })
            }
            .boxed()
        }
        fn execute(&mut self, _: u32, _: Vec<Value>) -> BoxFuture<'_, Result<Output, SqlError>> {
            async { Ok(one_row()) }.boxed()
        }
        fn close(&mut self, _: u32) {}
        fn init_db<'a>(&'a mut self, _: &'a str) -> BoxFuture<'a, Result<(), SqlError>> {
            async { Ok(()) }.boxed()
        }
        fn field_list<'a>(
            &'a mut self,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Vec<Column>, SqlError>> {
            async { Ok(vec![param_column()]) }.boxed()
        }
        fn in_transaction(&self) -> bool {
            false
        }
        fn autocommit(&self) -> bool {
            true
        }
    }

    struct EchoFactory;

    impl HandlerFactory for EchoFactory {
        type H = Echo;
        fn make(&self, _: u32) -> Echo {
            Echo
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a test runtime")
    }

    fn config() -> ServerConfig {
        ServerConfig {
            root_password: None,
            server_version: "8.0.36".into(),
            max_allowed_packet: 4096,
        }
    }

    /// Commands with a random body, in any order, after statements with
    /// 0..3 parameters were prepared.
    fn command() -> impl Strategy<Value = Vec<u8>> {
        let cmd = prop::sample::select(vec![
            COM_INIT_DB,
            COM_QUERY,
            COM_FIELD_LIST,
            COM_PING,
            COM_STMT_PREPARE,
            COM_STMT_EXECUTE,
            COM_STMT_SEND_LONG_DATA,
            COM_STMT_CLOSE,
            COM_STMT_RESET,
            COM_RESET_CONNECTION,
            0x09,
            0xFF,
        ]);
        let body = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            // A statement id 1..=4 then random bytes.
            (1u8..5, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(id, rest)| {
                let mut b = vec![id, 0, 0, 0];
                b.extend(rest);
                b
            }),
        ];
        (cmd, body).prop_map(|(c, b)| {
            let mut p = vec![c];
            p.extend(b);
            p
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn random_commands_never_panic(commands in proptest::collection::vec(command(), 1..8)) {
            runtime().block_on(async {
                let (server, _client) = tokio::io::duplex(1 << 20);
                let mut conn =
                    Connection::new(server, 1, Arc::new(EchoFactory), 4096, CancellationToken::new());
                for sql in ["x", "x ?", "x ? ?", "x ? ? ?"] {
                    conn.com_prepare(sql.as_bytes()).await.expect("prepare");
                }
                for c in &commands {
                    conn.seq = 1;
                    match conn.dispatch(c).await {
                        Ok(_) => {}
                        Err(ConnError::Malformed(_)) => break,
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            });
        }

        #[test]
        fn random_client_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            login in any::<bool>(),
        ) {
            runtime().block_on(async {
                let (server, mut client) = tokio::io::duplex(1 << 20);
                let conn =
                    Connection::new(server, 1, Arc::new(EchoFactory), 4096, CancellationToken::new());
                let task = tokio::spawn(async move { conn.run(&config()).await });
                let mut input = Vec::new();
                if login {
                    let mut resp = (handshake::CLIENT_PROTOCOL_41 | handshake::CLIENT_SECURE_CONNECTION).to_le_bytes().to_vec();
                    resp.extend_from_slice(&[0; 4 + 1 + 23]);
                    resp.extend_from_slice(b"root\0\0");
                    packet::encode(&resp, 1, &mut input);
                }
                input.extend_from_slice(&bytes);
                client.write_all(&input).await.expect("write");
                client.shutdown().await.expect("shutdown");
                let mut sink = Vec::new();
                let _ = client.read_to_end(&mut sink).await;
                task.await.expect("the connection task does not panic");
                let greeting = packet::decode(&sink, 0, usize::MAX);
                assert!(matches!(greeting, Ok(Some(p)) if p.payload[0] == 10));
            });
        }
    }
}
