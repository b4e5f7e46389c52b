//! Differential test: the same randomly generated SELECTs (over one table,
//! then two-table joins) on
//! Strata (`strata up`) and on a private MariaDB server (Debian's
//! `mariadbd`, started here in a temporary directory on a free port), with
//! the results compared as text.
//!
//! The generator only builds expressions MySQL 8 and MariaDB agree on:
//! operators, CASE/IF/IFNULL/COALESCE/NULLIF, integer and exact DECIMAL
//! arithmetic, the common string, numeric and date functions and CAST.
//! Doubles are compared rounded and as decimals (CAST(ROUND(x, 4) AS
//! DECIMAL(30,4))), since servers print them differently. Both sides run with `time_zone = '+00:00'`.
//!
//! The joins (a quarter as many queries as the single-table ones) are
//! INNER, LEFT and RIGHT joins and comma joins of `t` with a second table
//! `u` (some of whose rows point at no `t` row) on equality, non-equality
//! and OR conditions, with WHERE, expressions over both sides, and grouping.
//!
//! Seeded: the seed is printed, and `STRATA_DIFF_SEED=<seed>` replays a
//! run; `STRATA_DIFF_QUERIES=<n>` changes how many queries run.
//! Without `mariadbd` (run tests/install-clients.sh) the test fails, saying so.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

/// splitmix64: small, seeded, good enough to pick grammar productions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const WORDS: &[&str] = &[
    "abc",
    "Hello",
    "hello world",
    "x%y",
    "a_b",
    "  pad  ",
    "",
    "MiXeD",
    "foobarbar",
    "12",
    "3.5",
    "zz",
    "Bar",
];

const TABLE: &str = "CREATE TABLE t (id INT PRIMARY KEY, i INT, b BIGINT, d DECIMAL(10,3), \
     s VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci, dt DATETIME, dd DATE, \
     KEY ii (i), KEY idd (dd, d), KEY idt (dt))";

const TABLE_U: &str = "CREATE TABLE u (id INT PRIMARY KEY, tid INT, k INT, \
     w VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci, KEY tid_idx (tid))";

/// A row of `u`: `tid` names a row of `t` (ids 1..=60) or none.
fn u_row(rng: &mut Rng, id: usize) -> String {
    let null = |rng: &mut Rng, v: String| if rng.chance(10) { "NULL".into() } else { v };
    let tid = rng.range(1, 75).to_string();
    let tid = null(rng, tid);
    let k = rng.range(-20, 20).to_string();
    let k = null(rng, k);
    let w = sql_str(rng.pick(WORDS));
    let w = null(rng, w);
    format!("({id}, {tid}, {k}, {w})")
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn row(rng: &mut Rng, id: usize) -> String {
    let null = |rng: &mut Rng, v: String| if rng.chance(10) { "NULL".into() } else { v };
    let i = rng.range(-100, 100).to_string();
    let b = rng.range(-1_000_000, 1_000_000).to_string();
    let d = format!("{}.{:03}", rng.range(-9999, 9999), rng.below(1000));
    let s = sql_str(rng.pick(WORDS));
    let dt = format!(
        "'{}-{:02}-{:02} {:02}:{:02}:{:02}'",
        rng.range(2000, 2030),
        rng.range(1, 12),
        rng.range(1, 28),
        rng.range(0, 23),
        rng.range(0, 59),
        rng.range(0, 59)
    );
    let dd = format!(
        "'{}-{:02}-{:02}'",
        rng.range(1990, 2030),
        rng.range(1, 12),
        rng.range(1, 28)
    );
    let values = [i, b, d, s, dt, dd].map(|v| null(rng, v)).join(", ");
    format!("({id}, {values})")
}

/// Random expressions of a given type, over table `t`'s columns.
struct Gen<'a> {
    rng: &'a mut Rng,
}

