//! SIGKILL of the compute engine under load loses no acknowledged commit.
//!
//! The storage (three log replicas and a page server) runs in this test's
//! process; the engine runs in a child process — this same test binary,
//! re-run with `--ignored --exact child_transfers` and the cluster's
//! endpoints in its environment. The child moves money between accounts,
//! each transfer also inserting its own ledger row, and prints `ACK <id>`
//! after each commit returns. The parent kills it with SIGKILL mid-stream,
//! opens a new engine (which takes over the log with a new term), and
//! checks: every acknowledged transfer is in the ledger, the total is
//! unchanged, and every balance is exactly what the ledger says — so no
//! transfer was half applied.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::ops::Bound;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use strata_compute::btree::Direction;
use strata_compute::catalog::TableDef;
use strata_compute::embedded::StorageCluster;
use strata_compute::engine::{ColumnSpec, TableSpec};
use strata_compute::lock::LockError;
use strata_compute::types::{ColumnType, IntWidth, Value};
use strata_compute::{Engine, EngineConfig, EngineError, Txn};

const ACCOUNTS: i64 = 16;
const CLUSTER: &str = "crash-test";
const CHILD_ENV: &str = "STRATA_CRASH_CHILD";

fn bigint_col(name: &str) -> ColumnSpec {
    ColumnSpec {
        name: name.into(),
        ty: ColumnType::Int {
            width: IntWidth::Big,
            unsigned: false,
        },
        nullable: false,
        default: None,
        auto_increment: false,
    }
}

fn spec(name: &str, columns: &[&str]) -> TableSpec {
    TableSpec {
        name: name.into(),
        columns: columns.iter().map(|c| bigint_col(c)).collect(),
        primary_key: vec!["id".into()],
        indexes: vec![],
        auto_increment: 0,
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        v => panic!("not an int: {v:?}"),
    }
}

async fn all_rows(engine: &Engine, txn: &mut Txn, table: &str) -> Vec<Vec<Value>> {
    let table = engine.catalog().table("bank", table).unwrap();
    let mut scan = txn
        .scan(
            &table,
            0,
            Bound::Unbounded,
            Bound::Unbounded,
            Direction::Forward,
        )
        .await
        .unwrap();
    let mut rows = Vec::new();
    while let Some(r) = scan.next(txn).await.unwrap() {
        rows.push(r.values);
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_engine_loses_no_acknowledged_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = StorageCluster::start(dir.path(), CLUSTER).await.unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_transfers",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("STRATA_LOG", cluster.log_endpoints.join(","))
        .env("STRATA_PS", &cluster.pageserver_endpoint)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // A thread reads acknowledgements until the pipe closes (at the kill),
    // counting them as they come.
    let count = Arc::new(AtomicUsize::new(0));
    let reader = {
        let count = count.clone();
        std::thread::spawn(move || {
            let mut acked = BTreeSet::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix("ACK ") {
                    acked.insert(id.trim().parse::<i64>().unwrap());
                    count.store(acked.len(), Ordering::Relaxed);
                }
            }
            acked
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::Relaxed) < 150 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGKILL, mid-stream: no chance to flush or close anything.
    child.kill().unwrap();
    child.wait().unwrap();
    let acked = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    assert!(
        acked.len() >= 150,
        "the child acknowledged only {}",
        acked.len()
    );

    let engine = Engine::open(cluster.engine_config()).await.unwrap();
    let mut txn = engine.begin();
    let accounts = all_rows(&engine, &mut txn, "accounts").await;
    let ledger = all_rows(&engine, &mut txn, "ledger").await;
    txn.rollback();
    let ids: BTreeSet<i64> = ledger.iter().map(|r| int(&r[0])).collect();
    let missing: Vec<_> = acked.difference(&ids).collect();
    assert!(
        missing.is_empty(),
        "acknowledged transfers lost: {missing:?}"
    );
    let mut expected: BTreeMap<i64, i64> = (1..=ACCOUNTS).map(|a| (a, 100)).collect();
    for r in &ledger {
        *expected.get_mut(&int(&r[1])).unwrap() -= int(&r[3]);
        *expected.get_mut(&int(&r[2])).unwrap() += int(&r[3]);
    }
    let balances: BTreeMap<i64, i64> = accounts.iter().map(|r| (int(&r[0]), int(&r[1]))).collect();
    assert_eq!(balances, expected, "balances disagree with the ledger");
    assert_eq!(balances.values().sum::<i64>(), ACCOUNTS * 100);
    engine.close();
    cluster.stop().await.unwrap();
}

/// The child's side of the crash test: not a test on its own (it does
/// nothing without the parent's environment), hence ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by sigkill_of_the_engine_loses_no_acknowledged_transfer"]
async fn child_transfers() {
    if std::env::var(CHILD_ENV).is_err() {
        return;
    }
    let log: Vec<String> = std::env::var("STRATA_LOG")
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    let mut cfg = EngineConfig::new(CLUSTER, log, std::env::var("STRATA_PS").unwrap());
    cfg.lock_wait_timeout = Duration::from_secs(5);
    let engine = Engine::open(cfg).await.unwrap();
    engine.create_database("bank", false).await.unwrap();
    engine
        .create_table("bank", spec("accounts", &["id", "balance"]), false)
        .await
        .unwrap();
    engine
        .create_table(
            "bank",
            spec("ledger", &["id", "src", "dst", "amount"]),
            false,
        )
        .await
        .unwrap();
    let accounts = engine.catalog().table("bank", "accounts").unwrap();
    let ledger = engine.catalog().table("bank", "ledger").unwrap();
    let mut txn = engine.begin();
    for a in 1..=ACCOUNTS {
        txn.insert(&accounts, vec![Value::Int(a), Value::Int(100)])
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let (engine, accounts, ledger) = (engine.clone(), accounts.clone(), ledger.clone());
        tasks.push(tokio::spawn(async move {
            let mut seed = w as u64 * 31 + 7;
            for n in 0.. {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let src = (seed >> 33) as i64 % ACCOUNTS + 1;
                let dst = (src + (seed >> 20) as i64 % (ACCOUNTS - 1)) % ACCOUNTS + 1;
                let id = w * 1_000_000 + n;
                let mut txn = engine.begin();
                match transfer(&mut txn, &accounts, &ledger, id, src, dst).await {
                    Ok(()) => {
                        txn.commit().await.unwrap();
                        println!("ACK {id}");
                    }
                    Err(EngineError::Lock(LockError::Deadlock | LockError::Timeout)) => {
                        txn.rollback()
                    }
                    Err(e) => panic!("transfer {id}: {e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn transfer(
    txn: &mut Txn,
    accounts: &TableDef,
    ledger: &TableDef,
    id: i64,
    src: i64,
    dst: i64,
) -> Result<(), EngineError> {
    let amount = 1 + id % 5;
    for (a, delta) in [(src, -amount), (dst, amount)] {
        let row = txn
            .get_for_update(accounts, &[Value::Int(a)])
            .await?
            .expect("exists");
        let balance = int(&row.values[1]);
        txn.update(
            accounts,
            &row,
            vec![Value::Int(a), Value::Int(balance + delta)],
        )
        .await?;
    }
    txn.insert(
        ledger,
        vec![
            Value::Int(id),
            Value::Int(src),
            Value::Int(dst),
            Value::Int(amount),
        ],
    )
    .await?;
    Ok(())
}
