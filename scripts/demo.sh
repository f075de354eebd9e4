#!/usr/bin/env bash
# Set up and run the demo: features and grouping for the bundled sample images on the
# embedded SQLite database, then the service on http://127.0.0.1:5000/.
#   scripts/demo.sh              set up, run both jobs, serve until Ctrl-C
#   scripts/demo.sh --no-serve   set up and run both jobs only
# The demo uses data/images.sqlite3 and sample_images/ unless DATABASE_URL or IMAGE_ROOT
# are set in the environment; a .env file is deliberately not consulted for these two, so
# the demo never writes the sample images into a production database.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { echo "demo.sh: $*" >&2; }

serve=1
[ "$#" -le 1 ] || { echo "usage: $0 [--no-serve]" >&2; exit 2; }
case "${1:-}" in
    "") ;;
    --no-serve) serve=0 ;;
    *) echo "usage: $0 [--no-serve]" >&2; exit 2 ;;
esac

./scripts/setup.sh

export DATABASE_URL=${DATABASE_URL:-sqlite:///data/images.sqlite3}
export IMAGE_ROOT=${IMAGE_ROOT:-sample_images}
PORT=${SERVICE_PORT:-5000}
export SERVICE_PORT=$PORT

# Both jobs only do new work on a rerun, so running the demo again is quick.
log "computing image features for $IMAGE_ROOT (the first run also converts the weights)"
.venv/bin/python create_image_features.py "$IMAGE_ROOT"
log "grouping images"
.venv/bin/python group_images.py

[ "$serve" = 1 ] || exit 0

log "starting the service"
# No control socket: its fixed default path in $HOME would clash with another gunicorn.
.venv/bin/gunicorn --bind "127.0.0.1:$PORT" --worker-class gthread --workers 2 --threads 4 \
    --access-logfile - --no-control-socket 'service:create_app()' &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 60); do
    if .venv/bin/python - "$PORT" <<'EOF' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2).read()
EOF
        echo
        echo "Open http://127.0.0.1:$PORT/   (Ctrl-C stops the service)"
        echo
        wait "$server"
        exit $?
    fi
    if ! kill -0 "$server" 2>/dev/null; then
        log "the service did not start (is port $PORT in use? set SERVICE_PORT)"
        exit 1
    fi
    sleep 1
done
log "the service did not answer on port $PORT within 60 s"
exit 1