impl Gen<'_> {
    fn int(&mut self, depth: u32) -> String {
        if depth == 0 || self.rng.chance(25) {
            return match self.rng.below(3) {
                0 => "i".into(),
                1 => "b".into(),
                _ => self.rng.range(-20, 20).to_string(),
            };
        }
        let d = depth - 1;
        match self.rng.below(23) {
            0 => format!("({} + {})", self.int(d), self.int(d)),
            1 => format!("({} - {})", self.int(d), self.int(d)),
            2 => format!("({} * {})", self.int(d), self.rng.range(-9, 9)),
            3 => format!("({} DIV {})", self.int(d), self.int(d)),
            4 => format!("({} % {})", self.int(d), self.int(d)),
            5 => format!("ABS({})", self.int(d)),
            6 => format!("SIGN({})", self.int(d)),
            7 => format!("LENGTH({})", self.string(d)),
            8 => format!("CHAR_LENGTH({})", self.string(d)),
            9 => format!("LOCATE({}, {})", self.string(d), self.string(d)),
            10 => format!(
                "{}({})",
                self.rng
                    .pick(&["YEAR", "MONTH", "DAY", "DAYOFWEEK", "DAYOFYEAR"]),
                self.date(d)
            ),
            // A date's text read as a TIME differs between servers: only
            // datetimes here.
            21 => format!("{}(dt)", self.rng.pick(&["HOUR", "MINUTE", "SECOND"])),
            11 => format!("DATEDIFF({}, {})", self.date(d), self.date(d)),
            12 => format!("FLOOR({})", self.dec(d)),
            13 => format!("CEIL({})", self.dec(d)),
            14 => format!("IF({}, {}, {})", self.cond(d), self.int(d), self.int(d)),
            15 => format!("IFNULL({}, {})", self.int(d), self.int(d)),
            16 => format!(
                "COALESCE({}, {}, {})",
                self.int(d),
                self.int(d),
                self.int(d)
            ),
            17 => format!(
                "CASE {} WHEN {} THEN {} WHEN {} THEN {} ELSE {} END",
                self.int(d),
                self.rng.range(-3, 3),
                self.int(d),
                self.rng.range(-3, 3),
                self.int(d),
                self.int(d)
            ),
            18 => format!("GREATEST({}, {})", self.int(d), self.int(d)),
            19 => format!("LEAST({}, {}, {})", self.int(d), self.int(d), self.int(d)),
            20 => format!("CAST({} AS SIGNED)", self.dec(d)),
            22 => format!("NULLIF({}, {})", self.int(d), self.int(d)),
            _ => unreachable!("below(23)"),
        }
    }

    fn dec(&mut self, depth: u32) -> String {
        if depth == 0 || self.rng.chance(25) {
            return match self.rng.below(2) {
                0 => "d".into(),
                _ => format!("{}.{:02}", self.rng.range(-50, 50), self.rng.below(100)),
            };
        }
        let d = depth - 1;
        match self.rng.below(11) {
            0 => format!("({} + {})", self.dec(d), self.dec(d)),
            1 => format!("({} - {})", self.dec(d), self.int(d)),
            2 => format!("({} * {})", self.dec(d), self.rng.range(-5, 5)),
            3 => format!("({} - {})", self.int(d), self.dec(d)),
            4 => format!("({} + {})", self.int(d), self.dec(d)),
            5 => format!("ROUND({}, {})", self.dec(d), self.rng.range(-1, 4)),
            6 => format!("TRUNCATE({}, {})", self.dec(d), self.rng.range(-1, 4)),
            7 => format!("ABS({})", self.dec(d)),
            8 => format!("CAST({} AS DECIMAL(12,2))", self.dec(d)),
            // MariaDB prints a zero remainder of a negative DECIMAL as -0.0.
            9 => format!("ABS({} % {})", self.dec(d), self.int(d)),
            _ => format!("IF({}, {}, {})", self.cond(d), self.dec(d), self.int(d)),
        }
    }

    /// A DECIMAL quotient, only ever a whole result column: servers keep
    /// more digits inside than they show, and compare and compute with
    /// them in ways MySQL and MariaDB do not share.
    fn quotient(&mut self, depth: u32) -> String {
        let d = depth.saturating_sub(1);
        match self.rng.below(3) {
            0 => format!("({} / {})", self.dec(d), self.int(d)),
            1 => format!("({} / {})", self.int(d), self.int(d)),
            _ => format!(
                "(({} / {}) / {})",
                self.dec(d),
                self.rng.range(1, 9),
                self.rng.range(-9, 9)
            ),
        }
    }

    fn double(&mut self, depth: u32) -> String {
        let d = depth.saturating_sub(1);
        let inner = match self.rng.below(5) {
            0 => format!("SQRT(ABS({}))", self.int(d)),
            1 => format!("POW({}, {})", self.rng.range(-4, 4), self.rng.range(0, 5)),
            2 => format!("({} * 1.5e0)", self.int(d)),
            3 => format!("({} / 4e0)", self.dec(d)),
            _ => format!("CAST({} AS DOUBLE)", self.int(d)),
        };
        // MariaDB prints ROUND(double, 4) with four decimals, MySQL not:
        // compare through a DECIMAL.
        format!("CAST(ROUND({inner}, 4) AS DECIMAL(30,4))")
    }

    fn string(&mut self, depth: u32) -> String {
        if depth == 0 || self.rng.chance(25) {
            return match self.rng.below(2) {
                0 => "s".into(),
                _ => sql_str(self.rng.pick(WORDS)),
            };
        }
        let d = depth - 1;
        match self.rng.below(20) {
            0 => format!("CONCAT({}, {})", self.string(d), self.string(d)),
            1 => format!(
                "CONCAT_WS('-', {}, {}, {})",
                self.string(d),
                self.int(d),
                self.string(d)
            ),
            2 => format!("SUBSTRING({}, {})", self.string(d), self.rng.range(-5, 5)),
            3 => format!(
                "SUBSTRING({}, {}, {})",
                self.string(d),
                self.rng.range(-5, 5),
                self.rng.range(-1, 5)
            ),
            4 => format!(
                "{}({})",
                self.rng
                    .pick(&["UPPER", "LOWER", "TRIM", "LTRIM", "RTRIM", "REVERSE"]),
                self.string(d)
            ),
            5 => format!(
                "REPLACE({}, {}, {})",
                self.string(d),
                sql_str(self.rng.pick(&["a", "o", "l", "", " "])),
                sql_str(self.rng.pick(&["", "X", "yy"]))
            ),
            6 => format!("LEFT({}, {})", self.string(d), self.rng.range(-1, 6)),
            7 => format!("RIGHT({}, {})", self.string(d), self.rng.range(-1, 6)),
            8 => format!(
                "LPAD({}, {}, {})",
                self.string(d),
                self.rng.range(0, 12),
                sql_str(self.rng.pick(&["*", "ab", ""]))
            ),
            9 => format!(
                "RPAD({}, {}, {})",
                self.string(d),
                self.rng.range(0, 12),
                sql_str(self.rng.pick(&["*", "ab"]))
            ),
            10 => format!("REPEAT({}, {})", self.string(d), self.rng.range(-1, 3)),
            11 => format!(
                "DATE_FORMAT({}, {})",
                self.date(d),
                sql_str(self.rng.pick(&[
                    "%Y-%m-%d",
                    "%H:%i:%s",
                    "%W %M %D %Y",
                    "%a %b %e %c %y %j",
                    "%h %l %p %r %T %%"
                ]))
            ),
            12 => format!(
                "TRIM({} {} FROM {})",
                self.rng.pick(&["LEADING", "TRAILING", "BOTH"]),
                sql_str(self.rng.pick(&["a", " ", "ab"])),
                self.string(d)
            ),
            13 => format!("CAST({} AS CHAR)", self.int(d)),
            14 => format!(
                "IF({}, {}, {})",
                self.cond(d),
                self.string(d),
                self.string(d)
            ),
            15 => format!("IFNULL({}, 'none')", self.string(d)),
            // No quotient here: its text would show MySQL's declared
            // scale, which a value does not carry.
            16 => format!("CONCAT('x', {})", self.dec(0)),
            17 => format!(
                "CASE WHEN {} THEN {} ELSE {} END",
                self.cond(d),
                self.string(d),
                self.string(d)
            ),
            18 => format!("CAST({} AS CHAR)", self.date(d)),
            _ => format!("CONCAT({}, '|')", self.string(d)),
        }
    }

    fn date(&mut self, depth: u32) -> String {
        if depth == 0 || self.rng.chance(30) {
            return match self.rng.below(3) {
                0 => "dt".into(),
                1 => "dd".into(),
                _ => format!(
                    "'20{:02}-{:02}-{:02}'",
                    self.rng.range(0, 30),
                    self.rng.range(1, 12),
                    self.rng.range(1, 28)
                ),
            };
        }
        let d = depth - 1;
        let unit = self.rng.pick(&[
            "SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "QUARTER", "YEAR",
        ]);
        let n = self.rng.range(-40, 40);
        match self.rng.below(5) {
            0 => format!("DATE_ADD({}, INTERVAL {n} {unit})", self.date(d)),
            1 => format!("DATE_SUB({}, INTERVAL {n} {unit})", self.date(d)),
            2 => format!("({} + INTERVAL {n} {unit})", self.date(d)),
            3 => format!("DATE({})", self.date(d)),
            // Only the columns: MariaDB 10.11's UNIX_TIMESTAMP ends in 2038.
            _ => format!(
                "FROM_UNIXTIME(UNIX_TIMESTAMP({}))",
                self.rng.pick(&["dt", "dd"])
            ),
        }
    }

    fn cond(&mut self, depth: u32) -> String {
        let d = depth.saturating_sub(1);
        let cmp = self.rng.pick(&["=", "<>", "<", "<=", ">", ">=", "<=>"]);
        match self.rng.below(12) {
            0 => format!("({} {cmp} {})", self.int(d), self.int(d)),
            1 => format!("({} {cmp} {})", self.dec(d), self.dec(d)),
            2 => format!("({} {cmp} {})", self.string(d), self.string(d)),
            3 => format!(
                "({} LIKE {})",
                self.string(d),
                sql_str(self.rng.pick(&["%a%", "h%", "_b_", "%|%%", "a|_b", "%"]))
            ),
            4 => format!(
                "({} LIKE {} ESCAPE '|')",
                self.string(d),
                sql_str(self.rng.pick(&["%|%%", "a|_b", "x|%y", "%b%"]))
            ),
            5 => format!("({} IS NULL)", self.string(d)),
            6 => format!("({} IS NOT TRUE)", self.int(d)),
            7 => format!("({} AND {})", self.cond(d), self.cond(d)),
            8 => format!("({} OR NOT {})", self.cond(d), self.cond(d)),
            9 => format!(
                "({} BETWEEN {} AND {})",
                self.int(d),
                self.int(d),
                self.int(d)
            ),
            10 => format!(
                "({} IN ({}, {}, {}))",
                self.int(d),
                self.int(d),
                self.rng.range(-5, 5),
                self.rng.range(-5, 5)
            ),
            _ => format!("({} {cmp} {})", self.date(d), self.date(d)),
        }
    }

    fn any(&mut self, depth: u32) -> String {
        match self.rng.below(7) {
            0 => self.int(depth),
            1 => self.dec(depth),
            2 => self.double(depth),
            3 => self.string(depth),
            4 => self.date(depth),
            5 => self.quotient(depth),
            _ => self.cond(depth),
        }
    }

    fn query(&mut self) -> String {
        let n = self.rng.range(1, 3);
        let items: Vec<String> = (0..n).map(|_| self.any(3)).collect();
        let filter = if self.rng.chance(60) {
            format!(" WHERE {}", self.cond(2))
        } else {
            String::new()
        };
        if self.rng.chance(20) {
            return self.sorted(&filter);
        }
        if self.rng.chance(20) {
            return self.covered();
        }
        format!("SELECT id, {} FROM t{filter} ORDER BY id", items.join(", "))
    }

    /// A query an index of `t` covers (only its columns and `id`), read
    /// through it: the index entries alone make the rows.
    fn covered(&mut self) -> String {
        let year = |rng: &mut Rng| rng.range(1995, 2030);
        let (col, extra, a, b) = match self.rng.below(3) {
            0 => (
                "i",
                "i * 2",
                self.rng.range(-100, 100).to_string(),
                self.rng.range(-100, 100).to_string(),
            ),
            1 => (
                "dd",
                "d",
                format!("'{}-06-01'", year(self.rng)),
                format!("'{}-01-01'", year(self.rng)),
            ),
            _ => (
                "dt",
                "YEAR(dt)",
                format!("'{}-03-01 12:00:00'", year(self.rng)),
                format!("'{}-09-01'", year(self.rng)),
            ),
        };
        let cond = match self.rng.below(5) {
            0 => format!("{col} = {a}"),
            1 => format!("{col} BETWEEN {a} AND {b}"),
            2 => format!("{col} > {a}"),
            3 => format!("{col} <= {b} OR {col} IS NULL"),
            _ => format!("{col} IN ({a}, {b})"),
        };
        match self.rng.below(3) {
            0 => format!("SELECT COUNT(*), MIN({col}), MAX(id), SUM({extra}) FROM t WHERE {cond}"),
            1 => format!(
                "SELECT {col}, COUNT(*), MAX({extra}) FROM t WHERE {cond} GROUP BY {col} ORDER BY {col}"
            ),
            _ => format!("SELECT id, {col}, {extra} FROM t WHERE {cond} ORDER BY id"),
        }
    }

    /// A sort or DISTINCT on strings and other values (the result order
    /// is total: DISTINCT rows are unique, and `id` breaks ties).
    fn sorted(&mut self, filter: &str) -> String {
        let dir = self.rng.pick(&["", " DESC"]);
        match self.rng.below(4) {
            0 => {
                let x = self.rng.pick(&["s", "UPPER(s)", "i % 5", "d", "dd", "s"]);
                format!("SELECT DISTINCT {x} FROM t{filter} ORDER BY {x}{dir}")
            }
            1 => format!("SELECT s, id FROM t{filter} ORDER BY s{dir}, id"),
            2 => format!("SELECT DISTINCT i % 3, s FROM t{filter} ORDER BY s{dir}, i % 3"),
            _ => format!("SELECT id, s, CONCAT(s, 'x') FROM t{filter} ORDER BY s{dir}, id DESC"),
        }
    }
}

