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
    // Counters set by DDL alone (no insert since) are in the space header.
    q(
        &mut s,
        "CREATE TABLE f (id INT AUTO_INCREMENT PRIMARY KEY) AUTO_INCREMENT=40",
    )
    .await;
    q(
        &mut s,
        "CREATE TABLE g (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
    )
    .await;
    q(&mut s, "ALTER TABLE g AUTO_INCREMENT = 70").await;
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
    q(&mut s, "INSERT INTO f VALUES ()").await;
    q(&mut s, "INSERT INTO g (v) VALUES (1)").await;
    assert_eq!(rows(&mut s, "SELECT id FROM f").await, vec!["40"]);
    assert_eq!(rows(&mut s, "SELECT id FROM g").await, vec!["70"]);
    engine.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processlist_kill_status_and_show_create_table() {
    use strata_compute::mysql::HandlerFactory;
    use strata_compute::sql::SessionFactory;

    let dir = tempfile::tempdir().unwrap();
    let cluster = StorageCluster::start(dir.path(), "schema-kill")
        .await
        .unwrap();
    let mut cfg = cluster.engine_config();
    cfg.lock_wait_timeout = Duration::from_secs(60);
    let engine = Engine::open(cfg).await.unwrap();
    let factory = SessionFactory::new(engine.clone());
    let mut a = factory.make(1);
    let mut b = factory.make(2);
    let mut c = factory.make(3);
    q(&mut a, "CREATE DATABASE d").await;
    q(&mut a, "USE d").await;
    q(&mut b, "USE d").await;
    q(
        &mut a,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT DEFAULT '7', s VARCHAR(5) COLLATE utf8mb4_bin, UNIQUE KEY uv (v))",
    )
    .await;
    assert_eq!(
        rows(&mut a, "SHOW CREATE TABLE t").await,
        vec![
            "t CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `v` int DEFAULT '7',\n  \
             `s` varchar(5) COLLATE utf8mb4_bin DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  \
             UNIQUE KEY `uv` (`v`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 \
             COLLATE=utf8mb4_general_ci"
        ]
    );
    q(&mut a, "INSERT INTO t (id) VALUES (1)").await;
    q(&mut a, "BEGIN").await;
    q(&mut a, "SELECT * FROM t WHERE id = 1 FOR UPDATE").await;

    // b waits on a's row lock until c kills its query.
    let waiting = tokio::spawn(async move {
        let r = b.query("UPDATE t SET v = 2 WHERE id = 1").await;
        (b, r)
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = rows(&mut c, "SHOW FULL PROCESSLIST").await;
        if list
            .iter()
            .any(|r| r.starts_with("2 ") && r.contains("UPDATE t SET"))
        {
            assert!(
                list.iter()
                    .any(|r| r.starts_with("1 root localhost d Sleep")),
                "{list:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b never waits: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    q(&mut c, "KILL QUERY 2").await;
    let (mut b, r) = waiting.await.unwrap();
    assert_eq!(r.unwrap_err().code, 1317);
    q(&mut a, "COMMIT").await;
    // The killed statement changed nothing; the connection goes on.
    assert_eq!(rows(&mut b, "SELECT v FROM t").await, vec!["7"]);
    q(&mut c, "KILL 2").await;
    assert_eq!(code(&mut b, "SELECT 1").await, 1317);

    let status = rows(&mut c, "SHOW STATUS").await;
    assert!(
        status.contains(&"Threads_connected 3".to_string()),
        "{status:?}"
    );
    assert!(
        status.iter().any(|r| r.starts_with("Questions ")),
        "{status:?}"
    );
    drop(b);
    let list = rows(&mut c, "SHOW PROCESSLIST").await;
    assert_eq!(list.len(), 2, "{list:?}");
    engine.close();
}
