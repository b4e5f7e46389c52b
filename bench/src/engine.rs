//! The `engine` workload: sysbench-shaped transactions through the compute
//! engine's library API, on an embedded cluster (three log replicas and a
//! page server in this process, over loopback gRPC).
//!
//! Order of a run:
//! 1. the floor: a plain quorum fsync + loopback round trip on the same disk
//!    (no Strata code), which no commit can beat;
//! 2. `sbtest1(id INT AUTO_INCREMENT PRIMARY KEY, k INT, c CHAR(120),
//!    pad CHAR(60), KEY k_1(k))` loaded with `--rows` rows;
//! 3. each phase for `--seconds` with 1 and then 16 concurrent clients:
//!    point selects (`SELECT c … WHERE id = ?`), range scans (100 rows from
//!    a random id), index updates (`UPDATE … SET k = k + 1 WHERE id = ?`,
//!    one transaction each) and inserts (one row each, auto-increment id).
//!
//! Reads are transactions/s; each write phase also reports commit latency.
//! The last line is `RESULT point_select_tps_16=… update_index_tps_16=…
//! insert_tps_16=… commit_p50_us=…` (commit p50 of the 1-client index
//! updates, next to the floor's).

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use strata_compute::btree::Direction;
use strata_compute::catalog::TableDef;
use strata_compute::embedded::StorageCluster;
use strata_compute::engine::{ColumnSpec, IndexSpec, TableSpec};
use strata_compute::types::{Collation, ColumnType, IntWidth, Value};
use strata_compute::{Engine, EngineError};
use strata_pageserver::workload::Rng;

use crate::floor::FloorArgs;
use crate::report::{Table, per_sec, us};
use crate::stats::Latency;
use crate::watchdog::Watchdog;

#[derive(clap::Args, Clone, Debug)]
pub struct EngineArgs {
    /// Rows loaded into sbtest1 before the phases.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub rows: u64,
    /// Seconds each phase runs, per client count.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    #[command(flatten)]
    pub floor: FloorArgs,
}

pub fn run(args: &EngineArgs, dir: &Path) -> anyhow::Result<()> {
    let _watchdog = Watchdog::arm(Duration::from_secs(3600), "the engine workload".into());
    let floor = crate::floor::measure(dir, &args.floor)?;
    println!(
        "floor: quorum fsync p50 {} + loopback RTT p50 {} = commit floor {}",
        us(floor.quorum_fsync.p50_us),
        us(floor.loopback_rtt.p50_us),
        us(floor.commit_p50_us())
    );
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    runtime.block_on(run_async(args, dir, floor.commit_p50_us()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    PointSelect,
    RangeScan,
    UpdateIndex,
    Insert,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::PointSelect => "point select",
            Phase::RangeScan => "range scan (100 rows)",
            Phase::UpdateIndex => "update index",
            Phase::Insert => "insert",
        }
    }
}

struct Outcome {
    tps: f64,
    latency: Latency,
}

async fn run_async(args: &EngineArgs, dir: &Path, floor_us: f64) -> anyhow::Result<()> {
    let cluster = StorageCluster::start(&dir.join("cluster"), "strata-bench-engine").await?;
    let engine = Engine::open(cluster.engine_config()).await?;
    engine.create_database("sbtest", false).await?;
    engine.create_table("sbtest", sbtest_spec(), false).await?;
    let table = engine.catalog().table("sbtest", "sbtest1")?;
    let started = Instant::now();
    load(&engine, &table, args.rows).await?;
    println!(
        "loaded {} rows in {:.1} s",
        args.rows,
        started.elapsed().as_secs_f64()
    );
    let mut report = Table::new(&["phase", "clients", "tx/s", "p50", "p99"]);
    let mut results = std::collections::HashMap::new();
    let next_id = Arc::new(AtomicU64::new(args.rows + 1));
    for phase in [
        Phase::PointSelect,
        Phase::RangeScan,
        Phase::UpdateIndex,
        Phase::Insert,
    ] {
        for clients in [1, 16] {
            let o = run_phase(&engine, &table, phase, clients, args, &next_id).await?;
            report.row(vec![
                phase.name().into(),
                clients.to_string(),
                per_sec(o.tps),
                us(o.latency.p50_us),
                us(o.latency.p99_us),
            ]);
            results.insert((phase, clients), o);
        }
    }
    report.print();
    let commit_p50 = results[&(Phase::UpdateIndex, 1)].latency.p50_us;
    println!(
        "commit p50 (1 client, update index) {} against the floor {} ({:.2}x)",
        us(commit_p50),
        us(floor_us),
        commit_p50 / floor_us
    );
    engine.close();
    cluster.stop().await?;
    println!(
        "RESULT point_select_tps_16={:.0} update_index_tps_16={:.0} insert_tps_16={:.0} commit_p50_us={:.1} floor_us={:.1}",
        results[&(Phase::PointSelect, 16)].tps,
        results[&(Phase::UpdateIndex, 16)].tps,
        results[&(Phase::Insert, 16)].tps,
        commit_p50,
        floor_us
    );
    Ok(())
}