impl Gen<'_> {
    /// A join of `t` and `u`, ordered by both ids (unique per result row).
    fn join(&mut self) -> String {
        let on = match self.rng.below(5) {
            0 | 1 => "u.tid = t.id".to_string(),
            2 => "u.tid = t.id AND u.k > t.i".to_string(),
            3 => "u.k = t.i".to_string(),
            _ => format!("(u.tid = t.id OR u.k < {})", self.rng.range(-20, 0)),
        };
        let from = match self.rng.below(4) {
            0 => format!("t JOIN u ON {on}"),
            1 => format!("t LEFT JOIN u ON {on}"),
            2 => format!("t RIGHT JOIN u ON {on}"),
            _ => format!("t, u WHERE {on}"),
        };
        let filter = match (self.rng.chance(50), from.contains(" WHERE ")) {
            (false, _) => String::new(),
            (true, true) => format!(" AND {}", self.join_cond()),
            (true, false) => format!(" WHERE {}", self.join_cond()),
        };
        if self.rng.chance(25) {
            let key = self.rng.pick(&["t.i % 3", "u.k % 4", "u.w", "t.s"]);
            return format!(
                "SELECT {key}, COUNT(*), COUNT(u.id), SUM(u.k), MAX(t.b) FROM {from}{filter} \
                 GROUP BY {key} ORDER BY {key}"
            );
        }
        let n = self.rng.range(1, 2);
        let items: Vec<String> = (0..n).map(|_| self.join_item()).collect();
        format!(
            "SELECT t.id, u.id, {} FROM {from}{filter} ORDER BY t.id, u.id",
            items.join(", ")
        )
    }

    /// An expression over both tables.
    fn join_item(&mut self) -> String {
        match self.rng.below(5) {
            0 => format!("(u.k + {})", self.int(1)),
            1 => format!("CONCAT(IFNULL(u.w, '-'), {})", self.string(1)),
            2 => format!("COALESCE(u.k, t.i, {})", self.rng.range(-5, 5)),
            3 => "u.w".into(),
            _ => self.any(2),
        }
    }

    fn join_cond(&mut self) -> String {
        match self.rng.below(4) {
            0 => format!("u.k {} {}", self.rng.pick(&["<", ">=", "<>"]), self.int(1)),
            1 => "u.id IS NULL".into(),
            2 => format!(
                "(u.w LIKE {} OR t.i > u.k)",
                sql_str(self.rng.pick(&["%a%", "h%", "%"]))
            ),
            _ => self.cond(1),
        }
    }
}

