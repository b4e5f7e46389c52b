//! SQL sessions on an in-process cluster: DDL and DML round trips, access
//! paths, transactions between two sessions, prepared statements with
//! sysbench's exact statements, errors and the variables drivers read.

use std::time::Duration;

use strata_compute::Engine;
use strata_compute::embedded::StorageCluster;
use strata_compute::sql::{FieldType, Output, Session, flags};
use strata_compute::types::Value;

struct Db {
    _dir: tempfile::TempDir,
    _cluster: StorageCluster,
    engine: Engine,
}

async fn start(id: &str) -> Db {
    start_with_lock_wait(id, Duration::from_secs(2)).await
}

async fn start_with_lock_wait(id: &str, lock_wait_timeout: Duration) -> Db {
    let dir = tempfile::tempdir().unwrap();
    let cluster = StorageCluster::start(dir.path(), id).await.unwrap();
    let mut cfg = cluster.engine_config();
    cfg.lock_wait_timeout = lock_wait_timeout;
    let engine = Engine::open(cfg).await.expect("the engine opens");
    Db {
        _dir: dir,
        _cluster: cluster,
        engine,
    }
}

async fn q(s: &mut Session, sql: &str) -> Output {
    match s.query(sql).await {
        Ok(o) => o,
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// The rows as text (NULL as "NULL").
async fn rows(s: &mut Session, sql: &str) -> Vec<Vec<String>> {
    match q(s, sql).await {
        Output::Rows { rows, .. } => rows
            .into_iter()
            .map(|r| r.into_iter().map(|v| v.to_string()).collect())
            .collect(),
        other => panic!("{sql}: not rows: {other:?}"),
    }
}

async fn one(s: &mut Session, sql: &str) -> String {
    let r = rows(s, sql).await;
    assert_eq!(r.len(), 1, "{sql}: {r:?}");
    r[0][0].clone()
}

async fn affected(s: &mut Session, sql: &str) -> (u64, String) {
    match q(s, sql).await {
        Output::Ok {
            affected_rows,
            info,
            ..
        } => (affected_rows, info),
        other => panic!("{sql}: not ok: {other:?}"),
    }
}

async fn code(s: &mut Session, sql: &str) -> u16 {
    match s.query(sql).await {
        Err(e) => e.code,
        Ok(o) => panic!("{sql}: expected an error, got {o:?}"),
    }
}

fn texts(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ddl_dml_types_and_access_paths() {
    let db = start("sql-types").await;
    let mut s = Session::new(db.engine.clone(), 1);
    assert_eq!(code(&mut s, "SELECT * FROM t").await, 1046);
    q(&mut s, "CREATE DATABASE shop").await;
    assert_eq!(code(&mut s, "CREATE DATABASE shop").await, 1007);
    q(&mut s, "CREATE DATABASE IF NOT EXISTS shop").await;
    assert_eq!(code(&mut s, "USE nowhere").await, 1049);
    q(&mut s, "USE shop").await;
    q(
        &mut s,
        "CREATE TABLE items (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, \
         tiny TINYINT, small SMALLINT, med MEDIUMINT, num INT NOT NULL DEFAULT 7, \
         flag BOOLEAN, price DECIMAL(8,2), ratio DOUBLE, code CHAR(4) COLLATE utf8mb4_bin, \
         name VARCHAR(20) CHARACTER SET utf8mb4 NOT NULL, note TEXT, data BLOB, \
         day DATE, at DATETIME, ts TIMESTAMP NULL, UNIQUE KEY (name), KEY by_num (num, price)) \
         ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    )
    .await;
    let (n, _) = affected(
        &mut s,
        "INSERT INTO items (tiny, small, med, flag, price, ratio, code, name, note, data, day, at, ts) \
         VALUES (-5, 300, 70000, TRUE, 12.5, 0.25, 'AbC', 'apple', 'red fruit', x'00ff', \
         '2024-02-29', '2024-02-29 13:14:15', '2024-01-01 00:00:00'), \
         (1, 2, 3, 0, '99.99', 1e3, 'x', 'Banana', NULL, NULL, NULL, NULL, NULL)",
    )
    .await;
    assert_eq!(n, 2);
    q(
        &mut s,
        "INSERT INTO items SET name = 'cherry', num = 3, price = 1",
    )
    .await;
    assert_eq!(one(&mut s, "SELECT LAST_INSERT_ID()").await, "3");
    let all = rows(&mut s, "SELECT * FROM items ORDER BY id").await;
    assert_eq!(
        all[0],
        texts(&[
            "1",
            "-5",
            "300",
            "70000",
            "7",
            "1",
            "12.50",
            "0.25",
            "AbC",
            "apple",
            "red fruit",
            "\0\u{FFFD}",
            "2024-02-29",
            "2024-02-29 13:14:15",
            "2024-01-01 00:00:00"
        ])
    );
    assert_eq!(all[1][6], "99.99");
    assert_eq!(all[1][7], "1000");
    assert_eq!(all[2][4], "3");
    // Column descriptions carry the types and flags.
    let Output::Rows { columns, rows: r } = q(
        &mut s,
        "SELECT id, price, name, data, num + 1, price / 4 FROM items WHERE id = 1",
    )
    .await
    else {
        panic!("rows")
    };
    assert_eq!(columns[0].field_type, FieldType::LongLong);
    assert_ne!(columns[0].flags & flags::PRI_KEY, 0);
    assert_ne!(columns[0].flags & flags::UNSIGNED, 0);
    assert_ne!(columns[0].flags & flags::AUTO_INCREMENT, 0);
    assert_eq!(columns[1].field_type, FieldType::NewDecimal);
    assert_eq!(columns[1].decimals, 2);
    assert_eq!(columns[2].field_type, FieldType::VarString);
    assert_eq!(columns[2].charset, 45);
    assert_eq!(columns[3].field_type, FieldType::Blob);
    assert_eq!(columns[3].charset, 63);
    assert_eq!(columns[4].field_type, FieldType::LongLong);
    assert_eq!(columns[5].field_type, FieldType::NewDecimal);
    assert_eq!(r[0][0], Value::UInt(1));
    assert_eq!(r[0][4], Value::Int(8));
    assert_eq!(r[0][5].to_string(), "3.125000");

    // Collations: name is general_ci, code is utf8mb4_bin.
    assert_eq!(
        one(&mut s, "SELECT id FROM items WHERE name = 'APPLE'").await,
        "1"
    );
    assert!(
        rows(&mut s, "SELECT id FROM items WHERE code = 'abc'")
            .await
            .is_empty()
    );
    assert_eq!(
        code(&mut s, "INSERT INTO items (name) VALUES ('Apple')").await,
        1062
    );

    // Many rows: ranges on the primary key and on a secondary index.
    let values: Vec<String> = (0..50)
        .map(|i| format!("({}, 'n{i}', {})", i % 5, i % 7))
        .collect();
    q(
        &mut s,
        &format!(
            "INSERT INTO items (num, name, price) VALUES {}",
            values.join(",")
        ),
    )
    .await;
    assert_eq!(one(&mut s, "SELECT COUNT(*) FROM items").await, "53");
    assert_eq!(
        rows(
            &mut s,
            "SELECT id FROM items WHERE id BETWEEN 10 AND 13 ORDER BY id DESC"
        )
        .await,
        vec![
            texts(&["13"]),
            texts(&["12"]),
            texts(&["11"]),
            texts(&["10"])
        ]
    );
    assert_eq!(
        one(
            &mut s,
            "SELECT COUNT(*) FROM items WHERE num = 2 AND price >= 3"
        )
        .await,
        "5"
    );
    assert_eq!(
        rows(
            &mut s,
            "SELECT name FROM items WHERE num = 4 AND price < 2 ORDER BY price, name"
        )
        .await,
        vec![texts(&["n14"]), texts(&["n49"]), texts(&["n29"])]
    );
    assert_eq!(
        rows(
            &mut s,
            "SELECT id FROM items WHERE id IN (5, 3, 99, 3) ORDER BY id"
        )
        .await,
        vec![texts(&["3"]), texts(&["5"])]
    );
    assert_eq!(
        rows(&mut s, "SELECT id FROM items WHERE id = 1.5 OR id = '2'").await,
        vec![texts(&["2"])]
    );
    assert_eq!(
        rows(
            &mut s,
            "SELECT name FROM items WHERE name LIKE 'n4_' ORDER BY name LIMIT 2 OFFSET 1"
        )
        .await,
        vec![texts(&["n41"]), texts(&["n42"])]
    );
    assert_eq!(
        rows(
            &mut s,
            "SELECT DISTINCT num FROM items WHERE num < 3 ORDER BY num DESC"
        )
        .await,
        vec![texts(&["2"]), texts(&["1"]), texts(&["0"])]
    );
    assert_eq!(
        rows(
            &mut s,
            "SELECT num, COUNT(*) AS c FROM items WHERE id > 3 GROUP BY num ORDER BY num LIMIT 2"
        )
        .await,
        vec![texts(&["0", "10"]), texts(&["1", "10"])]
    );
    assert_eq!(
        rows(
            &mut s,
            "SELECT MIN(name), MAX(price), SUM(num), AVG(num) FROM items WHERE id > 3"
        )
        .await,
        vec![texts(&["n0", "6.00", "100", "2.0000"])]
    );

    // UPDATE / DELETE affected rows.
    let (n, info) = affected(&mut s, "UPDATE items SET num = num + 1 WHERE num = 4").await;
    assert_eq!(n, 10);
    assert_eq!(info, "Rows matched: 10  Changed: 10  Warnings: 0");
    let (n, info) = affected(&mut s, "UPDATE items SET num = 5 WHERE num = 5").await;
    assert_eq!(
        (n, info.as_str()),
        (0, "Rows matched: 10  Changed: 0  Warnings: 0")
    );
    let (n, _) = affected(&mut s, "DELETE FROM items WHERE num = 5 LIMIT 3").await;
    assert_eq!(n, 3);
    let (n, _) = affected(&mut s, "DELETE FROM items WHERE name LIKE 'n%' AND num = 5").await;
    assert_eq!(n, 7);
    assert_eq!(one(&mut s, "SELECT COUNT(*) FROM items").await, "43");

    // Strict mode and the column errors.
    assert_eq!(
        code(&mut s, "INSERT INTO items (name, tiny) VALUES ('z', 300)").await,
        1264
    );
    assert_eq!(
        code(
            &mut s,
            "INSERT INTO items (name, code) VALUES ('z', 'toolong')"
        )
        .await,
        1406
    );
    assert_eq!(
        code(&mut s, "INSERT INTO items (name, num) VALUES ('z', 'abc')").await,
        1366
    );
    assert_eq!(
        code(&mut s, "INSERT INTO items (name) VALUES (NULL)").await,
        1048
    );
    assert_eq!(
        code(&mut s, "INSERT INTO items (num) VALUES (1)").await,
        1364
    );
    assert_eq!(
        code(&mut s, "INSERT INTO items (name, num) VALUES ('z')").await,
        1136
    );
    assert_eq!(code(&mut s, "SELECT nope FROM items").await, 1054);
    assert_eq!(
        code(&mut s, "SELECT id FROM items WHERE nope = 1").await,
        1054
    );
    assert_eq!(code(&mut s, "SELECT * FROM missing").await, 1146);
    assert_eq!(code(&mut s, "SELEC 1").await, 1064);
    let e = s
        .query("SELECT * FROM items WHERE id = = 1")
        .await
        .unwrap_err();
    assert!(e.message.contains("near '= 1' at line 1"), "{}", e.message);
    assert_eq!(
        code(
            &mut s,
            "SELECT * FROM items a FULL OUTER JOIN items b ON a.id = b.id"
        )
        .await,
        1235
    );
    // A join's columns carry their table's alias and database.
    match q(
        &mut s,
        "SELECT a.id, b.name FROM items a JOIN items b ON a.id = b.id WHERE a.id = 1",
    )
    .await
    {
        Output::Rows { columns, rows } => {
            assert_eq!(rows.len(), 1);
            assert_eq!(
                (columns[0].table.as_str(), columns[1].table.as_str()),
                ("a", "b")
            );
            assert!(!columns[0].db.is_empty() && columns[0].db == columns[1].db);
        }
        other => panic!("not rows: {other:?}"),
    }
    assert_eq!(code(&mut s, "SELECT 9223372036854775807 + 1").await, 1690);

    // SHOW, DROP.
    assert_eq!(rows(&mut s, "SHOW TABLES").await, vec![texts(&["items"])]);
    let create = rows(&mut s, "SHOW CREATE TABLE items").await;
    assert!(
        create[0][1].contains("UNIQUE KEY `name` (`name`)"),
        "{}",
        create[0][1]
    );
    // AUTO_INCREMENT= names the value the next insert takes.
    let next = create[0][1]
        .split(" AUTO_INCREMENT=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no AUTO_INCREMENT=: {}", create[0][1]))
        .to_string();
    q(&mut s, "INSERT INTO items (name) VALUES ('next-id')").await;
    assert_eq!(one(&mut s, "SELECT LAST_INSERT_ID()").await, next);
    q(&mut s, "DELETE FROM items WHERE name = 'next-id'").await;
    q(
        &mut s,
        "CREATE TABLE fresh (id INT AUTO_INCREMENT PRIMARY KEY)",
    )
    .await;
    let fresh = rows(&mut s, "SHOW CREATE TABLE fresh").await;
    assert!(!fresh[0][1].contains("AUTO_INCREMENT="), "{}", fresh[0][1]);
    q(&mut s, "DROP TABLE fresh").await;
    // The table option starts the counter (as mysqldump's output needs).
    q(
        &mut s,
        "CREATE TABLE fresh (id INT AUTO_INCREMENT PRIMARY KEY) ENGINE=InnoDB AUTO_INCREMENT=100",
    )
    .await;
    q(&mut s, "INSERT INTO fresh VALUES (NULL)").await;
    assert_eq!(one(&mut s, "SELECT LAST_INSERT_ID()").await, "100");
    let fresh = rows(&mut s, "SHOW CREATE TABLE fresh").await;
    assert!(
        fresh[0][1].contains(" AUTO_INCREMENT=101 "),
        "{}",
        fresh[0][1]
    );
    // ALTER TABLE … AUTO_INCREMENT raises the counter, never lowers it.
    q(&mut s, "ALTER TABLE fresh AUTO_INCREMENT = 500").await;
    q(&mut s, "INSERT INTO fresh VALUES (NULL)").await;
    assert_eq!(one(&mut s, "SELECT LAST_INSERT_ID()").await, "500");
    q(&mut s, "ALTER TABLE fresh AUTO_INCREMENT = 10").await;
    q(&mut s, "INSERT INTO fresh VALUES (NULL)").await;
    assert_eq!(one(&mut s, "SELECT LAST_INSERT_ID()").await, "501");
    q(&mut s, "DROP TABLE fresh").await;
    assert_eq!(
        code(
            &mut s,
            "CREATE TABLE fresh (id INT PRIMARY KEY) AUTO_INCREMENT=x"
        )
        .await,
        1064
    );
    assert!(
        rows(&mut s, "SHOW DATABASES")
            .await
            .contains(&texts(&["shop"]))
    );
    q(&mut s, "DROP INDEX by_num ON items").await;
    q(&mut s, "DROP TABLE items").await;
    assert_eq!(code(&mut s, "DROP TABLE items").await, 1051);
    q(&mut s, "DROP TABLE IF EXISTS items").await;
    q(&mut s, "DROP DATABASE shop").await;
    assert_eq!(code(&mut s, "DROP DATABASE shop").await, 1008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_between_sessions() {
    let db = start("sql-txn").await;
    let mut a = Session::new(db.engine.clone(), 1);
    let mut b = Session::new(db.engine.clone(), 2);
    q(&mut a, "CREATE DATABASE bank").await;
    q(&mut a, "USE bank").await;
    b.init_db("BANK").await.unwrap();
    q(
        &mut a,
        "CREATE TABLE acct (id INT PRIMARY KEY, bal INT NOT NULL)",
    )
    .await;
    q(&mut a, "INSERT INTO acct VALUES (1, 100), (2, 50)").await;

    // BEGIN … ROLLBACK leaves nothing; others never see uncommitted data.
    q(&mut a, "BEGIN").await;
    assert!(a.in_transaction());
    q(&mut a, "UPDATE acct SET bal = bal - 10 WHERE id = 1").await;
    assert_eq!(one(&mut a, "SELECT bal FROM acct WHERE id = 1").await, "90");
    assert_eq!(
        one(&mut b, "SELECT bal FROM acct WHERE id = 1").await,
        "100"
    );
    q(&mut a, "ROLLBACK").await;
    assert!(!a.in_transaction());
    assert_eq!(
        one(&mut a, "SELECT bal FROM acct WHERE id = 1").await,
        "100"
    );

    // A failing statement in a transaction undoes only itself.
    q(&mut a, "START TRANSACTION").await;
    q(&mut a, "INSERT INTO acct VALUES (3, 1)").await;
    assert_eq!(
        code(&mut a, "INSERT INTO acct VALUES (4, 1), (1, 1)").await,
        1062
    );
    q(&mut a, "COMMIT").await;
    assert_eq!(
        rows(&mut b, "SELECT id FROM acct ORDER BY id").await,
        vec![texts(&["1"]), texts(&["2"]), texts(&["3"])]
    );

    // Repeatable read: b's snapshot stays until it commits.
    q(&mut b, "START TRANSACTION WITH CONSISTENT SNAPSHOT").await;
    assert_eq!(one(&mut b, "SELECT SUM(bal) FROM acct").await, "151");
    q(&mut a, "UPDATE acct SET bal = 0 WHERE id = 3").await;
    assert_eq!(one(&mut b, "SELECT SUM(bal) FROM acct").await, "151");
    // A locking read sees the latest.
    assert_eq!(
        one(&mut b, "SELECT bal FROM acct WHERE id = 3 FOR UPDATE").await,
        "0"
    );
    q(&mut b, "COMMIT").await;
    assert_eq!(one(&mut b, "SELECT SUM(bal) FROM acct").await, "150");

    // autocommit = 0: a transaction starts by itself and lasts to COMMIT.
    q(&mut a, "SET autocommit = 0").await;
    assert!(!a.autocommit());
    assert_eq!(one(&mut a, "SELECT @@autocommit").await, "0");
    q(&mut a, "DELETE FROM acct WHERE id = 3").await;
    assert!(a.in_transaction());
    assert_eq!(one(&mut b, "SELECT COUNT(*) FROM acct").await, "3");
    q(&mut a, "COMMIT").await;
    assert_eq!(one(&mut b, "SELECT COUNT(*) FROM acct").await, "2");
    q(&mut a, "UPDATE acct SET bal = 1 WHERE id = 2").await;
    // SET autocommit = 1 commits the open transaction.
    q(&mut a, "SET autocommit = 1").await;
    assert!(!a.in_transaction());
    assert_eq!(one(&mut b, "SELECT bal FROM acct WHERE id = 2").await, "1");

    // A row lock held by a waits b out (lock wait timeout, 1205).
    q(&mut a, "BEGIN").await;
    q(&mut a, "UPDATE acct SET bal = 2 WHERE id = 2").await;
    assert_eq!(
        code(&mut b, "UPDATE acct SET bal = 3 WHERE id = 2").await,
        1205
    );
    // DDL commits the open transaction.
    q(&mut a, "CREATE TABLE other (x INT)").await;
    assert!(!a.in_transaction());
    assert_eq!(one(&mut b, "SELECT bal FROM acct WHERE id = 2").await, "2");
    // A table without a primary key works through its hidden row id.
    q(&mut a, "INSERT INTO other VALUES (1), (1), (2)").await;
    assert_eq!(affected(&mut a, "DELETE FROM other WHERE x = 1").await.0, 2);
    assert_eq!(one(&mut b, "SELECT COUNT(*) FROM other").await, "1");
}

/// `innodb_lock_wait_timeout` is the session's: with the server's wait at
/// an hour, a session that sets 1 s gets 1205 (a hang here means
/// the variable was not read), and the blocked statement alone is undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_wait_timeout_is_the_sessions() {
    let db = start_with_lock_wait("sql-lockwait", Duration::from_secs(3600)).await;
    let mut a = Session::new(db.engine.clone(), 1);
    let mut b = Session::new(db.engine.clone(), 2);
    q(&mut a, "CREATE DATABASE lw").await;
    q(&mut a, "USE lw").await;
    b.init_db("lw").await.unwrap();
    q(&mut a, "CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    q(&mut a, "INSERT INTO t VALUES (1, 0), (2, 0)").await;
    // A session starts from the server's wait.
    assert_eq!(
        one(&mut b, "SELECT @@innodb_lock_wait_timeout").await,
        "3600"
    );
    // Out of range is clamped to MySQL's bounds; a bad value refused.
    q(&mut b, "SET innodb_lock_wait_timeout = 0").await;
    assert_eq!(one(&mut b, "SELECT @@innodb_lock_wait_timeout").await, "1");
    assert_eq!(
        code(&mut b, "SET innodb_lock_wait_timeout = 'x'").await,
        1232
    );

    q(&mut a, "BEGIN").await;
    q(&mut a, "UPDATE t SET v = 1 WHERE id = 1").await;
    q(&mut b, "BEGIN").await;
    q(&mut b, "UPDATE t SET v = 2 WHERE id = 2").await;
    let blocked = tokio::time::timeout(
        Duration::from_secs(120),
        code(&mut b, "UPDATE t SET v = 2 WHERE id = 1"),
    )
    .await
    .expect("the session's 1 s lock wait, not the engine's hour");
    assert_eq!(blocked, 1205);
    // Only the timed-out statement is undone (innodb_rollback_on_timeout=OFF).
    q(&mut b, "COMMIT").await;
    q(&mut a, "COMMIT").await;
    assert_eq!(
        rows(&mut a, "SELECT id, v FROM t ORDER BY id").await,
        vec![texts(&["1", "1"]), texts(&["2", "2"])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sysbench_statements_prepared() {
    let db = start("sql-sysbench").await;
    let mut s = Session::new(db.engine.clone(), 7);
    q(&mut s, "CREATE DATABASE sbtest").await;
    q(&mut s, "USE sbtest").await;
    q(
        &mut s,
        "CREATE TABLE sbtest1(id INTEGER NOT NULL AUTO_INCREMENT, k INTEGER DEFAULT '0' NOT NULL, \
         c CHAR(120) DEFAULT '' NOT NULL, pad CHAR(60) DEFAULT '' NOT NULL, PRIMARY KEY (id)) \
         /*! ENGINE = innodb */",
    )
    .await;
    let values: Vec<String> = (1..=100)
        .map(|i| format!("({}, '{:03}-c', 'pad{i}')", 1000 - i, 100 - i))
        .collect();
    let out = q(
        &mut s,
        &format!("INSERT INTO sbtest1(k, c, pad) VALUES{}", values.join(",")),
    )
    .await;
    assert!(matches!(
        out,
        Output::Ok {
            affected_rows: 100,
            last_insert_id: 1,
            ..
        }
    ));
    q(&mut s, "CREATE INDEX k_1 ON sbtest1(k)").await;

    let point = s.prepare("SELECT c FROM sbtest1 WHERE id=?").await.unwrap();
    assert_eq!(point.params, 1);
    assert_eq!(point.columns.len(), 1);
    assert_eq!(point.columns[0].field_type, FieldType::String);
    let range = s
        .prepare("SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ?")
        .await
        .unwrap();
    let sum = s
        .prepare("SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN ? AND ?")
        .await
        .unwrap();
    let order = s
        .prepare("SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c")
        .await
        .unwrap();
    let distinct = s
        .prepare("SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c")
        .await
        .unwrap();
    let inc = s
        .prepare("UPDATE sbtest1 SET k=k+1 WHERE id=?")
        .await
        .unwrap();
    let setc = s
        .prepare("UPDATE sbtest1 SET c=? WHERE id=?")
        .await
        .unwrap();
    let del = s.prepare("DELETE FROM sbtest1 WHERE id=?").await.unwrap();
    let ins = s
        .prepare("INSERT INTO sbtest1 (id, k, c, pad) VALUES (?, ?, ?, ?)")
        .await
        .unwrap();
    for (p, n) in [
        (&range, 2),
        (&sum, 2),
        (&order, 2),
        (&distinct, 2),
        (&inc, 1),
        (&setc, 2),
        (&del, 1),
        (&ins, 4),
    ] {
        assert_eq!(p.params, n);
    }
    assert_eq!(sum.columns[0].field_type, FieldType::NewDecimal);

    let ex = |out: Output| match out {
        Output::Rows { rows, .. } => rows
            .into_iter()
            .map(|r| r.into_iter().map(|v| v.to_string()).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        Output::Ok { affected_rows, .. } => vec![vec![affected_rows.to_string()]],
    };
    let int = Value::Int;
    let text = |t: &str| Value::Bytes(t.as_bytes().to_vec());
    assert_eq!(
        ex(s.execute(point.id, vec![int(5)]).await.unwrap()),
        vec![texts(&["095-c"])]
    );
    assert_eq!(
        ex(s.execute(range.id, vec![int(3), int(5)]).await.unwrap()),
        vec![texts(&["097-c"]), texts(&["096-c"]), texts(&["095-c"])]
    );
    assert_eq!(
        ex(s.execute(sum.id, vec![int(1), int(10)]).await.unwrap()),
        vec![texts(&["9945"])]
    );
    assert_eq!(
        ex(s.execute(order.id, vec![text("3"), text("5")])
            .await
            .unwrap()),
        vec![texts(&["095-c"]), texts(&["096-c"]), texts(&["097-c"])]
    );
    q(&mut s, "UPDATE sbtest1 SET c = '095-c' WHERE id = 4").await;
    assert_eq!(
        ex(s.execute(distinct.id, vec![int(3), int(5)]).await.unwrap()),
        vec![texts(&["095-c"]), texts(&["097-c"])]
    );
    assert_eq!(
        ex(s.execute(inc.id, vec![int(5)]).await.unwrap()),
        vec![texts(&["1"])]
    );
    assert_eq!(
        one(&mut s, "SELECT k FROM sbtest1 WHERE id = 5").await,
        "996"
    );
    assert_eq!(
        ex(s.execute(setc.id, vec![text("new"), int(5)]).await.unwrap()),
        vec![texts(&["1"])]
    );
    assert_eq!(
        ex(s.execute(del.id, vec![int(5)]).await.unwrap()),
        vec![texts(&["1"])]
    );
    assert_eq!(
        ex(s.execute(del.id, vec![int(5)]).await.unwrap()),
        vec![texts(&["0"])]
    );
    assert_eq!(
        ex(
            s.execute(ins.id, vec![int(5), int(7), text("again"), text("p")])
                .await
                .unwrap()
        ),
        vec![texts(&["1"])]
    );
    assert_eq!(
        one(&mut s, "SELECT c FROM sbtest1 WHERE k = 7").await,
        "again"
    );
    // The secondary index: a range in index order.
    assert_eq!(
        rows(
            &mut s,
            "SELECT id FROM sbtest1 WHERE k BETWEEN 990 AND 992 ORDER BY k"
        )
        .await,
        vec![texts(&["10"]), texts(&["9"]), texts(&["8"])]
    );
    // Wrong parameter counts, unknown statements; a closed statement is gone.
    assert_eq!(s.execute(point.id, vec![]).await.unwrap_err().code, 1210);
    s.close(point.id);
    assert_eq!(
        s.execute(point.id, vec![int(1)]).await.unwrap_err().code,
        1243
    );
    // A prepared join with a subquery: `?` counted in text order through
    // the subquery, the uncorrelated subquery run once per execution.
    let join = s
        .prepare(
            "SELECT a.id, b.id FROM sbtest1 a JOIN sbtest1 b ON b.id = a.id + ? \
             WHERE a.id = ? AND b.k > (SELECT MIN(k) FROM sbtest1 WHERE id < ?)",
        )
        .await
        .unwrap();
    assert_eq!(join.params, 3);
    assert_eq!(
        ex(s.execute(join.id, vec![int(1), int(3), int(100)])
            .await
            .unwrap()),
        vec![texts(&["3", "4"])]
    );
    assert!(
        ex(s.execute(join.id, vec![int(1), int(3), int(5)])
            .await
            .unwrap())
        .is_empty()
    );
    // A plan follows its table's definition.
    q(&mut s, "CREATE INDEX c_1 ON sbtest1(c)").await;
    assert_eq!(
        ex(s.execute(join.id, vec![int(3), int(3), int(100)])
            .await
            .unwrap()),
        vec![texts(&["3", "6"])]
    );
    assert_eq!(
        ex(s.execute(range.id, vec![int(3), int(4)]).await.unwrap()),
        vec![texts(&["097-c"]), texts(&["095-c"])]
    );
    // Repeated executes (the same plan) stay fast and correct.
    for i in 20..220 {
        let id = 1 + i % 90;
        s.execute(inc.id, vec![int(id)]).await.unwrap();
    }
    assert_eq!(one(&mut s, "SELECT SUM(k) FROM sbtest1").await, "94162");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn variables_drivers_read() {
    let db = start("sql-vars").await;
    let mut s = Session::new(db.engine.clone(), 42);
    let Output::Rows { columns, rows: r } = q(
        &mut s,
        "SELECT @@max_allowed_packet, @@wait_timeout, @@version",
    )
    .await
    else {
        panic!("rows")
    };
    assert_eq!(r[0][0], Value::Int(67_108_864));
    assert_eq!(r[0][1], Value::Int(28_800));
    assert!(r[0][2].to_string().starts_with("8.0."));
    assert_eq!(columns[0].field_type, FieldType::LongLong);
    assert_eq!(columns[0].name, "@@max_allowed_packet");
    let connector = "SELECT @@session.auto_increment_increment AS auto_increment_increment, \
        @@character_set_client AS character_set_client, @@character_set_connection AS \
        character_set_connection, @@character_set_results AS character_set_results, \
        @@character_set_server AS character_set_server, @@collation_server AS collation_server, \
        @@collation_connection AS collation_connection, @@init_connect AS init_connect, \
        @@interactive_timeout AS interactive_timeout, @@license AS license, \
        @@lower_case_table_names AS lower_case_table_names, @@max_allowed_packet AS \
        max_allowed_packet, @@net_write_timeout AS net_write_timeout, @@performance_schema AS \
        performance_schema, @@query_cache_size AS query_cache_size, @@query_cache_type AS \
        query_cache_type, @@sql_mode AS sql_mode, @@system_time_zone AS system_time_zone, \
        @@time_zone AS time_zone, @@transaction_isolation AS transaction_isolation, \
        @@wait_timeout AS wait_timeout";
    let Output::Rows { columns, rows: r } = q(&mut s, connector).await else {
        panic!("rows")
    };
    assert_eq!(columns[0].name, "auto_increment_increment");
    assert_eq!(r[0][0], Value::Int(1));
    assert_eq!(r[0][1].to_string(), "utf8mb4");
    assert_eq!(r[0][19].to_string(), "REPEATABLE-READ");
    assert_eq!(
        rows(&mut s, "SELECT @@version_comment, @@tx_isolation, @@global.sql_mode, CONNECTION_ID(), DATABASE()").await,
        vec![texts(&[
            "Strata",
            "REPEATABLE-READ",
            "STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION",
            "42",
            "NULL"
        ])]
    );
    q(&mut s, "SET NAMES utf8mb4 COLLATE utf8mb4_bin").await;
    assert_eq!(
        one(&mut s, "SELECT @@collation_connection").await,
        "utf8mb4_bin"
    );
    q(&mut s, "SET @@session.wait_timeout = 60, @x = 1 + 2").await;
    q(&mut s, "SET SESSION sql_mode = 'STRICT_ALL_TABLES'").await;
    assert_eq!(
        rows(&mut s, "SELECT @@wait_timeout, @x, @unset, @@sql_mode").await,
        vec![texts(&["60", "3", "NULL", "STRICT_ALL_TABLES"])]
    );
    assert_eq!(code(&mut s, "SET nonsense = 1").await, 1193);
    assert_eq!(code(&mut s, "SELECT @@nonsense").await, 1193);
    let r = rows(&mut s, "SHOW VARIABLES LIKE 'max_allowed%'").await;
    assert_eq!(r, vec![texts(&["max_allowed_packet", "67108864"])]);
    assert!(rows(&mut s, "SHOW WARNINGS").await.is_empty());
    // Expressions without a table.
    assert_eq!(
        rows(
            &mut s,
            "SELECT 1 + 1, 7 DIV 2, 7 % 3, 1 / 0, 1 / 3, 'abc' = 'ABC', NULL = 1, \
                      NULL IS NULL, 2 IN (1, 2), 3 BETWEEN 1 AND 2, CONCAT('a', 1, 'b'), \
                      LENGTH('héllo'), UPPER('x'), IFNULL(NULL, 'd'), COALESCE(NULL, NULL, 3), \
                      '10' > 9, 1 AND NULL, 0 AND NULL, 1 OR NULL"
        )
        .await,
        vec![texts(&[
            "2", "3", "1", "NULL", "0.3333", "1", "NULL", "1", "1", "0", "a1b", "6", "X", "d", "3",
            "1", "NULL", "0", "1"
        ])]
    );
    assert!(one(&mut s, "SELECT NOW()").await.starts_with("20"));
    let p = s.prepare("SELECT ?, ? + 1").await.unwrap();
    assert_eq!(p.params, 2);
    let out = s
        .execute(p.id, vec![Value::Bytes(b"hi".to_vec()), Value::Int(41)])
        .await
        .unwrap();
    let Output::Rows { columns, rows: r } = out else {
        panic!("rows")
    };
    assert_eq!(r[0], vec![Value::Bytes(b"hi".to_vec()), Value::Int(42)]);
    assert_eq!(columns[0].field_type, FieldType::VarString);
    assert_eq!(columns[1].field_type, FieldType::LongLong);
    // Placeholders inside strings and comments do not count.
    let p = s.prepare("SELECT '?', ? /* ? */").await.unwrap();
    assert_eq!(p.params, 1);
    assert_eq!(s.query("").await.unwrap_err().code, 1065);
}
