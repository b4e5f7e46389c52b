//! sysbench `oltp_read_write` against `strata up`, unmodified: prepare, then
//! 30 s with 8 threads and `--db-ps-mode=auto` (server-side prepared
//! statements). sysbench stops at the first error it does not ignore; the
//! errors it ignores by default are deadlocks and lock-wait timeouts, which
//! it retries. sysbench is installed by `.ci/run` (apt `sysbench`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

fn sysbench(port: u16, phase: &str, extra: &[&str]) -> String {
    let o = Command::new("sysbench")
        .args([
            "oltp_read_write",
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={port}"),
            "--mysql-user=root",
            "--mysql-db=sbtest",
            "--tables=2",
            "--table-size=10000",
            "--db-ps-mode=auto",
        ])
        .args(extra)
        .arg(phase)
        .output()
        .expect("sysbench (apt install sysbench) runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "sysbench {phase} failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The number after `label` on its line of sysbench's report.
fn figure(report: &str, label: &str) -> f64 {
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} in the report:\n{report}"));
    line[line.find(label).unwrap() + label.len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

#[test]
fn sysbench_oltp_read_write_runs_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut server = common::up(dir.path(), port, None);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let o = Command::new("mariadb")
            .args(["-h127.0.0.1", "-uroot", &format!("-P{port}")])
            .args(["-e", "CREATE DATABASE sbtest"])
            .output()
            .expect("the mariadb client runs");
        if o.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "strata up does not answer");
        std::thread::sleep(Duration::from_millis(200));
    }
    sysbench(port, "prepare", &[]);
    let report = sysbench(port, "run", &["--threads=8", "--time=30"]);
    let transactions = figure(&report, "transactions:");
    assert!(transactions > 0.0, "no transaction ran:\n{report}");
    assert_eq!(figure(&report, "reconnects:"), 0.0, "{report}");
    // Ignored errors are retried deadlocks/lock waits; anything else has
    // already failed the run above.
    println!("{report}");
    server.terminate();
}