/// A private MariaDB server, stopped (by its process id) on drop.
struct MariaDb {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn start_mariadb(port: u16) -> MariaDb {
    let mariadbd = find("mariadbd").expect(
        "mariadbd is not installed: run tests/install-clients.sh (it installs mariadb-server)",
    );
    let install = find("mariadb-install-db").expect("mariadb-install-db (mariadb-server)");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let status = Command::new(install)
        .args([
            "--no-defaults",
            &format!("--datadir={}", data.display()),
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "mariadb-install-db failed");
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let mut cmd = Command::new(mariadbd);
    cmd.args([
        "--no-defaults".to_string(),
        format!("--datadir={}", data.display()),
        format!("--port={port}"),
        "--bind-address=127.0.0.1".to_string(),
        format!("--socket={}", dir.path().join("s").display()),
        "--skip-grant-tables".to_string(),
        "--innodb-buffer-pool-size=16M".to_string(),
    ]);
    if is_root {
        cmd.arg("--user=root");
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    MariaDb { child, _dir: dir }
}

fn opts(port: u16) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .prefer_socket(false)
        .into()
}

async fn connect(port: u16, what: &str) -> mysql_async::Conn {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match mysql_async::Conn::new(opts(port)).await {
            Ok(c) => return c,
            Err(e) => assert!(Instant::now() < deadline, "{what} does not answer: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A query's rows as text, or its error code.
async fn rows(conn: &mut mysql_async::Conn, sql: &str) -> Result<Vec<Vec<String>>, u16> {
    match conn.query::<mysql_async::Row, _>(sql).await {
        Ok(rows) => Ok(rows
            .into_iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| match r.as_ref(i) {
                        None | Some(mysql_async::Value::NULL) => "NULL".to_string(),
                        Some(mysql_async::Value::Bytes(b)) => {
                            String::from_utf8_lossy(b).into_owned()
                        }
                        Some(other) => other.as_sql(true),
                    })
                    .collect()
            })
            .collect()),
        Err(mysql_async::Error::Server(e)) => Err(e.code),
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// The first row (or error) where Strata and MariaDB differ, and the id
/// of the table row it came from.
fn first_difference(
    got: &Result<Vec<Vec<String>>, u16>,
    want: &Result<Vec<Vec<String>>, u16>,
) -> (String, Option<String>) {
    match (got, want) {
        (Ok(g), Ok(w)) => {
            let i = g
                .iter()
                .zip(w)
                .position(|(a, b)| a != b)
                .unwrap_or(g.len().min(w.len()));
            let id = w.get(i).or(g.get(i)).and_then(|r| r.first()).cloned();
            let text = format!(
                "row {i} of {} (Strata) / {} (MariaDB):\n  Strata:  {:?}\n  MariaDB: {:?}",
                g.len(),
                w.len(),
                g.get(i),
                w.get(i)
            );
            (text, id)
        }
        _ => (
            format!(
                "Strata: {:?}\nMariaDB: {:?}",
                got.as_ref().map(|r| r.len()),
                want.as_ref().map(|r| r.len())
            ),
            None,
        ),
    }
}

async fn setup(conn: &mut mysql_async::Conn, inserts: &[String]) {
    for sql in [
        "SET time_zone = '+00:00'",
        "DROP DATABASE IF EXISTS diff",
        "CREATE DATABASE diff",
        "USE diff",
        TABLE,
    ] {
        // Strata has one time zone (UTC) and may refuse to set it.
        if let Err(e) = conn.query_drop(sql).await {
            assert!(sql.starts_with("SET time_zone"), "{sql}: {e}");
        }
    }
    for sql in inserts {
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_selects_agree_with_mariadb() {
    let seed: u64 = std::env::var("STRATA_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let queries: usize = std::env::var("STRATA_DIFF_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    eprintln!("differential seed {seed} (replay with STRATA_DIFF_SEED={seed})");

    let maria_port = common::free_port();
    let _maria = start_mariadb(maria_port);
    let dir = tempfile::tempdir().unwrap();
    let strata_port = common::free_port();
    let mut server = common::up(dir.path(), strata_port, None);
    let mut maria = connect(maria_port, "mariadbd").await;
    let mut strata = connect(strata_port, "strata up").await;

    let mut rng = Rng(seed);
    let inserts: Vec<String> = (0..6)
        .map(|chunk| {
            let rows: Vec<String> = (0..10).map(|k| row(&mut rng, chunk * 10 + k + 1)).collect();
            format!("INSERT INTO t VALUES {}", rows.join(", "))
        })
        .collect();
    let mut inserts = inserts;
    inserts.push(TABLE_U.to_string());
    let u_rows: Vec<String> = (1..=40).map(|k| u_row(&mut rng, k)).collect();
    inserts.push(format!("INSERT INTO u VALUES {}", u_rows.join(", ")));
    setup(&mut maria, &inserts).await;
    setup(&mut strata, &inserts).await;

    let mut agreed_rows = 0;
    let mut both_failed = 0;
    let joins = queries / 4;
    for n in 0..queries + joins {
        let sql = match n < queries {
            true => Gen { rng: &mut rng }.query(),
            false => Gen { rng: &mut rng }.join(),
        };
        let (want, got) = (rows(&mut maria, &sql).await, rows(&mut strata, &sql).await);
        if got != want {
            let (text, id) = first_difference(&got, &want);
            let source = match id {
                Some(id) => format!(
                    "{:?}",
                    rows(&mut maria, &format!("SELECT * FROM t WHERE id = {id}")).await
                ),
                None => String::new(),
            };
            panic!(
                "query {n} differs (seed {seed}, replay with STRATA_DIFF_SEED={seed}):\n{sql}\n{text}\n  table row: {source}"
            );
        }
        match want {
            Ok(r) => agreed_rows += r.len(),
            Err(_) => both_failed += 1,
        }
    }
    server.terminate();
    let total = queries + joins;
    eprintln!(
        "{total} queries ({joins} joins) agree: {agreed_rows} rows, {both_failed} failed on both"
    );
    assert!(
        both_failed * 10 < total,
        "most queries must run: {both_failed} of {total} failed on both"
    );
}
