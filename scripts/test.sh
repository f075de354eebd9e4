#!/usr/bin/env bash
# Set up and run the whole test suite, MariaDB and browser tests included.
#   scripts/test.sh [PYTEST ARGS...]
# Installs what is missing (the venv with the dev packages; Debian's chromium,
# libjpeg-turbo-progs and mariadb-server through apt-get), starts the private MariaDB server of
# scripts/mariadb.sh on its own port and data folder unless TEST_MARIADB_URL names a
# server, runs pytest, and stops the server again if this run started it. Exits with
# pytest's status; "no tests collected" counts as a failure. Without extra arguments the
# run also fails when no MariaDB test or no browser test passed.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { echo "test.sh: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "$0: needs root to run: $*; run as root or install sudo" >&2; exit 1
    fi
}

./scripts/setup.sh --dev

# Debian's chromium for the browser tests (playwright never downloads a browser here),
# and djpeg (libjpeg-turbo-progs), the independent decoder the decoding tests compare with.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v djpeg >/dev/null 2>&1 || missing+=(libjpeg-turbo-progs)
# libmagic for the IIIF validator (python-magic loads it).
/sbin/ldconfig -p 2>/dev/null | grep -q 'libmagic\.so\.1 ' || missing+=(libmagic1)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q >&2
    as_root apt-get install -y -q "${missing[@]}" >&2
fi
CHROMIUM_PATH=${CHROMIUM_PATH:-$(command -v chromium)}
# A real IIIF viewer for the browser tests: OpenSeadragon from the npm registry, as
# tests/viewer/package-lock.json pins it, into tests/viewer/node_modules (git-ignored).
npm ci --prefix tests/viewer --no-audit --no-fund --loglevel=error >&2
export CHROMIUM_PATH

started_mariadb=0
stop_mariadb() {
    if [ "$started_mariadb" = 1 ]; then
        log "stopping the MariaDB server this run started"
        ./scripts/mariadb.sh stop || true
    fi
}
trap stop_mariadb EXIT

if [ -z "${TEST_MARIADB_URL:-}" ]; then
    # A server already running on the private port (another run, a developer) is reused
    # and left running.
    ./scripts/mariadb.sh status || started_mariadb=1
    TEST_MARIADB_URL=$(./scripts/mariadb.sh start)
fi
export TEST_MARIADB_URL
export REQUIRE_MARIADB=1 REQUIRE_BROWSER=1 REQUIRE_DJPEG=1
if [ "$#" = 0 ]; then
    export REQUIRE_KINDS=mariadb,browser
fi
log "MariaDB at $TEST_MARIADB_URL; chromium at $CHROMIUM_PATH"

# -p pytest_counts prints how many MariaDB and browser tests ran (scripts/pytest_counts.py).
status=0
PYTHONPATH="scripts${PYTHONPATH:+:$PYTHONPATH}" .venv/bin/python -m pytest \
    -p pytest_counts "$@" || status=$?
case "$status" in
    0) log "all tests passed" ;;
    5) log "no tests were collected: failing"; status=1 ;;
    *) log "pytest exited with status $status" ;;
esac
exit "$status"
