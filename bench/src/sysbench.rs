//! The `sysbench` workload: unmodified sysbench OLTP scripts against Strata
//! and against MariaDB from Debian's packages, on the same machine in the
//! same run, interleaved.
//!
//! Strata runs as `strata up` does — three log replicas, a page server and
//! a compute node serving MySQL — in this process (the same code, without
//! a second binary to build). MariaDB runs as a `mariadbd` child process
//! on a fresh data directory with durable settings
//! (`innodb_flush_log_at_trx_commit=1`, `sync_binlog` off as there is no
//! binlog, a 2 GiB buffer pool), authentication off.
//!
//! For each workload and thread count, each system runs once, one after
//! the other, after waiting (bounded) for the 1-minute load average to fall
//! below `--quiet-load`. The report gives transactions/s for both and the
//! ratio Strata/MariaDB; the last line is
//! `RESULT point_select_ratio=… read_only_ratio=… write_only_ratio=…
//! read_write_ratio=… insert_ratio=… update_index_ratio=…` (16 threads).
//!
//! Needs `sysbench` and `mariadb-server` (apt).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use strata_compute::embedded::StorageCluster;
use strata_compute::server::{ComputeConfig, serve_on};
use tokio_util::sync::CancellationToken;

use crate::report::Table;
use crate::watchdog::Watchdog;

const WORKLOADS: [(&str, &str); 6] = [
    ("point_select", "oltp_point_select"),
    ("read_only", "oltp_read_only"),
    ("write_only", "oltp_write_only"),
    ("read_write", "oltp_read_write"),
    ("insert", "oltp_insert"),
    ("update_index", "oltp_update_index"),
];

#[derive(clap::Args, Clone, Debug)]
pub struct SysbenchArgs {
    /// Tables per database.
    #[arg(long, default_value_t = 4)]
    pub tables: u32,
    /// Rows per table.
    #[arg(long, default_value_t = 100_000)]
    pub table_size: u64,
    /// Seconds per run.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Thread counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub threads: Vec<u32>,
    /// Wait before each run until the 1-minute load average is below this
    /// (at most a minute).
    #[arg(long, default_value_t = 1.5)]
    pub quiet_load: f64,
}

pub fn run(args: &SysbenchArgs, dir: &Path) -> anyhow::Result<()> {
    let _watchdog = Watchdog::arm(
        Duration::from_secs(4 * 3600),
        "the sysbench workload".into(),
    );
    for tool in ["sysbench", "mariadbd", "mariadb-install-db"] {
        if which(tool).is_none() {
            bail!("{tool} is not installed (apt install sysbench mariadb-server)");
        }
    }
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    // Strata, embedded as `strata up` runs it.
    let strata_port = free_port()?;
    let stop = CancellationToken::new();
    let cluster = runtime.block_on(StorageCluster::start(&dir.join("strata"), "sysbench"))?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", strata_port)))?;
    let config = ComputeConfig::new(cluster.engine_config(), listener.local_addr()?);
    let compute = runtime.spawn(serve_on(listener, config, stop.clone()));
    let maria_port = free_port()?;
    let mut maria = MariaDb::start(&dir.join("mariadb"), maria_port)?;
    let systems = [("strata", strata_port), ("mariadb", maria_port)];
    for (name, port) in systems {
        wait_ready(port).with_context(|| format!("{name} does not answer"))?;
        client(port, "CREATE DATABASE IF NOT EXISTS sbtest")?;
        println!(
            "{name}: preparing {} tables of {} rows ...",
            args.tables, args.table_size
        );
        let t = Instant::now();
        sysbench(port, "oltp_read_write", args, 16, &["prepare"])?;
        println!("  {:.0} s", t.elapsed().as_secs_f64());
    }
    let mut tps: HashMap<(&str, u32, &str), f64> = HashMap::new();
    let mut table = Table::new(&[
        "workload",
        "threads",
        "Strata tx/s",
        "MariaDB tx/s",
        "ratio",
    ]);
    for (short, script) in WORKLOADS {
        for &threads in &args.threads {
            for (name, port) in systems {
                wait_quiet(args.quiet_load);
                let time = format!("--time={}", args.seconds);
                let report = sysbench(port, script, args, threads, &[&time, "run"])?;
                tps.insert((short, threads, name), per_sec(&report, "transactions:")?);
            }
            let (s, m) = (
                tps[&(short, threads, "strata")],
                tps[&(short, threads, "mariadb")],
            );
            // One line per pair as it is measured, so a long run shows
            // progress (the table at the end repeats them).
            println!(
                "  {short} {threads} threads: strata {s:.0} tx/s, mariadb {m:.0} tx/s, ratio {:.2}",
                s / m
            );
            table.row(vec![
                short.into(),
                threads.to_string(),
                format!("{s:.0}"),
                format!("{m:.0}"),
                format!("{:.2}", s / m),
            ]);
        }
    }
    table.print();
    stop.cancel();
    let _ = runtime.block_on(compute);
    runtime.block_on(cluster.stop())?;
    maria.stop();
    let top = *args
        .threads
        .iter()
        .max()
        .expect("at least one thread count");
    let ratios: Vec<String> = WORKLOADS
        .iter()
        .map(|(short, _)| {
            let r = tps[&(*short, top, "strata")] / tps[&(*short, top, "mariadb")];
            format!("{short}_ratio={r:.2}")
        })
        .collect();
    println!("RESULT {}", ratios.join(" "));
    Ok(())
}

