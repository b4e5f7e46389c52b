"""mysql-connector-python (pure Python, binary protocol through prepared
cursors) against Strata.

Usage: connector_check.py PORT [PASSWORD]. Prints "ok" and exits 0.
"""
import sys
from decimal import Decimal

import mysql.connector

PORT = int(sys.argv[1])
PASSWORD = sys.argv[2] if len(sys.argv) > 2 else ""

c = mysql.connector.connect(host="127.0.0.1", port=PORT, user="root",
                            password=PASSWORD, use_pure=True)
cur = c.cursor()
cur.execute("CREATE DATABASE IF NOT EXISTS conn")
cur.execute("USE conn")
cur.execute("DROP TABLE IF EXISTS items")
cur.execute("CREATE TABLE items (id BIGINT NOT NULL AUTO_INCREMENT,"
            " label VARCHAR(30) NOT NULL, price DOUBLE, qty INT UNSIGNED DEFAULT 0,"
            " added DATETIME, PRIMARY KEY (id), KEY by_label (label))")
c.commit()

ps = c.cursor(prepared=True)
for label, price, qty in [("pen", 1.25, 10), ("ink", 7.5, 3), ("pad", None, 0)]:
    ps.execute("INSERT INTO items (label, price, qty, added) VALUES (%s, %s, %s, %s)",
               (label, price, qty, "2024-05-06 07:08:09"))
c.commit()
ps.execute("SELECT id, label, price, qty, added FROM items WHERE label = %s", ("ink",))
row = ps.fetchone()
assert row[0] == 2 and row[1] == "ink" and row[2] == 7.5 and row[3] == 3, row
assert str(row[4]) == "2024-05-06 07:08:09", row
ps.execute("SELECT label FROM items WHERE id BETWEEN %s AND %s ORDER BY label", (1, 3))
assert [r[0] for r in ps.fetchall()] == ["ink", "pad", "pen"]
ps.execute("SELECT SUM(qty) FROM items WHERE id BETWEEN %s AND %s", (1, 3))
assert Decimal(ps.fetchone()[0]) == 13
ps.execute("UPDATE items SET qty = qty + %s WHERE id = %s", (5, 1))
assert ps.rowcount == 1
c.rollback()
ps.execute("SELECT qty FROM items WHERE id = %s", (1,))
assert ps.fetchone()[0] == 10

try:
    ps.execute("INSERT INTO items (id, label) VALUES (%s, %s)", (1, "dup"))
    raise AssertionError("a duplicate primary key was accepted")
except mysql.connector.Error as e:
    assert e.errno == 1062, e
try:
    cur.execute("SELECT * FROM items WHERE")
    raise AssertionError("a syntax error was accepted")
except mysql.connector.Error as e:
    assert e.errno == 1064, e
print("ok")
