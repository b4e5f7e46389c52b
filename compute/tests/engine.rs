//! The engine on real separated storage in one process: three log replicas
//! and a page server over gRPC, the engine as the log's writer.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use strata_compute::btree::Direction;
use strata_compute::embedded::StorageCluster;
use strata_compute::engine::{ColumnSpec, IndexSpec, TableSpec};
use strata_compute::lock::LockError;
use strata_compute::types::{Collation, ColumnType, IntWidth, Value};
use strata_compute::{Engine, EngineError, Txn};

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn col(name: &str, ty: ColumnType, nullable: bool) -> ColumnSpec {
    ColumnSpec {
        name: name.into(),
        ty,
        nullable,
        default: None,
        auto_increment: false,
    }
}

fn bigint() -> ColumnType {
    ColumnType::Int {
        width: IntWidth::Big,
        unsigned: false,
    }
}

/// accounts(id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20) UNIQUE,
/// balance BIGINT NOT NULL, KEY by_balance(balance))
fn accounts() -> TableSpec {
    let mut id = col("id", bigint(), false);
    id.auto_increment = true;
    TableSpec {
        name: "accounts".into(),
        columns: vec![
            id,
            col(
                "name",
                ColumnType::VarChar {
                    max_chars: 20,
                    collation: Collation::Utf8mb4GeneralCi,
                },
                true,
            ),
            col("balance", bigint(), false),
        ],
        primary_key: vec!["id".into()],
        indexes: vec![
            IndexSpec {
                name: "name".into(),
                columns: vec!["name".into()],
                unique: true,
            },
            IndexSpec {
                name: "by_balance".into(),
                columns: vec!["balance".into()],
                unique: false,
            },
        ],
        auto_increment: 0,
    }
}

