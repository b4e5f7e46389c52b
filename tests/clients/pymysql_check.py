"""PyMySQL (text protocol) against Strata: DDL, DML, transactions, errors.

Usage: pymysql_check.py PORT [PASSWORD]. Prints "ok" and exits 0, or fails
with an assertion naming what differed.
"""
import datetime
import sys
from decimal import Decimal

import pymysql

PORT = int(sys.argv[1])
PASSWORD = sys.argv[2] if len(sys.argv) > 2 else ""


def connect(**kw):
    return pymysql.connect(host="127.0.0.1", port=PORT, user="root",
                           password=PASSWORD, **kw)


def expect_error(cur, sql, code, args=None):
    try:
        cur.execute(sql, args)
    except pymysql.err.MySQLError as e:
        assert e.args[0] == code, f"{sql!r}: got {e.args}, expected {code}"
        return
    raise AssertionError(f"{sql!r} succeeded, expected error {code}")


c = connect(autocommit=True)
cur = c.cursor()
cur.execute("CREATE DATABASE IF NOT EXISTS pyt")
cur.execute("USE pyt")
cur.execute("DROP TABLE IF EXISTS t")
cur.execute(
    "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20) NOT NULL,"
    " score DECIMAL(6,2), born DATE, UNIQUE KEY uname (name))"
    " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
n = cur.execute("INSERT INTO t (name, score, born) VALUES (%s, %s, %s), (%s, %s, %s)",
                ("ann", "1.50", "2000-01-02", "bob", None, None))
assert n == 2, n
assert cur.lastrowid == 1, cur.lastrowid
cur.execute("SELECT id, name, score, born FROM t ORDER BY id")
rows = cur.fetchall()
assert rows == ((1, "ann", Decimal("1.50"), datetime.date(2000, 1, 2)),
                (2, "bob", None, None)), rows
cur.execute("SELECT COUNT(*), MAX(id) FROM t WHERE name IN ('ann', 'bob', 'zed')")
assert cur.fetchone() == (2, 2)
cur.execute("SELECT @@version, @@max_allowed_packet, @@autocommit")
version, packet, autocommit = cur.fetchone()
assert "strata" in version and int(packet) > 0 and int(autocommit) == 1

# Errors, each with its MySQL code; the connection survives them all.
expect_error(cur, "INSERT INTO t (name) VALUES ('ANN')", 1062)  # general_ci
expect_error(cur, "SELEC 1", 1064)
expect_error(cur, "SELECT * FROM nosuch", 1146)
expect_error(cur, "SELECT nosuch FROM t", 1054)
expect_error(cur, "USE nodb", 1049)
expect_error(cur, "INSERT INTO t (name) VALUES (%s)", 1406, ("x" * 21,))
expect_error(cur, "INSERT INTO t (name, score) VALUES ('big', 100000)", 1264)
expect_error(cur, "INSERT INTO t (name, born) VALUES ('d', 'not a date')", 1366)
cur.execute("SELECT 1 + 1")
assert cur.fetchone() == (2,)

# Transactions: uncommitted changes are invisible to another session,
# rolled back or committed as asked.
other = connect(database="pyt", autocommit=True)
ocur = other.cursor()
c.begin()
cur.execute("UPDATE t SET score = 9 WHERE name = 'ann'")
ocur.execute("SELECT score FROM t WHERE name = 'ann'")
assert ocur.fetchone() == (Decimal("1.50"),)
c.rollback()
cur.execute("SELECT score FROM t WHERE name = 'ann'")
assert cur.fetchone() == (Decimal("1.50"),)
c.begin()
n = cur.execute("UPDATE t SET score = score + 1 WHERE name = 'ann'")
assert n == 1, n
c.commit()
ocur.execute("SELECT score FROM t WHERE name = 'ann'")
assert ocur.fetchone() == (Decimal("2.50"),)

# A client that disconnects mid-transaction releases its locks.
gone = connect(database="pyt")
gcur = gone.cursor()
gone.begin()
gcur.execute("UPDATE t SET score = 1 WHERE id = 1")
gone.close()
n = ocur.execute("UPDATE t SET score = 3 WHERE id = 1")
assert n == 1
n = cur.execute("DELETE FROM t WHERE id = 2")
assert n == 1
cur.execute("SELECT id, score FROM t")
assert cur.fetchall() == ((1, Decimal("3.00")),)
print("ok")