fn sbtest_spec() -> TableSpec {
    let int = ColumnType::Int {
        width: IntWidth::Int,
        unsigned: false,
    };
    let chars = |n| ColumnType::Char {
        max_chars: n,
        collation: Collation::Utf8mb4GeneralCi,
    };
    let col = |name: &str, ty, auto_increment| ColumnSpec {
        name: name.into(),
        ty,
        nullable: false,
        default: None,
        auto_increment,
    };
    TableSpec {
        name: "sbtest1".into(),
        columns: vec![
            col("id", int.clone(), true),
            col("k", int, false),
            col("c", chars(120), false),
            col("pad", chars(60), false),
        ],
        primary_key: vec!["id".into()],
        indexes: vec![IndexSpec {
            name: "k_1".into(),
            columns: vec!["k".into()],
            unique: false,
        }],
        auto_increment: 0,
    }
}

/// sysbench's row: k random, c and pad strings of digit groups.
fn row(rng: &mut Rng, id: u64, rows: u64) -> Vec<Value> {
    let digits = |rng: &mut Rng, groups: usize| {
        let mut s = String::new();
        for g in 0..groups {
            if g > 0 {
                s.push('-');
            }
            s.push_str(&format!("{:011}", rng.below(100_000_000_000)));
        }
        Value::Bytes(s.into_bytes())
    };
    vec![
        Value::Int(id as i64),
        Value::Int(rng.below(rows) as i64 + 1),
        digits(rng, 10),
        digits(rng, 5),
    ]
}

async fn load(engine: &Engine, table: &Arc<TableDef>, rows: u64) -> anyhow::Result<()> {
    let mut rng = Rng::new(42);
    let mut id = 1;
    while id <= rows {
        let mut txn = engine.begin();
        for _ in 0..1000 {
            if id > rows {
                break;
            }
            txn.insert(table, row(&mut rng, id, rows)).await?;
            id += 1;
        }
        txn.commit().await?;
    }
    Ok(())
}

async fn run_phase(
    engine: &Engine,
    table: &Arc<TableDef>,
    phase: Phase,
    clients: u64,
    args: &EngineArgs,
    next_id: &Arc<AtomicU64>,
) -> anyhow::Result<Outcome> {
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (engine, table, next_id) = (engine.clone(), table.clone(), next_id.clone());
        let rows = args.rows;
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(1000 + c);
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                match one(&engine, &table, phase, rows, &mut rng, &next_id).await {
                    Ok(()) => samples.push(t.elapsed()),
                    Err(e) if e.is_retryable() => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(samples)
        }));
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.context("a client task")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let tps = samples.len() as f64 / elapsed;
    let latency = Latency::from_samples(samples).context("no transaction finished")?;
    Ok(Outcome { tps, latency })
}

/// One transaction of `phase`.
async fn one(
    engine: &Engine,
    table: &TableDef,
    phase: Phase,
    rows: u64,
    rng: &mut Rng,
    next_id: &AtomicU64,
) -> Result<(), EngineError> {
    let id = Value::Int(rng.below(rows) as i64 + 1);
    let mut txn = engine.begin();
    match phase {
        Phase::PointSelect => {
            txn.get(table, &[id]).await?;
        }
        Phase::RangeScan => {
            let mut scan = txn
                .scan(
                    table,
                    0,
                    Bound::Included(vec![id]),
                    Bound::Unbounded,
                    Direction::Forward,
                )
                .await?;
            for _ in 0..100 {
                if scan.next(&mut txn).await?.is_none() {
                    break;
                }
            }
        }
        Phase::UpdateIndex => {
            if let Some(old) = txn.get_for_update(table, &[id]).await? {
                let mut values = old.values.clone();
                if let Value::Int(k) = values[1] {
                    values[1] = Value::Int(k + 1);
                }
                txn.update(table, &old, values).await?;
            }
        }
        Phase::Insert => {
            let new_id = next_id.fetch_add(1, Ordering::Relaxed);
            let mut values = row(rng, new_id, rows);
            values[0] = Value::Null;
            txn.insert(table, values).await?;
        }
    }
    txn.commit().await
}
