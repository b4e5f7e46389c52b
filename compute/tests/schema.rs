//! Schema changes through SQL sessions, and what a reopened engine finds
//! after them: ALTER TABLE in place and by rebuild, a rebuild that fails
//! half way (its built spaces are named by no one), RENAME and TRUNCATE.

use std::time::Duration;

use strata_compute::Engine;
use strata_compute::embedded::StorageCluster;
use strata_compute::sql::{Output, Session};

async fn open(cluster: &StorageCluster) -> Engine {
    let mut cfg = cluster.engine_config();
    cfg.lock_wait_timeout = Duration::from_secs(2);
    Engine::open(cfg).await.expect("the engine opens")
}

async fn q(s: &mut Session, sql: &str) -> Output {
    match s.query(sql).await {
        Ok(o) => o,
        Err(e) => panic!("{sql}: {e}"),
    }
}

async fn rows(s: &mut Session, sql: &str) -> Vec<String> {
    match q(s, sql).await {
        Output::Rows { rows, .. } => rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect(),
        other => panic!("{sql}: not rows: {other:?}"),
    }
}

async fn code(s: &mut Session, sql: &str) -> u16 {
    match s.query(sql).await {
        Err(e) => e.code,
        Ok(o) => panic!("{sql}: expected an error, got {o:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schema_changes_survive_a_reopen_and_a_failed_rebuild_leaves_the_old_table() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = StorageCluster::start(dir.path(), "schema-reopen")
        .await
        .unwrap();
    let engine = open(&cluster).await;
    let mut s = Session::new(engine.clone(), 1);
    q(&mut s, "CREATE DATABASE d").await;
    q(&mut s, "USE d").await;
    q(
        &mut s,
        "CREATE TABLE t (id INT PRIMARY KEY, a INT NOT NULL, b VARCHAR(10))",
    )
    .await;
    let values: Vec<String> = (1..=300)
        .map(|i| format!("({i}, {}, 'v{}')", i % 7, i % 3))
        .collect();
    q(
        &mut s,
        &format!("INSERT INTO t VALUES {}", values.join(",")),
    )
    .await;
    let before = engine.catalog().table("d", "t").unwrap();

    // In place: same spaces, a new version.
    q(&mut s, "ALTER TABLE t ADD COLUMN c INT DEFAULT 5").await;
    let in_place = engine.catalog().table("d", "t").unwrap();
    assert_eq!(in_place.id, before.id);
    assert_eq!(in_place.schema_version, before.schema_version + 1);

    // A rebuild that fails on its second index: the first was built into a
    // space no one names; the table is as it was.
    assert_eq!(
        code(
            &mut s,
            "ALTER TABLE t MODIFY a BIGINT NOT NULL, ADD INDEX kb (b), ADD UNIQUE ua (a)"
        )
        .await,
        1062
    );
    let after_failure = engine.catalog().table("d", "t").unwrap();
    assert_eq!(after_failure.id, in_place.id);
    assert!(after_failure.secondary.is_empty());

    // A rebuild that succeeds: new spaces.
    q(
        &mut s,
        "ALTER TABLE t MODIFY a BIGINT NOT NULL AFTER b, ADD INDEX kb (b), DROP COLUMN c",
    )
    .await;
    let rebuilt = engine.catalog().table("d", "t").unwrap();
    assert_ne!(rebuilt.id, in_place.id);
    q(&mut s, "RENAME TABLE t TO t2").await;
    q(&mut s, "CREATE TABLE e (id INT AUTO_INCREMENT PRIMARY KEY)").await;
    q(&mut s, "INSERT INTO e VALUES (), (), ()").await;
    q(&mut s, "TRUNCATE TABLE e").await;
    drop(s);
    engine.close();

    let engine = open(&cluster).await;
    let mut s = Session::new(engine.clone(), 2);
    q(&mut s, "USE d").await;
    assert_eq!(code(&mut s, "SELECT * FROM t").await, 1146);
    assert_eq!(
        rows(&mut s, "SELECT COUNT(*), SUM(a) FROM t2").await,
        vec![format!("300 {}", (1..=300).map(|i| i % 7).sum::<i64>())]
    );
    assert_eq!(
        rows(&mut s, "SELECT id, b, a FROM t2 WHERE id = 10").await,
        vec!["10 v1 3"]
    );
    assert_eq!(
        rows(&mut s, "SELECT COUNT(*) FROM t2 WHERE b = 'v2'").await,
        vec!["100"]
    );
    let t2 = engine.catalog().table("d", "t2").unwrap();
    assert_eq!(t2.id, rebuilt.id);
    assert_eq!(t2.columns.len(), 3);
    q(&mut s, "INSERT INTO e VALUES ()").await;
    assert_eq!(rows(&mut s, "SELECT id FROM e").await, vec!["1"]);
    engine.close();
}
