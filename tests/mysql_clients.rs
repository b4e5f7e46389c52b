//! Real MySQL clients against `strata up`: the Debian `mariadb` CLI,
//! PyMySQL (text protocol), mysql-connector-python with `use_pure=True`
//! and prepared cursors (binary protocol), and SQLAlchemy's ORM over PyMySQL
//! (models, create_all, a migration, reflection). Then SIGKILL and restart keep
//! every acknowledged commit, and SIGTERM stops cleanly and keeps them too.
//!
//! The clients are installed by `.ci/run` (apt `mariadb-client`, pip
//! `pymysql mysql-connector-python sqlalchemy`).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `sql` with the `mariadb` CLI (batch mode, no column names).
fn cli(port: u16, password: Option<&str>, sql: &str) -> Output {
    let mut cmd = Command::new("mariadb");
    cmd.args(["-h127.0.0.1", "-uroot", "-N", "-B", "--connect-timeout=5"])
        .arg(format!("-P{port}"));
    if let Some(p) = password {
        cmd.arg(format!("-p{p}"));
    }
    cmd.args(["-e", sql])
        .output()
        .expect("the mariadb client (apt install mariadb-client) runs")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "mariadb failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Waits until the server answers a query.
fn wait_ready(port: u16, password: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let o = cli(port, password, "SELECT 1");
        if o.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "strata up does not answer: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs one of the Python client scripts; it prints "ok".
fn python(script: &str, port: u16, password: Option<&str>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let mut cmd = Command::new("python3");
    cmd.arg(&path).arg(port.to_string());
    if let Some(p) = password {
        cmd.arg(p);
    }
    let o = cmd.output().expect("python3 runs");
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "ok",
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn real_clients_work_and_commits_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut server = common::up(dir.path(), port, None);
    wait_ready(port, None);

    let o = cli(
        port,
        None,
        "CREATE DATABASE cli; CREATE TABLE cli.t (a INT PRIMARY KEY, b VARCHAR(10)); \
         INSERT INTO cli.t VALUES (1, 'x'), (2, NULL), (3, 'z'); \
         SELECT a, b FROM cli.t WHERE a >= 2 ORDER BY a DESC",
    );
    assert_eq!(stdout(&o), "3\tz\n2\tNULL\n");
    let o = cli(port, None, "SELECT * FROM cli.nosuch");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ERROR 1146"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = cli(port, None, "SELECT @@version_comment, @@autocommit");
    assert_eq!(stdout(&o), "Strata\t1\n");

    python("pymysql_check.py", port, None);
    python("connector_check.py", port, None);
    python("sqlalchemy_check.py", port, None);

    // SIGKILL, restart: every acknowledged commit is there.
    server.kill();
    let mut server = common::up(dir.path(), port, None);
    wait_ready(port, None);
    let o = cli(port, None, "SELECT a, b FROM cli.t ORDER BY a");
    assert_eq!(stdout(&o), "1\tx\n2\tNULL\n3\tz\n");
    let o = cli(port, None, "SELECT id, score FROM pyt.t");
    assert_eq!(stdout(&o), "1\t3.00\n");
    let o = cli(port, None, "SELECT COUNT(*) FROM conn.items");
    assert_eq!(stdout(&o), "3\n");
    cli(port, None, "INSERT INTO cli.t VALUES (4, 'after')");

    // SIGTERM: a clean stop (exit 0), and everything is there again.
    server.terminate();
    let mut server = common::up(dir.path(), port, None);
    wait_ready(port, None);
    let o = cli(port, None, "SELECT a FROM cli.t ORDER BY a");
    assert_eq!(stdout(&o), "1\n2\n3\n4\n");
    server.terminate();
}

#[test]
fn a_root_password_is_asked_for_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut server = common::up(dir.path(), port, Some("s3cret"));
    wait_ready(port, Some("s3cret"));
    let o = cli(port, None, "SELECT 1");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ERROR 1045"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = cli(port, Some("wrong"), "SELECT 1");
    assert!(String::from_utf8_lossy(&o.stderr).contains("ERROR 1045"));
    python("pymysql_check.py", port, Some("s3cret"));
    server.terminate();
}
