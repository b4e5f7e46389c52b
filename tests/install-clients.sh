#!/usr/bin/env bash
# Installs the real MySQL clients the tests drive, if they are missing:
# the Debian mariadb CLI and sysbench (apt), PyMySQL,
# mysql-connector-python and SQLAlchemy (pip, into the machine's Python 3),
# and moto's S3 server for the page server's S3 tests (pip).
set -euo pipefail
if ! command -v mariadb >/dev/null || ! command -v sysbench >/dev/null; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-client sysbench
fi
# The differential test runs a private MariaDB server: install the package
# without starting the system service (policy-rc.d refuses every start).
if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server
    $SUDO rm -f /usr/sbin/policy-rc.d
fi
if ! python3 -c "import pymysql, mysql.connector, sqlalchemy" 2>/dev/null; then
    python3 -m pip install -q pymysql mysql-connector-python sqlalchemy
fi
# The page server's S3 tests talk to moto's S3-compatible server
# (python3 -m moto.server on 127.0.0.1).
if ! python3 -c "import moto.server" 2>/dev/null; then
    python3 -m pip install -q "moto[server]"
fi