fn sysbench(
    port: u16,
    script: &str,
    args: &SysbenchArgs,
    threads: u32,
    tail: &[&str],
) -> anyhow::Result<String> {
    let o = Command::new("sysbench")
        .arg(script)
        .args([
            "--mysql-host=127.0.0.1".to_string(),
            format!("--mysql-port={port}"),
            "--mysql-user=root".into(),
            "--mysql-db=sbtest".into(),
            format!("--tables={}", args.tables),
            format!("--table-size={}", args.table_size),
            format!("--threads={threads}"),
            "--db-ps-mode=auto".into(),
        ])
        .args(tail)
        .output()
        .context("running sysbench")?;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    if !o.status.success() {
        bail!(
            "sysbench {script} {tail:?} failed:\n{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(out)
}

/// The "(N per sec.)" figure on the line starting with `label`.
fn per_sec(report: &str, label: &str) -> anyhow::Result<f64> {
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .with_context(|| format!("no {label:?} in sysbench's report:\n{report}"))?;
    let open = line.find('(').context("no rate")?;
    line[open + 1..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no rate in {line:?}"))
}

fn client(port: u16, sql: &str) -> anyhow::Result<()> {
    let o = Command::new("mariadb")
        .args(["-h127.0.0.1", "-uroot", &format!("-P{port}"), "-e", sql])
        .output()
        .context("running the mariadb client")?;
    if !o.status.success() {
        bail!("{sql}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}

fn wait_ready(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while client(port, "SELECT 1").is_err() {
        if Instant::now() > deadline {
            bail!("port {port} does not answer");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// Waits (at most a minute) for the 1-minute load average to fall below
/// `limit`.
fn wait_quiet(limit: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if load < limit {
            return;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A `mariadbd` on a fresh data directory.
struct MariaDb {
    child: Option<Child>,
}

impl MariaDb {
    fn start(dir: &Path, port: u16) -> anyhow::Result<MariaDb> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let install = Command::new(which("mariadb-install-db").expect("checked"))
            .args([
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg("--user=root")
            .output()
            .context("running mariadb-install-db")?;
        if !install.status.success() {
            bail!(
                "mariadb-install-db: {}",
                String::from_utf8_lossy(&install.stderr)
            );
        }
        let mut mariadbd = Command::new(which("mariadbd").expect("checked"));
        // This process has huge pages off, as `strata` does; MariaDB runs
        // as the machine runs it.
        let child = strata_logservice::process::machine_huge_pages(&mut mariadbd)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .args([
                &format!("--port={port}"),
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-grant-tables",
                "--innodb-flush-log-at-trx-commit=1",
                "--innodb-buffer-pool-size=2G",
                "--max-connections=500",
                "--max-prepared-stmt-count=1000000",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mariadbd")?;
        Ok(MariaDb { child: Some(child) })
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}
