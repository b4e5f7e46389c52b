//! The MySQL protocol server against real clients (the `mariadb`/`mysql`
//! CLI, PyMySQL, mysql-connector-python in pure mode with prepared
//! cursors) and against a raw socket that misbehaves, with a fake
//! in-memory [`Handler`]. A client that is not installed is skipped with a
//! printed note.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;
use sha1::{Digest, Sha1};
use strata_compute::mysql::{Handler, HandlerFactory, ServerConfig, serve};
use strata_compute::sql::{Column, FieldType, Output, Prepared, SqlError, flags};
use strata_compute::types::{Date, DateTime, Decimal, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- the fake

fn column(name: &str, field_type: FieldType, flags: u16) -> Column {
    let charset = match field_type {
        FieldType::VarString | FieldType::String => 45,
        _ => 63,
    };
    Column {
        db: "shop".into(),
        table: "items".into(),
        name: name.into(),
        charset,
        length: 20,
        field_type,
        flags,
        decimals: if field_type == FieldType::NewDecimal {
            2
        } else {
            0
        },
    }
}

fn datetime() -> DateTime {
    DateTime {
        date: Date {
            year: 2024,
            month: 2,
            day: 9,
        },
        hour: 1,
        minute: 2,
        second: 3,
        micros: 0,
    }
}

/// The fixed table every SELECT returns (a prepared SELECT returns it if
/// it names `items`, else echoes its parameters as a row).
fn items() -> Output {
    let columns = vec![
        column("id", FieldType::LongLong, flags::NOT_NULL | flags::PRI_KEY),
        column("name", FieldType::VarString, 0),
        column("price", FieldType::NewDecimal, 0),
        column("score", FieldType::Double, 0),
        column("born", FieldType::Date, 0),
        column("seen", FieldType::DateTime, 0),
        column("note", FieldType::VarString, 0),
        column("big", FieldType::LongLong, flags::UNSIGNED),
    ];
    let row = |id: i64, name: &str, cents: i128, note: Option<&str>| {
        vec![
            Value::Int(id),
            Value::Bytes(name.as_bytes().to_vec()),
            Value::Decimal(Decimal {
                mantissa: cents,
                scale: 2,
            }),
            Value::Double(1.5 * id as f64),
            Value::Date(datetime().date),
            Value::DateTime(datetime()),
            note.map_or(Value::Null, |n| Value::Bytes(n.as_bytes().to_vec())),
            Value::UInt(u64::MAX),
        ]
    };
    Output::Rows {
        columns,
        rows: vec![row(1, "widget", 999, None), row(2, "gädget", -5, Some("x"))],
    }
}

fn sql_error(code: u16, state: &str, message: &str) -> SqlError {
    SqlError {
        code,
        state: state.into(),
        message: message.into(),
    }
}

/// The column describing an echoed parameter.
fn echo_column(i: usize, v: &Value) -> Column {
    let name = format!("p{i}");
    match v {
        Value::Int(_) => column(&name, FieldType::LongLong, 0),
        Value::UInt(_) => column(&name, FieldType::LongLong, flags::UNSIGNED),
        Value::Double(_) => column(&name, FieldType::Double, 0),
        Value::Decimal(_) => column(&name, FieldType::NewDecimal, 0),
        Value::Date(_) => column(&name, FieldType::Date, 0),
        Value::DateTime(_) => column(&name, FieldType::DateTime, 0),
        Value::Bytes(_) | Value::Null => column(&name, FieldType::VarString, 0),
    }
}

#[derive(Default)]
struct Counters {
    made: AtomicUsize,
    dropped: AtomicUsize,
}

struct Fake {
    counters: Arc<Counters>,
    in_transaction: bool,
    statements: HashMap<u32, (String, u16)>,
    next_statement: u32,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.counters.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl Fake {
    fn run(&mut self, sql: &str) -> Result<Output, SqlError> {
        let upper = sql.trim().to_ascii_uppercase();
        if upper.starts_with("BAD") {
            return Err(sql_error(
                1064,
                "42000",
                "You have an error in your SQL syntax",
            ));
        }
        if upper.starts_with("PANIC") {
            panic!("the fake handler was asked to panic");
        }
        if upper.starts_with("SELECT") {
            return Ok(items());
        }
        if upper.starts_with("BEGIN") {
            self.in_transaction = true;
        } else if upper.starts_with("COMMIT") || upper.starts_with("ROLLBACK") {
            self.in_transaction = false;
        }
        let (affected_rows, last_insert_id) = if upper.starts_with("INSERT") {
            (3, 42)
        } else {
            (0, 0)
        };
        Ok(Output::Ok {
            affected_rows,
            last_insert_id,
            warnings: 0,
            info: String::new(),
        })
    }

    fn prepare_now(&mut self, sql: &str) -> Result<Prepared, SqlError> {
        if sql.trim().to_ascii_uppercase().starts_with("BAD") {
            return Err(sql_error(
                1064,
                "42000",
                "You have an error in your SQL syntax",
            ));
        }
        let params = sql.matches('?').count() as u16;
        self.next_statement += 1;
        let id = self.next_statement;
        self.statements.insert(id, (sql.to_string(), params));
        let upper = sql.trim().to_ascii_uppercase();
        let columns = if upper.contains("FROM ITEMS") {
            match items() {
                Output::Rows { columns, .. } => columns,
                Output::Ok { .. } => Vec::new(),
            }
        } else if upper.starts_with("SELECT") {
            (0..usize::from(params))
                .map(|i| echo_column(i, &Value::Null))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Prepared {
            id,
            params,
            columns,
        })
    }

    fn execute_now(&mut self, stmt: u32, params: Vec<Value>) -> Result<Output, SqlError> {
        let Some((sql, count)) = self.statements.get(&stmt) else {
            return Err(sql_error(1243, "HY000", "unknown statement"));
        };
        assert_eq!(
            params.len(),
            usize::from(*count),
            "the server decoded every parameter"
        );
        let upper = sql.trim().to_ascii_uppercase();
        if upper.starts_with("SELECT") && upper.contains("FROM ITEMS") {
            return Ok(items());
        }
        if !upper.starts_with("SELECT") {
            return Ok(Output::Ok {
                affected_rows: 1,
                last_insert_id: 7,
                warnings: 0,
                info: String::new(),
            });
        }
        let columns = params
            .iter()
            .enumerate()
            .map(|(i, v)| echo_column(i, v))
            .collect();
        Ok(Output::Rows {
            columns,
            rows: vec![params],
        })
    }
}

impl Handler for Fake {
    fn query<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<Output, SqlError>> {
        async move { self.run(sql) }.boxed()
    }

    fn prepare<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<Prepared, SqlError>> {
        async move { self.prepare_now(sql) }.boxed()
    }

    fn execute(
        &mut self,
        stmt: u32,
        params: Vec<Value>,
    ) -> BoxFuture<'_, Result<Output, SqlError>> {
        async move { self.execute_now(stmt, params) }.boxed()
    }

    fn close(&mut self, stmt: u32) {
        self.statements.remove(&stmt);
    }

    fn init_db<'a>(&'a mut self, db: &'a str) -> BoxFuture<'a, Result<(), SqlError>> {
        async move {
            if db == "shop" {
                Ok(())
            } else {
                Err(sql_error(
                    1049,
                    "42000",
                    &format!("Unknown database '{db}'"),
                ))
            }
        }
        .boxed()
    }

    fn field_list<'a>(
        &'a mut self,
        _table: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Column>, SqlError>> {
        async move {
            match items() {
                Output::Rows { columns, .. } => Ok(columns),
                Output::Ok { .. } => Ok(Vec::new()),
            }
        }
        .boxed()
    }

    fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    fn autocommit(&self) -> bool {
        true
    }
}

struct Factory {
    counters: Arc<Counters>,
}

impl HandlerFactory for Factory {
    type H = Fake;
    fn make(&self, _connection_id: u32) -> Fake {
        self.counters.made.fetch_add(1, Ordering::SeqCst);
        Fake {
            counters: Arc::clone(&self.counters),
            in_transaction: false,
            statements: HashMap::new(),
            next_statement: 0,
        }
    }
}

// ---------------------------------------------------------------- the server

struct Server {
    port: u16,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(password: Option<&str>) -> Server {
        Server::start_with(password, 1 << 20).await
    }

    async fn start_with(password: Option<&str>, max_allowed_packet: u32) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let counters = Arc::new(Counters::default());
        let factory = Arc::new(Factory {
            counters: Arc::clone(&counters),
        });
        let config = ServerConfig {
            root_password: password.map(str::to_string),
            server_version: "8.0.36-strata".into(),
            max_allowed_packet,
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, config, factory, shutdown.clone()));
        Server {
            port,
            counters,
            shutdown,
            task,
        }
    }

    /// Shuts down and waits for every connection to end.
    async fn stop(self) -> Arc<Counters> {
        self.shutdown.cancel();
        self.task.await.expect("serve task").expect("serve result");
        self.counters
    }
}

