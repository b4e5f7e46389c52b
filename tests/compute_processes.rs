//! A multi-process deployment: three `strata logservice` processes, a
//! `strata pageserver` and a `strata compute`, each its own process, with
//! the `mariadb` CLI as the client; the compute node starts before the page
//! server and waits for it. The compute process is SIGKILLed and a
//! new one started: it takes over the log (a new term) and every
//! acknowledged commit is there.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

const CLUSTER: &str = "compute-proc-test";

fn cli(port: u16, sql: &str) -> Output {
    Command::new("mariadb")
        .args(["-h127.0.0.1", "-uroot", "-N", "-B", "--connect-timeout=5"])
        .arg(format!("-P{port}"))
        .args(["-e", sql])
        .output()
        .expect("the mariadb client (apt install mariadb-client) runs")
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !cli(port, "SELECT 1").status.success() {
        assert!(Instant::now() < deadline, "strata compute does not answer");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rows(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn each_role_in_its_own_process_and_a_killed_compute_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let log_ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let mut logs: Vec<_> = (1..=3)
        .map(|id| common::log_replica(CLUSTER, dir.path(), id, &log_ports))
        .collect();
    for l in &mut logs {
        l.start();
    }
    let log = log_ports
        .iter()
        .map(|p| common::endpoint(*p))
        .collect::<Vec<_>>()
        .join(",");
    let ps_port = common::free_port();
    let mut ps = common::Process::new(vec![
        "pageserver".into(),
        "--cluster-id".into(),
        CLUSTER.into(),
        "--listen".into(),
        format!("127.0.0.1:{ps_port}"),
        "--data-dir".into(),
        dir.path().join("pageserver").display().to_string(),
        "--log".into(),
        log.clone(),
    ]);
    let mysql_port = common::free_port();
    let mut compute = common::Process::new(vec![
        "compute".into(),
        "--cluster-id".into(),
        CLUSTER.into(),
        "--listen".into(),
        format!("127.0.0.1:{mysql_port}"),
        "--log".into(),
        log,
        "--pageserver".into(),
        common::endpoint(ps_port),
    ]);
    // The compute node starts before the page server: it waits for it.
    compute.start();
    std::thread::sleep(Duration::from_millis(500));
    ps.start();
    wait_ready(mysql_port);
    rows(cli(
        mysql_port,
        "CREATE DATABASE d; CREATE TABLE d.t (k INT PRIMARY KEY, v VARCHAR(8)); \
         INSERT INTO d.t VALUES (1, 'one'), (2, 'two')",
    ));
    rows(cli(mysql_port, "UPDATE d.t SET v = 'TWO' WHERE k = 2"));

    compute.kill();
    compute.start();
    wait_ready(mysql_port);
    assert_eq!(
        rows(cli(mysql_port, "SELECT k, v FROM d.t ORDER BY k")),
        "1\tone\n2\tTWO\n"
    );
    rows(cli(mysql_port, "INSERT INTO d.t VALUES (3, 'three')"));
    assert_eq!(rows(cli(mysql_port, "SELECT COUNT(*) FROM d.t")), "3\n");
    compute.terminate();
    ps.terminate();
    for l in &mut logs {
        l.terminate();
    }
}
