#!/usr/bin/env bash
# Start a private MariaDB server for the tests and benchmarks: its own data folder and
# port, so it never touches a server that already runs on this machine. Installs
# mariadb-server through apt-get when it is missing. Idempotent: a running server is
# left as it is.
#   scripts/mariadb.sh start   (default)   prints the URL to use, e.g.
#       mysql+mysqlconnector://root@127.0.0.1:3307/
#   scripts/mariadb.sh status          exit status 0 when it runs
#   scripts/mariadb.sh stop
# TEST_MARIADB_BUFFER_POOL_SIZE (default 1G): InnoDB's buffer pool, e.g. 4G for benchmarks
# whose neighbour table would not fit in 1G.
set -euo pipefail

PORT=${TEST_MARIADB_PORT:-3307}
DIR=${TEST_MARIADB_DIR:-/tmp/imagegroup-mariadb-$PORT}
SOCKET=$DIR/mariadb.sock
URL="mysql+mysqlconnector://root@127.0.0.1:$PORT/"

log() { echo "mariadb.sh: $*" >&2; }

running() {
    [ -S "$SOCKET" ] && mariadb-admin --socket="$SOCKET" -uroot ping >/dev/null 2>&1
}

install_server() {
    command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] && return 0
    log "installing mariadb-server with apt-get"
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 \
            || { log "mariadb-server is missing; install it as root or install sudo"; exit 1; }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q >&2
    "${sudo[@]}" apt-get install -y -q mariadb-server mariadb-client >&2
}

start() {
    if running; then
        echo "$URL"
        return 0
    fi
    install_server
    mkdir -p "$DIR"
    if [ ! -d "$DIR/data/mysql" ]; then
        log "initialising $DIR/data"
        mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$DIR/data" \
            --auth-root-authentication-method=normal --skip-test-db >"$DIR/install.log" 2>&1 \
            || { cat "$DIR/install.log" >&2; exit 1; }
    fi
    log "starting on 127.0.0.1:$PORT"
    # --no-defaults: nothing from /etc/mysql leaks in; the server only listens on loopback.
    /usr/sbin/mariadbd --no-defaults --user="$(id -un)" --datadir="$DIR/data" \
        --socket="$SOCKET" --port="$PORT" --bind-address=127.0.0.1 \
        --pid-file="$DIR/mariadb.pid" --log-error="$DIR/error.log" \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_bin \
        --innodb-buffer-pool-size="${TEST_MARIADB_BUFFER_POOL_SIZE:-1G}" \
        --innodb-flush-log-at-trx-commit=2 \
        --max-connections=500 --max-allowed-packet=256M >/dev/null 2>&1 &
    for _ in $(seq 1 60); do
        if running; then
            # root without a password, but only from this machine's loopback and socket.
            mariadb --socket="$SOCKET" -uroot -e \
                "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
                 GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;" >&2
            echo "$URL"
            return 0
        fi
        sleep 1
    done
    log "server did not start; see $DIR/error.log"
    tail -20 "$DIR/error.log" >&2 || true
    exit 1
}

stop() {
    if running; then
        mariadb-admin --socket="$SOCKET" -uroot shutdown
    fi
}

case "${1:-start}" in
    start) start ;;
    status) running ;;
    stop) stop ;;
    *) echo "usage: $0 [start|status|stop]" >&2; exit 2 ;;
esac