// ---------------------------------------------------------------- real clients

fn installed(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn cli() -> Option<&'static str> {
    ["mariadb", "mysql"]
        .into_iter()
        .find(|p| installed(p, &["--version"]))
}

struct CliOutput {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn run_cli(program: &str, port: u16, args: &[&str]) -> CliOutput {
    let out = tokio::process::Command::new(program)
        .args(["-h127.0.0.1", &format!("-P{port}"), "--protocol=TCP"])
        .args(["--batch", "--skip-column-names"])
        .args(args)
        .output()
        .await
        .expect("run the CLI");
    CliOutput {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cli() {
    let Some(cli) = cli() else {
        println!("NOTE: skipped: neither the mariadb nor the mysql CLI is installed");
        return;
    };
    let server = Server::start(None).await;
    let port = server.port;
    let out = run_cli(cli, port, &["-uroot", "-e", "select * from items"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "1\twidget\t9.99\t1.5\t2024-02-09\t2024-02-09 01:02:03\tNULL\t18446744073709551615\n\
         2\tgädget\t-0.05\t3\t2024-02-09\t2024-02-09 01:02:03\tx\t18446744073709551615\n"
    );
    let out = run_cli(
        cli,
        port,
        &["-uroot", "-vvv", "-e", "insert into items values (1)"],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("Query OK, 3 rows affected"),
        "{}",
        out.stdout
    );
    let out = run_cli(cli, port, &["-uroot", "-e", "BAD statement"]).await;
    assert!(!out.ok);
    assert!(out.stderr.contains("ERROR 1064 (42000)"), "{}", out.stderr);
    let out = run_cli(cli, port, &["-uroot", "-Dshop", "-e", "select 1"]).await;
    assert!(out.ok, "{}", out.stderr);
    let out = run_cli(cli, port, &["-uroot", "-Dnope", "-e", "select 1"]).await;
    assert!(out.stderr.contains("ERROR 1049 (42000)"), "{}", out.stderr);
    let out = run_cli(cli, port, &["-ubob", "-e", "select 1"]).await;
    assert!(
        out.stderr.contains(
            "ERROR 1045 (28000): Access denied for user 'bob'@'localhost' (using password: NO)"
        ),
        "{}",
        out.stderr
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cli_with_password() {
    let Some(cli) = cli() else {
        println!("NOTE: skipped: neither the mariadb nor the mysql CLI is installed");
        return;
    };
    let server = Server::start(Some("s3cret")).await;
    let port = server.port;
    let out = run_cli(
        cli,
        port,
        &["-uroot", "-ps3cret", "-e", "select id from items"],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.starts_with("1\twidget"), "{}", out.stdout);
    let out = run_cli(cli, port, &["-uroot", "-pwrong", "-e", "select 1"]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains(
            "ERROR 1045 (28000): Access denied for user 'root'@'localhost' (using password: YES)"
        ),
        "{}",
        out.stderr
    );
    let out = run_cli(cli, port, &["-uroot", "-e", "select 1"]).await;
    assert!(
        out.stderr.contains("(using password: NO)"),
        "{}",
        out.stderr
    );
    server.stop().await;
}

async fn run_python(dir: &Path, name: &str, script: &str, port: u16) -> (bool, String) {
    let path = dir.join(name);
    std::fs::write(&path, script).expect("write script");
    let out = tokio::process::Command::new("python3")
        .arg(&path)
        .arg(port.to_string())
        .output()
        .await
        .expect("run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const PYMYSQL_SCRIPT: &str = r#"
import sys, datetime, decimal, pymysql
port = int(sys.argv[1])
c = pymysql.connect(host="127.0.0.1", port=port, user="root", password="s3cret", database="shop")
cur = c.cursor()
assert cur.execute("SELECT * FROM items") == 2
rows = cur.fetchall()
dt = datetime.datetime(2024, 2, 9, 1, 2, 3)
assert rows == (
    (1, "widget", decimal.Decimal("9.99"), 1.5, dt.date(), dt, None, 2**64 - 1),
    (2, "gädget", decimal.Decimal("-0.05"), 3.0, dt.date(), dt, "x", 2**64 - 1),
), rows
assert [d[0] for d in cur.description] == ["id", "name", "price", "score", "born", "seen", "note", "big"]
assert cur.execute("INSERT INTO items VALUES (1)") == 3
assert cur.lastrowid == 42, cur.lastrowid
try:
    cur.execute("BAD statement")
    raise SystemExit("no error")
except pymysql.err.ProgrammingError as e:
    assert e.args[0] == 1064, e.args
cur.execute("BEGIN")
assert c.get_server_info() == "8.0.36-strata"
c.ping(reconnect=False)
c.select_db("shop")
try:
    c.select_db("nope")
    raise SystemExit("no error")
except pymysql.err.OperationalError as e:
    assert e.args[0] == 1049, e.args
assert cur.execute("SELECT 1") == 2
c.close()
for user, pw, code in [("root", "wrong", 1045), ("bob", "s3cret", 1045)]:
    try:
        pymysql.connect(host="127.0.0.1", port=port, user=user, password=pw)
        raise SystemExit("connected with a bad login")
    except pymysql.err.OperationalError as e:
        assert e.args[0] == code, e.args
print("PYMYSQL OK")
"#;

const CONNECTOR_SCRIPT: &str = r#"
import sys, datetime, decimal
import mysql.connector
port = int(sys.argv[1])
def connect(**kw):
    args = dict(host="127.0.0.1", port=port, user="root", password="s3cret", use_pure=True)
    args.update(kw)
    return mysql.connector.connect(**args)
for plugin in ["mysql_native_password", "caching_sha2_password"]:
    c = connect(auth_plugin=plugin, database="shop")
    cur = c.cursor(prepared=True)
    dt = datetime.datetime(2024, 2, 9, 1, 2, 3)
    params = (5, -7, "héllo", 2.5, None, dt, dt.date(), 2**64 - 1)
    cur.execute("SELECT ?, ?, ?, ?, ?, ?, ?, ?", params)
    row = cur.fetchall()
    assert [tuple(r) for r in row] == [params], row
    # The same statement again, different values.
    params2 = (6, 0, "", -0.25, "x", dt, dt.date(), 1)
    cur.execute("SELECT ?, ?, ?, ?, ?, ?, ?, ?", params2)
    assert [tuple(r) for r in cur.fetchall()] == [params2]
    cur.execute("SELECT * FROM items WHERE id > ?", (0,))
    rows = cur.fetchall()
    assert [tuple(r) for r in rows] == [
        (1, "widget", decimal.Decimal("9.99"), 1.5, dt.date(), dt, None, 2**64 - 1),
        (2, "gädget", decimal.Decimal("-0.05"), 3.0, dt.date(), dt, "x", 2**64 - 1),
    ], rows
    cur.execute("INSERT INTO items VALUES (?, ?)", (1, "a"))
    assert cur.rowcount == 1, cur.rowcount
    assert cur.lastrowid == 7, cur.lastrowid
    try:
        cur.execute("BAD ?", (1,))
        raise SystemExit("no error")
    except mysql.connector.Error as e:
        assert e.errno == 1064, e
    text = c.cursor()
    text.execute("SELECT * FROM items")
    assert len(text.fetchall()) == 2
    c.close()
    try:
        connect(auth_plugin=plugin, password="wrong")
        raise SystemExit("connected with a wrong password")
    except mysql.connector.Error as e:
        assert e.errno == 1045, e
print("CONNECTOR OK")
"#;

async fn python_client(module: &str, name: &str, script: &str) {
    if !installed("python3", &["-c", &format!("import {module}")]) {
        println!("NOTE: skipped: python3 module {module} is not installed");
        return;
    }
    let server = Server::start(Some("s3cret")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, out) = run_python(dir.path(), name, script, server.port).await;
    assert!(ok, "{out}");
    assert!(out.contains(" OK"), "{out}");
    let counters = server.stop().await;
    assert_eq!(
        counters.made.load(Ordering::SeqCst),
        counters.dropped.load(Ordering::SeqCst),
        "every session is dropped when its connection ends"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_text_protocol() {
    python_client("pymysql", "pymysql_check.py", PYMYSQL_SCRIPT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_connector_binary_protocol() {
    python_client("mysql.connector", "connector_check.py", CONNECTOR_SCRIPT).await;
}

// ---------------------------------------------------------------- raw sockets

const CLIENT_BASE: u32 = 0x200 | 0x8000 | 0x8_0000 | 0x20_0000;

struct Raw {
    stream: TcpStream,
    /// The scramble from the greeting.
    scramble: Vec<u8>,
    connection_id: u32,
}

impl Raw {
    /// Connects and reads the greeting.
    async fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut raw = Raw {
            stream,
            scramble: Vec::new(),
            connection_id: 0,
        };
        let (seq, g) = raw.read().await.expect("greeting");
        assert_eq!((seq, g[0]), (0, 10));
        let version_end = g.iter().position(|b| *b == 0).expect("version");
        assert_eq!(&g[1..version_end], b"8.0.36-strata");
        let rest = &g[version_end + 1..];
        raw.connection_id = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
        raw.scramble = rest[4..12].to_vec();
        raw.scramble
            .extend_from_slice(&rest[4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10..][..12]);
        raw
    }

    /// Connects and logs in as root with `auth` under `plugin`.
    async fn login(port: u16, auth: &[u8], plugin: &str) -> Raw {
        Raw::login_with(port, CLIENT_BASE, auth, plugin).await
    }

    async fn login_with(port: u16, caps: u32, auth: &[u8], plugin: &str) -> Raw {
        let mut raw = Raw::connect(port).await;
        raw.send_login(caps, "root", auth, plugin).await;
        let (_, ok) = raw.read().await.expect("login answer");
        assert_eq!(ok[0], 0, "login failed: {ok:?}");
        raw
    }

    async fn send_login(&mut self, caps: u32, user: &str, auth: &[u8], plugin: &str) {
        let mut p = caps.to_le_bytes().to_vec();
        p.extend_from_slice(&(1u32 << 24).to_le_bytes());
        p.push(45);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        p.push(auth.len() as u8);
        p.extend_from_slice(auth);
        p.extend_from_slice(plugin.as_bytes());
        p.push(0);
        self.write(1, &p).await;
    }

    async fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header).await.ok()?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).await.ok()?;
        Some((header[3], payload))
    }

    async fn write(&mut self, seq: u8, payload: &[u8]) {
        let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        p.push(seq);
        p.extend_from_slice(payload);
        self.stream.write_all(&p).await.expect("write");
    }

    /// Sends a command (sequence 0) and reads the first answer packet.
    async fn command(&mut self, payload: &[u8]) -> Vec<u8> {
        self.write(0, payload).await;
        self.read().await.expect("an answer").1
    }

    async fn query(&mut self, sql: &str) -> Vec<u8> {
        let mut p = vec![0x03];
        p.extend_from_slice(sql.as_bytes());
        self.command(&p).await
    }

    /// Reads `n` packets.
    async fn packets(&mut self, n: usize) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        for _ in 0..n {
            packets.push(self.read().await.expect("a packet").1);
        }
        packets
    }

    /// Reads packets up to and including the next EOF.
    async fn until_eof(&mut self) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        loop {
            let (_, p) = self.read().await.expect("a packet");
            let eof = p[0] == 0xFE && p.len() < 9;
            packets.push(p);
            if eof {
                return packets;
            }
        }
    }

    /// The connection was closed by the server.
    async fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte).await, Ok(0) | Err(_))
    }
}

fn err_code(p: &[u8]) -> u16 {
    assert_eq!(p[0], 0xFF, "not an error: {p:?}");
    u16::from_le_bytes([p[1], p[2]])
}

/// OK packet: (affected rows, last insert id, status), for one-byte ints.
fn ok_fields(p: &[u8]) -> (u8, u8, u16) {
    assert_eq!(p[0], 0, "not an OK: {p:?}");
    (p[1], p[2], u16::from_le_bytes([p[3], p[4]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_are_disconnected_and_others_go_on() {
    let server = Server::start(None).await;
    let port = server.port;
    let mut good = Raw::login(port, b"", "mysql_native_password").await;
    assert_eq!(good.connection_id, 1, "ids start at 1");

    let mut malformed = Raw::login(port, b"", "mysql_native_password").await;
    assert_eq!(malformed.connection_id, 2);
    assert_eq!(err_code(&malformed.command(&[0x17, 1, 0]).await), 1835);
    assert!(malformed.closed().await);

    let mut oversized = Raw::login(port, b"", "mysql_native_password").await;
    let mut header = (2u32 << 20).to_le_bytes()[..3].to_vec();
    header.extend_from_slice(&[0, 0x03, b'x', b'y']);
    oversized.stream.write_all(&header).await.expect("write");
    let (_, answer) = oversized.read().await.expect("an error");
    assert_eq!(err_code(&answer), 1153);
    assert!(oversized.closed().await);

    let mut out_of_order = Raw::login(port, b"", "mysql_native_password").await;
    out_of_order.write(5, &[0x0E]).await;
    let (_, answer) = out_of_order.read().await.expect("an error");
    assert_eq!(err_code(&answer), 1156);
    assert!(out_of_order.closed().await);

    let mut garbage = Raw::connect(port).await;
    garbage.write(1, &[1, 2, 3]).await;
    let (_, answer) = garbage.read().await.expect("an error");
    assert_eq!(err_code(&answer), 1043);
    assert!(garbage.closed().await);

    let mut panicky = Raw::login(port, b"", "mysql_native_password").await;
    panicky.write(0, b"\x03PANIC now").await;
    assert!(panicky.closed().await);

    // The first connection never noticed.
    assert_eq!(err_code(&good.command(&[0x50]).await), 1047);
    assert_eq!(ok_fields(&good.command(&[0x0E]).await), (0, 0, 0x0002));
    assert_eq!(
        ok_fields(&good.query("INSERT INTO t VALUES (1)").await),
        (3, 42, 0x0002)
    );
    assert_eq!(ok_fields(&good.query("BEGIN").await), (0, 0, 0x0003));
    assert_eq!(err_code(&good.query("BAD").await), 1064);

    assert_eq!(good.query("SELECT * FROM items").await, [8]);
    let packets = good.until_eof().await;
    assert_eq!(packets.len(), 9, "eight column definitions and an EOF");
    assert!(packets[0].starts_with(b"\x03def\x04shop\x05items\x05items\x02id\x02id\x0c"));
    let rows = good.until_eof().await;
    assert_eq!(rows.len(), 3, "two rows and an EOF");
    assert!(rows[0].starts_with(b"\x011\x06widget\x049.99\x031.5"));
    assert!(rows[0].ends_with(b"\xFB\x1418446744073709551615"));

    let counters = server.stop().await;
    assert_eq!(counters.made.load(Ordering::SeqCst), 6);
    assert_eq!(counters.dropped.load(Ordering::SeqCst), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_prepared_statements_and_session_commands() {
    let server = Server::start(None).await;
    let mut c = Raw::login(server.port, b"", "mysql_native_password").await;

    let prep = c.command(b"\x16SELECT ?").await;
    assert_eq!(prep[0], 0);
    let id = u32::from_le_bytes(prep[1..5].try_into().expect("4 bytes"));
    assert_eq!(&prep[5..9], &[1, 0, 1, 0], "one column, one parameter");
    assert_eq!(c.until_eof().await.len(), 2, "parameter definition and EOF");
    assert_eq!(c.until_eof().await.len(), 2, "column definition and EOF");

    // Long data supplies the parameter; no answer to SEND_LONG_DATA.
    for part in [&b"hello "[..], b"world"] {
        let mut p = vec![0x18];
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        p.extend_from_slice(part);
        c.write(0, &p).await;
    }
    let mut exec = vec![0x17];
    exec.extend_from_slice(&id.to_le_bytes());
    exec.extend_from_slice(&[0, 1, 0, 0, 0, 0b0, 1, 0xFC, 0]);
    assert_eq!(c.command(&exec).await, [1]);
    assert_eq!(c.until_eof().await.len(), 2);
    let rows = c.until_eof().await;
    assert_eq!(rows[0], b"\x00\x00\x0bhello world");

    // Without new types, the last ones apply; a NULL parameter.
    let mut exec = vec![0x17];
    exec.extend_from_slice(&id.to_le_bytes());
    exec.extend_from_slice(&[0, 1, 0, 0, 0, 0b1, 0]);
    assert_eq!(c.command(&exec).await, [1]);
    c.until_eof().await;
    assert_eq!(c.until_eof().await[0], [0x00, 0b100]);

    let mut reset = vec![0x1A];
    reset.extend_from_slice(&id.to_le_bytes());
    assert_eq!(ok_fields(&c.command(&reset).await).0, 0);
    let mut close = vec![0x19];
    close.extend_from_slice(&id.to_le_bytes());
    c.write(0, &close).await;
    let mut exec = vec![0x17];
    exec.extend_from_slice(&id.to_le_bytes());
    exec.extend_from_slice(&[0, 1, 0, 0, 0]);
    assert_eq!(err_code(&c.command(&exec).await), 1243);

    c.write(0, b"\x04items\0").await;
    let fields = c.until_eof().await;
    assert_eq!(fields.len(), 9);
    assert!(
        fields[0].ends_with(&[0xFB]),
        "COM_FIELD_LIST adds a default value"
    );

    assert_eq!(err_code(&c.command(b"\x02nope").await), 1049);
    assert_eq!(ok_fields(&c.command(b"\x02shop").await).0, 0);
    assert_eq!(ok_fields(&c.query("BEGIN").await).2, 0x0003);
    assert_eq!(
        ok_fields(&c.command(&[0x1F]).await).2,
        0x0002,
        "a fresh session"
    );
    let counters = server.stop().await;
    assert_eq!(counters.made.load(Ordering::SeqCst), 2);
    assert_eq!(counters.dropped.load(Ordering::SeqCst), 2);
}

fn native_answer(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    let h1 = Sha1::digest(password);
    let h2 = Sha1::digest(h1);
    let h3 = Sha1::new()
        .chain_update(scramble)
        .chain_update(h2)
        .finalize();
    h1.iter().zip(h3).map(|(a, b)| a ^ b).collect()
}

fn caching_sha2_answer(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    use sha2::Sha256;
    let h1 = Sha256::digest(password);
    let h2 = Sha256::digest(h1);
    let h3 = Sha256::new()
        .chain_update(h2)
        .chain_update(scramble)
        .finalize();
    h1.iter().zip(h3).map(|(a, b)| a ^ b).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_paths() {
    let server = Server::start(Some("pw")).await;
    let port = server.port;

    let mut c = Raw::connect(port).await;
    let answer = native_answer(b"pw", &c.scramble);
    c.send_login(CLIENT_BASE, "root", &answer, "mysql_native_password")
        .await;
    assert_eq!(c.read().await.expect("ok"), (2, vec![0, 0, 0, 2, 0, 0, 0]));

    let mut c = Raw::connect(port).await;
    let answer = caching_sha2_answer(b"pw", &c.scramble);
    c.send_login(CLIENT_BASE, "root", &answer, "caching_sha2_password")
        .await;
    assert_eq!(c.read().await.expect("fast auth"), (2, vec![1, 3]));
    assert_eq!(c.read().await.expect("ok").1[0], 0);

    let mut c = Raw::connect(port).await;
    c.send_login(CLIENT_BASE, "root", b"whatever", "sha256_password")
        .await;
    let (seq, switch) = c.read().await.expect("auth switch");
    assert_eq!(seq, 2);
    assert!(switch.starts_with(b"\xFEmysql_native_password\0"));
    assert_eq!(&switch[23..43], &c.scramble[..]);
    let answer = native_answer(b"pw", &c.scramble);
    c.write(3, &answer).await;
    assert_eq!(c.read().await.expect("ok").1[0], 0);

    let mut c = Raw::connect(port).await;
    let answer = native_answer(b"nope", &c.scramble);
    c.send_login(CLIENT_BASE, "root", &answer, "mysql_native_password")
        .await;
    assert_eq!(err_code(&c.read().await.expect("denied").1), 1045);
    assert!(c.closed().await);

    let mut c = Raw::connect(port).await;
    c.send_login(CLIENT_BASE, "root", b"", "mysql_native_password")
        .await;
    let denied = c.read().await.expect("denied").1;
    assert_eq!(err_code(&denied), 1045);
    assert!(denied.ends_with(b"(using password: NO)"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections() {
    let server = Server::start(None).await;
    let port = server.port;
    let mut idle = Raw::login(port, b"", "mysql_native_password").await;
    let counters = server.stop().await;
    assert!(idle.closed().await);
    assert_eq!(counters.dropped.load(Ordering::SeqCst), 1);
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecate_eof_replaces_eof_packets() {
    const CLIENT_DEPRECATE_EOF: u32 = 0x100_0000;
    let server = Server::start(None).await;
    let caps = CLIENT_BASE | CLIENT_DEPRECATE_EOF;
    let mut c = Raw::login_with(server.port, caps, b"", "mysql_native_password").await;
    assert_eq!(ok_fields(&c.query("BEGIN").await).2, 0x0003);

    assert_eq!(c.query("SELECT * FROM items").await, [8]);
    let packets = c.packets(8 + 2 + 1).await;
    assert!(packets[..8].iter().all(|p| p.starts_with(b"\x03def")));
    assert!(packets[8].starts_with(b"\x011\x06widget"));
    assert!(packets[9].starts_with(b"\x012\x07g"));
    assert_eq!(
        packets[10],
        [0xFE, 0, 0, 3, 0, 0, 0],
        "OK with the 0xFE header"
    );

    let prep = c.command(b"\x16SELECT * FROM items WHERE id = ?").await;
    assert_eq!(&prep[5..9], &[8, 0, 1, 0]);
    let defs = c.packets(1 + 8).await;
    assert!(
        defs.iter().all(|p| p.starts_with(b"\x03def")),
        "no EOF between"
    );
    let mut exec = vec![0x17];
    exec.extend_from_slice(&prep[1..5]);
    exec.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, 0x08, 0]);
    exec.extend_from_slice(&1i64.to_le_bytes());
    assert_eq!(c.command(&exec).await, [8]);
    let packets = c.packets(8 + 2 + 1).await;
    assert!(packets[7].starts_with(b"\x03def"));
    assert_eq!(
        packets[8][..3],
        [0, 0b0000_0000, 0b0000_0001],
        "NULL note at bit 8"
    );
    assert_eq!(packets[8][3..11], 1i64.to_le_bytes());
    assert_eq!(packets[10], [0xFE, 0, 0, 3, 0, 0, 0]);

    c.write(0, b"\x04items\0").await;
    let fields = c.packets(9).await;
    assert_eq!(fields[8], [0xFE, 0, 0, 3, 0, 0, 0]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_16_mib_arrives_in_two_fragments() {
    let server = Server::start_with(None, 40 << 20).await;
    let mut c = Raw::login(server.port, b"", "mysql_native_password").await;
    let mut payload = b"\x03INSERT ".to_vec();
    payload.resize(0xFF_FFFF + 100, b'x');
    let mut framed = vec![0xFF, 0xFF, 0xFF, 0];
    framed.extend_from_slice(&payload[..0xFF_FFFF]);
    framed.extend_from_slice(&[100, 0, 0, 1]);
    framed.extend_from_slice(&payload[0xFF_FFFF..]);
    c.stream.write_all(&framed).await.expect("write");
    let (seq, ok) = c.read().await.expect("an answer");
    assert_eq!(seq, 2, "the answer follows both fragments");
    assert_eq!(ok_fields(&ok), (3, 42, 0x0002));
    server.stop().await;
}
