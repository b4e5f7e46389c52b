#!/usr/bin/env bash
# Installs the real MySQL clients the tests drive, if they are missing:
# the Debian mariadb CLI and sysbench (apt), PyMySQL,
# mysql-connector-python and SQLAlchemy (pip, into the machine's Python 3).
set -euo pipefail
if ! command -v mariadb >/dev/null || ! command -v sysbench >/dev/null; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-client sysbench
fi
if ! python3 -c "import pymysql, mysql.connector, sqlalchemy" 2>/dev/null; then
    python3 -m pip install -q pymysql mysql-connector-python sqlalchemy
fi
