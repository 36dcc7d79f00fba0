#!/usr/bin/env bash
# Make sure the Redis (>= 7) and MySQL-compatible servers named in api.env are reachable.
# Local servers that are missing are installed from Debian's packages; stopped ones are
# started. Then the database and the application user are created when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export PYTHONPATH="$PWD"
settings=$($PY -m ml_api.cli shell-env)
eval "$settings"
mkdir -p var

is_local() { [[ "$1" == "127.0.0.1" || "$1" == "localhost" || "$1" == "::1" ]]; }
APT_UPDATED=0
apt_install() {
    [ "$APT_UPDATED" = 1 ] || { apt-get update -qq; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
    local status=0
    $PY scripts/probe.py redis || status=$?
    [ "$status" = 0 ] && return 0
    [ "$status" = 2 ] && { echo "services: Redis at $REDIS_URL is older than 7 (SET NX GET needs 7)" >&2; exit 1; }
    read -r host port < <($PY scripts/probe.py redis-address)
    if [ "$REDIS_CLUSTER" = "true" ] || ! is_local "$host"; then
        echo "services: Redis at $REDIS_URL is unreachable (not a local server, not starting one)" >&2; exit 1
    fi
    command -v redis-server >/dev/null || { echo "services: installing redis-server"; apt_install redis-server; }
    echo "services: starting redis-server on $host:$port"
    redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
        --dir "$PWD/var" --logfile "$PWD/var/redis.log"
    $PY scripts/probe.py redis --wait 15 || { echo "services: Redis did not come up (var/redis.log)" >&2; exit 1; }
}

start_mysql() {
    if ! command -v mariadbd >/dev/null && ! command -v mysqld >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
        echo "services: installing mariadb-server"; apt_install mariadb-server
    fi
    echo "services: starting the MySQL-compatible server"
    service mariadb start >/dev/null 2>&1 || service mysql start >/dev/null 2>&1 || {
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    }
}

admin_sql() {
    # The admin account over TCP first; else the local root account over the socket
    # (Debian's default root uses unix_socket authentication).
    MYSQL_PWD="$MYSQL_ADMIN_PASSWORD" mysql -h "$MYSQL_HOST" -P "$MYSQL_PORT" -u "$MYSQL_ADMIN_USER" -e "$1" 2>/dev/null \
        || { is_local "$MYSQL_HOST" && mysql -u root -e "$1"; }
}

ensure_mysql() {
    local status=0
    $PY scripts/probe.py mysql || status=$?
    [ "$status" = 0 ] && return 0
    if [ "$status" = 1 ]; then
        is_local "$MYSQL_HOST" || { echo "services: MySQL at $MYSQL_HOST:$MYSQL_PORT is unreachable" >&2; exit 1; }
        start_mysql
        status=0
        $PY scripts/probe.py mysql --wait 30 || status=$?
        [ "$status" = 1 ] && { echo "services: MySQL did not come up" >&2; exit 1; }
        [ "$status" = 0 ] && return 0
    fi
    echo "services: creating database $MYSQL_DATABASE and user $MYSQL_USER"
    local pw="${MYSQL_PASSWORD//\'/\'\'}"
    # `abtest%` covers the database and the per-run test databases (abtest_test_...).
    admin_sql "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
        CREATE USER IF NOT EXISTS '$MYSQL_USER'@'localhost' IDENTIFIED BY '$pw';
        CREATE USER IF NOT EXISTS '$MYSQL_USER'@'%' IDENTIFIED BY '$pw';
        ALTER USER '$MYSQL_USER'@'localhost' IDENTIFIED BY '$pw';
        ALTER USER '$MYSQL_USER'@'%' IDENTIFIED BY '$pw';
        GRANT ALL PRIVILEGES ON \`${MYSQL_DATABASE}%\`.* TO '$MYSQL_USER'@'localhost';
        GRANT ALL PRIVILEGES ON \`${MYSQL_DATABASE}%\`.* TO '$MYSQL_USER'@'%';
        FLUSH PRIVILEGES;"
    $PY scripts/probe.py mysql || { echo "services: user $MYSQL_USER still cannot log in" >&2; exit 1; }
}

ensure_redis
ensure_mysql
echo "services: Redis and MySQL are ready"