fn name(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

async fn open(cluster: &StorageCluster) -> Engine {
    let mut cfg = cluster.engine_config();
    cfg.lock_wait_timeout = Duration::from_secs(5);
    Engine::open(cfg).await.expect("the engine opens")
}

/// A cluster, an engine on it, and `bank.accounts` created.
async fn bank() -> (
    tempfile::TempDir,
    StorageCluster,
    Engine,
    Arc<strata_compute::catalog::TableDef>,
) {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let cluster = StorageCluster::start(dir.path(), "engine-test")
        .await
        .unwrap();
    let engine = open(&cluster).await;
    engine.create_database("bank", false).await.unwrap();
    engine
        .create_table("bank", accounts(), false)
        .await
        .unwrap();
    let table = engine.catalog().table("bank", "accounts").unwrap();
    (dir, cluster, engine, table)
}

async fn scan_all(txn: &mut Txn, engine: &Engine, index: usize, dir: Direction) -> Vec<Vec<Value>> {
    let table = engine.catalog().table("bank", "accounts").unwrap();
    let mut scan = txn
        .scan(&table, index, Bound::Unbounded, Bound::Unbounded, dir)
        .await
        .unwrap();
    let mut rows = Vec::new();
    while let Some(r) = scan.next(txn).await.unwrap() {
        rows.push(r.values);
    }
    rows
}

#[allow(clippy::ptr_arg)]
fn balance(row: &Vec<Value>) -> i64 {
    match row[2] {
        Value::Int(b) => b,
        ref v => panic!("balance {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_indexes_errors_and_a_restart() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let cluster = StorageCluster::start(dir.path(), "engine-test")
        .await
        .unwrap();
    let engine = open(&cluster).await;
    assert!(engine.create_database("bank", false).await.unwrap());
    assert!(matches!(
        engine.create_database("BANK", false).await,
        Err(EngineError::DatabaseExists(_))
    ));
    assert!(
        engine
            .create_table("bank", accounts(), false)
            .await
            .unwrap()
    );
    let table = engine.catalog().table("bank", "Accounts").unwrap();

    let mut txn = engine.begin();
    for (n, b) in [("alice", 10), ("bob", 20), ("carol", 30)] {
        let id = txn
            .insert(&table, vec![Value::Null, name(n), Value::Int(b)])
            .await
            .unwrap();
        assert!(id.is_some());
    }
    // Own writes are visible before commit; others' are not.
    assert_eq!(
        scan_all(&mut txn, &engine, 0, Direction::Forward)
            .await
            .len(),
        3
    );
    let mut other = engine.begin();
    assert!(
        scan_all(&mut other, &engine, 0, Direction::Forward)
            .await
            .is_empty()
    );
    txn.commit().await.unwrap();
    other.rollback();

    // Unique under utf8mb4_general_ci: 'ALICE' collides with 'alice'.
    let mut txn = engine.begin();
    txn.begin_statement();
    let dup = txn
        .insert(&table, vec![Value::Null, name("ALICE"), Value::Int(1)])
        .await;
    match dup {
        Err(e @ EngineError::DuplicateKey { .. }) => assert_eq!(e.mysql_code().0, 1062),
        other => panic!("expected a duplicate key, got {other:?}"),
    }
    txn.rollback_statement();
    let dup = txn
        .insert(&table, vec![Value::Int(2), name("dave"), Value::Int(1)])
        .await;
    assert!(matches!(dup, Err(EngineError::DuplicateKey { .. })));
    txn.rollback_statement();
    let not_null = txn
        .insert(&table, vec![Value::Null, name("erin"), Value::Null])
        .await;
    assert!(matches!(not_null, Err(EngineError::NotNull(_))));
    // Update through the locking read, delete, then commit.
    let bob = txn
        .get_for_update(&table, &[Value::Int(2)])
        .await
        .unwrap()
        .unwrap();
    let mut new = bob.values.clone();
    new[2] = Value::Int(25);
    txn.update(&table, &bob, new).await.unwrap();
    let carol = txn
        .get_for_update(&table, &[Value::Int(3)])
        .await
        .unwrap()
        .unwrap();
    txn.delete(&table, &carol).await.unwrap();
    txn.commit().await.unwrap();

    let mut txn = engine.begin();
    let rows = scan_all(&mut txn, &engine, 0, Direction::Forward).await;
    assert_eq!(rows.iter().map(balance).collect::<Vec<_>>(), vec![10, 25]);
    let reverse = scan_all(&mut txn, &engine, 0, Direction::Reverse).await;
    assert_eq!(
        reverse.iter().map(balance).collect::<Vec<_>>(),
        vec![25, 10]
    );
    // Through the secondary index on balance, in its order.
    let by_balance = scan_all(&mut txn, &engine, 2, Direction::Reverse).await;
    assert_eq!(
        by_balance.iter().map(balance).collect::<Vec<_>>(),
        vec![25, 10]
    );
    txn.rollback();

    // A restarted engine sees every commit, and auto-increment goes on
    // above what was used.
    engine.close();
    drop(engine);
    let engine = open(&cluster).await;
    let table = engine.catalog().table("bank", "accounts").unwrap();
    let mut txn = engine.begin();
    let rows = scan_all(&mut txn, &engine, 0, Direction::Forward).await;
    assert_eq!(rows.iter().map(balance).collect::<Vec<_>>(), vec![10, 25]);
    let id = txn
        .insert(&table, vec![Value::Null, name("frank"), Value::Int(5)])
        .await
        .unwrap()
        .unwrap();
    assert!(id > 3, "auto-increment went back to {id}");
    txn.commit().await.unwrap();
    engine.close();
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_keep_the_total_at_every_snapshot() {
    let (_dir, cluster, engine, table) = bank().await;
    const ACCOUNTS: i64 = 20;
    let mut txn = engine.begin();
    for i in 1..=ACCOUNTS {
        txn.insert(
            &table,
            vec![Value::Int(i), name(&format!("a{i}")), Value::Int(100)],
        )
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();

    let done = Arc::new(AtomicU64::new(0));
    let deadlocks = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..6u64 {
        let (engine, table, done, deadlocks) = (
            engine.clone(),
            table.clone(),
            done.clone(),
            deadlocks.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut seed = w * 7919 + 1;
            for _ in 0..40 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let from = (seed >> 33) as i64 % ACCOUNTS + 1;
                let to = (seed >> 17) as i64 % ACCOUNTS + 1;
                if from == to {
                    continue;
                }
                let mut txn = engine.begin();
                match transfer(&mut txn, &table, from, to, 7).await {
                    Ok(()) => {
                        txn.commit().await.unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(EngineError::Lock(LockError::Deadlock)) => {
                        deadlocks.fetch_add(1, Ordering::Relaxed);
                        txn.rollback();
                    }
                    Err(e) => panic!("transfer failed: {e}"),
                }
            }
        }));
    }
    let reader = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut checks = 0;
            for _ in 0..30 {
                let mut txn = engine.begin();
                let rows = scan_all(&mut txn, &engine, 0, Direction::Forward).await;
                let total: i64 = rows.iter().map(balance).sum();
                assert_eq!(total, ACCOUNTS * 100, "a snapshot saw part of a transfer");
                // Through the secondary index too: the same snapshot.
                let rows = scan_all(&mut txn, &engine, 2, Direction::Forward).await;
                assert_eq!(rows.iter().map(balance).sum::<i64>(), ACCOUNTS * 100);
                txn.rollback();
                checks += 1;
            }
            checks
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(reader.await.unwrap(), 30);
    assert!(done.load(Ordering::Relaxed) > 0);
    let mut txn = engine.begin();
    let rows = scan_all(&mut txn, &engine, 0, Direction::Forward).await;
    assert_eq!(rows.iter().map(balance).sum::<i64>(), ACCOUNTS * 100);
    txn.rollback();
    engine.close();
    cluster.stop().await.unwrap();
}

/// Moves `amount` from one account to another, locking both rows.
async fn transfer(
    txn: &mut Txn,
    table: &strata_compute::catalog::TableDef,
    from: i64,
    to: i64,
    amount: i64,
) -> Result<(), EngineError> {
    for (id, delta) in [(from, -amount), (to, amount)] {
        let row = txn
            .get_for_update(table, &[Value::Int(id)])
            .await?
            .expect("exists");
        let mut values = row.values.clone();
        values[2] = Value::Int(balance(&values) + delta);
        txn.update(table, &row, values).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_unique_key_inserted_concurrently_is_stored_once() {
    let (_dir, cluster, engine, table) = bank().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (engine, table) = (engine.clone(), table.clone());
        tasks.push(tokio::spawn(async move {
            let mut txn = engine.begin();
            let who = if i % 2 == 0 { "Same" } else { "same " };
            match txn
                .insert(&table, vec![Value::Null, name(who), Value::Int(i)])
                .await
            {
                Ok(_) => {
                    txn.commit().await.unwrap();
                    true
                }
                Err(EngineError::DuplicateKey { .. }) => false,
                Err(e) => panic!("{e}"),
            }
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += usize::from(t.await.unwrap());
    }
    assert_eq!(stored, 1);
    let mut txn = engine.begin();
    assert_eq!(
        scan_all(&mut txn, &engine, 1, Direction::Forward)
            .await
            .len(),
        1
    );
    txn.rollback();
    engine.close();
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deadlock_is_reported_to_one_transaction() {
    let (_dir, cluster, engine, table) = bank().await;
    let mut txn = engine.begin();
    for i in 1..=2 {
        txn.insert(
            &table,
            vec![Value::Int(i), name(&format!("a{i}")), Value::Int(0)],
        )
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    t1.get_for_update(&table, &[Value::Int(1)]).await.unwrap();
    t2.get_for_update(&table, &[Value::Int(2)]).await.unwrap();
    let table2 = table.clone();
    let waiter = tokio::spawn(async move {
        let r = t1
            .get_for_update(&table2, &[Value::Int(2)])
            .await
            .map(|_| ());
        (t1, r)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = t2
        .get_for_update(&table, &[Value::Int(1)])
        .await
        .map(|_| ());
    match second {
        Err(e @ EngineError::Lock(LockError::Deadlock)) => {
            assert_eq!(e.mysql_code().0, 1213);
            t2.rollback();
            let (t1, first) = waiter.await.unwrap();
            first.unwrap();
            t1.commit().await.unwrap();
        }
        other => panic!("expected a deadlock, got {other:?}"),
    }
    engine.close();
    cluster.stop().await.unwrap();
}

/// docs(id INT PRIMARY KEY, body BLOB, tag VARCHAR(30), KEY by_tag(tag)):
/// bodies from a few bytes to several pages, so leaves split, merge and
/// values go to overflow chains.
fn docs() -> TableSpec {
    let mut body = col("body", ColumnType::Blob { max_bytes: 1 << 24 }, false);
    body.nullable = true;
    TableSpec {
        name: "docs".into(),
        columns: vec![
            col("id", bigint(), false),
            body,
            col(
                "tag",
                ColumnType::VarChar {
                    max_chars: 30,
                    collation: Collation::Utf8mb4Bin,
                },
                true,
            ),
        ],
        primary_key: vec!["id".into()],
        indexes: vec![IndexSpec {
            name: "by_tag".into(),
            columns: vec!["tag".into()],
            unique: false,
        }],
        auto_increment: 0,
    }
}

/// Thirty transactions of random inserts, updates and deletes of bodies
/// from a few bytes to several pages.
async fn random_docs(engine: &Engine, table: &strata_compute::catalog::TableDef, seed: u64) {
    let mut seed = seed;
    let mut rand = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for round in 0..30 {
        let mut txn = engine.begin();
        for _ in 0..20 {
            let id = Value::Int(rand(300) as i64);
            let len = match rand(10) {
                0 => 3000 + rand(30_000),
                _ => rand(400),
            } as usize;
            let body = Value::Bytes(vec![b'a' + (round % 26) as u8; len]);
            let tag = name(&format!("t{}", rand(20)));
            match txn
                .get_for_update(table, std::slice::from_ref(&id))
                .await
                .unwrap()
            {
                Some(old) if rand(3) == 0 => txn.delete(table, &old).await.unwrap(),
                Some(old) => txn.update(table, &old, vec![id, body, tag]).await.unwrap(),
                None => {
                    txn.insert(table, vec![id, body, tag]).await.unwrap();
                }
            }
        }
        txn.commit().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_cached_page_equals_the_page_servers_at_the_same_lsn() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let cluster = StorageCluster::start(dir.path(), "engine-test")
        .await
        .unwrap();
    let engine = open(&cluster).await;
    engine.create_database("lib", false).await.unwrap();
    // Three seeded workloads, each on its own table.
    for seed in [0x5eed_u64, 7, 1234567] {
        let mut spec = docs();
        spec.name = format!("docs{seed}");
        engine.create_table("lib", spec, false).await.unwrap();
        let table = engine
            .catalog()
            .table("lib", &format!("docs{seed}"))
            .unwrap();
        random_docs(&engine, &table, seed).await;
    }
    let lsn = engine.durable_lsn();
    let cached = engine.cached_pages_at(lsn);
    assert!(cached.len() > 20, "only {} pages cached", cached.len());
    let mut ps = strata_pageserver::client::PageServerClient::connect(
        &cluster.pageserver_endpoint,
        cluster.cluster_id.clone(),
    )
    .await
    .unwrap();
    for (page, image) in cached {
        let remote = ps.get_page(page, lsn).await.unwrap();
        assert!(
            remote.page.as_bytes() == image.as_bytes(),
            "page {page} at {lsn} differs from the page server's"
        );
    }
    engine.close();
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_append_leaves_nothing_undurable_visible_and_refuses_writes() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = StorageCluster::start(dir.path(), "engine-test")
        .await
        .unwrap();
    let mut cfg = cluster.engine_config();
    cfg.commit_timeout = Duration::from_secs(2);
    let engine = Engine::open(cfg).await.unwrap();
    engine.create_database("bank", false).await.unwrap();
    engine
        .create_table("bank", accounts(), false)
        .await
        .unwrap();
    let table = engine.catalog().table("bank", "accounts").unwrap();
    let mut txn = engine.begin();
    txn.insert(&table, vec![Value::Int(1), name("kept"), Value::Int(1)])
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let durable = engine.durable_lsn();

    // The log loses its quorum: the next commit is published, then fails.
    cluster.stop_log_replica(1).await;
    cluster.stop_log_replica(2).await;
    let committing = {
        let (engine, table) = (engine.clone(), table.clone());
        tokio::spawn(async move {
            let mut txn = engine.begin();
            txn.insert(&table, vec![Value::Int(2), name("lost"), Value::Int(2)])
                .await
                .unwrap();
            txn.commit().await
        })
    };
    while engine.applied_lsn() == durable {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Published, not durable: a snapshot does not see it; a locking read
    // does, but cannot show it before it is durable.
    let mut reader = engine.begin();
    assert_eq!(
        scan_all(&mut reader, &engine, 0, Direction::Forward)
            .await
            .len(),
        1
    );
    reader.rollback();
    let mut locker = engine.begin();
    assert!(
        locker
            .get_for_update(&table, &[Value::Int(2)])
            .await
            .unwrap()
            .is_some()
    );
    assert!(locker.settle().await.is_err(), "undurable data was let out");
    locker.rollback();
    assert!(committing.await.unwrap().is_err());
    assert!(engine.refused().is_some());
    assert_eq!(engine.durable_lsn(), durable);
    assert_eq!(
        engine.applied_lsn(),
        durable,
        "versions above durable remain"
    );
    for (page, image) in engine.cached_pages_at(durable) {
        assert!(image.lsn() <= durable, "page {page} holds undurable data");
    }
    let mut txn = engine.begin();
    let rows = scan_all(&mut txn, &engine, 0, Direction::Forward).await;
    assert_eq!(rows.len(), 1, "a snapshot sees the failed commit");
    let refused = txn
        .insert(&table, vec![Value::Int(3), name("later"), Value::Int(3)])
        .await;
    match refused {
        Err(e @ EngineError::WritesRefused(_)) => assert_eq!(e.mysql_code().0, 1290),
        other => panic!("expected writes refused, got {other:?}"),
    }
    txn.rollback();
    engine.close();
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_of_one_row_lose_no_update() {
    let (_dir, cluster, engine, table) = bank().await;
    let mut txn = engine.begin();
    txn.insert(&table, vec![Value::Int(1), name("hot"), Value::Int(0)])
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (engine, table) = (engine.clone(), table.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let mut txn = engine.begin();
                // A snapshot read first: the increment must still see the
                // latest value, through the locking read.
                txn.get(&table, &[Value::Int(1)]).await.unwrap();
                let row = txn
                    .get_for_update(&table, &[Value::Int(1)])
                    .await
                    .unwrap()
                    .unwrap();
                let mut values = row.values.clone();
                values[2] = Value::Int(balance(&values) + 1);
                txn.update(&table, &row, values).await.unwrap();
                txn.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut txn = engine.begin();
    let row = txn.get(&table, &[Value::Int(1)]).await.unwrap().unwrap();
    assert_eq!(balance(&row.values), 200);
    txn.rollback();
    engine.close();
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_unique_inserts_across_page_splits_store_each_key_once() {
    let (_dir, cluster, engine, table) = bank().await;
    const KEYS: u64 = 600;
    let mut tasks = Vec::new();
    for t in 0..6u64 {
        let (engine, table) = (engine.clone(), table.clone());
        tasks.push(tokio::spawn(async move {
            let mut stored = 0;
            for i in 0..KEYS {
                // Every task inserts every key, in its own order, a few
                // per transaction: leaves split under the racing inserts.
                let k = (i * (2 * t + 1) + t * 37) % KEYS;
                let mut txn = engine.begin();
                let who = name(&format!("{k:>04}-padding-padding"));
                match txn
                    .insert(&table, vec![Value::Null, who, Value::Int(k as i64)])
                    .await
                {
                    Ok(_) => {
                        txn.commit().await.unwrap();
                        stored += 1;
                    }
                    Err(EngineError::DuplicateKey { .. }) => txn.rollback(),
                    Err(EngineError::Lock(_)) => txn.rollback(),
                    Err(e) => panic!("{e}"),
                }
            }
            stored
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await.unwrap();
    }
    assert_eq!(stored, KEYS, "each key stored exactly once");
    let mut txn = engine.begin();
    let rows = scan_all(&mut txn, &engine, 1, Direction::Forward).await;
    assert_eq!(rows.len() as u64, KEYS);
    let mut balances: Vec<i64> = rows.iter().map(balance).collect();
    balances.dedup();
    assert_eq!(balances, (0..KEYS as i64).collect::<Vec<_>>());
    txn.rollback();
    engine.close();
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_server_hears_the_oldest_snapshot_and_a_stalled_ingest_holds_commits() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = StorageCluster::start(dir.path(), "engine-test")
        .await
        .unwrap();
    let mut cfg = cluster.engine_config();
    cfg.commit_timeout = Duration::from_secs(2);
    cfg.max_ingest_lag_bytes = 1;
    let engine = Engine::open(cfg).await.unwrap();
    engine.create_database("bank", false).await.unwrap();
    engine
        .create_table("bank", accounts(), false)
        .await
        .unwrap();
    let table = engine.catalog().table("bank", "accounts").unwrap();
    let mut reader = engine.begin();
    let snapshot = reader.snapshot();
    let mut txn = engine.begin();
    txn.insert(&table, vec![Value::Int(1), name("a"), Value::Int(1)])
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert!(engine.durable_lsn() > snapshot);
    let mut ps = strata_pageserver::client::PageServerClient::connect(
        &cluster.pageserver_endpoint,
        cluster.cluster_id.clone(),
    )
    .await
    .unwrap();
    let reported = async {
        loop {
            let s = ps.status().await.unwrap();
            if s.oldest_snapshot_lsn == snapshot.0 && s.ingested_lsn >= engine.durable_lsn().0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reported)
        .await
        .expect("the open snapshot is reported");
    reader.rollback();

    // Ingest stops: after one more commit, the next waits for it, and
    // gives up at the commit timeout.
    while engine.ingest_lag_bytes() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.stop_pageserver().await;
    let insert = |id: i64| {
        let (engine, table) = (engine.clone(), table.clone());
        async move {
            let mut txn = engine.begin();
            txn.insert(
                &table,
                vec![Value::Int(id), name(&format!("n{id}")), Value::Int(0)],
            )
            .await?;
            txn.commit().await
        }
    };
    insert(2).await.unwrap();
    match insert(3).await {
        Err(EngineError::Unavailable(why)) => assert!(why.contains("ingest lags"), "{why}"),
        other => panic!("expected the commit to wait for ingest, got {other:?}"),
    }
    cluster.restart_pageserver().await.unwrap();
    insert(4).await.unwrap();
    engine.close();
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_check_unique_keys_against_other_rows_only() {
    let (_dir, cluster, engine, table) = bank().await;
    let mut txn = engine.begin();
    for (id, n) in [(1, "alice"), (2, "bob")] {
        txn.insert(&table, vec![Value::Int(id), name(n), Value::Int(0)])
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
    let mut txn = engine.begin();
    // A new primary key: the row keeps its own unique name.
    let alice = txn
        .get_for_update(&table, &[Value::Int(1)])
        .await
        .unwrap()
        .unwrap();
    let mut moved = alice.values.clone();
    moved[0] = Value::Int(100);
    txn.update(&table, &alice, moved).await.unwrap();
    // Taking another row's name (in another case) is a duplicate.
    let bob = txn
        .get_for_update(&table, &[Value::Int(2)])
        .await
        .unwrap()
        .unwrap();
    let mut clash = bob.values.clone();
    clash[1] = name("ALICE");
    txn.begin_statement();
    assert!(matches!(
        txn.update(&table, &bob, clash).await,
        Err(EngineError::DuplicateKey { .. })
    ));
    txn.rollback_statement();
    txn.commit().await.unwrap();
    let mut txn = engine.begin();
    let ids: Vec<Value> = scan_all(&mut txn, &engine, 1, Direction::Forward)
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(ids, vec![Value::Int(100), Value::Int(2)]);
    assert!(txn.get(&table, &[Value::Int(1)]).await.unwrap().is_none());
    txn.rollback();
    engine.close();
    cluster.stop().await.unwrap();
}

/// Page records in the log between two LSNs, by space.
async fn records_by_space(
    cluster: &StorageCluster,
    from: strata_wal::Lsn,
    to: strata_wal::Lsn,
) -> std::collections::BTreeMap<u32, usize> {
    let mut reader = strata_logservice::client::LogReader::new(
        cluster.cluster_id.clone(),
        "test-reader",
        cluster.log_endpoints.clone(),
        from,
    );
    let mut by_space = std::collections::BTreeMap::new();
    while reader.position() < to {
        let chunk = reader.next_chunk().await.unwrap();
        for batch in strata_wal::record::decode_batches(&chunk.data, chunk.start).unwrap() {
            for (_, r) in batch.records {
                if let strata_wal::Record::Page { page, .. } = r {
                    *by_space.entry(page.space).or_insert(0) += 1;
                }
            }
        }
    }
    by_space
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_index_is_bulk_built_and_ddl_waits_for_the_tables_users() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let cluster = StorageCluster::start(dir.path(), "engine-test")
        .await
        .unwrap();
    let engine = open(&cluster).await;
    engine.create_database("bank", false).await.unwrap();
    let mut spec = accounts();
    spec.indexes.clear();
    engine.create_table("bank", spec, false).await.unwrap();
    let table = engine.catalog().table("bank", "accounts").unwrap();
    const ROWS: i64 = 3000;
    let mut txn = engine.begin();
    for i in 1..=ROWS {
        let who = name(&format!("n{}", i % 1000));
        txn.insert(
            &table,
            vec![Value::Int(i), who, Value::Int((i * 7919) % ROWS)],
        )
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();

    // A unique index over duplicate names fails and changes nothing.
    let unique = IndexSpec {
        name: "name".into(),
        columns: vec!["name".into()],
        unique: true,
    };
    match engine.create_index("bank", "accounts", unique).await {
        Err(e @ EngineError::DuplicateKey { .. }) => assert_eq!(e.mysql_code().0, 1062),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert!(
        engine
            .catalog()
            .table("bank", "accounts")
            .unwrap()
            .secondary
            .is_empty()
    );

    // A non-unique one is built from whole pages, not one record per row.
    let before = engine.durable_lsn();
    let by_balance = IndexSpec {
        name: "by_balance".into(),
        columns: vec!["balance".into()],
        unique: false,
    };
    engine
        .create_index("bank", "accounts", by_balance)
        .await
        .unwrap();
    let after = engine.durable_lsn();
    let table = engine.catalog().table("bank", "accounts").unwrap();
    let space = table.secondary[0].space;
    let records = records_by_space(&cluster, before, after).await;
    let built = records.get(&space).copied().unwrap_or(0);
    assert!(
        built > 0 && built < ROWS as usize / 20,
        "{built} records built the index"
    );
    let mut txn = engine.begin();
    let rows = scan_all(&mut txn, &engine, 1, Direction::Forward).await;
    assert_eq!(rows.len() as i64, ROWS);
    assert!(rows.windows(2).all(|w| balance(&w[0]) <= balance(&w[1])));
    txn.rollback();

    // DDL waits for a transaction that uses the table, and the old
    // definition is refused to it afterwards.
    let mut user = engine.begin();
    user.get(&table, &[Value::Int(1)]).await.unwrap();
    let dropping = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.drop_index("bank", "accounts", "by_balance").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !dropping.is_finished(),
        "DDL ran while the table was in use"
    );
    user.commit().await.unwrap();
    dropping.await.unwrap().unwrap();
    let mut stale = engine.begin();
    assert!(matches!(
        stale.get(&table, &[Value::Int(1)]).await,
        Err(EngineError::TableDefChanged)
    ));
    stale.rollback();

    // Dropping the table drops its spaces at the page server too.
    engine.drop_table("bank", "accounts", false).await.unwrap();
    assert!(engine.drop_table("bank", "accounts", true).await.is_ok());
    assert!(matches!(
        engine.catalog().table("bank", "accounts"),
        Err(EngineError::UnknownTable { .. })
    ));
    let mut ps = strata_pageserver::client::PageServerClient::connect(
        &cluster.pageserver_endpoint,
        cluster.cluster_id.clone(),
    )
    .await
    .unwrap();
    let gone = ps
        .get_page(table.primary.root(), engine.durable_lsn())
        .await;
    assert!(gone.is_err(), "a dropped table's pages are still served");
    engine.close();
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_values_large_transactions_and_lock_waits() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let cluster = StorageCluster::start(dir.path(), "engine-test")
        .await
        .unwrap();
    let mut cfg = cluster.engine_config();
    cfg.lock_wait_timeout = Duration::from_millis(300);
    cfg.max_txn_bytes = 8 << 20;
    let engine = Engine::open(cfg).await.unwrap();
    engine.create_database("lib", false).await.unwrap();
    engine.create_table("lib", docs(), false).await.unwrap();
    let table = engine.catalog().table("lib", "docs").unwrap();

    // A 3 MiB value goes through overflow pages and comes back whole.
    let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut txn = engine.begin();
    txn.insert(
        &table,
        vec![Value::Int(1), Value::Bytes(big.clone()), name("big")],
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    let mut txn = engine.begin();
    let row = txn.get(&table, &[Value::Int(1)]).await.unwrap().unwrap();
    assert_eq!(row.values[1], Value::Bytes(big.clone()));
    txn.rollback();

    // Past the transaction size limit: a clear error, nothing written.
    let mut txn = engine.begin();
    let mut result = Ok(None);
    for i in 2..6 {
        result = txn
            .insert(
                &table,
                vec![Value::Int(i), Value::Bytes(big.clone()), name("x")],
            )
            .await;
        if result.is_err() {
            break;
        }
    }
    match result {
        Err(e @ EngineError::TxnTooLarge { .. }) => assert_eq!(e.mysql_code().0, 1197),
        other => panic!("expected a too-large transaction, got {other:?}"),
    }
    txn.rollback();

    // A lock held past the wait timeout: 1205 for the waiter.
    let mut holder = engine.begin();
    holder
        .get_for_update(&table, &[Value::Int(1)])
        .await
        .unwrap();
    let mut waiter = engine.begin();
    match waiter.get_for_update(&table, &[Value::Int(1)]).await {
        Err(e @ EngineError::Lock(LockError::Timeout)) => assert_eq!(e.mysql_code().0, 1205),
        other => panic!("expected a lock wait timeout, got {other:?}"),
    }
    holder.rollback();
    // Once the holder is gone the same read goes through.
    assert!(
        waiter
            .get_for_update(&table, &[Value::Int(1)])
            .await
            .unwrap()
            .is_some()
    );
    waiter.rollback();
    engine.close();
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buffer_pool_of_a_few_pages_gives_the_same_answers() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let cluster = StorageCluster::start(dir.path(), "engine-test")
        .await
        .unwrap();
    let mut cfg = cluster.engine_config();
    // Far smaller than the tree: nearly every read and commit misses, and
    // commits lean on the pages they pinned.
    cfg.pool_budget_bytes = 6 * 8192;
    let engine = Engine::open(cfg).await.unwrap();
    engine.create_database("lib", false).await.unwrap();
    engine.create_table("lib", docs(), false).await.unwrap();
    let table = engine.catalog().table("lib", "docs").unwrap();
    let mut model = std::collections::BTreeMap::new();
    let mut seed = 77u64;
    let mut rand = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for round in 0..40u64 {
        let mut txn = engine.begin();
        for _ in 0..15 {
            let k = rand(400) as i64;
            let id = Value::Int(k);
            let body = vec![b'a' + (round % 26) as u8; rand(2000) as usize];
            let tag = format!("t{}", rand(9));
            match txn
                .get_for_update(&table, std::slice::from_ref(&id))
                .await
                .unwrap()
            {
                Some(old) if rand(4) == 0 => {
                    txn.delete(&table, &old).await.unwrap();
                    model.remove(&k);
                }
                Some(old) => {
                    txn.update(
                        &table,
                        &old,
                        vec![id, Value::Bytes(body.clone()), name(&tag)],
                    )
                    .await
                    .unwrap();
                    model.insert(k, (body, tag));
                }
                None => {
                    txn.insert(&table, vec![id, Value::Bytes(body.clone()), name(&tag)])
                        .await
                        .unwrap();
                    model.insert(k, (body, tag));
                }
            }
        }
        txn.commit().await.unwrap();
    }
    assert!(engine.pool_stats().evictions > 0, "the pool never evicted");
    let mut txn = engine.begin();
    let mut scan = txn
        .scan(
            &table,
            0,
            Bound::Unbounded,
            Bound::Unbounded,
            Direction::Reverse,
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(r) = scan.next(&mut txn).await.unwrap() {
        let Value::Int(k) = r.values[0] else { panic!() };
        let Value::Bytes(body) = &r.values[1] else {
            panic!()
        };
        let Value::Bytes(tag) = &r.values[2] else {
            panic!()
        };
        seen.push((k, (body.clone(), String::from_utf8(tag.clone()).unwrap())));
    }
    let expected: Vec<_> = model.into_iter().rev().collect();
    assert_eq!(seen.len(), expected.len());
    assert!(seen == expected, "the rows differ from the model");
    // Through the secondary index: every row once, in tag order.
    let by_tag = txn
        .scan(
            &table,
            1,
            Bound::Unbounded,
            Bound::Unbounded,
            Direction::Forward,
        )
        .await;
    let mut by_tag = by_tag.unwrap();
    let mut n = 0;
    let mut last = Vec::new();
    while let Some(r) = by_tag.next(&mut txn).await.unwrap() {
        let Value::Bytes(tag) = &r.values[2] else {
            panic!()
        };
        assert!(*tag >= last);
        last = tag.clone();
        n += 1;
    }
    assert_eq!(n, seen.len());
    txn.rollback();
    engine.close();
    cluster.stop().await.unwrap();
}
