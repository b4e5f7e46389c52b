//! The SQL surface, file by file: every `tests/slt/**/*.slt` runs through
//! the `sqllogictest` runner against one real `strata up` process over the
//! MySQL protocol (the `mysql_async` driver, text protocol).
//!
//! Each file gets a database of its own (`slt_<file stem>`), created fresh
//! and made current, so files are independent. `STRATA_SLT=substring` runs
//! only the files whose path contains it.
//!
//! Values print as the `mysql` CLI shows them: NULL as `NULL`, an empty
//! string as `(empty)` (sqllogictest's convention), everything else as the
//! text the server sent.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

struct Strata {
    conn: mysql_async::Conn,
}

#[async_trait::async_trait]
impl AsyncDB for Strata {
    type Error = mysql_async::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let mut result = self.conn.query_iter(sql).await?;
        let columns = result.columns();
        let Some(columns) = columns.filter(|c| !c.is_empty()) else {
            let affected = result.affected_rows();
            result.drop_result().await?;
            return Ok(DBOutput::StatementComplete(affected));
        };
        let types = columns
            .iter()
            .map(|c| column_type(c.column_type()))
            .collect();
        let rows: Vec<mysql_async::Row> = result.collect().await?;
        let rows = rows
            .into_iter()
            .map(|row| (0..row.len()).map(|i| text(row.as_ref(i))).collect())
            .collect();
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "strata"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await
    }
}

fn column_type(t: mysql_async::consts::ColumnType) -> DefaultColumnType {
    use mysql_async::consts::ColumnType::*;
    match t {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
        | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_YEAR => DefaultColumnType::Integer,
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE | MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => {
            DefaultColumnType::FloatingPoint
        }
        _ => DefaultColumnType::Text,
    }
}

fn text(v: Option<&mysql_async::Value>) -> String {
    match v {
        None | Some(mysql_async::Value::NULL) => "NULL".into(),
        Some(mysql_async::Value::Bytes(b)) if b.is_empty() => "(empty)".into(),
        Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(other) => other.as_sql(true).trim_matches('\'').to_string(),
    }
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            slt_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "slt") {
            out.push(p);
        }
    }
}

fn opts(port: u16, db: Option<&str>) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .db_name(db)
        .prefer_socket(false)
        .into()
}

async fn connect_when_ready(port: u16) -> mysql_async::Conn {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match mysql_async::Conn::new(opts(port, None)).await {
            Ok(c) => return c,
            Err(e) => assert!(Instant::now() < deadline, "strata up does not answer: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files_pass_against_strata_up() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    if let Ok(filter) = std::env::var("STRATA_SLT") {
        files.retain(|f| f.display().to_string().contains(&filter));
    }
    assert!(!files.is_empty(), "no .slt files under {}", root.display());

    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut server = common::up(dir.path(), port, None);
    let mut admin = connect_when_ready(port).await;

    let mut failures = Vec::new();
    for file in &files {
        let stem = file
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .replace('-', "_");
        let db = format!("slt_{stem}");
        admin
            .query_drop(format!("DROP DATABASE IF EXISTS {db}"))
            .await
            .unwrap();
        admin
            .query_drop(format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
        let mut runner = sqllogictest::Runner::new(|| {
            let db = db.clone();
            async move {
                let conn = mysql_async::Conn::new(opts(port, Some(&db))).await?;
                Ok(Strata { conn })
            }
        });
        if let Err(e) = runner.run_file_async(file).await {
            eprintln!("{}\n{e}\n", file.display());
            failures.push(file.display().to_string());
        }
    }
    server.terminate();
    assert!(failures.is_empty(), "failing .slt files: {failures:?}");
}
